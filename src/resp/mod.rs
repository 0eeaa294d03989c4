//! The wire: RESP request parsing (client → server) and reply encoding (server → client).
//!
//! Nothing here touches a socket, raft or storage: the parser turns bytes into argument
//! vectors and the encoder turns [`reply::Reply`] values into bytes. Redis's integer syntax
//! ([`string2ll`]) lives here too: the protocol's counts and lengths use it, and so does every
//! integer argument and stored integer above.

pub mod encode;
mod integer;
pub mod parser;
pub mod reply;
pub mod scan;

pub use integer::string2ll;
pub use parser::{ParserLimits, ProtocolError, RequestParser};
pub use reply::{Protocol, Reply};
