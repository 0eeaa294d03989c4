//! The replicated data-type parameters: Redis's encoding thresholds (`hash-max-listpack-*`,
//! `set-max-intset-entries`, `zset-max-listpack-*`, `list-max-listpack-size`,
//! `list-compress-depth`, and their `ziplist` aliases), which decide what OBJECT ENCODING
//! answers, and `notify-keyspace-events`, which decides what apply publishes: both must agree
//! on every replica.
//!
//! `CONFIG SET` of any of them is a write through the log ([`Catalog::Settings`] holds each
//! value set by its canonical name), so every node converts a collection at the same entry.
//! The server answers `CONFIG GET` from this node's applied state merged with its own
//! parameters. Values are checked and reported with Redis 7.0's texts. The list parameters
//! are kept and reported only: a 7.0 list is always a quicklist.

use bytes::Bytes;

use super::ReplySize::Small;
use super::{KeyspaceCommand, command};
use crate::redis::glob::glob_match;
use crate::resp::Reply;
use crate::resp::string2ll;
use crate::store::keyspace::{Catalog, Keyspace, StoreResult};

/// The commands of this family: `CONFIG SET` of a replicated parameter goes through the log;
/// `CONFIG GET` is read locally by the server (see [`routes_here`]).
pub static COMMANDS: &[KeyspaceCommand] = &[
    command("config|set", config_set, Small).logged(),
    command("config|get", config_get, Small),
];

/// How a parameter's value is written and which values it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Range {
    /// A count, `0..=i64::MAX` (Redis's `size_t` configs, capped at `LONG_MAX`).
    Count,
    /// A byte size with an optional unit (`b`, `k`, `kb`, `m`, `mb`, `g`, `gb`),
    /// `0..=i64::MAX`.
    Bytes,
    /// Any C `int`.
    Int,
    /// A non-negative C `int`.
    Depth,
    /// `notify-keyspace-events`'s class characters, kept as Redis prints them.
    Flags,
}

/// One replicated parameter.
#[derive(Debug)]
pub struct Parameter {
    /// Its name, the key its value is stored under.
    pub name: &'static str,
    /// The name Redis 6 knew it by, still accepted and reported.
    pub alias: &'static str,
    range: Range,
    /// Redis 7.0's built-in value (a server started without a config file).
    pub default: &'static str,
}

/// `hash-max-listpack-entries`.
pub const HASH_MAX_LISTPACK_ENTRIES: &Parameter = &PARAMETERS[0];
/// `hash-max-listpack-value`.
pub const HASH_MAX_LISTPACK_VALUE: &Parameter = &PARAMETERS[1];
/// `set-max-intset-entries`.
pub const SET_MAX_INTSET_ENTRIES: &Parameter = &PARAMETERS[2];
/// `zset-max-listpack-entries`.
pub const ZSET_MAX_LISTPACK_ENTRIES: &Parameter = &PARAMETERS[3];
/// `zset-max-listpack-value`.
pub const ZSET_MAX_LISTPACK_VALUE: &Parameter = &PARAMETERS[4];

/// `notify-keyspace-events`.
pub const NOTIFY_KEYSPACE_EVENTS: &Parameter = &PARAMETERS[7];

/// Every replicated parameter.
pub const PARAMETERS: [Parameter; 8] = [
    Parameter {
        name: "hash-max-listpack-entries",
        alias: "hash-max-ziplist-entries",
        range: Range::Count,
        default: "512",
    },
    Parameter {
        name: "hash-max-listpack-value",
        alias: "hash-max-ziplist-value",
        range: Range::Bytes,
        default: "64",
    },
    Parameter {
        name: "set-max-intset-entries",
        alias: "set-max-intset-entries",
        range: Range::Count,
        default: "512",
    },
    Parameter {
        name: "zset-max-listpack-entries",
        alias: "zset-max-ziplist-entries",
        range: Range::Count,
        default: "128",
    },
    Parameter {
        name: "zset-max-listpack-value",
        alias: "zset-max-ziplist-value",
        range: Range::Bytes,
        default: "64",
    },
    Parameter {
        name: "list-max-listpack-size",
        alias: "list-max-ziplist-size",
        range: Range::Int,
        default: "-2",
    },
    Parameter {
        name: "list-compress-depth",
        alias: "list-compress-depth",
        range: Range::Depth,
        default: "0",
    },
    Parameter {
        name: crate::store::notify::SETTING,
        alias: crate::store::notify::SETTING,
        range: Range::Flags,
        default: "",
    },
];

/// The parameter `name` (any case, either spelling) names, if it is replicated.
pub fn parameter(name: &[u8]) -> Option<&'static Parameter> {
    PARAMETERS.iter().find(|p| {
        name.eq_ignore_ascii_case(p.name.as_bytes())
            || name.eq_ignore_ascii_case(p.alias.as_bytes())
    })
}

