//! Shared emulator state and the [`EmulatorHandle`] tests and the CLI use to inspect
//! and steer a running emulator.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::Value;

use crate::config::{EmulatorConfig, FaultConfig, RateLimit};
use crate::faults::FaultState;
use crate::limits::Limiter;
use crate::schema::{FieldSpec, ObjectSpec};
use crate::store::Store;
use crate::{bigquery, databricks, hubspot, salesforce, snowflake, EmulatorKind};

/// Counters of what the emulator saw and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Every request that reached the server, including faulted ones.
    pub requests: u64,
    /// Requests answered 403 REQUEST_LIMIT_EXCEEDED (Salesforce) or 429 (HubSpot).
    pub throttled: u64,
    /// Requests answered 401.
    pub unauthorized: u64,
    /// Injected 500/503 responses.
    pub server_errors_injected: u64,
    /// Injected slow responses.
    pub slow_injected: u64,
    /// Injected dropped connections.
    pub dropped_injected: u64,
    /// Requests being served right now.
    pub in_flight: u64,
    /// The most requests ever served at once (a client's concurrency).
    pub max_in_flight: u64,
    /// Authenticated requests per endpoint, keyed `"METHOD /route/pattern"`.
    pub by_endpoint: BTreeMap<String, u64>,
}

impl StatsSnapshot {
    /// Requests made to `method` + route pattern, e.g.
    /// `("PATCH", "/services/data/{version}/composite/sobjects/{object}/{field}")`.
    pub fn endpoint(&self, method: &str, route: &str) -> u64 {
        self.by_endpoint
            .get(&format!("{method} {route}"))
            .copied()
            .unwrap_or(0)
    }
}

/// An access token the emulator knows about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The bearer token.
    pub token: String,
    /// The client it was issued to (HubSpot: `"private-app"`).
    pub client_id: String,
    /// The grant that produced it (`client_credentials`, `jwt-bearer`, `private-app`).
    pub grant: String,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
    /// False once expired or revoked.
    pub valid: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct TokenEntry {
    pub client_id: String,
    pub grant: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: Option<Instant>,
}

/// Result of checking a bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenStatus {
    Valid,
    Expired { ago: Duration },
    Unknown,
}

/// Tokens in issue order.
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    entries: HashMap<String, TokenEntry>,
    order: Vec<String>,
}

impl Tokens {
    pub fn add(&mut self, token: String, entry: TokenEntry) {
        if self.entries.insert(token.clone(), entry).is_none() {
            self.order.push(token);
        }
    }

    pub fn check(&self, token: &str, now: Instant) -> TokenStatus {
        match self.entries.get(token) {
            None => TokenStatus::Unknown,
            Some(TokenEntry {
                expires_at: Some(at),
                ..
            }) if *at <= now => TokenStatus::Expired {
                ago: now.duration_since(*at),
            },
            Some(_) => TokenStatus::Valid,
        }
    }

    pub fn expire_all(&mut self, now: Instant) {
        for entry in self.entries.values_mut() {
            if entry.expires_at.is_none_or(|at| at > now) {
                entry.expires_at = Some(now);
            }
        }
    }

    pub fn list(&self, now: Instant) -> Vec<IssuedToken> {
        self.order
            .iter()
            .filter_map(|t| self.entries.get(t).map(|e| (t, e)))
            .map(|(token, e)| IssuedToken {
                token: token.clone(),
                client_id: e.client_id.clone(),
                grant: e.grant.clone(),
                issued_at: e.issued_at,
                valid: e.expires_at.is_none_or(|at| at > now),
            })
            .collect()
    }
}

/// Mutable counters behind [`StatsSnapshot`].
pub(crate) type Stats = StatsSnapshot;

