//! The chaos harness's history checker. It owns the history's data model ([`Op`], [`Call`],
//! [`Outcome`], [`Ret`]) and the two verdicts on a recorded history: linearizability of every
//! register key ([`check_registers`]) and real-time bounds on every counter key
//! ([`check_counters`]). Standard library only.
//!
//! **Registers** are checked key by key (linearizability is compositional) with the
//! Wing–Gong–Lowe search: operations are linearized "just in time" (an operation may go next
//! only if no pending acknowledged operation completed before it was invoked), and a cache of
//! visited configurations (which operations are linearized, register value) prunes the search
//! (Lowe, "Testing for linearizability", 2017; porcupine). Acknowledged (`Ok`) operations are
//! required; `Fail` operations never happened and are dropped; `Unknown` reads are dropped and
//! `Unknown` writes are optional operations that may take effect at any time after their
//! invocation (their completion is taken as +∞) or never. Three reductions keep the search
//! small without losing linearizations: a pending read (or `SET NX` that did not apply) that
//! is consistent with the current value is linearized at once without branching (moving it
//! earlier never hurts); an optional operation is only tried right before a pending operation
//! that needs its effect (a read of its value, a compare-and-set expecting it — chains of
//! optional compare-and-sets are followed — or a `SET NX` that did not apply on an absent key),
//! since any linearization can be rewritten into that form; and the history is cut into
//! segments.
//!
//! **Segments.** The acknowledged operations of a key (sorted by invocation) are cut wherever
//! every earlier one completed before the next one was invoked, so each segment must be fully
//! linearized before the next starts and the cache keys only on the current segment's bits.
//! `Unknown` operations never close a segment (they stay open forever): they are not part of
//! any segment but of the search state, as the set of those already linearized, so one that
//! was invoked in an early segment can still take effect in any later one. The search is a
//! single depth-first search across the segments: a valid history costs about one path, and
//! an invalid one backtracks across a cut only into distinct (value, optional-operations-used)
//! configurations. The cache stores 128-bit fingerprints of configurations (16 bytes each, a
//! collision — which could only hide a linearization — is astronomically unlikely); when a
//! key's search explores more configurations than its budget, the key is inconclusive.
//!
//! **Counters** (`INCRBY` with positive deltas, `GET`) are checked with sorted sweeps and prefix
//! sums in O(n log n): unique increment results, real-time monotonicity of every observed
//! value, bounds on every result and read from the increments that certainly or possibly took
//! effect, and agreement of the final values read on every node after healing.
#![allow(dead_code)] // every harness that includes this file uses only part of it

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

/// One client operation as the workload recorded it. Times are nanoseconds since the run
/// started.
#[derive(Clone, Debug, PartialEq)]
pub struct Op {
    /// Client (process) id; one client has at most one operation in flight.
    pub client: usize,
    /// The key operated on.
    pub key: String,
    /// What was asked.
    pub call: Call,
    /// When the request was sent.
    pub invoked: u64,
    /// When the reply arrived, or when the client gave up ([`Outcome::Unknown`]).
    pub completed: u64,
    /// What came of it.
    pub outcome: Outcome,
}

/// The operation a client asked for.
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    /// `GET k`.
    Read,
    /// `SET k v` (values are unique per run).
    Write(i64),
    /// `SET k v NX`.
    WriteIfAbsent(i64),
    /// `WATCH k; GET k` (which returned `expected`)`; MULTI; SET k new; EXEC`.
    CompareAndSet {
        /// The value the `GET` inside the transaction returned.
        expected: Option<i64>,
        /// The value the transaction sets.
        new: i64,
    },
    /// `INCRBY k d`, with `d > 0`.
    IncrBy(i64),
}

/// What came of an operation.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// A reply arrived.
    Ok(Ret),
    /// Definitely not applied (e.g. refused before being proposed).
    Fail,
    /// Indeterminate (timeout, lost connection): may take effect at any time after `invoked`,
    /// or never.
    Unknown,
}

/// The reply to an acknowledged operation.
#[derive(Clone, Debug, PartialEq)]
pub enum Ret {
    /// A read's value (`None`: key absent); for counters a `GET` of the counter.
    Value(Option<i64>),
    /// A write was acknowledged.
    Done,
    /// Whether a `WriteIfAbsent` or `CompareAndSet` applied (a `CompareAndSet` that did not
    /// apply — `EXEC` returned nil — had no effect and constrains nothing).
    Applied(bool),
    /// An `IncrBy`'s new value.
    Counter(i64),
}

/// One violation found in a history.
#[derive(Clone, Debug, PartialEq)]
pub struct Anomaly {
    /// The key it was found on.
    pub key: String,
    /// What kind of violation (see [`check_registers`] and [`check_counters`]).
    pub kind: &'static str,
    /// Human-readable evidence: the operations involved, times in milliseconds.
    pub detail: String,
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}: {}", self.kind, self.key, self.detail)
    }
}

/// The result of checking a history.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Verdict {
    /// Every violation found.
    pub anomalies: Vec<Anomaly>,
    /// Keys that could not be fully checked: the register search exceeded its budget, or no
    /// node's final value of a counter could be read.
    pub inconclusive: Vec<String>,
    /// How many operations belonged to the keys checked.
    pub ops_checked: usize,
}

