//! List commands: LPUSH, RPUSH, LPUSHX, RPUSHX, LPOP, RPOP, LLEN, LRANGE, LINDEX, LSET,
//! LINSERT, LREM, LTRIM, LPOS, LMOVE, RPOPLPUSH and LMPOP, with Redis 7.0's replies and errors;
//! and the blocking pops (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP) as the state machine runs
//! them: as Redis runs them inside MULTI or a script, answering at once (nil when every list is
//! empty). Waiting for a list to fill is the connection's (`server::blocking`), which sends them
//! again when one may have.
//!
//! # Storage
//! A list's elements are rows of `list_items` keyed by a position: a signed 64-bit sequence
//! number (sign-flipped, big-endian, so rows sort in list order). The record keeps the element
//! count and the first element's position; the elements always occupy consecutive positions
//! from it. A push or pop at either end therefore writes one row and the record, LINDEX and
//! LSET read or write one row, and LRANGE reads only the rows it answers. LINSERT and LREM
//! move the elements on the shorter side of the change by one position each (Redis's own cost
//! for them is linear too).

use std::ops::Bound;

use bytes::Bytes;

use super::ReplySize::{Data, Small};
use super::{
    KeyspaceCommand, command, int_arg, mpop_args, parse_timeout, store_collection, syntax_error,
    typed_meta,
};
use crate::resp::Reply;
use crate::store::keyspace::{Keyspace, Kind, Record, Rows, StoreResult};
use crate::store::notify::{GENERIC, LIST};

/// The list commands: one line each (see [`KeyspaceCommand`]).
pub const COMMANDS: &[KeyspaceCommand] = &[
    command("lpush", |ks, args| push(ks, args, End::Left, false), Small),
    command("rpush", |ks, args| push(ks, args, End::Right, false), Small),
    command("lpushx", |ks, args| push(ks, args, End::Left, true), Small),
    command("rpushx", |ks, args| push(ks, args, End::Right, true), Small),
    command("lpop", |ks, args| pop(ks, args, End::Left), Data),
    command("rpop", |ks, args| pop(ks, args, End::Right), Data),
    command("llen", llen, Small),
    command("lrange", lrange, Data),
    command("lindex", lindex, Data),
    command("lset", lset, Small),
    command("linsert", linsert, Small),
    command("lrem", lrem, Small),
    command("ltrim", ltrim, Small),
    command("lpos", lpos, Data),
    command("lmove", lmove, Data),
    command(
        "rpoplpush",
        |ks, args| move_element(ks, &args[1], &args[2], End::Right, End::Left),
        Data,
    ),
    command("lmpop", lmpop, Data),
    command("blpop", |ks, args| blocking_pop(ks, args, End::Left), Data),
    command("brpop", |ks, args| blocking_pop(ks, args, End::Right), Data),
    command("blmove", blmove, Data),
    command("brpoplpush", brpoplpush, Data),
    command("blmpop", blmpop, Data),
];

/// Which end of a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The head (LEFT).
    Left,
    /// The tail (RIGHT).
    Right,
}

impl End {
    /// `LEFT` or `RIGHT`, any case; a syntax error otherwise.
    pub fn parse(arg: &[u8]) -> Result<End, Reply> {
        if arg.eq_ignore_ascii_case(b"left") {
            Ok(End::Left)
        } else if arg.eq_ignore_ascii_case(b"right") {
            Ok(End::Right)
        } else {
            Err(syntax_error())
        }
    }
}

/// A list's record: how many elements, and the position of the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ListMeta {
    len: u64,
    head: i64,
}

impl ListMeta {
    fn of(record: &Record) -> ListMeta {
        let head = record
            .payload
            .get(8..16)
            .map_or(0, |b| i64::from_le_bytes(b.try_into().expect("8 bytes")));
        ListMeta {
            len: record.element_count(),
            head,
        }
    }

