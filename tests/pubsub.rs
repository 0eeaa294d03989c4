//! Pub/Sub across a cluster: a message published through any node reaches the subscribers of
//! every node, in publish order per publisher, once each; PUBLISH counts them cluster-wide;
//! a restarted follower's new subscribers are reached again. Real processes, the `redis`
//! crate's Pub/Sub client and raw connections.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::cluster::{TestCluster, serial};
use common::{RawConnection, resp_command, wait_for};

const LEADER_TIMEOUT: Duration = Duration::from_secs(30);
const CHANNEL: &str = "events";

/// Where the client-library scripts are.
fn clients_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("redis-compat/clients")
}

/// A subscriber to [`CHANNEL`] on one node, over a raw RESP2 connection.
struct Subscriber {
    connection: RawConnection,
}

impl Subscriber {
    fn on(cluster: &TestCluster, node: usize) -> Subscriber {
        let mut connection = RawConnection::connect(cluster.nodes[node].port);
        connection.send(&resp_command(&[b"SUBSCRIBE", CHANNEL.as_bytes()]));
        let confirmation = connection.read_reply();
        assert_eq!(
            confirmation,
            b"*3\r\n$9\r\nsubscribe\r\n$6\r\nevents\r\n:1\r\n"
        );
        Subscriber { connection }
    }

    /// The next `count` messages on the channel, skipping probes (`probe…`).
    fn messages(&mut self, count: usize) -> Vec<String> {
        let mut out = Vec::with_capacity(count);
        while out.len() < count {
            let reply = self.connection.read_reply();
            let text = String::from_utf8(reply).unwrap();
            let lines: Vec<&str> = text.split("\r\n").collect();
            assert_eq!(
                &lines[..5],
                ["*3", "$7", "message", "$6", CHANNEL],
                "{text:?}"
            );
            let payload = lines[6].to_string();
            if !payload.starts_with("probe") {
                out.push(payload);
            }
        }
        out
    }
}

