//! Tests against the real MariaDB on 127.0.0.1:3306 (user `root`, no
//! password). Every test works in its own database (and users), dropped at
//! the end even when an assertion fails.

use mysql::config::Config;
use mysql::conn::Connection;
use mysql::MySql;
use sluice_sdk::{Batch, FieldType, PluginError, ReadRequest, Reader, Source, Value};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

fn config_with(database: &str, extra: serde_json::Value) -> String {
    let mut config = serde_json::json!({"host": "127.0.0.1", "user": "root", "database": database});
    config
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    config.to_string()
}

/// Run statements as root in `database`.
fn admin(database: &str, statements: &[&str]) {
    let config = Config::parse(&config_with(database, serde_json::json!({}))).unwrap();
    let mut conn = Connection::connect(&config).unwrap();
    for sql in statements {
        conn.execute(sql).unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
    conn.terminate();
}

/// A name no other test (or concurrent run) uses.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A scratch database, dropped at the end of the test.
struct Database(String);

impl Database {
    fn new(test: &str) -> Database {
        let name = unique(&format!("sluice_mysql_{test}"));
        admin("mysql", &[&format!("CREATE DATABASE `{name}`")]);
        Database(name)
    }

    fn config(&self) -> String {
        config_with(&self.0, serde_json::json!({}))
    }

    fn run(&self, statements: &[&str]) {
        admin(&self.0, statements);
    }

    fn read(&self, request: ReadRequest, max_rows: u32) -> Result<Vec<Batch>, PluginError> {
        read_all(&self.config(), request, max_rows)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        admin("mysql", &[&format!("DROP DATABASE IF EXISTS `{}`", self.0)]);
    }
}

/// A scratch account, dropped at the end of the test.
struct User(String);

impl User {
    fn new(identified: &str) -> User {
        let name = unique("sluice_u");
        admin(
            "mysql",
            &[&format!("CREATE USER '{name}'@'%' IDENTIFIED {identified}")],
        );
        User(name)
    }
}

impl Drop for User {
    fn drop(&mut self) {
        admin("mysql", &[&format!("DROP USER IF EXISTS '{}'@'%'", self.0)]);
    }
}

fn read_all(config: &str, request: ReadRequest, max_rows: u32) -> Result<Vec<Batch>, PluginError> {
    let mut reader = MySql::read(config, request)?;
    let mut batches = Vec::new();
    while let Some(batch) = reader.next(max_rows)? {
        batches.push(batch);
    }
    // A finished reader stays finished.
    assert!(reader.next(max_rows)?.is_none());
    Ok(batches)
}

fn micros(text: &str) -> Value {
    Value::Timestamp(sluice_sdk::parse_timestamp(text).unwrap())
}

fn date(text: &str) -> Value {
    Value::Date(sluice_sdk::parse_date(text).unwrap() as i32)
}

const TYPES_TABLE: &str = "CREATE TABLE types (
    id INT PRIMARY KEY,
    ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, mi MEDIUMINT, i INT, iu INT UNSIGNED,
    bi BIGINT, bu BIGINT UNSIGNED,
    dec_small DECIMAL(5,2), dec_big DECIMAL(65,30),
    f FLOAT, d DOUBLE,
    c CHAR(4), vc VARCHAR(100), tx TEXT,
    bin BINARY(3), vb VARBINARY(10), bl BLOB,
    dt DATE, dtm DATETIME(6), ts TIMESTAMP(3) NULL, tm TIME(2), yr YEAR,
    js JSON, b1 BIT(1), b12 BIT(12), b64 BIT(64),
    en ENUM('small','large'), st SET('a','b','c')
)";

