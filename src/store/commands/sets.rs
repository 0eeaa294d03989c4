//! Set commands: SADD, SREM, SMEMBERS, SISMEMBER, SMISMEMBER, SCARD, SPOP, SRANDMEMBER, SMOVE,
//! SINTER, SINTERCARD, SINTERSTORE, SUNION, SUNIONSTORE, SDIFF, SDIFFSTORE and SSCAN, with
//! Redis 7.0's replies and errors.
//!
//! # Storage
//! A member is a row of `set_members` keyed by its 64-bit [`scan_hash`] (big-endian) and then
//! its bytes, so SISMEMBER, SADD and SREM touch one row, SSCAN's cursor is a hash that
//! survives inserts and deletes (as SCAN's does), and a random member is the first at or after
//! a random hash. The record keeps the member count and whether the set ever outgrew an intset
//! (a non-integer member, or more than `set-max-intset-entries` members: a replicated
//! parameter, see [`config`]), which Redis never undoes.
//!
//! # Order
//! A set Redis would hold as an intset (integers only, never more than that many) is listed in
//! numeric order, as Redis lists it; any other set in hash order (Redis's hashtable order is
//! unspecified too). SINTER lists the smallest set's members in that set's order, as Redis does.
//!
//! # Random choices
//! SPOP and SRANDMEMBER pick from [`Keyspace::random_seed`] (the log index in apply, so every
//! replica picks the same). A set of at most 64 members, or a count above half the
//! set, is read whole and sampled uniformly; otherwise each pick is the member at or after a
//! random hash, which favours members after wide gaps in hash order about as Redis's bucket
//! sampling does. SRANDMEMBER with a negative count answers at most
//! [`super::hashes::MAX_RANDOM_REPEATS`] members.

use std::collections::HashSet;
use std::ops::Bound;

use bytes::Bytes;

use super::ReplySize::{Data, Small};
use super::{
    CountedRecord, KeyspaceCommand, SplitMix, command, config, parse_cursor, random_count,
    scan_options, scan_reply, store_collection, syntax_error, typed_meta,
};
use crate::redis::glob::glob_match;
use crate::resp::{Reply, string2ll};
use crate::store::keyspace::{Keyspace, Kind, Record, Rows, StoreResult, scan_hash};
use crate::store::notify::{GENERIC, SET};

/// A set of at most this many members is sampled from a full read.
const SMALL_SET: u64 = 64;

/// The set commands: one line each (see [`KeyspaceCommand`]).
pub const COMMANDS: &[KeyspaceCommand] = &[
    command("sadd", sadd, Small),
    command("srem", srem, Small),
    command(
        "smembers",
        |ks, args| combine(ks, Op::Inter, &args[1..2], None),
        Data,
    ),
    command("sismember", sismember, Small),
    command("smismember", smismember, Small),
    command("scard", scard, Small),
    command("spop", spop, Data),
    command("srandmember", srandmember, Data),
    command("smove", smove, Small),
    command(
        "sinter",
        |ks, args| combine(ks, Op::Inter, &args[1..], None),
        Data,
    ),
    command("sintercard", sintercard, Small),
    command(
        "sinterstore",
        |ks, args| combine(ks, Op::Inter, &args[2..], Some(&args[1])),
        Small,
    ),
    command(
        "sunion",
        |ks, args| combine(ks, Op::Union, &args[1..], None),
        Data,
    ),
    command(
        "sunionstore",
        |ks, args| combine(ks, Op::Union, &args[2..], Some(&args[1])),
        Small,
    ),
    command(
        "sdiff",
        |ks, args| combine(ks, Op::Diff, &args[1..], None),
        Data,
    ),
    command(
        "sdiffstore",
        |ks, args| combine(ks, Op::Diff, &args[2..], Some(&args[1])),
        Small,
    ),
    command("sscan", sscan, Data),
];

/// A set's record; `outgrown`: it is (as Redis would hold it) a hashtable, not an intset.
type SetMeta = CountedRecord;

