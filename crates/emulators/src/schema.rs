//! Object and field definitions, shared by both emulators.
//!
//! Salesforce calls them sObjects and fields, HubSpot object types and properties;
//! the validation rules the emulators need (type, required, unique, read-only) are
//! the same, so one model serves both and each API renders it in its own shape.

use serde::Serialize;

/// The value type of a field; decides validation and how describe/properties show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// A record id (Salesforce `id`, HubSpot `hs_object_id`).
    Id,
    /// Free text.
    String,
    /// Long free text.
    TextArea,
    /// An email address; malformed values are rejected.
    Email,
    /// A phone number (free text).
    Phone,
    /// A URL (free text).
    Url,
    /// true/false.
    Boolean,
    /// A whole number.
    Int,
    /// A decimal number.
    Double,
    /// A money amount (decimal).
    Currency,
    /// A percentage (decimal).
    Percent,
    /// `YYYY-MM-DD`.
    Date,
    /// RFC 3339 timestamp.
    DateTime,
    /// A reference to another record's id (Salesforce lookups).
    Reference,
    /// One of `FieldSpec::options` (HubSpot enumeration); any text if no options.
    Picklist,
}

impl FieldType {
    /// Salesforce describe `type` name.
    pub fn salesforce_name(self) -> &'static str {
        match self {
            FieldType::Id => "id",
            FieldType::String => "string",
            FieldType::TextArea => "textarea",
            FieldType::Email => "email",
            FieldType::Phone => "phone",
            FieldType::Url => "url",
            FieldType::Boolean => "boolean",
            FieldType::Int => "int",
            FieldType::Double => "double",
            FieldType::Currency => "currency",
            FieldType::Percent => "percent",
            FieldType::Date => "date",
            FieldType::DateTime => "datetime",
            FieldType::Reference => "reference",
            FieldType::Picklist => "picklist",
        }
    }

    /// HubSpot property `(type, fieldType)` pair.
    pub fn hubspot_names(self) -> (&'static str, &'static str) {
        match self {
            FieldType::Id | FieldType::String | FieldType::Email | FieldType::Url => {
                ("string", "text")
            }
            FieldType::Reference => ("string", "text"),
            FieldType::TextArea => ("string", "textarea"),
            FieldType::Phone => ("string", "phonenumber"),
            FieldType::Boolean => ("bool", "booleancheckbox"),
            FieldType::Int | FieldType::Double | FieldType::Currency | FieldType::Percent => {
                ("number", "number")
            }
            FieldType::Date => ("date", "date"),
            FieldType::DateTime => ("datetime", "date"),
            FieldType::Picklist => ("enumeration", "select"),
        }
    }

    /// True for types whose values are numbers.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            FieldType::Int | FieldType::Double | FieldType::Currency | FieldType::Percent
        )
    }
}

/// One field (Salesforce) or property (HubSpot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldSpec {
    /// API name (`External_Id__c`, `email`).
    pub name: String,
    /// Human label; used in Salesforce error messages.
    pub label: String,
    /// Value type.
    pub field_type: FieldType,
    /// Must have a non-null value on create (and cannot be cleared on update).
    pub required: bool,
    /// No two records may share a value (case-insensitive).
    pub unique: bool,
    /// Salesforce external id: usable as the upsert key (`externalId`, `idLookup`).
    pub external_id: bool,
    /// Not createable or updateable through the API.
    pub read_only: bool,
    /// Maximum text length, if any.
    pub max_length: Option<usize>,
    /// Allowed values for a picklist/enumeration; empty means unrestricted.
    pub options: Vec<String>,
    /// Salesforce lookups: the objects a reference field may point to.
    pub reference_to: Vec<String>,
    /// Salesforce numbers: total digits and digits after the point; `None`
    /// means the type's default (describe shows 18 and 2 for currency).
    pub precision: Option<u32>,
    /// See [`FieldSpec::precision`].
    pub scale: Option<u32>,
}

