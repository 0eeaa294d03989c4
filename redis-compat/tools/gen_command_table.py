#!/usr/bin/env python3
"""Regenerates the command table data, src/redis/table/generated.rs, from a live Redis 7.0.

The Rust table is the runtime source of truth; this script writes only its data file
(marked `@generated`) from what a real redis-server answers to `COMMAND INFO` and
`COMMAND DOCS` over RESP3 (RESP3 tells sets, maps and arrays apart, RESP2 does not).

Usage:
    redis-server --port 16398 --save '' --appendonly no &
    python3 redis-compat/tools/gen_command_table.py --port 16398 --write src/redis/table/generated.rs

To add a command: add it to COMMANDS below (with the subcommands the project serves, if it
is a container) and rerun. If Redis has a getkeys_proc for it and one of its key specs is
`variable_flags`, `incomplete` or of unknown type (SET, SORT, MIGRATE, ...), also write the
key finder in src/redis/table.rs by hand (see `set_getkeys`) and name it in GETKEYS below; COMMAND
GETKEYS needs it. The output is already laid out as `cargo fmt` leaves it.
Only talks to 127.0.0.1.
"""

import argparse
import socket
import sys

# Top-level commands in table order, each with the subcommands we serve (None: no container).
COMMANDS = [
    ("get", None),
    ("set", None),
    ("incrby", None),
    ("incr", None),
    ("decr", None),
    ("decrby", None),
    ("del", None),
    ("exists", None),
    ("ping", None),
    ("echo", None),
    ("select", None),
    ("quit", None),
    ("reset", None),
    ("auth", None),
    ("hello", None),
    ("client", ["getname", "help", "id", "info", "kill", "list", "no-evict", "no-touch",
                "reply", "setinfo", "setname", "tracking"]),
    ("command", ["count", "docs", "getkeys", "getkeysandflags", "help", "info", "list"]),
    ("info", None),
    ("dbsize", None),
    ("flushdb", None),
    ("flushall", None),
    ("time", None),
    ("config", ["get", "help", "resetstat", "rewrite", "set"]),
    ("cluster", ["help", "info", "keyslot", "myid", "nodes", "shards", "slots"]),
    ("readonly", None),
    ("readwrite", None),
    ("asking", None),
    ("type", None),
    ("mget", None),
    ("mset", None),
    ("unlink", None),
    ("setnx", None), ("setex", None), ("psetex", None), ("getset", None), ("getdel", None),
    ("getex", None), ("msetnx", None), ("append", None), ("strlen", None), ("getrange", None),
    ("substr", None),
    ("setrange", None), ("incrbyfloat", None), ("lcs", None),
    ("expire", None), ("pexpire", None), ("expireat", None), ("pexpireat", None), ("ttl", None),
    ("pttl", None), ("expiretime", None), ("pexpiretime", None), ("persist", None),
    ("keys", None), ("scan", None), ("randomkey", None), ("rename", None), ("renamenx", None),
    ("copy", None), ("touch", None),
    ("object", ["encoding", "freq", "help", "idletime", "refcount"]),
    ("hset", None), ("hsetnx", None), ("hget", None), ("hmget", None), ("hmset", None),
    ("hdel", None), ("hexists", None), ("hlen", None), ("hstrlen", None), ("hkeys", None),
    ("hvals", None), ("hgetall", None), ("hincrby", None), ("hincrbyfloat", None),
    ("hrandfield", None), ("hscan", None),
    ("multi", None), ("exec", None), ("discard", None), ("watch", None), ("unwatch", None),
    ("lastsave", None), ("save", None), ("bgsave", None), ("wait", None),
    ("memory", ["doctor", "help", "malloc-stats", "purge", "stats", "usage"]),
    ("latency", ["doctor", "graph", "help", "histogram", "history", "latest", "reset"]),
    ("slowlog", ["get", "help", "len", "reset"]),
    ("function", ["delete", "dump", "flush", "help", "kill", "list", "load", "restore", "stats"]),
    ("script", ["exists", "flush", "help", "kill", "load"]),
    ("eval", None), ("evalsha", None), ("eval_ro", None), ("evalsha_ro", None),
    ("fcall", None), ("fcall_ro", None),
    ("lpush", None), ("rpush", None), ("lpushx", None), ("rpushx", None), ("lpop", None),
    ("rpop", None), ("llen", None), ("lrange", None), ("lindex", None), ("lset", None),
    ("linsert", None), ("lrem", None), ("ltrim", None), ("lpos", None), ("lmove", None),
    ("rpoplpush", None), ("lmpop", None),
    ("sadd", None), ("srem", None), ("smembers", None), ("sismember", None), ("smismember", None),
    ("scard", None), ("spop", None), ("srandmember", None), ("smove", None), ("sinter", None),
    ("sintercard", None), ("sinterstore", None), ("sunion", None), ("sunionstore", None),
    ("sdiff", None), ("sdiffstore", None), ("sscan", None),
    ("zadd", None), ("zincrby", None), ("zscore", None), ("zmscore", None), ("zcard", None),
    ("zcount", None), ("zlexcount", None), ("zrange", None), ("zrangestore", None),
    ("zrevrange", None), ("zrangebyscore", None), ("zrevrangebyscore", None),
    ("zrangebylex", None), ("zrevrangebylex", None), ("zrank", None), ("zrevrank", None),
    ("zrem", None), ("zremrangebyrank", None), ("zremrangebyscore", None),
    ("zremrangebylex", None), ("zpopmin", None), ("zpopmax", None), ("zmpop", None),
    ("zunion", None), ("zinter", None), ("zdiff", None), ("zunionstore", None),
    ("zinterstore", None), ("zdiffstore", None), ("zintercard", None), ("zrandmember", None),
    ("zscan", None),
    ("blpop", None), ("brpop", None), ("blmove", None), ("brpoplpush", None), ("blmpop", None),
    ("bzpopmin", None), ("bzpopmax", None), ("bzmpop", None),
    ("sort", None), ("sort_ro", None),
    ("subscribe", None), ("unsubscribe", None), ("psubscribe", None), ("punsubscribe", None),
    ("ssubscribe", None), ("sunsubscribe", None), ("publish", None), ("spublish", None),
    ("pubsub", ["channels", "help", "numpat", "numsub", "shardchannels", "shardnumsub"]),
    ("setbit", None), ("getbit", None), ("bitcount", None), ("bitpos", None), ("bitop", None),
    ("bitfield", None), ("bitfield_ro", None),
    ("pfadd", None), ("pfcount", None), ("pfmerge", None), ("pfdebug", None),
    ("pfselftest", None), ("dump", None), ("restore", None),
]

