//! The project file, `sluice.yaml`: sources, destinations, transforms,
//! models and syncs, as code.
//!
//! [`validate`] reads `<project>/sluice.yaml`, interpolates `${ENV_VAR}`s,
//! and returns either the whole [`Project`] or every problem found, each
//! with file, line, column and what was expected. Values that came from the
//! environment are [`Str`]s that print as `<redacted>`.
//!
//! ```yaml
//! sources:
//!   warehouse:
//!     plugin: postgres                 # installed or built-in; postgres@0.1.0 or
//!                                      # postgres@sha256:HEX pins one; or ./path/to.wasm
//!     config: { url: "${PG_URL}" }
//!     grants: ["postgres://127.0.0.1:5432"]
//! destinations:
//!   crm:
//!     plugin: ./plugins/webhook.wasm
//!     config: { url: "https://hooks.example.com/in" }
//!     grants: ["https://hooks.example.com"]
//!     rate_limit: { requests: 10, per_ms: 1000, concurrency: 2, daily: 250000 }
//!                                      # daily (optional): requests per UTC day
//! transforms:
//!   hash_pii: { plugin: pii-hash, config: { fields: [email] } }
//! models:
//!   users:
//!     source: warehouse
//!     query: select id, email, plan from users
//!     primary_key: id                  # or [tenant, id]
//! syncs:
//!   users_to_crm:
//!     model: users
//!     destination: crm
//!     object: Contact
//!     mode: upsert                     # upsert | update | insert | mirror | append
//!     identifier: external_id
//!     mappings:
//!       - { from: id, to: external_id, type: string }
//!       - { from: email, to: email }
//!       - { constant: sluice, to: lead_source }
//!     transforms: [hash_pii]
//!     batch_size: 500
//!     rate_limit: { requests: 5, per_ms: 1000, concurrency: 1 }  # this sync only
//!     schedule: "*/15 * * * *"         # cron (UTC) or `every 15m`; run by `sluice worker`
//!     after: other_sync                # or: run after each successful run of another sync
//!     after_max_rejected: 100          # ... unless that run rejected more rows than this
//!     max_deletes: 10%                 # mirror: refuse a run that would delete more
//!                                      # (a count, or a share of what was delivered)
//!     allow_empty: false               # mirror: refuse an empty model (the default)
//!     max_wait: 15m                    # longest wait a rate limit may ask for (the default)
//!     run_deadline: 2h                 # a longer run stops, committed, as failed
//! limits:                              # project-wide; a plugin's own `limits:` wins
//!   memory: 256MiB                     # linear memory per instance
//!   cpu_per_call: 60s                  # guest CPU time of one call
//!   call_deadline: 5m                  # wall clock of one call, waiting included
//!   sockets: 16                        # open TCP sockets per instance
//!   requests_in_flight: 64             # outgoing HTTP requests per instance
//!   log_bytes_per_run: 1MiB            # plugin log and stdio kept per instance
//!   message_bytes: 4KiB                # of a rejection or error message
//!   spec_bytes: 1MiB                   # of a plugin's spec, schema included
//!   max_wait: 15m                      # default of every sync's max_wait
//!   run_deadline: 2h                   # default of every sync's run_deadline
//! ```

pub mod dbt;
pub mod edit;
pub mod grant;
mod parse;
mod value;
mod yaml;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use grant::{DirGrant, Grant, GrantKind};
pub use value::{interpolate, ConfigValue, InterpolationError, Str, REDACTED};

use sluice_runtime::bindings::types::{RateLimit, ReadRequest, WriteMode};
use sluice_runtime::sandbox::policy::Grants;
use sluice_runtime::Limits;
use std::time::Duration;

/// The project file's name inside a project directory.
pub const PROJECT_FILE: &str = "sluice.yaml";

/// Where something is defined: `file:line:column`, 1-based.
#[derive(Clone, PartialEq, Eq)]
pub struct Location {
    pub file: Arc<Path>,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One problem in the project file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// What would have been accepted here, when that can be said briefly.
    pub expected: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )?;
        match &self.expected {
            Some(e) => write!(f, " (expected {e})"),
            None => Ok(()),
        }
    }
}

