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
//! # Must not
//! Interpret commands (that is the command layer's job) or touch sockets.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use openraft::error::{ClientWriteError, LinearizableReadError, RaftError};
use openraft::impls::ProgressResponder;
use openraft::{BasicNode, ReadPolicy, SnapshotPolicy};
use tokio::sync::{mpsc, oneshot};

use crate::config::{Config, ReadMode};
use crate::error::Error;
use crate::raft::log_store::LogStore;
use crate::raft::network::Network;
use crate::raft::{NodeId, Raft, TypeConfig};
use crate::store::{Read, Request, Response, StateMachine, StoreReader};

/// Most requests packed into one log entry.
const BATCH_REQUESTS_MAX: usize = 1024;
/// Most payload bytes packed into one log entry (a single larger request still goes alone).
const BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Most reads answered by one ReadIndex round.
const READ_ROUND_MAX: usize = 4096;
/// redb page cache of the log store.
const LOG_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// The answer to a queued write or read.
pub type Pending = oneshot::Receiver<Result<Response, Error>>;

struct QueuedWrite {
    request: Request,
    reply: oneshot::Sender<Result<Response, Error>>,
}

struct QueuedRead {
    read: Read,
    reply: oneshot::Sender<Result<Response, Error>>,
}

/// A running raft node with its request queues.
pub struct Node {
    id: NodeId,
    raft: Raft,
    read_mode: ReadMode,
    reader: StoreReader,
    writes: mpsc::UnboundedSender<QueuedWrite>,
    reads: mpsc::UnboundedSender<QueuedRead>,
}