impl Verdict {
    /// Whether an anomaly of `kind` was reported.
    pub fn has(&self, kind: &str) -> bool {
        self.anomalies.iter().any(|a| a.kind == kind)
    }

    /// No anomaly and nothing inconclusive.
    pub fn is_clean(&self) -> bool {
        self.anomalies.is_empty() && self.inconclusive.is_empty()
    }
}

/// Anomaly kind: a register key's history has no linearization.
pub const NONLINEARIZABLE: &str = "nonlinearizable";
/// Anomaly kind: an operation whose reply does not fit its call (a workload bug), or an
/// operation of the wrong family on a key (register operation on a counter).
pub const MALFORMED: &str = "malformed-op";

/// Anomaly kind: a write answered with an error that stock clients read as "not applied"
/// (`TRYAGAIN`, `CLUSTERDOWN`, `MOVED`…) took effect: a client that resent it would apply it
/// twice.
pub const REFUSED_BUT_APPLIED: &str = "refused-but-applied";
/// Anomaly kind: an acknowledged write of a fresh key is missing after healing.
pub const ACKNOWLEDGED_BUT_LOST: &str = "acknowledged-but-lost";

/// Checks writes of fresh keys (each key written once, by one `Write`) against the value each
/// key has after healing (`None`: absent): a key whose write was refused must be absent, an
/// acknowledged one present with its value, an indeterminate one either. A key with no final
/// read is inconclusive.
pub fn check_fresh_writes(history: &[Op], finals: &BTreeMap<String, Option<i64>>) -> Verdict {
    let mut verdict = Verdict::default();
    for op in history {
        let Call::Write(written) = op.call else {
            verdict.anomalies.push(Anomaly {
                key: op.key.clone(),
                kind: MALFORMED,
                detail: format!("not a single write: {}", show(op)),
            });
            continue;
        };
        verdict.ops_checked += 1;
        let Some(&found) = finals.get(&op.key) else {
            verdict.inconclusive.push(op.key.clone());
            continue;
        };
        let kind = match (&op.outcome, found) {
            (Outcome::Ok(_), Some(v)) if v == written => None,
            (Outcome::Ok(_), _) => Some(ACKNOWLEDGED_BUT_LOST),
            (Outcome::Fail, None) => None,
            (Outcome::Fail, Some(_)) => Some(REFUSED_BUT_APPLIED),
            (Outcome::Unknown, None) => None,
            (Outcome::Unknown, Some(v)) if v == written => None,
            (Outcome::Unknown, Some(_)) => Some(MALFORMED),
        };
        if let Some(kind) = kind {
            verdict.anomalies.push(Anomaly {
                key: op.key.clone(),
                kind,
                detail: format!("{} but the key holds {}", show(op), value(found)),
            });
        }
    }
    verdict
}

/// Checks that every register key's history (keys with `Read`, `Write`, `WriteIfAbsent` and
/// `CompareAndSet` operations, initially absent; keys with any `IncrBy` are skipped) is
/// linearizable. A key with no linearization gets a [`NONLINEARIZABLE`] anomaly naming the op
/// the longest partial linearization could not extend and the ops around it; a key whose
/// search explores more than `budget_per_key` configurations is listed as inconclusive.
pub fn check_registers(history: &[Op], budget_per_key: u64) -> Verdict {
    let mut verdict = Verdict::default();
    for (key, ops) in by_key(history) {
        if ops
            .iter()
            .any(|&i| matches!(history[i].call, Call::IncrBy(_)))
        {
            continue;
        }
        verdict.ops_checked += ops.len();
        check_register_key(key, history, &ops, budget_per_key, &mut verdict);
    }
    verdict
}

/// Checks every counter key (keys with an `IncrBy`, and the keys of `finals`; counters start
/// at 0, an absent value reads as 0). Anomaly kinds:
/// - `duplicate-incr-result`: two acknowledged increments returned the same value;
/// - `incr-order`: an increment returned `r` with delta `d` although an operation that
///   completed before it was invoked had already produced or read a value above `r - d`;
/// - `incr-bounds`: a result below the acknowledged deltas completed before the increment was
///   invoked plus its own delta, or above all possibly applied deltas (ok or unknown) invoked
///   before it completed;
/// - `stale-read`: a read below the acknowledged deltas completed before it was invoked, or
///   below a value an operation that completed before it was invoked produced or read;
/// - `read-bounds`: a read above all possibly applied deltas invoked before it completed;
/// - `final-divergence`: the nodes' final values (`finals`: key → the value read on each node
///   that could be read after healing) differ;
/// - `lost-write`: a final value below the sum of acknowledged deltas or below a value an
///   operation produced or read;
/// - `phantom-write`: a final value above the sum of all possibly applied deltas.
pub fn check_counters(history: &[Op], finals: &BTreeMap<String, Vec<Option<i64>>>) -> Verdict {
    let groups = by_key(history);
    let mut keys: BTreeSet<&str> = groups
        .iter()
        .filter(|(_, ops)| {
            ops.iter()
                .any(|&i| matches!(history[i].call, Call::IncrBy(_)))
        })
        .map(|(key, _)| *key)
        .collect();
    keys.extend(finals.keys().map(String::as_str));
    let mut verdict = Verdict::default();
    for key in keys {
        let ops = groups.get(key).map_or(&[][..], Vec::as_slice);
        verdict.ops_checked += ops.len();
        check_counter_key(key, history, ops, finals.get(key), &mut verdict);
    }
    verdict
}

