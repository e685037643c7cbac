//! Uploaded components: a tenant's own transforms and connectors.
//!
//! `POST /api/v1/components/{name}` takes the component's bytes as the
//! body (at most [`MAX_COMPONENT`]; a larger `Content-Length` is refused
//! before reading). Before anything is compiled, the bytes are read by
//! [`sluice_runtime::inspect`]: not a component, or not exactly one Sluice
//! world of a version this host runs, is a 422 naming what it is instead.
//! The component is then pinned by its SHA-256 and stored in
//! `sluice.components` (row-level security keeps it the tenant's). Its
//! project references it as `plugin: uploaded:NAME@sha256:HEX`; the
//! reference must name a stored component when the project is applied and
//! before each run. A worker writes the bytes into the run's project
//! directory (`.sluice/uploaded/`, which no upload or grant reaches) and the
//! registry checks the digest again before compiling; it then runs in the
//! sandbox like every plugin, with the grants the project gives it within
//! the tenant's ceilings.
//!
//! This module also gathers this slice's routes ([`routes`]): the
//! resource ceilings ([`crate::resources`]) and the dbt triggers
//! ([`crate::dbt_routes`]).

use crate::api::AsTenant;
use crate::db::tenant_tx;
use crate::error::{ApiError, ErrorBody, ErrorDetail};
use crate::Shared;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::{Json, Router};
use serde::Serialize;
use sluice_config::{PluginRef, Project};
use std::path::Path as FsPath;
use utoipa::{OpenApi, ToSchema};

/// The largest component accepted, in bytes.
pub const MAX_COMPONENT: usize = 32 << 20;
/// Components one tenant may store (every version counts).
pub const MAX_PER_TENANT: i64 = 200;

/// This slice's routes, merged into the API by one line.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/components", axum::routing::get(list_components))
        .route(
            "/api/v1/components/{name}",
            axum::routing::post(upload_component),
        )
        .route(
            "/api/v1/components/{name}/{sha256}",
            axum::routing::delete(delete_component),
        )
        .merge(crate::resources::routes())
        .merge(crate::dbt_routes::routes())
}

/// The OpenAPI description of this slice's routes (merged into
/// `/openapi.json`).
#[derive(OpenApi)]
#[openapi(
    paths(
        upload_component,
        list_components,
        delete_component,
        crate::resources::get_resource_ceiling,
        crate::resources::put_resource_ceiling,
        crate::dbt_routes::dbt_cloud_webhook,
        crate::dbt_routes::upload_run_results
    ),
    components(schemas(
        ComponentInfo,
        ComponentList,
        crate::resources::ResourceCeiling,
        crate::dbt_routes::Triggered,
        crate::dbt_routes::TriggeredSync,
        crate::dbt_routes::SkippedSync
    ))
)]
pub struct ComponentsDoc;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ComponentInfo {
    pub name: String,
    /// Hex SHA-256 of the bytes: the pin a project uses.
    pub sha256: String,
    /// `source`, `transform`, `columnar-transform` or `destination`.
    pub world: String,
    /// The `sluice:plugin` version it targets.
    pub wit_version: String,
    pub size: i64,
    /// What a project writes to use it: `uploaded:NAME@sha256:HEX`.
    pub reference: String,
    /// RFC 3339.
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct ComponentList {
    pub components: Vec<ComponentInfo>,
}

const INFO_COLUMNS: &str = "name, sha256, world, wit_version, length(bytes)::bigint, \
     to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')";

fn info_of(row: &tokio_postgres::Row) -> ComponentInfo {
    let name: String = row.get(0);
    let sha256: String = row.get(1);
    ComponentInfo {
        reference: format!("{}{name}@sha256:{sha256}", sluice_config::UPLOADED_PREFIX),
        name,
        sha256,
        world: row.get(2),
        wit_version: row.get(3),
        size: row.get(4),
        created_at: row.get(5),
    }
}

fn too_large(message: String) -> ApiError {
    ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        detail: ErrorDetail {
            code: "payload_too_large",
            message,
            field: Some("body".into()),
            problems: None,
        },
    }
}

