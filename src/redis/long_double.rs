//! An exact software model of x86's 80-bit `long double` for INCRBYFLOAT and HINCRBYFLOAT:
//! Redis parses with `strtold`, adds in x87 extended precision and prints
//! with `%.17Lf`, none of which Rust's `f64` reproduces (`0.1 + 0.2` is `0.3` in Redis).
//!
//! A value is `mantissa × 2^exponent` with a 64-bit mantissa, rounded to nearest-even like
//! the x87 unit, with its exponent range (subnormals down to 2^-16445, overflow past
//! 2^16384). Arithmetic uses a small big-integer type, so it is exact and the same on every
//! machine.

use std::cmp::Ordering;

/// The exponent of the smallest subnormal: 2^-16445.
const MIN_EXP: i64 = -16445;
/// The exponent of the largest finite value's mantissa: (2^64 - 1) × 2^16320.
const MAX_EXP: i64 = 16320;
/// Redis's `MAX_LONG_DOUBLE_CHARS`: longer strings are not floats to `string2ld`.
const MAX_CHARS: usize = 5 * 1024;

/// A finite extended-precision value: `(-1)^negative × mantissa × 2^exponent`, the
/// mantissa normalized (top bit set) unless the value is subnormal or zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LongDouble {
    negative: bool,
    mantissa: u64,
    exponent: i64,
}

/// What [`parse`] read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A finite value.
    Finite(LongDouble),
    /// `inf`/`infinity` of either sign.
    Infinite,
}

impl LongDouble {
    /// Positive zero.
    pub const ZERO: LongDouble = LongDouble {
        negative: false,
        mantissa: 0,
        exponent: MIN_EXP,
    };

    fn zero(negative: bool) -> LongDouble {
        LongDouble {
            negative,
            ..LongDouble::ZERO
        }
    }

    /// `self + other` rounded to nearest-even; `None` when it overflows to infinity.
    pub fn checked_add(self, other: LongDouble) -> Option<LongDouble> {
        if self.mantissa == 0 && other.mantissa == 0 {
            return Some(LongDouble::zero(self.negative && other.negative));
        }
        if self.mantissa == 0 {
            return Some(other);
        }
        if other.mantissa == 0 {
            return Some(self);
        }
        let (a, b) = if self.exponent >= other.exponent {
            (self, other)
        } else {
            (other, self)
        };
        // Both at 2^(a.exponent - 62): a's mantissa fills bits 62..126, b's is shifted to
        // match, and bits shifted out of b only count as "something below" (sticky).
        let base = a.exponent - 62;
        let wide_a = u128::from(a.mantissa) << 62;
        let distance = (a.exponent - b.exponent) as u64;
        let (wide_b, sticky) = if distance <= 62 {
            (u128::from(b.mantissa) << (62 - distance), false)
        } else if distance - 62 >= 64 {
            (0, true)
        } else {
            let shift = distance - 62;
            (
                u128::from(b.mantissa >> shift),
                b.mantissa & ((1u64 << shift) - 1) != 0,
            )
        };
        if a.negative == b.negative {
            return round(a.negative, &Big::from_u128(wide_a + wide_b), base, sticky);
        }
        // With a sticky b, a is normal and far larger (wide_a ≥ 2^125 > wide_b): the
        // difference is (wide_a - wide_b - 1) plus a fraction strictly between 0 and 1.
        match wide_a.cmp(&wide_b) {
            Ordering::Greater => round(
                a.negative,
                &Big::from_u128(wide_a - wide_b - u128::from(sticky)),
                base,
                sticky,
            ),
            Ordering::Less => round(b.negative, &Big::from_u128(wide_b - wide_a), base, false),
            Ordering::Equal => Some(LongDouble::ZERO),
        }
    }

    /// Redis's `ld2string(…, LD_STR_HUMAN)`: `%.17Lf` (rounded half to even, as glibc
    /// does), trailing zeros and point removed, `-0` written `0`.
    pub fn format_human(self) -> String {
        let scaled = u128::from(self.mantissa) * 100_000_000_000_000_000;
        let units = if self.exponent >= 0 {
            Big::from_u128(scaled).shl(self.exponent as u64)
        } else {
            let shift = self.exponent.unsigned_abs();
            let whole = Big::from_u128(scaled);
            let mut units = whole.shr(shift);
            let half = whole.bit(shift - 1);
            if half && (whole.any_below(shift - 1) || units.bit(0)) {
                units.mul_add_small(1, 1);
            }
            units
        };
        let mut digits = units.to_decimal();
        if digits.len() < 18 {
            digits.insert_str(0, &"0".repeat(18 - digits.len()));
        }
        let (int_part, fraction) = digits.split_at(digits.len() - 17);
        let fraction = fraction.trim_end_matches('0');
        let mut out = String::with_capacity(digits.len() + 2);
        if self.negative {
            out.push('-');
        }
        out.push_str(int_part);
        if !fraction.is_empty() {
            out.push('.');
            out.push_str(fraction);
        }
        if out == "-0" {
            out = "0".into();
        }
        out
    }
}

