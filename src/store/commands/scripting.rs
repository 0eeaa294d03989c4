//! Lua scripting, first step: `EVAL` and `EVAL_RO` with `redis.call`, `redis.pcall`,
//! `redis.error_reply`, `redis.status_reply`, `KEYS` and `ARGV`, in Redis 7.0's Lua 5.1 dialect.
//!
//! A script is a keyspace command like any other: `EVAL` goes through the log and runs in
//! apply on every node, against the same keyspace view and at the same log time as the
//! commands around it, so it is atomic and every replica computes the same effects and reply.
//! `EVAL_RO` runs as a linearizable read and may not call a write command.
//!
//! Determinism: each script gets a fresh Lua state with only the base, table, string and math
//! libraries; `math.random` is Redis's `rand48`, seeded identically for every run (Redis 7.0
//! seeds it once per process, so its sequence depends on the server's history; here it does
//! not); globals are read-only, as in Redis. A runaway script is stopped by an instruction
//! budget, the same on every node, never by wall time, and its memory is bounded.
//!
//! Not yet: `EVALSHA` and `SCRIPT` (the script cache must be replicated state), `FUNCTION`,
//! RESP3 conversions, `redis.sha1hex`/`log`/`setresp`, the cjson, cmsgpack, bit and struct
//! libraries, and commands that are not keyspace commands (`TIME`, `PING`…) from scripts.

use std::cell::{Cell, RefCell};

use bytes::Bytes;
use mlua::{HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value, VmState};

use super::ReplySize::Data;
use super::{KeyspaceCommand, command, int_arg};
use crate::redis::table;
use crate::resp::Reply;
use crate::store::keyspace::{Keyspace, StoreError, StoreResult};

/// The scripting commands (see [`KeyspaceCommand`]): `EVAL` is always logged, whatever the
/// command table's flags say (Redis decides by what the script calls).
pub const COMMANDS: &[KeyspaceCommand] = &[
    command("eval", |ks, args| eval(ks, args, false), Data).logged(),
    command("eval_ro", |ks, args| eval(ks, args, true), Data),
];

/// VM instructions between two checks of the budget.
const BUDGET_STEP: u32 = 10_000;
/// Checks a script may pass before it is stopped: 500 million instructions.
const BUDGET_STEPS: u32 = 50_000;
/// Most memory one script's Lua state may allocate.
const MEMORY_LIMIT_BYTES: usize = 64 * 1024 * 1024;
/// The chunk name Redis gives scripts (errors read `user_script:1: …`).
const CHUNK_NAME: &str = "@user_script";

/// `EVAL script numkeys [key …] [arg …]` (and `EVAL_RO`).
fn eval(ks: &mut dyn Keyspace, args: &[Bytes], read_only: bool) -> StoreResult<Reply> {
    let numkeys = match int_arg(&args[2]) {
        Ok(n) if n < 0 => return Ok(Reply::error("ERR Number of keys can't be negative")),
        Ok(n) if n as u64 > (args.len() - 3) as u64 => {
            return Ok(Reply::error(
                "ERR Number of keys can't be greater than number of args",
            ));
        }
        Ok(n) => n as usize,
        Err(reply) => return Ok(reply),
    };
    let (keys, argv) = args[3..].split_at(numkeys);
    let script = Script {
        body: &args[1],
        sha: sha1_hex(&args[1]),
        read_only,
    };
    script.run(ks, keys, argv)
}

/// The lowercase hex SHA-1 of a script body, as Redis names scripts.
fn sha1_hex(body: &[u8]) -> String {
    sha1_smol::Sha1::from(body).digest().to_string()
}

/// One script run.
struct Script<'a> {
    body: &'a Bytes,
    sha: String,
    read_only: bool,
}

/// An error `redis.call` raised: its text and the script line that called.
struct Raised {
    text: String,
    line: i32,
}

