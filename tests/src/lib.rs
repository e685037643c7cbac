//! Support shared by the end-to-end tests: runtimes with collected logs,
//! sandboxes, a scripted webhook receiver, the hostile plugin's path,
//! database servers started for a test (`tls_servers`: with TLS, or a
//! PostgreSQL that may be restarted), and `sluice serve` with a tenant for
//! the tests of `sluice worker` (`service`).

include!(concat!(env!("OUT_DIR"), "/hostile.rs"));

pub mod service;
pub mod tls_servers;

use sluice_runtime::log::{LogLine, LogSink};
use sluice_runtime::sandbox::policy::Grants;
use sluice_runtime::{Runtime, RuntimeOptions, Sandbox};
use std::sync::{Arc, Mutex};

/// A runtime whose plugin log lines are collected for assertions. The
/// compile cache is shared by the test binaries (under target/), so each
/// component is compiled once per build rather than once per test.
pub struct TestRuntime {
    pub runtime: Runtime,
    pub lines: Arc<Mutex<Vec<LogLine>>>,
}

pub fn shared_cache_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-component-cache")
}

pub fn runtime_with(customise: impl FnOnce(&mut RuntimeOptions)) -> TestRuntime {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink_lines = lines.clone();
    let sink: LogSink = Arc::new(move |line| sink_lines.lock().unwrap().push(line));
    let mut options = RuntimeOptions {
        cache_dir: Some(shared_cache_dir()),
        log: sink,
        ..Default::default()
    };
    customise(&mut options);
    TestRuntime {
        runtime: Runtime::new(options).unwrap(),
        lines,
    }
}

pub fn runtime() -> TestRuntime {
    runtime_with(|_| {})
}

pub fn sandbox(grants: &[&str]) -> Sandbox {
    let grants: Vec<String> = grants.iter().map(|s| s.to_string()).collect();
    Sandbox::new(Grants::parse(&grants, &std::env::current_dir().unwrap()).unwrap())
}

pub fn text(s: &str) -> sluice_runtime::Value {
    sluice_runtime::Value::Text(s.to_string())
}

