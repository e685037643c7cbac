//! One sandboxed instance of a plugin, used for one run. Every call,
//! instantiation and resource drop runs under a CPU and a wall-clock
//! deadline (`deadline.rs`); a trap or a deadline poisons only this
//! instance; failures name the plugin, the call and the limit or capability
//! involved.

use super::bindings::types::{
    Batch, ColumnBatch, ColumnsTransformed, ObjectInfo, PluginError, PluginSpec, ReadRequest,
    RowError, RowResult, Transformed, Value, WriteTarget,
};
use super::bindings::{
    estimate_api, lookup_api, warehouse_diff_api, ColumnarTransform, Destination, Source, Transform,
};
use super::columns;
use super::deadline::{self, guarded, CpuMeter, WallDeadline};
use super::error::{FailureKind, PluginFailure};
use super::limits::{cap_message, Limits};
use super::log::{LogGate, LogSource};
use super::plugin::{Plugin, PluginKind, PluginPre};
use super::sandbox::dirs::{self, DirRefusal};
use super::sandbox::http::{
    HttpMode, HttpTimeouts, InFlight, RequestGate, RequestObserver, SandboxedHttp,
};
use super::sandbox::policy::Grants;
use super::sandbox::protected;
use super::sandbox::scrub::Scrubber;
use super::sandbox::stdio::CapturedOutput;
use super::sandbox::{sockets, Denial, Denials, Stalls};
use super::state::{MemoryLimiter, PluginState, QuotaHint};
use std::sync::Arc;
pub use warehouse_diff_api::{DeliveredRow, DiffRequest};
use wasmtime::component::ResourceAny;
use wasmtime::{Store, Trap};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};
use wasmtime_wasi_http::WasiHttpCtx;

/// What one instance is allowed: its grants, its limits, and the tenant whose
/// instance quota it counts against.
#[derive(Debug, Clone, Default)]
pub struct Sandbox {
    pub grants: Grants,
    pub limits: Option<Limits>,
    pub tenant: String,
    /// Live HTTP, or recording to / replaying from a cassette.
    pub http: HttpMode,
    /// Secret values of the plugin's config, hidden in every line it logs.
    pub secrets: Scrubber,
    /// The directories the operator granted this plugin, where the host
    /// may read a CA bundle the plugin names for its TLS handshakes
    /// (`sluice:tls/policy`), whether or not the plugin requested them for
    /// its own file access (`sandbox/tls.rs`).
    pub tls_ca_dirs: Vec<crate::sandbox::policy::DirGrant>,
}

impl Sandbox {
    /// A sandbox with `grants`; a CA file for TLS may come from its
    /// directories.
    pub fn new(grants: Grants) -> Self {
        Sandbox {
            tls_ca_dirs: grants.dirs.clone(),
            grants,
            limits: None,
            tenant: "default".into(),
            http: HttpMode::Live,
            secrets: Scrubber::default(),
        }
    }
}

/// A wall clock that never moves (recording and replay).
struct FixedWallClock(std::time::Duration);

impl wasmtime_wasi::HostWallClock for FixedWallClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_millis(1)
    }
    fn now(&self) -> std::time::Duration {
        self.0
    }
}

enum Exports {
    Source(
        Source,
        Option<estimate_api::Guest>,
        Option<warehouse_diff_api::Guest>,
    ),
    Transform(Transform),
    ColumnarTransform(ColumnarTransform),
    Destination(Destination, Option<lookup_api::Guest>),
}

/// An open source read.
pub struct ReaderHandle(ResourceAny);
/// An open transformer.
pub struct TransformerHandle(ResourceAny);
/// An open warehouse diff.
pub struct DiffReaderHandle(ResourceAny);
/// An open destination writer.
pub struct WriterHandle(ResourceAny);

/// A live plugin instance.
pub struct Instance {
    plugin: Arc<str>,
    kind: PluginKind,
    store: Store<PluginState>,
    exports: Exports,
    limits: Limits,
    /// The guest execution time of the call under way.
    cpu: Arc<CpuMeter>,
    poisoned: bool,
    /// How long [`Plugin::instantiate`] took to make this instance.
    instantiated_in: std::time::Duration,
    _permit: tokio::sync::OwnedSemaphorePermit,
    _live: LiveInstance,
}

/// Counts an instance in [`crate::Runtime::live_instances`] while it lives.
struct LiveInstance(Arc<std::sync::atomic::AtomicUsize>);

