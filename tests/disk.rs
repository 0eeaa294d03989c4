//! Disk trouble on a real node: a data directory on a small filesystem that fills up, and
//! damaged data files at start.
//!
//! The small filesystem is a tmpfs mounted with a size (the tests run as root, as CI does);
//! "space freed" is a ballast file the test wrote there and removes again. Every test unmounts
//! what it mounted, also when it fails.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{RawConnection, TestServer, resp_command};

const MIB: u64 = 1024 * 1024;

/// A tmpfs of a fixed size mounted on a fresh temporary directory; unmounted on drop.
struct SmallFilesystem {
    mount_point: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallFilesystem {
    fn mount(size_mib: u64) -> SmallFilesystem {
        let dir = tempfile::tempdir().expect("temp dir");
        let mount_point = dir.path().join("fs");
        fs::create_dir(&mount_point).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(&mount_point)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a {size_mib} MiB tmpfs failed: these tests need root, as CI runs them"
        );
        SmallFilesystem {
            mount_point,
            _dir: dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.mount_point.join(name)
    }

    /// Bytes still free on the filesystem.
    fn available(&self) -> u64 {
        let output = Command::new("df")
            .args(["--block-size=1", "--output=avail"])
            .arg(&self.mount_point)
            .output()
            .expect("run df");
        let text = String::from_utf8_lossy(&output.stdout);
        text.lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected df output {text:?}"))
    }

    /// Writes a file of `bytes` (or until the filesystem is full, when `bytes` is `None`),
    /// standing for data of another program on the same disk. Returns the bytes written.
    fn ballast(&self, name: &str, bytes: Option<u64>) -> u64 {
        use std::io::Write;
        let mut file = fs::File::create(self.path(name)).expect("create ballast");
        let chunk = vec![0x5au8; 64 * 1024];
        let mut written = 0u64;
        while bytes.is_none_or(|b| written < b) {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(err) if err.raw_os_error() == Some(28) && bytes.is_none() => break,
                Err(err) => panic!("writing ballast: {err}"),
            }
        }
        written
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("--lazy")
            .arg(&self.mount_point)
            .status();
    }
}

/// A value of `len` bytes that differs per key, so a mixed-up or damaged value shows.
fn value_for(key: usize, len: usize) -> Vec<u8> {
    let seed = format!("value-of-{key}:");
    seed.bytes().cycle().take(len).collect()
}

/// Sends one command and returns the raw reply.
fn call(conn: &mut RawConnection, args: &[&[u8]]) -> Vec<u8> {
    conn.send(&resp_command(args));
    conn.read_reply()
}

fn text(reply: &[u8]) -> String {
    String::from_utf8_lossy(reply).into_owned()
}

/// What `GET counter` answers after `n` acknowledged `INCR`s.
fn counter_reply(n: usize) -> Vec<u8> {
    if n == 0 {
        b"$-1\r\n".to_vec()
    } else {
        bulk(n.to_string().as_bytes())
    }
}

fn bulk(value: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", value.len()).into_bytes();
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
    out
}

/// `SET key:<i>` values of `len` bytes from `first` on until one is refused; returns the
/// number acknowledged and the refusal.
fn fill_until_refused(conn: &mut RawConnection, first: usize, len: usize) -> (usize, String) {
    for i in first..first + 10_000 {
        let reply = call(
            conn,
            &[b"SET", format!("key:{i}").as_bytes(), &value_for(i, len)],
        );
        if reply != b"+OK\r\n" {
            return (i - first, text(&reply));
        }
    }
    panic!("10,000 writes of {len} bytes never filled the filesystem");
}

/// Fills until writes of `len` bytes stay refused. A refusal can be transient (a snapshot being
/// built holds its space until it is written), so it counts only once a retry every 50 ms has
/// kept getting it for a second.
fn fill_until_full(conn: &mut RawConnection, first: usize, len: usize) -> (usize, String) {
    let mut written = 0;
    'filling: loop {
        let (more, refusal) = fill_until_refused(conn, first + written, len);
        written += more;
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            let i = first + written;
            let reply = call(
                conn,
                &[b"SET", format!("key:{i}").as_bytes(), &value_for(i, len)],
            );
            if reply == b"+OK\r\n" {
                written += 1;
                continue 'filling;
            }
        }
        return (written, refusal);
    }
}

fn assert_values(conn: &mut RawConnection, keys: std::ops::Range<usize>, len: usize) {
    for i in keys {
        let reply = call(conn, &[b"GET", format!("key:{i}").as_bytes()]);
        assert!(
            reply == bulk(&value_for(i, len)),
            "key:{i} does not hold its acknowledged value (reply starts {:?})",
            text(&reply[..reply.len().min(60)])
        );
    }
}

