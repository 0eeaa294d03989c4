//! Peer transport: raft messages between nodes over persistent TCP connections.
//!
//! # Wire format
//! Every message is a frame: a 4-byte big-endian length, then a version byte
//! ([`WIRE_VERSION`]), then the postcard encoding of the message. A connection opens with a
//! [`Hello`] (at most `HELLO_FRAME_LEN_MAX` bytes, so an unauthenticated connection never
//! makes the node hold more) carrying the cluster secret and the channel it will carry; the
//! server answers [`HelloReply`] and closes the connection (with a log line) when the secret
//! is wrong.
//!
//! # Channels
//! - `Rpc`: one request, one response, in turn (votes, heartbeats, leadership transfer, and the
//!   application's own requests such as join and read index). openraft hands heartbeats to
//!   `stream_append` as streams of one request; those come here too.
//! - `Append`: replication. The leader streams AppendEntries requests without waiting for each
//!   response; the follower feeds them to openraft's `stream_append` and streams the results
//!   back in order. This is the pipelining.
//! - `Snapshot`: a snapshot file streamed in chunks into a temporary file next to the
//!   follower's snapshots, then installed; neither side holds the whole dataset in memory.
//!
//! Client commands never arrive here: the peer port speaks only this protocol.
//!
//! # Must not
//! Interpret requests or touch the state machine directly: it hands messages to `Raft` and to
//! the [`AppHandler`].

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::storage::RaftStateMachine;
use openraft::{OptionalSend, RaftNetworkFactory, RaftNetworkV2};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};

use crate::config::Member;
use crate::raft::{
    LogId, NodeId, Snapshot, SnapshotFile, SnapshotMeta, StoredMembership, TypeConfig, Vote,
};

/// Version byte at the start of every frame body.
pub const WIRE_VERSION: u8 = 1;
/// Largest accepted frame body; a larger declared length closes the connection.
const FRAME_LEN_MAX: usize = 1 << 30;
/// Largest accepted [`Hello`] frame body. A Hello holds a secret, a node id and a channel, so
/// a larger declared length is not a peer: it is refused before anything is read into memory.
/// Without this bound, anyone reaching the peer port could make the node allocate and fill up
/// to [`FRAME_LEN_MAX`] per connection before the secret was checked.
const HELLO_FRAME_LEN_MAX: usize = 64 * 1024;
/// Snapshot chunk size.
const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;
/// How long to wait for a TCP connect to a peer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a peer may take to send its Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// What a connection carries, chosen by its first frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Channel {
    /// Request/response RPCs.
    Rpc,
    /// Pipelined AppendEntries.
    Append,
    /// One snapshot transfer.
    Snapshot,
}

/// The first frame of every peer connection.
#[derive(Debug, Serialize, Deserialize)]
pub struct Hello {
    /// The shared cluster secret.
    pub secret: String,
    /// Sender's node id.
    pub from: NodeId,
    /// What this connection will carry.
    pub channel: Channel,
}

/// The server's answer to [`Hello`].
#[derive(Debug, Serialize, Deserialize)]
pub enum HelloReply {
    /// Go ahead.
    Accepted,
    /// Refused, with the reason; the server closes the connection.
    Refused(String),
}

/// Requests of the application itself (not raft's), served by [`AppHandler`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum AppRequest {
    /// Add the sender as a learner, wait until it caught up, then promote it to voter.
    Join {
        /// The new node's id.
        id: NodeId,
        /// Its addresses.
        member: Member,
    },
    /// Confirm leadership and return the log index a linearizable read must wait for.
    ReadIndex,
    /// Remove a member (voter or learner).
    Remove {
        /// The node to remove.
        id: NodeId,
    },
    /// Sent by the leader to a node it just removed, which may not learn it from the log
    /// (the leader stops replicating to it).
    Removed,
    /// Messages published on the sender, in publish order, for the subscribers here
    /// (`node::pubsub`); answered by [`AppResponse::Delivered`].
    Publish(Vec<Published>),
}

