//! Full syncs into the Salesforce emulator: the host's rate limiter keeps a
//! sync under the API's limit, and without it the API's throttling signals
//! are waited out without losing rows.

use sluice_tests as common;

use common::*;
use sluice_emulators::{EmulatorConfig, RateLimit, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};
use sluice_engine::run::{RunOptions, RunReport};
use sluice_runtime::sandbox::policy::Grants;
use sluice_state::{RunStatus, SqliteStore};
use std::path::Path;
use std::time::Duration;

const ROWS: usize = 300;

fn project(dir: &Path, url: &str, rate_limit: &str) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let mut csv = String::from("id,email,last\n");
    for i in 0..ROWS {
        csv.push_str(&format!("{i},c{i}@example.com,Last{i}\n"));
    }
    csv.push_str("9999,not-an-email,Bad\n");
    std::fs::write(dir.join("data/people.csv"), csv).unwrap();
    let grant = Grants::pattern_for_url(url).unwrap();
    let yaml = format!(
        r#"
sources:
  files: {{ plugin: files, config: {{ path: /data }}, grants: ["dir:data:/data"] }}
destinations:
  sf:
    plugin: salesforce
    config:
      login_url: "{url}"
      auth: {{ flow: client_credentials, client_id: {DEFAULT_CLIENT_ID}, client_secret: {DEFAULT_CLIENT_SECRET} }}
      objects: [Contact]
    grants: ["{grant}"]
    {rate_limit}
models:
  people: {{ source: files, object: people.csv, primary_key: id }}
syncs:
  people:
    model: people
    destination: sf
    object: Contact
    mode: upsert
    identifier: External_Id__c
    batch_size: 20
    mappings:
      - {{ from: id, to: External_Id__c }}
      - {{ from: email, to: Email }}
      - {{ from: last, to: LastName }}
"#
    );
    std::fs::write(dir.join("sluice.yaml"), yaml).unwrap();
}

