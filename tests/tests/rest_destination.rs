//! The `rest` destination's README examples, run as they are written
//! against small emulators of the two APIs they target: Braze's
//! `/users/track` (per batch, bearer, per-item errors by index) and
//! Customer.io's Track API (per row, HTTP Basic, deletes); and OAuth 2.0
//! client credentials against a token endpoint that expires tokens.

use sluice_tests as common;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use common::*;
use sluice_config as config;
use sluice_engine::run::{RunOptions, RunReport, SyncEngine};
use sluice_runtime::sandbox::policy::Grants;
use sluice_state::{RunStatus, SqliteStore, StateStore};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/rest/examples");

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://127.0.0.1:{port}")
}

/// A project whose destination is the example file's, pointed at `url`.
fn project(dir: &Path, example: &str, real_host: &str, url: &str, sync: &str, csv: &str) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/people.csv"), csv).unwrap();
    let destination = std::fs::read_to_string(format!("{EXAMPLES}/{example}"))
        .unwrap()
        .replace(&format!("\"{real_host}\""), &format!("\"{url}\""))
        .replace(
            &format!("grants: [\"{real_host}\"]"),
            &format!("grants: [\"{}\"]", Grants::pattern_for_url(url).unwrap()),
        );
    let yaml = format!(
        "sources:\n  files: {{ plugin: files, config: {{ path: /data }}, grants: [\"dir:data:/data\"] }}\n\
         {destination}\
         models:\n  people: {{ source: files, object: people.csv, primary_key: id }}\n\
         syncs:\n  people:\n    model: people\n{sync}"
    );
    std::fs::write(dir.join("sluice.yaml"), yaml).unwrap();
}

async fn run(dir: &Path, env: &'static [(&'static str, &'static str)]) -> RunReport {
    let lookup = |name: &str| {
        env.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    let project = config::validate_with_env(dir, &lookup).unwrap_or_else(|d| panic!("{d:?}"));
    let test = runtime();
    let store = Mutex::new(SqliteStore::open_project(dir).unwrap());
    let engine = SyncEngine {
        project: &project,
        runtime: &test.runtime,
        store: &store,
    };
    engine.run("people", &RunOptions::default()).await.unwrap()
}

fn ledger(dir: &Path) -> Vec<String> {
    SqliteStore::open_project(dir)
        .unwrap()
        .ledger("people")
        .unwrap()
        .into_iter()
        .map(|l| l.message)
        .collect()
}

// --- Braze: POST /users/track -------------------------------------------

#[derive(Clone, Default)]
struct Braze {
    users: Arc<Mutex<BTreeMap<String, serde_json::Value>>>,
    requests: Arc<Mutex<Vec<usize>>>,
}

const BRAZE_KEY: &str = "braze-test-key";

/// Braze's documented answers: 401 without the REST API key; 400 for more
/// than 75 attributes; 201 `{"message": "success", "errors": [...]}` where
/// each minor error names its `input_array` and `index`, the other objects
/// applied.
async fn users_track(
    State(braze): State<Braze>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {BRAZE_KEY}"))
    {
        return (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({"message": "Invalid API key: "})),
        )
            .into_response();
    }
    let attributes = body["attributes"].as_array().cloned().unwrap_or_default();
    if attributes.len() > 75 {
        return (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"message": "Too many attributes: at most 75 per request"})),
        )
            .into_response();
    }
    braze.requests.lock().unwrap().push(attributes.len());
    let mut errors = Vec::new();
    for (index, attribute) in attributes.iter().enumerate() {
        match attribute["external_id"].as_str() {
            Some(id) if !id.is_empty() => {
                braze
                    .users
                    .lock()
                    .unwrap()
                    .insert(id.to_string(), attribute.clone());
            }
            _ => errors.push(serde_json::json!({
                "type": "'external_id', 'braze_id', 'user_alias', 'email' or 'phone' is required",
                "input_array": "attributes",
                "index": index,
            })),
        }
    }
    let mut answer = serde_json::json!({"message": "success", "attributes_processed": attributes.len() - errors.len()});
    if !errors.is_empty() {
        answer["errors"] = serde_json::Value::Array(errors);
    }
    (StatusCode::CREATED, Json(answer)).into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_braze_example_sends_75_a_request_and_rejects_only_the_items_braze_refuses() {
    let braze = Braze::default();
    let url = serve(
        axum::Router::new()
            .route("/users/track", axum::routing::post(users_track))
            .with_state(braze.clone()),
    )
    .await;
    let mut csv = String::from("id,external_id,email,ltv\n");
    for i in 0..160 {
        // Row 100 has no external id: Braze refuses that item only.
        let external = if i == 100 {
            String::new()
        } else {
            format!("user-{i}")
        };
        csv.push_str(&format!("{i},{external},u{i}@example.com,{i}.5\n"));
    }
    let dir = tempfile::tempdir().unwrap();
    project(
        dir.path(),
        "braze.yaml",
        "https://rest.iad-01.braze.com",
        &url,
        "    destination: braze\n    object: users\n    mode: upsert\n    identifier: external_id\n    batch_size: 200\n",
        &csv,
    );
    let env: &[(&str, &str)] = &[("BRAZE_API_KEY", BRAZE_KEY)];
    let report = run(dir.path(), env).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    assert_eq!(
        (report.counts.ok, report.counts.rejected),
        (159, 1),
        "{:?}",
        report.counts
    );
    assert_eq!(
        *braze.requests.lock().unwrap(),
        vec![75, 75, 10],
        "max_rows splits the batch"
    );
    let users = braze.users.lock().unwrap().clone();
    assert_eq!(users.len(), 159);
    assert_eq!(users["user-7"]["email"], "u7@example.com");
    // CSV values are text unless the source declares a type.
    assert_eq!(users["user-7"]["lifetime_value"], "7.5");
    let messages = ledger(dir.path());
    assert_eq!(messages.len(), 1);
    assert!(messages[0].contains("'external_id'"), "{messages:?}");

    // A wrong key fails the run as an authentication error, nothing claimed.
    let dir = tempfile::tempdir().unwrap();
    project(
        dir.path(),
        "braze.yaml",
        "https://rest.iad-01.braze.com",
        &url,
        "    destination: braze\n    object: users\n    mode: upsert\n    identifier: external_id\n",
        "id,external_id,email,ltv\n1,a,a@x.com,1\n",
    );
    let report = run(dir.path(), &[("BRAZE_API_KEY", "wrong")]).await;
    assert_eq!(report.status, RunStatus::Failed);
    let error = report.error.unwrap_or_default();
    assert!(
        error.contains("401") && error.contains("Invalid API key"),
        "{error}"
    );
}

