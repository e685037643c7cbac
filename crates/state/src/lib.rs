//! Durable sync state: what each sync delivered, the rejected-row ledger,
//! and the history of runs.
//!
//! - [`key`]: type-tagged encoding of primary keys and destination ids;
//! - [`hash`]: where a row's content hash is computed;
//! - [`snapshot`]: the map of what was delivered, compact in memory up to
//!   a bound and spilled to disk beyond it;
//! - [`StateStore`]: the store's contract; [`SqliteStore`] the embedded one,
//!   [`PostgresStore`] the shared one; [`open_state`] picks one from a
//!   `--state` setting.
//!
//! The invariant: the `delivered` snapshot only ever holds rows the
//! destination acknowledged. A run reports each batch's outcomes with
//! [`StateStore::commit_batch`], which applies acknowledged rows, rejected
//! rows and the run's progress counters in one transaction. A process killed
//! between (or during) commits leaves the state at the last committed batch;
//! the next run re-sends whatever was not recorded (at-least-once,
//! idempotent by key).
//!
//! The trait is synchronous: store calls block (the engine makes them from
//! async code, as short as a local commit). It is `Send` so a store can move
//! into a task or thread.

pub mod hash;
pub mod key;
pub mod owner;
pub mod postgres;
pub mod schema;
pub mod snapshot;
mod sqlite;

use std::fmt;
use std::path::Path;

use serde::Serialize;

pub use self::postgres::PostgresStore;
pub use owner::{current_owner, Lease, LeaseError};
pub use sqlite::SqliteStore;

pub use hash::{row_hash, RowHash, RowHasher};
pub use key::{DestId, DisplayValue, RowKey};
pub use snapshot::{Delivered, Snapshot, SnapshotError, SnapshotFull};

/// A run's id, assigned by the store.
pub type RunId = i64;

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    /// The process running it died (found by [`StateStore::mark_interrupted_runs`]).
    Killed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Killed => "killed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            RunStatus::Running,
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Killed,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A run's counters. In [`CommitBatch::progress`] they are increments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RunCounts {
    /// Rows the plan decided to send (added, changed, removed as deletes).
    pub planned: u64,
    pub added: u64,
    pub changed: u64,
    pub removed: u64,
    pub unchanged: u64,
    /// Rows not sent because of a null or duplicate key or a mapping error.
    pub invalid: u64,
    /// Rows handed to the destination (each once, however many attempts).
    pub sent: u64,
    pub ok: u64,
    pub rejected: u64,
    /// Rows sent again after a retryable failure or to isolate a bad row.
    pub retried: u64,
    /// Waits the API asked for (a 429, `Retry-After`, a rate-limited row).
    pub throttled_waits: u64,
    /// Waits on the host's own rate limiter, before the API had to ask.
    pub paced_waits: u64,
    /// Write calls the host made to the destination (first attempts,
    /// retries and split halves).
    pub write_calls: u64,
    /// HTTP requests the destination's plugin made (its own retries, token
    /// refreshes and Bulk polling included), each paced by the host.
    pub requests: u64,
    /// HTTP requests sent whose response never came back (the connection
    /// dropped, or no answer within the first-byte timeout): the
    /// destination may have applied them. Their rows are re-sent with the
    /// same idempotency key where the destination has one.
    pub outcome_unknown: u64,
}

impl RunCounts {
    /// The counters in [`schema::COUNT_COLUMNS`] order.
    pub fn as_array(&self) -> [u64; 15] {
        [
            self.planned,
            self.added,
            self.changed,
            self.removed,
            self.unchanged,
            self.invalid,
            self.sent,
            self.ok,
            self.rejected,
            self.retried,
            self.throttled_waits,
            self.paced_waits,
            self.write_calls,
            self.requests,
            self.outcome_unknown,
        ]
    }

