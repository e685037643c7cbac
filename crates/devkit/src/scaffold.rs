//! `sluice plugin new` and `sluice plugin build`: a working plugin project
//! in Rust, Python or JavaScript, and the command that builds it.
//!
//! Every project has a `sluice-plugin.json` manifest (name, language, kind,
//! where the built component goes, where the SDK is), the plugin, and
//! `fixtures/example.json` for `sluice plugin test`.
//!
//! **How a Rust project gets the SDK.** By default the SDK is *vendored*:
//! its sources (the ones this binary was built with) are written into
//! `sluice-sdk/` and the contract into `wit/plugin.wit`, and the project
//! depends on `sluice-sdk = { path = "sluice-sdk" }`. The project then
//! builds anywhere with only crates.io, matches this host's contract
//! exactly, and is self-contained in version control. The SDK's own
//! `Cargo.lock` is copied too, so the same dependency versions are used.
//! With `--sdk PATH` (a sluice checkout's `sdk/` directory) the project
//! depends on that path instead, for SDK development.
//!
//! **Python and JavaScript projects** are written from files embedded in
//! this binary too, so a user with only the binary can build them: Python
//! gets the `sluice_sdk` package, the contract and the Python worlds under
//! `wit/`, and a `requirements.txt` pinning componentize-py; JavaScript
//! gets `sluice-sdk.js`, the contract, and a `package.json` +
//! `package-lock.json` pinning componentize-js exactly as `sdk/js` does.
//! `sluice plugin build` installs those pinned toolchains once into the
//! user's cache ([`crate::toolchain`]), never into the project or a
//! checkout. With `--sdk PATH` (a checkout's `sdk/`, for SDK development)
//! the project instead records that path and builds with the checkout's
//! `build.sh` and SDK sources.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::toolchain;

/// The manifest's file name.
pub const MANIFEST: &str = "sluice-plugin.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    Rust,
    Python,
    Js,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Source,
    Transform,
    Destination,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Source => "source",
            Kind::Transform => "transform",
            Kind::Destination => "destination",
        }
    }
}

/// `sluice-plugin.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub lang: Lang,
    pub kind: Kind,
    /// The built component, relative to the project.
    pub component: String,
    /// Python/JS made with `--sdk`: the sluice checkout's `sdk/` directory
    /// whose build scripts and SDK sources build the project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdk: Option<PathBuf>,
}

impl Manifest {
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (a plugin project made by `sluice plugin new` has one)",
                path.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{} is not valid", path.display()))
    }
}

// The SDK this binary was built with, vendored into new Rust projects
// (`SDK_FILES`, listed by build.rs from `sdk/src`).
include!(concat!(env!("OUT_DIR"), "/sdk_files.rs"));
const SDK_LOCK: &str = include_str!("../../../sdk/Cargo.lock");

// The Python and JavaScript SDKs, their templates and the pinned toolchains
// (`PYTHON_FILES` is listed by build.rs).
const PYTHON_REQUIREMENTS: &str = include_str!("../../../sdk/python/requirements.txt");
const PYTHON_CHECK_SYNTAX: &str = include_str!("../../../sdk/python/check_syntax.py");
const PYTHON_TRANSFORM: &str = include_str!("../../../sdk/python/templates/transform/app.py");
const PYTHON_DESTINATION: &str = include_str!("../../../sdk/python/templates/destination/app.py");
const JS_SDK: &str = include_str!("../../../sdk/js/lib/sluice-sdk.js");
const JS_PACKAGE: &str = include_str!("../../../sdk/js/package.json");
const JS_LOCK: &str = include_str!("../../../sdk/js/package-lock.json");
const JS_BUILD: &str = include_str!("../../../sdk/js/build.mjs");
const JS_CHECK: &str = include_str!("../../../sdk/js/check.mjs");
const JS_TRANSFORM: &str = include_str!("../../../sdk/js/templates/transform/plugin.js");
const JS_DESTINATION: &str = include_str!("../../../sdk/js/templates/destination/plugin.js");
const CONTRACT_WIT: &str = include_str!("../../../wit/plugin.wit");