impl Script<'_> {
    fn run(&self, ks: &mut dyn Keyspace, keys: &[Bytes], argv: &[Bytes]) -> StoreResult<Reply> {
        let lua = match new_state() {
            Ok(lua) => lua,
            Err(err) => return Ok(Reply::error(format!("ERR cannot start Lua: {err}"))),
        };
        let ks = RefCell::new(ks);
        let storage_error: RefCell<Option<StoreError>> = RefCell::new(None);
        let raised: RefCell<Option<Raised>> = RefCell::new(None);
        let outcome = lua.scope(|scope| {
            let redis: Table = lua.globals().raw_get("redis")?;
            for (name, protected) in [("call", false), ("pcall", true)] {
                let ks = &ks;
                let storage_error = &storage_error;
                let raised = &raised;
                let read_only = self.read_only;
                let function = scope.create_function(move |lua, words: MultiValue| {
                    let reply = match call_args(&words) {
                        Ok(args) => run_command(&mut **ks.borrow_mut(), &args, read_only),
                        Err(message) => Ok(Reply::error(message)),
                    };
                    let reply = match reply {
                        Ok(reply) => reply,
                        Err(err) => {
                            *storage_error.borrow_mut() = Some(err);
                            return Err(mlua::Error::runtime("storage failed"));
                        }
                    };
                    match reply {
                        Reply::Error(text) if !protected => {
                            let text = String::from_utf8_lossy(&text).into_owned();
                            let line = lua
                                .inspect_stack(1, |debug| {
                                    debug.current_line().map_or(-1, |n| n as i32)
                                })
                                .unwrap_or(-1);
                            *raised.borrow_mut() = Some(Raised {
                                text: text.clone(),
                                line,
                            });
                            Err(mlua::Error::runtime(text))
                        }
                        reply => reply_to_lua(lua, reply),
                    }
                })?;
                redis.raw_set(name, function)?;
            }
            set_arguments(&lua, keys, argv)?;
            protect_globals(&lua)?;
            let chunk = lua.load(self.body.as_ref()).set_name(CHUNK_NAME);
            let function = chunk.into_function()?;
            let value: Value = function.call(())?;
            Ok(lua_to_reply(&value))
        });
        if let Some(err) = storage_error.into_inner() {
            return Err(err);
        }
        Ok(match outcome {
            Ok(reply) => reply,
            Err(err) => self.error_reply(&err, raised.into_inner()),
        })
    }

    /// The reply for a script that failed, with Redis's texts.
    fn error_reply(&self, err: &mlua::Error, raised: Option<Raised>) -> Reply {
        let sha = &self.sha;
        if let mlua::Error::SyntaxError { message, .. } = err {
            return Reply::error(format!(
                "ERR Error compiling script (new function): {}",
                one_line(message)
            ));
        }
        let message = innermost_message(err);
        if let Some(raised) = raised.filter(|r| r.text == message) {
            return Reply::error(format!(
                "{} script: {sha}, on @user_script:{}.",
                one_line(&raised.text),
                raised.line
            ));
        }
        let line = script_line(&message).unwrap_or(-1);
        Reply::error(format!(
            "ERR {} script: {sha}, on @user_script:{line}.",
            one_line(&message)
        ))
    }
}

/// A Lua state with the libraries Redis gives scripts, a deterministic `math.random`, the
/// `redis` table, an instruction budget and a memory limit.
fn new_state() -> mlua::Result<Lua> {
    let lua = Lua::new_with(
        StdLib::TABLE | StdLib::STRING | StdLib::MATH,
        LuaOptions::default(),
    )?;
    lua.set_memory_limit(MEMORY_LIMIT_BYTES)?;
    let steps = Cell::new(0u32);
    lua.set_hook(
        HookTriggers::new().every_nth_instruction(BUDGET_STEP),
        move |_, _| {
            steps.set(steps.get() + 1);
            if steps.get() > BUDGET_STEPS {
                return Err(mlua::Error::runtime(
                    "Script exceeded its instruction budget (500 million instructions)",
                ));
            }
            Ok(VmState::Continue)
        },
    )?;
    let globals = lua.globals();
    for unsafe_function in ["loadfile", "dofile", "print"] {
        globals.raw_set(unsafe_function, Value::Nil)?;
    }
    let redis = lua.create_table()?;
    for (name, field) in [("error_reply", "err"), ("status_reply", "ok")] {
        redis.raw_set(
            name,
            lua.create_function(move |lua, text: mlua::String| {
                let table = lua.create_table()?;
                table.raw_set(field, text)?;
                Ok(table)
            })?,
        )?;
    }
    redis.raw_set("REDIS_VERSION", crate::redis::REDIS_VERSION)?;
    globals.raw_set("redis", redis)?;
    install_random(&lua)?;
    Ok(lua)
}

