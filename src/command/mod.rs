//! Commands: the table of what the server supports, and parsing argument vectors into typed
//! [`Command`]s with Redis's exact error replies.
//!
//! Parsing follows Redis's order: unknown command, then arity, then (in the connection)
//! authentication, then the command's own argument checks. Nothing here executes a command.

use bytes::Bytes;

use crate::raft::RequestId;
use crate::redis::table;
use crate::resp::Reply;
use crate::resp::string2ll;

/// The error text Redis uses for a malformed integer argument.
pub const NOT_AN_INTEGER: &str = "ERR value is not an integer or out of range";
/// The error text of a syntax error.
pub const SYNTAX_ERROR: &str = "ERR syntax error";

/// A parsed client command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// A keyspace command, executed by the state machine (`store::commands`): through the log
    /// when it writes, as a linearizable read when it only reads.
    Keyspace {
        /// The whole command, name first.
        args: Vec<Bytes>,
        /// Whether it may write (Redis's `write` flag).
        write: bool,
        /// The first key, which cluster clients route by.
        key: Option<Bytes>,
        /// Whether the reply can carry stored data (see `store::commands::ReplySize`).
        large_reply: bool,
    },
    /// `PING [message]`.
    Ping(Option<Bytes>),
    /// `ECHO message`.
    Echo(Bytes),
    /// `SELECT index`.
    Select(i64),
    /// `QUIT`.
    Quit,
    /// `RESET`.
    Reset,
    /// `AUTH [username] password`.
    Auth {
        /// The user, `default` when omitted.
        username: Option<Bytes>,
        /// The password.
        password: Bytes,
    },
    /// `HELLO [protover [AUTH username password] [SETNAME clientname]]`.
    Hello {
        /// Requested protocol version, if any.
        protover: Option<i64>,
        /// Credentials to authenticate with.
        auth: Option<(Bytes, Bytes)>,
        /// Name to set on the connection.
        setname: Option<Bytes>,
    },
    /// `CLIENT <subcommand> ...`, arguments after the subcommand name.
    Client {
        /// Lowercase subcommand name.
        subcommand: String,
        /// The arguments after the subcommand.
        args: Vec<Bytes>,
    },
    /// `CONFIG <subcommand> ...`.
    Config {
        /// Lowercase subcommand name.
        subcommand: String,
        /// The arguments after the subcommand.
        args: Vec<Bytes>,
    },
    /// `COMMAND ...`, the whole argument vector (answered by the table).
    CommandInfo(Vec<Bytes>),
    /// `INFO [section ...]`.
    Info(Vec<Bytes>),
    /// `TIME`.
    Time,
    /// `CLUSTER <subcommand> ...`: the arguments after `CLUSTER`.
    Cluster(Vec<Bytes>),
    /// A Pub/Sub command (`SUBSCRIBE`, `PUBLISH`, `PUBSUB NUMSUB`…), answered by the node the
    /// client talks to (`server::connection::pubsub`).
    PubSub {
        /// The command table's name: `subscribe`, `pubsub|numsub`…
        name: &'static str,
        /// The whole command.
        args: Vec<Bytes>,
    },
    /// `READONLY`: this connection's reads may be served by a follower (still linearizable).
    ReadOnly,
    /// `READWRITE`: back to reads served through the leader.
    ReadWrite,
    /// `ASKING`: accepted for cluster clients; there is one shard, so it changes nothing.
    Asking,
    /// `REDRAFT.PROXIED`: marks a connection opened by a follower's proxy; such a connection is
    /// never forwarded again.
    Proxied,
    /// `MULTI`.
    Multi,
    /// `EXEC` (turned into [`Command::Transaction`] by the connection, which holds the queue).
    Exec,
    /// `DISCARD`.
    Discard,
    /// `WATCH key...`.
    Watch(Vec<Bytes>),
    /// `UNWATCH`.
    Unwatch,
    /// A transaction ready to apply as one log entry: the queued commands, and the watched
    /// keys with the revisions they had when watched (EXEC answers nil if any changed).
    /// Built by the connection from MULTI…EXEC, or received from a follower's proxy as
    /// `REDRAFT.EXEC`.
    Transaction {
        /// The queued commands, each name first.
        commands: Vec<Vec<Bytes>>,
        /// Watched keys and their revisions.
        watched: Vec<(Bytes, u64)>,
    },
    /// LASTSAVE, SAVE, BGSAVE, WAIT, MEMORY (but USAGE), LATENCY, SLOWLOG, FUNCTION, SCRIPT,
    /// EVAL…: answered by `server::ops`.
    ServerOp {
        /// Lowercase command name.
        name: String,
        /// The whole command.
        args: Vec<Bytes>,
    },
    /// `REDRAFT.REQ node incarnation seq answered_below command…`: a command forwarded by a
    /// follower's proxy with the request id it keeps across resends (see `store::sessions`).
    /// The command is a keyspace command or a `REDRAFT.EXEC` transaction.
    Identified {
        /// The id the sender gives the command.
        id: RequestId,
        /// Every request of the sender below this sequence number has been answered.
        answered_below: u64,
        /// The command.
        command: Box<Command>,
    },
    /// `RAFT.MEMBERS`: members, roles and replication progress.
    RaftMembers,
    /// `RAFT.ADDNODE id host:port[@peerport]`: add a learner, then promote it to voter.
    RaftAddNode {
        /// The new node's id.
        id: u64,
        /// Its addresses.
        member: crate::config::Member,
    },
    /// `RAFT.REMOVENODE id`.
    RaftRemoveNode(u64),
    /// `RAFT.TRANSFER [id]`: hand leadership to `id` or the most up-to-date voter.
    RaftTransfer(Option<u64>),
}

