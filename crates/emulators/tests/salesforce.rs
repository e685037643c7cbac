//! Salesforce emulator: auth, limits, describe, sObject Collections, single upsert.

mod common;

use std::time::Duration;

use base64::Engine;
use common::*;
use serde_json::{json, Value};
use sluice_emulators::{
    EmulatorConfig, FieldSpec, FieldType, ObjectSpec, RateLimit, DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
};

async fn get(
    client: &reqwest::Client,
    url: &str,
    token: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    split(
        client
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .expect("GET"),
    )
    .await
}

async fn patch(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    split(
        client
            .patch(url)
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("PATCH"),
    )
    .await
}

fn contact(ext: &str, last: &str, email: &str) -> Value {
    json!({ "attributes": {"type": "Contact"}, "External_Id__c": ext, "LastName": last, "Email": email })
}

#[tokio::test]
async fn client_credentials_token_and_invalid_clients() {
    let sf = salesforce(EmulatorConfig::default()).await;
    let client = client();
    let url = format!("{}/services/oauth2/token", sf.base_url());
    let (status, _, body) = split(
        client
            .post(&url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", DEFAULT_CLIENT_ID),
                ("client_secret", "wrong"),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"error": "invalid_client", "error_description": "invalid client credentials"})
    );

    let (status, _, body) = split(
        client
            .post(&url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "nobody"),
                ("client_secret", "x"),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_client_id");

    let (status, _, body) = split(
        client
            .post(&url)
            .form(&[("grant_type", "refresh_token")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "unsupported_grant_type");

    let (status, _, body) = split(
        client
            .post(&url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", DEFAULT_CLIENT_ID),
                ("client_secret", DEFAULT_CLIENT_SECRET),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["instance_url"], sf.base_url());
    assert_eq!(body["token_type"], "Bearer");
    let token = body["access_token"].as_str().unwrap();
    let issued = sf.handle().issued_tokens();
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0].token, token);
    assert_eq!(issued[0].client_id, DEFAULT_CLIENT_ID);
    assert!(issued[0].valid);
    sf.shutdown().await.unwrap();
}

fn jwt(payload: &Value) -> String {
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.c2lnbmF0dXJl",
        b64(&json!({"alg": "RS256"})),
        b64(payload)
    )
}

