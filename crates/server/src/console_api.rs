//! The API routes the web console ([`crate::console`]) needs beyond the
//! core API of [`crate::api`]: a sync overview (schedule, next run, rows in
//! the snapshot), plans, the console's actions (retry rejected rows, pause
//! and resume a schedule, unlock a stale run), live run progress as
//! server-sent events, a searchable page of a run's rejected rows and its
//! CSV, and the project's plugins. (A sync's whole rejected-row ledger is
//! [`crate::ledger_routes`].)
//!
//! Every route acts for the tenant of the caller's token ([`AsTenant`]) and
//! reads as that tenant ([`tenant_tx`], row-level security), so the console
//! can do nothing the token could not do through the API; another tenant's
//! sync or run answers 404 like an absent one.

use crate::api::{page_limit, read_runs, run_id, AsTenant, RunOut};
use crate::auth::Caller;
use crate::db::tenant_tx;
use crate::error::{ApiError, ErrorBody};
use crate::queue::{self, RunJob};
use crate::{project, AppState, Shared};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sluice_config::{Project, Schedule};
use sluice_state::{RowKey, RunId};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use utoipa::{IntoParams, OpenApi, ToSchema};

/// How often a progress stream reads the run's counts (they are committed
/// once per batch by the run, in whatever worker runs it).
const PROGRESS_POLL: Duration = Duration::from_millis(500);
/// How long one progress stream lasts at most; the console reconnects.
const PROGRESS_STREAM_LIMIT: Duration = Duration::from_secs(15 * 60);
/// How long a plan (or reading the plugins) may take before the request
/// answers 503; the source's read is bounded by the plugin's own deadlines
/// too.
const PLAN_TIMEOUT: Duration = Duration::from_secs(120);
/// How many runs the sync page charts.
const CHART_RUNS: i64 = 30;
/// The trigger of a job that re-sends only the rejected-row ledger; the
/// worker runs such a job with `retry_rejected`.
pub const RETRY_TRIGGER: &str = "retry rejected";

#[derive(OpenApi)]
#[openapi(
    paths(
        whoami,
        console_syncs,
        console_sync,
        plan_sync,
        retry_rejected,
        pause_schedule,
        resume_schedule,
        unlock_sync,
        run_progress,
        search_rejected,
        rejected_csv,
        plugins
    ),
    components(schemas(
        WhoAmI,
        SyncOverview,
        SyncOverviewList,
        SyncDetail,
        PlanIn,
        RetryEnqueued,
        PauseOut,
        UnlockOut,
        RejectedSearch,
        FoundRow,
        PluginInfo,
        PluginList
    ))
)]
pub struct ConsoleApiDoc;

/// The console's page and assets, and its API routes.
pub fn routes() -> Router<Shared> {
    Router::new()
        .merge(crate::console::routes())
        .route("/api/v1/console/whoami", get(whoami))
        .route("/api/v1/console/syncs", get(console_syncs))
        .route("/api/v1/console/syncs/{name}", get(console_sync))
        .route("/api/v1/console/plugins", get(plugins))
        .route("/api/v1/syncs/{name}/plan", post(plan_sync))
        .route("/api/v1/syncs/{name}/retry", post(retry_rejected))
        .route("/api/v1/syncs/{name}/pause", post(pause_schedule))
        .route("/api/v1/syncs/{name}/resume", post(resume_schedule))
        .route("/api/v1/syncs/{name}/unlock", post(unlock_sync))
        .route("/api/v1/syncs/{name}/progress", get(run_progress))
        .route("/api/v1/runs/{id}/rejected/search", get(search_rejected))
        .route("/api/v1/runs/{id}/rejected.csv", get(rejected_csv))
}

#[derive(Serialize, ToSchema)]
pub struct WhoAmI {
    /// `operator` or `tenant`.
    pub role: String,
    /// The tenant a tenant's token belongs to.
    pub tenant: Option<String>,
}

/// Who the token is: the operator, or which tenant (the console's sign-in).
#[utoipa::path(get, path = "/api/v1/console/whoami", responses(
    (status = 200, body = WhoAmI), (status = 401, body = ErrorBody)))]
async fn whoami(caller: Caller) -> Json<WhoAmI> {
    Json(match caller {
        Caller::Operator => WhoAmI {
            role: "operator".into(),
            tenant: None,
        },
        Caller::Tenant(t) => WhoAmI {
            role: "tenant".into(),
            tenant: Some(t),
        },
    })
}

// ----- shared reads -----

