//! Running a sync: extract → diff → map → transform → load → commit.
//!
//! The source streams batches from its own task while this loop diffs,
//! maps, transforms and writes the previous batch. After each batch, the
//! rows the destination acknowledged, the rows it rejected and the run's
//! progress are committed in one state transaction: a run killed at any
//! point leaves state that claims only acknowledged rows, so the next run
//! re-sends exactly what was not recorded (at-least-once, idempotent by key).

use crate::deliver::{Delivered, DeliveryContext, InFlight, RowMeta, Writer};
use crate::diff::{Change, Differ, RowDiff};
use crate::fingerprint::{self, PluginIdentity};
use crate::mapping::{self, Mapper};
use crate::notify::Notifier;
use crate::pacing::{self, Pacer};
use crate::reconcile::{Reconciled, Reconciler};
use crate::retry::RetryPolicy;
use anyhow::{anyhow, bail, Context, Result};
use sluice_config::{PluginInstance, Project, SyncConfig};
use sluice_registry::{load_plugin, sandbox_for};
use sluice_runtime::bindings::types::{ObjectInfo, RateLimit, ReadRequest, WriteMode, WriteTarget};
use sluice_runtime::instance::TransformerHandle;
use sluice_runtime::sandbox::scrub::Scrubber;
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
use std::time::Instant;

mod classify;
mod coalesce;
mod extract;
mod load;
mod mirror;
mod outcomes;
mod plan;
mod prepare;
mod stages;
mod verify;
mod warehouse;

pub use stages::Stage;
use stages::{Part, StageClock};
pub use warehouse::warehouse_diff_refusal;
use warehouse::Diffing;

pub use verify::{VerifyOptions, VerifyReport};

pub use outcomes::{check_outcome_table, key_text, OutcomesReport, OUTCOME_COLUMNS};

pub use prepare::{check_destination, discover_destination, instances_needed, DestinationCheck};

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
    /// Send only the rows in the rejected-row ledger (`sluice retry`):
    /// other changes wait for the next run and nothing is deleted.
    pub retry_rejected: bool,
    /// Rate budgets shared with other runs and processes (see
    /// [`crate::budget`]); `None`: each run keeps its destination's limit
    /// on its own.
    pub budgets: Option<Arc<dyn crate::budget::SharedBudgets>>,
    /// Told how each destination request went (a worker's metrics).
    pub observer: Option<Arc<dyn crate::observe::RunObserver>>,
    /// What the host's own requests for this run (its notifications) may
    /// reach, by resolved address: a tenant's grant ceiling on a server;
    /// `None`: anywhere (`sluice run`, the operator's own project).
    pub reach: Option<Arc<sluice_runtime::sandbox::policy::NetPolicy>>,
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
    /// Where a failed run failed (see [`Stage`]).
    pub stage: Option<String>,
    /// Samples of rows that would be sent (plans only).
    pub planned: Vec<PlannedRow>,
    /// Plans only: the bytes the source says its read scans, from a source
    /// that exports `estimate-api` (a BigQuery dry run's `totalBytesProcessed`).
    pub scan_bytes: Option<u64>,
    /// Where the model is diffed: `host`, or `warehouse` (the model's
    /// `diff:`; the source compares with its snapshot there).
    pub diff: &'static str,
    /// Mirror mode: what happened to the keys that left the model.
    pub mirror: MirrorSummary,
    /// The delivery-relevant config differs from the one the last
    /// successful run delivered under ([`crate::fingerprint`]): the rows
    /// delivered before count as changed.
    pub config_changed: bool,
    /// Where the per-row outcomes went (`outcomes:` of the sync): a plan
    /// says where they would go, a run how many were written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcomes: Option<OutcomesReport>,
}

