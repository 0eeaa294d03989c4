//! Forwarding of client commands from a follower to the leader's client port.
//!
//! A follower that gets a command needing the leader hands it to [`Proxy::forward`], which
//! queues it on a pooled, pipelined RESP connection to the leader and resolves to the leader's
//! reply bytes, to be relayed to the client unchanged.
//!
//! This module owns:
//! - **the connections to the leader**: a small pool per (leader, protocol), opened lazily,
//!   prepared with `AUTH`, the proxied marker (`REDRAFT.PROXIED`) and `HELLO 3`, dropped on the
//!   first IO error and closed once idle when the leader changes;
//! - **order**: one client's commands always share one connection and are written in call
//!   order; replies are matched to commands first-in, first-out;
//! - **pipelining and bounds**: a writer task coalesces every queued command into one write and
//!   never has more than a fixed number of commands awaiting replies per connection; a reader
//!   task cuts replies out of its read buffer without copying them;
//! - **failure reporting**: a command that was never written fails with
//!   [`ProxyError::Unreachable`], one that was (or may have been) written with
//!   [`ProxyError::Indeterminate`], one the leader answered with `-REDRAFT.RETRY` (it did not
//!   run it, or cannot know whether its entry commits) with [`ProxyError::Resend`]. A caller
//!   may pass a failure counter, incremented before each such failure is delivered and in
//!   command order, so the caller can hold back later commands until it has resent these.
//!
//! It must not interpret commands or replies beyond RESP framing: it never looks at a
//! command's name or a reply's content (except the handshake's own replies, which it checks for
//! errors, and the leader's internal `-REDRAFT.RETRY`). It follows that commands which change connection state or break the
//! one-command-one-reply rule (`SUBSCRIBE` and friends, `MONITOR`, `CLIENT REPLY`,
//! `CLIENT TRACKING`, `SELECT`, `HELLO`, `AUTH`, a bare `MULTI`, blocking commands that may
//! wait long) must be answered locally by the caller, or — for a transaction — sent as one
//! block with [`Proxy::forward_many`], never forwarded one by one on a shared connection.
//!
//! Framing ([`crate::resp::scan`]): a reply is one complete RESP2/RESP3 value, nested to any
//! depth (scanned without recursion). RESP3 attributes (`|`) stay with the value they annotate, and RESP3 pushes (`>`)
//! stay with the reply that follows them, so a client receives exactly the bytes Redis sent.
//! RESP2 nulls (`$-1`, `*-1`) and RESP3 streamed strings and aggregates are understood.

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::{debug, warn};

use crate::error::RESEND_PREFIX;
use crate::node::{QueueDepth, QueueSlot};
use crate::resp::Protocol;
use crate::resp::encode::{CommandBatch, WRITE_BATCH_BYTES};
use crate::resp::scan::{ReplyScanner, ScanError};

/// Default bound on commands written to one connection and not yet answered.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 16 * 1024;
/// Default time allowed to open a TCP connection to the leader.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The command that marks a connection as coming from a proxy, so the leader never forwards
/// what arrives on it.
pub const PROXIED_COMMAND: &str = "REDRAFT.PROXIED";

/// Free space the reader makes before each read.
const READ_CHUNK: usize = 16 * 1024;
/// Capacity the reader keeps between replies; a larger read buffer is released when empty.
const RETAINED_READ_CAPACITY: usize = 4 * 1024 * 1024;
/// Most the reader reserves ahead for a large blob (it grows further as data arrives).
const MAX_READ_RESERVE: usize = 16 * 1024 * 1024;

/// Where to forward: the leader's raft id and client address (`host:port`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderTarget {
    /// The leader's raft node id.
    pub id: u64,
    /// The leader's client address, `host:port`.
    pub client_addr: String,
}

/// Why a forwarded command has no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// Could not reach the leader; the command was NOT sent (safe to retry or report).
    #[error("leader unreachable: {0}")]
    Unreachable(String),
    /// The connection failed after the command was sent: it may or may not have been applied.
    #[error("connection to the leader lost, the command may have been applied: {0}")]
    Indeterminate(String),
    /// The leader answered `-REDRAFT.RETRY`: it did not run the command, or cannot know
    /// whether it commits; the same identified command may be sent again.
    #[error("the leader asked for the command again: {0}")]
    Resend(String),
}

/// Counts failures delivered to a caller's commands (see the module doc).
pub type FailureCounter = Arc<std::sync::atomic::AtomicUsize>;

/// Where one command's reply goes, and the caller's failure counter.
struct ReplyTo {
    sender: oneshot::Sender<Result<Bytes, ProxyError>>,
    failures: Option<FailureCounter>,
}

impl ReplyTo {
    fn fail(self, error: ProxyError) {
        self.count_failure();
        self.send_failure(error);
    }

    fn count_failure(&self) {
        if let Some(failures) = &self.failures {
            failures.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
    }

    /// Delivers a failure already counted with [`ReplyTo::count_failure`].
    fn send_failure(self, error: ProxyError) {
        // The client may be gone; the reply is dropped then.
        let _ = self.sender.send(Err(error));
    }

    fn answer(self, reply: Bytes) {
        if reply.starts_with(b"-") && reply[1..].starts_with(RESEND_PREFIX.as_bytes()) {
            let text = String::from_utf8_lossy(reply[1..].trim_ascii_end()).into_owned();
            return self.fail(ProxyError::Resend(text));
        }
        let _ = self.sender.send(Ok(reply));
    }
}

/// How every connection of a [`Proxy`] is opened and bounded.
#[derive(Clone)]
struct Settings {
    password: Option<Bytes>,
    handshake_command: Option<Vec<Bytes>>,
    connections_per_leader: usize,
    max_in_flight: usize,
    connect_timeout: Duration,
    /// Counts the commands queued and not yet written, with the node's own queues.
    queue_depth: Option<Arc<QueueDepth>>,
}

impl Settings {
    /// A place in the node's queues for one more command, when they are counted.
    fn queue_slot(&self) -> Option<QueueSlot> {
        self.queue_depth.as_ref().map(QueueDepth::slot)
    }

