//! Lua scripting in Redis 7.0's Lua 5.1 dialect: `EVAL`, `EVALSHA` and their `_RO` forms,
//! `SCRIPT LOAD|EXISTS|FLUSH`, `#!lua` shebang flags, the `redis` library scripts call, and
//! (in `functions`) `FUNCTION` libraries and `FCALL`.
//!
//! A script is a keyspace command like any other: `EVAL` and `EVALSHA` go through the log and
//! run in apply on every node, against the same keyspace view and at the same log time as the
//! commands around them, so a script is atomic and every replica computes the same effects and
//! reply. `EVAL_RO`, `EVALSHA_RO` and `EVAL` of a script declaring `no-writes` run as
//! linearizable reads and may not call a write command.
//!
//! The script cache is replicated state (the `scripts` table, in snapshots): `SCRIPT LOAD` and
//! `SCRIPT FLUSH` go through the log, and `EVAL` caches its script as it applies, so `EVALSHA`
//! finds a script on every node and after failover. A script run as a read is not cached.
//!
//! Determinism: each script gets a fresh Lua state (`state`) whose only clock is the log
//! entry's time (`redis.call('TIME')`) and whose `math.random` starts from the same seed on
//! every run; a runaway script is stopped by an instruction budget, never by wall time.
//!
//! Not yet: server commands other than `TIME`, `PING`, `ECHO` and `SELECT` from scripts.

mod cjson;
mod cmsgpack;
mod convert;
pub(crate) mod function_dump;
mod functions;
mod libs;
mod state;
mod struct_lib;

use std::cell::RefCell;

use bytes::Bytes;
use mlua::{Function, Lua, MultiValue, Table};

use super::ReplySize::{Data, Small};
use super::{KeyspaceCommand, command, int_arg};
use crate::redis::table;
use crate::resp::Reply;
use crate::store::keyspace::{Catalog, Keyspace, StoreError, StoreResult};
use convert::{Resp, call_args, lua_to_reply, reply_to_lua};
use state::Failure;

/// The scripting commands (see [`KeyspaceCommand`]). What a script does is known only when it
/// runs, so the table's flags do not say which calls write: `EVAL` is logged unless its script
/// declares `no-writes`; `EVALSHA`, `FCALL` and the script cache's changes always; the
/// function libraries' changes by the table's flags (they are write commands).
pub const COMMANDS: &[KeyspaceCommand] = &[
    command("eval", |ks, args| eval(ks, args, false), Data).logged_unless(declares_no_writes),
    command("eval_ro", |ks, args| eval(ks, args, true), Data),
    command("evalsha", |ks, args| evalsha(ks, args, false), Data).logged(),
    command("evalsha_ro", |ks, args| evalsha(ks, args, true), Data),
    command("script|load", script_load, Small).logged(),
    command("script|exists", script_exists, Small),
    command("script|flush", script_flush, Small).logged(),
    command("fcall", |ks, args| functions::fcall(ks, args, false), Data).logged(),
    command(
        "fcall_ro",
        |ks, args| functions::fcall(ks, args, true),
        Data,
    ),
    command("function|load", functions::function_load, Small),
    command("function|delete", functions::function_delete, Small),
    command("function|flush", functions::function_flush, Small),
    command("function|list", functions::function_list, Data),
    command("function|stats", functions::function_stats, Small),
    command("function|dump", functions::function_dump, Data),
    command("function|restore", functions::function_restore, Small),
];

/// `-NOSCRIPT …`: EVALSHA of a script the cache does not hold.
const NO_SCRIPT: &str = "NOSCRIPT No matching script. Please use EVAL.";

/// `EVAL script numkeys [key …] [arg …]` (and `EVAL_RO`).
fn eval(ks: &mut dyn Keyspace, args: &[Bytes], ro_command: bool) -> StoreResult<Reply> {
    let (keys, argv) = match split_keys(args, super::not_an_integer) {
        Ok(split) => split,
        Err(reply) => return Ok(reply),
    };
    match Script::new(&args[1], sha1_hex(&args[1]), ro_command, true) {
        Ok(script) => script.run(ks, keys, argv),
        Err(reply) => Ok(reply),
    }
}

