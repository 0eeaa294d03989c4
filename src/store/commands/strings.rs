//! String commands: GET, SET and its options, SETNX/SETEX/PSETEX, GETSET/GETDEL/GETEX, the
//! INCR family and INCRBYFLOAT, MGET/MSET/MSETNX, APPEND, STRLEN, GETRANGE (and its old name
//! SUBSTR)/SETRANGE and LCS.
//!
//! Expiry follows Redis 7.0: commands that replace the value (SET without KEEPTTL, SETNX,
//! SETEX, PSETEX, GETSET, MSET, MSETNX) drop the old deadline; commands that modify it in
//! place (APPEND, SETRANGE, INCR…, INCRBYFLOAT) keep it; GETEX changes it only when asked.

use bytes::Bytes;

use super::ReplySize::{Data, DataIf, Small};
use super::{
    KeyspaceCommand, command, int_arg, not_an_integer, string_value, syntax_error, typed_record,
};
use crate::redis::long_double::{self, LongDouble, Parsed};
use crate::redis::table;
use crate::resp::Reply;
use crate::resp::string2ll;
use crate::store::keyspace::{Keyspace, Kind, StoreResult};
use crate::store::notify::{GENERIC, STRING};

/// The largest string a command may build: Redis's default `proto-max-bulk-len` (512 MiB).
pub const MAX_STRING_LEN: u64 = 512 * 1024 * 1024;

/// The string commands: one line each (see [`KeyspaceCommand`]).
pub const COMMANDS: &[KeyspaceCommand] = &[
    command("get", |ks, args| get(ks, &args[1]), Data),
    command("set", set, DataIf(set_returns_old_value)),
    command("setnx", setnx, Small),
    command("setex", |ks, args| set_with_deadline(ks, args, true), Small),
    command(
        "psetex",
        |ks, args| set_with_deadline(ks, args, false),
        Small,
    ),
    command("getset", getset, Data),
    command("getdel", getdel, Data),
    command("getex", getex, Data),
    command("incr", |ks, args| incr_by(ks, &args[1], 1), Small),
    command("decr", |ks, args| incr_by(ks, &args[1], -1), Small),
    command("incrby", incrby, Small),
    command("decrby", decrby, Small),
    command(
        "incrbyfloat",
        |ks, args| incr_by_float(ks, &args[1], &args[2]),
        Small,
    ),
    command("mget", mget, Data),
    command("mset", |ks, args| mset(ks, args, false), Small),
    command("msetnx", |ks, args| mset(ks, args, true), Small),
    command("append", |ks, args| append(ks, &args[1], &args[2]), Small),
    command("strlen", strlen, Small),
    command("getrange", getrange, Data),
    command("substr", getrange, Data),
    command("setrange", setrange, Small),
    command("lcs", lcs, Data),
];

/// Whether `SET` was given `GET` (its reply is then the old value).
fn set_returns_old_value(args: &[Bytes]) -> bool {
    args.iter().skip(3).any(|a| a.eq_ignore_ascii_case(b"get"))
}

fn setnx(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    if ks.record(&args[1])?.is_some() {
        return Ok(Reply::Integer(0));
    }
    ks.put_string(&args[1], &args[2], None)?;
    ks.notify(STRING, "set", &args[1]);
    Ok(Reply::Integer(1))
}

/// SETEX (`seconds`) and PSETEX.
fn set_with_deadline(ks: &mut dyn Keyspace, args: &[Bytes], seconds: bool) -> StoreResult<Reply> {
    let name = if seconds { "setex" } else { "psetex" };
    match expire_deadline(&args[2], seconds, true, ks.now_ms(), name) {
        Ok(deadline) => {
            ks.put_string(&args[1], &args[3], Some(deadline))?;
            ks.notify(STRING, "set", &args[1]);
            ks.notify(GENERIC, "expire", &args[1]);
            Ok(Reply::ok())
        }
        Err(reply) => Ok(reply),
    }
}

fn getset(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    Ok(match string_value(ks, &args[1])? {
        Ok(old) => {
            ks.put_string(&args[1], &args[2], None)?;
            ks.notify(STRING, "set", &args[1]);
            old.map_or(Reply::Nil, Reply::Bulk)
        }
        Err(reply) => reply,
    })
}

