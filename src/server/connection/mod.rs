//! One client connection: read bytes, parse commands, dispatch them, write replies in order.
//! The connection's own commands (AUTH, HELLO, CLIENT) are in `client`, MULTI/EXEC in
//! `transaction`; where a keyspace command runs is decided in `server::submit`.
//!
//! # Pipelining and order
//! Every parsed command is dispatched at once and its reply future joins an ordered queue, so a
//! connection has many requests in flight and its replies leave in request order. Writes are
//! queued to the node in request order, and raft applies them in that order. A read must not
//! overtake an earlier write of the same connection, nor a write an earlier read, so dispatch
//! pauses at such a switch until the in-flight commands of the other kind have answered: runs of
//! reads, and runs of writes, stay fully pipelined.
//!
//! # Memory bounds
//! A connection stops dispatching, and so stops reading, while it has `IN_FLIGHT_MAX`
//! commands in flight, or `DATA_IN_FLIGHT_MAX` commands whose reply can carry stored data
//! (reads, `GETDEL`, `EXEC`…), and while a write of its replies has not completed; replies are
//! encoded into the output only up to `OUTPUT_FLUSH_BYTES` (plus one reply) per write. The
//! node builds a reply in full as soon as the command runs, whether or not the client reads:
//! without the data bound, a client that pipelined `GET` of a 1 MiB value and never read made
//! the server hold one such reply per in-flight command (up to 16 GiB); now it holds at most
//! `DATA_IN_FLIGHT_MAX` of them. Small-reply commands (`INCR`, `SET`…) keep the full pipelining
//! depth. The bound is per connection and in replies, not bytes: `DATA_IN_FLIGHT_MAX` times the
//! largest reply (an `MGET` of many large values, an `EXEC`) is the worst case.
//!
//! # Errors
//! A protocol error is answered (after the replies of the commands before it) with Redis's text,
//! and then the connection closes, as Redis does. Every other error is a reply and the
//! connection stays open.

mod client;
mod pubsub;
mod transaction;

use client::members_reply;
use transaction::Transaction;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use std::future::Future;

use crate::cluster::topology;
use crate::command::{self, Access, Command};
use crate::error::Error;
use crate::raft::Request;
use crate::redis::table;
use crate::resp::{ParserLimits, Protocol, Reply, RequestParser};
use crate::server::blocking::{self, BlockingCall};
use crate::server::clients::ClientHandle;
use crate::server::router::{self, Mode, Route};
use crate::server::submit::{
    ResendGate, Submission, record_watch, revisions_args, revisions_of, submit, write_request,
};
use crate::server::{Server, ops};
use crate::store::Read;

/// Most commands in flight on one connection before it stops reading.
const IN_FLIGHT_MAX: usize = 16 * 1024;
/// Most commands in flight on one connection whose reply can carry stored data (see
/// [`may_return_data`]): this many replies of the largest size is what one connection that never
/// reads can make the server hold.
const DATA_IN_FLIGHT_MAX: usize = 64;
/// Size of each socket read.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Flush the output buffer once it holds this much, even if more replies are ready.
const OUTPUT_FLUSH_BYTES: usize = 256 * 1024;

/// Whether replies are sent (CLIENT REPLY).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReplyMode {
    On,
    Off,
    /// Set by CLIENT REPLY SKIP: that command's own reply is not sent.
    Skip,
    /// The command after CLIENT REPLY SKIP: its reply is not sent.
    SkipNext,
}

/// One reply waiting for its turn: its kind (for ordering), whether it counts against
/// [`DATA_IN_FLIGHT_MAX`], whether it is sent, the reply.
type InFlight = BoxFuture<'static, (Access, bool, bool, Reply)>;

/// Whether a command's reply can be as large as stored data: the keyspace commands whose
/// registry line says so (`store::commands::ReplySize`), and `EXEC`.
fn may_return_data(command: &Command) -> bool {
    match command {
        Command::Identified { command, .. } => may_return_data(command),
        Command::Keyspace { large_reply, .. } => *large_reply,
        Command::Transaction { .. } => true,
        _ => false,
    }
}

