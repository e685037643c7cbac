//! `sluice serve`: the multi-tenant REST API over the PostgreSQL state.
//!
//! An operator token administers tenants; each tenant's tokens see only
//! that tenant. A tenant applies a project (`PUT /api/v1/project`), lists
//! its syncs, triggers runs (executed in this process by the engine, on the
//! PostgreSQL state under that tenant) and reads runs and rejected rows.
//!
//! **Tenancy.** Every tenant table has row-level security (state migration
//! 3, crates/state/src/postgres.rs); every request of a tenant runs in a
//! transaction acting as the application role with `sluice.tenant` set
//! ([`db::tenant_tx`]), and a run's store acts as that role too
//! ([`sluice_state::PostgresStore::connect_tenant_as`]). The queries also
//! filter on the tenant, and whatever is not the caller's answers 404, like
//! what does not exist. Proved by tests/tests/server.rs.
//!
//! **Runs** are not executed here: a trigger enqueues a job on the run queue
//! ([`queue`], graphile-worker in the same database) and `sluice worker`
//! processes ([`worker`]), any number of them, take the jobs; workers also
//! enqueue the scheduled syncs' ticks ([`schedule`]).
//!
//! **Ceilings.** The operator sets each tenant's network grant ceiling
//! ([`ceiling`]); a project is checked against it when applied and again
//! before every run.
//!
//! **Secrets.** A tenant stores named secrets (`PUT /api/v1/secrets/{name}`),
//! sealed at rest by [`secrets`] (AES-256-GCM envelope) and never returned;
//! `${NAME}` in the tenant's project reads them, and only them, so they
//! travel as the config's secret strings that logs and errors scrub.
//!
//! **Components, resource ceilings, dbt triggers.** A tenant uploads its
//! own components ([`components`]), checked to be Sluice plugins before
//! anything compiles them and pinned by digest; the operator sets each
//! tenant's resource ceilings ([`resources`]); dbt runs trigger syncs
//! ([`dbt_routes`]).
//!
//! Not in this slice: connections as resources.

pub mod api;
pub mod auth;
pub mod budgets;
pub mod ceiling;
pub mod components;
pub mod console;
pub mod console_api;
pub mod db;
pub mod dbt_routes;
pub mod error;
pub mod ledger_routes;
pub mod metrics;
pub mod project;
pub mod project_routes;
pub mod queue;
pub mod resources;
pub mod schedule;
pub mod secret_routes;
pub mod secrets;
pub mod worker;
pub mod worker_metrics;

use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// What `sluice serve` is started with.
pub struct ServerConfig {
    /// The PostgreSQL state, `postgres://...`.
    pub state_url: String,
    /// The token that administers tenants.
    pub operator_token: String,
    /// Where tenants' projects are written out to run.
    pub work_dir: PathBuf,
    /// The role tenant work acts as: subject to row-level security (not a
    /// superuser, no BYPASSRLS); created if missing.
    pub app_role: String,
    /// The keys that seal tenants' secrets; without them the secrets
    /// routes answer 503 and `${NAME}` in a project resolves nothing.
    pub keyring: Option<secrets::Keyring>,
}

/// The shortest operator token accepted.
pub const MIN_OPERATOR_TOKEN: usize = 16;

/// What every request handler shares.
pub struct AppState {
    pub pool: deadpool_postgres::Pool,
    pub state_url: String,
    pub app_role: String,
    pub operator_digest: [u8; 32],
    pub work_dir: PathBuf,
    pub metrics: metrics::Metrics,
    pub keyring: Option<secrets::Keyring>,
}

pub type Shared = Arc<AppState>;

/// A server listening, until [`RunningServer::shutdown`] or the process
/// ends.
pub struct RunningServer {
    pub addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Stops accepting, lets requests under way finish, and returns.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await??;
        Ok(())
    }

    /// Serves until the listener fails.
    pub async fn wait(self) -> anyhow::Result<()> {
        let RunningServer { stop, task, .. } = self;
        let result = task.await?;
        drop(stop);
        Ok(result?)
    }
}

/// Migrates the state database, prepares the application role and serves
/// the API on `listener`.
pub async fn start(
    config: ServerConfig,
    listener: tokio::net::TcpListener,
) -> anyhow::Result<RunningServer> {
    if config.operator_token.trim().len() < MIN_OPERATOR_TOKEN {
        anyhow::bail!(
            "the operator token has fewer than {MIN_OPERATOR_TOKEN} characters; \
             use a long random one (e.g. `openssl rand -base64 32`)"
        );
    }
    let url = config.state_url.clone();
    // The state crate's migrations (its client blocks).
    tokio::task::spawn_blocking(move || sluice_state::PostgresStore::connect(&url))
        .await?
        .context("opening the state database")?;
    let pool = db::pool(&config.state_url)?;
    db::prepare_app_role(&pool, &config.app_role).await?;
    queue::migrate(&pool).await?;
    std::fs::create_dir_all(&config.work_dir)
        .with_context(|| format!("creating the work directory {}", config.work_dir.display()))?;
    let state = Arc::new(AppState {
        pool,
        state_url: config.state_url,
        app_role: config.app_role,
        operator_digest: auth::digest(config.operator_token.trim()),
        work_dir: config.work_dir,
        metrics: metrics::Metrics::new(),
        keyring: config.keyring,
    });
    let app = api::router(state);
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    tracing::info!(%addr, "sluice serve listening");
    Ok(RunningServer { addr, stop, task })
}
