//! Running a sync: extract → diff → map → transform → load → commit.
//!
//! The source streams batches from its own task while this loop diffs,
//! maps, transforms and writes the previous batch. After each batch, the
//! rows the destination acknowledged, the rows it rejected and the run's
//! progress are committed in one state transaction: a run killed at any
//! point leaves state that claims only acknowledged rows, so the next run
//! re-sends exactly what was not recorded (at-least-once, idempotent by key).

use super::deliver::{Delivered, DeliveryContext, InFlight, RowMeta, Writer};
use super::diff::{Change, Differ, RowDiff};
use super::mapping::{self, Mapper};
use super::pacing::{self, Pacer};
use anyhow::{anyhow, bail, Context, Result};
use sluice_config::{PluginInstance, Project, SyncConfig};
use sluice_registry::{load_plugin, sandbox_for};
use sluice_runtime::bindings::types::{
    ObjectInfo, PluginError, RateLimit, ReadRequest, WriteMode, WriteTarget,
};
use sluice_runtime::instance::TransformerHandle;
use sluice_runtime::values::value_json;
use sluice_runtime::{Batch, PluginSpec, Row};
use sluice_runtime::{Instance, PluginFailure, Runtime};
use sluice_state::hash::RowHash;
use sluice_state::key::{DestId, RowKey};
use sluice_state::{
    Ack, CommitBatch, InvalidRow, Rejection, RunCounts, RunId, RunStatus, StateStore,
};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Called after every batch with the run's counts so far.
pub type ProgressFn = Arc<dyn Fn(&RunCounts) + Send + Sync>;

/// How to run.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Re-send every row (the rejected-row ledger is kept).
    pub full_resync: bool,
    /// Plan only: diff and map, write nothing, commit nothing.
    pub dry_run: bool,
    /// Called after every batch with the counts so far.
    pub progress: Option<ProgressFn>,
    /// Retry policy for retryable failures within the run.
    pub retry: RetryPolicy,
}

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Consecutive rate-limit waits tolerated for one batch.
    pub max_throttle_waits: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
            max_throttle_waits: 1000,
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with full jitter.
    pub(super) fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_delay);
        let jitter = rand_unit();
        exp.mul_f64(0.5 + jitter / 2.0)
    }
}

/// How long to wait before retrying a call that failed transiently: what a
/// rate limit asked for, or backoff.
pub(super) fn retry_wait(failure: &PluginFailure, attempt: u32) -> Duration {
    match failure.plugin_error() {
        Some(PluginError::RateLimited(info)) => Duration::from_millis(info.retry_after_ms),
        _ => RetryPolicy::default().delay(attempt),
    }
}

/// A cheap pseudo-random number in [0, 1) for jitter (no crypto needed).
fn rand_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// A row the plan would send, for `sluice plan`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannedRow {
    pub change: &'static str,
    pub key: String,
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// What a run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    pub run_id: Option<RunId>,
    pub sync: String,
    pub status: RunStatus,
    pub counts: RunCounts,
    pub elapsed_ms: u128,
    pub error: Option<String>,
    /// Samples of rows that would be sent (plans only).
    pub planned: Vec<PlannedRow>,
}

const PLAN_SAMPLES: usize = 10;
const SOURCE_QUEUE: usize = 4;
/// The smallest batch requested from a source.
const SOURCE_BATCH_ROWS: u32 = 5000;

/// Everything a run needs from the outside.
pub struct SyncEngine<'a, S: StateStore> {
    pub project: &'a Project,
    pub runtime: &'a Runtime,
    pub store: &'a Mutex<S>,
}

