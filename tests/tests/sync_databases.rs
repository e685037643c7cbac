//! The `postgres-destination` and `mysql-destination` plugins end to end:
//! real syncs from the files source (and the postgres source) through the
//! sandboxed destinations into the real PostgreSQL (127.0.0.1:5432) and
//! MariaDB (127.0.0.1:3306), in every mode, checking the exact contents of
//! the table after each run, reruns that send nothing, mirror deletes and
//! a constraint violation that rejects only its row. Each test works in
//! its own database, dropped at the end.

use sluice_tests as common;

use common::*;
use sluice_engine::run::{RunOptions, RunReport};
use sluice_state::{RunStatus, SqliteStore, StateStore};
use std::path::Path;
use std::process::Command;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Postgres,
    MySql,
}

/// A scratch database on one of the two servers, dropped at the end.
struct Db {
    kind: Kind,
    name: String,
}

impl Db {
    fn new(kind: Kind, test: &str) -> Db {
        let name = format!("sluice_dbdest_{test}_{}", std::process::id());
        let db = Db { kind, name };
        db.admin(&format!("DROP DATABASE IF EXISTS {}", db.name));
        db.admin(&format!("CREATE DATABASE {}", db.name));
        db
    }

    fn admin(&self, sql: &str) {
        let admin_db = match self.kind {
            Kind::Postgres => "postgres",
            Kind::MySql => "mysql",
        };
        self.client(admin_db, sql);
    }

    /// Run `sql` in the database; its output lines, columns split by `|`.
    fn sql(&self, sql: &str) -> Vec<String> {
        self.client(&self.name, sql)
    }

    fn client(&self, database: &str, sql: &str) -> Vec<String> {
        let output = match self.kind {
            Kind::Postgres => Command::new("psql")
                .args(["-h", "127.0.0.1", "-U", "postgres", "-d", database])
                .args(["-v", "ON_ERROR_STOP=1", "-q", "-At", "-F", "|", "-c", sql])
                .output(),
            Kind::MySql => Command::new("mariadb")
                .args(["-h", "127.0.0.1", "-u", "root", "-D", database])
                .args(["--default-character-set=utf8mb4", "-N", "-B", "-e", sql])
                .output(),
        }
        .expect("the database client runs");
        assert!(
            output.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|l| l.replace('\t', "|"))
            .collect()
    }

    /// A table's name as the destination's `discover` reports it.
    fn object(&self, table: &str) -> String {
        match self.kind {
            Kind::Postgres => format!("public.{table}"),
            Kind::MySql => table.to_owned(),
        }
    }

    /// The `destinations:` entry that writes into this database.
    fn destination(&self) -> String {
        match self.kind {
            Kind::Postgres => format!(
                r#"{{ plugin: postgres-destination, config: {{ host: 127.0.0.1, port: 5432, user: postgres, database: {} }}, grants: ["postgres://127.0.0.1:5432"] }}"#,
                self.name
            ),
            Kind::MySql => format!(
                r#"{{ plugin: mysql-destination, config: {{ host: 127.0.0.1, port: 3306, user: root, database: {} }}, grants: ["mysql://127.0.0.1:3306"] }}"#,
                self.name
            ),
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let force = match self.kind {
            Kind::Postgres => " WITH (FORCE)",
            Kind::MySql => "",
        };
        self.admin(&format!("DROP DATABASE IF EXISTS {}{force}", self.name));
    }
}

/// A project syncing `data/customers.csv` (id, email, ltv) into `object`.
fn project(dir: &Path, db: &Db, object: &str, mode: &str) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let yaml = format!(
        r#"
sources:
  files:
    plugin: files
    config: {{ path: /data }}
    grants: ["dir:data:/data"]
destinations:
  db: {destination}
models:
  customers:
    source: files
    object: customers.csv
    primary_key: id
syncs:
  customers:
    model: customers
    destination: db
    object: {object}
    mode: {mode}
    identifier: id
    batch_size: 2
    mappings:
      - {{ from: id, to: id, type: integer }}
      - {{ from: email, to: email }}
      - {{ from: ltv, to: ltv, type: number }}
"#,
        destination = db.destination()
    );
    std::fs::write(dir.join("sluice.yaml"), yaml).unwrap();
}

fn csv(dir: &Path, rows: &[(&str, &str, &str)]) {
    let mut text = String::from("id,email,ltv\n");
    for (id, email, ltv) in rows {
        text.push_str(&format!("{id},{email},{ltv}\n"));
    }
    std::fs::write(dir.join("data/customers.csv"), text).unwrap();
}

async fn run(dir: &Path) -> RunReport {
    run_sync(dir, "customers", &RunOptions::default()).await
}