/// The tenant's current project; `None` when it has not applied one yet
/// (the console's empty state, not an error).
async fn project_if_any(state: &AppState, tenant: &str) -> Result<Option<Project>, ApiError> {
    match project::stored(&state.pool, &state.app_role, tenant).await {
        Err(e) if e.status == StatusCode::NOT_FOUND => Ok(None),
        Err(e) => Err(e),
        Ok(_) => current_project(state, tenant).await.map(Some),
    }
}

/// The tenant's current project, validated.
async fn current_project(state: &AppState, tenant: &str) -> Result<Project, ApiError> {
    let (revision, files) = project::stored(&state.pool, &state.app_role, tenant).await?;
    let policy =
        project::TenantPolicy::read(&state.pool, &state.app_role, state.keyring.as_ref(), tenant)
            .await?;
    project::load(&state.work_dir, tenant, revision, &files, policy).await
}

/// The tenant's project, refusing a sync it does not have (404).
pub(crate) async fn project_with_sync(
    state: &AppState,
    tenant: &str,
    sync: &str,
) -> Result<Project, ApiError> {
    let project = current_project(state, tenant).await?;
    if !project.syncs.contains_key(sync) {
        return Err(ApiError::not_found(format!("sync `{sync}`")));
    }
    Ok(project)
}

/// Per sync of the tenant: rows in the delivered snapshot, rows in the
/// rejected-row ledger, and whether its schedule is paused; with the
/// database's clock (Unix seconds), which schedules are computed on.
struct SyncFigures {
    snapshot: HashMap<String, i64>,
    ledger: HashMap<String, i64>,
    paused: HashMap<String, bool>,
    now: i64,
}

async fn sync_figures(state: &AppState, tenant: &str) -> Result<SyncFigures, ApiError> {
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, &state.app_role, tenant).await?;
    let count_by_sync = |rows: Vec<tokio_postgres::Row>| {
        rows.iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
            .collect::<HashMap<_, _>>()
    };
    let snapshot = count_by_sync(
        tx.query(
            "SELECT sync, COUNT(*) FROM sluice.delivered WHERE tenant = $1 GROUP BY sync",
            &[&tenant],
        )
        .await?,
    );
    let ledger = count_by_sync(
        tx.query(
            "SELECT sync, COUNT(*) FROM sluice.rejected WHERE tenant = $1 GROUP BY sync",
            &[&tenant],
        )
        .await?,
    );
    let paused = tx
        .query(
            "SELECT sync, paused FROM sluice.schedule_ticks WHERE tenant = $1",
            &[&tenant],
        )
        .await?
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, bool>(1)))
        .collect();
    let now: i64 = tx
        .query_one("SELECT floor(extract(epoch FROM now()))::bigint", &[])
        .await?
        .get(0);
    tx.commit().await?;
    Ok(SyncFigures {
        snapshot,
        ledger,
        paused,
        now,
    })
}

/// The first tick after `now` (Unix seconds), if one is within a year.
pub fn next_tick(schedule: &Schedule, now: i64) -> Option<i64> {
    match schedule {
        Schedule::Every(d) => {
            let step = d.as_secs().max(1) as i64;
            Some((now.div_euclid(step) + 1) * step)
        }
        Schedule::Cron { timer, .. } => {
            let minute = now.div_euclid(60) * 60;
            (1..=366 * 24 * 60)
                .map(|ahead| minute + ahead * 60)
                .find(|t| {
                    chrono::DateTime::from_timestamp(*t, 0)
                        .is_some_and(|at| timer.should_run_at(&at.naive_utc()))
                })
        }
    }
}

// ----- syncs -----

#[derive(Serialize, ToSchema)]
pub struct SyncOverview {
    pub name: String,
    pub model: String,
    pub destination: String,
    pub object: String,
    pub mode: String,
    /// The sync's `schedule:` as written back (`every 900s`, a cron
    /// expression), when it has one.
    pub schedule: Option<String>,
    /// Whether its schedule is paused (`POST .../pause`).
    pub paused: bool,
    /// The next scheduled run, Unix seconds (none when unscheduled or
    /// paused).
    pub next_run: Option<i64>,
    /// Rows the destination acknowledged, as the state holds them.
    pub snapshot_rows: i64,
    /// Rows in the rejected-row ledger (retried on every run).
    pub rejected_rows: i64,
    pub last_run: Option<RunOut>,
}

