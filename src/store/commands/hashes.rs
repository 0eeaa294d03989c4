//! Hash commands: HSET, HSETNX, HGET, HMGET, HMSET, HDEL, HEXISTS, HLEN, HSTRLEN, HKEYS, HVALS,
//! HGETALL, HINCRBY, HINCRBYFLOAT, HRANDFIELD and HSCAN, with Redis 7.0's replies and errors.
//!
//! # Deliberate differences from Redis 7.0
//! - **Field order.** Redis lists a small (listpack) hash's fields in insertion order; redraft
//!   keeps fields sorted by their bytes, so HKEYS, HVALS, HGETALL, HSCAN and HRANDFIELD list
//!   them in byte order. Both orders are unspecified by Redis's documentation.
//! - **HSCAN cursors.** A hash of at most [`SMALL_HASH_FIELDS`] fields is answered whole with
//!   cursor 0 whatever the cursor, as Redis answers a listpack hash. A larger hash is walked in
//!   field order: the cursor is the first 8 bytes (zero-padded, big-endian) of the next field to
//!   return, so it survives concurrent inserts and deletes. A step returns about COUNT fields
//!   and never ends inside the group of fields sharing its starting 8-byte prefix, so it always
//!   makes progress (fields sharing long prefixes make larger steps); fields of a group split
//!   between two steps may be returned twice, which SCAN's contract allows. Redis returns fewer or more fields per step for a hashtable hash.
//! - **HRANDFIELD with a negative count** (repeats allowed) answers at most
//!   [`MAX_RANDOM_REPEATS`] elements instead of building an unbounded reply; picking a field
//!   costs a walk of the hash (the store has no index by rank), as does HRANDFIELD without a
//!   count. Random choices come from [`Keyspace::random_seed`], never from a clock.
//! - **HINCRBYFLOAT** computes in an exact software model of x87's 80-bit `long double`
//!   ([`crate::redis::long_double`]): parsing as glibc's `strtold`, adding with round-to-nearest-even and
//!   printing as `%.17Lf`, so replies match Redis on x86-64 byte for byte and every replica
//!   computes the same bits. (Redis built where `long double` is another format, e.g. 128-bit
//!   on aarch64, prints differently in the last digits.)

use bytes::Bytes;

use super::ReplySize::{Data, Small};
use super::{
    KeyspaceCommand, SplitMix, command, int_arg, parse_cursor, random_count, scan_options,
    scan_reply, typed_record,
};
use crate::redis::glob::glob_match;
use crate::redis::table;
use crate::resp::Reply;
use crate::resp::string2ll;
use crate::store::keyspace::{Keyspace, Kind, Record, StoreResult};
use crate::store::notify::{GENERIC, HASH};

/// A hash with at most this many fields is answered whole by HSCAN (Redis's default
/// `hash-max-listpack-entries`).
pub const SMALL_HASH_FIELDS: u64 = 128;

/// The most elements HRANDFIELD answers with a negative count.
pub const MAX_RANDOM_REPEATS: u64 = 1_000_000;

/// Fields read from the store per page when walking a hash.
const PAGE: usize = 1024;

/// The hash commands: one line each (see [`KeyspaceCommand`]).
pub const COMMANDS: &[KeyspaceCommand] = &[
    command("hset", |ks, args| hset(ks, "hset", args), Small),
    command("hmset", |ks, args| hset(ks, "hmset", args), Small),
    command(
        "hsetnx",
        |ks, args| hsetnx(ks, &args[1], &args[2], &args[3]),
        Small,
    ),
    command("hget", hget, Data),
    command("hmget", |ks, args| hmget(ks, &args[1], &args[2..]), Data),
    command("hdel", |ks, args| hdel(ks, &args[1], &args[2..]), Small),
    command("hexists", hexists, Small),
    command("hlen", hlen, Small),
    command("hstrlen", hstrlen, Small),
    command("hkeys", |ks, args| hgetall(ks, "hkeys", &args[1]), Data),
    command("hvals", |ks, args| hgetall(ks, "hvals", &args[1]), Data),
    command("hgetall", |ks, args| hgetall(ks, "hgetall", &args[1]), Data),
    command(
        "hincrby",
        |ks, args| hincrby(ks, &args[1], &args[2], &args[3]),
        Small,
    ),
    command(
        "hincrbyfloat",
        |ks, args| hincrbyfloat(ks, &args[1], &args[2], &args[3]),
        Small,
    ),
    command("hrandfield", hrandfield, Data),
    command("hscan", hscan, Data),
];

