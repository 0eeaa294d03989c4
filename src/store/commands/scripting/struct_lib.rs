//! Roberto Ierusalimschy's `struct` library as Redis 7.0 bundles it: `pack`, `unpack` and
//! `size` over formats of `<` `>` `=` `!n` `x` `b` `B` `h` `H` `l` `L` `T` `i[n]` `I[n]` `f` `d`
//! `s` `c[n]` (native here: little-endian, 8-byte longs and size_t, 4-byte ints).

use mlua::{Lua, MultiValue, Table, Value};

use super::state::{argument_type, bad_argument, located};

/// Widest integer `i[n]` and `I[n]` take.
const MAX_INT_SIZE: usize = 32;

pub fn library(lua: &Lua) -> mlua::Result<Table> {
    let library = lua.create_table()?;
    library.raw_set("pack", lua.create_function(pack)?)?;
    library.raw_set("unpack", lua.create_function(unpack)?)?;
    library.raw_set("size", lua.create_function(size)?)?;
    Ok(library)
}

/// One item of a format.
enum Item {
    /// Byte order for what follows.
    Endian(bool),
    /// Alignment limit for what follows.
    Align(usize),
    /// A padding byte.
    Pad,
    /// An integer of `size` bytes.
    Int {
        size: usize,
        signed: bool,
    },
    Float,
    Double,
    /// A zero-terminated string.
    Zstring,
    /// A fixed-size string; 0: as long as the string (pack) or the previous number (unpack).
    Chars(usize),
}

impl Item {
    /// Bytes it takes, where fixed.
    fn size(&self) -> usize {
        match self {
            Item::Pad => 1,
            Item::Int { size, .. } => *size,
            Item::Float => 4,
            Item::Double => 8,
            Item::Chars(n) => *n,
            Item::Endian(_) | Item::Align(_) | Item::Zstring => 0,
        }
    }
}

/// Parses a format, with the library's errors (`function` names the caller in them).
fn parse(lua: &Lua, format: &[u8], function: &str) -> mlua::Result<Vec<Item>> {
    let mut items = Vec::new();
    let mut at = 0;
    let number = |at: &mut usize, default: usize| {
        let start = *at;
        while format.get(*at).is_some_and(u8::is_ascii_digit) {
            *at += 1;
        }
        std::str::from_utf8(&format[start..*at])
            .ok()
            .and_then(|digits| digits.parse().ok())
            .unwrap_or(default)
    };
    while let Some(&option) = format.get(at) {
        at += 1;
        let item = match option {
            b' ' => continue,
            b'>' => Item::Endian(false),
            b'<' | b'=' => Item::Endian(true),
            b'!' => {
                let align = number(&mut at, 8);
                if !align.is_power_of_two() {
                    return Err(located(
                        lua,
                        &format!("alignment {align} is not a power of 2"),
                    ));
                }
                Item::Align(align)
            }
            b'x' => Item::Pad,
            b'b' | b'B' => Item::Int {
                size: 1,
                signed: option == b'b',
            },
            b'h' | b'H' => Item::Int {
                size: 2,
                signed: option == b'h',
            },
            b'l' | b'L' | b'T' => Item::Int {
                size: 8,
                signed: option == b'l',
            },
            b'i' | b'I' => {
                let size = number(&mut at, 4);
                if size > MAX_INT_SIZE {
                    return Err(located(
                        lua,
                        &format!("integral size {size} is larger than limit of {MAX_INT_SIZE}"),
                    ));
                }
                Item::Int {
                    size,
                    signed: option == b'i',
                }
            }
            b'f' => Item::Float,
            b'd' => Item::Double,
            b's' => Item::Zstring,
            b'c' => Item::Chars(number(&mut at, 1)),
            other => {
                return Err(bad_argument(
                    lua,
                    1,
                    function,
                    &format!("invalid format option '{}'", char::from(other)),
                ));
            }
        };
        items.push(item);
    }
    Ok(items)
}

