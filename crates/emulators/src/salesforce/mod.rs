//! Salesforce REST API emulator (saas-apis.md §1).
//!
//! Endpoints, under `/services/data/vNN.N` unless noted:
//! - `POST /services/oauth2/token` (client_credentials, password, JWT bearer;
//!   see [`auth`]) and `POST /services/Soap/u/{version}` (SOAP `login`)
//! - `GET /limits`
//! - `GET /services/data` (versions), `GET /sobjects`, `GET /sobjects/{o}/describe`
//! - `GET /query?q=SOQL`, `GET /queryAll?q=SOQL` and their `nextRecordsUrl`
//!   pages (the SOQL subset of [`soql`])
//! - `GET|POST /sobjects/{o}`, `GET|PATCH|DELETE /sobjects/{o}/{id}` and
//!   `GET|PATCH|DELETE /sobjects/{o}/{extField}/{value}` (see [`record`])
//! - `POST|PATCH|DELETE /composite/sobjects`, `PATCH /composite/sobjects/{o}/{extField}`
//! - Bulk API 2.0 ingest under `/jobs/ingest` (see [`bulk`]) and query jobs
//!   under `/jobs/query` (see [`bulk_query`])
//!
//! Every call under `/services/data/vNN.N` needs a bearer token (else 401
//! `INVALID_SESSION_ID`), counts against the daily allowance and the rolling-window
//! limit (403 `REQUEST_LIMIT_EXCEEDED` beyond either) and carries
//! `Sforce-Limit-Info: api-usage=N/M`.
//!
//! Choices where the reference leaves the behaviour open (documented here so that
//! connector authors know what they are testing against):
//! - the same external id twice in one collections upsert fails every occurrence with
//!   `DUPLICATE_EXTERNAL_ID`, message `Duplicate external id specified: <value>`;
//! - an external id matching several records fails that record with
//!   `DUPLICATE_EXTERNAL_ID` (collections, Bulk) or answers 300 (single-record upsert);
//! - allOrNone rollbacks answer 200;
//! - each failed record carries exactly one error;
//! - Bulk job creation answers 200; a second CSV upload to a job answers 400
//!   `BULK_API_ERROR`; job state conflicts answer 409 `INVALIDJOBSTATE`;
//! - unique and external id values compare case-insensitively.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, patch, post, put};
use axum::Router;
use parking_lot::Mutex;
use serde_json::{Map, Value};
use tokio::task::JoinHandle;

use crate::config::{ClientCredentials, SalesforceSettings, SalesforceUser};
use crate::handle::{Shared, TokenStatus};
use crate::limits::Admission;
use crate::schema::{FieldSpec, FieldType, ObjectSpec};
use crate::store::{Record, Store};

pub mod auth;
pub(crate) mod bulk;
mod bulk_query;
mod collections;
mod describe;
pub(crate) mod errors;
mod ids;
mod ops;
mod query;
mod record;
pub mod schema_file;
mod soap;
pub(crate) mod soql;

pub use collections::MAX_RECORDS;
pub use errors::{
    INVALID_SESSION_ID, REQUEST_LIMIT_EXCEEDED, REQUEST_LIMIT_MESSAGE, ROLLED_BACK_MESSAGE,
};

/// API versions listed by `GET /services/data`; any `vNN.N` path is served.
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "58.0", "59.0", "60.0", "61.0", "62.0", "63.0", "64.0", "65.0", "66.0",
];

/// The response header carrying daily API usage.
pub const LIMIT_INFO_HEADER: &str = "Sforce-Limit-Info";

/// Salesforce-only state.
#[derive(Debug)]
pub(crate) struct SalesforceState {
    pub clients: Vec<ClientCredentials>,
    pub users: Vec<SalesforceUser>,
    pub expire_tokens_after: Option<u64>,
    /// API calls made with each token, for `expire_tokens_after`.
    pub token_calls: Mutex<HashMap<String, u64>>,
    pub org_id: String,
    pub user_id: String,
    pub bulk_delay: Mutex<Duration>,
    pub bulk_failure: Mutex<Option<String>>,
    pub jobs: Mutex<BTreeMap<String, bulk::BulkJob>>,
    pub tasks: Mutex<Vec<JoinHandle<()>>>,
    pub cursors: Mutex<query::Cursors>,
    pub query_jobs: Mutex<BTreeMap<String, bulk_query::QueryJob>>,
}

