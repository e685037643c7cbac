//! Mapping model rows to destination fields, and checking mappings against
//! a destination's `discover`.

use std::path::Path;

use sluice_config::{self as config, SyncConfig};
use sluice_engine::diff::RowKey;
use sluice_engine::mapping::{check_against_destination, check_fields, Mapper};
use sluice_runtime::bindings::types::{Field, FieldType, ObjectInfo, WriteMode};
use sluice_runtime::{Batch, Value};

fn sync_from(yaml_sync: &str) -> SyncConfig {
    let text = format!(
        "sources:\n  s: {{ plugin: src }}\ndestinations:\n  d: {{ plugin: dst }}\nmodels:\n  m: {{ source: s, object: t, primary_key: id }}\nsyncs:\n  x:\n{yaml_sync}"
    );
    let p = config::parse_project(Path::new("/p"), Path::new("/p/sluice.yaml"), &text, &|_| {
        None
    })
    .unwrap_or_else(|d| panic!("{d:#?}"));
    p.syncs["x"].clone()
}

const SYNC: &str = "    model: m
    destination: d
    object: Contact
    mode: upsert
    identifier: external_id
    mappings:
      - { from: id, to: external_id, type: string }
      - { from: mail, to: email }
      - { from: signup, to: created_at, type: timestamp }
      - { from: vip, to: is_vip, type: bool }
      - { constant: { channel: sluice }, to: meta }
";

fn field(name: &str, t: FieldType, required: bool, identifier: bool) -> Field {
    Field {
        name: name.into(),
        type_: t,
        nullable: !required,
        required,
        identifier,
    }
}

fn contact() -> ObjectInfo {
    ObjectInfo {
        name: "Contact".into(),
        fields: vec![
            field("external_id", FieldType::Text, false, true),
            field("email", FieldType::Text, true, false),
            field("created_at", FieldType::Timestamp, false, false),
            field("is_vip", FieldType::Boolean, false, false),
            field("meta", FieldType::Json, false, false),
            field("last_name", FieldType::Text, false, false),
        ],
        modes: vec![WriteMode::Upsert, WriteMode::Delete],
    }
}

fn model_batch() -> (Batch, Vec<RowKey>) {
    let b = Batch {
        columns: vec!["id".into(), "mail".into(), "signup".into(), "vip".into()],
        rows: vec![
            vec![
                Value::Integer(1),
                Value::Text("a@x".into()),
                Value::Text("2024-01-31T12:00:00Z".into()),
                Value::Text("yes".into()),
            ],
            vec![
                Value::Integer(2),
                Value::Text("b@x".into()),
                Value::Text("yesterday".into()),
                Value::Text("maybe".into()),
            ],
            vec![
                Value::Integer(3),
                Value::Null,
                Value::Date(0),
                Value::Boolean(false),
            ],
        ],
    };
    let keys = b
        .rows
        .iter()
        .map(|r| RowKey::from_values(&r[..1]))
        .collect();
    (b, keys)
}

#[test]
fn mapping_renames_coerces_and_adds_constants() {
    let mapper = Mapper::new(&sync_from(SYNC)).unwrap();
    let (b, keys) = model_batch();
    let out = mapper.apply(&b, &keys).unwrap();
    assert_eq!(
        out.batch.columns,
        ["external_id", "email", "created_at", "is_vip", "meta"]
    );
    assert_eq!(out.rows, vec![0, 2]);
    assert_eq!(
        out.batch.rows[0],
        vec![
            Value::Text("1".into()),
            Value::Text("a@x".into()),
            Value::Timestamp(1_706_702_400_000_000),
            Value::Boolean(true),
            Value::Json("{\"channel\":\"sluice\"}".into()),
        ]
    );
    assert_eq!(out.batch.rows[1][2], Value::Timestamp(0));
    // Row 2 fails on two columns: both are reported, with key, column and value.
    assert_eq!(out.errors.len(), 2);
    let e = &out.errors[0];
    assert_eq!(
        (e.index, e.column.as_deref(), e.field.as_str()),
        (1, Some("signup"), "created_at")
    );
    let text = e.to_string();
    assert!(text.contains("row with key 2"), "{text}");
    assert!(text.contains("column `signup`"), "{text}");
    assert!(text.contains("\"yesterday\""), "{text}");
    assert!(text.contains("cannot convert to timestamp"), "{text}");
    assert!(out.errors[1].to_string().contains("\"maybe\""));
}

