//! The routes under `/api/v1`, the health checks, `/metrics` and
//! `/openapi.json`.

use crate::auth::{self, Caller};
use crate::ceiling::Ceiling;
use crate::db::tenant_tx;
use crate::error::{from_json_rejection, ApiError, ErrorBody};
use crate::queue::{self, RunJob};
use crate::secret_routes;
use crate::{project, AppState, Shared};
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, MatchedPath, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sluice_state::{RowKey, RunId};
use std::collections::BTreeMap;
use utoipa::{IntoParams, OpenApi, ToSchema};

/// The largest request body (a project upload), in bytes.
pub const MAX_BODY: usize = 16 * 1024 * 1024;
/// The most runs or rejected rows one page holds.
const MAX_PAGE: i64 = 1000;

#[derive(OpenApi)]
#[openapi(
    info(title = "Sluice server API", description = "Tenants, tokens, projects, syncs and runs. Every error is `{\"error\": {\"code\", \"message\", \"field\"?}}`; another tenant's object answers 404."),
    paths(
        healthz, readyz, create_tenant, list_tenants, get_tenant, delete_tenant,
        put_grant_ceiling, create_token,
        list_tokens, delete_token, put_project, get_project, list_syncs, get_sync, trigger_run,
        list_runs, get_run, run_rejected, secret_routes::put_secret, secret_routes::list_secrets,
        secret_routes::delete_secret, secret_routes::rewrap_secrets
    ),
    components(schemas(
        ErrorBody, TenantIn, Tenant, TenantList, CeilingIn, TokenIn, NewTokenOut, TokenInfo, TokenList,
        ProjectIn, ProjectOut, SyncInfo, SyncList, TriggerIn, Enqueued, RunOut, RunList,
        RejectedRow, RejectedPage, secret_routes::SecretIn, secret_routes::SecretInfo,
        secret_routes::SecretList, secret_routes::Rewrapped
    )),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/api/v1/tenants", post(create_tenant).get(list_tenants))
        .route(
            "/api/v1/tenants/{name}",
            get(get_tenant).delete(delete_tenant),
        )
        .route(
            "/api/v1/tenants/{name}/grant-ceiling",
            axum::routing::put(put_grant_ceiling),
        )
        .route("/api/v1/tokens", post(create_token).get(list_tokens))
        .route("/api/v1/tokens/{id}", axum::routing::delete(delete_token))
        .route("/api/v1/project", get(get_project).put(put_project))
        .route("/api/v1/syncs", get(list_syncs))
        .route(
            "/api/v1/syncs/{name}",
            get(get_sync)
                .put(crate::project_routes::put_sync)
                .delete(crate::project_routes::delete_sync),
        )
        .route("/api/v1/syncs/{name}/runs", post(trigger_run))
        .route("/api/v1/runs", get(list_runs))
        .route("/api/v1/runs/{id}", get(get_run))
        .route("/api/v1/runs/{id}/rejected", get(run_rejected))
        .route("/api/v1/secrets", get(secret_routes::list_secrets))
        .route(
            "/api/v1/secrets/{name}",
            axum::routing::put(secret_routes::put_secret).delete(secret_routes::delete_secret),
        )
        .route(
            "/api/v1/secrets-rewrap",
            post(secret_routes::rewrap_secrets),
        )
        .merge(crate::console_api::routes())
        .merge(crate::ledger_routes::routes())
        .merge(crate::project_routes::routes())
        .merge(crate::components::routes())
        .fallback(|| async { ApiError::not_found("route") })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

/// Counts every answer by route template (never the raw path: ids would
/// make the label unbounded) and status.
async fn count_requests(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    state
        .metrics
        .http
        .with_label_values(&[route.as_str(), response.status().as_str()])
        .inc();
    response
}

// ----- callers -----

