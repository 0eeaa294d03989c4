//! The connection's own state as a client sees it: AUTH, HELLO, the CLIENT family, and the
//! RAFT.MEMBERS reply.

use bytes::Bytes;

use super::{ReplyMode, Session};
use crate::command::{self, SYNTAX_ERROR};
use crate::error::Error;
use crate::redis::table;
use crate::resp::{Protocol, Reply};

/// RAFT.MEMBERS: one entry per member: id, client address, peer address, role, matched index.
pub(super) fn members_reply(view: &crate::node::ClusterView) -> Reply {
    Reply::Array(
        view.members
            .iter()
            .map(|m| {
                let role = view.role_name(m);
                Reply::Map(vec![
                    (Reply::bulk_str("id"), Reply::Integer(m.id as i64)),
                    (
                        Reply::bulk_str("addr"),
                        Reply::bulk_str(&m.member.client_addr),
                    ),
                    (
                        Reply::bulk_str("peer-addr"),
                        Reply::bulk_str(&m.member.peer_addr),
                    ),
                    (Reply::bulk_str("role"), Reply::bulk_str(role)),
                    (Reply::bulk_str("myself"), Reply::Bool(m.id == view.me)),
                    (
                        Reply::bulk_str("matched-index"),
                        m.matched_index
                            .map_or(Reply::Nil, |i| Reply::Integer(i as i64)),
                    ),
                    (
                        Reply::bulk_str("last-ack-ms"),
                        m.last_ack
                            .map_or(Reply::Nil, |ago| Reply::Integer(ago.as_millis() as i64)),
                    ),
                ])
            })
            .collect(),
    )
}

impl Session {
    /// AUTH: checks the password of the `default` user.
    pub(super) fn auth(&mut self, username: Option<&[u8]>, password: &[u8]) -> Reply {
        match (&self.server.config.requirepass, username) {
            (None, None) => Reply::error(
                "ERR AUTH <password> called without any password configured for the default \
                 user. Are you sure your configuration is correct?",
            ),
            (None, Some(b"default")) => {
                self.authenticated = true;
                Reply::ok()
            }
            (Some(required), None | Some(b"default")) if required.as_bytes() == password => {
                self.authenticated = true;
                Reply::ok()
            }
            _ => Reply::error("WRONGPASS invalid username-password pair or user is disabled."),
        }
    }

    pub(super) fn hello(
        &mut self,
        protover: Option<i64>,
        auth: Option<(Bytes, Bytes)>,
        setname: Option<Bytes>,
    ) -> Reply {
        let protocol = match protover {
            None => self.protocol,
            Some(2) => Protocol::Resp2,
            Some(3) => Protocol::Resp3,
            Some(_) => return Error::NoProto.to_resp(),
        };
        if let Some((username, password)) = auth {
            let reply = self.auth(Some(&username), &password);
            if reply.is_error() {
                return reply;
            }
        }
        if !self.authenticated {
            return Reply::error(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
                 HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client \
                 and select the RESP protocol version at the same time",
            );
        }
        if let Some(name) = setname {
            if let Err(reply) = validate_client_name(&name) {
                return reply;
            }
            self.client.set_name((!name.is_empty()).then_some(name));
        }
        self.protocol = protocol;
        let version = match protocol {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        };
        self.client.set_resp(version);
        Reply::Map(vec![
            (Reply::bulk_str("server"), Reply::bulk_str("redis")),
            (
                Reply::bulk_str("version"),
                Reply::bulk_str(crate::server::REDIS_VERSION),
            ),
            (Reply::bulk_str("proto"), Reply::Integer(i64::from(version))),
            (Reply::bulk_str("id"), Reply::Integer(self.client.id as i64)),
            (Reply::bulk_str("mode"), Reply::bulk_str("standalone")),
            (Reply::bulk_str("role"), Reply::bulk_str("master")),
            (Reply::bulk_str("modules"), Reply::Array(vec![])),
        ])
    }