/// `EVALSHA sha1 numkeys [key …] [arg …]` (and `EVALSHA_RO`).
fn evalsha(ks: &mut dyn Keyspace, args: &[Bytes], ro_command: bool) -> StoreResult<Reply> {
    if args[1].len() != 40 {
        return Ok(Reply::error(NO_SCRIPT));
    }
    let (keys, argv) = match split_keys(args, super::not_an_integer) {
        Ok(split) => split,
        Err(reply) => return Ok(reply),
    };
    let sha = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
    let Some(body) = ks.catalog_get(Catalog::Scripts, sha.as_bytes())? else {
        return Ok(Reply::error(NO_SCRIPT));
    };
    match Script::new(&body, sha, ro_command, false) {
        Ok(script) => script.run(ks, keys, argv),
        Err(reply) => Ok(reply),
    }
}

/// `SCRIPT LOAD script`: compiles the script and caches it; answers its SHA-1.
fn script_load(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let body = &args[2];
    let sha = sha1_hex(body);
    let compiled =
        Script::new(body, sha.clone(), false, false).and_then(|script| script.compile().map(drop));
    if let Err(reply) = compiled {
        return Ok(reply);
    }
    cache_script(ks, &sha, body)?;
    Ok(Reply::Bulk(Bytes::from(sha)))
}

/// Adds a script to the cache unless it is there.
fn cache_script(ks: &mut dyn Keyspace, sha: &str, body: &[u8]) -> StoreResult<()> {
    if ks.catalog_get(Catalog::Scripts, sha.as_bytes())?.is_none() {
        ks.catalog_put(Catalog::Scripts, sha.as_bytes(), body)?;
    }
    Ok(())
}

/// `SCRIPT EXISTS sha1 [sha1 …]`: 1 or 0 for each.
fn script_exists(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let mut found = Vec::with_capacity(args.len() - 2);
    for sha in &args[2..] {
        let sha = sha.to_ascii_lowercase();
        found.push(Reply::Integer(i64::from(
            ks.catalog_get(Catalog::Scripts, &sha)?.is_some(),
        )));
    }
    Ok(Reply::Array(found))
}

/// `SCRIPT FLUSH [ASYNC|SYNC]`: empties the cache.
fn script_flush(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    if !flush_mode_ok(args) {
        return Ok(Reply::error(
            "ERR SCRIPT FLUSH only support SYNC|ASYNC option",
        ));
    }
    ks.catalog_clear(Catalog::Scripts)?;
    Ok(Reply::ok())
}

/// Whether a `SCRIPT FLUSH` or `FUNCTION FLUSH` has nothing after the subcommand but an
/// optional `ASYNC` or `SYNC`.
fn flush_mode_ok(args: &[Bytes]) -> bool {
    match &args[2..] {
        [] => true,
        [mode] => mode.eq_ignore_ascii_case(b"async") || mode.eq_ignore_ascii_case(b"sync"),
        _ => false,
    }
}