#[test]
fn a_missing_model_column_names_close_matches() {
    let mapper = Mapper::new(&sync_from(SYNC)).unwrap();
    let (mut b, keys) = model_batch();
    b.columns[1] = "mails".into();
    let err = mapper.apply(&b, &keys).unwrap_err();
    assert!(err.message.contains("maps column `mail`"), "{err}");
    assert!(err.message.contains("did you mean `mails`"), "{err}");
    assert!(err.to_string().starts_with("/p/sluice.yaml:16:"), "{err}");
}

#[test]
fn without_mappings_rows_pass_through() {
    let s = sync_from("    model: m\n    destination: d\n    object: C\n    mode: append\n");
    let mapper = Mapper::new(&s).unwrap();
    let (b, keys) = model_batch();
    let out = mapper.apply(&b, &keys).unwrap();
    assert_eq!(out.batch, b);
    assert_eq!(mapper.output_fields(&b.columns), b.columns);
}

#[test]
fn a_bad_constant_is_a_configuration_problem() {
    let s = sync_from("    model: m\n    destination: d\n    object: C\n    mode: append\n    mappings:\n      - { constant: soon, to: at, type: timestamp }\n");
    let problems = Mapper::new(&s).err().unwrap();
    assert!(
        problems[0]
            .to_string()
            .contains("the constant for field `at` cannot be converted to timestamp"),
        "{}",
        problems[0]
    );
}

#[test]
fn mappings_match_the_destination() {
    let s = sync_from(SYNC);
    check_against_destination(&s, None, &contact()).unwrap();
}

#[test]
fn destination_mismatches_are_all_reported() {
    let s = sync_from(
        &SYNC
            .replace("to: email }", "to: emial }")
            .replace("mode: upsert", "mode: mirror"),
    );
    let mut object = contact();
    object.modes = vec![WriteMode::Upsert];
    object.fields[0].identifier = false;
    object.fields[3].type_ = FieldType::Integer;
    let problems = check_against_destination(&s, None, &object).unwrap_err();
    let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    let has = |needle: &str| {
        assert!(
            text.iter().any(|t| t.contains(needle)),
            "no {needle:?} in {text:#?}"
        );
    };
    has("needs `Contact` to support delete writes; it supports: upsert");
    has("field `external_id` of `Contact` cannot identify records");
    has("field `emial` does not exist on `Contact`; close matches: `email`");
    has("required field `email` of `Contact` is not mapped");
    has("field `is_vip` of `Contact` is integer, but the mapping converts to bool");
    assert!(text.iter().any(|t| t.starts_with("/p/sluice.yaml:")));
}

#[test]
fn unknown_identifier_and_passthrough_fields() {
    let s = sync_from("    model: m\n    destination: d\n    object: Contact\n    mode: upsert\n    identifier: extrnal_id\n");
    let cols: Vec<String> = vec!["extrnal_id".into(), "email".into(), "zzz".into()];
    let problems = check_against_destination(&s, Some(&cols), &contact()).unwrap_err();
    let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert!(text.iter().any(|t| t.contains("identifier field `extrnal_id` does not exist on `Contact`; close matches: `external_id`")), "{text:#?}");
    assert!(
        text.iter()
            .any(|t| t.contains("field `zzz` does not exist on `Contact`; its fields are:")),
        "{text:#?}"
    );
    // With a transform in between only the transform's output can be checked.
    let fields: Vec<String> = vec!["external_id".into(), "email".into()];
    check_fields(&s, &fields, &contact()).unwrap();
}
