//! The embedded state store: SQLite at `<project>/.sluice/state.db`.
//!
//! WAL mode lets `sluice runs` read while a run writes. `synchronous=NORMAL`
//! is durable against a killed process (the case that matters here); after
//! a power loss the last commits may roll back, which only means re-sending
//! those rows: the state can lag the destination, never lead it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};

use super::owner::{Lease, LeaseError};
use super::schema::{self, Dialect, COUNT_COLUMNS, MAX_SAMPLES, SCHEMA_VERSION};
use super::{
    owner, Ack, CommitBatch, DeliveredRow, LedgerEntry, RunCounts, RunId, RunRecord, RunStatus,
    Sample, SampleKind, StageTimings, StateError, StateStore,
};
use crate::{DestId, RowHash, RowKey, Snapshot};

/// The state database's path inside a project.
pub fn state_db_path(project_dir: &Path) -> PathBuf {
    project_dir.join(".sluice").join("state.db")
}

/// SQLite implementation of [`StateStore`].
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    owner: String,
    /// The state directory, where the sync locks live.
    dir: PathBuf,
    /// The leases of the runs this store began and has not finished.
    leases: HashMap<RunId, Lease>,
}

impl SqliteStore {
    /// Opens (creating if needed) `<project_dir>/.sluice/state.db`.
    pub fn open_project(project_dir: &Path) -> Result<Self, StateError> {
        Self::open(&state_db_path(project_dir))
    }

    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let store = path.display().to_string();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StateError::Io(e, format!("{store} (creating {})", dir.display())))?;
        }
        let conn = Connection::open(path).map_err(|e| db(&store, "opening", e))?;
        let mut s = SqliteStore {
            conn,
            path: path.to_path_buf(),
            owner: owner::current_owner(),
            dir: path
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
            leases: HashMap::new(),
        };
        s.configure()?;
        s.migrate()?;
        Ok(s)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn configure(&self) -> Result<(), StateError> {
        let c = &self.conn;
        c.pragma_update(None, "journal_mode", "WAL")
            .and_then(|_| c.pragma_update(None, "synchronous", "NORMAL"))
            .and_then(|_| c.pragma_update(None, "foreign_keys", "ON"))
            .and_then(|_| c.busy_timeout(Duration::from_secs(10)))
            .map_err(|e| self.err("configuring the connection", e))
    }

    fn migrate(&mut self) -> Result<(), StateError> {
        let store = self.name();
        let tx = begin(&mut self.conn, &store, "creating the schema")?;
        tx.execute_batch(&schema::ddl(Dialect::Sqlite))
            .map_err(|e| db(&store, "creating the schema", e))?;
        for (table, column, kind) in schema::ADDED_COLUMNS {
            let present: i64 = tx
                .query_row(
                    "SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2",
                    [table, column],
                    |r| r.get(0),
                )
                .map_err(|e| db(&store, "reading the schema", e))?;
            if present == 0 {
                tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"))
                    .map_err(|e| db(&store, "upgrading the schema", e))?;
            }
        }
        let found: Option<i64> = tx
            .query_row("SELECT MAX(version) FROM sluice_schema", [], |r| r.get(0))
            .map_err(|e| db(&store, "reading the schema version", e))?;
        match found {
            Some(v) if v > SCHEMA_VERSION => {
                return Err(StateError::TooNew {
                    store,
                    found: v,
                    supported: SCHEMA_VERSION,
                })
            }
            Some(v) if v == SCHEMA_VERSION => {}
            _ => {
                tx.execute(
                    "INSERT INTO sluice_schema (version) VALUES (?1)",
                    [SCHEMA_VERSION],
                )
                .map_err(|e| db(&store, "recording the schema version", e))?;
            }
        }
        tx.commit()
            .map_err(|e| db(&store, "creating the schema", e))
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn err(&self, action: &str, e: rusqlite::Error) -> StateError {
        db(&self.name(), action, e)
    }

    /// The sync of `run`, which must exist and be `running`, inside a
    /// transaction.
    fn running_sync(
        tx: &Transaction<'_>,
        run: RunId,
        store: &str,
        action: &str,
    ) -> Result<String, StateError> {
        match Self::run_state(tx, run).map_err(|e| db(store, action, e))? {
            None => Err(StateError::UnknownRun { run }),
            Some((sync, s)) if s != "running" => {
                let status = RunStatus::parse(&s).unwrap_or(RunStatus::Failed);
                Err(StateError::NotRunning { run, sync, status })
            }
            Some((sync, _)) => Ok(sync),
        }
    }

    /// The sync and status of a run, inside a transaction.
    fn run_state(tx: &Transaction<'_>, run: RunId) -> rusqlite::Result<Option<(String, String)>> {
        tx.query_row("SELECT sync, status FROM runs WHERE id = ?1", [run], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
    }
}

/// `IMMEDIATE` takes the write lock up front, so two writers queue on the
/// busy timeout instead of failing on a lock upgrade mid-transaction.
fn begin<'c>(
    conn: &'c mut Connection,
    store: &str,
    action: &str,
) -> Result<Transaction<'c>, StateError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| db(store, action, e))
}

