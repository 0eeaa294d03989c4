//! Power loss: no acknowledged write may be lost, and a node must always start again, alone
//! or in a cluster.
//!
//! # Method
//! Each node's data directory is on a lazy filesystem (`power_loss/lazyfs.rs`) that keeps only
//! what was fsynced: file contents at their `fsync`/`fdatasync`, directory entries at their
//! directory's `fsync`. Writer threads run `INCR` and `SET` (values up to 8 KiB, so log
//! segments come and go between cuts) on keys of their own, each remembering what was
//! acknowledged and what was sent without an answer. At a random moment (after a random number
//! of acknowledged writes) the node is killed with SIGKILL and the power is cut: every file and
//! directory goes back to its synced state, and every other cut also tears, keeping part of
//! files' unsynced writes (some 4 KiB pages of a write, in any order) and a prefix of
//! directories' unsynced changes.
//! The node restarts on what is left and every key is checked: a counter holds at least its
//! acknowledged increments and at most those plus the unanswered ones, a string holds its last
//! acknowledged value or one sent without an answer, and each `INCR` answer while running
//! continues the counter (past earlier unanswered increments at most). Snapshots every 100
//! entries let log purges happen between the cuts. A third of a single node's restarts are themselves cut short after a few filesystem
//! writes, so recovery must survive a power loss too. Three nodes, each on its own lazy
//! filesystem, take the same load through every node while the power is cut on a follower, the
//! leader, or all of them at once.
//!
//! The filesystem is shown to bite: a debug build told to skip the directory fsyncs that the
//! data directory's entries need (`REDRAFT_TEST_SKIP_DIR_FSYNC`, what the node did before they
//! were added) must fail the same check. `REDRAFT_POWER_LOSS_CYCLES` sets the number of cuts
//! (rounds for three nodes) for longer runs; `REDRAFT_TEST_SEED` replays a run's random choices.
//!
//! Needs root and `/dev/fuse` (as CI has); without them the tests say so and pass.

mod common;
#[path = "power_loss/lazyfs.rs"]
mod lazyfs;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::TestServer;
use lazyfs::LazyFs;

/// Entries between snapshots (and so log purges): small, so both happen between power cuts.
const SNAPSHOT_ENTRIES: &str = "100";
const WRITER_THREADS: usize = 3;
const COUNTERS_PER_WRITER: usize = 4;
const STRINGS_PER_WRITER: usize = 8;
/// Longest padding of a string value.
const STRING_PADDING_MAX_BYTES: usize = 8 * 1024;
/// Power cuts in one run, unless `REDRAFT_POWER_LOSS_CYCLES` says otherwise (for long soaks).
const POWER_CUTS: usize = 12;
/// Acknowledged writes between a start and the next power cut: a random number in this range.
const WRITES_BEFORE_CUT: (u64, u64) = (50, 900);
/// The same for the runs that must catch a skipped fsync: enough for a snapshot and a log purge
/// before the first cut, which is what a lost state machine file needs to be noticed.
const WRITES_BEFORE_CUT_CATCHING: (u64, u64) = (400, 900);
/// Longest a cycle's load runs before the cut comes anyway.
const LOAD_TIMEOUT: Duration = Duration::from_secs(15);
/// Filesystem writes a start-up makes before it is cut short: a random number in this range.
const START_UP_WRITES_BEFORE_CUT: (u64, u64) = (1, 12);
/// Longest a start-up runs before it is cut anyway.
const START_UP_CUT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a restarted node may take to accept writes.
const WRITABLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether this machine can mount a FUSE filesystem (root and `/dev/fuse`); says why not.
fn fuse_available() -> bool {
    match fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        Ok(_) => true,
        Err(err) => {
            eprintln!(
                "SKIPPED: power-loss tests need root and /dev/fuse to mount their lazy \
                 filesystem ({err}); CI runs them as root"
            );
            false
        }
    }
}

/// A small xorshift generator: the seed is printed, so a failing run can be replayed with
/// `REDRAFT_TEST_SEED`.
struct Rng(u64);

