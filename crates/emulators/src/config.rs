//! Configuration knobs shared by the emulators, plus the per-API specifics.
//!
//! Every knob has a default that behaves like a healthy, unthrottled API so that
//! `EmulatorConfig::default()` is what `sluice demo` wants; tests and benchmarks
//! turn individual knobs on.

use std::time::Duration;

use crate::schema::ObjectSpec;

/// Client id accepted by the Salesforce token endpoint when no clients are configured.
pub const DEFAULT_CLIENT_ID: &str = "sluice-emulator-client";
/// Client secret paired with [`DEFAULT_CLIENT_ID`].
pub const DEFAULT_CLIENT_SECRET: &str = "sluice-emulator-secret";
/// Username accepted by the Salesforce password grant and SOAP login by default.
pub const DEFAULT_USERNAME: &str = "user@sluice.emulator";
/// Password of [`DEFAULT_USERNAME`].
pub const DEFAULT_PASSWORD: &str = "sluice-emulator-password";
/// Security token of [`DEFAULT_USERNAME`] (appended to the password, as
/// Salesforce logins from untrusted networks require; the emulator also
/// accepts the password alone).
pub const DEFAULT_SECURITY_TOKEN: &str = "sluiceToken";
/// Private-app token accepted by the HubSpot emulator when no tokens are configured.
pub const DEFAULT_HUBSPOT_TOKEN: &str = "pat-na1-sluice-emulator-token";

/// A request budget: at most `requests` accepted requests in any rolling window of
/// `interval` (HubSpot's `TEN_SECONDLY_ROLLING` is 190 per 10 s, for instance).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per window.
    pub requests: u32,
    /// Length of the rolling window.
    pub interval: Duration,
}

impl RateLimit {
    /// A limit of `requests` per `interval`.
    pub fn new(requests: u32, interval: Duration) -> Self {
        Self { requests, interval }
    }
}

/// Fault injection. Probabilities are in `[0, 1]` and are drawn, in this order, for
/// every request from one random generator seeded with [`EmulatorConfig::seed`]:
/// dropped connection, then 5xx, then slow response. A faulted request (drop or 5xx)
/// never reaches the API logic, so nothing is written.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultConfig {
    /// Probability of answering 500 or 503 (chosen half and half) instead of serving.
    pub server_error_probability: f64,
    /// Probability of delaying the response by `slow_delay` before serving it normally.
    pub slow_probability: f64,
    /// How long a slow response is held.
    pub slow_delay: Duration,
    /// Probability of closing the socket after reading the request, without a response.
    pub drop_probability: f64,
}

impl FaultConfig {
    /// No faults at all.
    pub fn none() -> Self {
        Self::default()
    }

    /// True if any fault can fire.
    pub fn is_active(&self) -> bool {
        self.server_error_probability > 0.0
            || self.slow_probability > 0.0
            || self.drop_probability > 0.0
    }
}

/// One OAuth client (connected app) known to the Salesforce emulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    /// `client_id` (consumer key); also the `iss` a JWT-bearer assertion must carry.
    pub client_id: String,
    /// `client_secret` (consumer secret) for the client-credentials grant.
    pub client_secret: String,
}

/// One Salesforce user, for the OAuth password grant and SOAP login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalesforceUser {
    /// Login name (compared case-insensitively, as Salesforce does).
    pub username: String,
    /// Password.
    pub password: String,
    /// Security token; a login may send `password + token` or the password alone.
    pub security_token: String,
}

