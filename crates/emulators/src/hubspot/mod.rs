//! HubSpot CRM v3 emulator (saas-apis.md §2).
//!
//! Endpoints:
//! - `POST /crm/v3/objects/{type}/batch/{create|update|upsert|read|archive}`
//! - `POST /crm/v3/objects/{type}` (create), `GET|PATCH|DELETE /crm/v3/objects/{type}/{id}`
//!   (`idProperty`, `properties`, `associations`, `archived`; see [`objects`])
//! - `GET /crm/v3/objects/{type}` (list, paged by a record-id cursor)
//! - `POST /crm/v3/objects/{type}/search` (see [`search`])
//! - `GET|POST /crm/v3/properties/{type}`, `GET|PATCH|DELETE /crm/v3/properties/{type}/{name}`
//! - v4 associations (see [`associations`])
//!
//! `{type}` is `contacts` (`0-1`), `companies` (`0-2`), `deals` (`0-3`) or a declared
//! custom object (by name or its `2-N` id). Every call needs `Authorization: Bearer
//! <private-app token>`; every answer, 401 aside, carries the five
//! `X-HubSpot-RateLimit-*` headers. The rolling window is HubSpot's private-app
//! default (190 per 10 s) unless a rate limit is configured; beyond it, or beyond
//! the daily limit, the answer is 429 with `policyName` and `Retry-After`.
//!
//! Choices where the reference leaves the behaviour open:
//! - batch/create with an `objectWriteTraceId` on every input answers 207 when some
//!   inputs fail (the valid ones are written); every other validation failure in a
//!   batch (and any in update/upsert) fails the whole request with 400 and writes nothing;
//! - the 400 lists every invalid property of every input (input order, then property
//!   name order) in `errors[]` and in the
//!   message `Property values were not valid: [...]`, with codes `PROPERTY_DOESNT_EXIST`,
//!   `INVALID_EMAIL`, `INVALID_OPTION`, `READ_ONLY_VALUE`, `INVALID_NUMBER`,
//!   `INVALID_BOOLEAN`, `INVALID_DATE`, `REQUIRED_PROPERTY`;
//! - more than 100 inputs: 400 `Batch size limit exceeded: N inputs were provided, but at most 100 are allowed.`;
//! - the same id twice in an update/upsert/read batch: 400 `Duplicate IDs found in batch input: [..]. IDs must be unique`;
//! - a unique value already held by another record: 409 `CONFLICT`, `<Label> already exists. Existing ID: <id>`;
//! - update/read of ids that do not exist: 207 with an `OBJECT_NOT_FOUND` error listing them;
//! - unknown object type: 400 `Unable to infer object type from: <type>`;
//! - `DELETE /crm/v3/objects/{type}/{id}` of a record that is not there: 204, as
//!   archiving is idempotent; archiving frees the record's unique values;
//! - list `limit` outside 1..=100, or an `after` that is not a record id: 400.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::Router;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use crate::config::RateLimit;
use crate::handle::{Shared, TokenEntry, TokenStatus};
use crate::limits::Admission;
use crate::schema::{FieldSpec, FieldType, ObjectSpec};
use crate::store::{Record, Store};

mod associations;
mod batch;
pub(crate) mod errors;
mod objects;
mod properties;
mod search;
mod state;

pub use batch::MAX_BATCH_INPUTS;
pub use errors::AUTH_NOT_FOUND_MESSAGE;
pub use objects::MAX_PAGE_LIMIT;
pub use search::{MAX_SEARCH_LIMIT, MAX_SEARCH_RESULTS};
pub(crate) use state::HubSpotState;

/// HubSpot's rolling-window budget for a private app (Professional and
/// Enterprise: 190 requests per 10 s), used when no rate limit is configured.
pub const DEFAULT_RATE_LIMIT: RateLimit = RateLimit {
    requests: 190,
    interval: Duration::from_secs(10),
};