impl LiveInstance {
    fn count(live: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        live.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        LiveInstance(live.clone())
    }
}

impl Drop for LiveInstance {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Plugin {
    /// Create a sandboxed instance for one run. The call's wall time is
    /// kept with the instance ([`Instance::instantiated_in`]).
    pub async fn instantiate(&self, sandbox: &Sandbox) -> Result<Instance, PluginFailure> {
        // Timed from here: a run's per-instance cost is the sandbox set up
        // (WASI context, directories opened, granted names resolved), the
        // store and the component's instantiation; the compiled component
        // and its `InstancePre` were ready before the call.
        let started = std::time::Instant::now();
        let runtime = &self.runtime;
        let limits = sandbox
            .limits
            .clone()
            .unwrap_or_else(|| runtime.options.limits.clone());
        let fail = |kind| PluginFailure {
            plugin: self.name.to_string(),
            call: "instantiate".into(),
            kind,
        };
        // A tenant's view of the runtime counts every instance as the
        // tenant's, whatever the sandbox says.
        let tenant = runtime.tenant.as_deref().unwrap_or(&sandbox.tenant);
        let permit = runtime
            .instance_permits(tenant, limits.instances_per_tenant)
            .try_acquire_owned()
            .map_err(|_| {
                fail(FailureKind::InstanceLimit {
                    limit: limits.instances_per_tenant,
                })
            })?;

        let log = LogGate::new(
            self.name.clone(),
            runtime.options.log.clone(),
            &limits,
            sandbox.secrets.clone(),
        );
        let stdout = CapturedOutput::new(LogSource::Stdout, log.clone());
        let stderr = CapturedOutput::new(LogSource::Stderr, log.clone());
        let denials = Denials::default();
        let stalls = Stalls::default();
        let cpu = Arc::new(CpuMeter::default());
        let policy = Arc::new(sandbox.grants.net.clone());

        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(stdout).stderr(stderr);
        if let Some(now) = sandbox.http.fixed_wall_clock() {
            wasi.wall_clock(FixedWallClock(now));
        }
        let own = runtime.protected_paths();
        for dir in &sandbox.grants.dirs {
            let perms = if dir.writable {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            // Opened without following links; wasmtime-wasi then opens the
            // same directory (see `sandbox/dirs.rs`).
            let opened = dirs::open_no_follow(&dir.host).map_err(|refusal| {
                fail(match refusal {
                    DirRefusal::Symlink { .. } => FailureKind::Denied(Denial {
                        capability: "filesystem",
                        detail: format!(
                            "directory {} (granted at {}): {refusal}",
                            dir.host.display(),
                            dir.guest
                        ),
                    }),
                    DirRefusal::Unusable { .. } => FailureKind::Instantiate(format!(
                        "granted directory {} is not usable: {refusal}",
                        dir.host.display()
                    )),
                })
            })?;
            // No grant may reach the compile cache: code there runs as
            // plugins.
            if let Some(overlap) = protected::overlaps(std::slice::from_ref(dir), &own)
                .into_iter()
                .next()
            {
                return Err(fail(FailureKind::Denied(Denial {
                    capability: "filesystem",
                    detail: format!("directory grant {overlap}"),
                })));
            }
            wasi.preopened_dir(opened.preopen_path(), &dir.guest, perms)
                .map_err(|e| {
                    fail(FailureKind::Instantiate(format!(
                        "granted directory {} is not usable: {e}",
                        dir.host.display()
                    )))
                })?;
        }
        let resolved = sockets::resolve_granted_names(&policy, &*runtime.options.resolver).await;
        sockets::install(&mut wasi, policy.clone(), resolved, denials.clone());
        let socket_gate = sockets::SocketGate::new(policy.clone(), limits.sockets, denials.clone());

        let (tls, tls_policy) = crate::tls::instance_tls();
        let state = PluginState {
            wasi: wasi.build(),
            tls,
            tls_policy,
            tls_ca_dirs: sandbox.tls_ca_dirs.clone(),
            http: WasiHttpCtx::new(),
            http_hooks: SandboxedHttp {
                policy,
                resolver: runtime.options.resolver.clone(),
                denials: denials.clone(),
                max_response_bytes: limits.http_response_bytes,
                timeouts: HttpTimeouts::from_limits(&limits),
                stalls: stalls.clone(),
                mode: sandbox.http.clone(),
                gate: None,
                observer: None,
                in_flight: InFlight::new(limits.requests_in_flight),
                unknown: Default::default(),
            },
            socket_gate,
            table: Default::default(),
            limiter: MemoryLimiter::new(&limits),
            quota: None,
            denials,
            stalls,
            cpu: cpu.clone(),
            cpu_limit: limits.call_deadline,
            log,
        };
        let mut store = Store::new(&runtime.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(deadline::first_slice_ticks(&limits));
        store.epoch_deadline_callback(|ctx| {
            let state = ctx.data();
            Ok(deadline::on_epoch_deadline(&state.cpu, state.cpu_limit))
        });

        let instantiating = async {
            match &self.pre {
                PluginPre::Source(pre, None, None) => pre
                    .instantiate_async(&mut store)
                    .await
                    .map(|s| Exports::Source(s, None, None)),
                PluginPre::Source(pre, estimate, diff) => {
                    // One instance serves all: its source exports, its
                    // estimate and its warehouse diff.
                    let instance = pre.instance_pre().instantiate_async(&mut store).await?;
                    let source = match (estimate, diff) {
                        (Some(e), _) => e.source.load(&mut store, &instance)?,
                        (None, Some(d)) => d.source.load(&mut store, &instance)?,
                        (None, None) => unreachable!("matched above"),
                    };
                    let estimate = match estimate {
                        Some(e) => Some(e.estimate.load(&mut store, &instance)?),
                        None => None,
                    };
                    let diff = match diff {
                        Some(d) => Some(d.diff.load(&mut store, &instance)?),
                        None => None,
                    };
                    Ok(Exports::Source(source, estimate, diff))
                }
                PluginPre::Transform(pre) => pre
                    .instantiate_async(&mut store)
                    .await
                    .map(Exports::Transform),
                PluginPre::ColumnarTransform(pre) => pre
                    .instantiate_async(&mut store)
                    .await
                    .map(Exports::ColumnarTransform),
                PluginPre::Destination(pre, None) => pre
                    .instantiate_async(&mut store)
                    .await
                    .map(|d| Exports::Destination(d, None)),
                PluginPre::Destination(pre, Some(indices)) => {
                    // One instance serves both: its destination exports and
                    // its lookup.
                    let instance = pre.instance_pre().instantiate_async(&mut store).await?;
                    let destination = indices.destination.load(&mut store, &instance)?;
                    let lookup = indices.lookup.load(&mut store, &instance)?;
                    Ok(Exports::Destination(destination, Some(lookup)))
                }
            }
        };
        let exports = guarded(&cpu, limits.wall_deadline, instantiating).await;
        let mut instance_limits_store = store;
        let exports = match exports {
            Ok(e) => e,
            Err(e) => {
                let kind = classify_trap(&mut instance_limits_store, &limits, e);
                return Err(fail(kind));
            }
        };
        Ok(Instance {
            plugin: self.name.clone(),
            kind: self.kind,
            store: instance_limits_store,
            exports,
            limits,
            cpu,
            poisoned: false,
            instantiated_in: started.elapsed(),
            _permit: permit,
            _live: LiveInstance::count(&runtime.live),
        })
    }
}

/// Turn a wasmtime error from a call into a named failure.
fn classify_trap(
    store: &mut Store<PluginState>,
    limits: &Limits,
    error: wasmtime::Error,
) -> FailureKind {
    if let Some(WallDeadline(limit)) = error.downcast_ref::<WallDeadline>() {
        return FailureKind::WallDeadline {
            limit_ms: limit.as_millis(),
        };
    }
    let state = store.data_mut();
    if state.limiter.exceeded {
        state.limiter.exceeded = false;
        return FailureKind::Memory {
            limit_bytes: limits.memory_bytes,
        };
    }
    if let Some(denial) = state.denials.take().into_iter().next() {
        return FailureKind::Denied(denial);
    }
    let trap = match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => {
            return FailureKind::Deadline {
                limit_ms: limits.call_deadline.as_millis(),
            }
        }
        Some(trap) => format!("{trap}"),
        None => format!("{:#}", anyhow::Error::from(error)),
    };
    // A Rust panic traps as `unreachable`: what the author needs is the
    // panic's message and location, which the plugin logged just before.
    match state.log.take_panic() {
        Some(panic) => FailureKind::Trap(format!("{panic} ({trap})")),
        None => FailureKind::Trap(trap),
    }
}

impl Instance {
    /// The wall time of the [`Plugin::instantiate`] call that made this
    /// instance (what a run pays per instance, with no per-row part).
    pub fn instantiated_in(&self) -> std::time::Duration {
        self.instantiated_in
    }