/// A vendored SDK file as the new project needs it: the SDK's manifest
/// points at the values crate beside it rather than in the sluice tree.
fn vendored(path: &str, text: &str) -> String {
    if path == "sluice-sdk/Cargo.toml" {
        text.replace("path = \"../crates/values\"", "path = \"../sluice-values\"")
    } else {
        text.to_string()
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Write a new plugin project into `dir` (which must not exist or be empty).
pub fn new_project(
    name: &str,
    lang: Lang,
    kind: Kind,
    dir: &Path,
    sdk: Option<&Path>,
) -> Result<Manifest> {
    if !valid_name(name) {
        bail!("`{name}` cannot name a plugin: use letters, digits, `-` and `_`, starting with a letter");
    }
    if dir.exists()
        && std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!("{} exists and is not empty", dir.display());
    }
    let sdk = match sdk {
        Some(p) => Some(
            p.canonicalize()
                .with_context(|| format!("--sdk {} does not exist", p.display()))?,
        ),
        None => None,
    };
    let files = match lang {
        Lang::Rust => rust_files(name, kind, sdk.as_deref())?,
        Lang::Python | Lang::Js => {
            if kind == Kind::Source {
                bail!(
                    "the {} SDK has no source world yet: write sources in Rust \
                     (--lang rust), or a {} transform or destination",
                    if lang == Lang::Python {
                        "Python"
                    } else {
                        "JavaScript"
                    },
                    if lang == Lang::Python {
                        "Python"
                    } else {
                        "JavaScript"
                    },
                );
            }
            match sdk {
                Some(sdk) => checkout_polyglot_files(name, lang, kind, &sdk)?,
                None => embedded_polyglot_files(name, lang, kind)?,
            }
        }
    };
    for (path, text) in &files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Manifest::load(dir)
}

fn manifest_json(m: &Manifest) -> String {
    let mut s = serde_json::to_string_pretty(m).expect("a manifest serializes");
    s.push('\n');
    s
}

fn rust_files(name: &str, kind: Kind, sdk: Option<&Path>) -> Result<Vec<(String, String)>> {
    let krate = name.replace('-', "_");
    let mut files: Vec<(String, String)> = Vec::new();
    let sdk_dep = match sdk {
        Some(p) => {
            if !p.join("Cargo.toml").is_file() {
                bail!(
                    "--sdk {}: no Cargo.toml there (point at sluice's sdk/ directory)",
                    p.display()
                );
            }
            format!("{{ path = {:?} }}", p.display().to_string())
        }
        None => {
            for (path, text) in SDK_FILES {
                files.push((path.to_string(), vendored(path, text)));
            }
            "{ path = \"sluice-sdk\" }".to_string()
        }
    };
    files.push(("Cargo.lock".into(), SDK_LOCK.to_string()));
    files.push((
        "Cargo.toml".into(),
        format!(
            r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
description = "A Sluice {kind} plugin"

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
sluice-sdk = {sdk_dep}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

# A plugin is its own workspace, even inside another project's tree.
[workspace]

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = "debuginfo"
"#,
            kind = kind.as_str()
        ),
    ));
    files.push(("src/lib.rs".into(), rust_template(name, kind)));
    files.push((
        "fixtures/example.json".into(),
        pretty(&fixture(kind, Lang::Rust)),
    ));
    files.push((".gitignore".into(), "/target\n/dist\n".into()));
    let manifest = Manifest {
        name: name.to_string(),
        lang: Lang::Rust,
        kind,
        component: format!("dist/{krate}.wasm"),
        sdk: None,
    };
    files.push((MANIFEST.into(), manifest_json(&manifest)));
    files.push(("README.md".into(), readme(name, Lang::Rust, kind)));
    Ok(files)
}

/// A Python or JavaScript project with everything it needs to build from
/// this binary's embedded SDK and pins.
fn embedded_polyglot_files(name: &str, lang: Lang, kind: Kind) -> Result<Vec<(String, String)>> {
    let template = match (lang, kind) {
        (Lang::Python, Kind::Transform) => PYTHON_TRANSFORM,
        (Lang::Python, _) => PYTHON_DESTINATION,
        (_, Kind::Transform) => JS_TRANSFORM,
        _ => JS_DESTINATION,
    };
    let entry = template_entry(lang);
    let mut files = vec![(
        entry.to_string(),
        template.replace(&format!("my-{}", kind.as_str()), name),
    )];
    let ignore = match lang {
        Lang::Python => {
            for (path, text) in PYTHON_FILES {
                files.push((path.to_string(), text.to_string()));
            }
            files.push((
                "requirements.txt".into(),
                python_requirements(PYTHON_REQUIREMENTS)?,
            ));
            "/dist\n__pycache__/\n"
        }
        _ => {
            files.push(("sluice-sdk.js".into(), JS_SDK.to_string()));
            files.push(("wit/plugin.wit".into(), CONTRACT_WIT.to_string()));
            let (package, lock) = js_package(name, JS_PACKAGE, JS_LOCK)?;
            files.push(("package.json".into(), package));
            files.push(("package-lock.json".into(), lock));
            "/dist\nnode_modules/\n"
        }
    };
    let manifest = Manifest {
        name: name.to_string(),
        lang,
        kind,
        component: format!("dist/{name}.wasm"),
        sdk: None,
    };
    files.extend([
        ("fixtures/example.json".into(), pretty(&fixture(kind, lang))),
        (".gitignore".into(), ignore.to_string()),
        (MANIFEST.into(), manifest_json(&manifest)),
        ("README.md".into(), readme(name, lang, kind)),
    ]);
    Ok(files)
}

fn template_entry(lang: Lang) -> &'static str {
    match lang {
        Lang::Python => "app.py",
        _ => "plugin.js",
    }
}

