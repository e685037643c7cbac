//! The SQLite state schema. (The PostgreSQL store has its own versioned
//! migrations, with a tenant in every key: see [`crate::postgres`]; the
//! tables and columns are the same.)
//!
//! The DDL is a template over three spellings (its PostgreSQL spelling,
//! without tenants, only checks that the template stays portable):
//! - `{ID}`: the auto-assigned run id (`INTEGER PRIMARY KEY` is SQLite's
//!   rowid alias; PostgreSQL uses an identity column);
//! - `{BLOB}`: binary columns (`BLOB` / `BYTEA`);
//! - `{NO_ROWID}`: SQLite stores `delivered` and `rejected` clustered on
//!   their primary key (`WITHOUT ROWID`), which halves their size; PostgreSQL
//!   has no such clause and needs none.
//!
//! All statements the stores run (`INSERT ... ON CONFLICT ... DO UPDATE`,
//! `RETURNING`) are valid in both dialects.
//!
//! Tables:
//! - `runs`: one row per run of a sync, with its status, owner (which
//!   process runs it), heartbeat, error and the stage it failed at
//!   (`load`, `discover`, `mappings`, `run`, `deletes`), the counters
//!   of [`RunCounts`] and how long each stage took (`stage_ms`, the JSON of
//!   [`StageTimings`]);
//! - `run_samples`: up to [`MAX_SAMPLES`] rejected or invalid rows per run,
//!   with the destination's message;
//! - `delivered`: per sync, primary key → 16-byte content hash and the
//!   destination id; "what we sent and the destination accepted";
//! - `rejected`: the ledger of rows the destination refused, with the
//!   message, first and last run, and attempts for the same content;
//! - `sync_fingerprints`: per sync, the config fingerprint its last
//!   successful run delivered under (so `plan` can say a config change is
//!   why rows will be re-sent).
//!
//! [`RunCounts`]: super::RunCounts
//! [`StageTimings`]: super::StageTimings

/// Bumped when the schema changes; stores refuse a newer database.
/// 2: `runs.stage` (where a failed run failed), `sync_fingerprints`.
/// 3: `runs.paced_waits`, `runs.write_calls` and `runs.requests` (throttling
/// by the API and pacing by the host counted apart; calls and HTTP requests).
/// 4: `runs.outcome_unknown` (requests sent that got no response).
/// 5: `runs.stage_ms` (how long each stage took, as JSON).
pub const SCHEMA_VERSION: i64 = 5;

/// Columns added after version 1, with their type: a store adds the ones an
/// older database lacks when it opens it.
pub const ADDED_COLUMNS: [(&str, &str, &str); 6] = [
    ("runs", "stage", "TEXT"),
    ("runs", "paced_waits", "BIGINT NOT NULL DEFAULT 0"),
    ("runs", "write_calls", "BIGINT NOT NULL DEFAULT 0"),
    ("runs", "requests", "BIGINT NOT NULL DEFAULT 0"),
    ("runs", "outcome_unknown", "BIGINT NOT NULL DEFAULT 0"),
    ("runs", "stage_ms", "TEXT"),
];

/// Rejected/invalid rows kept per run as samples.
pub const MAX_SAMPLES: i64 = 100;

/// The counter columns of `runs`, in [`super::RunCounts`] field order.
pub const COUNT_COLUMNS: [&str; 15] = [
    "planned",
    "added",
    "changed",
    "removed",
    "unchanged",
    "invalid",
    "sent",
    "ok",
    "rejected",
    "retried",
    "throttled_waits",
    "paced_waits",
    "write_calls",
    "requests",
    "outcome_unknown",
];

const TEMPLATE: &str = "
CREATE TABLE IF NOT EXISTS sluice_schema (
    version BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id {ID},
    sync TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'killed')),
    full_resync BOOLEAN NOT NULL DEFAULT FALSE,
    owner TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    finished_at BIGINT,
    error TEXT,
    stage TEXT,
    planned BIGINT NOT NULL DEFAULT 0,
    added BIGINT NOT NULL DEFAULT 0,
    changed BIGINT NOT NULL DEFAULT 0,
    removed BIGINT NOT NULL DEFAULT 0,
    unchanged BIGINT NOT NULL DEFAULT 0,
    invalid BIGINT NOT NULL DEFAULT 0,
    sent BIGINT NOT NULL DEFAULT 0,
    ok BIGINT NOT NULL DEFAULT 0,
    rejected BIGINT NOT NULL DEFAULT 0,
    retried BIGINT NOT NULL DEFAULT 0,
    throttled_waits BIGINT NOT NULL DEFAULT 0,
    paced_waits BIGINT NOT NULL DEFAULT 0,
    write_calls BIGINT NOT NULL DEFAULT 0,
    requests BIGINT NOT NULL DEFAULT 0,
    outcome_unknown BIGINT NOT NULL DEFAULT 0,
    stage_ms TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_sync ON runs (sync, id);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status);
CREATE TABLE IF NOT EXISTS run_samples (
    run_id BIGINT NOT NULL REFERENCES runs (id),
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('rejected', 'invalid')),
    row_key {BLOB},
    message TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS delivered (
    sync TEXT NOT NULL,
    row_key {BLOB} NOT NULL,
    content_hash {BLOB} NOT NULL,
    dest_id {BLOB},
    run_id BIGINT NOT NULL,
    PRIMARY KEY (sync, row_key)
){NO_ROWID};
CREATE TABLE IF NOT EXISTS rejected (
    sync TEXT NOT NULL,
    row_key {BLOB} NOT NULL,
    content_hash {BLOB} NOT NULL,
    message TEXT NOT NULL,
    first_run BIGINT NOT NULL,
    last_run BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    PRIMARY KEY (sync, row_key)
){NO_ROWID};
CREATE TABLE IF NOT EXISTS sync_fingerprints (
    sync TEXT NOT NULL PRIMARY KEY,
    fingerprint BIGINT NOT NULL,
    run_id BIGINT NOT NULL
);
";

/// The SQL dialects the schema is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// The DDL creating every table and index (idempotent).
pub fn ddl(dialect: Dialect) -> String {
    let (id, blob, no_rowid) = match dialect {
        Dialect::Sqlite => ("INTEGER PRIMARY KEY", "BLOB", " WITHOUT ROWID"),
        Dialect::Postgres => (
            "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
            "BYTEA",
            "",
        ),
    };
    TEMPLATE
        .replace("{ID}", id)
        .replace("{BLOB}", blob)
        .replace("{NO_ROWID}", no_rowid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialects_differ_only_in_spelling() {
        let lite = ddl(Dialect::Sqlite);
        let pg = ddl(Dialect::Postgres);
        assert!(!lite.contains('{') && !pg.contains('{'));
        assert!(pg.contains("BYTEA") && !pg.contains("BLOB") && !pg.contains("ROWID"));
        let tables = |s: &str| s.matches("CREATE TABLE").count();
        assert_eq!(tables(&lite), tables(&pg));
        for c in COUNT_COLUMNS {
            assert!(
                lite.contains(&format!("    {c} BIGINT NOT NULL DEFAULT 0")),
                "{c}"
            );
        }
    }
}
