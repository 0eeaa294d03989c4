//! Real client libraries running the patterns applications use.
//!
//! Goal: counters, SET NX EX locks, MULTI/EXEC, WATCH retry loops, pipelines, rate limiters,
//! leaderboards and work queues work unchanged through redis-py (sync and asyncio, RESP2 and
//! RESP3), ioredis (npm, RESP2) and the `redis` crate. Method: each test starts the real binary and runs the library against it; the
//! scripts live in `redis-compat/clients/` (`bash .ci/test` installs redis-py in
//! `target/pyenv` and ioredis, pinned by its `package-lock.json`, in
//! `redis-compat/clients/ioredis/node_modules`).

mod common;

use common::TestServer;
use redis::Commands;

/// Runs a redis-py script of `redis-compat/clients/` against a fresh server; it prints OK.
fn run_redis_py(script: &str) {
    let server = TestServer::start();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("redis-compat/clients")
        .join(script);
    common::run_client_script(&common::python(), &path, &[server.port], 120);
}

#[test]
fn clients_redis_py_sync_and_asyncio_patterns() {
    run_redis_py("redis_py_patterns.py");
}

/// A sliding-window rate limiter, a leaderboard, a work queue (LPUSH/BRPOP) and tags through
/// redis-py, RESP2 and RESP3.
#[test]
fn clients_redis_py_collections_rate_limiter_leaderboard_and_queue() {
    run_redis_py("redis_py_collections.py");
}

#[test]
fn clients_ioredis_patterns() {
    let dir = common::node_clients();
    let server = TestServer::start();
    common::run_client_script("node", &dir.join("patterns.js"), &[server.port], 120);
}

#[test]
fn clients_redis_crate_patterns() {
    let server = TestServer::start();
    let mut con = server.client();
    // Counters.
    assert_eq!(con.incr::<_, _, i64>("rs:counter", 1).unwrap(), 1);
    assert_eq!(con.incr::<_, _, i64>("rs:counter", 41).unwrap(), 42);
    // A lock with SET NX EX.
    let acquired: bool = redis::cmd("SET")
        .arg("rs:lock")
        .arg("me")
        .arg("NX")
        .arg("EX")
        .arg(30)
        .query::<Option<String>>(&mut con)
        .unwrap()
        .is_some();
    assert!(acquired);
    let again: Option<String> = redis::cmd("SET")
        .arg("rs:lock")
        .arg("you")
        .arg("NX")
        .arg("EX")
        .arg(30)
        .query(&mut con)
        .unwrap();
    assert_eq!(again, None);
    // MULTI/EXEC.
    let _: () = con.set("rs:balance", 100).unwrap();
    let (balance, spent): (i64, i64) = redis::pipe()
        .atomic()
        .decr("rs:balance", 30)
        .incr("rs:spent", 30)
        .query(&mut con)
        .unwrap();
    assert_eq!((balance, spent), (70, 30));
    // WATCH retry loop.
    let (balance,): (i64,) = redis::transaction(&mut con, &["rs:balance"], |con, pipe| {
        let balance: i64 = con.get("rs:balance")?;
        pipe.set("rs:balance", balance - 10)
            .ignore()
            .get("rs:balance")
            .query(con)
    })
    .unwrap();
    assert_eq!(balance, 60);
    // Pipelines.
    let mut pipe = redis::pipe();
    for _ in 0..100 {
        pipe.incr("rs:counter", 1);
    }
    let values: Vec<i64> = pipe.query(&mut con).unwrap();
    assert_eq!(values, (43..143).collect::<Vec<_>>());
}