/// What OBJECT ENCODING answers for a set.
pub fn encoding(record: &Record) -> &'static str {
    if !SetMeta::of(record).outgrown {
        "intset"
    } else {
        "hashtable"
    }
}

/// A member's row sub-key in a set or a sorted set: its hash, then its bytes.
pub fn member_key(member: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + member.len());
    out.extend_from_slice(&scan_hash(member).to_be_bytes());
    out.extend_from_slice(member);
    out
}

/// Whether a member fits an intset (Redis's `string2ll`).
fn is_integer(member: &[u8]) -> bool {
    member.len() <= 20 && string2ll(member).is_some()
}

/// A live set's record, `None` when the key is missing, WRONGTYPE for another type.
fn set<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
) -> StoreResult<Result<Option<SetMeta>, Reply>> {
    typed_meta(ks, key, Kind::Set, SetMeta::of)
}

/// Writes a set's record, or deletes the key when the set is empty.
fn store<K: Keyspace + ?Sized>(ks: &mut K, key: &[u8], meta: SetMeta) -> StoreResult<()> {
    store_collection(ks, key, Kind::Set, &meta.encode())
}

/// Adds `member`; true when it is new. The caller writes the record.
fn add<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
    meta: &mut SetMeta,
    member: &[u8],
    max_intset: u64,
) -> StoreResult<bool> {
    let added = ks.put_element(Rows::SetMembers, key, &member_key(member), &[])?;
    if added {
        meta.len += 1;
        if !is_integer(member) || meta.len > max_intset {
            meta.outgrown = true;
        }
    }
    Ok(added)
}

/// Removes `member`; true when it was there. The caller writes the record.
fn remove<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
    meta: &mut SetMeta,
    member: &[u8],
) -> StoreResult<bool> {
    let removed = ks.remove_element(Rows::SetMembers, key, &member_key(member))?;
    if removed {
        meta.len -= 1;
    }
    Ok(removed)
}

fn is_member<K: Keyspace + ?Sized>(ks: &mut K, key: &[u8], member: &[u8]) -> StoreResult<bool> {
    Ok(ks
        .element(Rows::SetMembers, key, &member_key(member))?
        .is_some())
}

/// Calls `visit` with the members of `key`'s `rows` (a set's members or a sorted set's
/// scores), their hashes and their rows' values, in hash order from hash `from`, while it
/// returns true.
pub fn visit_hashed<K: Keyspace + ?Sized>(
    ks: &mut K,
    rows: Rows,
    key: &[u8],
    from: u64,
    visit: &mut dyn FnMut(u64, Bytes, &Bytes) -> bool,
) -> StoreResult<()> {
    let start = from.to_be_bytes();
    ks.visit_elements(
        rows,
        key,
        Bound::Included(&start),
        Bound::Unbounded,
        false,
        &mut |sub, value| {
            let hash = u64::from_be_bytes(sub[..8].try_into().expect("8-byte hash"));
            visit(hash, Bytes::copy_from_slice(&sub[8..]), value)
        },
    )
}

/// Calls `visit` with a set's members in hash order from hash `from`, while it returns true.
fn visit_members<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
    from: u64,
    visit: &mut dyn FnMut(u64, Bytes) -> bool,
) -> StoreResult<()> {
    visit_hashed(ks, Rows::SetMembers, key, from, &mut |hash, member, _| {
        visit(hash, member)
    })
}

/// One SCAN step over hashed members: about `count` of them from hash `cursor`, never ending
/// between two members of the same hash, each passed to `visit` with its row's value; the
/// next cursor (the hash it stopped at, 0 at the end).
pub fn scan_hashed<K: Keyspace + ?Sized>(
    ks: &mut K,
    rows: Rows,
    key: &[u8],
    cursor: u64,
    count: usize,
    visit: &mut dyn FnMut(Bytes, &Bytes),
) -> StoreResult<u64> {
    let mut taken = 0usize;
    let mut last_hash = None;
    let mut next = 0;
    visit_hashed(ks, rows, key, cursor, &mut |hash, member, value| {
        if taken >= count.max(1) && last_hash != Some(hash) {
            next = hash.max(1);
            return false;
        }
        taken += 1;
        last_hash = Some(hash);
        visit(member, value);
        true
    })?;
    Ok(next)
}

