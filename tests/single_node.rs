//! Single-node behaviour seen by real clients over real sockets.
//!
//! Goal: the four raft-backed commands (SET, GET, INCRBY, DEL and their aliases) give Redis's
//! replies and error texts, pipelining and concurrency keep order and atomicity, and
//! acknowledged writes survive `kill -9` and restart. Method: each test starts the real binary
//! on a free port with its own data directory and talks to it with the `redis` crate,
//! `redis-cli` or raw RESP bytes.

mod common;

use std::time::Duration;

use common::{TestServer, resp_command, wait_for};
use redis::{Commands, RedisResult, Value};

#[test]
fn single_node_set_get_incrby_del_with_redis_crate() {
    let server = TestServer::start();
    let mut con = server.client();

    let _: () = con.set("greeting", "hello").unwrap();
    let got: String = con.get("greeting").unwrap();
    assert_eq!(got, "hello");

    assert_eq!(con.incr::<_, _, i64>("counter", 5).unwrap(), 5);
    assert_eq!(con.incr::<_, _, i64>("counter", 1).unwrap(), 6);
    assert_eq!(con.decr::<_, _, i64>("counter", 10).unwrap(), -4);
    let decr: i64 = redis::cmd("DECR").arg("counter").query(&mut con).unwrap();
    assert_eq!(decr, -5);
    let incr: i64 = redis::cmd("INCR").arg("fresh").query(&mut con).unwrap();
    assert_eq!(incr, 1);

    let removed: i64 = con.del(&["greeting", "counter", "missing"]).unwrap();
    assert_eq!(removed, 2);
    let gone: Option<String> = con.get("greeting").unwrap();
    assert_eq!(gone, None);
    let exists: i64 = redis::cmd("EXISTS")
        .arg("fresh")
        .arg("fresh")
        .arg("greeting")
        .query(&mut con)
        .unwrap();
    assert_eq!(exists, 2, "EXISTS counts duplicates");
}

#[test]
fn single_node_values_and_keys_are_binary_safe() {
    let server = TestServer::start();
    let mut con = server.client();
    let key: Vec<u8> = vec![0, 255, b'\r', b'\n', b' ', 7];
    let value: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let _: () = con.set(&key, &value).unwrap();
    let got: Vec<u8> = con.get(&key).unwrap();
    assert_eq!(got, value);
    let empty: Vec<u8> = Vec::new();
    let _: () = con.set("empty", &empty).unwrap();
    let got: Vec<u8> = con.get("empty").unwrap();
    assert!(got.is_empty());
    let raw: Value = redis::cmd("GET").arg("empty").query(&mut con).unwrap();
    assert_eq!(raw, Value::BulkString(vec![]), "empty string is not nil");
}

#[test]
fn single_node_incrby_follows_redis_integer_rules() {
    let server = TestServer::start();
    let mut con = server.client();
    let _: () = con.set("text", "12abc").unwrap();
    let err: RedisResult<i64> = con.incr("text", 1);
    assert!(
        err.unwrap_err()
            .to_string()
            .contains("value is not an integer or out of range")
    );
    let _: () = con.set("big", i64::MAX.to_string()).unwrap();
    let err: RedisResult<i64> = con.incr("big", 1);
    assert!(
        err.unwrap_err()
            .to_string()
            .contains("increment or decrement would overflow")
    );
    let unchanged: String = con.get("big").unwrap();
    assert_eq!(unchanged, i64::MAX.to_string(), "overflow changes nothing");
    let _: () = con.set("padded", " 1").unwrap();
    assert!(con.incr::<_, _, i64>("padded", 1).is_err());
    let _: () = con.set("neg", "-10").unwrap();
    assert_eq!(con.incr::<_, _, i64>("neg", 3).unwrap(), -7);
    let stored: String = con.get("neg").unwrap();
    assert_eq!(stored, "-7");
}

