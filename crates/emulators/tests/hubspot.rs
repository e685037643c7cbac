//! HubSpot emulator: auth, batch endpoints, validation, 207, rate limits, properties.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use sluice_emulators::{EmulatorConfig, FieldSpec, FieldType, ObjectSpec, RateLimit};

fn upsert_input(email: &str, first: &str) -> Value {
    json!({"id": email, "idProperty": "email", "properties": {"firstname": first}})
}

#[tokio::test]
async fn bearer_tokens_are_checked() {
    let hs = hubspot(EmulatorConfig::default()).await;
    let client = client();
    let base = hs.base_url();
    let url = hs_url(&base, "/crm/v3/properties/contacts");

    let (status, _, body) = split(client.get(&url).send().await.unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(body["status"], "error");
    assert_eq!(body["category"], "INVALID_AUTHENTICATION");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .starts_with("Authentication credentials not found."));
    assert_eq!(body["correlationId"].as_str().unwrap().len(), 36);
    let (status, _, _) = split(
        client
            .get(&url)
            .bearer_auth("pat-wrong")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);

    let (status, _, _) = split(
        client
            .get(&url)
            .bearer_auth(hs_token())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    hs.handle().expire_all_tokens();
    let (status, _, body) = split(
        client
            .get(&url)
            .bearer_auth(hs_token())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["category"], "EXPIRED_AUTHENTICATION");
    hs.handle().add_token("pat-new");
    let (status, _, _) = split(
        client
            .get(&url)
            .bearer_auth("pat-new")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(hs.handle().stats().unauthorized, 3);
    hs.shutdown().await.unwrap();
}

#[tokio::test]
async fn upsert_by_email_reports_new_flags() {
    let hs = hubspot(EmulatorConfig::default()).await;
    let client = client();
    let base = hs.base_url();
    let path = "/crm/v3/objects/contacts/batch/upsert";
    let (status, _, first) = hs_post(&client, &base, path, &json!({"inputs": [upsert_input("a@example.com", "Ann"), upsert_input("b@example.com", "Bob")]})).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["status"], "COMPLETE");
    let results = first["results"].as_array().unwrap();
    assert!(results.iter().all(|r| r["new"] == true));
    assert_eq!(results[0]["properties"]["email"], "a@example.com");
    assert_eq!(results[0]["properties"]["hs_object_id"], results[0]["id"]);
    assert_eq!(results[0]["archived"], false);

    let (status, _, second) = hs_post(&client, &base, path, &json!({"inputs": [upsert_input("A@Example.com", "Annie"), upsert_input("c@example.com", "Cy")]})).await;
    assert_eq!(status, 200);
    assert_eq!(second["results"][0]["new"], false);
    assert_eq!(second["results"][0]["id"], first["results"][0]["id"]);
    assert_eq!(second["results"][1]["new"], true);
    assert_eq!(hs.handle().record_count("contacts"), 3);
    let annie = hs
        .handle()
        .find_record("contacts", "email", "a@example.com")
        .unwrap();
    assert_eq!(annie["properties"]["firstname"], "Annie");

    let (status, _, body) = hs_post(&client, &base, path, &json!({"inputs": [upsert_input("d@example.com", "D"), upsert_input("D@example.com", "D2")]})).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        "Duplicate IDs found in batch input: [d@example.com]. IDs must be unique"
    );
    let (status, _, body) = hs_post(
        &client,
        &base,
        path,
        &json!({"inputs": [{"id": "x", "idProperty": "firstname", "properties": {}}]}),
    )
    .await;
    assert_eq!(
        (status, body["category"].as_str()),
        (400, Some("VALIDATION_ERROR"))
    );
    hs.shutdown().await.unwrap();
}