/// A validated project.
#[derive(Debug, Clone)]
pub struct Project {
    /// The project directory; relative paths in the file are resolved
    /// against it.
    pub dir: PathBuf,
    /// The project file.
    pub file: PathBuf,
    pub sources: BTreeMap<String, PluginInstance>,
    pub destinations: BTreeMap<String, DestinationConfig>,
    pub transforms: BTreeMap<String, PluginInstance>,
    pub models: BTreeMap<String, Model>,
    pub syncs: BTreeMap<String, SyncConfig>,
    /// `notify:`: where run lifecycle events are posted, if anywhere.
    pub notify: Option<Notify>,
}

/// A run lifecycle event a project can be notified of (`notify.events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RunEvent {
    /// A run began (its row is recorded, nothing read yet).
    Started,
    Succeeded,
    Failed,
    /// A run, succeeded or failed, rejected at least `rejected_threshold`
    /// rows.
    Rejected,
}

/// The key of a `whsec_` secret, when what follows the prefix is base64.
fn base64_decodes(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

impl RunEvent {
    pub const ALL: [RunEvent; 4] = [
        RunEvent::Started,
        RunEvent::Succeeded,
        RunEvent::Failed,
        RunEvent::Rejected,
    ];

    /// The name in `notify.events`.
    pub fn name(self) -> &'static str {
        match self {
            RunEvent::Started => "started",
            RunEvent::Succeeded => "succeeded",
            RunEvent::Failed => "failed",
            RunEvent::Rejected => "rejected",
        }
    }
}

/// `notify:`: run lifecycle events POSTed as JSON to `url`, signed with
/// Standard Webhooks like the webhook destination when `secret` is set.
#[derive(Debug, Clone, PartialEq)]
pub struct Notify {
    /// `http://` or `https://`.
    pub url: Str,
    /// `whsec_` and a base64 key (usually `${NAME}`); unsigned without it.
    pub secret: Option<Str>,
    /// Which events are sent (all by default).
    pub events: Vec<RunEvent>,
    /// A `rejected` event is sent when a run rejects at least this many
    /// rows (default 1).
    pub rejected_threshold: u64,
    /// Where `notify:` is, for messages.
    pub location: Location,
}

impl Project {
    /// Every secret value of every plugin's config: what must never be
    /// printed or stored, whichever plugin echoes it.
    pub fn secret_values(&self) -> Vec<String> {
        let instances = self
            .sources
            .values()
            .chain(self.transforms.values())
            .chain(self.destinations.values().map(|d| &d.instance));
        let notify_secret = self
            .notify
            .iter()
            .flat_map(|n| [Some(&n.url), n.secret.as_ref()])
            .flatten()
            .filter(|s| s.is_secret())
            .map(|s| s.expose().to_owned());
        instances
            .flat_map(PluginInstance::secret_values)
            .chain(notify_secret)
            .collect()
    }

    /// The state directory, `<project>/.sluice`.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join(".sluice")
    }

    /// A sync by name, with an error that suggests a close name.
    pub fn sync(&self, name: &str) -> Result<&SyncConfig, String> {
        self.syncs.get(name).ok_or_else(|| {
            unknown_name_message("sync", name, self.syncs.keys().map(String::as_str))
        })
    }

    /// The model a sync reads (validated to exist).
    pub fn model_of(&self, sync: &SyncConfig) -> &Model {
        &self.models[&sync.model]
    }

    /// The destination a sync writes to (validated to exist).
    pub fn destination_of(&self, sync: &SyncConfig) -> &DestinationConfig {
        &self.destinations[&sync.destination]
    }

    /// The destination a sync's `outcomes:` are written to, if it has any
    /// (validated to exist).
    pub fn outcomes_destination_of(&self, sync: &SyncConfig) -> Option<&DestinationConfig> {
        sync.outcomes
            .as_ref()
            .map(|o| &self.destinations[&o.destination])
    }

    /// The source a model reads (validated to exist).
    pub fn source_of(&self, model: &Model) -> &PluginInstance {
        &self.sources[&model.source]
    }
}

