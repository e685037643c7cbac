//! `diff: warehouse` end to end against the real PostgreSQL (127.0.0.1:5432):
//! the postgres source keeps each sync's delivered snapshot in schema
//! `sluice` of the source database, diffs the model there in SQL and sends
//! only the changed rows out; the snapshot advances only with the rows the
//! destination acknowledged. And the content hash the SQL computes equals
//! the one computed in Rust over the values the source decodes, on every
//! type the source reads. Each test works in a database of its own.

use sluice_tests as common;

use common::*;
use sha2::{Digest, Sha256};
use sluice_engine::run::{RunOptions, RunReport};
use sluice_registry::builtin as plugins;
use sluice_runtime::instance::{DeliveredRow, DiffRequest};
use sluice_runtime::plugin::Plugin;
use sluice_runtime::values::canonical;
use sluice_runtime::Value;
use sluice_state::RunStatus;
use std::path::Path;
use std::process::Command;

/// Run `sql` in database `db`; its output lines, columns split by `|`.
fn sql(db: &str, sql: &str) -> Vec<String> {
    let output = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", db])
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-At", "-F", "|", "-c", sql])
        .output()
        .expect("psql runs");
    assert!(
        output.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `customers(id, email, ltv)` with `rows` rows: ltv = id.
fn customers(db: &PgDatabase, rows: u32) {
    sql(
        &db.name,
        &format!(
            "CREATE TABLE customers (id int PRIMARY KEY, email text, ltv numeric);
             INSERT INTO customers SELECT g, 'user' || g || '@example.com', g
             FROM generate_series(1, {rows}) g"
        ),
    );
}

/// A project reading `customers` with `diff: warehouse` (as `user`) into
/// `destination`.
fn project(dir: &Path, db: &PgDatabase, user: &str, destination: &str, extra: &str) {
    let yaml = format!(
        r#"
sources:
  pg:
    plugin: postgres
    config: {{ host: 127.0.0.1, port: 5432, user: {user}, database: {db} }}
    grants: ["postgres://127.0.0.1:5432"]
destinations:
  out: {destination}
models:
  customers:
    source: pg
    query: select id, email, ltv from customers
    primary_key: id
    diff: warehouse
syncs:
  customers:
    model: customers
    destination: out
    object: contacts
    mode: upsert
    identifier: id
    batch_size: 100
{extra}"#,
        db = db.name
    );
    std::fs::write(dir.join("sluice.yaml"), yaml).unwrap();
}

fn webhook(receiver: &Receiver) -> String {
    format!(
        r#"{{ plugin: webhook, config: {{ url: "{}" }}, grants: ["{}"] }}"#,
        receiver.url,
        receiver.grant()
    )
}

/// The ids the receiver got, in order.
fn received_ids(receiver: &Receiver) -> Vec<i64> {
    receiver
        .rows()
        .iter()
        .map(|r| r["id"].as_i64().expect("an id"))
        .collect()
}

/// The snapshot table's rows: `key|hex(hash)`, in key order.
fn snapshot(db: &PgDatabase) -> Vec<String> {
    sql(
        &db.name,
        "SELECT key || '|' || encode(hash, 'hex') FROM sluice.snapshot_customers ORDER BY key",
    )
}

async fn run(dir: &Path) -> RunReport {
    run_sync(dir, "customers", &RunOptions::default()).await
}

fn quick_retries() -> RunOptions {
    let mut options = RunOptions::default();
    options.retry.max_attempts = 2;
    options.retry.base_delay = std::time::Duration::from_millis(10);
    options.retry.max_delay = std::time::Duration::from_millis(20);
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_changed_rows_leave_the_database_and_reruns_send_nothing() {
    let db = PgDatabase::create("sluice_whdiff");
    customers(&db, 500);
    let receiver = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &db, "postgres", &webhook(&receiver), "");

    let plan = run_sync(
        dir.path(),
        "customers",
        &RunOptions {
            dry_run: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!((plan.diff, plan.counts.added), ("warehouse", 500));
    assert!(receiver.rows().is_empty(), "a plan sends nothing");

    let first = run(dir.path()).await;
    assert_eq!(first.status, RunStatus::Succeeded, "{:?}", first.error);
    assert_eq!(
        (first.diff, first.counts.added, first.counts.ok),
        ("warehouse", 500, 500)
    );
    assert_eq!(received_ids(&receiver).len(), 500);
    assert_eq!(
        snapshot(&db).len(),
        500,
        "every acknowledged row is recorded"
    );

    // Two rows change, one is added, one leaves the model.
    sql(
        &db.name,
        "UPDATE customers SET ltv = ltv + 0.5 WHERE id IN (7, 300);
         INSERT INTO customers VALUES (501, 'new@example.com', NULL);
         DELETE FROM customers WHERE id = 42",
    );
    receiver.requests.lock().unwrap().clear();
    let second = run(dir.path()).await;
    assert_eq!(second.status, RunStatus::Succeeded, "{:?}", second.error);
    let mut ids = received_ids(&receiver);
    ids.sort();
    assert_eq!(
        ids,
        vec![7, 300, 501],
        "only the changed rows left the database"
    );
    assert_eq!((second.counts.added, second.counts.changed), (1, 2));
    let row = receiver.rows().into_iter().find(|r| r["id"] == 7).unwrap();
    assert_eq!(row["ltv"].to_string(), "7.5");
    // A key that left the model stays recorded (upsert deletes nothing).
    assert_eq!(snapshot(&db).len(), 501);

    receiver.requests.lock().unwrap().clear();
    let third = run(dir.path()).await;
    assert_eq!(third.status, RunStatus::Succeeded, "{:?}", third.error);
    assert!(receiver.rows().is_empty(), "nothing changed, nothing sent");
    assert_eq!(third.counts.planned, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_leaves_the_snapshot_as_it_was_and_the_next_run_resends() {
    let db = PgDatabase::create("sluice_whdiff");
    customers(&db, 20);
    let receiver = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &db, "postgres", &webhook(&receiver), "");
    assert_eq!(run(dir.path()).await.status, RunStatus::Succeeded);
    let before = snapshot(&db);

    sql(
        &db.name,
        "UPDATE customers SET email = upper(email) WHERE id <= 3",
    );
    receiver.requests.lock().unwrap().clear();
    // The destination fails every attempt: nothing is acknowledged.
    receiver
        .script
        .lock()
        .unwrap()
        .extend(std::iter::repeat_n((500, None), 20));
    let failed = run_sync(dir.path(), "customers", &quick_retries()).await;
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(snapshot(&db), before, "nothing unacknowledged is recorded");

    receiver.script.lock().unwrap().clear();
    let again = run(dir.path()).await;
    assert_eq!(again.status, RunStatus::Succeeded, "{:?}", again.error);
    let mut ids = received_ids(&receiver);
    ids.sort();
    assert_eq!(
        ids,
        vec![1, 2, 3],
        "the next run sends what was not acknowledged"
    );
    assert_ne!(snapshot(&db), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_row_stays_out_of_the_snapshot_and_is_sent_again() {
    let db = PgDatabase::create("sluice_whdiff");
    customers(&db, 10);
    sql(&db.name, "UPDATE customers SET ltv = -1 WHERE id = 4");
    // The destination table refuses a negative ltv, row by row.
    sql(
        &db.name,
        "CREATE TABLE contacts (id int PRIMARY KEY, email text, ltv numeric CHECK (ltv >= 0))",
    );
    let destination = format!(
        r#"{{ plugin: postgres-destination, config: {{ host: 127.0.0.1, port: 5432, user: postgres, database: {} }}, grants: ["postgres://127.0.0.1:5432"] }}"#,
        db.name
    );
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &db, "postgres", &destination, "");
    let yaml = std::fs::read_to_string(dir.path().join("sluice.yaml"))
        .unwrap()
        .replace("object: contacts", "object: public.contacts");
    std::fs::write(dir.path().join("sluice.yaml"), yaml).unwrap();

    let first = run(dir.path()).await;
    assert_eq!(first.status, RunStatus::Succeeded, "{:?}", first.error);
    assert_eq!((first.counts.ok, first.counts.rejected), (9, 1));
    let keys: Vec<String> = snapshot(&db)
        .iter()
        .map(|r| r.split('|').next().unwrap().to_owned())
        .collect();
    assert_eq!(keys.len(), 9);
    assert!(
        !keys.contains(&"i4;".to_owned()),
        "the rejected row is not recorded: {keys:?}"
    );

    let second = run(dir.path()).await;
    assert_eq!(
        (
            second.counts.added,
            second.counts.rejected,
            second.counts.ok
        ),
        (1, 1, 0),
        "only the rejected row comes back"
    );
    sql(&db.name, "UPDATE customers SET ltv = 4 WHERE id = 4");
    let third = run(dir.path()).await;
    assert_eq!((third.counts.added, third.counts.ok), (1, 1));
    assert_eq!(snapshot(&db).len(), 10);
    assert_eq!(
        sql(&db.name, "SELECT count(*) FROM public.contacts"),
        vec!["10"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_privileges_and_unsupported_setups_are_refused_by_name() {
    let db = PgDatabase::create("sluice_whdiff");
    customers(&db, 3);
    // A user that may read the model but not create the schema.
    psql_on("postgres", "CREATE ROLE sluice_whdiff_reader LOGIN");
    sql(
        &db.name,
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC; \
         GRANT SELECT ON customers TO sluice_whdiff_reader",
    );
    let receiver = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    project(
        dir.path(),
        &db,
        "sluice_whdiff_reader",
        &webhook(&receiver),
        "",
    );
    let refused = run(dir.path()).await;
    assert_eq!(refused.status, RunStatus::Failed);
    let error = refused.error.unwrap();
    for part in [
        "sync `customers`",
        "schema `sluice`",
        "CREATE privilege on database",
        "GRANT CREATE ON DATABASE",
    ] {
        assert!(error.contains(part), "{part} in: {error}");
    }
    assert!(
        receiver.rows().is_empty(),
        "refused before anything is sent"
    );

    // The schema exists, the table cannot be created in it.
    sql(
        &db.name,
        "CREATE SCHEMA sluice; GRANT USAGE ON SCHEMA sluice TO sluice_whdiff_reader",
    );
    let error = run(dir.path()).await.error.unwrap();
    assert!(
        error.contains("GRANT USAGE, CREATE ON SCHEMA sluice"),
        "names the privilege: {error}"
    );

    // A source that cannot diff in its warehouse, and mirror mode.
    let files = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(files.path().join("data")).unwrap();
    std::fs::write(files.path().join("data/c.csv"), "id\n1\n").unwrap();
    std::fs::write(
        files.path().join("sluice.yaml"),
        format!(
            r#"
sources:
  files: {{ plugin: files, config: {{ path: /data }}, grants: ["dir:data:/data"] }}
destinations:
  out: {}
models:
  c: {{ source: files, object: c.csv, primary_key: id, diff: warehouse }}
syncs:
  c: {{ model: c, destination: out, object: contacts, mode: upsert, identifier: id }}
"#,
            webhook(&receiver)
        ),
    )
    .unwrap();
    let error = run_sync(files.path(), "c", &RunOptions::default())
        .await
        .error
        .unwrap();
    assert!(
        error.contains("does not export warehouse-diff-api") && error.contains("`diff: host`"),
        "{error}"
    );
    // `sluice validate` says the same before any run.
    let loaded = Loaded::open(files.path());
    let sync = loaded.project.sync("c").unwrap();
    let why =
        sluice_engine::run::warehouse_diff_refusal(&loaded.test.runtime, &loaded.project, sync)
            .await
            .unwrap()
            .expect("refused");
    assert!(why.contains("does not export warehouse-diff-api"), "{why}");
    sql(&db.name, "DROP SCHEMA sluice CASCADE");
    project(dir.path(), &db, "postgres", &webhook(&receiver), "");
    let yaml = std::fs::read_to_string(dir.path().join("sluice.yaml"))
        .unwrap()
        .replace("mode: upsert", "mode: mirror");
    std::fs::write(dir.path().join("sluice.yaml"), yaml).unwrap();
    let error = run(dir.path()).await.error.unwrap();
    assert!(
        error.contains("mode `mirror`") && error.contains("`diff: host`"),
        "{error}"
    );
}

/// Every type the postgres source reads, with its edge values: a row per
/// case, NULLs in the last row.
const TYPES_TABLE: &str = r#"
CREATE TYPE mood AS ENUM ('sad', 'ok');
CREATE TABLE every_type (
    id int PRIMARY KEY,
    b bool, i2 int2, i4 int4, i8 int8, o oid,
    f4 float4, f8 float8, n numeric,
    t text, vc varchar(10), bp char(5), nm name,
    by bytea, d date, ts timestamp, tz timestamptz,
    j json, jb jsonb, u uuid,
    tm time, iv interval, e mood
);
INSERT INTO every_type VALUES
 (1, true, -32768, -2147483648, -9223372036854775808, 4294967295,
  0.1, 0.1, -12.50, 'héllo ✓ 😀', '', 'ab', 'nm',
  '\x00ff10', '1970-01-01', '2024-05-01 12:30:00.123456', '2024-05-01 12:30:00.123456+02',
  '{"b": 1,  "a": [1, 2]}', '{"b": 1,  "a": [1, 2]}', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11',
  '23:59:59.999999', '1 year 2 mons 3 days 04:05:06.7', 'sad'),
 (2, false, 32767, 2147483647, 9223372036854775807, 0,
  'NaN', 'NaN', 'NaN', '', 'x;y:z', '', '',
  '', '0001-01-01 BC', '1900-02-28 23:59:59.999999', '1969-12-31 23:59:59.999999+00',
  'null', '[]', '00000000-0000-0000-0000-000000000000',
  '00:00', '-1 day', 'ok'),
 (3, true, 0, 0, 0, 1,
  'Infinity', '-Infinity', 'Infinity', 'it''s "quoted" \ backslash', 'a', 'a    ', 'x',
  '\x', 'infinity', 'infinity', '-infinity',
  '"text"', '"text"', 'ffffffff-ffff-ffff-ffff-ffffffffffff',
  '12:00', '0', 'sad'),
 (4, false, -1, -1, -1, 2,
  '-0', '-0', '-Infinity', E'tab\there\nnewline', 'ü', 'ü', 'n',
  '\x5c27', '-infinity', '-infinity', 'infinity',
  '{"k": "v\"q"}', '{"k": "v\"q"}', '12345678-1234-5678-1234-567812345678',
  '01:02:03', '1 second', 'ok'),
 (5, true, 1, 1, 1, 3,
  '3.4028235e38', '1.7976931348623157e308', '0.000000000000000000001', 'x', 'y', 'z', 'w',
  '\x01', '2262-04-11', '0001-01-01 00:00:00', '200000-12-31 23:59:59.999999+00',
  '1.5e3', '1.5e3', '00000000-0000-0000-0000-000000000001',
  '00:00:00.000001', '-178000000 years', 'sad'),
 (6, true, 2, 2, 2, 4,
  '1e-45', '5e-324', '-0.0', 't', 'v', 'b', 'm',
  '\x00', '2000-02-29', '2000-02-29 00:00:00', '2000-02-29 00:00:00+14',
  '{}', '{}', '11111111-1111-1111-1111-111111111111',
  '24:00:00', '00:00:00', 'ok'),
 (7, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
"#;

const EVERY_COLUMN: &[&str] = &[
    "id", "b", "i2", "i4", "i8", "o", "f4", "f8", "n", "t", "vc", "bp", "nm", "by", "d", "ts",
    "tz", "j", "jb", "u", "tm", "iv", "e",
];

/// The content hash in Rust: the first 16 bytes of SHA-256 over the
/// canonical form (`docs/warehouse-diff.md`).
fn rust_hash(seed: &str, columns: &[String], row: &[Value]) -> Vec<u8> {
    let views: Vec<_> = row.iter().map(Value::view).collect();
    let text = canonical::row(seed, columns, &views);
    Sha256::digest(text.as_bytes())[..16].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sql_hash_equals_the_rust_hash_on_every_type() {
    let db = PgDatabase::create("sluice_whhash");
    sql(&db.name, TYPES_TABLE);
    let test = runtime();
    let plugin = Plugin::from_bytes(&test.runtime, "postgres", plugins::POSTGRES).unwrap();
    assert!(plugin.can_diff_in_warehouse());
    assert_eq!(plugin.world(), "warehouse-diff-source");
    let mut source = plugin
        .instantiate(&sandbox(&["postgres://127.0.0.1:5432"]))
        .await
        .unwrap();
    let config = format!(
        r#"{{"host":"127.0.0.1","port":5432,"user":"postgres","database":"{}"}}"#,
        db.name
    );
    let seed = "00c0ffee00c0ffee".to_owned();
    let request = |key: &[&str], dry_run: bool| DiffRequest {
        sync: "types".into(),
        query: format!(
            "SELECT {} FROM every_type ORDER BY id",
            EVERY_COLUMN.join(", ")
        ),
        primary_key: key.iter().map(|s| s.to_string()).collect(),
        seed: seed.clone(),
        full_resync: false,
        dry_run,
    };

    // A plan compares with nothing: every row, each with its SQL hash.
    let reader = source.diff(&config, &request(&["id"], true)).await.unwrap();
    let mut rows = Vec::new();
    let mut columns = Vec::new();
    while let Some(batch) = source.next_diff_batch(&reader, 100).await.unwrap() {
        columns = batch.columns.clone();
        rows.extend(batch.rows);
    }
    assert_eq!(rows.len(), 7);
    let n = columns.len();
    assert_eq!(&columns[n - 2..], ["__sluice_hash", "__sluice_previous"]);
    let model_columns = columns[..n - 2].to_vec();
    for row in &rows {
        let Value::Bytes(sql_hash) = &row[n - 2] else {
            panic!("a hash of bytes: {:?}", row[n - 2])
        };
        let values = &row[..n - 2];
        assert_eq!(
            sql_hash,
            &rust_hash(&seed, &model_columns, values),
            "row {:?}: SQL and Rust hash differently; canonical form in Rust: {}",
            values[0],
            canonical::row(
                &seed,
                &model_columns,
                &values.iter().map(Value::view).collect::<Vec<_>>()
            )
        );
        assert_eq!(row[n - 1], Value::Null, "no snapshot yet: every key is new");
    }
    // Every column alone changes the hash (each is hashed at all).
    for c in 1..n - 2 {
        let mut changed = rows[0][..n - 2].to_vec();
        changed[c] = rows[6][c].clone();
        assert_ne!(
            rust_hash(&seed, &model_columns, &changed),
            rust_hash(&seed, &model_columns, &rows[0][..n - 2]),
            "column {}",
            model_columns[c]
        );
    }

    // Keys: every column of the rows without NULLs is part of the key.
    // Recorded through `advance` (the key's canonical form computed in
    // Rust), a diff finds every one of them unchanged (computed in SQL).
    let key: Vec<&str> = EVERY_COLUMN.to_vec();
    let delivered: Vec<DeliveredRow> = rows[..6]
        .iter()
        .map(|row| DeliveredRow {
            key: row[..n - 2].to_vec(),
            hash: match &row[n - 2] {
                Value::Bytes(b) => b.clone(),
                other => panic!("{other:?}"),
            },
            id: Some(vec![1, 2, 3]),
        })
        .collect();
    let reader = source.diff(&config, &request(&key, false)).await.unwrap();
    while source
        .next_diff_batch(&reader, 100)
        .await
        .unwrap()
        .is_some()
    {}
    source.advance(&config, "types", &delivered).await.unwrap();
    let reader = source.diff(&config, &request(&key, false)).await.unwrap();
    let mut left = Vec::new();
    while let Some(batch) = source.next_diff_batch(&reader, 100).await.unwrap() {
        left.extend(batch.rows);
    }
    assert_eq!(left.len(), 1, "only the row of NULLs is new: {left:?}");
    assert_eq!(left[0][0], Value::Integer(7));
    assert_eq!(
        sql(
            &db.name,
            "SELECT count(*), count(dest_id) FROM sluice.snapshot_types"
        ),
        vec!["6|6"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_or_null_key_among_the_changed_rows_is_invalid_and_not_sent() {
    let db = PgDatabase::create("sluice_whdiff");
    customers(&db, 5);
    let receiver = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &db, "postgres", &webhook(&receiver), "");
    let yaml = std::fs::read_to_string(dir.path().join("sluice.yaml"))
        .unwrap()
        .replace(
            "query: select id, email, ltv from customers",
            "query: select id, email, ltv from customers union all select 2, 'other', 0 \
             union all select NULL, 'nobody', 0",
        );
    std::fs::write(dir.path().join("sluice.yaml"), yaml).unwrap();
    let report = run(dir.path()).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    assert_eq!((report.counts.sent, report.counts.invalid), (5, 2));
    let mut ids = received_ids(&receiver);
    ids.sort();
    assert_eq!(ids, vec![1, 2, 3, 4, 5], "each key sent once");
}
