//! String commands: GET, SET and its options, the INCR family, MGET/MSET.

use bytes::Bytes;

use super::{int_arg, not_an_integer, string_value, syntax_error};
use crate::resp::Reply;
use crate::store::keyspace::{Keyspace, StoreResult};
use crate::store::state_machine::parse_redis_i64;

/// Whether this family executes `name`.
pub fn handles(name: &str) -> bool {
    matches!(
        name,
        "get" | "set" | "incr" | "decr" | "incrby" | "decrby" | "mget" | "mset"
    )
}

/// Executes one string command.
pub fn execute<K: Keyspace>(ks: &mut K, name: &str, args: &[Bytes]) -> StoreResult<Reply> {
    match name {
        "get" => get(ks, &args[1]),
        "set" => set(ks, args),
        "incr" => incr_by(ks, &args[1], 1),
        "decr" => incr_by(ks, &args[1], -1),
        "incrby" => match int_arg(&args[2]) {
            Ok(delta) => incr_by(ks, &args[1], delta),
            Err(reply) => Ok(reply),
        },
        "decrby" => match int_arg(&args[2]) {
            Ok(i64::MIN) => Ok(Reply::error("ERR decrement would overflow")),
            Ok(delta) => incr_by(ks, &args[1], -delta),
            Err(reply) => Ok(reply),
        },
        "mget" => {
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
        "mset" => {
            if args.len().is_multiple_of(2) {
                return Ok(Reply::error(
                    "ERR wrong number of arguments for 'mset' command",
                ));
            }
            for pair in args[1..].chunks(2) {
                ks.put_string(&pair[0], &pair[1], None)?;
            }
            Ok(Reply::ok())
        }
        _ => Ok(Reply::error(format!("ERR unknown string command '{name}'"))),
    }
}

fn get<K: Keyspace>(ks: &mut K, key: &[u8]) -> StoreResult<Reply> {
    Ok(match string_value(ks, key)? {
        Ok(Some(value)) => Reply::Bulk(value),
        Ok(None) => Reply::Nil,
        Err(reply) => reply,
    })
}

fn incr_by<K: Keyspace>(ks: &mut K, key: &[u8], delta: i64) -> StoreResult<Reply> {
    let record = match super::typed_record(ks, key, crate::store::keyspace::Kind::String)? {
        Ok(record) => record,
        Err(reply) => return Ok(reply),
    };
    let (current, expire) = match &record {
        Some(record) => match parse_redis_i64(&record.payload) {
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
    Ok(Reply::Integer(new))
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

fn set<K: Keyspace>(ks: &mut K, args: &[Bytes]) -> StoreResult<Reply> {
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
    if let Some(ms) = new_deadline
        && ms <= ks.now_ms()
    {
        // A deadline already past (EXAT/PXAT in the past): the key is gone at once.
        ks.delete(key)?;
    }
    Ok(match old {
        Some(old) => old.map_or(Reply::Nil, Reply::Bulk),
        None => Reply::ok(),
    })
}