/// Everything a running emulator holds; one per emulator, behind an `Arc`.
#[derive(Debug)]
pub(crate) struct Shared {
    pub kind: EmulatorKind,
    pub base_url: String,
    pub store: Mutex<Store>,
    pub limiter: Mutex<Limiter>,
    pub faults: Mutex<FaultState>,
    pub tokens: Mutex<Tokens>,
    pub stats: Mutex<Stats>,
    pub rng: Mutex<StdRng>,
    pub token_lifetime: Mutex<Duration>,
    pub next_id: Mutex<u64>,
    pub config: EmulatorConfig,
    pub salesforce: salesforce::SalesforceState,
    pub hubspot: hubspot::HubSpotState,
    pub snowflake: snowflake::SnowflakeState,
    pub bigquery: bigquery::BigQueryState,
    pub databricks: databricks::DatabricksState,
}

impl Shared {
    pub fn new(kind: EmulatorKind, config: EmulatorConfig, base_url: String) -> Self {
        let daily = match kind {
            EmulatorKind::Salesforce => config.salesforce.daily_api_limit,
            EmulatorKind::HubSpot => config.hubspot.daily_limit,
            EmulatorKind::Snowflake | EmulatorKind::BigQuery | EmulatorKind::Databricks => u64::MAX,
        };
        Self {
            kind,
            base_url,
            store: Mutex::new(Store::default()),
            limiter: Mutex::new(Limiter::new(default_rate(kind, config.rate_limit), daily)),
            faults: Mutex::new(FaultState::new(config.faults, config.seed)),
            tokens: Mutex::new(Tokens::default()),
            stats: Mutex::new(Stats::default()),
            rng: Mutex::new(StdRng::seed_from_u64(config.seed.wrapping_add(1))),
            token_lifetime: Mutex::new(config.token_lifetime),
            next_id: Mutex::new(1),
            salesforce: salesforce::SalesforceState::new(&config.salesforce),
            hubspot: hubspot::HubSpotState::default(),
            snowflake: snowflake::SnowflakeState::new(&config.snowflake),
            bigquery: bigquery::BigQueryState::new(&config.bigquery),
            databricks: databricks::DatabricksState::new(&config.databricks),
            config,
        }
    }

    /// A fresh sequence number for ids.
    pub fn next_seq(&self) -> u64 {
        let mut next = self.next_id.lock();
        let id = *next;
        *next += 1;
        id
    }

    /// `len` random alphanumeric characters from the seeded generator.
    pub fn random_alnum(&self, len: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = self.rng.lock();
        (0..len)
            .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
            .collect()
    }

    /// A version-4 UUID from the seeded generator (HubSpot correlation ids).
    pub fn random_uuid(&self) -> String {
        let bytes: [u8; 16] = self.rng.lock().random();
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
    }

    pub fn record_throttled(&self) {
        self.stats.lock().throttled += 1;
    }

    pub fn record_unauthorized(&self) {
        self.stats.lock().unauthorized += 1;
    }

    pub fn record_endpoint(&self, method: &str, route: &str) {
        *self
            .stats
            .lock()
            .by_endpoint
            .entry(format!("{method} {route}"))
            .or_default() += 1;
    }
}

/// HubSpot always has a rolling-window budget (its private-app default when none
/// is given); the other APIs are unthrottled unless told otherwise.
fn default_rate(kind: EmulatorKind, rate: Option<RateLimit>) -> Option<RateLimit> {
    match kind {
        EmulatorKind::HubSpot => rate.or(Some(hubspot::DEFAULT_RATE_LIMIT)),
        EmulatorKind::Salesforce
        | EmulatorKind::Snowflake
        | EmulatorKind::BigQuery
        | EmulatorKind::Databricks => rate,
    }
}

/// A cheap, cloneable handle to a running emulator's state: inspection for tests
/// and run-time controls for tests, benchmarks and the CLI.
#[derive(Debug, Clone)]
pub struct EmulatorHandle {
    pub(crate) shared: Arc<Shared>,
}

impl EmulatorHandle {
    /// Which API this emulator speaks.
    pub fn kind(&self) -> EmulatorKind {
        self.shared.kind
    }

