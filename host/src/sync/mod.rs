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
//! - [`coerce`]: the mapping coercions and their date arithmetic.

pub mod coerce;
pub mod diff;
pub mod hash;
pub mod key;
pub mod mapping;
pub mod run;
pub mod snapshot;
