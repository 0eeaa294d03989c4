//! Pub/Sub: this node's subscribers, and delivering what is published on any node to the
//! subscribers of every node.
//!
//! Messages are not state: they never go through the log. A PUBLISH is delivered to this
//! node's subscribers at once and handed to one forwarder per other member, which sends what
//! is queued for its peer in batches over one kept peer connection ([`AppRequest::Publish`])
//! and waits for each batch's answer before the next: so the messages of one publisher reach
//! every node in the order they were published, and each subscriber at most once (a batch
//! that fails is not sent again). PUBLISH answers the number of subscribers reached on every
//! node that answered within [`FORWARD_TIMEOUT`].
//!
//! A subscriber is a connection's [`Subscription`]: its channels, patterns and shard channels,
//! registered in the [`Hub`] until it is dropped, and an unbounded queue of [`Delivery`]s the
//! connection writes out. A subscriber whose queue holds more than [`QUEUED_BYTES_MAX`]
//! (Redis's `client-output-buffer-limit pubsub 32mb`) is told to close.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use crate::raft::transport::{AppRequest, AppResponse, PeerNetwork, Published};
use crate::redis::glob::glob_match;
use crate::resp::Reply;

/// How long PUBLISH waits for another node to say how many subscribers it reached.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);
/// Most messages one forwarded batch carries.
const BATCH_MAX: usize = 1024;
/// Most messages queued for one peer; beyond it new ones are not sent there (a peer that is
/// down must not make this node hold everything published meanwhile).
const FORWARD_QUEUE_MAX: usize = 100_000;
/// Bytes queued for one subscriber before it is disconnected.
pub const QUEUED_BYTES_MAX: usize = 32 * 1024 * 1024;

/// What a subscriber receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A message on a subscribed channel.
    Message {
        /// The channel.
        channel: Bytes,
        /// The message.
        message: Bytes,
    },
    /// A message on a channel matching a subscribed pattern.
    Pattern {
        /// The pattern it matched.
        pattern: Bytes,
        /// The channel.
        channel: Bytes,
        /// The message.
        message: Bytes,
    },
    /// A message on a subscribed shard channel.
    Shard {
        /// The shard channel.
        channel: Bytes,
        /// The message.
        message: Bytes,
    },
    /// The subscriber fell too far behind and must close.
    Overflow,
}

impl Delivery {
    /// The push message a client sees (`message`, `pmessage` or `smessage`).
    pub fn to_reply(&self) -> Reply {
        let bulk = |b: &Bytes| Reply::Bulk(b.clone());
        Reply::Push(match self {
            Delivery::Message { channel, message } => {
                vec![Reply::bulk_str("message"), bulk(channel), bulk(message)]
            }
            Delivery::Pattern {
                pattern,
                channel,
                message,
            } => vec![
                Reply::bulk_str("pmessage"),
                bulk(pattern),
                bulk(channel),
                bulk(message),
            ],
            Delivery::Shard { channel, message } => {
                vec![Reply::bulk_str("smessage"), bulk(channel), bulk(message)]
            }
            Delivery::Overflow => Vec::new(),
        })
    }

    /// Bytes it holds while queued.
    pub fn size(&self) -> usize {
        match self {
            Delivery::Message { channel, message } | Delivery::Shard { channel, message } => {
                channel.len() + message.len() + 32
            }
            Delivery::Pattern {
                pattern,
                channel,
                message,
            } => pattern.len() + channel.len() + message.len() + 32,
            Delivery::Overflow => 0,
        }
    }
}

/// Which of a subscriber's three sets a name belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// SUBSCRIBE: channels.
    Channel,
    /// PSUBSCRIBE: glob patterns over channel names.
    Pattern,
    /// SSUBSCRIBE: shard channels.
    Shard,
}

impl Scope {
    const ALL: [Scope; 3] = [Scope::Channel, Scope::Pattern, Scope::Shard];

    fn index(self) -> usize {
        self as usize
    }

    /// The reply kinds of subscribing and unsubscribing.
    fn verbs(self) -> (&'static str, &'static str) {
        match self {
            Scope::Channel => ("subscribe", "unsubscribe"),
            Scope::Pattern => ("psubscribe", "punsubscribe"),
            Scope::Shard => ("ssubscribe", "sunsubscribe"),
        }
    }
}

/// One subscriber's queue, shared by the hub (which fills it) and its connection.
pub struct Inbox {
    id: u64,
    sender: mpsc::UnboundedSender<Delivery>,
    /// Bytes queued and not yet taken by the connection.
    queued: AtomicUsize,
    overflowed: AtomicBool,
}

