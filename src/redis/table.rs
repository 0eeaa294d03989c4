//! The command table: every command the server supports, described exactly as Redis 7.0
//! describes it.
//!
//! This module owns, per command: name, arity, flags, first/last key and key step, ACL
//! categories, tips, key specifications, subcommands and the documentation `COMMAND DOCS`
//! returns. The dispatcher uses it to look a command up, check its arity and find its keys
//! (to route by slot); the `COMMAND` command is answered entirely from it
//! ([`command_reply`]), together with the error texts Redis uses for unknown commands,
//! unknown subcommands and wrong arity.
//!
//! It must not execute commands, touch connections, storage or raft, or read anything at
//! runtime: the table is static data. Its data, `table/generated.rs`, is written by
//! `redis-compat/tools/gen_command_table.py` from what a real
//! redis-server 7.0 answers to `COMMAND INFO` and `COMMAND DOCS`; adding a command means
//! adding one entry there (by rerunning the script or by hand) and nothing else.
//!
//! Every reply is meant to match redis-server 7.0 byte for byte, except:
//! - order: Redis walks hash tables for bare `COMMAND`, `COMMAND LIST`, bare `COMMAND
//!   INFO`/`DOCS` and a container's subcommands, in an order that changes from one
//!   redis-server process to the next; we use table order (subcommands alphabetical);
//! - `client|setinfo` and `client|no-touch` are Redis 7.2 subcommands (7.0 lacks them),
//!   described as 7.0 would describe them;
//! - RESP3 sets of maps or arrays (key specs, history) go out as arrays (see `set_of`),
//!   and a `COMMAND DOCS` naming one command twice answers it once in RESP3: both are
//!   limits of `Reply`'s RESP3 set/map encoding, not of this table.

use std::collections::HashMap;
use std::sync::LazyLock;

use bytes::Bytes;

use crate::resp::Reply;

/// One command (or subcommand) as Redis 7.0 describes it in `COMMAND INFO` and `COMMAND DOCS`.
///
/// Entries are built with the `const` builder methods below so that a table entry lists
/// only what differs from "nothing"; the fields stay public for readers.
#[derive(Clone, Copy, Debug)]
pub struct CommandSpec {
    /// Lowercase name; subcommands use Redis's full name, e.g. `client|setname`.
    pub name: &'static str,
    /// Redis arity: `n > 0` means exactly `n` arguments, `n < 0` at least `-n` (both
    /// counting the command name itself, and for subcommands the subcommand name too).
    pub arity: i32,
    /// Command flags (`write`, `readonly`, `fast`, …) in the order Redis prints them.
    pub flags: &'static [&'static str],
    /// Position of the first key (0: the command takes no keys).
    pub first_key: i32,
    /// Position of the last key; negative counts from the end (-1: the last argument).
    pub last_key: i32,
    /// Distance between keys (2 for `key value key value …`).
    pub step: i32,
    /// ACL categories without the leading `@` (`read`, `string`, …), in Redis's order.
    pub acl_categories: &'static [&'static str],
    /// Command tips (`nondeterministic_output`, `request_policy:all_shards`, …).
    pub tips: &'static [&'static str],
    /// Key specifications, in order (arguments refer to them by index).
    pub key_specs: &'static [KeySpec],
    /// Key extraction for commands whose key specs cannot tell the keys or their flags on
    /// their own (Redis's `getkeys_proc`), e.g. SET whose key flags depend on `GET`.
    pub getkeys: Option<GetKeysFn>,
    /// What `COMMAND DOCS` says about the command.
    pub docs: Docs,
    /// Subcommands of a container command (`client`, `config`, …); empty otherwise.
    pub subcommands: &'static [CommandSpec],
}

/// A command-specific key finder: given the whole command (`args[0]` is its name), the
/// positions of its keys and how each is accessed. An empty result means "no keys".
pub type GetKeysFn = fn(&[Bytes]) -> Vec<KeyRef>;

/// One key found in a command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyRef {
    /// Index of the key in the arguments (the command name is index 0).
    pub pos: usize,
    /// Key-spec flags describing the access (`RW`, `access`, `update`, …).
    pub flags: &'static [&'static str],
}

/// A Redis 7.0 key specification: where a command's keys start and how many there are.
#[derive(Clone, Copy, Debug)]
pub struct KeySpec {
    /// Free-text notes Redis attaches to some specs.
    pub notes: Option<&'static str>,
    /// Access flags (`RO`, `RW`, `OW`, `RM`, `access`, `update`, …) in Redis's order.
    pub flags: &'static [&'static str],
    /// How to find the first key.
    pub begin_search: BeginSearch,
    /// How to find the rest of the keys from the first.
    pub find_keys: FindKeys,
}

/// The `begin_search` half of a key spec.
#[derive(Clone, Copy, Debug)]
pub enum BeginSearch {
    /// The first key is at this argument index.
    Index(i32),
    /// The first key follows `keyword`, searched from `startfrom` (negative: from the end,
    /// backwards).
    Keyword {
        /// The keyword, matched case-insensitively.
        keyword: &'static str,
        /// Where the search starts.
        startfrom: i32,
    },
    /// The keys cannot be found from the arguments alone.
    Unknown,
}

/// The `find_keys` half of a key spec.
#[derive(Clone, Copy, Debug)]
pub enum FindKeys {
    /// Keys run from the first to `lastkey` (relative to the first; negative counts from
    /// the end), every `keystep` arguments; a non-zero `limit` with `lastkey` -1 means
    /// "1/limit of the remaining arguments".
    Range {
        /// Last key, relative to the first key (negative: from the end).
        lastkey: i32,
        /// Distance between keys.
        keystep: i32,
        /// Divisor of the remaining arguments when `lastkey` is -1 (0: none).
        limit: i32,
    },
    /// An argument holds the number of keys that follow.
    Keynum {
        /// Index of the key count, relative to the begin-search result.
        keynumidx: i32,
        /// Index of the first key, relative to the begin-search result.
        firstkey: i32,
        /// Distance between keys.
        keystep: i32,
    },
    /// The keys cannot be found from the arguments alone.
    Unknown,
}

