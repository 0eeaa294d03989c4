//! What Redis itself defines about commands, kept exactly as Redis has it: the command table
//! (names, arity, flags, keys, documentation and the error texts around them), glob
//! matching, and the x87 `long double` arithmetic its float commands compute in. It knows nothing of sockets, storage or raft; it builds its replies from
//! [`crate::resp::Reply`] values.

/// The Redis version redraft answers as (INFO, HELLO, scripts' `redis.REDIS_VERSION`).
pub const REDIS_VERSION: &str = "7.0.15";

pub mod double;
pub mod glob;
pub mod long_double;
pub mod table;
