//! A lazy filesystem for power-loss tests: an in-memory FUSE filesystem on which nothing is
//! durable until it is synced, the least POSIX promises and what a disk with a volatile write
//! cache gives.
//!
//! # Method
//! The test process mounts it itself (`fuser`, a thread serving `/dev/fuse`). Per file it keeps
//! the contents as of the last `fsync`/`fdatasync` and the writes since (in order); per
//! directory, the entries as of its last `fsync`. [`LazyFs::power_loss`] unmounts (whoever used
//! the mount must be killed first), turns every directory back into its synced entries and every
//! file back into its synced contents, drops what no synced entry reaches any more, and mounts
//! again, so no kernel cache survives either. With `tear`, a file may instead keep a prefix of
//! its unsynced writes and some of the 4 KiB pages of the next one (any of them, in any order,
//! never all), as a disk that had written some of their pages would, and a directory a prefix of its unsynced changes (a
//! rename within it whole), as a journal that had committed them would: only unsynced data is
//! ever lost or torn.
//!
//! Honoured: create, mkdir, unlink, rmdir, rename (also over an existing file), read, write,
//! truncate, `fallocate` (allocate, keep size, punch a hole, zero a range), `fsync`,
//! `fdatasync`, `fsync` of a directory, and `statfs` (a fixed capacity less what the files hold:
//! the node's disk-reserve check reads it). Not offered: links, symlinks, extended attributes.
//!
//! A removed file is forgotten once nothing can bring it back: no handle has it open and no
//! directory names it, neither now nor in its synced entries nor in an unsynced change (so
//! long runs that delete log segments and snapshots do not grow without bound).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    BackgroundSession, Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo,
    MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

/// The unit a torn write keeps or loses whole.
pub const PAGE_BYTES: u64 = 4096;
/// What `statfs` reports as the filesystem's size.
pub const CAPACITY_BYTES: u64 = 16 << 30;
/// Unsynced bytes a file remembers write by write; past that a power loss only reverts it whole.
const UNSYNCED_BYTES_MAX: usize = 256 << 20;
/// How long the kernel may cache names and attributes (the mount is new after a power loss).
const ATTR_TTL: Duration = Duration::from_secs(1);
const ROOT: u64 = 1;

/// A change to a file's contents since its last sync.
enum FileOp {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
    Zero { offset: u64, len: u64 },
}

impl FileOp {
    fn apply(&self, data: &mut Vec<u8>) {
        match self {
            FileOp::Write { offset, bytes } => {
                let start = *offset as usize;
                let end = start + bytes.len();
                if data.len() < end {
                    data.resize(end, 0);
                }
                data[start..end].copy_from_slice(bytes);
            }
            FileOp::SetLen(len) => data.resize(*len as usize, 0),
            FileOp::Zero { offset, len } => {
                let start = (*offset as usize).min(data.len());
                let end = ((offset + len) as usize).min(data.len());
                data[start..end].fill(0);
            }
        }
    }

    fn bytes(&self) -> usize {
        match self {
            FileOp::Write { bytes, .. } => bytes.len(),
            _ => 0,
        }
    }
}

struct LazyFile {
    data: Vec<u8>,
    synced: Vec<u8>,
    /// Changes since the last sync, oldest first; `None` once they outgrew `UNSYNCED_BYTES_MAX`.
    unsynced: Option<Vec<FileOp>>,
    unsynced_bytes: usize,
}

impl LazyFile {
    fn change(&mut self, op: FileOp) {
        op.apply(&mut self.data);
        self.unsynced_bytes += op.bytes();
        if self.unsynced_bytes > UNSYNCED_BYTES_MAX {
            self.unsynced = None;
        }
        if let Some(ops) = &mut self.unsynced {
            ops.push(op);
        }
    }

    fn sync(&mut self) {
        match self.unsynced.take() {
            Some(ops) => ops.iter().for_each(|op| op.apply(&mut self.synced)),
            None => self.synced = self.data.clone(),
        }
        self.unsynced = Some(Vec::new());
        self.unsynced_bytes = 0;
    }