/// What `COMMAND DOCS` reports for a command, besides its arguments' layout.
#[derive(Clone, Copy, Debug)]
pub struct Docs {
    /// One-line summary.
    pub summary: Option<&'static str>,
    /// Version that introduced the command.
    pub since: Option<&'static str>,
    /// Command group (`string`, `generic`, `connection`, `server`, …).
    pub group: &'static str,
    /// Time complexity text.
    pub complexity: Option<&'static str>,
    /// Documentation flags (`deprecated`, `syscmd`).
    pub doc_flags: &'static [&'static str],
    /// Version that deprecated the command.
    pub deprecated_since: Option<&'static str>,
    /// What replaces a deprecated command.
    pub replaced_by: Option<&'static str>,
    /// `(version, change)` pairs.
    pub history: &'static [(&'static str, &'static str)],
    /// The argument tree.
    pub arguments: &'static [Arg],
}

/// The type of a documented argument, as `COMMAND DOCS` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgType {
    /// `string`.
    String,
    /// `integer`.
    Integer,
    /// `double`.
    Double,
    /// `key`.
    Key,
    /// `pattern`.
    Pattern,
    /// `unix-time`.
    UnixTime,
    /// `pure-token`: the token alone.
    PureToken,
    /// `oneof`: exactly one of the nested arguments.
    OneOf,
    /// `block`: all of the nested arguments, in order.
    Block,
}

impl ArgType {
    /// The name `COMMAND DOCS` prints.
    pub const fn as_str(self) -> &'static str {
        match self {
            ArgType::String => "string",
            ArgType::Integer => "integer",
            ArgType::Double => "double",
            ArgType::Key => "key",
            ArgType::Pattern => "pattern",
            ArgType::UnixTime => "unix-time",
            ArgType::PureToken => "pure-token",
            ArgType::OneOf => "oneof",
            ArgType::Block => "block",
        }
    }
}

/// One documented argument of a command.
#[derive(Clone, Copy, Debug)]
pub struct Arg {
    /// Argument name.
    pub name: &'static str,
    /// Argument type.
    pub kind: ArgType,
    /// For keys: the index of the key spec describing it.
    pub key_spec_index: Option<i32>,
    /// The literal token preceding the value (`EX`, `TYPE`, …).
    pub token: Option<&'static str>,
    /// Short description.
    pub summary: Option<&'static str>,
    /// Version that introduced the argument.
    pub since: Option<&'static str>,
    /// Version that deprecated the argument.
    pub deprecated_since: Option<&'static str>,
    /// The argument may be left out.
    pub optional: bool,
    /// The argument may repeat.
    pub multiple: bool,
    /// When repeating, the token repeats too.
    pub multiple_token: bool,
    /// Nested arguments of a `oneof` or `block`.
    pub arguments: &'static [Arg],
}

impl CommandSpec {
    /// A command with a name and arity and nothing else; chain the other builders on it.
    pub const fn new(name: &'static str, arity: i32) -> CommandSpec {
        CommandSpec {
            name,
            arity,
            flags: &[],
            first_key: 0,
            last_key: 0,
            step: 0,
            acl_categories: &[],
            tips: &[],
            key_specs: &[],
            getkeys: None,
            docs: Docs {
                summary: None,
                since: None,
                group: "generic",
                complexity: None,
                doc_flags: &[],
                deprecated_since: None,
                replaced_by: None,
                history: &[],
                arguments: &[],
            },
            subcommands: &[],
        }
    }

    /// Sets the command flags.
    pub const fn flags(mut self, flags: &'static [&'static str]) -> CommandSpec {
        self.flags = flags;
        self
    }

    /// Sets first key, last key and key step (the legacy key range `COMMAND INFO` prints).
    pub const fn keys(mut self, first_key: i32, last_key: i32, step: i32) -> CommandSpec {
        self.first_key = first_key;
        self.last_key = last_key;
        self.step = step;
        self
    }

    /// Sets the ACL categories (without `@`).
    pub const fn acl(mut self, categories: &'static [&'static str]) -> CommandSpec {
        self.acl_categories = categories;
        self
    }

    /// Sets the command tips.
    pub const fn tips(mut self, tips: &'static [&'static str]) -> CommandSpec {
        self.tips = tips;
        self
    }

    /// Sets the key specifications.
    pub const fn key_specs(mut self, key_specs: &'static [KeySpec]) -> CommandSpec {
        self.key_specs = key_specs;
        self
    }

    /// Sets the command-specific key finder.
    pub const fn getkeys(mut self, getkeys: GetKeysFn) -> CommandSpec {
        self.getkeys = Some(getkeys);
        self
    }

    /// Sets the subcommands (their names must be `parent|sub`).
    pub const fn subcommands(mut self, subcommands: &'static [CommandSpec]) -> CommandSpec {
        self.subcommands = subcommands;
        self
    }

    /// Sets the docs summary.
    pub const fn summary(mut self, summary: &'static str) -> CommandSpec {
        self.docs.summary = Some(summary);
        self
    }

    /// Sets the version that introduced the command.
    pub const fn since(mut self, since: &'static str) -> CommandSpec {
        self.docs.since = Some(since);
        self
    }

    /// Sets the docs group.
    pub const fn group(mut self, group: &'static str) -> CommandSpec {
        self.docs.group = group;
        self
    }

    /// Sets the complexity text.
    pub const fn complexity(mut self, complexity: &'static str) -> CommandSpec {
        self.docs.complexity = Some(complexity);
        self
    }

    /// Sets the documentation flags.
    pub const fn doc_flags(mut self, doc_flags: &'static [&'static str]) -> CommandSpec {
        self.docs.doc_flags = doc_flags;
        self
    }

    /// Sets the version that deprecated the command.
    pub const fn deprecated_since(mut self, version: &'static str) -> CommandSpec {
        self.docs.deprecated_since = Some(version);
        self
    }

    /// Sets what replaces the deprecated command.
    pub const fn replaced_by(mut self, replacement: &'static str) -> CommandSpec {
        self.docs.replaced_by = Some(replacement);
        self
    }

    /// Sets the `(version, change)` history.
    pub const fn history(mut self, history: &'static [(&'static str, &'static str)]) -> Self {
        self.docs.history = history;
        self
    }

    /// Sets the documented arguments.
    pub const fn args(mut self, arguments: &'static [Arg]) -> CommandSpec {
        self.docs.arguments = arguments;
        self
    }

    /// Whether the command carries `flag` (e.g. `write`, `readonly`, `noscript`).
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.contains(&flag)
    }

    /// Whether this is a container whose real work is done by subcommands.
    pub fn is_container(&self) -> bool {
        !self.subcommands.is_empty()
    }
}

