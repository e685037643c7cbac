//! The source plugins inside the real sandbox: files through a directory
//! grant, PostgreSQL through a TCP grant, and both refused without one.

use sluice_tests as common;

use common::*;
use sluice_registry::builtin as plugins;
use sluice_runtime::bindings::types::ReadRequest;
use sluice_runtime::plugin::Plugin;
use sluice_runtime::FailureKind;
use sluice_runtime::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_reads_a_csv_from_a_granted_directory_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("email,ltv\n");
    for i in 0..2500 {
        csv.push_str(&format!("user{i}@example.com,{}.5\n", i));
    }
    std::fs::write(dir.path().join("customers.csv"), csv).unwrap();

    let test = runtime();
    let plugin = Plugin::from_bytes(&test.runtime, "files", plugins::FILES).unwrap();
    let grant = format!("dir:{}:/data", dir.path().display());
    let mut instance = plugin.instantiate(&sandbox(&[&grant])).await.unwrap();
    let config = r#"{"path":"/data","columns":{"ltv":"float"}}"#;
    instance.check(config).await.unwrap();
    let reader = instance
        .read(config, &ReadRequest::Object("customers.csv".into()))
        .await
        .unwrap();
    let mut rows = Vec::new();
    let mut batches = 0;
    while let Some(batch) = instance.next_batch(&reader, 1000).await.unwrap() {
        assert_eq!(batch.columns, vec!["email", "ltv"]);
        batches += 1;
        rows.extend(batch.rows);
    }
    assert_eq!((batches, rows.len()), (3, 2500));
    assert_eq!(
        rows[2499],
        vec![text("user2499@example.com"), Value::Float(2499.5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_sees_nothing_without_a_grant() {
    let test = runtime();
    let plugin = Plugin::from_bytes(&test.runtime, "files", plugins::FILES).unwrap();
    let mut instance = plugin.instantiate(&sandbox(&[])).await.unwrap();
    let err = instance.check(r#"{"path":"/data"}"#).await.err().unwrap();
    assert!(
        err.to_string().contains("dir:/data"),
        "the error says what to grant: {err}"
    );
}

fn pg_config() -> String {
    r#"{"host":"127.0.0.1","port":5432,"user":"postgres","database":"test"}"#.into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_streams_a_query_through_a_tcp_grant() {
    let test = runtime();
    let plugin = Plugin::from_bytes(&test.runtime, "postgres", plugins::POSTGRES).unwrap();
    let mut instance = plugin
        .instantiate(&sandbox(&["postgres://127.0.0.1:5432"]))
        .await
        .unwrap();
    let query = "SELECT g AS id, 'user' || g || '@example.com' AS email, g * 1.5::numeric AS ltv, \
                 TIMESTAMPTZ '2024-05-01 12:30:00+00' AS seen, NULL::text AS nothing \
                 FROM generate_series(1, 12345) g ORDER BY g";
    let reader = instance
        .read(&pg_config(), &ReadRequest::Query(query.into()))
        .await
        .unwrap();
    let mut count = 0;
    let mut last = None;
    while let Some(batch) = instance.next_batch(&reader, 5000).await.unwrap() {
        assert_eq!(batch.columns, vec!["id", "email", "ltv", "seen", "nothing"]);
        count += batch.rows.len();
        last = batch.rows.last().cloned();
    }
    assert_eq!(count, 12345);
    let last = last.unwrap();
    assert_eq!(last[0], Value::Integer(12345));
    assert_eq!(last[2], Value::Decimal("18517.5".into()));
    assert_eq!(last[3], Value::Timestamp(1_714_566_600_000_000));
    assert_eq!(last[4], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sql_errors_pass_through() {
    let test = runtime();
    let plugin = Plugin::from_bytes(&test.runtime, "postgres", plugins::POSTGRES).unwrap();
    let mut instance = plugin
        .instantiate(&sandbox(&["postgres://127.0.0.1:5432"]))
        .await
        .unwrap();
    let err = match instance
        .read(
            &pg_config(),
            &ReadRequest::Query("SELECT * FROM no_such_table_here".into()),
        )
        .await
    {
        Ok(reader) => instance.next_batch(&reader, 10).await.err().unwrap(),
        Err(e) => e,
    };
    assert!(
        err.to_string().contains("42P01") && err.to_string().contains("no_such_table_here"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_without_a_grant_is_denied_with_the_address() {
    let test = runtime();
    let plugin = Plugin::from_bytes(&test.runtime, "postgres", plugins::POSTGRES).unwrap();
    let mut instance = plugin.instantiate(&sandbox(&[])).await.unwrap();
    let err = instance.check(&pg_config()).await.err().unwrap();
    let FailureKind::Denied(denial) = &err.kind else {
        panic!("{err}")
    };
    // Refused when it creates its socket, before any address is known: no
    // OS socket exists without a grant that reaches raw TCP.
    assert!(
        denial
            .detail
            .contains("the plugin has no grant that reaches raw TCP")
            && denial.detail.contains("no socket was created"),
        "{denial}"
    );
}

/// One row of every type the postgres source maps (README "Types"), and one
/// row of NULLs.
const EVERY_TYPE: &str = "(id int PRIMARY KEY, b bool, i2 int2, i4 int4, i8 int8, f4 float4,
      f8 float8, f8nan float8, f8inf float8, num numeric, num_nan numeric, tx text,
      vc varchar(20), bp char(5), ts timestamp, tstz timestamptz, d date, dinf date, tm time,
      ttz timetz, iv interval, js json, jb jsonb, u uuid, by bytea, arr int[], tarr text[],
      inet inet);
    INSERT INTO {table} VALUES
     (1, true, -32768, -2147483648, -9223372036854775808, 0.1, 1.7976931348623157e308, 'NaN',
      '-Infinity', 123456789012345678901234567890.123456789, 'NaN', 'Zürich ✓ 🚀', 'naïve', 'ab',
      '2024-02-29 23:59:59.999999', '2024-05-01 12:30:00.5+02', '1969-12-31', 'infinity',
      '12:34:56.789', '12:34:56+05:30', '1 day 2 hours', '{\"k\":[1,\"ü\"]}', '{\"b\":1, \"a\":2}',
      'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '\\xdeadbeef', '{1,NULL,3}', '{\"a,b\",NULL}',
      '10.0.0.1/8'),
     (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
      NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)";

/// Row 1 of [`EVERY_TYPE`] as the README's mapping says, with NaN checked
/// apart (it equals nothing) and JSON compared as documents.
fn expected_postgres_values() -> Vec<(&'static str, Value)> {
    let ts = |s: &str| Value::Timestamp(sluice_runtime::values::parse_timestamp(s).unwrap());
    vec![
        ("id", Value::Integer(1)),
        ("b", Value::Boolean(true)),
        ("i2", Value::Integer(-32768)),
        ("i4", Value::Integer(-2147483648)),
        ("i8", Value::Integer(i64::MIN)),
        ("f4", Value::Float(0.1)),
        ("f8", Value::Float(f64::MAX)),
        ("f8inf", Value::Float(f64::NEG_INFINITY)),
        (
            "num",
            Value::Decimal("123456789012345678901234567890.123456789".into()),
        ),
        ("tx", text("Zürich ✓ 🚀")),
        ("vc", text("naïve")),
        ("bp", text("ab   ")),
        ("ts", ts("2024-02-29T23:59:59.999999Z")),
        ("tstz", ts("2024-05-01T10:30:00.5Z")),
        ("d", Value::Date(-1)),
        ("dinf", text("infinity")),
        ("tm", text("12:34:56.789")),
        ("ttz", text("12:34:56+05:30")),
        ("iv", text("P1DT2H")),
        ("u", text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
        ("by", Value::Bytes(vec![0xDE, 0xAD, 0xBE, 0xEF])),
        ("inet", text("10.0.0.1/8")),
    ]
}

fn json_documents() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("js", serde_json::json!({"k": [1, "ü"]})),
        ("jb", serde_json::json!({"a": 2, "b": 1})),
        ("arr", serde_json::json!([1, null, 3])),
        ("tarr", serde_json::json!(["a,b", null])),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_every_type_arrives_as_documented_through_the_sandbox_and_the_webhook() {
    let table = format!("sluice_every_type_{}", std::process::id());
    psql(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} {}",
        EVERY_TYPE.replace("{table}", &table)
    ));
    let query = format!("SELECT * FROM {table} ORDER BY id");

    // 1. The plugin in its sandbox: each value exactly as the mapping says.
    let test = runtime();
    let plugin = Plugin::from_bytes(&test.runtime, "postgres", plugins::POSTGRES).unwrap();
    let mut instance = plugin
        .instantiate(&sandbox(&["postgres://127.0.0.1:5432"]))
        .await
        .unwrap();
    let reader = instance
        .read(&pg_config(), &ReadRequest::Query(query.clone()))
        .await
        .unwrap();
    let batch = instance.next_batch(&reader, 100).await.unwrap().unwrap();
    let column = |name: &str| batch.columns.iter().position(|c| c == name).unwrap();
    let first = &batch.rows[0];
    for (name, value) in expected_postgres_values() {
        assert_eq!(&first[column(name)], &value, "column {name}");
    }
    for name in ["f8nan", "num_nan"] {
        assert!(
            matches!(first[column(name)], Value::Float(f) if f.is_nan()),
            "column {name}: {:?}",
            first[column(name)]
        );
    }
    for (name, doc) in json_documents() {
        let Value::Json(text) = &first[column(name)] else {
            panic!("column {name}: {:?}", first[column(name)]);
        };
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(text).unwrap(),
            doc,
            "{name}"
        );
    }
    assert!(batch.rows[1][1..].iter().all(|v| *v == Value::Null));
    assert_eq!(batch.columns.len(), 28);

    // 2. Through a sync into the webhook: each value as its JSON rendering.
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    let yaml = format!(
        r#"
sources:
  pg: {{ plugin: postgres, config: {{ host: 127.0.0.1, port: 5432, user: postgres, database: test }}, grants: ["postgres://127.0.0.1:5432"] }}
destinations:
  hook: {{ plugin: webhook, config: {{ url: "{url}", max_retries: 0 }}, grants: ["{grant}"] }}
models:
  rows: {{ source: pg, query: "{query}", primary_key: id }}
syncs:
  rows: {{ model: rows, destination: hook, object: rows, mode: upsert, identifier: id }}
"#,
        url = rx.url,
        grant = rx.grant()
    );
    std::fs::write(dir.path().join("sluice.yaml"), yaml).unwrap();
    let report = run_sync(dir.path(), "rows", &Default::default()).await;
    assert_eq!(report.counts.ok, 2, "{:?}", report.error);
    let rows = rx.rows();
    let row = rows.iter().find(|r| r["id"] == 1).unwrap();
    let mut json = serde_json::json!({
        "id": 1, "b": true, "i2": -32768, "i4": -2147483648i64, "i8": i64::MIN,
        "f4": 0.1, "f8": f64::MAX, "f8nan": "NaN", "f8inf": "-Infinity", "num_nan": "NaN",
        "tx": "Zürich ✓ 🚀", "vc": "naïve", "bp": "ab   ",
        "ts": "2024-02-29T23:59:59.999999Z", "tstz": "2024-05-01T10:30:00.500000Z",
        "d": "1969-12-31", "dinf": "infinity", "tm": "12:34:56.789", "ttz": "12:34:56+05:30",
        "iv": "P1DT2H", "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "by": "deadbeef",
        "inet": "10.0.0.1/8",
    });
    for (name, doc) in json_documents() {
        json[name] = doc;
    }
    for (name, value) in json.as_object().unwrap() {
        assert_eq!(&row[name], value, "column {name}");
    }
    // The decimal's digits, exactly, in the body as sent (this receiver
    // parses numbers into f64).
    let bodies = rx.requests.lock().unwrap();
    assert!(
        bodies.iter().any(|r| String::from_utf8_lossy(&r.raw)
            .contains("\"num\":123456789012345678901234567890.123456789")),
        "the decimal lost digits"
    );
    let nulls = rows.iter().find(|r| r["id"] == 2).unwrap();
    assert_eq!(nulls.as_object().unwrap().len(), 28);
    assert!(nulls
        .as_object()
        .unwrap()
        .iter()
        .all(|(k, v)| k == "id" || v.is_null()));
    drop(bodies);
    psql(&format!("DROP TABLE {table}"));
}
