//! The Snowflake SQL API emulator against the real PostgreSQL on 127.0.0.1:5432:
//! documented response shapes and encodings, partitions (gzip), the 202 flow,
//! cancel, timeouts, key-pair JWT and OAuth auth, SQL errors and throttling.

use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use reqwest::StatusCode;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::RsaPrivateKey;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sluice_emulators::{
    start_snowflake, EmulatorConfig, RateLimit, RunningEmulator, SnowflakeSettings,
    DEFAULT_SNOWFLAKE_TOKEN,
};

const TEST_KEY: &str = include_str!("fixtures/snowflake_test_key.p8");
const TEST_PUBLIC_KEY: &str = include_str!("fixtures/snowflake_test_key.pub");
const OTHER_KEY: &str = include_str!("fixtures/snowflake_other_key.p8");

/// An emulator on its own PostgreSQL database; dropped with [`Emu::finish`].
struct Emu {
    emulator: RunningEmulator,
    database: String,
    http: reqwest::Client,
}

async fn emulator(name: &str, tweak: impl FnOnce(&mut SnowflakeSettings)) -> Emu {
    let database = format!("sluice_sf_emu_{name}_{}", std::process::id());
    let mut settings = SnowflakeSettings {
        postgres_url: format!("postgres://postgres@127.0.0.1:5432/{database}"),
        ..SnowflakeSettings::default()
    };
    tweak(&mut settings);
    let config = EmulatorConfig {
        snowflake: settings,
        ..EmulatorConfig::default()
    };
    let emulator = start_snowflake("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("starting the Snowflake emulator");
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
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.emulator.base_url())
    }

    async fn post_as(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .header("user-agent", "sluice-tests/1.0")
            .json(&body)
            .send()
            .await
            .expect("POST to the emulator");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.post_as(DEFAULT_SNOWFLAKE_TOKEN, path, body).await
    }

    /// Runs a statement in DEMO.NEXLA and expects a 200.
    async fn sql(&self, statement: &str) -> Value {
        let (status, body) = self
            .post(
                "/api/v2/statements",
                json!({"statement": statement, "database": "DEMO", "schema": "NEXLA", "warehouse": "COMPUTE_WH"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{statement}: {body}");
        body
    }

    async fn get(&self, path: &str, gzip: bool) -> reqwest::Response {
        let mut request = self
            .http
            .get(self.url(path))
            .bearer_auth(DEFAULT_SNOWFLAKE_TOKEN);
        if gzip {
            request = request.header("accept-encoding", "gzip");
        }
        request.send().await.expect("GET from the emulator")
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

async fn create_demo(emu: &Emu) {
    emu.sql("create database if not exists demo").await;
    emu.sql("create schema if not exists demo.nexla").await;
}

fn jwt(pem: &str, fingerprint_of: &str, sub: &str, iat: u64, exp: u64) -> String {
    let key = RsaPrivateKey::from_pkcs8_pem(pem).unwrap();
    let fingerprint_key = RsaPrivateKey::from_pkcs8_pem(fingerprint_of).unwrap();
    let der = rsa::RsaPublicKey::from(&fingerprint_key)
        .to_public_key_der()
        .unwrap();
    let fp = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(der.as_bytes()));
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let claims = json!({"iss": format!("{sub}.SHA256:{fp}"), "sub": sub, "iat": iat, "exp": exp});
    let input = format!(
        "{}.{}",
        b64(br#"{"alg":"RS256","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    );
    let signature = SigningKey::<Sha256>::new(key)
        .sign(input.as_bytes())
        .to_vec();
    format!("{input}.{}", b64(&signature))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn results_have_the_documented_shape_types_and_partitions() {
    let emu = emulator("shape", |s| s.partition_rows = 2).await;
    create_demo(&emu).await;
    emu.sql(
        "create or replace table customer (id int, email varchar(200), ltv number(12,2), score float, \
         active boolean, born date, at_time time, seen timestamp_ntz, seen_ltz timestamp_ltz, \
         seen_tz timestamp_tz, doc variant, blob binary)",
    )
    .await;
    let inserted = emu
        .sql(
            "insert into customer values \
             (1, 'ada@example.com', 1234.50, 1.5, true, '2026-10-09', '12:34:56.123456', '2021-05-04 18:08:13.299', '2021-05-04 18:08:13', '2021-05-04 18:08:13', parse_json('{\"tier\": \"gold\"}'), decode('0aff', 'hex')), \
             (2, 'zoë@example.com', -0.01, 'NaN', false, '1969-12-31', '00:00:00', '1969-12-31 23:59:58.5', null, null, parse_json('[1, 2]'), null), \
             (3, null, null, null, null, null, null, null, null, null, null, null)",
        )
        .await;
    assert_eq!(inserted["data"], json!([["3"]]));
    assert_eq!(inserted["stats"]["numRowsInserted"], json!(3));

    let body = emu
        .sql("select * from demo.nexla.customer order by id")
        .await;
    let meta = &body["resultSetMetaData"];
    assert_eq!(meta["numRows"], json!(3));
    assert_eq!(meta["format"], json!("jsonv2"));
    assert_eq!(body["code"], json!("090001"));
    let types: Vec<(&str, &str)> = meta["rowType"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        types,
        [
            ("ID", "fixed"),
            ("EMAIL", "text"),
            ("LTV", "fixed"),
            ("SCORE", "real"),
            ("ACTIVE", "boolean"),
            ("BORN", "date"),
            ("AT_TIME", "time"),
            ("SEEN", "timestamp_ntz"),
            ("SEEN_LTZ", "timestamp_ltz"),
            ("SEEN_TZ", "timestamp_tz"),
            ("DOC", "variant"),
            ("BLOB", "binary"),
        ]
    );
    let ltv = &meta["rowType"][2];
    assert_eq!(
        (ltv["precision"].clone(), ltv["scale"].clone()),
        (json!(12), json!(2))
    );
    assert_eq!(ltv["database"], json!("DEMO"));
    assert_eq!(ltv["schema"], json!("NEXLA"));
    assert_eq!(ltv["table"], json!("CUSTOMER"));
    assert_eq!(meta["rowType"][1]["length"], json!(200));
    assert_eq!(
        meta["partitionInfo"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["rowCount"].clone())
            .collect::<Vec<_>>(),
        [json!(2), json!(1)]
    );
    // Partition 0 rides in the answer.
    assert_eq!(
        body["data"][0],
        json!([
            "1",
            "ada@example.com",
            "1234.50",
            "1.5",
            "true",
            "20735",
            "45296.123456000",
            "1620151693.299000000",
            "1620151693.000000000",
            "1620151693.000000000 1440",
            "{\n  \"tier\": \"gold\"\n}",
            "0AFF"
        ])
    );
    assert_eq!(
        body["data"][1],
        json!([
            "2",
            "zoë@example.com",
            "-0.01",
            "NaN",
            "false",
            "-1",
            "0.000000000",
            "-1.500000000",
            null,
            null,
            "[\n  1,\n  2\n]",
            null
        ])
    );

    // Partition 1, gzip-compressed when asked for.
    let handle = body["statementHandle"].as_str().unwrap();
    let response = emu
        .get(&format!("/api/v2/statements/{handle}?partition=1"), true)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&response.bytes().await.unwrap()[..])
        .read_to_string(&mut text)
        .unwrap();
    let partition: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(partition["data"][0][0], json!("3"));
    assert_eq!(partition["data"][0][1], Value::Null);
    assert!(partition.get("resultSetMetaData").is_none());
    // Without gzip, plain JSON; out of range, 400 391922.
    let plain = emu
        .get(&format!("/api/v2/statements/{handle}?partition=1"), false)
        .await;
    assert!(plain.headers().get("content-encoding").is_none());
    let out_of_range = emu
        .get(&format!("/api/v2/statements/{handle}?partition=2"), false)
        .await;
    assert_eq!(out_of_range.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        out_of_range.json::<Value>().await.unwrap()["code"],
        json!("391922")
    );

    // Bindings and INFORMATION_SCHEMA (in one partition).
    emu.emulator.handle().snowflake_set_partition_rows(100);
    let (status, bound) = emu
        .post(
            "/api/v2/statements",
            json!({"statement": "select email from customer where id = ?", "database": "DEMO", "schema": "NEXLA",
                   "bindings": {"1": {"type": "FIXED", "value": "2"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{bound}");
    assert_eq!(bound["data"], json!([["zoë@example.com"]]));
    let columns = emu
        .sql("select column_name, data_type, numeric_scale from demo.information_schema.columns where table_name = 'CUSTOMER' order by ordinal_position")
        .await;
    assert_eq!(columns["data"][2], json!(["LTV", "NUMBER", "2"]));
    assert_eq!(columns["data"][10], json!(["DOC", "VARIANT", null]));
    emu.finish().await;
}

#[tokio::test]
async fn sql_errors_answer_422_with_snowflakes_code_and_message() {
    let emu = emulator("errors", |_| {}).await;
    create_demo(&emu).await;
    let run = |statement: &str, warehouse: &str, role: Option<&str>| {
        let mut body = json!({"statement": statement, "database": "DEMO", "schema": "NEXLA", "warehouse": warehouse});
        if let Some(role) = role {
            body["role"] = json!(role);
        }
        emu.post("/api/v2/statements", body)
    };
    let (status, body) = run("select * from demo.nexla.missing", "COMPUTE_WH", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["code"], json!("002003"));
    assert_eq!(body["sqlState"], json!("42S02"));
    assert_eq!(
        body["message"],
        json!(
            "SQL compilation error:\nObject 'DEMO.NEXLA.MISSING' does not exist or not authorized."
        )
    );
    assert!(body["statementHandle"].is_string());

    let (status, body) = run("selec 1", "COMPUTE_WH", None).await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("001003"))
    );

    let (status, body) = run("select 1/0", "COMPUTE_WH", None).await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("100051"))
    );

    let (status, body) = run("select 1", "NO_SUCH_WH", None).await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("000606"))
    );

    let (status, body) = run("select 1", "COMPUTE_WH", Some("ACCOUNTADMIN")).await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("390186"))
    );

    let (status, body) = run("select 1; select 2", "COMPUTE_WH", None).await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("000008"))
    );

    let (status, body) = emu.post("/api/v2/statements", json!({"nope": 1})).await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("390142"))
    );
    emu.finish().await;
}

