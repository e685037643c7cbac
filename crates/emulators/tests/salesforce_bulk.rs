//! Salesforce Bulk API 2.0 ingest: job states, upload rules and result CSVs.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use sluice_emulators::{EmulatorConfig, RunningEmulator};

/// Generous: the machine is shared, so polls wait long but finish as soon as done.
const POLL_TIMEOUT: Duration = Duration::from_secs(60);

struct Bulk {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Bulk {
    async fn new(sf: &RunningEmulator) -> Self {
        let client = client();
        let base = sf.base_url();
        let token = sf_token(&client, &base).await;
        Self {
            client,
            base,
            token,
        }
    }

    fn url(&self, path: &str) -> String {
        sf_url(&self.base, &format!("/jobs/ingest{path}"))
    }

    async fn create(&self, body: Value) -> (u16, Value) {
        let (status, _, body) = split(
            self.client
                .post(self.url(""))
                .bearer_auth(&self.token)
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        (status, body)
    }

    async fn upload(&self, job: &str, csv: &str) -> (u16, Value) {
        let response = self
            .client
            .put(self.url(&format!("/{job}/batches")))
            .bearer_auth(&self.token)
            .header("Content-Type", "text/csv")
            .body(csv.to_owned())
            .send()
            .await
            .unwrap();
        let (status, _, body) = split(response).await;
        (status, body)
    }

    async fn set_state(&self, job: &str, state: &str) -> (u16, Value) {
        let response = self
            .client
            .patch(self.url(&format!("/{job}")))
            .bearer_auth(&self.token)
            .json(&json!({"state": state}))
            .send()
            .await
            .unwrap();
        let (status, _, body) = split(response).await;
        (status, body)
    }

    async fn info(&self, job: &str) -> Value {
        let (status, _, body) = split(
            self.client
                .get(self.url(&format!("/{job}")))
                .bearer_auth(&self.token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn csv(&self, job: &str, which: &str) -> (u16, String, String) {
        let response = self
            .client
            .get(self.url(&format!("/{job}/{which}/")))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, content_type, response.text().await.unwrap())
    }

    /// Polls until a terminal state; returns every distinct state seen, in order.
    async fn wait_terminal(&self, job: &str) -> (Vec<String>, Value) {
        let started = Instant::now();
        let mut seen: Vec<String> = Vec::new();
        loop {
            let info = self.info(job).await;
            let state = info["state"].as_str().unwrap().to_owned();
            if seen.last() != Some(&state) {
                seen.push(state.clone());
            }
            if matches!(state.as_str(), "JobComplete" | "Failed" | "Aborted") {
                return (seen, info);
            }
            assert!(
                started.elapsed() < POLL_TIMEOUT,
                "job {job} stuck in {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn bulk_config(delay_ms: u64) -> EmulatorConfig {
    let mut config = EmulatorConfig::default();
    config.salesforce.bulk_processing_delay = Duration::from_millis(delay_ms);
    config
}

#[tokio::test]
async fn upsert_job_progresses_through_states_and_reports_results() {
    let sf = salesforce(bulk_config(150)).await;
    let bulk = Bulk::new(&sf).await;
    let (status, job) = bulk
        .create(json!({"object": "Contact", "operation": "upsert", "externalIdFieldName": "External_Id__c", "contentType": "CSV", "lineEnding": "LF", "columnDelimiter": "COMMA"}))
        .await;
    assert_eq!(status, 200, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("750"));
    assert_eq!(job["state"], "Open");
    assert_eq!(job["externalIdFieldName"], "External_Id__c");
    assert_eq!(
        job["contentUrl"],
        format!("services/data/v60.0/jobs/ingest/{id}/batches")
    );

    let csv = "External_Id__c,LastName,Email\nB1,One,one@example.com\nB2,Two,not-an-email\nB3,,three@example.com\nB4,Four,four@example.com\n";
    let (status, body) = bulk.upload(&id, csv).await;
    assert_eq!((status, body), (201, Value::Null));
    let (status, body) = bulk.upload(&id, csv).await;
    assert_eq!(status, 400);
    assert_eq!(body[0]["errorCode"], "BULK_API_ERROR");

    // Nothing happens before UploadComplete, however long we wait.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let info = bulk.info(&id).await;
    assert_eq!(info["state"], "Open");
    assert_eq!(sf.handle().record_count("Contact"), 0);
    let (status, _, _) = bulk.csv(&id, "successfulResults").await;
    assert_eq!(status, 409);

    let (status, closed) = bulk.set_state(&id, "UploadComplete").await;
    assert_eq!(status, 200);
    assert_eq!(closed["state"], "UploadComplete");
    let (seen, info) = bulk.wait_terminal(&id).await;
    let order = ["UploadComplete", "InProgress", "JobComplete"];
    let positions: Vec<usize> = seen
        .iter()
        .map(|s| order.iter().position(|o| o == s).expect("unexpected state"))
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "states out of order: {seen:?}"
    );
    assert_eq!(info["state"], "JobComplete");
    assert_eq!(info["numberRecordsProcessed"], 4);
    assert_eq!(info["numberRecordsFailed"], 2);

    let (status, content_type, ok) = bulk.csv(&id, "successfulResults").await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/csv"));
    let lines: Vec<&str> = ok.lines().collect();
    assert_eq!(
        lines[0],
        "\"sf__Id\",\"sf__Created\",\"External_Id__c\",\"LastName\",\"Email\""
    );
    assert_eq!(lines.len(), 3);
    assert!(
        lines[1].ends_with(",\"true\",\"B1\",\"One\",\"one@example.com\""),
        "{}",
        lines[1]
    );
    let b1 = sf
        .handle()
        .find_record("Contact", "External_Id__c", "B1")
        .unwrap();
    assert!(lines[1].starts_with(&format!("\"{}\"", b1["Id"].as_str().unwrap())));

    let (_, _, failed) = bulk.csv(&id, "failedResults").await;
    let failed: Vec<&str> = failed.lines().collect();
    assert_eq!(
        failed[0],
        "\"sf__Id\",\"sf__Error\",\"External_Id__c\",\"LastName\",\"Email\""
    );
    assert_eq!(failed[1], "\"\",\"INVALID_EMAIL_ADDRESS:Email: invalid email address: not-an-email\",\"B2\",\"Two\",\"not-an-email\"");
    assert_eq!(failed[2], "\"\",\"REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]\",\"B3\",\"\",\"three@example.com\"");
    let (_, _, unprocessed) = bulk.csv(&id, "unprocessedrecords").await;
    assert_eq!(
        unprocessed.trim(),
        "\"External_Id__c\",\"LastName\",\"Email\""
    );

    // A second upsert job updates (sf__Created false) and flags in-file duplicates.
    let (_, job2) = bulk.create(json!({"object": "Contact", "operation": "upsert", "externalIdFieldName": "External_Id__c", "columnDelimiter": "PIPE"})).await;
    let id2 = job2["id"].as_str().unwrap().to_owned();
    bulk.upload(
        &id2,
        "External_Id__c|LastName\nB1|Uno\nB9|Dup A\nb9|Dup B\n",
    )
    .await;
    bulk.set_state(&id2, "UploadComplete").await;
    let (_, info2) = bulk.wait_terminal(&id2).await;
    assert_eq!(
        (
            info2["numberRecordsProcessed"].as_u64(),
            info2["numberRecordsFailed"].as_u64()
        ),
        (Some(3), Some(2))
    );
    let (_, _, ok2) = bulk.csv(&id2, "successfulResults").await;
    assert!(
        ok2.lines()
            .nth(1)
            .unwrap()
            .ends_with("|\"false\"|\"B1\"|\"Uno\""),
        "{ok2}"
    );
    let (_, _, failed2) = bulk.csv(&id2, "failedResults").await;
    assert!(
        failed2.contains("DUPLICATE_EXTERNAL_ID:Duplicate external id specified: B9"),
        "{failed2}"
    );
    assert_eq!(
        sf.handle()
            .find_record("Contact", "External_Id__c", "B1")
            .unwrap()["LastName"],
        "Uno"
    );

    let (status, _, _) = split(
        bulk.client
            .delete(bulk.url(&format!("/{id}")))
            .bearer_auth(&bulk.token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 204);
    let (status, _, list) = split(
        bulk.client
            .get(bulk.url(""))
            .bearer_auth(&bulk.token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list["records"].as_array().unwrap().len(), 1);
    assert_eq!(list["done"], true);
    sf.shutdown().await.unwrap();
}

#[tokio::test]
async fn invalid_job_definitions_are_rejected() {
    let sf = salesforce(bulk_config(10)).await;
    let bulk = Bulk::new(&sf).await;
    let (status, body) = bulk
        .create(json!({"object": "Contact", "operation": "upsert"}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body[0]["message"],
        "External ID was blank for Contact. An External ID must be specified for upsert."
    );
    let (status, body) = bulk
        .create(json!({"object": "Contact", "operation": "merge"}))
        .await;
    assert_eq!(
        (status, body[0]["errorCode"].as_str()),
        (400, Some("INVALIDJOB"))
    );
    let (status, _) = bulk
        .create(json!({"object": "Nope__c", "operation": "insert"}))
        .await;
    assert_eq!(status, 400);
    let (status, _) = bulk
        .create(json!({"object": "Account", "operation": "insert", "contentType": "JSON"}))
        .await;
    assert_eq!(status, 400);
    let (status, _) = bulk
        .create(json!({"object": "Account", "operation": "insert", "columnDelimiter": "COLON"}))
        .await;
    assert_eq!(status, 400);
    let (status, _) = bulk
        .create(json!({"object": "Account", "operation": "upsert", "externalIdFieldName": "Name"}))
        .await;
    assert_eq!(status, 400);
    sf.shutdown().await.unwrap();
}

#[tokio::test]
async fn job_level_problems_end_in_failed_with_unprocessed_rows() {
    let sf = salesforce(bulk_config(20)).await;
    let bulk = Bulk::new(&sf).await;
    let (_, job) = bulk
        .create(json!({"object": "Account", "operation": "insert"}))
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    bulk.upload(&id, "Name,Bogus__c\nAcme,1\nGlobex,2\n").await;
    bulk.set_state(&id, "UploadComplete").await;
    let (_, info) = bulk.wait_terminal(&id).await;
    assert_eq!(info["state"], "Failed");
    assert_eq!(
        info["errorMessage"],
        "InvalidBatch : Field name not found : Bogus__c"
    );
    let (status, _, unprocessed) = bulk.csv(&id, "unprocessedrecords").await;
    assert_eq!(status, 200);
    assert_eq!(
        unprocessed.lines().collect::<Vec<_>>(),
        vec![
            "\"Name\",\"Bogus__c\"",
            "\"Acme\",\"1\"",
            "\"Globex\",\"2\""
        ]
    );
    assert_eq!(sf.handle().record_count("Account"), 0);

    // Forced failure through the handle.
    sf.handle()
        .set_bulk_failure(Some("Forced by test".to_owned()));
    let (_, job) = bulk
        .create(json!({"object": "Account", "operation": "insert"}))
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    bulk.upload(&id, "Name\nAcme\n").await;
    bulk.set_state(&id, "UploadComplete").await;
    let (_, info) = bulk.wait_terminal(&id).await;
    assert_eq!(
        (info["state"].as_str(), info["errorMessage"].as_str()),
        (Some("Failed"), Some("Forced by test"))
    );
    sf.handle().set_bulk_failure(None);

    // Abort before closing: no processing, rows unprocessed, state conflicts after.
    let (_, job) = bulk
        .create(json!({"object": "Account", "operation": "insert"}))
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    bulk.upload(&id, "Name\nAcme\n").await;
    let (status, aborted) = bulk.set_state(&id, "Aborted").await;
    assert_eq!((status, aborted["state"].as_str()), (200, Some("Aborted")));
    let (status, body) = bulk.set_state(&id, "UploadComplete").await;
    assert_eq!(
        (status, body[0]["errorCode"].as_str()),
        (409, Some("INVALIDJOBSTATE"))
    );
    let (status, _) = bulk.upload(&id, "Name\nX\n").await;
    assert_eq!(status, 409);
    let (_, _, unprocessed) = bulk.csv(&id, "unprocessedrecords").await;
    assert!(unprocessed.contains("\"Acme\""));
    assert_eq!(sf.handle().record_count("Account"), 0);
    sf.shutdown().await.unwrap();
}

#[tokio::test]
async fn insert_update_and_delete_jobs() {
    let sf = salesforce(bulk_config(10)).await;
    let bulk = Bulk::new(&sf).await;
    let run = |object: &'static str, operation: &'static str, csv: String| {
        let bulk = &bulk;
        async move {
            let (_, job) = bulk
                .create(json!({"object": object, "operation": operation, "lineEnding": "CRLF"}))
                .await;
            let id = job["id"].as_str().unwrap().to_owned();
            assert_eq!(bulk.upload(&id, &csv).await.0, 201);
            bulk.set_state(&id, "UploadComplete").await;
            let (_, info) = bulk.wait_terminal(&id).await;
            (id, info)
        }
    };
    let (id, info) = run(
        "Account",
        "insert",
        "Name,NumberOfEmployees\r\nAcme,10\r\nGlobex,many\r\n".to_owned(),
    )
    .await;
    assert_eq!(
        (
            info["numberRecordsProcessed"].as_u64(),
            info["numberRecordsFailed"].as_u64()
        ),
        (Some(2), Some(1))
    );
    let (_, _, ok) = bulk.csv(&id, "successfulResults").await;
    assert!(ok.contains("\r\n"), "CRLF line endings expected");
    let acme = sf.handle().find_record("Account", "Name", "Acme").unwrap();
    assert_eq!(acme["NumberOfEmployees"], 10);
    let acme_id = acme["Id"].as_str().unwrap().to_owned();

    let (_, info) = run(
        "Account",
        "update",
        format!("Id,Website\r\n{acme_id},https://acme.example\r\n001EM00000000zzAAA,x\r\n"),
    )
    .await;
    assert_eq!(info["numberRecordsFailed"], 1);
    assert_eq!(
        sf.handle().records("Account")[0]["Website"],
        "https://acme.example"
    );

    let (id, info) = run(
        "Account",
        "delete",
        format!("Id\r\n{acme_id}\r\n{acme_id}\r\n"),
    )
    .await;
    assert_eq!(
        (
            info["numberRecordsProcessed"].as_u64(),
            info["numberRecordsFailed"].as_u64()
        ),
        (Some(2), Some(1))
    );
    let (_, _, failed) = bulk.csv(&id, "failedResults").await;
    assert!(
        failed.contains(&format!(
            "\"{acme_id}\",\"ENTITY_IS_DELETED:entity is deleted\""
        )),
        "{failed}"
    );
    assert_eq!(sf.handle().record_count("Account"), 0);
    assert_eq!(sf.handle().bulk_jobs().len(), 3);
    sf.shutdown().await.unwrap();
}
