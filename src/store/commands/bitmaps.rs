//! Bitmap commands over string values: SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP, BITFIELD and
//! BITFIELD_RO, with Redis 7.0's replies, errors and argument order.
//!
//! Bits are numbered from the most significant bit of the first byte, as Redis numbers them;
//! a write past the end zero-pads the string (up to 512 MiB, Redis's `proto-max-bulk-len`),
//! keeps the key's deadline, and is a write of the whole value (the value is one row).

use bytes::Bytes;

use super::ReplySize::Small;
use super::strings::{MAX_STRING_LEN, clamp_range};
use super::{KeyspaceCommand, command, int_arg, syntax_error, typed_record};
use crate::resp::{Reply, string2ll};
use crate::store::keyspace::{Keyspace, Kind, StoreResult};
use crate::store::notify::{GENERIC, STRING};

/// The bitmap commands: one line each (see [`KeyspaceCommand`]).
pub const COMMANDS: &[KeyspaceCommand] = &[
    command("setbit", setbit, Small),
    command("getbit", getbit, Small),
    command("bitcount", bitcount, Small),
    command("bitpos", bitpos, Small),
    command("bitop", bitop, Small),
    command("bitfield", |ks, args| bitfield(ks, args, false), Small),
    command("bitfield_ro", |ks, args| bitfield(ks, args, true), Small),
];

fn bad_offset() -> Reply {
    Reply::error("ERR bit offset is not an integer or out of range")
}

/// A bit offset as Redis reads one (`#n` counts in `bits`-wide fields where allowed): at
/// most 512 MiB worth of bits.
fn bit_offset(arg: &[u8], hash_bits: Option<u64>) -> Result<u64, Reply> {
    let (digits, scale) = match (arg.first(), hash_bits) {
        (Some(b'#'), Some(bits)) => (&arg[1..], bits),
        _ => (arg, 1),
    };
    let offset = string2ll(digits)
        .and_then(|n| u64::try_from(n).ok())
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(bad_offset)?;
    if offset >> 3 >= MAX_STRING_LEN {
        return Err(bad_offset());
    }
    Ok(offset)
}

/// The string at `key` (empty when missing) or WRONGTYPE, with its deadline.
pub(super) type StringValue = Result<Option<(Bytes, Option<i64>)>, Reply>;

fn string_at<K: Keyspace + ?Sized>(ks: &mut K, key: &[u8]) -> StoreResult<StringValue> {
    Ok(typed_record(ks, key, Kind::String)?
        .map(|record| record.map(|r| (r.payload, r.expire_at_ms))))
}

fn bit_at(value: &[u8], offset: u64) -> u8 {
    value
        .get((offset >> 3) as usize)
        .map_or(0, |byte| (byte >> (7 - (offset & 7))) & 1)
}

fn set_bit(value: &mut [u8], offset: u64, on: bool) {
    let mask = 1 << (7 - (offset & 7));
    let byte = &mut value[(offset >> 3) as usize];
    if on {
        *byte |= mask;
    } else {
        *byte &= !mask;
    }
}

/// The value grown (zero-padded) to hold bit `highest`.
fn grown(value: &[u8], highest: u64) -> Vec<u8> {
    let len = value.len().max((highest >> 3) as usize + 1);
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(value);
    out.resize(len, 0);
    out
}

fn setbit(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let offset = match bit_offset(&args[2], None) {
        Ok(offset) => offset,
        Err(reply) => return Ok(reply),
    };
    let on = match string2ll(&args[3]) {
        Some(0) => false,
        Some(1) => true,
        _ => return Ok(Reply::error("ERR bit is not an integer or out of range")),
    };
    let (value, expire) = match string_at(ks, &args[1])? {
        Err(reply) => return Ok(reply),
        Ok(found) => found.unwrap_or_default(),
    };
    let old = bit_at(&value, offset);
    let mut value = grown(&value, offset);
    set_bit(&mut value, offset, on);
    ks.put_string(&args[1], &value, expire)?;
    ks.notify(STRING, "setbit", &args[1]);
    Ok(Reply::Integer(i64::from(old)))
}

