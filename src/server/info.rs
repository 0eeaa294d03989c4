//! INFO: the sections Redis clients and tools read, with redraft's own `raft` section.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::config::ReadMode;
use crate::server::{INFO_DEFAULT, REDIS_VERSION, Server};

/// A section's `key:value` lines.
type Fields = Vec<(&'static str, String)>;

/// `id=1,addr=…,role=leader,matched=42;id=2,…` for INFO raft.
fn members_summary(view: &crate::node::ClusterView) -> String {
    view.members
        .iter()
        .map(|m| {
            let role = view.role_name(m);
            format!(
                "id={},addr={},role={},matched={},ack_ms={}",
                m.id,
                m.member.client_addr,
                role,
                m.matched_index.map_or("?".to_string(), |i| i.to_string()),
                m.last_ack
                    .map_or("?".to_string(), |ago| ago.as_millis().to_string())
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
        let (title, fields) = match section {
            "server" => self.info_server(),
            "clients" => self.info_clients(),
            "memory" => self.info_memory(),
            "persistence" => self.info_persistence(),
            "stats" => self.info_stats(),
            "replication" => self.info_replication(),
            "cpu" => self.info_cpu(),
            "cluster" => self.info_cluster(),
            "keyspace" => self.info_keyspace(),
            _ => self.info_raft(),
        };
        let _ = write!(out, "# {title}\r\n");
        for (key, value) in fields {
            let _ = write!(out, "{key}:{value}\r\n");
        }
    }

    /// INFO's Server section.
    fn info_server(&self) -> (&'static str, Fields) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let uptime = self.started.elapsed().as_secs();
        (
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
                (
                    "io_threads_active",
                    u8::from(self.config.io_threads > 1).to_string(),
                ),
                ("redraft_version", env!("CARGO_PKG_VERSION").into()),
            ],
        )
    }

    /// INFO's Clients section.
    fn info_clients(&self) -> (&'static str, Fields) {
        (
            "Clients",
            vec![
                ("connected_clients", self.clients.connected().to_string()),
                ("cluster_connections", "0".into()),
                ("maxclients", self.config.maxclients.to_string()),
                ("blocked_clients", self.blocked.count().to_string()),
                ("tracking_clients", "0".into()),
                ("clients_in_timeout_table", "0".into()),
            ],
        )
    }

    /// INFO's Memory section.
    fn info_memory(&self) -> (&'static str, Fields) {
        {
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
    }

    /// INFO's Persistence section.
    fn info_persistence(&self) -> (&'static str, Fields) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let disk = &self.node.disk;
        (
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
        )
    }

    /// INFO's Stats section.
    fn info_stats(&self) -> (&'static str, Fields) {
        {
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
    }

    /// INFO's Replication section.
    fn info_replication(&self) -> (&'static str, Fields) {
        let status = self.node.raft_status();
        let view = self.node.cluster_view();
        (
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
        )
    }

    /// INFO's CPU section.
    fn info_cpu(&self) -> (&'static str, Fields) {
        ("CPU", vec![])
    }

    /// INFO's Cluster section.
    fn info_cluster(&self) -> (&'static str, Fields) {
        (
            "Cluster",
            vec![(
                "cluster_enabled",
                if self.node.clustered() { "1" } else { "0" }.into(),
            )],
        )
    }

    /// INFO's Keyspace section.
    fn info_keyspace(&self) -> (&'static str, Fields) {
        (
            "Keyspace",
            match self.node.local_key_count() {
                Some(keys) if keys > 0 => {
                    vec![("db0", format!("keys={keys},expires=0,avg_ttl=0"))]
                }
                _ => vec![],
            },
        )
    }

    /// INFO's Raft section.
    fn info_raft(&self) -> (&'static str, Fields) {
        let status = self.node.raft_status();
        let view = self.node.cluster_view();
        (
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
        )
    }
}
