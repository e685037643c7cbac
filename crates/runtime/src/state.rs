//! What a plugin instance's `Store` holds: its WASI context (filesystem,
//! sockets, stdio as granted), its `wasi:http` hooks, its resource limiter,
//! and the denials recorded during the current call.

use super::bindings::host;
use super::deadline::CpuMeter;
use super::limits::Limits;
use super::log::{LogGate, LogSource};
use super::sandbox::http::SandboxedHttp;
use super::sandbox::sockets::SocketGate;
use super::sandbox::{Denials, Stalls};
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub struct PluginState {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) http_hooks: SandboxedHttp,
    /// Socket creation and name lookups beyond wasmtime-wasi's checks.
    pub(crate) socket_gate: SocketGate,
    pub(crate) table: ResourceTable,
    /// `wasi:tls`: the provider that verifies as `tls_policy` says.
    pub(crate) tls: wasmtime_wasi_tls::WasiTlsCtx,
    /// What the plugin last set through `sluice:tls/policy`.
    pub(crate) tls_policy: crate::tls::SharedPolicy,
    /// Where the host may read a CA file the plugin names (`Sandbox::tls_ca_dirs`).
    pub(crate) tls_ca_dirs: Vec<crate::sandbox::policy::DirGrant>,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) denials: Denials,
    /// Host timeouts the current call's requests ran into.
    pub(crate) stalls: Stalls,
    /// The current call's guest execution time, and its limit.
    pub(crate) cpu: Arc<CpuMeter>,
    pub(crate) cpu_limit: std::time::Duration,
    /// Where the plugin's `host.log` lines go (shared with its stdio).
    pub(crate) log: LogGate,
    /// The newest `report-quota` of the current or an earlier call, until
    /// the host takes it.
    pub(crate) quota: Option<QuotaHint>,
}

/// What a plugin reported about its API's remaining quota (`report-quota`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaHint {
    /// Calls left in the rolling window.
    pub remaining: u32,
    /// Calls the API allows per window.
    pub limit: u32,
    /// The window's length.
    pub window_ms: u32,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for PluginState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

impl host::Host for PluginState {
    fn log(&mut self, level: host::Level, message: String) -> wasmtime::Result<()> {
        // Escaped, capped per line and within the output budgets.
        self.log.emit(LogSource::Log(level), &message);
        Ok(())
    }

    fn report_quota(&mut self, remaining: u32, limit: u32, window_ms: u32) -> wasmtime::Result<()> {
        self.quota = Some(QuotaHint {
            remaining,
            limit,
            window_ms,
        });
        Ok(())
    }
}

/// Enforces the memory ceiling and remembers that it was hit, so a failed
/// call can say "memory" rather than a bare trap. It also adds up the linear
/// memory it lets the instance's memories reach.
pub struct MemoryLimiter {
    pub limit: usize,
    pub exceeded: bool,
    /// Bytes of linear memory across the store's memories: their initial
    /// sizes plus every growth allowed here (linear memory never shrinks).
    pub linear_bytes: usize,
}

impl MemoryLimiter {
    pub fn new(limits: &Limits) -> Self {
        MemoryLimiter {
            limit: limits.memory_bytes,
            exceeded: false,
            linear_bytes: 0,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            // Trap rather than returning -1 from memory.grow: most guest
            // allocators abort on failure anyway, and a trap is attributable.
            return Err(wasmtime::format_err!(
                "memory ceiling of {} bytes reached",
                self.limit
            ));
        }
        // A new memory is reported as growing from 0 to its initial size.
        // Growth past the memory's own maximum fails after this call, so it
        // is not counted.
        if maximum.is_none_or(|max| desired <= max) {
            self.linear_bytes += desired.saturating_sub(current);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        16
    }
}