impl SalesforceState {
    pub fn new(settings: &SalesforceSettings) -> Self {
        Self {
            clients: settings.clients.clone(),
            users: settings.users.clone(),
            expire_tokens_after: settings.expire_tokens_after,
            token_calls: Mutex::new(HashMap::new()),
            org_id: ids::make_id("00D", 1),
            user_id: ids::make_id("005", 1),
            bulk_delay: Mutex::new(settings.bulk_processing_delay),
            bulk_failure: Mutex::new(settings.bulk_failure.clone()),
            jobs: Mutex::new(BTreeMap::new()),
            tasks: Mutex::new(Vec::new()),
            cursors: Mutex::new(query::Cursors::default()),
            query_jobs: Mutex::new(BTreeMap::new()),
        }
    }
}

/// Declares the standard objects, then the configured schema, and returns the
/// router.
pub(crate) fn setup(shared: &Arc<Shared>) -> anyhow::Result<Router> {
    {
        let mut store = shared.store.lock();
        for spec in standard_objects() {
            store.add(spec);
        }
        schema_file::apply_all(&mut store, &shared.config.salesforce.schema)?;
    }
    Ok(router(shared.clone()))
}

fn router(shared: Arc<Shared>) -> Router {
    let data = "/services/data/{version}";
    let api = Router::new()
        .route(&format!("{data}/sobjects"), get(describe::global))
        .route(&format!("{data}/limits"), get(describe::limits))
        .route(&format!("{data}/limits/"), get(describe::limits))
        .route(&format!("{data}/query"), get(query::query))
        .route(&format!("{data}/query/"), get(query::query))
        .route(&format!("{data}/query/{{locator}}"), get(query::more))
        .route(&format!("{data}/queryAll"), get(query::query_all))
        .route(&format!("{data}/queryAll/"), get(query::query_all))
        .route(&format!("{data}/queryAll/{{locator}}"), get(query::more))
        .route(
            &format!("{data}/sobjects/{{object}}/describe"),
            get(describe::describe),
        )
        .route(
            &format!("{data}/sobjects/{{object}}"),
            get(record::basic_info).post(record::create),
        )
        .route(
            &format!("{data}/sobjects/{{object}}/"),
            get(record::basic_info).post(record::create),
        )
        .route(
            &format!("{data}/sobjects/{{object}}/{{id}}"),
            get(record::retrieve)
                .patch(record::update)
                .delete(record::delete),
        )
        .route(
            &format!("{data}/sobjects/{{object}}/{{field}}/{{value}}"),
            get(record::retrieve_by_external_id)
                .patch(collections::upsert_one)
                .delete(record::delete_by_external_id),
        )
        .route(
            &format!("{data}/composite/sobjects"),
            post(collections::create)
                .patch(collections::update)
                .delete(collections::delete),
        )
        .route(
            &format!("{data}/composite/sobjects/{{object}}/{{field}}"),
            patch(collections::upsert),
        )
        .route(
            &format!("{data}/jobs/query"),
            post(bulk_query::create_job).get(bulk_query::list_jobs),
        )
        .route(
            &format!("{data}/jobs/query/{{job}}"),
            get(bulk_query::get_job)
                .patch(bulk_query::abort_job)
                .delete(bulk_query::delete_job),
        )
        .route(
            &format!("{data}/jobs/query/{{job}}/results"),
            get(bulk_query::results),
        )
        .route(
            &format!("{data}/jobs/ingest"),
            post(bulk::create_job).get(bulk::list_jobs),
        )
        .route(
            &format!("{data}/jobs/ingest/{{job}}"),
            get(bulk::get_job)
                .patch(bulk::patch_job)
                .delete(bulk::delete_job),
        )
        .route(
            &format!("{data}/jobs/ingest/{{job}}/batches"),
            put(bulk::upload),
        )
        .route(
            &format!("{data}/jobs/ingest/{{job}}/batches/"),
            put(bulk::upload),
        );
    let api = bulk::result_routes(api, data)
        .route_layer(middleware::from_fn_with_state(shared.clone(), gate));
    Router::new()
        .route("/services/oauth2/token", post(auth::token))
        .route("/services/Soap/u/{version}", post(soap::soap_login))
        .route("/services/data", get(describe::versions))
        .route("/services/data/", get(describe::versions))
        .merge(api)
        .fallback(|| async { errors::not_found() })
        .with_state(shared)
}

