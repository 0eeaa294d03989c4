//! The Lua state a script runs in: the libraries Redis 7.0 gives scripts, the `redis` table
//! (all but `call` and `pcall`, which need the keyspace), a deterministic `math.random`,
//! read-only globals, an instruction budget and a memory limit.

use std::cell::Cell;
use std::rc::Rc;

use bytes::Bytes;
use mlua::{HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value, VmState};

use super::convert::Resp;

/// VM instructions between two checks of the budget.
const BUDGET_STEP: u32 = 10_000;
/// Checks a script may pass before it is stopped: 500 million instructions.
const BUDGET_STEPS: u32 = 50_000;
/// Most memory one script's Lua state may allocate.
const MEMORY_LIMIT_BYTES: usize = 64 * 1024 * 1024;

/// An error a `redis` library function raised: the reply's text before ` script: …`, and the
/// script line that called (kept in the state's app data until the script ends).
pub struct Raised {
    /// The reply's text, prefix included (`ERR …`).
    pub text: String,
    /// The calling script line, -1 when unknown.
    pub line: i32,
}

/// The line of the script function calling the running library function.
fn calling_line(lua: &Lua) -> i32 {
    lua.inspect_stack(1, |debug| debug.current_line().map_or(-1, |n| n as i32))
        .unwrap_or(-1)
}

/// Fails a `redis` library call as Redis does (`luaError`): the script's reply is `text`,
/// then the script and the calling line.
pub fn raise(lua: &Lua, text: impl Into<String>) -> mlua::Error {
    let text = text.into();
    lua.set_app_data(Raised {
        text: text.clone(),
        line: calling_line(lua),
    });
    mlua::Error::runtime(text)
}

/// Fails a library call as Lua's `luaL_error` does: the message starts with the location.
fn located(lua: &Lua, message: &str) -> mlua::Error {
    mlua::Error::runtime(format!("user_script:{}: {message}", calling_line(lua)))
}

/// Redis's version as `redis.REDIS_VERSION_NUM` gives it (`0x00MMmmpp`).
fn version_number() -> i64 {
    crate::redis::REDIS_VERSION
        .split('.')
        .map(|part| part.parse::<i64>().unwrap_or(0))
        .fold(0, |number, part| (number << 8) | part)
}

/// A Lua state ready for one script. Its app data holds the [`Resp`] the script chose.
pub fn new_state() -> mlua::Result<Lua> {
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
    lua.set_app_data(Resp::Two);
    let globals = lua.globals();
    for unsafe_function in ["loadfile", "dofile", "print"] {
        globals.raw_set(unsafe_function, Value::Nil)?;
    }
    globals.raw_set("redis", redis_library(&lua)?)?;
    install_random(&lua)?;
    Ok(lua)
}

