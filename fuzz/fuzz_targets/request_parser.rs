//! Hostile client bytes through the request path up to execution: the RESP request parser,
//! fed in two reads cut at a fuzzer-chosen point, then the typed command decoding of every
//! command it produces.
//!
//! Input layout: byte 0 holds flags (bit 0: the client is authenticated, bit 1: tiny
//! parser limits so short inputs reach every limit), bytes 1..3 pick the cut (little-endian,
//! modulo the rest's length + 1), the rest is what the client sent.
//!
//! Besides "no panic", it checks that the cut changes no command (only a "too big" verdict
//! may come earlier), that errors are sticky and one line long, and that a decoded
//! transaction survives its own `REDRAFT.EXEC` encoding.

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use redraft::command::{self, Command};
use redraft::resp::{ParserLimits, Protocol, ProtocolError, Reply, RequestParser};

/// Limits small enough for fuzzed inputs to hit each of them.
const TINY: ParserLimits = ParserLimits {
    bulk_len_max: 64,
    multibulk_len_max: 16,
    inline_len_max: 32,
    unauth_multibulk_len_max: 4,
    unauth_bulk_len_max: 8,
};

fuzz_target!(|data: &[u8]| {
    let [flags, cut_lo, cut_hi, input @ ..] = data else {
        return;
    };
    let authenticated = flags & 1 != 0;
    let limits = if flags & 2 != 0 {
        TINY
    } else {
        ParserLimits::default()
    };
    let cut = usize::from(u16::from_le_bytes([*cut_lo, *cut_hi])) % (input.len() + 1);

    let whole = feed(limits, &[input], authenticated);
    let split = feed(limits, &[&input[..cut], &input[cut..]], authenticated);
    assert!(split.0.len() <= whole.0.len());
    assert_eq!(split.0[..], whole.0[..split.0.len()]);
    if split.1.is_none() {
        assert_eq!(split, whole);
    }
    for args in whole.0 {
        decode(args);
    }
});

/// Feeds `parts` as successive reads; returns the commands and the error that ended them.
fn feed(
    limits: ParserLimits,
    parts: &[&[u8]],
    authenticated: bool,
) -> (Vec<Vec<Bytes>>, Option<ProtocolError>) {
    let mut parser = RequestParser::new(limits);
    let mut buf = BytesMut::new();
    let mut commands = Vec::new();
    for part in parts {
        buf.extend_from_slice(part);
        loop {
            match parser.next_command(&mut buf, authenticated) {
                Ok(Some(args)) => {
                    assert!(!args.is_empty());
                    commands.push(args);
                }
                Ok(None) => {
                    let len = buf.len();
                    assert_eq!(parser.next_command(&mut buf, authenticated), Ok(None));
                    assert_eq!(buf.len(), len);
                    break;
                }
                Err(err) => {
                    let text = err.message_bytes();
                    assert!(!text.contains(&b'\r') && !text.contains(&b'\n'));
                    buf.extend_from_slice(b"PING\r\n");
                    assert_eq!(parser.next_command(&mut buf, authenticated), Err(err));
                    return (commands, Some(err));
                }
            }
        }
    }
    (commands, None)
}

/// The typed decoding of one command, and what the connection asks of the result.
fn decode(args: Vec<Bytes>) {
    match command::parse(args) {
        Ok(command) => {
            let _ = command.access();
            let _ = command.routing_key();
            let _ = command.allowed_before_auth();
            if let Command::Transaction { commands, watched } = &command {
                let again = command::parse(Command::transaction_args(commands, watched));
                assert_eq!(again.as_ref(), Ok(&command));
            }
        }
        Err(reply) => {
            assert!(reply.is_error(), "{reply:?}");
            for protocol in [Protocol::Resp2, Protocol::Resp3] {
                assert_one_error_line(&reply, protocol);
            }
        }
    }
}

/// An error reply must reach the client as exactly one `-…\r\n` line, whatever client bytes
/// it quotes.
fn assert_one_error_line(reply: &Reply, protocol: Protocol) {
    let mut out = BytesMut::new();
    reply.encode(protocol, &mut out);
    let line = out
        .strip_prefix(b"-")
        .and_then(|rest| rest.strip_suffix(b"\r\n"))
        .unwrap_or_else(|| panic!("not an error line: {out:?}"));
    assert!(
        !line.contains(&b'\r') && !line.contains(&b'\n'),
        "error line broken: {out:?}"
    );
}
