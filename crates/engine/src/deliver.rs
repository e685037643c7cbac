//! Loading: writing chunks to a destination and deciding each row's fate.
//!
//! A [`Writer`] is one destination instance with an open writer; a run opens
//! as many as the destination's concurrency allows and gives each its own
//! chunk, so a writer never serves two calls at once. All of them share one
//! [`DeliveryContext`]: the destination's pace (declared limit and reported
//! quota) and the retry policy. Delivering a chunk returns what to commit;
//! committing stays with the run, which owns the state.

use super::pacing::Pacer;
use super::retry::{paused, RetryPolicy};
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use sluice_runtime::bindings::types::{PluginError, RowResult, WriteTarget};
use sluice_runtime::instance::WriterHandle;
use sluice_runtime::Batch;
use sluice_runtime::{FailureKind, Instance, PluginFailure};
use sluice_state::hash::RowHash;
use sluice_state::key::{DestId, RowKey};
use sluice_state::{Ack, CommitBatch, Rejection, RunCounts};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Per-row bookkeeping that travels with a row through map, transform and
/// load.
#[derive(Clone)]
pub(super) struct RowMeta {
    pub key: RowKey,
    pub hash: RowHash,
}

/// A chunk of rows to write, with their bookkeeping.
pub(super) type Chunk = (Batch, Vec<RowMeta>);

/// What every writer of one destination shares.
pub(super) struct DeliveryContext {
    pub pacer: Arc<Pacer>,
    pub retry: RetryPolicy,
    /// The destination's config (JSON), for opening writers.
    pub config: String,
    /// The column holding the destination's identifier, if the sync has one.
    pub identifier: Option<String>,
}

/// One destination instance with an open writer.
pub(super) struct Writer {
    instance: Instance,
    handle: WriterHandle,
}

/// A chunk delivered: what to commit, and the writer, free again. A
/// delivery that failed still carries every row the destination answered
/// before it failed: those acknowledgements must be committed all the same.
pub(super) struct Delivered {
    pub writer: Writer,
    pub commit: CommitBatch,
    pub counts: RunCounts,
    pub error: Option<anyhow::Error>,
    /// How long the delivery took, pacing and retries included.
    pub busy: std::time::Duration,
}

/// One write, retried: per row, `Some(Ok)` once acknowledged,
/// `Some(Err(message))` once rejected, `None` while unanswered; and the
/// failure that ended it early, if one did. Rows answered before a failure
/// keep their answer.
pub(super) struct WriteOutcome {
    pub rows: Vec<Option<Result<(), String>>>,
    pub failure: Option<PluginFailure>,
}

impl Writer {
    /// Open a writer on `instance`, riding out transient failures (a 5xx
    /// while it authenticates or looks up the object). Opening calls the
    /// API too, so it waits for the destination's pace.
    pub async fn open(
        mut instance: Instance,
        ctx: &DeliveryContext,
        target: &WriteTarget,
    ) -> Result<Writer, PluginFailure> {
        let plugin = instance.plugin_name().to_owned();
        let handle = ctx
            .retry
            .run(async || {
                ctx.pacer.ready().await;
                let opening = instance.open_writer(&ctx.config, target);
                let opened = ctx.pacer.call(&plugin, "open-writer", opening).await;
                observe_quota(&mut instance, ctx).await;
                opened
            })
            .await?;
        Ok(Writer { instance, handle })
    }

    /// Give the instance back (to open a writer in another mode).
    pub fn into_instance(self) -> Instance {
        self.instance
    }

