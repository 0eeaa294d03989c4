//! The fault-injection harness (`cargo test --test chaos`): a redraft cluster, one network
//! namespace per node, each node's data directory on a lazy filesystem of its own, clients
//! recording a history of counter and register operations while the nemesis kills, pauses,
//! partitions, slows and replaces nodes and cuts their power; then every fault is healed,
//! each node's final state is read, and the history is checked (linearizability of every
//! register, counter bounds, no acknowledged write lost, all nodes equal).
//!
//! ```text
//! cargo test --release --test chaos -- [--duration 20m] [--seed N] [--nodes 3|5]
//!     [--faults kill-leader,split-halves,…] [--clients N] [--keep]
//! ```
//! Needs root (namespaces, nftables); `bash .ci/test` installs `nftables`. The power-loss faults
//! need `/dev/fuse` too: without it the data directories are plain ones and those faults are
//! left out (the run says so). Prints operations,
//! ok/fail/unknown counts, anomalies, the longest unavailability per fault kind and a verdict
//! line; exits non-zero on any anomaly. A failing run (or `--keep`) keeps its directory with
//! the history and every node's log. Without arguments it runs CI's short mix.

mod checker;
#[path = "../power_loss/lazyfs.rs"]
mod lazyfs;
mod nemesis;
mod net;
mod nodes;
mod rng;
mod workload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use checker::{Call, Op, Outcome};
use nemesis::{Fault, Window};
use workload::{Kind, Shared};

/// Settings of one run.
struct Settings {
    duration: Duration,
    seed: u64,
    nodes: usize,
    faults: Vec<Fault>,
    clients: usize,
    keep: bool,
}

fn parse_duration(text: &str) -> Option<Duration> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number.parse().ok()?;
    Some(Duration::from_secs(match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return None,
    }))
}

/// Parses the arguments after `--`; libtest's own flags are ignored and a name filter that
/// does not match "chaos" skips the run (as `cargo test <filter>` expects).
fn settings() -> Result<Option<Settings>, String> {
    let mut settings = Settings {
        duration: Duration::from_secs(120),
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1),
        nodes: 3,
        faults: Fault::ALL.to_vec(),
        clients: 12,
        keep: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--duration" => {
                let text = value("--duration")?;
                settings.duration = parse_duration(&text).ok_or(format!("bad duration {text}"))?;
            }
            "--seed" => settings.seed = value("--seed")?.parse().map_err(|_| "bad seed")?,
            "--nodes" => settings.nodes = value("--nodes")?.parse().map_err(|_| "bad --nodes")?,
            "--clients" => {
                settings.clients = value("--clients")?.parse().map_err(|_| "bad --clients")?
            }
            "--faults" => {
                settings.faults = value("--faults")?
                    .split(',')
                    .map(|name| Fault::parse(name).ok_or(format!("unknown fault {name}")))
                    .collect::<Result<_, _>>()?
            }
            "--keep" => settings.keep = true,
            flag if flag.starts_with('-') => {} // libtest flags (--nocapture, --quiet, …)
            filter => {
                if !"chaos".contains(filter) && !filter.contains("chaos") {
                    return Ok(None);
                }
            }
        }
    }
    if !(3..=9).contains(&settings.nodes) {
        return Err("--nodes must be between 3 and 9".into());
    }
    Ok(Some(settings))
}

fn main() {
    let settings = match settings() {
        Ok(Some(settings)) => settings,
        Ok(None) => return,
        Err(err) => {
            eprintln!("chaos: {err}");
            std::process::exit(2);
        }
    };
    // SAFETY-free root check: namespaces and nftables need CAP_NET_ADMIN.
    if std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            !s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(true)
    {
        eprintln!(
            "chaos: the fault-injection harness must run as root (network namespaces, nftables)"
        );
        std::process::exit(1);
    }
    let passed = run(&settings);
    std::process::exit(if passed { 0 } else { 1 });
}

