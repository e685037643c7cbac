//! Tests against the real MariaDB on 127.0.0.1:3306 (user `root`, no
//! password). Every test works in its own database, dropped at the end
//! even when an assertion fails.

use mysql::config::Config;
use mysql::conn::Connection;
use mysql_destination::MySqlDestination;
use sluice_sdk::{
    Batch, Destination, FieldType, PluginError, RowResult, Value, WriteMode, WriteTarget, Writer,
};
use std::sync::atomic::{AtomicU32, Ordering};

fn config_for(database: &str) -> String {
    serde_json::json!({"host": "127.0.0.1", "user": "root", "database": database}).to_string()
}

fn connect(database: &str) -> Connection {
    let mut conn = Connection::connect(&Config::parse(&config_for(database)).unwrap()).unwrap();
    conn.execute("SET NAMES utf8mb4").unwrap();
    conn
}

/// A scratch database, dropped at the end of the test.
struct Db(String);

impl Db {
    fn new() -> Db {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "sluice_mydest_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = connect("mysql");
        conn.execute(&format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
            .unwrap();
        conn.terminate();
        Db(name)
    }

    fn run(&self, statements: &[&str]) {
        let mut conn = connect(&self.0);
        for sql in statements {
            conn.execute(sql).unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        }
        conn.terminate();
    }

    /// The rows of `sql`, NULL as `None`.
    fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let mut conn = connect(&self.0);
        conn.execute("SET time_zone = '+00:00'").unwrap();
        let rows = conn
            .query_rows(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        conn.terminate();
        rows
    }

    fn config(&self) -> String {
        config_for(&self.0)
    }

    fn writer(&self, object: &str, mode: WriteMode, identifier: &str) -> impl Writer {
        MySqlDestination::open(&self.config(), target(object, mode, identifier))
            .unwrap_or_else(|e| panic!("open {object}: {e:?}"))
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let mut conn = connect("mysql");
        let _ = conn.execute(&format!("DROP DATABASE IF EXISTS `{}`", self.0));
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

fn row(values: &[Option<&str>]) -> Vec<Option<String>> {
    values.iter().map(|v| v.map(str::to_owned)).collect()
}

const CUSTOMERS: &str = "CREATE TABLE customers (
    id INT PRIMARY KEY, email VARCHAR(100) NOT NULL UNIQUE, ltv DECIMAL(10,2), born DATE,
    seen DATETIME(6), stamp TIMESTAMP(6) NULL, tags JSON, active BOOLEAN, photo VARBINARY(10),
    score DOUBLE, CHECK (ltv >= 0))";

const SELECT_CUSTOMERS: &str = "SELECT id, email, ltv, born, seen, stamp, tags, active, HEX(photo), score FROM customers ORDER BY id";

const COLUMNS: [&str; 10] = [
    "id", "email", "ltv", "born", "seen", "stamp", "tags", "active", "photo", "score",
];

fn customer(id: i64, email: &str, ltv: &str) -> Vec<Value> {
    vec![
        Value::Integer(id),
        text(email),
        Value::Decimal(ltv.into()),
        Value::Date(19_782),
        Value::Timestamp(1_714_566_600_000_001),
        Value::Timestamp(1_714_566_600_000_001),
        Value::Json(r#"{"vip": "it's"}"#.into()),
        Value::Boolean(true),
        Value::Bytes(vec![0xde, 0xad]),
        Value::Float(0.5),
    ]
}

fn expected(id: &str, email: &str, ltv: &str) -> Vec<Option<String>> {
    row(&[
        Some(id),
        Some(email),
        Some(ltv),
        Some("2024-02-29"),
        Some("2024-05-01 12:30:00.000001"),
        Some("2024-05-01 12:30:00.000001"),
        Some(r#"{"vip": "it's"}"#),
        Some("1"),
        Some("DEAD"),
        Some("0.5"),
    ])
}

#[test]
fn every_mode_writes_exactly_what_it_says_and_reports_each_row() {
    let db = Db::new();
    db.run(&[CUSTOMERS]);
    let mut insert = db.writer("customers", WriteMode::Insert, "id");
    let results = insert
        .write(batch(
            &COLUMNS,
            vec![customer(1, "a@x.io", "1.50"), customer(2, "b@x.io", "2")],
        ))
        .unwrap();
    assert_eq!(results, [RowResult::Created, RowResult::Created]);

    let mut upsert = db.writer("customers", WriteMode::Upsert, "id");
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
            RowResult::Rejected("no row of `customers` has `id` = 9".into())
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
    three[6] = None;
    assert_eq!(
        db.rows(SELECT_CUSTOMERS),
        [expected("2", "b2@x.io", "20.00"), three]
    );

    // Append: every row is a new one, with no identifier at all.
    db.run(&["CREATE TABLE events (kind TEXT, n INT)"]);
    let mut append = db.writer("events", WriteMode::Append, "");
    let rows = vec![vec![text("x"), Value::Integer(1)]; 3];
    assert_eq!(
        append.write(batch(&["kind", "n"], rows)).unwrap(),
        vec![RowResult::Created; 3]
    );
    assert_eq!(
        db.rows("SELECT COUNT(*), SUM(n) FROM events"),
        [row(&[Some("3"), Some("3")])]
    );
}

#[test]
fn a_row_the_database_refuses_is_rejected_alone_with_its_message() {
    let db = Db::new();
    db.run(&[
        CUSTOMERS,
        "INSERT INTO customers (id, email) VALUES (1, 'taken@x.io')",
    ]);
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
                vec![Value::Integer(13), text("ok3@x.io"), text("not a number")],
                vec![Value::Integer(14), text("ok4@x.io"), Value::Float(f64::NAN)],
                vec![Value::Integer(15), text("ok5@x.io"), Value::Null],
            ],
        ))
        .unwrap();
    let rejected = |i: usize| match &results[i] {
        RowResult::Rejected(m) => m.clone(),
        other => panic!("row {i}: {other:?}"),
    };
    assert_eq!(results[0], RowResult::Created);
    assert!(
        rejected(1).starts_with("ERROR 4025 (23000): CONSTRAINT `CONSTRAINT_1` failed"),
        "{}",
        rejected(1)
    );
    assert_eq!(results[2], RowResult::Created);
    assert!(
        rejected(3)
            .starts_with("ERROR 1366 (22007): Incorrect decimal value: 'not a number' for column"),
        "{}",
        rejected(3)
    );
    assert!(rejected(4).contains("MySQL has no NaN"), "{}", rejected(4));
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
    assert_eq!(
        results[0],
        RowResult::Rejected("ERROR 1062 (23000): Duplicate entry '10' for key 'PRIMARY'".into())
    );
    assert_eq!(results[1], RowResult::Created);
}

#[test]
fn text_identifiers_match_in_the_columns_collation() {
    let db = Db::new();
    db.run(&[
        "CREATE TABLE accounts (code VARCHAR(20) COLLATE utf8mb4_unicode_ci PRIMARY KEY, name TEXT)",
        "INSERT INTO accounts VALUES ('ABC', 'old')",
    ]);
    // The connection's collation differs from the column's: comparing
    // them unconverted would fail with "Illegal mix of collations".
    let mut update = db.writer("accounts", WriteMode::Update, "code");
    let results = update
        .write(batch(
            &["code", "name"],
            vec![vec![text("abc"), text("new")], vec![text("zz"), text("x")]],
        ))
        .unwrap();
    assert_eq!(
        results,
        [
            RowResult::Updated,
            RowResult::Rejected("no row of `accounts` has `code` = zz".into())
        ]
    );
    let mut upsert = db.writer("accounts", WriteMode::Upsert, "code");
    let results = upsert
        .write(batch(
            &["code", "name"],
            vec![vec![text("Abc"), text("newer")]],
        ))
        .unwrap();
    assert_eq!(results, [RowResult::Updated]);
    assert_eq!(
        db.rows("SELECT code, name FROM accounts"),
        [row(&[Some("ABC"), Some("newer")])]
    );
}

#[test]
fn a_statement_error_fails_the_call_and_the_writer_goes_on() {
    let db = Db::new();
    db.run(&["CREATE TABLE t (id INT PRIMARY KEY, n INT)"]);
    let mut writer = db.writer("t", WriteMode::Upsert, "id");
    db.run(&["ALTER TABLE t RENAME COLUMN n TO m"]);
    let err = writer
        .write(batch(
            &["id", "n"],
            vec![vec![Value::Integer(1), Value::Integer(1)]],
        ))
        .unwrap_err();
    assert!(
        matches!(&err, PluginError::Permanent(m) if m.contains("ERROR 1054") && m.contains("upsert of 1 row(s) into `t`")),
        "{err:?}"
    );
    let err = writer
        .write(batch(
            &["id", "zz"],
            vec![vec![Value::Integer(1), Value::Integer(1)]],
        ))
        .unwrap_err();
    assert!(
        matches!(&err, PluginError::Permanent(m) if m.contains("`zz` is not a writable column of `t`")),
        "{err:?}"
    );
    assert_eq!(
        writer
            .write(batch(&["id"], vec![vec![Value::Integer(2)]]))
            .unwrap(),
        [RowResult::Created]
    );
    assert_eq!(db.rows("SELECT id, m FROM t"), [row(&[Some("2"), None])]);
}

#[test]
fn discover_lists_tables_with_types_keys_and_modes() {
    let db = Db::new();
    db.run(&[
        "CREATE TABLE keyed (id BIGINT AUTO_INCREMENT PRIMARY KEY, code VARCHAR(10) UNIQUE,
            name VARCHAR(20) NOT NULL, created DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
            total DECIMAL(9,2), doc JSON, doubled BIGINT AS (id * 2) VIRTUAL,
            a INT, b INT, p VARCHAR(50), UNIQUE (a, b), UNIQUE (p(10)))",
        "CREATE TABLE log (line TEXT)",
        "CREATE VIEW keyed_view AS SELECT id FROM keyed",
    ]);
    let objects = MySqlDestination::discover(&db.config()).unwrap();
    let names: Vec<&str> = objects.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["keyed", "log"]);
    let fields: Vec<(&str, FieldType, bool, bool, bool)> = objects[0]
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
            ("id", FieldType::Integer, false, false, true),
            ("code", FieldType::Text, true, false, true),
            ("name", FieldType::Text, false, true, false),
            ("created", FieldType::Timestamp, false, false, false),
            ("total", FieldType::Decimal, true, false, false),
            ("doc", FieldType::Json, true, false, false),
            ("a", FieldType::Integer, true, false, false),
            ("b", FieldType::Integer, true, false, false),
            ("p", FieldType::Text, true, false, false),
        ]
    );
    assert_eq!(objects[0].modes.len(), 5);
    assert_eq!(objects[1].modes, [WriteMode::Insert, WriteMode::Append]);
}

