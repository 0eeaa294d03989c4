//! Tests of the chaos harness's history checker (`tests/chaos/checker.rs`) on crafted
//! histories: real anomalies must be reported with the right kind, valid concurrent histories
//! (including indeterminate operations) must pass, and a long generated history must be
//! checked quickly and conclusively.

#[path = "chaos/checker.rs"]
mod checker;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use checker::{
    ACKNOWLEDGED_BUT_LOST, Call, NONLINEARIZABLE, Op, Outcome, REFUSED_BUT_APPLIED, Ret, Verdict,
    check_counters, check_fresh_writes, check_registers,
};

const MS: u64 = 1_000_000;
const BUDGET: u64 = 1_000_000;

/// An operation on key `key` by `client` from `from` to `to` milliseconds.
fn op(client: usize, key: &str, call: Call, from: u64, to: u64, outcome: Outcome) -> Op {
    Op {
        client,
        key: key.to_string(),
        call,
        invoked: from * MS,
        completed: to * MS,
        outcome,
    }
}

fn read(client: usize, from: u64, to: u64, v: Option<i64>) -> Op {
    op(
        client,
        "r",
        Call::Read,
        from,
        to,
        Outcome::Ok(Ret::Value(v)),
    )
}

fn write(client: usize, from: u64, to: u64, v: i64) -> Op {
    op(
        client,
        "r",
        Call::Write(v),
        from,
        to,
        Outcome::Ok(Ret::Done),
    )
}

fn write_with(client: usize, from: u64, to: u64, v: i64, outcome: Outcome) -> Op {
    op(client, "r", Call::Write(v), from, to, outcome)
}

fn write_if_absent(client: usize, from: u64, to: u64, v: i64, applied: bool) -> Op {
    op(
        client,
        "r",
        Call::WriteIfAbsent(v),
        from,
        to,
        Outcome::Ok(Ret::Applied(applied)),
    )
}

fn cas(client: usize, from: u64, to: u64, expected: Option<i64>, new: i64, outcome: Outcome) -> Op {
    op(
        client,
        "r",
        Call::CompareAndSet { expected, new },
        from,
        to,
        outcome,
    )
}

fn incr(client: usize, from: u64, to: u64, delta: i64, outcome: Outcome) -> Op {
    op(client, "c", Call::IncrBy(delta), from, to, outcome)
}

fn incr_ok(client: usize, from: u64, to: u64, delta: i64, result: i64) -> Op {
    incr(client, from, to, delta, Outcome::Ok(Ret::Counter(result)))
}

fn counter_read(client: usize, from: u64, to: u64, v: Option<i64>) -> Op {
    op(
        client,
        "c",
        Call::Read,
        from,
        to,
        Outcome::Ok(Ret::Value(v)),
    )
}

fn applied() -> Outcome {
    Outcome::Ok(Ret::Applied(true))
}

fn assert_clean(verdict: &Verdict) {
    assert!(verdict.is_clean(), "expected a clean verdict: {verdict:#?}");
}

fn assert_kind(verdict: &Verdict, kind: &str) {
    for anomaly in &verdict.anomalies {
        println!("{anomaly}");
    }
    assert!(verdict.has(kind), "expected a {kind} anomaly: {verdict:#?}");
    assert!(verdict.inconclusive.is_empty(), "{verdict:#?}");
}

fn registers(history: &[Op]) -> Verdict {
    check_registers(history, BUDGET)
}

fn counters(history: &[Op], finals: &[(&str, Vec<Option<i64>>)]) -> Verdict {
    let finals: BTreeMap<String, Vec<Option<i64>>> = finals
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    check_counters(history, &finals)
}

// ---------------------------------------------------------------------------------------------
// Registers
// ---------------------------------------------------------------------------------------------

