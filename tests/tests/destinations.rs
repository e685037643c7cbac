//! The Salesforce and HubSpot destinations inside the real sandbox, against
//! the in-process emulators: collections and Bulk paths, per-record rejects
//! with the API's own message, a token expiring mid-run, throttling, and 5%
//! injected server errors.

use sluice_tests as common;

use common::*;
use sluice_emulators::{
    start_hubspot, start_salesforce, EmulatorConfig, FaultConfig, RateLimit, RunningEmulator,
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_HUBSPOT_TOKEN,
};
use sluice_registry::builtin as plugins;
use sluice_runtime::bindings::types::{WriteMode, WriteTarget};
use sluice_runtime::instance::WriterHandle;
use sluice_runtime::plugin::Plugin;
use sluice_runtime::sandbox::policy::Grants;
use sluice_runtime::Instance;
use sluice_runtime::{Batch, PluginError, RowResult, Value};
use std::collections::BTreeSet;
use std::time::Duration;

const TEST_KEY: &str = include_str!("../../plugins/salesforce/testdata/test_key.pem");

fn addr() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn instance(test: &TestRuntime, name: &str, bytes: &[u8], base_url: &str) -> Instance {
    let plugin = Plugin::from_bytes(&test.runtime, name, bytes).unwrap();
    let grant = Grants::pattern_for_url(base_url).unwrap();
    plugin.instantiate(&sandbox(&[&grant])).await.unwrap()
}

