//! The batchers: one task packs queued writes into log entries and proposes them, another
//! answers queued reads in shared ReadIndex rounds (see the module doc of `crate::node`).

use super::*;

/// Most requests packed into one log entry.
const BATCH_REQUESTS_MAX: usize = 1024;
/// Most payload bytes packed into one log entry (a single larger request still goes alone).
const BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Most reads answered by one ReadIndex round.
const READ_ROUND_MAX: usize = 4096;
/// Most write proposals in flight at once. While they are, new writes wait in the queue and
/// leave together as the next entry: the batch grows with the load instead of each request
/// becoming its own entry (and its own apply, fsync share and reply wake-up). Two lets the log
/// write of one batch overlap the apply of the one before.
const WRITES_IN_FLIGHT_MAX: usize = 2;
/// Most ReadIndex rounds in flight at once; reads arriving meanwhile share the next round.
const READ_ROUNDS_IN_FLIGHT_MAX: usize = 2;

/// Most requests waiting in the batchers' queues before connections hold their keyspace
/// commands back (see [`QueueDepth`]).
pub const QUEUED_MAX: usize = 64 * 1024;

/// How many requests wait in this node's queues between tasks: the batchers' and the proxy's
/// (commands not yet written to the leader). Each queued request holds a [`QueueSlot`] until
/// its batch, read round or proxy write takes it (or it is dropped). The queues themselves never
/// refuse a request (a refusal would be a reply the client did not earn), so the bound is kept
/// where commands enter: a connection dispatches a keyspace command only while
/// [`QueueDepth::has_room`], and otherwise stops reading until [`QueueDepth::room`]. Requests
/// leave the queues as the batchers and the proxy take them, whatever the clients do, so a
/// client that never reads its replies cannot hold the room.
#[derive(Debug, Default)]
pub struct QueueDepth {
    queued: std::sync::atomic::AtomicUsize,
    room: tokio::sync::Notify,
}

impl QueueDepth {
    /// Whether the queues have room for more.
    pub fn has_room(&self) -> bool {
        self.queued.load(std::sync::atomic::Ordering::Acquire) < QUEUED_MAX
    }

    /// Waits until the queues have room.
    pub async fn room(&self) {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if self.has_room() {
                return;
            }
            room.await;
        }
    }

    /// A place in the queues for one request.
    pub fn slot(self: &Arc<Self>) -> QueueSlot {
        self.queued
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        QueueSlot(self.clone())
    }

    fn taken(&self) {
        let before = self
            .queued
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        if before == QUEUED_MAX {
            self.room.notify_waiters();
        }
    }
}

/// One request's place in the queues (see [`QueueDepth`]), given back when dropped.
#[derive(Debug)]
pub struct QueueSlot(Arc<QueueDepth>);

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.0.taken();
    }
}

pub(super) struct QueuedWrite {
    pub(super) request: Request,
    pub(super) reply: oneshot::Sender<Result<Reply, Error>>,
    /// Its place in the queues, given back when the batcher takes it.
    pub(super) _slot: QueueSlot,
}

pub(super) struct QueuedRead {
    pub(super) read: Read,
    pub(super) reply: oneshot::Sender<Result<Reply, Error>>,
    /// Its place in the queues, given back when the batcher takes it.
    pub(super) _slot: QueueSlot,
}

/// Values below this size are copied out of the connection's read buffer before they enter
/// the log, so a cached log entry never pins a whole read buffer.
const DETACH_BYTES_MAX: usize = 16 * 1024;

/// Copies `bytes` out of the buffer it shares if it is small (under `DETACH_BYTES_MAX`).
pub fn detach_small(bytes: &mut Bytes) {
    if bytes.len() < DETACH_BYTES_MAX {
        *bytes = Bytes::copy_from_slice(bytes);
    }
}

pub(super) fn detach_small_buffers(request: &mut Request) {
    let detach = detach_small;
    match request {
        Request::Command { args, .. } => args.iter_mut().for_each(detach),
        Request::Expire { keys, .. } => keys.iter_mut().for_each(detach),
        Request::Exec {
            commands, watched, ..
        } => {
            commands.iter_mut().flatten().for_each(detach);
            watched.iter_mut().for_each(|(key, _)| detach(key));
        }
        Request::Batch(requests) => {
            // A shared batch is already in the log: detached when it was queued.
            if let Some(requests) = Arc::get_mut(requests) {
                requests.iter_mut().for_each(detach_small_buffers);
            }
        }
        Request::Identified { request, .. } => detach_small_buffers(request),
    }
}