/// Salesforce-only knobs.
#[derive(Debug, Clone)]
pub struct SalesforceSettings {
    /// The `M` in `Sforce-Limit-Info: api-usage=N/M`; calls beyond it get 403
    /// `REQUEST_LIMIT_EXCEEDED`.
    pub daily_api_limit: u64,
    /// Delay before a Bulk 2.0 job moves UploadComplete -> InProgress, and again
    /// before it moves InProgress -> JobComplete/Failed.
    pub bulk_processing_delay: Duration,
    /// Connected apps accepted by the token endpoint.
    pub clients: Vec<ClientCredentials>,
    /// Users accepted by the password grant and SOAP login.
    pub users: Vec<SalesforceUser>,
    /// When set, each access token answers 401 `INVALID_SESSION_ID` after this
    /// many API calls (on top of [`EmulatorConfig::token_lifetime`]).
    pub expire_tokens_after: Option<u64>,
    /// When set, every Bulk 2.0 job ends `Failed` with this `errorMessage`.
    pub bulk_failure: Option<String>,
    /// Custom objects to declare at start, and fields to add to standard
    /// objects (an entry named like one, e.g. `Contact`); see
    /// [`crate::salesforce::schema_file`].
    pub schema: Vec<ObjectSpec>,
}

impl Default for SalesforceSettings {
    fn default() -> Self {
        Self {
            daily_api_limit: 100_000,
            bulk_processing_delay: Duration::from_millis(200),
            clients: vec![ClientCredentials {
                client_id: DEFAULT_CLIENT_ID.to_owned(),
                client_secret: DEFAULT_CLIENT_SECRET.to_owned(),
            }],
            users: vec![SalesforceUser {
                username: DEFAULT_USERNAME.to_owned(),
                password: DEFAULT_PASSWORD.to_owned(),
                security_token: DEFAULT_SECURITY_TOKEN.to_owned(),
            }],
            expire_tokens_after: None,
            bulk_failure: None,
            schema: Vec::new(),
        }
    }
}

/// HubSpot-only knobs.
#[derive(Debug, Clone)]
pub struct HubSpotSettings {
    /// Private-app tokens accepted as `Authorization: Bearer <token>`.
    pub tokens: Vec<String>,
    /// Daily request allowance (`X-HubSpot-RateLimit-Daily`); 429 `DAILY` beyond it.
    pub daily_limit: u64,
}

impl Default for HubSpotSettings {
    fn default() -> Self {
        Self {
            tokens: vec![DEFAULT_HUBSPOT_TOKEN.to_owned()],
            daily_limit: 1_000_000,
        }
    }
}

/// OAuth access token accepted by the Snowflake emulator when none are configured.
pub const DEFAULT_SNOWFLAKE_TOKEN: &str = "sluice-emulator-snowflake-token";
/// The account name the Snowflake emulator answers as (JWT `iss`/`sub` prefix).
pub const DEFAULT_SNOWFLAKE_ACCOUNT: &str = "SLUICE";
/// The user of [`DEFAULT_SNOWFLAKE_TOKEN`].
pub const DEFAULT_SNOWFLAKE_USER: &str = "SLUICE";
/// The PostgreSQL database a Snowflake emulator uses unless told otherwise.
pub const DEFAULT_SNOWFLAKE_POSTGRES_URL: &str =
    "postgres://postgres@127.0.0.1:5432/sluice_snowflake";

/// One Snowflake user: its registered RSA public keys (PEM, `BEGIN PUBLIC KEY`) for
/// key-pair JWTs, and the roles granted to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnowflakeUser {
    /// User name, compared case-insensitively (Snowflake stores it uppercase).
    pub name: String,
    /// Registered public keys (Snowflake allows two, `RSA_PUBLIC_KEY` and `_2`).
    pub public_keys: Vec<String>,
    /// Roles granted; a request naming another role is refused.
    pub roles: Vec<String>,
}

/// Snowflake-only knobs.
#[derive(Debug, Clone)]
pub struct SnowflakeSettings {
    /// The PostgreSQL database statements run in (`postgres://user@host:port/db`);
    /// created at start if missing. One per emulator instance.
    pub postgres_url: String,
    /// The account identifier (the `ACCOUNT` of `ACCOUNT.USER` in JWT claims).
    pub account: String,
    /// Known users.
    pub users: Vec<SnowflakeUser>,
    /// OAuth access tokens and the user each belongs to.
    pub oauth_tokens: Vec<(String, String)>,
    /// Warehouses that exist; a query naming another has no warehouse (000606).
    pub warehouses: Vec<String>,
    /// Rows per result partition.
    pub partition_rows: usize,
    /// How long a statement submitted without `async=true` is waited for before
    /// the answer is 202 (Snowflake: 45 s).
    pub sync_wait: Duration,
    /// Extra time every statement takes before it runs (to force the 202 flow).
    pub execution_delay: Duration,
}

