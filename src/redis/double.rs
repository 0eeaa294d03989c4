//! Redis's two ways of reading a double from an argument, both built on C's `strtod`: the
//! strict one of ZADD, ZINCRBY and WEIGHTS (`getDoubleFromObject`: the whole argument, no
//! leading space, no overflow or underflow, no NaN) and the lenient one of score ranges
//! (`zslParseRange`: leading spaces skipped, the argument read up to a NUL byte, overflow to
//! infinity accepted, an empty argument is 0). Both accept what `strtod` does: decimal and
//! hexadecimal forms, `inf`, `infinity`.

/// C's `isspace` in the "C" locale.
fn is_c_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// `strtod` over all of `text` (no leading space): the value and whether it went out of range
/// (`ERANGE`: overflow to infinity or underflow to zero); `None` when `text` is not one number.
fn strtod_whole(text: &[u8]) -> Option<(f64, bool)> {
    let (negative, body) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let lower: Vec<u8> = body.iter().map(u8::to_ascii_lowercase).collect();
    let value = if lower == b"inf" || lower == b"infinity" {
        f64::INFINITY
    } else if lower == b"nan" || (lower.starts_with(b"nan(") && lower.ends_with(b")")) {
        f64::NAN
    } else if lower.starts_with(b"0x") {
        return hex(&lower[2..]).map(|(v, erange)| (if negative { -v } else { v }, erange));
    } else {
        let mut at = 0;
        let digits = |at: &mut usize| {
            let start = *at;
            while lower.get(*at).is_some_and(u8::is_ascii_digit) {
                *at += 1;
            }
            *at - start
        };
        let mut mantissa_digits = digits(&mut at);
        if lower.get(at) == Some(&b'.') {
            at += 1;
            mantissa_digits += digits(&mut at);
        }
        if mantissa_digits == 0 {
            return None;
        }
        let nonzero = lower[..at].iter().any(|&b| (b'1'..=b'9').contains(&b));
        if lower.get(at) == Some(&b'e') {
            at += 1;
            if matches!(lower.get(at), Some(b'+' | b'-')) {
                at += 1;
            }
            if digits(&mut at) == 0 {
                return None;
            }
        }
        if at != lower.len() {
            return None;
        }
        let value: f64 = std::str::from_utf8(&lower).ok()?.parse().ok()?;
        let erange = value.is_infinite() || (value == 0.0 && nonzero);
        return Some((if negative { -value } else { value }, erange));
    };
    Some((if negative { -value } else { value }, false))
}

/// A hexadecimal float after its `0x`: hex digits with an optional point, an optional binary
/// exponent `p[+-]digits`.
fn hex(body: &[u8]) -> Option<(f64, bool)> {
    let mut mantissa = 0f64;
    let mut scale = 0i64;
    let mut digits = 0;
    let mut at = 0;
    let mut seen_point = false;
    while let Some(&byte) = body.get(at) {
        if byte == b'.' && !seen_point {
            seen_point = true;
        } else if let Some(digit) = (byte as char).to_digit(16) {
            mantissa = mantissa * 16.0 + f64::from(digit);
            digits += 1;
            if seen_point {
                scale -= 4;
            }
        } else {
            break;
        }
        at += 1;
    }
    if digits == 0 {
        return None;
    }
    if body.get(at) == Some(&b'p') {
        at += 1;
        let (negative, start) = match body.get(at) {
            Some(b'-') => (true, at + 1),
            Some(b'+') => (false, at + 1),
            _ => (false, at),
        };
        let text = std::str::from_utf8(body.get(start..)?).ok()?;
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let exponent: i64 = text.parse().unwrap_or(i64::MAX / 2);
        scale = scale.saturating_add(if negative { -exponent } else { exponent });
        at = body.len();
    }
    if at != body.len() {
        return None;
    }
    let value = mantissa * 2f64.powi(scale.clamp(-2000, 2000) as i32);
    let erange = value.is_infinite() || (value == 0.0 && mantissa != 0.0);
    Some((value, erange))
}

/// `getDoubleFromObject`: the whole argument as a double; `None` when Redis answers "not a
/// valid float".
pub fn parse_strict(arg: &[u8]) -> Option<f64> {
    if arg.first().is_none_or(|&b| is_c_space(b)) {
        return None;
    }
    let (value, erange) = strtod_whole(arg)?;
    if value.is_nan() || (erange && (value.is_infinite() || value == 0.0)) {
        return None;
    }
    Some(value)
}

/// A score range bound's number as `zslParseRange` reads it (after any `(`); `None` when Redis
/// answers "min or max is not a float".
pub fn parse_lenient(arg: &[u8]) -> Option<f64> {
    let text = crate::redis::table::c_str(arg);
    if text.is_empty() {
        return Some(0.0);
    }
    let start = text.iter().position(|&b| !is_c_space(b))?;
    let (value, _) = strtod_whole(&text[start..])?;
    (!value.is_nan()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_parsing_follows_redis() {
        for (text, expected) in [
            ("1.5", Some(1.5)),
            ("-2", Some(-2.0)),
            ("+3e2", Some(300.0)),
            (".5", Some(0.5)),
            ("5.", Some(5.0)),
            ("inf", Some(f64::INFINITY)),
            ("-Infinity", Some(f64::NEG_INFINITY)),
            ("0x10", Some(16.0)),
            ("0x1p-2", Some(0.25)),
            ("0e999", Some(0.0)),
            ("nan", None),
            ("", None),
            (" 1", None),
            ("1 ", None),
            ("1e", None),
            ("1e400", None),
            ("1e-400", None),
            ("abc", None),
            ("0x", None),
            (".", None),
        ] {
            assert_eq!(parse_strict(text.as_bytes()), expected, "{text:?}");
        }
    }

    #[test]
    fn range_parsing_is_lenient_where_redis_is() {
        assert_eq!(parse_lenient(b""), Some(0.0));
        assert_eq!(parse_lenient(b" 2"), Some(2.0));
        assert_eq!(parse_lenient(b"1e400"), Some(f64::INFINITY));
        assert_eq!(parse_lenient(b"3\0junk"), Some(3.0));
        assert_eq!(parse_lenient(b"  "), None);
        assert_eq!(parse_lenient(b"nan"), None);
        assert_eq!(parse_lenient(b"x"), None);
    }
}