fn getdel(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    Ok(match string_value(ks, &args[1])? {
        Ok(Some(value)) => {
            ks.delete(&args[1])?;
            ks.notify(GENERIC, "del", &args[1]);
            Reply::Bulk(value)
        }
        Ok(None) => Reply::Nil,
        Err(reply) => reply,
    })
}

fn incrby(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    match int_arg(&args[2]) {
        Ok(delta) => incr_by(ks, &args[1], delta),
        Err(reply) => Ok(reply),
    }
}

fn decrby(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    match int_arg(&args[2]) {
        Ok(i64::MIN) => Ok(Reply::error("ERR decrement would overflow")),
        Ok(delta) => incr_by(ks, &args[1], -delta),
        Err(reply) => Ok(reply),
    }
}

fn mget(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let mut out = Vec::with_capacity(args.len() - 1);
    for key in &args[1..] {
        // MGET answers nil for keys of other types instead of WRONGTYPE.
        out.push(match string_value(ks, key)? {
            Ok(Some(value)) => Reply::Bulk(value),
            _ => Reply::Nil,
        });
    }
    Ok(Reply::Array(out))
}

/// MSET, and MSETNX (`nx`): all or nothing, any existing key (of any type) cancels every write.
fn mset(ks: &mut dyn Keyspace, args: &[Bytes], nx: bool) -> StoreResult<Reply> {
    if args.len().is_multiple_of(2) {
        return Ok(table::wrong_arity_error_for(if nx {
            "msetnx"
        } else {
            "mset"
        }));
    }
    if nx {
        for pair in args[1..].chunks(2) {
            if ks.record(&pair[0])?.is_some() {
                return Ok(Reply::Integer(0));
            }
        }
    }
    for pair in args[1..].chunks(2) {
        ks.put_string(&pair[0], &pair[1], None)?;
        ks.notify(STRING, "set", &pair[0]);
    }
    Ok(if nx { Reply::Integer(1) } else { Reply::ok() })
}

fn strlen(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    Ok(match string_value(ks, &args[1])? {
        Ok(value) => Reply::Integer(value.map_or(0, |v| v.len() as i64)),
        Err(reply) => reply,
    })
}

/// `-ERR string exceeds maximum allowed size (proto-max-bulk-len)`.
fn too_long() -> Reply {
    Reply::error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
}

fn get<K: Keyspace + ?Sized>(ks: &mut K, key: &[u8]) -> StoreResult<Reply> {
    Ok(match string_value(ks, key)? {
        Ok(Some(value)) => Reply::Bulk(value),
        Ok(None) => Reply::Nil,
        Err(reply) => reply,
    })
}

fn incr_by<K: Keyspace + ?Sized>(ks: &mut K, key: &[u8], delta: i64) -> StoreResult<Reply> {
    let record = match typed_record(ks, key, Kind::String)? {
        Ok(record) => record,
        Err(reply) => return Ok(reply),
    };
    let (current, expire) = match &record {
        Some(record) => match string2ll(&record.payload) {
            Some(n) => (n, record.expire_at_ms),
            None => return Ok(not_an_integer()),
        },
        None => (0, None),
    };
    let Some(new) = current.checked_add(delta) else {
        return Ok(Reply::error("ERR increment or decrement would overflow"));
    };
    let mut digits = itoa::Buffer::new();
    ks.put_string(key, digits.format(new).as_bytes(), expire)?;
    ks.notify(STRING, "incrby", key);
    Ok(Reply::Integer(new))
}

