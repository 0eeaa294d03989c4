//! Faults and their schedule. Each fault is applied, held for a while, then healed; a quiet
//! period follows. Kinds are dealt from a shuffled deck of the chosen ones, so each comes up
//! once before any comes up twice (CI's two-minute mix applies every kind). The schedule comes
//! from the run's seed, so a seed replays the same sequence of fault kinds, targets and
//! durations (what the cluster does in between, e.g. who is leader, still varies).
//!
//! A power loss is `kill -9` and a cut of the node's lazy filesystem: every file and directory
//! goes back to what was last synced, half the time torn (some unsynced writes kept, the last
//! one partly); the node restarts on what is left when the fault is healed.

use std::time::Duration;

use crate::net::Network;
use crate::nodes::Nodes;
use crate::rng::Rng;
use crate::workload::Shared;

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// kill -9 a random node, restart it when healing.
    KillRandom,
    /// kill -9 the leader, restart it when healing.
    KillLeader,
    /// kill -9 every node, restart them all.
    KillAll,
    /// SIGSTOP the leader, SIGCONT when healing (it wakes up believing it leads).
    PauseLeader,
    /// Cut the leader off from every other node.
    IsolateLeader,
    /// A random majority/minority split.
    SplitHalves,
    /// Two halves that only one node sees both of.
    Bridge,
    /// Packet loss and delay (reordering where netem exists) on a random node's link.
    SlowNetwork,
    /// Remove a follower from the membership, wipe it, re-add it empty under a new id.
    ReplaceNode,
    /// Power loss of a random node, restarted when healing.
    PowerRandom,
    /// Power loss of the leader, restarted when healing.
    PowerLeader,
    /// Power loss of a random minority (the largest one) at once, restarted when healing.
    PowerMinority,
    /// Power loss of every node at once, all restarted when healing.
    PowerAll,
}

impl Fault {
    /// Every fault kind.
    pub const ALL: [Fault; 13] = [
        Fault::KillRandom,
        Fault::KillLeader,
        Fault::KillAll,
        Fault::PauseLeader,
        Fault::IsolateLeader,
        Fault::SplitHalves,
        Fault::Bridge,
        Fault::SlowNetwork,
        Fault::ReplaceNode,
        Fault::PowerRandom,
        Fault::PowerLeader,
        Fault::PowerMinority,
        Fault::PowerAll,
    ];