fn hget(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let key = &args[1];
    Ok(match hash(ks, key)? {
        Err(reply) => reply,
        Ok(None) => Reply::Nil,
        Ok(Some(_)) => ks.field(key, &args[2])?.map_or(Reply::Nil, Reply::Bulk),
    })
}

fn hexists(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let key = &args[1];
    Ok(match hash(ks, key)? {
        Err(reply) => reply,
        Ok(None) => Reply::Integer(0),
        Ok(Some(_)) => Reply::Integer(i64::from(ks.field(key, &args[2])?.is_some())),
    })
}

fn hlen(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    Ok(match hash(ks, &args[1])? {
        Err(reply) => reply,
        Ok(record) => Reply::Integer(record.map_or(0, |r| count_i64(r.field_count()))),
    })
}

fn hstrlen(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let key = &args[1];
    Ok(match hash(ks, key)? {
        Err(reply) => reply,
        Ok(None) => Reply::Integer(0),
        Ok(Some(_)) => Reply::Integer(
            ks.field(key, &args[2])?
                .map_or(0, |v| count_i64(v.len() as u64)),
        ),
    })
}

/// The live record of a hash key, or WRONGTYPE.
fn hash<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
) -> StoreResult<Result<Option<Record>, Reply>> {
    typed_record(ks, key, Kind::Hash)
}

fn count_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn hset<K: Keyspace + ?Sized>(ks: &mut K, name: &str, args: &[Bytes]) -> StoreResult<Reply> {
    // The name, the key and field-value pairs: an even count.
    if !args.len().is_multiple_of(2) {
        return Ok(table::wrong_arity_error_for(name));
    }
    let key = &args[1];
    if let Err(reply) = hash(ks, key)? {
        return Ok(reply);
    }
    let mut created = 0;
    for pair in args[2..].chunks_exact(2) {
        if ks.put_field(key, &pair[0], &pair[1])? {
            created += 1;
        }
    }
    ks.notify(HASH, "hset", key);
    Ok(if name == "hmset" {
        Reply::ok()
    } else {
        Reply::Integer(created)
    })
}

fn hsetnx<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
    field: &[u8],
    value: &[u8],
) -> StoreResult<Reply> {
    Ok(match hash(ks, key)? {
        Err(reply) => reply,
        Ok(Some(_)) if ks.field(key, field)?.is_some() => Reply::Integer(0),
        Ok(_) => {
            ks.put_field(key, field, value)?;
            ks.notify(HASH, "hset", key);
            Reply::Integer(1)
        }
    })
}

fn hmget<K: Keyspace + ?Sized>(ks: &mut K, key: &[u8], fields: &[Bytes]) -> StoreResult<Reply> {
    let exists = match hash(ks, key)? {
        Err(reply) => return Ok(reply),
        Ok(record) => record.is_some(),
    };
    let mut out = Vec::with_capacity(fields.len());
    for field in fields {
        out.push(if exists {
            ks.field(key, field)?.map_or(Reply::Nil, Reply::Bulk)
        } else {
            Reply::Nil
        });
    }
    Ok(Reply::Array(out))
}

fn hdel<K: Keyspace + ?Sized>(ks: &mut K, key: &[u8], fields: &[Bytes]) -> StoreResult<Reply> {
    match hash(ks, key)? {
        Err(reply) => return Ok(reply),
        Ok(None) => return Ok(Reply::Integer(0)),
        Ok(Some(_)) => {}
    }
    let mut deleted = 0;
    for field in fields {
        // The hash goes with its last field; later deletes then find nothing.
        if ks.delete_field(key, field)? {
            deleted += 1;
        }
    }
    if deleted > 0 {
        ks.notify(HASH, "hdel", key);
        if ks.record(key)?.is_none() {
            ks.notify(GENERIC, "del", key);
        }
    }
    Ok(Reply::Integer(deleted))
}