/// One member of `key`'s `rows` picked at random, with its row's value: the first at or after
/// a random hash, wrapping around.
pub fn pick_hashed<K: Keyspace + ?Sized>(
    ks: &mut K,
    rows: Rows,
    key: &[u8],
    rng: &mut SplitMix,
) -> StoreResult<(Bytes, Bytes)> {
    let mut found = None;
    for from in [rng.next_u64(), 0] {
        visit_hashed(ks, rows, key, from, &mut |_, member, value| {
            found = Some((member, value.clone()));
            false
        })?;
        if let Some(found) = found {
            return Ok(found);
        }
    }
    Err(crate::store::keyspace::StoreError::Corrupt(
        "a collection's record counts members it does not have".into(),
    ))
}

/// Every member, in the order Redis would list them (see the module docs).
fn members<K: Keyspace + ?Sized>(ks: &mut K, key: &[u8], meta: SetMeta) -> StoreResult<Vec<Bytes>> {
    let mut out = Vec::with_capacity(meta.len.min(1024) as usize);
    visit_members(ks, key, 0, &mut |_, member| {
        out.push(member);
        true
    })?;
    if !meta.outgrown {
        out.sort_by_key(|member| string2ll(member).unwrap_or(0));
    }
    Ok(out)
}

fn sadd(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let key = &args[1];
    let mut meta = match set(ks, key)? {
        Err(reply) => return Ok(reply),
        Ok(meta) => meta.unwrap_or(SetMeta::EMPTY),
    };
    let max_intset = config::limit(ks, config::SET_MAX_INTSET_ENTRIES)?;
    let mut added = 0;
    for member in &args[2..] {
        added += i64::from(add(ks, key, &mut meta, member, max_intset)?);
    }
    store(ks, key, meta)?;
    if added > 0 {
        ks.notify(SET, "sadd", key);
    }
    Ok(Reply::Integer(added))
}

fn srem(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let key = &args[1];
    let mut meta = match set(ks, key)? {
        Err(reply) => return Ok(reply),
        Ok(None) => return Ok(Reply::Integer(0)),
        Ok(Some(meta)) => meta,
    };
    let mut removed = 0;
    for member in &args[2..] {
        removed += i64::from(remove(ks, key, &mut meta, member)?);
    }
    if removed > 0 {
        store(ks, key, meta)?;
        ks.notify(SET, "srem", key);
        if meta.len == 0 {
            ks.notify(GENERIC, "del", key);
        }
    }
    Ok(Reply::Integer(removed))
}

fn sismember(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let key = &args[1];
    Ok(match set(ks, key)? {
        Err(reply) => reply,
        Ok(None) => Reply::Integer(0),
        Ok(Some(_)) => Reply::Integer(i64::from(is_member(ks, key, &args[2])?)),
    })
}

fn smismember(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let key = &args[1];
    let exists = match set(ks, key)? {
        Err(reply) => return Ok(reply),
        Ok(meta) => meta.is_some(),
    };
    let mut out = Vec::with_capacity(args.len() - 2);
    for member in &args[2..] {
        out.push(Reply::Integer(i64::from(
            exists && is_member(ks, key, member)?,
        )));
    }
    Ok(Reply::Array(out))
}

fn scard(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    Ok(match set(ks, &args[1])? {
        Err(reply) => reply,
        Ok(meta) => Reply::Integer(meta.map_or(0, |m| m.len as i64)),
    })
}

