//! Requests that travel through the raft log and the Responses apply gives back.
//!
//! These are the only values the state machine understands. A client `Command` is turned into
//! a `Request` by the command layer; the raft layer carries it opaquely; the state machine applies
//! it and answers with a `Response`. Everything here is serialized into log entries and snapshots,
//! so changing a variant is a format change: add variants at the end only.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A state change (or a read routed through the log) proposed to raft.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// `SET key value`: store a string, replacing any value of any type.
    Set {
        /// The key.
        key: Bytes,
        /// The new value.
        value: Bytes,
    },
    /// `GET key` through the log (`--read-mode log`): applied like a write, changes nothing.
    Get {
        /// The key.
        key: Bytes,
    },
    /// `INCRBY key delta`: add to the integer stored at key (missing counts as 0).
    IncrBy {
        /// The key.
        key: Bytes,
        /// The signed increment.
        delta: i64,
    },
    /// `DEL key...`: remove keys; answers how many existed.
    Del {
        /// The keys, duplicates allowed (each existing key counts once).
        keys: Vec<Bytes>,
    },
    /// `FLUSHDB` / `FLUSHALL`: remove every key.
    FlushAll,
    /// Several requests from concurrent or pipelined clients sharing one log entry; applied in
    /// order, answered with [`Response::Batch`] in the same order.
    Batch(Vec<Request>),
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Set { key, value } => {
                write!(f, "SET {:?} ({} bytes)", Bytes::clone(key), value.len())
            }
            Request::Get { key } => write!(f, "GET {key:?}"),
            Request::IncrBy { key, delta } => write!(f, "INCRBY {key:?} {delta}"),
            Request::Del { keys } => write!(f, "DEL ({} keys)", keys.len()),
            Request::FlushAll => write!(f, "FLUSHALL"),
            Request::Batch(requests) => write!(f, "BATCH ({} requests)", requests.len()),
        }
    }
}

/// What applying a [`Request`] produced. Deterministic failures are responses, not errors:
/// every replica computes the same one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The change was made (`+OK`).
    Ok,
    /// A string value or its absence.
    Value(Option<Bytes>),
    /// An integer result (new counter value, number of keys removed).
    Integer(i64),
    /// A deterministic failure with Redis's error text.
    Error(ApplyError),
    /// Answers to a [`Request::Batch`], in order.
    Batch(Vec<Response>),
}

/// Failures every replica reaches identically while applying a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ApplyError {
    /// The stored value is not a base-10 64-bit integer.
    #[error("ERR value is not an integer or out of range")]
    NotAnInteger,
    /// The increment would leave the i64 range.
    #[error("ERR increment or decrement would overflow")]
    Overflow,
    /// The key holds a value of another type.
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType,
}