// --- Customer.io: PUT / DELETE /api/v1/customers/{id} -------------------

#[derive(Clone, Default)]
struct CustomerIo {
    people: Arc<Mutex<BTreeMap<String, serde_json::Value>>>,
}

const CIO_AUTH: &str = "Basic c2l0ZS0xOmtleS0x"; // site-1:key-1

fn cio_refused(status: StatusCode, error: &str) -> Response {
    (status, Json(serde_json::json!({"meta": {"error": error}}))).into_response()
}

/// Track API v1: HTTP Basic with the site id and API key; ids of at most
/// 150 bytes; 200 `{}` on success, `{"meta": {"error": ...}}` otherwise.
async fn put_customer(
    State(cio): State<CustomerIo>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(CIO_AUTH) {
        return cio_refused(StatusCode::UNAUTHORIZED, "Unauthorized request");
    }
    if id.len() > 150 {
        return cio_refused(
            StatusCode::BAD_REQUEST,
            "identifier is too long (150 bytes at most)",
        );
    }
    cio.people.lock().unwrap().insert(id, body);
    Json(serde_json::json!({})).into_response()
}

async fn delete_customer(
    State(cio): State<CustomerIo>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(CIO_AUTH) {
        return cio_refused(StatusCode::UNAUTHORIZED, "Unauthorized request");
    }
    cio.people.lock().unwrap().remove(&id);
    Json(serde_json::json!({})).into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_customerio_example_puts_each_person_and_mirror_deletes_the_dropped() {
    let cio = CustomerIo::default();
    let url = serve(
        axum::Router::new()
            .route(
                "/api/v1/customers/{id}",
                axum::routing::put(put_customer).delete(delete_customer),
            )
            .with_state(cio.clone()),
    )
    .await;
    let long_id = "x".repeat(200);
    let csv = format!(
        "id,email,plan\nc/1,a@x.com,pro\nc2,b@x.com,free\nc3,c@x.com,pro\n{long_id},d@x.com,free\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let sync = "    destination: customerio\n    object: customers\n    mode: mirror\n    identifier: id\n";
    project(
        dir.path(),
        "customerio.yaml",
        "https://track.customer.io",
        &url,
        sync,
        &csv,
    );
    let env: &[(&str, &str)] = &[("CIO_SITE_ID", "site-1"), ("CIO_API_KEY", "key-1")];
    let first = run(dir.path(), env).await;
    assert_eq!(first.status, RunStatus::Succeeded, "{:?}", first.error);
    assert_eq!(
        (first.counts.ok, first.counts.rejected),
        (3, 1),
        "{:?}",
        first.counts
    );
    assert_eq!(first.counts.requests, 4, "one request per row");
    let people = cio.people.lock().unwrap().clone();
    assert_eq!(
        people.keys().cloned().collect::<Vec<_>>(),
        vec!["c/1", "c2", "c3"],
        "the id `c/1` travels as one path segment"
    );
    assert_eq!(
        people["c2"],
        serde_json::json!({"email": "b@x.com", "plan": "free"})
    );
    let messages = ledger(dir.path());
    assert!(
        messages.len() == 1
            && messages[0].contains("HTTP 400")
            && messages[0].contains("identifier is too long"),
        "{messages:?}"
    );

    // c3 leaves the model: mirror mode deletes it, and only it.
    std::fs::write(
        dir.path().join("data/people.csv"),
        "id,email,plan\nc/1,a@x.com,pro\nc2,b@x.com,free\n",
    )
    .unwrap();
    let second = run(dir.path(), env).await;
    assert_eq!(second.status, RunStatus::Succeeded, "{:?}", second.error);
    assert_eq!(second.counts.removed, 1, "{:?}", second.counts);
    assert_eq!(
        cio.people
            .lock()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
        vec!["c/1", "c2"]
    );
}

// --- OAuth 2.0 client credentials -----------------------------------------

#[derive(Clone, Default)]
struct OAuthApi {
    issued: Arc<Mutex<Vec<String>>>,
    /// Calls each token may make before the API answers 401.
    uses: Arc<Mutex<BTreeMap<String, usize>>>,
    received: Arc<Mutex<Vec<serde_json::Value>>>,
}

async fn token(State(api): State<OAuthApi>, headers: HeaderMap, body: String) -> Response {
    // RFC 6749 2.3.1: client credentials in HTTP Basic (the plugin's default).
    let basic = headers.get("authorization").and_then(|v| v.to_str().ok());
    if basic != Some("Basic YXBwOnMzY3IzdA==") || !body.contains("grant_type=client_credentials") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let mut issued = api.issued.lock().unwrap();
    let token = format!("tok-{}", issued.len());
    issued.push(token.clone());
    api.uses.lock().unwrap().insert(token.clone(), 3);
    Json(serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600}))
        .into_response()
}

