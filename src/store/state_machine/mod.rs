//! The replicated state machine: keys and values in `sm.redb`, applied in log order.
//!
//! # What it owns
//! The keyspace tables (`store::keyspace`), and in the `meta` table the last applied log id,
//! the last membership, the state machine clock and the client sessions (`store::sessions`:
//! which identified requests were applied and their replies), written in the same redb
//! transaction as the data they describe, so they can never disagree after a crash. Snapshots
//! carry the sessions too, so a request sent again is recognized on every node, after a
//! restart, a snapshot install or a leader change.
//!
//! # Time
//! Each command carries the leader's clock. The state machine's clock is the largest time any
//! applied entry carried, so it never goes backwards even if a new leader's clock is behind:
//! a key that expired stays expired.
//!
//! # Layers and durability
//! Apply writes into the active in-memory layer of [`Layers`] (no redb transaction per batch),
//! in place, holding the published view's lock for one batch; readers clone the layers (O(1))
//! under that lock, so a read waits for at most one batch and apply copies a node only when a
//! reader still holds it. Once the active layer holds `FLUSH_BYTES` or is `FLUSH_INTERVAL` old
//! it is frozen and a background thread writes it, with the matching `last_applied`,
//! membership and clock, to `sm.redb` in one durable transaction, then swaps it for a new base.
//! A crash loses only layers not yet written: the state machine comes back at its last flush
//! with a matching `last_applied`, and openraft re-applies the log from there. That is safe
//! while the log still holds every entry above the last flush: openraft purges the log only
//! below a snapshot, and [`SnapshotBuilder::build_snapshot`] flushes every applied entry before
//! it reads the snapshot from redb.
//!
//! # Integrity
//! The log is checksummed; so is `sm.redb`: redb keeps a checksum of every page in its parent
//! and of each root in the commit slot. Every open verifies all of them
//! (`set_check_integrity_on_open`), not only after a crash, so damage after a clean stop (a
//! flipped byte, a cut file) is caught before anything is served. Three outcomes:
//! - everything verifies: the node starts;
//! - the newest commit fails but the one before verifies: redb falls back to it. That is a
//!   consistent older state (data, `last_applied`, membership, clock and sessions are one
//!   transaction), and nothing is lost: openraft installs the newest snapshot if it is newer
//!   than that `last_applied`, then re-applies the log above it. The log holds every entry above
//!   the newest snapshot, because it is purged only below a snapshot, and a snapshot file is
//!   synced before openraft purges (built from a durable flush, or installed and renamed then
//!   the directory synced);
//! - nothing verifies, or the file is cut short: the node refuses to start, saying so. The same
//!   argument makes moving `sm.redb` aside safe: the next start rebuilds it from the newest
//!   snapshot and the log (`tests/disk.rs` does this).
//!
//! Snapshot files carry a CRC-32 of their records, checked with the pair count as a snapshot
//! installs; one received from the leader is checked in full before raft sees it
//! ([`verify_snapshot_file`]), so a damaged transfer is refused and sent again.
//!
//! The check of `sm.redb` reads the whole file once at start: 0.1 s for 200k keys (71 MB), 0.7–1.8 s for 1M
//! (285 MB) on a 2-core box. After a crash redb walks the same checksums to recover anyway, so
//! a restart after kill -9 costs no more than before.
//!
//! # Disk space
//! On a nearly full disk (see [`DiskSpace::is_tight_for`]) every apply batch is flushed before
//! it answers, so the space it takes shows at once (to admission control, or as an error before
//! the write is acknowledged) and re-applying the log after a restart fits in the same space.
//! A snapshot that would not fit in the free space (about the newest snapshot's size plus a
//! margin) is deferred rather than left to fail half-way: openraft asks again after later
//! applies and the log is purged once one fits.
//!
//! # Must not
//! Read a clock or randomness during apply (replicas must compute identical results), or run redb
//! IO on a tokio worker (it runs under `spawn_blocking` or on the flush thread). Storage failures are returned as
//! `io::Error`, which stops the raft node rather than let replicas diverge.

mod snapshot;