#[derive(Serialize, ToSchema)]
pub struct SyncOverviewList {
    /// Whether the tenant has applied a project (`PUT /api/v1/project`).
    pub has_project: bool,
    pub syncs: Vec<SyncOverview>,
}

async fn overview(
    state: &AppState,
    tenant: &str,
    sync: &sluice_config::SyncConfig,
    figures: &SyncFigures,
) -> Result<SyncOverview, ApiError> {
    let paused = figures.paused.get(&sync.name).copied().unwrap_or(false);
    let next_run = match &sync.schedule {
        Some(s) if !paused => next_tick(s, figures.now),
        _ => None,
    };
    let last_run = read_runs(state, tenant, Some(&sync.name), 1, None)
        .await?
        .into_iter()
        .next();
    Ok(SyncOverview {
        name: sync.name.clone(),
        model: sync.model.clone(),
        destination: sync.destination.clone(),
        object: sync.object.to_string(),
        mode: format!("{:?}", sync.mode).to_lowercase(),
        schedule: sync.schedule.as_ref().map(Schedule::text),
        paused,
        next_run,
        snapshot_rows: figures.snapshot.get(&sync.name).copied().unwrap_or(0),
        rejected_rows: figures.ledger.get(&sync.name).copied().unwrap_or(0),
        last_run,
    })
}

/// Every sync of the calling tenant with its last run, schedule, next run
/// and the rows in its snapshot and ledger.
#[utoipa::path(get, path = "/api/v1/console/syncs", responses(
    (status = 200, body = SyncOverviewList), (status = 404, body = ErrorBody)))]
async fn console_syncs(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
) -> Result<Json<SyncOverviewList>, ApiError> {
    let Some(project) = project_if_any(&state, &tenant).await? else {
        return Ok(Json(SyncOverviewList {
            has_project: false,
            syncs: Vec::new(),
        }));
    };
    let figures = sync_figures(&state, &tenant).await?;
    let mut syncs = Vec::with_capacity(project.syncs.len());
    for sync in project.syncs.values() {
        syncs.push(overview(&state, &tenant, sync, &figures).await?);
    }
    Ok(Json(SyncOverviewList {
        has_project: true,
        syncs,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct SyncDetail {
    #[serde(flatten)]
    pub overview: SyncOverview,
    /// The sync's own entry of `sluice.yaml` (mappings included).
    pub yaml: String,
    /// Its last runs, newest first (at most 30).
    pub runs: Vec<RunOut>,
}

/// The sync's entry of the project file, as YAML.
fn sync_yaml(files: &std::collections::BTreeMap<String, String>, sync: &str) -> String {
    let text = files
        .get(sluice_config::PROJECT_FILE)
        .map(String::as_str)
        .unwrap_or("");
    let Ok(docs) = yaml_rust2::YamlLoader::load_from_str(text) else {
        return String::new();
    };
    let Some(entry) = docs.first().map(|d| &d["syncs"][sync]) else {
        return String::new();
    };
    let mut wrapped = yaml_rust2::yaml::Hash::new();
    wrapped.insert(yaml_rust2::Yaml::String(sync.to_owned()), entry.clone());
    let mut out = String::new();
    let mut emitter = yaml_rust2::YamlEmitter::new(&mut out);
    if emitter.dump(&yaml_rust2::Yaml::Hash(wrapped)).is_err() {
        return String::new();
    }
    out.trim_start_matches("---\n").to_owned()
}

/// One sync of the calling tenant: overview, its YAML and its last runs.
#[utoipa::path(get, path = "/api/v1/console/syncs/{name}", params(("name" = String, Path)),
    responses((status = 200, body = SyncDetail), (status = 404, body = ErrorBody)))]
async fn console_sync(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<SyncDetail>, ApiError> {
    let project = project_with_sync(&state, &tenant, &name).await?;
    let (_, files) = project::stored(&state.pool, &state.app_role, &tenant).await?;
    let figures = sync_figures(&state, &tenant).await?;
    let overview = overview(&state, &tenant, &project.syncs[&name], &figures).await?;
    let runs = read_runs(&state, &tenant, Some(&name), CHART_RUNS, None).await?;
    Ok(Json(SyncDetail {
        overview,
        yaml: sync_yaml(&files, &name),
        runs,
    }))
}

// ----- plans and plugins: the engine and plugins in this process -----

/// The runtime plans and plugin reads load components with, made on first
/// use (`$SLUICE_CACHE_DIR` or the user's cache holds compiled
/// components, shared with workers on the same host).
fn plugin_runtime() -> Result<sluice_runtime::Runtime, ApiError> {
    static RUNTIME: OnceLock<Result<sluice_runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            sluice_runtime::Runtime::new(sluice_runtime::RuntimeOptions::default())
                .map_err(|e| format!("{e:#}"))
        })
        .clone()
        .map_err(|why| ApiError::internal("starting the plugin runtime", why))
}

/// Runs `work` on a thread of its own (plugin stores are not `Send`),
/// bounded by [`PLAN_TIMEOUT`].
async fn on_plugin_thread<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let joined = tokio::time::timeout(PLAN_TIMEOUT, tokio::task::spawn_blocking(work))
        .await
        .map_err(|_| {
            ApiError::unavailable(format!(
                "{what} took longer than {}s",
                PLAN_TIMEOUT.as_secs()
            ))
        })?;
    joined.map_err(|e| ApiError::internal(what, e))?
}