/// Statuses (and optional Retry-After values) a receiver answers with, in order.
pub type Script = Arc<Mutex<std::collections::VecDeque<(u16, Option<&'static str>)>>>;

/// A local webhook receiver that records what it gets.
pub struct Receiver {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Received>>>,
    /// Statuses to answer with, in order; 200 once they run out.
    pub script: Script,
    /// Delay before answering each request.
    pub delay: Arc<Mutex<std::time::Duration>>,
    /// Headers added to every response (e.g. a quota the API reports).
    pub response_headers: Arc<Mutex<Vec<(&'static str, &'static str)>>>,
}

#[derive(Debug, Clone)]
pub struct Received {
    pub headers: axum::http::HeaderMap,
    pub body: serde_json::Value,
    pub raw: Vec<u8>,
}

pub async fn receiver() -> Receiver {
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;

    type Shared = (
        Arc<Mutex<Vec<Received>>>,
        Script,
        Arc<Mutex<std::time::Duration>>,
        Arc<Mutex<Vec<(&'static str, &'static str)>>>,
    );

    async fn hook(
        State((requests, script, delay, extra)): State<Shared>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> axum::response::Response {
        let pause = *delay.lock().unwrap();
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        let next = script.lock().unwrap().pop_front();
        let (status, retry_after) = next.unwrap_or((200, None));
        if status == 200 {
            let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            requests.lock().unwrap().push(Received {
                headers,
                body: json,
                raw: body.to_vec(),
            });
        }
        let mut response = (
            StatusCode::from_u16(status).unwrap(),
            format!("status {status}"),
        )
            .into_response();
        if let Some(r) = retry_after {
            response
                .headers_mut()
                .insert("retry-after", r.parse().unwrap());
        }
        for (name, value) in extra.lock().unwrap().iter() {
            response.headers_mut().insert(*name, value.parse().unwrap());
        }
        response
    }

    let requests = Arc::new(Mutex::new(Vec::new()));
    let script = Arc::new(Mutex::new(std::collections::VecDeque::new()));
    let delay = Arc::new(Mutex::new(std::time::Duration::ZERO));
    let response_headers = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state((
            requests.clone(),
            script.clone(),
            delay.clone(),
            response_headers.clone(),
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver {
        url: format!("http://127.0.0.1:{}/hook", addr.port()),
        requests,
        script,
        delay,
        response_headers,
    }
}

impl Receiver {
    /// Every row received so far, across requests, as JSON objects.
    pub fn rows(&self) -> Vec<serde_json::Value> {
        let requests = self.requests.lock().unwrap();
        requests
            .iter()
            .flat_map(|r| {
                r.body["data"]["rows"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect()
    }

    /// The `data.mode` of every request received.
    pub fn modes(&self) -> Vec<String> {
        let requests = self.requests.lock().unwrap();
        requests
            .iter()
            .map(|r| {
                r.body["data"]["mode"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }

    /// Checks that the receiver got each of the `rows` rows
    /// `user{i:03}@example.com` with its own `ltv` (`i`), under one
    /// idempotency key per row; returns how many deliveries were repeats
    /// (the at-least-once rows a killed worker sent again).
    pub fn repeats_with_every_row(&self, rows: usize) -> usize {
        let mut by_key: std::collections::BTreeMap<String, usize> = Default::default();
        let mut ltvs = std::collections::BTreeMap::new();
        for request in self.requests.lock().unwrap().iter() {
            let data = &request.body["data"];
            let keys = data["idempotency_keys"].as_array().unwrap();
            for (row, key) in data["rows"].as_array().unwrap().iter().zip(keys) {
                *by_key.entry(key.as_str().unwrap().to_owned()).or_default() += 1;
                ltvs.insert(
                    row["email"].as_str().unwrap().to_owned(),
                    row["ltv"].clone(),
                );
            }
        }
        assert_eq!(ltvs.len(), rows, "rows lost");
        for (i, (email, ltv)) in ltvs.iter().enumerate() {
            assert_eq!(email, &format!("user{i:03}@example.com"));
            assert_eq!(ltv.to_string().trim_matches('"'), i.to_string());
        }
        assert_eq!(by_key.len(), rows, "one idempotency key per row");
        by_key.values().map(|n| n - 1).sum()
    }

    /// The grant that lets a plugin reach this receiver.
    pub fn grant(&self) -> String {
        sluice_runtime::sandbox::policy::Grants::pattern_for_url(&self.url).unwrap()
    }
}

/// Writes a project into `dir`: the files source reading
/// `data/customers.csv` (`email`, `ltv` a float; see [`write_customers_csv`])
/// to a webhook at `receiver` (no retries), sync `customers` in `mode` with
/// `batch_size`, identifier `Email`, mapping `email` → `Email` and `ltv` →
/// `LTV` (a number).
pub fn files_to_webhook_project(
    dir: &std::path::Path,
    receiver: &Receiver,
    mode: &str,
    batch_size: usize,
) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let yaml = format!(
        r#"
sources:
  files:
    plugin: files
    config: {{ path: /data, columns: {{ ltv: float }} }}
    grants: ["dir:data:/data"]
destinations:
  hook:
    plugin: webhook
    config: {{ url: "{url}", max_retries: 0 }}
    grants: ["{grant}"]
models:
  customers:
    source: files
    object: customers.csv
    primary_key: email
syncs:
  customers:
    model: customers
    destination: hook
    object: contacts
    mode: {mode}
    identifier: Email
    batch_size: {batch_size}
    mappings:
      - {{ from: email, to: Email }}
      - {{ from: ltv, to: LTV, type: number }}
"#,
        url = receiver.url,
        grant = receiver.grant()
    );
    std::fs::write(dir.join("sluice.yaml"), yaml).unwrap();
}

/// Writes `data/customers.csv` in `dir` with the rows `(email, ltv)`.
pub fn write_customers_csv(dir: &std::path::Path, rows: &[(&str, &str)]) {
    let mut text = String::from("email,ltv\n");
    for (e, l) in rows {
        text.push_str(&format!("{e},{l}\n"));
    }
    std::fs::write(dir.join("data/customers.csv"), text).unwrap();
}

/// The project the kill and restart tests run, as relative path → text:
/// `rows` customers `user{i:03}@example.com` with `ltv` `i` in
/// `data/customers.csv`, synced by the sync `customers` from a files source
/// to a webhook at `receiver`, upserted by email in batches of `batch_size`.
/// [`Receiver::repeats_with_every_row`] checks what arrived.
pub fn customers_to_webhook(
    receiver: &Receiver,
    rows: usize,
    batch_size: usize,
) -> std::collections::BTreeMap<String, String> {
    let yaml = format!(
        r#"sources:
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
    batch_size: {batch_size}
"#,
        receiver.url,
        receiver.grant()
    );
    let mut csv = String::from("email,ltv\n");
    for i in 0..rows {
        csv.push_str(&format!("user{i:03}@example.com,{i}\n"));
    }
    [("sluice.yaml", yaml), ("data/customers.csv", csv)]
        .into_iter()
        .map(|(path, text)| (path.to_owned(), text))
        .collect()
}

/// Run SQL against the test PostgreSQL (127.0.0.1:5432, database `test`).
pub fn psql(sql: &str) {
    assert!(psql_on("test", sql), "psql failed: {sql}");
}

/// Runs one statement on database `db` of the test PostgreSQL; whether it
/// succeeded.
pub fn psql_on(db: &str, sql: &str) -> bool {
    std::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            db,
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-c",
            sql,
        ])
        .status()
        .expect("psql runs")
        .success()
}

/// A database of its own for one test on the test PostgreSQL, dropped
/// (with any session still on it) when this is dropped.
pub struct PgDatabase {
    pub name: String,
}

impl PgDatabase {
    pub fn create(prefix: &str) -> PgDatabase {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("{prefix}_{}_{n}", std::process::id());
        psql_on(
            "postgres",
            &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
        );
        assert!(
            psql_on("postgres", &format!("CREATE DATABASE \"{name}\"")),
            "creating database {name}"
        );
        PgDatabase { name }
    }

    /// `postgres://postgres@127.0.0.1:5432/NAME`
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        psql_on(
            "postgres",
            &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name),
        );
    }
}

/// A project as the CLI sets it up before running a sync: validated, with
/// its SQLite state (`.sluice/state.db`) and a runtime.
pub struct Loaded {
    pub project: sluice_config::Project,
    pub test: TestRuntime,
    pub store: Mutex<sluice_state::SqliteStore>,
}

impl Loaded {
    /// Validates the project in `dir` (panicking with the diagnostics)
    /// and opens its state.
    pub fn open(dir: &std::path::Path) -> Loaded {
        let project = sluice_config::validate(dir).unwrap_or_else(|d| panic!("{d:?}"));
        Loaded {
            project,
            test: runtime(),
            store: Mutex::new(sluice_state::SqliteStore::open_project(dir).unwrap()),
        }
    }

    pub fn engine(&self) -> sluice_engine::run::SyncEngine<'_, sluice_state::SqliteStore> {
        sluice_engine::run::SyncEngine {
            project: &self.project,
            runtime: &self.test.runtime,
            store: &self.store,
        }
    }
}

/// Runs `sync` of the project in `dir` once with `options`.
pub async fn run_sync(
    dir: &std::path::Path,
    sync: &str,
    options: &sluice_engine::run::RunOptions,
) -> sluice_engine::run::RunReport {
    Loaded::open(dir).engine().run(sync, options).await.unwrap()
}
