//! dbt models as sources: a model names a dbt model (`dbt: NAME`, `project:
//! PATH`) and its relation and primary key come from the dbt project's
//! `target/manifest.json`, so a relation renamed in dbt (an `alias`, another
//! schema) is followed without editing `sluice.yaml`; and
//! `target/run_results.json` says which models a dbt run rebuilt, for
//! `sluice run --after-dbt`.
//!
//! The manifest is dbt's documented artifact (schema v12 in dbt 1.8 to
//! 1.10); only long-stable fields are read: `nodes.*.resource_type`, `name`,
//! `relation_name`, `config.unique_key`, `constraints`, `columns.*.constraints`,
//! and for tests `test_metadata`, `attached_node`, `column_name`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where a model's rows come from in dbt, once resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbtModel {
    /// The dbt model's name (`customer_ltv`).
    pub name: String,
    /// Its node id in the manifest (`model.analytics.customer_ltv`), which
    /// `run_results.json` reports.
    pub unique_id: String,
    /// The dbt project folder.
    pub project: PathBuf,
    /// The relation dbt built (`"db"."schema"."customer_ltv"`), quoted as
    /// the adapter quotes it.
    pub relation: String,
}

/// A dbt model resolved from the manifest, with the primary key dbt declares
/// for it, if any, and where that key was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub model: DbtModel,
    pub primary_key: Option<(Vec<String>, &'static str)>,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    #[serde(default)]
    nodes: BTreeMap<String, Node>,
}

#[derive(Debug, Deserialize)]
struct Node {
    resource_type: String,
    name: String,
    #[serde(default)]
    relation_name: Option<String>,
    #[serde(default)]
    config: NodeConfig,
    #[serde(default)]
    constraints: Vec<Constraint>,
    #[serde(default)]
    columns: BTreeMap<String, Column>,
    #[serde(default)]
    test_metadata: Option<TestMetadata>,
    #[serde(default)]
    attached_node: Option<String>,
    #[serde(default)]
    column_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct NodeConfig {
    #[serde(default)]
    unique_key: Option<serde_json::Value>,
    #[serde(default)]
    materialized: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Constraint {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    columns: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Column {
    #[serde(default)]
    constraints: Vec<Constraint>,
}

#[derive(Debug, Deserialize)]
struct TestMetadata {
    name: String,
}

/// The manifest of the dbt project in `project`.
pub fn manifest_path(project: &Path) -> PathBuf {
    project.join("target").join("manifest.json")
}

/// Reads and parses a dbt project's manifest.
pub fn load_manifest(project: &Path) -> Result<LoadedManifest, String> {
    let path = manifest_path(project);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read the dbt manifest {} ({e}); run `dbt parse`, `dbt compile` or `dbt build` in {} first",
            path.display(),
            project.display()
        )
    })?;
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| format!("the dbt manifest {} is not valid: {e}", path.display()))?;
    Ok(LoadedManifest {
        project: project.to_path_buf(),
        manifest,
    })
}

/// A parsed manifest and the project it belongs to.
#[derive(Debug)]
pub struct LoadedManifest {
    project: PathBuf,
    manifest: Manifest,
}

