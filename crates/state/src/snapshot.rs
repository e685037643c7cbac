//! The compact in-memory map of what a sync delivered: primary key → content
//! hash and destination id, plus the per-run "seen" marks the diff needs.
//!
//! Layout, chosen so 1,000,000 keys take tens of megabytes rather than the
//! hundreds a `HashMap<Vec<u8>, (String, Option<String>)>` would:
//! - every key's bytes live back to back in one arena (`keys`), every
//!   destination id in another (`ids`), so there is no allocation per key;
//! - `entries` holds fixed 40-byte records (offsets, lengths, the 16-byte
//!   hash as two words, flags);
//! - `index` is a swiss table of 4-byte entry numbers, hashed by key bytes.
//!
//! [`Snapshot::heap_bytes`] reports the exact heap footprint so the memory
//! bound can be checked analytically.

use hashbrown::HashTable;
use xxhash_rust::xxh3::xxh3_64;

use super::hash::RowHash;
use super::key::{DestId, RowKey};

const DELIVERED: u8 = 1;
const SEEN: u8 = 2;
const NO_ID: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Entry {
    key_off: u32,
    key_len: u32,
    id_off: u32,
    id_len: u32,
    hash: [u64; 2],
    flags: u8,
}

impl Entry {
    fn hash(&self) -> RowHash {
        RowHash((u128::from(self.hash[0]) << 64) | u128::from(self.hash[1]))
    }

    fn set_hash(&mut self, h: RowHash) {
        self.hash = [(h.0 >> 64) as u64, h.0 as u64];
    }
}

/// The arenas are addressed with 32-bit offsets to keep entries small.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the snapshot is too large for one process ({what} exceed 4 GiB); diff this sync in the warehouse instead")]
pub struct SnapshotFull {
    pub what: &'static str,
}

/// A delivered row as the snapshot remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered<'a> {
    pub hash: RowHash,
    /// Encoded destination id (see [`DestId`]).
    pub dest_id: Option<&'a [u8]>,
}

/// What [`Snapshot::observe`] found for a key seen in the current run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// Never delivered and not seen before in this run.
    New,
    /// Delivered with the same content hash.
    Same,
    /// Delivered with a different content hash.
    Different { previous: RowHash },
    /// Already seen in this run.
    Duplicate,
}

/// Primary key → what was delivered. See the module docs for the layout.
#[derive(Default)]
pub struct Snapshot {
    keys: Vec<u8>,
    ids: Vec<u8>,
    entries: Vec<Entry>,
    index: HashTable<u32>,
}

impl Snapshot {
    pub fn new() -> Self {
        Self::default()
    }

    /// Pre-sizes for `keys` entries averaging `key_bytes` bytes each, so a
    /// load from the state store does not reallocate.
    pub fn with_capacity(keys: usize, key_bytes: usize) -> Self {
        Snapshot {
            keys: Vec::with_capacity(keys.saturating_mul(key_bytes)),
            ids: Vec::new(),
            entries: Vec::with_capacity(keys),
            index: HashTable::with_capacity(keys),
        }
    }

    /// Number of keys held (delivered ones plus keys first seen this run).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of keys recorded as delivered.
    pub fn delivered_len(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.flags & DELIVERED != 0)
            .count()
    }

    /// Exact bytes allocated on the heap by this snapshot.
    pub fn heap_bytes(&self) -> usize {
        self.keys.capacity()
            + self.ids.capacity()
            + self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.index.allocation_size()
    }

    /// Records a delivered row (when loading from the state store). A key
    /// inserted twice keeps the last hash and id.
    pub fn insert_delivered(
        &mut self,
        key: &[u8],
        hash: RowHash,
        dest_id: Option<&[u8]>,
    ) -> Result<(), SnapshotFull> {
        let idx = match self.find(key) {
            Some(idx) => idx,
            None => self.push_key(key)?,
        };
        let (id_off, id_len) = match dest_id {
            Some(id) => self.push_id(id)?,
            None => (0, NO_ID),
        };
        let e = &mut self.entries[idx as usize];
        e.set_hash(hash);
        e.id_off = id_off;
        e.id_len = id_len;
        e.flags |= DELIVERED;
        Ok(())
    }

    /// What was delivered under `key`, if anything.
    pub fn get(&self, key: &[u8]) -> Option<Delivered<'_>> {
        let e = &self.entries[self.find(key)? as usize];
        (e.flags & DELIVERED != 0).then(|| self.delivered(e))
    }

    /// Marks `key` as seen in this run with content `hash` and says how it
    /// compares with what was delivered. Keys not delivered before are added
    /// (not delivered) so a second occurrence is caught as a duplicate.
    pub fn observe(&mut self, key: &[u8], hash: RowHash) -> Result<Observation, SnapshotFull> {
        let Some(idx) = self.find(key) else {
            let idx = self.push_key(key)?;
            self.entries[idx as usize].flags = SEEN;
            return Ok(Observation::New);
        };
        let e = &mut self.entries[idx as usize];
        if e.flags & SEEN != 0 {
            return Ok(Observation::Duplicate);
        }
        e.flags |= SEEN;
        if e.flags & DELIVERED == 0 {
            return Ok(Observation::New);
        }
        let previous = e.hash();
        Ok(if previous == hash {
            Observation::Same
        } else {
            Observation::Different { previous }
        })
    }

    /// Delivered keys not seen in this run: the rows that left the model.
    pub fn unseen_delivered(&self) -> impl Iterator<Item = (RowKey, Option<DestId>)> + '_ {
        self.entries
            .iter()
            .filter(|e| e.flags & DELIVERED != 0 && e.flags & SEEN == 0)
            .map(|e| {
                let key = RowKey::from_bytes(self.key_bytes(e));
                let id = self.delivered(e).dest_id.map(DestId::from_bytes);
                (key, id)
            })
    }

    /// Every delivered row, in insertion order.
    pub fn iter_delivered(&self) -> impl Iterator<Item = (&[u8], Delivered<'_>)> + '_ {
        self.entries
            .iter()
            .filter(|e| e.flags & DELIVERED != 0)
            .map(|e| (self.key_bytes(e), self.delivered(e)))
    }

    fn delivered(&self, e: &Entry) -> Delivered<'_> {
        let dest_id = (e.id_len != NO_ID)
            .then(|| &self.ids[e.id_off as usize..(e.id_off + e.id_len) as usize]);
        Delivered {
            hash: e.hash(),
            dest_id,
        }
    }

    fn key_bytes(&self, e: &Entry) -> &[u8] {
        &self.keys[e.key_off as usize..(e.key_off + e.key_len) as usize]
    }

    fn find(&self, key: &[u8]) -> Option<u32> {
        let h = xxh3_64(key);
        self.index
            .find(h, |&i| self.key_bytes(&self.entries[i as usize]) == key)
            .copied()
    }

    fn push_key(&mut self, key: &[u8]) -> Result<u32, SnapshotFull> {
        let idx = u32::try_from(self.entries.len())
            .ok()
            .filter(|&i| i != u32::MAX)
            .ok_or(SnapshotFull { what: "keys" })?;
        let (key_off, key_len) = append(&mut self.keys, key, "key bytes")?;
        self.entries.push(Entry {
            key_off,
            key_len,
            id_off: 0,
            id_len: NO_ID,
            hash: [0, 0],
            flags: 0,
        });
        let (keys, entries) = (&self.keys, &self.entries);
        let hasher = |&i: &u32| {
            let e = &entries[i as usize];
            xxh3_64(&keys[e.key_off as usize..(e.key_off + e.key_len) as usize])
        };
        self.index.insert_unique(xxh3_64(key), idx, hasher);
        Ok(idx)
    }

    fn push_id(&mut self, id: &[u8]) -> Result<(u32, u32), SnapshotFull> {
        let (off, len) = append(&mut self.ids, id, "destination ids")?;
        if len == NO_ID {
            return Err(SnapshotFull {
                what: "destination ids",
            });
        }
        Ok((off, len))
    }
}

