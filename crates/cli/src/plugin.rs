//! `sluice plugin ...`: look inside a component and try it out.

use crate::sync::ProjectArg;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use sluice_devkit::{harness, scaffold};
use sluice_registry::{builtin as plugins, store as plugin_store};
use sluice_runtime::error::describe_plugin_error;
use sluice_runtime::limits::{parse_duration, parse_size};
use sluice_runtime::plugin::Plugin;
use sluice_runtime::sandbox::policy::Grants;
use sluice_runtime::sandbox::requests::resolve_requests;
use sluice_runtime::PluginSpec;
use sluice_runtime::{FailureKind, Limits, Runtime, RuntimeOptions, Sandbox};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Show what a plugin is: its world and contract version, its spec, the
    /// capabilities it requests and its config schema.
    ///
    /// PLUGIN is a .wasm file, a plugin project directory (its built
    /// component) or the name of a built-in plugin (see `sluice plugin list`).
    ///
    /// Example: sluice plugin inspect webhook --json
    Inspect {
        plugin: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Test a plugin's connection with a config, inside the sandbox.
    ///
    /// Runs the plugin's `check` with only the grants given by --allow. A
    /// plugin that asks for more than it was granted fails with the
    /// capability it lacked.
    ///
    /// Example: sluice plugin check webhook --config hook.json
    ///          --allow https://hooks.example.com
    Check(CheckArgs),
    /// List the plugins built into this binary.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Install a plugin into the project: copy the component into
    /// `.sluice/plugins/NAME/VERSION/SHA256.wasm`, record its name, version,
    /// world, WIT version and digest in `sluice.lock`, and show what it
    /// requests. Versions live side by side; `plugin: NAME@VERSION` (or
    /// `NAME@sha256:HEX`) in sluice.yaml pins one.
    ///
    /// Example: sluice plugin install ./target/wasm32-wasip2/release/my_plugin.wasm -C proj
    Install(InstallArgs),
    /// Write a new plugin project: the plugin, its build command
    /// (`sluice plugin build`) and a fixture test (`sluice plugin test`).
    ///
    /// Everything the project builds from is written from this binary: the
    /// SDK (Rust: sluice-sdk/; Python: sluice_sdk/; JavaScript:
    /// sluice-sdk.js), the contract (wit/) and, for Python and JavaScript,
    /// the pinned toolchain (requirements.txt; package.json and
    /// package-lock.json). --sdk points at a sluice checkout's sdk/ instead,
    /// for SDK development.
    ///
    /// Example: sluice plugin new lowercase --lang rust --kind transform
    New(NewArgs),
    /// Build the plugin project in DIR (default: .) into its component.
    ///
    /// Rust: cargo build --target wasm32-wasip2 --release; Python and
    /// JavaScript: componentize-py / componentize-js, at the versions the
    /// project pins, installed on first use into the user cache
    /// ($SLUICE_TOOLCHAIN_DIR, else $XDG_CACHE_HOME/sluice/toolchains or
    /// ~/.cache/sluice/toolchains). The component goes where
    /// sluice-plugin.json says (dist/NAME.wasm).
    Build {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Run a plugin against fixtures and report pass/fail per fixture.
    ///
    /// PATH is a plugin project (its built component and fixtures/), a .wasm
    /// file or a built-in name. --record saves every HTTP exchange (secrets
    /// redacted) to a cassette (a project's cassettes/cassette.json unless
    /// a path is given); --replay serves them from it, offline, with no
    /// --allow needed.
    ///
    /// Example: sluice plugin test . --allow http://127.0.0.1:8080 --record
    ///          sluice plugin test . --replay
    Test(TestArgs),
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The plugin's name (letters, digits, - and _).
    pub name: String,
    #[arg(long, value_enum)]
    pub lang: scaffold::Lang,
    #[arg(long, value_enum)]
    pub kind: scaffold::Kind,
    /// Where to write it (default: ./NAME).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// A sluice checkout's sdk/ directory to build with instead of the SDK
    /// embedded in this binary (for SDK development; the project then
    /// depends on that checkout).
    #[arg(long)]
    pub sdk: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// A plugin project directory, a .wasm file or a built-in plugin name.
    #[arg(default_value = ".")]
    pub plugin: String,
    /// The fixtures directory (default: PATH/fixtures for a project).
    #[arg(long)]
    pub fixtures: Option<PathBuf>,
    /// Grant a network destination or directory, as for `plugin check`.
    #[arg(long = "allow", value_name = "GRANT")]
    pub allow: Vec<String>,
    /// Record every HTTP exchange to a cassette (JSON, secrets redacted);
    /// for a project, by default cassettes/cassette.json, apart from the
    /// fixtures.
    #[arg(long, value_name = "CASSETTE", num_args = 0..=1, conflicts_with = "replay")]
    pub record: Option<Option<PathBuf>>,
    /// Serve HTTP responses from a cassette (default as for --record),
    /// offline: the origins it recorded need no --allow.
    #[arg(long, value_name = "CASSETTE", num_args = 0..=1)]
    pub replay: Option<Option<PathBuf>>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// A .wasm component, a plugin project directory or a built-in plugin name.
    pub plugin: String,
    /// The name the project uses for it (default: the name in its spec).
    #[arg(long)]
    pub name: Option<String>,
    /// Replace another component installed under the same name and version.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub project: ProjectArg,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A .wasm file, a plugin project directory or a built-in plugin name.
    pub plugin: String,
    /// The plugin's config: a JSON file (or - for stdin).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Grant a network destination (scheme://host:port, e.g.
    /// https://*.example.com, postgres://db:5432, *://localhost:*) or a
    /// directory (dir:HOST_PATH[:GUEST_PATH][:rw]; a relative HOST_PATH is
    /// relative to the working directory, and the plugin sees the folder at
    /// GUEST_PATH, else at the host path, exactly as in sluice.yaml).
    /// Repeatable.
    #[arg(long = "allow", value_name = "GRANT")]
    pub allow: Vec<String>,
    /// Memory ceiling for the instance (e.g. 256MiB).
    #[arg(long, value_parser = parse_size)]
    pub memory: Option<usize>,
    /// Deadline for the call (e.g. 30s).
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(cmd: PluginCommand) -> Result<()> {
    match cmd {
        PluginCommand::Inspect { plugin, json } => inspect(&plugin, json).await,
        PluginCommand::Check(args) => check(args).await,
        PluginCommand::List { json } => list(json),
        PluginCommand::Install(args) => install(args).await,
        PluginCommand::New(args) => new(args),
        PluginCommand::Build { dir } => {
            let out = scaffold::build(&dir)?;
            println!("built {}", out.display());
            Ok(())
        }
        PluginCommand::Test(args) => test(args).await,
    }
}

/// A plugin project directory (one with `sluice-plugin.json`) stands for
/// its built component, as for `plugin test DIR`; anything else is itself.
fn component_reference(reference: &str) -> Result<String> {
    let path = PathBuf::from(reference);
    if !path.is_dir() {
        return Ok(reference.to_string());
    }
    let manifest = scaffold::Manifest::load(&path)?;
    let component = path.join(&manifest.component);
    if !component.is_file() {
        bail!(
            "{} is not built yet: run `sluice plugin build {}`",
            component.display(),
            path.display()
        );
    }
    Ok(component.display().to_string())
}

/// Load a plugin from a path (a .wasm file or a plugin project directory)
/// or a built-in name.
pub fn load_plugin(runtime: &Runtime, reference: &str) -> Result<Plugin> {
    let reference = &component_reference(reference)?;
    let path = PathBuf::from(reference);
    if path.exists() {
        return Plugin::load(runtime, &path);
    }
    if reference.ends_with(".wasm") || reference.contains('/') {
        bail!("plugin file {reference} does not exist");
    }
    plugins::load_builtin(runtime, reference)
        .with_context(|| format!("unknown plugin `{reference}`: not a file"))
}

async fn inspect(reference: &str, json: bool) -> Result<()> {
    let runtime = Runtime::new(RuntimeOptions::default())?;
    let plugin = load_plugin(&runtime, reference)?;
    let spec = plugin.spec().await?;
    let schema: serde_json::Value =
        serde_json::from_str(&spec.config_schema).with_context(|| {
            format!(
                "plugin `{}` returned a config schema that is not JSON",
                spec.name
            )
        })?;
    if json {
        let out = serde_json::json!({
            "name": spec.name,
            "version": spec.version,
            "description": spec.description,
            "world": plugin.world(),
            "wit": format!("{}@{}", sluice_runtime::WIT_PACKAGE, plugin.wit_version()),
            "sha256": plugin.digest(),
            "capabilities": spec.capabilities,
            "rate_limit": spec.rate_limit.map(|r| serde_json::json!({"requests": r.requests, "per_ms": r.per_ms, "concurrency": r.concurrency})),
            "batch_size": spec.batch_size,
            "imports": plugin.imports(),
            "config_schema": schema,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("{} {}: {}", spec.name, spec.version, spec.description);
    println!(
        "  world         {} ({}@{})",
        plugin.world(),
        sluice_runtime::WIT_PACKAGE,
        plugin.wit_version()
    );
    println!("  sha256        {}", plugin.digest());
    let caps = if spec.capabilities.is_empty() {
        "none".to_string()
    } else {
        spec.capabilities.join(", ")
    };
    println!("  requests      {caps}");
    if let Some(r) = spec.rate_limit {
        println!(
            "  rate limit    {} requests / {} ms, {} in flight",
            r.requests, r.per_ms, r.concurrency
        );
    }
    println!("  batch size    {} rows", spec.batch_size);
    println!(
        "  imports       {}",
        plugin.imports().join("\n                ")
    );
    println!(
        "  config schema\n{}",
        indent(&serde_json::to_string_pretty(&schema)?, 4)
    );
    Ok(())
}

fn indent(text: &str, n: usize) -> String {
    text.lines()
        .map(|l| format!("{:n$}{l}", ""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn read_config(path: Option<&PathBuf>) -> Result<String> {
    let Some(path) = path else {
        return Ok("{}".into());
    };
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading the config from stdin")?
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?
    };
    serde_json::from_str::<serde_json::Value>(&text)
        .with_context(|| format!("config {} is not valid JSON", path.display()))?;
    Ok(text)
}

async fn check(args: CheckArgs) -> Result<()> {
    let config = read_config(args.config.as_ref())?;
    let grants = Grants::parse(&args.allow, &std::env::current_dir()?)?;
    let runtime = Runtime::new(RuntimeOptions::default())?;
    let plugin = load_plugin(&runtime, &args.plugin)?;
    let spec = plugin.spec().await?;
    let mut limits = Limits::default();
    if let Some(m) = args.memory {
        limits.memory_bytes = m;
    }
    if let Some(t) = args.timeout {
        limits.call_deadline = t;
    }
    let sandbox = Sandbox {
        tls_ca_dirs: grants.dirs.clone(),
        grants,
        limits: Some(limits),
        tenant: "cli".into(),
        http: Default::default(),
        secrets: Default::default(),
    };
    let mut instance = plugin.instantiate(&sandbox).await?;
    let outcome = instance.check(&config).await;
    let requested = requested_grants(&spec, &config);
    if args.json {
        let out = match &outcome {
            Ok(()) => serde_json::json!({"plugin": spec.name, "ok": true}),
            Err(f) => {
                serde_json::json!({"plugin": spec.name, "ok": false, "call": f.call, "error": f.kind.to_string()})
            }
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    match outcome {
        Ok(()) => {
            if !args.json {
                println!("{}: check passed", spec.name);
            }
            Ok(())
        }
        Err(failure) => {
            let mut message = failure.to_string();
            if let FailureKind::Plugin(e) = &failure.kind {
                message = format!(
                    "plugin `{}` check failed: {}",
                    spec.name,
                    describe_plugin_error(e)
                );
            }
            if matches!(failure.kind, FailureKind::Denied(_)) && !requested.is_empty() {
                message.push_str(&format!(
                    "\nthe plugin requests: {} (grant with --allow)",
                    requested.join(", ")
                ));
            }
            bail!(message)
        }
    }
}

fn requested_grants(spec: &PluginSpec, config: &str) -> Vec<String> {
    let config: serde_json::Value = serde_json::from_str(config).unwrap_or_default();
    let schema: serde_json::Value = serde_json::from_str(&spec.config_schema).unwrap_or_default();
    resolve_requests(&spec.capabilities, &config, &schema)
        .into_iter()
        .filter_map(Result::ok)
        .collect()
}

fn list(json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(plugins::EMBEDDED)?);
    } else {
        for name in plugins::EMBEDDED {
            println!("{name}");
        }
    }
    Ok(())
}

async fn install(args: InstallArgs) -> Result<()> {
    let dir = &args.project.project;
    if !dir.is_dir() {
        bail!("project directory {} does not exist", dir.display());
    }
    let runtime = Runtime::new(RuntimeOptions::default())?;
    let done = plugin_store::install(
        &runtime,
        dir,
        &component_reference(&args.plugin)?,
        args.name.as_deref(),
        args.force,
    )
    .await
    .with_context(|| format!("installing {}", args.plugin))?;
    let e = &done.entry;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "installed": e,
                "unchanged": done.unchanged,
                "replaced": done.replaced,
            }))?
        );
        return Ok(());
    }
    let verb = if done.unchanged {
        "already installed"
    } else {
        "installed"
    };
    println!("{verb} {} {} ({}, {})", e.name, e.version, e.world, e.wit);
    println!("  sha256    {}", e.sha256);
    println!("  stored    {}", e.path);
    println!("  locked in {}", plugin_store::LOCK_FILE);
    if let Some(old) = &done.replaced {
        println!("  replaced  {}", old.label());
    }
    if e.capabilities.is_empty() {
        println!("  requests  nothing (it runs with the grants the project gives it)");
    } else {
        println!("  requests  {}", e.capabilities.join(", "));
        println!(
            "            grant these in sluice.yaml (`grants:`); `sluice validate` checks them"
        );
    }
    println!("pin it with `plugin: {}@{}`", e.name, e.version);
    Ok(())
}

fn new(args: NewArgs) -> Result<()> {
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    let manifest =
        scaffold::new_project(&args.name, args.lang, args.kind, &dir, args.sdk.as_deref())
            .with_context(|| format!("creating plugin project {}", dir.display()))?;
    println!(
        "created {} ({:?} {:?}) in {}",
        manifest.name,
        manifest.lang,
        manifest.kind,
        dir.display()
    );
    println!("  build  sluice plugin build {}", dir.display());
    println!("  test   sluice plugin test {}", dir.display());
    Ok(())
}

async fn test(args: TestArgs) -> Result<()> {
    let path = PathBuf::from(&args.plugin);
    // A project directory: its component, its fixtures and its cassettes.
    let reference = component_reference(&args.plugin)?;
    let project = path.is_dir().then_some(path);
    let fixtures = args
        .fixtures
        .or_else(|| project.as_ref().map(|p| p.join("fixtures")))
        .context("--fixtures DIR is needed for a plugin that is not a project directory")?;
    let found = harness::fixture_files(&fixtures)?;
    for note in &found.skipped {
        eprintln!("{note}");
    }
    let tape = tape(args.record, args.replay, project.as_deref())?;
    let grants = Grants::parse(&args.allow, &std::env::current_dir()?)?;
    let runtime = Runtime::new(RuntimeOptions::default())?;
    let plugin = load_plugin(&runtime, &reference)?;
    let spec = plugin.spec().await?;
    let sandbox = Sandbox {
        tls_ca_dirs: grants.dirs.clone(),
        grants,
        limits: None,
        tenant: "cli".into(),
        http: Default::default(),
        secrets: Default::default(),
    };
    let outcomes = harness::run(&plugin, &spec, &found.files, sandbox, tape.as_ref()).await?;
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcomes)?);
    } else {
        for o in &outcomes {
            println!("{} {}", if o.passed { "pass" } else { "FAIL" }, o.name);
            for d in &o.diffs {
                println!("    {d}");
            }
        }
        println!(
            "{}: {} passed, {failed} failed",
            spec.name,
            outcomes.len() - failed
        );
        if let Some(harness::Tape::Record(p)) = &tape {
            println!("recorded {}", p.display());
        }
    }
    if failed > 0 {
        bail!("{failed} fixture(s) failed");
    }
    Ok(())
}

/// `--record [CASSETTE]` / `--replay [CASSETTE]`: a path given, or the
/// project's `cassettes/cassette.json`, apart from its fixtures.
fn tape(
    record: Option<Option<PathBuf>>,
    replay: Option<Option<PathBuf>>,
    project: Option<&std::path::Path>,
) -> Result<Option<harness::Tape>> {
    let (flag, given, make): (_, _, fn(PathBuf) -> harness::Tape) = match (record, replay) {
        (Some(p), _) => ("--record", p, harness::Tape::Record),
        (_, Some(p)) => ("--replay", p, harness::Tape::Replay),
        _ => return Ok(None),
    };
    let path = match (given, project) {
        (Some(p), _) => p,
        (None, Some(dir)) => harness::default_cassette(dir),
        (None, None) => bail!(
            "{flag} needs a CASSETTE path for a plugin that is not a project directory \
             (a project's default is cassettes/cassette.json)"
        ),
    };
    Ok(Some(make(path)))
}
