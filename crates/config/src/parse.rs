//! Turns the YAML tree into a [`Project`], collecting every problem.
//!
//! Each section is read independently so one broken entry does not hide the
//! problems of the others. Cross-references are checked against the *names*
//! defined in the file, so a sync naming a model whose body is broken does
//! not also get "unknown model".

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::dbt;
use super::grant::{parse_grant, Grant};
use super::value::{interpolate, ConfigValue, Str};
use super::yaml::{self, Node, NodeKind, Pos};
use super::{
    close_matches, unknown_name_message, Coercion, DestinationConfig, Diagnostic, LimitsConfig,
    Location, Mapping, MappingSource, MaxDeletes, Model, ModelRead, Notify, OutcomeRows, Outcomes,
    PluginInstance, PluginPin, PluginRef, Project, RateLimitOverride, RunEvent, SyncConfig,
    SyncMode,
};

const TOP_KEYS: &[&str] = &[
    "sources",
    "destinations",
    "transforms",
    "models",
    "syncs",
    "limits",
    "notify",
];
const NOTIFY_KEYS: &[&str] = &["url", "secret", "events", "rejected_threshold"];
const PLUGIN_KEYS: &[&str] = &["plugin", "config", "grants", "limits"];
const DESTINATION_KEYS: &[&str] = &["plugin", "config", "grants", "rate_limit", "limits"];
/// `limits:` keys that bound a plugin's instances.
const PLUGIN_LIMIT_KEYS: &[&str] = &[
    "memory",
    "cpu_per_call",
    "call_deadline",
    "sockets",
    "requests_in_flight",
    "log_bytes_per_run",
    "message_bytes",
    "spec_bytes",
];
/// The project's `limits:` also sets defaults for every sync.
const PROJECT_LIMIT_KEYS: &[&str] = &[
    "memory",
    "cpu_per_call",
    "call_deadline",
    "sockets",
    "requests_in_flight",
    "log_bytes_per_run",
    "message_bytes",
    "spec_bytes",
    "max_wait",
    "run_deadline",
];
/// The most a count limit (`sockets`, `requests_in_flight`) may be.
const MAX_COUNT_LIMIT: u32 = 100_000;
const RATE_KEYS: &[&str] = &["requests", "per_ms", "concurrency", "daily"];
const MODEL_KEYS: &[&str] = &[
    "source",
    "query",
    "object",
    "dbt",
    "project",
    "primary_key",
    "diff",
];
const SYNC_KEYS: &[&str] = &[
    "model",
    "destination",
    "object",
    "mode",
    "identifier",
    "mappings",
    "transforms",
    "batch_size",
    "rate_limit",
    "schedule",
    "after",
    "after_max_rejected",
    "max_deletes",
    "allow_empty",
    "max_wait",
    "run_deadline",
    "outcomes",
];
const OUTCOMES_KEYS: &[&str] = &["destination", "object", "rows"];
const MAPPING_KEYS: &[&str] = &["from", "constant", "to", "type"];

/// Largest accepted `batch_size`; beyond this one batch alone would hold
/// more rows than a plugin call can reasonably carry.
const MAX_BATCH_SIZE: u32 = 1_000_000;

/// The names each section defines, for cross-reference checks.
#[derive(Default)]
struct Names {
    sources: BTreeSet<String>,
    destinations: BTreeSet<String>,
    transforms: BTreeSet<String>,
    models: BTreeSet<String>,
    syncs: BTreeSet<String>,
}

/// The keys of one mapping node that passed the unknown-key check.
struct Fields<'n> {
    pos: Pos,
    entries: HashMap<&'n str, &'n Node>,
}

impl<'n> Fields<'n> {
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries.get(key).copied()
    }
}

pub(super) struct Reader<'a> {
    dir: PathBuf,
    file: Arc<Path>,
    env: &'a dyn Fn(&str) -> Option<String>,
    diags: Vec<Diagnostic>,
    /// The project's `limits:`, under every plugin's own.
    limits: LimitsConfig,
    /// The project's `limits.max_wait` and `limits.run_deadline`, the
    /// defaults of every sync.
    max_wait: Option<std::time::Duration>,
    run_deadline: Option<std::time::Duration>,
    /// dbt manifests by project folder, read once however many models
    /// name the same dbt project (a manifest can be tens of megabytes).
    dbt_manifests: HashMap<PathBuf, Result<dbt::LoadedManifest, String>>,
}

impl<'a> Reader<'a> {
    pub(super) fn new(dir: &Path, file: &Path, env: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Reader {
            dir: dir.to_path_buf(),
            file: Arc::from(file),
            env,
            diags: Vec::new(),
            limits: LimitsConfig::default(),
            max_wait: None,
            run_deadline: None,
            dbt_manifests: HashMap::new(),
        }
    }

    pub(super) fn project(mut self, text: &str) -> Result<Project, Vec<Diagnostic>> {
        let root = match yaml::parse(text) {
            Ok((root, problems)) => {
                for p in problems {
                    self.error(p.pos, p.message, None);
                }
                root
            }
            Err(p) => {
                self.error(p.pos, p.message, None);
                return Err(self.diags);
            }
        };
        let project = match root {
            Some(root) if !root.is_null() => self.top(&root),
            _ => {
                let expected = Some("a mapping with sources, destinations, models and syncs");
                self.error(
                    Pos { line: 1, column: 1 },
                    "the project file is empty".into(),
                    expected,
                );
                None
            }
        };
        self.diags.sort_by_key(|d| (d.line, d.column));
        match project {
            Some(p) if self.diags.is_empty() => Ok(p),
            _ => Err(self.diags),
        }
    }

