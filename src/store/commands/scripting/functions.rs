//! Redis 7.0 functions: `FUNCTION LOAD|DELETE|FLUSH|LIST|STATS|DUMP|RESTORE`, `FCALL` and
//! `FCALL_RO`.
//!
//! Libraries are replicated state: [`Catalog::Libraries`] holds each library's code by name and
//! [`Catalog::Functions`] which library registers each function, both changed only through the
//! log (LOAD, DELETE and FLUSH are write commands) and carried in snapshots. A library's code
//! runs when it is loaded, to check it and learn its functions, and again in a fresh Lua state
//! at each `FCALL`, which then calls the function's callback with the keys and arguments:
//! nothing compiled is kept between commands, so every replica computes the same.
//!
//! While a library loads, its code sees only `redis.register_function`, `redis.log` and the
//! `redis` constants, as in Redis; its callbacks see everything a script sees, except `KEYS`
//! and `ARGV`, which they get as arguments.

use bytes::Bytes;
use mlua::{Function, IntoLuaMulti, Lua, Table};

use super::state::OwnChunk;
use super::{Origin, compile_error_reply, flush_mode_ok, one_line, run_in, split_keys};
use super::{function_dump, state};
use crate::redis::glob::glob_match;
use crate::resp::Reply;
use crate::store::keyspace::{Catalog, Keyspace, StoreResult};

/// The flags a function may declare, in the order Redis lists them.
const FLAGS: [&str; 5] = [
    "no-writes",
    "allow-oom",
    "allow-stale",
    "no-cluster",
    "allow-cross-slot-keys",
];

/// Sets up a library's load: moves every global out of reach but a `redis` table with
/// `register_function`, `log` and the constants, and returns the list registrations fill and a
/// function that makes the full globals visible again (for the callbacks). Globals stay
/// read-only throughout, and a missing one is an error, as in Redis.
static LOAD_PRELUDE: OwnChunk = OwnChunk::new(
    "=library",
    r#"
local pairs, rawset, setmetatable, error, tostring, type, select, G =
    pairs, rawset, setmetatable, error, tostring, type, select, _G
local real = {}
for name, value in pairs(G) do real[name] = value end
for name in pairs(real) do rawset(G, name, nil) end
local flags_known = {}
for _, flag in pairs(...) do flags_known[flag] = true end
local registered = {}
local function fail(text) error(text, 0) end
local function register(...)
    local argc = select('#', ...)
    local name, callback, flags, description
    if argc == 1 then
        local args = ...
        if type(args) ~= 'table' then
            fail('ERR calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments).')
        end
        for key, value in pairs(args) do
            if key == 'function_name' then
                if type(value) ~= 'string' and type(value) ~= 'number' then
                    fail('ERR function_name argument given to redis.register_function must be a string')
                end
                name = tostring(value)
            elseif key == 'description' then
                if type(value) ~= 'string' and type(value) ~= 'number' then
                    fail('ERR description argument given to redis.register_function must be a string')
                end
                description = tostring(value)
            elseif key == 'callback' then
                if type(value) ~= 'function' then
                    fail('ERR callback argument given to redis.register_function must be a function')
                end
                callback = value
            elseif key == 'flags' then
                if type(value) ~= 'table' then
                    fail('ERR flags argument to redis.register_function must be a table representing function flags')
                end
                flags = {}
                for _, flag in pairs(value) do
                    if type(flag) ~= 'string' or not flags_known[flag] then
                        fail('ERR unknown flag given')
                    end
                    flags[flag] = true
                end
            else
                fail('ERR unknown argument given to redis.register_function')
            end
        end
        if name == nil then fail('ERR redis.register_function must get a function name argument') end
        if callback == nil then fail('ERR redis.register_function must get a callback argument') end
    elseif argc == 2 then
        name, callback = ...
        if type(callback) ~= 'function' then
            fail('ERR second argument to redis.register_function must be a function')
        end
        if type(name) ~= 'string' and type(name) ~= 'number' then
            fail('ERR first argument to redis.register_function must be a string')
        end
        name = tostring(name)
    else
        fail('ERR wrong number of arguments to redis.register_function')
    end
    if not name:match('^[%w_]+$') then
        fail('ERR Library names can only contain letters, numbers, or underscores(_) and must be at least one character long')
    end
    for _, known in pairs(registered) do
        if known.name == name then fail('ERR Function already exists in the library') end
    end
    registered[#registered + 1] = {
        name = name, callback = callback, flags = flags or {}, description = description,
    }
end
local loading = {
    register_function = register,
    log = real.redis.log,
    REDIS_VERSION = real.redis.REDIS_VERSION,
    REDIS_VERSION_NUM = real.redis.REDIS_VERSION_NUM,
}
for _, name in pairs({'LOG_DEBUG', 'LOG_VERBOSE', 'LOG_NOTICE', 'LOG_WARNING'}) do
    loading[name] = real.redis[name]
end
setmetatable(loading, {
    __index = function(_, name)
        error("Script attempted to access nonexistent global variable '" .. tostring(name) .. "'", 2)
    end,
    __newindex = function() error('Attempt to modify a readonly table', 2) end,
})
local visible = {redis = loading}
setmetatable(G, {
    __index = function(_, name)
        local value = visible[name]
        if value == nil then
            error("Script attempted to access nonexistent global variable '" .. tostring(name) .. "'", 2)
        end
        return value
    end,
    __newindex = function() error('Attempt to modify a readonly table', 2) end,
})
return registered, function()
    visible = real
    for name, value in pairs(real) do rawset(G, name, value) end
end
"#,
);