fn info_field(conn: &mut RawConnection, field: &str) -> String {
    let reply = text(&call(conn, &[b"INFO", b"persistence"]));
    reply
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("INFO persistence has no {field}: {reply}"))
        .to_string()
}

const VALUE_LEN: usize = 256 * 1024;

#[test]
fn disk_full_refuses_writes_that_add_data_keeps_reads_and_deletes_and_recovers_when_freed() {
    let fs = SmallFilesystem::mount(128);
    let ballast_bytes = fs.ballast("ballast", Some(24 * MIB));
    let data_dir = fs.path("data");
    let mut server = TestServer::start_in(
        &data_dir,
        &["--disk-reserve-mb", "16", "--snapshot-entries", "50"],
    );
    let mut conn = server.raw();

    let (acknowledged, refusal) = fill_until_full(&mut conn, 0, VALUE_LEN);
    assert!(
        refusal.starts_with(
            "-MISCONF Errors writing to the data directory: not enough free disk space"
        ),
        "refusal: {refusal}"
    );
    assert!(acknowledged >= 20, "only {acknowledged} writes fitted");
    assert!(
        fs.available() >= 8 * MIB,
        "the reserve was not kept: {} bytes left",
        fs.available()
    );
    // Smaller writes still fit in what is left above the reserve, until they do not either.
    let (small, refusal) = fill_until_full(&mut conn, 100_000, 16 * 1024);
    assert!(refusal.starts_with("-MISCONF "), "refusal: {refusal}");
    assert_eq!(
        info_field(&mut conn, "disk_reserve_bytes"),
        (16 * MIB).to_string()
    );
    let free: u64 = info_field(&mut conn, "disk_free_bytes")
        .parse()
        .expect("disk_free_bytes");
    assert!(
        free < 64 * MIB,
        "INFO reports {free} bytes free on a full 128 MiB filesystem"
    );

    // Reads, deletes, and writes that add no data keep working; data-adding writes do not.
    assert_values(&mut conn, 0..acknowledged, VALUE_LEN);
    assert_values(&mut conn, 100_000..100_000 + small, 16 * 1024);
    // A counter changes no amount of data: INCRs run while the last bytes above the reserve
    // last (each is either applied or refused with -MISCONF, never anything else).
    let mut increments = 0;
    for _ in 0..200 {
        let reply = call(&mut conn, &[b"INCR", b"counter"]);
        if reply.starts_with(b":") {
            increments += 1;
        } else {
            assert!(reply.starts_with(b"-MISCONF "), "INCR: {}", text(&reply));
        }
    }
    // Space comes back now and then (replaced pages, an older snapshot removed), so a write
    // that must be refused is one that cannot fit on this filesystem at all.
    let big = vec![b'v'; 24 * MIB as usize];
    assert!(text(&call(&mut conn, &[b"HSET", b"h", b"f", &big])).starts_with("-MISCONF "));
    assert!(text(&call(&mut conn, &[b"MULTI"])).starts_with("+OK"));
    call(&mut conn, &[b"DEL", b"key:1"]);
    call(&mut conn, &[b"SET", b"key:0", &big]);
    let exec = text(&call(&mut conn, &[b"EXEC"]));
    assert!(
        exec.contains("-MISCONF "),
        "a transaction adding data: {exec}"
    );
    assert_eq!(call(&mut conn, &[b"DEL", b"key:0"]), b":1\r\n");
    assert_eq!(call(&mut conn, &[b"EXPIRE", b"key:1", b"1000"]), b":1\r\n");
    assert_eq!(call(&mut conn, &[b"PING"]), b"+PONG\r\n");
    assert_eq!(
        call(&mut conn, &[b"GET", b"counter"]),
        counter_reply(increments)
    );
    let counter_key = usize::from(increments > 0);
    assert_eq!(
        call(&mut conn, &[b"DBSIZE"]),
        format!(":{}\r\n", acknowledged + small - 1 + counter_key).into_bytes()
    );

    // Another program frees space: writes resume without a restart.
    fs::remove_file(fs.path("ballast")).expect("remove ballast");
    assert!(fs.available() >= ballast_bytes);
    assert_eq!(info_field(&mut conn, "disk_status"), "ok");
    let (more, refusal) = fill_until_refused(&mut conn, acknowledged, VALUE_LEN);
    assert!(refusal.starts_with("-MISCONF "), "refusal: {refusal}");
    // How many fit depends on whether the deferred snapshot takes its share first.
    assert!(more >= 1, "no write fitted after freeing 24 MiB");
    eprintln!(
        "disk full: {acknowledged} × 256 KiB, {small} × 16 KiB and {increments} INCR acknowledged \
         before the refusals; {more} × 256 KiB more after freeing 24 MiB"
    );

    // Snapshots that would not have fitted were deferred rather than left to fail.
    let log = server.log.lock().unwrap().clone();
    assert!(
        log.contains("not enough free disk space for a snapshot"),
        "no snapshot was deferred:\n{log}"
    );

    // Nothing acknowledged is lost or damaged across kill -9 on the full disk.
    server.kill9();
    let mut server = TestServer::start_in(&data_dir, &["--disk-reserve-mb", "16"]);
    let mut conn = server.raw();
    assert_eq!(call(&mut conn, &[b"EXISTS", b"key:0"]), b":0\r\n");
    assert_values(&mut conn, 1..acknowledged + more, VALUE_LEN);
    assert_eq!(
        call(&mut conn, &[b"GET", b"counter"]),
        counter_reply(increments)
    );
    server.kill9();
}

