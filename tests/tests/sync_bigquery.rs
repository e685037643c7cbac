//! BigQuery end to end: a table in the (emulated) BigQuery read by the
//! sandboxed `bigquery` plugin — service-account JWT exchanged at the
//! emulator's token endpoint, jobs.query, then getQueryResults page by page —
//! and synced into the webhook receiver; a rerun sends only the changed rows.
//! Every type the source supports arrives as plugins/bigquery/README.md says.
//! Wrong credentials, a SQL error and a missing dataset fail the run naming
//! the source with BigQuery's reason and message, and commit nothing.

use sluice_tests as common;

use common::*;
use sluice_emulators::{
    BigQuerySettings, EmulatorConfig, FaultConfig, RateLimit, RunningEmulator,
    DEFAULT_BIGQUERY_PROJECT, DEFAULT_BIGQUERY_SERVICE_ACCOUNT,
};
use sluice_engine::run::{RunOptions, RunReport};
use sluice_runtime::bindings::types::ReadRequest;
use sluice_runtime::sandbox::policy::Grants;
use sluice_runtime::Value;
use sluice_state::{RunStatus, SqliteStore, StateStore};
use std::path::Path;
use std::time::Duration;

const ROWS: usize = 450;
const PAGE_ROWS: u32 = 100;
const TEST_KEY: &str = include_str!("../../crates/emulators/tests/fixtures/snowflake_test_key.p8");
const TEST_PUBLIC_KEY: &str =
    include_str!("../../crates/emulators/tests/fixtures/snowflake_test_key.pub");
const OTHER_KEY: &str =
    include_str!("../../crates/emulators/tests/fixtures/snowflake_other_key.p8");
const QUERY: &str = "select email, lifetime_value from shop.customers";

/// A BigQuery emulator on its own PostgreSQL database, holding
/// `shop.customers (email, lifetime_value)` with [`ROWS`] rows.
struct Warehouse {
    emulator: RunningEmulator,
    database: String,
}

impl Warehouse {
    async fn start(name: &str) -> Warehouse {
        let database = format!("sluice_bq_e2e_{name}_{}", std::process::id());
        let config = EmulatorConfig {
            bigquery: BigQuerySettings {
                postgres_url: format!("postgres://postgres@127.0.0.1:5432/{database}"),
                ..BigQuerySettings::default()
            },
            ..EmulatorConfig::default()
        };
        let emulator = sluice_emulators::start_bigquery("127.0.0.1:0".parse().unwrap(), config)
            .await
            .unwrap();
        emulator
            .handle()
            .bigquery_add_service_account(DEFAULT_BIGQUERY_SERVICE_ACCOUNT, TEST_PUBLIC_KEY);
        let warehouse = Warehouse { emulator, database };
        warehouse.sql("create schema shop").await;
        warehouse
            .sql("create table shop.customers (email STRING, lifetime_value NUMERIC)")
            .await;
        let values: Vec<String> = (0..ROWS)
            .map(|i| format!("('c{i}@example.com', {}.50)", i * 10))
            .collect();
        warehouse
            .sql(&format!(
                "insert into shop.customers values {}",
                values.join(", ")
            ))
            .await;
        warehouse
    }

    async fn sql(&self, statement: &str) -> Vec<serde_json::Value> {
        self.emulator
            .handle()
            .bigquery_execute(statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e:?}"))
    }

    /// The service-account key file a user downloads, pointing at the emulator.
    fn key_json(&self, private_key: &str) -> String {
        serde_json::json!({
            "type": "service_account",
            "project_id": DEFAULT_BIGQUERY_PROJECT,
            "private_key_id": "test-key-1",
            "private_key": private_key,
            "client_email": DEFAULT_BIGQUERY_SERVICE_ACCOUNT,
            "token_uri": format!("{}/token", self.emulator.base_url()),
        })
        .to_string()
    }