    fn encode(self) -> [u8; 16] {
        let mut out = [0; 16];
        out[..8].copy_from_slice(&self.len.to_le_bytes());
        out[8..].copy_from_slice(&self.head.to_le_bytes());
        out
    }

    /// The position of the element at `index` (from the head).
    fn position(self, index: u64) -> [u8; 8] {
        position_key(self.head + index as i64)
    }
}

/// A position as a row's sub-key: sign-flipped big-endian, so rows sort in list order.
fn position_key(position: i64) -> [u8; 8] {
    ((position as u64) ^ (1 << 63)).to_be_bytes()
}

/// A live list's record, `None` when the key is missing, WRONGTYPE for another type.
fn list<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
) -> StoreResult<Result<Option<ListMeta>, Reply>> {
    typed_meta(ks, key, Kind::List, ListMeta::of)
}

/// Writes a list's record, or deletes the key when the list is empty.
fn store<K: Keyspace + ?Sized>(ks: &mut K, key: &[u8], meta: ListMeta) -> StoreResult<()> {
    store_collection(ks, key, Kind::List, &meta.encode())
}

/// Adds `values` at `end`, one after the other (so LPUSH reverses them), writes the record
/// and notifies the push.
fn push_values<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
    meta: &mut ListMeta,
    end: End,
    values: &[Bytes],
) -> StoreResult<()> {
    put_values(ks, key, meta, end, values)?;
    if !values.is_empty() {
        let event = match end {
            End::Left => "lpush",
            End::Right => "rpush",
        };
        ks.notify(LIST, event, key);
    }
    Ok(())
}

/// Adds `values` at `end`, one after the other, and writes the record.
fn put_values<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
    meta: &mut ListMeta,
    end: End,
    values: &[Bytes],
) -> StoreResult<()> {
    for value in values {
        let position = match end {
            End::Left => {
                meta.head -= 1;
                meta.head
            }
            End::Right => meta.head + meta.len as i64,
        };
        ks.put_element(Rows::ListItems, key, &position_key(position), value)?;
        meta.len += 1;
    }
    store(ks, key, *meta)
}

/// Replaces whatever `key` holds with a list of `values` (SORT … STORE), notifying
/// `sortstore`, or `del` when there are none and the key existed.
pub fn store_sorted<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
    values: &[Bytes],
) -> StoreResult<()> {
    let existed = ks.delete(key)?;
    let mut meta = ListMeta { len: 0, head: 0 };
    put_values(ks, key, &mut meta, End::Right, values)?;
    if meta.len > 0 {
        ks.notify(LIST, "sortstore", key);
    } else if existed {
        ks.notify(GENERIC, "del", key);
    }
    Ok(())
}

/// Removes up to `count` elements from `end` and writes the record; the elements in the order
/// they were popped.
fn pop_values<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
    meta: &mut ListMeta,
    end: End,
    count: u64,
) -> StoreResult<Vec<Bytes>> {
    let count = count.min(meta.len);
    let mut popped = Vec::with_capacity(count.min(1024) as usize);
    // Each position is known: looked up one by one, never walked to. (A walk from an end
    // would step over the rows popped since the last flush, still in memory as deletions.)
    for offset in 0..count {
        let index = match end {
            End::Left => offset,
            End::Right => meta.len - 1 - offset,
        };
        let position = meta.position(index);
        let Some(element) = ks.element(Rows::ListItems, key, &position)? else {
            return Err(crate::store::keyspace::StoreError::Corrupt(
                "a list's record counts an element it does not have".into(),
            ));
        };
        ks.remove_element(Rows::ListItems, key, &position)?;
        popped.push(element);
    }
    if end == End::Left {
        meta.head += popped.len() as i64;
    }
    meta.len -= popped.len() as u64;
    store(ks, key, *meta)?;
    if !popped.is_empty() {
        let event = match end {
            End::Left => "lpop",
            End::Right => "rpop",
        };
        ks.notify(LIST, event, key);
        if meta.len == 0 {
            ks.notify(GENERIC, "del", key);
        }
    }
    Ok(popped)
}

