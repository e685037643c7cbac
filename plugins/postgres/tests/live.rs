//! Tests against the real PostgreSQL on 127.0.0.1:5432 (user `postgres`,
//! trust auth, database `test`). Every test works in its own schema (or
//! database) and drops it, even when an assertion fails.

use postgres::config::Config;
use postgres::conn::Connection;
use postgres::reader::format_object_name;
use postgres::Postgres;
use sluice_sdk::{
    Batch, FieldType, ObjectInfo, PluginError, ReadRequest, Reader, Row, Source, Value,
};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

fn config_for(database: &str) -> String {
    serde_json::json!({"host": "127.0.0.1", "user": "postgres", "database": database}).to_string()
}

fn config() -> String {
    config_for("test")
}

/// Run setup SQL as the superuser, outside any read transaction.
fn admin(sql: &str) {
    admin_on("test", sql);
}

fn admin_on(database: &str, sql: &str) {
    let mut conn = Connection::connect(&Config::parse(&config_for(database)).unwrap()).unwrap();
    conn.simple_query(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
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

/// A scratch schema, dropped with everything in it at the end of the test.
struct Schema(String);

impl Schema {
    fn new() -> Schema {
        let name = unique("sluice_pg_test");
        admin(&format!("CREATE SCHEMA {name}"));
        Schema(name)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        admin(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.0));
    }
}

/// Every batch of a read.
fn read_batches(request: ReadRequest, max_rows: u32) -> Result<Vec<Batch>, PluginError> {
    let mut reader = Postgres::read(&config(), request)?;
    let mut batches = Vec::new();
    while let Some(batch) = reader.next(max_rows)? {
        batches.push(batch);
    }
    // A finished reader stays finished.
    assert!(reader.next(max_rows)?.is_none());
    Ok(batches)
}

/// The single row of a query.
fn one_row(sql: &str) -> (Vec<String>, Row) {
    let batches = read_batches(ReadRequest::Query(sql.into()), 100).unwrap();
    assert_eq!(batches.len(), 1, "{sql}");
    let mut batch = batches.into_iter().next().unwrap();
    assert_eq!(batch.rows.len(), 1, "{sql}");
    (batch.columns, batch.rows.remove(0))
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}
fn json(s: &str) -> Value {
    Value::Json(s.into())
}

#[test]
fn check_connects_and_runs_select_1() {
    Postgres::check(&config()).unwrap();
}

#[test]
fn spec_asks_for_the_configured_server() {
    let spec = Postgres::spec();
    assert_eq!(spec.name, "postgres");
    assert_eq!(
        spec.capabilities,
        ["postgres://${config.host}:${config.port}"]
    );
    assert_eq!(spec.batch_size, 5000);
    let schema: serde_json::Value = serde_json::from_str(&spec.config_schema).unwrap();
    assert_eq!(
        schema["required"],
        serde_json::json!(["host", "user", "database"])
    );
    assert_eq!(schema["properties"]["sslmode"]["default"], "prefer");
}

#[test]
fn refused_connection_is_retryable_and_names_the_target() {
    let config = r#"{"host":"127.0.0.1","port":1,"user":"postgres","database":"test"}"#;
    match Postgres::check(config) {
        Err(PluginError::Retryable(m)) => {
            assert!(m.contains("127.0.0.1:1") && m.contains("refused"), "{m}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unreachable_hosts_time_out_as_retryable() {
    // A non-routable address: the connect either times out or is refused
    // by the network at once; both are worth retrying later.
    // (Where something answers there after all, as behind some sandboxes'
    // proxies, the plaintext startup is what gets refused.)
    let config = r#"{"host":"10.255.255.1","user":"u","database":"d","connect_timeout_ms":300,"sslmode":"disable"}"#;
    let start = Instant::now();
    match Postgres::check(config) {
        Err(PluginError::Retryable(m)) => assert!(m.contains("10.255.255.1:5432"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn unknown_role_is_an_auth_error_with_the_servers_message() {
    // pg_hba.conf on the test server is trust-only, so a wrong password
    // cannot be tried against it (see the fake-server tests below).
    let config = r#"{"host":"127.0.0.1","user":"sluice_no_such_role","database":"test"}"#;
    match Postgres::check(config) {
        Err(PluginError::Auth(m)) => {
            assert!(
                m.contains("28000") && m.contains(r#"role "sluice_no_such_role" does not exist"#),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_database_is_a_config_error_with_the_servers_message() {
    match Postgres::check(&config_for("sluice_no_such_db")) {
        Err(PluginError::Config(m)) => {
            assert!(
                m.contains("3D000") && m.contains(r#"database "sluice_no_such_db" does not exist"#),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn sql_errors_pass_through_with_sqlstate_and_position() {
    let err = read_batches(ReadRequest::Query("SELECT * FROM sluice_nope".into()), 10).unwrap_err();
    match err {
        PluginError::Permanent(m) => {
            assert!(
                m.starts_with(
                    r#"ERROR 42P01: relation "sluice_nope" does not exist at position 15"#
                ),
                "{m}"
            );
            assert!(m.contains("query: SELECT * FROM sluice_nope"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn errors_in_the_middle_of_a_stream_end_the_read() {
    let sql = "SELECT 10 / (x - 3) AS v FROM generate_series(1, 5) x";
    let mut reader = Postgres::read(&config(), ReadRequest::Query(sql.into())).unwrap();
    assert_eq!(
        reader.next(1).unwrap().unwrap().rows,
        vec![vec![Value::Integer(-5)]]
    );
    assert_eq!(
        reader.next(1).unwrap().unwrap().rows,
        vec![vec![Value::Integer(-10)]]
    );
    match reader.next(1) {
        Err(PluginError::Permanent(m)) => {
            assert!(m.starts_with("ERROR 22012: division by zero"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    assert!(reader.next(1).unwrap().is_none());
}

#[test]
fn queries_with_parameters_are_refused() {
    match read_batches(ReadRequest::Query("SELECT $1::int".into()), 10) {
        Err(PluginError::Permanent(m)) => assert!(m.contains("1 parameter"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn reads_are_read_only() {
    let schema = Schema::new();
    admin(&format!("CREATE TABLE {}.t (x int)", schema.0));
    let sql = format!("INSERT INTO {}.t VALUES (1) RETURNING x", schema.0);
    match read_batches(ReadRequest::Query(sql), 10) {
        Err(PluginError::Permanent(m)) => assert!(m.contains("25006"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn statements_without_rows_read_as_empty() {
    assert!(read_batches(ReadRequest::Query(String::new()), 10)
        .unwrap()
        .is_empty());
    assert!(
        read_batches(ReadRequest::Query("SELECT 1 WHERE false".into()), 10)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn every_type_maps_faithfully_including_nulls() {
    let schema = Schema::new();
    let s = &schema.0;
    admin(&format!(
        "CREATE TYPE {s}.mood AS ENUM ('sad', 'happy');
         CREATE DOMAIN {s}.posint AS int4 CHECK (VALUE > 0);
         CREATE TABLE {s}.all_types (
           b bool, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8,
           n numeric, n_nan numeric, n_inf numeric, t text, vc varchar(10), bp char(5), nm name,
           ts timestamp, tstz timestamptz, d date, tm time, iv interval,
           j json, jb jsonb, u uuid, by bytea,
           ia int4[], ta text[], na numeric[], ja jsonb[], ba bool[], ia2 int4[][], tsa timestamptz[], bya bytea[],
           mood {s}.mood, dom {s}.posint, moods {s}.mood[]);
         INSERT INTO {s}.all_types VALUES (
           true, -32768, 2147483647, -9223372036854775808, 0.1, 1.5e300,
           '12345678901234567890.123456789012345678901234567890', 'NaN', '-Infinity',
           'héllo ☃', 'vc', 'ab', 'nm',
           '2024-05-01 12:30:00.123456', '2024-05-01 14:30:00.5+02', '2024-05-01', '12:34:56.789', '1 day 2 hours',
           '{{\"k\": [1, 2]}}', '{{\"b\": 1, \"a\": [true, null]}}', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '\\x00ff10',
           '{{1,NULL,3}}', '{{\"a,b\",\"c\\\"d\",NULL,\"NULL\"}}', '{{1.50,NaN}}', ARRAY['{{\"a\": 1}}'::jsonb, NULL],
           '{{t,f}}', '{{{{1,2}},{{3,4}}}}', ARRAY['2024-05-01 12:30:00+00'::timestamptz], ARRAY['\\x0102'::bytea],
           'happy', 7, '{{sad,happy}}');
         INSERT INTO {s}.all_types DEFAULT VALUES;"
    ));
    let batches = read_batches(ReadRequest::Object(format!("{s}.all_types")), 10).unwrap();
    assert_eq!(batches.len(), 1);
    let batch = &batches[0];
    assert_eq!(batch.columns.len(), 33);
    assert_eq!(&batch.columns[..4], ["b", "i2", "i4", "i8"]);
    let row = &batch.rows[0];
    let expected = [
        Value::Boolean(true),
        Value::Integer(-32768),
        Value::Integer(2_147_483_647),
        Value::Integer(i64::MIN),
        Value::Float(0.1),
        Value::Float(1.5e300),
        Value::Decimal("12345678901234567890.123456789012345678901234567890".into()),
        Value::Float(f64::NAN), // compared below
        Value::Float(f64::NEG_INFINITY),
        text("héllo ☃"),
        text("vc"),
        text("ab   "),
        text("nm"),
        Value::Timestamp(1_714_566_600_123_456),
        Value::Timestamp(1_714_566_600_500_000),
        Value::Date(19_844),
        text("12:34:56.789"),
        text("P1DT2H"),
        json(r#"{"k": [1, 2]}"#),
        json(r#"{"a": [true, null], "b": 1}"#),
        text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        Value::Bytes(vec![0x00, 0xff, 0x10]),
        json("[1,null,3]"),
        json(r#"["a,b","c\"d",null,"NULL"]"#),
        json(r#"[1.50,"NaN"]"#),
        json(r#"[{"a": 1},null]"#),
        json("[true,false]"),
        json("[[1,2],[3,4]]"),
        json(r#"["2024-05-01 12:30:00+00"]"#),
        json(r#"["0102"]"#),
        text("happy"),
        Value::Integer(7),
        json(r#"["sad","happy"]"#),
    ];
    for (i, (got, want)) in row.iter().zip(&expected).enumerate() {
        match (got, want) {
            (Value::Float(g), Value::Float(w)) if w.is_nan() => {
                assert!(g.is_nan(), "column {}", batch.columns[i])
            }
            _ => assert_eq!(got, want, "column {}", batch.columns[i]),
        }
    }
    // Every array is valid JSON.
    for value in row {
        if let Value::Json(s) = value {
            serde_json::from_str::<serde_json::Value>(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        }
    }
    assert!(
        batch.rows[1].iter().all(Value::is_null),
        "{:?}",
        batch.rows[1]
    );
}

#[test]
fn timestamps_dates_and_their_edges() {
    let (_, row) = one_row(
        "SELECT '1969-12-31 23:59:59.999999'::timestamp, '1970-01-01 00:00:00+05'::timestamptz,
                '1900-03-01'::date, 'infinity'::timestamp, '-infinity'::timestamptz, 'infinity'::date,
                '4713-01-01 BC'::date, '0.1'::float4 + 0.2::float4",
    );
    assert_eq!(
        row,
        vec![
            Value::Timestamp(-1),
            Value::Timestamp(-5 * 3_600_000_000),
            Value::Date(-25_508),
            text("infinity"),
            text("-infinity"),
            text("infinity"),
            Value::Date(-2_440_550),
            Value::Float(0.3),
        ]
    );
}

#[test]
fn timestamptz_does_not_depend_on_the_session_time_zone() {
    let sql = "SELECT set_config('TimeZone', 'America/New_York', true), '2024-05-01 12:00:00+00'::timestamptz";
    let (_, row) = one_row(sql);
    assert_eq!(row[1], Value::Timestamp(1_714_564_800_000_000));
}

#[test]
fn numeric_keeps_every_digit() {
    let (columns, row) = one_row(
        "SELECT 0.1::numeric + 0.2::numeric AS a, 1e-30::numeric AS b, -99999999999999999999999999.99::numeric(30,2) AS c,
                'Infinity'::numeric AS d, 1e25::numeric AS e",
    );
    assert_eq!(columns, ["a", "b", "c", "d", "e"]);
    assert_eq!(row[0], Value::Decimal("0.3".into()));
    assert_eq!(
        row[1],
        Value::Decimal("0.000000000000000000000000000001".into())
    );
    assert_eq!(
        row[2],
        Value::Decimal("-99999999999999999999999999.99".into())
    );
    assert_eq!(row[3], Value::Float(f64::INFINITY));
    assert_eq!(row[4], Value::Decimal("10000000000000000000000000".into()));
}

#[test]
fn streams_large_results_in_batches_in_order() {
    let schema = Schema::new();
    let table = format!("{}.big", schema.0);
    admin(&format!(
        "CREATE TABLE {table} (id int8 PRIMARY KEY, label text, amount numeric);
         INSERT INTO {table} SELECT g, 'row ' || g, g / 100.0 FROM generate_series(1, 25000) g"
    ));
    let sql = format!("SELECT id, label, amount FROM {table} ORDER BY id");
    let batches = read_batches(ReadRequest::Query(sql), 1000).unwrap();
    assert_eq!(batches.len(), 25);
    assert!(batches
        .iter()
        .all(|b| b.rows.len() == 1000 && b.columns == ["id", "label", "amount"]));
    let rows: Vec<&Row> = batches.iter().flat_map(|b| &b.rows).collect();
    assert_eq!(rows.len(), 25_000);
    for (i, row) in rows.iter().enumerate() {
        let id = i as i64 + 1;
        assert_eq!(row[0], Value::Integer(id));
        assert_eq!(row[1], text(&format!("row {id}")));
    }
    assert_eq!(
        rows[12_344][2],
        Value::Decimal("123.4500000000000000".into())
    );
}

#[test]
fn the_first_batch_arrives_without_computing_the_whole_result() {
    // 200 million rows would take minutes (and gigabytes) to materialize;
    // a cursor hands back the first batch at once.
    let start = Instant::now();
    let sql = "SELECT generate_series(1, 200000000) AS n";
    let mut reader = Postgres::read(&config(), ReadRequest::Query(sql.into())).unwrap();
    let batch = reader.next(500).unwrap().unwrap();
    assert_eq!(batch.rows.len(), 500);
    assert_eq!(batch.rows[499], vec![Value::Integer(500)]);
    let batch = reader.next(3).unwrap().unwrap();
    assert_eq!(
        batch.rows,
        vec![
            vec![Value::Integer(501)],
            vec![Value::Integer(502)],
            vec![Value::Integer(503)]
        ]
    );
    drop(reader);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn objects_accept_schema_qualified_and_odd_names() {
    let schema = Schema::new();
    let s = &schema.0;
    admin(&format!(
        r#"CREATE TABLE {s}."Odd.Name""x" ("Col" int); INSERT INTO {s}."Odd.Name""x" VALUES (42)"#
    ));
    let name = format_object_name(s, "Odd.Name\"x");
    let batches = read_batches(ReadRequest::Object(name), 10).unwrap();
    assert_eq!(batches[0].columns, ["Col"]);
    assert_eq!(batches[0].rows, vec![vec![Value::Integer(42)]]);
    match read_batches(ReadRequest::Object(format!("{s}.missing")), 10) {
        Err(PluginError::Permanent(m)) => assert!(m.contains("42P01"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn discover_lists_tables_and_views_with_types_and_primary_keys() {
    let schema = Schema::new();
    let s = &schema.0;
    admin(&format!(
        "CREATE TABLE {s}.orders (tenant int NOT NULL, id int8 NOT NULL, total numeric(12,2), placed timestamptz,
                                  tags text[], body jsonb NOT NULL, PRIMARY KEY (tenant, id));
         CREATE VIEW {s}.big_orders AS SELECT id, total FROM {s}.orders WHERE total > 100;
         CREATE TABLE {s}.nokey (d date, b bytea, f float8, ok bool, u uuid)"
    ));
    let objects = Postgres::discover(&config()).unwrap();
    let find = |name: &str| -> &ObjectInfo {
        let full = format!("{s}.{name}");
        objects
            .iter()
            .find(|o| o.name == full)
            .unwrap_or_else(|| panic!("{full} not discovered"))
    };
    let orders = find("orders");
    let summary: Vec<(&str, FieldType, bool, bool)> = orders
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.type_, f.nullable, f.identifier))
        .collect();
    assert_eq!(
        summary,
        [
            ("tenant", FieldType::Integer, false, true),
            ("id", FieldType::Integer, false, true),
            ("total", FieldType::Decimal, true, false),
            ("placed", FieldType::Timestamp, true, false),
            ("tags", FieldType::Json, true, false),
            ("body", FieldType::Json, false, false),
        ]
    );
    assert!(orders.modes.is_empty() && orders.fields.iter().all(|f| !f.required));
    let view: Vec<(&str, FieldType)> = find("big_orders")
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.type_))
        .collect();
    assert_eq!(
        view,
        [("id", FieldType::Integer), ("total", FieldType::Decimal)]
    );
    let types: Vec<FieldType> = find("nokey").fields.iter().map(|f| f.type_).collect();
    assert_eq!(
        types,
        [
            FieldType::Date,
            FieldType::Bytes,
            FieldType::Float,
            FieldType::Boolean,
            FieldType::Text
        ]
    );
    assert!(find("nokey")
        .fields
        .iter()
        .all(|f| f.nullable && !f.identifier));
    assert!(!objects
        .iter()
        .any(|o| o.name.starts_with("pg_catalog.") || o.name.starts_with("information_schema.")));
}

#[test]
fn non_utf8_text_is_a_precise_error_not_a_crash() {
    // Only a SQL_ASCII database can hold bytes that are not UTF-8. With
    // client_encoding=UTF8 the server itself refuses to send them (22021),
    // and that error passes through; the plugin's own guard for invalid
    // UTF-8 on the wire is covered by the decode unit tests.
    let db = unique("sluice_pg_ascii");
    admin(&format!(
        "CREATE DATABASE {db} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
    ));
    struct DropDb(String);
    impl Drop for DropDb {
        fn drop(&mut self) {
            admin(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0));
        }
    }
    let _guard = DropDb(db.clone());
    admin_on(
        &db,
        r"CREATE TABLE latin (t text); INSERT INTO latin VALUES ('fine'), (E'caf\xe9')",
    );
    let mut reader = Postgres::read(&config_for(&db), ReadRequest::Object("latin".into())).unwrap();
    assert_eq!(
        reader.next(1).unwrap().unwrap().rows,
        vec![vec![text("fine")]]
    );
    match reader.next(1) {
        Err(PluginError::Permanent(m)) => {
            assert!(
                m.starts_with(r#"ERROR 22021: invalid byte sequence for encoding "UTF8": 0xe9"#),
                "{m}"
            );
            assert!(m.contains(r#"query: SELECT * FROM "latin""#), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

/// A fake server that asks for a password and refuses it, to test the
/// MD5 and SCRAM paths (the real test server only trusts).
mod fake_server {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn refusal(user: &str) -> Vec<u8> {
        let mut body = Vec::new();
        for (field, value) in [(b'S', "FATAL"), (b'V', "FATAL"), (b'C', "28P01")] {
            body.push(field);
            body.extend_from_slice(value.as_bytes());
            body.push(0);
        }
        body.push(b'M');
        body.extend_from_slice(
            format!("password authentication failed for user \"{user}\"").as_bytes(),
        );
        body.extend_from_slice(&[0, 0]);
        message(b'E', &body)
    }

    /// Serve one connection: read the startup message, send `auth_request`,
    /// read the client's answer and refuse it. Returns the answer's tag and body.
    fn serve(auth_request: Vec<u8>) -> (u16, std::thread::JoinHandle<(u8, Vec<u8>)>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let mut len = [0u8; 4];
            socket.read_exact(&mut len).unwrap();
            let mut startup = vec![0; i32::from_be_bytes(len) as usize - 4];
            socket.read_exact(&mut startup).unwrap();
            socket.write_all(&auth_request).unwrap();
            let mut header = [0u8; 5];
            socket.read_exact(&mut header).unwrap();
            let mut body =
                vec![0; i32::from_be_bytes(header[1..].try_into().unwrap()) as usize - 4];
            socket.read_exact(&mut body).unwrap();
            socket.write_all(&refusal("app")).unwrap();
            (header[0], body)
        });
        (port, handle)
    }

    fn config(port: u16, password: Option<&str>) -> String {
        // The fake server speaks no TLS and scripts no SSLRequest answer.
        serde_json::json!({"host": "127.0.0.1", "port": port, "user": "app", "database": "d", "password": password, "sslmode": "disable"})
            .to_string()
    }

    #[test]
    fn md5_sends_the_salted_hash_and_reports_the_refusal() {
        let mut request = 5i32.to_be_bytes().to_vec();
        request.extend_from_slice(&[1, 2, 3, 4]);
        let (port, server) = serve(message(b'R', &request));
        match Postgres::check(&config(port, Some("wrong"))) {
            Err(PluginError::Auth(m)) => {
                let expected = format!(
                    r#"FATAL 28P01: password authentication failed for user "app" (connecting to 127.0.0.1:{port} as user `app`, database `d`)"#
                );
                assert_eq!(m, expected)
            }
            other => panic!("{other:?}"),
        }
        let (tag, body) = server.join().unwrap();
        let expected = postgres_protocol::authentication::md5_hash(b"app", b"wrong", [1, 2, 3, 4]);
        assert_eq!((tag, body), (b'p', [expected.as_bytes(), &[0]].concat()));
    }

    #[test]
    fn scram_starts_the_exchange_and_reports_the_refusal() {
        let mut request = 10i32.to_be_bytes().to_vec();
        request.extend_from_slice(b"SCRAM-SHA-256\0\0");
        let (port, server) = serve(message(b'R', &request));
        match Postgres::check(&config(port, Some("wrong"))) {
            Err(PluginError::Auth(m)) => assert!(
                m.contains("28P01") && m.contains("password authentication failed"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        let (tag, body) = server.join().unwrap();
        assert_eq!(tag, b'p');
        assert!(body.starts_with(b"SCRAM-SHA-256\0"), "{body:?}");
        // gs2 header "n,,": no channel binding without TLS.
        assert!(body.windows(5).any(|w| w == b"n,,n="), "{body:?}");
    }

    #[test]
    fn redshift_only_logins_are_refused_naming_the_method() {
        for (code, method) in [
            (13i32, "SHA-256 digest login (auth code 13)"),
            (14, "auth code 14"),
        ] {
            let mut request = code.to_be_bytes().to_vec();
            request.extend_from_slice(&[0; 8]);
            let (port, _server) = serve(message(b'R', &request));
            match Postgres::check(&config(port, Some("pw"))) {
                Err(PluginError::Auth(m)) => assert!(
                    m.contains(&format!("127.0.0.1:{port} asks for"))
                        && m.contains(method)
                        && m.contains("use a user with an MD5 or SCRAM-SHA-256 password"),
                    "{m}"
                ),
                other => panic!("{other:?}"),
            }
        }
    }

    /// Serve one connection: read the startup message, refuse the login
    /// and return the startup message's settings.
    fn capture_startup() -> (u16, std::thread::JoinHandle<Vec<(String, String)>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let mut len = [0u8; 4];
            socket.read_exact(&mut len).unwrap();
            let mut startup = vec![0; i32::from_be_bytes(len) as usize - 4];
            socket.read_exact(&mut startup).unwrap();
            socket.write_all(&refusal("app")).unwrap();
            // Protocol version, then NUL-terminated key/value pairs and a
            // final NUL.
            let strings: Vec<String> = startup[4..]
                .split(|&b| b == 0)
                .map(|s| String::from_utf8(s.to_vec()).unwrap())
                .collect();
            strings
                .chunks(2)
                .filter(|pair| pair.len() == 2 && !pair[0].is_empty())
                .map(|pair| (pair[0].clone(), pair[1].clone()))
                .collect()
        });
        (port, handle)
    }

    fn startup_settings(extra: serde_json::Value) -> Vec<String> {
        let (port, server) = capture_startup();
        let mut config: serde_json::Value = serde_json::from_str(&config(port, None)).unwrap();
        config
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let result = Postgres::check(&config.to_string());
        assert!(matches!(result, Err(PluginError::Auth(_))), "{result:?}");
        server.join().unwrap().into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn redshift_mode_sends_only_startup_settings_redshift_has() {
        // Redshift (PostgreSQL 8.0-based) has no IntervalStyle or
        // bytea_output and caps extra_float_digits at 2; an unknown startup
        // setting is FATAL there.
        assert_eq!(
            startup_settings(serde_json::json!({"redshift": true})),
            ["user", "database", "application_name"]
        );
        assert_eq!(
            startup_settings(serde_json::json!({})),
            [
                "user",
                "database",
                "application_name",
                "client_encoding",
                "DateStyle",
                "IntervalStyle",
                "bytea_output",
                "extra_float_digits"
            ]
        );
    }

    #[test]
    fn a_password_request_without_a_configured_password_is_an_auth_error() {
        let (port, _server) = serve(message(b'R', &3i32.to_be_bytes()));
        match Postgres::check(&config(port, None)) {
            Err(PluginError::Auth(m)) => assert!(
                m.contains("no `password`") && m.contains("cleartext"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
    }
}