/// The project's `requirements.txt`: the SDK's componentize-py pin, with a
/// comment saying who installs it where.
fn python_requirements(sdk_requirements: &str) -> Result<String> {
    let version = toolchain::componentize_py_pin(sdk_requirements)?;
    Ok(format!(
        "# The toolchain that turns this plugin into a WebAssembly component.\n\
         # `sluice plugin build` installs exactly this, once, into the user cache\n\
         # ($XDG_CACHE_HOME/sluice or ~/.cache/sluice).\n\
         componentize-py=={version}\n"
    ))
}

/// The project's `package.json` and `package-lock.json`: the SDK's pinned
/// toolchain under the plugin's name, nothing else changed, so `npm ci`
/// installs exactly what the SDK builds with.
fn js_package(name: &str, package: &str, lock: &str) -> Result<(String, String)> {
    use serde_json::{json, Value};
    let sdk_package: Value =
        serde_json::from_str(package).context("the embedded package.json is not JSON")?;
    let mut lock: Value =
        serde_json::from_str(lock).context("the embedded package-lock.json is not JSON")?;
    let mut package = json!({
        "name": name,
        "private": true,
        "version": "0.1.0",
        "type": "module",
        "description": "A Sluice plugin in JavaScript: `sluice plugin build` turns plugin.js into a component",
        "scripts": {"build": "sluice plugin build", "test": "sluice plugin test ."},
        "devDependencies": sdk_package["devDependencies"].clone(),
    });
    if let Some(note) = sdk_package.get("//") {
        package["//"] = note.clone();
    }
    lock["name"] = json!(name);
    lock["version"] = json!("0.1.0");
    let root = lock
        .get_mut("packages")
        .and_then(|p| p.get_mut(""))
        .context("the embedded package-lock.json has no root package")?;
    root["name"] = json!(name);
    root["version"] = json!("0.1.0");
    Ok((pretty(&package), pretty(&lock)))
}

