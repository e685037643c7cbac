//! `sluice demo --serve POSTGRES_URL`: the demo as a service, to see the
//! web console on a real run in one command. In this process it starts the
//! Salesforce emulator, `sluice serve` and a worker over the PostgreSQL
//! database at the URL (created if missing), then, through the server's own
//! API as an operator and a tenant would: creates the tenant `demo`, lets
//! its grant ceiling reach the emulator, makes it a token, uploads the demo
//! project (whose customers include two with invalid emails, which
//! Salesforce rejects), runs the sync through the queue and waits for the
//! run. It then prints the run page's address; the token is written to a
//! file (mode 0600) rather than to the terminal. It serves until Ctrl-C.

use super::demo::{self, DemoArgs, SYNC};
use anyhow::{anyhow, bail, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sluice_runtime::{Runtime, RuntimeOptions};
use std::path::Path;
use std::time::{Duration, Instant};

/// The tenant the demo creates (or reuses, on a database it ran on before).
const TENANT: &str = "demo";
/// The customers whose emails are invalid in the served demo.
pub const INVALID_EMAILS: [usize; 2] = [13, 101];
/// How long the demo waits for its run.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

pub async fn run(args: &DemoArgs, state_url: &str) -> Result<()> {
    let dir = &args.dir;
    ensure_database(state_url).await?;
    let emulator = demo::start_emulator(args.port).await?;
    println!("1. Salesforce emulator running at {}", emulator.base_url());
    demo::write_demo_project(args, &emulator.base_url(), &INVALID_EMAILS)?;
    println!(
        "2. Wrote {0}/sluice.yaml and {0}/data/customers.csv; customers {INVALID_EMAILS:?} have invalid emails",
        dir.display()
    );

    let operator = sluice_server::auth::generate().token;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let server = sluice_server::start(
        sluice_server::ServerConfig {
            state_url: state_url.to_owned(),
            operator_token: operator.clone(),
            work_dir: dir.join(".sluice/serve/server"),
            app_role: "sluice_app".into(),
            keyring: None,
        },
        listener,
    )
    .await
    .context("starting the server")?;
    let worker = sluice_server::worker::start(sluice_server::worker::WorkerConfig {
        state_url: state_url.to_owned(),
        work_dir: dir.join(".sluice/serve/worker"),
        app_role: "sluice_app".into(),
        runtime: Runtime::new(RuntimeOptions::default())?,
        keyring: None,
        concurrency: 1,
        recovery: Default::default(),
        schedule_every: None,
        rate_budgets: None,
        metrics_listen: None,
    })
    .await
    .context("starting the worker")?;
    let base = format!("http://{}", server.addr);
    println!("3. `sluice serve` listening on {base}, with a worker, state in PostgreSQL");

    let api = Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        base: base.clone(),
    };
    let token = set_up_tenant(&api, &operator, &emulator.base_url()).await?;
    // Kept in the state folder, which is never part of a project upload.
    let token_file = dir.join(".sluice/demo.token");
    write_private(&token_file, &token)?;
    let mut files = serde_json::Map::new();
    for file in ["sluice.yaml", "data/customers.csv"] {
        let text = std::fs::read_to_string(dir.join(file))
            .with_context(|| format!("reading {}/{file}", dir.display()))?;
        files.insert(file.to_owned(), Value::String(text));
    }
    api.call(
        Method::PUT,
        "/api/v1/project",
        &token,
        Some(json!({ "files": files })),
    )
    .await
    .context("uploading the demo project")?;
    println!("4. Tenant `{TENANT}` made, its project uploaded; running {SYNC} through the queue");
    let run = run_and_wait(&api, &token).await?;
    let c = &run["counts"];
    println!(
        "5. Run {} {}: sent {}, ok {}, rejected {} (Salesforce refused the invalid emails)",
        run["id"], run["status"], c["sent"], c["ok"], c["rejected"]
    );
    println!();
    println!("Open the console at {base}/#/runs/{}", run["id"]);
    println!(
        "and sign in with the tenant's token, in {} (`cat` it, then paste).",
        token_file.display()
    );
    println!("Ctrl-C stops the server, the worker and the emulator.");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    worker.shutdown().await?;
    server.shutdown().await?;
    emulator.shutdown().await?;
    Ok(())
}

