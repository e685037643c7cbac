//! The PostgreSQL state store: the same [`StateStore`] contract as
//! [`SqliteStore`](crate::SqliteStore), for a state shared by several
//! processes or hosts (server mode).
//!
//! Tables live in the `sluice` schema and are created by versioned
//! migrations ([`MIGRATIONS`], recorded in `sluice.schema_migrations`); a
//! database migrated by a newer Sluice is refused ([`StateError::TooNew`]).
//!
//! Every table has a `tenant` column leading its primary key, and every
//! statement filters on the store's tenant ([`DEFAULT_TENANT`] for the
//! CLI), so tenancy (row-level security per tenant) can be added without
//! rewriting a migration.
//!
//! **Leases.** A run's lease on its sync is a session-level advisory lock
//! ([`lock_key`] of tenant and sync) held by a connection of its own for as
//! long as the run lasts. PostgreSQL releases it when that connection ends,
//! however the process ends (a killed process's socket is closed by its
//! kernel; a vanished host by the TCP keepalives and user timeout set
//! below), so, as with the file locks of SQLite, a `running` row whose lock
//! is free is stale. Who holds a lock is read from `pg_locks` (no lock is
//! taken to find out) and named by the holder's `application_name`, which
//! is the owner string of its process.
//!
//! **Blocking.** The [`postgres`] client blocks on a runtime of its own,
//! which panics inside a tokio runtime, and the engine calls the store from
//! async code. Every call therefore runs on a scoped thread when the caller
//! is inside a runtime ([`off_runtime`]); clients are dropped the same way.
//!
//! **Batches.** A commit is a fixed number of statements whatever its size:
//! rows travel as arrays (`UNNEST`), never one statement per row.

use std::collections::{HashMap, HashSet};
use std::ops::{Deref, DerefMut};
use std::sync::{mpsc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use postgres::types::{ToSql, Type};
use postgres::{Client, NoTls, Row, Transaction};

use super::schema::{COUNT_COLUMNS, MAX_SAMPLES};
use super::{
    owner, Ack, CommitBatch, DeliveredRow, LedgerEntry, RunCounts, RunId, RunRecord, RunStatus,
    Sample, SampleKind, StageTimings, StateError, StateStore,
};
use crate::{DestId, RowHash, RowKey, Snapshot};

/// The tenant of a store opened without one (the CLI's).
pub const DEFAULT_TENANT: &str = "default";

/// A schema change, applied once, in version order.
pub struct Migration {
    pub version: i64,
    pub description: &'static str,
    pub sql: &'static str,
}

/// Every migration this Sluice knows; the last one's version is the newest
/// schema it can use. Never edit a released migration: add the next one.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description:
            "runs, run samples, delivered snapshot, rejected ledger, config fingerprints (per tenant)",
        sql: MIGRATION_1,
    },
    Migration {
        version: 2,
        description: "runs.outcome_unknown: requests sent that got no response",
        sql: "ALTER TABLE sluice.runs ADD COLUMN outcome_unknown BIGINT NOT NULL DEFAULT 0;",
    },
    Migration {
        version: 3,
        description: "server mode: tenants, API tokens (hashed), projects; row-level security on every tenant table",
        sql: MIGRATION_3,
    },
    Migration {
        version: 4,
        description: "schedule_ticks: the last tick of each scheduled sync that was enqueued",
        sql: MIGRATION_4,
    },
    Migration {
        version: 5,
        description: "server mode: each tenant's network grant ceiling (crates/server/src/ceiling.rs)",
        sql: "ALTER TABLE sluice.tenants ADD COLUMN grant_ceiling TEXT[] NOT NULL DEFAULT ARRAY['*://*:*'];",
    },
    Migration {
        version: 6,
        description: "server mode: tenant secrets, sealed (AES-256-GCM envelope, crates/server/src/secrets.rs), with row-level security",
        sql: MIGRATION_6,
    },
    Migration {
        version: 7,
        description: "server mode: uploaded components (pinned by sha256, row-level security) and each tenant's resource ceilings (crates/server/src/components.rs, resources.rs)",
        sql: MIGRATION_7,
    },
    Migration {
        version: 8,
        description: "console: a sync's schedule can be paused (crates/server/src/console_api.rs)",
        sql: "ALTER TABLE sluice.schedule_ticks ADD COLUMN paused BOOLEAN NOT NULL DEFAULT FALSE;",
    },
    Migration {
        version: 9,
        description: "runs.stage_ms: how long each stage of a run took (StageTimings as JSON)",
        sql: "ALTER TABLE sluice.runs ADD COLUMN stage_ms TEXT;",
    },
];

/// Uploaded components (crates/server/src/components.rs): a tenant's
/// component bytes under a name, pinned by their SHA-256, checked to be a
/// Sluice plugin before they were stored; and the operator's per-tenant
/// resource ceilings (crates/server/src/resources.rs), NULL meaning the
/// server's default.
const MIGRATION_7: &str = "
CREATE TABLE sluice.components (
    tenant TEXT NOT NULL REFERENCES sluice.tenants (tenant) ON DELETE CASCADE,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    world TEXT NOT NULL,
    wit_version TEXT NOT NULL,
    bytes BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, name, sha256)
);
ALTER TABLE sluice.components ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sluice.components
    USING (tenant = current_setting('sluice.tenant', true))
    WITH CHECK (tenant = current_setting('sluice.tenant', true));
ALTER TABLE sluice.tenants
    ADD COLUMN memory_bytes BIGINT CHECK (memory_bytes > 0),
    ADD COLUMN call_deadline_ms BIGINT CHECK (call_deadline_ms > 0),
    ADD COLUMN run_deadline_ms BIGINT CHECK (run_deadline_ms > 0),
    ADD COLUMN concurrent_runs INTEGER CHECK (concurrent_runs > 0),
    ADD COLUMN instances INTEGER CHECK (instances > 0);
";

const MIGRATION_6: &str = "
CREATE TABLE sluice.secrets (
    tenant TEXT NOT NULL REFERENCES sluice.tenants (tenant) ON DELETE CASCADE,
    name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    wrapped_key BYTEA NOT NULL,
    ciphertext BYTEA NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, name)
);
ALTER TABLE sluice.secrets ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sluice.secrets
    USING (tenant = current_setting('sluice.tenant', true))
    WITH CHECK (tenant = current_setting('sluice.tenant', true));
";

