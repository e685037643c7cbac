//! The sync engine: a run from the model's rows to acknowledged deliveries.
//! Keys, hashes and the delivered snapshot are `sluice_state`'s; plugins
//! are loaded through `sluice_registry` and run by `sluice_runtime`.
//!
//! - [`diff`]: the [`diff::Differ`] classifying rows as added, changed,
//!   unchanged, invalid, and finding removed keys;
//! - [`mapping`]: applying a sync's mappings and checking them against the
//!   destination's `discover`;
//! - [`coerce`]: the mapping coercions and their date arithmetic;
//! - [`fingerprint`]: the delivery-relevant config folded into every
//!   content hash;
//! - [`pacing`]: a destination's declared rate limit and concurrency, and
//!   the quota its API reports;
//! - [`budget`]: rate budgets shared by every process writing with the
//!   same credentials (the store is the server's, `--rate-budgets`);
//! - [`deliver`]: writing chunks, with retries, throttling and batch
//!   splitting, on as many writers as the destination allows;
//! - [`retry`]: the one retry policy (backoff with jitter, rate-limit waits);
//! - [`reconcile`]: what mirror mode may delete (by identifier) and the
//!   per-sync deletion guard;
//! - [`observe`]: what a run's destination does on the wire, for a
//!   worker's metrics;
//! - [`outbound`]: the host's own requests for a project (notifications),
//!   held to the addresses the tenant may reach;
//! - [`notify`]: run lifecycle events POSTed to the project's `notify:` URL;
//! - [`run`]: a run end to end.

pub mod budget;
pub mod coerce;
mod deliver;
pub mod diff;
pub mod fingerprint;
pub mod mapping;
pub mod notify;
pub mod observe;
pub mod outbound;
pub mod pacing;
pub mod reconcile;
pub mod retry;
pub mod run;
