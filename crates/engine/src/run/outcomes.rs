//! Outcome write-back (`outcomes:` of a sync): the per-row results of every
//! run appended as rows to a table of a destination connection of the
//! project, through that connection's own plugin (sandboxed, with its
//! grants) in append mode (insert when the table takes no appends), so
//! analysts can query failures beside their models.
//!
//! One outcome row per row the run wrote, deleted, had rejected or found
//! invalid (only the rejected and invalid ones with `rows: failed`):
//! `run_id`, `sync_name`, `row_key` (the model's primary key as text; a
//! composite key as a JSON array), `operation` (the write mode:
//! `upsert`, `update`, `insert`, `append`, `delete`), `status` (`ok`,
//! `rejected`, `invalid`), `message` (the destination's or the host's,
//! scrubbed of secrets like every stored message; null when ok) and
//! `recorded_at` (when the run committed it). Unchanged rows have no
//! outcome: nothing was done to them.
//!
//! **Outcome write-back never changes delivered state.** Outcome rows are
//! built from a commit after it is in the state store
//! ([`super::Prepared::commit`]), and written by a task of their own from
//! a bounded queue, in batches of the outcome destination's batch size
//! across deliveries: nothing here feeds back into what is committed. A
//! failure (a refused outcome row, the outcome destination failing) stops
//! the write-back, the deliveries go on and stay committed, and the run
//! ends `failed` at stage `outcomes` with an error naming the sync, the
//! destination, the table and why, and how many outcome rows were not
//! written.

use super::*;
use crate::deliver::{DeliveryContext, Writer};
use sluice_config::{OutcomeRows, Outcomes as OutcomesConfig};
use sluice_runtime::bindings::types::WriteMode;
use sluice_runtime::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The outcome table's columns, in the order every outcome row has them.
pub const OUTCOME_COLUMNS: [&str; 7] = [
    "run_id",
    "sync_name",
    "row_key",
    "operation",
    "status",
    "message",
    "recorded_at",
];

/// Outcome batches waiting for the writer task, at most.
const QUEUE: usize = 2;
/// Outcome rows per write call when the destination names no batch size.
const DEFAULT_BATCH_ROWS: usize = 5000;

/// What a run did about its outcomes, for the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OutcomesReport {
    /// The destination connection written to.
    pub destination: String,
    /// Its table.
    pub object: String,
    /// `all` or `failed`.
    pub rows: &'static str,
    /// Outcome rows the destination accepted.
    pub written: u64,
    /// Why some were not written (the run is then failed at `outcomes`).
    pub error: Option<String>,
}

/// The outcome write-back of one run: nothing before [`Outcomes::start`],
/// then a buffer and a writer task.
#[derive(Default)]
pub(super) struct Outcomes {
    ready: Option<OutcomeWriter>,
    sink: Option<Sink>,
}

/// The outcome destination, opened and checked before anything is read.
pub(super) struct OutcomeWriter {
    writer: Writer,
    ctx: DeliveryContext,
    batch_rows: usize,
    config: OutcomesConfig,
}

struct Sink {
    /// Rows waiting for a full batch, and full batches waiting for the queue.
    buffer: Mutex<Buffer>,
    tx: mpsc::Sender<Vec<Row>>,
    task: JoinHandle<Written>,
    batch_rows: usize,
    filter: OutcomeRows,
    run: i64,
    sync: String,
    /// The write mode of the sync's rows, as the `operation`.
    operation: &'static str,
    destination: String,
    object: String,
}

impl Sink {
    /// One outcome row into the buffer; a full buffer becomes a batch for
    /// the writer. After the writer stopped, rows are only counted.
    fn push(
        &self,
        buffer: &mut Buffer,
        key: Option<&RowKey>,
        operation: &str,
        status: &str,
        message: Option<&str>,
        at: i64,
    ) {
        if self.tx.is_closed() {
            buffer.lost += 1;
            return;
        }
        buffer.rows.push(vec![
            Value::Integer(self.run),
            Value::Text(self.sync.clone()),
            key.map_or(Value::Null, |k| Value::Text(key_text(k))),
            Value::Text(operation.to_owned()),
            Value::Text(status.to_owned()),
            message.map_or(Value::Null, |m| Value::Text(m.to_owned())),
            Value::Timestamp(at),
        ]);
        if buffer.rows.len() >= self.batch_rows {
            let full = std::mem::take(&mut buffer.rows);
            buffer.full.push(full);
        }
    }
}

