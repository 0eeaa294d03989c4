//! Blocking pops under raft: BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN, BZPOPMAX and
//! BZMPOP, waiting at the node the client talks to.
//!
//! # How a call waits
//! The state machine runs these commands as Redis runs them inside MULTI: answering at once,
//! nil when there is nothing to pop (`store::commands::lists`, `sorted_sets`). A client's call
//! is first sent like any write ([`crate::server::submit`]: here when this node leads, through
//! the proxy otherwise). When it finds nothing, the connection waits here, holding no log entry
//! and no resource of the leader's: each time this node applies entries it looks, in its own
//! applied state, whether one of the call's keys now holds a list (or sorted set); when one
//! does, it sends the call again for that key alone, as an ordinary pop through the log. A pop
//! that finds the key emptied by someone else meanwhile waits on. The timeout is this node's
//! clock alone and never needs the log; a call that times out answers a nil array, as Redis's.
//!
//! # Order
//! Calls blocked at one node on a key are served in the order they blocked (Redis's order):
//! a call tries a key only when no call that blocked earlier at this node waits on it. Calls
//! blocked at different nodes race for an element; each element still goes to exactly one.
//!
//! # Across failures
//! A call blocked on a follower keeps waiting while the leader changes: its next attempt goes to
//! whichever node leads then, with the same exactly-once resends as every write. A call blocked
//! on a leader that dies goes with its connection, as on Redis.
//!
//! # Must not
//! Run on a connection from another node's proxy: there the commands answer at once, and the
//! follower that forwarded them does the waiting.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::command::Command;
use crate::node::Node;
use crate::resp::Reply;
use crate::store::Read;

/// What a blocked call waits for a key to hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Holds {
    List,
    SortedSet,
}

impl Holds {
    fn type_name(self) -> &'static [u8] {
        match self {
            Holds::List => b"list",
            Holds::SortedSet => b"zset",
        }
    }
}

/// How each blocking command names its keys and timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// `NAME key… timeout` (BLPOP, BRPOP, BZPOPMIN, BZPOPMAX).
    KeysThenTimeout,
    /// `NAME source destination … timeout` (BLMOVE, BRPOPLPUSH): one key waited on.
    Source,
    /// `NAME timeout numkeys key… …` (BLMPOP, BZMPOP).
    TimeoutThenKeys,
}

/// The blocking commands: what each waits for a key to hold, and where its keys are.
const BLOCKING_COMMANDS: [(&str, Holds, Shape); 8] = [
    ("blpop", Holds::List, Shape::KeysThenTimeout),
    ("brpop", Holds::List, Shape::KeysThenTimeout),
    ("bzpopmin", Holds::SortedSet, Shape::KeysThenTimeout),
    ("bzpopmax", Holds::SortedSet, Shape::KeysThenTimeout),
    ("blmove", Holds::List, Shape::Source),
    ("brpoplpush", Holds::List, Shape::Source),
    ("blmpop", Holds::List, Shape::TimeoutThenKeys),
    ("bzmpop", Holds::SortedSet, Shape::TimeoutThenKeys),
];

/// A blocking call as the connection waits on it.
#[derive(Clone, Debug)]
pub struct BlockingCall {
    args: Vec<Bytes>,
    holds: Holds,
    shape: Shape,
    keys: Vec<Bytes>,
    /// `None`: wait for ever.
    timeout: Option<Duration>,
}

impl BlockingCall {
    /// The call, if `command` is a blocking command whose arguments name a timeout and keys;
    /// `None` otherwise (its first attempt then answers with Redis's error).
    pub fn of(command: &Command) -> Option<BlockingCall> {
        let Command::Keyspace { args, .. } = command else {
            return None;
        };
        // Asked of every command a connection routes: compared in place, nothing copied.
        let name = args.first()?;
        let (_, holds, shape) = BLOCKING_COMMANDS
            .iter()
            .find(|(blocking, _, _)| name.eq_ignore_ascii_case(blocking.as_bytes()))?;
        let (holds, shape) = (*holds, *shape);
        let (timeout, keys) = match shape {
            Shape::KeysThenTimeout => (args.last()?, args.get(1..args.len() - 1)?.to_vec()),
            Shape::Source => (args.last()?, vec![args.get(1)?.clone()]),
            Shape::TimeoutThenKeys => {
                let numkeys = crate::resp::string2ll(args.get(2)?)?;
                let end = 3usize.checked_add(usize::try_from(numkeys).ok()?)?;
                (args.get(1)?, args.get(3..end)?.to_vec())
            }
        };
        let seconds = crate::redis::double::parse_strict(timeout)?;
        let ms = u64::try_from(crate::store::commands::timeout_ms(seconds)).ok()?;
        Some(BlockingCall {
            args: args.clone(),
            holds,
            shape,
            keys,
            timeout: (ms > 0).then(|| Duration::from_millis(ms)),
        })
    }