pub use snapshot::{SnapshotBuilder, verify_snapshot_file};
use snapshot::{SnapshotDir, install, read_snapshot_header};

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use redb::{Database, ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::disk::{Claim, DiskSpace};
use crate::raft::{LogId, SnapshotFile, SnapshotMeta, StoredMembership, TypeConfig};
use crate::raft::{Request, Response};
use crate::resp::Reply;
use crate::store::commands;
use crate::store::keyspace::{Keyspace, View};
use crate::store::layers::{Base, Layer, Layers, write_layer};
use crate::store::schema::{self, ReadTable, SCHEMA};
use crate::store::sessions::{Seen, Sessions, forgotten_response};

/// State machine bookkeeping (`last_applied`, `membership`), versioned postcard values.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const META_LAST_APPLIED: &str = "last_applied";
const META_MEMBERSHIP: &str = "membership";
const META_CLOCK: &str = "clock";
const META_SESSIONS: &str = "sessions";

/// Format version of every value this module persists (meta values and snapshot files).
const FORMAT_VERSION: u8 = 1;
/// Free space a snapshot needs beyond its estimated size.
const SNAPSHOT_SPACE_MARGIN: u64 = 8 * 1024 * 1024;
/// The active layer is frozen and flushed to redb once it holds this much…
const FLUSH_BYTES: usize = 32 * 1024 * 1024;
/// …or is this old.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Apply waits for the flush in flight when the active layer has grown this large meanwhile.
const FLUSH_BACKPRESSURE_BYTES: usize = 4 * FLUSH_BYTES;

/// Errors that stop the node: anything from redb or the filesystem.
fn io_error(err: impl std::fmt::Display) -> io::Error {
    io::Error::other(err.to_string())
}

/// Explains a damaged `sm.redb` and what to do about it.
fn damaged_state_machine(path: &Path, detail: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "the state machine {} is damaged ({detail}); refusing to start rather than serve \
             values that may be wrong. Move the file aside (e.g. to sm.redb.damaged) and start \
             again: the node rebuilds it from its newest snapshot and its raft log. Should that \
             fail, in a cluster: remove this member (`redraft cluster remove`), empty its data \
             directory and add it back; a single node: restore its data directory from a backup",
            path.display()
        ),
    )
}

/// Opens (or creates) `sm.redb`, verifying every page of its committed trees against redb's
/// checksums (see the module doc, "Integrity"). Damage redb cannot repair is an `InvalidData`
/// error that explains what to do.
fn open_verified(path: &Path, cache_size_bytes: usize) -> io::Result<Database> {
    let started = Instant::now();
    let repaired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let noted = repaired.clone();
    let db = Database::builder()
        .set_cache_size(cache_size_bytes)
        .set_check_integrity_on_open(true)
        .set_repair_callback(move |session| {
            // Progress 0.3 is reported only when the newest commit failed its checksums and
            // redb falls back to the commit before it.
            if session.progress() > 0.0 && session.progress() < 0.5 {
                noted.store(true, Ordering::Relaxed);
            }
        })
        .create(path)
        .map_err(|err| match err {
            redb::DatabaseError::Storage(redb::StorageError::Corrupted(detail)) => {
                damaged_state_machine(path, detail)
            }
            redb::DatabaseError::Storage(redb::StorageError::Io(err))
                if err.kind() == io::ErrorKind::UnexpectedEof =>
            {
                damaged_state_machine(path, "the file is cut short")
            }
            other => io_error(other),
        })?;
    if repaired.load(Ordering::Relaxed) {
        tracing::warn!(
            path = %path.display(),
            "the newest commit of the state machine failed its checksums; redb fell back to the \
             commit before it, and the log re-applies what that commit lacks"
        );
    }
    tracing::info!(
        path = %path.display(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "state machine opened and verified"
    );
    Ok(db)
}

fn encode_meta<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    let mut out = vec![FORMAT_VERSION];
    postcard::to_io(value, &mut out).map_err(io_error)?;
    Ok(out)
}

fn decode_meta<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> io::Result<T> {
    match bytes.split_first() {
        Some((&FORMAT_VERSION, rest)) => postcard::from_bytes(rest).map_err(io_error),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "state machine metadata has an unknown format version",
        )),
    }
}

/// A read served by the local state machine once it has applied up to the read's index: a
/// read-only command, name first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Read {
    /// The command and its arguments.
    pub args: Vec<Bytes>,
}

/// Reads the applied state outside of raft, for reads already linearized by the caller.
#[derive(Clone)]
pub struct StoreReader {
    shared: Arc<Shared>,
    clock: Arc<AtomicI64>,
}