    pub fn plugin_name(&self) -> &str {
        &self.plugin
    }

    pub fn kind(&self) -> PluginKind {
        self.kind
    }

    /// Bytes of output (`host.log`, stdout and stderr, after escaping)
    /// dropped over the output budgets.
    pub fn discarded_output(&self) -> usize {
        self.store.data().log.dropped_bytes()
    }

    /// Bytes of linear memory the instance holds, summed over its core
    /// memories. Linear memory never shrinks, so this is also its peak.
    pub fn linear_memory_bytes(&self) -> usize {
        self.store.data().limiter.linear_bytes
    }

    fn failure(&self, call: &str, kind: FailureKind) -> PluginFailure {
        PluginFailure {
            plugin: self.plugin.to_string(),
            call: call.into(),
            kind,
        }
    }

    fn begin(&mut self, call: &str) -> Result<(), PluginFailure> {
        if self.poisoned {
            return Err(self.failure(call, FailureKind::Poisoned));
        }
        self.store.data().denials.take();
        self.store.data().stalls.take();
        self.store.data().log.begin_call(call);
        self.store
            .set_epoch_deadline(deadline::first_slice_ticks(&self.limits));
        Ok(())
    }

    /// Map the outcome of a call whose WIT result is `result<T, plugin-error>`.
    fn finish<T>(
        &mut self,
        call: &str,
        outcome: wasmtime::Result<Result<T, PluginError>>,
    ) -> Result<T, PluginFailure> {
        match self.finish_plain(call, outcome)? {
            Ok(v) => {
                for denial in self.store.data().denials.take() {
                    tracing::warn!(plugin = %self.plugin, call, "plugin continued after a denial: {denial}");
                }
                for stall in self.store.data().stalls.take() {
                    tracing::warn!(plugin = %self.plugin, call, "plugin continued after a stall: {stall}");
                }
                Ok(v)
            }
            Err(mut e) => {
                cap_plugin_error(&mut e, self.limits.message_bytes);
                // A plugin failing right after a denial failed because of it:
                // say which capability it lacked. One failing after a host
                // timeout: say which timeout, of which request.
                let state = self.store.data();
                let kind = match state.denials.take().into_iter().next() {
                    Some(denial) => FailureKind::Denied(denial),
                    None => match state.stalls.take().into_iter().next() {
                        Some(stall) => FailureKind::Stalled {
                            stall: Box::new(stall),
                            error: e,
                        },
                        None => FailureKind::Plugin(e),
                    },
                };
                Err(self.failure(call, kind))
            }
        }
    }

