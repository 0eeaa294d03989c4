//! The keyspace as commands see it: typed values with expiry and revisions, over the tables'
//! rows as [`Layers`] present them (recent changes in memory over `sm.redb`).
//!
//! # Tables (in `sm.redb`)
//! - `keys`: key → record: type tag (1 byte), expiry deadline in ms (i64 LE, `i64::MAX` = none),
//!   revision (u64 LE: log index of the last change), then the payload (a string's bytes; a
//!   hash's field count as u64 LE).
//! - `fields`: hash fields, keyed by `u32 BE key length ‖ key ‖ field`, so one hash's fields are
//!   one contiguous, ordered range.
//! - The collections' rows, keyed like hash fields (`u32 BE key length ‖ key ‖ sub-key`) in one
//!   table per [`Rows`]: `list_items` (a list's elements by position), `set_members`,
//!   `zset_scores` (member → score) and `zset_order` (score ‖ member → score, in score order). What a
//!   sub-key means is the type's family's (`store::commands`); a collection's record carries its
//!   element count (u64 LE) and whatever else its family keeps there.
//! - `expiry`: `deadline (u64 BE, sign-flipped) ‖ key` → empty, every key with a deadline in
//!   deadline order, so active expiry finds due keys without a scan.
//! - The [`Catalog`]s, replicated like keys and left by FLUSHALL: `scripts` (a script's SHA-1
//!   in lowercase hex → its body: the script cache, so EVALSHA finds a script on every node),
//!   `libraries` (a function library's name → its code), `functions` (a function's name →
//!   its library's name) and `settings` (a data-type parameter's name → its value).
//!
//! # Time
//! A [`Keyspace`] carries the time it runs at. In apply that is the time the leader stamped into
//! the log entry, never the applying node's clock, so every replica expires the same keys. A
//! key whose deadline is at or before that time is absent to every command, and a write that
//! meets it deletes it for good.
//!
//! # Must not
//! Parse commands or format replies: that is `store::commands`.

use std::ops::Bound;

use bytes::Bytes;

use crate::store::layers::{Layers, Table};

/// The 64-bit hash that orders keys for SCAN (FNV-1a: fixed forever, the same on every node).
pub fn scan_hash(key: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in key {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn scan_index_key(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + key.len());
    out.extend_from_slice(&scan_hash(key).to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// "No expiry" in a record.
const NO_EXPIRY: i64 = i64::MAX;
const HEADER_LEN: usize = 17;

/// The types a key can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A string (also integers and floats, as text).
    String,
    /// A hash of fields to strings.
    Hash,
    /// A list of strings.
    List,
    /// A set of strings.
    Set,
    /// A set of strings ordered by score.
    ZSet,
}

impl Kind {
    fn tag(self) -> u8 {
        match self {
            Kind::String => 0,
            Kind::Hash => 1,
            Kind::List => 2,
            Kind::Set => 3,
            Kind::ZSet => 4,
        }
    }

    fn from_tag(tag: u8) -> Result<Kind, StoreError> {
        match tag {
            0 => Ok(Kind::String),
            1 => Ok(Kind::Hash),
            2 => Ok(Kind::List),
            3 => Ok(Kind::Set),
            4 => Ok(Kind::ZSet),
            other => Err(StoreError::Corrupt(format!("unknown type tag {other}"))),
        }
    }

    /// The name TYPE answers.
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Hash => "hash",
            Kind::List => "list",
            Kind::Set => "set",
            Kind::ZSet => "zset",
        }
    }
}

impl Kind {
    /// The rows commands address for this type (none for a string or a hash, which have
    /// their own methods).
    pub fn element_rows(self) -> &'static [Rows] {
        match self {
            Kind::String | Kind::Hash => &[],
            Kind::List => &[Rows::ListItems],
            Kind::Set => &[Rows::SetMembers],
            Kind::ZSet => &[Rows::ZsetScores, Rows::ZsetOrder],
        }
    }
}

/// The tables of collections' rows that commands address directly (see [`Keyspace::element`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rows {
    /// A list's elements, by position.
    ListItems,
    /// A set's members.
    SetMembers,
    /// A sorted set's members → scores.
    ZsetScores,
    /// A sorted set's members in score order.
    ZsetOrder,
}