impl StoreReader {
    /// The time reads run at: the later of this node's clock and the state machine's clock, so
    /// a key that expired in the log never shows again.
    fn now_ms(&self) -> i64 {
        crate::clock::wall_clock_ms().max(self.clock.load(Ordering::Acquire))
    }

    /// Serves `reads` from one consistent view of everything applied so far.
    pub fn read_many(&self, reads: &[Read]) -> io::Result<Vec<Reply>> {
        let mut view = View::reader(self.shared.layers(), self.now_ms());
        let mut out = Vec::with_capacity(reads.len());
        for read in reads {
            out.push(commands::execute(&mut view, &read.args).map_err(io_error)?);
        }
        Ok(out)
    }

    /// [`Self::read_many`] on the calling task, for a round of small reads (each one that
    /// `runs_in_place`, a bounded number of them) while no apply holds the state:
    /// `None` otherwise, and the caller reads on the blocking pool. A thread hand-off costs
    /// more than such a round.
    pub fn read_many_in_place(&self, reads: &[Read]) -> Option<io::Result<Vec<Reply>>> {
        if reads.len() > LIGHT_BATCH_REQUESTS_MAX || !reads.iter().all(|r| runs_in_place(&r.args)) {
            return None;
        }
        let layers = self.shared.published.try_lock().ok()?.layers.clone();
        let mut view = View::reader(layers, self.now_ms());
        Some(
            reads
                .iter()
                .map(|read| commands::execute(&mut view, &read.args).map_err(io_error))
                .collect(),
        )
    }

    /// Keys past their deadline at `now_ms` (for the leader's active expiry), at most `limit`.
    pub fn due_keys(&self, now_ms: i64, limit: usize) -> io::Result<Vec<Bytes>> {
        View::reader(self.shared.layers(), now_ms)
            .due_keys(now_ms, limit)
            .map_err(io_error)
    }

    /// Client sessions and the replies they keep, as this node applied them (INFO).
    pub fn session_counts(&self) -> (usize, usize) {
        lock(&self.shared.published).applied.sessions.counts()
    }

    /// A receiver that sees a change after every applied batch and installed snapshot.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    /// Number of keys, without linearizing (INFO keyspace).
    pub fn key_count(&self) -> io::Result<u64> {
        let mut view = View::reader(self.shared.layers(), self.now_ms());
        commands::keys::live_key_count(&mut view).map_err(io_error)
    }
}

/// What the state machine has applied: stored with the rows it describes.
#[derive(Clone, Debug, Default)]
struct AppliedState {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    clock: i64,
    sessions: Sessions,
}

impl AppliedState {
    /// The applied state `txn` sees.
    fn read(txn: &redb::ReadTransaction) -> io::Result<AppliedState> {
        let meta = txn.open_table(META).map_err(io_error)?;
        let get = |name: &str| -> io::Result<Option<Vec<u8>>> {
            Ok(meta
                .get(name)
                .map_err(io_error)?
                .map(|v| v.value().to_vec()))
        };
        Ok(AppliedState {
            last_applied: match get(META_LAST_APPLIED)? {
                Some(v) => decode_meta(&v)?,
                None => None,
            },
            membership: match get(META_MEMBERSHIP)? {
                Some(v) => decode_meta(&v)?,
                None => StoredMembership::default(),
            },
            clock: match get(META_CLOCK)? {
                Some(v) => decode_meta(&v)?,
                None => 0,
            },
            sessions: match get(META_SESSIONS)? {
                Some(v) => decode_meta(&v)?,
                None => Sessions::default(),
            },
        })
    }

    fn write(&self, txn: &redb::WriteTransaction) -> io::Result<()> {
        let mut meta = txn.open_table(META).map_err(io_error)?;
        meta.insert(
            META_LAST_APPLIED,
            encode_meta(&self.last_applied)?.as_slice(),
        )
        .map_err(io_error)?;
        meta.insert(META_MEMBERSHIP, encode_meta(&self.membership)?.as_slice())
            .map_err(io_error)?;
        meta.insert(META_CLOCK, encode_meta(&self.clock)?.as_slice())
            .map_err(io_error)?;
        meta.insert(META_SESSIONS, encode_meta(&self.sessions)?.as_slice())
            .map_err(io_error)?;
        Ok(())
    }
}

/// The applied state as readers, apply and the flusher share it.
struct Published {
    layers: Layers,
    applied: AppliedState,
    /// When the active layer was last frozen (or the state machine opened).
    last_freeze: Instant,
    /// Entries were applied since then (some change only `applied`, not the rows).
    unflushed: bool,
    /// Why a flush failed: every later apply fails with it, which stops raft.
    flush_failure: Option<String>,
}

