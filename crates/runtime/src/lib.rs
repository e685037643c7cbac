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
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            cache_dir: cache::default_dir(),
            limits: Limits::default(),
            resolver: Arc::new(SystemResolver),
            log: log::tracing_sink(),
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
    pub(crate) linker: Linker<PluginState>,
    pub(crate) options: RuntimeOptions,
    pub(crate) tenants: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
}

impl Runtime {
    pub fn new(options: RuntimeOptions) -> Result<Self> {
        let engine = Engine::new(&engine_config())
            .map_err(anyhow::Error::from)
            .context("creating the wasmtime engine")?;
        start_epoch_ticker(&engine);
        let linker = build_linker(&engine)?;
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                options,
                tenants: Mutex::new(HashMap::new()),
            }),
        })
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

    /// The instance semaphore of a tenant, created on first use.
    pub(crate) fn tenant_permits(&self, tenant: &str, limit: usize) -> Arc<tokio::sync::Semaphore> {
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        tenants
            .entry(tenant.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(limit)))
            .clone()
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