/// Declares contacts and companies, registers the configured tokens, builds the router.
pub(crate) fn setup(shared: &Arc<Shared>) -> anyhow::Result<Router> {
    {
        let mut store = shared.store.lock();
        for spec in standard_objects() {
            store.add(spec);
        }
    }
    for token in &shared.config.hubspot.tokens {
        add_static_token(shared, token);
    }
    let api = Router::new()
        .route("/crm/v3/objects/{object}/batch/create", post(batch::create))
        .route("/crm/v3/objects/{object}/batch/update", post(batch::update))
        .route("/crm/v3/objects/{object}/batch/upsert", post(batch::upsert))
        .route("/crm/v3/objects/{object}/batch/read", post(batch::read))
        .route(
            "/crm/v3/objects/{object}/batch/archive",
            post(batch::archive),
        )
        .route("/crm/v3/objects/{object}/search", post(search::search))
        .route(
            "/crm/v3/objects/{object}",
            get(objects::list).post(objects::create),
        )
        .route(
            "/crm/v3/objects/{object}/{id}",
            get(objects::get_one)
                .patch(objects::update)
                .delete(objects::archive),
        )
        .route(
            "/crm/v3/properties/{object}",
            get(properties::list).post(properties::create),
        )
        .route(
            "/crm/v3/properties/{object}/{name}",
            get(properties::get_one)
                .patch(properties::update)
                .delete(properties::archive),
        )
        .route(
            "/crm/v4/objects/{object}/{id}/associations/default/{to}/{to_id}",
            put(associations::put_default),
        )
        .route(
            "/crm/v4/objects/{object}/{id}/associations/{to}/{to_id}",
            put(associations::put_labelled).delete(associations::delete_pair),
        )
        .route(
            "/crm/v4/objects/{object}/{id}/associations/{to}",
            get(associations::list),
        )
        .route(
            "/crm/v4/associations/{object}/{to}/batch/associate/default",
            post(associations::batch_default),
        )
        .route(
            "/crm/v4/associations/{object}/{to}/batch/create",
            post(associations::batch_create),
        )
        .route(
            "/crm/v4/associations/{object}/{to}/batch/read",
            post(associations::batch_read),
        )
        .route(
            "/crm/v4/associations/{object}/{to}/batch/archive",
            post(associations::batch_archive),
        )
        .route_layer(middleware::from_fn_with_state(shared.clone(), gate));
    Ok(api
        .fallback(|State(shared): State<Arc<Shared>>| async move {
            errors::error(
                &shared,
                axum::http::StatusCode::NOT_FOUND,
                "OBJECT_NOT_FOUND",
                "resource not found",
                Map::new(),
            )
        })
        .with_state(shared.clone()))
}

/// Registers a private-app token (valid until `expire_all_tokens`).
pub(crate) fn add_static_token(shared: &Shared, token: &str) {
    shared.tokens.lock().add(
        token.to_owned(),
        TokenEntry {
            client_id: "private-app".to_owned(),
            grant: "private-app".to_owned(),
            issued_at: Utc::now(),
            expires_at: None,
        },
    );
}

fn bearer_token(request: &Request) -> Option<String> {
    let value = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// Authentication, limits and rate-limit headers for every call.
async fn gate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let now = Instant::now();
    let status = bearer_token(&request)
        .map(|t| shared.tokens.lock().check(&t, now))
        .unwrap_or(TokenStatus::Unknown);
    match status {
        TokenStatus::Valid => {}
        TokenStatus::Unknown => {
            shared.record_unauthorized();
            return errors::unauthenticated(&shared);
        }
        TokenStatus::Expired { ago } => {
            shared.record_unauthorized();
            return errors::expired(&shared, ago.as_secs());
        }
    }
    let admission = shared.limiter.lock().admit(now);
    let throttled = match admission {
        Admission::Allowed => None,
        Admission::OverDaily => Some(errors::rate_limited(
            &shared,
            errors::Policy::Daily,
            seconds_to_midnight(),
        )),
        Admission::OverInterval { retry_after } => Some(errors::rate_limited(
            &shared,
            errors::Policy::TenSecondlyRolling,
            retry_after.as_millis().div_ceil(1000) as u64,
        )),
    };
    if let Some(response) = throttled {
        shared.record_throttled();
        return with_rate_headers(&shared, response);
    }
    if let Some(path) = request.extensions().get::<MatchedPath>() {
        shared.record_endpoint(request.method().as_str(), path.as_str());
    }
    let response = next.run(request).await;
    with_rate_headers(&shared, response)
}