    pub fn from_array(a: [u64; 15]) -> Self {
        let [planned, added, changed, removed, unchanged, invalid, sent, ok, rejected, retried, throttled_waits, paced_waits, write_calls, requests, outcome_unknown] =
            a;
        RunCounts {
            planned,
            added,
            changed,
            removed,
            unchanged,
            invalid,
            sent,
            ok,
            rejected,
            retried,
            throttled_waits,
            paced_waits,
            write_calls,
            requests,
            outcome_unknown,
        }
    }
}

impl std::ops::AddAssign for RunCounts {
    fn add_assign(&mut self, rhs: Self) {
        let mut a = self.as_array();
        for (x, y) in a.iter_mut().zip(rhs.as_array()) {
            *x += y;
        }
        *self = RunCounts::from_array(a);
    }
}

/// A row the destination acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ack {
    /// Created, updated or accepted with this content: the snapshot records
    /// it and the ledger forgets the key. A `None` id keeps any id recorded
    /// before.
    Delivered {
        key: RowKey,
        hash: RowHash,
        dest_id: Option<DestId>,
    },
    /// Deleted (mirror mode): the key leaves the snapshot and the ledger.
    Deleted { key: RowKey },
    /// The record delivered under `from` is now carried by the model's row
    /// `to` (the key changed form, the identifier did not): the snapshot entry
    /// moves to `to`, keeping its hash and id, unless `to` already has one;
    /// `from` leaves the snapshot and the ledger. Nothing is sent.
    Rekeyed { from: RowKey, to: RowKey },
}

/// A row the destination refused for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub key: RowKey,
    pub hash: RowHash,
    /// The destination's own message.
    pub message: String,
}

/// An invalid row, kept only as a sample for `sluice runs show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRow {
    pub key: Option<RowKey>,
    pub message: String,
}

/// Everything one batch of a run changes, applied atomically.
#[derive(Debug, Clone, Default)]
pub struct CommitBatch {
    pub acknowledged: Vec<Ack>,
    pub rejected: Vec<Rejection>,
    pub invalid: Vec<InvalidRow>,
    /// Added to the run's counters.
    pub progress: RunCounts,
}

/// A run as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    pub id: RunId,
    pub sync: String,
    pub status: RunStatus,
    pub full_resync: bool,
    /// `host:pid:start` of the process that ran it.
    pub owner: String,
    /// Microseconds since the Unix epoch.
    pub started_at: i64,
    pub heartbeat_at: i64,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
    /// Where a failed run failed: `load` (plugins), `discover`, `mappings`
    /// (before anything was read), `run` (reading and writing), `deletes`.
    pub stage: Option<String>,
    pub counts: RunCounts,
    /// How long each stage took, recorded when the run ended (`None` for a
    /// run still going, or one killed before it could record them).
    pub timings: Option<StageTimings>,
}

/// How long a run's stages took, in milliseconds (`instantiate_us` in
/// microseconds).
///
/// `load`, `discover`, `mappings`, `run` and `deletes` follow one another,
/// so they add up to the run's duration. Within `run` the pipeline's parts
/// overlap (the source is read in its own task, several writers deliver at
/// once), so `read`, `transform`, `write` and `commit` are each one part's
/// busy time, summed over its workers: they show which part the run waited
/// on, and together can exceed `run`. Within `load`, `instantiate_us` is
/// the part spent instantiating the run's plugin instances.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StageTimings {
    /// Loading and instantiating the plugins (transforms included).
    pub load_ms: u64,
    /// Asking the destination for its objects (authenticates too).
    pub discover_ms: u64,
    /// Checking the mappings against the destination's fields.
    pub mappings_ms: u64,
    /// Reading, diffing, mapping, transforming, writing and committing.
    pub run_ms: u64,
    /// Mirror mode's deletes and their guard.
    pub deletes_ms: u64,
    /// The source's calls (its query and each batch).
    pub read_ms: u64,
    /// Diffing against the snapshot, mapping and the transforms.
    pub transform_ms: u64,
    /// Delivering chunks to the destination, pacing and retries included,
    /// summed over the concurrent writers.
    pub write_ms: u64,
    /// Committing acknowledged rows to the state store.
    pub commit_ms: u64,
    /// Instantiating the run's plugin instances (its source, each
    /// transform, one destination instance per writer), summed: the wall
    /// time of each instantiate call in the runtime, not loading the
    /// compiled plugin nor asking its spec. Part of `load_ms`; in
    /// microseconds, since one instantiation can take well under a
    /// millisecond. 0 in runs recorded before it was measured.
    #[serde(default)]
    pub instantiate_us: u64,
    /// How many instances `instantiate_us` sums (0 in older runs).
    #[serde(default)]
    pub instances: u32,
}

