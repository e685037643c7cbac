//! `sluice worker` with real processes: three workers share one PostgreSQL
//! state; whichever runs the sync is SIGKILLed, again and again, and
//! replaced. The killed worker's job must come back (heartbeat recovery),
//! another worker must resume the sync, no two runs of it may be under way
//! at once, and the webhook receiver must end up with every row, exactly,
//! duplicates only where at-least-once allows (a batch in flight at a kill).

use sluice_tests as common;

use common::service::{call, worker_command, Service};
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROWS: usize = 300;
const KILLS: usize = 3;
/// The most batches one run has in flight at once (the engine's writers).
const MAX_WRITERS: usize = 4;

fn spawn_worker(url: &str, work: &std::path::Path) -> Child {
    worker_command(
        std::path::Path::new(env!("CARGO_BIN_EXE_sluice")),
        url,
        work,
    )
    .args(["--heartbeat", "1s", "--stale-after", "3s"])
    .spawn()
    .expect("starting sluice worker")
}

/// Every worker's stderr, each headed by its file name.
fn worker_logs(dir: &std::path::Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            out.push_str(&format!("== {}\n{text}\n", path.display()));
        }
    }
    out
}

fn project(receiver: &Receiver) -> Value {
    json!({"files": customers_to_webhook(receiver, ROWS, 5)})
}

