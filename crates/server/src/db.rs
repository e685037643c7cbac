//! The server's connections to the state database.
//!
//! Administrative work (migrations, tenants, finding a token's tenant) runs
//! as the login role, which owns the tables and so is not subject to
//! row-level security. Everything a tenant asks for runs in a transaction
//! that first switches to the application role ([`ServerConfig::app_role`],
//! `sluice_app` by default: no superuser, no BYPASSRLS) and sets
//! `sluice.tenant`, both transaction-local, so a pooled connection carries
//! nothing into the next request and PostgreSQL itself keeps the
//! transaction to that tenant's rows (the policies of state migration 3 in
//! crates/state/src/postgres.rs).
//!
//! [`ServerConfig::app_role`]: crate::ServerConfig::app_role

use crate::error::{describe_pg, ApiError};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Transaction};
use sluice_state::postgres::{latest_version, quote_ident};

/// Connections the API may hold at once.
const POOL_SIZE: usize = 16;

/// A pool of connections to `url` (connections are opened on demand).
pub fn pool(url: &str) -> anyhow::Result<Pool> {
    let config: tokio_postgres::Config = url.trim().parse().map_err(|e| {
        anyhow::anyhow!(
            "--state {}: not a valid PostgreSQL URL: {e}",
            sluice_state::postgres::scrub_url(url)
        )
    })?;
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            // Session state is reset before a connection is reused, on top
            // of the settings being transaction-local.
            recycling_method: RecyclingMethod::Clean,
        },
    );
    Ok(Pool::builder(manager).max_size(POOL_SIZE).build()?)
}

/// The advisory lock that serialises [`prepare_app_role`] across
/// processes: servers and workers starting at once would otherwise update
/// the same catalog rows with their GRANTs ("tuple concurrently updated").
const ROLE_LOCK: i64 = 0x736c_7569_6365_0002;

/// How long a process waits for another to finish preparing the role.
const ROLE_LOCK_TIMEOUT: &str = "30s";

/// Makes sure the application role exists, may use the schema, and is
/// subject to row-level security. Refuses a role that would bypass it.
/// One process at a time prepares it.
pub async fn prepare_app_role(pool: &Pool, role: &str) -> anyhow::Result<()> {
    let client = pool.get().await?;
    client
        .batch_execute(&format!("SET lock_timeout = '{ROLE_LOCK_TIMEOUT}'"))
        .await
        .map_err(|e| anyhow::anyhow!("preparing role `{role}`: {}", describe_pg(&e)))?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&ROLE_LOCK])
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "waiting {ROLE_LOCK_TIMEOUT} for another process to prepare role `{role}`: {}",
                describe_pg(&e)
            )
        })?;
    let prepared = prepare_role_locked(&client, role).await;
    // A connection recycled to the pool is cleaned too (DISCARD ALL drops
    // advisory locks); unlocking here lets the next process go at once.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&ROLE_LOCK])
        .await;
    prepared
}

async fn prepare_role_locked(client: &deadpool_postgres::Object, role: &str) -> anyhow::Result<()> {
    let quoted = quote_ident(role);
    let literal = role.replace('\'', "''");
    // Roles belong to the cluster: servers on other databases of the same
    // cluster may create it at the same moment.
    let create = format!(
        "DO $$ BEGIN
             IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{literal}') THEN
                 CREATE ROLE {quoted} NOLOGIN NOSUPERUSER NOBYPASSRLS;
             END IF;
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
         END $$;"
    );
    client
        .batch_execute(&create)
        .await
        .map_err(|e| anyhow::anyhow!("creating role `{role}`: {}", describe_pg(&e)))?;
    let bypass: bool = client
        .query_one(
            "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = $1",
            &[&role],
        )
        .await
        .map_err(|e| anyhow::anyhow!("reading role `{role}`: {}", describe_pg(&e)))?
        .get(0);
    if bypass {
        anyhow::bail!(
            "role `{role}` is a superuser or has BYPASSRLS, so row-level security would not \
             apply to it; give --app-role a role without either"
        );
    }
    let grants = format!(
        "GRANT USAGE ON SCHEMA sluice TO {quoted};
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA sluice TO {quoted};
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA sluice TO {quoted};"
    );
    client.batch_execute(&grants).await.map_err(|e| {
        anyhow::anyhow!(
            "granting role `{role}` the schema `sluice`: {}",
            describe_pg(&e)
        )
    })?;
    // The login role acts as the application role with SET ROLE.
    let member = format!("GRANT {quoted} TO CURRENT_USER");
    if let Err(e) = client.batch_execute(&member).await {
        // Already a member, or a superuser (who needs no membership).
        tracing::debug!(error = %describe_pg(&e), "granting the application role to the login role");
    }
    Ok(())
}

/// A transaction acting as `role` for `tenant` only.
pub async fn tenant_tx<'a>(
    client: &'a mut deadpool_postgres::Object,
    role: &str,
    tenant: &str,
) -> Result<Transaction<'a>, ApiError> {
    let tx = client.transaction().await?;
    tx.batch_execute(&format!("SET LOCAL ROLE {}", quote_ident(role)))
        .await?;
    tx.execute("SELECT set_config('sluice.tenant', $1, true)", &[&tenant])
        .await?;
    Ok(tx)
}

/// Whether the database answers and carries every migration this server
/// knows (the readiness check).
pub async fn ready(pool: &Pool) -> Result<(), String> {
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let version: i64 = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM sluice.schema_migrations",
            &[],
        )
        .await
        .map_err(|e| describe_pg(&e))?
        .get(0);
    if version < latest_version() {
        return Err(format!(
            "schema version {version}, this server needs {}",
            latest_version()
        ));
    }
    Ok(())
}
