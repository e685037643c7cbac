//! The mysql source end to end against the real MariaDB on 127.0.0.1:3306
//! (root, no password): every type through the sandboxed plugin and into
//! the local webhook receiver, a sync and its rerun, and bad input. Each
//! test works in its own database, dropped at the end.

use sluice_tests as common;

use common::*;
use sluice_engine::run::{RunOptions, RunReport};
use sluice_registry::builtin as plugins;
use sluice_runtime::bindings::types::ReadRequest;
use sluice_runtime::plugin::Plugin;
use sluice_runtime::Value;
use sluice_state::RunStatus;
use std::path::Path;
use std::time::{Duration, Instant};

/// Run SQL as root with the `mariadb` client.
fn mariadb(database: &str, sql: &str) {
    let status = std::process::Command::new("mariadb")
        .args([
            "-h",
            "127.0.0.1",
            "-u",
            "root",
            "--default-character-set=utf8mb4",
        ])
        .args(["-D", database, "-e", sql])
        .status()
        .expect("the mariadb client runs");
    assert!(status.success(), "mariadb failed: {sql}");
}

/// A scratch database `sluice_mysql_<test>_<pid>`, dropped at the end.
struct Database(String);

impl Database {
    fn new(test: &str) -> Database {
        let name = format!("sluice_mysql_{test}_{}", std::process::id());
        mariadb(
            "mysql",
            &format!(
                "DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}` CHARACTER SET utf8mb4"
            ),
        );
        Database(name)
    }

    fn run(&self, sql: &str) {
        mariadb(&self.0, sql);
    }

    fn config(&self) -> String {
        format!(
            r#"{{"host":"127.0.0.1","user":"root","database":"{}"}}"#,
            self.0
        )
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        mariadb("mysql", &format!("DROP DATABASE IF EXISTS `{}`", self.0));
    }
}

/// A project with the mysql source (`source_config` is its YAML flow map),
/// a model on `query` keyed by `id`, and an upsert sync to the receiver.
fn project(dir: &Path, receiver: &Receiver, source_config: &str, query: &str) {
    let yaml = format!(
        r#"
sources:
  shop_db:
    plugin: mysql
    config: {source_config}
    grants: ["mysql://127.0.0.1:3306", "mysql://127.0.0.1:*"]
destinations:
  hook: {{ plugin: webhook, config: {{ url: "{url}", max_retries: 0 }}, grants: ["{grant}"] }}
models:
  rows:
    source: shop_db
    query: "{query}"
    primary_key: id
syncs:
  rows:
    model: rows
    destination: hook
    object: rows
    mode: upsert
    identifier: id
    batch_size: 500
"#,
        url = receiver.url,
        grant = receiver.grant()
    );
    std::fs::write(dir.join("sluice.yaml"), yaml).unwrap();
}

async fn run(dir: &Path) -> RunReport {
    run_sync(dir, "rows", &RunOptions::default()).await
}

fn source_config(database: &str) -> String {
    format!("{{ host: 127.0.0.1, port: 3306, user: root, database: {database} }}")
}

const TYPES: &str = "CREATE TABLE types (
    id INT PRIMARY KEY,
    ti TINYINT, tu TINYINT UNSIGNED, bi BIGINT, bu BIGINT UNSIGNED,
    dec_small DECIMAL(5,2), dec_big DECIMAL(65,30), f FLOAT, d DOUBLE,
    vc VARCHAR(100), tx TEXT, vb VARBINARY(10), bl BLOB,
    dt DATE, dtm DATETIME(6), ts TIMESTAMP(3) NULL, tm TIME, yr YEAR,
    js JSON, b5 BIT(5), en ENUM('small','large'), st SET('a','b','c'));
  INSERT INTO types VALUES
   (1, -128, 255, -9223372036854775808, 18446744073709551615,
    -999.99, 12345678901234567890123456789012345.123456789012345678901234567890, 0.5, 1e300,
    'Zürich ✓ 🚀', 'naïve', X'FF00', X'DEADBEEF',
    '2024-02-29', '2024-05-01 12:30:00.123456', '2038-01-19 03:14:07.999', '-12:30:00', 1901,
    '{\"k\": [1, \"ü\"]}', b'10101', 'large', 'a,c'),
   (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)";