#[test]
fn checker_register_sequential_valid() {
    let history = vec![
        read(0, 0, 1, None),
        write(1, 2, 3, 1),
        read(2, 4, 5, Some(1)),
        write_if_absent(0, 6, 7, 2, false),
        cas(1, 8, 9, Some(1), 3, applied()),
        read(2, 10, 11, Some(3)),
        write(0, 12, 13, 4),
        read(1, 14, 15, Some(4)),
    ];
    let verdict = registers(&history);
    assert_clean(&verdict);
    assert_eq!(verdict.ops_checked, history.len());
}

#[test]
fn checker_register_concurrent_only_one_order_works() {
    // Two overlapping writes; the reads force 2 before 1 although 1 was invoked first.
    let history = vec![
        write(0, 0, 100, 1),
        write(1, 10, 90, 2),
        read(2, 20, 30, Some(2)),
        read(3, 40, 95, Some(1)),
        read(2, 120, 130, Some(1)),
    ];
    assert_clean(&registers(&history));
    // Reversed observations after both writes completed: 1 then 2 is impossible once a read
    // saw 2 before either completed and 1 after it.
    let mut bad = history.clone();
    bad.push(read(3, 140, 150, Some(2)));
    assert_kind(&registers(&bad), NONLINEARIZABLE);
}

#[test]
fn checker_register_stale_read() {
    let history = vec![write(0, 0, 1, 1), write(1, 2, 3, 2), read(2, 4, 5, Some(1))];
    let verdict = registers(&history);
    assert_kind(&verdict, NONLINEARIZABLE);
    let detail = &verdict.anomalies[0].detail;
    assert!(
        detail.contains("GET = 1") && detail.contains("overwritten"),
        "the stale read is named and explained: {detail}"
    );
}

#[test]
fn checker_register_lost_write() {
    let history = vec![read(0, 0, 1, None), write(1, 2, 3, 1), read(0, 4, 5, None)];
    assert_kind(&registers(&history), NONLINEARIZABLE);
}

#[test]
fn checker_register_read_of_unwritten_value() {
    let history = vec![write(0, 0, 1, 1), read(1, 0, 2, Some(7))];
    let verdict = registers(&history);
    assert_kind(&verdict, NONLINEARIZABLE);
    assert!(
        verdict.anomalies[0]
            .detail
            .contains("no operation ever wrote 7"),
        "{verdict:#?}"
    );
}

#[test]
fn checker_register_unknown_write_later_read_accepted() {
    // The unknown write takes effect long after the client gave up, after another write.
    let history = vec![
        write(0, 0, 1, 1),
        write_with(1, 2, 5, 2, Outcome::Unknown),
        read(2, 6, 7, Some(1)),
        write(0, 8, 9, 3),
        read(2, 10, 11, Some(3)),
        read(3, 20, 21, Some(2)),
        read(2, 22, 23, Some(2)),
    ];
    assert_clean(&registers(&history));
    // But it cannot take effect twice: 2, then 3 again, then 2.
    let mut bad = history.clone();
    bad.push(write(0, 30, 31, 4));
    bad.push(read(1, 32, 33, Some(2)));
    assert_kind(&registers(&bad), NONLINEARIZABLE);
}

#[test]
fn checker_register_unknown_write_never_seen_accepted() {
    let history = vec![
        write(0, 0, 1, 1),
        write_with(1, 2, 5, 2, Outcome::Unknown),
        op(3, "r", Call::Read, 3, 4, Outcome::Unknown),
        cas(2, 3, 6, Some(1), 5, Outcome::Unknown),
        read(2, 7, 8, Some(1)),
        read(0, 9, 10, Some(1)),
    ];
    assert_clean(&registers(&history));
}

#[test]
fn checker_register_failed_write_read_is_anomaly() {
    let history = vec![
        write(0, 0, 1, 1),
        write_with(1, 2, 3, 2, Outcome::Fail),
        read(2, 4, 5, Some(2)),
    ];
    let verdict = registers(&history);
    assert_kind(&verdict, NONLINEARIZABLE);
    assert!(
        verdict.anomalies[0]
            .detail
            .contains("only written by a failed operation"),
        "{verdict:#?}"
    );
}

