//! `sluice worker`: takes run jobs from the queue ([`crate::queue`]) and
//! runs each sync with the engine `sluice run` uses, on the tenant's
//! project and PostgreSQL state, acting as the application role (row-level
//! security applies to the run's store as to the API).
//!
//! Any number of workers, on any hosts, share one state database. Each
//! writes a heartbeat; a worker that stops writing it (SIGKILL, a lost
//! host) is presumed dead after [`Recovery::stale_after`], and any live
//! worker's sweep hands its jobs back to the queue. The rerun takes over
//! the sync: the dead run's lease (a PostgreSQL advisory lock held by its
//! own connection) went with its process, its `running` row is marked
//! interrupted, and the engine sends only what the dead run had not
//! committed.
//!
//! A restart of the database (or a failover) stops graphile-worker's loop
//! in every worker; each builds its queue's worker again ([`supervise`])
//! rather than exit.

use crate::error::ApiError;
use crate::queue::{self, RunJob};
use crate::worker_metrics::WorkerMetrics;
use crate::{db, project};
use anyhow::Context;
use futures::FutureExt;
use graphile_worker::{WorkerOptions, WorkerRecoveryConfig};
use sluice_engine::budget::SharedBudgets;
use sluice_engine::run::{instances_needed, RunOptions, SyncEngine};
use sluice_runtime::sandbox::policy::NetPolicy;
use sluice_state::PostgresStore;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::Instrument;

/// When a silent worker is presumed dead.
#[derive(Debug, Clone, Copy)]
pub struct Recovery {
    /// How often a worker writes its heartbeat.
    pub heartbeat: Duration,
    /// A worker whose heartbeat is this old is presumed dead and its jobs
    /// go back to the queue. Several heartbeats long, so a slow database
    /// does not make a live worker look dead.
    pub stale_after: Duration,
}

impl Default for Recovery {
    fn default() -> Self {
        Recovery {
            heartbeat: Duration::from_secs(10),
            stale_after: Duration::from_secs(60),
        }
    }
}

/// What `sluice worker` is started with.
pub struct WorkerConfig {
    /// The PostgreSQL state, `postgres://...` (the server's).
    pub state_url: String,
    /// Where tenants' projects are written out to run.
    pub work_dir: PathBuf,
    /// The role runs act as (see [`crate::ServerConfig::app_role`]).
    pub app_role: String,
    /// Runs the plugins.
    pub runtime: sluice_runtime::Runtime,
    /// Opens tenants' secrets for `${NAME}` (the servers' key file).
    pub keyring: Option<crate::secrets::Keyring>,
    /// Jobs run at once by this worker.
    pub concurrency: usize,
    pub recovery: Recovery,
    /// How often this worker enqueues the syncs whose schedule is due
    /// (crate::schedule); `None`: never (another process does).
    pub schedule_every: Option<Duration>,
    /// The Redis holding the rate budgets shared by every worker
    /// (`redis://host:port`, [`crate::budgets`]); `None`: each run keeps
    /// its destination's limits on its own.
    pub rate_budgets: Option<String>,
    /// Where to serve this worker's `GET /metrics`
    /// ([`crate::worker_metrics`]); `None`: not served.
    pub metrics_listen: Option<String>,
}

/// What a job's run needs; shared by the jobs of one worker.
pub struct Executor {
    pool: deadpool_postgres::Pool,
    state_url: String,
    app_role: String,
    work_dir: PathBuf,
    runtime: sluice_runtime::Runtime,
    keyring: Option<crate::secrets::Keyring>,
    budgets: Option<Arc<dyn SharedBudgets>>,
    metrics: Arc<WorkerMetrics>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("app_role", &self.app_role)
            .field("work_dir", &self.work_dir)
            .finish_non_exhaustive()
    }
}

/// What a job runs: the tenant's project and its ceilings.
struct TenantRun {
    project: sluice_config::Project,
    resources: crate::resources::ResourceCeiling,
    /// What the host's own requests for the run (its notifications) may
    /// reach: the tenant's grant ceiling, by resolved address.
    reach: Arc<NetPolicy>,
}

