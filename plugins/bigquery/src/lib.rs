//! `bigquery`: a Sluice source that runs a query (or reads a table) in BigQuery
//! over the REST API v2 and streams the result page by page.
//!
//! - Auth: a service-account key's RS256 JWT exchanged for an access token at
//!   the token URI, or an access token ([`auth`], [`config`]).
//! - `jobs.query`, then `jobs.getQueryResults` polled (bounded by `max_poll_ms`)
//!   while `jobComplete` is false; 429, 5xx and the retryable reasons retried
//!   with bounded backoff ([`client`]).
//! - Each page is fetched by `pageToken` only when the previous one has been
//!   handed out ([`reader`]).
//! - Values map as [`types`] and README.md say.
//! - `estimate-api`: a dry run's `totalBytesProcessed`, for `sluice plan`.

pub mod auth;
pub mod client;
pub mod config;
pub mod reader;
pub mod types;

use client::Client;
use config::Config;
use reader::BigQueryReader;
use sluice_sdk::prelude::*;

pub struct BigQuery;

impl Source for BigQuery {
    type Reader = BigQueryReader;

    fn spec() -> PluginSpec {
        PluginSpec::new(
            "bigquery",
            env!("CARGO_PKG_VERSION"),
            "Streams query results and tables out of BigQuery over the REST API v2",
        )
        .capability("${config.api_base}")
        .capability("${config.token_uri}")
        .batch_size(5000)
        .config_schema(Config::schema())
    }

    fn check(config: &str) -> Result<(), PluginError> {
        let client = Client::new(Config::parse(config)?)?;
        let mut reader = BigQueryReader::open(client, "SELECT 1")?;
        match reader.next(10)? {
            Some(batch) if batch.rows == vec![vec![Value::Integer(1)]] => Ok(()),
            other => Err(PluginError::Permanent(format!(
                "`SELECT 1` returned {other:?} instead of one row with 1"
            ))),
        }
    }

    fn discover(config: &str) -> Result<Vec<ObjectInfo>, PluginError> {
        reader::discover(Client::new(Config::parse(config)?)?)
    }

    fn read(config: &str, request: ReadRequest) -> Result<BigQueryReader, PluginError> {
        let client = Client::new(Config::parse(config)?)?;
        BigQueryReader::open(client, &reader::sql_of(request)?)
    }
}

impl Estimate for BigQuery {
    /// A dry run's `totalBytesProcessed`: what on-demand pricing bills.
    fn estimate_scan_bytes(config: &str, request: ReadRequest) -> Result<u64, PluginError> {
        let client = Client::new(Config::parse(config)?)?;
        client.dry_run(&reader::sql_of(request)?)
    }
}

sluice_sdk::export_estimable_source!(BigQuery);