/// How a command touches the keyspace, which decides ordering within a pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Goes through the raft log.
    Write,
    /// A linearizable read of the state machine.
    Read,
    /// Answered by the connection or the server without touching the keyspace.
    Local,
}

impl Command {
    /// How this command touches the keyspace.
    pub fn access(&self) -> Access {
        match self {
            Command::Identified { command, .. } => command.access(),
            Command::Keyspace { write: true, .. } | Command::Transaction { .. } => Access::Write,
            Command::Keyspace { write: false, .. } | Command::Watch(_) => Access::Read,
            _ => Access::Local,
        }
    }

    /// The key a cluster client would route this command by (the first key), if any.
    pub fn routing_key(&self) -> Option<&Bytes> {
        match self {
            Command::Identified { command, .. } => command.routing_key(),
            Command::Keyspace { key, .. } => key.as_ref(),
            Command::Watch(keys) => keys.first(),
            Command::Transaction { commands, watched } => watched
                .first()
                .map(|(key, _)| key)
                .or_else(|| commands.iter().find_map(|c| first_key(c))),
            _ => None,
        }
    }

    /// `REDRAFT.EXEC`: a transaction as a follower forwards it to the leader.
    pub fn transaction_args(commands: &[Vec<Bytes>], watched: &[(Bytes, u64)]) -> Vec<Bytes> {
        let mut args = vec![
            Bytes::from_static(b"REDRAFT.EXEC"),
            Bytes::from(watched.len().to_string()),
        ];
        for (key, revision) in watched {
            args.push(key.clone());
            args.push(Bytes::from(revision.to_string()));
        }
        args.push(Bytes::from(commands.len().to_string()));
        for command in commands {
            args.push(Bytes::from(command.len().to_string()));
            args.extend(command.iter().cloned());
        }
        args
    }

    /// Whether Redis lets this command run before authentication.
    pub fn allowed_before_auth(&self) -> bool {
        matches!(
            self,
            Command::Auth { .. } | Command::Hello { .. } | Command::Quit | Command::Reset
        )
    }
}

/// Parses a positive client id as CLIENT KILL ID takes it.
pub fn parse_id(arg: &[u8]) -> Option<u64> {
    string2ll(arg).filter(|&n| n > 0).map(|n| n as u64)
}

/// Parses an integer argument; `Err` is Redis's error reply.
pub fn int_arg(arg: &[u8]) -> Result<i64, Reply> {
    integer_arg(arg)
}

fn integer_arg(arg: &[u8]) -> Result<i64, Reply> {
    string2ll(arg).ok_or_else(|| Reply::error(NOT_AN_INTEGER))
}