/// The indices of each key's operations.
fn by_key(history: &[Op]) -> BTreeMap<&str, Vec<usize>> {
    let mut keys: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, op) in history.iter().enumerate() {
        keys.entry(op.key.as_str()).or_default().push(i);
    }
    keys
}

fn ms(ns: u64) -> String {
    format!("{:.3}", ns as f64 / 1e6)
}

fn value(v: Option<i64>) -> String {
    v.map_or_else(|| "absent".to_string(), |v| v.to_string())
}

/// One operation for a report: client, command, result, times in ms.
fn show(op: &Op) -> String {
    let call = match &op.call {
        Call::Read => "GET".to_string(),
        Call::Write(v) => format!("SET {v}"),
        Call::WriteIfAbsent(v) => format!("SET {v} NX"),
        Call::CompareAndSet { expected, new } => format!("CAS {}->{new}", value(*expected)),
        Call::IncrBy(d) => format!("INCRBY {d}"),
    };
    let outcome = match &op.outcome {
        Outcome::Ok(Ret::Value(v)) => format!("= {}", value(*v)),
        Outcome::Ok(Ret::Done) => "ok".to_string(),
        Outcome::Ok(Ret::Applied(true)) => "applied".to_string(),
        Outcome::Ok(Ret::Applied(false)) => "not applied".to_string(),
        Outcome::Ok(Ret::Counter(n)) => format!("= {n}"),
        Outcome::Fail => "failed".to_string(),
        Outcome::Unknown => "unknown".to_string(),
    };
    let until = if op.outcome == Outcome::Unknown {
        "gave up "
    } else {
        ""
    };
    format!(
        "[client {} {call} {outcome}, {}..{until}{} ms]",
        op.client,
        ms(op.invoked),
        ms(op.completed)
    )
}

/// Collects one key's anomalies, at most `MAX_PER_KIND` of each kind plus a count of the rest.
struct Reporter<'a> {
    key: &'a str,
    counts: BTreeMap<&'static str, usize>,
    found: Vec<Anomaly>,
}

const MAX_PER_KIND: usize = 5;

impl<'a> Reporter<'a> {
    fn new(key: &'a str) -> Self {
        Reporter {
            key,
            counts: BTreeMap::new(),
            found: Vec::new(),
        }
    }

    fn add(&mut self, kind: &'static str, detail: impl FnOnce() -> String) {
        let count = self.counts.entry(kind).or_default();
        *count += 1;
        if *count <= MAX_PER_KIND {
            self.found.push(Anomaly {
                key: self.key.to_string(),
                kind,
                detail: detail(),
            });
        }
    }

