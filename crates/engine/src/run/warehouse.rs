//! `diff: warehouse`: the source diffs the model inside its warehouse
//! (`warehouse-diff-api`) and only the rows that changed reach the host.
//!
//! - The source's diff reader streams the model's rows that are not in the
//!   sync's snapshot (kept in the warehouse, schema `sluice`) or whose
//!   content hash differs, each followed by `__sluice_hash` (its hash, 16
//!   bytes) and `__sluice_previous` (the hash recorded, or null for a new
//!   key). [`WarehouseRows`] turns them into the same [`RowDiff`]s the
//!   host's own diff makes, so mapping, transforms and loading are shared.
//! - **The snapshot advances only after acknowledgement.** Every commit of
//!   a run hands the rows the destination acknowledged to the
//!   [`Advancer`], a second source instance that records them in the
//!   warehouse (`advance`, at most [`ADVANCE_ROWS`] a call, all or none);
//!   rejected and unanswered rows are never handed over, so the next diff
//!   returns them again. A run waits for the advancer before it ends and
//!   fails if a row could not be recorded (the next run sends it again).
//! - The state store keeps the run records and the rejected-row ledger, not
//!   the snapshot: an acknowledged row clears its ledger entry (and any
//!   entry of the host's own snapshot, which a warehouse run forgets when
//!   it starts, so switching back to `diff: host` re-sends every row).

use super::*;
use crate::diff::{DiffSummary, InvalidReason};
use sluice_runtime::instance::{DeliveredRow, DiffRequest};
use sluice_runtime::Value;
use std::collections::HashSet;
use tokio::sync::mpsc;
use xxhash_rust::xxh3::xxh3_128;

/// The column after the model's that carries a row's content hash.
pub(super) const HASH_COLUMN: &str = "__sluice_hash";
/// The column after it: the hash recorded for the key, null when new.
pub(super) const PREVIOUS_COLUMN: &str = "__sluice_previous";
/// The most acknowledged rows recorded by one `advance` call.
pub(super) const ADVANCE_ROWS: usize = 5000;

/// How a run classifies the model's rows.
pub(super) enum Diffing {
    /// Every row against the host's snapshot.
    Host(Differ),
    /// The changed rows the warehouse returned.
    Warehouse(WarehouseRows),
}

impl Diffing {
    pub(super) fn classify(&mut self, batch: &mut Batch) -> Result<Vec<RowDiff>> {
        match self {
            Diffing::Host(d) => Ok(d.classify(batch)?),
            Diffing::Warehouse(w) => w.classify(batch),
        }
    }

    /// The host's snapshot (mirror mode, which diffs on the host only);
    /// empty when the warehouse diffs.
    pub(super) fn snapshot(&self) -> &crate::diff::Snapshot {
        match self {
            Diffing::Host(d) => d.snapshot(),
            Diffing::Warehouse(w) => &w.empty,
        }
    }

    /// The keys that left the model, from the host's diff; the warehouse's
    /// returns none (removed keys stay in its snapshot).
    pub(super) fn finish(self) -> Result<Option<DiffSummary>> {
        Ok(match self {
            Diffing::Host(d) => Some(d.finish()?),
            Diffing::Warehouse(_) => None,
        })
    }
}

/// Classifies the rows a warehouse diff returned: every one is added or
/// changed (or invalid: a null key, or a key already returned in this run).
pub(super) struct WarehouseRows {
    primary_key: Vec<String>,
    /// The 128-bit hashes of the keys returned so far (an accidental
    /// collision among billions of keys is negligible, as for content
    /// hashes): the rows that leave the warehouse, not the model, so host
    /// memory follows the change set, at 16 bytes a key.
    seen: HashSet<u128>,
    /// What [`Diffing::snapshot`] shows: the host holds none.
    empty: crate::diff::Snapshot,
}

impl WarehouseRows {
    pub(super) fn new(primary_key: Vec<String>) -> Self {
        WarehouseRows {
            primary_key,
            seen: HashSet::new(),
            empty: crate::diff::Snapshot::new(),
        }
    }

