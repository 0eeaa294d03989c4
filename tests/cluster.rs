//! Clusters of 3 to 5 real redraft processes on 127.0.0.1.
//!
//! Goal: counters survive the loss of any minority of nodes and never go backwards; followers
//! proxy or redirect; membership changes and snapshots work under load. Method: each test
//! starts its own cluster (one at a time, see `serial`), drives it with the `redis` crate and
//! `redis-cli`, kills nodes with `kill -9`, and checks values against what clients saw
//! acknowledged.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::cluster::{SECRET, TestCluster, free_ports, serial};
use common::wait_for;
use redis::{Commands, RedisResult};

const LEADER_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn cluster_proxy_incrby_through_every_node_totals_exactly() {
    let _serial = serial();
    let cluster = TestCluster::start(3, &[]);
    let per_node = 300;
    let threads: Vec<_> = cluster
        .nodes
        .iter()
        .map(|node| {
            let mut con = node.client();
            std::thread::spawn(move || {
                let mut pipe = redis::pipe();
                for _ in 0..per_node {
                    pipe.cmd("INCRBY").arg("total").arg(2);
                }
                let replies: Vec<i64> = pipe.query(&mut con).unwrap();
                assert!(replies.windows(2).all(|w| w[0] < w[1]), "values only grow");
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    for node in &cluster.nodes {
        let mut con = node.client();
        let total: i64 = con.get("total").unwrap();
        assert_eq!(total, 3 * per_node * 2, "read through node {}", node.id);
    }
}

#[test]
fn cluster_redis_cli_session_against_a_follower() {
    let _serial = serial();
    let cluster = TestCluster::start(3, &[]);
    let follower = &cluster.nodes[cluster.a_follower()];
    assert_eq!(follower.cli(&["SET", "greeting", "hello"]), "OK\n");
    assert_eq!(follower.cli(&["GET", "greeting"]), "hello\n");
    assert_eq!(follower.cli(&["INCRBY", "visits", "5"]), "5\n");
    assert_eq!(follower.cli(&["DECR", "visits"]), "4\n");
    assert_eq!(follower.cli(&["DEL", "greeting"]), "1\n");
    assert_eq!(
        follower.cli(&["INCRBY", "visits", "x"]).trim_end(),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(follower.cli(&["PING"]), "PONG\n");
    // A script goes through the log like any write: sent to a follower, run in apply.
    let script = "redis.call('INCRBY', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[1])";
    assert_eq!(follower.cli(&["EVAL", script, "1", "scripted", "7"]), "7\n");
    assert_eq!(
        follower.cli(&["EVAL", script, "1", "scripted", "7"]),
        "14\n"
    );
    assert_eq!(
        follower.cli(&[
            "EVAL_RO",
            "return redis.call('GET', KEYS[1])",
            "1",
            "scripted"
        ]),
        "14\n"
    );
    for node in &cluster.nodes {
        assert_eq!(node.cli(&["GET", "scripted"]), "14\n", "node {}", node.id);
    }
    let info = follower.cli(&["INFO", "replication"]);
    assert!(info.contains("role:slave"), "{info}");
    // A READONLY connection is served by the follower itself, still linearizable.
    let mut con = follower.client();
    let _: () = redis::cmd("READONLY").query(&mut con).unwrap();
    let visits: i64 = con.get("visits").unwrap();
    assert_eq!(visits, 4);
}

#[test]
fn cluster_redirect_mode_works_with_cluster_clients() {
    let _serial = serial();
    let cluster = TestCluster::start(3, &["--follower-mode", "redirect"]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let follower = &cluster.nodes[cluster.a_follower()];
    // A plain client gets Redis Cluster's redirection with the key's real slot.
    let reply = follower.cli(&["SET", "foo", "bar"]);
    assert_eq!(
        reply.trim_end(),
        format!("MOVED 12182 127.0.0.1:{}", cluster.nodes[leader].port)
    );
    // redis-cli -c follows it.
    let out = common::redis_cli(follower.port, &["-c", "SET", "foo", "bar"]);
    assert_eq!(out, "OK\n");
    let out = common::redis_cli(follower.port, &["-c", "INCRBY", "n", "7"]);
    assert_eq!(out, "7\n");

    // The redis crate's cluster client, seeded with a follower only.
    let client =
        redis::cluster::ClusterClient::new(vec![format!("redis://127.0.0.1:{}/", follower.port)])
            .unwrap();
    let mut con = client.get_connection().unwrap();
    for i in 0..50 {
        let _: () = con.set(format!("key{i}"), i).unwrap();
    }
    for i in 0..50 {
        let value: i64 = con.get(format!("key{i}")).unwrap();
        assert_eq!(value, i);
    }
    let n: i64 = con.incr("n", 1).unwrap();
    assert_eq!(n, 8);
}

/// Outcome counts of a load of INCRBY 1 on one key.
#[derive(Default)]
struct Load {
    acknowledged: AtomicU64,
    indeterminate: AtomicU64,
}

/// Starts one thread per port that increments `key` until `stop`, reconnecting after errors.
fn incr_load(
    ports: Vec<u16>,
    key: &'static str,
    stop: Arc<AtomicBool>,
    load: Arc<Load>,
) -> Vec<std::thread::JoinHandle<()>> {
    ports
        .into_iter()
        .map(|port| {
            let stop = stop.clone();
            let load = load.clone();
            std::thread::spawn(move || {
                let url = format!("redis://127.0.0.1:{port}/");
                let mut con: Option<redis::Connection> = None;
                while !stop.load(Ordering::Relaxed) {
                    if con.is_none() {
                        con = redis::Client::open(url.as_str())
                            .unwrap()
                            .get_connection_with_timeout(Duration::from_secs(1))
                            .ok();
                        if con.is_none() {
                            // The node is down; try again shortly (bounded by `stop`).
                            std::thread::sleep(Duration::from_millis(50));
                            continue;
                        }
                    }
                    let result: RedisResult<i64> = con.as_mut().unwrap().incr(key, 1);
                    match result {
                        Ok(_) => {
                            load.acknowledged.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(err) => {
                            // The increment may or may not have been applied.
                            load.indeterminate.fetch_add(1, Ordering::Relaxed);
                            if err.is_io_error() || err.is_connection_dropped() {
                                con = None;
                            }
                        }
                    }
                }
            })
        })
        .collect()
}

#[test]
fn cluster_kill9_leader_under_load_loses_no_acknowledged_increment() {
    let _serial = serial();
    let mut cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let ports: Vec<u16> = cluster
        .nodes
        .iter()
        .flat_map(|n| [n.port, n.port])
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let load = Arc::new(Load::default());
    let threads = incr_load(ports, "hits", stop.clone(), load.clone());
    wait_for(
        "increments before the kill",
        Duration::from_secs(30),
        || (load.acknowledged.load(Ordering::Relaxed) >= 200).then_some(()),
    );

    let killed_at = Instant::now();
    cluster.nodes[leader].kill9();
    let new_leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    assert_ne!(new_leader, leader);
    let before = load.acknowledged.load(Ordering::Relaxed);
    wait_for(
        "increments after the failover",
        Duration::from_secs(30),
        || (load.acknowledged.load(Ordering::Relaxed) >= before + 200).then_some(()),
    );
    eprintln!("failover to first write: {:?}", killed_at.elapsed());

    cluster.restart(leader);
    wait_for(
        "more increments with the old leader back",
        Duration::from_secs(30),
        || (load.acknowledged.load(Ordering::Relaxed) >= before + 400).then_some(()),
    );
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    let acknowledged = load.acknowledged.load(Ordering::Relaxed) as i64;
    let indeterminate = load.indeterminate.load(Ordering::Relaxed) as i64;
    let new_leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let value: i64 = cluster.nodes[new_leader].client().get("hits").unwrap();
    assert!(
        value >= acknowledged,
        "value {value} lost acknowledged increments ({acknowledged})"
    );
    assert!(
        value <= acknowledged + indeterminate,
        "value {value} exceeds acknowledged {acknowledged} + indeterminate {indeterminate}"
    );
    // The old leader rejoined as a follower and holds the same value.
    cluster.wait_caught_up(leader, Duration::from_secs(30));
    let mut con = cluster.nodes[leader].client();
    let _: () = redis::cmd("READONLY").query(&mut con).unwrap();
    let seen: i64 = con.get("hits").unwrap();
    assert_eq!(seen, value);
}

#[test]
fn cluster_node_down_for_many_writes_catches_up_by_snapshot() {
    let _serial = serial();
    let mut cluster = TestCluster::start(3, &["--snapshot-entries", "20"]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let down = cluster.a_follower();
    cluster.nodes[down].kill9();

    // 100,000 writes while it is down, pipelined through the leader.
    let mut con = cluster.nodes[leader].client();
    for batch in 0..100 {
        let mut pipe = redis::pipe();
        for i in 0..1000 {
            let n = batch * 1000 + i;
            pipe.cmd("SET")
                .arg(format!("k{}", n % 5000))
                .arg(n)
                .ignore();
        }
        pipe.cmd("INCR").arg("writes").ignore();
        let _: () = pipe.query(&mut con).unwrap();
    }
    let purged: u64 = wait_for(
        "the leader to purge its log",
        Duration::from_secs(30),
        || {
            let purged: u64 = cluster.nodes[leader]
                .info_field("raft_purged_index")?
                .parse()
                .ok()?;
            (purged > 0).then_some(purged)
        },
    );
    assert!(purged > 0);

    cluster.restart(down);
    cluster.wait_caught_up(down, Duration::from_secs(60));
    let log = cluster.nodes[down].log.lock().unwrap().clone();
    assert!(
        log.contains("installing a snapshot received from the leader"),
        "the restarted node caught up without a snapshot:\n{log}"
    );
    let mut follower = cluster.nodes[down].client();
    let _: () = redis::cmd("READONLY").query(&mut follower).unwrap();
    let writes: i64 = follower.get("writes").unwrap();
    assert_eq!(writes, 100);
    for n in [0, 1, 2500, 4999] {
        let ours: i64 = follower.get(format!("k{n}")).unwrap();
        let leaders: i64 = con.get(format!("k{n}")).unwrap();
        assert_eq!(ours, leaders, "key k{n}");
    }
    let size: i64 = redis::cmd("DBSIZE").query(&mut follower).unwrap();
    assert_eq!(size, 5001);
}

#[test]
fn cluster_add_a_fourth_node_and_remove_one_under_load() {
    let _serial = serial();
    let mut cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let stop = Arc::new(AtomicBool::new(false));
    let load = Arc::new(Load::default());
    let threads = incr_load(
        vec![cluster.nodes[leader].port, cluster.nodes[leader].port],
        "members-counter",
        stop.clone(),
        load.clone(),
    );
    let fourth = cluster.join_new_node(0, &[]);
    cluster.wait_caught_up(fourth, Duration::from_secs(30));

    // Remove a follower (not the one the load talks to) with the RESP admin command.
    let removed = (0..3).find(|&i| i != leader).unwrap();
    let removed_id = cluster.nodes[removed].id.to_string();
    let reply = cluster.nodes[leader].cli(&["RAFT.REMOVENODE", &removed_id]);
    assert_eq!(reply, "OK\n");
    wait_for(
        "the removed node to learn it",
        Duration::from_secs(30),
        || {
            let reply = cluster.nodes[removed].cli(&["GET", "members-counter"]);
            reply
                .contains("CLUSTERDOWN this node is not in the cluster's membership")
                .then_some(())
        },
    );
    let members = cluster.nodes[leader].info_field("raft_members").unwrap();
    assert!(!members.contains(&format!("id={removed_id},")), "{members}");
    // Out of the cluster, it is no longer part of what the harness waits on.
    cluster.nodes[removed].kill9();

    let before = load.acknowledged.load(Ordering::Relaxed);
    wait_for(
        "increments after the changes",
        Duration::from_secs(30),
        || (load.acknowledged.load(Ordering::Relaxed) >= before + 100).then_some(()),
    );
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    let acknowledged = load.acknowledged.load(Ordering::Relaxed) as i64;
    let indeterminate = load.indeterminate.load(Ordering::Relaxed) as i64;
    let value: i64 = cluster.nodes[leader]
        .client()
        .get("members-counter")
        .unwrap();
    assert!(value >= acknowledged && value <= acknowledged + indeterminate);
    cluster.wait_caught_up(fourth, Duration::from_secs(30));
    let mut con = cluster.nodes[fourth].client();
    let _: () = redis::cmd("READONLY").query(&mut con).unwrap();
    let seen: i64 = con.get("members-counter").unwrap();
    assert_eq!(seen, value);
}

#[test]
fn cluster_refuses_a_removal_that_would_leave_no_quorum_of_running_voters() {
    let _serial = serial();
    let mut cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let (stopped, running) = {
        let mut followers = (0..3).filter(|&i| i != leader);
        (followers.next().unwrap(), followers.next().unwrap())
    };
    let stopped_id = cluster.nodes[stopped].id.to_string();
    let running_id = cluster.nodes[running].id.to_string();
    cluster.nodes[stopped].kill9();
    // The leader's view of the stopped node ages past the health window (RAFT.MEMBERS and
    // INFO show it), while the running one keeps answering.
    wait_for(
        "the leader to see the stopped node silent",
        Duration::from_secs(30),
        || {
            let members = cluster.nodes[leader].info_field("raft_members")?;
            let ack = members
                .split(';')
                .find(|m| m.starts_with(&format!("id={stopped_id},")))?
                .rsplit_once("ack_ms=")?
                .1
                .to_string();
            (ack == "?" || ack.parse::<u64>().ok()? > 5000).then_some(())
        },
    );

    // Removing the running follower would leave {leader, stopped}: the joint configuration
    // could never commit and every write would stall. Refused, and nothing changed.
    let reply = cluster.nodes[leader].cli(&["RAFT.REMOVENODE", &running_id]);
    assert!(
        reply.contains("refused") && reply.contains("quorum"),
        "removal was not refused: {reply}"
    );
    let members = cluster.nodes[leader].info_field("raft_members").unwrap();
    assert!(members.contains(&format!("id={running_id},")), "{members}");
    let mut con = cluster.nodes[leader].client();
    let _: () = con.set("still-writable", "yes").unwrap();

    // Removing the stopped one is the operation that makes sense, and it goes through.
    let reply = cluster.nodes[leader].cli(&["RAFT.REMOVENODE", &stopped_id]);
    assert_eq!(reply, "OK\n");
    let _: () = con.set("after-removal", "yes").unwrap();
    let mut follower = cluster.nodes[running].client();
    let _: () = redis::cmd("READONLY").query(&mut follower).unwrap();
    let value: String = follower.get("after-removal").unwrap();
    assert_eq!(value, "yes");
}

#[test]
fn cluster_encoding_thresholds_set_through_a_follower_reach_every_node() {
    let _serial = serial();
    let mut cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let follower = (0..3).find(|&i| i != leader).unwrap();
    // Through a follower (proxied to the leader): it is a write through the log.
    let reply = cluster.nodes[follower].cli(&[
        "CONFIG",
        "SET",
        "zset-max-ziplist-entries",
        "2",
        "set-max-intset-entries",
        "1",
    ]);
    assert_eq!(reply, "OK\n");
    let mut con = cluster.nodes[follower].client();
    let _: i64 = redis::cmd("ZADD")
        .arg("board")
        .arg(&["1", "a", "2", "b", "3", "c"])
        .query(&mut con)
        .unwrap();
    let _: i64 = redis::cmd("ZADD")
        .arg("pair")
        .arg(1)
        .arg("a")
        .arg(2)
        .arg("b")
        .query(&mut con)
        .unwrap();
    let _: i64 = con.sadd("ints", &[1, 2]).unwrap();
    // Every node read locally (READONLY) once caught up: the same parameters, and the
    // collections converted at the same entries.
    let expected = [
        ("zset-max-listpack-entries", "2"),
        ("set-max-intset-entries", "1"),
    ];
    let check = |cluster: &TestCluster, i: usize| {
        cluster.wait_caught_up(i, Duration::from_secs(30));
        let mut con = cluster.nodes[i].client();
        let _: () = redis::cmd("READONLY").query(&mut con).unwrap();
        for (name, value) in expected {
            let got: Vec<String> = redis::cmd("CONFIG")
                .arg("GET")
                .arg(name)
                .query(&mut con)
                .unwrap();
            assert_eq!(got, vec![name.to_string(), value.to_string()], "node {i}");
        }
        for (key, encoding) in [
            ("board", "skiplist"),
            ("pair", "listpack"),
            ("ints", "hashtable"),
        ] {
            let got: String = redis::cmd("OBJECT")
                .arg("ENCODING")
                .arg(key)
                .query(&mut con)
                .unwrap();
            assert_eq!(got, encoding, "{key} on node {i}");
        }
    };
    for i in 0..3 {
        check(&cluster, i);
    }
    // They are state, not a node's memory: a restarted node has them.
    cluster.restart(follower);
    check(&cluster, follower);
    // A SET mixing them with a node's own parameters is refused whole.
    let reply = cluster.nodes[leader].cli(&[
        "CONFIG",
        "SET",
        "zset-max-listpack-entries",
        "9",
        "timeout",
        "0",
    ]);
    assert!(reply.contains("of their own"), "{reply}");
}

#[test]
fn cluster_of_five_survives_the_loss_of_two() {
    let _serial = serial();
    let mut cluster = TestCluster::start(5, &[]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let mut con = cluster.nodes[leader].client();
    let _: () = con.set("k", "before").unwrap();
    let followers: Vec<usize> = (0..5).filter(|&i| i != leader).take(1).collect();
    cluster.nodes[leader].kill9();
    cluster.nodes[followers[0]].kill9();
    let survivor = cluster.wait_for_leader(LEADER_TIMEOUT);
    let mut con = cluster.nodes[survivor].client();
    let value: String = con.get("k").unwrap();
    assert_eq!(value, "before");
    let _: () = con.set("k", "after").unwrap();
    let n: i64 = con.incr("c", 1).unwrap();
    assert_eq!(n, 1);
}

#[test]
fn cluster_full_kill9_and_restart_keeps_acknowledged_data() {
    let _serial = serial();
    let mut cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let mut con = cluster.nodes[leader].client();
    for i in 0..200 {
        let _: () = con.set(format!("key{i}"), i).unwrap();
    }
    let counter: i64 = con.incr("counter", 42).unwrap();
    drop(con);
    for node in &mut cluster.nodes {
        node.kill9();
    }
    for i in 0..3 {
        cluster.restart(i);
    }
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let mut con = cluster.nodes[leader].client();
    for i in 0..200 {
        let value: i64 = con.get(format!("key{i}")).unwrap();
        assert_eq!(value, i);
    }
    let value: i64 = con.get("counter").unwrap();
    assert_eq!(value, counter);
}

#[test]
fn cluster_peer_with_a_wrong_secret_is_refused() {
    let _serial = serial();
    let cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let target = &cluster.nodes[leader];
    // A node with the wrong secret tries to join: it must never become a member.
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(2);
    let mut intruder = std::process::Command::new(common::binary())
        .args(["--node-id", "9", "--port", &ports[0].to_string()])
        .args(["--cluster-port", &ports[1].to_string()])
        .arg("--dir")
        .arg(dir.path())
        .args(["--cluster-secret", "not-the-secret"])
        .args(["--join", &target.addr()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the refusal to be logged", Duration::from_secs(30), || {
        target
            .log
            .lock()
            .unwrap()
            .contains("refused peer connection: wrong cluster secret")
            .then_some(())
    });
    let _ = intruder.kill();
    let _ = intruder.wait();
    let members = target.info_field("raft_members").unwrap();
    assert!(!members.contains("id=9,"), "{members}");
    assert_ne!(SECRET, "not-the-secret");
}

#[test]
fn cluster_sigterm_of_the_leader_hands_leadership_over() {
    let _serial = serial();
    let mut cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let old_id = cluster.nodes[leader].id;
    let status = cluster.nodes[leader].terminate();
    assert!(status.success(), "{status:?}");
    let log = cluster.nodes[leader].log.lock().unwrap().clone();
    assert!(
        log.contains("handed leadership over before shutting down"),
        "{log}"
    );
    let new_leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    assert_ne!(cluster.nodes[new_leader].id, old_id);
    let mut con = cluster.nodes[new_leader].client();
    let _: () = con.set("after", "handover").unwrap();
}

#[test]
fn cluster_commands_describe_one_shard() {
    let _serial = serial();
    let cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let follower = &cluster.nodes[cluster.a_follower()];
    let info = follower.cli(&["CLUSTER", "INFO"]);
    assert!(info.contains("cluster_state:ok"), "{info}");
    let nodes = follower.cli(&["CLUSTER", "NODES"]);
    assert_eq!(nodes.lines().count(), 3, "{nodes}");
    let leader_line = nodes
        .lines()
        .find(|l| l.contains(&format!("127.0.0.1:{}@", cluster.nodes[leader].port)))
        .expect("leader line");
    assert!(leader_line.contains("master"), "{leader_line}");
    assert!(leader_line.contains("0-16383"), "{leader_line}");
    let me = nodes
        .lines()
        .find(|l| l.contains("myself"))
        .expect("myself");
    assert!(me.contains("slave"), "{me}");
    assert_eq!(follower.cli(&["CLUSTER", "KEYSLOT", "foo"]), "12182\n");
    let slots: redis::Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query(&mut follower.client())
        .unwrap();
    let redis::Value::Array(ranges) = slots else {
        panic!("CLUSTER SLOTS is an array")
    };
    assert_eq!(ranges.len(), 1);
}

fn redis_py_cluster_client_survives_a_leader_change(mode: &str) {
    use std::io::{BufRead, BufReader, Write};
    let _serial = serial();
    let mut cluster = TestCluster::start(3, &["--follower-mode", mode]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/redis-compat/clients/redis_py_cluster.py"
    );
    let mut child = std::process::Command::new(common::python())
        .arg(script)
        .args(cluster.nodes.iter().map(|n| n.port.to_string()))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("python3 with redis-py (bash .ci/test installs it)");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "READY", "redis-py phase 1 failed");
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    cluster.nodes[leader].kill9();
    cluster.wait_for_leader(LEADER_TIMEOUT);
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    line.clear();
    stdout.read_line(&mut line).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(line.trim(), "OK", "redis-py phase 2 failed");
    assert!(status.success());
}

#[test]
fn cluster_redis_py_cluster_client_proxy_mode() {
    redis_py_cluster_client_survives_a_leader_change("proxy");
}

#[test]
fn cluster_redis_py_cluster_client_redirect_mode() {
    redis_py_cluster_client_survives_a_leader_change("redirect");
}

fn redis_crate_cluster_client_survives_a_leader_change(mode: &str) {
    use redis::AsyncCommands;
    let _serial = serial();
    let mut cluster = TestCluster::start(3, &["--follower-mode", mode]);
    let seeds: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| format!("redis://127.0.0.1:{}/", n.port))
        .collect();
    let client = redis::cluster::ClusterClient::builder(seeds)
        .retries(20)
        .min_retry_wait(50)
        .max_retry_wait(500)
        .build()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut con = runtime.block_on(client.get_async_connection()).unwrap();
    runtime.block_on(async {
        for i in 0..20 {
            let _: () = con.set(format!("rs:{i}"), i).await.unwrap();
        }
    });
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    cluster.nodes[leader].kill9();
    cluster.wait_for_leader(LEADER_TIMEOUT);
    runtime.block_on(async {
        // The client finds the new leader by itself (retries, CLUSTER SLOTS refresh).
        for i in 20..40 {
            let _: () = con.set(format!("rs:{i}"), i).await.unwrap();
        }
        for i in 0..40 {
            let value: i64 = con.get(format!("rs:{i}")).await.unwrap();
            assert_eq!(value, i);
        }
    });
}

#[test]
fn cluster_redis_crate_cluster_client_proxy_mode_across_leader_change() {
    redis_crate_cluster_client_survives_a_leader_change("proxy");
}

#[test]
fn cluster_redis_crate_cluster_client_redirect_mode_across_leader_change() {
    redis_crate_cluster_client_survives_a_leader_change("redirect");
}

#[test]
fn cluster_expired_keys_never_reappear_across_failover() {
    let _serial = serial();
    let mut cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let mut con = cluster.nodes[leader].client();
    let _: () = redis::cmd("SET")
        .arg("short")
        .arg("lived")
        .arg("PX")
        .arg(300)
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("long")
        .arg("lived")
        .arg("EX")
        .arg(1000)
        .query(&mut con)
        .unwrap();
    wait_for(
        "the short-lived key to expire",
        Duration::from_secs(10),
        || {
            let value: Option<String> = con.get("short").ok()?;
            value.is_none().then_some(())
        },
    );
    // Active expiry removes it through the log: DBSIZE is exact on every node.
    wait_for("active expiry", Duration::from_secs(10), || {
        let size: i64 = redis::cmd("DBSIZE").query(&mut con).ok()?;
        (size == 1).then_some(())
    });
    cluster.nodes[leader].kill9();
    let new_leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    for (i, node) in cluster.nodes.iter().enumerate() {
        if !node.running() {
            continue;
        }
        let mut con = node.client();
        if i != new_leader {
            let _: () = redis::cmd("READONLY").query(&mut con).unwrap();
        }
        let short: Option<String> = con.get("short").unwrap();
        assert_eq!(short, None, "node {} shows an expired key", node.id);
        let long: Option<String> = con.get("long").unwrap();
        assert_eq!(long.as_deref(), Some("lived"));
        let ttl: i64 = con.ttl("long").unwrap_or(-3);
        assert!(ttl > 990 || ttl == -3, "ttl {ttl}");
    }
    cluster.restart(leader);
    cluster.wait_caught_up(leader, Duration::from_secs(30));
    let mut con = cluster.nodes[leader].client();
    let _: () = redis::cmd("READONLY").query(&mut con).unwrap();
    let short: Option<String> = con.get("short").unwrap();
    assert_eq!(short, None);
}

#[test]
fn cluster_watch_multi_exec_through_a_follower_detects_conflicts() {
    let _serial = serial();
    let cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let follower = cluster.a_follower();
    let mut a = cluster.nodes[follower].client();
    let mut b = cluster.nodes[leader].client();
    let _: () = a.set("balance", 100).unwrap();

    // A watches, B changes the key, A's transaction must not apply.
    let _: () = redis::cmd("WATCH").arg("balance").query(&mut a).unwrap();
    let _: () = b.set("balance", 50).unwrap();
    let result: Option<(i64,)> = redis::pipe()
        .atomic()
        .cmd("DECRBY")
        .arg("balance")
        .arg(30)
        .query(&mut a)
        .unwrap();
    assert_eq!(result, None, "EXEC after a conflicting write answers nil");
    let balance: i64 = a.get("balance").unwrap();
    assert_eq!(balance, 50);

    // Without interference it applies, atomically, as one log entry.
    let _: () = redis::cmd("WATCH").arg("balance").query(&mut a).unwrap();
    let result: Option<(i64, i64)> = redis::pipe()
        .atomic()
        .cmd("DECRBY")
        .arg("balance")
        .arg(30)
        .cmd("INCRBY")
        .arg("spent")
        .arg(30)
        .query(&mut a)
        .unwrap();
    assert_eq!(result, Some((20, 30)));
}

#[test]
fn cluster_multi_with_local_commands_through_a_follower_answers_in_order() {
    let _serial = serial();
    let cluster = TestCluster::start(3, &[]);
    cluster.wait_for_leader(LEADER_TIMEOUT);
    let follower = cluster.a_follower();
    for protocol in [2, 3] {
        let mut con = cluster.nodes[follower].client();
        let _: redis::Value = redis::cmd("HELLO").arg(protocol).query(&mut con).unwrap();
        // The keyspace part goes to the leader as one log entry and comes back encoded; the
        // follower answers PING and ECHO itself and splices their replies in.
        let replies: (String, i64, String, Option<String>, i64) = redis::pipe()
            .atomic()
            .cmd("PING")
            .cmd("INCRBY")
            .arg("spliced")
            .arg(5)
            .cmd("ECHO")
            .arg("between")
            .cmd("GET")
            .arg("missing")
            .cmd("INCR")
            .arg("spliced")
            .query(&mut con)
            .unwrap();
        let base = if protocol == 2 { 0 } else { 6 };
        assert_eq!(
            replies,
            (
                "PONG".to_string(),
                base + 5,
                "between".to_string(),
                None,
                base + 6
            )
        );
    }
}

/// Regression, found by the chaos harness (21-minute run, seed 20261126): a leader killed with
/// -9 and restarted before its followers' election timeout resumed leading in its old term,
/// without an election (openraft's leader restore). A leader replicates entries before its own
/// fsync, so it could come back without entries its followers held and then reuse those log ids
/// for other commands; when a follower later led, acknowledged increments were gone. A
/// restarted leader must win a new election, in a new term.
#[test]
fn regression_restarted_leader_never_resumes_its_old_term() {
    let _serial = serial();
    // Election timeout 3–6 s: the restart completes well inside it, so the old code resumed.
    let mut cluster = TestCluster::start(3, &["--heartbeat-ms", "1000"]);
    let leader = cluster.wait_for_leader(Duration::from_secs(60));
    let mut con = cluster.nodes[leader].client();
    let before: i64 = con.incr("counter", 1).expect("INCR before the restart");
    let term = |cluster: &TestCluster, i: usize| -> u64 {
        cluster.nodes[i]
            .info_field("raft_term")
            .and_then(|t| t.parse().ok())
            .expect("raft_term")
    };
    let term_before = term(&cluster, leader);
    cluster.restart(leader);
    let new_leader = cluster.wait_for_leader(Duration::from_secs(60));
    let term_after = term(&cluster, new_leader);
    assert!(
        term_after > term_before,
        "node {} leads in term {term_after} after its restart, the term it led in before",
        cluster.nodes[new_leader].id
    );
    let mut con = cluster.nodes[new_leader].client();
    let after: i64 = con.incr("counter", 1).expect("INCR after the restart");
    assert_eq!(after, before + 1);
}
