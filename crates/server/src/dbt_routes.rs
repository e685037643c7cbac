//! Runs triggered by dbt: after a dbt invocation, the syncs whose models it
//! rebuilt successfully (and whose tests did not fail) are enqueued; the
//! choice is the one `sluice run --after-dbt` makes
//! ([`sluice_config::dbt::select_syncs`]).
//!
//! Two ways in:
//!
//! - `POST /api/v1/dbt/run-results` with a tenant token and dbt's
//!   `run_results.json` as the body (after `dbt build` in the tenant's own
//!   orchestration).
//! - `POST /api/v1/dbt/{tenant}/webhook`: dbt Cloud's job-run webhook. dbt
//!   Cloud signs each delivery: its `Authorization` header is the hex
//!   HMAC-SHA256 of the raw body under the webhook's secret (docs.getdbt.com
//!   "Webhooks for your jobs", "Validate a webhook"), which the tenant
//!   stores as its secret `DBT_WEBHOOK_SECRET`. The signature is checked on
//!   the raw bytes, in constant time, before the body is parsed. The
//!   payload says which run completed but not which models it rebuilt, so
//!   for a `job.run.completed` event with `runStatus` `Success` the server
//!   reads that run's `run_results.json` from the dbt Cloud API
//!   (`GET /api/v2/accounts/{accountId}/runs/{runId}/artifacts/run_results.json`)
//!   with the tenant's secret `DBT_CLOUD_API_TOKEN`, at `DBT_CLOUD_URL`
//!   (default `https://cloud.getdbt.com`), which must be inside the tenant's
//!   grant ceiling like any address a tenant's plugin reaches.
//!
//! dbt Cloud retries a delivery it saw no timely answer to, and its docs
//! say to deduplicate on `eventId`: each sync's job is keyed by the event
//! (`dbt-cloud:{eventId}:{sync}`), so a redelivery while the job waits is
//! the same job, not a second one. (A redelivery after the run started
//! enqueues the sync again; that run finds nothing changed and sends
//! nothing.)
//!
//! An unknown tenant, a tenant without `DBT_WEBHOOK_SECRET` and a wrong
//! signature all answer the same 401, so the route reveals no tenant.

use crate::api::AsTenant;
use crate::error::{ApiError, ErrorBody, ErrorDetail};
use crate::project::{self, TenantPolicy};
use crate::queue::{self, RunJob};
use crate::{AppState, Shared};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sluice_runtime::sandbox::policy::NetGrant;
use std::time::Duration;
use utoipa::ToSchema;

/// The tenant secret holding dbt Cloud's webhook secret.
pub const WEBHOOK_SECRET: &str = "DBT_WEBHOOK_SECRET";
/// The tenant secret holding a dbt Cloud API token (to read run artifacts).
pub const API_TOKEN: &str = "DBT_CLOUD_API_TOKEN";
/// The tenant secret holding the dbt Cloud access URL, when not the default.
pub const CLOUD_URL: &str = "DBT_CLOUD_URL";
pub const DEFAULT_CLOUD_URL: &str = "https://cloud.getdbt.com";
/// The largest webhook body read (dbt Cloud's are a few hundred bytes).
const MAX_WEBHOOK: usize = 1 << 20;
/// The largest `run_results.json` read.
const MAX_RUN_RESULTS: usize = 64 << 20;
/// The longest a request to dbt Cloud may take, whole.
const CLOUD_TIMEOUT: Duration = Duration::from_secs(30);

pub fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/api/v1/dbt/run-results",
            axum::routing::post(upload_run_results),
        )
        .route(
            "/api/v1/dbt/{tenant}/webhook",
            axum::routing::post(dbt_cloud_webhook),
        )
}

#[derive(Serialize, ToSchema)]
pub struct TriggeredSync {
    pub sync: String,
    /// The run job's id on the queue.
    pub job_id: i64,
}

