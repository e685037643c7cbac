//! Property discovery: `GET /crm/v3/properties/{objectType}` to the
//! contract's object description.

use serde::Deserialize;
use sluice_sdk::prelude::*;

/// The record id every object has; read-only, but it addresses records.
pub const OBJECT_ID: &str = "hs_object_id";

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Property {
    pub name: String,
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub field_type: String,
    #[serde(default)]
    pub has_unique_value: bool,
    #[serde(default)]
    pub calculated: bool,
    #[serde(default)]
    pub modification_metadata: Option<Modification>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct Modification {
    #[serde(default)]
    pub read_only_value: bool,
}

#[derive(Deserialize, Debug)]
pub struct Properties {
    pub results: Vec<Property>,
}

impl Property {
    pub fn writable(&self) -> bool {
        !self.calculated
            && !self
                .modification_metadata
                .as_ref()
                .is_some_and(|m| m.read_only_value)
    }
}

pub fn field_type(p: &Property) -> FieldType {
    match (p.type_.as_str(), p.field_type.as_str()) {
        ("bool", _) | ("enumeration", "booleancheckbox") => FieldType::Boolean,
        ("string", _) | ("enumeration", _) | ("phone_number", _) => FieldType::Text,
        ("number", _) => FieldType::Decimal,
        ("date", _) => FieldType::Date,
        ("datetime", _) => FieldType::Timestamp,
        _ => FieldType::Any,
    }
}

/// Writable properties plus `hs_object_id`; HubSpot has no required
/// properties in its API, and any property can be cleared.
pub fn object_info(object_type: &str, properties: &[Property]) -> ObjectInfo {
    let fields = properties
        .iter()
        .filter(|p| p.writable() || p.name == OBJECT_ID)
        .map(|p| Field {
            name: p.name.clone(),
            type_: field_type(p),
            nullable: p.name != OBJECT_ID,
            required: false,
            identifier: p.has_unique_value || p.name == OBJECT_ID,
        })
        .collect();
    let mut modes = Vec::new();
    if properties
        .iter()
        .any(|p| p.has_unique_value && p.name != OBJECT_ID)
    {
        modes.push(WriteMode::Upsert);
    }
    modes.extend([WriteMode::Update, WriteMode::Insert, WriteMode::Delete]);
    ObjectInfo {
        name: object_type.to_string(),
        fields,
        modes,
    }
}

/// The canonical identifier for a write, or why it cannot identify records.
pub fn check_identifier(
    properties: &[Property],
    object: &str,
    mode: WriteMode,
    identifier: &str,
) -> Result<String, String> {
    if mode == WriteMode::Insert {
        return Ok(identifier.to_string());
    }
    // HubSpot documents `email` as an idProperty of contacts' batch
    // endpoints, although the properties API reports it with
    // `hasUniqueValue: false` (contacts' emails are unique by other means).
    if identifier.eq_ignore_ascii_case("email") && matches!(object, "contacts" | "0-1") {
        return Ok("email".into());
    }
    if identifier.eq_ignore_ascii_case(OBJECT_ID) || identifier == "id" {
        if mode == WriteMode::Upsert {
            return Err(format!("upsert needs a unique property as idProperty, not {OBJECT_ID}; use update to write by record id"));
        }
        return Ok(OBJECT_ID.into());
    }
    let p = properties
        .iter()
        .find(|p| p.name == identifier)
        .ok_or_else(|| format!("there is no property `{identifier}`"))?;
    if !p.has_unique_value {
        return Err(format!(
            "property `{identifier}` is not unique (hasUniqueValue), so it cannot be an idProperty"
        ));
    }
    Ok(p.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props() -> Vec<Property> {
        serde_json::from_value(serde_json::json!([
            {"name":"email","type":"string","fieldType":"text","hasUniqueValue":true},
            {"name":"numberofemployees","type":"number","fieldType":"number"},
            {"name":"optin","type":"enumeration","fieldType":"booleancheckbox"},
            {"name":"lifecyclestage","type":"enumeration","fieldType":"select"},
            {"name":"createdate","type":"datetime","fieldType":"date","modificationMetadata":{"readOnlyValue":true}},
            {"name":"hs_object_id","type":"string","fieldType":"text","modificationMetadata":{"readOnlyValue":true}}
        ]))
        .unwrap()
    }

    #[test]
    fn maps_properties() {
        let info = object_info("contacts", &props());
        let got: Vec<(&str, FieldType, bool)> = info
            .fields
            .iter()
            .map(|f| (f.name.as_str(), f.type_, f.identifier))
            .collect();
        assert_eq!(
            got,
            vec![
                ("email", FieldType::Text, true),
                ("numberofemployees", FieldType::Decimal, false),
                ("optin", FieldType::Boolean, false),
                ("lifecyclestage", FieldType::Text, false),
                ("hs_object_id", FieldType::Text, true),
            ]
        );
        assert_eq!(
            info.modes,
            vec![
                WriteMode::Upsert,
                WriteMode::Update,
                WriteMode::Insert,
                WriteMode::Delete
            ]
        );
    }

    #[test]
    fn email_identifies_contacts_whatever_the_properties_api_says() {
        // The live API reports contacts' email with hasUniqueValue false.
        let p: Vec<Property> = serde_json::from_value(serde_json::json!([
            {"name":"email","type":"string","fieldType":"text","hasUniqueValue":false}
        ]))
        .unwrap();
        assert_eq!(
            check_identifier(&p, "contacts", WriteMode::Upsert, "email").unwrap(),
            "email"
        );
        assert!(
            check_identifier(&p, "companies", WriteMode::Upsert, "email")
                .unwrap_err()
                .contains("not unique")
        );
    }

    #[test]
    fn checks_identifiers() {
        let p = props();
        assert_eq!(
            check_identifier(&p, "contacts", WriteMode::Upsert, "email").unwrap(),
            "email"
        );
        assert!(check_identifier(&p, "contacts", WriteMode::Upsert, "hs_object_id").is_err());
        assert!(
            check_identifier(&p, "contacts", WriteMode::Update, "lifecyclestage")
                .unwrap_err()
                .contains("not unique")
        );
        assert_eq!(
            check_identifier(&p, "contacts", WriteMode::Delete, "id").unwrap(),
            "hs_object_id"
        );
    }
}
