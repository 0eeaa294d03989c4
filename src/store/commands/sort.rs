//! SORT and SORT_RO (`BY`, `LIMIT`, `GET`, `ASC`/`DESC`, `ALPHA`, `STORE`) over lists, sets and
//! sorted sets, with Redis 7.0's order, replies and errors.
//!
//! # Order
//! Numeric sorting reads each element (or its `BY` value) as `strtod` does and breaks ties by
//! the elements' bytes, so the result is deterministic, as Redis's is. `ALPHA` compares bytes up
//! to a NUL byte (Redis's `strcoll` in the C locale). A `BY` pattern without `*` skips sorting:
//! a list keeps its order and a sorted set its score order (both from the end with `DESC`), and a set
//! is sorted `ALPHA` when the result is stored (Redis forces that too, so replicas agree).
//!
//! # Keys
//! `BY` and `GET` patterns read other keys (`*` replaced by the element, `->field` for a hash
//! field, `#` for the element itself); the state machine holds every key, so they always can.

use bytes::Bytes;

use super::ReplySize::Data;
use super::{KeyspaceCommand, c_str, command, execute, int_arg, syntax_error, wrong_type};
use crate::resp::Reply;
use crate::store::keyspace::{Keyspace, Kind, StoreResult};

/// SORT (through the log unless it has no `STORE`) and SORT_RO.
pub const COMMANDS: &[KeyspaceCommand] = &[
    command("sort", |ks, args| sort(ks, args, false), Data).logged_unless(without_store),
    command("sort_ro", |ks, args| sort(ks, args, true), Data),
];

/// Whether a SORT call has no `STORE` (so it only reads).
fn without_store(args: &[Bytes]) -> bool {
    !args
        .iter()
        .skip(2)
        .any(|arg| c_str(arg).eq_ignore_ascii_case(b"store"))
}

/// One element being sorted: the element, and what it sorts by.
struct Item {
    element: Bytes,
    score: f64,
    by: Option<Bytes>,
}

/// What a pattern (`BY`, `GET`) reads for `element`: `#` is the element; a pattern without `*`
/// reads nothing; otherwise the string at the key with `*` replaced, or the field after `->`
/// of the hash there.
fn lookup<K: Keyspace + ?Sized>(
    ks: &mut K,
    pattern: &[u8],
    element: &Bytes,
) -> StoreResult<Option<Bytes>> {
    let pattern = c_str(pattern);
    if pattern == b"#" {
        return Ok(Some(element.clone()));
    }
    let Some(star) = pattern.iter().position(|&b| b == b'*') else {
        return Ok(None);
    };
    let rest = &pattern[star + 1..];
    let arrow = rest
        .windows(2)
        .position(|w| w == b"->")
        .filter(|&at| at + 2 < rest.len());
    let (suffix, field) = match arrow {
        Some(at) => (&rest[..at], Some(&rest[at + 2..])),
        None => (rest, None),
    };
    let mut key = pattern[..star].to_vec();
    key.extend_from_slice(c_str(element));
    key.extend_from_slice(suffix);
    let Some(record) = ks.record(&key)? else {
        return Ok(None);
    };
    Ok(match (field, record.kind) {
        (Some(field), Kind::Hash) => ks.field(&key, field)?,
        (None, Kind::String) => Some(record.payload),
        _ => None,
    })
}

/// `strtod` over a whole value (leading spaces allowed, an empty value is 0, read up to a NUL
/// byte); `None` when Redis answers that a score cannot be converted (trailing bytes, NaN, out
/// of range).
fn sort_score(value: &[u8]) -> Option<f64> {
    let value = c_str(value);
    if value.is_empty() {
        return Some(0.0);
    }
    let start = value
        .iter()
        .position(|&b| !matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))?;
    crate::redis::double::parse_strict(&value[start..])
}