/// `math.random` and `math.randomseed` over Redis's `rand48`, seeded with 0 for every script.
fn install_random(lua: &Lua) -> mlua::Result<()> {
    let state = std::rc::Rc::new(Cell::new(Rand48::seeded(0)));
    let math: Table = lua.globals().raw_get("math")?;
    let random_state = state.clone();
    math.raw_set(
        "random",
        lua.create_function(move |_, bounds: MultiValue| {
            let mut rng = random_state.get();
            let r = f64::from(rng.next()) / f64::from(i32::MAX);
            random_state.set(rng);
            let number = |value: &Value| -> mlua::Result<f64> {
                match value {
                    Value::Integer(n) => Ok(*n as f64),
                    Value::Number(n) => Ok(*n),
                    _ => Err(mlua::Error::runtime(
                        "bad argument to 'random' (number expected)",
                    )),
                }
            };
            match bounds.len() {
                0 => Ok(r),
                1 => {
                    let upper = number(&bounds[0])?.floor();
                    if upper < 1.0 {
                        return Err(mlua::Error::runtime(
                            "bad argument #1 to 'random' (interval is empty)",
                        ));
                    }
                    Ok((r * upper).floor() + 1.0)
                }
                2 => {
                    let lower = number(&bounds[0])?.floor();
                    let upper = number(&bounds[1])?.floor();
                    if lower > upper {
                        return Err(mlua::Error::runtime(
                            "bad argument #2 to 'random' (interval is empty)",
                        ));
                    }
                    Ok((r * (upper - lower + 1.0)).floor() + lower)
                }
                _ => Err(mlua::Error::runtime("wrong number of arguments")),
            }
        })?,
    )?;
    math.raw_set(
        "randomseed",
        lua.create_function(move |_, seed: f64| {
            state.set(Rand48::seeded(seed as i32));
            Ok(())
        })?,
    )
}

/// The `rand48` generator Redis's scripts use (`redisLrand48`).
#[derive(Clone, Copy)]
struct Rand48(u64);

impl Rand48 {
    fn seeded(seed: i32) -> Rand48 {
        Rand48(((u64::from(seed as u32)) << 16) | 0x330E)
    }

    /// The next value in `0..2^31`.
    fn next(&mut self) -> i32 {
        self.0 = (self.0.wrapping_mul(0x5_DEEC_E66D).wrapping_add(0xB)) & ((1 << 48) - 1);
        (self.0 >> 17) as i32
    }
}

/// Sets `KEYS` and `ARGV`.
fn set_arguments(lua: &Lua, keys: &[Bytes], argv: &[Bytes]) -> mlua::Result<()> {
    for (name, values) in [("KEYS", keys), ("ARGV", argv)] {
        let table = lua.create_table_with_capacity(values.len(), 0)?;
        for (i, value) in values.iter().enumerate() {
            table.raw_set(i + 1, lua.create_string(value)?)?;
        }
        lua.globals().raw_set(name, table)?;
    }
    Ok(())
}

/// Makes globals read-only, with Redis's errors for reading a missing one or writing any.
fn protect_globals(lua: &Lua) -> mlua::Result<()> {
    lua.load(
        r#"
        setmetatable(_G, {
            __index = function(_, name)
                error("Script attempted to access nonexistent global variable '" .. tostring(name) .. "'", 2)
            end,
            __newindex = function()
                error("Attempt to modify a readonly table", 2)
            end,
        })
        "#,
    )
    .set_name("=protect")
    .exec()
}

/// The arguments of `redis.call`: strings, or numbers as Lua prints them.
fn call_args(words: &MultiValue) -> Result<Vec<Bytes>, &'static str> {
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
fn lua_number_text(n: f64) -> String {
    if n.is_nan() {
        return if n.is_sign_negative() { "-nan" } else { "nan" }.into();
    }
    if n.is_infinite() {
        return if n < 0.0 { "-inf" } else { "inf" }.into();
    }
    if n == 0.0 {
        return if n.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // 17 significant digits: the exponent after rounding decides the notation, as in C.
    let scientific = format!("{n:.16e}");
    let (mantissa, exponent) = scientific.split_once('e').expect("{:e} has an exponent");
    let exponent: i32 = exponent.parse().expect("{:e} exponent is an integer");
    let trim = |digits: &str| -> String {
        if digits.contains('.') {
            digits
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string()
        } else {
            digits.to_string()
        }
    };
    if !(-4..17).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exponent.abs())
    } else {
        let decimals = usize::try_from(16 - exponent).unwrap_or(0);
        trim(&format!("{n:.decimals$}"))
    }
}

