//! Command-line and environment configuration of one node.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use serde::{Deserialize, Serialize};

/// How `GET` and other reads are made linearizable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ReadMode {
    /// ReadIndex: the leader confirms leadership with a quorum, waits until its state machine
    /// has applied the commit index it saw, then reads locally. No log entry per read.
    #[default]
    Index,
    /// LeaseRead: the leader serves reads while its lease (granted by a quorum's acks within the
    /// last election timeout) holds, without a quorum round per read. Correct only while clock
    /// drift between nodes stays well below the election timeout.
    Lease,
    /// Every read is a log entry applied like a write (the plain approach, for comparison).
    Log,
}

/// redraft: a Redis-protocol compatible, strongly consistent key-value store.
#[derive(Clone, Debug, Parser)]
#[command(version, about)]
pub struct Config {
    /// Address to listen on for clients.
    #[arg(long, env = "REDRAFT_BIND", default_value = "127.0.0.1")]
    pub bind: String,

    /// Port to listen on for clients (0 picks a free port and logs it).
    #[arg(long, env = "REDRAFT_PORT", default_value_t = 6379)]
    pub port: u16,

    /// Data directory (raft log, state machine, snapshots); created if missing.
    #[arg(long, env = "REDRAFT_DIR", default_value = "./redraft-data")]
    pub dir: PathBuf,

    /// This node's raft id; fixed for the life of its data directory.
    #[arg(long, env = "REDRAFT_NODE_ID", default_value_t = 1)]
    pub node_id: u64,

    /// Password clients must send with AUTH (or HELLO … AUTH) before other commands.
    #[arg(long, env = "REDRAFT_REQUIREPASS")]
    pub requirepass: Option<String>,

    /// How reads are made linearizable: `index` (ReadIndex), `lease` (LeaseRead, assumes bounded
    /// clock drift) or `log` (every read is a log entry).
    #[arg(long, env = "REDRAFT_READ_MODE", value_enum, default_value_t = ReadMode::Index)]
    pub read_mode: ReadMode,

    /// Peer (raft) port; default: client port + 10000, as Redis Cluster's bus.
    #[arg(long, env = "REDRAFT_CLUSTER_PORT")]
    pub cluster_port: Option<u16>,

    /// Host this node tells other nodes and clients to reach it at; default: the bind address.
    #[arg(long, env = "REDRAFT_ADVERTISE_HOST")]
    pub advertise_host: Option<String>,

    /// Members of a new cluster, the same list on every member:
    /// `1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003` (client addresses; a peer port other
    /// than client port + 10000 is written `host:port@peerport`). Ignored when the data
    /// directory already holds a cluster.
    #[arg(long, env = "REDRAFT_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,

    /// Join an existing cluster through any member (`host:port[@peerport]`): this node is added
    /// as a learner, catches up, then becomes a voter.
    #[arg(long, env = "REDRAFT_JOIN", conflicts_with = "initial_cluster")]
    pub join: Option<String>,

    /// Secret every peer connection must present; required to form or join a cluster.
    #[arg(long, env = "REDRAFT_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,

    /// What a follower does with a command that needs the leader: `proxy` it, or answer
    /// `redirect` (`-MOVED <slot> <leader>`).
    #[arg(long, env = "REDRAFT_FOLLOWER_MODE", value_enum, default_value_t = FollowerMode::Proxy)]
    pub follower_mode: FollowerMode,

    /// Raft heartbeat interval in milliseconds; the election timeout is 2–4 heartbeats, after a
    /// leader lease of 4.
    #[arg(long, env = "REDRAFT_HEARTBEAT_MS", default_value_t = 100)]
    pub heartbeat_ms: u64,

    /// Build a snapshot (and purge the log below it) after this many new log entries.
    #[arg(long, env = "REDRAFT_SNAPSHOT_ENTRIES", default_value_t = 20_000)]
    pub snapshot_entries: u64,

    /// Free space kept on the data directory's filesystem, in MiB: writes that add data are
    /// refused with `-MISCONF` (reads and deletes still work) rather than filling the disk;
    /// they resume once space is freed. 0 turns the check off.
    #[arg(long, env = "REDRAFT_DISK_RESERVE_MB", default_value_t = 64)]
    pub disk_reserve_mb: u64,