    /// The commands sent ahead of the first forwarded command on a new connection.
    ///
    /// `AUTH` goes first so the marker and `HELLO` are accepted on a password-protected leader.
    fn handshake(&self, protocol: Protocol) -> Vec<(Vec<Bytes>, &'static str)> {
        let mut steps = Vec::with_capacity(3);
        if let Some(password) = &self.password {
            steps.push((vec![Bytes::from_static(b"AUTH"), password.clone()], "AUTH"));
        }
        if let Some(command) = self.handshake_command.as_ref().filter(|c| !c.is_empty()) {
            steps.push((command.clone(), "proxied marker"));
        }
        if protocol == Protocol::Resp3 {
            steps.push((
                vec![Bytes::from_static(b"HELLO"), Bytes::from_static(b"3")],
                "HELLO 3",
            ));
        }
        steps
    }
}

/// A pool of pipelined connections to the current leader, shared by all client connections
/// of a node.
///
/// [`Proxy::forward`] queues a command synchronously and returns a future of its reply; the
/// connection chosen by `client_id % connections_per_leader` (per protocol) carries it. The
/// pool follows the `target` given with each call: when it changes, commands go to new
/// connections and the old ones close once their in-flight commands are answered. Dropping
/// the `Proxy` closes every connection the same way.
pub struct Proxy {
    settings: Arc<Settings>,
    pool: Mutex<Pool>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = self
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .target
            .clone();
        f.debug_struct("Proxy")
            .field("target", &target)
            .field("password", &self.settings.password.as_ref().map(|_| "***"))
            .field("handshake_command", &self.settings.handshake_command)
            .field(
                "connections_per_leader",
                &self.settings.connections_per_leader,
            )
            .field("max_in_flight", &self.settings.max_in_flight)
            .field("connect_timeout", &self.settings.connect_timeout)
            .finish()
    }
}

impl Proxy {
    /// A proxy with no connection yet.
    ///
    /// `password`: sent with `AUTH` on every new leader connection (the cluster shares
    /// requirepass). `connections_per_leader`: pool size per (leader, protocol); 0 counts as 1.
    pub fn new(password: Option<String>, connections_per_leader: usize) -> Proxy {
        Proxy {
            settings: Arc::new(Settings {
                password: password.filter(|p| !p.is_empty()).map(Bytes::from),
                handshake_command: Some(vec![Bytes::from_static(PROXIED_COMMAND.as_bytes())]),
                connections_per_leader: connections_per_leader.max(1),
                max_in_flight: DEFAULT_MAX_IN_FLIGHT,
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                queue_depth: None,
            }),
            pool: Mutex::new(Pool::default()),
        }
    }

    /// Replaces the command that marks a new connection as proxied (default
    /// `REDRAFT.PROXIED`); `None` sends no marker (for a leader that is a plain Redis, as in
    /// tests). An error reply to the marker fails the connection.
    pub fn with_handshake_command(mut self, command: Option<Vec<Bytes>>) -> Proxy {
        Arc::make_mut(&mut self.settings).handshake_command = command;
        self
    }

    /// Bounds the commands written to one connection and not yet answered (default
    /// [`DEFAULT_MAX_IN_FLIGHT`]); beyond it commands stay queued until replies come back.
    pub fn with_max_in_flight(mut self, max_in_flight: usize) -> Proxy {
        Arc::make_mut(&mut self.settings).max_in_flight =
            max_in_flight.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// Counts the commands waiting to be written in `depth` (the node's, so that one bound
    /// covers every queue a connection's commands wait in; see `node::QueueDepth`).
    pub fn with_queue_depth(mut self, depth: Arc<QueueDepth>) -> Proxy {
        Arc::make_mut(&mut self.settings).queue_depth = Some(depth);
        self
    }

    /// Sets the time allowed to open a connection (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Proxy {
        Arc::make_mut(&mut self.settings).connect_timeout = timeout;
        self
    }

