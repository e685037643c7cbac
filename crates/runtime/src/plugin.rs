//! Loading a plugin: read the component, find which world and version it
//! exports, refuse what this host cannot run, compile it (or load the
//! cached compilation) and link it once into an `InstancePre`, from which
//! each run instantiates cheaply.

use super::bindings::types::PluginSpec;
use super::bindings::{
    estimate_api, lookup_api, warehouse_diff_api, ColumnarTransformPre, DestinationIndices,
    DestinationPre, SourceIndices, SourcePre, TransformPre,
};
use super::cache::{self, CacheOutcome};
use super::state::PluginState;
use super::{PluginFailure, Sandbox};
use super::{Runtime, RuntimeInner, WIT_PACKAGE, WIT_VERSION};
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;
use std::sync::Arc;
use wasmtime::component::Component;

/// Which world a plugin exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    Source,
    Transform,
    Destination,
}

impl PluginKind {
    pub fn world(self) -> &'static str {
        match self {
            PluginKind::Source => "source",
            PluginKind::Transform => "transform",
            PluginKind::Destination => "destination",
        }
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.world())
    }
}

pub(crate) enum PluginPre {
    /// A source, and the indices of its exports when it also exports
    /// `estimate-api` (`estimable-source`) or `warehouse-diff-api`
    /// (`warehouse-diff-source`).
    Source(
        SourcePre<PluginState>,
        Option<Arc<EstimateIndices>>,
        Option<Arc<DiffIndices>>,
    ),
    Transform(TransformPre<PluginState>),
    ColumnarTransform(ColumnarTransformPre<PluginState>),
    /// A destination, and the indices of its exports when it also exports
    /// `lookup-api` (`verifiable-destination`).
    Destination(DestinationPre<PluginState>, Option<Arc<LookupIndices>>),
}

/// Where a verifiable destination's exports are, found once at load: one
/// instance is loaded through both (see `instance.rs`).
pub(crate) struct LookupIndices {
    pub(crate) destination: DestinationIndices,
    pub(crate) lookup: lookup_api::GuestIndices,
}

impl LookupIndices {
    /// `None` when the component does not export `lookup-api`.
    fn new(pre: &wasmtime::component::InstancePre<PluginState>) -> Option<Self> {
        Some(LookupIndices {
            lookup: lookup_api::GuestIndices::new(pre).ok()?,
            destination: DestinationIndices::new(pre).ok()?,
        })
    }
}

/// Where an estimable source's exports are, found once at load.
pub(crate) struct EstimateIndices {
    pub(crate) source: SourceIndices,
    pub(crate) estimate: estimate_api::GuestIndices,
}

impl EstimateIndices {
    /// `None` when the component does not export `estimate-api`.
    fn new(pre: &wasmtime::component::InstancePre<PluginState>) -> Option<Self> {
        Some(EstimateIndices {
            estimate: estimate_api::GuestIndices::new(pre).ok()?,
            source: SourceIndices::new(pre).ok()?,
        })
    }
}

/// Where a warehouse-diff source's exports are, found once at load.
pub(crate) struct DiffIndices {
    pub(crate) source: SourceIndices,
    pub(crate) diff: warehouse_diff_api::GuestIndices,
}

impl DiffIndices {
    /// `None` when the component does not export `warehouse-diff-api`.
    fn new(pre: &wasmtime::component::InstancePre<PluginState>) -> Option<Self> {
        Some(DiffIndices {
            diff: warehouse_diff_api::GuestIndices::new(pre).ok()?,
            source: SourceIndices::new(pre).ok()?,
        })
    }
}

/// A loaded, linked plugin. Instantiate it once per run.
pub struct Plugin {
    pub(crate) name: Arc<str>,
    pub(crate) kind: PluginKind,
    pub(crate) world: World,
    pub(crate) version: String,
    pub(crate) digest: String,
    pub(crate) cache: CacheOutcome,
    pub(crate) imports: Vec<String>,
    pub(crate) pre: PluginPre,
    pub(crate) runtime: Arc<RuntimeInner>,
    /// The spec, asked once (see [`Plugin::spec`]).
    pub(crate) spec: tokio::sync::OnceCell<PluginSpec>,
}

