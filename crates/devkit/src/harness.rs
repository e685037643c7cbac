//! `sluice plugin test`: run a plugin against fixtures, optionally recording
//! its HTTP exchanges to a cassette or replaying them offline
//! ([`sluice_runtime::sandbox::cassette`]).
//!
//! A project keeps fixtures in `fixtures/` and cassettes in `cassettes/`
//! (`--record` and `--replay` default to `cassettes/cassette.json`); a
//! cassette found among the fixtures is skipped, saying so. Replay needs no
//! network grant: the origins the cassette recorded are granted for it,
//! since nothing reaches the network.
//!
//! A fixture is a JSON file (`fixtures/*.json`, run in name order); the
//! format is documented for authors in README.md, "Fixtures and cassettes":
//!
//! ```json
//! {
//!   "description": "what this case shows",
//!   "config": {"fields": ["name"]},
//!   "input": [{"id": 1, "name": "ada"}, {"id": 2, "name": null}],
//!   "target": {"object": "events", "mode": "upsert", "identifier": "id"},
//!   "read": {"object": "people"},
//!   "expect": {
//!     "rows": [{"id": 1, "name": "ADA"}],
//!     "errors": [{"index": 1, "message": "name"}],
//!     "results": ["accepted", {"rejected": "HTTP 400"}, "rejected"]
//!   }
//! }
//! ```
//!
//! - transform: `input` rows in; `expect.rows` out and `expect.errors` (the
//!   input index and a substring of the message);
//! - destination: `input` rows written to `target` (default: object
//!   `events`, mode `upsert`, identifier `id`); `expect.results`, one per
//!   row: `"accepted"`, `"created"`, `"updated"`, `"deleted"`;
//!   `{"rejected": substring}`, `{"retryable": substring}`,
//!   `{"rate_limited": ms}`; or `"rejected"`, `"retryable"`,
//!   `"rate_limited"` for any message or wait;
//! - source: `read` (`{"object": …}` or `{"query": …}`); `expect.rows`.
//!
//! Rows are JSON objects; the batch's columns are the union of their keys in
//! sorted order. Values compare as JSON (`Value` → JSON as in the run loop).
//! A plugin error from the call fails the fixture unless `expect.error`
//! (a substring) says it should fail.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use sluice_runtime::bindings::types::{ReadRequest, WriteMode, WriteTarget};
use sluice_runtime::sandbox::cassette::{secret_values, Cassette, Recorder, Redactor, Replayer};
use sluice_runtime::sandbox::http::HttpMode;
use sluice_runtime::sandbox::policy::{Grants, NetGrant, NetPolicy};
use sluice_runtime::values::value_json;
use sluice_runtime::{Batch, PluginSpec, RowResult, Value};
use sluice_runtime::{Plugin, PluginKind, Sandbox};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One fixture file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    #[serde(default)]
    pub description: String,
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
    #[serde(default)]
    pub input: Vec<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub target: Option<Target>,
    #[serde(default)]
    pub read: Option<Read>,
    pub expect: Expect,
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub object: String,
    #[serde(default = "default_mode")]
    pub mode: String,
    #[serde(default = "default_identifier")]
    pub identifier: String,
}

