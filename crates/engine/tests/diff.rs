//! The diff against a real state store, across runs: added, changed,
//! unchanged, invalid, removed, and rejected rows coming back.

use sluice_engine::diff::{row_hash, Change, DestId, Differ, InvalidReason, RowDiff, RowKey};
use sluice_runtime::{Batch, Value};
use sluice_state::{Ack, CommitBatch, Rejection, RunStatus, SqliteStore, StateStore};

fn batch(columns: &[&str], rows: Vec<Vec<Value>>) -> Batch {
    Batch {
        columns: columns.iter().map(|c| c.to_string()).collect(),
        rows,
    }
}

fn user(id: i64, email: &str) -> Vec<Value> {
    vec![Value::Integer(id), Value::Text(email.into())]
}

fn key(id: i64) -> RowKey {
    RowKey::from_values(&[Value::Integer(id)])
}

/// Commits every classified row as delivered, except `reject`.
fn commit(store: &mut SqliteStore, diffs: &[RowDiff], reject: &[i64]) {
    let run = store.begin_run("users", false).unwrap();
    let mut c = CommitBatch::default();
    for d in diffs {
        let (Some(k), Change::Added | Change::Changed { .. }) = (&d.key, &d.change) else {
            continue;
        };
        if reject.iter().any(|r| &key(*r) == k) {
            c.rejected.push(Rejection {
                key: k.clone(),
                hash: d.hash,
                message: "refused".into(),
            });
        } else {
            let dest_id = Some(DestId::from_value(&Value::Text(format!("ext-{k}"))));
            c.acknowledged.push(Ack::Delivered {
                key: k.clone(),
                hash: d.hash,
                dest_id,
            });
        }
    }
    store.commit_batch(run, &c).unwrap();
    store.finish_run(run, RunStatus::Succeeded, None).unwrap();
}

#[test]
fn classification_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open_project(dir.path()).unwrap();
    let cols = ["id", "email"];

    // Run 1: a baseline, everything is added; row 3 is rejected.
    let mut d = Differ::new(vec!["id".into()], store.load_snapshot("users").unwrap());
    let first: Vec<RowDiff> = [
        batch(&cols, vec![user(1, "a@x"), user(2, "b@x")]),
        batch(&cols, vec![user(3, "c@x"), user(4, "d@x")]),
    ]
    .iter()
    .flat_map(|b| d.classify(b).unwrap())
    .collect();
    assert!(first.iter().all(|r| r.change == Change::Added));
    let summary = d.finish().unwrap();
    assert_eq!(summary.counts.added, 4);
    assert!(summary.removed.is_empty());
    commit(&mut store, &first, &[3]);

    // Run 2: columns in another order; 1 unchanged, 2 changed, 3 (rejected
    // before) sent again as added, 4 gone, 5 new, a null key and a duplicate.
    let mut d = Differ::new(vec!["id".into()], store.load_snapshot("users").unwrap());
    let swapped = ["email", "id"];
    let rows = vec![
        vec![Value::Text("a@x".into()), Value::Integer(1)],
        vec![Value::Text("b2@x".into()), Value::Integer(2)],
        vec![Value::Text("c@x".into()), Value::Integer(3)],
        vec![Value::Text("e@x".into()), Value::Integer(5)],
        vec![Value::Text("nokey@x".into()), Value::Null],
        vec![Value::Text("again@x".into()), Value::Integer(5)],
    ];
    let out = d.classify(&batch(&swapped, rows)).unwrap();
    let changes: Vec<&Change> = out.iter().map(|r| &r.change).collect();
    assert_eq!(changes[0], &Change::Unchanged);
    let previous = row_hash(&["id".into(), "email".into()], &user(2, "b@x"));
    assert_eq!(changes[1], &Change::Changed { previous });
    assert_eq!(changes[2], &Change::Added, "a rejected row is retried");
    assert_eq!(changes[3], &Change::Added);
    assert_eq!(
        changes[4],
        &Change::Invalid(InvalidReason::NullKey {
            column: "id".into()
        })
    );
    assert_eq!(changes[5], &Change::Invalid(InvalidReason::DuplicateKey));
    assert_eq!(
        out[5].key,
        Some(key(5)),
        "a duplicate is reported with its key"
    );
    assert_eq!(out[4].key, None);

    let summary = d.finish().unwrap();
    let c = summary.counts;
    assert_eq!(
        (c.added, c.changed, c.unchanged, c.invalid, c.removed),
        (2, 1, 1, 2, 1)
    );
    assert_eq!(summary.removed.len(), 1);
    assert_eq!(summary.removed[0].key, key(4));
    let id = summary.removed[0]
        .dest_id
        .as_ref()
        .unwrap()
        .to_value()
        .unwrap();
    assert_eq!(id, Value::Text("ext-4".into()));
}

