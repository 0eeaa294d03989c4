//! Property tests of the request parser: generated request streams cut at arbitrary points,
//! hostile bytes, declared sizes, and the error texts.
//!
//! Every stream is fed through [`feed`], which checks after each chunk that the parser holds
//! no more than the bytes it consumed and the limits allow, that asking again without new
//! bytes changes nothing, and that an error is sticky.

use super::*;
use proptest::prelude::*;
use proptest::sample::Index;

/// One generated command and its wire form (`args` empty for a line Redis skips).
#[derive(Clone, Debug)]
struct Wire {
    args: Vec<Vec<u8>>,
    bytes: Vec<u8>,
}

fn multibulk_wire(args: Vec<Vec<u8>>, sloppy_crlf: bool) -> Wire {
    let mut bytes = format!("*{}\r\n", args.len()).into_bytes();
    for a in &args {
        bytes.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        bytes.extend_from_slice(a);
        // Redis never checks the two bytes after a payload.
        bytes.extend_from_slice(if sloppy_crlf { b"xy" } else { b"\r\n" });
    }
    Wire { args, bytes }
}

/// `isspace` without `\n`: what may separate inline arguments once a token has ended.
const BLANKS: &[u8] = b" \t\r\x0b\x0c";
/// What ends an unquoted inline token (besides `\n` and NUL, which never reach the splitter).
const TOKEN_ENDS: &[u8] = b" \t\r";

/// How one inline argument is written on the line, chosen at random.
#[derive(Clone, Debug)]
struct InlineStyle {
    /// 0: bare when possible, 1: double quotes, 2: single quotes (double when impossible).
    quote: u8,
    /// Where the quoted part starts: `ab"cd"` is the one argument `abcd`.
    split: Index,
    /// Per-byte picks among the escapes that give that byte.
    choices: Vec<u8>,
    /// Picks the separator written before this argument (ignored for the first one).
    sep: (u8, Vec<u8>),
}

fn arb_inline_style() -> impl Strategy<Value = InlineStyle> {
    (
        0u8..3,
        any::<Index>(),
        prop::collection::vec(any::<u8>(), 1..8),
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..3)),
    )
        .prop_map(|(quote, split, choices, sep)| InlineStyle {
            quote,
            split,
            choices,
            sep,
        })
}

/// May appear in an unquoted token (which must not start with a blank either).
fn bare_byte_ok(b: u8) -> bool {
    !matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0 | b'"' | b'\'')
}

/// `section` inside double quotes, each byte written one of the ways `sdssplitargs` reads
/// back as that byte: raw, `\xHH` (either case), `\n \r \t \b \a`, `\"`, `\\`, or a backslash
/// before a byte with no special meaning (`\q` is `q`).
fn double_quoted(section: &[u8], choices: &[u8]) -> Vec<u8> {
    let mut out = vec![b'"'];
    for (i, &b) in section.iter().enumerate() {
        let pick = choices[i % choices.len()];
        let hex = if pick & 4 == 0 {
            format!("\\x{b:02x}")
        } else {
            format!("\\x{b:02X}")
        };
        let named = match b {
            b'\n' => Some(b'n'),
            b'\r' => Some(b'r'),
            b'\t' => Some(b't'),
            0x08 => Some(b'b'),
            0x07 => Some(b'a'),
            _ => None,
        };
        match (b, pick % 3) {
            (b'"' | b'\\', _) => out.extend_from_slice(&[b'\\', b]),
            (_, 0) if named.is_some() => out.extend_from_slice(&[b'\\', named.unwrap_or(b)]),
            (0 | b'\n', _) | (_, 1) => out.extend_from_slice(hex.as_bytes()),
            (_, 2) if !b"nrtbax".contains(&b) => out.extend_from_slice(&[b'\\', b]),
            _ => out.push(b),
        }
    }
    out.push(b'"');
    out
}

