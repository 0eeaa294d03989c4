//! Membership and leadership: the node's view of the cluster, joins and removals, leadership
//! transfer, and reads served by followers; the peers' application requests (including
//! published messages for this node's subscribers) arrive here.
//!
//! Membership changes always run on the leader: a node asks the leader over the peer port
//! ([`AppRequest`]) and the leader's [`MembershipService`] adds a learner, waits for it to catch
//! up, then promotes it (or removes a member) through raft's joint consensus.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use openraft::async_runtime::watch::WatchReceiver as _;
use openraft::{ChangeMembers, Instant as _, ReadPolicy, ServerState};
use tokio::sync::oneshot;

use crate::config::Member;
use crate::error::Error;
use crate::node::Raft;
use crate::node::{ClusterView, MemberView, Role};
use crate::node::{LeaderHint, Node, Pending};
use crate::raft::NodeId;
use crate::raft::transport::{AppHandler, AppRequest, AppResponse, PeerNetwork};
use crate::resp::Reply;
use crate::store::Read;

/// How long a follower waits for the leader's read index and for its own apply to reach it.
const FOLLOWER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a join or membership request may take (a learner catches up first).
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a leadership transfer may take.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(5);
/// A voter the leader heard from within this long counts as started when a removal checks
/// that the voters left keep a quorum (etcd's `HealthInterval`).
const HEALTHY_WITHIN: Duration = Duration::from_secs(5);

impl Node {
    /// This node's addresses.
    pub fn member(&self) -> &crate::config::Member {
        &self.member
    }

    /// Whether this node was started as part of a multi-node cluster.
    pub fn clustered(&self) -> bool {
        self.clustered
    }

    /// Whether this node currently leads (as of the last metrics update).
    pub fn is_leader(&self) -> bool {
        self.leader_hint.leader_id() == self.id
    }

    /// The leader this node knows of, with its addresses.
    pub fn leader(&self) -> Option<(NodeId, Member)> {
        self.leader_hint.leader()
    }

    /// Whether this node was a member and has been removed from the cluster.
    pub fn removed(&self) -> bool {
        self.leader_hint.removed()
    }

    /// This node's view of the cluster, for CLUSTER and INFO.
    pub fn cluster_view(&self) -> ClusterView {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let matched = metrics.replication.clone().unwrap_or_default();
        let members = membership
            .nodes()
            .map(|(id, member)| MemberView {
                id: *id,
                member: member.clone(),
                voter: voters.contains(id),
                matched_index: if *id == self.id {
                    metrics.last_log_index
                } else {
                    matched.get(id).and_then(|m| m.as_ref().map(|l| l.index))
                },
                last_ack: last_ack(&metrics, *id),
            })
            .collect();
        let my_role = match metrics.state {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Learner => Role::Learner,
            _ => Role::Candidate,
        };
        ClusterView {
            me: self.id,
            my_role,
            leader: metrics.current_leader,
            term: metrics.current_term,
            members,
            commit_index: metrics.cluster_committed.map_or(0, |l| l.index),
        }
    }

    /// A linearizable read served by this follower (READONLY): it asks the leader for its read
    /// index, waits until its own state machine applied that far, then reads locally.
    pub fn follower_read(self: &Arc<Self>, read: Read) -> Pending {
        let (reply, pending) = oneshot::channel();
        let node = self.clone();
        tokio::spawn(async move {
            let _ = reply.send(node.follower_read_inner(read).await);
        });
        pending
    }

    async fn follower_read_inner(&self, read: Read) -> Result<Reply, Error> {
        if self.leader().is_none() {
            // Just started, or an election: wait for a leader, a whole failover at most.
            self.leader_change(0, self.election_wait()).await;
        }
        let Some((_, leader)) = self.leader() else {
            return Err(Error::ClusterDown("The cluster is down".into()));
        };
        let index = match self
            .peers
            .app_request(
                &leader.peer_addr,
                AppRequest::ReadIndex,
                FOLLOWER_READ_TIMEOUT,
            )
            .await
        {
            Ok(AppResponse::ReadIndex(index)) => index,
            Ok(AppResponse::NotLeader { .. }) => {
                return Err(Error::TryAgain("leadership is changing".into()));
            }
            Ok(other) => return Err(Error::Internal(format!("read index: {other:?}"))),
            Err(err) => return Err(Error::ClusterDown(format!("leader unreachable: {err}"))),
        };
        if let Some(index) = index {
            self.raft
                .wait(Some(FOLLOWER_READ_TIMEOUT))
                .applied_index_at_least(Some(index.index), "follower read")
                .await
                .map_err(|e| Error::TryAgain(format!("follower lagging: {e}")))?;
        }
        let reader = self.reader.clone();
        let responses = tokio::task::spawn_blocking(move || reader.read_many(&[read]))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
            .map_err(|e| Error::Internal(e.to_string()))?;
        responses
            .into_iter()
            .next()
            .ok_or_else(|| Error::Internal("no read result".into()))
    }