impl<S: StateStore> SyncEngine<'_, S> {
    /// Run (or plan) one sync.
    pub async fn run(&self, name: &str, options: &RunOptions) -> Result<RunReport> {
        let started = Instant::now();
        let sync = self.project.sync(name).map_err(|e| anyhow!(e))?;
        let mut prepared = self
            .prepare(sync, options)
            .await
            .with_context(|| format!("sync `{name}`"))?;
        if options.dry_run {
            let mut report = prepared
                .plan(self.store, options)
                .await
                .with_context(|| format!("planning sync `{name}`"))?;
            report.elapsed_ms = started.elapsed().as_millis();
            return Ok(report);
        }
        let run_id = {
            let mut store = lock(self.store);
            store.mark_interrupted_runs()?;
            let id = store.begin_run(name, options.full_resync)?;
            if options.full_resync {
                store.forget_snapshot(name)?;
            }
            id
        };
        let outcome = prepared.execute(self.store, run_id, options).await;
        let (status, error) = match &outcome {
            Ok(()) => (RunStatus::Succeeded, None),
            Err(e) => (RunStatus::Failed, Some(format!("{e:#}"))),
        };
        let record = {
            let mut store = lock(self.store);
            store.finish_run(run_id, status, error.as_deref())?;
            store.run(run_id)?
        };
        let counts = record.map(|r| r.counts).unwrap_or_default();
        Ok(RunReport {
            run_id: Some(run_id),
            sync: name.to_string(),
            status,
            counts,
            elapsed_ms: started.elapsed().as_millis(),
            error,
            planned: Vec::new(),
        })
    }

    async fn prepare<'p>(
        &self,
        sync: &'p SyncConfig,
        options: &RunOptions,
    ) -> Result<Prepared<'p>> {
        let project = self.project;
        let model = project.model_of(sync);
        let source_cfg = project.source_of(model);
        let dest_cfg = &project.destination_of(sync).instance;

        let (source, _) = open_instance(self.runtime, &project.dir, source_cfg, "source").await?;
        let (mut destination, spec) =
            open_instance(self.runtime, &project.dir, dest_cfg, "destination").await?;
        let object = discover_object(&mut destination, dest_cfg, sync).await?;
        mapping::check_against_destination(sync, None, &object).map_err(|problems| {
            anyhow!(
                "the mapping does not fit `{}` on destination `{}`:\n  {}",
                sync.object,
                dest_cfg.name,
                problems
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("\n  ")
            )
        })?;
        let mapper = Mapper::new(sync).map_err(|problems| {
            anyhow!(
                "invalid mappings: {}",
                problems
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })?;
        let mut transforms = Vec::new();
        for t in &sync.transforms {
            let cfg = &project.transforms[t];
            let (mut instance, _) =
                open_instance(self.runtime, &project.dir, cfg, "transform").await?;
            let handle = instance.open_transformer(&cfg.config_json()).await?;
            transforms.push((instance, handle));
        }
        let identifier = sync.identifier.as_ref().map(|i| i.expose().to_string());
        let target = WriteTarget {
            object: sync.object.expose().to_string(),
            mode: sync.mode.write_mode(),
            identifier: identifier.clone().unwrap_or_default(),
        };
        // The sync's batch size wins; otherwise the destination's preference.
        let batch_size = sync.batch_size.unwrap_or(spec.batch_size);
        // The sync's override wins over the destination's, and either over
        // the limit the plugin declares.
        let rate = sync
            .rate_limit
            .or(project.destination_of(sync).rate_limit)
            .map(RateLimit::from)
            .or(spec.rate_limit);
        let writers = if options.dry_run {
            1
        } else {
            pacing::concurrency(rate.as_ref())
        };
        let pacer = Pacer::new(rate.as_ref(), writers);
        // Discovery has just called the API, and the API counts that call
        // against the same limit: charge it, so the first writes do not
        // overrun the window it started.
        pacer.charge();
        let mut destinations = vec![destination];
        while destinations.len() < writers {
            destinations.push(
                open_instance(self.runtime, &project.dir, dest_cfg, "destination")
                    .await?
                    .0,
            );
        }
        Ok(Prepared {
            sync,
            source: Some(source),
            source_config: source_cfg.config_json(),
            destinations,
            delivery: Some(DeliveryContext {
                pacer,
                retry: options.retry,
                config: dest_cfg.config_json(),
                identifier,
            }),
            target,
            mapper,
            transforms,
            batch_size,
            primary_key: model.primary_key.clone(),
            read: model.read_request(),
        })
    }
}

