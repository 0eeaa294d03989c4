//! Lists, sets and sorted sets on the real binary: blocking pops and queues across failures.
//!
//! Goal: a blocking pop waits at the node its client talks to without holding anything else
//! up, times out without the log, is served in the order clients blocked, answers at once
//! inside MULTI, takes nothing for a client that left; the collections are
//! replicated state every node agrees on, across restarts; and a queue fed and drained through
//! every node of a 3-node cluster loses no acknowledged push and delivers none twice while the
//! leader is killed. Method: real binaries on 127.0.0.1 driven by the `redis` crate and raw
//! RESP connections; every wait polls with a deadline.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{TestCluster, serial};
use common::{RawConnection, TestServer, resp_command, wait_for};

const LEADER_TIMEOUT: Duration = Duration::from_secs(30);

fn connect(port: u16) -> redis::Connection {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let con = client.get_connection().unwrap();
    con.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    con
}

/// Waits until `port`'s INFO reports `n` blocked clients.
fn wait_blocked(port: u16, n: usize) {
    wait_for(
        &format!("{n} blocked clients"),
        Duration::from_secs(10),
        || {
            let info: String = redis::cmd("INFO")
                .arg("clients")
                .query(&mut connect(port))
                .ok()?;
            info.contains(&format!("blocked_clients:{n}\r"))
                .then_some(())
        },
    );
}

