//! `sluice emulator`: local Salesforce, HubSpot, Snowflake SQL, BigQuery and
//! Databricks SQL Statement Execution APIs for
//! developing a sync offline, with the same throttling and error signals as
//! the real ones and optional fault injection.

use anyhow::{Context, Result};
use clap::Args;
use sluice_emulators::{
    BigQuerySettings, DatabricksSettings, EmulatorConfig, EmulatorKind, FaultConfig,
    HubSpotSettings, RateLimit, SalesforceSettings, ServiceAccount, SnowflakeSettings,
    SnowflakeUser,
};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct EmulatorArgs {
    /// Which API: salesforce, hubspot, snowflake, bigquery or databricks.
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
    /// Snowflake, BigQuery and Databricks: the PostgreSQL database statements
    /// run in (created if missing; default postgres://postgres@127.0.0.1:5432/
    /// sluice_snowflake, /sluice_bigquery or /sluice_databricks).
    #[arg(long)]
    pub postgres: Option<String>,
    /// BigQuery: the project that exists (jobs elsewhere are refused).
    #[arg(long, default_value = sluice_emulators::DEFAULT_BIGQUERY_PROJECT)]
    pub project: String,
    /// BigQuery: a service account the token endpoint accepts, as
    /// EMAIL=PUBLIC_KEY.pem (the key's public half, `BEGIN PUBLIC KEY`; repeatable).
    #[arg(long, value_name = "EMAIL=PEM")]
    pub service_account: Vec<String>,
    /// BigQuery: accept requests without credentials (what vendor clients send
    /// with AnonymousCredentials).
    #[arg(long)]
    pub allow_anonymous: bool,
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
    /// Databricks: rows per result chunk.
    #[arg(long, default_value_t = 10_000)]
    pub chunk_rows: usize,
    /// Salesforce: how long an access token lives, e.g. 30s or 2h. After it,
    /// calls with the token answer 401 INVALID_SESSION_ID and a client must
    /// log in again: set it short to exercise a connector's re-login.
    #[arg(long, default_value = "2h", value_parser = sluice_runtime::limits::parse_duration)]
    pub token_lifetime: Duration,
    /// Salesforce: each access token answers 401 INVALID_SESSION_ID after
    /// this many API calls, whatever its age (deterministic re-login tests).
    #[arg(long, value_name = "N")]
    pub expire_tokens_after: Option<u64>,
    /// The daily call allowance (Salesforce `Sforce-Limit-Info: api-usage=N/M`
    /// and /limits DailyApiRequests, then 403 REQUEST_LIMIT_EXCEEDED; HubSpot
    /// X-HubSpot-RateLimit-Daily, then 429 DAILY). Set it low to see what a
    /// sync does when the day's quota runs out.
    #[arg(long, value_name = "N")]
    pub daily_limit: Option<u64>,
    /// Delay every response by this long, e.g. 300ms, to develop against a
    /// slow API (timeouts, concurrency).
    #[arg(long, default_value = "0s", value_parser = sluice_runtime::limits::parse_duration)]
    pub latency: Duration,
    /// Salesforce: every Bulk API 2.0 job ends in state Failed (every row in
    /// unprocessedrecords), to exercise a connector's job-failure handling.
    #[arg(long)]
    pub fail_bulk_jobs: bool,
    /// Salesforce: custom objects and fields to declare at start, from a YAML
    /// or JSON file, e.g.
    /// `objects: {Customer__c: {fields: {External_Id__c: {type: string,
    /// external_id: true}, LTV__c: {type: currency}}}}`. A standard object's
    /// name (Contact) adds the fields to it. See crates/emulators/README.md.
    #[arg(long, value_name = "FILE")]
    pub schema: Option<std::path::PathBuf>,
}

/// The `errorMessage` of a job failed by `--fail-bulk-jobs`.
const FORCED_BULK_FAILURE: &str = "InvalidBatch : the emulator was started with --fail-bulk-jobs";

fn salesforce_settings(args: &EmulatorArgs) -> Result<SalesforceSettings> {
    let defaults = SalesforceSettings::default();
    let schema = match &args.schema {
        Some(path) => sluice_emulators::salesforce::schema_file::load(path)
            .with_context(|| format!("--schema {}", path.display()))?,
        None => Vec::new(),
    };
    Ok(SalesforceSettings {
        daily_api_limit: args.daily_limit.unwrap_or(defaults.daily_api_limit),
        expire_tokens_after: args.expire_tokens_after,
        bulk_failure: args.fail_bulk_jobs.then(|| FORCED_BULK_FAILURE.to_owned()),
        schema,
        ..defaults
    })
}

fn hubspot_settings(args: &EmulatorArgs) -> HubSpotSettings {
    let defaults = HubSpotSettings::default();
    HubSpotSettings {
        daily_limit: args.daily_limit.unwrap_or(defaults.daily_limit),
        ..defaults
    }
}

fn bigquery_settings(args: &EmulatorArgs) -> Result<BigQuerySettings> {
    let mut service_accounts = Vec::new();
    for entry in &args.service_account {
        let (email, path) = entry.split_once('=').with_context(|| {
            format!("--service-account {entry:?} is not EMAIL=PUBLIC_KEY_PEM_FILE")
        })?;
        let public_key = std::fs::read_to_string(path)
            .with_context(|| format!("reading --service-account key {path}"))?;
        service_accounts.push(ServiceAccount {
            email: email.to_owned(),
            public_key,
        });
    }
    Ok(BigQuerySettings {
        postgres_url: args
            .postgres
            .clone()
            .unwrap_or_else(|| sluice_emulators::DEFAULT_BIGQUERY_POSTGRES_URL.to_owned()),
        project: args.project.clone(),
        service_accounts,
        allow_anonymous: args.allow_anonymous,
        ..BigQuerySettings::default()
    })
}

fn databricks_settings(args: &EmulatorArgs) -> DatabricksSettings {
    let defaults = DatabricksSettings::default();
    DatabricksSettings {
        postgres_url: args
            .postgres
            .clone()
            .unwrap_or_else(|| defaults.postgres_url.clone()),
        chunk_rows: args.chunk_rows.max(1),
        ..defaults
    }
}

pub fn config(args: &EmulatorArgs) -> Result<EmulatorConfig> {
    let mut snowflake = SnowflakeSettings {
        postgres_url: args
            .postgres
            .clone()
            .unwrap_or_else(|| sluice_emulators::DEFAULT_SNOWFLAKE_POSTGRES_URL.to_owned()),
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
        bigquery: bigquery_settings(args)?,
        databricks: databricks_settings(args),
        salesforce: salesforce_settings(args)?,
        hubspot: hubspot_settings(args),
        token_lifetime: args.token_lifetime,
        latency: args.latency,
        rate_limit: args.rate_limit.map(|r| RateLimit::new(r, args.interval)),
        faults: FaultConfig {
            server_error_probability: args.fail_rate,
            drop_probability: args.drop_rate,
            ..FaultConfig::none()
        },
        seed: args.seed,
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
