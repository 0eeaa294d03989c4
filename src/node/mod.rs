//! The raft node as the request path sees it: start-up, batched writes, batched linearizable
//! reads.
//!
//! # Batching
//! Writes from every connection go into one queue. A single task takes everything queued at that
//! moment, packs it into one log entry ([`Request::Batch`]) and proposes it without waiting for
//! the previous proposal to commit, so concurrent and pipelined clients share log entries, redb
//! transactions and fsyncs. Proposals leave in queue order, and raft applies them in log order,
//! so two writes queued in one order are applied in that order.
//!
//! Reads likewise share ReadIndex rounds: every read queued when a round starts is answered by
//! that round's one leadership confirmation and one redb read transaction.
//!
//! # Request ids
//! Every write a client sends through this process gets a [`RequestId`] from [`RequestIds`]
//! (this node, a random incarnation per start, a sequence number) and travels as
//! [`Request::Identified`]; `store::sessions` answers an id applied before from its replicated
//! table. A write that does not complete here ends in [`Error::Resend`]: not proposed because
//! this node does not lead, or its entry was discarded (openraft keeps a stepped-down leader's
//! responders until its entries are either committed through the new leader, answering with
//! the reply every node computed, or truncated away) — the caller then sends the same id to
//! whichever node leads (see `server::submit`).
//!
//! # Must not
//! Interpret commands (that is the command layer's job) or touch sockets.

mod batch;
mod maintenance;
pub mod membership;
pub mod pubsub;
mod request_ids;
mod view;

pub use batch::{QUEUED_MAX, QueueDepth, QueueSlot, detach_small};
use batch::{QueuedRead, QueuedWrite, detach_small_buffers, run_read_batcher, run_write_batcher};
pub use request_ids::{IdLease, Outstanding, RequestIds};

