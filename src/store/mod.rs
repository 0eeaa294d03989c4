//! Storage of the applied state: the redb state machine openraft drives, its snapshots, and
//! the command families that apply the log's requests (`crate::raft::Request`).
//!
//! This module never sees a RESP frame or a socket; it knows nothing of who proposed a request.

pub mod commands;
pub mod keyspace;
pub mod layers;
pub mod notify;
pub mod schema;
pub mod sessions;
pub mod state_machine;

pub use state_machine::{Events, Read, StateMachine, StoreReader, verify_snapshot_file};
