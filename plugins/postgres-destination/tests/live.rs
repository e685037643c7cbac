//! Tests against the real PostgreSQL on 127.0.0.1:5432 (user `postgres`,
//! trust auth). Every test works in its own database, dropped at the end
//! even when an assertion fails.

use postgres::config::Config;
use postgres::conn::Connection;
use postgres_destination::PostgresDestination;
use sluice_sdk::{
    Batch, Destination, FieldType, PluginError, RowResult, Value, WriteMode, WriteTarget, Writer,
};
use std::sync::atomic::{AtomicU32, Ordering};

fn config_for(database: &str) -> String {
    serde_json::json!({"host": "127.0.0.1", "user": "postgres", "database": database}).to_string()
}

fn connect(database: &str) -> Connection {
    Connection::connect(&Config::parse(&config_for(database)).unwrap()).unwrap()
}

/// A scratch database, dropped at the end of the test.
struct Db(String);

impl Db {
    fn new() -> Db {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "sluice_pgdest_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = connect("postgres");
        conn.simple_query(&format!("CREATE DATABASE {name}"))
            .unwrap();
        conn.terminate();
        Db(name)
    }

    fn run(&self, sql: &str) {
        let mut conn = connect(&self.0);
        conn.simple_query(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        conn.terminate();
    }

    /// The rows of `sql`, NULL as `None`.
    fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let mut conn = connect(&self.0);
        let rows = conn
            .simple_query(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        conn.terminate();
        rows
    }

    fn config(&self) -> String {
        config_for(&self.0)
    }

    fn writer(&self, object: &str, mode: WriteMode, identifier: &str) -> impl Writer {
        PostgresDestination::open(&self.config(), target(object, mode, identifier))
            .unwrap_or_else(|e| panic!("open {object}: {e:?}"))
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let mut conn = connect("postgres");
        let _ = conn.simple_query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0));
        conn.terminate();
    }
}

fn target(object: &str, mode: WriteMode, identifier: &str) -> WriteTarget {
    WriteTarget {
        object: object.into(),
        mode,
        identifier: identifier.into(),
    }
}

