//! Client sessions of the replicated state: which identified requests were applied, and what
//! they answered, so that a request sent again after a lost reply is answered, never applied
//! twice (the Raft dissertation's client sessions, §6.3).
//!
//! # Who the clients are
//! Every node is a raft client: it gives each write it proposes or forwards a [`RequestId`]
//! (its node id, a per-process incarnation, a sequence number) and sends the same id again,
//! to whichever node leads, until it has an answer. A session is one (node, incarnation).
//!
//! # Bounds, all deterministic
//! Everything here runs inside apply and changes only with the log: the time is the log
//! entry's, never a clock.
//! - A request carries `answered_below`: every request of its session with a lower sequence
//!   number has had its answer delivered, so those replies are dropped.
//! - A session not seen for [`SESSION_IDLE_MS`] of log time is dropped whole (its process died
//!   or restarted under a new incarnation). A sender gives up resending long before that.
//! - At most [`REPLIES_PER_SESSION_MAX`] replies per session and [`SESSIONS_MAX`] sessions:
//!   past that the oldest go first. A request whose reply was dropped this way and that is sent
//!   again is not applied again: it is answered with an uncertain-outcome error.
//!
//! # Must not
//! Read a clock, or know anything of how requests travel.

use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use crate::raft::{RequestId, Response};
use crate::resp::Reply;

/// A session idle for this long (log time) is forgotten.
pub const SESSION_IDLE_MS: i64 = 10 * 60 * 1000;
/// Most replies kept for one session.
pub const REPLIES_PER_SESSION_MAX: usize = 100_000;
/// Most sessions kept.
pub const SESSIONS_MAX: usize = 10_000;
/// Idle sessions are looked for at most this often (log time).
const SWEEP_INTERVAL_MS: i64 = 1000;

/// The text of the reply to a request sent again after its reply was forgotten.
pub const FORGOTTEN_REPLY: &str = "UNCERTAIN this request was sent again after its outcome was \
     forgotten; it was not applied again, and whether its first attempt applied is unknown";

/// (node, incarnation).
type SessionKey = (u64, u64);

#[derive(Clone, Debug, PartialEq)]
struct Session {
    last_seen_ms: i64,
    /// Every request below this sequence number has been answered to its sender.
    answered_below: u64,
    /// Replies of applied requests at or above `answered_below`, by sequence number.
    replies: OrdMap<u64, Response>,
}

/// What the table knows of a request about to be applied.
#[derive(Debug, PartialEq)]
pub enum Seen {
    /// Applied before: this is its reply; do not apply it again.
    Applied(Response),
    /// Its reply was dropped (it is below what its sender said was answered, or was evicted):
    /// do not apply it; its outcome is unknown here.
    Forgotten,
    /// Never applied: apply it, then [`Sessions::record`] its reply.
    New,
}

/// The session table: part of the applied state, flushed and snapshotted with it. Cloning is
/// O(1) (persistent maps).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "StoredSessions", into = "StoredSessions")]
pub struct Sessions {
    sessions: OrdMap<SessionKey, Session>,
    replies: usize,
    last_sweep_ms: i64,
}

impl Sessions {
    /// Looks a request up before it is applied at log time `now_ms`, first dropping the replies
    /// its sender no longer needs and sessions idle for too long.
    pub fn check(&mut self, id: RequestId, answered_below: u64, now_ms: i64) -> Seen {
        self.sweep(now_ms);
        let Some(session) = self.sessions.get_mut(&(id.node, id.incarnation)) else {
            return Seen::New;
        };
        session.last_seen_ms = session.last_seen_ms.max(now_ms);
        if answered_below > session.answered_below {
            session.answered_below = answered_below;
            // Usually one reply: the sender's answers arrive in about the order it sent.
            while let Some(oldest) = session
                .replies
                .get_min()
                .map(|(seq, _)| *seq)
                .filter(|&seq| seq < answered_below)
            {
                session.replies.remove(&oldest);
                self.replies -= 1;
            }
        }
        match session.replies.get(&id.seq) {
            Some(response) => Seen::Applied(response.clone()),
            None if id.seq < session.answered_below => Seen::Forgotten,
            None => Seen::New,
        }
    }

    /// Records the reply of a request just applied at log time `now_ms`.
    pub fn record(&mut self, id: RequestId, response: Response, now_ms: i64) {
        let key = (id.node, id.incarnation);
        if !self.sessions.contains_key(&key) {
            self.sessions.insert(
                key,
                Session {
                    last_seen_ms: now_ms,
                    answered_below: 0,
                    replies: OrdMap::new(),
                },
            );
        }
        let session = self.sessions.get_mut(&key).expect("inserted above");
        session.last_seen_ms = session.last_seen_ms.max(now_ms);
        if session.replies.insert(id.seq, response).is_none() {
            self.replies += 1;
        }
        while session.replies.len() > REPLIES_PER_SESSION_MAX {
            let Some(oldest) = session.replies.get_min().map(|(seq, _)| *seq) else {
                break;
            };
            session.replies.remove(&oldest);
            session.answered_below = session.answered_below.max(oldest + 1);
            self.replies -= 1;
        }
        while self.sessions.len() > SESSIONS_MAX {
            let Some(stalest) = self
                .sessions
                .iter()
                .min_by_key(|(key, s)| (s.last_seen_ms, **key))
                .map(|(key, _)| *key)
            else {
                break;
            };
            self.forget(stalest);
        }
    }