fn not_a_plugin(message: String) -> ApiError {
    ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        detail: ErrorDetail {
            code: "not_a_plugin",
            message,
            field: Some("body".into()),
            problems: None,
        },
    }
}

/// The body, refused as soon as it is known to be over [`MAX_COMPONENT`]
/// (its `Content-Length`, else while reading).
async fn component_bytes(request: Request) -> Result<Vec<u8>, ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n > MAX_COMPONENT as u64) {
        return Err(too_large(format!(
            "the component is {n} bytes; at most {MAX_COMPONENT} are accepted"
        )));
    }
    let bytes = axum::body::to_bytes(request.into_body(), MAX_COMPONENT)
        .await
        .map_err(|_| {
            too_large(format!(
                "the component is over {MAX_COMPONENT} bytes, the most accepted"
            ))
        })?;
    if bytes.is_empty() {
        return Err(ApiError::invalid(
            "body",
            "the body is empty; send the component's bytes (Content-Type: application/wasm)",
        ));
    }
    Ok(bytes.to_vec())
}

/// Uploads a component of the calling tenant under `name`: checked to be a
/// Sluice plugin before anything compiles it, pinned by its SHA-256.
/// Uploading the same bytes again answers the stored one.
#[utoipa::path(post, path = "/api/v1/components/{name}", params(("name" = String, Path)),
    request_body(content = Vec<u8>, content_type = "application/wasm"),
    responses((status = 201, body = ComponentInfo), (status = 200, body = ComponentInfo),
        (status = 400, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn upload_component(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
    Path(name): Path<String>,
    request: Request,
) -> Result<(StatusCode, Json<ComponentInfo>), ApiError> {
    if sluice_config::parse_uploaded(&format!("{name}@sha256:{}", "0".repeat(64))).is_err() {
        return Err(ApiError::invalid(
            "name",
            format!("`{name}` is not a component name (letters, digits, `_`, `-` and `.`, starting with a letter or digit)"),
        ));
    }
    let bytes = component_bytes(request).await?;
    // Reading the exports is quick; validating a large component is not.
    let (bytes, inspected) = tokio::task::spawn_blocking(move || {
        let inspected = sluice_runtime::inspect(&bytes);
        (bytes, inspected)
    })
    .await
    .map_err(|e| ApiError::internal("inspecting the component", e))?;
    let inspected = inspected.map_err(|e| {
        not_a_plugin(format!(
            "component `{name}` is refused before compiling: {e:#}"
        ))
    })?;
    let sha256 = sluice_runtime::cache::digest(&bytes);
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, &state.app_role, &tenant).await?;
    let stored: i64 = tx
        .query_one(
            "SELECT count(*) FROM sluice.components WHERE tenant = $1",
            &[&tenant],
        )
        .await?
        .get(0);
    let inserted = tx
        .query_opt(
            &format!(
                "INSERT INTO sluice.components (tenant, name, sha256, world, wit_version, bytes)
                 SELECT $1::text, $2::text, $3::text, $4::text, $5::text, $6::bytea WHERE $7::boolean
                 ON CONFLICT DO NOTHING RETURNING {INFO_COLUMNS}"
            ),
            &[
                &tenant,
                &name,
                &sha256,
                &inspected.world,
                &inspected.version,
                &bytes,
                &(stored < MAX_PER_TENANT),
            ],
        )
        .await?;
    let answer = match inserted {
        Some(row) => (StatusCode::CREATED, Json(info_of(&row))),
        None => {
            let existing = tx
                .query_opt(
                    &format!(
                        "SELECT {INFO_COLUMNS} FROM sluice.components
                         WHERE tenant = $1 AND name = $2 AND sha256 = $3"
                    ),
                    &[&tenant, &name, &sha256],
                )
                .await?;
            match existing {
                Some(row) => (StatusCode::OK, Json(info_of(&row))),
                None => {
                    return Err(ApiError::conflict(format!(
                        "tenant `{tenant}` stores {stored} components, the most allowed \
                         ({MAX_PER_TENANT}); delete unused ones first"
                    )))
                }
            }
        }
    };
    tx.commit().await?;
    tracing::info!(tenant = %tenant, component = %name, sha256 = %sha256, world = inspected.world, "component uploaded");
    Ok(answer)
}

/// The calling tenant's components, by name then upload time.
#[utoipa::path(get, path = "/api/v1/components", responses((status = 200, body = ComponentList)))]
pub(crate) async fn list_components(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
) -> Result<Json<ComponentList>, ApiError> {
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, &state.app_role, &tenant).await?;
    let rows = tx
        .query(
            &format!(
                "SELECT {INFO_COLUMNS} FROM sluice.components WHERE tenant = $1
                 ORDER BY name, created_at"
            ),
            &[&tenant],
        )
        .await?;
    Ok(Json(ComponentList {
        components: rows.iter().map(info_of).collect(),
    }))
}