fn batch(columns: &[&str], rows: Vec<Vec<Value>>) -> Batch {
    Batch {
        columns: columns.iter().map(|c| c.to_string()).collect(),
        rows,
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

/// A table's rows as text, in key order.
fn table(db: &Db, sql: &str) -> Vec<Vec<Option<String>>> {
    db.rows(sql)
}

fn row(values: &[Option<&str>]) -> Vec<Option<String>> {
    values.iter().map(|v| v.map(str::to_owned)).collect()
}

const CUSTOMERS: &str = "CREATE TABLE customers (
    id int PRIMARY KEY, email text NOT NULL UNIQUE, ltv numeric(10,2), born date,
    seen timestamptz, tags jsonb, active boolean, photo bytea, score float8,
    CHECK (ltv >= 0))";

const SELECT_CUSTOMERS: &str = "SELECT id, email, ltv, born, seen AT TIME ZONE 'UTC', tags, active, photo, score FROM customers ORDER BY id";

fn customer(id: i64, email: &str, ltv: &str) -> Vec<Value> {
    vec![
        Value::Integer(id),
        text(email),
        Value::Decimal(ltv.into()),
        Value::Date(19_782),
        Value::Timestamp(1_714_566_600_000_001),
        Value::Json(r#"{"vip": true}"#.into()),
        Value::Boolean(true),
        Value::Bytes(vec![0xde, 0xad]),
        Value::Float(0.5),
    ]
}

const COLUMNS: [&str; 9] = [
    "id", "email", "ltv", "born", "seen", "tags", "active", "photo", "score",
];

fn expected(id: &str, email: &str, ltv: &str) -> Vec<Option<String>> {
    row(&[
        Some(id),
        Some(email),
        Some(ltv),
        Some("2024-02-29"),
        Some("2024-05-01 12:30:00.000001"),
        Some(r#"{"vip": true}"#),
        Some("t"),
        Some("\\xdead"),
        Some("0.5"),
    ])
}

#[test]
fn every_mode_writes_exactly_what_it_says_and_reports_each_row() {
    let db = Db::new();
    db.run(CUSTOMERS);
    let mut insert = db.writer("customers", WriteMode::Insert, "id");
    let results = insert
        .write(batch(
            &COLUMNS,
            vec![customer(1, "a@x.io", "1.50"), customer(2, "b@x.io", "2")],
        ))
        .unwrap();
    assert_eq!(results, [RowResult::Created, RowResult::Created]);

    let mut upsert = db.writer("public.customers", WriteMode::Upsert, "id");
    let results = upsert
        .write(batch(
            &COLUMNS,
            vec![customer(2, "b2@x.io", "20"), customer(3, "c@x.io", "3")],
        ))
        .unwrap();
    assert_eq!(results, [RowResult::Updated, RowResult::Created]);

    // Update touches only the columns it carries; a missing row is refused.
    let mut update = db.writer("customers", WriteMode::Update, "id");
    let results = update
        .write(batch(
            &["id", "ltv", "tags"],
            vec![
                vec![
                    Value::Integer(3),
                    Value::Decimal("30.25".into()),
                    Value::Null,
                ],
                vec![Value::Integer(9), Value::Decimal("9".into()), Value::Null],
            ],
        ))
        .unwrap();
    assert_eq!(
        results,
        [
            RowResult::Updated,
            RowResult::Rejected("no row of `public.customers` has `id` = 9".into())
        ]
    );

    // Deleting a row that is gone already is no failure.
    let mut delete = db.writer("customers", WriteMode::Delete, "id");
    let results = delete
        .write(batch(
            &["id"],
            vec![vec![Value::Integer(1)], vec![Value::Integer(42)]],
        ))
        .unwrap();
    assert_eq!(results, [RowResult::Deleted, RowResult::Deleted]);

    let mut three = expected("3", "c@x.io", "30.25");
    three[5] = None;
    assert_eq!(
        table(&db, SELECT_CUSTOMERS),
        [expected("2", "b2@x.io", "20.00"), three]
    );

    // Append: every row is a new one, with no identifier at all.
    db.run("CREATE TABLE events (at timestamptz DEFAULT now(), kind text, n int)");
    let mut append = db.writer("events", WriteMode::Append, "");
    let rows = vec![vec![text("x"), Value::Integer(1)]; 3];
    assert_eq!(
        append.write(batch(&["kind", "n"], rows)).unwrap(),
        vec![RowResult::Created; 3]
    );
    assert_eq!(
        db.rows("SELECT count(*), sum(n) FROM events"),
        [row(&[Some("3"), Some("3")])]
    );
}

#[test]
fn a_row_the_database_refuses_is_rejected_alone_with_its_message() {
    let db = Db::new();
    db.run(CUSTOMERS);
    db.run("INSERT INTO customers (id, email) VALUES (1, 'taken@x.io')");
    let mut upsert = db.writer("customers", WriteMode::Upsert, "id");
    let results = upsert
        .write(batch(
            &["id", "email", "ltv"],
            vec![
                vec![
                    Value::Integer(10),
                    text("ok1@x.io"),
                    Value::Decimal("1".into()),
                ],
                vec![
                    Value::Integer(11),
                    text("bad@x.io"),
                    Value::Decimal("-1".into()),
                ],
                vec![
                    Value::Integer(12),
                    text("ok2@x.io"),
                    Value::Decimal("2".into()),
                ],
                vec![
                    Value::Integer(13),
                    text("taken@x.io"),
                    Value::Decimal("3".into()),
                ],
                vec![Value::Integer(14), text("ok3@x.io"), text("not a number")],
                vec![Value::Integer(15), text("ok4@x.io"), Value::Null],
            ],
        ))
        .unwrap();
    let rejected = |i: usize| match &results[i] {
        RowResult::Rejected(m) => m.clone(),
        other => panic!("row {i}: {other:?}"),
    };
    assert_eq!(results[0], RowResult::Created);
    assert!(
        rejected(1).starts_with(
            "ERROR 23514: new row for relation \"customers\" violates check constraint"
        ),
        "{}",
        rejected(1)
    );
    assert_eq!(results[2], RowResult::Created);
    assert!(rejected(3).contains("ERROR 23505: duplicate key value violates unique constraint \"customers_email_key\"; DETAIL: Key (email)=(taken@x.io) already exists."), "{}", rejected(3));
    assert!(
        rejected(4)
            .contains("ERROR 22P02: invalid input syntax for type numeric: \"not a number\""),
        "{}",
        rejected(4)
    );
    assert_eq!(results[5], RowResult::Created);
    assert_eq!(
        db.rows("SELECT id FROM customers ORDER BY id"),
        [
            row(&[Some("1")]),
            row(&[Some("10")]),
            row(&[Some("12")]),
            row(&[Some("15")])
        ]
    );

    // Insert mode: an existing key is the row's failure, not the batch's.
    let mut insert = db.writer("customers", WriteMode::Insert, "id");
    let results = insert
        .write(batch(
            &["id", "email"],
            vec![
                vec![Value::Integer(10), text("again@x.io")],
                vec![Value::Integer(20), text("new@x.io")],
            ],
        ))
        .unwrap();
    assert!(
        matches!(&results[0], RowResult::Rejected(m) if m.contains("Key (id)=(10) already exists")),
        "{results:?}"
    );
    assert_eq!(results[1], RowResult::Created);

    // A row repeated within an upsert batch is written twice, in order.
    let results = upsert
        .write(batch(
            &["id", "email"],
            vec![
                vec![Value::Integer(30), text("first@x.io")],
                vec![Value::Integer(30), text("second@x.io")],
            ],
        ))
        .unwrap();
    assert_eq!(results, [RowResult::Created, RowResult::Updated]);
    assert_eq!(
        db.rows("SELECT email FROM customers WHERE id = 30"),
        [row(&[Some("second@x.io")])]
    );
}

#[test]
fn a_statement_error_fails_the_call_and_writes_nothing() {
    let db = Db::new();
    db.run("CREATE TABLE t (id int PRIMARY KEY, n int)");
    let mut writer = db.writer("t", WriteMode::Upsert, "id");
    db.run("ALTER TABLE t RENAME COLUMN n TO m");
    let err = writer
        .write(batch(
            &["id", "n"],
            vec![vec![Value::Integer(1), Value::Integer(1)]],
        ))
        .unwrap_err();
    assert!(
        matches!(&err, PluginError::Permanent(m) if m.contains("ERROR 42703") && m.contains("upsert of 1 row(s) into `public.t`")),
        "{err:?}"
    );
    // The writer reconnects and goes on after a failed call.
    let err = writer
        .write(batch(
            &["id", "zz"],
            vec![vec![Value::Integer(1), Value::Integer(1)]],
        ))
        .unwrap_err();
    assert!(
        matches!(&err, PluginError::Permanent(m) if m.contains("`zz` is not a writable column of `public.t`")),
        "{err:?}"
    );
    assert_eq!(
        writer
            .write(batch(&["id"], vec![vec![Value::Integer(2)]]))
            .unwrap(),
        [RowResult::Created]
    );
    assert_eq!(db.rows("SELECT id FROM t"), [row(&[Some("2")])]);
}

#[test]
fn discover_lists_writable_tables_with_types_keys_and_modes() {
    let db = Db::new();
    db.run(
        "CREATE TABLE keyed (id bigint PRIMARY KEY, code text UNIQUE, name varchar(20) NOT NULL,
            created timestamptz NOT NULL DEFAULT now(), total numeric,
            doubled int GENERATED ALWAYS AS (id * 2) STORED, a int, b int, UNIQUE (a, b));
         CREATE TABLE log (line text);
         CREATE VIEW keyed_view AS SELECT * FROM keyed;",
    );
    let objects = PostgresDestination::discover(&db.config()).unwrap();
    let names: Vec<&str> = objects.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["public.keyed", "public.log"]);
    let keyed = &objects[0];
    let fields: Vec<(&str, FieldType, bool, bool, bool)> = keyed
        .fields
        .iter()
        .map(|f| {
            (
                f.name.as_str(),
                f.type_,
                f.nullable,
                f.required,
                f.identifier,
            )
        })
        .collect();
    assert_eq!(
        fields,
        [
            ("id", FieldType::Integer, false, true, true),
            ("code", FieldType::Text, true, false, true),
            ("name", FieldType::Text, false, true, false),
            ("created", FieldType::Timestamp, false, false, false),
            ("total", FieldType::Decimal, true, false, false),
            ("a", FieldType::Integer, true, false, false),
            ("b", FieldType::Integer, true, false, false),
        ]
    );
    assert_eq!(
        keyed.modes,
        [
            WriteMode::Upsert,
            WriteMode::Update,
            WriteMode::Insert,
            WriteMode::Append,
            WriteMode::Delete
        ]
    );
    assert_eq!(objects[1].modes, [WriteMode::Insert, WriteMode::Append]);
}

#[test]
fn open_refuses_what_the_table_cannot_take() {
    let db = Db::new();
    db.run("CREATE TABLE log (line text, n int); CREATE TABLE k (id int PRIMARY KEY, n int)");
    let err = |object: &str, mode, identifier: &str| match PostgresDestination::open(
        &db.config(),
        target(object, mode, identifier),
    ) {
        Err(PluginError::Permanent(m)) => m,
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("{object} opened"),
    };
    assert!(
        err("nope", WriteMode::Insert, "").contains("relation \"nope\" does not exist"),
        "{}",
        err("nope", WriteMode::Insert, "")
    );
    assert!(err("log", WriteMode::Upsert, "line")
        .contains("`public.log` does not take upsert writes (it takes: insert, append)"));
    assert!(
        err("k", WriteMode::Update, "n").contains("column `n` of `public.k` cannot identify rows")
    );
    assert!(
        err("k", WriteMode::Delete, "zz").contains("identifier `zz` is not a column of `public.k`")
    );
}

#[test]
fn large_batches_go_in_several_statements_of_one_transaction() {
    let db = Db::new();
    db.run("CREATE TABLE wide (id int PRIMARY KEY, a text, b text, c text)");
    let mut upsert = db.writer("wide", WriteMode::Upsert, "id");
    // 4 parameters a row: 10,000 rows need two statements.
    let rows: Vec<Vec<Value>> = (0..10_000)
        .map(|i| vec![Value::Integer(i), text("a"), text("b"), text("c")])
        .collect();
    let results = upsert.write(batch(&["id", "a", "b", "c"], rows)).unwrap();
    assert_eq!(results.len(), 10_000);
    assert!(results.iter().all(|r| *r == RowResult::Created));
    assert_eq!(
        db.rows("SELECT count(*) FROM wide"),
        [row(&[Some("10000")])]
    );
}