/// Where a plugin's component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginRef {
    /// A `.wasm` file, resolved against the project directory; it exists.
    Path(PathBuf),
    /// The name of a plugin, e.g. `postgres`: the one version installed in
    /// the project (`sluice plugin install`), or else the built-in plugin of
    /// that name.
    Installed(String),
    /// `name@VERSION` or `name@sha256:HEX`: one installed version of a
    /// plugin, never a built-in.
    Pinned { name: String, pin: PluginPin },
    /// `uploaded:NAME@sha256:HEX`: a component the tenant uploaded to a
    /// `sluice serve` (crates/server/src/components.rs), pinned by its full
    /// SHA-256 (64 lowercase hex digits). The server writes it into the
    /// project's `.sluice/uploaded/` before a run; the CLI has none.
    Uploaded { name: String, sha256: String },
}

/// The prefix of a reference to an uploaded component.
pub const UPLOADED_PREFIX: &str = "uploaded:";

/// Parses what follows `uploaded:`: `NAME@sha256:HEX` with the full digest.
pub fn parse_uploaded(text: &str) -> Result<(String, String), String> {
    let (name, pin) = text
        .split_once('@')
        .ok_or_else(|| "an uploaded component is pinned: `uploaded:NAME@sha256:HEX`".to_string())?;
    if !parse::valid_name(name) {
        return Err(format!(
            "`{name}` is not a component name (letters, digits, `_` and `-`)"
        ));
    }
    let hex = pin
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("`{pin}` is not `sha256:HEX`"))?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!(
            "`sha256:{hex}` is not a full SHA-256 (64 lowercase hex digits, as the upload answered)"
        ));
    }
    Ok((name.to_owned(), hex.to_owned()))
}

/// How a `plugin:` reference pins an installed plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginPin {
    /// `webhook@0.1.0`: the version from the plugin's spec.
    Version(String),
    /// `webhook@sha256:3f2a...`: the component's SHA-256 (lowercase hex; a
    /// unique prefix of at least 12 digits is enough).
    Digest(String),
}

impl PluginPin {
    /// Parses what follows the `@` of `name@...`.
    pub fn parse(text: &str) -> Result<PluginPin, String> {
        if let Some(hex) = text.strip_prefix("sha256:") {
            let hex = hex.to_ascii_lowercase();
            if hex.len() < 12 || hex.len() > 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!(
                    "`sha256:{hex}` is not a digest: expected 12 to 64 hex digits"
                ));
            }
            return Ok(PluginPin::Digest(hex));
        }
        let ok = !text.is_empty()
            && text.chars().next().is_some_and(|c| c.is_ascii_digit())
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c));
        if ok {
            Ok(PluginPin::Version(text.to_owned()))
        } else {
            Err(format!(
                "`{text}` is neither a version like `0.1.0` nor a digest like `sha256:3f2a…`"
            ))
        }
    }
}

impl fmt::Display for PluginPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginPin::Version(v) => f.write_str(v),
            PluginPin::Digest(d) => write!(f, "sha256:{d}"),
        }
    }
}

/// A configured source, destination or transform plugin.
#[derive(Debug, Clone)]
pub struct PluginInstance {
    /// The name it has in the project file.
    pub name: String,
    pub plugin: PluginRef,
    /// The `config:` mapping, handed to the plugin as JSON.
    pub config: BTreeMap<String, ConfigValue>,
    /// What the operator grants it: network patterns and directories.
    pub grants: Vec<Grant>,
    /// Its `limits:` over the project's: what its instances may use.
    pub limits: LimitsConfig,
    pub location: Location,
}

/// The sandbox limits a `limits:` mapping sets (the project's, or one
/// plugin's); each key left out keeps the runtime's default (see
/// [`Limits::default`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitsConfig {
    pub memory: Option<usize>,
    pub cpu_per_call: Option<Duration>,
    pub call_deadline: Option<Duration>,
    pub sockets: Option<usize>,
    pub requests_in_flight: Option<usize>,
    pub log_bytes_per_run: Option<usize>,
    pub message_bytes: Option<usize>,
    pub spec_bytes: Option<usize>,
}

impl LimitsConfig {
    pub fn is_empty(&self) -> bool {
        *self == LimitsConfig::default()
    }

    /// These limits, with `base`'s for the keys left out.
    pub fn over(&self, base: &LimitsConfig) -> LimitsConfig {
        LimitsConfig {
            memory: self.memory.or(base.memory),
            cpu_per_call: self.cpu_per_call.or(base.cpu_per_call),
            call_deadline: self.call_deadline.or(base.call_deadline),
            sockets: self.sockets.or(base.sockets),
            requests_in_flight: self.requests_in_flight.or(base.requests_in_flight),
            log_bytes_per_run: self.log_bytes_per_run.or(base.log_bytes_per_run),
            message_bytes: self.message_bytes.or(base.message_bytes),
            spec_bytes: self.spec_bytes.or(base.spec_bytes),
        }
    }