/// A frozen layer and the applied state it brings redb to.
struct Frozen {
    layer: Arc<Layer>,
    applied: AppliedState,
}

/// State shared by the state machine, its readers, snapshot builders and flushes.
struct Shared {
    db: Arc<Database>,
    published: Mutex<Published>,
    /// Notified when a frozen layer has been flushed (or failed to).
    flushed: Condvar,
    /// Held by whoever changes the active layer: apply, a snapshot's flush, a snapshot install.
    writer: Mutex<()>,
    /// Told when a flush has made admitted writes durable.
    disk: DiskSpace,
    /// Moves after every applied batch and installed snapshot (blocked clients look again).
    changes: tokio::sync::watch::Sender<u64>,
    /// Where the keyspace notifications of each applied batch go (see
    /// [`StateMachine::publish_events_to`]).
    events: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<Events>>,
}

/// Keyspace notifications of one applied batch: (channel, message) pairs in log order.
pub type Events = Vec<(Bytes, Bytes)>;

/// Locks a mutex; a panic while it was held already stopped the node, so poison is ignored.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn layers(&self) -> Layers {
        lock(&self.published).layers.clone()
    }

    /// Waits until no frozen layer is in flight; fails if a flush failed.
    fn wait_flushed<'a>(
        &'a self,
        mut published: MutexGuard<'a, Published>,
    ) -> io::Result<MutexGuard<'a, Published>> {
        loop {
            if let Some(failure) = &published.flush_failure {
                return Err(io_error(format!("state machine flush failed: {failure}")));
            }
            if published.layers.frozen().is_none() {
                return Ok(published);
            }
            published = self
                .flushed
                .wait(published)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// Freezes the active layer (first waiting for one in flight); `None` if it is empty.
    /// The caller holds `writer`.
    fn freeze(&self) -> io::Result<Option<Frozen>> {
        let mut published = self.wait_flushed(lock(&self.published))?;
        if !published.unflushed {
            return Ok(None);
        }
        published.last_freeze = Instant::now();
        published.unflushed = false;
        Ok(Some(Frozen {
            layer: published.layers.freeze(),
            applied: published.applied.clone(),
        }))
    }

    /// Writes a frozen layer to redb in one durable transaction, then reads through a new base.
    fn flush(&self, frozen: Frozen) -> io::Result<()> {
        let written = (|| {
            let txn = self.db.begin_write().map_err(io_error)?;
            write_layer(&frozen.layer, &txn).map_err(io_error)?;
            frozen.applied.write(&txn)?;
            txn.commit().map_err(io_error)?;
            Base::open(&self.db.begin_read().map_err(io_error)?).map_err(io_error)
        })();
        let mut published = lock(&self.published);
        let outcome = match written {
            Ok(base) => {
                published.layers.replace_base(base);
                Ok(())
            }
            Err(err) => {
                tracing::error!(error = %err, "state machine flush failed");
                published.flush_failure = Some(err.to_string());
                Err(err)
            }
        };
        drop(published);
        self.flushed.notify_all();
        self.disk.settle();
        outcome
    }

    /// Flushes what was applied more than `FLUSH_INTERVAL` ago when no apply came since to do it
    /// (blocking): an idle node holds no stale layer in memory and replays little after a crash.
    fn flush_if_idle(&self) -> io::Result<()> {
        {
            let published = lock(&self.published);
            if !published.unflushed
                || published.layers.frozen().is_some()
                || published.last_freeze.elapsed() < FLUSH_INTERVAL
            {
                return Ok(());
            }
        }
        self.flush_all()
    }

    /// Makes everything applied so far durable in redb (blocking).
    fn flush_all(&self) -> io::Result<()> {
        let frozen = {
            let _writer = lock(&self.writer);
            self.freeze()?
        };
        match frozen {
            Some(frozen) => self.flush(frozen),
            None => Ok(()),
        }
    }
}

fn sync_dir(path: &Path) -> io::Result<()> {
    crate::durable::sync_dir(path)
}

/// The state machine openraft drives.
pub struct StateMachine {
    shared: Arc<Shared>,
    clock: Arc<AtomicI64>,
    snapshots: SnapshotDir,
    /// Checked before a snapshot is built (no reserve: always built).
    disk: DiskSpace,
    /// Whether the last snapshot attempt was deferred for lack of space (logged once).
    snapshot_deferred: bool,
}

