//! A tenant's connections, models and syncs as API resources, kept in its
//! project. Syncs are code: the project's `sluice.yaml` is the one truth,
//! written whole by `PUT /api/v1/project` (`sluice apply --server`). These
//! routes read it without parsing it on the client's side, and write one
//! entry of it at a time (`PUT`/`DELETE` `/api/v1/connections/{name}`,
//! `/api/v1/models/{name}`, `/api/v1/syncs/{name}`): the entry's lines in
//! `sluice.yaml` are replaced and every other line kept
//! (`sluice_config::edit`), the result is validated like an upload and
//! stored as the next revision, so `GET /api/v1/project` shows the edit and
//! the next `sluice apply` replaces it. An edit is made to the revision it
//! read and stored only over that one (retried on a newer one, or answered
//! 412 when the caller pinned the revision with `If-Match`).
//!
//! A config value that comes from a secret (`${NAME}`) is shown as
//! `<redacted>`, never its value; the secrets themselves are
//! `/api/v1/secrets`. A write that holds `<redacted>` is refused, so a
//! read, changed and written back entry cannot replace a secret with that
//! word.

use crate::api::{body, loaded, store_project, stored_project, AsTenant, Expect, ProjectOut};
use crate::error::{ApiError, ErrorBody};
use crate::{AppState, Shared};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sluice_config::edit::{set_entry, EditError};
use sluice_config::{ModelRead, PluginInstance, PluginRef, Project, PROJECT_FILE, REDACTED};
use std::collections::BTreeMap;
use utoipa::{IntoParams, OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    paths(
        list_connections,
        get_connection,
        put_connection,
        delete_connection,
        list_models,
        get_model,
        put_model,
        delete_model,
        put_sync,
        delete_sync
    ),
    components(schemas(ConnectionInfo, ConnectionList, ConnectionIn, ModelInfo, ModelList))
)]
pub struct ProjectDoc;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/connections", get(list_connections))
        .route(
            "/api/v1/connections/{name}",
            get(get_connection)
                .put(put_connection)
                .delete(delete_connection),
        )
        .route("/api/v1/models", get(list_models))
        .route(
            "/api/v1/models/{name}",
            get(get_model).put(put_model).delete(delete_model),
        )
}

/// A source or a destination of the project.
#[derive(Serialize, ToSchema)]
pub struct ConnectionInfo {
    pub name: String,
    /// `source` or `destination`.
    pub kind: &'static str,
    /// The plugin as the project names it (`hubspot`, `webhook@0.1.0`,
    /// `uploaded:NAME@sha256:HEX`, or a `.wasm` file's name).
    pub plugin: String,
    /// Its `config:`, secrets shown as `<redacted>`.
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    /// Its grants as written (a grant from a secret as `<redacted>`).
    pub grants: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ConnectionList {
    pub revision: i64,
    pub connections: Vec<ConnectionInfo>,
}

/// A model of the project.
#[derive(Serialize, ToSchema)]
pub struct ModelInfo {
    pub name: String,
    /// The source connection it reads.
    pub source: String,
    /// The object (table, file) it reads, when it reads one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// Its SQL, when it runs a query (`<redacted>` if from a secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    pub primary_key: Vec<String>,
    /// The dbt model it reads, when it is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dbt: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ModelList {
    pub revision: i64,
    pub models: Vec<ModelInfo>,
}

fn plugin_text(plugin: &PluginRef) -> String {
    match plugin {
        // The server's path to the file is not the tenant's business.
        PluginRef::Path(path) => path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        PluginRef::Installed(name) => name.clone(),
        PluginRef::Pinned { name, pin } => format!("{name}@{pin}"),
        PluginRef::Uploaded { name, sha256 } => {
            format!("{}{name}@sha256:{sha256}", sluice_config::UPLOADED_PREFIX)
        }
    }
}

fn connection(kind: &'static str, cfg: &PluginInstance) -> ConnectionInfo {
    ConnectionInfo {
        name: cfg.name.clone(),
        kind,
        plugin: plugin_text(&cfg.plugin),
        config: serde_json::Value::Object(
            cfg.config
                .iter()
                .map(|(k, v)| (k.clone(), v.to_shown_json()))
                .collect(),
        ),
        grants: cfg.grants.iter().map(|g| g.text.to_string()).collect(),
    }
}

/// Every connection of `project`: its sources, then its destinations.
fn connections(project: &Project) -> impl Iterator<Item = ConnectionInfo> + '_ {
    let sources = project.sources.values().map(|s| connection("source", s));
    let destinations = project
        .destinations
        .values()
        .map(|d| connection("destination", &d.instance));
    sources.chain(destinations)
}