    fn top(&mut self, root: &Node) -> Option<Project> {
        let f = self.fields(root, "the project file", TOP_KEYS)?;
        let names = Names {
            sources: section_names(f.get("sources")),
            destinations: section_names(f.get("destinations")),
            transforms: section_names(f.get("transforms")),
            models: section_names(f.get("models")),
            syncs: section_names(f.get("syncs")),
        };
        let mut project = Project {
            dir: self.dir.clone(),
            file: self.file.to_path_buf(),
            sources: BTreeMap::new(),
            destinations: BTreeMap::new(),
            transforms: BTreeMap::new(),
            models: BTreeMap::new(),
            syncs: BTreeMap::new(),
            notify: None,
        };
        if let Some(node) = f.get("limits").filter(|n| !n.is_null()) {
            let ctx = "the project's `limits`";
            if let Some(l) = self.limits(node, ctx, PROJECT_LIMIT_KEYS) {
                self.limits = l;
            }
            // The defaults of every sync (unknown keys were reported above).
            if let Some(n) = node_field(node, "max_wait") {
                self.max_wait = self.duration(n, &format!("`max_wait` in {ctx}"));
            }
            if let Some(n) = node_field(node, "run_deadline") {
                self.run_deadline = self.duration(n, &format!("`run_deadline` in {ctx}"));
            }
        }
        for (name, node) in self.section(f.get("sources"), "sources") {
            let ctx = format!("source `{name}`");
            if let Some(p) = self.plugin(&name, node, &ctx, PLUGIN_KEYS) {
                project.sources.insert(name, p);
            }
        }
        for (name, node) in self.section(f.get("destinations"), "destinations") {
            if let Some(d) = self.destination(&name, node) {
                project.destinations.insert(name, d);
            }
        }
        for (name, node) in self.section(f.get("transforms"), "transforms") {
            let ctx = format!("transform `{name}`");
            if let Some(p) = self.plugin(&name, node, &ctx, PLUGIN_KEYS) {
                project.transforms.insert(name, p);
            }
        }
        for (name, node) in self.section(f.get("models"), "models") {
            if let Some(m) = self.model(&name, node, &names) {
                project.models.insert(name, m);
            }
        }
        let mut after_positions = BTreeMap::new();
        for (name, node) in self.section(f.get("syncs"), "syncs") {
            if let Some(after) = node_field(node, "after") {
                after_positions.insert(name.clone(), after.pos);
            }
            if let Some(s) = self.sync(&name, node, &names) {
                project.syncs.insert(name, s);
            }
        }
        self.check_sequences(&project.syncs, &after_positions);
        if let Some(node) = f.get("notify").filter(|n| !n.is_null()) {
            project.notify = self.notify(node);
        }
        Some(project)
    }

    /// `notify: { url, secret, events, rejected_threshold }`.
    fn notify(&mut self, node: &Node) -> Option<Notify> {
        let ctx = "`notify`";
        let f = self.fields(node, ctx, NOTIFY_KEYS)?;
        let Some(url_node) = f.get("url") else {
            self.error(
                node.pos,
                format!("{ctx} has no `url`"),
                Some("`url: https://...`"),
            );
            return None;
        };
        // Every field is read, so all their problems are reported at once.
        let url = self.non_empty(url_node, ctx, "url");
        let scheme_ok = url.as_ref().is_some_and(|url| {
            ["http://", "https://"].iter().any(|p| {
                url.expose()
                    .get(..p.len())
                    .is_some_and(|s| s.eq_ignore_ascii_case(p))
            })
        });
        if let (Some(url), false) = (&url, scheme_ok) {
            self.error(
                url_node.pos,
                format!("`url` of {ctx} is `{url}`, not an http(s) URL"),
                Some("`https://host/path` (or `http://`)"),
            );
        }
        let secret = match f.get("secret").filter(|n| !n.is_null()) {
            Some(n) => self.notify_secret(n, ctx).map(Some),
            None => Some(None),
        };
        let events = match f.get("events").filter(|n| !n.is_null()) {
            Some(n) => self.run_events(n, ctx),
            None => Some(RunEvent::ALL.to_vec()),
        };
        let rejected_threshold = match f.get("rejected_threshold") {
            Some(n) => self
                .number(n, &format!("`rejected_threshold` of {ctx}"), 1, u32::MAX)
                .map(u64::from),
            None => Some(1),
        };
        Some(Notify {
            url: url.filter(|_| scheme_ok)?,
            secret: secret?,
            events: events?,
            rejected_threshold: rejected_threshold?,
            location: self.location(node.pos),
        })
    }

    /// A Standard Webhooks secret: `whsec_` and a base64 key.
    fn notify_secret(&mut self, node: &Node, ctx: &str) -> Option<Str> {
        let secret = self.non_empty(node, ctx, "secret")?;
        let key = secret.expose().strip_prefix("whsec_");
        if key.is_none_or(|k| crate::base64_decodes(k).is_none()) {
            // Never the value itself: it is a secret.
            self.error(
                node.pos,
                format!("`secret` of {ctx} is not `whsec_` followed by base64"),
                Some("a Standard Webhooks secret, e.g. `${NOTIFY_SECRET}` holding whsec_..."),
            );
            return None;
        }
        Some(secret)
    }

    /// `events: [started, succeeded, failed, rejected]`.
    fn run_events(&mut self, node: &Node, ctx: &str) -> Option<Vec<RunEvent>> {
        let expected = "a list among: started, succeeded, failed, rejected";
        let NodeKind::Seq(items) = &node.kind else {
            let msg = format!(
                "`events` of {ctx} must be a list, found {}",
                node.describe()
            );
            self.error(node.pos, msg, Some(expected));
            return None;
        };
        let mut events = Vec::new();
        let mut all_known = true;
        for item in items {
            let Some(name) = self.name_string(item, &format!("`events` of {ctx}")) else {
                all_known = false;
                continue;
            };
            match RunEvent::ALL.iter().find(|e| e.name() == name) {
                Some(e) if !events.contains(e) => events.push(*e),
                Some(_) => {}
                None => {
                    let msg = format!("unknown event `{name}` in `events` of {ctx}");
                    self.error(item.pos, msg, Some(expected));
                    all_known = false;
                }
            }
        }
        events.sort();
        all_known.then_some(events)
    }

    // ----- sections -------------------------------------------------------

