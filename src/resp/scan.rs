//! Finding where each reply ends in a stream of RESP2/RESP3 replies (what a server sends),
//! without decoding it: the proxy relays the leader's replies byte for byte with it.

/// Longest header or simple line accepted from the leader.
const MAX_LINE: usize = 16 * 1024 * 1024;
/// Longest blob accepted from the leader.
const MAX_BLOB: u64 = 4 * 1024 * 1024 * 1024;

/// Malformed reply bytes; the connection cannot be trusted past them.
#[derive(Debug, PartialEq, Eq)]
pub struct ScanError(pub &'static str);

/// One header or simple line of a reply.
struct Line<'a> {
    /// The type byte.
    kind: u8,
    /// What follows the type byte, without CRLF.
    text: &'a [u8],
    /// Offset just past the CRLF.
    end: usize,
}

/// An aggregate opened and not yet complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    /// An array, set, map or push still owed this many elements (a map counts keys and values).
    Counted(u64),
    /// An attribute still owed this many keys and values; it does not count as an element of
    /// its parent, the value it annotates follows it.
    Attribute(u64),
    /// A streamed aggregate (`*?`, `%?`, `~?`, `>?`), ended by `.`.
    Streamed,
    /// A streamed string (`$?`), chunks `;n` ended by `;0`.
    StreamedString,
}

/// The length of the complete reply (RESP2 or RESP3) at the start of `buf`, if there is one.
pub fn reply_len(buf: &[u8]) -> Option<usize> {
    ReplyScanner::default().scan(buf).ok().flatten()
}

/// Finds where one complete reply ends in a growing buffer, resuming where it stopped.
///
/// Iterative: nesting depth costs one stack entry per open aggregate, never recursion.
#[derive(Debug, Default)]
pub struct ReplyScanner {
    /// Start of the first element of the current reply not yet consumed.
    pos: usize,
    /// Where the search for the `\n` ending the line at `pos` resumes.
    line_search: usize,
    /// Buffer length needed before the element at `pos` can complete, 0 if unknown.
    need: usize,
    /// Open aggregates of the current reply, innermost last.
    open: Vec<Open>,
    /// The top-level value being scanned is a push: the reply goes on past it.
    top_is_push: bool,
}

