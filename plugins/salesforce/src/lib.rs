//! `salesforce`: a destination for the Salesforce REST API.
//!
//! - Auth: OAuth 2.0 client credentials or JWT bearer (RS256) against
//!   `{login_url}/services/oauth2/token`; the token is cached per instance and
//!   fetched again once when a call answers 401 (`INVALID_SESSION_ID`).
//! - Writes (sObject Collections, 200 records a request, `allOrNone: false`,
//!   results matched to rows in order):
//!   - upsert: `PATCH /composite/sobjects/{Object}/{ExternalIdField}`;
//!   - insert: `POST /composite/sobjects`;
//!   - update and delete: `PATCH /composite/sobjects` and
//!     `DELETE /composite/sobjects?ids=` take record ids. Keyed on `Id` the
//!     rows go as they are; keyed on an external id (or idLookup) field the
//!     plugin first finds the ids with SOQL (`SELECT Id, F FROM O WHERE F IN
//!     (...)`): no match rejects an update (`NOT_FOUND`) and counts a delete
//!     as done, several matches reject the row (`DUPLICATE_EXTERNAL_ID`).
//!     Collections upsert has no update-only switch, so it cannot stand in
//!     for update.
//! - The size of the change set picks the API: the host gathers changed rows
//!   into write calls of up to the sync's `batch_size` (by default 10,000,
//!   the default `bulk_threshold`), so a run with fewer changes than
//!   `bulk_threshold` goes through Collections, 200 rows a request, and
//!   every full call of a larger one goes through Bulk. A batch of at least
//!   `bulk_threshold` rows goes through one Bulk API 2.0 ingest job instead (CSV upload, UploadComplete, polling with
//!   `poll_interval_ms` up to `bulk_max_wait_ms`, then the successful and
//!   failed result CSVs mapped back to rows by key). Nulls are sent as `#N/A`.
//! - Throttling: 403 `REQUEST_LIMIT_EXCEEDED` becomes `rate-limited` after
//!   1 s (Salesforce sends no Retry-After), or 5 min when `Sforce-Limit-Info`
//!   shows the daily allowance used up. 5xx and transport errors are
//!   `retryable`. API usage is logged every 100 calls and at each tenth of
//!   the allowance. It is not reported to the host's pacing (`report-quota`):
//!   the allowance is a rolling 24 hours, not a window to spread calls over.
//! - Network: the token endpoint is `${config.login_url}`; API calls go to the
//!   `instance_url` the token endpoint returns, which cannot be known in
//!   advance, so the spec also asks for `${config.api_hosts}` (by default
//!   `https://*.salesforce.com` and `https://*.force.com`; `[]` for an
//!   emulator that answers at `login_url`).

mod api;
mod auth;
mod bulk;
mod collections;
mod config;
mod describe;
mod lookup;
mod util;
mod writer;

use api::{Body, Client};
use config::{Config, DISCOVER_LIMIT};
use describe::{Describe, Global};
use sluice_sdk::prelude::*;
use util::with_context;
pub use writer::SalesforceWriter;

pub struct Salesforce;

fn describe(client: &mut Client, object: &str) -> Result<Describe, PluginError> {
    let path = format!(
        "{}/sobjects/{}/describe",
        client.data_path(),
        util::percent_encode(object)
    );
    match client.send("GET", &path, Body::None).and_then(|r| r.json()) {
        Err(PluginError::Permanent(m)) if m.contains("HTTP 404") => Err(PluginError::Config(
            format!("Salesforce has no sObject `{object}` (or this user cannot see it): {m}"),
        )),
        other => other.map_err(|e| with_context(e, &format!("describing {object}"))),
    }
}

/// The objects `discover` describes.
fn objects_to_describe(client: &mut Client) -> Result<Vec<String>, PluginError> {
    if let Some(list) = &client.config.objects {
        return Ok(list.clone());
    }
    let path = format!("{}/sobjects", client.data_path());
    let global: Global = client
        .send("GET", &path, Body::None)
        .and_then(|r| r.json())?;
    let writable: Vec<String> = global
        .sobjects
        .iter()
        .filter(|s| s.writable())
        .map(|s| s.name.clone())
        .collect();
    if writable.len() > DISCOVER_LIMIT {
        sluice_sdk::warn!(
            "salesforce: {} writable objects; describing the first {DISCOVER_LIMIT} (list the ones you need in `objects`)",
            writable.len()
        );
    }
    Ok(writable.into_iter().take(DISCOVER_LIMIT).collect())
}

impl Destination for Salesforce {
    type Writer = SalesforceWriter;

    fn spec() -> PluginSpec {
        PluginSpec::new(
            "salesforce",
            env!("CARGO_PKG_VERSION"),
            "Writes to Salesforce: upsert, insert, update and delete through sObject Collections, Bulk API 2.0 for large batches",
        )
        .capability("${config.login_url}")
        .capability("${config.api_hosts}")
        // Write calls as large as the default `bulk_threshold`: the batch a
        // call receives is then the change set (or a Bulk-sized part of it),
        // and the plugin splits it into 200-record Collections requests.
        .batch_size(10_000)
        // Salesforce limits calls per rolling 24 h and long-running calls in
        // flight (5 in developer orgs), not calls per second.
        .rate_limit(25, 1000, 5)
        .config_schema(config::schema())
    }

    fn check(config: &str) -> Result<(), PluginError> {
        // Always ask the token endpoint: check is how operators test credentials.
        Client::new(Config::parse(config)?).authenticate()
    }

    fn discover(config: &str) -> Result<Vec<ObjectInfo>, PluginError> {
        let mut client = Client::new(Config::parse(config)?);
        let names = objects_to_describe(&mut client)?;
        names
            .iter()
            .map(|name| describe(&mut client, name).map(|d| describe::object_info(&d)))
            .collect()
    }

    fn open(config: &str, target: WriteTarget) -> Result<SalesforceWriter, PluginError> {
        let mut client = Client::new(Config::parse(config)?);
        if target.mode == WriteMode::Append {
            return Err(PluginError::Config(
                "salesforce does not append; use insert".into(),
            ));
        }
        let d = describe(&mut client, &target.object)?;
        let identifier = describe::check_identifier(&d, target.mode, &target.identifier)
            .map_err(PluginError::Config)?;
        Ok(SalesforceWriter {
            client,
            object: d.name,
            mode: target.mode,
            identifier,
        })
    }
}

/// `sluice verify`: which identifiers have a record, by SOQL on the sync's
/// identifier (`SELECT Id, F FROM O WHERE F IN (...)`, as many values a
/// query as keep its URL short).
impl Lookup for Salesforce {
    fn exists(
        config: &str,
        target: WriteTarget,
        ids: Vec<Value>,
    ) -> Result<Vec<bool>, PluginError> {
        let mut writer = Self::open(config, target)?;
        let keys: Vec<Option<String>> = ids.iter().map(writer::text_of).collect();
        let mut values: Vec<String> = keys.iter().flatten().cloned().collect();
        values.sort();
        values.dedup();
        let found = lookup::ids_by_value(
            &mut writer.client,
            &writer.object,
            &writer.identifier,
            &values,
        )?;
        Ok(keys
            .iter()
            .map(|k| {
                k.as_ref()
                    .is_some_and(|k| found.contains_key(&k.to_lowercase()))
            })
            .collect())
    }
}

sluice_sdk::export_verifiable_destination!(Salesforce);
