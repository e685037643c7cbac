//! The plugin runtime and the security boundary: one wasmtime engine, a
//! cache of compiled components, and sandboxed instances of source,
//! transform and destination plugins. It knows nothing of syncs, projects
//! or state.
//!
//! The public API is small: build a [`Runtime`], load a [`Plugin`], describe
//! what an instance may reach with a [`Sandbox`] (its
//! [`Grants`](sandbox::policy::Grants) and [`Limits`]), and call the
//! [`Instance`] it gives.
//!
//! - `bindings`: the host side of `wit/plugin.wit`.
//! - `plugin`: loading a component, checking its world and version,
//!   compiling it once (cached on disk) and preparing an `InstancePre`.
//! - `instance`: one instance per run, its calls and errors.
//! - `deadline`: the CPU and wall-clock deadlines of every call.
//! - `sandbox`: grants, the HTTP and socket checks, stdio capture.
//! - `limits`, `error`, `log`, `state`: what each instance is bounded by,
//!   how failures are named, where plugin output goes, what a store holds.

pub mod bindings;
pub mod cache;
pub mod columns;
mod deadline;
pub mod error;
pub mod inspect;
pub mod instance;
pub mod limits;
pub mod log;
pub mod plugin;
pub mod sandbox;
mod state;
mod tls;
pub mod values;

pub use bindings::types::{Batch, PluginError, PluginSpec, Row, RowResult, Value};
pub use error::{FailureKind, PluginFailure};
pub use inspect::{inspect, Inspected};
pub use instance::{Instance, Sandbox};
pub use limits::Limits;
pub use plugin::{Plugin, PluginKind};
pub use state::QuotaHint;

use anyhow::{Context, Result};
use sandbox::resolver::{Resolve, SystemResolver};
use state::PluginState;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::component::Linker;
use wasmtime::{Config, Engine};

/// The WIT package version this host implements.
pub const WIT_PACKAGE: &str = "sluice:plugin";
pub const WIT_VERSION: (u64, u64, u64) = (0, 1, 0);

/// How to build a [`Runtime`].
#[derive(Clone)]
pub struct RuntimeOptions {
    /// Where compiled components are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Default limits for instances (a [`Sandbox`] may override them).
    pub limits: Limits,
    /// Host-side DNS for the sandbox.
    pub resolver: Arc<dyn Resolve>,
    /// Where plugin log lines go.
    pub log: log::LogSink,
    /// Take instances from wasmtime's pooling allocator (`sluice worker`
    /// does, many tenants sharing one host); `None`: allocate on demand
    /// (the CLI). See [`Pooling`].
    pub pooling: Option<Pooling>,
}

/// The pooling allocator's sizes: instance slots reserved once at start
/// (address space, not memory) and reused, so instantiating is a slot
/// reset instead of fresh mappings, and the host's instance count is
/// bounded by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pooling {
    /// Component instances live at once across every tenant.
    pub instances: u32,
    /// The largest linear memory one slot holds; a tenant's memory ceiling
    /// above it cannot be used.
    pub max_memory_bytes: usize,
}

impl Default for Pooling {
    fn default() -> Self {
        Pooling {
            instances: 256,
            max_memory_bytes: 1 << 30,
        }
    }
}

/// Core instances, memories and tables one component may use: a plugin
/// is its module plus the WASI adapter's and the canonical ABI's shims.
const CORE_PER_COMPONENT: u32 = 16;

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            cache_dir: cache::default_dir(),
            limits: Limits::default(),
            resolver: Arc::new(SystemResolver),
            log: log::tracing_sink(),
            pooling: None,
        }
    }
}

/// The shared engine. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

pub(crate) struct RuntimeInner {
    pub(crate) engine: Engine,
    pub(crate) linker: Arc<Linker<PluginState>>,
    pub(crate) options: RuntimeOptions,
    /// Each tenant's instance semaphore and the limit it was made with,
    /// shared by every [`Runtime::for_tenant`] view.
    pub(crate) tenants: Arc<Mutex<TenantPermits>>,
    /// Set by [`Runtime::for_tenant`]: whose instances these are, whatever
    /// a sandbox says.
    pub(crate) tenant: Option<String>,
    /// Whether instances come from the pooling allocator.
    pub(crate) pooled: bool,
    /// Instances alive now, of every tenant and view.
    pub(crate) live: Arc<std::sync::atomic::AtomicUsize>,
    /// Set by [`Runtime::reserve_instances`]: the permits this view's
    /// instances take, reserved from the tenant's all at once.
    pub(crate) reserved: Option<Arc<ReservedInstances>>,
}

/// Instance permits taken from a tenant's semaphore in one piece, and the
/// semaphore a run's instances draw them from.
pub(crate) struct ReservedInstances {
    pub(crate) permits: Arc<tokio::sync::Semaphore>,
    /// Held until the last instance and view of the reservation are gone.
    _held: tokio::sync::OwnedSemaphorePermit,
}