/// Parses one argument vector (command name first). `Err` is the error reply to send.
pub fn parse(args: Vec<Bytes>) -> Result<Command, Reply> {
    let Some(name) = args.first() else {
        return Err(table::unknown_command_error(&args));
    };
    let has_prefix = |prefix: &[u8]| {
        name.len() > prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix)
    };
    if has_prefix(b"raft.") || has_prefix(b"redraft.") {
        return parse_admin(&args);
    }
    let Some(spec) = table::lookup(name) else {
        return Err(table::unknown_command_error(&args));
    };
    // The command itself, or its subcommand: unknown subcommand, then arity, as Redis checks.
    let resolved = table::resolve_in(spec, &args)?;
    // CONFIG is the server's, but for a SET of a replicated data-type parameter.
    let in_store = spec.name != "config" || crate::store::commands::config::routes_here(&args);
    if in_store && let Some(keyspace) = crate::store::commands::find(resolved) {
        let key = table::first_key_position(resolved, &args).and_then(|i| args.get(i).cloned());
        return Ok(Command::Keyspace {
            write: keyspace.writes(resolved, &args),
            large_reply: keyspace.replies_with_data(&args),
            key,
            args,
        });
    }
    let mut args = args;
    let command = match spec.name {
        "ping" => {
            if args.len() > 2 {
                return Err(table::wrong_arity_error(spec));
            }
            Command::Ping(args.get(1).cloned())
        }
        "echo" => Command::Echo(args.swap_remove(1)),
        "select" => Command::Select(integer_arg(&args[1])?),
        "quit" => Command::Quit,
        "reset" => Command::Reset,
        "auth" => match args.len() {
            2 => Command::Auth {
                username: None,
                password: args.swap_remove(1),
            },
            3 => {
                let password = args.pop().expect("arity checked");
                let username = args.pop();
                Command::Auth { username, password }
            }
            _ => return Err(Reply::error(SYNTAX_ERROR)),
        },
        "hello" => parse_hello(&args)?,
        "cluster" => Command::Cluster(args.split_off(1)),
        "multi" => Command::Multi,
        "exec" => Command::Exec,
        "discard" => Command::Discard,
        "watch" => Command::Watch(args.split_off(1)),
        "unwatch" => Command::Unwatch,
        "memory" | "latency" | "slowlog" | "function" | "script" | "lastsave" | "save"
        | "bgsave" | "wait" => Command::ServerOp {
            name: spec.name.to_string(),
            args,
        },
        "readonly" => Command::ReadOnly,
        "readwrite" => Command::ReadWrite,
        "asking" => Command::Asking,
        "client" | "config" => {
            let subcommand = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
            let rest = args.split_off(2);
            if spec.name == "client" {
                Command::Client {
                    subcommand,
                    args: rest,
                }
            } else {
                Command::Config {
                    subcommand,
                    args: rest,
                }
            }
        }
        "command" => Command::CommandInfo(args),
        "subscribe" | "unsubscribe" | "psubscribe" | "punsubscribe" | "ssubscribe"
        | "sunsubscribe" | "publish" | "spublish" | "pubsub" => Command::PubSub {
            name: resolved.name,
            args,
        },
        "info" => Command::Info(args.split_off(1)),
        "time" => Command::Time,
        _ => return Err(table::unknown_command_error(&args)),
    };
    Ok(command)
}

/// redraft's own commands, which Redis does not have (and COMMAND does not list).
fn parse_admin(args: &[Bytes]) -> Result<Command, Reply> {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let arity_error = || table::wrong_arity_error_for(&name);
    let id_arg = |arg: &[u8]| {
        parse_id(arg).ok_or_else(|| Reply::error("ERR node id must be a positive integer"))
    };
    match name.as_str() {
        "redraft.proxied" if args.len() == 1 => Ok(Command::Proxied),
        "redraft.revisions" if args.len() >= 2 => Ok(Command::Keyspace {
            key: args.get(1).cloned(),
            write: false,
            large_reply: false,
            args: args.to_vec(),
        }),
        "redraft.req" => {
            parse_identified(&args[1..]).ok_or_else(|| Reply::error("ERR malformed REDRAFT.REQ"))
        }
        "redraft.exec" => {
            parse_transaction(&args[1..]).ok_or_else(|| Reply::error("ERR malformed REDRAFT.EXEC"))
        }
        "raft.members" if args.len() == 1 => Ok(Command::RaftMembers),
        "raft.addnode" if args.len() == 3 => {
            let id = id_arg(&args[1])?;
            let member = crate::config::parse_member_addr(&String::from_utf8_lossy(&args[2]))
                .map_err(|e| Reply::error(format!("ERR {e}")))?;
            Ok(Command::RaftAddNode { id, member })
        }
        "raft.removenode" if args.len() == 2 => Ok(Command::RaftRemoveNode(id_arg(&args[1])?)),
        "raft.transfer" if args.len() <= 2 => Ok(Command::RaftTransfer(
            args.get(1).map(|a| id_arg(a)).transpose()?,
        )),
        "redraft.proxied" | "redraft.revisions" | "raft.members" | "raft.addnode"
        | "raft.removenode" | "raft.transfer" => Err(arity_error()),
        _ => Err(table::unknown_command_error(args)),
    }
}

/// The first key of a command line, by the command table.
pub fn first_key(args: &[Bytes]) -> Option<&Bytes> {
    let spec = table::lookup(args.first()?)?;
    table::first_key_position(spec, args).and_then(|i| args.get(i))
}

