//! `sluice serve` end to end: the server and a worker started in-process
//! on an ephemeral port over a PostgreSQL database of their own, driven
//! with reqwest as a SaaS would, tenants' syncs delivering to local webhook
//! receivers.

use sluice_tests as common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

const OPERATOR: &str = "operator-token-for-tests-0123456789";

/// The secrets key file the test servers and workers start with.
const KEYS: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn keyring(keys: Option<&str>) -> Option<sluice_server::secrets::Keyring> {
    keys.map(|k| sluice_server::secrets::Keyring::parse(k).unwrap())
}

struct Server {
    db: PgDatabase,
    base: String,
    http: reqwest::Client,
    running: Option<sluice_server::RunningServer>,
    worker: Option<sluice_server::worker::RunningWorker>,
    _work: tempfile::TempDir,
}

/// A worker on `url` with short heartbeats, so tests see a dead worker's
/// jobs recovered in seconds.
fn worker_config(
    url: &str,
    work: &std::path::Path,
    schedule_every: Option<Duration>,
    keys: Option<&str>,
) -> sluice_server::worker::WorkerConfig {
    sluice_server::worker::WorkerConfig {
        state_url: url.to_owned(),
        work_dir: work.to_path_buf(),
        app_role: "sluice_app".into(),
        runtime: runtime().runtime,
        keyring: keyring(keys),
        concurrency: 2,
        recovery: sluice_server::worker::Recovery {
            heartbeat: Duration::from_secs(1),
            stale_after: Duration::from_secs(3),
        },
        schedule_every,
        rate_budgets: None,
        metrics_listen: Some("127.0.0.1:0".into()),
    }
}

impl Server {
    async fn start(prefix: &str) -> Server {
        Server::start_with(prefix, None).await
    }

    /// A server and a worker that enqueues due schedules every
    /// `schedule_every`.
    async fn start_with(prefix: &str, schedule_every: Option<Duration>) -> Server {
        let db = PgDatabase::create(prefix);
        let work = tempfile::tempdir().unwrap();
        let (running, worker) = Self::serve(&db, work.path(), schedule_every, Some(KEYS)).await;
        Server {
            base: format!("http://{}", running.addr),
            db,
            http: reqwest::Client::new(),
            running: Some(running),
            worker: Some(worker),
            _work: work,
        }
    }

    /// A server and a worker on `db`, both with the secrets key file `keys`.
    async fn serve(
        db: &PgDatabase,
        work: &std::path::Path,
        schedule_every: Option<Duration>,
        keys: Option<&str>,
    ) -> (
        sluice_server::RunningServer,
        sluice_server::worker::RunningWorker,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = sluice_server::ServerConfig {
            state_url: db.url(),
            operator_token: OPERATOR.into(),
            work_dir: work.to_path_buf(),
            app_role: "sluice_app".into(),
            keyring: keyring(keys),
        };
        let running = sluice_server::start(config, listener).await.unwrap();
        let worker = sluice_server::worker::start(worker_config(
            &db.url(),
            &work.join("worker"),
            schedule_every,
            keys,
        ))
        .await
        .unwrap();
        (running, worker)
    }

    /// Stops the server and its worker and starts both again on the same
    /// database and work directory with the secrets key file `keys`.
    async fn restart(&mut self, keys: Option<&str>) {
        self.worker.take().unwrap().shutdown().await.unwrap();
        self.running.take().unwrap().shutdown().await.unwrap();
        let (running, worker) = Self::serve(&self.db, self._work.path(), None, keys).await;
        self.base = format!("http://{}", running.addr);
        self.running = Some(running);
        self.worker = Some(worker);
    }

    async fn put_secret(&self, token: &str, name: &str, value: Value) -> (StatusCode, Value) {
        self.call(
            Method::PUT,
            &format!("/api/v1/secrets/{name}"),
            Some(token),
            Some(value),
        )
        .await
    }

    /// Status and JSON body (Null when the body is not JSON).
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    /// A tenant and its first token, made by the operator, whose ceiling
    /// adds this machine's loopback (the tests' receivers) to the default.
    async fn tenant(&self, name: &str) -> String {
        self.tenant_within(name, json!(["*://*:*", "http://127.0.0.1:*"]))
            .await
    }