impl Default for SnowflakeSettings {
    fn default() -> Self {
        Self {
            postgres_url: DEFAULT_SNOWFLAKE_POSTGRES_URL.to_owned(),
            account: DEFAULT_SNOWFLAKE_ACCOUNT.to_owned(),
            users: vec![SnowflakeUser {
                name: DEFAULT_SNOWFLAKE_USER.to_owned(),
                public_keys: Vec::new(),
                roles: vec!["SYSADMIN".into(), "PUBLIC".into()],
            }],
            oauth_tokens: vec![(
                DEFAULT_SNOWFLAKE_TOKEN.to_owned(),
                DEFAULT_SNOWFLAKE_USER.to_owned(),
            )],
            warehouses: vec!["COMPUTE_WH".into()],
            partition_rows: 10_000,
            sync_wait: Duration::from_secs(45),
            execution_delay: Duration::ZERO,
        }
    }
}

/// The project the BigQuery emulator answers as.
pub const DEFAULT_BIGQUERY_PROJECT: &str = "sluice-emulator";
/// The PostgreSQL database a BigQuery emulator uses unless told otherwise.
pub const DEFAULT_BIGQUERY_POSTGRES_URL: &str =
    "postgres://postgres@127.0.0.1:5432/sluice_bigquery";
/// The service account of the emulator's own test key.
pub const DEFAULT_BIGQUERY_SERVICE_ACCOUNT: &str = "sluice@sluice-emulator.iam.gserviceaccount.com";

/// A service account the BigQuery emulator's token endpoint knows: JWT grants
/// with `iss = email` must verify with `public_key` (PEM, `BEGIN PUBLIC KEY`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    pub email: String,
    pub public_key: String,
}

/// BigQuery-only knobs.
#[derive(Debug, Clone)]
pub struct BigQuerySettings {
    /// The PostgreSQL database queries run in (a dataset is a PostgreSQL
    /// schema); created at start if missing. One per emulator instance.
    pub postgres_url: String,
    /// The one project that exists; jobs in any other are refused (accessDenied).
    pub project: String,
    /// The location jobs run in (`jobReference.location`).
    pub location: String,
    /// Service accounts whose signed JWTs the token endpoint exchanges.
    pub service_accounts: Vec<ServiceAccount>,
    /// Accept requests without `Authorization` (what the vendor clients send
    /// with `AnonymousCredentials`). Off by default.
    pub allow_anonymous: bool,
    /// The most rows one page holds when the client asks for no fewer.
    pub max_page_rows: usize,
    /// Extra time every query job takes before it runs (to force `jobComplete: false`).
    pub execution_delay: Duration,
    /// The longest one jobs.query or getQueryResults call holds for a job,
    /// whatever its `timeoutMs` asks (BigQuery: about 200 s).
    pub max_wait: Duration,
}

impl Default for BigQuerySettings {
    fn default() -> Self {
        Self {
            postgres_url: DEFAULT_BIGQUERY_POSTGRES_URL.to_owned(),
            project: DEFAULT_BIGQUERY_PROJECT.to_owned(),
            location: "US".to_owned(),
            service_accounts: Vec::new(),
            allow_anonymous: false,
            max_page_rows: 100_000,
            execution_delay: Duration::ZERO,
            max_wait: Duration::from_secs(200),
        }
    }
}

