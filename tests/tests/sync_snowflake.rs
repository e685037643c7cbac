//! The seed's story end to end: a customer-lifetime-value table in (emulated)
//! Snowflake upserted into Salesforce's `Customer` keyed by Email, through the
//! sandboxed `snowflake` and `salesforce` plugins; one collections request per
//! 200 rows, and a rerun sends only the changed rows. Bad credentials, a
//! missing warehouse or table and a SQL error fail the run naming the source
//! with Snowflake's code and message, and commit nothing; throttling is
//! retried.

use sluice_tests as common;

use common::*;
use sluice_emulators::{
    EmulatorConfig, RateLimit, RunningEmulator, SnowflakeSettings, DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET, DEFAULT_SNOWFLAKE_TOKEN,
};
use sluice_engine::run::{RunOptions, RunReport};
use sluice_runtime::sandbox::policy::Grants;
use sluice_state::{RunStatus, SqliteStore, StateStore};
use std::path::Path;
use std::time::Duration;

const ROWS: usize = 450;
const COLLECTIONS_UPSERT: &str = "/services/data/{version}/composite/sobjects/{object}/{field}";
const TEST_KEY: &str = include_str!("../../crates/emulators/tests/fixtures/snowflake_test_key.p8");
const TEST_PUBLIC_KEY: &str =
    include_str!("../../crates/emulators/tests/fixtures/snowflake_test_key.pub");
const OTHER_KEY: &str =
    include_str!("../../crates/emulators/tests/fixtures/snowflake_other_key.p8");

/// A Snowflake emulator on its own PostgreSQL database, holding
/// `DEMO.NEXLA.CUSTOMER (email, lifetime_value)` with [`ROWS`] rows.
struct Warehouse {
    emulator: RunningEmulator,
    database: String,
}

impl Warehouse {
    async fn start(name: &str) -> Warehouse {
        let database = format!("sluice_sf_e2e_{name}_{}", std::process::id());
        let config = EmulatorConfig {
            snowflake: SnowflakeSettings {
                postgres_url: format!("postgres://postgres@127.0.0.1:5432/{database}"),
                // Several partitions, so the source fetches beyond the first.
                partition_rows: 100,
                ..SnowflakeSettings::default()
            },
            ..EmulatorConfig::default()
        };
        let emulator = sluice_emulators::start_snowflake("127.0.0.1:0".parse().unwrap(), config)
            .await
            .unwrap();
        emulator
            .handle()
            .snowflake_add_public_key("SLUICE", TEST_PUBLIC_KEY);
        let warehouse = Warehouse { emulator, database };
        warehouse.sql("create database demo").await;
        warehouse.sql("create schema demo.nexla").await;
        warehouse
            .sql("create table demo.nexla.customer (email varchar(255), lifetime_value number(12,2))")
            .await;
        let values: Vec<String> = (0..ROWS)
            .map(|i| format!("('c{i}@example.com', {}.50)", i * 10))
            .collect();
        warehouse
            .sql(&format!(
                "insert into demo.nexla.customer values {}",
                values.join(", ")
            ))
            .await;
        warehouse
    }

    async fn sql(&self, statement: &str) -> Vec<Vec<Option<String>>> {
        self.emulator
            .handle()
            .snowflake_execute(statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e:?}"))
    }

    async fn finish(self) {
        self.emulator.shutdown().await.unwrap();
        psql(&format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.database
        ));
    }
}

/// The story's project. `source_config` replaces the source's credentials and
/// session settings; `query` the model's query.
fn project(
    dir: &Path,
    snowflake_url: &str,
    salesforce_url: &str,
    source_config: &str,
    query: &str,
) {
    let yaml = format!(
        r#"
sources:
  snowflake:
    plugin: snowflake
    config:
      base_url: "{snowflake_url}"
      account: sluice
      user: sluice
      {source_config}
    grants: ["{snowflake_grant}"]
destinations:
  salesforce:
    plugin: salesforce
    config:
      login_url: "{salesforce_url}"
      auth: {{ flow: client_credentials, client_id: {DEFAULT_CLIENT_ID}, client_secret: {DEFAULT_CLIENT_SECRET} }}
      objects: [Customer]
    grants: ["{salesforce_grant}"]
models:
  customer_ltv:
    source: snowflake
    query: {query}
    primary_key: EMAIL
syncs:
  customer_ltv_to_salesforce:
    model: customer_ltv
    destination: salesforce
    object: Customer
    mode: upsert
    identifier: Email
    mappings:
      - {{ from: EMAIL, to: Email }}
      - {{ from: LIFETIME_VALUE, to: TotalLifeTimeValue, type: number }}
"#,
        snowflake_grant = Grants::pattern_for_url(snowflake_url).unwrap(),
        salesforce_grant = Grants::pattern_for_url(salesforce_url).unwrap(),
    );
    std::fs::write(dir.join("sluice.yaml"), yaml).unwrap();
}