/// The answer to [`Runtime::reserve_instances`].
pub enum InstanceReservation {
    /// A view of the runtime whose instances draw from the reserved
    /// permits; they go back to the tenant when it and its instances drop.
    Reserved(Runtime),
    /// The tenant's instances did not free up within the wait.
    Busy,
    /// More than the tenant's whole ceiling: no wait could satisfy it.
    AboveCeiling { needed: usize, limit: usize },
}

type TenantPermits = HashMap<String, (usize, Arc<tokio::sync::Semaphore>)>;

impl Runtime {
    pub fn new(options: RuntimeOptions) -> Result<Self> {
        let (engine, pooled) = build_engine(options.pooling)?;
        start_epoch_ticker(&engine);
        let linker = Arc::new(build_linker(&engine)?);
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                options,
                tenants: Arc::new(Mutex::new(HashMap::new())),
                tenant: None,
                pooled,
                live: Arc::default(),
                reserved: None,
            }),
        })
    }

    /// This runtime as one tenant sees it: the same engine, compiled code
    /// and instance accounting, with `limits` as the default limits of its
    /// instances (a tenant's resource ceilings) and every instance counted
    /// against `tenant`'s `limits.instances_per_tenant`.
    pub fn for_tenant(&self, tenant: &str, limits: Limits) -> Runtime {
        let inner = &self.inner;
        let mut options = inner.options.clone();
        options.limits = limits;
        Runtime {
            inner: Arc::new(RuntimeInner {
                engine: inner.engine.clone(),
                linker: inner.linker.clone(),
                options,
                tenants: inner.tenants.clone(),
                tenant: Some(tenant.to_owned()),
                pooled: inner.pooled,
                live: inner.live.clone(),
                reserved: None,
            }),
        }
    }

    /// Reserve `needed` of this tenant view's instances at once, waiting at
    /// most `within` for them to free up. A run that takes its instances
    /// one by one at a full ceiling would fail, and runs that waited for
    /// them one by one could each hold part of what they need and wait for
    /// each other forever; reserving them in one piece (the semaphore is
    /// fair and takes all or nothing) lets runs queue without deadlock. A
    /// runtime that is not a tenant view counts against no ceiling and is
    /// returned as it is.
    pub async fn reserve_instances(&self, needed: usize, within: Duration) -> InstanceReservation {
        let Some(tenant) = self.inner.tenant.as_deref() else {
            return InstanceReservation::Reserved(self.clone());
        };
        let limit = self.inner.options.limits.instances_per_tenant;
        if needed > limit {
            return InstanceReservation::AboveCeiling { needed, limit };
        }
        let semaphore = self.inner.tenant_permits(tenant, limit);
        let count = u32::try_from(needed).unwrap_or(u32::MAX);
        let held = match tokio::time::timeout(within, semaphore.acquire_many_owned(count)).await {
            Ok(Ok(held)) => held,
            // Timed out, or the semaphore was replaced and closed (never:
            // semaphores are not closed); either way, not now.
            _ => return InstanceReservation::Busy,
        };
        let inner = &self.inner;
        InstanceReservation::Reserved(Runtime {
            inner: Arc::new(RuntimeInner {
                engine: inner.engine.clone(),
                linker: inner.linker.clone(),
                options: inner.options.clone(),
                tenants: inner.tenants.clone(),
                tenant: inner.tenant.clone(),
                pooled: inner.pooled,
                live: inner.live.clone(),
                reserved: Some(Arc::new(ReservedInstances {
                    permits: Arc::new(tokio::sync::Semaphore::new(needed)),
                    _held: held,
                })),
            }),
        })
    }

    /// Plugin instances alive now, across every tenant view of this
    /// runtime (the worker's `sluice_instances` gauge).
    pub fn live_instances(&self) -> usize {
        self.inner.live.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether instances come from the pooling allocator (it was asked for
    /// and the host could reserve its slots).
    pub fn is_pooled(&self) -> bool {
        self.inner.pooled
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub fn options(&self) -> &RuntimeOptions {
        &self.inner.options
    }

    /// The runtime's own files, which no directory grant may reach: the
    /// compile cache (its artifacts and its key).
    pub fn protected_paths(&self) -> Vec<sandbox::protected::Protected> {
        self.inner.protected_paths()
    }

    pub(crate) fn inner(&self) -> &Arc<RuntimeInner> {
        &self.inner
    }
}

impl RuntimeInner {
    pub(crate) fn protected_paths(&self) -> Vec<sandbox::protected::Protected> {
        self.options
            .cache_dir
            .iter()
            .map(|dir| sandbox::protected::Protected::new(dir, "the compile cache"))
            .collect()
    }

    /// The semaphore an instance of `tenant` takes its permit from: the
    /// view's reservation if it has one, else the tenant's.
    pub(crate) fn instance_permits(
        &self,
        tenant: &str,
        limit: usize,
    ) -> Arc<tokio::sync::Semaphore> {
        match &self.reserved {
            Some(reserved) => reserved.permits.clone(),
            None => self.tenant_permits(tenant, limit),
        }
    }

    /// The instance semaphore of a tenant, created on first use and made
    /// anew when the tenant's limit changed (instances holding permits of
    /// the old one keep them until they end).
    pub(crate) fn tenant_permits(&self, tenant: &str, limit: usize) -> Arc<tokio::sync::Semaphore> {
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        let entry = tenants
            .entry(tenant.to_string())
            .or_insert_with(|| (limit, Arc::new(tokio::sync::Semaphore::new(limit))));
        if entry.0 != limit {
            *entry = (limit, Arc::new(tokio::sync::Semaphore::new(limit)));
        }
        entry.1.clone()
    }
}

fn engine_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    // A plugin's deep recursion must trap, not take the host's stack.
    config.max_wasm_stack(1 << 20);
    config.async_stack_size(2 << 20);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    // `SLUICE_WASM_PROFILE=perfmap` names plugin code for `perf` (written
    // to /tmp/perf-PID.map), to profile a plugin inside the host.
    if std::env::var("SLUICE_WASM_PROFILE").as_deref() == Ok("perfmap") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    config
}

/// The engine, from the pooling allocator when `pooling` asks for it and
/// the host can reserve its slots (a host that limits address space
/// cannot: it falls back to on-demand allocation, with a warning).
fn build_engine(pooling: Option<Pooling>) -> Result<(Engine, bool)> {
    if let Some(pooling) = pooling {
        let mut config = engine_config();
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(
            pooling_config(pooling),
        ));
        match Engine::new(&config) {
            Ok(engine) => return Ok((engine, true)),
            Err(e) => tracing::warn!(
                error = %e,
                instances = pooling.instances,
                "the pooling allocator could not reserve its slots; allocating instances on demand"
            ),
        }
    }
    let engine = Engine::new(&engine_config())
        .map_err(anyhow::Error::from)
        .context("creating the wasmtime engine")?;
    Ok((engine, false))
}