impl ReplyScanner {
    /// Scans `buf` (the same buffer as before, possibly grown, starting at the current reply)
    /// and returns the length of the first complete reply, if it is complete. The caller must
    /// then remove exactly that many bytes from the front of the buffer: the scanner starts
    /// the next reply at offset 0.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, ScanError> {
        loop {
            let Some(Line {
                kind,
                text: line,
                end: after,
            }) = self.line(buf)?
            else {
                return Ok(None);
            };
            let complete = if self.open.last() == Some(&Open::StreamedString) {
                if kind != b';' {
                    return Err(ScanError("streamed string chunk expected"));
                }
                let len = parse_len(line)?;
                if len == 0 {
                    self.advance(after);
                    self.open.pop();
                    self.element_done()
                } else {
                    let Some(end) = self.blob_end(buf, after, len)? else {
                        return Ok(None);
                    };
                    self.advance(end);
                    false
                }
            } else {
                match kind {
                    b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {
                        self.advance(after);
                        self.element_done()
                    }
                    b'$' | b'!' | b'=' => {
                        if kind == b'$' && line == b"?" {
                            self.advance(after);
                            self.open.push(Open::StreamedString);
                            false
                        } else if line == b"-1" {
                            self.advance(after);
                            self.element_done()
                        } else {
                            let len = parse_len(line)?;
                            let Some(end) = self.blob_end(buf, after, len)? else {
                                return Ok(None);
                            };
                            self.advance(end);
                            self.element_done()
                        }
                    }
                    b'*' | b'~' | b'%' | b'>' | b'|' => {
                        if kind == b'>' && self.open.is_empty() {
                            self.top_is_push = true;
                        }
                        self.advance(after);
                        if kind != b'|' && line == b"?" {
                            self.open.push(Open::Streamed);
                            false
                        } else if kind != b'|' && line == b"-1" {
                            self.element_done()
                        } else {
                            let mut count = parse_len(line)?;
                            if matches!(kind, b'%' | b'|') {
                                count = count
                                    .checked_mul(2)
                                    .ok_or(ScanError("aggregate length out of range"))?;
                            }
                            match (kind, count) {
                                (b'|', 0) => false,
                                (b'|', _) => {
                                    self.open.push(Open::Attribute(count));
                                    false
                                }
                                (_, 0) => self.element_done(),
                                _ => {
                                    self.open.push(Open::Counted(count));
                                    false
                                }
                            }
                        }
                    }
                    b'.' if self.open.last() == Some(&Open::Streamed) => {
                        if !line.is_empty() {
                            return Err(ScanError("malformed end of streamed aggregate"));
                        }
                        self.advance(after);
                        self.open.pop();
                        self.element_done()
                    }
                    _ => return Err(ScanError("unknown reply type")),
                }
            };
            if complete {
                if self.top_is_push {
                    // A push travels with the reply that follows it.
                    self.top_is_push = false;
                    continue;
                }
                let end = self.pos;
                self.reset();
                return Ok(Some(end));
            }
        }
    }

    /// Buffer length needed before the reply can progress (a blob's end), 0 if unknown.
    pub fn needed(&self) -> usize {
        self.need
    }

    fn reset(&mut self) {
        self.pos = 0;
        self.line_search = 0;
        self.need = 0;
        self.open.clear();
        self.top_is_push = false;
    }

    fn advance(&mut self, to: usize) {
        self.pos = to;
        self.line_search = to;
        self.need = 0;
    }

    /// The type byte, line content and end (past CRLF) of the line at `pos`, if complete.
    fn line<'a>(&mut self, buf: &'a [u8]) -> Result<Option<Line<'a>>, ScanError> {
        let start = self.pos;
        let Some(&kind) = buf.get(start) else {
            return Ok(None);
        };
        let from = self.line_search.max(start + 1);
        let Some(rest) = buf.get(from..) else {
            return Ok(None);
        };
        match rest.iter().position(|&b| b == b'\n') {
            None => {
                if buf.len() - start > MAX_LINE {
                    return Err(ScanError("line too long"));
                }
                self.line_search = buf.len();
                Ok(None)
            }
            Some(offset) => {
                let newline = from + offset;
                if newline < start + 2 || buf.get(newline - 1) != Some(&b'\r') {
                    return Err(ScanError("line not ended by CRLF"));
                }
                let line = buf.get(start + 1..newline - 1).unwrap_or_default();
                Ok(Some(Line {
                    kind,
                    text: line,
                    end: newline + 1,
                }))
            }
        }
    }

    /// End (past CRLF) of a blob of `len` bytes starting at `start`, if all in `buf`.
    fn blob_end(&mut self, buf: &[u8], start: usize, len: u64) -> Result<Option<usize>, ScanError> {
        if len > MAX_BLOB {
            return Err(ScanError("blob too long"));
        }
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| start.checked_add(len)?.checked_add(2))
            .ok_or(ScanError("blob too long"))?;
        if buf.len() < end {
            self.need = end;
            return Ok(None);
        }
        if buf.get(end - 2..end) != Some(b"\r\n") {
            return Err(ScanError("blob not ended by CRLF"));
        }
        Ok(Some(end))
    }

    /// Records that one value completed; returns whether it completed the top-level value.
    fn element_done(&mut self) -> bool {
        while let Some(open) = self.open.last_mut() {
            match open {
                Open::Counted(left) => {
                    *left = left.saturating_sub(1);
                    if *left > 0 {
                        return false;
                    }
                    // The aggregate itself is complete: one element of its parent.
                    self.open.pop();
                }
                Open::Attribute(left) => {
                    *left = left.saturating_sub(1);
                    if *left == 0 {
                        self.open.pop();
                    }
                    return false;
                }
                Open::Streamed | Open::StreamedString => return false,
            }
        }
        true
    }
}