/// One message published on a node, as it travels to the others.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// SPUBLISH (shard channels only) rather than PUBLISH (channels and patterns).
    pub shard: bool,
    /// The channel.
    pub channel: bytes::Bytes,
    /// The message.
    pub message: bytes::Bytes,
}

/// Answers to [`AppRequest`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum AppResponse {
    /// Done.
    Ok,
    /// The read index: apply up to this log id, then read.
    ReadIndex(Option<LogId>),
    /// This node is not the leader; ask `leader` instead.
    NotLeader {
        /// The leader this node knows of.
        leader: Option<(NodeId, Member)>,
    },
    /// The request failed.
    Error(String),
    /// How many subscribers each published message reached on this node.
    Delivered(Vec<u64>),
}

/// Serves [`AppRequest`]s arriving on the peer port.
pub trait AppHandler: Send + Sync + 'static {
    /// Handles one request.
    fn handle(&self, request: AppRequest) -> BoxFuture<'static, AppResponse>;
}

#[derive(Debug, Serialize, Deserialize)]
enum RpcRequest {
    Vote(VoteRequest<TypeConfig>),
    PreVote(VoteRequest<TypeConfig>),
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    TransferLeader(TransferLeaderRequest<TypeConfig>),
    App(AppRequest),
}

#[derive(Debug, Serialize, Deserialize)]
enum RpcResponse {
    Vote(VoteResponse<TypeConfig>),
    AppendEntries(AppendEntriesResponse<TypeConfig>),
    TransferLeader(TransferLeaderResponse<TypeConfig>),
    App(AppResponse),
    /// The receiving raft node failed (stopped); the sender should back off.
    Failed(String),
}

/// Frames of the snapshot channel, sender → receiver.
#[derive(Debug, Serialize, Deserialize)]
enum SnapshotFrame {
    Header {
        vote: Vote,
        last_log_id: Option<LogId>,
        last_membership: StoredMembership,
    },
    Chunk(Vec<u8>),
    Done,
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    out: &mut W,
    message: &T,
) -> io::Result<()> {
    let mut body = vec![WIRE_VERSION];
    postcard::to_io(message, &mut body).map_err(io::Error::other)?;
    out.write_all(&(body.len() as u32).to_be_bytes()).await?;
    out.write_all(&body).await
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(
    input: &mut R,
) -> io::Result<Option<T>> {
    read_frame_up_to(input, FRAME_LEN_MAX).await
}

/// Reads one frame whose body is at most `len_max` bytes; `Ok(None)` at a clean end of stream.
async fn read_frame_up_to<R: AsyncRead + Unpin, T: DeserializeOwned>(
    input: &mut R,
    len_max: usize,
) -> io::Result<Option<T>> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len).await {
        Ok(_) => {}
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > len_max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad frame length {len}"),
        ));
    }
    let mut body = vec![0u8; len];
    input.read_exact(&mut body).await?;
    if body[0] != WIRE_VERSION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "peer speaks wire version {}, this node {WIRE_VERSION}",
                body[0]
            ),
        ));
    }
    postcard::from_bytes(&body[1..])
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

async fn expect_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(input: &mut R) -> io::Result<T> {
    read_frame(input)
        .await?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed the connection"))
}

/// Compares secrets without an early exit on the first differing byte.
fn secrets_equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

/// Opens a connection to a peer and performs the handshake.
async fn connect(
    addr: &str,
    secret: &str,
    me: NodeId,
    channel: Channel,
) -> io::Result<(
    BufReader<tokio::net::tcp::OwnedReadHalf>,
    BufWriter<tokio::net::tcp::OwnedWriteHalf>,
)> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect to {addr} timed out"),
            )
        })??;
    stream.set_nodelay(true)?;
    let (read, write) = stream.into_split();
    let (mut read, mut write) = (BufReader::new(read), BufWriter::new(write));
    write_frame(
        &mut write,
        &Hello {
            secret: secret.to_string(),
            from: me,
            channel,
        },
    )
    .await?;
    write.flush().await?;
    match expect_frame::<_, HelloReply>(&mut read).await? {
        HelloReply::Accepted => Ok((read, write)),
        HelloReply::Refused(reason) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("peer {addr} refused the connection: {reason}"),
        )),
    }
}

