//! The map of what a sync delivered: primary key → content hash and
//! destination id, plus the per-run "seen" marks the diff needs. Its memory
//! is bounded whatever the model's size: it keeps at most
//! [`memory_keys`] keys in memory and spills the rest to disk.
//!
//! Two tiers, a key in exactly one of them:
//! - **In memory** (the hot tier), laid out so 1,000,000 keys take tens of
//!   megabytes rather than the hundreds a `HashMap<Vec<u8>, (String,
//!   Option<String>)>` would: every key's bytes live back to back in one
//!   arena (`keys`), every destination id in another (`ids`), so there is no
//!   allocation per key; `entries` holds fixed 40-byte records (offsets,
//!   lengths, the 16-byte hash as two words, flags); `index` is a swiss table
//!   of 4-byte entry numbers, hashed by key bytes.
//! - **On disk** (the spill): when the hot tier reaches [`memory_keys`] keys
//!   (a state-store load or a run that meets that many new keys), all of it
//!   moves, sorted by key, into a private temporary SQLite database (a
//!   B-tree keyed by the key bytes, deleted when the snapshot is dropped,
//!   SQLite page cache capped at [`SPILL_CACHE_KIB`]) and the hot tier starts
//!   empty again with its allocation kept. Each spilled key keeps an ordinal;
//!   its "seen in this run" mark is one bit in memory (`seen`), so a rerun
//!   writes nothing to the spill. Lookups there are exact (the key bytes are
//!   the B-tree's key: no fingerprint, no collision to resolve), and are
//!   skipped for a key greater than every spilled key, so a first run whose
//!   model arrives in key order never reads the spill at all.
//!
//! Memory is therefore the hot tier (at most [`memory_keys`] keys, about 55
//! bytes each with integer keys), SQLite's page cache, and one bit per
//! spilled key. [`Snapshot::heap_bytes`] reports all three as allocated.
//!
//! The classification is the same in both tiers (see
//! `spilled_and_in_memory_classify_alike` below).

use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use hashbrown::HashTable;
use rusqlite::{params, Connection, OptionalExtension};
use xxhash_rust::xxh3::xxh3_64;

use super::hash::RowHash;
use super::key::{DestId, RowKey};

const DELIVERED: u8 = 1;
const SEEN: u8 = 2;
const NO_ID: u32 = u32::MAX;

/// Keys held in memory before the snapshot spills, unless
/// `SLUICE_SNAPSHOT_MEMORY_KEYS` or [`set_memory_keys`] says otherwise:
/// about 220 MB of hot tier with integer keys, so a model of a few million
/// rows never touches the disk.
pub const DEFAULT_MEMORY_KEYS: usize = 4_000_000;

/// SQLite's page cache for the spill, in KiB (SQLite allocates it as pages
/// are read, up to this).
pub const SPILL_CACHE_KIB: i64 = 32 * 1024;

static MEMORY_KEYS: AtomicUsize = AtomicUsize::new(0);

/// Keys the snapshot holds in memory before it spills to disk: set by
/// [`set_memory_keys`], else `SLUICE_SNAPSHOT_MEMORY_KEYS`, else
/// [`DEFAULT_MEMORY_KEYS`].
pub fn memory_keys() -> usize {
    match MEMORY_KEYS.load(Ordering::Relaxed) {
        0 => {
            let n = std::env::var("SLUICE_SNAPSHOT_MEMORY_KEYS")
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|&n| n > 0)
                .unwrap_or(DEFAULT_MEMORY_KEYS);
            MEMORY_KEYS.store(n, Ordering::Relaxed);
            n
        }
        n => n,
    }
}

/// Sets [`memory_keys`] for the snapshots created from now on, in this
/// process (tests force the spill with a tiny value).
pub fn set_memory_keys(keys: usize) {
    MEMORY_KEYS.store(keys.max(1), Ordering::Relaxed);
}

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