    fn finish(self, verdict: &mut Verdict) {
        verdict.anomalies.extend(self.found);
        for (kind, count) in self.counts {
            if count > MAX_PER_KIND {
                verdict.anomalies.push(Anomaly {
                    key: self.key.to_string(),
                    kind,
                    detail: format!("{} more {kind} anomalies on this key", count - MAX_PER_KIND),
                });
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Registers
// ---------------------------------------------------------------------------------------------

/// The effect of one register operation on the model (a value or absent).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Step {
    /// Requires the value.
    Read(Option<i64>),
    /// Requires a value to be present (a `SET NX` that did not apply).
    ExpectSome,
    /// Sets the value.
    Write(i64),
    /// Requires absence; sets the value.
    WriteIfAbsent(i64),
    /// Requires `expected`; sets `new`.
    Cas { expected: Option<i64>, new: i64 },
}

impl Step {
    /// The value after this step from `state`, or `None` if the step cannot happen there.
    fn apply(self, state: Option<i64>) -> Option<Option<i64>> {
        match self {
            Step::Read(v) => (state == v).then_some(state),
            Step::ExpectSome => state.is_some().then_some(state),
            Step::Write(v) => Some(Some(v)),
            Step::WriteIfAbsent(v) => state.is_none().then_some(Some(v)),
            Step::Cas { expected, new } => (state == expected).then_some(Some(new)),
        }
    }

    fn mutates(self) -> bool {
        !matches!(self, Step::Read(_) | Step::ExpectSome)
    }

    /// The value this step writes.
    fn written(self) -> Option<i64> {
        match self {
            Step::Write(v) | Step::WriteIfAbsent(v) | Step::Cas { new: v, .. } => Some(v),
            Step::Read(_) | Step::ExpectSome => None,
        }
    }

    /// The present value this step needs.
    fn needs(self) -> Option<i64> {
        match self {
            Step::Read(v) | Step::Cas { expected: v, .. } => v,
            _ => None,
        }
    }

    /// The step an operation's call has if it takes effect (`None` for reads).
    fn effect(call: &Call) -> Option<Step> {
        match *call {
            Call::Write(v) => Some(Step::Write(v)),
            Call::WriteIfAbsent(v) => Some(Step::WriteIfAbsent(v)),
            Call::CompareAndSet { expected, new } => Some(Step::Cas { expected, new }),
            Call::Read | Call::IncrBy(_) => None,
        }
    }
}

/// A register operation in the search: `comp` is `u64::MAX` for optional ones.
#[derive(Clone, Copy, Debug)]
struct Entry {
    at: usize,
    inv: u64,
    comp: u64,
    step: Step,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Move {
    /// Linearize required op `i`.
    Req(usize),
    /// Linearize optional op `i`.
    Opt(usize),
}

/// How to take back a move.
#[derive(Clone, Copy)]
struct Undo {
    mv: Move,
    state: Option<i64>,
    seg: usize,
}

/// A node of the depth-first search: the moves possible there, the next to try, and the move
/// currently taken (to undo when its subtree is exhausted).
struct Frame {
    moves: Vec<(Move, Option<i64>)>,
    next: usize,
    taken: Option<Undo>,
}

fn get(bits: &[u64], i: usize) -> bool {
    bits[i / 64] >> (i % 64) & 1 == 1
}

fn set(bits: &mut [u64], i: usize) {
    bits[i / 64] |= 1 << (i % 64);
}

fn clear(bits: &mut [u64], i: usize) {
    bits[i / 64] &= !(1 << (i % 64));
}

/// The first clear bit in `from..to`, or `to`.
fn first_clear(bits: &[u64], from: usize, to: usize) -> usize {
    let mut w = from / 64;
    let mut word = !bits[w] & (!0u64 << (from % 64));
    loop {
        if word != 0 {
            return (w * 64 + word.trailing_zeros() as usize).min(to);
        }
        w += 1;
        if w * 64 >= to {
            return to;
        }
        word = !bits[w];
    }
}

/// A 128-bit fingerprint of a configuration: two independent chains of the MurmurHash3
/// finalizer.
struct Fingerprint(u64, u64);

fn fmix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

impl Fingerprint {
    fn absorb(&mut self, x: u64) {
        self.0 = fmix(self.0 ^ x).wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.1 = fmix(self.1.wrapping_add(x).rotate_left(29) ^ 0x2545_f491_4f6c_dd1d);
    }

    fn finish(&self) -> u128 {
        (u128::from(self.0) << 64) | u128::from(self.1)
    }
}

/// Hasher for already well-mixed fingerprints.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, x: u128) {
        self.0 = x as u64 ^ (x >> 64) as u64;
    }
}

type Memo = HashSet<u128, BuildHasherDefault<PassThrough>>;

/// The search over one key: the operations and the current configuration.
struct Search<'a> {
    /// Required (acknowledged) ops by invocation.
    req: &'a [Entry],
    /// Optional (unknown) ops by invocation.
    opt: &'a [Entry],
    /// Segments: ranges of `req`.
    segs: &'a [(usize, usize)],
    /// Optional ops by the value they write.
    producers: &'a HashMap<i64, Vec<usize>>,
    /// Linearized required ops.
    bits: Vec<u64>,
    /// Linearized optional ops.
    obits: Vec<u64>,
    /// The current segment: all before it are linearized, none after.
    seg: usize,
    state: Option<i64>,
    /// How many required ops are linearized.
    done: usize,
}

/// A configuration remembered for the report.
struct Snapshot {
    bits: Vec<u64>,
    obits: Vec<u64>,
    seg: usize,
    state: Option<i64>,
    done: usize,
    /// The last few moves that led there.
    last: Vec<Move>,
}

enum SearchResult {
    Linearizable,
    Budget,
    Stuck(Snapshot),
}

impl Search<'_> {
    /// The pending required ops that may be linearized next (in invocation order), and the
    /// earliest completion among pending required ops (ops invoked later must wait).
    fn window(&self) -> (Vec<usize>, u64) {
        let (_, end) = self.segs[self.seg];
        let mut i = first_clear(&self.bits, self.segs[self.seg].0, end);
        let mut min_comp = u64::MAX;
        let mut window = Vec::new();
        while i < end {
            let e = &self.req[i];
            if e.inv > min_comp {
                break;
            }
            if !get(&self.bits, i) {
                min_comp = min_comp.min(e.comp);
                window.push(i);
            }
            i += 1;
        }
        (window, min_comp)
    }