    /// Map the outcome of a call that cannot return a contract error.
    fn finish_plain<T>(
        &mut self,
        call: &str,
        outcome: wasmtime::Result<T>,
    ) -> Result<T, PluginFailure> {
        outcome.map_err(|e| {
            self.poisoned = true;
            let kind = classify_trap(&mut self.store, &self.limits, e);
            tracing::warn!(plugin = %self.plugin, call, "plugin instance failed: {kind}");
            self.failure(call, kind)
        })
    }

    /// Make every outgoing HTTP request of this instance wait for `gate`
    /// first (after its grant check, never in replay).
    pub fn set_request_gate(&mut self, gate: RequestGate) {
        self.store.data_mut().http_hooks.gate = Some(gate);
    }

    /// Tell `observer` how each of this instance's HTTP requests that went
    /// to the network ended and how long it took (never in replay).
    pub fn set_request_observer(&mut self, observer: RequestObserver) {
        self.store.data_mut().http_hooks.observer = Some(observer);
    }

    /// HTTP requests whose outcome is unknown (sent, no response came
    /// back) since the last take; see `sandbox::http::UnknownOutcomes`.
    pub fn take_unknown_outcomes(&mut self) -> u64 {
        self.store.data().http_hooks.unknown.take()
    }

    /// The quota the plugin last reported (`report-quota`), once.
    pub fn take_quota_hint(&mut self) -> Option<QuotaHint> {
        self.store.data_mut().quota.take()
    }

