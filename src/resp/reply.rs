//! Replies: the typed value a command answers with, and its encoding to RESP2 or RESP3.
//!
//! A `Reply` is protocol-neutral; the connection picks the protocol (HELLO) and calls
//! [`Reply::encode`]. The encoding itself is done by the `redis-protocol` crate's frame
//! encoders. RESP3-only types degrade as Redis degrades them for RESP2 clients: maps and sets
//! become flat arrays, doubles become bulk strings, booleans become integers 1/0.

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::types::BytesFrame as Resp2Frame;
use redis_protocol::resp3::types::BytesFrame as Resp3Frame;

/// Which RESP version a connection speaks. RESP2 until `HELLO 3`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// RESP2, the default of every new connection.
    #[default]
    Resp2,
    /// RESP3, switched on by `HELLO 3`.
    Resp3,
}

/// One reply to one command. Serializable: the state machine's replies travel back through
/// raft's apply responses.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Reply {
    /// `+text`: a status reply such as `OK` or `PONG`.
    Simple(Bytes),
    /// `-text`: an error reply; the text includes its prefix (`ERR …`, `WRONGTYPE …`).
    Error(Bytes),
    /// `:n`.
    Integer(i64),
    /// `$n` bulk string.
    Bulk(Bytes),
    /// The null bulk string (`$-1` in RESP2, `_` in RESP3).
    Nil,
    /// The null array (`*-1` in RESP2, `_` in RESP3).
    NilArray,
    /// `*n` array.
    Array(Vec<Reply>),
    /// `%n` map in RESP3, a flat array of alternating keys and values in RESP2.
    Map(Vec<(Reply, Reply)>),
    /// `~n` set in RESP3, an array in RESP2.
    Set(Vec<Reply>),
    /// An array of `[a, b]` pairs in RESP3, a flat array `a b a b …` in RESP2 (HRANDFIELD
    /// WITHVALUES).
    Pairs(Vec<(Reply, Reply)>),
    /// `,d` double in RESP3, a bulk string in RESP2.
    Double(f64),
    /// `#t`/`#f` in RESP3, `:1`/`:0` in RESP2.
    Bool(bool),
    /// `=n txt:…` verbatim string in RESP3, a bulk string in RESP2 (used by INFO).
    Verbatim(Bytes),
    /// A complete reply already encoded, sent as it is (the leader's reply relayed by a
    /// proxying follower, which asked in the connection's own protocol).
    Raw(Bytes),
    /// `>n` push in RESP3, an array in RESP2: Pub/Sub messages and confirmations.
    Push(Vec<Reply>),
    /// Several replies to one command, sent one after another (`SUBSCRIBE a b` confirms each
    /// channel); inside an aggregate, its replies are elements of it.
    Frames(Vec<Reply>),
}

/// Elements an aggregate of `items` has on the wire: [`Reply::Frames`] count as theirs.
fn element_count(items: &[Reply]) -> usize {
    items
        .iter()
        .map(|item| match item {
            Reply::Frames(replies) => replies.len(),
            _ => 1,
        })
        .sum()
}

impl Reply {
    /// `+OK`.
    pub fn ok() -> Reply {
        Reply::Simple(Bytes::from_static(b"OK"))
    }

    /// A status reply from static text.
    pub fn simple(text: &'static str) -> Reply {
        Reply::Simple(Bytes::from_static(text.as_bytes()))
    }

    /// An error reply; `text` carries the Redis prefix, e.g. `ERR syntax error`.
    pub fn error(text: impl Into<String>) -> Reply {
        Reply::Error(Bytes::from(text.into()))
    }

    /// A bulk string reply copied from `data`.
    pub fn bulk(data: impl Into<Bytes>) -> Reply {
        Reply::Bulk(data.into())
    }

