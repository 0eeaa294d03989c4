//! Requests that travel through the raft log and the Responses apply gives back.
//!
//! The log's payload format. A client command travels as its arguments plus the leader's time;
//! the raft layer carries it without interpreting it; the state machine (the store layer) applies
//! it and answers with a `Response`. Everything here is serialized into log entries and
//! snapshots, so changing a variant is a format change: add variants at the end only.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::resp::Reply;

/// A state change proposed to raft.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// One client command (name first), applied at the time the leader stamped on it.
    Command {
        /// The command and its arguments, as the client sent them.
        args: Vec<Bytes>,
        /// The leader's clock when it proposed the command, in ms since the epoch. Relative
        /// expiries (`EX 10`) and expiry checks use this, never the applying node's clock.
        now_ms: i64,
    },
    /// Remove keys whose deadline passed (proposed by the leader's active expiry). A key is
    /// removed only if its deadline is at or before `now_ms` when the entry applies.
    Expire {
        /// Candidate keys.
        keys: Vec<Bytes>,
        /// The leader's clock when it found them due.
        now_ms: i64,
    },
    /// MULTI…EXEC: the commands apply together, or not at all if a watched key's revision
    /// changed since it was watched (the reply is then a null array).
    Exec {
        /// The queued commands, each name first.
        commands: Vec<Vec<Bytes>>,
        /// Watched keys with the revision each had when watched (0: absent).
        watched: Vec<(Bytes, u64)>,
        /// The leader's clock.
        now_ms: i64,
    },
    /// Several requests from concurrent or pipelined clients sharing one log entry; applied in
    /// order, answered with [`Response::Batch`] in the same order. Shared, not copied: the log
    /// cache, apply and every follower's replication each hold the entry (the encoding is a
    /// plain sequence, as a `Vec`'s).
    Batch(std::sync::Arc<[Request]>),
    /// A request with the id its sender gives it, so that sending it again after a lost reply
    /// never applies it twice (see `store::sessions`).
    Identified {
        /// Who sent it, and its place in the sender's sequence.
        id: RequestId,
        /// Every request of the same sender with a lower sequence number has been answered.
        answered_below: u64,
        /// The request itself (never a batch).
        request: Box<Request>,
    },
}

/// The id a node gives a request it proposes or forwards: the same id is sent again, to
/// whichever node leads, until an answer comes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestId {
    /// The sending node's raft id.
    pub node: u64,
    /// The sending process's incarnation (new at every start).
    pub incarnation: u64,
    /// The request's place in the incarnation's sequence, from 1.
    pub seq: u64,
}

impl Request {
    /// The request inside any [`Request::Identified`] wrapper.
    pub fn inner(&self) -> &Request {
        match self {
            Request::Identified { request, .. } => request.inner(),
            other => other,
        }
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Command { args, .. } => match args.first() {
                Some(name) => write!(
                    f,
                    "{} ({} args)",
                    String::from_utf8_lossy(name),
                    args.len() - 1
                ),
                None => write!(f, "(empty command)"),
            },
            Request::Expire { keys, .. } => write!(f, "EXPIRE ({} keys)", keys.len()),
            Request::Exec { commands, .. } => write!(f, "EXEC ({} commands)", commands.len()),
            Request::Batch(requests) => write!(f, "BATCH ({} requests)", requests.len()),
            Request::Identified { id, request, .. } => {
                write!(f, "{request} as {}.{}.{}", id.node, id.incarnation, id.seq)
            }
        }
    }
}

/// What applying a [`Request`] produced. Deterministic failures (WRONGTYPE, not an integer…)
/// are error replies: every replica computes the same one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// The reply to one command.
    Reply(Reply),
    /// Answers to a [`Request::Batch`], in order.
    Batch(Vec<Response>),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The log and the peer wire hold batches written as a `Vec`: sharing the batch must not
    /// change a byte of its encoding.
    #[test]
    fn a_shared_batch_encodes_as_the_vec_it_was() {
        #[derive(Serialize)]
        enum AsVec {
            #[allow(dead_code)]
            Command {
                args: Vec<Bytes>,
                now_ms: i64,
            },
            #[allow(dead_code)]
            Expire {
                keys: Vec<Bytes>,
                now_ms: i64,
            },
            #[allow(dead_code)]
            Exec {
                commands: Vec<Vec<Bytes>>,
                watched: Vec<(Bytes, u64)>,
                now_ms: i64,
            },
            Batch(Vec<Request>),
        }
        let requests = vec![
            Request::Command {
                args: vec![Bytes::from_static(b"INCR"), Bytes::from_static(b"k")],
                now_ms: 7,
            },
            Request::Expire {
                keys: vec![Bytes::from_static(b"gone")],
                now_ms: 8,
            },
        ];
        let shared = postcard::to_stdvec(&Request::Batch(requests.clone().into())).unwrap();
        let as_vec = postcard::to_stdvec(&AsVec::Batch(requests)).unwrap();
        assert_eq!(shared, as_vec);
        let decoded: Request = postcard::from_bytes(&as_vec).unwrap();
        assert!(matches!(decoded, Request::Batch(batch) if batch.len() == 2));
    }
}