    fn wrong_world(&self, call: &str) -> PluginFailure {
        self.failure(
            call,
            FailureKind::Contract(format!("`{call}` is not part of the {} world", self.kind)),
        )
    }

    pub async fn spec(&mut self) -> Result<PluginSpec, PluginFailure> {
        self.begin("spec")?;
        let (cpu, wall, store) = (&self.cpu, self.limits.wall_deadline, &mut self.store);
        let outcome = match &self.exports {
            Exports::Source(s, ..) => {
                guarded(cpu, wall, s.sluice_plugin_source_api().call_spec(store)).await
            }
            Exports::Transform(t) => {
                guarded(cpu, wall, t.sluice_plugin_transform_api().call_spec(store)).await
            }
            Exports::ColumnarTransform(t) => {
                let api = t.sluice_plugin_columnar_transform_api();
                guarded(cpu, wall, api.call_spec(store)).await
            }
            Exports::Destination(d, _) => {
                guarded(
                    cpu,
                    wall,
                    d.sluice_plugin_destination_api().call_spec(store),
                )
                .await
            }
        };
        let spec = self.finish_plain("spec", outcome)?;
        let bytes = spec_bytes(&spec);
        if bytes > self.limits.spec_bytes {
            return Err(self.failure(
                "spec",
                FailureKind::TooLarge {
                    what: "spec (config schema included)",
                    bytes,
                    limit: self.limits.spec_bytes,
                    setting: "spec_bytes",
                },
            ));
        }
        Ok(spec)
    }

    pub async fn check(&mut self, config: &str) -> Result<(), PluginFailure> {
        self.begin("check")?;
        let (cpu, wall, store) = (&self.cpu, self.limits.wall_deadline, &mut self.store);
        let outcome = match &self.exports {
            Exports::Source(s, ..) => {
                let api = s.sluice_plugin_source_api();
                guarded(cpu, wall, api.call_check(store, config)).await
            }
            Exports::Transform(t) => {
                let api = t.sluice_plugin_transform_api();
                guarded(cpu, wall, api.call_check(store, config)).await
            }
            Exports::ColumnarTransform(t) => {
                let api = t.sluice_plugin_columnar_transform_api();
                guarded(cpu, wall, api.call_check(store, config)).await
            }
            Exports::Destination(d, _) => {
                let api = d.sluice_plugin_destination_api();
                guarded(cpu, wall, api.call_check(store, config)).await
            }
        };
        self.finish("check", outcome)
    }

    pub async fn discover(&mut self, config: &str) -> Result<Vec<ObjectInfo>, PluginFailure> {
        self.begin("discover")?;
        let (cpu, wall, store) = (&self.cpu, self.limits.wall_deadline, &mut self.store);
        let outcome = match &self.exports {
            Exports::Source(s, ..) => {
                let api = s.sluice_plugin_source_api();
                guarded(cpu, wall, api.call_discover(store, config)).await
            }
            Exports::Destination(d, _) => {
                let api = d.sluice_plugin_destination_api();
                guarded(cpu, wall, api.call_discover(store, config)).await
            }
            Exports::Transform(_) | Exports::ColumnarTransform(_) => {
                return Err(self.wrong_world("discover"))
            }
        };
        self.finish("discover", outcome)
    }

    /// Start reading (sources).
    pub async fn read(
        &mut self,
        config: &str,
        request: &ReadRequest,
    ) -> Result<ReaderHandle, PluginFailure> {
        self.begin("read")?;
        let Exports::Source(s, ..) = &self.exports else {
            return Err(self.wrong_world("read"));
        };
        let api = s.sluice_plugin_source_api();
        let call = api.call_read(&mut self.store, config, request);
        let outcome = guarded(&self.cpu, self.limits.wall_deadline, call).await;
        self.finish("read", outcome).map(ReaderHandle)
    }

    /// The next batch of a read, or `None` at the end.
    pub async fn next_batch(
        &mut self,
        reader: &ReaderHandle,
        max_rows: u32,
    ) -> Result<Option<Batch>, PluginFailure> {
        self.begin("reader.next")?;
        let Exports::Source(s, ..) = &self.exports else {
            return Err(self.wrong_world("reader.next"));
        };
        let api = s.sluice_plugin_source_api().reader();
        let call = api.call_next(&mut self.store, reader.0, max_rows);
        let outcome = guarded(&self.cpu, self.limits.wall_deadline, call).await;
        let batch = self.finish("reader.next", outcome)?;
        if let Some(b) = &batch {
            if let Some(bad) = b.rows.iter().position(|r| r.len() != b.columns.len()) {
                return Err(self.failure(
                    "reader.next",
                    FailureKind::Contract(format!(
                        "row {bad} has {} values but the batch has {} columns",
                        b.rows[bad].len(),
                        b.columns.len()
                    )),
                ));
            }
        }
        Ok(batch)
    }

