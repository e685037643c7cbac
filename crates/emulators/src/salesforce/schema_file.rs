//! `--schema FILE`: custom objects and fields declared in YAML or JSON, loaded
//! when the emulator starts.
//!
//! ```yaml
//! objects:
//!   Customer__c:                 # a custom object (API name ends in __c)
//!     label: Customer
//!     fields:
//!       External_Id__c: { type: string, external_id: true }
//!       Email__c: { type: email, required: true }
//!       LTV__c: { type: currency, precision: 16, scale: 2 }
//!       Account__c: { type: reference, reference_to: Account }
//!       Tier__c: { type: picklist, values: [Gold, Silver] }
//!   Contact:                     # a standard object: these fields are added
//!     fields:
//!       LTV__c: { type: currency }
//! ```
//!
//! Field keys: `type` (required: string, textarea, email, phone, url,
//! boolean, int, double, currency, percent, date, datetime, reference,
//! picklist), `label`, `required`, `unique`, `external_id`, `length`,
//! `precision`, `scale`, `values`, `reference_to`. Unknown keys are errors,
//! each reported with its path (`objects.Customer__c.fields.LTV__c.type`).

use std::path::Path;

use anyhow::{anyhow, bail, Context};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::schema::{FieldSpec, FieldType, ObjectSpec};
use crate::store::Store;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ObjectDoc {
    label: Option<String>,
    #[serde(default)]
    fields: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldDoc {
    #[serde(rename = "type")]
    field_type: TypeName,
    label: Option<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    unique: bool,
    #[serde(default)]
    external_id: bool,
    length: Option<usize>,
    precision: Option<u32>,
    scale: Option<u32>,
    #[serde(default)]
    values: Vec<String>,
    #[serde(default)]
    reference_to: OneOrMany,
}

/// `reference_to: Account` or `reference_to: [Account, Contact]`.
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::None => Vec::new(),
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

/// Field types by their describe names (and the Setup UI's for a few).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum TypeName {
    #[serde(alias = "text")]
    String,
    #[serde(alias = "longtextarea")]
    TextArea,
    Email,
    Phone,
    Url,
    #[serde(alias = "checkbox")]
    Boolean,
    #[serde(alias = "integer")]
    Int,
    #[serde(alias = "number")]
    Double,
    Currency,
    Percent,
    Date,
    DateTime,
    #[serde(alias = "lookup")]
    Reference,
    Picklist,
}

impl TypeName {
    fn field_type(self) -> FieldType {
        match self {
            TypeName::String => FieldType::String,
            TypeName::TextArea => FieldType::TextArea,
            TypeName::Email => FieldType::Email,
            TypeName::Phone => FieldType::Phone,
            TypeName::Url => FieldType::Url,
            TypeName::Boolean => FieldType::Boolean,
            TypeName::Int => FieldType::Int,
            TypeName::Double => FieldType::Double,
            TypeName::Currency => FieldType::Currency,
            TypeName::Percent => FieldType::Percent,
            TypeName::Date => FieldType::Date,
            TypeName::DateTime => FieldType::DateTime,
            TypeName::Reference => FieldType::Reference,
            TypeName::Picklist => FieldType::Picklist,
        }
    }
}

/// Reads a schema file (`.json` as JSON, anything else as YAML).
pub fn load(path: &Path) -> anyhow::Result<Vec<ObjectSpec>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the schema file {}", path.display()))?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    parse(&text, is_json).with_context(|| format!("in the schema file {}", path.display()))
}

/// Parses a schema document's text.
pub fn parse(text: &str, is_json: bool) -> anyhow::Result<Vec<ObjectSpec>> {
    let document = if is_json {
        serde_json::from_str(text).context("not valid JSON")?
    } else {
        yaml_document(text)?
    };
    let top = document
        .as_object()
        .ok_or_else(|| anyhow!("the top level must be a mapping with an `objects` key"))?;
    if let Some(other) = top.keys().find(|k| *k != "objects") {
        bail!("unknown top-level key `{other}`: expected only `objects`");
    }
    let objects = top
        .get("objects")
        .and_then(Value::as_object)
        .ok_or_else(|| anyhow!("`objects` must be a mapping of object API names"))?;
    objects
        .iter()
        .map(|(name, body)| object_spec(name, body))
        .collect()
}