/// Creates the database of `url` on its server when it does not exist, so
/// the demo needs no `createdb` first.
async fn ensure_database(url: &str) -> Result<()> {
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| anyhow!("--serve: not a PostgreSQL URL ({e})"))?;
    let name = config
        .get_dbname()
        .ok_or_else(|| anyhow!("--serve: the URL names no database (add /sluice_demo)"))?
        .to_owned();
    if config.connect(tokio_postgres::NoTls).await.is_ok() {
        return Ok(());
    }
    let mut admin = config.clone();
    admin.dbname("postgres");
    let (client, connection) = admin
        .connect(tokio_postgres::NoTls)
        .await
        .with_context(|| {
            format!("--serve: connecting to PostgreSQL to create database `{name}`")
        })?;
    tokio::spawn(connection);
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    client
        .batch_execute(&format!("CREATE DATABASE {quoted}"))
        .await
        .with_context(|| format!("--serve: creating database `{name}`"))?;
    println!("0. Created database `{name}`");
    Ok(())
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    /// Calls the API; the JSON answer of a success, else an error with the
    /// API's own message.
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        Ok(self.answer(method, path, token, body).await?.1)
    }

    async fn answer(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value)> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let json: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() && status != StatusCode::CONFLICT {
            bail!(
                "{method} {path} answered {status}: {}",
                json["error"]["message"]
            );
        }
        Ok((status, json))
    }
}

/// The tenant (made, or kept from an earlier demo on this database), its
/// ceiling opened to the emulator, and a new token for it.
async fn set_up_tenant(api: &Api, operator: &str, emulator_url: &str) -> Result<String> {
    api.answer(
        Method::POST,
        "/api/v1/tenants",
        operator,
        Some(json!({ "name": TENANT })),
    )
    .await
    .context("creating the tenant")?;
    let emulator = sluice_runtime::sandbox::policy::Grants::pattern_for_url(emulator_url)
        .context("the emulator's URL")?;
    api.call(
        Method::PUT,
        &format!("/api/v1/tenants/{TENANT}/grant-ceiling"),
        operator,
        Some(json!({ "grant_ceiling": ["*://*:*", emulator] })),
    )
    .await
    .context("letting the tenant reach the emulator")?;
    let made = api
        .call(
            Method::POST,
            "/api/v1/tokens",
            operator,
            Some(json!({ "tenant": TENANT })),
        )
        .await
        .context("making the tenant's token")?;
    made["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("the server made no token: {made}"))
}

/// Triggers the demo sync and waits for its run to end; the run's JSON.
async fn run_and_wait(api: &Api, token: &str) -> Result<Value> {
    let runs_path = format!("/api/v1/runs?sync={SYNC}&limit=1");
    let before = api.call(Method::GET, &runs_path, token, None).await?;
    let after = before["runs"][0]["id"].as_i64().unwrap_or(0);
    api.call(
        Method::POST,
        &format!("/api/v1/syncs/{SYNC}/runs"),
        token,
        None,
    )
    .await
    .context("triggering the run")?;
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        let runs = api.call(Method::GET, &runs_path, token, None).await?;
        let run = &runs["runs"][0];
        if run["id"].as_i64().unwrap_or(0) > after && run["status"] != "running" {
            return Ok(run.clone());
        }
        if Instant::now() > deadline {
            bail!("the run did not end within {} s", RUN_TIMEOUT.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Writes `secret` to `path` readable by its owner only.
fn write_private(path: &Path, secret: &str) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(file, "{secret}").with_context(|| format!("writing {}", path.display()))
}