fn getbit(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let offset = match bit_offset(&args[2], None) {
        Ok(offset) => offset,
        Err(reply) => return Ok(reply),
    };
    Ok(match string_at(ks, &args[1])? {
        Err(reply) => reply,
        Ok(found) => Reply::Integer(i64::from(bit_at(
            &found.map(|(v, _)| v).unwrap_or_default(),
            offset,
        ))),
    })
}

/// A BITCOUNT or BITPOS range resolved as Redis resolves it: byte indexes `start..=end`
/// (empty when `start > end`) and, for a BIT range, masks of the bits outside it in the
/// first and last bytes.
struct Range {
    start: i64,
    end: i64,
    first_outside: u8,
    last_outside: u8,
}

impl Range {
    fn resolve(start: i64, end: i64, bits: bool, len: i64) -> Range {
        let len = if bits { len << 3 } else { len };
        let (mut start, mut end) = clamp_range(start, end, len);
        let (mut first_outside, mut last_outside) = (0, 0);
        if bits && start <= end {
            first_outside = !((1u16 << (8 - (start & 7))) - 1) as u8;
            last_outside = ((1u16 << (7 - (end & 7))) - 1) as u8;
            start >>= 3;
            end >>= 3;
        }
        Range {
            start,
            end,
            first_outside,
            last_outside,
        }
    }

    fn whole(len: i64) -> Range {
        Range {
            start: 0,
            end: len - 1,
            first_outside: 0,
            last_outside: 0,
        }
    }
}

/// `BYTE` or `BIT` (true), else a syntax error.
fn unit(arg: &[u8]) -> Result<bool, Reply> {
    if arg.eq_ignore_ascii_case(b"bit") {
        Ok(true)
    } else if arg.eq_ignore_ascii_case(b"byte") {
        Ok(false)
    } else {
        Err(syntax_error())
    }
}

fn bitcount(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let value = match string_at(ks, &args[1])? {
        Err(reply) => return Ok(reply),
        Ok(None) => return Ok(Reply::Integer(0)),
        Ok(Some((value, _))) => value,
    };
    let len = value.len() as i64;
    let range = match args.len() {
        2 => Range::whole(len),
        4 | 5 => {
            let (start, end) = match (int_arg(&args[2]), int_arg(&args[3])) {
                (Ok(start), Ok(end)) => (start, end),
                (Err(reply), _) | (_, Err(reply)) => return Ok(reply),
            };
            let bits = match args.get(4).map(|arg| unit(arg)).transpose() {
                Ok(bits) => bits.unwrap_or(false),
                Err(reply) => return Ok(reply),
            };
            if start < 0 && end < 0 && start > end {
                return Ok(Reply::Integer(0));
            }
            Range::resolve(start, end, bits, len)
        }
        _ => return Ok(syntax_error()),
    };
    if range.start > range.end {
        return Ok(Reply::Integer(0));
    }
    let bytes = &value[range.start as usize..=range.end as usize];
    let mut count: i64 = bytes.iter().map(|b| i64::from(b.count_ones())).sum();
    count -= i64::from((bytes[0] & range.first_outside).count_ones());
    count -= i64::from((bytes[bytes.len() - 1] & range.last_outside).count_ones());
    Ok(Reply::Integer(count))
}

/// Redis's `redisBitpos`: the first `bit` in `bytes`, counting from their first bit; when
/// looking for a 0 in bytes of ones, the bit just past them; `-1` when looking for a 1 that is
/// not there.
fn first_bit(bytes: &[u8], bit: bool) -> i64 {
    for (i, &byte) in bytes.iter().enumerate() {
        let byte = if bit { byte } else { !byte };
        if byte != 0 {
            return (i as i64) * 8 + i64::from(byte.leading_zeros());
        }
    }
    if bit { -1 } else { bytes.len() as i64 * 8 }
}

