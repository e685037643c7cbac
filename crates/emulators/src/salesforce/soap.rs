//! `POST /services/Soap/u/{version}`: the SOAP partner API's `login` call,
//! the only SOAP operation emulated. It is how simple-salesforce (and the Data
//! Loader) log in with a username, password and security token: the answer's
//! `sessionId` is a bearer token for the REST API and `serverUrl` names the
//! instance. A wrong login answers 500 with an `INVALID_LOGIN` SOAP fault, as
//! Salesforce does; any other operation answers an `UNKNOWN_EXCEPTION` fault.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::auth::{find_user, instance_url, new_token};
use crate::handle::Shared;

const PARTNER_NS: &str = "urn:partner.soap.sforce.com";

/// What the body asked for.
#[derive(Debug, PartialEq, Eq)]
enum SoapCall {
    Login { username: String, password: String },
    Other(String),
}

/// Reads the operation and, for `login`, its username and password.
fn parse_call(body: &str) -> Result<SoapCall, String> {
    let document = roxmltree::Document::parse(body).map_err(|e| format!("malformed XML: {e}"))?;
    let soap_body = document
        .descendants()
        .find(|n| n.has_tag_name("Body"))
        .ok_or("no SOAP Body element")?;
    let operation = soap_body
        .children()
        .find(|n| n.is_element())
        .ok_or("the SOAP Body names no operation")?;
    let name = operation.tag_name().name();
    if name != "login" {
        return Ok(SoapCall::Other(name.to_owned()));
    }
    let child_text = |wanted: &str| {
        operation
            .children()
            .find(|n| n.has_tag_name(wanted))
            .and_then(|n| n.text())
            .unwrap_or_default()
            .to_owned()
    };
    Ok(SoapCall::Login {
        username: child_text("username"),
        password: child_text("password"),
    })
}

/// Escapes text for an XML element.
fn xml_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn xml_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

/// A SOAP fault as Salesforce sends it (HTTP 500), which simple-salesforce
/// reads through `sf:exceptionCode` and `sf:exceptionMessage`.
fn fault(code: &str, message: &str) -> Response {
    let message = xml_text(message);
    let body = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault><faultcode>sf:{code}</faultcode><faultstring>{code}: {message}</faultstring><detail><sf:LoginFault xsi:type="sf:LoginFault"><sf:exceptionCode>{code}</sf:exceptionCode><sf:exceptionMessage>{message}</sf:exceptionMessage></sf:LoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#
    );
    xml_response(StatusCode::INTERNAL_SERVER_ERROR, body)
}

/// `POST /services/Soap/u/{version}`.
pub(crate) async fn soap_login(
    State(shared): State<Arc<Shared>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text = String::from_utf8_lossy(&body);
    let (username, password) = match parse_call(&text) {
        Ok(SoapCall::Login { username, password }) => (username, password),
        Ok(SoapCall::Other(operation)) => {
            return fault(
                "UNKNOWN_EXCEPTION",
                &format!("the Sluice emulator answers only the SOAP login call, not {operation}"),
            )
        }
        Err(problem) => return fault("INVALID_SOAP_REQUEST", &problem),
    };
    let Some(user) = find_user(&shared, &username, &password) else {
        return fault(
            "INVALID_LOGIN",
            "Invalid username, password, security token; or user locked out.",
        );
    };
    let user_name = user.username.clone();
    let token = new_token(&shared, user_name.clone(), "soap-login");
    let instance = instance_url(&shared, &headers);
    let org = &shared.salesforce.org_id;
    let user_id = &shared.salesforce.user_id;
    let body = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="{PARTNER_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><loginResponse><result><metadataServerUrl>{instance}/services/Soap/m/{version}/{org}</metadataServerUrl><passwordExpired>false</passwordExpired><sandbox>true</sandbox><serverUrl>{instance}/services/Soap/u/{version}/{org}</serverUrl><sessionId>{token}</sessionId><userId>{user_id}</userId><userInfo><organizationId>{org}</organizationId><organizationName>Sluice Emulator</organizationName><userEmail>{email}</userEmail><userId>{user_id}</userId><userName>{email}</userName></userInfo></result></loginResponse></soapenv:Body></soapenv:Envelope>"#,
        instance = xml_text(&instance),
        token = xml_text(&token),
        email = xml_text(&user_name),
    );
    xml_response(StatusCode::OK, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_simple_salesforce_login_envelope() {
        let body = r#"<?xml version="1.0" encoding="utf-8" ?>
<env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:partner.soap.sforce.com">
    <env:Header><urn:CallOptions><urn:client>simple-salesforce</urn:client></urn:CallOptions></env:Header>
    <env:Body>
        <n1:login xmlns:n1="urn:partner.soap.sforce.com">
            <n1:username>a&amp;b@example.com</n1:username>
            <n1:password>pw&lt;1tok</n1:password>
        </n1:login>
    </env:Body>
</env:Envelope>"#;
        assert_eq!(
            parse_call(body),
            Ok(SoapCall::Login {
                username: "a&b@example.com".into(),
                password: "pw<1tok".into()
            })
        );
        assert!(parse_call("<not xml").is_err());
        assert_eq!(
            parse_call(r#"<e:Envelope xmlns:e="x"><e:Body><logout/></e:Body></e:Envelope>"#),
            Ok(SoapCall::Other("logout".into()))
        );
    }
}
