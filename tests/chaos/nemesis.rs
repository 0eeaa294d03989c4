//! Faults and their schedule. Each fault is applied, held for a while, then healed; a quiet
//! period follows. The schedule comes from the run's seed, so a seed replays the same
//! sequence of fault kinds, targets and durations (what the cluster does in between, e.g.
//! who is leader, still varies).

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
}

impl Fault {
    /// Every fault kind.
    pub const ALL: [Fault; 9] = [
        Fault::KillRandom,
        Fault::KillLeader,
        Fault::KillAll,
        Fault::PauseLeader,
        Fault::IsolateLeader,
        Fault::SplitHalves,
        Fault::Bridge,
        Fault::SlowNetwork,
        Fault::ReplaceNode,
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
        }
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
}

/// What healing needs to undo.
enum Undo {
    Restart(Vec<usize>),
    Resume(usize),
    Heal,
    Nothing,
}

/// Applies `fault`; returns a description and what healing must do.
fn apply(fault: Fault, nodes: &mut Nodes, network: &mut Network, rng: &mut Rng) -> (String, Undo) {
    let n = nodes.nodes.len();
    let leader = nodes.leader();
    let random = rng.below(n as u64) as usize;
    match fault {
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
    }
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

/// Runs faults drawn from `faults` until `run_for` has passed; returns the windows.
pub fn run(
    faults: &[Fault],
    run_for: Duration,
    nodes: &mut Nodes,
    network: &mut Network,
    shared: &Shared,
    rng: &mut Rng,
) -> Vec<Window> {
    let mut windows = Vec::new();
    let end = shared.start.elapsed() + run_for;
    while shared.start.elapsed() + Duration::from_secs(6) < end {
        std::thread::sleep(rng.millis(1500, 3000));
        let fault = faults[rng.below(faults.len() as u64) as usize];
        let start = shared.now();
        let (detail, to_undo) = apply(fault, nodes, network, rng);
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
        });
    }
    windows
}