fn seconds_to_midnight() -> u64 {
    let now = Utc::now();
    let secs = now.timestamp().rem_euclid(86_400);
    (86_400 - secs) as u64
}

/// `X-HubSpot-RateLimit-*`: daily and rolling-window ones (the HubSpot limiter
/// always has a window, [`DEFAULT_RATE_LIMIT`] unless configured).
fn with_rate_headers(shared: &Shared, mut response: Response) -> Response {
    let mut limiter = shared.limiter.lock();
    let mut headers = vec![
        ("X-HubSpot-RateLimit-Daily", limiter.daily_limit()),
        (
            "X-HubSpot-RateLimit-Daily-Remaining",
            limiter.daily_limit().saturating_sub(limiter.daily_used()),
        ),
    ];
    if let (Some(rate), Some(remaining)) =
        (limiter.rate(), limiter.interval_remaining(Instant::now()))
    {
        headers.push((
            "X-HubSpot-RateLimit-Interval-Milliseconds",
            rate.interval.as_millis() as u64,
        ));
        headers.push(("X-HubSpot-RateLimit-Max", u64::from(rate.requests)));
        headers.push(("X-HubSpot-RateLimit-Remaining", u64::from(remaining)));
    }
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
            response.headers_mut().insert(name, v);
        }
    }
    response
}

/// HubSpot timestamps: RFC 3339 with milliseconds and `Z`.
pub(crate) fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// System property values derived from the record itself.
pub(crate) fn system_property(record: &Record, name: &str) -> Option<Value> {
    match name {
        "hs_object_id" => Some(Value::String(record.id.clone())),
        "createdate" => Some(Value::String(timestamp(record.created_at))),
        "lastmodifieddate" | "hs_lastmodifieddate" => {
            Some(Value::String(timestamp(record.updated_at)))
        }
        _ => None,
    }
}

/// A record in HubSpot's SimplePublicObject shape. With `properties`, only those
/// are returned (null when unset); without, every stored property plus system ones.
pub(crate) fn render_record(record: &Record, properties: Option<&[String]>) -> Value {
    let mut props = Map::new();
    match properties {
        Some(names) => {
            for name in names {
                let value = system_property(record, name)
                    .or_else(|| record.fields.get(name).cloned())
                    .unwrap_or(Value::Null);
                props.insert(name.clone(), value);
            }
        }
        None => {
            props.extend(record.fields.clone());
            for name in ["hs_object_id", "createdate", "lastmodifieddate"] {
                if let Some(v) = system_property(record, name) {
                    props.insert(name.to_owned(), v);
                }
            }
        }
    }
    json!({
        "id": record.id,
        "properties": props,
        "createdAt": timestamp(record.created_at),
        "updatedAt": timestamp(record.updated_at),
        "archived": false,
    })
}

fn system_fields() -> Vec<FieldSpec> {
    vec![
        FieldSpec::new("hs_object_id", FieldType::Id)
            .label("Record ID")
            .read_only(),
        FieldSpec::new("createdate", FieldType::DateTime)
            .label("Create Date")
            .read_only(),
        FieldSpec::new("lastmodifieddate", FieldType::DateTime)
            .label("Last Modified Date")
            .read_only(),
    ]
}

/// HubSpot text properties are not length-limited the way Salesforce's are.
fn hubspot_field(mut field: FieldSpec) -> FieldSpec {
    field.max_length = None;
    field.external_id = false;
    field
}

