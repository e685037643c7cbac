//! The `databricks` source end to end against the Databricks emulator: a model
//! synced into the local webhook receiver with both dispositions (INLINE chunks
//! and EXTERNAL_LINKS files on another host, fetched without Authorization),
//! over several chunks; a rerun sends only the changed rows; every type
//! arrives as the plugin's README says; a wrong token, an unknown warehouse
//! and a SQL error each fail the run with Databricks' code and message and
//! commit nothing; throttling is retried; a PENDING statement is polled.

use sluice_tests as common;

use common::*;
use sluice_emulators::{
    DatabricksSettings, EmulatorConfig, RateLimit, RunningEmulator, DEFAULT_DATABRICKS_CLIENT_ID,
    DEFAULT_DATABRICKS_CLIENT_SECRET, DEFAULT_DATABRICKS_TOKEN, DEFAULT_DATABRICKS_WAREHOUSE,
};
use sluice_engine::run::{RunOptions, RunReport};
use sluice_runtime::bindings::types::ReadRequest;
use sluice_runtime::sandbox::policy::Grants;
use sluice_runtime::Value;
use sluice_state::{RunStatus, SqliteStore, StateStore};
use std::path::Path;
use std::time::Duration;

const ROWS: usize = 450;
const CHUNK: &str = "/api/2.0/sql/statements/{id}/result/chunks/{n}";
const QUERY: &str = "SELECT id, email, ltv FROM main.sales.customers";

/// A Databricks emulator on its own PostgreSQL database, holding
/// `main.sales.customers (id, email, ltv)` with [`ROWS`] rows in chunks of 100.
struct Warehouse {
    emulator: RunningEmulator,
    database: String,
}

impl Warehouse {
    async fn start(name: &str) -> Warehouse {
        let database = format!("sluice_dbx_e2e_{name}_{}", std::process::id());
        let config = EmulatorConfig {
            databricks: DatabricksSettings {
                postgres_url: format!("postgres://postgres@127.0.0.1:5432/{database}"),
                chunk_rows: 100,
                ..DatabricksSettings::default()
            },
            ..EmulatorConfig::default()
        };
        let emulator = sluice_emulators::start_databricks("127.0.0.1:0".parse().unwrap(), config)
            .await
            .unwrap();
        let warehouse = Warehouse { emulator, database };
        warehouse.sql("CREATE SCHEMA main.sales").await;
        warehouse
            .sql("CREATE TABLE main.sales.customers (id BIGINT, email STRING, ltv DECIMAL(12,2))")
            .await;
        let values: Vec<String> = (0..ROWS)
            .map(|i| format!("({i}, 'c{i}@example.com', {}.50)", i * 10))
            .collect();
        warehouse
            .sql(&format!(
                "INSERT INTO main.sales.customers VALUES {}",
                values.join(", ")
            ))
            .await;
        warehouse
    }

    async fn sql(&self, statement: &str) -> Vec<Vec<Option<String>>> {
        self.emulator
            .handle()
            .databricks_execute(statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e:?}"))
    }

    fn grants(&self) -> String {
        let api = Grants::pattern_for_url(&self.emulator.base_url()).unwrap();
        let storage =
            Grants::pattern_for_url(&self.emulator.handle().databricks_storage_url()).unwrap();
        format!("[\"{api}\", \"{storage}\"]")
    }

    async fn finish(self) {
        self.emulator.shutdown().await.unwrap();
        psql(&format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.database
        ));
    }
}

/// A project: the databricks source with `auth` (YAML lines) and `extra`
/// settings, a model on `query` keyed by `id`, an upsert sync to the receiver.
fn project(dir: &Path, warehouse: &Warehouse, rx: &Receiver, settings: &str, query: &str) {
    let yaml = format!(
        r#"
sources:
  lakehouse:
    plugin: databricks
    config:
      host: "{host}"
      {settings}
    grants: {grants}
destinations:
  hook: {{ plugin: webhook, config: {{ url: "{url}", max_retries: 0 }}, grants: ["{hook_grant}"] }}
models:
  customers:
    source: lakehouse
    query: "{query}"
    primary_key: id
syncs:
  customers:
    model: customers
    destination: hook
    object: customers
    mode: upsert
    identifier: id
    batch_size: 500
"#,
        host = warehouse.emulator.base_url(),
        grants = warehouse.grants(),
        url = rx.url,
        hook_grant = rx.grant(),
    );
    std::fs::write(dir.join("sluice.yaml"), yaml).unwrap();
}