pub use maintenance::RaftStatus;
pub use view::{ClusterView, MemberView, Role};

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use openraft::async_runtime::watch::WatchReceiver as _;
use openraft::error::{ClientWriteError, LinearizableReadError, RaftError};
use openraft::impls::ProgressResponder;
use openraft::{ReadPolicy, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::clock::wall_clock_ms;
use crate::config::Member;
use crate::config::{Config, ReadMode};
use crate::disk::DiskSpace;
use crate::error::Error;
use crate::node::membership::{MembershipService, join_cluster};
use crate::raft::log_store::LogStore;
use crate::raft::transport::{PeerNetwork, PeerServer};
use crate::raft::{NodeId, TypeConfig};
use crate::raft::{Request, RequestId, Response};
use crate::resp::Reply;
use crate::store::{Read, StateMachine, StoreReader};

/// The raft handle: openraft driving this crate's state machine.
pub type Raft = openraft::Raft<TypeConfig, StateMachine>;

/// The answer to a queued write or read.
pub type Pending = oneshot::Receiver<Result<Reply, Error>>;

/// A running raft node with its request queues.
pub struct Node {
    pub(crate) id: NodeId,
    pub(crate) member: Member,
    pub(crate) raft: Raft,
    read_mode: ReadMode,
    pub(crate) clustered: bool,
    pub(crate) reader: StoreReader,
    pub(crate) peers: PeerNetwork,
    writes: mpsc::UnboundedSender<QueuedWrite>,
    reads: mpsc::UnboundedSender<QueuedRead>,
    /// Requests waiting in `writes` and `reads`: connections keep them under [`QUEUED_MAX`].
    pub queue_depth: Arc<QueueDepth>,
    /// The leader as last seen in raft's metrics, for routing without cloning the metrics on
    /// every command.
    pub(crate) leader_hint: Arc<LeaderHint>,
    /// Keys removed by active expiry on this node while it led (INFO stats).
    pub expired_keys: Arc<std::sync::atomic::AtomicU64>,
    /// Free space of the data directory (write admission, INFO persistence).
    pub disk: DiskSpace,
    /// Ids of the writes this process proposes or forwards.
    pub request_ids: Arc<RequestIds>,
    /// This node's Pub/Sub subscribers and its forwarders to the other members.
    pub pubsub: Arc<pubsub::Hub>,
    heartbeat: Duration,
}

/// Hands `item` to a batcher; when the batcher is gone (the node is shutting down) its reply
/// says so at once.
fn queue_or_refuse<T>(
    queue: &mpsc::UnboundedSender<T>,
    item: T,
    reply_of: impl FnOnce(T) -> oneshot::Sender<Result<Reply, Error>>,
) {
    if let Err(mpsc::error::SendError(item)) = queue.send(item) {
        let _ = reply_of(item).send(Err(Error::Internal("node is shutting down".into())));
    }
}

/// How often the leader looks for keys past their deadline.
const ACTIVE_EXPIRY_INTERVAL: Duration = Duration::from_millis(100);
/// Most keys one expiry entry removes; a full batch is followed by another at once.
const ACTIVE_EXPIRY_BATCH: usize = 512;

/// The leader's active expiry: finds keys past their deadline and proposes their removal
/// through the log, stamped with its clock, so every replica removes the same keys. Reads hide
/// expired keys meanwhile; this only reclaims them.
async fn run_active_expiry(
    raft: Raft,
    reader: StoreReader,
    writes: mpsc::UnboundedSender<QueuedWrite>,
    depth: Arc<QueueDepth>,
    hint: Arc<LeaderHint>,
    me: NodeId,
    expired: Arc<std::sync::atomic::AtomicU64>,
) {
    let mut ticker = tokio::time::interval(ACTIVE_EXPIRY_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if hint.leader_id() != me {
            continue;
        }
        loop {
            let now_ms = wall_clock_ms();
            let scan = reader.clone();
            let due = match tokio::task::spawn_blocking(move || {
                scan.due_keys(now_ms, ACTIVE_EXPIRY_BATCH)
            })
            .await
            {
                Ok(Ok(keys)) => keys,
                _ => break,
            };
            if due.is_empty() {
                break;
            }
            let full = due.len() == ACTIVE_EXPIRY_BATCH;
            let (reply, pending) = oneshot::channel();
            let request = Request::Expire { keys: due, now_ms };
            let slot = depth.slot();
            if writes
                .send(QueuedWrite {
                    request,
                    reply,
                    _slot: slot,
                })
                .is_err()
            {
                return;
            }
            match pending.await {
                Ok(Ok(Reply::Integer(n))) => {
                    expired.fetch_add(n.max(0) as u64, std::sync::atomic::Ordering::Relaxed);
                }
                _ => break,
            }
            if !full {
                break;
            }
        }
        if raft.metrics().borrow_watched().running_state.is_err() {
            return;
        }
    }
}

/// The leader and this node's standing, refreshed by a task that watches raft's metrics.
#[derive(Debug, Default)]
pub struct LeaderHint {
    leader: std::sync::RwLock<Option<(NodeId, Member)>>,
    leader_id: std::sync::atomic::AtomicU64,
    removed: std::sync::atomic::AtomicBool,
    told_removed: std::sync::atomic::AtomicBool,
    /// Notified after every refresh.
    refreshed: tokio::sync::Notify,
}

impl LeaderHint {
    /// The current leader's id, 0 when none is known (node ids start at 1).
    pub fn leader_id(&self) -> NodeId {
        self.leader_id.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The current leader with its addresses.
    pub fn leader(&self) -> Option<(NodeId, Member)> {
        self.leader
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Whether this node has been removed from the cluster.
    pub fn removed(&self) -> bool {
        self.removed.load(std::sync::atomic::Ordering::Acquire)
            || self.told_removed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Records that the leader said this node was removed.
    pub fn mark_removed(&self) {
        if !self
            .told_removed
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            tracing::warn!(
                "the leader removed this node from the cluster; it no longer serves requests"
            );
        }
    }
}

/// Updates `hint` from the current metrics.
fn refresh_leader_hint(raft: &Raft, me: NodeId, hint: &LeaderHint) {
    let (leader, removed) = {
        let metrics = raft.server_metrics();
        let m = metrics.borrow_watched();
        let membership = m.membership_config.membership();
        let leader = m.current_leader.and_then(|id| {
            if id == me && m.state != openraft::ServerState::Leader {
                return None;
            }
            membership.get_node(&id).cloned().map(|member| (id, member))
        });
        let removed = membership.nodes().next().is_some() && membership.get_node(&me).is_none();
        (leader, removed)
    };
    if removed && !hint.removed() {
        tracing::warn!("this node was removed from the cluster; it no longer serves requests");
    }
    hint.leader_id.store(
        leader.as_ref().map_or(0, |(id, _)| *id),
        std::sync::atomic::Ordering::Release,
    );
    *hint
        .leader
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = leader;
    hint.removed
        .store(removed, std::sync::atomic::Ordering::Release);
    hint.refreshed.notify_waiters();
}

/// Keeps a [`LeaderHint`] up to date until raft stops. It watches only the server metrics
/// (state, leader, membership), which change on elections and membership changes, not on every
/// write as the full metrics do.
async fn watch_leader(raft: Raft, me: NodeId, hint: Arc<LeaderHint>) {
    let mut metrics = raft.server_metrics();
    loop {
        refresh_leader_hint(&raft, me, &hint);
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

impl Node {
    /// Opens the data directory, starts raft and the peer server, and forms, joins or resumes
    /// the cluster. A new single node initializes a one-member cluster and waits (bounded)
    /// until it leads.
    pub async fn start(
        config: &Config,
        member: Member,
        peer_listener: Option<TcpListener>,
    ) -> anyhow::Result<Arc<Node>> {
        let dir = config.dir.as_path();
        anyhow::ensure!(config.node_id >= 1, "--node-id must be 1 or more");
        prepare_data_dir(dir)?;
        let initial_members = config.initial_members().map_err(anyhow::Error::msg)?;
        let secret: Arc<str> = Arc::from(config.cluster_secret.clone().unwrap_or_default());
        let log_store = LogStore::open(dir)
            .with_context(|| format!("cannot open the raft log in {}", dir.display()))?;
        let disk = DiskSpace::new(dir, config.disk_reserve_mb.saturating_mul(1024 * 1024));
        let state_machine = StateMachine::open(dir, config.cache_mb * 1024 * 1024, disk.clone())
            .with_context(|| format!("cannot open the state machine in {}", dir.display()))?;
        let reader = state_machine.reader();
        let peers = PeerNetwork::new(config.node_id, secret.clone());
        let hub = pubsub::Hub::new(peers.clone());
        // Keyspace notifications: every node publishes what it applies to its own subscribers.
        let (events, mut applied_events) = mpsc::unbounded_channel::<crate::store::Events>();
        state_machine.publish_events_to(events);
        let notifications = hub.clone();
        tokio::spawn(async move {
            while let Some(batch) = applied_events.recv().await {
                for (channel, message) in batch {
                    notifications.deliver_here(&crate::raft::transport::Published {
                        shard: false,
                        channel,
                        message,
                    });
                }
            }
        });

        let heartbeat = config.heartbeat_ms.max(10);
        let raft_config = openraft::Config {
            cluster_name: "redraft".into(),
            heartbeat_interval: heartbeat,
            // A follower also waits out the leader lease (openraft: election_timeout_max) before
            // it campaigns, so a dead leader is replaced 6–8 heartbeats after its last one
            // (3–6 gave 9–12: a median failover of 1.05 s at the 100 ms default).
            election_timeout_min: heartbeat * 2,
            election_timeout_max: heartbeat * 4,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_entries),
            // Entries kept below a snapshot so a slightly lagging follower needs no snapshot.
            max_in_snapshot_log_to_keep: config.snapshot_entries.min(1000),
            install_snapshot_timeout: 60_000,
            // A restarted leader must win a new election. Restoring leadership in the old term
            // is unsafe here: the leader replicates entries before its own fsync, so after
            // kill -9 it can come back without entries its followers hold and reuse their log
            // ids for different commands (found by the chaos harness: acknowledged increments
            // lost; regression test `regression_restarted_leader_never_resumes_its_old_term`).
            enable_leader_restore: Some(false),
            ..Default::default()
        }
        .validate()
        .context("invalid raft configuration")?;
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            peers.clone(),
            log_store,
            state_machine,
        )
        .await
        .context("cannot start raft")?;

        let leader_hint = Arc::new(LeaderHint::default());
        if let Some(listener) = peer_listener {
            let server = Arc::new(PeerServer {
                raft: raft.clone(),
                verify_snapshot: crate::store::verify_snapshot_file,
                secret,
                snapshot_dir: dir.join("snapshots"),
                app: Arc::new(MembershipService::new(
                    raft.clone(),
                    peers.clone(),
                    leader_hint.clone(),
                    hub.clone(),
                )),
            });
            tokio::spawn(crate::raft::transport::serve_peers(listener, server));
        }

        if raft.is_initialized().await? {
            tracing::info!(node_id = config.node_id, "resuming from existing data");
        } else if !initial_members.is_empty() {
            let members: BTreeMap<NodeId, Member> = initial_members
                .iter()
                .map(|m| (m.id, m.member.clone()))
                .collect();
            match raft.initialize(members).await {
                Ok(()) => tracing::info!(
                    node_id = config.node_id,
                    members = initial_members.len(),
                    "initialized a new cluster; it forms once a quorum is up"
                ),
                // A peer already started the election: the membership arrives by replication.
                Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => {
                    tracing::info!(
                        node_id = config.node_id,
                        "the cluster is already forming; joining it"
                    )
                }
                Err(err) => return Err(err).context("cannot initialize the cluster"),
            }
        } else if let Some(join) = &config.join {
            let via = crate::config::parse_member_addr(join).map_err(anyhow::Error::msg)?;
            tokio::spawn(join_cluster(
                peers.clone(),
                config.node_id,
                member.clone(),
                via.peer_addr,
            ));
        } else {
            let members = BTreeMap::from([(config.node_id, member.clone())]);
            raft.initialize(members)
                .await
                .context("cannot initialize the one-member cluster")?;
            tracing::info!(
                node_id = config.node_id,
                "initialized a new single-node cluster"
            );
        }
        if !config.clustered()
            && let Err(err) = raft
                .wait(Some(Duration::from_secs(10)))
                .current_leader(config.node_id, "waiting to become leader")
                .await
        {
            tracing::warn!(error = %err, "no leadership yet; requests will wait for it");
        }

        let (writes, write_queue) = mpsc::unbounded_channel();
        let (reads, read_queue) = mpsc::unbounded_channel();
        let read_policy = match config.read_mode {
            ReadMode::Lease => ReadPolicy::LeaseRead,
            ReadMode::Index | ReadMode::Log => ReadPolicy::ReadIndex,
        };
        let queue_depth = Arc::new(QueueDepth::default());
        tokio::spawn(run_write_batcher(raft.clone(), write_queue, disk.clone()));
        tokio::spawn(run_read_batcher(
            raft.clone(),
            reader.clone(),
            read_queue,
            read_policy,
        ));
        refresh_leader_hint(&raft, config.node_id, &leader_hint);
        tokio::spawn(watch_leader(
            raft.clone(),
            config.node_id,
            leader_hint.clone(),
        ));
        let expired_keys = Arc::new(std::sync::atomic::AtomicU64::new(0));
        tokio::spawn(run_active_expiry(
            raft.clone(),
            reader.clone(),
            writes.clone(),
            queue_depth.clone(),
            leader_hint.clone(),
            config.node_id,
            expired_keys.clone(),
        ));
        Ok(Arc::new(Node {
            request_ids: Arc::new(RequestIds::new(config.node_id)),
            pubsub: hub,
            heartbeat: Duration::from_millis(heartbeat),
            disk,
            expired_keys,
            leader_hint,
            id: config.node_id,
            member,
            raft,
            read_mode: config.read_mode,
            clustered: config.clustered(),
            reader,
            peers,
            writes,
            reads,
            queue_depth,
        }))
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Publishes a message to the subscribers of every member (see [`pubsub`]); the future
    /// answers how many it reached.
    pub fn publish(
        &self,
        published: crate::raft::transport::Published,
    ) -> futures::future::BoxFuture<'static, u64> {
        // The members' addresses straight from the metrics: no copy of the whole cluster view
        // for every message.
        let peers: Vec<String> = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow_watched();
            metrics
                .membership_config
                .membership()
                .nodes()
                .filter(|(id, _)| **id != self.id)
                .map(|(_, member)| member.peer_addr.clone())
                .collect()
        };
        self.pubsub.publish(published, &peers)
    }

    /// The index this node's state machine has applied.
    pub fn applied_index(&self) -> u64 {
        self.raft
            .metrics()
            .borrow_watched()
            .last_applied
            .map_or(0, |l| l.index)
    }

    /// How long a node without a leader waits for one before refusing: a whole failover (the
    /// leader lease, then the longest election timeout, and a heartbeat to hear of it).
    pub fn election_wait(&self) -> Duration {
        self.heartbeat * 9
    }

    /// Waits until the leader this node knows is not `seen` (0: none), at most `timeout`;
    /// returns the leader known then (0: none).
    pub async fn leader_change(&self, seen: NodeId, timeout: Duration) -> NodeId {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let refreshed = self.leader_hint.refreshed.notified();
            tokio::pin!(refreshed);
            refreshed.as_mut().enable();
            let now = self.leader_hint.leader_id();
            if now != seen {
                return now;
            }
            if tokio::time::timeout_at(deadline, refreshed).await.is_err() {
                return self.leader_hint.leader_id();
            }
        }
    }

    /// Client sessions and the replies they keep in this node's applied state (INFO).
    pub fn request_table_counts(&self) -> (usize, usize) {
        self.reader.session_counts()
    }

    /// Queues a write command (name first) now, stamped with this node's clock; the receiver
    /// resolves once it is applied. Queue order is apply order.
    pub fn write(&self, args: Vec<Bytes>) -> Pending {
        self.propose(Request::Command {
            args,
            now_ms: wall_clock_ms(),
        })
    }

    /// Queues any request now.
    pub fn propose(&self, mut request: Request) -> Pending {
        detach_small_buffers(&mut request);
        self.propose_detached(request)
    }

    /// [`Self::propose`] for a request whose small arguments are already copied out of the
    /// connection's read buffer (see [`detach_small`]): copying them again would cost an
    /// allocation per argument.
    pub fn propose_detached(&self, request: Request) -> Pending {
        let (reply, pending) = oneshot::channel();
        let write = QueuedWrite {
            request,
            reply,
            _slot: self.queue_depth.slot(),
        };
        queue_or_refuse(&self.writes, write, |write| write.reply);
        pending
    }

    /// Queues a linearizable read command now. With `--read-mode log` it goes through the log.
    pub fn read(&self, read: Read) -> Pending {
        if self.read_mode == ReadMode::Log {
            return self.write(read.args);
        }
        let (reply, pending) = oneshot::channel();
        let read = QueuedRead {
            read,
            reply,
            _slot: self.queue_depth.slot(),
        };
        queue_or_refuse(&self.reads, read, |read| read.reply);
        pending
    }

    /// A receiver that sees a change whenever this node has applied more of the log (or
    /// installed a snapshot).
    pub fn applied_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.reader.changes()
    }

    /// Number of keys in this node's applied state, without linearizing (INFO keyspace).
    pub fn local_key_count(&self) -> Option<u64> {
        self.reader.key_count().ok()
    }

    /// Stops raft (its log writer drains what was queued). A leader of a multi-voter cluster
    /// first hands leadership to a follower, so clients wait for no election timeout.
    pub async fn shutdown(&self) {
        if self.is_leader()
            && self
                .cluster_view()
                .members
                .iter()
                .filter(|m| m.voter)
                .count()
                > 1
        {
            match self.transfer_leadership(None).await {
                Ok(to) => tracing::info!(to, "handed leadership over before shutting down"),
                Err(err) => tracing::warn!(error = %err, "could not hand leadership over"),
            }
        }
        if let Err(err) = self.raft.shutdown().await {
            tracing::warn!(error = %err, "raft shutdown");
        }
    }
}