#[derive(Serialize, ToSchema)]
pub struct SkippedSync {
    pub sync: String,
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct Triggered {
    /// The syncs enqueued: their models were rebuilt and their tests passed.
    pub enqueued: Vec<TriggeredSync>,
    /// Every other sync, with the reason.
    pub skipped: Vec<SkippedSync>,
    /// Set when the event itself triggers nothing (another event type, a
    /// run that did not succeed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
}

fn error(status: StatusCode, code: &'static str, field: &str, message: String) -> ApiError {
    ApiError {
        status,
        detail: ErrorDetail {
            code,
            message,
            field: Some(field.into()),
            problems: None,
        },
    }
}

async fn read_body(request: Request, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|_| {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "body",
                format!("the body is over {limit} bytes, the most accepted here"),
            )
        })
}

/// Enqueues the syncs of `tenant`'s current project that `run_results`
/// (the text of a `run_results.json`, named `label` in errors) says to run.
async fn trigger_after(
    state: &AppState,
    tenant: &str,
    run_results: &str,
    label: &str,
    trigger: &str,
    event: Option<&str>,
) -> Result<Triggered, ApiError> {
    let (revision, files) = project::stored(&state.pool, &state.app_role, tenant).await?;
    let policy =
        TenantPolicy::read(&state.pool, &state.app_role, state.keyring.as_ref(), tenant).await?;
    let project = project::load(&state.work_dir, tenant, revision, &files, policy).await?;
    // Tests are attributed to models through the dbt project's manifest.
    let dbt_dir = project
        .models
        .values()
        .find_map(|m| m.dbt.as_ref().map(|d| d.project.clone()))
        .unwrap_or_else(|| project.dir.clone());
    let results = sluice_config::dbt::run_results_from_str(run_results, label, &dbt_dir)
        .map_err(|why| ApiError::invalid("body", why))?;
    let (run, skipped) = sluice_config::dbt::select_syncs(&project, &results);
    let mut enqueued = Vec::new();
    for sync in run {
        let job = RunJob {
            tenant: tenant.to_owned(),
            sync: sync.clone(),
            full_resync: false,
            trigger: trigger.to_owned(),
        };
        let key = event.map(|id| format!("dbt-cloud:{id}:{sync}"));
        let job_id = queue::enqueue(&state.pool, job, key)
            .await
            .map_err(|e| ApiError::unavailable(format!("enqueueing a run of `{sync}`: {e}")))?;
        tracing::info!(tenant = %tenant, sync = %sync, trigger, "dbt: run enqueued");
        enqueued.push(TriggeredSync { sync, job_id });
    }
    Ok(Triggered {
        enqueued,
        skipped: skipped
            .into_iter()
            .map(|(sync, reason)| SkippedSync { sync, reason })
            .collect(),
        ignored: None,
    })
}

/// Enqueues the calling tenant's syncs whose dbt models the invocation
/// that wrote this `run_results.json` (the body) rebuilt successfully.
#[utoipa::path(post, path = "/api/v1/dbt/run-results",
    request_body(content = serde_json::Value, description = "dbt's target/run_results.json"),
    responses((status = 202, body = Triggered), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(crate) async fn upload_run_results(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
    request: Request,
) -> Result<(StatusCode, Json<Triggered>), ApiError> {
    let body = read_body(request, MAX_RUN_RESULTS).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::invalid("body", format!("run_results.json is not UTF-8: {e}")))?;
    let triggered = trigger_after(
        &state,
        &tenant,
        text,
        "(uploaded run_results.json)",
        "dbt run_results",
        None,
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(triggered)))
}

/// The parts of dbt Cloud's webhook payload read here.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WebhookEvent {
    /// Unique per event, the same in each redelivery of it.
    #[serde(default)]
    event_id: Option<String>,
    event_type: String,
    account_id: IdValue,
    data: WebhookData,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WebhookData {
    run_id: IdValue,
    #[serde(default)]
    run_status: String,
}

/// dbt Cloud sends ids as numbers in some fields and strings in others.
#[derive(Deserialize)]
#[serde(untagged)]
enum IdValue {
    Number(u64),
    Text(String),
}

