//! Crash safety with real process kills: `sluice run` is SIGKILLed at
//! several points of a run; the state must never claim a row the
//! destination did not receive, and the next run must deliver exactly the
//! rows that were not acknowledged.

use sluice_tests as common;

use common::*;
use sluice_runtime::Value;
use sluice_state::{RunStatus, SqliteStore, StateStore};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ROWS: usize = 120;

fn project(dir: &Path, receiver: &Receiver) {
    for (path, text) in customers_to_webhook(receiver, ROWS, 10) {
        let file = dir.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    }
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

/// A receiver that applies each request when it arrives and answers only
/// after `hold`: a kill while it holds one is a kill inside an HTTP
/// request, after the destination applied it and before Sluice heard so.
#[derive(Clone, Default)]
struct Applying {
    /// Rows applied per key (upserts, inserts and appends add one; deletes
    /// remove the key).
    applied: Arc<Mutex<BTreeMap<String, usize>>>,
    /// Keys deleted, in order.
    deleted: Arc<Mutex<Vec<String>>>,
    requests: Arc<AtomicUsize>,
    hold_ms: Arc<AtomicU64>,
}

impl Applying {
    async fn start() -> (Applying, String) {
        use axum::extract::State;
        async fn hook(State(rx): State<Applying>, body: axum::body::Bytes) -> &'static str {
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let delete = json["data"]["mode"] == "delete";
            for row in json["data"]["rows"].as_array().unwrap() {
                let email = row["email"].as_str().unwrap().to_string();
                if delete {
                    rx.applied.lock().unwrap().remove(&email);
                    rx.deleted.lock().unwrap().push(email);
                } else {
                    *rx.applied.lock().unwrap().entry(email).or_insert(0) += 1;
                }
            }
            rx.requests.fetch_add(1, Ordering::SeqCst);
            let hold = rx.hold_ms.load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(hold)).await;
            "ok"
        }
        let rx = Applying::default();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(rx.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (rx, format!("http://127.0.0.1:{port}/hook"))
    }

    fn snapshot(&self) -> BTreeMap<String, usize> {
        self.applied.lock().unwrap().clone()
    }

    /// Waits until requests the killed process had sent before it died are
    /// all applied: on a loaded machine the receiver may read one after the
    /// kill, and a snapshot taken before would miss rows it then applies.
    /// Nothing new can come (the sender is dead), so once the count has not
    /// moved for half a second it is final.
    async fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = self.requests.load(Ordering::SeqCst);
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = self.requests.load(Ordering::SeqCst);
            if now == last {
                return;
            }
            last = now;
        }
    }
}

fn emails(range: std::ops::Range<usize>) -> BTreeSet<String> {
    range.map(|i| format!("user{i:03}@example.com")).collect()
}

fn write_rows(dir: &Path, range: std::ops::Range<usize>, ltv_offset: usize) {
    let mut csv = String::from("email,ltv\n");
    for i in range {
        csv.push_str(&format!("user{i:03}@example.com,{}\n", i + ltv_offset));
    }
    std::fs::write(dir.join("data/customers.csv"), csv).unwrap();
}

fn mode_project(dir: &Path, url: &str, mode: &str, concurrency: u32) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let grant = sluice_runtime::sandbox::policy::Grants::pattern_for_url(url).unwrap();
    let yaml = format!(
        r#"
sources:
  files: {{ plugin: files, config: {{ path: /data }}, grants: ["dir:data:/data"] }}
destinations:
  hook:
    plugin: webhook
    config: {{ url: "{url}" }}
    grants: ["{grant}"]
    rate_limit: {{ requests: 1000, per_ms: 1000, concurrency: {concurrency} }}
models:
  customers: {{ source: files, object: customers.csv, primary_key: email }}
syncs:
  customers:
    model: customers
    destination: hook
    object: contacts
    mode: {mode}
    identifier: email
    batch_size: 10
"#
    );
    std::fs::write(dir.join("sluice.yaml"), yaml).unwrap();
}

