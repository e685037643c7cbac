//! Syncs end to end with the snapshot spilled to disk (issue 12, bounded
//! memory): the same mirror-mode runs as with the snapshot in memory, with
//! at most two keys in memory, must send, skip and delete exactly the same
//! rows. Its own test binary, because the limit is set per process.

use sluice_tests as common;

use common::*;
use sluice_engine::run::RunOptions;
use sluice_state::snapshot::set_memory_keys;
use sluice_state::{RunStatus, SqliteStore, StateStore};

type Counts = (u64, u64, u64, u64, u64, u64, u64);

/// Three runs of one sync; per run its counts (added, changed, unchanged,
/// invalid, removed, sent, ok) and the (mode, email, ltv) of every row the
/// receiver got, sorted; and the snapshot in the state store at the end
/// (keys and destination ids: the hashes are seeded with the config, which
/// names each test's own receiver).
async fn three_runs() -> (Vec<Counts>, Vec<Vec<String>>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    files_to_webhook_project(dir.path(), &rx, "mirror", 3);
    let letters = "abcdefghijkl";
    let mut first: Vec<(String, String)> = letters
        .chars()
        .enumerate()
        .map(|(i, c)| (format!("{c}@x.com"), format!("{i}")))
        .collect();
    // Out of key order, and a duplicate key.
    first.swap(0, 7);
    first.push(("c@x.com".into(), "99".into()));
    // Two changed, three removed (one at each end of the key order), two
    // new (one below every key), and a duplicate of a new key.
    let mut second: Vec<(String, String)> = first[..12]
        .iter()
        .filter(|(e, _)| !["a@x.com", "f@x.com", "l@x.com"].contains(&e.as_str()))
        .map(|(e, l)| {
            let l = if e == "b@x.com" || e == "k@x.com" {
                format!("{l}.5")
            } else {
                l.clone()
            };
            (e.clone(), l)
        })
        .collect();
    second.insert(3, ("0@x.com".into(), "1".into()));
    second.push(("m@x.com".into(), "2".into()));
    second.push(("0@x.com".into(), "3".into()));
    let mut counts = Vec::new();
    let mut received = Vec::new();
    for model in [&first, &second, &second] {
        let rows: Vec<(&str, &str)> = model.iter().map(|(e, l)| (&e[..], &l[..])).collect();
        write_customers_csv(dir.path(), &rows);
        let before = rx.requests.lock().unwrap().len();
        let r = run_sync(dir.path(), "customers", &RunOptions::default()).await;
        assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
        let c = r.counts;
        counts.push((
            c.added,
            c.changed,
            c.unchanged,
            c.invalid,
            c.removed,
            c.sent,
            c.ok,
        ));
        let requests = rx.requests.lock().unwrap();
        let mut got: Vec<String> = requests[before..]
            .iter()
            .flat_map(|q| {
                let mode = q.body["data"]["mode"].as_str().unwrap_or("").to_owned();
                let rows = q.body["data"]["rows"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                rows.into_iter()
                    .map(move |row| format!("{mode} {} {}", row["Email"], row["LTV"]))
            })
            .collect();
        got.sort();
        received.push(got);
    }
    let store = SqliteStore::open_project(dir.path()).unwrap();
    let mut snapshot = Vec::new();
    store
        .for_each_delivered("customers", &mut |r| {
            snapshot.push(format!("{} {:?}", r.key, r.dest_id))
        })
        .unwrap();
    snapshot.sort();
    (counts, received, snapshot)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spilled_snapshot_syncs_exactly_like_one_in_memory() {
    set_memory_keys(1_000_000);
    let (counts, received, snapshot) = three_runs().await;
    assert_eq!(
        counts,
        vec![
            (12, 0, 0, 1, 0, 12, 12),
            (2, 2, 7, 1, 3, 7, 7),
            (0, 0, 11, 1, 0, 0, 0),
        ]
    );
    assert_eq!(received[0].len(), 12);
    assert_eq!(
        received[1]
            .iter()
            .filter(|r| r.starts_with("delete"))
            .count(),
        3
    );
    assert_eq!(snapshot.len(), 11);
    for limit in [1, 2, 5] {
        set_memory_keys(limit);
        let (c, r, s) = three_runs().await;
        assert_eq!(c, counts, "counts with {limit} keys in memory");
        assert_eq!(r, received, "rows received with {limit} keys in memory");
        assert_eq!(s, snapshot, "snapshot with {limit} keys in memory");
    }
}