const FIRST: [(&str, &str, &str); 3] = [
    ("1", "a@x.io", "1.5"),
    ("2", "b@x.io", "2"),
    ("3", "c@x.io", "3"),
];
/// Row 2 changed, row 3 gone, row 4 new.
const SECOND: [(&str, &str, &str); 3] = [
    ("1", "a@x.io", "1.5"),
    ("2", "b2@x.io", "20"),
    ("4", "d@x.io", "4"),
];

const KEYED: &str =
    "CREATE TABLE customers (id INT PRIMARY KEY, email VARCHAR(100) NOT NULL, ltv DECIMAL(10,2))";
const EVENTS: &str = "CREATE TABLE events (id INT, email VARCHAR(100), ltv DECIMAL(10,2))";

/// What the table holds after the first run, after the second, and how
/// many rows the second run sends, per mode.
struct Expectation {
    mode: &'static str,
    object: &'static str,
    setup: &'static [&'static str],
    first: &'static [&'static str],
    second: &'static [&'static str],
    second_sent: u64,
    second_rejected: u64,
    deletes: u64,
}

const MODES: [Expectation; 5] = [
    Expectation {
        mode: "upsert",
        object: "customers",
        setup: &[KEYED],
        first: &["1|a@x.io|1.50", "2|b@x.io|2.00", "3|c@x.io|3.00"],
        second: &[
            "1|a@x.io|1.50",
            "2|b2@x.io|20.00",
            "3|c@x.io|3.00",
            "4|d@x.io|4.00",
        ],
        second_sent: 2,
        second_rejected: 0,
        deletes: 0,
    },
    // Insert sends new rows only: row 2's change stays unsent.
    Expectation {
        mode: "insert",
        object: "customers",
        setup: &[KEYED],
        first: &["1|a@x.io|1.50", "2|b@x.io|2.00", "3|c@x.io|3.00"],
        second: &[
            "1|a@x.io|1.50",
            "2|b@x.io|2.00",
            "3|c@x.io|3.00",
            "4|d@x.io|4.00",
        ],
        second_sent: 1,
        second_rejected: 0,
        deletes: 0,
    },
    // Update writes only rows that exist: row 4 is rejected.
    Expectation {
        mode: "update",
        object: "customers",
        setup: &[
            KEYED,
            "INSERT INTO customers VALUES (1, 'old', 0), (2, 'old', 0), (3, 'old', 0)",
        ],
        first: &["1|a@x.io|1.50", "2|b@x.io|2.00", "3|c@x.io|3.00"],
        second: &["1|a@x.io|1.50", "2|b2@x.io|20.00", "3|c@x.io|3.00"],
        second_sent: 2,
        second_rejected: 1,
        deletes: 0,
    },
    // Append adds a row per changed or new model row.
    Expectation {
        mode: "append",
        object: "events",
        setup: &[EVENTS],
        first: &["1|a@x.io|1.50", "2|b@x.io|2.00", "3|c@x.io|3.00"],
        second: &[
            "1|a@x.io|1.50",
            "2|b2@x.io|20.00",
            "2|b@x.io|2.00",
            "3|c@x.io|3.00",
            "4|d@x.io|4.00",
        ],
        second_sent: 2,
        second_rejected: 0,
        deletes: 0,
    },
    // Mirror deletes the row that left the model.
    Expectation {
        mode: "mirror",
        object: "customers",
        setup: &[KEYED],
        first: &["1|a@x.io|1.50", "2|b@x.io|2.00", "3|c@x.io|3.00"],
        second: &["1|a@x.io|1.50", "2|b2@x.io|20.00", "4|d@x.io|4.00"],
        second_sent: 3,
        second_rejected: 0,
        deletes: 1,
    },
];