/// Creates [`PeerClient`]s for openraft.
#[derive(Clone)]
pub struct PeerNetwork {
    me: NodeId,
    secret: Arc<str>,
}

impl PeerNetwork {
    /// A network for node `me` authenticating with `secret`.
    pub fn new(me: NodeId, secret: Arc<str>) -> PeerNetwork {
        PeerNetwork { me, secret }
    }

    /// A client for application requests to the peer at `peer_addr` that keeps its
    /// connection between requests, so they arrive in the order they are sent.
    pub fn app_client(&self, peer_addr: &str) -> AppClient {
        AppClient(PeerClient {
            target: 0,
            addr: peer_addr.to_string(),
            me: self.me,
            secret: self.secret.clone(),
            rpc: None,
        })
    }

    /// Sends one application request to the peer at `peer_addr`.
    pub async fn app_request(
        &self,
        peer_addr: &str,
        request: AppRequest,
        timeout: Duration,
    ) -> io::Result<AppResponse> {
        self.app_client(peer_addr).request(request, timeout).await
    }
}

/// Application requests to one peer over one kept connection (see
/// [`PeerNetwork::app_client`]); a failed or timed-out request drops it, the next reconnects.
pub struct AppClient(PeerClient);

impl AppClient {
    /// Sends `request` and waits (at most `timeout`) for its answer.
    pub async fn request(
        &mut self,
        request: AppRequest,
        timeout: Duration,
    ) -> io::Result<AppResponse> {
        match tokio::time::timeout(timeout, self.0.call(RpcRequest::App(request))).await {
            Ok(Ok(RpcResponse::App(response))) => Ok(response),
            Ok(Ok(other)) => Err(io::Error::other(format!("unexpected response {other:?}"))),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "peer request timed out",
            )),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerClient {
        PeerClient {
            target,
            addr: node.peer_addr.clone(),
            me: self.me,
            secret: self.secret.clone(),
            rpc: None,
        }
    }
}

type Reader = BufReader<tokio::net::tcp::OwnedReadHalf>;
type Writer = BufWriter<tokio::net::tcp::OwnedWriteHalf>;

/// One peer as openraft sees it; holds a lazily opened RPC connection.
pub struct PeerClient {
    target: NodeId,
    addr: String,
    me: NodeId,
    secret: Arc<str>,
    rpc: Option<(Reader, Writer)>,
}

fn unreachable(err: impl std::fmt::Display) -> Unreachable<TypeConfig> {
    Unreachable::from_string(err.to_string())
}

impl PeerClient {
    /// One request/response on the RPC connection; drops the connection on any error.
    ///
    /// The connection is taken out while the call runs and put back only after its response:
    /// a call cancelled midway (openraft times heartbeats out) must not leave a response in
    /// flight for the next call to read as its own.
    async fn call(&mut self, request: RpcRequest) -> io::Result<RpcResponse> {
        let (mut read, mut write) = match self.rpc.take() {
            Some(connection) => connection,
            None => connect(&self.addr, &self.secret, self.me, Channel::Rpc).await?,
        };
        write_frame(&mut write, &request).await?;
        write.flush().await?;
        let response = expect_frame::<_, RpcResponse>(&mut read).await?;
        self.rpc = Some((read, write));
        Ok(response)
    }

    async fn call_with_ttl(
        &mut self,
        request: RpcRequest,
        option: &RPCOption,
    ) -> Result<RpcResponse, RPCError<TypeConfig>> {
        match tokio::time::timeout(option.hard_ttl(), self.call(request)).await {
            Ok(Ok(RpcResponse::Failed(reason))) => Err(RPCError::Unreachable(unreachable(
                format!("node {} failed: {reason}", self.target),
            ))),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(err)) => Err(RPCError::Unreachable(unreachable(err))),
            Err(_) => {
                self.rpc = None;
                Err(RPCError::Network(NetworkError::from_string(format!(
                    "request to node {} timed out after {:?}",
                    self.target,
                    option.hard_ttl()
                ))))
            }
        }
    }

    /// One AppendEntries over the RPC connection, answered as a stream of its one result.
    async fn append_one<'s>(
        &'s mut self,
        request: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>,
        RPCError<TypeConfig>,
    > {
        let prev = request.prev_log_id;
        let last = request.entries.last().map(|entry| entry.log_id).or(prev);
        let response = self.append_entries(request, option).await?;
        let result = response.into_stream_result(prev, last);
        Ok(futures::stream::once(async move { Ok(result) }).boxed())
    }
}

