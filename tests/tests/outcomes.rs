//! `outcomes:` end to end against the real PostgreSQL (127.0.0.1:5432): a
//! postgres source into the sandboxed `postgres-destination`, where a CHECK
//! constraint rejects a row, with each run's per-row outcomes appended to
//! an outcome table through a second postgres-destination connection. The
//! outcome table is read back with SQL: the exact rows of a first run and
//! a rerun, `rows: failed`, an outcome table that refuses rows (the run
//! fails at `outcomes`, the deliveries' state stays exact) and a missing
//! one (plan and run refuse before anything is sent). Each test works in a
//! database of its own, dropped at the end.

use sluice_tests as common;

use common::*;
use sluice_engine::run::{RunOptions, RunReport};
use sluice_state::{RunStatus, SqliteStore, StateStore};
use std::path::Path;
use std::process::Command;

/// A scratch PostgreSQL database, dropped at the end.
struct Db {
    name: String,
}

impl Db {
    fn new(test: &str) -> Db {
        let db = Db {
            name: format!("sluice_outcomes_{test}_{}", std::process::id()),
        };
        psql("postgres", &format!("DROP DATABASE IF EXISTS {}", db.name));
        psql("postgres", &format!("CREATE DATABASE {}", db.name));
        db
    }

    fn sql(&self, sql: &str) -> Vec<String> {
        psql(&self.name, sql)
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// `sql` in `database`; output lines, columns split by `|`, NULL as `∅`.
fn psql(database: &str, sql: &str) -> Vec<String> {
    let output = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", database])
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-At", "-F", "|"])
        .args(["-P", "null=∅", "-c", sql])
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

/// The outcome table's DDL, as README gives it.
const OUTCOMES_DDL: &str = "CREATE TABLE sluice_outcomes (
    run_id      BIGINT      NOT NULL,
    sync_name   TEXT        NOT NULL,
    row_key     TEXT,
    operation   TEXT        NOT NULL,
    status      TEXT        NOT NULL,
    message     TEXT,
    recorded_at TIMESTAMPTZ NOT NULL
)";

/// The model's table (no key constraint: a null id is the model's
/// problem, found invalid by the run) and the two destination tables.
fn setup(db: &Db) {
    db.sql("CREATE TABLE model_customers (id INT, email TEXT, ltv NUMERIC)");
    db.sql(
        "INSERT INTO model_customers VALUES \
         (1, 'a@x.io', 1), (2, 'b@x.io', -2), (3, 'c@x.io', 3), (NULL, 'nokey@x.io', 4)",
    );
    for table in ["customers", "customers_failed", "customers_mirror"] {
        db.sql(&format!(
            "CREATE TABLE {table} (id INT PRIMARY KEY, email TEXT NOT NULL, ltv NUMERIC(10,2), \
             CONSTRAINT {table}_ltv_positive CHECK (ltv >= 0))"
        ));
    }
}

/// Syncs of the same model: `customers` writes every row's outcome,
/// `customers_failed` only the failures, `customers_mirror` (mirror mode)
/// its deletes too, all to `outcomes_table`.
fn project(dir: &Path, db: &Db, outcomes_table: &str) {
    let conn = format!(
        "config: {{ host: 127.0.0.1, port: 5432, user: postgres, database: {} }}, \
         grants: [\"postgres://127.0.0.1:5432\"]",
        db.name
    );
    let yaml = format!(
        r#"
sources:
  pg: {{ plugin: postgres, {conn} }}
destinations:
  app: {{ plugin: postgres-destination, {conn} }}
  warehouse: {{ plugin: postgres-destination, {conn} }}
models:
  customers:
    source: pg
    query: select id, email, ltv from model_customers order by id nulls last
    primary_key: id
syncs:
  customers:
    model: customers
    destination: app
    object: public.customers
    mode: upsert
    identifier: id
    outcomes: {{ destination: warehouse, object: {outcomes_table} }}
  customers_failed:
    model: customers
    destination: app
    object: public.customers_failed
    mode: upsert
    identifier: id
    outcomes:
      destination: warehouse
      object: {outcomes_table}
      rows: failed
  customers_mirror:
    model: customers
    destination: app
    object: public.customers_mirror
    mode: mirror
    identifier: id
    outcomes: {{ destination: warehouse, object: {outcomes_table} }}
"#
    );
    std::fs::write(dir.join("sluice.yaml"), yaml).unwrap();
}

async fn run(dir: &Path, sync: &str) -> RunReport {
    run_sync(dir, sync, &RunOptions::default()).await
}

/// A sync's outcome rows: run, key, operation, status, message; in key
/// order (no key last).
fn outcomes(db: &Db, table: &str, sync: &str) -> Vec<String> {
    db.sql(&format!(
        "SELECT run_id, row_key, operation, status, message FROM {table} \
         WHERE sync_name = '{sync}' ORDER BY run_id, row_key NULLS LAST"
    ))
}

/// The ledger's message for key 2, as the state store keeps it.
fn ledger_message(dir: &Path, sync: &str) -> String {
    let store = SqliteStore::open_project(dir).unwrap();
    let ledger = store.ledger(sync).unwrap();
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    ledger[0].message.clone()
}

const INVALID: &str = "source row 4: primary key column `id` is null";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_runs_per_row_outcomes_land_in_the_warehouse_table() {
    let db = Db::new("rows");
    setup(&db);
    db.sql(OUTCOMES_DDL);
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &db, "public.sluice_outcomes");

    // A plan says where outcomes go and writes none.
    let plan = run_sync(
        dir.path(),
        "customers",
        &RunOptions {
            dry_run: true,
            ..Default::default()
        },
    )
    .await;
    let planned = plan.outcomes.expect("the plan names the outcome table");
    assert_eq!(
        (
            planned.destination.as_str(),
            planned.object.as_str(),
            planned.rows
        ),
        ("warehouse", "public.sluice_outcomes", "all")
    );
    assert_eq!(db.sql("SELECT count(*) FROM sluice_outcomes"), ["0"]);

    let first = run(dir.path(), "customers").await;
    assert_eq!(first.status, RunStatus::Succeeded, "{:?}", first.error);
    assert_eq!(
        (first.counts.ok, first.counts.rejected, first.counts.invalid),
        (2, 1, 1)
    );
    assert_eq!(first.outcomes.as_ref().unwrap().written, 4);
    let run1 = first.run_id.unwrap();
    let rejected = ledger_message(dir.path(), "customers");
    assert!(
        rejected.contains("violates check constraint \"customers_ltv_positive\""),
        "{rejected}"
    );
    assert_eq!(
        outcomes(&db, "sluice_outcomes", "customers"),
        [
            format!("{run1}|1|upsert|ok|∅"),
            format!("{run1}|2|upsert|rejected|{rejected}"),
            format!("{run1}|3|upsert|ok|∅"),
            format!("{run1}|∅|upsert|invalid|{INVALID}"),
        ]
    );
    // One time per commit, within the run.
    assert_eq!(
        db.sql(&format!(
            "SELECT count(*) FROM sluice_outcomes WHERE run_id = {run1} \
             AND recorded_at BETWEEN now() - interval '5 minutes' AND now()"
        )),
        ["4"]
    );

    // The rerun: row 1 unchanged (no outcome), row 3 changed, row 2
    // retried from the ledger and rejected again, the null key still
    // invalid.
    db.sql("UPDATE model_customers SET email = 'c2@x.io' WHERE id = 3");
    let second = run(dir.path(), "customers").await;
    assert_eq!(second.status, RunStatus::Succeeded, "{:?}", second.error);
    assert_eq!(
        (
            second.counts.unchanged,
            second.counts.ok,
            second.counts.rejected
        ),
        (1, 1, 1)
    );
    let run2 = second.run_id.unwrap();
    assert_eq!(
        outcomes(&db, "sluice_outcomes", "customers"),
        [
            format!("{run1}|1|upsert|ok|∅"),
            format!("{run1}|2|upsert|rejected|{rejected}"),
            format!("{run1}|3|upsert|ok|∅"),
            format!("{run1}|∅|upsert|invalid|{INVALID}"),
            format!("{run2}|2|upsert|rejected|{rejected}"),
            format!("{run2}|3|upsert|ok|∅"),
            format!("{run2}|∅|upsert|invalid|{INVALID}"),
        ]
    );
    assert_eq!(
        db.sql("SELECT id, email FROM customers ORDER BY id"),
        ["1|a@x.io", "3|c2@x.io"]
    );

    // `rows: failed`: the rejected and invalid rows only, in the same
    // table, told apart by sync name.
    let failed = run(dir.path(), "customers_failed").await;
    assert_eq!(failed.status, RunStatus::Succeeded, "{:?}", failed.error);
    assert_eq!(failed.outcomes.as_ref().unwrap().written, 2);
    let run3 = failed.run_id.unwrap();
    let rejected = ledger_message(dir.path(), "customers_failed");
    assert_eq!(
        outcomes(&db, "sluice_outcomes", "customers_failed"),
        [
            format!("{run3}|2|upsert|rejected|{rejected}"),
            format!("{run3}|∅|upsert|invalid|{INVALID}"),
        ]
    );
    assert_eq!(
        db.sql("SELECT id FROM customers_failed ORDER BY id"),
        ["1", "3"]
    );
}

/// An outcome table that refuses some outcome rows (a constraint of its
/// own): the deliveries go on and stay committed, the run fails at
/// `outcomes` naming the sync, destination, table and the database's
/// message, and the next run sends only what state says was not
/// delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_outcome_table_fails_the_run_and_leaves_delivered_state_exact() {
    let db = Db::new("refuse");
    setup(&db);
    db.sql(OUTCOMES_DDL);
    db.sql("ALTER TABLE sluice_outcomes ADD CONSTRAINT no_rejections CHECK (status <> 'rejected')");
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &db, "public.sluice_outcomes");

    let first = run(dir.path(), "customers").await;
    assert_eq!(first.status, RunStatus::Failed);
    assert_eq!(first.stage.as_deref(), Some("outcomes"));
    let error = first.error.clone().unwrap();
    assert!(
        error.starts_with(
            "sync `customers`: outcomes not written to `public.sluice_outcomes` on destination \
             `warehouse`: 1 outcome row(s) refused (the first: ERROR 23514: new row for \
             relation \"sluice_outcomes\" violates check constraint \"no_rejections\""
        ),
        "{error}"
    );
    assert!(
        error.ends_with("the deliveries are committed and their state is unaffected"),
        "{error}"
    );
    // The deliveries are what they would have been.
    assert_eq!(
        (first.counts.ok, first.counts.rejected, first.counts.invalid),
        (2, 1, 1)
    );
    assert_eq!(db.sql("SELECT id FROM customers ORDER BY id"), ["1", "3"]);
    // The run is on the record as failed at `outcomes`, with its error.
    let store = SqliteStore::open_project(dir.path()).unwrap();
    let record = store.run(first.run_id.unwrap()).unwrap().unwrap();
    assert_eq!(
        (
            record.status,
            record.stage.as_deref(),
            record.error.as_deref()
        ),
        (RunStatus::Failed, Some("outcomes"), Some(error.as_str()))
    );
    drop(store);
    // The outcome rows the table took are there.
    let run1 = first.run_id.unwrap();
    assert_eq!(
        outcomes(&db, "sluice_outcomes", "customers"),
        [
            format!("{run1}|1|upsert|ok|∅"),
            format!("{run1}|3|upsert|ok|∅"),
            format!("{run1}|∅|upsert|invalid|{INVALID}"),
        ]
    );

    // State holds exactly what the destination accepted: the rerun sends
    // only the rejected row again (from the ledger), and rows 1 and 3 are
    // unchanged.
    db.sql("ALTER TABLE sluice_outcomes DROP CONSTRAINT no_rejections");
    let second = run(dir.path(), "customers").await;
    assert_eq!(second.status, RunStatus::Succeeded, "{:?}", second.error);
    assert_eq!(
        (
            second.counts.unchanged,
            second.counts.sent,
            second.counts.rejected
        ),
        (2, 1, 1)
    );
    let run2 = second.run_id.unwrap();
    let rejected = ledger_message(dir.path(), "customers");
    assert_eq!(
        db.sql(&format!(
            "SELECT row_key, status, message FROM sluice_outcomes WHERE run_id = {run2} \
             ORDER BY row_key NULLS LAST"
        )),
        [
            format!("2|rejected|{rejected}"),
            format!("∅|invalid|{INVALID}"),
        ]
    );
}

