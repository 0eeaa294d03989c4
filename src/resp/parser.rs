//! Incremental RESP request parser: client bytes in, argument vectors out.
//!
//! Owns the request framing of Redis 7.0's `networking.c` (`processMultibulkBuffer`,
//! `processInlineBuffer`, `sdssplitargs`, `string2ll`) and its exact error texts. It never
//! touches a socket, never executes anything and never allocates from a size the client
//! merely declared.
//!
//! Invariants:
//! - Bytes are taken off the front of the caller's buffer only once they are fully parsed;
//!   what was consumed is remembered in the parser (multibulk count, bulk length, arguments
//!   so far), so a command can arrive over any number of reads and nothing is parsed twice.
//! - A line still lacking its terminator is scanned only past the part already scanned, and
//!   a bulk payload is not scanned at all, so a request costs O(its size) over all reads.
//! - Bulk arguments are zero-copy slices of the caller's buffer (`split_to(n).freeze()`);
//!   inline arguments are slices too unless quoting forced a rewrite.
//! - The argument vector is preallocated for at most [`ARGV_PREALLOC_MAX`] entries, and for
//!   no more than the bytes already buffered after the count line could hold; it grows only
//!   as arguments actually arrive. A bare `*2147483647\r\n` reserves no slot at all.
//! - When more bytes are needed, the unparsed rest of the buffer is at most `inline_len_max`
//!   bytes, unless a bulk payload of an accepted length is pending or the buffer ends in a
//!   count line's `\r` (Redis waits for the one byte it skips after it).
//! - After an error the parser is spent: it returns that same error on every later call.
//!
//! Redis quirks kept on purpose, all checked against redis-server 7.0.15:
//! - The byte after a count line's `\r` and the two bytes after a bulk payload are skipped
//!   without being checked (`*1\rX$4\rYPINGxx` is a valid `PING`).
//! - Redis finds line ends with `strchr`, which stops at a NUL byte: a NUL before the line
//!   end stalls the connection until more than 64 KiB are buffered, then the "too big" error
//!   of that line kind follows.
//! - `sdssplitargs` skips leading blanks with `isspace` (which includes `\v` and `\f`) but ends
//!   an unquoted token only at space, `\t`, `\r` or `\n`: `\vGET\vk` is the single argument
//!   `GET\vk`.

use bytes::{Buf, Bytes, BytesMut};
use memchr::memchr2;
use std::fmt;

use crate::resp::string2ll;

/// Most argument slots reserved up front from a declared multibulk count (Redis caps its
/// `argv` preallocation the same way). Fewer are reserved when fewer arguments can have
/// arrived yet.
pub const ARGV_PREALLOC_MAX: usize = 1024;

/// Fewest bytes one bulk argument takes on the wire (`$0\r\n\r\n`).
const MIN_BULK_WIRE_LEN: usize = 6;

/// Size limits the parser enforces, with Redis 7.0's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParserLimits {
    /// Largest accepted bulk string (`proto-max-bulk-len`), bytes. Default 512 MiB.
    pub bulk_len_max: usize,
    /// Largest accepted multibulk count (Redis 7.0: `INT_MAX`), arguments.
    pub multibulk_len_max: usize,
    /// Longest inline request or count line buffered without its terminator
    /// (`PROTO_INLINE_MAX_SIZE`, 64 KiB), bytes.
    pub inline_len_max: usize,
    /// Largest multibulk count accepted from an unauthenticated client, arguments.
    pub unauth_multibulk_len_max: usize,
    /// Largest bulk string accepted from an unauthenticated client, bytes.
    pub unauth_bulk_len_max: usize,
}

impl Default for ParserLimits {
    fn default() -> Self {
        ParserLimits {
            bulk_len_max: 512 * 1024 * 1024,
            multibulk_len_max: i32::MAX as usize,
            inline_len_max: 64 * 1024,
            unauth_multibulk_len_max: 10,
            unauth_bulk_len_max: 16 * 1024,
        }
    }
}

/// What was wrong with a request; see [`ProtocolError`] for the texts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolErrorKind {
    /// `*` line not a number in Redis's `string2ll` syntax, or above `multibulk_len_max`.
    InvalidMultibulkLength,
    /// `*` count above `unauth_multibulk_len_max` before authentication.
    UnauthenticatedMultibulkLength,
    /// No `\r` within `inline_len_max` bytes of a `*` line.
    TooBigMultibulkCountString,
    /// A bulk-length line started with this byte instead of `$`.
    ExpectedDollar(u8),
    /// `$` line not a number, negative, or above `bulk_len_max`.
    InvalidBulkLength,
    /// `$` length above `unauth_bulk_len_max` before authentication.
    UnauthenticatedBulkLength,
    /// No `\r` within `inline_len_max` bytes of a `$` line.
    TooBigBulkCountString,
    /// No `\n` within `inline_len_max` bytes of an inline request.
    TooBigInlineRequest,
    /// An inline quote left open, or a closing quote not followed by a blank.
    UnbalancedQuotes,
}

