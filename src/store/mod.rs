//! Storage of the applied state: the redb state machine, its snapshots, and the
//! Request/Response values that travel through the raft log.
//!
//! This module never sees a RESP frame or a socket; it knows nothing of who proposed a request.

pub mod commands;
pub mod keyspace;
pub mod layers;
pub mod request;
pub mod sessions;
pub mod state_machine;

pub use request::{Request, RequestId, Response};
pub use state_machine::{Read, SnapshotFile, StateMachine, StoreReader, verify_snapshot_file};