/// A missing outcome table is refused by plan and by run before anything
/// is read or sent, naming the sync, the destination and the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_outcome_table_is_refused_before_anything_is_sent() {
    let db = Db::new("missing");
    setup(&db);
    db.sql(OUTCOMES_DDL);
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &db, "public.sluice_outcome");

    let expected = "outcomes of sync `customers` to `public.sluice_outcome` on destination \
                    `warehouse`: the destination has no table `public.sluice_outcome` it may \
                    write; did you mean `public.sluice_outcomes`?";
    let plan = Loaded::open(dir.path())
        .engine()
        .run(
            "customers",
            &RunOptions {
                dry_run: true,
                ..Default::default()
            },
        )
        .await
        .expect_err("the plan is refused");
    assert!(format!("{plan:#}").contains(expected), "{plan:#}");

    let report = run(dir.path(), "customers").await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(report.stage.as_deref(), Some("discover"));
    let error = report.error.unwrap();
    assert!(error.contains(expected), "{error}");
    assert_eq!(report.counts.sent, 0);
    assert_eq!(db.sql("SELECT count(*) FROM customers"), ["0"]);
}

/// Mirror mode: a row that left the model is deleted, and its outcome is a
/// `delete` that the destination accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_deletes_have_outcomes_too() {
    let db = Db::new("mirror");
    setup(&db);
    db.sql(OUTCOMES_DDL);
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &db, "public.sluice_outcomes");

    let first = run(dir.path(), "customers_mirror").await;
    assert_eq!(first.status, RunStatus::Succeeded, "{:?}", first.error);
    db.sql("DELETE FROM model_customers WHERE id = 3");
    let second = run(dir.path(), "customers_mirror").await;
    assert_eq!(second.status, RunStatus::Succeeded, "{:?}", second.error);
    assert_eq!(second.mirror.deletes, 1);
    let run2 = second.run_id.unwrap();
    let rejected = ledger_message(dir.path(), "customers_mirror");
    assert_eq!(
        outcomes(&db, "sluice_outcomes", "customers_mirror")
            .into_iter()
            .filter(|r| r.starts_with(&format!("{run2}|")))
            .collect::<Vec<_>>(),
        [
            format!("{run2}|2|upsert|rejected|{rejected}"),
            format!("{run2}|3|delete|ok|∅"),
            // Row 3 left the model: the null key is its third row now.
            format!("{run2}|∅|upsert|invalid|source row 3: primary key column `id` is null"),
        ]
    );
    assert_eq!(db.sql("SELECT id FROM customers_mirror ORDER BY id"), ["1"]);
}