fn run(settings: &Settings) -> bool {
    let faults: Vec<&str> = settings.faults.iter().map(|f| f.name()).collect();
    println!(
        "chaos: seed {} · {} nodes · {} clients · {:?} of faults: {}",
        settings.seed,
        settings.nodes,
        settings.clients,
        settings.duration,
        faults.join(",")
    );
    let run_dir = std::env::temp_dir().join(format!(
        "redraft-chaos-{}-{}",
        settings.seed,
        std::process::id()
    ));
    std::fs::create_dir_all(&run_dir).expect("run dir");
    let mut network = match net::Network::create(settings.nodes) {
        Ok(network) => network,
        Err(err) => {
            eprintln!("chaos: cannot build the test network: {err}");
            return false;
        }
    };
    println!("chaos: link degradation by {:?}", network.degrader());
    let mut faults = settings.faults.clone();
    let disks = match nodes::mount_disks(&run_dir, settings.nodes) {
        Ok(disks) => Some(disks),
        Err(err) => {
            faults.retain(|fault| !fault.is_power_loss());
            println!(
                "chaos: NOTE no lazy filesystems ({err}): data directories are plain ones and \
                 the power-loss faults are left out"
            );
            None
        }
    };
    if faults.is_empty() {
        println!("chaos: SKIPPED: no fault left to run");
        let _ = std::fs::remove_dir_all(&run_dir);
        return true;
    }
    let mut nodes = nodes::Nodes::start(&network, &run_dir, env!("CARGO_BIN_EXE_redraft"), disks);
    if nodes.wait_for_leader(Duration::from_secs(30)).is_none() {
        eprintln!(
            "chaos: no leader within 30 s; logs in {}",
            run_dir.display()
        );
        return false;
    }

    let shared = Shared::new();
    let mut rng = rng::Rng::new(settings.seed);
    let addrs = nodes.addrs();
    let clients: Vec<_> = (0..settings.clients)
        .map(|id| {
            let kind = match id % 3 {
                0 => Kind::Register,
                1 => Kind::Counter,
                _ => Kind::Fresh,
            };
            let addrs = addrs.clone();
            let shared = shared.clone();
            let seed = settings.seed;
            std::thread::spawn(move || workload::client(id, kind, addrs, shared, seed))
        })
        .collect();

    let windows = nemesis::run(
        &faults,
        settings.duration,
        &mut nodes,
        &mut network,
        &shared,
        &mut rng,
    );

    // Heal everything, let the clients see the recovery, then stop them.
    let _ = network.heal();
    for i in 0..nodes.nodes.len() {
        nodes.resume(i);
        nodes.restart(&network, i);
    }
    let healed = shared.now();
    let leader = nodes.wait_for_leader(Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(5));
    shared.stop.store(true, Relaxed);
    for client in clients {
        let _ = client.join();
    }
    let history = std::mem::take(&mut *shared.history.lock().unwrap());
    let write_times = std::mem::take(&mut *shared.write_times.lock().unwrap());
    let uncertain = std::mem::take(&mut *shared.uncertain_replies.lock().unwrap());

    // A node that crashed is a failure even if the cluster recovered.
    for i in 0..nodes.nodes.len() {
        nodes.reap(i);
    }
    let crashes = std::mem::take(&mut nodes.crashes);
    let mut unread = Vec::new();
    let finals = final_reads(&nodes, &mut unread);
    let fresh_finals = fresh_reads(&nodes, &history, &mut unread);
    let disks = (0..nodes.nodes.len())
        .filter_map(|i| Some(format!("node {i}: {}", nodes.disk_counts(i)?)))
        .collect();
    let passed = report(
        settings,
        &history,
        &Observed {
            write_times,
            uncertain,
            finals,
            fresh_finals,
            unread,
            crashes,
            disks,
        },
        &windows,
        leader.is_some(),
        healed,
        &run_dir,
    );
    nodes.stop_all();
    if !passed || settings.keep {
        // A lazy filesystem's contents go with its mount.
        nodes.copy_data_out(&run_dir);
    }
    drop(nodes);
    drop(network);
    if passed && !settings.keep {
        let _ = std::fs::remove_dir_all(&run_dir);
    } else {
        write_history(&run_dir.join("history.txt"), &history);
        println!("chaos: history and node logs kept in {}", run_dir.display());
    }
    passed
}