const MIGRATION_1: &str = "
CREATE TABLE sluice.runs (
    tenant TEXT NOT NULL,
    id BIGINT GENERATED ALWAYS AS IDENTITY,
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
    PRIMARY KEY (tenant, id)
);
CREATE INDEX runs_by_sync ON sluice.runs (tenant, sync, id);
CREATE INDEX runs_running ON sluice.runs (tenant, sync) WHERE status = 'running';
CREATE TABLE sluice.run_samples (
    tenant TEXT NOT NULL,
    run_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('rejected', 'invalid')),
    row_key BYTEA,
    message TEXT NOT NULL,
    PRIMARY KEY (tenant, run_id, seq),
    FOREIGN KEY (tenant, run_id) REFERENCES sluice.runs (tenant, id)
);
CREATE TABLE sluice.delivered (
    tenant TEXT NOT NULL,
    sync TEXT NOT NULL,
    row_key BYTEA NOT NULL,
    content_hash BYTEA NOT NULL,
    dest_id BYTEA,
    run_id BIGINT NOT NULL,
    PRIMARY KEY (tenant, sync, row_key)
);
CREATE TABLE sluice.rejected (
    tenant TEXT NOT NULL,
    sync TEXT NOT NULL,
    row_key BYTEA NOT NULL,
    content_hash BYTEA NOT NULL,
    message TEXT NOT NULL,
    first_run BIGINT NOT NULL,
    last_run BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    PRIMARY KEY (tenant, sync, row_key)
);
CREATE TABLE sluice.sync_fingerprints (
    tenant TEXT NOT NULL,
    sync TEXT NOT NULL,
    fingerprint BIGINT NOT NULL,
    run_id BIGINT NOT NULL,
    PRIMARY KEY (tenant, sync)
);
";