impl KeySpec {
    /// A key spec from its parts.
    pub const fn new(
        flags: &'static [&'static str],
        begin_search: BeginSearch,
        find_keys: FindKeys,
    ) -> KeySpec {
        KeySpec {
            notes: None,
            flags,
            begin_search,
            find_keys,
        }
    }

    /// The common shape: keys start at argument `index` and run as a range.
    pub const fn range(
        flags: &'static [&'static str],
        index: i32,
        lastkey: i32,
        keystep: i32,
        limit: i32,
    ) -> KeySpec {
        KeySpec::new(
            flags,
            BeginSearch::Index(index),
            FindKeys::Range {
                lastkey,
                keystep,
                limit,
            },
        )
    }

    /// Adds Redis's notes.
    pub const fn notes(mut self, notes: &'static str) -> KeySpec {
        self.notes = Some(notes);
        self
    }
}

impl Arg {
    /// An argument of any type; the typed constructors below are shorter.
    pub const fn new(name: &'static str, kind: ArgType) -> Arg {
        Arg {
            name,
            kind,
            key_spec_index: None,
            token: None,
            summary: None,
            since: None,
            deprecated_since: None,
            optional: false,
            multiple: false,
            multiple_token: false,
            arguments: &[],
        }
    }

    /// A `string` argument.
    pub const fn string(name: &'static str) -> Arg {
        Arg::new(name, ArgType::String)
    }

    /// An `integer` argument.
    pub const fn integer(name: &'static str) -> Arg {
        Arg::new(name, ArgType::Integer)
    }

    /// A `double` argument.
    pub const fn double(name: &'static str) -> Arg {
        Arg::new(name, ArgType::Double)
    }

    /// A `pattern` argument.
    pub const fn pattern(name: &'static str) -> Arg {
        Arg::new(name, ArgType::Pattern)
    }

    /// A `unix-time` argument.
    pub const fn unix_time(name: &'static str) -> Arg {
        Arg::new(name, ArgType::UnixTime)
    }

    /// A `key` argument described by key spec `key_spec_index`.
    pub const fn key(name: &'static str, key_spec_index: i32) -> Arg {
        Arg::new(name, ArgType::Key).key_spec_index(key_spec_index)
    }

    /// A `pure-token` argument: the token alone.
    pub const fn pure_token(name: &'static str, token: &'static str) -> Arg {
        Arg::new(name, ArgType::PureToken).token(token)
    }

    /// A `oneof` argument: exactly one of `arguments`.
    pub const fn oneof(name: &'static str, arguments: &'static [Arg]) -> Arg {
        let mut arg = Arg::new(name, ArgType::OneOf);
        arg.arguments = arguments;
        arg
    }

    /// A `block` argument: all of `arguments`, in order.
    pub const fn block(name: &'static str, arguments: &'static [Arg]) -> Arg {
        let mut arg = Arg::new(name, ArgType::Block);
        arg.arguments = arguments;
        arg
    }

    /// Sets the key spec index.
    pub const fn key_spec_index(mut self, index: i32) -> Arg {
        self.key_spec_index = Some(index);
        self
    }

    /// Sets the token.
    pub const fn token(mut self, token: &'static str) -> Arg {
        self.token = Some(token);
        self
    }

    /// Sets the summary.
    pub const fn summary(mut self, summary: &'static str) -> Arg {
        self.summary = Some(summary);
        self
    }

    /// Sets the version that introduced the argument.
    pub const fn since(mut self, since: &'static str) -> Arg {
        self.since = Some(since);
        self
    }

    /// Sets the version that deprecated the argument.
    pub const fn deprecated_since(mut self, version: &'static str) -> Arg {
        self.deprecated_since = Some(version);
        self
    }

    /// Marks the argument optional.
    pub const fn optional(mut self) -> Arg {
        self.optional = true;
        self
    }

    /// Marks the argument repeatable.
    pub const fn multiple(mut self) -> Arg {
        self.multiple = true;
        self
    }

    /// Marks the argument's token as repeating with it.
    pub const fn multiple_token(mut self) -> Arg {
        self.multiple_token = true;
        self
    }
}

mod command_reply;
mod generated;
pub use command_reply::command_reply;
pub use generated::COMMANDS;

/// SET's key finder (Redis's `setGetKeys`): with `GET` the old value is read too, so the
/// key is `RW access update` instead of `OW update`. Redis scans every argument after the
/// value, option values included, and so do we.
fn set_getkeys(args: &[Bytes]) -> Vec<KeyRef> {
    let get = args
        .iter()
        .skip(3)
        .any(|arg| c_str(arg).eq_ignore_ascii_case(b"get"));
    let flags: &'static [&'static str] = if get {
        &["RW", "access", "update"]
    } else {
        &["OW", "update"]
    };
    vec![KeyRef { pos: 1, flags }]
}

/// SORT's keys (Redis's `sortGetKeys`): the sorted key, and the last `STORE` destination,
/// skipping the arguments of `LIMIT`, `GET` and `BY`.
fn sort_getkeys(args: &[Bytes]) -> Vec<KeyRef> {
    let mut keys = vec![KeyRef {
        pos: 1,
        flags: &["RO", "access"],
    }];
    let mut store = None;
    let mut i = 2;
    while i < args.len() {
        let arg = c_str(&args[i]);
        if arg.eq_ignore_ascii_case(b"limit") {
            i += 2;
        } else if arg.eq_ignore_ascii_case(b"get") || arg.eq_ignore_ascii_case(b"by") {
            i += 1;
        } else if arg.eq_ignore_ascii_case(b"store") && i + 1 < args.len() {
            store = Some(i + 1);
        }
        i += 1;
    }
    if let Some(pos) = store {
        keys.push(KeyRef {
            pos,
            flags: &["OW", "update"],
        });
    }
    keys
}

/// SORT_RO's key (Redis's `sortROGetKeys`): the sorted key.
fn sort_ro_getkeys(_: &[Bytes]) -> Vec<KeyRef> {
    vec![KeyRef {
        pos: 1,
        flags: &["RO", "access"],
    }]
}

/// Longest name [`lookup`] considers; no Redis command name comes close.
const MAX_NAME_LEN: usize = 64;

/// Top-level commands by lowercase name, built once on first use.
static BY_NAME: LazyLock<HashMap<&'static [u8], &'static CommandSpec>> = LazyLock::new(|| {
    COMMANDS
        .iter()
        .map(|spec| (spec.name.as_bytes(), spec))
        .collect()
});