/// Runs one command a script called, with Redis's refusals for what scripts may not do.
fn run_command(ks: &mut dyn Keyspace, args: &[Bytes], read_only: bool) -> StoreResult<Reply> {
    let Some(top) = table::lookup(&args[0]) else {
        return Ok(Reply::error("ERR Unknown Redis command called from script"));
    };
    let spec = match table::resolve_in(top, args) {
        Ok(spec) => spec,
        Err(_) if !table::arity_ok(top, args.len()) => {
            return Ok(Reply::error(
                "ERR Wrong number of args calling Redis command from script",
            ));
        }
        Err(reply) => return Ok(reply),
    };
    if spec.flags.contains(&"noscript") {
        return Ok(Reply::error(
            "ERR This Redis command is not allowed from script",
        ));
    }
    if read_only && spec.flags.contains(&"write") {
        return Ok(Reply::error(
            "ERR Write commands are not allowed from read-only scripts.",
        ));
    }
    match super::find(spec) {
        Some(command) => (command.run)(ks, args),
        None => Ok(Reply::error(format!(
            "ERR redraft does not run '{}' from scripts yet",
            spec.name
        ))),
    }
}

/// A command's reply as a script sees it (Redis 7.0, RESP2 conversions).
fn reply_to_lua(lua: &Lua, reply: Reply) -> mlua::Result<Value> {
    Ok(match reply {
        Reply::Integer(n) => Value::Number(n as f64),
        Reply::Bool(b) => Value::Number(if b { 1.0 } else { 0.0 }),
        Reply::Bulk(b) | Reply::Verbatim(b) => Value::String(lua.create_string(&b)?),
        Reply::Double(d) => Value::String(lua.create_string(d.to_string())?),
        Reply::Nil | Reply::NilArray => Value::Boolean(false),
        Reply::Simple(s) => {
            let table = lua.create_table()?;
            table.raw_set("ok", lua.create_string(&s)?)?;
            Value::Table(table)
        }
        Reply::Error(e) => {
            let table = lua.create_table()?;
            table.raw_set("err", lua.create_string(&e)?)?;
            Value::Table(table)
        }
        Reply::Array(items) | Reply::Set(items) => {
            let table = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.into_iter().enumerate() {
                table.raw_set(i + 1, reply_to_lua(lua, item)?)?;
            }
            Value::Table(table)
        }
        Reply::Map(pairs) | Reply::Pairs(pairs) => {
            let table = lua.create_table_with_capacity(pairs.len() * 2, 0)?;
            for (i, (key, value)) in pairs.into_iter().enumerate() {
                table.raw_set(2 * i + 1, reply_to_lua(lua, key)?)?;
                table.raw_set(2 * i + 2, reply_to_lua(lua, value)?)?;
            }
            Value::Table(table)
        }
        Reply::Raw(_) => Value::Boolean(false),
    })
}

/// A script's return value as a reply (Redis 7.0, RESP2 conversions).
fn lua_to_reply(value: &Value) -> Reply {
    match value {
        Value::String(s) => Reply::Bulk(Bytes::copy_from_slice(&s.as_bytes())),
        Value::Boolean(true) => Reply::Integer(1),
        Value::Integer(n) => Reply::Integer(*n),
        Value::Number(n) => Reply::Integer(c_double_to_long_long(*n)),
        Value::Table(table) => {
            if let Ok(Value::String(err)) = table.raw_get::<Value>("err") {
                let mut text = err.as_bytes().to_vec();
                for b in &mut text {
                    if *b == b'\r' || *b == b'\n' {
                        *b = b' ';
                    }
                }
                return Reply::Error(Bytes::from(text));
            }
            if let Ok(Value::String(ok)) = table.raw_get::<Value>("ok") {
                return Reply::Simple(Bytes::copy_from_slice(&ok.as_bytes()));
            }
            let mut items = Vec::new();
            for i in 1.. {
                match table.raw_get::<Value>(i) {
                    Ok(Value::Nil) | Err(_) => break,
                    Ok(item) => items.push(lua_to_reply(&item)),
                }
            }
            Reply::Array(items)
        }
        _ => Reply::Nil,
    }
}

/// `(long long)n` as x86-64 computes it (`cvttsd2si`): truncation, and `i64::MIN` for NaN
/// or anything out of range (Rust's `as` saturates instead).
fn c_double_to_long_long(n: f64) -> i64 {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if !(-LIMIT..LIMIT).contains(&n) {
        i64::MIN
    } else {
        n as i64
    }
}

