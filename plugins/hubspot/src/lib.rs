//! `hubspot`: a destination for HubSpot CRM v3 objects (contacts, companies,
//! custom objects).
//!
//! - upsert: `batch/upsert` with `idProperty` (a property with
//!   `hasUniqueValue`, e.g. `email` for contacts); `new: true` → created.
//! - update: `batch/update`; inputs carry `idProperty` when the identifier is
//!   a unique property (the API allows it), else the record id
//!   (`hs_object_id`). Unknown records come back in a 207 and are rejected.
//! - insert: `batch/create` with an `objectWriteTraceId` per input, which
//!   opts into 207 multi-status, so one bad input does not fail the rest.
//! - delete: `batch/archive` takes record ids; keyed on a unique property
//!   the ids are read first (`batch/read` with `idProperty`), and records
//!   that are not there count as deleted.
//! - 100 inputs a request. A whole-request 400/409 that concerns particular
//!   inputs (invalid property values, duplicate ids, a taken unique value)
//!   does not say which input: the plugin splits the request in halves until
//!   each bad row stands alone and rejects it with HubSpot's own message
//!   (`CATEGORY: message`); the other rows are written. Any other whole-request
//!   4xx rejects the request's rows with the message.
//! - 429 → `rate-limited` after Retry-After, else
//!   `X-HubSpot-RateLimit-Interval-Milliseconds`, else 10 s (1 h for the
//!   `DAILY` policy). 5xx and transport errors → `retryable`. 401/403 → `auth`.
//! - Every response's `X-HubSpot-RateLimit-Remaining`, `-Max` and
//!   `-Interval-Milliseconds` go up to the host (`report-quota`), which
//!   adopts HubSpot's pace when the declared one is faster and holds calls
//!   while the rolling window is used up, so the 429 is avoided rather than
//!   waited out.
//! - Values are sent as text (dates `YYYY-MM-DD`, timestamps RFC 3339);
//!   null is sent as "" which clears the property on update.

mod batch;
mod client;
mod config;
mod properties;
mod writer;

use client::{Answer, Client};
use config::Config;
use properties::Properties;
use sluice_sdk::prelude::*;
pub use writer::HubSpotWriter;

/// Prefix an error's message with what was being done, keeping its kind.
pub(crate) fn with_context(error: PluginError, context: &str) -> PluginError {
    error.context(context)
}

fn properties(client: &Client, object: &str) -> Result<Vec<properties::Property>, PluginError> {
    let path = format!("/crm/v3/properties/{object}");
    match client.call("GET", &path, None)? {
        Answer::Done(response) => Ok(response.json::<Properties>()?.results),
        Answer::Refused { status, error } => Err(PluginError::Config(format!(
            "HubSpot does not know object type `{object}` (GET {path}: HTTP {status}: {})",
            error.describe()
        ))),
    }
}

pub struct HubSpot;

impl Destination for HubSpot {
    type Writer = HubSpotWriter;

    fn spec() -> PluginSpec {
        PluginSpec::new(
            "hubspot",
            env!("CARGO_PKG_VERSION"),
            "Writes HubSpot CRM objects through the v3 batch endpoints",
        )
        .capability("${config.base_url}")
        .capability("https://api.hubapi.com")
        .batch_size(100)
        // The smallest private-app tier: 100 requests per 10 s.
        .rate_limit(100, 10_000, 5)
        .config_schema(config::schema())
    }

    fn check(config: &str) -> Result<(), PluginError> {
        let config = Config::parse(config)?;
        let client = Client { config };
        properties(&client, &client.config.object_type).map(|_| ())
    }

    fn discover(config: &str) -> Result<Vec<ObjectInfo>, PluginError> {
        let config = Config::parse(config)?;
        let client = Client { config };
        let object = client.config.object_type.clone();
        Ok(vec![properties::object_info(
            &object,
            &properties(&client, &object)?,
        )])
    }

    /// The target's object wins over `object_type` when both are given.
    fn open(config: &str, target: WriteTarget) -> Result<HubSpotWriter, PluginError> {
        let config = Config::parse(config)?;
        let object = if target.object.is_empty() {
            config.object_type.clone()
        } else {
            target.object.clone()
        };
        let client = Client { config };
        if target.mode == WriteMode::Append {
            return Err(PluginError::Config(
                "hubspot does not append; use insert".into(),
            ));
        }
        let props = properties(&client, &object)?;
        let id_property =
            properties::check_identifier(&props, &object, target.mode, &target.identifier)
                .map_err(|m| PluginError::Config(format!("{object}: {m}")))?;
        Ok(HubSpotWriter {
            client,
            object,
            mode: target.mode,
            id_property,
        })
    }
}

/// `sluice verify`: which identifiers have a record, by `batch/read` with
/// the sync's identifier as `idProperty` (100 a request).
impl Lookup for HubSpot {
    fn exists(
        config: &str,
        target: WriteTarget,
        ids: Vec<Value>,
    ) -> Result<Vec<bool>, PluginError> {
        let writer = Self::open(config, target)?;
        let keys: Vec<Option<String>> = ids.iter().map(writer::key_text).collect();
        let mut values: Vec<String> = keys.iter().flatten().cloned().collect();
        values.sort();
        values.dedup();
        let found = writer.record_ids(&values)?;
        Ok(keys
            .iter()
            .map(|k| {
                k.as_ref()
                    .is_some_and(|k| found.contains_key(&k.to_lowercase()))
            })
            .collect())
    }
}

sluice_sdk::export_verifiable_destination!(HubSpot);