#[test]
fn single_node_error_texts_match_redis() {
    let server = TestServer::start();
    let mut raw = server.raw();
    let cases: &[(&[&[u8]], &[u8])] = &[
        (
            &[b"GET"],
            b"-ERR wrong number of arguments for 'get' command\r\n",
        ),
        (
            &[b"SET", b"k"],
            b"-ERR wrong number of arguments for 'set' command\r\n",
        ),
        (
            &[b"INCRBY", b"k", b"x"],
            b"-ERR value is not an integer or out of range\r\n",
        ),
        (
            &[b"INCRBY", b"k", b"99999999999999999999"],
            b"-ERR value is not an integer or out of range\r\n",
        ),
        (
            &[b"NOSUCH", b"a", b"b"],
            b"-ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' \r\n",
        ),
        (
            &[b"CLIENT", b"BOGUS"],
            b"-ERR unknown subcommand 'BOGUS'. Try CLIENT HELP.\r\n",
        ),
        (&[b"SELECT", b"1"], b"-ERR DB index is out of range\r\n"),
        (&[b"SELECT", b"0"], b"+OK\r\n"),
        (&[b"PING"], b"+PONG\r\n"),
        (&[b"PING", b"hi"], b"$2\r\nhi\r\n"),
        (&[b"ECHO", b"x y"], b"$3\r\nx y\r\n"),
        (
            &[b"HELLO", b"4"],
            b"-NOPROTO unsupported protocol version\r\n",
        ),
    ];
    for (command, expected) in cases {
        raw.send(&resp_command(command));
        let reply = raw.read_reply();
        assert_eq!(
            String::from_utf8_lossy(&reply),
            String::from_utf8_lossy(expected),
            "reply to {:?}",
            command
                .iter()
                .map(|a| String::from_utf8_lossy(a))
                .collect::<Vec<_>>()
        );
    }
    // The connection survived every error above.
    raw.send(&resp_command(&[b"PING"]));
    assert_eq!(raw.read_reply(), b"+PONG\r\n");
}