fn lock<S>(m: &Mutex<S>) -> std::sync::MutexGuard<'_, S> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn open_instance(
    runtime: &Runtime,
    project_dir: &Path,
    cfg: &PluginInstance,
    role: &str,
) -> Result<(Instance, PluginSpec)> {
    let plugin = load_plugin(runtime, project_dir, cfg)
        .with_context(|| format!("loading {role} `{}`", cfg.name))?;
    // The run's instance gets the intersection of the spec's requests and
    // the grants.
    let spec = plugin.spec().await?;
    let sandbox = sandbox_for(cfg, &spec)?;
    Ok((plugin.instantiate(&sandbox).await?, spec))
}

async fn discover_object(
    destination: &mut Instance,
    cfg: &PluginInstance,
    sync: &SyncConfig,
) -> Result<ObjectInfo> {
    let config = cfg.config_json();
    let mut attempt = 0;
    let objects = loop {
        match destination.discover(&config).await {
            Err(f) if f.is_retryable() && attempt + 1 < RetryPolicy::default().max_attempts => {
                attempt += 1;
                tokio::time::sleep(retry_wait(&f, attempt)).await;
            }
            other => break other?,
        }
    };
    let wanted = sync.object.expose();
    if let Some(o) = objects.iter().find(|o| o.name == wanted) {
        return Ok(o.clone());
    }
    // A destination with one catch-all object (webhooks) accepts any name.
    if let [only] = objects.as_slice() {
        if only.fields.iter().any(|f| f.name == "*") {
            return Ok(ObjectInfo {
                name: wanted.to_string(),
                ..only.clone()
            });
        }
    }
    let names: Vec<&str> = objects.iter().map(|o| o.name.as_str()).collect();
    let hint = sluice_config::suggest(wanted, names.iter().copied())
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default();
    bail!(
        "destination `{}` has no object `{wanted}` (it has: {}){hint}",
        cfg.name,
        names.join(", ")
    )
}

struct Prepared<'p> {
    sync: &'p SyncConfig,
    /// Moves into the reader task when the run starts.
    source: Option<Instance>,
    source_config: String,
    /// One instance per concurrent writer (one for a plan); the first ran
    /// discovery.
    destinations: Vec<Instance>,
    /// Moves into the writers when the run starts.
    delivery: Option<DeliveryContext>,
    target: WriteTarget,
    mapper: Mapper,
    transforms: Vec<(Instance, TransformerHandle)>,
    batch_size: u32,
    primary_key: Vec<String>,
    read: ReadRequest,
}

/// The rows of one source batch that should be sent (mapped and
/// transformed), plus what happened to the others.
struct Outgoing {
    batch: Batch,
    meta: Vec<RowMeta>,
    commit: CommitBatch,
}

