//! The network server: the listener, connections, the client registry, and the server-level
//! commands (INFO, CONFIG) that describe this process rather than the keyspace.
//!
//! It owns sockets and nothing below them: keyspace commands go to the [`Node`], where
//! `router` says and `submit` takes them.

pub mod clients;
pub mod connection;
pub mod ops;
pub mod router;
pub mod submit;

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::cluster::proxy::Proxy;
use crate::config::Member;
use crate::config::{Config, ReadMode};
use crate::node::Node;
use crate::redis::glob::glob_match;
use crate::resp::Reply;
use clients::{ClientRegistry, Stats};

/// Pooled connections per leader (and protocol) that a proxying follower multiplexes its
/// clients over.
const PROXY_CONNECTIONS_PER_LEADER: usize = 4;

/// The Redis version redraft reports (the 7.0 it is compatible with).
pub const REDIS_VERSION: &str = "7.0.15";

/// Shared state of the running server.
pub struct Server {
    /// The configuration it was started with (some fields change with CONFIG SET).
    pub config: Config,
    /// The raft node.
    pub node: Arc<Node>,
    /// Connected clients.
    pub clients: ClientRegistry,
    /// Counters for INFO stats.
    pub stats: Stats,
    /// The port actually listened on.
    pub port: u16,
    /// Forwards commands to the leader when this node follows (proxy mode).
    pub proxy: Proxy,
    started: Instant,
    run_id: String,
}

/// Initializes logging, starts the node and serves clients until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let secret_missing = config.cluster_secret.as_deref().unwrap_or("").is_empty();
    anyhow::ensure!(
        !(config.clustered() && secret_missing),
        "forming or joining a cluster needs --cluster-secret (the same on every member)"
    );
    let listener = TcpListener::bind((config.bind.as_str(), config.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", config.bind, config.port))?;
    let local = listener.local_addr()?;
    let host = config
        .advertise_host
        .clone()
        .unwrap_or_else(|| config.bind.clone());
    let default_peer_port = local.port().checked_add(10_000).unwrap_or(0);
    let peer_port = config.cluster_port.unwrap_or(default_peer_port);
    let peer_listener = if secret_missing {
        None
    } else {
        Some(
            TcpListener::bind((config.bind.as_str(), peer_port))
                .await
                .with_context(|| {
                    format!("cannot listen for peers on {}:{}", config.bind, peer_port)
                })?,
        )
    };
    let peer_port = match &peer_listener {
        Some(l) => l.local_addr()?.port(),
        None => peer_port,
    };
    let member = Member {
        client_addr: format!("{host}:{}", local.port()),
        peer_addr: format!("{host}:{peer_port}"),
    };
    let listening_for_peers = peer_listener.is_some();
    let node = Node::start(&config, member, peer_listener).await?;
    let server = Arc::new(Server {
        node,
        proxy: Proxy::new(config.requirepass.clone(), PROXY_CONNECTIONS_PER_LEADER),
        clients: ClientRegistry::default(),
        stats: Stats::default(),
        port: local.port(),
        started: Instant::now(),
        run_id: new_run_id(),
        config,
    });
    if listening_for_peers {
        tracing::info!("Listening for peers on {}:{peer_port}", server.config.bind);
    }
    tracing::info!("Ready to accept connections tcp on {local}");

    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let raft_failure = server.node.raft_failure();
    tokio::pin!(raft_failure);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (mut stream, addr) = match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        tracing::warn!(error = %err, "accept failed");
                        continue;
                    }
                };
                server.stats.connections_received.fetch_add(1, Relaxed);
                let local_addr = stream.local_addr().unwrap_or(local);
                let Some(client) = server.clients.register(addr, local_addr, server.config.maxclients) else {
                    server.stats.rejected_connections.fetch_add(1, Relaxed);
                    tokio::spawn(async move {
                        let _ = stream.write_all(b"-ERR max number of clients reached\r\n").await;
                    });
                    continue;
                };
                let server = server.clone();
                tokio::spawn(async move {
                    let id = client.id;
                    connection::serve(server.clone(), stream, client).await;
                    server.clients.unregister(id);
                });
            }
            signal = &mut shutdown => {
                tracing::info!("received {signal}, shutting down");
                break;
            }
            failure = &mut raft_failure => {
                tracing::error!(%failure, "raft stopped; exiting");
                anyhow::bail!(
                    "raft stopped: {failure}; exiting so that a restart recovers from the data on \
                     disk (no acknowledged write is lost)"
                );
            }
        }
    }
    server.node.shutdown().await;
    tracing::info!("redraft is now ready to exit, bye bye...");
    Ok(())
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    }
}

