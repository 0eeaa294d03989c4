//! DUMP and RESTORE of string values (HyperLogLogs and bitmaps included) in Redis 7.0's
//! payload format: the RDB string type, the value as an RDB string (an integer encoding for a
//! canonical integer that fits 32 bits, as Redis writes it, else the bytes), the RDB version
//! and a CRC-64. redraft writes strings uncompressed (Redis compresses long ones with LZF) and
//! reads both, so values move both ways with Redis.
//!
//! Other types are not serialized yet: DUMP of one, and RESTORE of a payload holding one, are
//! refused saying so.

use bytes::Bytes;

use super::ReplySize::{Data, Small};
use super::scripting::function_dump::{BadPayload, Reader, seal, verified_body, write_length};
use super::{KeyspaceCommand, command, int_arg, syntax_error};
use crate::resp::{Reply, string2ll};
use crate::store::keyspace::{Keyspace, Kind, StoreResult};
use crate::store::notify::GENERIC;

/// DUMP and RESTORE: one line each (see [`KeyspaceCommand`]).
pub const COMMANDS: &[KeyspaceCommand] = &[
    command("dump", dump, Data),
    command("restore", restore, Small),
];

/// `RDB_TYPE_STRING`.
const STRING_TYPE: u8 = 0;

/// A string value as Redis's `rdbSaveStringObject` writes it (without compression).
fn rdb_string(value: &[u8], out: &mut Vec<u8>) {
    let canonical = string2ll(value).filter(|n| n.to_string().as_bytes() == value);
    match canonical {
        Some(n) if (-128..=127).contains(&n) => out.extend_from_slice(&[0xc0, n as i8 as u8]),
        Some(n) if (-32768..=32767).contains(&n) => {
            out.push(0xc1);
            out.extend_from_slice(&(n as i16).to_le_bytes());
        }
        Some(n) if i32::try_from(n).is_ok() => {
            out.push(0xc2);
            out.extend_from_slice(&(n as i32).to_le_bytes());
        }
        _ => {
            write_length(value.len(), out);
            out.extend_from_slice(value);
        }
    }
}

fn dump(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let Some(record) = ks.record(&args[1])? else {
        return Ok(Reply::Nil);
    };
    if record.kind != Kind::String {
        return Ok(Reply::error(format!(
            "ERR DUMP of a {} is not supported yet: redraft serializes string values only",
            record.kind.name()
        )));
    }
    let mut body = vec![STRING_TYPE];
    rdb_string(&record.payload, &mut body);
    Ok(Reply::Bulk(Bytes::from(seal(body))))
}

fn restore(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let (mut replace, mut absolute, mut idle, mut freq) = (false, false, false, false);
    let mut j = 4;
    while j < args.len() {
        let option = args[j].to_ascii_lowercase();
        let more = args.len() - j - 1;
        match option.as_slice() {
            b"replace" => replace = true,
            b"absttl" => absolute = true,
            b"idletime" if more >= 1 && !freq => {
                match int_arg(&args[j + 1]) {
                    Ok(n) if n < 0 => {
                        return Ok(Reply::error("ERR Invalid IDLETIME value, must be >= 0"));
                    }
                    Ok(_) => idle = true,
                    Err(reply) => return Ok(reply),
                }
                j += 1;
            }
            b"freq" if more >= 1 && !idle => {
                match int_arg(&args[j + 1]) {
                    Ok(n) if !(0..=255).contains(&n) => {
                        return Ok(Reply::error(
                            "ERR Invalid FREQ value, must be >= 0 and <= 255",
                        ));
                    }
                    Ok(_) => freq = true,
                    Err(reply) => return Ok(reply),
                }
                j += 1;
            }
            _ => return Ok(syntax_error()),
        }
        j += 1;
    }
    let key = &args[1];
    if !replace && ks.record(key)?.is_some() {
        return Ok(Reply::error("BUSYKEY Target key name already exists."));
    }
    let ttl = match int_arg(&args[2]) {
        Ok(ttl) if ttl < 0 => return Ok(Reply::error("ERR Invalid TTL value, must be >= 0")),
        Ok(ttl) => ttl,
        Err(reply) => return Ok(reply),
    };
    let Ok(body) = verified_body(&args[3]) else {
        return Ok(Reply::error(
            "ERR DUMP payload version or checksum are wrong",
        ));
    };
    let mut reader = Reader { data: body, at: 0 };
    let value = match reader.byte() {
        Ok(STRING_TYPE) => match reader.string() {
            Ok(value) => value,
            Err(_) => return Ok(Reply::error("ERR Bad data format")),
        },
        Ok(0..=21) => {
            return Ok(Reply::error(
                "ERR RESTORE of this type is not supported yet: redraft restores string values \
                 only",
            ));
        }
        Ok(_)
        | Err(BadPayload::Corrupt | BadPayload::NotAFunction | BadPayload::VersionOrChecksum) => {
            return Ok(Reply::error("ERR Bad data format"));
        }
    };
    let deleted = replace && ks.delete(key)?;
    let deadline = match ttl {
        0 => None,
        ttl if absolute => Some(ttl),
        ttl => Some(ks.now_ms().saturating_add(ttl)),
    };
    if deadline.is_some_and(|deadline| deadline <= ks.now_ms()) {
        if deleted {
            ks.notify(GENERIC, "del", key);
        }
        return Ok(Reply::ok());
    }
    ks.put_string(key, &value, deadline.map(|d| d.min(i64::MAX - 1)))?;
    ks.notify(GENERIC, "restore", key);
    Ok(Reply::ok())
}