/// Finds a top-level command by name, ignoring ASCII case (as Redis's command table does).
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    if name.len() > MAX_NAME_LEN {
        return None;
    }
    let mut buf = [0u8; MAX_NAME_LEN];
    let lower = &mut buf[..name.len()];
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    BY_NAME.get(&*lower).copied()
}

/// Finds a subcommand of `parent` by its own name (`setname`, not `client|setname`),
/// ignoring ASCII case. `None` when `parent` has no such subcommand (or no subcommands).
pub fn lookup_subcommand(
    parent: &'static CommandSpec,
    name: &[u8],
) -> Option<&'static CommandSpec> {
    parent
        .subcommands
        .iter()
        .find(|sub| short_name(sub).as_bytes().eq_ignore_ascii_case(name))
}

/// Resolves a command line to the command that runs it, as Redis's `processCommand` does:
/// the top-level command, or its subcommand when it is a container and `args` has one.
/// `Err` holds the reply Redis gives for an unknown command or subcommand, or for a wrong
/// number of arguments, in that order of precedence.
pub fn resolve(args: &[Bytes]) -> Result<&'static CommandSpec, Reply> {
    match args.first().and_then(|name| lookup(name)) {
        Some(base) => resolve_in(base, args),
        None => Err(unknown_command_error(args)),
    }
}

/// [`resolve`] for a call whose top-level command `base` is already known.
pub fn resolve_in(
    base: &'static CommandSpec,
    args: &[Bytes],
) -> Result<&'static CommandSpec, Reply> {
    let spec = match args.get(1) {
        Some(sub) if base.is_container() => {
            lookup_subcommand(base, sub).ok_or_else(|| unknown_subcommand_error(base.name, sub))?
        }
        _ => base,
    };
    if arity_ok(spec, args.len()) {
        Ok(spec)
    } else {
        Err(wrong_arity_error(spec))
    }
}

/// Redis's arity rule: `arity > 0` needs exactly `arity` arguments, `arity < 0` at least
/// `-arity`; `argc` counts the command name (and the subcommand name, for subcommands).
pub fn arity_ok(spec: &CommandSpec, argc: usize) -> bool {
    let argc = i64::try_from(argc).unwrap_or(i64::MAX);
    let arity = i64::from(spec.arity);
    if arity > 0 {
        argc == arity
    } else {
        argc >= -arity
    }
}

/// Indexes into the arguments (the command name is 0) of the keys of a call with `argc`
/// arguments, from the legacy first/last/step triple, as Redis routes by key slot. A
/// negative last key counts from the end. Like Redis, answers no keys at all when the
/// range runs past the arguments (the command then fails its own syntax check).
pub fn key_positions(spec: &CommandSpec, argc: usize) -> Vec<usize> {
    if spec.first_key <= 0 {
        return Vec::new();
    }
    let argc = i64::try_from(argc).unwrap_or(i64::MAX);
    let first = i64::from(spec.first_key);
    let last = match i64::from(spec.last_key) {
        last if last < 0 => argc + last,
        last => last,
    };
    // A zero step would never advance; no command has one, but never loop forever.
    let step = i64::from(spec.step.max(1));
    let mut keys = Vec::new();
    let mut pos = first;
    while pos <= last {
        match usize::try_from(pos) {
            Ok(index) if pos < argc => keys.push(index),
            _ => return Vec::new(),
        }
        pos += step;
    }
    keys
}

/// The position of a call's first key: by the key specs for commands whose keys move with
/// their arguments (`movablekeys`: `EVAL`'s `numkeys`), else by first key, last key and step.
pub fn first_key_position(spec: &CommandSpec, args: &[Bytes]) -> Option<usize> {
    if spec.flags.contains(&"movablekeys") {
        find_keys(spec, args).first().map(|key| key.pos)
    } else {
        key_positions(spec, args.len()).first().copied()
    }
}

/// `-ERR unknown command 'x', with args beginning with: 'a' 'b' ` exactly as Redis builds
/// it: the name cut at 128 bytes, then quoted arguments while the list is under 128 bytes,
/// each cut to the room left; every argument is read as a C string (up to a NUL byte).
pub fn unknown_command_error(args: &[Bytes]) -> Reply {
    let name = args.first().map_or(&b""[..], |name| &name[..]);
    let mut text = b"ERR unknown command '".to_vec();
    text.extend_from_slice(c_str_max(name, 128));
    text.extend_from_slice(b"', with args beginning with: ");
    let mut listed: Vec<u8> = Vec::new();
    for arg in args.iter().skip(1) {
        if listed.len() >= 128 {
            break;
        }
        let room = 128 - listed.len();
        listed.push(b'\'');
        listed.extend_from_slice(c_str_max(arg, room));
        listed.extend_from_slice(b"' ");
    }
    text.extend_from_slice(&listed);
    error_line(text)
}

/// `-ERR wrong number of arguments for 'get' command` (`'client|setname'` for subcommands).
pub fn wrong_arity_error(spec: &CommandSpec) -> Reply {
    wrong_arity_error_for(spec.name)
}