/// A non-negative decimal length.
fn parse_len(digits: &[u8]) -> Result<u64, ScanError> {
    if digits.is_empty() || digits.len() > 19 {
        return Err(ScanError("bad length"));
    }
    digits.iter().try_fold(0u64, |value, &digit| {
        if digit.is_ascii_digit() {
            value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(digit - b'0')))
                .ok_or(ScanError("bad length"))
        } else {
            Err(ScanError("bad length"))
        }
    })
}

/// Replies of every RESP2 and RESP3 type, encoded (tests here and of the proxy).
#[cfg(test)]
pub mod samples {
    use bytes::{Bytes, BytesMut};
    use redis_protocol::resp2::types::BytesFrame as F2;
    use redis_protocol::resp3::types::{BytesFrame as F3, VerbatimStringFormat};

    fn enc3(frame: &F3) -> Bytes {
        let mut out = BytesMut::new();
        redis_protocol::resp3::encode::complete::extend_encode(&mut out, frame, false)
            .expect("test frame encodes");
        out.freeze()
    }

    fn enc2(frame: &F2) -> Bytes {
        let mut out = BytesMut::new();
        redis_protocol::resp2::encode::extend_encode(&mut out, frame, false)
            .expect("test frame encodes");
        out.freeze()
    }

    fn blob3(text: &str) -> F3 {
        F3::BlobString {
            data: Bytes::copy_from_slice(text.as_bytes()),
            attributes: None,
        }
    }

    fn number3(n: i64) -> F3 {
        F3::Number {
            data: n,
            attributes: None,
        }
    }

