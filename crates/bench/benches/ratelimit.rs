//! Rate-limit benchmark (issue 4, "Measure").
//!
//! The in-process Salesforce emulator enforces a rolling window of `R`
//! requests per `interval` (403 REQUEST_LIMIT_EXCEEDED beyond it). Against it:
//!
//! 1. **Sluice**: a full sync of `N` CSV rows (files source → Salesforce
//!    destination, upsert on an external id, `batch_size: 200`, the
//!    destination's `rate_limit` override set to the same `R` per
//!    `interval`) through `SyncEngine`, with the embedded plugins. Reported:
//!    rows/s against the theoretical `R × 200 / interval`, the share of
//!    requests throttled after the first interval, and whether every row
//!    landed (emulator records == `N` − the rows rejected on purpose).
//! 2. **Naive**: one single-record upsert request per row
//!    (`PATCH …/sobjects/Contact/External_Id__c/{id}`) with reqwest,
//!    sequential, waiting 1 s after every 403 REQUEST_LIMIT_EXCEEDED.
//!
//! Run with `cargo bench -p sluice --bench ratelimit`. Nothing here asserts
//! a timing; the assertions are correctness checks (no row lost, the run
//! succeeded, rejects are exactly the planted bad rows).
//!
//! `SLUICE_BENCH_QUICK=1` shrinks both runs (for a smoke run).

#[path = "common/machine.rs"]
mod machine;
use machine::print_machine;