/// A malformed request; the caller replies `-ERR {err}\r\n` and closes the connection.
///
/// `Display` gives exactly the text redis-server 7.0 puts after `-ERR `, except that a
/// non-ASCII byte quoted by [`ProtocolErrorKind::ExpectedDollar`] shows as U+FFFD; use
/// [`ProtocolError::message_bytes`] for the byte-exact text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolError(pub ProtocolErrorKind);

impl ProtocolError {
    /// What was wrong.
    pub fn kind(&self) -> ProtocolErrorKind {
        self.0
    }

    /// The byte-exact text redis-server sends after `-ERR ` (without the `\r\n`).
    pub fn message_bytes(&self) -> Vec<u8> {
        let text: &str = match self.0 {
            ProtocolErrorKind::InvalidMultibulkLength => "invalid multibulk length",
            ProtocolErrorKind::UnauthenticatedMultibulkLength => "unauthenticated multibulk length",
            ProtocolErrorKind::TooBigMultibulkCountString => "too big mbulk count string",
            ProtocolErrorKind::InvalidBulkLength => "invalid bulk length",
            ProtocolErrorKind::UnauthenticatedBulkLength => "unauthenticated bulk length",
            ProtocolErrorKind::TooBigBulkCountString => "too big bulk count string",
            ProtocolErrorKind::TooBigInlineRequest => "too big inline request",
            ProtocolErrorKind::UnbalancedQuotes => "unbalanced quotes in request",
            ProtocolErrorKind::ExpectedDollar(got) => {
                let mut msg = b"Protocol error: expected '$', got '".to_vec();
                // addReplyErrorFormat maps CR/LF to spaces; a NUL would end the C string
                // (unreachable: a NUL stalls the line search first).
                match got {
                    b'\r' | b'\n' => msg.extend_from_slice(b" '"),
                    0 => {}
                    b => msg.extend_from_slice(&[b, b'\'']),
                }
                return msg;
            }
        };
        format!("Protocol error: {text}").into_bytes()
    }
}

impl From<ProtocolErrorKind> for ProtocolError {
    fn from(kind: ProtocolErrorKind) -> Self {
        ProtocolError(kind)
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.message_bytes()))
    }
}

impl std::error::Error for ProtocolError {}

/// Parses client requests from a byte buffer, resuming across reads.
///
/// One parser per connection, always fed the same buffer, to which the caller only appends.
#[derive(Debug, Default)]
pub struct RequestParser {
    limits: ParserLimits,
    /// Arguments the multibulk in progress still owes; 0 between commands.
    multibulk_remaining: usize,
    /// Declared length of the bulk whose payload is awaited.
    bulk_len: Option<usize>,
    /// Arguments of the multibulk in progress.
    args: Vec<Bytes>,
    /// Front bytes of the buffer already known to hold neither the line terminator nor a NUL.
    line_scanned_len: usize,
    /// A NUL came before the terminator: Redis's `strchr` can never see this line end.
    line_stalled: bool,
    /// The error that ended this connection, repeated on every later call.
    failed: Option<ProtocolError>,
}

/// Outcome of one parse step.
enum Step {
    Command(Vec<Bytes>),
    /// A command Redis ignores (`*0`, `*-1`, blank inline line) was consumed.
    Skipped,
    NeedMore,
}

impl RequestParser {
    /// A parser enforcing `limits`.
    pub fn new(limits: ParserLimits) -> Self {
        RequestParser {
            limits,
            ..RequestParser::default()
        }
    }

    /// Takes the next complete command off the front of `buf` (consuming its bytes).
    ///
    /// `Ok(None)`: need more bytes; everything consumed so far is remembered in `self`.
    /// `Err`: a protocol error; the caller replies `-ERR {err}\r\n` and closes the connection.
    /// `authenticated` is false only while the connection still owes an `AUTH`; it is read
    /// afresh for each count line, as Redis does, so pass the current state on every call.
    /// Never returns an empty command.
    pub fn next_command(
        &mut self,
        buf: &mut BytesMut,
        authenticated: bool,
    ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        loop {
            match self.step(buf, authenticated) {
                Ok(Step::Command(args)) => return Ok(Some(args)),
                Ok(Step::Skipped) => {}
                Ok(Step::NeedMore) => return Ok(None),
                Err(kind) => {
                    let err = ProtocolError(kind);
                    self.failed = Some(err);
                    self.args = Vec::new();
                    return Err(err);
                }
            }
        }
    }