/// Each node's own value of every counter (READONLY reads are served from the node's state
/// machine once it has applied the leader's commit index), retried with a deadline.
fn final_reads(
    nodes: &nodes::Nodes,
    unread: &mut Vec<String>,
) -> BTreeMap<String, Vec<Option<i64>>> {
    let mut finals: BTreeMap<String, Vec<Option<i64>>> = (0..workload::COUNTER_KEYS)
        .map(|i| (workload::counter_key(i), Vec::new()))
        .collect();
    for addr in nodes.addrs() {
        let deadline = Instant::now() + Duration::from_secs(30);
        let values = loop {
            let attempt = (|| {
                let mut con = nodes::connect(&addr, Duration::from_secs(5))?;
                redis::cmd("READONLY").query::<()>(&mut con).ok()?;
                (0..workload::COUNTER_KEYS)
                    .map(|i| {
                        redis::cmd("GET")
                            .arg(workload::counter_key(i))
                            .query::<Option<i64>>(&mut con)
                            .ok()
                    })
                    .collect::<Option<Vec<Option<i64>>>>()
            })();
            if let Some(values) = attempt {
                break Some(values);
            }
            if Instant::now() > deadline {
                eprintln!("chaos: could not read the final state of {addr}");
                unread.push(format!("the final state of {addr}"));
                break None;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        if let Some(values) = values {
            for (i, value) in values.into_iter().enumerate() {
                finals
                    .get_mut(&workload::counter_key(i))
                    .expect("key")
                    .push(value);
            }
        }
    }
    finals
}

/// The value every fresh key has after healing (`None`: absent), read with `MGET` through the
/// nodes (linearizable); keys that could not be read are left out (inconclusive). One deadline
/// covers all of them: a cluster that does not answer ends the reads, it does not stall them
/// once per chunk.
fn fresh_reads(
    nodes: &nodes::Nodes,
    history: &[Op],
    unread: &mut Vec<String>,
) -> BTreeMap<String, Option<i64>> {
    let keys: Vec<&str> = history
        .iter()
        .filter(|op| op.key.starts_with(workload::FRESH_PREFIX))
        .map(|op| op.key.as_str())
        .collect();
    let mut finals = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for chunk in keys.chunks(1000) {
        loop {
            let values = nodes.addrs().iter().find_map(|addr| {
                let mut con = nodes::connect(addr, Duration::from_secs(5))?;
                redis::cmd("MGET")
                    .arg(chunk)
                    .query::<Vec<Option<i64>>>(&mut con)
                    .ok()
            });
            if let Some(values) = values {
                for (key, value) in chunk.iter().zip(values) {
                    finals.insert(key.to_string(), value);
                }
                break;
            }
            if Instant::now() > deadline {
                let left = format!("{} of {} fresh keys", keys.len() - finals.len(), keys.len());
                eprintln!("chaos: could not read {left} back");
                unread.push(left);
                return finals;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    finals
}

/// What the clients and the final reads observed, besides the history.
struct Observed {
    write_times: Vec<u64>,
    uncertain: Vec<(u64, String)>,
    finals: BTreeMap<String, Vec<Option<i64>>>,
    fresh_finals: BTreeMap<String, Option<i64>>,
    /// What the healed cluster did not let the final reads see (a failure: it must serve).
    unread: Vec<String>,
    /// Nodes that exited without the harness stopping them.
    crashes: Vec<String>,
    /// What each node's lazy filesystem saw (none on plain directories).
    disks: Vec<String>,
}

/// The longest stretch without a successful write inside `[from, to]` (ns).
fn longest_gap(write_times: &[u64], from: u64, to: u64) -> u64 {
    let start = write_times.partition_point(|&t| t < from);
    let mut last = from;
    let mut longest = 0;
    for &t in &write_times[start..] {
        if t > to {
            break;
        }
        longest = longest.max(t - last);
        last = t;
    }
    longest.max(to.saturating_sub(last))
}

/// How long after `healed` the first successful write completed (ns), if one did by `until`.
fn first_write_after(write_times: &[u64], healed: u64, until: u64) -> Option<u64> {
    let next = write_times.get(write_times.partition_point(|&t| t < healed))?;
    (*next <= until).then(|| next - healed)
}

fn report(
    settings: &Settings,
    history: &[Op],
    observed: &Observed,
    windows: &[Window],
    recovered: bool,
    healed: u64,
    run_dir: &std::path::Path,
) -> bool {
    let finals = &observed.finals;
    let mut write_times = observed.write_times.clone();
    write_times.sort_unstable();
    let count = |f: &dyn Fn(&Op) -> bool| history.iter().filter(|op| f(op)).count();
    let ok = count(&|op| matches!(op.outcome, Outcome::Ok(_)));
    let fail = count(&|op| op.outcome == Outcome::Fail);
    let unknown = count(&|op| op.outcome == Outcome::Unknown);
    let ok_writes =
        count(&|op| !matches!(op.call, Call::Read) && matches!(op.outcome, Outcome::Ok(_)));
    println!(
        "chaos: {} operations: {ok} ok ({ok_writes} writes), {fail} failed, {unknown} unknown",
        history.len()
    );

    let (fresh, rest): (Vec<Op>, Vec<Op>) = history
        .iter()
        .cloned()
        .partition(|op| op.key.starts_with(workload::FRESH_PREFIX));
    let (registers, counters): (Vec<Op>, Vec<Op>) = rest
        .into_iter()
        .partition(|op| op.key.starts_with("register"));
    let started = Instant::now();
    let register_verdict = checker::check_registers(&registers, 20_000_000);
    let counter_verdict = checker::check_counters(&counters, finals);
    let fresh_verdict = checker::check_fresh_writes(&fresh, &observed.fresh_finals);
    println!(
        "chaos: checked {} register, {} counter and {} fresh-key operations in {:.1} s",
        register_verdict.ops_checked,
        counter_verdict.ops_checked,
        fresh_verdict.ops_checked,
        started.elapsed().as_secs_f64()
    );
    let fresh_count =
        |outcome: &dyn Fn(&Outcome) -> bool| fresh.iter().filter(|op| outcome(&op.outcome)).count();
    println!(
        "chaos: fresh-key writes: {} acknowledged, {} refused, {} unknown; {} lies (refused but \
         applied), {} lost (acknowledged but absent)",
        fresh_count(&|o| matches!(o, Outcome::Ok(_))),
        fresh_count(&|o| *o == Outcome::Fail),
        fresh_count(&|o| *o == Outcome::Unknown),
        fresh_verdict
            .anomalies
            .iter()
            .filter(|a| a.kind == checker::REFUSED_BUT_APPLIED)
            .count(),
        fresh_verdict
            .anomalies
            .iter()
            .filter(|a| a.kind == checker::ACKNOWLEDGED_BUT_LOST)
            .count(),
    );
    let anomalies: Vec<_> = register_verdict
        .anomalies
        .iter()
        .chain(&counter_verdict.anomalies)
        .chain(&fresh_verdict.anomalies)
        .collect();
    for anomaly in &anomalies {
        println!(
            "chaos: ANOMALY {} on {}: {}",
            anomaly.kind, anomaly.key, anomaly.detail
        );
    }
    let inconclusive: Vec<_> = register_verdict
        .inconclusive
        .iter()
        .chain(&counter_verdict.inconclusive)
        .chain(&fresh_verdict.inconclusive)
        .collect();
    if !inconclusive.is_empty() {
        println!("chaos: search budget exhausted (inconclusive) for {inconclusive:?}");
    }
    for (key, values) in finals {
        println!("chaos: final {key} on each node: {values:?}");
    }

    // Unavailability: per fault kind, the longest time without a successful write from the
    // fault's start until the next fault starts (or the end of the run).
    // Recovery: from the heal (restart, resume, network healed) to the next successful write.
    let mut worst: BTreeMap<&str, u64> = BTreeMap::new();
    let mut recoveries: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (i, window) in windows.iter().enumerate() {
        let until = windows.get(i + 1).map_or(healed, |next| next.start);
        let gap = longest_gap(&write_times, window.start, until);
        let entry = worst.entry(window.fault.name()).or_default();
        *entry = (*entry).max(gap);
        if let Some(recovery) = first_write_after(&write_times, window.end, until) {
            recoveries
                .entry(window.fault.name())
                .or_default()
                .push(recovery);
        }
    }
    // Error replies that left a client not knowing the outcome, by the fault in force.
    let mut uncertain_by_fault: BTreeMap<&str, usize> = BTreeMap::new();
    let mut uncertain_texts: BTreeMap<&str, usize> = BTreeMap::new();
    for (t, text) in &observed.uncertain {
        let t = *t;
        *uncertain_texts.entry(text.as_str()).or_default() += 1;
        let fault = windows
            .iter()
            .rev()
            .find(|w| w.start <= t)
            .map_or("none", |w| w.fault.name());
        *uncertain_by_fault.entry(fault).or_default() += 1;
    }
    println!(
        "chaos: faults applied: {}; uncertain error replies: {}",
        windows.len(),
        observed.uncertain.len()
    );
    for (text, count) in uncertain_texts.iter().take(8) {
        println!("chaos:   uncertain reply ×{count}: {text}");
    }
    for (fault, gap) in &worst {
        let applied = windows.iter().filter(|w| w.fault.name() == *fault).count();
        let mut recovery = recoveries.get(fault).cloned().unwrap_or_default();
        recovery.sort_unstable();
        let median = recovery.get(recovery.len() / 2).copied().unwrap_or(0);
        let slowest = recovery.last().copied().unwrap_or(0);
        println!(
            "chaos:   {fault:<15} ×{applied:<3} longest without a successful write: {:>6} ms \
             (first write after the heal: median {:>5} ms, slowest {:>5} ms), uncertain replies: {}",
            gap / 1_000_000,
            median / 1_000_000,
            slowest / 1_000_000,
            uncertain_by_fault.get(fault).copied().unwrap_or(0)
        );
    }
    // Power losses by kind: faults applied, nodes cut, of those torn.
    let power: Vec<String> = nemesis::Fault::ALL
        .into_iter()
        .filter(|fault| fault.is_power_loss() && settings.faults.contains(fault))
        .map(|fault| {
            let applied: Vec<&Window> = windows.iter().filter(|w| w.fault == fault).collect();
            format!(
                "{} ×{} ({} node cuts, {} torn)",
                fault.name(),
                applied.len(),
                applied.iter().map(|w| w.power_losses).sum::<usize>(),
                applied.iter().map(|w| w.torn).sum::<usize>()
            )
        })
        .collect();
    if !observed.disks.is_empty() && !power.is_empty() {
        println!("chaos: power losses injected: {}", power.join(", "));
    }
    for disk in &observed.disks {
        println!("chaos: lazy filesystem of {disk}");
    }
    let _ = std::fs::write(
        run_dir.join("faults.txt"),
        windows
            .iter()
            .map(|w| {
                format!(
                    "{:.3}s..{:.3}s {}: {}\n",
                    w.start as f64 / 1e9,
                    w.end as f64 / 1e9,
                    w.fault.name(),
                    w.detail
                )
            })
            .collect::<String>(),
    );

    let enough = ok_writes >= 50;
    if !enough {
        println!("chaos: too few successful writes ({ok_writes}) for a meaningful check");
    }
    if !recovered {
        println!("chaos: no leader after healing");
    }
    for crash in &observed.crashes {
        println!("chaos: CRASH {crash}");
    }
    for what in &observed.unread {
        println!("chaos: the healed cluster did not serve {what}");
    }
    let passed = anomalies.is_empty()
        && inconclusive.is_empty()
        && enough
        && recovered
        && observed.unread.is_empty()
        && observed.crashes.is_empty();
    println!(
        "chaos: VERDICT {} (seed {}, {} anomalies, {unknown} indeterminate)",
        if passed { "PASS" } else { "FAIL" },
        settings.seed,
        anomalies.len()
    );
    passed
}

fn write_history(path: &PathBuf, history: &[Op]) {
    let mut sorted: Vec<&Op> = history.iter().collect();
    sorted.sort_by_key(|op| op.invoked);
    let text: String = sorted.iter().map(|op| format!("{op:?}\n")).collect();
    let _ = std::fs::write(path, text);
}