/// What a write that did not complete here means: the sender resends the same request id to
/// the leader (an entry that was appended may still commit through another leader; the
/// session table answers it then instead of applying it twice).
fn write_error(err: ClientWriteError<TypeConfig>) -> Error {
    match err {
        ClientWriteError::ForwardToLeader(_) => Error::Resend("this node is not the leader".into()),
        ClientWriteError::LogEntryDiscarded(_) => {
            Error::Resend("leadership changed before the write committed here".into())
        }
        other => Error::Internal(other.to_string()),
    }
}

fn read_error(err: RaftError<TypeConfig, LinearizableReadError<TypeConfig>>) -> Error {
    match err {
        RaftError::APIError(LinearizableReadError::ForwardToLeader(_)) => {
            Error::Resend("this node is not the leader".into())
        }
        RaftError::APIError(LinearizableReadError::QuorumNotEnough(_)) => {
            Error::ClusterDown("no quorum to confirm leadership".into())
        }
        RaftError::Fatal(fatal) => Error::Internal(fatal.to_string()),
    }
}

fn request_size(request: &Request) -> usize {
    match request {
        Request::Command { args, .. } => args.iter().map(|a| a.len()).sum(),
        Request::Expire { keys, .. } => keys.iter().map(|k| k.len()).sum(),
        Request::Exec { commands, .. } => commands.iter().flatten().map(|a| a.len()).sum(),
        Request::Batch(requests) => requests.iter().map(request_size).sum(),
        Request::Identified { request, .. } => request_size(request),
    }
}

/// Whether a request may add data (Redis's `denyoom` commands; unknown names count as adding),
/// so that it is refused when the disk is nearly full. Deletes and expiry never are.
fn adds_data(request: &Request) -> bool {
    let adds = |args: &[Bytes]| {
        args.first()
            .and_then(|name| crate::redis::table::lookup(name))
            .is_none_or(|spec| spec.flags.contains(&"denyoom"))
    };
    match request {
        Request::Command { args, .. } => adds(args),
        Request::Expire { .. } => false,
        Request::Exec { commands, .. } => commands.iter().any(|c| adds(c)),
        Request::Batch(requests) => requests.iter().any(adds_data),
        Request::Identified { request, .. } => adds_data(request),
    }
}

/// Packs queued writes into log entries and proposes them in queue order. Writes that would
/// add data to a nearly full disk are answered `-MISCONF` instead (see [`crate::disk`]).
pub(super) async fn run_write_batcher(
    raft: Raft,
    mut queue: mpsc::UnboundedReceiver<QueuedWrite>,
    disk: DiskSpace,
) {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(WRITES_IN_FLIGHT_MAX));
    let mut next: Option<QueuedWrite> = None;
    loop {
        let first = match next.take() {
            Some(write) => write,
            None => match queue.recv().await {
                Some(write) => write,
                None => return,
            },
        };
        // Writes queued while earlier proposals are in flight join this one.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = request_size(&first.request);
        let mut batch = vec![first];
        while batch.len() < BATCH_REQUESTS_MAX && bytes < BATCH_BYTES_MAX {
            match queue.try_recv() {
                Ok(write) => {
                    bytes += request_size(&write.request);
                    batch.push(write);
                }
                Err(_) => break,
            }
        }
        if bytes > BATCH_BYTES_MAX && batch.len() > 1 {
            // The last one overflowed the entry: it starts the next one.
            next = batch.pop();
        }

        let mut admission = disk.admission();
        let mut admitted = Vec::with_capacity(batch.len());
        for write in batch {
            // The command table is consulted only for a request that does not fit.
            if let Err(refused) = admission.admit(request_size(&write.request))
                && adds_data(&write.request)
            {
                let _ = write.reply.send(Err(refused));
                continue;
            }
            admitted.push(write);
        }
        let batch = admitted;
        if batch.is_empty() {
            continue;
        }
        let (requests, replies): (Vec<Request>, Vec<_>) =
            batch.into_iter().map(|w| (w.request, w.reply)).unzip();
        let payload = if requests.len() == 1 {
            requests.into_iter().next().expect("one request")
        } else {
            Request::Batch(requests.into())
        };
        let (responder, outcome) = ProgressResponder::complete_only();
        if let Err(fatal) = raft.client_write_ff(payload, Some(responder)).await {
            for reply in replies {
                let _ = reply.send(Err(Error::Internal(fatal.to_string())));
            }
            continue;
        }
        tokio::spawn(async move {
            let outcome = outcome.await;
            drop(permit);
            let result = match outcome {
                Ok(Ok(written)) => Ok(written.data),
                Ok(Err(err)) => Err(write_error(err)),
                Err(_) => Err(Error::Resend(
                    "raft stopped before the write completed".into(),
                )),
            };
            deliver(replies, result);
        });
    }
}

