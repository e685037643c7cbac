//! What mirror mode may delete: reconciliation by identifier, and the
//! per-sync deletion guard.
//!
//! The diff finds delivered *keys* that no row of the model has any more.
//! A key is not what the destination knows a record by, though: a type hint
//! that re-tags `"42"` as `42`, or a primary key that gains a column, gives
//! every row a new key while its identifier (the external id the destination
//! matches on) stays the same. Deleting by the old keys' identifiers would
//! then wipe every record the same run just upserted.
//!
//! So a delete candidate is a removed key whose recorded identifier no row
//! of the current model carries. The [`Reconciler`] is told the identifier
//! of every row the run reads (sent, unchanged, invalid or rejected alike)
//! and of every row it sends; identifiers are compared the way destinations
//! compare external ids: as text, case-insensitively, so `42`, `"42"` and
//! `42.0` are one identifier. A removed key whose identifier is still
//! carried is not deleted: its snapshot entry is rewritten to the row that
//! carries it now ([`sluice_state::Ack::Rekeyed`]). When the identifier of a
//! row cannot be known (a transform produces it and the row never reached
//! the transform), nothing is deleted at all.
//!
//! Then the [`DeleteGuard`] of the sync (`max_deletes`, `allow_empty`)
//! decides whether the remaining deletes may go.

use std::collections::{HashMap, HashSet};

use sluice_config::{Coercion, MappingSource, MaxDeletes, SyncConfig};
use sluice_runtime::values::{format_date, format_timestamp};
use sluice_runtime::Value;
use sluice_state::key::{DestId, RowKey};
use sluice_state::snapshot::{Snapshot, SnapshotError};
use xxhash_rust::xxh3::xxh3_64;

use crate::coerce::coerce;
use crate::diff::RemovedRow;
use crate::mapping::constant_value;

/// An identifier as destinations compare external ids: its text, trimmed and
/// case-folded, hashed to 64 bits. Two different identifiers that collide
/// only make Sluice keep a record it could have deleted, never the reverse.
pub fn identity(value: &Value) -> Option<u64> {
    let text = match value {
        Value::Null => return None,
        Value::Boolean(b) => b.to_string(),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => number_text(&format!("{f}")),
        Value::Decimal(s) => number_text(s.trim()),
        Value::Text(s) | Value::Json(s) => s.trim().to_lowercase(),
        Value::Bytes(b) => hex::encode(b),
        Value::Timestamp(t) => format_timestamp(*t),
        Value::Date(d) => format_date(*d),
    };
    Some(xxh3_64(text.as_bytes()))
}

