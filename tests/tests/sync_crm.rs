//! PostgreSQL to the CRM emulators through full syncs: per-record rejects
//! land in the ledger with the API's own message, injected 5xx responses and
//! a token expiring mid-run lose nothing, and the CRM ends up holding the
//! model minus the rejected rows. Writes to one destination go out on as
//! many writers as its concurrency allows, and the quota the API reports
//! paces them below its limit.

use sluice_tests as common;

use common::*;
use sluice_emulators::{
    EmulatorConfig, FaultConfig, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_HUBSPOT_TOKEN,
};
use sluice_engine::budget::{BudgetKey, SharedBudgets, Signal};
use sluice_engine::run::{RunOptions, RunReport};
use sluice_runtime::sandbox::policy::Grants;
use sluice_state::{RunStatus, SqliteStore, StateStore};
use std::path::Path;
use std::time::Duration;

/// A table of `n` people; ids in `bad` get a malformed email.
fn people_table(name: &str, n: usize, bad: &[usize]) {
    // `IN (NULL)` matches nothing: a table without bad rows.
    let mut bad: Vec<String> = bad.iter().map(|b| b.to_string()).collect();
    if bad.is_empty() {
        bad.push("NULL".into());
    }
    psql(&format!(
        "DROP TABLE IF EXISTS {name}; CREATE TABLE {name} (id int PRIMARY KEY, email text, first text, last text);
         INSERT INTO {name} SELECT g, CASE WHEN g IN ({}) THEN 'broken-' || g ELSE 'p' || g || '@example.com' END,
                'First' || g, 'Last' || g FROM generate_series(1, {n}) g;",
        bad.join(",")
    ));
}

fn write_project(dir: &Path, table: &str, destination: &str, sync: &str) {
    let yaml = format!(
        r#"
sources:
  pg:
    plugin: postgres
    config: {{ host: 127.0.0.1, port: 5432, user: postgres, database: test }}
    grants: ["postgres://127.0.0.1:5432"]
destinations:
{destination}
models:
  people:
    source: pg
    query: "select id, email, first, last from {table}"
    primary_key: id
syncs:
  people:
    model: people
    destination: crm
{sync}"#
    );
    std::fs::write(dir.join("sluice.yaml"), yaml).unwrap();
}

async fn run(dir: &Path) -> RunReport {
    run_sync(dir, "people", &RunOptions::default()).await
}