/// A connection's commands in flight, in request order, and what they hold.
#[derive(Default)]
struct Pipeline {
    /// Their replies, in request order.
    replies: FuturesOrdered<InFlight>,
    /// Keyspace reads in flight.
    reads: usize,
    /// Keyspace writes in flight.
    writes: usize,
    /// Replies in flight that can carry stored data.
    data: usize,
    /// A parsed command waiting for those in flight (see [`Session::must_wait`]).
    stalled: Option<Command>,
    /// The reply that closes the connection once every earlier reply is sent.
    closing: Option<Reply>,
    /// The stalled command waits for room in the node's queues (`node::QueueDepth`).
    waiting_for_room: bool,
}

impl Pipeline {
    fn is_full(&self) -> bool {
        self.replies.len() >= IN_FLIGHT_MAX
    }

    /// Whether more input may be read: nothing waits and the pipeline has room.
    fn can_take_more(&self) -> bool {
        self.closing.is_none() && self.stalled.is_none() && !self.is_full()
    }

    fn started(&mut self, access: Access, data: bool) {
        match access {
            Access::Read => self.reads += 1,
            Access::Write => self.writes += 1,
            Access::Local => {}
        }
        self.data += usize::from(data);
    }

    fn finished(&mut self, access: Access, data: bool) {
        match access {
            Access::Read => self.reads -= 1,
            Access::Write => self.writes -= 1,
            Access::Local => {}
        }
        self.data -= usize::from(data);
    }
}

/// Per-connection state.
struct Session {
    server: Arc<Server>,
    client: Arc<ClientHandle>,
    protocol: Protocol,
    authenticated: bool,
    reply_mode: ReplyMode,
    /// READONLY: reads may be served by this node even when it follows.
    readonly: bool,
    /// The connection comes from another node's proxy: never forward its commands again.
    proxied: bool,
    /// MULTI…EXEC in progress.
    multi: Option<Transaction>,
    /// WATCHed keys with their revisions; filled in when each WATCH's read answers.
    watched: Arc<std::sync::Mutex<Vec<(Bytes, u64)>>>,
    /// Applied index when this connection's last write completed (for WAIT).
    last_write_index: Arc<std::sync::atomic::AtomicU64>,
    /// The non-keyspace commands of the EXEC being dispatched (see [`Transaction::local`]).
    exec_local: Vec<(usize, Command)>,
    /// Order of this connection's keyspace commands across resends (see `server::submit`).
    gate: Arc<ResendGate>,
    /// The leader this connection's in-flight keyspace commands went to (this node's id when
    /// it led); a command for another leader waits until they are answered.
    route_in_flight: u64,
    /// A blocking pop of this connection is waiting (`server::blocking`): as on Redis, nothing
    /// after it runs until it is answered, and the connection closing ends the wait.
    blocking: Arc<std::sync::atomic::AtomicBool>,
    /// Pub/Sub subscriptions, once the connection subscribed to something.
    subscription: Option<crate::node::pubsub::Subscription>,
    /// Where its messages arrive, until the run loop takes it.
    deliveries: Option<Deliveries>,
}

/// A subscriber's queue of messages, and its inbox (which counts what is queued).
type Deliveries = (
    tokio::sync::mpsc::UnboundedReceiver<crate::node::pubsub::Delivery>,
    Arc<crate::node::pubsub::Inbox>,
);

/// The next message for the connection; never, while it has no subscriptions.
async fn next_delivery(
    deliveries: &mut Option<Deliveries>,
) -> Option<crate::node::pubsub::Delivery> {
    match deliveries {
        Some((queue, inbox)) => {
            let delivery = queue.recv().await?;
            inbox.taken(&delivery);
            Some(delivery)
        }
        None => std::future::pending().await,
    }
}