/// A Python or JavaScript project built by a sluice checkout's SDK
/// (`--sdk`): its template, the checkout recorded in the manifest.
fn checkout_polyglot_files(
    name: &str,
    lang: Lang,
    kind: Kind,
    sdk: &Path,
) -> Result<Vec<(String, String)>> {
    let (sub, file) = match lang {
        Lang::Python => ("python", "app.py"),
        _ => ("js", "plugin.js"),
    };
    let template = sdk
        .join(sub)
        .join("templates")
        .join(kind.as_str())
        .join(file);
    let text = std::fs::read_to_string(&template).with_context(|| {
        format!(
            "reading the SDK template {} (is --sdk a sluice checkout's sdk/ directory?)",
            template.display()
        )
    })?;
    let text = text.replace(&format!("my-{}", kind.as_str()), name);
    let manifest = Manifest {
        name: name.to_string(),
        lang,
        kind,
        component: format!("dist/{name}.wasm"),
        sdk: Some(sdk.to_path_buf()),
    };
    Ok(vec![
        (file.to_string(), text),
        ("fixtures/example.json".into(), pretty(&fixture(kind, lang))),
        (".gitignore".into(), "/dist\n__pycache__/\n".into()),
        (MANIFEST.into(), manifest_json(&manifest)),
        ("README.md".into(), readme(name, lang, kind)),
    ])
}

/// JSON as a person writes it: indented, one value per line, a final newline.
fn pretty(value: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("a JSON value serializes");
    text.push('\n');
    text
}

fn fixture(kind: Kind, lang: Lang) -> serde_json::Value {
    use serde_json::json;
    match (kind, lang) {
        (Kind::Transform, _) => json!({
            "description": "lower-cases `email`; a value that is not text is a row error",
            "config": {"column": "email"},
            "input": [
                {"id": 1, "email": "Ada@Example.COM"},
                {"id": 2, "email": 7},
                {"id": 3, "email": null}
            ],
            "expect": {
                "rows": [{"id": 1, "email": "ada@example.com"}, {"id": 3, "email": null}],
                "errors": [{"index": 1, "message": "must be text"}]
            }
        }),
        (Kind::Destination, Lang::Rust) => json!({
            "description": "rows with an identifier are accepted; rows without one are rejected",
            "config": {},
            "target": {"object": "events", "mode": "upsert", "identifier": "id"},
            "input": [{"id": 1, "name": "ada"}, {"id": null, "name": "grace"}],
            "expect": {"results": ["accepted", {"rejected": "no `id`"}]}
        }),
        (Kind::Destination, _) => json!({
            "description": "POSTs the rows to config.url: record a cassette against your API \
                            (sluice plugin test . --allow URL --record, into cassettes/), \
                            then replay it offline with --replay",
            "config": {"url": "http://127.0.0.1:8080/hook"},
            "target": {"object": "events", "mode": "upsert", "identifier": "id"},
            "input": [{"id": 1, "name": "ada"}],
            "expect": {"results": ["accepted"]}
        }),
        (Kind::Source, _) => json!({
            "description": "reads the rows given in the config",
            "config": {"rows": [{"id": 1, "name": "ada"}, {"id": 2, "name": "grace"}]},
            "read": {"object": "rows"},
            "expect": {"rows": [{"id": 1, "name": "ada"}, {"id": 2, "name": "grace"}]}
        }),
    }
}

fn readme(name: &str, lang: Lang, kind: Kind) -> String {
    let edit = match lang {
        Lang::Rust => "src/lib.rs",
        Lang::Python => "app.py",
        Lang::Js => "plugin.js",
    };
    format!(
        "# {name}\n\nA Sluice {kind} plugin. Edit `{edit}`, then:\n\n\
         ```sh\n\
         sluice plugin build            # -> the component named in sluice-plugin.json\n\
         sluice plugin test .           # runs fixtures/*.json against it\n\
         sluice plugin install dist/*.wasm -C path/to/project\n\
         ```\n\n\
         A fixture gives a config and rows in, and the rows (transform), per-row\n\
         results (destination) or rows read (source) expected out. A plugin that calls\n\
         an API can record its HTTP exchanges once (`--record`, secrets redacted, into\n\
         `cassettes/cassette.json`, apart from the fixtures) and replay them offline\n\
         with no network grant (`--replay`).\n",
        kind = kind.as_str()
    )
}

fn rust_template(name: &str, kind: Kind) -> String {
    let body = match kind {
        Kind::Transform => TRANSFORM_RS,
        Kind::Destination => DESTINATION_RS,
        Kind::Source => SOURCE_RS,
    };
    body.replace("__NAME__", name)
}

