//! Free space in the data directory: the admission check that refuses data-adding writes
//! before the filesystem fills up, and the check that defers a snapshot that would not fit.
//!
//! openraft treats every storage error as fatal, so a write that fails half-way on a full disk
//! stops raft and, with it, the node (it exits so that a restart recovers from what is on
//! disk). Refusing early keeps the node serving reads and deletes, and writes resume by
//! themselves once space is freed: the same contract as Redis's `maxmemory` (commands flagged
//! `denyoom` are refused, the rest run) and etcd's space quota.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::Error;

/// Disk bytes a request may take per byte of payload: the log entry (and the unused end of
/// a log segment a large entry did not fit in), the state machine's copy-on-write pages, and
/// the snapshot that later holds it.
const BYTES_PER_PAYLOAD_BYTE: u64 = 4;
/// Disk bytes counted for any request besides its payload: entry framing and the B-tree pages
/// its commits copy in the log and the state machine.
const BYTES_PER_REQUEST: u64 = 8 * 1024;
/// Free space above the reserve under which the disk is reported full (INFO `disk_status`).
const FULL_MARGIN_BYTES: u64 = 1024 * 1024;
/// Free space beyond what [`DiskSpace::is_tight_for`] counts under which it says tight.
const TIGHT_MARGIN_BYTES: u64 = 16 * 1024 * 1024;
/// How long a reading of the filesystem's free space is used before it is read again: every
/// write batch and apply batch consults it, and a `statvfs` each would cost a system call per
/// batch. What the node itself writes meanwhile is counted in `unsettled`.
const FREE_SPACE_FRESH: Duration = Duration::from_millis(10);

/// The data directory's filesystem and the space kept free on it; clones share their claims.
#[derive(Clone, Debug)]
pub struct DiskSpace {
    dir: PathBuf,
    reserve_bytes: u64,
    /// Bytes promised to work in progress (a snapshot being written), not free for writes.
    claimed: Arc<AtomicU64>,
    /// Bytes admitted since the state machine's last durable commit: its pages reach the
    /// disk only at the next one (all at once), so the free space seen now overstates what is
    /// left until then.
    unsettled: Arc<AtomicU64>,
    /// The last reading of the filesystem's free bytes and when it was taken.
    free_reading: Arc<Mutex<Option<(Instant, u64)>>>,
}

/// Space promised to one piece of work; given back when dropped.
#[derive(Debug)]
pub struct Claim {
    bytes: u64,
    claimed: Arc<AtomicU64>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.claimed.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl DiskSpace {
    /// Watches the filesystem holding `dir`, keeping `reserve_bytes` free of new data.
    pub fn new(dir: &Path, reserve_bytes: u64) -> DiskSpace {
        DiskSpace {
            dir: dir.to_path_buf(),
            reserve_bytes,
            claimed: Arc::new(AtomicU64::new(0)),
            unsettled: Arc::new(AtomicU64::new(0)),
            free_reading: Arc::default(),
        }
    }

    /// Bytes an unprivileged writer may use on the filesystem, as read at most
    /// [`FREE_SPACE_FRESH`] ago.
    fn filesystem_free_bytes(&self) -> io::Result<u64> {
        let mut reading = self
            .free_reading
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((at, free)) = *reading
            && at.elapsed() < FREE_SPACE_FRESH
        {
            return Ok(free);
        }
        let stat = rustix::fs::statvfs(&self.dir)?;
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        *reading = Some((Instant::now(), free));
        Ok(free)
    }

    /// The state machine made everything applied so far durable: what was admitted before is
    /// now on disk and seen in the free space.
    pub fn settle(&self) {
        // A reading from before the commit would not show the pages it wrote.
        *self
            .free_reading
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
        self.unsettled.store(0, Ordering::Release);
    }

    /// Bytes kept free: writes that would leave less are refused.
    pub fn reserve_bytes(&self) -> u64 {
        self.reserve_bytes
    }

    /// Bytes an unprivileged writer may still use on the data directory's filesystem, less
    /// what is claimed by work in progress and what admitted writes have yet to take.
    pub fn available_bytes(&self) -> io::Result<u64> {
        let free = self.filesystem_free_bytes()?;
        Ok(free
            .saturating_sub(self.claimed.load(Ordering::Acquire))
            .saturating_sub(self.unsettled.load(Ordering::Acquire)))
    }

    /// Claims `bytes` of the available space for work that will write them (a snapshot), if
    /// they are available; writes are admitted only from what is left.
    pub fn claim(&self, bytes: u64) -> Option<Claim> {
        // With no reserve nothing is checked, so nothing needs holding.
        let bytes = if self.reserve_bytes == 0 { 0 } else { bytes };
        if bytes > 0 && self.available_bytes().ok()? < bytes {
            return None;
        }
        self.claimed.fetch_add(bytes, Ordering::AcqRel);
        Some(Claim {
            bytes,
            claimed: self.claimed.clone(),
        })
    }

    /// Whether the free space is within 1 MiB of the reserve (never with no reserve, or when
    /// it cannot be read).
    pub fn is_full(&self) -> bool {
        self.free_below(self.reserve_bytes.saturating_add(FULL_MARGIN_BYTES))
    }

    /// Whether the state machine should write `pending` bytes of applied changes held in
    /// memory to disk before it answers: when the free space is below twice the reserve plus
    /// twice those bytes and a margin. Then the space applied writes take shows at once (to
    /// admission, or as an error before the write is acknowledged, with no reserve), and a
    /// restart never needs more room to re-apply the log than the disk had.
    pub fn is_tight_for(&self, pending: u64) -> bool {
        let needed = self
            .reserve_bytes
            .saturating_add(pending)
            .saturating_mul(2)
            .saturating_add(TIGHT_MARGIN_BYTES);
        match self.filesystem_free_bytes() {
            Ok(free) => free.saturating_sub(self.claimed.load(Ordering::Acquire)) < needed,
            Err(_) => false,
        }
    }

    /// Whether a reserve is set and the available space is below `bytes`.
    fn free_below(&self, bytes: u64) -> bool {
        self.reserve_bytes > 0 && self.available_bytes().is_ok_and(|free| free < bytes)
    }

    /// Starts an admission round of one batch: the free space read once, then drawn down by
    /// each admitted request. With no reserve, or when the free space cannot be read,
    /// everything is admitted (the write itself then reports the problem).
    pub fn admission(&self) -> Admission {
        let available = match self.available_bytes() {
            _ if self.reserve_bytes == 0 => None,
            Ok(bytes) => Some(bytes),
            Err(err) => {
                tracing::warn!(dir = %self.dir.display(), error = %err, "cannot read free disk space");
                None
            }
        };
        Admission {
            available,
            reserve_bytes: self.reserve_bytes,
            unsettled: self.unsettled.clone(),
        }
    }
}

/// Free space left for the requests of one batch.
#[derive(Debug)]
pub struct Admission {
    available: Option<u64>,
    reserve_bytes: u64,
    unsettled: Arc<AtomicU64>,
}

impl Admission {
    /// Admits a request that adds `payload_bytes` of data, or refuses it with Redis's
    /// persistence-failure error (`-MISCONF …`).
    pub fn admit(&mut self, payload_bytes: usize) -> Result<(), Error> {
        let needed = (payload_bytes as u64)
            .saturating_mul(BYTES_PER_PAYLOAD_BYTE)
            .saturating_add(BYTES_PER_REQUEST);
        if self.admit_bytes(needed) {
            return Ok(());
        }
        Err(Error::DiskFull(format!(
            "Errors writing to the data directory: not enough free disk space \
             ({} free, {} kept in reserve, about {} needed); writes that add data are refused \
             until space is freed, reads and deletes still work",
            human_bytes(self.available.unwrap_or(0)),
            human_bytes(self.reserve_bytes),
            human_bytes(needed),
        )))
    }