/// `42.50` → `42.5`, `42.0` → `42`: numbers that are equal read the same.
fn number_text(s: &str) -> String {
    if !s.contains('.') || s.contains(['e', 'E']) {
        return s.to_owned();
    }
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The identity of a recorded destination id.
fn dest_identity(id: &DestId) -> Option<u64> {
    id.to_value().ok().as_ref().and_then(identity)
}

/// How the identifier of a model row is found before it is mapped.
#[derive(Debug, Clone)]
pub enum IdentifierSource {
    /// A model column, with the mapping's coercion.
    Column(String, Option<Coercion>),
    /// A mapping constant: every row carries the same identifier.
    Constant(Value),
    /// No mapping produces it (a transform does): unknown until a row has
    /// gone through the transforms.
    Unknown,
}

impl IdentifierSource {
    /// Where the identifier field of `sync` comes from.
    pub fn of(sync: &SyncConfig) -> Option<IdentifierSource> {
        let identifier = sync.identifier.as_ref()?.expose();
        if sync.mappings.is_empty() {
            return Some(IdentifierSource::Column(identifier.to_owned(), None));
        }
        Some(match sync.mappings.iter().find(|m| m.to == identifier) {
            Some(m) => match &m.source {
                MappingSource::Column(c) => IdentifierSource::Column(c.clone(), m.coerce),
                MappingSource::Constant(c) => {
                    let v = constant_value(c);
                    IdentifierSource::Constant(match m.coerce {
                        Some(to) => coerce(v.clone(), to).unwrap_or(v),
                        None => v,
                    })
                }
            },
            None => IdentifierSource::Unknown,
        })
    }
}

/// The identifiers carried by the rows of one run, against the identifiers
/// the sync delivered before. See the module docs.
pub struct Reconciler {
    source: IdentifierSource,
    /// The mapped identifier may still be changed by a transform.
    transformed: bool,
    /// Identities of the identifiers on record.
    delivered: HashSet<u64>,
    /// Delivered identities some row of this run carries, with a key of a
    /// (valid) row carrying it, when one did.
    carried: HashMap<u64, Option<RowKey>>,
    /// Rows whose final identifier could not be known.
    unknown: u64,
    /// Rows with a usable key.
    valid_rows: u64,
    /// Records on record when the run started.
    on_record: u64,
}

/// What a mirror run does about the keys that left the model.
#[derive(Debug, Default)]
pub struct Reconciled {
    /// Records to delete: no row carries their identifier.
    pub deletes: Vec<RemovedRow>,
    /// Snapshot entries to move to the key that carries their identifier now.
    pub rekeyed: Vec<(RowKey, RowKey)>,
    /// Removed keys left alone: their identifier is carried by a row that
    /// has no usable key, or none was recorded.
    pub held: u64,
    /// Why deletes may not go this run, if they may not.
    pub refused: Option<String>,
}

impl Reconciler {
    /// `snapshot` is what was delivered before this run.
    pub fn new(sync: &SyncConfig, snapshot: &Snapshot) -> Result<Self, SnapshotError> {
        let mut delivered: HashSet<u64> = HashSet::new();
        snapshot.for_each_delivered(|_, d| {
            if let Some(identity) = d
                .dest_id
                .and_then(|id| dest_identity(&DestId::from_bytes(id)))
            {
                delivered.insert(identity);
            }
        })?;
        Ok(Reconciler {
            source: IdentifierSource::of(sync).unwrap_or(IdentifierSource::Unknown),
            transformed: !sync.transforms.is_empty(),
            delivered,
            carried: HashMap::new(),
            unknown: 0,
            valid_rows: 0,
            on_record: snapshot.delivered_len() as u64,
        })
    }

    /// Positions of the identifier's column in `columns`, for
    /// [`Reconciler::observe_model_row`].
    pub fn column_of(&self, columns: &[String]) -> Option<usize> {
        match &self.source {
            IdentifierSource::Column(c, _) => columns.iter().position(|x| x == c),
            _ => None,
        }
    }

    /// A row as the model returned it. `key` is its key when the row is
    /// valid; `sent` says whether its mapped identifier will reach
    /// [`Reconciler::carry`] too; `recorded` is the id on record for its key.
    pub fn observe_model_row(
        &mut self,
        row: &[Value],
        column: Option<usize>,
        key: Option<&RowKey>,
        recorded: Option<&[u8]>,
        sent: bool,
    ) {
        if key.is_some() {
            self.valid_rows += 1;
        }
        if let Some(id) = recorded {
            // The row holds the key it was delivered under: what it carried
            // then, it carries now (the content and config are unchanged, or
            // it is sent again below).
            if let Some(identity) = dest_identity(&DestId::from_bytes(id)) {
                self.carry_identity(identity, key);
            }
        }
        let derived = match (&self.source, column) {
            (IdentifierSource::Column(_, coercion), Some(p)) => {
                let raw = row.get(p).cloned().unwrap_or(Value::Null);
                if let Some(to) = coercion {
                    if let Ok(v) = coerce(raw.clone(), *to) {
                        self.carry(&v, key);
                    }
                }
                self.carry(&raw, key);
                true
            }
            (IdentifierSource::Constant(v), _) => {
                let v = v.clone();
                self.carry(&v, key);
                true
            }
            _ => false,
        };
        let known = recorded.is_some() || (derived && !self.transformed);
        if !sent && !known {
            self.unknown += 1;
        }
    }

    /// A row whose identifier is `value` (as mapped, or as sent).
    pub fn carry(&mut self, value: &Value, key: Option<&RowKey>) {
        if let Some(identity) = identity(value) {
            self.carry_identity(identity, key);
        }
    }

    /// A row that was going to be sent but was not (a transform rejected it):
    /// its final identifier is unknown when transforms may change it.
    pub fn not_sent(&mut self) {
        if self.transformed {
            self.unknown += 1;
        }
    }

    fn carry_identity(&mut self, identity: u64, key: Option<&RowKey>) {
        if !self.delivered.contains(&identity) {
            return;
        }
        let slot = self.carried.entry(identity).or_insert(None);
        if slot.is_none() {
            *slot = key.cloned();
        }
    }

    /// Splits the removed keys into deletes, rewrites and held rows, and
    /// applies the sync's guard to the deletes.
    pub fn reconcile(self, sync: &SyncConfig, removed: Vec<RemovedRow>) -> Reconciled {
        let mut out = Reconciled::default();
        for row in removed {
            let Some(identity) = row.dest_id.as_ref().and_then(dest_identity) else {
                out.held += 1;
                continue;
            };
            match self.carried.get(&identity) {
                Some(Some(key)) if *key != row.key => out.rekeyed.push((row.key, key.clone())),
                Some(_) => out.held += 1,
                None => out.deletes.push(row),
            }
        }
        if out.deletes.is_empty() {
            return out;
        }
        out.refused = if self.unknown > 0 {
            Some(format!(
                "sync `{}`: {} row(s) of the model never reached the transforms, so the identifier \
                 they carry is unknown; none of the {} delete(s) is sent until they are fixed",
                sync.name,
                self.unknown,
                out.deletes.len()
            ))
        } else {
            DeleteGuard::of(sync).check(
                &sync.name,
                out.deletes.len() as u64,
                self.on_record,
                self.valid_rows,
            )
        };
        out
    }
}

/// A sync's limits on deletes: `max_deletes` and `allow_empty`.
#[derive(Debug, Clone, Copy)]
pub struct DeleteGuard {
    pub max_deletes: Option<MaxDeletes>,
    pub allow_empty: bool,
}

impl DeleteGuard {
    pub fn of(sync: &SyncConfig) -> Self {
        DeleteGuard {
            max_deletes: sync.max_deletes,
            allow_empty: sync.allow_empty,
        }
    }

    /// Why `deletes` of the `on_record` records may not go when the model
    /// had `rows` rows with a usable key; `None` when they may.
    pub fn check(&self, sync: &str, deletes: u64, on_record: u64, rows: u64) -> Option<String> {
        if deletes == 0 {
            return None;
        }
        if rows == 0 && !self.allow_empty {
            return Some(format!(
                "sync `{sync}`: the model returned no rows, so mirror mode would delete all \
                 {deletes} of the {on_record} record(s) Sluice delivered; refusing \
                 (set `allow_empty: true` on the sync if the model is meant to be empty)"
            ));
        }
        let max = self.max_deletes?;
        let limit = max.limit(on_record);
        (deletes > limit).then(|| {
            let share = match max {
                MaxDeletes::Percent(_) => format!(" ({max} of {on_record} on record)"),
                MaxDeletes::Count(_) => String::new(),
            };
            format!(
                "sync `{sync}`: {deletes} delete(s) of {on_record} record(s) on record exceed \
                 `max_deletes: {max}`, which allows {limit}{share}; refusing every delete \
                 (raise `max_deletes` if this is intended)"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_compare_as_destinations_do() {
        let id = |v: Value| identity(&v).unwrap();
        assert_eq!(id(Value::Integer(42)), id(Value::Text("42".into())));
        assert_eq!(id(Value::Decimal("42.0".into())), id(Value::Integer(42)));
        assert_eq!(id(Value::Float(42.0)), id(Value::Integer(42)));
        assert_eq!(
            id(Value::Text("A@x.com ".into())),
            id(Value::Text("a@x.com".into()))
        );
        assert_ne!(id(Value::Integer(42)), id(Value::Integer(420)));
        assert_eq!(identity(&Value::Null), None);
    }

    #[test]
    fn the_guard_counts_and_shares() {
        let guard = |max, allow_empty| DeleteGuard {
            max_deletes: max,
            allow_empty,
        };
        let g = guard(None, false);
        assert_eq!(g.check("s", 0, 10, 0), None);
        let empty = g.check("s", 10, 10, 0).unwrap();
        assert!(
            empty.contains("sync `s`") && empty.contains("all 10 of the 10"),
            "{empty}"
        );
        assert_eq!(guard(None, true).check("s", 10, 10, 0), None);
        assert_eq!(g.check("s", 10, 10, 1), None);
        let count = guard(Some(MaxDeletes::Count(3)), false);
        assert_eq!(count.check("s", 3, 10, 7), None);
        let too_many = count.check("s", 4, 10, 6).unwrap();
        assert!(
            too_many.contains("4 delete(s) of 10") && too_many.contains("`max_deletes: 3`"),
            "{too_many}"
        );
        let share = guard(Some(MaxDeletes::Percent(10.0)), false);
        assert_eq!(share.check("s", 10, 100, 90), None);
        let msg = share.check("s", 11, 100, 89).unwrap();
        assert!(msg.contains("allows 10 (10% of 100"), "{msg}");
    }
}