impl LoadedManifest {
    /// The model called `name`: its relation and the primary key dbt
    /// declares for it.
    pub fn resolve(&self, name: &str) -> Result<Resolved, String> {
        let models: Vec<(&String, &Node)> = self
            .manifest
            .nodes
            .iter()
            .filter(|(_, n)| n.resource_type == "model")
            .collect();
        let matching: Vec<&(&String, &Node)> =
            models.iter().filter(|(_, n)| n.name == name).collect();
        let (unique_id, node) = match matching.as_slice() {
            [one] => **one,
            [] => {
                let names: Vec<&str> = models.iter().map(|(_, n)| n.name.as_str()).collect();
                let hint = match crate::close_matches(name, names.iter().copied(), 1).first() {
                    Some(close) => format!("; did you mean `{close}`?"),
                    None => String::new(),
                };
                return Err(format!(
                    "the dbt project {} has no model `{name}`{hint}",
                    self.project.display()
                ));
            }
            several => {
                let ids: Vec<&str> = several.iter().map(|(id, _)| id.as_str()).collect();
                return Err(format!(
                    "the dbt project {} has {} models called `{name}` ({})",
                    self.project.display(),
                    ids.len(),
                    ids.join(", ")
                ));
            }
        };
        let relation = node.relation_name.clone().ok_or_else(|| {
            format!(
                "dbt model `{name}` has no relation (it is {}), so there is nothing to read; materialize it as a table or view",
                node.config.materialized.as_deref().unwrap_or("not materialized")
            )
        })?;
        Ok(Resolved {
            model: DbtModel {
                name: name.to_owned(),
                unique_id: unique_id.clone(),
                project: self.project.clone(),
                relation,
            },
            primary_key: self.primary_key(unique_id, node),
        })
    }

    /// The key dbt declares, in order of precedence: the model's
    /// `unique_key` config, a `primary_key` constraint (model or column
    /// level), then a `unique` test on one column.
    fn primary_key(&self, unique_id: &str, node: &Node) -> Option<(Vec<String>, &'static str)> {
        if let Some(key) = node.config.unique_key.as_ref().and_then(unique_key_columns) {
            return Some((key, "the model's `unique_key` config"));
        }
        if let Some(c) = node
            .constraints
            .iter()
            .find(|c| c.kind == "primary_key" && !c.columns.is_empty())
        {
            return Some((c.columns.clone(), "the model's primary_key constraint"));
        }
        let column_level: Vec<String> = node
            .columns
            .iter()
            .filter(|(_, c)| c.constraints.iter().any(|k| k.kind == "primary_key"))
            .map(|(name, _)| name.clone())
            .collect();
        if !column_level.is_empty() {
            return Some((column_level, "a column's primary_key constraint"));
        }
        let unique_tests: BTreeSet<&str> = self
            .manifest
            .nodes
            .values()
            .filter(|n| n.resource_type == "test")
            .filter(|n| n.attached_node.as_deref() == Some(unique_id))
            .filter(|n| n.test_metadata.as_ref().is_some_and(|m| m.name == "unique"))
            .filter_map(|n| n.column_name.as_deref())
            .collect();
        // Several unique columns: the first by name, for a stable choice.
        unique_tests
            .first()
            .map(|c| (vec![(*c).to_owned()], "a `unique` test"))
    }
}

/// `unique_key: email` or `unique_key: [id, region]`.
fn unique_key_columns(value: &serde_json::Value) -> Option<Vec<String>> {
    let columns: Vec<String> = match value {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => return None,
    };
    let columns: Vec<String> = columns
        .into_iter()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .collect();
    (!columns.is_empty()).then_some(columns)
}

/// What one dbt invocation did, from its `run_results.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunResults {
    /// Models rebuilt successfully (`status: success`), by unique id.
    pub built: BTreeSet<String>,
    /// Models whose build failed or was skipped, by unique id.
    pub not_built: BTreeSet<String>,
    /// Models with a test that failed or errored in the same invocation
    /// (`dbt build`), by unique id.
    pub failed_tests: BTreeSet<String>,
}

#[derive(Debug, Deserialize)]
struct RunResultsFile {
    results: Vec<RunResult>,
}

#[derive(Debug, Deserialize)]
struct RunResult {
    unique_id: String,
    status: String,
}

/// Reads `run_results.json`: `path` is the file, or a dbt project folder
/// (its `target/run_results.json`). Test results are attributed to the
/// models they test through the project's manifest.
pub fn run_results(path: &Path) -> Result<RunResults, String> {
    let (file, project) = if path.is_dir() {
        (
            path.join("target").join("run_results.json"),
            path.to_path_buf(),
        )
    } else {
        // `PROJECT/target/run_results.json`: the project is two levels up.
        let project = path
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        (path.to_path_buf(), project)
    };
    let text = std::fs::read_to_string(&file).map_err(|e| {
        format!(
            "cannot read dbt's run results {} ({e}); pass the dbt project folder or its target/run_results.json after `dbt run` or `dbt build`",
            file.display()
        )
    })?;
    run_results_from_str(&text, &file.display().to_string(), &project)
}