impl StateMachine {
    /// Sends the keyspace notifications of every batch applied from now on to `sink`
    /// (`notify-keyspace-events`); the first sink set stays.
    pub fn publish_events_to(&self, sink: tokio::sync::mpsc::UnboundedSender<Events>) {
        let _ = self.shared.events.set(sink);
    }

    /// Opens (or creates) `dir/sm.redb` and `dir/snapshots/`; `disk` defers snapshots that would
    /// not fit (one failing half-way for lack of space would stop raft) and learns when flushes
    /// make admitted writes durable.
    pub fn open(dir: &Path, cache_size_bytes: usize, disk: DiskSpace) -> io::Result<StateMachine> {
        let snapshot_path = dir.join("snapshots");
        crate::durable::create_dir_all(&snapshot_path)?;
        let db = open_verified(&dir.join("sm.redb"), cache_size_bytes)?;
        // redb syncs the file, not its name: without this a power loss loses the whole file.
        crate::durable::sync_entry(&dir.join("sm.redb"))?;
        // Tables are created once; opening existing ones writes nothing more here (the open-time
        // integrity check above may commit a repair of its own; a full disk still opens).
        let has_tables = {
            let txn = db.begin_read().map_err(io_error)?;
            schema::all_exist(&txn) && txn.open_table(META).is_ok()
        };
        if !has_tables {
            let txn = db.begin_write().map_err(io_error)?;
            schema::create_all(&txn).map_err(io_error)?;
            txn.open_table(META).map_err(io_error)?;
            txn.commit().map_err(io_error)?;
        }
        let applied = AppliedState::read(&db.begin_read().map_err(io_error)?)?;
        let clock = Arc::new(AtomicI64::new(applied.clock));
        let layers =
            Layers::new(Base::open(&db.begin_read().map_err(io_error)?).map_err(io_error)?)
                .map_err(io_error)?;
        let shared = Arc::new(Shared {
            db: Arc::new(db),
            published: Mutex::new(Published {
                layers,
                applied,
                last_freeze: Instant::now(),
                unflushed: false,
                flush_failure: None,
            }),
            flushed: Condvar::new(),
            writer: Mutex::new(()),
            disk: disk.clone(),
            changes: tokio::sync::watch::Sender::new(0),
            events: std::sync::OnceLock::new(),
        });
        // Until the state machine is dropped, flush layers that no apply came to flush.
        let idle = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("sm-idle-flush".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(FLUSH_INTERVAL);
                    let Some(shared) = idle.upgrade() else { return };
                    if shared.flush_if_idle().is_err() {
                        return;
                    }
                }
            })?;
        let snapshots = SnapshotDir {
            path: snapshot_path,
        };
        snapshots.remove_leftovers()?;
        Ok(StateMachine {
            clock,
            shared,
            snapshots,
            disk,
            snapshot_deferred: false,
        })
    }

    /// Claims the disk space a new snapshot needs: about as much as the newest one (or, before
    /// the first, as the state machine file occupies) plus a margin. `None` if it does not fit.
    fn claim_snapshot_space(&self) -> Option<Claim> {
        // Allocated bytes, not the length: redb files are sparse.
        let occupied = |path: &Path| fs::metadata(path).map_or(0, |m| m.blocks() * 512);
        let estimate = match self.snapshots.newest() {
            // The data may have grown since the newest snapshot: what its tables hold now.
            Ok(Some(newest)) => occupied(&newest).max(self.stored_bytes().unwrap_or(0)),
            _ => occupied(&self.snapshots.path.with_file_name("sm.redb")),
        };
        let needed = estimate
            .saturating_add(estimate / 4)
            .saturating_add(SNAPSHOT_SPACE_MARGIN);
        self.disk.claim(needed)
    }

    /// Bytes of keys and values the state machine's tables hold in redb.
    fn stored_bytes(&self) -> Result<u64, redb::Error> {
        let txn = self.shared.db.begin_read()?;
        let mut bytes = 0;
        for schema in SCHEMA.iter().filter(|schema| schema.stored_data) {
            bytes += ReadTable::open(schema.table, &txn)?.stored_bytes()?;
        }
        Ok(bytes)
    }

    /// Applies `batch` on the calling task when it is small work with nothing to wait for
    /// (no flush asked, none in flight, the writer lock free): handing it to the blocking pool
    /// and back would cost more than the work, two thread wake-ups per batch. Gives the batch
    /// back otherwise.
    fn apply_in_place(&self, batch: Entries, flush: bool) -> io::Result<Result<Applied, Entries>> {
        if flush || !is_light(&batch) {
            return Ok(Err(batch));
        }
        let Ok(writer) = self.shared.writer.try_lock() else {
            return Ok(Err(batch));
        };
        if lock(&self.shared.published).layers.frozen().is_some() {
            return Ok(Err(batch));
        }
        apply_batch(&self.shared, writer, batch, false, &self.clock).map(Ok)
    }

    /// A handle for reads outside of raft.
    pub fn reader(&self) -> StoreReader {
        StoreReader {
            shared: self.shared.clone(),
            clock: self.clock.clone(),
        }
    }
}