    /// The moves worth trying from the current configuration, most promising first.
    fn moves(&self) -> Vec<(Move, Option<i64>)> {
        let (window, min_comp) = self.window();
        let state = self.state;
        // A consistent read goes first, alone: linearizing it earlier never hurts.
        for &i in &window {
            let step = self.req[i].step;
            if !step.mutates()
                && let Some(next) = step.apply(state)
            {
                return vec![(Move::Req(i), next)];
            }
        }
        // Values pending ops need, and whether one needs any value at all.
        let mut needed: Vec<i64> = Vec::new();
        let mut needs_some = false;
        for &i in &window {
            let step = self.req[i].step;
            if let Some(v) = step.needs()
                && state != Some(v)
                && !needed.contains(&v)
            {
                needed.push(v);
            }
            needs_some |= step == Step::ExpectSome && state.is_none();
        }
        // Optional ops that would give a pending op what it needs (following chains of
        // optional compare-and-sets through the values they expect).
        let mut optional: Vec<(Move, Option<i64>)> = Vec::new();
        let mut k = 0;
        while k < needed.len() {
            let v = needed[k];
            k += 1;
            for &u in self.producers.get(&v).map_or(&[][..], Vec::as_slice) {
                let e = &self.opt[u];
                if e.inv > min_comp || get(&self.obits, u) {
                    continue;
                }
                match e.step.apply(state) {
                    Some(next) => {
                        if !optional.iter().any(|(m, _)| *m == Move::Opt(u)) {
                            optional.push((Move::Opt(u), next));
                        }
                    }
                    None => {
                        if let Some(x) = e.step.needs()
                            && !needed.contains(&x)
                        {
                            needed.push(x);
                        }
                    }
                }
            }
        }
        if needs_some {
            for (u, e) in self.opt.iter().enumerate() {
                if e.inv > min_comp {
                    break;
                }
                if get(&self.obits, u) || optional.iter().any(|(m, _)| *m == Move::Opt(u)) {
                    continue;
                }
                if let Some(next) = e.step.apply(state) {
                    optional.push((Move::Opt(u), next));
                }
            }
        }
        // Required writes: first those writing a needed value, then by completion.
        let mut wanted = Vec::new();
        let mut others = Vec::new();
        for &i in &window {
            let step = self.req[i].step;
            if let Some(next) = step.apply(state) {
                if step.written().is_some_and(|v| needed.contains(&v)) {
                    wanted.push((Move::Req(i), next));
                } else {
                    others.push((Move::Req(i), next));
                }
            }
        }
        others.sort_by_key(|(m, _)| match m {
            Move::Req(i) => self.req[*i].comp,
            Move::Opt(_) => u64::MAX,
        });
        wanted.extend(optional);
        wanted.extend(others);
        wanted
    }

    fn apply(&mut self, mv: Move, next: Option<i64>) -> Undo {
        let undo = Undo {
            mv,
            state: self.state,
            seg: self.seg,
        };
        match mv {
            Move::Req(i) => {
                set(&mut self.bits, i);
                self.done += 1;
                if self.done == self.segs[self.seg].1 {
                    self.seg += 1;
                }
            }
            Move::Opt(u) => set(&mut self.obits, u),
        }
        self.state = next;
        undo
    }

    fn undo(&mut self, undo: Undo) {
        match undo.mv {
            Move::Req(i) => {
                clear(&mut self.bits, i);
                self.done -= 1;
            }
            Move::Opt(u) => clear(&mut self.obits, u),
        }
        self.state = undo.state;
        self.seg = undo.seg;
    }

    /// The configuration's fingerprint: segment, value, the segment's linearized ops (all
    /// before the first pending one are, all in later segments are not) and the linearized
    /// optional ops.
    fn fingerprint(&self) -> u128 {
        let mut f = Fingerprint(0x243f_6a88_85a3_08d3, 0x1319_8a2e_0370_7344);
        f.absorb(self.seg as u64);
        match self.state {
            None => f.absorb(0),
            Some(v) => {
                f.absorb(1);
                f.absorb(v as u64);
            }
        }
        if let Some(&(start, end)) = self.segs.get(self.seg) {
            let lo = first_clear(&self.bits, start, end);
            f.absorb(lo as u64);
            let first = lo / 64;
            let mut last = (end - 1) / 64;
            while last > first && self.bits[last] == 0 {
                last -= 1;
            }
            for &w in &self.bits[first..=last] {
                f.absorb(w);
            }
            f.absorb((last - first) as u64);
        }
        for &w in &self.obits {
            f.absorb(w);
        }
        f.finish()
    }

    fn snapshot(&self, stack: &[Frame]) -> Snapshot {
        let last = stack
            .iter()
            .rev()
            .filter_map(|f| f.taken.map(|u| u.mv))
            .take(4)
            .collect::<Vec<_>>();
        Snapshot {
            bits: self.bits.clone(),
            obits: self.obits.clone(),
            seg: self.seg,
            state: self.state,
            done: self.done,
            last: last.into_iter().rev().collect(),
        }
    }

    /// Depth-first search for a linearization of every required op.
    fn run(&mut self, budget: u64) -> SearchResult {
        if self.segs.is_empty() {
            return SearchResult::Linearizable;
        }
        let mut memo = Memo::default();
        memo.insert(self.fingerprint());
        let mut explored = 1u64;
        let mut stack = vec![Frame {
            moves: self.moves(),
            next: 0,
            taken: None,
        }];
        let mut best = self.snapshot(&stack);
        while let Some(top) = stack.len().checked_sub(1) {
            let frame = &mut stack[top];
            if let Some(undo) = frame.taken.take() {
                self.undo(undo);
            }
            let Some(&(mv, next)) = frame.moves.get(frame.next) else {
                stack.pop();
                continue;
            };
            frame.next += 1;
            let undo = self.apply(mv, next);
            if self.seg == self.segs.len() {
                return SearchResult::Linearizable;
            }
            if !memo.insert(self.fingerprint()) {
                self.undo(undo);
                continue;
            }
            explored += 1;
            if explored > budget {
                return SearchResult::Budget;
            }
            stack[top].taken = Some(undo);
            if self.done > best.done {
                best = self.snapshot(&stack);
            }
            let moves = self.moves();
            stack.push(Frame {
                moves,
                next: 0,
                taken: None,
            });
        }
        SearchResult::Stuck(best)
    }
}

