//! Key commands: DEL, UNLINK, EXISTS, DBSIZE, FLUSHDB/FLUSHALL, TYPE; expiry (EXPIRE, PEXPIRE,
//! EXPIREAT, PEXPIREAT, TTL, PTTL, EXPIRETIME, PEXPIRETIME, PERSIST); iteration (KEYS, SCAN,
//! RANDOMKEY); RENAME, RENAMENX, COPY, TOUCH and OBJECT.
//!
//! Replies and error texts are Redis 7.0's, with these deliberate differences:
//! - SCAN cursors are positions in redraft's own hash order ([`Keyspace::scan`]), so cursor
//!   values and the order of keys differ from Redis's (the guarantees are the same: every key
//!   present for the whole iteration is returned, a step does bounded work); KEYS answers in key
//!   order rather than Redis's hash-table order.
//! - `COPY … DB n` with n ≠ 0 answers `ERR DB index is out of range`, as Redis configured with
//!   one database does: there is one keyspace (as for `SELECT`).
//! - RANDOMKEY draws from the SCAN order (a window at a random point), not uniformly.
//! - OBJECT IDLETIME is always 0 (access times are not tracked: reads do not go through the
//!   log; Redis answers the server's age for shared integers 0–9999). OBJECT ENCODING is
//!   derived from the value as it is now, as SET/HSET would have stored it: Redis keeps a
//!   hash that once outgrew listpack as a hashtable, and a string built by APPEND or SETRANGE
//!   as raw.
//! - A deadline of `i64::MAX` ms is kept as `i64::MAX - 1` (the record format reserves
//!   `i64::MAX` for "no expiry").

use std::ops::Bound;

use bytes::Bytes;

use super::ReplySize::{Data, Small};
use super::{KeyspaceCommand, c_str, command, int_arg, parse_cursor, syntax_error};
use crate::redis::glob::glob_match;
use crate::resp::Reply;
use crate::resp::string2ll;
use crate::store::keyspace::{Keyspace, Kind, Record, StoreResult};
use crate::store::notify::GENERIC;

/// Keys read per storage call while KEYS or RANDOMKEY walk the keyspace.
const WALK_BATCH: usize = 512;
/// Keys RANDOMKEY draws among, at its random point.
const RANDOM_WINDOW: usize = 32;
/// Hash fields moved per storage call by RENAME and COPY.
const FIELD_BATCH: usize = 256;
/// Longest string Redis stores as `embstr` (`OBJ_ENCODING_EMBSTR_SIZE_LIMIT`).
const EMBSTR_MAX: usize = 44;
/// Integers in `0..SHARED_INTEGERS` are Redis's shared objects (`OBJ_SHARED_INTEGERS`).
const SHARED_INTEGERS: i64 = 10_000;
/// The reference count Redis reports for shared objects (`OBJ_SHARED_REFCOUNT`, `INT_MAX`).
const SHARED_REFCOUNT: i64 = i32::MAX as i64;

/// The key commands: one line each (see [`KeyspaceCommand`]).
pub const COMMANDS: &[KeyspaceCommand] = &[
    command("del", delete, Small),
    command("unlink", delete, Small),
    command("exists", count_existing, Small),
    command("touch", count_existing, Small),
    command(
        "dbsize",
        |ks, _| Ok(Reply::Integer(live_key_count(ks)? as i64)),
        Small,
    ),
    command("flushdb", flush, Small),
    command("flushall", flush, Small),
    command("type", key_type, Small),
    command(
        "expire",
        |ks, args| expire(ks, "expire", args, true, true),
        Small,
    ),
    command(
        "pexpire",
        |ks, args| expire(ks, "pexpire", args, false, true),
        Small,
    ),
    command(
        "expireat",
        |ks, args| expire(ks, "expireat", args, true, false),
        Small,
    ),
    command(
        "pexpireat",
        |ks, args| expire(ks, "pexpireat", args, false, false),
        Small,
    ),
    command("ttl", |ks, args| ttl(ks, &args[1], false, false), Small),
    command("pttl", |ks, args| ttl(ks, &args[1], true, false), Small),
    command(
        "expiretime",
        |ks, args| ttl(ks, &args[1], false, true),
        Small,
    ),
    command(
        "pexpiretime",
        |ks, args| ttl(ks, &args[1], true, true),
        Small,
    ),
    command("persist", persist, Small),
    command("keys", |ks, args| keys(ks, &args[1]), Data),
    command("scan", scan, Data),
    command("randomkey", |ks, _| random_key(ks), Data),
    command(
        "rename",
        |ks, args| rename(ks, &args[1], &args[2], false),
        Small,
    ),
    command(
        "renamenx",
        |ks, args| rename(ks, &args[1], &args[2], true),
        Small,
    ),
    command("copy", copy, Small),
    command("object|help", |_, _| Ok(object_help()), Small),
    command("object|encoding", object_encoding, Small),
    command("object|refcount", object_refcount, Small),
    command(
        "object|idletime",
        |ks, args| object_of(ks, args, |_| Reply::Integer(0)),
        Small,
    ),
    command("object|freq", object_freq, Small),
];

/// DEL and UNLINK.
fn delete(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let mut removed = 0;
    for key in &args[1..] {
        if ks.delete(key)? {
            ks.notify(GENERIC, "del", key);
            removed += 1;
        }
    }
    Ok(Reply::Integer(removed))
}