fn unexpected(response: RpcResponse) -> RPCError<TypeConfig> {
    RPCError::Network(NetworkError::from_string(format!(
        "unexpected response {response:?}"
    )))
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call_with_ttl(RpcRequest::AppendEntries(rpc), &option)
            .await?
        {
            RpcResponse::AppendEntries(response) => Ok(response),
            other => Err(unexpected(other)),
        }
    }

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<
            BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>,
            RPCError<TypeConfig>,
        >,
    >
    where
        S: futures::Stream<Item = AppendEntriesRequest<TypeConfig>>
            + OptionalSend
            + Unpin
            + 'static,
    {
        let addr = self.addr.clone();
        let secret = self.secret.clone();
        let me = self.me;
        Box::pin(async move {
            // Fused: the stream is polled once more after the request that may be its last.
            let mut input = input.fuse();
            let Some(first) = input.next().await else {
                return Ok(futures::stream::empty().boxed());
            };
            let second = match input.next().now_or_never() {
                // A stream of one request without entries is a heartbeat (openraft sends one
                // per interval and per linearizable read's leadership check) or an empty
                // probe: it goes over the RPC connection kept open, not over a new connection
                // of its own. Entries always stream: the RPC deadline is a heartbeat's.
                Some(None) if first.entries.is_empty() => {
                    return self.append_one(first, option).await;
                }
                Some(second) => second,
                None => None,
            };
            let input = futures::stream::iter(std::iter::once(first).chain(second)).chain(input);
            let (read, mut write) = connect(&addr, &secret, me, Channel::Append)
                .await
                .map_err(|e| RPCError::Unreachable(unreachable(e)))?;
            // Requests go out as fast as openraft produces them; responses come back in order.
            let sender = tokio::spawn(async move {
                let mut input = input;
                while let Some(request) = input.next().await {
                    write_frame(&mut write, &request).await?;
                    write.flush().await?;
                }
                io::Result::Ok(())
            });
            // The sender stops with the response stream, also when openraft drops it early: it
            // must not go on taking requests from the next session's replication state.
            let sender = AbortOnDrop(sender.abort_handle());
            let results =
                futures::stream::unfold((read, Some(sender)), |(mut read, sender)| async move {
                    match read_frame::<_, StreamAppendResult<TypeConfig>>(&mut read).await {
                        Ok(Some(result)) => Some((Ok(result), (read, sender))),
                        Ok(None) => None,
                        Err(err) => {
                            drop(sender);
                            Some((Err(RPCError::Unreachable(unreachable(err))), (read, None)))
                        }
                    }
                });
            // End the stream after the first error.
            let results = results.scan(false, |failed, item| {
                let done = *failed;
                *failed = item.is_err();
                futures::future::ready(if done { None } else { Some(item) })
            });
            Ok(results.boxed())
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.call_with_ttl(RpcRequest::Vote(rpc), &option).await? {
            RpcResponse::Vote(response) => Ok(response),
            other => Err(unexpected(other)),
        }
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call_with_ttl(RpcRequest::PreVote(rpc), &option)
            .await?
        {
            RpcResponse::Vote(response) => Ok(response),
            other => Err(unexpected(other)),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call_with_ttl(RpcRequest::TransferLeader(req), &option)
            .await?
        {
            RpcResponse::TransferLeader(response) => Ok(response),
            other => Err(unexpected(other)),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let send = async {
            let (mut read, mut write) =
                connect(&self.addr, &self.secret, self.me, Channel::Snapshot).await?;
            write_frame(
                &mut write,
                &SnapshotFrame::Header {
                    vote,
                    last_log_id: snapshot.meta.last_log_id,
                    last_membership: snapshot.meta.last_membership.clone(),
                },
            )
            .await?;
            let mut file = tokio::fs::File::open(&snapshot.snapshot.path).await?;
            let mut chunk = vec![0u8; SNAPSHOT_CHUNK_BYTES];
            loop {
                let n = file.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                write_frame(&mut write, &SnapshotFrame::Chunk(chunk[..n].to_vec())).await?;
            }
            write_frame(&mut write, &SnapshotFrame::Done).await?;
            write.flush().await?;
            match expect_frame::<_, Result<SnapshotResponse<TypeConfig>, String>>(&mut read).await?
            {
                Ok(response) => Ok(response),
                Err(reason) => Err(io::Error::other(reason)),
            }
        };
        tokio::select! {
            result = send => result.map_err(|e| StreamingError::Unreachable(unreachable(e))),
            closed = cancel => Err(StreamingError::Closed(closed)),
        }
    }
}

/// Everything the peer server needs.
pub struct PeerServer<SM: FileStateMachine> {
    /// The raft node messages are handed to.
    pub raft: openraft::Raft<TypeConfig, SM>,
    /// Checks a received snapshot file in full before it is installed (the state machine knows
    /// the format): a damaged transfer is refused, not handed to raft.
    pub verify_snapshot: fn(&std::path::Path) -> io::Result<()>,
    /// The shared secret peers must present.
    pub secret: Arc<str>,
    /// Where received snapshots are written before install.
    pub snapshot_dir: PathBuf,
    /// Serves application requests.
    pub app: Arc<dyn AppHandler>,
}

/// A state machine whose snapshots are files: what the peer server installs received
/// snapshots into.
pub trait FileStateMachine: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile> {}
impl<T: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>> FileStateMachine for T {}

/// Accepts peer connections until the listener fails.
pub async fn serve_peers<SM: FileStateMachine>(listener: TcpListener, server: Arc<PeerServer<SM>>) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(error = %err, "peer accept failed");
                continue;
            }
        };
        let server = server.clone();
        tokio::spawn(async move {
            if let Err(err) = serve_peer(stream, &server).await {
                tracing::debug!(peer = %addr, error = %err, "peer connection ended");
            }
        });
    }
}