/// Rounds `(-1)^negative × (n + sticky fraction) × 2^exponent` to a [`LongDouble`];
/// `None` on overflow. `sticky` says there is a nonzero amount below `n`'s last bit.
fn round(negative: bool, n: &Big, exponent: i64, sticky: bool) -> Option<LongDouble> {
    if n.is_zero() {
        return Some(LongDouble::zero(negative));
    }
    let len = n.bit_len() as i64;
    let shift = (len - 64).max(MIN_EXP.saturating_sub(exponent));
    let (mantissa, exponent) = if shift <= 0 {
        (n.shl(shift.unsigned_abs()).low_u64(), exponent + shift)
    } else {
        let shift_bits = shift as u64;
        let mut mantissa = n.shr(shift_bits).low_u64();
        let mut exponent = exponent.saturating_add(shift);
        let half = n.bit(shift_bits - 1);
        if half && (sticky || n.any_below(shift_bits - 1) || mantissa & 1 == 1) {
            mantissa = match mantissa.checked_add(1) {
                Some(m) => m,
                None => {
                    exponent += 1;
                    1 << 63
                }
            };
        }
        (mantissa, exponent)
    };
    if mantissa == 0 {
        return Some(LongDouble::zero(negative));
    }
    (exponent <= MAX_EXP).then_some(LongDouble {
        negative,
        mantissa,
        exponent,
    })
}

/// Redis's `string2ld`: glibc `strtold` over the whole argument (decimal, `0x` hex,
/// `inf`/`infinity`), refusing empty or over-long input, leading spaces, trailing bytes,
/// NaN, overflow and underflow to zero. `None` is "not a float".
pub fn parse(text: &[u8]) -> Option<Parsed> {
    if text.is_empty() || text.len() >= MAX_CHARS {
        return None;
    }
    let (negative, body) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    if body.eq_ignore_ascii_case(b"inf") || body.eq_ignore_ascii_case(b"infinity") {
        return Some(Parsed::Infinite);
    }
    let hex = body.len() > 2 && body[0] == b'0' && (body[1] | 0x20) == b'x';
    let value = if hex {
        parse_hex(negative, &body[2..])?
    } else {
        parse_decimal(negative, body)?
    };
    Some(Parsed::Finite(value))
}

/// Splits `digits[.digits]` off the front of `text` with `radix` digits: the digits
/// without the point, how many came after it, and the rest of `text`.
fn mantissa_digits(text: &[u8], radix: u32) -> (Vec<u8>, usize, &[u8]) {
    let is_digit = |b: &u8| (*b as char).is_digit(radix);
    let int_len = text.iter().take_while(|b| is_digit(b)).count();
    let mut digits: Vec<u8> = text[..int_len].to_vec();
    let mut rest = &text[int_len..];
    let mut fraction_len = 0;
    if let Some((b'.', after)) = rest.split_first() {
        fraction_len = after.iter().take_while(|b| is_digit(b)).count();
        digits.extend_from_slice(&after[..fraction_len]);
        rest = &after[fraction_len..];
    }
    (digits, fraction_len, rest)
}

/// An exponent `[sign]digits` filling all of `text`, saturated far beyond any range.
fn exponent_digits(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = digits.iter().fold(0i64, |acc, &d| {
        (acc * 10 + i64::from(d - b'0')).min(1_000_000_000)
    });
    Some(if negative { -value } else { value })
}