/// Why the snapshot cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The in-memory arenas are addressed with 32-bit offsets.
    #[error("the snapshot is too large for one process ({what} exceed 4 GiB); diff this sync in the warehouse instead")]
    Full { what: &'static str },
    /// The spill file could not be written or read.
    #[error("the snapshot's spill to disk failed: {0}")]
    Spill(String),
}

/// The former name of [`SnapshotError`].
pub type SnapshotFull = SnapshotError;

impl From<rusqlite::Error> for SnapshotError {
    fn from(e: rusqlite::Error) -> Self {
        SnapshotError::Spill(e.to_string())
    }
}

impl From<rusqlite::types::FromSqlError> for SnapshotError {
    fn from(e: rusqlite::types::FromSqlError) -> Self {
        SnapshotError::Spill(e.to_string())
    }
}

fn full(what: &'static str) -> SnapshotError {
    SnapshotError::Full { what }
}

/// A delivered row as the snapshot remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered<'a> {
    pub hash: RowHash,
    /// Encoded destination id (see [`DestId`]); owned when it was read from
    /// the spill.
    pub dest_id: Option<Cow<'a, [u8]>>,
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
pub struct Snapshot {
    keys: Vec<u8>,
    ids: Vec<u8>,
    entries: Vec<Entry>,
    index: HashTable<u32>,
    /// Keys in memory before the hot tier spills.
    limit: usize,
    /// Delivered keys, in both tiers.
    delivered: usize,
    spill: Option<Spill>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Self::new()
    }
}

/// Called with each delivered row of the spill: ordinal, key, hash, id.
type SpillVisit<'v> = dyn FnMut(u64, &[u8], RowHash, Option<&[u8]>) + 'v;

/// What a spilled key's row holds.
struct Spilled {
    ord: u64,
    hash: Option<RowHash>,
}

/// The on-disk tier: see the module docs.
struct Spill {
    /// A private temporary database (SQLite deletes its file on close).
    /// Behind a mutex so `&Snapshot` stays `Sync` for lookups by `get`.
    conn: Mutex<Connection>,
    /// Rows spilled so far; the next row's ordinal.
    rows: u64,
    /// The greatest key spilled: a key above it is not in the spill.
    max_key: Vec<u8>,
    /// One bit per spilled row, by ordinal: seen in this run.
    seen: Vec<u64>,
}

impl Spill {
    fn open() -> Result<Self, SnapshotError> {
        let conn = Connection::open("")?;
        conn.pragma_update(None, "journal_mode", "OFF")?;
        conn.pragma_update(None, "synchronous", "OFF")?;
        conn.pragma_update(None, "cache_size", -SPILL_CACHE_KIB)?;
        conn.execute_batch(
            "CREATE TABLE spill (key BLOB PRIMARY KEY, ord INTEGER NOT NULL, hash BLOB, id BLOB) WITHOUT ROWID",
        )?;
        Ok(Spill {
            conn: Mutex::new(conn),
            rows: 0,
            max_key: Vec::new(),
            seen: Vec::new(),
        })
    }

