//! The raft log, vote and commit index in `log.redb`, written by one thread with group commit.
//!
//! # How writes flow
//! `append`, `purge`, `truncate_after`, `save_vote` and `save_committed` queue an operation to the
//! single writer thread and update the in-memory view at once. The writer takes every operation
//! queued at that moment, applies them in order in one redb write transaction, commits it
//! durably (one fsync), and only then completes their callbacks, in submission order. While one
//! fsync runs, the next batch queues up: that is the group commit.
//!
//! # Invariants
//! - Entries are readable as soon as `append` returns: they sit in `cache` (a contiguous run of
//!   the newest entries) until the writer has made them durable and the cache outgrows
//!   `cache_entries_max`. An entry leaves the cache only after it is durable in redb, so a read
//!   takes the part of its range below the cache from redb and the rest from the cache.
//! - `save_vote` and `truncate_after` return only after their commit is durable.
//! - `IOFlushed` callbacks fire after the fsync that covers them, in submission order.
//!
//! # Integrity
//! Every record carries a CRC-32 of its bytes. At start every record is read back: each must
//! pass its checksum, sit under its own index and follow the previous one, and the log must
//! reach the saved commit index. A truncated, corrupted or shortened log (and whatever redb
//! itself finds on opening it) stops the start with an error naming the file and the remedy,
//! because a node that lost acknowledged entries must neither serve nor vote.
//!
//! # Must not
//! Do redb IO on a tokio worker: writes run on the writer thread, log reads that miss the cache
//! run under `spawn_blocking`.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use openraft::OptionalSend;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::raft::{Entry, LogId, TypeConfig, Vote};

/// Log index → versioned postcard entry.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// `vote`, `committed`, `last_purged`: versioned postcard values.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const META_VOTE: &str = "vote";
const META_COMMITTED: &str = "committed";
const META_LAST_PURGED: &str = "last_purged";

/// Format version of every value this module persists: the version byte, a CRC-32 of the
/// postcard bytes (little endian), then the postcard bytes.
const FORMAT_VERSION: u8 = 2;
/// The first format: the version byte, then the postcard bytes, no checksum. Still read.
const FORMAT_VERSION_UNCHECKED: u8 = 1;

/// Newest entries kept in memory after they are durable, so replication and apply rarely read
/// redb.
const CACHE_ENTRIES_MAX: usize = 4 * 1024;
/// Most operations one commit covers.
const OPS_PER_COMMIT_MAX: usize = 4096;

fn io_error(err: impl std::fmt::Display) -> io::Error {
    io::Error::other(err.to_string())
}

fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    let mut out = vec![FORMAT_VERSION, 0, 0, 0, 0];
    postcard::to_io(value, &mut out).map_err(io_error)?;
    let checksum = crc32fast::hash(&out[5..]);
    out[1..5].copy_from_slice(&checksum.to_le_bytes());
    Ok(out)
}

fn damaged_record(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> io::Result<T> {
    let body = match bytes.split_first() {
        Some((&FORMAT_VERSION, rest)) if rest.len() >= 4 => {
            let (checksum, body) = rest.split_at(4);
            if crc32fast::hash(body).to_le_bytes() != checksum {
                return Err(damaged_record("a record fails its checksum"));
            }
            body
        }
        Some((&FORMAT_VERSION_UNCHECKED, body)) => body,
        _ => return Err(damaged_record("a record has an unknown format version")),
    };
    postcard::from_bytes(body).map_err(|_| damaged_record("a record does not decode"))
}

/// Explains a damaged log file and what to do about it.
fn damaged_log(path: &Path, detail: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "the raft log {} is damaged ({detail}); refusing to start rather than serve or vote \
             on a log that may have lost acknowledged entries. In a cluster: remove this member \
             (`redraft cluster remove`), empty its data directory and add it back, and it is \
             rebuilt from the others; a single node: restore its data directory from a backup",
            path.display()
        ),
    )
}

/// Whether a redb error says the file itself is damaged (truncated, corrupted, not a database)
/// rather than that it could not be reached.
fn is_damage(err: &redb::DatabaseError) -> bool {
    match err {
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(_)) => true,
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => matches!(
            io.kind(),
            io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
        ),
        _ => false,
    }
}