fn parse_decimal(negative: bool, body: &[u8]) -> Option<LongDouble> {
    let (digits, fraction_len, rest) = mantissa_digits(body, 10);
    if digits.is_empty() {
        return None;
    }
    let exponent = match rest.split_first() {
        None => 0,
        Some((b'e' | b'E', exp)) => exponent_digits(exp)?,
        Some(_) => return None,
    };
    let digits: &[u8] = {
        let first = digits.iter().position(|&d| d != b'0');
        match first {
            Some(first) => &digits[first..],
            None => return Some(LongDouble::zero(negative)),
        }
    };
    // The value is digits × 10^exp10, with 10^(len-1+exp10) ≤ value < 10^(len+exp10).
    let exp10 = exponent - fraction_len as i64;
    let magnitude = digits.len() as i64 + exp10;
    if magnitude > 4933 {
        return None; // ≥ 10^4933: overflow (ERANGE)
    }
    if magnitude <= -4952 {
        return None; // < 10^-4952, under half the smallest subnormal: zero with ERANGE
    }
    let mut n = Big::default();
    for chunk in digits.chunks(9) {
        let mut chunk_value = 0u32;
        for &d in chunk {
            chunk_value = chunk_value * 10 + u32::from(d - b'0');
        }
        n.mul_add_small(10u32.pow(chunk.len() as u32), chunk_value);
    }
    let value = if exp10 >= 0 {
        n.mul_pow10(exp10 as u64);
        round(negative, &n, 0, false)?
    } else {
        let mut divisor = Big::from_u128(1);
        divisor.mul_pow10(exp10.unsigned_abs());
        divide(negative, &n, &divisor)?
    };
    // Underflow to zero is an ERANGE strtold result that string2ld refuses.
    (value.mantissa != 0).then_some(value)
}

/// `numerator / divisor` rounded: a 66..68-bit quotient and a sticky remainder.
fn divide(negative: bool, numerator: &Big, divisor: &Big) -> Option<LongDouble> {
    let shift = divisor.bit_len() as i64 + 67 - numerator.bit_len() as i64;
    let (mut rest, mut sticky) = if shift >= 0 {
        (numerator.shl(shift as u64), false)
    } else {
        let drop = shift.unsigned_abs();
        (numerator.shr(drop), numerator.any_below(drop))
    };
    let mut quotient: u128 = 0;
    for bit in (0..=68u64).rev() {
        let step = divisor.shl(bit);
        if rest.compare(&step) != Ordering::Less {
            rest.sub_assign(&step);
            quotient |= 1 << bit;
        }
    }
    sticky |= !rest.is_zero();
    round(negative, &Big::from_u128(quotient), -shift, sticky)
}

fn parse_hex(negative: bool, body: &[u8]) -> Option<LongDouble> {
    let (digits, fraction_len, rest) = mantissa_digits(body, 16);
    if digits.is_empty() {
        return None;
    }
    let exponent = match rest.split_first() {
        None => 0,
        Some((b'p' | b'P', exp)) => exponent_digits(exp)?,
        Some(_) => return None,
    };
    let mut n = Big::default();
    for &d in &digits {
        n.mul_add_small(16, (d as char).to_digit(16).unwrap_or(0));
    }
    if n.is_zero() {
        return Some(LongDouble::zero(negative));
    }
    let exp2 = exponent - 4 * fraction_len as i64;
    let value = round(negative, &n, exp2, false)?;
    (value.mantissa != 0).then_some(value)
}

/// A minimal unsigned big integer: little-endian 32-bit limbs, no high zero limbs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Big(Vec<u32>);

impl Big {
    fn from_u128(mut value: u128) -> Big {
        let mut limbs = Vec::with_capacity(4);
        while value != 0 {
            limbs.push(value as u32);
            value >>= 32;
        }
        Big(limbs)
    }

    fn trim(&mut self) {
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
    }

    fn is_zero(&self) -> bool {
        self.0.is_empty()
    }

    fn bit_len(&self) -> u64 {
        self.0.last().map_or(0, |&top| {
            (self.0.len() as u64 - 1) * 32 + u64::from(32 - top.leading_zeros())
        })
    }

    fn bit(&self, i: u64) -> bool {
        usize::try_from(i / 32)
            .ok()
            .and_then(|limb| self.0.get(limb))
            .is_some_and(|&l| l >> (i % 32) & 1 == 1)
    }

    /// Whether any bit below bit `i` is set.
    fn any_below(&self, i: u64) -> bool {
        let whole = usize::try_from(i / 32)
            .unwrap_or(usize::MAX)
            .min(self.0.len());
        if self.0[..whole].iter().any(|&l| l != 0) {
            return true;
        }
        let bits = i % 32;
        whole < self.0.len() && bits > 0 && self.0[whole] & ((1u32 << bits) - 1) != 0
    }

    /// The lowest 64 bits.
    fn low_u64(&self) -> u64 {
        let low = self.0.first().copied().unwrap_or(0);
        let high = self.0.get(1).copied().unwrap_or(0);
        u64::from(low) | u64::from(high) << 32
    }