/// `vNN.N` -> NN.N; 0.0 when malformed.
pub(crate) fn api_version_number(version: &str) -> f64 {
    version
        .strip_prefix('v')
        .filter(|v| v.contains('.'))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
}

fn bearer_token(request: &Request) -> Option<String> {
    let value = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("oauth"))
        .then(|| token.trim().to_owned())
}

fn limit_info(shared: &Shared) -> HeaderValue {
    let limiter = shared.limiter.lock();
    let text = format!(
        "api-usage={}/{}",
        limiter.daily_used(),
        limiter.daily_limit()
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("api-usage=0/0"))
}

fn with_limit_info(shared: &Shared, mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(LIMIT_INFO_HEADER, limit_info(shared));
    response
}

/// Version check, authentication, limits and the usage header for every data call.
async fn gate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let version = request.uri().path().split('/').nth(3).unwrap_or_default();
    if api_version_number(version) < 20.0 {
        return errors::not_found();
    }
    let now = Instant::now();
    let status = bearer_token(&request)
        .map(|t| shared.tokens.lock().check(&t, now))
        .unwrap_or(TokenStatus::Unknown);
    let status = match (status, bearer_token(&request)) {
        (TokenStatus::Valid, Some(token)) if used_up(&shared, &token) => TokenStatus::Unknown,
        (status, _) => status,
    };
    if status != TokenStatus::Valid {
        shared.record_unauthorized();
        let response = errors::api_error(
            StatusCode::UNAUTHORIZED,
            INVALID_SESSION_ID,
            errors::INVALID_SESSION_MESSAGE,
        );
        return with_limit_info(&shared, response);
    }
    let admission = shared.limiter.lock().admit(now);
    if admission != Admission::Allowed {
        shared.record_throttled();
        let response = errors::api_error(
            StatusCode::FORBIDDEN,
            REQUEST_LIMIT_EXCEEDED,
            REQUEST_LIMIT_MESSAGE,
        );
        return with_limit_info(&shared, response);
    }
    if let Some(path) = request.extensions().get::<MatchedPath>() {
        shared.record_endpoint(request.method().as_str(), path.as_str());
    }
    let response = next.run(request).await;
    with_limit_info(&shared, response)
}

/// Counts a call made with `token`; true once it has made more calls than
/// `expire_tokens_after` allows.
fn used_up(shared: &Shared, token: &str) -> bool {
    let Some(allowed) = shared.salesforce.expire_tokens_after else {
        return false;
    };
    let mut calls = shared.salesforce.token_calls.lock();
    let made = calls.entry(token.to_owned()).or_default();
    *made += 1;
    *made > allowed
}

/// Adds system fields and a key prefix to a user-declared object.
pub(crate) fn prepare_object(mut spec: ObjectSpec, store: &Store) -> anyhow::Result<ObjectSpec> {
    if !spec.name.ends_with("__c") {
        anyhow::bail!(
            "custom object {} must have an API name ending in __c, as in Salesforce",
            spec.name
        );
    }
    spec.custom = true;
    let customs = store.specs().iter().filter(|s| s.custom).count();
    spec.key_prefix = ids::custom_prefix(customs);
    Ok(with_system_fields(spec))
}

fn with_system_fields(mut spec: ObjectSpec) -> ObjectSpec {
    if spec.find_field("Id").is_none() {
        spec.fields.insert(
            0,
            FieldSpec::new("Id", FieldType::Id)
                .label("Record ID")
                .read_only(),
        );
    }
    for (name, label) in [
        ("CreatedDate", "Created Date"),
        ("LastModifiedDate", "Last Modified Date"),
    ] {
        if spec.find_field(name).is_none() {
            spec.fields.push(
                FieldSpec::new(name, FieldType::DateTime)
                    .label(label)
                    .read_only(),
            );
        }
    }
    spec
}

fn standard(name: &str, prefix: &str, fields: Vec<FieldSpec>) -> ObjectSpec {
    let mut spec = ObjectSpec::new(name);
    spec.custom = false;
    spec.key_prefix = prefix.to_owned();
    spec.fields = fields;
    with_system_fields(spec)
}

