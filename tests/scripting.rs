//! Lua scripts on a real 3-node cluster.
//!
//! Goal: a script runs in apply on every replica with the same result (its clock and its random
//! numbers come from the log), the script cache is replicated state (EVALSHA works on every
//! node and after failover), and the lock and rate-limit libraries apps use run unchanged
//! through a follower across a leader kill, never letting two holders in at once. Method: real
//! binaries on 127.0.0.1 driven by the `redis` crate, redis-py (`Lock`), python-redis-lock
//! (which waits in BLPOP) and ioredis (node-redlock, rate-limiter-flexible), installed by
//! `bash .ci/test`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::cluster::{TestCluster, serial};
use redis::Value;

const LEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// A script that writes what TIME and math.random give it, and a random-looking hash field.
const CLOCK_AND_DICE: &str = "local t = redis.call('TIME')\n\
     local roll = math.random(1000000)\n\
     redis.call('SET', KEYS[1], t[1] .. '.' .. t[2] .. ':' .. roll .. ':' .. ARGV[1])\n\
     redis.call('HSET', KEYS[2], ARGV[1], tostring(math.random()))\n\
     redis.call('HINCRBY', KEYS[2], 'runs', 1)\n\
     return roll";

/// Every key's value as one node's own state machine holds it (READONLY: served locally).
fn state_of(port: u16, keys: &[String]) -> Vec<Value> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let mut con = client.get_connection().unwrap();
    let _: () = redis::cmd("READONLY").query(&mut con).unwrap();
    keys.iter()
        .map(|key| {
            redis::cmd("EVAL_RO")
                .arg(
                    "if redis.call('TYPE', KEYS[1]).ok == 'hash' then \
                     return redis.call('HGETALL', KEYS[1]) end \
                     return redis.call('GET', KEYS[1])",
                )
                .arg(1)
                .arg(key)
                .query(&mut con)
                .unwrap()
        })
        .collect()
}

#[test]
fn scripts_using_time_and_math_random_leave_every_replica_identical() {
    let _serial = serial();
    let cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(CLOCK_AND_DICE)
        .query(&mut cluster.nodes[cluster.a_follower()].client())
        .unwrap();
    let keys: Vec<String> = (0..8).map(|i| format!("dice:{i}")).collect();
    let mut runs = 0;
    for (i, node) in cluster.nodes.iter().enumerate() {
        let mut con = node.client();
        let mut pipe = redis::pipe();
        for j in 0..60usize {
            let (a, b) = (&keys[(i * 7 + j) % 8], &keys[(j * 3 + 1) % 8]);
            let (a, b) = if a == b {
                (a, &keys[(j + 2) % 8])
            } else {
                (a, b)
            };
            let hash_key = format!("{b}:h");
            if j % 2 == 0 {
                pipe.cmd("EVALSHA").arg(&sha);
            } else {
                pipe.cmd("EVAL").arg(CLOCK_AND_DICE);
            }
            pipe.arg(2).arg(a).arg(hash_key).arg(format!("{i}-{j}"));
            runs += 1;
        }
        let rolls: Vec<i64> = pipe.query(&mut con).unwrap();
        assert!(
            rolls.iter().all(|r| (1..=1_000_000).contains(r)),
            "{rolls:?}"
        );
    }
    let mut all_keys = keys.clone();
    all_keys.extend(keys.iter().map(|k| format!("{k}:h")));
    let reference = state_of(cluster.nodes[leader].port, &all_keys);
    let runs_seen: i64 = reference
        .iter()
        .filter_map(|value| match value {
            Value::Array(items) => items.chunks(2).find_map(|pair| {
                (pair[0] == Value::BulkString(b"runs".to_vec())).then(|| match &pair[1] {
                    Value::BulkString(n) => String::from_utf8_lossy(n).parse::<i64>().ok(),
                    _ => None,
                })?
            }),
            _ => None,
        })
        .sum();
    assert_eq!(runs_seen, runs, "every script ran exactly once");
    for (i, node) in cluster.nodes.iter().enumerate() {
        cluster.wait_caught_up(i, Duration::from_secs(30));
        assert_eq!(
            state_of(node.port, &all_keys),
            reference,
            "node {} holds what the leader holds",
            node.id
        );
    }
}

const LIBRARY: &str = "#!lua name=counters\n\
     redis.register_function('add', function(keys, args) return redis.call('INCRBY', keys[1], args[1]) end)\n\
     redis.register_function{function_name = 'read', flags = {'no-writes'},\n\
       callback = function(keys) return redis.call('GET', keys[1]) end}";

