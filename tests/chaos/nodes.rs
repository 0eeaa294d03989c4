//! The redraft processes under test: one per network namespace, each logging to a file in
//! the run directory, each with its data directory on a lazy filesystem of its own
//! (`power_loss/lazyfs.rs`, mounted by this process) when FUSE is available, else on a plain
//! directory. Kill, pause, restart, power loss, and replacement by a fresh node under a new id.
//!
//! A node is spawned from a thread that has entered its network namespace (`setns`), so it
//! runs in that namespace but in this process's mount namespace, and its pid is redraft's own.
//! Not `ip netns exec`: that gives each process a copy of every mount, which an unmount does
//! not reach where `/` is not a shared mount (as in many containers), so the copy in another
//! node's namespace would keep a cut filesystem mounted and its FUSE session alive. Other
//! programs' `ip netns exec` (the harness's own `nft` and `tc`, another chaos run) still copy
//! the mounts, so the lazy filesystems are mounted under a shared bind mount of their own:
//! those copies are its slaves, and an unmount reaches them.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::lazyfs::{Counts, LazyFs};
use crate::net::Network;

/// Client port of every node (each has its own address).
pub const CLIENT_PORT: u16 = 6379;
/// Peer port of every node.
pub const PEER_PORT: u16 = 16379;
const SECRET: &str = "chaos-secret";

/// One node slot: namespace index, current raft id, process.
pub struct Node {
    /// Current raft id (a replaced node gets a new one).
    pub id: u64,
    /// Client address.
    pub addr: String,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    paused: bool,
    /// The lazy filesystem `dir` is on (`None`: a plain directory); unmounted when dropped,
    /// after the process is gone ([`Nodes`] kills every node first).
    disk: Option<LazyFs>,
}

/// The cluster under test.
pub struct Nodes {
    /// The nodes, by namespace index.
    pub nodes: Vec<Node>,
    binary: String,
    next_id: u64,
    /// Nodes found to have exited without the harness stopping them (a crash: a failure).
    pub crashes: Vec<String>,
    /// The shared mount the lazy filesystems are under (dropped after them).
    _shared: Option<SharedMount>,
}

impl Nodes {
    /// Starts `n` nodes forming a new cluster, node `i` with its data directory on disk `i`
    /// (from [`mount_disks`]) if given, else in a plain directory of the run directory.
    pub fn start(network: &Network, run_dir: &Path, binary: &str, disks: Option<Disks>) -> Nodes {
        let n = network_nodes(network);
        let (mut disks, shared) = match disks {
            Some(Disks { lazy, shared }) => (Some(lazy.into_iter()), Some(shared)),
            None => (None, None),
        };
        let nodes = (0..n)
            .map(|i| {
                let disk = disks.as_mut().and_then(|disks| disks.next());
                Node {
                    id: i as u64 + 1,
                    addr: format!("{}:{CLIENT_PORT}", network.node_ip(i)),
                    // On a lazy filesystem the node creates its data directory itself, so
                    // that creation must be durable too.
                    dir: match disk {
                        Some(_) => disk_mount_point(run_dir, i).join("data"),
                        None => run_dir.join(format!("node{i}")),
                    },
                    log: run_dir.join(format!("node{i}.log")),
                    child: None,
                    paused: false,
                    disk,
                }
            })
            .collect();
        let mut cluster = Nodes {
            nodes,
            binary: binary.to_string(),
            next_id: n as u64 + 1,
            crashes: Vec::new(),
            _shared: shared,
        };
        let initial: Vec<String> = cluster
            .nodes
            .iter()
            .map(|node| format!("{}={}@{PEER_PORT}", node.id, node.addr))
            .collect();
        let initial = initial.join(",");
        for i in 0..n {
            cluster.spawn(network, i, &["--initial-cluster", &initial]);
        }
        cluster
    }

