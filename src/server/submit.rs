//! Submitting a keyspace command where the leader is, until it has its real outcome.
//!
//! A connection hands every keyspace command (read or write, WATCH, a MULTI…EXEC transaction)
//! to [`submit`], which runs it on this node while it leads, forwards it through the proxy
//! while another node leads (or answers `-MOVED` in redirect mode), and waits, up to a whole
//! failover ([`crate::node::Node::election_wait`]), for a leader while none is known.
//!
//! # Exactly once
//! A write carries a request id (`store::sessions`) from its first attempt on. When an attempt
//! ends without an answer (the connection to the leader broke, the leader stepped down with
//! the entry uncommitted, the node forwarded to is no longer the leader), the same id is sent
//! again to whichever node leads now, until an answer comes: a duplicate is answered from the
//! replicated session table, never applied twice. Only after [`RESEND_WINDOW_MS`] without an
//! answer does a write that may have reached a leader get `-UNCERTAIN`; one that certainly
//! reached none gets `-CLUSTERDOWN`. Reads have no effect and are simply sent again.
//!
//! # Order
//! A connection's commands apply in the order it sent them, across resends too: a command sends
//! again only once every earlier command of its connection has its answer
//! (`ResendGate::wait_oldest`), and the connection dispatches nothing new while one of its
//! commands awaits a resend or while the leader differs from the one its in-flight commands
//! went to (see `server::connection`).
//!
//! # Must not
//! Send a reply prefix that stock clients retry unless the command certainly did not take
//! effect (see `crate::error`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::clock::wall_clock_ms;
use crate::cluster::proxy::{FailureCounter, LeaderTarget, ProxyError};
use crate::cluster::topology;
use crate::command::Command;
use crate::error::Error;
use crate::node::{IdLease, Outstanding, detach_small};
use crate::raft::Request;
use crate::resp::{Protocol, Reply};
use crate::server::Server;
use crate::server::router::{self, Mode, Route};
use crate::store::Read;

/// How long a command is sent again before its connection is told the outcome is unknown.
pub const RESEND_WINDOW_MS: u64 = 10_000;

/// Per connection: which of its submitted commands still await their answer, and how many
/// failures the proxy delivered that are not yet resent.
#[derive(Debug, Default)]
pub struct ResendGate {
    tickets: Outstanding,
    failures: FailureCounter,
    answered: Notify,
}

/// A command's place in its connection's order; dropping it marks the command answered.
#[derive(Debug)]
pub struct Ticket {
    gate: Arc<ResendGate>,
    number: u64,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.tickets.answered(self.number);
        self.gate.answered.notify_waiters();
    }
}

impl ResendGate {
    /// The next command's ticket.
    pub fn ticket(self: &Arc<Self>) -> Ticket {
        Ticket {
            gate: self.clone(),
            number: self.tickets.issue(),
        }
    }

    /// Whether a command of this connection awaits a resend: new commands must wait.
    pub fn resending(&self) -> bool {
        self.failures.load(Ordering::Acquire) > 0
    }

    /// Forgets failures counted for commands that are no longer in flight (a connection with
    /// nothing in flight has nothing to resend).
    pub fn reset_if_idle(&self) {
        if self.resending() && self.tickets.is_idle() {
            self.failures.store(0, Ordering::Release);
        }
    }

    /// Waits until every earlier command of the connection has its answer.
    async fn wait_oldest(&self, ticket: &Ticket) {
        loop {
            let answered = self.answered.notified();
            tokio::pin!(answered);
            answered.as_mut().enable();
            if self.tickets.oldest() >= ticket.number {
                return;
            }
            answered.await;
        }
    }

