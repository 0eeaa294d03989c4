//! The cluster as Redis Cluster clients see it: one shard owning every slot.
//!
//! This module owns the presentation of the raft cluster as a single Redis Cluster shard: the
//! shard owns all slots 0–16383, the raft leader is its master and every other member is one
//! of its replicas. It answers the read-only `CLUSTER` subcommands cluster-aware clients use to
//! discover the topology (`SLOTS`, `SHARDS`, `NODES`, `INFO`, `MYID`, `KEYSLOT`, `REPLICAS`,
//! `SLAVES`, `HELP`), builds `-MOVED` redirections and computes key slots, with the reply
//! shapes of Redis 7.0 (field names, order and RESP types, in RESP2 and RESP3).
//!
//! It must not do IO or call into raft: every reply is a pure function of a [`ClusterView`]
//! snapshot and the arguments, so it cannot block, fail or panic on any input.
//!
//! Choices where Redis has no equivalent:
//!
//! * **Node names.** A raft node id `n` is shown as the 40-character lowercase hexadecimal of
//!   `n`, zero-padded ([`node_name`]); stable across restarts and identical on every node.
//! * **No leader known** (or the leader is not among the members): the cluster is shown as
//!   Redis shows nodes that have met but own no slots — every member is a `master` without
//!   slots or replicas. `SLOTS` is empty, `SHARDS` has one slot-less shard per member, `NODES`
//!   lists every member as `master -` with no slot ranges, and `INFO` reports
//!   `cluster_state:fail`, `cluster_slots_assigned:0`, `cluster_slots_ok:0` and
//!   `cluster_size:0`. Clients parse this and report the cluster as down (redis-py: "All
//!   slots are not covered"; `redis-cli --cluster check`: slots not covered) until a leader
//!   is known.
//! * **Epochs.** Every node's config epoch, `cluster_current_epoch` and `cluster_my_epoch` are
//!   the raft term.
//! * **Liveness columns.** `NODES` shows `0 0` for ping-sent and pong-received, `connected`
//!   for every link; `SHARDS` shows `health` `online` for every member. The bus message
//!   counters of `INFO` are zero, so, as Redis does for zero counters, only the totals appear.
//! * **Replication offset.** `SHARDS` shows a member's `matched_index` when known, else this
//!   node's `commit_index`.
//! * **Learners** (non-voters) carry Redis's `nofailover` flag in `NODES`: they never become
//!   leader, as a `cluster-replica-no-failover` replica never becomes master.
//! * **Addresses.** A member's `client_addr` `host:port` gives the ip/endpoint and port, its
//!   `peer_addr` port the bus port (`@cport`); IPv6 brackets are dropped as Redis prints
//!   addresses. A host that is not an IP literal is also reported as the node's `hostname` (the
//!   shape of a Redis node with `cluster-announce-hostname`). An unparsable port shows as 0.
//! * `MYSHARDID` (7.2) and the subcommands that change or count slots and nodes (`ADDSLOTS`,
//!   `MEET`, `FAILOVER`, `COUNTKEYSINSLOT`, …) answer Redis's unknown-subcommand error.

use std::net::IpAddr;

use bytes::Bytes;

use crate::node::{ClusterView, MemberView};
use crate::redis::table;
use crate::resp::Reply;

/// Number of hash slots of a Redis Cluster.
const SLOT_COUNT: u16 = 16384;

/// Last slot, as `SLOTS`, `SHARDS` and `NODES` print the range.
const LAST_SLOT: i64 = SLOT_COUNT as i64 - 1;

/// CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0), the checksum of Redis Cluster.
const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

fn crc16(data: &[u8]) -> u16 {
    data.iter().fold(0u16, |crc, &byte| {
        (crc << 8) ^ CRC16_TABLE[usize::from((crc >> 8) as u8 ^ byte)]
    })
}

/// CRC16 slot of a key, Redis Cluster's algorithm including `{hash tags}`.
///
/// When the key holds a `{` and, after it, a `}` with at least one byte between them, only the
/// bytes between the first `{` and the first `}` after it are hashed; otherwise the whole key is
/// (so `{}` and an unclosed `{` hash the whole key).
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let tag = &key[open + 1..];
            tag.iter()
                .position(|&b| b == b'}')
                .filter(|&len| len > 0)
                .map(|len| &tag[..len])
        })
        .unwrap_or(key);
    crc16(hashed) % SLOT_COUNT
}

/// The 40-hex-char node name clients see for a raft node id: the id in lowercase hexadecimal,
/// zero-padded to 40 characters (id 3 is `000…0003`).
///
/// Deterministic, so every member names every node alike and names survive restarts.
pub fn node_name(id: u64) -> String {
    format!("{id:040x}")
}