/// `count` distinct members picked at random (`count` below the set's size), in the order
/// picked.
fn pick_distinct<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
    meta: SetMeta,
    count: u64,
    rng: &mut SplitMix,
) -> StoreResult<Vec<Bytes>> {
    if meta.len <= SMALL_SET || count * 2 > meta.len {
        // Read whole, then a partial Fisher-Yates shuffle.
        let mut all = Vec::with_capacity(meta.len as usize);
        visit_members(ks, key, 0, &mut |_, member| {
            all.push(member);
            true
        })?;
        let count = (count as usize).min(all.len());
        for i in 0..count {
            let j = i + rng.below((all.len() - i) as u64) as usize;
            all.swap(i, j);
        }
        all.truncate(count);
        return Ok(all);
    }
    let mut seen = HashSet::with_capacity(count as usize);
    let mut out = Vec::with_capacity(count as usize);
    while (out.len() as u64) < count {
        let member = pick_one(ks, key, rng)?;
        if seen.insert(member.clone()) {
            out.push(member);
        }
    }
    Ok(out)
}

/// One member picked at random (see [`pick_hashed`]).
fn pick_one<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
    rng: &mut SplitMix,
) -> StoreResult<Bytes> {
    Ok(pick_hashed(ks, Rows::SetMembers, key, rng)?.0)
}

fn spop(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    if args.len() > 3 {
        return Ok(syntax_error());
    }
    let key = &args[1];
    let count = match args.get(2) {
        None => None,
        Some(arg) => match string2ll(arg) {
            Some(n) if n >= 0 => Some(n as u64),
            _ => return Ok(Reply::error("ERR value is out of range, must be positive")),
        },
    };
    let mut meta = match set(ks, key)? {
        Err(reply) => return Ok(reply),
        Ok(None) => {
            return Ok(match count {
                Some(_) => Reply::Set(Vec::new()),
                None => Reply::Nil,
            });
        }
        Ok(Some(meta)) => meta,
    };
    let mut rng = SplitMix(ks.random_seed());
    let popped = match count {
        Some(0) => return Ok(Reply::Set(Vec::new())),
        Some(count) if count >= meta.len => {
            let all = members(ks, key, meta)?;
            ks.delete(key)?;
            ks.notify(SET, "spop", key);
            ks.notify(GENERIC, "del", key);
            return Ok(Reply::Set(all.into_iter().map(Reply::Bulk).collect()));
        }
        Some(count) => pick_distinct(ks, key, meta, count, &mut rng)?,
        None => vec![pick_one(ks, key, &mut rng)?],
    };
    for member in &popped {
        remove(ks, key, &mut meta, member)?;
    }
    store(ks, key, meta)?;
    if !popped.is_empty() {
        ks.notify(SET, "spop", key);
        if meta.len == 0 {
            ks.notify(GENERIC, "del", key);
        }
    }
    Ok(match count {
        Some(_) => Reply::Set(popped.into_iter().map(Reply::Bulk).collect()),
        None => popped.into_iter().next().map_or(Reply::Nil, Reply::Bulk),
    })
}

fn srandmember(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    if args.len() > 3 {
        return Ok(syntax_error());
    }
    let key = &args[1];
    let Some(_) = args.get(2) else {
        return Ok(match set(ks, key)? {
            Err(reply) => reply,
            Ok(None) => Reply::Nil,
            Ok(Some(_)) => {
                let mut rng = SplitMix(ks.random_seed());
                Reply::Bulk(pick_one(ks, key, &mut rng)?)
            }
        });
    };
    let count = match random_count(args, None) {
        Ok((count, _)) => count,
        Err(reply) => return Ok(reply),
    };
    let meta = match set(ks, key)? {
        Err(reply) => return Ok(reply),
        Ok(None) => return Ok(Reply::Array(Vec::new())),
        Ok(Some(meta)) => meta,
    };
    if count == 0 {
        return Ok(Reply::Array(Vec::new()));
    }
    let wanted = count.unsigned_abs();
    let mut rng = SplitMix(ks.random_seed());
    let picked = if count < 0 {
        if wanted > super::hashes::MAX_RANDOM_REPEATS {
            return Ok(Reply::error(format!(
                "ERR SRANDMEMBER with a negative count answers at most {} members",
                super::hashes::MAX_RANDOM_REPEATS
            )));
        }
        let mut out = Vec::with_capacity(wanted as usize);
        if meta.len <= SMALL_SET {
            let all = members(ks, key, meta)?;
            for _ in 0..wanted {
                out.push(all[rng.below(all.len() as u64) as usize].clone());
            }
        } else {
            for _ in 0..wanted {
                out.push(pick_one(ks, key, &mut rng)?);
            }
        }
        out
    } else if wanted >= meta.len {
        members(ks, key, meta)?
    } else {
        pick_distinct(ks, key, meta, wanted, &mut rng)?
    };
    Ok(Reply::Array(picked.into_iter().map(Reply::Bulk).collect()))
}

