//! Exactly-once writes across leader failover, and the replicated session table behind them.
//!
//! Goal: a write sent through a node that stays up gets its real outcome even when the leader
//! dies or stalls under it — applied exactly once, never an error that a stock client would
//! resend — and a request id sent again is answered from the session table after a leader
//! change, a restart of every node and a snapshot install. Method: real 3-node clusters on
//! 127.0.0.1; clients on one follower, then on every node, increment counters while the leader
//! is killed with `kill -9` or paused with SIGSTOP; every counter is then compared with the
//! increments acknowledged (plus, for a client whose own node died, the ones whose connection
//! was lost), and no write may get an error reply. The session table is driven the way a follower's proxy drives it, with
//! `REDRAFT.PROXIED` and `REDRAFT.REQ`.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::cluster::{TestCluster, serial};
use common::{RawConnection, resp_command, wait_for};

const LEADER_TIMEOUT: Duration = Duration::from_secs(30);
const CLIENTS: usize = 6;

/// What the clients saw.
#[derive(Default)]
struct Seen {
    acknowledged: Vec<u64>,
    errors: Vec<String>,
}

/// Makes node `avoid` a follower (hands leadership away if it leads) and returns the leader.
fn leader_other_than(cluster: &TestCluster, avoid: usize) -> usize {
    wait_for(
        "a leader other than the client's node",
        LEADER_TIMEOUT,
        || {
            let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
            if leader != avoid {
                return Some(leader);
            }
            cluster.nodes[avoid].cli(&["RAFT.TRANSFER"]);
            None
        },
    )
}

/// Kills the leader with `kill -9` (then restarts it) and pauses it with SIGSTOP (then resumes
/// it), two rounds each, the leader chosen by `leader`; `progress` must see increments before,
/// during and after each fault.
fn kill_and_pause_the_leader(
    cluster: &mut TestCluster,
    leader: impl Fn(&TestCluster) -> usize,
    progress: impl Fn(&str),
) {
    progress("increments before any fault");
    for round in 0..4 {
        let leader = leader(cluster);
        if round % 2 == 0 {
            cluster.nodes[leader].kill9();
            progress("increments after the leader was killed");
            cluster.restart(leader);
        } else {
            cluster.nodes[leader].signal("STOP");
            progress("increments while the leader is paused");
            cluster.nodes[leader].signal("CONT");
        }
        progress("increments after the fault healed");
    }
}

#[test]
fn exactly_once_increments_through_a_follower_across_leader_kills_and_pauses() {
    let _serial = serial();
    let mut cluster = TestCluster::start(3, &[]);
    let client_node = cluster.a_follower();
    let port = cluster.nodes[client_node].port;
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen {
        acknowledged: vec![0; CLIENTS],
        errors: Vec::new(),
    }));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let stop = stop.clone();
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut con = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                    .unwrap()
                    .get_connection()
                    .unwrap();
                while !stop.load(Ordering::Relaxed) {
                    let reply: redis::RedisResult<i64> = redis::cmd("INCRBY")
                        .arg(format!("counter{i}"))
                        .arg(1)
                        .query(&mut con);
                    let mut seen = seen.lock().unwrap();
                    match reply {
                        Ok(value) => {
                            seen.acknowledged[i] += 1;
                            assert_eq!(
                                value as u64, seen.acknowledged[i],
                                "counter{i}: a reply that is not the count of its own increments"
                            );
                        }
                        Err(err) => seen.errors.push(err.to_string()),
                    }
                }
            })
        })
        .collect();
    let total = || seen.lock().unwrap().acknowledged.iter().sum::<u64>();
    let progress = |what: &str| {
        let before = total();
        wait_for(what, Duration::from_secs(30), || {
            (total() >= before + 100).then_some(())
        });
    };
    kill_and_pause_the_leader(
        &mut cluster,
        |cluster| leader_other_than(cluster, client_node),
        progress,
    );
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    let seen = seen.lock().unwrap();
    assert!(
        seen.errors.is_empty(),
        "writes through a node that stayed up got errors: {:?}",
        seen.errors
    );
    let mut con = cluster.nodes[client_node].client();
    for (i, acknowledged) in seen.acknowledged.iter().enumerate() {
        let value: u64 = redis::cmd("GET")
            .arg(format!("counter{i}"))
            .query(&mut con)
            .unwrap();
        assert_eq!(
            value, *acknowledged,
            "counter{i}: every increment applied exactly once"
        );
    }
}

/// One client's view in the every-node test.
#[derive(Clone, Debug, Default)]
struct ClientView {
    acknowledged: u64,
    /// Queries that ended with the connection lost (their own node died): outcome unknown.
    lost: u64,
    /// Error replies: there must be none.
    error_replies: Vec<String>,
}