#[derive(Deserialize, ToSchema, Default)]
pub struct PlanIn {
    /// Plan a full resync: every row counts as to be sent.
    #[serde(default)]
    pub full_resync: bool,
}

/// A dry run of a sync of the calling tenant: what its next run would add,
/// change and delete, with sample rows; nothing is sent or recorded. The
/// answer is `sluice plan --json`'s report (counts, `planned` samples,
/// `mirror`, `config_changed`).
#[utoipa::path(post, path = "/api/v1/syncs/{name}/plan", params(("name" = String, Path)),
    request_body(content = PlanIn, description = "optional"),
    responses((status = 200, description = "the plan: `sluice plan --json`'s report"),
              (status = 404, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
async fn plan_sync(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
    Path(name): Path<String>,
    json: Option<Json<PlanIn>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let input = json.map(|Json(p)| p).unwrap_or_default();
    let project = project_with_sync(&state, &tenant, &name).await?;
    let runtime = plugin_runtime()?;
    let (url, role) = (state.state_url.clone(), state.app_role.clone());
    let what = format!("planning sync `{name}` of tenant `{tenant}`");
    let context = what.clone();
    let report = on_plugin_thread(&what, move || {
        let store = sluice_state::PostgresStore::connect_tenant_as(&url, &tenant, Some(&role))
            .map_err(|e| ApiError::unavailable(format!("{context}: {e}")))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ApiError::internal(&context, e))?;
        let store = Mutex::new(store);
        let engine = sluice_engine::run::SyncEngine {
            project: &project,
            runtime: &runtime,
            store: &store,
        };
        let options = sluice_engine::run::RunOptions {
            dry_run: true,
            full_resync: input.full_resync,
            ..Default::default()
        };
        rt.block_on(engine.run(&name, &options))
            .map_err(|e| ApiError::unavailable(format!("{context}: {e:#}")))
    })
    .await?;
    let value =
        serde_json::to_value(&report).map_err(|e| ApiError::internal("encoding the plan", e))?;
    Ok(Json(value))
}

#[derive(Serialize, ToSchema)]
pub struct PluginInfo {
    /// The instance's name in the project.
    pub name: String,
    /// `source`, `destination` or `transform`.
    pub role: String,
    /// The plugin as the project names it (`webhook`, `name@1.2.0`, a file).
    pub plugin: String,
    /// The WIT world it implements.
    pub world: Option<String>,
    /// SHA-256 of the component.
    pub digest: Option<String>,
    /// The interfaces the component imports: the capabilities it asks for.
    pub requested: Vec<String>,
    /// What the project grants it, as written (secrets redacted).
    pub grants: Vec<String>,
    /// Why it could not be loaded, when it could not.
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PluginList {
    /// Whether the tenant has applied a project (`PUT /api/v1/project`).
    pub has_project: bool,
    pub plugins: Vec<PluginInfo>,
}

fn plugin_ref_text(plugin: &sluice_config::PluginRef) -> String {
    match plugin {
        sluice_config::PluginRef::Path(p) => p
            .file_name()
            .map_or_else(|| p.display().to_string(), |f| f.to_string_lossy().into()),
        sluice_config::PluginRef::Installed(name) => name.clone(),
        sluice_config::PluginRef::Pinned { name, pin } => format!("{name}@{pin}"),
        sluice_config::PluginRef::Uploaded { name, sha256 } => {
            format!("{}{name}@sha256:{sha256}", sluice_config::UPLOADED_PREFIX)
        }
    }
}

/// What one plugin instance of `project` is and asks for.
fn describe_plugin(
    runtime: &sluice_runtime::Runtime,
    project: &Project,
    role: &str,
    cfg: &sluice_config::PluginInstance,
) -> PluginInfo {
    let mut info = PluginInfo {
        name: cfg.name.clone(),
        role: role.to_owned(),
        plugin: plugin_ref_text(&cfg.plugin),
        world: None,
        digest: None,
        requested: Vec::new(),
        grants: cfg.grants.iter().map(|g| g.text.to_string()).collect(),
        error: None,
    };
    match sluice_registry::load_plugin(runtime, &project.dir, cfg) {
        Ok(plugin) => {
            info.world = Some(plugin.world().to_owned());
            info.digest = Some(plugin.digest().to_owned());
            info.requested = plugin.imports().to_vec();
        }
        Err(e) => info.error = Some(format!("{e:#}")),
    }
    info
}

/// The plugin instances of the calling tenant's project: component digest,
/// the capabilities each requests and the grants it runs with.
#[utoipa::path(get, path = "/api/v1/console/plugins", responses(
    (status = 200, body = PluginList), (status = 404, body = ErrorBody)))]