/// EXISTS and TOUCH.
fn count_existing(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let mut count = 0;
    for key in &args[1..] {
        if ks.record(key)?.is_some() {
            count += 1;
        }
    }
    Ok(Reply::Integer(count))
}

/// FLUSHDB and FLUSHALL, `[SYNC|ASYNC]` (both flush at once).
fn flush(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    if let Some(mode) = args.get(1) {
        let ok = mode.eq_ignore_ascii_case(b"sync") || mode.eq_ignore_ascii_case(b"async");
        if !ok || args.len() > 2 {
            return Ok(syntax_error());
        }
    }
    ks.flush()?;
    Ok(Reply::ok())
}

fn key_type(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    Ok(Reply::Simple(Bytes::from_static(
        match ks.record(&args[1])? {
            Some(record) => record.kind.name(),
            None => "none",
        }
        .as_bytes(),
    )))
}

fn persist(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    Ok(Reply::Integer(match ks.record(&args[1])? {
        Some(Record {
            expire_at_ms: Some(_),
            ..
        }) => {
            let changed = ks.set_expiry(&args[1], None)?;
            if changed {
                ks.notify(GENERIC, "persist", &args[1]);
            }
            i64::from(changed)
        }
        _ => 0,
    }))
}

/// Keys that are live now: the stored count, less those past their deadline but not yet
/// removed by active expiry.
pub fn live_key_count<K: Keyspace + ?Sized>(ks: &mut K) -> StoreResult<u64> {
    let stored = ks.stored_key_count()?;
    let expired = ks.expired_key_count()?;
    Ok(stored.saturating_sub(expired))
}

/// `strcasecmp(arg, word) == 0`, as Redis compares option names.
fn c_eq(arg: &[u8], word: &str) -> bool {
    c_str(arg).eq_ignore_ascii_case(word.as_bytes())
}

/// An error reply from raw bytes; like Redis's `addReplyErrorFormat`, CR and LF become spaces.
fn error_bytes(mut text: Vec<u8>) -> Reply {
    for b in &mut text {
        if *b == b'\r' || *b == b'\n' {
            *b = b' ';
        }
    }
    Reply::Error(Bytes::from(text))
}