fn model(m: &sluice_config::Model) -> ModelInfo {
    let (object, query) = match &m.read {
        ModelRead::Object(o) => (Some(o.to_string()), None),
        ModelRead::Query(q) => (None, Some(q.to_string())),
    };
    ModelInfo {
        name: m.name.clone(),
        source: m.source.clone(),
        object,
        query,
        primary_key: m.primary_key.clone(),
        dbt: m.dbt.as_ref().map(|d| d.name.clone()),
    }
}

/// The calling tenant's project as stored, validated.
async fn current(state: &Shared, tenant: &str) -> Result<(i64, Project), ApiError> {
    let (revision, files) = stored_project(state, tenant).await?;
    Ok((revision, loaded(state, tenant, revision, &files).await?))
}

/// The sources and destinations of the calling tenant's project.
#[utoipa::path(get, path = "/api/v1/connections", responses(
    (status = 200, body = ConnectionList), (status = 404, body = ErrorBody)))]
async fn list_connections(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
) -> Result<Json<ConnectionList>, ApiError> {
    let (revision, project) = current(&state, &tenant).await?;
    Ok(Json(ConnectionList {
        revision,
        connections: connections(&project).collect(),
    }))
}

/// One source or destination of the calling tenant's project (a source
/// first, should both have the name).
#[utoipa::path(get, path = "/api/v1/connections/{name}", params(("name" = String, Path)),
    responses((status = 200, body = ConnectionInfo), (status = 404, body = ErrorBody)))]
async fn get_connection(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<ConnectionInfo>, ApiError> {
    let (_, project) = current(&state, &tenant).await?;
    let found = connections(&project).find(|c| c.name == name);
    found
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("connection `{name}`")))
}

/// The models of the calling tenant's project.
#[utoipa::path(get, path = "/api/v1/models", responses(
    (status = 200, body = ModelList), (status = 404, body = ErrorBody)))]
async fn list_models(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
) -> Result<Json<ModelList>, ApiError> {
    let (revision, project) = current(&state, &tenant).await?;
    Ok(Json(ModelList {
        revision,
        models: project.models.values().map(model).collect(),
    }))
}

/// One model of the calling tenant's project.
#[utoipa::path(get, path = "/api/v1/models/{name}", params(("name" = String, Path)),
    responses((status = 200, body = ModelInfo), (status = 404, body = ErrorBody)))]
async fn get_model(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<ModelInfo>, ApiError> {
    let (_, project) = current(&state, &tenant).await?;
    project
        .models
        .get(&name)
        .map(|m| Json(model(m)))
        .ok_or_else(|| ApiError::not_found(format!("model `{name}`")))
}

// ----- writes: one entry of sluice.yaml at a time -----

/// A source or destination as written in `sluice.yaml`: `kind`, and the
/// entry's own fields (`plugin`, `config`, `grants`, and for a
/// destination `rate_limit` and `limits`), validated as the project file's.
#[derive(Deserialize, ToSchema)]
pub struct ConnectionIn {
    /// `source` or `destination`.
    pub kind: ConnectionKind,
    /// The entry: `{"plugin": "hubspot", "config": {...}, "grants": [...]}`.
    /// A secret is written `${NAME}`.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub entry: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize, ToSchema, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionKind {
    Source,
    Destination,
}

impl ConnectionKind {
    fn section(self) -> &'static str {
        match self {
            ConnectionKind::Source => "sources",
            ConnectionKind::Destination => "destinations",
        }
    }
}