fn object_spec(name: &str, body: &Value) -> anyhow::Result<ObjectSpec> {
    let at = format!("objects.{name}");
    check_api_name(name).with_context(|| at.clone())?;
    let doc: ObjectDoc = serde_json::from_value(body.clone()).with_context(|| at.clone())?;
    let mut spec = ObjectSpec::new(name);
    if let Some(label) = doc.label {
        spec = spec.label(label);
    }
    for (field_name, field_body) in &doc.fields {
        let field_at = format!("{at}.fields.{field_name}");
        check_api_name(field_name).with_context(|| field_at.clone())?;
        if !field_name.ends_with("__c") {
            bail!("{field_at}: a custom field's API name must end in __c, as in Salesforce");
        }
        let field_doc: FieldDoc =
            serde_json::from_value(field_body.clone()).with_context(|| field_at.clone())?;
        spec.fields
            .push(field_spec(field_name, field_doc).with_context(|| field_at.clone())?);
    }
    Ok(spec)
}

fn field_spec(name: &str, doc: FieldDoc) -> anyhow::Result<FieldSpec> {
    let field_type = doc.field_type.field_type();
    let mut field = FieldSpec::new(name, field_type);
    if let Some(label) = doc.label {
        field = field.label(label);
    }
    if doc.required {
        field = field.required();
    }
    if doc.unique {
        field = field.unique();
    }
    if doc.external_id {
        if !matches!(
            field_type,
            FieldType::String | FieldType::Email | FieldType::Int | FieldType::Double
        ) {
            bail!("external_id: only text, email and number fields can be external ids");
        }
        field = field.external_id();
    }
    if let Some(length) = doc.length {
        field = field.max_length(length);
    }
    if doc.precision.is_some() || doc.scale.is_some() {
        if !field_type.is_numeric() {
            bail!("precision/scale: only number, currency and percent fields have them");
        }
        let precision = doc.precision.unwrap_or(18);
        let scale = doc.scale.unwrap_or(0);
        if scale > precision || precision > 18 {
            bail!("precision {precision}, scale {scale}: need scale <= precision <= 18");
        }
        field = field.digits(precision, scale);
    }
    if !doc.values.is_empty() {
        if field_type != FieldType::Picklist {
            bail!("values: only picklist fields have values");
        }
        field = field.options(doc.values);
    }
    let reference_to = doc.reference_to.into_vec();
    match (field_type, reference_to.is_empty()) {
        (FieldType::Reference, true) => {
            bail!("reference_to: a reference field must name the object(s) it points to")
        }
        (FieldType::Reference, false) => field = field.reference_to(reference_to),
        (_, false) => bail!("reference_to: only reference fields point to objects"),
        (_, true) => {}
    }
    Ok(field)
}

/// API names are letters, digits and underscores, starting with a letter.
fn check_api_name(name: &str) -> anyhow::Result<()> {
    let starts_with_letter = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    if !starts_with_letter || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        bail!("`{name}` is not an API name (letters, digits and _, starting with a letter)");
    }
    Ok(())
}

/// A YAML document as JSON (YAML's scalars map onto JSON's).
fn yaml_document(text: &str) -> anyhow::Result<Value> {
    let docs =
        yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| anyhow!("not valid YAML: {e}"))?;
    match docs.as_slice() {
        [doc] => yaml_to_json(doc),
        [] => bail!("the file is empty"),
        _ => bail!("the file holds several YAML documents; expected one"),
    }
}

fn yaml_to_json(yaml: &yaml_rust2::Yaml) -> anyhow::Result<Value> {
    use yaml_rust2::Yaml;
    Ok(match yaml {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(text) => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| anyhow!("`{text}` is not a finite number"))?,
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(items) => {
            Value::Array(items.iter().map(yaml_to_json).collect::<Result<_, _>>()?)
        }
        Yaml::Hash(map) => {
            let mut out = Map::new();
            for (key, value) in map {
                let key = match key {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    other => bail!("mapping keys must be text, found {other:?}"),
                };
                out.insert(key, yaml_to_json(value)?);
            }
            Value::Object(out)
        }
        Yaml::Alias(_) | Yaml::BadValue => bail!("YAML aliases are not supported"),
    })
}

/// Declares every object of a schema file, then checks that each reference
/// field points to an object that exists (so objects may refer to each other
/// in any order).
pub(crate) fn apply_all(store: &mut Store, specs: &[ObjectSpec]) -> anyhow::Result<()> {
    for spec in specs {
        apply(store, spec.clone())?;
    }
    let names: Vec<String> = store.specs().iter().map(|s| s.name.clone()).collect();
    for spec in specs {
        for field in &spec.fields {
            if let Some(missing) = field.reference_to.iter().find(|t| !store.contains(t)) {
                bail!(
                    "objects.{}.fields.{}.reference_to: no object {missing} (objects: {})",
                    spec.name,
                    field.name,
                    names.join(", ")
                );
            }
        }
    }
    Ok(())
}

