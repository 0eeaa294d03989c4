//! Hash commands.

use bytes::Bytes;

use crate::resp::Reply;
use crate::store::keyspace::{Keyspace, StoreResult};

/// Whether this family executes `name`.
pub fn handles(_name: &str) -> bool {
    false
}

/// Executes one hash command.
pub fn execute<K: Keyspace>(_ks: &mut K, name: &str, _args: &[Bytes]) -> StoreResult<Reply> {
    Ok(Reply::error(format!("ERR unknown hash command '{name}'")))
}