    /// Queues `args` (a whole command, name first) now, before returning, on the pooled
    /// connection chosen by `client_id` for `protocol`, and returns the future of its reply.
    ///
    /// One client's commands always share one connection, so commands forwarded in call order
    /// reach the leader in that order, pipelined. RESP2 and RESP3 use separate connections.
    /// The future resolves to the raw bytes of exactly one complete reply (with any attributes
    /// and pushes Redis sent ahead of it). It needs no polling for the command to be sent, and
    /// dropping it does not withdraw the command.
    ///
    /// Must be called within a tokio runtime (the connection tasks run there); without one it
    /// fails with [`ProxyError::Unreachable`].
    pub fn forward(
        &self,
        target: &LeaderTarget,
        protocol: Protocol,
        client_id: u64,
        args: Vec<Bytes>,
    ) -> impl Future<Output = Result<Bytes, ProxyError>> + Send + 'static {
        self.forward_counted(target, protocol, client_id, args, None)
    }

    /// [`Proxy::forward`], incrementing `failures` (if given) before a failure is delivered.
    pub fn forward_counted(
        &self,
        target: &LeaderTarget,
        protocol: Protocol,
        client_id: u64,
        args: Vec<Bytes>,
        failures: Option<FailureCounter>,
    ) -> impl Future<Output = Result<Bytes, ProxyError>> + Send + 'static {
        let queued = self.enqueue(target, protocol, client_id, vec![args], failures.clone());
        async move {
            // Failures that never reached a connection (nothing queued, or the connection
            // dropped the command without answering) are counted here, like the rest.
            let count = |error: ProxyError| {
                if let Some(failures) = &failures {
                    failures.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                }
                Err(error)
            };
            let receiver = match queued.map(|mut receivers| receivers.pop()) {
                Ok(Some(receiver)) => receiver,
                Ok(None) => return count(ProxyError::Unreachable("nothing queued".into())),
                Err(error) => return count(error),
            };
            match receiver.await {
                Ok(outcome) => outcome,
                Err(_) => count(ProxyError::Indeterminate(
                    "leader connection ended without answering".into(),
                )),
            }
        }
    }

    /// Queues `commands` now as one contiguous block on `client_id`'s connection: no other
    /// client's command can land between them (use it for `MULTI` … `EXEC`). The future
    /// resolves to one result per command, in order.
    ///
    /// If any command is empty, none is sent (all fail with [`ProxyError::Unreachable`]). If
    /// the connection fails while the block is being queued, the commands not yet queued fail
    /// with [`ProxyError::Unreachable`] rather than going to another connection.
    pub fn forward_many(
        &self,
        target: &LeaderTarget,
        protocol: Protocol,
        client_id: u64,
        commands: Vec<Vec<Bytes>>,
    ) -> impl Future<Output = Vec<Result<Bytes, ProxyError>>> + Send + 'static {
        let count = commands.len();
        let queued = self.enqueue(target, protocol, client_id, commands, None);
        async move {
            match queued {
                Ok(receivers) => futures::future::join_all(receivers.into_iter().map(await_reply))
                    .await
                    .into_iter()
                    .collect(),
                Err(error) => vec![Err(error); count],
            }
        }
    }

    /// Drops every pooled connection; each closes once its in-flight commands are answered.
    /// The next [`Proxy::forward`] connects again.
    pub fn disconnect_all(&self) {
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        pool.target = None;
        pool.resp2.clear();
        pool.resp3.clear();
    }

    /// Queues `commands` contiguously on the connection for (`target`, `protocol`,
    /// `client_id`), opening it if needed; returns one reply receiver per command.
    fn enqueue(
        &self,
        target: &LeaderTarget,
        protocol: Protocol,
        client_id: u64,
        commands: Vec<Vec<Bytes>>,
        failures: Option<FailureCounter>,
    ) -> Result<Vec<oneshot::Receiver<Result<Bytes, ProxyError>>>, ProxyError> {
        if commands.iter().any(Vec::is_empty) {
            // `*0` gets no reply from Redis: it would shift every later reply.
            return Err(ProxyError::Unreachable("empty command, not sent".into()));
        }
        let mut receivers = Vec::with_capacity(commands.len());
        let requests = commands.into_iter().map(|args| {
            let (sender, receiver) = oneshot::channel();
            receivers.push(receiver);
            Request {
                args,
                reply: ReplyTo {
                    sender,
                    failures: failures.clone(),
                },
                _slot: self.settings.queue_slot(),
            }
        });
        self.queue_block(target, protocol, client_id, requests)?;
        Ok(receivers)
    }

    /// Queues `requests` contiguously, under the pool's lock, on the pooled connection chosen
    /// by `client_id` for `protocol`: opening it, or replacing it once if found closed before
    /// the first request is on it. The rest never move to another connection (a block must
    /// stay whole): if that connection closes meanwhile, they fail.
    fn queue_block(
        &self,
        target: &LeaderTarget,
        protocol: Protocol,
        client_id: u64,
        requests: impl IntoIterator<Item = Request>,
    ) -> Result<(), ProxyError> {
        let mut requests = requests.into_iter();
        let Some(mut request) = requests.next() else {
            return Ok(());
        };
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            ProxyError::Unreachable("no tokio runtime to run the leader connection on".into())
        })?;
        let size = self.settings.connections_per_leader;
        let index = usize::try_from(client_id % size as u64).unwrap_or(0);

        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.target.as_ref() != Some(target) {
            if let Some(old) = &pool.target {
                debug!(old = old.id, new = target.id, addr = %target.client_addr,
                    "proxy: leader changed; old connections close once idle");
            }
            pool.target = Some(target.clone());
            pool.resp2.clear();
            pool.resp3.clear();
        }
        let Pool {
            resp2,
            resp3,
            next_id,
            ..
        } = &mut *pool;
        let slots = match protocol {
            Protocol::Resp2 => resp2,
            Protocol::Resp3 => resp3,
        };
        if slots.len() != size {
            slots.resize_with(size, || None);
        }
        let Some(slot) = slots.get_mut(index) else {
            return Err(ProxyError::Unreachable("no connection slot".into()));
        };

        let mut open = || {
            *next_id += 1;
            Conn::spawn(
                &runtime,
                *next_id,
                target,
                protocol,
                Arc::clone(&self.settings),
            )
        };

        let mut queued_on = None;
        // A connection found closed (or closing under us) is replaced once.
        for _ in 0..2 {
            let conn = match slot {
                Some(conn) if !conn.queue.is_closed() => conn,
                _ => slot.insert(open()),
            };
            match conn.queue.send(request) {
                Ok(()) => {
                    queued_on = Some(conn.queue.clone());
                    break;
                }
                Err(mpsc::error::SendError(back)) => {
                    request = back;
                    *slot = None;
                }
            }
        }
        let closed = || {
            ProxyError::Unreachable(format!(
                "connection to {} closed while queueing",
                target.client_addr
            ))
        };
        let queue = queued_on.ok_or_else(closed)?;
        for request in requests {
            if let Err(mpsc::error::SendError(back)) = queue.send(request) {
                back.reply.fail(closed());
            }
        }
        Ok(())
    }
}

/// Waits for one reply; a connection task that vanished without answering leaves the outcome
/// unknown.
async fn await_reply(
    receiver: oneshot::Receiver<Result<Bytes, ProxyError>>,
) -> Result<Bytes, ProxyError> {
    receiver.await.unwrap_or_else(|_| {
        Err(ProxyError::Indeterminate(
            "leader connection ended without answering".into(),
        ))
    })
}

/// The connections of the current target, by slot.
#[derive(Default)]
struct Pool {
    target: Option<LeaderTarget>,
    resp2: Vec<Option<Conn>>,
    resp3: Vec<Option<Conn>>,
    next_id: u64,
}

/// The pool's handle on one connection: its queue of commands not yet written.
///
/// Dropping it (leader change, [`Proxy::disconnect_all`], dropping the `Proxy`) lets the
/// connection finish what was queued and close once every reply is in.
struct Conn {
    queue: mpsc::UnboundedSender<Request>,
}

impl Conn {
    fn spawn(
        runtime: &tokio::runtime::Handle,
        id: u64,
        target: &LeaderTarget,
        protocol: Protocol,
        settings: Arc<Settings>,
    ) -> Conn {
        let (queue, receiver) = mpsc::unbounded_channel();
        let task = Connection {
            id,
            leader: target.id,
            addr: target.client_addr.clone(),
            protocol,
            settings,
        };
        runtime.spawn(task.run(receiver));
        Conn { queue }
    }
}

/// One forwarded command and where its reply goes.
struct Request {
    args: Vec<Bytes>,
    reply: ReplyTo,
    /// Its place in the node's queues until the writer takes it.
    _slot: Option<QueueSlot>,
}