/// Opens the log file, creating its tables if new, and verifies it (see [`verify_log`]).
fn open_and_verify(
    path: &Path,
    cache_size_bytes: usize,
) -> io::Result<(Database, Option<Vote>, Option<LogId>)> {
    let db = Database::builder()
        .set_cache_size(cache_size_bytes)
        .create(path)
        .map_err(|err| {
            if is_damage(&err) {
                damaged_log(path, err)
            } else {
                io_error(err)
            }
        })?;
    // Existing tables need no write, so a node on a full disk still opens.
    let has_tables = {
        let txn = db.begin_read().map_err(io_error)?;
        txn.open_table(LOG).is_ok() && txn.open_table(META).is_ok()
    };
    if !has_tables {
        let txn = db.begin_write().map_err(io_error)?;
        txn.open_table(LOG).map_err(io_error)?;
        txn.open_table(META).map_err(io_error)?;
        txn.commit().map_err(io_error)?;
    }
    let (vote, last_purged) = verify_log(&db).map_err(|detail| damaged_log(path, detail))?;
    Ok((db, vote, last_purged))
}

/// Runs `f`, turning a panic into its message without the default report on stderr. Used only
/// at start, before other threads do work.
fn without_panic_report<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> Result<T, String> {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(f);
    std::panic::set_hook(report);
    outcome.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_string())
    })
}

/// Reads every record of the log at start: each must pass its checksum, sit under its own
/// index, and follow the previous one; the vote and commit index must decode, and the log
/// must reach the commit index. Returns the vote and last purged id.
fn verify_log(db: &Database) -> Result<(Option<Vote>, Option<LogId>), String> {
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let meta = txn.open_table(META).map_err(|e| e.to_string())?;
    let read_meta = |name: &str| -> Result<Option<Vec<u8>>, String> {
        Ok(meta
            .get(name)
            .map_err(|e| e.to_string())?
            .map(|v| v.value().to_vec()))
    };
    let vote: Option<Vote> = match read_meta(META_VOTE)? {
        Some(bytes) => Some(decode(&bytes).map_err(|e| format!("the vote: {e}"))?),
        None => None,
    };
    let last_purged: Option<LogId> = match read_meta(META_LAST_PURGED)? {
        Some(bytes) => decode(&bytes).map_err(|e| format!("the purge point: {e}"))?,
        None => None,
    };
    let committed: Option<LogId> = match read_meta(META_COMMITTED)? {
        Some(bytes) => decode(&bytes).map_err(|e| format!("the commit index: {e}"))?,
        None => None,
    };
    let log = txn.open_table(LOG).map_err(|e| e.to_string())?;
    let mut previous = last_purged.map(|id| id.index);
    for item in log.iter().map_err(|e| e.to_string())? {
        let (key, value) = item.map_err(|e| e.to_string())?;
        let index = key.value();
        let entry: Entry = decode(value.value()).map_err(|e| format!("entry {index}: {e}"))?;
        if entry.log_id.index != index {
            return Err(format!(
                "entry {index} is stored under the wrong index ({})",
                entry.log_id.index
            ));
        }
        if let Some(previous) = previous
            && index != previous + 1
        {
            return Err(format!(
                "entries {} to {} are missing",
                previous + 1,
                index - 1
            ));
        }
        previous = Some(index);
    }
    if let (Some(committed), last) = (committed, previous)
        && last.is_none_or(|last| last < committed.index)
    {
        return Err(format!(
            "the log ends at {} below its commit index {}: its tail is missing",
            last.map_or("the start".to_string(), |l| l.to_string()),
            committed.index
        ));
    }
    Ok((vote, last_purged))
}

/// One queued change for the writer thread.
enum WriteOp {
    Append {
        entries: Vec<Entry>,
        callback: IOFlushed<TypeConfig>,
    },
    TruncateAfter {
        first_removed: u64,
        done: tokio::sync::oneshot::Sender<io::Result<()>>,
    },
    Purge {
        upto: LogId,
    },
    SaveVote {
        vote: Vote,
        done: tokio::sync::oneshot::Sender<io::Result<()>>,
    },
    SaveCommitted {
        committed: Option<LogId>,
    },
}

/// State shared by the store, its readers and the writer thread.
struct Shared {
    db: Database,
    /// The newest entries, contiguous by index.
    cache: Mutex<BTreeMap<u64, Entry>>,
    last_purged: Mutex<Option<LogId>>,
    vote: Mutex<Option<Vote>>,
}

/// The raft log storage handed to openraft; cheap to clone (clones are its readers).
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
    writer: mpsc::Sender<WriteOp>,
}