#[test]
fn checker_register_write_if_absent_double_apply() {
    let history = vec![
        read(0, 0, 1, None),
        write_if_absent(1, 2, 10, 1, true),
        write_if_absent(2, 3, 11, 2, true),
    ];
    assert_kind(&registers(&history), NONLINEARIZABLE);
    // One applies, the other sees the value: fine. And a `SET NX` that did not apply on an
    // absent key is fine only if some write (here an unknown one) took effect.
    let history = vec![
        read(0, 0, 1, None),
        write_if_absent(1, 2, 10, 1, true),
        write_if_absent(2, 3, 11, 2, false),
        read(0, 12, 13, Some(1)),
    ];
    assert_clean(&registers(&history));
    let history = vec![
        write_with(1, 0, 1, 1, Outcome::Unknown),
        write_if_absent(2, 3, 4, 2, false),
    ];
    assert_clean(&registers(&history));
    let history = vec![write_if_absent(2, 3, 4, 2, false)];
    assert_kind(&registers(&history), NONLINEARIZABLE);
}

#[test]
fn checker_register_cas_chains_valid() {
    let history = vec![
        write_if_absent(0, 0, 1, 1, true),
        // Three concurrent CAS: only the chain 1 -> 2 -> 3 works; a fourth did not apply.
        cas(1, 2, 20, Some(2), 3, applied()),
        cas(2, 3, 18, Some(1), 2, applied()),
        cas(3, 4, 15, Some(1), 9, Outcome::Ok(Ret::Applied(false))),
        read(0, 21, 22, Some(3)),
        // An unknown CAS chain that later reads depend on: 3 -> 4 -> 5.
        cas(1, 23, 24, Some(4), 5, Outcome::Unknown),
        cas(2, 23, 25, Some(3), 4, Outcome::Unknown),
        read(3, 30, 31, Some(5)),
        cas(0, 32, 33, Some(5), 6, applied()),
        read(1, 34, 35, Some(6)),
    ];
    assert_clean(&registers(&history));
}

#[test]
fn checker_register_cas_wrong_expected() {
    let history = vec![
        write(0, 0, 1, 1),
        write(1, 2, 3, 2),
        cas(2, 4, 5, Some(1), 3, applied()),
    ];
    assert_kind(&registers(&history), NONLINEARIZABLE);
}

#[test]
fn checker_register_keys_are_independent() {
    let mut history = vec![write(0, 0, 1, 1), read(1, 2, 3, Some(1))];
    history.push(op(2, "other", Call::Write(5), 0, 1, Outcome::Ok(Ret::Done)));
    history.push(op(
        2,
        "other",
        Call::Read,
        2,
        3,
        Outcome::Ok(Ret::Value(Some(1))),
    ));
    // Counter keys are left to check_counters.
    history.push(incr_ok(3, 0, 1, 1, 1));
    let verdict = registers(&history);
    assert_eq!(verdict.anomalies.len(), 1, "{verdict:#?}");
    assert_eq!(verdict.anomalies[0].key, "other");
    assert_eq!(verdict.ops_checked, 4);
}

#[test]
fn checker_register_budget_exhaustion_is_inconclusive() {
    // Many concurrent writes and an impossible read: the search cannot finish in 10 states.
    let mut history: Vec<Op> = (0..10).map(|c| write(c, 0, 100, c as i64 + 1)).collect();
    history.push(read(10, 101, 102, Some(99)));
    let verdict = check_registers(&history, 10);
    assert!(verdict.anomalies.is_empty(), "{verdict:#?}");
    assert_eq!(verdict.inconclusive, vec!["r".to_string()]);
    assert_kind(&check_registers(&history, BUDGET), NONLINEARIZABLE);
}

// ---------------------------------------------------------------------------------------------
// Counters
// ---------------------------------------------------------------------------------------------

