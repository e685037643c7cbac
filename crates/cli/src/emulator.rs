//! `sluice emulator`: local Salesforce, HubSpot and Snowflake SQL APIs for
//! developing a sync offline, with the same throttling and error signals as
//! the real ones and optional fault injection.

use anyhow::{Context, Result};
use clap::Args;
use sluice_emulators::{
    EmulatorConfig, EmulatorKind, FaultConfig, RateLimit, SnowflakeSettings, SnowflakeUser,
};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct EmulatorArgs {
    /// Which API: salesforce, hubspot or snowflake.
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
    /// Snowflake: the PostgreSQL database statements run in (created if missing).
    #[arg(long, default_value = sluice_emulators::DEFAULT_SNOWFLAKE_POSTGRES_URL)]
    pub postgres: String,
    /// Snowflake: the account name JWTs must carry.
    #[arg(long, default_value = sluice_emulators::DEFAULT_SNOWFLAKE_ACCOUNT)]
    pub account: String,
    /// Snowflake: the user a --public-key belongs to.
    #[arg(long, default_value = sluice_emulators::DEFAULT_SNOWFLAKE_USER)]
    pub user: String,
    /// Snowflake: a PEM public key (`BEGIN PUBLIC KEY`) registered for --user,
    /// for key-pair JWT auth (repeatable).
    #[arg(long)]
    pub public_key: Vec<std::path::PathBuf>,
    /// Snowflake: rows per result partition.
    #[arg(long, default_value_t = 10_000)]
    pub partition_rows: usize,
}

pub fn config(args: &EmulatorArgs) -> Result<EmulatorConfig> {
    let mut snowflake = SnowflakeSettings {
        postgres_url: args.postgres.clone(),
        account: args.account.to_ascii_uppercase(),
        partition_rows: args.partition_rows.max(1),
        ..SnowflakeSettings::default()
    };
    let mut keys = Vec::new();
    for path in &args.public_key {
        keys.push(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading --public-key {}", path.display()))?,
        );
    }
    match snowflake
        .users
        .iter_mut()
        .find(|u| u.name.eq_ignore_ascii_case(&args.user))
    {
        Some(user) => user.public_keys.extend(keys),
        None => snowflake.users.push(SnowflakeUser {
            name: args.user.to_ascii_uppercase(),
            public_keys: keys,
            roles: vec!["SYSADMIN".into(), "PUBLIC".into()],
        }),
    }
    Ok(EmulatorConfig {
        snowflake,
        rate_limit: args.rate_limit.map(|r| RateLimit::new(r, args.interval)),
        faults: FaultConfig {
            server_error_probability: args.fail_rate,
            drop_probability: args.drop_rate,
            ..FaultConfig::none()
        },
        seed: args.seed,
        ..EmulatorConfig::default()
    })
}

pub async fn run(args: EmulatorArgs) -> Result<()> {
    let addr = SocketAddr::new(args.bind, args.port);
    let emulator = sluice_emulators::start(args.api, addr, config(&args)?).await?;
    println!("{}", emulator.connection_info());
    println!("press Ctrl-C to stop");
    tokio::signal::ctrl_c().await?;
    emulator.shutdown().await
}