fn db(store: &str, action: &str, source: rusqlite::Error) -> StateError {
    StateError::Database {
        store: store.to_owned(),
        action: action.to_owned(),
        source,
    }
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Counters are u64 in Rust and BIGINT in SQL; no real run reaches 2^63.
fn to_sql_count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl StateStore for SqliteStore {
    fn location(&self) -> String {
        self.name()
    }

    fn begin_run(&mut self, sync: &str, full_resync: bool) -> Result<RunId, StateError> {
        let action = format!("starting a run of sync `{sync}`");
        let owner = self.owner.clone();
        let store = self.name();
        // The lease first: whoever holds it is running the sync.
        let lease = self.lease(sync)?;
        let tx = begin(&mut self.conn, &store, &action)?;
        // Holding the lease, every `running` row of this sync is stale.
        kill_stale_runs(
            &tx,
            Some(sync),
            &|_, _| false,
            "the process running it is gone: its lock was free",
        )
        .map_err(|e| db(&store, &action, e))?;
        let now = now_micros();
        let id: RunId = tx
            .query_row(
                "INSERT INTO runs (sync, status, full_resync, owner, started_at, heartbeat_at)
                 VALUES (?1, 'running', ?2, ?3, ?4, ?4) RETURNING id",
                params![sync, full_resync, owner, now],
                |r| r.get(0),
            )
            .map_err(|e| db(&store, &action, e))?;
        tx.commit().map_err(|e| db(&store, &action, e))?;
        self.leases.insert(id, lease);
        Ok(id)
    }

    fn commit_batch(&mut self, run: RunId, batch: &CommitBatch) -> Result<(), StateError> {
        let store = self.name();
        let action = format!("committing a batch of run {run}");
        let tx = begin(&mut self.conn, &store, &action)?;
        let sync = Self::running_sync(&tx, run, &store, &action)?;
        let action = format!("committing a batch of run {run} (sync `{sync}`)");
        apply_batch(&tx, run, &sync, batch).map_err(|e| db(&store, &action, e))?;
        tx.commit().map_err(|e| db(&store, &action, e))
    }

    fn finish_run(
        &mut self,
        run: RunId,
        status: RunStatus,
        error: Option<&str>,
    ) -> Result<(), StateError> {
        self.end_run(run, status, None, error)
    }

    fn fail_run(&mut self, run: RunId, stage: &str, error: &str) -> Result<(), StateError> {
        self.end_run(run, RunStatus::Failed, Some(stage), Some(error))
    }

    fn record_timings(&mut self, run: RunId, timings: &StageTimings) -> Result<(), StateError> {
        let store = self.name();
        let action = format!("recording the stage timings of run {run}");
        let tx = begin(&mut self.conn, &store, &action)?;
        Self::running_sync(&tx, run, &store, &action)?;
        tx.execute(
            "UPDATE runs SET stage_ms = ?2 WHERE id = ?1",
            params![run, timings.to_json()],
        )
        .map_err(|e| db(&store, &action, e))?;
        tx.commit().map_err(|e| db(&store, &action, e))
    }

    fn mark_interrupted_runs(&mut self) -> Result<Vec<RunId>, StateError> {
        let store = self.name();
        let action = "marking interrupted runs";
        let dir = self.dir.clone();
        let mine: Vec<RunId> = self.leases.keys().copied().collect();
        let tx = begin(&mut self.conn, &store, action)?;
        // A run is alive while someone holds its sync's lease: this store
        // (its own runs), or another process. A lock that cannot be probed
        // counts as held: never kill a run on a doubt.
        let alive = |id: RunId, sync: &str| {
            mine.contains(&id) || !Lease::is_free(&dir, sync).unwrap_or(false)
        };
        let killed = kill_stale_runs(
            &tx,
            None,
            &alive,
            "the process running it is gone: its lock was free",
        )
        .map_err(|e| db(&store, action, e))?;
        tx.commit().map_err(|e| db(&store, action, e))?;
        Ok(killed)
    }

    fn unlock(&mut self, sync: &str) -> Result<Vec<RunId>, StateError> {
        let store = self.name();
        let action = format!("unlocking sync `{sync}`");
        // Holding the lease proves no process runs the sync; it is let go
        // when this returns.
        let _lease = self.lease(sync)?;
        let tx = begin(&mut self.conn, &store, &action)?;
        let killed = kill_stale_runs(
            &tx,
            Some(sync),
            &|_, _| false,
            "unlocked by the operator (`sluice runs unlock`): its lock was free",
        )
        .map_err(|e| db(&store, &action, e))?;
        tx.commit().map_err(|e| db(&store, &action, e))?;
        Ok(killed)
    }

    fn load_snapshot(&self, sync: &str) -> Result<Snapshot, StateError> {
        let action = format!("loading the snapshot of sync `{sync}`");
        let (count, key_bytes): (i64, i64) = self
            .conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(length(row_key)), 0) FROM delivered WHERE sync = ?1",
                [sync],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| self.err(&action, e))?;
        let count = usize::try_from(count).unwrap_or(0);
        let avg = usize::try_from(key_bytes).unwrap_or(0) / count.max(1) + 1;
        let mut snapshot = Snapshot::with_capacity(count, avg);
        let mut failure = None;
        self.visit_delivered(sync, &action, &mut |r| {
            if failure.is_none() {
                failure = snapshot.insert_delivered(r.key, r.hash, r.dest_id).err();
            }
        })?;
        if let Some(source) = failure {
            return Err(StateError::Snapshot {
                sync: sync.to_owned(),
                source,
            });
        }
        Ok(snapshot)
    }

    fn for_each_delivered(
        &self,
        sync: &str,
        visit: &mut dyn FnMut(DeliveredRow),
    ) -> Result<(), StateError> {
        let action = format!("reading the snapshot of sync `{sync}`");
        self.visit_delivered(sync, &action, &mut |r| {
            visit(DeliveredRow {
                key: RowKey::from_bytes(r.key),
                hash: r.hash,
                dest_id: r.dest_id.map(DestId::from_bytes),
                run: r.run,
            })
        })
    }

    fn ledger(&self, sync: &str) -> Result<Vec<LedgerEntry>, StateError> {
        let action = format!("reading the ledger of sync `{sync}`");
        let mut stmt = self
            .conn
            .prepare(
                "SELECT row_key, content_hash, message, first_run, last_run, attempts
                 FROM rejected WHERE sync = ?1 ORDER BY row_key",
            )
            .map_err(|e| self.err(&action, e))?;
        let rows = stmt
            .query_map([sync], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })
            .map_err(|e| self.err(&action, e))?;
        let mut out = Vec::new();
        for row in rows {
            let (key, hash, message, first_run, last_run, attempts) =
                row.map_err(|e| self.err(&action, e))?;
            out.push(LedgerEntry {
                hash: self.hash_of(&hash, "rejected")?,
                key: RowKey::from_bytes(key),
                message,
                first_run,
                last_run,
                attempts: u64::try_from(attempts).unwrap_or(0),
            });
        }
        Ok(out)
    }

    fn forget_snapshot(&mut self, sync: &str) -> Result<u64, StateError> {
        let action = format!("forgetting the snapshot of sync `{sync}`");
        let n = self
            .conn
            .execute("DELETE FROM delivered WHERE sync = ?1", [sync])
            .map_err(|e| self.err(&action, e))?;
        Ok(n as u64)
    }

    fn forget_keys(&mut self, sync: &str, keys: &[RowKey]) -> Result<u64, StateError> {
        let store = self.name();
        let action = format!("forgetting {} key(s) of sync `{sync}`", keys.len());
        let _lease = self.lease(sync)?;
        let tx = begin(&mut self.conn, &store, &action)?;
        let mut forgotten = 0;
        {
            let mut delete = tx
                .prepare_cached("DELETE FROM delivered WHERE sync = ?1 AND row_key = ?2")
                .map_err(|e| db(&store, &action, e))?;
            for key in keys {
                forgotten += delete
                    .execute(rusqlite::params![sync, key.as_bytes()])
                    .map_err(|e| db(&store, &action, e))? as u64;
            }
        }
        tx.commit().map_err(|e| db(&store, &action, e))?;
        Ok(forgotten)
    }

    fn run(&self, run: RunId) -> Result<Option<RunRecord>, StateError> {
        let sql = format!("{} WHERE id = ?1", select_runs());
        self.conn
            .query_row(&sql, [run], read_run)
            .optional()
            .map_err(|e| self.err(&format!("reading run {run}"), e))?
            .transpose()
    }

    fn runs(&self, sync: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        let sql = format!(
            "{} WHERE (?1 IS NULL OR sync = ?1) ORDER BY id DESC LIMIT ?2",
            select_runs()
        );
        let action = "listing runs";
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(action, e))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![sync, limit], read_run)
            .map_err(|e| self.err(action, e))?;
        rows.map(|r| r.map_err(|e| self.err(action, e))?).collect()
    }

    fn samples(&self, run: RunId) -> Result<Vec<Sample>, StateError> {
        let action = format!("reading the samples of run {run}");
        let mut stmt = self
            .conn
            .prepare(
                "SELECT kind, row_key, message FROM run_samples WHERE run_id = ?1 ORDER BY seq",
            )
            .map_err(|e| self.err(&action, e))?;
        let rows = stmt
            .query_map([run], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<Vec<u8>>>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(|e| self.err(&action, e))?;
        rows.map(|r| {
            let (kind, key, message) = r.map_err(|e| self.err(&action, e))?;
            let kind = match kind.as_str() {
                "rejected" => SampleKind::Rejected,
                _ => SampleKind::Invalid,
            };
            Ok(Sample {
                kind,
                key: key.map(RowKey::from_bytes),
                message,
            })
        })
        .collect()
    }

    fn fingerprint(&self, sync: &str) -> Result<Option<u64>, StateError> {
        self.fingerprint_of(sync)
    }

    fn record_fingerprint(
        &mut self,
        sync: &str,
        fingerprint: u64,
        run: RunId,
    ) -> Result<(), StateError> {
        // Stored as the same 64 bits in a signed column.
        self.conn
            .execute(
                "INSERT INTO sync_fingerprints (sync, fingerprint, run_id) VALUES (?1, ?2, ?3)
                 ON CONFLICT (sync) DO UPDATE SET fingerprint = excluded.fingerprint, run_id = excluded.run_id",
                params![sync, fingerprint as i64, run],
            )
            .map(|_| ())
            .map_err(|e| self.err(&format!("recording the config fingerprint of sync `{sync}`"), e))
    }
}

