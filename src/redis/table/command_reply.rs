//! The `COMMAND` command, answered entirely from the table: bare `COMMAND`, `COUNT`, `LIST`,
//! `INFO`, `DOCS`, `GETKEYS`, `GETKEYSANDFLAGS` and `HELP`, byte for byte as Redis 7.0 (see the
//! module doc of `crate::redis::table` for the deliberate differences).

use super::*;

/// The whole `COMMAND` command; `args[0]` is `COMMAND` itself (an empty slice is taken as
/// bare `COMMAND`). Checks the subcommand and its arity itself, so the dispatcher can hand
/// over any `COMMAND …` line.
pub fn command_reply(args: &[Bytes]) -> Reply {
    let Some(sub_name) = args.get(1) else {
        return Reply::Array(COMMANDS.iter().map(info_reply).collect());
    };
    let Some(sub) = lookup(b"command").and_then(|command| lookup_subcommand(command, sub_name))
    else {
        return unknown_subcommand_error("command", sub_name);
    };
    if !arity_ok(sub, args.len()) {
        return wrong_arity_error(sub);
    }
    let rest = &args[2..];
    match short_name(sub) {
        "count" => Reply::Integer(i64::try_from(COMMANDS.len()).unwrap_or(i64::MAX)),
        "info" if rest.is_empty() => Reply::Array(COMMANDS.iter().map(info_reply).collect()),
        "info" => Reply::Array(
            rest.iter()
                .map(|name| lookup_full_name(name).map_or(Reply::Nil, info_reply))
                .collect(),
        ),
        "docs" if rest.is_empty() => Reply::Map(
            COMMANDS
                .iter()
                .map(|spec| (name_reply(spec), docs_reply(spec)))
                .collect(),
        ),
        "docs" => Reply::Map(
            rest.iter()
                .filter_map(|name| lookup_full_name(name))
                .map(|spec| (name_reply(spec), docs_reply(spec)))
                .collect(),
        ),
        "getkeys" => getkeys_reply(rest, false),
        "getkeysandflags" => getkeys_reply(rest, true),
        "list" => list_reply(rest),
        "help" => help_reply(),
        _ => unknown_subcommand_error("command", sub_name),
    }
}

/// `COMMAND HELP` body, after the generic first line (Redis's `commandHelpCommand`).
const COMMAND_HELP: &[&str] = &[
    "(no subcommand)",
    "    Return details about all Redis commands.",
    "COUNT",
    "    Return the total number of commands in this Redis server.",
    "LIST",
    "    Return a list of all commands in this Redis server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "GETKEYS <full-command>",
    "    Return the keys from a full Redis command.",
    "GETKEYSANDFLAGS <full-command>",
    "    Return the keys and the access flags from a full Redis command.",
];

/// Redis's `addReplyHelp` framing around [`COMMAND_HELP`].
fn help_reply() -> Reply {
    let first = "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:";
    let last = ["HELP", "    Prints this help."];
    Reply::Array(
        std::iter::once(first)
            .chain(COMMAND_HELP.iter().copied())
            .chain(last)
            .map(Reply::simple)
            .collect(),
    )
}

/// `COMMAND GETKEYS`/`GETKEYSANDFLAGS`: `line` is the command line to analyse.
fn getkeys_reply(line: &[Bytes], with_flags: bool) -> Reply {
    let Some(spec) = lookup_for_call(line) else {
        return Reply::error("ERR Invalid command specified");
    };
    if !has_keys(spec) {
        return Reply::error("ERR The command has no key arguments");
    }
    if !arity_ok(spec, line.len()) {
        return Reply::error("ERR Invalid number of arguments specified for command");
    }
    let keys: Vec<Reply> = find_keys(spec, line)
        .into_iter()
        .filter_map(|key| {
            let arg = Reply::Bulk(line.get(key.pos)?.clone());
            Some(if with_flags {
                Reply::Array(vec![arg, status_set(key.flags)])
            } else {
                arg
            })
        })
        .collect();
    if keys.is_empty() && !spec.has_flag("no_mandatory_keys") {
        return Reply::error("ERR Invalid arguments specified for command");
    }
    Reply::Array(keys)
}