/// Who gets the next reply read from a connection.
enum Waiter {
    /// A handshake command: an error reply fails the connection, anything else is discarded.
    Handshake(&'static str),
    /// A forwarded command.
    Client(ReplyTo),
}

impl Waiter {
    fn client(self) -> Option<ReplyTo> {
        match self {
            Waiter::Client(reply) => Some(reply),
            Waiter::Handshake(_) => None,
        }
    }
}

/// Why a connection stopped working.
#[derive(Debug)]
struct Failure(String);

impl From<io::Error> for Failure {
    fn from(error: io::Error) -> Failure {
        Failure(error.to_string())
    }
}

impl From<ScanError> for Failure {
    fn from(error: ScanError) -> Failure {
        Failure(format!("protocol error from the leader: {}", error.0))
    }
}

/// The task behind one pooled connection.
struct Connection {
    id: u64,
    leader: u64,
    addr: String,
    protocol: Protocol,
    settings: Arc<Settings>,
}

impl Connection {
    async fn run(self, mut queue: mpsc::UnboundedReceiver<Request>) {
        let stream = match self.connect().await {
            Ok(stream) => stream,
            Err(why) => {
                warn!(conn = self.id, leader = self.leader, addr = %self.addr, "proxy: {why}");
                queue.close();
                while let Some(request) = queue.recv().await {
                    request.reply.fail(ProxyError::Unreachable(why.clone()));
                }
                return;
            }
        };
        debug!(conn = self.id, leader = self.leader, addr = %self.addr, protocol = ?self.protocol,
            "proxy: connected to leader");

        let (read_half, mut write_half) = stream.into_split();
        let (waiting_tx, mut waiting) = mpsc::unbounded_channel();
        let permits = Semaphore::new(self.settings.max_in_flight);
        let mut next = None;
        let outcome = {
            let writer = write_loop(
                &mut queue,
                waiting_tx,
                &mut write_half,
                &permits,
                self.settings.handshake(self.protocol),
            );
            let reader = read_loop(read_half, &mut waiting, &mut next, &permits);
            tokio::pin!(writer, reader);
            let mut writer_done = false;
            loop {
                tokio::select! {
                    written = &mut writer, if !writer_done => match written {
                        Ok(()) => writer_done = true,
                        Err(failure) => break Err(failure),
                    },
                    read = &mut reader => break read,
                }
            }
        };
        match outcome {
            Ok(()) => {
                debug!(conn = self.id, leader = self.leader, addr = %self.addr,
                    "proxy: closed idle connection");
            }
            Err(Failure(why)) => {
                warn!(conn = self.id, leader = self.leader, addr = %self.addr,
                    "proxy: connection failed: {why}");
                // The written commands' failures are counted before the queue closes (so
                // the next forward opens a new connection): a caller counting failures sees
                // every earlier one before a later command can reach a new connection.
                let why = format!("{}: {why}", self.addr);
                let mut written: Vec<ReplyTo> =
                    next.take().into_iter().filter_map(Waiter::client).collect();
                waiting.close();
                while let Some(waiter) = waiting.recv().await {
                    written.extend(waiter.client());
                }
                written.iter().for_each(ReplyTo::count_failure);
                queue.close();
                for reply in written {
                    reply.send_failure(ProxyError::Indeterminate(why.clone()));
                }
                while let Some(request) = queue.recv().await {
                    request.reply.fail(ProxyError::Unreachable(why.clone()));
                }
            }
        }
    }

