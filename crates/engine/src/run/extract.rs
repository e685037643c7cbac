//! Extract: the source streams batches from its own task, so reading
//! overlaps diffing and writing.

use super::*;

/// Stream a source in its own task so reading overlaps writing.
/// With a `diff` request (`diff: warehouse`) the source diffs inside its
/// warehouse and streams only the changed rows.
fn spawn_reader(
    mut source: Instance,
    config: String,
    (read, diff): (ReadRequest, Option<sluice_runtime::instance::DiffRequest>),
    batch_rows: u32,
    clock: Arc<StageClock>,
) -> tokio::sync::mpsc::Receiver<Result<Batch, PluginFailure>> {
    let (tx, rx) = tokio::sync::mpsc::channel(SOURCE_QUEUE);
    tokio::spawn(async move {
        let opening = async {
            match &diff {
                None => source.read(&config, &read).await.map(Ok),
                Some(request) => source.diff(&config, request).await.map(Err),
            }
        };
        let reader = match clock.time(Part::Read, opening).await {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        loop {
            let next = match &reader {
                Ok(r) => {
                    clock
                        .time(Part::Read, source.next_batch(r, batch_rows))
                        .await
                }
                Err(r) => {
                    clock
                        .time(Part::Read, source.next_diff_batch(r, batch_rows))
                        .await
                }
            };
            let done = !matches!(next, Ok(Some(_)));
            let item = match next {
                Ok(Some(batch)) => Ok(batch),
                Ok(None) => return,
                Err(e) => Err(e),
            };
            if tx.send(item).await.is_err() || done {
                return;
            }
        }
    });
    rx
}

impl Prepared<'_> {
    pub(super) fn write_batch_rows(&self) -> usize {
        match self.batch_size {
            0 => 1000,
            n => n as usize,
        }
    }

    /// What the source says its read would scan, before reading (sources
    /// that export `estimate-api`; `None` from the others).
    pub(super) async fn estimate_scan_bytes(&mut self) -> Result<Option<u64>> {
        let source = self
            .source
            .as_mut()
            .ok_or_else(|| anyhow!("the source was already read"))?;
        source
            .estimate_scan_bytes(&self.source_config, &self.read)
            .await
            .context("estimating what the source's read scans")
    }

    pub(super) fn start_reader(
        &mut self,
    ) -> Result<tokio::sync::mpsc::Receiver<Result<Batch, PluginFailure>>> {
        let source = self
            .source
            .take()
            .ok_or_else(|| anyhow!("the source was already read"))?;
        // Read in large batches even when writes are small: scanning
        // unchanged rows is cheaper per call, and writes are chunked anyway.
        let rows = (self.write_batch_rows() as u32).max(SOURCE_BATCH_ROWS);
        let diff = self.warehouse.as_ref().map(|(request, _)| request.clone());
        Ok(spawn_reader(
            source,
            self.source_config.clone(),
            (self.read.clone(), diff),
            rows,
            self.clock.clone(),
        ))
    }
}