fn default_mode() -> String {
    "upsert".into()
}
fn default_identifier() -> String {
    "id".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Read {
    Object(String),
    Query(String),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    #[serde(default)]
    pub rows: Option<Vec<serde_json::Map<String, serde_json::Value>>>,
    #[serde(default)]
    pub errors: Option<Vec<ExpectedError>>,
    #[serde(default)]
    pub results: Option<Vec<serde_json::Value>>,
    /// The call itself should fail with a message containing this.
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedError {
    pub index: u32,
    #[serde(default)]
    pub message: String,
}

/// How one fixture went.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FixtureOutcome {
    pub name: String,
    pub passed: bool,
    /// What differed, one line each (`expected … got …`).
    pub diffs: Vec<String>,
    /// What the plugin produced: `{"rows", "errors"}` (transform),
    /// `{"results"}` (destination), `{"rows"}` (source); null if the call failed.
    pub got: serde_json::Value,
}

/// Record or replay.
#[derive(Debug, Clone)]
pub enum Tape {
    Record(PathBuf),
    Replay(PathBuf),
}

/// Where a project keeps its cassettes, apart from its fixtures.
pub const CASSETTES_DIR: &str = "cassettes";

/// The cassette `--record` and `--replay` use for a project by default.
pub fn default_cassette(project: &Path) -> PathBuf {
    project.join(CASSETTES_DIR).join("cassette.json")
}

/// The fixtures of a directory, and what was skipped there.
#[derive(Debug, Clone, Default)]
pub struct FixtureFiles {
    /// Sorted by name.
    pub files: Vec<PathBuf>,
    /// One line per skipped file, saying why.
    pub skipped: Vec<String>,
}

/// The fixture files of a directory, sorted by name. A cassette there
/// (recorded into the fixtures folder by hand) is skipped, saying so: it
/// is no fixture.
pub fn fixture_files(dir: &Path) -> Result<FixtureFiles> {
    let mut found = FixtureFiles::default();
    let mut json: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading fixtures directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    json.sort();
    for file in json {
        if is_cassette(&file) {
            found.skipped.push(format!(
                "skipped {}: a cassette, not a fixture (replay it with --replay {}; \
                 recordings go to {CASSETTES_DIR}/ by default)",
                file.display(),
                file.display()
            ));
        } else {
            found.files.push(file);
        }
    }
    if found.files.is_empty() {
        let mut message = format!("no fixtures (*.json) in {}", dir.display());
        for s in &found.skipped {
            message.push_str(&format!("\n  {s}"));
        }
        bail!(message);
    }
    Ok(found)
}

/// Whether `file` holds a cassette (a JSON object with `cassette_version`).
fn is_cassette(file: &Path) -> bool {
    std::fs::read(file)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .is_some_and(|v| v.get("cassette_version").is_some())
}

/// `grants` and a grant for every origin the cassette recorded: replay
/// never reaches the network, so it needs none of its own.
fn with_recorded_origins(grants: &NetPolicy, cassette: &Cassette) -> NetPolicy {
    let mut all = grants.grants().to_vec();
    for interaction in &cassette.interactions {
        let Some(pattern) = Grants::pattern_for_url(&interaction.request.url) else {
            continue;
        };
        if let Ok(grant) = NetGrant::parse(&pattern) {
            if !all.contains(&grant) {
                all.push(grant);
            }
        }
    }
    NetPolicy::new(all)
}

/// Run every fixture against `plugin` inside `sandbox` (its grants; its
/// HTTP mode is set here from `tape`). Saves the cassette when recording.
pub async fn run(
    plugin: &Plugin,
    spec: &PluginSpec,
    files: &[PathBuf],
    mut sandbox: Sandbox,
    tape: Option<&Tape>,
) -> Result<Vec<FixtureOutcome>> {
    let mut fixtures = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("reading fixture {}", f.display()))?;
        let fixture: Fixture = serde_json::from_str(&text)
            .with_context(|| format!("fixture {} is not valid", f.display()))?;
        let name = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        fixtures.push((name, fixture));
    }
    let schema: serde_json::Value = serde_json::from_str(&spec.config_schema).unwrap_or_default();
    let mut secrets: Vec<String> = fixtures
        .iter()
        .flat_map(|(_, f)| secret_values(&f.config, &schema))
        .collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    let redactor = Redactor::new(secrets);
    let (recorder, replayer) = match tape {
        None => (None, None),
        Some(Tape::Record(_)) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            (Some(Arc::new(Recorder::new(redactor, now))), None)
        }
        Some(Tape::Replay(path)) => {
            let cassette = Cassette::load(path)?;
            sandbox.grants.net = with_recorded_origins(&sandbox.grants.net, &cassette);
            (None, Some(Arc::new(Replayer::new(cassette, redactor))))
        }
    };
    sandbox.http = match (&recorder, &replayer) {
        (Some(r), _) => HttpMode::Record(r.clone()),
        (_, Some(r)) => HttpMode::Replay(r.clone()),
        _ => HttpMode::Live,
    };

    let mut outcomes = Vec::new();
    for (name, fixture) in &fixtures {
        let (diffs, got) = match run_one(plugin, &sandbox, fixture).await {
            Ok(d) => d,
            Err(e) => (vec![format!("{e:#}")], serde_json::Value::Null),
        };
        let mut diffs = diffs;
        if let Some(r) = &replayer {
            diffs.extend(r.take_failures());
        }
        outcomes.push(FixtureOutcome {
            name: name.clone(),
            passed: diffs.is_empty(),
            diffs,
            got,
        });
    }
    if let Some(left) = replayer.as_ref().and_then(|r| r.unplayed()) {
        outcomes.push(FixtureOutcome {
            name: "(cassette)".into(),
            passed: false,
            diffs: vec![left],
            got: serde_json::Value::Null,
        });
    }
    if let (Some(r), Some(Tape::Record(path))) = (&recorder, tape) {
        r.cassette().save(path)?;
    }
    Ok(outcomes)
}