#[test]
fn checker_counter_valid_concurrent_with_unknown() {
    let history = vec![
        incr_ok(0, 0, 10, 1, 3),
        incr_ok(1, 1, 5, 2, 2),
        counter_read(2, 2, 3, None),
        incr(3, 4, 20, 5, Outcome::Unknown),
        incr(4, 4, 6, 7, Outcome::Fail),
        counter_read(2, 11, 12, Some(3)),
        counter_read(1, 13, 14, Some(8)),
        incr_ok(0, 15, 16, 1, 9),
        counter_read(2, 17, 18, Some(9)),
    ];
    let verdict = counters(&history, &[("c", vec![Some(9), Some(9), Some(9)])]);
    assert_clean(&verdict);
    assert_eq!(verdict.ops_checked, history.len());
    // The unknown increment may also never have happened.
    let history = vec![incr_ok(0, 0, 1, 1, 1), incr(1, 2, 3, 5, Outcome::Unknown)];
    assert_clean(&counters(&history, &[("c", vec![Some(1), Some(1)])]));
    assert_clean(&counters(&history, &[("c", vec![Some(6), Some(6)])]));
}

#[test]
fn checker_counter_duplicate_result() {
    let history = vec![incr_ok(0, 0, 10, 1, 1), incr_ok(1, 1, 11, 1, 1)];
    assert_kind(&counters(&history, &[]), "duplicate-incr-result");
}

#[test]
fn checker_counter_incr_order() {
    let history = vec![
        incr_ok(0, 0, 10, 1, 2),
        incr_ok(1, 0, 1, 1, 1),
        // Invoked after the increment that returned 2 completed, yet returned 2 - 1 + 1 = 2.
        incr_ok(2, 11, 12, 1, 2),
    ];
    let verdict = counters(&history, &[]);
    assert_kind(&verdict, "incr-order");
    let history = vec![incr_ok(0, 0, 1, 1, 5), incr_ok(1, 2, 3, 1, 3)];
    assert_kind(&counters(&history, &[]), "incr-order");
}

#[test]
fn checker_counter_bounds() {
    // Result too low for the acknowledged increments before it.
    let history = vec![incr_ok(0, 0, 1, 3, 3), incr_ok(1, 2, 3, 1, 1)];
    assert_kind(&counters(&history, &[]), "incr-bounds");
    // Result too high for all increments invoked before it completed.
    let history = vec![incr_ok(0, 0, 1, 3, 3), incr_ok(1, 2, 3, 1, 10)];
    assert_kind(&counters(&history, &[]), "incr-bounds");
    // A read above everything invoked.
    let history = vec![incr_ok(0, 0, 1, 3, 3), counter_read(1, 2, 3, Some(4))];
    assert_kind(&counters(&history, &[]), "read-bounds");
}

#[test]
fn checker_counter_stale_read() {
    let history = vec![
        incr_ok(0, 0, 1, 2, 2),
        incr_ok(1, 2, 3, 3, 5),
        counter_read(2, 4, 5, Some(2)),
    ];
    let verdict = counters(&history, &[]);
    assert_kind(&verdict, "stale-read");
    // Below a result that completed before although the sum of deltas allows it (the first
    // increment's result includes an unknown increment).
    let history = vec![
        incr(3, 0, 10, 10, Outcome::Unknown),
        incr_ok(0, 1, 2, 1, 11),
        counter_read(2, 3, 4, Some(1)),
    ];
    let verdict = counters(&history, &[]);
    assert_kind(&verdict, "stale-read");
}

#[test]
fn checker_counter_final_lost_write() {
    let history = vec![incr_ok(0, 0, 1, 2, 2), incr_ok(1, 2, 3, 3, 5)];
    let verdict = counters(&history, &[("c", vec![Some(2), Some(2), Some(2)])]);
    assert_kind(&verdict, "lost-write");
    assert!(!verdict.has("final-divergence"));
}

#[test]
fn checker_counter_final_divergence() {
    let history = vec![incr_ok(0, 0, 1, 2, 2), incr(1, 2, 3, 3, Outcome::Unknown)];
    let verdict = counters(&history, &[("c", vec![Some(2), Some(5), Some(2)])]);
    assert_kind(&verdict, "final-divergence");
    assert!(!verdict.has("lost-write") && !verdict.has("phantom-write"));
}