    async fn connect(&self) -> Result<TcpStream, String> {
        let timeout = self.settings.connect_timeout;
        match tokio::time::timeout(timeout, TcpStream::connect(self.addr.as_str())).await {
            Err(_) => Err(format!(
                "connect to {} timed out after {timeout:?}",
                self.addr
            )),
            Ok(Err(error)) => Err(format!("connect to {}: {error}", self.addr)),
            Ok(Ok(stream)) => {
                if let Err(error) = stream.set_nodelay(true) {
                    debug!(conn = self.id, "proxy: TCP_NODELAY not set: {error}");
                }
                Ok(stream)
            }
        }
    }
}

/// Writes queued commands, coalesced, after the handshake; returns when the pool dropped the
/// connection's queue and everything queued is written.
///
/// Every waiter is queued for the reader before its bytes are written, so a failed write
/// leaves each written (or partly written) command with the reader, to be failed as
/// indeterminate.
async fn write_loop<W: AsyncWrite + Unpin>(
    queue: &mut mpsc::UnboundedReceiver<Request>,
    waiting: mpsc::UnboundedSender<Waiter>,
    out: &mut W,
    permits: &Semaphore,
    handshake: Vec<(Vec<Bytes>, &'static str)>,
) -> Result<(), Failure> {
    let reader_gone = |_| Failure("reply reader stopped".into());
    let mut batch = CommandBatch::default();
    // The handshake is written together with the first commands: no extra round trip.
    for (args, step) in handshake {
        batch.push_command(&args);
        waiting.send(Waiter::Handshake(step)).map_err(reader_gone)?;
    }
    loop {
        let permit = permits
            .acquire()
            .await
            .map_err(|_| Failure("in-flight limiter closed".into()))?;
        let Some(request) = queue.recv().await else {
            if !batch.is_empty() {
                batch.write_to(out).await?;
                out.flush().await?;
            }
            return Ok(());
        };
        permit.forget();
        batch.push_command(&request.args);
        waiting
            .send(Waiter::Client(request.reply))
            .map_err(reader_gone)?;
        while batch.bytes < WRITE_BATCH_BYTES {
            let Ok(permit) = permits.try_acquire() else {
                break;
            };
            let Ok(request) = queue.try_recv() else {
                break;
            };
            permit.forget();
            batch.push_command(&request.args);
            waiting
                .send(Waiter::Client(request.reply))
                .map_err(reader_gone)?;
        }
        batch.write_to(out).await?;
    }
}

/// Reads replies and hands each to the waiter at the head of `waiting`, in order; returns
/// when the writer is done and every reply is in.
///
/// `next` holds a waiter taken from `waiting` whose reply has not arrived yet; it lives
/// outside so the caller can fail it if the connection breaks.
async fn read_loop<R: AsyncRead + Unpin>(
    mut input: R,
    waiting: &mut mpsc::UnboundedReceiver<Waiter>,
    next: &mut Option<Waiter>,
    permits: &Semaphore,
) -> Result<(), Failure> {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut scanner = ReplyScanner::default();
    loop {
        while let Some(end) = scanner.scan(&buf)? {
            let reply = buf.split_to(end).freeze();
            let waiter = match next.take() {
                Some(waiter) => waiter,
                None => waiting
                    .try_recv()
                    .map_err(|_| Failure("reply to no command".into()))?,
            };
            match waiter {
                Waiter::Handshake(step) => {
                    if matches!(reply.first(), Some(b'-' | b'!')) {
                        return Err(Failure(format!(
                            "{step} refused: {}",
                            String::from_utf8_lossy(reply.trim_ascii_end())
                        )));
                    }
                }
                Waiter::Client(sender) => {
                    permits.add_permits(1);
                    sender.answer(reply);
                }
            }
        }
        if buf.is_empty() && buf.capacity() > RETAINED_READ_CAPACITY {
            // Do not keep a huge reply's buffer for a connection that is mostly idle.
            buf = BytesMut::with_capacity(READ_CHUNK);
        }
        let wanted = scanner
            .needed()
            .saturating_sub(buf.len())
            .clamp(READ_CHUNK, MAX_READ_RESERVE);
        buf.reserve(wanted);
        let read = if next.is_none() {
            // No command is known to await a reply: wait for one, for the writer to finish,
            // or for the leader to close an idle connection.
            tokio::select! {
                waiter = waiting.recv() => match waiter {
                    Some(waiter) => {
                        *next = Some(waiter);
                        continue;
                    }
                    None => return Ok(()),
                },
                read = input.read_buf(&mut buf) => read?,
            }
        } else {
            input.read_buf(&mut buf).await?
        };
        if read == 0 {
            return Err(Failure("leader closed the connection".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::process::{Child, Command, Stdio};
    use std::time::Instant;

    use tokio::net::TcpListener;

    use super::*;
    use crate::resp::scan::samples::sample_replies;

    fn cmd(parts: &[&str]) -> Vec<Bytes> {
        parts
            .iter()
            .map(|part| Bytes::copy_from_slice(part.as_bytes()))
            .collect()
    }

    fn encoded(commands: &[Vec<Bytes>]) -> Vec<u8> {
        let mut batch = CommandBatch::default();
        commands.iter().for_each(|c| batch.push_command(c));
        batch.concatenated()
    }

    // ---------------------------------------------------------------- without a server

    #[test]
    fn forward_outside_a_runtime_is_unreachable() {
        let proxy = Proxy::new(None, 1);
        let target = LeaderTarget {
            id: 1,
            client_addr: "127.0.0.1:1".into(),
        };
        let reply =
            futures::executor::block_on(proxy.forward(&target, Protocol::Resp2, 1, cmd(&["PING"])));
        assert!(
            matches!(reply, Err(ProxyError::Unreachable(_))),
            "{reply:?}"
        );
    }

    #[tokio::test]
    async fn empty_commands_are_never_sent() {
        let proxy = Proxy::new(None, 1);
        let target = LeaderTarget {
            id: 1,
            client_addr: "127.0.0.1:1".into(),
        };
        let empty = Err(ProxyError::Unreachable("empty command, not sent".into()));
        let reply = proxy.forward(&target, Protocol::Resp2, 1, vec![]).await;
        assert_eq!(reply, empty);
        let replies = proxy
            .forward_many(&target, Protocol::Resp2, 1, vec![cmd(&["PING"]), vec![]])
            .await;
        assert_eq!(replies, vec![empty.clone(), empty]);
    }

    #[tokio::test]
    async fn nothing_listening_is_unreachable() {
        let port = free_port();
        let proxy = Proxy::new(None, 2);
        let target = LeaderTarget {
            id: 1,
            client_addr: format!("127.0.0.1:{port}"),
        };
        let first = proxy.forward(&target, Protocol::Resp2, 1, cmd(&["PING"]));
        let second = proxy.forward(&target, Protocol::Resp2, 1, cmd(&["PING"]));
        assert!(matches!(first.await, Err(ProxyError::Unreachable(_))));
        assert!(matches!(second.await, Err(ProxyError::Unreachable(_))));
    }

    // ---------------------------------------------------------------- a scripted fake leader

    async fn fake_leader() -> (TcpListener, LeaderTarget) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let target = LeaderTarget {
            id: 7,
            client_addr: addr.to_string(),
        };
        (listener, target)
    }

    /// Reads exactly `expected.len()` bytes (within 5 s) and checks them.
    async fn expect_bytes(stream: &mut TcpStream, expected: &[u8]) {
        let mut got = vec![0; expected.len()];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut got))
            .await
            .expect("the proxy wrote everything without waiting for a reply")
            .expect("read");
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected)
        );
    }

    /// Writes `bytes` one byte at a time, so replies arrive split everywhere.
    async fn dribble(stream: &mut TcpStream, bytes: &[u8]) {
        for byte in bytes {
            stream.write_all(&[*byte]).await.expect("write");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn handshake_is_pipelined_with_the_first_commands() {
        let (listener, target) = fake_leader().await;
        let proxy = Proxy::new(Some("secret".into()), 1);
        // Both queued before anything is awaited.
        let set = proxy.forward(&target, Protocol::Resp3, 5, cmd(&["SET", "a", "1"]));
        let get = proxy.forward(&target, Protocol::Resp3, 5, cmd(&["GET", "a"]));
        let (mut stream, _) = listener.accept().await.expect("accept");
        let expected = encoded(&[
            cmd(&["AUTH", "secret"]),
            cmd(&["REDRAFT.PROXIED"]),
            cmd(&["HELLO", "3"]),
            cmd(&["SET", "a", "1"]),
            cmd(&["GET", "a"]),
        ]);
        expect_bytes(&mut stream, &expected).await;
        dribble(
            &mut stream,
            b"+OK\r\n+OK\r\n%1\r\n$5\r\nproto\r\n:3\r\n+OK\r\n$1\r\n1\r\n",
        )
        .await;
        assert_eq!(set.await, Ok(Bytes::from_static(b"+OK\r\n")));
        assert_eq!(get.await, Ok(Bytes::from_static(b"$1\r\n1\r\n")));

        // Later commands need no handshake; odd frames come back whole, split anywhere.
        let replies = sample_replies();
        let pending: Vec<_> = (0..replies.len())
            .map(|i| proxy.forward(&target, Protocol::Resp3, 5, cmd(&["ECHO", &i.to_string()])))
            .collect();
        let expected: Vec<Vec<Bytes>> = (0..replies.len())
            .map(|i| cmd(&["ECHO", &i.to_string()]))
            .collect();
        expect_bytes(&mut stream, &encoded(&expected)).await;
        let stream_bytes: Vec<u8> = replies.iter().flat_map(|r| r.to_vec()).collect();
        dribble(&mut stream, &stream_bytes).await;
        for (future, reply) in pending.into_iter().zip(replies) {
            assert_eq!(future.await, Ok(reply));
        }
        assert!(
            listener_accepts_nothing(&listener).await,
            "one connection only"
        );
    }

    async fn listener_accepts_nothing(listener: &TcpListener) -> bool {
        tokio::time::timeout(Duration::from_millis(100), listener.accept())
            .await
            .is_err()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn handshake_error_fails_the_connection_and_the_next_forward_reconnects() {
        let (listener, target) = fake_leader().await;
        let proxy = Proxy::new(None, 1);
        let first = proxy.forward(&target, Protocol::Resp2, 1, cmd(&["INCR", "x"]));
        let (mut stream, _) = listener.accept().await.expect("accept");
        expect_bytes(
            &mut stream,
            &encoded(&[cmd(&["REDRAFT.PROXIED"]), cmd(&["INCR", "x"])]),
        )
        .await;
        stream
            .write_all(b"-ERR unknown command 'REDRAFT.PROXIED'\r\n:1\r\n")
            .await
            .expect("write");
        let error = first.await;
        assert!(
            matches!(&error, Err(ProxyError::Indeterminate(why)) if why.contains("unknown command")),
            "{error:?}"
        );

        let second = proxy.forward(&target, Protocol::Resp2, 1, cmd(&["PING"]));
        let (mut stream, _) = listener.accept().await.expect("reconnect");
        expect_bytes(
            &mut stream,
            &encoded(&[cmd(&["REDRAFT.PROXIED"]), cmd(&["PING"])]),
        )
        .await;
        stream.write_all(b"+OK\r\n+PONG\r\n").await.expect("write");
        assert_eq!(second.await, Ok(Bytes::from_static(b"+PONG\r\n")));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn garbage_from_the_leader_fails_in_flight_commands() {
        let (listener, target) = fake_leader().await;
        let proxy = Proxy::new(None, 1).with_handshake_command(None);
        let first = proxy.forward(&target, Protocol::Resp2, 1, cmd(&["GET", "a"]));
        let second = proxy.forward(&target, Protocol::Resp2, 1, cmd(&["GET", "b"]));
        let (mut stream, _) = listener.accept().await.expect("accept");
        expect_bytes(
            &mut stream,
            &encoded(&[cmd(&["GET", "a"]), cmd(&["GET", "b"])]),
        )
        .await;
        stream
            .write_all(b"$1\r\na\r\n@bad\r\n")
            .await
            .expect("write");
        assert_eq!(first.await, Ok(Bytes::from_static(b"$1\r\na\r\n")));
        assert!(matches!(second.await, Err(ProxyError::Indeterminate(_))));
        // A reply nobody asked for is garbage too.
        let third = proxy.forward(&target, Protocol::Resp2, 1, cmd(&["PING"]));
        let (mut stream, _) = listener.accept().await.expect("accept");
        expect_bytes(&mut stream, &encoded(&[cmd(&["PING"])])).await;
        stream
            .write_all(b"+PONG\r\n+EXTRA\r\n")
            .await
            .expect("write");
        assert_eq!(third.await, Ok(Bytes::from_static(b"+PONG\r\n")));
    }

    // ---------------------------------------------------------------- a real redis-server

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port()
    }

    /// A `redis-server` child process on a loopback port, killed when dropped.
    struct RedisServer {
        child: Option<Child>,
        port: u16,
    }

    impl RedisServer {
        fn start(extra: &[&str]) -> RedisServer {
            // A free port can be taken by a parallel test before redis-server binds it: then
            // the connection reaches the other test's server. Retry until the server answering
            // is ours (its INFO names our pid).
            for _ in 0..10 {
                let mut server = RedisServer::start_on(free_port(), extra);
                if server.answers_as_itself() {
                    return server;
                }
                server.kill();
            }
            panic!("could not start a redis-server of our own on a free port");
        }

        /// Whether the server on our port is our child process.
        fn answers_as_itself(&self) -> bool {
            use std::io::{Read, Write};
            let Some(child) = &self.child else {
                return false;
            };
            let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
                return false;
            };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            if stream.write_all(b"INFO server\r\n").is_err() {
                return false;
            }
            let mut reply = Vec::new();
            let mut chunk = [0u8; 4096];
            let wanted = format!("process_id:{}\r\n", child.id());
            while let Ok(n) = stream.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                reply.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&reply);
                // A server with requirepass cannot be asked; take it as ours.
                if text.contains(&wanted) || text.starts_with("-NOAUTH") {
                    return true;
                }
                if text.contains("process_id:") && text.contains("run_id:") {
                    return false;
                }
            }
            false
        }

        fn start_on(port: u16, extra: &[&str]) -> RedisServer {
            let mut child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server (Redis 7) must be installed to run these tests");
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("redis-server on port {port} exited: {status}");
                }
                assert!(Instant::now() < deadline, "redis-server did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
            RedisServer {
                child: Some(child),
                port,
            }
        }

        fn target(&self, id: u64) -> LeaderTarget {
            LeaderTarget {
                id,
                client_addr: format!("127.0.0.1:{}", self.port),
            }
        }

        fn kill(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            self.kill();
        }
    }

    /// Sends `commands` on a fresh direct connection and returns their raw replies.
    async fn direct(
        port: u16,
        protocol: Protocol,
        password: Option<&str>,
        commands: &[Vec<Bytes>],
    ) -> Vec<Bytes> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("direct connection");
        let mut all = Vec::new();
        if let Some(password) = password {
            all.push(cmd(&["AUTH", password]));
        }
        if protocol == Protocol::Resp3 {
            all.push(cmd(&["HELLO", "3"]));
        }
        let skip = all.len();
        all.extend(commands.iter().cloned());
        stream.write_all(&encoded(&all)).await.expect("write");
        let mut scanner = ReplyScanner::default();
        let mut buf = BytesMut::new();
        let mut replies = Vec::new();
        while replies.len() < all.len() {
            while let Some(end) = scanner.scan(&buf).expect("valid replies") {
                replies.push(buf.split_to(end).freeze());
            }
            if replies.len() < all.len() {
                let read = stream.read_buf(&mut buf).await.expect("read");
                assert!(read > 0, "redis closed the direct connection");
            }
        }
        replies.split_off(skip)
    }