    pub(super) fn client_command(&mut self, subcommand: &str, args: &[Bytes]) -> Reply {
        let clients = &self.server.clients;
        match subcommand {
            "id" => Reply::Integer(self.client.id as i64),
            "getname" => self.client.name().map_or(Reply::Nil, Reply::Bulk),
            "setname" => match validate_client_name(&args[0]) {
                Ok(()) => {
                    let name = args[0].clone();
                    self.client.set_name((!name.is_empty()).then_some(name));
                    Reply::ok()
                }
                Err(reply) => reply,
            },
            "setinfo" => {
                let value = &args[1];
                if value.iter().any(|c| !(b'!'..=b'~').contains(c)) {
                    return Reply::error(format!(
                        "ERR {} cannot contain spaces, newlines or special characters.",
                        String::from_utf8_lossy(&args[0])
                    ));
                }
                if args[0].eq_ignore_ascii_case(b"lib-name") {
                    self.client.set_lib_info(Some(value.clone()), None);
                } else if args[0].eq_ignore_ascii_case(b"lib-ver") {
                    self.client.set_lib_info(None, Some(value.clone()));
                } else {
                    return Reply::error(format!(
                        "ERR Unrecognized option '{}'",
                        String::from_utf8_lossy(&args[0])
                    ));
                }
                Reply::ok()
            }
            "info" => Reply::Verbatim(Bytes::from(format!("{}\n", self.client.info_line())))
                .for_protocol(self.protocol),
            "list" => {
                if !args.is_empty() {
                    let type_normal = args.len() == 2
                        && args[0].eq_ignore_ascii_case(b"type")
                        && args[1].eq_ignore_ascii_case(b"normal");
                    if !type_normal {
                        return Reply::error(SYNTAX_ERROR);
                    }
                }
                Reply::Verbatim(Bytes::from(clients.list())).for_protocol(self.protocol)
            }
            "kill" => client_kill(clients, self.client.id, args),
            "reply" => {
                let mode = &args[0];
                if mode.eq_ignore_ascii_case(b"on") {
                    self.reply_mode = ReplyMode::On;
                    Reply::ok()
                } else if mode.eq_ignore_ascii_case(b"off") {
                    self.reply_mode = ReplyMode::Off;
                    Reply::ok()
                } else if mode.eq_ignore_ascii_case(b"skip") {
                    // The SKIP itself is not answered; the next command is skipped too.
                    self.reply_mode = ReplyMode::Skip;
                    Reply::ok()
                } else {
                    Reply::error(SYNTAX_ERROR)
                }
            }
            "no-evict" | "no-touch" => {
                let mode = &args[0];
                if mode.eq_ignore_ascii_case(b"on") || mode.eq_ignore_ascii_case(b"off") {
                    Reply::ok()
                } else {
                    Reply::error(SYNTAX_ERROR)
                }
            }
            "tracking" => {
                if args[0].eq_ignore_ascii_case(b"off") {
                    Reply::ok()
                } else {
                    Reply::error(
                        "ERR client-side caching (CLIENT TRACKING) is not supported by redraft",
                    )
                }
            }
            "help" => Reply::Array(
                CLIENT_HELP
                    .iter()
                    .map(|line| Reply::Simple(Bytes::from_static(line.as_bytes())))
                    .collect(),
            ),
            _ => table::unknown_subcommand_error("client", subcommand.as_bytes()),
        }
    }
}

impl Reply {
    /// A verbatim reply as Redis sends CLIENT LIST: verbatim in RESP3, bulk in RESP2.
    fn for_protocol(self, protocol: Protocol) -> Reply {
        match (self, protocol) {
            (Reply::Verbatim(text), Protocol::Resp2) => Reply::Bulk(text),
            (reply, _) => reply,
        }
    }
}

const CLIENT_HELP: &[&str] = &[
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are:",
    "    * ADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made from the specified address",
    "    * LADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made to specified local address",
    "    * ID <client-id>",
    "      Kill connections by client id.",
    "    * SKIPME (YES|NO)",
    "      Skip killing current connection (default: yes).",
    "LIST [options ...]",
    "    Return information about client connections. Options:",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Return clients of specified type.",
    "NO-EVICT (ON|OFF)",
    "    Protect current client connection from eviction.",
    "NO-TOUCH (ON|OFF)",
    "    Will not touch LRU/LFU stats when this mode is on.",
    "REPLY (ON|OFF|SKIP)",
    "    Control the replies sent to the current connection.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "SETINFO <LIB-NAME|LIB-VER> <value>",
    "    Set client library name or version.",
    "HELP",
    "    Print this help.",
];

/// Redis's rule for connection names: printable ASCII without spaces.
fn validate_client_name(name: &[u8]) -> Result<(), Reply> {
    if name.iter().any(|c| !(b'!'..=b'~').contains(c)) {
        return Err(Reply::error(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    Ok(())
}

/// CLIENT KILL in its old (`ip:port`) and new (`ID n`, `ADDR a`, `LADDR a`, `SKIPME yes|no`)
/// forms.
fn client_kill(clients: &crate::server::clients::ClientRegistry, me: u64, args: &[Bytes]) -> Reply {
    if args.len() == 1 {
        let addr = String::from_utf8_lossy(&args[0]).into_owned();
        let killed = clients.kill(|c| c.addr.to_string() == addr);
        return if killed > 0 {
            Reply::ok()
        } else {
            Reply::error("ERR No such client")
        };
    }
    if !args.len().is_multiple_of(2) {
        return Reply::error(SYNTAX_ERROR);
    }
    let mut id = None;
    let mut addr = None;
    let mut laddr = None;
    let mut skip_me = true;
    for pair in args.chunks(2) {
        let (option, value) = (&pair[0], &pair[1]);
        let value_text = String::from_utf8_lossy(value).into_owned();
        if option.eq_ignore_ascii_case(b"id") {
            match command::parse_id(value) {
                Some(n) => id = Some(n),
                None => return Reply::error("ERR client-id should be greater than 0"),
            }
        } else if option.eq_ignore_ascii_case(b"addr") {
            addr = Some(value_text);
        } else if option.eq_ignore_ascii_case(b"laddr") {
            laddr = Some(value_text);
        } else if option.eq_ignore_ascii_case(b"skipme") {
            if value.eq_ignore_ascii_case(b"yes") {
                skip_me = true;
            } else if value.eq_ignore_ascii_case(b"no") {
                skip_me = false;
            } else {
                return Reply::error(SYNTAX_ERROR);
            }
        } else {
            return Reply::error(SYNTAX_ERROR);
        }
    }
    let killed = clients.kill(|c| {
        !(skip_me && c.id == me)
            && id.is_none_or(|id| c.id == id)
            && addr.as_ref().is_none_or(|a| c.addr.to_string() == *a)
            && laddr
                .as_ref()
                .is_none_or(|a| c.local_addr.to_string() == *a)
    });
    Reply::Integer(killed as i64)
}