/// Adds system properties and a `2-N` type id to a user-declared custom object.
pub(crate) fn prepare_object(mut spec: ObjectSpec, store: &Store) -> anyhow::Result<ObjectSpec> {
    spec.custom = true;
    let customs = store.specs().iter().filter(|s| s.custom).count();
    spec.type_id = format!("2-{}", 1_000_001 + customs);
    spec.fields = spec.fields.into_iter().map(hubspot_field).collect();
    for field in system_fields() {
        if spec.find_field(&field.name).is_none() {
            spec.fields.push(field);
        }
    }
    Ok(spec)
}

fn standard(name: &str, label: &str, type_id: &str, fields: Vec<FieldSpec>) -> ObjectSpec {
    let mut spec = ObjectSpec::new(name).label(label);
    spec.custom = false;
    spec.type_id = type_id.to_owned();
    spec.fields = fields
        .into_iter()
        .map(hubspot_field)
        .chain(system_fields())
        .collect();
    spec
}

const LIFECYCLE_STAGES: [&str; 8] = [
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
];

/// contacts (email unique), companies and deals with common default properties.
fn standard_objects() -> Vec<ObjectSpec> {
    use FieldType as T;
    let contacts = standard(
        "contacts",
        "Contact",
        "0-1",
        vec![
            FieldSpec::new("email", T::Email).label("Email").unique(),
            FieldSpec::new("firstname", T::String).label("First Name"),
            FieldSpec::new("lastname", T::String).label("Last Name"),
            FieldSpec::new("phone", T::Phone).label("Phone Number"),
            FieldSpec::new("company", T::String).label("Company Name"),
            FieldSpec::new("website", T::Url).label("Website URL"),
            FieldSpec::new("jobtitle", T::String).label("Job Title"),
            FieldSpec::new("lifecyclestage", T::Picklist)
                .label("Lifecycle Stage")
                .options(LIFECYCLE_STAGES),
        ],
    );
    let companies = standard(
        "companies",
        "Company",
        "0-2",
        vec![
            FieldSpec::new("name", T::String).label("Company name"),
            FieldSpec::new("domain", T::String).label("Company Domain Name"),
            FieldSpec::new("industry", T::String).label("Industry"),
            FieldSpec::new("phone", T::Phone).label("Phone Number"),
            FieldSpec::new("city", T::String).label("City"),
            FieldSpec::new("country", T::String).label("Country/Region"),
            FieldSpec::new("numberofemployees", T::Int).label("Number of Employees"),
            FieldSpec::new("annualrevenue", T::Double).label("Annual Revenue"),
            FieldSpec::new("lifecyclestage", T::Picklist)
                .label("Lifecycle Stage")
                .options(LIFECYCLE_STAGES),
        ],
    );
    let deals = standard(
        "deals",
        "Deal",
        "0-3",
        vec![
            FieldSpec::new("dealname", T::String).label("Deal Name"),
            FieldSpec::new("amount", T::Double).label("Amount"),
            FieldSpec::new("closedate", T::DateTime).label("Close Date"),
            FieldSpec::new("pipeline", T::Picklist)
                .label("Pipeline")
                .options(["default"]),
            FieldSpec::new("dealstage", T::Picklist)
                .label("Deal Stage")
                .options(DEAL_STAGES),
            FieldSpec::new("dealtype", T::Picklist)
                .label("Deal Type")
                .options(["newbusiness", "existingbusiness"]),
            FieldSpec::new("description", T::TextArea).label("Deal Description"),
        ],
    );
    vec![contacts, companies, deals]
}

/// The stages of HubSpot's default sales pipeline.
const DEAL_STAGES: [&str; 7] = [
    "appointmentscheduled",
    "qualifiedtobuy",
    "presentationscheduled",
    "decisionmakerboughtin",
    "contractsent",
    "closedwon",
    "closedlost",
];

/// What the CLI prints so a user can point a connector at the emulator.
pub(crate) fn connection_info(shared: &Shared) -> String {
    format!(
        "HubSpot emulator at {}\n  Authorization: Bearer <one of: {}>\n  object types: {}",
        shared.base_url,
        shared.config.hubspot.tokens.join(", "),
        shared
            .store
            .lock()
            .specs()
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
            .join(", "),
    )
}
