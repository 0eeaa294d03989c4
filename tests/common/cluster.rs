//! Multi-node harness: real `redraft` processes forming a cluster on 127.0.0.1.
//!
//! Client and peer ports are picked free by binding port 0 before the processes start. Every
//! wait polls with a deadline. Dropping a [`TestCluster`] kills every process it started (by
//! its own handle) and removes the data directories. Cluster tests take [`serial`] so that only
//! one cluster runs at a time on a small machine (elections time out under CPU starvation).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{binary, redis_cli, wait_for};

/// Cluster secret used by test clusters.
pub const SECRET: &str = "test-cluster-secret";

static SERIAL: Mutex<()> = Mutex::new(());

/// Runs cluster tests one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Picks `n` distinct free loopback ports.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// One node of a test cluster.
pub struct ClusterNode {
    /// Raft node id.
    pub id: u64,
    /// Client port.
    pub port: u16,
    /// Peer port.
    pub peer_port: u16,
    /// Data directory.
    pub dir: PathBuf,
    /// Arguments it was started with (besides the common ones).
    pub args: Vec<String>,
    child: Option<Child>,
    /// Everything the current process wrote to stderr.
    pub log: Arc<Mutex<String>>,
}

impl ClusterNode {
    /// `host:port@peerport`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}@{}", self.port, self.peer_port)
    }

    /// Whether the process runs.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    fn spawn(&mut self) {
        let mut child = Command::new(binary())
            .args(["--node-id", &self.id.to_string()])
            .args(["--port", &self.port.to_string()])
            .args(["--cluster-port", &self.peer_port.to_string()])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--cluster-secret", SECRET])
            .args(&self.args)
            .env("REDRAFT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start redraft");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let thread_log = log.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                thread_log.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        self.log = log;
        self.child = Some(child);
        let log = self.log.clone();
        wait_for(
            &format!("node {} to listen", self.id),
            Duration::from_secs(30),
            || {
                let text = log.lock().unwrap();
                assert!(
                    !text.contains("redraft: error"),
                    "node failed to start:\n{text}"
                );
                text.contains("Ready to accept connections").then_some(())
            },
        );
    }

    /// `kill -9` and reap.
    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Sends `signal` (`STOP`, `CONT`…) to the running process.
    pub fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            let status = std::process::Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(pid.to_string())
                .status()
                .expect("kill");
            assert!(status.success(), "kill -{signal} {pid}");
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits (bounded) for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("node {} did not exit after SIGTERM", self.id);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A `redis` crate connection.
    pub fn client(&self) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(10))
            .expect("connect")
    }

    /// One INFO raft field, if the node answers.
    pub fn info_field(&self, field: &str) -> Option<String> {
        let mut con = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .ok()?
            .get_connection_with_timeout(Duration::from_secs(2))
            .ok()?;
        let info: String = redis::cmd("INFO").arg("raft").query(&mut con).ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .map(|v| v.trim().to_string())
    }

    /// `redis-cli -p <port> args...`.
    pub fn cli(&self, args: &[&str]) -> String {
        redis_cli(self.port, args)
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A cluster of real processes.
pub struct TestCluster {
    /// The nodes, index i holds node id i + 1.
    pub nodes: Vec<ClusterNode>,
    dir: tempfile::TempDir,
}

impl TestCluster {
    /// Starts `n` nodes with the same `--initial-cluster` and waits for a leader.
    pub fn start(n: usize, extra: &[&str]) -> TestCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dirs = (0..n)
            .map(|i| dir.path().join(format!("node{}", i + 1)))
            .collect();
        TestCluster::start_with_dirs(dir, data_dirs, extra)
    }

    /// Like [`TestCluster::start`], one node per data directory in `data_dirs` (which the test
    /// owns: left in place when the cluster is dropped).
    pub fn start_in(data_dirs: Vec<PathBuf>, extra: &[&str]) -> TestCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        TestCluster::start_with_dirs(dir, data_dirs, extra)
    }

    fn start_with_dirs(
        dir: tempfile::TempDir,
        data_dirs: Vec<PathBuf>,
        extra: &[&str],
    ) -> TestCluster {
        let n = data_dirs.len();
        let ports = free_ports(2 * n);
        let mut nodes: Vec<ClusterNode> = (0..n)
            .map(|i| ClusterNode {
                id: i as u64 + 1,
                port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                dir: data_dirs[i].clone(),
                args: extra.iter().map(|s| s.to_string()).collect(),
                child: None,
                log: Arc::new(Mutex::new(String::new())),
            })
            .collect();
        let initial: Vec<String> = nodes
            .iter()
            .map(|node| format!("{}={}", node.id, node.addr()))
            .collect();
        let initial = initial.join(",");
        for node in &mut nodes {
            node.args.push("--initial-cluster".into());
            node.args.push(initial.clone());
        }
        for node in &mut nodes {
            node.spawn();
        }
        let cluster = TestCluster { nodes, dir };
        cluster.wait_for_leader(Duration::from_secs(30));
        cluster.wait_until_every_node_routes(Duration::from_secs(30));
        cluster
    }

    /// Waits until every running node routes a keyspace command (a read of a missing key) to
    /// the leader: right after an election a follower may already report the leader's id
    /// while it still answers `-CLUSTERDOWN` (no leader address yet). Other replies, `-MOVED`
    /// included, mean the node routes.
    pub fn wait_until_every_node_routes(&self, timeout: Duration) {
        for node in self.nodes.iter().filter(|n| n.running()) {
            wait_for(
                &format!("node {} to route to the leader", node.id),
                timeout,
                || {
                    let mut con = redis::Client::open(format!("redis://127.0.0.1:{}/", node.port))
                        .ok()?
                        .get_connection_with_timeout(Duration::from_secs(2))
                        .ok()?;
                    match redis::cmd("EXISTS")
                        .arg("redraft-test-ready")
                        .query::<i64>(&mut con)
                    {
                        Ok(_) => Some(()),
                        Err(err) if matches!(err.code(), Some("CLUSTERDOWN" | "TRYAGAIN")) => None,
                        Err(_) => Some(()),
                    }
                },
            );
        }
    }

    /// Index of the node every running node agrees leads, waiting up to `timeout`.
    pub fn wait_for_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        wait_for("a leader all running nodes agree on", timeout, || {
            if Instant::now() + Duration::from_millis(100) > deadline {
                for node in self.nodes.iter().filter(|n| n.running()) {
                    eprintln!(
                        "node {}: role {:?} leader {:?} members {:?}",
                        node.id,
                        node.info_field("raft_role"),
                        node.info_field("raft_leader_id"),
                        node.info_field("raft_members")
                    );
                }
            }
            let mut leader = None;
            for node in self.nodes.iter().filter(|n| n.running()) {
                let id: u64 = node.info_field("raft_leader_id")?.parse().ok()?;
                match leader {
                    None => leader = Some(id),
                    Some(l) if l == id => {}
                    Some(_) => return None,
                }
            }
            let index = self.nodes.iter().position(|n| Some(n.id) == leader)?;
            (self.nodes[index].running()
                && self.nodes[index].info_field("raft_role").as_deref() == Some("leader"))
            .then_some(index)
        })
    }

    /// Index of some running follower.
    pub fn a_follower(&self) -> usize {
        let leader = self.wait_for_leader(Duration::from_secs(30));
        (0..self.nodes.len())
            .find(|&i| i != leader && self.nodes[i].running())
            .expect("a running follower")
    }

    /// Restarts node `i` on its data directory.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].kill9();
        self.nodes[i].spawn();
    }

    /// Starts a new node that joins through node `via` and waits until it is a voter.
    pub fn join_new_node(&mut self, via: usize, extra: &[&str]) -> usize {
        let ports = free_ports(2);
        let id = self.nodes.iter().map(|n| n.id).max().unwrap_or(0) + 1;
        let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        args.push("--join".into());
        args.push(self.nodes[via].addr());
        let mut node = ClusterNode {
            id,
            port: ports[0],
            peer_port: ports[1],
            dir: self.dir.path().join(format!("node{id}")),
            args,
            child: None,
            log: Arc::new(Mutex::new(String::new())),
        };
        node.spawn();
        self.nodes.push(node);
        let index = self.nodes.len() - 1;
        self.wait_for_voter(index, Duration::from_secs(60));
        index
    }

    /// Waits until the leader lists node `i` as a voter.
    pub fn wait_for_voter(&self, i: usize, timeout: Duration) {
        let id = self.nodes[i].id;
        wait_for(&format!("node {id} to become a voter"), timeout, || {
            let leader = self.wait_for_leader(Duration::from_secs(30));
            let members = self.nodes[leader].info_field("raft_members")?;
            members
                .split(';')
                .any(|m| {
                    m.starts_with(&format!("id={id},"))
                        && (m.contains("role=follower") || m.contains("role=leader"))
                })
                .then_some(())
        });
    }

    /// Waits until node `i` applied at least everything the leader has committed now.
    pub fn wait_caught_up(&self, i: usize, timeout: Duration) {
        let leader = self.wait_for_leader(Duration::from_secs(30));
        let target: u64 = self.nodes[leader]
            .info_field("raft_commit_index")
            .and_then(|v| v.parse().ok())
            .expect("leader commit index");
        wait_for(
            &format!("node {} to apply index {target}", self.nodes[i].id),
            timeout,
            || {
                let applied: u64 = self.nodes[i]
                    .info_field("raft_applied_index")?
                    .parse()
                    .ok()?;
                (applied >= target).then_some(())
            },
        );
    }
}