/// How a run ended, as far as its sequence cares.
struct Ended {
    succeeded: bool,
    rejected: u64,
}

/// Why a job went back to the queue.
const NO_RUN_SLOT: &str = "no free run slot (concurrent-run ceiling)";
const NO_INSTANCES: &str = "the run's plugin instances are not free (instance ceiling)";

/// Whether an API error means the job has nothing to run (the tenant, its
/// project or the sync is gone, or the project no longer validates):
/// retrying cannot help.
fn nothing_to_run(e: &ApiError) -> bool {
    e.status.is_client_error()
}

impl Executor {
    /// Runs `job`'s sync to its end, then enqueues the syncs that follow it
    /// if it succeeded. An error (the sync locked by another run, the
    /// state unreachable) makes the queue retry the job later; a run that
    /// ended, whatever its status, is recorded in the state and the job is
    /// done.
    pub async fn execute(self: Arc<Self>, job: RunJob) -> Result<(), String> {
        let Some(TenantRun {
            mut project,
            resources,
            reach,
        }) = self.project_of(&job).await?
        else {
            return Ok(());
        };
        // The tenant's ceilings: a run deadline for syncs without one, and
        // limits lowered to the ceilings for every instance.
        resources.clamp_runs(&mut project);
        let runtime = self.runtime.for_tenant(
            &job.tenant,
            resources.limits_over(&self.runtime.options().limits),
        );
        // A tenant at its concurrent-run ceiling waits for a slot, then
        // goes back to the queue: it queues, it does not fail.
        let slot = match resources.concurrent_runs {
            Some(limit) => {
                match crate::resources::acquire_run_slot(
                    &self.pool,
                    &job.tenant,
                    limit,
                    crate::resources::SLOT_WAIT,
                )
                .await?
                {
                    Some(slot) => Some(slot),
                    None => {
                        return crate::resources::requeue_later(&self.pool, job, NO_RUN_SLOT).await
                    }
                }
            }
            None => None,
        };
        let followers: Vec<(String, Option<u64>)> = project
            .syncs
            .values()
            .filter(|s| s.after.as_deref() == Some(job.sync.as_str()))
            .map(|s| (s.name.clone(), s.after_max_rejected))
            .collect();
        let me = self.clone();
        let ran = job.clone();
        // Every log line of the run carries its tenant, sync and (once it
        // has one) run id: the JSON logs' `span` (`--log-format json`).
        let span = tracing::info_span!(
            "run",
            tenant = %job.tenant,
            sync = %job.sync,
            trigger = %job.trigger,
            run = tracing::field::Empty
        );
        // The engine's run holds plugin stores that are not `Sync`, so its
        // future is not `Send`: it runs on a thread of its own with a
        // runtime of its own.
        self.metrics.runs_active.inc();
        let succeeded = tokio::task::spawn_blocking(move || {
            // The store's client blocks: opened before any runtime runs here.
            let store = me.store_of(&ran.tenant)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("starting a runtime for the run: {e}"))?;
            rt.block_on(async {
                let Some(runtime) = me.reserve_instances(&ran, &project, runtime).await else {
                    return Ok(None);
                };
                let run = me.run(&ran, &project, &runtime, store, reach);
                run.instrument(span).await.map(Some)
            })
        })
        .await
        .map_err(|e| format!("the run's thread ended abnormally: {e}"));
        self.metrics.runs_active.dec();
        if let Some(slot) = slot {
            slot.release().await;
        }
        match succeeded?? {
            None => crate::resources::requeue_later(&self.pool, job, NO_INSTANCES).await?,
            Some(Ended {
                succeeded: true,
                rejected,
            }) => self.enqueue_followers(&job, followers, rejected).await?,
            Some(_) => {}
        }
        queue::wake_if_waiting(&self.pool).await;
        Ok(())
    }

    /// The run's plugin instances, reserved from the tenant's instance
    /// ceiling in one piece (see [`sluice_runtime::Runtime::reserve_instances`]):
    /// the runtime view to run with, or `None` when they did not free up
    /// within [`crate::resources::SLOT_WAIT`] (the job then goes back to the
    /// queue: a tenant at its ceiling queues, it does not fail). A sync that
    /// needs more than the whole ceiling, or whose destination does not
    /// load, runs unreserved: the run fails and records why, naming the
    /// limit or the plugin.
    async fn reserve_instances(
        &self,
        job: &RunJob,
        project: &sluice_config::Project,
        runtime: sluice_runtime::Runtime,
    ) -> Option<sluice_runtime::Runtime> {
        use sluice_runtime::InstanceReservation as Reserve;
        let wait = crate::resources::SLOT_WAIT;
        // One instance first, to read the destination's spec (its writers).
        let counting = match runtime.reserve_instances(1, wait).await {
            Reserve::Reserved(view) => view,
            Reserve::Busy => return None,
            Reserve::AboveCeiling { .. } => return Some(runtime),
        };
        let needed = instances_needed(&counting, project, &job.sync).await;
        drop(counting);
        let Ok(needed) = needed else {
            return Some(runtime);
        };
        match runtime.reserve_instances(needed, wait).await {
            Reserve::Reserved(view) => Some(view),
            Reserve::Busy => None,
            Reserve::AboveCeiling { needed, limit } => {
                tracing::warn!(tenant = %job.tenant, sync = %job.sync, needed, limit, "the sync needs more plugin instances than the tenant's ceiling allows; the run will fail");
                Some(runtime)
            }
        }
    }

    /// Enqueues the syncs that follow `job`'s (`after:`) once its run
    /// succeeded, each unless the run rejected more rows than its
    /// `after_max_rejected` (that stops the sequence there). A failure
    /// makes the queue retry the job, which reruns the sync (nothing to
    /// send) and enqueues them then.
    async fn enqueue_followers(
        &self,
        job: &RunJob,
        followers: Vec<(String, Option<u64>)>,
        rejected: u64,
    ) -> Result<(), String> {
        for (sync, max_rejected) in followers {
            if let Some(max) = max_rejected.filter(|max| rejected > *max) {
                tracing::warn!(tenant = %job.tenant, sync = %sync, after = %job.sync, rejected, after_max_rejected = max, "sequence stopped: the run it follows rejected more rows than its after_max_rejected");
                continue;
            }
            let next = RunJob {
                tenant: job.tenant.clone(),
                sync: sync.clone(),
                full_resync: false,
                trigger: format!("after {}", job.sync),
            };
            queue::enqueue(&self.pool, next, None)
                .await
                .map_err(|e| format!("enqueueing `{sync}` after `{}`: {e}", job.sync))?;
            tracing::info!(tenant = %job.tenant, sync = %sync, after = %job.sync, "sequence: run enqueued");
        }
        Ok(())
    }

    /// The tenant's current project, if it still has the job's sync, with
    /// its uploaded components written out, and the tenant's ceilings.
    async fn project_of(&self, job: &RunJob) -> Result<Option<TenantRun>, String> {
        let loaded = async {
            let (revision, files) =
                project::stored(&self.pool, &self.app_role, &job.tenant).await?;
            let policy = project::TenantPolicy::read(
                &self.pool,
                &self.app_role,
                self.keyring.as_ref(),
                &job.tenant,
            )
            .await?;
            let resources = policy.resources.clone();
            let reach = Arc::new(policy.ceiling.policy());
            let project =
                project::load(&self.work_dir, &job.tenant, revision, &files, policy).await?;
            crate::components::materialize(&self.pool, &self.app_role, &job.tenant, &project)
                .await?;
            Ok::<_, ApiError>(TenantRun {
                project,
                resources,
                reach,
            })
        };
        match loaded.await {
            Ok(run) if run.project.syncs.contains_key(&job.sync) => Ok(Some(run)),
            Ok(_) => {
                tracing::warn!(tenant = %job.tenant, sync = %job.sync, "job dropped: the sync is no longer in the tenant's project");
                Ok(None)
            }
            Err(e) if nothing_to_run(&e) => {
                tracing::warn!(tenant = %job.tenant, sync = %job.sync, error = %e.detail.message, "job dropped: nothing to run");
                Ok(None)
            }
            Err(e) => Err(e.detail.message),
        }
    }

    /// `tenant`'s state, acting as the application role.
    fn store_of(&self, tenant: &str) -> Result<PostgresStore, String> {
        PostgresStore::connect_tenant_as(&self.state_url, tenant, Some(&self.app_role))
            .map_err(|e| format!("opening the state of tenant `{tenant}`: {e}"))
    }

    /// Runs the sync; how it ended.
    async fn run(
        &self,
        job: &RunJob,
        project: &sluice_config::Project,
        runtime: &sluice_runtime::Runtime,
        store: PostgresStore,
        reach: Arc<NetPolicy>,
    ) -> Result<Ended, String> {
        let store = Mutex::new(store);
        let engine = SyncEngine {
            project,
            runtime,
            store: &store,
        };
        let options = RunOptions {
            full_resync: job.full_resync,
            retry_rejected: job.trigger == crate::console_api::RETRY_TRIGGER,
            budgets: self.budgets.clone(),
            observer: Some(self.metrics.clone()),
            reach: Some(reach),
            ..Default::default()
        };
        match engine.run(&job.sync, &options).await {
            Ok(report) => {
                if let Some(id) = report.run_id {
                    tracing::Span::current().record("run", id);
                }
                tracing::info!(tenant = %job.tenant, sync = %job.sync, trigger = %job.trigger, run = report.run_id, status = report.status.as_str(), "run ended");
                self.metrics
                    .runs
                    .with_label_values(&[report.status.as_str()])
                    .inc();
                Ok(Ended {
                    succeeded: report.status == sluice_state::RunStatus::Succeeded,
                    rejected: report.counts.rejected,
                })
            }
            Err(e) => {
                let text = format!("{e:#}");
                tracing::warn!(tenant = %job.tenant, sync = %job.sync, error = %text, "run did not end on the record (it could not start, or lost its state database); the job will be retried");
                Err(text)
            }
        }
    }
}

