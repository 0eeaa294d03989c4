//! lua-cmsgpack 0.4 as Redis 7.0 bundles it: `pack`, `unpack`, `unpack_one` and `unpack_limit`,
//! byte for byte (smallest integer encodings, doubles as float32 when exact, tables as arrays
//! when their keys are exactly 1..n, nesting cut to nil past 16 levels).

use mlua::{Lua, MultiValue, Table, Value};

use super::state::{bad_argument, located};

/// Nesting past which tables are encoded as nil (circular references end there).
const MAX_NESTING: usize = 16;

pub fn library(lua: &Lua) -> mlua::Result<Table> {
    let cmsgpack = lua.create_table()?;
    cmsgpack.raw_set(
        "pack",
        lua.create_function(|lua, values: MultiValue| {
            if values.is_empty() {
                return Err(bad_argument(
                    lua,
                    0,
                    "pack",
                    "MessagePack pack needs input.",
                ));
            }
            let mut out = Vec::new();
            for value in &values {
                encode(value, 0, &mut out)?;
            }
            lua.create_string(out)
        })?,
    )?;
    cmsgpack.raw_set(
        "unpack",
        lua.create_function(|lua, args: MultiValue| {
            let text = input(lua, &args)?;
            let (_, values) = unpack(lua, &text, 0, usize::MAX)?;
            Ok(MultiValue::from_vec(values))
        })?,
    )?;
    cmsgpack.raw_set(
        "unpack_one",
        lua.create_function(|lua, args: MultiValue| {
            let text = input(lua, &args)?;
            let offset = integer_arg(lua, &args, 1)?;
            limited(lua, &text, 1, offset)
        })?,
    )?;
    cmsgpack.raw_set(
        "unpack_limit",
        lua.create_function(|lua, args: MultiValue| {
            let text = input(lua, &args)?;
            let limit = integer_arg(lua, &args, 1)?;
            let offset = integer_arg(lua, &args, 2)?;
            limited(lua, &text, limit, offset)
        })?,
    )?;
    Ok(cmsgpack)
}

/// The string to unpack (numbers are read as their text, as `luaL_checklstring` does).
fn input(lua: &Lua, args: &MultiValue) -> mlua::Result<Vec<u8>> {
    let value = args.front().cloned().unwrap_or(Value::Nil);
    match lua.coerce_string(value.clone()) {
        Ok(Some(text)) => Ok(text.as_bytes().to_vec()),
        _ => Err(bad_argument(
            lua,
            1,
            "unpack",
            &format!(
                "string expected, got {}",
                super::state::argument_type(&value)
            ),
        )),
    }
}

/// An optional integer argument (0 when absent).
fn integer_arg(lua: &Lua, args: &MultiValue, index: usize) -> mlua::Result<i64> {
    match args.get(index) {
        None | Some(Value::Nil) => Ok(0),
        Some(value) => match lua.coerce_number(value.clone()) {
            Ok(Some(n)) => Ok(n as i64),
            _ => Err(bad_argument(
                lua,
                index + 1,
                "unpack_limit",
                &format!(
                    "number expected, got {}",
                    super::state::argument_type(value)
                ),
            )),
        },
    }
}

/// `unpack_one` and `unpack_limit`: the offset after what was read (-1 at the end), then the
/// values.
fn limited(lua: &Lua, text: &[u8], limit: i64, offset: i64) -> mlua::Result<MultiValue> {
    if offset < 0 || limit < 0 {
        return Err(located(
            lua,
            &format!(
                "Invalid request to unpack with offset of {offset} and limit of {}.",
                text.len()
            ),
        ));
    }
    if offset as u64 > text.len() as u64 {
        return Err(located(
            lua,
            &format!(
                "Start offset {offset} greater than input length {}.",
                text.len()
            ),
        ));
    }
    let limit = if limit == 0 {
        usize::MAX
    } else {
        limit as usize
    };
    let (next, values) = unpack(lua, text, offset as usize, limit)?;
    let next = if next >= text.len() { -1 } else { next as i64 };
    let mut out = vec![Value::Integer(next)];
    out.extend(values);
    Ok(MultiValue::from_vec(out))
}