/// Sends each queued write its own reply out of a (possibly batched) response.
fn deliver(replies: Vec<oneshot::Sender<Result<Reply, Error>>>, result: Result<Response, Error>) {
    match result {
        Ok(Response::Batch(responses)) if replies.len() > 1 => {
            for (reply, response) in replies.into_iter().zip(responses) {
                let _ = reply.send(Ok(match response {
                    Response::Reply(r) => r,
                    Response::Batch(_) => Reply::error("ERR internal error: nested batch"),
                }));
            }
        }
        Ok(Response::Reply(r)) => {
            for reply in replies {
                let _ = reply.send(Ok(r.clone()));
            }
        }
        Ok(Response::Batch(_)) => {
            for reply in replies {
                let _ = reply.send(Err(Error::Internal("unexpected batch response".into())));
            }
        }
        Err(err) => {
            for reply in replies {
                let _ = reply.send(Err(err.clone()));
            }
        }
    }
}

/// Answers queued reads in ReadIndex rounds; rounds may overlap.
pub(super) async fn run_read_batcher(
    raft: Raft,
    reader: StoreReader,
    mut queue: mpsc::UnboundedReceiver<QueuedRead>,
    policy: ReadPolicy,
) {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(READ_ROUNDS_IN_FLIGHT_MAX));
    while let Some(first) = queue.recv().await {
        // Reads queued while earlier rounds are in flight join this one.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut round = vec![first];
        while round.len() < READ_ROUND_MAX {
            match queue.try_recv() {
                Ok(read) => round.push(read),
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        let reader = reader.clone();
        let policy = policy.clone();
        tokio::spawn(async move {
            let (reads, replies): (Vec<Read>, Vec<_>) =
                round.into_iter().map(|r| (r.read, r.reply)).unzip();
            let result = match raft.ensure_linearizable(policy).await {
                Ok(_) => match reader.read_many_in_place(&reads) {
                    Some(read) => read.map_err(|e| Error::Internal(e.to_string())),
                    None => tokio::task::spawn_blocking(move || reader.read_many(&reads))
                        .await
                        .map_err(|e| Error::Internal(e.to_string()))
                        .and_then(|r| r.map_err(|e| Error::Internal(e.to_string()))),
                },
                Err(err) => Err(read_error(err)),
            };
            drop(permit);
            match result {
                Ok(responses) => {
                    for (reply, response) in replies.into_iter().zip(responses) {
                        let _ = reply.send(Ok(response));
                    }
                }
                Err(err) => {
                    for reply in replies {
                        let _ = reply.send(Err(err.clone()));
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queue_depth_wakes_a_waiting_connection_once_there_is_room() {
        let depth = Arc::new(QueueDepth::default());
        let mut slots: Vec<QueueSlot> = (0..QUEUED_MAX).map(|_| depth.slot()).collect();
        assert!(!depth.has_room());
        let waiter = tokio::spawn({
            let depth = depth.clone();
            async move { depth.room().await }
        });
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "room reported while the queues are full"
        );
        drop(slots.pop());
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("the waiter is woken when a request leaves a full queue")
            .expect("waiter");
        assert!(depth.has_room());
    }
}
