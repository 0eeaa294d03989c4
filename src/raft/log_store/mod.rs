//! The raft log, vote and commit index: an append-only file of checksummed record groups, in
//! preallocated segments under `raft-log/`, written by one thread with group commit.
//!
//! # How writes flow
//! `append`, `purge`, `truncate_after`, `save_vote` and `save_committed` queue an operation to
//! the single writer thread and update the in-memory view at once. The writer takes every
//! operation queued at that moment, encodes them as one *group* of records, writes the group
//! with one `pwrite` at the end of the current segment and makes it durable with one
//! `fdatasync`, and only then completes their callbacks, in submission order. While one fsync
//! runs, the next group queues up: that is the group commit. A group nobody waits for (only
//! the commit index or a purge) is not written on its own: it rides along with the next one.
//!
//! # On disk
//! `raft-log/<seq>.log`, numbered from 1. Each segment is created whole (zero-filled to its
//! size, so an fsync never has to allocate blocks), under a temporary name that is renamed
//! once its header and first record are durable; a 64-byte header names its sequence number
//! and size. The first group of every segment states the vote, commit index and purge point as
//! they were, so older segments can be deleted once the log is purged past every entry in
//! them. A group is `[length u32][CRC-32 u32][records]`, each record `[length u32][postcard]`;
//! a zero length ends a segment's groups.
//!
//! # Integrity
//! At start every group of every segment is read back and checked (checksum, entries
//! contiguous and under their own index, the log reaching the saved commit index, segments
//! numbered without gaps and as long as their header says). Only the newest segment may end in
//! a damaged group, and only if that group looks torn: a sector it covers is all zeros (never
//! written) and no valid group follows. That is a write cut short by a crash before its fsync
//! returned, so nothing in it was acknowledged; it is zeroed and the log goes on from there.
//! Any other damage (bits flipped in a group, a file cut short) stops the start with an error
//! naming the log and the remedy, because a node that lost acknowledged entries must neither
//! serve nor vote. Left undetected: flipped bits in the last group of a value holding a whole
//! zero sector of its own look like a torn write.
//!
//! # Invariants
//! - Entries are readable as soon as `append` returns: they sit in `cache` (a contiguous run of
//!   the newest entries) until the writer has made them durable and the cache outgrows
//!   `CACHE_ENTRIES_MAX`. An entry leaves the cache only after it is durable, so a read takes
//!   the part of its range below the cache from the segments and the rest from the cache.
//! - `save_vote` and `truncate_after` return only after their group is durable.
//! - `IOFlushed` callbacks fire after the fsync that covers them, in submission order.
//!
//! # Must not
//! Do file IO on a tokio worker: writes run on the writer thread, log reads that miss the cache
//! run under `spawn_blocking`.

mod recovery;

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::{Bound, RangeBounds};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use openraft::OptionalSend;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use serde::{Deserialize, Serialize};

use crate::raft::{Entry, LogId, TypeConfig, Vote};
use recovery::{create_segment, recover};

/// The log's directory inside the data directory.
const LOG_DIR: &str = "raft-log";
/// The file of the log format before this one; a data directory holding it is refused.
const OLD_LOG_FILE: &str = "log.redb";
/// Size a segment is created with (a group larger than that gets a segment of its own size).
const SEGMENT_BYTES: u64 = 1 << 20;
/// Segment header: magic, format version, sequence number, size, CRC-32 of those.
const HEADER_BYTES: u64 = 64;
const MAGIC: &[u8; 8] = b"RDRFTLOG";
const FORMAT_VERSION: u32 = 1;
/// Group header: length of the records and trailer, then their CRC-32.
const GROUP_HEADER_BYTES: usize = 8;
/// Ends every group, so that the last sector a group touches is never all zeros once written.
const GROUP_TRAILER: &[u8; 4] = b"GEND";
/// The unit a disk writes whole: a write torn by a crash leaves some of these all zeros.
const SECTOR_BYTES: usize = 512;

/// Newest entries kept in memory after they are durable, so replication and apply rarely read
/// the segments.
const CACHE_ENTRIES_MAX: usize = 4 * 1024;
/// Most operations one group covers.
const OPS_PER_GROUP_MAX: usize = 4096;

/// One record: read back as `Record<Entry>`, written as `Record<&Entry>` (same encoding).
#[derive(Serialize, Deserialize)]
enum Record<E> {
    /// What held when the segment was started (its first record).
    State {
        vote: Option<Vote>,
        committed: Option<LogId>,
        last_purged: Option<LogId>,
    },
    Entry(E),
    Vote(Vote),
    Committed(Option<LogId>),
    TruncateAfter {
        first_removed: u64,
    },
    Purged(LogId),
}