fn bitpos(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let bit = match int_arg(&args[2]) {
        Ok(0) => false,
        Ok(1) => true,
        Ok(_) => return Ok(Reply::error("ERR The bit argument must be 1 or 0.")),
        Err(reply) => return Ok(reply),
    };
    let value = match string_at(ks, &args[1])? {
        Err(reply) => return Ok(reply),
        Ok(None) => return Ok(Reply::Integer(if bit { -1 } else { 0 })),
        Ok(Some((value, _))) => value,
    };
    let len = value.len() as i64;
    let mut end_given = false;
    let range = match args.len() {
        3 => Range::whole(len),
        4..=6 => {
            let start = match int_arg(&args[3]) {
                Ok(start) => start,
                Err(reply) => return Ok(reply),
            };
            let bits = match args.get(5).map(|arg| unit(arg)).transpose() {
                Ok(bits) => bits.unwrap_or(false),
                Err(reply) => return Ok(reply),
            };
            let end = match args.get(4) {
                Some(arg) => match int_arg(arg) {
                    Ok(end) => {
                        end_given = true;
                        end
                    }
                    Err(reply) => return Ok(reply),
                },
                None if bits => (len << 3) + 7,
                None => len - 1,
            };
            Range::resolve(start, end, bits, len)
        }
        _ => return Ok(syntax_error()),
    };
    if range.start > range.end {
        return Ok(Reply::Integer(-1));
    }
    let (mut start, end) = (range.start as usize, range.end as usize);
    let mut bytes = end - start + 1;
    // Bytes at the edges of a BIT range are read with the bits outside it forced to the
    // value not looked for.
    let masked = |byte: u8, outside: u8| if bit { byte & !outside } else { byte | outside };
    let pos = 'found: {
        if range.first_outside != 0 {
            let mut edge = masked(value[start], range.first_outside);
            if range.last_outside != 0 && bytes == 1 {
                edge = masked(edge, range.last_outside);
            }
            let pos = first_bit(&[edge], bit);
            if bytes == 1 || (pos != -1 && pos != 8) {
                break 'found pos;
            }
            start += 1;
            bytes -= 1;
        }
        let middle = bytes - usize::from(range.last_outside != 0);
        if middle > 0 {
            let pos = first_bit(&value[start..start + middle], bit);
            if bytes == middle || (pos != -1 && pos != (middle as i64) << 3) {
                break 'found pos;
            }
            start += middle;
            bytes -= middle;
        }
        first_bit(&[masked(value[end], range.last_outside)], bit)
    };
    // An explicit end is not zero-padded: no 0 in the range is -1.
    if end_given && !bit && pos == (bytes as i64) << 3 {
        return Ok(Reply::Integer(-1));
    }
    Ok(Reply::Integer(if pos == -1 {
        -1
    } else {
        pos + ((start as i64) << 3)
    }))
}

fn bitop(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let op = args[1].to_ascii_lowercase();
    if !matches!(op.as_slice(), b"and" | b"or" | b"xor" | b"not") {
        return Ok(syntax_error());
    }
    let sources = &args[3..];
    if op == b"not" && sources.len() != 1 {
        return Ok(Reply::error(
            "ERR BITOP NOT must be called with a single source key.",
        ));
    }
    let mut values = Vec::with_capacity(sources.len());
    for key in sources {
        match string_at(ks, key)? {
            Err(reply) => return Ok(reply),
            Ok(found) => values.push(found.map(|(v, _)| v).unwrap_or_default()),
        }
    }
    let len = values.iter().map(Bytes::len).max().unwrap_or(0);
    let byte = |value: &Bytes, i: usize| value.get(i).copied().unwrap_or(0);
    let result: Vec<u8> = (0..len)
        .map(|i| {
            let mut bytes = values.iter().map(|v| byte(v, i));
            let first = bytes.next().unwrap_or(0);
            match op.as_slice() {
                b"and" => bytes.fold(first, |a, b| a & b),
                b"or" => bytes.fold(first, |a, b| a | b),
                b"xor" => bytes.fold(first, |a, b| a ^ b),
                _ => !first,
            }
        })
        .collect();
    if result.is_empty() {
        if ks.delete(&args[2])? {
            ks.notify(GENERIC, "del", &args[2]);
        }
    } else {
        ks.put_string(&args[2], &result, None)?;
        ks.notify(STRING, "set", &args[2]);
    }
    Ok(Reply::Integer(result.len() as i64))
}