    /// Strips the two diff columns from `batch` and classifies its rows.
    pub(super) fn classify(&mut self, batch: &mut Batch) -> Result<Vec<RowDiff>> {
        let n = batch.columns.len();
        if n < 2 || batch.columns[n - 2] != HASH_COLUMN || batch.columns[n - 1] != PREVIOUS_COLUMN {
            bail!(
                "the source's warehouse diff must end its columns with `{HASH_COLUMN}`, \
                 `{PREVIOUS_COLUMN}`; it sent [{}]",
                batch.columns.join(", ")
            );
        }
        batch.columns.truncate(n - 2);
        let positions = self
            .primary_key
            .iter()
            .map(|k| key_position(k, &batch.columns))
            .collect::<Result<Vec<_>>>()?;
        let mut out = Vec::with_capacity(batch.rows.len());
        for (index, row) in batch.rows.iter_mut().enumerate() {
            let previous = row.pop();
            let hash = row.pop();
            let invalid = |key, reason| RowDiff {
                index,
                key,
                hash: RowHash(0),
                change: Change::Invalid(reason),
            };
            if let Some(&pos) = positions.iter().find(|&&p| row[p] == Value::Null) {
                let column = batch.columns[pos].clone();
                out.push(invalid(None, InvalidReason::NullKey { column }));
                continue;
            }
            let hash = hash_of(hash.as_ref(), HASH_COLUMN)?;
            let change = match previous {
                Some(Value::Null) | None => Change::Added,
                Some(p) => Change::Changed {
                    previous: hash_of(Some(&p), PREVIOUS_COLUMN)?,
                },
            };
            let values: Vec<Value> = positions.iter().map(|&p| row[p].clone()).collect();
            let key = RowKey::from_values(&values);
            if !self.seen.insert(xxh3_128(key.as_bytes())) {
                out.push(invalid(Some(key), InvalidReason::DuplicateKey));
                continue;
            }
            out.push(RowDiff {
                index,
                key: Some(key),
                hash,
                change,
            });
        }
        Ok(out)
    }
}

fn hash_of(value: Option<&Value>, column: &str) -> Result<RowHash> {
    match value {
        Some(Value::Bytes(b)) => RowHash::from_slice(b),
        _ => None,
    }
    .ok_or_else(|| {
        anyhow!("the source's warehouse diff sent a `{column}` that is not 16 bytes: {value:?}")
    })
}

fn key_position(column: &str, columns: &[String]) -> Result<usize> {
    columns.iter().position(|c| c == column).ok_or_else(|| {
        anyhow!(
            "primary key column `{column}` is not among the model's columns [{}]",
            columns.join(", ")
        )
    })
}

/// `diff: warehouse` needs a source that exports `warehouse-diff-api`, and
/// a sync that does not delete (mirror mode reconciles removed keys with
/// every identifier the model carries, which only the host's diff sees).
pub(super) fn check_can_diff(
    sync: &SyncConfig,
    model: &sluice_config::Model,
    source_cfg: &PluginInstance,
    source: &Instance,
) -> Result<()> {
    refusal(
        sync,
        model,
        source_cfg,
        (source.can_diff_in_warehouse(), source.plugin_name()),
    )
}

/// What `sluice validate` knows before a run: `Some(why)` when a run of
/// `sync` would refuse its model's `diff: warehouse` (its source's plugin
/// is loaded, not instantiated); `None` for a model diffed on the host.
pub async fn warehouse_diff_refusal(
    runtime: &Runtime,
    project: &Project,
    sync: &SyncConfig,
) -> Result<Option<String>> {
    let model = project.model_of(sync);
    if model.diff != sluice_config::DiffLocation::Warehouse {
        return Ok(None);
    }
    let source_cfg = project.source_of(model);
    let plugin = load_plugin(runtime, &project.dir, source_cfg)
        .with_context(|| format!("loading source `{}`", source_cfg.name))?;
    let can = plugin.can_diff_in_warehouse();
    Ok(refusal(sync, model, source_cfg, (can, plugin.name()))
        .err()
        .map(|e| e.to_string()))
}

fn refusal(
    sync: &SyncConfig,
    model: &sluice_config::Model,
    source_cfg: &PluginInstance,
    (can_diff, plugin): (bool, &str),
) -> Result<()> {
    if !can_diff {
        bail!(
            "model `{}` says `diff: warehouse`, but its source `{}` (plugin `{}`) cannot diff \
             inside its warehouse: it does not export warehouse-diff-api (the \
             warehouse-diff-source world; the postgres source does); use `diff: host`",
            model.name,
            source_cfg.name,
            plugin
        );
    }
    if sync.mode.deletes_removed() {
        bail!(
            "sync `{}` is in mode `{}`, which `diff: warehouse` (model `{}`) does not support \
             yet: its deletes are reconciled with every identifier the model carries, which \
             only the host's diff sees; use `diff: host`",
            sync.name,
            sync.mode,
            model.name
        );
    }
    Ok(())
}

/// The request a run (or a plan) sends the source.
pub(super) fn request(
    sync: &SyncConfig,
    model: &sluice_config::Model,
    fingerprint: u64,
    options: &RunOptions,
) -> DiffRequest {
    DiffRequest {
        sync: sync.name.clone(),
        query: match model.read_request() {
            ReadRequest::Query(q) => q,
            ReadRequest::Object(o) => format!("SELECT * FROM {}", quote_object(&o)),
        },
        primary_key: model.primary_key.clone(),
        seed: format!("{fingerprint:016x}"),
        full_resync: options.full_resync,
        dry_run: options.dry_run,
    }
}