/// `section` inside single quotes, where only `\'` is an escape; `None` when it cannot be
/// written so (NUL, newline, or a backslash before a quote or the closing quote).
fn single_quoted(section: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![b'\''];
    for (i, &b) in section.iter().enumerate() {
        match b {
            0 | b'\n' => return None,
            b'\'' => out.extend_from_slice(b"\\'"),
            b'\\' if section.get(i + 1).is_none_or(|&next| next == b'\'') => return None,
            _ => out.push(b),
        }
    }
    out.push(b'\'');
    Some(out)
}

/// One inline argument as written; the flag says whether it ends in a closing quote.
fn inline_arg(arg: &[u8], style: &InlineStyle) -> (Vec<u8>, bool) {
    let starts_blank = arg.first().is_some_and(|&b| is_c_space(b));
    let bare_len = if starts_blank {
        0
    } else {
        arg.iter().take_while(|&&b| bare_byte_ok(b)).count()
    };
    if style.quote == 0 && !arg.is_empty() && bare_len == arg.len() {
        return (arg.to_vec(), false);
    }
    let split = style.split.index(arg.len() + 1).min(bare_len);
    let section = &arg[split..];
    let quoted = Some(style.quote)
        .filter(|&q| q == 2)
        .and_then(|_| single_quoted(section))
        .unwrap_or_else(|| double_quoted(section, &style.choices));
    let mut out = arg[..split].to_vec();
    out.extend_from_slice(&quoted);
    (out, true)
}

/// Blanks from `picks`; the first must also end an unquoted token unless one just closed.
fn separator(first: u8, rest: &[u8], after_quote: bool) -> Vec<u8> {
    let firsts = if after_quote { BLANKS } else { TOKEN_ENDS };
    let mut out = vec![firsts[usize::from(first) % firsts.len()]];
    out.extend(rest.iter().map(|&p| BLANKS[usize::from(p) % BLANKS.len()]));
    out
}

/// One valid inline line giving `args`: leading and trailing blanks, the given separators and
/// quoting, and a `\r\n` or bare `\n` terminator.
fn inline_wire(
    args: Vec<(Vec<u8>, InlineStyle)>,
    lead: Vec<u8>,
    trail: Option<(u8, Vec<u8>)>,
    crlf: bool,
) -> Wire {
    let mut bytes: Vec<u8> = lead
        .iter()
        .map(|&p| BLANKS[usize::from(p) % BLANKS.len()])
        .collect();
    let mut after_quote = true;
    for (i, (arg, style)) in args.iter().enumerate() {
        if i > 0 {
            bytes.extend(separator(style.sep.0, &style.sep.1, after_quote));
        }
        let (text, quoted) = inline_arg(arg, style);
        bytes.extend(text);
        after_quote = quoted;
    }
    if let Some((first, rest)) = trail {
        bytes.extend(separator(first, &rest, after_quote));
    }
    // A line starting with `*` would be a multibulk count.
    if bytes.first() == Some(&b'*') {
        bytes.insert(0, b' ');
    }
    bytes.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
    Wire {
        args: args.into_iter().map(|(arg, _)| arg).collect(),
        bytes,
    }
}

/// Bulk payloads: random binary (so `\r\n`, NUL and `*`/`$` lines inside), empty, and
/// protocol look-alikes.
fn arb_bulk_arg() -> impl Strategy<Value = Vec<u8>> {
    let fragment = prop::sample::select(vec![
        &b"\r\n"[..],
        b"\r",
        b"\n",
        b"\0",
        b"*1\r\n",
        b"$4\r\n",
        b"PING",
        b"\"",
        b"x",
    ]);
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..40),
        2 => prop::collection::vec(fragment, 0..8).prop_map(|f| f.concat()),
        1 => Just(Vec::new()),
        1 => prop::collection::vec(any::<u8>(), 200..3000),
    ]
}

/// Inline arguments: words, binary bytes, and the characters quoting and splitting care about.
fn arb_inline_arg() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => "[a-zA-Z0-9_:.*$-]{1,10}".prop_map(String::into_bytes),
        2 => prop::collection::vec(any::<u8>(), 0..16),
        2 => prop::collection::vec(
            prop::sample::select(b" \t\r\n\x0b\x0c\"'\\xnab*$\0\x7f\xff".to_vec()),
            0..10
        ),
    ]
}