    /// A bulk string reply holding `text`.
    pub fn bulk_str(text: &str) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(text.as_bytes()))
    }

    /// Whether this reply is an error.
    pub fn is_error(&self) -> bool {
        match self {
            Reply::Error(_) => true,
            Reply::Raw(bytes) => bytes.first() == Some(&b'-'),
            _ => false,
        }
    }

    /// Appends this reply, encoded for `protocol`, to `out`.
    ///
    /// Aggregate headers are written here (so a map keeps its order and duplicate keys, and a
    /// set may hold aggregates, as Redis sends them); every scalar is encoded by
    /// `redis-protocol`.
    pub fn encode(&self, protocol: Protocol, out: &mut BytesMut) {
        match (self, protocol) {
            (Reply::Raw(bytes), _) => out.extend_from_slice(bytes),
            (Reply::Frames(replies), _) => replies.iter().for_each(|r| r.encode(protocol, out)),
            (Reply::Push(items), Protocol::Resp3) => {
                aggregate_header(out, b'>', element_count(items));
                items.iter().for_each(|item| item.encode(protocol, out));
            }
            (Reply::Array(items) | Reply::Push(items), _) => {
                aggregate_header(out, b'*', element_count(items));
                items.iter().for_each(|item| item.encode(protocol, out));
            }
            (Reply::Set(items), Protocol::Resp2) => {
                aggregate_header(out, b'*', element_count(items));
                items.iter().for_each(|item| item.encode(protocol, out));
            }
            (Reply::Set(items), Protocol::Resp3) => {
                aggregate_header(out, b'~', element_count(items));
                items.iter().for_each(|item| item.encode(protocol, out));
            }
            (Reply::Pairs(pairs), Protocol::Resp3) => {
                aggregate_header(out, b'*', pairs.len());
                for (first, second) in pairs {
                    aggregate_header(out, b'*', 2);
                    first.encode(protocol, out);
                    second.encode(protocol, out);
                }
            }
            (Reply::Map(pairs) | Reply::Pairs(pairs), Protocol::Resp2) => {
                aggregate_header(out, b'*', pairs.len() * 2);
                for (key, value) in pairs {
                    key.encode(protocol, out);
                    value.encode(protocol, out);
                }
            }
            (Reply::Map(pairs), Protocol::Resp3) => {
                aggregate_header(out, b'%', pairs.len());
                for (key, value) in pairs {
                    key.encode(protocol, out);
                    value.encode(protocol, out);
                }
            }
            (Reply::NilArray, Protocol::Resp2) => out.extend_from_slice(b"*-1\r\n"),
            // As Redis prints it (`%.17g`), not as `redis-protocol` would.
            (Reply::Double(d), Protocol::Resp3) => {
                out.extend_from_slice(b",");
                out.extend_from_slice(format_double(*d).as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            (Reply::Error(text), _) if std::str::from_utf8(text).is_err() => {
                // Redis echoes client bytes into some errors; keep them as they are.
                out.extend_from_slice(b"-");
                out.extend_from_slice(&error_line(text));
                out.extend_from_slice(b"\r\n");
            }
            (_, Protocol::Resp2) => {
                redis_protocol::resp2::encode::extend_encode(out, &self.to_resp2(), false)
                    .expect("a scalar RESP2 frame always encodes");
            }
            (_, Protocol::Resp3) => {
                redis_protocol::resp3::encode::complete::extend_encode(
                    out,
                    &self.to_resp3(),
                    false,
                )
                .expect("a scalar RESP3 frame always encodes");
            }
        }
    }

    /// The RESP2 frame of a scalar reply.
    fn to_resp2(&self) -> Resp2Frame {
        match self {
            Reply::Simple(s) => Resp2Frame::SimpleString(s.clone()),
            Reply::Error(e) => Resp2Frame::Error(error_str(e)),
            Reply::Integer(n) => Resp2Frame::Integer(*n),
            Reply::Bulk(b) | Reply::Verbatim(b) => Resp2Frame::BulkString(b.clone()),
            Reply::Double(d) => Resp2Frame::BulkString(Bytes::from(format_double(*d))),
            Reply::Bool(b) => Resp2Frame::Integer(i64::from(*b)),
            Reply::Nil
            | Reply::NilArray
            | Reply::Array(_)
            | Reply::Set(_)
            | Reply::Map(_)
            | Reply::Pairs(_)
            | Reply::Raw(_)
            | Reply::Push(_)
            | Reply::Frames(_) => Resp2Frame::Null,
        }
    }

    /// The RESP3 frame of a scalar reply.
    fn to_resp3(&self) -> Resp3Frame {
        match self {
            Reply::Simple(s) => Resp3Frame::SimpleString {
                data: s.clone(),
                attributes: None,
            },
            Reply::Error(e) => Resp3Frame::SimpleError {
                data: error_str(e),
                attributes: None,
            },
            Reply::Integer(n) => Resp3Frame::Number {
                data: *n,
                attributes: None,
            },
            Reply::Bulk(b) => Resp3Frame::BlobString {
                data: b.clone(),
                attributes: None,
            },
            Reply::Verbatim(b) => Resp3Frame::VerbatimString {
                data: b.clone(),
                format: redis_protocol::resp3::types::VerbatimStringFormat::Text,
                attributes: None,
            },
            Reply::Bool(b) => Resp3Frame::Boolean {
                data: *b,
                attributes: None,
            },
            Reply::Nil
            | Reply::NilArray
            | Reply::Double(_)
            | Reply::Array(_)
            | Reply::Set(_)
            | Reply::Map(_)
            | Reply::Pairs(_)
            | Reply::Raw(_)
            | Reply::Push(_)
            | Reply::Frames(_) => Resp3Frame::Null,
        }
    }
}

fn aggregate_header(out: &mut BytesMut, kind: u8, len: usize) {
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(&[kind]);
    out.extend_from_slice(digits.format(len).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Error text with CR and LF replaced: Redis never lets them break an error line.
fn error_line(raw: &[u8]) -> Vec<u8> {
    raw.iter()
        .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b })
        .collect()
}

/// Error text for a frame (valid UTF-8 here: others are written raw by `encode`).
fn error_str(raw: &Bytes) -> bytes_utils::Str {
    bytes_utils::Str::from(String::from_utf8_lossy(&error_line(raw)).into_owned())
}

/// Formats a double the way Redis 7.0 replies with one (`addReplyDouble`): C's `%.17g`, and
/// `inf`, `-inf`, `nan`.
pub fn format_double(value: f64) -> String {
    if value.is_nan() {
        return "nan".into();
    }
    if value.is_infinite() {
        return if value < 0.0 { "-inf" } else { "inf" }.into();
    }
    format_significant(value, 17)
}

/// A finite double as C's `%.{digits}g` prints it: `digits` significant digits, trailing zeros
/// dropped, scientific notation when the exponent is below -4 or at least `digits`.
pub fn format_significant(value: f64, digits: i32) -> String {
    if value == 0.0 {
        return if value.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // The exponent after rounding to `digits` decides the notation, as in C.
    let precision = usize::try_from(digits - 1).unwrap_or(0);
    let scientific = format!("{value:.precision$e}");
    let (mantissa, exponent) = scientific.split_once('e').expect("{:e} has an exponent");
    let exponent: i32 = exponent.parse().expect("{:e} exponent is an integer");
    let trim = |text: &str| -> String {
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text.to_string()
        }
    };
    if !(-4..digits).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exponent.abs())
    } else {
        let decimals = usize::try_from(digits - 1 - exponent).unwrap_or(0);
        trim(&format!("{value:.decimals$}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(reply: &Reply, protocol: Protocol) -> Vec<u8> {
        let mut out = BytesMut::new();
        reply.encode(protocol, &mut out);
        out.to_vec()
    }

    #[test]
    fn reply_resp2_encodes_scalars_as_redis_does() {
        assert_eq!(encoded(&Reply::ok(), Protocol::Resp2), b"+OK\r\n");
        assert_eq!(
            encoded(&Reply::error("ERR boom"), Protocol::Resp2),
            b"-ERR boom\r\n"
        );
        assert_eq!(encoded(&Reply::Integer(-7), Protocol::Resp2), b":-7\r\n");
        assert_eq!(
            encoded(&Reply::bulk_str("hi"), Protocol::Resp2),
            b"$2\r\nhi\r\n"
        );
        assert_eq!(encoded(&Reply::Nil, Protocol::Resp2), b"$-1\r\n");
        assert_eq!(encoded(&Reply::NilArray, Protocol::Resp2), b"*-1\r\n");
    }

    #[test]
    fn reply_map_keeps_order_and_flattens_for_resp2() {
        let map = Reply::Map(vec![
            (Reply::bulk_str("server"), Reply::bulk_str("redis")),
            (Reply::bulk_str("proto"), Reply::Integer(3)),
        ]);
        assert_eq!(
            encoded(&map, Protocol::Resp2),
            b"*4\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n"
        );
        assert_eq!(
            encoded(&map, Protocol::Resp3),
            b"%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n"
        );
    }

    #[test]
    fn reply_resp3_sets_and_maps_keep_aggregates_and_duplicates() {
        let set = Reply::Set(vec![
            Reply::Map(vec![(Reply::bulk_str("a"), Reply::Integer(1))]),
            Reply::Array(vec![]),
        ]);
        assert_eq!(
            encoded(&set, Protocol::Resp3),
            b"~2\r\n%1\r\n$1\r\na\r\n:1\r\n*0\r\n"
        );
        let map = Reply::Map(vec![
            (Reply::bulk_str("k"), Reply::Nil),
            (Reply::bulk_str("k"), Reply::Nil),
        ]);
        assert_eq!(
            encoded(&map, Protocol::Resp3),
            b"%2\r\n$1\r\nk\r\n_\r\n$1\r\nk\r\n_\r\n"
        );
        assert_eq!(
            encoded(
                &Reply::Error(Bytes::from_static(b"ERR \xff\r\nx")),
                Protocol::Resp2
            ),
            b"-ERR \xff  x\r\n"
        );
    }

    #[test]
    fn reply_resp3_null_and_bool() {
        assert_eq!(encoded(&Reply::Nil, Protocol::Resp3), b"_\r\n");
        assert_eq!(encoded(&Reply::Bool(true), Protocol::Resp3), b"#t\r\n");
        assert_eq!(encoded(&Reply::Bool(false), Protocol::Resp2), b":0\r\n");
    }
}