/// The documented mapping of row 1, as `Value`s.
fn expected_values() -> Vec<(&'static str, Value)> {
    let ts = |s: &str| Value::Timestamp(sluice_runtime::values::parse_timestamp(s).unwrap());
    vec![
        ("id", Value::Integer(1)),
        ("ti", Value::Integer(-128)),
        ("tu", Value::Integer(255)),
        ("bi", Value::Integer(i64::MIN)),
        ("bu", Value::Decimal("18446744073709551615".into())),
        ("dec_small", Value::Decimal("-999.99".into())),
        (
            "dec_big",
            Value::Decimal(
                "12345678901234567890123456789012345.123456789012345678901234567890".into(),
            ),
        ),
        ("f", Value::Float(0.5)),
        ("d", Value::Float(1e300)),
        ("vc", Value::Text("Zürich ✓ 🚀".into())),
        ("tx", Value::Text("naïve".into())),
        ("vb", Value::Bytes(vec![0xFF, 0x00])),
        ("bl", Value::Bytes(vec![0xDE, 0xAD, 0xBE, 0xEF])),
        ("dt", Value::Date(19782)),
        ("dtm", ts("2024-05-01T12:30:00.123456Z")),
        ("ts", ts("2038-01-19T03:14:07.999Z")),
        ("tm", Value::Text("-12:30:00".into())),
        ("yr", Value::Integer(1901)),
        ("js", Value::Json("{\"k\": [1, \"ü\"]}".into())),
        ("b5", Value::Integer(0b10101)),
        ("en", Value::Text("large".into())),
        ("st", Value::Text("a,c".into())),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_arrives_as_documented_through_the_sandbox_and_the_webhook() {
    let db = Database::new("types");
    db.run(TYPES);

    // 1. The plugin in its sandbox: each value exactly as the mapping says.
    let test = runtime();
    let plugin = Plugin::from_bytes(&test.runtime, "mysql", plugins::MYSQL).unwrap();
    let mut instance = plugin
        .instantiate(&sandbox(&["mysql://127.0.0.1:3306"]))
        .await
        .unwrap();
    let reader = instance
        .read(
            &db.config(),
            &ReadRequest::Query("SELECT * FROM types ORDER BY id".into()),
        )
        .await
        .unwrap();
    let batch = instance.next_batch(&reader, 100).await.unwrap().unwrap();
    assert!(instance.next_batch(&reader, 100).await.unwrap().is_none());
    let expected = expected_values();
    let names: Vec<&str> = expected.iter().map(|(n, _)| *n).collect();
    assert_eq!(batch.columns, names);
    for (i, (name, value)) in expected.iter().enumerate() {
        assert_eq!(&batch.rows[0][i], value, "column {name}");
    }
    assert!(batch.rows[1][1..].iter().all(|v| *v == Value::Null));

    // 2. Through a sync into the webhook: each value as its JSON rendering.
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    project(
        dir.path(),
        &rx,
        &source_config(&db.0),
        "SELECT * FROM types ORDER BY id",
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
        "id": 1, "ti": -128, "tu": 255, "bi": i64::MIN, "bu": 18446744073709551615u64,
        "dec_small": -999.99, "f": 0.5, "d": 1e300,
        "vc": "Zürich ✓ 🚀", "tx": "naïve", "vb": "ff00", "bl": "deadbeef",
        "dt": "2024-02-29", "dtm": "2024-05-01T12:30:00.123456Z", "ts": "2038-01-19T03:14:07.999000Z",
        "tm": "-12:30:00", "yr": 1901, "js": {"k": [1, "ü"]}, "b5": 21, "en": "large", "st": "a,c",
    });
    for (name, value) in json.as_object().unwrap() {
        assert_eq!(&row[name], value, "column {name}");
    }
    // The webhook writes a decimal as a JSON number with every digit; this
    // receiver parses JSON into f64, so the exact digits are checked in the
    // body as sent.
    let digits = "12345678901234567890123456789012345.123456789012345678901234567890";
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
            .any(|b| b.contains(&format!("\"dec_big\":{digits}"))),
        "{bodies:?}"
    );
    assert!(row["dec_big"].is_number(), "{}", row["dec_big"]);
    let nulls = rows.iter().find(|r| r["id"] == 2).unwrap();
    for name in json.as_object().unwrap().keys().filter(|k| *k != "id") {
        assert_eq!(nulls[name], serde_json::Value::Null, "column {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_sends_only_the_changed_rows() {
    let db = Database::new("rerun");
    db.run(
        "CREATE TABLE users (id INT PRIMARY KEY, email VARCHAR(100), ltv DECIMAL(10,2), seen DATETIME(3));
         INSERT INTO users SELECT seq, CONCAT('u', seq, '@x.com'), seq * 1.25,
             TIMESTAMP '2024-05-01 00:00:00' + INTERVAL seq MINUTE FROM seq_1_to_1500",
    );
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    project(
        dir.path(),
        &rx,
        &source_config(&db.0),
        "SELECT id, email, ltv, seen FROM users",
    );
    let first = run(dir.path()).await;
    assert_eq!(
        (first.status, first.counts.ok),
        (RunStatus::Succeeded, 1500),
        "{:?}",
        first.error
    );
    let rows = rx.rows();
    assert_eq!(rows.len(), 1500);
    let row = rows.iter().find(|r| r["id"] == 1500).unwrap();
    assert_eq!(row["ltv"], serde_json::json!(1875.0));
    assert_eq!(row["seen"], "2024-05-02T01:00:00Z");

    db.run("UPDATE users SET ltv = ltv + 1 WHERE id % 150 = 0");
    rx.requests.lock().unwrap().clear();
    let second = run(dir.path()).await;
    assert_eq!(
        (
            second.status,
            second.counts.changed,
            second.counts.unchanged,
            second.counts.sent
        ),
        (RunStatus::Succeeded, 10, 1490, 10),
        "{:?}",
        second.error
    );
    let mut ids: Vec<i64> = rx
        .rows()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=10).map(|i| i * 150).collect::<Vec<i64>>());
}