/// The elements at indexes `first..=last` (which must be in the list), in order.
fn read_range<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
    meta: ListMeta,
    first: u64,
    last: u64,
) -> StoreResult<Vec<Bytes>> {
    let mut out = Vec::with_capacity((last.saturating_sub(first) + 1).min(1024) as usize);
    ks.visit_elements(
        Rows::ListItems,
        key,
        Bound::Included(&meta.position(first)),
        Bound::Included(&meta.position(last)),
        false,
        &mut |_, value| {
            out.push(value.clone());
            true
        },
    )?;
    Ok(out)
}

/// Calls `visit` with each element's index and value, from the head or (`from_tail`) the tail,
/// while it returns true.
fn walk<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
    meta: ListMeta,
    from_tail: bool,
    mut visit: impl FnMut(u64, &Bytes) -> bool,
) -> StoreResult<()> {
    if meta.len == 0 {
        return Ok(());
    }
    let mut seen = 0u64;
    // Bounded by the first and last positions: rows deleted past either end are not walked.
    ks.visit_elements(
        Rows::ListItems,
        key,
        Bound::Included(&meta.position(0)),
        Bound::Included(&meta.position(meta.len - 1)),
        from_tail,
        &mut |_, value| {
            let index = if from_tail { meta.len - 1 - seen } else { seen };
            seen += 1;
            visit(index, value)
        },
    )
}

/// LPUSH, RPUSH, LPUSHX, RPUSHX: the list's length after the push (0 when `only_existing`
/// and the key is missing).
fn push(
    ks: &mut dyn Keyspace,
    args: &[Bytes],
    end: End,
    only_existing: bool,
) -> StoreResult<Reply> {
    let key = &args[1];
    let mut meta = match list(ks, key)? {
        Err(reply) => return Ok(reply),
        Ok(None) if only_existing => return Ok(Reply::Integer(0)),
        Ok(meta) => meta.unwrap_or(ListMeta { len: 0, head: 0 }),
    };
    push_values(ks, key, &mut meta, end, &args[2..])?;
    Ok(Reply::Integer(meta.len as i64))
}

/// LPOP and RPOP, with or without a count.
fn pop(ks: &mut dyn Keyspace, args: &[Bytes], end: End) -> StoreResult<Reply> {
    if args.len() > 3 {
        return Ok(crate::redis::table::wrong_arity_error_for(
            if end == End::Left { "lpop" } else { "rpop" },
        ));
    }
    let count = match args.get(2) {
        Some(arg) => match positive(arg, "ERR value is out of range, must be positive") {
            Ok(count) => Some(count),
            Err(reply) => return Ok(reply),
        },
        None => None,
    };
    let key = &args[1];
    let mut meta = match list(ks, key)? {
        Err(reply) => return Ok(reply),
        Ok(None) => {
            return Ok(if count.is_some() {
                Reply::NilArray
            } else {
                Reply::Nil
            });
        }
        Ok(Some(meta)) => meta,
    };
    Ok(match count {
        Some(0) => Reply::Array(Vec::new()),
        Some(count) => Reply::Array(
            pop_values(ks, key, &mut meta, end, count)?
                .into_iter()
                .map(Reply::Bulk)
                .collect(),
        ),
        None => pop_values(ks, key, &mut meta, end, 1)?
            .pop()
            .map_or(Reply::Nil, Reply::Bulk),
    })
}

/// A non-negative integer argument; `message` (the whole error text) when it is not one.
fn positive(arg: &[u8], message: &str) -> Result<u64, Reply> {
    match crate::resp::string2ll(arg) {
        Some(n) if n >= 0 => Ok(n as u64),
        _ => Err(Reply::error(message)),
    }
}

fn llen(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    Ok(match list(ks, &args[1])? {
        Err(reply) => reply,
        Ok(meta) => Reply::Integer(meta.map_or(0, |m| m.len as i64)),
    })
}

