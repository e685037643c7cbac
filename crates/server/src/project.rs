//! Projects as code: a tenant's `sluice.yaml` and the files it names,
//! uploaded as a JSON map of relative path to text, validated by the config
//! crate exactly as `sluice validate` does, stored per tenant (table
//! `sluice.projects`), and written out to a directory of their own to run.

use crate::ceiling::Ceiling;
use crate::db::tenant_tx;
use crate::error::ApiError;
use crate::resources::ResourceCeiling;
use crate::secrets::Keyring;
use sluice_config::{Diagnostic, GrantKind, PluginRef, Project};
use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};

/// The most files one project may have.
pub const MAX_FILES: usize = 1000;

/// Where the files of `revision` of `tenant`'s project are written.
pub fn revision_dir(work_dir: &Path, tenant: &str, revision: i64) -> PathBuf {
    work_dir
        .join("tenants")
        .join(tenant)
        .join(format!("rev-{revision}"))
}

/// Refuses paths that are not plain relative paths inside the project, and
/// the state directory (the server keeps no state there, and a tenant must
/// not plant plugins in it).
pub fn check_files(files: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if !files.contains_key(sluice_config::PROJECT_FILE) {
        return Err(ApiError::invalid(
            "files",
            format!("the project has no `{}`", sluice_config::PROJECT_FILE),
        ));
    }
    if files.len() > MAX_FILES {
        return Err(ApiError::invalid(
            "files",
            format!(
                "{} files; a project may have at most {MAX_FILES}",
                files.len()
            ),
        ));
    }
    for path in files.keys() {
        if let Err(why) = check_path(path) {
            return Err(ApiError::invalid(&format!("files.{path}"), why));
        }
    }
    Ok(())
}

fn check_path(path: &str) -> Result<(), String> {
    let p = Path::new(path);
    if path.is_empty() || path.contains('\0') || path.contains('\\') {
        return Err(format!("`{path}` is not a usable file path"));
    }
    if !p
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "`{path}` must be a relative path inside the project (no `/` at the start, no `..`)"
        ));
    }
    if p.components().next() == Some(Component::Normal(".sluice".as_ref())) {
        return Err(format!(
            "`{path}` is in `.sluice`, the state directory, which a project may not upload"
        ));
    }
    Ok(())
}