    fn may_hold(&self, key: &[u8]) -> bool {
        self.rows > 0 && key <= self.max_key.as_slice()
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn find(&mut self, key: &[u8]) -> Result<Option<Spilled>, SnapshotError> {
        if !self.may_hold(key) {
            return Ok(None);
        }
        let conn = self.conn.get_mut().unwrap_or_else(|e| e.into_inner());
        let mut stmt = conn.prepare_cached("SELECT ord, hash FROM spill WHERE key = ?1")?;
        let row = stmt
            .query_row([key], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Option<Vec<u8>>>(1)?))
            })
            .optional()?;
        row.map(|(ord, hash)| {
            Ok(Spilled {
                ord: ord as u64,
                hash: hash.map(|h| decode_hash(&h)).transpose()?,
            })
        })
        .transpose()
    }

    fn get(&self, key: &[u8]) -> Result<Option<Delivered<'static>>, SnapshotError> {
        if !self.may_hold(key) {
            return Ok(None);
        }
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT hash, id FROM spill WHERE key = ?1")?;
        let row = stmt
            .query_row([key], |r| {
                Ok((
                    r.get::<_, Option<Vec<u8>>>(0)?,
                    r.get::<_, Option<Vec<u8>>>(1)?,
                ))
            })
            .optional()?;
        match row {
            Some((Some(hash), id)) => Ok(Some(Delivered {
                hash: decode_hash(&hash)?,
                dest_id: id.map(Cow::Owned),
            })),
            _ => Ok(None),
        }
    }

    fn seen(&self, ord: u64) -> bool {
        self.seen
            .get((ord / 64) as usize)
            .is_some_and(|w| w & (1 << (ord % 64)) != 0)
    }

    fn mark_seen(&mut self, ord: u64) {
        let word = (ord / 64) as usize;
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        self.seen[word] |= 1 << (ord % 64);
    }

    /// Every delivered row, in key order, with its ordinal.
    fn for_each_delivered(&self, visit: &mut SpillVisit<'_>) -> Result<(), SnapshotError> {
        if self.rows == 0 {
            return Ok(());
        }
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT ord, key, hash, id FROM spill WHERE hash IS NOT NULL ORDER BY key")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let ord = r.get::<_, i64>(0)? as u64;
            let key = r.get_ref(1)?.as_blob()?;
            let hash = decode_hash(r.get_ref(2)?.as_blob()?)?;
            let id = r.get_ref(3)?.as_blob_or_null()?;
            visit(ord, key, hash, id);
        }
        Ok(())
    }
}

fn decode_hash(bytes: &[u8]) -> Result<RowHash, SnapshotError> {
    RowHash::from_slice(bytes)
        .ok_or_else(|| SnapshotError::Spill(format!("a spilled hash of {} bytes", bytes.len())))
}

impl Snapshot {
    pub fn new() -> Self {
        Self::with_capacity(0, 0)
    }

    /// Pre-sizes for `keys` entries averaging `key_bytes` bytes each (at
    /// most [`memory_keys`] of them), so a load from the state store does
    /// not reallocate.
    pub fn with_capacity(keys: usize, key_bytes: usize) -> Self {
        Self::with_memory_keys(keys, key_bytes, memory_keys())
    }

    /// As [`Snapshot::with_capacity`], spilling above `limit` keys in memory.
    pub fn with_memory_keys(keys: usize, key_bytes: usize, limit: usize) -> Self {
        let limit = limit.max(1);
        let keys = keys.min(limit);
        Snapshot {
            keys: Vec::with_capacity(keys.saturating_mul(key_bytes)),
            ids: Vec::new(),
            entries: Vec::with_capacity(keys),
            index: HashTable::with_capacity(keys),
            limit,
            delivered: 0,
            spill: None,
        }
    }