/// Applies one request to the active layer; returns its response. An identified request that
/// was applied before is answered from the session table instead.
fn apply_request(
    view: &mut View,
    request: &Request,
    state: &mut AppliedState,
    index: u64,
) -> io::Result<Response> {
    let clock = &mut state.clock;
    Ok(match request {
        Request::Command { args, now_ms } => {
            *clock = (*clock).max(*now_ms);
            view.at(*clock, index);
            Response::Reply(commands::execute(view, args).map_err(io_error)?)
        }
        Request::Expire { keys, now_ms } => {
            *clock = (*clock).max(*now_ms);
            view.at(*clock, index);
            let mut removed = 0;
            for key in keys {
                // Only keys still past their deadline now: one refreshed meanwhile stays.
                removed += i64::from(view.expire_if_due(key).map_err(io_error)?);
            }
            Response::Reply(Reply::Integer(removed))
        }
        Request::Exec {
            commands,
            watched,
            now_ms,
        } => {
            *clock = (*clock).max(*now_ms);
            view.at(*clock, index);
            let mut changed = false;
            for (key, revision) in watched {
                let current = view
                    .record(key)
                    .map_err(io_error)?
                    .map_or(0, |r| r.revision);
                changed |= current != *revision;
            }
            if changed {
                Response::Reply(Reply::NilArray)
            } else {
                let mut replies = Vec::with_capacity(commands.len());
                for command in commands {
                    replies.push(commands::execute(view, command).map_err(io_error)?);
                }
                Response::Reply(Reply::Array(replies))
            }
        }
        Request::Batch(requests) => Response::Batch(
            requests
                .iter()
                .map(|r| apply_request(view, r, state, index))
                .collect::<io::Result<_>>()?,
        ),
        Request::Identified {
            id,
            answered_below,
            request,
        } => {
            let now_ms = (*clock).max(stamped_ms(request));
            match state.sessions.check(*id, *answered_below, now_ms) {
                Seen::Applied(response) => response,
                Seen::Forgotten => forgotten_response(),
                Seen::New => {
                    let response = apply_request(view, request, state, index)?;
                    state.sessions.record(*id, response.clone(), now_ms);
                    response
                }
            }
        }
    })
}

/// The leader's time stamped on a request (0 for none).
fn stamped_ms(request: &Request) -> i64 {
    match request {
        Request::Command { now_ms, .. }
        | Request::Expire { now_ms, .. }
        | Request::Exec { now_ms, .. } => *now_ms,
        Request::Batch(requests) => requests.iter().map(stamped_ms).max().unwrap_or(0),
        Request::Identified { request, .. } => stamped_ms(request),
    }
}

/// Most requests, and most payload bytes, of an apply batch run in place on the state machine
/// task (see [`is_light`]): about a millisecond of work at most.
const LIGHT_BATCH_REQUESTS_MAX: usize = 2048;
const LIGHT_BATCH_BYTES_MAX: usize = 1024 * 1024;

/// Commands whose cost grows only with their own arguments, not with the data they touch,
/// besides those Redis flags `fast` (SET is not `fast` in Redis's table, for its options).
const PROPORTIONAL_TO_ARGUMENTS: &[&str] = &[
    "set",
    "setex",
    "psetex",
    "setnx",
    "getset",
    "getdel",
    "getex",
    "mset",
    "msetnx",
    "append",
    "setrange",
    "incrbyfloat",
    "hset",
    "hmset",
    "hsetnx",
    "hdel",
    "lpush",
    "rpush",
    "lpushx",
    "rpushx",
    "lpop",
    "rpop",
    "sadd",
    "srem",
    "zadd",
    "zrem",
    "zincrby",
    "expire",
    "pexpire",
    "expireat",
    "pexpireat",
    "persist",
    "pfadd",
];