/// Sorts one key's register operations into required and optional ones and searches for a
/// linearization.
fn check_register_key(
    key: &str,
    history: &[Op],
    ops: &[usize],
    budget: u64,
    verdict: &mut Verdict,
) {
    let mut report = Reporter::new(key);
    let mut req = Vec::new();
    let mut opt = Vec::new();
    for &at in ops {
        let op = &history[at];
        if op.completed < op.invoked {
            report.add(MALFORMED, || {
                format!("completed before it was invoked: {}", show(op))
            });
        }
        let entry = |step| Entry {
            at,
            inv: op.invoked,
            comp: op.completed.max(op.invoked),
            step,
        };
        let optional = |step| Entry {
            comp: u64::MAX,
            ..entry(step)
        };
        match &op.outcome {
            Outcome::Fail => {}
            Outcome::Unknown => opt.extend(Step::effect(&op.call).map(optional)),
            Outcome::Ok(ret) => match (&op.call, ret) {
                (Call::Read, Ret::Value(v)) => req.push(entry(Step::Read(*v))),
                (Call::Write(v), Ret::Done) => req.push(entry(Step::Write(*v))),
                (Call::WriteIfAbsent(v), Ret::Applied(true)) => {
                    req.push(entry(Step::WriteIfAbsent(*v)))
                }
                (Call::WriteIfAbsent(_), Ret::Applied(false)) => req.push(entry(Step::ExpectSome)),
                (Call::CompareAndSet { expected, new }, Ret::Applied(true)) => {
                    req.push(entry(Step::Cas {
                        expected: *expected,
                        new: *new,
                    }))
                }
                (Call::CompareAndSet { .. }, Ret::Applied(false)) => {}
                (call, _) => {
                    report.add(MALFORMED, || {
                        format!("reply does not fit the call: {}", show(op))
                    });
                    // A write whose reply makes no sense may still have been applied.
                    opt.extend(Step::effect(call).map(optional));
                }
            },
        }
    }
    req.sort_by_key(|e| (e.inv, e.comp));
    opt.sort_by_key(|e| e.inv);
    let mut segs = Vec::new();
    let mut start = 0;
    let mut max_comp = 0;
    for (i, e) in req.iter().enumerate() {
        if i > start && e.inv > max_comp {
            segs.push((start, i));
            start = i;
        }
        max_comp = max_comp.max(e.comp);
    }
    if start < req.len() {
        segs.push((start, req.len()));
    }
    let mut producers: HashMap<i64, Vec<usize>> = HashMap::new();
    for (u, e) in opt.iter().enumerate() {
        if let Some(v) = e.step.written() {
            producers.entry(v).or_default().push(u);
        }
    }
    let mut search = Search {
        req: &req,
        opt: &opt,
        segs: &segs,
        producers: &producers,
        bits: vec![0; req.len().div_ceil(64).max(1)],
        obits: vec![0; opt.len().div_ceil(64)],
        seg: 0,
        state: None,
        done: 0,
    };
    match search.run(budget) {
        SearchResult::Linearizable => {}
        SearchResult::Budget => verdict.inconclusive.push(key.to_string()),
        SearchResult::Stuck(best) => {
            search.bits = best.bits;
            search.obits = best.obits;
            search.seg = best.seg;
            search.state = best.state;
            search.done = best.done;
            let detail = explain(&search, &best.last, history, ops);
            report.add(NONLINEARIZABLE, || detail);
        }
    }
    report.finish(verdict);
}

/// Describes the furthest configuration the search reached: the pending op that completes
/// first (everything invoked after it must wait for it) could not be linearized.
fn explain(search: &Search<'_>, last: &[Move], history: &[Op], ops: &[usize]) -> String {
    let (window, _) = search.window();
    let stuck_idx = *window
        .iter()
        .min_by_key(|&&i| (search.req[i].comp, search.req[i].inv))
        .expect("a stuck search has a pending op");
    let stuck = search.req[stuck_idx];
    let op = &history[stuck.at];
    let show_move = |m: &Move| match *m {
        Move::Req(i) => show(&history[search.req[i].at]),
        Move::Opt(u) => format!("{} (taking effect)", show(&history[search.opt[u].at])),
    };
    let list = |items: Vec<String>, total: usize| {
        let more = total.saturating_sub(items.len());
        let mut text = if items.is_empty() {
            "none".to_string()
        } else {
            items.join(", ")
        };
        if more > 0 {
            text.push_str(&format!(" and {more} more"));
        }
        text
    };
    let last_text = if last.is_empty() {
        "none".to_string()
    } else {
        last.iter().map(show_move).collect::<Vec<_>>().join(", ")
    };
    let pending: Vec<String> = window
        .iter()
        .filter(|&&i| i != stuck_idx)
        .take(8)
        .map(|&i| show(&history[search.req[i].at]))
        .collect();
    let overlapping: Vec<usize> = ops
        .iter()
        .copied()
        .filter(|&i| {
            i != stuck.at
                && history[i].invoked <= op.completed
                && history[i].completed >= op.invoked
        })
        .collect();
    let overlapping_text = list(
        overlapping
            .iter()
            .take(10)
            .map(|&i| show(&history[i]))
            .collect(),
        overlapping.len(),
    );
    let reason =
        reason(&stuck, search.req, history, ops).map_or_else(String::new, |r| format!(" ({r})"));
    format!(
        "{} cannot take effect{reason}; the longest partial linearization ({} of {} acknowledged \
         operations) ends with {last_text} and leaves the value {}, with pending {}; operations \
         overlapping it: {overlapping_text}",
        show(op),
        search.done,
        search.req.len(),
        value(search.state),
        list(pending, window.len() - 1),
    )
}

