//! The keyspace as commands see it: typed values with expiry and revisions, over redb tables.
//!
//! # Tables (in `sm.redb`)
//! - `keys`: key → record: type tag (1 byte), expiry deadline in ms (i64 LE, `i64::MAX` = none),
//!   revision (u64 LE: log index of the last change), then the payload (a string's bytes; a
//!   hash's field count as u64 LE).
//! - `fields`: hash fields, keyed by `u32 BE key length ‖ key ‖ field`, so one hash's fields are
//!   one contiguous, ordered range.
//! - `expiry`: `deadline (u64 BE, sign-flipped) ‖ key` → empty, every key with a deadline in
//!   deadline order, so active expiry finds due keys without a scan.
//!
//! # Time
//! A [`Keyspace`] carries the time it runs at. In apply that is the time the leader stamped into
//! the log entry, never the applying node's clock, so every replica expires the same keys. A
//! key whose deadline is at or before that time is absent to every command, and a write that
//! meets it deletes it for good.
//!
//! # Must not
//! Parse commands or format replies: that is `store::commands`.

use bytes::Bytes;
use redb::{ReadOnlyTable, ReadableTable, ReadableTableMetadata, Table, TableDefinition};

/// Keys → records.
pub const KEYS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("keys");
/// Hash fields.
pub const FIELDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("fields");
/// Deadline-ordered index of keys with an expiry.
pub const EXPIRY: TableDefinition<&[u8], ()> = TableDefinition::new("expiry");
/// Every key in the order of its [`scan_hash`], for SCAN cursors that survive concurrent
/// inserts and deletes.
pub const SCAN_INDEX: TableDefinition<&[u8], ()> = TableDefinition::new("scan_index");

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
}

impl Kind {
    fn tag(self) -> u8 {
        match self {
            Kind::String => 0,
            Kind::Hash => 1,
        }
    }

    fn from_tag(tag: u8) -> Result<Kind, StoreError> {
        match tag {
            0 => Ok(Kind::String),
            1 => Ok(Kind::Hash),
            other => Err(StoreError::Corrupt(format!("unknown type tag {other}"))),
        }
    }

    /// The name TYPE answers.
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Hash => "hash",
        }
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
    /// A string's bytes, or a hash's field count (u64 LE).
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

fn storage(err: impl std::fmt::Display) -> StoreError {
    StoreError::Storage(err.to_string())
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
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
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

/// Access to the keyspace at one moment. Implemented by a read-only view (the read path) and
/// by a write transaction (apply); commands are written once against this trait.
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
}

fn is_live(record: &Record, now_ms: i64) -> bool {
    record.expire_at_ms.is_none_or(|deadline| deadline > now_ms)
}

fn read_field<T: ReadableTable<&'static [u8], &'static [u8]>>(
    table: &T,
    key: &[u8],
    field: &[u8],
) -> StoreResult<Option<Bytes>> {
    Ok(table
        .get(field_key(key, field).as_slice())
        .map_err(storage)?
        .map(|v| Bytes::copy_from_slice(v.value())))
}

fn read_fields<T: ReadableTable<&'static [u8], &'static [u8]>>(
    table: &T,
    key: &[u8],
    after: Option<&[u8]>,
    limit: usize,
) -> StoreResult<Vec<(Bytes, Bytes)>> {
    let prefix = field_prefix(key);
    let start = match after {
        Some(after) => {
            let mut start = field_key(key, after);
            start.push(0);
            start
        }
        None => prefix.clone(),
    };
    let mut out = Vec::new();
    let range = match prefix_end(&prefix) {
        Some(end) => table.range::<&[u8]>(start.as_slice()..end.as_slice()),
        None => table.range::<&[u8]>(start.as_slice()..),
    };
    for item in range.map_err(storage)? {
        let (k, v) = item.map_err(storage)?;
        let k = k.value();
        if out.len() >= limit {
            break;
        }
        out.push((
            Bytes::copy_from_slice(&k[prefix.len()..]),
            Bytes::copy_from_slice(v.value()),
        ));
    }
    Ok(out)
}

fn read_keys_after<T: ReadableTable<&'static [u8], &'static [u8]>>(
    table: &T,
    after: Option<&[u8]>,
    limit: usize,
) -> StoreResult<Vec<Bytes>> {
    let mut out = Vec::new();
    let range = match after {
        Some(after) => {
            table.range::<&[u8]>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
        }
        None => table.range::<&[u8]>(..),
    }
    .map_err(storage)?;
    for item in range {
        if out.len() >= limit {
            break;
        }
        let (k, _) = item.map_err(storage)?;
        out.push(Bytes::copy_from_slice(k.value()));
    }
    Ok(out)
}