impl IdValue {
    /// The id, if it is one (digits only: it goes into a URL path).
    fn digits(&self) -> Option<String> {
        match self {
            IdValue::Number(n) => Some(n.to_string()),
            IdValue::Text(t) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => {
                Some(t.clone())
            }
            IdValue::Text(_) => None,
        }
    }
}

fn bad_signature() -> ApiError {
    error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "authorization",
        format!(
            "the Authorization header is not the hex HMAC-SHA256 of the body under this \
             tenant's dbt webhook secret (the tenant's secret `{WEBHOOK_SECRET}`)"
        ),
    )
}

/// Whether `header` is the hex HMAC-SHA256 of `body` under `secret`,
/// compared in constant time.
pub fn signature_matches(secret: &str, body: &[u8], header: &str) -> bool {
    let Ok(tag) = hex::decode(header.trim()) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::verify(&key, body, &tag).is_ok()
}

/// dbt Cloud's job-run webhook for `tenant`: a completed, successful run
/// enqueues the syncs whose models it rebuilt (read from the run's
/// `run_results.json` through the dbt Cloud API).
#[utoipa::path(post, path = "/api/v1/dbt/{tenant}/webhook", params(("tenant" = String, Path)),
    security(()),
    request_body(content = serde_json::Value, description = "dbt Cloud's webhook payload, signed in `Authorization`"),
    responses((status = 202, body = Triggered), (status = 200, body = Triggered),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub(crate) async fn dbt_cloud_webhook(
    State(state): State<Shared>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    request: Request,
) -> Result<(StatusCode, Json<Triggered>), ApiError> {
    let signature = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = read_body(request, MAX_WEBHOOK).await?;
    if state.keyring.is_none() {
        return Err(ApiError::unavailable(
            "this server stores no secrets, so it holds no dbt webhook secret: start `sluice \
             serve` with --secrets-key-file",
        ));
    }
    let policy = match TenantPolicy::read(
        &state.pool,
        &state.app_role,
        state.keyring.as_ref(),
        &tenant,
    )
    .await
    {
        Ok(p) => p,
        // Not the caller's to learn whether the tenant exists.
        Err(e) if e.status == StatusCode::NOT_FOUND => return Err(bad_signature()),
        Err(e) => return Err(e),
    };
    let signed = match (policy.secrets.get(WEBHOOK_SECRET), signature) {
        (Some(secret), Some(sig)) => signature_matches(secret, &body, &sig),
        _ => false,
    };
    if !signed {
        tracing::warn!(tenant = %tenant, "dbt webhook refused: bad or missing signature");
        return Err(bad_signature());
    }
    let event: WebhookEvent = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(
            "body",
            format!("not dbt Cloud's webhook payload (eventType, accountId, data.runId): {e}"),
        )
    })?;
    if event.event_type != "job.run.completed" || event.data.run_status != "Success" {
        let ignored = format!(
            "event `{}` with run status `{}`: only a `job.run.completed` event of a run whose \
             status is `Success` triggers syncs",
            event.event_type, event.data.run_status
        );
        return Ok((
            StatusCode::OK,
            Json(Triggered {
                enqueued: Vec::new(),
                skipped: Vec::new(),
                ignored: Some(ignored),
            }),
        ));
    }
    let (Some(account), Some(run)) = (event.account_id.digits(), event.data.run_id.digits()) else {
        return Err(ApiError::invalid(
            "body",
            "accountId and data.runId must be numeric ids",
        ));
    };
    let text = fetch_run_results(&policy, &tenant, &account, &run).await?;
    let label = format!("(dbt Cloud run {run})");
    let triggered = trigger_after(
        &state,
        &tenant,
        &text,
        &label,
        &format!("dbt cloud run {run}"),
        event.event_id.as_deref(),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(triggered)))
}