    /// Replies of every kind, each as Redis (or redis-protocol) encodes it.
    pub fn sample_replies() -> Vec<Bytes> {
        let attrs = [(blob3("key-popularity"), number3(7))]
            .into_iter()
            .collect();
        let map = F3::Map {
            data: [
                (blob3("server"), blob3("redis")),
                (
                    blob3("modules"),
                    F3::Array {
                        data: vec![],
                        attributes: None,
                    },
                ),
            ]
            .into_iter()
            .collect(),
            attributes: None,
        };
        let mut replies = vec![
            enc2(&F2::SimpleString(Bytes::from_static(b"OK"))),
            enc2(&F2::Error("ERR boom".into())),
            enc2(&F2::Integer(-42)),
            enc2(&F2::BulkString(Bytes::from_static(b"hello\r\nworld"))),
            enc2(&F2::BulkString(Bytes::new())),
            enc2(&F2::Null),
            Bytes::from_static(b"*-1\r\n"),
            enc2(&F2::Array(vec![
                F2::Integer(1),
                F2::Array(vec![F2::Null, F2::BulkString(Bytes::from_static(b"x"))]),
                F2::Array(vec![]),
            ])),
            enc3(&F3::Null),
            enc3(&F3::Boolean {
                data: true,
                attributes: None,
            }),
            enc3(&F3::Double {
                data: 3.25,
                attributes: None,
            }),
            enc3(&F3::BigNumber {
                data: Bytes::from_static(b"3492890328409238509324850943850943825024385"),
                attributes: None,
            }),
            enc3(&F3::BlobError {
                data: Bytes::from_static(b"SYNTAX invalid\r\nsyntax"),
                attributes: None,
            }),
            enc3(&F3::VerbatimString {
                data: Bytes::from_static(b"Some string"),
                format: VerbatimStringFormat::Text,
                attributes: None,
            }),
            enc3(&map),
            enc3(&F3::Set {
                data: [number3(1), blob3("z")].into_iter().collect(),
                attributes: None,
            }),
            enc3(&F3::Array {
                data: vec![number3(1), blob3("annotated")],
                attributes: Some(attrs),
            }),
        ];
        replies.extend(
            [
                // An attribute ahead of a top-level value, and one inside an array.
                &b"|1\r\n+key-popularity\r\n*2\r\n$1\r\na\r\n,0.1923\r\n*2\r\n:2039123\r\n:9543892\r\n"[..],
                b"*2\r\n|1\r\n+ttl\r\n:3600\r\n:1\r\n:2\r\n",
                // A push travels with the reply after it (as DEBUG PROTOCOL push sends it).
                b">2\r\n$16\r\nserver-cpu-usage\r\n:42\r\n$4\r\nreal\r\n",
                b">0\r\n>1\r\n_\r\n+OK\r\n",
                // Streamed string and aggregates.
                b"$?\r\n;4\r\nHell\r\n;5\r\no wor\r\n;1\r\nd\r\n;0\r\n",
                b"*?\r\n:1\r\n*?\r\n.\r\n%?\r\n+a\r\n:1\r\n.\r\n$?\r\n;1\r\nx\r\n;0\r\n.\r\n",
                b"%0\r\n",
                b"~2\r\n%1\r\n$1\r\na\r\n:1\r\n*0\r\n",
                b"~0\r\n",
                b"|0\r\n:5\r\n",
                b"(-12345678901234567890\r\n",
                b"#f\r\n",
            ]
            .into_iter()
            .map(Bytes::from_static),
        );
        replies
    }
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};

    use super::samples::sample_replies;
    use super::*;

    /// Feeds `stream` to a scanner `chunk` bytes at a time and returns the replies cut out.
    fn cut(stream: &[u8], chunk: usize) -> Vec<Bytes> {
        let mut scanner = ReplyScanner::default();
        let mut buf = BytesMut::new();
        let mut replies = Vec::new();
        for piece in stream.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(end) = scanner.scan(&buf).expect("valid replies") {
                replies.push(buf.split_to(end).freeze());
            }
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        replies
    }

    #[test]
    fn scanner_frames_every_reply_type_in_any_chunking() {
        let replies = sample_replies();
        let stream: Vec<u8> = replies.iter().flat_map(|r| r.to_vec()).collect();
        for chunk in [1, 2, 3, 5, 7, 13, 64, 1000, stream.len()] {
            assert_eq!(cut(&stream, chunk), replies, "chunk size {chunk}");
        }
    }

    #[test]
    fn scanner_waits_for_incomplete_replies_and_hints_blob_size() {
        for reply in sample_replies() {
            for len in 0..reply.len() {
                let mut scanner = ReplyScanner::default();
                assert_eq!(
                    scanner.scan(&reply[..len]),
                    Ok(None),
                    "{reply:?} cut at {len}"
                );
            }
        }
        let mut scanner = ReplyScanner::default();
        let head = b"*2\r\n:1\r\n$1000000\r\nabc";
        assert_eq!(scanner.scan(head), Ok(None));
        assert_eq!(scanner.needed(), 8 + 10 + 1_000_000 + 2);
    }

    #[test]
    fn scanner_handles_deep_nesting_without_recursion() {
        let depth = 1_000_000;
        let mut stream = b"*1\r\n".repeat(depth);
        stream.extend_from_slice(b"%1\r\n|1\r\n+a\r\n+b\r\n:1\r\n>1\r\n:2\r\n");
        stream.extend_from_slice(b"+next\r\n");
        let mut scanner = ReplyScanner::default();
        let first = stream.len() - b"+next\r\n".len();
        assert_eq!(scanner.scan(&stream), Ok(Some(first)));
        assert_eq!(scanner.scan(&stream[first..]), Ok(Some(7)));
    }

    #[test]
    fn scanner_rejects_malformed_replies() {
        for bad in [
            &b"?what\r\n"[..],
            b"+no cr\n",
            b"$3\r\nabcde\r\n",
            b"$-2\r\n",
            b"*-5\r\n",
            b"$x\r\n",
            b"$\r\n",
            b"*99999999999999999999\r\n",
            b"$5000000000\r\n",
            b"|-1\r\n",
            b"$?\r\n+oops\r\n",
            b".\r\n",
            b"*?\r\n.x\r\n",
        ] {
            let mut scanner = ReplyScanner::default();
            assert!(
                scanner.scan(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