/// The message of the innermost cause of a Lua error (a callback's own error, not the
/// traceback around it).
fn innermost_message(err: &mlua::Error) -> String {
    match err {
        mlua::Error::CallbackError { cause, .. } => innermost_message(cause),
        mlua::Error::RuntimeError(message) => message
            .split("\nstack traceback:")
            .next()
            .unwrap_or_default()
            .to_string(),
        mlua::Error::MemoryError(_) => "Script used more memory than allowed".into(),
        other => other.to_string(),
    }
}

/// The line in a `user_script:N: …` message.
fn script_line(message: &str) -> Option<i32> {
    let rest = message.strip_prefix("user_script:")?;
    rest.split(':').next()?.parse().ok()
}

/// `text` on one line (Redis replaces CR and LF in error replies).
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::commands::execute;
    use crate::store::keyspace::testing::TestStore;

    fn run(db: &TestStore, words: &[&str]) -> Reply {
        let args: Vec<Bytes> = words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect();
        db.write(1_000, 1, |view| execute(view, &args).expect("store"))
    }

    #[test]
    fn scripts_call_commands_and_convert_replies_as_redis_does() {
        let db = TestStore::new();
        assert_eq!(
            run(
                &db,
                &[
                    "EVAL",
                    "return redis.call('INCRBY', KEYS[1], ARGV[1])",
                    "1",
                    "k",
                    "5"
                ]
            ),
            Reply::Integer(5)
        );
        assert_eq!(
            run(
                &db,
                &["EVAL", "return {1, 'x', {ok='fine'}, true, false, 9}", "0"]
            ),
            Reply::Array(vec![
                Reply::Integer(1),
                Reply::Bulk(Bytes::from_static(b"x")),
                Reply::Simple(Bytes::from_static(b"fine")),
                Reply::Integer(1),
                Reply::Nil,
                Reply::Integer(9),
            ])
        );
        assert_eq!(
            run(&db, &["EVAL", "return redis.call('GET', 'missing')", "0"]),
            Reply::Nil
        );
    }

    #[test]
    fn script_errors_carry_redis_texts() {
        let db = TestStore::new();
        run(&db, &["SET", "s", "abc"]);
        let sha = sha1_hex(b"return redis.call('incr', KEYS[1])");
        assert_eq!(
            run(
                &db,
                &["EVAL", "return redis.call('incr', KEYS[1])", "1", "s"]
            ),
            Reply::error(format!(
                "ERR value is not an integer or out of range script: {sha}, on @user_script:1."
            ))
        );
        assert_eq!(
            run(
                &db,
                &["EVAL", "return redis.pcall('incr', KEYS[1])", "1", "s"]
            ),
            Reply::error("ERR value is not an integer or out of range")
        );
        let sha = sha1_hex(b"x = 1");
        assert_eq!(
            run(&db, &["EVAL", "x = 1", "0"]),
            Reply::error(format!(
                "ERR user_script:1: Attempt to modify a readonly table script: {sha}, on @user_script:1."
            ))
        );
        assert_eq!(
            run(&db, &["EVAL", "return 1", "-1"]),
            Reply::error("ERR Number of keys can't be negative")
        );
        assert_eq!(
            run(&db, &["EVAL", "syntax error here", "0"]),
            Reply::error(
                "ERR Error compiling script (new function): user_script:1: '=' expected near 'error'"
            )
        );
    }

    #[test]
    fn a_runaway_script_is_stopped_by_its_budget_and_read_only_scripts_cannot_write() {
        let db = TestStore::new();
        let reply = run(&db, &["EVAL", "while true do end", "0"]);
        assert!(
            matches!(&reply, Reply::Error(text) if text.windows(6).any(|w| w == b"budget")),
            "{reply:?}"
        );
        let reply = run(&db, &["EVAL_RO", "return redis.call('set', 'a', '1')", "0"]);
        assert!(
            matches!(&reply, Reply::Error(text) if text.starts_with(b"ERR Write commands are not allowed from read-only scripts.")),
            "{reply:?}"
        );
        assert_eq!(run(&db, &["GET", "a"]), Reply::Nil);
    }

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
    fn math_random_is_the_same_on_every_run() {
        let db = TestStore::new();
        let first = run(
            &db,
            &["EVAL", "return {math.random(1000), math.random(1000)}", "0"],
        );
        let second = run(
            &db,
            &["EVAL", "return {math.random(1000), math.random(1000)}", "0"],
        );
        assert_eq!(first, second);
    }
}