/// `numkeys` (`args[2]`) checked, and the keys and arguments after it; `not_a_number` is the
/// reply when `numkeys` is not an integer (`EVAL` and `FCALL` word it differently).
fn split_keys(args: &[Bytes], not_a_number: fn() -> Reply) -> Result<(&[Bytes], &[Bytes]), Reply> {
    let numkeys = int_arg(&args[2]).map_err(|_| not_a_number())?;
    if numkeys > (args.len() - 3) as i64 {
        return Err(Reply::error(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    if numkeys < 0 {
        return Err(Reply::error("ERR Number of keys can't be negative"));
    }
    Ok(args[3..].split_at(numkeys as usize))
}

/// Whether an `EVAL` call's script declares `no-writes` (it then runs as a read).
fn declares_no_writes(args: &[Bytes]) -> bool {
    args.get(1)
        .and_then(|body| Shebang::parse(body).ok())
        .is_some_and(|shebang| shebang.no_writes)
}

/// The lowercase hex SHA-1 of a script body, as Redis names scripts.
fn sha1_hex(body: &[u8]) -> String {
    sha1_smol::Sha1::from(body).digest().to_string()
}

/// What a script's first line says when it is a `#!lua` shebang.
#[derive(Default)]
struct Shebang {
    /// Bytes of the shebang line (without its newline, so line numbers stay): Lua does not
    /// see them.
    len: usize,
    /// Whether there is one (a script without is in Redis's compatibility mode).
    present: bool,
    /// `flags=no-writes`.
    no_writes: bool,
}

impl Shebang {
    /// Parses the shebang line, with Redis's errors.
    fn parse(body: &[u8]) -> Result<Shebang, Reply> {
        if !body.starts_with(b"#!") {
            return Ok(Shebang::default());
        }
        let Some(len) = body.iter().position(|&b| b == b'\n') else {
            return Err(Reply::error("ERR Invalid script shebang"));
        };
        let line = String::from_utf8_lossy(&body[..len]);
        let mut words = line.split_ascii_whitespace();
        let engine = words.next().unwrap_or_default();
        if engine != "#!lua" {
            return Err(Reply::error(format!(
                "ERR Unexpected engine in script shebang: {engine}"
            )));
        }
        let mut shebang = Shebang {
            len,
            present: true,
            no_writes: false,
        };
        for word in words {
            let Some(flags) = word.strip_prefix("flags=") else {
                return Err(Reply::error(format!(
                    "ERR Unknown lua shebang option: {word}"
                )));
            };
            for flag in flags.split(',').filter(|flag| !flag.is_empty()) {
                match flag {
                    "no-writes" => shebang.no_writes = true,
                    "allow-oom" | "allow-stale" | "no-cluster" | "allow-cross-slot-keys" => {}
                    other => {
                        return Err(Reply::error(format!(
                            "ERR Unexpected flag in script shebang: {other}"
                        )));
                    }
                }
            }
        }
        Ok(shebang)
    }
}

/// One script run.
struct Script<'a> {
    body: &'a [u8],
    sha: String,
    shebang: Shebang,
    /// No write command may be called.
    read_only: bool,
    /// Cache the body once it compiles (`EVAL` in apply).
    cache: bool,
}

impl<'a> Script<'a> {
    /// A script ready to compile, or Redis's error for its shebang or for running a script
    /// that may write through an `_RO` command.
    fn new(body: &'a [u8], sha: String, ro_command: bool, eval: bool) -> Result<Self, Reply> {
        let shebang = Shebang::parse(body)?;
        if ro_command && shebang.present && !shebang.no_writes {
            return Err(Reply::error(
                "ERR Can not execute a script with write flag using *_ro command.",
            ));
        }
        Ok(Script {
            body,
            sha,
            read_only: ro_command || shebang.no_writes,
            cache: eval && !ro_command && !shebang.no_writes,
            shebang,
        })
    }

    /// A fresh state with the script compiled in it, or the compile error's reply.
    fn compile(&self) -> Result<(Lua, Function), Reply> {
        let lua = state::new_state()
            .map_err(|err| Reply::error(format!("ERR cannot start Lua: {err}")))?;
        let code = &self.body[self.shebang.len..];
        let function = state::load_text(&lua, code, Origin::Eval.chunk_name())
            .map_err(|err| self.error_reply(&err))?;
        Ok((lua, function))
    }

    fn run(&self, ks: &mut dyn Keyspace, keys: &[Bytes], argv: &[Bytes]) -> StoreResult<Reply> {
        let (lua, function) = match self.compile() {
            Ok(compiled) => compiled,
            Err(reply) => return Ok(reply),
        };
        if self.cache {
            cache_script(ks, &self.sha, self.body)?;
        }
        run_in(&lua, ks, self.read_only, Origin::Eval, &self.sha, |lua| {
            state::set_arguments(lua, keys, argv)?;
            state::protect_globals(lua)?;
            Ok((function, MultiValue::new()))
        })
    }

    fn error_reply(&self, err: &mlua::Error) -> Reply {
        compile_error_reply(err, Origin::Eval)
    }
}

/// Which kind of code runs: it decides the chunk name and the error texts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A script (`EVAL`, `EVALSHA`): errors name its SHA-1 and `@user_script`.
    Eval,
    /// A library function (`FCALL`): errors name the function and `@user_function`.
    Function,
}

impl Origin {
    /// The chunk name Redis gives the code (Lua errors then read `user_script:1: …`).
    fn chunk_name(self) -> &'static str {
        match self {
            Origin::Eval => "@user_script",
            Origin::Function => "@user_function",
        }
    }
}