/// Redis's LRANGE/LTRIM clamping: the inclusive index range `start..=stop` within a list of
/// `len` elements, `None` when it is empty.
fn clamp(start: i64, stop: i64, len: u64) -> Option<(u64, u64)> {
    let len = len as i64;
    let start = if start < 0 {
        (start + len).max(0)
    } else {
        start
    };
    let stop = if stop < 0 { stop + len } else { stop };
    if start > stop || start >= len {
        return None;
    }
    Some((start as u64, stop.min(len - 1) as u64))
}

fn lrange(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let (start, stop) = match (int_arg(&args[2]), int_arg(&args[3])) {
        (Ok(start), Ok(stop)) => (start, stop),
        (Err(reply), _) | (_, Err(reply)) => return Ok(reply),
    };
    let key = &args[1];
    let meta = match list(ks, key)? {
        Err(reply) => return Ok(reply),
        Ok(None) => return Ok(Reply::Array(Vec::new())),
        Ok(Some(meta)) => meta,
    };
    Ok(Reply::Array(match clamp(start, stop, meta.len) {
        Some((first, last)) => read_range(ks, key, meta, first, last)?
            .into_iter()
            .map(Reply::Bulk)
            .collect(),
        None => Vec::new(),
    }))
}

/// A list index (negative from the tail) as an index from the head, if it is in the list.
fn resolve_index(index: i64, len: u64) -> Option<u64> {
    let index = if index < 0 {
        index.checked_add(len as i64)?
    } else {
        index
    };
    (index >= 0 && (index as u64) < len).then_some(index as u64)
}

fn lindex(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let key = &args[1];
    let meta = match list(ks, key)? {
        Err(reply) => return Ok(reply),
        Ok(None) => return Ok(Reply::Nil),
        Ok(Some(meta)) => meta,
    };
    let index = match int_arg(&args[2]) {
        Ok(index) => index,
        Err(reply) => return Ok(reply),
    };
    Ok(match resolve_index(index, meta.len) {
        Some(index) => ks
            .element(Rows::ListItems, key, &meta.position(index))?
            .map_or(Reply::Nil, Reply::Bulk),
        None => Reply::Nil,
    })
}

fn lset(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let key = &args[1];
    let meta = match list(ks, key)? {
        Err(reply) => return Ok(reply),
        Ok(None) => return Ok(Reply::error("ERR no such key")),
        Ok(Some(meta)) => meta,
    };
    let index = match int_arg(&args[2]) {
        Ok(index) => index,
        Err(reply) => return Ok(reply),
    };
    let Some(index) = resolve_index(index, meta.len) else {
        return Ok(Reply::error("ERR index out of range"));
    };
    ks.put_element(Rows::ListItems, key, &meta.position(index), &args[3])?;
    ks.notify(LIST, "lset", key);
    store(ks, key, meta)?;
    Ok(Reply::ok())
}

/// Inserts `value` so that it becomes the element at `index` (`0..=len`), moving the elements
/// on the shorter side of it by one position.
fn insert_at<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
    meta: &mut ListMeta,
    index: u64,
    value: &[u8],
) -> StoreResult<()> {
    if index <= meta.len / 2 {
        // The elements before it move one position towards the head.
        if index > 0 {
            let before = read_range(ks, key, *meta, 0, index - 1)?;
            for (offset, element) in before.iter().enumerate() {
                ks.put_element(
                    Rows::ListItems,
                    key,
                    &position_key(meta.head - 1 + offset as i64),
                    element,
                )?;
            }
        }
        meta.head -= 1;
    } else if index < meta.len {
        // The elements from it on move one position towards the tail.
        let after = read_range(ks, key, *meta, index, meta.len - 1)?;
        for (offset, element) in after.iter().enumerate() {
            ks.put_element(
                Rows::ListItems,
                key,
                &meta.position(index + 1 + offset as u64),
                element,
            )?;
        }
    }
    ks.put_element(Rows::ListItems, key, &meta.position(index), value)?;
    meta.len += 1;
    store(ks, key, *meta)
}

