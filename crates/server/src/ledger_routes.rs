//! A sync's rejected-row ledger over the API: every row the destination
//! refused that no later run delivered, with its message, attempts and the
//! runs that rejected it, searched and paged, and downloaded whole as CSV.
//!
//! A run's page shows the rows that run sampled (at most
//! `sluice_state::schema::MAX_SAMPLES`); the ledger is the whole set, however
//! large. Both routes read it through a portal, in key order, so memory
//! holds one page (or one CSV chunk) whatever the ledger's size. A search
//! matches the key as Sluice prints it, which the database cannot see (keys
//! are stored encoded), so it reads the sync's whole ledger; a page without
//! a search is read with `OFFSET`/`LIMIT`.
//!
//! Like every tenant route, both read as the caller's tenant (row-level
//! security), and a sync outside the tenant's project answers 404.

use crate::api::AsTenant;
use crate::console_api::{project_with_sync, SearchPage, SearchQuery};
use crate::db::tenant_tx;
use crate::error::{ApiError, ErrorBody};
use crate::{AppState, Shared};
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use futures::{pin_mut, TryStreamExt};
use serde::Serialize;
use sluice_state::{RowKey, RunId};
use tokio_postgres::Row;
use utoipa::{OpenApi, ToSchema};

/// How many CSV bytes are gathered before they are sent.
const CSV_CHUNK: usize = 64 * 1024;

const LEDGER_SQL: &str = "SELECT row_key, message, attempts, first_run, last_run
     FROM sluice.rejected WHERE tenant = $1 AND sync = $2 ORDER BY row_key";

#[derive(OpenApi)]
#[openapi(
    paths(sync_rejected, sync_rejected_csv),
    components(schemas(LedgerRow, LedgerPage))
)]
pub struct LedgerDoc;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/syncs/{name}/rejected", get(sync_rejected))
        .route("/api/v1/syncs/{name}/rejected.csv", get(sync_rejected_csv))
}

/// A row of the rejected-row ledger.
#[derive(Serialize, ToSchema, Debug, PartialEq)]
pub struct LedgerRow {
    /// The row's key as `sluice rejected` prints it.
    pub key: String,
    /// The destination's message at the last rejection.
    pub message: String,
    /// How many runs sent this content and had it rejected.
    pub attempts: i64,
    pub first_run: RunId,
    pub last_run: RunId,
}

#[derive(Serialize, ToSchema)]
pub struct LedgerPage {
    pub sync: String,
    /// Rows in the ledger that match `q` (all of them without one).
    pub total: i64,
    pub offset: i64,
    pub rows: Vec<LedgerRow>,
}

fn ledger_row(r: &Row) -> LedgerRow {
    LedgerRow {
        key: RowKey::from_bytes(r.get::<_, Vec<u8>>(0)).to_string(),
        message: r.get(1),
        attempts: r.get(2),
        first_run: r.get(3),
        last_run: r.get(4),
    }
}

/// A page of a sync's rejected-row ledger, in key order, with the rows whose
/// key or message contains `q` (case-insensitive) when it is given.
#[utoipa::path(get, path = "/api/v1/syncs/{name}/rejected", params(("name" = String, Path), SearchQuery),
    responses((status = 200, body = LedgerPage), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn sync_rejected(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
    Path(name): Path<String>,
    query: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Json<LedgerPage>, ApiError> {
    let page = SearchPage::of(query)?;
    project_with_sync(&state, &tenant, &name).await?;
    let (total, rows) = if page.needle.is_empty() {
        ledger_page(&state, &tenant, &name, page.offset, page.limit).await?
    } else {
        search_ledger(&state, &tenant, &name, &page).await?
    };
    Ok(Json(LedgerPage {
        sync: name,
        total,
        offset: page.offset,
        rows,
    }))
}

/// One page of the whole ledger, and its size.
async fn ledger_page(
    state: &AppState,
    tenant: &str,
    sync: &str,
    offset: i64,
    limit: i64,
) -> Result<(i64, Vec<LedgerRow>), ApiError> {
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, &state.app_role, tenant).await?;
    let total: i64 = tx
        .query_one(
            "SELECT COUNT(*) FROM sluice.rejected WHERE tenant = $1 AND sync = $2",
            &[&tenant, &sync],
        )
        .await?
        .get(0);
    let rows = tx
        .query(
            &format!("{LEDGER_SQL} OFFSET $3 LIMIT $4"),
            &[&tenant, &sync, &offset, &limit],
        )
        .await?;
    tx.commit().await?;
    Ok((total, rows.iter().map(ledger_row).collect()))
}

/// The page of the rows matching the search, read through the whole
/// ledger, and how many match.
async fn search_ledger(
    state: &AppState,
    tenant: &str,
    sync: &str,
    page: &SearchPage,
) -> Result<(i64, Vec<LedgerRow>), ApiError> {
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, &state.app_role, tenant).await?;
    let stream = tx
        .query_raw(
            LEDGER_SQL,
            [&tenant as &(dyn tokio_postgres::types::ToSql + Sync), &sync],
        )
        .await?;
    pin_mut!(stream);
    let (mut total, mut rows) = (0i64, Vec::new());
    while let Some(r) = stream.try_next().await? {
        let row = ledger_row(&r);
        if !page.matches(Some(&row.key), &row.message) {
            continue;
        }
        if total >= page.offset && (rows.len() as i64) < page.limit {
            rows.push(row);
        }
        total += 1;
    }
    tx.commit().await?;
    Ok((total, rows))
}

