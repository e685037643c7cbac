//! Fault injection (5xx, slow responses, dropped connections), determinism, shutdown.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use sluice_emulators::{EmulatorConfig, EmulatorKind, FaultConfig};

fn faults(server: f64, slow: f64, drop: f64) -> FaultConfig {
    FaultConfig {
        server_error_probability: server,
        slow_probability: slow,
        slow_delay: Duration::from_millis(200),
        drop_probability: drop,
    }
}

#[tokio::test]
async fn injected_server_errors_are_api_shaped_and_write_nothing() {
    let hs = hubspot(EmulatorConfig {
        faults: faults(1.0, 0.0, 0.0),
        ..EmulatorConfig::default()
    })
    .await;
    let client = client();
    let base = hs.base_url();
    let mut statuses = Vec::new();
    for i in 0..20 {
        let (status, _, body) = hs_post(&client, &base, "/crm/v3/objects/contacts/batch/upsert", &json!({"inputs": [{"id": format!("f{i}@example.com"), "idProperty": "email", "properties": {}}]})).await;
        assert!(status == 500 || status == 503, "{status}");
        assert_eq!(body["status"], "error");
        statuses.push(status);
    }
    assert!(
        statuses.contains(&500) && statuses.contains(&503),
        "both 500 and 503 expected: {statuses:?}"
    );
    assert_eq!(hs.handle().stats().server_errors_injected, 20);
    assert_eq!(hs.handle().record_count("contacts"), 0);

    hs.handle().clear_faults();
    let (status, _, _) = hs_post(
        &client,
        &base,
        "/crm/v3/objects/contacts/batch/upsert",
        &json!({"inputs": [{"id": "ok@example.com", "idProperty": "email", "properties": {}}]}),
    )
    .await;
    assert_eq!(status, 200);
    hs.shutdown().await.unwrap();

    let sf = salesforce(EmulatorConfig::default()).await;
    let token = sf_token(&client, &sf.base_url()).await;
    sf.handle().set_faults(faults(1.0, 0.0, 0.0));
    let (status, _, body) = split(
        client
            .get(sf_url(&sf.base_url(), "/sobjects"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(status == 500 || status == 503);
    assert!(
        body[0]["errorCode"] == "UNKNOWN_EXCEPTION" || body[0]["errorCode"] == "SERVER_UNAVAILABLE",
        "{body}"
    );
    sf.shutdown().await.unwrap();
}

#[tokio::test]
async fn dropped_connections_close_without_a_response() {
    let hs = hubspot(EmulatorConfig {
        faults: faults(0.0, 0.0, 1.0),
        ..EmulatorConfig::default()
    })
    .await;
    let client = unpooled_client();
    let url = hs_url(&hs.base_url(), "/crm/v3/properties/contacts");
    for _ in 0..5 {
        let err = client
            .get(&url)
            .bearer_auth(hs_token())
            .send()
            .await
            .expect_err("the connection must be dropped");
        assert!(!err.is_timeout(), "dropped, not timed out: {err}");
    }
    assert_eq!(hs.handle().stats().dropped_injected, 5);
    hs.handle().clear_faults();
    assert_eq!(
        client
            .get(&url)
            .bearer_auth(hs_token())
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    hs.shutdown().await.unwrap();
}

#[tokio::test]
async fn slow_responses_are_delayed_then_served() {
    let hs = hubspot(EmulatorConfig {
        faults: faults(0.0, 1.0, 0.0),
        ..EmulatorConfig::default()
    })
    .await;
    let client = client();
    let url = hs_url(&hs.base_url(), "/crm/v3/properties/contacts");
    for _ in 0..3 {
        let started = Instant::now();
        let response = client
            .get(&url)
            .bearer_auth(hs_token())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "a slow response is held at least slow_delay"
        );
    }
    assert_eq!(hs.handle().stats().slow_injected, 3);
    hs.shutdown().await.unwrap();
}

/// Runs 60 sequential requests against a fresh emulator and records what happened.
async fn fault_pattern(seed: u64) -> (Vec<String>, u64, u64, u64) {
    let config = EmulatorConfig {
        faults: FaultConfig {
            slow_delay: Duration::from_millis(5),
            ..faults(0.2, 0.1, 0.1)
        },
        seed,
        ..EmulatorConfig::default()
    };
    let hs = hubspot(config).await;
    let client = unpooled_client();
    let url = hs_url(&hs.base_url(), "/crm/v3/properties/contacts");
    let mut outcomes = Vec::new();
    for _ in 0..60 {
        let outcome = match client.get(&url).bearer_auth(hs_token()).send().await {
            Ok(response) => response.status().as_u16().to_string(),
            Err(_) => "dropped".to_owned(),
        };
        outcomes.push(outcome);
    }
    let stats = hs.handle().stats();
    hs.shutdown().await.unwrap();
    (
        outcomes,
        stats.server_errors_injected,
        stats.dropped_injected,
        stats.requests,
    )
}

#[tokio::test]
async fn fault_injection_is_seeded_and_counted() {
    let (a, errors, dropped, requests) = fault_pattern(42).await;
    let (b, ..) = fault_pattern(42).await;
    assert_eq!(a, b, "same seed, same sequence");
    let observed_5xx = a.iter().filter(|o| *o == "500" || *o == "503").count() as u64;
    let observed_drops = a.iter().filter(|o| *o == "dropped").count() as u64;
    assert_eq!((observed_5xx, observed_drops), (errors, dropped));
    assert_eq!(requests, 60);
    assert!(
        errors > 0 && dropped > 0,
        "with p=0.2/0.1 over 60 requests both faults fire: {a:?}"
    );
    let (c, ..) = fault_pattern(43).await;
    assert_ne!(a, c, "a different seed gives a different sequence");
}

#[tokio::test]
async fn shutdown_stops_serving_and_kinds_parse() {
    let sf = salesforce(EmulatorConfig::default()).await;
    let url = format!("{}/services/data", sf.base_url());
    let client = unpooled_client();
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    assert!(sf.connection_info().contains(&sf.base_url()));
    assert_eq!(sf.kind(), EmulatorKind::Salesforce);
    sf.shutdown().await.unwrap();
    assert!(
        client.get(&url).send().await.is_err(),
        "nothing listens after shutdown"
    );
    assert_eq!(
        "HubSpot".parse::<EmulatorKind>().unwrap(),
        EmulatorKind::HubSpot
    );
    assert!("zendesk".parse::<EmulatorKind>().is_err());
}