async fn contacts(
    State(api): State<OAuthApi>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    {
        let mut uses = api.uses.lock().unwrap();
        match uses.get_mut(&bearer) {
            Some(left) if *left > 0 => *left -= 1,
            _ => return (StatusCode::UNAUTHORIZED, "token expired").into_response(),
        }
    }
    api.received.lock().unwrap().push(body);
    StatusCode::NO_CONTENT.into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_client_credentials_fetch_a_token_and_renew_it_on_401() {
    let api = OAuthApi::default();
    let url = serve(
        axum::Router::new()
            .route("/oauth/token", axum::routing::post(token))
            .route("/v1/contacts", axum::routing::post(contacts))
            .with_state(api.clone()),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let mut csv = String::from("id,email\n");
    for i in 0..8 {
        csv.push_str(&format!("{i},p{i}@x.com\n"));
    }
    std::fs::write(dir.path().join("data/people.csv"), csv).unwrap();
    let grant = Grants::pattern_for_url(&url).unwrap();
    let yaml = format!(
        r#"
sources:
  files: {{ plugin: files, config: {{ path: /data }}, grants: ["dir:data:/data"] }}
destinations:
  api:
    plugin: rest
    config:
      base_url: "{url}"
      auth:
        type: oauth_client_credentials
        token_url: "{url}/oauth/token"
        client_id: app
        client_secret: "${{API_SECRET}}"
      requests:
        insert:
          path: /v1/contacts
          body: '{{"email": {{{{ row.email | tojson }}}}}}'
    grants: ["{grant}"]
models:
  people: {{ source: files, object: people.csv, primary_key: id }}
syncs:
  people:
    model: people
    destination: api
    object: contacts
    mode: insert
    identifier: id
"#
    );
    std::fs::write(dir.path().join("sluice.yaml"), yaml).unwrap();
    let report = run(dir.path(), &[("API_SECRET", "s3cr3t")]).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    assert_eq!(report.counts.ok, 8, "{:?}", report.counts);
    assert_eq!(api.received.lock().unwrap().len(), 8, "no row sent twice");
    // 3 calls a token: 8 rows need 3 tokens, each fetched after a 401.
    assert_eq!(api.issued.lock().unwrap().len(), 3);
}