    fn admit_bytes(&mut self, bytes: u64) -> bool {
        let Some(available) = self.available else {
            return true;
        };
        if available < self.reserve_bytes.saturating_add(bytes) {
            return false;
        }
        self.available = Some(available - bytes);
        self.unsettled.fetch_add(bytes, Ordering::AcqRel);
        true
    }
}

/// `1536` → `1.50K`, as Redis prints sizes in INFO (`used_memory_human`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.2}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(available: u64, reserve_bytes: u64) -> Admission {
        Admission {
            available: Some(available),
            reserve_bytes,
            unsettled: Arc::default(),
        }
    }

    #[test]
    fn admission_draws_down_the_free_space_of_one_batch() {
        let mut round = admission(1_000_000, 500_000);
        // 4 × 100,000 + 8 KiB per request: the first fits, the second would cross the reserve.
        assert!(round.admit(100_000).is_ok());
        let refused = round.admit(100_000).unwrap_err().to_string();
        assert!(refused.starts_with("MISCONF Errors writing to the data directory"));
        assert!(refused.contains("kept in reserve"), "{refused}");
        // A smaller request still fits in what is left.
        assert!(round.admit(10_000).is_ok());
    }

    #[test]
    fn unknown_free_space_admits() {
        let mut round = Admission {
            available: None,
            reserve_bytes: u64::MAX,
            unsettled: Arc::default(),
        };
        assert!(round.admit(usize::MAX).is_ok());
    }

    #[test]
    fn free_space_of_a_real_directory_is_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        let disk = DiskSpace::new(dir.path(), 1);
        assert!(disk.available_bytes().expect("statvfs") > 0);
        assert!(disk.admission().admit(1).is_ok());
        let full = DiskSpace::new(dir.path(), u64::MAX);
        assert!(full.admission().admit(0).is_err());
    }

    #[test]
    fn admitted_bytes_count_as_taken_until_the_state_machine_settles() {
        let dir = tempfile::tempdir().expect("temp dir");
        let disk = DiskSpace::new(dir.path(), 1);
        let before = disk.available_bytes().expect("statvfs");
        // 16 MiB counts as 64 MiB; other processes writing meanwhile move the figures less.
        let payload = 16 << 20;
        assert!(disk.admission().admit(payload).is_ok());
        let admitted = disk.available_bytes().expect("statvfs");
        assert!(
            before.saturating_sub(admitted) >= 48 << 20,
            "{before} free before, {admitted} after admitting {payload} bytes"
        );
        disk.settle();
        assert!(disk.available_bytes().expect("statvfs") >= admitted + (32 << 20));
    }

    #[test]
    fn claimed_space_is_not_admitted_until_given_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let disk = DiskSpace::new(dir.path(), 1);
        let free = disk.available_bytes().expect("statvfs");
        assert!(disk.claim(free.saturating_mul(2)).is_none());
        let claim = disk
            .claim(free - free / 100)
            .expect("most of the free space");
        assert!(disk.available_bytes().expect("statvfs") <= free / 50);
        assert!(disk.admission().admit((free / 10) as usize).is_err());
        drop(claim);
        assert!(disk.admission().admit((free / 10) as usize).is_ok());
    }

    #[test]
    fn sizes_print_like_redis_info() {
        assert_eq!(human_bytes(512), "512B");
        assert_eq!(human_bytes(1536), "1.50K");
        assert_eq!(human_bytes(64 * 1024 * 1024), "64.00M");
    }
}