/// The same for a command named `name` (lowercase, `'parent|sub'` for a subcommand): for the
/// arity rules the table cannot state (an even count of arguments, …).
pub fn wrong_arity_error_for(name: &str) -> Reply {
    Reply::error(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

/// `-ERR unknown subcommand 'x'. Try CLIENT HELP.`: `sub` cut at 128 bytes (and at a NUL
/// byte), `parent` upper-cased.
pub fn unknown_subcommand_error(parent: &str, sub: &[u8]) -> Reply {
    let mut text = b"ERR unknown subcommand '".to_vec();
    text.extend_from_slice(c_str_max(sub, 128));
    text.extend_from_slice(b"'. Try ");
    text.extend_from_slice(parent.to_ascii_uppercase().as_bytes());
    text.extend_from_slice(b" HELP.");
    error_line(text)
}

/// `arg` as C sees it: up to its first NUL byte.
pub fn c_str(arg: &[u8]) -> &[u8] {
    arg.iter()
        .position(|&b| b == 0)
        .map_or(arg, |end| &arg[..end])
}

/// `arg` as `printf("%.*s", max, arg)` prints it.
pub fn c_str_max(arg: &[u8], max: usize) -> &[u8] {
    let arg = c_str(arg);
    &arg[..arg.len().min(max)]
}

/// `strcasecmp(arg, word) == 0`.
fn c_eq(arg: &[u8], word: &str) -> bool {
    c_str(arg).eq_ignore_ascii_case(word.as_bytes())
}

/// An error reply from raw text; like Redis, never lets a CR or LF break the line.
fn error_line(mut text: Vec<u8>) -> Reply {
    for b in &mut text {
        if *b == b'\r' || *b == b'\n' {
            *b = b' ';
        }
    }
    Reply::Error(Bytes::from(text))
}

/// The part of a full name after `|` (the whole name for top-level commands).
fn short_name(spec: &CommandSpec) -> &'static str {
    spec.name.split_once('|').map_or(spec.name, |(_, sub)| sub)
}

/// Redis's strict lookup by full name (`COMMAND INFO`/`DOCS`): `get`, `client` or
/// `client|id`; anything else (`get|x`, `a|b|c`, empty) is unknown.
fn lookup_full_name(name: &[u8]) -> Option<&'static CommandSpec> {
    let mut parts = name.split(|&b| b == b'|');
    let (Some(first), second, None) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    let base = lookup(first)?;
    match second {
        None => Some(base),
        Some(sub) => lookup_subcommand(base, sub),
    }
}

/// Redis's non-strict lookup of a command line (`lookupCommand`): the subcommand when the
/// command is a container and a second argument exists, else the command itself.
fn lookup_for_call(args: &[Bytes]) -> Option<&'static CommandSpec> {
    let base = lookup(args.first()?)?;
    match args.get(1) {
        Some(sub) if base.is_container() => lookup_subcommand(base, sub),
        _ => Some(base),
    }
}

/// Redis's `doesCommandHaveKeys`.
fn has_keys(spec: &CommandSpec) -> bool {
    spec.getkeys.is_some()
        || spec
            .key_specs
            .iter()
            .any(|ks| !ks.flags.contains(&"not_key"))
}

/// Redis's `getKeysFromCommandWithSpecs`: key specs when they are complete and their
/// flags fixed, else the command's own key finder.
fn find_keys(spec: &CommandSpec, args: &[Bytes]) -> Vec<KeyRef> {
    let has_keyspec = spec
        .key_specs
        .iter()
        .any(|ks| !ks.flags.contains(&"not_key"));
    let has_varflags = spec
        .key_specs
        .iter()
        .any(|ks| ks.flags.contains(&"variable_flags"));
    if has_keyspec
        && !has_varflags
        && let Some(keys) = keys_from_specs(spec, args)
    {
        return keys;
    }
    spec.getkeys.map_or_else(Vec::new, |getkeys| getkeys(args))
}