/// Server mode (`sluice serve`, crates/server): its tables live beside the
/// state's so one version sequence covers the schema, and row-level
/// security covers every table that carries a tenant. The policies compare
/// with the session setting `sluice.tenant` (unset: no row matches). A table's
/// owner (the role that ran the migrations: the CLI, the server's own
/// administrative connections) is not subject to them; the server's tenant
/// work runs as a role that is (`sluice_app`, created by the server).
const MIGRATION_3: &str = "
CREATE TABLE sluice.tenants (
    tenant TEXT PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE sluice.api_tokens (
    tenant TEXT NOT NULL REFERENCES sluice.tenants (tenant) ON DELETE CASCADE,
    id TEXT NOT NULL,
    sha256 BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, id)
);
CREATE UNIQUE INDEX api_tokens_by_id ON sluice.api_tokens (id);
CREATE TABLE sluice.projects (
    tenant TEXT PRIMARY KEY REFERENCES sluice.tenants (tenant) ON DELETE CASCADE,
    revision BIGINT NOT NULL,
    files JSONB NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
DO $$
DECLARE t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['runs', 'run_samples', 'delivered', 'rejected', 'sync_fingerprints',
                             'tenants', 'api_tokens', 'projects'] LOOP
        EXECUTE format('ALTER TABLE sluice.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON sluice.%I
                 USING (tenant = current_setting(''sluice.tenant'', true))
                 WITH CHECK (tenant = current_setting(''sluice.tenant'', true))', t);
    END LOOP;
END $$;
";

/// Scheduling (crates/server/src/schedule.rs): a sync's last enqueued
/// tick. A scheduler enqueues a tick only by moving `last_tick` forward in
/// the same transaction, so however many schedulers run, each tick is
/// enqueued once.
const MIGRATION_4: &str = "
CREATE TABLE sluice.schedule_ticks (
    tenant TEXT NOT NULL,
    sync TEXT NOT NULL,
    schedule TEXT NOT NULL,
    last_tick TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant, sync)
);
ALTER TABLE sluice.schedule_ticks ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sluice.schedule_ticks
    USING (tenant = current_setting('sluice.tenant', true))
    WITH CHECK (tenant = current_setting('sluice.tenant', true));
";

/// The newest schema version this Sluice knows.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Serialises migrations between processes opening one database at once
/// (`CREATE SCHEMA IF NOT EXISTS` alone races). An arbitrary constant.
const MIGRATION_LOCK: i64 = 0x736c_7569_6365_0001;

/// Rows fetched per round trip when streaming the snapshot.
const FETCH_ROWS: i32 = 10_000;

/// How long taking a lease keeps trying a lock that is held (the file
/// lease of the SQLite store waits as long).
const ACQUIRE_PATIENCE: Duration = Duration::from_millis(250);

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Server-side bounds on one session: a statement, and a wait on a row lock
/// (SQLite's busy timeout is the same 10 seconds).
const SESSION_SETTINGS: &str =
    "SET statement_timeout = '5min'; SET lock_timeout = '10s'; SET idle_in_transaction_session_timeout = '10min'";

/// Whether `state` names a PostgreSQL database (rather than a SQLite file).
pub fn is_postgres_url(state: &str) -> bool {
    let lower = state.trim_start().to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// `url` with its password (in the user info or a `password` parameter)
/// replaced by `***`, for messages; a URL that does not parse is not
/// repeated at all.
pub fn scrub_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url.trim()) else {
        return "<a PostgreSQL URL that does not parse>".to_owned();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query_pairs().any(|(k, _)| k == "password") {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "password" { "***".into() } else { v };
                (k.into_owned(), v.into_owned())
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

/// The advisory lock key of a sync's lease: 64 bits of a hash of tenant and
/// sync (a collision would only make two syncs exclude each other).
pub fn lock_key(tenant: &str, sync: &str) -> i64 {
    let mut bytes = Vec::with_capacity(tenant.len() + sync.len() + 1);
    bytes.extend_from_slice(tenant.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(sync.as_bytes());
    xxhash_rust::xxh3::xxh3_64(&bytes) as i64
}

/// Runs `f` where the blocking client may block: on this thread outside a
/// tokio runtime, else on a scoped thread (a panic there is re-raised).
fn off_runtime<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// A client that is closed off the async runtime when dropped.
struct Conn(Option<Client>);

impl Deref for Conn {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.0.as_ref().expect("a connection is only taken by Drop")
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        self.0.as_mut().expect("a connection is only taken by Drop")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            off_runtime(move || drop(client));
        }
    }
}

/// A run's hold on its sync: a connection holding the advisory lock.
struct PgLease {
    conn: Conn,
    key: i64,
}

/// Lets go of the lock before the connection closes, so the sync is free
/// when this returns (a closed connection's lock is released only once the
/// server has noticed).
impl Drop for PgLease {
    fn drop(&mut self) {
        let key = self.key;
        let conn = &mut self.conn;
        let _ = off_runtime(move || conn.execute("SELECT pg_advisory_unlock($1)", &[&key]));
    }
}

/// What sees each `delivered` row: key, hash, destination id and run, all
/// borrowed from the fetched chunk.
type VisitDelivered<'v> = dyn FnMut(&[u8], RowHash, Option<&[u8]>, RunId) + 'v;

/// What a store call can fail with before it is given its context.
enum Failure {
    Pg(postgres::Error),
    State(StateError),
}

impl From<postgres::Error> for Failure {
    fn from(e: postgres::Error) -> Self {
        Failure::Pg(e)
    }
}

impl From<StateError> for Failure {
    fn from(e: StateError) -> Self {
        Failure::State(e)
    }
}

/// PostgreSQL implementation of [`StateStore`].
pub struct PostgresStore {
    conn: Mutex<Conn>,
    config: postgres::Config,
    /// The URL with its password hidden: how messages name the store.
    location: String,
    tenant: String,
    /// The role the store's sessions act as after migrating (server mode:
    /// one subject to row-level security), if not the login role.
    role: Option<String>,
    owner: String,
    /// The leases of the runs this store began and has not finished.
    leases: HashMap<RunId, PgLease>,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`)
    /// as the [`DEFAULT_TENANT`], creating or upgrading the `sluice` schema.
    pub fn connect(url: &str) -> Result<Self, StateError> {
        Self::connect_tenant(url, DEFAULT_TENANT)
    }

    /// Like [`PostgresStore::connect`], for the state of `tenant`.
    pub fn connect_tenant(url: &str, tenant: &str) -> Result<Self, StateError> {
        Self::connect_tenant_as(url, tenant, None)
    }

    /// Like [`PostgresStore::connect_tenant`], with every session acting as
    /// `role` once the schema is migrated, so PostgreSQL's row-level
    /// security, not only this store's `WHERE tenant = ...`, keeps it to
    /// `tenant`'s rows (the login role must be a member of `role`).
    pub fn connect_tenant_as(
        url: &str,
        tenant: &str,
        role: Option<&str>,
    ) -> Result<Self, StateError> {
        let location = scrub_url(url);
        let mut config: postgres::Config = url.trim().parse().map_err(|e| StateError::Connect {
            store: location.clone(),
            detail: format!("not a valid PostgreSQL URL: {e}"),
        })?;
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .keepalives_interval(Duration::from_secs(10))
            .keepalives_retries(3)
            .tcp_user_timeout(Duration::from_secs(60));
        let owner = owner::current_owner();
        config.application_name(&application_name(&owner));
        let conn = open_conn(&config, &location, tenant, None)?;
        let mut store = PostgresStore {
            conn: Mutex::new(conn),
            config,
            location,
            tenant: tenant.to_owned(),
            role: role.map(str::to_owned),
            owner,
            leases: HashMap::new(),
        };
        store.migrate()?;
        if let Some(role) = role {
            store.with_conn(&format!("acting as role `{role}`"), |c| {
                c.batch_execute(&format!("SET ROLE {}", quote_ident(role)))?;
                Ok(())
            })?;
        }
        Ok(store)
    }

    /// The tenant whose state this store reads and writes.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The schema version of the database (after this store migrated it).
    pub fn schema_version(&self) -> Result<i64, StateError> {
        self.with_conn("reading the schema version", |c| {
            Ok(c.query_one(
                "SELECT COALESCE(MAX(version), 0) FROM sluice.schema_migrations",
                &[],
            )?
            .get(0))
        })
    }

    /// Applies the migrations the database lacks, in one transaction, under
    /// a lock that serialises processes migrating at once.
    fn migrate(&mut self) -> Result<(), StateError> {
        let location = self.location.clone();
        self.with_conn("migrating the schema", |c| {
            let mut tx = c.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
            // DDL only on a database that lacks the schema, so a role that
            // may not create schemas can use one set up for it.
            let present: bool = tx
                .query_one(
                    "SELECT to_regclass('sluice.schema_migrations') IS NOT NULL",
                    &[],
                )?
                .get(0);
            if !present {
                tx.batch_execute(
                    "CREATE SCHEMA IF NOT EXISTS sluice;
                     CREATE TABLE sluice.schema_migrations (
                         version BIGINT PRIMARY KEY,
                         description TEXT NOT NULL,
                         applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
                     );",
                )?;
            }
            let found: i64 = tx
                .query_one(
                    "SELECT COALESCE(MAX(version), 0) FROM sluice.schema_migrations",
                    &[],
                )?
                .get(0);
            if found > latest_version() {
                return Err(StateError::TooNew {
                    store: location,
                    found,
                    supported: latest_version(),
                }
                .into());
            }
            for m in MIGRATIONS.iter().filter(|m| m.version > found) {
                tx.batch_execute(m.sql)?;
                tx.execute(
                    "INSERT INTO sluice.schema_migrations (version, description) VALUES ($1, $2)",
                    &[&m.version, &m.description],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// Runs `f` on the store's connection, off the async runtime; a database
    /// error is reported as `action` on this store.
    fn with_conn<R: Send>(
        &self,
        action: &str,
        f: impl FnOnce(&mut Client) -> Result<R, Failure> + Send,
    ) -> Result<R, StateError> {
        let mut guard = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let client: &mut Client = &mut guard;
        off_runtime(move || f(client)).map_err(|e| match e {
            Failure::Pg(e) => self.err(action, e),
            Failure::State(e) => e,
        })
    }

    fn err(&self, action: &str, source: postgres::Error) -> StateError {
        pg_err(&self.location, action, source)
    }

    /// The lease on `sync`, or who holds it.
    fn lease(&self, sync: &str) -> Result<PgLease, StateError> {
        let key = lock_key(&self.tenant, sync);
        let mut conn = open_conn(
            &self.config,
            &self.location,
            &self.tenant,
            self.role.as_deref(),
        )?;
        let client: &mut Client = &mut conn;
        let taken = off_runtime(move || -> Result<bool, postgres::Error> {
            // A lease connection idles for the whole run; a server-wide idle
            // session timeout must not end it (PostgreSQL 14 and later).
            let _ = client.batch_execute("SET idle_session_timeout = 0");
            // A lock let go by a session that is ending is free a moment
            // later: try a little while, far too short to wait for a run.
            let deadline = Instant::now() + ACQUIRE_PATIENCE;
            loop {
                let row = client.query_one("SELECT pg_try_advisory_lock($1)", &[&key])?;
                if row.get::<_, bool>(0) || Instant::now() >= deadline {
                    return Ok(row.get(0));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
        .map_err(|e| self.err(&format!("locking sync `{sync}`"), e))?;
        if taken {
            return Ok(PgLease { conn, key });
        }
        drop(conn);
        let tenant = self.tenant.clone();
        let (holder, running) = self.with_conn(&format!("reading the runs of sync `{sync}`"), |c| {
            let holder = lock_holder(c, key)?;
            let running = c
                .query_opt(
                    "SELECT id, owner FROM sluice.runs WHERE tenant = $1 AND sync = $2 AND status = 'running'
                     ORDER BY id DESC LIMIT 1",
                    &[&tenant, &sync],
                )?
                .map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1)));
            Ok((holder, running))
        })?;
        Err(match running {
            Some((run, owner)) => StateError::AlreadyRunning {
                sync: sync.to_owned(),
                run,
                owner,
            },
            None => StateError::Locked {
                sync: sync.to_owned(),
                holder: holder.unwrap_or_else(|| "a session that has just let go".to_owned()),
                path: format!("advisory lock {key} in {}", self.location),
            },
        })
    }

    /// Ends a running run: its status, and the stage and error of a failure.
    fn end_run(
        &mut self,
        run: RunId,
        status: RunStatus,
        stage: Option<&str>,
        error: Option<&str>,
    ) -> Result<(), StateError> {
        let tenant = self.tenant.clone();
        let error = error.map(no_nul);
        self.with_conn(&format!("finishing run {run}"), |c| {
            let mut tx = c.transaction()?;
            running_sync(&mut tx, &tenant, run)?;
            tx.execute(
                "UPDATE sluice.runs SET status = $3, finished_at = $4, heartbeat_at = $4, error = $5, stage = $6
                 WHERE tenant = $1 AND id = $2",
                &[&tenant, &run, &status.as_str(), &now_micros(), &error, &stage],
            )?;
            tx.commit()?;
            Ok(())
        })?;
        // The run is over: its sync is free for the next one.
        if let Some(lease) = self.leases.remove(&run) {
            drop(lease);
        }
        Ok(())
    }

    /// Streams `delivered` rows of a sync to `visit`, a chunk at a time,
    /// through a cursor (a portal) so the result is never held whole.
    fn visit_delivered(
        &self,
        sync: &str,
        action: &str,
        visit: &mut VisitDelivered<'_>,
    ) -> Result<(), StateError> {
        let mut guard = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let client: &mut Client = &mut guard;
        let tenant = self.tenant.as_str();
        let (chunks, received) = mpsc::sync_channel::<Vec<Row>>(2);
        let mut corrupt = None;
        let fetched = std::thread::scope(|s| {
            let fetcher = s.spawn(move || -> Result<(), postgres::Error> {
                let mut tx = client.transaction()?;
                // In key order (the primary key's index): a snapshot larger
                // than its memory bound spills sorted runs, and keys arriving
                // in order are never looked up in the spill while loading.
                let portal = tx.bind(
                    "SELECT row_key, content_hash, dest_id, run_id FROM sluice.delivered
                     WHERE tenant = $1 AND sync = $2 ORDER BY row_key",
                    &[&tenant, &sync],
                )?;
                loop {
                    let rows = tx.query_portal(&portal, FETCH_ROWS)?;
                    // A closed receiver means the reader stopped early.
                    if rows.is_empty() || chunks.send(rows).is_err() {
                        break;
                    }
                }
                tx.commit()
            });
            // Consuming the receiver drops it on any exit from the loop, so
            // the fetcher never waits on a reader that has gone.
            'chunks: for chunk in received {
                for row in &chunk {
                    let key: &[u8] = row.get(0);
                    let hash_bytes: &[u8] = row.get(1);
                    let Some(hash) = RowHash::from_slice(hash_bytes) else {
                        corrupt = Some(hash_bytes.len());
                        break 'chunks;
                    };
                    visit(key, hash, row.get(2), row.get(3));
                }
            }
            fetcher
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        });
        if let Some(len) = corrupt {
            return Err(self.corrupt_hash(len, "delivered"));
        }
        fetched.map_err(|e| self.err(action, e))
    }

    fn corrupt_hash(&self, len: usize, table: &str) -> StateError {
        StateError::Corrupt {
            store: self.location.clone(),
            detail: format!("a content hash in `sluice.{table}` has {len} bytes, not 16"),
        }
    }
}

/// A connection whose session belongs to `tenant` (the setting the
/// row-level security policies compare with), and, with `role`, acts as that
/// role from then on.
fn open_conn(
    config: &postgres::Config,
    location: &str,
    tenant: &str,
    role: Option<&str>,
) -> Result<Conn, StateError> {
    let client = off_runtime(|| -> Result<Client, postgres::Error> {
        let mut client = config.connect(NoTls)?;
        client.batch_execute(SESSION_SETTINGS)?;
        enter_tenant(&mut client, tenant, role)?;
        Ok(client)
    })
    .map_err(|e| StateError::Connect {
        store: location.to_owned(),
        detail: describe(&e),
    })?;
    Ok(Conn(Some(client)))
}

/// Makes the session `tenant`'s (see [`MIGRATIONS`] version 3) and, with
/// `role`, that role's.
fn enter_tenant(c: &mut Client, tenant: &str, role: Option<&str>) -> Result<(), postgres::Error> {
    c.execute("SELECT set_config('sluice.tenant', $1, false)", &[&tenant])?;
    if let Some(role) = role {
        c.batch_execute(&format!("SET ROLE {}", quote_ident(role)))?;
    }
    Ok(())
}

/// `name` as a double-quoted SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `application_name` holds at most 63 bytes.
fn application_name(owner: &str) -> String {
    let mut name = format!("sluice {owner}");
    while name.len() > 63 {
        name.pop();
    }
    name
}

fn pg_err(store: &str, action: &str, source: postgres::Error) -> StateError {
    StateError::Postgres {
        store: store.to_owned(),
        action: action.to_owned(),
        detail: describe(&source),
        source,
    }
}

/// The whole of a client error: the client's own text says only "db
/// error" and keeps the server's message (or an I/O cause) in its source.
fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut text = format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
        if let Some(detail) = db.detail() {
            text.push_str(&format!("; {detail}"));
        }
        if let Some(hint) = db.hint() {
            text.push_str(&format!("; hint: {hint}"));
        }
        return text;
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(&format!(": {more}"));
        }
        cause = c.source();
    }
    text
}

/// Who holds advisory lock `key` in this database, if anyone: the holder's
/// `application_name` and backend pid. Reads `pg_locks`; takes no lock.
fn lock_holder(c: &mut Client, key: i64) -> Result<Option<String>, postgres::Error> {
    // A bigint key shows as its high half in `classid`, its low half in
    // `objid`, with `objsubid` 1.
    let high = (key >> 32) as u32;
    let low = key as u32;
    let row = c.query_opt(
        "SELECT COALESCE(a.application_name, ''), l.pid FROM pg_locks l
         LEFT JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND l.classid = $1 AND l.objid = $2
         LIMIT 1",
        &[&high, &low],
    )?;
    Ok(row.map(|r| {
        let name: String = r.get(0);
        let pid: i32 = r.get(1);
        let name = name.strip_prefix("sluice ").unwrap_or(&name).to_owned();
        if name.is_empty() {
            format!("PostgreSQL backend {pid}")
        } else {
            format!("{name} (PostgreSQL backend {pid})")
        }
    }))
}

/// The sync of `run`, locked for this transaction, if the run is `running`.
fn running_sync(tx: &mut Transaction<'_>, tenant: &str, run: RunId) -> Result<String, Failure> {
    let row = tx.query_opt(
        "SELECT sync, status FROM sluice.runs WHERE tenant = $1 AND id = $2 FOR UPDATE",
        &[&tenant, &run],
    )?;
    let Some(row) = row else {
        return Err(StateError::UnknownRun { run }.into());
    };
    let (sync, status): (String, String) = (row.get(0), row.get(1));
    if status != "running" {
        let status = RunStatus::parse(&status).unwrap_or(RunStatus::Failed);
        return Err(StateError::NotRunning { run, sync, status }.into());
    }
    Ok(sync)
}

/// Marks the `running` runs (of `sync`, or all) of `tenant` that `alive`
/// does not vouch for as killed, with `why`; returns their ids.
fn kill_stale_runs(
    tx: &mut Transaction<'_>,
    tenant: &str,
    sync: Option<&str>,
    alive: &mut dyn FnMut(&mut Transaction<'_>, RunId, &str) -> Result<bool, postgres::Error>,
    why: &str,
) -> Result<Vec<RunId>, postgres::Error> {
    let running: Vec<(RunId, String, String)> = tx
        .query(
            "SELECT id, sync, owner FROM sluice.runs
             WHERE tenant = $1 AND status = 'running' AND ($2::text IS NULL OR sync = $2)
             ORDER BY id FOR UPDATE",
            &[&tenant, &sync],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let mut killed = Vec::new();
    for (id, sync, owner) in running {
        if alive(tx, id, &sync)? {
            continue;
        }
        tx.execute(
            "UPDATE sluice.runs SET status = 'killed', finished_at = $3, error = $4
             WHERE tenant = $1 AND id = $2",
            &[
                &tenant,
                &id,
                &now_micros(),
                &format!("{why} (owner was {owner})"),
            ],
        )?;
        killed.push(id);
    }
    Ok(killed)
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

/// PostgreSQL text cannot hold NUL; a message that has one (a plugin's
/// text, say) keeps a visible replacement instead of failing the commit.
fn no_nul(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

/// A parameter with its type, for the one-round-trip `*_typed` calls.
fn typed<T: ToSql + Sync>(value: &T, ty: Type) -> (&(dyn ToSql + Sync), Type) {
    (value, ty)
}

impl StateStore for PostgresStore {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn begin_run(&mut self, sync: &str, full_resync: bool) -> Result<RunId, StateError> {
        // The lease first: whoever holds it is running the sync.
        let lease = self.lease(sync)?;
        let (tenant, owner) = (self.tenant.clone(), self.owner.clone());
        let id = self.with_conn(&format!("starting a run of sync `{sync}`"), |c| {
            let mut tx = c.transaction()?;
            // Holding the lease, every `running` row of this sync is stale.
            kill_stale_runs(
                &mut tx,
                &tenant,
                Some(sync),
                &mut |_, _, _| Ok(false),
                "the process running it is gone: its lock was free",
            )?;
            let id: RunId = tx
                .query_one(
                    "INSERT INTO sluice.runs (tenant, sync, status, full_resync, owner, started_at, heartbeat_at)
                     VALUES ($1, $2, 'running', $3, $4, $5, $5) RETURNING id",
                    &[&tenant, &sync, &full_resync, &owner, &now_micros()],
                )?
                .get(0);
            tx.commit()?;
            Ok(id)
        })?;
        self.leases.insert(id, lease);
        Ok(id)
    }

    fn commit_batch(&mut self, run: RunId, batch: &CommitBatch) -> Result<(), StateError> {
        let tenant = self.tenant.as_str();
        let location = self.location.as_str();
        self.with_conn(&format!("committing a batch of run {run}"), |c| {
            let mut tx = c.transaction()?;
            let sync = running_sync(&mut tx, tenant, run)?;
            let action = format!("committing a batch of run {run} (sync `{sync}`)");
            let with_context = |e: postgres::Error| Failure::State(pg_err(location, &action, e));
            apply_batch(&mut tx, tenant, run, &sync, batch).map_err(with_context)?;
            tx.commit().map_err(with_context)?;
            Ok(())
        })
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
        let tenant = self.tenant.clone();
        let json = timings.to_json();
        self.with_conn(&format!("recording the stage timings of run {run}"), |c| {
            let mut tx = c.transaction()?;
            running_sync(&mut tx, &tenant, run)?;
            tx.execute(
                "UPDATE sluice.runs SET stage_ms = $3 WHERE tenant = $1 AND id = $2",
                &[&tenant, &run, &json],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn mark_interrupted_runs(&mut self) -> Result<Vec<RunId>, StateError> {
        let mine: Vec<RunId> = self.leases.keys().copied().collect();
        let tenant = self.tenant.clone();
        self.with_conn("marking interrupted runs", |c| {
            let mut tx = c.transaction()?;
            // A run is alive while someone holds its sync's lease: this
            // store (its own runs), or another session.
            let mut alive = |tx: &mut Transaction<'_>, id: RunId, sync: &str| -> Result<bool, postgres::Error> {
                if mine.contains(&id) {
                    return Ok(true);
                }
                let key = lock_key(&tenant, sync);
                let (high, low) = ((key >> 32) as u32, key as u32);
                tx.query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
                       AND objsubid = 1 AND classid = $1 AND objid = $2
                       AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))",
                    &[&high, &low],
                )
                .map(|r| r.get::<_, bool>(0))
            };
            let killed = kill_stale_runs(
                &mut tx,
                &tenant,
                None,
                &mut alive,
                "the process running it is gone: its lock was free",
            )?;
            tx.commit()?;
            Ok(killed)
        })
    }

    fn unlock(&mut self, sync: &str) -> Result<Vec<RunId>, StateError> {
        // Holding the lease proves no process runs the sync; it is let go
        // when this returns.
        let lease = self.lease(sync)?;
        let tenant = self.tenant.clone();
        let killed = self.with_conn(&format!("unlocking sync `{sync}`"), |c| {
            let mut tx = c.transaction()?;
            let killed = kill_stale_runs(
                &mut tx,
                &tenant,
                Some(sync),
                &mut |_, _, _| Ok(false),
                "unlocked by the operator (`sluice runs unlock`): its lock was free",
            )?;
            tx.commit()?;
            Ok(killed)
        });
        drop(lease);
        killed
    }

    fn load_snapshot(&self, sync: &str) -> Result<Snapshot, StateError> {
        let action = format!("loading the snapshot of sync `{sync}`");
        let tenant = self.tenant.as_str();
        let (count, key_bytes): (i64, i64) = self.with_conn(&action, |c| {
            let r = c.query_one(
                "SELECT COUNT(*), COALESCE(SUM(octet_length(row_key)), 0)::BIGINT
                 FROM sluice.delivered WHERE tenant = $1 AND sync = $2",
                &[&tenant, &sync],
            )?;
            Ok((r.get(0), r.get(1)))
        })?;
        let count = usize::try_from(count).unwrap_or(0);
        let avg = usize::try_from(key_bytes).unwrap_or(0) / count.max(1) + 1;
        let mut snapshot = Snapshot::with_capacity(count, avg);
        let mut failure = None;
        self.visit_delivered(sync, &action, &mut |key, hash, dest_id, _| {
            if failure.is_none() {
                failure = snapshot.insert_delivered(key, hash, dest_id).err();
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
        self.visit_delivered(sync, &action, &mut |key, hash, dest_id, run| {
            visit(DeliveredRow {
                key: RowKey::from_bytes(key),
                hash,
                dest_id: dest_id.map(DestId::from_bytes),
                run,
            })
        })
    }

    fn ledger(&self, sync: &str) -> Result<Vec<LedgerEntry>, StateError> {
        let tenant = self.tenant.as_str();
        let rows = self.with_conn(&format!("reading the ledger of sync `{sync}`"), |c| {
            Ok(c.query(
                "SELECT row_key, content_hash, message, first_run, last_run, attempts
                 FROM sluice.rejected WHERE tenant = $1 AND sync = $2 ORDER BY row_key",
                &[&tenant, &sync],
            )?)
        })?;
        rows.iter()
            .map(|r| {
                let hash: &[u8] = r.get(1);
                Ok(LedgerEntry {
                    key: RowKey::from_bytes(r.get::<_, &[u8]>(0)),
                    hash: RowHash::from_slice(hash)
                        .ok_or_else(|| self.corrupt_hash(hash.len(), "rejected"))?,
                    message: r.get(2),
                    first_run: r.get(3),
                    last_run: r.get(4),
                    attempts: u64::try_from(r.get::<_, i64>(5)).unwrap_or(0),
                })
            })
            .collect()
    }

    fn forget_snapshot(&mut self, sync: &str) -> Result<u64, StateError> {
        let tenant = self.tenant.as_str();
        self.with_conn(&format!("forgetting the snapshot of sync `{sync}`"), |c| {
            Ok(c.execute(
                "DELETE FROM sluice.delivered WHERE tenant = $1 AND sync = $2",
                &[&tenant, &sync],
            )?)
        })
    }

    fn forget_keys(&mut self, sync: &str, keys: &[RowKey]) -> Result<u64, StateError> {
        let lease = self.lease(sync)?;
        let tenant = self.tenant.clone();
        let keys: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        let forgotten = self.with_conn(
            &format!("forgetting {} key(s) of sync `{sync}`", keys.len()),
            |c| {
                Ok(c.execute(
                    "DELETE FROM sluice.delivered
                     WHERE tenant = $1 AND sync = $2 AND row_key = ANY($3)",
                    &[&tenant, &sync, &keys],
                )?)
            },
        );
        drop(lease);
        forgotten
    }

    fn run(&self, run: RunId) -> Result<Option<RunRecord>, StateError> {
        let tenant = self.tenant.as_str();
        let sql = format!("{} WHERE tenant = $1 AND id = $2", select_runs());
        let row = self.with_conn(&format!("reading run {run}"), |c| {
            Ok(c.query_opt(&sql, &[&tenant, &run])?)
        })?;
        row.as_ref().map(|r| self.read_run(r)).transpose()
    }

    fn runs(&self, sync: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        let tenant = self.tenant.as_str();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = format!(
            "{} WHERE tenant = $1 AND ($2::text IS NULL OR sync = $2) ORDER BY id DESC LIMIT $3",
            select_runs()
        );
        let rows = self.with_conn("listing runs", |c| {
            Ok(c.query(&sql, &[&tenant, &sync, &limit])?)
        })?;
        rows.iter().map(|r| self.read_run(r)).collect()
    }

    fn samples(&self, run: RunId) -> Result<Vec<Sample>, StateError> {
        let tenant = self.tenant.as_str();
        let rows = self.with_conn(&format!("reading the samples of run {run}"), |c| {
            Ok(c.query(
                "SELECT kind, row_key, message FROM sluice.run_samples
                 WHERE tenant = $1 AND run_id = $2 ORDER BY seq",
                &[&tenant, &run],
            )?)
        })?;
        Ok(rows
            .iter()
            .map(|r| Sample {
                kind: match r.get::<_, &str>(0) {
                    "rejected" => SampleKind::Rejected,
                    _ => SampleKind::Invalid,
                },
                key: r.get::<_, Option<&[u8]>>(1).map(RowKey::from_bytes),
                message: r.get(2),
            })
            .collect())
    }

    fn fingerprint(&self, sync: &str) -> Result<Option<u64>, StateError> {
        let tenant = self.tenant.as_str();
        let action = format!("reading the config fingerprint of sync `{sync}`");
        self.with_conn(&action, |c| {
            // Stored as the same 64 bits in a signed column.
            Ok(c.query_opt(
                "SELECT fingerprint FROM sluice.sync_fingerprints WHERE tenant = $1 AND sync = $2",
                &[&tenant, &sync],
            )?
            .map(|r| r.get::<_, i64>(0) as u64))
        })
    }

    fn record_fingerprint(
        &mut self,
        sync: &str,
        fingerprint: u64,
        run: RunId,
    ) -> Result<(), StateError> {
        let tenant = self.tenant.as_str();
        let action = format!("recording the config fingerprint of sync `{sync}`");
        self.with_conn(&action, |c| {
            c.execute(
                "INSERT INTO sluice.sync_fingerprints (tenant, sync, fingerprint, run_id) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (tenant, sync) DO UPDATE SET fingerprint = excluded.fingerprint, run_id = excluded.run_id",
                &[&tenant, &sync, &(fingerprint as i64), &run],
            )?;
            Ok(())
        })
    }
}

impl PostgresStore {
    fn read_run(&self, r: &Row) -> Result<RunRecord, StateError> {
        let status: &str = r.get(2);
        let status = RunStatus::parse(status).ok_or_else(|| StateError::Corrupt {
            store: self.location.clone(),
            detail: format!("unknown run status `{status}` in `sluice.runs`"),
        })?;
        let mut counts = [0u64; COUNT_COLUMNS.len()];
        for (i, c) in counts.iter_mut().enumerate() {
            *c = u64::try_from(r.get::<_, i64>(9 + i)).unwrap_or(0);
        }
        Ok(RunRecord {
            id: r.get(0),
            sync: r.get(1),
            status,
            full_resync: r.get(3),
            owner: r.get(4),
            started_at: r.get(5),
            heartbeat_at: r.get(6),
            finished_at: r.get(7),
            error: r.get(8),
            stage: r.get(9 + COUNT_COLUMNS.len()),
            counts: RunCounts::from_array(counts),
            timings: StageTimings::from_json(r.get(10 + COUNT_COLUMNS.len())),
        })
    }
}

fn select_runs() -> String {
    format!(
        "SELECT id, sync, status, full_resync, owner, started_at, heartbeat_at, finished_at, error, {}, stage, stage_ms
         FROM sluice.runs",
        COUNT_COLUMNS.join(", ")
    )
}

/// The statements of one commit; the caller owns the transaction. Each
/// statement carries a whole batch as arrays.
fn apply_batch(
    tx: &mut Transaction<'_>,
    tenant: &str,
    run: RunId,
    sync: &str,
    batch: &CommitBatch,
) -> Result<(), postgres::Error> {
    add_progress(tx, tenant, run, &batch.progress)?;
    apply_acks(tx, tenant, run, sync, &batch.acknowledged)?;
    record_rejections(tx, tenant, run, sync, &batch.rejected)?;
    record_samples(tx, tenant, run, batch)
}

fn add_progress(
    tx: &mut Transaction<'_>,
    tenant: &str,
    run: RunId,
    counts: &RunCounts,
) -> Result<(), postgres::Error> {
    let sets: Vec<String> = COUNT_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = {c} + ${}", i + 4))
        .collect();
    let sql = format!(
        "UPDATE sluice.runs SET heartbeat_at = $3, {} WHERE tenant = $1 AND id = $2",
        sets.join(", ")
    );
    let now = now_micros();
    let values: Vec<i64> = counts.as_array().into_iter().map(to_sql_count).collect();
    let mut params: Vec<(&(dyn ToSql + Sync), Type)> = vec![
        typed(&tenant, Type::TEXT),
        typed(&run, Type::INT8),
        typed(&now, Type::INT8),
    ];
    params.extend(values.iter().map(|v| typed(v, Type::INT8)));
    tx.execute_typed(&sql, &params)?;
    Ok(())
}

/// What an acknowledgement does, for grouping them into statements.
#[derive(PartialEq, Eq, Clone, Copy)]
enum AckKind {
    Delivered,
    Deleted,
    Rekeyed,
}

fn ack_kind(ack: &Ack) -> AckKind {
    match ack {
        Ack::Delivered { .. } => AckKind::Delivered,
        Ack::Deleted { .. } => AckKind::Deleted,
        Ack::Rekeyed { .. } => AckKind::Rekeyed,
    }
}

/// The keys an acknowledgement touches in `delivered`.
fn ack_keys(ack: &Ack) -> Vec<&[u8]> {
    match ack {
        Ack::Delivered { key, .. } | Ack::Deleted { key } => vec![key.as_bytes()],
        Ack::Rekeyed { from, to } => vec![from.as_bytes(), to.as_bytes()],
    }
}

/// Splits acknowledgements into runs of one kind in which no key repeats:
/// applying each run as one statement, in order, has the effect of applying
/// every acknowledgement one by one (and `ON CONFLICT` never meets a key
/// twice in one statement). A batch usually is a single run.
fn ack_runs(acks: &[Ack]) -> Vec<&[Ack]> {
    let mut runs = Vec::new();
    let mut start = 0;
    let mut seen: HashSet<&[u8]> = HashSet::new();
    for (i, ack) in acks.iter().enumerate() {
        let keys = ack_keys(ack);
        let same_kind = i == start || ack_kind(&acks[start]) == ack_kind(ack);
        if !same_kind || keys.iter().any(|k| seen.contains(k)) {
            runs.push(&acks[start..i]);
            start = i;
            seen.clear();
        }
        seen.extend(keys);
    }
    if start < acks.len() {
        runs.push(&acks[start..]);
    }
    runs
}

fn apply_acks(
    tx: &mut Transaction<'_>,
    tenant: &str,
    run: RunId,
    sync: &str,
    acks: &[Ack],
) -> Result<(), postgres::Error> {
    for group in ack_runs(acks) {
        match ack_kind(&group[0]) {
            AckKind::Delivered => upsert_delivered(tx, tenant, run, sync, group)?,
            AckKind::Deleted => {
                let keys: Vec<&[u8]> = group.iter().flat_map(ack_keys).collect();
                delete_delivered(tx, tenant, sync, &keys)?;
            }
            AckKind::Rekeyed => rekey_delivered(tx, tenant, sync, group)?,
        }
    }
    // Every acknowledged key leaves the ledger (a rekeyed one by its old key).
    let cleared: Vec<&[u8]> = acks
        .iter()
        .map(|a| match a {
            Ack::Delivered { key, .. } | Ack::Deleted { key } => key.as_bytes(),
            Ack::Rekeyed { from, .. } => from.as_bytes(),
        })
        .collect();
    if !cleared.is_empty() {
        tx.execute_typed(
            "DELETE FROM sluice.rejected WHERE tenant = $1 AND sync = $2 AND row_key = ANY($3)",
            &[
                typed(&tenant, Type::TEXT),
                typed(&sync, Type::TEXT),
                typed(&cleared, Type::BYTEA_ARRAY),
            ],
        )?;
    }
    Ok(())
}

fn upsert_delivered(
    tx: &mut Transaction<'_>,
    tenant: &str,
    run: RunId,
    sync: &str,
    group: &[Ack],
) -> Result<(), postgres::Error> {
    let mut keys: Vec<&[u8]> = Vec::with_capacity(group.len());
    let mut hashes: Vec<[u8; 16]> = Vec::with_capacity(group.len());
    let mut ids: Vec<Option<&[u8]>> = Vec::with_capacity(group.len());
    for ack in group {
        if let Ack::Delivered { key, hash, dest_id } = ack {
            keys.push(key.as_bytes());
            hashes.push(hash.to_bytes());
            ids.push(dest_id.as_ref().map(DestId::as_bytes));
        }
    }
    let hashes: Vec<&[u8]> = hashes.iter().map(|h| &h[..]).collect();
    tx.execute_typed(
        "INSERT INTO sluice.delivered AS d (tenant, sync, row_key, content_hash, dest_id, run_id)
         SELECT $1, $2, t.k, t.h, t.i, $3 FROM UNNEST($4::bytea[], $5::bytea[], $6::bytea[]) AS t(k, h, i)
         ON CONFLICT (tenant, sync, row_key) DO UPDATE SET
             content_hash = excluded.content_hash,
             dest_id = COALESCE(excluded.dest_id, d.dest_id),
             run_id = excluded.run_id",
        &[
            typed(&tenant, Type::TEXT),
            typed(&sync, Type::TEXT),
            typed(&run, Type::INT8),
            typed(&keys, Type::BYTEA_ARRAY),
            typed(&hashes, Type::BYTEA_ARRAY),
            typed(&ids, Type::BYTEA_ARRAY),
        ],
    )?;
    Ok(())
}

fn delete_delivered(
    tx: &mut Transaction<'_>,
    tenant: &str,
    sync: &str,
    keys: &[&[u8]],
) -> Result<(), postgres::Error> {
    tx.execute_typed(
        "DELETE FROM sluice.delivered WHERE tenant = $1 AND sync = $2 AND row_key = ANY($3)",
        &[
            typed(&tenant, Type::TEXT),
            typed(&sync, Type::TEXT),
            typed(&keys, Type::BYTEA_ARRAY),
        ],
    )?;
    Ok(())
}

/// Moves each entry from its old key to its new one, unless the new key
/// already has an entry, then drops the old keys.
fn rekey_delivered(
    tx: &mut Transaction<'_>,
    tenant: &str,
    sync: &str,
    group: &[Ack],
) -> Result<(), postgres::Error> {
    let (from, to): (Vec<&[u8]>, Vec<&[u8]>) = group
        .iter()
        .filter_map(|a| match a {
            Ack::Rekeyed { from, to } => Some((from.as_bytes(), to.as_bytes())),
            _ => None,
        })
        .unzip();
    tx.execute_typed(
        "INSERT INTO sluice.delivered (tenant, sync, row_key, content_hash, dest_id, run_id)
         SELECT d.tenant, d.sync, t.new_key, d.content_hash, d.dest_id, d.run_id
         FROM UNNEST($3::bytea[], $4::bytea[]) AS t(old_key, new_key)
         JOIN sluice.delivered d ON d.tenant = $1 AND d.sync = $2 AND d.row_key = t.old_key
         ON CONFLICT (tenant, sync, row_key) DO NOTHING",
        &[
            typed(&tenant, Type::TEXT),
            typed(&sync, Type::TEXT),
            typed(&from, Type::BYTEA_ARRAY),
            typed(&to, Type::BYTEA_ARRAY),
        ],
    )?;
    delete_delivered(tx, tenant, sync, &from)
}

/// Same content rejected again: one more attempt. New content: a new
/// ledger entry starting at this run. (SET expressions see the old row.)
fn record_rejections(
    tx: &mut Transaction<'_>,
    tenant: &str,
    run: RunId,
    sync: &str,
    rejected: &[crate::Rejection],
) -> Result<(), postgres::Error> {
    // A key rejected twice in one batch goes to a later statement, as one
    // statement cannot update a row twice.
    let mut start = 0;
    while start < rejected.len() {
        let mut seen = HashSet::new();
        let end = rejected[start..]
            .iter()
            .position(|r| !seen.insert(r.key.as_bytes()))
            .map_or(rejected.len(), |n| start + n);
        let group = &rejected[start..end];
        let keys: Vec<&[u8]> = group.iter().map(|r| r.key.as_bytes()).collect();
        let hashes: Vec<[u8; 16]> = group.iter().map(|r| r.hash.to_bytes()).collect();
        let hashes: Vec<&[u8]> = hashes.iter().map(|h| &h[..]).collect();
        let messages: Vec<String> = group.iter().map(|r| no_nul(&r.message)).collect();
        tx.execute_typed(
            "INSERT INTO sluice.rejected AS r (tenant, sync, row_key, content_hash, message, first_run, last_run, attempts)
             SELECT $1, $2, t.k, t.h, t.m, $3, $3, 1 FROM UNNEST($4::bytea[], $5::bytea[], $6::text[]) AS t(k, h, m)
             ON CONFLICT (tenant, sync, row_key) DO UPDATE SET
                 attempts = CASE WHEN r.content_hash = excluded.content_hash
                                 THEN r.attempts + 1 ELSE 1 END,
                 first_run = CASE WHEN r.content_hash = excluded.content_hash
                                  THEN r.first_run ELSE excluded.first_run END,
                 content_hash = excluded.content_hash,
                 message = excluded.message,
                 last_run = excluded.last_run",
            &[
                typed(&tenant, Type::TEXT),
                typed(&sync, Type::TEXT),
                typed(&run, Type::INT8),
                typed(&keys, Type::BYTEA_ARRAY),
                typed(&hashes, Type::BYTEA_ARRAY),
                typed(&messages, Type::TEXT_ARRAY),
            ],
        )?;
        start = end;
    }
    Ok(())
}

fn record_samples(
    tx: &mut Transaction<'_>,
    tenant: &str,
    run: RunId,
    batch: &CommitBatch,
) -> Result<(), postgres::Error> {
    if batch.rejected.is_empty() && batch.invalid.is_empty() {
        return Ok(());
    }
    let taken: i64 = tx
        .query_typed_one(
            "SELECT COUNT(*) FROM sluice.run_samples WHERE tenant = $1 AND run_id = $2",
            &[typed(&tenant, Type::TEXT), typed(&run, Type::INT8)],
        )?
        .get(0);
    let room = usize::try_from(MAX_SAMPLES - taken).unwrap_or(0);
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
    let mut kinds: Vec<&str> = Vec::new();
    let mut keys: Vec<Option<&[u8]>> = Vec::new();
    let mut messages: Vec<String> = Vec::new();
    for (kind, key, message) in rejected.chain(invalid).take(room) {
        kinds.push(kind);
        keys.push(key);
        messages.push(no_nul(message));
    }
    if kinds.is_empty() {
        return Ok(());
    }
    tx.execute_typed(
        "INSERT INTO sluice.run_samples (tenant, run_id, seq, kind, row_key, message)
         SELECT $1, $2, $3 + t.n - 1, t.kind, t.k, t.m
         FROM UNNEST($4::text[], $5::bytea[], $6::text[]) WITH ORDINALITY AS t(kind, k, m, n)",
        &[
            typed(&tenant, Type::TEXT),
            typed(&run, Type::INT8),
            typed(&taken, Type::INT8),
            typed(&kinds, Type::TEXT_ARRAY),
            typed(&keys, Type::BYTEA_ARRAY),
            typed(&messages, Type::TEXT_ARRAY),
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_runtime::Value;

    fn key(i: i64) -> RowKey {
        RowKey::from_values(&[Value::Integer(i)])
    }

    #[test]
    fn passwords_never_reach_a_message() {
        assert_eq!(
            scrub_url("postgres://sluice:s3cret@db.internal:5432/state"),
            "postgres://sluice:***@db.internal:5432/state"
        );
        let q = scrub_url("postgresql://db.internal/state?user=u&password=s3cret&sslmode=disable");
        assert!(!q.contains("s3cret") && q.contains("password=***"), "{q}");
        assert!(!scrub_url("postgres://u:s3cret@[bad").contains("s3cret"));
        assert!(is_postgres_url("postgres://x/y") && is_postgres_url("PostgreSQL://x/y"));
        assert!(!is_postgres_url("state/db.sqlite"));
    }

    #[test]
    fn acknowledgements_split_where_a_key_repeats_or_the_kind_changes() {
        let d = |i| Ack::Delivered {
            key: key(i),
            hash: RowHash(1),
            dest_id: None,
        };
        let acks = vec![
            d(1),
            d(2),
            d(1),
            Ack::Deleted { key: key(3) },
            Ack::Rekeyed {
                from: key(4),
                to: key(5),
            },
            Ack::Rekeyed {
                from: key(5),
                to: key(6),
            },
        ];
        let sizes: Vec<usize> = ack_runs(&acks).iter().map(|r| r.len()).collect();
        assert_eq!(sizes, vec![2, 1, 1, 1, 1]);
        assert!(ack_runs(&[]).is_empty());
    }

    #[test]
    fn the_migrations_have_every_counter_and_a_tenant_in_every_key() {
        let all: String = MIGRATIONS.iter().map(|m| m.sql).collect();
        for c in COUNT_COLUMNS {
            assert!(
                all.contains(&format!("    {c} BIGINT NOT NULL DEFAULT 0"))
                    || all.contains(&format!("ADD COLUMN {c} BIGINT NOT NULL DEFAULT 0")),
                "{c}"
            );
        }
        let sql = MIGRATIONS[0].sql;
        let tables = sql.matches("CREATE TABLE").count();
        assert_eq!(sql.matches("PRIMARY KEY (tenant,").count(), tables);
        let versions: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]) && versions[0] == 1);
    }

    #[test]
    fn lock_keys_depend_on_tenant_and_sync() {
        assert_eq!(lock_key("default", "users"), lock_key("default", "users"));
        assert_ne!(lock_key("default", "users"), lock_key("other", "users"));
        assert_ne!(lock_key("a", "bc"), lock_key("ab", "c"));
        assert!(application_name(&"x".repeat(100)).len() <= 63);
    }
}