#[test]
fn exactly_once_increments_through_every_node_across_leader_kills_and_pauses() {
    let _serial = serial();
    let mut cluster = TestCluster::start(3, &[]);
    cluster.wait_until_every_node_routes(LEADER_TIMEOUT);
    let ports: Vec<u16> = cluster.nodes.iter().map(|n| n.port).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let views = Arc::new(Mutex::new(vec![ClientView::default(); CLIENTS]));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (stop, views) = (stop.clone(), views.clone());
            let url = format!("redis://127.0.0.1:{}/", ports[i % ports.len()]);
            std::thread::spawn(move || {
                let client = redis::Client::open(url).unwrap();
                let mut con = None;
                while !stop.load(Ordering::Relaxed) {
                    let Some(c) = con.as_mut() else {
                        // Its node is down: try again (bounded by the test's own deadlines).
                        con = client
                            .get_connection_with_timeout(Duration::from_millis(200))
                            .ok();
                        if con.is_none() {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        continue;
                    };
                    let reply: redis::RedisResult<i64> = redis::cmd("INCRBY")
                        .arg(format!("every{i}"))
                        .arg(1)
                        .query(c);
                    let mut views = views.lock().unwrap();
                    let view = &mut views[i];
                    match reply {
                        Ok(value) => {
                            view.acknowledged += 1;
                            assert!(
                                value as u64 >= view.acknowledged
                                    && value as u64 <= view.acknowledged + view.lost,
                                "every{i}: reply {value}, acknowledged {}, lost {}",
                                view.acknowledged,
                                view.lost
                            );
                        }
                        Err(err) if err.is_io_error() || err.is_connection_dropped() => {
                            view.lost += 1;
                            con = None;
                        }
                        Err(err) => view.error_replies.push(err.to_string()),
                    }
                }
            })
        })
        .collect();
    let total = || {
        views
            .lock()
            .unwrap()
            .iter()
            .map(|v| v.acknowledged)
            .sum::<u64>()
    };
    let progress = |what: &str| {
        let before = total();
        wait_for(what, Duration::from_secs(30), || {
            (total() >= before + 100).then_some(())
        });
    };
    kill_and_pause_the_leader(
        &mut cluster,
        |cluster| cluster.wait_for_leader(LEADER_TIMEOUT),
        progress,
    );
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    let views = views.lock().unwrap();
    eprintln!("clients on every node: {views:?}");
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let mut con = cluster.nodes[leader].client();
    for (i, view) in views.iter().enumerate() {
        assert!(
            view.error_replies.is_empty(),
            "every{i}: error replies (each write must get its result, or nothing when its own \
             node died): {:?}",
            view.error_replies
        );
        let value: u64 = redis::cmd("GET")
            .arg(format!("every{i}"))
            .query(&mut con)
            .unwrap();
        assert!(
            value >= view.acknowledged && value <= view.acknowledged + view.lost,
            "every{i}: value {value}, acknowledged {}, lost with their node {}",
            view.acknowledged,
            view.lost
        );
    }
}

/// A proxied connection to `port`, as a follower's proxy opens it.
fn proxied(port: u16) -> RawConnection {
    let mut con = RawConnection::connect(port);
    con.send(&resp_command(&[b"REDRAFT.PROXIED"]));
    assert_eq!(con.read_reply(), b"+OK\r\n");
    con
}

/// Sends the same identified `INCRBY dup 5` to the leader until it answers (a node that has
/// just lost or won leadership asks for it again); returns the reply.
fn send_identified_incr(cluster: &TestCluster) -> Vec<u8> {
    let request = resp_command(&[
        b"REDRAFT.REQ",
        b"99",
        b"123456789",
        b"1",
        b"1",
        b"INCRBY",
        b"dup",
        b"5",
    ]);
    wait_for("the leader's answer", LEADER_TIMEOUT, || {
        let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
        let mut con = proxied(cluster.nodes[leader].port);
        con.send(&request);
        let reply = con.read_reply();
        (!reply.starts_with(b"-REDRAFT.RETRY")).then_some(reply)
    })
}

fn value_of_dup(cluster: &TestCluster) -> i64 {
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    redis::cmd("GET")
        .arg("dup")
        .query(&mut cluster.nodes[leader].client())
        .unwrap()
}