    fn step(&mut self, buf: &mut BytesMut, authenticated: bool) -> Result<Step, ProtocolErrorKind> {
        if self.multibulk_remaining == 0 {
            match buf.first() {
                None => return Ok(Step::NeedMore),
                Some(b'*') => match self.read_multibulk_count(buf, authenticated)? {
                    Some(0) => return Ok(Step::Skipped),
                    Some(count) => {
                        self.multibulk_remaining = count;
                        // Slots only for arguments whose bytes may already be here: a
                        // declared count is not a reason to allocate.
                        let arrived = buf.len() / MIN_BULK_WIRE_LEN;
                        self.args = Vec::with_capacity(count.min(ARGV_PREALLOC_MAX).min(arrived));
                    }
                    None => return Ok(Step::NeedMore),
                },
                Some(_) => return self.read_inline(buf),
            }
        }
        self.read_bulks(buf, authenticated)
    }

    /// Parses a `*<count>\r\n` line; `Some(0)` stands for any count Redis skips (`<= 0`).
    fn read_multibulk_count(
        &mut self,
        buf: &mut BytesMut,
        authenticated: bool,
    ) -> Result<Option<usize>, ProtocolErrorKind> {
        let Some(cr) = self.find_line_end(buf, b'\r') else {
            self.check_unterminated_len(buf, ProtocolErrorKind::TooBigMultibulkCountString)?;
            return Ok(None);
        };
        // Redis only asks for one more byte after the `\r`, whatever it is.
        if cr + 1 >= buf.len() {
            return Ok(None);
        }
        let count = string2ll(&buf[1..cr]).ok_or(ProtocolErrorKind::InvalidMultibulkLength)?;
        let count = match usize::try_from(count) {
            Ok(n) => n,
            Err(_) if count < 0 => 0,
            Err(_) => return Err(ProtocolErrorKind::InvalidMultibulkLength),
        };
        if count > self.limits.multibulk_len_max {
            return Err(ProtocolErrorKind::InvalidMultibulkLength);
        }
        if !authenticated && count > self.limits.unauth_multibulk_len_max {
            return Err(ProtocolErrorKind::UnauthenticatedMultibulkLength);
        }
        self.consume(buf, cr + 2);
        Ok(Some(count))
    }

    /// Reads `$<len>\r\n<payload>\r\n` arguments until the multibulk is complete.
    fn read_bulks(
        &mut self,
        buf: &mut BytesMut,
        authenticated: bool,
    ) -> Result<Step, ProtocolErrorKind> {
        while self.multibulk_remaining > 0 {
            let len = match self.bulk_len {
                Some(len) => len,
                None => match self.read_bulk_len(buf, authenticated)? {
                    Some(len) => len,
                    None => return Ok(Step::NeedMore),
                },
            };
            // Payload plus two trailing bytes, which Redis skips unchecked.
            if buf.len() < 2 || buf.len() - 2 < len {
                return Ok(Step::NeedMore);
            }
            self.args.push(buf.split_to(len).freeze());
            self.consume(buf, 2);
            self.bulk_len = None;
            self.multibulk_remaining -= 1;
        }
        Ok(Step::Command(std::mem::take(&mut self.args)))
    }

