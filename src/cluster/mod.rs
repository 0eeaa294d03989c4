//! The cluster as clients see it: routing of client commands on followers (the proxy to the
//! leader, or `-MOVED`) and the CLUSTER command family, from the node's [`crate::node::ClusterView`].
//!
//! Nothing here parses client bytes or touches the state machine or raft.

pub mod proxy;
pub mod topology;