impl SqliteStore {
    /// The lease on `sync`, or who holds it.
    fn lease(&self, sync: &str) -> Result<Lease, StateError> {
        match Lease::acquire(&self.dir, sync, &self.owner) {
            Ok(lease) => Ok(lease),
            Err(LeaseError::Io(e, path)) => Err(StateError::Io(
                e,
                format!(
                    "{} (locking sync `{sync}` at {})",
                    self.name(),
                    path.display()
                ),
            )),
            Err(LeaseError::Held { holder, path }) => {
                let running: Option<(RunId, String)> = self
                    .conn
                    .query_row(
                        "SELECT id, owner FROM runs WHERE status = 'running' AND sync = ?1 ORDER BY id DESC LIMIT 1",
                        [sync],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(|e| self.err(&format!("reading the runs of sync `{sync}`"), e))?;
                Err(match running {
                    Some((run, owner)) => StateError::AlreadyRunning {
                        sync: sync.to_owned(),
                        run,
                        owner,
                    },
                    None => StateError::Locked {
                        sync: sync.to_owned(),
                        holder,
                        path: path.display().to_string(),
                    },
                })
            }
        }
    }

    /// Ends a running run: its status, and the stage and error of a failure.
    fn end_run(
        &mut self,
        run: RunId,
        status: RunStatus,
        stage: Option<&str>,
        error: Option<&str>,
    ) -> Result<(), StateError> {
        let store = self.name();
        let action = format!("finishing run {run}");
        let tx = begin(&mut self.conn, &store, &action)?;
        Self::running_sync(&tx, run, &store, &action)?;
        tx.execute(
            "UPDATE runs SET status = ?2, finished_at = ?3, heartbeat_at = ?3, error = ?4, stage = ?5 WHERE id = ?1",
            params![run, status.as_str(), now_micros(), error, stage],
        )
        .map_err(|e| db(&store, &action, e))?;
        tx.commit().map_err(|e| db(&store, &action, e))?;
        // The run is over: its sync is free for the next one.
        self.leases.remove(&run);
        Ok(())
    }

    fn fingerprint_of(&self, sync: &str) -> Result<Option<u64>, StateError> {
        self.conn
            .query_row(
                "SELECT fingerprint FROM sync_fingerprints WHERE sync = ?1",
                [sync],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|f| f.map(|f| f as u64))
            .map_err(|e| {
                self.err(
                    &format!("reading the config fingerprint of sync `{sync}`"),
                    e,
                )
            })
    }

    fn hash_of(&self, bytes: &[u8], table: &str) -> Result<RowHash, StateError> {
        RowHash::from_slice(bytes).ok_or_else(|| StateError::Corrupt {
            store: self.name(),
            detail: format!(
                "a content hash in `{table}` has {} bytes, not 16",
                bytes.len()
            ),
        })
    }

    /// Streams `delivered` rows of a sync to `visit` without collecting them.
    fn visit_delivered(
        &self,
        sync: &str,
        action: &str,
        visit: &mut dyn FnMut(RawDelivered<'_>),
    ) -> Result<(), StateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT row_key, content_hash, dest_id, run_id FROM delivered WHERE sync = ?1")
            .map_err(|e| self.err(action, e))?;
        let mut rows = stmt.query([sync]).map_err(|e| self.err(action, e))?;
        while let Some(row) = rows.next().map_err(|e| self.err(action, e))? {
            let (raw, hash) = read_delivered(row).map_err(|e| self.err(action, e))?;
            let hash = self.hash_of(hash, "delivered")?;
            visit(RawDelivered { hash, ..raw });
        }
        Ok(())
    }
}

/// Marks the `running` runs (of `sync`, or all) that `alive` does not vouch
/// for as killed, with `why`; returns their ids.
fn kill_stale_runs(
    tx: &Transaction<'_>,
    sync: Option<&str>,
    alive: &dyn Fn(RunId, &str) -> bool,
    why: &str,
) -> rusqlite::Result<Vec<RunId>> {
    let mut stmt = tx.prepare(
        "SELECT id, sync, owner FROM runs WHERE status = 'running' AND (?1 IS NULL OR sync = ?1) ORDER BY id",
    )?;
    let running: Vec<(RunId, String, String)> = stmt
        .query_map([sync], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut killed = Vec::new();
    for (id, sync, owner) in running {
        if alive(id, &sync) {
            continue;
        }
        tx.execute(
            "UPDATE runs SET status = 'killed', finished_at = ?2, error = ?3 WHERE id = ?1",
            params![id, now_micros(), format!("{why} (owner was {owner})")],
        )?;
        killed.push(id);
    }
    Ok(killed)
}

/// A `delivered` row borrowed from SQLite's buffers (no copy per row).
struct RawDelivered<'r> {
    key: &'r [u8],
    hash: RowHash,
    dest_id: Option<&'r [u8]>,
    run: RunId,
}

/// The row, and its hash bytes still to be checked.
fn read_delivered<'r>(r: &'r Row<'_>) -> rusqlite::Result<(RawDelivered<'r>, &'r [u8])> {
    let raw = RawDelivered {
        key: r.get_ref(0)?.as_blob()?,
        hash: RowHash(0),
        dest_id: r.get_ref(2)?.as_blob_or_null()?,
        run: r.get(3)?,
    };
    Ok((raw, r.get_ref(1)?.as_blob()?))
}

