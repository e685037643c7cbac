//! `sluice serve` with uploaded components, per-tenant resource ceilings
//! and dbt triggers, end to end: a server and a worker in-process on an
//! ephemeral port over a PostgreSQL database of their own, driven over
//! HTTP as a SaaS and dbt Cloud would.

use sluice_tests as common;

use common::*;
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

const OPERATOR: &str = "operator-token-for-tests-0123456789";
const KEYS: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/dbt/fixtures");

struct Server {
    _db: PgDatabase,
    db_url: String,
    base: String,
    http: reqwest::Client,
    running: Option<sluice_server::RunningServer>,
    worker: Option<sluice_server::worker::RunningWorker>,
    _work: tempfile::TempDir,
}

impl Server {
    /// A server, and a worker taking two jobs at once from the pooling
    /// allocator when `with_worker`.
    async fn start(prefix: &str, with_worker: bool) -> Server {
        let db = PgDatabase::create(prefix);
        let work = tempfile::tempdir().unwrap();
        let keyring = || Some(sluice_server::secrets::Keyring::parse(KEYS).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = sluice_server::start(
            sluice_server::ServerConfig {
                state_url: db.url(),
                operator_token: OPERATOR.into(),
                work_dir: work.path().to_path_buf(),
                app_role: "sluice_app".into(),
                keyring: keyring(),
            },
            listener,
        )
        .await
        .unwrap();
        let worker = if with_worker {
            let runtime = runtime_with(|o| {
                o.pooling = Some(sluice_runtime::Pooling {
                    instances: 64,
                    max_memory_bytes: 512 << 20,
                })
            })
            .runtime;
            assert!(runtime.is_pooled(), "the pooling allocator is in use");
            Some(
                sluice_server::worker::start(sluice_server::worker::WorkerConfig {
                    state_url: db.url(),
                    work_dir: work.path().join("worker"),
                    app_role: "sluice_app".into(),
                    runtime,
                    keyring: keyring(),
                    concurrency: 2,
                    recovery: sluice_server::worker::Recovery {
                        heartbeat: Duration::from_secs(1),
                        stale_after: Duration::from_secs(3),
                    },
                    schedule_every: None,
                    rate_budgets: None,
                    metrics_listen: None,
                })
                .await
                .unwrap(),
            )
        } else {
            None
        };
        Server {
            base: format!("http://{}", running.addr),
            db_url: db.url(),
            _db: db,
            // A fresh connection per request: a refused upload is answered
            // before its body is read, and the server then closes that
            // connection; a pooled one could be reused as it closes
            // (`IncompleteMessage`, seen once in CI).
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            running: Some(running),
            worker,
            _work: work,
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

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
            .bearer_auth(token);
        if let Some(b) = body {
            request = request.json(&b);
        }
        self.send(request).await
    }

    async fn upload(&self, token: &str, name: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
        let request = self
            .http
            .post(format!("{}/api/v1/components/{name}", self.base))
            .bearer_auth(token)
            .header("content-type", "application/wasm")
            .body(bytes);
        self.send(request).await
    }

    /// A tenant whose grant ceiling adds this machine's loopback, and its
    /// first token.
    async fn tenant(&self, name: &str) -> String {
        let (s, b) = self
            .call(
                Method::POST,
                "/api/v1/tenants",
                OPERATOR,
                Some(json!({"name": name, "grant_ceiling": ["*://*:*", "http://127.0.0.1:*"]})),
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

    async fn set_resources(&self, tenant: &str, ceiling: Value) {
        let (s, b) = self
            .call(
                Method::PUT,
                &format!("/api/v1/tenants/{tenant}/resource-ceiling"),
                OPERATOR,
                Some(ceiling),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }

    async fn apply(&self, token: &str, files: Value) -> (StatusCode, Value) {
        self.call(
            Method::PUT,
            "/api/v1/project",
            token,
            Some(json!({ "files": files })),
        )
        .await
    }

    async fn trigger(&self, token: &str, sync: &str) {
        let (s, b) = self
            .call(
                Method::POST,
                &format!("/api/v1/syncs/{sync}/runs"),
                token,
                None,
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    }

    /// Polls until `sync` has an ended run; its JSON.
    async fn finished_run(&self, token: &str, sync: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            let (s, runs) = self
                .call(
                    Method::GET,
                    &format!("/api/v1/runs?sync={sync}&limit=1"),
                    token,
                    None,
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{runs}");
            if let Some(run) = runs["runs"].as_array().and_then(|r| r.first()) {
                if run["status"] != "running" {
                    return run.clone();
                }
            }
            assert!(Instant::now() < deadline, "no run of {sync} ended: {runs}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn stop(mut self) {
        if let Some(w) = self.worker.take() {
            w.shutdown().await.unwrap();
        }
        self.running.take().unwrap().shutdown().await.unwrap();
    }
}

fn hostile_bytes() -> Vec<u8> {
    std::fs::read(HOSTILE_PATH).unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A files source and, as the destination of each sync in `syncs`, the
/// uploaded hostile component carrying out `attack` on every batch.
fn hostile_project(sha: &str, attack: &str, syncs: &[&str], extra: &str) -> Value {
    let mut yaml = format!(
        r#"sources:
  files: {{ plugin: files, config: {{ path: /data }}, grants: ["dir:data:/data"] }}
destinations:
  custom:
    plugin: "uploaded:hostile@sha256:{sha}"
    config: {{ attack: {attack}, in_sync: true }}
{extra}models:
  people: {{ source: files, object: people.csv, primary_key: email }}
syncs:
"#
    );
    for sync in syncs {
        yaml.push_str(&format!(
            "  {sync}: {{ model: people, destination: custom, object: events, mode: upsert, identifier: email }}\n"
        ));
    }
    json!({"sluice.yaml": yaml, "data/people.csv": "email,plan\na@x.io,pro\nb@x.io,free\n"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploads_are_checked_before_compiling_pinned_by_digest_and_run_in_the_sandbox() {
    let server = Server::start("components_upload", true).await;
    let (acme, beta) = (server.tenant("acme").await, server.tenant("beta").await);
    let bytes = hostile_bytes();
    let sha = sha256_hex(&bytes);

    // Stored, pinned by digest; the same bytes again answer the stored one.
    let (s, b) = server.upload(&acme, "hostile", bytes.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["sha256"], sha.as_str());
    assert_eq!(b["world"], "destination");
    assert_eq!(b["wit_version"], "0.1.0");
    assert_eq!(b["size"], bytes.len());
    assert_eq!(b["reference"], format!("uploaded:hostile@sha256:{sha}"));
    let (s, _) = server.upload(&acme, "hostile", bytes.clone()).await;
    assert_eq!(s, StatusCode::OK);

    // Refused before compiling, saying what the bytes are.
    let refused = [
        (b"\0asm\x01\0\0\0".to_vec(), "core WebAssembly module"),
        (b"\0asm\x0d\0\x01\0".to_vec(), "not a Sluice plugin"),
        (b"PK\x03\x04 a zip".to_vec(), "does not start with \\0asm"),
        (b"\0asm\x0d\0\x01\0\x07\xff\xff\xff".to_vec(), "WebAssembly"),
    ];
    for (body, says) in refused {
        let (s, b) = server.upload(&acme, "bad", body).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert_eq!(b["error"]["code"], "not_a_plugin", "{b}");
        assert_eq!(b["error"]["field"], "body", "{b}");
        let message = b["error"]["message"].as_str().unwrap();
        assert!(message.contains("refused before compiling"), "{message}");
        assert!(message.contains(says), "{message} should say {says}");
    }
    // Refused from its Content-Length, before the body is read: the
    // server may answer 413 and close while the client still sends.
    let huge = server
        .http
        .post(format!("{}/api/v1/components/huge", server.base))
        .bearer_auth(&acme)
        .body(vec![0u8; sluice_server::components::MAX_COMPONENT + 1])
        .send()
        .await;
    match huge {
        Ok(response) => {
            assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
            let b: Value = response.json().await.unwrap();
            assert_eq!(b["error"]["code"], "payload_too_large", "{b}");
        }
        Err(e) => assert!(e.is_request(), "{e}"),
    }
    let (s, b) = server.upload(&acme, "../x", bytes.clone()).await;
    assert!(
        s == StatusCode::BAD_REQUEST || s == StatusCode::NOT_FOUND,
        "{s} {b}"
    );

    // Listed for its tenant only; another tenant can neither see it,
    // delete it nor use it.
    let (_, list) = server
        .call(Method::GET, "/api/v1/components", &acme, None)
        .await;
    assert_eq!(list["components"].as_array().unwrap().len(), 1, "{list}");
    let (_, list) = server
        .call(Method::GET, "/api/v1/components", &beta, None)
        .await;
    assert_eq!(list["components"], json!([]), "{list}");
    let delete = format!("/api/v1/components/hostile/{sha}");
    let (s, _) = server.call(Method::DELETE, &delete, &beta, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = server
        .apply(&beta, hostile_project(&sha, "read-file", &["leak"], ""))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let problem = &b["error"]["problems"][0];
    assert_eq!(problem["file"], "sluice.yaml", "{b}");
    assert!(
        problem["message"]
            .as_str()
            .unwrap()
            .contains("which this tenant has not uploaded"),
        "{b}"
    );

    // Run by its tenant's worker, in the sandbox: reading the host's files
    // fails inside it and every row says so.
    let (s, b) = server
        .apply(&acme, hostile_project(&sha, "read-file", &["leak"], ""))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    server.trigger(&acme, "leak").await;
    let run = server.finished_run(&acme, "leak").await;
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["error"].as_str().unwrap();
    assert!(error.contains("reading /etc/passwd failed"), "{error}");
    assert!(!error.contains("root:"), "{error}");

    // Deleted, the component can no longer be referenced.
    let (s, _) = server.call(Method::DELETE, &delete, &acme, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = server
        .apply(&acme, hostile_project(&sha, "read-file", &["leak"], ""))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenants_resource_ceilings_refuse_clamp_stop_and_queue() {
    let server = Server::start("components_ceilings", true).await;
    let acme = server.tenant("acme").await;
    let bytes = hostile_bytes();
    let sha = sha256_hex(&bytes);
    let (s, b) = server.upload(&acme, "hostile", bytes).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    // The operator's bounds are checked, field by field.
    let (s, b) = server
        .call(
            Method::PUT,
            "/api/v1/tenants/acme/resource-ceiling",
            OPERATOR,
            Some(json!({"instances": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["error"]["field"], "instances", "{b}");
    let (s, _) = server
        .call(
            Method::PUT,
            "/api/v1/tenants/acme/resource-ceiling",
            &acme,
            Some(json!({"memory_bytes": 1 << 30})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "a tenant cannot raise its own ceiling"
    );
    server
        .set_resources(
            "acme",
            json!({"memory_bytes": 64 << 20, "run_deadline_ms": 2000, "call_deadline_ms": 60000,
                   "concurrent_runs": 1, "instances": 8}),
        )
        .await;
    let (_, got) = server
        .call(
            Method::GET,
            "/api/v1/tenants/acme/resource-ceiling",
            OPERATOR,
            None,
        )
        .await;
    assert_eq!(got["memory_bytes"], 64 << 20, "{got}");

    // A project asking for more is refused with where and why.
    let over = "    limits: { memory: 128MiB }\n";
    let (s, b) = server
        .apply(&acme, hostile_project(&sha, "memory-bomb", &["bomb"], over))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let problem = &b["error"]["problems"][0];
    let message = problem["message"].as_str().unwrap();
    assert!(
        message.contains("`custom` sets `limits.memory: 128MiB`"),
        "{message}"
    );
    assert!(message.contains("memory ceiling 64MiB"), "{message}");
    assert_eq!(problem["line"], 5, "{b}");
    let mut slow = hostile_project(&sha, "sleep-an-hour", &["slow"], "");
    let yaml = slow["sluice.yaml"].as_str().unwrap().replace(
        "identifier: email }",
        "identifier: email, run_deadline: 10s }",
    );
    slow["sluice.yaml"] = json!(yaml);
    let (s, b) = server.apply(&acme, slow).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let message = b["error"]["problems"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("sync `slow` sets `run_deadline: 10s`") && message.contains("2s"),
        "{message}"
    );

    // A hostile component left to the ceiling's memory fails cleanly,
    // saying which ceiling it hit.
    let (s, b) = server
        .apply(&acme, hostile_project(&sha, "memory-bomb", &["bomb"], ""))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    server.trigger(&acme, "bomb").await;
    let run = server.finished_run(&acme, "bomb").await;
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["error"].as_str().unwrap();
    assert!(error.contains("memory ceiling of 64 MiB"), "{error}");

    // A run past the run deadline is stopped and recorded.
    let (s, b) = server
        .apply(&acme, hostile_project(&sha, "sleep-an-hour", &["slow"], ""))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let started = Instant::now();
    server.trigger(&acme, "slow").await;
    let run = server.finished_run(&acme, "slow").await;
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["error"].as_str().unwrap();
    assert!(
        error.contains("stopped at its run deadline of 2 s"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );

    // With one run at a time, two syncs triggered together run one after
    // the other, and both succeed.
    let (s, b) = server
        .apply(
            &acme,
            hostile_project(&sha, "sleep-a-second", &["first", "second"], ""),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_both_succeed_one_after_the_other(&server, &acme, "first", "second").await;
    server.stop().await;
}

/// A run holds a source and a destination instance; with a ceiling of two
/// instances and a worker taking two jobs at once, the second run cannot
/// have its instances while the first holds them. It waits for them (or
/// goes back to the queue) and succeeds after, instead of failing on the
/// ceiling; the worker's instances are reserved per run in one piece, so
/// two runs never each hold half of what they need.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_at_its_instance_ceiling_queues_its_runs_instead_of_failing() {
    let server = Server::start("components_instances", true).await;
    let acme = server.tenant("acme").await;
    let bytes = hostile_bytes();
    let sha = sha256_hex(&bytes);
    let (s, b) = server.upload(&acme, "hostile", bytes).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    server.set_resources("acme", json!({"instances": 2})).await;
    let (s, b) = server
        .apply(
            &acme,
            hostile_project(&sha, "sleep-a-second", &["first", "second"], ""),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_both_succeed_one_after_the_other(&server, &acme, "first", "second").await;
    server.stop().await;
}

/// Triggers the syncs `first` and `second` together; both runs succeed,
/// and neither started before the other ended.
async fn assert_both_succeed_one_after_the_other(
    server: &Server,
    token: &str,
    first: &str,
    second: &str,
) {
    server.trigger(token, first).await;
    server.trigger(token, second).await;
    let a = server.finished_run(token, first).await;
    let b = server.finished_run(token, second).await;
    assert_eq!(a["status"], "succeeded", "{a}");
    assert_eq!(b["status"], "succeeded", "{b}");
    let span = |r: &Value| {
        (
            r["started_at"].as_i64().unwrap(),
            r["finished_at"].as_i64().unwrap(),
        )
    };
    let ((a0, a1), (b0, b1)) = (span(&a), span(&b));
    assert!(
        a1 <= b0 || b1 <= a0,
        "the runs overlapped: {first} {a0}..{a1}, {second} {b0}..{b1}"
    );
}

/// A project whose models read the dbt project `analytics` (its manifest
/// uploaded with it), one sync per model, and one sync of a file.
fn dbt_project() -> Value {
    let manifest = std::fs::read_to_string(format!("{FIXTURES}/manifest.json")).unwrap();
    let mut yaml = String::from(
        r#"sources:
  warehouse: { plugin: postgres, config: { url: "postgres://reader@db.example.com:5432/analytics" } }
  files: { plugin: files, config: { path: /data }, grants: ["dir:data:/data"] }
destinations:
  hook: { plugin: webhook, config: { url: "https://hooks.example.com/in" }, grants: ["https://hooks.example.com"] }
models:
  customers: { source: warehouse, dbt: customers, project: analytics }
  orders: { source: warehouse, dbt: orders, project: analytics }
  ltv: { source: warehouse, dbt: ltv, project: analytics }
  events: { source: warehouse, dbt: events, project: analytics }
  people: { source: files, object: people.csv, primary_key: email }
syncs:
"#,
    );
    for model in ["customers", "orders", "ltv", "events", "people"] {
        yaml.push_str(&format!(
            "  {model}_sync: {{ model: {model}, destination: hook, object: contacts, mode: upsert, identifier: Email }}\n"
        ));
    }
    json!({
        "sluice.yaml": yaml,
        "analytics/target/manifest.json": manifest,
        "data/people.csv": "email\na@x.io\n",
    })
}

/// The syncs of the run jobs on the queue, sorted, with their triggers.
async fn queued(url: &str) -> Vec<(String, String)> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let rows = client
        .query(
            "SELECT payload->>'sync', payload->>'trigger' FROM sluice_queue._private_jobs ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

fn enqueued_syncs(answer: &Value) -> Vec<String> {
    let mut syncs: Vec<String> = answer["enqueued"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sync"].as_str().unwrap().to_owned())
        .collect();
    syncs.sort();
    syncs
}

fn skipped_reason<'a>(answer: &'a Value, sync: &str) -> &'a str {
    answer["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sync"] == sync)
        .and_then(|s| s["reason"].as_str())
        .unwrap_or_else(|| panic!("{sync} not skipped: {answer}"))
}

/// dbt Cloud's API, serving one run's `run_results.json` to one token.
async fn dbt_cloud(token: &'static str, run_results: String) -> String {
    use axum::http::HeaderMap;
    let app = axum::Router::new().route(
        "/api/v2/accounts/{account}/runs/{run}/artifacts/run_results.json",
        axum::routing::get(
            move |axum::extract::Path((account, run)): axum::extract::Path<(u64, u64)>,
                  headers: HeaderMap| async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                if auth != format!("Token {token}") {
                    return (axum::http::StatusCode::UNAUTHORIZED, String::new());
                }
                if (account, run) != (43, 9001) {
                    return (axum::http::StatusCode::NOT_FOUND, String::new());
                }
                (axum::http::StatusCode::OK, run_results)
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// dbt Cloud's job.run.completed payload (docs.getdbt.com, "Webhooks for
/// your jobs").
fn completed_event(status: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "accountId": 43,
        "webhooksID": "wsu_12345abcde",
        "eventId": "wev_2L6Z3l8uPedXKPq9D2nWbPIip7Z",
        "timestamp": "2026-12-07T11:02:42.114231Z",
        "eventType": "job.run.completed",
        "webhookName": "sluice",
        "data": {
            "jobId": "123", "jobName": "nightly build",
            "runId": "9001", "environmentId": "1234", "environmentName": "Production",
            "dbtVersion": "1.10", "projectName": "analytics", "projectId": "6789",
            "runStatus": status, "runStatusCode": if status == "Success" { 10 } else { 20 },
            "runErroredAt": if status == "Errored" { json!("2026-12-07T11:02:41Z") } else { Value::Null },
            "runStatusMessage": "None", "runReason": "Kicked off from the UI",
            "runStartedAt": "2026-12-07T11:02:37Z", "runFinishedAt": "2026-12-07T11:02:41Z"
        }
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dbt_runs_enqueue_the_syncs_of_the_models_they_rebuilt() {
    // No worker: the jobs stay on the queue to be read.
    let server = Server::start("components_dbt", false).await;
    let acme = server.tenant("acme").await;
    let beta = server.tenant("beta").await;
    let (s, b) = server.apply(&acme, dbt_project()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let run_results = std::fs::read_to_string(format!("{FIXTURES}/run_results.json")).unwrap();

    // dbt's run_results.json uploaded by the tenant.
    let (s, answer) = server
        .send(
            server
                .http
                .post(format!("{}/api/v1/dbt/run-results", server.base))
                .bearer_auth(&acme)
                .body(run_results.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(enqueued_syncs(&answer), ["customers_sync"], "{answer}");
    assert_eq!(
        skipped_reason(&answer, "orders_sync"),
        "dbt tests of `orders` failed"
    );
    assert_eq!(
        skipped_reason(&answer, "ltv_sync"),
        "dbt did not build `ltv`"
    );
    assert_eq!(
        skipped_reason(&answer, "events_sync"),
        "dbt did not rebuild `events` in this run"
    );
    assert_eq!(
        skipped_reason(&answer, "people_sync"),
        "model `people` is not a dbt model"
    );
    assert_eq!(
        queued(&server.db_url).await,
        [("customers_sync".to_owned(), "dbt run_results".to_owned())]
    );
    let (s, b) = server
        .send(
            server
                .http
                .post(format!("{}/api/v1/dbt/run-results", server.base))
                .bearer_auth(&acme)
                .body("{\"results\": 7}"),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["error"]["field"], "body", "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("run results"),
        "{b}"
    );

    // dbt Cloud's webhook, signed with the tenant's secret; the server
    // reads which models the run rebuilt from dbt Cloud's API.
    let cloud = dbt_cloud("dbtc_token_for_tests", run_results).await;
    for (name, value) in [
        ("DBT_WEBHOOK_SECRET", "whsec-for-tests"),
        ("DBT_CLOUD_API_TOKEN", "dbtc_token_for_tests"),
        ("DBT_CLOUD_URL", cloud.as_str()),
    ] {
        let (s, b) = server
            .call(
                Method::PUT,
                &format!("/api/v1/secrets/{name}"),
                &acme,
                Some(json!({ "value": value })),
            )
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    }
    let hook = |tenant: &str, body: Vec<u8>, signature: String| {
        server
            .http
            .post(format!("{}/api/v1/dbt/{tenant}/webhook", server.base))
            .header("authorization", signature)
            .header("content-type", "application/json")
            .body(body)
    };
    let event = completed_event("Success");
    let (s, answer) = server
        .send(hook("acme", event.clone(), sign("whsec-for-tests", &event)))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(enqueued_syncs(&answer), ["customers_sync"], "{answer}");
    assert_eq!(
        queued(&server.db_url).await,
        [
            ("customers_sync".to_owned(), "dbt cloud run 9001".to_owned()),
            ("customers_sync".to_owned(), "dbt run_results".to_owned()),
        ]
    );
    // dbt Cloud redelivers an event it saw no answer to; the same eventId
    // is the same job, not a second run.
    let (s, again) = server
        .send(hook("acme", event.clone(), sign("whsec-for-tests", &event)))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{again}");
    assert_eq!(
        again["enqueued"][0]["job_id"], answer["enqueued"][0]["job_id"],
        "{again}"
    );
    assert_eq!(queued(&server.db_url).await.len(), 2);

    // A wrong signature, another tenant's secret, a tenant without one and
    // an unknown tenant all answer the same 401 and enqueue nothing.
    let mut tampered = event.clone();
    tampered[10] ^= 1;
    for (tenant, body, signature) in [
        ("acme", tampered.clone(), sign("whsec-for-tests", &event)),
        ("acme", event.clone(), sign("another-secret", &event)),
        ("acme", event.clone(), String::new()),
        ("beta", event.clone(), sign("whsec-for-tests", &event)),
        ("nobody", event.clone(), sign("whsec-for-tests", &event)),
    ] {
        let (s, b) = server.send(hook(tenant, body, signature)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{tenant}: {b}");
        assert_eq!(b["error"]["code"], "unauthorized", "{b}");
        assert!(!b.to_string().contains("whsec"), "{b}");
    }
    let _ = beta;
    // A run that did not succeed triggers nothing.
    let failed = completed_event("Errored");
    let (s, answer) = server
        .send(hook(
            "acme",
            failed.clone(),
            sign("whsec-for-tests", &failed),
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{answer}");
    assert!(
        answer["ignored"].as_str().unwrap().contains("`Errored`"),
        "{answer}"
    );
    assert_eq!(queued(&server.db_url).await.len(), 2);
    server.stop().await;
}