impl FromRequestParts<Shared> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(auth::bearer)
            .ok_or_else(ApiError::unauthorized)?;
        if auth::matches(token, &state.operator_digest) {
            return Ok(Caller::Operator);
        }
        let id = auth::token_id(token).ok_or_else(ApiError::unauthorized)?;
        let client = state.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT tenant, sha256 FROM sluice.api_tokens WHERE id = $1",
                &[&id],
            )
            .await?;
        match row {
            Some(r) if auth::matches(token, r.get::<_, &[u8]>(1)) => Ok(Caller::Tenant(r.get(0))),
            _ => Err(ApiError::unauthorized()),
        }
    }
}

/// A caller that must be the operator. A tenant's token is answered as if
/// the route did not exist.
pub(crate) struct Operator;

impl FromRequestParts<Shared> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::Operator => Ok(Operator),
            Caller::Tenant(_) => Err(ApiError::not_found("route")),
        }
    }
}

/// A caller that must be a tenant (the operator owns no project or run).
pub(crate) struct AsTenant(pub(crate) String);

impl FromRequestParts<Shared> for AsTenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::Tenant(t) => Ok(AsTenant(t)),
            Caller::Operator => Err(ApiError {
                status: StatusCode::FORBIDDEN,
                detail: crate::error::ErrorDetail {
                    code: "tenant_token_required",
                    message: "this route acts for one tenant: call it with one of the tenant's \
                              tokens, not the operator token"
                        .into(),
                    field: Some("authorization".into()),
                    problems: None,
                },
            }),
        }
    }
}

/// A JSON body whose rejection is an [`ApiError`].
pub(crate) fn body<T>(json: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    json.map(|Json(t)| t).map_err(from_json_rejection)
}

// ----- health, metrics, description -----

/// The process is up.
#[utoipa::path(get, path = "/healthz", security(()), responses((status = 200, description = "up")))]
async fn healthz() -> &'static str {
    "ok"
}

/// The state database answers and has every migration this server needs.
#[utoipa::path(get, path = "/readyz", security(()), responses(
    (status = 200, description = "ready"),
    (status = 503, description = "not ready", body = ErrorBody)))]
async fn readyz(State(state): State<Shared>) -> Result<&'static str, ApiError> {
    crate::db::ready(&state.pool)
        .await
        .map_err(|why| ApiError::unavailable(format!("the state database is not ready: {why}")))?;
    Ok("ready")
}

async fn metrics(State(state): State<Shared>) -> Result<impl IntoResponse, ApiError> {
    // Runs are recorded by the workers: counted from the state at scrape time.
    state.metrics.count_runs(&state.pool).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    ))
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::components::ComponentsDoc::openapi());
    doc.merge(crate::console_api::ConsoleApiDoc::openapi());
    doc.merge(crate::ledger_routes::LedgerDoc::openapi());
    doc.merge(crate::project_routes::ProjectDoc::openapi());
    Json(doc)
}

// ----- tenants -----

#[derive(Deserialize, ToSchema)]
pub struct TenantIn {
    /// 1 to 63 of `a-z 0-9 _ -`, starting with a letter or digit.
    pub name: String,
    /// The network grants the tenant's plugins may ever have, as grant
    /// patterns (`https://*.salesforce.com`, `postgres://10.1.2.3:5432`).
    /// Default `["*://*:*"]`: every public host, no loopback, private,
    /// link-local or metadata address.
    #[serde(default)]
    pub grant_ceiling: Option<Vec<String>>,
}

