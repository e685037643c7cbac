//! Crash safety with real process kills: `sluice run` is SIGKILLed at
//! several points of a run; the state must never claim a row the
//! destination did not receive, and the next run must deliver exactly the
//! rows that were not acknowledged.

use sluice_tests as common;

use common::*;
use sluice_runtime::Value;
use sluice_state::{RunStatus, SqliteStore, StateStore};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROWS: usize = 120;

fn project(dir: &Path, receiver: &Receiver) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let mut csv = String::from("email,ltv\n");
    for i in 0..ROWS {
        csv.push_str(&format!("user{i:03}@example.com,{i}\n"));
    }
    std::fs::write(dir.join("data/customers.csv"), csv).unwrap();
    let yaml = format!(
        r#"
sources:
  files: {{ plugin: files, config: {{ path: /data }}, grants: ["dir:data:/data"] }}
destinations:
  hook: {{ plugin: webhook, config: {{ url: "{}" }}, grants: ["{}"] }}
models:
  customers: {{ source: files, object: customers.csv, primary_key: email }}
syncs:
  customers:
    model: customers
    destination: hook
    object: contacts
    mode: upsert
    identifier: email
    batch_size: 10
"#,
        receiver.url,
        receiver.grant()
    );
    std::fs::write(dir.join("sluice.yaml"), yaml).unwrap();
}

fn received(receiver: &Receiver) -> BTreeSet<String> {
    receiver
        .rows()
        .iter()
        .map(|r| r["email"].as_str().unwrap().to_string())
        .collect()
}

fn delivered(dir: &Path) -> BTreeSet<String> {
    let store = SqliteStore::open_project(dir).unwrap();
    let mut keys = BTreeSet::new();
    store
        .for_each_delivered(
            "customers",
            &mut |row| match row.key.values().unwrap().as_slice() {
                [Value::Text(email)] => {
                    keys.insert(email.clone());
                }
                other => panic!("unexpected key {other:?}"),
            },
        )
        .unwrap();
    keys
}

fn sluice(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(["run", "customers", "--project"])
        .arg(dir)
        .env("SLUICE_CACHE_DIR", shared_cache_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Kill `sluice run` once the receiver has seen `after` requests.
async fn kill_after(dir: &Path, receiver: &Receiver, after: usize) {
    let mut child = sluice(dir).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while receiver.requests.lock().unwrap().len() < after {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run finished before the kill point"
        );
        assert!(
            Instant::now() < deadline,
            "no progress before the kill point"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_loses_nothing_and_resends_only_unacknowledged_rows() {
    for kill_point in [0, 1, 5, 11] {
        let dir = tempfile::tempdir().unwrap();
        let rx = receiver().await;
        *rx.delay.lock().unwrap() = Duration::from_millis(150);
        project(dir.path(), &rx);

        kill_after(dir.path(), &rx, kill_point).await;
        // Let any request already in flight land before looking.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let got = received(&rx);
        let claimed = if dir.path().join(".sluice/state.db").exists() {
            delivered(dir.path())
        } else {
            BTreeSet::new()
        };
        assert!(
            claimed.is_subset(&got),
            "kill after {kill_point} requests: state claims rows the destination never received: {:?}",
            claimed.difference(&got).collect::<Vec<_>>()
        );

        *rx.delay.lock().unwrap() = Duration::ZERO;
        let before = rx.requests.lock().unwrap().len();
        let status = sluice(dir.path()).status().unwrap();
        assert!(
            status.success(),
            "the rerun after a kill at {kill_point} failed"
        );

        let all: BTreeSet<String> = (0..ROWS)
            .map(|i| format!("user{i:03}@example.com"))
            .collect();
        assert_eq!(
            received(&rx),
            all,
            "kill after {kill_point}: every row arrives"
        );
        assert_eq!(delivered(dir.path()), all);
        let resent: BTreeSet<String> = rx.requests.lock().unwrap()[before..]
            .iter()
            .flat_map(|r| r.body["data"]["rows"].as_array().unwrap().clone())
            .map(|row| row["email"].as_str().unwrap().to_string())
            .collect();
        let expected: BTreeSet<String> = all.difference(&claimed).cloned().collect();
        assert_eq!(
            resent, expected,
            "kill after {kill_point}: the rerun sends exactly the unacknowledged rows"
        );

        let store = SqliteStore::open_project(dir.path()).unwrap();
        let runs = store.runs(Some("customers"), 10).unwrap();
        assert_eq!(runs[0].status, RunStatus::Succeeded);
        if runs.len() > 1 {
            assert_eq!(
                runs[1].status,
                RunStatus::Killed,
                "the killed run is recorded as killed"
            );
        }
    }
}

/// `sluice ARGS --project DIR`, its output captured.
fn sluice_with(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .arg("--project")
        .arg(dir)
        .env("SLUICE_CACHE_DIR", shared_cache_dir())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_right_after_a_kill_proceeds_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    project(dir.path(), &rx);
    for attempt in 0..5 {
        // New values every time, so every run has all rows to send.
        let mut csv = String::from("email,ltv\n");
        for i in 0..ROWS {
            csv.push_str(&format!(
                "user{i:03}@example.com,{}\n",
                i + 1000 * (attempt + 1)
            ));
        }
        std::fs::write(dir.path().join("data/customers.csv"), csv).unwrap();
        *rx.delay.lock().unwrap() = Duration::from_millis(250);
        let before = rx.requests.lock().unwrap().len();
        let mut child = sluice(dir.path()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while rx.requests.lock().unwrap().len() <= before {
            assert!(
                child.try_wait().unwrap().is_none(),
                "attempt {attempt}: the run ended early"
            );
            assert!(Instant::now() < deadline, "attempt {attempt}: no progress");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if attempt == 0 {
            // While it runs, the sync is held: a second run and an unlock are
            // refused, naming the run that holds it.
            let d = dir.path().to_path_buf();
            let (second, unlock) = tokio::task::spawn_blocking(move || {
                (
                    sluice_with(&d, &["run", "customers"]),
                    sluice_with(&d, &["runs", "unlock", "customers"]),
                )
            })
            .await
            .unwrap();
            assert!(child.try_wait().unwrap().is_none(), "still running");
            for refused in [&second, &unlock] {
                let err = format!(
                    "{}{}",
                    String::from_utf8_lossy(&refused.stdout),
                    String::from_utf8_lossy(&refused.stderr)
                );
                assert!(!refused.status.success(), "{err}");
                assert!(err.contains("sync `customers` is already running"), "{err}");
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        // At once, no waiting and no retry: the kernel released the lock.
        *rx.delay.lock().unwrap() = Duration::ZERO;
        let d = dir.path().to_path_buf();
        let rerun = tokio::task::spawn_blocking(move || sluice_with(&d, &["run", "customers"]))
            .await
            .unwrap();
        assert!(
            rerun.status.success(),
            "attempt {attempt}: the rerun after a kill failed: {}",
            String::from_utf8_lossy(&rerun.stderr)
        );
        let store = SqliteStore::open_project(dir.path()).unwrap();
        let runs = store.runs(Some("customers"), 2).unwrap();
        assert_eq!(
            (runs[0].status, runs[1].status),
            (RunStatus::Succeeded, RunStatus::Killed),
            "attempt {attempt}"
        );
        assert!(
            runs[1]
                .error
                .as_deref()
                .unwrap_or_default()
                .contains("its lock was free"),
            "{:?}",
            runs[1].error
        );
    }
    // Nothing is left holding the sync.
    let out = sluice_with(dir.path(), &["runs", "unlock", "customers"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("not running"),
        "{text}"
    );
}