/// INCRBYFLOAT in Redis's x87 80-bit `long double` arithmetic, reproduced exactly by the
/// software model shared with HINCRBYFLOAT ([`long_double`]): `strtold` parsing, one
/// round-to-nearest-even addition, `%.17Lf` with trailing zeros stripped. `f64` would print
/// `0.30000000000000004` for 0.1 + 0.2 (Redis: `0.3`) and `1000.1` for 1000 + 0.1 (Redis:
/// `1000.09999999999999998`). The key keeps its deadline.
///
/// Where redraft can differ from a Redis binary: only from Redis built where `long double`
/// is not the x87 format (aarch64's 128-bit quad, or plain `double`), which prints other
/// digits; redraft always answers as x86-64 Redis (Debian's, which the transcripts check).
fn incr_by_float<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
    increment: &[u8],
) -> StoreResult<Reply> {
    let record = match typed_record(ks, key, Kind::String)? {
        Ok(record) => record,
        Err(reply) => return Ok(reply),
    };
    let current = match &record {
        Some(record) => long_double::parse(&record.payload),
        None => Some(Parsed::Finite(LongDouble::ZERO)),
    };
    // The stored value is checked before the increment, as Redis does.
    let (Some(current), Some(increment)) = (current, long_double::parse(increment)) else {
        return Ok(Reply::error("ERR value is not a valid float"));
    };
    // `inf` parses; any sum involving it is infinite or NaN.
    let sum = match (current, increment) {
        (Parsed::Finite(a), Parsed::Finite(b)) => a.checked_add(b),
        _ => None,
    };
    let Some(sum) = sum else {
        return Ok(Reply::error("ERR increment would produce NaN or Infinity"));
    };
    let text = Bytes::from(sum.format_human());
    ks.put_string(key, &text, record.and_then(|r| r.expire_at_ms))?;
    ks.notify(STRING, "incrbyfloat", key);
    Ok(Reply::Bulk(text))
}

fn append<K: Keyspace + ?Sized>(ks: &mut K, key: &[u8], suffix: &[u8]) -> StoreResult<Reply> {
    let record = match typed_record(ks, key, Kind::String)? {
        Ok(record) => record,
        Err(reply) => return Ok(reply),
    };
    let Some(record) = record else {
        ks.put_string(key, suffix, None)?;
        ks.notify(STRING, "append", key);
        return Ok(Reply::Integer(suffix.len() as i64));
    };
    let total = record.payload.len() as u64 + suffix.len() as u64;
    if total > MAX_STRING_LEN {
        return Ok(too_long());
    }
    let mut value = Vec::with_capacity(total as usize);
    value.extend_from_slice(&record.payload);
    value.extend_from_slice(suffix);
    ks.put_string(key, &value, record.expire_at_ms)?;
    ks.notify(STRING, "append", key);
    Ok(Reply::Integer(value.len() as i64))
}

/// GETRANGE with Redis 7.0's index rules: negative indexes count from the end, both ends are
/// clamped into the string, and a range that ends up empty gives `""`.
fn getrange(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let (start, end) = match (int_arg(&args[2]), int_arg(&args[3])) {
        (Ok(start), Ok(end)) => (start, end),
        (Err(reply), _) | (_, Err(reply)) => return Ok(reply),
    };
    let value = match string_value(ks, &args[1])? {
        Ok(value) => value.unwrap_or_default(),
        Err(reply) => return Ok(reply),
    };
    let empty = Reply::Bulk(Bytes::new());
    if start < 0 && end < 0 && start > end {
        return Ok(empty);
    }
    // At most 512 MiB, so these sums cannot overflow.
    let len = value.len() as i64;
    let (start, end) = clamp_range(start, end, len);
    if start > end || len == 0 {
        return Ok(empty);
    }
    Ok(Reply::Bulk(value.slice(start as usize..=end as usize)))
}

/// Redis's string range rule (GETRANGE, BITCOUNT, BITPOS): a negative index counts from the
/// end of `len` items, then both ends are clamped into `0..len` (the range is empty when the
/// start ends up past the end).
pub fn clamp_range(mut start: i64, mut end: i64, len: i64) -> (i64, i64) {
    if start < 0 {
        start += len;
    }
    if end < 0 {
        end += len;
    }
    (start.max(0), end.max(0).min(len - 1))
}