/// A batch from JSON rows: columns are the union of keys, sorted.
pub fn batch_from_json(rows: &[serde_json::Map<String, serde_json::Value>]) -> Batch {
    let columns: Vec<String> = rows
        .iter()
        .flat_map(|r| r.keys().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let rows = rows
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|c| r.get(c).map(json_value).unwrap_or(Value::Null))
                .collect()
        })
        .collect();
    Batch { columns, rows }
}

fn json_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Float(n.as_f64().unwrap_or_default()),
        },
        serde_json::Value::String(s) => Value::Text(s.clone()),
        other => Value::Json(other.to_string()),
    }
}

fn batch_json(batch: &Batch) -> Vec<serde_json::Value> {
    batch
        .rows
        .iter()
        .map(|row| {
            serde_json::Value::Object(
                batch
                    .columns
                    .iter()
                    .zip(row)
                    .map(|(c, v)| (c.clone(), value_json(v)))
                    .collect(),
            )
        })
        .collect()
}

fn result_json(r: &RowResult) -> serde_json::Value {
    use serde_json::json;
    match r {
        RowResult::Created => json!("created"),
        RowResult::Updated => json!("updated"),
        RowResult::Deleted => json!("deleted"),
        RowResult::Accepted => json!("accepted"),
        RowResult::Rejected(m) => json!({ "rejected": m }),
        RowResult::Retryable(m) => json!({ "retryable": m }),
        RowResult::RateLimited(ms) => json!({ "rate_limited": ms }),
    }
}

/// Whether a result matches its expectation: equal strings/numbers, a
/// message that contains the expected substring, or a bare kind
/// (`"rejected"`) for a result of that kind whatever its message.
fn result_matches(expected: &serde_json::Value, got: &serde_json::Value) -> bool {
    match (expected, got) {
        (serde_json::Value::String(kind), serde_json::Value::Object(g)) => {
            g.len() == 1 && g.contains_key(kind.as_str())
        }
        (serde_json::Value::Object(e), serde_json::Value::Object(g)) => {
            e.len() == 1
                && e.iter().all(|(k, ev)| match (ev, g.get(k)) {
                    (serde_json::Value::String(es), Some(serde_json::Value::String(gs))) => {
                        gs.contains(es.as_str())
                    }
                    (ev, Some(gv)) => ev == gv,
                    _ => false,
                })
        }
        (e, g) => e == g,
    }
}

fn compare_rows(
    expected: &[serde_json::Map<String, serde_json::Value>],
    got: &[serde_json::Value],
    diffs: &mut Vec<String>,
) {
    if expected.len() != got.len() {
        diffs.push(format!(
            "rows: expected {} row(s), got {}",
            expected.len(),
            got.len()
        ));
    }
    for (i, (e, g)) in expected.iter().zip(got).enumerate() {
        let e = serde_json::Value::Object(e.clone());
        if &e != g {
            diffs.push(format!("row {i}: expected {e}\n            got {g}"));
        }
    }
}

