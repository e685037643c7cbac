//! A plan: the same classification as a run, with nothing written or
//! committed; counts and sample rows for `sluice plan`.

use super::*;

impl Prepared<'_> {
    pub(super) async fn plan<S: StateStore>(
        &mut self,
        store: &Mutex<S>,
        options: &RunOptions,
    ) -> Result<RunReport> {
        // `diff: warehouse`: the source compares with its own snapshot.
        let snapshot = if options.full_resync || self.warehouse.is_some() {
            Default::default()
        } else {
            lock(store).load_snapshot(&self.sync.name)?
        };
        self.reconciler = self
            .sync
            .mode
            .deletes_removed()
            .then(|| Reconciler::new(self.sync, &snapshot))
            .transpose()?;
        let mut differ = match &self.warehouse {
            None => Diffing::Host(
                Differ::new(self.primary_key.clone(), snapshot).with_seed(self.fingerprint),
            ),
            Some(_) => Diffing::Warehouse(warehouse::WarehouseRows::new(self.primary_key.clone())),
        };
        let scan_bytes = self.estimate_scan_bytes().await?;
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
        let removed = differ.finish()?.map(|s| s.removed).unwrap_or_default();
        let mut mirror = MirrorSummary::default();
        if let Some(reconciler) = self.reconciler.take() {
            let reconciled = reconciler.reconcile(self.sync, removed);
            mirror = MirrorSummary {
                deletes: reconciled.deletes.len() as u64,
                rekeyed: reconciled.rekeyed.len() as u64,
                held: reconciled.held,
                refused: reconciled.refused,
            };
            counts.removed = mirror.deletes;
            counts.planned += counts.removed;
            for r in reconciled
                .deletes
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
            stage: None,
            planned,
            scan_bytes,
            diff: match self.warehouse {
                Some(_) => "warehouse",
                None => "host",
            },
            mirror,
            config_changed: false,
            outcomes: self.sync.outcomes.as_ref().map(|o| OutcomesReport {
                destination: o.destination.clone(),
                object: o.object.expose().to_owned(),
                rows: o.rows.as_str(),
                written: 0,
                error: None,
            }),
        })
    }
}
