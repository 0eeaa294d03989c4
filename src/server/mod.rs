//! The network server: the listener, connections, the client registry, and the server-level
//! commands (INFO, CONFIG) that describe this process rather than the keyspace.
//!
//! It owns sockets and nothing below them: keyspace commands go to the [`Node`], where
//! `router` says and `submit` takes them.

pub mod blocking;
pub mod clients;
pub mod connection;
mod info;
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
use crate::config::Config;
use crate::config::Member;
use crate::node::Node;
use crate::redis::glob::glob_match;
use crate::resp::Reply;
use clients::{ClientRegistry, Stats};

/// Pooled connections per leader (and protocol) that a proxying follower multiplexes its
/// clients over.
const PROXY_CONNECTIONS_PER_LEADER: usize = 4;

pub use crate::redis::REDIS_VERSION;

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
    /// The blocking pops waiting at this node, in the order they blocked.
    pub blocked: blocking::Waiters,
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
    let proxy = Proxy::new(config.requirepass.clone(), PROXY_CONNECTIONS_PER_LEADER)
        .with_queue_depth(node.queue_depth.clone());
    let server = Arc::new(Server {
        node,
        proxy,
        clients: ClientRegistry::default(),
        stats: Stats::default(),
        blocked: blocking::Waiters::default(),
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
pub(crate) const INFO_DEFAULT: &[&str] = &[
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

impl Server {
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
                // The replicated data-type parameters, as this node has applied them.
                let mut read = vec![Bytes::from_static(b"config"), Bytes::from_static(b"get")];
                read.extend(args.iter().cloned());
                match self
                    .node
                    .reader
                    .read_many(&[crate::store::Read { args: read }])
                {
                    Ok(mut replies) => {
                        if let Some(Reply::Map(replicated)) = replies.pop() {
                            pairs.extend(replicated);
                        }
                    }
                    Err(err) => return Reply::error(format!("ERR {err}")),
                }
                Reply::Map(pairs)
            }
            "set" => {
                if !args.len().is_multiple_of(2) {
                    return crate::redis::table::wrong_arity_error_for("config|set");
                }
                let known = self.config_params();
                let mut replicated = None;
                for pair in args.chunks(2) {
                    let name = String::from_utf8_lossy(&pair[0]).to_ascii_lowercase();
                    if crate::store::commands::config::parameter(&pair[0]).is_some() {
                        replicated.get_or_insert(name);
                        continue;
                    }
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
                if let Some(name) = replicated {
                    // Those go through the log (`store::commands::config`), these do not.
                    return Reply::error(format!(
                        "ERR CONFIG SET failed (possibly related to argument '{name}') - set \
                         the data-type parameters in a CONFIG SET of their own: they are \
                         replicated, the others are this node's"
                    ));
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
            ("io-threads", self.config.io_threads.to_string()),
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
