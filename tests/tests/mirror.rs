//! Mirror mode end to end (files → webhook receiver, replayed as a
//! destination that upserts and deletes by external id): deletes are safe by
//! construction. A key that changes form (a type hint, a wider primary key)
//! deletes nothing; an empty model and too many deletes are refused with the
//! numbers; ordinary deletes still go.

use sluice_tests as common;

use common::*;
use sluice_engine::run::{RunOptions, RunReport};
use sluice_runtime::Value;
use sluice_state::{RunStatus, SqliteStore, StateStore};
use std::collections::BTreeSet;
use std::path::Path;

const ROWS: usize = 20;

/// The project; `source_extra` goes into the files source's config,
/// `primary_key` is the model's, `sync_extra` is appended to the sync.
fn project(dir: &Path, rx: &Receiver, source_extra: &str, primary_key: &str, sync_extra: &str) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let yaml = format!(
        r#"
sources:
  files: {{ plugin: files, config: {{ path: /data{source_extra} }}, grants: ["dir:data:/data"] }}
destinations:
  hook: {{ plugin: webhook, config: {{ url: "{url}", max_retries: 0 }}, grants: ["{grant}"] }}
models:
  people: {{ source: files, object: people.csv, primary_key: {primary_key} }}
syncs:
  people:
    model: people
    destination: hook
    object: Contact
    mode: mirror
    identifier: External_Id__c
    batch_size: 7
    mappings:
      - {{ from: id, to: External_Id__c }}
      - {{ from: email, to: Email }}
      - {{ from: last, to: LastName }}
{sync_extra}"#,
        url = rx.url,
        grant = rx.grant()
    );
    std::fs::write(dir.join("sluice.yaml"), yaml).unwrap();
}

/// people.csv with the rows whose ids are in `ids`.
fn people(dir: &Path, ids: impl IntoIterator<Item = usize>) {
    let mut csv = String::from("id,email,last,region\n");
    for i in ids {
        csv.push_str(&format!("{i},c{i}@example.com,Last{i},eu\n"));
    }
    std::fs::write(dir.join("data/people.csv"), csv).unwrap();
}

async fn run_with(dir: &Path, dry_run: bool) -> RunReport {
    let loaded = Loaded::open(dir);
    let engine = loaded.engine();
    let options = RunOptions {
        dry_run,
        ..Default::default()
    };
    engine.run("people", &options).await.unwrap()
}

async fn run(dir: &Path) -> RunReport {
    run_with(dir, false).await
}

async fn plan(dir: &Path) -> RunReport {
    run_with(dir, true).await
}

/// An external id as the destination matches it: `7` and `"7"` are one.
fn external_id(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::String(s) => s.parse().unwrap(),
        serde_json::Value::Number(n) => n.as_u64().unwrap() as usize,
        other => panic!("external id {other}"),
    }
}

/// The records the destination holds: every request replayed in order,
/// upserts adding their rows' external ids and deletes removing them.
fn external_ids(rx: &Receiver) -> Vec<usize> {
    let mut held = BTreeSet::new();
    for r in rx.requests.lock().unwrap().iter() {
        let data = &r.body["data"];
        for row in data["rows"].as_array().unwrap() {
            let id = external_id(&row["External_Id__c"]);
            match data["mode"].as_str().unwrap() {
                "delete" => held.remove(&id),
                _ => held.insert(id),
            };
        }
    }
    held.into_iter().collect()
}

/// The keys on record, decoded.
fn keys_on_record(dir: &Path) -> Vec<Vec<Value>> {
    let store = SqliteStore::open_project(dir).unwrap();
    let mut keys = Vec::new();
    store
        .for_each_delivered("people", &mut |r| keys.push(r.key.values().unwrap()))
        .unwrap();
    keys
}