/// Account and Contact with a realistic subset of their fields plus an
/// `External_Id__c` external id, and Customer keyed by Email. As in
/// Salesforce, Account.Name and Contact.LastName are required.
fn standard_objects() -> Vec<ObjectSpec> {
    use FieldType as T;
    let account = standard(
        "Account",
        "001",
        vec![
            FieldSpec::new("Name", T::String)
                .label("Account Name")
                .required(),
            FieldSpec::new("AccountNumber", T::String)
                .label("Account Number")
                .max_length(40),
            FieldSpec::new("Industry", T::Picklist),
            FieldSpec::new("Phone", T::Phone).max_length(40),
            FieldSpec::new("Website", T::Url),
            FieldSpec::new("AnnualRevenue", T::Currency)
                .label("Annual Revenue")
                .digits(18, 0),
            FieldSpec::new("NumberOfEmployees", T::Int).label("Employees"),
            FieldSpec::new("Description", T::TextArea).label("Account Description"),
            FieldSpec::new("External_Id__c", T::String)
                .label("External Id")
                .external_id(),
        ],
    );
    let contact = standard(
        "Contact",
        "003",
        vec![
            FieldSpec::new("FirstName", T::String)
                .label("First Name")
                .max_length(40),
            FieldSpec::new("LastName", T::String)
                .label("Last Name")
                .max_length(80)
                .required(),
            FieldSpec::new("Email", T::Email),
            FieldSpec::new("Phone", T::Phone)
                .label("Business Phone")
                .max_length(40),
            FieldSpec::new("Title", T::String).max_length(128),
            FieldSpec::new("AccountId", T::Reference)
                .label("Account ID")
                .reference_to(["Account"]),
            FieldSpec::new("Birthdate", T::Date),
            FieldSpec::new("HasOptedOutOfEmail", T::Boolean).label("Email Opt Out"),
            FieldSpec::new("External_Id__c", T::String)
                .label("External Id")
                .external_id(),
        ],
    );
    // The customer-lifetime-value story's object (the `Customer` standard object,
    // key prefix 0o6), with Email usable as the upsert key as that story has it.
    let customer = standard(
        "Customer",
        "0o6",
        vec![
            FieldSpec::new("Name", T::String).label("Customer Name"),
            FieldSpec::new("Email", T::Email).external_id(),
            FieldSpec::new("TotalLifeTimeValue", T::Double).label("Total Lifetime Value"),
        ],
    );
    vec![account, contact, customer]
}

fn salesforce_datetime(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3f%z").to_string()
}

/// A stored record as Salesforce returns it: `Id`, the fields, and timestamps.
pub(crate) fn render_record(spec: &ObjectSpec, record: &Record) -> Value {
    let mut map = Map::new();
    map.insert("Id".to_owned(), Value::String(record.id.clone()));
    for field in &spec.fields {
        if let Some(v) = record.fields.get(&field.name) {
            map.insert(field.name.clone(), v.clone());
        }
    }
    map.insert(
        "CreatedDate".to_owned(),
        Value::String(salesforce_datetime(record.created_at)),
    );
    map.insert(
        "LastModifiedDate".to_owned(),
        Value::String(salesforce_datetime(record.updated_at)),
    );
    Value::Object(map)
}

/// What the CLI prints so a user can point a connector at the emulator.
pub(crate) fn connection_info(shared: &Shared) -> String {
    let clients: Vec<String> = shared
        .salesforce
        .clients
        .iter()
        .map(|c| {
            format!(
                "client_id={} client_secret={}",
                c.client_id, c.client_secret
            )
        })
        .collect();
    let users: Vec<String> = shared
        .salesforce
        .users
        .iter()
        .map(|u| {
            format!(
                "username={} password={} security_token={}",
                u.username, u.password, u.security_token
            )
        })
        .collect();
    format!(
        "Salesforce emulator at {base}\n  token endpoint: {base}/services/oauth2/token (grant_type=client_credentials, password or {jwt})\n  SOAP login: {base}/services/Soap/u/{version}\n  credentials: {}\n  users: {}\n  objects: {}",
        clients.join("; "),
        users.join("; "),
        shared.store.lock().specs().iter().map(|s| s.name.clone()).collect::<Vec<_>>().join(", "),
        base = shared.base_url,
        jwt = auth::JWT_BEARER_GRANT,
        version = SUPPORTED_VERSIONS.last().copied().unwrap_or("66.0"),
    )
}
