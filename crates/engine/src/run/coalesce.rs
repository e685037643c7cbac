//! Full write batches: the rows to send are gathered across source batches,
//! so a run makes ceil(rows to send / batch size) write requests however
//! the changes are spread over the model. A rerun that changes 1% of a
//! model would otherwise send one small request per source batch, which
//! wastes most of a rate-limited API's quota.

use crate::deliver::{Chunk, RowMeta};
use sluice_runtime::{Batch, Row};

/// Rows waiting for a full write batch.
pub(super) struct Coalescer {
    size: usize,
    columns: Vec<String>,
    rows: Vec<Row>,
    meta: Vec<RowMeta>,
}

impl Coalescer {
    pub(super) fn new(size: usize) -> Self {
        let size = size.max(1);
        Coalescer {
            size,
            columns: Vec::new(),
            rows: Vec::with_capacity(size),
            meta: Vec::with_capacity(size),
        }
    }

    /// Add the rows of one source batch; returns every full chunk now
    /// ready. Rows whose columns differ from the waiting ones (a transform
    /// may change its output's shape) first flush the waiting rows as a
    /// short chunk, since one request carries one column list.
    pub(super) fn push(&mut self, batch: Batch, meta: Vec<RowMeta>) -> Vec<Chunk> {
        debug_assert_eq!(batch.rows.len(), meta.len());
        let mut ready = Vec::new();
        if batch.rows.is_empty() {
            return ready;
        }
        if self.columns != batch.columns {
            ready.extend(self.flush());
            self.columns = batch.columns;
        }
        let mut meta = meta.into_iter();
        for row in batch.rows {
            self.rows.push(row);
            self.meta.extend(meta.next());
            if self.rows.len() == self.size {
                ready.push(self.take());
            }
        }
        ready
    }

    /// The rows still waiting, as one short chunk (the end of the model).
    pub(super) fn flush(&mut self) -> Option<Chunk> {
        (!self.rows.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> Chunk {
        let rows = std::mem::replace(&mut self.rows, Vec::with_capacity(self.size));
        let meta = std::mem::replace(&mut self.meta, Vec::with_capacity(self.size));
        (
            Batch {
                columns: self.columns.clone(),
                rows,
            },
            meta,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_state::hash::RowHash;
    use sluice_state::key::RowKey;

    fn batch(columns: &[&str], n: usize) -> (Batch, Vec<RowMeta>) {
        let rows = (0..n).map(|_| Row::default()).collect();
        let meta = (0..n)
            .map(|i| RowMeta {
                key: RowKey::from_bytes(i.to_le_bytes().to_vec()),
                hash: RowHash(0),
            })
            .collect();
        (
            Batch {
                columns: columns.iter().map(|c| c.to_string()).collect(),
                rows,
            },
            meta,
        )
    }

    #[test]
    fn rows_from_many_source_batches_fill_whole_chunks() {
        let mut c = Coalescer::new(500);
        let mut sizes = Vec::new();
        for _ in 0..20 {
            let (b, m) = batch(&["id"], 50);
            sizes.extend(c.push(b, m).iter().map(|(b, _)| b.rows.len()));
        }
        sizes.extend(c.flush().iter().map(|(b, _)| b.rows.len()));
        assert_eq!(sizes, vec![500, 500]);
    }

    #[test]
    fn a_change_of_columns_sends_the_waiting_rows_first() {
        let mut c = Coalescer::new(10);
        let (b, m) = batch(&["id"], 3);
        assert!(c.push(b, m).is_empty());
        let (b, m) = batch(&["id", "x"], 12);
        let ready = c.push(b, m);
        let shapes: Vec<(usize, usize)> = ready
            .iter()
            .map(|(b, m)| (b.columns.len(), m.len()))
            .collect();
        assert_eq!(shapes, vec![(1, 3), (2, 10)]);
        assert_eq!(c.flush().map(|(b, _)| b.rows.len()), Some(2));
        assert!(c.flush().is_none());
    }
}