async fn run_one(
    plugin: &Plugin,
    sandbox: &Sandbox,
    fixture: &Fixture,
) -> Result<(Vec<String>, serde_json::Value)> {
    let config = fixture.config.to_string();
    let mut instance = plugin.instantiate(sandbox).await?;
    let mut diffs = Vec::new();
    let mut got_out = serde_json::Value::Null;
    let expect = &fixture.expect;
    let outcome: Result<(), sluice_runtime::PluginFailure> = async {
        match plugin.kind() {
            PluginKind::Transform => {
                let t = instance.open_transformer(&config).await?;
                let out = instance
                    .transform(&t, &batch_from_json(&fixture.input))
                    .await?;
                got_out = serde_json::json!({
                    "rows": batch_json(&out.batch),
                    "errors": out.errors.iter().map(|e| serde_json::json!({"index": e.index, "message": e.message})).collect::<Vec<_>>(),
                });
                if let Some(rows) = &expect.rows {
                    compare_rows(rows, &batch_json(&out.batch), &mut diffs);
                }
                let expected_errors = expect.errors.clone().unwrap_or_default();
                let got: Vec<String> = out
                    .errors
                    .iter()
                    .map(|e| format!("#{}: {}", e.index, e.message))
                    .collect();
                let ok = expected_errors.len() == out.errors.len()
                    && expected_errors
                        .iter()
                        .zip(&out.errors)
                        .all(|(e, g)| e.index == g.index && g.message.contains(&e.message));
                if !ok {
                    let want: Vec<String> = expected_errors
                        .iter()
                        .map(|e| format!("#{}: …{}…", e.index, e.message))
                        .collect();
                    diffs.push(format!(
                        "errors: expected [{}]\n            got [{}]",
                        want.join("; "),
                        got.join("; ")
                    ));
                }
            }
            PluginKind::Destination => {
                let target = fixture.target.clone().unwrap_or(Target {
                    object: "events".into(),
                    mode: default_mode(),
                    identifier: default_identifier(),
                });
                let mode = match target.mode.as_str() {
                    "upsert" => WriteMode::Upsert,
                    "update" => WriteMode::Update,
                    "insert" => WriteMode::Insert,
                    "delete" => WriteMode::Delete,
                    "append" => WriteMode::Append,
                    other => {
                        diffs.push(format!(
                            "target.mode `{other}` is not upsert, update, insert, delete or append"
                        ));
                        return Ok(());
                    }
                };
                let w = instance
                    .open_writer(
                        &config,
                        &WriteTarget {
                            object: target.object,
                            mode,
                            identifier: target.identifier,
                        },
                    )
                    .await?;
                let results = instance
                    .write(&w, &batch_from_json(&fixture.input))
                    .await?;
                let got: Vec<serde_json::Value> = results.iter().map(result_json).collect();
                got_out = serde_json::json!({ "results": got });
                let expected = expect.results.clone().unwrap_or_default();
                let ok = expected.len() == got.len()
                    && expected.iter().zip(&got).all(|(e, g)| result_matches(e, g));
                if !ok {
                    diffs.push(format!(
                        "results: expected {}\n            got {}",
                        serde_json::Value::Array(expected),
                        serde_json::Value::Array(got)
                    ));
                }
            }
            PluginKind::Source => {
                let request = match &fixture.read {
                    Some(Read::Object(o)) => ReadRequest::Object(o.clone()),
                    Some(Read::Query(q)) => ReadRequest::Query(q.clone()),
                    None => {
                        diffs.push(
                            "a source fixture needs `read`: {\"object\": …} or {\"query\": …}"
                                .into(),
                        );
                        return Ok(());
                    }
                };
                let reader = instance.read(&config, &request).await?;
                let mut rows = Vec::new();
                while let Some(batch) = instance.next_batch(&reader, 500).await? {
                    rows.extend(batch_json(&batch));
                }
                if let Some(expected) = &expect.rows {
                    compare_rows(expected, &rows, &mut diffs);
                }
                got_out = serde_json::json!({ "rows": rows });
            }
        }
        Ok(())
    }
    .await;
    match (outcome, &expect.error) {
        (Ok(()), None) => {}
        (Ok(()), Some(e)) => diffs.push(format!(
            "expected the call to fail with …{e}…, but it succeeded"
        )),
        (Err(f), Some(e)) if f.to_string().contains(e.as_str()) => {}
        (Err(f), _) => diffs.push(f.to_string()),
    }
    Ok((diffs, got_out))
}
