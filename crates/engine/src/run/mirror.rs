//! Mirror mode's deletes: only identifiers Sluice itself delivered, that no
//! row of the model carries, within the sync's guard (see
//! [`crate::reconcile`]).

use super::*;

impl Prepared<'_> {
    /// After every row was delivered: move the snapshot entries whose
    /// identifier a row with a new key carries, then send the deletes if the
    /// guard allows them (a refusal fails the run with its reason).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn mirror<S: StateStore>(
        &mut self,
        store: &Mutex<S>,
        run: RunId,
        idle: &mut Vec<Writer>,
        ctx: &DeliveryContext,
        reconciled: Reconciled,
        total: &mut RunCounts,
        options: &RunOptions,
    ) -> Result<()> {
        let Reconciled {
            deletes,
            rekeyed,
            held,
            refused,
        } = reconciled;
        self.mirror = MirrorSummary {
            deletes: 0,
            rekeyed: rekeyed.len() as u64,
            held,
            refused: refused.clone(),
        };
        if !rekeyed.is_empty() {
            tracing::info!(sync = %self.sync.name, rows = rekeyed.len(), "keys changed form, identifiers did not: the delivered records are kept under their new keys");
            let commit = CommitBatch {
                acknowledged: rekeyed
                    .into_iter()
                    .map(|(from, to)| Ack::Rekeyed { from, to })
                    .collect(),
                ..Default::default()
            };
            self.commit(store, run, commit, RunCounts::default(), total, options)?;
        }
        if held > 0 {
            tracing::info!(sync = %self.sync.name, rows = held, "rows that left the model are kept: their identifier is still carried or was never recorded");
        }
        if let Some(why) = refused {
            bail!(why);
        }
        if deletes.is_empty() {
            return Ok(());
        }
        let writer = idle
            .pop()
            .ok_or_else(|| anyhow!("no destination writer left for deletes"))?;
        let sent = deletes.len() as u64;
        self.delete_removed(
            store,
            run,
            writer.into_instance(),
            ctx,
            deletes,
            total,
            options,
        )
        .await?;
        self.mirror.deletes = sent;
        Ok(())
    }

    /// Mirror mode: delete the rows that left the model, but only those
    /// Sluice itself delivered (they are in the snapshot, with the
    /// identifier value they were sent with).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn delete_removed<S: StateStore>(
        &mut self,
        store: &Mutex<S>,
        run: RunId,
        instance: Instance,
        ctx: &DeliveryContext,
        removed: Vec<crate::diff::RemovedRow>,
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
            counts.sent += batch.rows.len() as u64;
            let outcome = writer.write_with_retry(ctx, &batch, &mut counts).await;
            for (key, result) in keys.into_iter().zip(outcome.rows) {
                match result {
                    Some(Ok(())) => commit.acknowledged.push(Ack::Deleted { key }),
                    Some(Err(mut message)) => {
                        counts.rejected += 1;
                        self.secrets.scrub_in_place(&mut message);
                        tracing::warn!(sync = %self.sync.name, %key, "delete rejected: {message}");
                        self.outcomes.record_rejected_delete(&key, &message);
                    }
                    // Not answered: still on record, deleted by a later run.
                    None => {}
                }
            }
            // Deletes the destination confirmed are recorded even when the
            // rest of the chunk failed.
            commit.progress = counts;
            self.scrub(&mut commit);
            lock(store).commit_batch(run, &commit)?;
            self.outcomes.record(&commit);
            self.outcomes.flush().await;
            *total += counts;
            if let Some(p) = &options.progress {
                p(total);
            }
            if let Some(failure) = outcome.failure {
                return Err(failure.into());
            }
        }
        Ok(())
    }
}
