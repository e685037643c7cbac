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