    /// How many clients `redis-server` has, not counting the connection asking.
    async fn other_clients(port: u16) -> usize {
        let list = direct(port, Protocol::Resp2, None, &[cmd(&["CLIENT", "LIST"])]).await;
        let text = String::from_utf8_lossy(&list[0]).into_owned();
        text.lines().filter(|line| line.contains("addr=")).count() - 1
    }

    fn plain_proxy(connections: usize) -> Proxy {
        Proxy::new(None, connections).with_handshake_command(None)
    }

    fn integer(n: usize) -> Bytes {
        Bytes::from(format!(":{n}\r\n"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn thousand_pipelined_incrs_come_back_in_order_on_one_connection() {
        let redis = RedisServer::start(&[]);
        let target = redis.target(1);
        let proxy = plain_proxy(4);
        let pending: Vec<_> = (0..1000)
            .map(|_| proxy.forward(&target, Protocol::Resp2, 42, cmd(&["INCR", "counter"])))
            .collect();
        for (i, future) in pending.into_iter().enumerate() {
            assert_eq!(future.await, Ok(integer(i + 1)));
        }
        assert_eq!(other_clients(redis.port).await, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn twenty_clients_share_the_pool_and_keep_their_order() {
        let redis = RedisServer::start(&[]);
        let target = redis.target(1);
        let proxy = Arc::new(plain_proxy(4));
        let tasks: Vec<_> = (0..20u64)
            .map(|client| {
                let proxy = Arc::clone(&proxy);
                let target = target.clone();
                tokio::spawn(async move {
                    let key = format!("client-{client}");
                    let pending: Vec<_> = (0..200)
                        .map(|_| {
                            proxy.forward(&target, Protocol::Resp2, client, cmd(&["INCR", &key]))
                        })
                        .collect();
                    for (i, future) in pending.into_iter().enumerate() {
                        assert_eq!(future.await, Ok(integer(i + 1)));
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("client task");
        }
        assert_eq!(other_clients(redis.port).await, 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn backpressure_keeps_order_with_a_tiny_in_flight_bound() {
        let redis = RedisServer::start(&[]);
        let target = redis.target(1);
        let proxy = plain_proxy(1).with_max_in_flight(3);
        let pending: Vec<_> = (0..500)
            .map(|_| proxy.forward(&target, Protocol::Resp2, 9, cmd(&["INCR", "bp"])))
            .collect();
        for (i, future) in pending.into_iter().enumerate() {
            assert_eq!(future.await, Ok(integer(i + 1)));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn resp3_connection_gets_resp3_nulls_and_resp2_gets_resp2_nulls() {
        let redis = RedisServer::start(&[]);
        let target = redis.target(1);
        let proxy = plain_proxy(2);
        let resp2 = proxy.forward(&target, Protocol::Resp2, 3, cmd(&["GET", "missing"]));
        let resp3 = proxy.forward(&target, Protocol::Resp3, 3, cmd(&["GET", "missing"]));
        let resp2_array =
            proxy.forward(&target, Protocol::Resp2, 3, cmd(&["BLPOP", "none", "0.01"]));
        assert_eq!(resp2.await, Ok(Bytes::from_static(b"$-1\r\n")));
        assert_eq!(resp3.await, Ok(Bytes::from_static(b"_\r\n")));
        assert_eq!(resp2_array.await, Ok(Bytes::from_static(b"*-1\r\n")));
        assert_eq!(other_clients(redis.port).await, 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_and_nested_replies_are_byte_exact() {
        let redis = RedisServer::start(&["--enable-debug-command", "yes"]);
        let target = redis.target(1);
        let proxy = plain_proxy(2);
        let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
        let mut set_big = cmd(&["SET", "big"]);
        set_big.push(Bytes::from(big.clone()));
        let setup = [
            set_big,
            cmd(&["HSET", "h", "f1", "v1", "f2", "v2"]),
            cmd(&["SADD", "s", "a", "b", "c"]),
            cmd(&["ZADD", "z", "1.5", "a", "2.25", "b"]),
        ];
        for command in &setup {
            let reply = proxy
                .forward(&target, Protocol::Resp2, 1, command.clone())
                .await;
            assert!(
                matches!(reply.as_deref(), Ok([b':' | b'+', ..])),
                "{reply:?}"
            );
        }
        let mut reads = vec![
            cmd(&["GET", "big"]),
            cmd(&["COMMAND", "INFO", "get", "set"]),
            cmd(&["COMMAND", "DOCS", "get"]),
            cmd(&["HGETALL", "h"]),
            cmd(&["SMEMBERS", "s"]),
            cmd(&["ZRANGE", "z", "0", "-1", "WITHSCORES"]),
            cmd(&["DEBUG", "PROTOCOL", "attrib"]),
            cmd(&["DEBUG", "PROTOCOL", "bignum"]),
            cmd(&["DEBUG", "PROTOCOL", "verbatim"]),
            cmd(&["DEBUG", "PROTOCOL", "map"]),
            cmd(&["DEBUG", "PROTOCOL", "set"]),
            cmd(&["DEBUG", "PROTOCOL", "true"]),
            cmd(&["DEBUG", "PROTOCOL", "double"]),
            cmd(&["DEBUG", "PROTOCOL", "null"]),
        ];
        for protocol in [Protocol::Resp2, Protocol::Resp3] {
            if protocol == Protocol::Resp3 {
                reads.push(cmd(&["DEBUG", "PROTOCOL", "push"]));
            }
            let expected = direct(redis.port, protocol, None, &reads).await;
            let pending: Vec<_> = reads
                .iter()
                .map(|command| proxy.forward(&target, protocol, 1, command.clone()))
                .collect();
            for ((future, expected), command) in pending.into_iter().zip(expected).zip(&reads) {
                assert_eq!(future.await, Ok(expected), "{protocol:?} {command:?}");
            }
        }
        let mut big_reply = b"$1048576\r\n".to_vec();
        big_reply.extend_from_slice(&big);
        big_reply.extend_from_slice(b"\r\n");
        let reply = proxy
            .forward(&target, Protocol::Resp3, 1, cmd(&["GET", "big"]))
            .await;
        assert_eq!(reply, Ok(Bytes::from(big_reply)));
        // HELLO's map (its `id` differs per connection, so not compared with a direct one).
        let hello = proxy
            .forward(&target, Protocol::Resp3, 1, cmd(&["HELLO", "3"]))
            .await
            .expect("HELLO reply");
        assert!(
            hello.starts_with(b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n"),
            "{hello:?}"
        );
        assert!(hello.ends_with(b"$7\r\nmodules\r\n*0\r\n"), "{hello:?}");
        // Redis 7 sends the push first, then the real reply: both are relayed together.
        let push = proxy
            .forward(
                &target,
                Protocol::Resp3,
                1,
                cmd(&["DEBUG", "PROTOCOL", "push"]),
            )
            .await
            .expect("push reply");
        assert!(push.starts_with(b">"), "{push:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leader_change_routes_new_commands_and_closes_old_connections_once_idle() {
        let old = RedisServer::start(&[]);
        let new = RedisServer::start(&[]);
        let proxy = plain_proxy(1);
        let set = proxy.forward(
            &old.target(1),
            Protocol::Resp2,
            1,
            cmd(&["SET", "k", "old"]),
        );
        assert_eq!(set.await, Ok(Bytes::from_static(b"+OK\r\n")));
        // In flight on the old leader when the target changes: still answered.
        let blocked = proxy.forward(
            &old.target(1),
            Protocol::Resp2,
            1,
            cmd(&["BLPOP", "q", "0.5"]),
        );
        let get = proxy.forward(&new.target(2), Protocol::Resp2, 1, cmd(&["GET", "k"]));
        assert_eq!(get.await, Ok(Bytes::from_static(b"$-1\r\n")));
        let incr = proxy.forward(&new.target(2), Protocol::Resp2, 1, cmd(&["INCR", "n"]));
        assert_eq!(incr.await, Ok(integer(1)));
        assert_eq!(blocked.await, Ok(Bytes::from_static(b"*-1\r\n")));
        let deadline = Instant::now() + Duration::from_secs(5);
        while other_clients(old.port).await > 0 {
            assert!(
                Instant::now() < deadline,
                "old leader connection not closed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(other_clients(new.port).await, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn killed_leader_fails_in_flight_commands_and_restart_reconnects() {
        let mut redis = RedisServer::start(&[]);
        let target = redis.target(1);
        let proxy = plain_proxy(1);
        assert_eq!(
            proxy
                .forward(&target, Protocol::Resp2, 1, cmd(&["PING"]))
                .await,
            Ok(Bytes::from_static(b"+PONG\r\n"))
        );
        // Blocks forever; the INCR behind it waits for it.
        let blocked = proxy.forward(&target, Protocol::Resp2, 1, cmd(&["BLPOP", "never", "0"]));
        let behind = proxy.forward(&target, Protocol::Resp2, 1, cmd(&["INCR", "x"]));
        tokio::time::sleep(Duration::from_millis(200)).await;
        redis.kill();
        assert!(matches!(blocked.await, Err(ProxyError::Indeterminate(_))));
        assert!(matches!(behind.await, Err(ProxyError::Indeterminate(_))));
        let down = proxy
            .forward(&target, Protocol::Resp2, 1, cmd(&["PING"]))
            .await;
        assert!(matches!(down, Err(ProxyError::Unreachable(_))), "{down:?}");

        let restarted = RedisServer::start_on(redis.port, &[]);
        let up = proxy.forward(&restarted.target(1), Protocol::Resp2, 1, cmd(&["PING"]));
        assert_eq!(up.await, Ok(Bytes::from_static(b"+PONG\r\n")));

        // An idle connection whose leader dies is noticed before the next command.
        let mut restarted = restarted;
        restarted.kill();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let again = RedisServer::start_on(redis.port, &[]);
        let up = proxy.forward(&again.target(1), Protocol::Resp2, 1, cmd(&["PING"]));
        assert_eq!(up.await, Ok(Bytes::from_static(b"+PONG\r\n")));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn auth_with_requirepass() {
        let redis = RedisServer::start(&["--requirepass", "s3cret"]);
        let target = redis.target(1);

        let proxy = Proxy::new(Some("s3cret".into()), 1).with_handshake_command(None);
        for protocol in [Protocol::Resp2, Protocol::Resp3] {
            let set = proxy.forward(&target, protocol, 1, cmd(&["SET", "k", "v"]));
            let get = proxy.forward(&target, protocol, 1, cmd(&["GET", "k"]));
            assert_eq!(set.await, Ok(Bytes::from_static(b"+OK\r\n")));
            assert_eq!(get.await, Ok(Bytes::from_static(b"$1\r\nv\r\n")));
        }

        // No password: the leader's refusal is relayed as it is.
        let anonymous = plain_proxy(1);
        let reply = anonymous
            .forward(&target, Protocol::Resp2, 1, cmd(&["GET", "k"]))
            .await;
        assert_eq!(
            reply,
            Ok(Bytes::from_static(b"-NOAUTH Authentication required.\r\n"))
        );

        // A wrong password fails the connection.
        let wrong = Proxy::new(Some("nope".into()), 1).with_handshake_command(None);
        let reply = wrong
            .forward(&target, Protocol::Resp2, 1, cmd(&["GET", "k"]))
            .await;
        assert!(
            matches!(&reply, Err(ProxyError::Indeterminate(why)) if why.contains("AUTH refused")),
            "{reply:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forward_many_keeps_a_transaction_whole_on_a_shared_connection() {
        let redis = RedisServer::start(&[]);
        let target = redis.target(1);
        let proxy = Arc::new(plain_proxy(1));
        let noise = {
            let proxy = Arc::clone(&proxy);
            let target = target.clone();
            tokio::spawn(async move {
                for _ in 0..200 {
                    let reply = proxy.forward(&target, Protocol::Resp2, 2, cmd(&["INCR", "t"]));
                    assert!(matches!(reply.await.as_deref(), Ok([b':', ..])));
                }
            })
        };
        for _ in 0..50 {
            let replies = proxy
                .forward_many(
                    &target,
                    Protocol::Resp2,
                    1,
                    vec![
                        cmd(&["MULTI"]),
                        cmd(&["SET", "t", "0"]),
                        cmd(&["INCR", "t"]),
                        cmd(&["INCR", "t"]),
                        cmd(&["EXEC"]),
                    ],
                )
                .await;
            let replies: Vec<Bytes> = replies.into_iter().map(|r| r.expect("reply")).collect();
            assert_eq!(replies[0], Bytes::from_static(b"+OK\r\n"));
            assert_eq!(
                replies[4],
                Bytes::from_static(b"*3\r\n+OK\r\n:1\r\n:2\r\n"),
                "nothing ran inside the transaction"
            );
            tokio::task::yield_now().await;
        }
        noise.await.expect("noise task");
    }
}