impl Inbox {
    fn deliver(&self, delivery: Delivery) {
        if self.overflowed.load(Ordering::Relaxed) {
            return;
        }
        let size = delivery.size();
        if self.queued.fetch_add(size, Ordering::Relaxed) + size > QUEUED_BYTES_MAX {
            self.overflowed.store(true, Ordering::Relaxed);
            let _ = self.sender.send(Delivery::Overflow);
            return;
        }
        let _ = self.sender.send(delivery);
    }

    /// Records that the connection took `delivery` off the queue.
    pub fn taken(&self, delivery: &Delivery) {
        self.queued.fetch_sub(delivery.size(), Ordering::Relaxed);
    }
}

/// Subscribers by name, one map per [`Scope`].
#[derive(Default)]
struct Registry {
    scopes: [HashMap<Bytes, HashMap<u64, Arc<Inbox>>>; 3],
}

impl Registry {
    /// Takes subscriber `id` off `name` in `scope`, and the name with its last subscriber.
    fn remove(&mut self, scope: Scope, name: &Bytes, id: u64) {
        let map = &mut self.scopes[scope.index()];
        if let Some(subscribers) = map.get_mut(name) {
            subscribers.remove(&id);
            if subscribers.is_empty() {
                map.remove(name);
            }
        }
    }
}

/// A message waiting for a peer, and where to say how many subscribers it reached there.
struct Forward {
    published: Published,
    reached: oneshot::Sender<u64>,
}

/// This node's subscribers and its forwarders to the other members.
pub struct Hub {
    registry: Mutex<Registry>,
    peers: PeerNetwork,
    /// One queue per peer address, drained by that peer's forwarder task.
    forwarders: Mutex<HashMap<String, Forwarder>>,
}

struct Forwarder {
    queue: mpsc::UnboundedSender<Forward>,
    queued: Arc<AtomicUsize>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Hub {
    /// A hub reaching other nodes through `peers`.
    pub fn new(peers: PeerNetwork) -> Arc<Hub> {
        Arc::new(Hub {
            registry: Mutex::default(),
            peers,
            forwarders: Mutex::default(),
        })
    }

    /// A new subscriber for the connection of client `id`, with no subscriptions yet, and
    /// the queue its connection reads.
    pub fn subscriber(
        self: &Arc<Self>,
        id: u64,
    ) -> (Subscription, mpsc::UnboundedReceiver<Delivery>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let subscription = Subscription {
            hub: self.clone(),
            inbox: Arc::new(Inbox {
                id,
                sender,
                queued: AtomicUsize::new(0),
                overflowed: AtomicBool::new(false),
            }),
            names: Default::default(),
        };
        (subscription, receiver)
    }

    /// Delivers one message to this node's subscribers; how many it reached (a subscriber
    /// counts once per matching channel or pattern, as in Redis).
    pub fn deliver_here(&self, published: &Published) -> u64 {
        let registry = lock(&self.registry);
        let (channel, message) = (&published.channel, &published.message);
        let mut reached = 0;
        let mut deliver = |scope: Scope, name: &Bytes, delivery: &dyn Fn() -> Delivery| {
            for inbox in registry.scopes[scope.index()]
                .get(name)
                .into_iter()
                .flat_map(HashMap::values)
            {
                inbox.deliver(delivery());
                reached += 1;
            }
        };
        if published.shard {
            deliver(Scope::Shard, channel, &|| Delivery::Shard {
                channel: channel.clone(),
                message: message.clone(),
            });
            return reached;
        }
        deliver(Scope::Channel, channel, &|| Delivery::Message {
            channel: channel.clone(),
            message: message.clone(),
        });
        for pattern in registry.scopes[Scope::Pattern.index()].keys() {
            if glob_match(pattern, channel, false) {
                deliver(Scope::Pattern, pattern, &|| Delivery::Pattern {
                    pattern: pattern.clone(),
                    channel: channel.clone(),
                    message: message.clone(),
                });
            }
        }
        reached
    }

    /// Publishes a message: delivered here now, queued now for every peer in `peers` (peer
    /// addresses of the other members), so a connection's messages keep their order; the
    /// future answers how many subscribers it reached in all.
    pub fn publish(
        self: &Arc<Self>,
        published: Published,
        peers: &[String],
    ) -> BoxFuture<'static, u64> {
        let here = self.deliver_here(&published);
        let mut answers = Vec::with_capacity(peers.len());
        for peer in peers {
            let (reached, answer) = oneshot::channel();
            if self.forward(
                peer,
                Forward {
                    published: published.clone(),
                    reached,
                },
            ) {
                answers.push(answer);
            }
        }
        async move {
            let mut total = here;
            let deadline = tokio::time::Instant::now() + FORWARD_TIMEOUT;
            for answer in answers {
                if let Ok(Ok(reached)) = tokio::time::timeout_at(deadline, answer).await {
                    total += reached;
                }
            }
            total
        }
        .boxed()
    }

