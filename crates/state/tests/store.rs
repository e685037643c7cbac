//! The state stores on real databases: atomic commits, the ledger, full
//! resync, interrupted runs, leases and the memory bound of a large
//! snapshot. Each contract test runs against both stores (the `both!`
//! macro): SQLite in a temporary project, PostgreSQL on 127.0.0.1:5432 in
//! a database created for the test and dropped after it.

use std::sync::atomic::{AtomicU32, Ordering};

use rusqlite::Connection;
use sluice_runtime::Value;
use sluice_state::postgres::{lock_key, DEFAULT_TENANT};
use sluice_state::{
    current_owner, Ack, CommitBatch, InvalidRow, PostgresStore, Rejection, RunCounts, RunId,
    RunStatus, SampleKind, SqliteStore, StateError, StateStore,
};
use sluice_state::{DestId, RowHash, RowKey};

/// Where a test's state lives, and what a test may do to it behind the
/// store's back.
trait Backend {
    type Store: StateStore;
    /// A new, empty state.
    fn fresh() -> Self;
    /// A store on it (another process's view when called twice).
    fn open(&self) -> Self::Store;
    /// Runs raw SQL on the state database; `{t}` stands for the table
    /// prefix (`` or `sluice.`).
    fn exec(&self, sql: &str);
    /// Makes an insert into the rejected ledger with message `boom` fail.
    fn inject_rejected_failure(&self);
    /// Writes `n` delivered rows of `sync` directly (a million Ack values
    /// through commit_batch would test the allocator, not the store).
    fn bulk_deliver(&self, sync: &str, run: RunId, rows: &mut dyn Iterator<Item = BulkRow>);
    /// Holds the lease of `sync` as another process named `owner` would,
    /// without a run; released when the returned value is dropped.
    fn hold_lease(&self, sync: &str, owner: &str) -> Box<dyn std::any::Any>;
}

type BulkRow = (Vec<u8>, [u8; 16], Vec<u8>);

struct Lite {
    dir: tempfile::TempDir,
}

impl Backend for Lite {
    type Store = SqliteStore;
    fn fresh() -> Self {
        Lite {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn open(&self) -> SqliteStore {
        SqliteStore::open_project(self.dir.path()).unwrap()
    }
    fn exec(&self, sql: &str) {
        let conn = Connection::open(self.dir.path().join(".sluice/state.db")).unwrap();
        conn.execute_batch(&sql.replace("{t}", "")).unwrap();
    }
    fn inject_rejected_failure(&self) {
        self.exec(
            "CREATE TRIGGER boom BEFORE INSERT ON rejected WHEN NEW.message = 'boom'
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        );
    }
    fn bulk_deliver(&self, sync: &str, run: RunId, rows: &mut dyn Iterator<Item = BulkRow>) {
        let mut conn = Connection::open(self.dir.path().join(".sluice/state.db")).unwrap();
        let tx = conn.transaction().unwrap();
        {
            let mut stmt = tx
                .prepare("INSERT INTO delivered (sync, row_key, content_hash, dest_id, run_id) VALUES (?1, ?2, ?3, ?4, ?5)")
                .unwrap();
            for (k, h, id) in rows {
                stmt.execute(rusqlite::params![sync, k, &h[..], id, run])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    fn hold_lease(&self, sync: &str, owner: &str) -> Box<dyn std::any::Any> {
        Box::new(
            sluice_state::Lease::acquire(&self.dir.path().join(".sluice"), sync, owner).unwrap(),
        )
    }
}

/// The server every PostgreSQL test uses.
const PG_ADMIN: &str = "host=127.0.0.1 port=5432 user=postgres dbname=postgres";

/// A database of its own for one test, dropped (with its sessions) after.
struct Pg {
    name: String,
}

impl Pg {
    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }
    fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls).unwrap()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(PG_ADMIN, postgres::NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ));
        }
    }
}