/// What dispatching one command produced.
enum Outcome {
    /// Answered already.
    Ready(Reply),
    /// Answered when the node answers.
    Pending(BoxFuture<'static, Reply>),
    /// Answer, then close the connection.
    Close(Reply),
}

fn pending(receiver: crate::node::Pending) -> Outcome {
    Outcome::Pending(
        async move {
            match receiver.await {
                Ok(Ok(reply)) => reply,
                Ok(Err(err)) => err.to_resp(),
                Err(_) => Error::Internal("request dropped".into()).to_resp(),
            }
        }
        .boxed(),
    )
}

/// Runs an administrative command in its own task; its reply keeps its place in the order.
fn admin(work: impl Future<Output = Result<Reply, Error>> + Send + 'static) -> Outcome {
    let task = tokio::spawn(work);
    Outcome::Pending(
        async move {
            match task.await {
                Ok(Ok(reply)) => reply,
                Ok(Err(err)) => err.to_resp(),
                Err(err) => Error::Internal(err.to_string()).to_resp(),
            }
        }
        .boxed(),
    )
}

/// Serves one accepted connection until it closes.
pub async fn serve(server: Arc<Server>, mut stream: TcpStream, client: Arc<ClientHandle>) {
    let _ = stream.set_nodelay(true);
    let mut session = Session {
        authenticated: server.config.requirepass.is_none(),
        server,
        client,
        protocol: Protocol::Resp2,
        reply_mode: ReplyMode::On,
        readonly: false,
        proxied: false,
        multi: None,
        watched: Arc::default(),
        last_write_index: Arc::default(),
        exec_local: Vec::new(),
        gate: Arc::default(),
        route_in_flight: 0,
        blocking: Arc::default(),
        subscription: None,
        deliveries: None,
    };
    if let Err(err) = session.run(&mut stream).await {
        tracing::debug!(client = session.client.id, error = %err, "connection ended with an error");
    }
    let _ = stream.shutdown().await;
}

impl Session {
    async fn run(&mut self, stream: &mut TcpStream) -> std::io::Result<()> {
        let (mut reader, mut writer) = stream.split();
        let mut parser = RequestParser::new(ParserLimits::default());
        let mut input = BytesMut::with_capacity(READ_CHUNK_BYTES);
        let mut output = BytesMut::with_capacity(16 * 1024);
        let mut pipeline = Pipeline::default();
        let mut eof = false;
        let client = self.client.clone();
        let queue_depth = self.server.node.queue_depth.clone();
        let mut deliveries: Option<Deliveries> = None;

        loop {
            self.dispatch_ready(&mut parser, &mut input, &mut pipeline);
            if let Some(fresh) = self.deliveries.take() {
                deliveries = Some(fresh);
            }
            // Messages wait for the replies already due, so a SUBSCRIBE is confirmed before
            // its first message (not for a blocked command, which may wait long).
            let can_deliver = pipeline.replies.is_empty() || self.blocking.load(Relaxed);
            if pipeline.replies.is_empty() {
                if let Some(reply) = pipeline.closing.take() {
                    self.encode(&reply, &mut output);
                    writer.write_all(&output).await?;
                    return Ok(());
                }
                if eof {
                    return Ok(());
                }
            }
            let can_read = !eof && pipeline.can_take_more();
            tokio::select! {
                Some(first) = pipeline.replies.next(), if !pipeline.replies.is_empty() => {
                    self.encode_ready(first, &mut pipeline, &mut output);
                    if !output.is_empty() {
                        writer.write_all(&output).await?;
                        self.server.stats.net_output_bytes.fetch_add(output.len() as u64, Relaxed);
                        output.clear();
                    }
                }
                read = reader.read_buf(&mut input), if can_read => {
                    let n = read?;
                    if n == 0 {
                        if self.blocking.load(Relaxed) {
                            // Gone while blocked: stop waiting, as Redis frees such a client.
                            return Ok(());
                        }
                        eof = true;
                    } else {
                        self.server.stats.net_input_bytes.fetch_add(n as u64, Relaxed);
                        if input.capacity() - input.len() < READ_CHUNK_BYTES / 4 {
                            input.reserve(READ_CHUNK_BYTES);
                        }
                    }
                }
                Some(delivery) = next_delivery(&mut deliveries), if can_deliver => {
                    if delivery == crate::node::pubsub::Delivery::Overflow {
                        tracing::warn!(
                            client = self.client.id,
                            "closing a subscriber that fell behind by more than the Pub/Sub \
                             output limit"
                        );
                        return Ok(());
                    }
                    self.encode(&delivery.to_reply(), &mut output);
                    while output.len() < OUTPUT_FLUSH_BYTES {
                        match next_delivery(&mut deliveries).now_or_never().flatten() {
                            Some(crate::node::pubsub::Delivery::Overflow) => return Ok(()),
                            Some(more) => self.encode(&more.to_reply(), &mut output),
                            None => break,
                        }
                    }
                    writer.write_all(&output).await?;
                    self.server.stats.net_output_bytes.fetch_add(output.len() as u64, Relaxed);
                    output.clear();
                }
                () = queue_depth.room(), if pipeline.waiting_for_room => {
                    pipeline.waiting_for_room = false;
                }
                _ = client.killed.notified() => return Ok(()),
            }
        }
    }