impl Node {
    /// Resolves when raft has stopped on its own (a storage failure such as a full disk, or an
    /// internal error), with the reason; never while it runs or after an asked-for shutdown.
    /// The server then exits: a node whose raft stopped can serve nothing, and a restart
    /// recovers from what is durable on disk.
    ///
    /// It waits on the server metrics, which end when raft's core does (the full metrics
    /// change on every write and would wake this task for each).
    pub async fn raft_failure(&self) -> String {
        let mut server = self.raft.server_metrics();
        // The sender goes when the core stops (at once if it already has).
        while server.changed().await.is_ok() {}
        match &self.raft.metrics().borrow_watched().running_state {
            Err(openraft::error::Fatal::Stopped) | Ok(()) => std::future::pending().await,
            Err(fatal) => fatal.to_string(),
        }
    }
}

/// Creates the data directory and checks that it is usable, with a one-line error if not (a
/// full filesystem is only a warning).
fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    // Durable in its parent: a power loss must not take the whole data directory away.
    crate::durable::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let probe = dir.join(".write-test");
    let written = std::fs::write(&probe, b"ok");
    std::fs::remove_file(&probe).ok();
    match written {
        // A full disk still serves reads; writes are refused until space is freed.
        Err(err) if err.kind() == std::io::ErrorKind::StorageFull => {
            tracing::warn!(dir = %dir.display(), "the data directory's filesystem is full");
            Ok(())
        }
        other => other.with_context(|| format!("data directory {} is not writable", dir.display())),
    }
}