/// Decodes up to `limit` values from `offset`: the offset after them and the values.
fn unpack(
    lua: &Lua,
    text: &[u8],
    offset: usize,
    limit: usize,
) -> mlua::Result<(usize, Vec<Value>)> {
    let mut decoder = Decoder {
        lua,
        text,
        at: offset,
    };
    let mut values = Vec::new();
    while decoder.at < text.len() && values.len() < limit {
        let value = decoder.value().map_err(|failure| match failure {
            Failure::Missing => located(lua, "Missing bytes in input."),
            Failure::BadFormat => located(lua, "Bad data format in input."),
            Failure::Lua(err) => err,
        })?;
        values.push(value);
    }
    Ok((decoder.at, values))
}

fn encode_int(n: i64, out: &mut Vec<u8>) {
    if n >= 0 {
        if n <= 127 {
            out.push(n as u8);
        } else if n <= 0xff {
            out.extend_from_slice(&[0xcc, n as u8]);
        } else if n <= 0xffff {
            out.push(0xcd);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else if n <= 0xffff_ffff {
            out.push(0xce);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    } else if n >= -32 {
        out.push(n as i8 as u8);
    } else if n >= -128 {
        out.extend_from_slice(&[0xd0, n as i8 as u8]);
    } else if n >= -32768 {
        out.push(0xd1);
        out.extend_from_slice(&(n as i16).to_be_bytes());
    } else if n >= -2_147_483_648 {
        out.push(0xd2);
        out.extend_from_slice(&(n as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn encode_number(n: f64, out: &mut Vec<u8>) {
    // An integer when it is one (C's `(int64_t)n == n`), else the narrowest exact float.
    if !n.is_infinite() && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&n)
    {
        let int = n as i64;
        if int as f64 == n {
            return encode_int(int, out);
        }
    }
    let narrow = n as f32;
    if f64::from(narrow) == n {
        out.push(0xca);
        out.extend_from_slice(&narrow.to_be_bytes());
    } else {
        out.push(0xcb);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// A header with the length in the smallest form: `fix | len` below `fix_max`, then 8 (when
/// `one` is given), 16 or 32 bits.
fn encode_length(
    len: usize,
    fix: u8,
    fix_max: usize,
    one: Option<u8>,
    two: u8,
    four: u8,
    out: &mut Vec<u8>,
) {
    if len < fix_max {
        out.push(fix | len as u8);
    } else if let Some(one) = one.filter(|_| len <= 0xff) {
        out.extend_from_slice(&[one, len as u8]);
    } else if len <= 0xffff {
        out.push(two);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(four);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

fn encode(value: &Value, level: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    match value {
        Value::Boolean(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Integer(n) => encode_int(*n, out),
        Value::Number(n) => encode_number(*n, out),
        Value::String(s) => {
            let bytes = s.as_bytes();
            encode_length(bytes.len(), 0xa0, 32, Some(0xd9), 0xda, 0xdb, out);
            out.extend_from_slice(&bytes);
        }
        Value::Table(table) if level < MAX_NESTING => encode_table(table, level, out)?,
        _ => out.push(0xc0),
    }
    Ok(())
}

fn encode_table(table: &Table, level: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    // An array when the keys are exactly 1..n (an empty table is an empty array).
    let mut count = 0usize;
    let mut max = 0f64;
    let mut is_array = true;
    for pair in table.pairs::<Value, Value>() {
        let (key, _) = pair?;
        let n = match key {
            Value::Integer(n) => n as f64,
            Value::Number(n) => n,
            _ => {
                is_array = false;
                break;
            }
        };
        if n <= 0.0 || n.fract() != 0.0 {
            is_array = false;
            break;
        }
        max = max.max(n);
        count += 1;
    }
    if is_array && max == count as f64 {
        let len = table.raw_len();
        encode_length(len, 0x90, 16, None, 0xdc, 0xdd, out);
        for i in 1..=len {
            encode(&table.raw_get::<Value>(i)?, level + 1, out)?;
        }
        return Ok(());
    }
    let len = table.pairs::<Value, Value>().count();
    encode_length(len, 0x80, 16, None, 0xde, 0xdf, out);
    for pair in table.pairs::<Value, Value>() {
        let (key, value) = pair?;
        encode(&key, level + 1, out)?;
        encode(&value, level + 1, out)?;
    }
    Ok(())
}

/// Why decoding stopped.
enum Failure {
    /// The input ended inside a value.
    Missing,
    /// A type lua-cmsgpack does not read (bin, ext, 0xc1).
    BadFormat,
    /// Lua refused a value (a nil map key).
    Lua(mlua::Error),
}

impl From<mlua::Error> for Failure {
    fn from(err: mlua::Error) -> Failure {
        Failure::Lua(err)
    }
}

struct Decoder<'a> {
    lua: &'a Lua,
    text: &'a [u8],
    at: usize,
}

impl Decoder<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Failure> {
        let bytes = self
            .text
            .get(self.at..self.at + n)
            .ok_or(Failure::Missing)?;
        self.at += n;
        Ok(bytes)
    }

    fn uint(&mut self, n: usize) -> Result<u64, Failure> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn value(&mut self) -> Result<Value, Failure> {
        let tag = self.take(1)?[0];
        Ok(match tag {
            0x00..=0x7f => Value::Number(f64::from(tag)),
            0x80..=0x8f => self.map(usize::from(tag & 0x0f))?,
            0x90..=0x9f => self.array(usize::from(tag & 0x0f))?,
            0xa0..=0xbf => self.string(usize::from(tag & 0x1f))?,
            0xc0 => Value::Nil,
            0xc2 => Value::Boolean(false),
            0xc3 => Value::Boolean(true),
            0xca => Value::Number(f64::from(f32::from_bits(self.uint(4)? as u32))),
            0xcb => Value::Number(f64::from_bits(self.uint(8)?)),
            0xcc => Value::Number(self.uint(1)? as f64),
            0xcd => Value::Number(self.uint(2)? as f64),
            0xce => Value::Number(self.uint(4)? as f64),
            // Read as a signed 64-bit integer, as lua-cmsgpack does.
            0xcf => Value::Number(self.uint(8)? as i64 as f64),
            0xd0 => Value::Number(f64::from(self.uint(1)? as u8 as i8)),
            0xd1 => Value::Number(f64::from(self.uint(2)? as u16 as i16)),
            0xd2 => Value::Number(f64::from(self.uint(4)? as u32 as i32)),
            0xd3 => Value::Number(self.uint(8)? as i64 as f64),
            0xd9 => {
                let len = self.uint(1)? as usize;
                self.string(len)?
            }
            0xda => {
                let len = self.uint(2)? as usize;
                self.string(len)?
            }
            0xdb => {
                let len = self.uint(4)? as usize;
                self.string(len)?
            }
            0xdc => {
                let len = self.uint(2)? as usize;
                self.array(len)?
            }
            0xdd => {
                let len = self.uint(4)? as usize;
                self.array(len)?
            }
            0xde => {
                let len = self.uint(2)? as usize;
                self.map(len)?
            }
            0xdf => {
                let len = self.uint(4)? as usize;
                self.map(len)?
            }
            0xe0..=0xff => Value::Number(f64::from(tag as i8)),
            _ => return Err(Failure::BadFormat),
        })
    }

    fn string(&mut self, len: usize) -> Result<Value, Failure> {
        let bytes = self.take(len)?.to_vec();
        Ok(Value::String(self.lua.create_string(bytes)?))
    }

    fn array(&mut self, len: usize) -> Result<Value, Failure> {
        let table = self.lua.create_table()?;
        for i in 1..=len {
            let item = self.value()?;
            table.raw_set(i, item)?;
        }
        Ok(Value::Table(table))
    }

    fn map(&mut self, len: usize) -> Result<Value, Failure> {
        let table = self.lua.create_table()?;
        for _ in 0..len {
            let key = self.value()?;
            let value = self.value()?;
            if key == Value::Nil {
                return Err(Failure::Lua(mlua::Error::runtime("table index is nil")));
            }
            table.raw_set(key, value)?;
        }
        Ok(Value::Table(table))
    }
}