    /// Dispatches the complete commands `input` holds, in order, until one must wait for those
    /// in flight (it is kept as `pipeline.stalled`), the pipeline is full, or the connection
    /// is closing.
    fn dispatch_ready(
        &mut self,
        parser: &mut RequestParser,
        input: &mut BytesMut,
        pipeline: &mut Pipeline,
    ) {
        while pipeline.closing.is_none() && !pipeline.is_full() {
            let command = match pipeline.stalled.take() {
                Some(command) => command,
                None => match parser.next_command(input, self.authenticated) {
                    Ok(Some(args)) => {
                        self.server.stats.commands_processed.fetch_add(1, Relaxed);
                        match self.prepare(args) {
                            Ok(command) => command,
                            Err(reply) => {
                                self.push(pipeline, Access::Local, false, Outcome::Ready(reply));
                                continue;
                            }
                        }
                    }
                    Ok(None) => return,
                    Err(err) => {
                        pipeline.closing = Some(Reply::error(format!("ERR {err}")));
                        return;
                    }
                },
            };
            let access = command.access();
            let data = may_return_data(&command);
            if self.must_wait(pipeline, access, data) {
                pipeline.stalled = Some(command);
                return;
            }
            if access != Access::Local && !self.server.node.queue_depth.has_room() {
                pipeline.stalled = Some(command);
                pipeline.waiting_for_room = true;
                return;
            }
            pipeline.started(access, data);
            let outcome = match access {
                Access::Local => self.dispatch(command),
                Access::Read | Access::Write => self.route(command, access),
            };
            let outcome = self.with_local_replies(outcome);
            self.push(pipeline, access, data, outcome);
        }
    }

    /// Whether a command must wait for those in flight: a read must not overtake a write nor a
    /// write a read; no keyspace command goes out while one awaits a resend or while the
    /// leader differs from the one those in flight went to; and at most
    /// [`DATA_IN_FLIGHT_MAX`] replies that can carry stored data are pending.
    fn must_wait(&mut self, pipeline: &Pipeline, access: Access, data: bool) -> bool {
        let keyspace_in_flight = pipeline.reads + pipeline.writes;
        let leader = self.server.node.leader_hint.leader_id();
        let order = match access {
            Access::Read => pipeline.writes > 0,
            Access::Write => pipeline.reads > 0,
            Access::Local => false,
        };
        let rerouting = access != Access::Local
            && keyspace_in_flight > 0
            && (self.gate.resending() || self.route_in_flight != leader);
        if access != Access::Local && keyspace_in_flight == 0 {
            self.gate.reset_if_idle();
            self.route_in_flight = leader;
        }
        order
            || rerouting
            || (data && pipeline.data >= DATA_IN_FLIGHT_MAX)
            || self.blocking.load(Relaxed)
    }

