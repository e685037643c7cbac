//! `sluice serve` (the multi-tenant API, crates/server), `sluice worker`
//! (runs the queued and scheduled syncs of its tenants) and `sluice apply`
//! (upload the project in a folder to such a server).

use anyhow::{bail, Context, Result};
use clap::Args;
use sluice_runtime::{Runtime, RuntimeOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The PostgreSQL state every tenant's runs, projects and tokens live
    /// in: `postgres://user:password@host:port/db`.
    #[arg(long, env = "SLUICE_STATE", hide_env_values = true, value_name = "URL")]
    pub state: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: String,
    /// A file holding the operator token (the one that administers
    /// tenants); otherwise SLUICE_OPERATOR_TOKEN.
    #[arg(long, value_name = "FILE")]
    pub operator_token_file: Option<PathBuf>,
    /// Where tenants' projects are written out to run.
    #[arg(long, default_value = "sluice-server", value_name = "DIR")]
    pub work_dir: PathBuf,
    /// The PostgreSQL role tenant work acts as (row-level security applies
    /// to it): created if missing; the login role must be able to SET ROLE
    /// to it.
    #[arg(long, default_value = "sluice_app", value_name = "ROLE")]
    pub app_role: String,
    /// The keys that seal tenants' secrets at rest: one `ID:BASE64` line
    /// per key (`echo "k1:$(openssl rand -base64 32)"`), the current key
    /// first, older ones after it until `POST /api/v1/secrets-rewrap` has
    /// moved every secret to the current one. Otherwise the file named by
    /// SLUICE_SECRETS_KEY_FILE; without either, tenants cannot store secrets.
    #[arg(long, env = "SLUICE_SECRETS_KEY_FILE", value_name = "FILE")]
    pub secrets_key_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The PostgreSQL state of the `sluice serve` whose jobs to run.
    #[arg(long, env = "SLUICE_STATE", hide_env_values = true, value_name = "URL")]
    pub state: String,
    /// Where tenants' projects are written out to run.
    #[arg(long, default_value = "sluice-worker", value_name = "DIR")]
    pub work_dir: PathBuf,
    /// The PostgreSQL role runs act as (row-level security applies to it).
    #[arg(long, default_value = "sluice_app", value_name = "ROLE")]
    pub app_role: String,
    /// Jobs this worker runs at once.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub concurrency: usize,
    /// How often this worker writes its heartbeat.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub heartbeat: Duration,
    /// A worker whose heartbeat is this old is presumed dead; its jobs go
    /// back to the queue and another worker resumes their syncs.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub stale_after: Duration,
    /// How often to enqueue the syncs whose `schedule:` is due (every
    /// worker may: each tick is enqueued once).
    #[arg(long, default_value = "15s", value_parser = parse_duration, value_name = "DURATION")]
    pub schedule_every: Duration,
    /// Do not enqueue scheduled syncs (only run jobs).
    #[arg(long)]
    pub no_schedule: bool,
    /// The servers' secrets key file (`sluice serve --secrets-key-file`):
    /// runs of projects that use `${NAME}` open the tenant's secrets with it.
    #[arg(long, env = "SLUICE_SECRETS_KEY_FILE", value_name = "FILE")]
    pub secrets_key_file: Option<PathBuf>,
    /// The Redis holding the rate budgets every worker shares
    /// (`redis://host:port`): runs writing with the same credentials, in
    /// any worker, draw from one budget. Without it each run keeps its
    /// destination's limit on its own; if Redis stops answering the runs
    /// fall back to that, with a warning.
    #[arg(
        long,
        env = "SLUICE_RATE_BUDGETS",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub rate_budgets: Option<String>,
    /// Serve this worker's Prometheus metrics at http://ADDR/metrics:
    /// destination request latency and throttles per destination plugin,
    /// live plugin instances, runs under way and ended. The run, row and
    /// queue totals of every worker are on `sluice serve`'s /metrics.
    #[arg(long, value_name = "ADDR", env = "SLUICE_WORKER_METRICS")]
    pub metrics_listen: Option<String>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    match sluice_runtime::limits::parse_duration(text)? {
        d if d.is_zero() => Err("must be more than zero".into()),
        d => Ok(d),
    }
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The server's base URL, e.g. http://127.0.0.1:8080.
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// A file holding one of the tenant's tokens (`slk_...`).
    #[arg(long, value_name = "FILE")]
    pub token_file: PathBuf,
    #[arg(long)]
    pub json: bool,
}

/// The operator token: the file's first line, else the environment.
fn operator_token(args: &ServeArgs) -> Result<String> {
    if let Some(file) = &args.operator_token_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading --operator-token-file {}", file.display()))?;
        return Ok(text.lines().next().unwrap_or_default().trim().to_owned());
    }
    match std::env::var("SLUICE_OPERATOR_TOKEN") {
        Ok(t) => Ok(t.trim().to_owned()),
        Err(_) => {
            bail!("no operator token: set SLUICE_OPERATOR_TOKEN or pass --operator-token-file")
        }
    }
}