/// The `redis` table without `call` and `pcall`.
fn redis_library(lua: &Lua) -> mlua::Result<Table> {
    let redis = lua.create_table()?;
    for (name, field) in [("error_reply", "err"), ("status_reply", "ok")] {
        redis.raw_set(
            name,
            lua.create_function(move |lua, words: MultiValue| {
                let table = lua.create_table()?;
                match words.front() {
                    Some(Value::String(text)) if words.len() == 1 => table.raw_set(field, text)?,
                    _ => table.raw_set("err", "ERR wrong number or type of arguments")?,
                }
                Ok(table)
            })?,
        )?;
    }
    redis.raw_set(
        "sha1hex",
        lua.create_function(|lua, words: MultiValue| {
            if words.len() != 1 {
                return Err(raise(lua, "ERR wrong number of arguments"));
            }
            // Strings and numbers (as Lua prints them) are hashed; anything else as "".
            let text = lua.coerce_string(words[0].clone())?;
            let bytes = text.map(|s| s.as_bytes().to_vec()).unwrap_or_default();
            Ok(super::sha1_hex(&bytes))
        })?,
    )?;
    redis.raw_set(
        "log",
        lua.create_function(|lua, words: MultiValue| {
            if words.len() < 2 {
                return Err(raise(
                    lua,
                    "ERR redis.log() requires two arguments or more.",
                ));
            }
            if !matches!(words[0], Value::Integer(_) | Value::Number(_)) {
                return Err(raise(
                    lua,
                    "ERR First argument must be a number (log level).",
                ));
            }
            let message: Vec<String> = words
                .iter()
                .skip(1)
                .map(|word| match word {
                    Value::String(s) => s.to_string_lossy(),
                    other => format!("{other:?}"),
                })
                .collect();
            tracing::info!(target: "redraft::script", "{}", message.join(" "));
            Ok(())
        })?,
    )?;
    redis.raw_set(
        "setresp",
        lua.create_function(|lua, version: MultiValue| {
            let resp = match version.front() {
                Some(Value::Integer(2)) if version.len() == 1 => Resp::Two,
                Some(Value::Integer(3)) if version.len() == 1 => Resp::Three,
                Some(Value::Number(n)) if version.len() == 1 && *n == 2.0 => Resp::Two,
                Some(Value::Number(n)) if version.len() == 1 && *n == 3.0 => Resp::Three,
                _ if version.len() != 1 => {
                    return Err(raise(lua, "ERR redis.setresp() requires one argument."));
                }
                _ => return Err(raise(lua, "ERR RESP version must be 2 or 3.")),
            };
            lua.set_app_data(resp);
            Ok(())
        })?,
    )?;
    // Effects are what every replica applies already: these change nothing.
    redis.raw_set(
        "set_repl",
        lua.create_function(|lua, flags: MultiValue| match flags.front() {
            Some(Value::Integer(0..=3)) if flags.len() == 1 => Ok(()),
            Some(Value::Number(n)) if flags.len() == 1 && (0.0..=3.0).contains(n) => Ok(()),
            _ if flags.len() != 1 => {
                Err(raise(lua, "ERR redis.set_repl() requires two arguments."))
            }
            _ => Err(raise(
                lua,
                "ERR Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.",
            )),
        })?,
    )?;
    redis.raw_set("replicate_commands", lua.create_function(|_, ()| Ok(true))?)?;
    redis.raw_set("breakpoint", lua.create_function(|_, ()| Ok(false))?)?;
    redis.raw_set("debug", lua.create_function(|_, _: MultiValue| Ok(()))?)?;
    for (name, value) in [
        ("LOG_DEBUG", 0),
        ("LOG_VERBOSE", 1),
        ("LOG_NOTICE", 2),
        ("LOG_WARNING", 3),
        ("REPL_NONE", 0),
        ("REPL_AOF", 1),
        ("REPL_SLAVE", 2),
        ("REPL_REPLICA", 2),
        ("REPL_ALL", 3),
    ] {
        redis.raw_set(name, value)?;
    }
    redis.raw_set("REDIS_VERSION", crate::redis::REDIS_VERSION)?;
    redis.raw_set("REDIS_VERSION_NUM", version_number())?;
    Ok(redis)
}

/// `math.random` and `math.randomseed` over Redis's `rand48`, seeded with 0 for every script.
fn install_random(lua: &Lua) -> mlua::Result<()> {
    let state = Rc::new(Cell::new(Rand48::seeded(0)));
    let math: Table = lua.globals().raw_get("math")?;
    let random_state = state.clone();
    math.raw_set(
        "random",
        lua.create_function(move |lua, bounds: MultiValue| {
            let mut rng = random_state.get();
            let r = f64::from(rng.next()) / f64::from(i32::MAX);
            random_state.set(rng);
            let number = |position: usize, value: &Value| -> mlua::Result<f64> {
                match lua.coerce_number(value.clone()) {
                    Ok(Some(n)) => Ok(n),
                    _ => Err(located(
                        lua,
                        &format!(
                            "bad argument #{position} to 'random' (number expected, got {})",
                            value.type_name()
                        ),
                    )),
                }
            };
            match bounds.len() {
                0 => Ok(r),
                1 => {
                    let upper = number(1, &bounds[0])?.floor();
                    if upper < 1.0 {
                        return Err(located(
                            lua,
                            "bad argument #1 to 'random' (interval is empty)",
                        ));
                    }
                    Ok((r * upper).floor() + 1.0)
                }
                2 => {
                    let lower = number(1, &bounds[0])?.floor();
                    let upper = number(2, &bounds[1])?.floor();
                    if lower > upper {
                        return Err(located(
                            lua,
                            "bad argument #2 to 'random' (interval is empty)",
                        ));
                    }
                    Ok((r * (upper - lower + 1.0)).floor() + lower)
                }
                _ => Err(located(lua, "wrong number of arguments")),
            }
        })?,
    )?;
    math.raw_set(
        "randomseed",
        lua.create_function(move |lua, seed: Value| {
            let Ok(Some(seed)) = lua.coerce_number(seed.clone()) else {
                return Err(located(
                    lua,
                    &format!(
                        "bad argument #1 to 'randomseed' (number expected, got {})",
                        seed.type_name()
                    ),
                ));
            };
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
pub fn set_arguments(lua: &Lua, keys: &[Bytes], argv: &[Bytes]) -> mlua::Result<()> {
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
pub fn protect_globals(lua: &Lua) -> mlua::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_number_packs_major_minor_patch() {
        assert_eq!(version_number(), 0x07_00_0f);
    }
}