/// Declares `spec` in the store: a new custom object, or its fields added to
/// an object that exists (a standard one).
pub(crate) fn apply(store: &mut Store, spec: ObjectSpec) -> anyhow::Result<()> {
    if let Some(table) = store.table_mut(&spec.name) {
        for field in spec.fields {
            if table.spec.find_field(&field.name).is_some() {
                bail!(
                    "objects.{}.fields.{}: {} already has this field",
                    spec.name,
                    field.name,
                    table.spec.name
                );
            }
            table.spec.fields.push(field);
        }
        table.rebuild_indexes();
        return Ok(());
    }
    let prepared = super::prepare_object(spec, store)
        .map_err(|e| anyhow!("objects: {e:#} (or name a standard object to add fields to it)"))?;
    store.add(prepared);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
objects:
  Customer__c:
    label: Customer
    fields:
      External_Id__c: { type: string, external_id: true }
      LTV__c: { type: currency, precision: 16, scale: 2 }
      Account__c: { type: reference, reference_to: Account }
      Tier__c: { type: picklist, values: [Gold, Silver] }
  Contact:
    fields:
      LTV__c: { type: currency }
"#;

    #[test]
    fn yaml_and_json_declare_the_same_objects() {
        let from_yaml = parse(EXAMPLE, false).unwrap();
        let json = r#"{"objects": {"Customer__c": {"label": "Customer", "fields": {
            "External_Id__c": {"type": "string", "external_id": true},
            "LTV__c": {"type": "currency", "precision": 16, "scale": 2},
            "Account__c": {"type": "reference", "reference_to": "Account"},
            "Tier__c": {"type": "picklist", "values": ["Gold", "Silver"]}}},
            "Contact": {"fields": {"LTV__c": {"type": "currency"}}}}}"#;
        assert_eq!(from_yaml, parse(json, true).unwrap());
        let customer = from_yaml.iter().find(|o| o.name == "Customer__c").unwrap();
        assert_eq!(customer.label, "Customer");
        let ltv = customer.find_field("LTV__c").unwrap();
        assert_eq!((ltv.precision, ltv.scale), (Some(16), Some(2)));
        assert!(customer.find_field("External_Id__c").unwrap().external_id);
        assert_eq!(
            customer.find_field("Account__c").unwrap().reference_to,
            ["Account"]
        );
    }

    #[test]
    fn mistakes_name_their_place() {
        let cases = [
            (
                "objects:\n  X__c:\n    fields:\n      A__c: { type: money }\n",
                "objects.X__c.fields.A__c",
            ),
            (
                "objects:\n  X__c:\n    fields:\n      A__c: { type: string, colour: red }\n",
                "objects.X__c.fields.A__c",
            ),
            (
                "objects:\n  X__c:\n    fields:\n      Plain: { type: string }\n",
                "must end in __c",
            ),
            (
                "objects:\n  X__c:\n    fields:\n      R__c: { type: reference }\n",
                "reference_to",
            ),
            (
                "objects:\n  X__c:\n    fields:\n      N__c: { type: string, precision: 3 }\n",
                "precision",
            ),
            ("things: {}\n", "unknown top-level key `things`"),
            ("objects: [\n", "not valid YAML"),
            (
                "objects:\n  'bad name':\n    fields: {}\n",
                "not an API name",
            ),
        ];
        for (text, expected) in cases {
            let message = format!("{:#}", parse(text, false).unwrap_err());
            assert!(message.contains(expected), "{text}: {message}");
        }
    }

    #[test]
    fn apply_adds_custom_objects_and_fields_to_standard_ones() {
        let mut store = Store::default();
        store.add(ObjectSpec::new("Account"));
        let mut contact = ObjectSpec::new("Contact");
        contact.custom = false;
        store.add(contact);
        apply_all(&mut store, &parse(EXAMPLE, false).unwrap()).unwrap();
        assert!(store
            .table("Contact")
            .unwrap()
            .spec
            .find_field("LTV__c")
            .is_some());
        let customer = store.table("Customer__c").unwrap();
        assert!(customer.spec.custom);
        assert!(
            customer.spec.find_field("Id").is_some(),
            "system fields added"
        );
        let not_custom = ObjectSpec::new("Widget");
        assert!(format!("{:#}", apply(&mut store, not_custom).unwrap_err()).contains("__c"));
        let dangling = parse("objects:\n  Y__c:\n    fields:\n      R__c: { type: reference, reference_to: Nope__c }\n", false).unwrap();
        let err = apply_all(&mut store, &dangling).unwrap_err();
        assert!(format!("{err:#}").contains("no object Nope__c"));
    }
}