#[tokio::test]
async fn jwt_bearer_grant_checks_issuer_and_expiry() {
    let sf = salesforce(EmulatorConfig::default()).await;
    let client = client();
    let url = format!("{}/services/oauth2/token", sf.base_url());
    let exp = chrono::Utc::now().timestamp() + 300;
    let request = |assertion: String| {
        client
            .post(&url)
            .form(&[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:jwt-bearer".to_owned(),
                ),
                ("assertion", assertion),
            ])
            .send()
    };
    let good = jwt(
        &json!({"iss": DEFAULT_CLIENT_ID, "sub": "user@example.com", "aud": "https://login.salesforce.com", "exp": exp}),
    );
    let (status, _, body) = split(request(good).await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let (status, _, _) = get(&client, &sf_url(&sf.base_url(), "/sobjects"), &token).await;
    assert_eq!(status, 200);
    assert_eq!(sf.handle().issued_tokens()[0].grant, "jwt-bearer");

    let unknown = jwt(&json!({"iss": "someone-else", "sub": "u", "exp": exp}));
    let (status, _, body) = split(request(unknown).await.unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    let expired = jwt(&json!({"iss": DEFAULT_CLIENT_ID, "sub": "u", "exp": exp - 3600}));
    let (status, _, body) = split(request(expired).await.unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    let (status, _, body) = split(request("not-a-jwt".to_owned()).await.unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    sf.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_and_expired_tokens_get_invalid_session_id() {
    let config = EmulatorConfig {
        token_lifetime: Duration::from_millis(300),
        ..EmulatorConfig::default()
    };
    let sf = salesforce(config).await;
    let client = client();
    let base = sf.base_url();
    let expected =
        json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]);

    let (status, _, body) =
        split(client.get(sf_url(&base, "/sobjects")).send().await.unwrap()).await;
    assert_eq!((status, &body), (401, &expected));
    let (status, _, body) = get(&client, &sf_url(&base, "/sobjects"), "made-up").await;
    assert_eq!((status, &body), (401, &expected));

    // Lifetime: a token is useless once its lifetime has passed.
    let token = sf_token(&client, &base).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    let (status, _, body) = get(&client, &sf_url(&base, "/sobjects"), &token).await;
    assert_eq!((status, &body), (401, &expected));

    // expire_all_tokens: a fresh token dies immediately; re-authenticating recovers.
    sf.handle().set_token_lifetime(Duration::from_secs(3600));
    let token = sf_token(&client, &base).await;
    assert_eq!(
        get(&client, &sf_url(&base, "/sobjects"), &token).await.0,
        200
    );
    sf.handle().expire_all_tokens();
    assert_eq!(
        get(&client, &sf_url(&base, "/sobjects"), &token).await.0,
        401
    );
    let token = sf_token(&client, &base).await;
    assert_eq!(
        get(&client, &sf_url(&base, "/sobjects"), &token).await.0,
        200
    );
    assert_eq!(sf.handle().stats().unauthorized, 4);
    assert_eq!(
        sf.handle()
            .issued_tokens()
            .iter()
            .filter(|t| t.valid)
            .count(),
        1
    );
    sf.shutdown().await.unwrap();
}

#[tokio::test]
async fn daily_limit_and_rate_limit_answer_403_request_limit_exceeded() {
    let mut config = EmulatorConfig::default();
    config.salesforce.daily_api_limit = 3;
    let sf = salesforce(config).await;
    let client = client();
    let base = sf.base_url();
    let token = sf_token(&client, &base).await;
    for n in 1..=3 {
        let (status, headers, _) = get(&client, &sf_url(&base, "/sobjects"), &token).await;
        assert_eq!(status, 200);
        assert_eq!(
            header(&headers, "Sforce-Limit-Info"),
            format!("api-usage={n}/3")
        );
    }
    let throttled = json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]);
    let (status, headers, body) = get(&client, &sf_url(&base, "/sobjects"), &token).await;
    assert_eq!((status, &body), (403, &throttled));
    assert_eq!(header(&headers, "Sforce-Limit-Info"), "api-usage=3/3");
    assert!(headers.get("Retry-After").is_none());

    // Rolling-window limit, same 403 signal.
    sf.handle().set_daily_limit(1000);
    sf.handle()
        .set_rate_limit(Some(RateLimit::new(2, Duration::from_secs(600))));
    assert_eq!(
        get(&client, &sf_url(&base, "/sobjects"), &token).await.0,
        200
    );
    assert_eq!(
        get(&client, &sf_url(&base, "/sobjects"), &token).await.0,
        200
    );
    let (status, _, body) = get(&client, &sf_url(&base, "/sobjects"), &token).await;
    assert_eq!((status, &body), (403, &throttled));
    sf.handle().set_rate_limit(None);
    assert_eq!(
        get(&client, &sf_url(&base, "/sobjects"), &token).await.0,
        200
    );
    let stats = sf.handle().stats();
    assert_eq!(stats.throttled, 2);
    assert_eq!(
        stats.endpoint("GET", "/services/data/{version}/sobjects"),
        6
    );
    assert_eq!(sf.handle().daily_usage(), 6);
    sf.shutdown().await.unwrap();
}