/// Deletes one of the calling tenant's components. A project that still
/// references it is refused at its next run (and the next apply).
#[utoipa::path(delete, path = "/api/v1/components/{name}/{sha256}",
    params(("name" = String, Path), ("sha256" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub(crate) async fn delete_component(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
    Path((name, sha256)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, &state.app_role, &tenant).await?;
    let deleted = tx
        .execute(
            "DELETE FROM sluice.components WHERE tenant = $1 AND name = $2 AND sha256 = $3",
            &[&tenant, &name, &sha256],
        )
        .await?;
    tx.commit().await?;
    if deleted == 0 {
        return Err(ApiError::not_found(format!(
            "component `{name}@sha256:{sha256}`"
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The (name, sha256) of every component `tenant` stores, read as the
/// tenant.
pub async fn stored_pins(
    client: &mut deadpool_postgres::Object,
    app_role: &str,
    tenant: &str,
) -> Result<Vec<(String, String)>, ApiError> {
    let tx = tenant_tx(client, app_role, tenant).await?;
    let rows = tx
        .query(
            "SELECT name, sha256 FROM sluice.components WHERE tenant = $1",
            &[&tenant],
        )
        .await?;
    tx.commit().await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The uploaded components `project` references.
pub fn referenced(project: &Project) -> Vec<(&sluice_config::PluginInstance, &str, &str)> {
    project
        .sources
        .values()
        .chain(project.transforms.values())
        .chain(project.destinations.values().map(|d| &d.instance))
        .filter_map(|cfg| match &cfg.plugin {
            PluginRef::Uploaded { name, sha256 } => Some((cfg, name.as_str(), sha256.as_str())),
            _ => None,
        })
        .collect()
}

/// Writes every uploaded component `project` references into its
/// directory, where the registry loads it (and checks its digest again),
/// read from the state as `tenant`. A component written before is left as
/// it is: its name is its digest.
pub async fn materialize(
    pool: &deadpool_postgres::Pool,
    app_role: &str,
    tenant: &str,
    project: &Project,
) -> Result<(), ApiError> {
    let wanted: Vec<(String, String)> = referenced(project)
        .into_iter()
        .map(|(_, name, sha)| (name.to_owned(), sha.to_owned()))
        .filter(|(_, sha)| !sluice_registry::resolve::uploaded_path(&project.dir, sha).is_file())
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let mut client = pool.get().await?;
    for (name, sha256) in wanted {
        let tx = tenant_tx(&mut client, app_role, tenant).await?;
        let row = tx
            .query_opt(
                "SELECT bytes FROM sluice.components WHERE tenant = $1 AND name = $2 AND sha256 = $3",
                &[&tenant, &name, &sha256],
            )
            .await?
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "component `{name}@sha256:{sha256}` (POST /api/v1/components/{name})"
                ))
            })?;
        tx.commit().await?;
        let bytes: Vec<u8> = row.get(0);
        let path = sluice_registry::resolve::uploaded_path(&project.dir, &sha256);
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
            .await
            .map_err(|e| ApiError::internal("writing an uploaded component", e))?
            .map_err(|e| ApiError::internal("writing an uploaded component", e))?;
    }
    Ok(())
}

/// Writes beside `path` then renames, so a concurrent run never reads half
/// a component.
fn write_atomically(path: &FsPath, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .expect("an uploaded component's path has a parent");
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".tmp-{:016x}", rand::random::<u64>()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
