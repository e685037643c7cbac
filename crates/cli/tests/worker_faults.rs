//! Issue 13's faults for `sluice worker`, with real processes: the state's
//! PostgreSQL restarted under load, and workers whose clocks are minutes
//! apart. Both run one sync of 400 rows in batches of 5 to a slow webhook
//! receiver and check what it got: every row with its own content, and no
//! row more often than at-least-once allows (a batch in flight when a run
//! was cut off is sent again by the next run).
//!
//! **PostgreSQL restarted.** The machine's PostgreSQL is shared by other
//! tests, so this one starts a cluster of its own ([`PrivatePostgres`])
//! and restarts it (a fast shutdown, which ends every session, then a
//! start on the same port and data) twice while a run is under way. The
//! run cut off cannot go on: its store's connections and its lease (an
//! advisory lock of a session) ended with the server, and the store never
//! reconnects behind the run's back, which would hold no lease. Its job is
//! retried, or handed back by the heartbeat sweep, and the rerun marks it
//! killed and sends only what it had not committed. Each worker's job
//! queue reconnects by itself (`crates/server/src/worker.rs`,
//! `supervise`), the processes stay up, and `sluice serve` answers
//! `/readyz` again.
//!
//! **Clocks ten minutes apart.** Two workers run under libfaketime (one
//! 10 minutes ahead, one 10 minutes behind; the monotonic clock, which
//! tokio's timers use, is left alone) beside one with the true time, and
//! whichever runs the sync is SIGKILLed twice, so the run is taken over
//! across clocks. Skew cannot break a lease because no decision compares
//! one host's clock with another's: a run's lease is a PostgreSQL advisory
//! lock, held by its session whatever the time; a worker's liveness is
//! its heartbeat row, written with the database's `now()` and judged stale
//! by the sweep against the database's `now()` (graphile-worker's
//! `worker_heartbeat` and `list_stale_workers`; its one comparison with
//! the local clock, a longer threshold for workers holding jobs flagged
//! `infrastructure_resilient`, never applies: run jobs carry no flags);
//! jobs are due by the database's `now()` too, and a job put back for a
//! run slot is given a time read from the database
//! (`crates/server/src/resources.rs`, `requeue_later`). A worker's own
//! clock only stamps its runs' `started_at`/`finished_at`, which the test
//! reads back to prove the skew was in force.

use sluice_tests as common;

use common::service::{worker_command, Service, TENANT};
use common::tls_servers::PrivatePostgres;
use common::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const ROWS: usize = 400;
const BATCH: usize = 5;
/// The most batches one run has in flight at once (the engine's writers).
const MAX_WRITERS: usize = 4;
/// A worker's heartbeat, and how old it may be before its jobs are handed
/// back.
const HEARTBEAT: &str = "1s";
const STALE_AFTER: &str = "3s";

/// A `sluice worker` process, killed when dropped (a failed test leaves
/// none behind).
struct Worker {
    child: Child,
    log: PathBuf,
    /// The offset of its clock from the true time, in seconds.
    skew: i64,
}

