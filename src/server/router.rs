//! Where a keyspace command runs: a pure decision from the command, what this node knows of the
//! leader, and the connection's mode. `server::connection` asks it once per command,
//! `server::submit` again at every attempt (the leader may have changed meanwhile); neither
//! decides anything itself.

use bytes::Bytes;

use crate::cluster::topology;
use crate::command::Access;
use crate::config::FollowerMode;
use crate::error::Error;
use crate::node::Node;
use crate::resp::Reply;

/// The leader as this node knows it at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leader<'a> {
    /// This node leads.
    Me,
    /// Another node leads.
    Other {
        /// Its raft node id.
        id: u64,
        /// Its client address, `host:port`.
        client_addr: &'a str,
    },
    /// No leader is known (start, election).
    Unknown,
}

/// What the connection and this node are, as routing needs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode {
    /// The connection has authenticated (or needs not).
    pub authenticated: bool,
    /// The connection comes from another node's proxy: never forwarded again.
    pub proxied: bool,
    /// READONLY: reads may be served by this node while it follows.
    pub readonly: bool,
    /// What a follower does with commands for the leader.
    pub follower_mode: FollowerMode,
    /// This node is not in the membership it knows.
    pub removed: bool,
}

/// Where one command goes.
#[derive(Clone, Debug, PartialEq)]
pub enum Route {
    /// Answer this instead of running the command.
    Refuse(Reply),
    /// Run it on this node, the leader.
    Here,
    /// A READONLY read served by this follower after a read index from the leader.
    FollowerRead,
    /// Forward it to the leader through the proxy.
    Proxy {
        /// The leader's raft node id.
        id: u64,
        /// The leader's client address.
        client_addr: String,
    },
    /// Answer `-MOVED` to the leader (redirect mode).
    Moved {
        /// The slot of the command's key.
        slot: u16,
        /// The leader's client address.
        client_addr: String,
    },
    /// No leader yet: wait for one (bounded by the caller).
    WaitForLeader,
}

/// [`route`] with the leader as `node` knows it now (its address is looked up, and copied,
/// only when this node does not lead).
pub fn route_on(node: &Node, access: Access, routing_key: Option<&Bytes>, mode: Mode) -> Route {
    let other = if node.is_leader() {
        None
    } else {
        node.leader()
    };
    let leader = match &other {
        _ if node.is_leader() => Leader::Me,
        Some((id, member)) => Leader::Other {
            id: *id,
            client_addr: &member.client_addr,
        },
        None => Leader::Unknown,
    };
    route(access, routing_key, leader, mode)
}

/// Decides where a command runs; `routing_key` picks the slot a `-MOVED` names.
pub fn route(access: Access, routing_key: Option<&Bytes>, leader: Leader<'_>, mode: Mode) -> Route {
    if !mode.authenticated {
        return Route::Refuse(Error::NoAuth.to_resp());
    }
    if mode.removed {
        // Certainly not run, so a prefix clients resend on: the membership this node knows
        // leaves it out (removed, or back from a power loss behind the change that added it,
        // until the leader catches it up).
        return Route::Refuse(
            Error::ClusterDown(
                "this node is not in the cluster's membership as it knows it (removed, or not \
                 caught up yet); the command was not run"
                    .into(),
            )
            .to_resp(),
        );
    }
    match leader {
        Leader::Me => Route::Here,
        // A proxied command that finds this node no longer leading goes back to its sender,
        // which resends it (with its id) to the leader: never forwarded twice.
        _ if mode.proxied => {
            Route::Refuse(Error::Resend("this node is not the leader".into()).to_resp())
        }
        _ if mode.readonly && access == Access::Read => Route::FollowerRead,
        Leader::Other { client_addr, .. } if mode.follower_mode == FollowerMode::Redirect => {
            match routing_key {
                Some(key) => Route::Moved {
                    slot: topology::key_slot(key),
                    client_addr: client_addr.to_string(),
                },
                // Nothing to name a slot by: forwarded like in proxy mode.
                None => Route::Proxy {
                    id: leader_id(leader),
                    client_addr: client_addr.to_string(),
                },
            }
        }
        Leader::Other { id, client_addr } => Route::Proxy {
            id,
            client_addr: client_addr.to_string(),
        },
        Leader::Unknown => Route::WaitForLeader,
    }
}

