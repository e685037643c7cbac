//! Type fidelity of the files source (issue 11, item 9): one CSV file with
//! every type hint and one JSON Lines file with every JSON type, each with
//! NULLs, extremes, time zones, non-ASCII text and large decimals, read
//! through a sync into a webhook receiver; every value is checked against
//! the mapping table in plugins/files/README.md. Parquet goes the same way
//! with `tests/fixtures/every_type.parquet`, a file with a column per
//! physical and logical type written by the plugin's native test
//! (`plugins/files/tests/files.rs` `the_hosts_parquet_fixture_is_the_types_file`
//! keeps it what that test writes; the host workspace has no Parquet writer).

use sluice_tests as common;

use common::*;
use serde_json::json;
use std::path::Path;

/// A CSV with a column per type hint. Rows: extremes and non-ASCII text;
/// the other extremes; empty cells (NULL for every type); spaces, NaN,
/// `+.5`, a -05:00 offset and the first date; -inf, the last timestamp and
/// date; a timestamp without an offset (UTC).
const CSV: &str = "\
id,tx,int,fl,dec,bool,ts,dt,js
1,\"Zürich ✓ 🚀, \"\"quoted\"\"\",9223372036854775807,1.7976931348623157e308,123456789012345678901234567890.123456789,yes,2024-05-01T14:30:00.5+02:00,2024-02-29,\"{\"\"k\"\":[1,\"\"ü\"\"]}\"
2,naïve,-9223372036854775808,-0.1,-0.000000000000000001,F,1969-12-31T23:59:59.999999Z,1969-12-31,[]
3,,,,,,,,
4, , 0 ,NaN,+.5,1,2024-03-10T02:30:00-05:00,0001-01-01,\"\"\"ü\"\"\"
5,日本語,-1,-inf,-12.50,n,9999-12-30T21:59:59.999999Z,9999-12-31,\"{\"\"deep\"\":{\"\"a\"\":[true,null,1.5]}}\"
6,,,,,,2024-05-01 12:30,,
";

/// JSON Lines: every JSON type, with extremes, a missing-keys row, and a
/// key first seen in a later row.
const JSONL: &str = r#"{"id":1,"tx":"Zürich ✓ 🚀 \"q\"","int":9223372036854775807,"big":18446744073709551615,"fl":1.7976931348623157e308,"frac":0.1,"bool":true,"obj":{"a":[1,"ü"]},"arr":[1,null,"x"],"nul":null}
{"id":2,"tx":"","int":-9223372036854775808,"big":9223372036854775808,"fl":5e-324,"frac":-2.5,"bool":false,"obj":{},"arr":[],"nul":null}

{"id":3}
{"id":4,"huge":123456789012345678901234567890,"ts":"2024-05-01T12:30:00+02:00"}
"#;

fn project(dir: &Path, url: &str, grant: &str) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/every_type.csv"), CSV).unwrap();
    std::fs::write(dir.join("data/every_type.jsonl"), JSONL).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/every_type.parquet"),
        dir.join("data/every_type.parquet"),
    )
    .unwrap();
    let yaml = format!(
        r#"
sources:
  files:
    plugin: files
    config:
      path: /data
      columns: {{ id: integer, tx: text, int: integer, fl: float, dec: decimal, bool: boolean, ts: timestamp, dt: date, js: json }}
    grants: ["dir:data:/data"]
destinations:
  hook: {{ plugin: webhook, config: {{ url: "{url}", max_retries: 0 }}, grants: ["{grant}"] }}
models:
  csv: {{ source: files, object: every_type.csv, primary_key: id }}
  jsonl: {{ source: files, object: every_type.jsonl, primary_key: id }}
  parquet: {{ source: files, object: every_type.parquet, primary_key: id }}
syncs:
  csv: {{ model: csv, destination: hook, object: csv, mode: upsert, identifier: id }}
  jsonl: {{ model: jsonl, destination: hook, object: jsonl, mode: upsert, identifier: id }}
  parquet: {{ model: parquet, destination: hook, object: parquet, mode: upsert, identifier: id }}
"#
    );
    std::fs::write(dir.join("sluice.yaml"), yaml).unwrap();
}

/// The rows the receiver got, by id, and every request body as sent.
fn received(rx: &Receiver) -> (Vec<serde_json::Value>, String) {
    let mut rows = rx.rows();
    rows.sort_by_key(|r| r["id"].as_i64());
    let raw = rx
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.raw).into_owned())
        .collect();
    (rows, raw)
}