    /// `defaults` with the keys these limits set replaced.
    pub fn apply(&self, defaults: &Limits) -> Limits {
        let mut limits = defaults.clone();
        if let Some(v) = self.memory {
            limits.memory_bytes = v;
        }
        if let Some(v) = self.cpu_per_call {
            limits.call_deadline = v;
        }
        if let Some(v) = self.call_deadline {
            limits.wall_deadline = v;
        }
        if let Some(v) = self.sockets {
            limits.sockets = v;
        }
        if let Some(v) = self.requests_in_flight {
            limits.requests_in_flight = v;
        }
        if let Some(v) = self.log_bytes_per_run {
            limits.output_bytes = v;
            // One call cannot keep more than the whole run.
            limits.log_bytes_per_call = limits.log_bytes_per_call.min(v);
        }
        if let Some(v) = self.message_bytes {
            limits.message_bytes = v;
        }
        if let Some(v) = self.spec_bytes {
            limits.spec_bytes = v;
        }
        limits
    }
}

impl PluginInstance {
    /// The config document for the plugin's `check`/`discover`/`read`/...
    /// calls. Contains secrets: pass it to the plugin, never log it.
    pub fn config_json(&self) -> String {
        let map = ConfigValue::Map(self.config.clone());
        map.to_plugin_json().to_string()
    }

    /// The secret values (from `${ENV}`) of this plugin's config.
    pub fn secret_values(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.config.values().for_each(|v| v.secret_values(&mut out));
        out
    }

    /// The project's grants for this plugin, as sandbox grants.
    pub fn granted(&self) -> Grants {
        self.grants.iter().map(|g| g.kind.clone()).collect()
    }
}

/// A destination: a plugin plus an optional rate-limit override.
#[derive(Debug, Clone)]
pub struct DestinationConfig {
    pub instance: PluginInstance,
    /// Replaces the plugin's declared rate limit for every sync writing here.
    pub rate_limit: Option<RateLimitOverride>,
}

/// `rate_limit: {requests, per_ms, concurrency[, daily]}`: at most
/// `requests` calls per `per_ms` milliseconds, at most `concurrency` in
/// flight, and with `daily` at most that many requests per UTC day for the
/// credentials (every run that writes with them). All > 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitOverride {
    pub requests: u32,
    pub per_ms: u32,
    pub concurrency: u32,
    /// Requests per UTC day. The plugin contract's `rate-limit` has no
    /// daily field, so only the project declares one.
    pub daily: Option<u32>,
}

impl From<RateLimitOverride> for RateLimit {
    fn from(r: RateLimitOverride) -> Self {
        RateLimit {
            requests: r.requests,
            per_ms: r.per_ms,
            concurrency: r.concurrency,
        }
    }
}

/// What a model reads from its source.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelRead {
    Query(Str),
    Object(Str),
}

/// A model: rows from a source plus the columns that identify them.
#[derive(Debug, Clone)]
pub struct Model {
    pub name: String,
    /// A key of [`Project::sources`].
    pub source: String,
    pub read: ModelRead,
    /// One or more distinct columns; never empty.
    pub primary_key: Vec<String>,
    /// Where the model's rows are compared with what was delivered
    /// (`diff:`, default `host`).
    pub diff: DiffLocation,
    /// The dbt model this model reads (`dbt:` and `project:`), resolved
    /// from the dbt project's manifest; `read` is then its relation.
    pub dbt: Option<dbt::DbtModel>,
    pub location: Location,
}

impl Model {
    /// The request for the source plugin's `read` (exposes secrets).
    pub fn read_request(&self) -> ReadRequest {
        match &self.read {
            ModelRead::Query(q) => ReadRequest::Query(q.expose().to_owned()),
            ModelRead::Object(o) => ReadRequest::Object(o.expose().to_owned()),
        }
    }
}