/// The statements of one commit; the caller owns the transaction.
fn apply_batch(
    tx: &Transaction<'_>,
    run: RunId,
    sync: &str,
    batch: &CommitBatch,
) -> rusqlite::Result<()> {
    add_progress(tx, run, &batch.progress)?;
    apply_acks(tx, run, sync, &batch.acknowledged)?;
    record_rejections(tx, run, sync, batch)?;
    record_samples(tx, run, batch)
}

fn add_progress(tx: &Transaction<'_>, run: RunId, counts: &RunCounts) -> rusqlite::Result<()> {
    let sets: Vec<String> = COUNT_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = {c} + ?{}", i + 3))
        .collect();
    let sql = format!(
        "UPDATE runs SET heartbeat_at = ?2, {} WHERE id = ?1",
        sets.join(", ")
    );
    let mut stmt = tx.prepare_cached(&sql)?;
    let values: Vec<i64> = counts.as_array().into_iter().map(to_sql_count).collect();
    let mut args: Vec<&dyn rusqlite::ToSql> = vec![&run];
    let now = now_micros();
    args.push(&now);
    args.extend(values.iter().map(|v| v as &dyn rusqlite::ToSql));
    stmt.execute(args.as_slice())?;
    Ok(())
}

fn apply_acks(tx: &Transaction<'_>, run: RunId, sync: &str, acks: &[Ack]) -> rusqlite::Result<()> {
    let mut upsert = tx.prepare_cached(
        "INSERT INTO delivered (sync, row_key, content_hash, dest_id, run_id) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (sync, row_key) DO UPDATE SET
             content_hash = excluded.content_hash,
             dest_id = COALESCE(excluded.dest_id, delivered.dest_id),
             run_id = excluded.run_id",
    )?;
    let mut delete = tx.prepare_cached("DELETE FROM delivered WHERE sync = ?1 AND row_key = ?2")?;
    let mut rekey = tx.prepare_cached(
        "INSERT INTO delivered (sync, row_key, content_hash, dest_id, run_id)
         SELECT sync, ?3, content_hash, dest_id, run_id FROM delivered WHERE sync = ?1 AND row_key = ?2
         ON CONFLICT (sync, row_key) DO NOTHING",
    )?;
    let mut clear = tx.prepare_cached("DELETE FROM rejected WHERE sync = ?1 AND row_key = ?2")?;
    // Most syncs have no rejected rows: one probe per batch then spares a
    // DELETE per acknowledged row.
    let any_rejected = has_rejections(tx, sync)?;
    let mut clear_rejection = |key: &RowKey| -> rusqlite::Result<()> {
        if any_rejected {
            clear.execute(params![sync, key.as_bytes()])?;
        }
        Ok(())
    };
    for ack in acks {
        match ack {
            Ack::Delivered { key, hash, dest_id } => {
                let id = dest_id.as_ref().map(DestId::as_bytes);
                upsert.execute(params![sync, key.as_bytes(), &hash.to_bytes()[..], id, run])?;
                clear_rejection(key)?;
            }
            Ack::Deleted { key } => {
                delete.execute(params![sync, key.as_bytes()])?;
                clear_rejection(key)?;
            }
            Ack::Rekeyed { from, to } => {
                rekey.execute(params![sync, from.as_bytes(), to.as_bytes()])?;
                delete.execute(params![sync, from.as_bytes()])?;
                clear_rejection(from)?;
            }
        }
    }
    Ok(())
}