/// Start `sluice run`, SIGKILL it once `after` requests reached the
/// receiver (the last of them still held: the kill lands inside it).
async fn kill_inside(dir: &Path, rx: &Applying, after: usize) -> bool {
    let before = rx.requests.load(Ordering::SeqCst);
    let mut child = sluice(dir).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while rx.requests.load(Ordering::SeqCst) < before + after {
        if child.try_wait().unwrap().is_some() {
            return false; // finished before the kill point
        }
        assert!(
            Instant::now() < deadline,
            "no progress before the kill point"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    rx.settle().await;
    true
}

fn claimed(dir: &Path) -> BTreeSet<String> {
    if dir.join(".sluice/state.db").exists() {
        delivered(dir)
    } else {
        BTreeSet::new()
    }
}

/// One kill round of a sending mode: kill inside the `after`th request,
/// rerun, and check that the state never claimed a row the receiver did
/// not apply, that nothing is lost, and that a row applied twice was in
/// flight at the kill (an unknown outcome, re-sent by key), never one the
/// state had recorded.
async fn kill_round(mode: &str, concurrency: u32, after: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (rx, url) = Applying::start().await;
    mode_project(dir.path(), &url, mode, concurrency);
    write_rows(dir.path(), 0..ROWS, 0);
    rx.hold_ms.store(120, Ordering::SeqCst);
    let label = format!("{mode}, concurrency {concurrency}, kill inside request {after}");
    assert!(
        kill_inside(dir.path(), &rx, after).await,
        "{label}: the run ended before the kill"
    );

    let at_kill = rx.snapshot();
    let state = claimed(dir.path());
    let applied: BTreeSet<String> = at_kill.keys().cloned().collect();
    assert!(
        state.is_subset(&applied),
        "{label}: state claims rows the destination never applied: {:?}",
        state.difference(&applied).collect::<Vec<_>>()
    );
    let in_doubt: BTreeSet<String> = applied.difference(&state).cloned().collect();

    rx.hold_ms.store(0, Ordering::SeqCst);
    let status = sluice(dir.path()).status().unwrap();
    assert!(status.success(), "{label}: the rerun failed");

    let all = emails(0..ROWS);
    let after_rerun = rx.snapshot();
    assert_eq!(
        after_rerun.keys().cloned().collect::<BTreeSet<_>>(),
        all,
        "{label}: every row arrives"
    );
    assert_eq!(
        delivered(dir.path()),
        all,
        "{label}: state claims every row"
    );
    let twice: BTreeSet<String> = after_rerun
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| k.clone())
        .collect();
    assert!(
        twice.is_subset(&in_doubt),
        "{label}: rows applied twice that the state had recorded: {:?}",
        twice.difference(&in_doubt).collect::<Vec<_>>()
    );
    assert!(
        after_rerun.values().all(|n| *n <= 2),
        "{label}: a row applied more than twice: {after_rerun:?}"
    );
}

/// Mirror mode: kill inside the deletes, rerun; the state never forgets a
/// record the receiver still holds, and the receiver ends with exactly the
/// model's rows.
async fn kill_in_deletes_round(after: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (rx, url) = Applying::start().await;
    mode_project(dir.path(), &url, "mirror", 1);
    write_rows(dir.path(), 0..ROWS, 0);
    assert!(sluice(dir.path()).status().unwrap().success());
    let label = format!("mirror, kill inside delete request {after}");

    write_rows(dir.path(), 0..ROWS / 2, 0);
    rx.hold_ms.store(120, Ordering::SeqCst);
    assert!(
        kill_inside(dir.path(), &rx, after).await,
        "{label}: the run ended before the kill"
    );
    let held: BTreeSet<String> = rx.snapshot().keys().cloned().collect();
    let state = claimed(dir.path());
    assert!(
        held.is_subset(&state),
        "{label}: state forgot records the receiver still holds: {:?}",
        held.difference(&state).collect::<Vec<_>>()
    );

    rx.hold_ms.store(0, Ordering::SeqCst);
    assert!(
        sluice(dir.path()).status().unwrap().success(),
        "{label}: rerun"
    );
    let kept = emails(0..ROWS / 2);
    assert_eq!(
        rx.snapshot().keys().cloned().collect::<BTreeSet<_>>(),
        kept,
        "{label}"
    );
    assert_eq!(delivered(dir.path()), kept, "{label}: state");
    let deleted = rx.deleted.lock().unwrap().clone();
    assert!(
        deleted.iter().all(|k| !kept.contains(k)),
        "{label}: a row of the model was deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_inside_requests_in_every_mode_lose_nothing_and_duplicate_only_unknown_outcomes() {
    // 21 kills: upsert, insert and append with one and with three writers,
    // and mirror deletes; each kill lands while the receiver holds a
    // request it has applied but not answered.
    let rounds: &[(&str, u32, &[usize])] = &[
        ("upsert", 1, &[1, 5, 9]),
        ("insert", 1, &[1, 4, 8]),
        ("append", 1, &[2, 6, 10]),
        ("upsert", 3, &[2, 5, 9]),
        ("insert", 3, &[1, 6]),
        ("append", 3, &[3, 8]),
    ];
    let mut kills = 0;
    for (mode, concurrency, points) in rounds {
        for &after in points.iter() {
            kill_round(mode, *concurrency, after).await;
            kills += 1;
        }
    }
    for after in [1, 2, 3, 4, 5] {
        kill_in_deletes_round(after).await;
        kills += 1;
    }
    assert!(kills >= 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_inside_bulk_jobs_lose_nothing_and_duplicate_nothing_by_external_id() {
    use sluice_emulators::{EmulatorConfig, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};
    for kill_at_job in [1, 2] {
        let sf = sluice_emulators::start_salesforce(
            "127.0.0.1:0".parse().unwrap(),
            EmulatorConfig::default(),
        )
        .await
        .unwrap();
        // Each job stays in progress long enough for the kill to land
        // while the plugin polls it; the emulator finishes it anyway.
        sf.handle()
            .set_bulk_processing_delay(Duration::from_millis(300));
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        write_rows(dir.path(), 0..ROWS, 0);
        let url = sf.base_url();
        let grant = sluice_runtime::sandbox::policy::Grants::pattern_for_url(&url).unwrap();
        let yaml = format!(
            r#"
sources:
  files: {{ plugin: files, config: {{ path: /data }}, grants: ["dir:data:/data"] }}
destinations:
  sf:
    plugin: salesforce
    config:
      login_url: "{url}"
      api_hosts: []
      auth: {{ flow: client_credentials, client_id: {DEFAULT_CLIENT_ID}, client_secret: {DEFAULT_CLIENT_SECRET} }}
      objects: [Contact]
      bulk_threshold: 50
      poll_interval_ms: 20
    grants: ["{grant}"]
models:
  customers: {{ source: files, object: customers.csv, primary_key: email }}
syncs:
  customers:
    model: customers
    destination: sf
    object: Contact
    mode: upsert
    identifier: External_Id__c
    batch_size: 60
    mappings:
      - {{ from: email, to: External_Id__c }}
      - {{ from: email, to: LastName }}
"#
        );
        std::fs::write(dir.path().join("sluice.yaml"), yaml).unwrap();

        let mut child = sluice(dir.path()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while sf.handle().bulk_jobs().len() < kill_at_job {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the run ended before job {kill_at_job}"
            );
            assert!(Instant::now() < deadline, "no Bulk job");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        child.kill().unwrap(); // SIGKILL, while the job runs
        child.wait().unwrap();
        let state = claimed(dir.path());
        // Let the orphaned job finish in the emulator, as it would in
        // Salesforce, before the rerun.
        tokio::time::sleep(Duration::from_millis(800)).await;
        let stored: BTreeSet<String> = sf
            .handle()
            .records("Contact")
            .iter()
            .map(|r| r["External_Id__c"].as_str().unwrap().to_string())
            .collect();
        assert!(
            state.is_subset(&stored),
            "job {kill_at_job}: state claims unstored rows"
        );

        assert!(
            sluice(dir.path()).status().unwrap().success(),
            "the rerun failed"
        );
        let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
        for r in sf.handle().records("Contact") {
            *by_id
                .entry(r["External_Id__c"].as_str().unwrap().to_string())
                .or_insert(0) += 1;
        }
        assert_eq!(
            by_id.keys().cloned().collect::<BTreeSet<_>>(),
            emails(0..ROWS),
            "job {kill_at_job}: every row is stored"
        );
        assert!(
            by_id.values().all(|n| *n == 1),
            "job {kill_at_job}: an external id stored twice"
        );
        assert_eq!(delivered(dir.path()), emails(0..ROWS));
    }
}