    /// The contents after a power loss: the synced ones, or with `torn_after` (a number of
    /// unsynced changes and a page mask) the synced ones with that many changes on top and some
    /// pages of the next one (never all of them: that one is torn).
    fn lose_power(&mut self, torn_after: Option<(usize, u64)>) -> bool {
        let mut data = std::mem::take(&mut self.synced);
        let mut torn = false;
        if let (Some((kept, pages)), Some(ops)) = (torn_after, &self.unsynced)
            && !ops.is_empty()
        {
            let kept = kept % (ops.len() + 1);
            ops[..kept].iter().for_each(|op| op.apply(&mut data));
            torn = kept > 0;
            if let Some(FileOp::Write { offset, bytes }) = ops.get(kept) {
                // Keep some of the pages this write covers, in any order a disk may have
                // written them: page i (counted from the write's first) if bit i % 64 of
                // `pages` is set, but never all of them.
                let end = offset + bytes.len() as u64;
                let mut ranges = Vec::new();
                let mut start = *offset;
                while start < end {
                    let page_end = ((start / PAGE_BYTES + 1) * PAGE_BYTES).min(end);
                    ranges.push((start, page_end));
                    start = page_end;
                }
                let mut keep: Vec<bool> = (0..ranges.len())
                    .map(|i| pages >> (i % 64) & 1 == 1)
                    .collect();
                if keep.iter().all(|&k| k) {
                    keep[(pages as usize >> 8) % ranges.len()] = false;
                }
                for (&(start, page_end), _) in ranges.iter().zip(&keep).filter(|(_, k)| **k) {
                    let at = (start - offset) as usize;
                    FileOp::Write {
                        offset: start,
                        bytes: bytes[at..at + (page_end - start) as usize].to_vec(),
                    }
                    .apply(&mut data);
                    torn = true;
                }
            }
        }
        self.data = data.clone();
        self.synced = data;
        self.unsynced = Some(Vec::new());
        self.unsynced_bytes = 0;
        torn
    }
}

/// A change to a directory's entries since its last sync; a rename within it is one change.
enum DirOp {
    Link { name: OsString, ino: u64 },
    Unlink { name: OsString },
    Rename { from: OsString, to: OsString },
}

impl DirOp {
    fn apply(&self, entries: &mut BTreeMap<OsString, u64>) {
        match self {
            DirOp::Link { name, ino } => {
                entries.insert(name.clone(), *ino);
            }
            DirOp::Unlink { name } => {
                entries.remove(name);
            }
            DirOp::Rename { from, to } => {
                if let Some(ino) = entries.remove(from) {
                    entries.insert(to.clone(), ino);
                }
            }
        }
    }
}

struct LazyDir {
    entries: BTreeMap<OsString, u64>,
    synced: BTreeMap<OsString, u64>,
    /// Changes since the last sync, oldest first.
    unsynced: Vec<DirOp>,
}

impl LazyDir {
    fn new() -> LazyDir {
        LazyDir {
            entries: BTreeMap::new(),
            synced: BTreeMap::new(),
            unsynced: Vec::new(),
        }
    }

    fn change(&mut self, op: DirOp) {
        op.apply(&mut self.entries);
        self.unsynced.push(op);
    }

    fn sync(&mut self) {
        self.synced = self.entries.clone();
        self.unsynced.clear();
    }

    /// The entries after a power loss: the synced ones, with the first `kept` unsynced changes
    /// on top (a journal that had written those). Returns whether unsynced changes were lost.
    fn lose_power(&mut self, kept: usize) -> bool {
        let kept = kept.min(self.unsynced.len());
        let mut entries = std::mem::take(&mut self.synced);
        self.unsynced[..kept]
            .iter()
            .for_each(|op| op.apply(&mut entries));
        let lost = kept < self.unsynced.len();
        self.entries = entries.clone();
        self.synced = entries;
        self.unsynced.clear();
        lost
    }
}

enum Body {
    File(LazyFile),
    Dir(LazyDir),
}

struct Inode {
    body: Body,
    perm: u16,
    uid: u32,
    gid: u32,
    mtime: SystemTime,
    /// Handles open on it (`open`/`create` less `release`).
    open_handles: u32,
}

/// What the filesystem saw: how many syncs, what power losses did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub writes: u64,
    pub file_syncs: u64,
    pub dir_syncs: u64,
    pub power_losses: u64,
    /// Files a power loss left with some of their unsynced writes (the last one maybe torn).
    pub files_torn: u64,
    /// Directories a power loss took unsynced changes from.
    pub entries_lost: u64,
    /// Directories a power loss left with some of their unsynced changes.
    pub dirs_torn: u64,
    /// Files a power loss took every unsynced change from.
    pub files_reverted: u64,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} writes, {} file syncs, {} directory syncs; {} power losses reverted {} files and \
             {} directories and tore {} files and {} directories",
            self.writes,
            self.file_syncs,
            self.dir_syncs,
            self.power_losses,
            self.files_reverted,
            self.entries_lost,
            self.files_torn,
            self.dirs_torn
        )
    }
}