# Rust getkeys hooks (functions in table.rs) standing in for Redis's getkeys_proc.
GETKEYS = {
    "set": "set_getkeys",
    "sort": "sort_getkeys",
    "sort_ro": "sort_ro_getkeys",
}

# Subcommands Redis 7.0 does not have but the project serves (both arrived in Redis 7.2).
# Written in the shape Redis 7.0 would report them in, from the 7.2 JSON command files
# (src/commands/client-setinfo.json, client-no-touch.json); ACL categories follow 7.0's
# implicit rules (no `fast` flag → @slow).
EXTRA = {
    "client|setinfo": {
        "info": ["client|setinfo", 4, ["noscript", "loading", "stale"], 0, 0, 0,
                 ["@slow", "@connection"],
                 ["request_policy:all_nodes", "response_policy:all_succeeded"], [], None],
        "docs": {
            "summary": "Sets information specific to the client or connection.",
            "since": "7.2.0",
            "group": "connection",
            "complexity": "O(1)",
            "arguments": [
                {"name": "attr", "type": "oneof", "arguments": [
                    {"name": "libname", "type": "string", "token": "lib-name"},
                    {"name": "libver", "type": "string", "token": "lib-ver"},
                ]},
            ],
        },
    },
    "client|no-touch": {
        "info": ["client|no-touch", 3, ["noscript", "loading", "stale"], 0, 0, 0,
                 ["@slow", "@connection"], [], [], None],
        "docs": {
            "summary": "Controls whether commands sent by the client affect the LRU/LFU of accessed keys.",
            "since": "7.2.0",
            "group": "connection",
            "complexity": "O(1)",
            "arguments": [
                {"name": "enabled", "type": "oneof", "arguments": [
                    {"name": "on", "type": "pure-token", "token": "ON"},
                    {"name": "off", "type": "pure-token", "token": "OFF"},
                ]},
            ],
        },
    },
}

HEADER = """// @generated by redis-compat/tools/gen_command_table.py from what redis-server 7.0 answers
// to COMMAND INFO and COMMAND DOCS. Rerun the script (or edit the COMMANDS list in it) rather
// than this file.

//! The command table's data: one entry per supported command.

use super::*;

"""