impl StageTimings {
    /// The JSON the stores keep in `runs.stage_ms`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads `runs.stage_ms`; `None` for a missing or unreadable value (a
    /// run that ended before timings were recorded), never an error.
    pub fn from_json(text: Option<&str>) -> Option<Self> {
        text.and_then(|t| serde_json::from_str(t).ok())
    }
}

/// What a sample row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SampleKind {
    Rejected,
    Invalid,
}

/// A rejected or invalid row kept with its run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sample {
    pub kind: SampleKind,
    pub key: Option<RowKey>,
    pub message: String,
}

/// A row in the rejected-row ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub key: RowKey,
    /// The content that was rejected; a row with another hash is a new
    /// attempt from 1.
    pub hash: RowHash,
    pub message: String,
    pub first_run: RunId,
    pub last_run: RunId,
    /// Runs that sent this content and had it rejected.
    pub attempts: u64,
}

/// A row of the delivered snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredRow {
    pub key: RowKey,
    pub hash: RowHash,
    pub dest_id: Option<DestId>,
    /// The run that delivered this content.
    pub run: RunId,
}

/// A failure of the state store; the message says which store and what it
/// was doing.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state store {store}: {action}: {source}")]
    Database {
        store: String,
        action: String,
        #[source]
        source: rusqlite::Error,
    },
    /// `detail` is the server's message (severity, text, SQLSTATE, detail
    /// and hint) or the client's with its causes.
    #[error("state store {store}: {action}: {detail}")]
    Postgres {
        store: String,
        action: String,
        detail: String,
        #[source]
        source: ::postgres::Error,
    },
    /// The PostgreSQL store could not be reached; `store` is the URL with
    /// its password hidden.
    #[error("state store {store}: connecting: {detail}")]
    Connect { store: String, detail: String },
    #[error("state store {store}: {0}", store = .1)]
    Io(std::io::Error, String),
    #[error("run {run} does not exist")]
    UnknownRun { run: RunId },
    #[error("run {run} of sync `{sync}` is {status}, not running; its process must stop writing")]
    NotRunning {
        run: RunId,
        sync: String,
        status: RunStatus,
    },
    #[error("sync `{sync}` is already running (run {run}, owner {owner})")]
    AlreadyRunning {
        sync: String,
        run: RunId,
        owner: String,
    },
    /// Another process holds the sync's lease without a recorded run (it is
    /// starting or being unlocked).
    #[error("sync `{sync}` is locked by another process ({holder}; lock {path})")]
    Locked {
        sync: String,
        holder: String,
        path: String,
    },
    #[error("state store {store} is corrupt: {detail}")]
    Corrupt { store: String, detail: String },
    #[error(
        "state store {store} has schema version {found}; this sluice supports up to {supported}"
    )]
    TooNew {
        store: String,
        found: i64,
        supported: i64,
    },
    #[error("loading the snapshot of sync `{sync}`: {source}")]
    Snapshot {
        sync: String,
        #[source]
        source: SnapshotError,
    },
}

/// Durable sync state. See the module docs for the commit invariant.
pub trait StateStore: Send {
    /// Where the state lives, for messages: a file path, or a URL with its
    /// password hidden.
    fn location(&self) -> String;

    /// Records a new `running` run of `sync` owned by this process, which
    /// holds the sync's lease ([`Lease`]) until the run finishes. Runs of the
    /// same sync left `running` (their lease is free, so their process is
    /// gone) are marked killed first; a lease held elsewhere is an
    /// [`StateError::AlreadyRunning`] (or [`StateError::Locked`]).
    fn begin_run(&mut self, sync: &str, full_resync: bool) -> Result<RunId, StateError>;

