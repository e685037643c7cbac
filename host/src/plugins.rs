//! The first-party plugins, compiled to components by build.rs and embedded
//! in the binary, so `sluice demo` and a first run need no other files.

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));

/// An embedded plugin by name.
pub fn embedded(name: &str) -> Option<&'static [u8]> {
    Some(match name {
        "webhook" => WEBHOOK,
        "pii-hash" => PII_HASH,
        "field-map" => FIELD_MAP,
        "files" => FILES,
        "postgres" => POSTGRES,
        "salesforce" => SALESFORCE,
        "hubspot" => HUBSPOT,
        _ => return None,
    })
}

/// Names of the embedded plugins.
pub const EMBEDDED: &[&str] = &[
    "webhook",
    "pii-hash",
    "field-map",
    "files",
    "postgres",
    "salesforce",
    "hubspot",
];