/// Whether the command `args` is cheap enough to run on the runtime thread rather than on the
/// blocking pool: one Redis flags `fast` or one that costs only its arguments (scripts,
/// transactions, multi-key set algebra, DEL of what may be a large key, FLUSHALL and the like
/// are not).
fn runs_in_place(args: &[Bytes]) -> bool {
    args.first()
        .and_then(|name| crate::redis::table::lookup(name))
        .is_some_and(|spec| {
            // UNLINK is `fast` because Redis frees in the background; here it removes every row
            // of what may be a large key.
            (spec.flags.contains(&"fast") && spec.name != "unlink")
                || PROPORTIONAL_TO_ARGUMENTS.contains(&spec.name)
        })
}

/// Whether applying `batch` can run on the state machine's task: every request
/// [`runs_in_place`], and the batch stays under [`LIGHT_BATCH_REQUESTS_MAX`] requests and
/// [`LIGHT_BATCH_BYTES_MAX`] bytes of arguments.
fn is_light(batch: &[EntryResponder<TypeConfig>]) -> bool {
    /// What is left of the batch's allowance.
    struct Budget {
        requests: usize,
        bytes: usize,
    }
    fn light(request: &Request, budget: &mut Budget) -> bool {
        match request {
            Request::Command { args, .. } => {
                budget.requests = budget.requests.saturating_sub(1);
                let bytes: usize = args.iter().map(Bytes::len).sum();
                budget.bytes = budget.bytes.saturating_sub(bytes);
                runs_in_place(args)
            }
            Request::Expire { keys, .. } => {
                budget.requests = budget.requests.saturating_sub(keys.len());
                true
            }
            Request::Exec { .. } => false,
            Request::Batch(requests) => requests.iter().all(|r| light(r, budget)),
            Request::Identified { request, .. } => light(request, budget),
        }
    }
    let mut budget = Budget {
        requests: LIGHT_BATCH_REQUESTS_MAX,
        bytes: LIGHT_BATCH_BYTES_MAX,
    };
    batch.iter().all(|(entry, _)| match &entry.payload {
        EntryPayload::Normal(request) => light(request, &mut budget),
        EntryPayload::Blank | EntryPayload::Membership(_) => true,
    }) && budget.requests > 0
        && budget.bytes > 0
}

/// A batch of committed entries to apply, each with its responder.
type Entries = Vec<EntryResponder<TypeConfig>>;

/// The outcome of one applied entry: its response, to send once the batch is committed.
type Applied = Vec<(
    Option<openraft::storage::ApplyResponder<TypeConfig>>,
    Response,
)>;