    fn resent(&self) {
        let _ = self
            .failures
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
}

/// What one command needs to be submitted.
pub struct Submission {
    /// The server (node, proxy, configuration).
    pub server: Arc<Server>,
    /// The connection's protocol (the proxy keeps RESP2 and RESP3 connections apart).
    pub protocol: Protocol,
    /// The connection's client id (picks its proxy connection).
    pub client_id: u64,
    /// The connection's resend order.
    pub gate: Arc<ResendGate>,
    /// The command's place in it.
    pub ticket: Ticket,
    /// The connection's WATCH state, filled in by a WATCH.
    pub watched: Arc<Mutex<Vec<(Bytes, u64)>>>,
    /// Applied index after the connection's last write here (WAIT).
    pub last_write_index: Arc<AtomicU64>,
}

/// How one attempt ended.
enum Attempt {
    Answered(Reply),
    /// No answer: send again. `counted`: the proxy counted it in the gate's failures.
    Again {
        may_have_applied: bool,
        counted: bool,
        why: String,
    },
}

/// Runs `command` (a keyspace command, WATCH or transaction) where the leader is, until it has
/// its outcome; see the module doc.
pub async fn submit(submission: Submission, mut command: Command) -> Reply {
    let node = submission.server.node.clone();
    let is_write = matches!(
        command,
        Command::Keyspace { write: true, .. } | Command::Transaction { .. }
    );
    if is_write {
        // Kept until its answer, for resends: copied out of the connection's read buffer first
        // (as a proposal is), or every write would pin a whole buffer until it commits.
        detach_command(&mut command);
    }
    let lease = is_write.then(|| node.request_ids.issue());
    let mut tries = Tries::new(&submission);
    loop {
        let attempt = match route_now(&submission, &command) {
            Route::Here => {
                tries.settle_resend();
                run_here(&submission, &command, lease.as_ref()).await
            }
            Route::Moved { slot, client_addr } => {
                return tries.finish(topology::moved(slot, &client_addr));
            }
            Route::Refuse(reply) => return tries.finish(reply),
            Route::Proxy { id, client_addr } => {
                let target = LeaderTarget { id, client_addr };
                run_proxied(&mut tries, &command, lease.as_ref(), target, is_write).await
            }
            Route::WaitForLeader | Route::FollowerRead => Attempt::Again {
                may_have_applied: false,
                counted: false,
                why: "no leader is known".into(),
            },
        };
        match attempt {
            Attempt::Answered(reply) => return tries.finish(reply),
            Attempt::Again {
                may_have_applied,
                counted,
                why,
            } => tries.failed(may_have_applied, counted, why),
        }
        if !tries.wait_for_next().await {
            return tries.give_up();
        }
    }
}

/// Where `command` runs now, as the router says for this node's current view.
fn route_now(submission: &Submission, command: &Command) -> Route {
    let node = &submission.server.node;
    let mode = Mode {
        authenticated: true,
        proxied: false,
        // Follower reads are the connection's, never a resend's.
        readonly: false,
        follower_mode: submission.server.config.follower_mode,
        removed: node.removed(),
    };
    router::route_on(node, command.access(), command.routing_key(), mode)
}

/// One command's attempts so far: when to give up, whether it may have applied, and whether
/// a failure the proxy counted against the connection's gate is still to be resent.
struct Tries<'a> {
    submission: &'a Submission,
    started: tokio::time::Instant,
    may_have_applied: bool,
    owe_resend: bool,
    last_why: String,
}

impl<'a> Tries<'a> {
    fn new(submission: &'a Submission) -> Self {
        Tries {
            submission,
            started: tokio::time::Instant::now(),
            may_have_applied: false,
            owe_resend: false,
            last_why: String::new(),
        }
    }

    /// The command is being sent again: the failure counted for it is paid.
    fn settle_resend(&mut self) {
        if self.owe_resend {
            self.submission.gate.resent();
            self.owe_resend = false;
        }
    }

    /// The command's outcome is `reply`.
    fn finish(mut self, reply: Reply) -> Reply {
        self.settle_resend();
        reply
    }

    fn failed(&mut self, may_have_applied: bool, counted: bool, why: String) {
        self.may_have_applied |= may_have_applied;
        self.owe_resend |= counted;
        self.last_why = why;
    }

    /// When to stop: the resend window for a command that may have reached a leader, at most a
    /// whole failover for one that reached none.
    fn give_up_at(&self) -> tokio::time::Instant {
        let deadline = self.started + Duration::from_millis(RESEND_WINDOW_MS);
        if self.may_have_applied {
            deadline
        } else {
            deadline.min(self.started + self.submission.server.node.election_wait())
        }
    }