const STORY_QUERY: &str = "select email, lifetime_value from DEMO.NEXLA.CUSTOMER";

fn key_pair_config(env: &str, key: &str) -> String {
    std::env::set_var(env, key);
    format!("private_key: \"${{{env}}}\"\n      warehouse: COMPUTE_WH\n      role: SYSADMIN\n      query_tag: sluice-e2e")
}

async fn run(dir: &Path) -> RunReport {
    run_sync(dir, "customer_ltv_to_salesforce", &RunOptions::default()).await
}

async fn salesforce() -> RunningEmulator {
    sluice_emulators::start_salesforce("127.0.0.1:0".parse().unwrap(), EmulatorConfig::default())
        .await
        .unwrap()
}

fn lifetime_value(sf: &RunningEmulator, email: &str) -> serde_json::Value {
    sf.handle()
        .find_record("Customer", "Email", email)
        .unwrap_or_else(|| panic!("no Customer {email}"))["TotalLifeTimeValue"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_lifetime_value_flows_from_snowflake_into_salesforce_in_batches_of_200() {
    let warehouse = Warehouse::start("story").await;
    let sf = salesforce().await;
    let dir = tempfile::tempdir().unwrap();
    project(
        dir.path(),
        &warehouse.emulator.base_url(),
        &sf.base_url(),
        &key_pair_config("SLUICE_E2E_SNOWFLAKE_KEY", TEST_KEY),
        STORY_QUERY,
    );

    let first = run(dir.path()).await;
    assert_eq!(first.status, RunStatus::Succeeded, "{:?}", first.error);
    assert_eq!(first.counts.ok, ROWS as u64, "{:?}", first.counts);
    assert_eq!(sf.handle().record_count("Customer"), ROWS);
    assert_eq!(
        sf.handle().stats().endpoint("PATCH", COLLECTIONS_UPSERT),
        3,
        "450 rows in requests of 200, not a PATCH per row"
    );
    assert_eq!(
        lifetime_value(&sf, "c7@example.com"),
        serde_json::json!(70.5)
    );
    assert_eq!(
        lifetime_value(&sf, "c449@example.com"),
        serde_json::json!(4490.5)
    );
    // The source read every partition (100 rows each) of one statement.
    assert_eq!(
        warehouse.emulator.handle().snowflake_statements(),
        [STORY_QUERY]
    );

    warehouse
        .sql("update demo.nexla.customer set lifetime_value = lifetime_value + 1000 where email in ('c1@example.com', 'c200@example.com', 'c401@example.com')")
        .await;
    let second = run(dir.path()).await;
    assert_eq!(second.status, RunStatus::Succeeded, "{:?}", second.error);
    assert_eq!(second.counts.ok, 3, "{:?}", second.counts);
    assert_eq!(
        sf.handle().stats().endpoint("PATCH", COLLECTIONS_UPSERT),
        4,
        "the 3 changed rows go in one request"
    );
    assert_eq!(
        lifetime_value(&sf, "c200@example.com"),
        serde_json::json!(3000.5)
    );
    assert_eq!(sf.handle().record_count("Customer"), ROWS);
    warehouse.finish().await;
}

/// Runs the story with a broken source and checks the run failed naming the
/// source with `expected` in its error, and that nothing was delivered or
/// committed.
async fn assert_fails_cleanly(name: &str, source_config: &str, query: &str, expected: &[&str]) {
    let warehouse = Warehouse::start(name).await;
    let sf = salesforce().await;
    let dir = tempfile::tempdir().unwrap();
    project(
        dir.path(),
        &warehouse.emulator.base_url(),
        &sf.base_url(),
        source_config,
        query,
    );
    let report = run(dir.path()).await;
    assert_eq!(report.status, RunStatus::Failed, "{name}: {report:?}");
    let error = report.error.clone().unwrap_or_default();
    assert!(
        error.contains("snowflake"),
        "{name}: the error names the source: {error}"
    );
    for part in expected {
        assert!(
            error.contains(part),
            "{name}: {part:?} missing from: {error}"
        );
    }
    assert_eq!(sf.handle().record_count("Customer"), 0, "{name}");
    let store = SqliteStore::open_project(dir.path()).unwrap();
    let runs = store.runs(Some("customer_ltv_to_salesforce"), 10).unwrap();
    assert_eq!(runs.len(), 1, "{name}: the attempt is on the record");
    assert_eq!(runs[0].status, RunStatus::Failed, "{name}");
    assert_eq!(
        store
            .load_snapshot("customer_ltv_to_salesforce")
            .unwrap()
            .delivered_len(),
        0,
        "{name}: nothing committed"
    );
    warehouse.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_account_does_not_know_fails_with_snowflakes_jwt_error() {
    assert_fails_cleanly(
        "wrongkey",
        &key_pair_config("SLUICE_E2E_OTHER_KEY", OTHER_KEY),
        STORY_QUERY,
        &["390144", "JWT token is invalid", "Snowflake account sluice"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_oauth_token_fails_with_snowflakes_oauth_error() {
    assert_fails_cleanly(
        "wrongtoken",
        "oauth_token: not-the-token\n      warehouse: COMPUTE_WH",
        STORY_QUERY,
        &["390303", "Invalid OAuth access token"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_warehouse_passes_snowflakes_message_through() {
    assert_fails_cleanly(
        "nowarehouse",
        &format!("oauth_token: {DEFAULT_SNOWFLAKE_TOKEN}\n      warehouse: NO_SUCH_WH"),
        STORY_QUERY,
        &["000606", "No active warehouse selected"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_table_passes_snowflakes_message_through() {
    assert_fails_cleanly(
        "notable",
        &format!("oauth_token: {DEFAULT_SNOWFLAKE_TOKEN}\n      warehouse: COMPUTE_WH"),
        "select email, lifetime_value from DEMO.NEXLA.MISSING",
        &[
            "002003",
            "Object 'DEMO.NEXLA.MISSING' does not exist or not authorized",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sql_error_passes_snowflakes_code_and_position_through() {
    assert_fails_cleanly(
        "badsql",
        &format!("oauth_token: {DEFAULT_SNOWFLAKE_TOKEN}\n      warehouse: COMPUTE_WH"),
        "select email, lifetime_valu from DEMO.NEXLA.CUSTOMER",
        &[
            "000904",
            "invalid identifier 'LIFETIME_VALU'",
            "SQL state 42000",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_and_every_row_arrives() {
    let warehouse = Warehouse::start("throttled").await;
    // One request a second: submitting and fetching 5 partitions must wait out 429s.
    warehouse
        .emulator
        .handle()
        .set_rate_limit(Some(RateLimit::new(1, Duration::from_millis(700))));
    let sf = salesforce().await;
    let dir = tempfile::tempdir().unwrap();
    project(
        dir.path(),
        &warehouse.emulator.base_url(),
        &sf.base_url(),
        &format!("oauth_token: {DEFAULT_SNOWFLAKE_TOKEN}\n      warehouse: COMPUTE_WH"),
        STORY_QUERY,
    );
    let report = run(dir.path()).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    assert!(
        warehouse.emulator.handle().stats().throttled > 0,
        "the emulator throttled"
    );
    assert_eq!(report.counts.ok, ROWS as u64);
    assert_eq!(sf.handle().record_count("Customer"), ROWS);
    warehouse.finish().await;
}

/// The `snowflake` plugin alone in the sandbox, against `warehouse`.
async fn source_instance(
    test: &TestRuntime,
    warehouse: &Warehouse,
) -> sluice_runtime::instance::Instance {
    let plugin = sluice_runtime::plugin::Plugin::from_bytes(
        &test.runtime,
        "snowflake",
        sluice_registry::builtin::SNOWFLAKE,
    )
    .unwrap();
    let grant = Grants::pattern_for_url(&warehouse.emulator.base_url()).unwrap();
    plugin.instantiate(&sandbox(&[&grant])).await.unwrap()
}

fn oauth_config(warehouse: &Warehouse) -> String {
    serde_json::json!({
        "base_url": warehouse.emulator.base_url(),
        "account": "sluice",
        "user": "sluice",
        "oauth_token": DEFAULT_SNOWFLAKE_TOKEN,
        "warehouse": "COMPUTE_WH",
        "database": "DEMO",
        "schema": "NEXLA",
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_type_arrives_as_the_plugin_readme_says() {
    use sluice_runtime::bindings::types::ReadRequest;
    use sluice_runtime::Value;
    let warehouse = Warehouse::start("types").await;
    warehouse
        .sql(
            "create table demo.nexla.types (n number(38,0), big number(38,0), d number(12,2), r float, \
             t varchar, b boolean, day date, tod time, ntz timestamp_ntz, ltz timestamp_ltz, tz timestamp_tz, \
             v variant, o object, a array, bin binary)",
        )
        .await;
    warehouse
        .sql(
            "insert into demo.nexla.types values \
             (-42, 99999999999999999999999999999999999999, -12.50, 'inf', 'zoë ✓', true, '1969-12-31', '12:34:56.5', \
              '2021-05-04 18:08:13.299', '2021-05-04 18:08:13', '2021-05-04 18:08:13', parse_json('{\"k\": [1, null]}'), \
              parse_json('{\"a\": 1}'), parse_json('[\"x\"]'), decode('00ff', 'hex')), \
             (null, null, null, null, null, null, null, null, null, null, null, null, null, null, null)",
        )
        .await;
    // One row per partition: the second row comes from a gzip partition fetch.
    warehouse.emulator.handle().snowflake_set_partition_rows(1);
    let test = runtime();
    let mut instance = source_instance(&test, &warehouse).await;
    let reader = instance
        .read(
            &oauth_config(&warehouse),
            &ReadRequest::Object("DEMO.NEXLA.TYPES".into()),
        )
        .await
        .unwrap();
    let mut rows = Vec::new();
    while let Some(batch) = instance.next_batch(&reader, 100).await.unwrap() {
        assert_eq!(batch.columns[0], "N");
        rows.extend(batch.rows);
    }
    assert_eq!(rows.len(), 2);
    let first = &rows[0];
    assert_eq!(first[0], Value::Integer(-42));
    assert_eq!(
        first[1],
        Value::Decimal("99999999999999999999999999999999999999".into())
    );
    assert_eq!(first[2], Value::Decimal("-12.50".into()));
    assert!(matches!(first[3], Value::Float(f) if f == f64::INFINITY));
    assert_eq!(first[4], Value::Text("zoë ✓".into()));
    assert_eq!(first[5], Value::Boolean(true));
    assert_eq!(first[6], Value::Date(-1));
    assert_eq!(first[7], Value::Text("12:34:56.5".into()));
    assert_eq!(first[8], Value::Timestamp(1_620_151_693_299_000));
    assert_eq!(first[9], Value::Timestamp(1_620_151_693_000_000));
    assert_eq!(first[10], Value::Timestamp(1_620_151_693_000_000));
    assert_eq!(first[11], Value::Json(r#"{"k":[1,null]}"#.into()));
    assert_eq!(first[12], Value::Json(r#"{"a":1}"#.into()));
    assert_eq!(first[13], Value::Json(r#"["x"]"#.into()));
    assert_eq!(first[14], Value::Bytes(vec![0, 255]));
    assert!(rows[1].iter().all(|v| *v == Value::Null), "{:?}", rows[1]);

    // discover lists the table with each column's field type.
    let objects = instance.discover(&oauth_config(&warehouse)).await.unwrap();
    let types = objects
        .iter()
        .find(|o| o.name == "NEXLA.TYPES")
        .unwrap_or_else(|| panic!("{objects:?}"));
    let kinds: Vec<String> = types
        .fields
        .iter()
        .map(|f| format!("{}:{:?}", f.name, f.type_))
        .collect();
    assert_eq!(kinds[0], "N:FieldType::Integer");
    assert_eq!(kinds[2], "D:FieldType::Decimal");
    assert_eq!(kinds[11], "V:FieldType::Json");
    assert_eq!(kinds[14], "BIN:FieldType::Bytes");
    warehouse.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_answered_202_is_polled_to_its_result() {
    use sluice_runtime::bindings::types::ReadRequest;
    let warehouse = Warehouse::start("polled").await;
    warehouse
        .emulator
        .handle()
        .snowflake_set_timing(Duration::from_millis(600), Duration::from_millis(50));
    let test = runtime();
    let mut instance = source_instance(&test, &warehouse).await;
    let reader = instance
        .read(
            &oauth_config(&warehouse),
            &ReadRequest::Query("select count(*) as n from DEMO.NEXLA.CUSTOMER".into()),
        )
        .await
        .unwrap();
    let batch = instance.next_batch(&reader, 10).await.unwrap().unwrap();
    assert_eq!(
        batch.rows,
        vec![vec![sluice_runtime::Value::Integer(ROWS as i64)]]
    );
    let polls = warehouse
        .emulator
        .handle()
        .stats()
        .endpoint("GET", "/api/v2/statements/{handle}");
    assert!(polls >= 1, "the answer was 202 and the plugin polled");
    warehouse.finish().await;
}