#[test]
fn open_refuses_what_the_table_cannot_take() {
    let db = Db::new();
    db.run(&[
        "CREATE TABLE log (line TEXT, n INT)",
        "CREATE TABLE k (id INT PRIMARY KEY, n INT)",
    ]);
    let err = |object: &str, mode, identifier: &str| match MySqlDestination::open(
        &db.config(),
        target(object, mode, identifier),
    ) {
        Err(PluginError::Permanent(m)) => m,
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("{object} opened"),
    };
    assert!(err("nope", WriteMode::Insert, "").contains("`nope` is not a table of database"));
    assert!(err("log", WriteMode::Upsert, "line")
        .contains("`log` does not take upsert writes (it takes: insert, append)"));
    assert!(err("k", WriteMode::Update, "n").contains("column `n` of `k` cannot identify rows"));
    assert!(err("k", WriteMode::Delete, "zz").contains("identifier `zz` is not a column of `k`"));
}

#[test]
fn large_batches_go_in_several_statements_of_one_transaction() {
    let db = Db::new();
    db.run(&["CREATE TABLE wide (id INT PRIMARY KEY, a TEXT)"]);
    let mut upsert = db.writer("wide", WriteMode::Upsert, "id");
    // 2,000 rows of 10 KiB: more than one statement's worth.
    let big = "x".repeat(10 * 1024);
    let rows: Vec<Vec<Value>> = (0..2_000)
        .map(|i| vec![Value::Integer(i), text(&big)])
        .collect();
    let results = upsert.write(batch(&["id", "a"], rows)).unwrap();
    assert_eq!(results, vec![RowResult::Created; 2_000]);
    assert_eq!(
        db.rows("SELECT COUNT(*), SUM(LENGTH(a)) FROM wide"),
        [row(&[Some("2000"), Some("20480000")])]
    );
}
