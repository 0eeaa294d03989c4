//! Snapshot files: where they live, their format (a header, then checksummed records of every
//! row and the session table), building one from redb, checking one received from the leader,
//! and installing one.

use std::ops::Bound;

use super::*;
use crate::store::schema::WriteTable;

/// First bytes of a snapshot file.
const SNAPSHOT_MAGIC: &[u8; 8] = b"RDRFTSNP";

/// Where snapshots live and how they are named.
#[derive(Clone, Debug)]
pub(super) struct SnapshotDir {
    pub(super) path: PathBuf,
}

impl SnapshotDir {
    pub(super) fn file_for(&self, meta: &SnapshotMeta) -> PathBuf {
        let (term, index) = match &meta.last_log_id {
            Some(log_id) => (log_id.leader_id.term, log_id.index),
            None => (0, 0),
        };
        self.path
            .join(format!("snapshot-{term:020}-{index:020}.snap"))
    }

    /// The newest complete snapshot file, if any (names sort by term then index).
    pub(super) fn newest(&self) -> io::Result<Option<PathBuf>> {
        Ok(self.complete()?.pop())
    }

    /// Every complete snapshot file, oldest first.
    fn complete(&self) -> io::Result<Vec<PathBuf>> {
        let mut snapshots = Vec::new();
        for entry in fs::read_dir(&self.path)? {
            let path = entry?.path();
            let is_snapshot = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("snapshot-") && n.ends_with(".snap"));
            if is_snapshot {
                snapshots.push(path);
            }
        }
        snapshots.sort();
        Ok(snapshots)
    }

    /// Removes every complete snapshot file but the newest, once a new one is in place.
    ///
    /// Never the newest, whoever put it there: a snapshot is built in the background while one
    /// from the leader may be installed, and a build that started first (an older state) can
    /// finish last. Raft keeps the newer one and may already have purged its log up to it, so
    /// deleting it would leave the log purged past the newest snapshot left on disk. Temp files
    /// are left alone too: they may be a build or a transfer still being written.
    pub(super) fn remove_older(&self) -> io::Result<()> {
        let mut snapshots = self.complete()?;
        snapshots.pop();
        snapshots
            .iter()
            .try_for_each(|path| remove_if_present(path))
    }

    /// At open, before raft runs: temp files a crash left half-written (builds and transfers
    /// from the leader), and snapshots older than the newest.
    pub(super) fn remove_leftovers(&self) -> io::Result<()> {
        let newest = self.newest()?;
        for entry in fs::read_dir(&self.path)? {
            let path = entry?.path();
            if Some(&path) != newest.as_ref() {
                remove_if_present(&path)?;
            }
        }
        Ok(())
    }
}

/// Removes a file another cleanup may have removed already.
fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// Header of a snapshot file, after the magic and version byte.
#[derive(Serialize, Deserialize)]
pub(super) struct SnapshotHeader {
    pub(super) last_log_id: Option<LogId>,
    pub(super) last_membership: StoredMembership,
    clock: i64,
}

/// One record of a snapshot file body.
#[derive(Serialize, Deserialize)]
enum SnapshotRecord {
    /// A row of table `table` (0 keys, 1 fields, 2 expiry, 3 scan index).
    Pair {
        table: u8,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    End {
        pairs: u64,
    },
    /// The client sessions (written just before `Checksum`; absent from older snapshots).
    Sessions(Sessions),
    /// CRC-32 of every record's bytes (length prefix included) between the header and this
    /// record; written just before `End` (absent from older snapshots).
    Checksum {
        crc32: u32,
    },
}

/// Writes the records of a snapshot body, keeping a checksum of their bytes.
struct BodyWriter<W: Write> {
    out: W,
    crc: crc32fast::Hasher,
    pairs: u64,
}

impl<W: Write> BodyWriter<W> {
    fn new(out: W) -> Self {
        BodyWriter {
            out,
            crc: crc32fast::Hasher::new(),
            pairs: 0,
        }
    }