/// Padding before `item` at `offset`, under alignment limit `align`: the library's formula
/// (`gettoalign`), which assumes powers of two and pads oddly otherwise, as it does.
fn padding(item: &Item, offset: usize, align: usize) -> usize {
    let size = item.size().min(align);
    if size == 0 || matches!(item, Item::Chars(_)) {
        return 0;
    }
    (size - (offset & (size - 1))) & (size - 1)
}

fn pack(lua: &Lua, args: MultiValue) -> mlua::Result<mlua::String> {
    const FUNCTION: &str = "pack";
    let format = format_arg(lua, &args, FUNCTION)?;
    let mut out: Vec<u8> = Vec::new();
    let mut little = true;
    let mut align = 1;
    let mut next = 1;
    for item in parse(lua, &format, FUNCTION)? {
        let pad = padding(&item, out.len(), align);
        out.resize(out.len() + pad, 0);
        let mut value = || {
            next += 1;
            args.get(next - 1).cloned().unwrap_or(Value::Nil)
        };
        match item {
            Item::Endian(is_little) => little = is_little,
            Item::Align(limit) => align = limit,
            Item::Pad => out.push(0),
            Item::Int { size, signed } => {
                let n = number_arg(lua, &value(), next, "pack")?;
                // As the library converts: through a signed integer when negative.
                let bits = if n < 0.0 { n as i64 as u64 } else { n as u64 };
                let mut bytes = vec![if signed && (bits as i64) < 0 { 0xff } else { 0 }; size];
                for (i, byte) in bits.to_le_bytes().iter().enumerate().take(size.min(8)) {
                    bytes[i] = *byte;
                }
                if !little {
                    bytes.reverse();
                }
                out.extend_from_slice(&bytes);
            }
            Item::Float => {
                let n = number_arg(lua, &value(), next, "pack")? as f32;
                out.extend_from_slice(&if little {
                    n.to_le_bytes()
                } else {
                    n.to_be_bytes()
                });
            }
            Item::Double => {
                let n = number_arg(lua, &value(), next, "pack")?;
                out.extend_from_slice(&if little {
                    n.to_le_bytes()
                } else {
                    n.to_be_bytes()
                });
            }
            Item::Zstring | Item::Chars(_) => {
                let given = value();
                let text = match lua.coerce_string(given.clone()) {
                    Ok(Some(text)) => text.as_bytes().to_vec(),
                    _ => {
                        return Err(bad_argument(
                            lua,
                            next,
                            "pack",
                            &format!("string expected, got {}", given.type_name()),
                        ));
                    }
                };
                match item {
                    Item::Zstring => {
                        out.extend_from_slice(&text);
                        out.push(0);
                    }
                    Item::Chars(0) => out.extend_from_slice(&text),
                    Item::Chars(n) => {
                        if text.len() < n {
                            // The library checks after moving past the argument.
                            return Err(bad_argument(lua, next + 1, "pack", "string too short"));
                        }
                        out.extend_from_slice(&text[..n]);
                    }
                    _ => unreachable!("string items"),
                }
            }
        }
    }
    lua.create_string(out)
}