    /// Most simultaneous client connections; more are refused with Redis's error.
    #[arg(long, env = "REDRAFT_MAXCLIENTS", default_value_t = 10_000)]
    pub maxclients: usize,

    /// Threads that run connections, raft and apply (Redis's option name). 1, the default,
    /// runs them all on one thread as Redis's main thread does: handing a request between
    /// tasks then costs no thread wake-up. More gives a work-stealing pool of that many, for
    /// machines with cores to spare. Log fsyncs, state machine flushes and large applies have
    /// threads of their own either way.
    #[arg(long, env = "REDRAFT_IO_THREADS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=128))]
    pub io_threads: u16,

    /// redb page cache for the state machine, in MiB.
    #[arg(long, env = "REDRAFT_CACHE_MB", default_value_t = 256)]
    pub cache_mb: usize,

    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `redraft=debug`.
    #[arg(long, env = "REDRAFT_LOG", default_value = "info")]
    pub log: String,

    /// An operator action instead of running a server.
    #[command(subcommand)]
    pub command: Option<Subcommand>,
}

/// Operator actions.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum Subcommand {
    /// Change or show a running cluster's membership and leadership.
    Cluster {
        /// What to do.
        #[command(subcommand)]
        action: crate::admin::ClusterAction,
    },
}

/// One member of `--initial-cluster`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitialMember {
    /// Raft node id.
    pub id: u64,
    /// Its addresses.
    pub member: Member,
}

/// Splits `host:port[@peerport]` into the client and peer addresses.
pub fn parse_member_addr(text: &str) -> Result<Member, String> {
    let (client, peer_port) = match text.split_once('@') {
        Some((client, peer)) => (client, Some(peer)),
        None => (text, None),
    };
    let (host, port) = client
        .rsplit_once(':')
        .ok_or_else(|| format!("'{text}' is not host:port"))?;
    let port: u16 = port.parse().map_err(|_| format!("bad port in '{text}'"))?;
    let peer_port: u16 = match peer_port {
        Some(p) => p
            .parse()
            .map_err(|_| format!("bad peer port in '{text}'"))?,
        None => port
            .checked_add(10_000)
            .ok_or_else(|| format!("port {port} + 10000 is not a port; give host:port@peerport"))?,
    };
    Ok(Member {
        client_addr: format!("{host}:{port}"),
        peer_addr: format!("{host}:{peer_port}"),
    })
}

impl Config {
    /// Parses `--initial-cluster`.
    pub fn initial_members(&self) -> Result<Vec<InitialMember>, String> {
        let Some(list) = &self.initial_cluster else {
            return Ok(Vec::new());
        };
        let mut members = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (id, addr) = item
                .split_once('=')
                .ok_or_else(|| format!("'{item}' is not id=host:port"))?;
            let id: u64 = id.parse().map_err(|_| format!("bad node id in '{item}'"))?;
            if members.iter().any(|m: &InitialMember| m.id == id) {
                return Err(format!("node id {id} appears twice"));
            }
            members.push(InitialMember {
                id,
                member: parse_member_addr(addr)?,
            });
        }
        if !members.iter().any(|m| m.id == self.node_id) {
            return Err(format!(
                "--initial-cluster does not list this node's id {}",
                self.node_id
            ));
        }
        Ok(members)
    }

    /// Whether this node is (or is to become) part of a multi-node cluster.
    pub fn clustered(&self) -> bool {
        self.initial_cluster.is_some() || self.join.is_some()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::parse_from(["redraft"])
    }
}

/// How a follower answers a command that needs the leader.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum FollowerMode {
    /// Forward the command to the leader and relay its reply unchanged.
    #[default]
    Proxy,
    /// Answer `-MOVED <slot> <leader host:port>` so cluster-aware clients go to the leader.
    Redirect,
}

/// A cluster member's addresses, as stored in the raft membership.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    /// `host:port` clients connect to.
    pub client_addr: String,
    /// `host:port` of the peer (raft) port.
    pub peer_addr: String,
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.client_addr, self.peer_addr)
    }
}