fn arb_inline_wire(max_args: usize) -> impl Strategy<Value = Wire> {
    (
        prop::collection::vec((arb_inline_arg(), arb_inline_style()), 1..max_args),
        prop::collection::vec(any::<u8>(), 0..3),
        prop::option::of((any::<u8>(), prop::collection::vec(any::<u8>(), 0..3))),
        any::<bool>(),
    )
        .prop_map(|(args, lead, trail, crlf)| inline_wire(args, lead, trail, crlf))
}

/// Lines Redis consumes without running anything: `*0`, negative counts, blank lines.
fn arb_skipped_wire() -> impl Strategy<Value = Wire> {
    prop::sample::select(vec![
        &b"*0\r\n"[..],
        b"*-1\r\n",
        b"*-9223372036854775808\r\n",
        b"\r\n",
        b"\n",
        b" \t\x0b\x0c\r\n",
    ])
    .prop_map(|b| Wire {
        args: Vec::new(),
        bytes: b.to_vec(),
    })
}

/// Any valid command, multibulk or inline, or a skipped line; within the unauthenticated
/// limits (at most 10 arguments, short bulks) so it is valid either way.
fn arb_wire() -> impl Strategy<Value = Wire> {
    let args = prop::collection::vec(
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..24),
            "[a-zA-Z0-9*$:_-]{1,12}".prop_map(String::into_bytes),
        ],
        1..6,
    );
    prop_oneof![
        (args, any::<bool>()).prop_map(|(a, sloppy)| multibulk_wire(a, sloppy)),
        arb_inline_wire(6),
        arb_skipped_wire(),
    ]
}

/// Splits `data` at the given (unsorted, possibly repeated) fractions of its length.
fn chunks(data: &[u8], cuts: &[Index]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(data.len() + 1)).collect();
    at.sort_unstable();
    let mut out = Vec::new();
    let mut prev = 0;
    for c in at.into_iter().chain([data.len()]) {
        out.push(data[prev..c].to_vec());
        prev = c;
    }
    out
}

/// The commands `wires` stand for.
fn expected_commands(wires: &[Wire]) -> Vec<Vec<Bytes>> {
    wires
        .iter()
        .filter(|w| !w.args.is_empty())
        .map(|w| w.args.iter().map(|a| Bytes::copy_from_slice(a)).collect())
        .collect()
}

fn concat(wires: &[Wire]) -> Vec<u8> {
    wires.iter().flat_map(|w| w.bytes.iter().copied()).collect()
}

/// Feeds `parts` one by one; returns the commands and the error, if any, checking the
/// parser's retained state after every call.
fn feed(
    limits: ParserLimits,
    parts: &[Vec<u8>],
    authenticated: bool,
) -> (Vec<Vec<Bytes>>, Option<ProtocolError>) {
    let mut parser = RequestParser::new(limits);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut consumed = 0usize;
    let mut received = 0usize;
    for part in parts {
        buf.extend_from_slice(part);
        received += part.len();
        loop {
            let before = buf.len();
            let res = parser.next_command(&mut buf, authenticated);
            consumed += before - buf.len();
            assert_eq!(consumed + buf.len(), received);
            match res {
                Ok(Some(cmd)) => {
                    assert!(!cmd.is_empty());
                    out.push(cmd);
                }
                Ok(None) => {
                    // Asking again without new bytes changes nothing.
                    assert_eq!(parser.next_command(&mut buf, authenticated), Ok(None));
                    assert_eq!(consumed + buf.len(), received);
                    break;
                }
                Err(e) => {
                    buf.extend_from_slice(b"*1\r\n$4\r\nPING\r\nPING\r\n");
                    assert_eq!(parser.next_command(&mut buf, authenticated), Err(e));
                    assert!(parser.args.is_empty());
                    return (out, Some(e));
                }
            }
        }
        assert_bounded(&parser, &buf, consumed, received, authenticated);
    }
    (out, None)
}

