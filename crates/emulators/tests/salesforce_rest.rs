//! Salesforce emulator: SOQL queries and paging, single-record REST, the
//! password grant and SOAP login, per-token call budgets, latency, /limits.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use sluice_emulators::salesforce::schema_file;
use sluice_emulators::{
    EmulatorConfig, FieldSpec, FieldType, SalesforceSettings, DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET, DEFAULT_PASSWORD, DEFAULT_SECURITY_TOKEN, DEFAULT_USERNAME,
};

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = client.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    split(request.send().await.expect("request")).await
}

async fn query(client: &reqwest::Client, base: &str, token: &str, soql: &str) -> (u16, Value) {
    let url = reqwest::Url::parse_with_params(&sf_url(base, "/query"), &[("q", soql)]).unwrap();
    let (status, _, body) = call(client, reqwest::Method::GET, url.as_str(), token, None).await;
    (status, body)
}

async fn create_contact(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    fields: Value,
) -> String {
    let (status, _, body) = call(
        client,
        reqwest::Method::POST,
        &sf_url(base, "/sobjects/Contact/"),
        token,
        Some(fields),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["success"], true);
    body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_plugins_lookup_query_finds_ids_by_external_id() {
    let sf = salesforce(EmulatorConfig::default()).await;
    let (client, base) = (client(), sf.base_url());
    let token = sf_token(&client, &base).await;
    let a = create_contact(
        &client,
        &base,
        &token,
        json!({"LastName": "A", "External_Id__c": "O'Brien"}),
    )
    .await;
    create_contact(
        &client,
        &base,
        &token,
        json!({"LastName": "B", "External_Id__c": "other"}),
    )
    .await;
    // Exactly what plugins/salesforce/src/lookup.rs sends.
    let (status, body) = query(
        &client,
        &base,
        &token,
        "SELECT Id, External_Id__c FROM Contact WHERE External_Id__c IN ('o\\'brien','missing')",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["totalSize"], 1);
    assert_eq!(body["done"], true);
    let record = &body["records"][0];
    assert_eq!(record["Id"], a.as_str());
    assert_eq!(record["External_Id__c"], "O'Brien");
    assert_eq!(record["attributes"]["type"], "Contact");
    assert_eq!(
        record["attributes"]["url"],
        format!("/services/data/{V}/sobjects/Contact/{a}")
    );
    assert!(body.get("nextRecordsUrl").is_none());
}

#[tokio::test]
async fn query_errors_carry_salesforce_codes() {
    let sf = salesforce(EmulatorConfig::default()).await;
    let (client, base) = (client(), sf.base_url());
    let token = sf_token(&client, &base).await;
    for (soql, code, status) in [
        ("SELECT Id FROM Contact WHERE", "MALFORMED_QUERY", 400),
        ("SELECT Id, Id FROM Contact", "MALFORMED_QUERY", 400),
        ("SELECT Nope__c FROM Contact", "INVALID_FIELD", 400),
        (
            "SELECT Id FROM Contact WHERE Account.Name = 'x'",
            "INVALID_FIELD",
            400,
        ),
        ("SELECT Id FROM Nope__c", "INVALID_TYPE", 400),
    ] {
        let (got, body) = query(&client, &base, &token, soql).await;
        assert_eq!(got, status, "{soql}: {body}");
        assert_eq!(body[0]["errorCode"], code, "{soql}: {body}");
    }
    let (_, body) = query(&client, &base, &token, "SELECT Id FROM Nope__c").await;
    assert_eq!(
        body[0]["message"],
        "\nSELECT Id FROM Nope__c\n               ^\nERROR at Row:1:Column:16\nsObject type 'Nope__c' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names."
    );
}

#[tokio::test]
async fn results_page_through_next_records_url() {
    let sf = salesforce(EmulatorConfig::default()).await;
    let (client, base) = (client(), sf.base_url());
    let token = sf_token(&client, &base).await;
    for chunk in 0..3 {
        let records: Vec<Value> = (0..200)
            .map(|i| json!({"attributes": {"type": "Account"}, "Name": format!("Acct {:04}", chunk * 200 + i)}))
            .collect();
        let (status, _, _) = call(
            &client,
            reqwest::Method::POST,
            &sf_url(&base, "/composite/sobjects"),
            &token,
            Some(json!({"records": records})),
        )
        .await;
        assert_eq!(status, 200);
    }
    let url = reqwest::Url::parse_with_params(
        &sf_url(&base, "/query"),
        &[("q", "SELECT Name FROM Account ORDER BY Name DESC")],
    )
    .unwrap();
    let response = client
        .get(url)
        .bearer_auth(&token)
        .header("Sforce-Query-Options", "batchSize=250")
        .send()
        .await
        .unwrap();
    let (_, _, first) = split(response).await;
    assert_eq!(first["totalSize"], 600);
    assert_eq!(first["done"], false);
    assert_eq!(first["records"].as_array().unwrap().len(), 250);
    assert_eq!(first["records"][0]["Name"], "Acct 0599");
    let mut names = Vec::new();
    let mut page = first;
    loop {
        names.extend(
            page["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["Name"].clone()),
        );
        let Some(next) = page["nextRecordsUrl"].as_str() else {
            break;
        };
        assert!(
            next.starts_with(&format!("/services/data/{V}/query/01g")),
            "{next}"
        );
        let (status, _, body) = call(
            &client,
            reqwest::Method::GET,
            &format!("{base}{next}"),
            &token,
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        page = body;
    }
    assert_eq!(names.len(), 600);
    assert_eq!(names[599], "Acct 0000");
    let (status, _, body) = call(
        &client,
        reqwest::Method::GET,
        &sf_url(&base, "/query/01gEM0000000000AAA-250"),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body[0]["errorCode"], "INVALID_QUERY_LOCATOR");
    let (_, body) = query(
        &client,
        &base,
        &token,
        "SELECT COUNT() FROM Account WHERE Name > 'Acct 0589'",
    )
    .await;
    assert_eq!(body, json!({"totalSize": 10, "done": true, "records": []}));
}

#[tokio::test]
async fn single_record_rest_round_trip() {
    let sf = salesforce(EmulatorConfig::default()).await;
    let (client, base) = (client(), sf.base_url());
    let token = sf_token(&client, &base).await;
    let id = create_contact(
        &client,
        &base,
        &token,
        json!({"LastName": "Curie", "External_Id__c": "mc-1"}),
    )
    .await;
    let record_url = sf_url(&base, &format!("/sobjects/Contact/{id}"));
    let (status, _, body) = call(
        &client,
        reqwest::Method::PATCH,
        &record_url,
        &token,
        Some(json!({"Title": "Dr"})),
    )
    .await;
    assert_eq!((status, body), (204, Value::Null));
    let (status, _, body) = call(
        &client,
        reqwest::Method::GET,
        &format!("{record_url}?fields=Title,LastName"),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["Title"], "Dr");
    assert_eq!(
        body.as_object().unwrap().len(),
        3,
        "attributes plus the two fields: {body}"
    );
    let (status, _, body) = call(
        &client,
        reqwest::Method::GET,
        &sf_url(&base, "/sobjects/Contact/External_Id__c/mc-1"),
        &token,
        None,
    )
    .await;
    assert_eq!((status, body["Id"].as_str()), (200, Some(id.as_str())));
    let (status, _, body) = call(
        &client,
        reqwest::Method::POST,
        &sf_url(&base, "/sobjects/Contact"),
        &token,
        Some(json!({"FirstName": "x"})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body[0]["errorCode"], "REQUIRED_FIELD_MISSING");
    assert_eq!(body[0]["fields"], json!(["LastName"]));
    let (status, _, _) = call(
        &client,
        reqwest::Method::DELETE,
        &sf_url(&base, "/sobjects/Contact/External_Id__c/mc-1"),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _, body) = call(&client, reqwest::Method::GET, &record_url, &token, None).await;
    assert_eq!(
        (status, body[0]["errorCode"].as_str()),
        (404, Some("ENTITY_IS_DELETED"))
    );
    let (status, _, body) = call(&client, reqwest::Method::DELETE, &record_url, &token, None).await;
    assert_eq!(
        (status, body[0]["errorCode"].as_str()),
        (404, Some("ENTITY_IS_DELETED"))
    );
    let url = reqwest::Url::parse_with_params(
        &sf_url(&base, "/queryAll"),
        &[("q", "SELECT Id FROM Contact")],
    )
    .unwrap();
    let (_, _, body) = call(&client, reqwest::Method::GET, url.as_str(), &token, None).await;
    assert_eq!(body["totalSize"], 1, "queryAll returns the deleted record");
    let (_, body) = query(&client, &base, &token, "SELECT Id FROM Contact").await;
    assert_eq!(body["totalSize"], 0);
}

#[tokio::test]
async fn an_external_id_matching_several_records_answers_300() {
    let sf = salesforce(EmulatorConfig::default()).await;
    sf.handle()
        .declare_field(
            "Contact",
            FieldSpec::new("Legacy__c", FieldType::String).non_unique_external_id(),
        )
        .unwrap();
    let (client, base) = (client(), sf.base_url());
    let token = sf_token(&client, &base).await;
    for last in ["A", "B"] {
        create_contact(
            &client,
            &base,
            &token,
            json!({"LastName": last, "Legacy__c": "dup"}),
        )
        .await;
    }
    let url = sf_url(&base, "/sobjects/Contact/Legacy__c/dup");
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let (status, _, body) = call(&client, method, &url, &token, None).await;
        assert_eq!(status, 300);
        assert_eq!(body.as_array().unwrap().len(), 2);
    }
    assert_eq!(sf.handle().record_count("Contact"), 2, "nothing deleted");
}

async fn token_request(
    client: &reqwest::Client,
    base: &str,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (u16, Value) {
    let mut request = client
        .post(format!("{base}/services/oauth2/token"))
        .form(form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let (status, _, body) = split(request.send().await.unwrap()).await;
    (status, body)
}

#[tokio::test]
async fn logins_real_clients_use() {
    let sf = salesforce(EmulatorConfig::default()).await;
    let (client, base) = (client(), sf.base_url());
    let (status, body) = token_request(
        &client,
        &base,
        &[("grant_type", "client_credentials")],
        Some((DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let password_with_token = format!("{DEFAULT_PASSWORD}{DEFAULT_SECURITY_TOKEN}");
    for password in [DEFAULT_PASSWORD, password_with_token.as_str()] {
        let form = [
            ("grant_type", "password"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
            ("username", DEFAULT_USERNAME),
            ("password", password),
        ];
        let (status, body) = token_request(&client, &base, &form, None).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["access_token"].as_str().is_some());
    }
    let form = [
        ("grant_type", "password"),
        ("client_id", DEFAULT_CLIENT_ID),
        ("client_secret", DEFAULT_CLIENT_SECRET),
        ("username", DEFAULT_USERNAME),
        ("password", "wrong"),
    ];
    let (status, body) = token_request(&client, &base, &form, None).await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"error": "invalid_grant", "error_description": "authentication failure"})
        )
    );

    let envelope = |password: &str| {
        format!(
            r#"<?xml version="1.0" encoding="utf-8" ?><env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"><env:Body><n1:login xmlns:n1="urn:partner.soap.sforce.com"><n1:username>{DEFAULT_USERNAME}</n1:username><n1:password>{password}</n1:password></n1:login></env:Body></env:Envelope>"#
        )
    };
    let soap = format!("{base}/services/Soap/u/59.0");
    let response = client
        .post(&soap)
        .header("SOAPAction", "login")
        .body(envelope(&password_with_token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let xml = response.text().await.unwrap();
    let session = xml
        .split("<sessionId>")
        .nth(1)
        .and_then(|s| s.split("</sessionId>").next())
        .expect("sessionId");
    assert!(
        xml.contains(&format!("<serverUrl>{base}/services/Soap/u/59.0/")),
        "{xml}"
    );
    let (status, _) = query(&client, &base, session, "SELECT COUNT() FROM Account").await;
    assert_eq!(status, 200, "the SOAP session id is a REST bearer token");
    let response = client
        .post(&soap)
        .body(envelope("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("<sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode>"));
}

#[tokio::test]
async fn tokens_expire_after_their_call_budget_and_limits_match_the_header() {
    let sf = salesforce(EmulatorConfig {
        salesforce: SalesforceSettings {
            expire_tokens_after: Some(2),
            daily_api_limit: 50,
            ..SalesforceSettings::default()
        },
        latency: Duration::from_millis(150),
        ..EmulatorConfig::default()
    })
    .await;
    let (client, base) = (client(), sf.base_url());
    let token = sf_token(&client, &base).await;
    let started = Instant::now();
    let url = sf_url(&base, "/limits/");
    let (status, headers, body) = call(&client, reqwest::Method::GET, &url, &token, None).await;
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "--latency delays responses"
    );
    assert_eq!(status, 200);
    let header = headers["Sforce-Limit-Info"].to_str().unwrap();
    assert_eq!(
        header, "api-usage=1/50",
        "the token endpoint is not counted"
    );
    assert_eq!(
        body["DailyApiRequests"],
        json!({"Max": 50, "Remaining": 49})
    );
    let (status, _, _) = call(&client, reqwest::Method::GET, &url, &token, None).await;
    assert_eq!(status, 200);
    let (status, _, body) = call(&client, reqwest::Method::GET, &url, &token, None).await;
    assert_eq!(status, 401, "third call with a 2-call token");
    assert_eq!(body[0]["errorCode"], "INVALID_SESSION_ID");
}

#[tokio::test]
async fn a_schema_file_declares_custom_objects_and_fields() {
    let schema = schema_file::parse(
        "objects:\n  Customer__c:\n    fields:\n      External_Id__c: { type: string, external_id: true }\n      LTV__c: { type: currency }\n      Owner__c: { type: reference, reference_to: Contact }\n  Contact:\n    fields:\n      Tier__c: { type: picklist, values: [Gold] }\n",
        false,
    )
    .unwrap();
    let sf = salesforce(EmulatorConfig {
        salesforce: SalesforceSettings {
            schema,
            ..SalesforceSettings::default()
        },
        ..EmulatorConfig::default()
    })
    .await;
    let (client, base) = (client(), sf.base_url());
    let token = sf_token(&client, &base).await;
    let (status, _, body) = call(
        &client,
        reqwest::Method::GET,
        &sf_url(&base, "/sobjects/Customer__c/describe"),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["custom"], true);
    let fields: Vec<&Value> = body["fields"].as_array().unwrap().iter().collect();
    let field = |name: &str| fields.iter().find(|f| f["name"] == name).copied().unwrap();
    assert_eq!(field("LTV__c")["precision"], 18);
    assert_eq!(field("LTV__c")["scale"], 2);
    assert_eq!(field("LTV__c")["soapType"], "xsd:double");
    assert_eq!(field("Owner__c")["referenceTo"], json!(["Contact"]));
    assert_eq!(field("Owner__c")["relationshipName"], "Owner__r");
    assert_eq!(field("External_Id__c")["externalId"], true);
    let (status, _, body) = call(
        &client,
        reqwest::Method::PATCH,
        &sf_url(&base, "/sobjects/Customer__c/External_Id__c/c1"),
        &token,
        Some(json!({"LTV__c": 10.5})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, _, _) = call(
        &client,
        reqwest::Method::POST,
        &sf_url(&base, "/sobjects/Contact/"),
        &token,
        Some(json!({"LastName": "T", "Tier__c": "Silver"})),
    )
    .await;
    assert_eq!(status, 400, "the added picklist restricts values");
}