/// EXPIRE, PEXPIRE, EXPIREAT and PEXPIREAT (Redis's `expireGenericCommand`): `seconds` is the
/// argument's unit, `relative` whether it counts from now.
fn expire<K: Keyspace + ?Sized>(
    ks: &mut K,
    name: &str,
    args: &[Bytes],
    seconds: bool,
    relative: bool,
) -> StoreResult<Reply> {
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for option in &args[3..] {
        let option = c_str(option);
        match option.to_ascii_lowercase().as_slice() {
            b"nx" => nx = true,
            b"xx" => xx = true,
            b"gt" => gt = true,
            b"lt" => lt = true,
            _ => {
                let mut text = b"ERR Unsupported option ".to_vec();
                text.extend_from_slice(option);
                return Ok(error_bytes(text));
            }
        }
    }
    if nx && (xx || gt || lt) {
        return Ok(Reply::error(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if gt && lt {
        return Ok(Reply::error(
            "ERR GT and LT options at the same time are not compatible",
        ));
    }
    let mut when = match int_arg(&args[2]) {
        Ok(n) => n,
        Err(reply) => return Ok(reply),
    };
    let invalid = || Reply::error(format!("ERR invalid expire time in '{name}' command"));
    if seconds {
        match when.checked_mul(1000) {
            Some(ms) => when = ms,
            None => return Ok(invalid()),
        }
    }
    let base = if relative { ks.now_ms() } else { 0 };
    let Some(when) = when.checked_add(base) else {
        return Ok(invalid());
    };
    let key = &args[1];
    let Some(record) = ks.record(key)? else {
        return Ok(Reply::Integer(0));
    };
    let current = record.expire_at_ms;
    let refused = (nx && current.is_some())
        || (xx && current.is_none())
        || (gt && current.is_none_or(|current| when <= current))
        || (lt && current.is_some_and(|current| when >= current));
    if refused {
        return Ok(Reply::Integer(0));
    }
    if when <= ks.now_ms() {
        // A deadline already past deletes the key, and still answers 1.
        ks.delete(key)?;
        ks.notify(GENERIC, "del", key);
    } else {
        ks.set_expiry(key, Some(when.min(i64::MAX - 1)))?;
        ks.notify(GENERIC, "expire", key);
    }
    Ok(Reply::Integer(1))
}

/// TTL, PTTL, EXPIRETIME and PEXPIRETIME (Redis's `ttlGenericCommand`).
fn ttl<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
    millis: bool,
    absolute: bool,
) -> StoreResult<Reply> {
    let Some(record) = ks.record(key)? else {
        return Ok(Reply::Integer(-2));
    };
    let Some(deadline) = record.expire_at_ms else {
        return Ok(Reply::Integer(-1));
    };
    let ms = if absolute {
        deadline
    } else {
        deadline.saturating_sub(ks.now_ms())
    }
    .max(0);
    Ok(Reply::Integer(if millis {
        ms
    } else {
        // Redis rounds to the nearest second: (ms + 500) / 1000, computed without overflow.
        ((ms as u64 + 500) / 1000) as i64
    }))
}

/// KEYS: every live key matching `pattern`, in key order.
fn keys<K: Keyspace + ?Sized>(ks: &mut K, pattern: &[u8]) -> StoreResult<Reply> {
    let all = pattern == b"*";
    let mut out = Vec::new();
    let mut after: Option<Bytes> = None;
    loop {
        let batch = ks.keys_after(after.as_deref(), WALK_BATCH)?;
        let Some(last) = batch.last().cloned() else {
            break;
        };
        for key in batch {
            if (all || glob_match(pattern, &key, false)) && ks.record(&key)?.is_some() {
                out.push(Reply::Bulk(key));
            }
        }
        after = Some(last);
    }
    Ok(Reply::Array(out))
}

/// SCAN cursor [MATCH pattern] [COUNT count] [TYPE type].
fn scan(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let Some(cursor) = parse_cursor(&args[1]) else {
        return Ok(Reply::error("ERR invalid cursor"));
    };
    let mut count: i64 = 10;
    let mut pattern: Option<&[u8]> = None;
    let mut kind: Option<&[u8]> = None;
    let mut i = 2;
    while i < args.len() {
        let has_value = args.len() - i >= 2;
        let option = &args[i];
        if c_eq(option, "count") && has_value {
            count = match int_arg(&args[i + 1]) {
                Ok(n) if n < 1 => return Ok(syntax_error()),
                Ok(n) => n,
                Err(reply) => return Ok(reply),
            };
        } else if c_eq(option, "match") && has_value {
            let p = args[i + 1].as_ref();
            pattern = (p != b"*").then_some(p);
        } else if c_eq(option, "type") && has_value {
            kind = Some(c_str(&args[i + 1]));
        } else {
            return Ok(syntax_error());
        }
        i += 2;
    }
    let (candidates, next) = ks.scan(cursor, usize::try_from(count).unwrap_or(usize::MAX))?;
    let mut found = Vec::new();
    for key in candidates {
        if pattern.is_some_and(|p| !glob_match(p, &key, false)) {
            continue;
        }
        let Some(record) = ks.record(&key)? else {
            continue;
        };
        if kind.is_some_and(|k| !k.eq_ignore_ascii_case(record.kind.name().as_bytes())) {
            continue;
        }
        found.push(Reply::Bulk(key));
    }
    let mut digits = itoa::Buffer::new();
    Ok(Reply::Array(vec![
        Reply::Bulk(Bytes::copy_from_slice(digits.format(next).as_bytes())),
        Reply::Array(found),
    ]))
}

/// RANDOMKEY: a key drawn from a window of [`RANDOM_WINDOW`] keys at a random point of the
/// SCAN order; if that one has expired, the next live key after it (wrapping around once); nil
/// when there is none. The window evens out the hash order's clustering (keys that differ only
/// in their last bytes hash close together). Draws come from [`Keyspace::random_seed`], so
/// apply picks the same key on every replica.
fn random_key<K: Keyspace + ?Sized>(ks: &mut K) -> StoreResult<Reply> {
    let seed = ks.random_seed();
    let (start, draw) = (mix(seed), mix(seed ^ 0x9e37_79b9_7f4a_7c15));
    let (mut window, mut next) = ks.scan(start, RANDOM_WINDOW)?;
    if window.is_empty() {
        (window, next) = ks.scan(0, RANDOM_WINDOW)?;
    }
    if window.is_empty() {
        return Ok(Reply::Nil);
    }
    let first = (draw % window.len() as u64) as usize;
    for key in window[first..].iter().chain(&window[..first]) {
        if ks.record(key)?.is_some() {
            return Ok(Reply::Bulk(key.clone()));
        }
    }
    // Every key of the window has expired: walk on to the end, then once from the start.
    let mut wrapped = next == 0;
    let mut cursor = next;
    loop {
        let (batch, after) = ks.scan(cursor, WALK_BATCH)?;
        for key in batch {
            if ks.record(&key)?.is_some() {
                return Ok(Reply::Bulk(key));
            }
        }
        if after != 0 {
            cursor = after;
        } else if wrapped {
            return Ok(Reply::Nil);
        } else {
            wrapped = true;
            cursor = 0;
        }
    }
}

/// SplitMix64's finalizer: spreads a seed's bits over the whole word.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Writes `record` (the live value of `src`) to `dst`, which must not exist, with its deadline.
fn copy_value<K: Keyspace + ?Sized>(
    ks: &mut K,
    src: &[u8],
    dst: &[u8],
    record: &Record,
) -> StoreResult<()> {
    match record.kind {
        Kind::String => ks.put_string(dst, &record.payload, record.expire_at_ms),
        Kind::Hash => {
            let mut after: Option<Bytes> = None;
            loop {
                let batch = ks.fields(src, after.as_deref(), FIELD_BATCH)?;
                let Some((last, _)) = batch.last() else {
                    break;
                };
                let last = last.clone();
                for (field, value) in &batch {
                    ks.put_field(dst, field, value)?;
                }
                after = Some(last);
            }
            if let Some(deadline) = record.expire_at_ms {
                ks.set_expiry(dst, Some(deadline))?;
            }
            Ok(())
        }
        kind => {
            // Every row under the same sub-key, then the same record.
            for &rows in kind.element_rows() {
                let mut after: Option<Vec<u8>> = None;
                loop {
                    let mut batch: Vec<(Vec<u8>, Bytes)> = Vec::new();
                    ks.visit_elements(
                        rows,
                        src,
                        after.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
                        Bound::Unbounded,
                        false,
                        &mut |sub, value| {
                            batch.push((sub.to_vec(), value.clone()));
                            batch.len() < FIELD_BATCH
                        },
                    )?;
                    let Some((last, _)) = batch.last() else {
                        break;
                    };
                    after = Some(last.clone());
                    for (sub, value) in &batch {
                        ks.put_element(rows, dst, sub, value)?;
                    }
                }
            }
            ks.put_collection(dst, kind, &record.payload)?;
            if let Some(deadline) = record.expire_at_ms {
                ks.set_expiry(dst, Some(deadline))?;
            }
            Ok(())
        }
    }
}

/// RENAME and RENAMENX: the value and its deadline move to `dst`, replacing what was there
/// (RENAMENX: only when nothing was).
fn rename<K: Keyspace + ?Sized>(
    ks: &mut K,
    src: &[u8],
    dst: &[u8],
    nx: bool,
) -> StoreResult<Reply> {
    let Some(record) = ks.record(src)? else {
        return Ok(Reply::error("ERR no such key"));
    };
    let done = if nx { Reply::Integer(1) } else { Reply::ok() };
    if src == dst {
        return Ok(if nx { Reply::Integer(0) } else { done });
    }
    if nx && ks.record(dst)?.is_some() {
        return Ok(Reply::Integer(0));
    }
    ks.delete(dst)?;
    copy_value(ks, src, dst, &record)?;
    ks.delete(src)?;
    ks.notify(GENERIC, "rename_from", src);
    ks.notify(GENERIC, "rename_to", dst);
    Ok(done)
}

/// COPY source destination [DB destination-db] [REPLACE].
fn copy(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let mut replace = false;
    let mut j = 3;
    while j < args.len() {
        if c_eq(&args[j], "replace") {
            replace = true;
        } else if c_eq(&args[j], "db") && j + 1 < args.len() {
            let Some(db) = string2ll(&args[j + 1]) else {
                return Ok(super::not_an_integer());
            };
            if i32::try_from(db).is_err() {
                return Ok(Reply::error(
                    "ERR value is out of range, value must between -2147483648 and 2147483647",
                ));
            }
            if db != 0 {
                return Ok(Reply::error("ERR DB index is out of range"));
            }
            j += 1;
        } else {
            return Ok(syntax_error());
        }
        j += 1;
    }
    let (src, dst) = (&args[1], &args[2]);
    if src == dst {
        return Ok(Reply::error(
            "ERR source and destination objects are the same",
        ));
    }
    let Some(record) = ks.record(src)? else {
        return Ok(Reply::Integer(0));
    };
    if ks.record(dst)?.is_some() && !replace {
        return Ok(Reply::Integer(0));
    }
    ks.delete(dst)?;
    copy_value(ks, src, dst, &record)?;
    ks.notify(GENERIC, "copy_to", dst);
    Ok(Reply::Integer(1))
}

/// An OBJECT subcommand's answer about the key in `args[2]`: nil when it is missing.
fn object_of(
    ks: &mut dyn Keyspace,
    args: &[Bytes],
    answer: impl FnOnce(&Record) -> Reply,
) -> StoreResult<Reply> {
    Ok(ks
        .record(&args[2])?
        .map_or(Reply::Nil, |record| answer(&record)))
}

fn object_encoding(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let key = &args[2];
    Ok(match ks.record(key)? {
        Some(record) => Reply::bulk_str(encoding(ks, key, &record)?),
        None => Reply::Nil,
    })
}

fn object_refcount(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    object_of(ks, args, |record| {
        Reply::Integer(match (record.kind, shared_integer(record)) {
            (Kind::String, true) => SHARED_REFCOUNT,
            _ => 1,
        })
    })
}

fn object_freq(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    object_of(ks, args, |_| {
        Reply::error(
            "ERR An LFU maxmemory policy is not selected, access frequency not tracked. \
             Please note that when switching between policies at runtime LRU and LFU data \
             will take some time to adjust.",
        )
    })
}

/// Whether a string holds one of Redis's shared integers (0 to 9999).
fn shared_integer(record: &Record) -> bool {
    record.payload.len() <= 20
        && string2ll(&record.payload).is_some_and(|n| (0..SHARED_INTEGERS).contains(&n))
}

/// The encoding Redis would report for this value, as SET/HSET would have created it.
fn encoding<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
    record: &Record,
) -> StoreResult<&'static str> {
    Ok(match record.kind {
        Kind::String => {
            let value = &record.payload;
            if value.len() <= 20 && string2ll(value).is_some() {
                "int"
            } else if value.len() <= EMBSTR_MAX {
                "embstr"
            } else {
                "raw"
            }
        }
        Kind::Hash => {
            let entries = super::config::limit(ks, super::config::HASH_MAX_LISTPACK_ENTRIES)?;
            let value = super::config::limit(ks, super::config::HASH_MAX_LISTPACK_VALUE)?;
            let fits = |bytes: &Bytes| bytes.len() as u64 <= value;
            let small = record.field_count() <= entries
                && ks
                    .fields(key, None, entries.min(usize::MAX as u64) as usize)?
                    .iter()
                    .all(|(f, v)| fits(f) && fits(v));
            if small { "listpack" } else { "hashtable" }
        }
        Kind::List => super::lists::encoding(),
        Kind::Set => super::sets::encoding(record),
        Kind::ZSet => super::sorted_sets::encoding(record),
    })
}

