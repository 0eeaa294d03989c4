//! The Lua libraries Redis 7.0 loads for scripts beside Lua's own, with their results and error
//! texts: `bit` (LuaBitOp 1.0) here, `cjson`, `cmsgpack` and `struct` in their own files.

use mlua::{Lua, MultiValue, Table, Value, Variadic};

use super::state::{argument_type, bad_argument};

/// Installs `bit`, `cjson`, `cmsgpack` and `struct` as globals.
pub fn install(lua: &Lua) -> mlua::Result<()> {
    lua.globals().raw_set("bit", bit_library(lua)?)?;
    lua.globals()
        .raw_set("cjson", super::cjson::library(lua)?)?;
    lua.globals()
        .raw_set("cmsgpack", super::cmsgpack::library(lua)?)?;
    lua.globals()
        .raw_set("struct", super::struct_lib::library(lua)?)?;
    Ok(())
}

/// A number argument as LuaBitOp reads it: any number (or numeric string), rounded to an
/// integer and cut to its low 32 bits, as a signed 32-bit value.
fn bit_arg(lua: &Lua, function: &str, position: usize, value: &Value) -> mlua::Result<i32> {
    match lua.coerce_number(value.clone()) {
        Ok(Some(n)) => Ok(to_bit(n)),
        _ => Err(bad_argument(
            lua,
            position,
            function,
            &format!("number expected, got {}", argument_type(value)),
        )),
    }
}

/// LuaBitOp's normalisation: add 2^52 + 2^51 and keep the low word of the double.
fn to_bit(n: f64) -> i32 {
    (n + 6_755_399_441_055_744.0).to_bits() as u32 as i32
}

fn bit_library(lua: &Lua) -> mlua::Result<Table> {
    let bit = lua.create_table()?;
    bit.raw_set(
        "tobit",
        lua.create_function(|lua, x: Value| bit_arg(lua, "tobit", 1, &x))?,
    )?;
    bit.raw_set(
        "bnot",
        lua.create_function(|lua, x: Value| Ok(!bit_arg(lua, "bnot", 1, &x)?))?,
    )?;
    bit.raw_set(
        "bswap",
        lua.create_function(|lua, x: Value| Ok(bit_arg(lua, "bswap", 1, &x)?.swap_bytes()))?,
    )?;
    for (name, fold) in [
        ("band", (|a, b| a & b) as fn(i32, i32) -> i32),
        ("bor", |a, b| a | b),
        ("bxor", |a, b| a ^ b),
    ] {
        bit.raw_set(
            name,
            lua.create_function(move |lua, args: Variadic<Value>| {
                let first = bit_arg(lua, name, 1, args.first().unwrap_or(&Value::Nil))?;
                args.iter()
                    .enumerate()
                    .skip(1)
                    .try_fold(first, |acc, (i, value)| {
                        Ok(fold(acc, bit_arg(lua, name, i + 1, value)?))
                    })
            })?,
        )?;
    }
    for (name, shift) in [
        (
            "lshift",
            (|x, n| ((x as u32) << n) as i32) as fn(i32, u32) -> i32,
        ),
        ("rshift", |x, n| ((x as u32) >> n) as i32),
        ("arshift", |x, n| x >> n),
        ("rol", |x, n| (x as u32).rotate_left(n) as i32),
        ("ror", |x, n| (x as u32).rotate_right(n) as i32),
    ] {
        bit.raw_set(
            name,
            lua.create_function(move |lua, (x, n): (Value, Value)| {
                let x = bit_arg(lua, name, 1, &x)?;
                let n = bit_arg(lua, name, 2, &n)? as u32 & 31;
                Ok(shift(x, n))
            })?,
        )?;
    }
    bit.raw_set(
        "tohex",
        lua.create_function(|lua, args: MultiValue| {
            let x = bit_arg(lua, "tohex", 1, args.front().unwrap_or(&Value::Nil))?;
            let n = match args.get(1) {
                None | Some(Value::Nil) => 8,
                Some(n) => bit_arg(lua, "tohex", 2, n)?,
            };
            let (digits, upper) = if n < 0 { (-n, true) } else { (n, false) };
            let digits = digits.min(8) as usize;
            let text = if upper {
                format!("{:08X}", x as u32)
            } else {
                format!("{:08x}", x as u32)
            };
            Ok(text[8 - digits..].to_string())
        })?,
    )?;
    Ok(bit)
}