async fn serve_peer<SM: FileStateMachine>(
    stream: TcpStream,
    server: &PeerServer<SM>,
) -> io::Result<()> {
    let peer_addr = stream.peer_addr()?;
    stream.set_nodelay(true)?;
    let (read, write) = stream.into_split();
    let (mut read, mut write) = (BufReader::new(read), BufWriter::new(write));
    let hello = read_frame_up_to::<_, Hello>(&mut read, HELLO_FRAME_LEN_MAX);
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, hello).await {
        Ok(Ok(Some(hello))) => hello,
        Ok(Ok(None)) => return Ok(()),
        Ok(Err(err)) => {
            tracing::warn!(peer = %peer_addr, error = %err, "refused peer connection: not a redraft peer handshake");
            return Ok(());
        }
        Err(_) => {
            tracing::warn!(peer = %peer_addr, "refused peer connection: no handshake in time");
            return Ok(());
        }
    };
    if !secrets_equal(&hello.secret, &server.secret) {
        tracing::warn!(peer = %peer_addr, from = hello.from, "refused peer connection: wrong cluster secret");
        let _ = write_frame(
            &mut write,
            &HelloReply::Refused("wrong cluster secret".into()),
        )
        .await;
        let _ = write.flush().await;
        return Ok(());
    }
    write_frame(&mut write, &HelloReply::Accepted).await?;
    write.flush().await?;
    match hello.channel {
        Channel::Rpc => serve_rpc(read, write, server).await,
        Channel::Append => serve_append(read, write, server).await,
        Channel::Snapshot => serve_snapshot(read, write, server).await,
    }
}