    /// Adds a node: as a learner, then, once it caught up, as a voter. Asks the leader.
    pub async fn add_member(&self, id: NodeId, member: Member) -> Result<(), Error> {
        self.membership_request(AppRequest::Join { id, member })
            .await
    }

    /// Removes a node from the cluster. Asks the leader.
    pub async fn remove_member(&self, id: NodeId) -> Result<(), Error> {
        self.membership_request(AppRequest::Remove { id }).await
    }

    async fn membership_request(&self, request: AppRequest) -> Result<(), Error> {
        let Some((_, leader)) = self.leader() else {
            return Err(Error::ClusterDown("The cluster is down".into()));
        };
        match self
            .peers
            .app_request(&leader.peer_addr, request, MEMBERSHIP_TIMEOUT)
            .await
        {
            Ok(AppResponse::Ok) => Ok(()),
            Ok(AppResponse::NotLeader { .. }) => {
                Err(Error::TryAgain("leadership is changing".into()))
            }
            Ok(AppResponse::Error(err)) => Err(Error::err(err)),
            Ok(other) => Err(Error::Internal(format!("{other:?}"))),
            // The request may have reached the leader: only a client-side retry would tell.
            Err(err) => Err(Error::Uncertain(format!(
                "no answer from the leader ({err}); the membership change may or may not have \
                 been made: see RAFT.MEMBERS"
            ))),
        }
    }

    /// Hands leadership to `to` (or to the most up-to-date other voter) and waits, bounded,
    /// until it leads.
    pub async fn transfer_leadership(&self, to: Option<NodeId>) -> Result<NodeId, Error> {
        if !self.is_leader() {
            return Err(Error::err("this node is not the leader"));
        }
        let view = self.cluster_view();
        let others = view.members.iter().filter(|m| m.voter && m.id != self.id);
        let target = match to {
            Some(id) => others
                .clone()
                .find(|m| m.id == id)
                .map(|m| m.id)
                .ok_or_else(|| Error::err(format!("node {id} is not another voter")))?,
            None => others
                .max_by_key(|m| m.matched_index)
                .map(|m| m.id)
                .ok_or_else(|| Error::err("no other voter to transfer leadership to"))?,
        };
        self.raft
            .trigger()
            .transfer_leader(target)
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        self.raft
            .wait(Some(TRANSFER_TIMEOUT))
            .metrics(|m| m.current_leader == Some(target), "leadership transfer")
            .await
            .map_err(|e| {
                Error::Uncertain(format!(
                    "leadership transfer did not finish in time ({e}); see INFO raft"
                ))
            })?;
        Ok(target)
    }
}