impl Worker {
    /// Starts a worker in `work` whose clock is `skew` seconds off (through
    /// libfaketime when not zero).
    fn spawn(url: &str, work: &Path, skew: i64) -> Worker {
        let mut command = worker_command(Path::new(env!("CARGO_BIN_EXE_sluice")), url, work);
        command.args(["--heartbeat", HEARTBEAT, "--stale-after", STALE_AFTER]);
        if skew != 0 {
            command
                .env("LD_PRELOAD", libfaketime())
                .env("FAKETIME", format!("{skew:+}s"))
                // Tokio's timers and wasmtime's epochs keep true time.
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        Worker {
            child: command.spawn().expect("starting sluice worker"),
            log: work.with_extension("log"),
            skew,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics, with its log, if the process has ended.
    fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "worker {} exited with {status}:\n{}",
                self.pid(),
                self.log()
            );
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for a clean exit (idle workers stop at once).
    fn terminate(&mut self) {
        let term = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(term.success());
        let by = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < by, "a worker ignored SIGTERM for 60 s");
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(
            status.success(),
            "worker stopped with {status}:\n{}",
            self.log()
        );
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// libfaketime's preload library, as Debian installs it
/// (scripts/faketime-deps.sh).
fn libfaketime() -> String {
    let out = Command::new("dpkg")
        .args(["-L", "libfaketime"])
        .output()
        .expect("running dpkg -L libfaketime");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.ends_with("/libfaketime.so.1"))
        .map(str::to_owned)
        .expect("libfaketime is not installed: run scripts/faketime-deps.sh")
}

/// Waits until every worker has started taking jobs.
async fn wait_until_taking_jobs(workers: &mut [Worker]) {
    let by = Instant::now() + Duration::from_secs(120);
    for w in workers {
        while !w.log().contains("taking run jobs") {
            w.assert_alive();
            assert!(Instant::now() < by, "a worker did not start:\n{}", w.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn project(receiver: &Receiver) -> Value {
    json!({"files": customers_to_webhook(receiver, ROWS, BATCH)})
}

/// A run as the state records it.
#[derive(Debug, Clone)]
struct Run {
    id: i64,
    status: String,
    /// The pid in its owner string.
    pid: u32,
    /// By its worker's clock, microseconds since the epoch.
    started_at: i64,
}

/// Every run of the tenant, oldest first, read on a connection of its own
/// (the database may have restarted since the last read); `None` while
/// the database does not answer.
async fn runs(url: &str) -> Option<Vec<Run>> {
    let (sql, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .ok()?;
    tokio::spawn(conn);
    let rows = sql
        .query(
            "SELECT id, status, owner, started_at FROM sluice.runs WHERE tenant = $1 ORDER BY id",
            &[&TENANT],
        )
        .await
        .ok()?;
    Some(
        rows.iter()
            .map(|r| {
                let owner: String = r.get(2);
                Run {
                    id: r.get(0),
                    status: r.get(1),
                    pid: owner
                        .split(':')
                        .nth(1)
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(0),
                    started_at: r.get(3),
                }
            })
            .collect(),
    )
}

/// Polls the runs until `done` holds for them, failing after `limit` with
/// them and the workers' logs; on the way, how many were `running` at
/// once at most.
async fn watch_runs(
    url: &str,
    workers: &mut [Worker],
    limit: Duration,
    mut done: impl FnMut(&[Run]) -> bool,
) -> usize {
    let by = Instant::now() + limit;
    let mut most_running = 0;
    loop {
        if let Some(all) = runs(url).await {
            most_running = most_running.max(all.iter().filter(|r| r.status == "running").count());
            if done(&all) {
                return most_running;
            }
            if Instant::now() > by {
                let logs: String = workers.iter().map(|w| w.log()).collect();
                panic!("runs after {limit:?}: {all:?}\n{logs}");
            }
        }
        for w in workers.iter_mut() {
            w.assert_alive();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many `sluice worker` incarnations heartbeat in the queue right now.
async fn live_queue_workers(url: &str) -> Option<i64> {
    let (sql, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .ok()?;
    tokio::spawn(conn);
    let row = sql
        .query_one(
            "SELECT count(*) FROM sluice_queue._private_workers
             WHERE last_heartbeat_at > now() - interval '2 seconds'",
            &[],
        )
        .await
        .ok()?;
    Some(row.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_ride_out_postgresql_restarts_under_load() {
    const RESTARTS: usize = 2;
    let mut pg = PrivatePostgres::start();
    pg.psql("postgres", "CREATE DATABASE state").unwrap();
    let url = pg.url("state");
    let work = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    // Slow enough that a run is under way for seconds: time to restart.
    *rx.delay.lock().unwrap() = Duration::from_millis(100);
    let service = Service::start(&url, work.path().join("server"), None, &rx.grant()).await;
    service.put_project(&project(&rx)).await;
    let mut workers: Vec<Worker> = (0..2)
        .map(|i| Worker::spawn(&url, &work.path().join(format!("w{i}")), 0))
        .collect();
    wait_until_taking_jobs(&mut workers).await;
    service.trigger("customers").await;

    // Restart PostgreSQL while a run is under way and has sent some rows,
    // then again once the rerun has sent more.
    let mut restarted: Vec<i64> = Vec::new();
    let mut rows_then = 0;
    let most_running = watch_runs(&url, &mut workers, Duration::from_secs(400), |all| {
        if all.iter().any(|r| r.status == "succeeded") {
            return true;
        }
        let sent = rx.rows().len();
        let under_way = all.iter().find(|r| r.status == "running");
        if let Some(run) = under_way {
            if restarted.len() < RESTARTS && !restarted.contains(&run.id) && sent >= rows_then + 40
            {
                tokio::task::block_in_place(|| pg.restart());
                restarted.push(run.id);
                rows_then = sent;
            }
        }
        false
    })
    .await;
    assert_eq!(restarted.len(), RESTARTS, "restarts under a run");
    assert_eq!(
        most_running, 1,
        "two runs of one sync were under way at once"
    );

    // The API answers again.
    let by = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = service
            .http
            .get(format!("{}/readyz", service.base))
            .send()
            .await
            .map(|r| r.status().as_u16());
        if matches!(ready, Ok(200)) {
            break;
        }
        assert!(Instant::now() < by, "/readyz after the restarts: {ready:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Each worker process is back on the queue: one live heartbeat each
    // (a dead connection's incarnation stops beating and is swept).
    let by = Instant::now() + Duration::from_secs(60);
    loop {
        let live = live_queue_workers(&url).await;
        if live == Some(workers.len() as i64) {
            break;
        }
        for w in &mut workers {
            w.assert_alive();
        }
        assert!(Instant::now() < by, "live queue workers: {live:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A run enqueued after the restarts is taken and succeeds (nothing
    // left to send).
    service.trigger("customers").await;
    watch_runs(&url, &mut workers, Duration::from_secs(120), |all| {
        all.iter().filter(|r| r.status == "succeeded").count() == 2
    })
    .await;

    let all = runs(&url).await.unwrap();
    assert!(all.iter().all(|r| r.status != "running"), "{all:?}");
    let killed: Vec<i64> = all
        .iter()
        .filter(|r| r.status != "succeeded")
        .map(|r| {
            assert_eq!(r.status, "killed", "{all:?}");
            r.id
        })
        .collect();
    assert_eq!(killed, restarted, "the runs cut off by a restart: {all:?}");
    let repeated = rx.repeats_with_every_row(ROWS);
    assert!(
        repeated <= RESTARTS * BATCH * MAX_WRITERS,
        "{repeated} repeated rows for {RESTARTS} restarts"
    );
    eprintln!(
        "{RESTARTS} restarts, {} runs, {repeated} rows delivered twice",
        all.len()
    );
    for w in &mut workers {
        w.assert_alive();
        w.terminate();
    }
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_with_clocks_ten_minutes_apart_take_over_only_dead_runs() {
    const KILLS: usize = 2;
    const SKEW: i64 = 600;
    let db = PgDatabase::create("worker_skew");
    let url = db.url();
    let work = tempfile::tempdir().unwrap();
    let rx = receiver().await;
    *rx.delay.lock().unwrap() = Duration::from_millis(60);
    let service = Service::start(&url, work.path().join("server"), None, &rx.grant()).await;
    service.put_project(&project(&rx)).await;
    let test_start = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();

    // The skewed workers first, so one of them takes the first run.
    let mut workers = vec![
        Worker::spawn(&url, &work.path().join("ahead"), SKEW),
        Worker::spawn(&url, &work.path().join("behind"), -SKEW),
    ];
    wait_until_taking_jobs(&mut workers).await;
    service.trigger("customers").await;
    watch_runs(&url, &mut workers, Duration::from_secs(120), |all| {
        all.iter().any(|r| r.status == "running")
    })
    .await;
    workers.push(Worker::spawn(&url, &work.path().join("true"), 0));
    wait_until_taking_jobs(&mut workers).await;

    // SIGKILL whichever worker runs the sync once it has sent some rows,
    // twice: the last worker standing finishes.
    let mut killed: BTreeMap<i64, u32> = BTreeMap::new();
    let mut dead: Vec<Worker> = Vec::new();
    let mut most_running = 0;
    let by = Instant::now() + Duration::from_secs(400);
    loop {
        assert!(
            Instant::now() < by,
            "the sync never succeeded: {:?}",
            runs(&url).await
        );
        let all = runs(&url).await.expect("the shared PostgreSQL answers");
        most_running = most_running.max(all.iter().filter(|r| r.status == "running").count());
        if all.iter().any(|r| r.status == "succeeded") {
            break;
        }
        for w in &mut workers {
            w.assert_alive();
        }
        let under_way = all.iter().find(|r| r.status == "running");
        if let Some(run) = under_way {
            let sent = rx.rows().len();
            if killed.len() < KILLS
                && !killed.contains_key(&run.id)
                && sent > killed.len() * 60 + 20
            {
                if let Some(i) = workers.iter().position(|w| w.pid() == run.pid) {
                    let mut w = workers.remove(i);
                    w.kill();
                    killed.insert(run.id, w.pid());
                    dead.push(w);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(killed.len(), KILLS, "runs killed: {killed:?}");
    assert_eq!(
        most_running, 1,
        "two runs of one sync were under way at once"
    );

    let all = runs(&url).await.unwrap();
    let logs: String = workers.iter().chain(&dead).map(|w| w.log()).collect();
    // Only the runs of the killed workers were taken over.
    let taken_over: BTreeMap<i64, u32> = all
        .iter()
        .filter(|r| r.status != "succeeded")
        .map(|r| {
            assert_eq!(r.status, "killed", "{all:?}\n{logs}");
            (r.id, r.pid)
        })
        .collect();
    assert_eq!(taken_over, killed, "{all:?}\n{logs}");
    assert_eq!(all.len(), KILLS + 1, "one run per worker: {all:?}\n{logs}");
    // Each run was stamped by its worker's clock: the skew was in force,
    // and every takeover crossed clocks.
    let elapsed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() - test_start;
    let mut skews = Vec::new();
    for run in &all {
        let worker = workers
            .iter()
            .chain(&dead)
            .find(|w| w.pid() == run.pid)
            .unwrap_or_else(|| panic!("run {run:?} of no worker of this test"));
        let off = run.started_at / 1_000_000 - test_start.as_secs() as i64 - worker.skew;
        assert!(
            (-60..=elapsed.as_secs() as i64 + 60).contains(&off),
            "run {} was stamped {off} s from the test's start by its {:+} s clock",
            run.id,
            worker.skew
        );
        skews.push(worker.skew);
    }
    assert!(skews.windows(2).all(|w| w[0] != w[1]), "clocks: {skews:?}");
    assert!(
        skews[0] != 0,
        "the first run was a skewed worker's: {skews:?}"
    );

    let repeated = rx.repeats_with_every_row(ROWS);
    assert!(
        repeated <= KILLS * BATCH * MAX_WRITERS,
        "{repeated} repeated rows for {KILLS} kills"
    );
    let distinct: BTreeSet<i64> = skews.iter().copied().collect();
    eprintln!(
        "{KILLS} kills, runs by clocks {skews:?} ({} distinct), {repeated} rows delivered twice",
        distinct.len()
    );
    for w in &mut workers {
        w.terminate();
    }
    service.shutdown().await;
}