    /// Encodes `first` and the replies ready after it, until the output holds
    /// [`OUTPUT_FLUSH_BYTES`]; the rest stay queued until this output is written.
    fn encode_ready(
        &mut self,
        first: (Access, bool, bool, Reply),
        pipeline: &mut Pipeline,
        output: &mut BytesMut,
    ) {
        let mut next = Some(first);
        while let Some((access, data, send, reply)) = next.take() {
            pipeline.finished(access, data);
            if reply.is_error() {
                self.server.stats.error_replies.fetch_add(1, Relaxed);
            }
            if send {
                self.encode(&reply, output);
            }
            if output.len() < OUTPUT_FLUSH_BYTES {
                next = pipeline.replies.next().now_or_never().flatten();
            }
        }
    }

    fn encode(&self, reply: &Reply, output: &mut BytesMut) {
        reply.encode(self.protocol, output);
    }

    /// Queues an outcome's reply behind the earlier ones.
    fn push(&mut self, pipeline: &mut Pipeline, access: Access, data: bool, outcome: Outcome) {
        let send = match self.reply_mode {
            ReplyMode::On => true,
            ReplyMode::Off => false,
            ReplyMode::Skip => {
                self.reply_mode = ReplyMode::SkipNext;
                false
            }
            ReplyMode::SkipNext => {
                self.reply_mode = ReplyMode::On;
                false
            }
        };
        let reply = match outcome {
            Outcome::Ready(reply) => futures::future::ready(reply).boxed(),
            Outcome::Pending(future) => future,
            Outcome::Close(reply) => {
                pipeline.closing = Some(reply);
                return;
            }
        };
        pipeline
            .replies
            .push_back(async move { (access, data, send, reply.await) }.boxed());
    }

    /// A write's reply that also records, once it succeeds, how far this node had applied
    /// (at least the write's own index): WAIT waits for followers to reach it.
    fn track_write(&self, receiver: crate::node::Pending) -> Outcome {
        let node = self.server.node.clone();
        let last = self.last_write_index.clone();
        Outcome::Pending(
            async move {
                match receiver.await {
                    Ok(Ok(reply)) => {
                        last.fetch_max(node.applied_index(), Relaxed);
                        reply
                    }
                    Ok(Err(err)) => err.to_resp(),
                    Err(_) => Error::Internal("request dropped".into()).to_resp(),
                }
            }
            .boxed(),
        )
    }

    /// Answers a server command (see `server::ops`).
    fn server_op(&mut self, name: &str, args: Vec<Bytes>) -> Outcome {
        let node = self.server.node.clone();
        match name {
            "save" => admin(async move { ops::save(&node).await }),
            "bgsave" => admin(async move { ops::bgsave(&node).await }),
            "wait" => {
                let (Ok(wanted), Ok(timeout)) =
                    (command::int_arg(&args[1]), command::int_arg(&args[2]))
                else {
                    return Outcome::Ready(Reply::error(command::NOT_AN_INTEGER));
                };
                if timeout < 0 {
                    return Outcome::Ready(Reply::error("ERR timeout is negative"));
                }
                if !node.is_leader() {
                    // Followers forward WAIT like a keyspace command; the leader counts.
                    return self.route(
                        Command::Keyspace {
                            args,
                            write: false,
                            key: None,
                            large_reply: false,
                        },
                        Access::Read,
                    );
                }
                let index = self.last_write_index.load(Relaxed);
                admin(async move { Ok(ops::wait(&node, index, wanted, timeout).await) })
            }
            _ => Outcome::Ready(
                ops::answer(name, &args, self.server.last_save_secs())
                    .unwrap_or_else(|| table::unknown_command_error(&args)),
            ),
        }
    }