#[derive(Deserialize, IntoParams)]
pub struct KindQuery {
    /// Which one to delete when a source and a destination share the name.
    kind: Option<ConnectionKind>,
}

/// An edit of the stored `sluice.yaml`.
type Edit<'a> = &'a (dyn Fn(&str) -> Result<String, ApiError> + Sync);

/// How many times an edit is redone on a newer revision before the write
/// is answered 409 (only without `If-Match`).
const EDIT_ATTEMPTS: usize = 5;

/// Applies `edit` to the tenant's stored project file and stores the
/// result as the next revision: redone on the newer revision when another
/// write came first, unless the caller pinned one with `If-Match`.
async fn edit_project(
    state: &AppState,
    tenant: &str,
    headers: &HeaderMap,
    edit: Edit<'_>,
) -> Result<ProjectOut, ApiError> {
    let pinned = if_match(headers)?;
    for _ in 0..EDIT_ATTEMPTS {
        let (expect, mut files) = match stored_project(state, tenant).await {
            Ok((revision, files)) => (Expect::Revision(revision), files),
            Err(e) if e.status == StatusCode::NOT_FOUND => (Expect::Absent, BTreeMap::new()),
            Err(e) => return Err(e),
        };
        if let Some(want) = pinned {
            if !matches!(expect, Expect::Revision(r) if r == want) {
                return Err(revision_moved(want, expect));
            }
        }
        let text = files.get(PROJECT_FILE).map_or("", String::as_str);
        let edited = edit(text)?;
        files.insert(PROJECT_FILE.to_owned(), edited);
        match store_project(state, tenant, &files, expect).await? {
            Some(stored) => return Ok(stored),
            None if pinned.is_some() => {
                return Err(ApiError::precondition_failed(
                    "the project changed while it was being edited; read it again",
                ))
            }
            None => continue,
        }
    }
    Err(ApiError::conflict(
        "the project kept changing under this edit; try again",
    ))
}

/// `If-Match: 7` or `If-Match: "7"`: the revision the edit is made to.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(axum::http::header::IF_MATCH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(|v| v.trim().trim_matches('"'))
        .and_then(|v| v.parse::<i64>().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::invalid(
                "If-Match",
                "must be the project's revision, e.g. `If-Match: 7`",
            )
        })
}

fn revision_moved(want: i64, found: Expect) -> ApiError {
    let found = match found {
        Expect::Revision(r) => format!("revision {r}"),
        _ => "no project".to_owned(),
    };
    ApiError::precondition_failed(format!(
        "the edit was made to revision {want}, but the stored project is {found}; read it again"
    ))
}

/// `section.name` set to `entry` (or removed) in `text`, as an API answer.
fn edited(
    text: &str,
    section: &str,
    name: &str,
    entry: Option<&serde_json::Value>,
) -> Result<String, ApiError> {
    set_entry(text, section, name, entry).map_err(|e| match e {
        EditError::NoSuchEntry { .. } => ApiError::not_found(format!("{section} entry `{name}`")),
        EditError::NotAnObject { .. } => ApiError::invalid("body", e.to_string()),
        _ => ApiError::conflict(e.to_string()),
    })
}

/// Refuses `<redacted>` anywhere in a written entry: it is what a read
/// shows for a secret, never a value to store.
fn refuse_redacted(value: &serde_json::Value, at: &str) -> Result<(), ApiError> {
    match value {
        serde_json::Value::String(s) if s == REDACTED => Err(ApiError::invalid(
            at,
            format!("`{REDACTED}` is how a read shows a secret; write the secret as `${{NAME}}`"),
        )),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| refuse_redacted(v, &format!("{at}[{i}]"))),
        serde_json::Value::Object(map) => map
            .iter()
            .try_for_each(|(k, v)| refuse_redacted(v, &field_path(at, k))),
        _ => Ok(()),
    }
}

