//! `/api/v1/secrets`: a tenant's named secrets, sealed at rest
//! ([`crate::secrets`]), listed by name only and never returned; and the
//! operator's rewrap after a key rotation.

use crate::api::{body, AsTenant, Operator};
use crate::db::tenant_tx;
use crate::error::{ApiError, ErrorBody};
use crate::secrets::{self, Keyring, Sealed};
use crate::{AppState, Shared};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
pub struct SecretIn {
    /// The value; at most 64 KiB. Never returned by any route.
    pub value: String,
}

#[derive(Serialize, ToSchema)]
pub struct SecretInfo {
    pub name: String,
    /// The key that seals it (see `POST /api/v1/secrets-rewrap`).
    pub key_id: String,
    /// RFC 3339.
    pub updated_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct SecretList {
    pub secrets: Vec<SecretInfo>,
}

#[derive(Serialize, ToSchema)]
pub struct Rewrapped {
    /// Secrets whose data key is now sealed with the current key.
    pub rewrapped: u64,
    /// Secrets that already were.
    pub current: u64,
    pub key_id: String,
}

/// The keyring, or a 503 saying how to turn secrets on.
fn keyring(state: &AppState) -> Result<&Keyring, ApiError> {
    state.keyring.as_ref().ok_or_else(|| {
        ApiError::unavailable(
            "this server stores no secrets: start `sluice serve` with --secrets-key-file",
        )
    })
}

/// Stores (or replaces) one of the calling tenant's secrets; `${NAME}` in
/// its project reads it from the next validation on.
#[utoipa::path(put, path = "/api/v1/secrets/{name}", params(("name" = String, Path)),
    request_body = SecretIn,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn put_secret(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
    Path(name): Path<String>,
    json: Result<Json<SecretIn>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let input = body(json)?;
    if !secrets::valid_name(&name) {
        return Err(ApiError::invalid(
            "name",
            "a secret name is 1 to 128 of A-Z, a-z, 0-9 and `_`, not starting with a digit \
             (what `${NAME}` in a project can name)",
        ));
    }
    if input.value.len() > secrets::MAX_VALUE {
        return Err(ApiError::invalid(
            "value",
            format!(
                "{} bytes; a secret holds at most {}",
                input.value.len(),
                secrets::MAX_VALUE
            ),
        ));
    }
    let sealed = keyring(&state)?
        .seal(&tenant, &name, &input.value)
        .map_err(|why| ApiError::internal("sealing the secret", why))?;
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, &state.app_role, &tenant).await?;
    tx.execute(
        "INSERT INTO sluice.secrets (tenant, name, key_id, wrapped_key, ciphertext)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (tenant, name) DO UPDATE SET key_id = EXCLUDED.key_id,
             wrapped_key = EXCLUDED.wrapped_key, ciphertext = EXCLUDED.ciphertext, updated_at = now()",
        &[&tenant, &name, &sealed.key_id, &sealed.wrapped_key, &sealed.ciphertext],
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The calling tenant's secrets, by name (values are never returned).
#[utoipa::path(get, path = "/api/v1/secrets", responses((status = 200, body = SecretList)))]
pub(crate) async fn list_secrets(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
) -> Result<Json<SecretList>, ApiError> {
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, &state.app_role, &tenant).await?;
    let rows = tx
        .query(
            "SELECT name, key_id, to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
             FROM sluice.secrets WHERE tenant = $1 ORDER BY name",
            &[&tenant],
        )
        .await?;
    tx.commit().await?;
    Ok(Json(SecretList {
        secrets: rows
            .iter()
            .map(|r| SecretInfo {
                name: r.get(0),
                key_id: r.get(1),
                updated_at: r.get(2),
            })
            .collect(),
    }))
}

/// Deletes one of the calling tenant's secrets.
#[utoipa::path(delete, path = "/api/v1/secrets/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub(crate) async fn delete_secret(
    AsTenant(tenant): AsTenant,
    State(state): State<Shared>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, &state.app_role, &tenant).await?;
    let n = tx
        .execute(
            "DELETE FROM sluice.secrets WHERE tenant = $1 AND name = $2",
            &[&tenant, &name],
        )
        .await?;
    tx.commit().await?;
    if n == 0 {
        return Err(ApiError::not_found(format!("secret `{name}`")));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Re-seals every tenant's data keys with the current key (operator only),
/// so that older keys can leave the key file. Values are not re-encrypted.
#[utoipa::path(post, path = "/api/v1/secrets-rewrap", responses(
    (status = 200, body = Rewrapped), (status = 503, body = ErrorBody)))]
pub(crate) async fn rewrap_secrets(
    _: Operator,
    State(state): State<Shared>,
) -> Result<Json<Rewrapped>, ApiError> {
    let ring = keyring(&state)?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let rows = tx
        .query(
            "SELECT tenant, name, key_id, wrapped_key, ciphertext FROM sluice.secrets FOR UPDATE",
            &[],
        )
        .await?;
    let (mut rewrapped, mut current) = (0, 0);
    for row in &rows {
        let (tenant, name): (String, String) = (row.get(0), row.get(1));
        let sealed = sealed_of(row, 2);
        let new = ring
            .rewrap(&tenant, &name, &sealed)
            .map_err(|why| ApiError::internal(&format!("rewrapping tenant `{tenant}`"), why))?;
        match new {
            Some(s) => {
                tx.execute(
                    "UPDATE sluice.secrets SET key_id = $3, wrapped_key = $4
                     WHERE tenant = $1 AND name = $2",
                    &[&tenant, &name, &s.key_id, &s.wrapped_key],
                )
                .await?;
                rewrapped += 1;
            }
            None => current += 1,
        }
    }
    tx.commit().await?;
    Ok(Json(Rewrapped {
        rewrapped,
        current,
        key_id: ring.current_id().to_string(),
    }))
}

/// A sealed secret from columns `at..at+3` (key_id, wrapped_key, ciphertext).
fn sealed_of(row: &tokio_postgres::Row, at: usize) -> Sealed {
    Sealed {
        key_id: row.get(at),
        wrapped_key: row.get(at + 1),
        ciphertext: row.get(at + 2),
    }
}

/// Every secret of `tenant`, opened, for `${NAME}` in its project. Read as
/// the tenant (row-level security); without a keyring, none.
pub(crate) async fn tenant_secrets(
    state: &AppState,
    tenant: &str,
) -> Result<HashMap<String, String>, ApiError> {
    let Some(ring) = &state.keyring else {
        return Ok(HashMap::new());
    };
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, &state.app_role, tenant).await?;
    let rows = tx
        .query(
            "SELECT name, key_id, wrapped_key, ciphertext FROM sluice.secrets WHERE tenant = $1",
            &[&tenant],
        )
        .await?;
    tx.commit().await?;
    rows.iter()
        .map(|row| {
            let name: String = row.get(0);
            let value = ring
                .open(tenant, &name, &sealed_of(row, 1))
                .map_err(|why| ApiError::internal("opening the tenant's secrets", why))?;
            Ok((name, value))
        })
        .collect()
}