#[test]
fn script_cache_and_function_libraries_are_replicated_across_failover_and_restart() {
    let _serial = serial();
    let mut cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let follower = cluster.a_follower();
    let body = "return redis.call('INCRBY', KEYS[1], ARGV[1])";
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(body)
        .query(&mut cluster.nodes[follower].client())
        .unwrap();
    let library: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg(LIBRARY)
        .query(&mut cluster.nodes[follower].client())
        .unwrap();
    assert_eq!(library, "counters");
    // EVAL caches too: its SHA-1 is then known everywhere.
    let eval_body = "return 'cached by EVAL'";
    let _: String = redis::cmd("EVAL")
        .arg(eval_body)
        .arg(0)
        .query(&mut cluster.nodes[leader].client())
        .unwrap();
    let eval_sha = sha1_smol::Sha1::from(eval_body).digest().to_string();
    for (i, node) in cluster.nodes.iter().enumerate() {
        cluster.wait_caught_up(i, Duration::from_secs(30));
        let mut con = node.client();
        let _: () = redis::cmd("READONLY").query(&mut con).unwrap();
        let exists: Vec<i64> = redis::cmd("SCRIPT")
            .arg("EXISTS")
            .arg(&sha)
            .arg(&eval_sha)
            .arg("0000000000000000000000000000000000000000")
            .query(&mut con)
            .unwrap();
        assert_eq!(exists, [1, 1, 0], "node {}", node.id);
    }
    cluster.nodes[leader].kill9();
    let new_leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    assert_ne!(new_leader, leader);
    for (_, node) in cluster
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
    {
        let total: i64 = redis::cmd("EVALSHA")
            .arg(&sha)
            .arg(1)
            .arg("cached:total")
            .arg(5)
            .query(&mut node.client())
            .unwrap();
        assert!(total == 5 || total == 10, "{total}");
        let total: i64 = redis::cmd("FCALL")
            .arg("add")
            .arg(1)
            .arg("function:total")
            .arg(3)
            .query(&mut node.client())
            .unwrap();
        assert!(total == 3 || total == 6, "{total}");
    }
    cluster.restart(leader);
    cluster.wait_caught_up(leader, Duration::from_secs(30));
    let total: i64 = redis::cmd("EVALSHA")
        .arg(&sha)
        .arg(1)
        .arg("cached:total")
        .arg(1)
        .query(&mut cluster.nodes[leader].client())
        .unwrap();
    assert_eq!(total, 11);
    let mut con = cluster.nodes[leader].client();
    let _: () = redis::cmd("READONLY").query(&mut con).unwrap();
    let total: i64 = redis::cmd("FCALL_RO")
        .arg("read")
        .arg(1)
        .arg("function:total")
        .query(&mut con)
        .unwrap();
    assert_eq!(
        total, 6,
        "the restarted node runs the library on its own state"
    );
    // SCRIPT FLUSH goes through the log too: gone on every node; keys are not touched.
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query(&mut cluster.nodes[leader].client())
        .unwrap();
    for node in &cluster.nodes {
        let err = redis::cmd("EVALSHA")
            .arg(&sha)
            .arg(1)
            .arg("cached:total")
            .arg(1)
            .query::<i64>(&mut node.client())
            .unwrap_err();
        assert_eq!(err.code(), Some("NOSCRIPT"), "node {}: {err}", node.id);
    }
    let total: i64 = redis::cmd("GET")
        .arg("cached:total")
        .query(&mut cluster.nodes[leader].client())
        .unwrap();
    assert_eq!(total, 11);
    let _: () = redis::cmd("FUNCTION")
        .arg("DELETE")
        .arg("counters")
        .query(&mut cluster.nodes[follower].client())
        .unwrap();
    for node in &cluster.nodes {
        let err = redis::cmd("FCALL")
            .arg("add")
            .arg(1)
            .arg("function:total")
            .arg(1)
            .query::<i64>(&mut node.client())
            .unwrap_err();
        assert!(
            err.to_string().contains("Function not found"),
            "node {}: {err}",
            node.id
        );
    }
}