/// A sync's whole rejected-row ledger as CSV
/// (`key,message,attempts,first_run,last_run`), streamed in key order.
#[utoipa::path(get, path = "/api/v1/syncs/{name}/rejected.csv", params(("name" = String, Path)),
    responses((status = 200, description = "text/csv: key,message,attempts,first_run,last_run"),
              (status = 404, body = ErrorBody)))]
async fn sync_rejected_csv(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    project_with_sync(&state, &tenant, &name).await?;
    // The database is tried before answering, so one that is down answers
    // an error rather than a 200 whose body breaks at once.
    drop(state.pool.get().await?);
    let (chunks, body) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let sync = name.clone();
    tokio::spawn(async move {
        if let Err(e) = stream_csv(&state, &tenant, &sync, &chunks).await {
            tracing::warn!(%tenant, %sync, "the rejected-rows CSV stopped: {e}");
            // The client sees the body end in an error, never a short file
            // that looks whole.
            let _ = chunks.send(Err(std::io::Error::other(e.to_string()))).await;
        }
    });
    let body = futures::stream::unfold(body, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"{}-rejected.csv\"",
                    csv_file_stem(&name)
                ),
            ),
        ],
        Body::from_stream(body),
    ))
}

/// Writes the ledger as CSV into `chunks`, a chunk at a time.
async fn stream_csv(
    state: &AppState,
    tenant: &str,
    sync: &str,
    chunks: &tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> anyhow::Result<()> {
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, &state.app_role, tenant)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.detail.message))?;
    let stream = tx
        .query_raw(
            LEDGER_SQL,
            [&tenant as &(dyn tokio_postgres::types::ToSql + Sync), &sync],
        )
        .await?;
    pin_mut!(stream);
    let mut writer = csv::Writer::from_writer(Vec::with_capacity(CSV_CHUNK));
    writer.write_record(["key", "message", "attempts", "first_run", "last_run"])?;
    while let Some(r) = stream.try_next().await? {
        let row = ledger_row(&r);
        writer.write_record([
            row.key.as_str(),
            row.message.as_str(),
            &row.attempts.to_string(),
            &row.first_run.to_string(),
            &row.last_run.to_string(),
        ])?;
        if writer.get_ref().len() >= CSV_CHUNK {
            let full = std::mem::replace(
                &mut writer,
                csv::Writer::from_writer(Vec::with_capacity(CSV_CHUNK)),
            );
            let full = full.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
            if chunks.send(Ok(Bytes::from(full))).await.is_err() {
                return Ok(()); // the client went away
            }
        }
    }
    let rest = writer.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    let _ = chunks.send(Ok(Bytes::from(rest))).await;
    tx.commit().await?;
    Ok(())
}

/// A file name part from a sync name: what is not a letter, digit, `-` or
/// `_` becomes `_`, so the header stays a valid quoted string.
fn csv_file_stem(sync: &str) -> String {
    sync.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_keep_only_safe_characters() {
        assert_eq!(csv_file_stem("crm/\"users\" 2"), "crm__users__2");
    }
}