impl FieldSpec {
    /// A writable, optional, non-unique field labelled by its name.
    pub fn new(name: impl Into<String>, field_type: FieldType) -> Self {
        let name = name.into();
        let max_length = match field_type {
            FieldType::String | FieldType::Email | FieldType::Phone | FieldType::Url => Some(255),
            FieldType::TextArea => Some(32_000),
            _ => None,
        };
        Self {
            label: default_label(&name),
            name,
            field_type,
            required: false,
            unique: false,
            external_id: false,
            read_only: false,
            max_length,
            options: Vec::new(),
            reference_to: Vec::new(),
            precision: None,
            scale: None,
        }
    }

    /// A lookup to `objects` (Salesforce `referenceTo`).
    pub fn reference_to<I, S>(mut self, objects: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.reference_to = objects.into_iter().map(Into::into).collect();
        self
    }

    /// Total digits and digits after the point of a number field.
    pub fn digits(mut self, precision: u32, scale: u32) -> Self {
        self.precision = Some(precision);
        self.scale = Some(scale);
        self
    }

    /// Sets the label.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Marks the field required.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Marks the field unique.
    pub fn unique(mut self) -> Self {
        self.unique = true;
        self
    }

    /// Marks the field as a (unique) external id, usable as an upsert key.
    pub fn external_id(mut self) -> Self {
        self.external_id = true;
        self.unique = true;
        self
    }

    /// Marks the field as an external id that does not enforce uniqueness, so several
    /// records can share a value (the case behind Salesforce's HTTP 300).
    pub fn non_unique_external_id(mut self) -> Self {
        self.external_id = true;
        self.unique = false;
        self
    }

    /// Marks the field read-only.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// Sets the maximum text length.
    pub fn max_length(mut self, len: usize) -> Self {
        self.max_length = Some(len);
        self
    }

    /// Restricts values to `options`.
    pub fn options<I, S>(mut self, options: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.options = options.into_iter().map(Into::into).collect();
        self
    }

    /// True if the field's values are looked up through an index.
    pub(crate) fn indexed(&self) -> bool {
        self.unique || self.external_id
    }
}

/// An object type: Salesforce sObject, HubSpot object type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectSpec {
    /// API name (`Account`, `Vehicle__c`, `contacts`, `p_vehicles`).
    pub name: String,
    /// Singular label.
    pub label: String,
    /// Declared by the user rather than built in.
    pub custom: bool,
    /// Salesforce 3-character id prefix (`001` for Account); HubSpot ignores it.
    pub key_prefix: String,
    /// HubSpot object type id (`0-1` contacts, `2-…` custom); Salesforce ignores it.
    pub type_id: String,
    /// Fields, in declaration order.
    pub fields: Vec<FieldSpec>,
}

impl ObjectSpec {
    /// An object with no fields; the emulator adds its system fields when declared.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            label: default_label(&name),
            custom: true,
            key_prefix: String::new(),
            type_id: String::new(),
            name,
            fields: Vec::new(),
        }
    }

    /// Adds a field.
    pub fn field(mut self, field: FieldSpec) -> Self {
        self.fields.push(field);
        self
    }

    /// Sets the label.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Finds a field by exact API name, falling back to a case-insensitive match
    /// (Salesforce field names are case-insensitive).
    pub fn find_field(&self, name: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|f| f.name == name).or_else(|| {
            self.fields
                .iter()
                .find(|f| f.name.eq_ignore_ascii_case(name))
        })
    }

    pub(crate) fn find_field_mut(&mut self, name: &str) -> Option<&mut FieldSpec> {
        let idx = self
            .fields
            .iter()
            .position(|f| f.name == name)
            .or_else(|| {
                self.fields
                    .iter()
                    .position(|f| f.name.eq_ignore_ascii_case(name))
            })?;
        self.fields.get_mut(idx)
    }
}

/// `External_Id__c` -> `External Id`, `firstname` -> `Firstname`.
fn default_label(name: &str) -> String {
    let base = name.strip_suffix("__c").unwrap_or(name);
    let mut label = String::with_capacity(base.len());
    for (i, word) in base.split('_').filter(|w| !w.is_empty()).enumerate() {
        if i > 0 {
            label.push(' ');
        }
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            label.extend(first.to_uppercase());
            label.push_str(chars.as_str());
        }
    }
    label
}
