//! `sluice emulator`: local Salesforce and HubSpot APIs for developing a
//! sync offline, with the same throttling and error signals as the real
//! ones and optional fault injection.

use anyhow::Result;
use clap::Args;
use sluice_emulators::{EmulatorConfig, EmulatorKind, FaultConfig, RateLimit};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct EmulatorArgs {
    /// Which API: salesforce or hubspot.
    pub api: EmulatorKind,
    /// Port to listen on (127.0.0.1).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to bind instead of 127.0.0.1.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
    /// Throttle at this many requests per --interval (Salesforce answers
    /// 403 REQUEST_LIMIT_EXCEEDED, HubSpot 429).
    #[arg(long)]
    pub rate_limit: Option<u32>,
    /// The rate-limit window, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = sluice_runtime::limits::parse_duration)]
    pub interval: Duration,
    /// Probability (0..1) of an injected 500/503.
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Probability (0..1) of dropping a connection without answering.
    #[arg(long, default_value_t = 0.0)]
    pub drop_rate: f64,
    /// Seed for fault injection, for reproducible sessions.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub fn config(args: &EmulatorArgs) -> EmulatorConfig {
    EmulatorConfig {
        rate_limit: args.rate_limit.map(|r| RateLimit::new(r, args.interval)),
        faults: FaultConfig {
            server_error_probability: args.fail_rate,
            drop_probability: args.drop_rate,
            ..FaultConfig::none()
        },
        seed: args.seed,
        ..EmulatorConfig::default()
    }
}

pub async fn run(args: EmulatorArgs) -> Result<()> {
    let addr = SocketAddr::new(args.bind, args.port);
    let emulator = sluice_emulators::start(args.api, addr, config(&args)).await?;
    println!("{}", emulator.connection_info());
    println!("press Ctrl-C to stop");
    tokio::signal::ctrl_c().await?;
    emulator.shutdown().await
}
