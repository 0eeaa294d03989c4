//! Command semantics: what each keyspace command does and answers, written once against the
//! [`Keyspace`] trait so the same code serves apply (a write transaction, at the leader's time)
//! and linearizable reads (a read transaction).
//!
//! Every function here is deterministic: given the same keyspace, arguments and time it gives
//! the same reply and the same changes on every replica. Replies and error texts are Redis
//! 7.0's. Storage failures are `Err` and stop the node; command failures are error replies.
//!
//! One file per family: [`strings`], [`keys`], [`hashes`].

pub mod hashes;
pub mod keys;
pub mod strings;

use bytes::Bytes;

use crate::resp::Reply;
use crate::resp::string2ll;
use crate::store::keyspace::{Keyspace, Kind, Record, StoreResult};

/// `-ERR syntax error`.
pub fn syntax_error() -> Reply {
    Reply::error("ERR syntax error")
}

/// `-WRONGTYPE …`.
pub fn wrong_type() -> Reply {
    Reply::error("WRONGTYPE Operation against a key holding the wrong kind of value")
}

/// `-ERR value is not an integer or out of range`.
pub fn not_an_integer() -> Reply {
    Reply::error("ERR value is not an integer or out of range")
}

/// Parses an integer argument as Redis does (`string2ll`).
pub fn int_arg(arg: &[u8]) -> Result<i64, Reply> {
    string2ll(arg).ok_or_else(not_an_integer)
}

/// The live record of `key` if it holds `kind`; `Err(reply)` with WRONGTYPE otherwise.
pub fn typed_record<K: Keyspace>(
    ks: &mut K,
    key: &[u8],
    kind: Kind,
) -> StoreResult<Result<Option<Record>, Reply>> {
    Ok(match ks.record(key)? {
        Some(record) if record.kind != kind => Err(wrong_type()),
        other => Ok(other),
    })
}

/// A string key's value, or WRONGTYPE.
pub fn string_value<K: Keyspace>(
    ks: &mut K,
    key: &[u8],
) -> StoreResult<Result<Option<Bytes>, Reply>> {
    Ok(typed_record(ks, key, Kind::String)?.map(|r| r.map(|r| r.payload)))
}

/// Whether `name` is one of the commands this module executes.
pub fn is_keyspace_command(name: &str) -> bool {
    strings::handles(name) || keys::handles(name) || hashes::handles(name)
}

/// Executes one command (name first, arity already checked) against `ks`.
pub fn execute<K: Keyspace>(ks: &mut K, args: &[Bytes]) -> StoreResult<Reply> {
    let Some(name) = args.first() else {
        return Ok(Reply::error("ERR empty command"));
    };
    let name = String::from_utf8_lossy(name).to_ascii_lowercase();
    if name == "redraft.revisions" {
        // WATCH: the revision of each key now (0 when absent).
        let mut out = Vec::with_capacity(args.len() - 1);
        for key in &args[1..] {
            let revision = ks.record(key)?.map_or(0, |r| r.revision);
            out.push(Reply::Integer(revision as i64));
        }
        return Ok(Reply::Array(out));
    }
    if name == "memory" {
        return memory_usage(ks, args);
    }
    if strings::handles(&name) {
        return strings::execute(ks, &name, args);
    }
    if keys::handles(&name) {
        return keys::execute(ks, &name, args);
    }
    if hashes::handles(&name) {
        return hashes::execute(ks, &name, args);
    }
    Ok(Reply::error(format!(
        "ERR unknown command '{name}' in the state machine"
    )))
}

/// `MEMORY USAGE key [SAMPLES n]`: an estimate of the bytes the key takes (nil when missing).
fn memory_usage<K: Keyspace>(ks: &mut K, args: &[Bytes]) -> StoreResult<Reply> {
    /// Per-key overhead of a record and its index entries.
    const KEY_OVERHEAD: usize = 48;
    let Some(key) = args.get(2) else {
        return Ok(syntax_error());
    };
    if args.len() != 3 && args.len() != 5 {
        return Ok(syntax_error());
    }
    let Some(record) = ks.record(key)? else {
        return Ok(Reply::Nil);
    };
    let value_bytes = match record.kind {
        Kind::String => record.payload.len(),
        Kind::Hash => ks
            .fields(key, None, usize::MAX)?
            .iter()
            .map(|(f, v)| f.len() + v.len() + 16)
            .sum(),
    };
    Ok(Reply::Integer(
        (KEY_OVERHEAD + key.len() + value_bytes) as i64,
    ))
}

/// Parses a SCAN cursor as Redis does (`strtoul` base 10, refusing a leading space, trailing
/// garbage and overflow; a sign is accepted and `-n` wraps, as in C).
pub fn parse_cursor(arg: &[u8]) -> Option<u64> {
    if arg
        .first()
        .is_some_and(|&b| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
    {
        return None;
    }
    // strtoul stops at a NUL byte, which Redis then takes as the end of the argument.
    let text = c_str(arg);
    if text.is_empty() {
        return Some(0);
    }
    let (negative, digits) = match text[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut value: u64 = 0;
    for &digit in digits {
        value = value
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
    }
    Some(if negative {
        value.wrapping_neg()
    } else {
        value
    })
}

pub use crate::redis::table::c_str;