    /// Waits until the command may be sent again: its earlier commands answered, and a leader
    /// change or (when the same leader only dropped a connection) a short pause. `false` when
    /// it is time to give up.
    async fn wait_for_next(&self) -> bool {
        let node = &self.submission.server.node;
        let give_up_at = self.give_up_at();
        let now = tokio::time::Instant::now();
        if now >= give_up_at {
            return false;
        }
        self.submission
            .gate
            .wait_oldest(&self.submission.ticket)
            .await;
        let seen = node.leader().map_or(0, |(id, _)| id);
        let wait = if seen == 0 {
            give_up_at - now
        } else {
            Duration::from_millis(20).min(give_up_at - now)
        };
        node.leader_change(seen, wait).await;
        true
    }

    /// The outcome after the last try: unknown if it may have applied, else a true refusal.
    fn give_up(mut self) -> Reply {
        self.settle_resend();
        let why = &self.last_why;
        if self.may_have_applied {
            Error::Uncertain(format!(
                "no answer from the leader within {RESEND_WINDOW_MS} ms; the write may or may \
                 not have been applied ({why})"
            ))
            .to_resp()
        } else {
            Error::ClusterDown(format!("The cluster is down ({why})")).to_resp()
        }
    }
}

/// One attempt through the proxy to the leader `target`. A leader that stops answering
/// (paused, partitioned away) is replaced by an election: the attempt then ends, and the
/// command is sent again, with its id, to the new leader.
async fn run_proxied(
    tries: &mut Tries<'_>,
    command: &Command,
    lease: Option<&IdLease>,
    target: LeaderTarget,
    is_write: bool,
) -> Attempt {
    let submission = tries.submission;
    let node = &submission.server.node;
    let leader = target.id;
    let forwarded = submission.server.proxy.forward_counted(
        &target,
        submission.protocol,
        submission.client_id,
        forwarded_args(command, lease),
        Some(submission.gate.failures.clone()),
    );
    tries.settle_resend();
    let moved = async {
        loop {
            if node.leader_change(leader, Duration::from_secs(3600)).await != leader {
                return;
            }
        }
    };
    let outcome = tokio::select! {
        outcome = forwarded => Some(outcome),
        () = moved => None,
    };
    match outcome {
        None => Attempt::Again {
            may_have_applied: is_write,
            counted: false,
            why: "leadership moved while the old leader had the command".into(),
        },
        Some(Ok(raw)) => Attempt::Answered(match command {
            Command::Watch(keys) if !raw.starts_with(b"-") => {
                record_watch(&submission.watched, keys.clone(), parse_integer_array(&raw))
            }
            _ => Reply::Raw(raw),
        }),
        Some(Err(err)) => Attempt::Again {
            may_have_applied: is_write && !matches!(err, ProxyError::Unreachable(_)),
            counted: true,
            why: err.to_string(),
        },
    }
}

/// One attempt on this node, the leader.
async fn run_here(submission: &Submission, command: &Command, lease: Option<&IdLease>) -> Attempt {
    let node = &submission.server.node;
    let pending = match (lease, command) {
        (Some(lease), command) => match write_request(command, wall_clock_ms()) {
            // `submit` detached the command's arguments already.
            Some(request) => node.propose_detached(lease.wrap(request)),
            None => {
                return Attempt::Answered(Error::Internal("not a write".into()).to_resp());
            }
        },
        (None, Command::Watch(keys)) => node.read(Read {
            args: revisions_args(keys),
        }),
        (None, Command::Keyspace { args, .. }) => node.read(Read { args: args.clone() }),
        (None, _) => {
            return Attempt::Answered(Error::Internal("not a keyspace command".into()).to_resp());
        }
    };
    match pending.await {
        Ok(Ok(reply)) => {
            if lease.is_some() {
                submission
                    .last_write_index
                    .fetch_max(node.applied_index(), Ordering::Relaxed);
            }
            Attempt::Answered(match command {
                // An error answer to the revisions read is WATCH's answer (it had no effect).
                Command::Watch(keys) if !matches!(reply, Reply::Error(_)) => {
                    record_watch(&submission.watched, keys.clone(), revisions_of(reply))
                }
                _ => reply,
            })
        }
        Ok(Err(Error::Resend(why))) => Attempt::Again {
            may_have_applied: lease.is_some(),
            counted: false,
            why,
        },
        Ok(Err(err)) => Attempt::Answered(err.to_resp()),
        Err(_) => Attempt::Again {
            may_have_applied: lease.is_some(),
            counted: false,
            why: "the request was dropped".into(),
        },
    }
}