/// Applies a batch of entries to the active layer, holding `writer`; with `flush`, or once the layer
/// is large or old enough, freezes it and writes it to redb: at once with `flush`, otherwise on
/// a flush thread.
fn apply_batch(
    shared: &Arc<Shared>,
    writer: MutexGuard<'_, ()>,
    entries: Entries,
    flush: bool,
    clock: &AtomicI64,
) -> io::Result<Applied> {
    // Readers wait for the batch (they copy the view under this lock): apply then changes the
    // only copy of the active layer in place instead of copying every node it touches.
    let mut published = lock(&shared.published);
    if let Some(failure) = &published.flush_failure {
        return Err(io_error(format!("state machine flush failed: {failure}")));
    }
    // Taken, not cloned: the only copy changes in place (a clone would make the session table
    // copy every node it touches). Readers wait for the lock, and both go back before it drops.
    let mut state = std::mem::take(&mut published.applied);
    let mut view = View::writer(published.layers.take());
    let mut applied = Vec::with_capacity(entries.len());
    let mut outcome = Ok(());
    for (entry, responder) in entries {
        let response = match &entry.payload {
            EntryPayload::Blank => Response::Reply(Reply::ok()),
            EntryPayload::Normal(request) => {
                match apply_request(&mut view, request, &mut state, entry.log_id.index) {
                    Ok(response) => response,
                    Err(err) => {
                        outcome = Err(err);
                        break;
                    }
                }
            }
            EntryPayload::Membership(m) => {
                state.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                Response::Reply(Reply::ok())
            }
        };
        state.last_applied = Some(entry.log_id);
        applied.push((responder, response));
    }
    let events = view.take_events();
    published.layers = view.into_layers();
    if let Err(err) = outcome {
        published.applied = state;
        // Part of an entry is in the layer: it must never reach redb (raft stops on this).
        published.flush_failure = Some(format!("apply failed: {err}"));
        return Err(err);
    }
    clock.fetch_max(state.clock, Ordering::AcqRel);
    published.applied = state;
    published.unflushed = true;
    if !events.is_empty()
        && let Some(sink) = shared.events.get()
    {
        // Still under the published lock: batches' events leave in log order.
        let _ = sink.send(events);
    }
    let active = published.layers.active();
    let in_flight = published.layers.frozen().is_some();
    let due = active.bytes() >= FLUSH_BYTES || published.last_freeze.elapsed() >= FLUSH_INTERVAL;
    // With a flush in flight a due layer waits for it, unless it has grown far too large.
    let due = flush || (due && !in_flight) || active.bytes() >= FLUSH_BACKPRESSURE_BYTES;
    drop(published);
    if due && let Some(frozen) = shared.freeze()? {
        drop(writer);
        if flush {
            shared.flush(frozen)?;
        } else {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("sm-flush".into())
                .spawn(move || shared.flush(frozen))
                .map_err(io_error)?;
        }
    }
    Ok(applied)
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        let applied = lock(&self.shared.published).applied.clone();
        Ok((applied.last_applied, applied.membership))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut batch = Vec::new();
        while let Some(item) = entries.try_next().await? {
            batch.push(item);
        }
        if batch.is_empty() {
            return Ok(());
        }
        // On a nearly full disk every batch is flushed at once, so the space it takes shows.
        let pending = lock(&self.shared.published).layers.active().bytes() as u64;
        let flush = self.disk.is_tight_for(pending);
        let applied = match self.apply_in_place(batch, flush)? {
            Ok(applied) => applied,
            Err(batch) => {
                let shared = self.shared.clone();
                let clock = self.clock.clone();
                tokio::task::spawn_blocking(move || {
                    apply_batch(&shared, lock(&shared.writer), batch, flush, &clock)
                })
                .await
                .map_err(io_error)??
            }
        };
        for (responder, response) in applied {
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        self.shared.changes.send_modify(|changes| *changes += 1);
        Ok(())
    }

    async fn try_create_snapshot_builder(&mut self, force: bool) -> Option<SnapshotBuilder> {
        let space = self.claim_snapshot_space();
        if space.is_none() && !force {
            if !self.snapshot_deferred {
                tracing::warn!(
                    "not enough free disk space for a snapshot; deferred until space is freed \
                     (the raft log is not purged meanwhile)"
                );
            }
            self.snapshot_deferred = true;
            return None;
        }
        if self.snapshot_deferred {
            tracing::info!("disk space freed; building the deferred snapshot");
        }
        self.snapshot_deferred = false;
        let mut builder = self.get_snapshot_builder().await;
        builder.space = space;
        Some(builder)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            shared: self.shared.clone(),
            snapshots: self.snapshots.clone(),
            space: None,
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotFile,
    ) -> io::Result<()> {
        let shared = self.shared.clone();
        let clock = self.clock.clone();
        let snapshots = self.snapshots.clone();
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || {
            install(&shared, &snapshot.path, &meta, &clock)?;
            let final_path = snapshots.file_for(&meta);
            if snapshot.path != final_path {
                fs::rename(&snapshot.path, &final_path)?;
            }
            sync_dir(&snapshots.path)?;
            snapshots.remove_older()
        })
        .await
        .map_err(io_error)??;
        self.shared.changes.send_modify(|changes| *changes += 1);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> io::Result<Option<openraft::alias::SnapshotOf<TypeConfig, SnapshotFile>>> {
        let snapshots = self.snapshots.clone();
        tokio::task::spawn_blocking(move || {
            let Some(path) = snapshots.newest()? else {
                return Ok(None);
            };
            let header = read_snapshot_header(&mut BufReader::new(File::open(&path)?))?;
            Ok(Some(openraft::alias::SnapshotOf::<
                TypeConfig,
                SnapshotFile,
            > {
                meta: SnapshotMeta {
                    last_log_id: header.last_log_id,
                    last_membership: header.last_membership,
                },
                snapshot: SnapshotFile { path },
            }))
        })
        .await
        .map_err(io_error)?
    }
}
