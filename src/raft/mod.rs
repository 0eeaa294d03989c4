//! Consensus: openraft's type configuration, the segmented log store and the peer transport
//! that moves raft messages between nodes.
//!
//! This module carries [`Request`]s opaquely: it never interprets them and never sees a RESP
//! frame. Everything openraft-specific lives here so that an openraft alpha bump touches one
//! place.

pub mod log_store;
pub mod request;
pub mod transport;

use std::path::PathBuf;

pub use request::{Request, RequestId, Response};

/// Raft node identifier.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The raft type configuration of redraft.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = crate::config::Member,
);

/// A log entry.
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
/// A log id (leader term and index).
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
/// A vote.
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
/// Membership with the log id that introduced it.
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
/// The snapshot payload openraft moves around: a complete snapshot file on disk (its format is
/// the state machine's).
#[derive(Debug)]
pub struct SnapshotFile {
    /// Path of the file.
    pub path: PathBuf,
}

/// A snapshot as openraft passes it around.
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotFile>;
