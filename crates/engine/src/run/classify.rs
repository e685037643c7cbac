//! Diff, map and transform one source batch: which rows to send, and what
//! happened to the others (unchanged, invalid, rejected by a mapping or a
//! transform).

use super::*;
use sluice_runtime::Value;

impl Prepared<'_> {
    pub(super) async fn classify(
        &mut self,
        differ: &mut Diffing,
        mut batch: Batch,
        counts: &mut RunCounts,
    ) -> Result<Outgoing> {
        let diffs = differ
            .classify(&mut batch)
            .with_context(|| format!("diffing a batch of sync `{}`", self.sync.name))?;
        let first_row = self.rows_read + 1;
        self.rows_read += batch.rows.len() as u64;
        let mut commit = CommitBatch::default();
        let id_column = self
            .reconciler
            .as_ref()
            .and_then(|r| r.column_of(&batch.columns));
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
            if let Some(only) = &self.only_keys {
                if !key.as_ref().is_some_and(|k| only.contains(k)) {
                    continue;
                }
            }
            if let Some(reconciler) = self.reconciler.as_mut() {
                // Mirror mode: every row of the model says which identifier
                // it carries, whether it is sent or not.
                let valid = (!matches!(change, Change::Invalid(_)))
                    .then_some(key.as_ref())
                    .flatten();
                let recorded = match valid {
                    Some(k) => differ.snapshot().get(k.as_bytes())?.and_then(|d| d.dest_id),
                    None => None,
                };
                let sent = matches!(change, Change::Added | Change::Changed { .. });
                let recorded = recorded.as_deref();
                reconciler.observe_model_row(&batch.rows[index], id_column, valid, recorded, sent);
            }
            match change {
                Change::Added => counts.added += 1,
                Change::Changed { .. } => counts.changed += 1,
                Change::Unchanged => {
                    counts.unchanged += 1;
                    continue;
                }
                Change::Invalid(reason) => {
                    counts.invalid += 1;
                    // Named by its place in the source: a CSV's row 1 is
                    // the line after its header, a query's the first row.
                    let row = first_row + index as u64;
                    let message = match &key {
                        Some(k) => format!("source row {row}, key {k}: {reason}"),
                        None => format!("source row {row}: {reason}"),
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
        if let Some(reconciler) = self.reconciler.as_mut() {
            for _ in &mapped.errors {
                reconciler.not_sent();
            }
        }
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
        if let Some(reconciler) = self.reconciler.as_mut() {
            carry_identifiers(reconciler, self.target.identifier.as_str(), &out);
        }
        Ok(out)
    }

    async fn apply_transforms(&mut self, out: &mut Outgoing) -> Result<()> {
        for (instance, handle) in &mut self.transforms {
            if out.batch.rows.is_empty() {
                return Ok(());
            }
            let transformed = instance.transform(handle, &out.batch).await?;
            let mut failed = vec![false; out.meta.len()];
            let id_column = out
                .batch
                .columns
                .iter()
                .position(|c| *c == self.target.identifier);
            for e in &transformed.errors {
                let meta = &out.meta[e.index as usize];
                failed[e.index as usize] = true;
                if let Some(reconciler) = self.reconciler.as_mut() {
                    // Not sent: what it carried before this transform counts,
                    // and what it would have carried after is unknown.
                    if let Some(v) = id_column.and_then(|c| out.batch.rows[e.index as usize].get(c))
                    {
                        reconciler.carry(v, Some(&meta.key));
                    }
                    reconciler.not_sent();
                }
                out.commit.rejected.push(Rejection {
                    key: meta.key.clone(),
                    hash: meta.hash,
                    message: format!("transform `{}`: {}", instance.plugin_name(), e.message),
                });
            }
            check_row_order(
                instance.plugin_name(),
                &self.target.identifier,
                &out.batch,
                &failed,
                &transformed.batch,
            )?;
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
}

/// The identifiers of the rows about to be sent, for mirror mode's
/// reconciliation. Rows without the identifier field carry none the
/// destination could match.
fn carry_identifiers(reconciler: &mut Reconciler, identifier: &str, out: &Outgoing) {
    let Some(c) = out.batch.columns.iter().position(|x| x == identifier) else {
        return;
    };
    for (row, meta) in out.batch.rows.iter().zip(&out.meta) {
        if let Some(v) = row.get(c) {
            reconciler.carry(v, Some(&meta.key));
        }
    }
}

/// A transform returns its input rows in order, minus those it rejected:
/// the host pairs each output row with its key by position, so a reordered
/// batch would put acknowledgements on the wrong keys. The identifier field
/// tells: an output row that carries the identifier of another input row
/// than its own was moved. (A transform may change an identifier, e.g.
/// lowercase an email; that value is then no other row's.)
fn check_row_order(
    plugin: &str,
    identifier: &str,
    input: &Batch,
    failed: &[bool],
    output: &Batch,
) -> Result<()> {
    let column = |b: &Batch| b.columns.iter().position(|c| c == identifier);
    let (Some(ci), Some(co)) = (column(input), column(output)) else {
        return Ok(());
    };
    let kept: Vec<usize> = (0..input.rows.len()).filter(|&i| !failed[i]).collect();
    let id = |row: &Row, c: usize| {
        row.get(c)
            .filter(|v| !matches!(v, Value::Null))
            .map(|v| RowKey::from_values(std::slice::from_ref(v)))
    };
    let mut input_row: std::collections::HashMap<RowKey, usize> =
        std::collections::HashMap::with_capacity(kept.len());
    for &i in &kept {
        if let Some(k) = id(&input.rows[i], ci) {
            input_row.entry(k).or_insert(i);
        }
    }
    for (at, row) in output.rows.iter().enumerate() {
        let Some(out) = id(row, co) else { continue };
        let own = kept.get(at).and_then(|&i| id(&input.rows[i], ci));
        if own.as_ref() == Some(&out) {
            continue;
        }
        if let Some(&from) = input_row.get(&out) {
            bail!(
                "transform `{plugin}` broke the contract: output row {at} carries the `{identifier}` of input row {from}; a transform must return its rows in input order (rejected rows left out), so acknowledgements match their keys"
            );
        }
    }
    Ok(())
}