fn smove(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let (source, destination, member) = (&args[1], &args[2], &args[3]);
    let source_meta = set(ks, source)?;
    let destination_meta = set(ks, destination)?;
    let mut source_meta = match source_meta {
        Ok(None) => return Ok(Reply::Integer(0)),
        Err(reply) => return Ok(reply),
        Ok(Some(meta)) => meta,
    };
    let mut destination_meta = match destination_meta {
        Err(reply) => return Ok(reply),
        Ok(meta) => meta,
    };
    if source == destination {
        return Ok(Reply::Integer(i64::from(is_member(ks, source, member)?)));
    }
    if !remove(ks, source, &mut source_meta, member)? {
        return Ok(Reply::Integer(0));
    }
    store(ks, source, source_meta)?;
    ks.notify(SET, "srem", source);
    if source_meta.len == 0 {
        ks.notify(GENERIC, "del", source);
    }
    let mut meta = destination_meta.take().unwrap_or(SetMeta {
        len: 0,
        outgrown: !is_integer(member),
    });
    let max_intset = config::limit(ks, config::SET_MAX_INTSET_ENTRIES)?;
    if add(ks, destination, &mut meta, member, max_intset)? {
        ks.notify(SET, "sadd", destination);
    }
    store(ks, destination, meta)?;
    Ok(Reply::Integer(1))
}

/// SINTER, SUNION and SDIFF (and SMEMBERS, an intersection of one set).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Inter,
    Union,
    Diff,
}

/// The sets at `keys` (`None` for a missing key), or WRONGTYPE for the first key of another
/// type.
fn sets_of<K: Keyspace + ?Sized>(
    ks: &mut K,
    keys: &[Bytes],
) -> StoreResult<Result<Vec<Option<SetMeta>>, Reply>> {
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        match set(ks, key)? {
            Err(reply) => return Ok(Err(reply)),
            Ok(meta) => out.push(meta),
        }
    }
    Ok(Ok(out))
}

/// The members of the intersection (at most `limit` of them, 0 for all), union or difference
/// of the sets at `keys`, in the order Redis finds them.
fn compute<K: Keyspace + ?Sized>(
    ks: &mut K,
    op: Op,
    keys: &[Bytes],
    metas: &[Option<SetMeta>],
    limit: u64,
) -> StoreResult<Vec<Bytes>> {
    match op {
        Op::Inter => {
            if metas.iter().any(Option::is_none) {
                return Ok(Vec::new());
            }
            // The smallest set first (a stable sort, as glibc's qsort of Redis's small arrays).
            let mut order: Vec<usize> = (0..keys.len()).collect();
            order.sort_by_key(|&i| metas[i].map_or(0, |m| m.len));
            let first = order[0];
            let candidates = members(ks, &keys[first], metas[first].expect("present"))?;
            let mut out = Vec::new();
            'candidates: for member in candidates {
                for &other in &order[1..] {
                    if !is_member(ks, &keys[other], &member)? {
                        continue 'candidates;
                    }
                }
                out.push(member);
                if limit != 0 && out.len() as u64 >= limit {
                    break;
                }
            }
            Ok(out)
        }
        Op::Union => {
            let mut seen = HashSet::new();
            let mut out = Vec::new();
            for (key, meta) in keys.iter().zip(metas) {
                if let Some(meta) = meta {
                    for member in members(ks, key, *meta)? {
                        if seen.insert(member.clone()) {
                            out.push(member);
                        }
                    }
                }
            }
            Ok(out)
        }
        Op::Diff => {
            let Some(first) = metas[0] else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            'members: for member in members(ks, &keys[0], first)? {
                for (key, meta) in keys[1..].iter().zip(&metas[1..]) {
                    if meta.is_some() && is_member(ks, key, &member)? {
                        continue 'members;
                    }
                }
                out.push(member);
            }
            Ok(out)
        }
    }
}

