//! Client workloads that record a history: concurrent clients, each with one operation in
//! flight, on random nodes. A client follows `-MOVED` to the node it names and retries there
//! (a redirect proves the command was not applied), as cluster clients do against followers in
//! redirect mode. Registers: GET, SET, SET NX and a WATCH/GET/MULTI/SET/EXEC
//! compare-and-set on a few keys that are renewed every few seconds (so SET NX races on fresh
//! keys). Counters: INCRBY and GET on a few hot keys. Fresh writes: SET of a key never used
//! before, so that after healing each key shows whether its write took effect (the lie
//! check: a write refused with a prefix clients resend on must be absent). Every operation is
//! recorded with its
//! invocation and completion times and an outcome: ok, fail (certainly not applied) or
//! unknown (timeout, lost connection, or an error that does not prove the command was not
//! applied).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redraft::error::RETRIED_PREFIXES;

use crate::checker::{Call, Op, Outcome, Ret};
use crate::nodes::connect;
use crate::rng::Rng;

/// How long a client waits for a reply before calling the operation unknown.
const OP_TIMEOUT: Duration = Duration::from_millis(1500);
/// Hot counter keys.
pub const COUNTER_KEYS: usize = 4;
/// Register keys live at a time.
const REGISTER_KEYS: u64 = 3;
/// How often register keys are renewed.
const REGISTER_EPOCH: Duration = Duration::from_secs(4);

/// What the clients share.
pub struct Shared {
    /// Run start: the origin of every timestamp.
    pub start: Instant,
    /// Set to stop the clients.
    pub stop: AtomicBool,
    /// Every recorded operation.
    pub history: Mutex<Vec<Op>>,
    /// Completion times (ns) of successful writes, for unavailability windows.
    pub write_times: Mutex<Vec<u64>>,
    /// Times (ns) of error replies that prove nothing (`UNCERTAIN`, internal errors): each
    /// left a client not knowing whether its command took effect.
    pub uncertain_replies: Mutex<Vec<(u64, String)>>,
    next_value: AtomicI64,
}

impl Shared {
    /// A new, empty history starting now.
    pub fn new() -> Arc<Shared> {
        Arc::new(Shared {
            start: Instant::now(),
            stop: AtomicBool::new(false),
            history: Mutex::new(Vec::new()),
            write_times: Mutex::new(Vec::new()),
            uncertain_replies: Mutex::new(Vec::new()),
            next_value: AtomicI64::new(1),
        })
    }

    /// Nanoseconds since the start.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn record(&self, op: Op) {
        let is_write = !matches!(op.call, Call::Read);
        if is_write && matches!(op.outcome, Outcome::Ok(_)) {
            self.write_times.lock().unwrap().push(op.completed);
        }
        self.history.lock().unwrap().push(op);
    }
}

/// Which workload a client runs.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// GET/SET/SET NX/CAS on registers.
    Register,
    /// INCRBY/GET on counters.
    Counter,
    /// SET of fresh keys.
    Fresh,
}

/// The prefix of every fresh key.
pub const FRESH_PREFIX: &str = "fresh";

/// The name of counter key `i`.
pub fn counter_key(i: usize) -> String {
    format!("counter{i}")
}