/// `schema.table` as quoted SQL identifiers (an object model's name).
fn quote_object(name: &str) -> String {
    name.split('.')
        .map(|p| format!("\"{}\"", p.trim_matches('"').replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

/// The most acknowledged rows waiting for the advancer before the run
/// stops reading until it catches up (a few tens of MB).
pub(super) const MAX_QUEUED_ROWS: usize = 100_000;

/// Records acknowledged rows in the warehouse's snapshot, in the
/// background of a run, on a source instance of its own.
pub(super) struct Advancer {
    tx: Option<mpsc::UnboundedSender<Vec<DeliveredRow>>>,
    task: tokio::task::JoinHandle<Result<()>>,
    /// Rows handed over and not yet recorded, and a wake-up each time
    /// some are (or the task ends).
    queued: Arc<std::sync::atomic::AtomicUsize>,
    drained: Arc<tokio::sync::Notify>,
}

impl Advancer {
    pub(super) fn start(mut source: Instance, config: String, sync: String) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<DeliveredRow>>();
        let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let drained = Arc::new(tokio::sync::Notify::new());
        let (left, wake) = (queued.clone(), drained.clone());
        let task = tokio::spawn(async move {
            let _wake_at_end = WakeOnDrop(wake.clone());
            let mut pending: Vec<DeliveredRow> = Vec::new();
            while let Some(rows) = rx.recv().await {
                pending.extend(rows);
                // Gather what else is waiting, up to a full call.
                while pending.len() < ADVANCE_ROWS {
                    match rx.try_recv() {
                        Ok(more) => pending.extend(more),
                        Err(_) => break,
                    }
                }
                for chunk in pending.chunks(ADVANCE_ROWS) {
                    source
                        .advance(&config, &sync, chunk)
                        .await
                        .with_context(|| {
                            format!(
                                "recording {} acknowledged row(s) in the warehouse snapshot \
                             (they are sent again by the next run)",
                                chunk.len()
                            )
                        })?;
                    left.fetch_sub(chunk.len(), std::sync::atomic::Ordering::AcqRel);
                    wake.notify_one();
                }
                pending.clear();
            }
            Ok(())
        });
        Advancer {
            tx: Some(tx),
            task,
            queued,
            drained,
        }
    }

    /// Wait while more than [`MAX_QUEUED_ROWS`] acknowledged rows wait to be
    /// recorded, so a run that delivers faster than the warehouse records
    /// holds a bounded queue (it reads on as the advancer catches up, or at
    /// once when the advancer has stopped: its error ends the run).
    pub(super) async fn keep_up(&self) {
        use std::sync::atomic::Ordering;
        while self.queued.load(Ordering::Acquire) > MAX_QUEUED_ROWS && !self.task.is_finished() {
            // Woken as rows are recorded; the timeout re-checks a task
            // that ended between the check and the wait.
            let wait = std::time::Duration::from_millis(100);
            let _ = tokio::time::timeout(wait, self.drained.notified()).await;
        }
    }

    /// Hand the rows `commit` acknowledges to the warehouse, and keep in
    /// the state store only what clears their ledger entries.
    pub(super) fn take_acks(&self, commit: &mut CommitBatch) {
        let mut rows = Vec::new();
        for ack in &mut commit.acknowledged {
            if let Ack::Delivered { key, hash, dest_id } = ack {
                let Ok(values) = key.values() else { continue };
                rows.push(DeliveredRow {
                    key: values,
                    hash: hash.to_bytes().to_vec(),
                    id: dest_id.as_ref().map(|d| d.as_bytes().to_vec()),
                });
                *ack = Ack::Deleted { key: key.clone() };
            }
        }
        if rows.is_empty() {
            return;
        }
        if let Some(tx) = &self.tx {
            // A closed channel means the advancer failed: its error ends
            // the run, and these rows are sent again by the next one.
            let n = rows.len();
            if tx.send(rows).is_ok() {
                self.queued
                    .fetch_add(n, std::sync::atomic::Ordering::AcqRel);
            }
        }
    }

    /// Wait until every row handed over is recorded; the first failure.
    pub(super) async fn finish(mut self) -> Result<()> {
        self.tx.take();
        self.task
            .await
            .map_err(|e| anyhow!("the warehouse snapshot's task failed: {e}"))?
    }
}

/// Wakes [`Advancer::keep_up`] when the advancer's task ends, however it
/// ends (an error, a panic), so a run never waits on a stopped advancer.
struct WakeOnDrop(Arc<tokio::sync::Notify>);

impl Drop for WakeOnDrop {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}
