//! Values crossing between Lua and Redis, as Redis 7.0 converts them: `redis.call`'s arguments,
//! a command's reply as the script sees it (RESP2 or, after `redis.setresp(3)`, RESP3
//! conversions), and the script's return value as the client's reply.

use bytes::Bytes;
use mlua::{Lua, MultiValue, Table, Value};

use crate::resp::Reply;
use crate::resp::reply::format_double;

/// Which conversions `redis.call` replies get (`redis.setresp`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Resp {
    /// The default: maps become flat arrays, doubles strings, booleans 1 or nil.
    Two,
    /// After `redis.setresp(3)`: maps, sets, doubles and booleans keep their types.
    Three,
}

/// The arguments of `redis.call`: strings, or numbers as Lua prints them.
pub fn call_args(words: &MultiValue) -> Result<Vec<Bytes>, &'static str> {
    if words.is_empty() {
        return Err("ERR Please specify at least one argument for this redis lib call");
    }
    words
        .iter()
        .map(|word| match word {
            Value::String(s) => Ok(Bytes::copy_from_slice(&s.as_bytes())),
            Value::Integer(n) => Ok(Bytes::from(lua_number_text(*n as f64))),
            Value::Number(n) => Ok(Bytes::from(lua_number_text(*n))),
            _ => Err("ERR Lua redis lib command arguments must be strings or integers"),
        })
        .collect()
}

/// A number passed to `redis.call` as Redis 7.0 turns it into an argument: C's `%.17g`.
pub fn lua_number_text(n: f64) -> String {
    if n.is_nan() && n.is_sign_negative() {
        return "-nan".into();
    }
    format_double(n)
}

/// A table with one field, `{name = value}`.
fn tagged(lua: &Lua, name: &str, value: Value) -> mlua::Result<Value> {
    let table = lua.create_table()?;
    table.raw_set(name, value)?;
    Ok(Value::Table(table))
}

/// A command's reply as a script sees it.
pub fn reply_to_lua(lua: &Lua, reply: Reply, resp: Resp) -> mlua::Result<Value> {
    let string =
        |bytes: &[u8]| -> mlua::Result<Value> { Ok(Value::String(lua.create_string(bytes)?)) };
    Ok(match (reply, resp) {
        (Reply::Integer(n), _) => Value::Number(n as f64),
        (Reply::Bulk(b), _) => string(&b)?,
        (Reply::Simple(s), _) => tagged(lua, "ok", string(&s)?)?,
        (Reply::Error(e), _) => tagged(lua, "err", string(&e)?)?,
        // Not a command scripts may call (Pub/Sub is `noscript`).
        (Reply::Raw(_) | Reply::Push(_) | Reply::Frames(_), _) => Value::Boolean(false),
        (Reply::Nil | Reply::NilArray, Resp::Two) => Value::Boolean(false),
        (Reply::Nil | Reply::NilArray, Resp::Three) => Value::Nil,
        (Reply::Bool(b), Resp::Two) => Value::Number(if b { 1.0 } else { 0.0 }),
        (Reply::Bool(b), Resp::Three) => Value::Boolean(b),
        (Reply::Double(d), Resp::Two) => string(format_double(d).as_bytes())?,
        (Reply::Double(d), Resp::Three) => tagged(lua, "double", Value::Number(d))?,
        (Reply::Verbatim(b), Resp::Two) => string(&b)?,
        (Reply::Verbatim(b), Resp::Three) => {
            let verbatim = lua.create_table()?;
            verbatim.raw_set("format", "txt")?;
            verbatim.raw_set("string", lua.create_string(&b)?)?;
            tagged(lua, "verbatim_string", Value::Table(verbatim))?
        }
        (Reply::Array(items), _) | (Reply::Set(items), Resp::Two) => {
            let table = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.into_iter().enumerate() {
                table.raw_set(i + 1, reply_to_lua(lua, item, resp)?)?;
            }
            Value::Table(table)
        }
        (Reply::Set(items), Resp::Three) => {
            let set = lua.create_table_with_capacity(0, items.len())?;
            for item in items {
                set.raw_set(reply_to_lua(lua, item, resp)?, true)?;
            }
            tagged(lua, "set", Value::Table(set))?
        }
        (Reply::Map(pairs) | Reply::Pairs(pairs), Resp::Two) => {
            let table = lua.create_table_with_capacity(pairs.len() * 2, 0)?;
            for (i, (key, value)) in pairs.into_iter().enumerate() {
                table.raw_set(2 * i + 1, reply_to_lua(lua, key, resp)?)?;
                table.raw_set(2 * i + 2, reply_to_lua(lua, value, resp)?)?;
            }
            Value::Table(table)
        }
        (Reply::Map(pairs), Resp::Three) => {
            let map = lua.create_table_with_capacity(0, pairs.len())?;
            for (key, value) in pairs {
                map.raw_set(
                    reply_to_lua(lua, key, resp)?,
                    reply_to_lua(lua, value, resp)?,
                )?;
            }
            tagged(lua, "map", Value::Table(map))?
        }
        (Reply::Pairs(pairs), Resp::Three) => {
            let table = lua.create_table_with_capacity(pairs.len(), 0)?;
            for (i, (key, value)) in pairs.into_iter().enumerate() {
                let pair = lua.create_table_with_capacity(2, 0)?;
                pair.raw_set(1, reply_to_lua(lua, key, resp)?)?;
                pair.raw_set(2, reply_to_lua(lua, value, resp)?)?;
                table.raw_set(i + 1, pair)?;
            }
            Value::Table(table)
        }
    })
}