/// Writes the files into `dir`, which appears whole or not at all (they
/// are written beside it, then renamed). A `dir` that already exists is
/// left as it is: a revision's files never change, and a run may be
/// reading them. Called on a blocking thread.
pub fn write_files(dir: &Path, files: &BTreeMap<String, String>) -> std::io::Result<()> {
    let parent = dir.parent().expect("a revision directory has a parent");
    std::fs::create_dir_all(parent)?;
    let staging = tempfile_dir(parent)?;
    let written = files.iter().try_for_each(|(path, text)| {
        let target = staging.join(path);
        if let Some(p) = target.parent() {
            std::fs::create_dir_all(p)?;
        }
        std::fs::write(target, text)
    });
    let placed = written.and_then(|()| std::fs::rename(&staging, dir));
    match placed {
        Ok(()) => Ok(()),
        // Another request wrote the same revision first.
        Err(_) if dir.join(sluice_config::PROJECT_FILE).is_file() => {
            std::fs::remove_dir_all(&staging)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

/// A new empty directory under `parent` no other request writes to.
fn tempfile_dir(parent: &Path) -> std::io::Result<PathBuf> {
    use rand::Rng;
    let name = format!(".upload-{:016x}", rand::rng().next_u64());
    let dir = parent.join(name);
    std::fs::create_dir(&dir)?;
    Ok(dir)
}

/// What a tenant's project is validated against, read afresh for every
/// validation (an upload, every run), so a lowered ceiling or a changed
/// secret holds from the next run on.
pub struct TenantPolicy {
    /// No network grant may exceed it.
    pub ceiling: Ceiling,
    /// The tenant's opened secrets: the only environment `${NAME}` reads.
    pub secrets: HashMap<String, String>,
    /// No limit a project sets may exceed them
    /// ([`crate::resources`]).
    pub resources: ResourceCeiling,
    /// The (name, sha256) of the components the tenant uploaded: the only
    /// `uploaded:` references its project may make.
    pub components: Vec<(String, String)>,
}

impl TenantPolicy {
    /// The ceiling (read as the owner: a tenant cannot change its own) and
    /// the secrets (read as the tenant, under row-level security, opened
    /// with `keyring`; none without one).
    pub async fn read(
        pool: &deadpool_postgres::Pool,
        app_role: &str,
        keyring: Option<&Keyring>,
        tenant: &str,
    ) -> Result<Self, ApiError> {
        let mut client = pool.get().await?;
        let row = client
            .query_opt(
                "SELECT grant_ceiling FROM sluice.tenants WHERE tenant = $1",
                &[&tenant],
            )
            .await?
            .ok_or_else(|| ApiError::not_found(format!("tenant `{tenant}`")))?;
        let ceiling = Ceiling::parse(&row.get::<_, Vec<String>>(0))
            .map_err(|why| ApiError::internal("reading the tenant's grant ceiling", why))?;
        let resources = ResourceCeiling::read(&client, tenant).await?;
        let components = crate::components::stored_pins(&mut client, app_role, tenant).await?;
        let mut secrets = HashMap::new();
        if let Some(ring) = keyring {
            let tx = tenant_tx(&mut client, app_role, tenant).await?;
            let rows = tx
                .query(
                    "SELECT name, key_id, wrapped_key, ciphertext FROM sluice.secrets WHERE tenant = $1",
                    &[&tenant],
                )
                .await?;
            tx.commit().await?;
            for row in &rows {
                let name: String = row.get(0);
                let value = ring
                    .open(tenant, &name, &crate::secret_routes::sealed_of(row, 1))
                    .map_err(|why| ApiError::internal("opening the tenant's secrets", why))?;
                secrets.insert(name, value);
            }
        }
        Ok(Self {
            ceiling,
            secrets,
            resources,
            components,
        })
    }
}

/// Validates the project in `dir` with the tenant's secrets as its only
/// environment (a tenant's `${VAR}` must never read the server's), then
/// refuses what would reach outside it: files beyond the project, network
/// beyond the tenant's ceiling. Problems carry paths relative to the
/// project.
pub fn validate(dir: &Path, policy: &TenantPolicy) -> Result<Project, serde_json::Value> {
    let project = sluice_config::validate_with_env(dir, &|name| policy.secrets.get(name).cloned())
        .map_err(|d| problems_json(dir, &on_a_server(d)))?;
    let mut outside = reaches_outside(&project, &policy.ceiling);
    outside.extend(policy.resources.exceeded_by(&project));
    outside.extend(missing_components(&project, &policy.components));
    if outside.is_empty() {
        Ok(project)
    } else {
        Err(problems_json(dir, &outside))
    }
}

/// The `notify:` URL is reached by the worker itself, so it must stay
/// inside the tenant's ceiling like a plugin's grant. (Checked by the URL's
/// literal host, as the ceiling checks grants: a public name that resolves
/// to a restricted address is not caught here.)
fn notify_outside(project: &Project, ceiling: &Ceiling) -> Option<Diagnostic> {
    let notify = project.notify.as_ref()?;
    let pattern = sluice_runtime::sandbox::policy::Grants::pattern_for_url(notify.url.expose());
    let grant = pattern
        .as_deref()
        .and_then(|p| sluice_runtime::sandbox::policy::NetGrant::parse(p).ok());
    if grant.is_some_and(|g| ceiling.allows(&g)) {
        return None;
    }
    // A URL from a secret is not shown.
    let shown = match (&pattern, notify.url.is_secret()) {
        (Some(p), false) => format!("`{p}`"),
        _ => "its host".to_owned(),
    };
    Some(Diagnostic {
        file: notify.location.file.to_path_buf(),
        line: notify.location.line,
        column: notify.location.column,
        message: format!(
            "`notify.url` reaches {shown}, beyond what the operator allows this tenant \
             (grant ceiling: {}); ask the operator to add it",
            ceiling.describe()
        ),
        expected: Some("a URL inside the tenant's grant ceiling".into()),
    })
}

/// The config crate's words for a missing `${NAME}` speak of the
/// environment; on a server it names a secret the tenant has not stored.
fn on_a_server(mut diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
    const MISSING: &str = "environment variable `";
    for d in &mut diagnostics {
        let name = d.message.find(MISSING).and_then(|at| {
            let rest = &d.message[at + MISSING.len()..];
            rest.strip_suffix("` is not set")
                .or_else(|| rest.split_once("` is not set").map(|(n, _)| n))
                .map(str::to_string)
        });
        if let Some(name) = name {
            d.message = d.message.replace(
                &format!("{MISSING}{name}` is not set"),
                &format!("secret `{name}` is not set (PUT /api/v1/secrets/{name})"),
            );
        }
    }
    diagnostics
}

/// Directory grants and plugin files must stay inside the project: another
/// tenant's project, the server's files and the host are not a tenant's to
/// read. Network grants must stay inside the tenant's ceiling.
fn reaches_outside(project: &Project, ceiling: &Ceiling) -> Vec<Diagnostic> {
    let mut problems: Vec<Diagnostic> = notify_outside(project, ceiling).into_iter().collect();
    let instances = project
        .sources
        .values()
        .chain(project.transforms.values())
        .chain(project.destinations.values().map(|d| &d.instance));
    for cfg in instances {
        let at = |message: String, expected: &str| Diagnostic {
            file: cfg.location.file.to_path_buf(),
            line: cfg.location.line,
            column: cfg.location.column,
            message,
            expected: Some(expected.into()),
        };
        const INSIDE: &str = "a path inside the project";
        for grant in &cfg.grants {
            match &grant.kind {
                GrantKind::Dir(d) if !inside(&project.dir, &d.host) => {
                    problems.push(at(
                        format!(
                            "`{}` is granted `{}`, outside the project; on a server a directory \
                         grant must name a folder of the uploaded project",
                            cfg.name, grant.text
                        ),
                        INSIDE,
                    ));
                }
                GrantKind::Network(n) if !ceiling.allows(n) => {
                    problems.push(at(
                        format!(
                            "`{}` is granted `{}`, beyond what the operator allows this tenant \
                         (grant ceiling: {}); ask the operator to add it",
                            cfg.name,
                            grant.text,
                            ceiling.describe()
                        ),
                        "a grant inside the tenant's grant ceiling",
                    ));
                }
                _ => {}
            }
        }
        if let PluginRef::Path(p) = &cfg.plugin {
            if !inside(&project.dir, p) {
                problems.push(at(
                    format!(
                        "`{}` names plugin file `{}`, outside the project",
                        cfg.name,
                        p.display()
                    ),
                    INSIDE,
                ));
            }
        }
    }
    problems
}

/// The `uploaded:` references that name no component the tenant stores.
fn missing_components(project: &Project, stored: &[(String, String)]) -> Vec<Diagnostic> {
    crate::components::referenced(project)
        .into_iter()
        .filter(|(_, name, sha)| !stored.iter().any(|(n, s)| n == name && s == sha))
        .map(|(cfg, name, sha)| Diagnostic {
            file: cfg.location.file.to_path_buf(),
            line: cfg.location.line,
            column: cfg.location.column,
            message: format!(
                "`{}` uses uploaded component `{name}@sha256:{sha}`, which this tenant has not \
                 uploaded (POST /api/v1/components/{name}; GET /api/v1/components lists them)",
                cfg.name
            ),
            expected: Some("a component listed by GET /api/v1/components".into()),
        })
        .collect()
}

/// Whether `path` (absolute, or relative to `dir`) is `dir` or under it,
/// judged on its components (`..` climbs), as the uploaded files hold no
/// links.
fn inside(dir: &Path, path: &Path) -> bool {
    let mut normal = PathBuf::new();
    for c in dir.join(path).components() {
        match c {
            Component::ParentDir => {
                if !normal.pop() {
                    return false;
                }
            }
            Component::CurDir => {}
            other => normal.push(other),
        }
    }
    normal.starts_with(dir)
}

/// Diagnostics as JSON, each with its file relative to the project.
fn problems_json(dir: &Path, diagnostics: &[Diagnostic]) -> serde_json::Value {
    diagnostics
        .iter()
        .map(|d| {
            let file = d.file.strip_prefix(dir).unwrap_or(&d.file);
            serde_json::json!({
                "file": file.display().to_string(),
                "line": d.line,
                "column": d.column,
                "message": d.message,
                "expected": d.expected,
            })
        })
        .collect()
}

/// The revision and files of `tenant`'s project, read as that tenant (as
/// `app_role`, so row-level security applies).
pub async fn stored(
    pool: &deadpool_postgres::Pool,
    app_role: &str,
    tenant: &str,
) -> Result<(i64, BTreeMap<String, String>), ApiError> {
    let mut client = pool.get().await?;
    let tx = tenant_tx(&mut client, app_role, tenant).await?;
    let row = tx
        .query_opt(
            "SELECT revision, files FROM sluice.projects WHERE tenant = $1",
            &[&tenant],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("project (PUT /api/v1/project first)"))?;
    let files: serde_json::Value = row.get(1);
    let files = serde_json::from_value(files)
        .map_err(|e| ApiError::internal("reading the stored project", e))?;
    Ok((row.get(0), files))
}

/// The project of `revision`, written out under `work_dir` (once) and
/// validated.
pub async fn load(
    work_dir: &Path,
    tenant: &str,
    revision: i64,
    files: &BTreeMap<String, String>,
    policy: TenantPolicy,
) -> Result<Project, ApiError> {
    let dir = revision_dir(work_dir, tenant, revision);
    let files = files.clone();
    tokio::task::spawn_blocking(move || {
        if !dir.join(sluice_config::PROJECT_FILE).exists() {
            write_files(&dir, &files)
                .map_err(|e| ApiError::internal("writing the project files", e))?;
        }
        validate(&dir, &policy).map_err(|problems| {
            let n = problems.as_array().map_or(0, Vec::len);
            ApiError::invalid_project(n, problems)
        })
    })
    .await
    .map_err(|e| ApiError::internal("loading the project", e))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_outside_the_state_directory() {
        assert!(check_path("sluice.yaml").is_ok());
        assert!(check_path("data/customers.csv").is_ok());
        assert!(check_path("../x").is_err());
        assert!(check_path("data/../../x").is_err());
        assert!(check_path("/etc/passwd").is_err());
        assert!(check_path(".sluice/state.db").is_err());
        assert!(check_path("").is_err());
        assert!(check_path("a\\b").is_err());
    }

    #[test]
    fn inside_follows_parent_components() {
        let dir = Path::new("/srv/t/a/rev-1");
        assert!(inside(dir, Path::new("data")));
        assert!(inside(dir, Path::new("./data/../data")));
        assert!(!inside(dir, Path::new("../rev-0")));
        assert!(!inside(dir, Path::new("/etc")));
        assert!(!inside(dir, Path::new("data/../../../b/rev-1")));
    }
}
