//! The "cloud storage" EXTERNAL_LINKS point to: a second listener, so links
//! are on another host (port) than the API, as presigned URLs are. A link works
//! without auth until it expires (403 `AccessDenied`, as S3 says it); a request
//! that carries `Authorization` is refused (400 `InvalidArgument`, S3's "Only
//! one auth mechanism allowed"), which is why clients must not send it.

use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context as _;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::exec::Link;
use crate::handle::Shared;

/// Binds the storage listener on `bind`, any free port, and serves it.
pub(crate) async fn start(shared: &Arc<Shared>, bind: std::net::IpAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind((bind, 0))
        .await
        .context("binding the Databricks emulator's storage listener")?;
    let mut addr = listener
        .local_addr()
        .context("reading the storage listener's address")?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    *shared.databricks.storage_url.lock() = format!("http://{addr}");
    let app = Router::new()
        .route("/results/{token}", get(file))
        .with_state(shared.clone());
    let task = tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::warn!(error = %err, "Databricks storage listener stopped");
        }
    });
    *shared.databricks.storage_task.lock() = Some(task.abort_handle());
    Ok(())
}

/// A new link to chunk `chunk` of statement `id`: its URL and its expiry
/// (RFC 3339).
pub(crate) fn issue_link(shared: &Shared, id: &str, chunk: usize) -> (String, String) {
    let lifetime = shared.databricks.settings.lock().link_lifetime;
    let expires = SystemTime::now() + lifetime;
    let token = shared.random_alnum(32);
    shared.databricks.statements.add_link(
        token.clone(),
        Link {
            statement: id.to_owned(),
            chunk,
            expires,
        },
    );
    let url = format!(
        "{}/results/{token}?X-Amz-Expires={}",
        shared.databricks.storage_url.lock(),
        lifetime.as_secs()
    );
    let expiration = chrono::DateTime::<chrono::Utc>::from(expires)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    (url, expiration)
}

fn s3_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/xml")],
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"),
    )
        .into_response()
}

/// `GET /results/{token}`: the chunk's JSON_ARRAY rows.
async fn file(
    State(shared): State<Arc<Shared>>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    if headers.contains_key(header::AUTHORIZATION) {
        shared.databricks.statements.count_link_with_authorization();
        return s3_error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified",
        );
    }
    let Some(link) = shared.databricks.statements.link(&token) else {
        return s3_error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "The request signature we calculated does not match the signature you provided.",
        );
    };
    if link.expires <= SystemTime::now() {
        return s3_error(StatusCode::FORBIDDEN, "AccessDenied", "Request has expired");
    }
    let Some(result) = shared.databricks.statements.result(&link.statement) else {
        return s3_error(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        );
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        result.chunk_bytes(link.chunk),
    )
        .into_response()
}