    /// A tenant with the grant ceiling `ceiling` (`null`: the default).
    async fn tenant_within(&self, name: &str, ceiling: Value) -> String {
        let (s, b) = self
            .call(
                Method::POST,
                "/api/v1/tenants",
                Some(OPERATOR),
                Some(json!({"name": name, "grant_ceiling": ceiling})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        let (s, b) = self
            .call(
                Method::POST,
                "/api/v1/tokens",
                Some(OPERATOR),
                Some(json!({"tenant": name})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b["token"].as_str().unwrap().to_owned()
    }

    /// A connection to the server's database as the superuser `postgres`
    /// (which bypasses row-level security).
    async fn sql(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.db.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
    }

    /// Polls until `sync` has a run that ended, newer than `after`; its JSON.
    async fn next_finished_run(&self, token: &str, sync: &str, after: i64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let (s, runs) = self
                .get(&format!("/api/v1/runs?sync={sync}&limit=1"), token)
                .await;
            assert_eq!(s, StatusCode::OK, "{runs}");
            if let Some(run) = runs["runs"].as_array().and_then(|r| r.first()) {
                if run["id"].as_i64().unwrap() > after && run["status"] != "running" {
                    return run.clone();
                }
            }
            assert!(Instant::now() < deadline, "no run of {sync} ended: {runs}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The worker's own `GET /metrics`.
    async fn worker_metrics(&self) -> String {
        let addr = self.worker.as_ref().unwrap().metrics_addr.unwrap();
        let response = self
            .http
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.unwrap()
    }

    async fn stop(mut self) {
        self.worker.take().unwrap().shutdown().await.unwrap();
        self.running.take().unwrap().shutdown().await.unwrap();
    }
}

/// A files source and a webhook destination to `receiver`, as a JSON
/// upload: `sync` delivers `rows` (email, plan).
fn project(receiver: &Receiver, sync: &str, rows: &[(&str, &str)]) -> Value {
    let yaml = format!(
        r#"sources:
  files: {{ plugin: files, config: {{ path: /data }}, grants: ["dir:data:/data"] }}
destinations:
  hook:
    plugin: webhook
    config: {{ url: "{url}", max_retries: 0 }}
    grants: ["{grant}"]
models:
  customers: {{ source: files, object: customers.csv, primary_key: email }}
syncs:
  {sync}:
    model: customers
    destination: hook
    object: contacts
    mode: upsert
    identifier: Email
    batch_size: 2
    mappings:
      - {{ from: email, to: Email }}
      - {{ from: plan, to: Plan }}
"#,
        url = receiver.url,
        grant = receiver.grant()
    );
    let mut csv = String::from("email,plan\n");
    for (e, p) in rows {
        csv.push_str(&format!("{e},{p}\n"));
    }
    json!({"files": {"sluice.yaml": yaml, "data/customers.csv": csv}})
}

/// Applies the project and runs `sync` through the API; the ended run.
async fn apply_and_run(server: &Server, token: &str, project: Value, sync: &str) -> Value {
    let (s, b) = server
        .call(Method::PUT, "/api/v1/project", Some(token), Some(project))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["syncs"], json!([sync]));
    run_now(server, token, sync).await
}

/// Triggers `sync` through the API and waits for that run to end; its JSON.
async fn run_now(server: &Server, token: &str, sync: &str) -> Value {
    let (_, before) = server
        .get(&format!("/api/v1/runs?sync={sync}&limit=1"), token)
        .await;
    let after = before["runs"][0]["id"].as_i64().unwrap_or(0);
    let (s, b) = server
        .call(
            Method::POST,
            &format!("/api/v1/syncs/{sync}/runs"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(b["status"], "queued", "{b}");
    assert!(b["job_id"].as_i64().unwrap() > 0, "{b}");
    server.next_finished_run(token, sync, after).await
}

fn emails(receiver: &Receiver) -> Vec<String> {
    let mut e: Vec<String> = receiver
        .rows()
        .iter()
        .map(|r| r["Email"].as_str().unwrap().to_owned())
        .collect();
    e.sort();
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_triggered_through_the_api_delivers_and_no_tenant_reaches_another() {
    let server = Server::start("serve_tenancy").await;
    let (ta, tb) = (server.tenant("acme").await, server.tenant("beta").await);
    let (rx_a, rx_b) = (receiver().await, receiver().await);
    // beta's receiver refuses its first request: those rows are rejected.
    rx_b.script.lock().unwrap().push_back((400, None));

    let run_a = apply_and_run(
        &server,
        &ta,
        project(
            &rx_a,
            "acme_contacts",
            &[
                ("a1@x.com", "pro"),
                ("a2@x.com", "free"),
                ("a3@x.com", "pro"),
            ],
        ),
        "acme_contacts",
    )
    .await;
    assert_eq!(run_a["status"], "succeeded", "{run_a}");
    assert_eq!(run_a["counts"]["ok"], 3, "{run_a}");
    assert_eq!(run_a["counts"]["added"], 3, "{run_a}");
    assert_eq!(emails(&rx_a), ["a1@x.com", "a2@x.com", "a3@x.com"]);

    let run_b = apply_and_run(
        &server,
        &tb,
        project(
            &rx_b,
            "beta_contacts",
            &[
                ("b1@x.com", "pro"),
                ("b2@x.com", "pro"),
                ("", "free"),
                ("b3@x.com", "x"),
            ],
        ),
        "beta_contacts",
    )
    .await;
    assert_eq!(run_b["counts"]["invalid"], 1, "{run_b}");
    assert_eq!(run_b["counts"]["rejected"], 2, "{run_b}");
    assert_eq!(run_b["counts"]["ok"], 1, "{run_b}");
    assert_eq!(emails(&rx_b), ["b3@x.com"]);
    let (id_a, id_b) = (run_a["id"].as_i64().unwrap(), run_b["id"].as_i64().unwrap());

    // beta reads its rejected rows, with the destination's message.
    let (s, page) = server
        .get(&format!("/api/v1/runs/{id_b}/rejected?limit=2"), &tb)
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let rows = page["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{page}");
    assert_eq!(page["next_offset"], 2, "{page}");
    let (_, rest) = server
        .get(&format!("/api/v1/runs/{id_b}/rejected?offset=2"), &tb)
        .await;
    let all: Vec<&Value> = rows
        .iter()
        .chain(rest["rows"].as_array().unwrap())
        .collect();
    assert_eq!(all.len(), 3, "{rest}");
    let kinds: Vec<&str> = all.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "rejected").count(), 2);
    assert_eq!(kinds.iter().filter(|k| **k == "invalid").count(), 1);
    assert!(all
        .iter()
        .all(|r| !r["message"].as_str().unwrap().is_empty()));

    // Every endpoint and method, with beta's token and acme's names and ids.
    let sent_to_a = rx_a.rows().len();
    let tokens_a = server.get("/api/v1/tokens", &ta).await.1;
    let token_a_id = tokens_a["tokens"][0]["id"].as_str().unwrap().to_owned();
    let not_found = [
        (Method::GET, format!("/api/v1/runs/{id_a}"), None),
        (Method::GET, format!("/api/v1/runs/{id_a}/rejected"), None),
        (Method::GET, "/api/v1/syncs/acme_contacts".into(), None),
        (Method::DELETE, "/api/v1/syncs/acme_contacts".into(), None),
        (
            Method::POST,
            "/api/v1/syncs/acme_contacts/runs".into(),
            None,
        ),
        (Method::DELETE, format!("/api/v1/tokens/{token_a_id}"), None),
        (
            Method::POST,
            "/api/v1/tokens".into(),
            Some(json!({"tenant": "acme"})),
        ),
        (Method::GET, "/api/v1/tenants".into(), None),
        (Method::GET, "/api/v1/tenants/acme".into(), None),
        (Method::DELETE, "/api/v1/tenants/acme".into(), None),
        (
            Method::PUT,
            "/api/v1/tenants/beta/grant-ceiling".into(),
            Some(json!({"grant_ceiling": ["*://*:*"]})),
        ),
        (
            Method::POST,
            "/api/v1/tenants".into(),
            Some(json!({"name": "evil"})),
        ),
    ];
    for (method, path, body) in not_found {
        let (s, b) = server.call(method.clone(), &path, Some(&tb), body).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {path}: {b}");
        assert_eq!(b["error"]["code"], "not_found", "{method} {path}: {b}");
        let text = b.to_string();
        assert!(
            !text.contains("a1@x.com") && !text.contains(&rx_a.url),
            "{text}"
        );
    }
    // Lists hold only the caller's own.
    let (_, runs) = server.get("/api/v1/runs", &tb).await;
    let ids: Vec<i64> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [id_b]);
    let (_, runs) = server.get("/api/v1/runs?sync=acme_contacts", &tb).await;
    assert_eq!(runs["runs"], json!([]));
    let (_, syncs) = server.get("/api/v1/syncs", &tb).await;
    assert_eq!(syncs["syncs"].as_array().unwrap().len(), 1);
    // Connections and models are the caller's own: beta's `hook` is the
    // one pointing at beta's receiver.
    let (s, conns) = server.get("/api/v1/connections", &tb).await;
    assert_eq!(s, StatusCode::OK, "{conns}");
    let listed: Vec<(&str, &str, &str)> = conns["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap(),
                c["kind"].as_str().unwrap(),
                c["plugin"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("files", "source", "files"),
            ("hook", "destination", "webhook")
        ]
    );
    let (_, hook) = server.get("/api/v1/connections/hook", &tb).await;
    assert_eq!(hook["config"]["url"], rx_b.url.as_str(), "{hook}");
    assert_eq!(hook["grants"], json!([rx_b.grant()]), "{hook}");
    assert!(!conns.to_string().contains(&rx_a.url), "{conns}");
    let (_, model) = server.get("/api/v1/models/customers", &tb).await;
    assert_eq!(
        (&model["source"], &model["object"], &model["primary_key"]),
        (&json!("files"), &json!("customers.csv"), &json!(["email"])),
        "{model}"
    );
    let (_, models) = server.get("/api/v1/models", &tb).await;
    assert_eq!(models["models"].as_array().unwrap().len(), 1, "{models}");
    for missing in ["/api/v1/connections/nope", "/api/v1/models/nope"] {
        let (s, b) = server.get(missing, &tb).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{missing}: {b}");
    }
    assert_eq!(syncs["syncs"][0]["name"], "beta_contacts");
    let (_, proj) = server.get("/api/v1/project", &tb).await;
    assert!(!proj.to_string().contains(&rx_a.url), "{proj}");
    let (_, tokens_b) = server.get("/api/v1/tokens", &tb).await;
    assert!(!tokens_b.to_string().contains(&token_a_id));
    // A run id that exists nowhere answers exactly like acme's.
    let (s, b) = server.get("/api/v1/runs/999999", &tb).await;
    assert_eq!(
        (s, &b["error"]["code"]),
        (StatusCode::NOT_FOUND, &json!("not_found"))
    );

    // Nothing of acme's changed: its run, tokens, tenant, deliveries.
    assert_eq!(server.get("/api/v1/tokens", &ta).await.1, tokens_a);
    assert_eq!(
        server.get(&format!("/api/v1/runs/{id_a}"), &ta).await.1,
        run_a
    );
    let (_, all_runs) = server.get("/api/v1/runs", &ta).await;
    assert_eq!(all_runs["runs"].as_array().unwrap().len(), 1);
    assert_eq!(rx_a.rows().len(), sent_to_a);
    let (s, _) = server.get("/api/v1/tenants/acme", OPERATOR).await;
    assert_eq!(s, StatusCode::OK);
    let (_, tenants) = server.get("/api/v1/tenants", OPERATOR).await;
    assert_eq!(tenants["tenants"].as_array().unwrap().len(), 2, "{tenants}");

    // Without a token, or with a malformed one: 401; the operator owns no
    // project: 403 with a code saying so.
    let (s, b) = server.call(Method::GET, "/api/v1/runs", None, None).await;
    assert_eq!(
        (s, &b["error"]["code"]),
        (StatusCode::UNAUTHORIZED, &json!("unauthorized"))
    );
    let (s, _) = server.get("/api/v1/runs", "slk_nope").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, b) = server.get("/api/v1/runs", OPERATOR).await;
    assert_eq!(
        (s, &b["error"]["code"]),
        (StatusCode::FORBIDDEN, &json!("tenant_token_required"))
    );

    // The counters saw both runs and the rows.
    let metrics = server
        .http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("sluice_runs_total{status=\"succeeded\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_sync_rows_total{outcome=\"ok\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_sync_rows_total{outcome=\"rejected\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_http_requests_total{route=\"/api/v1/runs/{id}\",status=\"404\"}"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_models_and_syncs_are_written_one_entry_at_a_time() {
    let server = Server::start("serve_entries").await;
    let token = server.tenant("acme").await;
    let rx = receiver().await;
    let mut upload = project(&rx, "everyone", &[("a@x.com", "pro"), ("b@x.com", "free")]);
    let yaml = upload["files"]["sluice.yaml"].as_str().unwrap().to_owned();
    upload["files"]["sluice.yaml"] = json!(format!("# acme's syncs, reviewed weekly\n{yaml}"));
    let (s, b) = server
        .call(Method::PUT, "/api/v1/project", Some(&token), Some(upload))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let put = |path: String, body: Value| {
        let server = &server;
        let token = token.clone();
        async move {
            server
                .call(Method::PUT, &path, Some(&token), Some(body))
                .await
        }
    };

    // A model and a sync reading it, added one at a time, then run.
    let model = json!({"source": "files", "object": "customers.csv", "primary_key": "email"});
    let (s, b) = put("/api/v1/models/pros".into(), model).await;
    assert_eq!((s, &b["revision"]), (StatusCode::OK, &json!(2)), "{b}");
    let sync = json!({"model": "pros", "destination": "hook", "object": "contacts",
        "mode": "upsert", "identifier": "Email", "mappings": [{"from": "email", "to": "Email"}]});
    let (s, b) = put("/api/v1/syncs/pros_to_hook".into(), sync).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["syncs"], json!(["everyone", "pros_to_hook"]), "{b}");
    let run = run_now(&server, &token, "pros_to_hook").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(emails(&rx), ["a@x.com", "b@x.com"]);
    // The file keeps its comment and its other entries as written.
    let (_, stored) = server.get("/api/v1/project", &token).await;
    let text = stored["files"]["sluice.yaml"].as_str().unwrap();
    assert!(
        text.starts_with("# acme's syncs, reviewed weekly\nsources:\n  files: { plugin: files,"),
        "{text}"
    );
    assert!(
        text.contains("  pros:\n    object: customers.csv\n"),
        "{text}"
    );
    assert_eq!(stored["revision"], 3);

    // Refused before storing: `<redacted>` (what a read shows for a
    // secret), a body that is not an entry, a project the change breaks
    // (422 with the line in the edited file), a stale If-Match.
    let hook = json!({"kind": "destination", "plugin": "webhook",
        "config": {"url": rx.url, "headers": {"x-key": "<redacted>"}}, "grants": [rx.grant()]});
    let (s, b) = put("/api/v1/connections/hook".into(), hook).await;
    assert_eq!(
        (s, &b["error"]["field"]),
        (StatusCode::BAD_REQUEST, &json!("config.headers.x-key")),
        "{b}"
    );
    let (s, b) = put("/api/v1/models/pros".into(), json!(["files"])).await;
    assert_eq!(
        (s, &b["error"]["field"]),
        (StatusCode::BAD_REQUEST, &json!("body")),
        "{b}"
    );
    let (s, b) = put(
        "/api/v1/models/pros".into(),
        json!({"source": "nowhere", "object": "x.csv", "primary_key": "id"}),
    )
    .await;
    assert_eq!(
        (s, &b["error"]["code"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("invalid_project")),
        "{b}"
    );
    let problem = &b["error"]["problems"][0];
    assert!(
        problem["message"].as_str().unwrap().contains("nowhere"),
        "{b}"
    );
    assert_eq!(problem["file"], "sluice.yaml", "{b}");
    let (s, b) = server
        .call(
            Method::DELETE,
            "/api/v1/connections/hook",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "deleting a destination two syncs use: {b}"
    );
    let stale = server
        .http
        .delete(format!("{}/api/v1/syncs/pros_to_hook", server.base))
        .bearer_auth(&token)
        .header("If-Match", "2")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    let (_, after) = server.get("/api/v1/project", &token).await;
    assert_eq!(after["revision"], 3, "nothing refused was stored");

    // Edits racing each other are all kept: each is redone on the
    // revision the other stored.
    let writes = (0..4).map(|i| {
        put(
            format!("/api/v1/models/m{i}"),
            json!({"source": "files", "object": "customers.csv", "primary_key": "email"}),
        )
    });
    for (s, b) in futures::future::join_all(writes).await {
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let (_, models) = server.get("/api/v1/models", &token).await;
    let names: Vec<&str> = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["customers", "m0", "m1", "m2", "m3", "pros"],
        "{models}"
    );
    assert_eq!(models["revision"], 7);

    // A connection replaced, then the sync and the model deleted (pinned
    // to the current revision).
    let hook = json!({"kind": "destination", "plugin": "webhook",
        "config": {"url": rx.url, "max_retries": 2}, "grants": [rx.grant()]});
    let (s, b) = put("/api/v1/connections/hook".into(), hook).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, hook) = server.get("/api/v1/connections/hook", &token).await;
    assert_eq!(hook["config"]["max_retries"], 2, "{hook}");
    let pinned = server
        .http
        .delete(format!("{}/api/v1/syncs/pros_to_hook", server.base))
        .bearer_auth(&token)
        .header("If-Match", "\"8\"")
        .send()
        .await
        .unwrap();
    assert_eq!(pinned.status(), StatusCode::OK);
    let (s, b) = server
        .call(Method::DELETE, "/api/v1/models/pros", Some(&token), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["syncs"], json!(["everyone"]), "{b}");
    let (s, _) = server
        .call(Method::DELETE, "/api/v1/models/pros", Some(&token), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // A tenant with no project yet starts one with its first entry.
    let fresh = server.tenant("fresh").await;
    let (s, b) = server
        .call(Method::PUT, "/api/v1/connections/files", Some(&fresh),
            Some(json!({"kind": "source", "plugin": "files", "config": {"path": "/data"}, "grants": ["dir:data:/data"]})))
        .await;
    assert_eq!((s, &b["revision"]), (StatusCode::OK, &json!(1)), "{b}");
    let (_, conns) = server.get("/api/v1/connections", &fresh).await;
    assert_eq!(conns["connections"][0]["name"], "files", "{conns}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_syncs_whole_ledger_is_paged_searched_and_downloaded_and_runs_record_stage_timings() {
    let server = Server::start("serve_ledger").await;
    let (ta, tb) = (server.tenant("acme").await, server.tenant("beta").await);
    let rx = receiver().await;
    // The first request is throttled (retried after 1 s); then every
    // request is refused: the webhook rejects each row of a 400'd batch
    // (30 batches of 2).
    rx.script.lock().unwrap().push_back((429, Some("1")));
    rx.script
        .lock()
        .unwrap()
        .extend(std::iter::repeat_n((400, None), 30));
    let emails: Vec<String> = (0..60).map(|i| format!("u{i:02}@x.com")).collect();
    let rows: Vec<(&str, &str)> = emails.iter().map(|e| (e.as_str(), "pro")).collect();
    // Run lifecycle events go to the tenant's hook receiver; its URL must be
    // inside the tenant's grant ceiling, like a plugin's grant.
    let hooks = receiver().await;
    let with_notify = |mut p: Value, url: &str| {
        let yaml = p["files"]["sluice.yaml"].as_str().unwrap().to_owned();
        p["files"]["sluice.yaml"] = json!(format!("{yaml}notify: {{ url: \"{url}\" }}\n"));
        p
    };
    let tc = server.tenant_within("gamma", Value::Null).await;
    let (s, b) = server
        .call(
            Method::PUT,
            "/api/v1/project",
            Some(&tc),
            Some(with_notify(project(&rx, "contacts", &rows), &hooks.url)),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b.to_string().contains("`notify.url` reaches"), "{b}");
    let run = apply_and_run(
        &server,
        &ta,
        with_notify(project(&rx, "contacts", &rows), &hooks.url),
        "contacts",
    )
    .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["counts"]["rejected"], 60, "{run}");
    // The worker sends the end events once the run is on the record.
    let deadline = Instant::now() + Duration::from_secs(30);
    while hooks.requests.lock().unwrap().len() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events: Vec<Value> = hooks
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.body.clone())
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["run.started", "run.succeeded", "run.rejected"],
        "{events:?}"
    );
    assert!(
        events.iter().all(|e| e["data"]["run_id"] == run["id"]),
        "{events:?}"
    );

    // The worker's own metrics saw every destination request as it went:
    // the throttled one and the 30 refused, timed; no instance outlives
    // the run.
    // (Polled: the run's thread ends a moment after its last event.)
    let expected = [
        "sluice_destination_request_duration_seconds_count{destination=\"webhook\",outcome=\"4xx\"} 31",
        "sluice_destination_throttled_total{destination=\"webhook\"} 1",
        "sluice_worker_runs_total{status=\"succeeded\"} 1",
        "sluice_worker_runs_active 0",
        "sluice_instances 0",
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut metrics = server.worker_metrics().await;
    while !expected.iter().all(|e| metrics.lines().any(|l| l == *e)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        metrics = server.worker_metrics().await;
    }
    for line in expected {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }

    // The run recorded how long each stage took; the stages follow one
    // another, so they fit in the run's duration.
    let t = &run["timings"];
    let ms = |k: &str| t[k].as_u64().unwrap_or_else(|| panic!("{k} in {t}"));
    let stages =
        ms("load_ms") + ms("discover_ms") + ms("mappings_ms") + ms("run_ms") + ms("deletes_ms");
    let duration_ms =
        (run["finished_at"].as_i64().unwrap() - run["started_at"].as_i64().unwrap()) / 1000;
    assert!(
        stages <= duration_ms as u64 + 5,
        "{stages} ms of stages in {duration_ms} ms: {t}"
    );
    assert_eq!(ms("deletes_ms"), 0, "an upsert sync deletes nothing: {t}");
    for part in ["read_ms", "transform_ms", "write_ms", "commit_ms"] {
        ms(part);
    }
    // Instantiation is measured per instance (the files source and the
    // webhook's one writer) and happens inside the load stage. load_ms is
    // truncated to whole milliseconds, so the stage lasted less than
    // load_ms + 1 of them, and instantiate_us (µs) fits below that.
    assert_eq!(ms("instances"), 2, "source and one writer: {t}");
    let instantiate_us = ms("instantiate_us");
    assert!(instantiate_us > 0, "{t}");
    assert!(
        instantiate_us < (ms("load_ms") + 1) * 1000,
        "instantiation within the load stage: {t}"
    );

    // Paged in key order, the whole ledger counted.
    let page = |q: &str, offset: i64| {
        format!("/api/v1/syncs/contacts/rejected?q={q}&offset={offset}&limit=25")
    };
    let (s, first) = server.get(&page("", 0), &ta).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    assert_eq!(first["total"], 60);
    let keys = |b: &Value| -> Vec<String> {
        b["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["key"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(keys(&first).len(), 25);
    assert!(keys(&first)[0].contains("u00@x.com"), "{first}");
    assert!(keys(&first).windows(2).all(|w| w[0] < w[1]), "{first}");
    assert_eq!(first["rows"][0]["attempts"], 1);
    assert_eq!(first["rows"][0]["first_run"], run["id"]);
    let (_, last) = server.get(&page("", 50), &ta).await;
    assert_eq!(keys(&last).len(), 10, "{last}");
    assert!(keys(&last)[9].contains("u59@x.com"), "{last}");
    // A search matches the key as printed, or the message, in any case.
    let (_, found) = server.get(&page("U17@X", 0), &ta).await;
    assert_eq!(
        (found["total"].as_i64(), keys(&found).len()),
        (Some(1), 1),
        "{found}"
    );
    let (_, by_message) = server.get(&page("400", 40), &ta).await;
    assert_eq!(
        (by_message["total"].as_i64(), keys(&by_message).len()),
        (Some(60), 20)
    );
    let (s, b) = server.get(&page("", -1), &ta).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");

    // The CSV holds every row.
    let csv = server
        .http
        .get(format!(
            "{}/api/v1/syncs/contacts/rejected.csv",
            server.base
        ))
        .bearer_auth(&ta)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), StatusCode::OK);
    let csv = csv.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "key,message,attempts,first_run,last_run");
    assert_eq!(lines.len(), 61, "{csv}");
    assert!(
        lines[1].contains("u00@x.com") && lines[1].contains("400"),
        "{csv}"
    );

    // Another tenant gets 404, as for a sync that does not exist.
    for path in [page("", 0), "/api/v1/syncs/contacts/rejected.csv".into()] {
        let (s, b) = server.get(&path, &tb).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {b}");
        assert!(!b.to_string().contains("u00@x.com"), "{b}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_shown_once_and_stored_only_as_its_hash() {
    let server = Server::start("serve_tokens").await;
    let first = server.tenant("acme").await;
    let (s, made) = server
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&first),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    let token = made["token"].as_str().unwrap();
    assert!(token.starts_with("slk_") && token.len() == 47, "{token}");
    assert_eq!(made["tenant"], "acme");
    // The new token works, and listing shows ids, never a token.
    let (s, list) = server.get("/api/v1/tokens", token).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["tokens"].as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains(&token[4..]) && !list.to_string().contains(&first[4..]));

    let sql = server.sql().await;
    let rows = sql
        .query(
            "SELECT id, sha256, tenant FROM sluice.api_tokens ORDER BY created_at",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let stored: Vec<Vec<u8>> = rows.iter().map(|r| r.get(1)).collect();
    for t in [&first, &token.to_owned()] {
        let digest = Sha256::digest(t.as_bytes()).to_vec();
        assert!(stored.contains(&digest), "the SHA-256 of {t} is stored");
    }
    // No column of the table holds any token's secret.
    let dump: String = sql
        .query_one(
            "SELECT string_agg(t::text, ' ') FROM sluice.api_tokens t",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        !dump.contains(&token[4..]) && !dump.contains(&first[4..]),
        "{dump}"
    );
    // Revoked, it no longer opens anything.
    let id = made["id"].as_str().unwrap();
    let (s, _) = server
        .call(
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            Some(&first),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        server.get("/api/v1/tokens", token).await.0,
        StatusCode::UNAUTHORIZED
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_level_security_not_only_where_clauses_keeps_tenants_apart() {
    let server = Server::start("serve_rls").await;
    server.tenant("acme").await;
    server.tenant("beta").await;
    let sql = server.sql().await;
    // Runs of both tenants, written as the owner.
    sql.batch_execute(
        "INSERT INTO sluice.runs (tenant, sync, status, owner, started_at, heartbeat_at)
         VALUES ('acme', 's', 'succeeded', 'o', 1, 1), ('acme', 's', 'failed', 'o', 2, 2),
                ('beta', 's', 'succeeded', 'o', 3, 3)",
    )
    .await
    .unwrap();
    // As the role the server's tenant work uses, with no WHERE at all.
    let as_tenant = |tenant: &'static str| {
        format!("SET LOCAL ROLE sluice_app; SELECT set_config('sluice.tenant', '{tenant}', true);")
    };
    for (tenant, runs, tokens) in [("acme", 2i64, 1i64), ("beta", 1, 1)] {
        let mut c = server.sql().await;
        let tx = c.transaction().await.unwrap();
        tx.batch_execute(&as_tenant(tenant)).await.unwrap();
        let seen: Vec<String> = tx
            .query("SELECT tenant FROM sluice.runs", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(seen.len() as i64, runs, "{tenant}: {seen:?}");
        assert!(seen.iter().all(|t| t == tenant), "{tenant}: {seen:?}");
        let n: i64 = tx
            .query_one("SELECT count(*) FROM sluice.api_tokens", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, tokens);
        let n: i64 = tx
            .query_one("SELECT count(*) FROM sluice.tenants", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1, "{tenant} sees only itself");
        // Writing another tenant's row is refused by the policy.
        let other = if tenant == "acme" { "beta" } else { "acme" };
        let refused = tx
            .execute(
                "INSERT INTO sluice.runs (tenant, sync, status, owner, started_at, heartbeat_at)
                 VALUES ($1, 's', 'running', 'o', 9, 9)",
                &[&other],
            )
            .await
            .unwrap_err();
        assert_eq!(
            refused.as_db_error().unwrap().code(),
            &tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE,
            "{refused:?}"
        );
    }
    // With no tenant set, the role sees nothing.
    let mut c = server.sql().await;
    let tx = c.transaction().await.unwrap();
    tx.batch_execute("SET LOCAL ROLE sluice_app").await.unwrap();
    let n: i64 = tx
        .query_one("SELECT count(*) FROM sluice.runs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    drop(tx);
    // The role the server uses is subject to row-level security.
    let bypass: bool = sql
        .query_one(
            "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = 'sluice_app'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!bypass);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_problems_come_back_with_file_line_and_column() {
    let server = Server::start("serve_validate").await;
    let token = server.tenant("acme").await;
    let rx = receiver().await;
    let mut bad = project(&rx, "contacts", &[("a@x.com", "pro")]);
    let yaml = bad["files"]["sluice.yaml"]
        .as_str()
        .unwrap()
        .replace("mode: upsert", "mode: sideways");
    let line = yaml.lines().position(|l| l.contains("sideways")).unwrap() + 1;
    let column = yaml
        .lines()
        .nth(line - 1)
        .unwrap()
        .find("sideways")
        .unwrap()
        + 1;
    bad["files"]["sluice.yaml"] = json!(yaml);
    let (s, b) = server
        .call(Method::PUT, "/api/v1/project", Some(&token), Some(bad))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["code"], "invalid_project");
    let p = &b["error"]["problems"][0];
    assert_eq!(p["file"], "sluice.yaml", "{b}");
    assert_eq!(p["line"], line, "{b}");
    assert_eq!(p["column"], column, "{b}");
    assert!(p["message"].as_str().unwrap().contains("sideways"), "{b}");

    // A directory grant outside the project is refused on a server.
    let mut escape = project(&rx, "contacts", &[("a@x.com", "pro")]);
    let yaml = escape["files"]["sluice.yaml"]
        .as_str()
        .unwrap()
        .replace("dir:data:/data", "dir:../../..:/data");
    escape["files"]["sluice.yaml"] = json!(yaml);
    let (s, b) = server
        .call(Method::PUT, "/api/v1/project", Some(&token), Some(escape))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(
        b["error"]["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("outside the project"),
        "{b}"
    );
    assert_eq!(b["error"]["problems"][0]["line"], 2, "{b}");

    // Malformed requests: the field at fault, a stable code.
    let (s, b) = server
        .call(
            Method::PUT,
            "/api/v1/project",
            Some(&token),
            Some(json!({"files": {"../x": "", "sluice.yaml": ""}})),
        )
        .await;
    assert_eq!(
        (s, &b["error"]["code"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_request"))
    );
    assert_eq!(b["error"]["field"], "files.../x");
    let (s, b) = server
        .call(
            Method::PUT,
            "/api/v1/project",
            Some(&token),
            Some(json!({"files": 3})),
        )
        .await;
    assert_eq!(
        (s, &b["error"]["code"], &b["error"]["field"]),
        (
            StatusCode::BAD_REQUEST,
            &json!("invalid_request"),
            &json!("body")
        )
    );
    let (s, b) = server
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(OPERATOR),
            Some(json!({"name": "Not A Name"})),
        )
        .await;
    assert_eq!(
        (s, &b["error"]["field"]),
        (StatusCode::BAD_REQUEST, &json!("name"))
    );
    let (s, b) = server.get("/api/v1/runs/abc", &token).await;
    assert_eq!(
        (s, &b["error"]["field"]),
        (StatusCode::BAD_REQUEST, &json!("id"))
    );
    let (s, b) = server.get("/api/v1/runs?limit=0", &token).await;
    assert_eq!(
        (s, &b["error"]["field"]),
        (StatusCode::BAD_REQUEST, &json!("limit"))
    );
    // Nothing was stored.
    let (s, _) = server.get("/api/v1/project", &token).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_openapi_and_sluice_apply() {
    let server = Server::start("serve_misc").await;
    let plain = |path: &str| server.http.get(format!("{}{path}", server.base)).send();
    assert_eq!(plain("/healthz").await.unwrap().status(), StatusCode::OK);
    assert_eq!(plain("/readyz").await.unwrap().status(), StatusCode::OK);
    let doc: Value = plain("/openapi.json").await.unwrap().json().await.unwrap();
    for path in [
        "/api/v1/tenants",
        "/api/v1/tokens",
        "/api/v1/project",
        "/api/v1/syncs/{name}/runs",
        "/api/v1/runs/{id}/rejected",
        "/api/v1/connections/{name}",
        "/api/v1/models",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} in {doc}");
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    assert!(
        doc["paths"]["/api/v1/syncs/{name}/runs"]["post"]["responses"]["202"].is_object(),
        "the trigger answers 202: {doc}"
    );
    assert!(doc["components"]["schemas"]["Enqueued"]["properties"]["job_id"].is_object());
    for (path, method) in [
        ("/api/v1/connections/{name}", "put"),
        ("/api/v1/connections/{name}", "delete"),
        ("/api/v1/models/{name}", "put"),
        ("/api/v1/syncs/{name}", "delete"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }

    // `sluice apply` uploads the project folder as the tenant.
    let token = server.tenant("acme").await;
    let rx = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let upload = project(&rx, "contacts", &[("a@x.com", "pro")]);
    for (path, text) in upload["files"].as_object().unwrap() {
        let target = dir.path().join(path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, text.as_str().unwrap()).unwrap();
    }
    std::fs::create_dir_all(dir.path().join(".sluice")).unwrap();
    std::fs::write(dir.path().join(".sluice/state.db"), "not uploaded").unwrap();
    let token_file = dir.path().join(".sluice/token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let args = sluice::serve::ApplyArgs {
        server: server.base.clone(),
        token_file,
        json: false,
    };
    sluice::serve::apply(dir.path(), args).await.unwrap();
    let (s, stored) = server.get("/api/v1/project", &token).await;
    assert_eq!(s, StatusCode::OK, "{stored}");
    assert_eq!(stored["revision"], 1);
    assert_eq!(stored["files"], upload["files"]);

    // The database gone, the server is not ready (but is up).
    let name = server.db.name.clone();
    psql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ));
    psql(&format!(
        "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"
    ));
    assert_eq!(
        plain("/readyz").await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(plain("/healthz").await.unwrap().status(), StatusCode::OK);
    psql(&format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true"));
    server.stop().await;
}

/// The keys of the jobs waiting on the queue, sorted.
async fn queued_keys(pool: &deadpool_postgres::Pool) -> Vec<String> {
    let client = pool.get().await.unwrap();
    let rows = client
        .query(
            "SELECT key FROM sluice_queue.jobs WHERE key IS NOT NULL ORDER BY key",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_ticks_are_enqueued_once_and_missed_ticks_run_once() {
    use sluice_server::schedule::{enqueue_due, ProjectCache};
    // The state and the queue, and no worker: the jobs stay to be counted.
    let db = PgDatabase::create("serve_schedule");
    let url = db.url();
    let u = url.clone();
    tokio::task::spawn_blocking(move || sluice_state::PostgresStore::connect(&u))
        .await
        .unwrap()
        .unwrap();
    let pool = sluice_server::db::pool(&url).unwrap();
    sluice_server::queue::migrate(&pool).await.unwrap();
    let yaml = "syncs:\n  quarterly: { schedule: every 15m }\n  hourly: { schedule: '0 * * * *' }\n  manual: { model: m }\n";
    let client = pool.get().await.unwrap();
    client
        .batch_execute("INSERT INTO sluice.tenants (tenant) VALUES ('acme')")
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO sluice.projects (tenant, revision, files) VALUES ('acme', 1, $1)",
            &[&json!({ "sluice.yaml": yaml })],
        )
        .await
        .unwrap();
    drop(client);

    // 2026-01-02T10:00:00Z, a tick of both schedules.
    let t0: i64 = 1_767_348_000;
    let (mut a, mut b) = (ProjectCache::default(), ProjectCache::default());
    // First seen: nothing is owed before now.
    assert_eq!(enqueue_due(&pool, &mut a, t0 + 10).await.unwrap(), 0);
    assert_eq!(enqueue_due(&pool, &mut b, t0 + 10).await.unwrap(), 0);
    assert!(queued_keys(&pool).await.is_empty());

    // 11:00:05: two schedulers race for the 11:00 ticks; each tick is
    // enqueued once.
    let t1 = t0 + 3600 + 5;
    let (x, y) = tokio::join!(
        enqueue_due(&pool, &mut a, t1),
        enqueue_due(&pool, &mut b, t1)
    );
    assert_eq!(x.unwrap() + y.unwrap(), 2);
    assert_eq!(enqueue_due(&pool, &mut a, t1 + 30).await.unwrap(), 0);

    // Every scheduler down for five hours (20 ticks of `every 15m`, 5 of
    // the hourly cron): the latest tick of each runs once.
    let t2 = t1 + 5 * 3600;
    assert_eq!(enqueue_due(&pool, &mut b, t2).await.unwrap(), 2);
    assert_eq!(enqueue_due(&pool, &mut a, t2 + 60).await.unwrap(), 0);
    let (h1, h2) = (t0 + 3600, t0 + 6 * 3600);
    assert_eq!(
        queued_keys(&pool).await,
        [
            format!("schedule:acme:hourly:{h1}"),
            format!("schedule:acme:hourly:{h2}"),
            format!("schedule:acme:quarterly:{h1}"),
            format!("schedule:acme:quarterly:{h2}"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scheduled_sync_runs_on_its_own_through_a_worker() {
    let server = Server::start_with("serve_scheduled", Some(Duration::from_millis(200))).await;
    let token = server.tenant("acme").await;
    let rx = receiver().await;
    let mut upload = project(&rx, "contacts", &[("a@x.com", "pro"), ("b@x.com", "free")]);
    let yaml = upload["files"]["sluice.yaml"].as_str().unwrap().to_owned();
    upload["files"]["sluice.yaml"] = json!(format!("{yaml}    schedule: every 1s\n"));
    let (s, b) = server
        .call(Method::PUT, "/api/v1/project", Some(&token), Some(upload))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // No trigger: the ticks after the first pass run the sync, one run
    // after another.
    let first = server.next_finished_run(&token, "contacts", 0).await;
    assert_eq!(first["status"], "succeeded", "{first}");
    let first_id = first["id"].as_i64().unwrap();
    let second = server.next_finished_run(&token, "contacts", first_id).await;
    assert_eq!(second["status"], "succeeded", "{second}");
    assert_eq!(second["counts"]["unchanged"], 2, "{second}");
    assert_eq!(emails(&rx), ["a@x.com", "b@x.com"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sync_after_another_runs_when_that_one_succeeds() {
    let server = Server::start("serve_sequence").await;
    let token = server.tenant("acme").await;
    let rx = receiver().await;
    let mut upload = project(&rx, "first", &[("a@x.com", "pro"), ("b@x.com", "free")]);
    let yaml = upload["files"]["sluice.yaml"].as_str().unwrap().to_owned();
    let second = "  second:\n    model: customers\n    destination: hook\n    object: leads\n    mode: upsert\n    identifier: Email\n    after: first\n    mappings:\n      - { from: email, to: Email }\n";
    upload["files"]["sluice.yaml"] = json!(format!("{yaml}{second}"));
    let (s, b) = server
        .call(Method::PUT, "/api/v1/project", Some(&token), Some(upload))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = server
        .call(Method::POST, "/api/v1/syncs/first/runs", Some(&token), None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let first = server.next_finished_run(&token, "first", 0).await;
    assert_eq!(first["status"], "succeeded", "{first}");
    let after = server.next_finished_run(&token, "second", 0).await;
    assert_eq!(after["status"], "succeeded", "{after}");
    assert_eq!(after["counts"]["ok"], 2, "{after}");
    assert!(after["started_at"].as_i64() >= first["finished_at"].as_i64());
    assert_eq!(rx.rows().len(), 4, "two rows by each sync");
    server.stop().await;
}

/// `after_max_rejected` stops a sequence: a follower is not enqueued after
/// a run that rejected more rows than it allows; one without it still is.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sequence_stops_after_a_run_that_rejected_more_than_its_threshold() {
    let server = Server::start("serve_sequence_stop").await;
    let token = server.tenant("acme").await;
    let rx = receiver().await;
    // The first run's only batch is refused: both of its rows are rejected.
    rx.script.lock().unwrap().push_back((400, None));
    let mut upload = project(&rx, "first", &[("a@x.com", "pro"), ("b@x.com", "free")]);
    let yaml = upload["files"]["sluice.yaml"].as_str().unwrap().to_owned();
    let follower = |name: &str, extra: &str| {
        format!(
            "  {name}:\n    model: customers\n    destination: hook\n    object: {name}\n    mode: upsert\n    identifier: Email\n    after: first\n{extra}    mappings:\n      - {{ from: email, to: Email }}\n"
        )
    };
    upload["files"]["sluice.yaml"] = json!(format!(
        "{yaml}{}{}",
        follower("plain", ""),
        follower("guarded", "    after_max_rejected: 1\n")
    ));
    let (s, b) = server
        .call(Method::PUT, "/api/v1/project", Some(&token), Some(upload))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let trigger = || async {
        let (s, b) = server
            .call(Method::POST, "/api/v1/syncs/first/runs", Some(&token), None)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    };
    trigger().await;
    let first = server.next_finished_run(&token, "first", 0).await;
    assert_eq!(first["counts"]["rejected"], 2, "{first}");
    let plain = server.next_finished_run(&token, "plain", 0).await;
    assert_eq!(plain["status"], "succeeded", "{plain}");
    // Both followers were enqueued (or not) together, before `plain` ran.
    let (_, guarded) = server.get("/api/v1/runs?sync=guarded", &token).await;
    assert_eq!(
        guarded["runs"],
        json!([]),
        "the sequence went on: {guarded}"
    );

    // The next run rejects nothing: the sequence goes on.
    trigger().await;
    let first_id = first["id"].as_i64().unwrap();
    let again = server.next_finished_run(&token, "first", first_id).await;
    assert_eq!(again["counts"]["rejected"], 0, "{again}");
    let guarded = server.next_finished_run(&token, "guarded", 0).await;
    assert_eq!(guarded["status"], "succeeded", "{guarded}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_grant_exceeds_the_tenants_ceiling_when_applied_or_when_run() {
    let server = Server::start("serve_ceiling").await;
    // The default ceiling: every public host, nothing on this machine.
    let token = server.tenant_within("acme", Value::Null).await;
    let (_, tenant) = server.get("/api/v1/tenants/acme", OPERATOR).await;
    assert_eq!(tenant["grant_ceiling"], json!(["*://*:*"]), "{tenant}");
    let rx = receiver().await;
    let upload = project(&rx, "contacts", &[("a@x.com", "pro")]);

    // The receiver is on loopback: refused, with where and why.
    let (s, b) = server
        .call(
            Method::PUT,
            "/api/v1/project",
            Some(&token),
            Some(upload.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let problem = &b["error"]["problems"][0];
    let message = problem["message"].as_str().unwrap();
    assert!(message.contains("beyond what the operator allows"), "{b}");
    assert!(
        message.contains(&rx.grant()) && message.contains("*://*:*"),
        "{b}"
    );
    assert_eq!(
        (problem["file"].as_str(), problem["line"].as_i64()),
        (Some("sluice.yaml"), Some(5)),
        "{b}"
    );
    // So is the server's own state database, by address or by name.
    for grant in [
        "postgres://127.0.0.1:5432",
        "postgres://localhost:5432",
        "tcp://169.254.169.254:80",
    ] {
        let mut sneaky = upload.clone();
        let yaml = sneaky["files"]["sluice.yaml"]
            .as_str()
            .unwrap()
            .replace(&rx.grant(), grant);
        sneaky["files"]["sluice.yaml"] = json!(yaml);
        let (s, b) = server
            .call(Method::PUT, "/api/v1/project", Some(&token), Some(sneaky))
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{grant}: {b}");
    }

    // The operator names the receiver's port: the project applies and runs.
    let port = rx
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let widened = json!({"grant_ceiling": ["*://*:*", format!("http://127.0.0.1:{port}")]});
    let (s, b) = server
        .call(
            Method::PUT,
            "/api/v1/tenants/acme/grant-ceiling",
            Some(OPERATOR),
            Some(widened),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let run = apply_and_run(&server, &token, upload, "contacts").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let delivered = rx.requests.lock().unwrap().len();

    // Lowered again: the stored project may no longer run; no plugin starts.
    let (s, _) = server
        .call(
            Method::PUT,
            "/api/v1/tenants/acme/grant-ceiling",
            Some(OPERATOR),
            Some(json!({"grant_ceiling": ["https://*.example.com"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = server
        .call(
            Method::POST,
            "/api/v1/syncs/contacts/runs",
            Some(&token),
            Some(json!({"full_resync": true})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b.to_string().contains("https://*.example.com"), "{b}");
    assert_eq!(rx.requests.lock().unwrap().len(), delivered);

    // Malformed ceilings name the pattern; unknown tenants are 404.
    let (s, b) = server
        .call(
            Method::PUT,
            "/api/v1/tenants/acme/grant-ceiling",
            Some(OPERATOR),
            Some(json!({"grant_ceiling": ["https://ok.example.com", "ftp//nope"]})),
        )
        .await;
    assert_eq!(
        (s, &b["error"]["field"]),
        (StatusCode::BAD_REQUEST, &json!("grant_ceiling")),
        "{b}"
    );
    assert!(b.to_string().contains("ftp//nope"), "{b}");
    let (s, _) = server
        .call(
            Method::PUT,
            "/api/v1/tenants/nobody/grant-ceiling",
            Some(OPERATOR),
            Some(json!({"grant_ceiling": []})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A tenant cannot raise its own ceiling.
    let (s, _) = server
        .call(
            Method::PUT,
            "/api/v1/tenants/acme/grant-ceiling",
            Some(&token),
            Some(json!({"grant_ceiling": ["*://*:*", "postgres://127.0.0.1:5432"]})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_sealed_at_rest_never_returned_and_read_only_by_their_tenant() {
    const SECRET: &str = "hook-token-6f1c2b9e4d";
    let mut server = Server::start("serve_secrets").await;
    let token = server.tenant("acme").await;
    let other = server.tenant("bravo").await;
    let rx = receiver().await;
    let mut upload = project(&rx, "contacts", &[("a@x.com", "pro")]);
    let yaml = upload["files"]["sluice.yaml"].as_str().unwrap().replace(
        "max_retries: 0 }",
        "max_retries: 0, headers: { X-Hook-Token: \"${HOOK_TOKEN}\" } }",
    );
    upload["files"]["sluice.yaml"] = json!(yaml);

    // Not stored yet: the problem names the secret and how to store it.
    let (s, b) = server
        .call(
            Method::PUT,
            "/api/v1/project",
            Some(&token),
            Some(upload.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(
        b.to_string()
            .contains("secret `HOOK_TOKEN` is not set (PUT /api/v1/secrets/HOOK_TOKEN)"),
        "{b}"
    );

    let (s, b) = server
        .put_secret(&token, "HOOK_TOKEN", json!({"value": SECRET}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let (_, list) = server.get("/api/v1/secrets", &token).await;
    assert_eq!(list["secrets"][0]["name"], "HOOK_TOKEN", "{list}");
    assert_eq!(list["secrets"][0]["key_id"], "k1", "{list}");

    // The run sends it; nothing the API answers holds it.
    let run = apply_and_run(&server, &token, upload.clone(), "contacts").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let sent: Vec<String> = rx
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.headers["x-hook-token"].to_str().unwrap().to_owned())
        .collect();
    assert!(
        !sent.is_empty() && sent.iter().all(|h| h == SECRET),
        "{sent:?}"
    );
    for path in [
        "/api/v1/secrets",
        "/api/v1/project",
        "/api/v1/runs",
        "/api/v1/syncs",
        "/api/v1/connections",
        "/api/v1/connections/hook",
    ] {
        let (_, b) = server.get(path, &token).await;
        assert!(!b.to_string().contains(SECRET), "{path}: {b}");
    }
    // The connection shows where the secret goes, not what it is.
    let (_, hook) = server.get("/api/v1/connections/hook", &token).await;
    assert_eq!(
        hook["config"]["headers"]["X-Hook-Token"], "<redacted>",
        "{hook}"
    );
    // At rest it is ciphertext.
    let sql = server.sql().await;
    let row = sql
        .query_one(
            "SELECT key_id, wrapped_key, ciphertext FROM sluice.secrets",
            &[],
        )
        .await
        .unwrap();
    let (wrapped, sealed): (Vec<u8>, Vec<u8>) = (row.get(1), row.get(2));
    let stored = [wrapped, sealed].concat();
    assert!(!stored.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));

    // Another tenant neither sees nor reads it.
    let (_, list) = server.get("/api/v1/secrets", &other).await;
    assert_eq!(list["secrets"], json!([]), "{list}");
    let (s, b) = server
        .call(
            Method::PUT,
            "/api/v1/project",
            Some(&other),
            Some(upload.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (s, _) = server
        .call(
            Method::DELETE,
            "/api/v1/secrets/HOOK_TOKEN",
            Some(&other),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // As the application role under bravo, the row does not exist.
    let tx = sql
        .simple_query(
            "BEGIN; SET LOCAL ROLE sluice_app; SELECT set_config('sluice.tenant', 'bravo', true);",
        )
        .await;
    assert!(tx.is_ok());
    let seen = sql
        .query_one("SELECT count(*) FROM sluice.secrets", &[])
        .await
        .unwrap();
    assert_eq!(seen.get::<_, i64>(0), 0);
    sql.simple_query("ROLLBACK").await.unwrap();

    // Bad names and values are refused with the field at fault.
    let (s, b) = server
        .put_secret(&token, "2FA", json!({"value": "x"}))
        .await;
    assert_eq!(
        (s, &b["error"]["field"]),
        (StatusCode::BAD_REQUEST, &json!("name")),
        "{b}"
    );
    let (s, b) = server
        .put_secret(&token, "BIG", json!({"value": "x".repeat(70_000)}))
        .await;
    assert_eq!(
        (s, &b["error"]["field"]),
        (StatusCode::BAD_REQUEST, &json!("value")),
        "{b}"
    );

    // Rotation: a new key first, the old one still listed; rewrap; then the
    // old key can go and runs still read the secret.
    let rotated = format!("k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\n{KEYS}\n");
    server.restart(Some(&rotated)).await;
    let (s, b) = server
        .call(Method::POST, "/api/v1/secrets-rewrap", Some(&token), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "operator only: {b}");
    let (s, b) = server
        .call(Method::POST, "/api/v1/secrets-rewrap", Some(OPERATOR), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (b["rewrapped"].as_u64(), b["current"].as_u64()),
        (Some(1), Some(0)),
        "{b}"
    );
    server
        .restart(Some("k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="))
        .await;
    let before = rx.requests.lock().unwrap().len();
    let (_, last) = server
        .get("/api/v1/runs?sync=contacts&limit=1", &token)
        .await;
    let after = last["runs"][0]["id"].as_i64().unwrap();
    let (s, b) = server
        .call(
            Method::POST,
            "/api/v1/syncs/contacts/runs",
            Some(&token),
            Some(json!({"full_resync": true})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let run = server.next_finished_run(&token, "contacts", after).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let headers: Vec<String> = rx.requests.lock().unwrap()[before..]
        .iter()
        .map(|r| r.headers["x-hook-token"].to_str().unwrap().to_owned())
        .collect();
    assert!(
        !headers.is_empty() && headers.iter().all(|h| h == SECRET),
        "{headers:?}"
    );

    // Without a key file, secrets are off and say how to turn them on.
    server.restart(None).await;
    let (s, b) = server
        .put_secret(&token, "OTHER", json!({"value": "x"}))
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    assert!(b.to_string().contains("--secrets-key-file"), "{b}");
    server.stop().await;
}

/// After a job, a worker wakes the queue's job slots (graphile-worker's
/// `jobs:insert` notification) while a job is due, and only then: without
/// it a backlog drained at one job per slot per poll tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_wakes_the_job_slots_only_while_a_job_is_due() {
    use futures::StreamExt;
    let db = PgDatabase::create("queue_wake");
    let pool = sluice_server::db::pool(&db.url()).unwrap();
    sluice_server::queue::migrate(&pool).await.unwrap();
    let (listener, mut connection) = tokio_postgres::connect(&db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, mut notified) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message {
                let _ = tx.send(n.channel().to_owned());
            }
        }
    });
    listener
        .batch_execute("LISTEN \"jobs:insert\"")
        .await
        .unwrap();
    // Whether a notification arrives within a generous bound, after
    // draining those already sent (enqueueing notifies too).
    let drain =
        |rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>| while rx.try_recv().is_ok() {};
    async fn arrives(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> bool {
        tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .is_ok()
    }
    let job = |sync: &str| sluice_server::queue::RunJob {
        tenant: "acme".into(),
        sync: sync.into(),
        full_resync: false,
        trigger: "manual".into(),
    };

    // Nothing queued, or only a job due later: no wake-up.
    sluice_server::queue::wake_if_waiting(&pool).await;
    assert!(!arrives(&mut notified).await, "woken with an empty queue");
    sluice_server::resources::requeue_later(&pool, job("later"), "a test")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drain(&mut notified);
    sluice_server::queue::wake_if_waiting(&pool).await;
    assert!(!arrives(&mut notified).await, "woken for a job not yet due");

    // A due job: the slots are woken.
    sluice_server::queue::enqueue(&pool, job("now"), None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drain(&mut notified);
    sluice_server::queue::wake_if_waiting(&pool).await;
    assert!(arrives(&mut notified).await, "not woken with a job due");
}