fn has_rejections(tx: &Transaction<'_>, sync: &str) -> rusqlite::Result<bool> {
    tx.prepare_cached("SELECT EXISTS (SELECT 1 FROM rejected WHERE sync = ?1)")?
        .query_row([sync], |r| r.get(0))
}

/// Same content rejected again: one more attempt. New content: a new
/// ledger entry starting at this run. (SET expressions see the old row.)
fn record_rejections(
    tx: &Transaction<'_>,
    run: RunId,
    sync: &str,
    batch: &CommitBatch,
) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO rejected (sync, row_key, content_hash, message, first_run, last_run, attempts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, 1)
         ON CONFLICT (sync, row_key) DO UPDATE SET
             attempts = CASE WHEN rejected.content_hash = excluded.content_hash
                             THEN rejected.attempts + 1 ELSE 1 END,
             first_run = CASE WHEN rejected.content_hash = excluded.content_hash
                              THEN rejected.first_run ELSE excluded.first_run END,
             content_hash = excluded.content_hash,
             message = excluded.message,
             last_run = excluded.last_run",
    )?;
    for r in &batch.rejected {
        stmt.execute(params![
            sync,
            r.key.as_bytes(),
            &r.hash.to_bytes()[..],
            r.message,
            run
        ])?;
    }
    Ok(())
}

