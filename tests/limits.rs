//! Sizes at Redis's limits: a million keys, and keys and values of `proto-max-bulk-len`.
//!
//! Goal: SCAN, KEYS and DBSIZE stay exact with 1,000,000 keys, and a key or value of exactly
//! 512 MiB (Redis's default `proto-max-bulk-len`) round-trips while one byte more is refused
//! with Redis's error. Method: the real binary, filled through pipelined MSETs from the `redis`
//! crate; every reply checked.

mod common;

use std::collections::HashSet;

use common::TestServer;
use redis::Commands;

/// Redis 7.0's default `proto-max-bulk-len`.
const MAX_BULK: usize = 512 * 1024 * 1024;

const KEYS: usize = 1_000_000;

fn key_name(i: usize) -> String {
    format!("k:{i}")
}

#[test]
fn limits_a_million_keys_scan_keys_and_dbsize_are_exact() {
    let server = TestServer::start();
    let mut con = server.client();
    // 1,000 MSETs of 1,000 keys, pipelined 50 at a time.
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(50_000) {
        let mut pipe = redis::pipe();
        for batch in chunk.chunks(1_000) {
            let mut mset = redis::cmd("MSET");
            for &i in batch {
                mset.arg(key_name(i)).arg(i);
            }
            pipe.add_command(mset).ignore();
        }
        let _: () = pipe.query(&mut con).unwrap();
    }
    let dbsize: usize = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(dbsize, KEYS);

    // A full SCAN returns every key (duplicates are allowed by SCAN's contract, none missing).
    let mut seen = HashSet::with_capacity(KEYS);
    let mut cursor = 0u64;
    let mut steps = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1_000)
            .query(&mut con)
            .unwrap();
        seen.extend(keys);
        steps += 1;
        cursor = next;
        if cursor == 0 {
            break;
        }
        assert!(steps < 100_000, "SCAN does not terminate");
    }
    assert_eq!(seen.len(), KEYS);
    assert!((0..KEYS).all(|i| seen.contains(&key_name(i))));

    // SCAN MATCH with a pattern that selects 111 keys.
    let mut matched = HashSet::new();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("k:4242*")
            .arg("COUNT")
            .arg(10_000)
            .query(&mut con)
            .unwrap();
        matched.extend(keys);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    let expected: HashSet<String> = (0..KEYS)
        .map(key_name)
        .filter(|k| k.starts_with("k:4242"))
        .collect();
    assert_eq!(expected.len(), 111);
    assert_eq!(matched, expected);

    // KEYS with a pattern, and KEYS * over everything.
    let keys: Vec<String> = con.keys("k:99999?").unwrap();
    let keys: HashSet<String> = keys.into_iter().collect();
    let expected: HashSet<String> = (999_990..1_000_000).map(key_name).collect();
    assert_eq!(keys, expected);
    let all: Vec<String> = con.keys("*").unwrap();
    assert_eq!(all.len(), KEYS);
    assert_eq!(all.into_iter().collect::<HashSet<_>>().len(), KEYS);

    // Deleting and expiring keep DBSIZE exact.
    let deleted: usize = con
        .del((0..1_000).map(key_name).collect::<Vec<_>>())
        .unwrap();
    assert_eq!(deleted, 1_000);
    let dbsize: usize = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(dbsize, KEYS - 1_000);
    let value: Option<i64> = con.get(key_name(123_456)).unwrap();
    assert_eq!(value, Some(123_456));
}

#[test]
fn limits_keys_and_values_of_proto_max_bulk_len() {
    let server = TestServer::start();
    let mut con = server.client();

    // A value of exactly the limit: stored, read back whole, measured.
    let mut value = vec![b'v'; MAX_BULK];
    value[0] = 0;
    value[MAX_BULK - 1] = 0xff;
    let _: () = con.set("big-value", &value[..]).unwrap();
    let strlen: usize = con.strlen("big-value").unwrap();
    assert_eq!(strlen, MAX_BULK);
    let read: Vec<u8> = con.get("big-value").unwrap();
    assert!(read == value, "the 512 MiB value came back different");
    drop(read);
    // Growing it past the limit is refused with Redis's error, and the value is intact.
    let err = con
        .append::<_, _, usize>("big-value", "x")
        .expect_err("APPEND past proto-max-bulk-len");
    assert_eq!(
        (err.code(), err.detail()),
        (
            Some("ERR"),
            Some("string exceeds maximum allowed size (proto-max-bulk-len)")
        )
    );
    let err = redis::cmd("SETRANGE")
        .arg("big-value")
        .arg(MAX_BULK)
        .arg("x")
        .query::<usize>(&mut con)
        .expect_err("SETRANGE past proto-max-bulk-len");
    assert_eq!(
        (err.code(), err.detail()),
        (
            Some("ERR"),
            Some("string exceeds maximum allowed size (proto-max-bulk-len)")
        )
    );
    let tail: Vec<u8> = con.getrange("big-value", -2, -1).unwrap();
    assert_eq!(tail, vec![b'v', 0xff]);
    let _: usize = con.del("big-value").unwrap();

    // A key of exactly the limit.
    let mut key = value;
    key[1] = b'k';
    let _: () = con.set(&key[..], "small").unwrap();
    let read: Option<String> = con.get(&key[..]).unwrap();
    assert_eq!(read.as_deref(), Some("small"));
    let exists: usize = con.exists(&key[..]).unwrap();
    assert_eq!(exists, 1);
    let _: usize = con.del(&key[..]).unwrap();
    drop(key);

    // One byte more than the limit is a protocol error, as Redis answers it.
    let mut raw = server.raw();
    raw.send(format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n", MAX_BULK + 1).as_bytes());
    assert_eq!(
        raw.read_reply(),
        b"-ERR Protocol error: invalid bulk length\r\n".to_vec()
    );
    let dbsize: usize = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(dbsize, 0);
}