#[derive(Deserialize, ToSchema)]
pub struct CeilingIn {
    /// Replaces the tenant's ceiling; see `TenantIn.grant_ceiling`.
    pub grant_ceiling: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Tenant {
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
    /// No grant in the tenant's project may exceed these patterns.
    pub grant_ceiling: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TenantList {
    pub tenants: Vec<Tenant>,
}

fn tenant_of(row: &tokio_postgres::Row) -> Tenant {
    Tenant {
        name: row.get(0),
        created_at: row.get(1),
        grant_ceiling: row.get(2),
    }
}

/// The operator's patterns, parsed; a bad one is a 400 naming it.
fn parse_ceiling(patterns: &[String]) -> Result<Ceiling, ApiError> {
    Ceiling::parse(patterns).map_err(|why| ApiError::invalid("grant_ceiling", why))
}

/// Creates a tenant (operator only).
#[utoipa::path(post, path = "/api/v1/tenants", request_body = TenantIn, responses(
    (status = 201, body = Tenant), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_tenant(
    _: Operator,
    State(state): State<Shared>,
    json: Result<Json<TenantIn>, JsonRejection>,
) -> Result<(StatusCode, Json<Tenant>), ApiError> {
    let input = body(json)?;
    if !auth::valid_tenant_name(&input.name) {
        return Err(ApiError::invalid(
            "name",
            "a tenant name is 1 to 63 of a-z, 0-9, `_` and `-`, starting with a letter or digit",
        ));
    }
    let ceiling = parse_ceiling(
        &input
            .grant_ceiling
            .unwrap_or_else(Ceiling::default_patterns),
    )?;
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            &format!(
                "INSERT INTO sluice.tenants (tenant, grant_ceiling) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING RETURNING {TENANT_COLUMNS}"
            ),
            &[&input.name, &ceiling.patterns()],
        )
        .await?;
    match row {
        Some(r) => Ok((StatusCode::CREATED, Json(tenant_of(&r)))),
        None => Err(ApiError::conflict(format!(
            "tenant `{}` exists",
            input.name
        ))),
    }
}

const TENANT_COLUMNS: &str =
    "tenant, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), grant_ceiling";

/// Every tenant (operator only).
#[utoipa::path(get, path = "/api/v1/tenants", responses((status = 200, body = TenantList)))]
async fn list_tenants(
    _: Operator,
    State(state): State<Shared>,
) -> Result<Json<TenantList>, ApiError> {
    let client = state.pool.get().await?;
    let rows = client
        .query(
            &format!("SELECT {TENANT_COLUMNS} FROM sluice.tenants ORDER BY tenant"),
            &[],
        )
        .await?;
    Ok(Json(TenantList {
        tenants: rows.iter().map(tenant_of).collect(),
    }))
}

/// One tenant (operator only).
#[utoipa::path(get, path = "/api/v1/tenants/{name}", params(("name" = String, Path)),
    responses((status = 200, body = Tenant), (status = 404, body = ErrorBody)))]
async fn get_tenant(
    _: Operator,
    State(state): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<Tenant>, ApiError> {
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            &format!("SELECT {TENANT_COLUMNS} FROM sluice.tenants WHERE tenant = $1"),
            &[&name],
        )
        .await?
        .ok_or_else(|| ApiError::not_found(format!("tenant `{name}`")))?;
    Ok(Json(tenant_of(&row)))
}

/// Replaces a tenant's network grant ceiling (operator only). The tenant's
/// stored project is checked against it again before each run, so a run
/// that would now exceed it fails before any plugin starts.
#[utoipa::path(put, path = "/api/v1/tenants/{name}/grant-ceiling", params(("name" = String, Path)),
    request_body = CeilingIn,
    responses((status = 200, body = Tenant), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn put_grant_ceiling(
    _: Operator,
    State(state): State<Shared>,
    Path(name): Path<String>,
    json: Result<Json<CeilingIn>, JsonRejection>,
) -> Result<Json<Tenant>, ApiError> {
    let ceiling = parse_ceiling(&body(json)?.grant_ceiling)?;
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            &format!(
                "UPDATE sluice.tenants SET grant_ceiling = $2 WHERE tenant = $1
                 RETURNING {TENANT_COLUMNS}"
            ),
            &[&name, &ceiling.patterns()],
        )
        .await?
        .ok_or_else(|| ApiError::not_found(format!("tenant `{name}`")))?;
    Ok(Json(tenant_of(&row)))
}

