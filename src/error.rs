//! The one error type of the request path, its Redis error reply, and what each reply promises.
//!
//! Every user-visible failure carries its Redis prefix (`ERR`, `NOAUTH`, `NOPROTO`,
//! `CLUSTERDOWN`, `TRYAGAIN`, `MISCONF`, `UNCERTAIN`) in its `Display` text, so `to_resp` is the
//! same everywhere.
//!
//! # An error prefix is a promise
//! Stock clients resend a command on some prefixes without telling the application, because
//! Redis sends them only when the command did not run. [`REPLY_PREFIXES`] is the one table of
//! every prefix redraft sends and whether the command certainly did not take effect; a prefix
//! that any client retries is sent only then. An outcome that cannot be known is `UNCERTAIN`,
//! which no client retries.

use crate::resp::Reply;

/// A failure answered to a client as an error reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// `-ERR <text>`: a generic command error.
    #[error("ERR {0}")]
    Err(String),
    /// The connection must authenticate first.
    #[error("NOAUTH Authentication required.")]
    NoAuth,
    /// HELLO asked for a protocol version other than 2 or 3.
    #[error("NOPROTO unsupported protocol version")]
    NoProto,
    /// No leader is known, so nothing can be committed or read linearizably.
    #[error("CLUSTERDOWN {0}")]
    ClusterDown(String),
    /// The command was not executed (leadership moved before it ran); sending it again is safe.
    #[error("TRYAGAIN {0}")]
    TryAgain(String),
    /// Whether the command took effect cannot be known (its own node lost the leader's answer
    /// and could not find it out in time). No stock client retries this prefix.
    #[error("UNCERTAIN {0}")]
    Uncertain(String),
    /// Between nodes only: this node did not execute the request, or cannot know here whether
    /// its log entry commits; the sender sends the same request id again to the leader it
    /// finds. Never sent to a client (the connection resolves it first).
    #[error("{RESEND_PREFIX} {0}")]
    Resend(String),
    /// The data directory is (nearly) full: a write that adds data is refused, as Redis
    /// refuses writes when it cannot persist them.
    #[error("MISCONF {0}")]
    DiskFull(String),
    /// Storage or raft failed on this node.
    #[error("ERR internal error: {0}")]
    Internal(String),
}

/// The prefix of [`Error::Resend`] as it travels from a leader to a follower's proxy.
pub const RESEND_PREFIX: &str = "REDRAFT.RETRY";

/// What an error reply says about the command it answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// The command certainly did not take effect.
    NotApplied,
    /// The command ran and failed deterministically (nothing changed, or what Redis changes).
    Failed,
    /// Whether it took effect is unknown.
    Unknown,
}

/// One row of [`REPLY_PREFIXES`].
#[derive(Clone, Copy, Debug)]
pub struct PrefixSemantics {
    /// The error prefix.
    pub prefix: &'static str,
    /// What it says about the command.
    pub effect: Effect,
    /// Which stock clients resend the command on it without telling the application.
    pub retried_by: &'static str,
}

/// Every error prefix redraft sends to clients, and what it promises. Retry lists from the
/// clients' own source: go-redis `shouldRetry` (error.go: `LOADING`, `READONLY`,
/// `CLUSTERDOWN`, `TRYAGAIN`, `MASTERDOWN`, and `ERR max number of clients reached`; plain and
/// cluster clients, 3 retries by default), its cluster client's `MOVED`/`ASK` handling, redis-py
/// `RedisCluster` (`TryAgainError`, `ClusterDownError`, `MovedError`, `AskError`), ioredis
/// `Cluster` (`retryDelayOnTryAgain`, `retryDelayOnClusterDown`, `MOVED`, `ASK`), Lettuce and
/// Jedis cluster clients likewise.
pub const REPLY_PREFIXES: &[PrefixSemantics] = &[
    PrefixSemantics {
        prefix: "MOVED",
        effect: Effect::NotApplied,
        retried_by: "every cluster client (go-redis, redis-py RedisCluster, ioredis Cluster, redis-rs, Lettuce, Jedis)",
    },
    PrefixSemantics {
        prefix: "CLUSTERDOWN",
        effect: Effect::NotApplied,
        retried_by: "go-redis (all clients), redis-py RedisCluster, ioredis Cluster, Lettuce, Jedis",
    },
    PrefixSemantics {
        prefix: "TRYAGAIN",
        effect: Effect::NotApplied,
        retried_by: "go-redis (all clients), redis-py RedisCluster, ioredis Cluster, Lettuce, Jedis",
    },
    PrefixSemantics {
        prefix: "ERR max number of clients reached",
        effect: Effect::NotApplied,
        retried_by: "go-redis (all clients)",
    },
    PrefixSemantics {
        prefix: "MISCONF",
        effect: Effect::NotApplied,
        retried_by: "none",
    },
    PrefixSemantics {
        prefix: "NOAUTH",
        effect: Effect::NotApplied,
        retried_by: "none",
    },
    PrefixSemantics {
        prefix: "NOPROTO",
        effect: Effect::NotApplied,
        retried_by: "none",
    },
    PrefixSemantics {
        prefix: "EXECABORT",
        effect: Effect::NotApplied,
        retried_by: "none",
    },
    PrefixSemantics {
        prefix: "WRONGTYPE",
        effect: Effect::Failed,
        retried_by: "none",
    },
    PrefixSemantics {
        prefix: "ERR",
        effect: Effect::Failed,
        retried_by: "none",
    },
    PrefixSemantics {
        prefix: "UNCERTAIN",
        effect: Effect::Unknown,
        retried_by: "none",
    },
];

/// Prefixes some stock client resends on without telling the application.
pub const RETRIED_PREFIXES: &[&str] = &[
    "MOVED",
    "ASK",
    "CLUSTERDOWN",
    "TRYAGAIN",
    "MASTERDOWN",
    "LOADING",
    "READONLY",
    "ERR max number of clients reached",
];

impl Error {
    /// A generic `-ERR` error.
    pub fn err(text: impl Into<String>) -> Error {
        Error::Err(text.into())
    }

    /// The error reply for this error.
    pub fn to_resp(&self) -> Reply {
        Reply::error(self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_prefixes_that_clients_retry_promise_not_applied() {
        for row in REPLY_PREFIXES {
            let retried = RETRIED_PREFIXES.iter().any(|p| row.prefix.starts_with(p));
            assert_eq!(retried, row.retried_by != "none", "{}", row.prefix);
            if retried {
                assert_eq!(row.effect, Effect::NotApplied, "{}", row.prefix);
            }
        }
        let uncertain = Error::Uncertain("x".into()).to_string();
        assert!(!RETRIED_PREFIXES.iter().any(|p| uncertain.starts_with(p)));
        assert!(
            Error::Resend("x".into())
                .to_string()
                .starts_with(RESEND_PREFIX)
        );
    }

    #[test]
    fn error_text_carries_redis_prefix() {
        assert_eq!(Error::NoAuth.to_string(), "NOAUTH Authentication required.");
        assert_eq!(
            Error::err("syntax error").to_resp(),
            Reply::error("ERR syntax error")
        );
    }
}