    /// The plugin's config as JSON (for the sandboxed plugin alone).
    fn config(&self) -> String {
        serde_json::json!({
            "credentials_json": self.key_json(TEST_KEY),
            "api_base": self.emulator.base_url(),
            "token_uri": format!("{}/token", self.emulator.base_url()),
            "location": "US",
            "default_dataset": "shop",
            "page_rows": PAGE_ROWS,
        })
        .to_string()
    }

    async fn finish(self) {
        self.emulator.shutdown().await.unwrap();
        psql(&format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.database
        ));
    }
}

/// A project syncing `query` from the warehouse into the receiver, with the
/// service-account key in `$env`.
fn project(dir: &Path, warehouse: &Warehouse, rx: &Receiver, env: &str, key: &str, query: &str) {
    std::env::set_var(env, warehouse.key_json(key));
    let base = warehouse.emulator.base_url();
    let yaml = format!(
        r#"
sources:
  bigquery:
    plugin: bigquery
    config:
      credentials_json: "${{{env}}}"
      api_base: "{base}"
      token_uri: "{base}/token"
      location: US
      maximum_bytes_billed: 1000000000
      page_rows: {PAGE_ROWS}
    grants: ["{grant}"]
destinations:
  hook: {{ plugin: webhook, config: {{ url: "{url}", max_retries: 0 }}, grants: ["{hook_grant}"] }}
models:
  customers:
    source: bigquery
    query: "{query}"
    primary_key: email
syncs:
  customers:
    model: customers
    destination: hook
    object: customers
    mode: upsert
    identifier: email
"#,
        grant = Grants::pattern_for_url(&base).unwrap(),
        url = rx.url,
        hook_grant = rx.grant(),
    );
    std::fs::write(dir.join("sluice.yaml"), yaml).unwrap();
}