fn hgetall<K: Keyspace + ?Sized>(ks: &mut K, name: &str, key: &[u8]) -> StoreResult<Reply> {
    let fields = match hash(ks, key)? {
        Err(reply) => return Ok(reply),
        Ok(None) => Vec::new(),
        Ok(Some(_)) => ks.fields(key, None, usize::MAX)?,
    };
    Ok(match name {
        "hkeys" => Reply::Array(fields.into_iter().map(|(f, _)| Reply::Bulk(f)).collect()),
        "hvals" => Reply::Array(fields.into_iter().map(|(_, v)| Reply::Bulk(v)).collect()),
        _ => Reply::Map(
            fields
                .into_iter()
                .map(|(f, v)| (Reply::Bulk(f), Reply::Bulk(v)))
                .collect(),
        ),
    })
}

fn hincrby<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
    field: &[u8],
    increment: &[u8],
) -> StoreResult<Reply> {
    let increment = match int_arg(increment) {
        Ok(n) => n,
        Err(reply) => return Ok(reply),
    };
    if let Err(reply) = hash(ks, key)? {
        return Ok(reply);
    }
    let current = match ks.field(key, field)? {
        Some(value) => match string2ll(&value) {
            Some(n) => n,
            None => return Ok(Reply::error("ERR hash value is not an integer")),
        },
        None => 0,
    };
    let Some(new) = current.checked_add(increment) else {
        return Ok(Reply::error("ERR increment or decrement would overflow"));
    };
    let mut digits = itoa::Buffer::new();
    ks.put_field(key, field, digits.format(new).as_bytes())?;
    ks.notify(HASH, "hincrby", key);
    Ok(Reply::Integer(new))
}

fn hincrbyfloat<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
    field: &[u8],
    increment: &[u8],
) -> StoreResult<Reply> {
    use crate::redis::long_double::{self, LongDouble, Parsed};
    let increment = match long_double::parse(increment) {
        Some(Parsed::Finite(n)) => n,
        Some(Parsed::Infinite) => return Ok(Reply::error("ERR value is NaN or Infinity")),
        None => return Ok(Reply::error("ERR value is not a valid float")),
    };
    if let Err(reply) = hash(ks, key)? {
        return Ok(reply);
    }
    let current = match ks.field(key, field)? {
        Some(value) => match long_double::parse(&value) {
            Some(Parsed::Finite(n)) => Some(n),
            Some(Parsed::Infinite) => None,
            None => return Ok(Reply::error("ERR hash value is not a float")),
        },
        None => Some(LongDouble::ZERO),
    };
    let Some(sum) = current.and_then(|current| current.checked_add(increment)) else {
        return Ok(Reply::error("ERR increment would produce NaN or Infinity"));
    };
    let text = sum.format_human();
    ks.put_field(key, field, text.as_bytes())?;
    ks.notify(HASH, "hincrbyfloat", key);
    Ok(Reply::Bulk(Bytes::from(text)))
}

/// The fields at the given positions (sorted, distinct) of a hash in field order, in one walk.
fn fields_at<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
    positions: &[u64],
) -> StoreResult<Vec<(Bytes, Bytes)>> {
    let mut out = Vec::with_capacity(positions.len());
    let mut after: Option<Bytes> = None;
    let mut position = 0u64;
    let mut wanted = positions.iter().peekable();
    while wanted.peek().is_some() {
        let page = ks.fields(key, after.as_deref(), PAGE)?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = Some(last.clone());
        for pair in page {
            if wanted.peek() == Some(&&position) {
                wanted.next();
                out.push(pair);
            }
            position += 1;
        }
    }
    Ok(out)
}

/// The reply of HRANDFIELD with a count: fields, or field-value pairs (flat in RESP2, an array
/// of pairs in RESP3, as Redis answers).
fn random_reply(picked: Vec<(Bytes, Bytes)>, with_values: bool) -> Reply {
    if with_values {
        Reply::Pairs(
            picked
                .into_iter()
                .map(|(field, value)| (Reply::Bulk(field), Reply::Bulk(value)))
                .collect(),
        )
    } else {
        Reply::Array(
            picked
                .into_iter()
                .map(|(field, _)| Reply::Bulk(field))
                .collect(),
        )
    }
}