impl Backend for Pg {
    type Store = PostgresStore;
    fn fresh() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "sluice_state_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let mut admin = postgres::Client::connect(PG_ADMIN, postgres::NoTls).unwrap();
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .unwrap();
        Pg { name }
    }
    fn open(&self) -> PostgresStore {
        PostgresStore::connect(&self.url()).unwrap()
    }
    fn exec(&self, sql: &str) {
        self.client()
            .batch_execute(&sql.replace("{t}", "sluice."))
            .unwrap();
    }
    fn inject_rejected_failure(&self) {
        self.exec(
            "CREATE FUNCTION sluice.boom() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$;
             CREATE TRIGGER boom BEFORE INSERT ON sluice.rejected
               FOR EACH ROW WHEN (NEW.message = 'boom') EXECUTE FUNCTION sluice.boom();",
        );
    }
    fn bulk_deliver(&self, sync: &str, run: RunId, rows: &mut dyn Iterator<Item = BulkRow>) {
        let mut client = self.client();
        let mut tx = client.transaction().unwrap();
        loop {
            let chunk: Vec<BulkRow> = (&mut *rows).take(50_000).collect();
            if chunk.is_empty() {
                break;
            }
            let keys: Vec<&[u8]> = chunk.iter().map(|r| &r.0[..]).collect();
            let hashes: Vec<&[u8]> = chunk.iter().map(|r| &r.1[..]).collect();
            let ids: Vec<&[u8]> = chunk.iter().map(|r| &r.2[..]).collect();
            tx.execute(
                "INSERT INTO sluice.delivered (tenant, sync, row_key, content_hash, dest_id, run_id)
                 SELECT $1, $2, k, h, i, $3 FROM UNNEST($4::bytea[], $5::bytea[], $6::bytea[]) AS t(k, h, i)",
                &[&DEFAULT_TENANT, &sync, &run, &keys, &hashes, &ids],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    fn hold_lease(&self, sync: &str, owner: &str) -> Box<dyn std::any::Any> {
        let mut config: postgres::Config = self.url().parse().unwrap();
        config.application_name(&format!("sluice {owner}"));
        let mut client = config.connect(postgres::NoTls).unwrap();
        let key = lock_key(DEFAULT_TENANT, sync);
        client
            .execute("SELECT pg_advisory_lock($1)", &[&key])
            .unwrap();
        Box::new(client)
    }
}

/// Instantiates each generic test for SQLite and PostgreSQL.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name::<super::Lite>() } )*
        }
        mod postgresql {
            $( #[test] fn $name() { super::$name::<super::Pg>() } )*
        }
    };
}

both!(
    commit_records_acks_counts_and_samples,
    a_failure_mid_transaction_changes_nothing,
    commits_to_a_run_that_is_not_running_are_refused,
    ledger_keeps_a_rejected_row_until_it_succeeds_or_changes,
    full_resync_forgets_the_snapshot_and_keeps_the_ledger,
    verify_forgets_only_the_keys_it_is_given_and_not_during_a_run,
    interrupted_runs_of_dead_processes_are_marked_killed,
    a_sync_cannot_run_twice_at_once,
    samples_are_capped_per_run,
    a_million_key_snapshot_fits_the_memory_bound,
    a_rekeyed_row_keeps_its_record_under_the_new_key,
    a_running_row_whose_lock_is_free_is_stale_whoever_owned_it,
    unlock_clears_the_stale_runs_of_a_free_sync,
    a_key_twice_in_one_batch_is_applied_in_order,
    fingerprints_are_kept_per_sync,
    stage_timings_are_recorded_with_a_running_run_only,
);

fn stage_timings_are_recorded_with_a_running_run_only<B: Backend>() {
    let b = B::fresh();
    let mut store = b.open();
    let run = store.begin_run("users", false).unwrap();
    assert_eq!(store.run(run).unwrap().unwrap().timings, None);
    let timings = sluice_state::StageTimings {
        load_ms: 12,
        discover_ms: 30,
        run_ms: 950,
        write_ms: 1400,
        instantiate_us: 850,
        instances: 3,
        ..Default::default()
    };
    store.record_timings(run, &timings).unwrap();
    store.finish_run(run, RunStatus::Succeeded, None).unwrap();
    let record = store.run(run).unwrap().unwrap();
    assert_eq!(record.timings.as_ref(), Some(&timings));
    assert_eq!(
        store.runs(Some("users"), 1).unwrap()[0].timings,
        Some(timings.clone())
    );
    // An ended run's timings stay what they were.
    let late = sluice_state::StageTimings::default();
    assert!(matches!(
        store.record_timings(run, &late),
        Err(StateError::NotRunning { .. })
    ));
    assert_eq!(store.run(run).unwrap().unwrap().timings, Some(timings));
}

fn key(i: i64) -> RowKey {
    RowKey::from_values(&[Value::Integer(i)])
}

fn delivered(i: i64, hash: u128) -> Ack {
    Ack::Delivered {
        key: key(i),
        hash: RowHash(hash),
        dest_id: Some(DestId::from_value(&Value::Text(format!("d{i}")))),
    }
}

fn rejected(i: i64, hash: u128, msg: &str) -> Rejection {
    Rejection {
        key: key(i),
        hash: RowHash(hash),
        message: msg.into(),
    }
}

fn snapshot_keys(store: &impl StateStore, sync: &str) -> Vec<(RowKey, RowHash)> {
    let mut out = Vec::new();
    store
        .for_each_delivered(sync, &mut |r| out.push((r.key, r.hash)))
        .unwrap();
    out.sort();
    out
}

#[test]
fn state_lives_in_the_project_and_uses_wal() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_project(dir.path()).unwrap();
    assert_eq!(store.path(), dir.path().join(".sluice/state.db"));
    let conn = Connection::open(store.path()).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