/// `-MOVED <slot> <host:port>` error reply for a key's slot and the leader's client address.
///
/// The address is printed as Redis prints it: `host:port`, IPv6 hosts without brackets.
pub fn moved(slot: u16, leader_client_addr: &str) -> Reply {
    let text = match leader_client_addr.rsplit_once(':') {
        Some((host, port)) => format!("MOVED {slot} {}:{port}", unbracket(host)),
        None => format!("MOVED {slot} {leader_client_addr}"),
    };
    Reply::error(text)
}

/// The CLUSTER command. `args` are the arguments after the word CLUSTER (`args[0]` is the
/// subcommand, in any case).
///
/// Answers `SLOTS`, `SHARDS`, `NODES`, `INFO`, `MYID`, `KEYSLOT <key>`, `REPLICAS <node-id>`,
/// `SLAVES <node-id>` and `HELP` as Redis 7.0 does for a one-shard cluster whose master is the
/// raft leader; anything else gets Redis's unknown-subcommand error, a wrong argument count
/// Redis's arity error.
pub fn cluster_command(view: &ClusterView, args: &[Bytes]) -> Reply {
    let Some((name, rest)) = args.split_first() else {
        return table::wrong_arity_error_for("cluster");
    };
    let Some(&(full_name, sub, arg_count)) = SUBCOMMANDS
        .iter()
        .find(|(full_name, _, _)| name.eq_ignore_ascii_case(full_name.as_bytes()))
    else {
        return unknown_subcommand(name);
    };
    if rest.len() != arg_count {
        return table::wrong_arity_error_for(&format!("cluster|{full_name}"));
    }
    let topology = Topology::of(view);
    match sub {
        Sub::Help => help(),
        Sub::Info => topology.info(),
        Sub::Keyslot => Reply::Integer(i64::from(key_slot(&rest[0]))),
        Sub::Myid => Reply::bulk_str(&node_name(view.me)),
        Sub::Nodes => topology.nodes(),
        Sub::Replicas => topology.replicas(&rest[0]),
        Sub::Shards => topology.shards(),
        Sub::Slots => topology.slots(),
    }
}

/// A supported subcommand.
#[derive(Clone, Copy)]
enum Sub {
    Help,
    Info,
    Keyslot,
    Myid,
    Nodes,
    Replicas,
    Shards,
    Slots,
}

/// Supported subcommands: Redis's full name (after `cluster|`), and the exact number of
/// arguments after the subcommand (Redis's arity minus two).
const SUBCOMMANDS: [(&str, Sub, usize); 9] = [
    ("help", Sub::Help, 0),
    ("info", Sub::Info, 0),
    ("keyslot", Sub::Keyslot, 1),
    ("myid", Sub::Myid, 0),
    ("nodes", Sub::Nodes, 0),
    ("replicas", Sub::Replicas, 1),
    ("shards", Sub::Shards, 0),
    ("slaves", Sub::Replicas, 1),
    ("slots", Sub::Slots, 0),
];

/// `CLUSTER HELP`: Redis 7.0's text, restricted to the supported subcommands.
fn help() -> Reply {
    const LINES: [&str; 19] = [
        "CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "INFO",
        "    Return information about the cluster.",
        "KEYSLOT <key>",
        "    Return the hash slot for <key>.",
        "MYID",
        "    Return the node id.",
        "NODES",
        "    Return cluster configuration seen by node. Output format:",
        "    <id> <ip:port> <flags> <master> <pings> <pongs> <epoch> <link> <slot> ...",
        "REPLICAS <node-id>",
        "    Return <node-id> replicas.",
        "SLOTS",
        "    Return information about slots range mappings. Each range is made of:",
        "    start, end, master and replicas IP addresses, ports and ids",
        "SHARDS",
        "    Return information about slot range mappings and the nodes associated with them.",
        "HELP",
        "    Prints this help.",
    ];
    // Like Redis's, this text has no entry for SLAVES, the old name of REPLICAS.
    Reply::Array(LINES.iter().map(|line| Reply::simple(line)).collect())
}

/// `ERR unknown subcommand '<name>'. Try CLUSTER HELP.`, the name cut as Redis's `%.128s`
/// cuts it (at a NUL byte or after 128 bytes).
fn unknown_subcommand(name: &[u8]) -> Reply {
    table::unknown_subcommand_error("cluster", name)
}

/// `host` without the brackets of an IPv6 literal.
fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host)
}

