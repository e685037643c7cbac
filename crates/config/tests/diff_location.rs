//! `diff: host | warehouse` on a model: parsed, defaulted, and a bad value
//! reported with its line and the values accepted.

use sluice_config::{self as config, DiffLocation};

fn project(diff_line: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"
sources:
  pg: {{ plugin: postgres, config: {{ host: db }}, grants: ["postgres://db:5432"] }}
destinations:
  hook: {{ plugin: webhook, config: {{ url: "https://h.example.com" }}, grants: ["https://h.example.com"] }}
models:
  users:
    source: pg
    query: select id from users
    primary_key: id
{diff_line}
  plain:
    source: pg
    query: select id from users
    primary_key: id
syncs:
  users: {{ model: users, destination: hook, object: o, mode: upsert, identifier: id }}
"#
    );
    std::fs::write(dir.path().join("sluice.yaml"), yaml).unwrap();
    dir
}

#[test]
fn a_models_diff_is_host_unless_it_says_warehouse() {
    let dir = project("    diff: warehouse");
    let p = config::validate(dir.path()).unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(p.models["users"].diff, DiffLocation::Warehouse);
    assert_eq!(p.models["plain"].diff, DiffLocation::Host);
    let dir = project("    diff: host");
    let p = config::validate(dir.path()).unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(p.models["users"].diff, DiffLocation::Host);
}

#[test]
fn an_unknown_diff_is_reported_with_its_line_and_the_choices() {
    let dir = project("    diff: warehose");
    let diags = config::validate(dir.path()).expect_err("invalid");
    let d = diags
        .iter()
        .find(|d| d.message.contains("diff"))
        .unwrap_or_else(|| panic!("{diags:#?}"));
    assert_eq!(d.line, 11, "{d}");
    assert!(
        d.message.contains("warehose") && d.message.contains("model `users`"),
        "{d}"
    );
    assert_eq!(d.expected.as_deref(), Some("host, warehouse"));
}