    /// Records of `object` in creation order, in the API's own JSON shape:
    /// Salesforce `{"Id": …, "<Field>": …, "CreatedDate": …}`; HubSpot
    /// `{"id": …, "properties": {…}, "createdAt": …, "updatedAt": …, "archived": false}`.
    /// Unknown objects give an empty list.
    pub fn records(&self, object: &str) -> Vec<Value> {
        let store = self.shared.store.lock();
        let Some(table) = store.table(object) else {
            return Vec::new();
        };
        table
            .records()
            .map(|r| match self.shared.kind {
                EmulatorKind::Salesforce => salesforce::render_record(&table.spec, r),
                // The warehouse emulators keep no CRM records: their store stays empty.
                EmulatorKind::HubSpot
                | EmulatorKind::Snowflake
                | EmulatorKind::BigQuery
                | EmulatorKind::Databricks => hubspot::render_record(r, None),
            })
            .collect()
    }

    /// Delete a record of `object` by its id, as someone working in the
    /// CRM would (not through the API: no request is counted). Returns
    /// whether it existed.
    pub fn delete_record(&self, object: &str, id: &str) -> bool {
        self.shared
            .store
            .lock()
            .table_mut(object)
            .is_some_and(|t| t.remove(id))
    }

    /// Number of live records of `object`.
    pub fn record_count(&self, object: &str) -> usize {
        self.shared
            .store
            .lock()
            .table(object)
            .map_or(0, |t| t.len())
    }

    /// The first record of `object` whose `field` equals `value` (case-insensitive).
    pub fn find_record(&self, object: &str, field: &str, value: &str) -> Option<Value> {
        let wanted = Value::String(value.to_owned());
        self.records(object).into_iter().find(|r| {
            let v = match self.shared.kind {
                EmulatorKind::Salesforce => r.get(field),
                EmulatorKind::HubSpot
                | EmulatorKind::Snowflake
                | EmulatorKind::BigQuery
                | EmulatorKind::Databricks => r.get("properties").and_then(|p| p.get(field)),
            };
            v.and_then(crate::store::index_key) == crate::store::index_key(&wanted)
        })
    }