/// The keyspace of a read transaction (the linearizable read path).
pub struct ReadView {
    keys: ReadOnlyTable<&'static [u8], &'static [u8]>,
    fields: ReadOnlyTable<&'static [u8], &'static [u8]>,
    expiry: ReadOnlyTable<&'static [u8], ()>,
    scan_index: ReadOnlyTable<&'static [u8], ()>,
    now_ms: i64,
}

impl ReadView {
    /// Opens the tables of `txn` as seen at `now_ms`.
    pub fn open(txn: &redb::ReadTransaction, now_ms: i64) -> StoreResult<ReadView> {
        Ok(ReadView {
            keys: txn.open_table(KEYS).map_err(storage)?,
            fields: txn.open_table(FIELDS).map_err(storage)?,
            expiry: txn.open_table(EXPIRY).map_err(storage)?,
            scan_index: txn.open_table(SCAN_INDEX).map_err(storage)?,
            now_ms,
        })
    }
}

impl Keyspace for ReadView {
    fn now_ms(&self) -> i64 {
        self.now_ms
    }

    fn record(&mut self, key: &[u8]) -> StoreResult<Option<Record>> {
        match self.keys.get(key).map_err(storage)? {
            Some(raw) => {
                let record = Record::decode(raw.value())?;
                Ok(is_live(&record, self.now_ms).then_some(record))
            }
            None => Ok(None),
        }
    }

    fn field(&mut self, key: &[u8], field: &[u8]) -> StoreResult<Option<Bytes>> {
        if self.record(key)?.is_none() {
            return Ok(None);
        }
        read_field(&self.fields, key, field)
    }

    fn fields(
        &mut self,
        key: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> StoreResult<Vec<(Bytes, Bytes)>> {
        if self.record(key)?.is_none() {
            return Ok(Vec::new());
        }
        read_fields(&self.fields, key, after, limit)
    }

    fn keys_after(&mut self, after: Option<&[u8]>, limit: usize) -> StoreResult<Vec<Bytes>> {
        read_keys_after(&self.keys, after, limit)
    }

    fn scan(&mut self, cursor: u64, count: usize) -> StoreResult<(Vec<Bytes>, u64)> {
        scan_step(&self.scan_index, cursor, count)
    }

    fn random_seed(&mut self) -> u64 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        scan_hash(&nanos.to_le_bytes())
    }

    fn stored_key_count(&mut self) -> StoreResult<u64> {
        self.keys.len().map_err(storage)
    }

    fn expired_key_count(&mut self) -> StoreResult<u64> {
        count_due(&self.expiry, self.now_ms)
    }

    fn put_string(&mut self, _: &[u8], _: &[u8], _: Option<i64>) -> StoreResult<()> {
        Err(StoreError::ReadOnly)
    }

    fn set_expiry(&mut self, _: &[u8], _: Option<i64>) -> StoreResult<bool> {
        Err(StoreError::ReadOnly)
    }

    fn delete(&mut self, _: &[u8]) -> StoreResult<bool> {
        Err(StoreError::ReadOnly)
    }

    fn put_field(&mut self, _: &[u8], _: &[u8], _: &[u8]) -> StoreResult<bool> {
        Err(StoreError::ReadOnly)
    }

    fn delete_field(&mut self, _: &[u8], _: &[u8]) -> StoreResult<bool> {
        Err(StoreError::ReadOnly)
    }

    fn flush(&mut self) -> StoreResult<()> {
        Err(StoreError::ReadOnly)
    }
}

/// The keyspace inside an apply write transaction.
pub struct WriteView<'t> {
    keys: Table<'t, &'static [u8], &'static [u8]>,
    fields: Table<'t, &'static [u8], &'static [u8]>,
    expiry: Table<'t, &'static [u8], ()>,
    scan_index: Table<'t, &'static [u8], ()>,
    random_calls: u64,
    now_ms: i64,
    revision: u64,
}

