//! Local emulators of the Salesforce REST API, the HubSpot CRM v3 API, the
//! Snowflake SQL API v2 (see [`snowflake`]), BigQuery REST v2 (see [`bigquery`])
//! and the Databricks SQL Statement Execution API 2.0 (see [`databricks`]).
//!
//! They reproduce the documented behaviour in `shared/reference/saas-apis.md`
//! (auth and token expiry, batch limits, per-record errors inside a 200, whole-request
//! 400s, validation errors, each API's own throttling signals, Bulk API 2.0 job states)
//! and add seeded fault injection (5xx, slow responses, dropped connections), so that
//! destination plugins can be tested, benchmarked and developed offline.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use sluice_emulators::{start_salesforce, EmulatorConfig};
//! let emulator = start_salesforce("127.0.0.1:0".parse()?, EmulatorConfig::default()).await?;
//! println!("{}", emulator.connection_info());
//! let accounts = emulator.handle().records("Account");
//! # let _ = accounts;
//! emulator.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! State is in memory only and lives as long as the emulator.

// Handlers validate in small helpers that return the finished error `Response` as
// their `Err`, so each early exit is one `?`/match arm. A `Response` is ~128 bytes;
// boxing it on these cold paths would add noise for no measurable gain.
#![allow(clippy::result_large_err)]

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use anyhow::Context;

pub mod bigquery;
mod config;
pub mod databricks;
mod faults;
mod handle;
pub mod hubspot;
mod limits;
mod pg;
pub mod salesforce;
mod schema;
mod server;
pub mod snowflake;
mod store;
mod values;

pub use config::{
    BigQuerySettings, ClientCredentials, DatabricksSettings, EmulatorConfig, FaultConfig,
    HubSpotSettings, RateLimit, SalesforceSettings, SalesforceUser, ServiceAccount,
    SnowflakeSettings, SnowflakeUser, DEFAULT_BIGQUERY_POSTGRES_URL, DEFAULT_BIGQUERY_PROJECT,
    DEFAULT_BIGQUERY_SERVICE_ACCOUNT, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET,
    DEFAULT_DATABRICKS_CLIENT_ID, DEFAULT_DATABRICKS_CLIENT_SECRET,
    DEFAULT_DATABRICKS_POSTGRES_URL, DEFAULT_DATABRICKS_TOKEN, DEFAULT_DATABRICKS_WAREHOUSE,
    DEFAULT_HUBSPOT_TOKEN, DEFAULT_PASSWORD, DEFAULT_SECURITY_TOKEN, DEFAULT_SNOWFLAKE_ACCOUNT,
    DEFAULT_SNOWFLAKE_POSTGRES_URL, DEFAULT_SNOWFLAKE_TOKEN, DEFAULT_SNOWFLAKE_USER,
    DEFAULT_USERNAME,
};
pub use handle::{EmulatorHandle, IssuedToken, StatsSnapshot};
pub use schema::{FieldSpec, FieldType, ObjectSpec};
pub use server::RunningEmulator;
pub use values::is_valid_email;

/// Which API an emulator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EmulatorKind {
    /// Salesforce REST API (OAuth, describe, sObject Collections, Bulk API 2.0).
    Salesforce,
    /// HubSpot CRM v3 (batch object endpoints, properties).
    HubSpot,
    /// Snowflake SQL API v2 (statements, partitions, key-pair JWT and OAuth),
    /// executing on a local PostgreSQL database.
    Snowflake,
    /// BigQuery REST v2 (jobs, paged query results, the OAuth JWT grant),
    /// executing on a local PostgreSQL database.
    BigQuery,
    /// Databricks SQL Statement Execution API 2.0 (statements, chunks, external
    /// links, PAT and OAuth M2M), executing on a local PostgreSQL database.
    Databricks,
}

impl fmt::Display for EmulatorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EmulatorKind::Salesforce => "salesforce",
            EmulatorKind::HubSpot => "hubspot",
            EmulatorKind::Snowflake => "snowflake",
            EmulatorKind::BigQuery => "bigquery",
            EmulatorKind::Databricks => "databricks",
        })
    }
}

impl FromStr for EmulatorKind {
    type Err = anyhow::Error;

    /// Parses the CLI spelling: `salesforce` or `hubspot` (any case).
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "salesforce" | "sfdc" => Ok(EmulatorKind::Salesforce),
            "hubspot" => Ok(EmulatorKind::HubSpot),
            "snowflake" => Ok(EmulatorKind::Snowflake),
            "bigquery" => Ok(EmulatorKind::BigQuery),
            "databricks" => Ok(EmulatorKind::Databricks),
            other => anyhow::bail!(
                "unknown emulator {other:?}: expected salesforce, hubspot, snowflake, bigquery or databricks"
            ),
        }
    }
}

/// Starts a Salesforce emulator on `addr` (use port 0 for any free port).
pub async fn start_salesforce(
    addr: SocketAddr,
    config: EmulatorConfig,
) -> anyhow::Result<RunningEmulator> {
    server::start(EmulatorKind::Salesforce, addr, config).await
}

/// Starts a HubSpot emulator on `addr` (use port 0 for any free port).
pub async fn start_hubspot(
    addr: SocketAddr,
    config: EmulatorConfig,
) -> anyhow::Result<RunningEmulator> {
    server::start(EmulatorKind::HubSpot, addr, config).await
}

/// Starts a Snowflake SQL API emulator on `addr`, executing statements in the
/// PostgreSQL database of `config.snowflake.postgres_url` (created if missing).
pub async fn start_snowflake(
    addr: SocketAddr,
    config: EmulatorConfig,
) -> anyhow::Result<RunningEmulator> {
    server::start(EmulatorKind::Snowflake, addr, config).await
}

/// Starts a BigQuery REST v2 emulator on `addr`, executing queries in the
/// PostgreSQL database of `config.bigquery.postgres_url` (created if missing).
pub async fn start_bigquery(
    addr: SocketAddr,
    config: EmulatorConfig,
) -> anyhow::Result<RunningEmulator> {
    server::start(EmulatorKind::BigQuery, addr, config).await
}

/// Starts a Databricks SQL Statement Execution API emulator on `addr` (and its
/// EXTERNAL_LINKS storage listener on another port of the same address),
/// executing statements in the PostgreSQL database of
/// `config.databricks.postgres_url` (created if missing).
pub async fn start_databricks(
    addr: SocketAddr,
    config: EmulatorConfig,
) -> anyhow::Result<RunningEmulator> {
    server::start(EmulatorKind::Databricks, addr, config).await
}

/// Starts an emulator of `kind`.
pub async fn start(
    kind: EmulatorKind,
    addr: SocketAddr,
    config: EmulatorConfig,
) -> anyhow::Result<RunningEmulator> {
    server::start(kind, addr, config).await
}

/// Runs an emulator until Ctrl-C, then shuts it down gracefully. Connection details
/// are logged through `tracing` at info level; a CLI wanting to print them itself can
/// call [`start`] and [`RunningEmulator::connection_info`] instead.
pub async fn serve_forever(
    kind: EmulatorKind,
    addr: SocketAddr,
    config: EmulatorConfig,
) -> anyhow::Result<()> {
    let emulator = start(kind, addr, config).await?;
    tracing::info!("{}", emulator.connection_info());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    emulator.shutdown().await
}
