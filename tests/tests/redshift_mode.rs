//! The postgres source's Redshift mode (`redshift: true`, plugins/postgres
//! README "Redshift") against the real PostgreSQL: the mode's startup
//! settings, catalog queries (discover, primary keys, type lookup) and
//! transaction statement must run there too, since they are PostgreSQL
//! 8.0-era SQL. No Redshift cluster is reachable from CI; what only a
//! cluster can show (its own auth codes, OIDs) is documented, not tested.

use sluice_tests as common;

use common::*;
use sluice_registry::builtin as plugins;
use sluice_runtime::bindings::types::ReadRequest;
use sluice_runtime::plugin::Plugin;

/// A schema whose name starts with `pg` but not `pg_` (the Redshift
/// catalog query skips only the reserved `pg_` prefix), a table with a
/// composite primary key, a view, and one row of every type Redshift
/// shares with PostgreSQL (plus a domain and an enum array, which make the
/// plugin look types up in pg_type with the mode's query), and a row of
/// NULLs.
const SETUP: &str = "
    CREATE SCHEMA pgsales;
    CREATE TABLE pgsales.orders (region text, id bigint, note text, PRIMARY KEY (region, id));
    CREATE VIEW pgsales.big_orders AS SELECT id, note FROM pgsales.orders WHERE id > 100;
    CREATE DOMAIN pgsales.money2 AS numeric(10,2);
    CREATE TYPE pgsales.mood AS ENUM ('happy', 'sad');
    CREATE TABLE pgsales.every_type (id int PRIMARY KEY, i2 smallint, i4 integer, i8 bigint,
      r real, d double precision, num numeric(38,10), b boolean, c char(5), vc varchar(40),
      dt date, ts timestamp, tstz timestamptz, tm time, ttz timetz, iv interval,
      dom pgsales.money2, moods pgsales.mood[]);
    INSERT INTO pgsales.every_type VALUES
      (1, -32768, 2147483647, -9223372036854775808, 0.1, -1.7976931348623157e308,
       1234567890123456789012345678.0123456789, true, 'ab', 'Zürich ✓ 🚀', '1969-12-31',
       '2024-02-29 23:59:59.999999', '2024-05-01 12:30:00.5+02', '12:34:56.789',
       '12:34:56+05:30', '1 day 2 hours', 12.5, '{happy,sad}'),
      (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL);";

fn plugin_config(db: &PgDatabase) -> String {
    serde_json::json!({"host": "127.0.0.1", "port": 5432, "user": "postgres",
                       "database": db.name, "redshift": true})
    .to_string()
}