#[test]
fn checker_counter_final_phantom_write() {
    let history = vec![incr_ok(0, 0, 1, 2, 2), incr(1, 2, 3, 3, Outcome::Fail)];
    let verdict = counters(&history, &[("c", vec![Some(5), Some(5)])]);
    assert_kind(&verdict, "phantom-write");
    // A counter nobody incremented must read absent (or 0) everywhere.
    let verdict = counters(&[], &[("idle", vec![None, Some(0), Some(1)])]);
    assert!(
        verdict.has("phantom-write") && verdict.has("final-divergence"),
        "{verdict:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// A generated history
// ---------------------------------------------------------------------------------------------

/// SplitMix64.
struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A valid history of `count` operations by `clients` clients on one register: each client
/// waits up to `think_us` µs, then runs an operation for 0.1–2.1 ms that takes effect at a
/// random instant inside it; `unknown_pct` % of them end unknown (and take effect at any later
/// instant, or never), 2 % fail (and never take effect).
fn simulated_register(
    seed: u64,
    count: usize,
    clients: usize,
    think_us: u64,
    unknown_pct: u64,
) -> Vec<Op> {
    let mut rng = Prng(seed);
    let mut free_at = vec![0u64; clients];
    // (op, instant it takes effect)
    let mut planned: Vec<(Op, Option<u64>)> = Vec::with_capacity(count);
    for n in 0..count {
        let client = (0..clients)
            .min_by_key(|&c| (free_at[c], c))
            .expect("clients");
        let invoked = free_at[client] + rng.below(think_us + 1) * 1000;
        let duration = (100 + rng.below(2000)) * 1000;
        let completed = invoked + duration;
        free_at[client] = completed;
        let value = n as i64 + 1;
        let call = match rng.below(100) {
            0..45 => Call::Read,
            45..75 => Call::Write(value),
            75..85 => Call::WriteIfAbsent(value),
            _ => Call::CompareAndSet {
                expected: None,
                new: value,
            },
        };
        let roll = rng.below(100);
        let (outcome, effect) = if roll < unknown_pct {
            let later = (rng.below(2) == 0).then(|| invoked + rng.below(20 * duration));
            (Outcome::Unknown, later)
        } else if roll < unknown_pct + 2 {
            (Outcome::Fail, None)
        } else {
            (Outcome::Ok(Ret::Done), Some(invoked + rng.below(duration)))
        };
        let op = Op {
            client,
            key: "r".to_string(),
            call,
            invoked,
            completed,
            outcome,
        };
        planned.push((op, effect));
    }
    let mut order: Vec<usize> = (0..planned.len())
        .filter(|&i| planned[i].1.is_some())
        .collect();
    order.sort_by_key(|&i| planned[i].1);
    let mut state: Option<i64> = None;
    for i in order {
        let (op, _) = &mut planned[i];
        let known = op.outcome != Outcome::Unknown;
        let coin = rng.below(100);
        match &mut op.call {
            Call::Read => {
                if known {
                    op.outcome = Outcome::Ok(Ret::Value(state));
                }
            }
            Call::Write(v) => state = Some(*v),
            Call::WriteIfAbsent(v) => {
                let applies = state.is_none();
                if applies {
                    state = Some(*v);
                }
                if known {
                    op.outcome = Outcome::Ok(Ret::Applied(applies));
                }
            }
            Call::CompareAndSet { expected, new } => {
                // Most see the current value and apply; the rest saw a stale one.
                if coin < 80 || !known {
                    *expected = state;
                    state = Some(*new);
                    if known {
                        op.outcome = Outcome::Ok(Ret::Applied(true));
                    }
                } else {
                    *expected = Some(-1);
                    op.outcome = Outcome::Ok(Ret::Applied(false));
                }
            }
            Call::IncrBy(_) => unreachable!(),
        }
    }
    planned.into_iter().map(|(op, _)| op).collect()
}

fn timed_check(history: &[Op], budget: u64) -> (Verdict, Duration) {
    let started = Instant::now();
    let verdict = check_registers(history, budget);
    (verdict, started.elapsed())
}

#[test]
fn checker_register_5000_ops_8_clients_is_fast() {
    let history = simulated_register(7, 5000, 8, 3000, 3);
    let (verdict, took) = timed_check(&history, 10_000_000);
    println!("5000 ops, 8 clients: {took:?}");
    assert_clean(&verdict);
    assert_eq!(verdict.ops_checked, 5000);
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[test]
fn checker_register_dense_overlap_is_conclusive() {
    // No think time: 8 operations always in flight, no quiescent point.
    let history = simulated_register(11, 3000, 8, 0, 3);
    let (verdict, took) = timed_check(&history, 10_000_000);
    println!("3000 ops, 8 clients, no think time: {took:?}");
    assert_clean(&verdict);
}

#[test]
fn checker_register_generated_history_with_stale_read_is_caught() {
    let mut history = simulated_register(3, 5000, 8, 3000, 3);
    // Late in the run, make a read return the value of a write that was overwritten by
    // another acknowledged write long before the read.
    let mut by_time: Vec<usize> = (0..history.len()).collect();
    by_time.sort_by_key(|&i| history[i].invoked);
    let reader = by_time[4000..]
        .iter()
        .copied()
        .find(|&i| matches!(history[i].outcome, Outcome::Ok(Ret::Value(_))))
        .expect("a read");
    let ok_write =
        |op: &Op| matches!(op.call, Call::Write(_)) && op.outcome == Outcome::Ok(Ret::Done);
    let old = by_time[..3000]
        .iter()
        .copied()
        .rfind(|&i| ok_write(&history[i]))
        .expect("a write");
    let Call::Write(stale) = history[old].call else {
        unreachable!()
    };
    history[reader].outcome = Outcome::Ok(Ret::Value(Some(stale)));
    let (verdict, took) = timed_check(&history, 10_000_000);
    println!("5000 ops with a stale read: {took:?}");
    assert_kind(&verdict, NONLINEARIZABLE);
}

/// Linearizability by plain exhaustive search (no cache, no reductions, every op kept):
/// the reference the checker is compared with on small histories.
fn linearizable_by_brute_force(history: &[Op]) -> bool {
    // (invocation, completion or MAX, required, op)
    let ops: Vec<(u64, u64, bool, &Op)> = history
        .iter()
        .filter_map(|op| match (&op.call, &op.outcome) {
            (_, Outcome::Fail) | (Call::Read, Outcome::Unknown) => None,
            (_, Outcome::Unknown) => Some((op.invoked, u64::MAX, false, op)),
            _ => Some((op.invoked, op.completed, true, op)),
        })
        .collect();
    fn step(state: Option<i64>, op: &Op) -> Option<Option<i64>> {
        let ret = match &op.outcome {
            Outcome::Ok(ret) => Some(ret),
            _ => None,
        };
        match (&op.call, ret) {
            (Call::Read, Some(Ret::Value(v))) => (state == *v).then_some(state),
            (Call::Write(v), _) => Some(Some(*v)),
            (Call::WriteIfAbsent(_), Some(Ret::Applied(false))) => state.is_some().then_some(state),
            (Call::WriteIfAbsent(v), _) => state.is_none().then_some(Some(*v)),
            (Call::CompareAndSet { .. }, Some(Ret::Applied(false))) => Some(state),
            (Call::CompareAndSet { expected, new }, _) => {
                (state == *expected).then_some(Some(*new))
            }
            _ => panic!("unexpected op {op:?}"),
        }
    }
    fn search(ops: &[(u64, u64, bool, &Op)], done: u32, state: Option<i64>) -> bool {
        if (0..ops.len()).all(|i| !ops[i].2 || done & (1 << i) != 0) {
            return true;
        }
        (0..ops.len()).any(|i| {
            let pending = |j: usize| done & (1 << j) == 0;
            pending(i)
                && !(0..ops.len()).any(|j| j != i && pending(j) && ops[j].2 && ops[j].1 < ops[i].0)
                && step(state, ops[i].3).is_some_and(|next| search(ops, done | (1 << i), next))
        })
    }
    search(&ops, 0, None)
}

#[test]
fn checker_register_agrees_with_exhaustive_search() {
    let mut rng = Prng(42);
    let (mut valid, mut invalid) = (0, 0);
    for seed in 0..6000 {
        let count = 3 + rng.below(6) as usize;
        let clients = 2 + rng.below(3) as usize;
        let mut history = simulated_register(seed, count, clients, rng.below(1500), rng.below(40));
        // Two times in three, corrupt one operation.
        if rng.below(3) != 0 {
            let i = rng.below(count as u64) as usize;
            let other = Some(1 + rng.below(count as u64 + 1) as i64).filter(|_| rng.below(4) != 0);
            let shift = rng.below(4000) * 1000;
            let how = rng.below(4);
            let op = &mut history[i];
            match (how, &mut op.call, &mut op.outcome) {
                (0, _, outcome) => {
                    *outcome = [Outcome::Fail, Outcome::Unknown][shift as usize % 2].clone()
                }
                (1, _, _) => {
                    op.invoked += shift;
                    op.completed += shift;
                }
                (2, _, _) => {
                    op.invoked = op.invoked.saturating_sub(shift);
                    op.completed = op.completed.saturating_sub(shift).max(op.invoked);
                }
                (_, Call::Read, Outcome::Ok(Ret::Value(v))) => *v = other,
                (_, Call::CompareAndSet { expected, .. }, _) => *expected = other,
                (_, _, Outcome::Ok(Ret::Applied(b))) => *b = !*b,
                _ => {}
            }
        }
        let expected = linearizable_by_brute_force(&history);
        let verdict = check_registers(&history, BUDGET);
        assert!(verdict.inconclusive.is_empty());
        assert_eq!(
            verdict.is_clean(),
            expected,
            "seed {seed}: {history:#?}\n{verdict:#?}"
        );
        if expected {
            valid += 1;
        } else {
            invalid += 1;
        }
    }
    println!("{valid} linearizable and {invalid} non-linearizable histories agree");
    assert!(
        valid > 1000 && invalid > 1000,
        "{valid} valid, {invalid} invalid"
    );
}

/// A valid counter history (key "c") of `count` operations by `clients` clients, like
/// [`simulated_register`]: 30 % reads, increments by 1–5; returns it with the final value.
fn simulated_counter(seed: u64, count: usize, clients: usize, unknown_pct: u64) -> (Vec<Op>, i64) {
    let mut rng = Prng(seed);
    let mut free_at = vec![0u64; clients];
    let mut planned: Vec<(Op, Option<u64>)> = Vec::with_capacity(count);
    for _ in 0..count {
        let client = (0..clients)
            .min_by_key(|&c| (free_at[c], c))
            .expect("clients");
        let invoked = free_at[client] + rng.below(3000) * 1000;
        let duration = (100 + rng.below(2000)) * 1000;
        free_at[client] = invoked + duration;
        let call = if rng.below(100) < 30 {
            Call::Read
        } else {
            Call::IncrBy(1 + rng.below(5) as i64)
        };
        let roll = rng.below(100);
        let (outcome, effect) = if roll < unknown_pct {
            let later = (rng.below(2) == 0).then(|| invoked + rng.below(20 * duration));
            (Outcome::Unknown, later)
        } else if roll < unknown_pct + 2 {
            (Outcome::Fail, None)
        } else {
            (Outcome::Ok(Ret::Done), Some(invoked + rng.below(duration)))
        };
        let op = Op {
            client,
            key: "c".to_string(),
            call,
            invoked,
            completed: invoked + duration,
            outcome,
        };
        planned.push((op, effect));
    }
    let mut order: Vec<usize> = (0..planned.len())
        .filter(|&i| planned[i].1.is_some())
        .collect();
    order.sort_by_key(|&i| planned[i].1);
    let mut counter = 0;
    for i in order {
        let op = &mut planned[i].0;
        if let Call::IncrBy(d) = op.call {
            counter += d;
        }
        if op.outcome != Outcome::Unknown {
            op.outcome = Outcome::Ok(match op.call {
                Call::IncrBy(_) => Ret::Counter(counter),
                _ => Ret::Value((counter > 0).then_some(counter)),
            });
        }
    }
    (planned.into_iter().map(|(op, _)| op).collect(), counter)
}

#[test]
fn checker_counter_generated_history() {
    let (history, last) = simulated_counter(5, 20_000, 8, 5);
    let started = Instant::now();
    let verdict = counters(&history, &[("c", vec![Some(last); 3])]);
    println!("20000 counter ops: {:?}", started.elapsed());
    assert_clean(&verdict);
    // Lose one acknowledged increment: every node agrees on a value one delta too small.
    let deltas: Vec<i64> = history
        .iter()
        .filter_map(|op| match (&op.call, &op.outcome) {
            (Call::IncrBy(d), Outcome::Ok(_)) => Some(*d),
            _ => None,
        })
        .collect();
    let acknowledged: i64 = deltas.iter().sum();
    let lost = deltas.iter().min().expect("an increment");
    let verdict = counters(&history, &[("c", vec![Some(acknowledged - lost); 3])]);
    assert_kind(&verdict, "lost-write");
}

/// A write of fresh key `key` with value `v`.
fn fresh(client: usize, key: &str, v: i64, outcome: Outcome) -> Op {
    op(client, key, Call::Write(v), 0, 5, outcome)
}

fn finals_of(pairs: &[(&str, Option<i64>)]) -> BTreeMap<String, Option<i64>> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn checker_fresh_writes_catch_a_server_that_applies_what_it_refused() {
    // The server answered TRYAGAIN (read as "not applied") but the write took effect: a
    // client that resent it would have applied it twice.
    let history = vec![
        fresh(1, "fresh1", 1, Outcome::Ok(Ret::Done)),
        fresh(2, "fresh2", 2, Outcome::Fail),
    ];
    let verdict = check_fresh_writes(
        &history,
        &finals_of(&[("fresh1", Some(1)), ("fresh2", Some(2))]),
    );
    assert!(verdict.has(REFUSED_BUT_APPLIED), "{verdict:?}");
    assert_eq!(verdict.anomalies.len(), 1);
}

#[test]
fn checker_fresh_writes_catch_a_lost_acknowledged_write() {
    let history = vec![fresh(1, "fresh1", 1, Outcome::Ok(Ret::Done))];
    let verdict = check_fresh_writes(&history, &finals_of(&[("fresh1", None)]));
    assert!(verdict.has(ACKNOWLEDGED_BUT_LOST), "{verdict:?}");
}

#[test]
fn checker_fresh_writes_accept_true_refusals_and_either_outcome_when_unknown() {
    let history = vec![
        fresh(1, "fresh1", 1, Outcome::Ok(Ret::Done)),
        fresh(2, "fresh2", 2, Outcome::Fail),
        fresh(3, "fresh3", 3, Outcome::Unknown),
        fresh(4, "fresh4", 4, Outcome::Unknown),
    ];
    let finals = finals_of(&[
        ("fresh1", Some(1)),
        ("fresh2", None),
        ("fresh3", Some(3)),
        ("fresh4", None),
    ]);
    let verdict = check_fresh_writes(&history, &finals);
    assert!(verdict.is_clean(), "{verdict:?}");
    assert_eq!(verdict.ops_checked, 4);
    // A key that could not be read back is inconclusive, never a pass by omission.
    let verdict = check_fresh_writes(&history, &finals_of(&[("fresh1", Some(1))]));
    assert_eq!(verdict.inconclusive.len(), 3);
}