fn field_path(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_owned()
    } else {
        format!("{at}.{key}")
    }
}

/// Parses a written entry: a JSON object without `<redacted>`.
fn entry_body(
    json: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<serde_json::Value, ApiError> {
    let entry = body(json)?;
    if !entry.is_object() {
        return Err(ApiError::invalid(
            "body",
            "the entry must be a JSON object, as it is written under its name in sluice.yaml",
        ));
    }
    refuse_redacted(&entry, "")?;
    Ok(entry)
}

/// Adds or replaces a source or destination of the calling tenant's
/// project (`sources.NAME` or `destinations.NAME` of its `sluice.yaml`).
/// The project is validated as a whole, as an upload is: problems answer
/// 422 with their lines in the edited file.
#[utoipa::path(put, path = "/api/v1/connections/{name}", params(("name" = String, Path),
    ("If-Match" = Option<String>, Header, description = "the revision the edit is made to")),
    request_body = ConnectionIn, responses((status = 200, body = ProjectOut),
    (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
    (status = 412, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn put_connection(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    json: Result<Json<ConnectionIn>, JsonRejection>,
) -> Result<Json<ProjectOut>, ApiError> {
    let input = body(json)?;
    let entry = serde_json::Value::Object(input.entry);
    refuse_redacted(&entry, "")?;
    let section = input.kind.section();
    let edit = |text: &str| edited(text, section, &name, Some(&entry));
    Ok(Json(edit_project(&state, &tenant, &headers, &edit).await?))
}

/// Removes a source or destination of the calling tenant's project. A
/// model or sync still naming it makes the project invalid (422).
#[utoipa::path(delete, path = "/api/v1/connections/{name}", params(("name" = String, Path),
    KindQuery, ("If-Match" = Option<String>, Header, description = "the revision the edit is made to")),
    responses((status = 200, body = ProjectOut), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody), (status = 412, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn delete_connection(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
    Path(name): Path<String>,
    Query(query): Query<KindQuery>,
    headers: HeaderMap,
) -> Result<Json<ProjectOut>, ApiError> {
    let edit = |text: &str| delete_connection_entry(text, &name, query.kind);
    Ok(Json(edit_project(&state, &tenant, &headers, &edit).await?))
}

/// `name` removed from the section `kind` names, or from the one section
/// holding it (409 when both do and `kind` is not given).
fn delete_connection_entry(
    text: &str,
    name: &str,
    kind: Option<ConnectionKind>,
) -> Result<String, ApiError> {
    if let Some(kind) = kind {
        return edited(text, kind.section(), name, None);
    }
    let as_source = edited(text, "sources", name, None);
    let as_destination = edited(text, "destinations", name, None);
    match (as_source, as_destination) {
        (Ok(_), Ok(_)) => Err(ApiError::conflict(format!(
            "`{name}` is both a source and a destination; say which with `?kind=source` or `?kind=destination`"
        ))),
        (Ok(t), Err(_)) | (Err(_), Ok(t)) => Ok(t),
        (Err(e), Err(_)) if e.status == StatusCode::NOT_FOUND => {
            Err(ApiError::not_found(format!("connection `{name}`")))
        }
        (Err(e), Err(_)) => Err(e),
    }
}

/// Adds or replaces a model of the calling tenant's project (`models.NAME`
/// of its `sluice.yaml`: `{"source": ..., "query"|"object": ...,
/// "primary_key": ...}`), validated with the whole project.
#[utoipa::path(put, path = "/api/v1/models/{name}", params(("name" = String, Path),
    ("If-Match" = Option<String>, Header, description = "the revision the edit is made to")),
    request_body(content = Object, description = "the model as written under its name in sluice.yaml"),
    responses((status = 200, body = ProjectOut), (status = 400, body = ErrorBody),
    (status = 409, body = ErrorBody), (status = 412, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn put_model(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    json: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Json<ProjectOut>, ApiError> {
    put_entry(&state, &tenant, &headers, "models", &name, json).await
}

/// Removes a model of the calling tenant's project.
#[utoipa::path(delete, path = "/api/v1/models/{name}", params(("name" = String, Path),
    ("If-Match" = Option<String>, Header, description = "the revision the edit is made to")),
    responses((status = 200, body = ProjectOut), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody), (status = 412, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn delete_model(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<ProjectOut>, ApiError> {
    delete_entry(&state, &tenant, &headers, "models", &name).await
}

/// Adds or replaces a sync of the calling tenant's project (`syncs.NAME`
/// of its `sluice.yaml`), validated with the whole project.
#[utoipa::path(put, path = "/api/v1/syncs/{name}", params(("name" = String, Path),
    ("If-Match" = Option<String>, Header, description = "the revision the edit is made to")),
    request_body(content = Object, description = "the sync as written under its name in sluice.yaml"),
    responses((status = 200, body = ProjectOut), (status = 400, body = ErrorBody),
    (status = 409, body = ErrorBody), (status = 412, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn put_sync(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    json: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Json<ProjectOut>, ApiError> {
    put_entry(&state, &tenant, &headers, "syncs", &name, json).await
}

/// Removes a sync of the calling tenant's project. Its runs and state stay
/// (a sync of the same name added later takes them up again).
#[utoipa::path(delete, path = "/api/v1/syncs/{name}", params(("name" = String, Path),
    ("If-Match" = Option<String>, Header, description = "the revision the edit is made to")),
    responses((status = 200, body = ProjectOut), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody), (status = 412, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn delete_sync(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<ProjectOut>, ApiError> {
    delete_entry(&state, &tenant, &headers, "syncs", &name).await
}

async fn put_entry(
    state: &AppState,
    tenant: &str,
    headers: &HeaderMap,
    section: &str,
    name: &str,
    json: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Json<ProjectOut>, ApiError> {
    let entry = entry_body(json)?;
    let edit = |text: &str| edited(text, section, name, Some(&entry));
    Ok(Json(edit_project(state, tenant, headers, &edit).await?))
}

async fn delete_entry(
    state: &AppState,
    tenant: &str,
    headers: &HeaderMap,
    section: &str,
    name: &str,
) -> Result<Json<ProjectOut>, ApiError> {
    let edit = |text: &str| edited(text, section, name, None);
    Ok(Json(edit_project(state, tenant, headers, &edit).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redacted_is_refused_with_the_path_to_it() {
        let entry = json!({"plugin": "x", "config": {"auth": [{"token": "<redacted>"}]}});
        let e = refuse_redacted(&entry, "").unwrap_err();
        assert_eq!(e.detail.field.as_deref(), Some("config.auth[0].token"));
        assert!(refuse_redacted(&json!({"config": {"token": "${TOKEN}"}}), "").is_ok());
    }

    #[test]
    fn a_connection_is_deleted_from_the_one_section_holding_it() {
        let text = "sources:\n  a: { plugin: files }\n  both: { plugin: files }\ndestinations:\n  both: { plugin: webhook }\n  d: { plugin: webhook }\n";
        let out = delete_connection_entry(text, "a", None).unwrap();
        assert!(!out.contains("  a:"));
        let e = delete_connection_entry(text, "both", None).unwrap_err();
        assert_eq!(e.status, StatusCode::CONFLICT);
        let out = delete_connection_entry(text, "both", Some(ConnectionKind::Destination)).unwrap();
        assert!(
            out.contains("  both: { plugin: files }")
                && !out.contains("  both: { plugin: webhook }")
        );
        let e = delete_connection_entry(text, "nope", None).unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
    }
}