fn detach_command(command: &mut Command) {
    match command {
        Command::Keyspace { args, .. } => args.iter_mut().for_each(detach_small),
        Command::Transaction { commands, watched } => {
            commands.iter_mut().flatten().for_each(detach_small);
            watched.iter_mut().for_each(|(key, _)| detach_small(key));
        }
        _ => {}
    }
}

/// The log request for a write (a keyspace write or a transaction) stamped with the leader's
/// time `now_ms`; `None` for anything else.
pub(super) fn write_request(command: &Command, now_ms: i64) -> Option<Request> {
    match command {
        Command::Keyspace {
            args, write: true, ..
        } => Some(Request::Command {
            args: args.clone(),
            now_ms,
        }),
        Command::Transaction { commands, watched } => Some(Request::Exec {
            commands: commands.clone(),
            watched: watched.clone(),
            now_ms,
        }),
        _ => None,
    }
}

/// The command as forwarded to the leader: a write with its id ahead of it.
fn forwarded_args(command: &Command, lease: Option<&IdLease>) -> Vec<Bytes> {
    let args = match command {
        Command::Keyspace { args, .. } => args.clone(),
        Command::Watch(keys) => revisions_args(keys),
        Command::Transaction { commands, watched } => Command::transaction_args(commands, watched),
        _ => Vec::new(),
    };
    match lease {
        Some(lease) => {
            let mut identified = Vec::with_capacity(args.len() + 5);
            identified.extend(lease.header());
            identified.extend(args);
            identified
        }
        None => args,
    }
}

/// The internal read that answers WATCH: each key's revision.
pub(super) fn revisions_args(keys: &[Bytes]) -> Vec<Bytes> {
    let mut args = Vec::with_capacity(keys.len() + 1);
    args.push(Bytes::from_static(
        crate::store::commands::REVISIONS.as_bytes(),
    ));
    args.extend(keys.iter().cloned());
    args
}

/// The revisions in the local answer to `REDRAFT.REVISIONS`.
pub(super) fn revisions_of(reply: Reply) -> Option<Vec<u64>> {
    match reply {
        Reply::Array(items) => Some(
            items
                .into_iter()
                .map(|r| match r {
                    Reply::Integer(n) => n as u64,
                    _ => 0,
                })
                .collect(),
        ),
        _ => None,
    }
}

/// Stores WATCH's revisions for the coming EXEC and answers `+OK`.
pub(super) fn record_watch(
    watched: &Mutex<Vec<(Bytes, u64)>>,
    keys: Vec<Bytes>,
    revisions: Option<Vec<u64>>,
) -> Reply {
    let Some(revisions) = revisions.filter(|r| r.len() == keys.len()) else {
        return Error::Internal("WATCH could not read the keys' revisions".into()).to_resp();
    };
    let mut watched = watched.lock().unwrap_or_else(|p| p.into_inner());
    for (key, revision) in keys.into_iter().zip(revisions) {
        if !watched.iter().any(|(k, _)| *k == key) {
            watched.push((key, revision));
        }
    }
    Reply::ok()
}

/// Reads a RESP array of integers (the leader's answer to REDRAFT.REVISIONS).
fn parse_integer_array(raw: &[u8]) -> Option<Vec<u64>> {
    let text = std::str::from_utf8(raw).ok()?;
    let mut lines = text.split("\r\n");
    let count: usize = lines.next()?.strip_prefix('*')?.parse().ok()?;
    let mut out = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        out.push(lines.next()?.strip_prefix(':')?.parse().ok()?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submit_parses_revision_arrays() {
        assert_eq!(parse_integer_array(b"*2\r\n:3\r\n:0\r\n"), Some(vec![3, 0]));
        assert_eq!(parse_integer_array(b"-ERR x\r\n"), None);
    }

    #[tokio::test]
    async fn submit_gate_lets_a_command_resend_only_after_earlier_ones_answered() {
        let gate = Arc::new(ResendGate::default());
        let first = gate.ticket();
        let second = gate.ticket();
        let waiting = {
            let gate = gate.clone();
            tokio::spawn(async move {
                gate.wait_oldest(&second).await;
                second.number
            })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(first);
        assert_eq!(waiting.await.unwrap(), 1);
        assert!(!gate.resending());
        gate.failures.fetch_add(1, Ordering::AcqRel);
        assert!(gate.resending());
        gate.reset_if_idle();
        assert!(!gate.resending());
    }
}