/// Orders a computed union or difference as Redis lists the set it builds: numerically when
/// that set is an intset.
fn as_built(mut members: Vec<Bytes>, max_intset: u64) -> Vec<Bytes> {
    if members.len() as u64 <= max_intset && members.iter().all(|m| is_integer(m)) {
        members.sort_by_key(|member| string2ll(member).unwrap_or(0));
    }
    members
}

/// SINTER, SUNION, SDIFF, SMEMBERS and their STORE forms (`destination`).
fn combine(
    ks: &mut dyn Keyspace,
    op: Op,
    keys: &[Bytes],
    destination: Option<&Bytes>,
) -> StoreResult<Reply> {
    let metas = match sets_of(ks, keys)? {
        Err(reply) => return Ok(reply),
        Ok(metas) => metas,
    };
    let mut result = compute(ks, op, keys, &metas, 0)?;
    let max_intset = config::limit(ks, config::SET_MAX_INTSET_ENTRIES)?;
    if op != Op::Inter {
        result = as_built(result, max_intset);
    }
    let Some(destination) = destination else {
        return Ok(Reply::Set(result.into_iter().map(Reply::Bulk).collect()));
    };
    let existed = ks.delete(destination)?;
    let mut meta = SetMeta::EMPTY;
    for member in &result {
        add(ks, destination, &mut meta, member, max_intset)?;
    }
    store(ks, destination, meta)?;
    if meta.len > 0 {
        let event = match op {
            Op::Inter => "sinterstore",
            Op::Union => "sunionstore",
            Op::Diff => "sdiffstore",
        };
        ks.notify(SET, event, destination);
    } else if existed {
        ks.notify(GENERIC, "del", destination);
    }
    Ok(Reply::Integer(meta.len as i64))
}