/// A simple reason why `stuck` cannot see the value it needs, when there is one.
fn reason(stuck: &Entry, req: &[Entry], history: &[Op], ops: &[usize]) -> Option<String> {
    let acknowledged_writes = || req.iter().filter(|e| e.step.written().is_some());
    if matches!(
        stuck.step,
        Step::Read(None) | Step::WriteIfAbsent(_) | Step::Cas { expected: None, .. }
    ) {
        // Nothing deletes: once a write took effect the key is never absent again.
        let w = acknowledged_writes()
            .filter(|e| e.comp < stuck.inv)
            .min_by_key(|e| e.comp)?;
        return Some(format!(
            "it needs the key absent, but {} completed before it was invoked",
            show(&history[w.at])
        ));
    }
    let v = stuck.step.needs()?;
    let writers: Vec<&Op> = ops
        .iter()
        .map(|&i| &history[i])
        .filter(|o| Step::effect(&o.call).and_then(Step::written) == Some(v))
        .collect();
    let possible: Vec<&&Op> = writers
        .iter()
        .filter(|o| o.outcome != Outcome::Fail)
        .collect();
    let Some(first) = possible.first() else {
        return Some(match writers.first() {
            None => format!("no operation ever wrote {v}"),
            Some(w) => format!("{v} was only written by a failed operation: {}", show(w)),
        });
    };
    if possible.iter().all(|o| o.invoked > stuck.comp) {
        return Some(format!(
            "{v} was only written by an operation invoked after it completed: {}",
            show(first)
        ));
    }
    if possible.iter().any(|o| o.outcome == Outcome::Unknown) {
        return None;
    }
    let w = req.iter().find(|e| e.step.written() == Some(v))?;
    let over = acknowledged_writes().find(|e| e.inv > w.comp && e.comp < stuck.inv)?;
    Some(format!(
        "{v} was overwritten before it was invoked: {} was invoked after {} completed",
        show(&history[over.at]),
        show(&history[w.at])
    ))
}

// ---------------------------------------------------------------------------------------------
// Counters
// ---------------------------------------------------------------------------------------------

/// A value an acknowledged operation saw: a read (`before == after`) or an increment's result
/// (`after`) and the value just before it applied (`before = after - delta`).
struct Observation {
    at: usize,
    inv: u64,
    comp: u64,
    before: i128,
    after: i128,
    read: bool,
}

/// Sums of deltas by time, for "sum of deltas of ops with time < t (or ≤ t)" queries.
struct Sums {
    times: Vec<u64>,
    prefix: Vec<i128>,
}

impl Sums {
    fn new(mut items: Vec<(u64, i128)>) -> Self {
        items.sort_unstable();
        let mut prefix = Vec::with_capacity(items.len() + 1);
        prefix.push(0);
        for &(_, d) in &items {
            prefix.push(prefix.last().copied().unwrap_or(0) + d);
        }
        Sums {
            times: items.into_iter().map(|(t, _)| t).collect(),
            prefix,
        }
    }

    /// The sum of deltas at times before `t`.
    fn before(&self, t: u64) -> i128 {
        self.prefix[self.times.partition_point(|&x| x < t)]
    }

    /// The sum of deltas at times up to `t`.
    fn up_to(&self, t: u64) -> i128 {
        self.prefix[self.times.partition_point(|&x| x <= t)]
    }

    fn total(&self) -> i128 {
        self.prefix.last().copied().unwrap_or(0)
    }
}