fn assert_row(row: &serde_json::Value, expected: serde_json::Value) {
    for (name, value) in expected.as_object().unwrap() {
        assert_eq!(&row[name], value, "column {name} of {row}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_every_hinted_type_arrives_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    project(dir.path(), &rx.url, &rx.grant());
    let report = run_sync(dir.path(), "csv", &Default::default()).await;
    assert_eq!(report.counts.ok, 6, "{:?}", report.error);
    let (rows, raw) = received(&rx);
    assert_eq!(rows.len(), 6);
    assert_row(
        &rows[0],
        json!({"id": 1, "tx": "Zürich ✓ 🚀, \"quoted\"", "int": i64::MAX, "fl": f64::MAX,
               "bool": true, "ts": "2024-05-01T12:30:00.500000Z", "dt": "2024-02-29",
               "js": {"k": [1, "ü"]}}),
    );
    assert_row(
        &rows[1],
        json!({"id": 2, "tx": "naïve", "int": i64::MIN, "fl": -0.1, "bool": false,
               "ts": "1969-12-31T23:59:59.999999Z", "dt": "1969-12-31", "js": []}),
    );
    // Empty cells are NULL whatever the type.
    let nulls = rows[2].as_object().unwrap();
    assert_eq!(nulls.len(), 9, "{nulls:?}");
    assert!(
        nulls.iter().all(|(k, v)| k == "id" || v.is_null()),
        "{nulls:?}"
    );
    // A space is text in a text column and formatting in a typed one.
    assert_row(
        &rows[3],
        json!({"id": 4, "tx": " ", "int": 0, "fl": "NaN", "bool": true,
               "ts": "2024-03-10T07:30:00Z", "dt": "0001-01-01", "js": "ü"}),
    );
    assert_row(
        &rows[4],
        json!({"id": 5, "tx": "日本語", "int": -1, "fl": "-Infinity", "bool": false,
               "ts": "9999-12-30T21:59:59.999999Z", "dt": "9999-12-31",
               "js": {"deep": {"a": [true, null, 1.5]}}}),
    );
    assert_row(
        &rows[5],
        json!({"id": 6, "ts": "2024-05-01T12:30:00Z", "tx": null, "dt": null}),
    );
    // Decimals keep every digit and their scale, normalised to plain
    // notation, in the body as sent (the receiver parses numbers as f64).
    for decimal in [
        "\"dec\":123456789012345678901234567890.123456789",
        "\"dec\":-0.000000000000000001",
        "\"dec\":0.5",
        "\"dec\":-12.50",
    ] {
        assert!(raw.contains(decimal), "{decimal} not in {raw}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_every_json_type_arrives_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    project(dir.path(), &rx.url, &rx.grant());
    let report = run_sync(dir.path(), "jsonl", &Default::default()).await;
    assert_eq!(report.counts.ok, 4, "{:?}", report.error);
    let (rows, raw) = received(&rx);
    assert_eq!(rows.len(), 4);
    assert_row(
        &rows[0],
        json!({"id": 1, "tx": "Zürich ✓ 🚀 \"q\"", "int": i64::MAX,
               "big": 18446744073709551615u64, "fl": f64::MAX, "frac": 0.1, "bool": true,
               "obj": {"a": [1, "ü"]}, "arr": [1, null, "x"], "nul": null}),
    );
    assert_row(
        &rows[1],
        json!({"id": 2, "tx": "", "int": i64::MIN, "big": 9223372036854775808u64,
               "fl": 5e-324, "frac": -2.5, "bool": false, "obj": {}, "arr": []}),
    );
    // Integers beyond i64 are exact decimals, in the body as sent.
    assert!(raw.contains("\"big\":18446744073709551615"), "{raw}");
    // Keys a row lacks are NULL, including keys first seen later.
    let missing = rows[2].as_object().unwrap();
    assert!(
        missing.iter().all(|(k, v)| k == "id" || v.is_null()),
        "{missing:?}"
    );
    // Integers beyond u64 are floats (f64: the digits past ~17 are lost,
    // as the README says), and JSON has no timestamps: strings stay text.
    assert_row(
        &rows[3],
        json!({"id": 4, "huge": 1.2345678901234568e29, "ts": "2024-05-01T12:30:00+02:00"}),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_every_physical_and_logical_type_arrives_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    project(dir.path(), &rx.url, &rx.grant());
    let report = run_sync(dir.path(), "parquet", &Default::default()).await;
    assert_eq!(report.counts.ok, 2, "{:?}", report.error);
    let (rows, raw) = received(&rx);
    assert_eq!(rows.len(), 2);
    assert_row(
        &rows[0],
        json!({"id": 1, "name": "Ada", "score": 0.25, "ratio": 0.1,
               "ts_ms": "2024-05-01T12:30:00.123000Z", "ts_ns": "2024-05-01T12:30:00.123456Z",
               "day": "2024-05-01", "active": true, "blob": "dead",
               "address": {"city": "Paris", "zip": null}, "tags": ["a", "b"]}),
    );
    // A DECIMAL(…, 2) stored as INT32 keeps its scale, as sent.
    assert!(raw.contains("\"amount\":-12.34"), "{raw}");
    // The second row is NULL wherever the schema allows (all but id).
    let nulls = rows[1].as_object().unwrap();
    assert_eq!(nulls.len(), 12, "{nulls:?}");
    assert!(
        nulls.iter().all(|(k, v)| (k == "id") != v.is_null()),
        "{nulls:?}"
    );
}
