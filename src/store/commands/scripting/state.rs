//! The Lua state a script runs in: the libraries Redis 7.0 gives scripts (Lua's own here; `bit`,
//! `cjson`, `cmsgpack` and `struct` in their files), the `redis` table (all but `call` and
//! `pcall`, which need the keyspace), a deterministic `math.random`, read-only globals, an
//! instruction budget and a memory limit; and how a script is called and fails: under an
//! error handler like Redis's (`call_protected`), with `pcall` catching library errors as
//! their text, source code only (`load_text`), and `tostring` that never shows an address.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::OnceLock;

use bytes::Bytes;
use mlua::{Function, HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value, VmState};

use super::convert::Resp;

/// VM instructions between two checks of the budget.
const BUDGET_STEP: u32 = 10_000;
/// Checks a script may pass before it is stopped: 500 million instructions.
const BUDGET_STEPS: u32 = 50_000;
/// The error of a script that used up its budget.
const BUDGET_EXCEEDED: &str = "Script exceeded its instruction budget (500 million instructions)";
/// Most memory one script's Lua state may allocate.
const MEMORY_LIMIT_BYTES: usize = 64 * 1024 * 1024;

/// Where the code calling a library function is: its chunk's short name (`user_script`) and
/// line, if it is Lua code (not `pcall`). Level 0 is the library function (a C function to Lua,
/// so a call in tail position keeps the caller's frame), 1 the caller.
fn caller(lua: &Lua) -> Option<(String, i32)> {
    lua.inspect_stack(1, |debug| {
        let line = debug.current_line()?;
        let source = debug.source().short_src?.into_owned();
        Some((source, line as i32))
    })
    .flatten()
}

/// The error of a `redis` library call as Redis raises it (`luaError`): its text is the
/// script's reply when nothing catches it, prefix included (`ERR …`).
#[derive(Debug)]
pub struct ErrorReply(pub String);

impl std::fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ErrorReply {}

/// Fails a `redis` library call as Redis does: the script's reply is `text` (see
/// [`ErrorReply`]).
pub fn raise(text: impl Into<String>) -> mlua::Error {
    mlua::Error::external(ErrorReply(text.into()))
}

/// Fails a library call as Lua's `luaL_error` does: the message starts with the caller's
/// location when the caller is Lua code (`user_script:3: …`), not when it is `pcall`.
pub fn located(lua: &Lua, message: &str) -> mlua::Error {
    match caller(lua) {
        Some((source, line)) => mlua::Error::runtime(format!("{source}:{line}: {message}")),
        None => mlua::Error::runtime(message),
    }
}

/// How a script failed, as Redis's error handler records it: the reply's text (prefix
/// included) and where the error was raised.
pub struct Failure {
    /// `ERR …`, or the text of an error table the script raised.
    pub text: String,
    /// The chunk (`@user_script`, `@user_function`) and line, when known.
    pub place: Option<(String, i32)>,
}