/// Decodes the arguments of `REDRAFT.REQ`: the id, then a keyspace command or a transaction.
fn parse_identified(args: &[Bytes]) -> Option<Command> {
    let number = |arg: &Bytes| -> Option<u64> { std::str::from_utf8(arg).ok()?.parse().ok() };
    let [node, incarnation, seq, answered_below, command @ ..] = args else {
        return None;
    };
    let command = parse(command.to_vec()).ok()?;
    if !matches!(
        command,
        Command::Keyspace { .. } | Command::Transaction { .. }
    ) {
        return None;
    }
    Some(Command::Identified {
        id: RequestId {
            node: number(node)?,
            incarnation: number(incarnation)?,
            seq: number(seq)?,
        },
        answered_below: number(answered_below)?,
        command: Box::new(command),
    })
}

/// Decodes the arguments of `REDRAFT.EXEC` (see [`Command::transaction_args`]).
fn parse_transaction(args: &[Bytes]) -> Option<Command> {
    let mut rest = args.iter();
    let number =
        |arg: Option<&Bytes>| -> Option<usize> { std::str::from_utf8(arg?).ok()?.parse().ok() };
    let watched_count = number(rest.next())?;
    let mut watched = Vec::with_capacity(watched_count.min(1024));
    for _ in 0..watched_count {
        let key = rest.next()?.clone();
        let revision: u64 = std::str::from_utf8(rest.next()?).ok()?.parse().ok()?;
        watched.push((key, revision));
    }
    let command_count = number(rest.next())?;
    let mut commands = Vec::with_capacity(command_count.min(1024));
    for _ in 0..command_count {
        let argc = number(rest.next())?;
        let mut command = Vec::with_capacity(argc.min(1024));
        for _ in 0..argc {
            command.push(rest.next()?.clone());
        }
        commands.push(command);
    }
    rest.next()
        .is_none()
        .then_some(Command::Transaction { commands, watched })
}

fn parse_hello(args: &[Bytes]) -> Result<Command, Reply> {
    let mut protover = None;
    let mut auth = None;
    let mut setname = None;
    if let Some(version) = args.get(1) {
        let version = string2ll(version).ok_or_else(|| {
            Reply::error("ERR Protocol version is not an integer or out of range")
        })?;
        protover = Some(version);
        let mut i = 2;
        while i < args.len() {
            let more = args.len() - i - 1;
            let option = &args[i];
            if option.eq_ignore_ascii_case(b"auth") && more >= 2 {
                auth = Some((args[i + 1].clone(), args[i + 2].clone()));
                i += 3;
            } else if option.eq_ignore_ascii_case(b"setname") && more >= 1 {
                setname = Some(args[i + 1].clone());
                i += 2;
            } else {
                return Err(Reply::error(format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(option)
                )));
            }
        }
    }
    Ok(Command::Hello {
        protover,
        auth,
        setname,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    #[test]
    fn command_parse_classifies_keyspace_commands() {
        let parsed = parse(args(&["INCRBY", "k", "5"])).unwrap();
        assert_eq!(parsed.access(), Access::Write);
        assert_eq!(parsed.routing_key(), Some(&Bytes::from_static(b"k")));
        let parsed = parse(args(&["get", "k"])).unwrap();
        assert_eq!(parsed.access(), Access::Read);
        assert_eq!(parse(args(&["PING"])).unwrap().access(), Access::Local);
    }

    #[test]
    fn command_parse_rejects_arity_before_execution() {
        assert_eq!(
            parse(args(&["GET"])),
            Err(Reply::error(
                "ERR wrong number of arguments for 'get' command"
            ))
        );
    }

    #[test]
    fn command_parse_identified_wraps_a_keyspace_command() {
        let parsed = parse(args(&["REDRAFT.REQ", "2", "77", "5", "3", "INCR", "k"])).unwrap();
        assert_eq!(parsed.access(), Access::Write);
        assert_eq!(parsed.routing_key(), Some(&Bytes::from_static(b"k")));
        let Command::Identified {
            id, answered_below, ..
        } = parsed
        else {
            panic!("not identified: {parsed:?}");
        };
        assert_eq!(
            (id.node, id.incarnation, id.seq, answered_below),
            (2, 77, 5, 3)
        );
        assert!(parse(args(&["REDRAFT.REQ", "2", "77", "5", "3", "PING"])).is_err());
        assert!(parse(args(&["REDRAFT.REQ", "2", "x", "5", "3", "GET", "k"])).is_err());
    }

    #[test]
    fn command_parse_hello_options() {
        assert_eq!(
            parse(args(&["HELLO", "3", "SETNAME", "x"])),
            Ok(Command::Hello {
                protover: Some(3),
                auth: None,
                setname: Some(Bytes::from_static(b"x"))
            })
        );
        assert_eq!(
            parse(args(&["HELLO", "3", "AUTH", "u"])),
            Err(Reply::error("ERR Syntax error in HELLO option 'AUTH'"))
        );
    }
}