use sluice_config as config;
use sluice_emulators::{
    EmulatorConfig, EmulatorHandle, RateLimit, StatsSnapshot, DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
};
use sluice_engine::run::{RunOptions, SyncEngine};
use sluice_runtime::sandbox::policy::Grants;
use sluice_runtime::{Runtime, RuntimeOptions};
use sluice_state::{RunStatus, SqliteStore};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Requests the emulator admits per rolling window. 20 per 2 s (10 requests
/// a second, one every 100 ms) is far above the emulator's and the plugin's
/// per-request cost here (a few ms), so the limit, not the machine, sets
/// the pace; a 2 s window spans many requests, so "after the first
/// interval" leaves most of the run to judge the steady state.
const REQUESTS: u32 = 20;
const INTERVAL: Duration = Duration::from_secs(2);
/// Rows per sObject Collections request (the API's maximum).
const BATCH: usize = 200;
/// Sluice run: 50,000 rows = 250 write requests = ~25 s at the limit, i.e.
/// 12.5 windows.
const ROWS: usize = 50_000;
/// Naive run: 200 rows = 200 requests = ~20 s at the limit.
const NAIVE_ROWS: usize = 200;
/// Rows with an invalid email, one in every this many: Salesforce rejects
/// them per record inside a 200, so they must end up in the ledger, not in
/// the emulator.
const BAD_EVERY: usize = 10_000;
/// Salesforce API version the naive client talks (the plugin's default).
const API: &str = "v60.0";

fn main() {
    let quick = std::env::var_os("SLUICE_BENCH_QUICK").is_some();
    let (rows, naive_rows) = if quick {
        (ROWS / 10, NAIVE_ROWS / 4)
    } else {
        (ROWS, NAIVE_ROWS)
    };
    print_machine();
    let limit = RateLimit::new(REQUESTS, INTERVAL);
    let theoretical = f64::from(REQUESTS) * BATCH as f64 / INTERVAL.as_secs_f64();
    println!(
        "\nlimit: {REQUESTS} requests per {} ms (rolling window); batch {BATCH}; \
         theoretical {theoretical:.0} rows/s",
        INTERVAL.as_millis()
    );
    // Two workers, as on the 2-core machine the tests run on.
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");

    let sluice = tokio.block_on(sluice_run(limit, rows));
    let naive = tokio.block_on(naive_run(limit, naive_rows));

    println!("\nresults");
    sluice.print("sluice", theoretical);
    naive.print("naive", f64::from(REQUESTS) / INTERVAL.as_secs_f64());
    println!(
        "  ratio sluice/naive (rows/s, whole run): {:.1}x",
        sluice.rows_per_s() / naive.rows_per_s()
    );
    println!(
        "\ntargets: throughput >= 95% of theoretical: {}; <= 1% throttled after the first interval: {}; zero rows lost: {}",
        verdict(sluice.rows_per_s() >= 0.95 * theoretical),
        verdict(sluice.after_first.throttled_share() <= 0.01),
        verdict(sluice.lost == 0),
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

/// Request counters of one window of the run.
#[derive(Debug, Clone, Copy, Default)]
struct Window {
    requests: u64,
    throttled: u64,
}

impl Window {
    fn throttled_share(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.throttled as f64 / self.requests as f64
        }
    }
}

struct Outcome {
    rows: usize,
    /// From the start of the run (for Sluice: loading the plugins, which are
    /// in the compile cache after the first run) to its end.
    elapsed: Duration,
    /// From the first write request the emulator saw to the end of the run.
    writing: Duration,
    total: Window,
    first_interval: Window,
    after_first: Window,
    lost: usize,
    rejected: usize,
    /// What the client counted as throttled waits.
    client_waits: u64,
}

impl Outcome {
    fn rows_per_s(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&self, name: &str, theoretical: f64) {
        let steady = self.rows as f64 / self.writing.as_secs_f64();
        println!(
            "  {name}: {} rows ({} rejected on purpose)",
            self.rows, self.rejected
        );
        println!(
            "    whole run {:.2} s: {:.1} rows/s = {:.1}% of theoretical {theoretical:.1}",
            self.elapsed.as_secs_f64(),
            self.rows_per_s(),
            100.0 * self.rows_per_s() / theoretical
        );
        println!(
            "    first write to end {:.2} s: {steady:.1} rows/s = {:.1}% of theoretical",
            self.writing.as_secs_f64(),
            100.0 * steady / theoretical
        );
        println!(
            "    requests {} (throttled {}); first interval {} (throttled {}); after it {} (throttled {} = {:.2}%)",
            self.total.requests,
            self.total.throttled,
            self.first_interval.requests,
            self.first_interval.throttled,
            self.after_first.requests,
            self.after_first.throttled,
            100.0 * self.after_first.throttled_share()
        );
        println!(
            "    client throttled waits {}; rows lost {}",
            self.client_waits, self.lost
        );
    }
}

/// Watches an emulator's counters: when the first request arrives, when the
/// first write arrives, and the counters one interval after the first
/// request (the split between "first interval" and "after it").
struct Monitor {
    task: tokio::task::JoinHandle<(Instant, Instant, StatsSnapshot)>,
}

impl Monitor {
    fn start(
        handle: EmulatorHandle,
        interval: Duration,
        is_write: fn(&StatsSnapshot) -> bool,
    ) -> Self {
        let task = tokio::spawn(async move {
            let poll = Duration::from_millis(1);
            let first = loop {
                if handle.stats().requests > 0 {
                    break Instant::now();
                }
                tokio::time::sleep(poll).await;
            };
            let mut first_write = None;
            let split = first + interval;
            while Instant::now() < split {
                if first_write.is_none() && is_write(&handle.stats()) {
                    first_write = Some(Instant::now());
                }
                tokio::time::sleep(poll).await;
            }
            let at_split = handle.stats();
            let first_write = loop {
                if let Some(t) = first_write {
                    break t;
                }
                if is_write(&handle.stats()) {
                    break Instant::now();
                }
                tokio::time::sleep(poll).await;
            };
            (first, first_write, at_split)
        });
        Monitor { task }
    }

    /// Call once the run is over (and lasted longer than one interval).
    async fn finish(
        self,
        end: Instant,
        handle: &EmulatorHandle,
    ) -> (Duration, Window, Window, Window) {
        let (_first, first_write, at_split) = self.task.await.expect("monitor");
        let total = handle.stats();
        let first_interval = Window {
            requests: at_split.requests,
            throttled: at_split.throttled,
        };
        let after = Window {
            requests: total.requests - at_split.requests,
            throttled: total.throttled - at_split.throttled,
        };
        let total = Window {
            requests: total.requests,
            throttled: total.throttled,
        };
        (end - first_write, total, first_interval, after)
    }
}

const UPSERT_MANY: &str = "/services/data/{version}/composite/sobjects/{object}/{field}";
const UPSERT_ONE: &str = "/services/data/{version}/sobjects/{object}/{field}/{value}";

fn is_bad(i: usize) -> bool {
    i % BAD_EVERY == BAD_EVERY / 2
}

fn email(i: usize) -> String {
    if is_bad(i) {
        format!("not-an-email-{i}")
    } else {
        format!("c{i}@example.com")
    }
}

fn write_project(dir: &Path, url: &str, rows: usize, limit: RateLimit) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let mut csv = String::from("id,email,last\n");
    for i in 0..rows {
        csv.push_str(&format!("{i},{},Last{i}\n", email(i)));
    }
    std::fs::write(dir.join("data/people.csv"), csv).unwrap();
    let grant = Grants::pattern_for_url(url).unwrap();
    let yaml = format!(
        r#"
sources:
  files: {{ plugin: files, config: {{ path: /data }}, grants: ["dir:data:/data"] }}
destinations:
  sf:
    plugin: salesforce
    config:
      login_url: "{url}"
      auth: {{ flow: client_credentials, client_id: {DEFAULT_CLIENT_ID}, client_secret: {DEFAULT_CLIENT_SECRET} }}
      objects: [Contact]
    grants: ["{grant}"]
    rate_limit: {{ requests: {requests}, per_ms: {per_ms}, concurrency: 1 }}
models:
  people: {{ source: files, object: people.csv, primary_key: id }}
syncs:
  people:
    model: people
    destination: sf
    object: Contact
    mode: upsert
    identifier: External_Id__c
    batch_size: {BATCH}
    mappings:
      - {{ from: id, to: External_Id__c }}
      - {{ from: email, to: Email }}
      - {{ from: last, to: LastName }}
"#,
        requests = limit.requests,
        per_ms = limit.interval.as_millis(),
    );
    std::fs::write(dir.join("sluice.yaml"), yaml).unwrap();
}

fn limited(limit: RateLimit) -> EmulatorConfig {
    EmulatorConfig {
        rate_limit: Some(limit),
        ..EmulatorConfig::default()
    }
}

async fn sluice_run(limit: RateLimit, rows: usize) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-component-cache");
    let log: sluice_runtime::log::LogSink = Arc::new(|_| {});
    let runtime = Runtime::new(RuntimeOptions {
        cache_dir: Some(cache),
        log,
        ..Default::default()
    })
    .expect("runtime");

    // Warm-up on an unlimited emulator: compiles the embedded plugins into
    // the cache, so the measured run loads them like any later run would.
    {
        let sf = sluice_emulators::start_salesforce(
            "127.0.0.1:0".parse().unwrap(),
            EmulatorConfig::default(),
        )
        .await
        .unwrap();
        let warm = tempfile::tempdir().unwrap();
        write_project(warm.path(), &sf.base_url(), 10, limit);
        let project = config::validate(warm.path()).unwrap_or_else(|d| panic!("{d:?}"));
        let store = Mutex::new(SqliteStore::open_project(warm.path()).unwrap());
        let engine = SyncEngine {
            project: &project,
            runtime: &runtime,
            store: &store,
        };
        let report = engine.run("people", &RunOptions::default()).await.unwrap();
        assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
        sf.shutdown().await.unwrap();
    }

    let sf = sluice_emulators::start_salesforce("127.0.0.1:0".parse().unwrap(), limited(limit))
        .await
        .unwrap();
    write_project(dir.path(), &sf.base_url(), rows, limit);
    let project = config::validate(dir.path()).unwrap_or_else(|d| panic!("{d:?}"));
    let store = Mutex::new(SqliteStore::open_project(dir.path()).unwrap());
    let engine = SyncEngine {
        project: &project,
        runtime: &runtime,
        store: &store,
    };
    let handle = sf.handle().clone();
    let monitor = Monitor::start(handle.clone(), limit.interval, |s| {
        s.endpoint("PATCH", UPSERT_MANY) > 0
    });
    println!("\nsluice: syncing {rows} rows…");
    let started = Instant::now();
    let report = engine.run("people", &RunOptions::default()).await.unwrap();
    let end = Instant::now();
    let (writing, total, first_interval, after_first) = monitor.finish(end, &handle).await;

    // Correctness: the run succeeded, exactly the planted rows were
    // rejected, and everything else landed.
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    let bad = (0..rows).filter(|&i| is_bad(i)).count();
    assert_eq!(report.counts.rejected as usize, bad, "{:?}", report.counts);
    let landed = handle.record_count("Contact");
    let lost = (rows - bad).saturating_sub(landed);
    assert_eq!(landed, rows - bad, "rows lost or duplicated");
    println!(
        "  report: {} ms, counts {:?}",
        report.elapsed_ms, report.counts
    );
    Outcome {
        rows,
        elapsed: end - started,
        writing,
        total,
        first_interval,
        after_first,
        lost,
        rejected: bad,
        client_waits: report.counts.throttled_waits,
    }
}