fn setup() -> PgDatabase {
    let db = PgDatabase::create("sluice_redshift");
    let status = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", &db.name])
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", SETUP])
        .status()
        .expect("psql runs");
    assert!(status.success(), "setting up {}", db.name);
    db
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redshift_mode_discovers_tables_views_and_primary_keys_from_pg_constraint() {
    let db = setup();
    let test = runtime();
    let plugin = Plugin::from_bytes(&test.runtime, "postgres", plugins::POSTGRES).unwrap();
    let mut instance = plugin
        .instantiate(&sandbox(&["postgres://127.0.0.1:5432"]))
        .await
        .unwrap();
    let objects = instance.discover(&plugin_config(&db)).await.unwrap();
    let names: Vec<&str> = objects.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        names,
        ["pgsales.big_orders", "pgsales.every_type", "pgsales.orders"],
        "tables and views of user schemas only"
    );
    let fields = |name: &str| -> Vec<(String, bool, bool)> {
        objects
            .iter()
            .find(|o| o.name == name)
            .unwrap()
            .fields
            .iter()
            .map(|f| (f.name.clone(), f.identifier, f.nullable))
            .collect()
    };
    let owned = |v: &[(&str, bool, bool)]| -> Vec<(String, bool, bool)> {
        v.iter().map(|(n, i, x)| (n.to_string(), *i, *x)).collect()
    };
    assert_eq!(
        fields("pgsales.orders"),
        owned(&[
            ("region", true, false),
            ("id", true, false),
            ("note", false, true)
        ])
    );
    assert_eq!(
        fields("pgsales.big_orders"),
        owned(&[("id", false, true), ("note", false, true)])
    );
    let every = objects
        .iter()
        .find(|o| o.name == "pgsales.every_type")
        .unwrap();
    let kinds: Vec<String> = every
        .fields
        .iter()
        .map(|f| format!("{}:{:?}", f.name, f.type_))
        .collect();
    assert_eq!(kinds[0], "id:FieldType::Integer");
    assert_eq!(kinds[6], "num:FieldType::Decimal");
    assert_eq!(kinds[12], "tstz:FieldType::Timestamp");
    // The domain resolves to its base type and the enum array to JSON,
    // through the mode's pg_type query (no typcategory).
    assert_eq!(kinds[16], "dom:FieldType::Decimal");
    assert_eq!(kinds[17], "moods:FieldType::Json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redshift_mode_reads_are_read_only() {
    let db = setup();
    let test = runtime();
    let plugin = Plugin::from_bytes(&test.runtime, "postgres", plugins::POSTGRES).unwrap();
    let mut instance = plugin
        .instantiate(&sandbox(&["postgres://127.0.0.1:5432"]))
        .await
        .unwrap();
    let write = "INSERT INTO pgsales.orders VALUES ('eu', 1, 'x') RETURNING id";
    let err = match instance
        .read(&plugin_config(&db), &ReadRequest::Query(write.into()))
        .await
    {
        Ok(reader) => instance.next_batch(&reader, 10).await.err().unwrap(),
        Err(e) => e,
    };
    assert!(
        err.to_string().contains("25006") && err.to_string().contains("read-only transaction"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redshift_mode_syncs_every_shared_type_into_the_webhook_as_documented() {
    let db = setup();
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    // The session's settings are the server's (the mode sends no
    // IntervalStyle or extra_float_digits, which Redshift lacks or caps),
    // so the interval is in PostgreSQL's default style.
    let query = "SELECT t.*, current_setting('IntervalStyle') AS interval_style \
                 FROM pgsales.every_type t ORDER BY id";
    let yaml = format!(
        r#"
sources:
  rs: {{ plugin: postgres, config: {{ host: 127.0.0.1, port: 5432, user: postgres, database: {db}, redshift: true }}, grants: ["postgres://127.0.0.1:5432"] }}
destinations:
  hook: {{ plugin: webhook, config: {{ url: "{url}", max_retries: 0 }}, grants: ["{grant}"] }}
models:
  rows: {{ source: rs, query: "{query}", primary_key: id }}
syncs:
  rows: {{ model: rows, destination: hook, object: rows, mode: upsert, identifier: id }}
"#,
        db = db.name,
        url = rx.url,
        grant = rx.grant()
    );
    std::fs::write(dir.path().join("sluice.yaml"), yaml).unwrap();
    let report = run_sync(dir.path(), "rows", &Default::default()).await;
    assert_eq!(report.counts.ok, 2, "{:?}", report.error);
    let rows = rx.rows();
    let row = rows.iter().find(|r| r["id"] == 1).unwrap();
    let expected = serde_json::json!({
        "id": 1, "i2": -32768, "i4": 2147483647, "i8": i64::MIN, "r": 0.1,
        "d": -f64::MAX, "b": true, "c": "ab   ", "vc": "Zürich ✓ 🚀", "dt": "1969-12-31",
        "ts": "2024-02-29T23:59:59.999999Z", "tstz": "2024-05-01T10:30:00.500000Z",
        "tm": "12:34:56.789", "ttz": "12:34:56+05:30", "iv": "1 day 02:00:00",
        "dom": 12.5, "moods": ["happy", "sad"], "interval_style": "postgres",
    });
    for (name, value) in expected.as_object().unwrap() {
        assert_eq!(&row[name], value, "column {name}");
    }
    // Decimals keep every digit and their scale in the body as sent (the
    // receiver parses numbers into f64).
    let bodies = rx.requests.lock().unwrap();
    let raw: String = bodies
        .iter()
        .map(|r| String::from_utf8_lossy(&r.raw).into_owned())
        .collect();
    assert!(
        raw.contains("\"num\":1234567890123456789012345678.0123456789"),
        "{raw}"
    );
    assert!(raw.contains("\"dom\":12.50"), "{raw}");
    drop(bodies);
    let nulls = rows.iter().find(|r| r["id"] == 2).unwrap();
    assert!(
        nulls
            .as_object()
            .unwrap()
            .iter()
            .all(|(k, v)| k == "id" || k == "interval_style" || v.is_null()),
        "{nulls}"
    );
}