/// Removes the elements at `indexes` (ascending, distinct, in the list), closing the gaps from
/// the shorter side, and writes the record.
fn remove_at<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
    meta: &mut ListMeta,
    indexes: &[u64],
) -> StoreResult<()> {
    let (Some(&lowest), Some(&highest)) = (indexes.first(), indexes.last()) else {
        return Ok(());
    };
    let removed = indexes.len() as u64;
    if meta.len - lowest <= highest + 1 {
        // Survivors from `lowest` on close up towards the head.
        let tail = read_range(ks, key, *meta, lowest, meta.len - 1)?;
        let mut next = lowest;
        let mut doomed = indexes.iter().peekable();
        for (offset, element) in tail.iter().enumerate() {
            let index = lowest + offset as u64;
            if doomed.next_if(|&&i| i == index).is_some() {
                continue;
            }
            if next != index {
                ks.put_element(Rows::ListItems, key, &meta.position(next), element)?;
            }
            next += 1;
        }
        for index in next..meta.len {
            ks.remove_element(Rows::ListItems, key, &meta.position(index))?;
        }
    } else {
        // Survivors up to `highest` close up towards the tail.
        let head = read_range(ks, key, *meta, 0, highest)?;
        let mut next = highest as i64;
        let mut doomed = indexes.iter().rev().peekable();
        for (index, element) in head.iter().enumerate().rev() {
            let index = index as u64;
            if doomed.next_if(|&&i| i == index).is_some() {
                continue;
            }
            if next as u64 != index {
                ks.put_element(Rows::ListItems, key, &meta.position(next as u64), element)?;
            }
            next -= 1;
        }
        for index in 0..removed {
            ks.remove_element(Rows::ListItems, key, &meta.position(index))?;
        }
        meta.head += removed as i64;
    }
    meta.len -= removed;
    store(ks, key, *meta)
}

fn linsert(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let after = if args[2].eq_ignore_ascii_case(b"after") {
        true
    } else if args[2].eq_ignore_ascii_case(b"before") {
        false
    } else {
        return Ok(syntax_error());
    };
    let key = &args[1];
    let mut meta = match list(ks, key)? {
        Err(reply) => return Ok(reply),
        Ok(None) => return Ok(Reply::Integer(0)),
        Ok(Some(meta)) => meta,
    };
    let pivot = &args[3];
    let mut found = None;
    walk(ks, key, meta, false, |index, element| {
        if element == pivot {
            found = Some(index);
        }
        found.is_none()
    })?;
    let Some(index) = found else {
        return Ok(Reply::Integer(-1));
    };
    insert_at(ks, key, &mut meta, index + u64::from(after), &args[4])?;
    ks.notify(LIST, "linsert", key);
    Ok(Reply::Integer(meta.len as i64))
}

fn lrem(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let count = match int_arg(&args[2]) {
        Ok(count) => count,
        Err(reply) => return Ok(reply),
    };
    let key = &args[1];
    let mut meta = match list(ks, key)? {
        Err(reply) => return Ok(reply),
        Ok(None) => return Ok(Reply::Integer(0)),
        Ok(Some(meta)) => meta,
    };
    let wanted = count.unsigned_abs();
    let mut indexes = Vec::new();
    walk(ks, key, meta, count < 0, |index, element| {
        if element == &args[3] {
            indexes.push(index);
        }
        wanted == 0 || (indexes.len() as u64) < wanted
    })?;
    if count < 0 {
        indexes.reverse();
    }
    remove_at(ks, key, &mut meta, &indexes)?;
    if !indexes.is_empty() {
        ks.notify(LIST, "lrem", key);
        if meta.len == 0 {
            ks.notify(GENERIC, "del", key);
        }
    }
    Ok(Reply::Integer(indexes.len() as i64))
}