/// (id, status, owner pid) of every run of the sync, oldest first.
async fn runs(sql: &tokio_postgres::Client) -> Vec<(i64, String, u32)> {
    sql.query(
        "SELECT id, status, owner FROM sluice.runs WHERE tenant = 'acme' ORDER BY id",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| {
        let owner: String = r.get(2);
        let pid = owner
            .split(':')
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        (r.get(0), r.get(1), pid)
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_workers_one_killed_repeatedly_deliver_every_row() {
    let db = PgDatabase::create("worker_kill");
    let work = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    // Slow enough that a run is under way for seconds: time to kill it.
    *rx.delay.lock().unwrap() = Duration::from_millis(40);
    // The receiver is on loopback, beyond the default ceiling.
    let service = Service::start(&db.url(), work.path().join("server"), None, &rx.grant()).await;
    service.put_project(&project(&rx)).await;

    let (sql, conn) = tokio_postgres::connect(&db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);

    let mut workers: Vec<Child> = (0..3)
        .map(|i| spawn_worker(&db.url(), &work.path().join(format!("w{i}"))))
        .collect();
    service.trigger("customers").await;

    // Kill whichever worker runs the sync, each time a new run is under
    // way, and start another in its place.
    let mut killed_runs = BTreeSet::new();
    let mut most_running = 0;
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut spawned = 3;
    loop {
        assert!(
            Instant::now() < deadline,
            "the sync never succeeded: {:?}",
            runs(&sql).await
        );
        let all = runs(&sql).await;
        let running: Vec<_> = all.iter().filter(|r| r.1 == "running").collect();
        most_running = most_running.max(running.len());
        if all.iter().any(|r| r.1 == "succeeded") {
            break;
        }
        if killed_runs.len() < KILLS {
            if let Some((id, _, pid)) = running.first().map(|r| (**r).clone()) {
                // Some rows first, so the kill lands mid-run.
                if !killed_runs.contains(&id) && rx.rows().len() > killed_runs.len() * 20 + 10 {
                    if let Some(i) = workers.iter().position(|w| w.id() == pid) {
                        workers[i].kill().unwrap();
                        workers[i].wait().unwrap();
                        killed_runs.insert(id);
                        workers[i] =
                            spawn_worker(&db.url(), &work.path().join(format!("w{spawned}")));
                        spawned += 1;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // SIGTERM: idle workers stop at once, and cleanly.
    for w in &mut workers {
        let term = Command::new("kill")
            .args(["-TERM", &w.id().to_string()])
            .status()
            .unwrap();
        assert!(term.success());
    }
    let stop_by = Instant::now() + Duration::from_secs(30);
    for w in &mut workers {
        let status = loop {
            if let Some(status) = w.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > stop_by {
                let _ = w.kill();
                panic!("a worker did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(
            status.success(),
            "a worker stopped with {status}; the workers' logs:\n{}",
            worker_logs(work.path())
        );
    }
    assert_eq!(killed_runs.len(), KILLS, "runs killed: {killed_runs:?}");
    assert_eq!(
        most_running, 1,
        "two runs of one sync were under way at once"
    );
    let all = runs(&sql).await;
    assert_eq!(
        all.iter().filter(|r| r.1 == "succeeded").count(),
        1,
        "{all:?}"
    );

    // Every row, with its own content; repeats counted by idempotency key.
    let repeated = rx.repeats_with_every_row(ROWS);
    // At least once: only the batches in flight at each kill (sent, not
    // yet answered and committed) may come again; the engine writes a few
    // batches of 5 at once.
    assert!(
        repeated <= KILLS * 5 * MAX_WRITERS,
        "{repeated} repeated rows for {KILLS} kills"
    );
    eprintln!(
        "{KILLS} kills, {} runs, {repeated} rows delivered twice",
        all.len()
    );
    service.shutdown().await;
}

#[test]
fn a_worker_refuses_bad_settings_naming_them() {
    let db = PgDatabase::create("worker_args");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["worker", "--state", &db.url(), "--no-schedule"])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} was accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&["--heartbeat", "10s", "--stale-after", "15s"]);
    assert!(
        err.contains("--stale-after") && err.contains("two heartbeats"),
        "{err}"
    );
    let err = run(&["--concurrency", "0"]);
    assert!(err.contains("--concurrency must be at least 1"), "{err}");
    let err = run(&["--heartbeat", "soon"]);
    assert!(err.contains("--heartbeat"), "{err}");
    let err = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "worker",
            "--state",
            "postgres://nobody:secret@127.0.0.1:1/none",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&err.stderr);
    assert!(!err.status.success());
    assert!(!text.contains("secret"), "the password was printed: {text}");
}

/// Issue 13, item 8: a worker's JSON log lines carry the tenant, sync and
/// run of the run they speak of, and a tenant's secret appears in none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workers_json_logs_name_tenant_sync_and_run_and_never_a_secret() {
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let db = PgDatabase::create("worker_logs");
    let work = tempfile::tempdir().unwrap();
    let keys = work.path().join("keys");
    std::fs::write(&keys, "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").unwrap();
    let rx = receiver().await;
    // The first batch is refused: its rows are rejected, which is logged.
    rx.script.lock().unwrap().push_back((400, None));
    let keyring =
        sluice_server::secrets::Keyring::parse(&std::fs::read_to_string(&keys).unwrap()).ok();
    let service = Service::start(&db.url(), work.path().join("server"), keyring, &rx.grant()).await;
    let (s, b) = call(
        service
            .http
            .put(format!("{}/api/v1/secrets/HOOK_SECRET", service.base))
            .bearer_auth(&service.token)
            .json(&json!({"value": SECRET})),
    )
    .await;
    assert!(s == 200 || s == 201 || s == 204, "{s} {b}");
    let mut upload = project(&rx);
    let yaml = upload["files"]["sluice.yaml"].as_str().unwrap().replace(
        "config: { url: \"",
        "config: { secret: \"${HOOK_SECRET}\", url: \"",
    );
    assert!(yaml.contains("${HOOK_SECRET}"), "{yaml}");
    upload["files"]["sluice.yaml"] = json!(yaml);
    service.put_project(&upload).await;

    let log = work.path().join("worker.log");
    let mut worker = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "--log-format",
            "json",
            "worker",
            "--state",
            &db.url(),
            "--work-dir",
        ])
        .arg(work.path().join("w"))
        .arg("--secrets-key-file")
        .arg(&keys)
        .args(["--no-schedule", "--concurrency", "1"])
        .env("SLUICE_CACHE_DIR", shared_cache_dir())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    service.trigger("customers").await;
    let (sql, conn) = tokio_postgres::connect(&db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let deadline = Instant::now() + Duration::from_secs(120);
    let run = loop {
        let ended = runs(&sql).await.into_iter().find(|r| r.1 != "running");
        if let Some((id, status, _)) = ended {
            assert_eq!(status, "succeeded");
            break id;
        }
        assert!(
            Instant::now() < deadline,
            "no run ended: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The run's last lines are written as it ends.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status();
    let _ = worker.wait();
    service.shutdown().await;

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains(SECRET) && !text.contains("MfKQ9r8GKYqr"),
        "a secret in the log:\n{text}"
    );
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    // A field of the event or of any span it is in.
    let field = |line: &Value, name: &str| -> Option<String> {
        let scopes = std::iter::once(&line["fields"])
            .chain(line["spans"].as_array().into_iter().flatten())
            .chain(std::iter::once(&line["span"]));
        scopes
            .filter_map(|s| s.get(name))
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string())
            })
            .next()
    };
    let ended = lines
        .iter()
        .find(|l| l["fields"]["message"] == "run ended")
        .unwrap_or_else(|| panic!("no `run ended` line:\n{text}"));
    assert_eq!(field(ended, "tenant").as_deref(), Some("acme"), "{ended}");
    assert_eq!(
        field(ended, "sync").as_deref(),
        Some("customers"),
        "{ended}"
    );
    assert_eq!(field(ended, "run"), Some(run.to_string()), "{ended}");
    // Every line the run's span covers names its tenant and sync.
    let in_run: Vec<&Value> = lines.iter().filter(|l| field(l, "run").is_some()).collect();
    assert!(!in_run.is_empty());
    for l in in_run {
        assert_eq!(field(l, "tenant").as_deref(), Some("acme"), "{l}");
        assert_eq!(field(l, "sync").as_deref(), Some("customers"), "{l}");
    }
}