#[tokio::test]
async fn slow_statements_answer_202_then_poll_cancel_and_time_out() {
    let emu = emulator("async", |s| {
        s.execution_delay = Duration::from_millis(800);
        s.sync_wait = Duration::from_millis(100);
    })
    .await;
    let (status, body) = emu
        .post("/api/v2/statements", json!({"statement": "select 42"}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["code"], json!("333334"));
    let status_url = body["statementStatusUrl"].as_str().unwrap().to_owned();
    let mut polls = 0;
    let done = loop {
        let response = emu.get(&status_url, false).await;
        if response.status() == StatusCode::OK {
            break response.json::<Value>().await.unwrap();
        }
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        polls += 1;
        assert!(polls < 100, "the statement never finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done["data"], json!([["42"]]));

    // async=true answers 202 at once; cancel makes the status 422 000604.
    let (status, body) = emu
        .post(
            "/api/v2/statements?async=true",
            json!({"statement": "select 1"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let handle = body["statementHandle"].as_str().unwrap().to_owned();
    let (status, cancelled) = emu
        .post(&format!("/api/v2/statements/{handle}/cancel"), json!({}))
        .await;
    assert_eq!(
        (status, cancelled["code"].clone()),
        (StatusCode::OK, json!("000604"))
    );
    let after = emu
        .get(&format!("/api/v2/statements/{handle}"), false)
        .await;
    assert_eq!(after.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        after.json::<Value>().await.unwrap()["code"],
        json!("000604")
    );
    assert_eq!(emu.emulator.handle().snowflake_cancelled(), [handle]);
    let (status, unknown) = emu
        .post(
            "/api/v2/statements/00000000-0000-0000-0000-000000000000/cancel",
            json!({}),
        )
        .await;
    assert_eq!(
        (status, unknown["code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("000709"))
    );

    // A statement past its timeout is cancelled: 408 000630.
    emu.emulator
        .handle()
        .snowflake_set_timing(Duration::ZERO, Duration::from_secs(30));
    let (status, body) = emu
        .post(
            "/api/v2/statements",
            json!({"statement": "select pg_sleep(5)", "timeout": 1}),
        )
        .await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::REQUEST_TIMEOUT, json!("000630")),
        "{body}"
    );
    emu.finish().await;
}

#[tokio::test]
async fn key_pair_jwts_and_oauth_tokens_are_checked() {
    let emu = emulator("auth", |s| {
        s.users[0].public_keys.push(TEST_PUBLIC_KEY.to_owned());
    })
    .await;
    let select = json!({"statement": "select 1"});
    let t = now();
    let good = jwt(TEST_KEY, TEST_KEY, "SLUICE.SLUICE", t, t + 3000);
    let (status, body) = emu
        .post_as(&good, "/api/v2/statements", select.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let cases = [
        (
            "signed by an unregistered key",
            jwt(OTHER_KEY, OTHER_KEY, "SLUICE.SLUICE", t, t + 3000),
        ),
        (
            "fingerprint of the right key, signed by another",
            jwt(OTHER_KEY, TEST_KEY, "SLUICE.SLUICE", t, t + 3000),
        ),
        (
            "expired",
            jwt(TEST_KEY, TEST_KEY, "SLUICE.SLUICE", t - 4000, t - 10),
        ),
        (
            "lives more than an hour",
            jwt(TEST_KEY, TEST_KEY, "SLUICE.SLUICE", t, t + 7200),
        ),
        (
            "another account",
            jwt(TEST_KEY, TEST_KEY, "OTHER.SLUICE", t, t + 3000),
        ),
        (
            "unknown user",
            jwt(TEST_KEY, TEST_KEY, "SLUICE.NOBODY", t, t + 3000),
        ),
    ];
    for (what, token) in cases {
        let (status, body) = emu
            .post_as(&token, "/api/v2/statements", select.clone())
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(body["code"], json!("390144"), "{what}");
    }
    let (status, body) = emu
        .post_as("not-a-token", "/api/v2/statements", select.clone())
        .await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!("390303"))
    );
    let response = emu
        .http
        .post(emu.url("/api/v2/statements"))
        .json(&select)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(emu.emulator.handle().stats().unauthorized, 8);
    emu.finish().await;
}

#[tokio::test]
async fn the_rate_limit_answers_429_390505() {
    let emu = emulator("throttle", |_| {}).await;
    emu.emulator
        .handle()
        .set_rate_limit(Some(RateLimit::new(1, Duration::from_secs(60))));
    let (first, _) = emu
        .post("/api/v2/statements", json!({"statement": "select 1"}))
        .await;
    let (second, body) = emu
        .post("/api/v2/statements", json!({"statement": "select 1"}))
        .await;
    assert_eq!(first, StatusCode::OK);
    assert_eq!(second, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        body,
        json!({"code": "390505", "message": "Too many requests."})
    );
    assert_eq!(emu.emulator.handle().stats().throttled, 1);
    emu.finish().await;
}