async fn plugins(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
) -> Result<Json<PluginList>, ApiError> {
    let Some(project) = project_if_any(&state, &tenant).await? else {
        return Ok(Json(PluginList {
            has_project: false,
            plugins: Vec::new(),
        }));
    };
    let runtime = plugin_runtime()?;
    let what = format!("reading the plugins of tenant `{tenant}`");
    let plugins = on_plugin_thread(&what, move || {
        let mut out = Vec::new();
        for cfg in project.sources.values() {
            out.push(describe_plugin(&runtime, &project, "source", cfg));
        }
        for cfg in project.transforms.values() {
            out.push(describe_plugin(&runtime, &project, "transform", cfg));
        }
        for d in project.destinations.values() {
            out.push(describe_plugin(
                &runtime,
                &project,
                "destination",
                &d.instance,
            ));
        }
        Ok(out)
    })
    .await?;
    Ok(Json(PluginList {
        has_project: true,
        plugins,
    }))
}

// ----- actions -----

#[derive(Serialize, ToSchema)]
pub struct RetryEnqueued {
    pub job_id: i64,
    pub sync: String,
    /// Rows in the ledger the run will re-send.
    pub rejected_rows: i64,
    pub status: String,
}

/// Enqueues a run that re-sends only the rows in the sync's rejected-row
/// ledger (`sluice retry`): no other change, no delete. 409 when the
/// ledger is empty.
#[utoipa::path(post, path = "/api/v1/syncs/{name}/retry", params(("name" = String, Path)),
    responses((status = 202, body = RetryEnqueued), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
async fn retry_rejected(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<RetryEnqueued>), ApiError> {
    project_with_sync(&state, &tenant, &name).await?;
    let figures = sync_figures(&state, &tenant).await?;
    let rejected_rows = figures.ledger.get(&name).copied().unwrap_or(0);
    if rejected_rows == 0 {
        return Err(ApiError::conflict(format!(
            "sync `{name}` has no rejected rows to retry"
        )));
    }
    let job = RunJob {
        tenant,
        sync: name.clone(),
        full_resync: false,
        trigger: RETRY_TRIGGER.into(),
    };
    let job_id = queue::enqueue(&state.pool, job, None)
        .await
        .map_err(|e| ApiError::unavailable(format!("enqueueing the retry of `{name}`: {e}")))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RetryEnqueued {
            job_id,
            sync: name,
            rejected_rows,
            status: "queued".into(),
        }),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct PauseOut {
    pub sync: String,
    pub paused: bool,
}

/// Pauses or resumes the schedule of `sync`: the flag is kept on the
/// sync's row of `sluice.schedule_ticks`, which every scheduler claims
/// ticks from (crate::schedule skips a paused row). Resuming moves the
/// last tick to now: ticks missed while paused are not owed.
async fn set_paused(
    state: &AppState,
    tenant: &str,
    sync: &str,
    paused: bool,
) -> Result<PauseOut, ApiError> {
    let project = project_with_sync(state, tenant, sync).await?;
    let Some(schedule) = &project.syncs[sync].schedule else {
        return Err(ApiError::conflict(format!(
            "sync `{sync}` has no `schedule:`; there is nothing to pause or resume"
        )));
    };
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, &state.app_role, tenant).await?;
    tx.execute(
        "INSERT INTO sluice.schedule_ticks (tenant, sync, schedule, last_tick, paused)
         VALUES ($1, $2, $3, now(), $4)
         ON CONFLICT (tenant, sync) DO UPDATE
             SET paused = EXCLUDED.paused,
                 last_tick = CASE WHEN EXCLUDED.paused THEN sluice.schedule_ticks.last_tick
                                  ELSE greatest(sluice.schedule_ticks.last_tick, now()) END",
        &[&tenant, &sync, &schedule.text(), &paused],
    )
    .await?;
    tx.commit().await?;
    Ok(PauseOut {
        sync: sync.to_owned(),
        paused,
    })
}