/// Asks a member to add this node, following redirects to the leader, until it succeeds.
pub async fn join_cluster(peers: PeerNetwork, id: NodeId, member: Member, via: String) {
    let mut target = via;
    loop {
        let request = AppRequest::Join {
            id,
            member: member.clone(),
        };
        match peers
            .app_request(&target, request, MEMBERSHIP_TIMEOUT)
            .await
        {
            Ok(AppResponse::Ok) => {
                tracing::info!(node_id = id, "joined the cluster as a voter");
                return;
            }
            Ok(AppResponse::NotLeader {
                leader: Some((_, leader)),
            }) => target = leader.peer_addr,
            Ok(other) => tracing::warn!(response = ?other, "join not accepted yet; retrying"),
            Err(err) => tracing::warn!(error = %err, via = %target, "join failed; retrying"),
        }
        // Bounded retry pace while the cluster elects or the leader is unreachable.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Serves the application requests of the peer port on the leader: joins, removals and read
/// indexes. A non-leader answers with the leader it knows of.
#[derive(Clone)]
pub struct MembershipService {
    raft: Raft,
    peers: PeerNetwork,
    hint: Arc<LeaderHint>,
    pubsub: Arc<super::pubsub::Hub>,
}

impl MembershipService {
    /// A service acting through `raft`, telling removed nodes through `peers`, recording in
    /// `hint` when this node itself is removed, and delivering messages other nodes publish
    /// to this node's subscribers in `pubsub`.
    pub fn new(
        raft: Raft,
        peers: PeerNetwork,
        hint: Arc<LeaderHint>,
        pubsub: Arc<super::pubsub::Hub>,
    ) -> MembershipService {
        MembershipService {
            raft,
            peers,
            hint,
            pubsub,
        }
    }

    fn not_leader(&self) -> Option<AppResponse> {
        let metrics = self.raft.metrics().borrow_watched().clone();
        if metrics.state == ServerState::Leader {
            return None;
        }
        let leader = metrics.current_leader.and_then(|id| {
            metrics
                .membership_config
                .membership()
                .get_node(&id)
                .cloned()
                .map(|m| (id, m))
        });
        Some(AppResponse::NotLeader { leader })
    }

    async fn handle_request(self, request: AppRequest) -> AppResponse {
        if let AppRequest::Removed = request {
            self.hint.mark_removed();
            return AppResponse::Ok;
        }
        if let AppRequest::Publish(messages) = request {
            // Any member delivers, leader or not: messages are not raft state.
            return AppResponse::Delivered(
                messages
                    .iter()
                    .map(|published| self.pubsub.deliver_here(published))
                    .collect(),
            );
        }
        if let Some(redirect) = self.not_leader() {
            return redirect;
        }
        match request {
            AppRequest::ReadIndex => {
                match self.raft.get_read_linearizer(ReadPolicy::ReadIndex).await {
                    Ok(linearizer) => {
                        AppResponse::ReadIndex(Some(*linearizer.read_log_id().log_id()))
                    }
                    Err(err) => AppResponse::Error(err.to_string()),
                }
            }
            AppRequest::Join { id, member } => self.join(id, member).await,
            AppRequest::Remove { id } => self.remove(id).await,
            AppRequest::Removed | AppRequest::Publish(_) => AppResponse::Ok,
        }
    }

    async fn join(&self, id: NodeId, member: Member) -> AppResponse {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership();
        if membership.voter_ids().any(|v| v == id) {
            return AppResponse::Ok;
        }
        if membership.get_node(&id).is_none() {
            tracing::info!(node_id = id, %member, "adding a learner");
            if let Err(err) = self.raft.add_learner(id, member, true).await {
                return AppResponse::Error(format!("adding node {id} as a learner: {err}"));
            }
        }
        tracing::info!(node_id = id, "promoting the learner to voter");
        match self
            .raft
            .change_membership(ChangeMembers::AddVoterIds([id].into()), false)
            .await
        {
            Ok(_) => AppResponse::Ok,
            Err(err) => AppResponse::Error(format!("promoting node {id}: {err}")),
        }
    }

    async fn remove(&self, id: NodeId) -> AppResponse {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership();
        let Some(removed) = membership.get_node(&id).cloned() else {
            return AppResponse::Error(format!("node {id} is not a member"));
        };
        let change = if membership.voter_ids().any(|v| v == id) {
            let left: Vec<NodeId> = membership.voter_ids().filter(|v| *v != id).collect();
            let started = left
                .iter()
                .filter(|v| last_ack(&metrics, **v).is_some_and(|ago| ago < HEALTHY_WITHIN))
                .count();
            if started <= left.len() / 2 {
                // Joint consensus needs a quorum of the voters left too: committing the change
                // would stall every write until a stopped voter came back.
                return AppResponse::Error(format!(
                    "removing node {id} refused: only {started} of the {} voters left have \
                     answered the leader within {}s, fewer than a quorum (restart the \
                     stopped ones first)",
                    left.len(),
                    HEALTHY_WITHIN.as_secs()
                ));
            }
            ChangeMembers::RemoveVoters([id].into())
        } else {
            ChangeMembers::RemoveNodes([id].into())
        };
        tracing::info!(node_id = id, "removing a member");
        match self.raft.change_membership(change, false).await {
            Ok(_) => {
                // Best effort: the removed node stops serving instead of waiting for a leader.
                let peers = self.peers.clone();
                tokio::spawn(async move {
                    let _ = peers
                        .app_request(
                            &removed.peer_addr,
                            AppRequest::Removed,
                            FOLLOWER_READ_TIMEOUT,
                        )
                        .await;
                });
                AppResponse::Ok
            }
            Err(err) => AppResponse::Error(format!("removing node {id}: {err}")),
        }
    }
}

/// How long ago `id` last acknowledged this node as leader (zero for the leader itself);
/// `None` when this node does not lead or `id` never answered.
fn last_ack(
    metrics: &openraft::RaftMetrics<crate::raft::TypeConfig>,
    id: NodeId,
) -> Option<Duration> {
    let acked = metrics.heartbeat.as_ref()?;
    if id == metrics.id {
        return Some(Duration::ZERO);
    }
    acked.get(&id).copied().flatten().map(|at| at.elapsed())
}

impl AppHandler for MembershipService {
    fn handle(&self, request: AppRequest) -> BoxFuture<'static, AppResponse> {
        self.clone().handle_request(request).boxed()
    }
}