fn io_error(err: impl std::fmt::Display) -> io::Error {
    io::Error::other(err.to_string())
}

/// Explains a damaged log and what to do about it.
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

/// The little-endian `u32` at `at`, if `bytes` holds one there.
fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let field = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(field.try_into().expect("4 bytes")))
}

fn segment_name(seq: u64) -> String {
    format!("{seq:020}.log")
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    crate::durable::sync_dir(dir)
}

/// Appends one record (`[length u32][postcard]`) to `buf`; returns the payload's offset in
/// `buf` and its length.
fn push_record(buf: &mut Vec<u8>, record: &Record<&Entry>) -> io::Result<(usize, u32)> {
    let at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    postcard::to_io(record, &mut *buf).map_err(io_error)?;
    let len = u32::try_from(buf.len() - at - 4)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "log record over 4 GiB"))?;
    buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    Ok((at + 4, len))
}

/// Adds the trailer and fills in the group header reserved at the start of `buf`.
fn seal_group(buf: &mut Vec<u8>) -> io::Result<()> {
    buf.extend_from_slice(GROUP_TRAILER);
    let len = u32::try_from(buf.len() - GROUP_HEADER_BYTES)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "log group over 4 GiB"))?;
    let crc = crc32fast::hash(&buf[GROUP_HEADER_BYTES..]);
    buf[..4].copy_from_slice(&len.to_le_bytes());
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Where a durable entry's record lies.
#[derive(Clone, Copy, Debug)]
struct Location {
    seq: u64,
    offset: u64,
    len: u32,
}

/// Durable entries' locations (contiguous from `first`) and the open segment files.
#[derive(Default)]
struct DurableIndex {
    first: u64,
    locations: VecDeque<Location>,
    files: BTreeMap<u64, Arc<File>>,
}

impl DurableIndex {
    fn last(&self) -> Option<u64> {
        (!self.locations.is_empty()).then(|| self.first + self.locations.len() as u64 - 1)
    }

    /// Records entry `index` at `location`; the caller has checked it follows the last one.
    fn push(&mut self, index: u64, location: Location) {
        if self.locations.is_empty() {
            self.first = index;
        }
        self.locations.push_back(location);
    }

    fn truncate_from(&mut self, first_removed: u64) {
        let keep = first_removed.saturating_sub(self.first) as usize;
        self.locations.truncate(keep);
    }

    fn purge_upto(&mut self, upto: u64) {
        while !self.locations.is_empty() && self.first <= upto {
            self.locations.pop_front();
            self.first += 1;
        }
    }
}

/// State shared by the store, its readers and the writer thread.
struct Shared {
    dir: PathBuf,
    /// The newest entries, contiguous by index.
    cache: Mutex<BTreeMap<u64, Entry>>,
    durable: Mutex<DurableIndex>,
    last_purged: Mutex<Option<LogId>>,
    vote: Mutex<Option<Vote>>,
    /// The commit index read back at start.
    committed_at_start: Option<LogId>,
}

