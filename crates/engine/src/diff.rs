//! Classifies the rows of a model against what the sync delivered before.
//!
//! A [`Differ`] is fed the batches of one run in order. For every row it
//! computes the primary key and the content hash, and says whether the row is
//! added (never delivered), changed (delivered with another hash), unchanged,
//! or invalid (a null key, or a key already seen in this run). After the last
//! batch, [`Differ::finish`] yields the keys that were delivered but not seen:
//! the rows that left the model, which mirror mode deletes.
//!
//! Diff state is "what we sent and the destination accepted". Rows the
//! destination rejected are not in the snapshot, so they come back as added
//! (or changed) on every later run until they are accepted.

use std::fmt;

pub use sluice_state::hash::{row_hash, RowHash, RowHasher};
pub use sluice_state::key::{DestId, DisplayValue, RowKey};
pub use sluice_state::snapshot::{Delivered, Snapshot, SnapshotError, SnapshotFull};

use sluice_runtime::{Batch, Value};
use sluice_state::key::encode_value;
use sluice_state::snapshot::Observation;

/// How one row compares with what was delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added,
    Changed {
        previous: RowHash,
    },
    Unchanged,
    /// Not sent; the reason says why.
    Invalid(InvalidReason),
}

/// Why a row cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidReason {
    /// A primary-key column holds null.
    NullKey { column: String },
    /// The key was already seen earlier in this run. The first occurrence is
    /// processed; later ones are not sent.
    DuplicateKey,
    /// The row has a different number of values than the batch has columns.
    WrongWidth { expected: usize, found: usize },
}

impl fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidReason::NullKey { column } => {
                write!(f, "primary key column `{column}` is null")
            }
            InvalidReason::DuplicateKey => {
                f.write_str("duplicate primary key: the key appeared earlier in this run")
            }
            InvalidReason::WrongWidth { expected, found } => {
                write!(
                    f,
                    "row has {found} values but the batch has {expected} columns"
                )
            }
        }
    }
}

/// The classification of one row of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowDiff {
    /// Position of the row in the batch.
    pub index: usize,
    /// The encoded primary key; `None` only for rows whose key cannot be
    /// built (null key, wrong width).
    pub key: Option<RowKey>,
    /// The row's content hash (meaningless for invalid rows).
    pub hash: RowHash,
    pub change: Change,
}

/// Running totals of a diff.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiffCounts {
    pub added: u64,
    pub changed: u64,
    pub unchanged: u64,
    pub invalid: u64,
    pub removed: u64,
}

/// A failure of a whole batch (as opposed to an invalid row).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiffError {
    #[error(
        "primary key column `{column}` is not among the model's columns [{available}]{suggestion}"
    )]
    MissingKeyColumn {
        column: String,
        available: String,
        suggestion: String,
    },
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// A delivered row that left the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedRow {
    pub key: RowKey,
    /// What the destination knows the record by, if it was recorded.
    pub dest_id: Option<DestId>,
}

/// What the diff of a whole run found, once every batch was classified.
#[derive(Debug)]
pub struct DiffSummary {
    pub counts: DiffCounts,
    pub removed: Vec<RemovedRow>,
}

/// Classifies the batches of one run; see the module docs.
pub struct Differ {
    primary_key: Vec<String>,
    snapshot: Snapshot,
    seed: u64,
    counts: DiffCounts,
    /// Hasher and key positions for the last column list seen; sources send
    /// the same columns in every batch, so this is built once per run.
    layout: Option<(Vec<String>, RowHasher, Vec<usize>)>,
    key_buf: Vec<u8>,
}

impl Differ {
    /// `primary_key` lists the model's key columns in order; `snapshot` is
    /// what the state store says was delivered.
    pub fn new(primary_key: Vec<String>, snapshot: Snapshot) -> Self {
        Differ {
            primary_key,
            snapshot,
            seed: 0,
            counts: DiffCounts::default(),
            layout: None,
            key_buf: Vec::new(),
        }
    }

    /// Folds `seed` into every content hash (see [`RowHasher::new`]). The
    /// same seed must be used when the hashes are later compared.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Totals so far.
    pub fn counts(&self) -> DiffCounts {
        self.counts
    }

    /// The snapshot, for looking up what was delivered under a key (e.g.
    /// the destination id of a changed row).
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Classifies every row of `batch`, in order.
    pub fn classify(&mut self, batch: &Batch) -> Result<Vec<RowDiff>, DiffError> {
        self.prepare_layout(&batch.columns)?;
        let mut out = Vec::with_capacity(batch.rows.len());
        for (index, row) in batch.rows.iter().enumerate() {
            let diff = self.classify_row(index, row, batch.columns.len())?;
            self.count(&diff.change);
            out.push(diff);
        }
        Ok(out)
    }