    /// Applies one batch's outcomes and progress in a single transaction.
    /// Fails, changing nothing, if the run is not `running`.
    fn commit_batch(&mut self, run: RunId, batch: &CommitBatch) -> Result<(), StateError>;

    /// Ends a running run with `status` (and the error that ended it).
    fn finish_run(
        &mut self,
        run: RunId,
        status: RunStatus,
        error: Option<&str>,
    ) -> Result<(), StateError>;

    /// Ends a running run as failed at `stage` (see [`RunRecord::stage`]).
    fn fail_run(&mut self, run: RunId, stage: &str, error: &str) -> Result<(), StateError>;

    /// Records how long a running run's stages took (call it just before
    /// the run ends). Fails, changing nothing, if the run is not `running`.
    fn record_timings(&mut self, run: RunId, timings: &StageTimings) -> Result<(), StateError>;

    /// Marks `running` runs whose lease is free (their process is gone) as
    /// `killed` (call at startup); returns their ids.
    fn mark_interrupted_runs(&mut self) -> Result<Vec<RunId>, StateError>;

    /// The delivered snapshot of `sync` as a compact in-memory map.
    fn load_snapshot(&self, sync: &str) -> Result<Snapshot, StateError>;

    /// Streams the delivered rows of `sync` without holding them all.
    fn for_each_delivered(
        &self,
        sync: &str,
        visit: &mut dyn FnMut(DeliveredRow),
    ) -> Result<(), StateError>;

    /// The rejected-row ledger of `sync`, by key.
    fn ledger(&self, sync: &str) -> Result<Vec<LedgerEntry>, StateError>;

    /// Full resync: forgets what was delivered (so every row is sent again)
    /// and keeps the ledger. Returns the number of rows forgotten.
    fn forget_snapshot(&mut self, sync: &str) -> Result<u64, StateError>;

    /// `sluice verify`: forgets these keys of `sync`'s snapshot (their
    /// records are gone from the destination), so the next run sends them
    /// again. Holds the sync's lease while it does, so it is refused while
    /// a run is under way. Returns the number of keys forgotten.
    fn forget_keys(&mut self, sync: &str, keys: &[RowKey]) -> Result<u64, StateError>;

    fn run(&self, run: RunId) -> Result<Option<RunRecord>, StateError>;

    /// The latest runs, newest first, of one sync or of all.
    fn runs(&self, sync: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StateError>;

    /// The rejected and invalid rows sampled for a run, in order.
    fn samples(&self, run: RunId) -> Result<Vec<Sample>, StateError>;

    /// For the operator (`sluice runs unlock`): marks the `running` runs of
    /// `sync` as killed if its lease is free, and returns their ids; a lease
    /// still held by a live process is an [`StateError::AlreadyRunning`] or
    /// [`StateError::Locked`] naming it.
    fn unlock(&mut self, sync: &str) -> Result<Vec<RunId>, StateError>;

    /// The config fingerprint the last successful run of `sync` delivered
    /// under, if one was recorded.
    fn fingerprint(&self, sync: &str) -> Result<Option<u64>, StateError>;

    /// Records the config fingerprint `run` of `sync` delivered under (when
    /// it succeeded).
    fn record_fingerprint(
        &mut self,
        sync: &str,
        fingerprint: u64,
        run: RunId,
    ) -> Result<(), StateError>;
}

/// Opens the state of the project in `project_dir`: `state` is where it
/// lives (`--state` / `SLUICE_STATE`): a `postgres://` URL opens a
/// [`PostgresStore`]; a path opens a SQLite file there (relative to the
/// project); none opens the embedded default, `<project>/.sluice/state.db`.
pub fn open_state(
    project_dir: &Path,
    state: Option<&str>,
) -> Result<Box<dyn StateStore>, StateError> {
    match state.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(Box::new(SqliteStore::open_project(project_dir)?)),
        Some(url) if self::postgres::is_postgres_url(url) => {
            Ok(Box::new(PostgresStore::connect(url)?))
        }
        Some(path) => Ok(Box::new(SqliteStore::open(&project_dir.join(path))?)),
    }
}