/// Vote, commit index and purge point as of the last durable group.
#[derive(Clone, Copy, Default)]
struct LogMeta {
    vote: Option<Vote>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
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

impl WriteOp {
    /// Whether no caller waits for this operation to be durable.
    fn is_unawaited(&self) -> bool {
        matches!(self, WriteOp::Purge { .. } | WriteOp::SaveCommitted { .. })
    }
}

/// The writer thread's own state: the segment being written and where.
struct Writer {
    dir: PathBuf,
    seq: u64,
    file: Arc<File>,
    write_offset: u64,
    segment_size: u64,
    segments: Vec<(u64, Option<u64>)>,
    meta: LogMeta,
    group: Vec<u8>,
}

/// What a written group changes in the durable index, in order.
enum Effect {
    Entry { index: u64, offset: usize, len: u32 },
    TruncateFrom(u64),
    PurgeUpto(u64),
}

impl Writer {
    /// Writes `ops` as one durable group and updates the durable index.
    fn write_group(&mut self, shared: &Shared, ops: &[WriteOp]) -> io::Result<()> {
        self.group.clear();
        self.group.resize(GROUP_HEADER_BYTES, 0);
        let mut effects = Vec::new();
        let mut meta = self.meta;
        for op in ops {
            match op {
                WriteOp::Append { entries, .. } => {
                    for entry in entries {
                        let (offset, len) = push_record(&mut self.group, &Record::Entry(entry))?;
                        effects.push(Effect::Entry {
                            index: entry.log_id.index,
                            offset,
                            len,
                        });
                    }
                }
                WriteOp::TruncateAfter { first_removed, .. } => {
                    push_record(
                        &mut self.group,
                        &Record::TruncateAfter {
                            first_removed: *first_removed,
                        },
                    )?;
                    effects.push(Effect::TruncateFrom(*first_removed));
                }
                WriteOp::Purge { upto } => {
                    push_record(&mut self.group, &Record::Purged(*upto))?;
                    meta.last_purged = Some(*upto);
                    effects.push(Effect::PurgeUpto(upto.index));
                }
                WriteOp::SaveVote { vote, .. } => {
                    push_record(&mut self.group, &Record::Vote(*vote))?;
                    meta.vote = Some(*vote);
                }
                WriteOp::SaveCommitted { committed } => {
                    push_record(&mut self.group, &Record::Committed(*committed))?;
                    meta.committed = *committed;
                }
            }
        }
        seal_group(&mut self.group)?;
        let needed = self.group.len() as u64;
        if self.write_offset + needed > self.segment_size {
            self.start_segment(shared, needed)?;
        }
        self.file.write_all_at(&self.group, self.write_offset)?;
        self.file.sync_data()?;
        let base = self.write_offset;
        self.write_offset += needed;
        self.meta = meta;

        let mut purged_upto = None;
        {
            let mut durable = lock(&shared.durable);
            let newest = self.segments.last_mut().expect("a segment");
            for effect in effects {
                match effect {
                    Effect::Entry { index, offset, len } => {
                        durable.truncate_from(index);
                        durable.push(
                            index,
                            Location {
                                seq: self.seq,
                                offset: base + offset as u64,
                                len,
                            },
                        );
                        newest.1 = Some(newest.1.map_or(index, |m| m.max(index)));
                    }
                    Effect::TruncateFrom(first_removed) => durable.truncate_from(first_removed),
                    Effect::PurgeUpto(upto) => {
                        durable.purge_upto(upto);
                        purged_upto = Some(upto);
                    }
                }
            }
        }
        if let Some(upto) = purged_upto {
            self.delete_purged_segments(shared, upto)?;
        }
        Ok(())
    }

    /// Starts the next segment, big enough for a group of `needed` bytes.
    fn start_segment(&mut self, shared: &Shared, needed: u64) -> io::Result<()> {
        let seq = self.seq + 1;
        let size = SEGMENT_BYTES.max((HEADER_BYTES + 256 + needed).next_multiple_of(1 << 20));
        let (file, write_offset) = create_segment(&self.dir, seq, size, &self.meta)?;
        let file = Arc::new(file);
        lock(&shared.durable).files.insert(seq, file.clone());
        self.seq = seq;
        self.file = file;
        self.write_offset = write_offset;
        self.segment_size = size;
        self.segments.push((seq, None));
        Ok(())
    }

    /// Deletes the oldest segments while every entry ever written to them is purged.
    fn delete_purged_segments(&mut self, shared: &Shared, upto: u64) -> io::Result<()> {
        let mut deleted = 0;
        for &(seq, max_entry) in &self.segments {
            if seq == self.seq || max_entry.is_some_and(|m| m > upto) {
                break;
            }
            fs::remove_file(self.dir.join(segment_name(seq)))?;
            lock(&shared.durable).files.remove(&seq);
            deleted += 1;
        }
        if deleted > 0 {
            self.segments.drain(..deleted);
            fsync_dir(&self.dir)?;
        }
        Ok(())
    }
}

/// The raft log storage handed to openraft; cheap to clone (clones are its readers).
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
    writer: mpsc::Sender<WriteOp>,
}