/// Deletes a tenant with its tokens, project, runs and state (operator only).
#[utoipa::path(delete, path = "/api/v1/tenants/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_tenant(
    _: Operator,
    State(state): State<Shared>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    for table in [
        "run_samples",
        "runs",
        "delivered",
        "rejected",
        "sync_fingerprints",
        "schedule_ticks",
    ] {
        tx.execute(
            &format!("DELETE FROM sluice.{table} WHERE tenant = $1"),
            &[&name],
        )
        .await?;
    }
    let deleted = tx
        .execute("DELETE FROM sluice.tenants WHERE tenant = $1", &[&name])
        .await?;
    if deleted == 0 {
        return Err(ApiError::not_found(format!("tenant `{name}`")));
    }
    tx.commit().await?;
    let dir = state.work_dir.join("tenants").join(&name);
    if dir.exists() {
        if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
            tracing::warn!(tenant = %name, error = %e, "removing the tenant's project files");
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

// ----- tokens -----

#[derive(Deserialize, ToSchema, Default)]
pub struct TokenIn {
    /// Required with the operator token (the tenant to give a token);
    /// with a tenant's token, absent or that tenant.
    pub tenant: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct NewTokenOut {
    /// Shown this once; only its SHA-256 is stored.
    pub token: String,
    pub id: String,
    pub tenant: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

/// Makes a token for a tenant: the operator for any tenant (its first),
/// a tenant for itself.
#[utoipa::path(post, path = "/api/v1/tokens", request_body = TokenIn, responses(
    (status = 201, body = NewTokenOut), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn create_token(
    caller: Caller,
    State(state): State<Shared>,
    json: Result<Json<TokenIn>, JsonRejection>,
) -> Result<(StatusCode, Json<NewTokenOut>), ApiError> {
    let input = body(json)?;
    let made = auth::generate();
    let mut client = state.pool.get().await?;
    let tenant = match caller {
        Caller::Operator => {
            let tenant = input.tenant.ok_or_else(|| {
                ApiError::invalid("tenant", "the operator names the tenant to give a token")
            })?;
            let inserted = client
                .execute(
                    "INSERT INTO sluice.api_tokens (tenant, id, sha256)
                     SELECT tenant, $2, $3 FROM sluice.tenants WHERE tenant = $1",
                    &[&tenant, &made.id, &made.sha256.as_slice()],
                )
                .await?;
            if inserted == 0 {
                return Err(ApiError::not_found(format!("tenant `{tenant}`")));
            }
            tenant
        }
        Caller::Tenant(own) => {
            if input.tenant.as_ref().is_some_and(|t| *t != own) {
                let other = input.tenant.unwrap_or_default();
                return Err(ApiError::not_found(format!("tenant `{other}`")));
            }
            let tx = tenant_tx(&mut client, &state.app_role, &own).await?;
            tx.execute(
                "INSERT INTO sluice.api_tokens (tenant, id, sha256) VALUES ($1, $2, $3)",
                &[&own, &made.id, &made.sha256.as_slice()],
            )
            .await?;
            tx.commit().await?;
            own
        }
    };
    Ok((
        StatusCode::CREATED,
        Json(NewTokenOut {
            token: made.token,
            id: made.id,
            tenant,
        }),
    ))
}

/// The ids of the calling tenant's tokens (never the tokens).
#[utoipa::path(get, path = "/api/v1/tokens", responses((status = 200, body = TokenList)))]
async fn list_tokens(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
) -> Result<Json<TokenList>, ApiError> {
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, &state.app_role, &tenant).await?;
    // Row-level security alone keeps this to the tenant's rows; the WHERE
    // says so for the reader.
    let rows = tx
        .query(
            "SELECT id, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
             FROM sluice.api_tokens WHERE tenant = $1 ORDER BY created_at, id",
            &[&tenant],
        )
        .await?;
    Ok(Json(TokenList {
        tokens: rows
            .iter()
            .map(|r| TokenInfo {
                id: r.get(0),
                created_at: r.get(1),
            })
            .collect(),
    }))
}

/// Revokes one of the calling tenant's tokens.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_token(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, &state.app_role, &tenant).await?;
    let n = tx
        .execute(
            "DELETE FROM sluice.api_tokens WHERE tenant = $1 AND id = $2",
            &[&tenant, &id],
        )
        .await?;
    tx.commit().await?;
    if n == 0 {
        return Err(ApiError::not_found(format!("token `{id}`")));
    }
    Ok(StatusCode::NO_CONTENT)
}

// ----- project -----

#[derive(Deserialize, Serialize, ToSchema)]
pub struct ProjectIn {
    /// Relative path -> text: `sluice.yaml` and every file it names.
    pub files: BTreeMap<String, String>,
}

#[derive(Serialize, ToSchema)]
pub struct ProjectOut {
    pub revision: i64,
    pub syncs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<BTreeMap<String, String>>,
}

/// Validates and stores the calling tenant's project (a new revision).
/// Problems answer 422 `invalid_project` with each one's file, line and
/// column.
#[utoipa::path(put, path = "/api/v1/project", request_body = ProjectIn, responses(
    (status = 200, body = ProjectOut), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn put_project(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
    json: Result<Json<ProjectIn>, JsonRejection>,
) -> Result<Json<ProjectOut>, ApiError> {
    let input = body(json)?;
    let stored = store_project(&state, &tenant, &input.files, Expect::Any).await?;
    stored
        .map(Json)
        .ok_or_else(|| ApiError::internal("storing the project", "no revision returned"))
}

/// Which stored revision a write replaces.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Expect {
    /// Whatever is stored (`PUT /api/v1/project`: the upload is the whole
    /// truth).
    Any,
    /// Exactly this revision: an edit made to it is not stored over a later
    /// one.
    Revision(i64),
    /// No project yet.
    Absent,
}