/// A script's return value as a reply; `resp` is what the script last set with
/// `redis.setresp` (it decides what a boolean becomes).
pub fn lua_to_reply(value: &Value, resp: Resp) -> Reply {
    match value {
        Value::String(s) => Reply::Bulk(Bytes::copy_from_slice(&s.as_bytes())),
        Value::Boolean(b) if resp == Resp::Three => Reply::Bool(*b),
        Value::Boolean(true) => Reply::Integer(1),
        Value::Integer(n) => Reply::Integer(*n),
        Value::Number(n) => Reply::Integer(c_double_to_long_long(*n)),
        Value::Table(table) => table_to_reply(table, resp),
        _ => Reply::Nil,
    }
}

/// A table returned by a script: an error, a status, a RESP3 type, or an array up to its
/// first nil.
fn table_to_reply(table: &Table, resp: Resp) -> Reply {
    let field = |name: &str| table.raw_get::<Value>(name).unwrap_or(Value::Nil);
    if let Value::String(err) = field("err") {
        let mut text = err.as_bytes().to_vec();
        for b in &mut text {
            if *b == b'\r' || *b == b'\n' {
                *b = b' ';
            }
        }
        return Reply::Error(Bytes::from(text));
    }
    if let Value::String(ok) = field("ok") {
        return Reply::Simple(Bytes::copy_from_slice(&ok.as_bytes()));
    }
    match field("double") {
        Value::Number(d) => return Reply::Double(d),
        Value::Integer(d) => return Reply::Double(d as f64),
        _ => {}
    }
    if let Value::Table(map) = field("map") {
        let pairs = map
            .pairs::<Value, Value>()
            .filter_map(Result::ok)
            .map(|(k, v)| (lua_to_reply(&k, resp), lua_to_reply(&v, resp)))
            .collect();
        return Reply::Map(pairs);
    }
    if let Value::Table(set) = field("set") {
        let members = set
            .pairs::<Value, Value>()
            .filter_map(Result::ok)
            .map(|(k, _)| lua_to_reply(&k, resp))
            .collect();
        return Reply::Set(members);
    }
    if let Value::Table(verbatim) = field("verbatim_string")
        && let Ok(Value::String(text)) = verbatim.raw_get::<Value>("string")
    {
        return Reply::Verbatim(Bytes::copy_from_slice(&text.as_bytes()));
    }
    let mut items = Vec::new();
    for i in 1.. {
        match table.raw_get::<Value>(i) {
            Ok(Value::Nil) | Err(_) => break,
            Ok(item) => items.push(lua_to_reply(&item, resp)),
        }
    }
    Reply::Array(items)
}

/// `(long long)n` as x86-64 computes it (`cvttsd2si`): truncation, and `i64::MIN` for NaN
/// or anything out of range (Rust's `as` saturates instead).
pub fn c_double_to_long_long(n: f64) -> i64 {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if !(-LIMIT..LIMIT).contains(&n) {
        i64::MIN
    } else {
        n as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_become_arguments_as_lua_prints_them() {
        for (n, text) in [
            (5.0, "5"),
            (-2.5, "-2.5"),
            (1.0 / 3.0, "0.33333333333333331"),
            (7.0 / 3.0, "2.3333333333333335"),
            (123_456_789_012_345.0, "123456789012345"),
            (1e17, "1e+17"),
            (0.0001, "0.0001"),
            (0.00001, "1.0000000000000001e-05"),
            (1e100, "1e+100"),
            (0.1 + 0.2, "0.30000000000000004"),
        ] {
            assert_eq!(lua_number_text(n), text, "{n}");
        }
    }

    #[test]
    fn resp3_replies_keep_their_types_both_ways() {
        let lua = Lua::new();
        let reply = Reply::Map(vec![(Reply::bulk_str("f"), Reply::Double(1.5))]);
        let value = reply_to_lua(&lua, reply.clone(), Resp::Three).expect("convert");
        assert_eq!(lua_to_reply(&value, Resp::Three), reply);
        let flat = reply_to_lua(&lua, reply, Resp::Two).expect("convert");
        assert_eq!(
            lua_to_reply(&flat, Resp::Two),
            Reply::Array(vec![Reply::bulk_str("f"), Reply::bulk_str("1.5")])
        );
        let value = reply_to_lua(&lua, Reply::Bool(false), Resp::Three).expect("convert");
        assert_eq!(lua_to_reply(&value, Resp::Three), Reply::Bool(false));
        assert_eq!(lua_to_reply(&value, Resp::Two), Reply::Nil);
    }
}
