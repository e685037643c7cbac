//! `outcomes:` through the binary, against the real PostgreSQL
//! (127.0.0.1:5432): `sluice validate` refuses a missing outcome table at
//! the line of the sync's `outcomes:`, naming the sync, the destination and
//! the table; `sluice plan` says where outcomes go; `sluice run` says how
//! many it wrote.

use std::path::Path;
use std::process::{Command, Output};

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("sluice runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn psql(database: &str, sql: &str) {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", database])
        .args(["-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Db(String);

impl Drop for Db {
    fn drop(&mut self) {
        psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0),
        );
    }
}

fn project(dir: &Path, db: &str) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(
        dir.join("data/people.csv"),
        "id,email\n1,a@x.io\n2,b@x.io\n",
    )
    .unwrap();
    let conn = format!(
        "config: {{ host: 127.0.0.1, port: 5432, user: postgres, database: {db} }}, \
         grants: [\"postgres://127.0.0.1:5432\"]"
    );
    std::fs::write(
        dir.join("sluice.yaml"),
        format!(
            r#"sources:
  files: {{ plugin: files, config: {{ path: /data }}, grants: ["dir:data:/data"] }}
destinations:
  app: {{ plugin: postgres-destination, {conn} }}
  warehouse: {{ plugin: postgres-destination, {conn} }}
models:
  people: {{ source: files, object: people.csv, primary_key: id }}
syncs:
  people:
    model: people
    destination: app
    object: public.people
    mode: upsert
    identifier: id
    mappings: [{{ from: id, to: id, type: integer }}, {{ from: email, to: email }}]
    outcomes: {{ destination: warehouse, object: public.sluice_outcomes }}
"#
        ),
    )
    .unwrap();
}

#[test]
fn validate_plan_and_run_tell_where_outcomes_go() {
    let db = Db(format!("sluice_outcomes_cli_{}", std::process::id()));
    psql("postgres", &format!("DROP DATABASE IF EXISTS {}", db.0));
    psql("postgres", &format!("CREATE DATABASE {}", db.0));
    psql(
        &db.0,
        "CREATE TABLE people (id INT PRIMARY KEY, email TEXT)",
    );
    let dir = tempfile::tempdir().unwrap();
    let project_dir = dir.path();
    project(project_dir, &db.0);
    let at = project_dir.to_str().unwrap();

    let out = sluice(&["validate", "-C", at]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("sluice.yaml:16:15")
            && t.contains(
                "outcomes of sync `people` to `public.sluice_outcomes` on destination \
                 `warehouse`: the destination has no table `public.sluice_outcomes` it may write"
            ),
        "{t}"
    );

    psql(
        &db.0,
        "CREATE TABLE sluice_outcomes (run_id BIGINT NOT NULL, sync_name TEXT NOT NULL, \
         row_key TEXT, operation TEXT NOT NULL, status TEXT NOT NULL, message TEXT, \
         recorded_at TIMESTAMPTZ NOT NULL)",
    );
    let out = sluice(&["validate", "-C", at]);
    assert!(out.status.success(), "{}", text(&out));

    let out = sluice(&["plan", "people", "-C", at]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains(
            "outcomes: each run appends its per-row outcomes (rows: all) to \
             `public.sluice_outcomes` on destination `warehouse` (checked)"
        ),
        "{t}"
    );

    let out = sluice(&["run", "people", "-C", at]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains(
            "outcomes: 2 row(s) written to `public.sluice_outcomes` on destination `warehouse`"
        ),
        "{t}"
    );
}
