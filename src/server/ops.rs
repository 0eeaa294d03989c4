//! Server commands that describe or steer the process rather than the keyspace: persistence
//! (LASTSAVE, SAVE, BGSAVE), replication (WAIT), introspection (MEMORY, LATENCY, SLOWLOG), and
//! the scripting commands that are not keyspace commands (SCRIPT and FUNCTION KILL and HELP).
//!
//! SAVE and BGSAVE build a raft snapshot (the state machine is always durable through the log;
//! a snapshot compacts it). WAIT counts the followers whose log holds the connection's last
//! write, which is meaningful here: they have it durably.

use std::time::Duration;

use bytes::Bytes;

use crate::error::Error;
use crate::node::Node;
use crate::redis::table;
use crate::resp::Reply;

fn lines(text: &[&str]) -> Reply {
    Reply::Array(
        text.iter()
            .map(|l| Reply::Simple(Bytes::copy_from_slice(l.as_bytes())))
            .collect(),
    )
}

/// Answers the synchronous server commands; `None` for those that wait (SAVE, WAIT).
pub fn answer(name: &str, args: &[Bytes], last_save_secs: u64) -> Option<Reply> {
    let sub = args
        .get(1)
        .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
        .unwrap_or_default();
    Some(match name {
        "lastsave" => Reply::Integer(last_save_secs as i64),
        "memory" => match sub.as_str() {
            "doctor" => Reply::Verbatim(Bytes::from_static(
                b"Hi Sam, this instance is empty or is using very little memory, my issues \
detector can't be used in these conditions. Please, leave for your mission on Earth and fill \
it with some data. The new Sam and I will be back to our programming as soon as I finished \
rebooting.\n",
            )),
            "malloc-stats" => Reply::Verbatim(Bytes::from_static(
                b"Stats not supported for the current allocator",
            )),
            "purge" => Reply::ok(),
            "stats" => Reply::Map(vec![
                (Reply::bulk_str("peak.allocated"), Reply::Integer(0)),
                (Reply::bulk_str("total.allocated"), Reply::Integer(0)),
                (Reply::bulk_str("keys.count"), Reply::Integer(0)),
            ]),
            _ => lines(&[
                "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "DOCTOR",
                "    Return memory problems reports.",
                "MALLOC-STATS",
                "    Return internal statistics report from the memory allocator.",
                "PURGE",
                "    Attempt to purge dirty pages for reclamation by the allocator.",
                "STATS",
                "    Return information about the memory usage of the server.",
                "USAGE <key> [SAMPLES <count>]",
                "    Return memory in bytes used by <key> and its value. Nested values are",
                "    sampled up to <count> times (default: 5, 0 means sample all).",
                "HELP",
                "    Print this help.",
            ]),
        },
        "latency" => match sub.as_str() {
            "latest" | "history" => Reply::Array(vec![]),
            "histogram" => Reply::Map(vec![]),
            "reset" => Reply::Integer(0),
            "doctor" => Reply::Verbatim(Bytes::from_static(
                b"I'm sorry, Dave, I can't do that. Latency monitoring is disabled in this \
Redis instance. You may use \"CONFIG SET latency-monitor-threshold <milliseconds>.\" in order \
to enable it. If we weren't in a deep space mission I'd suggest to take a look at \
https://redis.io/topics/latency-monitor.\n",
            )),
            "graph" => Reply::error(format!(
                "ERR No samples available for event '{}'",
                args.get(2)
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .unwrap_or_default()
            )),
            _ => lines(&[
                "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "LATEST",
                "    Return the latest latency samples for all events.",
                "HISTORY <event>",
                "    Return time-latency samples for the specified event.",
                "RESET [<event> ...]",
                "    Reset latency data of one or more <event> classes.",
                "HELP",
                "    Print this help.",
            ]),
        },
        "slowlog" => match sub.as_str() {
            "get" => Reply::Array(vec![]),
            "len" => Reply::Integer(0),
            "reset" => Reply::ok(),
            _ => lines(&[
                "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GET [<count>]",
                "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
                "LEN",
                "    Return the length of the slowlog.",
                "RESET",
                "    Reset the slowlog.",
                "HELP",
                "    Print this help.",
            ]),
        },
        // LOAD, DELETE, FLUSH, LIST, STATS, DUMP and RESTORE are keyspace commands (libraries
        // are replicated).
        "function" => match sub.as_str() {
            "kill" => Reply::error("NOTBUSY No scripts in execution right now."),
            "help" => lines(&[
                "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "LOAD [REPLACE] <FUNCTION CODE>",
                "    Create a new library with the given library name and code.",
                "DELETE <LIBRARY NAME>",
                "    Delete the given library.",
                "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
                "    Return general information on all the libraries:",
                "    * Library name",
                "    * The engine used to run the Library",
                "    * Library description",
                "    * Functions list",
                "    * Library code (if WITHCODE is given)",
                "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
                "STATS",
                "    Return information about the current function running:",
                "    * Function name",
                "    * Command used to run the function",
                "    * Duration in MS that the function is running",
                "    If no function is running, return nil",
                "    In addition, returns a list of available engines.",
                "KILL",
                "    Kill the current running function.",
                "FLUSH [ASYNC|SYNC]",
                "    Delete all the libraries.",
                "    When called without the optional mode argument, the behavior is determined by the",
                "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
                "    * ASYNC: Asynchronously flush the libraries.",
                "    * SYNC: Synchronously flush the libraries.",
                "DUMP",
                "    Return a serialized payload representing the current libraries, can be restored using FUNCTION RESTORE command",
                "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
                "    Restore the libraries represented by the given payload, it is possible to give a restore policy to",
                "    control how to handle existing libraries (default APPEND):",
                "    * FLUSH: delete all existing libraries.",
                "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
                "    * REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old",
                "      libraries with the new libraries (notice that even on this option there is a chance of failure",
                "      in case of functions name collision with another library).",
                "HELP",
                "    Prints this help.",
            ]),
            // Every other subcommand is a keyspace command, or refused by the command table.
            other => table::unknown_subcommand_error("function", other.as_bytes()),
        },
        // LOAD, EXISTS and FLUSH are keyspace commands (the script cache is replicated).
        "script" => match sub.as_str() {
            "kill" => Reply::error("NOTBUSY No scripts in execution right now."),
            "help" => lines(&[
                "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "EXISTS <sha1> [<sha1> ...]",
                "    Return information about the existence of the scripts in the script cache.",
                "FLUSH [ASYNC|SYNC]",
                "    Flush the Lua scripts cache. Very dangerous on replicas.",
                "    Valid modes are:",
                "    * ASYNC: Asynchronously flush the scripts cache.",
                "    * SYNC: Synchronously flush the scripts cache.",
                "KILL",
                "    Kill the currently executing Lua script.",
                "LOAD <script>",
                "    Load a script into the scripts cache without executing it.",
                "HELP",
                "    Prints this help.",
            ]),
            other => table::unknown_subcommand_error("script", other.as_bytes()),
        },
        _ => return None,
    })
}

/// SAVE: builds a snapshot and waits (bounded) until it covers what was applied when called.
pub async fn save(node: &Node) -> Result<Reply, Error> {
    node.snapshot_applied().await?;
    Ok(Reply::ok())
}

/// BGSAVE: starts a snapshot.
pub async fn bgsave(node: &Node) -> Result<Reply, Error> {
    node.start_snapshot().await?;
    Ok(Reply::simple("Background saving started"))
}

/// WAIT: how many followers hold the log up to `index` (the connection's last write), waiting
/// up to `timeout_ms` (0: forever, as Redis) for `wanted` of them.
pub async fn wait(node: &Node, index: u64, wanted: i64, timeout_ms: i64) -> Reply {
    let timeout = if timeout_ms == 0 {
        None
    } else {
        Some(Duration::from_millis(timeout_ms as u64))
    };
    Reply::Integer(node.replicas_holding(index, wanted, timeout).await)
}