/// SETRANGE: overwrite from `offset`, zero-padding a shorter string; the key keeps its
/// deadline. Memory is allocated only once the result is known to fit in 512 MiB.
fn setrange(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let (key, patch) = (&args[1], &args[3]);
    let offset = match int_arg(&args[2]) {
        Ok(offset) if offset < 0 => return Ok(Reply::error("ERR offset is out of range")),
        Ok(offset) => offset as u64,
        Err(reply) => return Ok(reply),
    };
    let record = match typed_record(ks, key, Kind::String)? {
        Ok(record) => record,
        Err(reply) => return Ok(reply),
    };
    if patch.is_empty() {
        // Nothing to write: the current length, and no key is created.
        return Ok(Reply::Integer(record.map_or(0, |r| r.payload.len() as i64)));
    }
    let end = offset.saturating_add(patch.len() as u64);
    if end > MAX_STRING_LEN {
        return Ok(too_long());
    }
    let (old, expire) = match &record {
        Some(record) => (&record.payload[..], record.expire_at_ms),
        None => (&[][..], None),
    };
    let (offset, end) = (offset as usize, end as usize);
    let mut value = Vec::with_capacity(old.len().max(end));
    value.extend_from_slice(old);
    if value.len() < end {
        value.resize(end, 0);
    }
    value[offset..end].copy_from_slice(patch);
    ks.put_string(key, &value, expire)?;
    ks.notify(STRING, "setrange", key);
    Ok(Reply::Integer(value.len() as i64))
}

/// GETEX: GET that may also set (EX/PX/EXAT/PXAT) or remove (PERSIST) the deadline.
fn getex(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let key = &args[1];
    let mut persist = false;
    // (unit is seconds, relative, argument)
    let mut expire: Option<(bool, bool, &Bytes)> = None;
    let mut j = 2;
    while j < args.len() {
        let opt = args[j].to_ascii_uppercase();
        let next = args.get(j + 1);
        // As in Redis, an option may repeat but not mix with another one.
        let unit = match opt.as_slice() {
            b"EX" => Some((true, true)),
            b"PX" => Some((false, true)),
            b"EXAT" => Some((true, false)),
            b"PXAT" => Some((false, false)),
            _ => None,
        };
        match (opt.as_slice(), unit, next) {
            (b"PERSIST", _, _) if expire.is_none() => persist = true,
            (_, Some((seconds, relative)), Some(next))
                if !persist && expire.is_none_or(|e| (e.0, e.1) == (seconds, relative)) =>
            {
                expire = Some((seconds, relative, next));
                j += 1;
            }
            _ => return Ok(syntax_error()),
        }
        j += 1;
    }
    let record = match typed_record(ks, key, Kind::String)? {
        Ok(Some(record)) => record,
        Ok(None) => return Ok(Reply::Nil),
        Err(reply) => return Ok(reply),
    };
    let now = ks.now_ms();
    match expire {
        Some((seconds, relative, arg)) => {
            match expire_deadline(arg, seconds, relative, now, "getex") {
                // EXAT/PXAT in the past: the key goes at once.
                Ok(deadline) if deadline <= now => {
                    ks.delete(key)?;
                    ks.notify(GENERIC, "del", key);
                }
                Ok(deadline) => {
                    ks.set_expiry(key, Some(deadline))?;
                    ks.notify(GENERIC, "expire", key);
                }
                Err(reply) => return Ok(reply),
            }
        }
        // Only a key that has a deadline is changed (and its revision bumped).
        None if persist && record.expire_at_ms.is_some() => {
            ks.set_expiry(key, None)?;
            ks.notify(GENERIC, "persist", key);
        }
        None => {}
    }
    Ok(Reply::Bulk(record.payload))
}
/// The expiry options shared by SET and GETEX.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpireOption {
    /// No option: SET removes any deadline, GETEX leaves it.
    None,
    /// `KEEPTTL`.
    Keep,
    /// `PERSIST` (GETEX).
    Persist,
    /// `EX`/`PX`/`EXAT`/`PXAT`, already an absolute deadline in ms.
    At(i64),
}

/// Turns an `EX`/`PX`/`EXAT`/`PXAT` argument into an absolute deadline as Redis 7.0 does, with
/// its error texts.
pub fn expire_deadline(
    value: &[u8],
    seconds: bool,
    relative: bool,
    now_ms: i64,
    command: &str,
) -> Result<i64, Reply> {
    let invalid = || Reply::error(format!("ERR invalid expire time in '{command}' command"));
    let n = int_arg(value)?;
    if n <= 0 || (seconds && n > i64::MAX / 1000) {
        return Err(invalid());
    }
    let mut ms = if seconds { n * 1000 } else { n };
    if relative {
        ms = ms.wrapping_add(now_ms);
    }
    if ms <= 0 {
        return Err(invalid());
    }
    Ok(ms)
}