fn ltrim(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let (start, stop) = match (int_arg(&args[2]), int_arg(&args[3])) {
        (Ok(start), Ok(stop)) => (start, stop),
        (Err(reply), _) | (_, Err(reply)) => return Ok(reply),
    };
    let key = &args[1];
    let mut meta = match list(ks, key)? {
        Err(reply) => return Ok(reply),
        Ok(None) => return Ok(Reply::ok()),
        Ok(Some(meta)) => meta,
    };
    let (first, last) = clamp(start, stop, meta.len).unwrap_or((meta.len, meta.len));
    for index in (0..first).chain(last.saturating_add(1).min(meta.len)..meta.len) {
        ks.remove_element(Rows::ListItems, key, &meta.position(index))?;
    }
    let kept = if first >= meta.len {
        0
    } else {
        last - first + 1
    };
    meta.head += first.min(meta.len) as i64;
    meta.len = kept;
    store(ks, key, meta)?;
    ks.notify(LIST, "ltrim", key);
    if kept == 0 {
        ks.notify(GENERIC, "del", key);
    }
    Ok(Reply::ok())
}

fn lpos(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let mut rank: i64 = 1;
    let mut count: Option<u64> = None;
    let mut maxlen: u64 = 0;
    let mut at = 3;
    while at < args.len() {
        let option = &args[at];
        let has_value = at + 1 < args.len();
        if option.eq_ignore_ascii_case(b"rank") && has_value {
            rank = match int_arg(&args[at + 1]) {
                Ok(0) => {
                    return Ok(Reply::error(
                        "ERR RANK can't be zero: use 1 to start from the first match, 2 from \
                         the second ... or use negative to start from the end of the list",
                    ));
                }
                Ok(rank) => rank,
                Err(reply) => return Ok(reply),
            };
        } else if option.eq_ignore_ascii_case(b"count") && has_value {
            count = match positive(&args[at + 1], "ERR COUNT can't be negative") {
                Ok(count) => Some(count),
                Err(reply) => return Ok(reply),
            };
        } else if option.eq_ignore_ascii_case(b"maxlen") && has_value {
            maxlen = match positive(&args[at + 1], "ERR MAXLEN can't be negative") {
                Ok(maxlen) => maxlen,
                Err(reply) => return Ok(reply),
            };
        } else {
            return Ok(syntax_error());
        }
        at += 2;
    }
    let key = &args[1];
    let meta = match list(ks, key)? {
        Err(reply) => return Ok(reply),
        Ok(None) => {
            return Ok(if count.is_some() {
                Reply::Array(Vec::new())
            } else {
                Reply::Nil
            });
        }
        Ok(Some(meta)) => meta,
    };
    // Redis negates a negative rank in C, where -LONG_MIN stays LONG_MIN: that rank matches
    // from the first match at the tail.
    let skip = if rank == i64::MIN {
        0
    } else {
        rank.unsigned_abs() - 1
    };
    let mut matches = 0u64;
    let mut examined = 0u64;
    let mut found = Vec::new();
    walk(ks, key, meta, rank < 0, |index, element| {
        if maxlen != 0 && examined >= maxlen {
            return false;
        }
        examined += 1;
        if element == &args[2] {
            matches += 1;
            if matches > skip {
                found.push(Reply::Integer(index as i64));
                return match count {
                    None => false,
                    Some(0) => true,
                    Some(count) => (found.len() as u64) < count,
                };
            }
        }
        true
    })?;
    Ok(match count {
        Some(_) => Reply::Array(found),
        None => found.pop().unwrap_or(Reply::Nil),
    })
}

fn lmove(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let (from, to) = match (End::parse(&args[3]), End::parse(&args[4])) {
        (Ok(from), Ok(to)) => (from, to),
        (Err(reply), _) | (_, Err(reply)) => return Ok(reply),
    };
    move_element(ks, &args[1], &args[2], from, to)
}