/// A boxed store is a store, so the engine can run on whichever
/// [`open_state`] chose.
impl<S: StateStore + ?Sized> StateStore for Box<S> {
    fn location(&self) -> String {
        (**self).location()
    }
    fn begin_run(&mut self, sync: &str, full_resync: bool) -> Result<RunId, StateError> {
        (**self).begin_run(sync, full_resync)
    }
    fn commit_batch(&mut self, run: RunId, batch: &CommitBatch) -> Result<(), StateError> {
        (**self).commit_batch(run, batch)
    }
    fn finish_run(
        &mut self,
        run: RunId,
        status: RunStatus,
        error: Option<&str>,
    ) -> Result<(), StateError> {
        (**self).finish_run(run, status, error)
    }
    fn fail_run(&mut self, run: RunId, stage: &str, error: &str) -> Result<(), StateError> {
        (**self).fail_run(run, stage, error)
    }
    fn record_timings(&mut self, run: RunId, timings: &StageTimings) -> Result<(), StateError> {
        (**self).record_timings(run, timings)
    }
    fn mark_interrupted_runs(&mut self) -> Result<Vec<RunId>, StateError> {
        (**self).mark_interrupted_runs()
    }
    fn load_snapshot(&self, sync: &str) -> Result<Snapshot, StateError> {
        (**self).load_snapshot(sync)
    }
    fn for_each_delivered(
        &self,
        sync: &str,
        visit: &mut dyn FnMut(DeliveredRow),
    ) -> Result<(), StateError> {
        (**self).for_each_delivered(sync, visit)
    }
    fn ledger(&self, sync: &str) -> Result<Vec<LedgerEntry>, StateError> {
        (**self).ledger(sync)
    }
    fn forget_snapshot(&mut self, sync: &str) -> Result<u64, StateError> {
        (**self).forget_snapshot(sync)
    }
    fn forget_keys(&mut self, sync: &str, keys: &[RowKey]) -> Result<u64, StateError> {
        (**self).forget_keys(sync, keys)
    }
    fn run(&self, run: RunId) -> Result<Option<RunRecord>, StateError> {
        (**self).run(run)
    }
    fn runs(&self, sync: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        (**self).runs(sync, limit)
    }
    fn samples(&self, run: RunId) -> Result<Vec<Sample>, StateError> {
        (**self).samples(run)
    }
    fn unlock(&mut self, sync: &str) -> Result<Vec<RunId>, StateError> {
        (**self).unlock(sync)
    }
    fn fingerprint(&self, sync: &str) -> Result<Option<u64>, StateError> {
        (**self).fingerprint(sync)
    }
    fn record_fingerprint(
        &mut self,
        sync: &str,
        fingerprint: u64,
        run: RunId,
    ) -> Result<(), StateError> {
        (**self).record_fingerprint(sync, fingerprint, run)
    }
}

#[cfg(test)]
mod tests {
    use super::StageTimings;

    #[test]
    fn timings_stored_before_instantiation_was_measured_still_read() {
        // `runs.stage_ms` as runs recorded it before `instantiate_us`.
        let old = r#"{"load_ms":18,"discover_ms":3,"mappings_ms":0,"run_ms":20,"deletes_ms":0,"read_ms":2,"transform_ms":4,"write_ms":9,"commit_ms":5}"#;
        let t = StageTimings::from_json(Some(old)).expect("old timings read");
        assert_eq!((t.load_ms, t.commit_ms), (18, 5));
        assert_eq!((t.instantiate_us, t.instances), (0, 0));
        // And the new fields go round.
        let new = StageTimings {
            instantiate_us: 1234,
            instances: 3,
            ..t
        };
        assert_eq!(StageTimings::from_json(Some(&new.to_json())), Some(new));
    }
}