class Conn:
    """A minimal RESP3 client: enough to read COMMAND replies into Python values."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""
        self.call("HELLO", "3")

    def _fill(self):
        data = self.sock.recv(1 << 20)
        if not data:
            raise EOFError("server closed the connection")
        self.buf += data

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind in (b"$", b"="):
            n = int(rest)
            return None if n < 0 else self._exact(n).decode()
        if kind == b"_":
            return None
        if kind in (b"*", b"~"):
            return [self.read() for _ in range(int(rest))]
        if kind == b"%":
            pairs = [(self.read(), self.read()) for _ in range(int(rest))]
            return dict(pairs)
        raise RuntimeError(f"unexpected reply type {line!r}")

    def call(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a.encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)
        return self.read()


class Call:
    """`func(args)`; a method call when `func` starts with a dot."""

    def __init__(self, func, *args):
        self.func, self.args = func, list(args)


class Chain:
    """`base.m1(..).m2(..)`: how every table entry is written."""

    def __init__(self, base):
        self.base, self.calls = base, []

    def then(self, method, *args):
        self.calls.append(Call("." + method, *args))
        return self


class Array:
    """`&[items]`."""

    def __init__(self, items):
        self.items = list(items)


class Raw:
    """Literal Rust text (string literals, numbers, enum values)."""

    def __init__(self, text):
        self.text = text


WIDTH = 100  # rustfmt's max_width
SMALL = 60  # rustfmt's fn_call_width / chain_width / array_width heuristics


def flat(node):
    if isinstance(node, Raw):
        return node.text
    if isinstance(node, Array):
        return "&[" + ", ".join(flat(i) for i in node.items) + "]"
    if isinstance(node, Call):
        return node.func + "(" + ", ".join(flat(a) for a in node.args) + ")"
    return flat(node.base) + "".join(flat(c) for c in node.calls)


def pretty(node, indent, col):
    """Lays `node` out rustfmt-style, starting at column `col` of a line indented `indent`.

    rustfmt gives up on (and leaves alone) expressions holding string literals too long to
    fit, so the table keeps this layout; it mimics rustfmt's so the two styles do not mix.
    """
    one = flat(node)
    if isinstance(node, Call):
        small = len(", ".join(flat(a) for a in node.args)) <= SMALL
    elif isinstance(node, Array):
        small = len(", ".join(flat(i) for i in node.items)) <= SMALL
    else:
        small = isinstance(node, Raw) or len(one) <= SMALL
    if "\n" not in one and col + len(one) <= WIDTH and small:
        return one
    pad, inner = " " * indent, " " * (indent + 4)
    if isinstance(node, Raw):
        return one
    if isinstance(node, Array):
        if not node.items:
            return "&[]"
        body = "".join(f"{inner}{pretty(i, indent + 4, indent + 4)},\n" for i in node.items)
        return f"&[\n{body}{pad}]"
    if isinstance(node, Call):
        if len(node.args) == 1 and isinstance(node.args[0], Array):
            # rustfmt lets a sole array argument hug the parentheses.
            return f"{node.func}({pretty(node.args[0], indent, col + len(node.func) + 1)})"
        body = "".join(f"{inner}{pretty(a, indent + 4, indent + 4)},\n" for a in node.args)
        return f"{node.func}(\n{body}{pad})"
    base = pretty(node.base, indent, col)
    if not node.calls:
        return base
    # After a multi-line base, rustfmt lines the calls up with the base's closing bracket.
    at = indent if "\n" in base else indent + 4
    lead = " " * at
    return base + "".join(f"\n{lead}{pretty(c, at, at)}" for c in node.calls)


def rs(s):
    """A Rust string literal."""
    return Raw('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"')


def num(n):
    return Raw(str(n))


def rs_list(items):
    return Array(rs(i) for i in items)


def emit_key_spec(spec):
    bs, fk = spec["begin_search"], spec["find_keys"]
    if bs["type"] == "index" and fk["type"] == "range":
        # The common shape gets a one-line constructor.
        s = fk["spec"]
        out = Chain(Call("KeySpec::range", rs_list(spec["flags"]), num(bs["spec"]["index"]),
                         num(s["lastkey"]), num(s["keystep"]), num(s["limit"])))
        if "notes" in spec:
            out.then("notes", rs(spec["notes"]))
        return out
    if bs["type"] == "index":
        begin = Call("BeginSearch::Index", num(bs["spec"]["index"]))
    elif bs["type"] == "keyword":
        begin = Raw(f"BeginSearch::Keyword {{ keyword: {flat(rs(bs['spec']['keyword']))}, "
                    f"startfrom: {bs['spec']['startfrom']} }}")
    else:
        begin = Raw("BeginSearch::Unknown")
    if fk["type"] == "range":
        s = fk["spec"]
        find = Raw(f"FindKeys::Range {{ lastkey: {s['lastkey']}, keystep: {s['keystep']}, "
                   f"limit: {s['limit']} }}")
    elif fk["type"] == "keynum":
        s = fk["spec"]
        find = Raw(f"FindKeys::Keynum {{ keynumidx: {s['keynumidx']}, "
                   f"firstkey: {s['firstkey']}, keystep: {s['keystep']} }}")
    else:
        find = Raw("FindKeys::Unknown")
    out = Chain(Call("KeySpec::new", rs_list(spec["flags"]), begin, find))
    if "notes" in spec:
        out.then("notes", rs(spec["notes"]))
    return out


ARG_CTORS = {
    "string": "string", "integer": "integer", "double": "double", "pattern": "pattern",
    "unix-time": "unix_time",
}


def emit_arg(arg):
    known = {"name", "type", "key_spec_index", "token", "summary", "since",
             "deprecated_since", "flags", "arguments"}
    extra = set(arg) - known
    if extra:
        raise RuntimeError(f"argument field(s) the table cannot hold: {extra}")
    t = arg["type"]
    if t == "key":
        out = Chain(Call("Arg::key", rs(arg["name"]), num(arg["key_spec_index"])))
    elif t == "pure-token":
        out = Chain(Call("Arg::pure_token", rs(arg["name"]), rs(arg["token"])))
    elif t in ("oneof", "block"):
        out = Chain(Call(f"Arg::{t}", rs(arg["name"]), emit_args(arg["arguments"])))
    else:
        out = Chain(Call(f"Arg::{ARG_CTORS[t]}", rs(arg["name"])))
    if "key_spec_index" in arg and t != "key":
        out.then("key_spec_index", num(arg["key_spec_index"]))
    if "token" in arg and t != "pure-token":
        out.then("token", rs(arg["token"]))
    for field in ("summary", "since", "deprecated_since"):
        if field in arg:
            out.then(field, rs(arg[field]))
    for flag in arg.get("flags", []):
        out.then(flag)
    return out


def emit_args(args):
    return Array(emit_arg(a) for a in args)


def emit_docs(out, docs):
    known = {"summary", "since", "group", "complexity", "doc_flags", "deprecated_since",
             "replaced_by", "history", "arguments", "subcommands"}
    extra = set(docs) - known
    if extra:
        raise RuntimeError(f"docs field(s) the table cannot hold: {extra}")
    for field in ("summary", "since", "group", "complexity"):
        if field in docs:
            out.then(field, rs(docs[field]))
    if docs.get("doc_flags"):
        out.then("doc_flags", rs_list(docs["doc_flags"]))
    for field in ("deprecated_since", "replaced_by"):
        if field in docs:
            out.then(field, rs(docs[field]))
    if docs.get("history"):
        out.then("history", Array(Call("", rs(a), rs(b)) for a, b in docs["history"]))
    if docs.get("arguments"):
        out.then("args", emit_args(docs["arguments"]))


def emit_command(info, docs, subs):
    (name, arity, flags, first, last, step, cats, tips, key_specs, _subs) = info
    out = Chain(Call("CommandSpec::new", rs(name), num(arity)))
    if flags:
        out.then("flags", rs_list(flags))
    if (first, last, step) != (0, 0, 0):
        out.then("keys", num(first), num(last), num(step))
    if cats:
        out.then("acl", rs_list(c.removeprefix("@") for c in cats))
    if tips:
        out.then("tips", rs_list(tips))
    if key_specs:
        out.then("key_specs", Array(emit_key_spec(s) for s in key_specs))
    if name in GETKEYS:
        out.then("getkeys", Raw(GETKEYS[name]))
    emit_docs(out, docs)
    if subs:
        out.then("subcommands", Array(subs))
    return out


def fetch(conn, name):
    if name in EXTRA:
        return EXTRA[name]["info"], EXTRA[name]["docs"]
    [info] = conn.call("COMMAND", "INFO", name)
    docs = conn.call("COMMAND", "DOCS", name)
    if info is None or name not in docs:
        raise RuntimeError(f"redis-server does not know {name!r}")
    return info, docs[name]


def generate(conn):
    entries = []
    for name, subnames in COMMANDS:
        info, docs = fetch(conn, name)
        subs = []
        for sub in subnames or []:
            sinfo, sdocs = fetch(conn, f"{name}|{sub}")
            subs.append(emit_command(sinfo, sdocs, []))
        entries.append(emit_command(info, docs, subs))
    body = "".join(f"    {pretty(e, 4, 4)},\n" for e in entries)
    return (HEADER +
            "/// Every command the server supports, in the order bare `COMMAND` lists them.\n"
            f"pub static COMMANDS: &[CommandSpec] = &[\n{body}];\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=16398)
    ap.add_argument("--write", help="the file to write, src/redis/table/generated.rs (else: stdout)")
    opts = ap.parse_args()
    text = generate(Conn(opts.port))
    if not opts.write:
        print(text, end="")
        return
    with open(opts.write, "w") as f:
        f.write(text)


if __name__ == "__main__":
    sys.exit(main())