fn hrandfield(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let key = &args[1];
    let Some(_) = args.get(2) else {
        let size = match hash(ks, key)? {
            Err(reply) => return Ok(reply),
            Ok(None) => return Ok(Reply::Nil),
            Ok(Some(record)) => record.field_count(),
        };
        if size == 0 {
            return Ok(Reply::Nil);
        }
        let position = SplitMix(ks.random_seed()).below(size);
        return Ok(fields_at(ks, key, &[position])?
            .pop()
            .map_or(Reply::Nil, |(field, _)| Reply::Bulk(field)));
    };
    let (count, with_values) = match random_count(args, Some("withvalues")) {
        Ok(parsed) => parsed,
        Err(reply) => return Ok(reply),
    };
    let size = match hash(ks, key)? {
        Err(reply) => return Ok(reply),
        Ok(None) => return Ok(Reply::Array(Vec::new())),
        Ok(Some(record)) => record.field_count(),
    };
    if count == 0 || size == 0 {
        return Ok(Reply::Array(Vec::new()));
    }
    let wanted = count.unsigned_abs();
    let mut rng = SplitMix(ks.random_seed());
    if count < 0 {
        // Repeats allowed, in the order picked.
        if wanted > MAX_RANDOM_REPEATS {
            return Ok(Reply::error(format!(
                "ERR HRANDFIELD with a negative count answers at most {MAX_RANDOM_REPEATS} \
                 elements"
            )));
        }
        let picks: Vec<u64> = (0..wanted).map(|_| rng.below(size)).collect();
        let mut positions = picks.clone();
        positions.sort_unstable();
        positions.dedup();
        let found = fields_at(ks, key, &positions)?;
        let picked = picks
            .iter()
            .filter_map(|p| positions.binary_search(p).ok())
            .filter_map(|i| found.get(i).cloned())
            .collect();
        return Ok(random_reply(picked, with_values));
    }
    if wanted >= size {
        return Ok(random_reply(ks.fields(key, None, usize::MAX)?, with_values));
    }
    // `wanted` distinct positions (Floyd's algorithm), answered in field order.
    let mut chosen = std::collections::BTreeSet::new();
    for upper in size - wanted..size {
        let pick = rng.below(upper + 1);
        if !chosen.insert(pick) {
            chosen.insert(upper);
        }
    }
    let positions: Vec<u64> = chosen.into_iter().collect();
    Ok(random_reply(fields_at(ks, key, &positions)?, with_values))
}

/// The HSCAN position of a field: its first 8 bytes, zero-padded, big-endian.
fn field_cursor(field: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let n = field.len().min(8);
    bytes[..n].copy_from_slice(&field[..n]);
    u64::from_be_bytes(bytes)
}

/// One HSCAN step over a large hash (see the module docs): fields whose [`field_cursor`] is
/// at least `cursor`, about `count` of them, and the next cursor (0 at the end).
fn scan_fields<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
    cursor: u64,
    count: usize,
) -> StoreResult<(Vec<(Bytes, Bytes)>, u64)> {
    // The fields at or after `cursor` are exactly those at or after this byte string.
    let start_bytes = cursor.to_be_bytes();
    let keep = start_bytes
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i + 1);
    let start = &start_bytes[..keep];
    let mut out = Vec::new();
    let mut after = None;
    if !start.is_empty() {
        if let Some(value) = ks.field(key, start)? {
            out.push((Bytes::copy_from_slice(start), value));
        }
        after = Some(Bytes::copy_from_slice(start));
    }
    let page_size = count.saturating_add(1).min(PAGE);
    loop {
        let page = ks.fields(key, after.as_deref(), page_size)?;
        let Some((last, _)) = page.last() else {
            return Ok((out, 0));
        };
        after = Some(last.clone());
        for (field, value) in page {
            if out.len() >= count {
                let next = field_cursor(&field);
                if next > cursor {
                    return Ok((out, next));
                }
            }
            out.push((field, value));
        }
    }
}