/// A `COMMAND LIST FILTERBY` filter.
enum ListFilter<'a> {
    /// `MODULE name`: no modules are ever loaded here, so nothing matches.
    Module,
    /// `ACLCAT category`.
    AclCat(&'a [u8]),
    /// `PATTERN glob`, matched case-insensitively against full names.
    Pattern(&'a [u8]),
}

/// `COMMAND LIST [FILTERBY MODULE x|ACLCAT x|PATTERN x]`; `rest` follows `LIST`.
fn list_reply(rest: &[Bytes]) -> Reply {
    let mut filter = None;
    let mut i = 0;
    while i < rest.len() {
        // Redis only accepts FILTERBY with exactly its two arguments left.
        if !(c_eq(&rest[i], "filterby") && rest.len() - i == 3) {
            return Reply::error("ERR syntax error");
        }
        let (kind, value) = (&rest[i + 1], &rest[i + 2][..]);
        filter = Some(if c_eq(kind, "module") {
            ListFilter::Module
        } else if c_eq(kind, "aclcat") {
            ListFilter::AclCat(c_str(value))
        } else if c_eq(kind, "pattern") {
            ListFilter::Pattern(value)
        } else {
            return Reply::error("ERR syntax error");
        });
        i += 3;
    }
    let mut names = Vec::new();
    list_names(COMMANDS, filter.as_ref(), &mut names);
    Reply::Array(names)
}

/// Appends the full names of `specs` passing `filter`, each followed by its subcommands.
fn list_names(
    specs: &'static [CommandSpec],
    filter: Option<&ListFilter<'_>>,
    out: &mut Vec<Reply>,
) {
    for spec in specs {
        let keep = match filter {
            None => true,
            Some(ListFilter::Module) => false,
            Some(ListFilter::AclCat(cat)) => spec
                .acl_categories
                .iter()
                .any(|c| c.as_bytes().eq_ignore_ascii_case(cat)),
            Some(ListFilter::Pattern(pattern)) => {
                crate::redis::glob::glob_match(pattern, spec.name.as_bytes(), true)
            }
        };
        if keep {
            out.push(name_reply(spec));
        }
        list_names(spec.subcommands, filter, out);
    }
}

/// One `COMMAND INFO` entry (Redis's `addReplyCommandInfo`).
fn info_reply(spec: &CommandSpec) -> Reply {
    Reply::Array(vec![
        name_reply(spec),
        Reply::Integer(spec.arity.into()),
        status_set(spec.flags),
        Reply::Integer(spec.first_key.into()),
        Reply::Integer(spec.last_key.into()),
        Reply::Integer(spec.step.into()),
        Reply::Set(
            spec.acl_categories
                .iter()
                .map(|cat| Reply::Simple(Bytes::from(format!("@{cat}"))))
                .collect(),
        ),
        Reply::Set(spec.tips.iter().map(|&tip| bulk(tip)).collect()),
        set_of(spec.key_specs.iter().map(key_spec_reply).collect()),
        // Redis answers an empty *set* for "no subcommands" but an array of them otherwise.
        if spec.subcommands.is_empty() {
            Reply::Set(Vec::new())
        } else {
            Reply::Array(spec.subcommands.iter().map(info_reply).collect())
        },
    ])
}

/// One key spec as `COMMAND INFO` shows it.
fn key_spec_reply(ks: &KeySpec) -> Reply {
    let mut fields = Vec::with_capacity(4);
    if let Some(notes) = ks.notes {
        fields.push((bulk("notes"), bulk(notes)));
    }
    fields.push((bulk("flags"), status_set(ks.flags)));
    let begin = match ks.begin_search {
        BeginSearch::Index(pos) => typed("index", vec![(bulk("index"), int(pos))]),
        BeginSearch::Keyword { keyword, startfrom } => typed(
            "keyword",
            vec![
                (bulk("keyword"), bulk(keyword)),
                (bulk("startfrom"), int(startfrom)),
            ],
        ),
        BeginSearch::Unknown => typed("unknown", Vec::new()),
    };
    fields.push((bulk("begin_search"), begin));
    let find = match ks.find_keys {
        FindKeys::Range {
            lastkey,
            keystep,
            limit,
        } => typed(
            "range",
            vec![
                (bulk("lastkey"), int(lastkey)),
                (bulk("keystep"), int(keystep)),
                (bulk("limit"), int(limit)),
            ],
        ),
        FindKeys::Keynum {
            keynumidx,
            firstkey,
            keystep,
        } => typed(
            "keynum",
            vec![
                (bulk("keynumidx"), int(keynumidx)),
                (bulk("firstkey"), int(firstkey)),
                (bulk("keystep"), int(keystep)),
            ],
        ),
        FindKeys::Unknown => typed("unknown", Vec::new()),
    };
    fields.push((bulk("find_keys"), find));
    Reply::Map(fields)
}

/// `{type: kind, spec: {...}}`, the shape of both key-spec halves.
fn typed(kind: &'static str, spec: Vec<(Reply, Reply)>) -> Reply {
    Reply::Map(vec![
        (bulk("type"), bulk(kind)),
        (bulk("spec"), Reply::Map(spec)),
    ])
}

/// One `COMMAND DOCS` value (Redis's `addReplyCommandDocs`); fields Redis leaves out when
/// empty are left out here too.
fn docs_reply(spec: &CommandSpec) -> Reply {
    let docs = &spec.docs;
    let mut fields = Vec::with_capacity(10);
    if let Some(summary) = docs.summary {
        fields.push((bulk("summary"), bulk(summary)));
    }
    if let Some(since) = docs.since {
        fields.push((bulk("since"), bulk(since)));
    }
    fields.push((bulk("group"), bulk(docs.group)));
    if let Some(complexity) = docs.complexity {
        fields.push((bulk("complexity"), bulk(complexity)));
    }
    if !docs.doc_flags.is_empty() {
        fields.push((bulk("doc_flags"), status_set(docs.doc_flags)));
    }
    if let Some(version) = docs.deprecated_since {
        fields.push((bulk("deprecated_since"), bulk(version)));
    }
    if let Some(replacement) = docs.replaced_by {
        fields.push((bulk("replaced_by"), bulk(replacement)));
    }
    if !docs.history.is_empty() {
        let history = docs
            .history
            .iter()
            .map(|&(version, change)| Reply::Array(vec![bulk(version), bulk(change)]))
            .collect();
        fields.push((bulk("history"), set_of(history)));
    }
    if !docs.arguments.is_empty() {
        fields.push((bulk("arguments"), args_reply(docs.arguments)));
    }
    if !spec.subcommands.is_empty() {
        let subs = spec
            .subcommands
            .iter()
            .map(|sub| (name_reply(sub), docs_reply(sub)))
            .collect();
        fields.push((bulk("subcommands"), Reply::Map(subs)));
    }
    Reply::Map(fields)
}

/// An argument list as `COMMAND DOCS` shows it (Redis's `addReplyCommandArgList`).
fn args_reply(args: &[Arg]) -> Reply {
    Reply::Array(
        args.iter()
            .map(|arg| {
                let mut fields = vec![
                    (bulk("name"), bulk(arg.name)),
                    (bulk("type"), bulk(arg.kind.as_str())),
                ];
                if let Some(index) = arg.key_spec_index {
                    fields.push((bulk("key_spec_index"), int(index)));
                }
                for (field, value) in [
                    ("token", arg.token),
                    ("summary", arg.summary),
                    ("since", arg.since),
                    ("deprecated_since", arg.deprecated_since),
                ] {
                    if let Some(value) = value {
                        fields.push((bulk(field), bulk(value)));
                    }
                }
                let flags: Vec<&'static str> = [
                    (arg.optional, "optional"),
                    (arg.multiple, "multiple"),
                    (arg.multiple_token, "multiple_token"),
                ]
                .into_iter()
                .filter_map(|(set, name)| set.then_some(name))
                .collect();
                if !flags.is_empty() {
                    fields.push((bulk("flags"), status_set(&flags)));
                }
                if matches!(arg.kind, ArgType::OneOf | ArgType::Block) {
                    fields.push((bulk("arguments"), args_reply(arg.arguments)));
                }
                Reply::Map(fields)
            })
            .collect(),
    )
}

/// A command's full name as a bulk string.
fn name_reply(spec: &CommandSpec) -> Reply {
    bulk(spec.name)
}

/// A bulk string from static text, without copying.
fn bulk(text: &'static str) -> Reply {
    Reply::Bulk(Bytes::from_static(text.as_bytes()))
}

/// An integer reply.
fn int(n: i32) -> Reply {
    Reply::Integer(n.into())
}

/// A set of status replies: how Redis prints every flag list.
fn status_set(flags: &[&'static str]) -> Reply {
    set_of(flags.iter().map(|&flag| Reply::simple(flag)).collect())
}

/// What Redis sends as a set (`~` in RESP3), members in table order.
fn set_of(items: Vec<Reply>) -> Reply {
    Reply::Set(items)
}