/// Publishes `per_publisher` messages through each node (`p<node>-<seq>`), the publishers
/// running at once, pipelined; every PUBLISH's receiver count is returned.
fn publish_round(cluster: &TestCluster, round: usize, per_publisher: usize) -> Vec<i64> {
    let threads: Vec<_> = (0..cluster.nodes.len())
        .map(|node| {
            let mut con = cluster.nodes[node].client();
            std::thread::spawn(move || {
                let mut pipe = redis::pipe();
                for seq in 0..per_publisher {
                    pipe.cmd("PUBLISH")
                        .arg(CHANNEL)
                        .arg(format!("r{round}-p{node}-{seq}"));
                }
                pipe.query::<Vec<i64>>(&mut con).unwrap()
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|thread| thread.join().unwrap())
        .collect()
}

/// Checks that `messages` hold every publisher's messages of `round`, each once, in order.
fn assert_complete_in_order(messages: &[String], round: usize, publishers: usize, each: usize) {
    let mut next: HashMap<String, usize> = HashMap::new();
    for message in messages {
        let mut parts = message.split('-');
        let (r, publisher, seq) = (
            parts.next().unwrap(),
            parts.next().unwrap().to_string(),
            parts.next().unwrap().parse::<usize>().unwrap(),
        );
        assert_eq!(r, format!("r{round}"), "{message}");
        let expected = next.entry(publisher.clone()).or_default();
        assert_eq!(
            seq, *expected,
            "{publisher}'s messages out of order or repeated"
        );
        *expected += 1;
    }
    assert_eq!(next.len(), publishers);
    assert!(next.values().all(|&n| n == each), "{next:?}");
}

/// Publishes probes through `node` until one reaches `expected` subscribers.
fn wait_until_reached(cluster: &TestCluster, node: usize, expected: i64) {
    let mut con = cluster.nodes[node].client();
    wait_for(
        "PUBLISH to reach every subscriber",
        Duration::from_secs(30),
        || {
            let reached: i64 = redis::cmd("PUBLISH")
                .arg(CHANNEL)
                .arg("probe")
                .query(&mut con)
                .ok()?;
            (reached == expected).then_some(())
        },
    );
}

#[test]
fn pubsub_messages_reach_every_node_in_order_across_a_follower_restart() {
    let _serial = serial();
    let mut cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let mut subscribers: Vec<Subscriber> = (0..3).map(|i| Subscriber::on(&cluster, i)).collect();
    wait_until_reached(&cluster, leader, 3);

    let per_publisher = 300;
    let counts = publish_round(&cluster, 0, per_publisher);
    assert!(
        counts.iter().all(|&n| n == 3),
        "PUBLISH counts the subscribers of every node: {:?}",
        counts
            .iter()
            .filter(|&&n| n != 3)
            .take(5)
            .collect::<Vec<_>>()
    );
    for subscriber in &mut subscribers {
        let messages = subscriber.messages(3 * per_publisher);
        assert_complete_in_order(&messages, 0, 3, per_publisher);
    }

    // A follower restarts; its new subscriber is reached again, the others kept theirs.
    let follower = (0..3).find(|&i| i != leader).unwrap();
    cluster.restart(follower);
    cluster.wait_for_leader(LEADER_TIMEOUT);
    subscribers[follower] = Subscriber::on(&cluster, follower);
    for node in 0..3 {
        wait_until_reached(&cluster, node, 3);
    }
    let counts = publish_round(&cluster, 1, per_publisher);
    assert!(counts.iter().all(|&n| n == 3), "after the restart");
    for subscriber in &mut subscribers {
        let messages = subscriber.messages(3 * per_publisher);
        assert_complete_in_order(&messages, 1, 3, per_publisher);
    }

    // Nothing more arrives: each message was delivered once.
    let mut con = cluster.nodes[leader].client();
    let _: i64 = redis::cmd("PUBLISH")
        .arg(CHANNEL)
        .arg("r2-last-0")
        .query(&mut con)
        .unwrap();
    for subscriber in &mut subscribers {
        assert_eq!(subscriber.messages(1), vec!["r2-last-0".to_string()]);
    }
}

#[test]
fn pubsub_counts_only_live_subscribers_and_a_slow_node_does_not_stall_publishers() {
    let _serial = serial();
    let mut cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let follower = (0..3).find(|&i| i != leader).unwrap();
    let mut here = Subscriber::on(&cluster, leader);
    let _there = Subscriber::on(&cluster, follower);
    wait_until_reached(&cluster, leader, 2);
    // The follower's process stops: PUBLISH still answers, counting what it reached.
    cluster.nodes[follower].kill9();
    let mut con = cluster.nodes[leader].client();
    let started = Instant::now();
    let reached: i64 = redis::cmd("PUBLISH")
        .arg(CHANNEL)
        .arg("r9-p0-0")
        .query(&mut con)
        .unwrap();
    assert_eq!(reached, 1);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(here.messages(1), vec!["r9-p0-0".to_string()]);
}

#[test]
fn pubsub_redis_py_subscribers_on_a_follower_publishers_on_the_leader() {
    let _serial = serial();
    let cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let follower = (0..3).find(|&i| i != leader).unwrap();
    common::run_client_script(
        &common::python(),
        &clients_dir().join("redis_py_pubsub.py"),
        &[cluster.nodes[follower].port, cluster.nodes[leader].port],
        120,
    );
}

#[test]
fn pubsub_ioredis_subscriber_mode_on_a_follower() {
    let _serial = serial();
    let dir = common::node_clients();
    let cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let follower = (0..3).find(|&i| i != leader).unwrap();
    common::run_client_script(
        "node",
        &dir.join("pubsub.js"),
        &[cluster.nodes[follower].port, cluster.nodes[leader].port],
        120,
    );
}

/// Celery with its Redis broker and result backend (kombu's BRPOP queue, unacked set and
/// hash; results stored with SET and PUBLISH in MULTI and awaited over Pub/Sub): tasks sent
/// through one follower, consumed by a worker on the other, results back across nodes.
#[test]
fn celery_task_round_trip_through_two_followers_of_a_cluster() {
    let _serial = serial();
    let cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    common::run_client_script(
        &common::python(),
        &clients_dir().join("celery_round_trip.py"),
        &[
            cluster.nodes[followers[0]].port,
            cluster.nodes[followers[1]].port,
        ],
        300,
    );
}

/// Keyspace events are produced as each node applies the log: a subscriber on any node sees
/// each event once, in log order, expirations included.
#[test]
fn pubsub_keyspace_events_reach_every_nodes_subscribers_once_in_log_order() {
    let _serial = serial();
    let cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let follower = (0..3).find(|&i| i != leader).unwrap();
    // The setting is replicated: set through a follower, seen by every node.
    let reply = cluster.nodes[follower].cli(&["CONFIG", "SET", "notify-keyspace-events", "KEA"]);
    assert_eq!(reply, "OK\n");
    for i in 0..3 {
        wait_for("the setting on every node", Duration::from_secs(30), || {
            let reply = cluster.nodes[i].cli(&["CONFIG", "GET", "notify-keyspace-events"]);
            reply.contains("AKE").then_some(())
        });
    }
    let mut subscribers: Vec<RawConnection> = (0..3)
        .map(|i| {
            let mut con = RawConnection::connect(cluster.nodes[i].port);
            con.send(&resp_command(&[b"PSUBSCRIBE", b"__keyevent@0__:*"]));
            con.read_reply();
            con
        })
        .collect();

    let mut con = cluster.nodes[follower].client();
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    for _ in 0..10 {
        let _: i64 = redis::cmd("INCRBY")
            .arg("c")
            .arg(1)
            .query(&mut con)
            .unwrap();
    }
    let _: () = redis::cmd("SET")
        .arg("e")
        .arg("v")
        .arg("PX")
        .arg(300)
        .query(&mut con)
        .unwrap();
    // The leader's active expiry removes `e` through the log.
    let mut expected: Vec<(String, String)> = vec![("set".into(), "k".into())];
    expected.extend((0..10).map(|_| ("incrby".to_string(), "c".to_string())));
    expected.extend([
        ("set".into(), "e".into()),
        ("expire".into(), "e".into()),
        ("expired".into(), "e".into()),
    ]);
    let event = |subscriber: &mut RawConnection| {
        let text = String::from_utf8(subscriber.read_reply()).unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[2], "pmessage", "{text:?}");
        let event = lines[6].trim_start_matches("__keyevent@0__:").to_string();
        (event, lines[8].to_string())
    };
    for (i, subscriber) in subscribers.iter_mut().enumerate() {
        let seen: Vec<(String, String)> = (0..expected.len()).map(|_| event(subscriber)).collect();
        assert_eq!(seen, expected, "events on node {i}");
    }
    // Nothing was sent twice: the next event anyone sees is the next write's.
    let _: () = redis::cmd("SET")
        .arg("done")
        .arg("1")
        .query(&mut con)
        .unwrap();
    for subscriber in &mut subscribers {
        assert_eq!(event(subscriber), ("set".to_string(), "done".to_string()));
    }
}
