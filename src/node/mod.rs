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

pub mod membership;
mod view;

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

/// Most requests packed into one log entry.
const BATCH_REQUESTS_MAX: usize = 1024;
/// Most payload bytes packed into one log entry (a single larger request still goes alone).
const BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Most reads answered by one ReadIndex round.
const READ_ROUND_MAX: usize = 4096;
/// Most write proposals in flight at once. While they are, new writes wait in the queue and
/// leave together as the next entry: the batch grows with the load instead of each request
/// becoming its own entry (and its own apply, fsync share and reply wake-up). Two lets the log
/// write of one batch overlap the apply of the one before.
const WRITES_IN_FLIGHT_MAX: usize = 2;
/// Most ReadIndex rounds in flight at once; reads arriving meanwhile share the next round.
const READ_ROUNDS_IN_FLIGHT_MAX: usize = 2;

/// The answer to a queued write or read.
pub type Pending = oneshot::Receiver<Result<Reply, Error>>;

struct QueuedWrite {
    request: Request,
    reply: oneshot::Sender<Result<Reply, Error>>,
}

struct QueuedRead {
    read: Read,
    reply: oneshot::Sender<Result<Reply, Error>>,
}

/// The ids this process gives the writes it proposes or forwards (see `store::sessions`): one
/// session per process, sequence numbers from 1, and which of them still await an answer.
#[derive(Debug)]
pub struct RequestIds {
    node: NodeId,
    incarnation: u64,
    next: std::sync::atomic::AtomicU64,
    awaiting: std::sync::Mutex<std::collections::BTreeSet<u64>>,
}

impl RequestIds {
    fn new(node: NodeId) -> RequestIds {
        use std::hash::{BuildHasher, Hasher};
        // A new incarnation at every start: random, mixed with the time and the process id.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_i64(wall_clock_ms());
        hasher.write_u32(std::process::id());
        RequestIds {
            node,
            incarnation: hasher.finish(),
            next: std::sync::atomic::AtomicU64::new(1),
            awaiting: Default::default(),
        }
    }

    /// A new id, awaiting its answer until the lease is dropped.
    pub fn issue(self: &Arc<Self>) -> IdLease {
        // Taken and marked awaiting under one lock: `answered_below` must never see a sequence
        // number issued but not yet awaiting (it would tell the session table that the request
        // was answered, and the request would then be refused as forgotten).
        let seq = {
            let mut awaiting = self.awaiting.lock().unwrap_or_else(|p| p.into_inner());
            let seq = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            awaiting.insert(seq);
            seq
        };
        IdLease {
            ids: self.clone(),
            id: RequestId {
                node: self.node,
                incarnation: self.incarnation,
                seq,
            },
        }
    }

    /// Every request with a lower sequence number has been answered.
    pub fn answered_below(&self) -> u64 {
        let awaiting = self.awaiting.lock().unwrap_or_else(|p| p.into_inner());
        awaiting
            .first()
            .copied()
            .unwrap_or_else(|| self.next.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// A request id whose answer is awaited; dropping it marks it answered.
#[derive(Debug)]
pub struct IdLease {
    ids: Arc<RequestIds>,
    id: RequestId,
}

impl IdLease {
    /// The id.
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// `request` carrying this id, ready to propose.
    pub fn wrap(&self, request: Request) -> Request {
        Request::Identified {
            id: self.id,
            answered_below: self.ids.answered_below(),
            request: Box::new(request),
        }
    }

    /// The `REDRAFT.REQ` header that carries this id ahead of a forwarded command.
    pub fn header(&self) -> [Bytes; 5] {
        [
            Bytes::from_static(b"REDRAFT.REQ"),
            Bytes::from(self.id.node.to_string()),
            Bytes::from(self.id.incarnation.to_string()),
            Bytes::from(self.id.seq.to_string()),
            Bytes::from(self.ids.answered_below().to_string()),
        ]
    }
}

impl Drop for IdLease {
    fn drop(&mut self) {
        self.ids
            .awaiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id.seq);
    }
}

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
    /// The leader as last seen in raft's metrics, for routing without cloning the metrics on
    /// every command.
    pub(crate) leader_hint: Arc<LeaderHint>,
    /// Keys removed by active expiry on this node while it led (INFO stats).
    pub expired_keys: Arc<std::sync::atomic::AtomicU64>,
    /// Free space of the data directory (write admission, INFO persistence).
    pub disk: DiskSpace,
    /// Ids of the writes this process proposes or forwards.
    pub request_ids: Arc<RequestIds>,
    heartbeat: Duration,
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
            if writes.send(QueuedWrite { request, reply }).is_err() {
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
        let peers = PeerNetwork::new(config.node_id, secret.clone());
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
            leader_hint.clone(),
            config.node_id,
            expired_keys.clone(),
        ));
        Ok(Arc::new(Node {
            request_ids: Arc::new(RequestIds::new(config.node_id)),
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
        }))
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
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