/// Whether a CONFIG call (`args`: the whole command) runs in the state machine: a `SET` of
/// replicated parameters only. Everything else is the server's, which refuses a SET mixing
/// them with its own.
pub fn routes_here(args: &[Bytes]) -> bool {
    args.get(1)
        .is_some_and(|sub| sub.eq_ignore_ascii_case(b"set"))
        && args.len() > 2
        && args[2..]
            .iter()
            .step_by(2)
            .all(|name| parameter(name).is_some())
}

/// The value of `parameter` in the applied state as CONFIG GET shows it (its default until
/// a CONFIG SET).
pub fn text<K: Keyspace + ?Sized>(ks: &mut K, parameter: &Parameter) -> StoreResult<Bytes> {
    Ok(ks
        .catalog_get(Catalog::Settings, parameter.name.as_bytes())?
        .unwrap_or(Bytes::from_static(parameter.default.as_bytes())))
}

/// The value of a numeric `parameter` in the applied state.
pub fn value<K: Keyspace + ?Sized>(ks: &mut K, parameter: &Parameter) -> StoreResult<i64> {
    Ok(string2ll(&text(ks, parameter)?)
        .or_else(|| string2ll(parameter.default.as_bytes()))
        .unwrap_or(0))
}

/// A count or size parameter as a bound on lengths.
pub fn limit<K: Keyspace + ?Sized>(ks: &mut K, parameter: &Parameter) -> StoreResult<u64> {
    Ok(value(ks, parameter)?.max(0) as u64)
}

/// `CONFIG SET name value [name value …]`: every pair checked, then all applied (Redis's
/// order: unknown or repeated names first, then values).
fn config_set(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    if args.len() < 4 || !args.len().is_multiple_of(2) {
        return Ok(crate::redis::table::wrong_arity_error_for("config|set"));
    }
    let mut changes: Vec<(&Parameter, String)> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for pair in args[2..].chunks_exact(2) {
        let name = String::from_utf8_lossy(&pair[0]).to_ascii_lowercase();
        let Some(parameter) = parameter(&pair[0]) else {
            // The server answers any SET naming another parameter (see `routes_here`).
            return Ok(Reply::error(format!(
                "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                String::from_utf8_lossy(&pair[0])
            )));
        };
        // A name given twice is refused; a parameter and its alias are two names, set in turn.
        if names.contains(&name) {
            return Ok(Reply::error(format!(
                "ERR CONFIG SET failed (possibly related to argument '{}') - duplicate \
                 parameter",
                String::from_utf8_lossy(&pair[0])
            )));
        }
        names.push(name.clone());
        match parse(parameter.range, &pair[1]) {
            Ok(value) => changes.push((parameter, value)),
            Err(reason) => {
                return Ok(Reply::error(format!(
                    "ERR CONFIG SET failed (possibly related to argument '{name}') - {reason}"
                )));
            }
        }
    }
    for (parameter, value) in changes {
        ks.catalog_put(
            Catalog::Settings,
            parameter.name.as_bytes(),
            value.as_bytes(),
        )?;
    }
    Ok(Reply::ok())
}

/// `CONFIG GET pattern [pattern …]`, over the replicated parameters only: a name without
/// glob characters is looked up (either spelling, any case) and answered as given; a pattern
/// answers every name and alias it matches (ignoring case), each once.
fn config_get(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let mut found: Vec<(Bytes, &Parameter)> = Vec::new();
    for pattern in &args[2..] {
        if !pattern.iter().any(|b| b"[*?".contains(b)) {
            if let Some(parameter) = parameter(pattern) {
                found.push((pattern.clone(), parameter));
            }
            continue;
        }
        let pattern = pattern.to_ascii_lowercase();
        for parameter in &PARAMETERS {
            for name in [parameter.name, parameter.alias] {
                if glob_match(&pattern, name.as_bytes(), false) {
                    found.push((Bytes::from_static(name.as_bytes()), parameter));
                }
            }
        }
    }
    let mut pairs: Vec<(Reply, Reply)> = Vec::new();
    let mut seen: Vec<Vec<u8>> = Vec::new();
    for (name, parameter) in found {
        if seen.contains(&name.to_ascii_lowercase()) {
            continue;
        }
        seen.push(name.to_ascii_lowercase());
        pairs.push((Reply::Bulk(name), Reply::Bulk(text(ks, parameter)?)));
    }
    Ok(Reply::Map(pairs))
}

/// A value as Redis 7.0's CONFIG SET reads it for `range`, in the form CONFIG GET shows, or
/// the reason it is refused.
fn parse(range: Range, text: &[u8]) -> Result<String, String> {
    let (min, max) = match range {
        Range::Flags => {
            let flags = crate::store::notify::parse_flags(text)
                .ok_or("Invalid event class character. Use 'Ag$lshzxeKEtmdn'.".to_string())?;
            return Ok(crate::store::notify::flags_text(flags));
        }
        Range::Count | Range::Bytes => (0, i64::MAX),
        Range::Int => (i64::from(i32::MIN), i64::from(i32::MAX)),
        Range::Depth => (0, i64::from(i32::MAX)),
    };
    let value = match range {
        Range::Bytes => i128::from(memory_value(text).ok_or("argument must be a memory value")?),
        _ => i128::from(string2ll(text).ok_or("argument couldn't be parsed into an integer")?),
    };
    i64::try_from(value)
        .ok()
        .filter(|value| (min..=max).contains(value))
        .map(|value| value.to_string())
        .ok_or_else(|| format!("argument must be between {min} and {max} inclusive"))
}

