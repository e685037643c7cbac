//! The `sluice` command line.

pub mod plugin;

use clap::{Parser, Subcommand, ValueEnum};

/// Sluice: reverse ETL with sandboxed WebAssembly connectors.
///
/// Sluice reads rows from a warehouse or files, finds what changed since the
/// last run, maps and transforms them, and loads them into operational tools.
/// Every connector and transform is a WebAssembly component that runs with
/// only the network hosts, directories, memory and CPU you grant it.
#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// More logging (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect, check and list plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
}

/// Run a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Plugin(cmd) => plugin::run(cmd).await,
    }
}