const TRANSFORM_RS: &str = r#"//! `__NAME__`: a Sluice transform.
//!
//! As written it lower-cases one text column named in the config,
//! `{"column": "email"}`, and reports a row error for a value that is not
//! text. Edit `transform`; keep one output row or one error per input row.

use serde::Deserialize;
use sluice_sdk::prelude::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    column: String,
}

pub struct Plugin {
    column: String,
}

impl Transform for Plugin {
    fn spec() -> PluginSpec {
        PluginSpec::new("__NAME__", env!("CARGO_PKG_VERSION"), "A transform of one column (scaffolded: it lower-cases it)").config_schema(
            serde_json::json!({
                "type": "object",
                "required": ["column"],
                "additionalProperties": false,
                "properties": {"column": {"type": "string"}}
            }),
        )
    }

    fn open(config: &str) -> Result<Self, PluginError> {
        let config: Config = parse_config(config)?;
        Ok(Plugin { column: config.column })
    }

    fn transform(&mut self, batch: Batch) -> Result<Transformed, PluginError> {
        let Some(col) = batch.column(&self.column) else {
            return Err(PluginError::Permanent(format!("no column `{}` in the batch", self.column)));
        };
        let mut out = Transformed::all(Batch::new(batch.columns.clone()));
        for (index, mut row) in batch.rows.into_iter().enumerate() {
            match &mut row[col] {
                Value::Null => out.batch.rows.push(row),
                Value::Text(s) => {
                    *s = s.to_lowercase();
                    out.batch.rows.push(row);
                }
                _ => out.reject(index, format!("`{}` must be text", self.column)),
            }
        }
        Ok(out)
    }
}

sluice_sdk::export_transform!(Plugin);
"#;

const DESTINATION_RS: &str = r#"//! `__NAME__`: a Sluice destination.
//!
//! As written it accepts every row that has a value in the identifier field
//! and rejects the others, logging what it would send. Replace `write` with
//! calls to your API through `sluice_sdk::http` (the host checks each
//! request against the plugin's grant), and list what it needs in
//! `spec().capability(...)`, e.g. `${config.url}`.

use sluice_sdk::prelude::*;

pub struct Plugin;

impl Destination for Plugin {
    type Writer = PluginWriter;

    fn spec() -> PluginSpec {
        PluginSpec::new("__NAME__", env!("CARGO_PKG_VERSION"), "A destination (scaffolded: it accepts rows that have an identifier)")
            .batch_size(100)
    }

    fn check(_config: &str) -> Result<(), PluginError> {
        Ok(())
    }

    fn discover(_config: &str) -> Result<Vec<ObjectInfo>, PluginError> {
        Ok(vec![ObjectInfo {
            name: "events".into(),
            fields: vec![Field { name: "*".into(), type_: FieldType::Any, nullable: true, required: false, identifier: true }],
            modes: vec![WriteMode::Upsert, WriteMode::Insert, WriteMode::Update, WriteMode::Append],
        }])
    }

    fn open(_config: &str, target: WriteTarget) -> Result<PluginWriter, PluginError> {
        Ok(PluginWriter { target })
    }
}

pub struct PluginWriter {
    target: WriteTarget,
}

impl Writer for PluginWriter {
    fn write(&mut self, batch: Batch) -> Result<Vec<RowResult>, PluginError> {
        let id = batch.column(&self.target.identifier);
        Ok((0..batch.len())
            .map(|i| match id.map(|c| &batch.rows[i][c]) {
                Some(v) if !v.is_null() => {
                    sluice_sdk::info!("{}: {}", self.target.object, serde_json::Value::Object(batch.row_json(i)));
                    RowResult::Accepted
                }
                _ => RowResult::Rejected(format!("no `{}` value", self.target.identifier)),
            })
            .collect())
    }
}

sluice_sdk::export_destination!(Plugin);
"#;

const SOURCE_RS: &str = r#"//! `__NAME__`: a Sluice source.
//!
//! As written it reads the rows given in its config as the object `rows`,
//! `{"rows": [{"id": 1}, ...]}`. Replace `read` with a reader over your
//! system (files in a granted directory, or an API through
//! `sluice_sdk::http`), and list what it needs in `spec().capability(...)`.