fn assert_bounded(
    parser: &RequestParser,
    buf: &BytesMut,
    consumed: usize,
    received: usize,
    authenticated: bool,
) {
    let limits = parser.limits;
    // Held arguments came from consumed bytes, at least 6 wire bytes each (`$0\r\n\r\n`).
    let held: usize = parser.args.iter().map(Bytes::len).sum();
    assert!(held <= consumed);
    assert!(parser.args.len() * MIN_BULK_WIRE_LEN <= consumed);
    // Argument slots: reserved only for bytes that had arrived, grown only by pushes.
    let cap = parser.args.capacity();
    assert!(
        cap <= 4
            .max(2 * parser.args.len())
            .max(received / MIN_BULK_WIRE_LEN),
        "{cap} argument slots after {received} bytes"
    );
    assert!(cap <= ARGV_PREALLOC_MAX.max(2 * parser.args.len()));
    // Nothing held or awaited beyond the limits.
    let declared = parser.args.len() + parser.multibulk_remaining;
    assert!(declared <= limits.multibulk_len_max);
    assert!(parser.args.iter().all(|a| a.len() <= limits.bulk_len_max));
    assert!(parser.bulk_len.is_none_or(|len| len <= limits.bulk_len_max));
    if !authenticated {
        assert!(declared <= limits.unauth_multibulk_len_max);
        assert!(
            parser
                .args
                .iter()
                .all(|a| a.len() <= limits.unauth_bulk_len_max)
        );
        assert!(
            parser
                .bulk_len
                .is_none_or(|len| len <= limits.unauth_bulk_len_max)
        );
    }
    assert!(parser.bulk_len.is_none() || parser.multibulk_remaining > 0);
    assert!(parser.line_scanned_len <= buf.len());
    // Unparsed bytes wait only for a pending payload, a short line, or a line's last byte.
    let waiting_payload = parser.bulk_len.is_some_and(|len| buf.len() < len + 2);
    assert!(
        waiting_payload || buf.len() <= limits.inline_len_max || buf.last() == Some(&b'\r'),
        "{} unparsed bytes",
        buf.len()
    );
}

/// Protocol-flavoured garbage: framing fragments (counts and lengths around the limits of
/// [`small_limits`] and far beyond), quoting characters and random bytes.
fn arb_noise() -> impl Strategy<Value = Vec<u8>> {
    let punct = prop::sample::select(vec![
        &b"*"[..],
        b"$",
        b"\r\n",
        b"\r",
        b"\n",
        b"\0",
        b"\"",
        b"'",
        b"\\",
        b"\\x4",
        b" ",
        b"\x0b",
        b"-",
        b"0",
        b"12",
        b"99",
    ])
    .prop_map(<[u8]>::to_vec);
    let number = prop_oneof![
        8 => -2i64..20,
        1 => 60i64..70,
        1 => Just(i64::from(i32::MAX)),
        1 => any::<i64>(),
    ];
    let framing = prop_oneof![
        (number.clone()).prop_map(|n| format!("*{n}\r\n").into_bytes()),
        (number).prop_map(|n| format!("${n}\r\n").into_bytes()),
        "[a-z]{0,6}\r\n".prop_map(String::into_bytes),
    ];
    let token = prop_oneof![
        4 => framing,
        3 => punct,
        1 => prop::collection::vec(any::<u8>(), 0..8),
    ];
    prop::collection::vec(token, 0..80).prop_map(|t| t.concat())
}

/// Limits small enough for generated input to reach every one of them.
fn small_limits() -> ParserLimits {
    ParserLimits {
        bulk_len_max: 64,
        multibulk_len_max: 16,
        inline_len_max: 24,
        unauth_multibulk_len_max: 4,
        unauth_bulk_len_max: 8,
    }
}

/// A request Redis rejects, and the text it replies with after `-ERR `.
#[derive(Clone, Debug)]
struct BadRequest {
    bytes: Vec<u8>,
    text: Vec<u8>,
    /// Only an unauthenticated client gets this error.
    unauthenticated: bool,
    /// The error needs the input to stop here (a line too long for its terminator).
    last: bool,
}

