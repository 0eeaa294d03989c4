//! The redraft processes under test: one per network namespace, started with
//! `ip netns exec` (which execs, so the child's pid is redraft's own), each logging to a file
//! in the run directory. Kill, pause, restart, and replacement by a fresh node under a new id.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
}

/// The cluster under test.
pub struct Nodes {
    /// The nodes, by namespace index.
    pub nodes: Vec<Node>,
    binary: String,
    next_id: u64,
}

impl Nodes {
    /// Starts `n` nodes forming a new cluster.
    pub fn start(network: &Network, run_dir: &Path, binary: &str) -> Nodes {
        let n = network_nodes(network);
        let nodes = (0..n)
            .map(|i| Node {
                id: i as u64 + 1,
                addr: format!("{}:{CLIENT_PORT}", network.node_ip(i)),
                dir: run_dir.join(format!("node{i}")),
                log: run_dir.join(format!("node{i}.log")),
                child: None,
                paused: false,
            })
            .collect();
        let mut cluster = Nodes {
            nodes,
            binary: binary.to_string(),
            next_id: n as u64 + 1,
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
        let child = Command::new("ip")
            .args(["netns", "exec", &network.namespace(i), &self.binary])
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
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start redraft");
        node.child = Some(child);
        node.paused = false;
    }

    /// `kill -9` node `i` (resumed first if paused, so it dies now).
    pub fn kill(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        node.paused = false;
    }

    /// Restarts node `i` on its data directory.
    pub fn restart(&mut self, network: &Network, i: usize) {
        if self.nodes[i].child.is_none() {
            self.spawn(network, i, &[]);
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