#[test]
fn disk_filled_past_the_reserve_stops_the_node_and_a_restart_loses_no_acknowledged_write() {
    let fs = SmallFilesystem::mount(64);
    fs.ballast("ballast", Some(8 * MIB));
    let data_dir = fs.path("data");
    // With the reserve turned off, the writes run into the real ENOSPC.
    let mut server = TestServer::start_in(&data_dir, &["--disk-reserve-mb", "0"]);
    let mut conn = server.raw();
    let mut acknowledged = 0;
    let failure = loop {
        assert!(acknowledged < 10_000, "10,000 writes never filled 64 MiB");
        let i = acknowledged;
        conn.send(&resp_command(&[
            b"SET",
            format!("key:{i}").as_bytes(),
            &value_for(i, VALUE_LEN),
        ]));
        match conn.try_read_reply() {
            Some(reply) if reply == b"+OK\r\n" => acknowledged += 1,
            other => break other.map(|r| text(&r)),
        }
    };
    assert!(acknowledged >= 20, "only {acknowledged} writes fitted");
    let status = server
        .wait_for_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("the node kept running after a failed write ({failure:?})"));
    assert!(!status.success(), "exit status {status}");
    let log = server.log.lock().unwrap().clone();
    assert!(
        log.contains("raft stopped") && log.contains("No space left on device"),
        "the node's last words do not say why it stopped:\n{log}"
    );

    // Once space is freed the node restarts with every acknowledged write; the write that
    // failed was never acknowledged and may or may not be there, but never damaged.
    fs::remove_file(fs.path("ballast")).expect("remove ballast");
    let mut server = TestServer::start_in(&data_dir, &["--disk-reserve-mb", "0"]);
    let mut conn = server.raw();
    assert_values(&mut conn, 0..acknowledged, VALUE_LEN);
    let unacknowledged = call(
        &mut conn,
        &[b"GET", format!("key:{acknowledged}").as_bytes()],
    );
    assert!(
        unacknowledged == b"$-1\r\n" || unacknowledged == bulk(&value_for(acknowledged, VALUE_LEN)),
        "the failed write left a damaged value"
    );
    assert_eq!(call(&mut conn, &[b"SET", b"after", b"restart"]), b"+OK\r\n");
    server.kill9();
}

