//! Diff, map and transform one source batch: which rows to send, and what
//! happened to the others (unchanged, invalid, rejected by a mapping or a
//! transform).

use super::*;

impl Prepared<'_> {
    pub(super) async fn classify(
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
}
