//! TEMPORARY STUB — replaced by the real proxy module.
#![allow(missing_docs)]
use crate::resp::Protocol;
use bytes::Bytes;
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderTarget {
    pub id: u64,
    pub client_addr: String,
}
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProxyError {
    #[error("leader unreachable: {0}")]
    Unreachable(String),
    #[error("connection to the leader failed: {0}")]
    Indeterminate(String),
}
pub struct Proxy;
impl Proxy {
    pub fn new(_password: Option<String>, _n: usize) -> Proxy {
        Proxy
    }
    pub fn forward(
        &self,
        _target: &LeaderTarget,
        _protocol: Protocol,
        _client_id: u64,
        _args: Vec<Bytes>,
    ) -> impl std::future::Future<Output = Result<Bytes, ProxyError>> + Send + 'static {
        async { Err(ProxyError::Unreachable("stub".into())) }
    }
}
