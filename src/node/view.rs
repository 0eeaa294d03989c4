//! The node's view of its cluster at one moment (members, roles, the leader), as the CLUSTER
//! replies, INFO and RAFT.MEMBERS show it: plain data, read by the layers above instead of raft's
//! metrics.

use crate::config::Member;

/// Raft role of a node, as the CLUSTER and INFO replies show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The current leader (Redis: master).
    Leader,
    /// A voting follower (Redis: slave/replica).
    Follower,
    /// A non-voting member catching up (Redis: slave/replica).
    Learner,
    /// Campaigning or without a leader.
    Candidate,
}

/// One member as the CLUSTER replies show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    /// Raft node id.
    pub id: u64,
    /// Its addresses.
    pub member: Member,
    /// Whether it votes.
    pub voter: bool,
    /// Highest log index known to be replicated to it (leader's view), if known.
    pub matched_index: Option<u64>,
    /// How long ago it last acknowledged the leader (leader's view: zero for the leader
    /// itself, `None` on other nodes or if it never answered).
    pub last_ack: Option<std::time::Duration>,
}

impl ClusterView {
    /// `leader`, `follower` or `learner`: a member's role as RAFT.MEMBERS and INFO show it.
    pub fn role_name(&self, member: &MemberView) -> &'static str {
        if self.leader == Some(member.id) {
            "leader"
        } else if member.voter {
            "follower"
        } else {
            "learner"
        }
    }
}

/// What this node knows of the cluster at one moment; the input of every CLUSTER reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterView {
    /// This node's id.
    pub me: u64,
    /// This node's role.
    pub my_role: Role,
    /// The leader, if one is known.
    pub leader: Option<u64>,
    /// Current raft term.
    pub term: u64,
    /// Every member, sorted by id.
    pub members: Vec<MemberView>,
    /// Last log index committed, as this node knows it.
    pub commit_index: u64,
}