struct State {
    inodes: HashMap<u64, Inode>,
    next_ino: u64,
    counts: Counts,
}

impl State {
    fn new() -> State {
        let mut inodes = HashMap::new();
        inodes.insert(
            ROOT,
            Inode {
                body: Body::Dir(LazyDir::new()),
                perm: 0o755,
                uid: 0,
                gid: 0,
                mtime: SystemTime::now(),
                open_handles: 0,
            },
        );
        State {
            inodes,
            next_ino: ROOT + 1,
            counts: Counts::default(),
        }
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let inode = self.inodes.get(&ino)?;
        let (kind, size, nlink) = match &inode.body {
            Body::File(file) => (FileType::RegularFile, file.data.len() as u64, 1),
            Body::Dir(_) => (FileType::Directory, 4096, 2),
        };
        Some(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: inode.mtime,
            mtime: inode.mtime,
            ctime: inode.mtime,
            crtime: inode.mtime,
            kind,
            perm: inode.perm,
            nlink,
            uid: inode.uid,
            gid: inode.gid,
            rdev: 0,
            blksize: PAGE_BYTES as u32,
            flags: 0,
        })
    }

    fn dir(&mut self, ino: u64) -> Result<&mut LazyDir, Errno> {
        match self.inodes.get_mut(&ino).map(|i| &mut i.body) {
            Some(Body::Dir(dir)) => Ok(dir),
            Some(Body::File(_)) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn file(&mut self, ino: u64) -> Result<&mut LazyFile, Errno> {
        match self.inodes.get_mut(&ino).map(|i| &mut i.body) {
            Some(Body::File(file)) => Ok(file),
            Some(Body::Dir(_)) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn touch(&mut self, ino: u64) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.mtime = SystemTime::now();
        }
    }

    /// Adds a new file or directory named `name` to `parent`.
    fn make(
        &mut self,
        req: &Request,
        parent: u64,
        name: &OsStr,
        mode: u32,
        body: Body,
    ) -> Result<u64, Errno> {
        let dir = self.dir(parent)?;
        if dir.entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.dir(parent)?.change(DirOp::Link {
            name: name.to_os_string(),
            ino,
        });
        self.touch(parent);
        self.inodes.insert(
            ino,
            Inode {
                body,
                perm: (mode & 0o7777) as u16,
                uid: req.uid(),
                gid: req.gid(),
                mtime: SystemTime::now(),
                open_handles: 0,
            },
        );
        Ok(ino)
    }

    fn used_bytes(&self) -> u64 {
        self.inodes
            .values()
            .map(|inode| match &inode.body {
                Body::File(file) => (file.data.len() as u64).next_multiple_of(PAGE_BYTES),
                Body::Dir(_) => PAGE_BYTES,
            })
            .sum()
    }

    fn power_loss(&mut self, tear: Option<&mut dyn FnMut() -> u64>) {
        let mut tear = tear;
        let mut counts = self.counts;
        for inode in self.inodes.values_mut() {
            match &mut inode.body {
                Body::Dir(dir) => {
                    // Half the changed directories keep a prefix of their unsynced changes.
                    let kept = match tear.as_mut() {
                        Some(random) if !dir.unsynced.is_empty() => {
                            let keeps_some = random() % 2 == 0;
                            let kept = random() as usize % (dir.unsynced.len() + 1);
                            if keeps_some { kept } else { 0 }
                        }
                        _ => 0,
                    };
                    if kept > 0 {
                        counts.dirs_torn += 1;
                    }
                    if dir.lose_power(kept) {
                        counts.entries_lost += 1;
                    }
                }
                Body::File(file) => {
                    let dirty = file.unsynced.as_ref().is_none_or(|ops| !ops.is_empty());
                    // Half the dirty files keep some of their unsynced writes.
                    let torn_after = match tear.as_mut() {
                        Some(random) if dirty => {
                            let keeps_some = random() % 2 == 0;
                            keeps_some.then(|| (random() as usize, random()))
                        }
                        _ => None,
                    };
                    if file.lose_power(torn_after) {
                        counts.files_torn += 1;
                    } else if dirty {
                        counts.files_reverted += 1;
                    }
                }
            }
        }
        // Whatever no synced entry reaches is gone.
        let mut reachable = HashSet::from([ROOT]);
        let mut queue = vec![ROOT];
        while let Some(ino) = queue.pop() {
            if let Some(Inode {
                body: Body::Dir(dir),
                ..
            }) = self.inodes.get(&ino)
            {
                for &child in dir.entries.values() {
                    if reachable.insert(child) {
                        queue.push(child);
                    }
                }
            }
        }
        self.inodes.retain(|ino, _| reachable.contains(ino));
        // Whoever had files open is gone.
        self.inodes
            .values_mut()
            .for_each(|inode| inode.open_handles = 0);
        counts.power_losses += 1;
        self.counts = counts;
    }

    /// Forgets the inodes nothing can reach again: not open, and not named by any directory
    /// reachable from the root through its current entries, its synced ones or an unsynced
    /// link (everything a power loss could bring back).
    fn collect_garbage(&mut self) {
        let mut kept = HashSet::from([ROOT]);
        let mut queue = vec![ROOT];
        while let Some(ino) = queue.pop() {
            if let Some(Inode {
                body: Body::Dir(dir),
                ..
            }) = self.inodes.get(&ino)
            {
                let linked = dir.unsynced.iter().filter_map(|op| match op {
                    DirOp::Link { ino, .. } => Some(*ino),
                    _ => None,
                });
                let named = dir.entries.values().chain(dir.synced.values()).copied();
                for child in named.chain(linked) {
                    if kept.insert(child) {
                        queue.push(child);
                    }
                }
            }
        }
        self.inodes
            .retain(|ino, inode| kept.contains(ino) || inode.open_handles > 0);
    }
}

/// The FUSE side: every request works on the shared state under its lock.
struct Handler {
    state: Arc<Mutex<State>>,
}

impl Handler {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn entry_reply(state: &State, ino: u64, reply: ReplyEntry) {
    match state.attr(ino) {
        Some(attr) => reply.entry(&ATTR_TTL, &attr, Generation(0)),
        None => reply.error(Errno::ENOENT),
    }
}

impl fuser::Filesystem for Handler {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut state = self.lock();
        match state.dir(parent.0).map(|d| d.entries.get(name).copied()) {
            Ok(Some(ino)) => entry_reply(&state, ino, reply),
            Ok(None) => reply.error(Errno::ENOENT),
            Err(err) => reply.error(err),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.lock().attr(ino.0) {
            Some(attr) => reply.attr(&ATTR_TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut state = self.lock();
        if let Some(size) = size {
            match state.file(ino.0) {
                Ok(file) => file.change(FileOp::SetLen(size)),
                Err(err) => return reply.error(err),
            }
            state.touch(ino.0);
        }
        if let Some(inode) = state.inodes.get_mut(&ino.0) {
            if let Some(mode) = mode {
                inode.perm = (mode & 0o7777) as u16;
            }
            if let Some(uid) = uid {
                inode.uid = uid;
            }
            if let Some(gid) = gid {
                inode.gid = gid;
            }
        }
        match state.attr(ino.0) {
            Some(attr) => reply.attr(&ATTR_TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & S_IFMT != S_IFREG {
            return reply.error(Errno::EPERM);
        }
        let mut state = self.lock();
        match state.make(req, parent.0, name, mode, Body::File(new_file())) {
            Ok(ino) => entry_reply(&state, ino, reply),
            Err(err) => reply.error(err),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let mut state = self.lock();
        let dir = Body::Dir(LazyDir::new());
        match state.make(req, parent.0, name, mode, dir) {
            Ok(ino) => entry_reply(&state, ino, reply),
            Err(err) => reply.error(err),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut state = self.lock();
        let ino = match state.dir(parent.0).map(|d| d.entries.get(name).copied()) {
            Ok(Some(ino)) => ino,
            Ok(None) => return reply.error(Errno::ENOENT),
            Err(err) => return reply.error(err),
        };
        if let Err(err) = state.file(ino) {
            return reply.error(err);
        }
        // The inode stays: an open handle may still use it, and an unsynced removal comes back.
        state
            .dir(parent.0)
            .expect("a directory")
            .change(DirOp::Unlink {
                name: name.to_os_string(),
            });
        state.touch(parent.0);
        reply.ok();
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut state = self.lock();
        let ino = match state.dir(parent.0).map(|d| d.entries.get(name).copied()) {
            Ok(Some(ino)) => ino,
            Ok(None) => return reply.error(Errno::ENOENT),
            Err(err) => return reply.error(err),
        };
        match state.dir(ino) {
            Ok(dir) if !dir.entries.is_empty() => return reply.error(Errno::ENOTEMPTY),
            Ok(_) => {}
            Err(err) => return reply.error(err),
        }
        state
            .dir(parent.0)
            .expect("a directory")
            .change(DirOp::Unlink {
                name: name.to_os_string(),
            });
        state.touch(parent.0);
        reply.ok();
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            return reply.error(Errno::EINVAL);
        }
        let mut state = self.lock();
        let ino = match state.dir(parent.0).map(|d| d.entries.get(name).copied()) {
            Ok(Some(ino)) => ino,
            Ok(None) => return reply.error(Errno::ENOENT),
            Err(err) => return reply.error(err),
        };
        let replaced = match state.dir(newparent.0) {
            Ok(dir) => dir.entries.get(newname).copied(),
            Err(err) => return reply.error(err),
        };
        if let Some(replaced) = replaced {
            if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                return reply.error(Errno::EEXIST);
            }
            let moving_dir = state.dir(ino).is_ok();
            match state.dir(replaced) {
                Ok(_) if !moving_dir => return reply.error(Errno::EISDIR),
                Ok(dir) if !dir.entries.is_empty() => return reply.error(Errno::ENOTEMPTY),
                Ok(_) => {}
                Err(_) if moving_dir => return reply.error(Errno::ENOTDIR),
                Err(_) => {}
            }
        }
        if parent == newparent {
            // One change: a power loss keeps the old name or the new one, never neither.
            state
                .dir(parent.0)
                .expect("a directory")
                .change(DirOp::Rename {
                    from: name.to_os_string(),
                    to: newname.to_os_string(),
                });
        } else {
            state
                .dir(parent.0)
                .expect("a directory")
                .change(DirOp::Unlink {
                    name: name.to_os_string(),
                });
            state
                .dir(newparent.0)
                .expect("a directory")
                .change(DirOp::Link {
                    name: newname.to_os_string(),
                    ino,
                });
        }
        state.touch(parent.0);
        state.touch(newparent.0);
        reply.ok();
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.lock().inodes.get_mut(&ino.0) {
            Some(inode) => {
                inode.open_handles += 1;
                reply.opened(FileHandle(0), FopenFlags::empty())
            }
            None => reply.error(Errno::ENOENT),
        }
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut state = self.lock();
        if let Some(inode) = state.inodes.get_mut(&ino.0) {
            inode.open_handles = inode.open_handles.saturating_sub(1);
            if inode.open_handles == 0 {
                state.collect_garbage();
            }
        }
        reply.ok();
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let mut state = self.lock();
        match state.file(ino.0) {
            Ok(file) => {
                let start = (offset as usize).min(file.data.len());
                let end = (start + size as usize).min(file.data.len());
                reply.data(&file.data[start..end]);
            }
            Err(err) => reply.error(err),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut state = self.lock();
        match state.file(ino.0) {
            Ok(file) => file.change(FileOp::Write {
                offset,
                bytes: data.to_vec(),
            }),
            Err(err) => return reply.error(err),
        }
        state.counts.writes += 1;
        state.touch(ino.0);
        reply.written(data.len() as u32);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        // Closing a file makes nothing durable.
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut state = self.lock();
        match state.file(ino.0) {
            Ok(file) => file.sync(),
            Err(err) => return reply.error(err),
        }
        state.counts.file_syncs += 1;
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut state = self.lock();
        let listing: Vec<(u64, OsString)> = match state.dir(ino.0) {
            Ok(dir) => dir.entries.iter().map(|(n, &i)| (i, n.clone())).collect(),
            Err(err) => return reply.error(err),
        };
        let mut all = vec![
            (ino.0, FileType::Directory, OsString::from(".")),
            (ROOT, FileType::Directory, OsString::from("..")),
        ];
        for (child, name) in listing {
            let kind = match state.inodes.get(&child).map(|i| &i.body) {
                Some(Body::Dir(_)) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            all.push((child, kind, name));
        }
        for (i, (child, kind, name)) in all.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), (i + 1) as u64, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut state = self.lock();
        match state.dir(ino.0) {
            Ok(dir) => dir.sync(),
            Err(err) => return reply.error(err),
        }
        state.counts.dir_syncs += 1;
        // Entries removed for good now may free their files.
        state.collect_garbage();
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let state = self.lock();
        let free_pages = CAPACITY_BYTES.saturating_sub(state.used_bytes()) / PAGE_BYTES;
        let files = state.inodes.len() as u64;
        reply.statfs(
            CAPACITY_BYTES / PAGE_BYTES,
            free_pages,
            free_pages,
            1 << 20,
            (1u64 << 20).saturating_sub(files),
            PAGE_BYTES as u32,
            255,
            PAGE_BYTES as u32,
        );
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut state = self.lock();
        match state.make(req, parent.0, name, mode, Body::File(new_file())) {
            Ok(ino) => {
                if let Some(inode) = state.inodes.get_mut(&ino) {
                    inode.open_handles += 1;
                }
                let attr = state.attr(ino).expect("just made");
                reply.created(
                    &ATTR_TTL,
                    &attr,
                    Generation(0),
                    FileHandle(0),
                    FopenFlags::empty(),
                );
            }
            Err(err) => reply.error(err),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        const KEEP_SIZE: i32 = 0x01;
        const PUNCH_HOLE: i32 = 0x02;
        const ZERO_RANGE: i32 = 0x10;
        let mut state = self.lock();
        let file = match state.file(ino.0) {
            Ok(file) => file,
            Err(err) => return reply.error(err),
        };
        let end = offset + length;
        let grows = mode & KEEP_SIZE == 0 && end > file.data.len() as u64;
        match mode & !KEEP_SIZE {
            0 => {}
            PUNCH_HOLE if mode & KEEP_SIZE != 0 => file.change(FileOp::Zero {
                offset,
                len: length,
            }),
            ZERO_RANGE => file.change(FileOp::Zero {
                offset,
                len: length,
            }),
            _ => return reply.error(Errno::EOPNOTSUPP),
        }
        if grows {
            file.change(FileOp::SetLen(end));
        }
        state.touch(ino.0);
        reply.ok();
    }
}

fn new_file() -> LazyFile {
    LazyFile {
        data: Vec::new(),
        synced: Vec::new(),
        unsynced: Some(Vec::new()),
        unsynced_bytes: 0,
    }
}

/// The file type bits of a mode, and the type of a regular file.
const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;

/// A mounted lazy filesystem; unmounted when dropped.
pub struct LazyFs {
    state: Arc<Mutex<State>>,
    mount_point: PathBuf,
    session: Option<BackgroundSession>,
}

impl LazyFs {
    /// Mounts an empty lazy filesystem on `mount_point` (an existing empty directory).
    pub fn mount(mount_point: &Path) -> std::io::Result<LazyFs> {
        let mut fs = LazyFs {
            state: Arc::new(Mutex::new(State::new())),
            mount_point: mount_point.to_path_buf(),
            session: None,
        };
        fs.mount_again()?;
        Ok(fs)
    }

    fn mount_again(&mut self) -> std::io::Result<()> {
        let mut config = fuser::Config::default();
        config.mount_options = vec![MountOption::FSName("lazyfs".into())];
        let handler = Handler {
            state: self.state.clone(),
        };
        self.session = Some(fuser::spawn_mount(handler, &self.mount_point, &config)?);
        Ok(())
    }

    /// What it saw so far.
    pub fn counts(&self) -> Counts {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).counts
    }

    /// Cuts the power: unmounts (every process using the mount must be gone), reverts every
    /// file and directory to its synced state (with `tear`, a random half of the files with
    /// unsynced writes keep some of them and some pages of the next, and a random half of
    /// the directories with unsynced changes keep a prefix of them), and mounts again.
    pub fn power_loss(&mut self, tear: Option<&mut dyn FnMut() -> u64>) -> std::io::Result<()> {
        if let Some(session) = self.session.take() {
            unmount_when_unused(&self.mount_point)?;
            // Unmounted: the session's thread ends (its own unmount would fail now).
            session
                .guard
                .join()
                .map_err(|_| std::io::Error::other("the lazy filesystem's thread panicked"))??;
        }
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .power_loss(tear);
        self.mount_again()
    }
}

/// Unmounts `mount_point`, waiting (up to a deadline) while it is busy: a process another
/// test thread starts can inherit a descriptor this one has open on the mount for the moment
/// between its fork and its exec, and the kernel refuses the unmount until that child lets go.
fn unmount_when_unused(mount_point: &Path) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match rustix::mount::unmount(mount_point, rustix::mount::UnmountFlags::empty()) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::BUSY) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(error) => return Err(error.into()),
        }
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        if let Some(session) = self.session.take()
            && session.umount_and_join().is_err()
        {
            // Something still uses it: detach it, the kernel finishes once that lets go.
            let _ = std::process::Command::new("umount")
                .arg("--lazy")
                .arg(&self.mount_point)
                .status();
        }
    }
}