/// Delete requests the destination received.
fn deletes_sent(rx: &Receiver) -> usize {
    rx.modes().iter().filter(|m| *m == "delete").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_retagged_by_a_type_hint_deletes_nothing() {
    let rx = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &rx, "", "id", "");
    people(dir.path(), 0..ROWS);
    let first = run(dir.path()).await;
    assert_eq!(first.status, RunStatus::Succeeded, "{:?}", first.error);
    assert_eq!(external_ids(&rx), (0..ROWS).collect::<Vec<_>>());

    // The type hint turns every key (and identifier) from text into an
    // integer; rows 3 and 11 really leave the model.
    project(dir.path(), &rx, ", columns: { id: integer }", "id", "");
    people(dir.path(), (0..ROWS).filter(|i| ![3, 11].contains(i)));
    let planned = plan(dir.path()).await;
    assert_eq!(
        (planned.mirror.deletes, planned.mirror.rekeyed),
        (2, ROWS as u64 - 2),
        "{:?}",
        planned.mirror
    );
    let second = run(dir.path()).await;
    assert_eq!(second.status, RunStatus::Succeeded, "{:?}", second.error);
    assert_eq!((second.counts.removed, second.counts.ok), (2, ROWS as u64));
    assert_eq!(second.mirror.rekeyed, ROWS as u64 - 2);
    let kept: Vec<usize> = (0..ROWS).filter(|i| ![3, 11].contains(i)).collect();
    assert_eq!(
        external_ids(&rx),
        kept,
        "only the rows that left are deleted"
    );

    // State follows the new keys, and the next run has nothing to do.
    let keys = keys_on_record(dir.path());
    assert_eq!(keys.len(), ROWS - 2);
    assert!(
        keys.iter()
            .all(|k| matches!(k.as_slice(), [Value::Integer(_)])),
        "{keys:?}"
    );
    let third = run(dir.path()).await;
    assert_eq!(
        (
            third.counts.sent,
            third.counts.unchanged,
            third.counts.removed
        ),
        (0, ROWS as u64 - 2, 0)
    );
    assert_eq!(external_ids(&rx), kept);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_key_that_gains_a_column_deletes_nothing() {
    let rx = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &rx, "", "id", "");
    people(dir.path(), 0..ROWS);
    assert_eq!(run(dir.path()).await.counts.ok, ROWS as u64);

    project(dir.path(), &rx, "", "[id, region]", "");
    let second = run(dir.path()).await;
    assert_eq!(second.status, RunStatus::Succeeded, "{:?}", second.error);
    assert_eq!(
        (second.counts.removed, second.mirror.rekeyed),
        (0, ROWS as u64)
    );
    assert_eq!(deletes_sent(&rx), 0, "no delete request at all");
    assert_eq!(external_ids(&rx), (0..ROWS).collect::<Vec<_>>());
    assert!(keys_on_record(dir.path()).iter().all(|k| k.len() == 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_model_is_refused_unless_allowed() {
    let rx = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &rx, "", "id", "");
    people(dir.path(), 0..ROWS);
    run(dir.path()).await;

    people(dir.path(), []);
    let planned = plan(dir.path()).await;
    let why = planned.mirror.refused.as_deref().unwrap_or_default();
    assert!(why.contains("no rows"), "{:?}", planned.mirror);
    let refused = run(dir.path()).await;
    assert_eq!(refused.status, RunStatus::Failed);
    let error = refused.error.unwrap();
    assert!(
        error.contains("sync `people`")
            && error.contains("the model returned no rows")
            && error.contains("all 20 of the 20")
            && error.contains("allow_empty: true"),
        "{error}"
    );
    assert_eq!(deletes_sent(&rx), 0);
    assert_eq!(external_ids(&rx).len(), ROWS);
    assert_eq!(keys_on_record(dir.path()).len(), ROWS, "state is untouched");

    project(dir.path(), &rx, "", "id", "    allow_empty: true\n");
    let allowed = run(dir.path()).await;
    assert_eq!(allowed.status, RunStatus::Succeeded, "{:?}", allowed.error);
    assert_eq!(allowed.counts.removed, ROWS as u64);
    assert_eq!(external_ids(&rx).len(), 0);
    assert!(keys_on_record(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_deletes_refuses_more_and_allows_up_to_it() {
    let rx = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &rx, "", "id", "    max_deletes: 10%\n");
    people(dir.path(), 0..ROWS);
    run(dir.path()).await;

    // Three of twenty is over 10%.
    people(dir.path(), 3..ROWS);
    let planned = plan(dir.path()).await;
    assert_eq!(planned.mirror.deletes, 3);
    assert!(planned.mirror.refused.is_some(), "{:?}", planned.mirror);
    let refused = run(dir.path()).await;
    assert_eq!(refused.status, RunStatus::Failed);
    let error = refused.error.unwrap();
    assert!(
        error.contains("sync `people`")
            && error.contains("3 delete(s) of 20")
            && error.contains("`max_deletes: 10%`, which allows 2"),
        "{error}"
    );
    assert_eq!(external_ids(&rx).len(), ROWS);

    // Two is within the limit: they go, and state follows.
    people(dir.path(), 2..ROWS);
    let allowed = run(dir.path()).await;
    assert_eq!(allowed.status, RunStatus::Succeeded, "{:?}", allowed.error);
    assert_eq!(allowed.counts.removed, 2);
    assert_eq!(external_ids(&rx), (2..ROWS).collect::<Vec<_>>());
    assert_eq!(keys_on_record(dir.path()).len(), ROWS - 2);
}