#[test]
fn exactly_once_session_table_survives_leader_change_restart_and_snapshot_install() {
    let _serial = serial();
    let mut cluster = TestCluster::start(3, &["--snapshot-entries", "50"]);
    assert_eq!(send_identified_incr(&cluster), b":5\r\n");
    assert_eq!(send_identified_incr(&cluster), b":5\r\n", "sent again");
    assert_eq!(value_of_dup(&cluster), 5);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let sessions: u64 = cluster.nodes[leader]
        .info_field("raft_request_sessions")
        .and_then(|v| v.parse().ok())
        .expect("INFO raft_request_sessions");
    assert!(sessions >= 1, "INFO shows the session ({sessions})");

    // Leader change.
    cluster.nodes[leader].kill9();
    assert_eq!(
        send_identified_incr(&cluster),
        b":5\r\n",
        "after a leader change"
    );
    cluster.restart(leader);

    // Every node restarted.
    for i in 0..cluster.nodes.len() {
        cluster.nodes[i].kill9();
    }
    for i in 0..cluster.nodes.len() {
        cluster.restart(i);
    }
    assert_eq!(send_identified_incr(&cluster), b":5\r\n", "after a restart");
    assert_eq!(value_of_dup(&cluster), 5);

    // A new node catches up by snapshot (the log is purged past the id's entry), then leads.
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let mut con = cluster.nodes[leader].client();
    for i in 0..300 {
        let _: () = redis::cmd("SET")
            .arg(format!("filler{i}"))
            .arg(i)
            .query(&mut con)
            .unwrap();
    }
    for node in &cluster.nodes {
        node.cli(&["SAVE"]);
    }
    let newcomer = cluster.join_new_node(leader, &["--snapshot-entries", "50"]);
    cluster.wait_caught_up(newcomer, Duration::from_secs(60));
    let snapshot_index: u64 = cluster.nodes[newcomer]
        .info_field("raft_snapshot_index")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(snapshot_index > 0, "the new node installed a snapshot");
    let newcomer_id = cluster.nodes[newcomer].id.to_string();
    wait_for("the new node to lead", LEADER_TIMEOUT, || {
        let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
        if leader == newcomer {
            return Some(());
        }
        cluster.nodes[leader].cli(&["RAFT.TRANSFER", &newcomer_id]);
        None
    });
    assert_eq!(
        send_identified_incr(&cluster),
        b":5\r\n",
        "on a node that got the table by snapshot"
    );
    assert_eq!(value_of_dup(&cluster), 5);
}

#[test]
fn exactly_once_stock_cluster_client_incrby_across_repeated_leader_kills() {
    use redis::AsyncCommands;
    let _serial = serial();
    let mut cluster = TestCluster::start(3, &["--follower-mode", "redirect"]);
    let seeds: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| format!("redis://127.0.0.1:{}/", n.port))
        .collect();
    // The redis crate's cluster client as applications configure it: it resends on
    // MOVED/TRYAGAIN/CLUSTERDOWN and on a lost connection without telling the caller.
    let client = redis::cluster::ClusterClient::builder(seeds)
        .retries(20)
        .min_retry_wait(50)
        .max_retry_wait(500)
        .build()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen {
        acknowledged: vec![0; CLIENTS],
        errors: Vec::new(),
    }));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let stop = stop.clone();
            let seen = seen.clone();
            let client = client.clone();
            runtime.spawn(async move {
                let mut con = client.get_async_connection().await.unwrap();
                while !stop.load(Ordering::Relaxed) {
                    let reply: redis::RedisResult<i64> = con.incr(format!("stock{i}"), 1).await;
                    let mut seen = seen.lock().unwrap();
                    match reply {
                        Ok(_) => seen.acknowledged[i] += 1,
                        Err(err) => seen.errors.push(err.to_string()),
                    }
                }
            })
        })
        .collect();
    let total = || seen.lock().unwrap().acknowledged.iter().sum::<u64>();
    let progress = |what: &str| {
        let before = total();
        wait_for(what, Duration::from_secs(60), || {
            (total() >= before + 100).then_some(())
        });
    };
    progress("increments before any fault");
    let kills = 3;
    for _ in 0..kills {
        let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
        cluster.nodes[leader].kill9();
        progress("increments after the leader was killed");
        cluster.restart(leader);
        progress("increments with the old leader back");
    }
    stop.store(true, Ordering::Relaxed);
    runtime.block_on(async {
        for task in tasks {
            task.await.unwrap();
        }
    });
    let seen = seen.lock().unwrap();
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let mut con = cluster.nodes[leader].client();
    let errors = seen.errors.len() as u64;
    for (i, acknowledged) in seen.acknowledged.iter().enumerate() {
        let value: u64 = redis::cmd("GET")
            .arg(format!("stock{i}"))
            .query(&mut con)
            .unwrap();
        // Only an increment whose own node (the leader the client talked to) died under it can
        // have applied without its reply reaching the client, and the client then resent it:
        // at most one per kill for this client (it has one in flight), and one per error.
        assert!(
            value >= *acknowledged && value <= acknowledged + kills + errors,
            "stock{i}: value {value}, acknowledged {acknowledged}, kills {kills}, errors {errors}"
        );
    }
    eprintln!(
        "stock cluster client: {} increments acknowledged, errors seen by the application: {:?}",
        seen.acknowledged.iter().sum::<u64>(),
        seen.errors
    );
}