    fn spawn(&mut self, network: &Network, i: usize, extra: &[&str]) {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("node log");
        let mut command = Command::new(&self.binary);
        command
            .args(["--bind", &network.node_ip(i)])
            .args(["--port", &CLIENT_PORT.to_string()])
            .args(["--cluster-port", &PEER_PORT.to_string()])
            .args(["--node-id", &node.id.to_string()])
            .arg("--dir")
            .arg(&node.dir)
            .args(["--cluster-secret", SECRET])
            .args(["--follower-mode", follower_mode(i)])
            .args(["--snapshot-entries", "5000"])
            .args(extra)
            .env("REDRAFT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        let child = spawn_in_namespace(&network.namespace(i), &mut command).expect("start redraft");
        node.child = Some(child);
        node.paused = false;
    }

    /// Notes node `i` in [`Nodes::crashes`] if its process exited without the harness
    /// stopping it; it then counts as stopped (a restart starts it again).
    pub fn reap(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let Some(child) = node.child.as_mut() else {
            return;
        };
        if let Ok(Some(status)) = child.try_wait() {
            self.crashes.push(format!(
                "node {i} (id {}) exited on its own ({status}); see node{i}.log",
                node.id
            ));
            node.child = None;
            node.paused = false;
        }
    }

    /// `kill -9` node `i` (resumed first if paused, so it dies now).
    pub fn kill(&mut self, i: usize) {
        self.reap(i);
        let node = &mut self.nodes[i];
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        node.paused = false;
    }

    /// Restarts node `i` on its data directory.
    pub fn restart(&mut self, network: &Network, i: usize) {
        self.reap(i);
        if self.nodes[i].child.is_none() {
            self.spawn(network, i, &[]);
        }
    }

    /// Cuts the power of node `i`: `kill -9` (and reaped), then its filesystem keeps only what
    /// was synced (with `tear`, some unsynced writes survive, torn). It stays down until
    /// [`Nodes::restart`]. An error if the node has no lazy filesystem or it failed to remount.
    pub fn power_loss(
        &mut self,
        i: usize,
        tear: Option<&mut dyn FnMut() -> u64>,
    ) -> Result<(), String> {
        self.kill(i);
        let disk = self.nodes[i]
            .disk
            .as_mut()
            .ok_or("the node is not on a lazy filesystem")?;
        disk.power_loss(tear).map_err(|err| err.to_string())
    }

    /// What node `i`'s lazy filesystem saw so far.
    pub fn disk_counts(&self, i: usize) -> Option<Counts> {
        self.nodes[i].disk.as_ref().map(LazyFs::counts)
    }

    /// Copies every data directory on a lazy filesystem (gone once unmounted) into the run
    /// directory as `node<i>-data`, for a run that keeps its directory; best effort. Call it
    /// with the nodes stopped.
    pub fn copy_data_out(&self, run_dir: &Path) {
        for (i, node) in self.nodes.iter().enumerate() {
            if node.disk.is_some()
                && let Err(err) = copy_tree(&node.dir, &run_dir.join(format!("node{i}-data")))
            {
                eprintln!("chaos: could not copy node {i}'s data out: {err}");
            }
        }
    }

    /// SIGSTOP node `i`.
    pub fn pause(&mut self, i: usize) {
        if let Some(child) = &self.nodes[i].child {
            signal(child.id(), "-STOP");
            self.nodes[i].paused = true;
        }
    }

    /// SIGCONT node `i`.
    pub fn resume(&mut self, i: usize) {
        if let Some(child) = &self.nodes[i].child
            && self.nodes[i].paused
        {
            signal(child.id(), "-CONT");
        }
        self.nodes[i].paused = false;
    }

    /// Replaces node `i` by an empty node under a new id: removes it from the membership
    /// through `via`, wipes its directory, starts it with `--join`. Returns the new id, or why
    /// the membership change was refused (the node is then restarted as it was).
    pub fn replace(&mut self, network: &Network, i: usize, via: usize) -> Result<u64, String> {
        let old_id = self.nodes[i].id;
        let via_addr = self.nodes[via].addr.clone();
        admin(&via_addr, &["RAFT.REMOVENODE", &old_id.to_string()])?;
        self.kill(i);
        let _ = std::fs::remove_dir_all(&self.nodes[i].dir);
        let new_id = self.next_id;
        self.next_id += 1;
        self.nodes[i].id = new_id;
        let join = format!("{via_addr}@{PEER_PORT}");
        self.spawn(network, i, &["--join", &join]);
        Ok(new_id)
    }

    /// The node every reachable node names as leader, with a majority agreeing.
    pub fn leader(&self) -> Option<usize> {
        let mut votes = vec![0usize; self.nodes.len()];
        for node in &self.nodes {
            if node.child.is_none() || node.paused {
                continue;
            }
            if let Some(id) =
                info_field(&node.addr, "raft_leader_id").and_then(|v| v.parse::<u64>().ok())
                && let Some(j) = self.nodes.iter().position(|n| n.id == id)
            {
                votes[j] += 1;
            }
        }
        let (best, count) = votes.iter().enumerate().max_by_key(|(_, c)| **c)?;
        (*count > self.nodes.len() / 2).then_some(best)
    }

    /// Waits (bounded) for an agreed leader.
    pub fn wait_for_leader(&self, timeout: Duration) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(leader) = self.leader() {
                return Some(leader);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Client addresses of all nodes.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    /// Kills every node.
    pub fn stop_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.resume(i);
            self.kill(i);
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Nodes alternate follower modes, so one run exercises both: even indexes proxy requests to
/// the leader, odd ones answer `-MOVED` (clients follow it, as cluster clients do).
pub fn follower_mode(i: usize) -> &'static str {
    if i.is_multiple_of(2) {
        "proxy"
    } else {
        "redirect"
    }
}

/// The directory the lazy filesystems are mounted in.
fn disks_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("disks")
}

/// Where node `i`'s lazy filesystem is mounted.
fn disk_mount_point(run_dir: &Path, i: usize) -> PathBuf {
    disks_dir(run_dir).join(format!("mnt{i}"))
}

/// A directory bind-mounted on itself and made shared; unmounted when dropped.
pub struct SharedMount(PathBuf);

impl SharedMount {
    fn new(dir: &Path) -> Result<SharedMount, String> {
        std::fs::create_dir_all(dir).map_err(|err| format!("{}: {err}", dir.display()))?;
        let mount = |args: &[&str]| {
            let status = Command::new("mount").args(args).arg(dir).status();
            match status {
                Ok(status) if status.success() => Ok(()),
                other => Err(format!("mount {args:?} {}: {other:?}", dir.display())),
            }
        };
        mount(&["--bind", &dir.to_string_lossy()])?;
        let shared = SharedMount(dir.to_path_buf());
        mount(&["--make-shared"])?;
        Ok(shared)
    }
}

impl Drop for SharedMount {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("umount").arg("--lazy").arg(&self.0).status();
        }
    }
}