/// A run that must fail before anything is delivered: its error names the
/// source and contains `expected`; the receiver got nothing.
async fn fails_cleanly(source_config: &str, query: &str, expected: &str) -> RunReport {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    project(dir.path(), &rx, source_config, query);
    let report = run(dir.path()).await;
    assert_eq!(report.status, RunStatus::Failed, "{report:?}");
    let error = report.error.clone().unwrap();
    assert!(error.contains("plugin `shop_db` failed"), "{error}");
    assert!(
        error.contains(expected),
        "expected `{expected}` in: {error}"
    );
    assert!(rx.requests.lock().unwrap().is_empty());
    assert_eq!(report.counts.ok, 0);
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_fails_precisely_and_commits_nothing() {
    let db = Database::new("bad");
    db.run("CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1)");

    // Wrong password (root has none; any password is refused).
    let wrong = format!(
        "{{ host: 127.0.0.1, user: root, password: not-the-password, database: {} }}",
        db.0
    );
    fails_cleanly(
        &wrong,
        "SELECT id FROM t",
        "ERROR 1045 (28000): Access denied for user 'root'",
    )
    .await;

    // Unknown database.
    fails_cleanly(
        &source_config("sluice_mysql_no_such_database"),
        "SELECT id FROM t",
        "ERROR 1049 (42000): Unknown database 'sluice_mysql_no_such_database'",
    )
    .await;

    // SQL syntax error: MariaDB's own message passes through.
    fails_cleanly(
        &source_config(&db.0),
        "SELEC id FROM t",
        "ERROR 1064 (42000): You have an error in your SQL syntax; check the manual that corresponds to your MariaDB server version for the right syntax to use near 'SELEC id FROM t' at line 1",
    )
    .await;

    // A server that accepts the connection and never answers: bounded by
    // connect_timeout_ms.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let started = Instant::now();
    fails_cleanly(
        &format!(
            "{{ host: 127.0.0.1, port: {port}, user: root, database: x, connect_timeout_ms: 1000 }}"
        ),
        "SELECT 1 AS id",
        &format!("127.0.0.1:{port}"),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    drop(silent);

    // TLS required from a server without it: refused, never cleartext.
    fails_cleanly(
        &format!(
            "{{ host: 127.0.0.1, user: root, database: {}, ssl_mode: REQUIRED }}",
            db.0
        ),
        "SELECT id FROM t",
        "does not offer TLS (no CLIENT_SSL in its greeting), and `ssl_mode: REQUIRED` allows no plaintext",
    )
    .await;
}
