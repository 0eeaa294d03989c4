//! What the server asks of raft outside the request path: snapshots on demand (SAVE,
//! BGSAVE), how many followers hold a write (WAIT), and this node's raft state for INFO, as
//! plain data so that no layer above imports openraft.

use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver as _;

use crate::error::Error;
use crate::node::Node;
use crate::raft::{LogId, TypeConfig};

/// This node's raft state at one moment, as INFO's raft section shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftStatus {
    /// This node's id.
    pub id: u64,
    /// Its raft state, lowercase (`leader`, `follower`, `candidate`, `learner`, `shutdown`).
    pub state: String,
    /// The current term.
    pub term: u64,
    /// The leader this node knows of.
    pub leader: Option<u64>,
    /// Highest log index known to be committed (0: none).
    pub commit_index: u64,
    /// Highest log index applied here.
    pub applied_index: u64,
    /// Highest log index stored here.
    pub last_log_index: u64,
    /// Index the latest snapshot covers.
    pub snapshot_index: u64,
    /// Highest index removed from the log.
    pub purged_index: u64,
    /// Voting members.
    pub voters: usize,
}

fn index(log_id: Option<LogId>) -> u64 {
    log_id.map_or(0, |l| l.index)
}

impl Node {
    /// This node's raft state now.
    pub fn raft_status(&self) -> RaftStatus {
        let metrics = self.raft.metrics().borrow_watched().clone();
        RaftStatus {
            id: metrics.id,
            state: format!("{:?}", metrics.state).to_ascii_lowercase(),
            term: metrics.current_term,
            leader: metrics.current_leader,
            commit_index: index(metrics.cluster_committed),
            applied_index: index(metrics.last_applied),
            last_log_index: metrics.last_log_index.unwrap_or(0),
            snapshot_index: index(metrics.snapshot),
            purged_index: index(metrics.purged),
            voters: metrics.membership_config.membership().voter_ids().count(),
        }
    }

    /// Starts a snapshot (BGSAVE).
    pub async fn start_snapshot(&self) -> Result<(), Error> {
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| Error::Internal(e.to_string()))
    }

    /// Builds a snapshot and waits, up to a minute, until one covers everything applied when
    /// called (SAVE).
    pub async fn snapshot_applied(&self) -> Result<(), Error> {
        let applied = index(self.raft.metrics().borrow_watched().last_applied);
        self.start_snapshot().await?;
        self.raft
            .wait(Some(Duration::from_secs(60)))
            .metrics(
                |m| m.snapshot.is_some_and(|s| s.index >= applied),
                "snapshot",
            )
            .await
            .map_err(|e| Error::err(format!("snapshot did not finish: {e}")))?;
        Ok(())
    }

    /// How many other members hold the log up to `index`, waiting up to `timeout` (`None`:
    /// forever) for `wanted` of them (WAIT).
    pub async fn replicas_holding(
        &self,
        index: u64,
        wanted: i64,
        timeout: Option<Duration>,
    ) -> i64 {
        let me = self.id();
        let count = |m: &openraft::RaftMetrics<TypeConfig>| -> i64 {
            m.replication.as_ref().map_or(0, |r| {
                r.iter()
                    .filter(|(id, matched)| {
                        **id != me && matched.as_ref().is_some_and(|l| l.index >= index)
                    })
                    .count() as i64
            })
        };
        let waited = self
            .raft
            .wait(timeout)
            .metrics(|m| count(m) >= wanted, "WAIT")
            .await;
        let metrics = match waited {
            Ok(metrics) => metrics,
            Err(_) => self.raft.metrics().borrow_watched().clone(),
        };
        count(&metrics)
    }
}