    /// Queues `forward` for `peer`, starting its forwarder on first use; false when the
    /// peer's queue is full (the message is not sent there).
    fn forward(&self, peer: &str, forward: Forward) -> bool {
        let mut forwarders = lock(&self.forwarders);
        if !forwarders.contains_key(peer) {
            let (queue, receiver) = mpsc::unbounded_channel();
            let queued = Arc::new(AtomicUsize::new(0));
            tokio::spawn(run_forwarder(
                self.peers.app_client(peer),
                receiver,
                queued.clone(),
            ));
            forwarders.insert(peer.to_string(), Forwarder { queue, queued });
        }
        let forwarder = &forwarders[peer];
        if forwarder.queued.load(Ordering::Relaxed) >= FORWARD_QUEUE_MAX {
            return false;
        }
        forwarder.queued.fetch_add(1, Ordering::Relaxed);
        forwarder.queue.send(forward).is_ok()
    }

    /// Active channels (those with a subscriber here) of `scope` matching `pattern`.
    pub fn channels(&self, scope: Scope, pattern: Option<&[u8]>) -> Vec<Bytes> {
        let registry = lock(&self.registry);
        registry.scopes[scope.index()]
            .keys()
            .filter(|name| pattern.is_none_or(|p| glob_match(p, name, false)))
            .cloned()
            .collect()
    }

    /// Subscribers here of `name` in `scope`.
    pub fn subscribers(&self, scope: Scope, name: &[u8]) -> usize {
        lock(&self.registry).scopes[scope.index()]
            .get(name)
            .map_or(0, HashMap::len)
    }

    /// Pattern subscriptions here (every client's, each counted).
    pub fn pattern_count(&self) -> usize {
        lock(&self.registry).scopes[Scope::Pattern.index()]
            .values()
            .map(HashMap::len)
            .sum()
    }
}

/// Sends what is queued for one peer, a batch at a time, each after the previous answered.
async fn run_forwarder(
    mut client: crate::raft::transport::AppClient,
    mut queue: mpsc::UnboundedReceiver<Forward>,
    queued: Arc<AtomicUsize>,
) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH_MAX {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        queued.fetch_sub(batch.len(), Ordering::Relaxed);
        let request = AppRequest::Publish(batch.iter().map(|f| f.published.clone()).collect());
        let reached = match client.request(request, FORWARD_TIMEOUT).await {
            Ok(AppResponse::Delivered(reached)) => reached,
            Ok(other) => {
                tracing::debug!(?other, "a peer did not take published messages");
                Vec::new()
            }
            Err(err) => {
                tracing::debug!(error = %err, "published messages did not reach a peer");
                Vec::new()
            }
        };
        for (i, forward) in batch.into_iter().enumerate() {
            let _ = forward.reached.send(reached.get(i).copied().unwrap_or(0));
        }
    }
}

/// One connection's subscriptions; dropping it unsubscribes everything.
pub struct Subscription {
    hub: Arc<Hub>,
    inbox: Arc<Inbox>,
    /// Subscribed names per [`Scope`], in subscription order.
    names: [Vec<Bytes>; 3],
}

impl Subscription {
    /// The queue this subscriber's deliveries go through.
    pub fn inbox(&self) -> &Arc<Inbox> {
        &self.inbox
    }

    /// Channels plus patterns: what SUBSCRIBE and PSUBSCRIBE replies count.
    pub fn count(&self) -> usize {
        self.names[Scope::Channel.index()].len() + self.names[Scope::Pattern.index()].len()
    }

    /// Subscriptions in `scope`.
    pub fn count_in(&self, scope: Scope) -> usize {
        self.names[scope.index()].len()
    }

    /// Channels, patterns and shard channels subscribed (CLIENT LIST's `sub`, `psub`, `ssub`).
    pub fn counts(&self) -> [usize; 3] {
        Scope::ALL.map(|scope| self.count_in(scope))
    }

    /// Whether any subscription is active (RESP2's subscribed mode).
    pub fn active(&self) -> bool {
        self.names.iter().any(|names| !names.is_empty())
    }

    /// The reply count after a change in `scope`: shard channels count apart.
    fn reply_count(&self, scope: Scope) -> i64 {
        match scope {
            Scope::Shard => self.count_in(Scope::Shard) as i64,
            _ => self.count() as i64,
        }
    }