async fn run(dir: &Path) -> RunReport {
    run_sync(dir, "customers", &RunOptions::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bigquery_table_syncs_page_by_page_and_a_rerun_sends_only_changes() {
    let warehouse = Warehouse::start("story").await;
    let rx = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    project(
        dir.path(),
        &warehouse,
        &rx,
        "SLUICE_E2E_BQ_KEY",
        TEST_KEY,
        QUERY,
    );

    let first = run(dir.path()).await;
    assert_eq!(first.status, RunStatus::Succeeded, "{:?}", first.error);
    assert_eq!(first.counts.ok, ROWS as u64, "{:?}", first.counts);
    let rows = rx.rows();
    assert_eq!(rows.len(), ROWS);
    let c7 = rows
        .iter()
        .find(|r| r["email"] == "c7@example.com")
        .unwrap();
    assert_eq!(c7["lifetime_value"], serde_json::json!(70.5));
    // One job; its 450 rows came in pages of 100: jobs.query plus 4 page fetches.
    assert_eq!(warehouse.emulator.handle().bigquery_queries(), [QUERY]);
    let stats = warehouse.emulator.handle().stats();
    assert_eq!(
        stats.endpoint("GET", "/bigquery/v2/projects/{project}/queries/{job}"),
        4
    );

    warehouse
        .sql("update shop.customers set lifetime_value = lifetime_value + 1000 where email in ('c1@example.com', 'c200@example.com', 'c401@example.com')")
        .await;
    rx.requests.lock().unwrap().clear();
    let second = run(dir.path()).await;
    assert_eq!(second.status, RunStatus::Succeeded, "{:?}", second.error);
    assert_eq!(second.counts.ok, 3, "{:?}", second.counts);
    let changed: Vec<String> = rx
        .rows()
        .iter()
        .map(|r| r["email"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(changed.len(), 3);
    for email in ["c1@example.com", "c200@example.com", "c401@example.com"] {
        assert!(changed.contains(&email.to_owned()), "{changed:?}");
    }
    warehouse.finish().await;
}

/// Every type the source maps, in one table: extremes, NULLs, time zones,
/// non-ASCII text, large decimals, arrays and records.
const TYPES_TABLE: &str =
    "create table shop.types (id INT64, i INT64, f FLOAT64, n NUMERIC, bn BIGNUMERIC, \
    b BOOL, s STRING, bts BYTES, d DATE, dt DATETIME, t TIME, ts TIMESTAMP, j JSON, \
    tags ARRAY<STRING>, addr STRUCT<zip STRING, at TIMESTAMP, scores ARRAY<INT64>>)";

const TYPES_ROWS: &str = "insert into shop.types values \
    (1, -9223372036854775808, 1.5e300, 99999999999999999999999999999.999999999, \
     -578960446186580977117854925043439539266.34992332820282019728792003956564819967, \
     true, 'Zürich ✓ 🚀', from_base64('AP8='), '0001-01-01', '9999-12-31 23:59:59.999999', '23:59:59.999999', \
     TIMESTAMP '2021-05-04 20:08:13.299+02:00', JSON '{\"k\": [1, \"ü\"]}', ['a', 'é'], \
     STRUCT('94110', TIMESTAMP '1969-12-31 23:59:59.5+00', [1, 2])), \
    (2, 9223372036854775807, CAST('-Infinity' AS FLOAT64), -0.000000001, 0, false, '', from_base64(''), \
     '1970-01-01', '1970-01-01 00:00:00', '00:00:00', TIMESTAMP '1970-01-01 00:00:00+00', JSON 'null', [], NULL), \
    (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_arrives_as_the_plugin_readme_says() {
    let warehouse = Warehouse::start("types").await;
    warehouse.sql(TYPES_TABLE).await;
    warehouse.sql(TYPES_ROWS).await;

    // 1. The plugin in its sandbox: each value exactly as the mapping says.
    let test = runtime();
    let plugin = sluice_runtime::plugin::Plugin::from_bytes(
        &test.runtime,
        "bigquery",
        sluice_registry::builtin::BIGQUERY,
    )
    .unwrap();
    let grant = Grants::pattern_for_url(&warehouse.emulator.base_url()).unwrap();
    let mut instance = plugin.instantiate(&sandbox(&[&grant])).await.unwrap();
    instance.check(&warehouse.config()).await.unwrap();
    let reader = instance
        .read(
            &warehouse.config(),
            &ReadRequest::Query("select * from shop.types order by id".into()),
        )
        .await
        .unwrap();
    let mut rows = Vec::new();
    while let Some(batch) = instance.next_batch(&reader, 100).await.unwrap() {
        assert_eq!(batch.columns[0], "id");
        rows.extend(batch.rows);
    }
    assert_eq!(rows.len(), 3);
    let first = &rows[0];
    assert_eq!(first[1], Value::Integer(i64::MIN));
    assert_eq!(first[2], Value::Float(1.5e300));
    assert_eq!(
        first[3],
        Value::Decimal("99999999999999999999999999999.999999999".into())
    );
    assert_eq!(
        first[4],
        Value::Decimal(
            "-578960446186580977117854925043439539266.34992332820282019728792003956564819967"
                .into()
        )
    );
    assert_eq!(first[5], Value::Boolean(true));
    assert_eq!(first[6], Value::Text("Zürich ✓ 🚀".into()));
    assert_eq!(first[7], Value::Bytes(vec![0, 255]));
    assert_eq!(first[8], Value::Date(-719_162));
    assert_eq!(first[9], Value::Timestamp(253_402_300_799_999_999));
    assert_eq!(first[10], Value::Text("23:59:59.999999".into()));
    assert_eq!(first[11], Value::Timestamp(1_620_151_693_299_000));
    assert_eq!(first[12], Value::Json(r#"{"k":[1,"ü"]}"#.into()));
    assert_eq!(first[13], Value::Json(r#"["a","é"]"#.into()));
    assert_eq!(
        first[14],
        Value::Json(r#"{"at":"1969-12-31T23:59:59.500000Z","scores":[1,2],"zip":"94110"}"#.into())
    );
    let second = &rows[1];
    assert_eq!(second[1], Value::Integer(i64::MAX));
    assert!(matches!(second[2], Value::Float(f) if f == f64::NEG_INFINITY));
    assert_eq!(second[3], Value::Decimal("-0.000000001".into()));
    assert_eq!(second[4], Value::Decimal("0".into()));
    assert_eq!(second[7], Value::Bytes(Vec::new()));
    assert_eq!(second[8], Value::Date(0));
    assert_eq!(second[11], Value::Timestamp(0));
    assert_eq!(second[12], Value::Json("null".into()));
    assert_eq!(second[13], Value::Json("[]".into()), "an empty array");
    assert_eq!(second[14], Value::Null);
    let third = &rows[2];
    assert_eq!(third[13], Value::Json("[]".into()), "a NULL array is empty");
    assert!(
        third
            .iter()
            .skip(1)
            .filter(|v| **v != Value::Json("[]".into()))
            .all(|v| *v == Value::Null),
        "{third:?}"
    );

    // discover lists the dataset's tables with each column's field type.
    let objects = instance.discover(&warehouse.config()).await.unwrap();
    let types = objects
        .iter()
        .find(|o| o.name == "shop.types")
        .unwrap_or_else(|| panic!("{objects:?}"));
    let kinds: Vec<String> = types
        .fields
        .iter()
        .map(|f| format!("{}:{:?}", f.name, f.type_))
        .collect();
    assert_eq!(kinds[1], "i:FieldType::Integer");
    assert_eq!(kinds[4], "bn:FieldType::Decimal");
    assert_eq!(kinds[11], "ts:FieldType::Timestamp");
    assert_eq!(kinds[13], "tags:FieldType::Json");
    assert_eq!(kinds[14], "addr:FieldType::Json");

    // 2. Through a sync into the webhook: each value as its JSON rendering.
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    project(
        dir.path(),
        &warehouse,
        &rx,
        "SLUICE_E2E_BQ_TYPES_KEY",
        TEST_KEY,
        "select id as email, i, f, n, b, s, bts, d, dt, t, ts, j, tags, addr from shop.types",
    );
    let report = run(dir.path()).await;
    assert_eq!(
        (report.status, report.counts.ok),
        (RunStatus::Succeeded, 3),
        "{:?}",
        report.error
    );
    let received = rx.rows();
    let row = received.iter().find(|r| r["email"] == 1).unwrap();
    let expected = serde_json::json!({
        "i": i64::MIN, "f": 1.5e300, "b": true, "s": "Zürich ✓ 🚀", "bts": "00ff",
        "d": "0001-01-01", "dt": "9999-12-31T23:59:59.999999Z", "t": "23:59:59.999999",
        "ts": "2021-05-04T18:08:13.299000Z", "j": {"k": [1, "ü"]}, "tags": ["a", "é"],
        "addr": {"zip": "94110", "at": "1969-12-31T23:59:59.500000Z", "scores": [1, 2]},
    });
    for (name, value) in expected.as_object().unwrap() {
        assert_eq!(&row[name], value, "column {name}");
    }
    // Decimals reach the webhook as JSON numbers with every digit; this
    // receiver parses JSON into f64, so the digits are checked in the body.
    let bodies: Vec<String> = rx
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.raw).into_owned())
        .collect();
    assert!(
        bodies
            .iter()
            .any(|b| b.contains("\"n\":99999999999999999999999999999.999999999")),
        "{bodies:?}"
    );
    let extremes = received.iter().find(|r| r["email"] == 2).unwrap();
    assert_eq!(extremes["f"], "-Infinity", "a non-finite float is named");
    assert_eq!(extremes["n"].as_f64(), Some(-0.000000001));
    let nulls = received.iter().find(|r| r["email"] == 3).unwrap();
    for name in expected
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "tags")
    {
        assert_eq!(nulls[name], serde_json::Value::Null, "column {name}");
    }
    warehouse.finish().await;
}

/// Runs the sync with a broken source and checks the run failed naming the
/// source with `expected` in its error, and that nothing was delivered or
/// committed.
async fn assert_fails_cleanly(name: &str, key: &str, query: &str, expected: &[&str]) {
    let warehouse = Warehouse::start(name).await;
    let rx = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let env = format!("SLUICE_E2E_BQ_{}", name.to_ascii_uppercase());
    project(dir.path(), &warehouse, &rx, &env, key, query);
    let report = run(dir.path()).await;
    assert_eq!(report.status, RunStatus::Failed, "{name}: {report:?}");
    let error = report.error.clone().unwrap_or_default();
    assert!(
        error.contains("bigquery"),
        "{name}: the error names the source: {error}"
    );
    for part in expected {
        assert!(
            error.contains(part),
            "{name}: {part:?} missing from: {error}"
        );
    }
    assert!(rx.rows().is_empty(), "{name}: nothing delivered");
    let store = SqliteStore::open_project(dir.path()).unwrap();
    let runs = store.runs(Some("customers"), 10).unwrap();
    assert_eq!(runs.len(), 1, "{name}: the attempt is on the record");
    assert_eq!(runs[0].status, RunStatus::Failed, "{name}");
    assert_eq!(
        store.load_snapshot("customers").unwrap().delivered_len(),
        0,
        "{name}: nothing committed"
    );
    warehouse.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_project_does_not_know_fails_with_googles_grant_error() {
    assert_fails_cleanly(
        "wrongkey",
        OTHER_KEY,
        QUERY,
        &[
            "invalid_grant",
            "Invalid JWT Signature",
            DEFAULT_BIGQUERY_SERVICE_ACCOUNT,
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sql_error_passes_bigquerys_reason_message_and_position_through() {
    assert_fails_cleanly(
        "badsql",
        TEST_KEY,
        "select email, lifetime_valu from shop.customers",
        &[
            "HTTP 400 invalidQuery (at query)",
            "Unrecognized name: lifetime_valu at [1:15]",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_dataset_is_bigquerys_not_found() {
    assert_fails_cleanly(
        "nodataset",
        TEST_KEY,
        "select email, lifetime_value from nowhere.customers",
        &[
            "HTTP 404 notFound",
            "Not found: Dataset sluice-emulator:nowhere was not found in location US",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_over_maximum_bytes_billed_fails_before_any_row() {
    let warehouse = Warehouse::start("billed").await;
    let test = runtime();
    let plugin = sluice_runtime::plugin::Plugin::from_bytes(
        &test.runtime,
        "bigquery",
        sluice_registry::builtin::BIGQUERY,
    )
    .unwrap();
    let grant = Grants::pattern_for_url(&warehouse.emulator.base_url()).unwrap();
    let mut instance = plugin.instantiate(&sandbox(&[&grant])).await.unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&warehouse.config()).unwrap();
    config["maximum_bytes_billed"] = serde_json::json!(100);
    let error = match instance
        .read(&config.to_string(), &ReadRequest::Query(QUERY.into()))
        .await
    {
        Ok(_) => panic!("the read should fail"),
        Err(e) => format!("{e:?}"),
    };
    assert!(error.contains("bytesBilledLimitExceeded"), "{error}");
    assert!(
        error.contains("Query exceeded limit for bytes billed: 100."),
        "{error}"
    );
    warehouse.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_not_complete_at_once_is_polled_to_its_rows() {
    let warehouse = Warehouse::start("polled").await;
    // The job takes 300 ms and no call holds longer than 50 ms for it.
    warehouse
        .emulator
        .handle()
        .bigquery_set_timing(Duration::from_millis(300), Duration::from_millis(50));
    let test = runtime();
    let plugin = sluice_runtime::plugin::Plugin::from_bytes(
        &test.runtime,
        "bigquery",
        sluice_registry::builtin::BIGQUERY,
    )
    .unwrap();
    let grant = Grants::pattern_for_url(&warehouse.emulator.base_url()).unwrap();
    let mut instance = plugin.instantiate(&sandbox(&[&grant])).await.unwrap();
    let reader = instance
        .read(
            &warehouse.config(),
            &ReadRequest::Query("select count(*) as n from shop.customers".into()),
        )
        .await
        .unwrap();
    let batch = instance.next_batch(&reader, 10).await.unwrap().unwrap();
    assert_eq!(batch.rows, vec![vec![Value::Integer(ROWS as i64)]]);
    let polls = warehouse
        .emulator
        .handle()
        .stats()
        .endpoint("GET", "/bigquery/v2/projects/{project}/queries/{job}");
    assert!(
        polls >= 2,
        "jobComplete was false and the plugin polled ({polls})"
    );
    warehouse.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_server_errors_are_retried_and_every_row_arrives() {
    let warehouse = Warehouse::start("throttled").await;
    let handle = warehouse.emulator.handle();
    // Two requests per 600 ms (403 rateLimitExceeded beyond) and a 500/503 on
    // a fifth of them: the token, the query and 4 pages must wait it out.
    handle.set_rate_limit(Some(RateLimit::new(2, Duration::from_millis(600))));
    handle.set_faults(FaultConfig {
        server_error_probability: 0.2,
        ..FaultConfig::none()
    });
    let rx = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    project(
        dir.path(),
        &warehouse,
        &rx,
        "SLUICE_E2E_BQ_THROTTLED_KEY",
        TEST_KEY,
        QUERY,
    );
    let report = run(dir.path()).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    assert_eq!(report.counts.ok, ROWS as u64);
    assert_eq!(rx.rows().len(), ROWS);
    let stats = handle.stats();
    assert!(stats.throttled > 0, "the emulator throttled");
    assert_eq!(
        warehouse.emulator.handle().bigquery_queries(),
        [QUERY],
        "one job, however many calls were retried"
    );
    warehouse.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_shows_the_bytes_the_query_scans_from_a_dry_run() {
    let warehouse = Warehouse::start("plan").await;
    let rx = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    project(
        dir.path(),
        &warehouse,
        &rx,
        "SLUICE_E2E_BQ_PLAN_KEY",
        TEST_KEY,
        QUERY,
    );
    let plan = RunOptions {
        dry_run: true,
        ..RunOptions::default()
    };
    let report = run_sync(dir.path(), "customers", &plan).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    assert_eq!(report.counts.planned, ROWS as u64);
    // 450 rows of an email (17-19 bytes) and a NUMERIC, with row headers.
    let bytes = report.scan_bytes.expect("the bigquery source estimates");
    assert!(
        (ROWS as u64 * 20..ROWS as u64 * 100).contains(&bytes),
        "{bytes} bytes"
    );
    // The estimate was a dry run of the model's query, before the read.
    assert_eq!(
        warehouse.emulator.handle().bigquery_queries(),
        [QUERY, QUERY]
    );
    assert!(rx.rows().is_empty(), "a plan sends nothing");
    warehouse.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_expires_mid_read_is_renewed_from_the_key() {
    let warehouse = Warehouse::start("expiry").await;
    let test = runtime();
    let plugin = sluice_runtime::plugin::Plugin::from_bytes(
        &test.runtime,
        "bigquery",
        sluice_registry::builtin::BIGQUERY,
    )
    .unwrap();
    let grant = Grants::pattern_for_url(&warehouse.emulator.base_url()).unwrap();
    let mut instance = plugin.instantiate(&sandbox(&[&grant])).await.unwrap();
    let reader = instance
        .read(&warehouse.config(), &ReadRequest::Query(QUERY.into()))
        .await
        .unwrap();
    let first = instance
        .next_batch(&reader, PAGE_ROWS)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.rows.len(), PAGE_ROWS as usize);
    // An hour passes: the next page's call answers 401 once.
    warehouse.emulator.handle().bigquery_expire_tokens();
    let mut rows = first.rows.len();
    while let Some(batch) = instance.next_batch(&reader, PAGE_ROWS).await.unwrap() {
        rows += batch.rows.len();
    }
    assert_eq!(rows, ROWS);
    assert_eq!(warehouse.emulator.handle().stats().unauthorized, 1);
    warehouse.finish().await;
}