fn append(
    arena: &mut Vec<u8>,
    bytes: &[u8],
    what: &'static str,
) -> Result<(u32, u32), SnapshotFull> {
    let full = SnapshotFull { what };
    let off = u32::try_from(arena.len()).map_err(|_| full.clone())?;
    let len = u32::try_from(bytes.len()).map_err(|_| full.clone())?;
    off.checked_add(len).ok_or(full)?;
    arena.extend_from_slice(bytes);
    Ok((off, len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_runtime::Value;

    fn key(i: i64) -> RowKey {
        RowKey::from_values(&[Value::Integer(i)])
    }

    #[test]
    fn entry_stays_compact() {
        assert_eq!(std::mem::size_of::<Entry>(), 40);
    }

    #[test]
    fn observe_classifies() {
        let mut s = Snapshot::new();
        s.insert_delivered(key(1).as_bytes(), RowHash(10), None)
            .unwrap();
        s.insert_delivered(key(2).as_bytes(), RowHash(20), Some(b"id2"))
            .unwrap();
        assert_eq!(
            s.observe(key(1).as_bytes(), RowHash(10)).unwrap(),
            Observation::Same
        );
        assert_eq!(
            s.observe(key(2).as_bytes(), RowHash(21)).unwrap(),
            Observation::Different {
                previous: RowHash(20)
            }
        );
        assert_eq!(
            s.observe(key(3).as_bytes(), RowHash(30)).unwrap(),
            Observation::New
        );
        assert_eq!(
            s.observe(key(3).as_bytes(), RowHash(30)).unwrap(),
            Observation::Duplicate
        );
        assert_eq!(
            s.observe(key(1).as_bytes(), RowHash(10)).unwrap(),
            Observation::Duplicate
        );
        assert_eq!(s.delivered_len(), 2);
        assert!(s.get(key(3).as_bytes()).is_none());
        assert_eq!(s.get(key(2).as_bytes()).unwrap().dest_id, Some(&b"id2"[..]));
    }

    #[test]
    fn unseen_delivered_are_removed() {
        let mut s = Snapshot::new();
        for i in 0..5 {
            let id = DestId::from_value(&Value::Integer(i * 100));
            s.insert_delivered(key(i).as_bytes(), RowHash(i as u128), Some(id.as_bytes()))
                .unwrap();
        }
        for i in [0, 2, 4] {
            s.observe(key(i).as_bytes(), RowHash(i as u128)).unwrap();
        }
        let removed: Vec<_> = s.unseen_delivered().collect();
        assert_eq!(removed.len(), 2);
        assert_eq!(removed[0].0, key(1));
        assert_eq!(
            removed[0].1.as_ref().unwrap().to_value().unwrap(),
            Value::Integer(100)
        );
        assert_eq!(removed[1].0, key(3));
    }

    #[test]
    fn reinserting_overwrites() {
        let mut s = Snapshot::new();
        s.insert_delivered(b"k", RowHash(1), Some(b"a")).unwrap();
        s.insert_delivered(b"k", RowHash(2), None).unwrap();
        assert_eq!(s.len(), 1);
        let d = s.get(b"k").unwrap();
        assert_eq!(d.hash, RowHash(2));
        assert_eq!(d.dest_id, None);
    }
}