fn bad(bytes: impl Into<Vec<u8>>, text: &str) -> BadRequest {
    BadRequest {
        bytes: bytes.into(),
        text: format!("Protocol error: {text}").into_bytes(),
        unauthenticated: false,
        last: false,
    }
}

/// One of each protocol error, in the variants Redis 7.0 gives that text for.
fn arb_bad_request() -> impl Strategy<Value = BadRequest> {
    let big = 64 * 1024;
    let invalid_count = prop::sample::select(vec![
        "x",
        "",
        "01",
        "+1",
        "-0",
        " 1",
        "1 ",
        "1x",
        "2147483648",
        "9223372036854775807",
        "-9223372036854775809",
        "99999999999999999999",
    ])
    .prop_map(|s| bad(format!("*{s}\r\n"), "invalid multibulk length"));
    let invalid_len = (
        2usize..5,
        prop::sample::select(vec![
            "x",
            "",
            "-1",
            "-0",
            "01",
            "+3",
            "536870913",
            "9223372036854775807",
            "99999999999999999999",
        ]),
    )
        .prop_map(|(n, s)| {
            bad(
                format!("*{n}\r\n$1\r\na\r\n${s}\r\n"),
                "invalid bulk length",
            )
        });
    let expected_dollar = (
        any::<u8>().prop_filter("a byte that can start a bulk-length line", |&b| {
            b != b'$' && b != 0
        }),
        "[a-z0-9]{0,5}",
    )
        .prop_map(|(got, rest)| {
            let mut bytes = b"*2\r\n$1\r\na\r\n".to_vec();
            bytes.push(got);
            bytes.extend_from_slice(rest.as_bytes());
            bytes.extend_from_slice(b"\r\n");
            // Redis writes CR and LF in an error as spaces.
            let shown = if got == b'\r' || got == b'\n' {
                b' '
            } else {
                got
            };
            let mut text = b"Protocol error: expected '$', got '".to_vec();
            text.extend_from_slice(&[shown, b'\'']);
            BadRequest {
                bytes,
                text,
                unauthenticated: false,
                last: false,
            }
        });
    let unauth_count = (11usize..2000).prop_map(|n| BadRequest {
        unauthenticated: true,
        ..bad(format!("*{n}\r\n"), "unauthenticated multibulk length")
    });
    let unauth_len = (16385usize..=512 * 1024 * 1024).prop_map(|n| BadRequest {
        unauthenticated: true,
        ..bad(
            format!("*2\r\n$3\r\nGET\r\n${n}\r\n"),
            "unauthenticated bulk length",
        )
    });
    let too_big = prop::sample::select(vec![
        // Head, filler, bytes of the head consumed before the line in question, text.
        (&b"*1"[..], b'1', 0, "too big mbulk count string"),
        (b"*1\0\r\n", b'x', 0, "too big mbulk count string"),
        (b"*1\r\n$", b'1', 4, "too big bulk count string"),
        (b"*1\r\n$4\0\r\n", b'x', 4, "too big bulk count string"),
        (b"P", b'P', 0, "too big inline request"),
        (b"PI\0NG\r\n", b'x', 0, "too big inline request"),
    ])
    .prop_map(move |(head, fill, consumed, text)| {
        // One byte more than a line may take without its terminator.
        let mut bytes = head.to_vec();
        bytes.resize(consumed + big + 1, fill);
        BadRequest {
            last: true,
            ..bad(bytes, text)
        }
    });
    let unbalanced = prop::sample::select(vec![
        &b"ECHO \"a\"b\r\n"[..],
        b"ECHO \"ab\r\n",
        b"ECHO 'a'b\r\n",
        b"ECHO 'ab\r\n",
        b"ECHO \"a\\\"\r\n",
        b"ECHO \"a\\\r\n",
        b"ECHO 'a\\'\n",
        b"\"\r\n",
        b"a\"b\"c\n",
        b"x \"\\x41\"\x0b'\r\n",
    ])
    .prop_map(|b| bad(b, "unbalanced quotes in request"));
    prop_oneof![
        invalid_count,
        invalid_len,
        expected_dollar,
        unauth_count,
        unauth_len,
        too_big,
        unbalanced,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// (a) Multibulk commands with binary, empty and protocol-looking arguments come out the
    /// same whether the stream arrives whole or cut anywhere (down to single bytes), and
    /// leave nothing behind.
    #[test]
    fn parser_prop_multibulk_any_split_gives_same_commands(
        commands in prop::collection::vec(
            prop_oneof![
                6 => prop::collection::vec(arb_bulk_arg(), 1..10)
                    .prop_map(|args| multibulk_wire(args, false)),
                1 => prop::sample::select(vec![&b"*0\r\n"[..], b"*-1\r\n", b"*-42\r\n"])
                    .prop_map(|b| Wire { args: Vec::new(), bytes: b.to_vec() }),
            ],
            0..10,
        ),
        cuts in prop::collection::vec(any::<Index>(), 0..40),
        authenticated in any::<bool>(),
    ) {
        let data = concat(&commands);
        let expected = expected_commands(&commands);
        let limits = ParserLimits::default();
        let whole = feed(limits, std::slice::from_ref(&data), authenticated);
        prop_assert_eq!(&whole, &(expected.clone(), None));
        let split = feed(limits, &chunks(&data, &cuts), authenticated);
        prop_assert_eq!(split, (expected, None));
        let mut parser = RequestParser::default();
        let mut buf = BytesMut::from(&data[..]);
        while parser.next_command(&mut buf, authenticated).unwrap().is_some() {}
        prop_assert!(buf.is_empty());
        prop_assert_eq!(parser.multibulk_remaining, 0);
        prop_assert!(parser.args.is_empty());
    }

    /// (b) Inline lines, with every quoting and escape `sdssplitargs` accepts, blanks
    /// (`\v`, `\f`, lone `\r`) between arguments, and either terminator, give the arguments
    /// they encode, whole or cut anywhere.
    #[test]
    fn parser_prop_inline_any_split_gives_same_commands(
        lines in prop::collection::vec(
            prop_oneof![6 => arb_inline_wire(8), 1 => arb_skipped_wire()],
            0..10,
        ),
        cuts in prop::collection::vec(any::<Index>(), 0..20),
        authenticated in any::<bool>(),
    ) {
        let data = concat(&lines);
        let expected = expected_commands(&lines);
        let whole = feed(ParserLimits::default(), std::slice::from_ref(&data), authenticated);
        prop_assert_eq!(&whole, &(expected.clone(), None));
        let split = feed(ParserLimits::default(), &chunks(&data, &cuts), authenticated);
        prop_assert_eq!(split, (expected, None));
    }

    /// (a)+(b) Both kinds pipelined together, cut anywhere.
    #[test]
    fn parser_prop_any_split_gives_same_commands(
        wires in prop::collection::vec(arb_wire(), 0..12),
        cuts in prop::collection::vec(any::<Index>(), 0..10),
        authenticated in any::<bool>(),
    ) {
        let data = concat(&wires);
        let expected = expected_commands(&wires);
        let whole = feed(ParserLimits::default(), std::slice::from_ref(&data), authenticated);
        prop_assert_eq!(&whole, &(expected.clone(), None));
        let split = feed(ParserLimits::default(), &chunks(&data, &cuts), authenticated);
        prop_assert_eq!(split, (expected, None));
    }

    /// (c) Protocol-flavoured garbage under small limits: no panic, bounded state after every
    /// call (checked by `feed`), and cutting the input never changes a command.
    #[test]
    fn parser_prop_arbitrary_bytes_never_panic_and_stay_bounded(
        data in arb_noise(),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
        authenticated in any::<bool>(),
    ) {
        let limits = small_limits();
        let whole = feed(limits, std::slice::from_ref(&data), authenticated);
        let split = feed(limits, &chunks(&data, &cuts), authenticated);
        // Splitting can only bring a "too big" verdict earlier, never change a command.
        prop_assert!(split.0.len() <= whole.0.len());
        prop_assert_eq!(&split.0[..], &whole.0[..split.0.len()]);
        if split.1.is_none() {
            prop_assert_eq!(split, whole);
        }
    }

    /// (c) Uniformly random bytes, and valid commands with random bytes between them, under
    /// the default limits: no panic, bounded state, and the same outcome however cut (no
    /// line here is long enough for a "too big" verdict to move).
    #[test]
    fn parser_prop_random_bytes_default_limits(
        pieces in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..64),
                arb_wire().prop_map(|w| w.bytes),
            ],
            0..12,
        ),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
        authenticated in any::<bool>(),
    ) {
        let data = pieces.concat();
        let limits = ParserLimits::default();
        let whole = feed(limits, std::slice::from_ref(&data), authenticated);
        let split = feed(limits, &chunks(&data, &cuts), authenticated);
        prop_assert_eq!(split, whole);
    }

    /// (c) Whatever count and length a client declares, the parser reserves argument slots
    /// only for bytes that arrived, never grows the caller's buffer, and holds a declared
    /// size only within the limits.
    #[test]
    fn parser_prop_declared_sizes_allocate_only_for_received_bytes(
        count in prop_oneof![1i64..20, 1i64..=2048, Just(i64::from(i32::MAX)), any::<i64>()],
        len in prop_oneof![0i64..40, Just(16385), Just(512 * 1024 * 1024), any::<i64>()],
        payload in prop::collection::vec(any::<u8>(), 0..120),
        authenticated in any::<bool>(),
    ) {
        let mut data = format!("*{count}\r\n${len}\r\n").into_bytes();
        data.extend_from_slice(&payload);
        let mut buf = BytesMut::with_capacity(data.len());
        buf.extend_from_slice(&data);
        let buf_capacity = buf.capacity();
        let mut parser = RequestParser::default();
        let res = parser.next_command(&mut buf, authenticated);
        prop_assert!(buf.capacity() <= buf_capacity);
        prop_assert!(parser.args.capacity() <= 4.max(data.len() / MIN_BULK_WIRE_LEN));
        let expected = if count > i64::from(i32::MAX) {
            Some(Err(ProtocolErrorKind::InvalidMultibulkLength.into()))
        } else if count <= 0 {
            None // Skipped; the rest is an inline line.
        } else if !authenticated && count > 10 {
            Some(Err(ProtocolErrorKind::UnauthenticatedMultibulkLength.into()))
        } else if !(0..=512 * 1024 * 1024).contains(&len) {
            Some(Err(ProtocolErrorKind::InvalidBulkLength.into()))
        } else if !authenticated && len > 16 * 1024 {
            Some(Err(ProtocolErrorKind::UnauthenticatedBulkLength.into()))
        } else {
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            if payload.len() < len + 2 {
                prop_assert_eq!(parser.bulk_len, Some(len));
                Some(Ok(None))
            } else if count == 1 {
                Some(Ok(Some(vec![Bytes::copy_from_slice(&payload[..len])])))
            } else {
                None // The next arguments come from random bytes.
            }
        };
        if let Some(expected) = expected {
            prop_assert_eq!(res, expected);
        }
    }

    /// (d) After valid commands, each malformed request gets Redis 7.0's exact error text,
    /// however the input is cut, and the parser then repeats that error forever.
    #[test]
    fn parser_prop_errors_use_redis_texts(
        before in prop::collection::vec(arb_wire(), 0..6),
        request in arb_bad_request(),
        after in prop::collection::vec(any::<u8>(), 0..16),
        cuts in prop::collection::vec(any::<Index>(), 0..8),
        authenticated in any::<bool>(),
    ) {
        let authenticated = authenticated && !request.unauthenticated;
        let mut data = concat(&before);
        data.extend_from_slice(&request.bytes);
        if !request.last {
            data.extend_from_slice(&after);
        }
        let expected = expected_commands(&before);
        for parts in [vec![data.clone()], chunks(&data, &cuts)] {
            let (commands, err) = feed(ParserLimits::default(), &parts, authenticated);
            prop_assert_eq!(&commands, &expected);
            let err = err.expect("an error");
            prop_assert_eq!(err.message_bytes(), request.text.clone());
            prop_assert_eq!(
                err.to_string(),
                String::from_utf8_lossy(&request.text).into_owned()
            );
        }
    }
}