#[test]
fn every_type_maps_as_documented() {
    let db = Database::new("types");
    db.run(&[
        TYPES_TABLE,
        // Extremes, non-ASCII text, large decimals, fractional timestamps.
        "INSERT INTO types VALUES (1,
            -128, 255, -32768, -8388608, -2147483648, 4294967295,
            -9223372036854775808, 18446744073709551615,
            -999.99, 12345678901234567890123456789012345.123456789012345678901234567890,
            1.5, -2.2250738585072014e-308,
            'ab', 'Zürich ✓ 🚀', 'naïve\ttext\nline',
            X'000102', X'FF00', X'DEADBEEF',
            '1000-01-01', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.123', '-838:59:59.99', 2155,
            '{\"k\": [1, 2.5, \"ü\"]}', b'1', b'101010101010', b'1111111111111111111111111111111111111111111111111111111111111111',
            'large', 'a,c')",
        "INSERT INTO types (id, bu, dt, dtm, ts) VALUES (2, 9223372036854775807, '1970-01-01', '1970-01-01 00:00:00', '1970-01-01 00:00:01')",
        "INSERT INTO types (id) VALUES (3)",
    ]);
    let batches = db
        .read(
            ReadRequest::Query("SELECT * FROM types ORDER BY id".into()),
            100,
        )
        .unwrap();
    assert_eq!(batches.len(), 1);
    let batch = &batches[0];
    assert_eq!(batch.columns.len(), 30);
    assert_eq!(batch.columns[0], "id");
    let row = |id: usize| -> Vec<(&str, &Value)> {
        batch
            .columns
            .iter()
            .map(String::as_str)
            .zip(batch.rows[id].iter())
            .collect()
    };
    let expected = vec![
        ("id", Value::Integer(1)),
        ("ti", Value::Integer(-128)),
        ("tu", Value::Integer(255)),
        ("si", Value::Integer(-32768)),
        ("mi", Value::Integer(-8388608)),
        ("i", Value::Integer(-2147483648)),
        ("iu", Value::Integer(4294967295)),
        ("bi", Value::Integer(i64::MIN)),
        ("bu", Value::Decimal("18446744073709551615".into())),
        ("dec_small", Value::Decimal("-999.99".into())),
        (
            "dec_big",
            Value::Decimal(
                "12345678901234567890123456789012345.123456789012345678901234567890".into(),
            ),
        ),
        ("f", Value::Float(1.5)),
        ("d", Value::Float(-2.2250738585072014e-308)),
        // CHAR's trailing spaces are stripped by MySQL (without PAD_CHAR_TO_FULL_LENGTH).
        ("c", Value::Text("ab".into())),
        ("vc", Value::Text("Zürich ✓ 🚀".into())),
        ("tx", Value::Text("naïve\ttext\nline".into())),
        ("bin", Value::Bytes(vec![0, 1, 2])),
        ("vb", Value::Bytes(vec![0xFF, 0])),
        ("bl", Value::Bytes(vec![0xDE, 0xAD, 0xBE, 0xEF])),
        ("dt", date("1000-01-01")),
        // 9999-12-31T23:59:59.999999Z, past what the shared timestamp parser reads
        ("dtm", Value::Timestamp(253_402_300_799_999_999)),
        ("ts", micros("2038-01-19T03:14:07.123Z")),
        ("tm", Value::Text("-838:59:59.99".into())),
        ("yr", Value::Integer(2155)),
        ("js", Value::Json("{\"k\": [1, 2.5, \"ü\"]}".into())),
        ("b1", Value::Integer(1)),
        ("b12", Value::Integer(0b1010_1010_1010)),
        ("b64", Value::Bytes(vec![0xFF; 8])),
        ("en", Value::Text("large".into())),
        ("st", Value::Text("a,c".into())),
    ];
    let got = row(0);
    for (i, (name, value)) in expected.iter().enumerate() {
        assert_eq!(got[i], (*name, value), "column {name}");
    }
    let second = row(1);
    assert_eq!(second[8], ("bu", &Value::Integer(i64::MAX)));
    assert_eq!(second[19], ("dt", &Value::Date(0)));
    assert_eq!(second[20], ("dtm", &Value::Timestamp(0)));
    // TIMESTAMP is read in UTC whatever the server's zone.
    assert_eq!(second[21], ("ts", &Value::Timestamp(1_000_000)));
    // Row 3: every column but the key is NULL.
    assert!(batch.rows[2][1..].iter().all(|v| *v == Value::Null));
}

#[test]
fn timestamps_are_utc_even_when_the_server_zone_is_not() {
    let db = Database::new("tz");
    db.run(&[
        "CREATE TABLE t (id INT PRIMARY KEY, ts TIMESTAMP(6) NULL)",
        // Written from a +05:00 session: the stored instant is 10:00 UTC.
        "SET time_zone = '+05:00'",
        "INSERT INTO t VALUES (1, '2024-03-01 15:00:00.250000')",
    ]);
    let batches = db.read(ReadRequest::Object("t".into()), 10).unwrap();
    assert_eq!(batches[0].rows[0][1], micros("2024-03-01T10:00:00.25Z"));
}