    /// Subscribes to `names` in `scope`; one confirmation per name, as Redis sends them.
    pub fn subscribe(&mut self, scope: Scope, names: &[Bytes]) -> Vec<Reply> {
        let mut replies = Vec::with_capacity(names.len());
        for name in names {
            if !self.names[scope.index()].contains(name) {
                self.names[scope.index()].push(name.clone());
                lock(&self.hub.registry).scopes[scope.index()]
                    .entry(name.clone())
                    .or_default()
                    .insert(self.inbox.id, self.inbox.clone());
            }
            replies.push(Reply::Push(vec![
                Reply::bulk_str(scope.verbs().0),
                Reply::Bulk(name.clone()),
                Reply::Integer(self.reply_count(scope)),
            ]));
        }
        replies
    }

    /// Unsubscribes from `names` in `scope` (every subscription there when empty); one
    /// confirmation per name, or one with a nil name when there was nothing to leave.
    pub fn unsubscribe(&mut self, scope: Scope, names: &[Bytes]) -> Vec<Reply> {
        let names: Vec<Bytes> = if names.is_empty() {
            self.names[scope.index()].clone()
        } else {
            names.to_vec()
        };
        if names.is_empty() {
            return vec![Reply::Push(vec![
                Reply::bulk_str(scope.verbs().1),
                Reply::Nil,
                Reply::Integer(self.reply_count(scope)),
            ])];
        }
        let mut replies = Vec::with_capacity(names.len());
        for name in names {
            self.leave(scope, &name);
            replies.push(Reply::Push(vec![
                Reply::bulk_str(scope.verbs().1),
                Reply::Bulk(name),
                Reply::Integer(self.reply_count(scope)),
            ]));
        }
        replies
    }

    fn leave(&mut self, scope: Scope, name: &Bytes) {
        let names = &mut self.names[scope.index()];
        let Some(at) = names.iter().position(|n| n == name) else {
            return;
        };
        names.remove(at);
        lock(&self.hub.registry).remove(scope, name, self.inbox.id);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut registry = lock(&self.hub.registry);
        for scope in Scope::ALL {
            for name in self.names[scope.index()].drain(..) {
                registry.remove(scope, &name, self.inbox.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Arc<Hub> {
        Hub::new(PeerNetwork::new(1, Arc::from("secret")))
    }

    fn published(channel: &str, message: &str) -> Published {
        Published {
            shard: false,
            channel: Bytes::copy_from_slice(channel.as_bytes()),
            message: Bytes::copy_from_slice(message.as_bytes()),
        }
    }

    #[test]
    fn channels_and_patterns_each_count_and_leaving_stops_delivery() {
        let hub = hub();
        let (mut a, mut a_queue) = hub.subscriber(1);
        let (mut b, mut b_queue) = hub.subscriber(2);
        a.subscribe(Scope::Channel, &[Bytes::from_static(b"news")]);
        b.subscribe(Scope::Channel, &[Bytes::from_static(b"news")]);
        b.subscribe(Scope::Pattern, &[Bytes::from_static(b"n*")]);
        assert_eq!(hub.deliver_here(&published("news", "hi")), 3);
        assert_eq!(
            a_queue.try_recv().unwrap(),
            Delivery::Message {
                channel: Bytes::from_static(b"news"),
                message: Bytes::from_static(b"hi")
            }
        );
        assert!(matches!(
            b_queue.try_recv().unwrap(),
            Delivery::Message { .. }
        ));
        assert!(matches!(
            b_queue.try_recv().unwrap(),
            Delivery::Pattern { .. }
        ));
        assert_eq!(hub.subscribers(Scope::Channel, b"news"), 2);
        assert_eq!(hub.pattern_count(), 1);
        drop(a);
        b.unsubscribe(Scope::Pattern, &[]);
        assert_eq!(hub.deliver_here(&published("news", "again")), 1);
        assert_eq!(hub.subscribers(Scope::Channel, b"news"), 1);
        drop(b);
        assert!(hub.channels(Scope::Channel, None).is_empty());
        assert_eq!(hub.deliver_here(&published("news", "gone")), 0);
    }

    #[test]
    fn a_subscriber_that_falls_too_far_behind_is_told_to_close() {
        let hub = hub();
        let (mut slow, mut queue) = hub.subscriber(1);
        slow.subscribe(Scope::Channel, &[Bytes::from_static(b"c")]);
        let big = "x".repeat(1024 * 1024);
        for _ in 0..40 {
            hub.deliver_here(&published("c", &big));
        }
        let mut seen = 0;
        while let Ok(delivery) = queue.try_recv() {
            if delivery == Delivery::Overflow {
                assert!(seen * 1024 * 1024 <= QUEUED_BYTES_MAX);
                return;
            }
            seen += 1;
        }
        panic!("no overflow after {seen} messages");
    }
}