#[test]
fn blocking_pops_time_out_wait_and_are_served_in_the_order_they_blocked() {
    let server = TestServer::start();
    let port = server.port;
    // Times out with a nil array, never before its timeout.
    let started = Instant::now();
    let reply: Option<(String, String)> = redis::cmd("BLPOP")
        .arg("empty")
        .arg(0.3)
        .query(&mut connect(port))
        .unwrap();
    assert_eq!(reply, None);
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Three clients block on one list, one after another; pushes serve them in that order.
    let served = Arc::new(Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for client in 0..3 {
        let served = served.clone();
        clients.push(std::thread::spawn(move || {
            let reply: (String, String) = redis::cmd("BRPOP")
                .arg("jobs")
                .arg("other")
                .arg(0)
                .query(&mut connect(port))
                .unwrap();
            served.lock().unwrap().push((client, reply));
        }));
        wait_blocked(port, client + 1);
    }
    // Other clients are not held up meanwhile.
    let mut con = connect(port);
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    let _: i64 = redis::cmd("LPUSH")
        .arg("jobs")
        .arg("a")
        .arg("b")
        .arg("c")
        .query(&mut con)
        .unwrap();
    for client in clients {
        client.join().unwrap();
    }
    let mut served = served.lock().unwrap().clone();
    served.sort_by_key(|(client, _)| *client);
    let got: Vec<(usize, String)> = served
        .into_iter()
        .map(|(client, (key, value))| {
            assert_eq!(key, "jobs");
            (client, value)
        })
        .collect();
    assert_eq!(
        got,
        [(0, "a".to_string()), (1, "b".into()), (2, "c".into())]
    );
    let len: i64 = redis::cmd("LLEN").arg("jobs").query(&mut con).unwrap();
    assert_eq!(len, 0);
    wait_blocked(port, 0);
}

#[test]
fn every_blocking_pop_is_served_and_answers_at_once_inside_multi() {
    let server = TestServer::start();
    let port = server.port;
    let cases: [(&[&str], &[&str], &str); 5] = [
        (
            &["BLMOVE", "src", "dst", "LEFT", "RIGHT", "0"],
            &["RPUSH", "src", "x"],
            "x",
        ),
        (
            &["BRPOPLPUSH", "src2", "dst", "0"],
            &["RPUSH", "src2", "y"],
            "y",
        ),
        (
            &["BLMPOP", "0", "2", "none", "m", "LEFT", "COUNT", "2"],
            &["RPUSH", "m", "1", "2", "3"],
            "m",
        ),
        (
            &["BZPOPMIN", "z1", "z2", "0"],
            &["ZADD", "z2", "1", "low", "2", "high"],
            "z2",
        ),
        (
            &["BZMPOP", "0", "1", "z3", "MAX", "COUNT", "1"],
            &["ZADD", "z3", "1", "low", "2", "high"],
            "z3",
        ),
    ];
    for (call, feed, expected) in cases {
        let call: Vec<String> = call.iter().map(|s| s.to_string()).collect();
        let waiter = std::thread::spawn(move || {
            let mut cmd = redis::cmd(&call[0]);
            for arg in &call[1..] {
                cmd.arg(arg);
            }
            let reply: redis::Value = cmd.query(&mut connect(port)).unwrap();
            reply
        });
        wait_blocked(port, 1);
        let mut cmd = redis::cmd(feed[0]);
        for arg in &feed[1..] {
            cmd.arg(*arg);
        }
        let _: redis::Value = cmd.query(&mut connect(port)).unwrap();
        let reply = format!("{:?}", waiter.join().unwrap());
        assert!(reply.contains(expected), "{feed:?} answered {reply}");
        wait_blocked(port, 0);
    }
    // Inside MULTI and scripts they answer at once, as Redis's do.
    let mut raw = RawConnection::connect(port);
    raw.send(&resp_command(&[b"MULTI"]));
    assert_eq!(raw.read_reply(), b"+OK\r\n");
    raw.send(&resp_command(&[b"BLPOP", b"nothing", b"0"]));
    assert_eq!(raw.read_reply(), b"+QUEUED\r\n");
    raw.send(&resp_command(&[b"BRPOPLPUSH", b"nothing", b"d", b"0"]));
    assert_eq!(raw.read_reply(), b"+QUEUED\r\n");
    raw.send(&resp_command(&[b"EXEC"]));
    assert_eq!(raw.read_reply(), b"*2\r\n*-1\r\n$-1\r\n");
    // Redis 7.0 refuses them in scripts, with this text.
    raw.send(&resp_command(&[
        b"EVAL",
        b"return redis.call('BLPOP', KEYS[1], 0)",
        b"1",
        b"nothing",
    ]));
    let refused = raw.read_reply();
    assert!(
        refused.starts_with(b"-ERR This Redis command is not allowed from script"),
        "{}",
        String::from_utf8_lossy(&refused)
    );
    raw.send(&resp_command(&[b"BLPOP", b"nothing", b"-1"]));
    assert_eq!(raw.read_reply(), b"-ERR timeout is negative\r\n");
}

#[test]
fn a_pipelined_command_waits_for_the_blocking_pop_before_it_and_a_client_that_left_takes_nothing() {
    let server = TestServer::start();
    let port = server.port;
    // BLPOP then SET in one write: the SET runs only once BLPOP is served, as on Redis.
    let mut raw = RawConnection::connect(port);
    let mut pipeline = resp_command(&[b"BLPOP", b"q", b"0"]);
    pipeline.extend(resp_command(&[b"SET", b"after", b"1"]));
    raw.send(&pipeline);
    wait_blocked(port, 1);
    let mut con = connect(port);
    let after: Option<String> = redis::cmd("GET").arg("after").query(&mut con).unwrap();
    assert_eq!(after, None, "the SET behind a blocked BLPOP ran early");
    let _: i64 = redis::cmd("RPUSH")
        .arg("q")
        .arg("one")
        .query(&mut con)
        .unwrap();
    assert_eq!(raw.read_reply(), b"*2\r\n$1\r\nq\r\n$3\r\none\r\n");
    assert_eq!(raw.read_reply(), b"+OK\r\n");
    // A client that disconnects while blocked pops nothing afterwards.
    let mut leaving = RawConnection::connect(port);
    leaving.send(&resp_command(&[b"BLPOP", b"q2", b"0"]));
    wait_blocked(port, 1);
    drop(leaving);
    wait_blocked(port, 0);
    let _: i64 = redis::cmd("RPUSH")
        .arg("q2")
        .arg("kept")
        .query(&mut con)
        .unwrap();
    let kept: Vec<String> = redis::cmd("LRANGE")
        .arg("q2")
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .unwrap();
    assert_eq!(kept, ["kept"]);
}

/// Every collection as one node's own state machine holds it (READONLY: served locally).
fn collections_of(port: u16) -> Vec<redis::Value> {
    let mut con = connect(port);
    let _: () = redis::cmd("READONLY").query(&mut con).unwrap();
    let mut out = Vec::new();
    for (command, key) in [
        (&["LRANGE", "list", "0", "-1"][..], "list"),
        (&["SMEMBERS", "set"][..], "set"),
        (&["ZRANGE", "zset", "0", "-1", "WITHSCORES"][..], "zset"),
    ] {
        let _ = key;
        let mut cmd = redis::cmd(command[0]);
        for arg in &command[1..] {
            cmd.arg(*arg);
        }
        let mut value: redis::Value = cmd.query(&mut con).unwrap();
        if let redis::Value::Set(items) | redis::Value::Array(items) = &mut value
            && command[0] == "SMEMBERS"
        {
            items.sort_by_key(|item| format!("{item:?}"));
        }
        out.push(value);
    }
    out
}

#[test]
fn collections_are_the_same_on_every_node_across_a_restart() {
    let _serial = serial();
    let mut cluster = TestCluster::start(3, &[]);
    cluster.wait_for_leader(LEADER_TIMEOUT);
    let follower = cluster.a_follower();
    let mut con = cluster.nodes[follower].client();
    for i in 0..300 {
        let _: i64 = redis::cmd("RPUSH")
            .arg("list")
            .arg(i)
            .query(&mut con)
            .unwrap();
        let _: i64 = redis::cmd("SADD")
            .arg("set")
            .arg(format!("m{}", i % 97))
            .query(&mut con)
            .unwrap();
        let _: f64 = redis::cmd("ZINCRBY")
            .arg("zset")
            .arg(i % 7)
            .arg(format!("p{}", i % 13))
            .query(&mut con)
            .unwrap();
    }
    let _: Vec<String> = redis::cmd("SPOP")
        .arg("set")
        .arg(10)
        .query(&mut con)
        .unwrap();
    let _: i64 = redis::cmd("LREM")
        .arg("list")
        .arg(0)
        .arg(17)
        .query(&mut con)
        .unwrap();
    let _: i64 = redis::cmd("LINSERT")
        .arg("list")
        .arg("BEFORE")
        .arg(150)
        .arg("inserted")
        .query(&mut con)
        .unwrap();
    for i in 0..cluster.nodes.len() {
        cluster.wait_caught_up(i, LEADER_TIMEOUT);
    }
    let expected = collections_of(cluster.nodes[follower].port);
    for node in &cluster.nodes {
        assert_eq!(collections_of(node.port), expected, "node {}", node.id);
    }
    cluster.restart(follower);
    cluster.wait_caught_up(follower, LEADER_TIMEOUT);
    assert_eq!(collections_of(cluster.nodes[follower].port), expected);
}

/// A client blocked on a follower (proxy mode) is served by a push on the leader; one blocked
/// on a follower while the leader is killed keeps waiting and is served by the new leader.
#[test]
fn a_client_blocked_on_a_follower_is_served_across_a_leader_kill() {
    let _serial = serial();
    let mut cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let follower = cluster.a_follower();
    let follower_port = cluster.nodes[follower].port;
    let waiter = std::thread::spawn(move || {
        let reply: Option<(String, String)> = redis::cmd("BLPOP")
            .arg("jobs")
            .arg(20)
            .query(&mut connect(follower_port))
            .unwrap();
        reply
    });
    wait_blocked(follower_port, 1);
    let _: i64 = redis::cmd("RPUSH")
        .arg("jobs")
        .arg("first")
        .query(&mut cluster.nodes[leader].client())
        .unwrap();
    assert_eq!(
        waiter.join().unwrap(),
        Some(("jobs".to_string(), "first".to_string()))
    );
    // Blocked on a follower; the leader dies; a push through the new leader serves it.
    let waiter = std::thread::spawn(move || {
        let reply: Option<(String, String)> = redis::cmd("BRPOP")
            .arg("jobs")
            .arg(60)
            .query(&mut connect(follower_port))
            .unwrap();
        reply
    });
    wait_blocked(follower_port, 1);
    cluster.nodes[leader].kill9();
    let new_leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    assert_ne!(new_leader, leader);
    let other = (0..3).find(|&i| i != leader && i != follower).unwrap();
    let _: i64 = redis::cmd("RPUSH")
        .arg("jobs")
        .arg("second")
        .query(&mut cluster.nodes[other].client())
        .unwrap();
    assert_eq!(
        waiter.join().unwrap(),
        Some(("jobs".to_string(), "second".to_string()))
    );
    let left: i64 = redis::cmd("LLEN")
        .arg("jobs")
        .query(&mut cluster.nodes[new_leader].client())
        .unwrap();
    assert_eq!(left, 0);
}

/// A queue through every node while the leader is killed: producers RPUSH numbered items,
/// consumers BLMOVE them into their own processing lists; afterwards every acknowledged item
/// is in exactly one place (the queue or one processing list) and every item a consumer
/// received is in its processing list once.
#[test]
fn a_queue_through_every_node_loses_and_duplicates_nothing_across_a_leader_kill() {
    let _serial = serial();
    let mut cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let ports: Vec<u16> = cluster.nodes.iter().map(|n| n.port).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(HashSet::new()));
    let received: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
    let mut producers = Vec::new();
    for producer in 0..3 {
        let (stop, acknowledged, ports) = (stop.clone(), acknowledged.clone(), ports.clone());
        producers.push(std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let port = ports[(producer + n) % ports.len()];
                let item = format!("p{producer}-{n}");
                n += 1;
                let Ok(mut con) = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                    .and_then(|c| c.get_connection())
                else {
                    continue;
                };
                let pushed: redis::RedisResult<i64> =
                    redis::cmd("RPUSH").arg("queue").arg(&item).query(&mut con);
                if pushed.is_ok() {
                    acknowledged.lock().unwrap().insert(item);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }));
    }
    let mut consumers = Vec::new();
    for consumer in 0..3 {
        let (stop, received, ports) = (stop.clone(), received.clone(), ports.clone());
        consumers.push(std::thread::spawn(move || {
            let processing = format!("processing:{consumer}");
            let mut attempt = 0;
            while !stop.load(Ordering::Relaxed) {
                let port = ports[(consumer + attempt) % ports.len()];
                attempt += 1;
                let Ok(mut con) = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                    .and_then(|c| c.get_connection())
                else {
                    continue;
                };
                let _ = con.set_read_timeout(Some(Duration::from_secs(20)));
                loop {
                    let moved: redis::RedisResult<Option<String>> = redis::cmd("BLMOVE")
                        .arg("queue")
                        .arg(&processing)
                        .arg("LEFT")
                        .arg("RIGHT")
                        .arg(0.5)
                        .query(&mut con);
                    match moved {
                        Ok(Some(item)) => received
                            .lock()
                            .unwrap()
                            .entry(processing.clone())
                            .or_default()
                            .push(item),
                        Ok(None) if !stop.load(Ordering::Relaxed) => {}
                        _ => break,
                    }
                }
            }
        }));
    }
    let count = |set: &Arc<Mutex<HashSet<String>>>| set.lock().unwrap().len();
    wait_for("pushes before the kill", Duration::from_secs(30), || {
        (count(&acknowledged) >= 300).then_some(())
    });
    cluster.nodes[leader].kill9();
    let new_leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    assert_ne!(new_leader, leader);
    let before = count(&acknowledged);
    wait_for("pushes after the kill", Duration::from_secs(30), || {
        (count(&acknowledged) >= before + 300).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    for thread in producers.into_iter().chain(consumers) {
        thread.join().unwrap();
    }
    cluster.restart(leader);
    let mut con = cluster.nodes[new_leader].client();
    let mut places: HashMap<String, Vec<String>> = HashMap::new();
    let mut lists = vec!["queue".to_string()];
    lists.extend((0..3).map(|c| format!("processing:{c}")));
    for list in &lists {
        let items: Vec<String> = redis::cmd("LRANGE")
            .arg(list)
            .arg(0)
            .arg(-1)
            .query(&mut con)
            .unwrap();
        for item in items {
            places.entry(item).or_default().push(list.clone());
        }
    }
    let duplicated: Vec<_> = places.iter().filter(|(_, at)| at.len() > 1).collect();
    assert!(duplicated.is_empty(), "items in two places: {duplicated:?}");
    let acknowledged = acknowledged.lock().unwrap();
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|item| !places.contains_key(*item))
        .collect();
    assert!(lost.is_empty(), "acknowledged pushes lost: {lost:?}");
    let received = received.lock().unwrap();
    let mut delivered = 0;
    for (processing, items) in received.iter() {
        let unique: HashSet<_> = items.iter().collect();
        assert_eq!(
            unique.len(),
            items.len(),
            "{processing} received an item twice"
        );
        for item in items {
            assert_eq!(
                places.get(item).map(Vec::as_slice),
                Some(std::slice::from_ref(processing)),
                "{item} received by {processing}"
            );
        }
        delivered += items.len();
    }
    assert!(delivered > 50, "only {delivered} items delivered");
    eprintln!(
        "queue across a leader kill: {} acknowledged pushes, {delivered} delivered, none lost or \
         duplicated",
        acknowledged.len()
    );
}