fn set(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let (key, value) = (&args[1], &args[2]);
    let (mut nx, mut xx, mut get, mut keep_ttl) = (false, false, false, false);
    // (unit is seconds, relative, argument)
    let mut expire: Option<(bool, bool, &Bytes)> = None;
    let mut j = 3;
    while j < args.len() {
        let opt = args[j].to_ascii_uppercase();
        let next = args.get(j + 1);
        let has_expire = expire.is_some();
        match (opt.as_slice(), next) {
            (b"NX", _) if !xx => nx = true,
            (b"XX", _) if !nx => xx = true,
            (b"GET", _) => get = true,
            (b"KEEPTTL", _) if !has_expire => keep_ttl = true,
            (b"EX", Some(next)) if !keep_ttl && expire.is_none_or(|e| e.0 && e.1) => {
                expire = Some((true, true, next));
                j += 1;
            }
            (b"PX", Some(next)) if !keep_ttl && expire.is_none_or(|e| !e.0 && e.1) => {
                expire = Some((false, true, next));
                j += 1;
            }
            (b"EXAT", Some(next)) if !keep_ttl && expire.is_none_or(|e| e.0 && !e.1) => {
                expire = Some((true, false, next));
                j += 1;
            }
            (b"PXAT", Some(next)) if !keep_ttl && expire.is_none_or(|e| !e.0 && !e.1) => {
                expire = Some((false, false, next));
                j += 1;
            }
            _ => return Ok(syntax_error()),
        }
        j += 1;
    }
    let deadline = match expire {
        Some((seconds, relative, arg)) => {
            match expire_deadline(arg, seconds, relative, ks.now_ms(), "set") {
                Ok(ms) => Some(ms),
                Err(reply) => return Ok(reply),
            }
        }
        None => None,
    };
    let old = if get {
        match string_value(ks, key)? {
            Ok(old) => Some(old),
            Err(reply) => return Ok(reply),
        }
    } else {
        None
    };
    let existing = ks.record(key)?;
    if (nx && existing.is_some()) || (xx && existing.is_none()) {
        return Ok(match old {
            Some(old) => old.map_or(Reply::Nil, Reply::Bulk),
            None => Reply::Nil,
        });
    }
    let new_deadline = match deadline {
        Some(ms) => Some(ms),
        None if keep_ttl => existing.and_then(|r| r.expire_at_ms),
        None => None,
    };
    ks.put_string(key, value, new_deadline)?;
    ks.notify(STRING, "set", key);
    if let Some(ms) = new_deadline
        && ms <= ks.now_ms()
    {
        // A deadline already past (EXAT/PXAT in the past): the key is gone at once.
        ks.delete(key)?;
        ks.notify(GENERIC, "del", key);
    } else if deadline.is_some() {
        ks.notify(GENERIC, "expire", key);
    }
    Ok(match old {
        Some(old) => old.map_or(Reply::Nil, Reply::Bulk),
        None => Reply::ok(),
    })
}

