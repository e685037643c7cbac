//! Salesforce error shapes: top-level errors are a JSON array of
//! `{message, errorCode, fields?}`; per-record errors inside a 200 are
//! `{statusCode, message, fields}`; Bulk result CSVs carry `STATUS_CODE:message`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// `errorCode` of the throttling 403.
pub const REQUEST_LIMIT_EXCEEDED: &str = "REQUEST_LIMIT_EXCEEDED";
/// Message of the throttling 403 (as observed from Salesforce).
pub const REQUEST_LIMIT_MESSAGE: &str = "TotalRequests Limit exceeded.";
/// `errorCode` of the 401.
pub const INVALID_SESSION_ID: &str = "INVALID_SESSION_ID";
/// Message of the 401.
pub const INVALID_SESSION_MESSAGE: &str = "Session expired or invalid";
/// Message carried by good records when an allOrNone request is rolled back.
pub const ROLLED_BACK_MESSAGE: &str =
    "Record rolled back because not all records were valid and the request was using AllOrNone header";

/// A top-level Salesforce error response: status plus a one-element JSON array.
pub(crate) fn api_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!([{ "message": message.into(), "errorCode": code }]);
    (status, Json(body)).into_response()
}

/// The 404 Salesforce returns for unknown resources, objects and fields.
pub(crate) fn not_found() -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "The requested resource does not exist",
    )
}

/// 400 for a body that is not valid JSON of the expected shape.
pub(crate) fn json_parser_error(detail: impl std::fmt::Display) -> Response {
    api_error(
        StatusCode::BAD_REQUEST,
        "JSON_PARSER_ERROR",
        format!("Unable to parse the request body: {detail}"),
    )
}

/// The body of an injected 500/503.
pub(crate) fn injected_server_error(status: u16) -> Response {
    if status == 503 {
        api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVER_UNAVAILABLE",
            "The server is unavailable to handle the request. Typically this issue occurs if the server is down for maintenance or is overloaded.",
        )
    } else {
        api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN_EXCEPTION",
            "An unexpected error occurred. Please include this ErrorId if you contact support: 1234567890-12345 (-1234567890)",
        )
    }
}

/// One per-record error (`errors[]` item of a SaveResult/UpsertResult).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordError {
    pub status_code: &'static str,
    pub message: String,
    pub fields: Vec<String>,
}

impl RecordError {
    pub fn new(status_code: &'static str, message: impl Into<String>, fields: Vec<String>) -> Self {
        Self {
            status_code,
            message: message.into(),
            fields,
        }
    }

    /// The error a good record carries when an allOrNone request is rolled back.
    pub fn rolled_back() -> Self {
        Self::new(
            "ALL_OR_NONE_OPERATION_ROLLED_BACK",
            ROLLED_BACK_MESSAGE,
            vec![],
        )
    }

    pub fn to_json(&self) -> Value {
        json!({ "statusCode": self.status_code, "message": self.message, "fields": self.fields })
    }

    /// `sf__Error` text in Bulk failed results.
    pub fn bulk_text(&self) -> String {
        format!("{}:{}", self.status_code, self.message)
    }
}