    /// Ends the run: every delivered key that no batch contained is removed.
    pub fn finish(self) -> Result<DiffSummary, DiffError> {
        let removed: Vec<RemovedRow> = self
            .snapshot
            .unseen_delivered()?
            .into_iter()
            .map(|(key, dest_id)| RemovedRow { key, dest_id })
            .collect();
        let mut counts = self.counts;
        counts.removed = removed.len() as u64;
        Ok(DiffSummary { counts, removed })
    }

    fn prepare_layout(&mut self, columns: &[String]) -> Result<(), DiffError> {
        if matches!(&self.layout, Some((cols, _, _)) if cols.as_slice() == columns) {
            return Ok(());
        }
        let positions = self
            .primary_key
            .iter()
            .map(|k| key_position(k, columns))
            .collect::<Result<Vec<_>, _>>()?;
        let hasher = RowHasher::new(columns, self.seed);
        self.layout = Some((columns.to_vec(), hasher, positions));
        Ok(())
    }

    fn classify_row(
        &mut self,
        index: usize,
        row: &[Value],
        width: usize,
    ) -> Result<RowDiff, DiffError> {
        let (_, hasher, positions) = self.layout.as_mut().expect("layout prepared");
        let invalid = |key, reason| RowDiff {
            index,
            key,
            hash: RowHash(0),
            change: Change::Invalid(reason),
        };
        if row.len() != width {
            let reason = InvalidReason::WrongWidth {
                expected: width,
                found: row.len(),
            };
            return Ok(invalid(None, reason));
        }
        self.key_buf.clear();
        for (&pos, name) in positions.iter().zip(&self.primary_key) {
            if row[pos] == Value::Null {
                let column = name.clone();
                return Ok(invalid(None, InvalidReason::NullKey { column }));
            }
            encode_value(&row[pos], &mut self.key_buf);
        }
        let hash = hasher.hash(row);
        let key = RowKey::from_bytes(self.key_buf.as_slice());
        let change = match self.snapshot.observe(&self.key_buf, hash)? {
            Observation::New => Change::Added,
            Observation::Same => Change::Unchanged,
            Observation::Different { previous } => Change::Changed { previous },
            Observation::Duplicate => return Ok(invalid(Some(key), InvalidReason::DuplicateKey)),
        };
        Ok(RowDiff {
            index,
            key: Some(key),
            hash,
            change,
        })
    }

    fn count(&mut self, change: &Change) {
        let c = &mut self.counts;
        match change {
            Change::Added => c.added += 1,
            Change::Changed { .. } => c.changed += 1,
            Change::Unchanged => c.unchanged += 1,
            Change::Invalid(_) => c.invalid += 1,
        }
    }
}

fn key_position(column: &str, columns: &[String]) -> Result<usize, DiffError> {
    if let Some(pos) = columns.iter().position(|c| c == column) {
        return Ok(pos);
    }
    let suggestion = sluice_config::suggest(column, columns.iter().map(String::as_str))
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default();
    Err(DiffError::MissingKeyColumn {
        column: column.to_owned(),
        available: columns.join(", "),
        suggestion,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(rows: Vec<Vec<Value>>) -> Batch {
        Batch {
            columns: vec!["id".into(), "name".into()],
            rows,
        }
    }

    fn row(id: i64, name: &str) -> Vec<Value> {
        vec![Value::Integer(id), Value::Text(name.into())]
    }

    #[test]
    fn first_run_is_all_added() {
        let mut d = Differ::new(vec!["id".into()], Snapshot::new());
        let out = d.classify(&batch(vec![row(1, "a"), row(2, "b")])).unwrap();
        assert!(out.iter().all(|r| r.change == Change::Added));
        assert_eq!(d.finish().unwrap().removed, vec![]);
    }

    #[test]
    fn null_and_wrong_width_rows_are_invalid() {
        let mut d = Differ::new(vec!["id".into()], Snapshot::new());
        let out = d
            .classify(&batch(vec![
                vec![Value::Null, Value::Text("x".into())],
                vec![Value::Integer(1)],
            ]))
            .unwrap();
        assert_eq!(
            out[0].change,
            Change::Invalid(InvalidReason::NullKey {
                column: "id".into()
            })
        );
        assert_eq!(
            out[1].change,
            Change::Invalid(InvalidReason::WrongWidth {
                expected: 2,
                found: 1
            })
        );
        assert_eq!(d.counts().invalid, 2);
    }

    #[test]
    fn missing_key_column_is_a_batch_error_with_suggestion() {
        let mut d = Differ::new(vec!["idd".into()], Snapshot::new());
        let err = d.classify(&batch(vec![row(1, "a")])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`idd`"), "{msg}");
        assert!(msg.contains("did you mean `id`"), "{msg}");
    }
}