fn record_samples(tx: &Transaction<'_>, run: RunId, batch: &CommitBatch) -> rusqlite::Result<()> {
    let taken: i64 = tx.query_row(
        "SELECT COUNT(*) FROM run_samples WHERE run_id = ?1",
        [run],
        |r| r.get(0),
    )?;
    let rejected = batch
        .rejected
        .iter()
        .map(|r| ("rejected", Some(r.key.as_bytes()), r.message.as_str()));
    let invalid = batch.invalid.iter().map(|r| {
        (
            "invalid",
            r.key.as_ref().map(RowKey::as_bytes),
            r.message.as_str(),
        )
    });
    let room = usize::try_from(MAX_SAMPLES - taken).unwrap_or(0);
    let mut stmt = tx.prepare_cached(
        "INSERT INTO run_samples (run_id, seq, kind, row_key, message) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (i, (kind, key, message)) in rejected.chain(invalid).take(room).enumerate() {
        stmt.execute(params![run, taken + i as i64, kind, key, message])?;
    }
    Ok(())
}

fn select_runs() -> String {
    format!(
        "SELECT id, sync, status, full_resync, owner, started_at, heartbeat_at, finished_at, error, {}, stage, stage_ms FROM runs",
        COUNT_COLUMNS.join(", ")
    )
}

