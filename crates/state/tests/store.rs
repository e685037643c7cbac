//! The SQLite state store on real files: atomic commits, the ledger, full
//! resync, interrupted runs, and the memory bound of a large snapshot.

use rusqlite::Connection;
use sluice_runtime::Value;
use sluice_state::{
    current_owner, Ack, CommitBatch, InvalidRow, Rejection, RunCounts, RunStatus, SampleKind,
    SqliteStore, StateError, StateStore,
};
use sluice_state::{DestId, RowHash, RowKey};

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

fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_project(dir.path()).unwrap();
    (dir, store)
}

fn snapshot_keys(store: &SqliteStore, sync: &str) -> Vec<(RowKey, RowHash)> {
    let mut out = Vec::new();
    store
        .for_each_delivered(sync, &mut |r| out.push((r.key, r.hash)))
        .unwrap();
    out.sort();
    out
}

#[test]
fn state_lives_in_the_project_and_uses_wal() {
    let (dir, store) = open();
    assert_eq!(store.path(), dir.path().join(".sluice/state.db"));
    let conn = Connection::open(store.path()).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn commit_records_acks_counts_and_samples() {
    let (_dir, mut store) = open();
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
    // Another sync's state is separate.
    assert!(snapshot_keys(&store, "other").is_empty());
    assert_eq!(store.runs(Some("users"), 10).unwrap().len(), 1);
    assert!(store.runs(Some("other"), 10).unwrap().is_empty());
}

#[test]
fn a_failure_mid_transaction_changes_nothing() {
    let (_dir, mut store) = open();
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
    let other = Connection::open(store.path()).unwrap();
    other
        .execute_batch(
            "CREATE TRIGGER boom BEFORE INSERT ON rejected WHEN NEW.message = 'boom'
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .unwrap();
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
    assert!(msg.contains("run 1 (sync `users`)"), "{msg}");

    assert_eq!(snapshot_keys(&store, "users"), vec![(key(1), RowHash(1))]);
    assert!(store.ledger("users").unwrap().is_empty());
    assert!(store.samples(run).unwrap().is_empty());
    let counts = store.run(run).unwrap().unwrap().counts;
    assert_eq!((counts.ok, counts.rejected), (1, 0));
}

#[test]
fn commits_to_a_run_that_is_not_running_are_refused() {
    let (_dir, mut store) = open();
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
    assert_eq!(
        store.run(run).unwrap().unwrap().error.as_deref(),
        Some("source failed")
    );
}

#[test]
fn ledger_keeps_a_rejected_row_until_it_succeeds_or_changes() {
    let (_dir, mut store) = open();
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

#[test]
fn full_resync_forgets_the_snapshot_and_keeps_the_ledger() {
    let (_dir, mut store) = open();
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

#[test]
fn interrupted_runs_of_dead_processes_are_marked_killed() {
    let dir = tempfile::tempdir().unwrap();
    let dead_run;
    {
        let mut store = SqliteStore::open_project(dir.path()).unwrap();
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
    let conn = Connection::open(dir.path().join(".sluice/state.db")).unwrap();
    conn.execute(
        "UPDATE runs SET owner = ?1 WHERE id = ?2",
        rusqlite::params![format!("{host}:{pid}:1"), dead_run],
    )
    .unwrap();

    let mut store = SqliteStore::open_project(dir.path()).unwrap();
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

#[test]
fn a_sync_cannot_run_twice_at_once() {
    let (_dir, mut store) = open();
    let run = store.begin_run("users", false).unwrap();
    match store.begin_run("users", false) {
        Err(StateError::AlreadyRunning { run: r, .. }) => assert_eq!(r, run),
        other => panic!("{other:?}"),
    }
    store.finish_run(run, RunStatus::Succeeded, None).unwrap();
    store.begin_run("users", false).unwrap();
}

#[test]
fn samples_are_capped_per_run() {
    let (_dir, mut store) = open();
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

/// 1,000,000 delivered keys, loaded from a real SQLite file into the
/// compact map, must take well under 200 MB. The size is computed from the
/// map's allocations, not measured by time or RSS.
#[test]
fn a_million_key_snapshot_fits_the_memory_bound() {
    const N: i64 = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".sluice/state.db");
    let mut store = SqliteStore::open(&path).unwrap();
    let run = store.begin_run("big", false).unwrap();
    {
        // Bulk-load directly: a million Ack values through commit_batch
        // would test the allocator, not the store.
        let mut conn = Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        {
            let mut stmt = tx
                .prepare("INSERT INTO delivered (sync, row_key, content_hash, dest_id, run_id) VALUES ('big', ?1, ?2, ?3, ?4)")
                .unwrap();
            for i in 0..N {
                let k = RowKey::from_values(&[Value::Text(format!("user-{i:08}"))]);
                let id = DestId::from_value(&Value::Text(format!("003{i:015}")));
                let hash = RowHash(u128::from(i as u64) * 0x9E37_79B9_7F4A_7C15).to_bytes();
                stmt.execute(rusqlite::params![
                    k.as_bytes(),
                    &hash[..],
                    id.as_bytes(),
                    run
                ])
                .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let snapshot = store.load_snapshot("big").unwrap();
    assert_eq!(snapshot.len(), N as usize);
    assert_eq!(snapshot.delivered_len(), N as usize);
    let probe = RowKey::from_values(&[Value::Text("user-00765432".into())]);
    let d = snapshot.get(probe.as_bytes()).unwrap();
    assert_eq!(d.hash, RowHash(765_432u128 * 0x9E37_79B9_7F4A_7C15));
    assert_eq!(
        DestId::from_bytes(d.dest_id.unwrap()).to_value().unwrap(),
        Value::Text("003000000000765432".into())
    );
    let bytes = snapshot.heap_bytes();
    println!("1M-key snapshot: {} MB", bytes / 1_000_000);
    assert!(bytes < 120_000_000, "snapshot takes {bytes} bytes");
}

#[test]
fn a_rekeyed_row_keeps_its_record_under_the_new_key() {
    let (_dir, mut store) = open();
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

#[test]
fn a_running_row_whose_lock_is_free_is_stale_whoever_owned_it() {
    let dir = tempfile::tempdir().unwrap();
    let stale = {
        // This very process began it, so its owner is alive by any
        // host/pid test; dropping the store lets go of its lock, as a
        // killed process would.
        let mut store = SqliteStore::open_project(dir.path()).unwrap();
        store.begin_run("users", false).unwrap()
    };
    let mut store = SqliteStore::open_project(dir.path()).unwrap();
    assert_eq!(store.mark_interrupted_runs().unwrap(), vec![stale]);
    let r = store.run(stale).unwrap().unwrap();
    assert_eq!(r.status, RunStatus::Killed);
    assert!(r.error.unwrap().contains("its lock was free"));

    // A rerun right after proceeds at once.
    let again = {
        let mut other = SqliteStore::open_project(dir.path()).unwrap();
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
    let mut other = SqliteStore::open_project(dir.path()).unwrap();
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

#[test]
fn unlock_clears_the_stale_runs_of_a_free_sync() {
    let dir = tempfile::tempdir().unwrap();
    let stale = {
        let mut store = SqliteStore::open_project(dir.path()).unwrap();
        store.begin_run("users", false).unwrap()
    };
    let mut store = SqliteStore::open_project(dir.path()).unwrap();
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
    let _held = sluice_state::Lease::acquire(&dir.path().join(".sluice"), "users", "elsewhere:7:8")
        .unwrap();
    match store.begin_run("users", false) {
        Err(StateError::Locked { holder, .. }) => assert_eq!(holder, "elsewhere:7:8"),
        other => panic!("{other:?}"),
    }
}