/// A BITFIELD field type: signed or not, and its width.
#[derive(Clone, Copy)]
struct Field {
    signed: bool,
    bits: u32,
}

impl Field {
    fn parse(arg: &[u8]) -> Result<Field, Reply> {
        let invalid = || {
            Reply::error(
                "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not \
                 supported but i64 is.",
            )
        };
        let signed = match arg.first() {
            Some(b'i') => true,
            Some(b'u') => false,
            _ => return Err(invalid()),
        };
        match string2ll(&arg[1..]) {
            Some(bits) if bits >= 1 && bits <= if signed { 64 } else { 63 } => Ok(Field {
                signed,
                bits: bits as u32,
            }),
            _ => Err(invalid()),
        }
    }

    fn read(self, value: &[u8], offset: u64) -> i64 {
        let mut out: u64 = 0;
        for i in 0..u64::from(self.bits) {
            out = (out << 1) | u64::from(bit_at(value, offset + i));
        }
        if self.signed && self.bits < 64 && out & (1 << (self.bits - 1)) != 0 {
            out |= u64::MAX << self.bits;
        }
        out as i64
    }

    fn write(self, value: &mut [u8], offset: u64, field: i64) {
        let field = field as u64;
        for i in 0..u64::from(self.bits) {
            let on = field >> (u64::from(self.bits) - 1 - i) & 1 == 1;
            set_bit(value, offset + i, on);
        }
    }

    /// Redis's overflow check of `value + increment` in this field: the result (wrapped or
    /// saturated as `overflow` says) and whether it overflowed.
    fn add(self, value: i64, increment: i64, overflow: Overflow) -> (i64, bool) {
        let bits = self.bits;
        if self.signed {
            let max: i64 = if bits == 64 {
                i64::MAX
            } else {
                (1i64 << (bits - 1)) - 1
            };
            let min = -max - 1;
            let max_increment = (max as u64).wrapping_sub(value as u64) as i64;
            let min_increment = min.wrapping_sub(value);
            let high = value > max
                || (bits != 64 && increment > max_increment)
                || (value >= 0 && increment > 0 && increment > max_increment);
            let low = !high
                && (value < min
                    || (bits != 64 && increment < min_increment)
                    || (value < 0 && increment < 0 && increment < min_increment));
            if !high && !low {
                return (value.wrapping_add(increment), false);
            }
            let result = match overflow {
                Overflow::Sat => {
                    if high {
                        max
                    } else {
                        min
                    }
                }
                _ => {
                    let mut sum = (value as u64).wrapping_add(increment as u64);
                    if bits < 64 {
                        let mask = u64::MAX << bits;
                        if sum & (1 << (bits - 1)) != 0 {
                            sum |= mask;
                        } else {
                            sum &= !mask;
                        }
                    }
                    sum as i64
                }
            };
            (result, true)
        } else {
            let value = value as u64;
            let max: u64 = (1u64 << bits) - 1;
            let max_increment = max.wrapping_sub(value) as i64;
            let min_increment = value.wrapping_neg() as i64;
            let high = value > max || (increment > 0 && increment > max_increment);
            let low = !high && increment < 0 && increment < min_increment;
            if !high && !low {
                return (value.wrapping_add(increment as u64) as i64, false);
            }
            let result = match overflow {
                Overflow::Sat => {
                    if high {
                        max
                    } else {
                        0
                    }
                }
                _ => value.wrapping_add(increment as u64) & !(u64::MAX << bits),
            };
            (result as i64, true)
        }
    }
}