use serde::Deserialize;
use sluice_sdk::prelude::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    rows: Vec<serde_json::Map<String, serde_json::Value>>,
}

fn value(v: &serde_json::Value) -> Value {
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

pub struct Plugin;

impl Source for Plugin {
    type Reader = RowsReader;

    fn spec() -> PluginSpec {
        PluginSpec::new("__NAME__", env!("CARGO_PKG_VERSION"), "A source (scaffolded: it reads the rows in its config)")
    }

    fn check(config: &str) -> Result<(), PluginError> {
        parse_config::<Config>(config).map(|_| ())
    }

    fn discover(_config: &str) -> Result<Vec<ObjectInfo>, PluginError> {
        Ok(vec![ObjectInfo {
            name: "rows".into(),
            fields: vec![Field { name: "*".into(), type_: FieldType::Any, nullable: true, required: false, identifier: false }],
            modes: vec![],
        }])
    }

    fn read(config: &str, request: ReadRequest) -> Result<RowsReader, PluginError> {
        if request != ReadRequest::Object("rows".into()) {
            return Err(PluginError::Config("this source has one object, `rows`".into()));
        }
        let config: Config = parse_config(config)?;
        let mut columns: Vec<String> = config.rows.iter().flat_map(|r| r.keys().cloned()).collect();
        columns.sort();
        columns.dedup();
        let rows = config
            .rows
            .iter()
            .map(|r| columns.iter().map(|c| r.get(c).map(value).unwrap_or(Value::Null)).collect())
            .collect();
        Ok(RowsReader { columns, rows, at: 0 })
    }
}

pub struct RowsReader {
    columns: Vec<String>,
    rows: Vec<Row>,
    at: usize,
}

impl Reader for RowsReader {
    fn next(&mut self, max_rows: u32) -> Result<Option<Batch>, PluginError> {
        if self.at >= self.rows.len() {
            return Ok(None);
        }
        let end = (self.at + max_rows.max(1) as usize).min(self.rows.len());
        let batch = Batch { columns: self.columns.clone(), rows: self.rows[self.at..end].to_vec() };
        self.at = end;
        Ok(Some(batch))
    }
}

sluice_sdk::export_source!(Plugin);
"#;

/// Build the project in `dir` into its component; returns the component's path.
pub fn build(dir: &Path) -> Result<PathBuf> {
    let dir = &dir
        .canonicalize()
        .with_context(|| format!("plugin project {} does not exist", dir.display()))?;
    let manifest = Manifest::load(dir)?;
    let out = dir.join(&manifest.component);
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    // The last build's component goes first: a build that fails must not
    // leave `plugin test` or `install` running yesterday's code.
    match std::fs::remove_file(&out) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("removing the old component {}", out.display()))
        }
    }
    match manifest.lang {
        Lang::Rust => {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--target", "wasm32-wasip2", "--release"])
                .current_dir(dir);
            run(&mut cmd, "cargo build --target wasm32-wasip2 --release")?;
            let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
                Some(t) => dir.join(t),
                None => dir.join("target"),
            };
            let file = Path::new(&manifest.component)
                .file_name()
                .context("the manifest's component has no file name")?;
            let built = target_dir.join("wasm32-wasip2/release").join(file);
            std::fs::copy(&built, &out)
                .with_context(|| format!("copying {} to {}", built.display(), out.display()))?;
        }
        Lang::Python | Lang::Js => match &manifest.sdk {
            Some(sdk) => build_with_checkout(dir, &manifest, sdk, &out)?,
            None if manifest.lang == Lang::Python => build_python(dir, manifest.kind, &out)?,
            None => build_js(dir, manifest.kind, &out)?,
        },
    }
    Ok(out)
}

/// A project made with `--sdk`: the checkout's `build.sh`.
fn build_with_checkout(dir: &Path, manifest: &Manifest, sdk: &Path, out: &Path) -> Result<()> {
    let (script, input) = match manifest.lang {
        Lang::Python => (sdk.join("python/build.sh"), dir.to_path_buf()),
        _ => (sdk.join("js/build.sh"), dir.join("plugin.js")),
    };
    let mut cmd = Command::new("bash");
    cmd.arg(&script)
        .arg(&input)
        .arg(manifest.kind.as_str())
        .arg(out)
        .current_dir(dir);
    run(&mut cmd, &script.display().to_string())
}