fn sintercard(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let numkeys = match string2ll(&args[1]) {
        Some(n) if n > 0 => n as u64,
        _ => return Ok(Reply::error("ERR numkeys should be greater than 0")),
    };
    if numkeys > (args.len() - 2) as u64 {
        return Ok(Reply::error(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    let keys_end = 2 + numkeys as usize;
    let mut limit = 0;
    let mut at = keys_end;
    while at < args.len() {
        if args[at].eq_ignore_ascii_case(b"limit") && at + 1 < args.len() {
            limit = match string2ll(&args[at + 1]) {
                Some(n) if n >= 0 => n as u64,
                _ => return Ok(Reply::error("ERR LIMIT can't be negative")),
            };
            at += 2;
        } else {
            return Ok(syntax_error());
        }
    }
    let keys = &args[2..keys_end];
    let metas = match sets_of(ks, keys)? {
        Err(reply) => return Ok(reply),
        Ok(metas) => metas,
    };
    let found = compute(ks, Op::Inter, keys, &metas, limit)?;
    Ok(Reply::Integer(found.len() as i64))
}

fn sscan(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let key = &args[1];
    let Some(cursor) = parse_cursor(&args[2]) else {
        return Ok(Reply::error("ERR invalid cursor"));
    };
    let meta = match set(ks, key)? {
        Err(reply) => return Ok(reply),
        Ok(None) => return Ok(scan_reply(0, Vec::new())),
        Ok(Some(meta)) => meta,
    };
    let (count, pattern) = match scan_options(&args[3..]) {
        Ok(options) => options,
        Err(reply) => return Ok(reply),
    };
    let matches = |member: &[u8]| pattern.is_none_or(|p| glob_match(p, member, false));
    if !meta.outgrown {
        // Redis answers a small (intset) set whole.
        let items = members(ks, key, meta)?
            .into_iter()
            .filter(|member| matches(member))
            .map(Reply::Bulk)
            .collect();
        return Ok(scan_reply(0, items));
    }
    let mut items = Vec::new();
    let next = scan_hashed(
        ks,
        Rows::SetMembers,
        key,
        cursor,
        count,
        &mut |member, _| {
            if matches(&member) {
                items.push(Reply::Bulk(member));
            }
        },
    )?;
    Ok(scan_reply(next, items))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::commands::test_support::{exec, strings};
    use crate::store::keyspace::testing::TestStore;

    fn sorted(reply: Reply) -> Vec<String> {
        let mut out = strings(reply);
        out.sort();
        out
    }

    #[test]
    fn spop_and_srandmember_are_deterministic_per_log_index_and_vary_across_them() {
        let db = TestStore::new();
        let members: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
        exec(&db, 1, &format!("SADD s {}", members.join(" ")));
        for line in [
            "SRANDMEMBER s",
            "SRANDMEMBER s 5",
            "SRANDMEMBER s -7",
            "SRANDMEMBER s 150",
        ] {
            let first = exec(&db, 7, line);
            assert_eq!(exec(&db, 7, line), first, "{line}");
            assert!(
                (8..40).any(|i| exec(&db, i, line) != first),
                "{line} never varies"
            );
        }
        let distinct = sorted(exec(&db, 9, "SRANDMEMBER s 150"));
        let mut unique = distinct.clone();
        unique.dedup();
        assert_eq!(unique.len(), 150, "a positive count picks distinct members");
        let popped = sorted(exec(&db, 10, "SPOP s 20"));
        assert_eq!(popped.len(), 20);
        assert_eq!(exec(&db, 11, "SCARD s"), Reply::Integer(180));
        for member in popped {
            assert_eq!(
                exec(&db, 12, &format!("SISMEMBER s {member}")),
                Reply::Integer(0)
            );
        }
    }

    #[test]
    fn sscan_walks_every_member_once_through_a_large_set() {
        let db = TestStore::new();
        let members: Vec<String> = (0..1000).map(|i| format!("member:{i}")).collect();
        exec(&db, 1, &format!("SADD s {}", members.join(" ")));
        let mut cursor = "0".to_string();
        let mut seen = Vec::new();
        loop {
            let Reply::Array(parts) = exec(&db, 2, &format!("SSCAN s {cursor} COUNT 37")) else {
                panic!("SSCAN answers an array");
            };
            let Reply::Bulk(next) = &parts[0] else {
                panic!("a cursor")
            };
            seen.extend(sorted(parts[1].clone()));
            cursor = String::from_utf8_lossy(next).into_owned();
            if cursor == "0" {
                break;
            }
        }
        seen.sort();
        let mut expected = members.clone();
        expected.sort();
        assert_eq!(seen, expected);
    }

    #[test]
    fn intsets_list_in_numeric_order_and_stay_hashtables_once_grown() {
        let db = TestStore::new();
        exec(&db, 1, "SADD s 10 -3 7 100");
        assert_eq!(
            exec(&db, 2, "SMEMBERS s"),
            Reply::Set(["-3", "7", "10", "100"].map(Reply::bulk_str).to_vec())
        );
        assert_eq!(exec(&db, 3, "OBJECT ENCODING s"), Reply::bulk_str("intset"));
        exec(&db, 4, "SADD s x");
        exec(&db, 5, "SREM s x");
        assert_eq!(
            exec(&db, 6, "OBJECT ENCODING s"),
            Reply::bulk_str("hashtable")
        );
    }
}