#[tokio::test]
async fn batches_over_100_inputs_fail_whole() {
    let hs = hubspot(EmulatorConfig::default()).await;
    let client = client();
    let base = hs.base_url();
    let inputs = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| upsert_input(&format!("u{i}@example.com"), "U"))
            .collect()
    };
    let (status, _, body) = hs_post(
        &client,
        &base,
        "/crm/v3/objects/contacts/batch/upsert",
        &json!({"inputs": inputs(101)}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        "Batch size limit exceeded: 101 inputs were provided, but at most 100 are allowed."
    );
    assert_eq!(hs.handle().record_count("contacts"), 0);
    let (status, _, body) = hs_post(
        &client,
        &base,
        "/crm/v3/objects/contacts/batch/upsert",
        &json!({"inputs": inputs(100)}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["results"].as_array().unwrap().len(), 100);

    let (status, _, body) = split(
        client
            .post(hs_url(&base, "/crm/v3/objects/contacts/batch/create"))
            .bearer_auth(hs_token())
            .header("Content-Type", "application/json")
            .body("{\"inputs\": [}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid input JSON on line 1"),
        "{body}"
    );
    hs.shutdown().await.unwrap();
}

#[tokio::test]
async fn validation_errors_fail_the_whole_request_without_trace_ids() {
    let hs = hubspot(EmulatorConfig::default()).await;
    let client = client();
    let base = hs.base_url();
    let body = json!({"inputs": [
        {"properties": {"email": "ok@example.com", "firstname": "Ok"}},
        {"properties": {"email": "not-an-email"}},
        {"properties": {"email": "x@example.com", "shoe_size": "44", "lifecyclestage": "prospect"}},
    ]});
    let (status, _, error) = hs_post(
        &client,
        &base,
        "/crm/v3/objects/contacts/batch/create",
        &body,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error["status"], "error");
    assert_eq!(error["category"], "VALIDATION_ERROR");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("Property values were not valid: [{"),
        "{error}"
    );
    let codes: Vec<(&str, &str)> = error["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["code"].as_str().unwrap(), e["in"].as_str().unwrap()))
        .collect();
    // Errors are listed input by input, properties in name order.
    assert_eq!(
        codes,
        vec![
            ("INVALID_EMAIL", "email"),
            ("INVALID_OPTION", "lifecyclestage"),
            ("PROPERTY_DOESNT_EXIST", "shoe_size")
        ]
    );
    assert_eq!(
        error["errors"][0]["message"],
        "Email address not-an-email is invalid"
    );
    assert_eq!(
        error["errors"][2]["message"],
        "Property \"shoe_size\" does not exist"
    );
    assert_eq!(
        hs.handle().record_count("contacts"),
        0,
        "a failed batch writes nothing"
    );

    // Upsert and update fail whole as well.
    let (status, _, _) = hs_post(
        &client,
        &base,
        "/crm/v3/objects/contacts/batch/upsert",
        &json!({"inputs": [upsert_input("good@example.com", "G"), upsert_input("bad-email", "B")]}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(hs.handle().record_count("contacts"), 0);
    let (status, _, error) = hs_post(
        &client,
        &base,
        "/crm/v3/objects/contacts/batch/create",
        &json!({"inputs": [{"properties": {"hs_object_id": "5"}}]}),
    )
    .await;
    assert_eq!(
        (status, error["errors"][0]["code"].as_str()),
        (400, Some("READ_ONLY_VALUE"))
    );
    hs.shutdown().await.unwrap();
}

#[tokio::test]
async fn create_with_trace_ids_returns_207_multi_status() {
    let hs = hubspot(EmulatorConfig::default()).await;
    let client = client();
    let base = hs.base_url();
    let body = json!({"inputs": [
        {"properties": {"email": "one@example.com"}, "objectWriteTraceId": "t1"},
        {"properties": {"email": "broken"}, "objectWriteTraceId": "t2"},
        {"properties": {"email": "three@example.com", "firstname": "Three"}, "objectWriteTraceId": "t3"},
        {"properties": {"email": "ONE@example.com"}, "objectWriteTraceId": "t4"},
    ]});
    let (status, _, response) = hs_post(
        &client,
        &base,
        "/crm/v3/objects/contacts/batch/create",
        &body,
    )
    .await;
    assert_eq!(status, 207);
    assert_eq!(response["status"], "COMPLETE");
    assert_eq!(response["numErrors"], 2);
    let results = response["results"].as_array().unwrap();
    let traces: Vec<&str> = results
        .iter()
        .map(|r| r["objectWriteTraceId"].as_str().unwrap())
        .collect();
    assert_eq!(traces, vec!["t1", "t3"]);
    let errors = response["errors"].as_array().unwrap();
    assert_eq!(errors[0]["context"]["objectWriteTraceId"], json!(["t2"]));
    assert_eq!(errors[0]["category"], "VALIDATION_ERROR");
    assert_eq!(errors[0]["errors"][0]["code"], "INVALID_EMAIL");
    assert_eq!(errors[1]["context"]["objectWriteTraceId"], json!(["t4"]));
    assert_eq!(errors[1]["category"], "CONFLICT");
    assert_eq!(hs.handle().record_count("contacts"), 2);

    let (status, _, response) = hs_post(&client, &base, "/crm/v3/objects/contacts/batch/create", &json!({"inputs": [{"properties": {"email": "four@example.com"}, "objectWriteTraceId": "t5"}]})).await;
    assert_eq!(status, 201);
    assert!(response.get("errors").is_none());

    // Without trace ids a taken unique value is a whole-request 409.
    let (status, _, response) = hs_post(
        &client,
        &base,
        "/crm/v3/objects/contacts/batch/create",
        &json!({"inputs": [{"properties": {"email": "one@example.com"}}]}),
    )
    .await;
    let existing = hs
        .handle()
        .find_record("contacts", "email", "one@example.com")
        .unwrap();
    assert_eq!(status, 409);
    assert_eq!(
        response["message"],
        format!(
            "Contact already exists. Existing ID: {}",
            existing["id"].as_str().unwrap()
        )
    );
    hs.shutdown().await.unwrap();
}

#[tokio::test]
async fn update_read_and_archive() {
    let hs = hubspot(EmulatorConfig::default()).await;
    let client = client();
    let base = hs.base_url();
    let (_, _, created) = hs_post(
        &client,
        &base,
        "/crm/v3/objects/companies/batch/create",
        &json!({"inputs": [
            {"properties": {"name": "Acme", "domain": "acme.example", "numberofemployees": 10}},
            {"properties": {"name": "Globex", "domain": "globex.example"}},
        ]}),
    )
    .await;
    let acme = created["results"][0]["id"].as_str().unwrap().to_owned();
    let globex = created["results"][1]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created["results"][0]["properties"]["numberofemployees"],
        "10"
    );

    let (status, _, updated) = hs_post(
        &client,
        &base,
        "/crm/v3/objects/companies/batch/update",
        &json!({"inputs": [
            {"id": acme, "properties": {"name": "Acme Corp", "domain": ""}},
            {"id": "999999999", "properties": {"name": "Ghost"}},
        ]}),
    )
    .await;
    assert_eq!(status, 207);
    assert_eq!(updated["results"][0]["properties"]["name"], "Acme Corp");
    assert!(
        updated["results"][0]["properties"].get("domain").is_none(),
        "empty string clears"
    );
    assert_eq!(updated["errors"][0]["category"], "OBJECT_NOT_FOUND");
    assert_eq!(updated["errors"][0]["context"]["ids"], json!(["999999999"]));
    let (status, _, bad) = hs_post(
        &client,
        &base,
        "/crm/v3/objects/companies/batch/update",
        &json!({"inputs": [{"id": acme, "properties": {"numberofemployees": "lots"}}]}),
    )
    .await;
    assert_eq!(
        (status, bad["errors"][0]["code"].as_str()),
        (400, Some("INVALID_NUMBER"))
    );

    let (status, _, read) = hs_post(&client, &base, "/crm/v3/objects/companies/batch/read", &json!({"properties": ["name", "numberofemployees"], "inputs": [{"id": acme}, {"id": globex}]})).await;
    assert_eq!(status, 200);
    assert_eq!(
        read["results"][0]["properties"],
        json!({"name": "Acme Corp", "numberofemployees": "10"})
    );
    assert_eq!(
        read["results"][1]["properties"]["numberofemployees"],
        Value::Null
    );

    let (status, _, body) = hs_post(
        &client,
        &base,
        "/crm/v3/objects/companies/batch/archive",
        &json!({"inputs": [{"id": acme}, {"id": "424242"}]}),
    )
    .await;
    assert_eq!((status, body), (204, Value::Null));
    assert_eq!(hs.handle().record_count("companies"), 1);
    let (status, _, read) = hs_post(
        &client,
        &base,
        "/crm/v3/objects/companies/batch/read",
        &json!({"inputs": [{"id": acme}]}),
    )
    .await;
    assert_eq!(status, 207);
    assert_eq!(read["errors"][0]["message"], "Could not get some COMPANY objects, they may be deleted or not exist. Check that ids are valid.");

    let (status, _, one) = split(
        client
            .get(hs_url(
                &base,
                &format!("/crm/v3/objects/companies/{globex}?properties=name"),
            ))
            .bearer_auth(hs_token())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, one["properties"]["name"].as_str()),
        (200, Some("Globex"))
    );
    let (status, _, list) = split(
        client
            .get(hs_url(&base, "/crm/v3/objects/0-2?limit=1"))
            .bearer_auth(hs_token())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list["results"].as_array().unwrap().len(), 1);
    let (status, _, body) = hs_post(
        &client,
        &base,
        "/crm/v3/objects/widgets/batch/read",
        &json!({"inputs": []}),
    )
    .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (400, Some("Unable to infer object type from: widgets"))
    );
    hs.shutdown().await.unwrap();
}

