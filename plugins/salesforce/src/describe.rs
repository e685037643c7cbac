//! `discover`: describeGlobal plus describe, mapped to the contract's objects.

use serde::Deserialize;
use sluice_sdk::prelude::*;

/// An entry of `GET /sobjects`.
#[derive(Deserialize, Debug, Clone)]
pub struct SObjectSummary {
    pub name: String,
    #[serde(default)]
    pub createable: bool,
    #[serde(default)]
    pub updateable: bool,
    #[serde(default)]
    pub deletable: bool,
}

#[derive(Deserialize, Debug)]
pub struct Global {
    pub sobjects: Vec<SObjectSummary>,
}

/// `GET /sobjects/{o}/describe`.
#[derive(Deserialize, Debug)]
pub struct Describe {
    pub name: String,
    #[serde(default)]
    pub createable: bool,
    #[serde(default)]
    pub updateable: bool,
    #[serde(default)]
    pub deletable: bool,
    pub fields: Vec<DescribeField>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct DescribeField {
    pub name: String,
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub nillable: bool,
    #[serde(default)]
    pub createable: bool,
    #[serde(default)]
    pub updateable: bool,
    #[serde(default)]
    pub external_id: bool,
    #[serde(default)]
    pub id_lookup: bool,
    /// Absent in some API versions; absent means "not defaulted".
    #[serde(default)]
    pub defaulted_on_create: bool,
}

impl SObjectSummary {
    pub fn writable(&self) -> bool {
        self.createable || self.updateable || self.deletable
    }
}

/// Salesforce's field types in the contract's terms.
pub fn field_type(salesforce_type: &str) -> FieldType {
    match salesforce_type {
        "id" | "string" | "textarea" | "email" | "phone" | "url" | "picklist" | "multipicklist"
        | "reference" | "combobox" | "encryptedstring" | "time" => FieldType::Text,
        "boolean" => FieldType::Boolean,
        "int" | "long" => FieldType::Integer,
        "double" | "percent" => FieldType::Float,
        "currency" => FieldType::Decimal,
        "date" => FieldType::Date,
        "datetime" => FieldType::Timestamp,
        "base64" => FieldType::Bytes,
        "address" | "location" => FieldType::Json,
        _ => FieldType::Any,
    }
}

fn field(f: &DescribeField) -> Field {
    Field {
        name: f.name.clone(),
        type_: field_type(&f.type_),
        nullable: f.nillable,
        required: !f.nillable && f.createable && !f.defaulted_on_create,
        identifier: f.external_id || f.id_lookup,
    }
}

/// The object as the contract sees it: writable fields (plus identifiers such
/// as `Id`, which update and delete need) and the modes Salesforce allows.
pub fn object_info(d: &Describe) -> ObjectInfo {
    let fields: Vec<Field> = d
        .fields
        .iter()
        .filter(|f| f.createable || f.updateable || f.external_id || f.id_lookup)
        .map(field)
        .collect();
    let mut modes = Vec::new();
    if d.createable && d.updateable && d.fields.iter().any(|f| f.external_id) {
        modes.push(WriteMode::Upsert);
    }
    if d.updateable {
        modes.push(WriteMode::Update);
    }
    if d.createable {
        modes.push(WriteMode::Insert);
    }
    if d.deletable {
        modes.push(WriteMode::Delete);
    }
    ObjectInfo {
        name: d.name.clone(),
        fields,
        modes,
    }
}

/// The field a write can identify records by, with its canonical spelling:
/// `Id`, or an external id field for upserts.
pub fn check_identifier(d: &Describe, mode: WriteMode, identifier: &str) -> Result<String, String> {
    if mode == WriteMode::Insert {
        return Ok(identifier.to_string());
    }
    let f = d
        .fields
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case(identifier))
        .ok_or_else(|| format!("{} has no field `{identifier}`", d.name))?;
    let usable = match mode {
        WriteMode::Upsert => f.external_id,
        _ => f.name == "Id" || f.external_id || f.id_lookup,
    };
    if !usable {
        return Err(format!(
            "{}.{} cannot identify records for this mode: upsert needs an external id field; update and delete need Id, an external id or an idLookup field",
            d.name, f.name
        ));
    }
    Ok(f.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact() -> Describe {
        serde_json::from_value(serde_json::json!({
            "name": "Contact", "createable": true, "updateable": true, "deletable": true,
            "fields": [
                {"name":"Id","type":"id","nillable":false,"createable":false,"updateable":false,"externalId":false,"idLookup":true,"defaultedOnCreate":true},
                {"name":"LastName","type":"string","nillable":false,"createable":true,"updateable":true,"externalId":false,"idLookup":false,"defaultedOnCreate":false},
                {"name":"HasOptedOutOfEmail","type":"boolean","nillable":false,"createable":true,"updateable":true,"defaultedOnCreate":true},
                {"name":"Birthdate","type":"date","nillable":true,"createable":true,"updateable":true},
                {"name":"External_Id__c","type":"string","nillable":true,"createable":true,"updateable":true,"externalId":true,"idLookup":true},
                {"name":"CreatedDate","type":"datetime","nillable":false,"createable":false,"updateable":false,"defaultedOnCreate":true}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn maps_describe_to_object_info() {
        let info = object_info(&contact());
        let names: Vec<&str> = info.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Id",
                "LastName",
                "HasOptedOutOfEmail",
                "Birthdate",
                "External_Id__c"
            ],
            "read-only CreatedDate is left out"
        );
        let last = &info.fields[1];
        assert!(last.required && !last.nullable && !last.identifier);
        assert!(!info.fields[2].required, "defaulted on create");
        assert_eq!(info.fields[3].type_, FieldType::Date);
        assert!(info.fields[4].identifier && info.fields[0].identifier);
        assert_eq!(
            info.modes,
            [
                WriteMode::Upsert,
                WriteMode::Update,
                WriteMode::Insert,
                WriteMode::Delete
            ]
        );
    }

    #[test]
    fn checks_the_identifier_per_mode() {
        let d = contact();
        assert_eq!(
            check_identifier(&d, WriteMode::Upsert, "external_id__c").unwrap(),
            "External_Id__c"
        );
        assert!(check_identifier(&d, WriteMode::Upsert, "Id").is_err());
        assert!(check_identifier(&d, WriteMode::Update, "LastName").is_err());
        assert_eq!(check_identifier(&d, WriteMode::Delete, "Id").unwrap(), "Id");
        assert!(check_identifier(&d, WriteMode::Update, "Nope")
            .unwrap_err()
            .contains("no field"));
    }
}