/// Where a model is diffed (`diff:` of a model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DiffLocation {
    /// On the host: every row of the model is read and hashed there, the
    /// snapshot is the state store's.
    #[default]
    Host,
    /// Inside the warehouse: the source keeps the snapshot in schema
    /// `sluice` there and returns only changed rows (sources that export
    /// `warehouse-diff-api`).
    Warehouse,
}

impl DiffLocation {
    pub const ALL: [DiffLocation; 2] = [DiffLocation::Host, DiffLocation::Warehouse];

    pub fn as_str(self) -> &'static str {
        match self {
            DiffLocation::Host => "host",
            DiffLocation::Warehouse => "warehouse",
        }
    }
}

impl fmt::Display for DiffLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a sync applies rows to the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncMode {
    /// Create or update by identifier.
    Upsert,
    /// Update records that exist; others are rejected by the destination.
    Update,
    /// Create new keys only; changed rows are not sent.
    Insert,
    /// Upsert, and delete rows that left the model (only rows Sluice itself
    /// delivered).
    Mirror,
    /// Send every new or changed row as an event.
    Append,
}

impl SyncMode {
    pub const ALL: [SyncMode; 5] = [
        SyncMode::Upsert,
        SyncMode::Update,
        SyncMode::Insert,
        SyncMode::Mirror,
        SyncMode::Append,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::Upsert => "upsert",
            SyncMode::Update => "update",
            SyncMode::Insert => "insert",
            SyncMode::Mirror => "mirror",
            SyncMode::Append => "append",
        }
    }

    /// The destination write mode for added and changed rows.
    pub fn write_mode(self) -> WriteMode {
        match self {
            SyncMode::Upsert | SyncMode::Mirror => WriteMode::Upsert,
            SyncMode::Update => WriteMode::Update,
            SyncMode::Insert => WriteMode::Insert,
            SyncMode::Append => WriteMode::Append,
        }
    }

    /// Whether rows that left the model are deleted in the destination.
    pub fn deletes_removed(self) -> bool {
        self == SyncMode::Mirror
    }

    /// Whether rows whose content changed are sent again.
    pub fn sends_changed(self) -> bool {
        self != SyncMode::Insert
    }

    /// Whether the destination matches records on the identifier field
    /// (every mode except append, which only emits events).
    pub fn needs_identifier(self) -> bool {
        self != SyncMode::Append
    }
}

impl fmt::Display for SyncMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mapping's `type:` coercion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coercion {
    /// Integer, float or exact decimal.
    Number,
    Integer,
    String,
    Bool,
    Timestamp,
    Json,
}

impl Coercion {
    pub const ALL: [Coercion; 6] = [
        Coercion::Number,
        Coercion::Integer,
        Coercion::String,
        Coercion::Bool,
        Coercion::Timestamp,
        Coercion::Json,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Coercion::Number => "number",
            Coercion::Integer => "integer",
            Coercion::String => "string",
            Coercion::Bool => "bool",
            Coercion::Timestamp => "timestamp",
            Coercion::Json => "json",
        }
    }
}

/// Where a mapped field's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum MappingSource {
    /// A column of the model.
    Column(String),
    /// The same value for every row.
    Constant(ConfigValue),
}

/// One `{from|constant, to, type}` entry of a sync's `mappings`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    pub source: MappingSource,
    /// The destination field.
    pub to: String,
    pub coerce: Option<Coercion>,
    pub location: Location,
}

/// When a sync runs on its own in server mode: its ticks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// `every 15m`: a tick at every multiple of the interval since the
    /// Unix epoch (so every worker agrees on the ticks).
    Every(std::time::Duration),
    /// A five-field cron expression (minute hour day month weekday),
    /// evaluated in UTC to the minute, by graphile-worker's crontab parser.
    Cron {
        expression: String,
        timer: graphile_worker_crontab_types::CrontabTimer,
    },
}

/// How far back [`Schedule::latest_tick`] looks for a cron tick.
const CRON_LOOKBACK_MINUTES: i64 = 366 * 24 * 60;