    /// Its name on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Fault::KillRandom => "kill-random",
            Fault::KillLeader => "kill-leader",
            Fault::KillAll => "kill-all",
            Fault::PauseLeader => "pause-leader",
            Fault::IsolateLeader => "isolate-leader",
            Fault::SplitHalves => "split-halves",
            Fault::Bridge => "bridge",
            Fault::SlowNetwork => "slow-network",
            Fault::ReplaceNode => "replace-node",
            Fault::PowerRandom => "power-random",
            Fault::PowerLeader => "power-leader",
            Fault::PowerMinority => "power-minority",
            Fault::PowerAll => "power-all",
        }
    }

    /// Whether it cuts power (needs the nodes on lazy filesystems).
    pub fn is_power_loss(self) -> bool {
        matches!(
            self,
            Fault::PowerRandom | Fault::PowerLeader | Fault::PowerMinority | Fault::PowerAll
        )
    }

    /// Parses a name.
    pub fn parse(name: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// One applied fault: kind, what it did, when it started and was healed (ns since start).
#[derive(Clone, Debug)]
pub struct Window {
    /// The fault.
    pub fault: Fault,
    /// What exactly was done.
    pub detail: String,
    /// Applied at.
    pub start: u64,
    /// Healed at.
    pub end: u64,
    /// Nodes whose power it cut.
    pub power_losses: usize,
    /// Of those, nodes whose filesystem kept some unsynced writes, torn.
    pub torn: usize,
}

/// Power cuts one fault made: nodes, and how many of them were torn.
#[derive(Default)]
struct Cuts {
    nodes: usize,
    torn: usize,
}

/// What healing needs to undo.
enum Undo {
    Restart(Vec<usize>),
    Resume(usize),
    Heal,
    Nothing,
}

/// Cuts the power of `targets` (each torn with probability ½); they stay down until healed.
fn cut_power(nodes: &mut Nodes, targets: Vec<usize>, rng: &mut Rng) -> (String, Undo, Cuts) {
    let mut cuts = Cuts::default();
    let mut done = Vec::new();
    // Every target dies first, so they all lose power at the same moment.
    let started = std::time::Instant::now();
    for &target in &targets {
        nodes.kill(target);
    }
    let killed = started.elapsed();
    for &target in &targets {
        let tear = rng.below(2) == 0;
        let mut random = || rng.next_u64();
        let result = nodes.power_loss(
            target,
            tear.then_some(&mut random as &mut dyn FnMut() -> u64),
        );
        if let Err(err) = result {
            // The node cannot restart on its filesystem: nothing after this would mean much.
            panic!("chaos: power loss of node {target} failed: {err}");
        }
        cuts.nodes += 1;
        cuts.torn += usize::from(tear);
        done.push(format!("{target}{}", if tear { " (torn)" } else { "" }));
    }
    (
        format!(
            "power cut on node {} (killed in {} ms, filesystems cut in {} ms)",
            done.join(", "),
            killed.as_millis(),
            (started.elapsed() - killed).as_millis()
        ),
        Undo::Restart(targets),
        cuts,
    )
}

/// Applies `fault`; returns a description, what healing must do, and the power cuts made.
fn apply(
    fault: Fault,
    nodes: &mut Nodes,
    network: &mut Network,
    rng: &mut Rng,
) -> (String, Undo, Cuts) {
    let n = nodes.nodes.len();
    let leader = nodes.leader();
    let random = rng.below(n as u64) as usize;
    let (detail, undo) = match fault {
        Fault::PowerRandom => return cut_power(nodes, vec![random], rng),
        Fault::PowerLeader => {
            // Right after a fault the cluster may still be electing: give it a moment.
            let leader = leader.or_else(|| nodes.wait_for_leader(Duration::from_secs(5)));
            let (detail, undo, cuts) = cut_power(nodes, vec![leader.unwrap_or(random)], rng);
            let who = if leader.is_some() {
                "leader"
            } else {
                "no leader"
            };
            return (format!("{who}: {detail}"), undo, cuts);
        }
        Fault::PowerMinority => {
            let minority = rng.shuffled(n)[..(n - 1) / 2].to_vec();
            return cut_power(nodes, minority, rng);
        }
        Fault::PowerAll => return cut_power(nodes, (0..n).collect(), rng),
        Fault::KillRandom => {
            nodes.kill(random);
            (format!("killed node {random}"), Undo::Restart(vec![random]))
        }
        Fault::KillLeader => {
            let target = leader.unwrap_or(random);
            nodes.kill(target);
            (
                format!("killed leader {target}"),
                Undo::Restart(vec![target]),
            )
        }
        Fault::KillAll => {
            (0..n).for_each(|i| nodes.kill(i));
            ("killed every node".into(), Undo::Restart((0..n).collect()))
        }
        Fault::PauseLeader => {
            let target = leader.unwrap_or(random);
            nodes.pause(target);
            (format!("paused leader {target}"), Undo::Resume(target))
        }
        Fault::IsolateLeader => {
            let target = leader.unwrap_or(random);
            let mut groups = vec![vec![target]];
            groups.push((0..n).filter(|&i| i != target).collect());
            report(network.partition(&groups));
            (format!("isolated leader: {groups:?}"), Undo::Heal)
        }
        Fault::SplitHalves => {
            let order = rng.shuffled(n);
            let minority = order[..n / 2].to_vec();
            let majority = order[n / 2..].to_vec();
            let groups = vec![minority, majority];
            report(network.partition(&groups));
            (format!("split {groups:?}"), Undo::Heal)
        }
        Fault::Bridge => {
            let order = rng.shuffled(n);
            let middle = order[0];
            let rest = &order[1..];
            let (left, right) = rest.split_at(rest.len() / 2);
            let mut a = left.to_vec();
            a.push(middle);
            let mut b = right.to_vec();
            b.push(middle);
            let groups = vec![a, b];
            report(network.partition(&groups));
            (format!("bridge through {middle}: {groups:?}"), Undo::Heal)
        }
        Fault::SlowNetwork => {
            let loss = 50 + rng.below(150) as u32;
            let delay = 20 + rng.below(130) as u32;
            report(network.degrade(random, loss, delay));
            (
                format!(
                    "node {random}: {}‰ loss, {delay} ms delay ({:?})",
                    loss,
                    network.degrader()
                ),
                Undo::Heal,
            )
        }
        Fault::ReplaceNode => {
            let Some(leader) = leader else {
                return (
                    "no leader to change membership through".into(),
                    Undo::Nothing,
                    Cuts::default(),
                );
            };
            let target = (leader + 1 + rng.below(n as u64 - 1) as usize) % n;
            let old = nodes.nodes[target].id;
            match nodes.replace(network, target, leader) {
                Ok(new) => (
                    format!(
                        "replaced node {target}: id {old} removed, empty node joined as id {new}"
                    ),
                    Undo::Nothing,
                ),
                Err(err) => (
                    format!("replace node {target} refused: {err}"),
                    Undo::Nothing,
                ),
            }
        }
    };
    (detail, undo, Cuts::default())
}

fn report(result: Result<(), String>) {
    if let Err(err) = result {
        eprintln!("chaos: network fault failed: {err}");
    }
}

fn undo(undo: Undo, nodes: &mut Nodes, network: &mut Network) {
    match undo {
        Undo::Restart(list) => list.into_iter().for_each(|i| nodes.restart(network, i)),
        Undo::Resume(i) => nodes.resume(i),
        Undo::Heal => report(network.heal()),
        Undo::Nothing => {}
    }
}

/// Runs faults dealt from `faults` (a deck, reshuffled when empty) until `run_for` has passed;
/// returns the windows.
pub fn run(
    faults: &[Fault],
    run_for: Duration,
    nodes: &mut Nodes,
    network: &mut Network,
    shared: &Shared,
    rng: &mut Rng,
) -> Vec<Window> {
    let mut windows = Vec::new();
    let mut deck: Vec<Fault> = Vec::new();
    let end = shared.start.elapsed() + run_for;
    while shared.start.elapsed() + Duration::from_secs(6) < end {
        std::thread::sleep(rng.millis(1500, 3000));
        if deck.is_empty() {
            deck = rng
                .shuffled(faults.len())
                .into_iter()
                .map(|i| faults[i])
                .collect();
        }
        let fault = deck.pop().expect("a dealt fault");
        let start = shared.now();
        let (detail, to_undo, cuts) = apply(fault, nodes, network, rng);
        eprintln!(
            "chaos: {:>7.1}s {}: {detail}",
            start as f64 / 1e9,
            fault.name()
        );
        std::thread::sleep(rng.millis(2000, 5000));
        undo(to_undo, nodes, network);
        windows.push(Window {
            fault,
            detail,
            start,
            end: shared.now(),
            power_losses: cuts.nodes,
            torn: cuts.torn,
        });
    }
    windows
}
