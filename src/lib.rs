//! redraft: a Redis-protocol compatible, strongly consistent key-value store.
//!
//! # Architecture
//! Data flows one way, one module per hop:
//!
//! ```text
//! socket ─► resp::parser ─► command ─► node ─┬─► raft write: Request through the log ─► store apply ─► Response
//! (server)   (bytes→args)   (args→Command)   └─► linearizable read: ReadIndex, then a store read
//! reply ◄── resp::reply (RESP2/RESP3 per connection) ◄── Reply
//! ```
//!
//! - [`resp`] turns bytes into argument vectors and [`resp::Reply`] values into bytes.
//! - [`command`] owns the command table and turns arguments into typed commands.
//! - [`server`] owns sockets, connections and the client registry.
//! - [`node`] owns the raft node and batches client requests into log entries and reads into
//!   ReadIndex rounds.
//! - [`raft`] is openraft's configuration, log store and network; it carries requests opaquely.
//! - [`store`] is the redb state machine and its snapshots.

pub mod admin;
pub mod cluster;
pub mod command;
pub mod config;
pub mod error;
pub mod node;
pub mod raft;
pub mod resp;
pub mod server;
pub mod store;

pub use config::Config;
pub use server::run;