fn unpack(lua: &Lua, args: MultiValue) -> mlua::Result<MultiValue> {
    const FUNCTION: &str = "unpack";
    let format = format_arg(lua, &args, FUNCTION)?;
    let data = match args.get(1).map(|v| lua.coerce_string(v.clone())) {
        Some(Ok(Some(text))) => text.as_bytes().to_vec(),
        _ => {
            let given = args.get(1).cloned().unwrap_or(Value::Nil);
            return Err(bad_argument(
                lua,
                2,
                "unpack",
                &format!("string expected, got {}", argument_type(&given)),
            ));
        }
    };
    let mut at = match args.get(2) {
        None | Some(Value::Nil) => 0,
        Some(value) => {
            let position = number_arg(lua, value, 3, "unpack")? as i64;
            if position < 1 {
                return Err(bad_argument(
                    lua,
                    3,
                    "unpack",
                    "offset must be 1 or greater",
                ));
            }
            position as usize - 1
        }
    };
    let mut out = Vec::new();
    let mut little = true;
    let mut align = 1;
    let short = || bad_argument(lua, 2, "unpack", "data string too short");
    for item in parse(lua, &format, FUNCTION)? {
        at += padding(&item, at, align);
        let item = match item {
            // The length is the value read just before, which is not returned.
            Item::Chars(0) => {
                let previous = out.last().cloned().unwrap_or(Value::Nil);
                match lua.coerce_number(previous) {
                    Ok(Some(n)) if n >= 0.0 => {
                        out.pop();
                        Item::Chars(n as usize)
                    }
                    _ => return Err(located(lua, "format 'c0' needs a previous size")),
                }
            }
            other => other,
        };
        let size = item.size();
        if at + size > data.len() {
            return Err(short());
        }
        match item {
            Item::Endian(is_little) => little = is_little,
            Item::Align(limit) => align = limit,
            Item::Pad => at += 1,
            Item::Int { size, signed } => {
                let mut bytes = data[at..at + size].to_vec();
                if !little {
                    bytes.reverse();
                }
                let mut value: u64 = 0;
                for &byte in bytes.iter().take(8).rev() {
                    value = (value << 8) | u64::from(byte);
                }
                let n = if signed && size < 8 && size > 0 {
                    let shift = 64 - 8 * size as u32;
                    ((value << shift) as i64 >> shift) as f64
                } else if signed {
                    value as i64 as f64
                } else {
                    value as f64
                };
                at += size;
                out.push(Value::Number(n));
            }
            Item::Float => {
                let bytes: [u8; 4] = data[at..at + 4].try_into().expect("4 bytes");
                let n = if little {
                    f32::from_le_bytes(bytes)
                } else {
                    f32::from_be_bytes(bytes)
                };
                at += 4;
                out.push(Value::Number(f64::from(n)));
            }
            Item::Double => {
                let bytes: [u8; 8] = data[at..at + 8].try_into().expect("8 bytes");
                let n = if little {
                    f64::from_le_bytes(bytes)
                } else {
                    f64::from_be_bytes(bytes)
                };
                at += 8;
                out.push(Value::Number(n));
            }
            Item::Zstring => {
                let Some(len) = data[at..].iter().position(|&b| b == 0) else {
                    return Err(located(lua, "unfinished string in data"));
                };
                out.push(Value::String(lua.create_string(&data[at..at + len])?));
                at += len + 1;
            }
            Item::Chars(n) => {
                out.push(Value::String(lua.create_string(&data[at..at + n])?));
                at += n;
            }
        }
    }
    out.push(Value::Number((at + 1) as f64));
    Ok(MultiValue::from_vec(out))
}

fn size(lua: &Lua, args: MultiValue) -> mlua::Result<f64> {
    const FUNCTION: &str = "size";
    let format = format_arg(lua, &args, FUNCTION)?;
    let mut total = 0;
    let mut align = 1;
    for item in parse(lua, &format, FUNCTION)? {
        let unsized_option = match item {
            Item::Zstring => Some("s"),
            Item::Chars(0) => Some("c0"),
            _ => None,
        };
        if let Some(option) = unsized_option {
            return Err(bad_argument(
                lua,
                1,
                "size",
                &format!("option '{option}' has no fixed size"),
            ));
        }
        if let Item::Align(limit) = item {
            align = limit;
        }
        total += padding(&item, total, align) + item.size();
    }
    Ok(total as f64)
}

fn format_arg(lua: &Lua, args: &MultiValue, function: &str) -> mlua::Result<Vec<u8>> {
    let given = args.front().cloned().unwrap_or(Value::Nil);
    match lua.coerce_string(given.clone()) {
        Ok(Some(text)) => Ok(text.as_bytes().to_vec()),
        _ => Err(bad_argument(
            lua,
            1,
            function,
            &format!("string expected, got {}", argument_type(&given)),
        )),
    }
}

fn number_arg(lua: &Lua, value: &Value, position: usize, function: &str) -> mlua::Result<f64> {
    match lua.coerce_number(value.clone()) {
        Ok(Some(n)) => Ok(n),
        _ => Err(bad_argument(
            lua,
            position,
            function,
            &format!("number expected, got {}", value.type_name()),
        )),
    }
}
