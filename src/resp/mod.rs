//! The wire: RESP request parsing (client → server) and reply encoding (server → client).
//!
//! Nothing here touches a socket, raft or storage: the parser turns bytes into argument
//! vectors and the encoder turns [`reply::Reply`] values into bytes.

pub mod parser;
pub mod reply;

pub use parser::{ParserLimits, ProtocolError, RequestParser};
pub use reply::{Protocol, Reply};
