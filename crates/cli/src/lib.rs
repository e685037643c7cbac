//! The `sluice` command line.

pub mod demo;
mod demo_serve;
pub mod emulator;
pub mod plugin;
pub mod serve;
pub mod sync;

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
    /// The classic reverse-ETL story on embedded defaults: a CSV of customers
    /// synced into a local Salesforce emulator, then only the changed rows.
    Demo(demo::DemoArgs),
    /// Check sluice.yaml: every problem with its file, line and what was expected.
    Validate {
        #[command(flatten)]
        project: sync::ProjectArg,
        #[command(flatten)]
        args: sync::ValidateArgs,
    },
    /// Dry-run a sync: what would be added, changed and deleted; nothing is written.
    Plan {
        #[command(flatten)]
        project: sync::ProjectArg,
        #[command(flatten)]
        args: sync::PlanArgs,
    },
    /// Run a sync (or --all): send what changed since the last run.
    Run {
        #[command(flatten)]
        project: sync::ProjectArg,
        #[command(flatten)]
        args: sync::RunArgs,
    },
    /// List past runs, or `runs show RUN` for one run's counts and rejected rows;
    /// `runs unlock SYNC` clears the stale runs of a sync no process holds.
    Runs {
        #[command(flatten)]
        project: sync::ProjectArg,
        #[command(flatten)]
        args: sync::RunsArgs,
    },
    /// The rejected-row ledger of a sync: each row the destination refused,
    /// with its key, the destination's message and how many runs tried it.
    ///
    /// Rejected rows are retried by every run until the destination accepts
    /// them or their content changes; `sluice retry SYNC` re-sends them now.
    Rejected {
        #[command(flatten)]
        project: sync::ProjectArg,
        #[command(flatten)]
        args: sync::RejectedArgs,
    },
    /// Re-send a sync's rejected rows now (after fixing the destination,
    /// say), and nothing else: other changes wait for the next run, and no
    /// record is deleted.
    Retry {
        #[command(flatten)]
        project: sync::ProjectArg,
        #[command(flatten)]
        args: sync::RetryArgs,
    },
    /// Check that what a sync delivered is still in the destination: the
    /// records its state says were accepted are looked up by identifier, and
    /// the ones that are gone are forgotten, so the next run sends them
    /// again.
    ///
    /// Needs a destination that can look records up (HubSpot; see `sluice
    /// plugin inspect`). `--dry-run` only reports.
    Verify {
        #[command(flatten)]
        project: sync::ProjectArg,
        #[command(flatten)]
        args: sync::VerifyArgs,
    },
    /// Inspect, check and list plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Serve a local Salesforce, HubSpot, Snowflake SQL, BigQuery or Databricks SQL API for offline development.
    ///
    /// Example: sluice emulator salesforce --port 8080 --rate-limit 100 --interval 10s
    Emulator(emulator::EmulatorArgs),
    /// Serve the multi-tenant API (tenants, tokens, projects, runs) over a
    /// PostgreSQL state; see the README, "Run as a service".
    ///
    /// Example: SLUICE_OPERATOR_TOKEN=... sluice serve --state postgres://... --listen 0.0.0.0:8080
    Serve(serve::ServeArgs),
    /// Take run jobs (API triggers, schedules) from the queue in the
    /// PostgreSQL state and run them; start any number, on any hosts.
    ///
    /// Example: sluice worker --state postgres://... --concurrency 4
    Worker(serve::WorkerArgs),
    /// Upload the project in this folder (sluice.yaml and its text files)
    /// to a `sluice serve` as the tenant whose token is given; problems come
    /// back with their file, line and column.
    Apply {
        #[command(flatten)]
        project: sync::ProjectArg,
        #[command(flatten)]
        args: serve::ApplyArgs,
    },
}

/// Run a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo(args) => demo::run(args).await,
        Command::Validate { project, args } => sync::validate(&project, args),
        Command::Plan { project, args } => sync::plan(&project, args).await,
        Command::Run { project, args } => sync::run(&project, args).await,
        Command::Runs { project, args } => sync::runs(&project, args),
        Command::Rejected { project, args } => sync::rejected(&project, args),
        Command::Retry { project, args } => sync::retry(&project, args).await,
        Command::Verify { project, args } => sync::verify(&project, args).await,
        Command::Plugin(cmd) => plugin::run(cmd).await,
        Command::Emulator(args) => emulator::run(args).await,
        Command::Serve(args) => serve::serve(args).await,
        Command::Worker(args) => serve::worker(args).await,
        Command::Apply { project, args } => serve::apply(&project.project, args).await,
    }
}