#[test]
fn streams_a_large_result_in_batches() {
    let db = Database::new("stream");
    db.run(&[
        "CREATE TABLE n (id INT PRIMARY KEY, label VARCHAR(20))",
        "INSERT INTO n SELECT seq, CONCAT('row ', seq) FROM seq_1_to_25000",
    ]);
    let batches = db.read(ReadRequest::Object("n".into()), 10_000).unwrap();
    let sizes: Vec<usize> = batches.iter().map(|b| b.rows.len()).collect();
    assert_eq!(sizes, [10_000, 10_000, 5_000]);
    let ids: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.rows.iter().map(|r| r[0].as_i64().unwrap()))
        .collect();
    assert_eq!(ids, (1..=25_000).collect::<Vec<i64>>());
    assert_eq!(batches[2].rows[4999][1], Value::Text("row 25000".into()));
}

#[test]
fn zero_dates_fail_naming_the_column_and_row_key() {
    let db = Database::new("zero");
    db.run(&[
        "SET SESSION sql_mode = ''",
        "CREATE TABLE z (id INT, tenant INT, born DATE, PRIMARY KEY (tenant, id))",
        "INSERT INTO z VALUES (1, 9, '2020-01-01'), (2, 9, '0000-00-00')",
    ]);
    let err = db
        .read(
            ReadRequest::Query("SELECT id, tenant, born FROM z ORDER BY id".into()),
            100,
        )
        .unwrap_err();
    let PluginError::Permanent(message) = &err else {
        panic!("{err:?}")
    };
    assert!(
        message.contains("column `born` (DATE) of row 2"),
        "{message}"
    );
    assert!(message.contains("(id = 2, tenant = 9)"), "{message}");
    assert!(message.contains("zero date `0000-00-00`"), "{message}");
    assert!(
        message.contains("query: SELECT id, tenant, born FROM z"),
        "{message}"
    );
}

#[test]
fn discovers_tables_columns_keys_and_mariadb_json() {
    let db = Database::new("discover");
    db.run(&[
        "CREATE TABLE accounts (tenant INT, id BIGINT UNSIGNED, doc JSON, note LONGTEXT, amount DECIMAL(10,2) NOT NULL, PRIMARY KEY (tenant, id))",
        "CREATE TABLE `odd.name` (x DATETIME)",
        "CREATE VIEW v AS SELECT tenant, doc FROM accounts",
    ]);
    let objects = MySql::discover(&db.config()).unwrap();
    let names: Vec<&str> = objects.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["accounts", "`odd.name`", "v"]);
    let fields: Vec<(&str, FieldType, bool, bool)> = objects[0]
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.type_, f.nullable, f.identifier))
        .collect();
    assert_eq!(
        fields,
        [
            ("tenant", FieldType::Integer, false, true),
            ("id", FieldType::Decimal, false, true),
            ("doc", FieldType::Json, true, false),
            ("note", FieldType::Text, true, false),
            ("amount", FieldType::Decimal, false, false),
        ]
    );
    assert_eq!(objects[1].fields[0].type_, FieldType::Timestamp);
    // Reading a discovered name, and JSON detected through a query too.
    db.run(&["INSERT INTO accounts VALUES (1, 2, '[1]', '[1]', 3.50)"]);
    let batches = db.read(ReadRequest::Object("accounts".into()), 10).unwrap();
    assert_eq!(batches[0].rows[0][2], Value::Json("[1]".into()));
    assert_eq!(batches[0].rows[0][3], Value::Text("[1]".into()));
    let batches = db
        .read(ReadRequest::Object("`odd.name`".into()), 10)
        .unwrap();
    assert!(batches.is_empty());
}

#[test]
fn json_columns_hint_marks_computed_columns() {
    let db = Database::new("hint");
    let config = config_with(&db.0, serde_json::json!({"json_columns": ["obj"]}));
    let batches = read_all(
        &config,
        ReadRequest::Query("SELECT JSON_OBJECT('a', 1) AS obj, 'x' AS plain".into()),
        10,
    )
    .unwrap();
    assert_eq!(batches[0].rows[0][0], Value::Json("{\"a\": 1}".into()));
    assert_eq!(batches[0].rows[0][1], Value::Text("x".into()));
}