#[tokio::test]
async fn rate_limits_answer_429_with_policy_and_headers() {
    let config = EmulatorConfig {
        rate_limit: Some(RateLimit::new(3, Duration::from_secs(600))),
        ..EmulatorConfig::default()
    };
    let hs = hubspot(config).await;
    let client = client();
    let base = hs.base_url();
    let url = hs_url(&base, "/crm/v3/properties/contacts");
    for remaining in [2, 1, 0] {
        let (status, headers, _) = split(
            client
                .get(&url)
                .bearer_auth(hs_token())
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "X-HubSpot-RateLimit-Max"), "3");
        assert_eq!(
            header(&headers, "X-HubSpot-RateLimit-Remaining"),
            remaining.to_string()
        );
        assert_eq!(
            header(&headers, "X-HubSpot-RateLimit-Interval-Milliseconds"),
            "600000"
        );
        assert_eq!(header(&headers, "X-HubSpot-RateLimit-Daily"), "1000000");
    }
    let (status, headers, body) = split(
        client
            .get(&url)
            .bearer_auth(hs_token())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 429);
    assert_eq!(body["status"], "error");
    assert_eq!(
        body["message"],
        "You have reached your ten_secondly_rolling limit."
    );
    assert_eq!(body["errorType"], "RATE_LIMIT");
    assert_eq!(body["policyName"], "TEN_SECONDLY_ROLLING");
    assert!(body["correlationId"].is_string());
    assert_eq!(header(&headers, "X-HubSpot-RateLimit-Remaining"), "0");
    let retry_after: u64 = header(&headers, "Retry-After").parse().unwrap();
    assert!((1..=600).contains(&retry_after));

    hs.handle().set_rate_limit(None);
    // Throttled calls do not count against the daily allowance: 3 were served.
    assert_eq!(hs.handle().daily_usage(), 3);
    hs.handle().set_daily_limit(3);
    let (status, headers, body) = split(
        client
            .get(&url)
            .bearer_auth(hs_token())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 429);
    assert_eq!(body["policyName"], "DAILY");
    assert_eq!(body["message"], "You have reached your daily limit.");
    assert_eq!(header(&headers, "X-HubSpot-RateLimit-Daily-Remaining"), "0");
    // No limit set means HubSpot's own private-app budget, not none.
    assert_eq!(header(&headers, "X-HubSpot-RateLimit-Max"), "190");
    assert_eq!(
        header(&headers, "X-HubSpot-RateLimit-Interval-Milliseconds"),
        "10000"
    );
    assert_eq!(hs.handle().stats().throttled, 2);
    hs.shutdown().await.unwrap();
}