    /// Runs a keyspace command where `server::router` sends it: on this node, through
    /// `server::submit` (which routes again at every attempt), as a follower read, or not at
    /// all (the refusal is the reply).
    fn route(&mut self, command: Command, access: Access) -> Outcome {
        let node = &self.server.node;
        let mode = Mode {
            authenticated: self.authenticated,
            proxied: self.proxied,
            readonly: self.readonly,
            follower_mode: self.server.config.follower_mode,
            removed: node.removed(),
        };
        match router::route_on(node, access, command.routing_key(), mode) {
            Route::Refuse(reply) => return Outcome::Ready(reply),
            // A command from another node's proxy runs here with the id it carries.
            Route::Here if self.proxied => return self.run_here(command),
            Route::FollowerRead => {
                if let Command::Keyspace { args, .. } = command {
                    return pending(node.follower_read(Read { args }));
                }
            }
            Route::Here | Route::Proxy { .. } | Route::Moved { .. } | Route::WaitForLeader => {}
        }
        let submission = self.submission();
        if !self.proxied
            && let Some(call) = BlockingCall::of(&command)
        {
            return self.block(submission, command, call);
        }
        Outcome::Pending(submit(submission, command).boxed())
    }

    /// What submitting one more command of this connection needs.
    fn submission(&self) -> Submission {
        Submission {
            server: self.server.clone(),
            protocol: self.protocol,
            client_id: self.client.id,
            gate: self.gate.clone(),
            ticket: self.gate.ticket(),
            watched: self.watched.clone(),
            last_write_index: self.last_write_index.clone(),
        }
    }

    /// A blocking pop: sent once like any write; when it finds nothing, it waits at this node
    /// (`server::blocking`), sent again whenever a key may have filled, until its timeout.
    fn block(&mut self, first: Submission, command: Command, call: BlockingCall) -> Outcome {
        let server = self.server.clone();
        let (protocol, client_id) = (self.protocol, self.client.id);
        let (gate, watched, last_write_index) = (
            self.gate.clone(),
            self.watched.clone(),
            self.last_write_index.clone(),
        );
        let blocking = self.blocking.clone();
        blocking.store(true, Relaxed);
        Outcome::Pending(
            async move {
                let reply = submit(first, command).await;
                let reply = if blocking::found_nothing(&reply) {
                    let attempt = |command| {
                        let submission = Submission {
                            server: server.clone(),
                            protocol,
                            client_id,
                            gate: gate.clone(),
                            ticket: gate.ticket(),
                            watched: watched.clone(),
                            last_write_index: last_write_index.clone(),
                        };
                        submit(submission, command)
                    };
                    blocking::wait(&server.node, &server.blocked, call, attempt).await
                } else {
                    reply
                };
                blocking.store(false, Relaxed);
                reply
            }
            .boxed(),
        )
    }

    /// Runs a keyspace command, WATCH or transaction on this node (the leader).
    fn run_here(&mut self, command: Command) -> Outcome {
        let node = &self.server.node;
        match command {
            Command::Watch(keys) => {
                let pending = node.read(Read {
                    args: revisions_args(&keys),
                });
                let watched = self.watched.clone();
                Outcome::Pending(
                    async move {
                        let revisions = match pending.await {
                            Ok(Ok(reply)) => revisions_of(reply),
                            Ok(Err(err)) => return err.to_resp(),
                            Err(_) => None,
                        };
                        record_watch(&watched, keys, revisions)
                    }
                    .boxed(),
                )
            }
            Command::Transaction { commands, watched } => {
                self.track_write(node.propose(Request::Exec {
                    commands,
                    watched,
                    now_ms: crate::clock::wall_clock_ms(),
                }))
            }
            Command::Identified {
                id,
                answered_below,
                command,
            } => match write_request(&command, crate::clock::wall_clock_ms()) {
                Some(request) => self.track_write(node.propose(Request::Identified {
                    id,
                    answered_below,
                    request: Box::new(request),
                })),
                None => self.run_here(*command),
            },
            other => self.dispatch(other),
        }
    }