impl<'t> WriteView<'t> {
    /// Opens the tables of `txn`.
    pub fn open(txn: &'t redb::WriteTransaction) -> StoreResult<WriteView<'t>> {
        Ok(WriteView {
            keys: txn.open_table(KEYS).map_err(storage)?,
            fields: txn.open_table(FIELDS).map_err(storage)?,
            expiry: txn.open_table(EXPIRY).map_err(storage)?,
            scan_index: txn.open_table(SCAN_INDEX).map_err(storage)?,
            random_calls: 0,
            now_ms: 0,
            revision: 0,
        })
    }

    /// Sets the time and the log index the next changes happen at.
    pub fn at(&mut self, now_ms: i64, revision: u64) {
        self.now_ms = now_ms;
        self.revision = revision;
    }

    /// Removes `key` if its deadline is at or before the current time; true when it did.
    pub fn expire_if_due(&mut self, key: &[u8]) -> StoreResult<bool> {
        match self.raw_record(key)? {
            Some(record) if !is_live(&record, self.now_ms) => {
                self.remove_all(key, &record)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Keys whose deadline is at or before `now_ms`, earliest first, at most `limit`.
    pub fn due_keys(&mut self, now_ms: i64, limit: usize) -> StoreResult<Vec<Bytes>> {
        due_keys(&self.expiry, now_ms, limit)
    }

    fn raw_record(&mut self, key: &[u8]) -> StoreResult<Option<Record>> {
        match self.keys.get(key).map_err(storage)? {
            Some(raw) => Ok(Some(Record::decode(raw.value())?)),
            None => Ok(None),
        }
    }

    fn write_record(&mut self, key: &[u8], record: &Record) -> StoreResult<()> {
        let existed = self
            .keys
            .insert(key, record.encode().as_slice())
            .map_err(storage)?
            .is_some();
        if !existed {
            self.scan_index
                .insert(scan_index_key(key).as_slice(), ())
                .map_err(storage)?;
        }
        Ok(())
    }

    /// Removes a record and everything hanging off it, live or not.
    fn remove_all(&mut self, key: &[u8], record: &Record) -> StoreResult<()> {
        self.keys.remove(key).map_err(storage)?;
        self.scan_index
            .remove(scan_index_key(key).as_slice())
            .map_err(storage)?;
        if let Some(deadline) = record.expire_at_ms {
            self.expiry
                .remove(expiry_key(deadline, key).as_slice())
                .map_err(storage)?;
        }
        if record.kind == Kind::Hash {
            let prefix = field_prefix(key);
            match prefix_end(&prefix) {
                Some(end) => self
                    .fields
                    .retain_in::<&[u8], _>(prefix.as_slice()..end.as_slice(), |_, _| false),
                None => self
                    .fields
                    .retain_in::<&[u8], _>(prefix.as_slice().., |_, _| false),
            }
            .map_err(storage)?;
        }
        Ok(())
    }

    /// The record if live; an expired one is removed on the way.
    fn live_record(&mut self, key: &[u8]) -> StoreResult<Option<Record>> {
        match self.raw_record(key)? {
            Some(record) if is_live(&record, self.now_ms) => Ok(Some(record)),
            Some(record) => {
                self.remove_all(key, &record)?;
                Ok(None)
            }
            None => Ok(None),
        }
    }
}

/// One SCAN step over a scan index (see [`Keyspace::scan`]).
fn scan_step<T: ReadableTable<&'static [u8], ()>>(
    table: &T,
    cursor: u64,
    count: usize,
) -> StoreResult<(Vec<Bytes>, u64)> {
    let start = cursor.to_be_bytes();
    let mut out = Vec::new();
    let mut last_hash = None;
    for item in table.range::<&[u8]>(start.as_slice()..).map_err(storage)? {
        let (k, _) = item.map_err(storage)?;
        let k = k.value();
        let hash = u64::from_be_bytes(k[..8].try_into().expect("8-byte hash prefix"));
        if out.len() >= count.max(1) && last_hash != Some(hash) {
            // Resume at this hash next time; equal hashes never straddle two steps.
            return Ok((out, hash.max(1)));
        }
        last_hash = Some(hash);
        out.push(Bytes::copy_from_slice(&k[8..]));
    }
    Ok((out, 0))
}

/// How many keys in an expiry index are due at `now_ms`.
fn count_due<T: ReadableTable<&'static [u8], ()>>(table: &T, now_ms: i64) -> StoreResult<u64> {
    let end = expiry_key(now_ms, &[]);
    let mut count = 0;
    for item in table.range::<&[u8]>(..).map_err(storage)? {
        let (k, _) = item.map_err(storage)?;
        if k.value().len() < 8 || k.value()[..8] > end[..8] {
            break;
        }
        count += 1;
    }
    Ok(count)
}

/// Keys due for expiry at `now_ms` in an expiry index.
pub fn due_keys<T: ReadableTable<&'static [u8], ()>>(
    table: &T,
    now_ms: i64,
    limit: usize,
) -> StoreResult<Vec<Bytes>> {
    let end = expiry_key(now_ms, &[]);
    let mut out = Vec::new();
    for item in table.range::<&[u8]>(..).map_err(storage)? {
        if out.len() >= limit {
            break;
        }
        let (k, _) = item.map_err(storage)?;
        let k = k.value();
        if k.len() < 8 || k[..8] > end[..8] {
            break;
        }
        out.push(Bytes::copy_from_slice(&k[8..]));
    }
    Ok(out)
}

impl Keyspace for WriteView<'_> {
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
        read_field(&self.fields, key, field)
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
        read_fields(&self.fields, key, after, limit)
    }

    fn keys_after(&mut self, after: Option<&[u8]>, limit: usize) -> StoreResult<Vec<Bytes>> {
        read_keys_after(&self.keys, after, limit)
    }

    fn scan(&mut self, cursor: u64, count: usize) -> StoreResult<(Vec<Bytes>, u64)> {
        scan_step(&self.scan_index, cursor, count)
    }

    fn random_seed(&mut self) -> u64 {
        self.random_calls += 1;
        let mut seed = self.revision.to_le_bytes().to_vec();
        seed.extend_from_slice(&self.random_calls.to_le_bytes());
        scan_hash(&seed)
    }

    fn stored_key_count(&mut self) -> StoreResult<u64> {
        self.keys.len().map_err(storage)
    }

    fn expired_key_count(&mut self) -> StoreResult<u64> {
        count_due(&self.expiry, self.now_ms)
    }

    fn put_string(
        &mut self,
        key: &[u8],
        value: &[u8],
        expire_at_ms: Option<i64>,
    ) -> StoreResult<()> {
        if let Some(old) = self.raw_record(key)? {
            self.remove_all(key, &old)?;
        }
        let record = Record {
            kind: Kind::String,
            expire_at_ms,
            revision: self.revision,
            payload: Bytes::copy_from_slice(value),
        };
        self.write_record(key, &record)?;
        if let Some(deadline) = expire_at_ms {
            self.expiry
                .insert(expiry_key(deadline, key).as_slice(), ())
                .map_err(storage)?;
        }
        Ok(())
    }

    fn set_expiry(&mut self, key: &[u8], expire_at_ms: Option<i64>) -> StoreResult<bool> {
        let Some(mut record) = self.live_record(key)? else {
            return Ok(false);
        };
        if let Some(old) = record.expire_at_ms {
            self.expiry
                .remove(expiry_key(old, key).as_slice())
                .map_err(storage)?;
        }
        record.expire_at_ms = expire_at_ms;
        record.revision = self.revision;
        self.write_record(key, &record)?;
        if let Some(deadline) = expire_at_ms {
            self.expiry
                .insert(expiry_key(deadline, key).as_slice(), ())
                .map_err(storage)?;
        }
        Ok(true)
    }

    fn delete(&mut self, key: &[u8]) -> StoreResult<bool> {
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
        let mut record = match self.live_record(key)? {
            Some(record) => record,
            None => Record {
                kind: Kind::Hash,
                expire_at_ms: None,
                revision: self.revision,
                payload: Bytes::copy_from_slice(&0u64.to_le_bytes()),
            },
        };
        let fk = field_key(key, field);
        let is_new = self
            .fields
            .insert(fk.as_slice(), value)
            .map_err(storage)?
            .is_none();
        let count = record.field_count() + u64::from(is_new);
        record.payload = Bytes::copy_from_slice(&count.to_le_bytes());
        record.revision = self.revision;
        self.write_record(key, &record)?;
        Ok(is_new)
    }

    fn delete_field(&mut self, key: &[u8], field: &[u8]) -> StoreResult<bool> {
        let Some(mut record) = self.live_record(key)? else {
            return Ok(false);
        };
        let existed = self
            .fields
            .remove(field_key(key, field).as_slice())
            .map_err(storage)?
            .is_some();
        if existed {
            let count = record.field_count().saturating_sub(1);
            if count == 0 {
                self.remove_all(key, &record)?;
            } else {
                record.payload = Bytes::copy_from_slice(&count.to_le_bytes());
                record.revision = self.revision;
                self.write_record(key, &record)?;
            }
        }
        Ok(existed)
    }

    fn flush(&mut self) -> StoreResult<()> {
        self.keys.retain(|_, _| false).map_err(storage)?;
        self.fields.retain(|_, _| false).map_err(storage)?;
        self.expiry.retain(|_, _| false).map_err(storage)?;
        self.scan_index.retain(|_, _| false).map_err(storage)?;
        Ok(())
    }
}