fn pooling_config(pooling: Pooling) -> wasmtime::PoolingAllocationConfig {
    let mut config = wasmtime::PoolingAllocationConfig::new();
    let core = pooling.instances.saturating_mul(CORE_PER_COMPONENT);
    config
        .total_component_instances(pooling.instances)
        .total_core_instances(core)
        .total_memories(core)
        .total_tables(core)
        // One stack per call under way: one per instance.
        .total_stacks(pooling.instances)
        .max_core_instances_per_component(CORE_PER_COMPONENT)
        .max_memories_per_component(CORE_PER_COMPONENT)
        .max_tables_per_component(CORE_PER_COMPONENT)
        .max_memory_size(pooling.max_memory_bytes)
        // Plugins built from large Rust crates have big function tables.
        .table_elements(100_000);
    config
}

/// Advance the engine's epoch every tick so per-call CPU deadlines are
/// checked (see `deadline.rs`). The thread holds only a weak handle and
/// stops when the engine is dropped.
fn start_epoch_ticker(engine: &Engine) {
    let engine = engine.weak();
    std::thread::Builder::new()
        .name("sluice-epoch".into())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(limits::EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}

fn build_linker(engine: &Engine) -> Result<Linker<PluginState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
        .map_err(anyhow::Error::from)?;
    gate_sockets(&mut linker)?;
    tls::add_to_linker(&mut linker)?;
    bindings::host::add_to_linker::<PluginState, wasmtime::component::HasSelf<PluginState>>(
        &mut linker,
        |s| s,
    )
    .map_err(anyhow::Error::from)?;
    Ok(linker)
}

/// Replace wasmtime-wasi's `create-tcp-socket` and `ip-name-lookup` with the
/// gated ones of `sandbox/sockets.rs`, which call through to them once the
/// instance's grant and socket cap allow it.
fn gate_sockets(linker: &mut Linker<PluginState>) -> Result<()> {
    use sandbox::sockets::GatedSockets;
    use wasmtime_wasi::p2::bindings::sockets::{ip_name_lookup, tcp_create_socket};
    fn gated(state: &mut PluginState) -> GatedSockets<'_> {
        GatedSockets {
            inner: wasmtime_wasi::sockets::WasiSocketsCtxView {
                ctx: state.wasi.sockets(),
                table: &mut state.table,
            },
            gate: &mut state.socket_gate,
        }
    }
    linker.allow_shadowing(true);
    tcp_create_socket::add_to_linker::<PluginState, GatedSockets<'static>>(linker, gated)
        .map_err(anyhow::Error::from)?;
    ip_name_lookup::add_to_linker::<PluginState, GatedSockets<'static>>(linker, gated)
        .map_err(anyhow::Error::from)?;
    linker.allow_shadowing(false);
    Ok(())
}