    /// `self = self × mul + add`.
    fn mul_add_small(&mut self, mul: u32, add: u32) {
        let mut carry = u64::from(add);
        for limb in &mut self.0 {
            let v = u64::from(*limb) * u64::from(mul) + carry;
            *limb = v as u32;
            carry = v >> 32;
        }
        if carry != 0 {
            self.0.push(carry as u32);
        }
        self.trim();
    }

    fn mul_pow10(&mut self, mut n: u64) {
        while n >= 9 {
            self.mul_add_small(1_000_000_000, 0);
            n -= 9;
        }
        self.mul_add_small(10u32.pow(n as u32), 0);
    }

    /// `self × 2^n`; callers keep `n` to the sizes of real values.
    fn shl(&self, n: u64) -> Big {
        if self.is_zero() {
            return Big::default();
        }
        let limbs = (n / 32) as usize;
        let bits = (n % 32) as u32;
        let mut out = vec![0u32; limbs];
        out.reserve(self.0.len() + 1);
        let mut carry = 0u32;
        for &limb in &self.0 {
            if bits == 0 {
                out.push(limb);
            } else {
                out.push(limb << bits | carry);
                carry = limb >> (32 - bits);
            }
        }
        if carry != 0 {
            out.push(carry);
        }
        Big(out)
    }

    /// `self / 2^n`, rounded down.
    fn shr(&self, n: u64) -> Big {
        let Some(limbs) = usize::try_from(n / 32)
            .ok()
            .filter(|&limbs| limbs < self.0.len())
        else {
            return Big::default();
        };
        let bits = (n % 32) as u32;
        let src = &self.0[limbs..];
        let mut out = Vec::with_capacity(src.len());
        for (i, &limb) in src.iter().enumerate() {
            let next = src.get(i + 1).copied().unwrap_or(0);
            out.push(if bits == 0 {
                limb
            } else {
                limb >> bits | next << (32 - bits)
            });
        }
        let mut out = Big(out);
        out.trim();
        out
    }