fn hscan(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let key = &args[1];
    let Some(cursor) = parse_cursor(&args[2]) else {
        return Ok(Reply::error("ERR invalid cursor"));
    };
    let size = match hash(ks, key)? {
        Err(reply) => return Ok(reply),
        Ok(None) => {
            return Ok(Reply::Array(vec![
                Reply::bulk_str("0"),
                Reply::Array(Vec::new()),
            ]));
        }
        Ok(Some(record)) => record.field_count(),
    };
    let (count, pattern) = match scan_options(&args[3..]) {
        Ok(options) => options,
        Err(reply) => return Ok(reply),
    };
    let (fields, next) = if size <= SMALL_HASH_FIELDS {
        (ks.fields(key, None, usize::MAX)?, 0)
    } else {
        scan_fields(ks, key, cursor, count)?
    };
    let mut items = Vec::with_capacity(fields.len() * 2);
    for (field, value) in fields {
        if pattern.is_none_or(|p| glob_match(p, &field, false)) {
            items.push(Reply::Bulk(field));
            items.push(Reply::Bulk(value));
        }
    }
    Ok(scan_reply(next, items))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::{Protocol, Reply};
    use crate::store::commands::execute as run;
    use crate::store::keyspace::testing::TestStore;
    use bytes::BytesMut;

    fn db() -> TestStore {
        TestStore::new()
    }

    fn args(line: &[&[u8]]) -> Vec<Bytes> {
        line.iter().map(|a| Bytes::copy_from_slice(a)).collect()
    }

    /// Runs `line` in a fresh write transaction at log index `index`.
    fn exec(db: &TestStore, index: u64, line: &[&[u8]]) -> Reply {
        db.write(1_000, index, |view| run(view, &args(line)).expect("store"))
    }

    fn encoded(reply: &Reply, protocol: Protocol) -> Vec<u8> {
        let mut out = BytesMut::new();
        reply.encode(protocol, &mut out);
        out.to_vec()
    }

    fn bulks(reply: Reply) -> Vec<Bytes> {
        match reply {
            Reply::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    Reply::Bulk(b) => b,
                    other => panic!("not a bulk: {other:?}"),
                })
                .collect(),
            other => panic!("not an array: {other:?}"),
        }
    }

    fn fill(db: &TestStore, key: &[u8], n: usize) {
        fill_prefixed(db, key, n, "f");
    }

    fn fill_prefixed(db: &TestStore, key: &[u8], n: usize, prefix: &str) {
        let mut line: Vec<Vec<u8>> = vec![b"HSET".to_vec(), key.to_vec()];
        for i in 0..n {
            line.push(format!("{prefix}{i:05}").into_bytes());
            line.push(format!("v{i}").into_bytes());
        }
        let line: Vec<&[u8]> = line.iter().map(Vec::as_slice).collect();
        assert_eq!(exec(db, 1, &line), Reply::Integer(n as i64));
    }

    #[test]
    fn hrandfield_is_deterministic_for_a_log_index() {
        let db = db();
        fill(&db, b"h", 50);
        for line in [
            &[&b"HRANDFIELD"[..], b"h"][..],
            &[b"HRANDFIELD", b"h", b"5"],
            &[b"HRANDFIELD", b"h", b"-20", b"WITHVALUES"],
        ] {
            let first = exec(&db, 7, line);
            assert_eq!(exec(&db, 7, line), first);
            let others: Vec<Reply> = (8..40).map(|i| exec(&db, i, line)).collect();
            assert!(others.iter().any(|r| *r != first), "{line:?} never varies");
        }
    }

    #[test]
    fn hrandfield_counts() {
        let db = db();
        fill(&db, b"h", 50);
        let unique = bulks(exec(&db, 2, &[b"HRANDFIELD", b"h", b"20"]));
        assert_eq!(unique.len(), 20);
        assert!(
            unique.windows(2).all(|w| w[0] < w[1]),
            "distinct, field order"
        );
        let all = bulks(exec(&db, 2, &[b"HRANDFIELD", b"h", b"50"]));
        assert_eq!(all.len(), 50);
        let repeats = bulks(exec(&db, 2, &[b"HRANDFIELD", b"h", b"-200"]));
        assert_eq!(repeats.len(), 200);
        assert!(repeats.iter().all(|f| all.contains(f)));
        let Reply::Pairs(pairs) = exec(&db, 3, &[b"HRANDFIELD", b"h", b"-7", b"WITHVALUES"]) else {
            panic!("WITHVALUES answers pairs");
        };
        assert_eq!(pairs.len(), 7);
        for (field, value) in pairs {
            let (Reply::Bulk(field), Reply::Bulk(value)) = (field, value) else {
                panic!("pairs of bulks");
            };
            let i: usize = std::str::from_utf8(&field[1..]).unwrap().parse().unwrap();
            assert_eq!(value, format!("v{i}").as_bytes());
        }
        let too_many = exec(&db, 2, &[b"HRANDFIELD", b"h", b"-1000001"]);
        assert!(too_many.is_error());
        let single = exec(&db, 2, &[b"HRANDFIELD", b"h"]);
        assert!(matches!(single, Reply::Bulk(ref f) if all.contains(f)));
    }

    #[test]
    fn hrandfield_withvalues_is_flat_in_resp2_and_pairs_in_resp3() {
        let db = db();
        exec(&db, 1, &[b"HSET", b"h", b"f", b"v"]);
        let reply = exec(&db, 2, &[b"HRANDFIELD", b"h", b"1", b"WITHVALUES"]);
        assert_eq!(
            encoded(&reply, Protocol::Resp2),
            b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n".to_vec()
        );
        assert_eq!(
            encoded(&reply, Protocol::Resp3),
            b"*1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n".to_vec()
        );
    }

    fn scan_all(db: &TestStore, key: &[u8], count: &[u8]) -> (Vec<Bytes>, usize) {
        let mut cursor = b"0".to_vec();
        let mut seen = Vec::new();
        let mut steps = 0;
        loop {
            let reply = exec(db, 5, &[b"HSCAN", key, &cursor, b"COUNT", count]);
            let Reply::Array(mut parts) = reply else {
                panic!("not an array");
            };
            let items = bulks(parts.pop().unwrap());
            let Some(Reply::Bulk(next)) = parts.pop() else {
                panic!("no cursor");
            };
            seen.extend(items.chunks(2).map(|pair| pair[0].clone()));
            steps += 1;
            assert!(steps < 10_000, "no progress");
            if next.as_ref() == b"0" {
                return (seen, steps);
            }
            cursor = next.to_vec();
        }
    }

    #[test]
    fn hscan_walks_a_large_hash_with_a_cursor() {
        let db = db();
        fill(&db, b"h", 1000);
        let distinct = |mut seen: Vec<Bytes>| {
            seen.sort();
            seen.dedup();
            seen.len()
        };
        let (seen, steps) = scan_all(&db, b"h", b"10");
        assert!(steps > 10, "a large hash takes several steps");
        assert_eq!(seen.len(), 1000, "short fields: no field twice");
        assert_eq!(distinct(seen), 1000, "every field at least once");
        // Fields sharing their first 8 bytes in groups of 10 ("fld:0000x") or all together
        // ("field:00xxx"): a step that starts in a group takes all of it, so walks end.
        fill_prefixed(&db, b"groups", 1000, "fld:");
        fill_prefixed(&db, b"one-group", 1000, "field:");
        for count in [&b"1"[..], b"10", b"99", b"1000"] {
            let (seen, steps) = scan_all(&db, b"groups", count);
            assert_eq!(distinct(seen), 1000, "COUNT {count:?}");
            assert!(steps <= 101);
            let (seen, steps) = scan_all(&db, b"one-group", count);
            assert_eq!(distinct(seen), 1000, "COUNT {count:?}");
            assert!(steps <= 2);
        }
        // A small hash is answered whole whatever the cursor.
        fill(&db, b"small", 100);
        let reply = exec(&db, 5, &[b"HSCAN", b"small", b"12345", b"COUNT", b"1"]);
        let Reply::Array(parts) = reply else {
            panic!("not an array");
        };
        assert_eq!(parts[0], Reply::bulk_str("0"));
        assert_eq!(bulks(parts[1].clone()).len(), 200);
    }

    #[test]
    fn hscan_cursor_survives_deletes_and_binary_fields() {
        let db = db();
        fill(&db, b"h", 300);
        for field in [
            &b""[..],
            b"\x00",
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x01",
            b"\xff",
        ] {
            exec(&db, 1, &[b"HSET", b"h", field, b"x"]);
        }
        let reply = exec(&db, 5, &[b"HSCAN", b"h", b"0", b"COUNT", b"150"]);
        let Reply::Array(parts) = reply else {
            panic!("not an array");
        };
        let Reply::Bulk(cursor) = parts[0].clone() else {
            panic!("no cursor");
        };
        let first: Vec<Bytes> = bulks(parts[1].clone())
            .chunks(2)
            .map(|p| p[0].clone())
            .collect();
        assert!(first.contains(&Bytes::from_static(b"")));
        // Delete fields already returned; the rest still comes back.
        for field in &first[..100] {
            exec(&db, 6, &[b"HDEL", b"h", field]);
        }
        let mut rest = Vec::new();
        let mut cursor = cursor.to_vec();
        while cursor != b"0" {
            let Reply::Array(parts) = exec(&db, 7, &[b"HSCAN", b"h", &cursor]) else {
                panic!("not an array");
            };
            rest.extend(bulks(parts[1].clone()).chunks(2).map(|p| p[0].clone()));
            let Reply::Bulk(next) = parts[0].clone() else {
                panic!("no cursor");
            };
            cursor = next.to_vec();
        }
        let everything = bulks(exec(&db, 8, &[b"HKEYS", b"h"]));
        for field in everything {
            assert!(
                first.contains(&field) || rest.contains(&field),
                "{field:?} missed"
            );
        }
    }

    #[test]
    fn cursor_parsing_follows_strtoul() {
        assert_eq!(parse_cursor(b""), Some(0));
        assert_eq!(parse_cursor(b"-1"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"+5"), Some(5));
        assert_eq!(parse_cursor(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"18446744073709551616"), None);
        assert_eq!(parse_cursor(b" 5"), None);
        assert_eq!(parse_cursor(b"5 "), None);
        assert_eq!(parse_cursor(b"-"), None);
        assert_eq!(parse_cursor(b"5\x00x"), Some(5));
    }

    #[test]
    fn large_hash_commands() {
        let db = db();
        fill(&db, b"h", 2000);
        assert_eq!(exec(&db, 2, &[b"HLEN", b"h"]), Reply::Integer(2000));
        assert_eq!(bulks(exec(&db, 2, &[b"HKEYS", b"h"])).len(), 2000);
        let Reply::Map(pairs) = exec(&db, 2, &[b"HGETALL", b"h"]) else {
            panic!("not a map");
        };
        assert_eq!(pairs.len(), 2000);
        let mut del: Vec<Vec<u8>> = vec![b"HDEL".to_vec(), b"h".to_vec()];
        del.extend((0..2000).map(|i| format!("f{i:05}").into_bytes()));
        del.push(b"f00000".to_vec());
        let del: Vec<&[u8]> = del.iter().map(Vec::as_slice).collect();
        assert_eq!(exec(&db, 3, &del), Reply::Integer(2000));
        assert_eq!(exec(&db, 3, &[b"EXISTS", b"h"]), Reply::Integer(0));
    }

    fn arb_arg() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        prop_oneof![
            prop::sample::select(vec![
                &b"h"[..],
                b"s",
                b"a",
                b"0",
                b"1",
                b"-1",
                b"10",
                b"1.5",
                b"-0",
                b"inf",
                b"",
                b"WITHVALUES",
                b"COUNT",
                b"MATCH",
                b"*",
                b"9223372036854775807",
                b"-9223372036854775808",
                b"0x1p3",
                b"1e4932",
            ])
            .prop_map(<[u8]>::to_vec),
            prop::collection::vec(any::<u8>(), 0..12),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 300,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// Any arguments to any hash command: a reply, never a panic or a storage error.
        #[test]
        fn hash_commands_prop_never_fail(
            names in proptest::collection::vec(0..16usize, 1..8),
            lines in proptest::collection::vec(proptest::collection::vec(arb_arg(), 0..6), 8),
        ) {
            const NAMES: [&str; 16] = [
                "hset", "hsetnx", "hget", "hmget", "hmset", "hdel", "hexists", "hlen",
                "hstrlen", "hkeys", "hvals", "hgetall", "hincrby", "hincrbyfloat",
                "hrandfield", "hscan",
            ];
            let db = db();
            exec(&db, 1, &[b"SET", b"s", b"v"]);
            exec(&db, 1, &[b"HSET", b"h", b"a", b"1", b"b", b"x"]);
            for (i, name) in names.iter().enumerate() {
                let mut line: Vec<&[u8]> = vec![NAMES[*name].as_bytes()];
                line.extend(lines[i].iter().map(Vec::as_slice));
                exec(&db, i as u64 + 2, &line);
            }
        }

        /// Any text to the float parser and the cursor parser: no panic.
        #[test]
        fn parsers_prop_never_panic(text in proptest::collection::vec(any_ascii_float(), 0..40)) {
            let text: Vec<u8> = text.into_iter().collect();
            if let Some(crate::redis::long_double::Parsed::Finite(n)) =
                crate::redis::long_double::parse(&text)
            {
                let printed = n.format_human();
                proptest::prop_assert!(crate::redis::long_double::parse(printed.as_bytes()).is_some());
            }
            parse_cursor(&text);
        }
    }

    fn any_ascii_float() -> impl proptest::strategy::Strategy<Value = u8> {
        proptest::sample::select(b"0123456789.eEpPxX+-infa \x00".to_vec())
    }
}