/// Mirror mode: the keys that left the model, reconciled by identifier
/// (see [`crate::reconcile`]).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MirrorSummary {
    /// Records deleted (a plan: to delete).
    pub deletes: u64,
    /// Snapshot entries moved to the new key of a row that carries their
    /// identifier: not deleted.
    pub rekeyed: u64,
    /// Removed keys kept: their identifier is carried by a row without a
    /// usable key, or none was recorded.
    pub held: u64,
    /// Why the deletes were refused (the guard, or unknown identifiers).
    pub refused: Option<String>,
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
    /// Run (or plan) one sync. Every run attempt is recorded: a failure
    /// before anything is read (loading plugins, discovery, the mapping
    /// check) ends a recorded run as failed at that stage, like a failure
    /// while reading or writing does; the report carries it. An `Err` means
    /// no run could be recorded (an unknown sync, the state store, a sync
    /// already running) or a plan failed.
    pub async fn run(&self, name: &str, options: &RunOptions) -> Result<RunReport> {
        let started = Instant::now();
        let sync = self.project.sync(name).map_err(|e| anyhow!(e))?;
        if options.dry_run {
            let mut prepared = self
                .prepare(sync, options, Arc::default())
                .await
                .with_context(|| format!("sync `{name}`"))?;
            let config_changed = self.config_changed(name, prepared.fingerprint)?;
            let mut report = prepared
                .plan(self.store, options)
                .await
                .with_context(|| format!("planning sync `{name}`"))?;
            report.elapsed_ms = started.elapsed().as_millis();
            // A full resync re-sends everything whatever the config.
            report.config_changed = config_changed && !options.full_resync;
            return Ok(report);
        }
        let run_id = {
            let mut store = lock(self.store);
            store.mark_interrupted_runs()?;
            store.begin_run(name, options.full_resync)?
        };
        let notifier = self
            .project
            .notify
            .as_ref()
            .and_then(|n| Notifier::new(n, options.reach.as_ref()));
        let started_note = notifier.as_ref().map(|n| n.started(name, run_id));
        let clock = Arc::new(StageClock::default());
        let mut config_changed = false;
        let mut mirror = MirrorSummary::default();
        let mut outcomes = None;
        let running = async {
            let mut prepared = self.prepare(sync, options, clock.clone()).await?;
            clock.enter(Stage::Run);
            config_changed = self.config_changed(name, prepared.fingerprint)?;
            if options.full_resync {
                lock(self.store).forget_snapshot(name)?;
            }
            let executed = prepared.execute(self.store, run_id, options).await;
            mirror = std::mem::take(&mut prepared.mirror);
            // The outcomes of what was committed, whatever the deliveries'
            // end; their own failure changes nothing that was committed.
            outcomes = prepared.outcomes.finish().await;
            executed.map(|()| prepared.fingerprint)
        };
        // Commits happen batch by batch as the destination acknowledges, so
        // stopping here leaves state claiming only acknowledged rows; rows
        // sent and not yet committed are sent again by the next run.
        let outcome: Result<u64> = match sync.run_deadline {
            Some(limit) => tokio::time::timeout(limit, running)
                .await
                .unwrap_or_else(|_| Err(run_deadline_reached(limit))),
            None => running.await,
        };
        let mut stage = clock.stage().as_str();
        let outcomes_error = outcomes.as_ref().and_then(|o| o.error.clone());
        let mut error = outcome.as_ref().err().map(|e| {
            let text = Scrubber::new(self.project.secret_values())
                .scrub(&format!("{e:#}"))
                .into_owned();
            if text.contains(&format!("sync `{name}`")) {
                text
            } else {
                format!("sync `{name}`: {text}")
            }
        });
        // Outcome write-back that failed fails the run at `outcomes`
        // (after the deliveries, which stay committed), or is added to the
        // error of a run that failed anyway.
        if let Some(why) = &outcomes_error {
            let why = Scrubber::new(self.project.secret_values())
                .scrub(why)
                .into_owned();
            match &mut error {
                Some(e) => {
                    e.push_str("; also: ");
                    e.push_str(&why);
                }
                None => {
                    error = Some(why);
                    stage = "outcomes";
                }
            }
        }
        let record = {
            let mut store = lock(self.store);
            store.record_timings(run_id, &clock.timings())?;
            match (&outcome, &error) {
                (Ok(fingerprint), None) => {
                    store.record_fingerprint(name, *fingerprint, run_id)?;
                    store.finish_run(run_id, RunStatus::Succeeded, None)?;
                }
                // Delivered in full, outcomes not: the deliveries are what
                // they are, under this config.
                (Ok(fingerprint), Some(error)) => {
                    store.record_fingerprint(name, *fingerprint, run_id)?;
                    store.fail_run(run_id, stage, error)?
                }
                (Err(_), error) => {
                    store.fail_run(run_id, stage, error.as_deref().unwrap_or_default())?
                }
            }
            store.run(run_id)?
        };
        let counts = record.map(|r| r.counts).unwrap_or_default();
        let report = RunReport {
            run_id: Some(run_id),
            sync: name.to_string(),
            status: if error.is_none() {
                RunStatus::Succeeded
            } else {
                RunStatus::Failed
            },
            counts,
            elapsed_ms: started.elapsed().as_millis(),
            stage: error.is_some().then(|| stage.to_owned()),
            error,
            planned: Vec::new(),
            scan_bytes: None,
            diff: self.project.model_of(sync).diff.as_str(),
            mirror,
            config_changed,
            outcomes,
        };
        // After the run is on the record: a receiver that reads the run
        // back finds it ended.
        if let (Some(notifier), Some(started)) = (notifier, started_note) {
            notifier.ended(started, &report).await;
        }
        Ok(report)
    }

    /// Whether `fingerprint` differs from the one the last successful run
    /// recorded.
    fn config_changed(&self, sync: &str, fingerprint: u64) -> Result<bool> {
        Ok(lock(self.store)
            .fingerprint(sync)?
            .is_some_and(|f| f != fingerprint))
    }
}