impl Rows {
    fn table(self) -> Table {
        match self {
            Rows::ListItems => Table::ListItems,
            Rows::SetMembers => Table::SetMembers,
            Rows::ZsetScores => Table::ZsetScores,
            Rows::ZsetOrder => Table::ZsetOrder,
        }
    }

    /// Whether its rows are an index (no values).
    fn is_index(self) -> bool {
        matches!(self, Rows::SetMembers)
    }
}

/// One key's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// What it holds.
    pub kind: Kind,
    /// Absolute deadline in ms since the epoch, if any.
    pub expire_at_ms: Option<i64>,
    /// Log index of its last change.
    pub revision: u64,
    /// A string's bytes, or a collection's element count (u64 LE) and what its family keeps
    /// after it.
    pub payload: Bytes,
}

impl Record {
    fn decode(raw: &[u8]) -> Result<Record, StoreError> {
        if raw.len() < HEADER_LEN {
            return Err(StoreError::Corrupt("short key record".into()));
        }
        let kind = Kind::from_tag(raw[0])?;
        let expire = i64::from_le_bytes(raw[1..9].try_into().expect("8 bytes"));
        let revision = u64::from_le_bytes(raw[9..17].try_into().expect("8 bytes"));
        Ok(Record {
            kind,
            expire_at_ms: (expire != NO_EXPIRY).then_some(expire),
            revision,
            payload: Bytes::copy_from_slice(&raw[HEADER_LEN..]),
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.payload.len());
        out.push(self.kind.tag());
        out.extend_from_slice(&self.expire_at_ms.unwrap_or(NO_EXPIRY).to_le_bytes());
        out.extend_from_slice(&self.revision.to_le_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// A hash's field count.
    pub fn field_count(&self) -> u64 {
        self.element_count()
    }

    /// A collection's element count.
    pub fn element_count(&self) -> u64 {
        self.payload
            .get(..8)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
}

/// A storage failure: stops the node (it is not the command's fault).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// redb failed.
    #[error("storage: {0}")]
    Storage(String),
    /// A record could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// A write reached a read-only view (a bug in command routing).
    #[error("write on a read-only view")]
    ReadOnly,
}

/// Result of keyspace operations.
pub type StoreResult<T> = Result<T, StoreError>;

fn expiry_key(deadline_ms: i64, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + key.len());
    out.extend_from_slice(&((deadline_ms as u64) ^ (1 << 63)).to_be_bytes());
    out.extend_from_slice(key);
    out
}

fn field_prefix(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + key.len());
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// The first byte string after every string that starts with `prefix` (None: there is none).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn field_key(key: &[u8], field: &[u8]) -> Vec<u8> {
    let mut out = field_prefix(key);
    out.extend_from_slice(field);
    out
}

/// Access to the keyspace at one moment. Implemented by [`View`], read-only on the read path and
/// writing in apply; commands are written once against this trait.
pub trait Keyspace {
    /// The time this runs at, in ms since the epoch.
    fn now_ms(&self) -> i64;
    /// The live record of `key` (expired keys are absent).
    fn record(&mut self, key: &[u8]) -> StoreResult<Option<Record>>;
    /// A hash field's value.
    fn field(&mut self, key: &[u8], field: &[u8]) -> StoreResult<Option<Bytes>>;
    /// A hash's fields in field order, from after `after` (exclusive), at most `limit`.
    fn fields(
        &mut self,
        key: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> StoreResult<Vec<(Bytes, Bytes)>>;
    /// Keys in key order after `after` (exclusive), at most `limit`, expired ones included
    /// (callers filter with [`Keyspace::record`]).
    fn keys_after(&mut self, after: Option<&[u8]>, limit: usize) -> StoreResult<Vec<Bytes>>;
    /// One SCAN step: stored keys whose [`scan_hash`] is at least `cursor`, in hash order,
    /// about `count` of them (never splitting keys of equal hash), expired ones included;
    /// and the next cursor (0 when the iteration is complete). Every key present for the
    /// whole iteration is returned at least once.
    fn scan(&mut self, cursor: u64, count: usize) -> StoreResult<(Vec<Bytes>, u64)>;
    /// A seed for commands that pick at random (RANDOMKEY, HRANDFIELD): random on the read
    /// path, derived from the log index in apply so every replica picks the same.
    fn random_seed(&mut self) -> u64;
    /// Number of stored keys (expired but not yet removed ones included).
    fn stored_key_count(&mut self) -> StoreResult<u64>;
    /// Number of stored keys whose deadline has passed.
    fn expired_key_count(&mut self) -> StoreResult<u64>;

    /// Stores a string, replacing any value; `expire_at_ms` is the new deadline.
    fn put_string(
        &mut self,
        key: &[u8],
        value: &[u8],
        expire_at_ms: Option<i64>,
    ) -> StoreResult<()>;
    /// Sets or clears a live key's deadline; false when the key does not exist.
    fn set_expiry(&mut self, key: &[u8], expire_at_ms: Option<i64>) -> StoreResult<bool>;
    /// Removes a key of any type; false when it did not exist (or had expired).
    fn delete(&mut self, key: &[u8]) -> StoreResult<bool>;
    /// Sets a hash field, creating the hash; true when the field is new.
    fn put_field(&mut self, key: &[u8], field: &[u8], value: &[u8]) -> StoreResult<bool>;
    /// Removes a hash field (and the hash when it was the last); true when it existed.
    fn delete_field(&mut self, key: &[u8], field: &[u8]) -> StoreResult<bool>;
    /// Removes every key.
    fn flush(&mut self) -> StoreResult<()>;

    /// Creates or updates a collection's record: `key` holds `kind` with `meta` as its payload
    /// (its element count first), keeping a live key's deadline. A command changing a
    /// collection's rows writes its record too, which moves its revision (WATCH).
    fn put_collection(&mut self, key: &[u8], kind: Kind, meta: &[u8]) -> StoreResult<()>;
    /// One row of `key`'s collection (an index row reads as empty). Callers look the key's
    /// record up first: rows of an expired key are not hidden here.
    fn element(&mut self, rows: Rows, key: &[u8], sub: &[u8]) -> StoreResult<Option<Bytes>>;
    /// Calls `visit` with the rows of `key`'s collection whose sub-keys lie between `start`
    /// and `end`, in sub-key order or (`reverse`) from the last, while it returns true.
    fn visit_elements(
        &mut self,
        rows: Rows,
        key: &[u8],
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        reverse: bool,
        visit: &mut dyn FnMut(&[u8], &Bytes) -> bool,
    ) -> StoreResult<()>;
    /// Writes a row of `key`'s collection; true when it is new.
    fn put_element(
        &mut self,
        rows: Rows,
        key: &[u8],
        sub: &[u8],
        value: &[u8],
    ) -> StoreResult<bool>;
    /// Removes a row of `key`'s collection; true when it existed.
    fn remove_element(&mut self, rows: Rows, key: &[u8], sub: &[u8]) -> StoreResult<bool>;

    /// A catalog entry.
    fn catalog_get(&mut self, catalog: Catalog, name: &[u8]) -> StoreResult<Option<Bytes>>;
    /// Every entry of a catalog, in name order.
    fn catalog_entries(&mut self, catalog: Catalog) -> StoreResult<Vec<(Bytes, Bytes)>>;
    /// Writes a catalog entry.
    fn catalog_put(&mut self, catalog: Catalog, name: &[u8], value: &[u8]) -> StoreResult<()>;
    /// Removes a catalog entry; true when it existed.
    fn catalog_remove(&mut self, catalog: Catalog, name: &[u8]) -> StoreResult<bool>;
    /// Empties a catalog.
    fn catalog_clear(&mut self, catalog: Catalog) -> StoreResult<()>;

    /// Records a keyspace event of `class` (`store::notify`) on `key`, published to this node's
    /// subscribers once the entry is applied if `notify-keyspace-events` asks for it; nothing
    /// on the read path.
    fn notify(&mut self, class: u32, event: &'static str, key: &[u8]) {
        let _ = (class, event, key);
    }
}

/// Replicated state beside the keys, which FLUSHALL leaves: Redis's script cache and function
/// libraries, and the data-type parameters CONFIG SET changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Catalog {
    /// A script's SHA-1 in lowercase hex → its body.
    Scripts,
    /// A function library's name → its code.
    Libraries,
    /// A function's name → its library's name.
    Functions,
    /// A replicated parameter's name → its value (`commands::config`).
    Settings,
}

impl Catalog {
    fn table(self) -> Table {
        match self {
            Catalog::Scripts => Table::Scripts,
            Catalog::Libraries => Table::Libraries,
            Catalog::Functions => Table::Functions,
            Catalog::Settings => Table::Settings,
        }
    }
}

fn is_live(record: &Record, now_ms: i64) -> bool {
    record.expire_at_ms.is_none_or(|deadline| deadline > now_ms)
}

/// The keyspace over one [`Layers`] view: read-only on the read path, writing into the active
/// layer in apply.
pub struct View {
    layers: Layers,
    now_ms: i64,
    /// Log index of the changes being applied (0 on the read path).
    revision: u64,
    random_calls: u64,
    writable: bool,
    /// The record last looked up or written, by key: a command reads a key and then writes
    /// it, and the write needs the old record again. Kept equal to the row in `keys`.
    recent: Option<(Bytes, Option<Record>)>,
    /// `notify-keyspace-events` as applied, read on the first event.
    notify_flags: Option<u32>,
    /// Keyspace notifications of what was applied: (channel, message), in order.
    events: Vec<(Bytes, Bytes)>,
}

impl View {
    /// A read-only view of `layers` as seen at `now_ms` (the linearizable read path).
    pub fn reader(layers: Layers, now_ms: i64) -> View {
        View {
            layers,
            now_ms,
            revision: 0,
            random_calls: 0,
            writable: false,
            recent: None,
            notify_flags: None,
            events: Vec::new(),
        }
    }