    fn record(&mut self, record: &SnapshotRecord) -> io::Result<()> {
        let bytes = postcard::to_stdvec(record).map_err(io_error)?;
        let len = (bytes.len() as u32).to_le_bytes();
        self.crc.update(&len);
        self.crc.update(&bytes);
        if matches!(record, SnapshotRecord::Pair { .. }) {
            self.pairs += 1;
        }
        self.out.write_all(&len)?;
        self.out.write_all(&bytes)
    }

    /// Writes the checksum and the end record; returns the output.
    fn finish(mut self) -> io::Result<W> {
        let crc32 = self.crc.clone().finalize();
        write_record(&mut self.out, &SnapshotRecord::Checksum { crc32 })?;
        write_record(&mut self.out, &SnapshotRecord::End { pairs: self.pairs })?;
        Ok(self.out)
    }
}

/// Reads the records of a snapshot body, checking the pair count and the checksum at the end.
struct BodyReader<R: std::io::Read> {
    input: R,
    crc: crc32fast::Hasher,
    pairs: u64,
    checksum_seen: bool,
}

impl<R: std::io::Read> BodyReader<R> {
    fn new(input: R) -> Self {
        BodyReader {
            input,
            crc: crc32fast::Hasher::new(),
            pairs: 0,
            checksum_seen: false,
        }
    }

    /// The next `Pair` or `Sessions` record; `None` at an end that checks out.
    fn next(&mut self) -> io::Result<Option<SnapshotRecord>> {
        loop {
            let mut len = [0u8; 4];
            self.input.read_exact(&mut len)?;
            let mut bytes = vec![0u8; u32::from_le_bytes(len) as usize];
            self.input.read_exact(&mut bytes)?;
            let record: SnapshotRecord = postcard::from_bytes(&bytes).map_err(io_error)?;
            match record {
                SnapshotRecord::End { pairs } if pairs == self.pairs => return Ok(None),
                SnapshotRecord::End { .. } => {
                    return Err(corrupt_snapshot("truncated (pair count differs)"));
                }
                _ if self.checksum_seen => {
                    return Err(corrupt_snapshot("records after the checksum"));
                }
                SnapshotRecord::Checksum { crc32 } => {
                    if self.crc.clone().finalize() != crc32 {
                        return Err(corrupt_snapshot("checksum mismatch"));
                    }
                    self.checksum_seen = true;
                }
                record => {
                    self.crc.update(&len);
                    self.crc.update(&bytes);
                    if matches!(record, SnapshotRecord::Pair { .. }) {
                        self.pairs += 1;
                    }
                    return Ok(Some(record));
                }
            }
        }
    }
}

fn corrupt_snapshot(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("snapshot file is corrupt: {why}"),
    )
}

/// Reads a whole snapshot file and checks it (format, pair count, checksum) without
/// installing it: a snapshot received from the leader is checked before raft sees it.
pub fn verify_snapshot_file(path: &Path) -> io::Result<()> {
    let mut input = BufReader::new(File::open(path)?);
    read_snapshot_header(&mut input)?;
    let mut body = BodyReader::new(input);
    while body.next()?.is_some() {}
    Ok(())
}

fn write_record<W: Write, T: Serialize>(out: &mut W, record: &T) -> io::Result<()> {
    let bytes = postcard::to_stdvec(record).map_err(io_error)?;
    out.write_all(&(bytes.len() as u32).to_le_bytes())?;
    out.write_all(&bytes)
}

fn read_record<R: std::io::Read, T: for<'de> Deserialize<'de>>(input: &mut R) -> io::Result<T> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len)?;
    let mut bytes = vec![0u8; u32::from_le_bytes(len) as usize];
    input.read_exact(&mut bytes)?;
    postcard::from_bytes(&bytes).map_err(io_error)
}

pub(super) fn read_snapshot_header<R: std::io::Read>(input: &mut R) -> io::Result<SnapshotHeader> {
    let mut magic = [0u8; 9];
    input.read_exact(&mut magic)?;
    if &magic[..8] != SNAPSHOT_MAGIC || magic[8] != FORMAT_VERSION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a redraft snapshot of a known format version",
        ));
    }
    read_record(input)
}

/// Builds snapshot files: flushes everything applied, then writes what redb holds.
pub struct SnapshotBuilder {
    pub(super) shared: Arc<Shared>,
    pub(super) snapshots: SnapshotDir,
    /// Disk space held for the file being built, given back when the builder is dropped.
    pub(super) space: Option<Claim>,
}