/// Calls `function` under an error handler like Redis's: the failure's text (an error table's
/// `err`, Redis's text for a `redis` library error, `ERR ` and the message otherwise) and the
/// line of the code that raised it (the caller, when a C function raised it).
pub fn call_protected(
    lua: &Lua,
    function: &Function,
    args: MultiValue,
) -> mlua::Result<Result<Value, Failure>> {
    let runner: Function = lua.named_registry_value(RUNNER)?;
    let handler = lua.create_function(|lua, err: Value| {
        // The innermost frame of user code: C functions and redraft's own chunks (named
        // `=…`: global protection, the runner) are skipped, as Redis's C functions are.
        let mut place = None;
        for level in 1.. {
            let Some(frame) = lua.inspect_stack(level, |debug| {
                let source = debug.source().source.map(|s| s.into_owned());
                let line = debug.current_line().map_or(-1, |n| n as i32);
                (source, line)
            }) else {
                break;
            };
            if let (Some(source), line) = frame
                && source.starts_with('@')
            {
                place = Some((source, line));
                break;
            }
        }
        let text = match &err {
            Value::Table(table) => match table.raw_get::<Value>("err")? {
                Value::String(text) => text.to_string_lossy(),
                _ => "ERR Error running script".to_string(),
            },
            Value::Error(error) => match error_reply(error) {
                Some(text) => text,
                None => format!("ERR {}", super::innermost_message(error)),
            },
            Value::String(text) => format!("ERR {}", text.to_string_lossy()),
            other => format!("ERR {}", other.to_string().unwrap_or_default()),
        };
        let failure = lua.create_table()?;
        failure.raw_set("text", text)?;
        if let Some((source, line)) = place {
            failure.raw_set("source", source)?;
            failure.raw_set("line", line)?;
        }
        Ok(failure)
    })?;
    let mut call_args = MultiValue::from_vec(vec![
        Value::Function(handler),
        Value::Function(function.clone()),
    ]);
    call_args.extend(args);
    let mut results: MultiValue = runner.call(call_args)?;
    let succeeded = matches!(results.pop_front(), Some(Value::Boolean(true)));
    let first = results.pop_front().unwrap_or(Value::Nil);
    if succeeded {
        return Ok(Ok(first));
    }
    Ok(Err(match first {
        Value::Table(failure) => Failure {
            text: failure.raw_get("text")?,
            place: match (
                failure.raw_get::<Option<String>>("source")?,
                failure.raw_get::<Option<i32>>("line")?,
            ) {
                (Some(source), Some(line)) => Some((source, line)),
                _ => None,
            },
        },
        // The handler is not called for memory errors.
        other => Failure {
            text: format!("ERR {}", other.to_string().unwrap_or_default()),
            place: None,
        },
    }))
}

/// The text of a `redis` library error (see [`raise`]) inside `error`, if it is one.
fn error_reply(error: &mlua::Error) -> Option<String> {
    match error {
        mlua::Error::CallbackError { cause, .. } => error_reply(cause),
        mlua::Error::ExternalError(external) => external
            .downcast_ref::<ErrorReply>()
            .map(|reply| reply.0.clone()),
        _ => None,
    }
}

/// The registry name of the function [`call_protected`] runs code through.
const RUNNER: &str = "redraft.runner";

/// Lua's `bad argument #n to 'f' (…)`, located as `luaL_argerror` does; a function called
/// through `pcall` cannot be named, and is `'?'`.
pub fn bad_argument(lua: &Lua, position: usize, function: &str, detail: &str) -> mlua::Error {
    let name = if caller(lua).is_some() { function } else { "?" };
    located(
        lua,
        &format!("bad argument #{position} to '{name}' ({detail})"),
    )
}

/// A value's type as Lua's argument errors name it (`no value` for a missing one).
pub fn argument_type(value: &Value) -> &'static str {
    match value {
        Value::Nil => "no value",
        other => other.type_name(),
    }
}

/// Compiles code from a client as Lua source, never as bytecode: Lua 5.1 does not check
/// bytecode, so a crafted chunk could corrupt memory. Like Redis's loader, a chunk starting
/// with the bytecode mark (ESC) is a syntax error at its first character.
pub fn load_text(lua: &Lua, code: &[u8], chunk_name: &str) -> mlua::Result<Function> {
    if code.first() == Some(&0x1b) {
        let short = chunk_name.trim_start_matches(['@', '=']);
        return Err(mlua::Error::SyntaxError {
            message: format!("{short}:1: unexpected symbol near 'char(27)'"),
            incomplete_input: false,
        });
    }
    lua.load(code)
        .set_name(chunk_name)
        .set_mode(mlua::ChunkMode::Text)
        .into_function()
}

/// A chunk of redraft's own Lua, compiled once per process: every script's state loads its
/// bytecode instead of parsing the source again.
pub struct OwnChunk {
    /// Its chunk name (`=…`: the error handler skips these frames).
    name: &'static str,
    source: &'static str,
    bytecode: OnceLock<Vec<u8>>,
}

impl OwnChunk {
    /// A chunk named `name` (starting with `=`) of `source`.
    pub const fn new(name: &'static str, source: &'static str) -> OwnChunk {
        OwnChunk {
            name,
            source,
            bytecode: OnceLock::new(),
        }
    }
}

/// `chunk` loaded into `lua`, from its cached bytecode (never from a client: see `load_text`).
pub fn own_chunk(lua: &Lua, chunk: &OwnChunk) -> mlua::Result<Function> {
    let bytecode = chunk.bytecode.get_or_init(|| {
        Lua::new()
            .load(chunk.source)
            .set_name(chunk.name)
            .into_function()
            .expect("redraft's own Lua chunks compile")
            .dump(false)
    });
    lua.load(&bytecode[..])
        .set_name(chunk.name)
        .set_mode(mlua::ChunkMode::Binary)
        .into_function()
}