fn commit_records_acks_counts_and_samples<B: Backend>() {
    let b = B::fresh();
    let mut store = b.open();
    let run = store.begin_run("users", false).unwrap();
    let batch = CommitBatch {
        acknowledged: vec![delivered(1, 11), delivered(2, 22)],
        rejected: vec![rejected(3, 33, "email is invalid")],
        invalid: vec![InvalidRow {
            key: None,
            message: "primary key column `id` is null".into(),
        }],
        progress: RunCounts {
            added: 3,
            sent: 3,
            ok: 2,
            rejected: 1,
            invalid: 1,
            ..Default::default()
        },
    };
    store.commit_batch(run, &batch).unwrap();
    store
        .commit_batch(
            run,
            &CommitBatch {
                progress: RunCounts {
                    added: 1,
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .unwrap();
    store.finish_run(run, RunStatus::Succeeded, None).unwrap();

    assert_eq!(
        snapshot_keys(&store, "users"),
        vec![(key(1), RowHash(11)), (key(2), RowHash(22))]
    );
    let r = store.run(run).unwrap().unwrap();
    assert_eq!(r.status, RunStatus::Succeeded);
    assert_eq!(r.counts.added, 4);
    assert_eq!(r.counts.ok, 2);
    assert!(r.finished_at.is_some());
    let samples = store.samples(run).unwrap();
    assert_eq!(samples.len(), 2);
    assert_eq!(samples[0].kind, SampleKind::Rejected);
    assert_eq!(samples[0].key, Some(key(3)));
    assert_eq!(samples[0].message, "email is invalid");
    assert_eq!(samples[1].kind, SampleKind::Invalid);
    assert_eq!(samples[1].key, None);
    // Another sync's state is separate.
    assert!(snapshot_keys(&store, "other").is_empty());
    assert_eq!(store.runs(Some("users"), 10).unwrap().len(), 1);
    assert_eq!(store.runs(None, 10).unwrap().len(), 1);
    assert!(store.runs(Some("other"), 10).unwrap().is_empty());
}

fn a_failure_mid_transaction_changes_nothing<B: Backend>() {
    let b = B::fresh();
    let mut store = b.open();
    let run = store.begin_run("users", false).unwrap();
    store
        .commit_batch(
            run,
            &CommitBatch {
                acknowledged: vec![delivered(1, 1)],
                progress: RunCounts {
                    ok: 1,
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .unwrap();

    // Make the ledger insert fail after the acks and counters were written
    // inside the same transaction.
    b.inject_rejected_failure();
    let batch = CommitBatch {
        acknowledged: vec![
            delivered(1, 100),
            delivered(2, 2),
            Ack::Deleted { key: key(1) },
        ],
        rejected: vec![rejected(3, 3, "fine"), rejected(4, 4, "boom")],
        invalid: vec![],
        progress: RunCounts {
            ok: 3,
            rejected: 2,
            ..Default::default()
        },
    };
    let err = store.commit_batch(run, &batch).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("injected failure"), "{msg}");
    assert!(msg.contains(&format!("run {run} (sync `users`)")), "{msg}");

    assert_eq!(snapshot_keys(&store, "users"), vec![(key(1), RowHash(1))]);
    assert!(store.ledger("users").unwrap().is_empty());
    assert!(store.samples(run).unwrap().is_empty());
    let counts = store.run(run).unwrap().unwrap().counts;
    assert_eq!((counts.ok, counts.rejected), (1, 0));
}

fn commits_to_a_run_that_is_not_running_are_refused<B: Backend>() {
    let b = B::fresh();
    let mut store = b.open();
    let run = store.begin_run("users", false).unwrap();
    store
        .finish_run(run, RunStatus::Failed, Some("source failed"))
        .unwrap();
    let err = store
        .commit_batch(
            run,
            &CommitBatch {
                acknowledged: vec![delivered(1, 1)],
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            StateError::NotRunning {
                status: RunStatus::Failed,
                ..
            }
        ),
        "{err}"
    );
    assert!(snapshot_keys(&store, "users").is_empty());
    assert!(matches!(
        store.commit_batch(999, &CommitBatch::default()),
        Err(StateError::UnknownRun { run: 999 })
    ));
    assert!(matches!(
        store.finish_run(run, RunStatus::Succeeded, None),
        Err(StateError::NotRunning { .. })
    ));
    assert_eq!(
        store.run(run).unwrap().unwrap().error.as_deref(),
        Some("source failed")
    );
}

fn ledger_keeps_a_rejected_row_until_it_succeeds_or_changes<B: Backend>() {
    let b = B::fresh();
    let mut store = b.open();
    let mut runs = Vec::new();
    for _ in 0..2 {
        let run = store.begin_run("users", false).unwrap();
        store
            .commit_batch(
                run,
                &CommitBatch {
                    rejected: vec![rejected(7, 70, "bad email")],
                    ..Default::default()
                },
            )
            .unwrap();
        store.finish_run(run, RunStatus::Succeeded, None).unwrap();
        runs.push(run);
    }
    let entry = &store.ledger("users").unwrap()[0];
    assert_eq!(
        (entry.attempts, entry.first_run, entry.last_run),
        (2, runs[0], runs[1])
    );
    assert_eq!(entry.hash, RowHash(70));

    // The row changed and was rejected again: a new entry starting over.
    let run3 = store.begin_run("users", false).unwrap();
    store
        .commit_batch(
            run3,
            &CommitBatch {
                rejected: vec![rejected(7, 71, "still bad")],
                ..Default::default()
            },
        )
        .unwrap();
    let entry = &store.ledger("users").unwrap()[0];
    assert_eq!(
        (entry.attempts, entry.first_run, entry.hash),
        (1, run3, RowHash(71))
    );
    assert_eq!(entry.message, "still bad");
    // Never delivered: it is not in the snapshot, so the next diff sends it.
    assert!(store
        .load_snapshot("users")
        .unwrap()
        .get(key(7).as_bytes())
        .unwrap()
        .is_none());

    // Accepted: it leaves the ledger and enters the snapshot.
    store
        .commit_batch(
            run3,
            &CommitBatch {
                acknowledged: vec![delivered(7, 71)],
                ..Default::default()
            },
        )
        .unwrap();
    assert!(store.ledger("users").unwrap().is_empty());
    assert_eq!(snapshot_keys(&store, "users"), vec![(key(7), RowHash(71))]);
}

fn full_resync_forgets_the_snapshot_and_keeps_the_ledger<B: Backend>() {
    let b = B::fresh();
    let mut store = b.open();
    let run = store.begin_run("users", false).unwrap();
    store
        .commit_batch(
            run,
            &CommitBatch {
                acknowledged: vec![delivered(1, 1), delivered(2, 2)],
                rejected: vec![rejected(3, 3, "nope")],
                ..Default::default()
            },
        )
        .unwrap();
    store.finish_run(run, RunStatus::Succeeded, None).unwrap();
    assert_eq!(store.forget_snapshot("users").unwrap(), 2);
    assert!(store.load_snapshot("users").unwrap().is_empty());
    assert_eq!(store.ledger("users").unwrap().len(), 1);
    let resync = store.begin_run("users", true).unwrap();
    assert!(store.run(resync).unwrap().unwrap().full_resync);
}

fn verify_forgets_only_the_keys_it_is_given_and_not_during_a_run<B: Backend>() {
    let b = B::fresh();
    let mut store = b.open();
    let run = store.begin_run("users", false).unwrap();
    store
        .commit_batch(
            run,
            &CommitBatch {
                acknowledged: vec![delivered(1, 1), delivered(2, 2), delivered(3, 3)],
                ..Default::default()
            },
        )
        .unwrap();
    // While a run holds the sync, nothing is forgotten.
    let mut other = b.open();
    assert!(other.forget_keys("users", &[key(2)]).is_err());
    store.finish_run(run, RunStatus::Succeeded, None).unwrap();
    assert_eq!(store.forget_keys("users", &[key(2), key(9)]).unwrap(), 1);
    assert_eq!(
        snapshot_keys(&store, "users"),
        vec![(key(1), RowHash(1)), (key(3), RowHash(3))]
    );
    assert_eq!(store.forget_keys("users", &[]).unwrap(), 0);
}

fn interrupted_runs_of_dead_processes_are_marked_killed<B: Backend>() {
    let b = B::fresh();
    let dead_run;
    {
        let mut store = b.open();
        dead_run = store.begin_run("users", false).unwrap();
        store
            .commit_batch(
                dead_run,
                &CommitBatch {
                    acknowledged: vec![delivered(1, 1)],
                    ..Default::default()
                },
            )
            .unwrap();
    }
    // Hand the run to a process that has exited, as if it had been killed.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let host = current_owner().rsplitn(3, ':').nth(2).unwrap().to_owned();
    b.exec(&format!(
        "UPDATE {{t}}runs SET owner = '{host}:{pid}:1' WHERE id = {dead_run}"
    ));

    let mut store = b.open();
    let live_run = store.begin_run("orders", false).unwrap();
    assert_eq!(store.mark_interrupted_runs().unwrap(), vec![dead_run]);
    let r = store.run(dead_run).unwrap().unwrap();
    assert_eq!(r.status, RunStatus::Killed);
    assert!(r.error.unwrap().contains("is gone"));
    // What it committed before dying stays; our own live run is untouched.
    assert_eq!(snapshot_keys(&store, "users"), vec![(key(1), RowHash(1))]);
    assert_eq!(
        store.run(live_run).unwrap().unwrap().status,
        RunStatus::Running
    );
    assert!(store.mark_interrupted_runs().unwrap().is_empty());
}

fn a_sync_cannot_run_twice_at_once<B: Backend>() {
    let b = B::fresh();
    let mut store = b.open();
    let run = store.begin_run("users", false).unwrap();
    match store.begin_run("users", false) {
        Err(StateError::AlreadyRunning { run: r, .. }) => assert_eq!(r, run),
        other => panic!("{other:?}"),
    }
    store.finish_run(run, RunStatus::Succeeded, None).unwrap();
    store.begin_run("users", false).unwrap();
}

fn samples_are_capped_per_run<B: Backend>() {
    let b = B::fresh();
    let mut store = b.open();
    let run = store.begin_run("users", false).unwrap();
    for chunk in 0..3 {
        let rejected = (0..60)
            .map(|i| rejected(chunk * 100 + i, 1, "no"))
            .collect();
        store
            .commit_batch(
                run,
                &CommitBatch {
                    rejected,
                    ..Default::default()
                },
            )
            .unwrap();
    }
    assert_eq!(store.samples(run).unwrap().len(), 100);
    assert_eq!(store.ledger("users").unwrap().len(), 180);
}

/// 1,000,000 delivered keys, loaded from a real database into the compact
/// map, must take well under 200 MB. The size is computed from the map's
/// allocations, not measured by time or RSS.
fn a_million_key_snapshot_fits_the_memory_bound<B: Backend>() {
    const N: i64 = 1_000_000;
    let b = B::fresh();
    let mut store = b.open();
    let run = store.begin_run("big", false).unwrap();
    b.bulk_deliver(
        "big",
        run,
        &mut (0..N).map(|i| {
            let k = RowKey::from_values(&[Value::Text(format!("user-{i:08}"))]);
            let id = DestId::from_value(&Value::Text(format!("003{i:015}")));
            let hash = RowHash(u128::from(i as u64) * 0x9E37_79B9_7F4A_7C15).to_bytes();
            (k.as_bytes().to_vec(), hash, id.as_bytes().to_vec())
        }),
    );
    let snapshot = store.load_snapshot("big").unwrap();
    assert_eq!(snapshot.len(), N as usize);
    assert_eq!(snapshot.delivered_len(), N as usize);
    let probe = RowKey::from_values(&[Value::Text("user-00765432".into())]);
    let d = snapshot.get(probe.as_bytes()).unwrap().unwrap();
    assert_eq!(d.hash, RowHash(765_432u128 * 0x9E37_79B9_7F4A_7C15));
    assert_eq!(
        DestId::from_bytes(d.dest_id.unwrap().into_owned())
            .to_value()
            .unwrap(),
        Value::Text("003000000000765432".into())
    );
    let bytes = snapshot.heap_bytes();
    println!("1M-key snapshot: {} MB", bytes / 1_000_000);
    assert!(bytes < 120_000_000, "snapshot takes {bytes} bytes");
}

fn a_rekeyed_row_keeps_its_record_under_the_new_key<B: Backend>() {
    let b = B::fresh();
    let mut store = b.open();
    let run = store.begin_run("users", false).unwrap();
    store
        .commit_batch(
            run,
            &CommitBatch {
                acknowledged: vec![delivered(1, 1), delivered(2, 2), delivered(5, 5)],
                rejected: vec![rejected(1, 9, "old content refused")],
                ..Default::default()
            },
        )
        .unwrap();
    let text_key = |i: i64| RowKey::from_values(&[Value::Text(i.to_string())]);
    store
        .commit_batch(
            run,
            &CommitBatch {
                acknowledged: vec![
                    // Not yet delivered under the new key: the entry moves.
                    Ack::Rekeyed {
                        from: key(1),
                        to: text_key(1),
                    },
                    // Already delivered under the new key: that entry stays.
                    delivered(3, 3),
                    Ack::Rekeyed {
                        from: key(2),
                        to: key(3),
                    },
                ],
                ..Default::default()
            },
        )
        .unwrap();
    let mut rows = Vec::new();
    store
        .for_each_delivered("users", &mut |r| rows.push((r.key, r.hash, r.dest_id)))
        .unwrap();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let d = |i: i64| Some(DestId::from_value(&Value::Text(format!("d{i}"))));
    assert_eq!(
        rows,
        vec![
            (key(3), RowHash(3), d(3)),
            (key(5), RowHash(5), d(5)),
            (text_key(1), RowHash(1), d(1)),
        ]
    );
    assert!(store.ledger("users").unwrap().is_empty());
}

/// One batch that names a key more than once is applied as if each
/// acknowledgement and rejection were applied in turn (the PostgreSQL store
/// sends a batch as arrays, so it must split where a key repeats).
fn a_key_twice_in_one_batch_is_applied_in_order<B: Backend>() {
    let b = B::fresh();
    let mut store = b.open();
    let run = store.begin_run("users", false).unwrap();
    store
        .commit_batch(
            run,
            &CommitBatch {
                acknowledged: vec![
                    delivered(1, 1),
                    delivered(2, 2),
                    delivered(1, 10),
                    Ack::Deleted { key: key(2) },
                    delivered(2, 20),
                    Ack::Rekeyed {
                        from: key(1),
                        to: key(4),
                    },
                    Ack::Rekeyed {
                        from: key(4),
                        to: key(5),
                    },
                ],
                rejected: vec![
                    rejected(9, 90, "first"),
                    rejected(9, 90, "second"),
                    rejected(8, 80, "other"),
                ],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        snapshot_keys(&store, "users"),
        vec![(key(2), RowHash(20)), (key(5), RowHash(10))]
    );
    let ledger = store.ledger("users").unwrap();
    let nine = ledger.iter().find(|e| e.key == key(9)).unwrap();
    assert_eq!((nine.attempts, nine.message.as_str()), (2, "second"));
    assert_eq!(ledger.len(), 2);
    // A dest id left out keeps the one recorded before.
    store
        .commit_batch(
            run,
            &CommitBatch {
                acknowledged: vec![Ack::Delivered {
                    key: key(2),
                    hash: RowHash(21),
                    dest_id: None,
                }],
                ..Default::default()
            },
        )
        .unwrap();
    let mut ids = Vec::new();
    store
        .for_each_delivered("users", &mut |r| ids.push((r.key, r.dest_id, r.run)))
        .unwrap();
    let two = ids.iter().find(|r| r.0 == key(2)).unwrap();
    assert_eq!(two.1, Some(DestId::from_value(&Value::Text("d2".into()))));
    assert_eq!(two.2, run);
}

fn fingerprints_are_kept_per_sync<B: Backend>() {
    let b = B::fresh();
    let mut store = b.open();
    assert_eq!(store.fingerprint("users").unwrap(), None);
    let run = store.begin_run("users", false).unwrap();
    // All 64 bits survive the signed column.
    store
        .record_fingerprint("users", u64::MAX - 5, run)
        .unwrap();
    store
        .record_fingerprint("users", u64::MAX - 6, run)
        .unwrap();
    assert_eq!(store.fingerprint("users").unwrap(), Some(u64::MAX - 6));
    assert_eq!(store.fingerprint("orders").unwrap(), None);
    store
        .fail_run(
            run,
            "discover",
            "sync `users`: the destination refused the login",
        )
        .unwrap();
    let r = store.run(run).unwrap().unwrap();
    assert_eq!(
        (r.status, r.stage.as_deref()),
        (RunStatus::Failed, Some("discover"))
    );
    assert!(r.error.unwrap().contains("refused the login"));
}

#[test]
fn a_failed_run_keeps_its_stage_and_an_older_store_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = SqliteStore::open_project(dir.path()).unwrap();
        store.begin_run("users", false).map(|_| ()).unwrap();
    }
    // A version 1 store: no `stage` column yet.
    let path = dir.path().join(".sluice/state.db");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "ALTER TABLE runs DROP COLUMN stage; DELETE FROM sluice_schema; INSERT INTO sluice_schema VALUES (1); UPDATE runs SET status = 'succeeded';",
    )
    .unwrap();
    drop(conn);

    let mut store = SqliteStore::open_project(dir.path()).unwrap();
    let run = store.begin_run("users", false).unwrap();
    store
        .fail_run(
            run,
            "discover",
            "sync `users`: the destination refused the login",
        )
        .unwrap();
    let r = store.run(run).unwrap().unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(r.stage.as_deref(), Some("discover"));
    assert!(r.error.unwrap().contains("refused the login"));
    assert_eq!(store.runs(Some("users"), 10).unwrap()[1].stage, None);
    let conn = Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("SELECT MAX(version) FROM sluice_schema", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, sluice_state::schema::SCHEMA_VERSION);
}

fn a_running_row_whose_lock_is_free_is_stale_whoever_owned_it<B: Backend>() {
    let b = B::fresh();
    let stale = {
        // This very process began it, so its owner is alive by any
        // host/pid test; dropping the store lets go of its lock, as a
        // killed process would.
        let mut store = b.open();
        store.begin_run("users", false).unwrap()
    };
    let mut store = b.open();
    assert_eq!(store.mark_interrupted_runs().unwrap(), vec![stale]);
    let r = store.run(stale).unwrap().unwrap();
    assert_eq!(r.status, RunStatus::Killed);
    assert!(r.error.unwrap().contains("its lock was free"));

    // A rerun right after proceeds at once.
    let again = {
        let mut other = b.open();
        other.begin_run("users", false).unwrap()
    };
    let next = store.begin_run("users", false).unwrap();
    assert_eq!(
        store.run(again).unwrap().unwrap().status,
        RunStatus::Killed,
        "begin_run clears the stale row of its own sync"
    );

    // While a run holds the lease, another store can neither run nor unlock
    // the sync, nor mark the run interrupted.
    let mut other = b.open();
    assert!(other.mark_interrupted_runs().unwrap().is_empty());
    for refused in [
        other.begin_run("users", false).map(|_| ()),
        other.unlock("users").map(|_| ()),
    ] {
        match refused {
            Err(StateError::AlreadyRunning { run, owner, .. }) => {
                assert_eq!(run, next);
                assert_eq!(owner, current_owner());
            }
            other => panic!("{other:?}"),
        }
    }
    store.finish_run(next, RunStatus::Succeeded, None).unwrap();
    other.begin_run("users", false).unwrap();
}

fn unlock_clears_the_stale_runs_of_a_free_sync<B: Backend>() {
    let b = B::fresh();
    let stale = {
        let mut store = b.open();
        store.begin_run("users", false).unwrap()
    };
    let mut store = b.open();
    assert_eq!(store.unlock("users").unwrap(), vec![stale]);
    assert!(store
        .run(stale)
        .unwrap()
        .unwrap()
        .error
        .unwrap()
        .contains("unlocked by the operator"));
    assert!(store.unlock("users").unwrap().is_empty());
    // A lease held with no run recorded yet is reported by its holder.
    let _held = b.hold_lease("users", "elsewhere:7:8");
    match store.begin_run("users", false) {
        Err(StateError::Locked { holder, .. }) => {
            assert!(holder.starts_with("elsewhere:7:8"), "{holder}")
        }
        other => panic!("{other:?}"),
    }
}

// PostgreSQL only: migrations, concurrent stores, tenants, connection
// errors and calls from inside a tokio runtime.

#[test]
fn postgres_migrations_create_reopen_and_refuse_a_newer_schema() {
    let pg = Pg::fresh();
    let store = pg.open();
    let latest = sluice_state::postgres::latest_version();
    assert_eq!(store.schema_version().unwrap(), latest);
    drop(store);
    // Re-opening applies nothing twice.
    let store = pg.open();
    assert_eq!(store.schema_version().unwrap(), latest);
    let mut client = pg.client();
    let applied: Vec<i64> = client
        .query(
            "SELECT version FROM sluice.schema_migrations ORDER BY version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let known: Vec<i64> = sluice_state::postgres::MIGRATIONS
        .iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(applied, known);
    // Every table a migration creates exists, and nothing else does.
    let mut tables: Vec<String> = client
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'sluice' \
             ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    tables.sort();
    let mut created: Vec<String> = sluice_state::postgres::MIGRATIONS
        .iter()
        .flat_map(|m| m.sql.split("CREATE TABLE sluice.").skip(1))
        .map(|rest| rest.split([' ', '(']).next().unwrap().to_string())
        .chain(["schema_migrations".to_string()])
        .collect();
    created.sort();
    assert_eq!(tables, created);
    for table in [
        "runs",
        "delivered",
        "tenants",
        "secrets",
        "components",
        "schedule_ticks",
    ] {
        assert!(tables.iter().any(|t| t == table), "{table} missing");
    }
    // Row-level security is on for every table that carries a tenant.
    let unprotected: Vec<String> = client
        .query(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN information_schema.columns col
               ON col.table_schema = 'sluice' AND col.table_name = c.relname AND col.column_name = 'tenant'
             WHERE n.nspname = 'sluice' AND c.relkind = 'r' AND NOT c.relrowsecurity",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(unprotected.is_empty(), "{unprotected:?}");
    drop(store);

    // A database a newer Sluice migrated is refused, naming both versions.
    client
        .execute(
            "INSERT INTO sluice.schema_migrations (version, description) VALUES ($1, 'from the future')",
            &[&(latest + 1)],
        )
        .unwrap();
    let err = PostgresStore::connect(&pg.url()).err().unwrap();
    match &err {
        StateError::TooNew {
            found, supported, ..
        } => assert_eq!((*found, *supported), (latest + 1, latest)),
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&pg.name), "{msg}");
    assert!(
        msg.contains(&format!("schema version {}", latest + 1)),
        "{msg}"
    );
}

#[test]
fn postgres_stores_opening_a_fresh_database_at_once_migrate_it_once() {
    let pg = Pg::fresh();
    let url = pg.url();
    let opened: Vec<Result<PostgresStore, StateError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| PostgresStore::connect(&url)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for store in &opened {
        assert!(store.is_ok(), "{:?}", store.as_ref().err());
    }
    let applied: i64 = pg
        .client()
        .query_one("SELECT COUNT(*) FROM sluice.schema_migrations", &[])
        .unwrap()
        .get(0);
    assert_eq!(applied, sluice_state::postgres::MIGRATIONS.len() as i64);
}

#[test]
fn postgres_two_stores_race_for_one_sync_and_one_wins() {
    let pg = Pg::fresh();
    let mut stores: Vec<PostgresStore> = (0..2).map(|_| pg.open()).collect();
    let barrier = std::sync::Barrier::new(2);
    let results: Vec<Result<RunId, StateError>> = std::thread::scope(|s| {
        let handles: Vec<_> = stores
            .iter_mut()
            .map(|store| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    store.begin_run("users", false)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let won: Vec<RunId> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    assert_eq!(won.len(), 1, "{results:?}");
    let lost = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert!(
        matches!(
            lost,
            StateError::AlreadyRunning { .. } | StateError::Locked { .. }
        ),
        "{lost}"
    );
    let running = stores[0].runs(Some("users"), 10).unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].status, RunStatus::Running);
    // Another sync runs beside it.
    stores[1].begin_run("orders", false).unwrap();
}

#[test]
fn postgres_tenants_do_not_see_each_other() {
    let pg = Pg::fresh();
    let mut a = PostgresStore::connect_tenant(&pg.url(), "acme").unwrap();
    let mut b = PostgresStore::connect_tenant(&pg.url(), "globex").unwrap();
    assert_eq!((a.tenant(), b.tenant()), ("acme", "globex"));
    let ra = a.begin_run("users", false).unwrap();
    // The same sync name runs at once in another tenant.
    let rb = b.begin_run("users", false).unwrap();
    a.commit_batch(
        ra,
        &CommitBatch {
            acknowledged: vec![delivered(1, 1)],
            rejected: vec![rejected(2, 2, "no")],
            ..Default::default()
        },
    )
    .unwrap();
    assert!(snapshot_keys(&b, "users").is_empty());
    assert!(b.ledger("users").unwrap().is_empty());
    assert_eq!(b.runs(None, 10).unwrap().len(), 1);
    assert!(b.run(ra).unwrap().is_none());
    assert!(matches!(
        b.commit_batch(ra, &CommitBatch::default()),
        Err(StateError::UnknownRun { .. })
    ));
    assert!(b.mark_interrupted_runs().unwrap().is_empty());
    b.finish_run(rb, RunStatus::Succeeded, None).unwrap();
    assert_eq!(a.run(ra).unwrap().unwrap().status, RunStatus::Running);
}

#[test]
fn postgres_connection_errors_name_the_url_without_its_password() {
    let err = PostgresStore::connect("postgres://sluice:hunter22secret@127.0.0.1:1/state")
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(matches!(err, StateError::Connect { .. }), "{msg}");
    assert!(msg.contains("refused"), "the cause is named: {msg}");
    assert!(
        msg.contains("postgres://sluice:***@127.0.0.1:1/state"),
        "{msg}"
    );
    assert!(!msg.contains("hunter22secret"), "{msg}");

    let err =
        PostgresStore::connect("postgres://sluice:hunter22secret@127.0.0.1:5432/x?frobnicate=1")
            .err()
            .unwrap();
    let msg = err.to_string();
    assert!(!msg.contains("hunter22secret"), "{msg}");
    assert!(msg.contains("not a valid PostgreSQL URL"), "{msg}");

    // The opener picks the store from the setting.
    let dir = tempfile::tempdir().unwrap();
    let lite = sluice_state::open_state(dir.path(), None).unwrap();
    assert!(lite.location().ends_with(".sluice/state.db"));
    let file = sluice_state::open_state(dir.path(), Some("elsewhere/s.db")).unwrap();
    assert!(file.location().ends_with("elsewhere/s.db"));
    let pg = Pg::fresh();
    let shared = sluice_state::open_state(dir.path(), Some(&pg.url())).unwrap();
    assert_eq!(shared.location(), pg.url());
}

/// The engine calls the store from async code, on a current-thread runtime
/// (tests, `plan`) or a worker of a multi-thread one (the CLI): the store
/// must neither panic nor block the runtime's own machinery there, from
/// opening to dropping.
#[test]
fn postgres_store_works_inside_a_tokio_runtime() {
    let pg = Pg::fresh();
    for multi in [false, true] {
        let rt = if multi {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        }
        .unwrap();
        let url = pg.url();
        rt.block_on(async move {
            let mut store = PostgresStore::connect(&url).unwrap();
            let run = store.begin_run("users", false).unwrap();
            store
                .commit_batch(
                    run,
                    &CommitBatch {
                        acknowledged: vec![delivered(1, 1)],
                        ..Default::default()
                    },
                )
                .unwrap();
            tokio::task::yield_now().await;
            assert_eq!(store.load_snapshot("users").unwrap().len(), 1);
            store.finish_run(run, RunStatus::Succeeded, None).unwrap();
            // A run left going: its lease is dropped with the store, here.
            store.begin_run(&format!("orders-{multi}"), false).unwrap();
            drop(store);
        });
    }
    let mut store = pg.open();
    let killed = store.mark_interrupted_runs().unwrap();
    assert_eq!(killed.len(), 2, "both runs left going were found stale");
}
