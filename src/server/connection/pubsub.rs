//! A connection's Pub/Sub commands: SUBSCRIBE and its kin against the node's
//! [`Hub`](crate::node::pubsub::Hub), PUBLISH to every node, PUBSUB introspection, and RESP2's
//! subscribed mode (only the Pub/Sub commands, PING, QUIT and RESET while subscribed; PING
//! answers `pong` as a message).
//!
//! PUBSUB's counts are this node's, as in Redis Cluster; PUBLISH counts the subscribers it
//! reached on every node.

use bytes::Bytes;
use futures::FutureExt;

use super::{Outcome, Session};
use crate::node::pubsub::Scope;
use crate::raft::transport::Published;
use crate::redis::table;
use crate::resp::{Protocol, Reply};

/// The commands RESP2's subscribed mode allows.
const ALLOWED_WHILE_SUBSCRIBED: [&str; 9] = [
    "subscribe",
    "psubscribe",
    "ssubscribe",
    "unsubscribe",
    "punsubscribe",
    "sunsubscribe",
    "ping",
    "quit",
    "reset",
];

impl Session {
    /// Whether the connection is in RESP2's subscribed mode.
    pub(super) fn in_subscribed_mode(&self) -> bool {
        self.protocol == Protocol::Resp2 && self.subscription.as_ref().is_some_and(|s| s.active())
    }

    /// The refusal of a command RESP2's subscribed mode does not allow (after Redis's unknown
    /// command and arity checks), if `args` is one.
    pub(super) fn subscribed_mode_refusal(&self, args: &[Bytes]) -> Option<Reply> {
        let spec = table::resolve(args).ok()?;
        let top = spec.name.split('|').next().unwrap_or(spec.name);
        (!ALLOWED_WHILE_SUBSCRIBED.contains(&top)).then(|| {
            Reply::error(format!(
                "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / \
                 RESET are allowed in this context",
                spec.name
            ))
        })
    }

    /// Answers one Pub/Sub command.
    pub(super) fn pubsub_command(&mut self, name: &'static str, args: Vec<Bytes>) -> Outcome {
        let scope = |verb: &str| match verb {
            "psubscribe" | "punsubscribe" => Scope::Pattern,
            "ssubscribe" | "sunsubscribe" => Scope::Shard,
            _ => Scope::Channel,
        };
        match name {
            "subscribe" | "psubscribe" | "ssubscribe" => {
                let replies = self.subscription().subscribe(scope(name), &args[1..]);
                self.subscriptions_changed();
                Outcome::Ready(Reply::Frames(replies))
            }
            "unsubscribe" | "punsubscribe" | "sunsubscribe" => {
                let replies = self.subscription().unsubscribe(scope(name), &args[1..]);
                self.subscriptions_changed();
                Outcome::Ready(Reply::Frames(replies))
            }
            "publish" | "spublish" => {
                let published = Published {
                    shard: name == "spublish",
                    channel: args[1].clone(),
                    message: args[2].clone(),
                };
                let reached = self.server.node.publish(published);
                Outcome::Pending(async move { Reply::Integer(reached.await as i64) }.boxed())
            }
            _ => Outcome::Ready(self.introspect(name, &args)),
        }
    }

    /// PUBSUB's subcommands, over this node's subscribers.
    fn introspect(&self, name: &str, args: &[Bytes]) -> Reply {
        let hub = &self.server.node.pubsub;
        let channels = |scope| {
            let pattern = args.get(2).map(|p| p.as_ref());
            Reply::Array(
                hub.channels(scope, pattern)
                    .into_iter()
                    .map(Reply::Bulk)
                    .collect(),
            )
        };
        let counts = |scope| {
            Reply::Array(
                args[2..]
                    .iter()
                    .flat_map(|channel| {
                        [
                            Reply::Bulk(channel.clone()),
                            Reply::Integer(hub.subscribers(scope, channel) as i64),
                        ]
                    })
                    .collect(),
            )
        };
        if matches!(name, "pubsub|channels" | "pubsub|shardchannels") && args.len() > 3 {
            return Reply::error(format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try PUBSUB HELP.",
                String::from_utf8_lossy(&args[1])
            ));
        }
        match name {
            "pubsub|channels" => channels(Scope::Channel),
            "pubsub|shardchannels" => channels(Scope::Shard),
            "pubsub|numsub" => counts(Scope::Channel),
            "pubsub|shardnumsub" => counts(Scope::Shard),
            "pubsub|numpat" => Reply::Integer(hub.pattern_count() as i64),
            _ => Reply::Array(
                PUBSUB_HELP
                    .iter()
                    .map(|line| Reply::Simple(Bytes::from_static(line.as_bytes())))
                    .collect(),
            ),
        }
    }

    /// The connection's subscriptions, created (with the queue the run loop reads) on first
    /// use.
    fn subscription(&mut self) -> &mut crate::node::pubsub::Subscription {
        if self.subscription.is_none() {
            let (subscription, deliveries) = self.server.node.pubsub.subscriber(self.client.id);
            self.deliveries = Some((deliveries, subscription.inbox().clone()));
            self.subscription = Some(subscription);
        }
        self.subscription.as_mut().expect("just created")
    }

    /// Shows the connection's subscription counts in CLIENT LIST.
    fn subscriptions_changed(&self) {
        let counts = self.subscription.as_ref().map_or([0; 3], |s| s.counts());
        self.client.set_subscriptions(counts);
    }

    /// RESET and the end of the connection: every subscription goes.
    pub(super) fn drop_subscriptions(&mut self) {
        self.subscription = None;
        self.subscriptions_changed();
    }
}

/// PUBSUB HELP, as Redis 7.0 words it.
const PUBSUB_HELP: [&str; 14] = [
    "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "SHARDCHANNELS [<pattern>]",
    "    Return the currently active shard level channels matching a <pattern> (default: '*').",
    "SHARDNUMSUB [<shardchannel> ...]",
    "    Return the number of subscribers for the specified shard level channel(s)",
    "HELP",
    "    Prints this help.",
];