impl Rng {
    fn from_env_or_clock() -> Rng {
        let seed = std::env::var("REDRAFT_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("power-loss seed: {seed} (REDRAFT_TEST_SEED={seed} replays it)");
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn between(&mut self, (low, high): (u64, u64)) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

/// A counter only one writer increments.
struct Counter {
    key: String,
    acknowledged: i64,
    unanswered: i64,
}

/// A string only one writer sets.
struct StringKey {
    key: String,
    acknowledged: Option<String>,
    unanswered: Vec<String>,
}

/// Everything one writer thread knows about its keys.
struct WriterKeys {
    writer: usize,
    counters: Vec<Counter>,
    strings: Vec<StringKey>,
}

impl WriterKeys {
    fn new(writer: usize) -> WriterKeys {
        WriterKeys {
            writer,
            counters: (0..COUNTERS_PER_WRITER)
                .map(|i| Counter {
                    key: format!("counter:{writer}:{i}"),
                    acknowledged: 0,
                    unanswered: 0,
                })
                .collect(),
            strings: (0..STRINGS_PER_WRITER)
                .map(|i| StringKey {
                    key: format!("string:{writer}:{i}"),
                    acknowledged: None,
                    unanswered: Vec::new(),
                })
                .collect(),
        }
    }

    /// Writes until told to stop or the node stops answering; a wrong `INCR` answer is a
    /// finding. Counts acknowledged writes in `acknowledged`.
    fn write(
        &mut self,
        mut conn: redis::Connection,
        cycle: usize,
        stop: &AtomicBool,
        acknowledged: &AtomicU64,
        findings: &mut Vec<String>,
    ) {
        let mut seq = 0usize;
        while !stop.load(Ordering::Acquire) {
            seq += 1;
            if seq.is_multiple_of(2) {
                let counter = &mut self.counters[(seq / 2) % COUNTERS_PER_WRITER];
                counter.unanswered += 1;
                let Ok(value) = redis::cmd("INCR").arg(&counter.key).query::<i64>(&mut conn) else {
                    return;
                };
                counter.unanswered -= 1;
                // Increments sent earlier without an answer may have been applied meanwhile.
                let earlier_applied = value - (counter.acknowledged + 1);
                if earlier_applied < 0 || earlier_applied > counter.unanswered {
                    findings.push(format!(
                        "INCR {} answered {value} after {} acknowledged increments and {} \
                         unanswered",
                        counter.key, counter.acknowledged, counter.unanswered
                    ));
                }
                counter.acknowledged = value;
                counter.unanswered = (counter.unanswered - earlier_applied).max(0);
            } else {
                let string = &mut self.strings[(seq / 2) % STRINGS_PER_WRITER];
                // Values of up to 8 KiB fill log segments quickly, so segments are created and
                // deleted between cuts and writes span pages that a cut can tear.
                let padding = "x".repeat(seq * 7919 % STRING_PADDING_MAX_BYTES);
                let value = format!("w{}-c{cycle}-s{seq}-{padding}", self.writer);
                string.unanswered.push(value.clone());
                let Ok(()) = redis::cmd("SET")
                    .arg(&string.key)
                    .arg(&value)
                    .query::<()>(&mut conn)
                else {
                    return;
                };
                string.unanswered.pop();
                string.acknowledged = Some(value);
            }
            acknowledged.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Checks every key against what the node holds now; afterwards what it holds is what is
    /// known. Returns the number of keys checked.
    fn check(&mut self, conn: &mut redis::Connection, findings: &mut Vec<String>) -> usize {
        for counter in &mut self.counters {
            let held: Option<i64> = redis::cmd("GET")
                .arg(&counter.key)
                .query(conn)
                .expect("GET a counter");
            let held = held.unwrap_or(0);
            let most = counter.acknowledged + counter.unanswered;
            if held < counter.acknowledged || held > most {
                findings.push(format!(
                    "{} holds {held}: {} increments were acknowledged, {} more sent unanswered",
                    counter.key, counter.acknowledged, counter.unanswered
                ));
            }
            // Unanswered increments not applied yet stay possible.
            counter.unanswered = (most - held).clamp(0, counter.unanswered);
            counter.acknowledged = held;
        }
        for string in &mut self.strings {
            let held: Option<String> = redis::cmd("GET")
                .arg(&string.key)
                .query(conn)
                .expect("GET a string");
            if held != string.acknowledged
                && !held.as_ref().is_some_and(|h| string.unanswered.contains(h))
            {
                findings.push(format!(
                    "{} holds {held:?}: {:?} was acknowledged, {:?} sent unanswered",
                    string.key, string.acknowledged, string.unanswered
                ));
            }
            string.acknowledged = held;
            string.unanswered.clear();
        }
        self.counters.len() + self.strings.len()
    }
}

/// How a run of power cuts went.
#[derive(Debug, Default)]
struct Outcome {
    power_losses: usize,
    acknowledged_writes: u64,
    keys_checked: usize,
    snapshots_built: usize,
    /// Cuts while the node was starting, after a few of its writes (not in `power_losses`).
    start_up_cuts: usize,
    /// Lost or wrong acknowledged writes, and starts refused: empty when all is well.
    findings: Vec<String>,
    /// Files and directories of the data directory a power loss took away.
    entries_lost: Vec<String>,
}

/// Runs up to `cycles` rounds of load, SIGKILL and power cut on one node whose data directory
/// is on a lazy filesystem; stops at the first round that loses acknowledged writes or cannot
/// start.
fn run_power_cuts(cycles: usize, writes_before_cut: (u64, u64), env: &[(&str, &str)]) -> Outcome {
    let mut rng = Rng::from_env_or_clock();
    let root = tempfile::tempdir().expect("temp dir");
    let mount_point = root.path().join("mnt");
    fs::create_dir(&mount_point).expect("mount point");
    let mut lazy = LazyFs::mount(&mount_point).expect("mount the lazy filesystem");
    // The node creates its data directory itself: that creation must be durable too.
    let data_dir = mount_point.join("data");
    let args = ["--snapshot-entries", SNAPSHOT_ENTRIES, "--cache-mb", "16"];
    let mut writers: Vec<WriterKeys> = (0..WRITER_THREADS).map(WriterKeys::new).collect();
    let mut outcome = Outcome::default();

    for cycle in 0..=cycles {
        // A third of the restarts are cut short too, after a few of their own writes: recovery
        // (log repair, redb's, replay, the first election) must survive a power loss as well.
        if cycle > 0 && rng.next().is_multiple_of(3) {
            let writes = rng.between(START_UP_WRITES_BEFORE_CUT);
            let mut random = || rng.next();
            cut_during_start(&mut lazy, &data_dir, &args, env, writes, &mut random);
            outcome.start_up_cuts += 1;
        }
        let server = match TestServer::try_start_in_with_env(&data_dir, &args, env) {
            Ok(server) => server,
            Err(refusal) => {
                outcome.findings.push(format!(
                    "the node refused to start after power loss {}: {refusal}",
                    outcome.power_losses
                ));
                break;
            }
        };
        let Some(mut conn) = writable(&server) else {
            outcome.findings.push(format!(
                "the node took no write within {WRITABLE_TIMEOUT:?} after power loss {}; log:\n{}",
                outcome.power_losses,
                server.log.lock().unwrap()
            ));
            break;
        };
        if cycle == 0 {
            assert_sees_lazy_free_space(&mut conn);
        }
        for keys in &mut writers {
            outcome.keys_checked += keys.check(&mut conn, &mut outcome.findings);
        }
        if !outcome.findings.is_empty() || cycle == cycles {
            outcome.snapshots_built += server.log.lock().unwrap().matches("snapshot built").count();
            break;
        }

        // Load, then SIGKILL at a random moment while writes are in flight.
        let target = rng.between(writes_before_cut);
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = std::mem::take(&mut writers)
            .into_iter()
            .map(|mut keys| {
                let conn = client(&server);
                let (stop, acknowledged) = (stop.clone(), acknowledged.clone());
                std::thread::spawn(move || {
                    let mut findings = Vec::new();
                    keys.write(conn, cycle, &stop, &acknowledged, &mut findings);
                    (keys, findings)
                })
            })
            .collect();
        let deadline = Instant::now() + LOAD_TIMEOUT;
        // Until the target, unless every writer stopped already (their node refused writes).
        while acknowledged.load(Ordering::Acquire) < target
            && Instant::now() < deadline
            && !threads.iter().all(|thread| thread.is_finished())
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut server = server;
        outcome.snapshots_built += server.log.lock().unwrap().matches("snapshot built").count();
        server.kill9();
        stop.store(true, Ordering::Release);
        for thread in threads {
            let (keys, findings) = thread.join().expect("writer thread");
            writers.push(keys);
            outcome.findings.extend(findings);
        }
        writers.sort_by_key(|keys| keys.writer);
        outcome.acknowledged_writes += acknowledged.load(Ordering::Acquire);
        drop(server);

        // Every other cut also tears unsynced writes.
        let mut random = || rng.next();
        let tear: Option<&mut dyn FnMut() -> u64> = if cycle % 2 == 1 {
            Some(&mut random)
        } else {
            None
        };
        lazy.power_loss(tear).expect("power loss");
        outcome.power_losses += 1;
        // Without these the node would replay its whole log, or not start once it was purged.
        for entry in ["raft-log", "sm.redb", "snapshots"] {
            if !data_dir.join(entry).exists() {
                outcome.entries_lost.push(format!(
                    "power loss {} took {entry} from the data directory",
                    outcome.power_losses
                ));
            }
        }
    }
    eprintln!(
        "{} power losses (and {} during start-up), {} acknowledged writes, {} key checks, {} \
         snapshots built, {} findings; lazy filesystem: {}",
        outcome.power_losses,
        outcome.start_up_cuts,
        outcome.acknowledged_writes,
        outcome.keys_checked,
        outcome.snapshots_built,
        outcome.findings.len(),
        lazy.counts()
    );
    drop(lazy);
    outcome
}

/// Starts the node and cuts the power once the filesystem saw `writes` writes from it (or it
/// exited, or `START_UP_CUT_TIMEOUT` passed), tearing unsynced writes.
fn cut_during_start(
    lazy: &mut LazyFs,
    data_dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    writes: u64,
    random: &mut dyn FnMut() -> u64,
) {
    let before = lazy.counts().writes;
    let mut child = Command::new(common::binary())
        .args(["--port", "0", "--dir"])
        .arg(data_dir)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redraft");
    let deadline = Instant::now() + START_UP_CUT_TIMEOUT;
    while lazy.counts().writes < before + writes
        && Instant::now() < deadline
        && child.try_wait().expect("wait").is_none()
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = child.kill();
    let _ = child.wait();
    lazy.power_loss(Some(random)).expect("power loss");
}

/// A connection to `server`, once it accepts writes (bounded); `None` if it never does.
fn writable(server: &TestServer) -> Option<redis::Connection> {
    writable_at(server.port)
}

/// A connection to the node on `port`, once writes through it succeed (bounded).
fn writable_at(port: u16) -> Option<redis::Connection> {
    let deadline = Instant::now() + WRITABLE_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(mut conn) = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .expect("client")
            .get_connection_with_timeout(Duration::from_secs(5))
        {
            conn.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            if redis::cmd("SET")
                .arg("probe")
                .arg("1")
                .query::<()>(&mut conn)
                .is_ok()
            {
                return Some(conn);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// The node's free-space check reads the lazy filesystem's `statfs`, not the disk below it.
fn assert_sees_lazy_free_space(conn: &mut redis::Connection) {
    let info: String = redis::cmd("INFO")
        .arg("persistence")
        .query(conn)
        .expect("INFO");
    let free_bytes: u64 = info
        .lines()
        .find_map(|line| line.strip_prefix("disk_free_bytes:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no disk_free_bytes in {info}"));
    assert!(
        free_bytes <= lazyfs::CAPACITY_BYTES && free_bytes > lazyfs::CAPACITY_BYTES - (1 << 30),
        "the node sees {free_bytes} bytes free, not the lazy filesystem's"
    );
}

fn client(server: &TestServer) -> redis::Connection {
    let conn = server.client();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    conn
}

/// `REDRAFT_POWER_LOSS_CYCLES`, or `default`.
fn power_cuts(default: usize) -> usize {
    std::env::var("REDRAFT_POWER_LOSS_CYCLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

#[test]
fn power_loss_single_node_keeps_every_acknowledged_write() {
    if !fuse_available() {
        return;
    }
    let cuts = power_cuts(POWER_CUTS);
    let outcome = run_power_cuts(cuts, WRITES_BEFORE_CUT, &[]);
    assert!(
        outcome.findings.is_empty() && outcome.entries_lost.is_empty(),
        "acknowledged writes lost or start refused after power loss:\n{}\n{}",
        outcome.entries_lost.join("\n"),
        outcome.findings.join("\n")
    );
    assert_eq!(outcome.power_losses, cuts, "every power cut ran");
    assert!(outcome.acknowledged_writes > 0, "the load ran");
    assert!(
        outcome.snapshots_built > 0,
        "snapshots (and so log purges) happened between power cuts"
    );
}

/// Issue 22: `sm.redb` and `snapshots/` were created without fsyncing the data directory, so a
/// power loss took them away, and once a snapshot had let the log be purged the node refused to
/// start (`Cannot re-apply logs: need logs from index 0, but purged up to …`); the data
/// directory itself was created without fsyncing its parent.
#[test]
fn power_loss_regression_data_directory_entries_were_never_fsynced() {
    if !fuse_available() {
        return;
    }
    let outcome = run_power_cuts(2, WRITES_BEFORE_CUT_CATCHING, &[]);
    assert!(
        outcome.findings.is_empty() && outcome.entries_lost.is_empty(),
        "after a power loss:\n{}\n{}",
        outcome.entries_lost.join("\n"),
        outcome.findings.join("\n")
    );
    assert!(
        outcome.snapshots_built > 0,
        "the log was purged before a cut"
    );
}

/// Proof that the lazy filesystem bites: a debug build skipping directory fsyncs the node needs
/// fails the same check: lost acknowledged writes or a refused start, not just missing files. Without those that make `sm.redb` and `snapshots/` durable (as the
/// node was before they were added) it refuses to start once the log was purged ("Cannot
/// re-apply logs"); without the one that makes the data directory itself durable, everything
/// is lost.
#[test]
fn power_loss_check_catches_a_skipped_directory_fsync() {
    if !fuse_available() {
        return;
    }
    for skipped in ["snapshots,sm.redb", "data"] {
        let outcome = run_power_cuts(
            POWER_CUTS,
            WRITES_BEFORE_CUT_CATCHING,
            &[("REDRAFT_TEST_SKIP_DIR_FSYNC", skipped)],
        );
        assert!(
            !outcome.findings.is_empty(),
            "{} power cuts with the directory fsyncs of {skipped} skipped found nothing: the \
             lazy filesystem does not bite ({outcome:?})",
            outcome.power_losses
        );
        let first: String = outcome.findings[0].chars().take(300).collect();
        eprintln!(
            "skipping the fsyncs of {skipped} caught as expected ({}; {} findings), first: {first}",
            outcome.entries_lost.join(", "),
            outcome.findings.len()
        );
    }
}

/// The lazy filesystem itself: after a power loss only what was synced is there.
#[test]
fn power_loss_lazy_filesystem_keeps_only_what_was_synced() {
    use std::io::Write;
    if !fuse_available() {
        return;
    }
    let root = tempfile::tempdir().expect("temp dir");
    let mount_point = root.path().join("mnt");
    fs::create_dir(&mount_point).expect("mount point");
    let mut lazy = LazyFs::mount(&mount_point).expect("mount the lazy filesystem");
    let path = |name: &str| mount_point.join(name);
    let write = |name: &str, contents: &[u8], sync: bool| {
        let mut file = fs::File::create(path(name)).expect("create");
        file.write_all(contents).expect("write");
        if sync {
            file.sync_data().expect("fdatasync");
        }
    };
    let sync_dir = |name: &str| fs::File::open(path(name)).expect("open dir").sync_all();

    write("synced", b"kept", true);
    write("unsynced-contents", b"lost", false);
    fs::create_dir(path("dir")).expect("mkdir");
    sync_dir("").expect("fsync the root");
    // After the root's fsync: contents synced, but not the name.
    write("unsynced-name", b"gone", true);
    write("dir/inner", b"gone with its name", true);
    fs::rename(path("synced"), path("renamed")).expect("rename");
    lazy.power_loss(None).expect("power loss");

    assert_eq!(fs::read(path("synced")).expect("synced file"), b"kept");
    assert!(!path("renamed").exists(), "an unsynced rename is undone");
    assert_eq!(
        fs::read(path("unsynced-contents")).expect("its name was synced"),
        b"",
        "unsynced contents are lost"
    );
    assert!(!path("unsynced-name").exists(), "an unsynced name is lost");
    assert!(path("dir").is_dir(), "a synced directory stays");
    assert!(
        !path("dir/inner").exists(),
        "an entry of an unsynced directory is lost"
    );

    // Synced now: it survives the next power loss.
    fs::rename(path("synced"), path("renamed")).expect("rename");
    sync_dir("").expect("fsync the root");
    lazy.power_loss(None).expect("power loss");
    assert_eq!(fs::read(path("renamed")).expect("renamed file"), b"kept");
    assert!(!path("synced").exists());
}

/// Which nodes of a cluster one power cut takes.
#[derive(Clone, Copy, Debug)]
enum Victims {
    Follower,
    Leader,
    All,
}

/// Rounds of load and power cuts in the three-node test.
const CLUSTER_ROUNDS: usize = 6;
/// Acknowledged writes while a power-cut follower is down: enough for the log to be purged past
/// it (snapshots every 100 entries, 100 kept below one).
const WRITES_WHILE_DOWN: (u64, u64) = (1000, 1500);

/// Runs `writers` against the nodes on `ports` (one each, in turn) until `target` writes were
/// acknowledged (or `LOAD_TIMEOUT` passed), then calls `cut` while writes are in flight and
/// stops them. Returns the number of acknowledged writes.
fn load_then(
    writers: &mut Vec<WriterKeys>,
    ports: &[u16],
    round: usize,
    target: u64,
    findings: &mut Vec<String>,
    cut: impl FnOnce(),
) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = std::mem::take(writers)
        .into_iter()
        .map(|mut keys| {
            let port = ports[keys.writer % ports.len()];
            let conn = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                .expect("client")
                .get_connection_with_timeout(Duration::from_secs(10))
                .expect("connect");
            conn.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let (stop, acknowledged) = (stop.clone(), acknowledged.clone());
            std::thread::spawn(move || {
                let mut findings = Vec::new();
                keys.write(conn, round, &stop, &acknowledged, &mut findings);
                (keys, findings)
            })
        })
        .collect();
    let deadline = Instant::now() + LOAD_TIMEOUT;
    // Until the target, unless every writer stopped already (their node refused writes).
    while acknowledged.load(Ordering::Acquire) < target
        && Instant::now() < deadline
        && !threads.iter().all(|thread| thread.is_finished())
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    cut();
    stop.store(true, Ordering::Release);
    for thread in threads {
        let (keys, thread_findings) = thread.join().expect("writer thread");
        writers.push(keys);
        findings.extend(thread_findings);
    }
    writers.sort_by_key(|keys| keys.writer);
    acknowledged.load(Ordering::Acquire)
}

/// Three nodes, each on a lazy filesystem of its own, under the same load and checks; the
/// power is cut on a follower (which stays down while the log is purged past it, and so comes
/// back through a snapshot install), on the leader, or on every node at once, in turn.
#[test]
fn power_loss_three_nodes_keep_every_acknowledged_write() {
    if !fuse_available() {
        return;
    }
    let _serial = common::cluster::serial();
    let mut rng = Rng::from_env_or_clock();
    let root = tempfile::tempdir().expect("temp dir");
    let mut lazies = Vec::new();
    let mut data_dirs = Vec::new();
    for i in 1..=3 {
        let mount_point = root.path().join(format!("mnt{i}"));
        fs::create_dir(&mount_point).expect("mount point");
        lazies.push(LazyFs::mount(&mount_point).expect("mount the lazy filesystem"));
        data_dirs.push(mount_point.join("data"));
    }
    let mut cluster = common::cluster::TestCluster::start_in(
        data_dirs,
        &["--snapshot-entries", SNAPSHOT_ENTRIES],
    );
    let mut writers: Vec<WriterKeys> = (0..WRITER_THREADS).map(WriterKeys::new).collect();
    let mut findings = Vec::new();
    let (mut node_cuts, mut acknowledged_writes, mut keys_checked) = (0, 0, 0);
    let mut snapshot_installs = 0;
    let kinds = [Victims::Follower, Victims::Leader, Victims::All];
    let rounds = power_cuts(CLUSTER_ROUNDS);

    for round in 0..=rounds {
        let leader = cluster.wait_for_leader(Duration::from_secs(30));
        cluster.wait_until_every_node_routes(Duration::from_secs(30));
        let mut conn = writable_at(cluster.nodes[leader].port).expect("the leader takes writes");
        for keys in &mut writers {
            keys_checked += keys.check(&mut conn, &mut findings);
        }
        if !findings.is_empty() || round == rounds {
            break;
        }

        // Load through every node (followers proxy to the leader), the cut while writes are in
        // flight.
        let kind = kinds[round % kinds.len()];
        let victims: Vec<usize> = match kind {
            Victims::Follower => vec![(leader + 1 + (rng.next() % 2) as usize) % 3],
            Victims::Leader => vec![leader],
            Victims::All => vec![0, 1, 2],
        };
        let ports: Vec<u16> = cluster.nodes.iter().map(|node| node.port).collect();
        let target = rng.between(WRITES_BEFORE_CUT);
        acknowledged_writes +=
            load_then(&mut writers, &ports, round, target, &mut findings, || {
                for &victim in &victims {
                    cluster.nodes[victim].kill9();
                }
            });
        for &victim in &victims {
            let mut random = || rng.next();
            let tear: Option<&mut dyn FnMut() -> u64> = if round % 2 == 1 {
                Some(&mut random)
            } else {
                None
            };
            lazies[victim].power_loss(tear).expect("power loss");
            node_cuts += 1;
        }
        eprintln!("round {round}: power cut on {kind:?} (nodes {victims:?})");
        if let Victims::Follower = kind {
            // More load while it is down: the log is purged past it, so it comes back through a
            // snapshot install.
            let up: Vec<u16> = (0..ports.len())
                .filter(|i| !victims.contains(i))
                .map(|i| ports[i])
                .collect();
            let target = rng.between(WRITES_WHILE_DOWN);
            acknowledged_writes +=
                load_then(&mut writers, &up, round, target, &mut findings, || {});
        }
        for &victim in &victims {
            cluster.restart(victim);
        }
        if let Victims::Follower = kind {
            cluster.wait_caught_up(victims[0], Duration::from_secs(60));
            let log = cluster.nodes[victims[0]].log.lock().unwrap();
            snapshot_installs += log.matches("installing a snapshot received").count();
        }
    }
    eprintln!(
        "{node_cuts} node power losses, {acknowledged_writes} acknowledged writes, {keys_checked} \
         key checks, {snapshot_installs} snapshots installed on a follower, {} findings",
        findings.len()
    );
    drop(cluster);
    assert!(
        findings.is_empty(),
        "acknowledged writes lost after power loss:\n{}",
        findings.join("\n")
    );
    assert!(acknowledged_writes > 0, "the load ran");
}