    /// A view that applies changes to `layers`' active layer; set the time with [`View::at`].
    pub fn writer(layers: Layers) -> View {
        View {
            writable: true,
            ..View::reader(layers, 0)
        }
    }

    /// Gives back the layers, with the changes made through this view.
    pub fn into_layers(self) -> Layers {
        self.layers
    }

    /// Sets the time and the log index the next changes happen at.
    pub fn at(&mut self, now_ms: i64, revision: u64) {
        self.now_ms = now_ms;
        self.revision = revision;
    }

    fn writable(&self) -> StoreResult<()> {
        if self.writable {
            Ok(())
        } else {
            Err(StoreError::ReadOnly)
        }
    }

    /// Removes `key` if its deadline is at or before the current time; true when it did.
    pub fn expire_if_due(&mut self, key: &[u8]) -> StoreResult<bool> {
        self.writable()?;
        match self.raw_record(key)? {
            Some(record) if !is_live(&record, self.now_ms) => {
                self.remove_all(key, &record)?;
                self.notify(crate::store::notify::EXPIRED, "expired", key);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The keyspace notifications recorded since the last call, in order.
    pub fn take_events(&mut self) -> Vec<(Bytes, Bytes)> {
        std::mem::take(&mut self.events)
    }

    /// Keys whose deadline is at or before `now_ms`, earliest first, at most `limit`.
    pub fn due_keys(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<Bytes>> {
        let mut out = Vec::new();
        self.visit_due(now_ms, |key| {
            if out.len() >= limit {
                return false;
            }
            out.push(Bytes::copy_from_slice(key));
            true
        })?;
        Ok(out)
    }

    /// Calls `visit` with each key due at `now_ms`, earliest first, while it returns true.
    fn visit_due(&self, now_ms: i64, mut visit: impl FnMut(&[u8]) -> bool) -> StoreResult<()> {
        let end = expiry_key(now_ms, &[]);
        self.layers
            .range(Table::Expiry, Bound::Unbounded, Bound::Unbounded, |k, _| {
                if k.len() < 8 || k[..8] > end[..8] {
                    return Ok(false);
                }
                Ok(visit(&k[8..]))
            })
    }

    fn raw_record(&mut self, key: &[u8]) -> StoreResult<Option<Record>> {
        if let Some((recent_key, record)) = &self.recent
            && recent_key.as_ref() == key
        {
            return Ok(record.clone());
        }
        let record = match self.layers.get(Table::Keys, key)? {
            Some(raw) => Some(Record::decode(&raw)?),
            None => None,
        };
        // Only apply reads a key again to write it; the read path would copy the key for nothing.
        if self.writable {
            self.recent = Some((Bytes::copy_from_slice(key), record.clone()));
        }
        Ok(record)
    }

    /// Stores `key`'s record; `existed` says whether it had one (its caller just read it).
    fn write_record(&mut self, key: &[u8], record: &Record, existed: bool) -> StoreResult<()> {
        self.layers
            .overwrite(Table::Keys, key, record.encode().as_slice(), existed);
        if !existed {
            self.layers
                .insert_index_row(Table::ScanIndex, &scan_index_key(key));
        }
        self.recent = Some((Bytes::copy_from_slice(key), Some(record.clone())));
        Ok(())
    }

    /// Removes a record and everything hanging off it, live or not.
    fn remove_all(&mut self, key: &[u8], record: &Record) -> StoreResult<()> {
        self.recent = None;
        self.layers.remove(Table::Keys, key)?;
        self.layers
            .remove_index_row(Table::ScanIndex, &scan_index_key(key));
        if let Some(deadline) = record.expire_at_ms {
            self.layers
                .remove_index_row(Table::Expiry, &expiry_key(deadline, key));
        }
        let prefix = field_prefix(key);
        let end = prefix_end(&prefix);
        // A hash's fields, or a collection's rows.
        let tables = (record.kind == Kind::Hash)
            .then_some(Table::Fields)
            .into_iter()
            .chain(record.kind.element_rows().iter().map(|rows| rows.table()));
        for table in tables {
            self.layers.remove_range(
                table,
                Bound::Included(&prefix),
                end.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
            )?;
        }
        Ok(())
    }

    /// The record if live; in apply an expired one is removed on the way.
    fn live_record(&mut self, key: &[u8]) -> StoreResult<Option<Record>> {
        match self.raw_record(key)? {
            Some(record) if is_live(&record, self.now_ms) => Ok(Some(record)),
            Some(record) if self.writable => {
                self.remove_all(key, &record)?;
                self.notify(crate::store::notify::EXPIRED, "expired", key);
                Ok(None)
            }
            _ => Ok(None),
        }
    }
}

impl Keyspace for View {
    fn now_ms(&self) -> i64 {
        self.now_ms
    }

    fn record(&mut self, key: &[u8]) -> StoreResult<Option<Record>> {
        self.live_record(key)
    }

    fn field(&mut self, key: &[u8], field: &[u8]) -> StoreResult<Option<Bytes>> {
        if self.live_record(key)?.is_none() {
            return Ok(None);
        }
        self.layers.get(Table::Fields, &field_key(key, field))
    }

    fn fields(
        &mut self,
        key: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> StoreResult<Vec<(Bytes, Bytes)>> {
        if self.live_record(key)?.is_none() {
            return Ok(Vec::new());
        }
        let prefix = field_prefix(key);
        let start = match after {
            Some(after) => {
                let mut start = field_key(key, after);
                start.push(0);
                start
            }
            None => prefix.clone(),
        };
        let end = prefix_end(&prefix);
        let mut out = Vec::new();
        self.layers.range(
            Table::Fields,
            Bound::Included(&start),
            end.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
            |k, v| {
                if out.len() >= limit {
                    return Ok(false);
                }
                out.push((k.slice(prefix.len()..), v.clone()));
                Ok(true)
            },
        )?;
        Ok(out)
    }

    fn keys_after(&mut self, after: Option<&[u8]>, limit: usize) -> StoreResult<Vec<Bytes>> {
        let mut out = Vec::new();
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.layers
            .range(Table::Keys, start, Bound::Unbounded, |k, _| {
                if out.len() >= limit {
                    return Ok(false);
                }
                out.push(k.clone());
                Ok(true)
            })?;
        Ok(out)
    }

    fn scan(&mut self, cursor: u64, count: usize) -> StoreResult<(Vec<Bytes>, u64)> {
        let start = cursor.to_be_bytes();
        let mut out = Vec::new();
        let mut last_hash = None;
        let mut next_cursor = 0;
        self.layers.range(
            Table::ScanIndex,
            Bound::Included(start.as_slice()),
            Bound::Unbounded,
            |k, _| {
                let hash = u64::from_be_bytes(k[..8].try_into().expect("8-byte hash prefix"));
                if out.len() >= count.max(1) && last_hash != Some(hash) {
                    // Resume at this hash next time; equal hashes never straddle two steps.
                    next_cursor = hash.max(1);
                    return Ok(false);
                }
                last_hash = Some(hash);
                out.push(k.slice(8..));
                Ok(true)
            },
        )?;
        Ok((out, next_cursor))
    }

    fn random_seed(&mut self) -> u64 {
        if !self.writable {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            return scan_hash(&nanos.to_le_bytes());
        }
        self.random_calls += 1;
        let mut seed = self.revision.to_le_bytes().to_vec();
        seed.extend_from_slice(&self.random_calls.to_le_bytes());
        scan_hash(&seed)
    }

    fn stored_key_count(&mut self) -> StoreResult<u64> {
        Ok(self.layers.key_count())
    }

    fn expired_key_count(&mut self) -> StoreResult<u64> {
        let mut count = 0;
        self.visit_due(self.now_ms, |_| {
            count += 1;
            true
        })?;
        Ok(count)
    }

    fn put_string(
        &mut self,
        key: &[u8],
        value: &[u8],
        expire_at_ms: Option<i64>,
    ) -> StoreResult<()> {
        self.writable()?;
        let old = self.raw_record(key)?;
        let mut existed = old.is_some();
        if old.is_none() {
            self.notify(crate::store::notify::NEW, "new", key);
        }
        match old {
            Some(old) if old.kind != Kind::String => {
                self.remove_all(key, &old)?;
                existed = false;
            }
            // A string is overwritten in place: only a changed deadline moves in the index.
            Some(Record {
                expire_at_ms: Some(old_deadline),
                ..
            }) if Some(old_deadline) != expire_at_ms => self
                .layers
                .remove_index_row(Table::Expiry, &expiry_key(old_deadline, key)),
            _ => {}
        }
        let record = Record {
            kind: Kind::String,
            expire_at_ms,
            revision: self.revision,
            payload: Bytes::copy_from_slice(value),
        };
        self.write_record(key, &record, existed)?;
        if let Some(deadline) = expire_at_ms {
            self.layers
                .insert_index_row(Table::Expiry, &expiry_key(deadline, key));
        }
        Ok(())
    }

    fn set_expiry(&mut self, key: &[u8], expire_at_ms: Option<i64>) -> StoreResult<bool> {
        self.writable()?;
        let Some(mut record) = self.live_record(key)? else {
            return Ok(false);
        };
        if let Some(old) = record.expire_at_ms {
            self.layers
                .remove_index_row(Table::Expiry, &expiry_key(old, key));
        }
        record.expire_at_ms = expire_at_ms;
        record.revision = self.revision;
        self.write_record(key, &record, true)?;
        if let Some(deadline) = expire_at_ms {
            self.layers
                .insert_index_row(Table::Expiry, &expiry_key(deadline, key));
        }
        Ok(true)
    }

    fn delete(&mut self, key: &[u8]) -> StoreResult<bool> {
        self.writable()?;
        match self.raw_record(key)? {
            Some(record) => {
                let live = is_live(&record, self.now_ms);
                self.remove_all(key, &record)?;
                Ok(live)
            }
            None => Ok(false),
        }
    }

    fn put_field(&mut self, key: &[u8], field: &[u8], value: &[u8]) -> StoreResult<bool> {
        self.writable()?;
        let live = self.live_record(key)?;
        let existed = live.is_some();
        if !existed {
            self.notify(crate::store::notify::NEW, "new", key);
        }
        let mut record = match live {
            Some(record) => record,
            None => Record {
                kind: Kind::Hash,
                expire_at_ms: None,
                revision: self.revision,
                payload: Bytes::copy_from_slice(&0u64.to_le_bytes()),
            },
        };
        let is_new = !self
            .layers
            .insert(Table::Fields, &field_key(key, field), value)?;
        let count = record.field_count() + u64::from(is_new);
        record.payload = Bytes::copy_from_slice(&count.to_le_bytes());
        record.revision = self.revision;
        self.write_record(key, &record, existed)?;
        Ok(is_new)
    }

    fn delete_field(&mut self, key: &[u8], field: &[u8]) -> StoreResult<bool> {
        self.writable()?;
        let Some(mut record) = self.live_record(key)? else {
            return Ok(false);
        };
        let existed = self.layers.remove(Table::Fields, &field_key(key, field))?;
        if existed {
            let count = record.field_count().saturating_sub(1);
            if count == 0 {
                self.remove_all(key, &record)?;
            } else {
                record.payload = Bytes::copy_from_slice(&count.to_le_bytes());
                record.revision = self.revision;
                self.write_record(key, &record, true)?;
            }
        }
        Ok(existed)
    }

    fn flush(&mut self) -> StoreResult<()> {
        self.writable()?;
        self.recent = None;
        self.layers.clear();
        Ok(())
    }

    fn put_collection(&mut self, key: &[u8], kind: Kind, meta: &[u8]) -> StoreResult<()> {
        self.writable()?;
        let live = self.live_record(key)?;
        let existed = live.is_some();
        let record = Record {
            kind,
            expire_at_ms: live.and_then(|record| record.expire_at_ms),
            revision: self.revision,
            payload: Bytes::copy_from_slice(meta),
        };
        if !existed {
            self.notify(crate::store::notify::NEW, "new", key);
        }
        self.write_record(key, &record, existed)
    }

    fn element(&mut self, rows: Rows, key: &[u8], sub: &[u8]) -> StoreResult<Option<Bytes>> {
        self.layers.get(rows.table(), &field_key(key, sub))
    }

    fn visit_elements(
        &mut self,
        rows: Rows,
        key: &[u8],
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        reverse: bool,
        visit: &mut dyn FnMut(&[u8], &Bytes) -> bool,
    ) -> StoreResult<()> {
        let prefix = field_prefix(key);
        let bound = |bound: Bound<&[u8]>| match bound {
            Bound::Included(sub) => Bound::Included(field_key(key, sub)),
            Bound::Excluded(sub) => Bound::Excluded(field_key(key, sub)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let start = match bound(start) {
            Bound::Unbounded => Bound::Included(prefix.clone()),
            other => other,
        };
        let end = match bound(end) {
            Bound::Unbounded => prefix_end(&prefix).map_or(Bound::Unbounded, Bound::Excluded),
            other => other,
        };
        self.layers.range_in(
            rows.table(),
            start.as_ref().map(Vec::as_slice),
            end.as_ref().map(Vec::as_slice),
            reverse,
            |row, value| Ok(visit(&row[prefix.len()..], value)),
        )
    }

    fn put_element(
        &mut self,
        rows: Rows,
        key: &[u8],
        sub: &[u8],
        value: &[u8],
    ) -> StoreResult<bool> {
        self.writable()?;
        let row = field_key(key, sub);
        if rows.is_index() {
            let is_new = self.layers.get(rows.table(), &row)?.is_none();
            if is_new {
                self.layers.insert_index_row(rows.table(), &row);
            }
            return Ok(is_new);
        }
        Ok(!self.layers.insert(rows.table(), &row, value)?)
    }

    fn remove_element(&mut self, rows: Rows, key: &[u8], sub: &[u8]) -> StoreResult<bool> {
        self.writable()?;
        self.layers.remove(rows.table(), &field_key(key, sub))
    }

    fn catalog_get(&mut self, catalog: Catalog, name: &[u8]) -> StoreResult<Option<Bytes>> {
        self.layers.get(catalog.table(), name)
    }

    fn notify(&mut self, class: u32, event: &'static str, key: &[u8]) {
        if !self.writable {
            return;
        }
        let flags = match self.notify_flags {
            Some(flags) => flags,
            None => {
                let flags = self
                    .catalog_get(Catalog::Settings, crate::store::notify::SETTING.as_bytes())
                    .ok()
                    .flatten()
                    .and_then(|text| crate::store::notify::parse_flags(&text))
                    .unwrap_or(0);
                self.notify_flags = Some(flags);
                flags
            }
        };
        self.events
            .extend(crate::store::notify::messages(flags, class, event, key));
    }

    fn catalog_entries(&mut self, catalog: Catalog) -> StoreResult<Vec<(Bytes, Bytes)>> {
        let mut entries = Vec::new();
        self.layers.range(
            catalog.table(),
            Bound::Unbounded,
            Bound::Unbounded,
            |name, value| {
                entries.push((name.clone(), value.clone()));
                Ok(true)
            },
        )?;
        Ok(entries)
    }

    fn catalog_put(&mut self, catalog: Catalog, name: &[u8], value: &[u8]) -> StoreResult<()> {
        self.writable()?;
        if catalog == Catalog::Settings {
            self.notify_flags = None;
        }
        self.layers.insert(catalog.table(), name, value)?;
        Ok(())
    }

    fn catalog_remove(&mut self, catalog: Catalog, name: &[u8]) -> StoreResult<bool> {
        self.writable()?;
        self.layers.remove(catalog.table(), name)
    }

    fn catalog_clear(&mut self, catalog: Catalog) -> StoreResult<()> {
        self.writable()?;
        if catalog == Catalog::Settings {
            self.notify_flags = None;
        }
        self.layers
            .remove_range(catalog.table(), Bound::Unbounded, Bound::Unbounded)
    }
}

/// A keyspace over an in-memory redb for unit tests of commands.
#[cfg(test)]
pub mod testing {
    use std::cell::{Cell, RefCell};

    use redb::ReadableDatabase;
    use redb::backends::InMemoryBackend;

    use super::*;
    use crate::store::layers::{Base, write_layer};

    /// Writes apply like log entries; every other write is then flushed to redb, so commands
    /// read through both an in-memory layer and the redb tables under it.
    pub struct TestStore {
        db: redb::Database,
        layers: RefCell<Layers>,
        writes: Cell<u64>,
    }

    /// An in-memory redb holding the keyspace's (empty) tables.
    pub fn database() -> redb::Database {
        let db = redb::Database::builder()
            .create_with_backend(InMemoryBackend::new())
            .expect("in-memory database");
        let txn = db.begin_write().expect("write");
        crate::store::schema::create_all(&txn).expect("tables");
        txn.commit().expect("commit");
        db
    }

    impl Default for TestStore {
        fn default() -> TestStore {
            let db = database();
            let base = Base::open(&db.begin_read().expect("read")).expect("base");
            TestStore {
                layers: RefCell::new(Layers::new(base).expect("layers")),
                db,
                writes: Cell::new(0),
            }
        }
    }

    impl TestStore {
        /// An empty keyspace.
        pub fn new() -> TestStore {
            TestStore::default()
        }

        /// Runs `f` on a writing view at `now_ms` and log index `revision`, and keeps its changes.
        pub fn write<T>(&self, now_ms: i64, revision: u64, f: impl FnOnce(&mut View) -> T) -> T {
            let mut view = View::writer(self.layers.borrow().clone());
            view.at(now_ms, revision);
            let out = f(&mut view);
            let mut layers = view.into_layers();
            self.writes.set(self.writes.get() + 1);
            if self.writes.get().is_multiple_of(2) {
                let frozen = layers.freeze();
                let txn = self.db.begin_write().expect("write");
                write_layer(&frozen, &txn).expect("write layer");
                txn.commit().expect("commit");
                layers
                    .replace_base(Base::open(&self.db.begin_read().expect("read")).expect("base"));
            }
            *self.layers.borrow_mut() = layers;
            out
        }

        /// A read-only view at `now_ms`.
        pub fn reader(&self, now_ms: i64) -> View {
            View::reader(self.layers.borrow().clone(), now_ms)
        }
    }
}