/// Runs the function `prepare` gives, with its arguments, in `lua` with `redis.call` and
/// `redis.pcall` bound to `ks`, and turns what it returns or raises into the reply, with Redis's
/// texts naming `name` (a SHA-1 or a function). A storage failure inside is the `Err`.
fn run_in(
    lua: &Lua,
    ks: &mut dyn Keyspace,
    read_only: bool,
    origin: Origin,
    name: &str,
    prepare: impl FnOnce(&Lua) -> mlua::Result<(Function, MultiValue)>,
) -> StoreResult<Reply> {
    let ks = RefCell::new(ks);
    let storage_error: RefCell<Option<StoreError>> = RefCell::new(None);
    let outcome = lua.scope(|scope| {
        let redis: Table = lua.globals().raw_get("redis")?;
        for (function_name, protected) in [("call", false), ("pcall", true)] {
            let ks = &ks;
            let storage_error = &storage_error;
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
                        Err(state::raise(String::from_utf8_lossy(&text)))
                    }
                    reply => reply_to_lua(lua, reply, resp_of(lua)),
                }
            })?;
            redis.raw_set(function_name, function)?;
        }
        let (function, args) = prepare(lua)?;
        let outcome = state::call_protected(lua, &function, args)?;
        Ok(outcome.map(|value| lua_to_reply(&value, resp_of(lua))))
    });
    if let Some(err) = storage_error.into_inner() {
        return Err(err);
    }
    let chunk = origin.chunk_name();
    Ok(match outcome {
        Ok(Ok(reply)) => reply,
        Ok(Err(Failure { text, place })) => {
            let (source, line) = place.unwrap_or_else(|| (chunk.to_string(), -1));
            Reply::error(format!(
                "{} script: {name}, on {source}:{line}.",
                one_line(&text)
            ))
        }
        Err(err) => Reply::error(format!(
            "ERR {} script: {name}, on {chunk}:-1.",
            one_line(&innermost_message(&err))
        )),
    })
}

/// The reply for code that does not compile, with Redis's texts.
fn compile_error_reply(err: &mlua::Error, origin: Origin) -> Reply {
    let message = match err {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        other => innermost_message(other),
    };
    let what = match origin {
        Origin::Eval => "script (new function)",
        Origin::Function => "function",
    };
    Reply::error(format!(
        "ERR Error compiling {what}: {}",
        one_line(&message)
    ))
}