    /// Request, throttle and fault counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.lock().clone()
    }

    /// Every token issued (Salesforce) or configured (HubSpot), in order.
    pub fn issued_tokens(&self) -> Vec<IssuedToken> {
        self.shared.tokens.lock().list(Instant::now())
    }

    /// Expires every token known now; the next call with one of them gets 401.
    /// Salesforce clients recover by requesting a new token; HubSpot private-app
    /// tokens stay revoked until [`EmulatorHandle::add_token`] adds one again.
    pub fn expire_all_tokens(&self) {
        self.shared.tokens.lock().expire_all(Instant::now());
    }

    /// Adds (or re-validates) a HubSpot private-app token.
    pub fn add_token(&self, token: &str) {
        hubspot::add_static_token(&self.shared, token);
    }

    /// Changes how long newly issued Salesforce tokens live.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        *self.shared.token_lifetime.lock() = lifetime;
    }

    /// Replaces the fault injection settings (the generator keeps its position).
    pub fn set_faults(&self, faults: FaultConfig) {
        self.shared.faults.lock().config = faults;
    }

    /// Turns fault injection off.
    pub fn clear_faults(&self) {
        self.set_faults(FaultConfig::none());
    }

    /// Sets or removes the rolling-window rate limit; the window restarts empty.
    /// HubSpot has no unthrottled mode: `None` restores its default
    /// private-app budget (190 per 10 s).
    pub fn set_rate_limit(&self, limit: Option<RateLimit>) {
        let limit = default_rate(self.shared.kind, limit);
        self.shared.limiter.lock().set_rate(limit);
    }

    /// Sets the daily allowance (Salesforce `api-usage` M, HubSpot daily limit).
    pub fn set_daily_limit(&self, limit: u64) {
        self.shared.limiter.lock().set_daily_limit(limit);
    }

    /// Resets the daily usage counter to zero.
    pub fn reset_daily_usage(&self) {
        self.shared.limiter.lock().reset_daily_usage();
    }

    /// When the newest admitted requests (at most 100,000) arrived, oldest
    /// first: how much of the rate limit a client used over any stretch of
    /// time. Throttled requests are not in it.
    pub fn admissions(&self) -> Vec<Instant> {
        self.shared.limiter.lock().admissions()
    }

    /// Calls counted against the daily allowance so far.
    pub fn daily_usage(&self) -> u64 {
        self.shared.limiter.lock().daily_used()
    }

    /// Declared object types, with their fields (including system fields).
    pub fn objects(&self) -> Vec<ObjectSpec> {
        self.shared.store.lock().specs()
    }

    /// Declares a new object type. Salesforce custom objects must end in `__c`; the
    /// emulator adds the system fields (`Id`, `CreatedDate`… / `hs_object_id`…), a key
    /// prefix (Salesforce) or type id `2-N` (HubSpot).
    pub fn declare_object(&self, spec: ObjectSpec) -> anyhow::Result<()> {
        let mut store = self.shared.store.lock();
        if store.contains(&spec.name) {
            bail!("object {} is already declared", spec.name);
        }
        let prepared = match self.shared.kind {
            EmulatorKind::Salesforce => salesforce::prepare_object(spec, &store)?,
            EmulatorKind::HubSpot => hubspot::prepare_object(spec, &store)?,
            EmulatorKind::Snowflake | EmulatorKind::BigQuery | EmulatorKind::Databricks => {
                bail!(
                    "the {} emulator has no CRM objects: create tables with SQL",
                    self.shared.kind
                )
            }
        };
        store.add(prepared);
        Ok(())
    }

    /// Adds a field (property) to an existing object type.
    pub fn declare_field(&self, object: &str, field: FieldSpec) -> anyhow::Result<()> {
        let mut store = self.shared.store.lock();
        let table = store
            .table_mut(object)
            .with_context(|| format!("declaring field {}: unknown object {object}", field.name))?;
        if table.spec.find_field(&field.name).is_some() {
            bail!("field {} already exists on {object}", field.name);
        }
        table.spec.fields.push(field);
        table.rebuild_indexes();
        Ok(())
    }

    /// Makes a field required (or optional again).
    pub fn set_required(&self, object: &str, field: &str, required: bool) -> anyhow::Result<()> {
        self.edit_field(object, field, |f| f.required = required)
    }

    /// Makes a field unique (or not). Existing duplicates are kept.
    pub fn set_unique(&self, object: &str, field: &str, unique: bool) -> anyhow::Result<()> {
        self.edit_field(object, field, |f| f.unique = unique)
    }

    fn edit_field(
        &self,
        object: &str,
        field: &str,
        edit: impl FnOnce(&mut FieldSpec),
    ) -> anyhow::Result<()> {
        let mut store = self.shared.store.lock();
        let table = store
            .table_mut(object)
            .ok_or_else(|| anyhow!("unknown object {object}"))?;
        let spec = table
            .spec
            .find_field_mut(field)
            .ok_or_else(|| anyhow!("unknown field {field} on {object}"))?;
        edit(spec);
        table.rebuild_indexes();
        Ok(())
    }

    /// Salesforce: Bulk 2.0 jobs as JobInfo JSON, in creation order.
    pub fn bulk_jobs(&self) -> Vec<Value> {
        salesforce::bulk::job_infos(&self.shared)
    }

    /// Salesforce: delay of each Bulk 2.0 processing step for jobs closed from now on.
    pub fn set_bulk_processing_delay(&self, delay: Duration) {
        *self.shared.salesforce.bulk_delay.lock() = delay;
    }

    /// Salesforce: when `Some(message)`, Bulk 2.0 jobs processed from now on end in
    /// state `Failed` with that `errorMessage` and every row unprocessed.
    pub fn set_bulk_failure(&self, message: Option<String>) {
        *self.shared.salesforce.bulk_failure.lock() = message;
    }
}
