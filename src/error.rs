//! The one error type of the request path, and its Redis error reply.
//!
//! Every user-visible failure carries its Redis prefix (`ERR`, `WRONGTYPE`, `NOAUTH`, `NOPROTO`,
//! `CLUSTERDOWN`, `TRYAGAIN`, `MISCONF`) in its `Display` text, so `to_resp` is the same everywhere.

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
    /// Leadership moved while the request was in flight; its outcome may be unknown.
    #[error("TRYAGAIN {0}")]
    TryAgain(String),
    /// The data directory is (nearly) full: a write that adds data is refused, as Redis
    /// refuses writes when it cannot persist them.
    #[error("MISCONF {0}")]
    DiskFull(String),
    /// Storage or raft failed on this node.
    #[error("ERR internal error: {0}")]
    Internal(String),
}

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
    fn error_text_carries_redis_prefix() {
        assert_eq!(Error::NoAuth.to_string(), "NOAUTH Authentication required.");
        assert_eq!(
            Error::err("syntax error").to_resp(),
            Reply::error("ERR syntax error")
        );
    }
}