/// Redis's `memtoull`: digits, then an optional unit (`b`, `k` = 1000, `kb` = 1024, `m`,
/// `mb`, `g`, `gb`, any case); `None` for anything else or a value past `u64`.
fn memory_value(text: &[u8]) -> Option<u64> {
    let digits_end = text
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    let multiplier: u64 = match unit.to_ascii_lowercase().as_slice() {
        b"" | b"b" => 1,
        b"k" => 1000,
        b"kb" => 1024,
        b"m" => 1000 * 1000,
        b"mb" => 1024 * 1024,
        b"g" => 1000 * 1000 * 1000,
        b"gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    if digits.is_empty() {
        return None;
    }
    std::str::from_utf8(digits)
        .ok()?
        .parse::<u64>()
        .ok()?
        .checked_mul(multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::commands::test_support::exec;
    use crate::store::keyspace::testing::TestStore;

    #[test]
    fn values_are_checked_as_redis_checks_them() {
        assert_eq!(parse(Range::Bytes, b"1kb"), Ok("1024".into()));
        assert_eq!(parse(Range::Bytes, b"1GB"), Ok((1 << 30).to_string()));
        assert_eq!(parse(Range::Bytes, b"3k"), Ok("3000".into()));
        assert_eq!(
            parse(Range::Bytes, b"-1"),
            Err("argument must be a memory value".into())
        );
        assert_eq!(
            parse(Range::Bytes, b"1.5"),
            Err("argument must be a memory value".into())
        );
        assert_eq!(
            parse(Range::Bytes, b"9223372036854775808"),
            Err("argument must be between 0 and 9223372036854775807 inclusive".into())
        );
        assert_eq!(
            parse(Range::Count, b"05"),
            Err("argument couldn't be parsed into an integer".into())
        );
        assert_eq!(
            parse(Range::Count, b"-1"),
            Err("argument must be between 0 and 9223372036854775807 inclusive".into())
        );
        assert_eq!(parse(Range::Int, b"-7"), Ok("-7".into()));
        assert_eq!(parse(Range::Flags, b"KEA"), Ok("AKE".into()));
        assert_eq!(
            parse(Range::Int, b"2147483648"),
            Err("argument must be between -2147483648 and 2147483647 inclusive".into())
        );
        assert_eq!(
            parse(Range::Depth, b"-1"),
            Err("argument must be between 0 and 2147483647 inclusive".into())
        );
    }

    #[test]
    fn set_values_are_read_back_under_both_names_and_survive_flushall() {
        let db = TestStore::new();
        assert_eq!(
            exec(&db, 1, "config set zset-max-ziplist-entries 7"),
            Reply::ok()
        );
        assert_eq!(
            exec(&db, 2, "config get zset-max-*-entries"),
            Reply::Map(vec![
                (
                    Reply::bulk_str("zset-max-listpack-entries"),
                    Reply::bulk_str("7")
                ),
                (
                    Reply::bulk_str("zset-max-ziplist-entries"),
                    Reply::bulk_str("7")
                ),
            ])
        );
        exec(&db, 3, "flushall");
        assert_eq!(
            value(&mut db.reader(0), ZSET_MAX_LISTPACK_ENTRIES).unwrap(),
            7
        );
        assert_eq!(
            value(&mut db.reader(0), SET_MAX_INTSET_ENTRIES).unwrap(),
            512
        );
        // Nothing is changed when one pair is refused.
        assert_eq!(
            exec(
                &db,
                4,
                "config set set-max-intset-entries 1 list-compress-depth -1"
            ),
            Reply::error(
                "ERR CONFIG SET failed (possibly related to argument 'list-compress-depth') - \
                 argument must be between 0 and 2147483647 inclusive"
            )
        );
        assert_eq!(
            value(&mut db.reader(0), SET_MAX_INTSET_ENTRIES).unwrap(),
            512
        );
    }

    #[test]
    fn encodings_follow_the_parameters_in_apply() {
        let db = TestStore::new();
        exec(
            &db,
            1,
            "config set set-max-intset-entries 2 zset-max-listpack-entries 1",
        );
        exec(&db, 2, "sadd s 1 2");
        assert_eq!(exec(&db, 3, "object encoding s"), Reply::bulk_str("intset"));
        exec(&db, 4, "sadd s 3");
        assert_eq!(
            exec(&db, 5, "object encoding s"),
            Reply::bulk_str("hashtable")
        );
        exec(&db, 6, "zadd z 1 a");
        assert_eq!(
            exec(&db, 7, "object encoding z"),
            Reply::bulk_str("listpack")
        );
        exec(&db, 8, "zadd z 2 b");
        assert_eq!(
            exec(&db, 9, "object encoding z"),
            Reply::bulk_str("skiplist")
        );
    }
}
