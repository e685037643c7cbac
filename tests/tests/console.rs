//! The web console end to end in a real browser: `sluice serve` and a
//! worker over a PostgreSQL database of their own, two tenants and a
//! sync with a planted rejected row made through the API, then
//! `node tests/console/flow.mjs` (playwright-core driving Debian's
//! headless Chromium; `scripts/console-deps.sh` installs both) signs in,
//! runs the sync from the page and checks what the pages show.
//! Screenshots land in target/console-screenshots/.

use sluice_tests as common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

const OPERATOR: &str = "operator-token-for-console-tests-0123";
const SYNC: &str = "acme_contacts";
const PLANTED: &str = "planted-reject@x.com";
/// Rows of the model besides the planted one.
const OTHER_ROWS: usize = 24;
/// How long the browser flow may take in all.
const FLOW_TIMEOUT: Duration = Duration::from_secs(420);

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .timeout(Duration::from_secs(60));
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A tenant whose ceiling adds this machine's loopback (the receivers),
    /// and its first token.
    async fn tenant(&self, name: &str) -> String {
        let ceiling = json!(["*://*:*", "http://127.0.0.1:*"]);
        let (s, b) = self
            .call(
                Method::POST,
                "/api/v1/tenants",
                OPERATOR,
                Some(json!({"name": name, "grant_ceiling": ceiling})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        let (s, b) = self
            .call(
                Method::POST,
                "/api/v1/tokens",
                OPERATOR,
                Some(json!({"tenant": name})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b["token"].as_str().unwrap().to_owned()
    }

    async fn apply(&self, token: &str, project: Value) {
        let (s, b) = self
            .call(Method::PUT, "/api/v1/project", token, Some(project))
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
}

/// A files source and a webhook to `receiver`: one row per request, one
/// request at a time, so the receiver's first answer (a 400) rejects
/// exactly the first row of the file.
fn project(receiver: &Receiver, sync: &str, emails: &[String]) -> Value {
    let yaml = format!(
        r#"sources:
  files: {{ plugin: files, config: {{ path: /data }}, grants: ["dir:data:/data"] }}
destinations:
  hook:
    plugin: webhook
    config: {{ url: "{url}", max_retries: 0 }}
    grants: ["{grant}"]
    rate_limit: {{ requests: 1000, per_ms: 1000, concurrency: 1 }}
models:
  customers: {{ source: files, object: customers.csv, primary_key: email }}
syncs:
  {sync}:
    model: customers
    destination: hook
    object: contacts
    mode: upsert
    identifier: Email
    batch_size: 1
    schedule: every 24h
    mappings:
      - {{ from: email, to: Email }}
      - {{ from: plan, to: Plan }}
"#,
        url = receiver.url,
        grant = receiver.grant()
    );
    let mut csv = String::from("email,plan\n");
    for e in emails {
        csv.push_str(&format!("{e},pro\n"));
    }
    json!({"files": {"sluice.yaml": yaml, "data/customers.csv": csv}})
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs the browser flow with `vars`; panics with its output unless it
/// passes within [`FLOW_TIMEOUT`].
async fn browser_flow(vars: &[(&str, String)]) {
    let root = repo_root();
    assert!(
        Path::new("/usr/bin/chromium").exists() && root.join("tests/console/node_modules").exists(),
        "the console test needs Chromium and playwright-core: run scripts/console-deps.sh"
    );
    let mut command = tokio::process::Command::new("node");
    command
        .arg(root.join("tests/console/flow.mjs"))
        .current_dir(root.join("tests/console"))
        .kill_on_drop(true);
    for (k, v) in vars {
        command.env(k, v);
    }
    let output = tokio::time::timeout(FLOW_TIMEOUT, command.output())
        .await
        .expect("the browser flow ended within its timeout")
        .expect("node runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success(),
        "the console flow failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("console flow passed"), "{stdout}\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_runs_a_sync_shows_its_rejected_row_and_keeps_tenants_apart() {
    // The server's plans and plugin page load components with the same
    // compile cache as the worker's test runtime.
    std::env::set_var("SLUICE_CACHE_DIR", shared_cache_dir());
    let db = PgDatabase::create("console");
    let work = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = sluice_server::start(
        sluice_server::ServerConfig {
            state_url: db.url(),
            operator_token: OPERATOR.into(),
            work_dir: work.path().to_path_buf(),
            app_role: "sluice_app".into(),
            keyring: None,
        },
        listener,
    )
    .await
    .unwrap();
    let worker = sluice_server::worker::start(sluice_server::worker::WorkerConfig {
        state_url: db.url(),
        work_dir: work.path().join("worker"),
        app_role: "sluice_app".into(),
        runtime: runtime().runtime,
        keyring: None,
        concurrency: 2,
        recovery: Default::default(),
        schedule_every: None,
        rate_budgets: None,
        metrics_listen: None,
    })
    .await
    .unwrap();
    let api = Api {
        base: format!("http://{}", server.addr),
        http: reqwest::Client::new(),
    };
    let (token_a, token_b) = (api.tenant("acme").await, api.tenant("beta").await);
    let (rx_a, rx_b) = (receiver().await, receiver().await);
    // The planted row is the file's first: the receiver refuses it.
    rx_a.script.lock().unwrap().push_back((400, None));
    // Slow enough that the page sees the run under way.
    *rx_a.delay.lock().unwrap() = Duration::from_millis(60);
    let mut emails = vec![PLANTED.to_owned()];
    emails.extend((0..OTHER_ROWS).map(|i| format!("row{i:02}@x.com")));
    api.apply(&token_a, project(&rx_a, SYNC, &emails)).await;
    api.apply(
        &token_b,
        project(&rx_b, "beta_contacts", &["b1@x.com".to_owned()]),
    )
    .await;

    let shots = repo_root().join("target/console-screenshots");
    let csv_out = work.path().join("downloaded.csv");
    browser_flow(&[
        ("CONSOLE_URL", api.base.clone()),
        ("TOKEN_A", token_a.clone()),
        ("TOKEN_B", token_b.clone()),
        ("OPERATOR_TOKEN", OPERATOR.to_owned()),
        ("SYNC", SYNC.to_owned()),
        ("PLANTED_KEY", PLANTED.to_owned()),
        ("SNAPSHOT_ROWS_AFTER_RUN", OTHER_ROWS.to_string()),
        ("SCREENSHOTS", shots.display().to_string()),
        ("CSV_OUT", csv_out.display().to_string()),
    ])
    .await;

    // What the page did, as the API and the receivers saw it: the run
    // from the page rejected the planted row only, the retry from the
    // page delivered it, and beta's receiver got nothing of acme's.
    let (_, runs) = api
        .call(
            Method::GET,
            &format!("/api/v1/runs?sync={SYNC}"),
            &token_a,
            None,
        )
        .await;
    let runs = runs["runs"].as_array().unwrap().clone();
    assert_eq!(runs.len(), 2, "one run and one retry: {runs:?}");
    let (retry, first) = (&runs[0], &runs[1]);
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(first["counts"]["rejected"], 1, "{first}");
    assert_eq!(first["counts"]["ok"], OTHER_ROWS as i64, "{first}");
    assert_eq!(retry["counts"]["ok"], 1, "{retry}");
    let received: Vec<String> = rx_a
        .rows()
        .iter()
        .map(|r| r["Email"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(received.len(), OTHER_ROWS + 1, "{received:?}");
    assert_eq!(received.last().map(String::as_str), Some(PLANTED));
    assert!(rx_b.rows().is_empty());
    let csv = std::fs::read_to_string(&csv_out).unwrap();
    assert!(
        csv.starts_with("kind,key,message\nrejected,") && csv.contains(PLANTED),
        "{csv}"
    );
    for page in [
        "signin", "syncs", "sync", "plan", "progress", "run", "plugins", "tenants",
    ] {
        assert!(shots.join(format!("{page}.png")).is_file(), "{page}.png");
    }

    // A paused schedule enqueues nothing; resumed, it runs at its next
    // tick (a scheduling pass two days on sees one due tick).
    let (s, b) = api
        .call(
            Method::POST,
            &format!("/api/v1/syncs/{SYNC}/pause"),
            &token_a,
            None,
        )
        .await;
    assert_eq!((s, &b["paused"]), (StatusCode::OK, &json!(true)), "{b}");
    let pool = sluice_server::db::pool(&db.url()).unwrap();
    let mut cache = sluice_server::schedule::ProjectCache::default();
    let later = unix_now() + 2 * 86_400;
    let due = sluice_server::schedule::enqueue_due(&pool, &mut cache, later);
    assert_eq!(due.await.unwrap(), 0, "paused: nothing enqueued");
    let (s, b) = api
        .call(
            Method::POST,
            &format!("/api/v1/syncs/{SYNC}/resume"),
            &token_a,
            None,
        )
        .await;
    assert_eq!((s, &b["paused"]), (StatusCode::OK, &json!(false)), "{b}");
    let due = sluice_server::schedule::enqueue_due(&pool, &mut cache, later);
    assert_eq!(due.await.unwrap(), 1, "resumed: its next tick is enqueued");
    let (s, b) = api
        .call(
            Method::POST,
            "/api/v1/syncs/beta_contacts/pause",
            &token_a,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");

    worker.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

/// Now, in Unix seconds.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