/// The error of a run stopped at its `run_deadline`.
fn run_deadline_reached(limit: std::time::Duration) -> anyhow::Error {
    anyhow!(
        "stopped at its run deadline of {} s (`run_deadline`); what the destination \
         acknowledged before is committed, the rest is sent by the next run",
        limit.as_secs_f64()
    )
}

fn lock<S>(m: &Mutex<S>) -> std::sync::MutexGuard<'_, S> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Prepared<'p> {
    sync: &'p SyncConfig,
    /// The project's secret values, hidden in every message stored.
    secrets: Scrubber,
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
    /// The sync's config fingerprint, folded into every content hash.
    fingerprint: u64,
    /// Mirror mode: the identifiers the run's rows carry, from the moment
    /// the snapshot is loaded.
    reconciler: Option<Reconciler>,
    /// Mirror mode: what the run did about removed keys.
    mirror: MirrorSummary,
    /// Which stage the run is in and how long each took.
    clock: Arc<StageClock>,
    /// `sluice retry`: only rows with these keys are classified and sent.
    only_keys: Option<std::collections::HashSet<RowKey>>,
    /// Rows of the model read before the batch being classified, so an
    /// invalid row is named by its position in the source (1-based).
    rows_read: u64,
    /// `diff: warehouse`: what the source diffs (it reads with `diff`
    /// instead of `read`), a second source instance that records
    /// acknowledged rows in the warehouse's snapshot, and, once the run
    /// started, the task that does so.
    warehouse: Option<(sluice_runtime::instance::DiffRequest, Option<Instance>)>,
    advancer: Option<warehouse::Advancer>,
    /// `outcomes:`: the per-row outcomes written back as the run goes.
    outcomes: outcomes::Outcomes,
}

/// The rows of one source batch that should be sent (mapped and
/// transformed), plus what happened to the others.
struct Outgoing {
    batch: Batch,
    meta: Vec<RowMeta>,
    commit: CommitBatch,
}