/// Personal access token the Databricks emulator accepts when none are configured.
pub const DEFAULT_DATABRICKS_TOKEN: &str = "dapi-sluice-emulator";
/// The OAuth M2M (service principal) client the Databricks emulator knows by default.
pub const DEFAULT_DATABRICKS_CLIENT_ID: &str = "sluice-service-principal";
/// Its secret.
pub const DEFAULT_DATABRICKS_CLIENT_SECRET: &str = "dose-sluice-emulator-secret";
/// The SQL warehouse id the Databricks emulator has by default.
pub const DEFAULT_DATABRICKS_WAREHOUSE: &str = "sluice0warehouse";
/// The PostgreSQL database a Databricks emulator uses unless told otherwise.
pub const DEFAULT_DATABRICKS_POSTGRES_URL: &str =
    "postgres://postgres@127.0.0.1:5432/sluice_databricks";

/// Databricks-only knobs (SQL Statement Execution API 2.0).
#[derive(Debug, Clone)]
pub struct DatabricksSettings {
    /// The PostgreSQL database statements run in; created at start if missing.
    pub postgres_url: String,
    /// Personal access tokens accepted as `Authorization: Bearer`.
    pub tokens: Vec<String>,
    /// Service principals that may get OAuth M2M tokens at `/oidc/v1/token`.
    pub oauth_clients: Vec<ClientCredentials>,
    /// How long an OAuth M2M access token lives.
    pub oauth_token_lifetime: Duration,
    /// SQL warehouse ids that exist; any other answers 404 NOT_FOUND.
    pub warehouses: Vec<String>,
    /// Rows per result chunk.
    pub chunk_rows: usize,
    /// The INLINE disposition's result cap (Databricks: 25 MiB); a larger
    /// result fails the statement.
    pub inline_limit_bytes: usize,
    /// How long an EXTERNAL_LINKS URL works (Databricks: up to 15 minutes).
    pub link_lifetime: Duration,
    /// Extra time every statement takes before it runs (to force polling).
    pub execution_delay: Duration,
}

impl Default for DatabricksSettings {
    fn default() -> Self {
        Self {
            postgres_url: DEFAULT_DATABRICKS_POSTGRES_URL.to_owned(),
            tokens: vec![DEFAULT_DATABRICKS_TOKEN.to_owned()],
            oauth_clients: vec![ClientCredentials {
                client_id: DEFAULT_DATABRICKS_CLIENT_ID.to_owned(),
                client_secret: DEFAULT_DATABRICKS_CLIENT_SECRET.to_owned(),
            }],
            oauth_token_lifetime: Duration::from_secs(3600),
            warehouses: vec![DEFAULT_DATABRICKS_WAREHOUSE.to_owned()],
            chunk_rows: 10_000,
            inline_limit_bytes: 25 * 1024 * 1024,
            link_lifetime: Duration::from_secs(15 * 60),
            execution_delay: Duration::ZERO,
        }
    }
}

/// Everything an emulator needs at start; most of it can be changed at run time
/// through [`crate::EmulatorHandle`].
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Short-window request budget; `None` means unthrottled (daily limits still apply).
    pub rate_limit: Option<RateLimit>,
    /// Lifetime of Salesforce access tokens from the moment they are issued.
    pub token_lifetime: Duration,
    /// Fault injection probabilities.
    pub faults: FaultConfig,
    /// Added before every response (faulted ones too), to develop against a
    /// slow API.
    pub latency: Duration,
    /// Seed for every random choice (faults, tokens, correlation ids).
    pub seed: u64,
    /// Salesforce specifics.
    pub salesforce: SalesforceSettings,
    /// HubSpot specifics.
    pub hubspot: HubSpotSettings,
    /// Snowflake specifics.
    pub snowflake: SnowflakeSettings,
    /// BigQuery specifics.
    pub bigquery: BigQuerySettings,
    /// Databricks specifics.
    pub databricks: DatabricksSettings,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            rate_limit: None,
            token_lifetime: Duration::from_secs(2 * 60 * 60),
            faults: FaultConfig::none(),
            latency: Duration::ZERO,
            seed: 0x51_1CE,
            salesforce: SalesforceSettings::default(),
            hubspot: HubSpotSettings::default(),
            snowflake: SnowflakeSettings::default(),
            bigquery: BigQuerySettings::default(),
            databricks: DatabricksSettings::default(),
        }
    }
}