    /// Deliver `chunk` in a task of its own, so several writers work at
    /// once while the run reads and maps the next batch.
    pub fn spawn_delivery(
        mut self,
        ctx: Arc<DeliveryContext>,
        chunk: Chunk,
        mut commit: CommitBatch,
        mut counts: RunCounts,
    ) -> JoinHandle<Delivered> {
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let error = self
                .deliver(&ctx, chunk, &mut commit, &mut counts)
                .await
                .err();
            Delivered {
                writer: self,
                commit,
                counts,
                error,
                busy: started.elapsed(),
            }
        })
    }

    /// Write one chunk and record every row's outcome in `commit`. A chunk
    /// the destination refuses as a whole is split in halves until the bad
    /// rows are isolated. When the destination fails, the rows it answered
    /// before (earlier attempts, other halves) are in `commit` and the error
    /// is returned: the caller commits them anyway. A destination that
    /// refused every call of the chunk, down to each single row, answered
    /// nothing: that is the plugin failing, not its rows, so the run fails
    /// with the first error and no row is blamed.
    pub async fn deliver(
        &mut self,
        ctx: &DeliveryContext,
        chunk: Chunk,
        commit: &mut CommitBatch,
        counts: &mut RunCounts,
    ) -> anyhow::Result<()> {
        let id_column = ctx
            .identifier
            .as_ref()
            .and_then(|i| chunk.0.columns.iter().position(|c| c == i));
        let chunk_rows = chunk.0.rows.len();
        counts.sent += chunk_rows as u64;
        let mut pending = VecDeque::from([chunk]);
        let mut answered_any = false;
        let mut first_failure: Option<PluginFailure> = None;
        // Rows isolated by splitting, rejected with their call's error.
        let mut isolated: Vec<Rejection> = Vec::new();
        while let Some((batch, meta)) = pending.pop_front() {
            let WriteOutcome { rows, failure } = self.write_with_retry(ctx, &batch, counts).await;
            // Every answered row is recorded before anything else happens.
            let mut unanswered = Batch {
                columns: batch.columns.clone(),
                rows: Vec::new(),
            };
            let mut unanswered_meta = Vec::new();
            for ((row, meta), result) in batch.rows.into_iter().zip(meta).zip(rows) {
                match result {
                    Some(Ok(())) => {
                        answered_any = true;
                        let dest_id = id_column.map(|c| DestId::from_value(&row[c]));
                        commit.acknowledged.push(Ack::Delivered {
                            key: meta.key,
                            hash: meta.hash,
                            dest_id,
                        });
                    }
                    Some(Err(message)) => {
                        answered_any = true;
                        commit.rejected.push(Rejection {
                            key: meta.key,
                            hash: meta.hash,
                            message,
                        })
                    }
                    None => {
                        unanswered.rows.push(row);
                        unanswered_meta.push(meta);
                    }
                }
            }
            let Some(failure) = failure else {
                answered_any = true;
                // A success that left rows without a result: the contract
                // check makes this unreachable, but never claim them.
                for m in unanswered_meta {
                    commit.rejected.push(Rejection {
                        key: m.key,
                        hash: m.hash,
                        message: "the destination returned no result for this row".into(),
                    });
                }
                continue;
            };
            if unanswered.rows.is_empty() {
                continue;
            }
            if !is_row_problem(&failure) {
                commit.rejected.append(&mut isolated);
                return Err(failure.into());
            }
            let message = failure.kind.to_string();
            first_failure.get_or_insert(failure);
            if unanswered.rows.len() > 1 {
                counts.retried += unanswered.rows.len() as u64;
                pending.extend(split_in_half(unanswered, unanswered_meta));
            } else {
                for m in unanswered_meta {
                    isolated.push(Rejection {
                        key: m.key,
                        hash: m.hash,
                        message: message.clone(),
                    });
                }
            }
        }
        match first_failure {
            Some(failure) if !answered_any && chunk_rows > 1 => Err(anyhow::anyhow!(
                "{failure} (every call failed, for the whole batch and for each of its \
                 {chunk_rows} rows alone: the destination is failing, not the rows; none is \
                 recorded as rejected and the next run sends them again)"
            )),
            _ => {
                commit.rejected.append(&mut isolated);
                Ok(())
            }
        }
    }

    /// Write a batch; retry retryable and throttled rows within the run.
    /// Returns, per row, `Ok` when acknowledged or `Err(message)` when
    /// rejected, `None` when unanswered, and the failure (of a whole call,
    /// or retries exhausted) that left rows unanswered. Rows answered by an
    /// earlier attempt keep their answer whatever a later attempt does.
    pub async fn write_with_retry(
        &mut self,
        ctx: &DeliveryContext,
        batch: &Batch,
        counts: &mut RunCounts,
    ) -> WriteOutcome {
        let mut outcome: Vec<Option<Result<(), String>>> = vec![None; batch.rows.len()];
        let failure = self
            .write_rows(ctx, batch, counts, &mut outcome)
            .await
            .err();
        WriteOutcome {
            rows: outcome,
            failure,
        }
    }

    async fn write_rows(
        &mut self,
        ctx: &DeliveryContext,
        batch: &Batch,
        counts: &mut RunCounts,
        outcome: &mut [Option<Result<(), String>>],
    ) -> Result<(), PluginFailure> {
        let retry = &ctx.retry;
        let mut todo: Vec<usize> = (0..batch.rows.len()).collect();
        let mut attempt = 0;
        let mut throttled = 0;
        // Throttle waits in a row without a single row answered: bounded by
        // `max_wait` in total, so an allowance that never comes back (a
        // daily limit) pauses the sync instead of retrying for days.
        let mut stalled = Duration::ZERO;
        while !todo.is_empty() {
            // The first attempt sends the whole batch as it is; only a retry
            // of some rows needs a copy of them.
            let retry_rows;
            let sub = if todo.len() == batch.rows.len() {
                batch
            } else {
                retry_rows = Batch {
                    columns: batch.columns.clone(),
                    rows: todo.iter().map(|&i| batch.rows[i].clone()).collect(),
                };
                &retry_rows
            };
            // The host's own pacing is counted apart from the API's
            // throttling: a run that was paced was never refused.
            if ctx.pacer.ready().await {
                counts.paced_waits += 1;
            }
            counts.write_calls += 1;
            let plugin = self.instance.plugin_name().to_owned();
            let writing = self.instance.write(&self.handle, sub);
            let written = ctx.pacer.call(&plugin, "write", writing).await;
            observe_quota(&mut self.instance, ctx).await;
            let (requests, paced) = ctx.pacer.take_request_counts();
            counts.requests += requests;
            counts.paced_waits += paced;
            counts.outcome_unknown += self.instance.take_unknown_outcomes();
            let results = match written {
                Ok(r) => r,
                Err(failure) => match failure.plugin_error() {
                    Some(PluginError::RateLimited(info))
                        if throttled < retry.max_throttle_waits =>
                    {
                        let asked = Duration::from_millis(info.retry_after_ms);
                        // Everyone sharing the budget holds off, not only us.
                        ctx.pacer.throttled(asked).await;
                        stalled += asked;
                        let wait = match retry.bounded(asked).and(retry.bounded(stalled)) {
                            Ok(wait) => wait,
                            Err(asked) => {
                                return Err(paused(
                                    &failure.plugin,
                                    &failure.call,
                                    asked,
                                    retry.max_wait,
                                ))
                            }
                        };
                        throttled += 1;
                        counts.throttled_waits += 1;
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    Some(PluginError::Retryable(_)) if attempt + 1 < retry.max_attempts => {
                        attempt += 1;
                        counts.retried += todo.len() as u64;
                        tokio::time::sleep(retry.delay(attempt)).await;
                        continue;
                    }
                    _ => return Err(failure),
                },
            };
            let mut again = Vec::new();
            let mut wait = Duration::ZERO;
            let asked_again = todo.len();
            for (&i, result) in todo.iter().zip(results) {
                match result {
                    RowResult::Created
                    | RowResult::Updated
                    | RowResult::Deleted
                    | RowResult::Accepted => {
                        counts.ok += 1;
                        outcome[i] = Some(Ok(()));
                    }
                    RowResult::Rejected(message) => outcome[i] = Some(Err(message)),
                    RowResult::RateLimited(ms) => {
                        wait = wait.max(Duration::from_millis(ms));
                        again.push((i, None));
                    }
                    RowResult::Retryable(message) => again.push((i, Some(message))),
                }
            }
            if again.is_empty() {
                break;
            }
            let throttled_only = again.iter().all(|(_, m)| m.is_none());
            if throttled_only && throttled < retry.max_throttle_waits {
                // As for a refused call: everyone sharing the budget holds off.
                ctx.pacer.throttled(wait).await;
                throttled += 1;
                counts.throttled_waits += 1;
                stalled = if again.len() == asked_again {
                    stalled + wait
                } else {
                    wait
                };
                if retry.bounded(stalled).is_err() {
                    let plugin = self.instance.plugin_name();
                    return Err(paused(plugin, "write", stalled, retry.max_wait));
                }
            } else if attempt + 1 < retry.max_attempts {
                attempt += 1;
                counts.retried += again.len() as u64;
                wait = wait.max(retry.delay(attempt));
            } else {
                // The destination keeps failing: fail the run rather than
                // blame the rows. They are not acknowledged, so the next run
                // sends them again.
                let message = again
                    .into_iter()
                    .find_map(|(_, m)| m)
                    .unwrap_or_else(|| "still rate limited".into());
                return Err(PluginFailure {
                    plugin: self.instance.plugin_name().to_string(),
                    call: "write".into(),
                    kind: FailureKind::Plugin(PluginError::Retryable(format!(
                        "still failing after {} attempts: {message}",
                        attempt + 1
                    ))),
                });
            }
            if let Err(asked) = retry.bounded(wait) {
                let plugin = self.instance.plugin_name();
                return Err(paused(plugin, "write", asked, retry.max_wait));
            }
            tokio::time::sleep(wait).await;
            todo = again.into_iter().map(|(i, _)| i).collect();
        }
        Ok(())
    }
}

