//! A state store that says when its run has begun, so the API can answer a
//! trigger with the run's id while the run goes on in the background.

use sluice_state::{
    CommitBatch, DeliveredRow, LedgerEntry, RowKey, RunId, RunRecord, RunStatus, Sample, Snapshot,
    StateError, StateStore,
};
use tokio::sync::oneshot;

/// `S`, telling `started` the id of the first run it begins.
pub struct Announcing<S> {
    pub inner: S,
    pub started: Option<oneshot::Sender<RunId>>,
}

impl<S: StateStore> StateStore for Announcing<S> {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn begin_run(&mut self, sync: &str, full_resync: bool) -> Result<RunId, StateError> {
        let id = self.inner.begin_run(sync, full_resync)?;
        if let Some(tx) = self.started.take() {
            // The requester may have gone; the run goes on regardless.
            let _ = tx.send(id);
        }
        Ok(id)
    }
    fn commit_batch(&mut self, run: RunId, batch: &CommitBatch) -> Result<(), StateError> {
        self.inner.commit_batch(run, batch)
    }
    fn finish_run(
        &mut self,
        run: RunId,
        status: RunStatus,
        error: Option<&str>,
    ) -> Result<(), StateError> {
        self.inner.finish_run(run, status, error)
    }
    fn fail_run(&mut self, run: RunId, stage: &str, error: &str) -> Result<(), StateError> {
        self.inner.fail_run(run, stage, error)
    }
    fn mark_interrupted_runs(&mut self) -> Result<Vec<RunId>, StateError> {
        self.inner.mark_interrupted_runs()
    }
    fn load_snapshot(&self, sync: &str) -> Result<Snapshot, StateError> {
        self.inner.load_snapshot(sync)
    }
    fn for_each_delivered(
        &self,
        sync: &str,
        visit: &mut dyn FnMut(DeliveredRow),
    ) -> Result<(), StateError> {
        self.inner.for_each_delivered(sync, visit)
    }
    fn ledger(&self, sync: &str) -> Result<Vec<LedgerEntry>, StateError> {
        self.inner.ledger(sync)
    }
    fn forget_snapshot(&mut self, sync: &str) -> Result<u64, StateError> {
        self.inner.forget_snapshot(sync)
    }
    fn forget_keys(&mut self, sync: &str, keys: &[RowKey]) -> Result<u64, StateError> {
        self.inner.forget_keys(sync, keys)
    }
    fn run(&self, run: RunId) -> Result<Option<RunRecord>, StateError> {
        self.inner.run(run)
    }
    fn runs(&self, sync: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        self.inner.runs(sync, limit)
    }
    fn samples(&self, run: RunId) -> Result<Vec<Sample>, StateError> {
        self.inner.samples(run)
    }
    fn unlock(&mut self, sync: &str) -> Result<Vec<RunId>, StateError> {
        self.inner.unlock(sync)
    }
    fn fingerprint(&self, sync: &str) -> Result<Option<u64>, StateError> {
        self.inner.fingerprint(sync)
    }
    fn record_fingerprint(
        &mut self,
        sync: &str,
        fingerprint: u64,
        run: RunId,
    ) -> Result<(), StateError> {
        self.inner.record_fingerprint(sync, fingerprint, run)
    }
}