/// A worker taking jobs, until [`RunningWorker::shutdown`] or the process
/// ends.
pub struct RunningWorker {
    /// Where `GET /metrics` is served, if it is.
    pub metrics_addr: Option<std::net::SocketAddr>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    scheduler: Option<tokio::task::JoinHandle<()>>,
}

/// How long a stopping worker lets its runs go on before handing their
/// jobs back to the queue.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

impl RunningWorker {
    /// Stops taking jobs, gives the runs under way [`SHUTDOWN_GRACE`] to
    /// end (the jobs of those that do not go back to the queue) and
    /// returns.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        if let Some(s) = self.scheduler {
            s.abort();
        }
        self.task.await?
    }

    /// Works until `signal` completes, then shuts down as
    /// [`RunningWorker::shutdown`] does (or until the queue's loop fails).
    pub async fn run_until(
        mut self,
        signal: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::select! {
            ended = &mut self.task => {
                if let Some(s) = self.scheduler.take() {
                    s.abort();
                }
                ended?
            }
            () = signal => self.shutdown().await,
        }
    }
}

/// Migrates the state and the queue, prepares the application role, and
/// starts taking jobs.
pub async fn start(config: WorkerConfig) -> anyhow::Result<RunningWorker> {
    if config.concurrency == 0 {
        anyhow::bail!("--concurrency must be at least 1");
    }
    if config.recovery.stale_after < config.recovery.heartbeat * 2 {
        anyhow::bail!(
            "--stale-after ({:?}) must be at least two heartbeats ({:?}): a live worker \
             would be presumed dead between two of its heartbeats",
            config.recovery.stale_after,
            config.recovery.heartbeat
        );
    }
    let url = config.state_url.clone();
    tokio::task::spawn_blocking(move || PostgresStore::connect(&url))
        .await?
        .context("opening the state database")?;
    let pool = db::pool(&config.state_url)?;
    db::prepare_app_role(&pool, &config.app_role).await?;
    queue::migrate(&pool).await?;
    std::fs::create_dir_all(&config.work_dir)
        .with_context(|| format!("creating the work directory {}", config.work_dir.display()))?;
    let budgets = shared_budgets(config.rate_budgets.as_deref()).await?;
    let metrics = Arc::new(WorkerMetrics::new());
    let metrics_addr = match &config.metrics_listen {
        Some(addr) => Some(serve_metrics(addr, metrics.clone(), config.runtime.clone()).await?),
        None => None,
    };
    let executor = Arc::new(Executor {
        pool: pool.clone(),
        state_url: config.state_url.clone(),
        app_role: config.app_role.clone(),
        work_dir: config.work_dir.clone(),
        runtime: config.runtime,
        keyring: config.keyring,
        budgets,
        metrics,
    });
    let mut pg_config: tokio_postgres::Config = config
        .state_url
        .trim()
        .parse()
        .context("--state is not a valid PostgreSQL URL")?;
    if pg_config.get_connect_timeout().is_none() {
        // A reconnect must not hang on a host that does not answer.
        pg_config.connect_timeout(QUEUE_CONNECT_TIMEOUT);
    }
    let queue = Queue {
        pg_config,
        concurrency: config.concurrency,
        recovery: WorkerRecoveryConfig::default()
            .enabled(true)
            .heartbeat_interval(config.recovery.heartbeat)
            .sweep_interval(config.recovery.heartbeat)
            .sweep_threshold(config.recovery.stale_after)
            .recovery_delay(Duration::ZERO),
        executor,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // Every incarnation of the queue's worker stops on the same signal.
    let stopped: Stopped = stopped.map(|_| ()).boxed().shared();
    let worker = queue
        .connect(&stopped)
        .await
        .map_err(|e| anyhow::anyhow!("starting the job queue's worker: {e}"))?;
    let task = tokio::spawn(supervise(queue, worker, stopped));
    let scheduler = config
        .schedule_every
        .map(|every| tokio::spawn(crate::schedule::run(pool, every)));
    Ok(RunningWorker {
        metrics_addr,
        stop,
        task,
        scheduler,
    })
}

/// Binds `addr` and serves the worker's metrics there; the address bound.
async fn serve_metrics(
    addr: &str,
    metrics: Arc<WorkerMetrics>,
    runtime: sluice_runtime::Runtime,
) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--metrics-listen {addr}: cannot listen there"))?;
    let bound = listener.local_addr()?;
    crate::worker_metrics::serve(listener, metrics, runtime);
    tracing::info!("sluice worker: metrics on http://{bound}/metrics");
    Ok(bound)
}

