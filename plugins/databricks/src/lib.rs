//! `databricks`: a Sluice source that runs a query (or reads a table) on a
//! Databricks SQL warehouse over the SQL Statement Execution API 2.0 and
//! streams the result chunk by chunk.
//!
//! - Auth: a personal access token, or OAuth M2M (client credentials at
//!   `/oidc/v1/token`) ([`config`], [`client`]).
//! - The statement is submitted with `wait_timeout`; a PENDING/RUNNING answer
//!   is polled with growing intervals and cancelled when `max_poll_ms` passes;
//!   429 and 503 are retried with bounded backoff ([`client`]).
//! - INLINE chunk 0 comes with the answer; each further chunk (or each
//!   EXTERNAL_LINKS file, fetched without `Authorization`) is fetched only when
//!   the previous one has been handed out, so memory holds one chunk ([`reader`]).
//! - Values map from the manifest's `type_name` as [`types`] and README.md say.

pub mod client;
pub mod config;
pub mod reader;
pub mod types;

use client::Client;
use config::Config;
use reader::DatabricksReader;
use sluice_sdk::prelude::*;

pub struct Databricks;

impl Source for Databricks {
    type Reader = DatabricksReader;

    fn spec() -> PluginSpec {
        PluginSpec::new(
            "databricks",
            env!("CARGO_PKG_VERSION"),
            "Streams query results and tables out of a Databricks SQL warehouse over the SQL Statement Execution API 2.0",
        )
        .capability("${config.host}")
        .capability("${config.external_link_hosts}")
        .batch_size(5000)
        .config_schema(Config::schema())
    }

    fn check(config: &str) -> Result<(), PluginError> {
        let client = Client::new(Config::parse(config)?)?;
        let mut reader = DatabricksReader::open(client, "SELECT 1 AS one")?;
        match reader.next(10)? {
            Some(batch) if batch.rows == vec![vec![Value::Integer(1)]] => Ok(()),
            other => Err(PluginError::Permanent(format!(
                "{}: `SELECT 1` returned {other:?} instead of one row with 1",
                reader.target()
            ))),
        }
    }

    fn discover(config: &str) -> Result<Vec<ObjectInfo>, PluginError> {
        reader::discover(Client::new(Config::parse(config)?)?)
    }

    fn read(config: &str, request: ReadRequest) -> Result<DatabricksReader, PluginError> {
        let client = Client::new(Config::parse(config)?)?;
        let sql = match request {
            ReadRequest::Query(sql) => sql,
            ReadRequest::Object(name) => format!("SELECT * FROM {}", reader::quote_object(&name)?),
        };
        DatabricksReader::open(client, &sql)
    }
}

sluice_sdk::export_source!(Databricks);