/// Pauses the schedule of a sync of the calling tenant (manual runs still
/// run). 409 when the sync has no schedule.
#[utoipa::path(post, path = "/api/v1/syncs/{name}/pause", params(("name" = String, Path)),
    responses((status = 200, body = PauseOut), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
async fn pause_schedule(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<PauseOut>, ApiError> {
    set_paused(&state, &tenant, &name, true).await.map(Json)
}

/// Resumes the schedule of a sync of the calling tenant from its next
/// tick.
#[utoipa::path(post, path = "/api/v1/syncs/{name}/resume", params(("name" = String, Path)),
    responses((status = 200, body = PauseOut), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
async fn resume_schedule(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<PauseOut>, ApiError> {
    set_paused(&state, &tenant, &name, false).await.map(Json)
}

#[derive(Serialize, ToSchema)]
pub struct UnlockOut {
    pub sync: String,
    /// The stale `running` runs marked killed.
    pub unlocked_runs: Vec<RunId>,
}

/// Clears the stale `running` runs of a sync of the calling tenant
/// (`sluice runs unlock`); refused (409) while a run holds the sync.
#[utoipa::path(post, path = "/api/v1/syncs/{name}/unlock", params(("name" = String, Path)),
    responses((status = 200, body = UnlockOut), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
async fn unlock_sync(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<UnlockOut>, ApiError> {
    use sluice_state::StateStore;
    project_with_sync(&state, &tenant, &name).await?;
    let (url, role, sync) = (
        state.state_url.clone(),
        state.app_role.clone(),
        name.clone(),
    );
    let unlocked = tokio::task::spawn_blocking(move || {
        let mut store = sluice_state::PostgresStore::connect_tenant_as(&url, &tenant, Some(&role))
            .map_err(|e| ApiError::unavailable(format!("opening the state: {e}")))?;
        store.unlock(&sync).map_err(|e| match e {
            sluice_state::StateError::Locked { .. }
            | sluice_state::StateError::AlreadyRunning { .. } => ApiError::conflict(e.to_string()),
            other => ApiError::internal(&format!("unlocking sync `{sync}`"), other),
        })
    })
    .await
    .map_err(|e| ApiError::internal("unlocking the sync", e))??;
    Ok(Json(UnlockOut {
        sync: name,
        unlocked_runs: unlocked,
    }))
}

// ----- live progress -----

#[derive(Deserialize, IntoParams)]
pub struct ProgressQuery {
    /// Follow the first run with an id above this one (the latest run
    /// before pressing Run); default: the latest run.
    pub after: Option<i64>,
}

/// Rows of the model the run has read so far (sent or not), the measure
/// its progress is counted in.
fn rows_read(counts: &serde_json::Value) -> i64 {
    ["added", "changed", "unchanged", "invalid"]
        .iter()
        .map(|c| counts[*c].as_i64().unwrap_or(0))
        .sum()
}

/// One progress event: the run, and its percentage done against the rows
/// the sync's previous finished run read (as `sluice run`'s progress bar
/// estimates it); 100 once the run ended, `null` without an estimate.
fn progress_event(run: &RunOut, expected: Option<i64>) -> serde_json::Value {
    let percent = if run.status != "running" {
        Some(100)
    } else {
        expected
            .filter(|e| *e > 0)
            .map(|e| (rows_read(&run.counts) * 100 / e).min(99))
    };
    serde_json::json!({"run": run, "percent": percent})
}

/// What a progress stream remembers between polls.
struct Follow {
    state: Shared,
    tenant: String,
    sync: String,
    after: i64,
    expected: Option<i64>,
    deadline: Instant,
    first: bool,
}

/// The next event of a progress stream, or `None` when it has ended.
async fn next_progress(mut f: Follow) -> Option<(Result<Event, Infallible>, Option<Follow>)> {
    if !f.first {
        tokio::time::sleep(PROGRESS_POLL).await;
    }
    f.first = false;
    if Instant::now() > f.deadline {
        let event = Event::default().event("timeout").data("{}");
        return Some((Ok(event), None));
    }
    let latest = read_runs(&f.state, &f.tenant, Some(&f.sync), 1, None).await;
    let event = match latest {
        Err(e) => {
            let event = Event::default()
                .event("error")
                .data(e.detail.message.clone());
            return Some((Ok(event), None));
        }
        Ok(runs) => match runs.into_iter().next().filter(|r| r.id > f.after) {
            None => Event::default().event("waiting").data("{}"),
            Some(run) => {
                let body = progress_event(&run, f.expected).to_string();
                if run.status != "running" {
                    return Some((Ok(Event::default().event("done").data(body)), None));
                }
                Event::default().event("progress").data(body)
            }
        },
    };
    Some((Ok(event), Some(f)))
}

/// Live progress of a sync's next (or current) run as server-sent events:
/// `waiting` until the run starts, `progress` as its batches commit (the
/// run and `percent`), `done` when it ends; the stream ends after `done`
/// or after 15 minutes (`timeout`: reconnect).
#[utoipa::path(get, path = "/api/v1/syncs/{name}/progress", params(("name" = String, Path), ProgressQuery),
    responses((status = 200, description = "text/event-stream"), (status = 404, body = ErrorBody)))]
async fn run_progress(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
    Path(name): Path<String>,
    query: Result<Query<ProgressQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    project_with_sync(&state, &tenant, &name).await?;
    let recent = read_runs(&state, &tenant, Some(&name), 2, None).await?;
    let after = q
        .after
        .unwrap_or_else(|| recent.first().map_or(0, |r| r.id - 1));
    let expected = recent
        .iter()
        .find(|r| r.id <= after && r.status != "running")
        .map(|r| rows_read(&r.counts));
    let follow = Follow {
        state: state.clone(),
        tenant,
        sync: name,
        after,
        expected,
        deadline: Instant::now() + PROGRESS_STREAM_LIMIT,
        first: true,
    };
    let stream = futures::stream::unfold(Some(follow), |f| async move {
        match f {
            Some(f) => next_progress(f).await,
            None => None,
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

// ----- rejected rows: search and CSV -----

#[derive(Deserialize, IntoParams)]
pub struct SearchQuery {
    /// Case-insensitive text to find in the row's key or message.
    pub q: Option<String>,
    pub offset: Option<i64>,
    /// Default 25, at most 1000.
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema, Clone)]
pub struct FoundRow {
    /// `rejected` or `invalid`.
    pub kind: String,
    pub key: Option<String>,
    pub message: String,
}

#[derive(Serialize, ToSchema)]
pub struct RejectedSearch {
    pub run_id: RunId,
    /// Rows matching `q` in the run's sample (the state keeps up to 100
    /// per run).
    pub total: i64,
    pub rows: Vec<FoundRow>,
    pub offset: i64,
}

/// The rejected and invalid rows a run of `tenant` kept (at most
/// `sluice_state::schema::MAX_SAMPLES`), in order; 404 when the run is not
/// the tenant's.
async fn run_samples(state: &AppState, tenant: &str, id: RunId) -> Result<Vec<FoundRow>, ApiError> {
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, &state.app_role, tenant).await?;
    let exists = tx
        .query_opt(
            "SELECT 1 FROM sluice.runs WHERE tenant = $1 AND id = $2",
            &[&tenant, &id],
        )
        .await?;
    if exists.is_none() {
        return Err(ApiError::not_found(format!("run {id}")));
    }
    let rows = tx
        .query(
            "SELECT kind, row_key, message FROM sluice.run_samples
             WHERE tenant = $1 AND run_id = $2 ORDER BY seq",
            &[&tenant, &id],
        )
        .await?;
    tx.commit().await?;
    Ok(rows
        .iter()
        .map(|r| FoundRow {
            kind: r.get(0),
            key: r
                .get::<_, Option<Vec<u8>>>(1)
                .map(|k| RowKey::from_bytes(k).to_string()),
            message: r.get(2),
        })
        .collect())
}

/// A search request, checked: what to find (lowercased), and which page.
pub(crate) struct SearchPage {
    pub needle: String,
    pub offset: i64,
    pub limit: i64,
}

impl SearchPage {
    pub fn of(query: Result<Query<SearchQuery>, QueryRejection>) -> Result<Self, ApiError> {
        let Query(q) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
        let limit = page_limit(q.limit, 25)?;
        let offset = q.offset.unwrap_or(0);
        if offset < 0 {
            return Err(ApiError::invalid("offset", "offset must be 0 or more"));
        }
        Ok(SearchPage {
            needle: q.q.unwrap_or_default().trim().to_lowercase(),
            offset,
            limit,
        })
    }

    /// Whether a row with this key and message matches (case-insensitive;
    /// everything matches an empty search).
    pub fn matches(&self, key: Option<&str>, message: &str) -> bool {
        self.needle.is_empty()
            || key.is_some_and(|k| k.to_lowercase().contains(&self.needle))
            || message.to_lowercase().contains(&self.needle)
    }
}

/// A page of a run's rejected and invalid rows whose key or message
/// contains `q`, with how many match.
#[utoipa::path(get, path = "/api/v1/runs/{id}/rejected/search", params(("id" = i64, Path), SearchQuery),
    responses((status = 200, body = RejectedSearch), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn search_rejected(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
    Path(id): Path<String>,
    query: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Json<RejectedSearch>, ApiError> {
    let id = run_id(&id)?;
    let page = SearchPage::of(query)?;
    let found: Vec<FoundRow> = run_samples(&state, &tenant, id)
        .await?
        .into_iter()
        .filter(|r| page.matches(r.key.as_deref(), &r.message))
        .collect();
    let rows = found
        .iter()
        .skip(page.offset as usize)
        .take(page.limit as usize)
        .cloned()
        .collect();
    Ok(Json(RejectedSearch {
        run_id: id,
        total: found.len() as i64,
        rows,
        offset: page.offset,
    }))
}

/// A run's rejected and invalid rows as CSV (`kind,key,message`).
#[utoipa::path(get, path = "/api/v1/runs/{id}/rejected.csv", params(("id" = i64, Path)),
    responses((status = 200, description = "text/csv: kind,key,message"),
              (status = 404, body = ErrorBody)))]
async fn rejected_csv(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = run_id(&id)?;
    let rows = run_samples(&state, &tenant, id).await?;
    let mut writer = csv::Writer::from_writer(Vec::new());
    let written = writer
        .write_record(["kind", "key", "message"])
        .and_then(|()| {
            rows.iter().try_for_each(|r| {
                writer.write_record([
                    r.kind.as_str(),
                    r.key.as_deref().unwrap_or(""),
                    r.message.as_str(),
                ])
            })
        });
    written.map_err(|e| ApiError::internal("writing the CSV", e))?;
    let bytes = writer
        .into_inner()
        .map_err(|e| ApiError::internal("writing the CSV", e))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"run-{id}-rejected.csv\""),
            ),
        ],
        bytes,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_ticks_follow_the_schedule() {
        let every = Schedule::parse("every 15m").unwrap();
        assert_eq!(next_tick(&every, 0), Some(900));
        assert_eq!(next_tick(&every, 899), Some(900));
        assert_eq!(next_tick(&every, 900), Some(1800));
        let cron = Schedule::parse("30 2 * * *").unwrap();
        // 1970-01-01 00:00 UTC -> 02:30 the same day.
        assert_eq!(next_tick(&cron, 0), Some(2 * 3600 + 30 * 60));
        assert_eq!(next_tick(&cron, 2 * 3600 + 30 * 60), Some(86400 + 9000));
    }

    #[test]
    fn progress_is_estimated_from_the_previous_run_and_complete_when_it_ends() {
        let run = |status: &str, added: i64| RunOut {
            id: 2,
            sync: "s".into(),
            status: status.into(),
            full_resync: false,
            started_at: 0,
            finished_at: None,
            error: None,
            stage: None,
            counts: serde_json::json!({"added": added, "unchanged": 10}),
            timings: None,
        };
        assert_eq!(progress_event(&run("running", 10), Some(40))["percent"], 50);
        assert_eq!(progress_event(&run("running", 90), Some(40))["percent"], 99);
        assert_eq!(
            progress_event(&run("running", 1), None)["percent"],
            serde_json::Value::Null
        );
        assert_eq!(progress_event(&run("failed", 0), None)["percent"], 100);
    }

    #[test]
    fn a_search_matches_key_or_message_case_insensitively() {
        let search = |q: &str| SearchPage {
            needle: q.to_lowercase(),
            offset: 0,
            limit: 25,
        };
        let (key, message) = (Some("Bad@X.com"), "status 400");
        assert!(search("").matches(key, message));
        assert!(search("BAD@x").matches(key, message));
        assert!(search("400").matches(key, message));
        assert!(search("400").matches(None, message));
        assert!(!search("other").matches(key, message));
    }
}
