//! The sync engine's pure pieces: keys, content hashes, the delivered
//! snapshot, the diff, and the mapping of model rows to destination fields.
//!
//! - [`key`]: type-tagged encoding of primary keys and destination ids;
//! - [`hash`]: where a row's content hash is computed;
//! - [`snapshot`]: the compact in-memory map of what was delivered;
//! - [`diff`]: the [`diff::Differ`] classifying rows as added, changed,
//!   unchanged, invalid, and finding removed keys;
//! - [`mapping`]: applying a sync's mappings and checking them against the
//!   destination's `discover`;
//! - [`coerce`]: the mapping coercions and their date arithmetic;
//! - [`pacing`]: a destination's declared rate limit and concurrency, and
//!   the quota its API reports;
//! - [`deliver`]: writing chunks, with retries, throttling and batch
//!   splitting, on as many writers as the destination allows;
//! - [`run`]: a run end to end.

pub mod coerce;
mod deliver;
pub mod diff;
pub mod hash;
pub mod key;
pub mod mapping;
pub mod pacing;
pub mod run;
pub mod snapshot;
