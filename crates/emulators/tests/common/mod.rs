//! Helpers shared by the emulator integration tests.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::Value;
use sluice_emulators::{
    start_hubspot, start_salesforce, EmulatorConfig, RunningEmulator, DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET, DEFAULT_HUBSPOT_TOKEN,
};

pub const V: &str = "v60.0";

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("building reqwest client")
}

/// A client that opens a fresh connection per request (for dropped-connection tests).
pub fn unpooled_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(0)
        .build()
        .expect("building reqwest client")
}

pub async fn salesforce(config: EmulatorConfig) -> RunningEmulator {
    start_salesforce("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("starting the Salesforce emulator")
}

pub async fn hubspot(config: EmulatorConfig) -> RunningEmulator {
    start_hubspot("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("starting the HubSpot emulator")
}

/// Gets a Salesforce token with the default client credentials.
pub async fn sf_token(client: &reqwest::Client, base: &str) -> String {
    let response = client
        .post(format!("{base}/services/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
        ])
        .send()
        .await
        .expect("token request");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("token JSON");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// A Salesforce data URL.
pub fn sf_url(base: &str, path: &str) -> String {
    format!("{base}/services/data/{V}{path}")
}

pub fn hs_url(base: &str, path: &str) -> String {
    format!("{base}{path}")
}

pub fn hs_token() -> &'static str {
    DEFAULT_HUBSPOT_TOKEN
}

/// Sends a HubSpot POST with the default token and returns status, headers, body.
pub async fn hs_post(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = client
        .post(hs_url(base, path))
        .bearer_auth(hs_token())
        .json(body)
        .send()
        .await
        .expect("HubSpot request");
    split(response).await
}

pub async fn split(response: reqwest::Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("response body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, headers, body)
}

pub fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}"))
        .to_str()
        .expect("ASCII header")
}