#[derive(Default)]
struct Buffer {
    rows: Vec<Row>,
    full: Vec<Vec<Row>>,
    /// Outcome rows dropped after the writer stopped.
    lost: u64,
}

/// What the writer task did.
#[derive(Default)]
struct Written {
    rows: u64,
    refused: u64,
    first_refusal: Option<String>,
    failure: Option<String>,
    /// Rows received but not written (after the failure, or unanswered).
    unwritten: u64,
}

impl Outcomes {
    /// The write-back of a run that has an outcome writer.
    pub(super) fn new(writer: Option<OutcomeWriter>) -> Outcomes {
        Outcomes {
            ready: writer,
            sink: None,
        }
    }

    /// Start the writer task for run `run` of `sync`.
    pub(super) fn start(&mut self, run: RunId, sync: &SyncConfig) {
        let Some(OutcomeWriter {
            writer,
            ctx,
            batch_rows,
            config,
        }) = self.ready.take()
        else {
            return;
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(write_outcomes(writer, ctx, rx));
        self.sink = Some(Sink {
            buffer: Mutex::new(Buffer::default()),
            tx,
            task,
            batch_rows,
            filter: config.rows,
            run,
            sync: sync.name.clone(),
            operation: mode_name(sync.mode.write_mode()),
            destination: config.destination.clone(),
            object: config.object.expose().to_owned(),
        });
    }

    /// The outcomes of one commit, already in the state store (messages
    /// scrubbed). Cheap when the write-back is off or has stopped.
    pub(super) fn record(&self, commit: &CommitBatch) {
        let Some(sink) = &self.sink else { return };
        let mut buffer = lock(&sink.buffer);
        let at = now_micros();
        let operation = sink.operation;
        if sink.filter == OutcomeRows::All {
            for ack in &commit.acknowledged {
                match ack {
                    Ack::Delivered { key, .. } => {
                        sink.push(&mut buffer, Some(key), operation, "ok", None, at)
                    }
                    Ack::Deleted { key } => {
                        sink.push(&mut buffer, Some(key), "delete", "ok", None, at)
                    }
                    // Bookkeeping only: nothing was sent.
                    Ack::Rekeyed { .. } => {}
                }
            }
        }
        for r in &commit.rejected {
            let message = Some(r.message.as_str());
            sink.push(
                &mut buffer,
                Some(&r.key),
                operation,
                "rejected",
                message,
                at,
            );
        }
        for i in &commit.invalid {
            let message = Some(i.message.as_str());
            sink.push(
                &mut buffer,
                i.key.as_ref(),
                operation,
                "invalid",
                message,
                at,
            );
        }
    }

    /// A delete the destination refused (mirror mode: the record stays on
    /// record and is not in the ledger), message scrubbed.
    pub(super) fn record_rejected_delete(&self, key: &RowKey, message: &str) {
        let Some(sink) = &self.sink else { return };
        let mut buffer = lock(&sink.buffer);
        let at = now_micros();
        sink.push(
            &mut buffer,
            Some(key),
            "delete",
            "rejected",
            Some(message),
            at,
        );
    }

    /// Hand the full batches to the writer task, waiting while its queue
    /// is full: outcome rows never pile up in memory beyond a few batches.
    pub(super) async fn flush(&self) {
        let Some(sink) = &self.sink else { return };
        let full = std::mem::take(&mut lock(&sink.buffer).full);
        for rows in full {
            let n = rows.len() as u64;
            if sink.tx.send(rows).await.is_err() {
                lock(&sink.buffer).lost += n;
            }
        }
    }

    /// Write what is left and wait for the writer: `None` when the sync has
    /// no outcomes (or the run never started them).
    pub(super) async fn finish(&mut self) -> Option<OutcomesReport> {
        let sink = self.sink.take()?;
        {
            let mut buffer = lock(&sink.buffer);
            let rest = std::mem::take(&mut buffer.rows);
            if !rest.is_empty() {
                buffer.full.push(rest);
            }
        }
        let Sink {
            buffer,
            tx,
            task,
            destination,
            object,
            filter,
            sync,
            ..
        } = sink;
        let full = std::mem::take(&mut lock(&buffer).full);
        for rows in full {
            let n = rows.len() as u64;
            if tx.send(rows).await.is_err() {
                lock(&buffer).lost += n;
            }
        }
        drop(tx);
        let written = task.await.unwrap_or_else(|e| Written {
            failure: Some(format!("the outcome writer task failed: {e}")),
            ..Default::default()
        });
        let lost = lock(&buffer).lost + written.unwritten + written.refused;
        let error = if let Some(failure) = &written.failure {
            Some(format!("{failure}; {lost} outcome row(s) not written"))
        } else if let Some(first) = &written.first_refusal {
            Some(format!(
                "{} outcome row(s) refused (the first: {first})",
                written.refused
            ))
        } else {
            (lost > 0).then(|| format!("{lost} outcome row(s) not written"))
        };
        let error = error.map(|why| {
            format!(
                "sync `{sync}`: outcomes not written to `{object}` on destination \
                 `{destination}`: {why}; the deliveries are committed and their state is \
                 unaffected"
            )
        });
        Some(OutcomesReport {
            destination,
            object,
            rows: filter.as_str(),
            written: written.rows,
            error,
        })
    }
}

/// The writer task: each batch in one write call (retried like a
/// delivery); a refused row is counted; a failed call stops the write-back.
async fn write_outcomes(
    mut writer: Writer,
    ctx: DeliveryContext,
    mut rx: mpsc::Receiver<Vec<Row>>,
) -> Written {
    let columns: Vec<String> = OUTCOME_COLUMNS.iter().map(|c| (*c).to_owned()).collect();
    let mut written = Written::default();
    while let Some(rows) = rx.recv().await {
        let batch = Batch {
            columns: columns.clone(),
            rows,
        };
        let mut counts = RunCounts::default();
        let outcome = writer.write_with_retry(&ctx, &batch, &mut counts).await;
        for row in outcome.rows {
            match row {
                Some(Ok(())) => written.rows += 1,
                Some(Err(message)) => {
                    written.refused += 1;
                    written.first_refusal.get_or_insert(message);
                }
                None => written.unwritten += 1,
            }
        }
        if let Some(failure) = outcome.failure {
            written.failure = Some(failure.to_string());
            // Stop: later batches are counted, not written.
            rx.close();
            while let Some(rows) = rx.recv().await {
                written.unwritten += rows.len() as u64;
            }
            break;
        }
    }
    written
}

/// Open the outcome destination of `sync` before anything is read: its
/// plugin with its own grants, `discover` to check the table, and a writer
/// in append (else insert) mode. A plan only checks the table (`None`).
pub(super) async fn open_outcomes(
    runtime: &Runtime,
    project: &Project,
    sync: &SyncConfig,
    retry: &RetryPolicy,
    options: &RunOptions,
    clock: &StageClock,
) -> Result<Option<OutcomeWriter>> {
    let (Some(config), Some(dest)) = (&sync.outcomes, project.outcomes_destination_of(sync)) else {
        return Ok(None);
    };
    let cfg = &dest.instance;
    let (mut instance, spec, _) =
        prepare::open_run_instance(runtime, &project.dir, cfg, "outcomes destination", clock)
            .await
            .with_context(|| outcomes_context(sync, config))?;
    let rate = dest.rate_limit.map(RateLimit::from).or(spec.rate_limit);
    let daily = dest.rate_limit.and_then(|r| r.daily);
    let pacer = prepare::pacer_for(
        (rate.as_ref(), daily),
        1,
        retry,
        (cfg, &spec),
        options.budgets.as_ref(),
    )?;
    instance.set_request_gate(pacer.request_gate());
    let json = cfg.config_json();
    let plugin = instance.plugin_name().to_owned();
    let objects = retry
        .run(async || {
            let discovering = instance.discover(&json);
            pacer.call(&plugin, "discover", discovering).await
        })
        .await
        .with_context(|| outcomes_context(sync, config))?;
    let mode = check_outcome_table(&objects, sync).map_err(|why| anyhow!(why))?;
    if options.dry_run {
        return Ok(None);
    }
    let ctx = DeliveryContext {
        pacer,
        retry: *retry,
        config: json,
        identifier: None,
    };
    let target = WriteTarget {
        object: config.object.expose().to_owned(),
        mode,
        identifier: String::new(),
    };
    let writer = Writer::open(instance, &ctx, &target)
        .await
        .with_context(|| outcomes_context(sync, config))?;
    let batch_rows = match spec.batch_size {
        0 => DEFAULT_BATCH_ROWS,
        n => n as usize,
    };
    Ok(Some(OutcomeWriter {
        writer,
        ctx,
        batch_rows,
        config: config.clone(),
    }))
}

fn outcomes_context(sync: &SyncConfig, config: &OutcomesConfig) -> String {
    format!(
        "outcomes of sync `{}` to `{}` on destination `{}`",
        sync.name, config.object, config.destination
    )
}

/// The outcome table of `sync` among the objects its destination
/// discovered: it must exist, take append or insert writes (the mode
/// returned, append preferred) and have every outcome column, and no
/// other column a write must fill. The error names the sync, the
/// destination and the table. (`sluice validate` and every run and plan.)
pub fn check_outcome_table(
    objects: &[ObjectInfo],
    sync: &SyncConfig,
) -> std::result::Result<WriteMode, String> {
    let Some(config) = &sync.outcomes else {
        return Ok(WriteMode::Append);
    };
    let context = outcomes_context(sync, config);
    let wanted = config.object.expose();
    let object = match objects.iter().find(|o| o.name == wanted) {
        Some(o) => o,
        None => {
            let names: Vec<&str> = objects.iter().map(|o| o.name.as_str()).collect();
            let hint = sluice_config::suggest(wanted, names.iter().copied())
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            return Err(format!(
                "{context}: the destination has no table `{wanted}` it may write{hint} (create \
                 it with the DDL in README's \"Outcomes in the warehouse\" and grant INSERT \
                 on it)"
            ));
        }
    };
    let mode = if object.modes.contains(&WriteMode::Append) {
        WriteMode::Append
    } else if object.modes.contains(&WriteMode::Insert) {
        WriteMode::Insert
    } else {
        return Err(format!(
            "{context}: `{wanted}` takes neither append nor insert writes (it takes: {})",
            object
                .modes
                .iter()
                .map(|m| mode_name(*m))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    if object.fields.iter().any(|f| f.name == "*") {
        return Ok(mode);
    }
    let missing: Vec<&str> = OUTCOME_COLUMNS
        .iter()
        .copied()
        .filter(|c| !object.fields.iter().any(|f| f.name == *c))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{context}: `{wanted}` has no column {} (an outcome table has: {})",
            missing
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", "),
            OUTCOME_COLUMNS.join(", ")
        ));
    }
    let extra: Vec<&str> = object
        .fields
        .iter()
        .filter(|f| f.required && !OUTCOME_COLUMNS.contains(&f.name.as_str()))
        .map(|f| f.name.as_str())
        .collect();
    if !extra.is_empty() {
        return Err(format!(
            "{context}: `{wanted}` has required column(s) outcomes do not fill: {}",
            extra.join(", ")
        ));
    }
    Ok(mode)
}

fn mode_name(mode: WriteMode) -> &'static str {
    match mode {
        WriteMode::Upsert => "upsert",
        WriteMode::Update => "update",
        WriteMode::Insert => "insert",
        WriteMode::Delete => "delete",
        WriteMode::Append => "append",
    }
}

/// A key as text: a one-column key as its value (text as is, numbers as
/// written), a composite key as a JSON array.
pub fn key_text(key: &RowKey) -> String {
    match key.values() {
        Ok(values) if values.len() == 1 => match value_json(&values[0]) {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        },
        Ok(values) => serde_json::Value::Array(values.iter().map(value_json).collect()).to_string(),
        Err(_) => key.to_string(),
    }
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_as_text_and_composite_keys_as_json() {
        let one = RowKey::from_values(&[Value::Integer(42)]);
        assert_eq!(key_text(&one), "42");
        let text = RowKey::from_values(&[Value::Text("a@x.io".into())]);
        assert_eq!(key_text(&text), "a@x.io");
        let both = RowKey::from_values(&[Value::Text("eu".into()), Value::Integer(7)]);
        assert_eq!(key_text(&both), r#"["eu",7]"#);
    }
}