/// Runs one client until `shared.stop`.
pub fn client(id: usize, kind: Kind, addrs: Vec<String>, shared: Arc<Shared>, seed: u64) {
    let mut rng = Rng::new(seed ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut con: Option<redis::Connection> = None;
    // A client whose operation ended unknown continues as a new process: the old operation
    // may still take effect at any time.
    let mut process = id * 1_000_000;
    while !shared.stop.load(Relaxed) {
        if con.is_none() {
            let addr = &addrs[rng.below(addrs.len() as u64) as usize];
            con = connect(addr, OP_TIMEOUT);
            if con.is_none() {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        }
        let connection = con.as_mut().expect("connected");
        let keep = match kind {
            Kind::Register => register_op(&mut process, connection, &shared, &mut rng),
            Kind::Counter => counter_op(&mut process, connection, &shared, &mut rng),
            Kind::Fresh => fresh_op(&mut process, connection, &shared),
        };
        if !keep {
            // After an error, talk to another node (and never reuse a confused connection).
            con = None;
        }
    }
}

/// What one reply means for the history.
enum Reply {
    Ok(redis::Value),
    /// Certainly not applied.
    Refused,
    /// Not applied: the leader is at this address.
    Moved(String),
    /// Maybe applied.
    Unknown,
}

/// Sends `cmd`, following up to three redirects (replacing `con` by a connection to the
/// node named); an error reply that proves nothing is noted in `shared`.
fn send(con: &mut redis::Connection, cmd: &redis::Cmd, shared: &Shared) -> Reply {
    for _ in 0..3 {
        let reply = match cmd.query::<redis::Value>(con) {
            Ok(value) => Reply::Ok(value),
            Err(err) => {
                let reply = classify(&err);
                if matches!(reply, Reply::Unknown) && err.code().is_some() {
                    shared
                        .uncertain_replies
                        .lock()
                        .unwrap()
                        .push((shared.now(), err.to_string()));
                }
                reply
            }
        };
        let Reply::Moved(addr) = reply else {
            return reply;
        };
        match connect(&addr, OP_TIMEOUT) {
            Some(moved) => *con = moved,
            None => return Reply::Refused,
        }
    }
    Reply::Refused
}

/// Errors that prove the command was not applied: a redirect and every prefix stock clients
/// retry on. Everything else — timeouts, lost connections, `UNCERTAIN`, internal errors — may
/// hide an applied command.
fn classify(err: &redis::RedisError) -> Reply {
    match (err.code(), err.redirect_node()) {
        (Some("MOVED"), Some((addr, _slot))) => Reply::Moved(addr.to_string()),
        // Prefixes stock clients resend on without telling the application (the list of the
        // clients' own retry rules, `redraft::error::RETRIED_PREFIXES`): read as Redis defines
        // them, "not applied", so a server that sends one for a command that did apply shows
        // as an anomaly.
        (Some(code), _) if RETRIED_PREFIXES.contains(&code) => Reply::Refused,
        _ => Reply::Unknown,
    }
}

fn register_key(shared: &Shared, rng: &mut Rng) -> String {
    let epoch = shared.start.elapsed().as_millis() as u64 / REGISTER_EPOCH.as_millis() as u64;
    format!("register{}-{}", epoch, rng.below(REGISTER_KEYS))
}

fn as_int(value: &redis::Value) -> Option<Option<i64>> {
    match value {
        redis::Value::Nil => Some(None),
        redis::Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok().map(Some),
        redis::Value::Int(n) => Some(Some(*n)),
        _ => None,
    }
}

/// One register operation; false when the connection should be dropped.
fn register_op(
    process: &mut usize,
    con: &mut redis::Connection,
    shared: &Shared,
    rng: &mut Rng,
) -> bool {
    let key = register_key(shared, rng);
    let roll = rng.below(100);
    let invoked = shared.now();
    let (call, outcome) = if roll < 45 {
        let reply = send(con, redis::cmd("GET").arg(&key), shared);
        let outcome = match reply {
            Reply::Ok(value) => match as_int(&value) {
                Some(v) => Outcome::Ok(Ret::Value(v)),
                None => Outcome::Unknown,
            },
            _ => Outcome::Fail,
        };
        (Call::Read, outcome)
    } else if roll < 75 {
        let value = shared.next_value.fetch_add(1, Relaxed);
        let outcome = match send(con, redis::cmd("SET").arg(&key).arg(value), shared) {
            Reply::Ok(_) => Outcome::Ok(Ret::Done),
            Reply::Refused | Reply::Moved(_) => Outcome::Fail,
            Reply::Unknown => Outcome::Unknown,
        };
        (Call::Write(value), outcome)
    } else if roll < 85 {
        let value = shared.next_value.fetch_add(1, Relaxed);
        let outcome = match send(
            con,
            redis::cmd("SET").arg(&key).arg(value).arg("NX"),
            shared,
        ) {
            Reply::Ok(redis::Value::Nil) => Outcome::Ok(Ret::Applied(false)),
            Reply::Ok(_) => Outcome::Ok(Ret::Applied(true)),
            Reply::Refused | Reply::Moved(_) => Outcome::Fail,
            Reply::Unknown => Outcome::Unknown,
        };
        (Call::WriteIfAbsent(value), outcome)
    } else {
        let value = shared.next_value.fetch_add(1, Relaxed);
        let (expected, outcome) = compare_and_set(con, &key, value, shared, *process);
        (
            Call::CompareAndSet {
                expected,
                new: value,
            },
            outcome,
        )
    };
    finish(process, shared, key, call, invoked, outcome)
}

/// Records a finished operation; after an unknown outcome the client continues as a new
/// process. Returns whether the connection can be kept (the operation succeeded).
fn finish(
    process: &mut usize,
    shared: &Shared,
    key: String,
    call: Call,
    invoked: u64,
    outcome: Outcome,
) -> bool {
    let keep = matches!(outcome, Outcome::Ok(_));
    let client = *process;
    if outcome == Outcome::Unknown {
        *process += 1;
    }
    shared.record(Op {
        client,
        key,
        call,
        invoked,
        completed: shared.now(),
        outcome,
    });
    keep
}

/// WATCH key; GET key; MULTI; SET key new; EXEC. Returns the value seen and the outcome:
/// fail before EXEC was sent, unknown if EXEC's reply is lost, applied or not otherwise. The
/// GET is a linearizable read of its own and is recorded as one (by a companion process id,
/// since it overlaps the compare-and-set).
fn compare_and_set(
    con: &mut redis::Connection,
    key: &str,
    new: i64,
    shared: &Shared,
    process: usize,
) -> (Option<i64>, Outcome) {
    let fail = |con: &mut redis::Connection| {
        let _ = redis::cmd("UNWATCH").query::<redis::Value>(con);
        (None, Outcome::Fail)
    };
    if !matches!(
        send(con, redis::cmd("WATCH").arg(key), shared),
        Reply::Ok(_)
    ) {
        return (None, Outcome::Fail);
    }
    let read_invoked = shared.now();
    let expected = match send(con, redis::cmd("GET").arg(key), shared) {
        Reply::Ok(value) => match as_int(&value) {
            Some(v) => v,
            None => return fail(con),
        },
        _ => return fail(con),
    };
    shared.record(Op {
        client: process + 500_000,
        key: key.to_string(),
        call: Call::Read,
        invoked: read_invoked,
        completed: shared.now(),
        outcome: Outcome::Ok(Ret::Value(expected)),
    });
    let mut pipe = redis::pipe();
    pipe.atomic().cmd("SET").arg(key).arg(new).ignore();
    match pipe.query::<Option<()>>(con) {
        Ok(Some(())) => (expected, Outcome::Ok(Ret::Applied(true))),
        Ok(None) => (expected, Outcome::Ok(Ret::Applied(false))),
        Err(err) => match classify(&err) {
            Reply::Refused => (expected, Outcome::Fail),
            _ => {
                if err.code().is_some() {
                    shared
                        .uncertain_replies
                        .lock()
                        .unwrap()
                        .push((shared.now(), err.to_string()));
                }
                (expected, Outcome::Unknown)
            }
        },
    }
}

/// One write of a key never written before; false when the connection should be dropped.
fn fresh_op(process: &mut usize, con: &mut redis::Connection, shared: &Shared) -> bool {
    let value = shared.next_value.fetch_add(1, Relaxed);
    let key = format!("{FRESH_PREFIX}{value}");
    let invoked = shared.now();
    let outcome = match send(con, redis::cmd("SET").arg(&key).arg(value), shared) {
        Reply::Ok(_) => Outcome::Ok(Ret::Done),
        Reply::Refused | Reply::Moved(_) => Outcome::Fail,
        Reply::Unknown => Outcome::Unknown,
    };
    finish(process, shared, key, Call::Write(value), invoked, outcome)
}

/// One counter operation; false when the connection should be dropped.
fn counter_op(
    process: &mut usize,
    con: &mut redis::Connection,
    shared: &Shared,
    rng: &mut Rng,
) -> bool {
    let key = counter_key(rng.below(COUNTER_KEYS as u64) as usize);
    let invoked = shared.now();
    let (call, outcome) = if rng.below(100) < 30 {
        let outcome = match send(con, redis::cmd("GET").arg(&key), shared) {
            Reply::Ok(value) => match as_int(&value) {
                Some(v) => Outcome::Ok(Ret::Value(v)),
                None => Outcome::Unknown,
            },
            _ => Outcome::Fail,
        };
        (Call::Read, outcome)
    } else {
        let delta = 1 + rng.below(5) as i64;
        let outcome = match send(con, redis::cmd("INCRBY").arg(&key).arg(delta), shared) {
            Reply::Ok(redis::Value::Int(n)) => Outcome::Ok(Ret::Counter(n)),
            Reply::Ok(_) => Outcome::Unknown,
            Reply::Refused | Reply::Moved(_) => Outcome::Fail,
            Reply::Unknown => Outcome::Unknown,
        };
        (Call::IncrBy(delta), outcome)
    };
    finish(process, shared, key, call, invoked, outcome)
}