/// Runs a library script that prints READY, waits for a line while the leader is killed, then
/// prints `OK …`; it talks to the followers only (the nodes that stay up). Returns the OK line.
fn run_across_leader_kill(program: &str, script: &str, extra_env: &[(&str, String)]) -> String {
    let _serial = serial();
    let mut cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let followers: Vec<String> = cluster
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, n)| n.port.to_string())
        .collect();
    let mut child = Command::new("timeout")
        .arg("300")
        .arg(program)
        .arg(script)
        .args(&followers)
        .envs(extra_env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|err| panic!("{program} (bash .ci/test installs it): {err}"));
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "READY", "{script}: first phase failed");
    cluster.nodes[leader].kill9();
    let new_leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    assert_ne!(new_leader, leader);
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    line.clear();
    stdout.read_line(&mut line).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{script}: {status}, last line {line:?}");
    assert!(line.starts_with("OK "), "{script}: {line:?}");
    eprintln!("{script}: {}", line.trim());
    line
}

#[test]
fn redis_py_lock_keeps_mutual_exclusion_through_followers_across_a_leader_kill() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/redis-compat/clients/redis_py_lock.py"
    );
    let line = run_across_leader_kill(&common::python(), script, &[]);
    // "OK <sections> <errors>": nothing the application saw failed.
    assert!(
        line.trim().ends_with(" 0"),
        "errors seen by redis-py: {line}"
    );
}

#[test]
fn python_redis_lock_keeps_mutual_exclusion_through_followers_across_a_leader_kill() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/redis-compat/clients/python_redis_lock.py"
    );
    let line = run_across_leader_kill(&common::python(), script, &[]);
    assert!(
        line.trim().ends_with(" 0"),
        "errors seen by python-redis-lock: {line}"
    );
}

#[test]
fn node_redlock_and_rate_limiter_flexible_through_followers_across_a_leader_kill() {
    let dir = std::env::var("REDRAFT_TEST_NODE_DIR").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/redis-compat/clients/ioredis").to_string()
    });
    let dir = std::path::Path::new(&dir);
    for package in ["ioredis", "redlock", "rate-limiter-flexible"] {
        assert!(
            dir.join("node_modules").join(package).is_dir(),
            "{package} is not installed in {}: run `bash .ci/test` (it runs npm ci there)",
            dir.display()
        );
    }
    let script = dir.join("locks.js");
    let line = run_across_leader_kill("node", script.to_str().unwrap(), &[]);
    // "OK <sections> <consumes> <errors>".
    assert!(
        line.trim().ends_with(" 0"),
        "errors seen by the libraries: {line}"
    );
}