/// Validates `files` as the tenant's project and stores them as its next
/// revision. `Ok(None)` when the stored revision is not what `expect`
/// says (another write came first). Problems answer 422 `invalid_project`
/// with each one's file, line and column.
pub(crate) async fn store_project(
    state: &AppState,
    tenant: &str,
    files: &BTreeMap<String, String>,
    expect: Expect,
) -> Result<Option<ProjectOut>, ApiError> {
    project::check_files(files)?;
    let syncs = validated_syncs(state, tenant, files).await?;
    let files =
        serde_json::to_value(files).map_err(|e| ApiError::internal("encoding the project", e))?;
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, &state.app_role, tenant).await?;
    let (sql, expected) = match expect {
        Expect::Any => (
            "INSERT INTO sluice.projects (tenant, revision, files) VALUES ($1, 1, $2)
             ON CONFLICT (tenant) DO UPDATE
                 SET revision = sluice.projects.revision + 1, files = EXCLUDED.files, updated_at = now()
             RETURNING revision",
            None,
        ),
        Expect::Absent => (
            "INSERT INTO sluice.projects (tenant, revision, files) VALUES ($1, 1, $2)
             ON CONFLICT (tenant) DO NOTHING RETURNING revision",
            None,
        ),
        Expect::Revision(r) => (
            "UPDATE sluice.projects SET revision = revision + 1, files = $2, updated_at = now()
             WHERE tenant = $1 AND revision = $3 RETURNING revision",
            Some(r),
        ),
    };
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&tenant, &files];
    if let Some(r) = &expected {
        params.push(r);
    }
    let row = tx.query_opt(sql, &params).await?;
    tx.commit().await?;
    Ok(row.map(|row| ProjectOut {
        revision: row.get(0),
        syncs,
        files: None,
    }))
}

/// The names of the syncs of `files`, validated exactly as a run will
/// load them (against the tenant's ceiling, limits and secrets).
async fn validated_syncs(
    state: &AppState,
    tenant: &str,
    files: &BTreeMap<String, String>,
) -> Result<Vec<String>, ApiError> {
    let staging = project::revision_dir(&state.work_dir, tenant, 0)
        .with_file_name(format!("check-{:016x}", rand::random::<u64>()));
    let policy =
        project::TenantPolicy::read(&state.pool, &state.app_role, state.keyring.as_ref(), tenant)
            .await?;
    let files = files.clone();
    let checked = tokio::task::spawn_blocking(move || {
        project::write_files(&staging, &files)
            .map_err(|e| ApiError::internal("writing the project files", e))?;
        let result = project::validate(&staging, &policy)
            .map(|p| p.syncs.keys().cloned().collect::<Vec<_>>());
        let _ = std::fs::remove_dir_all(&staging);
        Ok::<_, ApiError>(result)
    })
    .await
    .map_err(|e| ApiError::internal("validating the project", e))??;
    checked.map_err(|problems| {
        let n = problems.as_array().map_or(0, Vec::len);
        ApiError::invalid_project(n, problems)
    })
}

