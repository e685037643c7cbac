//! In-memory record storage with unique/external-id indexes.
//!
//! Records live in creation order (a sequence number), so listings are stable, and
//! every unique or external-id field has a case-insensitive index so that an upsert
//! on a large table does not scan it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::schema::ObjectSpec;

/// One stored record: its id, field values keyed by canonical API name, timestamps.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub id: String,
    pub fields: Map<String, Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// All records of one object type.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub spec: ObjectSpec,
    next_seq: u64,
    records: BTreeMap<u64, Record>,
    by_id: HashMap<String, u64>,
    indexes: HashMap<String, HashMap<String, BTreeSet<u64>>>,
    /// Deleted records by id, as they were (Salesforce's recycle bin, which
    /// `queryAll` reads).
    deleted: HashMap<String, Record>,
}

/// The index key of a value: case-insensitive text, `None` for null/empty.
pub(crate) fn index_key(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.to_lowercase()),
        other => Some(other.to_string()),
    }
}

impl Table {
    pub fn new(spec: ObjectSpec) -> Self {
        let mut table = Self {
            spec,
            next_seq: 0,
            records: BTreeMap::new(),
            by_id: HashMap::new(),
            indexes: HashMap::new(),
            deleted: HashMap::new(),
        };
        table.rebuild_indexes();
        table
    }

    /// Rebuilds every index; called after a field becomes unique or an external id.
    pub fn rebuild_indexes(&mut self) {
        self.indexes = self
            .spec
            .fields
            .iter()
            .filter(|f| f.indexed())
            .map(|f| (f.name.clone(), HashMap::new()))
            .collect();
        let entries: Vec<(u64, Map<String, Value>)> = self
            .records
            .iter()
            .map(|(seq, r)| (*seq, r.fields.clone()))
            .collect();
        for (seq, fields) in entries {
            self.index_fields(seq, &fields);
        }
    }

    fn index_fields(&mut self, seq: u64, fields: &Map<String, Value>) {
        for (field, index) in self.indexes.iter_mut() {
            if let Some(key) = fields.get(field).and_then(index_key) {
                index.entry(key).or_default().insert(seq);
            }
        }
    }

    fn unindex_fields(&mut self, seq: u64, fields: &Map<String, Value>) {
        for (field, index) in self.indexes.iter_mut() {
            if let Some(key) = fields.get(field).and_then(index_key) {
                if let Some(set) = index.get_mut(&key) {
                    set.remove(&seq);
                    if set.is_empty() {
                        index.remove(&key);
                    }
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn get(&self, id: &str) -> Option<&Record> {
        self.by_id.get(id).and_then(|seq| self.records.get(seq))
    }

    pub fn was_deleted(&self, id: &str) -> bool {
        self.deleted.contains_key(id)
    }

    /// Deleted records (in no particular order).
    pub fn deleted_records(&self) -> impl Iterator<Item = &Record> {
        self.deleted.values()
    }

    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.records.values()
    }

    /// Records whose `field` equals `value` (case-insensitive for text).
    pub fn lookup(&self, field: &str, value: &Value) -> Vec<&Record> {
        let Some(key) = index_key(value) else {
            return Vec::new();
        };
        match self.indexes.get(field) {
            Some(index) => index
                .get(&key)
                .into_iter()
                .flatten()
                .filter_map(|seq| self.records.get(seq))
                .collect(),
            None => self
                .records
                .values()
                .filter(|r| r.fields.get(field).and_then(index_key).as_deref() == Some(&key))
                .collect(),
        }
    }

    /// The id of another record already holding `value` in `field`, if any.
    pub fn conflict(&self, field: &str, value: &Value, except_id: Option<&str>) -> Option<String> {
        self.lookup(field, value)
            .into_iter()
            .find(|r| Some(r.id.as_str()) != except_id)
            .map(|r| r.id.clone())
    }

    /// Stores a new record under `id`.
    pub fn insert(&mut self, id: String, fields: Map<String, Value>, now: DateTime<Utc>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.index_fields(seq, &fields);
        self.by_id.insert(id.clone(), seq);
        self.records.insert(
            seq,
            Record {
                id,
                fields,
                created_at: now,
                updated_at: now,
            },
        );
    }

    /// Merges `patch` into record `id`; a null value removes the field.
    /// Returns false if there is no such record.
    pub fn update(&mut self, id: &str, patch: Map<String, Value>, now: DateTime<Utc>) -> bool {
        let Some(&seq) = self.by_id.get(id) else {
            return false;
        };
        let Some(old) = self.records.get(&seq).map(|r| r.fields.clone()) else {
            return false;
        };
        self.unindex_fields(seq, &old);
        let mut merged = old;
        for (k, v) in patch {
            if v.is_null() {
                merged.remove(&k);
            } else {
                merged.insert(k, v);
            }
        }
        self.index_fields(seq, &merged);
        if let Some(record) = self.records.get_mut(&seq) {
            record.fields = merged;
            record.updated_at = now;
        }
        true
    }

    /// Deletes record `id`; returns false if it did not exist.
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(seq) = self.by_id.remove(id) else {
            return false;
        };
        if let Some(record) = self.records.remove(&seq) {
            self.unindex_fields(seq, &record.fields);
            self.deleted.insert(id.to_owned(), record);
        }
        true
    }
}

/// All object types of one emulator, looked up case-insensitively by name or by
/// HubSpot type id.
#[derive(Debug, Default, Clone)]
pub(crate) struct Store {
    tables: BTreeMap<String, Table>,
}

impl Store {
    fn resolve(&self, name: &str) -> Option<String> {
        let key = name.to_lowercase();
        if self.tables.contains_key(&key) {
            return Some(key);
        }
        self.tables
            .iter()
            .find(|(_, t)| !t.spec.type_id.is_empty() && t.spec.type_id == name)
            .map(|(k, _)| k.clone())
    }

    pub fn table(&self, name: &str) -> Option<&Table> {
        self.resolve(name).and_then(|k| self.tables.get(&k))
    }

    pub fn table_mut(&mut self, name: &str) -> Option<&mut Table> {
        self.resolve(name)
            .and_then(move |k| self.tables.get_mut(&k))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.resolve(name).is_some()
    }

    /// Adds a new object type (replacing none; callers check `contains` first).
    pub fn add(&mut self, spec: ObjectSpec) {
        self.tables
            .insert(spec.name.to_lowercase(), Table::new(spec));
    }

    pub fn specs(&self) -> Vec<ObjectSpec> {
        self.tables.values().map(|t| t.spec.clone()).collect()
    }
}