#[test]
fn type_changes_are_changes() {
    let cols = ["id", "score"];
    let mut snapshot_source = Differ::new(vec!["id".into()], Default::default());
    let first = snapshot_source
        .classify(&batch(
            &cols,
            vec![vec![Value::Integer(1), Value::Integer(10)]],
        ))
        .unwrap();
    let mut snapshot = sluice_engine::diff::Snapshot::new();
    snapshot
        .insert_delivered(
            first[0].key.as_ref().unwrap().as_bytes(),
            first[0].hash,
            None,
        )
        .unwrap();
    let mut d = Differ::new(vec!["id".into()], snapshot);
    let out = d
        .classify(&batch(
            &cols,
            vec![vec![Value::Integer(1), Value::Text("10".into())]],
        ))
        .unwrap();
    assert!(matches!(out[0].change, Change::Changed { .. }));
    // The same id as text is another key altogether.
    let out = d
        .classify(&batch(
            &cols,
            vec![vec![Value::Text("1".into()), Value::Integer(10)]],
        ))
        .unwrap();
    assert_eq!(out[0].change, Change::Added);
}

#[test]
fn composite_keys() {
    let cols = ["tenant", "id", "v"];
    let mut d = Differ::new(vec!["tenant".into(), "id".into()], Default::default());
    let out = d
        .classify(&batch(
            &cols,
            vec![
                vec![Value::Text("eu".into()), Value::Integer(1), Value::Null],
                vec![Value::Text("us".into()), Value::Integer(1), Value::Null],
                vec![
                    Value::Text("eu".into()),
                    Value::Integer(1),
                    Value::Boolean(true),
                ],
                vec![Value::Text("eu".into()), Value::Null, Value::Null],
            ],
        ))
        .unwrap();
    assert_eq!(out[0].change, Change::Added);
    assert_eq!(out[1].change, Change::Added);
    assert_eq!(out[2].change, Change::Invalid(InvalidReason::DuplicateKey));
    assert_eq!(out[2].key.as_ref().unwrap().to_string(), "(\"eu\", 1)");
    assert_eq!(
        out[3].change,
        Change::Invalid(InvalidReason::NullKey {
            column: "id".into()
        })
    );
}

#[test]
fn full_resync_sends_everything_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open_project(dir.path()).unwrap();
    let cols = ["id", "email"];
    let rows = batch(&cols, vec![user(1, "a@x"), user(2, "b@x")]);
    let mut d = Differ::new(vec!["id".into()], store.load_snapshot("users").unwrap());
    let first = d.classify(&rows).unwrap();
    commit(&mut store, &first, &[2]);
    store.forget_snapshot("users").unwrap();
    let mut d = Differ::new(vec!["id".into()], store.load_snapshot("users").unwrap());
    let again = d.classify(&rows).unwrap();
    assert!(again.iter().all(|r| r.change == Change::Added));
    assert_eq!(
        store.ledger("users").unwrap().len(),
        1,
        "the ledger survives a full resync"
    );
}