#[test]
fn fenced_lock_example_refuses_a_stale_holder_through_a_follower() {
    let _serial = serial();
    let cluster = TestCluster::start(3, &[]);
    let follower = &cluster.nodes[cluster.a_follower()];
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/examples/fenced_lock.py");
    let output = Command::new("timeout")
        .arg("60")
        .arg(common::python())
        .arg(example)
        .arg(follower.port.to_string())
        .output()
        .expect("python3 with redis-py (bash .ci/test installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("A's write refused: stale fencing token 1 < 2"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().last(), Some("OK"));
}

#[test]
fn function_dump_moves_libraries_between_redis_and_redraft() {
    let redis = common::real_redis::RealRedis::start();
    let redraft = common::TestServer::start();
    let mut from_redis = redis::Client::open(format!("redis://127.0.0.1:{}/", redis.port))
        .unwrap()
        .get_connection()
        .unwrap();
    let mut to_redraft = redraft.client();
    // Large enough for Redis to compress it (LZF) in its payload.
    let library = format!(
        "#!lua name=many\n{}",
        (0..30)
            .map(|i| format!("redis.register_function('f{i}', function() return {i} end)"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg(&library)
        .query(&mut from_redis)
        .unwrap();
    let payload: Vec<u8> = redis::cmd("FUNCTION")
        .arg("DUMP")
        .query(&mut from_redis)
        .unwrap();
    let _: () = redis::cmd("FUNCTION")
        .arg("RESTORE")
        .arg(&payload)
        .query(&mut to_redraft)
        .unwrap();
    let answer: i64 = redis::cmd("FCALL")
        .arg("f29")
        .arg(0)
        .query(&mut to_redraft)
        .unwrap();
    assert_eq!(answer, 29);
    let err = redis::cmd("FUNCTION")
        .arg("RESTORE")
        .arg(&payload)
        .query::<()>(&mut to_redraft)
        .unwrap_err();
    assert!(
        err.to_string().contains("Library many already exists"),
        "{err}"
    );
    // And back: redraft's payload restores into Redis.
    let payload: Vec<u8> = redis::cmd("FUNCTION")
        .arg("DUMP")
        .query(&mut to_redraft)
        .unwrap();
    let _: () = redis::cmd("FUNCTION")
        .arg("RESTORE")
        .arg(&payload)
        .arg("FLUSH")
        .query(&mut from_redis)
        .unwrap();
    let answer: i64 = redis::cmd("FCALL")
        .arg("f7")
        .arg(0)
        .query(&mut from_redis)
        .unwrap();
    assert_eq!(answer, 7);
    let mut damaged = payload.clone();
    damaged[5] ^= 0x20;
    let err = redis::cmd("FUNCTION")
        .arg("RESTORE")
        .arg(&damaged)
        .query::<()>(&mut to_redraft)
        .unwrap_err();
    assert!(err.to_string().contains("checksum are wrong"), "{err}");
}

#[test]
fn scripts_inside_multi_under_watch_through_a_follower_and_redirected_by_moved() {
    let _serial = serial();
    let cluster = TestCluster::start(3, &["--follower-mode", "redirect"]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let follower = cluster.a_follower();
    let spend = "local left = tonumber(redis.call('GET', KEYS[1]) or '0') - tonumber(ARGV[1])\n\
                 if left < 0 then return redis.error_reply('ERR insufficient funds') end\n\
                 redis.call('SET', KEYS[1], left) return left";
    // Redirect mode: a script with keys is sent to the leader with MOVED, as cluster clients
    // expect; one without keys has no slot to name and is forwarded.
    let mut at_follower = cluster.nodes[follower].client();
    let err = redis::cmd("EVAL")
        .arg(spend)
        .arg(1)
        .arg("wallet")
        .arg(1)
        .query::<i64>(&mut at_follower)
        .unwrap_err();
    assert_eq!(err.code(), Some("MOVED"), "{err}");
    let leader_port = cluster.nodes[leader].port;
    assert!(err.to_string().contains(&leader_port.to_string()), "{err}");
    let keyless: i64 = redis::cmd("EVAL")
        .arg("return 7")
        .arg(0)
        .query(&mut at_follower)
        .unwrap();
    assert_eq!(keyless, 7);

    // On the leader: scripts inside MULTI under WATCH, as Redis runs them.
    let mut a = cluster.nodes[leader].client();
    let mut b = cluster.nodes[leader].client();
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(spend)
        .query(&mut a)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("wallet")
        .arg(100)
        .query(&mut a)
        .unwrap();
    let _: () = redis::cmd("WATCH").arg("wallet").query(&mut a).unwrap();
    let _: () = redis::cmd("SET")
        .arg("wallet")
        .arg(10)
        .query(&mut b)
        .unwrap();
    let aborted: Option<(i64,)> = redis::pipe()
        .atomic()
        .cmd("EVALSHA")
        .arg(&sha)
        .arg(1)
        .arg("wallet")
        .arg(5)
        .query(&mut a)
        .unwrap();
    assert_eq!(aborted, None, "a conflicting write aborts the transaction");
    let _: () = redis::cmd("WATCH").arg("wallet").query(&mut a).unwrap();
    let applied: (i64, i64) = redis::pipe()
        .atomic()
        .cmd("EVALSHA")
        .arg(&sha)
        .arg(1)
        .arg("wallet")
        .arg(4)
        .cmd("EVAL")
        .arg(spend)
        .arg(1)
        .arg("wallet")
        .arg(5)
        .query(&mut a)
        .unwrap();
    assert_eq!(applied, (6, 1));
    // A script's error inside EXEC is that command's reply; the others apply.
    let mut raw = common::RawConnection::connect(cluster.nodes[leader].port);
    let mut transaction = Vec::new();
    for command in [
        vec![&b"MULTI"[..]],
        vec![b"EVALSHA", sha.as_bytes(), b"1", b"wallet", b"50"],
        vec![b"INCR", b"after"],
        vec![b"EXEC"],
    ] {
        transaction.extend_from_slice(&common::resp_command(&command));
    }
    raw.send(&transaction);
    for expected in [&b"+OK\r\n"[..], b"+QUEUED\r\n", b"+QUEUED\r\n"] {
        assert_eq!(raw.read_reply(), expected);
    }
    assert_eq!(
        String::from_utf8_lossy(&raw.read_reply()),
        "*2\r\n-ERR insufficient funds\r\n:1\r\n"
    );
}