/// LMOVE and RPOPLPUSH: pops from `from` of `source` and pushes at `to` of `destination`; the
/// element moved, nil when `source` is empty.
pub fn move_element(
    ks: &mut dyn Keyspace,
    source: &[u8],
    destination: &[u8],
    from: End,
    to: End,
) -> StoreResult<Reply> {
    let mut meta = match list(ks, source)? {
        Err(reply) => return Ok(reply),
        Ok(None) => return Ok(Reply::Nil),
        Ok(Some(meta)) => meta,
    };
    if let Err(reply) = list(ks, destination)? {
        return Ok(reply);
    }
    let Some(element) = pop_values(ks, source, &mut meta, from, 1)?.pop() else {
        return Ok(Reply::Nil);
    };
    let mut target = match list(ks, destination)? {
        Ok(meta) => meta.unwrap_or(ListMeta { len: 0, head: 0 }),
        Err(reply) => return Ok(reply),
    };
    push_values(
        ks,
        destination,
        &mut target,
        to,
        std::slice::from_ref(&element),
    )?;
    Ok(Reply::Bulk(element))
}

fn lmpop(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let (keys, end, count) = match mpop_args(args, |word| End::parse(word).ok()) {
        Ok(parsed) => parsed,
        Err(reply) => return Ok(reply),
    };
    for key in keys {
        let mut meta = match list(ks, key)? {
            Err(reply) => return Ok(reply),
            Ok(None) => continue,
            Ok(Some(meta)) => meta,
        };
        let popped = pop_values(ks, key, &mut meta, end, count)?;
        return Ok(Reply::Array(vec![
            Reply::Bulk(key.clone()),
            Reply::Array(popped.into_iter().map(Reply::Bulk).collect()),
        ]));
    }
    Ok(Reply::NilArray)
}

/// BLPOP and BRPOP, not blocking: the first non-empty list's first (last) element with its
/// key, nil when every list is empty.
fn blocking_pop(ks: &mut dyn Keyspace, args: &[Bytes], end: End) -> StoreResult<Reply> {
    let (keys, timeout) = args[1..].split_at(args.len() - 2);
    if let Err(reply) = parse_timeout(&timeout[0], ks.now_ms()) {
        return Ok(reply);
    }
    for key in keys {
        let mut meta = match list(ks, key)? {
            Err(reply) => return Ok(reply),
            Ok(None) => continue,
            Ok(Some(meta)) => meta,
        };
        if let Some(element) = pop_values(ks, key, &mut meta, end, 1)?.pop() {
            return Ok(Reply::Array(vec![
                Reply::Bulk(key.clone()),
                Reply::Bulk(element),
            ]));
        }
    }
    Ok(Reply::NilArray)
}

fn blmove(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let (from, to) = match (End::parse(&args[3]), End::parse(&args[4])) {
        (Ok(from), Ok(to)) => (from, to),
        (Err(reply), _) | (_, Err(reply)) => return Ok(reply),
    };
    if let Err(reply) = parse_timeout(&args[5], ks.now_ms()) {
        return Ok(reply);
    }
    move_element(ks, &args[1], &args[2], from, to)
}

fn brpoplpush(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    if let Err(reply) = parse_timeout(&args[3], ks.now_ms()) {
        return Ok(reply);
    }
    move_element(ks, &args[1], &args[2], End::Right, End::Left)
}

/// BLMPOP: its timeout, then LMPOP's arguments.
fn blmpop(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    if let Err(reply) = parse_timeout(&args[1], ks.now_ms()) {
        return Ok(reply);
    }
    lmpop(ks, &args[1..])
}