    /// Number of keys held (delivered ones plus keys first seen this run).
    pub fn len(&self) -> usize {
        self.entries.len() + self.spill.as_ref().map_or(0, |s| s.rows as usize)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of keys recorded as delivered.
    pub fn delivered_len(&self) -> usize {
        self.delivered
    }

    /// Keys spilled to disk (0 while everything fits in memory).
    pub fn spilled_len(&self) -> usize {
        self.spill.as_ref().map_or(0, |s| s.rows as usize)
    }

    /// Bytes allocated on the heap by this snapshot: the in-memory tier's
    /// arenas and index exactly, the spill's seen marks, and the page cache
    /// SQLite holds for the spill.
    pub fn heap_bytes(&self) -> usize {
        self.keys.capacity()
            + self.ids.capacity()
            + self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.index.allocation_size()
            + self.spill.as_ref().map_or(0, |s| {
                s.seen.capacity() * std::mem::size_of::<u64>() + spill_cache_bytes(&s.conn())
            })
    }

    /// Records a delivered row (when loading from the state store). A key
    /// inserted twice keeps the last hash and id.
    pub fn insert_delivered(
        &mut self,
        key: &[u8],
        hash: RowHash,
        dest_id: Option<&[u8]>,
    ) -> Result<(), SnapshotError> {
        let idx = match self.find(key) {
            Some(idx) => idx,
            None => {
                if let Some(spill) = self.spill.as_mut() {
                    if let Some(found) = spill.find(key)? {
                        if found.hash.is_none() {
                            self.delivered += 1;
                        }
                        let conn = spill.conn.get_mut().unwrap_or_else(|e| e.into_inner());
                        conn.prepare_cached("UPDATE spill SET hash = ?2, id = ?3 WHERE key = ?1")?
                            .execute(params![key, &hash.0.to_be_bytes()[..], dest_id])?;
                        return Ok(());
                    }
                }
                self.push_key(key)?
            }
        };
        let (id_off, id_len) = match dest_id {
            Some(id) => self.push_id(id)?,
            None => (0, NO_ID),
        };
        let e = &mut self.entries[idx as usize];
        e.set_hash(hash);
        e.id_off = id_off;
        e.id_len = id_len;
        if e.flags & DELIVERED == 0 {
            self.delivered += 1;
        }
        e.flags |= DELIVERED;
        self.spill_if_full()
    }

    /// What was delivered under `key`, if anything.
    pub fn get(&self, key: &[u8]) -> Result<Option<Delivered<'_>>, SnapshotError> {
        if let Some(idx) = self.find(key) {
            let e = &self.entries[idx as usize];
            return Ok((e.flags & DELIVERED != 0).then(|| self.delivered(e)));
        }
        match &self.spill {
            Some(spill) => spill.get(key),
            None => Ok(None),
        }
    }

    /// Marks `key` as seen in this run with content `hash` and says how it
    /// compares with what was delivered. Keys not delivered before are added
    /// (not delivered) so a second occurrence is caught as a duplicate.
    pub fn observe(&mut self, key: &[u8], hash: RowHash) -> Result<Observation, SnapshotError> {
        let Some(idx) = self.find(key) else {
            if let Some(spill) = self.spill.as_mut() {
                if let Some(found) = spill.find(key)? {
                    if spill.seen(found.ord) {
                        return Ok(Observation::Duplicate);
                    }
                    spill.mark_seen(found.ord);
                    return Ok(compare(found.hash, hash));
                }
            }
            let idx = self.push_key(key)?;
            self.entries[idx as usize].flags = SEEN;
            self.spill_if_full()?;
            return Ok(Observation::New);
        };
        let e = &mut self.entries[idx as usize];
        if e.flags & SEEN != 0 {
            return Ok(Observation::Duplicate);
        }
        e.flags |= SEEN;
        Ok(compare((e.flags & DELIVERED != 0).then(|| e.hash()), hash))
    }

    /// Delivered keys not seen in this run: the rows that left the model
    /// (the in-memory ones in insertion order, then the spilled ones in key
    /// order).
    pub fn unseen_delivered(&self) -> Result<Vec<(RowKey, Option<DestId>)>, SnapshotError> {
        let mut out: Vec<(RowKey, Option<DestId>)> = self
            .entries
            .iter()
            .filter(|e| e.flags & DELIVERED != 0 && e.flags & SEEN == 0)
            .map(|e| {
                let key = RowKey::from_bytes(self.key_bytes(e));
                let id = self.delivered(e).dest_id.map(DestId::from_bytes);
                (key, id)
            })
            .collect();
        if let Some(spill) = &self.spill {
            spill.for_each_delivered(&mut |ord, key, _, id| {
                if !spill.seen(ord) {
                    out.push((RowKey::from_bytes(key), id.map(DestId::from_bytes)));
                }
            })?;
        }
        Ok(out)
    }