fn read_project_file(dir: &Path, name: &str) -> Result<String> {
    let path = dir.join(name);
    std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (`sluice plugin new` writes it; restore it from a new project)",
            path.display()
        )
    })
}

/// Python: check the syntax, install the pinned componentize-py (once),
/// build `app.py` and the packages beside it against the project's `wit/`.
fn build_python(dir: &Path, kind: Kind, out: &Path) -> Result<()> {
    if !dir.join("app.py").is_file() {
        bail!(
            "{} not found: a Python plugin's entry module is app.py",
            dir.join("app.py").display()
        );
    }
    let python = toolchain::python();
    let parses = Command::new(&python)
        .args(["-c", PYTHON_CHECK_SYNTAX])
        .arg(dir)
        .status()
        .with_context(|| {
            format!("running {python} to check the syntax (is Python 3 installed?)")
        })?;
    if !parses.success() {
        bail!("{} does not parse; nothing was built", dir.display());
    }
    let componentize = toolchain::python_toolchain(&read_project_file(dir, "requirements.txt")?)?;
    // componentize-py adds the current directory to the module path: run it
    // from an empty one. VIRTUAL_ENV is unset so nothing from a venv the
    // user has active is bundled.
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let mut cmd = Command::new(&componentize);
    cmd.current_dir(scratch.path())
        .env_remove("VIRTUAL_ENV")
        .arg("--quiet")
        .arg("-d")
        .arg(dir.join("wit"))
        .arg("-d")
        .arg(dir.join("wit/python"))
        .args(["-w", &format!("sluice:python-sdk/{}@0.1.0", kind.as_str())])
        .args(["--import-interface-name", "sluice:plugin/types@0.1.0=types"]);
    if kind == Kind::Destination {
        cmd.args([
            "--import-interface-name",
            "wasi:http/types@0.2.12=http_types",
        ]);
    }
    cmd.args(["componentize", "app", "-p"])
        .arg(dir)
        .arg("-o")
        .arg(out);
    eprintln!(
        "sluice: building {} ({}) -> {}",
        dir.display(),
        kind.as_str(),
        out.display()
    );
    run(&mut cmd, "componentize-py")
}

/// JavaScript: check the syntax, install the pinned componentize-js
/// (once), build `plugin.js` and the modules beside it.
fn build_js(dir: &Path, kind: Kind, out: &Path) -> Result<()> {
    let source = dir.join("plugin.js");
    if !source.is_file() {
        bail!(
            "{} not found: a JavaScript plugin's entry module is plugin.js",
            source.display()
        );
    }
    // The syntax check needs only node, so it runs before any install.
    let js_cache = toolchain::cache_root()?.join("js");
    std::fs::create_dir_all(&js_cache)
        .with_context(|| format!("creating {}", js_cache.display()))?;
    let check = js_cache.join("check.mjs");
    toolchain::write_if_changed(&check, JS_CHECK)?;
    let parses = Command::new("node")
        .arg(&check)
        .arg(&source)
        .status()
        .context("running node to check the syntax (is Node.js installed?)")?;
    if !parses.success() {
        bail!("{} does not parse; nothing was built", source.display());
    }
    let tools = toolchain::js_toolchain(
        &read_project_file(dir, "package.json")?,
        &read_project_file(dir, "package-lock.json")?,
    )?;
    // build.mjs imports componentize-js: it runs beside node_modules.
    let build = tools.join("build.mjs");
    toolchain::write_if_changed(&build, JS_BUILD)?;
    let mut cmd = Command::new("node");
    cmd.arg(&build)
        .arg(&source)
        .arg(kind.as_str())
        .arg(out)
        .arg(dir.join("wit"))
        .current_dir(dir);
    run(&mut cmd, "componentize-js (build.mjs)")
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    toolchain::run(cmd, what)
}
