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
//! - [`redis`] holds what Redis defines about commands: the command table, glob matching.
//! - [`command`] turns arguments into typed commands.
//! - [`server`] owns sockets, connections and the client registry.
//! - [`node`] owns the raft node: it batches client requests into log entries and reads into
//!   ReadIndex rounds, changes membership, and keeps the view of the cluster the layers above
//!   read ([`node::ClusterView`]).
//! - [`cluster`] decides where a command runs on a follower (proxy to the leader or `-MOVED`)
//!   and presents the cluster to Redis Cluster clients.
//! - [`admin`] is the operator side: `redraft cluster …` subcommands.
//! - [`raft`] is openraft's configuration, log store and peer transport; it carries requests
//!   opaquely.
//! - [`store`] is the redb state machine and its snapshots.
//! - [`disk`] watches the data directory's free space: writes and snapshots that would fill it
//!   are refused or deferred.
//! - [`durable`] makes directory entries durable (the fsyncs of directories a power loss needs).
//! - [`clock`] is the one place the wall clock is read.
//! - [`config`] is the command line and the addresses of a member.
//!
//! # Layers
//! A part of src/ may use only the parts below it, never one above, so there are no circles.
//! `tests/layers.rs` checks every `crate::` path against this line (its known exceptions, being
//! removed, are listed there):
//!
//! Layers, lowest first: resp, redis, admin, config, clock, durable, error, disk, raft, store,
//! command, node, cluster, server.

pub mod admin;
pub mod clock;
pub mod cluster;
pub mod command;
pub mod config;
pub mod disk;
pub mod durable;
pub mod error;
pub mod node;
pub mod raft;
pub mod redis;
pub mod resp;
pub mod server;
pub mod store;

pub use config::Config;
pub use server::run;
