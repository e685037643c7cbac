//! The Databricks SQL Statement Execution API emulator against the real
//! PostgreSQL on 127.0.0.1:5432: what the vendor SDK test (tests/tests/
//! vendor_databricks.rs) does not reach — the INLINE cap, link expiry,
//! on_wait_timeout CANCEL, OAuth client failures, 429 with Retry-After,
//! injected 503s and rejected parameters.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sluice_emulators::{
    start_databricks, DatabricksSettings, EmulatorConfig, FaultConfig, RateLimit, RunningEmulator,
    DEFAULT_DATABRICKS_CLIENT_ID, DEFAULT_DATABRICKS_CLIENT_SECRET, DEFAULT_DATABRICKS_TOKEN,
    DEFAULT_DATABRICKS_WAREHOUSE,
};

const STATEMENTS: &str = "/api/2.0/sql/statements";

/// An emulator on its own PostgreSQL database; dropped with [`Emu::finish`].
struct Emu {
    emulator: RunningEmulator,
    database: String,
    http: reqwest::Client,
}

async fn emulator(name: &str, tweak: impl FnOnce(&mut EmulatorConfig)) -> Emu {
    let database = format!("sluice_dbx_emu_{name}_{}", std::process::id());
    let mut config = EmulatorConfig {
        databricks: DatabricksSettings {
            postgres_url: format!("postgres://postgres@127.0.0.1:5432/{database}"),
            ..DatabricksSettings::default()
        },
        ..EmulatorConfig::default()
    };
    tweak(&mut config);
    let emulator = start_databricks("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("starting the Databricks emulator");
    Emu {
        emulator,
        database,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
    }
}

impl Emu {
    async fn submit(&self, body: Value) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let mut body = body;
        if body.get("warehouse_id").is_none() {
            body["warehouse_id"] = json!(DEFAULT_DATABRICKS_WAREHOUSE);
        }
        let response = self
            .http
            .post(format!("{}{STATEMENTS}", self.emulator.base_url()))
            .bearer_auth(DEFAULT_DATABRICKS_TOKEN)
            .json(&body)
            .send()
            .await
            .expect("POST to the emulator");
        let (status, headers) = (response.status(), response.headers().clone());
        (
            status,
            response.json().await.unwrap_or(Value::Null),
            headers,
        )
    }

    async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.emulator.base_url()))
            .bearer_auth(DEFAULT_DATABRICKS_TOKEN)
            .send()
            .await
            .expect("GET from the emulator")
            .json()
            .await
            .unwrap()
    }

    async fn finish(self) {
        self.emulator.shutdown().await.unwrap();
        let (client, connection) = tokio_postgres::connect(
            "host=127.0.0.1 user=postgres dbname=postgres",
            tokio_postgres::NoTls,
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        let _ = client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.database
            ))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_result_over_the_cap_fails_and_external_links_expire() {
    let emu = emulator("limits", |_| {}).await;
    let handle = emu.emulator.handle();
    handle.databricks_set_inline_limit(64);
    let big = "SELECT id AS n, repeat('x', 20) AS pad FROM range(10)";
    let (status, body, _) = emu.submit(json!({"statement": big})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"]["state"], "FAILED", "{body}");
    assert_eq!(body["status"]["error"]["error_code"], "BAD_REQUEST");
    assert!(
        body["status"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("EXTERNAL_LINKS"),
        "{body}"
    );

    // The same result as EXTERNAL_LINKS succeeds; a link dies with its lifetime.
    handle.databricks_set_link_lifetime(Duration::from_millis(200));
    let (_, body, _) = emu
        .submit(json!({"statement": big, "disposition": "EXTERNAL_LINKS"}))
        .await;
    assert_eq!(body["status"]["state"], "SUCCEEDED", "{body}");
    assert!(body["manifest"]["total_byte_count"].as_u64().unwrap() > 64);
    let link = body["result"]["external_links"][0]["external_link"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(link.starts_with(&handle.databricks_storage_url()));
    let fresh = emu.http.get(&link).send().await.unwrap();
    assert_eq!(fresh.status(), StatusCode::OK);
    let rows: Value = fresh.json().await.unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 10);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let expired = emu.http.get(&link).send().await.unwrap();
    assert_eq!(expired.status(), StatusCode::FORBIDDEN);
    assert!(expired
        .text()
        .await
        .unwrap()
        .contains("Request has expired"));
    emu.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_timeout_cancel_and_rejected_parameters() {
    let emu = emulator("waits", |c| {
        c.databricks.execution_delay = Duration::from_secs(7);
    })
    .await;
    let (status, body, _) = emu
        .submit(json!({"statement": "SELECT 1", "wait_timeout": "5s", "on_wait_timeout": "CANCEL"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"]["state"], "CANCELED", "{body}");
    let id = body["statement_id"].as_str().unwrap();
    assert_eq!(emu.emulator.handle().databricks_cancelled(), [id]);
    let again = emu.get(&format!("{STATEMENTS}/{id}")).await;
    assert_eq!(again["status"]["state"], "CANCELED");

    for (body, needle) in [
        (
            json!({"statement": "SELECT 1", "wait_timeout": "51s"}),
            "wait_timeout",
        ),
        (
            json!({"statement": "SELECT 1", "disposition": "SIDEWAYS"}),
            "disposition",
        ),
        (json!({"statement": "SELECT 1", "format": "CSV"}), "INLINE"),
        (json!({"statement": " "}), "statement is required"),
    ] {
        let (status, answer, _) = emu.submit(body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["error_code"], "INVALID_PARAMETER_VALUE");
        assert!(
            answer["message"].as_str().unwrap().contains(needle),
            "{answer}"
        );
    }
    let (status, answer, _) = emu
        .submit(json!({"statement": "SELECT 1", "warehouse_id": "nope"}))
        .await;
    assert_eq!(
        (status, answer["error_code"].clone()),
        (StatusCode::NOT_FOUND, json!("NOT_FOUND"))
    );
    let missing = emu.get(&format!("{STATEMENTS}/01ef-missing")).await;
    assert_eq!(missing["error_code"], "NOT_FOUND");
    emu.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_m2m_tokens_throttling_and_injected_faults() {
    let emu = emulator("auth", |c| {
        c.rate_limit = Some(RateLimit::new(2, Duration::from_secs(30)));
    })
    .await;
    let token_url = format!("{}/oidc/v1/token", emu.emulator.base_url());
    let bad = emu
        .http
        .post(&token_url)
        .basic_auth(DEFAULT_DATABRICKS_CLIENT_ID, Some("wrong"))
        .form(&[("grant_type", "client_credentials"), ("scope", "all-apis")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        bad.json::<Value>().await.unwrap()["error"],
        "invalid_client"
    );
    let good: Value = emu
        .http
        .post(&token_url)
        .basic_auth(
            DEFAULT_DATABRICKS_CLIENT_ID,
            Some(DEFAULT_DATABRICKS_CLIENT_SECRET),
        )
        .form(&[("grant_type", "client_credentials"), ("scope", "all-apis")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(good["token_type"], "Bearer");
    assert_eq!(good["expires_in"], 3600);
    let access = good["access_token"].as_str().unwrap();
    let statements = format!("{}{STATEMENTS}", emu.emulator.base_url());
    let body = json!({"statement": "SELECT 1", "warehouse_id": DEFAULT_DATABRICKS_WAREHOUSE});
    let ok = emu
        .http
        .post(&statements)
        .bearer_auth(access)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let denied = emu
        .http
        .post(&statements)
        .bearer_auth("dapi-wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        denied.json::<Value>().await.unwrap()["error_code"],
        "UNAUTHENTICATED"
    );

    // The budget of 2 per 30 s is spent: 429 with Retry-After.
    let _ = emu.submit(body.clone()).await;
    let (status, answer, headers) = emu.submit(body.clone()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    assert_eq!(answer["error_code"], "REQUEST_LIMIT_EXCEEDED");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "{retry}");

    // Every request fails with an injected 503 in the API's error shape.
    emu.emulator.handle().set_rate_limit(None);
    emu.emulator.handle().set_faults(FaultConfig {
        server_error_probability: 1.0,
        ..FaultConfig::none()
    });
    let (status, answer, _) = emu.submit(body).await;
    assert!(status.is_server_error(), "{status}");
    assert!(
        ["TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR"]
            .contains(&answer["error_code"].as_str().unwrap()),
        "{answer}"
    );
    emu.finish().await;
}