/// The calling tenant's stored project.
#[utoipa::path(get, path = "/api/v1/project", responses(
    (status = 200, body = ProjectOut), (status = 404, body = ErrorBody)))]
async fn get_project(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
) -> Result<Json<ProjectOut>, ApiError> {
    let (revision, files) = stored_project(&state, &tenant).await?;
    let syncs = loaded(&state, &tenant, revision, &files)
        .await?
        .syncs
        .keys()
        .cloned()
        .collect();
    Ok(Json(ProjectOut {
        revision,
        syncs,
        files: Some(files),
    }))
}

/// The revision and files of `tenant`'s project, read as that tenant.
pub(crate) async fn stored_project(
    state: &AppState,
    tenant: &str,
) -> Result<(i64, BTreeMap<String, String>), ApiError> {
    project::stored(&state.pool, &state.app_role, tenant).await
}

/// The project of `revision`, written out (once) and validated.
pub(crate) async fn loaded(
    state: &AppState,
    tenant: &str,
    revision: i64,
    files: &BTreeMap<String, String>,
) -> Result<sluice_config::Project, ApiError> {
    let policy =
        project::TenantPolicy::read(&state.pool, &state.app_role, state.keyring.as_ref(), tenant)
            .await?;
    project::load(&state.work_dir, tenant, revision, files, policy).await
}

// ----- syncs -----

#[derive(Serialize, ToSchema)]
pub struct SyncInfo {
    pub name: String,
    pub model: String,
    pub destination: String,
    pub object: String,
    pub mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunOut>,
}

#[derive(Serialize, ToSchema)]
pub struct SyncList {
    pub revision: i64,
    pub syncs: Vec<SyncInfo>,
}

fn sync_info(s: &sluice_config::SyncConfig) -> SyncInfo {
    SyncInfo {
        name: s.name.clone(),
        model: s.model.clone(),
        destination: s.destination.clone(),
        object: s.object.to_string(),
        mode: format!("{:?}", s.mode).to_lowercase(),
        last_run: None,
    }
}

/// The syncs of the calling tenant's project.
#[utoipa::path(get, path = "/api/v1/syncs", responses(
    (status = 200, body = SyncList), (status = 404, body = ErrorBody)))]
async fn list_syncs(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
) -> Result<Json<SyncList>, ApiError> {
    let (revision, files) = stored_project(&state, &tenant).await?;
    let project = loaded(&state, &tenant, revision, &files).await?;
    Ok(Json(SyncList {
        revision,
        syncs: project.syncs.values().map(sync_info).collect(),
    }))
}

/// One sync of the calling tenant, with its latest run.
#[utoipa::path(get, path = "/api/v1/syncs/{name}", params(("name" = String, Path)), responses(
    (status = 200, body = SyncInfo), (status = 404, body = ErrorBody)))]