/// Host and port of a `host:port` address; port 0 when missing or unparsable.
fn split_addr(addr: &str) -> (&str, u16) {
    match addr.rsplit_once(':') {
        Some((host, port)) => (unbracket(host), port.parse().unwrap_or(0)),
        None => (unbracket(addr), 0),
    }
}

/// A non-negative counter as a RESP integer (saturating; raft indexes never get there).
fn int(value: u64) -> Reply {
    Reply::Integer(i64::try_from(value).unwrap_or(i64::MAX))
}

/// One member as the replies show it.
struct Node<'a> {
    view: &'a MemberView,
    name: String,
    host: &'a str,
    port: u16,
    cport: u16,
    /// Set when the host is a name rather than an IP literal.
    hostname: Option<&'a str>,
    myself: bool,
    master: bool,
}

impl<'a> Node<'a> {
    fn new(view: &'a MemberView, me: u64, master: bool) -> Self {
        let (host, port) = split_addr(&view.member.client_addr);
        let (_, cport) = split_addr(&view.member.peer_addr);
        let hostname = (!host.is_empty() && host.parse::<IpAddr>().is_err()).then_some(host);
        Node {
            view,
            name: node_name(view.id),
            host,
            port,
            cport,
            hostname,
            myself: view.id == me,
            master,
        }
    }

    /// `myself,master`, `slave`, `slave,nofailover`, … in Redis's flag order.
    fn flags(&self) -> String {
        let mut flags = Vec::with_capacity(3);
        if self.myself {
            flags.push("myself");
        }
        flags.push(if self.master { "master" } else { "slave" });
        if !self.view.voter {
            flags.push("nofailover");
        }
        flags.join(",")
    }

    /// The `[ip, port, name, {metadata}]` entry of `CLUSTER SLOTS`.
    fn slots_entry(&self) -> Reply {
        let metadata = self
            .hostname
            .map(|name| vec![(Reply::bulk_str("hostname"), Reply::bulk_str(name))])
            .unwrap_or_default();
        Reply::Array(vec![
            Reply::bulk_str(self.host),
            Reply::Integer(i64::from(self.port)),
            Reply::bulk_str(&self.name),
            Reply::Map(metadata),
        ])
    }

    /// The node map of `CLUSTER SHARDS`.
    fn shards_entry(&self, commit_index: u64) -> Reply {
        let mut fields = vec![
            (Reply::bulk_str("id"), Reply::bulk_str(&self.name)),
            (
                Reply::bulk_str("port"),
                Reply::Integer(i64::from(self.port)),
            ),
            (Reply::bulk_str("ip"), Reply::bulk_str(self.host)),
            (Reply::bulk_str("endpoint"), Reply::bulk_str(self.host)),
        ];
        if let Some(name) = self.hostname {
            fields.push((Reply::bulk_str("hostname"), Reply::bulk_str(name)));
        }
        let role = if self.master { "master" } else { "replica" };
        let offset = self.view.matched_index.unwrap_or(commit_index);
        fields.extend([
            (Reply::bulk_str("role"), Reply::bulk_str(role)),
            (Reply::bulk_str("replication-offset"), int(offset)),
            (Reply::bulk_str("health"), Reply::bulk_str("online")),
        ]);
        Reply::Map(fields)
    }

    /// This node's `CLUSTER NODES` line, without the newline: `master_name` is the master of
    /// a replica, `owns_slots` whether it prints the one slot range.
    fn nodes_line(&self, master_name: Option<&str>, owns_slots: bool, term: u64) -> String {
        let hostname = self.hostname.map(|h| format!(",{h}")).unwrap_or_default();
        let slots = if owns_slots {
            format!(" 0-{LAST_SLOT}")
        } else {
            String::new()
        };
        format!(
            "{} {}:{}@{}{hostname} {} {} 0 0 {term} connected{slots}",
            self.name,
            self.host,
            self.port,
            self.cport,
            self.flags(),
            master_name.unwrap_or("-"),
        )
    }
}

/// The cluster laid out as Redis shards.
struct Topology<'a> {
    view: &'a ClusterView,
    /// The leader, the master of the one shard; `None` when no leader is known.
    leader: Option<Node<'a>>,
    /// With a leader: the other members, its replicas. Without: every member, each a
    /// slot-less master.
    others: Vec<Node<'a>>,
}