/// Returns a function that calls `f` with arguments under `handler` (see [`call_protected`]).
static RUNNER_CHUNK: OwnChunk = OwnChunk::new(
    "=runner",
    r#"
local xpcall, unpack, select = xpcall, unpack, select
return function(handler, f, ...)
    local n, args = select('#', ...), {...}
    return xpcall(function() return f(unpack(args, 1, n)) end, handler)
end
"#,
);

/// Replaces pcall and xpcall (see `new_state`); takes `exhausted`, `plain` and the budget's
/// error.
static PCALL_CHUNK: OwnChunk = OwnChunk::new(
    "=pcall",
    r#"
local base_pcall, base_xpcall, error = pcall, xpcall, error
local exhausted, plain, message = ...
local function check(ok, ...)
    if exhausted() then error(message, 0) end
    if ok then return ok, ... end
    return ok, plain((...))
end
pcall = function(...) return check(base_pcall(...)) end
xpcall = function(f, handler)
    return check(base_xpcall(f, function(err) return handler(plain(err)) end))
end
"#,
);

/// Replaces loadstring and load with ones that refuse bytecode.
static LOAD_CHUNK: OwnChunk = OwnChunk::new(
    "=load",
    r#"
local base_loadstring, concat, type, sub, find = loadstring, table.concat, type, string.sub, string.find
local function chunk_id(name)
    local first = sub(name, 1, 1)
    if first == '=' or first == '@' then return sub(name, 2) end
    -- Lua's chunk id: the first line, cut at 63 bytes (Redis's LUA_IDSIZE is 80),
    -- "..." when cut; a C string also ends at a NUL.
    local stop = find(name, '[%z\10\13]') or (#name + 1)
    local line = sub(name, 1, stop - 1)
    local more = stop <= #name and sub(name, stop, stop) ~= '\0'
    if #line > 63 then line, more = sub(line, 1, 63), true end
    return '[string "' .. line .. (more and '..."]' or '"]')
end
loadstring = function(source, name)
    if type(source) == 'string' and sub(source, 1, 1) == '\27' then
        return nil, chunk_id(name or source) .. ":1: unexpected symbol near 'char(27)'"
    end
    return base_loadstring(source, name)
end
load = function(reader, name)
    local parts = {}
    while true do
        local part = reader()
        if part == nil or part == '' then break end
        parts[#parts + 1] = part
    end
    return loadstring(concat(parts), name or '=(load)')
end
"#,
);

/// Replaces tostring with one that never shows an address.
static TOSTRING_CHUNK: OwnChunk = OwnChunk::new(
    "=tostring",
    r#"
local base_tostring, type, getmetatable, rawget, format = tostring, type, getmetatable, rawget, string.format
local ids, count = setmetatable({}, {__mode = 'k'}), 0
tostring = function(value)
    local kind = type(value)
    if kind == 'table' or kind == 'function' or kind == 'thread' then
        local meta = getmetatable(value)
        if not (type(meta) == 'table' and rawget(meta, '__tostring')) then
            local id = ids[value]
            if not id then
                count = count + 1
                id = count
                ids[value] = id
            end
            return format('%s: 0x%08x', kind, id)
        end
    end
    return base_tostring(value)
end
"#,
);

/// Makes globals read-only, with Redis's errors for reading a missing one or writing any.
static PROTECT_CHUNK: OwnChunk = OwnChunk::new(
    "=protect",
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
);

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
    let steps = Rc::new(Cell::new(0u32));
    let counted = steps.clone();
    lua.set_hook(
        HookTriggers::new().every_nth_instruction(BUDGET_STEP),
        move |_, _| {
            counted.set(counted.get().saturating_add(1));
            if counted.get() > BUDGET_STEPS {
                return Err(mlua::Error::runtime(BUDGET_EXCEEDED));
            }
            Ok(VmState::Continue)
        },
    )?;
    let runner: Function = own_chunk(&lua, &RUNNER_CHUNK)?.call(())?;
    lua.set_named_registry_value(RUNNER, runner)?;
    // pcall and xpcall as Redis 7.0 gives them to scripts: an error a library function raised
    // is caught as its text (a `redis` library error's reply text, not an error object); and a
    // script that catches the budget's error must not go on.
    let exhausted = lua.create_function(move |_, ()| Ok(steps.get() > BUDGET_STEPS))?;
    let plain = lua.create_function(|lua, err: Value| {
        Ok(match err {
            Value::Error(error) => {
                let text = error_reply(&error).unwrap_or_else(|| super::innermost_message(&error));
                Value::String(lua.create_string(text)?)
            }
            other => other,
        })
    })?;
    own_chunk(&lua, &PCALL_CHUNK)?.call::<()>((exhausted, plain, BUDGET_EXCEEDED))?;
    // loadstring and load compile source only, as Redis's do (see `load_text`).
    own_chunk(&lua, &LOAD_CHUNK)?.call::<()>(())?;
    // tostring of a table, function or coroutine names it by the order it was first printed,
    // not by its address: the address differs between nodes, and a script that stored it would
    // leave replicas different.
    own_chunk(&lua, &TOSTRING_CHUNK)?.call::<()>(())?;
    lua.set_app_data(Resp::Two);
    let globals = lua.globals();
    for unsafe_function in ["loadfile", "dofile", "print"] {
        globals.raw_set(unsafe_function, Value::Nil)?;
    }
    globals.raw_set("redis", redis_library(&lua)?)?;
    install_random(&lua)?;
    super::libs::install(&lua)?;
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
                    // Redis stores an error's text without the leading '-' a reply has.
                    Some(Value::String(text)) if words.len() == 1 && field == "err" => {
                        let text = text.as_bytes();
                        let text = text.strip_prefix(b"-").unwrap_or(&text);
                        table.raw_set(field, lua.create_string(text)?)?
                    }
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
                return Err(raise("ERR wrong number of arguments"));
            }
            // Strings and numbers (as Lua prints them) are hashed; anything else as "".
            let text = lua.coerce_string(words[0].clone())?;
            let bytes = text.map(|s| s.as_bytes().to_vec()).unwrap_or_default();
            Ok(super::sha1_hex(&bytes))
        })?,
    )?;
    redis.raw_set(
        "log",
        lua.create_function(|_, words: MultiValue| {
            if words.len() < 2 {
                return Err(raise("ERR redis.log() requires two arguments or more."));
            }
            if !matches!(words[0], Value::Integer(_) | Value::Number(_)) {
                return Err(raise("ERR First argument must be a number (log level)."));
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
                    return Err(raise("ERR redis.setresp() requires one argument."));
                }
                _ => return Err(raise("ERR RESP version must be 2 or 3.")),
            };
            lua.set_app_data(resp);
            Ok(())
        })?,
    )?;
    // Effects are what every replica applies already: these change nothing.
    redis.raw_set(
        "set_repl",
        lua.create_function(|_, flags: MultiValue| match flags.front() {
            Some(Value::Integer(0..=3)) if flags.len() == 1 => Ok(()),
            Some(Value::Number(n)) if flags.len() == 1 && (0.0..=3.0).contains(n) => Ok(()),
            _ if flags.len() != 1 => Err(raise("ERR redis.set_repl() requires two arguments.")),
            _ => Err(raise(
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
                    _ => Err(bad_argument(
                        lua,
                        position,
                        "random",
                        &format!("number expected, got {}", argument_type(value)),
                    )),
                }
            };
            match bounds.len() {
                0 => Ok(r),
                1 => {
                    let upper = number(1, &bounds[0])?.floor();
                    if upper < 1.0 {
                        return Err(bad_argument(lua, 1, "random", "interval is empty"));
                    }
                    Ok((r * upper).floor() + 1.0)
                }
                2 => {
                    let lower = number(1, &bounds[0])?.floor();
                    let upper = number(2, &bounds[1])?.floor();
                    if lower > upper {
                        return Err(bad_argument(lua, 2, "random", "interval is empty"));
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
                return Err(bad_argument(
                    lua,
                    1,
                    "randomseed",
                    &format!("number expected, got {}", argument_type(&seed)),
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
    own_chunk(lua, &PROTECT_CHUNK)?.call(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_number_packs_major_minor_patch() {
        assert_eq!(version_number(), 0x07_00_0f);
    }
}