async fn get_sync(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<SyncInfo>, ApiError> {
    let (revision, files) = stored_project(&state, &tenant).await?;
    let project = loaded(&state, &tenant, revision, &files).await?;
    let sync = project
        .syncs
        .get(&name)
        .ok_or_else(|| ApiError::not_found(format!("sync `{name}`")))?;
    let mut info = sync_info(sync);
    info.last_run = read_runs(&state, &tenant, Some(&name), 1, None)
        .await?
        .into_iter()
        .next();
    Ok(Json(info))
}

// ----- runs -----

#[derive(Deserialize, ToSchema, Default)]
pub struct TriggerIn {
    /// Re-send every row (the rejected-row ledger is kept).
    #[serde(default)]
    pub full_resync: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Enqueued {
    /// The run job's id on the queue.
    pub job_id: i64,
    pub sync: String,
    /// `queued`: a `sluice worker` takes the job and records the run
    /// (`GET /api/v1/runs?sync=...`).
    pub status: String,
}

/// Enqueues a run of a sync of the calling tenant; answers 202 with the
/// job's id. Jobs of one sync run one at a time, in order.
#[utoipa::path(post, path = "/api/v1/syncs/{name}/runs", params(("name" = String, Path)),
    request_body(content = TriggerIn, description = "optional"), responses(
    (status = 202, body = Enqueued), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn trigger_run(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
    Path(name): Path<String>,
    request: Request,
) -> Result<(StatusCode, Json<Enqueued>), ApiError> {
    let bytes = axum::body::to_bytes(request.into_body(), MAX_BODY)
        .await
        .map_err(|e| ApiError::invalid("body", e.to_string()))?;
    let input: TriggerIn = if bytes.iter().all(u8::is_ascii_whitespace) {
        TriggerIn::default()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| ApiError::invalid("body", e.to_string()))?
    };
    let (revision, files) = stored_project(&state, &tenant).await?;
    let project = loaded(&state, &tenant, revision, &files).await?;
    if !project.syncs.contains_key(&name) {
        return Err(ApiError::not_found(format!("sync `{name}`")));
    }
    let job = RunJob {
        tenant,
        sync: name.clone(),
        full_resync: input.full_resync,
        trigger: "manual".into(),
    };
    let job_id = queue::enqueue(&state.pool, job, None)
        .await
        .map_err(|e| ApiError::unavailable(format!("enqueueing the run: {e}")))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Enqueued {
            job_id,
            sync: name,
            status: "queued".into(),
        }),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct RunOut {
    pub id: RunId,
    pub sync: String,
    /// `running`, `succeeded`, `failed` or `killed`.
    pub status: String,
    pub full_resync: bool,
    /// Microseconds since the Unix epoch.
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
    pub stage: Option<String>,
    /// planned, added, changed, removed, unchanged, invalid, sent, ok,
    /// rejected, retried, throttled_waits, paced_waits, write_calls,
    /// requests, outcome_unknown.
    #[schema(value_type = Object)]
    pub counts: serde_json::Value,
    /// How long each stage took in milliseconds (`StageTimings`: load,
    /// discover, mappings, run and deletes add up to the run; read,
    /// transform, write and commit are the busy time of the run stage's
    /// overlapping parts; `instantiate_us`, in microseconds, is the part of
    /// load spent instantiating the run's `instances` plugin instances);
    /// `null` until the run ends.
    #[schema(value_type = Option<Object>)]
    pub timings: Option<sluice_state::StageTimings>,
}

#[derive(Serialize, ToSchema)]
pub struct RunList {
    pub runs: Vec<RunOut>,
}

#[derive(Deserialize, IntoParams)]
pub struct RunsQuery {
    /// Only runs of this sync.
    pub sync: Option<String>,
    /// At most this many, newest first (default 20, at most 1000).
    pub limit: Option<i64>,
}

/// The calling tenant's runs, newest first, read as that tenant (row-level
/// security applies).
pub(crate) async fn read_runs(
    state: &AppState,
    tenant: &str,
    sync: Option<&str>,
    limit: i64,
    id: Option<RunId>,
) -> Result<Vec<RunOut>, ApiError> {
    let counts = sluice_state::schema::COUNT_COLUMNS
        .iter()
        .map(|c| format!("'{c}', {c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT id, sync, status, full_resync, started_at, finished_at, error, stage,
                jsonb_build_object({counts}), stage_ms
         FROM sluice.runs
         WHERE tenant = $1 AND ($2::text IS NULL OR sync = $2) AND ($3::bigint IS NULL OR id = $3)
         ORDER BY id DESC LIMIT $4"
    );
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, &state.app_role, tenant).await?;
    let rows = tx.query(&sql, &[&tenant, &sync, &id, &limit]).await?;
    Ok(rows
        .iter()
        .map(|r| RunOut {
            id: r.get(0),
            sync: r.get(1),
            status: r.get(2),
            full_resync: r.get(3),
            started_at: r.get(4),
            finished_at: r.get(5),
            error: r.get(6),
            stage: r.get(7),
            counts: r.get(8),
            timings: sluice_state::StageTimings::from_json(r.get(9)),
        })
        .collect())
}

pub(crate) fn page_limit(limit: Option<i64>, default: i64) -> Result<i64, ApiError> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::invalid(
            "limit",
            format!("limit must be 1 to {MAX_PAGE}"),
        )),
    }
}