fn sort(ks: &mut dyn Keyspace, args: &[Bytes], read_only: bool) -> StoreResult<Reply> {
    let key = &args[1];
    let (mut desc, mut alpha) = (false, false);
    let (mut offset, mut count) = (0i64, -1i64);
    let mut by: Option<Bytes> = None;
    let mut dont_sort = false;
    let mut gets: Vec<Bytes> = Vec::new();
    let mut store: Option<Bytes> = None;
    let mut at = 2;
    while at < args.len() {
        let option = c_str(&args[at]);
        let left = args.len() - at - 1;
        if option.eq_ignore_ascii_case(b"asc") {
            desc = false;
        } else if option.eq_ignore_ascii_case(b"desc") {
            desc = true;
        } else if option.eq_ignore_ascii_case(b"alpha") {
            alpha = true;
        } else if option.eq_ignore_ascii_case(b"limit") && left >= 2 {
            match (int_arg(&args[at + 1]), int_arg(&args[at + 2])) {
                (Ok(o), Ok(c)) => (offset, count) = (o, c),
                (Err(reply), _) | (_, Err(reply)) => return Ok(reply),
            }
            at += 2;
        } else if !read_only && option.eq_ignore_ascii_case(b"store") && left >= 1 {
            store = Some(args[at + 1].clone());
            at += 1;
        } else if option.eq_ignore_ascii_case(b"by") && left >= 1 {
            let pattern = args[at + 1].clone();
            dont_sort = !c_str(&pattern).contains(&b'*');
            by = Some(pattern);
            at += 1;
        } else if option.eq_ignore_ascii_case(b"get") && left >= 1 {
            gets.push(args[at + 1].clone());
            at += 1;
        } else {
            return Ok(syntax_error());
        }
        at += 1;
    }
    let kind = match ks.record(key)? {
        None => None,
        Some(record) if matches!(record.kind, Kind::List | Kind::Set | Kind::ZSet) => {
            Some(record.kind)
        }
        Some(_) => return Ok(wrong_type()),
    };
    if dont_sort && kind == Some(Kind::Set) && store.is_some() {
        // A set's own order is not the same everywhere: sorted, as Redis forces it.
        dont_sort = false;
        alpha = true;
        by = None;
    }
    let read = |name: &'static [u8], extra: &[&'static [u8]]| {
        let mut line = vec![Bytes::from_static(name), key.clone()];
        line.extend(extra.iter().map(|a| Bytes::from_static(a)));
        line
    };
    let elements = match kind {
        None => Vec::new(),
        Some(Kind::List) => bulks(execute(ks, &read(b"LRANGE", &[b"0", b"-1"]))?),
        Some(Kind::Set) => bulks(execute(ks, &read(b"SMEMBERS", &[]))?),
        Some(_) => bulks(execute(ks, &read(b"ZRANGE", &[b"0", b"-1"]))?),
    };
    let mut elements = elements;
    if dont_sort && desc && matches!(kind, Some(Kind::List | Kind::ZSet)) {
        // Unsorted, a list or a sorted set still reads from its end with DESC.
        elements.reverse();
    }
    let mut items = Vec::with_capacity(elements.len());
    for element in elements {
        let by_value = match &by {
            Some(pattern) if !dont_sort => lookup(ks, pattern, &element)?,
            _ => None,
        };
        let score = if dont_sort || alpha {
            0.0
        } else {
            // By the BY value (a missing one counts as 0), or by the element itself.
            let source = if by.is_some() {
                by_value.as_deref()
            } else {
                Some(element.as_ref())
            };
            match source.map_or(Some(0.0), sort_score) {
                Some(score) => score,
                None => {
                    return Ok(Reply::error(
                        "ERR One or more scores can't be converted into double",
                    ));
                }
            }
        };
        items.push(Item {
            element,
            score,
            by: by_value,
        });
    }
    if !dont_sort {
        let by_pattern = by.is_some();
        items.sort_by(|a, b| {
            let order = if !alpha {
                a.score
                    .partial_cmp(&b.score)
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then_with(|| a.element.cmp(&b.element))
            } else if by_pattern {
                // Elements without a BY value come first.
                match (&a.by, &b.by) {
                    (None, None) => std::cmp::Ordering::Equal,
                    (None, Some(_)) => std::cmp::Ordering::Less,
                    (Some(_), None) => std::cmp::Ordering::Greater,
                    (Some(x), Some(y)) => c_str(x).cmp(c_str(y)),
                }
            } else {
                c_str(&a.element).cmp(c_str(&b.element))
            };
            if desc { order.reverse() } else { order }
        });
    }
    // LIMIT as Redis clamps it.
    let len = items.len() as i64;
    let start = offset.max(0);
    let mut end = if count < 0 {
        len - 1
    } else {
        start.saturating_add(count) - 1
    };
    let (start, end) = if start >= len {
        (len - 1, len - 2)
    } else {
        if end >= len {
            end = len - 1;
        }
        (start, end)
    };
    let chosen: &[Item] = if start >= 0 && end >= start {
        &items[start as usize..=end as usize]
    } else {
        &[]
    };
    let mut out: Vec<Option<Bytes>> = Vec::new();
    for item in chosen {
        if gets.is_empty() {
            out.push(Some(item.element.clone()));
        }
        for pattern in &gets {
            out.push(lookup(ks, pattern, &item.element)?);
        }
    }
    let Some(destination) = store else {
        return Ok(Reply::Array(
            out.into_iter()
                .map(|value| value.map_or(Reply::Nil, Reply::Bulk))
                .collect(),
        ));
    };
    let values: Vec<Bytes> = out
        .iter()
        .map(|value| value.clone().unwrap_or_default())
        .collect();
    super::lists::store_sorted(ks, &destination, &values)?;
    Ok(Reply::Integer(out.len() as i64))
}

/// The bulk strings of an array or set reply.
fn bulks(reply: Reply) -> Vec<Bytes> {
    match reply {
        Reply::Array(items) | Reply::Set(items) => items
            .into_iter()
            .filter_map(|item| match item {
                Reply::Bulk(bytes) => Some(bytes),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}