    /// Prepare a transformer (transforms).
    pub async fn open_transformer(
        &mut self,
        config: &str,
    ) -> Result<TransformerHandle, PluginFailure> {
        self.begin("open")?;
        let (cpu, wall, store) = (&self.cpu, self.limits.wall_deadline, &mut self.store);
        let outcome = match &self.exports {
            Exports::Transform(t) => {
                let api = t.sluice_plugin_transform_api();
                guarded(cpu, wall, api.call_open(store, config)).await
            }
            Exports::ColumnarTransform(t) => {
                let api = t.sluice_plugin_columnar_transform_api();
                guarded(cpu, wall, api.call_open(store, config)).await
            }
            _ => return Err(self.wrong_world("open")),
        };
        self.finish("open", outcome).map(TransformerHandle)
    }

    /// Transform a batch. Checks that every input row is accounted for,
    /// either as an output row or as a row error.
    pub async fn transform(
        &mut self,
        transformer: &TransformerHandle,
        batch: &Batch,
    ) -> Result<Transformed, PluginFailure> {
        if let Exports::ColumnarTransform(_) = &self.exports {
            // The rest of the sync works on rows: convert on the way in and
            // out.
            let out = self
                .transform_columns(transformer, &columns::to_columns(batch))
                .await?;
            return columns::to_transformed(out)
                .map_err(|m| self.failure("transform", FailureKind::Contract(m)));
        }
        self.begin("transform")?;
        let Exports::Transform(t) = &self.exports else {
            return Err(self.wrong_world("transform"));
        };
        let api = t.sluice_plugin_transform_api().transformer();
        let call = api.call_transform(&mut self.store, transformer.0, batch);
        let outcome = guarded(&self.cpu, self.limits.wall_deadline, call).await;
        let mut out = self.finish("transform", outcome)?;
        for error in &mut out.errors {
            cap_message(&mut error.message, self.limits.message_bytes);
        }
        if let Err(m) = check_transformed(batch.rows.len(), &out) {
            return Err(self.failure("transform", FailureKind::Contract(m)));
        }
        Ok(out)
    }

    /// Transform a batch stored by column (`columnar-transform` plugins),
    /// with the same check that every input row is accounted for.
    pub async fn transform_columns(
        &mut self,
        transformer: &TransformerHandle,
        batch: &ColumnBatch,
    ) -> Result<ColumnsTransformed, PluginFailure> {
        self.begin("transform")?;
        let Exports::ColumnarTransform(t) = &self.exports else {
            return Err(self.wrong_world("transform"));
        };
        let api = t
            .sluice_plugin_columnar_transform_api()
            .columnar_transformer();
        let call = api.call_transform(&mut self.store, transformer.0, batch);
        let outcome = guarded(&self.cpu, self.limits.wall_deadline, call).await;
        let mut out = self.finish("transform", outcome)?;
        for error in &mut out.errors {
            cap_message(&mut error.message, self.limits.message_bytes);
        }
        let input_rows = batch.rows as usize;
        if let Err(m) = check_accounted(input_rows, out.batch.rows as usize, &out.errors) {
            return Err(self.failure("transform", FailureKind::Contract(m)));
        }
        Ok(out)
    }

    /// Prepare a writer (destinations).
    pub async fn open_writer(
        &mut self,
        config: &str,
        target: &WriteTarget,
    ) -> Result<WriterHandle, PluginFailure> {
        self.begin("open")?;
        let Exports::Destination(d, _) = &self.exports else {
            return Err(self.wrong_world("open"));
        };
        let api = d.sluice_plugin_destination_api();
        let call = api.call_open(&mut self.store, config, target);
        let outcome = guarded(&self.cpu, self.limits.wall_deadline, call).await;
        self.finish("open", outcome).map(WriterHandle)
    }