impl Schedule {
    /// `every <duration>` or a cron expression; the message says which
    /// part is wrong.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let text = text.trim();
        if let Some(interval) = text.strip_prefix("every ") {
            let d = sluice_runtime::limits::parse_duration(interval.trim())
                .map_err(|e| format!("`{text}`: {e}"))?;
            if d.as_secs() < 1 || d.subsec_nanos() != 0 {
                return Err(format!(
                    "`{text}`: an interval is a whole number of seconds, at least 1s"
                ));
            }
            return Ok(Schedule::Every(d));
        }
        if text.split_whitespace().count() != 5 {
            return Err(format!(
                "`{text}` is neither `every <duration>` nor a cron expression of five fields \
                 (minute hour day month weekday)"
            ));
        }
        let line = format!("{text} sluice_run");
        let parsed = graphile_worker_crontab_parser::parse_crontab(&line)
            .map_err(|e| format!("cron expression `{text}`: {e}"))?;
        let zero_step = parsed.iter().any(|tab| {
            let t = &tab.timer;
            [&t.minutes, &t.hours, &t.days, &t.months, &t.dows]
                .iter()
                .any(|field| field.contains(&graphile_worker_crontab_types::CrontabValue::Step(0)))
        });
        if zero_step {
            return Err(format!(
                "cron expression `{text}` has a step of 0 (`*/0`), which never fires"
            ));
        }
        match parsed.into_iter().next() {
            Some(tab) => Ok(Schedule::Cron {
                expression: text.to_owned(),
                timer: tab.timer,
            }),
            None => Err(format!("cron expression `{text}` has no schedule")),
        }
    }

    /// The schedule as written (what a change of schedule is compared by).
    pub fn text(&self) -> String {
        match self {
            Schedule::Every(d) => format!("every {}s", d.as_secs()),
            Schedule::Cron { expression, .. } => expression.clone(),
        }
    }

    /// The latest tick at or before `now` (Unix seconds, UTC), if one is
    /// within a year.
    pub fn latest_tick(&self, now: i64) -> Option<i64> {
        match self {
            Schedule::Every(d) => {
                let step = d.as_secs() as i64;
                Some(now.div_euclid(step) * step)
            }
            Schedule::Cron { timer, .. } => {
                let minute = now.div_euclid(60) * 60;
                (0..CRON_LOOKBACK_MINUTES)
                    .map(|back| minute - back * 60)
                    .find(|t| {
                        chrono::DateTime::from_timestamp(*t, 0)
                            .is_some_and(|at| timer.should_run_at(&at.naive_utc()))
                    })
            }
        }
    }
}

/// A sync: a model written to a destination object in a mode.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    pub name: String,
    /// A key of [`Project::models`].
    pub model: String,
    /// A key of [`Project::destinations`].
    pub destination: String,
    /// The destination object, e.g. `Contact`.
    pub object: Str,
    pub mode: SyncMode,
    /// The destination field holding the external id; required unless the
    /// mode is append.
    pub identifier: Option<Str>,
    /// Empty means "send the model's columns as fields, unchanged".
    pub mappings: Vec<Mapping>,
    /// Keys of [`Project::transforms`], applied in order after mapping.
    pub transforms: Vec<String>,
    pub batch_size: Option<u32>,
    /// Wins over the destination's `rate_limit` and the plugin's spec
    /// (its `daily`, when it has none, is the destination's).
    pub rate_limit: Option<RateLimitOverride>,
    /// When `sluice worker` runs the sync on its own (the CLI ignores it).
    pub schedule: Option<Schedule>,
    /// A sequence: `sluice worker` enqueues this sync after each run of
    /// the named sync that succeeds (the CLI ignores it).
    pub after: Option<String>,
    /// Stops the sequence: this sync is not enqueued after a run of
    /// `after` that rejected more rows than this.
    pub after_max_rejected: Option<u64>,
    /// Mirror mode: the most deletes one run may send; `None` sets no limit.
    pub max_deletes: Option<MaxDeletes>,
    /// Mirror mode: whether a model with no rows may delete what was
    /// delivered. Off by default: an empty model is refused.
    pub allow_empty: bool,
    /// The longest single wait the destination or its API may ask for
    /// (`rate-limited`, a quota window, a declared rate); longer, and the
    /// run stops as paused. `None`: the engine's default (15 minutes).
    pub max_wait: Option<std::time::Duration>,
    /// The longest a run of this sync may take, wall clock; a run that
    /// reaches it stops with what was acknowledged committed and is
    /// recorded as failed. `None`: no deadline.
    pub run_deadline: Option<std::time::Duration>,
    /// Where each run's per-row outcomes are written (`outcomes:`), if
    /// anywhere.
    pub outcomes: Option<Outcomes>,
    pub location: Location,
}

