//! TEMPORARY STUB — replaced by the real topology module.
#![allow(missing_docs)]
use crate::cluster::ClusterView;
use crate::resp::Reply;
pub fn key_slot(key: &[u8]) -> u16 {
    redis_protocol::redis_keyslot(key)
}
pub fn node_name(id: u64) -> String {
    format!("{id:040x}")
}
pub fn moved(slot: u16, addr: &str) -> Reply {
    Reply::error(format!("MOVED {slot} {addr}"))
}
pub fn cluster_command(_view: &ClusterView, _args: &[bytes::Bytes]) -> Reply {
    Reply::error("ERR stub")
}
