//! `snowflake`: a Sluice source that runs a query (or reads a table) in
//! Snowflake over the SQL API v2 and streams the result partition by partition.
//!
//! - Auth: key-pair JWT (RS256, [`auth`]) or an OAuth token ([`config`]).
//! - A statement answered 202 is polled with growing intervals, and cancelled
//!   when `max_poll_ms` passes; 429 and 5xx are retried with bounded backoff
//!   ([`client`]).
//! - Partition 0 comes with the answer; each further partition is fetched
//!   (gzip) only when the previous one has been handed out, so memory holds
//!   one partition ([`reader`]).
//! - Values map as [`types`] and README.md say.

pub mod auth;
pub mod client;
pub mod config;
pub mod reader;
pub mod types;

use client::Client;
use config::Config;
use reader::SnowflakeReader;
use sluice_sdk::prelude::*;

pub struct Snowflake;

impl Source for Snowflake {
    type Reader = SnowflakeReader;

    fn spec() -> PluginSpec {
        PluginSpec::new(
            "snowflake",
            env!("CARGO_PKG_VERSION"),
            "Streams query results and tables out of Snowflake over the SQL API v2",
        )
        .capability("${config.base_url}")
        .batch_size(5000)
        .config_schema(Config::schema())
    }

    fn check(config: &str) -> Result<(), PluginError> {
        let client = Client::new(Config::parse(config)?)?;
        let result = client.execute("SELECT 1", None)?;
        match result.data.as_slice() {
            [row] if row.first().and_then(|v| v.as_deref()) == Some("1") => Ok(()),
            other => Err(PluginError::Permanent(format!(
                "{}: `SELECT 1` returned {other:?} instead of one row with 1",
                client.config().target()
            ))),
        }
    }

    fn discover(config: &str) -> Result<Vec<ObjectInfo>, PluginError> {
        reader::discover(Client::new(Config::parse(config)?)?)
    }

    fn read(config: &str, request: ReadRequest) -> Result<SnowflakeReader, PluginError> {
        let client = Client::new(Config::parse(config)?)?;
        let sql = match request {
            ReadRequest::Query(sql) => sql,
            ReadRequest::Object(name) => format!("SELECT * FROM {}", reader::quote_object(&name)?),
        };
        SnowflakeReader::open(client, &sql)
    }
}

sluice_sdk::export_source!(Snowflake);