/// `outcomes:` of a sync: every run's per-row results (key, operation,
/// status, message, run id, sync, time) appended as rows to a table of a
/// destination connection of the project, so analysts can query them
/// beside their models.
#[derive(Debug, Clone)]
pub struct Outcomes {
    /// A key of [`Project::destinations`].
    pub destination: String,
    /// The table (the destination's object) the outcome rows are appended to.
    pub object: Str,
    /// Which rows get an outcome row.
    pub rows: OutcomeRows,
    pub location: Location,
}

/// `rows:` of `outcomes:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeRows {
    /// Every row the run wrote, deleted, rejected or found invalid (the
    /// default).
    All,
    /// Only rows rejected or invalid.
    Failed,
}

impl OutcomeRows {
    pub const ALL: [OutcomeRows; 2] = [OutcomeRows::All, OutcomeRows::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeRows::All => "all",
            OutcomeRows::Failed => "failed",
        }
    }
}

/// `max_deletes:` a count (`500`) or a share of the records the sync has
/// delivered (`10%`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxDeletes {
    Count(u64),
    /// Percent, 0 to 100.
    Percent(f64),
}

impl MaxDeletes {
    /// The most deletes allowed when `delivered` records are on record.
    pub fn limit(self, delivered: u64) -> u64 {
        match self {
            MaxDeletes::Count(n) => n,
            MaxDeletes::Percent(p) => ((delivered as f64) * p / 100.0).floor() as u64,
        }
    }
}

impl fmt::Display for MaxDeletes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxDeletes::Count(n) => write!(f, "{n}"),
            MaxDeletes::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// Reads and validates `<project_dir>/sluice.yaml` with the process
/// environment for `${...}`.
pub fn validate(project_dir: &Path) -> Result<Project, Vec<Diagnostic>> {
    validate_with_env(project_dir, &|name| std::env::var(name).ok())
}

/// [`validate`] with an explicit environment (tests, and servers that keep
/// per-tenant secrets outside the process environment).
pub fn validate_with_env(
    project_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Project, Vec<Diagnostic>> {
    let file = project_dir.join(PROJECT_FILE);
    let text = std::fs::read_to_string(&file).map_err(|e| {
        vec![Diagnostic {
            file: file.clone(),
            line: 1,
            column: 1,
            message: format!("cannot read the project file: {e}"),
            expected: Some(format!(
                "a readable `{PROJECT_FILE}` in {}",
                project_dir.display()
            )),
        }]
    })?;
    parse_project(project_dir, &file, &text, env)
}

/// Validates project-file text as if it were `file` inside `project_dir`.
pub fn parse_project(
    project_dir: &Path,
    file: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Project, Vec<Diagnostic>> {
    parse::Reader::new(project_dir, file, env).project(text)
}

/// The candidate closest to `word`, if any is close enough to be a likely
/// typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    close_matches(word, candidates, 1).into_iter().next()
}

/// Up to `n` candidates close to `word`, closest first.
pub fn close_matches<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    n: usize,
) -> Vec<&'a str> {
    let lower = word.to_lowercase();
    let mut scored: Vec<(f64, &str)> = candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&lower, &c.to_lowercase()), c))
        .filter(|(score, _)| *score >= 0.8)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored.into_iter().take(n).map(|(_, c)| c).collect()
}

/// "unknown KIND `name`; did you mean `x`?" or the list of known names.
pub(crate) fn unknown_name_message<'a>(
    kind: &str,
    name: &str,
    known: impl Iterator<Item = &'a str> + Clone,
) -> String {
    if let Some(s) = suggest(name, known.clone()) {
        return format!("unknown {kind} `{name}`; did you mean `{s}`?");
    }
    let all: Vec<&str> = known.collect();
    if all.is_empty() {
        format!("unknown {kind} `{name}`: none is defined")
    } else {
        format!("unknown {kind} `{name}`; defined: {}", all.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_only() {
        let keys = ["destination", "model", "mappings"];
        assert_eq!(suggest("destinaton", keys), Some("destination"));
        assert_eq!(suggest("mapings", keys), Some("mappings"));
        assert_eq!(suggest("zzz", keys), None);
    }
}