impl LogStore {
    /// Opens (or creates) `dir/log.redb`, verifies every record in it (see [`LogStore`]'s
    /// module doc), and starts its writer thread. A damaged file is an `InvalidData` error
    /// that says what is wrong and what to do.
    pub fn open(dir: &Path, cache_size_bytes: usize) -> io::Result<LogStore> {
        let path = dir.join("log.redb");
        // redb can panic on some damaged pages; that is damage too, not a crash to report.
        let (db, vote, last_purged) = match without_panic_report(|| {
            open_and_verify(&path, cache_size_bytes)
        }) {
            Ok(opened) => opened?,
            Err(panic) => return Err(damaged_log(&path, format!("redb failed on it: {panic}"))),
        };
        let shared = Arc::new(Shared {
            db,
            cache: Mutex::new(BTreeMap::new()),
            last_purged: Mutex::new(last_purged),
            vote: Mutex::new(vote),
        });
        let (writer, queue) = mpsc::channel();
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || run_writer(&thread_shared, &queue))?;
        Ok(LogStore { shared, writer })
    }

    fn send(&self, op: WriteOp) -> io::Result<()> {
        self.writer
            .send(op)
            .map_err(|_| io::Error::other("raft log writer has stopped"))
    }

    /// Entries in `[start, end)` from redb (blocking).
    fn read_durable(shared: &Shared, start: u64, end: u64) -> io::Result<Vec<Entry>> {
        let txn = shared.db.begin_read().map_err(io_error)?;
        let table = txn.open_table(LOG).map_err(io_error)?;
        let mut entries = Vec::new();
        for item in table.range(start..end).map_err(io_error)? {
            let (_, value) = item.map_err(io_error)?;
            entries.push(decode(value.value())?);
        }
        Ok(entries)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks is a bug elsewhere; the data stays consistent.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The writer thread: drains the queue, commits once, completes callbacks in order.
fn run_writer(shared: &Shared, queue: &mpsc::Receiver<WriteOp>) {
    while let Ok(first) = queue.recv() {
        let mut ops = vec![first];
        while ops.len() < OPS_PER_COMMIT_MAX {
            match queue.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let result = commit_ops(shared, &ops);
        if let Err(err) = &result {
            tracing::error!(error = %err, "raft log commit failed");
        }
        let mut flushed_max = None;
        for op in ops {
            let outcome = match &result {
                Ok(()) => Ok(()),
                Err(err) => Err(io::Error::new(err.kind(), err.to_string())),
            };
            match op {
                WriteOp::Append { entries, callback } => {
                    flushed_max = entries.last().map(|e| e.log_id.index).or(flushed_max);
                    callback.io_completed(outcome);
                }
                WriteOp::TruncateAfter { done, .. } | WriteOp::SaveVote { done, .. } => {
                    let _ = done.send(outcome);
                }
                WriteOp::Purge { .. } | WriteOp::SaveCommitted { .. } => {}
            }
        }
        if let (Ok(()), Some(flushed_max)) = (&result, flushed_max) {
            let mut cache = lock(&shared.cache);
            while cache.len() > CACHE_ENTRIES_MAX {
                match cache.first_key_value() {
                    Some((&index, _)) if index <= flushed_max => {
                        cache.pop_first();
                    }
                    _ => break,
                }
            }
        }
    }
}

fn commit_ops(shared: &Shared, ops: &[WriteOp]) -> io::Result<()> {
    let txn = shared.db.begin_write().map_err(io_error)?;
    {
        let mut log = txn.open_table(LOG).map_err(io_error)?;
        let mut meta = txn.open_table(META).map_err(io_error)?;
        for op in ops {
            match op {
                WriteOp::Append { entries, .. } => {
                    for entry in entries {
                        log.insert(entry.log_id.index, encode(entry)?.as_slice())
                            .map_err(io_error)?;
                    }
                }
                WriteOp::TruncateAfter { first_removed, .. } => {
                    log.retain_in(*first_removed.., |_, _| false)
                        .map_err(io_error)?;
                }
                WriteOp::Purge { upto } => {
                    log.retain_in(..=upto.index, |_, _| false)
                        .map_err(io_error)?;
                    meta.insert(META_LAST_PURGED, encode(&Some(*upto))?.as_slice())
                        .map_err(io_error)?;
                }
                WriteOp::SaveVote { vote, .. } => {
                    meta.insert(META_VOTE, encode(vote)?.as_slice())
                        .map_err(io_error)?;
                }
                WriteOp::SaveCommitted { committed } => {
                    meta.insert(META_COMMITTED, encode(committed)?.as_slice())
                        .map_err(io_error)?;
                }
            }
        }
    }
    txn.commit().map_err(io_error)
}

fn range_to_bounds<RB: RangeBounds<u64>>(range: &RB) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<Entry>> {
        let (start, end) = range_to_bounds(&range);
        if start >= end {
            return Ok(Vec::new());
        }
        let (cache_start, cached) = {
            let cache = lock(&self.shared.cache);
            let cache_start = cache.first_key_value().map_or(u64::MAX, |(&i, _)| i);
            let cached_start = start.max(cache_start);
            let cached: Vec<Entry> = if cached_start < end {
                cache
                    .range(cached_start..end)
                    .map(|(_, e)| e.clone())
                    .collect()
            } else {
                Vec::new()
            };
            (cache_start, cached)
        };
        if start >= cache_start {
            return Ok(cached);
        }
        let shared = self.shared.clone();
        let durable_end = end.min(cache_start);
        let mut entries =
            tokio::task::spawn_blocking(move || Self::read_durable(&shared, start, durable_end))
                .await
                .map_err(io_error)??;
        entries.extend(cached);
        Ok(entries)
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        Ok(*lock(&self.shared.vote))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let last_purged = *lock(&self.shared.last_purged);
        let cached_last = lock(&self.shared.cache)
            .last_key_value()
            .map(|(_, e)| e.log_id);
        let last_log_id = match cached_last {
            Some(id) => Some(id),
            None => {
                let shared = self.shared.clone();
                let durable_last =
                    tokio::task::spawn_blocking(move || -> io::Result<Option<LogId>> {
                        let txn = shared.db.begin_read().map_err(io_error)?;
                        let table = txn.open_table(LOG).map_err(io_error)?;
                        match table.last().map_err(io_error)? {
                            Some((_, v)) => Ok(Some(decode::<Entry>(v.value())?.log_id)),
                            None => Ok(None),
                        }
                    })
                    .await
                    .map_err(io_error)??;
                durable_last.or(last_purged)
            }
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.send(WriteOp::SaveVote { vote: *vote, done })?;
        wait.await
            .map_err(|_| io::Error::other("raft log writer has stopped"))??;
        *lock(&self.shared.vote) = Some(*vote);
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        self.send(WriteOp::SaveCommitted { committed })
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let txn = shared.db.begin_read().map_err(io_error)?;
            let meta = txn.open_table(META).map_err(io_error)?;
            match meta.get(META_COMMITTED).map_err(io_error)? {
                Some(v) => decode(v.value()),
                None => Ok(None),
            }
        })
        .await
        .map_err(io_error)?
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        {
            let mut cache = lock(&self.shared.cache);
            for entry in &entries {
                cache.insert(entry.log_id.index, entry.clone());
            }
        }
        self.send(WriteOp::Append { entries, callback })
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let first_removed = last_log_id.map_or(0, |id| id.index + 1);
        lock(&self.shared.cache).split_off(&first_removed);
        let (done, wait) = tokio::sync::oneshot::channel();
        self.send(WriteOp::TruncateAfter {
            first_removed,
            done,
        })?;
        wait.await
            .map_err(|_| io::Error::other("raft log writer has stopped"))?
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        {
            let mut cache = lock(&self.shared.cache);
            *cache = cache.split_off(&(log_id.index + 1));
        }
        *lock(&self.shared.last_purged) = Some(log_id);
        self.send(WriteOp::Purge { upto: log_id })
    }
}

#[cfg(test)]
mod tests {
    use openraft::StorageError;
    use openraft::testing::log::{StoreBuilder, Suite};

    use super::*;
    use crate::store::StateMachine;

    struct RedbStoreBuilder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for RedbStoreBuilder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
            let dir = tempfile::tempdir().expect("temp dir");
            let log = LogStore::open(dir.path(), 1 << 20).expect("open log store");
            let sm = StateMachine::open(dir.path(), 1 << 20).expect("open state machine");
            Ok((dir, log, sm))
        }
    }

    /// openraft's own conformance suite for log storage, run against the redb stores.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn log_store_passes_openraft_suite() -> Result<(), StorageError<TypeConfig>> {
        Suite::test_all(RedbStoreBuilder).await?;
        Ok(())
    }
}