/// Reads the text of a `run_results.json` (`label` names it in errors);
/// test results are attributed to their models through the manifest of the
/// dbt project folder `project` (none found: no test attributed).
pub fn run_results_from_str(text: &str, label: &str, project: &Path) -> Result<RunResults, String> {
    let parsed: RunResultsFile = serde_json::from_str(text)
        .map_err(|e| format!("dbt's run results {label} are not valid: {e}"))?;
    let tests_attach_to = test_attachments(project);
    let mut out = RunResults::default();
    for r in parsed.results {
        if r.unique_id.starts_with("model.") {
            if r.status == "success" {
                out.built.insert(r.unique_id);
            } else {
                out.not_built.insert(r.unique_id);
            }
        } else if r.unique_id.starts_with("test.") && matches!(r.status.as_str(), "fail" | "error")
        {
            if let Some(model) = tests_attach_to.get(&r.unique_id) {
                out.failed_tests.insert(model.clone());
            }
        }
    }
    Ok(out)
}

/// Test id -> the model it tests, from the manifest when there is one.
fn test_attachments(project: &Path) -> BTreeMap<String, String> {
    let Ok(loaded) = load_manifest(project) else {
        return BTreeMap::new();
    };
    loaded
        .manifest
        .nodes
        .into_iter()
        .filter(|(_, n)| n.resource_type == "test")
        .filter_map(|(id, n)| Some((id, n.attached_node?)))
        .collect()
}

/// Syncs not run after a dbt invocation, each with the reason.
pub type Skipped = Vec<(String, String)>;