async fn every_mode(kind: Kind) {
    for expect in &MODES {
        let db = Db::new(kind, expect.mode);
        for sql in expect.setup {
            db.sql(sql);
        }
        let contents = || {
            db.sql(&format!(
                "SELECT id, email, ltv FROM {} ORDER BY id, email",
                expect.object
            ))
        };
        let dir = tempfile::tempdir().unwrap();
        project(dir.path(), &db, &db.object(expect.object), expect.mode);
        csv(dir.path(), &FIRST);
        let first = run(dir.path()).await;
        let label = format!("{kind:?} {}", expect.mode);
        assert_eq!(
            (first.status, first.counts.sent, first.counts.ok),
            (RunStatus::Succeeded, 3, 3),
            "{label}: {:?}",
            first.error
        );
        assert_eq!(contents(), expect.first, "{label}: after the first run");

        let rerun = run(dir.path()).await;
        assert_eq!(
            (rerun.counts.sent, rerun.counts.unchanged),
            (0, 3),
            "{label}: a rerun sends nothing"
        );

        csv(dir.path(), &SECOND);
        let second = run(dir.path()).await;
        assert_eq!(
            second.status,
            RunStatus::Succeeded,
            "{label}: {:?}",
            second.error
        );
        assert_eq!(
            (
                second.counts.sent,
                second.counts.rejected,
                second.mirror.deletes
            ),
            (expect.second_sent, expect.second_rejected, expect.deletes),
            "{label}: the second run"
        );
        assert_eq!(contents(), expect.second, "{label}: after the second run");

        // Nothing changed since: only a rejected row is tried again.
        let third = run(dir.path()).await;
        assert_eq!(
            third.counts.sent, expect.second_rejected,
            "{label}: the third run"
        );
        assert_eq!(contents(), expect.second, "{label}: after the third run");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_to_postgres_in_every_mode() {
    every_mode(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_to_mysql_in_every_mode() {
    every_mode(Kind::MySql).await;
}

/// One row breaks a CHECK constraint: it alone is rejected, with the
/// database's message in the ledger; the rows around it are written.
async fn a_constraint_violation_rejects_only_its_row(kind: Kind, expected_message: &str) {
    let db = Db::new(kind, "check");
    db.sql("CREATE TABLE customers (id INT PRIMARY KEY, email VARCHAR(100) NOT NULL, ltv DECIMAL(10,2), CONSTRAINT ltv_positive CHECK (ltv >= 0))");
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &db, &db.object("customers"), "upsert");
    csv(
        dir.path(),
        &[
            ("1", "a@x.io", "1"),
            ("2", "b@x.io", "-2"),
            ("3", "c@x.io", "3"),
            ("4", "d@x.io", "4"),
            ("5", "e@x.io", "5"),
        ],
    );
    let report = run(dir.path()).await;
    assert_eq!(
        (report.status, report.counts.ok, report.counts.rejected),
        (RunStatus::Succeeded, 4, 1),
        "{kind:?}: {:?}",
        report.error
    );
    assert_eq!(
        db.sql("SELECT id FROM customers ORDER BY id"),
        ["1", "3", "4", "5"]
    );
    let store = SqliteStore::open_project(dir.path()).unwrap();
    let ledger = store.ledger("customers").unwrap();
    assert_eq!(ledger.len(), 1, "{kind:?}: {ledger:?}");
    assert!(
        ledger[0].message.contains(expected_message),
        "{kind:?}: {}",
        ledger[0].message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_violation_rejects_only_its_row_in_postgres() {
    a_constraint_violation_rejects_only_its_row(
        Kind::Postgres,
        "ERROR 23514: new row for relation \"customers\" violates check constraint \"ltv_positive\"",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_violation_rejects_only_its_row_in_mysql() {
    a_constraint_violation_rejects_only_its_row(
        Kind::MySql,
        "ERROR 4025 (23000): CONSTRAINT `ltv_positive` failed",
    )
    .await;
}

/// The postgres source into the mysql destination: database to database,
/// every value type the two share, and a rerun that sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_to_mysql_carries_every_shared_type() {
    let source = Db::new(Kind::Postgres, "source");
    source.sql(
        "CREATE TABLE accounts (id int PRIMARY KEY, name text, balance numeric(12,2), rate float8,
            active boolean, opened date, seen timestamptz, doc jsonb, raw bytea);
         INSERT INTO accounts VALUES
           (1, 'Zürich ✓ it''s', 1234567890.12, 0.25, true, '2024-02-29', '2024-05-01 12:30:00.000001+00', '{\"a\": [1, \"ü\"]}', '\\xdead'),
           (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    );
    let target = Db::new(Kind::MySql, "target");
    target.sql(
        "CREATE TABLE accounts (id INT PRIMARY KEY, name TEXT, balance DECIMAL(12,2), rate DOUBLE,
            active BOOLEAN, opened DATE, seen DATETIME(6), doc JSON, raw VARBINARY(10))",
    );
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"
sources:
  pg:
    plugin: postgres
    config: {{ host: 127.0.0.1, port: 5432, user: postgres, database: {source} }}
    grants: ["postgres://127.0.0.1:5432"]
destinations:
  db: {destination}
models:
  customers:
    source: pg
    object: public.accounts
    primary_key: id
syncs:
  customers:
    model: customers
    destination: db
    object: accounts
    mode: upsert
    identifier: id
"#,
        source = source.name,
        destination = target.destination()
    );
    std::fs::write(dir.path().join("sluice.yaml"), yaml).unwrap();
    let first = run(dir.path()).await;
    assert_eq!(
        (first.status, first.counts.ok),
        (RunStatus::Succeeded, 2),
        "{:?}",
        first.error
    );
    assert_eq!(
        target.sql("SELECT id, name, balance, rate, active, opened, seen, doc, HEX(raw) FROM accounts ORDER BY id"),
        [
            "1|Zürich ✓ it's|1234567890.12|0.25|1|2024-02-29|2024-05-01 12:30:00.000001|{\"a\": [1, \"ü\"]}|DEAD",
            "2|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL",
        ]
    );
    let rerun = run(dir.path()).await;
    assert_eq!((rerun.counts.sent, rerun.counts.unchanged), (0, 2));
}