/// OBJECT HELP, as Redis 7.0 words it.
fn object_help() -> Reply {
    const LINES: &[&str] = &[
        "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "ENCODING <key>",
        "    Return the kind of internal representation used in order to store the value",
        "    associated with a <key>.",
        "FREQ <key>",
        "    Return the access frequency index of the <key>. The returned integer is",
        "    proportional to the logarithm of the recent access frequency of the key.",
        "IDLETIME <key>",
        "    Return the idle time of the <key>, that is the approximated number of",
        "    seconds elapsed since the last access to the key.",
        "REFCOUNT <key>",
        "    Return the number of references of the value associated with the specified",
        "    <key>.",
        "HELP",
        "    Prints this help.",
    ];
    Reply::Array(LINES.iter().map(|line| Reply::simple(line)).collect())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashSet};

    use super::*;
    use crate::store::commands;
    use crate::store::keyspace::View;
    use crate::store::keyspace::testing::TestStore;

    /// A keyspace over an in-memory redb: writes apply like log entries (at `now` and a fresh
    /// revision), reads run on a read-only view at `now`.
    struct TestDb {
        db: TestStore,
        revision: u64,
        now: i64,
    }

    fn args(words: &[&[u8]]) -> Vec<Bytes> {
        words.iter().map(|w| Bytes::copy_from_slice(w)).collect()
    }

    fn bulk(text: &str) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(text.as_bytes()))
    }

    impl TestDb {
        fn new() -> TestDb {
            TestDb {
                db: TestStore::new(),
                revision: 0,
                now: 1_000_000,
            }
        }

        fn with_write<T>(&mut self, f: impl FnOnce(&mut View) -> T) -> T {
            self.revision += 1;
            self.db.write(self.now, self.revision, f)
        }

        fn write(&mut self, words: &[&[u8]]) -> Reply {
            let command = args(words);
            self.with_write(|ks| commands::execute(ks, &command).unwrap())
        }

        fn read(&self, words: &[&[u8]]) -> Reply {
            let mut view = self.db.reader(self.now);
            commands::execute(&mut view, &args(words)).unwrap()
        }

        fn set(&mut self, key: &str, value: &str) {
            assert_eq!(
                self.write(&[b"SET", key.as_bytes(), value.as_bytes()]),
                Reply::ok()
            );
        }

        fn hset(&mut self, key: &str, pairs: &[(&str, &str)]) {
            self.with_write(|ks| {
                for (field, value) in pairs {
                    ks.put_field(key.as_bytes(), field.as_bytes(), value.as_bytes())
                        .unwrap();
                }
            });
        }

        fn hash(&mut self, key: &str) -> Vec<(Bytes, Bytes)> {
            self.with_write(|ks| ks.fields(key.as_bytes(), None, usize::MAX).unwrap())
        }
    }

    fn key_set(reply: &Reply) -> BTreeSet<Bytes> {
        let Reply::Array(items) = reply else {
            panic!("not an array: {reply:?}");
        };
        items
            .iter()
            .map(|item| match item {
                Reply::Bulk(key) => key.clone(),
                other => panic!("not a key: {other:?}"),
            })
            .collect()
    }

    /// One SCAN step: the next cursor and the keys.
    fn scan_step(db: &TestDb, cursor: u64, extra: &[&[u8]]) -> (u64, Vec<Bytes>) {
        let cursor = cursor.to_string();
        let mut words: Vec<&[u8]> = vec![b"SCAN", cursor.as_bytes()];
        words.extend_from_slice(extra);
        let Reply::Array(parts) = db.read(&words) else {
            panic!("SCAN answered no array");
        };
        let [Reply::Bulk(next), keys] = parts.as_slice() else {
            panic!("SCAN answered {parts:?}");
        };
        let next = std::str::from_utf8(next).unwrap().parse().unwrap();
        (next, key_set(keys).into_iter().collect())
    }

    #[test]
    fn keys_scan_full_iteration_survives_concurrent_inserts_and_deletes() {
        let mut db = TestDb::new();
        for i in 0..600 {
            db.set(&format!("stable:{i}"), "v");
            db.set(&format!("doomed:{i}"), "v");
        }
        let stable: BTreeSet<Bytes> = (0..600)
            .map(|i| Bytes::from(format!("stable:{i}")))
            .collect();
        let mut seen = BTreeSet::new();
        let (mut cursor, mut steps, mut added) = (0, 0, 0);
        loop {
            let (next, keys) = scan_step(&db, cursor, &[b"COUNT", b"7"]);
            // Bounded work: about COUNT keys a step (keys of equal hash stay together).
            assert!(keys.len() <= 14, "a step returned {} keys", keys.len());
            seen.extend(keys);
            steps += 1;
            // Between steps: delete some keys, add new ones, rewrite stable ones.
            for _ in 0..3 {
                db.write(&[b"DEL", format!("doomed:{}", (steps * 7) % 600).as_bytes()]);
                db.set(&format!("new:{added}"), "v");
                added += 1;
            }
            db.set(&format!("stable:{}", steps % 600), "rewritten");
            if next == 0 {
                break;
            }
            cursor = next;
            assert!(steps < 10_000, "SCAN does not terminate");
        }
        let missing: Vec<_> = stable.difference(&seen).collect();
        assert!(missing.is_empty(), "SCAN missed {missing:?}");
        assert!(
            steps > 1200 / 14,
            "COUNT 7 should take many steps, took {steps}"
        );
    }

    #[test]
    fn keys_scan_match_type_and_expired_filters() {
        let mut db = TestDb::new();
        for i in 0..50 {
            db.set(&format!("s:{i}"), "v");
            db.hset(&format!("h:{i}"), &[("f", "v")]);
        }
        for i in 0..10 {
            db.set(&format!("gone:{i}"), "v");
            db.write(&[b"PEXPIREAT", format!("gone:{i}").as_bytes(), b"2000000"]);
        }
        db.now = 3_000_000; // the gone:* keys are now past their deadline, still stored
        let scan_all = |db: &TestDb, extra: &[&[u8]]| {
            let mut all = BTreeSet::new();
            let mut cursor = 0;
            loop {
                let (next, keys) = scan_step(db, cursor, extra);
                all.extend(keys);
                if next == 0 {
                    return all;
                }
                cursor = next;
            }
        };
        assert_eq!(scan_all(&db, &[]).len(), 100);
        let strings = scan_all(&db, &[b"TYPE", b"String", b"COUNT", b"3"]);
        assert_eq!(strings.len(), 50);
        assert!(strings.iter().all(|k| k.starts_with(b"s:")));
        let hashes = scan_all(&db, &[b"MATCH", b"h:1*", b"TYPE", b"hash"]);
        assert_eq!(hashes.len(), 11); // h:1, h:10..h:19
        assert!(scan_all(&db, &[b"MATCH", b"gone:*"]).is_empty());
        assert!(scan_all(&db, &[b"TYPE", b"none"]).is_empty());
        // One SCAN with a large COUNT sees everything at once.
        let (next, keys) = scan_step(&db, 0, &[b"COUNT", b"1000"]);
        assert_eq!((next, keys.len()), (0, 100));
        // A cursor past every key ends the iteration.
        assert_eq!(scan_step(&db, u64::MAX, &[]).0, 0);
        // On the write path the expired keys are skipped too (and removed on the way).
        let reply = db.write(&[b"SCAN", b"0", b"COUNT", b"1000", b"MATCH", b"gone:*"]);
        assert_eq!(
            reply,
            Reply::Array(vec![bulk("0"), Reply::Array(Vec::new())])
        );
    }

    #[test]
    fn keys_with_many_keys_matches_exactly_the_live_keys() {
        let mut db = TestDb::new();
        let mut expected_user = BTreeSet::new();
        for i in 0..1500 {
            let key = match i % 3 {
                0 => format!("user:{i}"),
                1 => format!("session:{i}"),
                _ => format!("User:{i}"),
            };
            if key.starts_with("user:") {
                expected_user.insert(Bytes::from(key.clone()));
            }
            db.set(&key, "v");
        }
        db.hset("user:hash", &[("a", "1")]);
        expected_user.insert(Bytes::from_static(b"user:hash"));
        db.set("user:expiring", "v");
        db.write(&[b"PEXPIREAT", b"user:expiring", b"1500000"]);
        db.now = 2_000_000;
        assert_eq!(key_set(&db.read(&[b"KEYS", b"user:*"])), expected_user);
        assert_eq!(key_set(&db.read(&[b"KEYS", b"*"])).len(), 1501);
        assert_eq!(key_set(&db.read(&[b"KEYS", b"[uU]ser:1?"])).len(), 6);
        assert_eq!(
            key_set(&db.read(&[b"KEYS", b"session:100[0-9]"])),
            [
                "session:1000",
                "session:1003",
                "session:1006",
                "session:1009"
            ]
            .into_iter()
            .map(|k| Bytes::from_static(k.as_bytes()))
            .collect()
        );
        assert_eq!(db.read(&[b"KEYS", b"nothing*"]), Reply::Array(Vec::new()));
        assert_eq!(db.read(&[b"DBSIZE"]), Reply::Integer(1501));
    }

    #[test]
    fn keys_randomkey_skips_expired_keys_and_is_deterministic_in_apply() {
        let mut db = TestDb::new();
        assert_eq!(db.read(&[b"RANDOMKEY"]), Reply::Nil);
        for i in 0..20 {
            db.set(&format!("old:{i}"), "v");
            db.write(&[b"PEXPIREAT", format!("old:{i}").as_bytes(), b"1500000"]);
        }
        db.now = 2_000_000;
        assert_eq!(db.read(&[b"RANDOMKEY"]), Reply::Nil);
        db.set("live", "v");
        for _ in 0..20 {
            assert_eq!(db.read(&[b"RANDOMKEY"]), bulk("live"));
        }
        for i in 0..50 {
            db.set(&format!("k:{i}"), "v");
        }
        // Apply: the same log index picks the same key; different ones spread out.
        let pick = |db: &mut TestDb, revision: u64| {
            db.revision = revision - 1;
            db.write(&[b"RANDOMKEY"])
        };
        let saved = db.revision;
        assert_eq!(pick(&mut db, 1000), pick(&mut db, 1000));
        let picks: HashSet<_> = (0..100)
            .map(|r| format!("{:?}", pick(&mut db, 2000 + r)))
            .collect();
        assert!(picks.len() > 20, "RANDOMKEY picked only {picks:?}");
        assert!(!picks.iter().any(|p| p.contains("old:")));
        db.revision = saved + 200;
        // The read path picks at random too, never an expired key.
        let reads: HashSet<_> = (0..100)
            .map(|_| format!("{:?}", db.read(&[b"RANDOMKEY"])))
            .collect();
        assert!(reads.len() > 1);
        assert!(
            !reads
                .iter()
                .any(|p| p.contains("old:") || p.contains("Nil"))
        );
    }

    #[test]
    fn keys_rename_and_copy_move_hash_fields_and_deadlines() {
        let mut db = TestDb::new();
        let pairs: Vec<(String, String)> = (0..600)
            .map(|i| (format!("field{i:04}"), format!("value{i}")))
            .collect();
        let refs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(f, v)| (f.as_str(), v.as_str()))
            .collect();
        db.hset("h", &refs);
        db.write(&[b"PEXPIREAT", b"h", b"4102444800123"]);
        let fields = db.hash("h");
        assert_eq!(fields.len(), 600);

        assert_eq!(db.write(&[b"COPY", b"h", b"h2"]), Reply::Integer(1));
        assert_eq!(db.hash("h2"), fields);
        assert_eq!(
            db.read(&[b"PEXPIRETIME", b"h2"]),
            Reply::Integer(4102444800123)
        );
        assert_eq!(db.read(&[b"TYPE", b"h2"]), Reply::simple("hash"));

        // RENAME onto a string: the string is replaced by the hash.
        db.set("str", "x");
        assert_eq!(db.write(&[b"RENAME", b"h", b"str"]), Reply::ok());
        assert_eq!(db.read(&[b"EXISTS", b"h"]), Reply::Integer(0));
        assert_eq!(db.hash("h"), Vec::new());
        assert_eq!(db.hash("str"), fields);
        assert_eq!(db.read(&[b"TYPE", b"str"]), Reply::simple("hash"));
        assert_eq!(
            db.read(&[b"PEXPIRETIME", b"str"]),
            Reply::Integer(4102444800123)
        );

        // RENAME a string onto a hash: no field of the old hash survives.
        db.set("s", "plain");
        assert_eq!(db.write(&[b"RENAME", b"s", b"str"]), Reply::ok());
        assert_eq!(db.read(&[b"GET", b"str"]), bulk("plain"));
        assert_eq!(db.hash("str"), Vec::new());
        assert_eq!(db.read(&[b"TTL", b"str"]), Reply::Integer(-1));

        // RENAMENX refuses an existing destination of any type; COPY REPLACE replaces it.
        assert_eq!(db.write(&[b"RENAMENX", b"str", b"h2"]), Reply::Integer(0));
        assert_eq!(db.write(&[b"COPY", b"str", b"h2"]), Reply::Integer(0));
        assert_eq!(
            db.write(&[b"COPY", b"str", b"h2", b"REPLACE"]),
            Reply::Integer(1)
        );
        assert_eq!(db.hash("h2"), Vec::new());
        assert_eq!(db.read(&[b"GET", b"h2"]), bulk("plain"));
        assert_eq!(db.read(&[b"DBSIZE"]), Reply::Integer(2));

        // An expired source does not exist.
        db.set("brief", "v");
        db.write(&[
            b"PEXPIREAT",
            b"brief",
            &(db.now + 10).to_string().into_bytes(),
        ]);
        db.now += 10;
        assert_eq!(
            db.write(&[b"RENAME", b"brief", b"x"]),
            Reply::error("ERR no such key")
        );
        assert_eq!(db.write(&[b"COPY", b"brief", b"x"]), Reply::Integer(0));
    }

    #[test]
    fn keys_object_encoding_follows_redis_size_rules() {
        let mut db = TestDb::new();
        let enc = |db: &TestDb, key: &str| db.read(&[b"OBJECT", b"ENCODING", key.as_bytes()]);
        db.hset("small", &[("a", "1"), ("b", &"x".repeat(64))]);
        assert_eq!(enc(&db, "small"), bulk("listpack"));
        db.hset("longvalue", &[("a", &"x".repeat(65))]);
        assert_eq!(enc(&db, "longvalue"), bulk("hashtable"));
        db.hset("longfield", &[(&"f".repeat(65), "1")]);
        assert_eq!(enc(&db, "longfield"), bulk("hashtable"));
        let many: Vec<(String, String)> = (0..513).map(|i| (format!("f{i}"), "v".into())).collect();
        let refs: Vec<(&str, &str)> = many.iter().map(|(f, v)| (f.as_str(), v.as_str())).collect();
        db.hset("many", &refs[..512]);
        assert_eq!(enc(&db, "many"), bulk("listpack"));
        db.hset("many", &refs[512..]);
        assert_eq!(enc(&db, "many"), bulk("hashtable"));
        assert_eq!(
            db.read(&[b"OBJECT", b"REFCOUNT", b"many"]),
            Reply::Integer(1)
        );
        assert_eq!(
            db.read(&[b"OBJECT", b"IDLETIME", b"many"]),
            Reply::Integer(0)
        );
        db.set("n", "123");
        assert_eq!(db.read(&[b"OBJECT", b"IDLETIME", b"n"]), Reply::Integer(0));
        assert_eq!(
            db.read(&[b"OBJECT", b"REFCOUNT", b"n"]),
            Reply::Integer(2147483647)
        );
        db.set("long", &"1".repeat(21));
        assert_eq!(enc(&db, "long"), bulk("embstr"));
    }

    #[test]
    fn keys_ttl_rounds_and_extreme_deadlines_are_kept() {
        let mut db = TestDb::new();
        db.set("k", "v");
        let now = db.now;
        for (left, ttl) in [(1499, 1), (1500, 2), (499, 0), (500, 1)] {
            db.write(&[b"PEXPIREAT", b"k", (now + left).to_string().as_bytes()]);
            assert_eq!(db.read(&[b"TTL", b"k"]), Reply::Integer(ttl), "{left} ms");
            assert_eq!(db.read(&[b"PTTL", b"k"]), Reply::Integer(left));
        }
        // i64::MAX is "no expiry" in the record format: kept one ms earlier.
        assert_eq!(
            db.write(&[b"PEXPIREAT", b"k", b"9223372036854775807"]),
            Reply::Integer(1)
        );
        assert_eq!(
            db.read(&[b"PEXPIRETIME", b"k"]),
            Reply::Integer(i64::MAX - 1)
        );
        assert_eq!(
            db.read(&[b"EXPIRETIME", b"k"]),
            Reply::Integer(9223372036854776)
        );
        assert_eq!(db.write(&[b"PERSIST", b"k"]), Reply::Integer(1));
        // Relative expiry counts from the apply time.
        assert_eq!(db.write(&[b"PEXPIRE", b"k", b"250"]), Reply::Integer(1));
        assert_eq!(db.read(&[b"PEXPIRETIME", b"k"]), Reply::Integer(now + 250));
        db.now += 250;
        assert_eq!(db.read(&[b"TTL", b"k"]), Reply::Integer(-2));
        assert_eq!(db.read(&[b"EXISTS", b"k"]), Reply::Integer(0));
    }

    #[test]
    fn keys_scan_cursor_parses_like_strtoul() {
        assert_eq!(parse_cursor(b"0"), Some(0));
        assert_eq!(parse_cursor(b""), Some(0));
        assert_eq!(parse_cursor(b"+5"), Some(5));
        assert_eq!(parse_cursor(b"-1"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"-0"), Some(0));
        assert_eq!(parse_cursor(b"7\0junk"), Some(7));
        assert_eq!(parse_cursor(b"\0"), Some(0));
        assert_eq!(parse_cursor(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"-18446744073709551615"), Some(1));
        for bad in [
            &b"18446744073709551616"[..],
            b" 1",
            b"\t1",
            b"1 ",
            b"+",
            b"-",
            b"+-1",
            b"0x1",
            b"1.0",
            b"abc",
        ] {
            assert_eq!(
                parse_cursor(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn keys_commands_never_fail_or_panic_on_odd_arguments() {
        const NAMES: &[&str] = &[
            "expire",
            "pexpire",
            "expireat",
            "pexpireat",
            "ttl",
            "pttl",
            "expiretime",
            "pexpiretime",
            "persist",
            "keys",
            "scan",
            "randomkey",
            "rename",
            "renamenx",
            "copy",
            "touch",
            "object",
            "type",
            "exists",
            "del",
        ];
        const WORDS: &[&[u8]] = &[
            b"k",
            b"h",
            b"missing",
            b"0",
            b"-1",
            b"9223372036854775807",
            b"NX",
            b"gt",
            b"DB",
            b"REPLACE",
            b"COUNT",
            b"MATCH",
            b"TYPE",
            b"*",
            b"encoding",
            b"help",
            b"",
            b"\x00\xff",
        ];
        let mut db = TestDb::new();
        let mut n = 0;
        for name in NAMES {
            // Every combination of up to 2 arguments, a sample of 3 and 4.
            let mut commands = Vec::new();
            for (len, step) in [(0, 1), (1, 1), (2, 1), (3, 7), (4, 101)] {
                for mut index in (0..WORDS.len().pow(len)).step_by(step) {
                    let mut words: Vec<&[u8]> = vec![name.as_bytes()];
                    for _ in 0..len {
                        words.push(WORDS[index % WORDS.len()]);
                        index /= WORDS.len();
                    }
                    commands.push(args(&words));
                }
            }
            db.with_write(|ks| {
                for command in &commands {
                    ks.put_string(b"k", b"12", None).unwrap();
                    ks.put_field(b"h", b"f", b"v").unwrap();
                    commands::execute(ks, command).unwrap();
                }
            });
            let mut view = db.db.reader(db.now);
            for command in &commands {
                match commands::execute(&mut view, command) {
                    Ok(_) | Err(crate::store::keyspace::StoreError::ReadOnly) => {}
                    Err(other) => panic!("{command:?}: {other}"),
                }
                n += 1;
            }
        }
        assert!(n > 1000);
    }
}