    /// Executes or queues one command.
    fn dispatch(&mut self, command: Command) -> Outcome {
        if !self.authenticated && !command.allowed_before_auth() {
            return Outcome::Ready(Error::NoAuth.to_resp());
        }
        let node = &self.server.node;
        match command {
            Command::Keyspace {
                args, write: true, ..
            } => self.track_write(node.write(args)),
            Command::Keyspace { args, .. } => pending(node.read(Read { args })),
            // RESP2's subscribed mode answers PING as a message.
            Command::Ping(message) if self.in_subscribed_mode() => {
                Outcome::Ready(Reply::Array(vec![
                    Reply::bulk_str("pong"),
                    Reply::Bulk(message.unwrap_or_default()),
                ]))
            }
            Command::Ping(None) => Outcome::Ready(Reply::simple("PONG")),
            Command::Ping(Some(message)) | Command::Echo(message) => {
                Outcome::Ready(Reply::Bulk(message))
            }
            Command::Select(0) => Outcome::Ready(Reply::ok()),
            Command::Select(_) => Outcome::Ready(Reply::error("ERR DB index is out of range")),
            Command::Quit => Outcome::Close(Reply::ok()),
            Command::Reset => {
                self.drop_subscriptions();
                self.protocol = Protocol::Resp2;
                self.client.set_resp(2);
                self.client.set_name(None);
                self.reply_mode = ReplyMode::On;
                self.authenticated = self.server.config.requirepass.is_none();
                Outcome::Ready(Reply::simple("RESET"))
            }
            Command::Auth { username, password } => {
                Outcome::Ready(self.auth(username.as_deref(), &password))
            }
            Command::Hello {
                protover,
                auth,
                setname,
            } => Outcome::Ready(self.hello(protover, auth, setname)),
            Command::Client { subcommand, args } => {
                Outcome::Ready(self.client_command(&subcommand, &args))
            }
            Command::Config { subcommand, args } => {
                Outcome::Ready(self.server.config_command(&subcommand, &args))
            }
            Command::CommandInfo(args) => Outcome::Ready(table::command_reply(&args)),
            Command::Info(sections) => {
                let text = self.server.info(&sections);
                Outcome::Ready(match self.protocol {
                    Protocol::Resp2 => Reply::Bulk(Bytes::from(text)),
                    Protocol::Resp3 => Reply::Verbatim(Bytes::from(text)),
                })
            }
            Command::PubSub { name, args } => self.pubsub_command(name, args),
            Command::Cluster(args) => Outcome::Ready(topology::cluster_command(
                &self.server.node.cluster_view(),
                &args,
            )),
            Command::ReadOnly => {
                self.readonly = true;
                Outcome::Ready(Reply::ok())
            }
            Command::ReadWrite => {
                self.readonly = false;
                Outcome::Ready(Reply::ok())
            }
            Command::Asking => Outcome::Ready(Reply::ok()),
            Command::ServerOp { name, args } => self.server_op(&name, args),
            command @ (Command::Watch(_)
            | Command::Transaction { .. }
            | Command::Identified { .. }) => self.run_here(command),
            // Handled by `transaction_step` before dispatch.
            Command::Multi | Command::Exec | Command::Discard | Command::Unwatch => {
                Outcome::Ready(Reply::ok())
            }
            Command::Proxied => {
                self.proxied = true;
                Outcome::Ready(Reply::ok())
            }
            Command::RaftMembers => Outcome::Ready(members_reply(&self.server.node.cluster_view())),
            Command::RaftAddNode { id, member } => {
                let node = self.server.node.clone();
                admin(async move { node.add_member(id, member).await.map(|()| Reply::ok()) })
            }
            Command::RaftRemoveNode(id) => {
                let node = self.server.node.clone();
                admin(async move { node.remove_member(id).await.map(|()| Reply::ok()) })
            }
            Command::RaftTransfer(to) => {
                let node = self.server.node.clone();
                admin(async move {
                    node.transfer_leadership(to)
                        .await
                        .map(|id| Reply::Integer(id as i64))
                })
            }
            Command::Time => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                Outcome::Ready(Reply::Array(vec![
                    Reply::bulk_str(&now.as_secs().to_string()),
                    Reply::bulk_str(&now.subsec_micros().to_string()),
                ]))
            }
        }
    }
}