fn leader_id(leader: Leader<'_>) -> u64 {
    match leader {
        Leader::Other { id, .. } => id,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODE: Mode = Mode {
        authenticated: true,
        proxied: false,
        readonly: false,
        follower_mode: FollowerMode::Proxy,
        removed: false,
    };
    const OTHER: Leader<'static> = Leader::Other {
        id: 2,
        client_addr: "127.0.0.1:7002",
    };

    fn key() -> Option<Bytes> {
        Some(Bytes::from_static(b"foo"))
    }

    fn prefix(route: &Route) -> String {
        match route {
            Route::Refuse(Reply::Error(text)) => String::from_utf8_lossy(text)
                .split(' ')
                .next()
                .unwrap()
                .to_string(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn the_route_table() {
        let proxy = Route::Proxy {
            id: 2,
            client_addr: "127.0.0.1:7002".into(),
        };
        let moved = Route::Moved {
            slot: 12182,
            client_addr: "127.0.0.1:7002".into(),
        };
        let redirect = Mode {
            follower_mode: FollowerMode::Redirect,
            ..MODE
        };
        let readonly = Mode {
            readonly: true,
            ..MODE
        };
        let proxied = Mode {
            proxied: true,
            ..MODE
        };
        let k = key();
        let cases: Vec<(&str, Route, Route)> = vec![
            (
                "leader runs writes here",
                route(Access::Write, k.as_ref(), Leader::Me, MODE),
                Route::Here,
            ),
            (
                "leader runs reads here, READONLY or not",
                route(Access::Read, k.as_ref(), Leader::Me, readonly),
                Route::Here,
            ),
            (
                "follower forwards a write",
                route(Access::Write, k.as_ref(), OTHER, MODE),
                proxy.clone(),
            ),
            (
                "follower forwards a read without READONLY",
                route(Access::Read, k.as_ref(), OTHER, MODE),
                proxy.clone(),
            ),
            (
                "READONLY follower serves a read",
                route(Access::Read, k.as_ref(), OTHER, readonly),
                Route::FollowerRead,
            ),
            (
                "READONLY follower forwards a write",
                route(Access::Write, k.as_ref(), OTHER, readonly),
                proxy.clone(),
            ),
            (
                "redirect mode answers MOVED with the key's slot",
                route(Access::Write, k.as_ref(), OTHER, redirect),
                moved,
            ),
            (
                "redirect mode forwards a command without a key",
                route(Access::Read, None, OTHER, redirect),
                proxy,
            ),
            (
                "no leader: wait",
                route(Access::Write, k.as_ref(), Leader::Unknown, MODE),
                Route::WaitForLeader,
            ),
            (
                "proxied command on the leader runs here",
                route(Access::Write, k.as_ref(), Leader::Me, proxied),
                Route::Here,
            ),
        ];
        for (what, got, want) in cases {
            assert_eq!(got, want, "{what}");
        }
        let refusals = [
            (
                "not authenticated",
                route(
                    Access::Write,
                    k.as_ref(),
                    Leader::Me,
                    Mode {
                        authenticated: false,
                        ..MODE
                    },
                ),
                "NOAUTH",
            ),
            (
                "not in the membership",
                route(
                    Access::Write,
                    k.as_ref(),
                    OTHER,
                    Mode {
                        removed: true,
                        ..MODE
                    },
                ),
                "CLUSTERDOWN",
            ),
            (
                "proxied command on a follower goes back to its sender",
                route(Access::Write, k.as_ref(), OTHER, proxied),
                "REDRAFT.RETRY",
            ),
            (
                "proxied command with no leader goes back too",
                route(Access::Read, k.as_ref(), Leader::Unknown, proxied),
                "REDRAFT.RETRY",
            ),
        ];
        for (what, got, want) in refusals {
            assert_eq!(prefix(&got), want, "{what}");
        }
    }
}