impl SnapshotBuilder {
    fn build_blocking(
        shared: &Shared,
        snapshots: &SnapshotDir,
    ) -> io::Result<(SnapshotMeta, PathBuf)> {
        // Everything applied so far durable in redb before the log below it may be purged;
        // every flush is a durable commit, so whatever `read` sees is on disk.
        shared.flush_all()?;
        let read = shared.db.begin_read().map_err(io_error)?;

        let applied = AppliedState::read(&read)?;
        let meta = SnapshotMeta {
            last_log_id: applied.last_applied,
            last_membership: applied.membership.clone(),
        };
        let final_path = snapshots.file_for(&meta);
        let temp_path = final_path.with_extension("tmp");
        {
            let mut out = BufWriter::new(File::create(&temp_path)?);
            out.write_all(SNAPSHOT_MAGIC)?;
            out.write_all(&[FORMAT_VERSION])?;
            write_record(
                &mut out,
                &SnapshotHeader {
                    last_log_id: applied.last_applied,
                    last_membership: applied.membership,
                    clock: applied.clock,
                },
            )?;
            let mut body = BodyWriter::new(out);
            for schema in &SCHEMA {
                let rows = ReadTable::open(schema.table, &read).map_err(io_error)?;
                for row in rows
                    .range(Bound::Unbounded, Bound::Unbounded)
                    .map_err(io_error)?
                {
                    let (key, value) = row.map_err(io_error)?;
                    body.record(&SnapshotRecord::Pair {
                        table: schema.table.slot() as u8,
                        key: Vec::from(key),
                        value: Vec::from(value.unwrap_or_default()),
                    })?;
                }
            }
            body.record(&SnapshotRecord::Sessions(applied.sessions))?;
            let out = body.finish()?;
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        fs::rename(&temp_path, &final_path)?;
        sync_dir(&snapshots.path)?;
        snapshots.remove_older()?;
        Ok((meta, final_path))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(
        &mut self,
    ) -> io::Result<openraft::alias::SnapshotOf<TypeConfig, SnapshotFile>> {
        let shared = self.shared.clone();
        let snapshots = self.snapshots.clone();
        let (meta, path) =
            tokio::task::spawn_blocking(move || Self::build_blocking(&shared, &snapshots))
                .await
                .map_err(io_error)??;
        tracing::info!(last_log_id = ?meta.last_log_id, "snapshot built");
        Ok(openraft::alias::SnapshotOf::<TypeConfig, SnapshotFile> {
            meta,
            snapshot: SnapshotFile { path },
        })
    }
}

/// Replaces the whole state with the contents of a snapshot file (blocking): in redb, then in
/// the layers readers see.
pub(super) fn install(
    shared: &Shared,
    path: &Path,
    meta: &SnapshotMeta,
    clock: &AtomicI64,
) -> io::Result<()> {
    let _writer = lock(&shared.writer);
    drop(shared.wait_flushed(lock(&shared.published))?);
    let installed = install_blocking(&shared.db, path, meta)?;
    let header_clock = installed.clock;
    let base = Base::open(&shared.db.begin_read().map_err(io_error)?).map_err(io_error)?;
    let mut published = lock(&shared.published);
    published.layers = Layers::new(base).map_err(io_error)?;
    published.applied = installed;
    published.last_freeze = Instant::now();
    published.unflushed = false;
    clock.fetch_max(header_clock, Ordering::AcqRel);
    Ok(())
}

/// Replaces the contents of redb with a snapshot file's; returns the snapshot's clock.
fn install_blocking(db: &Database, path: &Path, meta: &SnapshotMeta) -> io::Result<AppliedState> {
    let mut input = BufReader::new(File::open(path)?);
    let header = read_snapshot_header(&mut input)?;
    if header.last_log_id != meta.last_log_id {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "snapshot file does not match the snapshot being installed",
        ));
    }
    let txn = db.begin_write().map_err(io_error)?;
    let mut sessions = Sessions::default();
    {
        let mut tables = WriteTable::open_all(&txn).map_err(io_error)?;
        for table in &mut tables {
            table.clear().map_err(io_error)?;
        }
        let mut body = BodyReader::new(input);
        while let Some(record) = body.next()? {
            match record {
                SnapshotRecord::Sessions(table) => sessions = table,
                SnapshotRecord::Pair { table, key, value } => tables
                    .get_mut(usize::from(table))
                    .ok_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("snapshot names table {table}, which this version lacks"),
                        )
                    })?
                    .insert(&key, &value)
                    .map_err(io_error)?,
                SnapshotRecord::End { .. } | SnapshotRecord::Checksum { .. } => {
                    unreachable!("BodyReader::next returns only pairs and sessions")
                }
            }
        }
    }
    let installed = AppliedState {
        last_applied: meta.last_log_id,
        membership: meta.last_membership.clone(),
        clock: header.clock,
        sessions,
    };
    installed.write(&txn)?;
    txn.commit().map_err(io_error)?;
    Ok(installed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot file of `pairs` pairs and an empty session table.
    fn write_snapshot(path: &Path, pairs: u8) {
        let mut out = Vec::new();
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.push(FORMAT_VERSION);
        let header = SnapshotHeader {
            last_log_id: None,
            last_membership: StoredMembership::default(),
            clock: 7,
        };
        write_record(&mut out, &header).unwrap();
        let mut body = BodyWriter::new(out);
        for n in 0..pairs {
            body.record(&SnapshotRecord::Pair {
                table: 0,
                key: vec![b'k', n],
                value: vec![b'v', n],
            })
            .unwrap();
        }
        body.record(&SnapshotRecord::Sessions(Sessions::default()))
            .unwrap();
        fs::write(path, body.finish().unwrap()).unwrap();
    }

    #[test]
    fn a_build_finishing_after_a_newer_install_never_removes_the_newer_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = SnapshotDir {
            path: dir.path().to_path_buf(),
        };
        let at = |term, index| {
            snapshots.file_for(&SnapshotMeta {
                last_log_id: Some(LogId {
                    leader_id: openraft::vote::leader_id_adv::LeaderId { term, node_id: 2 },
                    index,
                }),
                last_membership: StoredMembership::default(),
            })
        };
        let (oldest, built, installed) = (at(20, 140_018), at(21, 146_574), at(21, 151_027));
        let (in_flight_build, in_flight_transfer) = (
            dir.path().join("snapshot-next.tmp"),
            dir.path().join("receiving-160000-1.tmp"),
        );
        for path in [&oldest, &installed, &in_flight_build, &in_flight_transfer] {
            write_snapshot(path, 1);
        }
        // The install cleaned up first; then the build that read the older state renames its
        // file into place and cleans up in turn.
        snapshots.remove_older().unwrap();
        write_snapshot(&built, 1);
        snapshots.remove_older().unwrap();
        assert_eq!(snapshots.newest().unwrap(), Some(installed.clone()));
        assert!(!oldest.exists() && !built.exists());
        assert!(in_flight_build.exists() && in_flight_transfer.exists());
        // At the next open, half-written files a crash left behind go too.
        snapshots.remove_leftovers().unwrap();
        let left: Vec<PathBuf> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        assert_eq!(left, vec![installed]);
    }

    #[test]
    fn snapshot_files_are_checked_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot");
        write_snapshot(&path, 20);
        verify_snapshot_file(&path).expect("an intact snapshot checks out");
        let intact = fs::read(&path).unwrap();
        // A value byte of the tenth pair flipped: still well-formed, only the checksum sees it.
        let at = intact
            .windows(2)
            .rposition(|w| w == [b'v', 9])
            .expect("the tenth value");
        let mut damaged = intact.clone();
        damaged[at + 1] ^= 0x40;
        fs::write(&path, &damaged).unwrap();
        let err = verify_snapshot_file(&path).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        // Cut short anywhere in the body: refused.
        for cut in [intact.len() - 1, intact.len() / 2] {
            fs::write(&path, &intact[..cut]).unwrap();
            assert!(
                verify_snapshot_file(&path).is_err(),
                "cut at {cut} accepted"
            );
        }
    }
}