async fn serve_rpc<SM: FileStateMachine>(
    mut read: Reader,
    mut write: Writer,
    server: &PeerServer<SM>,
) -> io::Result<()> {
    while let Some(request) = read_frame::<_, RpcRequest>(&mut read).await? {
        let raft = &server.raft;
        let response = match request {
            RpcRequest::Vote(rpc) => match raft.vote(rpc).await {
                Ok(r) => RpcResponse::Vote(r),
                Err(e) => RpcResponse::Failed(e.to_string()),
            },
            RpcRequest::PreVote(rpc) => match raft.pre_vote(rpc).await {
                Ok(r) => RpcResponse::Vote(r),
                Err(e) => RpcResponse::Failed(e.to_string()),
            },
            RpcRequest::AppendEntries(rpc) => match raft.append_entries(rpc).await {
                Ok(r) => RpcResponse::AppendEntries(r),
                Err(e) => RpcResponse::Failed(e.to_string()),
            },
            RpcRequest::TransferLeader(req) => match raft.handle_transfer_leader(req).await {
                Ok(r) => RpcResponse::TransferLeader(r),
                Err(e) => RpcResponse::Failed(e.to_string()),
            },
            RpcRequest::App(request) => RpcResponse::App(server.app.handle(request).await),
        };
        write_frame(&mut write, &response).await?;
        write.flush().await?;
    }
    Ok(())
}

async fn serve_append<SM: FileStateMachine>(
    read: Reader,
    mut write: Writer,
    server: &PeerServer<SM>,
) -> io::Result<()> {
    let requests = futures::stream::unfold(read, |mut read| async move {
        match read_frame::<_, AppendEntriesRequest<TypeConfig>>(&mut read).await {
            Ok(Some(request)) => Some((request, read)),
            _ => None,
        }
    });
    let results = server.raft.stream_append(requests);
    futures::pin_mut!(results);
    while let Some(result) = results.next().await {
        match result {
            Ok(result) => {
                let stop = result.is_err();
                write_frame(&mut write, &result).await?;
                write.flush().await?;
                if stop {
                    break;
                }
            }
            Err(fatal) => return Err(io::Error::other(fatal.to_string())),
        }
    }
    Ok(())
}

async fn serve_snapshot<SM: FileStateMachine>(
    mut read: Reader,
    mut write: Writer,
    server: &PeerServer<SM>,
) -> io::Result<()> {
    let Some(SnapshotFrame::Header {
        vote,
        last_log_id,
        last_membership,
    }) = read_frame::<_, SnapshotFrame>(&mut read).await?
    else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "snapshot stream without a header",
        ));
    };
    let path = server.snapshot_dir.join(format!(
        "receiving-{}-{}.tmp",
        last_log_id.map_or(0, |l| l.index),
        std::process::id()
    ));
    let result = async {
        let mut file = tokio::fs::File::create(&path).await?;
        loop {
            match expect_frame::<_, SnapshotFrame>(&mut read).await? {
                SnapshotFrame::Chunk(bytes) => file.write_all(&bytes).await?,
                SnapshotFrame::Done => break,
                SnapshotFrame::Header { .. } => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "second snapshot header"));
                }
            }
        }
        file.sync_all().await?;
        drop(file);
        // A damaged transfer is refused here (the leader sends it again), not handed to raft,
        // which would stop on a storage error.
        let (received, verify) = (path.clone(), server.verify_snapshot);
        tokio::task::spawn_blocking(move || verify(&received))
            .await
            .map_err(io::Error::other)??;
        let snapshot = Snapshot {
            meta: SnapshotMeta {
                last_log_id,
                last_membership,
            },
            snapshot: SnapshotFile { path: path.clone() },
        };
        tracing::info!(last_log_id = ?last_log_id, "installing a snapshot received from the leader");
        server
            .raft
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| io::Error::other(e.to_string()))
    }
    .await;
    let reply: Result<SnapshotResponse<TypeConfig>, String> = result.map_err(|e| e.to_string());
    if reply.is_err() {
        let _ = tokio::fs::remove_file(&path).await;
    }
    write_frame(&mut write, &reply).await?;
    write.flush().await
}
