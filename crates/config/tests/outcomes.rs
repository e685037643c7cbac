//! `outcomes:` of a sync: where each run's per-row results are written.
//! Good values load; every bad value is reported with its file, line and
//! column, naming the sync.

use sluice_config::{self as config, Diagnostic, OutcomeRows};

fn project(outcomes: &str) -> String {
    format!(
        r#"
sources:
  warehouse:
    plugin: postgres
    config: {{ host: 127.0.0.1 }}
    grants: ["postgres://127.0.0.1:5432"]
destinations:
  crm:
    plugin: webhook
    config: {{ url: "https://hooks.example.com/in" }}
    grants: ["https://hooks.example.com"]
  warehouse_out:
    plugin: postgres-destination
    config: {{ host: 127.0.0.1 }}
    grants: ["postgres://127.0.0.1:5432"]
models:
  users:
    source: warehouse
    query: select id, email from users
    primary_key: id
syncs:
  users_to_crm:
    model: users
    destination: crm
    object: contacts
    mode: upsert
    identifier: id
{outcomes}
"#
    )
}

fn load(outcomes: &str) -> Result<config::Project, Vec<Diagnostic>> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sluice.yaml"), project(outcomes)).unwrap();
    config::validate_with_env(dir.path(), &|_| None)
}

/// The one diagnostic of a project whose `outcomes:` is bad.
fn error(outcomes: &str) -> Diagnostic {
    let diags = load(outcomes).expect_err("the project should be refused");
    assert_eq!(diags.len(), 1, "{diags:#?}");
    diags.into_iter().next().unwrap()
}

#[test]
fn outcomes_load_with_rows_all_by_default() {
    let project =
        load("    outcomes: { destination: warehouse_out, object: public.sluice_outcomes }")
            .unwrap();
    let sync = project.sync("users_to_crm").unwrap();
    let outcomes = sync.outcomes.as_ref().expect("outcomes are set");
    assert_eq!(outcomes.destination, "warehouse_out");
    assert_eq!(outcomes.object.expose(), "public.sluice_outcomes");
    assert_eq!(outcomes.rows, OutcomeRows::All);
    assert_eq!(outcomes.location.line, 28);
    assert_eq!(
        project.outcomes_destination_of(sync).unwrap().instance.name,
        "warehouse_out"
    );

    let project = load(
        "    outcomes:\n      destination: warehouse_out\n      object: sluice_outcomes\n      rows: failed",
    )
    .unwrap();
    let sync = project.sync("users_to_crm").unwrap();
    assert_eq!(sync.outcomes.as_ref().unwrap().rows, OutcomeRows::Failed);

    let project = load("").unwrap();
    assert!(project.sync("users_to_crm").unwrap().outcomes.is_none());
}

#[test]
fn an_unknown_destination_is_named_with_the_sync_and_a_suggestion() {
    let d = error("    outcomes: { destination: warehouse_ot, object: sluice_outcomes }");
    assert_eq!((d.line, d.column), (28, 30), "{d:?}");
    assert!(d.file.ends_with("sluice.yaml"), "{d:?}");
    assert_eq!(
        d.message,
        "unknown destination `warehouse_ot`; did you mean `warehouse_out`? \
         (in `outcomes` of sync `users_to_crm`)"
    );
}

#[test]
fn a_missing_or_empty_object_is_refused() {
    let d = error("    outcomes: { destination: warehouse_out }");
    assert_eq!(d.line, 28, "{d:?}");
    assert_eq!(
        d.message,
        "`outcomes` of sync `users_to_crm` is missing `object`"
    );
    let d = error("    outcomes: { destination: warehouse_out, object: \"  \" }");
    assert_eq!((d.line, d.column), (28, 53), "{d:?}");
    assert_eq!(
        d.message,
        "`object` of `outcomes` of sync `users_to_crm` is empty"
    );
}

#[test]
fn a_bad_rows_value_names_what_is_allowed() {
    let d = error(
        "    outcomes:\n      destination: warehouse_out\n      object: o\n      rows: rejected",
    );
    assert_eq!((d.line, d.column), (31, 13), "{d:?}");
    assert_eq!(
        d.message,
        "`rows` in `outcomes` of sync `users_to_crm` is `rejected`, neither `all` nor `failed`"
    );
    assert!(d.expected.as_deref().unwrap().contains("`failed`"), "{d:?}");
}

#[test]
fn unknown_keys_and_a_scalar_are_refused() {
    let d = error("    outcomes: { destination: warehouse_out, object: o, row: all }");
    assert_eq!((d.line, d.column), (28, 56), "{d:?}");
    assert_eq!(
        d.message,
        "unknown key `row` in `outcomes` of sync `users_to_crm`; did you mean `rows`?"
    );
    let d = error("    outcomes: warehouse_out");
    assert_eq!((d.line, d.column), (28, 15), "{d:?}");
    assert!(
        d.message
            .starts_with("expected a mapping for `outcomes` of sync `users_to_crm`"),
        "{d:?}"
    );
    let d = error("    outcomes: { object: o }");
    assert_eq!(
        d.message,
        "`outcomes` of sync `users_to_crm` is missing `destination`"
    );
}
