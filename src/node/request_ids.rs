//! Request ids: what this process stamps on the writes it proposes or forwards, so that the
//! replicated session table (`crate::store::sessions`) answers a resent one instead of applying
//! it twice.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

/// Sequence numbers issued in order, and which of them still await their answer.
#[derive(Debug, Default)]
pub struct Outstanding {
    next: AtomicU64,
    awaiting: Mutex<BTreeSet<u64>>,
}

impl Outstanding {
    /// Numbers from `first` on.
    pub fn starting_at(first: u64) -> Outstanding {
        Outstanding {
            next: AtomicU64::new(first),
            awaiting: Mutex::default(),
        }
    }

    /// The next number, awaiting its answer until [`Outstanding::answered`]. Taken and marked
    /// awaiting under one lock, so [`Outstanding::oldest`] never passes a number issued but not
    /// yet awaiting.
    pub fn issue(&self) -> u64 {
        let mut awaiting = self.awaiting.lock().unwrap_or_else(|p| p.into_inner());
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        awaiting.insert(number);
        number
    }

    /// `number` has its answer.
    pub fn answered(&self, number: u64) {
        self.awaiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&number);
    }

    /// The oldest number still awaiting its answer, or the next to be issued if none is: every
    /// lower number has been answered.
    pub fn oldest(&self) -> u64 {
        let awaiting = self.awaiting.lock().unwrap_or_else(|p| p.into_inner());
        awaiting
            .first()
            .copied()
            .unwrap_or_else(|| self.next.load(Ordering::Relaxed))
    }

    /// Whether nothing awaits an answer.
    pub fn is_idle(&self) -> bool {
        self.awaiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }
}

/// The ids this process gives the writes it proposes or forwards (see `store::sessions`): one
/// session per process, sequence numbers from 1, and which of them still await an answer.
#[derive(Debug)]
pub struct RequestIds {
    node: NodeId,
    incarnation: u64,
    sequence: Outstanding,
}

impl RequestIds {
    pub(super) fn new(node: NodeId) -> RequestIds {
        use std::hash::{BuildHasher, Hasher};
        // A new incarnation at every start: random, mixed with the time and the process id.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_i64(wall_clock_ms());
        hasher.write_u32(std::process::id());
        RequestIds {
            node,
            incarnation: hasher.finish(),
            sequence: Outstanding::starting_at(1),
        }
    }

    /// A new id, awaiting its answer until the lease is dropped. (`answered_below` never sees
    /// a sequence number issued but not yet awaiting: it would tell the session table that the
    /// request was answered, and the request would then be refused as forgotten.)
    pub fn issue(self: &Arc<Self>) -> IdLease {
        IdLease {
            ids: self.clone(),
            id: RequestId {
                node: self.node,
                incarnation: self.incarnation,
                seq: self.sequence.issue(),
            },
        }
    }

    /// Every request with a lower sequence number has been answered.
    pub fn answered_below(&self) -> u64 {
        self.sequence.oldest()
    }
}

/// A request id whose answer is awaited; dropping it marks it answered.
#[derive(Debug)]
pub struct IdLease {
    ids: Arc<RequestIds>,
    id: RequestId,
}

impl IdLease {
    /// The id.
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// `request` carrying this id, ready to propose.
    pub fn wrap(&self, request: Request) -> Request {
        Request::Identified {
            id: self.id,
            answered_below: self.ids.answered_below(),
            request: Box::new(request),
        }
    }

    /// The `REDRAFT.REQ` header that carries this id ahead of a forwarded command.
    pub fn header(&self) -> [Bytes; 5] {
        [
            Bytes::from_static(b"REDRAFT.REQ"),
            Bytes::from(self.id.node.to_string()),
            Bytes::from(self.id.incarnation.to_string()),
            Bytes::from(self.id.seq.to_string()),
            Bytes::from(self.ids.answered_below().to_string()),
        ]
    }
}

impl Drop for IdLease {
    fn drop(&mut self) {
        self.ids.sequence.answered(self.id.seq);
    }
}
