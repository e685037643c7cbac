//! Syncs end to end: a project folder with sluice.yaml, the files source,
//! the webhook destination and a local receiver, through the real sandbox.

use sluice_tests as common;

use common::*;
use sluice_engine::run::{RunOptions, RunReport};
use sluice_state::{RunStatus, SqliteStore, StateStore};
use std::path::Path;

fn project(dir: &Path, receiver: &Receiver, mode: &str, extra: &str) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let yaml = format!(
        r#"
sources:
  files:
    plugin: files
    config: {{ path: /data, columns: {{ ltv: float }} }}
    grants: ["dir:data:/data"]
destinations:
  hook:
    plugin: webhook
    config: {{ url: "{url}", max_retries: 0 }}
    grants: ["{grant}"]
models:
  customers:
    source: files
    object: customers.csv
    primary_key: email
syncs:
  customers:
    model: customers
    destination: hook
    object: contacts
    mode: {mode}
    identifier: Email
    batch_size: 2
    mappings:
      - {{ from: email, to: Email }}
      - {{ from: ltv, to: LTV, type: number }}
      - {{ from: plan, to: Plan, type: integer }}
{extra}"#,
        url = receiver.url,
        grant = receiver.grant()
    );
    std::fs::write(dir.join("sluice.yaml"), yaml).unwrap();
}

fn csv(dir: &Path, rows: &[(&str, &str, &str)]) {
    let mut text = String::from("email,ltv,plan\n");
    for (e, l, p) in rows {
        text.push_str(&format!("{e},{l},{p}\n"));
    }
    std::fs::write(dir.join("data/customers.csv"), text).unwrap();
}

