//! Command semantics: what each keyspace command does and answers, written once against the
//! [`Keyspace`] trait so the same code serves apply (a write transaction, at the leader's time)
//! and linearizable reads (a read transaction).
//!
//! Every function here is deterministic: given the same keyspace, arguments and time it gives
//! the same reply and the same changes on every replica. Replies and error texts are Redis
//! 7.0's. Storage failures are `Err` and stop the node; command failures are error replies.
//!
//! One file per family: [`strings`], [`keys`], [`hashes`], [`lists`], [`sets`], [`sorted_sets`],
//! [`sort`], [`scripting`], [`config`], [`bitmaps`], [`hyperloglog`], [`dump`].

pub mod bitmaps;
pub mod config;
pub mod dump;
pub mod hashes;
pub mod hyperloglog;
pub mod keys;
pub mod lists;
pub mod scripting;
pub mod sets;
pub mod sort;
pub mod sorted_sets;
pub mod strings;

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::LazyLock;

use bytes::Bytes;

use crate::redis::table::{self, CommandSpec};
use crate::resp::Reply;
use crate::resp::string2ll;
use crate::store::keyspace::{Keyspace, Kind, Record, StoreResult};

/// `-ERR syntax error`.
pub fn syntax_error() -> Reply {
    Reply::error("ERR syntax error")
}

/// `-WRONGTYPE …`.
pub fn wrong_type() -> Reply {
    Reply::error("WRONGTYPE Operation against a key holding the wrong kind of value")
}

/// `-ERR value is not an integer or out of range`.
pub fn not_an_integer() -> Reply {
    Reply::error("ERR value is not an integer or out of range")
}

/// Parses an integer argument as Redis does (`string2ll`).
pub fn int_arg(arg: &[u8]) -> Result<i64, Reply> {
    string2ll(arg).ok_or_else(not_an_integer)
}

/// The live record of `key` if it holds `kind`; `Err(reply)` with WRONGTYPE otherwise.
pub fn typed_record<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
    kind: Kind,
) -> StoreResult<Result<Option<Record>, Reply>> {
    Ok(match ks.record(key)? {
        Some(record) if record.kind != kind => Err(wrong_type()),
        other => Ok(other),
    })
}

/// A string key's value, or WRONGTYPE.
pub fn string_value<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
) -> StoreResult<Result<Option<Bytes>, Reply>> {
    Ok(typed_record(ks, key, Kind::String)?.map(|r| r.map(|r| r.payload)))
}

/// A set's or a sorted set's record: its element count, and whether it ever outgrew its
/// compact encoding (an intset, a listpack), which Redis never undoes (OBJECT ENCODING).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountedRecord {
    /// Elements.
    pub len: u64,
    /// Whether it ever outgrew its compact encoding.
    pub outgrown: bool,
}

impl CountedRecord {
    /// A collection about to be created.
    pub const EMPTY: CountedRecord = CountedRecord {
        len: 0,
        outgrown: false,
    };

    /// Decodes a record's payload.
    pub fn of(record: &Record) -> CountedRecord {
        CountedRecord {
            len: record.element_count(),
            outgrown: record.payload.get(8).is_some_and(|&flag| flag != 0),
        }
    }

    /// The payload it is stored as.
    pub fn encode(self) -> [u8; 9] {
        let mut out = [0; 9];
        out[..8].copy_from_slice(&self.len.to_le_bytes());
        out[8] = u8::from(self.outgrown);
        out
    }
}

/// Writes a collection's record (`meta`, its element count first: u64 LE), or deletes the key
/// when no element is left.
pub fn store_collection<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
    kind: Kind,
    meta: &[u8],
) -> StoreResult<()> {
    if meta.get(..8).is_none_or(|count| count == [0; 8]) {
        ks.delete(key)?;
        Ok(())
    } else {
        ks.put_collection(key, kind, meta)
    }
}