    /// Visits every delivered row: the in-memory ones in insertion order,
    /// then the spilled ones in key order.
    pub fn for_each_delivered(
        &self,
        mut visit: impl FnMut(&[u8], Delivered<'_>),
    ) -> Result<(), SnapshotError> {
        for e in self.entries.iter().filter(|e| e.flags & DELIVERED != 0) {
            visit(self.key_bytes(e), self.delivered(e));
        }
        if let Some(spill) = &self.spill {
            spill.for_each_delivered(&mut |_, key, hash, id| {
                let dest_id = id.map(Cow::Borrowed);
                visit(key, Delivered { hash, dest_id });
            })?;
        }
        Ok(())
    }

    fn delivered(&self, e: &Entry) -> Delivered<'_> {
        let dest_id = (e.id_len != NO_ID)
            .then(|| Cow::Borrowed(&self.ids[e.id_off as usize..(e.id_off + e.id_len) as usize]));
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

    fn push_key(&mut self, key: &[u8]) -> Result<u32, SnapshotError> {
        let idx = u32::try_from(self.entries.len())
            .ok()
            .filter(|&i| i != u32::MAX)
            .ok_or(full("keys"))?;
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

    fn push_id(&mut self, id: &[u8]) -> Result<(u32, u32), SnapshotError> {
        let (off, len) = append(&mut self.ids, id, "destination ids")?;
        if len == NO_ID {
            return Err(full("destination ids"));
        }
        Ok((off, len))
    }

    fn spill_if_full(&mut self) -> Result<(), SnapshotError> {
        if self.entries.len() >= self.limit {
            self.spill_hot()?;
        }
        Ok(())
    }

    /// Moves every in-memory key to the spill, in key order, and empties
    /// the hot tier (keeping its allocation for the keys to come).
    fn spill_hot(&mut self) -> Result<(), SnapshotError> {
        let mut spill = match self.spill.take() {
            Some(spill) => spill,
            None => Spill::open()?,
        };
        let written = self.write_hot(&mut spill);
        self.spill = Some(spill);
        written?;
        self.keys.clear();
        self.ids.clear();
        self.entries.clear();
        self.index.clear();
        Ok(())
    }

    fn write_hot(&self, spill: &mut Spill) -> Result<(), SnapshotError> {
        let mut order: Vec<u32> = (0..self.entries.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| {
            self.key_bytes(&self.entries[a as usize])
                .cmp(self.key_bytes(&self.entries[b as usize]))
        });
        let mut next = spill.rows;
        let mut seen = Vec::new();
        let conn = spill.conn.get_mut().unwrap_or_else(|e| e.into_inner());
        let tx = conn.transaction()?;
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO spill (key, ord, hash, id) VALUES (?1, ?2, ?3, ?4)")?;
            for &i in &order {
                let e = &self.entries[i as usize];
                let delivered = e.flags & DELIVERED != 0;
                let hash = delivered.then(|| e.hash().0.to_be_bytes());
                let id = delivered.then(|| self.delivered(e).dest_id).flatten();
                insert.execute(params![
                    self.key_bytes(e),
                    next as i64,
                    hash.as_ref().map(|h| &h[..]),
                    id.as_deref(),
                ])?;
                if e.flags & SEEN != 0 {
                    seen.push(next);
                }
                next += 1;
            }
        }
        tx.commit()?;
        if let Some(&last) = order.last() {
            let last = self.key_bytes(&self.entries[last as usize]);
            if last > spill.max_key.as_slice() {
                spill.max_key = last.to_vec();
            }
        }
        spill.rows = next;
        spill.seen.resize(next.div_ceil(64) as usize, 0);
        for ord in seen {
            spill.mark_seen(ord);
        }
        Ok(())
    }
}

fn compare(delivered: Option<RowHash>, hash: RowHash) -> Observation {
    match delivered {
        None => Observation::New,
        Some(previous) if previous == hash => Observation::Same,
        Some(previous) => Observation::Different { previous },
    }
}

/// The page cache SQLite holds for the spill's connection.
fn spill_cache_bytes(conn: &Connection) -> usize {
    let (mut current, mut high) = (0, 0);
    // SAFETY: the handle is the open connection `conn` borrows, and the
    // two out-pointers are valid for the call.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_db_status(
            conn.handle(),
            rusqlite::ffi::SQLITE_DBSTATUS_CACHE_USED,
            &mut current,
            &mut high,
            0,
        )
    };
    if rc == rusqlite::ffi::SQLITE_OK {
        usize::try_from(current).unwrap_or(0)
    } else {
        0
    }
}