/// Deliveries under way, in the order they finish.
#[derive(Default)]
pub(super) struct InFlight(FuturesUnordered<JoinHandle<Delivered>>);

impl InFlight {
    pub fn push(&mut self, delivery: JoinHandle<Delivered>) {
        self.0.push(delivery);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A delivery that has already finished, without waiting.
    pub fn finished(&mut self) -> Option<anyhow::Result<Delivered>> {
        self.0.next().now_or_never()?.map(joined)
    }

    /// The next delivery to finish.
    pub async fn next(&mut self) -> anyhow::Result<Delivered> {
        match self.0.next().await {
            Some(result) => joined(result),
            None => Err(anyhow::anyhow!("no delivery in flight")),
        }
    }
}

/// A delivery task's end: what it delivered, or why the task died.
fn joined(result: Result<Delivered, tokio::task::JoinError>) -> anyhow::Result<Delivered> {
    result.map_err(|e| anyhow::anyhow!("a delivery task failed: {e}"))
}

/// Pass what the plugin last reported about its API's quota to the pace.
async fn observe_quota(instance: &mut Instance, ctx: &DeliveryContext) {
    if let Some(hint) = instance.take_quota_hint() {
        ctx.pacer.report(hint).await;
    }
}

/// A failure that may be caused by some rows of the batch rather than the
/// destination as a whole: worth splitting the batch to find them.
fn is_row_problem(failure: &PluginFailure) -> bool {
    matches!(
        &failure.kind,
        FailureKind::Plugin(PluginError::Permanent(_))
    )
}

fn split_in_half(batch: Batch, meta: Vec<RowMeta>) -> [(Batch, Vec<RowMeta>); 2] {
    let mid = batch.rows.len() / 2;
    let mut rows = batch.rows;
    let mut meta = meta;
    let right_rows = rows.split_off(mid);
    let right_meta = meta.split_off(mid);
    [
        (
            Batch {
                columns: batch.columns.clone(),
                rows,
            },
            meta,
        ),
        (
            Batch {
                columns: batch.columns,
                rows: right_rows,
            },
            right_meta,
        ),
    ]
}