fn new_run_id() -> String {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
        ^ (u128::from(std::process::id()) << 64);
    let mut state = seed as u64 ^ (seed >> 64) as u64;
    let mut id = String::with_capacity(40);
    for _ in 0..40 {
        // xorshift: a run id only needs to differ between runs.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let _ = write!(id, "{:x}", state & 0xf);
    }
    id
}

/// Default INFO sections, in Redis's order.
const INFO_DEFAULT: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "cluster",
    "keyspace",
    "raft",
];

/// `id=1,addr=…,role=leader,matched=42;id=2,…` for INFO raft.
fn members_summary(view: &crate::node::ClusterView) -> String {
    view.members
        .iter()
        .map(|m| {
            let role = view.role_name(m);
            format!(
                "id={},addr={},role={},matched={}",
                m.id,
                m.member.client_addr,
                role,
                m.matched_index.map_or("?".to_string(), |i| i.to_string())
            )
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// Resident set size in bytes, from /proc.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

impl Server {
    /// The INFO text for the requested sections (default ones when none).
    pub fn info(&self, sections: &[Bytes]) -> String {
        let requested: Vec<String> = sections
            .iter()
            .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
            .collect();
        let everything = requested.iter().any(|s| s == "all" || s == "everything");
        let wanted = |name: &str| {
            if requested.is_empty() || requested.iter().any(|s| s == "default") || everything {
                INFO_DEFAULT.contains(&name)
            } else {
                requested.iter().any(|s| s == name)
            }
        };
        let mut out = String::new();
        for section in INFO_DEFAULT {
            if wanted(section) {
                if !out.is_empty() {
                    out.push_str("\r\n");
                }
                self.info_section(section, &mut out);
            }
        }
        out
    }

    /// Appends one INFO section (title line, then `key:value` lines).
    fn info_section(&self, section: &str, out: &mut String) {
        let status = self.node.raft_status();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let uptime = self.started.elapsed().as_secs();
        let view = self.node.cluster_view();
        let disk = &self.node.disk;
        let (title, fields): (&str, Vec<(&str, String)>) = match section {
            "server" => (
                "Server",
                vec![
                    ("redis_version", REDIS_VERSION.into()),
                    ("redis_git_sha1", "00000000".into()),
                    ("redis_git_dirty", "0".into()),
                    ("redis_build_id", "0".into()),
                    ("redis_mode", "standalone".into()),
                    (
                        "os",
                        format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
                    ),
                    ("arch_bits", usize::BITS.to_string()),
                    ("monotonic_clock", "POSIX clock_gettime".into()),
                    ("multiplexing_api", "epoll".into()),
                    ("process_id", std::process::id().to_string()),
                    ("process_supervised", "no".into()),
                    ("run_id", self.run_id.clone()),
                    ("tcp_port", self.port.to_string()),
                    ("server_time_usec", now.as_micros().to_string()),
                    ("uptime_in_seconds", uptime.to_string()),
                    ("uptime_in_days", (uptime / 86_400).to_string()),
                    ("hz", "10".into()),
                    ("configured_hz", "10".into()),
                    (
                        "executable",
                        std::env::current_exe()
                            .map(|p| p.display().to_string())
                            .unwrap_or_default(),
                    ),
                    ("config_file", String::new()),
                    ("io_threads_active", "0".into()),
                    ("redraft_version", env!("CARGO_PKG_VERSION").into()),
                ],
            ),
            "clients" => (
                "Clients",
                vec![
                    ("connected_clients", self.clients.connected().to_string()),
                    ("cluster_connections", "0".into()),
                    ("maxclients", self.config.maxclients.to_string()),
                    ("blocked_clients", "0".into()),
                    ("tracking_clients", "0".into()),
                    ("clients_in_timeout_table", "0".into()),
                ],
            ),
            "memory" => {
                let rss = rss_bytes().to_string();
                (
                    "Memory",
                    vec![
                        ("used_memory", rss.clone()),
                        ("used_memory_rss", rss),
                        ("maxmemory", "0".into()),
                        ("maxmemory_policy", "noeviction".into()),
                    ],
                )
            }
            "persistence" => (
                "Persistence",
                vec![
                    ("loading", "0".into()),
                    ("async_loading", "0".into()),
                    ("rdb_changes_since_last_save", "0".into()),
                    ("rdb_bgsave_in_progress", "0".into()),
                    ("rdb_last_save_time", now.as_secs().to_string()),
                    ("rdb_last_bgsave_status", "ok".into()),
                    ("aof_enabled", "0".into()),
                    ("aof_rewrite_in_progress", "0".into()),
                    ("aof_last_write_status", "ok".into()),
                    (
                        "disk_free_bytes",
                        disk.available_bytes()
                            .map_or(String::new(), |b| b.to_string()),
                    ),
                    ("disk_reserve_bytes", disk.reserve_bytes().to_string()),
                    (
                        "disk_status",
                        if disk.is_full() { "full" } else { "ok" }.into(),
                    ),
                ],
            ),
            "stats" => {
                let s = &self.stats;
                (
                    "Stats",
                    vec![
                        (
                            "total_connections_received",
                            s.connections_received.load(Relaxed).to_string(),
                        ),
                        (
                            "total_commands_processed",
                            s.commands_processed.load(Relaxed).to_string(),
                        ),
                        ("instantaneous_ops_per_sec", "0".into()),
                        (
                            "total_net_input_bytes",
                            s.net_input_bytes.load(Relaxed).to_string(),
                        ),
                        (
                            "total_net_output_bytes",
                            s.net_output_bytes.load(Relaxed).to_string(),
                        ),
                        (
                            "rejected_connections",
                            s.rejected_connections.load(Relaxed).to_string(),
                        ),
                        (
                            "expired_keys",
                            self.node.expired_keys.load(Relaxed).to_string(),
                        ),
                        ("evicted_keys", "0".into()),
                        ("keyspace_hits", "0".into()),
                        ("keyspace_misses", "0".into()),
                        (
                            "total_error_replies",
                            s.error_replies.load(Relaxed).to_string(),
                        ),
                    ],
                )
            }
            "replication" => (
                "Replication",
                vec![
                    (
                        "role",
                        if self.node.is_leader() {
                            "master"
                        } else {
                            "slave"
                        }
                        .into(),
                    ),
                    (
                        "connected_slaves",
                        view.members
                            .iter()
                            .filter(|m| m.id != view.me)
                            .count()
                            .to_string(),
                    ),
                    ("master_failover_state", "no-failover".into()),
                    ("master_replid", self.run_id.clone()),
                    ("master_replid2", "0".repeat(40)),
                    ("master_repl_offset", status.applied_index.to_string()),
                    ("second_repl_offset", "-1".into()),
                    ("repl_backlog_active", "0".into()),
                ],
            ),
            "cpu" => ("CPU", vec![]),
            "cluster" => (
                "Cluster",
                vec![(
                    "cluster_enabled",
                    if self.node.clustered() { "1" } else { "0" }.into(),
                )],
            ),
            "keyspace" => (
                "Keyspace",
                match self.node.local_key_count() {
                    Some(keys) if keys > 0 => {
                        vec![("db0", format!("keys={keys},expires=0,avg_ttl=0"))]
                    }
                    _ => vec![],
                },
            ),
            _ => (
                "Raft",
                vec![
                    ("raft_node_id", status.id.to_string()),
                    ("raft_addr", self.node.member().client_addr.clone()),
                    ("raft_peer_addr", self.node.member().peer_addr.clone()),
                    ("raft_role", status.state.clone()),
                    ("raft_term", status.term.to_string()),
                    (
                        "raft_leader_id",
                        status.leader.map_or("none".to_string(), |l| l.to_string()),
                    ),
                    (
                        "raft_leader_addr",
                        self.node
                            .leader()
                            .map_or(String::new(), |(_, m)| m.client_addr),
                    ),
                    ("raft_commit_index", status.commit_index.to_string()),
                    ("raft_applied_index", status.applied_index.to_string()),
                    ("raft_last_log_index", status.last_log_index.to_string()),
                    ("raft_snapshot_index", status.snapshot_index.to_string()),
                    ("raft_purged_index", status.purged_index.to_string()),
                    ("raft_voters", status.voters.to_string()),
                    (
                        "raft_follower_mode",
                        match self.config.follower_mode {
                            crate::config::FollowerMode::Proxy => "proxy",
                            crate::config::FollowerMode::Redirect => "redirect",
                        }
                        .into(),
                    ),
                    ("raft_members", members_summary(&view)),
                    (
                        "raft_request_sessions",
                        self.node.request_table_counts().0.to_string(),
                    ),
                    (
                        "raft_request_replies",
                        self.node.request_table_counts().1.to_string(),
                    ),
                    (
                        "raft_read_mode",
                        match self.config.read_mode {
                            ReadMode::Index => "index",
                            ReadMode::Lease => "lease",
                            ReadMode::Log => "log",
                        }
                        .into(),
                    ),
                ],
            ),
        };
        let _ = write!(out, "# {title}\r\n");
        for (key, value) in fields {
            let _ = write!(out, "{key}:{value}\r\n");
        }
    }

    /// LASTSAVE: when the newest snapshot was written (or the server started).
    pub fn last_save_secs(&self) -> u64 {
        let newest = std::fs::read_dir(self.config.dir.join("snapshots"))
            .ok()
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.metadata().ok()?.modified().ok())
            .max();
        let started = SystemTime::now() - self.started.elapsed();
        newest
            .unwrap_or(started)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// The CONFIG command.
    pub fn config_command(&self, subcommand: &str, args: &[Bytes]) -> Reply {
        match subcommand {
            "get" => {
                let params = self.config_params();
                let mut pairs = Vec::new();
                for (name, value) in &params {
                    if args
                        .iter()
                        .any(|p| glob_match(&p.to_ascii_lowercase(), name.as_bytes(), false))
                    {
                        pairs.push((Reply::bulk_str(name), Reply::bulk_str(value)));
                    }
                }
                Reply::Map(pairs)
            }
            "set" => {
                if !args.len().is_multiple_of(2) {
                    return crate::redis::table::wrong_arity_error_for("config|set");
                }
                let known = self.config_params();
                for pair in args.chunks(2) {
                    let name = String::from_utf8_lossy(&pair[0]).to_ascii_lowercase();
                    if !known.iter().any(|(n, _)| *n == name) {
                        return Reply::error(format!(
                            "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
                        ));
                    }
                    let value = String::from_utf8_lossy(&pair[1]).into_owned();
                    let current = known
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, v)| v.clone());
                    if current.as_deref() != Some(value.as_str()) {
                        return Reply::error(format!(
                            "ERR CONFIG SET failed (possibly related to argument '{name}') - \
                             redraft does not support changing this parameter at run time"
                        ));
                    }
                }
                Reply::ok()
            }
            "resetstat" => {
                self.stats.reset();
                Reply::ok()
            }
            "rewrite" => Reply::error("ERR The server is running without a config file"),
            "help" => Reply::Array(
                [
                    "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                    "GET <pattern>",
                    "    Return parameters matching the glob-like <pattern> and their values.",
                    "SET <directive> <value>",
                    "    Set the configuration <directive> to <value>.",
                    "RESETSTAT",
                    "    Reset statistics reported by the INFO command.",
                    "REWRITE",
                    "    Rewrite the configuration file.",
                    "HELP",
                    "    Print this help.",
                ]
                .iter()
                .map(|l| Reply::Simple(Bytes::from_static(l.as_bytes())))
                .collect(),
            ),
            _ => crate::redis::table::unknown_subcommand_error("config", subcommand.as_bytes()),
        }
    }

    /// The parameters CONFIG GET reports, with their current values.
    fn config_params(&self) -> Vec<(&'static str, String)> {
        vec![
            ("appendonly", "no".into()),
            ("bind", self.config.bind.clone()),
            ("databases", "1".into()),
            ("dir", self.config.dir.display().to_string()),
            ("maxclients", self.config.maxclients.to_string()),
            ("maxmemory", "0".into()),
            ("maxmemory-policy", "noeviction".into()),
            ("port", self.port.to_string()),
            ("proto-max-bulk-len", (512 * 1024 * 1024).to_string()),
            (
                "requirepass",
                self.config.requirepass.clone().unwrap_or_default(),
            ),
            ("save", String::new()),
            ("timeout", "0".into()),
        ]
    }
}