/// LCS: the longest common subsequence of two strings (missing keys are empty), as the string
/// itself, its length (LEN) or the matching ranges (IDX, MINMATCHLEN, WITHMATCHLEN), by
/// Redis 7.0's dynamic programming and backtracking, so ties resolve as Redis resolves them.
fn lcs(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let a = ks.record(&args[1])?;
    let b = ks.record(&args[2])?;
    let (a, b) = match (a, b) {
        (Some(r), _) | (_, Some(r)) if r.kind != Kind::String => {
            return Ok(Reply::error(
                "ERR The specified keys must contain string values",
            ));
        }
        (a, b) => (
            a.map(|r| r.payload).unwrap_or_default(),
            b.map(|r| r.payload).unwrap_or_default(),
        ),
    };
    let (mut get_len, mut get_idx, mut with_match_len) = (false, false, false);
    let mut min_match_len: i64 = 0;
    let mut j = 3;
    while j < args.len() {
        let opt = args[j].to_ascii_uppercase();
        match opt.as_slice() {
            b"IDX" => get_idx = true,
            b"LEN" => get_len = true,
            b"WITHMATCHLEN" => with_match_len = true,
            b"MINMATCHLEN" if j + 1 < args.len() => {
                match int_arg(&args[j + 1]) {
                    Ok(n) => min_match_len = n.max(0),
                    Err(reply) => return Ok(reply),
                }
                j += 1;
            }
            _ => return Ok(syntax_error()),
        }
        j += 1;
    }
    if get_len && get_idx {
        return Ok(Reply::error(
            "ERR If you want both the length and indexes, please just use IDX.",
        ));
    }
    // The table of LCS lengths of every pair of prefixes, bounded as Redis bounds it.
    let (alen, blen) = (a.len(), b.len());
    let width = blen + 1;
    let cells = (alen as u64 + 1) * (blen as u64 + 1);
    if cells.saturating_mul(4) > MAX_STRING_LEN {
        return Ok(Reply::error(
            "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
        ));
    }
    let mut table: Vec<u32> = Vec::new();
    if table.try_reserve_exact(cells as usize).is_err() {
        return Ok(Reply::error(
            "ERR Insufficient memory, failed allocating transient memory for LCS",
        ));
    }
    table.resize(cells as usize, 0);
    for i in 1..=alen {
        for j in 1..=blen {
            table[i * width + j] = if a[i - 1] == b[j - 1] {
                table[(i - 1) * width + j - 1] + 1
            } else {
                table[(i - 1) * width + j].max(table[i * width + j - 1])
            };
        }
    }
    let total = table[alen * width + blen];

    // Walk back from the end, building the subsequence and its ranges, longest-last.
    let compute = get_idx || !get_len;
    let mut idx = total as usize;
    let mut result = if compute { vec![0u8; idx] } else { Vec::new() };
    let mut matches = Vec::new();
    let (mut arange_start, mut arange_end, mut brange_start, mut brange_end) = (alen, 0, 0, 0);
    let (mut i, mut j) = (alen, blen);
    while compute && i > 0 && j > 0 {
        let mut emit = false;
        if a[i - 1] == b[j - 1] {
            result[idx - 1] = a[i - 1];
            if arange_start == alen {
                (arange_start, arange_end) = (i - 1, i - 1);
                (brange_start, brange_end) = (j - 1, j - 1);
            } else if arange_start == i && brange_start == j {
                arange_start -= 1;
                brange_start -= 1;
            } else {
                emit = true;
            }
            if arange_start == 0 || brange_start == 0 {
                emit = true;
            }
            idx -= 1;
            i -= 1;
            j -= 1;
        } else {
            if table[(i - 1) * width + j] > table[i * width + j - 1] {
                i -= 1;
            } else {
                j -= 1;
            }
            if arange_start != alen {
                emit = true;
            }
        }
        if emit {
            let match_len = arange_end.wrapping_sub(arange_start).wrapping_add(1);
            if get_idx && (min_match_len == 0 || match_len as i64 >= min_match_len) {
                let mut range = vec![
                    Reply::Array(vec![
                        Reply::Integer(arange_start as i64),
                        Reply::Integer(arange_end as i64),
                    ]),
                    Reply::Array(vec![
                        Reply::Integer(brange_start as i64),
                        Reply::Integer(brange_end as i64),
                    ]),
                ];
                if with_match_len {
                    range.push(Reply::Integer(match_len as i64));
                }
                matches.push(Reply::Array(range));
            }
            arange_start = alen;
        }
    }
    Ok(if get_idx {
        Reply::Map(vec![
            (Reply::bulk_str("matches"), Reply::Array(matches)),
            (Reply::bulk_str("len"), Reply::Integer(i64::from(total))),
        ])
    } else if get_len {
        Reply::Integer(i64::from(total))
    } else {
        Reply::Bulk(Bytes::from(result))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::keyspace::View;
    use crate::store::keyspace::testing::TestStore;

    /// A write view over an in-memory database, at time `NOW`.
    fn with_keyspace(test: impl FnOnce(&mut View)) {
        TestStore::new().write(NOW, 1, test);
    }

    const NOW: i64 = 1_700_000_000_000;
    const LATER: i64 = NOW + 1_000_000;

    fn run(ks: &mut View, line: &str) -> Reply {
        let args: Vec<Bytes> = line
            .split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect();
        super::super::execute(ks, &args).expect("storage")
    }

    fn deadline(ks: &mut View, key: &str) -> Option<i64> {
        ks.record(key.as_bytes())
            .expect("storage")
            .expect("key exists")
            .expire_at_ms
    }

    #[test]
    fn wrong_type_everywhere_redis_gives_it() {
        with_keyspace(|ks| {
            ks.put_field(b"h", b"f", b"v").unwrap();
            let wrong = super::super::wrong_type();
            for line in [
                "GET h",
                "GETSET h v",
                "GETDEL h",
                "GETEX h",
                "GETEX h PERSIST",
                "APPEND h x",
                "STRLEN h",
                "GETRANGE h 0 -1",
                "SETRANGE h 0 x",
                "SETRANGE h 0 ",
                "INCR h",
                "INCRBYFLOAT h 1",
                "INCRBYFLOAT h abc",
                "SET h v GET",
            ] {
                assert_eq!(run(ks, line), wrong, "{line}");
            }
            assert_eq!(
                run(ks, "LCS h k"),
                Reply::error("ERR The specified keys must contain string values")
            );
            assert_eq!(run(ks, "MGET h"), Reply::Array(vec![Reply::Nil]));
            // Commands that ignore the type of what they replace or test.
            assert_eq!(run(ks, "SETNX h v"), Reply::Integer(0));
            assert_eq!(run(ks, "MSETNX a 1 h v"), Reply::Integer(0));
            assert_eq!(ks.record(b"a").unwrap(), None);
            // Option errors come before the type check in GETRANGE, after it in GETEX.
            assert_eq!(run(ks, "GETRANGE h x 1"), not_an_integer());
            assert_eq!(run(ks, "GETEX h EX 0"), wrong);
            assert_eq!(run(ks, "SETEX h 10 v"), Reply::ok());
            assert_eq!(run(ks, "TYPE h"), Reply::simple("string"));
        });
    }

    #[test]
    fn in_place_changes_keep_the_deadline_and_replacements_drop_it() {
        with_keyspace(|ks| {
            for (line, kept) in [
                ("APPEND k x", true),
                ("SETRANGE k 1 x", true),
                ("INCRBYFLOAT k 1.5", true),
                ("INCR k", true),
                ("GETEX k", true),
                ("GETSET k 5", false),
                ("SET k 5", false),
                ("MSET k 5", false),
                ("GETEX k PERSIST", false),
            ] {
                assert_eq!(run(ks, &format!("SET k 1 PXAT {LATER}")), Reply::ok());
                assert!(!run(ks, line).is_error(), "{line}");
                let expected = kept.then_some(LATER);
                assert_eq!(deadline(ks, "k"), expected, "{line}");
            }
            assert_eq!(run(ks, "SETEX k 10 v"), Reply::ok());
            assert_eq!(deadline(ks, "k"), Some(NOW + 10_000));
            assert_eq!(run(ks, "PSETEX k 10 v"), Reply::ok());
            assert_eq!(deadline(ks, "k"), Some(NOW + 10));
            assert_eq!(run(ks, "GETEX k EX 5"), Reply::bulk_str("v"));
            assert_eq!(deadline(ks, "k"), Some(NOW + 5_000));
            assert_eq!(run(ks, "GETEX k PXAT 123"), Reply::bulk_str("v"));
            assert_eq!(ks.record(b"k").unwrap(), None);
        });
    }

    #[test]
    fn no_op_commands_leave_the_revision_alone() {
        with_keyspace(|ks| {
            run(ks, "SET k abc");
            ks.at(NOW, 2);
            for line in [
                "GETEX k",
                "GETEX k PERSIST",
                "SETRANGE k 5 ",
                "GETRANGE k 0 1",
            ] {
                run(ks, line);
                assert_eq!(ks.record(b"k").unwrap().unwrap().revision, 1, "{line}");
            }
            assert_eq!(run(ks, "SETRANGE missing 5 "), Reply::Integer(0));
            assert_eq!(ks.record(b"missing").unwrap(), None);
        });
    }

    #[test]
    fn size_limits_refuse_before_allocating() {
        with_keyspace(|ks| {
            let limit =
                Reply::error("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
            assert_eq!(run(ks, "SETRANGE k 536870912 x"), limit);
            assert_eq!(run(ks, "SETRANGE k 9223372036854775807 x"), limit);
            assert_eq!(ks.record(b"k").unwrap(), None);
        });
    }
}