/// The nodes' lazy filesystems, one each, and the shared mount they are under.
pub struct Disks {
    lazy: Vec<LazyFs>,
    shared: SharedMount,
}

/// Mounts a lazy filesystem for each of `n` nodes under `run_dir`; says why not if FUSE is
/// unavailable here (not root, no `/dev/fuse`) or a mount fails (those made are unmounted).
pub fn mount_disks(run_dir: &Path, n: usize) -> Result<Disks, String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(|err| format!("cannot open /dev/fuse: {err}"))?;
    let shared = SharedMount::new(&disks_dir(run_dir))?;
    let lazy = (0..n)
        .map(|i| {
            let mount_point = disk_mount_point(run_dir, i);
            std::fs::create_dir_all(&mount_point)
                .and_then(|()| LazyFs::mount(&mount_point))
                .map_err(|err| format!("cannot mount {}: {err}", mount_point.display()))
        })
        .collect::<Result<_, _>>()?;
    Ok(Disks { lazy, shared })
}

/// Spawns `command` in network namespace `netns` (`/run/netns/<netns>`), from a thread that
/// enters it first: a child inherits the namespaces of the thread that forks it.
fn spawn_in_namespace(netns: &str, command: &mut Command) -> std::io::Result<Child> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let namespace = std::fs::File::open(format!("/run/netns/{netns}"))?;
                rustix::thread::move_into_link_name_space(
                    namespace.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )?;
                command.spawn()
            })
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the spawning thread panicked")))
    })
}

/// Copies the directory tree `from` to `to`.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

fn network_nodes(network: &Network) -> usize {
    (0..16)
        .take_while(|&i| Path::new(&format!("/run/netns/{}", network.namespace(i))).exists())
        .count()
}

fn signal(pid: u32, which: &str) {
    let _ = Command::new("kill")
        .args([which, &pid.to_string()])
        .status();
}

/// A short-timeout connection to `addr`.
pub fn connect(addr: &str, timeout: Duration) -> Option<redis::Connection> {
    let con = redis::Client::open(format!("redis://{addr}/"))
        .ok()?
        .get_connection_with_timeout(timeout)
        .ok()?;
    con.set_read_timeout(Some(timeout)).ok()?;
    con.set_write_timeout(Some(timeout)).ok()?;
    Some(con)
}

/// One `INFO raft` field of the node at `addr`.
pub fn info_field(addr: &str, field: &str) -> Option<String> {
    let mut con = connect(addr, Duration::from_millis(500))?;
    let info: String = redis::cmd("INFO").arg("raft").query(&mut con).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
}

/// Sends an admin command to `addr`.
pub fn admin(addr: &str, args: &[&str]) -> Result<(), String> {
    let mut con = connect(addr, Duration::from_secs(10)).ok_or("cannot connect")?;
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query::<redis::Value>(&mut con)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