/// A stopped node's data directory with 300 acknowledged 2 KB values in its raft log.
fn stopped_node_with_data(root: &Path, clean_stop: bool) -> PathBuf {
    let data_dir = root.join("pristine");
    let mut server = TestServer::start_in(&data_dir, &[]);
    let mut conn = server.raw();
    for i in 0..300 {
        let reply = call(
            &mut conn,
            &[b"SET", format!("key:{i}").as_bytes(), &value_for(i, 2000)],
        );
        assert_eq!(reply, b"+OK\r\n");
    }
    if clean_stop {
        assert!(server.signal_and_wait("TERM").success());
    } else {
        server.kill9();
    }
    data_dir
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create copy");
    for entry in fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// Starts a node on `data_dir`: it must either refuse with the damaged-log message, or serve
/// every acknowledged value exactly. Returns whether it refused.
fn refused_or_intact(data_dir: &Path, what: &str) -> bool {
    match TestServer::try_start_in(data_dir, &[]) {
        Err(exited) => {
            assert!(
                exited.contains("redraft: error: cannot open the raft log")
                    && exited.contains("raft-log is damaged")
                    && exited.contains("refusing to start"),
                "{what}: the node did not say clearly why it refused: {exited}"
            );
            assert!(!exited.contains("panicked"), "{what}: panicked: {exited}");
            true
        }
        Ok(mut server) => {
            let mut conn = server.raw();
            assert_values(&mut conn, 0..300, 2000);
            server.kill9();
            false
        }
    }
}

/// The newest segment of a stopped node's raft log, and where its groups end.
fn newest_segment(data_dir: &Path) -> (PathBuf, u64) {
    let mut segments: Vec<PathBuf> = fs::read_dir(data_dir.join("raft-log"))
        .expect("raft-log dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    let newest = segments.pop().expect("a segment");
    let bytes = fs::read(&newest).expect("read segment");
    let used = bytes.iter().rposition(|&b| b != 0).expect("data") as u64 + 1;
    (newest, used)
}

/// A copy of the stopped node's data directory, untouched, starts and serves every value:
/// the damage tests below see the damage, not a log that never reopens.
fn intact_copy(pristine: &Path, copy: &Path) {
    copy_dir(pristine, copy);
    assert!(
        !refused_or_intact(copy, "an untouched copy"),
        "an untouched copy of the data directory was refused"
    );
    fs::remove_dir_all(copy).expect("remove copy");
}

#[test]
fn truncated_raft_log_is_refused_at_start_with_a_clear_message() {
    let root = tempfile::tempdir().expect("temp dir");
    let pristine = stopped_node_with_data(root.path(), false);
    intact_copy(&pristine, &root.path().join("untouched"));
    let (segment, used) = newest_segment(&pristine);
    let name = segment.file_name().expect("name").to_owned();
    let len = fs::metadata(&segment).expect("segment").len();
    // Segments are created whole: a shorter one was cut, wherever the cut falls.
    for (n, keep) in [len - 1, len - 4096, used, used / 2, 4096, 100]
        .into_iter()
        .enumerate()
    {
        let copy = root.path().join(format!("truncated-{n}"));
        copy_dir(&pristine, &copy);
        let file = fs::OpenOptions::new()
            .write(true)
            .open(copy.join("raft-log").join(&name))
            .expect("open segment");
        file.set_len(keep).expect("truncate");
        drop(file);
        let refused = refused_or_intact(
            &copy,
            &format!("raft log segment cut to {keep} of {len} bytes"),
        );
        assert!(
            refused,
            "a raft log segment cut to {keep} of {len} bytes was accepted"
        );
        fs::remove_dir_all(&copy).expect("remove copy");
    }
}

#[test]
fn corrupted_raft_log_is_refused_at_start_or_the_damage_hit_no_data() {
    let root = tempfile::tempdir().expect("temp dir");
    for clean_stop in [true, false] {
        let pristine =
            stopped_node_with_data(&root.path().join(format!("{clean_stop}")), clean_stop);
        intact_copy(
            &pristine,
            &root.path().join(format!("untouched-{clean_stop}")),
        );
        let (segment, used) = newest_segment(&pristine);
        let name = segment.file_name().expect("name").to_owned();
        let len = fs::metadata(&segment).expect("segment").len();
        // 31 places across the written part (the last 64 bytes included), then 8 in the
        // zero-filled rest, which holds nothing.
        let mut offsets: Vec<u64> = (1..32).map(|k| (used - 64) * k / 31).collect();
        offsets.extend((1..9).map(|k| used + (len - used - 64) * k / 8));
        let mut refused_in_data = 0;
        for &offset in &offsets {
            let copy = root.path().join(format!("corrupt-{clean_stop}-{offset}"));
            copy_dir(&pristine, &copy);
            let path = copy.join("raft-log").join(&name);
            let mut bytes = fs::read(&path).expect("read segment");
            for byte in &mut bytes[offset as usize..(offset as usize + 64).min(len as usize)] {
                *byte ^= 0xa5;
            }
            fs::write(&path, &bytes).expect("write segment");
            let what = format!(
                "raft log of a node stopped {} with 64 bytes flipped at {offset} of {len} \
                 ({used} written)",
                if clean_stop { "cleanly" } else { "by kill -9" }
            );
            if refused_or_intact(&copy, &what) && offset < used {
                refused_in_data += 1;
            }
            fs::remove_dir_all(&copy).expect("remove copy");
        }
        // Every flip inside the written part hits a checksummed group.
        assert_eq!(
            refused_in_data, 31,
            "only {refused_in_data} of 31 corruptions of written groups were detected \
             (stopped cleanly: {clean_stop})"
        );
    }
}

/// A node stopped cleanly with 300 acknowledged 2 KB values, snapshots every 100 entries (so
/// its log no longer holds the first writes, and the state machine cannot be rebuilt from the
/// log alone), and its `sm.redb` flushed at the stop.
fn stopped_node_with_snapshots(root: &Path) -> PathBuf {
    let data_dir = root.join("pristine");
    let mut server = TestServer::start_in(&data_dir, &SNAPSHOT_EVERY_100);
    let mut conn = server.raw();
    for i in 0..300 {
        let reply = call(
            &mut conn,
            &[b"SET", format!("key:{i}").as_bytes(), &value_for(i, 2000)],
        );
        assert_eq!(reply, b"+OK\r\n");
    }
    assert!(server.signal_and_wait("TERM").success());
    data_dir
}

const SNAPSHOT_EVERY_100: [&str; 2] = ["--snapshot-entries", "100"];

/// Starts a node on `data_dir`: it must either refuse with the damaged-state-machine message,
/// or serve every acknowledged value exactly. Returns whether it refused.
fn sm_refused_or_intact(data_dir: &Path, what: &str) -> bool {
    match TestServer::try_start_in(data_dir, &SNAPSHOT_EVERY_100) {
        Err(exited) => {
            assert!(
                exited.contains("redraft: error: cannot open the state machine")
                    && exited.contains("sm.redb is damaged")
                    && exited.contains("refusing to start")
                    && exited.contains("Move the file aside"),
                "{what}: the node did not say clearly why it refused: {exited}"
            );
            assert!(!exited.contains("panicked"), "{what}: panicked: {exited}");
            true
        }
        Ok(mut server) => {
            let mut conn = server.raw();
            assert_values(&mut conn, 0..300, 2000);
            server.kill9();
            false
        }
    }
}

/// After a refusal, moving `sm.redb` aside (what the message says to do) rebuilds it from the
/// newest snapshot and the log, with every acknowledged value.
fn moved_aside_rebuilds(data_dir: &Path, what: &str) {
    fs::rename(data_dir.join("sm.redb"), data_dir.join("sm.redb.damaged")).expect("move aside");
    assert!(
        !sm_refused_or_intact(data_dir, what),
        "{what}: refused again after sm.redb was moved aside"
    );
}

#[test]
fn damaged_state_machine_is_refused_at_start_or_repaired_never_served() {
    let root = tempfile::tempdir().expect("temp dir");
    let pristine = stopped_node_with_snapshots(root.path());
    let untouched = root.path().join("untouched");
    copy_dir(&pristine, &untouched);
    assert!(
        !sm_refused_or_intact(&untouched, "an untouched copy"),
        "an untouched copy of the data directory was refused"
    );
    fs::remove_dir_all(&untouched).expect("remove copy");
    let len = fs::metadata(pristine.join("sm.redb"))
        .expect("sm.redb")
        .len();
    assert!(len > 600_000, "sm.redb holds only {len} bytes: no values?");

    // 31 flips of 64 bytes across the file, past its first page (the header).
    let mut refused = 0;
    for k in 1..32u64 {
        let offset = 4096 + (len - 4096 - 64) * k / 31;
        let copy = root.path().join(format!("flipped-{offset}"));
        copy_dir(&pristine, &copy);
        let path = copy.join("sm.redb");
        let mut bytes = fs::read(&path).expect("read sm.redb");
        for byte in &mut bytes[offset as usize..offset as usize + 64] {
            *byte ^= 0xa5;
        }
        fs::write(&path, &bytes).expect("write sm.redb");
        let what = format!("sm.redb with 64 bytes flipped at {offset} of {len}");
        if sm_refused_or_intact(&copy, &what) {
            refused += 1;
            moved_aside_rebuilds(&copy, &what);
        }
        fs::remove_dir_all(&copy).expect("remove copy");
    }
    eprintln!("{refused} of 31 flips refused, the others repaired or harmless");

    // A cut file is refused whatever the cut.
    for keep in [len / 2, 4096 * 3, len - 4096] {
        let copy = root.path().join(format!("cut-{keep}"));
        copy_dir(&pristine, &copy);
        let file = fs::OpenOptions::new()
            .write(true)
            .open(copy.join("sm.redb"))
            .expect("open sm.redb");
        file.set_len(keep).expect("truncate");
        drop(file);
        let what = format!("sm.redb cut to {keep} of {len} bytes");
        assert!(sm_refused_or_intact(&copy, &what), "{what} was accepted");
        moved_aside_rebuilds(&copy, &what);
        fs::remove_dir_all(&copy).expect("remove copy");
    }
}