/// A library's first line: `#!lua name=<name>`.
struct Header {
    name: String,
    /// Bytes of the line, without its newline (the code Lua sees starts there).
    len: usize,
}

impl Header {
    /// Parses the metadata line, with Redis's errors.
    fn parse(code: &[u8]) -> Result<Header, Reply> {
        if !code.starts_with(b"#!") {
            return Err(Reply::error("ERR Missing library metadata"));
        }
        let Some(len) = code.iter().position(|&b| b == b'\n') else {
            return Err(Reply::error("ERR Invalid library metadata"));
        };
        let line = String::from_utf8_lossy(&code[2..len]);
        let mut words = line.split_ascii_whitespace();
        let Some(engine) = words.next() else {
            return Err(Reply::error("ERR Invalid library metadata"));
        };
        let mut name = None;
        for word in words {
            let Some(value) = word.strip_prefix("name=") else {
                return Err(Reply::error(format!(
                    "ERR Invalid metadata value given: {word}"
                )));
            };
            if name.replace(value.to_string()).is_some() {
                return Err(Reply::error(
                    "ERR Invalid metadata value, name argument was given multiple times",
                ));
            }
        }
        let Some(name) = name else {
            return Err(Reply::error("ERR Library name was not given"));
        };
        if !engine.eq_ignore_ascii_case("lua") {
            return Err(Reply::error(format!("ERR Engine '{engine}' not found")));
        }
        if !valid_name(&name) {
            return Err(Reply::error(
                "ERR Library names can only contain letters, numbers, or underscores(_) and must be at least one character long",
            ));
        }
        Ok(Header { name, len })
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// One function a library registered.
struct Registered {
    name: String,
    callback: Function,
    /// Its flags, in [`FLAGS`] order.
    flags: Vec<&'static str>,
    description: Option<String>,
}

/// A library run in a fresh state: the state (its callbacks now see the full globals) and its
/// functions, in registration order.
struct Loaded {
    lua: Lua,
    functions: Vec<Registered>,
}

/// Runs a library's code (after its metadata line) to learn its functions; Redis's error reply
/// when it does not compile, fails, or registers nothing.
fn load(code: &[u8]) -> Result<Loaded, Reply> {
    let lua =
        state::new_state().map_err(|err| Reply::error(format!("ERR cannot start Lua: {err}")))?;
    let chunk = state::load_text(&lua, code, Origin::Function.chunk_name())
        .map_err(|err| compile_error_reply(&err, Origin::Function))?;
    let registering = |err: mlua::Error| {
        let message = super::innermost_message(&err);
        let message = if message.starts_with("ERR ") {
            message
        } else {
            format!("ERR {message}")
        };
        Reply::error(format!(
            "ERR Error registering functions: {}",
            one_line(&message)
        ))
    };
    let (registered, reveal): (Table, Function) = state::own_chunk(&lua, &LOAD_PRELUDE)
        .and_then(|prelude| prelude.call(FLAGS))
        .map_err(registering)?;
    chunk.call::<()>(()).map_err(registering)?;
    reveal.call::<()>(()).map_err(registering)?;
    let mut functions = Vec::new();
    for entry in registered.sequence_values::<Table>() {
        let entry = entry.map_err(registering)?;
        let flags: Table = entry.get("flags").map_err(registering)?;
        functions.push(Registered {
            name: entry.get("name").map_err(registering)?,
            callback: entry.get("callback").map_err(registering)?,
            flags: FLAGS
                .into_iter()
                .filter(|flag| flags.contains_key(*flag).unwrap_or(false))
                .collect(),
            description: entry.get("description").map_err(registering)?,
        });
    }
    if functions.is_empty() {
        return Err(Reply::error("ERR No functions registered"));
    }
    Ok(Loaded { lua, functions })
}

/// A stored library, loaded.
fn load_stored(code: &[u8]) -> Result<Loaded, Reply> {
    let header = Header::parse(code)?;
    load(&code[header.len..])
}

/// `FUNCTION LOAD [REPLACE] code`: the library's name.
pub fn function_load(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let (replace, code) = match &args[2..] {
        [code] => (false, code),
        [option, code] if option.eq_ignore_ascii_case(b"replace") => (true, code),
        [option, ..] => {
            return Ok(Reply::error(format!(
                "ERR Unknown option given: {}",
                String::from_utf8_lossy(option)
            )));
        }
        [] => unreachable!("arity checked"),
    };
    let header = match Header::parse(code) {
        Ok(header) => header,
        Err(reply) => return Ok(reply),
    };
    let name = header.name.as_bytes();
    let existed = ks.catalog_get(Catalog::Libraries, name)?.is_some();
    if existed && !replace {
        return Ok(Reply::error(format!(
            "ERR Library '{}' already exists",
            header.name
        )));
    }
    let loaded = match load(&code[header.len..]) {
        Ok(loaded) => loaded,
        Err(reply) => return Ok(reply),
    };
    for function in &loaded.functions {
        if let Some(owner) = ks.catalog_get(Catalog::Functions, function.name.as_bytes())?
            && owner.as_ref() != name
        {
            return Ok(Reply::error(format!(
                "ERR Function {} already exists",
                function.name
            )));
        }
    }
    let functions = loaded.functions.iter().map(|f| f.name.as_str());
    store_library(ks, name, code, functions, existed)?;
    Ok(Reply::Bulk(Bytes::from(header.name)))
}

/// Stores a checked library and points its functions at it; `replacing` drops first the
/// functions an earlier version of it registered.
fn store_library<'a>(
    ks: &mut dyn Keyspace,
    name: &[u8],
    code: &[u8],
    functions: impl Iterator<Item = &'a str>,
    replacing: bool,
) -> StoreResult<()> {
    if replacing {
        remove_functions_of(ks, name)?;
    }
    ks.catalog_put(Catalog::Libraries, name, code)?;
    for function in functions {
        ks.catalog_put(Catalog::Functions, function.as_bytes(), name)?;
    }
    Ok(())
}

/// Removes the function entries that point at library `name`.
fn remove_functions_of(ks: &mut dyn Keyspace, name: &[u8]) -> StoreResult<()> {
    for (function, owner) in ks.catalog_entries(Catalog::Functions)? {
        if owner.as_ref() == name {
            ks.catalog_remove(Catalog::Functions, &function)?;
        }
    }
    Ok(())
}

/// `FUNCTION DELETE library`.
pub fn function_delete(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    if !ks.catalog_remove(Catalog::Libraries, &args[2])? {
        return Ok(Reply::error("ERR Library not found"));
    }
    remove_functions_of(ks, &args[2])?;
    Ok(Reply::ok())
}

/// `FUNCTION FLUSH [ASYNC|SYNC]`.
pub fn function_flush(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    if !flush_mode_ok(args) {
        return Ok(Reply::error(
            "ERR FUNCTION FLUSH only supports SYNC|ASYNC option",
        ));
    }
    ks.catalog_clear(Catalog::Libraries)?;
    ks.catalog_clear(Catalog::Functions)?;
    Ok(Reply::ok())
}

/// `FUNCTION LIST [WITHCODE] [LIBRARYNAME pattern]`: libraries in name order.
pub fn function_list(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let mut with_code = false;
    let mut pattern: Option<&Bytes> = None;
    let mut rest = args[2..].iter();
    while let Some(option) = rest.next() {
        if option.eq_ignore_ascii_case(b"withcode") && !with_code {
            with_code = true;
        } else if option.eq_ignore_ascii_case(b"libraryname") && pattern.is_none() {
            let Some(given) = rest.next() else {
                return Ok(Reply::error("ERR library name argument was not given"));
            };
            pattern = Some(given);
        } else {
            return Ok(Reply::error(format!(
                "ERR Unknown argument {}",
                String::from_utf8_lossy(option)
            )));
        }
    }
    let mut libraries = Vec::new();
    for (name, code) in ks.catalog_entries(Catalog::Libraries)? {
        if pattern.is_some_and(|pattern| !glob_match(pattern, &name, false)) {
            continue;
        }
        let functions = match load_stored(&code) {
            Ok(loaded) => loaded.functions,
            Err(reply) => return Ok(reply),
        };
        let functions = functions
            .iter()
            .map(|function| {
                Reply::Map(vec![
                    (Reply::bulk_str("name"), Reply::bulk_str(&function.name)),
                    (
                        Reply::bulk_str("description"),
                        function
                            .description
                            .as_deref()
                            .map_or(Reply::Nil, Reply::bulk_str),
                    ),
                    (
                        Reply::bulk_str("flags"),
                        Reply::Set(function.flags.iter().map(|f| Reply::simple(f)).collect()),
                    ),
                ])
            })
            .collect();
        let mut library = vec![
            (Reply::bulk_str("library_name"), Reply::Bulk(name)),
            (Reply::bulk_str("engine"), Reply::bulk_str("LUA")),
            (Reply::bulk_str("functions"), Reply::Array(functions)),
        ];
        if with_code {
            library.push((Reply::bulk_str("library_code"), Reply::Bulk(code)));
        }
        libraries.push(Reply::Map(library));
    }
    Ok(Reply::Array(libraries))
}

/// `FUNCTION DUMP`: every library's code in Redis's payload format.
pub fn function_dump(ks: &mut dyn Keyspace, _args: &[Bytes]) -> StoreResult<Reply> {
    let libraries = ks.catalog_entries(Catalog::Libraries)?;
    Ok(Reply::Bulk(Bytes::from(function_dump::dump(
        libraries.iter().map(|(_, code)| code.as_ref()),
    ))))
}

/// `FUNCTION RESTORE payload [FLUSH|APPEND|REPLACE]`: all the payload's libraries or none.
pub fn function_restore(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let policy = match args.get(3) {
        _ if args.len() > 4 => {
            return Ok(Reply::error(
                "ERR unknown subcommand or wrong number of arguments for 'RESTORE'. Try FUNCTION HELP.",
            ));
        }
        None => b"append".as_slice(),
        Some(policy) => policy.as_ref(),
    };
    let policy = policy.to_ascii_lowercase();
    if !matches!(policy.as_slice(), b"flush" | b"append" | b"replace") {
        return Ok(Reply::error(
            "ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.",
        ));
    }
    let codes = match function_dump::restore(&args[2]) {
        Ok(codes) => codes,
        Err(function_dump::BadPayload::NotAFunction) => {
            return Ok(Reply::error("ERR given type is not a function"));
        }
        Err(_) => {
            return Ok(Reply::error(
                "ERR DUMP payload version or checksum are wrong",
            ));
        }
    };
    // Every library checked before anything changes.
    let mut restored: Vec<(String, Vec<String>, Vec<u8>)> = Vec::new();
    for code in codes {
        let header = match Header::parse(&code) {
            Ok(header) => header,
            Err(reply) => return Ok(reply),
        };
        let functions = match load(&code[header.len..]) {
            Ok(loaded) => loaded.functions.into_iter().map(|f| f.name).collect(),
            Err(reply) => return Ok(reply),
        };
        restored.push((header.name, functions, code));
    }
    let flush = policy == b"flush";
    let replace = policy == b"replace";
    let mut owners: std::collections::HashMap<Vec<u8>, Vec<u8>> = if flush {
        Default::default()
    } else {
        ks.catalog_entries(Catalog::Functions)?
            .into_iter()
            .map(|(function, library)| (function.to_vec(), library.to_vec()))
            .collect()
    };
    let restored_names: Vec<&[u8]> = restored.iter().map(|(name, ..)| name.as_bytes()).collect();
    if replace {
        owners.retain(|_, library| !restored_names.contains(&library.as_slice()));
    }
    for (name, functions, _) in &restored {
        if !flush
            && !replace
            && ks
                .catalog_get(Catalog::Libraries, name.as_bytes())?
                .is_some()
        {
            return Ok(Reply::error(format!("ERR Library {name} already exists")));
        }
        for function in functions {
            if owners
                .insert(function.as_bytes().to_vec(), name.as_bytes().to_vec())
                .is_some()
            {
                return Ok(Reply::error(format!(
                    "ERR Function {function} already exists"
                )));
            }
        }
    }
    if flush {
        ks.catalog_clear(Catalog::Libraries)?;
        ks.catalog_clear(Catalog::Functions)?;
    }
    for (name, functions, code) in &restored {
        store_library(
            ks,
            name.as_bytes(),
            code,
            functions.iter().map(String::as_str),
            replace,
        )?;
    }
    Ok(Reply::ok())
}

/// `FUNCTION STATS`: no script is ever running between commands here.
pub fn function_stats(ks: &mut dyn Keyspace, _args: &[Bytes]) -> StoreResult<Reply> {
    let libraries = ks.catalog_entries(Catalog::Libraries)?.len();
    let functions = ks.catalog_entries(Catalog::Functions)?.len();
    Ok(Reply::Map(vec![
        (Reply::bulk_str("running_script"), Reply::Nil),
        (
            Reply::bulk_str("engines"),
            Reply::Map(vec![(
                Reply::bulk_str("LUA"),
                Reply::Map(vec![
                    (
                        Reply::bulk_str("libraries_count"),
                        Reply::Integer(libraries as i64),
                    ),
                    (
                        Reply::bulk_str("functions_count"),
                        Reply::Integer(functions as i64),
                    ),
                ]),
            )]),
        ),
    ]))
}

/// `FCALL function numkeys [key …] [arg …]` (and `FCALL_RO`).
pub fn fcall(ks: &mut dyn Keyspace, args: &[Bytes], ro_command: bool) -> StoreResult<Reply> {
    // The function first, then its keys, as Redis checks.
    let not_found = || Ok(Reply::error("ERR Function not found"));
    let Some(library) = ks.catalog_get(Catalog::Functions, &args[1])? else {
        return not_found();
    };
    let Some(code) = ks.catalog_get(Catalog::Libraries, &library)? else {
        return not_found();
    };
    let (keys, argv) = match split_keys(args, || Reply::error("ERR Bad number of keys provided")) {
        Ok(split) => split,
        Err(reply) => return Ok(reply),
    };
    let loaded = match load_stored(&code) {
        Ok(loaded) => loaded,
        Err(reply) => return Ok(reply),
    };
    let name = String::from_utf8_lossy(&args[1]).into_owned();
    let Some(function) = loaded.functions.iter().find(|f| f.name == name) else {
        return not_found();
    };
    let no_writes = function.flags.contains(&"no-writes");
    if ro_command && !no_writes {
        return Ok(Reply::error(
            "ERR Can not execute a script with write flag using *_ro command.",
        ));
    }
    let callback = function.callback.clone();
    run_in(
        &loaded.lua,
        ks,
        ro_command || no_writes,
        Origin::Function,
        &name,
        |lua| {
            let list = |values: &[Bytes]| -> mlua::Result<Table> {
                let table = lua.create_table_with_capacity(values.len(), 0)?;
                for (i, value) in values.iter().enumerate() {
                    table.raw_set(i + 1, lua.create_string(value)?)?;
                }
                Ok(table)
            };
            Ok((callback, (list(keys)?, list(argv)?).into_lua_multi(lua)?))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::commands::scripting::tests::run;
    use crate::store::keyspace::testing::TestStore;

    #[test]
    fn library_metadata_errors_are_redis_texts() {
        for (code, error) in [
            ("return 1", "ERR Missing library metadata"),
            ("#!lua name=x", "ERR Invalid library metadata"),
            ("#!lua\nreturn 1", "ERR Library name was not given"),
            ("#!lua foo=1\n", "ERR Invalid metadata value given: foo=1"),
            ("#!js name=x\n", "ERR Engine 'js' not found"),
        ] {
            assert_eq!(
                Header::parse(code.as_bytes()).err(),
                Some(Reply::error(error)),
                "{code}"
            );
        }
        assert_eq!(
            Header::parse(b"#!LUA name=ok_1\nx")
                .map(|h| (h.name, h.len))
                .ok(),
            Some(("ok_1".to_string(), 15))
        );
    }

    #[test]
    fn callbacks_see_the_full_globals_and_helpers_defined_at_load() {
        let db = TestStore::new();
        let library = "#!lua name=lib\n\
            local function helper(key) return redis.call('INCRBY', key, math.floor(2.5)) end\n\
            redis.register_function('bump', function(keys, args) return {helper(keys[1]), #args} end)\n\
            redis.register_function('globals', function() return KEYS end)";
        assert_eq!(
            run(&db, &["FUNCTION", "LOAD", library]),
            Reply::bulk_str("lib")
        );
        assert_eq!(
            run(&db, &["FCALL", "bump", "1", "n", "a", "b"]),
            Reply::Array(vec![Reply::Integer(2), Reply::Integer(2)])
        );
        assert_eq!(
            run(&db, &["FCALL", "globals", "0"]),
            Reply::error(
                "ERR user_function:4: Script attempted to access nonexistent global variable \
                 'KEYS' script: globals, on @user_function:4."
            )
        );
        assert_eq!(
            run(&db, &["FCALL_RO", "bump", "1", "n"]),
            Reply::error("ERR Can not execute a script with write flag using *_ro command.")
        );
        // FLUSHALL leaves libraries; FUNCTION DELETE removes one with its functions.
        run(&db, &["FLUSHALL"]);
        assert_eq!(
            run(&db, &["FCALL", "bump", "1", "n"]),
            Reply::Array(vec![Reply::Integer(2), Reply::Integer(0)])
        );
        assert_eq!(run(&db, &["FUNCTION", "DELETE", "lib"]), Reply::ok());
        assert_eq!(
            run(&db, &["FCALL", "bump", "1", "n"]),
            Reply::error("ERR Function not found")
        );
    }

    #[test]
    fn load_time_code_sees_only_register_function_log_and_constants() {
        let db = TestStore::new();
        assert_eq!(
            run(
                &db,
                &["FUNCTION", "LOAD", "#!lua name=a\nlocal x = math.random()"]
            ),
            Reply::error(
                "ERR Error registering functions: ERR user_function:2: Script attempted to \
                 access nonexistent global variable 'math'"
            )
        );
        assert_eq!(
            run(
                &db,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=b\nredis.log(redis.LOG_NOTICE, redis.REDIS_VERSION)"
                ]
            ),
            Reply::error("ERR No functions registered")
        );
    }
}