    /// Write a batch; exactly one result per row comes back, or the call fails.
    pub async fn write(
        &mut self,
        writer: &WriterHandle,
        batch: &Batch,
    ) -> Result<Vec<RowResult>, PluginFailure> {
        self.begin("write")?;
        let Exports::Destination(d, _) = &self.exports else {
            return Err(self.wrong_world("write"));
        };
        let api = d.sluice_plugin_destination_api().writer();
        let call = api.call_write(&mut self.store, writer.0, batch);
        let outcome = guarded(&self.cpu, self.limits.wall_deadline, call).await;
        let mut results = self.finish("write", outcome)?;
        for result in &mut results {
            if let RowResult::Rejected(message) = result {
                cap_message(message, self.limits.message_bytes);
            }
        }
        if results.len() != batch.rows.len() {
            return Err(self.failure(
                "write",
                FailureKind::Contract(format!(
                    "returned {} row results for a batch of {} rows",
                    results.len(),
                    batch.rows.len()
                )),
            ));
        }
        Ok(results)
    }

    /// The bytes `request` would scan, from a source that exports
    /// `estimate-api`; `None` from one that does not.
    pub async fn estimate_scan_bytes(
        &mut self,
        config: &str,
        request: &ReadRequest,
    ) -> Result<Option<u64>, PluginFailure> {
        if !matches!(&self.exports, Exports::Source(_, Some(_), _)) {
            return Ok(None);
        }
        self.begin("estimate-scan-bytes")?;
        let Exports::Source(_, Some(estimate), _) = &self.exports else {
            return Ok(None);
        };
        let call = estimate.call_estimate_scan_bytes(&mut self.store, config, request);
        let outcome = guarded(&self.cpu, self.limits.wall_deadline, call).await;
        self.finish("estimate-scan-bytes", outcome).map(Some)
    }

    /// Whether this source diffs inside its warehouse (`warehouse-diff-api`).
    pub fn can_diff_in_warehouse(&self) -> bool {
        matches!(&self.exports, Exports::Source(_, _, Some(_)))
    }

    /// Start a diff inside the warehouse (`warehouse-diff-api`): a reader of
    /// the model's rows that changed since the sync's snapshot.
    pub async fn diff(
        &mut self,
        config: &str,
        request: &DiffRequest,
    ) -> Result<DiffReaderHandle, PluginFailure> {
        self.begin("diff")?;
        let Exports::Source(_, _, Some(diff)) = &self.exports else {
            return Err(self.no_warehouse_diff("diff"));
        };
        let call = diff.call_diff(&mut self.store, config, request);
        let outcome = guarded(&self.cpu, self.limits.wall_deadline, call).await;
        self.finish("diff", outcome).map(DiffReaderHandle)
    }

    /// The next batch of a warehouse diff, or `None` at the end; every row
    /// as wide as the batch's columns.
    pub async fn next_diff_batch(
        &mut self,
        reader: &DiffReaderHandle,
        max_rows: u32,
    ) -> Result<Option<Batch>, PluginFailure> {
        self.begin("diff-reader.next")?;
        let Exports::Source(_, _, Some(diff)) = &self.exports else {
            return Err(self.no_warehouse_diff("diff-reader.next"));
        };
        let api = diff.diff_reader();
        let call = api.call_next(&mut self.store, reader.0, max_rows);
        let outcome = guarded(&self.cpu, self.limits.wall_deadline, call).await;
        let batch = self.finish("diff-reader.next", outcome)?;
        if let Some(b) = &batch {
            if let Some(bad) = b.rows.iter().position(|r| r.len() != b.columns.len()) {
                return Err(self.failure(
                    "diff-reader.next",
                    FailureKind::Contract(format!(
                        "row {bad} has {} values but the batch has {} columns",
                        b.rows[bad].len(),
                        b.columns.len()
                    )),
                ));
            }
        }
        Ok(batch)
    }

    /// Record rows the destination acknowledged in the sync's snapshot in
    /// the warehouse (`warehouse-diff-api`).
    pub async fn advance(
        &mut self,
        config: &str,
        sync: &str,
        rows: &[DeliveredRow],
    ) -> Result<(), PluginFailure> {
        self.begin("advance")?;
        let Exports::Source(_, _, Some(diff)) = &self.exports else {
            return Err(self.no_warehouse_diff("advance"));
        };
        let call = diff.call_advance(&mut self.store, config, sync, rows);
        let outcome = guarded(&self.cpu, self.limits.wall_deadline, call).await;
        self.finish("advance", outcome)
    }

