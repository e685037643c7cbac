//! The web console `sluice serve` answers at `/`: one HTML page, a style
//! sheet and plain ES modules (no bundler, no build step), embedded in the
//! binary with `include_str!` so a deployed server needs no files beside
//! it.
//!
//! The assets hold no tenant data: the page signs in with a tenant's token
//! (kept in the tab's `sessionStorage`) and reads everything through the
//! API with it ([`crate::api`], [`crate::console_api`]), so the console
//! shows and does exactly what that token may.

use crate::error::ApiError;
use crate::Shared;
use axum::extract::Path;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// Each asset: its name under `/console/`, its content type and its text.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("assets/style.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/api.js"),
    ),
    (
        "views.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/views.js"),
    ),
    (
        "chart.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/chart.js"),
    ),
];

const INDEX: &str = include_str!("assets/index.html");

/// The page's security headers: nothing but this origin may run or be
/// fetched, and the page may not be framed.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
                   script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/", get(index))
        .route("/console/{file}", get(asset))
}

fn with_security_headers(response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    // Assets change with the binary: revalidate rather than keep a stale one.
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    response
}

async fn index() -> Response {
    with_security_headers(Html(INDEX))
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, text)) => {
            with_security_headers(([(header::CONTENT_TYPE, *content_type)], *text))
        }
        None => ApiError::not_found(format!("console asset `{file}`")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_only_embedded_assets() {
        for (name, _, text) in ASSETS {
            assert!(!text.is_empty(), "{name}");
        }
        for linked in ["/console/style.css", "/console/app.js"] {
            assert!(INDEX.contains(linked), "{linked}");
        }
    }
}