/// The live record of `key` decoded by `decode` if it holds `kind`; WRONGTYPE otherwise.
pub fn typed_meta<K: Keyspace + ?Sized, M>(
    ks: &mut K,
    key: &[u8],
    kind: Kind,
    decode: fn(&Record) -> M,
) -> StoreResult<Result<Option<M>, Reply>> {
    Ok(typed_record(ks, key, kind)?.map(|record| record.as_ref().map(decode)))
}

/// Runs one keyspace command: `args` is the whole command, name first, with as many arguments
/// as the command table's arity allows (checked by [`execute`] before it calls).
pub type Run = fn(&mut dyn Keyspace, &[Bytes]) -> StoreResult<Reply>;

/// How large a command's reply can be. Replies that can carry stored data are counted against
/// a connection's bound on such replies in flight, so a client that never reads cannot make the
/// server hold more than that many of them.
#[derive(Clone, Copy)]
pub enum ReplySize {
    /// A status, a number, or an answer whose size the arguments bound.
    Small,
    /// Can carry stored data: values, fields, key names.
    Data,
    /// Carries stored data when the arguments ask for it (`SET … GET`).
    DataIf(fn(&[Bytes]) -> bool),
}

/// One line of a family's registry: a command the state machine runs. Whether it writes, its
/// arity, its keys and whether it may add data (`denyoom`) come from the command table.
pub struct KeyspaceCommand {
    /// The command table's name: `get`, or a subcommand's full name (`object|encoding`).
    pub name: &'static str,
    /// What it does.
    pub run: Run,
    /// How large its reply can be.
    pub reply: ReplySize,
    /// Whether a call goes through the log.
    pub logging: Logging,
}

/// Whether a call goes through the log (is a write) or runs as a linearizable read.
#[derive(Clone, Copy)]
pub enum Logging {
    /// As the command table's `write` flag says.
    ByFlags,
    /// Always (`EVALSHA`: what a script does is known only when it runs).
    Always,
    /// Unless the arguments say it cannot write (`EVAL` of a script declaring `no-writes`).
    Unless(fn(&[Bytes]) -> bool),
}

/// A registry line.
pub const fn command(name: &'static str, run: Run, reply: ReplySize) -> KeyspaceCommand {
    KeyspaceCommand {
        name,
        run,
        reply,
        logging: Logging::ByFlags,
    }
}

impl KeyspaceCommand {
    /// This line, always through the log.
    pub const fn logged(self) -> KeyspaceCommand {
        KeyspaceCommand {
            logging: Logging::Always,
            ..self
        }
    }

    /// This line, through the log unless `read_only(args)`.
    pub const fn logged_unless(self, read_only: fn(&[Bytes]) -> bool) -> KeyspaceCommand {
        KeyspaceCommand {
            logging: Logging::Unless(read_only),
            ..self
        }
    }

    /// Whether this call goes through the log.
    pub fn writes(&self, spec: &CommandSpec, args: &[Bytes]) -> bool {
        match self.logging {
            Logging::ByFlags => spec.flags.contains(&"write"),
            Logging::Always => true,
            Logging::Unless(read_only) => !read_only(args),
        }
    }

    /// Whether this call's reply can carry stored data.
    pub fn replies_with_data(&self, args: &[Bytes]) -> bool {
        match self.reply {
            ReplySize::Small => false,
            ReplySize::Data => true,
            ReplySize::DataIf(test) => test(args),
        }
    }
}

/// Every family's registry.
const FAMILIES: [&[KeyspaceCommand]; 13] = [
    strings::COMMANDS,
    bitmaps::COMMANDS,
    hyperloglog::COMMANDS,
    dump::COMMANDS,
    keys::COMMANDS,
    hashes::COMMANDS,
    lists::COMMANDS,
    sets::COMMANDS,
    sorted_sets::COMMANDS,
    sort::COMMANDS,
    scripting::COMMANDS,
    config::COMMANDS,
    &[command("memory|usage", memory_usage, ReplySize::Small)],
];