/// Reads a `runs` row; the outer error is SQLite's, the inner one a status
/// this version does not know (a corrupt or newer store).
fn read_run(r: &Row<'_>) -> rusqlite::Result<Result<RunRecord, StateError>> {
    let status: String = r.get(2)?;
    let mut counts = [0u64; COUNT_COLUMNS.len()];
    for (i, c) in counts.iter_mut().enumerate() {
        *c = u64::try_from(r.get::<_, i64>(9 + i)?).unwrap_or(0);
    }
    let Some(status) = RunStatus::parse(&status) else {
        return Ok(Err(StateError::Corrupt {
            store: "runs".into(),
            detail: format!("unknown run status `{status}`"),
        }));
    };
    Ok(Ok(RunRecord {
        id: r.get(0)?,
        sync: r.get(1)?,
        status,
        full_resync: r.get(3)?,
        owner: r.get(4)?,
        started_at: r.get(5)?,
        heartbeat_at: r.get(6)?,
        finished_at: r.get(7)?,
        error: r.get(8)?,
        stage: r.get(9 + COUNT_COLUMNS.len())?,
        counts: RunCounts::from_array(counts),
        timings: StageTimings::from_json(
            r.get::<_, Option<String>>(10 + COUNT_COLUMNS.len())?
                .as_deref(),
        ),
    }))
}