#[test]
fn single_node_redis_cli_session() {
    let server = TestServer::start();
    assert_eq!(server.redis_cli(&["SET", "visits", "10"]), "OK\n");
    assert_eq!(server.redis_cli(&["INCRBY", "visits", "5"]), "15\n");
    assert_eq!(server.redis_cli(&["DECR", "visits"]), "14\n");
    assert_eq!(server.redis_cli(&["GET", "visits"]), "14\n");
    assert_eq!(server.redis_cli(&["DEL", "visits"]), "1\n");
    assert_eq!(server.redis_cli(&["GET", "visits"]), "\n");
    assert_eq!(
        server.redis_cli(&["INCRBY", "visits", "nope"]).trim_end(),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(server.redis_cli(&["DBSIZE"]), "0\n");
    let info = server.redis_cli(&["INFO", "raft"]);
    assert!(info.contains("raft_role:leader"), "{info}");
}

#[test]
fn single_node_ten_thousand_pipelined_incrs_reply_in_order() {
    let server = TestServer::start();
    let mut raw = server.raw();
    let one = resp_command(&[b"INCR", b"pipelined"]);
    let mut stream = Vec::with_capacity(one.len() * 10_000);
    for _ in 0..10_000 {
        stream.extend_from_slice(&one);
    }
    raw.send(&stream);
    for expected in 1..=10_000 {
        let reply = raw.read_reply();
        assert_eq!(
            reply,
            format!(":{expected}\r\n").into_bytes(),
            "reply number {expected}"
        );
    }
}

#[test]
fn single_node_pipelined_reads_see_earlier_writes_of_the_connection() {
    let server = TestServer::start();
    let mut raw = server.raw();
    let mut stream = Vec::new();
    for i in 0..500 {
        let value = i.to_string();
        stream.extend_from_slice(&resp_command(&[b"SET", b"reg", value.as_bytes()]));
        stream.extend_from_slice(&resp_command(&[b"GET", b"reg"]));
    }
    raw.send(&stream);
    for i in 0..500 {
        assert_eq!(raw.read_reply(), b"+OK\r\n");
        let value = i.to_string();
        let expected = format!("${}\r\n{}\r\n", value.len(), value);
        assert_eq!(String::from_utf8(raw.read_reply()).unwrap(), expected);
    }
}

#[test]
fn single_node_fifty_concurrent_clients_incrby_sum_exactly() {
    let server = TestServer::start();
    let clients = 50;
    let per_client = 1_000;
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let mut con = server.client();
            std::thread::spawn(move || {
                let mut pipe = redis::pipe();
                for _ in 0..per_client {
                    pipe.cmd("INCRBY").arg("shared").arg(3);
                }
                let replies: Vec<i64> = pipe.query(&mut con).unwrap();
                assert_eq!(replies.len(), per_client);
                // Within one connection, values only grow.
                assert!(replies.windows(2).all(|w| w[0] < w[1]));
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let mut con = server.client();
    let total: i64 = con.get("shared").unwrap();
    assert_eq!(total, (clients * per_client * 3) as i64);
}

#[test]
fn single_node_kill9_keeps_every_acknowledged_write() {
    let mut server = TestServer::start();
    let port = server.port;
    let (ack_tx, ack_rx) = std::sync::mpsc::channel::<u64>();
    // Two writers: one SETs distinct keys, one INCRs a counter; each reports what was acked.
    let setter = std::thread::spawn(move || {
        let mut con = match redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .unwrap()
            .get_connection()
        {
            Ok(con) => con,
            Err(_) => return 0u64,
        };
        let mut acked = 0u64;
        loop {
            let key = format!("key:{acked}");
            let result: RedisResult<()> = con.set(&key, acked);
            if result.is_err() {
                return acked;
            }
            acked += 1;
            let _ = ack_tx.send(acked);
        }
    });
    let counter = std::thread::spawn(move || {
        let mut con = match redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .unwrap()
            .get_connection()
        {
            Ok(con) => con,
            Err(_) => return 0i64,
        };
        let mut last = 0i64;
        loop {
            match con.incr::<_, _, i64>("acked-counter", 1) {
                Ok(value) => last = value,
                Err(_) => return last,
            }
        }
    });
    // Kill while writes are flowing: after a few hundred acknowledgements.
    wait_for("acknowledged writes", Duration::from_secs(30), || {
        ack_rx.try_iter().last().filter(|&n| n >= 300)
    });
    server.kill9();
    let sets_acked = setter.join().unwrap();
    let counter_acked = counter.join().unwrap();
    assert!(sets_acked >= 300);

    server.restart();
    let mut con = server.client();
    for i in 0..sets_acked {
        let value: Option<u64> = con.get(format!("key:{i}")).unwrap();
        assert_eq!(value, Some(i), "acknowledged SET key:{i} survived kill -9");
    }
    let counter_now: i64 = con.get("acked-counter").unwrap();
    assert!(
        counter_now >= counter_acked,
        "counter {counter_now} went below the acknowledged {counter_acked}"
    );
    assert!(
        counter_now <= counter_acked + 1,
        "at most the one unacknowledged INCR in flight may have applied"
    );
}

#[test]
fn single_node_restart_resumes_without_reinitializing() {
    let mut server = TestServer::start();
    {
        let mut con = server.client();
        let _: () = con.set("durable", "yes").unwrap();
    }
    assert!(
        server
            .log
            .lock()
            .unwrap()
            .contains("initialized a new single-node cluster")
    );
    let status = server.signal_and_wait("TERM");
    assert!(status.success(), "SIGTERM exits cleanly: {status:?}");

    server.restart();
    let log = server.log.lock().unwrap().clone();
    assert!(log.contains("resuming from existing data"), "{log}");
    assert!(
        !log.contains("initialized a new single-node cluster"),
        "{log}"
    );
    let mut con = server.client();
    let value: String = con.get("durable").unwrap();
    assert_eq!(value, "yes");
    let _: () = con.set("after", "restart").unwrap();
}

#[test]
fn single_node_malformed_request_closes_only_that_connection() {
    let server = TestServer::start();
    let mut good = server.raw();
    let mut bad = server.raw();
    bad.send(b"*1\r\n$x\r\n");
    assert_eq!(
        bad.read_reply(),
        b"-ERR Protocol error: invalid bulk length\r\n"
    );
    assert!(bad.is_closed(), "Redis closes after a protocol error");

    let mut quotes = server.raw();
    quotes.send(b"SET \"unterminated\r\n");
    assert_eq!(
        quotes.read_reply(),
        b"-ERR Protocol error: unbalanced quotes in request\r\n"
    );
    assert!(quotes.is_closed());

    let mut dollar = server.raw();
    dollar.send(b"*1\r\nx\r\n");
    assert_eq!(
        dollar.read_reply(),
        b"-ERR Protocol error: expected '$', got 'x'\r\n"
    );

    good.send(b"PING\r\n");
    assert_eq!(good.read_reply(), b"+PONG\r\n");
    good.send(&resp_command(&[b"SET", b"still", b"works"]));
    assert_eq!(good.read_reply(), b"+OK\r\n");
}

#[test]
fn single_node_replies_before_a_protocol_error_are_sent() {
    let server = TestServer::start();
    let mut raw = server.raw();
    raw.send(b"PING\r\nPING\r\n*1\r\n$-5\r\n");
    assert_eq!(raw.read_reply(), b"+PONG\r\n");
    assert_eq!(raw.read_reply(), b"+PONG\r\n");
    assert_eq!(
        raw.read_reply(),
        b"-ERR Protocol error: invalid bulk length\r\n"
    );
    assert!(raw.is_closed());
}

#[test]
fn single_node_hello3_with_redis_crate_resp3() {
    let server = TestServer::start();
    let client =
        redis::Client::open(format!("redis://127.0.0.1:{}/?protocol=resp3", server.port)).unwrap();
    let mut con = client.get_connection().unwrap();
    let _: () = con.set("r3", 42).unwrap();
    let value: i64 = con.get("r3").unwrap();
    assert_eq!(value, 42);
    let hello: Value = redis::cmd("HELLO").arg(3).query(&mut con).unwrap();
    let Value::Map(fields) = hello else {
        panic!("HELLO 3 answers a RESP3 map, got {hello:?}");
    };
    let find = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| *k == Value::BulkString(name.as_bytes().to_vec()))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(find("proto"), Some(Value::Int(3)));
    assert_eq!(find("server"), Some(Value::BulkString(b"redis".to_vec())));
    assert_eq!(find("role"), Some(Value::BulkString(b"master".to_vec())));
    assert_eq!(find("modules"), Some(Value::Array(vec![])));
    let missing: Value = redis::cmd("GET").arg("nothing").query(&mut con).unwrap();
    assert_eq!(missing, Value::Nil);
}

#[test]
fn single_node_hello3_raw_bytes_switch_protocol() {
    let server = TestServer::start();
    let mut raw = server.raw();
    raw.send(&resp_command(&[b"HELLO", b"3"]));
    let hello = String::from_utf8(raw.read_reply()).unwrap();
    assert!(
        hello.starts_with("%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n"),
        "{hello}"
    );
    raw.send(&resp_command(&[b"GET", b"missing"]));
    assert_eq!(raw.read_reply(), b"_\r\n", "RESP3 null after HELLO 3");
    raw.send(&resp_command(&[b"HELLO", b"2"]));
    let hello = String::from_utf8(raw.read_reply()).unwrap();
    assert!(hello.starts_with("*14\r\n"), "{hello}");
    raw.send(&resp_command(&[b"GET", b"missing"]));
    assert_eq!(raw.read_reply(), b"$-1\r\n");
}

#[test]
fn single_node_requirepass_gates_commands() {
    let server = TestServer::start_with(&["--requirepass", "s3cret"]);
    let mut raw = server.raw();
    raw.send(&resp_command(&[b"GET", b"k"]));
    assert_eq!(raw.read_reply(), b"-NOAUTH Authentication required.\r\n");
    raw.send(&resp_command(&[b"AUTH", b"wrong"]));
    assert_eq!(
        raw.read_reply(),
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    raw.send(&resp_command(&[b"AUTH", b"s3cret"]));
    assert_eq!(raw.read_reply(), b"+OK\r\n");
    raw.send(&resp_command(&[b"SET", b"k", b"v"]));
    assert_eq!(raw.read_reply(), b"+OK\r\n");

    // Before AUTH, a multibulk of more than 10 arguments is a protocol error.
    let mut unauth = server.raw();
    unauth.send(b"*11\r\n");
    assert_eq!(
        unauth.read_reply(),
        b"-ERR Protocol error: unauthenticated multibulk length\r\n"
    );

    let client = redis::Client::open(format!(
        "redis://:s3cret@127.0.0.1:{}/?protocol=resp3",
        server.port
    ))
    .unwrap();
    let mut con = client.get_connection().unwrap();
    let value: String = con.get("k").unwrap();
    assert_eq!(value, "v");
}

#[test]
fn single_node_read_mode_log_serves_gets_through_the_log() {
    let server = TestServer::start_with(&["--read-mode", "log"]);
    let mut con = server.client();
    let _: () = con.set("k", "v").unwrap();
    let before = applied_index(&server);
    let value: String = con.get("k").unwrap();
    assert_eq!(value, "v");
    let after = applied_index(&server);
    assert!(after > before, "a GET in log mode appends a log entry");
}

fn applied_index(server: &TestServer) -> u64 {
    let info = server.redis_cli(&["INFO", "raft"]);
    info.lines()
        .find_map(|l| l.strip_prefix("raft_applied_index:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("raft_applied_index in INFO")
}

#[test]
fn single_node_flushall_goes_through_raft() {
    let server = TestServer::start();
    let mut con = server.client();
    for i in 0..10 {
        let _: () = con.set(format!("k{i}"), i).unwrap();
    }
    let size: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(size, 10);
    let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    let size: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(size, 0);
    let _: () = redis::cmd("FLUSHDB").arg("ASYNC").query(&mut con).unwrap();
}

#[test]
fn single_node_taken_port_is_a_one_line_error() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(common::binary())
        .args(["--port", &server.port.to_string()])
        .arg("--dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let error_lines: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(error_lines.len(), 1, "{stderr}");
    assert!(error_lines[0].contains("cannot listen on"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn single_node_io_threads_one_by_default_and_a_pool_on_request() {
    let reports = |server: &TestServer, threads: &str, active: &str| {
        assert_eq!(
            server.redis_cli(&["CONFIG", "GET", "io-threads"]),
            format!("io-threads\n{threads}\n")
        );
        let info = server.redis_cli(&["INFO", "server"]);
        assert!(
            info.contains(&format!("io_threads_active:{active}")),
            "{info}"
        );
    };
    reports(&TestServer::start(), "1", "0");

    // A pool of 4: concurrent clients' increments all count, none twice.
    let pooled = TestServer::start_with(&["--io-threads", "4"]);
    reports(&pooled, "4", "1");
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let mut con = pooled.client();
            std::thread::spawn(move || {
                for _ in 0..200 {
                    let _: i64 = con.incr("pooled", 1).unwrap();
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    let total: i64 = pooled.client().get("pooled").unwrap();
    assert_eq!(total, 1600);

    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(common::binary())
        .args(["--port", "0", "--io-threads", "0", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--io-threads"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn single_node_unusable_data_dir_is_a_one_line_error() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let output = std::process::Command::new(common::binary())
        .args(["--port", "0", "--dir"])
        .arg(file.path().join("data"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("redraft: error: cannot create data directory"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn single_node_client_and_server_commands() {
    let server = TestServer::start();
    let mut con = server.client();
    let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut con).unwrap();
    assert!(id > 0);
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("worker-1")
        .query(&mut con)
        .unwrap();
    let name: String = redis::cmd("CLIENT").arg("GETNAME").query(&mut con).unwrap();
    assert_eq!(name, "worker-1");
    let _: () = redis::cmd("CLIENT")
        .arg("SETINFO")
        .arg("LIB-NAME")
        .arg("tests")
        .query(&mut con)
        .unwrap();
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut con).unwrap();
    assert!(list.contains(&format!("id={id} ")), "{list}");
    assert!(list.contains("name=worker-1"), "{list}");
    let info: String = redis::cmd("CLIENT").arg("INFO").query(&mut con).unwrap();
    assert!(info.contains("lib-name=tests"), "{info}");
    let err: RedisResult<()> = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("has space")
        .query(&mut con);
    assert!(
        err.unwrap_err()
            .to_string()
            .contains("Client names cannot contain spaces")
    );

    let time: Vec<String> = redis::cmd("TIME").query(&mut con).unwrap();
    assert_eq!(time.len(), 2);
    assert!(time[0].parse::<u64>().unwrap() > 1_700_000_000);

    let info: String = redis::cmd("INFO").query(&mut con).unwrap();
    for needle in [
        "# Server",
        "redis_version:7.0",
        "arch_bits:64",
        "# Clients",
        "# Persistence",
        "# Stats",
        "# Replication",
        "cluster_enabled:0",
        "# Keyspace",
        "# Raft",
        "raft_node_id:1",
    ] {
        assert!(info.contains(needle), "INFO lacks {needle}:\n{info}");
    }
    let count: i64 = redis::cmd("COMMAND").arg("COUNT").query(&mut con).unwrap();
    assert!(count >= 20, "COMMAND COUNT {count}");
}

#[test]
fn single_node_quit_replies_then_closes() {
    let server = TestServer::start();
    let mut raw = server.raw();
    raw.send(b"QUIT\r\n");
    assert_eq!(raw.read_reply(), b"+OK\r\n");
    assert!(raw.is_closed());
}