/// Redis's `getKeysUsingKeySpecs`; `None` when a spec is unknown, incomplete or does not
/// fit the arguments (Redis then falls back to the command's key finder).
fn keys_from_specs(spec: &CommandSpec, args: &[Bytes]) -> Option<Vec<KeyRef>> {
    let argc = i64::try_from(args.len()).ok()?;
    let arg = |i: i64| usize::try_from(i).ok().and_then(|i| args.get(i));
    let mut keys = Vec::new();
    for ks in spec.key_specs {
        if ks.flags.contains(&"not_key") {
            continue;
        }
        let mut first = match ks.begin_search {
            BeginSearch::Index(pos) => i64::from(pos),
            BeginSearch::Keyword { keyword, startfrom } => {
                let startfrom = i64::from(startfrom);
                let (start, end) = if startfrom > 0 {
                    (startfrom, argc - 1)
                } else {
                    (argc + startfrom, 1)
                };
                // Same walk as Redis, which never looks at `end` itself.
                let mut found = None;
                let mut i = start;
                while i != end && i >= 1 && i < argc {
                    if arg(i).is_some_and(|a| c_str(a).eq_ignore_ascii_case(keyword.as_bytes())) {
                        found = Some(i + 1);
                        break;
                    }
                    i = if start <= end { i + 1 } else { i - 1 };
                }
                match found {
                    Some(first) => first,
                    None => continue,
                }
            }
            BeginSearch::Unknown => return None,
        };
        let (last, step) = match ks.find_keys {
            FindKeys::Range {
                lastkey,
                keystep,
                limit,
            } => {
                let (lastkey, limit) = (i64::from(lastkey), i64::from(limit));
                let last = if lastkey >= 0 {
                    first + lastkey
                } else if limit == 0 {
                    argc + lastkey
                } else {
                    first + ((argc - first) / limit + lastkey)
                };
                (last, i64::from(keystep))
            }
            FindKeys::Keynum {
                keynumidx,
                firstkey,
                keystep,
            } => {
                let numkeys = crate::resp::string2ll(arg(first + i64::from(keynumidx))?)?;
                if numkeys < 0 {
                    return None;
                }
                first += i64::from(firstkey);
                (first + numkeys - 1, i64::from(keystep))
            }
            FindKeys::Unknown => return None,
        };
        if last >= argc || last < first || first >= argc || first < 0 || step <= 0 {
            return None;
        }
        let mut pos = first;
        while pos <= last {
            keys.push(KeyRef {
                pos: usize::try_from(pos).ok()?,
                flags: ks.flags,
            });
            pos += step;
        }
        if ks.flags.contains(&"incomplete") {
            return None;
        }
    }
    Some(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::Protocol;
    use bytes::BytesMut;

    fn args(parts: &[&str]) -> Vec<Bytes> {
        parts
            .iter()
            .map(|part| Bytes::copy_from_slice(part.as_bytes()))
            .collect()
    }

    fn encoded(reply: &Reply, protocol: Protocol) -> Vec<u8> {
        let mut out = BytesMut::new();
        reply.encode(protocol, &mut out);
        out.to_vec()
    }

    fn resp2(parts: &[&str]) -> Vec<u8> {
        encoded(&command_reply(&args(parts)), Protocol::Resp2)
    }

    fn error_text(reply: &Reply) -> String {
        match reply {
            Reply::Error(text) => String::from_utf8_lossy(text).into_owned(),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn spec(name: &str) -> &'static CommandSpec {
        lookup(name.as_bytes()).expect("command in the table")
    }

    #[test]
    fn table_is_consistent() {
        let mut seen = std::collections::HashSet::new();
        for top in COMMANDS {
            assert!(seen.insert(top.name), "duplicate {}", top.name);
            assert!(!top.name.contains('|'), "{}", top.name);
            for cmd in std::iter::once(top).chain(top.subcommands) {
                assert!(cmd.name.len() <= MAX_NAME_LEN);
                assert_eq!(cmd.name, cmd.name.to_ascii_lowercase());
                assert_ne!(cmd.arity, 0, "{}", cmd.name);
                assert!(cmd.docs.summary.is_some() && cmd.docs.since.is_some());
                fn check_args(name: &str, args: &[Arg], specs: usize) {
                    for arg in args {
                        if let Some(index) = arg.key_spec_index {
                            assert!(usize::try_from(index).is_ok_and(|i| i < specs), "{name}");
                        }
                        check_args(name, arg.arguments, specs);
                    }
                }
                check_args(cmd.name, cmd.docs.arguments, cmd.key_specs.len());
            }
            for sub in top.subcommands {
                assert!(sub.subcommands.is_empty());
                let (parent, _) = sub.name.split_once('|').expect("parent|sub");
                assert_eq!(parent, top.name);
                assert!(std::ptr::eq(
                    lookup_subcommand(top, short_name(sub).as_bytes()).unwrap(),
                    sub
                ));
            }
            assert!(std::ptr::eq(lookup(top.name.as_bytes()).unwrap(), top));
        }
    }

    #[test]
    fn every_reply_encodes_in_both_protocols() {
        // Guards the reply.rs set limitation: a RESP3 set holding maps would panic.
        for protocol in [Protocol::Resp2, Protocol::Resp3] {
            for parts in [&["COMMAND"][..], &["COMMAND", "DOCS"], &["COMMAND", "LIST"]] {
                assert!(!encoded(&command_reply(&args(parts)), protocol).is_empty());
            }
        }
    }

    #[test]
    fn lookup_ignores_case_and_knows_only_top_level_names() {
        assert_eq!(spec("GeT").name, "get");
        assert_eq!(spec("CONFIG").name, "config");
        assert!(lookup(b"nosuch").is_none());
        assert!(lookup(b"").is_none());
        assert!(lookup(b"client|id").is_none());
        assert!(lookup(&[b'g'; 1000]).is_none());
        let client = spec("client");
        assert_eq!(
            lookup_subcommand(client, b"SetName").unwrap().name,
            "client|setname"
        );
        assert!(lookup_subcommand(client, b"client|setname").is_none());
        assert!(lookup_subcommand(spec("get"), b"x").is_none());
    }

    #[test]
    fn arity_follows_the_redis_rule() {
        assert!(arity_ok(spec("get"), 2));
        assert!(!arity_ok(spec("get"), 1));
        assert!(!arity_ok(spec("get"), 3));
        assert!(!arity_ok(spec("set"), 2));
        assert!(arity_ok(spec("set"), 3));
        assert!(arity_ok(spec("set"), 9));
        assert!(arity_ok(spec("ping"), 1));
        assert!(!arity_ok(spec("ping"), 0));
        assert!(arity_ok(spec("ping"), usize::MAX));
    }

    #[test]
    fn key_positions_use_first_last_step() {
        assert_eq!(key_positions(spec("get"), 2), [1]);
        let eval: Vec<Bytes> = ["EVAL", "return 1", "2", "a", "b", "x"]
            .iter()
            .map(|s| Bytes::from_static(s.as_bytes()))
            .collect();
        assert_eq!(first_key_position(spec("eval"), &eval), Some(3));
        assert_eq!(first_key_position(spec("eval"), &eval[..3]), None);
        assert_eq!(key_positions(spec("del"), 4), [1, 2, 3]);
        assert_eq!(key_positions(spec("exists"), 2), [1]);
        assert!(key_positions(spec("del"), 1).is_empty());
        assert!(key_positions(spec("ping"), 2).is_empty());
        assert!(key_positions(spec("client"), 3).is_empty());
        let pairs = CommandSpec::new("mset", -3).keys(1, -1, 2);
        assert_eq!(key_positions(&pairs, 5), [1, 3]);
        // A range running past the arguments yields nothing, as in Redis.
        let fixed = CommandSpec::new("x", -2).keys(1, 2, 1);
        assert!(key_positions(&fixed, 2).is_empty());
        let zero_step = CommandSpec::new("x", -2).keys(1, -1, 0);
        assert_eq!(key_positions(&zero_step, 3), [1, 2]);
    }

    #[test]
    fn unknown_command_error_matches_redis_text() {
        assert_eq!(
            error_text(&unknown_command_error(&args(&["foo", "a", "b"]))),
            "ERR unknown command 'foo', with args beginning with: 'a' 'b' "
        );
        assert_eq!(
            error_text(&unknown_command_error(&args(&["foo"]))),
            "ERR unknown command 'foo', with args beginning with: "
        );
        assert_eq!(
            error_text(&unknown_command_error(&[])),
            "ERR unknown command '', with args beginning with: "
        );
        // Captured from redis-server 7.0.15: name cut at 128, args while the list < 128.
        let name = format!("FOO{}", "x".repeat(200));
        let (a, b) = ("a".repeat(100), "b".repeat(50));
        let got = error_text(&unknown_command_error(&args(&[&name, &a, &b, "c"])));
        let want = format!(
            "ERR unknown command 'FOO{}', with args beginning with: '{}' '{}' ",
            "x".repeat(125),
            a,
            "b".repeat(25)
        );
        assert_eq!(got, want);
        let raw = [
            Bytes::from_static(b"FOO"),
            Bytes::from_static(b"a\0b"),
            Bytes::from_static(b"c\r\nd"),
        ];
        assert_eq!(
            error_text(&unknown_command_error(&raw)),
            "ERR unknown command 'FOO', with args beginning with: 'a' 'c  d' "
        );
    }

    #[test]
    fn arity_and_subcommand_errors_match_redis_text() {
        assert_eq!(
            error_text(&wrong_arity_error(spec("get"))),
            "ERR wrong number of arguments for 'get' command"
        );
        let setname = lookup_subcommand(spec("client"), b"setname").unwrap();
        assert_eq!(
            error_text(&wrong_arity_error(setname)),
            "ERR wrong number of arguments for 'client|setname' command"
        );
        assert_eq!(
            error_text(&unknown_subcommand_error("client", b"SETINFOX")),
            "ERR unknown subcommand 'SETINFOX'. Try CLIENT HELP."
        );
        let long = format!("{}\n", "s".repeat(200));
        assert_eq!(
            error_text(&unknown_subcommand_error("client", long.as_bytes())),
            format!(
                "ERR unknown subcommand '{}'. Try CLIENT HELP.",
                "s".repeat(128)
            )
        );
        assert_eq!(
            error_text(&unknown_subcommand_error("config", b"x\0y")),
            "ERR unknown subcommand 'x'. Try CONFIG HELP."
        );
    }

    #[test]
    fn resolve_checks_existence_then_arity() {
        assert_eq!(resolve(&args(&["GET", "k"])).unwrap().name, "get");
        assert_eq!(resolve(&args(&["client", "ID"])).unwrap().name, "client|id");
        let err = |parts: &[&str]| error_text(&resolve(&args(parts)).unwrap_err());
        assert_eq!(
            err(&["nosuch", "x"]),
            "ERR unknown command 'nosuch', with args beginning with: 'x' "
        );
        assert_eq!(
            err(&["client", "nosuch"]),
            "ERR unknown subcommand 'nosuch'. Try CLIENT HELP."
        );
        assert_eq!(
            err(&["client"]),
            "ERR wrong number of arguments for 'client' command"
        );
        assert_eq!(
            err(&["config", "get"]),
            "ERR wrong number of arguments for 'config|get' command"
        );
        assert_eq!(
            err(&["get"]),
            "ERR wrong number of arguments for 'get' command"
        );
        assert!(resolve(&[]).is_err());
    }

    #[test]
    fn command_info_get_matches_redis_bytes() {
        // redis-server 7.0.15, RESP2, `COMMAND INFO get`.
        let redis: &[u8] =
            b"*1\r\n*10\r\n$3\r\nget\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n\
            :1\r\n*3\r\n+@read\r\n+@string\r\n+@fast\r\n*0\r\n*1\r\n*6\r\n$5\r\nflags\r\n*2\r\n\
            +RO\r\n+access\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\n\
            spec\r\n*2\r\n$5\r\nindex\r\n:1\r\n$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$5\r\n\
            range\r\n$4\r\nspec\r\n*6\r\n$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\n\
            limit\r\n:0\r\n*0\r\n";
        assert_eq!(resp2(&["COMMAND", "INFO", "get"]), redis);
        assert_eq!(resp2(&["command", "info", "GET"]), redis);
        // RESP3, `COMMAND INFO ping` (no key specs, so no set of maps).
        let redis3: &[u8] = b"*1\r\n*10\r\n$4\r\nping\r\n:-1\r\n~1\r\n+fast\r\n:0\r\n:0\r\n:0\r\n\
            ~2\r\n+@fast\r\n+@connection\r\n~2\r\n$25\r\nrequest_policy:all_shards\r\n$29\r\n\
            response_policy:all_succeeded\r\n~0\r\n~0\r\n";
        let ours = command_reply(&args(&["COMMAND", "INFO", "ping"]));
        assert_eq!(encoded(&ours, Protocol::Resp3), redis3);
    }

    #[test]
    fn command_docs_get_matches_redis_bytes() {
        // redis-server 7.0.15, `COMMAND DOCS get` in RESP2 and RESP3.
        let redis2: &[u8] = b"*2\r\n$3\r\nget\r\n*10\r\n$7\r\nsummary\r\n$22\r\n\
            Get the value of a key\r\n$5\r\nsince\r\n$5\r\n1.0.0\r\n$5\r\ngroup\r\n$6\r\n\
            string\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n$9\r\narguments\r\n*1\r\n*6\r\n$4\r\n\
            name\r\n$3\r\nkey\r\n$4\r\ntype\r\n$3\r\nkey\r\n$14\r\nkey_spec_index\r\n:0\r\n";
        let redis3: &[u8] = b"%1\r\n$3\r\nget\r\n%5\r\n$7\r\nsummary\r\n$22\r\n\
            Get the value of a key\r\n$5\r\nsince\r\n$5\r\n1.0.0\r\n$5\r\ngroup\r\n$6\r\n\
            string\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n$9\r\narguments\r\n*1\r\n%3\r\n$4\r\n\
            name\r\n$3\r\nkey\r\n$4\r\ntype\r\n$3\r\nkey\r\n$14\r\nkey_spec_index\r\n:0\r\n";
        let ours = command_reply(&args(&["COMMAND", "DOCS", "get"]));
        assert_eq!(encoded(&ours, Protocol::Resp2), redis2);
        assert_eq!(encoded(&ours, Protocol::Resp3), redis3);
    }

    #[test]
    fn command_info_and_docs_by_full_name() {
        assert_eq!(
            resp2(&["COMMAND", "INFO", "nosuch", "get|x", "a|b|c", ""]),
            b"*4\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n"
        );
        let id = resp2(&["COMMAND", "INFO", "CLIENT|ID"]);
        assert!(id.starts_with(b"*1\r\n*10\r\n$9\r\nclient|id\r\n:2\r\n"));
        assert_eq!(resp2(&["COMMAND", "DOCS", "nosuch"]), b"*0\r\n");
        let docs = resp2(&["COMMAND", "DOCS", "config|set", "nosuch"]);
        assert!(docs.starts_with(b"*2\r\n$10\r\nconfig|set\r\n"));
    }

    #[test]
    fn command_count_help_and_errors() {
        assert_eq!(
            resp2(&["COMMAND", "COUNT"]),
            format!(":{}\r\n", COMMANDS.len()).into_bytes()
        );
        let Reply::Array(lines) = command_reply(&args(&["COMMAND", "HELP"])) else {
            panic!("help is an array");
        };
        assert_eq!(lines.len(), 21);
        assert_eq!(
            lines[0],
            Reply::simple("COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:")
        );
        assert_eq!(lines[20], Reply::simple("    Prints this help."));
        assert_eq!(
            resp2(&["COMMAND", "FOO"]),
            b"-ERR unknown subcommand 'FOO'. Try COMMAND HELP.\r\n"
        );
        assert_eq!(
            resp2(&["COMMAND", "COUNT", "x"]),
            b"-ERR wrong number of arguments for 'command|count' command\r\n"
        );
        let Reply::Array(all) = command_reply(&args(&["COMMAND"])) else {
            panic!("COMMAND is an array");
        };
        assert_eq!(all.len(), COMMANDS.len());
        assert_eq!(command_reply(&[]), command_reply(&args(&["COMMAND"])));
    }

    #[test]
    fn command_getkeys_follows_key_specs_and_getkeys_hooks() {
        assert_eq!(
            resp2(&["COMMAND", "GETKEYS", "del", "a", "b"]),
            b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"
        );
        assert_eq!(
            resp2(&["COMMAND", "GETKEYSANDFLAGS", "set", "k", "v"]),
            b"*1\r\n*2\r\n$1\r\nk\r\n*2\r\n+OW\r\n+update\r\n"
        );
        assert_eq!(
            resp2(&[
                "COMMAND",
                "GETKEYSANDFLAGS",
                "set",
                "k",
                "v",
                "EX",
                "1",
                "GeT"
            ]),
            b"*1\r\n*2\r\n$1\r\nk\r\n*3\r\n+RW\r\n+access\r\n+update\r\n"
        );
        assert_eq!(
            resp2(&["COMMAND", "GETKEYSANDFLAGS", "get", "k"]),
            b"*1\r\n*2\r\n$1\r\nk\r\n*2\r\n+RO\r\n+access\r\n"
        );
        assert_eq!(
            resp2(&["COMMAND", "GETKEYS", "nosuch", "k"]),
            b"-ERR Invalid command specified\r\n"
        );
        assert_eq!(
            resp2(&["COMMAND", "GETKEYS", "client", "foo"]),
            b"-ERR Invalid command specified\r\n"
        );
        assert_eq!(
            resp2(&["COMMAND", "GETKEYS", "ping", "x"]),
            b"-ERR The command has no key arguments\r\n"
        );
        assert_eq!(
            resp2(&["COMMAND", "GETKEYS", "get", "a", "b"]),
            b"-ERR Invalid number of arguments specified for command\r\n"
        );
        assert_eq!(
            resp2(&["COMMAND", "GETKEYS", "get"]),
            b"-ERR wrong number of arguments for 'command|getkeys' command\r\n"
        );
    }

    #[test]
    fn keys_from_specs_handles_keywords_and_keynum() {
        const STORE: &[KeySpec] = &[
            KeySpec::range(&["RO", "access"], 1, 0, 1, 0),
            KeySpec::new(
                &["OW", "update"],
                BeginSearch::Keyword {
                    keyword: "STORE",
                    startfrom: 2,
                },
                FindKeys::Range {
                    lastkey: 0,
                    keystep: 1,
                    limit: 0,
                },
            ),
        ];
        let cmd = CommandSpec::new("x", -2).key_specs(STORE);
        let positions = |parts: &[&str]| {
            keys_from_specs(&cmd, &args(parts)).map(|keys| keys.iter().map(|k| k.pos).collect())
        };
        assert_eq!(
            positions(&["x", "a", "b", "store", "d", "e"]),
            Some(vec![1, 4])
        );
        assert_eq!(positions(&["x", "a", "b"]), Some(vec![1]));
        const NUMKEYS: &[KeySpec] = &[KeySpec::new(
            &["RO"],
            BeginSearch::Index(1),
            FindKeys::Keynum {
                keynumidx: 0,
                firstkey: 1,
                keystep: 1,
            },
        )];
        let cmd = CommandSpec::new("x", -3).key_specs(NUMKEYS);
        let positions = |parts: &[&str]| {
            keys_from_specs(&cmd, &args(parts)).map(|keys| keys.iter().map(|k| k.pos).collect())
        };
        assert_eq!(positions(&["x", "2", "a", "b", "c"]), Some(vec![2, 3]));
        assert_eq!(positions(&["x", "5", "a"]), None::<Vec<usize>>);
        assert_eq!(positions(&["x", "02", "a", "b"]), None::<Vec<usize>>);
        assert_eq!(positions(&["x", "-1", "a"]), None::<Vec<usize>>);
    }

    #[test]
    fn command_list_filters() {
        let names = |parts: &[&str]| match command_reply(&args(parts)) {
            Reply::Array(items) => items.len(),
            other => panic!("{other:?}"),
        };
        let total: usize = COMMANDS.iter().map(|c| 1 + c.subcommands.len()).sum();
        assert_eq!(names(&["COMMAND", "LIST"]), total);
        assert_eq!(
            names(&["COMMAND", "LIST", "FILTERBY", "PATTERN", "CLIENT|*"]),
            spec("client").subcommands.len()
        );
        let strings = COMMANDS
            .iter()
            .flat_map(|c| std::iter::once(c).chain(c.subcommands.iter()))
            .filter(|c| c.acl_categories.contains(&"string"))
            .count();
        assert!(strings >= 6);
        assert_eq!(
            names(&["COMMAND", "LIST", "FILTERBY", "ACLCAT", "STRING"]),
            strings
        );
        assert_eq!(names(&["COMMAND", "LIST", "FILTERBY", "MODULE", "x"]), 0);
        assert_eq!(
            resp2(&["COMMAND", "LIST", "FILTERBY", "PATTERN"]),
            b"-ERR syntax error\r\n"
        );
        assert_eq!(
            resp2(&["COMMAND", "LIST", "FILTERBY", "NAME", "x"]),
            b"-ERR syntax error\r\n"
        );
    }

    #[test]
    fn hostile_arguments_never_panic() {
        let odd = [
            Bytes::new(),
            Bytes::from_static(b"\0"),
            Bytes::from_static(b"|"),
            Bytes::from_static(b"\xff\xfe"),
            Bytes::from_static(b"-9223372036854775809"),
            Bytes::from_static(b"command"),
            Bytes::from_static(b"getkeys"),
            Bytes::from_static(b"set"),
            Bytes::from_static(b"client"),
        ];
        let subs = [
            "",
            "info",
            "docs",
            "getkeys",
            "getkeysandflags",
            "list",
            "count",
            "help",
        ];
        for sub in subs {
            for a in &odd {
                for b in &odd {
                    let line = [
                        Bytes::from_static(b"COMMAND"),
                        Bytes::copy_from_slice(sub.as_bytes()),
                        a.clone(),
                        b.clone(),
                        a.clone(),
                    ];
                    // Lengths 0 and 1 (bare COMMAND) are covered elsewhere and are slow.
                    for len in 2..=line.len() {
                        let reply = command_reply(&line[..len]);
                        encoded(&reply, Protocol::Resp3);
                        let _ = resolve(&line[1..len.max(1)]);
                        unknown_command_error(&line[..len]);
                    }
                }
            }
        }
    }
}
