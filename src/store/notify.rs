//! Keyspace notifications: the event classes of `notify-keyspace-events`, its text form as
//! Redis 7.0 reads and prints it, and the channel/message pairs one event publishes.
//!
//! Events are produced in apply (see `Keyspace::notify`), so every node publishes each one once
//! to its own subscribers, in log order; they are not forwarded between nodes.

use bytes::Bytes;

/// The replicated setting naming the classes to publish (`commands::config`).
pub const SETTING: &str = "notify-keyspace-events";

/// `K`: events on `__keyspace@0__:<key>`.
pub const KEYSPACE: u32 = 1 << 0;
/// `E`: events on `__keyevent@0__:<event>`.
pub const KEYEVENT: u32 = 1 << 1;
/// `g`: DEL, EXPIRE, RENAME… (generic).
pub const GENERIC: u32 = 1 << 2;
/// `$`: string commands.
pub const STRING: u32 = 1 << 3;
/// `l`: list commands.
pub const LIST: u32 = 1 << 4;
/// `s`: set commands.
pub const SET: u32 = 1 << 5;
/// `h`: hash commands.
pub const HASH: u32 = 1 << 6;
/// `z`: sorted-set commands.
pub const ZSET: u32 = 1 << 7;
/// `x`: a key expired.
pub const EXPIRED: u32 = 1 << 8;
/// `e`: a key was evicted (never, without eviction).
pub const EVICTED: u32 = 1 << 9;
/// `t`: streams.
pub const STREAM: u32 = 1 << 10;
/// `m`: key misses.
pub const KEY_MISS: u32 = 1 << 11;
/// `d`: modules.
pub const MODULE: u32 = 1 << 12;
/// `n`: a new key.
pub const NEW: u32 = 1 << 13;
/// `A`: every class but `m` and `n`.
pub const ALL: u32 =
    GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;

/// The classes a `notify-keyspace-events` value names; `None` for a character Redis refuses.
pub fn parse_flags(text: &[u8]) -> Option<u32> {
    text.iter().try_fold(0, |flags, c| {
        Some(
            flags
                | match c {
                    b'A' => ALL,
                    b'g' => GENERIC,
                    b'$' => STRING,
                    b'l' => LIST,
                    b's' => SET,
                    b'h' => HASH,
                    b'z' => ZSET,
                    b'x' => EXPIRED,
                    b'e' => EVICTED,
                    b'K' => KEYSPACE,
                    b'E' => KEYEVENT,
                    b't' => STREAM,
                    b'm' => KEY_MISS,
                    b'd' => MODULE,
                    b'n' => NEW,
                    _ => return None,
                },
        )
    })
}

/// The text CONFIG GET shows for `flags`, as Redis prints it (`A` for every class it covers).
pub fn flags_text(flags: u32) -> String {
    let mut out = String::new();
    if flags & ALL == ALL {
        out.push('A');
    } else {
        for (flag, c) in [
            (GENERIC, 'g'),
            (STRING, '$'),
            (LIST, 'l'),
            (SET, 's'),
            (HASH, 'h'),
            (ZSET, 'z'),
            (EXPIRED, 'x'),
            (EVICTED, 'e'),
            (STREAM, 't'),
            (MODULE, 'd'),
            (NEW, 'n'),
        ] {
            if flags & flag != 0 {
                out.push(c);
            }
        }
    }
    for (flag, c) in [(KEYSPACE, 'K'), (KEYEVENT, 'E'), (KEY_MISS, 'm')] {
        if flags & flag != 0 {
            out.push(c);
        }
    }
    out
}

/// What one event of `class` publishes under `flags`: `(channel, message)` pairs, the
/// keyspace one first, as Redis publishes them.
pub fn messages(flags: u32, class: u32, event: &str, key: &[u8]) -> Vec<(Bytes, Bytes)> {
    if flags & class == 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    if flags & KEYSPACE != 0 {
        let mut channel = b"__keyspace@0__:".to_vec();
        channel.extend_from_slice(key);
        out.push((
            Bytes::from(channel),
            Bytes::copy_from_slice(event.as_bytes()),
        ));
    }
    if flags & KEYEVENT != 0 {
        let channel = format!("__keyevent@0__:{event}");
        out.push((Bytes::from(channel), Bytes::copy_from_slice(key)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_read_and_print_as_redis_does() {
        let text = |t: &str| flags_text(parse_flags(t.as_bytes()).unwrap());
        assert_eq!(text("KEA"), "AKE");
        assert_eq!(text("g$lshzxetdKEmn"), "AKEm");
        assert_eq!(text("Elg"), "glE");
        assert_eq!(text(""), "");
        assert_eq!(parse_flags(b"Kq"), None);
        assert!(messages(parse_flags(b"Kg").unwrap(), STRING, "set", b"k").is_empty());
        assert_eq!(
            messages(parse_flags(b"KE$").unwrap(), STRING, "set", b"k"),
            vec![
                (
                    Bytes::from_static(b"__keyspace@0__:k"),
                    Bytes::from_static(b"set")
                ),
                (
                    Bytes::from_static(b"__keyevent@0__:set"),
                    Bytes::from_static(b"k")
                ),
            ]
        );
    }
}