impl LogStore {
    /// Opens (or creates) the log in `dir/raft-log/`, checks every group in it (see the
    /// module doc), and starts its writer thread. A damaged log is an `InvalidData` error that
    /// says what is wrong and what to do.
    pub fn open(dir: &Path) -> io::Result<LogStore> {
        if dir.join(OLD_LOG_FILE).exists() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} holds a raft log in the format of an earlier development version \
                     ({OLD_LOG_FILE}), which this version does not read; start with an empty \
                     data directory",
                    dir.display()
                ),
            ));
        }
        let log_dir = dir.join(LOG_DIR);
        let recovered = match recover(&log_dir) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                // A new log: its first segment, then read back like any other.
                crate::durable::create_dir_all(&log_dir)?;
                create_segment(&log_dir, 1, SEGMENT_BYTES, &LogMeta::default())?;
                fsync_dir(dir)?;
                recover(&log_dir)?
            }
            other => other?,
        };
        let (seq, _) = *recovered.segments.last().expect("a segment");
        let file = recovered.index.files[&seq].clone();
        let shared = Arc::new(Shared {
            dir: log_dir.clone(),
            cache: Mutex::new(BTreeMap::new()),
            durable: Mutex::new(recovered.index),
            last_purged: Mutex::new(recovered.meta.last_purged),
            vote: Mutex::new(recovered.meta.vote),
            committed_at_start: recovered.meta.committed,
        });
        let mut writer = Writer {
            dir: log_dir,
            seq,
            file,
            write_offset: recovered.write_offset,
            segment_size: recovered.segment_size,
            segments: recovered.segments,
            meta: recovered.meta,
            group: Vec::new(),
        };
        let (sender, queue) = mpsc::channel();
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || run_writer(&mut writer, &thread_shared, &queue))?;
        Ok(LogStore {
            shared,
            writer: sender,
        })
    }

    fn send(&self, op: WriteOp) -> io::Result<()> {
        self.writer
            .send(op)
            .map_err(|_| io::Error::other("raft log writer has stopped"))
    }

    /// Durable entries in `[start, end)` read from the segments (blocking).
    fn read_durable(shared: &Shared, start: u64, end: u64) -> io::Result<Vec<Entry>> {
        // A purge is applied to the index only once it is written; it is in effect at once.
        let start = match *lock(&shared.last_purged) {
            Some(purged) => start.max(purged.index + 1),
            None => start,
        };
        let wanted: Vec<(Location, Arc<File>)> = {
            let durable = lock(&shared.durable);
            let Some(last) = durable.last() else {
                return Ok(Vec::new());
            };
            let from = start.max(durable.first);
            let to = end.min(last + 1);
            (from..to)
                .map(|i| {
                    let location = durable.locations[(i - durable.first) as usize];
                    let file = durable.files[&location.seq].clone();
                    (location, file)
                })
                .collect()
        };
        let mut entries = Vec::with_capacity(wanted.len());
        let mut buf = Vec::new();
        for (location, file) in wanted {
            buf.resize(location.len as usize, 0);
            file.read_exact_at(&mut buf, location.offset)?;
            match postcard::from_bytes::<Record<Entry>>(&buf) {
                Ok(Record::Entry(entry)) => entries.push(entry),
                _ => {
                    return Err(damaged_log(
                        &shared.dir,
                        format!(
                            "the record of an entry in segment {} does not decode",
                            location.seq
                        ),
                    ));
                }
            }
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

/// The writer thread: drains the queue, writes one group, completes callbacks in order.
fn run_writer(writer: &mut Writer, shared: &Shared, queue: &mpsc::Receiver<WriteOp>) {
    // Operations nobody waits for (the commit index, purges) ride along with the next group
    // somebody does wait for, instead of costing an fsync of their own.
    let mut deferred: Vec<WriteOp> = Vec::new();
    while let Ok(first) = queue.recv() {
        let mut ops = std::mem::take(&mut deferred);
        ops.push(first);
        while ops.len() < OPS_PER_GROUP_MAX {
            match queue.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        if ops.iter().all(WriteOp::is_unawaited) && ops.len() < OPS_PER_GROUP_MAX {
            deferred = ops;
            continue;
        }
        let result = writer.write_group(shared, &ops);
        if let Err(err) = &result {
            tracing::error!(error = %err, "raft log write failed");
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
        if result.is_err() {
            // The file's end is unknown after a failed write: stop rather than write past a
            // hole. openraft stops on the error reported above.
            return;
        }
        if let Some(flushed_max) = flushed_max {
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
                let last = lock(&self.shared.durable).last();
                match last {
                    Some(last) => {
                        let shared = self.shared.clone();
                        tokio::task::spawn_blocking(move || {
                            Self::read_durable(&shared, last, last + 1)
                        })
                        .await
                        .map_err(io_error)??
                        .pop()
                        .map(|e| e.log_id)
                    }
                    None => None,
                }
                .or(last_purged)
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
        Ok(self.shared.committed_at_start)
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

    struct SegmentStoreBuilder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for SegmentStoreBuilder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
            let dir = tempfile::tempdir().expect("temp dir");
            let log = LogStore::open(dir.path()).expect("open log store");
            let disk = crate::disk::DiskSpace::new(dir.path(), 0);
            let sm = StateMachine::open(dir.path(), 1 << 20, disk).expect("open state machine");
            Ok((dir, log, sm))
        }
    }

    /// openraft's own conformance suite for log storage, run against the segment log.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn log_store_passes_openraft_suite() -> Result<(), StorageError<TypeConfig>> {
        Suite::test_all(SegmentStoreBuilder).await?;
        Ok(())
    }
}