fn sf_config(emulator: &RunningEmulator, extra: serde_json::Value) -> String {
    let mut config = serde_json::json!({
        "login_url": emulator.base_url(),
        "auth": {"flow": "client_credentials", "client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET},
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    config.to_string()
}

fn hs_config(emulator: &RunningEmulator, object_type: &str) -> String {
    serde_json::json!({"base_url": emulator.base_url(), "token": DEFAULT_HUBSPOT_TOKEN, "object_type": object_type}).to_string()
}

fn target(object: &str, mode: WriteMode, identifier: &str) -> WriteTarget {
    WriteTarget {
        object: object.into(),
        mode,
        identifier: identifier.into(),
    }
}

fn batch(columns: &[&str], rows: Vec<Vec<Value>>) -> Batch {
    Batch {
        columns: columns.iter().map(|c| c.to_string()).collect(),
        rows,
    }
}

/// Contacts keyed `C{i}`; `bad_email` rows carry an invalid email and
/// `no_name` rows no LastName.
fn contacts(n: usize, last: &str, bad_email: &[usize], no_name: &[usize]) -> Batch {
    let rows = (0..n)
        .map(|i| {
            let email = if bad_email.contains(&i) {
                "not-an-email".to_string()
            } else {
                format!("user{i}@example.com")
            };
            let name = if no_name.contains(&i) {
                Value::Null
            } else {
                text(&format!("{last}{i}"))
            };
            vec![text(&format!("C{i}")), name, text(&email)]
        })
        .collect();
    batch(&["External_Id__c", "LastName", "Email"], rows)
}

/// Write like the host does: retry the call on a retryable failure and
/// re-send rows that came back rate-limited or retryable, until every row
/// has a final result.
async fn write_until_done(
    instance: &mut Instance,
    writer: &WriterHandle,
    input: &Batch,
) -> Vec<RowResult> {
    let mut done: Vec<Option<RowResult>> = vec![None; input.rows.len()];
    let mut pending: Vec<usize> = (0..input.rows.len()).collect();
    for _ in 0..100 {
        if pending.is_empty() {
            break;
        }
        let sub = Batch {
            columns: input.columns.clone(),
            rows: pending.iter().map(|&i| input.rows[i].clone()).collect(),
        };
        match instance.write(writer, &sub).await {
            Ok(results) => {
                let mut still = Vec::new();
                for (&i, r) in pending.iter().zip(results) {
                    match r {
                        RowResult::Retryable(_) | RowResult::RateLimited(_) => still.push(i),
                        other => done[i] = Some(other),
                    }
                }
                pending = still;
            }
            Err(failure) if failure.is_retryable() => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(failure) => panic!("write failed for good: {failure}"),
        }
    }
    assert!(
        pending.is_empty(),
        "rows still pending after 100 attempts: {pending:?}"
    );
    done.into_iter().map(Option::unwrap).collect()
}

fn rejected(results: &[RowResult]) -> Vec<(usize, String)> {
    results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match r {
            RowResult::Rejected(m) => Some((i, m.clone())),
            _ => None,
        })
        .collect()
}

fn rate_limit_ms(failure: &sluice_runtime::PluginFailure) -> u64 {
    match failure.plugin_error() {
        Some(PluginError::RateLimited(info)) => info.retry_after_ms,
        other => panic!("expected rate-limited, got {other:?} ({failure})"),
    }
}

/// `(External_Id__c, LastName, Email)` of every stored Contact.
fn stored_contacts(emulator: &RunningEmulator) -> BTreeSet<(String, String, String)> {
    let field = |r: &serde_json::Value, f: &str| r[f].as_str().unwrap_or_default().to_string();
    emulator
        .handle()
        .records("Contact")
        .iter()
        .map(|r| {
            (
                field(r, "External_Id__c"),
                field(r, "LastName"),
                field(r, "Email"),
            )
        })
        .collect()
}

/// The text of a text cell; empty for anything else.
fn cell(v: &Value) -> String {
    match v {
        Value::Text(s) => s.clone(),
        _ => String::new(),
    }
}

fn expected_contacts(input: &Batch, results: &[RowResult]) -> BTreeSet<(String, String, String)> {
    input
        .rows
        .iter()
        .zip(results)
        .filter(|(_, r)| !matches!(r, RowResult::Rejected(_)))
        .map(|(row, _)| (cell(&row[0]), cell(&row[1]), cell(&row[2])))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_discovers_and_upserts_through_collections_across_a_token_expiry() {
    let emulator = start_salesforce(addr(), EmulatorConfig::default())
        .await
        .unwrap();
    let test = runtime();
    let mut sf = instance(
        &test,
        "salesforce",
        plugins::SALESFORCE,
        &emulator.base_url(),
    )
    .await;
    let spec = sf.spec().await.unwrap();
    assert_eq!(
        (spec.name.as_str(), spec.batch_size),
        ("salesforce", 10_000)
    );
    assert_eq!(
        spec.capabilities,
        ["${config.login_url}", "${config.api_hosts}"]
    );
    let config = sf_config(&emulator, serde_json::json!({}));
    sf.check(&config).await.unwrap();

    let objects = sf.discover(&config).await.unwrap();
    let contact = objects
        .iter()
        .find(|o| o.name == "Contact")
        .expect("Contact is discovered");
    let field = |name: &str| contact.fields.iter().find(|f| f.name == name).unwrap();
    assert!(field("External_Id__c").identifier);
    assert!(field("LastName").required && !field("LastName").nullable);
    assert!(
        contact.modes.contains(&WriteMode::Upsert) && contact.modes.contains(&WriteMode::Delete)
    );

    let writer = sf
        .open_writer(
            &config,
            &target("Contact", WriteMode::Upsert, "External_Id__c"),
        )
        .await
        .unwrap();
    let first = contacts(450, "Last", &[7], &[300]);
    let results = sf.write(&writer, &first).await.unwrap();
    let rejects = rejected(&results);
    assert_eq!(rejects.len(), 2, "{rejects:?}");
    assert_eq!(rejects[0].0, 7);
    assert!(
        rejects[0].1.starts_with("INVALID_EMAIL_ADDRESS: "),
        "{}",
        rejects[0].1
    );
    assert_eq!(
        rejects[1],
        (
            300,
            "REQUIRED_FIELD_MISSING: Required fields are missing: [LastName] (LastName)"
                .to_string()
        )
    );
    assert_eq!(
        results.iter().filter(|r| **r == RowResult::Created).count(),
        448
    );
    let route = "/services/data/{version}/composite/sobjects/{object}/{field}";
    assert_eq!(
        emulator.handle().stats().endpoint("PATCH", route),
        3,
        "450 rows in requests of 200"
    );

    // Mid-run expiry: the next call gets 401 INVALID_SESSION_ID and the
    // plugin fetches a new token once.
    emulator.handle().expire_all_tokens();
    let second = contacts(450, "New", &[7], &[300]);
    let results = sf.write(&writer, &second).await.unwrap();
    assert_eq!(
        results.iter().filter(|r| **r == RowResult::Updated).count(),
        448
    );
    assert_eq!(rejected(&results).len(), 2);
    assert_eq!(
        emulator.handle().issued_tokens().len(),
        2,
        "one new token after the expiry"
    );
    assert_eq!(emulator.handle().stats().unauthorized, 1);
    assert_eq!(
        stored_contacts(&emulator),
        expected_contacts(&second, &results)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_sends_large_batches_through_bulk_api_2() {
    let emulator = start_salesforce(addr(), EmulatorConfig::default())
        .await
        .unwrap();
    emulator
        .handle()
        .set_bulk_processing_delay(Duration::from_millis(50));
    let test = runtime();
    let mut sf = instance(
        &test,
        "salesforce",
        plugins::SALESFORCE,
        &emulator.base_url(),
    )
    .await;
    let config = sf_config(
        &emulator,
        serde_json::json!({"bulk_threshold": 100, "poll_interval_ms": 50}),
    );
    let writer = sf
        .open_writer(
            &config,
            &target("Contact", WriteMode::Upsert, "External_Id__c"),
        )
        .await
        .unwrap();

    let input = contacts(250, "Bulk", &[10], &[]);
    let results = sf.write(&writer, &input).await.unwrap();
    let rejects = rejected(&results);
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0].0, 10);
    assert!(
        rejects[0]
            .1
            .starts_with("INVALID_EMAIL_ADDRESS: Email: invalid email address: not-an-email"),
        "{}",
        rejects[0].1
    );
    assert_eq!(
        results.iter().filter(|r| **r == RowResult::Created).count(),
        249
    );

    let again = sf
        .write(&writer, &contacts(250, "Bulk2", &[10], &[]))
        .await
        .unwrap();
    assert_eq!(
        again.iter().filter(|r| **r == RowResult::Updated).count(),
        249
    );
    let jobs = emulator.handle().bulk_jobs();
    assert_eq!(jobs.len(), 2);
    assert!(jobs
        .iter()
        .all(|j| j["state"] == "JobComplete" && j["externalIdFieldName"] == "External_Id__c"));
    let collections = emulator.handle().stats().endpoint(
        "PATCH",
        "/services/data/{version}/composite/sobjects/{object}/{field}",
    );
    assert_eq!(collections, 0);
    assert_eq!(
        stored_contacts(&emulator),
        expected_contacts(&contacts(250, "Bulk2", &[10], &[]), &again)
    );

    // A small batch still goes through collections.
    let small = sf
        .write(&writer, &contacts(5, "Small", &[], &[]))
        .await
        .unwrap();
    assert_eq!(small, vec![RowResult::Updated; 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_inserts_updates_and_deletes_by_record_id() {
    let emulator = start_salesforce(addr(), EmulatorConfig::default())
        .await
        .unwrap();
    emulator
        .handle()
        .set_bulk_processing_delay(Duration::from_millis(20));
    let test = runtime();
    let mut sf = instance(
        &test,
        "salesforce",
        plugins::SALESFORCE,
        &emulator.base_url(),
    )
    .await;
    let config = sf_config(&emulator, serde_json::json!({}));
    let insert = sf
        .open_writer(&config, &target("Account", WriteMode::Insert, ""))
        .await
        .unwrap();
    let names = batch(
        &["Name", "NumberOfEmployees"],
        vec![
            vec![text("Acme"), Value::Integer(10)],
            vec![text("Globex"), Value::Integer(20)],
            vec![Value::Null, Value::Integer(30)],
        ],
    );
    let results = sf.write(&insert, &names).await.unwrap();
    assert_eq!(&results[..2], &[RowResult::Created, RowResult::Created]);
    assert!(
        matches!(&results[2], RowResult::Rejected(m) if m.starts_with("REQUIRED_FIELD_MISSING"))
    );

    let ids: Vec<String> = emulator
        .handle()
        .records("Account")
        .iter()
        .map(|r| r["Id"].as_str().unwrap().to_string())
        .collect();
    let update = sf
        .open_writer(&config, &target("Account", WriteMode::Update, "Id"))
        .await
        .unwrap();
    let renamed = batch(
        &["Id", "Name"],
        vec![
            vec![text(&ids[0]), text("Acme Corp")],
            vec![text(&ids[1]), text("Globex Corp")],
            vec![Value::Null, text("nobody")],
        ],
    );
    let results = sf.write(&update, &renamed).await.unwrap();
    assert_eq!(&results[..2], &[RowResult::Updated, RowResult::Updated]);
    assert!(
        matches!(&results[2], RowResult::Rejected(m) if m.contains("row 2") && m.contains("`Id` is empty"))
    );
    let stored: Vec<String> = emulator
        .handle()
        .records("Account")
        .iter()
        .map(|r| r["Name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stored, vec!["Acme Corp", "Globex Corp"]);

    // Deletes through Bulk (threshold 2), by record id.
    let bulk_config = sf_config(
        &emulator,
        serde_json::json!({"bulk_threshold": 2, "poll_interval_ms": 20}),
    );
    let delete = sf
        .open_writer(&bulk_config, &target("Account", WriteMode::Delete, "Id"))
        .await
        .unwrap();
    let gone = batch(&["Id"], ids.iter().map(|id| vec![text(id)]).collect());
    assert_eq!(
        sf.write(&delete, &gone).await.unwrap(),
        vec![RowResult::Deleted; 2]
    );
    assert_eq!(emulator.handle().record_count("Account"), 0);
    assert_eq!(emulator.handle().bulk_jobs()[0]["operation"], "delete");

    let err = sf
        .open_writer(&config, &target("Account", WriteMode::Upsert, "Name"))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err.plugin_error(), Some(PluginError::Config(m)) if m.contains("external id")),
        "{err}"
    );
    let err = sf
        .open_writer(&config, &target("Nope__c", WriteMode::Insert, ""))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err.plugin_error(), Some(PluginError::Config(m)) if m.contains("Nope__c")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_throttling_is_rate_limited() {
    let emulator = start_salesforce(addr(), EmulatorConfig::default())
        .await
        .unwrap();
    let test = runtime();
    let mut sf = instance(
        &test,
        "salesforce",
        plugins::SALESFORCE,
        &emulator.base_url(),
    )
    .await;
    let config = sf_config(&emulator, serde_json::json!({}));
    let writer = sf
        .open_writer(
            &config,
            &target("Contact", WriteMode::Upsert, "External_Id__c"),
        )
        .await
        .unwrap();
    emulator
        .handle()
        .set_rate_limit(Some(RateLimit::new(1, Duration::from_secs(60))));

    // The first request of 200 goes through; the rest are handed back.
    let results = sf
        .write(&writer, &contacts(300, "T", &[], &[]))
        .await
        .unwrap();
    assert_eq!(&results[..200], &vec![RowResult::Created; 200][..]);
    assert_eq!(
        &results[200..],
        &vec![RowResult::RateLimited(1000); 100][..]
    );

    // Nothing written: the whole call is rate-limited.
    let failure = sf
        .write(&writer, &contacts(3, "T", &[], &[]))
        .await
        .err()
        .unwrap();
    assert_eq!(rate_limit_ms(&failure), 1000);
    assert!(
        failure.to_string().contains("REQUEST_LIMIT_EXCEEDED"),
        "{failure}"
    );
    assert!(emulator.handle().stats().throttled >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_survives_injected_server_errors() {
    let config = EmulatorConfig {
        faults: FaultConfig {
            server_error_probability: 0.05,
            ..FaultConfig::none()
        },
        ..EmulatorConfig::default()
    };
    let emulator = start_salesforce(addr(), config).await.unwrap();
    let test = runtime();
    let mut sf = instance(
        &test,
        "salesforce",
        plugins::SALESFORCE,
        &emulator.base_url(),
    )
    .await;
    let config = sf_config(&emulator, serde_json::json!({}));
    let writer = loop {
        match sf
            .open_writer(
                &config,
                &target("Contact", WriteMode::Upsert, "External_Id__c"),
            )
            .await
        {
            Ok(w) => break w,
            Err(f) if f.is_retryable() => continue,
            Err(f) => panic!("{f}"),
        }
    };
    let input = contacts(2000, "F", &[3, 999], &[1500]);
    let mut results = Vec::new();
    for start in (0..2000).step_by(200) {
        let chunk = Batch {
            columns: input.columns.clone(),
            rows: input.rows[start..start + 200].to_vec(),
        };
        results.extend(write_until_done(&mut sf, &writer, &chunk).await);
    }
    assert_eq!(
        rejected(&results)
            .iter()
            .map(|(i, _)| *i)
            .collect::<Vec<_>>(),
        vec![3, 999, 1500]
    );
    assert!(
        emulator.handle().stats().server_errors_injected > 0,
        "faults were injected"
    );
    assert_eq!(
        stored_contacts(&emulator),
        expected_contacts(&input, &results)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_authenticates_with_a_jwt_bearer_assertion() {
    let emulator = start_salesforce(addr(), EmulatorConfig::default())
        .await
        .unwrap();
    let test = runtime();
    let mut sf = instance(
        &test,
        "salesforce",
        plugins::SALESFORCE,
        &emulator.base_url(),
    )
    .await;
    let config = serde_json::json!({
        "login_url": emulator.base_url(),
        "auth": {"flow": "jwt_bearer", "client_id": DEFAULT_CLIENT_ID, "username": "integration@example.com", "private_key": TEST_KEY},
    })
    .to_string();
    sf.check(&config).await.unwrap();
    assert_eq!(emulator.handle().issued_tokens()[0].grant, "jwt-bearer");
    let bad = config.replace(DEFAULT_CLIENT_ID, "someone-else");
    let err = sf.check(&bad).await.err().unwrap();
    assert!(
        matches!(err.plugin_error(), Some(PluginError::Auth(m)) if m.contains("invalid_grant")),
        "{err}"
    );
}

fn hs_contacts(n: usize, first: &str, bad_stage: &[usize], bad_email: &[usize]) -> Batch {
    let rows = (0..n)
        .map(|i| {
            let email = if bad_email.contains(&i) {
                format!("broken{i}@")
            } else {
                format!("person{i}@example.com")
            };
            let stage = if bad_stage.contains(&i) {
                "bogus"
            } else {
                "lead"
            };
            vec![text(&email), text(&format!("{first}{i}")), text(stage)]
        })
        .collect();
    batch(&["email", "firstname", "lifecyclestage"], rows)
}

/// `(email, firstname)` of every stored contact.
fn stored_hs_contacts(emulator: &RunningEmulator) -> BTreeSet<(String, String)> {
    emulator
        .handle()
        .records("contacts")
        .iter()
        .map(|r| {
            let p = &r["properties"];
            (
                p["email"].as_str().unwrap_or_default().to_string(),
                p["firstname"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn expected_hs_contacts(input: &Batch, results: &[RowResult]) -> BTreeSet<(String, String)> {
    input
        .rows
        .iter()
        .zip(results)
        .filter(|(_, r)| !matches!(r, RowResult::Rejected(_)))
        .map(|(row, _)| (cell(&row[0]), cell(&row[1])))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_upserts_contacts_and_isolates_invalid_rows() {
    let emulator = start_hubspot(addr(), EmulatorConfig::default())
        .await
        .unwrap();
    let test = runtime();
    let mut hs = instance(&test, "hubspot", plugins::HUBSPOT, &emulator.base_url()).await;
    let config = hs_config(&emulator, "contacts");
    hs.check(&config).await.unwrap();
    let objects = hs.discover(&config).await.unwrap();
    assert_eq!(objects.len(), 1);
    let email = objects[0]
        .fields
        .iter()
        .find(|f| f.name == "email")
        .unwrap();
    assert!(email.identifier);
    assert_eq!(objects[0].modes[0], WriteMode::Upsert);

    let writer = hs
        .open_writer(&config, &target("contacts", WriteMode::Upsert, "email"))
        .await
        .unwrap();
    let input = hs_contacts(150, "Ann", &[5], &[120]);
    let results = hs.write(&writer, &input).await.unwrap();
    let rejects = rejected(&results);
    assert_eq!(
        rejects.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![5, 120]
    );
    assert!(
        rejects[0]
            .1
            .starts_with("HTTP 400: VALIDATION_ERROR: Property values were not valid")
            && rejects[0].1.contains("INVALID_OPTION"),
        "{}",
        rejects[0].1
    );
    assert!(rejects[1].1.contains("INVALID_EMAIL"), "{}", rejects[1].1);
    assert_eq!(
        results.iter().filter(|r| **r == RowResult::Created).count(),
        148
    );
    assert_eq!(
        stored_hs_contacts(&emulator),
        expected_hs_contacts(&input, &results)
    );

    let again = hs_contacts(150, "Bea", &[5], &[120]);
    let results = hs.write(&writer, &again).await.unwrap();
    assert_eq!(
        results.iter().filter(|r| **r == RowResult::Updated).count(),
        148
    );
    assert_eq!(
        stored_hs_contacts(&emulator),
        expected_hs_contacts(&again, &results)
    );

    // Delete keyed on email: ids are looked up; an unknown email is already gone.
    let delete = hs
        .open_writer(&config, &target("contacts", WriteMode::Delete, "email"))
        .await
        .unwrap();
    let emails: Vec<Vec<Value>> = (0..150)
        .filter(|i| *i != 5 && *i != 120)
        .map(|i| vec![text(&format!("person{i}@example.com"))])
        .chain([vec![text("nobody@example.com")]])
        .collect();
    let results = hs.write(&delete, &batch(&["email"], emails)).await.unwrap();
    assert_eq!(results, vec![RowResult::Deleted; 149]);
    assert_eq!(emulator.handle().record_count("contacts"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_creates_updates_and_archives_companies_by_record_id() {
    let emulator = start_hubspot(addr(), EmulatorConfig::default())
        .await
        .unwrap();
    let test = runtime();
    let mut hs = instance(&test, "hubspot", plugins::HUBSPOT, &emulator.base_url()).await;
    let config = hs_config(&emulator, "companies");
    let create = hs
        .open_writer(&config, &target("companies", WriteMode::Insert, ""))
        .await
        .unwrap();
    let input = batch(
        &["name", "numberofemployees"],
        vec![
            vec![text("Acme"), Value::Integer(10)],
            vec![text("Globex"), text("many")],
            vec![text("Initech"), Value::Integer(30)],
        ],
    );
    let results = hs.write(&create, &input).await.unwrap();
    assert_eq!(results[0], RowResult::Created);
    assert!(
        matches!(&results[1], RowResult::Rejected(m) if m.starts_with("VALIDATION_ERROR: ") && m.contains("INVALID_NUMBER")),
        "{:?}",
        results[1]
    );
    assert_eq!(results[2], RowResult::Created);

    let ids: Vec<String> = emulator
        .handle()
        .records("companies")
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    let update = hs
        .open_writer(
            &config,
            &target("companies", WriteMode::Update, "hs_object_id"),
        )
        .await
        .unwrap();
    let renamed = batch(
        &["hs_object_id", "name"],
        vec![
            vec![text(&ids[0]), text("Acme Corp")],
            vec![text("999999"), text("Ghost")],
            vec![text(&ids[1]), text("Initech Inc")],
        ],
    );
    let results = hs.write(&update, &renamed).await.unwrap();
    assert_eq!(results[0], RowResult::Updated);
    assert!(
        matches!(&results[1], RowResult::Rejected(m) if m.starts_with("OBJECT_NOT_FOUND")),
        "{:?}",
        results[1]
    );
    assert_eq!(results[2], RowResult::Updated);
    let names: Vec<String> = emulator
        .handle()
        .records("companies")
        .iter()
        .map(|r| r["properties"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["Acme Corp", "Initech Inc"]);

    let archive = hs
        .open_writer(
            &config,
            &target("companies", WriteMode::Delete, "hs_object_id"),
        )
        .await
        .unwrap();
    let results = hs
        .write(
            &archive,
            &batch(
                &["hs_object_id"],
                ids.iter().map(|id| vec![text(id)]).collect(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(results, vec![RowResult::Deleted; 2]);
    assert_eq!(emulator.handle().record_count("companies"), 0);

    let err = hs
        .open_writer(&config, &target("companies", WriteMode::Upsert, "name"))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err.plugin_error(), Some(PluginError::Config(m)) if m.contains("not unique")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_throttling_is_rate_limited() {
    let emulator = start_hubspot(addr(), EmulatorConfig::default())
        .await
        .unwrap();
    let test = runtime();
    let mut hs = instance(&test, "hubspot", plugins::HUBSPOT, &emulator.base_url()).await;
    let config = hs_config(&emulator, "contacts");
    let writer = hs
        .open_writer(&config, &target("contacts", WriteMode::Upsert, "email"))
        .await
        .unwrap();
    emulator
        .handle()
        .set_rate_limit(Some(RateLimit::new(1, Duration::from_secs(10))));

    let results = hs
        .write(&writer, &hs_contacts(150, "R", &[], &[]))
        .await
        .unwrap();
    assert_eq!(&results[..100], &vec![RowResult::Created; 100][..]);
    assert!(
        results[100..]
            .iter()
            .all(|r| matches!(r, RowResult::RateLimited(ms) if *ms >= 1000)),
        "{:?}",
        &results[100]
    );

    let failure = hs
        .write(&writer, &hs_contacts(3, "R", &[], &[]))
        .await
        .err()
        .unwrap();
    let ms = rate_limit_ms(&failure);
    assert!((1000..=10_000).contains(&ms), "{ms}");
    assert!(
        failure.to_string().contains("TEN_SECONDLY_ROLLING"),
        "{failure}"
    );

    // A revoked token is an auth failure, not something to retry.
    emulator.handle().set_rate_limit(None);
    emulator.handle().expire_all_tokens();
    let failure = hs
        .write(&writer, &hs_contacts(1, "R", &[], &[]))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(failure.plugin_error(), Some(PluginError::Auth(_))),
        "{failure}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_survives_injected_server_errors() {
    let config = EmulatorConfig {
        faults: FaultConfig {
            server_error_probability: 0.05,
            ..FaultConfig::none()
        },
        ..EmulatorConfig::default()
    };
    let emulator = start_hubspot(addr(), config).await.unwrap();
    let test = runtime();
    let mut hs = instance(&test, "hubspot", plugins::HUBSPOT, &emulator.base_url()).await;
    let config = hs_config(&emulator, "contacts");
    let writer = loop {
        match hs
            .open_writer(&config, &target("contacts", WriteMode::Upsert, "email"))
            .await
        {
            Ok(w) => break w,
            Err(f) if f.is_retryable() => continue,
            Err(f) => panic!("{f}"),
        }
    };
    let input = hs_contacts(1000, "F", &[17], &[640]);
    let mut results = Vec::new();
    for start in (0..1000).step_by(100) {
        let chunk = Batch {
            columns: input.columns.clone(),
            rows: input.rows[start..start + 100].to_vec(),
        };
        results.extend(write_until_done(&mut hs, &writer, &chunk).await);
    }
    assert_eq!(
        rejected(&results)
            .iter()
            .map(|(i, _)| *i)
            .collect::<Vec<_>>(),
        vec![17, 640]
    );
    assert!(emulator.handle().stats().server_errors_injected > 0);
    assert_eq!(
        stored_hs_contacts(&emulator),
        expected_hs_contacts(&input, &results)
    );
}