/// Reads run `run`'s `run_results.json` from dbt Cloud with the tenant's
/// API token. The token is sent only to the tenant's dbt Cloud URL and is
/// never in an answer or a log.
async fn fetch_run_results(
    policy: &TenantPolicy,
    tenant: &str,
    account: &str,
    run: &str,
) -> Result<String, ApiError> {
    let token = policy.secrets.get(API_TOKEN).ok_or_else(|| {
        error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "dbt_cloud_token_missing",
            API_TOKEN,
            format!(
                "the webhook says which run completed but not which models it rebuilt; store a \
                 dbt Cloud API token as secret `{API_TOKEN}` (PUT /api/v1/secrets/{API_TOKEN}) \
                 so the server can read the run's run_results.json"
            ),
        )
    })?;
    let base = policy
        .secrets
        .get(CLOUD_URL)
        .map_or(DEFAULT_CLOUD_URL, String::as_str)
        .trim_end_matches('/')
        .to_owned();
    let allowed = NetGrant::parse(&base)
        .map(|grant| policy.ceiling.allows(&grant))
        .unwrap_or(false);
    if !allowed {
        return Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "dbt_cloud_url_refused",
            CLOUD_URL,
            format!(
                "the dbt Cloud URL in secret `{CLOUD_URL}` is not an http(s) address inside this \
                 tenant's grant ceiling ({})",
                policy.ceiling.describe()
            ),
        ));
    }
    let url = format!("{base}/api/v2/accounts/{account}/runs/{run}/artifacts/run_results.json");
    let unavailable = |why: String| {
        error(
            StatusCode::BAD_GATEWAY,
            "dbt_cloud_unavailable",
            "data.runId",
            format!("reading run {run}'s run_results.json from dbt Cloud: {why}"),
        )
    };
    // Only to addresses the ceiling allows, however the name resolves.
    let reach = std::sync::Arc::new(policy.ceiling.policy());
    let client =
        sluice_engine::outbound::client_for(&url, Some(&reach), CLOUD_TIMEOUT).map_err(|why| {
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "dbt_cloud_url_refused",
                CLOUD_URL,
                format!("the dbt Cloud URL in secret `{CLOUD_URL}` cannot be reached: {why}"),
            )
        })?;
    let response = client
        .get(&url)
        .header(header::AUTHORIZATION, format!("Token {token}"))
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| unavailable(sluice_engine::outbound::describe(e)))?;
    let status = response.status();
    if !status.is_success() {
        tracing::warn!(tenant = %tenant, run, %status, "dbt Cloud refused the artifact request");
        return Err(unavailable(format!("dbt Cloud answered {status}")));
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_RUN_RESULTS as u64)
    {
        return Err(unavailable(format!(
            "run_results.json is over {MAX_RUN_RESULTS} bytes"
        )));
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| unavailable(e.without_url().to_string()))?;
    if bytes.len() > MAX_RUN_RESULTS {
        return Err(unavailable(format!(
            "run_results.json is over {MAX_RUN_RESULTS} bytes"
        )));
    }
    String::from_utf8(bytes.to_vec()).map_err(|e| unavailable(format!("not UTF-8: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signature dbt Cloud's docs compute:
    /// `hmac.new(secret, body, sha256).hexdigest()`.
    fn sign(secret: &str, body: &[u8]) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        hex::encode(ring::hmac::sign(&key, body).as_ref())
    }

    #[test]
    fn only_the_hmac_of_the_exact_body_under_the_secret_matches() {
        let body = br#"{"eventType":"job.run.completed"}"#;
        let good = sign("s3cret", body);
        assert!(signature_matches("s3cret", body, &good));
        assert!(signature_matches("s3cret", body, &format!(" {good}\n")));
        assert!(!signature_matches("other", body, &good));
        assert!(!signature_matches("s3cret", b"{}", &good));
        assert!(!signature_matches("s3cret", body, "not hex"));
        assert!(!signature_matches("s3cret", body, &good[..62]));
    }

    #[test]
    fn ids_are_digits_only() {
        assert_eq!(IdValue::Number(42).digits().as_deref(), Some("42"));
        assert_eq!(IdValue::Text("7".into()).digits().as_deref(), Some("7"));
        assert_eq!(IdValue::Text("../x".into()).digits(), None);
        assert_eq!(IdValue::Text(String::new()).digits(), None);
    }
}