async fn run(dir: &Path, options: RunOptions) -> RunReport {
    run_sync(dir, "customers", &options).await
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
async fn first_run_sends_everything_then_only_changes() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    project(dir.path(), &rx, "upsert", "");
    csv(
        dir.path(),
        &[
            ("a@x.com", "10.5", "1"),
            ("b@x.com", "20", "2"),
            ("c@x.com", "30", "3"),
        ],
    );

    let first = run(dir.path(), RunOptions::default()).await;
    assert_eq!(first.status, RunStatus::Succeeded, "{:?}", first.error);
    assert_eq!(
        (first.counts.added, first.counts.sent, first.counts.ok),
        (3, 3, 3)
    );
    assert_eq!(emails(&rx.rows()), vec!["a@x.com", "b@x.com", "c@x.com"]);
    assert_eq!(rx.rows()[0]["LTV"], serde_json::json!(10.5));

    let again = run(dir.path(), RunOptions::default()).await;
    assert_eq!((again.counts.unchanged, again.counts.sent), (3, 0));

    csv(
        dir.path(),
        &[
            ("a@x.com", "10.5", "1"),
            ("b@x.com", "99", "2"),
            ("c@x.com", "30", "3"),
            ("d@x.com", "1", "1"),
        ],
    );
    let third = run(dir.path(), RunOptions::default()).await;
    assert_eq!(
        (
            third.counts.changed,
            third.counts.added,
            third.counts.unchanged,
            third.counts.sent
        ),
        (1, 1, 2, 2)
    );
    let rows = rx.rows();
    assert_eq!(emails(&rows[3..]), vec!["b@x.com", "d@x.com"]);

    let resync = run(
        dir.path(),
        RunOptions {
            full_resync: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(resync.counts.sent, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    project(dir.path(), &rx, "upsert", "");
    csv(dir.path(), &[("a@x.com", "1", "1"), ("b@x.com", "2", "2")]);
    let plan = run(
        dir.path(),
        RunOptions {
            dry_run: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!((plan.counts.planned, plan.counts.added), (2, 2));
    assert_eq!(plan.planned.len(), 2);
    assert_eq!(plan.planned[0].fields["LTV"], serde_json::json!(1.0));
    assert!(rx.rows().is_empty(), "a plan must not write");
    let store = SqliteStore::open_project(dir.path()).unwrap();
    assert!(
        store.runs(None, 10).unwrap().is_empty(),
        "a plan records no run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_values_go_to_the_ledger_until_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    project(dir.path(), &rx, "upsert", "");
    csv(
        dir.path(),
        &[
            ("a@x.com", "1", "1"),
            ("b@x.com", "2", "lots"),
            ("", "3", "3"),
        ],
    );
    let first = run(dir.path(), RunOptions::default()).await;
    assert_eq!(
        (first.counts.ok, first.counts.rejected, first.counts.invalid),
        (1, 1, 1)
    );
    let store = SqliteStore::open_project(dir.path()).unwrap();
    let ledger = store.ledger("customers").unwrap();
    assert_eq!(ledger.len(), 1);
    assert!(
        ledger[0].message.contains("`plan`") && ledger[0].message.contains("lots"),
        "{}",
        ledger[0].message
    );
    let samples = store.samples(first.run_id.unwrap()).unwrap();
    assert!(
        samples
            .iter()
            .any(|s| s.message.contains("primary key column `email` is null")),
        "{samples:?}"
    );

    // Unchanged, the rejected row is retried (and fails again); fixed, it goes.
    let second = run(dir.path(), RunOptions::default()).await;
    assert_eq!((second.counts.rejected, second.counts.unchanged), (1, 1));
    csv(dir.path(), &[("a@x.com", "1", "1"), ("b@x.com", "2", "2")]);
    let third = run(dir.path(), RunOptions::default()).await;
    assert_eq!((third.counts.ok, third.counts.rejected), (1, 0));
    assert!(store.ledger("customers").unwrap().is_empty());
    assert_eq!(emails(&rx.rows()), vec!["a@x.com", "b@x.com"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_waits_and_rejections_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    project(dir.path(), &rx, "upsert", "");
    csv(
        dir.path(),
        &[
            ("a@x.com", "1", "1"),
            ("b@x.com", "2", "2"),
            ("c@x.com", "3", "3"),
            ("d@x.com", "4", "4"),
        ],
    );
    rx.script
        .lock()
        .unwrap()
        .extend([(429, Some("0")), (503, Some("0")), (422, None)]);
    let report = run(dir.path(), RunOptions::default()).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    assert_eq!(report.counts.throttled_waits, 2);
    // The 422 rejected the two rows of one batch with the receiver's message.
    assert_eq!((report.counts.ok, report.counts.rejected), (2, 2));
    let ledger = SqliteStore::open_project(dir.path())
        .unwrap()
        .ledger("customers")
        .unwrap();
    assert!(
        ledger.iter().all(|l| l.message.contains("HTTP 422")),
        "{ledger:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_longer_than_max_wait_pauses_the_sync_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    project(dir.path(), &rx, "upsert", "");
    csv(dir.path(), &[("a@x.com", "1", "1"), ("b@x.com", "2", "2")]);
    // 100,000,000 s: what a receiver sent that once hung a webhook sync.
    rx.script
        .lock()
        .unwrap()
        .push_back((429, Some("100000000")));
    let started = std::time::Instant::now();
    let report = run(dir.path(), RunOptions::default()).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "the run waited {:?}",
        started.elapsed()
    );
    assert_eq!(report.status, RunStatus::Failed);
    let error = report.error.unwrap();
    assert!(error.contains("paused until"), "{error}");
    assert!(error.contains("max_wait"), "{error}");
    // Nothing was acknowledged, so the next run (the receiver answers 200
    // now) sends both rows.
    let report = run(dir.path(), RunOptions::default()).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    assert_eq!(report.counts.ok, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_sets_its_own_max_wait() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    project(dir.path(), &rx, "upsert", "    max_wait: 1s\n");
    csv(dir.path(), &[("a@x.com", "1", "1")]);
    // Within the engine's default, beyond this sync's one second.
    rx.script.lock().unwrap().push_back((429, Some("30")));
    let report = run(dir.path(), RunOptions::default()).await;
    assert_eq!(report.status, RunStatus::Failed);
    let error = report.error.unwrap();
    assert!(
        error.contains("asked to wait 30 s") && error.contains("(1 s, max_wait)"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_destination_fails_the_run_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    project(dir.path(), &rx, "upsert", "");
    csv(dir.path(), &[("a@x.com", "1", "1"), ("b@x.com", "2", "2")]);
    rx.script
        .lock()
        .unwrap()
        .extend(std::iter::repeat_n((500, None), 5));
    let options = RunOptions {
        retry: sluice_engine::retry::RetryPolicy {
            base_delay: std::time::Duration::from_millis(1),
            ..Default::default()
        },
        ..Default::default()
    };
    let failed = run(dir.path(), options).await;
    assert_eq!(failed.status, RunStatus::Failed);
    assert!(
        failed.error.as_deref().unwrap().contains("HTTP 500"),
        "{:?}",
        failed.error
    );
    assert!(rx.rows().is_empty());
    let retry = run(dir.path(), RunOptions::default()).await;
    assert_eq!((retry.status, retry.counts.ok), (RunStatus::Succeeded, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_deletes_only_what_it_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    project(dir.path(), &rx, "mirror", "");
    csv(dir.path(), &[("a@x.com", "1", "1"), ("b@x.com", "2", "2")]);
    run(dir.path(), RunOptions::default()).await;
    csv(dir.path(), &[("a@x.com", "1", "1")]);
    let report = run(dir.path(), RunOptions::default()).await;
    assert_eq!((report.counts.removed, report.counts.ok), (1, 1));
    let requests = rx.requests.lock().unwrap();
    let last = &requests.last().unwrap().body["data"];
    assert_eq!(last["mode"], "delete");
    assert_eq!(last["rows"], serde_json::json!([{"Email": "b@x.com"}]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_mode_skips_changes_and_append_sends_events() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    project(dir.path(), &rx, "insert", "");
    csv(dir.path(), &[("a@x.com", "1", "1")]);
    run(dir.path(), RunOptions::default()).await;
    csv(dir.path(), &[("a@x.com", "2", "1")]);
    let report = run(dir.path(), RunOptions::default()).await;
    assert_eq!((report.counts.changed, report.counts.sent), (1, 0));
    assert_eq!(rx.modes(), vec!["insert"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transforms_run_between_mapping_and_load() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    let transforms = "transforms:\n  hash: { plugin: pii-hash, config: { fields: [Email] } }\n";
    project(dir.path(), &rx, "upsert", transforms);
    let yaml = std::fs::read_to_string(dir.path().join("sluice.yaml")).unwrap();
    std::fs::write(
        dir.path().join("sluice.yaml"),
        yaml.replace(
            "    batch_size: 2\n",
            "    batch_size: 2\n    transforms: [hash]\n",
        ),
    )
    .unwrap();
    csv(dir.path(), &[("A@x.com", "1", "1")]);
    let report = run(dir.path(), RunOptions::default()).await;
    assert_eq!(report.counts.ok, 1, "{:?}", report.error);
    // sha256("a@x.com"): normalised, then hashed inside the transform.
    assert_eq!(rx.rows()[0]["Email"], sha256_hex("a@x.com"));
    // Every instance the run made was instantiated inside its load stage:
    // source, transform and the webhook's one writer (the spec's instances
    // are not the run's). load_ms is whole milliseconds, truncated.
    let store = SqliteStore::open_project(dir.path()).unwrap();
    let recorded = store.run(report.run_id.unwrap()).unwrap().unwrap();
    let t = recorded.timings.expect("stage timings stored with the run");
    assert_eq!(t.instances, 3, "{t:?}");
    assert!(t.instantiate_us > 0, "{t:?}");
    assert!(t.instantiate_us < (t.load_ms + 1) * 1000, "{t:?}");
}

fn sha256_hex(s: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(s.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_to_webhook_sends_only_changed_rows_on_rerun() {
    let table = format!("sluice_sync_test_{}", std::process::id());
    psql(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id int PRIMARY KEY, email text, ltv numeric(10,2), seen timestamptz);
         INSERT INTO {table} SELECT g, 'u' || g || '@x.com', g * 1.25, TIMESTAMPTZ '2024-05-01 00:00:00+00' + g * interval '1 minute' FROM generate_series(1, 1500) g;"
    ));
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    let yaml = format!(
        r#"
sources:
  pg:
    plugin: postgres
    config: {{ host: 127.0.0.1, port: 5432, user: postgres, database: test }}
    grants: ["postgres://127.0.0.1:5432"]
destinations:
  hook: {{ plugin: webhook, config: {{ url: "{}" }}, grants: ["{}"] }}
models:
  users:
    source: pg
    query: "select id, email, ltv, seen from {table}"
    primary_key: id
syncs:
  users:
    model: users
    destination: hook
    object: users
    mode: upsert
    identifier: id
    batch_size: 500
"#,
        rx.url,
        rx.grant()
    );
    std::fs::write(dir.path().join("sluice.yaml"), yaml).unwrap();
    let loaded = Loaded::open(dir.path());
    let engine = loaded.engine();
    let first = engine.run("users", &RunOptions::default()).await.unwrap();
    assert_eq!(
        (first.status, first.counts.ok),
        (RunStatus::Succeeded, 1500),
        "{:?}",
        first.error
    );
    let rows = rx.rows();
    let row = rows.iter().find(|r| r["id"] == 1500).unwrap();
    assert_eq!(row["ltv"], serde_json::json!(1875.0));
    assert_eq!(row["seen"], "2024-05-02T01:00:00Z");

    psql(&format!(
        "UPDATE {table} SET ltv = ltv + 1 WHERE id % 150 = 0"
    ));
    let second = engine.run("users", &RunOptions::default()).await.unwrap();
    assert_eq!(
        (
            second.counts.changed,
            second.counts.unchanged,
            second.counts.sent
        ),
        (10, 1490, 10)
    );
    psql(&format!("DROP TABLE {table}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_and_append_modes_reach_the_destination_as_such() {
    for mode in ["update", "append"] {
        let dir = tempfile::tempdir().unwrap();
        let rx = receiver().await;
        project(dir.path(), &rx, mode, "");
        csv(dir.path(), &[("a@x.com", "1", "1"), ("b@x.com", "2", "2")]);
        let first = run(dir.path(), RunOptions::default()).await;
        assert_eq!(first.counts.ok, 2, "{mode}: {:?}", first.error);
        csv(dir.path(), &[("a@x.com", "5", "1"), ("b@x.com", "2", "2")]);
        let second = run(dir.path(), RunOptions::default()).await;
        // Both modes send changed rows again: update as an update, append as
        // a new event.
        assert_eq!(
            (second.counts.changed, second.counts.sent),
            (1, 1),
            "{mode}"
        );
        assert!(
            rx.modes().iter().all(|m| m == mode),
            "{mode}: {:?}",
            rx.modes()
        );
        assert_eq!(rx.rows().len(), 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_change_resends_every_row_and_plan_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    project(dir.path(), &rx, "upsert", "");
    csv(
        dir.path(),
        &[
            ("a@x.com", "1", "1"),
            ("b@x.com", "2", "2"),
            ("c@x.com", "3", "3"),
        ],
    );
    let first = run(dir.path(), RunOptions::default()).await;
    assert_eq!(first.counts.ok, 3, "{:?}", first.error);

    // How rows travel is not part of their identity: nothing to send.
    let yaml = std::fs::read_to_string(dir.path().join("sluice.yaml")).unwrap();
    std::fs::write(
        dir.path().join("sluice.yaml"),
        yaml.replace("batch_size: 2", "batch_size: 3"),
    )
    .unwrap();
    let plan_same = run(
        dir.path(),
        RunOptions {
            dry_run: true,
            ..Default::default()
        },
    )
    .await;
    assert!(!plan_same.config_changed);
    assert_eq!(
        (plan_same.counts.unchanged, plan_same.counts.planned),
        (3, 0)
    );
    let same = run(dir.path(), RunOptions::default()).await;
    assert_eq!((same.counts.unchanged, same.counts.sent), (3, 0));

    // A mapping is: every row goes again, and the plan says why first.
    std::fs::write(
        dir.path().join("sluice.yaml"),
        yaml.replace(
            "{ from: plan, to: Plan, type: integer }",
            "{ from: plan, to: Tier, type: integer }",
        ),
    )
    .unwrap();
    let plan = run(
        dir.path(),
        RunOptions {
            dry_run: true,
            ..Default::default()
        },
    )
    .await;
    assert!(plan.config_changed);
    assert_eq!((plan.counts.changed, plan.counts.planned), (3, 3));
    let before = rx.rows().len();
    let resent = run(dir.path(), RunOptions::default()).await;
    assert_eq!((resent.counts.changed, resent.counts.ok), (3, 3));
    let rows = rx.rows();
    assert_eq!(
        emails(&rows[before..]),
        vec!["a@x.com", "b@x.com", "c@x.com"]
    );
    assert!(rows[before..].iter().all(|r| r["Tier"].is_number()));

    // Delivered under the new config: nothing left to send.
    let after = run(dir.path(), RunOptions::default()).await;
    assert!(!after.config_changed);
    assert_eq!((after.counts.unchanged, after.counts.sent), (3, 0));
}

/// Each email the receiver got, with how many times it got it.
fn deliveries(rx: &Receiver) -> std::collections::BTreeMap<String, usize> {
    let mut seen = std::collections::BTreeMap::new();
    for row in rx.rows() {
        *seen
            .entry(row["Email"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_of_a_failed_chunk_are_kept_so_a_rerun_sends_no_duplicate() {
    for mode in ["insert", "append"] {
        let dir = tempfile::tempdir().unwrap();
        let rx = receiver().await;
        project(dir.path(), &rx, mode, "");
        let yaml = std::fs::read_to_string(dir.path().join("sluice.yaml")).unwrap();
        std::fs::write(
            dir.path().join("sluice.yaml"),
            yaml.replace("batch_size: 2", "batch_size: 4"),
        )
        .unwrap();
        let rows = [
            ("a@x.com", "1", "1"),
            ("b@x.com", "2", "2"),
            ("c@x.com", "3", "3"),
            ("d@x.com", "4", "4"),
        ];
        csv(dir.path(), &rows);
        // The chunk of four is refused as a whole (410: permanent), so it is
        // split; the first half is accepted; the second half then meets a
        // receiver that keeps failing until the retries run out.
        rx.script.lock().unwrap().extend(
            [(410, None), (200, None)]
                .into_iter()
                .chain(std::iter::repeat_n((500, None), 5)),
        );
        let options = || RunOptions {
            retry: sluice_engine::retry::RetryPolicy {
                base_delay: std::time::Duration::from_millis(1),
                ..Default::default()
            },
            ..Default::default()
        };
        let failed = run(dir.path(), options()).await;
        assert_eq!(failed.status, RunStatus::Failed, "{mode}");
        assert!(
            failed
                .error
                .as_deref()
                .unwrap_or_default()
                .contains("HTTP 500"),
            "{mode}: {:?}",
            failed.error
        );
        assert_eq!(failed.counts.ok, 2, "{mode}: the accepted half is counted");
        assert_eq!(deliveries(&rx).len(), 2, "{mode}");

        let rerun = run(dir.path(), options()).await;
        assert_eq!(
            rerun.status,
            RunStatus::Succeeded,
            "{mode}: {:?}",
            rerun.error
        );
        assert_eq!(
            (rerun.counts.sent, rerun.counts.unchanged),
            (2, 2),
            "{mode}: only the unacknowledged half goes again"
        );
        let got = deliveries(&rx);
        let duplicates: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
        let lost: Vec<_> = rows
            .iter()
            .filter(|(e, _, _)| !got.contains_key(*e))
            .collect();
        assert!(duplicates.is_empty(), "{mode}: duplicates {duplicates:?}");
        assert!(lost.is_empty(), "{mode}: lost {lost:?}");
    }
}

/// Issue 12: changed rows are gathered across source batches, so a run
/// makes ceil(rows to send / batch_size) requests, first run and rerun,
/// however the changes are spread over the model (the postgres source reads
/// 5,000 rows a batch; the sync writes 700).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_rows_fill_whole_write_batches_across_source_batches() {
    let table = format!("sluice_full_batches_{}", std::process::id());
    psql(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id int PRIMARY KEY, ltv int);
         INSERT INTO {table} SELECT g, g FROM generate_series(1, 12000) g;"
    ));
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    let yaml = format!(
        r#"
sources:
  pg:
    plugin: postgres
    config: {{ host: 127.0.0.1, port: 5432, user: postgres, database: test }}
    grants: ["postgres://127.0.0.1:5432"]
destinations:
  hook: {{ plugin: webhook, config: {{ url: "{}" }}, grants: ["{}"] }}
models:
  users:
    source: pg
    query: "select id, ltv from {table} order by id"
    primary_key: id
syncs:
  users:
    model: users
    destination: hook
    object: users
    mode: upsert
    identifier: id
    batch_size: 700
    rate_limit: {{ requests: 1000, per_ms: 1000, concurrency: 2 }}
"#,
        rx.url,
        rx.grant()
    );
    std::fs::write(dir.path().join("sluice.yaml"), yaml).unwrap();
    let loaded = Loaded::open(dir.path());
    let engine = loaded.engine();
    let request_sizes = |rx: &Receiver| -> Vec<usize> {
        let mut sizes: Vec<usize> = rx
            .requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.body["data"]["rows"].as_array().map_or(0, Vec::len))
            .collect();
        sizes.sort_unstable();
        sizes
    };

    let first = engine.run("users", &RunOptions::default()).await.unwrap();
    assert_eq!(first.counts.ok, 12000, "{:?}", first.error);
    // ceil(12000 / 700) = 18: 17 full requests and one of 100.
    let sizes = request_sizes(&rx);
    assert_eq!(sizes.len(), 18, "{sizes:?}");
    assert_eq!(sizes.iter().filter(|&&n| n == 700).count(), 17, "{sizes:?}");
    assert_eq!((first.counts.sent, first.counts.write_calls), (12000, 18));

    // Every 100th row changes: 120 rows spread over three source batches
    // go out in one request.
    rx.requests.lock().unwrap().clear();
    psql(&format!(
        "UPDATE {table} SET ltv = ltv + 1 WHERE id % 100 = 0"
    ));
    let second = engine.run("users", &RunOptions::default()).await.unwrap();
    assert_eq!((second.counts.changed, second.counts.ok), (120, 120));
    assert_eq!(request_sizes(&rx), vec![120]);
    assert_eq!((second.counts.sent, second.counts.write_calls), (120, 1));
    psql(&format!("DROP TABLE {table}"));
}

/// Issue 10 item 6: acknowledgements are paired with keys by position, so a
/// transform that reorders its rows is refused as a contract error before
/// anything is sent; one that only changes identifiers in place is fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transform_that_reorders_rows_is_refused_before_anything_is_sent() {
    for (attack, sent) in [("reverse", 0), ("swap-first-two", 0), ("lowercase", 3)] {
        let dir = tempfile::tempdir().unwrap();
        let rx = receiver().await;
        let transforms = format!(
            "transforms:\n  shuffle: {{ plugin: \"{HOSTILE_TRANSFORM_PATH}\", config: {{ attack: {attack} }} }}\n"
        );
        project(dir.path(), &rx, "upsert", &transforms);
        let yaml = std::fs::read_to_string(dir.path().join("sluice.yaml")).unwrap();
        std::fs::write(
            dir.path().join("sluice.yaml"),
            yaml.replace(
                "    batch_size: 2\n",
                "    batch_size: 2\n    transforms: [shuffle]\n",
            ),
        )
        .unwrap();
        csv(
            dir.path(),
            &[
                ("A@x.com", "1", "1"),
                ("B@x.com", "2", "1"),
                ("C@x.com", "3", "1"),
            ],
        );
        let report = run(dir.path(), RunOptions::default()).await;
        assert_eq!(report.counts.ok, sent, "{attack}: {:?}", report.error);
        assert_eq!(rx.rows().len(), sent as usize, "{attack}");
        if sent == 0 {
            assert_eq!(report.status, RunStatus::Failed);
            let error = report.error.unwrap();
            assert!(
                error.contains("broke the contract") && error.contains("input order"),
                "{attack}: {error}"
            );
        } else {
            assert_eq!(emails(&rx.rows()), ["a@x.com", "b@x.com", "c@x.com"]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_its_run_deadline_stops_with_what_was_acknowledged_committed() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    // A first run without a deadline loads and compiles the plugins, so the
    // deadline below is spent on delivery, not on a busy machine's compiles.
    project(dir.path(), &rx, "upsert", "");
    csv(dir.path(), &[("u00@x.com", "0", "1")]);
    let warm = run(dir.path(), RunOptions::default()).await;
    assert_eq!(warm.status, RunStatus::Succeeded, "{:?}", warm.error);
    project(dir.path(), &rx, "upsert", "    run_deadline: 4s\n");
    let rows: Vec<(String, String, String)> = (0..41)
        .map(|i| (format!("u{i:02}@x.com"), format!("{i}"), "1".to_string()))
        .collect();
    let borrowed: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    csv(dir.path(), &borrowed);
    // Twenty batches of two new rows, each answered after 400 ms: 8 s.
    *rx.delay.lock().unwrap() = std::time::Duration::from_millis(400);
    let started = std::time::Instant::now();
    let stopped = run(dir.path(), RunOptions::default()).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(7),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(stopped.status, RunStatus::Failed);
    let error = stopped.error.unwrap();
    assert!(
        error.contains("stopped at its run deadline of 4 s (`run_deadline`)"),
        "{error}"
    );
    assert_eq!(stopped.stage.as_deref(), Some("run"));
    let acknowledged = stopped.counts.ok;
    assert!(
        (1..40).contains(&acknowledged),
        "{acknowledged} rows acknowledged before the deadline"
    );
    // The next run, with time enough, sends only what was not committed.
    *rx.delay.lock().unwrap() = std::time::Duration::ZERO;
    project(dir.path(), &rx, "upsert", "");
    let rest = run(dir.path(), RunOptions::default()).await;
    assert_eq!(rest.status, RunStatus::Succeeded, "{:?}", rest.error);
    assert!(rest.counts.ok <= 40 - acknowledged + 2, "{:?}", rest.counts);
    let mut delivered = emails(&rx.rows());
    delivered.dedup();
    assert_eq!(delivered.len(), 41, "every row arrived");
}

/// A proxy in front of `rx` that reads the first request it is sent and
/// closes the connection without answering: the request reached the
/// destination's side, its outcome is unknown to the sender. Every later
/// connection is passed through.
async fn drop_first_answer(rx: &Receiver) -> String {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let upstream = rx
        .url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((mut inbound, _)) = listener.accept().await {
            if std::mem::take(&mut first) {
                let mut buf = [0u8; 4096];
                let _ = inbound.read(&mut buf).await;
                drop(inbound);
                continue;
            }
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let mut outbound = tokio::net::TcpStream::connect(upstream).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    let path = rx.url.splitn(4, '/').nth(3).unwrap_or_default();
    format!("http://127.0.0.1:{port}/{path}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_got_no_response_is_counted_as_outcome_unknown_and_resent() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    let proxied = Receiver {
        url: drop_first_answer(&rx).await,
        requests: rx.requests.clone(),
        script: rx.script.clone(),
        delay: rx.delay.clone(),
        response_headers: rx.response_headers.clone(),
    };
    project(dir.path(), &proxied, "upsert", "");
    csv(dir.path(), &[("a@x.com", "1", "1"), ("b@x.com", "2", "2")]);
    let report = run(dir.path(), RunOptions::default()).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    assert_eq!(report.counts.outcome_unknown, 1, "{:?}", report.counts);
    assert_eq!(report.counts.ok, 2);
    assert_eq!(emails(&rx.rows()), vec!["a@x.com", "b@x.com"]);
    let store = SqliteStore::open_project(dir.path()).unwrap();
    let recorded = store.run(report.run_id.unwrap()).unwrap().unwrap();
    assert_eq!(recorded.counts.outcome_unknown, 1, "the count is stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_rows_are_named_by_their_row_in_the_source() {
    // batch_size 2 splits the model over several source batches: the row
    // number counts from the start of the source, not of a batch.
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    project(dir.path(), &rx, "upsert", "");
    csv(
        dir.path(),
        &[
            ("a@x.com", "1", "1"),
            ("b@x.com", "2", "2"),
            ("a@x.com", "3", "3"),
            ("c@x.com", "4", "4"),
            ("", "5", "5"),
        ],
    );
    let report = run(dir.path(), RunOptions::default()).await;
    assert_eq!(report.counts.invalid, 2, "{:?}", report.counts);
    let store = SqliteStore::open_project(dir.path()).unwrap();
    let messages: Vec<String> = store
        .samples(report.run_id.unwrap())
        .unwrap()
        .into_iter()
        .map(|s| s.message)
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("source row 3, key") && m.contains("duplicate primary key")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("source row 5:") && m.contains("`email` is null")),
        "{messages:?}"
    );
}

/// Issue 16: a destination that refuses every call (here a receiver that
/// answers 410 Gone to everything, a whole-call permanent error) is failing
/// itself, not its rows: splitting finds no row it accepts, so the run
/// fails with that error instead of succeeding with every row rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_failing_every_call_fails_the_run_and_blames_no_row() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    project(dir.path(), &rx, "upsert", "");
    csv(dir.path(), &[("a@x.com", "1", "1"), ("b@x.com", "2", "2")]);
    rx.script
        .lock()
        .unwrap()
        .extend(std::iter::repeat_n((410, None), 3));
    let failed = run(dir.path(), RunOptions::default()).await;
    assert_eq!(failed.status, RunStatus::Failed);
    let error = failed.error.unwrap_or_default();
    assert!(
        error.contains("receiver is gone (410)")
            && error.contains("every call failed")
            && error.matches("receiver is gone").count() == 1,
        "{error}"
    );
    assert_eq!((failed.counts.ok, failed.counts.rejected), (0, 0));
    // The whole chunk of two, then each row alone: three calls, then stop.
    assert!(rx.script.lock().unwrap().is_empty());
    let store = SqliteStore::open_project(dir.path()).unwrap();
    assert!(store.ledger("customers").unwrap().is_empty());
    drop(store);

    let rerun = run(dir.path(), RunOptions::default()).await;
    assert_eq!(
        (rerun.status, rerun.counts.ok),
        (RunStatus::Succeeded, 2),
        "{:?}",
        rerun.error
    );
}

/// The events a hook receiver got, each checked against its Standard
/// Webhooks signature with the reference library.
fn signed_events(hooks: &Receiver, secret: &str) -> Vec<serde_json::Value> {
    let verifier = standardwebhooks::Webhook::new(secret).unwrap();
    hooks
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| {
            verifier
                .verify(&r.raw, &r.headers)
                .unwrap_or_else(|e| panic!("bad signature ({e}) on {}", r.body));
            r.body.clone()
        })
        .collect()
}

fn types(events: &[serde_json::Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_post_signed_lifecycle_events_in_order_and_a_dead_receiver_changes_nothing() {
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let dir = tempfile::tempdir().unwrap();
    let (rx, hooks) = (receiver().await, receiver().await);
    let notify = |url: &str| {
        format!("notify:\n  url: \"{url}\"\n  secret: {SECRET}\n  rejected_threshold: 2\n")
    };
    project(dir.path(), &rx, "upsert", &notify(&hooks.url));
    let rows = [
        ("a@x.com", "1", "1"),
        ("b@x.com", "2", "2"),
        ("c@x.com", "3", "3"),
    ];
    csv(dir.path(), &rows);
    // The first batch (two rows) is refused: a `rejected` event too.
    rx.script.lock().unwrap().push_back((400, None));
    let first = run(dir.path(), RunOptions::default()).await;
    assert_eq!(
        (first.status, first.counts.rejected),
        (RunStatus::Succeeded, 2)
    );
    let events = signed_events(&hooks, SECRET);
    assert_eq!(
        types(&events),
        ["run.started", "run.succeeded", "run.rejected"]
    );
    for e in &events {
        assert_eq!(e["data"]["run_id"].as_i64(), first.run_id, "{e}");
        assert_eq!(e["data"]["sync"], "customers", "{e}");
        assert!(e["timestamp"].as_str().unwrap().ends_with('Z'), "{e}");
    }
    assert_eq!(events[1]["data"]["counts"]["rejected"], 2);
    assert_eq!(events[2]["data"]["rejected_threshold"], 2);
    let ids: std::collections::BTreeSet<String> = hooks
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 3, "each message has its own id");

    // A failed run (the destination answers 410 Gone to the batch and to
    // each of its rows): started, failed, with the stage; no `rejected`.
    rx.script
        .lock()
        .unwrap()
        .extend(std::iter::repeat_n((410, None), 3));
    let failed = run(dir.path(), RunOptions::default()).await;
    assert_eq!(failed.status, RunStatus::Failed);
    let events = signed_events(&hooks, SECRET);
    assert_eq!(types(&events[3..]), ["run.started", "run.failed"]);
    assert_eq!(events[4]["data"]["stage"], "run");
    assert!(
        events[4]["data"]["error"].as_str().unwrap().contains("410"),
        "{}",
        events[4]
    );

    // A receiver that is gone: the run is the same, the wait bounded.
    project(
        dir.path(),
        &rx,
        "upsert",
        &notify("http://127.0.0.1:1/hooks"),
    );
    let started = std::time::Instant::now();
    let third = run(dir.path(), RunOptions::default()).await;
    assert_eq!((third.status, third.counts.ok), (RunStatus::Succeeded, 2));
    assert!(
        started.elapsed()
            < sluice_engine::notify::END_DEADLINE + std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}