#[tokio::test]
async fn describe_reports_field_metadata() {
    let sf = salesforce(EmulatorConfig::default()).await;
    let client = client();
    let base = sf.base_url();
    let token = sf_token(&client, &base).await;
    let (status, _, global) = get(&client, &sf_url(&base, "/sobjects"), &token).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = global["sobjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"Account") && names.contains(&"Contact"),
        "{names:?}"
    );

    let (status, _, account) = get(
        &client,
        &sf_url(&base, "/sobjects/Account/describe"),
        &token,
    )
    .await;
    assert_eq!(status, 200);
    let field = |d: &Value, name: &str| {
        d["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .cloned()
            .unwrap()
    };
    let name = field(&account, "Name");
    assert_eq!(
        (
            name["nillable"].as_bool(),
            name["createable"].as_bool(),
            name["type"].as_str()
        ),
        (Some(false), Some(true), Some("string"))
    );
    let ext = field(&account, "External_Id__c");
    assert_eq!(
        (
            ext["externalId"].as_bool(),
            ext["idLookup"].as_bool(),
            ext["updateable"].as_bool()
        ),
        (Some(true), Some(true), Some(true))
    );
    let id = field(&account, "Id");
    assert_eq!(
        (
            id["createable"].as_bool(),
            id["updateable"].as_bool(),
            id["idLookup"].as_bool()
        ),
        (Some(false), Some(false), Some(true))
    );

    let (_, _, contact) = get(
        &client,
        &sf_url(&base, "/sobjects/Contact/describe"),
        &token,
    )
    .await;
    assert_eq!(field(&contact, "Email")["type"], "email");
    assert_eq!(field(&contact, "LastName")["nillable"], false);

    let (status, _, body) = get(
        &client,
        &sf_url(&base, "/sobjects/Nope__c/describe"),
        &token,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!([{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}])
    );
    sf.shutdown().await.unwrap();
}

#[tokio::test]
async fn collections_upsert_creates_then_updates() {
    let sf = salesforce(EmulatorConfig::default()).await;
    let client = client();
    let base = sf.base_url();
    let token = sf_token(&client, &base).await;
    let url = sf_url(&base, "/composite/sobjects/Account/External_Id__c");
    let body = json!({"allOrNone": false, "records": [
        {"attributes": {"type": "Account"}, "Name": "Company One", "External_Id__c": "AAA"},
        {"attributes": {"type": "Account"}, "Name": "Company Two", "External_Id__c": "BBB", "AnnualRevenue": 1200.5},
    ]});
    let (status, headers, first) = patch(&client, &url, &token, &body).await;
    assert_eq!(status, 200);
    assert!(header(&headers, "Sforce-Limit-Info").starts_with("api-usage="));
    for result in first.as_array().unwrap() {
        assert_eq!(
            (result["success"].as_bool(), result["created"].as_bool()),
            (Some(true), Some(true)),
            "{result}"
        );
        assert_eq!(result["errors"], json!([]));
        assert!(result["id"].as_str().unwrap().starts_with("001"));
    }
    let body = json!({"records": [
        {"attributes": {"type": "Account"}, "Name": "Company One Renamed", "External_Id__c": "aaa"},
        {"attributes": {"type": "Account"}, "Name": "Company Three", "External_Id__c": "CCC"},
    ]});
    let (status, _, second) = patch(&client, &url, &token, &body).await;
    assert_eq!(status, 200);
    assert_eq!(second[0]["created"], false);
    assert_eq!(second[0]["id"], first[0]["id"]);
    assert_eq!(second[1]["created"], true);

    let handle = sf.handle();
    assert_eq!(handle.record_count("Account"), 3);
    let one = handle
        .find_record("Account", "External_Id__c", "AAA")
        .unwrap();
    assert_eq!(one["Name"], "Company One Renamed");
    assert_eq!(one["Id"], first[0]["id"]);
    let two = handle
        .find_record("Account", "External_Id__c", "BBB")
        .unwrap();
    assert_eq!(two["AnnualRevenue"], json!(1200.5));
    sf.shutdown().await.unwrap();
}

#[tokio::test]
async fn per_record_errors_arrive_inside_a_200_in_input_order() {
    let sf = salesforce(EmulatorConfig::default()).await;
    let client = client();
    let base = sf.base_url();
    let token = sf_token(&client, &base).await;
    let body = json!({"records": [
        contact("C1", "Good", "good@example.com"),
        {"attributes": {"type": "Contact"}, "External_Id__c": "C2", "Email": "no-last-name@example.com"},
        contact("C3", "Bad Email", "not-an-email"),
        {"attributes": {"type": "Contact"}, "External_Id__c": "C4", "LastName": "X", "Shoe_Size__c": 44},
        contact("DUP", "First", "a@example.com"),
        contact("dup", "Second", "b@example.com"),
        contact("C5", "Also Good", ""),
        {"attributes": {"type": "Contact"}, "LastName": "No key"},
    ]});
    let (status, _, results) = patch(
        &client,
        &sf_url(&base, "/composite/sobjects/Contact/External_Id__c"),
        &token,
        &body,
    )
    .await;
    assert_eq!(status, 200);
    let r = results.as_array().unwrap();
    assert_eq!(r.len(), 8);
    assert_eq!(r[0]["success"], true);
    let err = |i: usize| r[i]["errors"][0].clone();
    assert_eq!(r[1]["id"], Value::Null);
    assert_eq!(r[1]["success"], false);
    assert_eq!(
        err(1),
        json!({"statusCode": "REQUIRED_FIELD_MISSING", "message": "Required fields are missing: [LastName]", "fields": ["LastName"]})
    );
    assert_eq!(
        err(2),
        json!({"statusCode": "INVALID_EMAIL_ADDRESS", "message": "Email: invalid email address: not-an-email", "fields": ["Email"]})
    );
    assert_eq!(
        err(3),
        json!({"statusCode": "INVALID_FIELD", "message": "No such column 'Shoe_Size__c' on sobject of type Contact", "fields": ["Shoe_Size__c"]})
    );
    assert_eq!(
        err(4),
        json!({"statusCode": "DUPLICATE_EXTERNAL_ID", "message": "Duplicate external id specified: DUP", "fields": ["External_Id__c"]})
    );
    assert_eq!(err(5)["statusCode"], "DUPLICATE_EXTERNAL_ID");
    assert_eq!(err(5)["message"], "Duplicate external id specified: dup");
    assert_eq!(r[6]["success"], true);
    assert_eq!(
        err(7),
        json!({"statusCode": "MISSING_ARGUMENT", "message": "External_Id__c not specified", "fields": []})
    );
    let stored: Vec<String> = sf
        .handle()
        .records("Contact")
        .iter()
        .map(|c| c["External_Id__c"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(stored, vec!["C1", "C5"]);
    sf.shutdown().await.unwrap();
}

#[tokio::test]
async fn all_or_none_rolls_back_every_record() {
    let sf = salesforce(EmulatorConfig::default()).await;
    let client = client();
    let base = sf.base_url();
    let token = sf_token(&client, &base).await;
    let body = json!({"allOrNone": true, "records": [
        contact("K1", "Good", "good@example.com"),
        contact("K2", "Bad", "bad@@example.com"),
        contact("K3", "Good Too", "ok@example.com"),
    ]});
    let (status, _, r) = patch(
        &client,
        &sf_url(&base, "/composite/sobjects/Contact/External_Id__c"),
        &token,
        &body,
    )
    .await;
    assert_eq!(status, 200);
    let rolled_back = json!({"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "message": "Record rolled back because not all records were valid and the request was using AllOrNone header", "fields": []});
    assert_eq!(
        r[0],
        json!({"id": null, "success": false, "errors": [rolled_back.clone()]})
    );
    assert_eq!(r[1]["errors"][0]["statusCode"], "INVALID_EMAIL_ADDRESS");
    assert_eq!(r[2]["errors"][0], rolled_back);
    assert_eq!(sf.handle().record_count("Contact"), 0);
    sf.shutdown().await.unwrap();
}

#[tokio::test]
async fn malformed_bodies_and_oversized_batches_fail_the_whole_request() {
    let sf = salesforce(EmulatorConfig::default()).await;
    let client = client();
    let base = sf.base_url();
    let token = sf_token(&client, &base).await;
    let url = sf_url(&base, "/composite/sobjects/Account/External_Id__c");
    let (status, _, body) = split(
        client
            .patch(&url)
            .bearer_auth(&token)
            .header("Content-Type", "application/json")
            .body("{\"records\": [")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body[0]["errorCode"], "JSON_PARSER_ERROR");

    let records = |n: usize| -> Vec<Value> {
        (0..n).map(|i| json!({"attributes": {"type": "Account"}, "Name": format!("A{i}"), "External_Id__c": format!("E{i}")})).collect()
    };
    let (status, _, body) = patch(&client, &url, &token, &json!({"records": records(201)})).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!([{"message": "record limit reached. cannot submit more than 200 records into this call", "errorCode": "EXCEEDED_ID_LIMIT"}])
    );
    let (status, _, body) = patch(
        &client,
        &sf_url(&base, "/composite/sobjects"),
        &token,
        &json!({"records": records(201)}),
    )
    .await;
    assert_eq!(
        (status, body[0]["errorCode"].as_str()),
        (400, Some("EXCEEDED_ID_LIMIT"))
    );
    assert_eq!(sf.handle().record_count("Account"), 0);

    let (status, _, body) = patch(&client, &url, &token, &json!({"records": records(200)})).await;
    assert_eq!(status, 200);
    assert_eq!(body.as_array().unwrap().len(), 200);
    assert_eq!(sf.handle().record_count("Account"), 200);

    let (status, _, body) = patch(
        &client,
        &sf_url(&base, "/composite/sobjects/Account/No_Such__c"),
        &token,
        &json!({"records": []}),
    )
    .await;
    assert_eq!(
        (status, body[0]["errorCode"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    let (status, _, body) = patch(
        &client,
        &sf_url(&base, "/composite/sobjects/Account/Name"),
        &token,
        &json!({"records": []}),
    )
    .await;
    assert_eq!(
        (status, body[0]["errorCode"].as_str()),
        (400, Some("INVALID_FIELD"))
    );
    sf.shutdown().await.unwrap();
}

#[tokio::test]
async fn create_update_and_delete_collections() {
    let sf = salesforce(EmulatorConfig::default()).await;
    let client = client();
    let base = sf.base_url();
    let token = sf_token(&client, &base).await;
    let url = sf_url(&base, "/composite/sobjects");
    let (status, _, created) = split(
        client
            .post(&url)
            .bearer_auth(&token)
            .json(&json!({"records": [
                {"attributes": {"type": "Account"}, "Name": "Acme"},
                {"attributes": {"type": "Contact"}, "LastName": "Doe", "Email": "doe@example.com"},
                {"Name": "No type"},
                {"attributes": {"type": "Widget"}, "Name": "Unknown type"},
                {"attributes": {"type": "Account"}, "Name": "Read only", "CreatedDate": "2020-01-01T00:00:00Z"},
                {"attributes": {"type": "Account"}, "Name": "Bad number", "NumberOfEmployees": "many"},
            ]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(created[0]["success"], true);
    assert!(created[0].get("created").is_none());
    assert_eq!(created[1]["success"], true);
    assert_eq!(
        created[2]["errors"][0],
        json!({"statusCode": "INVALID_TYPE", "message": "Must send a concrete entity type.", "fields": []})
    );
    assert_eq!(created[3]["errors"][0]["statusCode"], "INVALID_TYPE");
    assert_eq!(
        created[4]["errors"][0]["statusCode"],
        "INVALID_FIELD_FOR_INSERT_UPDATE"
    );
    assert_eq!(
        created[5]["errors"][0],
        json!({"statusCode": "INVALID_TYPE_ON_FIELD_IN_RECORD", "message": "Employees: value not of required type: many", "fields": ["NumberOfEmployees"]})
    );
    let account_id = created[0]["id"].as_str().unwrap().to_owned();
    let contact_id = created[1]["id"].as_str().unwrap().to_owned();

    let (status, _, updated) = patch(
        &client,
        &url,
        &token,
        &json!({"records": [
            {"attributes": {"type": "Account"}, "id": account_id, "Name": "Acme Corp"},
            {"attributes": {"type": "Account"}, "id": "001EM0000000000ZZZAAA", "Name": "Missing"},
            {"attributes": {"type": "Account"}, "Name": "No id"},
            {"attributes": {"type": "Account"}, "id": &account_id[..15], "Name": ""},
        ]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        updated[0],
        json!({"id": account_id, "success": true, "errors": []})
    );
    assert_eq!(updated[1]["errors"][0]["statusCode"], "MALFORMED_ID");
    assert_eq!(
        updated[2]["errors"][0],
        json!({"statusCode": "MISSING_ARGUMENT", "message": "Id not specified in an update call", "fields": []})
    );
    assert_eq!(
        updated[3]["errors"][0]["statusCode"],
        "REQUIRED_FIELD_MISSING"
    );
    assert_eq!(sf.handle().records("Account")[0]["Name"], "Acme Corp");

    let (status, _, deleted) = split(
        client
            .delete(format!(
                "{url}?ids={account_id},{contact_id},garbage&allOrNone=false"
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        deleted[0],
        json!({"id": account_id, "success": true, "errors": []})
    );
    assert_eq!(deleted[1]["success"], true);
    assert_eq!(deleted[2]["errors"][0]["statusCode"], "MALFORMED_ID");
    assert_eq!(
        sf.handle().record_count("Account") + sf.handle().record_count("Contact"),
        0
    );

    let (_, _, again) = split(
        client
            .delete(format!("{url}?ids={account_id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        again[0]["errors"][0],
        json!({"statusCode": "ENTITY_IS_DELETED", "message": "entity is deleted", "fields": []})
    );
    let (_, _, update_deleted) = patch(
        &client,
        &url,
        &token,
        &json!({"records": [{"attributes": {"type": "Account"}, "id": account_id, "Name": "x"}]}),
    )
    .await;
    assert_eq!(
        update_deleted[0]["errors"][0]["statusCode"],
        "ENTITY_IS_DELETED"
    );
    sf.shutdown().await.unwrap();
}

#[tokio::test]
async fn custom_objects_unique_fields_and_single_record_upsert() {
    let sf = salesforce(EmulatorConfig::default()).await;
    let handle = sf.handle();
    assert!(
        handle.declare_object(ObjectSpec::new("Vehicle")).is_err(),
        "custom objects need __c"
    );
    handle
        .declare_object(
            ObjectSpec::new("Vehicle__c")
                .field(FieldSpec::new("Vin__c", FieldType::String).external_id())
                .field(FieldSpec::new("Fleet_Code__c", FieldType::String).non_unique_external_id())
                .field(FieldSpec::new("Plate__c", FieldType::String).required())
                .field(FieldSpec::new("Owner_Email__c", FieldType::Email)),
        )
        .unwrap();
    handle
        .declare_field(
            "Account",
            FieldSpec::new("Tax_Number__c", FieldType::String),
        )
        .unwrap();
    handle.set_unique("Account", "Tax_Number__c", true).unwrap();

    let client = client();
    let base = sf.base_url();
    let token = sf_token(&client, &base).await;
    let (_, _, describe) = get(
        &client,
        &sf_url(&base, "/sobjects/Vehicle__c/describe"),
        &token,
    )
    .await;
    assert_eq!(describe["custom"], true);
    assert!(describe["keyPrefix"].as_str().unwrap().starts_with('a'));
    let plate = describe["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "Plate__c")
        .unwrap();
    assert_eq!(plate["nillable"], false);

    let one = sf_url(&base, "/sobjects/Vehicle__c/Vin__c/VIN1");
    let (status, _, body) = patch(
        &client,
        &one,
        &token,
        &json!({"Plate__c": "AB-123", "Fleet_Code__c": "F1"}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        (body["success"].as_bool(), body["created"].as_bool()),
        (Some(true), Some(true))
    );
    let (status, _, body) = patch(&client, &one, &token, &json!({"Plate__c": "AB-124"})).await;
    assert_eq!(status, 200);
    assert_eq!(body["created"], false);
    let old_api = format!("{base}/services/data/v45.0/sobjects/Vehicle__c/Vin__c/VIN1");
    let (status, _, body) = patch(&client, &old_api, &token, &json!({"Plate__c": "AB-125"})).await;
    assert_eq!((status, body), (204, Value::Null));
    let (status, _, body) = patch(&client, &one, &token, &json!({"Owner_Email__c": "x@"})).await;
    assert_eq!(status, 400);
    assert_eq!(body[0]["errorCode"], "INVALID_EMAIL_ADDRESS");

    // Two records sharing a non-unique external id make the single upsert ambiguous.
    patch(
        &client,
        &sf_url(&base, "/sobjects/Vehicle__c/Vin__c/VIN2"),
        &token,
        &json!({"Plate__c": "P2", "Fleet_Code__c": "F1"}),
    )
    .await;
    let (status, _, body) = patch(
        &client,
        &sf_url(&base, "/sobjects/Vehicle__c/Fleet_Code__c/F1"),
        &token,
        &json!({"Plate__c": "P"}),
    )
    .await;
    assert_eq!(status, 300);
    assert_eq!(body.as_array().unwrap().len(), 2);
    assert!(body[0]
        .as_str()
        .unwrap()
        .starts_with("/services/data/v60.0/sobjects/Vehicle__c/"));
    let (_, _, results) = patch(
        &client,
        &sf_url(&base, "/composite/sobjects/Vehicle__c/Fleet_Code__c"),
        &token,
        &json!({"records": [
        {"attributes": {"type": "Vehicle__c"}, "Fleet_Code__c": "F1", "Plate__c": "P"}]}),
    )
    .await;
    assert_eq!(
        results[0]["errors"][0]["statusCode"],
        "DUPLICATE_EXTERNAL_ID"
    );

    // Unique field conflicts.
    let (_, _, results) = patch(&client, &sf_url(&base, "/composite/sobjects/Account/External_Id__c"), &token, &json!({"records": [
        {"attributes": {"type": "Account"}, "External_Id__c": "T1", "Name": "One", "Tax_Number__c": "TX"},
        {"attributes": {"type": "Account"}, "External_Id__c": "T2", "Name": "Two", "Tax_Number__c": "tx"}]})).await;
    assert_eq!(results[0]["success"], true);
    let dup = &results[1]["errors"][0];
    assert_eq!(dup["statusCode"], "DUPLICATE_VALUE");
    assert_eq!(
        dup["message"],
        format!(
            "duplicate value found: Tax_Number__c duplicates value on record with id: {}",
            results[0]["id"].as_str().unwrap()
        )
    );

    let record_id = handle.find_record("Vehicle__c", "Vin__c", "VIN1").unwrap()["Id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _, record) = get(
        &client,
        &sf_url(&base, &format!("/sobjects/Vehicle__c/{record_id}")),
        &token,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(record["Plate__c"], "AB-125");
    assert_eq!(record["attributes"]["type"], "Vehicle__c");
    sf.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_routes_and_versions_are_not_found() {
    let sf = salesforce(EmulatorConfig::default()).await;
    let client = client();
    let base = sf.base_url();
    let token = sf_token(&client, &base).await;
    let (status, _, body) = get(
        &client,
        &format!("{base}/services/data/latest/sobjects"),
        &token,
    )
    .await;
    assert_eq!(
        (status, body[0]["errorCode"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    let (status, _, body) = get(&client, &format!("{base}/nothing/here"), &token).await;
    assert_eq!(
        (status, body[0]["errorCode"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    let (status, _, versions) = split(
        client
            .get(format!("{base}/services/data"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(versions
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["version"] == "60.0"));
    sf.shutdown().await.unwrap();
}