fn append(
    arena: &mut Vec<u8>,
    bytes: &[u8],
    what: &'static str,
) -> Result<(u32, u32), SnapshotError> {
    let off = u32::try_from(arena.len()).map_err(|_| full(what))?;
    let len = u32::try_from(bytes.len()).map_err(|_| full(what))?;
    off.checked_add(len).ok_or(full(what))?;
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

    fn id(i: i64) -> DestId {
        DestId::from_value(&Value::Integer(i * 100))
    }

    #[test]
    fn entry_stays_compact() {
        assert_eq!(std::mem::size_of::<Entry>(), 40);
    }

    #[test]
    fn observe_classifies() {
        let mut s = Snapshot::with_memory_keys(0, 0, 1000);
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
        assert!(s.get(key(3).as_bytes()).unwrap().is_none());
        assert_eq!(
            s.get(key(2).as_bytes())
                .unwrap()
                .unwrap()
                .dest_id
                .as_deref(),
            Some(&b"id2"[..])
        );
    }

    #[test]
    fn unseen_delivered_are_removed() {
        let mut s = Snapshot::with_memory_keys(0, 0, 1000);
        for i in 0..5 {
            s.insert_delivered(
                key(i).as_bytes(),
                RowHash(i as u128),
                Some(id(i).as_bytes()),
            )
            .unwrap();
        }
        for i in [0, 2, 4] {
            s.observe(key(i).as_bytes(), RowHash(i as u128)).unwrap();
        }
        let removed = s.unseen_delivered().unwrap();
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
        let mut s = Snapshot::with_memory_keys(0, 0, 1000);
        s.insert_delivered(b"k", RowHash(1), Some(b"a")).unwrap();
        s.insert_delivered(b"k", RowHash(2), None).unwrap();
        assert_eq!(s.len(), 1);
        let d = s.get(b"k").unwrap().unwrap();
        assert_eq!(d.hash, RowHash(2));
        assert_eq!(d.dest_id, None);
    }

    #[test]
    fn reinserting_a_spilled_key_overwrites_it_in_the_spill() {
        let mut s = Snapshot::with_memory_keys(0, 0, 2);
        s.insert_delivered(b"k", RowHash(1), Some(b"a")).unwrap();
        s.insert_delivered(b"l", RowHash(3), None).unwrap();
        assert_eq!(s.spilled_len(), 2);
        s.insert_delivered(b"k", RowHash(2), Some(b"b")).unwrap();
        assert_eq!((s.len(), s.delivered_len()), (2, 2));
        let d = s.get(b"k").unwrap().unwrap();
        assert_eq!(
            (d.hash, d.dest_id.as_deref()),
            (RowHash(2), Some(&b"b"[..]))
        );
        assert_eq!(
            s.observe(b"k", RowHash(2)).unwrap(),
            Observation::Same,
            "the spilled key was updated, not added again"
        );
        assert_eq!(s.observe(b"k", RowHash(2)).unwrap(), Observation::Duplicate);
    }

    /// One run's worth of work on a snapshot that holds `limit` keys in
    /// memory: a load of delivered keys (some with ids), then a model with
    /// unchanged, changed, new and duplicate keys, out of key order, then
    /// what left the model. Returns everything the snapshot said.
    fn scenario(limit: usize) -> (Vec<Observation>, Vec<String>, Vec<String>, usize, usize) {
        let mut s = Snapshot::with_memory_keys(40, 9, limit);
        for i in 0..40 {
            let dest = (i % 3 != 0).then(|| id(i));
            s.insert_delivered(
                key(i).as_bytes(),
                RowHash(i as u128),
                dest.as_ref().map(DestId::as_bytes),
            )
            .unwrap();
        }
        // Model: descending odd keys (half changed), new keys 100..110 in
        // key order, duplicates of delivered, spilled and new keys, a new
        // key below every delivered one, more new keys out of order.
        let mut model: Vec<(i64, u128)> = Vec::new();
        for i in (1..40).rev().step_by(2) {
            let h = if i % 4 == 1 {
                i as u128 + 1000
            } else {
                i as u128
            };
            model.push((i, h));
        }
        model.extend((100..110).map(|i| (i, 7)));
        model.extend([(5, 5), (39, 39), (100, 7), (105, 8), (-1, 1), (-1, 1)]);
        model.extend([(207, 1), (203, 1), (205, 1), (203, 2), (0, 0), (0, 0)]);
        let observed = model
            .iter()
            .map(|&(i, h)| s.observe(key(i).as_bytes(), RowHash(h)).unwrap())
            .collect();
        let mut removed: Vec<String> = s
            .unseen_delivered()
            .unwrap()
            .into_iter()
            .map(|(k, d)| format!("{k:?} {:?}", d.map(|d| d.as_bytes().to_vec())))
            .collect();
        removed.sort();
        let mut got: Vec<String> = (-2..210)
            .filter_map(|i| {
                let d = s.get(key(i).as_bytes()).unwrap()?;
                Some(format!("{i} {:?} {:?}", d.hash, d.dest_id))
            })
            .collect();
        let mut visited = Vec::new();
        s.for_each_delivered(|k, d| visited.push(format!("{k:?} {:?} {:?}", d.hash, d.dest_id)))
            .unwrap();
        assert_eq!(visited.len(), s.delivered_len());
        got.push(format!("spilled {}", s.spilled_len() > 0));
        (observed, removed, got, s.len(), s.delivered_len())
    }

    #[test]
    fn spilled_and_in_memory_classify_alike() {
        let (observed, removed, mut got, len, delivered) = scenario(10_000);
        assert_eq!(got.pop().unwrap(), "spilled false");
        assert_eq!(delivered, 40);
        assert_eq!(len, 40 + 10 + 1 + 3);
        assert_eq!(removed.len(), 19, "the even keys left, all but 0");
        assert!(observed.contains(&Observation::Duplicate));
        assert!(observed.contains(&Observation::Different {
            previous: RowHash(37)
        }));
        for limit in [1, 2, 3, 7, 16, 39, 40, 41, 60] {
            let (o, r, mut g, l, d) = scenario(limit);
            let spilled = g.pop().unwrap();
            if limit <= 40 {
                assert_eq!(spilled, "spilled true", "limit {limit}");
            }
            assert_eq!(o, observed, "observations with {limit} keys in memory");
            assert_eq!(r, removed, "removed keys with {limit} keys in memory");
            assert_eq!(g, got, "lookups with {limit} keys in memory");
            assert_eq!(
                (l, d),
                (len, delivered),
                "sizes with {limit} keys in memory"
            );
        }
    }

    #[test]
    fn the_spill_bounds_memory_and_heap_bytes_says_so() {
        const N: i64 = 200_000;
        let mut s = Snapshot::with_memory_keys(N as usize, 10, 10_000);
        for i in 0..N {
            s.insert_delivered(key(i).as_bytes(), RowHash(i as u128), None)
                .unwrap();
        }
        assert_eq!((s.len(), s.delivered_len()), (N as usize, N as usize));
        assert!(s.spilled_len() >= 190_000);
        let bytes = s.heap_bytes();
        // 10,000 keys in memory (~600 KB), 25 KB of seen marks, and SQLite's
        // page cache (at most 32 MiB; far less for this many rows).
        assert!(bytes < 12_000_000, "{bytes} bytes");
        assert!(bytes > 400_000, "{bytes} bytes");
        for i in (0..N).step_by(7) {
            assert_eq!(
                s.observe(key(i).as_bytes(), RowHash(i as u128)).unwrap(),
                Observation::Same
            );
        }
        let observed = (0..N).step_by(7).count();
        assert_eq!(s.unseen_delivered().unwrap().len(), N as usize - observed);
    }
}