/// What OBJECT ENCODING answers for a list: Redis 7.0 keeps every list as a quicklist.
pub fn encoding() -> &'static str {
    "quicklist"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::commands::test_support::{exec, strings};
    use crate::store::keyspace::testing::TestStore;

    /// A model list beside the store: random pushes, pops, inserts, removals, trims and sets
    /// leave both with the same elements.
    #[test]
    fn lists_follow_a_model_through_every_change() {
        let db = TestStore::new();
        let mut model: std::collections::VecDeque<String> = Default::default();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        for index in 1..3_000u64 {
            let value = format!("v{}", next(6));
            let line = match next(9) {
                0 | 1 => {
                    model.push_front(value.clone());
                    format!("LPUSH l {value}")
                }
                2 | 3 => {
                    model.push_back(value.clone());
                    format!("RPUSH l {value}")
                }
                4 => {
                    model.pop_front();
                    "LPOP l".into()
                }
                5 => {
                    model.pop_back();
                    "RPOP l".into()
                }
                6 => {
                    let pivot = format!("v{}", next(6));
                    let after = next(2) == 1;
                    if let Some(at) = model.iter().position(|v| *v == pivot) {
                        model.insert(at + usize::from(after), value.clone());
                    }
                    let side = if after { "AFTER" } else { "BEFORE" };
                    format!("LINSERT l {side} {pivot} {value}")
                }
                7 => {
                    let count = next(5) as i64 - 2;
                    let mut removed = 0;
                    let wanted = count.unsigned_abs() as usize;
                    let positions: Vec<usize> = if count < 0 {
                        (0..model.len()).rev().collect()
                    } else {
                        (0..model.len()).collect()
                    };
                    let mut doomed = Vec::new();
                    for at in positions {
                        if model[at] == value && (wanted == 0 || removed < wanted) {
                            doomed.push(at);
                            removed += 1;
                        }
                    }
                    doomed.sort_unstable();
                    for at in doomed.into_iter().rev() {
                        model.remove(at);
                    }
                    format!("LREM l {count} {value}")
                }
                _ => {
                    if model.len() > 40 {
                        let start = next(3) as usize;
                        model.drain(..start);
                        let len = model.len();
                        model.truncate(len - 1);
                        format!("LTRIM l {start} -2")
                    } else if !model.is_empty() {
                        let at = next(model.len() as u64) as usize;
                        model[at] = value.clone();
                        format!("LSET l {at} {value}")
                    } else {
                        "LLEN l".into()
                    }
                }
            };
            exec(&db, index, &line);
            let got = strings(exec(&db, index, "LRANGE l 0 -1"));
            assert_eq!(got, Vec::from(model.clone()), "after {line}");
        }
    }

    #[test]
    fn pops_with_counts_and_moves() {
        let db = TestStore::new();
        exec(&db, 1, "RPUSH l a b c d e");
        assert_eq!(strings(exec(&db, 2, "LPOP l 2")), ["a", "b"]);
        assert_eq!(strings(exec(&db, 3, "RPOP l 5")), ["e", "d", "c"]);
        assert_eq!(exec(&db, 4, "EXISTS l"), Reply::Integer(0));
        assert_eq!(exec(&db, 5, "LPOP l 1"), Reply::NilArray);
        exec(&db, 6, "RPUSH l a b c");
        assert_eq!(exec(&db, 7, "LMOVE l l LEFT RIGHT"), Reply::bulk_str("a"));
        assert_eq!(strings(exec(&db, 8, "LRANGE l 0 -1")), ["b", "c", "a"]);
        assert_eq!(exec(&db, 9, "RPOPLPUSH l m"), Reply::bulk_str("a"));
        assert_eq!(
            exec(&db, 10, "LMPOP 2 none l RIGHT COUNT 5"),
            Reply::Array(vec![
                Reply::bulk_str("l"),
                Reply::Array(vec![Reply::bulk_str("c"), Reply::bulk_str("b")]),
            ])
        );
        assert_eq!(exec(&db, 11, "LMPOP 1 l LEFT"), Reply::NilArray);
        assert_eq!(strings(exec(&db, 12, "LRANGE m 0 -1")), ["a"]);
    }
}