async fn naive_run(limit: RateLimit, rows: usize) -> Outcome {
    let sf = sluice_emulators::start_salesforce("127.0.0.1:0".parse().unwrap(), limited(limit))
        .await
        .unwrap();
    let handle = sf.handle().clone();
    let client = reqwest::Client::new();
    let monitor = Monitor::start(handle.clone(), limit.interval, |s| {
        s.endpoint("PATCH", UPSERT_ONE) > 0
    });
    println!("\nnaive: upserting {rows} rows one request each…");
    let started = Instant::now();
    let token: serde_json::Value = client
        .post(format!("{}/services/oauth2/token", sf.base_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
        ])
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let bearer = token["access_token"].as_str().unwrap().to_string();
    let instance = token["instance_url"].as_str().unwrap().to_string();
    let mut rejected = 0;
    let mut waits = 0;
    for i in 0..rows {
        let url = format!("{instance}/services/data/{API}/sobjects/Contact/External_Id__c/{i}");
        let body = serde_json::json!({ "Email": email(i), "LastName": format!("Last{i}") });
        loop {
            let response = client
                .patch(&url)
                .bearer_auth(&bearer)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            match status {
                200 | 201 | 204 => break,
                403 if text.contains("REQUEST_LIMIT_EXCEEDED") => {
                    waits += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                400 if is_bad(i) => {
                    rejected += 1;
                    break;
                }
                _ => panic!("row {i}: HTTP {status}: {text}"),
            }
        }
    }
    let end = Instant::now();
    let (writing, total, first_interval, after_first) = monitor.finish(end, &handle).await;
    let bad = (0..rows).filter(|&i| is_bad(i)).count();
    assert_eq!(rejected, bad);
    let landed = handle.record_count("Contact");
    assert_eq!(landed, rows - bad, "rows lost or duplicated");
    Outcome {
        rows,
        elapsed: end - started,
        writing,
        total,
        first_interval,
        after_first,
        lost: (rows - bad).saturating_sub(landed),
        rejected: bad,
        client_waits: waits,
    }
}