/// The syncs of `project` to run after a dbt invocation that did
/// `results`: those whose model is a dbt model that the invocation rebuilt
/// successfully and whose tests did not fail; every other sync with the
/// reason it is not run. `sluice run --after-dbt` and the server's dbt
/// triggers (crates/server/src/dbt_routes.rs) both choose with this.
pub fn select_syncs(project: &crate::Project, results: &RunResults) -> (Vec<String>, Skipped) {
    let mut run = Vec::new();
    let mut skipped = Vec::new();
    for (name, sync) in &project.syncs {
        let model = project.model_of(sync);
        let why = match &model.dbt {
            None => Some(format!("model `{}` is not a dbt model", model.name)),
            Some(m) if results.failed_tests.contains(&m.unique_id) => {
                Some(format!("dbt tests of `{}` failed", m.name))
            }
            Some(m) if results.built.contains(&m.unique_id) => None,
            Some(m) if results.not_built.contains(&m.unique_id) => {
                Some(format!("dbt did not build `{}`", m.name))
            }
            Some(m) => Some(format!("dbt did not rebuild `{}` in this run", m.name)),
        };
        match why {
            None => run.push(name.clone()),
            Some(why) => skipped.push((name.clone(), why)),
        }
    }
    (run, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project_with(manifest: serde_json::Value) -> (tempfile::TempDir, LoadedManifest) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("target")).unwrap();
        std::fs::write(manifest_path(dir.path()), manifest.to_string()).unwrap();
        let loaded = load_manifest(dir.path()).unwrap();
        (dir, loaded)
    }

    fn model(name: &str, extra: serde_json::Value) -> serde_json::Value {
        let mut node = serde_json::json!({
            "resource_type": "model",
            "name": name,
            "relation_name": format!("\"db\".\"analytics\".\"{name}\""),
            "config": {"materialized": "table"},
        });
        if let (Some(node), Some(extra)) = (node.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                node.insert(k.clone(), v.clone());
            }
        }
        node
    }

    #[test]
    fn the_key_comes_from_unique_key_then_constraints_then_a_unique_test() {
        let (_d, m) = project_with(serde_json::json!({"nodes": {
            "model.p.a": model("a", serde_json::json!({"config": {"unique_key": ["id", "region"]}})),
            "model.p.b": model("b", serde_json::json!({"constraints": [{"type": "primary_key", "columns": ["code"]}]})),
            "model.p.c": model("c", serde_json::json!({"columns": {"email": {"constraints": [{"type": "not_null"}, {"type": "primary_key"}]}}})),
            "model.p.d": model("d", serde_json::json!({})),
            "model.p.e": model("e", serde_json::json!({})),
            "test.p.unique_d_email.1": {"resource_type": "test", "name": "unique_d_email",
                "test_metadata": {"name": "unique"}, "attached_node": "model.p.d", "column_name": "email"},
            "test.p.not_null_e_id.2": {"resource_type": "test", "name": "not_null_e_id",
                "test_metadata": {"name": "not_null"}, "attached_node": "model.p.e", "column_name": "id"},
        }}));
        let key = |name: &str| m.resolve(name).unwrap().primary_key.map(|(k, _)| k);
        assert_eq!(key("a"), Some(vec!["id".to_string(), "region".to_string()]));
        assert_eq!(key("b"), Some(vec!["code".to_string()]));
        assert_eq!(key("c"), Some(vec!["email".to_string()]));
        assert_eq!(key("d"), Some(vec!["email".to_string()]));
        assert_eq!(key("e"), None, "not_null alone is no key");
        let a = m.resolve("a").unwrap().model;
        assert_eq!(a.unique_id, "model.p.a");
        assert_eq!(a.relation, "\"db\".\"analytics\".\"a\"");
    }

    #[test]
    fn unknown_ephemeral_and_missing_manifests_say_what_to_do() {
        let (_d, m) = project_with(serde_json::json!({"nodes": {
            "model.p.customer_ltv": model("customer_ltv", serde_json::json!({})),
            "model.p.eph": {"resource_type": "model", "name": "eph", "relation_name": null,
                "config": {"materialized": "ephemeral"}},
        }}));
        let err = m.resolve("customer_lvt").unwrap_err();
        assert!(
            err.contains("no model `customer_lvt`") && err.contains("customer_ltv"),
            "{err}"
        );
        let err = m.resolve("eph").unwrap_err();
        assert!(
            err.contains("ephemeral") && err.contains("no relation"),
            "{err}"
        );
        let empty = tempfile::tempdir().unwrap();
        let err = load_manifest(empty.path()).unwrap_err();
        assert!(
            err.contains("dbt parse") && err.contains("manifest.json"),
            "{err}"
        );
    }

    #[test]
    fn run_results_tell_built_models_and_failed_tests_apart() {
        let (dir, _m) = project_with(serde_json::json!({"nodes": {
            "model.p.a": model("a", serde_json::json!({})),
            "model.p.b": model("b", serde_json::json!({})),
            "test.p.unique_b_id.1": {"resource_type": "test", "name": "unique_b_id",
                "test_metadata": {"name": "unique"}, "attached_node": "model.p.b", "column_name": "id"},
        }}));
        std::fs::write(
            dir.path().join("target/run_results.json"),
            serde_json::json!({"results": [
                {"unique_id": "model.p.a", "status": "success"},
                {"unique_id": "model.p.b", "status": "success"},
                {"unique_id": "model.p.c", "status": "error"},
                {"unique_id": "test.p.unique_b_id.1", "status": "fail"},
            ]})
            .to_string(),
        )
        .unwrap();
        let r = run_results(dir.path()).unwrap();
        assert_eq!(r.built, ["model.p.a", "model.p.b"].map(String::from).into());
        assert_eq!(r.not_built, ["model.p.c"].map(String::from).into());
        assert_eq!(r.failed_tests, ["model.p.b"].map(String::from).into());
        let same = run_results(&dir.path().join("target/run_results.json")).unwrap();
        assert_eq!(same, r);
    }
}