    fn read_bulk_len(
        &mut self,
        buf: &mut BytesMut,
        authenticated: bool,
    ) -> Result<Option<usize>, ProtocolErrorKind> {
        let Some(cr) = self.find_line_end(buf, b'\r') else {
            self.check_unterminated_len(buf, ProtocolErrorKind::TooBigBulkCountString)?;
            return Ok(None);
        };
        if cr + 1 >= buf.len() {
            return Ok(None);
        }
        if buf[0] != b'$' {
            return Err(ProtocolErrorKind::ExpectedDollar(buf[0]));
        }
        let len = string2ll(&buf[1..cr])
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n <= self.limits.bulk_len_max)
            .ok_or(ProtocolErrorKind::InvalidBulkLength)?;
        if !authenticated && len > self.limits.unauth_bulk_len_max {
            return Err(ProtocolErrorKind::UnauthenticatedBulkLength);
        }
        self.consume(buf, cr + 2);
        self.bulk_len = Some(len);
        Ok(Some(len))
    }

    fn read_inline(&mut self, buf: &mut BytesMut) -> Result<Step, ProtocolErrorKind> {
        let Some(lf) = self.find_line_end(buf, b'\n') else {
            self.check_unterminated_len(buf, ProtocolErrorKind::TooBigInlineRequest)?;
            return Ok(Step::NeedMore);
        };
        let line = buf.split_to(lf + 1).freeze();
        self.reset_line_scan();
        // Only one `\r` before the `\n` belongs to the terminator.
        let end = if lf > 0 && line[lf - 1] == b'\r' {
            lf - 1
        } else {
            lf
        };
        let args =
            split_inline_args(&line.slice(..end)).ok_or(ProtocolErrorKind::UnbalancedQuotes)?;
        Ok(if args.is_empty() {
            Step::Skipped
        } else {
            Step::Command(args)
        })
    }

    /// Index of the first `term` at the front of `buf`, as Redis's `strchr` finds it: never
    /// past a NUL. Remembers how far it looked so a line arriving piecemeal is scanned once.
    fn find_line_end(&mut self, buf: &[u8], term: u8) -> Option<usize> {
        if self.line_stalled {
            return None;
        }
        // Guards against a caller that shrank the buffer behind our back.
        let from = self.line_scanned_len.min(buf.len());
        match memchr2(term, 0, &buf[from..]) {
            Some(i) => {
                self.line_scanned_len = from + i;
                if buf[from + i] == 0 {
                    self.line_stalled = true;
                    None
                } else {
                    Some(from + i)
                }
            }
            None => {
                self.line_scanned_len = buf.len();
                None
            }
        }
    }

    /// Redis's verdict on a line with no terminator yet: keep waiting, unless more than
    /// `inline_len_max` bytes are buffered.
    fn check_unterminated_len(
        &self,
        buf: &BytesMut,
        err: ProtocolErrorKind,
    ) -> Result<(), ProtocolErrorKind> {
        if buf.len() > self.limits.inline_len_max {
            Err(err)
        } else {
            Ok(())
        }
    }

    fn consume(&mut self, buf: &mut BytesMut, n: usize) {
        buf.advance(n);
        self.reset_line_scan();
    }

    fn reset_line_scan(&mut self) {
        self.line_scanned_len = 0;
        self.line_stalled = false;
    }
}

/// C's `isspace` in the "C" locale (unlike `u8::is_ascii_whitespace`, includes `\v`).
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