#[test]
fn native_password_and_ed25519_users_log_in() {
    let db = Database::new("auth");
    admin(
        "mysql",
        &["INSTALL PLUGIN IF NOT EXISTS ed25519 SONAME 'auth_ed25519'"],
    );
    let native = User::new("VIA mysql_native_password USING PASSWORD('n4tive-pw')");
    let ed = User::new("VIA ed25519 USING PASSWORD('ed-pw-✓')");
    for (user, password) in [(&native, "n4tive-pw"), (&ed, "ed-pw-✓")] {
        admin(
            "mysql",
            &[&format!("GRANT SELECT ON `{}`.* TO '{}'@'%'", db.0, user.0)],
        );
        let config = config_with(
            &db.0,
            serde_json::json!({"user": user.0, "password": password}),
        );
        MySql::check(&config).unwrap_or_else(|e| panic!("{}: {e:?}", user.0));
        let wrong = config_with(
            &db.0,
            serde_json::json!({"user": user.0, "password": "nope"}),
        );
        let err = MySql::check(&wrong).unwrap_err();
        let PluginError::Auth(message) = &err else {
            panic!("{err:?}")
        };
        assert!(
            message.starts_with("ERROR 1045 (28000): Access denied for user"),
            "{message}"
        );
        assert!(message.contains(&user.0), "{message}");
    }
}

#[test]
fn a_source_cannot_write() {
    let db = Database::new("readonly");
    db.run(&["CREATE TABLE t (id INT)"]);
    let err = db
        .read(ReadRequest::Query("INSERT INTO t VALUES (1)".into()), 10)
        .unwrap_err();
    let PluginError::Permanent(message) = &err else {
        panic!("{err:?}")
    };
    assert!(message.contains("READ ONLY"), "{message}");
    let batches = db.read(ReadRequest::Object("t".into()), 10).unwrap();
    assert!(batches.is_empty(), "the insert must not have happened");
}

#[test]
fn bad_input_fails_precisely() {
    let db = Database::new("bad");
    // Unknown database: a config error naming the key.
    let err = MySql::check(&config_with(
        "sluice_mysql_no_such_db",
        serde_json::json!({}),
    ))
    .unwrap_err();
    let PluginError::Config(message) = &err else {
        panic!("{err:?}")
    };
    assert!(
        message
            .contains("`database`: ERROR 1049 (42000): Unknown database 'sluice_mysql_no_such_db'"),
        "{message}"
    );
    // SQL syntax error: MariaDB's message and position pass through.
    let err = db
        .read(ReadRequest::Query("SELEC 1".into()), 10)
        .unwrap_err();
    let PluginError::Permanent(message) = &err else {
        panic!("{err:?}")
    };
    assert!(
        message.starts_with("ERROR 1064 (42000): You have an error in your SQL syntax"),
        "{message}"
    );
    assert!(message.contains("near 'SELEC 1' at line 1"), "{message}");
    assert!(message.ends_with("(query: SELEC 1)"), "{message}");
    // Unknown table.
    let err = db
        .read(ReadRequest::Object("missing".into()), 10)
        .unwrap_err();
    assert!(
        matches!(&err, PluginError::Permanent(m) if m.contains("ERROR 1146 (42S02)") && m.contains("missing")),
        "{err:?}"
    );
}

#[test]
fn unreachable_servers_fail_within_the_timeout() {
    // A closed port: refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let err = MySql::check(&config_with("x", serde_json::json!({"port": port}))).unwrap_err();
    assert!(
        matches!(&err, PluginError::Retryable(m) if m.contains("refused") && m.contains(&format!("127.0.0.1:{port}"))),
        "{err:?}"
    );
    // A port that accepts but never speaks: bounded by connect_timeout_ms.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let started = Instant::now();
    let err = MySql::check(&config_with(
        "x",
        serde_json::json!({"port": port, "connect_timeout_ms": 500}),
    ))
    .unwrap_err();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert!(
        matches!(&err, PluginError::Retryable(m) if m.contains(&format!("127.0.0.1:{port}")) && m.contains("read timeout")),
        "{err:?}"
    );
    drop(silent);
}