/// The stop signal, shared by every incarnation of the queue's worker.
type Stopped = futures::future::Shared<futures::future::BoxFuture<'static, ()>>;

/// How long one connection attempt of the job queue may take.
const QUEUE_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a worker keeps trying to get its job queue going again after
/// it stopped (PostgreSQL restarted or failed over, the network went)
/// before it gives up and exits, for whatever supervises the process.
const RECONNECT_PATIENCE: Duration = Duration::from_secs(300);
/// The wait before the first new try, doubled after each failed one up to
/// [`RECONNECT_MAX_WAIT`].
const RECONNECT_FIRST_WAIT: Duration = Duration::from_millis(500);
const RECONNECT_MAX_WAIT: Duration = Duration::from_secs(15);
/// A queue that worked this long before it stopped was healthy: its
/// failure starts a new count of [`RECONNECT_PATIENCE`].
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// What the job queue's worker is built from, again after each failure.
struct Queue {
    pg_config: tokio_postgres::Config,
    concurrency: usize,
    recovery: WorkerRecoveryConfig,
    executor: Arc<Executor>,
}

impl Queue {
    /// A graphile-worker worker on a pool of its own (with its LISTEN
    /// connection, so a job is taken as soon as it is added), sized for
    /// the jobs and the heartbeat, stopping on `stopped`. Migrates the
    /// queue's schema and registers the worker: the database must answer.
    async fn connect(&self, stopped: &Stopped) -> anyhow::Result<graphile_worker::Worker> {
        let db = graphile_worker::tokio_postgres::TokioPostgresDatabase::from_config(
            self.pg_config.clone(),
            self.concurrency + 4,
        )
        .map_err(|e| anyhow::anyhow!("connecting the job queue: {e}"))?;
        WorkerOptions::default()
            .database(db)
            .schema(queue::SCHEMA)
            .concurrency(self.concurrency)
            .define_job::<RunJob>()
            .add_extension(self.executor.clone())
            .worker_recovery(self.recovery.clone())
            .listen_os_shutdown_signals(false)
            .shutdown_grace_period(SHUTDOWN_GRACE)
            .shutdown_interrupted_job_retry_delay(Duration::ZERO)
            .shutdown_signal(stopped.clone())
            .init()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// Runs the queue's worker until the stop signal. graphile-worker's loop
/// ends when a query of its own fails (fetching a job, recording one done):
/// after a PostgreSQL restart that is every worker. So the worker is built
/// again, with a growing wait between tries, and the process rides out
/// the restart. Its jobs are not lost: one whose run the restart cut off
/// is retried (the run's store cannot go on: its connections and lease
/// went with the server) or, if its failure could not be recorded, handed
/// back by the heartbeat sweep once the old incarnation's heartbeat is
/// stale. A database that stays away for [`RECONNECT_PATIENCE`] ends the
/// process with the last error.
async fn supervise(
    queue: Queue,
    mut worker: graphile_worker::Worker,
    stopped: Stopped,
) -> anyhow::Result<()> {
    let mut down_since: Option<tokio::time::Instant> = None;
    loop {
        let started = tokio::time::Instant::now();
        let ended = worker.run().await;
        if stopped.peek().is_some() {
            return ended.map_err(|e| anyhow::anyhow!("the job queue's worker stopped: {e}"));
        }
        let mut why = match ended {
            Ok(()) => "it ended".to_owned(),
            Err(e) => e.to_string(),
        };
        if started.elapsed() >= HEALTHY_AFTER {
            down_since = None;
        }
        let since = *down_since.get_or_insert_with(tokio::time::Instant::now);
        tracing::warn!(error = %why, "the job queue's worker stopped; reconnecting");
        let mut wait = RECONNECT_FIRST_WAIT;
        worker = loop {
            if since.elapsed() > RECONNECT_PATIENCE {
                anyhow::bail!(
                    "the job queue's worker stopped and did not reconnect within {RECONNECT_PATIENCE:?}: {why}"
                );
            }
            tokio::select! {
                () = stopped.clone() => return Ok(()),
                () = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(RECONNECT_MAX_WAIT);
            match queue.connect(&stopped).await {
                Ok(worker) => break worker,
                Err(e) => {
                    why = e.to_string();
                    tracing::debug!(error = %why, "the job queue is not back yet");
                }
            }
        };
        tracing::info!("the job queue's worker reconnected");
    }
}

/// The shared rate budgets at `url`, if one is given. A Redis that does not
/// answer at start is no reason not to work: the runs keep their local
/// limits until it does (logged).
async fn shared_budgets(url: Option<&str>) -> anyhow::Result<Option<Arc<dyn SharedBudgets>>> {
    let Some(url) = url else {
        return Ok(None);
    };
    let budgets = crate::budgets::RedisBudgets::open(url)?;
    if budgets.check().await.is_ok() {
        tracing::info!(redis = ?budgets, "shared rate budgets in force");
    }
    Ok(Some(Arc::new(budgets)))
}