impl Node {
    /// Opens the data directory, starts raft, initializes a one-member cluster on first start
    /// and waits (bounded) until this node leads.
    pub async fn start(config: &Config, advertised_addr: String) -> anyhow::Result<Arc<Node>> {
        let dir = config.dir.as_path();
        prepare_data_dir(dir)?;
        let log_store = LogStore::open(dir, LOG_CACHE_BYTES)
            .with_context(|| format!("cannot open the raft log in {}", dir.display()))?;
        let state_machine = StateMachine::open(dir, config.cache_mb * 1024 * 1024)
            .with_context(|| format!("cannot open the state machine in {}", dir.display()))?;
        let reader = state_machine.reader();

        let raft_config = openraft::Config {
            cluster_name: "redraft".into(),
            heartbeat_interval: 100,
            election_timeout_min: 300,
            election_timeout_max: 600,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_entries),
            max_in_snapshot_log_to_keep: 1000,
            ..Default::default()
        }
        .validate()
        .context("invalid raft configuration")?;
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            Network,
            log_store,
            state_machine,
        )
        .await
        .context("cannot start raft")?;

        if !raft.is_initialized().await? {
            let members = BTreeMap::from([(config.node_id, BasicNode::new(advertised_addr))]);
            raft.initialize(members)
                .await
                .context("cannot initialize the one-member cluster")?;
            tracing::info!(
                node_id = config.node_id,
                "initialized a new single-node cluster"
            );
        } else {
            tracing::info!(node_id = config.node_id, "resuming from existing data");
        }
        if let Err(err) = raft
            .wait(Some(Duration::from_secs(10)))
            .current_leader(config.node_id, "waiting to become leader")
            .await
        {
            tracing::warn!(error = %err, "no leadership yet; requests will wait for it");
        }

        let (writes, write_queue) = mpsc::unbounded_channel();
        let (reads, read_queue) = mpsc::unbounded_channel();
        tokio::spawn(run_write_batcher(raft.clone(), write_queue));
        tokio::spawn(run_read_batcher(raft.clone(), reader.clone(), read_queue));
        Ok(Arc::new(Node {
            id: config.node_id,
            raft,
            read_mode: config.read_mode,
            reader,
            writes,
            reads,
        }))
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The raft handle (metrics, shutdown).
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Queues a write now; the receiver resolves once it is applied. Queue order is apply
    /// order.
    pub fn write(&self, mut request: Request) -> Pending {
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

    /// Queues a linearizable read now. With `--read-mode log` a `GET` goes through the log.
    pub fn read(&self, read: Read) -> Pending {
        if let (ReadMode::Log, Read::Get(key)) = (self.read_mode, &read) {
            return self.write(Request::Get { key: key.clone() });
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
    pub fn local_key_count(&self) -> Option<i64> {
        match self.reader.read_many(&[Read::KeyCount]) {
            Ok(responses) => match responses.first() {
                Some(Response::Integer(n)) => Some(*n),
                _ => None,
            },
            Err(_) => None,
        }
    }

    /// Stops raft (its log writer drains what was queued).
    pub async fn shutdown(&self) {
        if let Err(err) = self.raft.shutdown().await {
            tracing::warn!(error = %err, "raft shutdown");
        }
    }
}

/// Values below this size are copied out of the connection's read buffer before they enter
/// the log, so a cached log entry never pins a whole read buffer.
const DETACH_BYTES_MAX: usize = 16 * 1024;

fn detach_small_buffers(request: &mut Request) {
    let detach = |b: &mut bytes::Bytes| {
        if b.len() < DETACH_BYTES_MAX {
            *b = bytes::Bytes::copy_from_slice(b);
        }
    };
    match request {
        Request::Set { key, value } => {
            detach(key);
            detach(value);
        }
        Request::Get { key } | Request::IncrBy { key, .. } => detach(key),
        Request::Del { keys } => keys.iter_mut().for_each(detach),
        Request::FlushAll => {}
        Request::Batch(requests) => requests.iter_mut().for_each(detach_small_buffers),
    }
}

/// Creates the data directory and checks that it is usable, with a one-line error if not.
fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let probe = dir.join(".write-test");
    std::fs::write(&probe, b"ok")
        .with_context(|| format!("data directory {} is not writable", dir.display()))?;
    std::fs::remove_file(&probe).ok();
    Ok(())
}

fn write_error(err: ClientWriteError<TypeConfig>) -> Error {
    match err {
        ClientWriteError::ForwardToLeader(f) if f.leader_id.is_none() => {
            Error::ClusterDown("The cluster is down".into())
        }
        ClientWriteError::ForwardToLeader(_) => {
            Error::TryAgain("this node is not the leader".into())
        }
        ClientWriteError::LogEntryDiscarded(_) => {
            Error::TryAgain("leadership changed; the write may or may not have applied".into())
        }
        other => Error::Internal(other.to_string()),
    }
}

fn read_error(err: RaftError<TypeConfig, LinearizableReadError<TypeConfig>>) -> Error {
    match err {
        RaftError::APIError(LinearizableReadError::ForwardToLeader(f)) if f.leader_id.is_none() => {
            Error::ClusterDown("The cluster is down".into())
        }
        RaftError::APIError(LinearizableReadError::ForwardToLeader(_)) => {
            Error::TryAgain("this node is not the leader".into())
        }
        RaftError::APIError(LinearizableReadError::QuorumNotEnough(_)) => {
            Error::ClusterDown("no quorum to confirm leadership".into())
        }
        RaftError::Fatal(fatal) => Error::Internal(fatal.to_string()),
    }
}

fn request_size(request: &Request) -> usize {
    match request {
        Request::Set { key, value } => key.len() + value.len(),
        Request::Get { key } | Request::IncrBy { key, .. } => key.len(),
        Request::Del { keys } => keys.iter().map(|k| k.len()).sum(),
        Request::FlushAll => 0,
        Request::Batch(requests) => requests.iter().map(request_size).sum(),
    }
}

/// Packs queued writes into log entries and proposes them in queue order.
async fn run_write_batcher(raft: Raft, mut queue: mpsc::UnboundedReceiver<QueuedWrite>) {
    let mut next: Option<QueuedWrite> = None;
    loop {
        let first = match next.take() {
            Some(write) => write,
            None => match queue.recv().await {
                Some(write) => write,
                None => return,
            },
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
            let result = match outcome.await {
                Ok(Ok(written)) => Ok(written.data),
                Ok(Err(err)) => Err(write_error(err)),
                Err(_) => Err(Error::TryAgain(
                    "raft stopped before the write completed".into(),
                )),
            };
            deliver(replies, result);
        });
    }
}

/// Sends each queued write its own response out of a (possibly batched) result.
fn deliver(
    replies: Vec<oneshot::Sender<Result<Response, Error>>>,
    result: Result<Response, Error>,
) {
    match result {
        Ok(Response::Batch(responses)) if replies.len() > 1 => {
            for (reply, response) in replies.into_iter().zip(responses) {
                let _ = reply.send(Ok(response));
            }
        }
        Ok(response) => {
            for reply in replies {
                let _ = reply.send(Ok(response.clone()));
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
) {
    while let Some(first) = queue.recv().await {
        let mut round = vec![first];
        while round.len() < READ_ROUND_MAX {
            match queue.try_recv() {
                Ok(read) => round.push(read),
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        let reader = reader.clone();
        tokio::spawn(async move {
            let (reads, replies): (Vec<Read>, Vec<_>) =
                round.into_iter().map(|r| (r.read, r.reply)).unzip();
            let result = match raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
                Ok(_) => tokio::task::spawn_blocking(move || reader.read_many(&reads))
                    .await
                    .map_err(|e| Error::Internal(e.to_string()))
                    .and_then(|r| r.map_err(|e| Error::Internal(e.to_string()))),
                Err(err) => Err(read_error(err)),
            };
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