    /// The entries of a `name: {...}` section, with names checked.
    fn section<'n>(&mut self, node: Option<&'n Node>, what: &str) -> Vec<(String, &'n Node)> {
        let Some(node) = node.filter(|n| !n.is_null()) else {
            return Vec::new();
        };
        let NodeKind::Map(entries) = &node.kind else {
            let msg = format!(
                "`{what}` must be a mapping of names to definitions, found {}",
                node.describe()
            );
            self.error(node.pos, msg, Some("`NAME: { ... }` entries"));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, value) in entries {
            let name = key.as_scalar().unwrap_or_default();
            if !valid_name(name) {
                let msg = format!("`{name}` is not a valid name in `{what}`");
                self.error(
                    key.pos,
                    msg,
                    Some("letters, digits, `_`, `-` or `.`, starting with a letter or digit"),
                );
                continue;
            }
            out.push((name.to_owned(), value));
        }
        out
    }

    fn plugin(
        &mut self,
        name: &str,
        node: &Node,
        ctx: &str,
        keys: &[&str],
    ) -> Option<PluginInstance> {
        let f = self.fields(node, ctx, keys)?;
        let plugin = self
            .required(&f, "plugin", ctx)
            .and_then(|n| self.string(n, ctx))
            .and_then(|s| self.plugin_ref(&s, f.get("plugin")?.pos, ctx));
        let config = match f.get("config") {
            Some(n) if !n.is_null() => self.config_map(n, ctx),
            _ => Some(BTreeMap::new()),
        };
        let grants = self.grants(f.get("grants"), ctx);
        let limits = match f.get("limits").filter(|n| !n.is_null()) {
            Some(n) => self
                .limits(n, &format!("the `limits` of {ctx}"), PLUGIN_LIMIT_KEYS)
                .map(|own| own.over(&self.limits)),
            None => Some(self.limits.clone()),
        };
        Some(PluginInstance {
            name: name.to_owned(),
            plugin: plugin?,
            config: config?,
            grants: grants?,
            limits: limits?,
            location: self.location(node.pos),
        })
    }

    /// A `limits:` mapping; keys outside `allowed` are reported.
    fn limits(&mut self, node: &Node, ctx: &str, allowed: &[&str]) -> Option<LimitsConfig> {
        let f = self.fields(node, ctx, allowed)?;
        let mut ok = true;
        let mut size = |this: &mut Self, key: &str| match f.get(key) {
            Some(n) => {
                let v = this.size(n, &format!("`{key}` in {ctx}"));
                ok &= v.is_some();
                v
            }
            None => None,
        };
        let memory = size(self, "memory");
        let log_bytes_per_run = size(self, "log_bytes_per_run");
        let message_bytes = size(self, "message_bytes");
        let spec_bytes = size(self, "spec_bytes");
        let mut time = |this: &mut Self, key: &str| match f.get(key) {
            Some(n) => {
                let v = this.duration(n, &format!("`{key}` in {ctx}"));
                ok &= v.is_some();
                v
            }
            None => None,
        };
        let cpu_per_call = time(self, "cpu_per_call");
        let call_deadline = time(self, "call_deadline");
        let mut count = |this: &mut Self, key: &str| match f.get(key) {
            Some(n) => {
                let v = this.number(n, &format!("`{key}` in {ctx}"), 1, MAX_COUNT_LIMIT);
                ok &= v.is_some();
                v.map(|v| v as usize)
            }
            None => None,
        };
        let sockets = count(self, "sockets");
        let requests_in_flight = count(self, "requests_in_flight");
        ok.then_some(LimitsConfig {
            memory,
            cpu_per_call,
            call_deadline,
            sockets,
            requests_in_flight,
            log_bytes_per_run,
            message_bytes,
            spec_bytes,
        })
    }

    /// A size such as `256MiB`, `64KiB` or a count of bytes; not zero.
    fn size(&mut self, node: &Node, ctx: &str) -> Option<usize> {
        let text = self.string(node, ctx)?;
        match sluice_runtime::limits::parse_size(text.expose()) {
            Ok(0) => {
                self.error(
                    node.pos,
                    format!("{ctx} is zero"),
                    Some("a size such as 4KiB"),
                );
                None
            }
            Ok(n) => Some(n),
            Err(e) => {
                self.error(
                    node.pos,
                    format!("{ctx}: {e}"),
                    Some("a size such as 64KiB or 256MiB"),
                );
                None
            }
        }
    }

    fn destination(&mut self, name: &str, node: &Node) -> Option<DestinationConfig> {
        let ctx = format!("destination `{name}`");
        let instance = self.plugin(name, node, &ctx, DESTINATION_KEYS);
        let rate_limit = match node_field(node, "rate_limit") {
            Some(n) => self.rate_limit(n, &ctx).map(Some),
            None => Some(None),
        };
        Some(DestinationConfig {
            instance: instance?,
            rate_limit: rate_limit?,
        })
    }

    fn rate_limit(&mut self, node: &Node, ctx: &str) -> Option<RateLimitOverride> {
        let ctx = format!("the rate_limit of {ctx}");
        let f = self.fields(node, &ctx, RATE_KEYS)?;
        let mut read = |key| {
            let n = self.required(&f, key, &ctx)?;
            self.number(n, &format!("`{key}` in {ctx}"), 1, u32::MAX)
        };
        let (requests, per_ms, concurrency) =
            (read("requests"), read("per_ms"), read("concurrency"));
        let daily = match f.get("daily") {
            Some(n) => self
                .number(n, &format!("`daily` in {ctx}"), 1, u32::MAX)
                .map(Some),
            None => Some(None),
        };
        Some(RateLimitOverride {
            requests: requests?,
            per_ms: per_ms?,
            concurrency: concurrency?,
            daily: daily?,
        })
    }

    fn model(&mut self, name: &str, node: &Node, names: &Names) -> Option<Model> {
        let ctx = format!("model `{name}`");
        let f = self.fields(node, &ctx, MODEL_KEYS)?;
        let source = self.reference(&f, "source", &ctx, "source", &names.sources);
        if f.get("dbt").is_some() {
            return self.dbt_model(name, node, &f, &ctx, source);
        }
        if let Some(p) = f.get("project") {
            let msg = format!("{ctx} has `project` but no `dbt`");
            self.error(p.pos, msg, Some("`project:` only beside `dbt: MODEL`"));
        }
        let read = self.model_read(&f, &ctx);
        let primary_key = self
            .required(&f, "primary_key", &ctx)
            .and_then(|n| self.primary_key(n, &ctx));
        let diff = self.diff_location(&f, &ctx);
        Some(Model {
            name: name.to_owned(),
            source: source?,
            read: read?,
            primary_key: primary_key?,
            diff: diff?,
            dbt: None,
            location: self.location(node.pos),
        })
    }

    /// `dbt: NAME` with `project: PATH` (default: the project folder): the
    /// relation and, unless `primary_key` is given, the key come from the
    /// dbt project's manifest.
    fn dbt_model(
        &mut self,
        name: &str,
        node: &Node,
        f: &Fields<'_>,
        ctx: &str,
        source: Option<String>,
    ) -> Option<Model> {
        let dbt_node = f.get("dbt")?;
        for key in ["query", "object"] {
            if let Some(n) = f.get(key) {
                let msg = format!("{ctx} has both `dbt` and `{key}`");
                self.error(
                    n.pos,
                    msg,
                    Some("`dbt: MODEL`, which reads the model's relation"),
                );
            }
        }
        let dbt_name = self.name_string(dbt_node, &format!("`dbt` of {ctx}"))?;
        let folder = match f.get("project") {
            Some(n) => {
                let folder = self.non_empty(n, ctx, "project")?;
                self.dir.join(folder.expose())
            }
            None => self.dir.clone(),
        };
        let declared = match f.get("primary_key") {
            Some(n) => Some(self.primary_key(n, ctx)?),
            None => None,
        };
        let manifest = self
            .dbt_manifests
            .entry(folder.clone())
            .or_insert_with(|| dbt::load_manifest(&folder));
        let resolved = match manifest
            .as_ref()
            .map_err(String::clone)
            .and_then(|m| m.resolve(&dbt_name))
        {
            Ok(r) => r,
            Err(e) => {
                self.error(dbt_node.pos, format!("{ctx}: {e}"), None);
                return None;
            }
        };
        let primary_key = match (declared, resolved.primary_key) {
            (Some(key), _) => key,
            (None, Some((key, _from))) => key,
            (None, None) => {
                let msg = format!(
                    "{ctx}: dbt model `{dbt_name}` declares no key, so `primary_key` is needed"
                );
                let expected = "`primary_key: COLUMN` here, or in dbt a `unique_key` config, a primary_key constraint or a `unique` test";
                self.error(f.pos, msg, Some(expected));
                return None;
            }
        };
        let query = format!("select * from {}", resolved.model.relation);
        let diff = self.diff_location(f, ctx)?;
        Some(Model {
            name: name.to_owned(),
            source: source?,
            read: ModelRead::Query(Str::plain(query)),
            primary_key,
            diff,
            dbt: Some(resolved.model),
            location: self.location(node.pos),
        })
    }

    fn model_read(&mut self, f: &Fields<'_>, ctx: &str) -> Option<ModelRead> {
        match (f.get("query"), f.get("object")) {
            (Some(q), None) => self.non_empty(q, ctx, "query").map(ModelRead::Query),
            (None, Some(o)) => self.non_empty(o, ctx, "object").map(ModelRead::Object),
            (Some(_), Some(o)) => {
                let msg = format!("{ctx} has both `query` and `object`");
                self.error(o.pos, msg, Some("exactly one of `query` or `object`"));
                None
            }
            (None, None) => {
                let msg = format!("{ctx} says neither what to query nor which object to read");
                self.error(f.pos, msg, Some("`query: SQL` or `object: NAME`"));
                None
            }
        }
    }

    fn primary_key(&mut self, node: &Node, ctx: &str) -> Option<Vec<String>> {
        let ctx = format!("the primary_key of {ctx}");
        let columns: Vec<(String, Pos)> = match &node.kind {
            NodeKind::Seq(items) => items
                .iter()
                .filter_map(|n| Some((self.name_string(n, &ctx)?, n.pos)))
                .collect(),
            _ => vec![(self.name_string(node, &ctx)?, node.pos)],
        };
        if columns.is_empty() {
            self.error(
                node.pos,
                format!("{ctx} is empty"),
                Some("one or more column names"),
            );
            return None;
        }
        let mut seen = BTreeSet::new();
        let mut ok = true;
        for (c, pos) in &columns {
            if !seen.insert(c.clone()) {
                self.error(*pos, format!("column `{c}` appears twice in {ctx}"), None);
                ok = false;
            }
        }
        ok.then(|| columns.into_iter().map(|(c, _)| c).collect())
    }

    fn sync(&mut self, name: &str, node: &Node, names: &Names) -> Option<SyncConfig> {
        let ctx = format!("sync `{name}`");
        let f = self.fields(node, &ctx, SYNC_KEYS)?;
        let model = self.reference(&f, "model", &ctx, "model", &names.models);
        let destination =
            self.reference(&f, "destination", &ctx, "destination", &names.destinations);
        let object = self
            .required(&f, "object", &ctx)
            .and_then(|n| self.non_empty(n, &ctx, "object"));
        let mode = self
            .required(&f, "mode", &ctx)
            .and_then(|n| self.mode(n, &ctx));
        let identifier = self.identifier(&f, mode, &ctx);
        let mappings = self.mappings(f.get("mappings"), &ctx);
        let transforms = self.transform_refs(f.get("transforms"), &ctx, names);
        let batch_size = match f.get("batch_size") {
            Some(n) => self
                .number(n, &format!("`batch_size` of {ctx}"), 1, MAX_BATCH_SIZE)
                .map(Some),
            None => Some(None),
        };
        let rate_limit = match f.get("rate_limit") {
            Some(n) => self.rate_limit(n, &ctx).map(Some),
            None => Some(None),
        };
        let schedule = match f.get("schedule") {
            Some(n) => self.schedule(n, &ctx).map(Some),
            None => Some(None),
        };
        let after = match f.get("after") {
            Some(_) => self
                .reference(&f, "after", &ctx, "sync", &names.syncs)
                .map(Some),
            None => Some(None),
        };
        let after_max_rejected = match f.get("after_max_rejected") {
            Some(n) if f.get("after").is_none() => {
                self.error(
                    n.pos,
                    format!(
                        "`after_max_rejected` of {ctx} stops a sequence, but the sync has no \
                         `after`: name the sync it runs after"
                    ),
                    Some("`after: <sync>` beside it"),
                );
                None
            }
            Some(n) => self
                .number(n, &format!("`after_max_rejected` of {ctx}"), 0, u32::MAX)
                .map(|n| Some(u64::from(n))),
            None => Some(None),
        };
        let max_deletes = match f.get("max_deletes") {
            Some(n) => self.max_deletes(n, &ctx).map(Some),
            None => Some(None),
        };
        let allow_empty = match f.get("allow_empty") {
            Some(n) => self.boolean(n, &format!("`allow_empty` of {ctx}")),
            None => Some(false),
        };
        let max_wait = match f.get("max_wait") {
            Some(n) => self.duration(n, &format!("`max_wait` of {ctx}")).map(Some),
            None => Some(self.max_wait),
        };
        let run_deadline = match f.get("run_deadline") {
            Some(n) => self
                .duration(n, &format!("`run_deadline` of {ctx}"))
                .map(Some),
            None => Some(self.run_deadline),
        };
        let outcomes = match f.get("outcomes") {
            Some(n) => self.outcomes(n, &ctx, names).map(Some),
            None => Some(None),
        };
        if let (Some(Some(id)), Some(maps), Some(ts)) = (&identifier, &mappings, &transforms) {
            self.check_identifier_mapped(id, maps, ts, f.get("identifier"), &ctx);
        }
        Some(SyncConfig {
            name: name.to_owned(),
            model: model?,
            destination: destination?,
            object: object?,
            mode: mode?,
            identifier: identifier?,
            mappings: mappings?,
            transforms: transforms?,
            batch_size: batch_size?,
            rate_limit: rate_limit?,
            schedule: schedule?,
            after: after?,
            after_max_rejected: after_max_rejected?,
            max_deletes: max_deletes?,
            allow_empty: allow_empty?,
            max_wait: max_wait?,
            run_deadline: run_deadline?,
            outcomes: outcomes?,
            location: self.location(node.pos),
        })
    }

    /// `outcomes: { destination: NAME, object: TABLE, rows: all | failed }`.
    fn outcomes(&mut self, node: &Node, sync_ctx: &str, names: &Names) -> Option<Outcomes> {
        let ctx = format!("`outcomes` of {sync_ctx}");
        let f = self.fields(node, &ctx, OUTCOMES_KEYS)?;
        let destination =
            self.reference(&f, "destination", &ctx, "destination", &names.destinations);
        let object = self
            .required(&f, "object", &ctx)
            .and_then(|n| self.non_empty(n, &ctx, "object"));
        let rows = match f.get("rows") {
            Some(n) => {
                let text = self.name_string(n, &format!("`rows` in {ctx}"));
                let found = text
                    .as_deref()
                    .and_then(|t| OutcomeRows::ALL.into_iter().find(|r| r.as_str() == t));
                if let (Some(t), None) = (&text, found) {
                    self.error(
                        n.pos,
                        format!("`rows` in {ctx} is `{t}`, neither `all` nor `failed`"),
                        Some("`all` (every row's outcome) or `failed` (rejected and invalid rows only)"),
                    );
                }
                found
            }
            None => Some(OutcomeRows::All),
        };
        Some(Outcomes {
            destination: destination?,
            object: object?,
            rows: rows?,
            location: self.location(node.pos),
        })
    }

    /// A duration such as `90s` or `15m` (ms, s or m).
    fn duration(&mut self, node: &Node, ctx: &str) -> Option<std::time::Duration> {
        let text = self.string(node, ctx)?;
        match sluice_runtime::limits::parse_duration(text.expose()) {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                self.error(
                    node.pos,
                    format!("{ctx} is zero"),
                    Some("a duration such as 15m"),
                );
                None
            }
            Err(e) => {
                self.error(
                    node.pos,
                    format!("{ctx}: {e}"),
                    Some("a duration such as 90s or 15m"),
                );
                None
            }
        }
    }

    /// `max_deletes: 500` or `max_deletes: 10%`.
    fn max_deletes(&mut self, node: &Node, ctx: &str) -> Option<MaxDeletes> {
        let expected = "a count like `500` or a share like `10%` (0% to 100%)";
        let text = match &node.kind {
            NodeKind::Scalar { value, .. } if !node.is_null() => {
                self.interpolated(value, node.pos)?
            }
            _ => {
                let msg = format!(
                    "expected a count or a percentage for `max_deletes` of {ctx}, found {}",
                    node.describe()
                );
                self.error(node.pos, msg, Some(expected));
                return None;
            }
        };
        let t = text.expose().trim();
        let parsed = match t.strip_suffix('%') {
            Some(p) => p
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|p| (0.0..=100.0).contains(p))
                .map(MaxDeletes::Percent),
            None => t.parse::<u64>().ok().map(MaxDeletes::Count),
        };
        if parsed.is_none() {
            let msg =
                format!("`max_deletes` of {ctx} is `{text}`, neither a count nor a percentage");
            self.error(node.pos, msg, Some(expected));
        }
        parsed
    }

    fn boolean(&mut self, node: &Node, ctx: &str) -> Option<bool> {
        if let NodeKind::Scalar { value, plain: true } = &node.kind {
            if let Some(ConfigValue::Bool(b)) = plain_scalar(value) {
                return Some(b);
            }
        }
        let msg = format!(
            "expected true or false for {ctx}, found {}",
            node.describe()
        );
        self.error(node.pos, msg, Some("`true` or `false`"));
        None
    }

    /// `diff: host | warehouse` of a model (default `host`).
    fn diff_location(&mut self, f: &Fields<'_>, ctx: &str) -> Option<super::DiffLocation> {
        let Some(node) = f.get("diff") else {
            return Some(super::DiffLocation::Host);
        };
        let text = self.name_string(node, &format!("`diff` of {ctx}"))?;
        let names = super::DiffLocation::ALL.map(super::DiffLocation::as_str);
        if let Some(d) = super::DiffLocation::ALL
            .into_iter()
            .find(|d| d.as_str() == text)
        {
            return Some(d);
        }
        let msg = unknown_name_message("diff", &text, names.iter().copied());
        self.error(
            node.pos,
            format!("{msg} (in {ctx})"),
            Some(&names.join(", ")),
        );
        None
    }

    fn mode(&mut self, node: &Node, ctx: &str) -> Option<SyncMode> {
        let text = self.name_string(node, ctx)?;
        let names = SyncMode::ALL.map(SyncMode::as_str);
        if let Some(m) = SyncMode::ALL.into_iter().find(|m| m.as_str() == text) {
            return Some(m);
        }
        let msg = unknown_name_message("mode", &text, names.iter().copied());
        self.error(
            node.pos,
            format!("{msg} (in {ctx})"),
            Some(&names.join(", ")),
        );
        None
    }

    fn identifier(
        &mut self,
        f: &Fields<'_>,
        mode: Option<SyncMode>,
        ctx: &str,
    ) -> Option<Option<Str>> {
        match (f.get("identifier"), mode) {
            (Some(n), _) => self.non_empty(n, ctx, "identifier").map(Some),
            (None, Some(m)) if m.needs_identifier() => {
                let msg =
                    format!("{ctx} has no `identifier`, which mode `{m}` needs to match records");
                self.error(f.pos, msg, Some("`identifier: DESTINATION_FIELD`"));
                None
            }
            (None, _) => Some(None),
        }
    }

    /// Without transforms, the mapped fields are exactly what is sent, so an
    /// identifier that no mapping produces can never reach the destination.
    fn check_identifier_mapped(
        &mut self,
        id: &Str,
        maps: &[Mapping],
        transforms: &[String],
        node: Option<&Node>,
        ctx: &str,
    ) {
        if maps.is_empty() || !transforms.is_empty() || maps.iter().any(|m| m.to == id.expose()) {
            return;
        }
        let targets: Vec<&str> = maps.iter().map(|m| m.to.as_str()).collect();
        let pos = node.map_or(Pos::default(), |n| n.pos);
        let msg = format!("the identifier field `{id}` of {ctx} is not the target of any mapping");
        self.error(
            pos,
            msg,
            Some(&format!("one of the mapped fields: {}", targets.join(", "))),
        );
    }

    fn mappings(&mut self, node: Option<&Node>, ctx: &str) -> Option<Vec<Mapping>> {
        let Some(node) = node.filter(|n| !n.is_null()) else {
            return Some(Vec::new());
        };
        let NodeKind::Seq(items) = &node.kind else {
            let msg = format!(
                "`mappings` of {ctx} must be a list, found {}",
                node.describe()
            );
            self.error(
                node.pos,
                msg,
                Some("a list of `{from: COLUMN, to: FIELD}` or `{constant: VALUE, to: FIELD}`"),
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        let mut targets: HashMap<String, Pos> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let Some(m) = self.mapping(item, &format!("mapping #{} of {ctx}", i + 1)) else {
                ok = false;
                continue;
            };
            if let Some(first) = targets.get(&m.to) {
                let msg = format!(
                    "field `{}` is the target of two mappings in {ctx} (first at line {})",
                    m.to, first.line
                );
                self.error(item.pos, msg, Some("each destination field mapped once"));
                ok = false;
                continue;
            }
            targets.insert(m.to.clone(), item.pos);
            out.push(m);
        }
        ok.then_some(out)
    }

    fn mapping(&mut self, node: &Node, ctx: &str) -> Option<Mapping> {
        let f = self.fields(node, ctx, MAPPING_KEYS)?;
        let source = match (f.get("from"), f.get("constant")) {
            (Some(n), None) => self.name_string(n, ctx).map(MappingSource::Column),
            (None, Some(n)) => self.config_value(n).map(MappingSource::Constant),
            (Some(_), Some(n)) => {
                self.error(
                    n.pos,
                    format!("{ctx} has both `from` and `constant`"),
                    Some("exactly one of them"),
                );
                None
            }
            (None, None) => {
                self.error(
                    f.pos,
                    format!("{ctx} has neither `from` nor `constant`"),
                    Some("`from: COLUMN` or `constant: VALUE`"),
                );
                None
            }
        };
        let to = self
            .required(&f, "to", ctx)
            .and_then(|n| self.name_string(n, ctx));
        let coerce = match f.get("type") {
            Some(n) => self.coercion(n, ctx).map(Some),
            None => Some(None),
        };
        Some(Mapping {
            source: source?,
            to: to?,
            coerce: coerce?,
            location: self.location(node.pos),
        })
    }

    fn coercion(&mut self, node: &Node, ctx: &str) -> Option<Coercion> {
        let text = self.name_string(node, ctx)?;
        if let Some(c) = Coercion::ALL.into_iter().find(|c| c.as_str() == text) {
            return Some(c);
        }
        let names = Coercion::ALL.map(Coercion::as_str);
        let msg = unknown_name_message("type", &text, names.iter().copied());
        self.error(
            node.pos,
            format!("{msg} (in {ctx})"),
            Some(&names.join(", ")),
        );
        None
    }

    fn transform_refs(
        &mut self,
        node: Option<&Node>,
        ctx: &str,
        names: &Names,
    ) -> Option<Vec<String>> {
        let Some(node) = node.filter(|n| !n.is_null()) else {
            return Some(Vec::new());
        };
        let NodeKind::Seq(items) = &node.kind else {
            let msg = format!(
                "`transforms` of {ctx} must be a list, found {}",
                node.describe()
            );
            self.error(node.pos, msg, Some("a list of transform names"));
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for item in items {
            match self.name_string(item, ctx) {
                Some(t) if names.transforms.contains(&t) => out.push(t),
                Some(t) => {
                    let msg = unknown_name_message(
                        "transform",
                        &t,
                        names.transforms.iter().map(String::as_str),
                    );
                    self.error(item.pos, format!("{msg} (in {ctx})"), None);
                    ok = false;
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    // ----- plugin parts ---------------------------------------------------

    fn plugin_ref(&mut self, text: &Str, pos: Pos, ctx: &str) -> Option<PluginRef> {
        let t = text.expose();
        if let Some(rest) = t.strip_prefix(crate::UPLOADED_PREFIX) {
            return match crate::parse_uploaded(rest) {
                Ok((name, sha256)) => Some(PluginRef::Uploaded { name, sha256 }),
                Err(why) => {
                    self.error(
                        pos,
                        format!("plugin `{text}` of {ctx}: {why}"),
                        Some("`uploaded:NAME@sha256:HEX`"),
                    );
                    None
                }
            };
        }
        let is_path = t.contains('/') || t.contains('\\') || t.ends_with(".wasm");
        if !is_path {
            if valid_name(t) {
                return Some(PluginRef::Installed(t.to_owned()));
            }
            if let Some((name, pin)) = t.split_once('@').filter(|(n, _)| valid_name(n)) {
                match PluginPin::parse(pin) {
                    Ok(pin) => {
                        return Some(PluginRef::Pinned {
                            name: name.to_owned(),
                            pin,
                        })
                    }
                    Err(why) => {
                        self.error(
                            pos,
                            format!("plugin `{text}` of {ctx}: {why}"),
                            Some("`name@VERSION` or `name@sha256:HEX`"),
                        );
                        return None;
                    }
                }
            }
            let msg = format!("`{text}` is neither an installed plugin name nor a path to a .wasm file (in {ctx})");
            self.error(
                pos,
                msg,
                Some("a plugin name like `postgres` or a path like `./plugins/x.wasm`"),
            );
            return None;
        }
        let path = self.dir.join(t);
        if path.is_file() {
            return Some(PluginRef::Path(path));
        }
        let shown = if text.is_secret() {
            text.to_string()
        } else {
            path.display().to_string()
        };
        self.error(
            pos,
            format!("plugin file `{text}` of {ctx} not found (looked for {shown})"),
            Some("an existing .wasm file"),
        );
        None
    }

    fn grants(&mut self, node: Option<&Node>, ctx: &str) -> Option<Vec<Grant>> {
        let Some(node) = node.filter(|n| !n.is_null()) else {
            return Some(Vec::new());
        };
        let NodeKind::Seq(items) = &node.kind else {
            let msg = format!(
                "`grants` of {ctx} must be a list, found {}",
                node.describe()
            );
            self.error(
                node.pos,
                msg,
                Some("a list of `scheme://host:port` and `dir:...` strings"),
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for item in items {
            let Some(text) = self.string(item, ctx) else {
                ok = false;
                continue;
            };
            match parse_grant(text.expose(), &self.dir) {
                Ok(kind) => out.push(Grant { text, kind }),
                Err(why) => {
                    let shown = if text.is_secret() {
                        "a grant".to_owned()
                    } else {
                        format!("grant `{text}`")
                    };
                    self.error(
                        item.pos,
                        format!("{shown} of {ctx} is invalid: {why}"),
                        None,
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn config_map(&mut self, node: &Node, ctx: &str) -> Option<BTreeMap<String, ConfigValue>> {
        if !matches!(node.kind, NodeKind::Map(_)) {
            let msg = format!(
                "`config` of {ctx} must be a mapping, found {}",
                node.describe()
            );
            self.error(
                node.pos,
                msg,
                Some("the plugin's settings as `key: value` pairs"),
            );
            return None;
        }
        match self.config_value(node)? {
            ConfigValue::Map(m) => Some(m),
            _ => None,
        }
    }

    fn config_value(&mut self, node: &Node) -> Option<ConfigValue> {
        match &node.kind {
            NodeKind::Scalar { value, plain } => self.scalar_value(node, value, *plain),
            NodeKind::Seq(items) => {
                let values: Vec<_> = items.iter().map(|n| self.config_value(n)).collect();
                values
                    .into_iter()
                    .collect::<Option<Vec<_>>>()
                    .map(ConfigValue::List)
            }
            NodeKind::Map(entries) => {
                let mut ok = true;
                let mut map = BTreeMap::new();
                for (k, v) in entries {
                    match self.config_value(v) {
                        Some(v) => {
                            map.insert(k.as_scalar().unwrap_or_default().to_owned(), v);
                        }
                        None => ok = false,
                    }
                }
                ok.then_some(ConfigValue::Map(map))
            }
        }
    }

    /// YAML 1.2 core schema for plain scalars; anything interpolated or
    /// quoted is a string.
    fn scalar_value(&mut self, node: &Node, text: &str, plain: bool) -> Option<ConfigValue> {
        if plain && !text.contains('$') {
            if node.is_null() {
                return Some(ConfigValue::Null);
            }
            if let Some(v) = plain_scalar(text) {
                return Some(v);
            }
        }
        self.interpolated(text, node.pos).map(ConfigValue::String)
    }

    // ----- scalars --------------------------------------------------------

    /// A string value, interpolated. Null, lists and mappings are errors.
    fn string(&mut self, node: &Node, ctx: &str) -> Option<Str> {
        match &node.kind {
            NodeKind::Scalar { value, .. } if !node.is_null() => self.interpolated(value, node.pos),
            _ => {
                let msg = format!("expected a string in {ctx}, found {}", node.describe());
                self.error(node.pos, msg, Some("a string"));
                None
            }
        }
    }

    /// A name-like string (column, field, mode): interpolated but not
    /// secret, since names appear in messages by design.
    fn name_string(&mut self, node: &Node, ctx: &str) -> Option<String> {
        let s = self.string(node, ctx)?;
        if s.expose().trim().is_empty() {
            self.error(
                node.pos,
                format!("empty name in {ctx}"),
                Some("a non-empty name"),
            );
            return None;
        }
        Some(s.expose().to_owned())
    }

    /// A sequence (`after:`) must end: a sync that follows itself, or a
    /// loop of syncs following each other, would run forever.
    fn check_sequences(
        &mut self,
        syncs: &BTreeMap<String, SyncConfig>,
        positions: &BTreeMap<String, Pos>,
    ) {
        for (name, sync) in syncs {
            let mut chain = vec![name.as_str()];
            let mut next = sync.after.as_deref();
            while let Some(prev) = next {
                if prev == name {
                    // Set with `after`, which the loop went through.
                    let Some(pos) = positions.get(name).copied() else {
                        break;
                    };
                    let msg = format!(
                        "`after` of sync `{name}` makes a loop: {} after {name}",
                        chain.join(" after ")
                    );
                    self.error(pos, msg, Some("a chain of syncs that ends"));
                    break;
                }
                if chain.contains(&prev) {
                    break;
                }
                chain.push(prev);
                next = syncs.get(prev).and_then(|s| s.after.as_deref());
            }
        }
    }

    /// `schedule: "*/15 * * * *"` or `schedule: every 15m`.
    fn schedule(&mut self, node: &Node, ctx: &str) -> Option<crate::Schedule> {
        let text = self.non_empty(node, ctx, "schedule")?;
        match crate::Schedule::parse(text.expose()) {
            Ok(s) => Some(s),
            Err(e) => {
                self.error(
                    node.pos,
                    format!("`schedule` of {ctx}: {e}"),
                    Some("`every 15m` or a cron expression like `*/15 * * * *` (UTC)"),
                );
                None
            }
        }
    }

    fn non_empty(&mut self, node: &Node, ctx: &str, key: &str) -> Option<Str> {
        let s = self.string(node, &format!("`{key}` of {ctx}"))?;
        if s.expose().trim().is_empty() {
            self.error(
                node.pos,
                format!("`{key}` of {ctx} is empty"),
                Some("a non-empty string"),
            );
            return None;
        }
        Some(s)
    }

    fn number(&mut self, node: &Node, ctx: &str, min: u32, max: u32) -> Option<u32> {
        let expected = format!("an integer from {min} to {max}");
        let text = match &node.kind {
            NodeKind::Scalar { value, plain: true } if !node.is_null() => {
                self.interpolated(value, node.pos)?
            }
            _ => {
                self.error(
                    node.pos,
                    format!("expected a number for {ctx}, found {}", node.describe()),
                    Some(&expected),
                );
                return None;
            }
        };
        match text.expose().parse::<u32>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.error(
                    node.pos,
                    format!("{ctx} is `{text}`, out of range or not an integer"),
                    Some(&expected),
                );
                None
            }
        }
    }

    fn interpolated(&mut self, text: &str, pos: Pos) -> Option<Str> {
        match interpolate(text, self.env) {
            Ok(s) => Some(s),
            Err(errors) => {
                for e in errors {
                    self.error(pos, e.to_string(), None);
                }
                None
            }
        }
    }

    fn reference(
        &mut self,
        f: &Fields<'_>,
        key: &str,
        ctx: &str,
        kind: &str,
        known: &BTreeSet<String>,
    ) -> Option<String> {
        let node = self.required(f, key, ctx)?;
        let name = self.name_string(node, ctx)?;
        if known.contains(&name) {
            return Some(name);
        }
        let msg = unknown_name_message(kind, &name, known.iter().map(String::as_str));
        self.error(node.pos, format!("{msg} (in {ctx})"), None);
        None
    }

    // ----- structure ------------------------------------------------------

    /// Checks that `node` is a mapping with only `allowed` keys.
    fn fields<'n>(&mut self, node: &'n Node, ctx: &str, allowed: &[&str]) -> Option<Fields<'n>> {
        let NodeKind::Map(entries) = &node.kind else {
            let msg = format!("expected a mapping for {ctx}, found {}", node.describe());
            self.error(
                node.pos,
                msg,
                Some(&format!("keys among: {}", allowed.join(", "))),
            );
            return None;
        };
        let mut out = HashMap::new();
        for (k, v) in entries {
            let key = k.as_scalar().unwrap_or_default();
            if allowed.contains(&key) {
                out.insert(key, v);
                continue;
            }
            let hint = close_matches(key, allowed.iter().copied(), 1)
                .first()
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            let msg = format!("unknown key `{key}` in {ctx}{hint}");
            self.error(k.pos, msg, Some(&format!("one of: {}", allowed.join(", "))));
        }
        Some(Fields {
            pos: node.pos,
            entries: out,
        })
    }

    fn required<'n>(&mut self, f: &Fields<'n>, key: &str, ctx: &str) -> Option<&'n Node> {
        let node = f.get(key);
        if node.is_none() {
            self.error(
                f.pos,
                format!("{ctx} is missing `{key}`"),
                Some(&format!("a `{key}:` key")),
            );
        }
        node
    }

    fn location(&self, pos: Pos) -> Location {
        Location {
            file: self.file.clone(),
            line: pos.line,
            column: pos.column,
        }
    }

    fn error(&mut self, pos: Pos, message: String, expected: Option<&str>) {
        self.diags.push(Diagnostic {
            file: self.file.to_path_buf(),
            line: pos.line.max(1),
            column: pos.column.max(1),
            message,
            expected: expected.map(str::to_owned),
        });
    }
}

fn section_names(node: Option<&Node>) -> BTreeSet<String> {
    match node.map(|n| &n.kind) {
        Some(NodeKind::Map(entries)) => entries
            .iter()
            .filter_map(|(k, _)| k.as_scalar().map(str::to_owned))
            .collect(),
        _ => BTreeSet::new(),
    }
}

fn node_field<'n>(node: &'n Node, key: &str) -> Option<&'n Node> {
    match &node.kind {
        NodeKind::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.as_scalar() == Some(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// Names of sources, syncs, etc.: used on the command line and in state.
pub(crate) fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

fn plain_scalar(text: &str) -> Option<ConfigValue> {
    match text {
        "true" | "True" | "TRUE" => return Some(ConfigValue::Bool(true)),
        "false" | "False" | "FALSE" => return Some(ConfigValue::Bool(false)),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return Some(ConfigValue::Integer(i));
    }
    let looks_numeric = text.starts_with(|c: char| c.is_ascii_digit() || "+-.".contains(c));
    match text.parse::<f64>() {
        Ok(f) if looks_numeric && f.is_finite() => Some(ConfigValue::Float(f)),
        _ => None,
    }
}