impl Plugin {
    /// Load a component file. The plugin is named after the file stem until
    /// its spec says otherwise.
    pub fn load(runtime: &Runtime, path: &Path) -> Result<Plugin> {
        let bytes =
            std::fs::read(path).with_context(|| format!("reading plugin {}", path.display()))?;
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("plugin");
        Self::from_bytes(runtime, name, &bytes)
            .with_context(|| format!("loading plugin {}", path.display()))
    }

    /// Load a component from memory.
    pub fn from_bytes(runtime: &Runtime, name: &str, bytes: &[u8]) -> Result<Plugin> {
        if !bytes.starts_with(b"\0asm") {
            bail!("not a WebAssembly file (it does not start with \\0asm)");
        }
        let inner = runtime.inner().clone();
        let digest = cache::digest(bytes);
        let (component, cache) = cache::load_or_compile(
            &inner.engine,
            inner.options.cache_dir.as_deref(),
            bytes,
            &digest,
        )?;
        let (world, version) = detect_world(&inner, &component)?;
        let imports = component
            .component_type()
            .imports(&inner.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let instance_pre = inner.linker.instantiate_pre(&component).map_err(|e| {
            anyhow!(
                "the plugin imports something this host does not provide: {}",
                anyhow::Error::from(e)
            )
        })?;
        let pre = match world {
            World::Source => {
                // Optional: a source without `estimate-api` simply has no
                // estimate in `sluice plan`.
                let estimate = EstimateIndices::new(&instance_pre).map(Arc::new);
                // Optional too: without `warehouse-diff-api` a model of this
                // source diffs on the host.
                let diff = DiffIndices::new(&instance_pre).map(Arc::new);
                PluginPre::Source(
                    SourcePre::new(instance_pre).map_err(anyhow::Error::from)?,
                    estimate,
                    diff,
                )
            }
            World::Transform => {
                PluginPre::Transform(TransformPre::new(instance_pre).map_err(anyhow::Error::from)?)
            }
            World::ColumnarTransform => PluginPre::ColumnarTransform(
                ColumnarTransformPre::new(instance_pre).map_err(anyhow::Error::from)?,
            ),
            World::Destination => {
                // Optional: a destination without `lookup-api` simply cannot
                // be verified.
                let lookup = LookupIndices::new(&instance_pre).map(Arc::new);
                PluginPre::Destination(
                    DestinationPre::new(instance_pre).map_err(anyhow::Error::from)?,
                    lookup,
                )
            }
        };
        Ok(Plugin {
            name: name.into(),
            kind: world.kind(),
            world,
            version,
            digest,
            cache,
            imports,
            pre,
            runtime: inner,
            spec: tokio::sync::OnceCell::new(),
        })
    }

    /// The plugin's spec, from an instance with no grants at all (a spec
    /// needs none); asked once per loaded plugin.
    pub async fn spec(&self) -> Result<PluginSpec, PluginFailure> {
        self.spec
            .get_or_try_init(|| async {
                let mut instance = self.instantiate(&Sandbox::default()).await?;
                instance.spec().await
            })
            .await
            .cloned()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Rename the plugin (e.g. after its spec or the project's name for it);
    /// errors and logs use this name.
    pub fn set_name(&mut self, name: &str) {
        self.name = name.into();
    }

    pub fn kind(&self) -> PluginKind {
        self.kind
    }

    /// The world the component exports (`columnar-transform` is a kind of
    /// transform, `verifiable-destination` of destination, `estimable-source`
    /// of source).
    pub fn world(&self) -> &'static str {
        if self.can_lookup() {
            "verifiable-destination"
        } else if self.can_estimate() {
            "estimable-source"
        } else if self.can_diff_in_warehouse() {
            "warehouse-diff-source"
        } else {
            self.world.name()
        }
    }

    /// The `sluice:plugin` version the component was built against.
    pub fn wit_version(&self) -> &str {
        &self.version
    }

    /// Hex SHA-256 of the component bytes.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    pub fn cache_outcome(&self) -> CacheOutcome {
        self.cache
    }

    /// Whether the plugin is a source that can estimate a read (exports
    /// `estimate-api`), so `sluice plan` can show what it would scan.
    pub fn can_estimate(&self) -> bool {
        matches!(&self.pre, PluginPre::Source(_, Some(_), _))
    }

    /// Whether the plugin is a source that can diff inside its warehouse
    /// (exports `warehouse-diff-api`), so a model may say `diff: warehouse`.
    pub fn can_diff_in_warehouse(&self) -> bool {
        matches!(&self.pre, PluginPre::Source(_, _, Some(_)))
    }

    /// Whether the plugin is a destination that can look records up
    /// (exports `lookup-api`), so `sluice verify` can check what it holds.
    pub fn can_lookup(&self) -> bool {
        matches!(&self.pre, PluginPre::Destination(_, Some(_)))
    }

    /// Everything the component imports (WASI interfaces, `sluice:plugin/host`).
    pub fn imports(&self) -> &[String] {
        &self.imports
    }
}

/// The worlds of the contract, one per exported interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum World {
    Source,
    Transform,
    ColumnarTransform,
    Destination,
}

