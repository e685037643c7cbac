//! `sluice plugin ...`: look inside a component and try it out.

use crate::runtime::error::describe_plugin_error;
use crate::runtime::limits::{parse_duration, parse_size};
use crate::runtime::plugin::Plugin;
use crate::runtime::sandbox::policy::Grants;
use crate::runtime::sandbox::requests::resolve_requests;
use crate::runtime::{FailureKind, Limits, Runtime, RuntimeOptions, Sandbox};
use crate::{plugins, PluginSpec};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Show what a plugin is: its world and contract version, its spec, the
    /// capabilities it requests and its config schema.
    ///
    /// PLUGIN is a .wasm file or the name of a built-in plugin (see
    /// `sluice plugin list`).
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
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A .wasm file or a built-in plugin name.
    pub plugin: String,
    /// The plugin's config: a JSON file (or - for stdin).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Grant a network destination (scheme://host:port, e.g.
    /// https://*.example.com, postgres://db:5432, *://localhost:*) or a
    /// directory (dir:HOST_PATH[:GUEST_PATH][:rw]). Repeatable.
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
    }
}

/// Load a plugin from a path or a built-in name.
pub fn load_plugin(runtime: &Runtime, reference: &str) -> Result<Plugin> {
    let path = PathBuf::from(reference);
    if path.exists() {
        return Plugin::load(runtime, &path);
    }
    if let Some(bytes) = plugins::embedded(reference) {
        return Plugin::from_bytes(runtime, reference, bytes);
    }
    if reference.ends_with(".wasm") || reference.contains('/') {
        bail!("plugin file {reference} does not exist");
    }
    bail!(
        "unknown plugin `{reference}`: not a file, and not a built-in plugin ({})",
        plugins::EMBEDDED.join(", ")
    )
}

async fn spec_of(plugin: &Plugin) -> Result<PluginSpec> {
    let mut instance = plugin.instantiate(&Sandbox::default()).await?;
    Ok(instance.spec().await?)
}

async fn inspect(reference: &str, json: bool) -> Result<()> {
    let runtime = Runtime::new(RuntimeOptions::default())?;
    let plugin = load_plugin(&runtime, reference)?;
    let spec = spec_of(&plugin).await?;
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
            "world": plugin.kind(),
            "wit": format!("{}@{}", crate::runtime::WIT_PACKAGE, plugin.wit_version()),
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
        plugin.kind(),
        crate::runtime::WIT_PACKAGE,
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
    let grants = Grants::parse(&args.allow)?;
    let runtime = Runtime::new(RuntimeOptions::default())?;
    let plugin = load_plugin(&runtime, &args.plugin)?;
    let spec = spec_of(&plugin).await?;
    let mut limits = Limits::default();
    if let Some(m) = args.memory {
        limits.memory_bytes = m;
    }
    if let Some(t) = args.timeout {
        limits.call_deadline = t;
    }
    let sandbox = Sandbox {
        grants,
        limits: Some(limits),
        tenant: "cli".into(),
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
