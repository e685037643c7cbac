//! The BigQuery REST emulator against the real PostgreSQL on 127.0.0.1:5432,
//! over HTTP: the token endpoint's JWT checks, 401 without a token, the
//! documented response shapes (schema, `f`/`v` rows, float-seconds
//! TIMESTAMP by default, `pageToken` and `startIndex` pages), jobs.get, and
//! BigQuery's errors (accessDenied, notFound for a job and for a dataset in
//! another location, invalidQuery located in the query).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use reqwest::StatusCode;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::RsaPrivateKey;
use serde_json::{json, Value};
use sha2::Sha256;
use sluice_emulators::{
    start_bigquery, BigQuerySettings, EmulatorConfig, RunningEmulator, DEFAULT_BIGQUERY_PROJECT,
};

const TEST_KEY: &str = include_str!("fixtures/snowflake_test_key.p8");
const TEST_PUBLIC_KEY: &str = include_str!("fixtures/snowflake_test_key.pub");
const OTHER_KEY: &str = include_str!("fixtures/snowflake_other_key.p8");
const ACCOUNT: &str = "reader@sluice-emulator.iam.gserviceaccount.com";
const GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

struct Emu {
    emulator: RunningEmulator,
    database: String,
    http: reqwest::Client,
}

async fn emulator(name: &str) -> Emu {
    let database = format!("sluice_bq_emu_{name}_{}", std::process::id());
    let config = EmulatorConfig {
        bigquery: BigQuerySettings {
            postgres_url: format!("postgres://postgres@127.0.0.1:5432/{database}"),
            ..BigQuerySettings::default()
        },
        ..EmulatorConfig::default()
    };
    let emulator = start_bigquery("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("starting the BigQuery emulator");
    emulator
        .handle()
        .bigquery_add_service_account(ACCOUNT, TEST_PUBLIC_KEY);
    for statement in [
        "create schema shop",
        "create table shop.events (id INT64, at TIMESTAMP, tags ARRAY<STRING>)",
        "insert into shop.events values (1, TIMESTAMP '2021-05-04 18:08:13.299+00', ['a']), \
         (2, NULL, []), (3, TIMESTAMP '1970-01-01 00:00:00+00', ['b', 'c'])",
    ] {
        emulator
            .handle()
            .bigquery_execute(statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e:?}"));
    }
    Emu {
        emulator,
        database,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn assertion(pem: &str, aud: &str, iat: u64, exp: u64) -> String {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let claims = json!({"iss": ACCOUNT, "scope": "https://www.googleapis.com/auth/bigquery",
                        "aud": aud, "iat": iat, "exp": exp});
    let input = format!(
        "{}.{}",
        b64(br#"{"alg":"RS256","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    );
    let key = RsaPrivateKey::from_pkcs8_pem(pem).unwrap();
    let signature = SigningKey::<Sha256>::new(key).sign(input.as_bytes());
    format!("{input}.{}", b64(&signature.to_vec()))
}

impl Emu {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.emulator.base_url())
    }

    fn api(&self, path: &str) -> String {
        self.url(&format!(
            "/bigquery/v2/projects/{DEFAULT_BIGQUERY_PROJECT}{path}"
        ))
    }

    async fn exchange(&self, jwt: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.url("/token"))
            .form(&[("grant_type", GRANT), ("assertion", jwt)])
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    async fn token(&self) -> String {
        let jwt = assertion(TEST_KEY, &self.url("/token"), now(), now() + 3600);
        let (status, body) = self.exchange(&jwt).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3600);
        body["access_token"].as_str().unwrap().to_owned()
    }

    async fn post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.api(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(self.api(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
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
async fn the_token_endpoint_checks_the_jwt_and_calls_need_its_token() {
    let emu = emulator("auth").await;
    let audience = emu.url("/token");
    let refused = [
        (
            assertion(OTHER_KEY, &audience, now(), now() + 3600),
            "Invalid JWT Signature.",
        ),
        (
            assertion(
                TEST_KEY,
                "https://elsewhere.example/token",
                now(),
                now() + 3600,
            ),
            "audience",
        ),
        (
            assertion(TEST_KEY, &audience, now() - 7200, now() - 3600),
            "short-lived token",
        ),
        (
            assertion(TEST_KEY, &audience, now(), now() + 7200),
            "short-lived token",
        ),
    ];
    for (jwt, expected) in refused {
        let (status, body) = emu.exchange(&jwt).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "invalid_grant");
        let description = body["error_description"].as_str().unwrap();
        assert!(description.contains(expected), "{description}");
    }
    // Google's own audience is accepted too (a key file's token_uri).
    let google = assertion(
        TEST_KEY,
        "https://oauth2.googleapis.com/token",
        now(),
        now() + 3600,
    );
    assert_eq!(emu.exchange(&google).await.0, StatusCode::OK);

    let query = json!({"query": "select 1 as one", "useLegacySql": false});
    let anonymous = emu
        .http
        .post(emu.api("/queries"))
        .json(&query)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let body: Value = anonymous.json().await.unwrap();
    assert_eq!(body["error"]["errors"][0]["reason"], "required");
    assert_eq!(body["error"]["status"], "UNAUTHENTICATED");
    let (status, body) = emu.post("ya29.made-up", "/queries", query.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["errors"][0]["reason"], "authError");

    let token = emu.token().await;
    let (status, body) = emu.post(&token, "/queries", query).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rows"], json!([{"f": [{"v": "1"}]}]));
    emu.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_have_the_documented_shape_and_pages() {
    let emu = emulator("shape").await;
    let token = emu.token().await;
    let (status, first) = emu
        .post(
            &token,
            "/queries",
            json!({"query": "select id, at, tags from shop.events order by id",
                   "useLegacySql": false, "maxResults": 2}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["kind"], "bigquery#queryResponse");
    assert_eq!(first["jobComplete"], true);
    assert_eq!(first["totalRows"], "3");
    assert_eq!(
        first["schema"]["fields"],
        json!([
            {"name": "id", "type": "INTEGER", "mode": "NULLABLE"},
            {"name": "at", "type": "TIMESTAMP", "mode": "NULLABLE"},
            {"name": "tags", "type": "STRING", "mode": "REPEATED"},
        ])
    );
    // Without useInt64Timestamp a TIMESTAMP is float seconds in exponent form.
    assert_eq!(
        first["rows"],
        json!([
            {"f": [{"v": "1"}, {"v": "1.620151693299E9"}, {"v": [{"v": "a"}]}]},
            {"f": [{"v": "2"}, {"v": null}, {"v": []}]},
        ])
    );
    let job = first["jobReference"]["jobId"].as_str().unwrap().to_owned();
    assert_eq!(first["jobReference"]["location"], "US");
    let token_param = first["pageToken"].as_str().unwrap();
    let (_, second) = emu
        .get(
            &token,
            &format!(
                "/queries/{job}?pageToken={token_param}&formatOptions.useInt64Timestamp=true&location=US"
            ),
        )
        .await;
    assert_eq!(second["kind"], "bigquery#getQueryResultsResponse");
    assert_eq!(
        second["rows"],
        json!([{"f": [{"v": "3"}, {"v": "0"}, {"v": [{"v": "b"}, {"v": "c"}]}]}])
    );
    assert!(second.get("pageToken").is_none(), "{second}");
    let (_, from_index) = emu
        .get(&token, &format!("/queries/{job}?startIndex=1&maxResults=1"))
        .await;
    assert_eq!(from_index["rows"][0]["f"][0]["v"], "2");

    let (status, job_resource) = emu.get(&token, &format!("/jobs/{job}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(job_resource["status"]["state"], "DONE");
    assert_eq!(
        job_resource["statistics"]["query"]["statementType"],
        "SELECT"
    );

    // A job asked for in another location is not found there.
    let (status, body) = emu
        .get(&token, &format!("/queries/{job}?location=EU"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body["error"]["message"],
        format!("Not found: Job {DEFAULT_BIGQUERY_PROJECT}:EU.{job}")
    );
    emu.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_bigquerys_reasons() {
    let emu = emulator("errors").await;
    let token = emu.token().await;
    let query = |sql: &str| json!({"query": sql, "useLegacySql": false});

    let (status, body) = emu
        .post(&token, "/queries", query("select nope\nfrom shop.events"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let error = &body["error"]["errors"][0];
    assert_eq!(error["reason"], "invalidQuery");
    assert_eq!(error["location"], "query");
    assert_eq!(error["message"], "Unrecognized name: nope at [1:8]");

    let mut in_eu = query("select id from shop.events");
    in_eu["location"] = json!("EU");
    let (status, body) = emu.post(&token, "/queries", in_eu).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body["error"]["message"],
        format!("Not found: Dataset {DEFAULT_BIGQUERY_PROJECT}:shop was not found in location EU")
    );

    let (status, body) = emu
        .post(&token, "/queries", query("select id from shop.missing"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body["error"]["message"],
        format!(
            "Not found: Table {DEFAULT_BIGQUERY_PROJECT}:shop.missing was not found in location US"
        )
    );

    let mut dry = query("select id from shop.events");
    dry["dryRun"] = json!(true);
    let (status, body) = emu.post(&token, "/queries", dry).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("rows").is_none(), "a dry run returns no rows");
    let bytes: u64 = body["totalBytesProcessed"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut capped = query("select id from shop.events");
    capped["maximumBytesBilled"] = json!((bytes - 1).to_string());
    let (status, body) = emu.post(&token, "/queries", capped).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"]["errors"][0]["reason"],
        "bytesBilledLimitExceeded"
    );

    let response = emu
        .http
        .post(emu.url("/bigquery/v2/projects/someone-else/queries"))
        .bearer_auth(&token)
        .json(&query("select 1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["errors"][0]["reason"], "accessDenied");
    emu.finish().await;
}