impl World {
    const ALL: [World; 4] = [
        World::Source,
        World::Transform,
        World::ColumnarTransform,
        World::Destination,
    ];

    fn interface(self) -> &'static str {
        match self {
            World::Source => "source-api",
            World::Transform => "transform-api",
            World::ColumnarTransform => "columnar-transform-api",
            World::Destination => "destination-api",
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            World::ColumnarTransform => "columnar-transform",
            other => other.kind().world(),
        }
    }

    fn kind(self) -> PluginKind {
        match self {
            World::Source => PluginKind::Source,
            World::Transform | World::ColumnarTransform => PluginKind::Transform,
            World::Destination => PluginKind::Destination,
        }
    }
}

/// Find the one `sluice:plugin/*-api@VERSION` export and check its version.
fn detect_world(inner: &RuntimeInner, component: &Component) -> Result<(World, String)> {
    let exports: Vec<String> = component
        .component_type()
        .exports(&inner.engine)
        .map(|(n, _)| n.to_string())
        .collect();
    world_of_exports(&exports)
}

/// The world and version a component's top-level export names say it is;
/// an error naming what is wrong when they are not exactly one supported
/// Sluice world (also used before compiling, by [`crate::inspect`]).
pub(crate) fn world_of_exports(exports: &[String]) -> Result<(World, String)> {
    let mut found = Vec::new();
    for name in exports {
        let Some(rest) = name.strip_prefix(&format!("{WIT_PACKAGE}/")) else {
            continue;
        };
        let (iface, version) = rest.split_once('@').unwrap_or((rest, ""));
        let kind = World::ALL.into_iter().find(|w| w.interface() == iface);
        if let Some(kind) = kind {
            found.push((kind, version.to_string()));
        }
    }
    let supported = format!("{WIT_PACKAGE}@{}.{}.x", WIT_VERSION.0, WIT_VERSION.1);
    match found.as_slice() {
        [] => {
            let names: Vec<&str> = exports.iter().map(String::as_str).collect();
            bail!(
                "not a Sluice plugin: it exports [{}], but a plugin exports one of {WIT_PACKAGE}/source-api, \
                 transform-api, columnar-transform-api or destination-api ({supported})",
                names.join(", ")
            )
        }
        [(kind, version)] => {
            if !compatible(version) {
                bail!(
                    "the plugin targets {WIT_PACKAGE}@{version} ({} world), but this host supports {supported}; \
                     rebuild it against a supported sluice-sdk",
                    kind.name()
                );
            }
            Ok((*kind, version.clone()))
        }
        many => {
            let worlds: Vec<&str> = many.iter().map(|(k, _)| k.name()).collect();
            bail!(
                "the plugin exports several worlds ({}); a plugin must be exactly one",
                worlds.join(", ")
            )
        }
    }
}

/// semver compatibility for 0.x: same major and minor.
fn compatible(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u64>());
    matches!(
        (parts.next(), parts.next()),
        (Some(Ok(major)), Some(Ok(minor))) if major == WIT_VERSION.0 && (major > 0 || minor == WIT_VERSION.1)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_compatibility_follows_semver_for_0x() {
        assert!(super::compatible("0.1.0"));
        assert!(super::compatible("0.1.7"));
        assert!(!super::compatible("0.2.0"));
        assert!(!super::compatible("1.0.0"));
        assert!(!super::compatible(""));
    }
}