    /// The whole call, as the client sent it.
    pub fn command(&self) -> Command {
        keyspace_command(self.args.clone(), self.keys.first().cloned())
    }

    /// The call for `key` alone (its reply names the key, as the whole call's would).
    fn for_key(&self, key: &Bytes) -> Command {
        let args = match self.shape {
            Shape::Source => self.args.clone(),
            Shape::KeysThenTimeout => vec![
                self.args[0].clone(),
                key.clone(),
                self.args[self.args.len() - 1].clone(),
            ],
            Shape::TimeoutThenKeys => {
                let mut args = vec![
                    self.args[0].clone(),
                    self.args[1].clone(),
                    Bytes::from_static(b"1"),
                    key.clone(),
                ];
                args.extend_from_slice(&self.args[3 + self.keys.len()..]);
                args
            }
        };
        keyspace_command(args, Some(key.clone()))
    }
}

fn keyspace_command(args: Vec<Bytes>, key: Option<Bytes>) -> Command {
    Command::Keyspace {
        args,
        write: true,
        key,
        large_reply: true,
    }
}

/// Whether a reply means the call found nothing to pop (and so waits): a nil, or the leader's
/// nil relayed by the proxy as it was encoded (RESP2 or RESP3).
pub fn found_nothing(reply: &Reply) -> bool {
    match reply {
        Reply::NilArray | Reply::Nil => true,
        Reply::Raw(encoded) => matches!(encoded.as_ref(), b"*-1\r\n" | b"$-1\r\n" | b"_\r\n"),
        _ => false,
    }
}

/// Whether a reply is WRONGTYPE (here or relayed by the proxy).
fn wrong_type(reply: &Reply) -> bool {
    match reply {
        Reply::Error(text) => text.starts_with(b"WRONGTYPE"),
        Reply::Raw(encoded) => encoded.starts_with(b"-WRONGTYPE"),
        _ => false,
    }
}

/// The calls blocked at this node, in the order they blocked.
#[derive(Debug, Default)]
pub struct Waiters {
    next: AtomicU64,
    queue: Mutex<BTreeMap<u64, Vec<Bytes>>>,
    /// A call stopped waiting: the ones behind it may be first in line now.
    left: Notify,
}

/// A call's place in [`Waiters`]; leaving the line when dropped (served, timed out, or its
/// connection closed).
struct Place<'a> {
    waiters: &'a Waiters,
    number: u64,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.waiters
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.number);
        self.waiters.left.notify_waiters();
    }
}

impl Waiters {
    fn enter(&self, keys: &[Bytes]) -> Place<'_> {
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(number, keys.to_vec());
        Place {
            waiters: self,
            number,
        }
    }

    /// `keys` no call that blocked before `place` waits on, in the call's order.
    fn first_in_line<'k>(&self, place: &Place<'_>, keys: &'k [Bytes]) -> Vec<&'k Bytes> {
        let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .filter(|key| {
                !queue
                    .range(..place.number)
                    .any(|(_, theirs)| theirs.contains(key))
            })
            .collect()
    }

    /// Calls blocked now (INFO's `blocked_clients`).
    pub fn count(&self) -> usize {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Whether `key` holds what the call pops, in this node's applied state (a hint: the pop
/// itself goes through the log).
fn looks_ready(node: &Node, key: &Bytes, holds: Holds) -> bool {
    let read = Read {
        args: vec![Bytes::from_static(b"TYPE"), key.clone()],
    };
    matches!(
        node.reader.read_many(std::slice::from_ref(&read)).as_deref(),
        Ok([Reply::Simple(name)]) if name.as_ref() == holds.type_name()
    )
}

/// Serves a blocking call whose first attempt found nothing: waits, as the module describes,
/// sending the call again through `attempt` whenever one of its keys looks ready, until an
/// attempt pops something (or fails) or the timeout passes.
pub async fn wait<F, Fut>(node: &Node, waiters: &Waiters, call: BlockingCall, attempt: F) -> Reply
where
    F: Fn(Command) -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let deadline = call
        .timeout
        .map(|timeout| tokio::time::Instant::now() + timeout);
    let place = waiters.enter(&call.keys);
    let mut applied = node.applied_changes();
    loop {
        let left = waiters.left.notified();
        tokio::pin!(left);
        left.as_mut().enable();
        applied.borrow_and_update();
        for key in waiters.first_in_line(&place, &call.keys) {
            if !looks_ready(node, key, call.holds) {
                continue;
            }
            let reply = attempt(call.for_key(key)).await;
            // A key emptied (or retyped) by someone else meanwhile: wait on, as Redis's
            // blocked clients do.
            if !found_nothing(&reply) && !wrong_type(&reply) {
                return reply;
            }
        }
        let timed_out = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = applied.changed() => {
                if changed.is_err() {
                    // The state machine is gone: the node is shutting down.
                    return crate::error::Error::ClusterDown("the node is shutting down".into())
                        .to_resp();
                }
            }
            () = &mut left => {}
            () = timed_out => return Reply::NilArray,
        }
    }
}
