//! Command-line and environment configuration of one node.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// How `GET` and other reads are made linearizable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ReadMode {
    /// ReadIndex: the leader confirms leadership with a quorum, waits until its state machine
    /// has applied the commit index it saw, then reads locally. No log entry per read.
    #[default]
    Index,
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

    /// How reads are made linearizable: `index` (ReadIndex, no log entry) or `log`.
    #[arg(long, env = "REDRAFT_READ_MODE", value_enum, default_value_t = ReadMode::Index)]
    pub read_mode: ReadMode,

    /// Build a snapshot (and purge the log below it) after this many new log entries.
    #[arg(long, env = "REDRAFT_SNAPSHOT_ENTRIES", default_value_t = 20_000)]
    pub snapshot_entries: u64,

    /// Most simultaneous client connections; more are refused with Redis's error.
    #[arg(long, env = "REDRAFT_MAXCLIENTS", default_value_t = 10_000)]
    pub maxclients: usize,

    /// redb page cache for the state machine, in MiB.
    #[arg(long, env = "REDRAFT_CACHE_MB", default_value_t = 256)]
    pub cache_mb: usize,

    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `redraft=debug`.
    #[arg(long, env = "REDRAFT_LOG", default_value = "info")]
    pub log: String,
}

impl Default for Config {
    fn default() -> Self {
        Config::parse_from(["redraft"])
    }
}