/// The secrets keyring from `--secrets-key-file`, if one is given.
fn keyring(file: Option<&PathBuf>) -> Result<Option<sluice_server::secrets::Keyring>> {
    let Some(file) = file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading --secrets-key-file {}", file.display()))?;
    sluice_server::secrets::Keyring::parse(&text)
        .map(Some)
        .map_err(|why| anyhow::anyhow!("--secrets-key-file {}: {why}", file.display()))
}

pub async fn serve(args: ServeArgs) -> Result<()> {
    let operator_token = operator_token(&args)?;
    let keyring = keyring(args.secrets_key_file.as_ref())?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let config = sluice_server::ServerConfig {
        state_url: args.state,
        operator_token,
        work_dir: args.work_dir,
        app_role: args.app_role,
        keyring,
    };
    let server = sluice_server::start(config, listener).await?;
    // Through the log, so `--log-format json` keeps stderr all JSON.
    tracing::info!("sluice serve: listening on http://{}", server.addr);
    tokio::select! {
        result = server.wait() => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

pub async fn worker(args: WorkerArgs) -> Result<()> {
    let config = sluice_server::worker::WorkerConfig {
        state_url: args.state,
        work_dir: args.work_dir,
        app_role: args.app_role,
        // Many tenants' instances on one host: from the pooling allocator.
        runtime: Runtime::new(RuntimeOptions {
            pooling: Some(sluice_runtime::Pooling::default()),
            ..Default::default()
        })?,
        keyring: keyring(args.secrets_key_file.as_ref())?,
        concurrency: args.concurrency,
        recovery: sluice_server::worker::Recovery {
            heartbeat: args.heartbeat,
            stale_after: args.stale_after,
        },
        schedule_every: (!args.no_schedule).then_some(args.schedule_every),
        rate_budgets: args.rate_budgets,
        metrics_listen: args.metrics_listen,
    };
    let worker = sluice_server::worker::start(config).await?;
    tracing::info!("sluice worker: taking run jobs");
    // Ctrl-C or SIGTERM: no new jobs; the runs under way get a grace
    // period, after which their jobs go back to the queue (a run still
    // going then ends before the process does, so whoever takes its job
    // finds only what is left to send).
    worker.run_until(stop_requested()?).await
}

#[cfg(unix)]
fn stop_requested() -> Result<impl std::future::Future<Output = ()>> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    })
}

#[cfg(not(unix))]
fn stop_requested() -> Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// Directories `apply` never uploads: Sluice's state, version control,
/// build output.
const SKIPPED_DIRS: [&str; 4] = [".sluice", ".git", "target", "node_modules"];
/// The most bytes `apply` uploads.
const MAX_UPLOAD: u64 = 16 * 1024 * 1024;

/// Every text file of the project folder by relative path (`/`-separated).
/// Files that are not UTF-8 cannot travel in the JSON upload: named on
/// stderr and left out.
fn project_files(dir: &Path) -> Result<BTreeMap<String, String>> {
    let mut files = BTreeMap::new();
    let mut total = 0u64;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in
            std::fs::read_dir(&folder).with_context(|| format!("reading {}", folder.display()))?
        {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            let name = entry.file_name();
            if kind.is_dir() {
                if !SKIPPED_DIRS.iter().any(|s| name == *s) {
                    pending.push(path);
                }
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            total += entry.metadata()?.len();
            if total > MAX_UPLOAD {
                bail!("the project folder holds more than {MAX_UPLOAD} bytes of files");
            }
            let relative = path
                .strip_prefix(dir)
                .expect("walked from dir")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    files.insert(relative, text);
                }
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    eprintln!("note: {relative} is not UTF-8 text; not uploaded");
                }
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            }
        }
    }
    Ok(files)
}

pub async fn apply(dir: &Path, args: ApplyArgs) -> Result<()> {
    let token = std::fs::read_to_string(&args.token_file)
        .with_context(|| format!("reading --token-file {}", args.token_file.display()))?;
    let token = token.lines().next().unwrap_or_default().trim().to_owned();
    let files = project_files(dir)?;
    if !files.contains_key(sluice_config::PROJECT_FILE) {
        bail!("{} has no {}", dir.display(), sluice_config::PROJECT_FILE);
    }
    let url = format!("{}/api/v1/project", args.server.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .put(&url)
        .bearer_auth(token)
        .json(&serde_json::json!({ "files": files }))
        .send()
        .await
        .with_context(|| format!("sending the project to {url}"))?;
    let status = response.status();
    let body: serde_json::Value = response
        .json()
        .await
        .with_context(|| format!("reading the answer of {url} ({status})"))?;
    if args.json {
        println!("{body}");
    }
    if status.is_success() {
        if !args.json {
            let syncs: Vec<&str> = body["syncs"]
                .as_array()
                .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
                .unwrap_or_default();
            println!(
                "applied revision {} ({} sync(s): {})",
                body["revision"],
                syncs.len(),
                syncs.join(", ")
            );
        }
        return Ok(());
    }
    if !args.json {
        for p in body["error"]["problems"].as_array().into_iter().flatten() {
            eprintln!(
                "{}:{}:{}: {}",
                p["file"].as_str().unwrap_or_default(),
                p["line"],
                p["column"],
                p["message"].as_str().unwrap_or_default()
            );
        }
    }
    bail!(
        "the server refused the project ({status}): {}",
        body["error"]["message"].as_str().unwrap_or("no message")
    )
}
