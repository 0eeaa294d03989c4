//! lua-cjson 2.1 as Redis 7.0 bundles it: `encode`, `decode`, `null` and the settings
//! functions (which answer their defaults: redraft does not change them).

use std::io::Write;

use mlua::{LightUserData, Lua, Table, Value};

use super::state::located;
use crate::resp::reply::format_significant;

/// Deepest nesting `encode` and `decode` accept.
const MAX_DEPTH: usize = 1000;
/// lua-cjson's defaults for sparse arrays: an array is encoded when its largest index is
/// at most `SPARSE_SAFE` or at most `SPARSE_RATIO` times its element count.
const SPARSE_RATIO: usize = 2;
const SPARSE_SAFE: usize = 10;

fn null() -> Value {
    Value::LightUserData(LightUserData(std::ptr::null_mut()))
}

pub fn library(lua: &Lua) -> mlua::Result<Table> {
    let cjson = lua.create_table()?;
    cjson.raw_set("null", null())?;
    cjson.raw_set(
        "encode",
        lua.create_function(|lua, value: Value| {
            let mut out = Vec::new();
            encode(&value, 0, &mut out).map_err(|message| located(lua, &message))?;
            lua.create_string(out)
        })?,
    )?;
    cjson.raw_set(
        "decode",
        lua.create_function(|lua, text: mlua::String| {
            let bytes = text.as_bytes();
            let mut decoder = Decoder {
                lua,
                text: &bytes,
                at: 0,
            };
            decoder.document().map_err(|message| located(lua, &message))
        })?,
    )?;
    for (name, defaults) in [
        ("encode_sparse_array", "return false, 2, 10"),
        ("encode_max_depth", "return 1000"),
        ("decode_max_depth", "return 1000"),
        ("encode_number_precision", "return 14"),
        ("encode_keep_buffer", "return true"),
        ("encode_invalid_numbers", "return false"),
        ("decode_invalid_numbers", "return true"),
    ] {
        cjson.raw_set(name, lua.load(defaults).into_function()?)?;
    }
    Ok(cjson)
}

/// A number as lua-cjson prints it (`%.14g`).
fn number_text(n: f64) -> Result<String, String> {
    if !n.is_finite() {
        return Err("Cannot serialise number: must not be NaN or Inf".into());
    }
    Ok(format_significant(n, 14))
}

