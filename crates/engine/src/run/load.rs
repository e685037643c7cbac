//! Load and commit: changed rows in chunks of the write batch size, on up to
//! `concurrency` writers, each delivered chunk committed as it finishes.

use super::coalesce::Coalescer;
use super::*;

impl Prepared<'_> {
    pub(super) async fn execute<S: StateStore>(
        &mut self,
        store: &Mutex<S>,
        run: RunId,
        options: &RunOptions,
    ) -> Result<()> {
        // Start reading first: the source's query runs while the snapshot
        // loads and the writers open.
        let mut rx = self.start_reader()?;
        self.outcomes.start(run, self.sync);
        let snapshot = match &self.warehouse {
            None => lock(store).load_snapshot(&self.sync.name)?,
            // The warehouse holds the snapshot. The host's is forgotten,
            // so a later `diff: host` run starts from nothing rather than
            // from what it knew before these deliveries.
            Some(_) => {
                lock(store).forget_snapshot(&self.sync.name)?;
                crate::diff::Snapshot::new()
            }
        };
        if options.retry_rejected {
            let ledger = lock(store).ledger(&self.sync.name)?;
            self.only_keys = Some(ledger.into_iter().map(|e| e.key).collect());
        }
        // A retry of rejected rows sees only part of the model: it must
        // never conclude that the rest left it.
        self.reconciler = (self.sync.mode.deletes_removed() && self.only_keys.is_none())
            .then(|| Reconciler::new(self.sync, &snapshot))
            .transpose()?;
        let mut differ = match &mut self.warehouse {
            None => Diffing::Host(
                Differ::new(self.primary_key.clone(), snapshot).with_seed(self.fingerprint),
            ),
            Some((_, advancer)) => {
                if let Some(instance) = advancer.take() {
                    let (config, sync) = (self.source_config.clone(), self.sync.name.clone());
                    self.advancer = Some(warehouse::Advancer::start(instance, config, sync));
                }
                Diffing::Warehouse(warehouse::WarehouseRows::new(self.primary_key.clone()))
            }
        };
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
        let mut coalescer = Coalescer::new(self.write_batch_rows());
        let mut total = RunCounts::default();
        let written: Result<()> = async {
            loop {
                // A source batch gives the full chunks it completes, and
                // what classification decided (invalid rows, mapping and
                // transform rejections, the diff counts), which rides with
                // the first of them; the end of the model gives the rows
                // still waiting for a full chunk.
                let (chunks, mut pending) = match rx.recv().await {
                    Some(batch) => {
                        let mut counts = RunCounts::default();
                        let clock = self.clock.clone();
                        let classified = self.classify(&mut differ, batch?, &mut counts);
                        let out = clock.time(Part::Transform, classified).await?;
                        let chunks = coalescer.push(out.batch, out.meta);
                        (chunks, Some((out.commit, counts)))
                    }
                    None => (coalescer.flush().into_iter().collect(), None),
                };
                let end = pending.is_none();
                for chunk in chunks {
                    let (commit, counts) = pending.take().unwrap_or_default();
                    let writer = self
                        .free_writer(
                            store,
                            run,
                            &mut idle,
                            &mut unopened,
                            &mut in_flight,
                            &ctx,
                            &mut total,
                            options,
                        )
                        .await?;
                    in_flight.push(writer.spawn_delivery(ctx.clone(), chunk, commit, counts));
                }
                if let Some((commit, counts)) = pending {
                    self.commit(store, run, commit, counts, &mut total, options)?;
                }
                // Outcome rows go to their writer in full batches; waiting
                // while it is behind bounds what the run holds of them.
                self.outcomes.flush().await;
                if let Some(advancer) = &self.advancer {
                    // `diff: warehouse`: read on only while the rows
                    // waiting to be recorded there stay bounded.
                    advancer.keep_up().await;
                }
                if end {
                    break;
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
        // `diff: warehouse`: every acknowledged row recorded there before
        // the run reports, whatever its end.
        let advanced = match self.advancer.take() {
            Some(advancer) => advancer.finish().await,
            None => Ok(()),
        };
        if let Some(e) = first_error {
            return Err(e);
        }
        advanced?;
        let removed = differ.finish()?.map(|s| s.removed).unwrap_or_default();
        if let Some(reconciler) = self.reconciler.take() {
            self.clock.enter(Stage::Deletes);
            let reconciled = reconciler.reconcile(self.sync, removed);
            self.mirror(store, run, &mut idle, &ctx, reconciled, &mut total, options)
                .await?;
        }
        Ok(())
    }

    /// A writer that is free, else one whose delivery has finished, else a
    /// new one while the concurrency allows, else the first to finish its
    /// delivery (whose acknowledgements are committed first).
    #[allow(clippy::too_many_arguments)]
    async fn free_writer<S: StateStore>(
        &self,
        store: &Mutex<S>,
        run: RunId,
        idle: &mut Vec<Writer>,
        unopened: &mut Vec<Instance>,
        in_flight: &mut InFlight,
        ctx: &DeliveryContext,
        total: &mut RunCounts,
        options: &RunOptions,
    ) -> Result<Writer> {
        loop {
            if let Some(w) = idle.pop() {
                return Ok(w);
            }
            if let Some(done) = in_flight.finished() {
                idle.push(self.record_delivery(store, run, done?, total, options)?);
                continue;
            }
            if let Some(instance) = unopened.pop() {
                return Ok(Writer::open(instance, ctx, &self.target).await?);
            }
            let done = in_flight.next().await?;
            return self.record_delivery(store, run, done, total, options);
        }
    }

    /// Commit what a finished delivery got acknowledged, at once (a kill
    /// loses at most the acknowledgements of the chunks in flight), and
    /// hand its writer back. A delivery that failed is committed too, with
    /// every row the destination answered before it failed, and then its
    /// error is returned.
    fn record_delivery<S: StateStore>(
        &self,
        store: &Mutex<S>,
        run: RunId,
        done: Delivered,
        total: &mut RunCounts,
        options: &RunOptions,
    ) -> Result<Writer> {
        let Delivered {
            writer,
            commit,
            counts,
            error,
            busy,
        } = done;
        self.clock.add(Part::Write, busy);
        self.commit(store, run, commit, counts, total, options)?;
        match error {
            None => Ok(writer),
            Some(e) => Err(e),
        }
    }

    /// Record one commit: acknowledged and rejected rows with the progress
    /// they represent, in one state transaction.
    pub(super) fn commit<S: StateStore>(
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
        self.scrub(&mut commit);
        if let Some(advancer) = &self.advancer {
            // Acknowledged, so recorded in the warehouse's snapshot.
            advancer.take_acks(&mut commit);
        }
        let started = Instant::now();
        lock(store).commit_batch(run, &commit)?;
        self.clock.add(Part::Commit, started.elapsed());
        // Only once committed: outcomes report what state holds, and never
        // change it.
        self.outcomes.record(&commit);
        *total += counts;
        if let Some(p) = &options.progress {
            p(total);
        }
        Ok(())
    }
}

impl Prepared<'_> {
    /// Plugin-written messages (rejections, invalid rows) with the
    /// project's secrets hidden, before they are stored or printed.
    pub(super) fn scrub(&self, commit: &mut CommitBatch) {
        if self.secrets.is_empty() {
            return;
        }
        for r in &mut commit.rejected {
            self.secrets.scrub_in_place(&mut r.message);
        }
        for i in &mut commit.invalid {
            self.secrets.scrub_in_place(&mut i.message);
        }
    }
}