fn pat_settings(warehouse_id: &str, token: &str) -> String {
    format!("token: {token}\n      warehouse_id: {warehouse_id}")
}

fn pat() -> String {
    pat_settings(DEFAULT_DATABRICKS_WAREHOUSE, DEFAULT_DATABRICKS_TOKEN)
}

async fn run(dir: &Path) -> RunReport {
    run_sync(dir, "customers", &RunOptions::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_chunks_flow_into_the_webhook_and_a_rerun_sends_only_changed_rows() {
    let warehouse = Warehouse::start("inline").await;
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    project(dir.path(), &warehouse, &rx, &pat(), QUERY);

    let first = run(dir.path()).await;
    assert_eq!(first.status, RunStatus::Succeeded, "{:?}", first.error);
    assert_eq!(first.counts.ok, ROWS as u64, "{:?}", first.counts);
    let rows = rx.rows();
    assert_eq!(rows.len(), ROWS);
    let c7 = rows.iter().find(|r| r["id"] == 7).unwrap();
    assert_eq!(c7["email"], "c7@example.com");
    assert_eq!(c7["ltv"], serde_json::json!(70.5));
    let stats = warehouse.emulator.handle().stats();
    assert_eq!(
        stats.endpoint("GET", CHUNK),
        4,
        "chunk 0 came with the answer, chunks 1 to 4 were fetched one by one"
    );

    warehouse
        .sql("UPDATE main.sales.customers SET ltv = ltv + 1000 WHERE id IN (1, 200, 401)")
        .await;
    let second = run(dir.path()).await;
    assert_eq!(second.status, RunStatus::Succeeded, "{:?}", second.error);
    assert_eq!(second.counts.ok, 3, "{:?}", second.counts);
    let rows = rx.rows();
    assert_eq!(rows.len(), ROWS + 3);
    let changed: Vec<i64> = rows[ROWS..]
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(changed.len(), 3);
    assert!(changed.contains(&200), "{changed:?}");
    assert_eq!(
        rows[ROWS..].iter().find(|r| r["id"] == 200).unwrap()["ltv"],
        serde_json::json!(3000.5)
    );
    warehouse.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_links_are_fetched_from_storage_without_authorization_using_oauth_m2m() {
    let warehouse = Warehouse::start("links").await;
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    let storage = warehouse.emulator.handle().databricks_storage_url();
    assert_ne!(
        storage,
        warehouse.emulator.base_url(),
        "links are on another host"
    );
    let settings = format!(
        "client_id: {DEFAULT_DATABRICKS_CLIENT_ID}\n      client_secret: {DEFAULT_DATABRICKS_CLIENT_SECRET}\n      \
         warehouse_id: {DEFAULT_DATABRICKS_WAREHOUSE}\n      disposition: EXTERNAL_LINKS\n      \
         external_link_hosts: [\"{storage}\"]"
    );
    project(dir.path(), &warehouse, &rx, &settings, QUERY);
    let report = run(dir.path()).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    assert_eq!(report.counts.ok, ROWS as u64);
    let mut ids: Vec<i64> = rx
        .rows()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..ROWS as i64).collect::<Vec<_>>());
    let handle = warehouse.emulator.handle();
    assert_eq!(handle.stats().endpoint("GET", CHUNK), 4);
    assert_eq!(
        handle.databricks_links_with_authorization(),
        0,
        "no storage request carried the workspace token"
    );
    assert_eq!(handle.stats().unauthorized, 0);
    warehouse.finish().await;
}

/// Runs the project with a broken source and checks the run failed naming the
/// source with each of `expected`, and that nothing was delivered or committed.
async fn assert_fails_cleanly(name: &str, settings: &str, query: &str, expected: &[&str]) {
    let warehouse = Warehouse::start(name).await;
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    project(dir.path(), &warehouse, &rx, settings, query);
    let report = run(dir.path()).await;
    assert_eq!(report.status, RunStatus::Failed, "{name}: {report:?}");
    let error = report.error.clone().unwrap_or_default();
    assert!(
        error.contains("lakehouse"),
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
async fn a_wrong_token_fails_with_databricks_unauthenticated() {
    assert_fails_cleanly(
        "wrongtoken",
        &pat_settings(DEFAULT_DATABRICKS_WAREHOUSE, "dapi-not-the-token"),
        QUERY,
        &[
            "HTTP 401, UNAUTHENTICATED",
            "Invalid access token",
            "Databricks workspace http://",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_warehouse_fails_with_not_found() {
    assert_fails_cleanly(
        "nowarehouse",
        &pat_settings("no-such-warehouse", DEFAULT_DATABRICKS_TOKEN),
        QUERY,
        &[
            "HTTP 404, NOT_FOUND",
            "SQL warehouse no-such-warehouse does not exist",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sql_error_passes_the_failed_statements_code_and_message_through() {
    assert_fails_cleanly(
        "badsql",
        &pat(),
        "SELECT id, emial FROM main.sales.customers",
        &[
            "FAILED, BAD_REQUEST (SQL state 42703)",
            "[UNRESOLVED_COLUMN.WITHOUT_SUGGESTION]",
            "`emial`",
        ],
    )
    .await;
    assert_fails_cleanly(
        "notable",
        &pat(),
        "SELECT id FROM main.sales.missing",
        &["[TABLE_OR_VIEW_NOT_FOUND]", "main.sales.missing"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_and_every_row_arrives() {
    let warehouse = Warehouse::start("throttled").await;
    warehouse
        .emulator
        .handle()
        .set_rate_limit(Some(RateLimit::new(1, Duration::from_millis(500))));
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    project(dir.path(), &warehouse, &rx, &pat(), QUERY);
    let report = run(dir.path()).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    assert!(
        warehouse.emulator.handle().stats().throttled > 0,
        "the emulator throttled"
    );
    assert_eq!(rx.rows().len(), ROWS);
    warehouse.finish().await;
}

/// The `databricks` plugin alone in the sandbox, against `warehouse`.
async fn source_instance(
    test: &TestRuntime,
    warehouse: &Warehouse,
) -> sluice_runtime::instance::Instance {
    let plugin = sluice_runtime::plugin::Plugin::from_bytes(
        &test.runtime,
        "databricks",
        sluice_registry::builtin::DATABRICKS,
    )
    .unwrap();
    let api = Grants::pattern_for_url(&warehouse.emulator.base_url()).unwrap();
    let storage =
        Grants::pattern_for_url(&warehouse.emulator.handle().databricks_storage_url()).unwrap();
    plugin
        .instantiate(&sandbox(&[&api, &storage]))
        .await
        .unwrap()
}

fn plugin_config(warehouse: &Warehouse, extra: serde_json::Value) -> String {
    let mut config = serde_json::json!({
        "host": warehouse.emulator.base_url(),
        "token": DEFAULT_DATABRICKS_TOKEN,
        "warehouse_id": DEFAULT_DATABRICKS_WAREHOUSE,
        "catalog": "main",
        "schema": "sales",
    });
    for (key, value) in extra.as_object().unwrap() {
        config[key] = value.clone();
    }
    config.to_string()
}

const TYPES_TABLE: &str =
    "CREATE TABLE main.sales.types (id INT, tiny TINYINT, sh SMALLINT, i INT, \
     l BIGINT, f FLOAT, d DOUBLE, small DECIMAL(5,2), big DECIMAL(38,10), b BOOLEAN, s STRING, \
     bin BINARY, dt DATE, ts TIMESTAMP, ntz TIMESTAMP_NTZ, arr ARRAY<INT>, m MAP<STRING,INT>, \
     st STRUCT<a: INT, b: STRING>, iv INTERVAL DAY TO SECOND)";

const TYPES_ROWS: &str = "INSERT INTO main.sales.types VALUES \
     (1, -128, -32768, -2147483648, -9223372036854775808, 3.5, 1e300, -999.99, \
      1234567890123456789012345678.0123456789, true, 'Zürich ✓ 🚀', X'00ff', DATE '0001-01-01', \
      TIMESTAMP '2021-05-04 20:08:13.299+02:00', TIMESTAMP_NTZ '2021-05-04 18:08:13.299', \
      '[1, null, 3]', '{\"k\": 1}', '{\"a\": 1, \"b\": \"ü\"}', INTERVAL '1 02:03:04' DAY TO SECOND), \
     (2, 127, 32767, 2147483647, 9223372036854775807, CAST('NaN' AS FLOAT), CAST('-Infinity' AS DOUBLE), \
      999.99, -0.0000000001, false, '', X'', DATE '9999-12-31', TIMESTAMP '1969-12-31 23:59:59.999999Z', \
      TIMESTAMP_NTZ '1970-01-01 00:00:00', '[]', '{}', '{\"a\": null, \"b\": null}', INTERVAL '0' DAY), \
     (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_arrives_as_the_plugin_readme_says() {
    let warehouse = Warehouse::start("types").await;
    warehouse.sql(TYPES_TABLE).await;
    warehouse.sql(TYPES_ROWS).await;
    // One row per chunk: rows 2 and 3 come from chunk fetches.
    warehouse.emulator.handle().databricks_set_chunk_rows(1);

    // 1. The plugin in its sandbox, both dispositions: each value exactly as
    //    the README's table says.
    let test = runtime();
    let mut instance = source_instance(&test, &warehouse).await;
    for disposition in ["INLINE", "EXTERNAL_LINKS"] {
        let config = plugin_config(&warehouse, serde_json::json!({"disposition": disposition}));
        let reader = instance
            .read(
                &config,
                &ReadRequest::Query("SELECT * FROM types ORDER BY id".into()),
            )
            .await
            .unwrap();
        let mut rows = Vec::new();
        while let Some(batch) = instance.next_batch(&reader, 100).await.unwrap() {
            assert_eq!(batch.columns[1], "tiny");
            rows.extend(batch.rows);
        }
        assert_eq!(rows.len(), 3, "{disposition}");
        let ts = |s: &str| Value::Timestamp(sluice_runtime::values::parse_timestamp(s).unwrap());
        let first = &rows[0];
        let expected = [
            Value::Integer(1),
            Value::Integer(-128),
            Value::Integer(-32768),
            Value::Integer(-2147483648),
            Value::Integer(i64::MIN),
            Value::Float(3.5),
            Value::Float(1e300),
            Value::Decimal("-999.99".into()),
            Value::Decimal("1234567890123456789012345678.0123456789".into()),
            Value::Boolean(true),
            Value::Text("Zürich ✓ 🚀".into()),
            Value::Bytes(vec![0, 255]),
            Value::Date(-719_162),
            ts("2021-05-04T18:08:13.299Z"),
            ts("2021-05-04T18:08:13.299Z"),
            Value::Json("[1,null,3]".into()),
            Value::Json(r#"{"k":1}"#.into()),
            Value::Json(r#"{"a":1,"b":"ü"}"#.into()),
            Value::Text("P1DT2H3M4S".into()),
        ];
        for (i, value) in expected.iter().enumerate() {
            assert_eq!(&first[i], value, "{disposition}: column {i} of row 1");
        }
        let second = &rows[1];
        assert_eq!(second[1], Value::Integer(127));
        assert_eq!(second[4], Value::Integer(i64::MAX));
        assert!(
            matches!(second[5], Value::Float(f) if f.is_nan()),
            "{:?}",
            second[5]
        );
        assert_eq!(second[6], Value::Float(f64::NEG_INFINITY));
        assert_eq!(second[8], Value::Decimal("-0.0000000001".into()));
        assert_eq!(second[10], Value::Text(String::new()));
        assert_eq!(second[11], Value::Bytes(Vec::new()));
        assert_eq!(second[12], Value::Date(2_932_896));
        assert_eq!(second[13], Value::Timestamp(-1));
        assert_eq!(second[14], Value::Timestamp(0));
        assert_eq!(second[18], Value::Text("PT0S".into()));
        assert!(
            rows[2][1..].iter().all(|v| *v == Value::Null),
            "{disposition}: {:?}",
            rows[2]
        );
    }

    // 2. discover: the table with each column's field type.
    let objects = instance
        .discover(&plugin_config(&warehouse, serde_json::json!({})))
        .await
        .unwrap();
    let types = objects
        .iter()
        .find(|o| o.name == "sales.types")
        .unwrap_or_else(|| panic!("{objects:?}"));
    let kinds: Vec<String> = types
        .fields
        .iter()
        .map(|f| format!("{}:{:?}", f.name, f.type_))
        .collect();
    assert_eq!(kinds[1], "tiny:FieldType::Integer");
    assert_eq!(kinds[8], "big:FieldType::Decimal");
    assert_eq!(kinds[11], "bin:FieldType::Bytes");
    assert_eq!(kinds[14], "ntz:FieldType::Timestamp");
    assert_eq!(kinds[15], "arr:FieldType::Json");
    assert_eq!(kinds[18], "iv:FieldType::Text");

    // 3. Through a sync into the webhook: each value as its JSON rendering.
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    project(
        dir.path(),
        &warehouse,
        &rx,
        &pat(),
        "SELECT * FROM main.sales.types WHERE id <> 2",
    );
    let report = run(dir.path()).await;
    assert_eq!(
        (report.status, report.counts.ok),
        (RunStatus::Succeeded, 2),
        "{:?}",
        report.error
    );
    let rows = rx.rows();
    let row = rows.iter().find(|r| r["id"] == 1).unwrap();
    let json = serde_json::json!({
        "tiny": -128, "sh": -32768, "i": -2147483648i64, "l": i64::MIN, "f": 3.5, "d": 1e300,
        "small": -999.99, "b": true, "s": "Zürich ✓ 🚀", "bin": "00ff", "dt": "0001-01-01",
        "ts": "2021-05-04T18:08:13.299000Z", "ntz": "2021-05-04T18:08:13.299000Z",
        "arr": [1, null, 3], "m": {"k": 1}, "st": {"a": 1, "b": "ü"}, "iv": "P1DT2H3M4S",
    });
    for (name, value) in json.as_object().unwrap() {
        assert_eq!(&row[name], value, "column {name}");
    }
    // The webhook writes DECIMAL(38,10) as a JSON number with every digit;
    // this receiver parses numbers into f64, so the digits are checked in
    // the body as sent.
    assert!(row["big"].is_number(), "{}", row["big"]);
    let exact = rx.requests.lock().unwrap().iter().any(|r| {
        String::from_utf8_lossy(&r.raw).contains("\"big\":1234567890123456789012345678.0123456789")
    });
    assert!(exact, "the decimal lost digits");
    let nulls = rows.iter().find(|r| r["id"] == 3).unwrap();
    for name in json.as_object().unwrap().keys() {
        assert_eq!(nulls[name], serde_json::Value::Null, "column {name}");
    }
    warehouse.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_statement_is_polled_to_its_result() {
    let warehouse = Warehouse::start("polled").await;
    warehouse
        .emulator
        .handle()
        .databricks_set_execution_delay(Duration::from_millis(400));
    let test = runtime();
    let mut instance = source_instance(&test, &warehouse).await;
    let config = plugin_config(&warehouse, serde_json::json!({"wait_timeout_s": 0}));
    let reader = instance
        .read(
            &config,
            &ReadRequest::Query("SELECT count(*) AS n FROM customers".into()),
        )
        .await
        .unwrap();
    let batch = instance.next_batch(&reader, 10).await.unwrap().unwrap();
    assert_eq!(batch.rows, vec![vec![Value::Integer(ROWS as i64)]]);
    let polls = warehouse
        .emulator
        .handle()
        .stats()
        .endpoint("GET", "/api/2.0/sql/statements/{id}");
    assert!(polls >= 1, "the answer was PENDING and the plugin polled");
    warehouse.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_still_running_past_max_poll_ms_is_cancelled() {
    let warehouse = Warehouse::start("abort").await;
    warehouse
        .emulator
        .handle()
        .databricks_set_execution_delay(Duration::from_secs(5));
    let test = runtime();
    let mut instance = source_instance(&test, &warehouse).await;
    let config = plugin_config(
        &warehouse,
        serde_json::json!({"wait_timeout_s": 0, "max_poll_ms": 300}),
    );
    let error = instance
        .read(
            &config,
            &ReadRequest::Query("SELECT id FROM customers".into()),
        )
        .await
        .err()
        .expect("the read gives up");
    let message = format!("{error:?}");
    assert!(
        message.contains("still PENDING after 300 ms; cancelled it")
            || message.contains("still RUNNING after 300 ms; cancelled it"),
        "{message}"
    );
    assert_eq!(
        warehouse.emulator.handle().databricks_cancelled().len(),
        1,
        "the plugin cancelled its statement"
    );
    warehouse.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_are_retried_and_every_row_arrives() {
    let warehouse = Warehouse::start("drops").await;
    warehouse
        .emulator
        .handle()
        .set_faults(sluice_emulators::FaultConfig {
            drop_probability: 0.3,
            ..sluice_emulators::FaultConfig::none()
        });
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    project(dir.path(), &warehouse, &rx, &pat(), QUERY);
    let report = run(dir.path()).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    assert!(
        warehouse.emulator.handle().stats().dropped_injected > 0,
        "the emulator dropped connections"
    );
    assert_eq!(rx.rows().len(), ROWS);
    warehouse.finish().await;
}