fn encode_string(bytes: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in bytes {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..=0x1f | 0x7f => {
                let _ = write!(out, "\\u{b:04x}");
            }
            // Other bytes pass through as they are (lua-cjson does not check UTF-8).
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// Appends `value`'s JSON to `out`.
fn encode(value: &Value, depth: usize, out: &mut Vec<u8>) -> Result<(), String> {
    match value {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::LightUserData(data) if data.0.is_null() => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Integer(n) => out.extend_from_slice(number_text(*n as f64)?.as_bytes()),
        Value::Number(n) => out.extend_from_slice(number_text(*n)?.as_bytes()),
        Value::String(s) => encode_string(&s.as_bytes(), out),
        Value::Table(table) => {
            let depth = depth + 1;
            if depth > MAX_DEPTH {
                return Err(format!("Cannot serialise, excessive nesting ({depth})"));
            }
            encode_table(table, depth, out)?;
        }
        other => {
            return Err(format!(
                "Cannot serialise {}: type not supported",
                other.type_name()
            ));
        }
    }
    Ok(())
}

fn encode_table(table: &Table, depth: usize, out: &mut Vec<u8>) -> Result<(), String> {
    // An array when every key is a positive integer and it is not too sparse.
    let mut max_index = 0usize;
    let mut items = 0usize;
    let mut is_array = true;
    for pair in table.pairs::<Value, Value>() {
        let (key, _) = pair.map_err(|e| e.to_string())?;
        items += 1;
        let index = match key {
            Value::Integer(n) if n >= 1 => Some(n as usize),
            Value::Number(n) if n >= 1.0 && n.fract() == 0.0 => Some(n as usize),
            _ => None,
        };
        match index {
            Some(index) => max_index = max_index.max(index),
            None => {
                is_array = false;
                break;
            }
        }
    }
    if is_array && items > 0 {
        if max_index > SPARSE_SAFE && max_index > items * SPARSE_RATIO {
            return Err("Cannot serialise table: excessively sparse array".into());
        }
        out.push(b'[');
        for i in 1..=max_index {
            if i > 1 {
                out.push(b',');
            }
            let item: Value = table.raw_get(i).map_err(|e| e.to_string())?;
            encode(&item, depth, out)?;
        }
        out.push(b']');
        return Ok(());
    }
    out.push(b'{');
    let mut first = true;
    for pair in table.pairs::<Value, Value>() {
        let (key, value) = pair.map_err(|e| e.to_string())?;
        if !first {
            out.push(b',');
        }
        first = false;
        match &key {
            Value::String(s) => encode_string(&s.as_bytes(), out),
            Value::Integer(n) => {
                out.push(b'"');
                out.extend_from_slice(number_text(*n as f64)?.as_bytes());
                out.push(b'"');
            }
            Value::Number(n) => {
                out.push(b'"');
                out.extend_from_slice(number_text(*n)?.as_bytes());
                out.push(b'"');
            }
            other => {
                return Err(format!(
                    "Cannot serialise {}: table key must be a number or string",
                    other.type_name()
                ));
            }
        }
        out.push(b':');
        encode(&value, depth, out)?;
    }
    out.push(b'}');
    Ok(())
}

/// A JSON text being decoded into Lua values.
struct Decoder<'a> {
    lua: &'a Lua,
    text: &'a [u8],
    at: usize,
}

impl Decoder<'_> {
    fn document(&mut self) -> Result<Value, String> {
        let value = self.value(0)?;
        self.skip_space();
        if self.at < self.text.len() {
            return Err(self.unexpected("the end"));
        }
        Ok(value)
    }

    fn skip_space(&mut self) {
        while self
            .text
            .get(self.at)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.at += 1;
        }
    }

    /// lua-cjson's error for a token it did not expect, named as lua-cjson names it.
    fn unexpected(&self, expected: &str) -> String {
        let rest = &self.text[self.at.min(self.text.len())..];
        let found = match rest.first() {
            None => "T_END",
            Some(b'{') => "T_OBJ_BEGIN",
            Some(b'}') => "T_OBJ_END",
            Some(b'[') => "T_ARR_BEGIN",
            Some(b']') => "T_ARR_END",
            Some(b',') => "T_COMMA",
            Some(b':') => "T_COLON",
            Some(b'"') => "T_STRING",
            Some(b'-' | b'0'..=b'9') => "T_NUMBER",
            _ if rest.starts_with(b"true") || rest.starts_with(b"false") => "T_BOOLEAN",
            _ if rest.starts_with(b"null") => "T_NULL",
            _ => "invalid token",
        };
        format!(
            "Expected {expected} but found {found} at character {}",
            self.at + 1
        )
    }

    /// Steps into an object or array (the cursor is on its bracket): the new depth, or
    /// lua-cjson's error past [`MAX_DEPTH`].
    fn nest(&mut self, depth: usize) -> Result<usize, String> {
        let depth = depth + 1;
        if depth > MAX_DEPTH {
            return Err(format!(
                "Found too many nested data structures ({depth}) at character {}",
                self.at + 1
            ));
        }
        self.at += 1;
        Ok(depth)
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        self.skip_space();
        let lua_err = |e: mlua::Error| e.to_string();
        match self.text.get(self.at) {
            Some(b'{') => {
                let depth = self.nest(depth)?;
                let table = self.lua.create_table().map_err(lua_err)?;
                self.skip_space();
                if self.text.get(self.at) == Some(&b'}') {
                    self.at += 1;
                    return Ok(Value::Table(table));
                }
                loop {
                    self.skip_space();
                    if self.text.get(self.at) != Some(&b'"') {
                        return Err(self.unexpected("object key string"));
                    }
                    let key = self.string("object key string")?;
                    self.skip_space();
                    if self.text.get(self.at) != Some(&b':') {
                        return Err(self.unexpected("colon"));
                    }
                    self.at += 1;
                    let value = self.value(depth)?;
                    let key = self.lua.create_string(&key).map_err(lua_err)?;
                    table.raw_set(key, value).map_err(lua_err)?;
                    self.skip_space();
                    match self.text.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b'}') => {
                            self.at += 1;
                            return Ok(Value::Table(table));
                        }
                        _ => return Err(self.unexpected("comma or object end")),
                    }
                }
            }
            Some(b'[') => {
                let depth = self.nest(depth)?;
                let table = self.lua.create_table().map_err(lua_err)?;
                self.skip_space();
                if self.text.get(self.at) == Some(&b']') {
                    self.at += 1;
                    return Ok(Value::Table(table));
                }
                let mut index = 1;
                loop {
                    let value = self.value(depth)?;
                    table.raw_set(index, value).map_err(lua_err)?;
                    index += 1;
                    self.skip_space();
                    match self.text.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b']') => {
                            self.at += 1;
                            return Ok(Value::Table(table));
                        }
                        _ => return Err(self.unexpected("comma or array end")),
                    }
                }
            }
            Some(b'"') => {
                let bytes = self.string("value")?;
                Ok(Value::String(
                    self.lua.create_string(&bytes).map_err(lua_err)?,
                ))
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') if self.text[self.at..].starts_with(b"true") => {
                self.at += 4;
                Ok(Value::Boolean(true))
            }
            Some(b'f') if self.text[self.at..].starts_with(b"false") => {
                self.at += 5;
                Ok(Value::Boolean(false))
            }
            Some(b'n') if self.text[self.at..].starts_with(b"null") => {
                self.at += 4;
                Ok(null())
            }
            _ => Err(self.unexpected("value")),
        }
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.at;
        let mut end = start;
        while self
            .text
            .get(end)
            .is_some_and(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
        {
            end += 1;
        }
        let text = std::str::from_utf8(&self.text[start..end]).unwrap_or_default();
        match text.parse::<f64>() {
            Ok(n) => {
                self.at = end;
                Ok(Value::Number(n))
            }
            Err(_) => Err(format!(
                "Expected value but found invalid number at character {}",
                start + 1
            )),
        }
    }

    /// A string token's bytes (the cursor is on its opening quote).
    fn string(&mut self, expected: &str) -> Result<Vec<u8>, String> {
        self.at += 1;
        let mut out = Vec::new();
        let error = |at: usize, what: &str| {
            format!(
                "Expected {expected} but found {what} at character {}",
                at + 1
            )
        };
        loop {
            let Some(&b) = self.text.get(self.at) else {
                return Err(error(self.at, "unexpected end of string"));
            };
            let escape_at = self.at;
            let invalid = || error(escape_at, "invalid unicode escape code");
            self.at += 1;
            match b {
                b'"' => return Ok(out),
                b'\\' => {
                    let Some(&escape) = self.text.get(self.at) else {
                        return Err(error(escape_at, "invalid escape code"));
                    };
                    self.at += 1;
                    match escape {
                        b'"' | b'\\' | b'/' => out.push(escape),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0c),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let unit = self.hex4().ok_or_else(invalid)?;
                            let code = if (0xd800..0xdc00).contains(&unit) {
                                if self.text.get(self.at..self.at + 2) != Some(b"\\u") {
                                    return Err(invalid());
                                }
                                self.at += 2;
                                let low = self.hex4().ok_or_else(invalid)?;
                                if !(0xdc00..0xe000).contains(&low) {
                                    return Err(invalid());
                                }
                                0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00)
                            } else if (0xdc00..0xe000).contains(&unit) {
                                return Err(invalid());
                            } else {
                                unit
                            };
                            let c = char::from_u32(code).ok_or_else(invalid)?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return Err(error(escape_at, "invalid escape code")),
                    }
                }
                _ => out.push(b),
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.text.get(self.at..self.at + 4)?;
        let text = std::str::from_utf8(digits).ok()?;
        let value = u32::from_str_radix(text, 16).ok()?;
        self.at += 4;
        Some(value)
    }
}