/// The registry by name, built once.
static REGISTRY: LazyLock<HashMap<&'static str, &'static KeyspaceCommand>> = LazyLock::new(|| {
    FAMILIES
        .iter()
        .flat_map(|family| family.iter())
        .map(|command| (command.name, command))
        .collect()
});

/// The keyspace command that runs what the command table resolved a call to (see
/// [`table::resolve`]); `None` when the server, not the state machine, answers it.
pub fn find(spec: &CommandSpec) -> Option<&'static KeyspaceCommand> {
    REGISTRY.get(spec.name).copied()
}

/// The internal read WATCH uses: the revision of each key now (0 when absent).
pub const REVISIONS: &str = "redraft.revisions";

/// Executes one command (name first) against `ks`. The arity is checked again here, so no
/// argument vector can make a command index past its arguments.
pub fn execute(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    if args
        .first()
        .is_some_and(|name| name.eq_ignore_ascii_case(REVISIONS.as_bytes()))
    {
        let mut out = Vec::with_capacity(args.len() - 1);
        for key in &args[1..] {
            let revision = ks.record(key)?.map_or(0, |r| r.revision);
            out.push(Reply::Integer(revision as i64));
        }
        return Ok(Reply::Array(out));
    }
    let spec = match table::resolve(args) {
        Ok(spec) => spec,
        Err(reply) => return Ok(reply),
    };
    match find(spec) {
        Some(command) => (command.run)(ks, args),
        None => Ok(Reply::error(format!(
            "ERR unknown command '{}' in the state machine",
            spec.name
        ))),
    }
}

/// `MEMORY USAGE key [SAMPLES n]`: an estimate of the bytes the key takes (nil when missing).
fn memory_usage(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    /// Per-key overhead of a record and its index entries.
    const KEY_OVERHEAD: usize = 48;
    let Some(key) = args.get(2) else {
        return Ok(syntax_error());
    };
    if args.len() != 3 && args.len() != 5 {
        return Ok(syntax_error());
    }
    let Some(record) = ks.record(key)? else {
        return Ok(Reply::Nil);
    };
    let value_bytes = match record.kind {
        Kind::String => record.payload.len(),
        Kind::Hash => ks
            .fields(key, None, usize::MAX)?
            .iter()
            .map(|(f, v)| f.len() + v.len() + 16)
            .sum(),
        kind => {
            // Rows of the first table the type keeps: its elements, each with its overhead.
            let mut bytes = 0;
            ks.visit_elements(
                kind.element_rows()[0],
                key,
                Bound::Unbounded,
                Bound::Unbounded,
                false,
                &mut |sub, value| {
                    bytes += sub.len() + value.len() + 16;
                    true
                },
            )?;
            bytes
        }
    };
    Ok(Reply::Integer(
        (KEY_OVERHEAD + key.len() + value_bytes) as i64,
    ))
}