#[tokio::test]
async fn properties_and_custom_objects() {
    let hs = hubspot(EmulatorConfig::default()).await;
    let client = client();
    let base = hs.base_url();
    let (status, _, props) = split(
        client
            .get(hs_url(&base, "/crm/v3/properties/contacts"))
            .bearer_auth(hs_token())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let email = props["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "email")
        .unwrap();
    assert_eq!(
        (
            email["type"].as_str(),
            email["fieldType"].as_str(),
            email["hasUniqueValue"].as_bool()
        ),
        (Some("string"), Some("text"), Some(true))
    );
    let stage = props["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "lifecyclestage")
        .unwrap();
    assert_eq!(stage["type"], "enumeration");
    assert!(!stage["options"].as_array().unwrap().is_empty());

    // Create a unique property over HTTP and upsert companies by it.
    let (status, _, created) = hs_post(&client, &base, "/crm/v3/properties/companies", &json!({"name": "warehouse_id", "label": "Warehouse ID", "type": "string", "fieldType": "text", "groupName": "companyinformation", "hasUniqueValue": true})).await;
    assert_eq!(status, 201);
    assert_eq!(created["hasUniqueValue"], true);
    let (status, _, _) = hs_post(
        &client,
        &base,
        "/crm/v3/properties/companies",
        &json!({"name": "warehouse_id", "type": "string"}),
    )
    .await;
    assert_eq!(status, 409);
    let (status, _, upserted) = hs_post(&client, &base, "/crm/v3/objects/companies/batch/upsert", &json!({"inputs": [{"id": "W-1", "idProperty": "warehouse_id", "properties": {"name": "Acme"}}]})).await;
    assert_eq!(status, 200);
    assert_eq!(upserted["results"][0]["new"], true);
    assert_eq!(upserted["results"][0]["properties"]["warehouse_id"], "W-1");

    // Custom object declared through the handle, addressed by name and type id.
    hs.handle()
        .declare_object(
            ObjectSpec::new("p_vehicles")
                .label("Vehicle")
                .field(FieldSpec::new("vin", FieldType::String).unique())
                .field(FieldSpec::new("model", FieldType::String).required())
                .field(FieldSpec::new("year", FieldType::Int)),
        )
        .unwrap();
    let type_id = hs
        .handle()
        .objects()
        .into_iter()
        .find(|o| o.name == "p_vehicles")
        .unwrap()
        .type_id;
    assert!(type_id.starts_with("2-"));
    let (status, _, body) = hs_post(
        &client,
        &base,
        &format!("/crm/v3/objects/{type_id}/batch/upsert"),
        &json!({"inputs": [{"id": "VIN1", "idProperty": "vin", "properties": {"year": "2020"}}]}),
    )
    .await;
    assert_eq!(
        (status, body["errors"][0]["code"].as_str()),
        (400, Some("REQUIRED_PROPERTY"))
    );
    let (status, _, body) = hs_post(&client, &base, "/crm/v3/objects/p_vehicles/batch/upsert", &json!({"inputs": [{"id": "VIN1", "idProperty": "vin", "properties": {"model": "T", "year": 2020}}]})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["properties"]["year"], "2020");
    let (_, _, props) = split(
        client
            .get(hs_url(&base, "/crm/v3/properties/p_vehicles/vin"))
            .bearer_auth(hs_token())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(props["hasUniqueValue"], true);
    let stats = hs.handle().stats();
    assert_eq!(
        stats.endpoint("POST", "/crm/v3/objects/{object}/batch/upsert"),
        3
    );
    hs.shutdown().await.unwrap();
}

async fn hs_send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<&Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = client.request(method, url).bearer_auth(hs_token());
    if let Some(body) = body {
        request = request.json(body);
    }
    split(request.send().await.unwrap()).await
}

#[tokio::test]
async fn single_records_page_by_id_and_archive() {
    let hs = hubspot(EmulatorConfig::default()).await;
    let client = client();
    let base = hs.base_url();
    let objects = |path: &str| hs_url(&base, &format!("/crm/v3/objects/contacts{path}"));
    let mut ids = Vec::new();
    for i in 0..5 {
        let body = json!({"properties": {"email": format!("c{i}@example.com"), "firstname": format!("C{i}")}});
        let (status, headers, created) =
            hs_send(&client, reqwest::Method::POST, objects(""), Some(&body)).await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(header(&headers, "X-HubSpot-RateLimit-Max"), "190");
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let (status, _, duplicate) = hs_send(
        &client,
        reqwest::Method::POST,
        objects(""),
        Some(&json!({"properties": {"email": "C0@example.com"}})),
    )
    .await;
    assert_eq!(
        (status, duplicate["category"].as_str()),
        (409, Some("CONFLICT"))
    );
    assert!(duplicate["message"].as_str().unwrap().ends_with(&ids[0]));

    let (status, _, updated) = hs_send(
        &client,
        reqwest::Method::PATCH,
        objects("/c1@example.com?idProperty=email"),
        Some(&json!({"properties": {"lastname": "One"}})),
    )
    .await;
    assert_eq!(
        (status, updated["id"].as_str()),
        (200, Some(ids[1].as_str()))
    );
    assert_eq!(updated["properties"]["lastname"], "One");
    let (status, _, bad) = hs_send(
        &client,
        reqwest::Method::PATCH,
        objects(&format!("/{}", ids[1])),
        Some(&json!({"properties": {"email": "nope"}})),
    )
    .await;
    assert_eq!(
        (status, bad["errors"][0]["code"].as_str()),
        (400, Some("INVALID_EMAIL"))
    );

    // Page 1, then archive a record of page 1: page 2 is unaffected.
    let (_, _, first) = hs_send(
        &client,
        reqwest::Method::GET,
        objects("?limit=2&properties=email&properties=firstname"),
        None,
    )
    .await;
    let after = first["paging"]["next"]["after"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(after, ids[1]);
    assert_eq!(first["results"][1]["properties"]["firstname"], "C1");
    let link = first["paging"]["next"]["link"].as_str().unwrap();
    assert!(link.contains(&format!("after={after}")), "{link}");
    let (status, _, _) = hs_send(
        &client,
        reqwest::Method::DELETE,
        objects(&format!("/{}", ids[0])),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (_, _, second) = hs_send(
        &client,
        reqwest::Method::GET,
        objects(&format!("?limit=2&after={after}")),
        None,
    )
    .await;
    let second_ids: Vec<&str> = second["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(second_ids, [ids[2].as_str(), ids[3].as_str()]);

    let (status, _, missing) = hs_send(
        &client,
        reqwest::Method::GET,
        objects(&format!("/{}", ids[0])),
        None,
    )
    .await;
    assert_eq!(
        (status, missing["category"].as_str()),
        (404, Some("OBJECT_NOT_FOUND"))
    );
    let (status, _, archived) = hs_send(
        &client,
        reqwest::Method::GET,
        objects(&format!("/{}?archived=true", ids[0])),
        None,
    )
    .await;
    assert_eq!((status, archived["archived"].as_bool()), (200, Some(true)));
    // The archived record's unique email is free again.
    let (status, _, _) = hs_send(
        &client,
        reqwest::Method::POST,
        objects(""),
        Some(&json!({"properties": {"email": "c0@example.com"}})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _, bad) =
        hs_send(&client, reqwest::Method::GET, objects("?after=abc"), None).await;
    assert_eq!(
        (status, bad["category"].as_str()),
        (400, Some("VALIDATION_ERROR"))
    );
    hs.shutdown().await.unwrap();
}

#[tokio::test]
async fn search_properties_and_associations_over_http() {
    let hs = hubspot(EmulatorConfig::default()).await;
    let client = client();
    let base = hs.base_url();
    let (_, _, created) = hs_post(
        &client,
        &base,
        "/crm/v3/objects/contacts/batch/create",
        &json!({"inputs": (0..30).map(|i| json!({"properties": {"email": format!("s{i}@example.com"), "firstname": format!("S{i:02}")}})).collect::<Vec<_>>()}),
    )
    .await;
    let contact = created["results"][0]["id"].as_str().unwrap().to_owned();
    let (status, _, found) = hs_post(
        &client,
        &base,
        "/crm/v3/objects/contacts/search",
        &json!({"filterGroups": [{"filters": [{"propertyName": "firstname", "operator": "GTE", "value": "S20"}]}],
                "sorts": [{"propertyName": "firstname", "direction": "DESCENDING"}], "properties": ["firstname"], "limit": 4}),
    )
    .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["total"], 10);
    assert_eq!(found["results"][0]["properties"]["firstname"], "S29");
    assert_eq!(found["paging"]["next"]["after"], "4");
    let (status, _, bad) = hs_post(
        &client,
        &base,
        "/crm/v3/objects/contacts/search",
        &json!({"limit": 500}),
    )
    .await;
    assert_eq!(
        (status, bad["category"].as_str()),
        (400, Some("VALIDATION_ERROR"))
    );

    // Properties: create, update, archive; HubSpot's own cannot be archived.
    let props = |path: &str| hs_url(&base, &format!("/crm/v3/properties/contacts{path}"));
    let (status, _, _) = hs_post(&client, &base, "/crm/v3/properties/contacts", &json!({"name": "tier", "label": "Tier", "type": "string", "fieldType": "text", "groupName": "contactinformation"})).await;
    assert_eq!(status, 201);
    let (status, _, patched) = hs_send(
        &client,
        reqwest::Method::PATCH,
        props("/tier"),
        Some(&json!({"label": "Customer tier", "description": "from dbt"})),
    )
    .await;
    assert_eq!(
        (
            status,
            patched["label"].as_str(),
            patched["description"].as_str()
        ),
        (200, Some("Customer tier"), Some("from dbt"))
    );
    let (status, _, _) = hs_send(&client, reqwest::Method::DELETE, props("/tier"), None).await;
    assert_eq!(status, 204);
    let (status, _, _) = hs_send(&client, reqwest::Method::GET, props("/tier"), None).await;
    assert_eq!(status, 404);
    let (_, _, archived) =
        hs_send(&client, reqwest::Method::GET, props("?archived=true"), None).await;
    assert_eq!(archived["results"][0]["name"], "tier");
    let (status, _, refused) =
        hs_send(&client, reqwest::Method::DELETE, props("/email"), None).await;
    assert_eq!(
        (status, refused["category"].as_str()),
        (400, Some("VALIDATION_ERROR"))
    );

    // Associations: stored, read from both ends, and on v3 reads.
    let (_, _, company) = hs_post(
        &client,
        &base,
        "/crm/v3/objects/companies",
        &json!({"properties": {"name": "Acme"}}),
    )
    .await;
    let company = company["id"].as_str().unwrap().to_owned();
    let (status, _, linked) = hs_send(
        &client,
        reqwest::Method::PUT,
        hs_url(
            &base,
            &format!("/crm/v4/objects/contacts/{contact}/associations/default/companies/{company}"),
        ),
        None,
    )
    .await;
    assert_eq!(status, 200, "{linked}");
    assert_eq!(
        linked["results"][0]["associationSpec"]["associationTypeId"],
        279
    );
    let (_, _, back) = hs_send(
        &client,
        reqwest::Method::GET,
        hs_url(
            &base,
            &format!("/crm/v4/objects/companies/{company}/associations/contacts"),
        ),
        None,
    )
    .await;
    assert_eq!(back["results"][0]["toObjectId"].to_string(), contact);
    assert_eq!(back["results"][0]["associationTypes"][0]["typeId"], 280);
    let (_, _, read) = hs_send(
        &client,
        reqwest::Method::GET,
        hs_url(
            &base,
            &format!("/crm/v3/objects/contacts/{contact}?associations=companies"),
        ),
        None,
    )
    .await;
    assert_eq!(
        read["associations"]["companies"]["results"][0]["id"],
        company.as_str()
    );
    assert_eq!(
        read["associations"]["companies"]["results"][0]["type"],
        "contact_to_company_unlabeled"
    );
    let (status, _, _) = hs_send(
        &client,
        reqwest::Method::PUT,
        hs_url(
            &base,
            &format!("/crm/v4/objects/contacts/999999/associations/default/companies/{company}"),
        ),
        None,
    )
    .await;
    assert_eq!(status, 404);
    hs.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_default_budget_is_hubspots_190_per_10_seconds() {
    let hs = hubspot(EmulatorConfig::default()).await;
    let client = client();
    let url = hs_url(&hs.base_url(), "/crm/v3/objects/contacts?limit=1");
    for served in 1..=190 {
        let (status, headers, _) = hs_send(&client, reqwest::Method::GET, url.clone(), None).await;
        assert_eq!(status, 200, "request {served}");
        assert_eq!(
            header(&headers, "X-HubSpot-RateLimit-Remaining"),
            (190 - served).to_string()
        );
    }
    let (status, headers, body) = hs_send(&client, reqwest::Method::GET, url, None).await;
    assert_eq!(status, 429);
    assert_eq!(body["policyName"], "TEN_SECONDLY_ROLLING");
    assert_eq!(header(&headers, "X-HubSpot-RateLimit-Max"), "190");
    let retry_after: u64 = header(&headers, "Retry-After").parse().unwrap();
    assert!((1..=10).contains(&retry_after), "{retry_after}");
    hs.shutdown().await.unwrap();
}