/// The calling tenant's runs, newest first.
#[utoipa::path(get, path = "/api/v1/runs", params(RunsQuery), responses(
    (status = 200, body = RunList), (status = 400, body = ErrorBody)))]
async fn list_runs(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
    query: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<RunList>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let limit = page_limit(q.limit, 20)?;
    let runs = read_runs(&state, &tenant, q.sync.as_deref(), limit, None).await?;
    Ok(Json(RunList { runs }))
}

pub(crate) fn run_id(text: &str) -> Result<RunId, ApiError> {
    text.parse()
        .map_err(|_| ApiError::invalid("id", format!("`{text}` is not a run id (an integer)")))
}

/// One run of the calling tenant: status, times and counts.
#[utoipa::path(get, path = "/api/v1/runs/{id}", params(("id" = i64, Path)), responses(
    (status = 200, body = RunOut), (status = 404, body = ErrorBody)))]
async fn get_run(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<RunOut>, ApiError> {
    let id = run_id(&id)?;
    read_runs(&state, &tenant, None, 1, Some(id))
        .await?
        .into_iter()
        .next()
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("run {id}")))
}

#[derive(Serialize, ToSchema)]
pub struct RejectedRow {
    /// `rejected` (the destination refused it) or `invalid` (it failed
    /// mapping or a transform).
    pub kind: String,
    /// The row's key as text, when it has one.
    pub key: Option<String>,
    pub message: String,
}

#[derive(Serialize, ToSchema)]
pub struct RejectedPage {
    pub run_id: RunId,
    pub rows: Vec<RejectedRow>,
    /// The offset of the next page, when there is one.
    pub next_offset: Option<i64>,
}

#[derive(Deserialize, IntoParams)]
pub struct PageQuery {
    pub offset: Option<i64>,
    /// Default 100, at most 1000.
    pub limit: Option<i64>,
}

/// The rows a run of the calling tenant had rejected or found invalid
/// (the sample the state keeps), with their messages, a page at a time.
#[utoipa::path(get, path = "/api/v1/runs/{id}/rejected", params(("id" = i64, Path), PageQuery),
    responses((status = 200, body = RejectedPage), (status = 404, body = ErrorBody)))]
async fn run_rejected(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
    Path(id): Path<String>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<RejectedPage>, ApiError> {
    let id = run_id(&id)?;
    let Query(q) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let limit = page_limit(q.limit, 100)?;
    let offset = q.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::invalid("offset", "offset must be 0 or more"));
    }
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, &state.app_role, &tenant).await?;
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
             WHERE tenant = $1 AND run_id = $2 ORDER BY seq OFFSET $3 LIMIT $4",
            &[&tenant, &id, &offset, &(limit + 1)],
        )
        .await?;
    let more = rows.len() as i64 > limit;
    let rows = rows
        .iter()
        .take(limit as usize)
        .map(|r| RejectedRow {
            kind: r.get(0),
            key: r
                .get::<_, Option<Vec<u8>>>(1)
                .map(|k| RowKey::from_bytes(k).to_string()),
            message: r.get(2),
        })
        .collect();
    Ok(Json(RejectedPage {
        run_id: id,
        rows,
        next_offset: more.then_some(offset + limit),
    }))
}
