//! Full syncs into the Salesforce emulator: the host's rate limiter keeps a
//! sync under the API's limit, and without it the API's throttling signals
//! are waited out without losing rows.

use sluice_tests as common;

use common::*;
use sluice_config as config;
use sluice_emulators::{EmulatorConfig, RateLimit, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};
use sluice_engine::run::{RunOptions, RunReport, SyncEngine};
use sluice_runtime::sandbox::policy::Grants;
use sluice_state::{RunStatus, SqliteStore};
use std::path::Path;
use std::sync::Mutex;
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

async fn run(dir: &Path) -> RunReport {
    let project = config::validate(dir).unwrap_or_else(|d| panic!("{d:?}"));
    let test = runtime();
    let store = Mutex::new(SqliteStore::open_project(dir).unwrap());
    let engine = SyncEngine {
        project: &project,
        runtime: &test.runtime,
        store: &store,
    };
    engine.run("people", &RunOptions::default()).await.unwrap()
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
    // The host waited on its own limit instead, and says so.
    assert!(report.counts.throttled_waits > 0, "{:?}", report.counts);
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