fn hex_val(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Redis's `sdssplitargs` over one inline line (terminator already removed, no NUL inside).
/// `None` on unbalanced quotes. Unquoted tokens are slices of `line`.
fn split_inline_args(line: &Bytes) -> Option<Vec<Bytes>> {
    // The C code reads the terminating NUL past the end; 0 plays that part here.
    let at = |i: usize| line.get(i).copied().unwrap_or(0);
    let mut args = Vec::new();
    let mut p = 0;
    loop {
        while p < line.len() && is_c_space(line[p]) {
            p += 1;
        }
        if p >= line.len() {
            return Some(args);
        }
        let start = p;
        loop {
            match at(p) {
                b' ' | b'\n' | b'\r' | b'\t' | 0 => {
                    args.push(line.slice(start..p));
                    break;
                }
                quote @ (b'"' | b'\'') => {
                    let mut token = line[start..p].to_vec();
                    p = read_quoted(line, p + 1, quote, &mut token)?;
                    args.push(Bytes::from(token));
                    break;
                }
                _ => p += 1,
            }
        }
    }
}

/// Appends the quoted text starting at `p` (just past the opening `quote`) to `token`;
/// returns the index just past the closing quote.
fn read_quoted(line: &[u8], mut p: usize, quote: u8, token: &mut Vec<u8>) -> Option<usize> {
    let at = |i: usize| line.get(i).copied().unwrap_or(0);
    loop {
        let c = at(p);
        if c == 0 {
            return None;
        }
        if c == quote {
            // A closing quote must be followed by a blank or the end of the line.
            let next = at(p + 1);
            return (next == 0 || is_c_space(next)).then_some(p + 1);
        }
        if c == b'\\' && quote == b'"' {
            if at(p + 1) == b'x'
                && let (Some(hi), Some(lo)) = (hex_val(at(p + 2)), hex_val(at(p + 3)))
            {
                token.push(hi * 16 + lo);
                p += 4;
                continue;
            }
            if at(p + 1) != 0 {
                token.push(match at(p + 1) {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => b'\x08',
                    b'a' => b'\x07',
                    other => other,
                });
                p += 2;
                continue;
            }
        } else if c == b'\\' && at(p + 1) == b'\'' && quote == b'\'' {
            token.push(b'\'');
            p += 2;
            continue;
        }
        token.push(c);
        p += 1;
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(
        parser: &mut RequestParser,
        buf: &mut BytesMut,
    ) -> Result<Vec<Vec<Bytes>>, ProtocolError> {
        let mut out = Vec::new();
        while let Some(cmd) = parser.next_command(buf, true)? {
            out.push(cmd);
        }
        Ok(out)
    }

    /// Parses `input` whole with default limits; returns the commands and the final error.
    fn parse_input(input: &[u8], authenticated: bool) -> (Vec<Vec<Bytes>>, Option<ProtocolError>) {
        let mut parser = RequestParser::default();
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        loop {
            match parser.next_command(&mut buf, authenticated) {
                Ok(Some(cmd)) => out.push(cmd),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    fn cmd(args: &[&[u8]]) -> Vec<Bytes> {
        args.iter().map(|a| Bytes::copy_from_slice(a)).collect()
    }

    fn error_text(input: &[u8], authenticated: bool) -> String {
        parse_input(input, authenticated)
            .1
            .expect("an error")
            .to_string()
    }

    #[test]
    fn parser_multibulk_pipelined_commands_in_order() {
        let (cmds, err) = parse_input(
            b"*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\nECHO hi\r\n",
            true,
        );
        assert_eq!(err, None);
        assert_eq!(
            cmds,
            vec![
                cmd(&[b"PING"]),
                cmd(&[b"SET", b"k", b"v1"]),
                cmd(&[b"ECHO", b"hi"])
            ]
        );
    }

    #[test]
    fn parser_multibulk_binary_args_with_crlf_and_nul() {
        let (cmds, err) = parse_input(b"*2\r\n$3\r\nSET\r\n$5\r\na\r\n\0b\r\n", true);
        assert_eq!(err, None);
        assert_eq!(cmds, vec![cmd(&[b"SET", b"a\r\n\0b"])]);
    }

    #[test]
    fn parser_multibulk_byte_by_byte_resumes() {
        let input = b"*2\r\n$4\r\nECHO\r\n$11\r\nhello world\r\n*1\r\n$4\r\nPING\r\n";
        let mut parser = RequestParser::default();
        let mut buf = BytesMut::new();
        let mut cmds = Vec::new();
        for &b in input {
            buf.extend_from_slice(&[b]);
            cmds.extend(parse_all(&mut parser, &mut buf).unwrap());
        }
        assert_eq!(cmds, vec![cmd(&[b"ECHO", b"hello world"]), cmd(&[b"PING"])]);
        assert!(buf.is_empty());
    }

    #[test]
    fn parser_multibulk_crlf_bytes_are_not_checked() {
        // Redis skips the byte after `\r` and the two bytes after a payload unchecked.
        let (cmds, err) = parse_input(b"*1\rX$4\rYPINGxx*1\r\n$4\r\nPING\r\n", true);
        assert_eq!(err, None);
        assert_eq!(cmds, vec![cmd(&[b"PING"]), cmd(&[b"PING"])]);
    }

    #[test]
    fn parser_multibulk_empty_and_negative_counts_are_skipped() {
        let (cmds, err) = parse_input(
            b"*0\r\n*-1\r\n*-5\r\n*-9223372036854775808\r\n*1\r\n$4\r\nPING\r\n",
            true,
        );
        assert_eq!(err, None);
        assert_eq!(cmds, vec![cmd(&[b"PING"])]);
    }

    #[test]
    fn parser_multibulk_empty_bulk_arg() {
        let (cmds, err) = parse_input(b"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", true);
        assert_eq!(err, None);
        assert_eq!(cmds, vec![cmd(&[b"ECHO", b""])]);
    }

    #[test]
    fn parser_error_invalid_multibulk_length() {
        let bad: [&[u8]; 9] = [
            b"*x\r\n",
            b"*\r\n",
            b"*01\r\n",
            b"*+1\r\n",
            b"*-0\r\n",
            b"* 1\r\n",
            b"*2147483648\r\n",
            b"*-9223372036854775809\r\n",
            b"*100000000000000000000\r\n",
        ];
        for input in bad {
            assert_eq!(
                error_text(input, true),
                "Protocol error: invalid multibulk length",
                "{input:?}"
            );
        }
    }

    #[test]
    fn parser_multibulk_count_int_max_is_accepted_without_allocating() {
        let mut parser = RequestParser::default();
        let mut buf = BytesMut::from(&b"*2147483647\r\n"[..]);
        assert_eq!(parser.next_command(&mut buf, true), Ok(None));
        assert_eq!(parser.multibulk_remaining, i32::MAX as usize);
        assert_eq!(parser.args.capacity(), 0);
    }

    /// Regression (found by the parser property tests): argument slots were preallocated from
    /// the declared count, so `*1000000` alone reserved megabytes.
    #[test]
    fn regression_argv_was_preallocated_from_the_declared_count() {
        // Slots for at most the arguments the buffered bytes could hold (6 bytes each).
        let mut parser = RequestParser::default();
        let mut buf = BytesMut::from(&b"*2147483647\r\n$3\r\nSET\r\n$1\r\nk"[..]);
        assert_eq!(parser.next_command(&mut buf, true), Ok(None));
        assert_eq!(parser.args.len(), 1);
        assert!(parser.args.capacity() <= 4, "{}", parser.args.capacity());
        // A whole pipeline in one read still gets its slots at once, up to the cap.
        let mut wire = b"*2000\r\n".to_vec();
        for _ in 0..2000 {
            wire.extend_from_slice(b"$1\r\nx\r\n");
        }
        let mut parser = RequestParser::default();
        let mut buf = BytesMut::from(&wire[..wire.len() - 1]);
        assert_eq!(parser.next_command(&mut buf, true), Ok(None));
        assert_eq!(parser.args.len(), 1999);
        assert!(parser.args.capacity() < 4096, "{}", parser.args.capacity());
        buf.extend_from_slice(b"\n");
        let args = parser.next_command(&mut buf, true).unwrap().unwrap();
        assert_eq!(args.len(), 2000);
    }

    #[test]
    fn parser_declared_huge_bulk_allocates_nothing() {
        let mut parser = RequestParser::default();
        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(b"*1\r\n$536870912\r\n");
        assert_eq!(parser.next_command(&mut buf, true), Ok(None));
        assert_eq!(parser.bulk_len, Some(512 * 1024 * 1024));
        assert!(buf.capacity() <= 64);
        assert!(parser.args.capacity() <= 1);
    }

    #[test]
    fn parser_error_expected_dollar() {
        assert_eq!(
            error_text(b"*1\r\nfoo\r\n", true),
            "Protocol error: expected '$', got 'f'"
        );
        // The got-byte is checked only once its whole line is in.
        let (_, err) = parse_input(b"*1\r\nfoo", true);
        assert_eq!(err, None);
        assert_eq!(
            error_text(b"*2\r\n$1\r\na\r\n*1\r\n", true),
            "Protocol error: expected '$', got '*'"
        );
    }

    #[test]
    fn parser_error_expected_dollar_maps_cr_lf_to_space_and_keeps_raw_bytes() {
        assert_eq!(
            error_text(b"*1\r\n\r\n", true),
            "Protocol error: expected '$', got ' '"
        );
        assert_eq!(
            error_text(b"*1\r\n\n\r\n", true),
            "Protocol error: expected '$', got ' '"
        );
        let err = parse_input(b"*1\r\n\xff\r\n", true).1.unwrap();
        assert_eq!(
            err.message_bytes(),
            b"Protocol error: expected '$', got '\xff'".to_vec()
        );
        assert_eq!(
            err.to_string(),
            "Protocol error: expected '$', got '\u{fffd}'"
        );
    }

    #[test]
    fn parser_error_invalid_bulk_length() {
        let bad: [&[u8]; 6] = [
            b"*1\r\n$x\r\n",
            b"*1\r\n$-1\r\n",
            b"*1\r\n$\r\n",
            b"*1\r\n$01\r\n",
            b"*1\r\n$536870913\r\n",
            b"*1\r\n$99999999999999999999\r\n",
        ];
        for input in bad {
            assert_eq!(
                error_text(input, true),
                "Protocol error: invalid bulk length",
                "{input:?}"
            );
        }
        let (_, err) = parse_input(b"*1\r\n$536870912\r\n", true);
        assert_eq!(err, None);
    }

    #[test]
    fn parser_bulk_len_max_is_configurable() {
        let limits = ParserLimits {
            bulk_len_max: 3,
            ..ParserLimits::default()
        };
        let mut parser = RequestParser::new(limits);
        let mut buf = BytesMut::from(&b"*1\r\n$3\r\nabc\r\n*1\r\n$4\r\n"[..]);
        assert_eq!(
            parser.next_command(&mut buf, true),
            Ok(Some(cmd(&[b"abc"])))
        );
        assert_eq!(
            parser.next_command(&mut buf, true),
            Err(ProtocolError(ProtocolErrorKind::InvalidBulkLength))
        );
    }

    #[test]
    fn parser_error_too_big_mbulk_count_string() {
        let mut input = b"*1".to_vec();
        input.resize(65536, b'1');
        assert_eq!(
            parse_input(&input, true).1,
            None,
            "exactly 64 KiB still waits"
        );
        input.push(b'1');
        assert_eq!(
            error_text(&input, true),
            "Protocol error: too big mbulk count string"
        );
    }

    #[test]
    fn parser_error_too_big_bulk_count_string() {
        let mut input = b"*1\r\n".to_vec();
        input.resize(4 + 65536, b'1');
        assert_eq!(parse_input(&input, true).1, None);
        input.push(b'1');
        assert_eq!(
            error_text(&input, true),
            "Protocol error: too big bulk count string"
        );
    }

    #[test]
    fn parser_long_count_line_with_terminator_is_invalid_not_too_big() {
        let mut input = b"*".to_vec();
        input.resize(70_000, b'1');
        input.extend_from_slice(b"\r\n");
        assert_eq!(
            error_text(&input, true),
            "Protocol error: invalid multibulk length"
        );
    }

    #[test]
    fn parser_error_unauthenticated_multibulk_length() {
        assert_eq!(
            error_text(b"*11\r\n", false),
            "Protocol error: unauthenticated multibulk length"
        );
        assert_eq!(parse_input(b"*10\r\n", false).1, None);
        assert_eq!(parse_input(b"*11\r\n", true).1, None);
        // Validity is checked first, and skipped counts pass.
        assert_eq!(
            error_text(b"*x\r\n", false),
            "Protocol error: invalid multibulk length"
        );
        assert_eq!(parse_input(b"*-20\r\n", false).1, None);
    }

    #[test]
    fn parser_error_unauthenticated_bulk_length() {
        assert_eq!(
            error_text(b"*1\r\n$16385\r\n", false),
            "Protocol error: unauthenticated bulk length"
        );
        assert_eq!(parse_input(b"*1\r\n$16384\r\n", false).1, None);
        assert_eq!(parse_input(b"*1\r\n$16385\r\n", true).1, None);
        assert_eq!(
            error_text(b"*1\r\n$536870913\r\n", false),
            "Protocol error: invalid bulk length"
        );
    }

    #[test]
    fn parser_unauth_flag_is_read_per_call() {
        // AUTH then a big command in one read: the caller passes the new state on the next call.
        let mut parser = RequestParser::default();
        let mut buf = BytesMut::from(&b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n*1\r\n$16385\r\n"[..]);
        assert_eq!(
            parser.next_command(&mut buf, false),
            Ok(Some(cmd(&[b"AUTH", b"pw"])))
        );
        assert_eq!(parser.next_command(&mut buf, true), Ok(None));
    }

    #[test]
    fn parser_error_is_sticky() {
        let mut parser = RequestParser::default();
        let mut buf = BytesMut::from(&b"PING\r\n*x\r\n"[..]);
        assert_eq!(
            parser.next_command(&mut buf, true),
            Ok(Some(cmd(&[b"PING"])))
        );
        let err = parser.next_command(&mut buf, true).unwrap_err();
        buf.extend_from_slice(b"PING\r\n");
        assert_eq!(parser.next_command(&mut buf, true), Err(err));
    }

    #[test]
    fn parser_inline_simple_and_crlf_or_lf() {
        let (cmds, err) = parse_input(b"SET k v\r\nGET k\nPING\r\r\n", true);
        assert_eq!(err, None);
        assert_eq!(
            cmds,
            vec![
                cmd(&[b"SET", b"k", b"v"]),
                cmd(&[b"GET", b"k"]),
                cmd(&[b"PING"])
            ]
        );
    }

    #[test]
    fn parser_inline_empty_lines_are_skipped() {
        let (cmds, err) = parse_input(b"\r\n\n  \t\r\n\x0b\x0c\nPING\r\n", true);
        assert_eq!(err, None);
        assert_eq!(cmds, vec![cmd(&[b"PING"])]);
    }

    #[test]
    fn parser_inline_double_quotes_and_escapes() {
        let (cmds, err) = parse_input(
            b"ECHO \"a\\x41\\x4g\\n\\q\" \"\\r\\t\\b\\a\\\\\\\"\" \"\"\r\n",
            true,
        );
        assert_eq!(err, None);
        assert_eq!(
            cmds,
            vec![cmd(&[b"ECHO", b"aAx4g\nq", b"\r\t\x08\x07\\\"", b""])]
        );
    }

    #[test]
    fn parser_inline_hex_escapes_any_byte() {
        let (cmds, err) = parse_input(b"SET \"\\x00\\xff\\xAb\" \"\\x7\"\r\n", true);
        assert_eq!(err, None);
        assert_eq!(cmds, vec![cmd(&[b"SET", b"\x00\xff\xab", b"x7"])]);
    }

    #[test]
    fn parser_inline_single_quotes_only_escape_quote() {
        let (cmds, err) = parse_input(b"ECHO 'a\\'b\\n' 'x\"y'\r\n", true);
        assert_eq!(err, None);
        assert_eq!(cmds, vec![cmd(&[b"ECHO", b"a'b\\n", b"x\"y"])]);
    }

    #[test]
    fn parser_inline_quote_inside_token_joins() {
        let (cmds, err) = parse_input(b"ECHO a\"b c\"\r\n", true);
        assert_eq!(err, None);
        assert_eq!(cmds, vec![cmd(&[b"ECHO", b"ab c"])]);
    }

    #[test]
    fn parser_inline_vertical_tab_is_blank_only_between_tokens() {
        let (cmds, err) = parse_input(b"\x0bECHO\x0ba\r\nECHO \"a\"\x0bb\r\nECHO a\rb\r\n", true);
        assert_eq!(err, None);
        assert_eq!(
            cmds,
            vec![
                cmd(&[b"ECHO\x0ba"]),
                cmd(&[b"ECHO", b"a", b"b"]),
                cmd(&[b"ECHO", b"a", b"b"])
            ]
        );
    }

    #[test]
    fn parser_inline_unquoted_args_are_zero_copy() {
        let mut parser = RequestParser::default();
        let mut buf = BytesMut::from(&b"GET key\r\n"[..]);
        let key_ptr = buf[4..].as_ptr();
        let args = parser.next_command(&mut buf, true).unwrap().unwrap();
        assert_eq!(args[1].as_ptr(), key_ptr);
    }

    #[test]
    fn parser_error_unbalanced_quotes() {
        let bad: [&[u8]; 6] = [
            b"ECHO \"a\"b\r\n",
            b"ECHO \"ab\r\n",
            b"ECHO 'a'b\r\n",
            b"ECHO 'ab\r\n",
            b"ECHO \"a\\\"\r\n",
            b"ECHO \"a\\\r\n",
        ];
        for input in bad {
            assert_eq!(
                error_text(input, true),
                "Protocol error: unbalanced quotes in request",
                "{input:?}"
            );
        }
    }

    #[test]
    fn parser_error_too_big_inline_request() {
        let input = vec![b'P'; 65536];
        assert_eq!(parse_input(&input, true).1, None);
        let input = vec![b'P'; 65537];
        assert_eq!(
            error_text(&input, true),
            "Protocol error: too big inline request"
        );
    }

    #[test]
    fn parser_nul_before_line_end_stalls_like_strchr() {
        for (prefix, text) in [
            (&b"PI\0NG\r\n"[..], "Protocol error: too big inline request"),
            (b"*1\0\r\n", "Protocol error: too big mbulk count string"),
            (
                b"*1\r\n$4\0\r\n",
                "Protocol error: too big bulk count string",
            ),
        ] {
            let mut parser = RequestParser::default();
            let mut buf = BytesMut::from(prefix);
            assert_eq!(parser.next_command(&mut buf, true), Ok(None));
            buf.extend_from_slice(&[b'x'; 70_000]);
            let err = parser.next_command(&mut buf, true).unwrap_err();
            assert_eq!(err.to_string(), text);
        }
    }

    #[test]
    fn parser_trickled_line_is_scanned_once() {
        let mut parser = RequestParser::default();
        let mut buf = BytesMut::from(&b"*1\r\n$"[..]);
        assert_eq!(parser.next_command(&mut buf, true), Ok(None));
        for _ in 0..1000 {
            buf.extend_from_slice(b"1");
            assert_eq!(parser.next_command(&mut buf, true), Ok(None));
            assert_eq!(parser.line_scanned_len, buf.len());
        }
        buf.extend_from_slice(b"\r\n");
        assert_eq!(
            parser.next_command(&mut buf, true),
            Err(ProtocolError(ProtocolErrorKind::InvalidBulkLength))
        );
    }

    #[test]
    fn parser_bulk_across_many_reads_is_zero_copy() {
        const LEN: usize = 16 * 1024 * 1024;
        let mut parser = RequestParser::default();
        // Sized up front so the payload never moves and its address can be compared.
        let mut buf = BytesMut::with_capacity(LEN + 64);
        buf.extend_from_slice(format!("*2\r\n$3\r\nSET\r\n${LEN}\r\n").as_bytes());
        assert_eq!(parser.next_command(&mut buf, true), Ok(None));
        let payload_ptr = buf.as_ptr();
        let chunk = vec![b'v'; 16 * 1024];
        for _ in 0..LEN / chunk.len() {
            assert_eq!(parser.next_command(&mut buf, true), Ok(None));
            buf.extend_from_slice(&chunk);
        }
        assert_eq!(parser.next_command(&mut buf, true), Ok(None));
        buf.extend_from_slice(b"\r\nPING\r\n");
        let args = parser.next_command(&mut buf, true).unwrap().unwrap();
        assert_eq!(args[1].len(), LEN);
        assert_eq!(args[1].as_ptr(), payload_ptr);
        assert_eq!(
            parser.next_command(&mut buf, true),
            Ok(Some(cmd(&[b"PING"])))
        );
    }
}
