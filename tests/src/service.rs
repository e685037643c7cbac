//! The set-up the tests of `sluice serve` + `sluice worker` with real
//! processes share: the server in process on a PostgreSQL state, the
//! tenant `acme` with a grant ceiling, its token and its project
//! ([`Service`]), and the command line of a `sluice worker` process
//! ([`worker_command`]).

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The operator token of the servers these tests start.
pub const OPERATOR: &str = "operator-token-for-service-tests-0123";
/// The tenant the set-up creates.
pub const TENANT: &str = "acme";

/// `sluice serve` (in process) with the tenant [`TENANT`] and its token.
pub struct Service {
    pub server: sluice_server::RunningServer,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub http: reqwest::Client,
    /// The tenant's API token.
    pub token: String,
}

/// Sends `req`; its status and JSON body (`null` when it has none).
pub async fn call(req: reqwest::RequestBuilder) -> (u16, Value) {
    let response = req.send().await.expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

impl Service {
    /// Starts the server on `state_url` (projects under `work_dir`), with
    /// `keyring` for tenant secrets, and creates [`TENANT`], whose grant
    /// ceiling is the default one plus `grant` (a local receiver or
    /// emulator, on loopback, is beyond the default), and its token.
    pub async fn start(
        state_url: &str,
        work_dir: PathBuf,
        keyring: Option<sluice_server::secrets::Keyring>,
        grant: &str,
    ) -> Service {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = sluice_server::start(
            sluice_server::ServerConfig {
                state_url: state_url.to_owned(),
                operator_token: OPERATOR.into(),
                work_dir,
                app_role: "sluice_app".into(),
                keyring,
            },
            listener,
        )
        .await
        .expect("starting sluice serve");
        let base = format!("http://{}", server.addr);
        let http = reqwest::Client::new();
        let (s, b) = call(
            http.post(format!("{base}/api/v1/tenants"))
                .bearer_auth(OPERATOR)
                .json(&json!({"name": TENANT, "grant_ceiling": ["*://*:*", grant]})),
        )
        .await;
        assert_eq!(s, 201, "creating the tenant: {b}");
        let (s, b) = call(
            http.post(format!("{base}/api/v1/tokens"))
                .bearer_auth(OPERATOR)
                .json(&json!({"tenant": TENANT})),
        )
        .await;
        assert_eq!(s, 201, "creating a token: {b}");
        let token = b["token"].as_str().expect("a token").to_owned();
        Service {
            server,
            base,
            http,
            token,
        }
    }

    /// Uploads the tenant's project (`{"files": {...}}`).
    pub async fn put_project(&self, project: &Value) {
        let (s, b) = call(
            self.http
                .put(format!("{}/api/v1/project", self.base))
                .bearer_auth(&self.token)
                .json(project),
        )
        .await;
        assert_eq!(s, 200, "uploading the project: {b}");
    }

    /// Enqueues a run of `sync`.
    pub async fn trigger(&self, sync: &str) {
        let (s, b) = call(
            self.http
                .post(format!("{}/api/v1/syncs/{sync}/runs", self.base))
                .bearer_auth(&self.token),
        )
        .await;
        assert_eq!(s, 202, "triggering `{sync}`: {b}");
    }

    /// Stops the server.
    pub async fn shutdown(self) {
        self.server.shutdown().await.expect("stopping sluice serve");
    }
}

/// `sluice worker` (the binary at `bin`) on `state_url`, working in
/// `work` with one job at a time and no scheduler, its stderr in
/// `work.log`, the components compiled once for every test; more
/// arguments and the spawn are the caller's.
pub fn worker_command(bin: &Path, state_url: &str, work: &Path) -> Command {
    let mut command = Command::new(bin);
    command
        .args(["worker", "--state", state_url, "--work-dir"])
        .arg(work)
        .args(["--concurrency", "1", "--no-schedule"])
        .env("SLUICE_CACHE_DIR", crate::shared_cache_dir())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.with_extension("log")).expect("a worker's log file"));
    command
}
