//! dbt models as sources, with a real dbt project (dbt-core and
//! dbt-postgres from tests/dbt/requirements.txt, installed into
//! target/dbt-venv by scripts/vendor-clients.sh) building its models in the
//! local PostgreSQL: the relation and key come from dbt's manifest, a
//! renamed relation is followed, and `sluice run --after-dbt` runs exactly
//! the syncs whose models the dbt run rebuilt and whose tests passed.

use sluice_tests::{receiver, shared_cache_dir, PgDatabase, Receiver};
use std::path::{Path, PathBuf};
use std::process::Command;

fn dbt_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/dbt-venv/bin/dbt");
    assert!(
        bin.is_file(),
        "{} is missing: run `bash scripts/vendor-clients.sh` (scripts/test does)",
        bin.display()
    );
    bin
}

/// Runs dbt in the project; whether it succeeded (a failing test fails it).
fn dbt(project: &Path, args: &[&str]) -> bool {
    let out = Command::new(dbt_bin())
        .args(args)
        .arg("--project-dir")
        .arg(project)
        .arg("--profiles-dir")
        .arg(project)
        .arg("--no-version-check")
        .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        .env("DO_NOT_TRACK", "1")
        .output()
        .expect("dbt runs");
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    }
    out.status.success()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn seed(project: &Path, rows: &[(&str, u32)]) {
    let mut csv = String::from("email,amount\n");
    for (email, amount) in rows {
        csv.push_str(&format!("{email},{amount}\n"));
    }
    write(&project.join("seeds/raw_orders.csv"), &csv);
}

/// A dbt project with a seed, two models and a `unique` test on the key.
fn dbt_project(project: &Path, db: &PgDatabase) {
    write(
        &project.join("dbt_project.yml"),
        "name: analytics\nversion: '1.0'\nconfig-version: 2\nprofile: analytics\n",
    );
    write(
        &project.join("profiles.yml"),
        &format!(
            "analytics:\n  target: dev\n  outputs:\n    dev:\n      type: postgres\n      host: 127.0.0.1\n      port: 5432\n      user: postgres\n      password: ''\n      dbname: {}\n      schema: analytics\n      threads: 1\n",
            db.name
        ),
    );
    write(
        &project.join("models/customer_ltv.sql"),
        "select email, sum(amount) as lifetime_value from {{ ref('raw_orders') }} group by email\n",
    );
    write(
        &project.join("models/order_count.sql"),
        "select count(*) as orders, 1 as id from {{ ref('raw_orders') }}\n",
    );
    write(
        &project.join("models/schema.yml"),
        "version: 2\nmodels:\n  - name: customer_ltv\n    columns:\n      - name: email\n        data_tests: [unique, not_null]\n  - name: order_count\n    config:\n      unique_key: id\n",
    );
}

fn sluice_project(dir: &Path, db: &PgDatabase, rx: &Receiver) {
    write(
        &dir.join("sluice.yaml"),
        &format!(
            r#"
sources:
  warehouse:
    plugin: postgres
    config: {{ host: 127.0.0.1, port: 5432, user: postgres, database: {db} }}
    grants: ["postgres://127.0.0.1:5432"]
destinations:
  hook: {{ plugin: webhook, config: {{ url: "{url}" }}, grants: ["{grant}"] }}
models:
  ltv: {{ source: warehouse, dbt: customer_ltv, project: analytics }}
  counts: {{ source: warehouse, dbt: order_count, project: analytics }}
syncs:
  ltv: {{ model: ltv, destination: hook, object: customers, mode: upsert, identifier: email }}
  counts: {{ model: counts, destination: hook, object: stats, mode: upsert, identifier: id }}
"#,
            db = db.name,
            url = rx.url,
            grant = rx.grant()
        ),
    );
}

fn sluice(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .arg("--project")
        .arg(dir)
        .current_dir(dir)
        .env("SLUICE_CACHE_DIR", shared_cache_dir())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The emails received so far, one entry per row sent.
fn emails(rx: &Receiver) -> Vec<String> {
    let mut out: Vec<String> = rx
        .rows()
        .iter()
        .filter_map(|r| r["email"].as_str().map(str::to_owned))
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dbt_models_are_read_by_their_relation_and_synced_after_the_dbt_run_that_rebuilt_them() {
    let db = PgDatabase::create("sluice_dbt");
    let rx = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("analytics");
    dbt_project(&project, &db);
    seed(&project, &[("a@x.com", 10), ("a@x.com", 5), ("b@x.com", 7)]);
    sluice_project(dir.path(), &db, &rx);

    // Before dbt has run there is no manifest: validate says what to do.
    let (ok, text) = sluice(dir.path(), &["validate"]);
    assert!(
        !ok && text.contains("dbt parse") && text.contains("sluice.yaml:"),
        "{text}"
    );

    assert!(dbt(&project, &["build"]), "dbt build");
    let loaded = sluice_config::validate(dir.path()).unwrap_or_else(|d| panic!("{d:?}"));
    let ltv = &loaded.models["ltv"];
    assert_eq!(ltv.primary_key, vec!["email"], "from the unique test");
    assert_eq!(
        loaded.models["counts"].primary_key,
        vec!["id"],
        "from unique_key"
    );
    let relation = &ltv.dbt.as_ref().unwrap().relation;
    assert!(
        relation.contains("\"analytics\".\"customer_ltv\""),
        "{relation}"
    );

    // Everything was built: both syncs run.
    let (ok, text) = sluice(dir.path(), &["run", "--after-dbt", "analytics"]);
    assert!(ok, "{text}");
    assert_eq!(emails(&rx), ["a@x.com", "b@x.com"]);
    assert_eq!(rx.rows().len(), 3, "two customers and one count row");

    // A later dbt run rebuilds only customer_ltv, under a new name (an
    // alias), after a new order: the sync follows the relation, and the
    // other sync is skipped with its reason.
    write(
        &project.join("models/customer_ltv.sql"),
        "{{ config(alias='customer_lifetime_value') }}\nselect email, sum(amount) as lifetime_value from {{ ref('raw_orders') }} group by email\n",
    );
    seed(
        &project,
        &[
            ("a@x.com", 10),
            ("a@x.com", 5),
            ("b@x.com", 7),
            ("c@x.com", 1),
        ],
    );
    assert!(dbt(&project, &["seed"]), "dbt seed");
    assert!(
        dbt(&project, &["run", "--select", "customer_ltv"]),
        "dbt run"
    );
    let (ok, text) = sluice(dir.path(), &["run", "--after-dbt", "analytics"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("sync `counts`: skipped (dbt did not rebuild `order_count` in this run)"),
        "{text}"
    );
    assert_eq!(
        emails(&rx),
        ["a@x.com", "b@x.com", "c@x.com"],
        "only the new customer"
    );

    // A dbt build whose unique test fails on customer_ltv: not synced.
    std::fs::write(
        project.join("models/customer_ltv.sql"),
        "{{ config(alias='customer_lifetime_value') }}\nselect email, amount as lifetime_value from {{ ref('raw_orders') }}\n",
    )
    .unwrap();
    assert!(
        !dbt(&project, &["build", "--select", "customer_ltv"]),
        "the test fails"
    );
    let (ok, text) = sluice(
        dir.path(),
        &["run", "--after-dbt", "analytics/target/run_results.json"],
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("sync `ltv`: skipped (dbt tests of `customer_ltv` failed)"),
        "{text}"
    );
    assert_eq!(emails(&rx).len(), 3, "nothing sent");
}
