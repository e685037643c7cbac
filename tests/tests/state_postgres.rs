//! A real sync (the files source, the webhook destination and a local
//! receiver, through the sandbox) whose state lives in PostgreSQL, opened
//! the way the CLI opens it (`--state postgres://...`) and driven by the
//! engine from a multi-thread tokio runtime, as `sluice run` does.

use sluice_tests as common;

use common::*;
use sluice_config as config;
use sluice_engine::run::{RunOptions, RunReport, SyncEngine};
use sluice_state::{RunStatus, StateStore};
use std::path::Path;
use std::sync::Mutex;

async fn run(dir: &Path, state: &str) -> RunReport {
    let project = config::validate(dir).unwrap_or_else(|d| panic!("{d:?}"));
    let test = runtime();
    let store = Mutex::new(sluice_state::open_state(dir, Some(state)).unwrap());
    let engine = SyncEngine {
        project: &project,
        runtime: &test.runtime,
        store: &store,
    };
    engine
        .run("customers", &RunOptions::default())
        .await
        .unwrap()
}

fn emails(rows: &[serde_json::Value]) -> Vec<String> {
    let mut e: Vec<String> = rows
        .iter()
        .map(|r| r["Email"].as_str().unwrap().to_string())
        .collect();
    e.sort();
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_with_postgres_state_sends_only_what_changed() {
    let db = PgDatabase::create("sluice_e2e_state");
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    files_to_webhook_project(dir.path(), &rx, "upsert", 2);
    let rows = [("a@x.com", "10.5"), ("b@x.com", "20"), ("c@x.com", "30")];
    write_customers_csv(dir.path(), &rows);

    let first = run(dir.path(), &db.url()).await;
    assert_eq!(first.status, RunStatus::Succeeded, "{:?}", first.error);
    assert_eq!((first.counts.added, first.counts.sent), (3, 3));
    assert_eq!(emails(&rx.rows()), vec!["a@x.com", "b@x.com", "c@x.com"]);

    // A rerun (a new process's store, as the next `sluice run`) sends nothing.
    let again = run(dir.path(), &db.url()).await;
    assert_eq!(again.status, RunStatus::Succeeded, "{:?}", again.error);
    assert_eq!((again.counts.unchanged, again.counts.sent), (3, 0));
    assert_eq!(rx.rows().len(), 3);

    // One row changes: one row is sent.
    write_customers_csv(
        dir.path(),
        &[("a@x.com", "10.5"), ("b@x.com", "99"), ("c@x.com", "30")],
    );
    let third = run(dir.path(), &db.url()).await;
    assert_eq!(
        (
            third.counts.changed,
            third.counts.unchanged,
            third.counts.sent
        ),
        (1, 2, 1)
    );
    let received = rx.rows();
    assert_eq!(emails(&received[3..]), vec!["b@x.com"]);
    assert_eq!(received[3]["LTV"], serde_json::json!(99.0));

    // The history is in PostgreSQL, and nothing went to the SQLite default.
    let store = sluice_state::open_state(dir.path(), Some(&db.url())).unwrap();
    let runs = store.runs(Some("customers"), 10).unwrap();
    assert_eq!(runs.len(), 3);
    assert!(runs.iter().all(|r| r.status == RunStatus::Succeeded));
    assert_eq!(runs[0].id, third.run_id.unwrap());
    assert!(store.fingerprint("customers").unwrap().is_some());
    assert_eq!(store.load_snapshot("customers").unwrap().len(), 3);
    assert!(!dir.path().join(".sluice/state.db").exists());
}
