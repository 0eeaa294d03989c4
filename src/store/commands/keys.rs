//! Key commands: DEL, UNLINK, EXISTS, DBSIZE, FLUSHDB/FLUSHALL, TYPE.

use bytes::Bytes;

use super::syntax_error;
use crate::resp::Reply;
use crate::store::keyspace::{Keyspace, StoreResult};

/// Whether this family executes `name`.
pub fn handles(name: &str) -> bool {
    matches!(
        name,
        "del" | "unlink" | "exists" | "dbsize" | "flushdb" | "flushall" | "type"
    )
}

/// Executes one key command.
pub fn execute<K: Keyspace>(ks: &mut K, name: &str, args: &[Bytes]) -> StoreResult<Reply> {
    match name {
        "del" | "unlink" => {
            let mut removed = 0;
            for key in &args[1..] {
                if ks.delete(key)? {
                    removed += 1;
                }
            }
            Ok(Reply::Integer(removed))
        }
        "exists" => {
            let mut count = 0;
            for key in &args[1..] {
                if ks.record(key)?.is_some() {
                    count += 1;
                }
            }
            Ok(Reply::Integer(count))
        }
        "dbsize" => Ok(Reply::Integer(live_key_count(ks)? as i64)),
        "flushdb" | "flushall" => {
            if let Some(mode) = args.get(1) {
                let ok = mode.eq_ignore_ascii_case(b"sync") || mode.eq_ignore_ascii_case(b"async");
                if !ok || args.len() > 2 {
                    return Ok(syntax_error());
                }
            }
            ks.flush()?;
            Ok(Reply::ok())
        }
        "type" => Ok(Reply::Simple(Bytes::from_static(
            match ks.record(&args[1])? {
                Some(record) => record.kind.name(),
                None => "none",
            }
            .as_bytes(),
        ))),
        _ => Ok(Reply::error(format!("ERR unknown key command '{name}'"))),
    }
}

/// Keys that are live now: the stored count, less those past their deadline but not yet
/// removed by active expiry.
pub fn live_key_count<K: Keyspace>(ks: &mut K) -> StoreResult<u64> {
    let stored = ks.stored_key_count()?;
    let expired = ks.expired_key_count()?;
    Ok(stored.saturating_sub(expired))
}