    fn compare(&self, other: &Big) -> Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.iter().rev().cmp(other.0.iter().rev()))
    }

    /// `self -= other`, for `self ≥ other`.
    fn sub_assign(&mut self, other: &Big) {
        let mut borrow = 0i64;
        for (i, limb) in self.0.iter_mut().enumerate() {
            let v = i64::from(*limb) - i64::from(other.0.get(i).copied().unwrap_or(0)) - borrow;
            borrow = i64::from(v < 0);
            *limb = v.rem_euclid(1 << 32) as u32;
        }
        self.trim();
    }

    /// `self /= d`, returning the remainder.
    fn div_small(&mut self, d: u32) -> u32 {
        let mut rem = 0u64;
        for limb in self.0.iter_mut().rev() {
            let v = rem << 32 | u64::from(*limb);
            *limb = (v / u64::from(d)) as u32;
            rem = v % u64::from(d);
        }
        self.trim();
        rem as u32
    }

    fn to_decimal(&self) -> String {
        let mut n = self.clone();
        let mut chunks = Vec::new();
        while !n.is_zero() {
            chunks.push(n.div_small(1_000_000_000));
        }
        let Some((top, rest)) = chunks.split_last() else {
            return "0".into();
        };
        let mut out = top.to_string();
        for chunk in rest.iter().rev() {
            out.push_str(&format!("{chunk:09}"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calc(current: &str, increment: &str) -> Option<String> {
        let Some(Parsed::Finite(a)) = parse(current.as_bytes()) else {
            return None;
        };
        let Some(Parsed::Finite(b)) = parse(increment.as_bytes()) else {
            return None;
        };
        a.checked_add(b).map(LongDouble::format_human)
    }

    fn show(text: &str) -> Option<String> {
        calc("0", text)
    }

    #[test]
    fn long_double_prints_decimals_as_redis_does() {
        assert_eq!(calc("0.1", "0.2").as_deref(), Some("0.3"));
        assert_eq!(calc("10.50", "0.1").as_deref(), Some("10.6"));
        assert_eq!(calc("10.6", "-5").as_deref(), Some("5.6"));
        assert_eq!(calc("5.0e3", "2.0e2").as_deref(), Some("5200"));
        assert_eq!(show("0x1p-2").as_deref(), Some("0.25"));
        assert_eq!(show("0x1.8p1").as_deref(), Some("3"));
        // An exact tie at the 17th decimal rounds to even (glibc).
        assert_eq!(
            show("0.000003814697265625").as_deref(),
            Some("0.00000381469726562")
        );
        assert_eq!(show("-1e-20").as_deref(), Some("0"));
        assert_eq!(calc("-0", "-0").as_deref(), Some("0"));
        assert_eq!(show("1e-4950").as_deref(), Some("0"));
        assert_eq!(
            show("1e100").as_deref(),
            Some(
                "99999999999999999996693535322073426194986990198284960792713915417520186694\
                 82644324418977840117055488"
            )
        );
    }

    /// Sums checked against glibc (`strtold`, x87 addition, `%.17Lf`) on x86-64.
    #[test]
    fn long_double_matches_glibc_vectors() {
        for (current, increment, expected) in [
            ("-729.233", "99514.58", "98785.34700000000000131"),
            ("+8873.", "-2.99317", "8870.00682999999999989"),
            ("6561.3", "-.707460", "6560.59253999999999962"),
            (
                "42828.34316077492669743043",
                "+832697.1340359793",
                "875525.47719675422666796",
            ),
            (
                "47.619",
                "-10288823054642271475498136767436.1683121",
                "-10288823054642271475043722592256",
            ),
            ("-48.06930", "-575882E+18", "-575882000000000000000000"),
            (
                "+08417389E-3386",
                "7455.58436451112600773709",
                "7455.58436451112600762",
            ),
            (
                "730548784242812375E-14",
                "+7.80918450710074074454e-249",
                "7305.48784242812374989",
            ),
            (
                "+6.58367157731428024e27",
                "84173038880913497.459828855",
                "6583671577398453279282692096",
            ),
            (
                "2.423002154522591e+10",
                "-0",
                "24230021545.2259100005030632",
            ),
            ("498e-4", "8.5441543", "8.5939543"),
            (
                "241491092950497417.65857868405842006305",
                "-0xcb15c6F8da2199efceP-59",
                "241491092950490918.9375",
            ),
            ("674255.7513", "0x.41C", "674256.00813593750001473"),
            ("12554.8666699", "0XF.e3B", "12570.75607419687499977"),
            (
                "0xbc89FcAd9dA85.33BEFFp-45",
                "-6241717.295077724815",
                "-6241623.02557181823794963",
            ),
            (
                "0Xa415BB3C6dCEFC8p-2",
                "9678.8",
                "184743160389788096.796875",
            ),
            (
                "-0Xb0df9.51p+4",
                "16718.93169378",
                "-11574854.13080621999961295",
            ),
            ("0x1p64", "-0x1p-1", "18446744073709551616"),
            ("0x1p64", "-0x1p-0", "18446744073709551615"),
            ("0x1.fffffffffffffffep0", "0x1p-64", "2"),
            ("1e30", "-1e-30", "1000000000000000000024696061952"),
        ] {
            assert_eq!(
                calc(current, increment).as_deref(),
                Some(expected),
                "{current} + {increment}"
            );
        }
        for bad in ["1.8e-4951", "1.2e4932", "0xp1", "0x1p16384", "0x1p-16446"] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(show("0x1p-16445").as_deref(), Some("0"));
        assert_eq!(calc("0x1p16383", "0x1p16383"), None);
    }

    #[test]
    fn long_double_parse_follows_string2ld() {
        for bad in [
            "", " 1", "1 ", "1e", "1e+", ".", "-", "+-1", "0x", "0xg", "nan", "-nan", "1e5000",
            "1e-5000", "infin", "1\x002", "0x1p", "--1",
        ] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad:?}");
        }
        for inf in ["inf", "-INF", "Infinity", "+infinity"] {
            assert_eq!(parse(inf.as_bytes()), Some(Parsed::Infinite), "{inf:?}");
        }
        for good in [
            "+.5",
            "5.",
            "1E5",
            "0e99999999999",
            "3e-4951",
            "0x.8",
            "007",
        ] {
            assert!(
                matches!(parse(good.as_bytes()), Some(Parsed::Finite(_))),
                "{good:?}"
            );
        }
        assert_eq!(parse(&vec![b'1'; MAX_CHARS]), None);
    }

    #[test]
    fn long_double_overflow_and_extremes() {
        let max = "1.18973149535723176502e+4932";
        assert!(matches!(parse(max.as_bytes()), Some(Parsed::Finite(_))));
        assert_eq!(calc(max, max), None);
        assert_eq!(parse(b"1.2e4932"), None);
        let text = show(max).expect("finite");
        assert_eq!(text.len(), 4933);
        assert_eq!(calc(&text, "0").as_deref(), Some(text.as_str()));
        // Near the smallest subnormal: parsed (not zero), printed as 0.
        assert!(matches!(parse(b"3.6e-4951"), Some(Parsed::Finite(_))));
        assert_eq!(show("3.6e-4951").as_deref(), Some("0"));
    }
}