/// A HubSpot emulator on a free loopback port.
async fn hubspot(config: EmulatorConfig) -> sluice_emulators::RunningEmulator {
    sluice_emulators::start_hubspot("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap()
}

/// A HubSpot contacts destination on `hs`, with extra YAML lines (a rate
/// limit) appended.
fn hubspot_destination(hs: &sluice_emulators::RunningEmulator, extra: &str) -> String {
    format!(
        "  crm:\n    plugin: hubspot\n    config: {{ base_url: \"{}\", token: {DEFAULT_HUBSPOT_TOKEN}, object_type: contacts }}\n    grants: [\"{}\"]\n{extra}",
        hs.base_url(),
        Grants::pattern_for_url(&hs.base_url()).unwrap()
    )
}

const CONTACT_SYNC: &str = "    object: contacts\n    mode: upsert\n    identifier: email\n    mappings:\n      - { from: email, to: email }\n      - { from: first, to: firstname }\n      - { from: last, to: lastname }\n";

fn ledger_messages(dir: &Path) -> Vec<String> {
    let store = SqliteStore::open_project(dir).unwrap();
    store
        .ledger("people")
        .unwrap()
        .into_iter()
        .map(|l| l.message)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_to_hubspot_with_injected_5xx() {
    let table = format!("sluice_hs_{}", std::process::id());
    people_table(&table, 600, &[17, 400]);
    let faults = FaultConfig {
        server_error_probability: 0.05,
        ..FaultConfig::none()
    };
    let hs = hubspot(EmulatorConfig {
        faults,
        seed: 7,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    write_project(
        dir.path(),
        &table,
        &hubspot_destination(&hs, ""),
        CONTACT_SYNC,
    );

    let report = run(dir.path()).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    assert!(
        hs.handle().stats().server_errors_injected > 0,
        "faults were injected"
    );
    assert_eq!(
        (report.counts.ok, report.counts.rejected),
        (598, 2),
        "{:?}",
        report.counts
    );
    assert_eq!(hs.handle().record_count("contacts"), 598);
    let messages = ledger_messages(dir.path());
    assert_eq!(messages.len(), 2);
    assert!(
        messages.iter().all(|m| m.contains("INVALID_EMAIL")),
        "{messages:?}"
    );
    psql(&format!("DROP TABLE {table}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_to_salesforce_bulk_with_a_token_expiring_mid_run() {
    let table = format!("sluice_sf_{}", std::process::id());
    people_table(&table, 1500, &[3, 1234]);
    let faults = FaultConfig {
        server_error_probability: 0.05,
        ..FaultConfig::none()
    };
    let sf = sluice_emulators::start_salesforce(
        "127.0.0.1:0".parse().unwrap(),
        EmulatorConfig {
            faults,
            seed: 3,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let destination = format!(
        "  crm:\n    plugin: salesforce\n    config:\n      login_url: \"{}\"\n      auth: {{ flow: client_credentials, client_id: {DEFAULT_CLIENT_ID}, client_secret: {DEFAULT_CLIENT_SECRET} }}\n      objects: [Contact]\n      bulk_threshold: 400\n      poll_interval_ms: 50\n    grants: [\"{}\"]\n",
        sf.base_url(),
        Grants::pattern_for_url(&sf.base_url()).unwrap()
    );
    let sync = "    object: Contact\n    mode: upsert\n    identifier: External_Id__c\n    batch_size: 500\n    mappings:\n      - { from: id, to: External_Id__c, type: string }\n      - { from: email, to: Email }\n      - { from: last, to: LastName }\n";
    write_project(dir.path(), &table, &destination, sync);

    // Expire every token once the first bulk job has been created.
    let handle = sf.handle().clone();
    let expirer = tokio::spawn(async move {
        loop {
            if !handle.bulk_jobs().is_empty() {
                handle.expire_all_tokens();
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    });
    let report = run(dir.path()).await;
    expirer.abort();
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    assert!(sf.handle().bulk_jobs().len() >= 3, "the bulk path was used");
    assert!(
        sf.handle().issued_tokens().len() >= 2,
        "the plugin re-authenticated"
    );
    assert_eq!(
        (report.counts.ok, report.counts.rejected),
        (1498, 2),
        "{:?}",
        report.counts
    );
    assert_eq!(sf.handle().record_count("Contact"), 1498);
    let messages = ledger_messages(dir.path());
    assert!(
        messages.iter().all(|m| m.contains("INVALID_EMAIL_ADDRESS")),
        "{messages:?}"
    );
    psql(&format!("DROP TABLE {table}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_out_on_as_many_writers_as_the_concurrency_allows() {
    let table = format!("sluice_hs_conc_{}", std::process::id());
    people_table(&table, 400, &[9]);
    // Every response takes 40 ms, so writes that overlap are visible.
    let faults = FaultConfig {
        slow_probability: 1.0,
        slow_delay: Duration::from_millis(40),
        ..FaultConfig::none()
    };
    let hs = hubspot(EmulatorConfig {
        faults,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let destination = hubspot_destination(
        &hs,
        "    rate_limit: { requests: 1000, per_ms: 1000, concurrency: 4 }\n",
    );
    let sync = format!("{CONTACT_SYNC}    batch_size: 20\n");
    write_project(dir.path(), &table, &destination, &sync);

    let report = run(dir.path()).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    assert_eq!(
        (report.counts.ok, report.counts.rejected),
        (399, 1),
        "{:?}",
        report.counts
    );
    assert_eq!(hs.handle().record_count("contacts"), 399);
    let stats = hs.handle().stats();
    assert!(
        (2..=4).contains(&stats.max_in_flight),
        "at most 4 writers, and more than one at once: {} in flight",
        stats.max_in_flight
    );
    assert_eq!(ledger_messages(dir.path()).len(), 1);

    // Nothing changed: a second run sends only the rejected row again, and
    // opens one writer for it, not four (each open reads the properties,
    // as discovery does).
    let property_reads = || {
        hs.handle()
            .stats()
            .endpoint("GET", "/crm/v3/properties/{object}")
    };
    let before = property_reads();
    let again = run(dir.path()).await;
    assert_eq!(
        property_reads() - before,
        2,
        "discovery and one writer read the properties"
    );
    assert_eq!(
        (
            again.counts.sent,
            again.counts.unchanged,
            again.counts.rejected
        ),
        (1, 399, 1),
        "{:?}",
        again.counts
    );
    psql(&format!("DROP TABLE {table}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quota_the_api_reports_keeps_the_sync_under_its_limit() {
    let table = format!("sluice_hs_quota_{}", std::process::id());
    people_table(&table, 12, &[]);
    // The API allows 5 calls in any rolling second ...
    let hs = hubspot(EmulatorConfig {
        rate_limit: Some(sluice_emulators::RateLimit::new(5, Duration::from_secs(1))),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    // ... but the operator declared 100 a second for this sync (over the
    // destination's 1 a second), and every row is a call.
    let destination = hubspot_destination(
        &hs,
        "    rate_limit: { requests: 1, per_ms: 1000, concurrency: 1 }\n",
    );
    let sync = format!(
        "{CONTACT_SYNC}    batch_size: 1\n    rate_limit: {{ requests: 100, per_ms: 1000, concurrency: 1 }}\n"
    );
    write_project(dir.path(), &table, &destination, &sync);

    let report = run(dir.path()).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    assert_eq!(report.counts.ok, 12, "{:?}", report.counts);
    assert_eq!(hs.handle().record_count("contacts"), 12);
    // The plugin passed X-HubSpot-RateLimit-Remaining up, and the host
    // slowed down before the API had to say 429.
    assert_eq!(hs.handle().stats().throttled, 0, "no call was refused");
    assert!(
        report.counts.paced_waits > 0,
        "the waits show in the run's counts, as the host's pacing: {:?}",
        report.counts
    );
    psql(&format!("DROP TABLE {table}"));
}

/// Issue 10 items 7 and 11: a batch where every row is bad makes HubSpot's
/// plugin split it down to single rows inside one `write`, about two
/// requests per row.
async fn all_bad_rows_to_hubspot(
    table: &str,
    destination_extra: &str,
    sync_extra: &str,
) -> (RunReport, u64) {
    let bad: Vec<usize> = (1..=30).collect();
    people_table(table, 30, &bad);
    // The API allows 10 requests in any rolling second.
    let hs = hubspot(EmulatorConfig {
        rate_limit: Some(sluice_emulators::RateLimit::new(10, Duration::from_secs(1))),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let sync = format!("{CONTACT_SYNC}    batch_size: 30\n{sync_extra}");
    write_project(
        dir.path(),
        table,
        &hubspot_destination(&hs, destination_extra),
        &sync,
    );
    let report = tokio::time::timeout(Duration::from_secs(120), run(dir.path()))
        .await
        .expect("the run makes progress and ends");
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    assert_eq!(
        (report.counts.ok, report.counts.rejected),
        (0, 30),
        "{:?}",
        report.counts
    );
    let messages = ledger_messages(dir.path());
    assert_eq!(messages.len(), 30);
    assert!(
        messages.iter().all(|m| m.contains("INVALID_EMAIL")),
        "{messages:?}"
    );
    assert!(
        report.counts.requests > 30,
        "every HTTP request the plugin made is counted: {:?}",
        report.counts
    );
    psql(&format!("DROP TABLE {table}"));
    (report, hs.handle().stats().throttled)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_http_request_is_paced_not_only_every_call() {
    // Declared a little under the API's limit: the ~60 requests of one
    // `write` are spread out by the host, so the API never refuses one.
    let (report, throttled) = all_bad_rows_to_hubspot(
        &format!("sluice_hs_paced_{}", std::process::id()),
        "    rate_limit: { requests: 8, per_ms: 1000, concurrency: 1 }\n",
        "",
    )
    .await;
    assert_eq!(throttled, 0, "no request was refused: {:?}", report.counts);
    assert!(report.counts.paced_waits > 0, "{:?}", report.counts);
    assert_eq!(report.counts.throttled_waits, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_isolated_before_a_throttle_are_kept_and_the_batch_completes() {
    // Declared far above the API's limit: the window runs out halfway
    // through isolating the bad rows. The rows already rejected are kept,
    // only the rest is retried, and the run ends.
    let (report, throttled) = all_bad_rows_to_hubspot(
        &format!("sluice_hs_isolate_{}", std::process::id()),
        "",
        "    rate_limit: { requests: 1000, per_ms: 1000, concurrency: 1 }\n",
    )
    .await;
    assert!(
        throttled > 0,
        "the API refused requests: {:?}",
        report.counts
    );
    assert!(report.counts.throttled_waits > 0, "{:?}", report.counts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_records_deleted_in_the_crm_and_the_next_run_restores_them() {
    let table = format!("sluice_hs_verify_{}", std::process::id());
    people_table(&table, 250, &[]);
    let hs = hubspot(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(
        dir.path(),
        &table,
        &hubspot_destination(&hs, ""),
        CONTACT_SYNC,
    );
    let first = run(dir.path()).await;
    assert_eq!(first.status, RunStatus::Succeeded, "{:?}", first.error);
    assert_eq!(hs.handle().record_count("contacts"), 250);

    // Someone deletes three contacts in HubSpot itself.
    let gone = ["p7@example.com", "p120@example.com", "p249@example.com"];
    for email in gone {
        let record = hs.handle().find_record("contacts", "email", email).unwrap();
        assert!(hs
            .handle()
            .delete_record("contacts", record["id"].as_str().unwrap()));
    }
    // An ordinary run sees no change in the model and sends nothing.
    assert_eq!(run(dir.path()).await.counts.sent, 0);

    let loaded = Loaded::open(dir.path());
    let engine = loaded.engine();
    let dry = engine
        .verify(
            "people",
            sluice_engine::run::VerifyOptions {
                dry_run: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((dry.checked, dry.missing, dry.forgotten), (250, 3, 0));
    // The properties (to check the identifier), then 100 identifiers a
    // batch/read request.
    assert_eq!(dry.requests, 4, "{dry:?}");
    let report = engine.verify("people", Default::default()).await.unwrap();
    assert_eq!((report.missing, report.forgotten), (3, 3), "{report:?}");
    let mut keys = report.missing_keys.clone();
    keys.sort();
    assert_eq!(keys.len(), 3);

    let restore = engine.run("people", &RunOptions::default()).await.unwrap();
    assert_eq!(restore.status, RunStatus::Succeeded, "{:?}", restore.error);
    assert_eq!(
        (restore.counts.added, restore.counts.sent),
        (3, 3),
        "{:?}",
        restore.counts
    );
    for email in gone {
        assert!(
            hs.handle()
                .find_record("contacts", "email", email)
                .is_some(),
            "{email}"
        );
    }
    assert_eq!(hs.handle().record_count("contacts"), 250);
    let clean = engine.verify("people", Default::default()).await.unwrap();
    assert_eq!(clean.missing, 0);

    // With the workers' shared budgets (real Redis), the lookups draw from
    // the portal's budget: held for an hour (a run was told the daily
    // allowance is used up), verify pauses without sending a request.
    let budgets: std::sync::Arc<dyn SharedBudgets> = std::sync::Arc::new(
        sluice_server::budgets::RedisBudgets::open("redis://127.0.0.1:6379").unwrap(),
    );
    let sync = loaded.project.sync("people").unwrap();
    let config = &loaded.project.destination_of(sync).instance.config;
    let hour = Duration::from_secs(3600);
    budgets
        .signal(&BudgetKey::of("hubspot", config), Signal::Hold(hour))
        .await
        .unwrap();
    let requests = hs.handle().stats().requests;
    let options = sluice_engine::run::VerifyOptions {
        dry_run: true,
        budgets: Some(budgets),
    };
    let held = engine.verify("people", options).await.unwrap_err();
    assert!(
        format!("{held:#}").contains("the sync is paused until"),
        "{held:#}"
    );
    assert_eq!(hs.handle().stats().requests, requests, "no request sent");
    psql(&format!("DROP TABLE {table}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_says_when_a_destination_cannot_look_records_up() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/p.csv"), "id,email\n1,a@x.com\n").unwrap();
    let yaml = format!(
        "sources:\n  files: {{ plugin: files, config: {{ path: /data }}, grants: [\"dir:data:/data\"] }}\n\
         destinations:\n  hook: {{ plugin: webhook, config: {{ url: \"{}\" }}, grants: [\"{}\"] }}\n\
         models:\n  people: {{ source: files, object: p.csv, primary_key: id }}\n\
         syncs:\n  people: {{ model: people, destination: hook, object: contacts, mode: upsert, identifier: email }}\n",
        rx.url,
        rx.grant()
    );
    std::fs::write(dir.path().join("sluice.yaml"), yaml).unwrap();
    run(dir.path()).await;
    let loaded = Loaded::open(dir.path());
    let engine = loaded.engine();
    let err = format!(
        "{:#}",
        engine
            .verify("people", Default::default())
            .await
            .unwrap_err()
    );
    assert!(
        err.contains("cannot look records up") && err.contains("lookup-api"),
        "{err}"
    );
}

/// Without Redis a daily cap (`rate_limit.daily`) is counted by the
/// process: a run capped at 4 requests a day, against a portal allowing
/// 4, sends 4, none refused, and pauses naming the cap and its reset; the
/// next run of the process sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_cap_without_redis_is_kept_by_the_process() {
    let table = format!("sluice_hs_daily_cap_{}", std::process::id());
    people_table(&table, 500, &[]);
    let hs = hubspot(EmulatorConfig::default()).await;
    hs.handle().set_daily_limit(4);
    let dir = tempfile::tempdir().unwrap();
    write_project(
        dir.path(),
        &table,
        &hubspot_destination(&hs, ""),
        // The next UTC midnight is more than 30 s away at any hour but
        // the day's last 30 s: the run pauses rather than wait for it.
        &format!(
            "{CONTACT_SYNC}    batch_size: 100\n    max_wait: 30s\n    rate_limit: {{ requests: 100, per_ms: 1000, concurrency: 1, daily: 4 }}\n"
        ),
    );
    let paused = "destination `crm` used up its daily cap of 4 requests";
    let first = run(dir.path()).await;
    assert_eq!(first.status, RunStatus::Failed);
    let error = first.error.unwrap_or_default();
    assert!(
        error.contains(paused) && error.contains("it resets at"),
        "{error}"
    );
    let stats = hs.handle().stats();
    assert_eq!((stats.requests, stats.throttled), (4, 0), "{stats:?}");
    assert!(hs.handle().record_count("contacts") > 0, "some rows went");

    let again = run(dir.path()).await;
    let error = again.error.unwrap_or_default();
    assert!(error.contains(paused), "{error}");
    assert_eq!(hs.handle().stats().requests, 4, "nothing sent");
    psql(&format!("DROP TABLE {table}"));
}

/// HubSpot's `DAILY` 429 mid-run pauses the sync at once instead of retrying
/// until midnight; what HubSpot accepted is kept, and once the allowance
/// resets the next run sends only the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_daily_limit_pauses_the_sync_and_the_next_day_finishes_it() {
    let table = format!("sluice_hs_daily_{}", std::process::id());
    people_table(&table, 500, &[]);
    let hs = hubspot(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(
        dir.path(),
        &table,
        &hubspot_destination(&hs, ""),
        // One writer: discovery, then one batch after another, so the
        // allowance of 4 requests runs out mid-run whatever the timing
        // (with several writers, each opening its own instance, the
        // allowance could go before any batch was sent). A max_wait below
        // the time to the emulator's midnight keeps the run from waiting
        // out the day when it falls in the last minutes before 00:00 UTC.
        &format!(
            "{CONTACT_SYNC}    batch_size: 100\n    max_wait: 30s\n    rate_limit: {{ requests: 100, per_ms: 1000, concurrency: 1 }}\n"
        ),
    );
    hs.handle().set_daily_limit(4);

    let started = std::time::Instant::now();
    let first = run(dir.path()).await;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the run waited {:?}",
        started.elapsed()
    );
    assert_eq!(first.status, RunStatus::Failed);
    assert!(
        first.error.clone().unwrap().contains("paused until"),
        "{:?}",
        first.error
    );
    let delivered = hs.handle().record_count("contacts");
    assert!(delivered > 0 && delivered < 500, "{delivered} delivered");
    assert_eq!(first.counts.ok as usize, delivered, "{:?}", first.counts);

    hs.handle().set_daily_limit(250_000);
    hs.handle().reset_daily_usage();
    let next_day = run(dir.path()).await;
    assert_eq!(
        next_day.status,
        RunStatus::Succeeded,
        "{:?}",
        next_day.error
    );
    assert_eq!(
        next_day.counts.ok as usize,
        500 - delivered,
        "{:?}",
        next_day.counts
    );
    assert_eq!(hs.handle().record_count("contacts"), 500);
    psql(&format!("DROP TABLE {table}"));
}