    fn no_warehouse_diff(&self, call: &str) -> PluginFailure {
        self.failure(
            call,
            FailureKind::Contract(
                "the plugin cannot diff inside its warehouse: it does not export \
                 warehouse-diff-api (the warehouse-diff-source world)"
                    .into(),
            ),
        )
    }

    /// Which of `ids` exist in the destination's `target.object`
    /// (`lookup-api`, destinations that export it): one answer per id.
    pub async fn exists(
        &mut self,
        config: &str,
        target: &WriteTarget,
        ids: &[Value],
    ) -> Result<Vec<bool>, PluginFailure> {
        self.begin("exists")?;
        let Exports::Destination(_, Some(lookup)) = &self.exports else {
            return Err(self.failure(
                "exists",
                FailureKind::Contract(
                    "the plugin cannot look records up: it does not export lookup-api \
                     (the verifiable-destination world)"
                        .into(),
                ),
            ));
        };
        let call = lookup.call_exists(&mut self.store, config, target, ids);
        let outcome = guarded(&self.cpu, self.limits.wall_deadline, call).await;
        let answers = self.finish("exists", outcome)?;
        if answers.len() != ids.len() {
            return Err(self.failure(
                "exists",
                FailureKind::Contract(format!(
                    "answered {} times for {} identifiers",
                    answers.len(),
                    ids.len()
                )),
            ));
        }
        Ok(answers)
    }

    /// End a read: the plugin's reader is dropped (its destructor runs, e.g.
    /// to hang up on a database), under the same deadlines as any call.
    pub async fn close_reader(&mut self, reader: ReaderHandle) -> Result<(), PluginFailure> {
        self.drop_resource("reader.drop", reader.0).await
    }

    /// Drop a transformer, under the same deadlines as any call.
    pub async fn close_transformer(
        &mut self,
        transformer: TransformerHandle,
    ) -> Result<(), PluginFailure> {
        self.drop_resource("transformer.drop", transformer.0).await
    }

    /// Drop a writer (its destructor may flush), under the same deadlines as
    /// any call.
    pub async fn close_writer(&mut self, writer: WriterHandle) -> Result<(), PluginFailure> {
        self.drop_resource("writer.drop", writer.0).await
    }

    async fn drop_resource(
        &mut self,
        call: &str,
        resource: ResourceAny,
    ) -> Result<(), PluginFailure> {
        self.begin(call)?;
        let dropping = resource.resource_drop_async(&mut self.store);
        let outcome = guarded(&self.cpu, self.limits.wall_deadline, dropping).await;
        self.finish_plain(call, outcome)
    }
}

/// Bytes of the text in a spec: what the host would hold and parse.
fn spec_bytes(spec: &PluginSpec) -> usize {
    spec.name.len()
        + spec.version.len()
        + spec.description.len()
        + spec.config_schema.len()
        + spec.capabilities.iter().map(String::len).sum::<usize>()
}

/// Cap the message a contract error carries (`limits.message_bytes`).
fn cap_plugin_error(error: &mut PluginError, limit: usize) {
    let message = match error {
        PluginError::Config(m)
        | PluginError::Auth(m)
        | PluginError::Retryable(m)
        | PluginError::Permanent(m) => m,
        PluginError::RateLimited(r) => &mut r.message,
    };
    cap_message(message, limit);
}

fn check_transformed(input_rows: usize, out: &Transformed) -> Result<(), String> {
    check_accounted(input_rows, out.batch.rows.len(), &out.errors)?;
    if let Some(bad) = out
        .batch
        .rows
        .iter()
        .position(|r| r.len() != out.batch.columns.len())
    {
        return Err(format!(
            "output row {bad} does not match the output columns"
        ));
    }
    Ok(())
}

/// Every input row comes back as an output row or as exactly one row error.
fn check_accounted(
    input_rows: usize,
    output_rows: usize,
    errors: &[RowError],
) -> Result<(), String> {
    if output_rows + errors.len() != input_rows {
        return Err(format!(
            "returned {output_rows} rows and {} row errors for {input_rows} input rows",
            errors.len()
        ));
    }
    let mut seen = vec![false; input_rows];
    for e in errors {
        let i = e.index as usize;
        if i >= input_rows || std::mem::replace(&mut seen[i], true) {
            return Err(format!("row error index {i} is out of range or repeated"));
        }
    }
    Ok(())
}