fn check_counter_key(
    key: &str,
    history: &[Op],
    ops: &[usize],
    finals: Option<&Vec<Option<i64>>>,
    verdict: &mut Verdict,
) {
    let mut report = Reporter::new(key);
    // (completion, delta) of acknowledged increments; (invocation, delta) of possibly applied
    // ones; acknowledged (result, op index) pairs; observations.
    let mut ok_done = Vec::new();
    let mut maybe_started = Vec::new();
    let mut results = Vec::new();
    let mut seen = Vec::new();
    for &at in ops {
        let op = &history[at];
        if op.completed < op.invoked {
            report.add(MALFORMED, || {
                format!("completed before it was invoked: {}", show(op))
            });
        }
        let (inv, comp) = (op.invoked, op.completed.max(op.invoked));
        match (&op.call, &op.outcome) {
            (Call::IncrBy(d), outcome) => {
                if *d <= 0 {
                    report.add(MALFORMED, || format!("non-positive delta: {}", show(op)));
                }
                let delta = i128::from(*d);
                match outcome {
                    Outcome::Fail => {}
                    Outcome::Unknown => maybe_started.push((inv, delta)),
                    Outcome::Ok(Ret::Counter(r)) => {
                        maybe_started.push((inv, delta));
                        ok_done.push((comp, delta));
                        results.push((*r, at));
                        seen.push(Observation {
                            at,
                            inv,
                            comp,
                            before: i128::from(*r) - delta,
                            after: i128::from(*r),
                            read: false,
                        });
                    }
                    Outcome::Ok(_) => {
                        report.add(MALFORMED, || {
                            format!("reply does not fit the call: {}", show(op))
                        });
                        maybe_started.push((inv, delta));
                    }
                }
            }
            (Call::Read, Outcome::Ok(Ret::Value(v))) => {
                let v = i128::from(v.unwrap_or(0));
                seen.push(Observation {
                    at,
                    inv,
                    comp,
                    before: v,
                    after: v,
                    read: true,
                });
            }
            (Call::Read, Outcome::Ok(_)) => report.add(MALFORMED, || {
                format!("reply does not fit the call: {}", show(op))
            }),
            (Call::Read, _) => {}
            _ => report.add(MALFORMED, || {
                format!("register operation on a counter: {}", show(op))
            }),
        }
    }
    let ok_done = Sums::new(ok_done);
    let maybe_started = Sums::new(maybe_started);

    // Two acknowledged increments with the same result.
    results.sort_unstable();
    for pair in results.windows(2) {
        if pair[0].0 == pair[1].0 {
            report.add("duplicate-incr-result", || {
                format!(
                    "{} and {} returned the same value",
                    show(&history[pair[0].1]),
                    show(&history[pair[1].1])
                )
            });
        }
    }

    // Real-time monotonicity: what an op saw before it applied must be at least every value
    // an op that completed before it was invoked saw or produced.
    let mut by_comp: Vec<usize> = (0..seen.len()).collect();
    by_comp.sort_unstable_by_key(|&i| seen[i].comp);
    let mut running_max: Vec<usize> = Vec::with_capacity(by_comp.len());
    for &i in &by_comp {
        let best = match running_max.last() {
            Some(&m) if seen[m].after >= seen[i].after => m,
            _ => i,
        };
        running_max.push(best);
    }
    for b in &seen {
        let k = by_comp.partition_point(|&i| seen[i].comp < b.inv);
        if k == 0 {
            continue;
        }
        let a = &seen[running_max[k - 1]];
        if b.before < a.after {
            let what = if a.read { "read" } else { "produced" };
            let (kind, did) = if b.read {
                ("stale-read", format!("read {}", b.before))
            } else {
                (
                    "incr-order",
                    format!(
                        "returned {} (so the counter was {} before it)",
                        b.after, b.before
                    ),
                )
            };
            report.add(kind, || {
                format!(
                    "{} {did}, but {} completed before it was invoked and had already {what} {}",
                    show(&history[b.at]),
                    show(&history[a.at]),
                    a.after
                )
            });
        }
    }

    // Bounds from the increments that certainly / possibly took effect.
    for b in &seen {
        let op = &history[b.at];
        let lower = ok_done.before(b.inv) + (b.after - b.before);
        let upper = maybe_started.up_to(b.comp);
        let (low_kind, high_kind) = if b.read {
            ("stale-read", "read-bounds")
        } else {
            ("incr-bounds", "incr-bounds")
        };
        if b.after < lower {
            report.add(low_kind, || {
                format!(
                    "{} saw {} but acknowledged increments that completed before it was invoked \
                     (plus its own delta) add up to {lower}",
                    show(op),
                    b.after
                )
            });
        }
        if b.after > upper {
            report.add(high_kind, || {
                format!(
                    "{} saw {} but all increments (ok or unknown) invoked before it completed add up \
                     to only {upper}",
                    show(op),
                    b.after
                )
            });
        }
    }

    // Final values on every node after healing.
    if let Some(values) = finals {
        let finals: Vec<i128> = values.iter().map(|v| i128::from(v.unwrap_or(0))).collect();
        let (Some(&low), Some(&high)) = (finals.iter().min(), finals.iter().max()) else {
            verdict.inconclusive.push(key.to_string());
            report.finish(verdict);
            return;
        };
        if low != high {
            report.add("final-divergence", || {
                format!("nodes ended with different values: {values:?}")
            });
        }
        let acknowledged = ok_done.total();
        if low < acknowledged {
            report.add("lost-write", || {
                format!("final value {low} (of {values:?}) is below the sum of acknowledged increments {acknowledged}")
            });
        }
        if let Some(top) = seen.iter().max_by_key(|o| o.after)
            && low < top.after
        {
            report.add("lost-write", || {
                format!(
                    "final value {low} (of {values:?}) is below {}, which {} saw",
                    top.after,
                    show(&history[top.at])
                )
            });
        }
        let possible = maybe_started.total();
        if high > possible {
            report.add("phantom-write", || {
                format!("final value {high} (of {values:?}) is above the sum of all ok or unknown increments {possible}")
            });
        }
    }
    report.finish(verdict);
}
