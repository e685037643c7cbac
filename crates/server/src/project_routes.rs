//! A tenant's connections and models as API resources: read views of its
//! current project. Syncs are code: a project is written whole (`PUT
//! /api/v1/project`, `sluice apply --server`), so its sources and
//! destinations (each a plugin with its config and grants: a connection)
//! and its models change with it; these routes answer what the project
//! holds, so a console or a script need not parse `sluice.yaml`. A config
//! value that comes from a secret (`${NAME}`) is shown as `<redacted>`,
//! never its value; the secrets themselves are `/api/v1/secrets`.

use crate::api::{loaded, stored_project, AsTenant};
use crate::error::{ApiError, ErrorBody};
use crate::Shared;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use sluice_config::{ModelRead, PluginInstance, PluginRef, Project};
use utoipa::{OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    paths(list_connections, get_connection, list_models, get_model),
    components(schemas(ConnectionInfo, ConnectionList, ModelInfo, ModelList))
)]
pub struct ProjectDoc;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/connections", get(list_connections))
        .route("/api/v1/connections/{name}", get(get_connection))
        .route("/api/v1/models", get(list_models))
        .route("/api/v1/models/{name}", get(get_model))
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