    /// The raft handle (metrics, shutdown).
    pub fn raft(&self) -> &Raft {
        &self.raft
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
        let (reply, pending) = oneshot::channel();
        if let Err(mpsc::error::SendError(queued)) =
            self.writes.send(QueuedWrite { request, reply })
        {
            let _ = queued
                .reply
                .send(Err(Error::Internal("node is shutting down".into())));
        }
        pending
    }

    /// Queues a linearizable read command now. With `--read-mode log` it goes through the log.
    pub fn read(&self, read: Read) -> Pending {
        if self.read_mode == ReadMode::Log {
            return self.write(read.args);
        }
        let (reply, pending) = oneshot::channel();
        if let Err(mpsc::error::SendError(queued)) = self.reads.send(QueuedRead { read, reply }) {
            let _ = queued
                .reply
                .send(Err(Error::Internal("node is shutting down".into())));
        }
        pending
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
    pub async fn raft_failure(&self) -> String {
        let mut metrics = self.raft.metrics();
        loop {
            let failure = match &metrics.borrow_watched().running_state {
                Err(openraft::error::Fatal::Stopped) | Ok(()) => None,
                Err(fatal) => Some(fatal.to_string()),
            };
            if let Some(failure) = failure {
                return failure;
            }
            if metrics.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}

/// Values below this size are copied out of the connection's read buffer before they enter
/// the log, so a cached log entry never pins a whole read buffer.
const DETACH_BYTES_MAX: usize = 16 * 1024;

/// Copies `bytes` out of the buffer it shares if it is small (under `DETACH_BYTES_MAX`).
pub fn detach_small(bytes: &mut Bytes) {
    if bytes.len() < DETACH_BYTES_MAX {
        *bytes = Bytes::copy_from_slice(bytes);
    }
}

fn detach_small_buffers(request: &mut Request) {
    let detach = detach_small;
    match request {
        Request::Command { args, .. } => args.iter_mut().for_each(detach),
        Request::Expire { keys, .. } => keys.iter_mut().for_each(detach),
        Request::Exec {
            commands, watched, ..
        } => {
            commands.iter_mut().flatten().for_each(detach);
            watched.iter_mut().for_each(|(key, _)| detach(key));
        }
        Request::Batch(requests) => requests.iter_mut().for_each(detach_small_buffers),
        Request::Identified { request, .. } => detach_small_buffers(request),
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

/// What a write that did not complete here means: the sender resends the same request id to
/// the leader (an entry that was appended may still commit through another leader; the
/// session table answers it then instead of applying it twice).
fn write_error(err: ClientWriteError<TypeConfig>) -> Error {
    match err {
        ClientWriteError::ForwardToLeader(_) => Error::Resend("this node is not the leader".into()),
        ClientWriteError::LogEntryDiscarded(_) => {
            Error::Resend("leadership changed before the write committed here".into())
        }
        other => Error::Internal(other.to_string()),
    }
}

fn read_error(err: RaftError<TypeConfig, LinearizableReadError<TypeConfig>>) -> Error {
    match err {
        RaftError::APIError(LinearizableReadError::ForwardToLeader(_)) => {
            Error::Resend("this node is not the leader".into())
        }
        RaftError::APIError(LinearizableReadError::QuorumNotEnough(_)) => {
            Error::ClusterDown("no quorum to confirm leadership".into())
        }
        RaftError::Fatal(fatal) => Error::Internal(fatal.to_string()),
    }
}

fn request_size(request: &Request) -> usize {
    match request {
        Request::Command { args, .. } => args.iter().map(|a| a.len()).sum(),
        Request::Expire { keys, .. } => keys.iter().map(|k| k.len()).sum(),
        Request::Exec { commands, .. } => commands.iter().flatten().map(|a| a.len()).sum(),
        Request::Batch(requests) => requests.iter().map(request_size).sum(),
        Request::Identified { request, .. } => request_size(request),
    }
}

/// Whether a request may add data (Redis's `denyoom` commands; unknown names count as adding),
/// so that it is refused when the disk is nearly full. Deletes and expiry never are.
fn adds_data(request: &Request) -> bool {
    let adds = |args: &[Bytes]| {
        args.first()
            .and_then(|name| crate::redis::table::lookup(name))
            .is_none_or(|spec| spec.flags.contains(&"denyoom"))
    };
    match request {
        Request::Command { args, .. } => adds(args),
        Request::Expire { .. } => false,
        Request::Exec { commands, .. } => commands.iter().any(|c| adds(c)),
        Request::Batch(requests) => requests.iter().any(adds_data),
        Request::Identified { request, .. } => adds_data(request),
    }
}

/// Packs queued writes into log entries and proposes them in queue order. Writes that would
/// add data to a nearly full disk are answered `-MISCONF` instead (see [`crate::disk`]).
async fn run_write_batcher(
    raft: Raft,
    mut queue: mpsc::UnboundedReceiver<QueuedWrite>,
    disk: DiskSpace,
) {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(WRITES_IN_FLIGHT_MAX));
    let mut next: Option<QueuedWrite> = None;
    loop {
        let first = match next.take() {
            Some(write) => write,
            None => match queue.recv().await {
                Some(write) => write,
                None => return,
            },
        };
        // Writes queued while earlier proposals are in flight join this one.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = request_size(&first.request);
        let mut batch = vec![first];
        while batch.len() < BATCH_REQUESTS_MAX && bytes < BATCH_BYTES_MAX {
            match queue.try_recv() {
                Ok(write) => {
                    bytes += request_size(&write.request);
                    batch.push(write);
                }
                Err(_) => break,
            }
        }
        if bytes > BATCH_BYTES_MAX && batch.len() > 1 {
            // The last one overflowed the entry: it starts the next one.
            next = batch.pop();
        }

        let mut admission = disk.admission();
        let mut admitted = Vec::with_capacity(batch.len());
        for write in batch {
            // The command table is consulted only for a request that does not fit.
            if let Err(refused) = admission.admit(request_size(&write.request))
                && adds_data(&write.request)
            {
                let _ = write.reply.send(Err(refused));
                continue;
            }
            admitted.push(write);
        }
        let batch = admitted;
        if batch.is_empty() {
            continue;
        }
        let (requests, replies): (Vec<Request>, Vec<_>) =
            batch.into_iter().map(|w| (w.request, w.reply)).unzip();
        let payload = if requests.len() == 1 {
            requests.into_iter().next().expect("one request")
        } else {
            Request::Batch(requests)
        };
        let (responder, outcome) = ProgressResponder::complete_only();
        if let Err(fatal) = raft.client_write_ff(payload, Some(responder)).await {
            for reply in replies {
                let _ = reply.send(Err(Error::Internal(fatal.to_string())));
            }
            continue;
        }
        tokio::spawn(async move {
            let outcome = outcome.await;
            drop(permit);
            let result = match outcome {
                Ok(Ok(written)) => Ok(written.data),
                Ok(Err(err)) => Err(write_error(err)),
                Err(_) => Err(Error::Resend(
                    "raft stopped before the write completed".into(),
                )),
            };
            deliver(replies, result);
        });
    }
}

/// Sends each queued write its own reply out of a (possibly batched) response.
fn deliver(replies: Vec<oneshot::Sender<Result<Reply, Error>>>, result: Result<Response, Error>) {
    match result {
        Ok(Response::Batch(responses)) if replies.len() > 1 => {
            for (reply, response) in replies.into_iter().zip(responses) {
                let _ = reply.send(Ok(match response {
                    Response::Reply(r) => r,
                    Response::Batch(_) => Reply::error("ERR internal error: nested batch"),
                }));
            }
        }
        Ok(Response::Reply(r)) => {
            for reply in replies {
                let _ = reply.send(Ok(r.clone()));
            }
        }
        Ok(Response::Batch(_)) => {
            for reply in replies {
                let _ = reply.send(Err(Error::Internal("unexpected batch response".into())));
            }
        }
        Err(err) => {
            for reply in replies {
                let _ = reply.send(Err(err.clone()));
            }
        }
    }
}

/// Answers queued reads in ReadIndex rounds; rounds may overlap.
async fn run_read_batcher(
    raft: Raft,
    reader: StoreReader,
    mut queue: mpsc::UnboundedReceiver<QueuedRead>,
    policy: ReadPolicy,
) {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(READ_ROUNDS_IN_FLIGHT_MAX));
    while let Some(first) = queue.recv().await {
        // Reads queued while earlier rounds are in flight join this one.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut round = vec![first];
        while round.len() < READ_ROUND_MAX {
            match queue.try_recv() {
                Ok(read) => round.push(read),
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        let reader = reader.clone();
        let policy = policy.clone();
        tokio::spawn(async move {
            let (reads, replies): (Vec<Read>, Vec<_>) =
                round.into_iter().map(|r| (r.read, r.reply)).unzip();
            let result = match raft.ensure_linearizable(policy).await {
                Ok(_) => tokio::task::spawn_blocking(move || reader.read_many(&reads))
                    .await
                    .map_err(|e| Error::Internal(e.to_string()))
                    .and_then(|r| r.map_err(|e| Error::Internal(e.to_string()))),
                Err(err) => Err(read_error(err)),
            };
            drop(permit);
            match result {
                Ok(responses) => {
                    for (reply, response) in replies.into_iter().zip(responses) {
                        let _ = reply.send(Ok(response));
                    }
                }
                Err(err) => {
                    for reply in replies {
                        let _ = reply.send(Err(err.clone()));
                    }
                }
            }
        });
    }
}
