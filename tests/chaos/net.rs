//! The network the cluster under test lives on: one network namespace per node, each joined
//! to a bridge in the harness's namespace by a veth pair, and the faults applied to it —
//! partitions (nftables drop rules inside each node's namespace), packet loss (nftables
//! `numgen`), delay and reordering (`tc netem` where the kernel has it, otherwise a `tbf`
//! rate limit that queues packets).
//!
//! Clients run in the harness's namespace and reach every node through the bridge; only
//! node-to-node traffic is cut, as in Jepsen. Everything is named after a run slot `k`
//! (`rdc<k>…`, subnet `10.201.<k>.0/24`) recorded in `/run/redraft-chaos/<k>.pid`; a new run
//! first removes the leftovers of runs whose process is gone. [`Network`]'s `Drop` removes its
//! own namespaces and bridge.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

const SLOT_DIR: &str = "/run/redraft-chaos";

/// Runs `cmd args…`, returning stderr on failure.
pub fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Runs a command inside a namespace.
fn run_in(netns: &str, cmd: &str, args: &[&str]) -> Result<(), String> {
    let mut full = vec!["netns", "exec", netns, cmd];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// Runs `nft -f -` inside a namespace with `script` on stdin.
fn nft_in(netns: &str, script: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", netns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("nft: {e}"))?;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .map_err(|e| format!("nft: {e}"))?;
    let output = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft in {netns}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Whether a process with this pid exists.
fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// How links are degraded on this kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Degrader {
    /// `tc netem`: delay with jitter (reorders), loss.
    Netem,
    /// No netem in the kernel: nftables loss plus a `tbf` rate limit that queues (delays).
    LossAndRateLimit,
}

/// The namespaces, bridge and addresses of one run.
pub struct Network {
    slot: u32,
    nodes: usize,
    degrader: Degrader,
    /// Per node: peers (indexes) whose traffic it currently drops.
    blocked: Vec<BTreeSet<usize>>,
    /// Per node: packet loss in per mille on its interface.
    loss: Vec<u32>,
    slot_file: PathBuf,
}

impl Network {
    /// Creates the bridge and one namespace per node.
    pub fn create(nodes: usize) -> Result<Network, String> {
        std::fs::create_dir_all(SLOT_DIR).map_err(|e| format!("{SLOT_DIR}: {e}"))?;
        Network::remove_leftovers();
        let slot = (0..250u32)
            .find_map(|k| {
                let file = PathBuf::from(format!("{SLOT_DIR}/{k}.pid"));
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&file)
                    .ok()
                    .map(|mut f| {
                        use std::io::Write;
                        let _ = write!(f, "{}", std::process::id());
                        k
                    })
            })
            .ok_or("no free run slot under /run/redraft-chaos")?;
        let mut network = Network {
            slot,
            nodes,
            degrader: Degrader::LossAndRateLimit,
            blocked: vec![BTreeSet::new(); nodes],
            loss: vec![0; nodes],
            slot_file: PathBuf::from(format!("{SLOT_DIR}/{slot}.pid")),
        };
        let bridge = network.bridge();
        run("ip", &["link", "add", &bridge, "type", "bridge"])?;
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/24", network.client_ip()),
                "dev",
                &bridge,
            ],
        )?;
        run("ip", &["link", "set", &bridge, "up"])?;
        for i in 0..nodes {
            network.add_namespace(i)?;
        }
        let probe = network.namespace(0);
        network.degrader = if run_in(
            &probe,
            "tc",
            &[
                "qdisc", "add", "dev", "eth0", "root", "netem", "delay", "1ms",
            ],
        )
        .is_ok()
        {
            let _ = run_in(&probe, "tc", &["qdisc", "del", "dev", "eth0", "root"]);
            Degrader::Netem
        } else {
            Degrader::LossAndRateLimit
        };
        Ok(network)
    }

    /// Adds namespace `i` with its veth pair, address and an empty nftables table.
    fn add_namespace(&mut self, i: usize) -> Result<(), String> {
        let netns = self.namespace(i);
        let host_end = format!("rdc{}v{}", self.slot, i);
        run("ip", &["netns", "add", &netns])?;
        run(
            "ip",
            &[
                "link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns", &netns,
            ],
        )?;
        run("ip", &["link", "set", &host_end, "master", &self.bridge()])?;
        run("ip", &["link", "set", &host_end, "up"])?;
        run_in(
            &netns,
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/24", self.node_ip(i)),
                "dev",
                "eth0",
            ],
        )?;
        run_in(&netns, "ip", &["link", "set", "eth0", "up"])?;
        run_in(&netns, "ip", &["link", "set", "lo", "up"])?;
        self.apply_rules(i)
    }

    /// Removes namespaces and bridges of earlier runs whose process is gone.
    fn remove_leftovers() {
        let Ok(entries) = std::fs::read_dir(SLOT_DIR) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(slot) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let owner = std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok());
            if owner.is_some_and(alive) {
                continue;
            }
            remove_slot(slot);
            let _ = std::fs::remove_file(&path);
        }
    }

    /// The namespace of node `i`.
    pub fn namespace(&self, i: usize) -> String {
        format!("rdc{}n{}", self.slot, i)
    }

    fn bridge(&self) -> String {
        format!("rdc{}br", self.slot)
    }

    /// Node `i`'s address.
    pub fn node_ip(&self, i: usize) -> String {
        format!("10.201.{}.{}", self.slot, i + 1)
    }

    /// The harness's (clients') address on the bridge.
    pub fn client_ip(&self) -> String {
        format!("10.201.{}.254", self.slot)
    }

    /// How links are degraded here.
    pub fn degrader(&self) -> Degrader {
        self.degrader
    }

    /// Rewrites node `i`'s nftables table from its blocked peers and loss.
    fn apply_rules(&self, i: usize) -> Result<(), String> {
        let netns = self.namespace(i);
        let mut input = String::new();
        let mut output = String::new();
        for &peer in &self.blocked[i] {
            let ip = self.node_ip(peer);
            input.push_str(&format!("    ip saddr {ip} drop\n"));
            output.push_str(&format!("    ip daddr {ip} drop\n"));
        }
        if self.loss[i] > 0 && self.degrader == Degrader::LossAndRateLimit {
            // Loss on node-to-node traffic only: clients are the observers.
            let client = self.client_ip();
            input.push_str(&format!(
                "    ip saddr != {client} numgen random mod 1000 < {} drop\n",
                self.loss[i]
            ));
        }
        let script = format!(
            "table inet chaos\ndelete table inet chaos\ntable inet chaos {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n{input}  }}\n  chain output {{\n    type filter hook output priority 0; policy accept;\n{output}  }}\n}}\n"
        );
        nft_in(&netns, &script)
    }

    /// Cuts the network into `groups`: two nodes can talk iff some group holds both. A node
    /// in several groups (a "bridge") talks to all of them.
    pub fn partition(&mut self, groups: &[Vec<usize>]) -> Result<(), String> {
        for i in 0..self.nodes {
            self.blocked[i] = (0..self.nodes)
                .filter(|&j| j != i && !groups.iter().any(|g| g.contains(&i) && g.contains(&j)))
                .collect();
        }
        (0..self.nodes).try_for_each(|i| self.apply_rules(i))
    }

    /// Degrades node `i`'s link: loss in per mille, delay in ms (with jitter: reordering).
    pub fn degrade(&mut self, i: usize, loss_per_mille: u32, delay_ms: u32) -> Result<(), String> {
        let netns = self.namespace(i);
        match self.degrader {
            Degrader::Netem => {
                let delay = format!("{delay_ms}ms");
                let jitter = format!("{}ms", delay_ms / 2);
                let loss = format!("{}%", f64::from(loss_per_mille) / 10.0);
                run_in(
                    &netns,
                    "tc",
                    &[
                        "qdisc", "replace", "dev", "eth0", "root", "netem", "delay", &delay,
                        &jitter, "loss", &loss,
                    ],
                )
            }
            Degrader::LossAndRateLimit => {
                self.loss[i] = loss_per_mille;
                self.apply_rules(i)?;
                // A low rate with a deep queue delays packets by up to `delay_ms`.
                let latency = format!("{delay_ms}ms");
                run_in(
                    &netns,
                    "tc",
                    &[
                        "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", "4mbit", "burst",
                        "16kb", "latency", &latency,
                    ],
                )
            }
        }
    }

    /// Removes every partition and degradation.
    pub fn heal(&mut self) -> Result<(), String> {
        for i in 0..self.nodes {
            self.blocked[i].clear();
            self.loss[i] = 0;
            let _ = run_in(
                &self.namespace(i),
                "tc",
                &["qdisc", "del", "dev", "eth0", "root"],
            );
            self.apply_rules(i)?;
        }
        Ok(())
    }
}

/// Deletes the namespaces and bridge of a slot (processes inside must be gone already).
fn remove_slot(slot: u32) {
    for i in 0..16 {
        let _ = run("ip", &["netns", "del", &format!("rdc{slot}n{i}")]);
    }
    let _ = run("ip", &["link", "del", &format!("rdc{slot}br")]);
}

impl Drop for Network {
    fn drop(&mut self) {
        remove_slot(self.slot);
        let _ = std::fs::remove_file(&self.slot_file);
    }
}