    /// Number of sessions and of replies kept (INFO).
    pub fn counts(&self) -> (usize, usize) {
        (self.sessions.len(), self.replies)
    }

    fn forget(&mut self, key: SessionKey) {
        if let Some(session) = self.sessions.remove(&key) {
            self.replies -= session.replies.len();
        }
    }

    fn sweep(&mut self, now_ms: i64) {
        if now_ms - self.last_sweep_ms < SWEEP_INTERVAL_MS {
            return;
        }
        self.last_sweep_ms = now_ms;
        let idle: Vec<SessionKey> = self
            .sessions
            .iter()
            .filter(|(_, s)| now_ms - s.last_seen_ms > SESSION_IDLE_MS)
            .map(|(key, _)| *key)
            .collect();
        for key in idle {
            self.forget(key);
        }
    }
}

/// The answer to a request whose reply was forgotten (see [`Seen::Forgotten`]).
pub fn forgotten_response() -> Response {
    Response::Reply(Reply::error(FORGOTTEN_REPLY))
}

/// How [`Sessions`] is serialized (in the state machine's meta table and in snapshots).
#[derive(Serialize, Deserialize)]
struct StoredSessions {
    last_sweep_ms: i64,
    sessions: Vec<StoredSession>,
}

#[derive(Serialize, Deserialize)]
struct StoredSession {
    node: u64,
    incarnation: u64,
    last_seen_ms: i64,
    answered_below: u64,
    replies: Vec<(u64, Response)>,
}

impl From<Sessions> for StoredSessions {
    fn from(table: Sessions) -> StoredSessions {
        StoredSessions {
            last_sweep_ms: table.last_sweep_ms,
            sessions: table
                .sessions
                .into_iter()
                .map(|((node, incarnation), s)| StoredSession {
                    node,
                    incarnation,
                    last_seen_ms: s.last_seen_ms,
                    answered_below: s.answered_below,
                    replies: s.replies.into_iter().collect(),
                })
                .collect(),
        }
    }
}

impl From<StoredSessions> for Sessions {
    fn from(stored: StoredSessions) -> Sessions {
        let mut table = Sessions {
            last_sweep_ms: stored.last_sweep_ms,
            ..Sessions::default()
        };
        for s in stored.sessions {
            table.replies += s.replies.len();
            table.sessions.insert(
                (s.node, s.incarnation),
                Session {
                    last_seen_ms: s.last_seen_ms,
                    answered_below: s.answered_below,
                    replies: s.replies.into_iter().collect(),
                },
            );
        }
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seq: u64) -> RequestId {
        RequestId {
            node: 1,
            incarnation: 7,
            seq,
        }
    }

    fn reply(n: i64) -> Response {
        Response::Reply(Reply::Integer(n))
    }

    #[test]
    fn sessions_answer_a_duplicate_from_the_table() {
        let mut table = Sessions::default();
        assert_eq!(table.check(id(1), 0, 1000), Seen::New);
        table.record(id(1), reply(5), 1000);
        assert_eq!(table.check(id(1), 0, 1001), Seen::Applied(reply(5)));
        assert_eq!(table.check(id(2), 0, 1001), Seen::New);
        assert_eq!(table.counts(), (1, 1));
    }

    #[test]
    fn sessions_drop_what_the_sender_has_seen_answered() {
        let mut table = Sessions::default();
        for seq in 1..=3 {
            assert_eq!(table.check(id(seq), 1, 1000), Seen::New);
            table.record(id(seq), reply(seq as i64), 1000);
        }
        assert_eq!(table.counts(), (1, 3));
        assert_eq!(table.check(id(4), 3, 1000), Seen::New);
        assert_eq!(table.counts(), (1, 1));
        // Sent again after its sender said it was answered: never applied twice.
        assert_eq!(table.check(id(2), 3, 1000), Seen::Forgotten);
        assert_eq!(table.check(id(3), 3, 1000), Seen::Applied(reply(3)));
    }

    #[test]
    fn sessions_idle_for_too_long_are_forgotten_by_log_time() {
        let mut table = Sessions::default();
        table.check(id(1), 0, 1000);
        table.record(id(1), reply(1), 1000);
        let other = RequestId {
            node: 2,
            incarnation: 1,
            seq: 1,
        };
        table.check(other, 0, 1000 + SESSION_IDLE_MS + 1);
        assert_eq!(table.counts(), (0, 0));
    }

    #[test]
    fn sessions_survive_serialization() {
        let mut table = Sessions::default();
        table.check(id(1), 0, 1000);
        table.record(id(1), reply(1), 1000);
        table.record(id(9), Response::Reply(Reply::ok()), 1001);
        let bytes = postcard::to_stdvec(&table).unwrap();
        let back: Sessions = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, table);
        assert_eq!(back.counts(), (1, 2));
    }
}