/// The conversions the script chose with `redis.setresp`.
fn resp_of(lua: &Lua) -> Resp {
    lua.app_data_ref::<Resp>().map_or(Resp::Two, |resp| *resp)
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
    if let Some(command) = super::find(spec) {
        return (command.run)(ks, args);
    }
    Ok(match spec.name {
        // The log entry's time: the same on every replica.
        "time" => {
            let now_ms = ks.now_ms();
            Reply::Array(vec![
                Reply::Bulk(Bytes::from(now_ms.div_euclid(1000).to_string())),
                Reply::Bulk(Bytes::from((now_ms.rem_euclid(1000) * 1000).to_string())),
            ])
        }
        "ping" => match args.get(1) {
            Some(message) if args.len() == 2 => Reply::Bulk(message.clone()),
            None => Reply::simple("PONG"),
            Some(_) => Reply::error("ERR Wrong number of args calling Redis command from script"),
        },
        "echo" => Reply::Bulk(args[1].clone()),
        "select" => match int_arg(&args[1]) {
            Ok(0) => Reply::ok(),
            Ok(_) => Reply::error("ERR DB index is out of range"),
            Err(reply) => reply,
        },
        _ => Reply::error(format!(
            "ERR redraft does not run '{}' from scripts yet",
            spec.name
        )),
    })
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

/// `text` on one line (Redis replaces CR and LF in error replies).
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::commands::execute;
    use crate::store::keyspace::testing::TestStore;

    /// Runs one command line as a log entry would (also for the submodules' tests).
    pub(super) fn run(db: &TestStore, words: &[&str]) -> Reply {
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
        // Catching the budget's error does not let a script go on.
        let reply = run(
            &db,
            &[
                "EVAL",
                "while true do pcall(function() while true do end end) end",
                "0",
            ],
        );
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
    fn the_script_cache_is_kept_by_flushall_and_emptied_by_script_flush() {
        let db = TestStore::new();
        let body = "return redis.call('INCRBY', KEYS[1], ARGV[1])";
        let sha = sha1_hex(body.as_bytes());
        assert_eq!(run(&db, &["SCRIPT", "LOAD", body]), Reply::bulk_str(&sha));
        let upper = sha.to_ascii_uppercase();
        assert_eq!(
            run(&db, &["EVALSHA", &upper, "1", "n", "2"]),
            Reply::Integer(2)
        );
        let exists = |db: &TestStore, sha: &str| run(db, &["SCRIPT", "EXISTS", sha]);
        assert_eq!(exists(&db, &upper), Reply::Array(vec![Reply::Integer(1)]));
        run(&db, &["FLUSHALL"]);
        assert_eq!(exists(&db, &sha), Reply::Array(vec![Reply::Integer(1)]));
        assert_eq!(run(&db, &["SCRIPT", "FLUSH"]), Reply::ok());
        assert_eq!(
            run(&db, &["EVALSHA", &sha, "1", "n", "2"]),
            Reply::error(NO_SCRIPT)
        );
        // EVAL caches what compiles; EVAL_RO and no-writes scripts run as reads and do not.
        run(&db, &["EVAL", body, "1", "n", "1"]);
        assert_eq!(exists(&db, &sha), Reply::Array(vec![Reply::Integer(1)]));
        let read = "return 1";
        run(&db, &["EVAL_RO", read, "0"]);
        assert_eq!(
            exists(&db, &sha1_hex(read.as_bytes())),
            Reply::Array(vec![Reply::Integer(0)])
        );
        run(&db, &["EVAL", "syntax error", "0"]);
        assert_eq!(
            exists(&db, &sha1_hex(b"syntax error")),
            Reply::Array(vec![Reply::Integer(0)])
        );
    }

    #[test]
    fn a_no_writes_shebang_makes_a_read_only_script() {
        let db = TestStore::new();
        let body = "#!lua flags=no-writes\nreturn redis.call('SET', 'k', 'v')";
        assert!(declares_no_writes(&[
            Bytes::from_static(b"EVAL"),
            Bytes::from(body)
        ]));
        let reply = run(&db, &["EVAL", body, "0"]);
        assert!(
            matches!(&reply, Reply::Error(text) if text.starts_with(b"ERR Write commands are not allowed from read-only scripts.")),
            "{reply:?}"
        );
        assert_eq!(
            run(&db, &["EVAL_RO", "#!lua\nreturn 1", "0"]),
            Reply::error("ERR Can not execute a script with write flag using *_ro command.")
        );
        assert_eq!(
            run(&db, &["EVAL", "#!lua flags=bogus\nreturn 1", "0"]),
            Reply::error("ERR Unexpected flag in script shebang: bogus")
        );
    }

    #[test]
    fn bytecode_is_refused_and_addresses_are_not_shown() {
        let db = TestStore::new();
        assert_eq!(
            run(&db, &["EVAL", "\u{1b}LuaQ", "0"]),
            Reply::error(
                "ERR Error compiling script (new function): user_script:1: unexpected symbol near 'char(27)'"
            )
        );
        assert_eq!(
            run(
                &db,
                &[
                    "EVAL",
                    "return tostring(loadstring(string.dump(function() return 1 end)))",
                    "0"
                ]
            ),
            Reply::bulk_str("nil")
        );
        // The same on every node: by order of first use, not by address.
        assert_eq!(
            run(
                &db,
                &[
                    "EVAL",
                    "local a = {} return {tostring(a), tostring({}), tostring(a)}",
                    "0"
                ]
            ),
            Reply::Array(vec![
                Reply::bulk_str("table: 0x00000001"),
                Reply::bulk_str("table: 0x00000002"),
                Reply::bulk_str("table: 0x00000001"),
            ])
        );
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