/// Stream a source in its own task so reading overlaps writing.
fn spawn_reader(
    mut source: Instance,
    config: String,
    read: ReadRequest,
    batch_rows: u32,
) -> tokio::sync::mpsc::Receiver<Result<Batch, PluginFailure>> {
    let (tx, rx) = tokio::sync::mpsc::channel(SOURCE_QUEUE);
    tokio::spawn(async move {
        let reader = match source.read(&config, &read).await {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        loop {
            let next = source.next_batch(&reader, batch_rows).await;
            let done = !matches!(next, Ok(Some(_)));
            let item = match next {
                Ok(Some(batch)) => Ok(batch),
                Ok(None) => return,
                Err(e) => Err(e),
            };
            if tx.send(item).await.is_err() || done {
                return;
            }
        }
    });
    rx
}

impl Prepared<'_> {
    fn write_batch_rows(&self) -> usize {
        match self.batch_size {
            0 => 1000,
            n => n as usize,
        }
    }

    fn start_reader(
        &mut self,
    ) -> Result<tokio::sync::mpsc::Receiver<Result<Batch, PluginFailure>>> {
        let source = self
            .source
            .take()
            .ok_or_else(|| anyhow!("the source was already read"))?;
        // Read in large batches even when writes are small: scanning
        // unchanged rows is cheaper per call, and writes are chunked anyway.
        let rows = (self.write_batch_rows() as u32).max(SOURCE_BATCH_ROWS);
        Ok(spawn_reader(
            source,
            self.source_config.clone(),
            self.read.clone(),
            rows,
        ))
    }

    async fn classify(
        &mut self,
        differ: &mut Differ,
        mut batch: Batch,
        counts: &mut RunCounts,
    ) -> Result<Outgoing> {
        let diffs = differ
            .classify(&batch)
            .with_context(|| format!("diffing a batch of sync `{}`", self.sync.name))?;
        let mut commit = CommitBatch::default();
        let mut rows: Vec<Row> = Vec::with_capacity(diffs.len());
        let mut keys: Vec<RowKey> = Vec::with_capacity(diffs.len());
        let mut hashes: Vec<RowHash> = Vec::with_capacity(diffs.len());
        for RowDiff {
            index,
            key,
            hash,
            change,
        } in diffs
        {
            match change {
                Change::Added => counts.added += 1,
                Change::Changed { .. } => counts.changed += 1,
                Change::Unchanged => {
                    counts.unchanged += 1;
                    continue;
                }
                Change::Invalid(reason) => {
                    counts.invalid += 1;
                    let message = match &key {
                        Some(k) => format!("row with key {k}: {reason}"),
                        None => format!("row {index} of its batch: {reason}"),
                    };
                    commit.invalid.push(InvalidRow { key, message });
                    continue;
                }
            }
            if matches!(change, Change::Changed { .. }) && !self.sync.mode.sends_changed() {
                continue;
            }
            let Some(key) = key else { continue };
            rows.push(std::mem::take(&mut batch.rows[index]));
            keys.push(key);
            hashes.push(hash);
        }
        counts.planned += rows.len() as u64;
        let selected = Batch {
            columns: batch.columns,
            rows,
        };
        let mapped = self.mapper.apply(&selected, &keys)?;
        for e in &mapped.errors {
            commit.rejected.push(Rejection {
                key: e.key.clone(),
                hash: hashes[e.index],
                message: e.to_string(),
            });
        }
        let meta = mapped
            .rows
            .iter()
            .map(|&i| RowMeta {
                key: keys[i].clone(),
                hash: hashes[i],
            })
            .collect();
        let mut out = Outgoing {
            batch: mapped.batch,
            meta,
            commit,
        };
        self.apply_transforms(&mut out).await?;
        Ok(out)
    }

    async fn apply_transforms(&mut self, out: &mut Outgoing) -> Result<()> {
        for (instance, handle) in &mut self.transforms {
            if out.batch.rows.is_empty() {
                return Ok(());
            }
            let transformed = instance.transform(handle, &out.batch).await?;
            let mut failed = vec![false; out.meta.len()];
            for e in &transformed.errors {
                let meta = &out.meta[e.index as usize];
                failed[e.index as usize] = true;
                out.commit.rejected.push(Rejection {
                    key: meta.key.clone(),
                    hash: meta.hash,
                    message: format!("transform `{}`: {}", instance.plugin_name(), e.message),
                });
            }
            let meta = std::mem::take(&mut out.meta);
            out.meta = meta
                .into_iter()
                .zip(failed)
                .filter(|(_, f)| !f)
                .map(|(m, _)| m)
                .collect();
            out.batch = transformed.batch;
        }
        Ok(())
    }

    async fn plan<S: StateStore>(
        &mut self,
        store: &Mutex<S>,
        options: &RunOptions,
    ) -> Result<RunReport> {
        let snapshot = if options.full_resync {
            Default::default()
        } else {
            lock(store).load_snapshot(&self.sync.name)?
        };
        let mut differ = Differ::new(self.primary_key.clone(), snapshot);
        let mut rx = self.start_reader()?;
        let mut counts = RunCounts::default();
        let mut planned = Vec::new();
        while let Some(batch) = rx.recv().await {
            let out = self.classify(&mut differ, batch?, &mut counts).await?;
            counts.rejected += out.commit.rejected.len() as u64;
            for (row, meta) in out
                .batch
                .rows
                .iter()
                .zip(&out.meta)
                .take(PLAN_SAMPLES.saturating_sub(planned.len()))
            {
                let fields = out
                    .batch
                    .columns
                    .iter()
                    .zip(row)
                    .map(|(c, v)| (c.clone(), value_json(v)))
                    .collect();
                planned.push(PlannedRow {
                    change: "send",
                    key: meta.key.to_string(),
                    fields,
                });
            }
            if let Some(p) = &options.progress {
                p(&counts);
            }
        }
        let summary = differ.finish();
        if self.sync.mode.deletes_removed() {
            counts.removed = summary.removed.len() as u64;
            counts.planned += counts.removed;
            for r in summary
                .removed
                .iter()
                .take(PLAN_SAMPLES.saturating_sub(planned.len()))
            {
                planned.push(PlannedRow {
                    change: "delete",
                    key: r.key.to_string(),
                    fields: Default::default(),
                });
            }
        }
        Ok(RunReport {
            run_id: None,
            sync: self.sync.name.clone(),
            status: RunStatus::Succeeded,
            counts,
            elapsed_ms: 0,
            error: None,
            planned,
        })
    }

    async fn execute<S: StateStore>(
        &mut self,
        store: &Mutex<S>,
        run: RunId,
        options: &RunOptions,
    ) -> Result<()> {
        // Start reading first: the source's query runs while the snapshot
        // loads and the writers open.
        let mut rx = self.start_reader()?;
        let snapshot = lock(store).load_snapshot(&self.sync.name)?;
        let mut differ = Differ::new(self.primary_key.clone(), snapshot);
        let ctx = Arc::new(
            self.delivery
                .take()
                .ok_or_else(|| anyhow!("the run was already executed"))?,
        );
        // One writer opens now, so a bad config or credential fails the run
        // before anything is sent; the others open when chunks wait for
        // them (a small change set never authenticates them at all).
        let mut unopened = std::mem::take(&mut self.destinations);
        let first = unopened
            .pop()
            .ok_or_else(|| anyhow!("no destination instance"))?;
        let mut idle = vec![Writer::open(first, &ctx, &self.target).await?];
        let mut in_flight = InFlight::default();
        let mut total = RunCounts::default();
        let written: Result<()> = async {
            while let Some(batch) = rx.recv().await {
                let mut counts = RunCounts::default();
                let out = self.classify(&mut differ, batch?, &mut counts).await?;
                // What classification decided (invalid rows, mapping and
                // transform rejections, the diff counts) rides with the first
                // commit of this source batch.
                let mut pending = Some((out.commit, counts));
                for chunk in split_outgoing(out.batch, out.meta, self.write_batch_rows()) {
                    let (commit, counts) = pending.take().unwrap_or_default();
                    // A writer that is free, else one whose delivery has
                    // finished, else a new one while the concurrency allows,
                    // else wait for the first delivery to finish.
                    let writer = loop {
                        if let Some(w) = idle.pop() {
                            break w;
                        }
                        if let Some(done) = in_flight.finished() {
                            idle.push(
                                self.record_delivery(store, run, done?, &mut total, options)?,
                            );
                            continue;
                        }
                        if let Some(instance) = unopened.pop() {
                            break Writer::open(instance, &ctx, &self.target).await?;
                        }
                        let done = in_flight.next().await?;
                        break self.record_delivery(store, run, done, &mut total, options)?;
                    };
                    in_flight.push(writer.spawn_delivery(ctx.clone(), chunk, commit, counts));
                }
                if let Some((commit, counts)) = pending {
                    self.commit(store, run, commit, counts, &mut total, options)?;
                }
            }
            Ok(())
        }
        .await;
        // Whatever happened, record what the writers still in flight got
        // acknowledged before reporting.
        let mut first_error = written.err();
        while !in_flight.is_empty() {
            let finished = in_flight
                .next()
                .await
                .and_then(|done| self.record_delivery(store, run, done, &mut total, options));
            match finished {
                Ok(writer) => idle.push(writer),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        let summary = differ.finish();
        if self.sync.mode.deletes_removed() && !summary.removed.is_empty() {
            let writer = idle
                .pop()
                .ok_or_else(|| anyhow!("no destination writer left for deletes"))?;
            self.delete_removed(
                store,
                run,
                writer.into_instance(),
                &ctx,
                summary.removed,
                &mut total,
                options,
            )
            .await?;
        }
        Ok(())
    }

    /// Commit what a finished delivery got acknowledged, at once (a kill
    /// loses at most the acknowledgements of the chunks in flight), and
    /// hand its writer back.
    fn record_delivery<S: StateStore>(
        &self,
        store: &Mutex<S>,
        run: RunId,
        done: Delivered,
        total: &mut RunCounts,
        options: &RunOptions,
    ) -> Result<Writer> {
        let (commit, counts) = done.outcome?;
        self.commit(store, run, commit, counts, total, options)?;
        Ok(done.writer)
    }

    /// Record one commit: acknowledged and rejected rows with the progress
    /// they represent, in one state transaction.
    fn commit<S: StateStore>(
        &self,
        store: &Mutex<S>,
        run: RunId,
        mut commit: CommitBatch,
        mut counts: RunCounts,
        total: &mut RunCounts,
        options: &RunOptions,
    ) -> Result<()> {
        counts.rejected += commit.rejected.len() as u64;
        commit.progress = counts;
        lock(store).commit_batch(run, &commit)?;
        *total += counts;
        if let Some(p) = &options.progress {
            p(total);
        }
        Ok(())
    }

    /// Mirror mode: delete the rows that left the model, but only those
    /// Sluice itself delivered (they are in the snapshot, with the
    /// identifier value they were sent with).
    #[allow(clippy::too_many_arguments)]
    async fn delete_removed<S: StateStore>(
        &mut self,
        store: &Mutex<S>,
        run: RunId,
        instance: Instance,
        ctx: &DeliveryContext,
        removed: Vec<super::diff::RemovedRow>,
        total: &mut RunCounts,
        options: &RunOptions,
    ) -> Result<()> {
        let identifier = ctx
            .identifier
            .clone()
            .ok_or_else(|| anyhow!("mirror mode needs an identifier"))?;
        let target = WriteTarget {
            mode: WriteMode::Delete,
            ..self.target.clone()
        };
        let mut writer = Writer::open(instance, ctx, &target).await?;
        for chunk in removed.chunks(self.write_batch_rows()) {
            let mut counts = RunCounts {
                removed: chunk.len() as u64,
                planned: chunk.len() as u64,
                ..Default::default()
            };
            let mut commit = CommitBatch::default();
            let mut rows = Vec::new();
            let mut keys = Vec::new();
            for r in chunk {
                match r.dest_id.as_ref().map(DestId::to_value) {
                    Some(Ok(id)) => {
                        rows.push(vec![id]);
                        keys.push(r.key.clone());
                    }
                    _ => {
                        tracing::warn!(sync = %self.sync.name, key = %r.key, "cannot delete: no identifier was recorded when it was delivered")
                    }
                }
            }
            let batch = Batch {
                columns: vec![identifier.clone()],
                rows,
            };
            let results = writer.write_with_retry(ctx, &batch, &mut counts).await?;
            for (key, result) in keys.into_iter().zip(results) {
                match result {
                    Ok(()) => commit.acknowledged.push(Ack::Deleted { key }),
                    Err(message) => {
                        counts.rejected += 1;
                        tracing::warn!(sync = %self.sync.name, %key, "delete rejected: {message}");
                    }
                }
            }
            commit.progress = counts;
            lock(store).commit_batch(run, &commit)?;
            *total += counts;
            if let Some(p) = &options.progress {
                p(total);
            }
        }
        Ok(())
    }
}

fn split_outgoing(batch: Batch, meta: Vec<RowMeta>, size: usize) -> Vec<(Batch, Vec<RowMeta>)> {
    if batch.rows.is_empty() {
        return Vec::new();
    }
    let mut chunks = Vec::new();
    let mut rows = batch.rows.into_iter();
    let mut meta = meta.into_iter();
    loop {
        let r: Vec<Row> = rows.by_ref().take(size).collect();
        if r.is_empty() {
            break;
        }
        let m: Vec<RowMeta> = meta.by_ref().take(r.len()).collect();
        chunks.push((
            Batch {
                columns: batch.columns.clone(),
                rows: r,
            },
            m,
        ));
    }
    chunks
}