impl<'a> Topology<'a> {
    fn of(view: &'a ClusterView) -> Self {
        let leader_id = view
            .leader
            .filter(|&id| view.members.iter().any(|member| member.id == id));
        let leader = leader_id.and_then(|id| {
            view.members
                .iter()
                .find(|member| member.id == id)
                .map(|member| Node::new(member, view.me, true))
        });
        let others = view
            .members
            .iter()
            .filter(|member| Some(member.id) != leader_id)
            .map(|member| Node::new(member, view.me, leader_id.is_none()))
            .collect();
        Topology {
            view,
            leader,
            others,
        }
    }

    /// Every node, the leader first.
    fn all(&self) -> impl Iterator<Item = &Node<'a>> {
        self.leader.iter().chain(&self.others)
    }

    fn slots(&self) -> Reply {
        if self.leader.is_none() {
            return Reply::Array(Vec::new());
        }
        let mut range = vec![Reply::Integer(0), Reply::Integer(LAST_SLOT)];
        range.extend(self.all().map(Node::slots_entry));
        Reply::Array(vec![Reply::Array(range)])
    }

    fn shards(&self) -> Reply {
        let commit = self.view.commit_index;
        let shard = |slots: Vec<Reply>, nodes: Vec<Reply>| {
            Reply::Map(vec![
                (Reply::bulk_str("slots"), Reply::Array(slots)),
                (Reply::bulk_str("nodes"), Reply::Array(nodes)),
            ])
        };
        match &self.leader {
            Some(_) => Reply::Array(vec![shard(
                vec![Reply::Integer(0), Reply::Integer(LAST_SLOT)],
                self.all().map(|node| node.shards_entry(commit)).collect(),
            )]),
            None => Reply::Array(
                self.others
                    .iter()
                    .map(|node| shard(Vec::new(), vec![node.shards_entry(commit)]))
                    .collect(),
            ),
        }
    }

    /// The `NODES` line of `node`.
    fn line(&self, node: &Node<'_>) -> String {
        let leader = self.leader.as_ref();
        let is_leader = leader.is_some_and(|leader| leader.view.id == node.view.id);
        let master_name = leader
            .filter(|_| !is_leader)
            .map(|leader| leader.name.as_str());
        node.nodes_line(master_name, is_leader, self.view.term)
    }

    fn nodes(&self) -> Reply {
        let mut text = String::new();
        for node in self.all() {
            text.push_str(&self.line(node));
            text.push('\n');
        }
        Reply::Verbatim(Bytes::from(text))
    }

    fn replicas(&self, name: &[u8]) -> Reply {
        let Some(node) = self.all().find(|node| node.name.as_bytes() == name) else {
            let mut text = b"ERR Unknown node ".to_vec();
            text.extend_from_slice(table::c_str(name));
            return Reply::Error(Bytes::from(text));
        };
        if !node.master {
            return Reply::error("ERR The specified node is not a master");
        }
        match &self.leader {
            Some(leader) if leader.view.id == node.view.id => Reply::Array(
                self.others
                    .iter()
                    .map(|replica| Reply::bulk_str(&self.line(replica)))
                    .collect(),
            ),
            _ => Reply::Array(Vec::new()),
        }
    }

    fn info(&self) -> Reply {
        let (state, assigned, size) = match self.leader {
            Some(_) => ("ok", SLOT_COUNT, 1),
            None => ("fail", 0, 0),
        };
        let term = self.view.term;
        let known = self.view.members.len();
        let text = format!(
            "cluster_state:{state}\r\n\
             cluster_slots_assigned:{assigned}\r\n\
             cluster_slots_ok:{assigned}\r\n\
             cluster_slots_pfail:0\r\n\
             cluster_slots_fail:0\r\n\
             cluster_known_nodes:{known}\r\n\
             cluster_size:{size}\r\n\
             cluster_current_epoch:{term}\r\n\
             cluster_my_epoch:{term}\r\n\
             cluster_stats_messages_sent:0\r\n\
             cluster_stats_messages_received:0\r\n\
             total_cluster_links_buffer_limit_exceeded:0\r\n"
        );
        Reply::Verbatim(Bytes::from(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Member;
    use crate::node::Role;
    use crate::resp::Protocol;
    use bytes::BytesMut;

    const A: &str = "0000000000000000000000000000000000000001";
    const B: &str = "0000000000000000000000000000000000000002";
    const C: &str = "0000000000000000000000000000000000000003";

    fn member(id: u64, voter: bool, matched_index: Option<u64>) -> MemberView {
        let port = 7000 + id;
        MemberView {
            id,
            member: Member {
                client_addr: format!("127.0.0.1:{port}"),
                peer_addr: format!("127.0.0.1:{}", port + 10000),
            },
            voter,
            matched_index,
            last_ack: None,
        }
    }

    /// Three members: 1 and 2 vote, 3 is a learner; `me` and `leader` as given.
    fn view(me: u64, leader: Option<u64>) -> ClusterView {
        ClusterView {
            me,
            my_role: if leader == Some(me) {
                Role::Leader
            } else if leader.is_some() {
                Role::Follower
            } else {
                Role::Candidate
            },
            leader,
            term: 5,
            members: vec![
                member(1, true, Some(42)),
                member(2, true, Some(41)),
                member(3, false, None),
            ],
            commit_index: 40,
        }
    }

    fn run(view: &ClusterView, args: &[&str]) -> Reply {
        let args: Vec<Bytes> = args
            .iter()
            .map(|arg| Bytes::copy_from_slice(arg.as_bytes()))
            .collect();
        cluster_command(view, &args)
    }

    fn encoded(reply: &Reply, protocol: Protocol) -> Vec<u8> {
        let mut out = BytesMut::new();
        reply.encode(protocol, &mut out);
        out.to_vec()
    }

    fn text(reply: &Reply) -> String {
        match reply {
            Reply::Verbatim(b) | Reply::Bulk(b) | Reply::Error(b) | Reply::Simple(b) => {
                String::from_utf8_lossy(b).into_owned()
            }
            other => panic!("not a string reply: {other:?}"),
        }
    }

    fn bulk(text: &str) -> Reply {
        Reply::bulk_str(text)
    }

    #[test]
    fn key_slot_matches_redis() {
        // Expected values are CLUSTER KEYSLOT answers of Redis 7.0.15.
        let cases: [(&[u8], u16); 15] = [
            (b"", 0),
            (b"{", 4092),
            (b"}", 12090),
            (b"{}", 15257),
            (b"{}}", 14790),
            (b"}{", 12793),
            (b"{{}}", 4092),
            (b"{a", 10276),
            (b"a{", 14311),
            (b"{a}", 15495),
            (b"x{a}y{b}", 15495),
            (b"{}{a}", 13650),
            (b"foo", 12182),
            (b"{user1000}.following", 3443),
            (b"{user1000}.followers", 3443),
        ];
        for (key, slot) in cases {
            assert_eq!(
                key_slot(key),
                slot,
                "key {:?}",
                String::from_utf8_lossy(key)
            );
        }
        assert_eq!(key_slot(b"8xjx7vWrfPq54mKfFD3Y1CcjjofpnAcQ"), 5458);
        assert_eq!(key_slot(b"{}a"), 10875);
        assert_eq!(key_slot(b"user1000"), key_slot(b"{user1000}.following"));
        assert_eq!(key_slot(b"a"), key_slot(b"{a}"));
    }

    #[test]
    fn key_slot_agrees_with_redis_protocol() {
        // Every key of up to three bytes over an alphabet rich in braces.
        let alphabet = [b'{', b'}', b'a', b'z', 0, 0xff];
        let mut keys: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..3 {
            let longer: Vec<Vec<u8>> = keys
                .iter()
                .flat_map(|key| {
                    alphabet.iter().map(move |&b| {
                        let mut next = key.clone();
                        next.push(b);
                        next
                    })
                })
                .collect();
            keys.extend(longer);
        }
        for key in keys {
            assert_eq!(
                key_slot(&key),
                redis_protocol::redis_keyslot(&key),
                "{key:?}"
            );
        }
    }

    #[test]
    fn node_name_is_forty_zero_padded_hex_chars() {
        assert_eq!(node_name(1), A);
        assert_eq!(node_name(0), "0".repeat(40));
        assert_eq!(
            node_name(u64::MAX),
            format!("{}{}", "0".repeat(24), "f".repeat(16))
        );
        assert_eq!(node_name(0xabc).len(), 40);
    }

    #[test]
    fn moved_text() {
        assert_eq!(
            moved(12182, "127.0.0.1:7000"),
            Reply::error("MOVED 12182 127.0.0.1:7000")
        );
        assert_eq!(
            encoded(&moved(0, "db-1.example:6379"), Protocol::Resp3),
            b"-MOVED 0 db-1.example:6379\r\n"
        );
        // Redis prints IPv6 hosts without brackets.
        assert_eq!(moved(5, "[::1]:7000"), Reply::error("MOVED 5 ::1:7000"));
        assert_eq!(moved(5, "odd"), Reply::error("MOVED 5 odd"));
    }

    #[test]
    fn nodes_on_the_leader() {
        let reply = run(&view(1, Some(1)), &["NODES"]);
        assert!(matches!(reply, Reply::Verbatim(_)));
        assert_eq!(
            text(&reply),
            format!(
                "{A} 127.0.0.1:7001@17001 myself,master - 0 0 5 connected 0-16383\n\
                 {B} 127.0.0.1:7002@17002 slave {A} 0 0 5 connected\n\
                 {C} 127.0.0.1:7003@17003 slave,nofailover {A} 0 0 5 connected\n"
            )
        );
    }

    #[test]
    fn nodes_on_a_follower_and_a_learner() {
        let follower = text(&run(&view(2, Some(1)), &["nodes"]));
        assert_eq!(
            follower.lines().nth(1),
            Some(format!("{B} 127.0.0.1:7002@17002 myself,slave {A} 0 0 5 connected").as_str())
        );
        assert!(
            follower
                .lines()
                .next()
                .is_some_and(|l| l.ends_with(" 0-16383"))
        );
        let learner = text(&run(&view(3, Some(1)), &["Nodes"]));
        assert_eq!(
            learner.lines().nth(2),
            Some(
                format!("{C} 127.0.0.1:7003@17003 myself,slave,nofailover {A} 0 0 5 connected")
                    .as_str()
            )
        );
        // A leader other than the lowest id is listed first, replicas name it as master.
        let led_by_2 = text(&run(&view(1, Some(2)), &["NODES"]));
        assert_eq!(
            led_by_2,
            format!(
                "{B} 127.0.0.1:7002@17002 master - 0 0 5 connected 0-16383\n\
                 {A} 127.0.0.1:7001@17001 myself,slave {B} 0 0 5 connected\n\
                 {C} 127.0.0.1:7003@17003 slave,nofailover {B} 0 0 5 connected\n"
            )
        );
    }

    #[test]
    fn nodes_encodes_as_bulk_in_resp2_and_verbatim_in_resp3() {
        let reply = run(&view(1, Some(1)), &["NODES"]);
        let body = text(&reply);
        let resp2 = encoded(&reply, Protocol::Resp2);
        assert_eq!(resp2, format!("${}\r\n{body}\r\n", body.len()).into_bytes());
        let resp3 = encoded(&reply, Protocol::Resp3);
        assert_eq!(
            resp3,
            format!("={}\r\ntxt:{body}\r\n", body.len() + 4).into_bytes()
        );
    }

    #[test]
    fn nodes_and_slots_with_a_hostname_and_ipv6() {
        let mut v = view(1, Some(1));
        v.members[1].member.client_addr = "db-2.example:7002".into();
        v.members[2].member.client_addr = "[::1]:7003".into();
        let nodes = text(&run(&v, &["NODES"]));
        assert!(nodes.contains(&format!(
            "{B} db-2.example:7002@17002,db-2.example slave {A} 0 0 5 connected\n"
        )));
        assert!(nodes.contains(&format!("{C} ::1:7003@17003 slave,nofailover {A}")));
        let Reply::Array(ranges) = run(&v, &["SLOTS"]) else {
            panic!("SLOTS is an array");
        };
        let Reply::Array(range) = &ranges[0] else {
            panic!("a range is an array");
        };
        assert_eq!(
            range[3],
            Reply::Array(vec![
                bulk("db-2.example"),
                Reply::Integer(7002),
                bulk(B),
                Reply::Map(vec![(bulk("hostname"), bulk("db-2.example"))]),
            ])
        );
        assert_eq!(
            range[4],
            Reply::Array(vec![
                bulk("::1"),
                Reply::Integer(7003),
                bulk(C),
                Reply::Map(vec![])
            ])
        );
    }

    #[test]
    fn slots_shape_for_three_members() {
        let entry = |name: &str, port: i64| {
            Reply::Array(vec![
                bulk("127.0.0.1"),
                Reply::Integer(port),
                bulk(name),
                Reply::Map(vec![]),
            ])
        };
        let expected = Reply::Array(vec![Reply::Array(vec![
            Reply::Integer(0),
            Reply::Integer(16383),
            entry(B, 7002),
            entry(A, 7001),
            entry(C, 7003),
        ])]);
        let reply = run(&view(3, Some(2)), &["SLOTS"]);
        assert_eq!(reply, expected);
        // The empty metadata is `*0` in RESP2 and `%0` in RESP3, as Redis 7.0 sends it.
        let node = format!("*4\r\n$9\r\n127.0.0.1\r\n:7002\r\n$40\r\n{B}\r\n");
        let resp2 = String::from_utf8(encoded(&reply, Protocol::Resp2)).unwrap_or_default();
        assert!(resp2.starts_with(&format!("*1\r\n*5\r\n:0\r\n:16383\r\n{node}*0\r\n")));
        let resp3 = String::from_utf8(encoded(&reply, Protocol::Resp3)).unwrap_or_default();
        assert!(resp3.starts_with(&format!("*1\r\n*5\r\n:0\r\n:16383\r\n{node}%0\r\n")));
    }

    #[test]
    fn shards_shape() {
        let node = |name: &str, port: i64, role: &str, offset: i64| {
            Reply::Map(vec![
                (bulk("id"), bulk(name)),
                (bulk("port"), Reply::Integer(port)),
                (bulk("ip"), bulk("127.0.0.1")),
                (bulk("endpoint"), bulk("127.0.0.1")),
                (bulk("role"), bulk(role)),
                (bulk("replication-offset"), Reply::Integer(offset)),
                (bulk("health"), bulk("online")),
            ])
        };
        let expected = Reply::Array(vec![Reply::Map(vec![
            (
                bulk("slots"),
                Reply::Array(vec![Reply::Integer(0), Reply::Integer(16383)]),
            ),
            (
                bulk("nodes"),
                Reply::Array(vec![
                    node(A, 7001, "master", 42),
                    node(B, 7002, "replica", 41),
                    node(C, 7003, "replica", 40),
                ]),
            ),
        ])]);
        let reply = run(&view(1, Some(1)), &["SHARDS"]);
        assert_eq!(reply, expected);
        assert!(encoded(&reply, Protocol::Resp3).starts_with(b"*1\r\n%2\r\n$5\r\nslots\r\n"));
        assert!(encoded(&reply, Protocol::Resp2).starts_with(b"*1\r\n*4\r\n$5\r\nslots\r\n"));
    }

    #[test]
    fn info_with_a_leader() {
        let reply = run(&view(2, Some(1)), &["INFO"]);
        assert!(matches!(reply, Reply::Verbatim(_)));
        assert_eq!(
            text(&reply),
            "cluster_state:ok\r\n\
             cluster_slots_assigned:16384\r\n\
             cluster_slots_ok:16384\r\n\
             cluster_slots_pfail:0\r\n\
             cluster_slots_fail:0\r\n\
             cluster_known_nodes:3\r\n\
             cluster_size:1\r\n\
             cluster_current_epoch:5\r\n\
             cluster_my_epoch:5\r\n\
             cluster_stats_messages_sent:0\r\n\
             cluster_stats_messages_received:0\r\n\
             total_cluster_links_buffer_limit_exceeded:0\r\n"
        );
    }

    #[test]
    fn info_without_a_leader() {
        let info = text(&run(&view(2, None), &["INFO"]));
        assert!(info.starts_with(
            "cluster_state:fail\r\n\
             cluster_slots_assigned:0\r\n\
             cluster_slots_ok:0\r\n\
             cluster_slots_pfail:0\r\n\
             cluster_slots_fail:0\r\n\
             cluster_known_nodes:3\r\n\
             cluster_size:0\r\n"
        ));
        // A leader that is not a member is no leader either.
        assert_eq!(text(&run(&view(2, Some(9)), &["INFO"])), info);
    }

    #[test]
    fn without_a_leader_every_member_is_a_slotless_master() {
        let v = view(2, None);
        assert_eq!(run(&v, &["SLOTS"]), Reply::Array(vec![]));
        assert_eq!(
            text(&run(&v, &["NODES"])),
            format!(
                "{A} 127.0.0.1:7001@17001 master - 0 0 5 connected\n\
                 {B} 127.0.0.1:7002@17002 myself,master - 0 0 5 connected\n\
                 {C} 127.0.0.1:7003@17003 master,nofailover - 0 0 5 connected\n"
            )
        );
        let Reply::Array(shards) = run(&v, &["SHARDS"]) else {
            panic!("SHARDS is an array");
        };
        assert_eq!(shards.len(), 3);
        let Reply::Map(fields) = &shards[1] else {
            panic!("a shard is a map");
        };
        assert_eq!(fields[0], (bulk("slots"), Reply::Array(vec![])));
        let Reply::Array(nodes) = &fields[1].1 else {
            panic!("nodes is an array");
        };
        assert_eq!(nodes.len(), 1);
        let Reply::Map(node) = &nodes[0] else {
            panic!("a node is a map");
        };
        assert_eq!(node[0], (bulk("id"), bulk(B)));
        assert_eq!(node[4], (bulk("role"), bulk("master")));
        assert_eq!(run(&v, &["REPLICAS", A]), Reply::Array(vec![]));
    }

    #[test]
    fn replicas_and_slaves() {
        let v = view(2, Some(1));
        let expected = Reply::Array(vec![
            bulk(&format!(
                "{B} 127.0.0.1:7002@17002 myself,slave {A} 0 0 5 connected"
            )),
            bulk(&format!(
                "{C} 127.0.0.1:7003@17003 slave,nofailover {A} 0 0 5 connected"
            )),
        ]);
        assert_eq!(run(&v, &["REPLICAS", A]), expected);
        assert_eq!(run(&v, &["slaves", A]), expected);
        assert_eq!(
            run(&v, &["REPLICAS", B]),
            Reply::error("ERR The specified node is not a master")
        );
        assert_eq!(
            run(&v, &["REPLICAS", "abc"]),
            Reply::error("ERR Unknown node abc")
        );
    }

    #[test]
    fn myid_keyslot_and_help() {
        let v = view(3, Some(1));
        assert_eq!(run(&v, &["MYID"]), bulk(C));
        assert_eq!(run(&v, &["keyslot", "foo"]), Reply::Integer(12182));
        assert_eq!(run(&v, &["KEYSLOT", ""]), Reply::Integer(0));
        let Reply::Array(lines) = run(&v, &["help"]) else {
            panic!("HELP is an array");
        };
        assert_eq!(
            lines.first(),
            Some(&Reply::simple(
                "CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
            ))
        );
        assert_eq!(lines.last(), Some(&Reply::simple("    Prints this help.")));
        assert!(lines.iter().all(|line| matches!(line, Reply::Simple(_))));
    }

    #[test]
    fn error_texts_match_redis() {
        let v = view(1, Some(1));
        assert_eq!(
            run(&v, &[]),
            Reply::error("ERR wrong number of arguments for 'cluster' command")
        );
        assert_eq!(
            run(&v, &["bogus"]),
            Reply::error("ERR unknown subcommand 'bogus'. Try CLUSTER HELP.")
        );
        assert_eq!(
            run(&v, &["MYSHARDID"]),
            Reply::error("ERR unknown subcommand 'MYSHARDID'. Try CLUSTER HELP.")
        );
        assert_eq!(
            run(&v, &["KEYSLOT"]),
            Reply::error("ERR wrong number of arguments for 'cluster|keyslot' command")
        );
        assert_eq!(
            run(&v, &["KeySlot", "a", "b"]),
            Reply::error("ERR wrong number of arguments for 'cluster|keyslot' command")
        );
        assert_eq!(
            run(&v, &["Slots", "x"]),
            Reply::error("ERR wrong number of arguments for 'cluster|slots' command")
        );
        assert_eq!(
            run(&v, &["SLAVES"]),
            Reply::error("ERR wrong number of arguments for 'cluster|slaves' command")
        );
        let long = "x".repeat(200);
        assert_eq!(
            run(&v, &[&long]),
            Reply::error(format!(
                "ERR unknown subcommand '{}'. Try CLUSTER HELP.",
                "x".repeat(128)
            ))
        );
        let raw = cluster_command(&v, &[Bytes::from_static(b"\xffz\0tail")]);
        assert_eq!(
            raw,
            Reply::Error(Bytes::from_static(
                b"ERR unknown subcommand '\xffz'. Try CLUSTER HELP."
            ))
        );
    }

    #[test]
    fn odd_views_and_arguments_never_panic() {
        let mut odd = view(7, Some(7));
        odd.members[0].member = Member {
            client_addr: String::new(),
            peer_addr: "no-port".into(),
        };
        odd.members[1].member.client_addr = "host:notaport".into();
        odd.members[2].member.client_addr = "[::1]".into();
        odd.members[2].matched_index = Some(u64::MAX);
        let empty = ClusterView {
            members: Vec::new(),
            ..view(1, Some(1))
        };
        let subcommands = [
            "SLOTS", "SHARDS", "NODES", "INFO", "MYID", "KEYSLOT", "REPLICAS", "SLAVES", "HELP",
            "", "{",
        ];
        for v in [&odd, &empty, &view(1, None)] {
            for sub in subcommands {
                for extra in [&[][..], &["{"][..], &["", ""][..]] {
                    let mut args = vec![sub];
                    args.extend_from_slice(extra);
                    let reply = run(v, &args);
                    encoded(&reply, Protocol::Resp2);
                    encoded(&reply, Protocol::Resp3);
                }
            }
        }
        assert!(text(&run(&odd, &["NODES"])).contains(" :0@0 "));
        assert_eq!(
            text(&run(&empty, &["INFO"])).lines().next(),
            Some("cluster_state:fail")
        );
    }
}