/// Rewrites the project's sluice.yaml through `edit`.
fn edit_project(dir: &Path, edit: impl FnOnce(String) -> String) {
    let path = dir.join("sluice.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap();
    std::fs::write(path, edit(yaml)).unwrap();
}

async fn run(dir: &Path) -> RunReport {
    run_sync(dir, "people", &RunOptions::default()).await
}

async fn verify(dir: &Path, dry_run: bool) -> sluice_engine::run::VerifyReport {
    Loaded::open(dir)
        .engine()
        .verify(
            "people",
            sluice_engine::run::VerifyOptions {
                dry_run,
                ..Default::default()
            },
        )
        .await
        .unwrap()
}

fn limited(requests: u32) -> EmulatorConfig {
    EmulatorConfig {
        rate_limit: Some(RateLimit::new(requests, Duration::from_secs(1))),
        ..EmulatorConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_limiter_keeps_a_sync_under_the_api_limit() {
    let sf = sluice_emulators::start_salesforce("127.0.0.1:0".parse().unwrap(), limited(20))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    project(
        dir.path(),
        &sf.base_url(),
        "rate_limit: { requests: 12, per_ms: 1000, concurrency: 1 }",
    );
    let report = run(dir.path()).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    assert_eq!(
        sf.handle().stats().throttled,
        0,
        "the API never had to throttle"
    );
    // The host waited on its own limit instead, and says so: as pacing,
    // not as throttling.
    assert!(report.counts.paced_waits > 0, "{:?}", report.counts);
    assert_eq!(report.counts.throttled_waits, 0, "{:?}", report.counts);
    assert_eq!(sf.handle().record_count("Contact"), ROWS);
    // The bad email is rejected with Salesforce's own message.
    assert_eq!(report.counts.rejected, 1);
    let ledger = SqliteStore::open_project(dir.path()).unwrap();
    let entry = &sluice_state::StateStore::ledger(&ledger, "people").unwrap()[0];
    assert!(
        entry.message.contains("INVALID_EMAIL_ADDRESS"),
        "{}",
        entry.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_limiter_throttling_is_waited_out_and_nothing_is_lost() {
    let sf = sluice_emulators::start_salesforce("127.0.0.1:0".parse().unwrap(), limited(6))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A limit far above what the API allows: the API's 403s must be handled.
    project(
        dir.path(),
        &sf.base_url(),
        "rate_limit: { requests: 1000, per_ms: 1000, concurrency: 1 }",
    );
    let report = run(dir.path()).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    assert!(sf.handle().stats().throttled > 0, "the emulator throttled");
    assert!(report.counts.throttled_waits > 0, "{:?}", report.counts);
    assert_eq!((report.counts.ok, report.counts.rejected), (ROWS as u64, 1));
    assert_eq!(sf.handle().record_count("Contact"), ROWS);
}

/// Contacts per External_Id__c.
fn records_by_external_id(
    sf: &sluice_emulators::RunningEmulator,
) -> std::collections::BTreeMap<String, usize> {
    let mut by_id = std::collections::BTreeMap::new();
    for r in sf.handle().records("Contact") {
        let id = match &r["External_Id__c"] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        *by_id.entry(id).or_insert(0) += 1;
    }
    by_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_mid_write_cause_no_duplicate_and_no_loss_in_insert_mode() {
    // Half the requests fail with a 5xx before they are served (the seed
    // fixes which). A write of 301 rows takes several collection requests;
    // when a later one fails after earlier ones were accepted, the retries
    // run out with those rows acknowledged: they must be committed, or the
    // next run inserts them again.
    let faults = sluice_emulators::FaultConfig {
        server_error_probability: 0.5,
        ..Default::default()
    };
    let sf = sluice_emulators::start_salesforce(
        "127.0.0.1:0".parse().unwrap(),
        EmulatorConfig {
            faults,
            seed: 11,
            ..EmulatorConfig::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &sf.base_url(), "");
    edit_project(dir.path(), |yaml| {
        yaml.replace("mode: upsert", "mode: insert")
            .replace("batch_size: 20", "batch_size: 301")
    });
    let loaded = Loaded::open(dir.path());
    let engine = loaded.engine();
    let options = RunOptions {
        retry: sluice_engine::retry::RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut failed_runs = 0;
    for _ in 0..40 {
        let report = engine.run("people", &options).await.unwrap();
        if report.status == RunStatus::Succeeded {
            break;
        }
        failed_runs += 1;
    }
    assert!(failed_runs > 0, "the faults failed some runs");
    sf.handle().clear_faults();
    let last = engine.run("people", &options).await.unwrap();
    assert_eq!(last.status, RunStatus::Succeeded, "{:?}", last.error);

    let by_id = records_by_external_id(&sf);
    let duplicates: Vec<_> = by_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "duplicates: {duplicates:?}");
    // Salesforce refuses a second insert of an external id: a re-sent row
    // would show up as a rejection. Only the bad email may be rejected.
    let ledger =
        sluice_state::StateStore::ledger(&*loaded.store.lock().unwrap(), "people").unwrap();
    let refused: Vec<String> = ledger
        .iter()
        .filter(|l| !l.message.contains("INVALID_EMAIL_ADDRESS"))
        .map(|l| format!("{}: {}", l.key, l.message))
        .collect();
    assert!(refused.is_empty(), "rows sent twice: {refused:?}");
    assert_eq!(ledger.len(), 1);
    let lost: Vec<usize> = (0..ROWS)
        .filter(|i| !by_id.contains_key(&i.to_string()))
        .collect();
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert_eq!(by_id.len(), ROWS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_size_of_the_change_set_picks_collections_or_bulk() {
    // No `batch_size` in the sync: the plugin's own (10,000) gathers the
    // whole change set into one write call, so `bulk_threshold` compares
    // it with the change set, not with a source chunk or a small batch.
    let sf = sluice_emulators::start_salesforce(
        "127.0.0.1:0".parse().unwrap(),
        EmulatorConfig::default(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &sf.base_url(), "");
    edit_project(dir.path(), |yaml| {
        yaml.replace("    batch_size: 20\n", "").replace(
            "objects: [Contact]",
            "objects: [Contact]\n      bulk_threshold: 250\n      poll_interval_ms: 20",
        )
    });
    let upserts = |sf: &sluice_emulators::RunningEmulator| {
        sf.handle().stats().endpoint(
            "PATCH",
            "/services/data/{version}/composite/sobjects/{object}/{field}",
        )
    };

    // 301 rows to send, at least the threshold: one Bulk job, no Collections.
    let first = run(dir.path()).await;
    assert_eq!(first.status, RunStatus::Succeeded, "{:?}", first.error);
    assert_eq!(first.counts.write_calls, 1, "{:?}", first.counts);
    assert_eq!(sf.handle().bulk_jobs().len(), 1);
    assert_eq!(upserts(&sf), 0);
    assert_eq!(sf.handle().record_count("Contact"), ROWS);

    // 240 changed rows, under the threshold: Collections, 200 a request,
    // in one write call; no new job.
    let mut csv = String::from("id,email,last\n");
    for i in 0..ROWS {
        let last = if i < 240 {
            format!("Changed{i}")
        } else {
            format!("Last{i}")
        };
        csv.push_str(&format!("{i},c{i}@example.com,{last}\n"));
    }
    csv.push_str("9999,not-an-email,Bad\n");
    std::fs::write(dir.path().join("data/people.csv"), csv).unwrap();
    let second = run(dir.path()).await;
    assert_eq!(second.status, RunStatus::Succeeded, "{:?}", second.error);
    assert_eq!(second.counts.write_calls, 1, "{:?}", second.counts);
    assert_eq!(sf.handle().bulk_jobs().len(), 1, "no second Bulk job");
    // 240 changed rows plus the rejected row retried: 241 in 2 requests.
    assert_eq!(upserts(&sf), 2);
    let changed = sf
        .handle()
        .records("Contact")
        .into_iter()
        .filter(|r| {
            r["LastName"]
                .as_str()
                .is_some_and(|l| l.starts_with("Changed"))
        })
        .count();
    assert_eq!(changed, 240);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserts_go_through_bulk_only_when_the_operator_allows_it() {
    // A Bulk job outlives a killed run, and an insert has no key by which
    // the next run could find the rows it applied: by default inserts stay
    // on Collections (at most one request's rows of unknown outcome).
    for (setting, jobs) in [("", 0), ("\n      bulk_insert: true", 1)] {
        let sf = sluice_emulators::start_salesforce(
            "127.0.0.1:0".parse().unwrap(),
            EmulatorConfig::default(),
        )
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        project(dir.path(), &sf.base_url(), "");
        edit_project(dir.path(), |yaml| {
            yaml.replace("    batch_size: 20\n", "")
                .replace("mode: upsert", "mode: insert")
                .replace(
                    "objects: [Contact]",
                    &format!("objects: [Contact]\n      bulk_threshold: 100\n      poll_interval_ms: 20{setting}"),
                )
        });
        let report = run(dir.path()).await;
        assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
        assert_eq!(sf.handle().bulk_jobs().len(), jobs, "with `{setting}`");
        assert_eq!(
            sf.handle().record_count("Contact"),
            ROWS,
            "with `{setting}`"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_contacts_deleted_in_salesforce_and_the_next_run_restores_them() {
    let sf = sluice_emulators::start_salesforce(
        "127.0.0.1:0".parse().unwrap(),
        EmulatorConfig::default(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &sf.base_url(), "");
    let first = run(dir.path()).await;
    assert_eq!(first.status, RunStatus::Succeeded, "{:?}", first.error);
    assert_eq!(sf.handle().record_count("Contact"), ROWS);

    // Someone deletes three contacts in Salesforce itself.
    let gone = ["7", "120", "299"];
    for id in gone {
        let record = sf
            .handle()
            .find_record("Contact", "External_Id__c", id)
            .unwrap();
        assert!(sf
            .handle()
            .delete_record("Contact", record["Id"].as_str().unwrap()));
    }
    assert_eq!(
        run(dir.path()).await.counts.sent,
        1,
        "only the rejected row"
    );

    let queries = |sf: &sluice_emulators::RunningEmulator| {
        sf.handle()
            .stats()
            .endpoint("GET", "/services/data/{version}/query")
    };
    let dry = verify(dir.path(), true).await;
    assert_eq!(
        (dry.checked, dry.missing, dry.forgotten),
        (ROWS as u64, 3, 0)
    );
    // SOQL `IN (...)` lists of 300 short ids fit in one query.
    assert_eq!(queries(&sf), 1, "{dry:?}");
    let report = verify(dir.path(), false).await;
    assert_eq!((report.missing, report.forgotten), (3, 3), "{report:?}");

    let restore = run(dir.path()).await;
    assert_eq!(restore.status, RunStatus::Succeeded, "{:?}", restore.error);
    // The three forgotten contacts, and the bad row retried as every run.
    assert_eq!(
        (
            restore.counts.added,
            restore.counts.ok,
            restore.counts.rejected
        ),
        (4, 3, 1),
        "{:?}",
        restore.counts
    );
    for id in gone {
        assert!(
            sf.handle()
                .find_record("Contact", "External_Id__c", id)
                .is_some(),
            "{id}"
        );
    }
    assert_eq!(sf.handle().record_count("Contact"), ROWS);
    assert_eq!(verify(dir.path(), false).await.missing, 0);
}

/// Salesforce's daily allowance runs out mid-run: the run stops at once as
/// paused (it does not wait out the hour the plugin asks for), keeps what
/// was delivered, and the next run after the allowance resets sends only
/// the rest. Exhausted before a run, the run stops the same way before it
/// writes anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_daily_allowance_pauses_the_sync_and_the_next_day_finishes_it() {
    let sf = sluice_emulators::start_salesforce(
        "127.0.0.1:0".parse().unwrap(),
        EmulatorConfig::default(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // One writer, so the requests come in order (login, describe, then one
    // batch after another) and the allowance runs out mid-run whatever
    // the timing.
    project(
        dir.path(),
        &sf.base_url(),
        "rate_limit: { requests: 100, per_ms: 1000, concurrency: 1 }",
    );
    // Enough for the describe and a few of the 16 batches of 20.
    sf.handle().set_daily_limit(6);

    let started = std::time::Instant::now();
    let first = run(dir.path()).await;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the run waited {:?} on an allowance that resets in an hour",
        started.elapsed()
    );
    assert_eq!(first.status, RunStatus::Failed);
    let error = first.error.clone().unwrap();
    assert!(error.contains("paused until"), "{error}");
    let delivered = sf.handle().record_count("Contact");
    assert!(delivered > 0 && delivered < ROWS, "{delivered} delivered");
    // State holds exactly what Salesforce accepted.
    assert_eq!(first.counts.ok as usize, delivered, "{:?}", first.counts);

    // Still exhausted: the next attempt stops before writing anything.
    let again = run(dir.path()).await;
    assert_eq!(again.status, RunStatus::Failed);
    assert!(again.error.unwrap().contains("paused until"));
    assert_eq!(again.counts.ok, 0, "{:?}", again.counts);
    assert_eq!(sf.handle().record_count("Contact"), delivered);

    // The allowance resets: the rest goes out, and nothing delivered before
    // is sent again.
    sf.handle().set_daily_limit(15_000);
    sf.handle().reset_daily_usage();
    let next_day = run(dir.path()).await;
    assert_eq!(
        next_day.status,
        RunStatus::Succeeded,
        "{:?}",
        next_day.error
    );
    assert_eq!(
        next_day.counts.ok as usize,
        ROWS - delivered,
        "{:?}",
        next_day.counts
    );
    assert_eq!(sf.handle().record_count("Contact"), ROWS);
}