/// BITFIELD's OVERFLOW behaviour for the operations after it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Overflow {
    Wrap,
    Sat,
    Fail,
}

/// One BITFIELD operation.
enum Op {
    Get,
    Set(i64),
    IncrBy(i64),
}

fn bitfield(ks: &mut dyn Keyspace, args: &[Bytes], read_only: bool) -> StoreResult<Reply> {
    let mut ops: Vec<(Op, Field, u64, Overflow)> = Vec::new();
    let mut overflow = Overflow::Wrap;
    let mut highest_write: Option<u64> = None;
    let mut i = 2;
    while i < args.len() {
        let name = args[i].to_ascii_lowercase();
        let wanted = match name.as_slice() {
            b"get" => 2,
            b"set" | b"incrby" => 3,
            b"overflow" => 1,
            _ => return Ok(syntax_error()),
        };
        if args.len() - i - 1 < wanted {
            return Ok(syntax_error());
        }
        if name == b"overflow" {
            let kind = args[i + 1].to_ascii_lowercase();
            overflow = match kind.as_slice() {
                b"wrap" => Overflow::Wrap,
                b"sat" => Overflow::Sat,
                b"fail" => Overflow::Fail,
                _ => return Ok(Reply::error("ERR Invalid OVERFLOW type specified")),
            };
            i += 2;
            continue;
        }
        let field = match Field::parse(&args[i + 1]) {
            Ok(field) => field,
            Err(reply) => return Ok(reply),
        };
        let offset = match bit_offset(&args[i + 2], Some(u64::from(field.bits))) {
            Ok(offset) => offset,
            Err(reply) => return Ok(reply),
        };
        let op = match name.as_slice() {
            b"get" => Op::Get,
            _ => {
                let number = match int_arg(&args[i + 3]) {
                    Ok(number) => number,
                    Err(reply) => return Ok(reply),
                };
                let last = offset + u64::from(field.bits) - 1;
                highest_write = Some(highest_write.map_or(last, |h| h.max(last)));
                if name == b"set" {
                    Op::Set(number)
                } else {
                    Op::IncrBy(number)
                }
            }
        };
        ops.push((op, field, offset, overflow));
        i += wanted + 1;
    }
    // Every operation is parsed before BITFIELD_RO refuses a write, as Redis does.
    if read_only && highest_write.is_some() {
        return Ok(Reply::error(
            "ERR BITFIELD_RO only supports the GET subcommand",
        ));
    }
    let (value, expire) = match string_at(ks, &args[1])? {
        Err(reply) => return Ok(reply),
        Ok(found) => found.unwrap_or_default(),
    };
    let Some(highest) = highest_write else {
        // Reads only: a missing key reads as zeros and is not created.
        return Ok(Reply::Array(
            ops.iter()
                .map(|(_, field, offset, _)| Reply::Integer(field.read(&value, *offset)))
                .collect(),
        ));
    };
    // Redis grows the string for the furthest write first, whatever the operations do.
    let mut value = grown(&value, highest);
    let mut replies = Vec::with_capacity(ops.len());
    for (op, field, offset, overflow) in ops {
        let old = field.read(&value, offset);
        let reply = match op {
            Op::Get => Reply::Integer(old),
            Op::Set(new) => {
                let (new, overflowed) = field.add(new, 0, overflow);
                if overflowed && overflow == Overflow::Fail {
                    Reply::Nil
                } else {
                    field.write(&mut value, offset, new);
                    Reply::Integer(old)
                }
            }
            Op::IncrBy(increment) => {
                let (new, overflowed) = field.add(old, increment, overflow);
                if overflowed && overflow == Overflow::Fail {
                    Reply::Nil
                } else {
                    field.write(&mut value, offset, new);
                    Reply::Integer(new)
                }
            }
        };
        replies.push(reply);
    }
    ks.put_string(&args[1], &value, expire)?;
    ks.notify(STRING, "setbit", &args[1]);
    Ok(Reply::Array(replies))
}
