//! A sync's config fingerprint: the part of its configuration that decides
//! what the destination receives, folded into every row's content hash
//! (the seed of [`sluice_state::hash::RowHasher`]). Editing a mapping, a
//! transform or where rows go changes every hash, so the next run re-sends
//! the rows; settings that only change how rows travel (`batch_size`,
//! `rate_limit`, `max_deletes`, `schedule`) do not.
//!
//! What it covers:
//! - the mode, the destination object and the identifier field;
//! - the mappings, in order (source column or constant, target, coercion);
//! - the transforms, in order: each plugin's name, version and component
//!   digest, and its config (secrets included: a new salt changes the
//!   output; they are hashed, never shown);
//! - the destination: its name in the project, its plugin's name and
//!   version, and its config without secrets (rotating a credential is not
//!   a reason to re-send a model).
//!
//! The document is canonical JSON (sorted keys) hashed with xxh3-64.

use serde_json::{json, Value as Json};
use sluice_config::{ConfigValue, MappingSource, PluginInstance, SyncConfig};
use std::collections::BTreeMap;
use xxhash_rust::xxh3::xxh3_64;

/// The identity of a loaded plugin.
#[derive(Debug, Clone)]
pub struct PluginIdentity {
    pub name: String,
    pub version: String,
    /// SHA-256 of the component.
    pub digest: String,
}

/// Bumped if what the fingerprint covers changes.
const VERSION: &str = "sluice-config-fingerprint-1";

/// The fingerprint of `sync` writing to `destination` (its project entry and
/// plugin) through `transforms` (in the sync's order).
pub fn fingerprint(
    sync: &SyncConfig,
    destination: (&PluginInstance, &PluginIdentity),
    transforms: &[(&PluginInstance, &PluginIdentity)],
) -> u64 {
    let doc = document(sync, destination, transforms);
    xxh3_64(doc.to_string().as_bytes())
}

fn document(
    sync: &SyncConfig,
    (dest, dest_plugin): (&PluginInstance, &PluginIdentity),
    transforms: &[(&PluginInstance, &PluginIdentity)],
) -> Json {
    let mappings: Vec<Json> = sync
        .mappings
        .iter()
        .map(|m| {
            let source = match &m.source {
                MappingSource::Column(c) => json!({ "column": c }),
                MappingSource::Constant(v) => json!({ "constant": config_json(v, true) }),
            };
            json!({ "source": source, "to": m.to, "type": m.coerce.map(|c| c.as_str()) })
        })
        .collect();
    let transforms: Vec<Json> = transforms
        .iter()
        .map(|(cfg, plugin)| {
            json!({
                "plugin": plugin.name,
                "version": plugin.version,
                "digest": plugin.digest,
                "config": map_json(&cfg.config, true),
            })
        })
        .collect();
    // serde_json's map is a BTreeMap here (no `preserve_order`), so the
    // text is canonical.
    json!({
        "fingerprint": VERSION,
        "mode": sync.mode.as_str(),
        "object": sync.object.expose(),
        "identifier": sync.identifier.as_ref().map(|i| i.expose()),
        "mappings": mappings,
        "transforms": transforms,
        "destination": {
            "name": dest.name,
            "plugin": dest_plugin.name,
            "version": dest_plugin.version,
            "config": map_json(&dest.config, false),
        },
    })
}

fn map_json(map: &BTreeMap<String, ConfigValue>, secrets: bool) -> Json {
    Json::Object(
        map.iter()
            .map(|(k, v)| (k.clone(), config_json(v, secrets)))
            .collect(),
    )
}

/// A config value; secret strings only when `secrets` (else a marker, so
/// adding or removing a secret still counts).
fn config_json(v: &ConfigValue, secrets: bool) -> Json {
    match v {
        ConfigValue::String(s) if s.is_secret() && !secrets => json!({ "secret": true }),
        ConfigValue::List(items) => {
            Json::Array(items.iter().map(|i| config_json(i, secrets)).collect())
        }
        ConfigValue::Map(m) => map_json(m, secrets),
        other => other.to_plugin_json(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_config::parse_project;
    use std::path::Path;

    const PROJECT: &str = r#"
sources:
  files: { plugin: files, config: { path: /data } }
destinations:
  hook: { plugin: webhook, config: { url: "https://h.example.com", secret: "${HOOK_SECRET}" } }
  other: { plugin: webhook, config: { url: "https://h.example.com", secret: "${HOOK_SECRET}" } }
transforms:
  hash: { plugin: pii-hash, config: { fields: [Email] } }
models:
  m: { source: files, object: a.csv, primary_key: id }
syncs:
  s:
    model: m
    destination: hook
    object: contacts
    mode: upsert
    identifier: Email
    batch_size: 10
    mappings:
      - { from: email, to: Email }
      - { from: plan, to: Plan, type: integer }
    transforms: [hash]
"#;

    fn fp(text: &str, secret: &str, transform_digest: &str) -> u64 {
        let env = |name: &str| (name == "HOOK_SECRET").then(|| secret.to_owned());
        let dir = Path::new("/nonexistent");
        let project = parse_project(dir, &dir.join("sluice.yaml"), text, &env).unwrap();
        let sync = &project.syncs["s"];
        let dest = &project.destinations[&sync.destination].instance;
        let plugin = |name: &str, digest: &str| PluginIdentity {
            name: name.into(),
            version: "0.1.0".into(),
            digest: digest.into(),
        };
        let t = plugin("pii-hash", transform_digest);
        let transforms: Vec<_> = sync
            .transforms
            .iter()
            .map(|n| (&project.transforms[n], &t))
            .collect();
        fingerprint(sync, (dest, &plugin("webhook", "d1")), &transforms)
    }

    #[test]
    fn what_reaches_the_destination_changes_it_and_nothing_else_does() {
        let base = fp(PROJECT, "k1", "t1");
        assert_eq!(base, fp(PROJECT, "k1", "t1"), "stable");
        // How rows travel, and credentials, do not count.
        assert_eq!(
            base,
            fp(
                &PROJECT.replace("batch_size: 10", "batch_size: 99"),
                "k1",
                "t1"
            )
        );
        assert_eq!(base, fp(PROJECT, "rotated", "t1"));
        // What they become and where they go does.
        for changed in [
            PROJECT.replace("to: Plan, type: integer", "to: Plan, type: string"),
            PROJECT.replace("{ from: plan, to: Plan", "{ from: plan, to: Tier"),
            PROJECT.replace("mode: upsert", "mode: update"),
            PROJECT.replace("object: contacts", "object: leads"),
            PROJECT.replace("destination: hook", "destination: other"),
            PROJECT.replace("fields: [Email] } }", "fields: [Email, Plan] } }"),
            PROJECT.replace("    transforms: [hash]\n", ""),
        ] {
            assert_ne!(base, fp(&changed, "k1", "t1"), "{changed}");
        }
        assert_ne!(base, fp(PROJECT, "k1", "t2"), "a new transform build");
    }
}