/// Parses a SCAN cursor as Redis does (`strtoul` base 10, refusing a leading space, trailing
/// garbage and overflow; a sign is accepted and `-n` wraps, as in C).
pub fn parse_cursor(arg: &[u8]) -> Option<u64> {
    if arg
        .first()
        .is_some_and(|&b| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
    {
        return None;
    }
    // strtoul stops at a NUL byte, which Redis then takes as the end of the argument.
    let text = c_str(arg);
    if text.is_empty() {
        return Some(0);
    }
    let (negative, digits) = match text[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut value: u64 = 0;
    for &digit in digits {
        value = value
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
    }
    Some(if negative {
        value.wrapping_neg()
    } else {
        value
    })
}

pub use crate::redis::table::c_str;

/// SplitMix64: a small deterministic generator seeded from [`Keyspace::random_seed`].
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// The options of HSCAN, SSCAN and ZSCAN after the cursor: `COUNT n` (how many elements a
/// step is about; 10 by default) and `MATCH pattern` (`None` for `*`), or Redis's error.
pub fn scan_options(options: &[Bytes]) -> Result<(usize, Option<&[u8]>), Reply> {
    let mut count: i64 = 10;
    let mut pattern: Option<&[u8]> = None;
    let mut i = 0;
    while i < options.len() {
        let option = c_str(&options[i]);
        match options.get(i + 1) {
            Some(value) if option.eq_ignore_ascii_case(b"count") => {
                count = match int_arg(value)? {
                    n if n < 1 => return Err(syntax_error()),
                    n => n,
                };
            }
            Some(value) if option.eq_ignore_ascii_case(b"match") => {
                pattern = (value.as_ref() != b"*").then_some(value.as_ref());
            }
            _ => return Err(syntax_error()),
        }
        i += 2;
    }
    Ok((usize::try_from(count).unwrap_or(usize::MAX), pattern))
}

/// Redis's `(long long) ceill(seconds * 1000)`: C converts a value outside long long's range
/// to LLONG_MIN on x86-64.
pub fn timeout_ms(seconds: f64) -> i64 {
    let ms = (seconds * 1000.0).ceil();
    // 2^63: the first value outside long long's range.
    let limit = 2f64.powi(63);
    if ms.is_finite() && (-limit..limit).contains(&ms) {
        ms as i64
    } else {
        i64::MIN
    }
}

/// A blocking command's timeout in seconds (a decimal, 0 for none) as Redis reads it, checked
/// against the time `now_ms` the command runs at: the milliseconds, or Redis's error.
pub fn parse_timeout(arg: &[u8], now_ms: i64) -> Result<u64, Reply> {
    let Some(seconds) = crate::redis::double::parse_strict(arg) else {
        return Err(Reply::error("ERR timeout is not a float or out of range"));
    };
    let ms = timeout_ms(seconds);
    if ms < 0 {
        return Err(Reply::error("ERR timeout is negative"));
    }
    if ms > 0 && ms > i64::MAX - now_ms.max(0) {
        return Err(Reply::error("ERR timeout is out of range"));
    }
    Ok(ms as u64)
}

/// LMPOP's and ZMPOP's `numkeys key… <where> [COUNT n]` (`args[1..]`): the keys, what
/// `parse_where` reads `<where>` as, and the count (1 when absent); or Redis's error.
pub fn mpop_args<W>(
    args: &[Bytes],
    parse_where: impl Fn(&[u8]) -> Option<W>,
) -> Result<(&[Bytes], W, u64), Reply> {
    let numkeys = match crate::resp::string2ll(&args[1]) {
        Some(n) if n > 0 => n as u64,
        _ => return Err(Reply::error("ERR numkeys should be greater than 0")),
    };
    let where_at = 2u64.saturating_add(numkeys);
    if where_at >= args.len() as u64 {
        return Err(syntax_error());
    }
    let where_at = where_at as usize;
    let at_where = parse_where(c_str(&args[where_at])).ok_or_else(syntax_error)?;
    let mut count = None;
    let mut at = where_at + 1;
    while at < args.len() {
        if count.is_none() && c_str(&args[at]).eq_ignore_ascii_case(b"count") && at + 1 < args.len()
        {
            count = match crate::resp::string2ll(&args[at + 1]) {
                Some(n) if n > 0 => Some(n as u64),
                _ => return Err(Reply::error("ERR count should be greater than 0")),
            };
            at += 2;
        } else {
            return Err(syntax_error());
        }
    }
    Ok((&args[2..where_at], at_where, count.unwrap_or(1)))
}

/// HRANDFIELD's, SRANDMEMBER's and ZRANDMEMBER's `count [WITH…]` (`args[2..]`): the count and
/// whether `with` (`withvalues`, `withscores`; `None` where the command has no such option)
/// was given, or Redis's error.
pub fn random_count(args: &[Bytes], with: Option<&str>) -> Result<(i64, bool), Reply> {
    let count = match int_arg(&args[2])? {
        i64::MIN => {
            return Err(Reply::error(
                "ERR value is out of range, value must between -9223372036854775807 and \
                 9223372036854775807",
            ));
        }
        n => n,
    };
    let with = match (args.get(3), with) {
        (None, _) => false,
        (Some(arg), Some(word))
            if args.len() == 4 && c_str(arg).eq_ignore_ascii_case(word.as_bytes()) =>
        {
            true
        }
        (Some(_), _) => return Err(syntax_error()),
    };
    if with && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&count) {
        return Err(Reply::error("ERR value is out of range"));
    }
    Ok((count, with))
}

/// A SCAN-family reply: the next cursor and the elements of this step.
pub fn scan_reply(next: u64, items: Vec<Reply>) -> Reply {
    let mut digits = itoa::Buffer::new();
    Reply::Array(vec![
        Reply::bulk_str(digits.format(next)),
        Reply::Array(items),
    ])
}

/// What the families' unit tests share: running a command line, reading a reply's strings.
#[cfg(test)]
pub mod test_support {
    use super::*;
    use crate::store::keyspace::testing::TestStore;

    /// Runs a space-separated command line as log entry `index` (at time 1000).
    pub fn exec(db: &TestStore, index: u64, line: &str) -> Reply {
        let args: Vec<Bytes> = line
            .split(' ')
            .map(|word| Bytes::copy_from_slice(word.as_bytes()))
            .collect();
        db.write(1_000, index, |view| execute(view, &args).expect("store"))
    }

    /// The bulk strings (or integers) of an array or set reply, in order.
    pub fn strings(reply: Reply) -> Vec<String> {
        match reply {
            Reply::Array(items) | Reply::Set(items) => items
                .into_iter()
                .map(|item| match item {
                    Reply::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
                    Reply::Integer(n) => n.to_string(),
                    other => panic!("not a string: {other:?}"),
                })
                .collect(),
            other => panic!("not an array: {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::keyspace::testing::TestStore;

    /// Every registry line names a command of the table, once: a plain command, or one
    /// subcommand of a container.
    #[test]
    fn registry_and_command_table_agree() {
        let mut seen = std::collections::HashSet::new();
        for command in FAMILIES.iter().flat_map(|family| family.iter()) {
            assert!(
                seen.insert(command.name),
                "{} registered twice",
                command.name
            );
            let (top, sub) = match command.name.split_once('|') {
                Some((top, sub)) => (top, Some(sub)),
                None => (command.name, None),
            };
            let spec = table::lookup(top.as_bytes())
                .unwrap_or_else(|| panic!("{} is not in the command table", command.name));
            match sub {
                Some(sub) => {
                    let sub = table::lookup_subcommand(spec, sub.as_bytes());
                    assert!(
                        sub.is_some(),
                        "{} is not in the command table",
                        command.name
                    );
                    assert!(
                        !REGISTRY.contains_key(top),
                        "{top} and {} both registered",
                        command.name
                    );
                }
                None => assert!(
                    spec.subcommands.is_empty(),
                    "{} is a container: register its subcommands",
                    command.name
                ),
            }
        }
    }

    /// No argument vector makes a registered command panic: every command with any number of
    /// arguments up to six, each `1`, answers a reply.
    #[test]
    fn registered_commands_never_panic_on_any_argument_count() {
        let db = TestStore::new();
        for command in FAMILIES.iter().flat_map(|family| family.iter()) {
            let mut args: Vec<Bytes> = command
                .name
                .split('|')
                .map(|word| Bytes::copy_from_slice(word.as_bytes()))
                .collect();
            for _ in 0..6 {
                db.write(1_000, 1, |view| execute(view, &args).expect("store"));
                args.push(Bytes::from_static(b"1"));
            }
        }
    }
}
