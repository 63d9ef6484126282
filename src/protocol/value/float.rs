//! float4 / float8 in text form as PostgreSQL 15 reads, orders and prints them: `float4in` /
//! `float8in` (with their out-of-range errors), `float8_cmp_internal` (NaN above everything, -0 equal
//! to 0), and `float4out` / `float8out` with `extra_float_digits > 0`, which print the Ryu shortest
//! form (src/common/d2s.c, f2s.c). Pure: no IO.

use super::ValueError;
use std::cmp::Ordering;

/// `float4in` / `float8in`: decimal or exponent form, NaN, [+-]Infinity / inf, case-insensitive.
/// Out-of-range input (PostgreSQL raises an error) yields None instead of ±Infinity or 0.
pub(super) fn parse_float<T: std::str::FromStr + Into<f64> + Copy>(text: &[u8]) -> Option<T> {
    let s = super::trimmed(text)?;
    let v: T = s.parse().ok()?;
    let f: f64 = v.into();
    let word = s.trim_start_matches(['+', '-']).to_ascii_lowercase();
    let special = matches!(word.as_str(), "inf" | "infinity" | "nan");
    let nonzero_digit = s
        .split(['e', 'E'])
        .next()
        .is_some_and(|m| m.bytes().any(|c| matches!(c, b'1'..=b'9')));
    if !special && (f.is_infinite() || f.is_nan() || (f == 0.0 && nonzero_digit)) {
        return None;
    }
    Some(v)
}

/// `float8_cmp_internal`: NaN equals NaN and sorts above everything; -0 equals 0.
pub(super) fn cmp_float(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// `float4pl` / `float8pl`: IEEE addition in the type's own precision; finite inputs whose sum
/// overflows to infinity are PostgreSQL's "value out of range: overflow".
pub(super) fn add_float<F>(a: &[u8], b: &[u8], type_oid: u32) -> Result<String, ValueError>
where
    F: PgFloat + std::ops::Add<Output = F>,
{
    let invalid = || ValueError::Invalid(type_oid);
    let x: F = parse_float(a).ok_or_else(invalid)?;
    let y: F = parse_float(b).ok_or_else(invalid)?;
    let sum = x + y;
    let (xf, yf, sf): (f64, f64, f64) = (x.into(), y.into(), sum.into());
    if sf.is_infinite() && xf.is_finite() && yf.is_finite() {
        return Err(ValueError::Overflow("value"));
    }
    Ok(float_out(sum))
}

/// What the float output needs to know about `f32` (float4) and `f64` (float8).
pub(super) trait PgFloat:
    Copy + PartialOrd + std::str::FromStr + std::fmt::LowerExp + Into<f64>
{
    /// Significant digits that always round-trip.
    const MAX_DIGITS: usize;
    /// Decimal exponents in `-4..FIXED_BELOW` print fixed-point (`to_chars` in d2s.c / f2s.c).
    const FIXED_BELOW: i32;
    /// The magnitude.
    fn magnitude(self) -> Self;
    /// The magnitude as `m * 2^e`, and whether the gap to the next lower value is half the gap
    /// to the next higher one (a power of two above the smallest normal exponent).
    fn decode(self) -> (u64, i32, bool);
}

impl PgFloat for f64 {
    const MAX_DIGITS: usize = 17;
    const FIXED_BELOW: i32 = 15;
    fn magnitude(self) -> Self {
        self.abs()
    }
    fn decode(self) -> (u64, i32, bool) {
        let bits = self.to_bits();
        let (exp, frac) = ((bits >> 52) & 0x7FF, bits & ((1 << 52) - 1));
        match exp {
            0 => (frac, -1074, false),
            _ => (frac | 1 << 52, exp as i32 - 1075, frac == 0 && exp > 1),
        }
    }
}

impl PgFloat for f32 {
    const MAX_DIGITS: usize = 9;
    const FIXED_BELOW: i32 = 6;
    fn magnitude(self) -> Self {
        self.abs()
    }
    fn decode(self) -> (u64, i32, bool) {
        let bits = self.to_bits();
        let (exp, frac) = ((bits >> 23) & 0xFF, bits & ((1 << 23) - 1));
        match exp {
            0 => (frac.into(), -149, false),
            _ => (
                (frac | 1 << 23).into(),
                exp as i32 - 150,
                frac == 0 && exp > 1,
            ),
        }
    }
}

/// `float4out` / `float8out` with `extra_float_digits > 0`: PostgreSQL's Ryu output. "NaN",
/// "Infinity", "-Infinity", "0", "-0" for the specials; otherwise the shortest digits that
/// round-trip, fixed-point when the decimal exponent is in `-4..FIXED_BELOW`, else `d.ddde±XX`.
pub(super) fn float_out<F: PgFloat>(v: F) -> String {
    let x: f64 = v.into();
    let sign = if x.is_sign_negative() { "-" } else { "" };
    if x.is_nan() {
        return "NaN".to_owned();
    }
    if x.is_infinite() || x == 0.0 {
        return format!("{sign}{}", if x == 0.0 { "0" } else { "Infinity" });
    }
    let (digits, exp) = shortest(v.magnitude());
    let mut out = String::from(sign);
    if (-4..F::FIXED_BELOW).contains(&exp) {
        let int_len = usize::try_from(exp + 1).unwrap_or(0);
        if int_len == 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', exp.unsigned_abs() as usize - 1));
            out.push_str(&digits);
        } else if digits.len() <= int_len {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', int_len - digits.len()));
        } else {
            out.push_str(&format!("{}.{}", &digits[..int_len], &digits[int_len..]));
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push_str(&format!(".{}", &digits[1..]));
        }
        let esign = if exp < 0 { '-' } else { '+' };
        out.push_str(&format!("e{esign}{:02}", exp.unsigned_abs()));
    }
    out
}

/// Where a decimal candidate lies relative to the values that read back as a float.
#[derive(PartialEq)]
enum Place {
    Below,
    Inside,
    Above,
}

/// The digits (no trailing zeros) and decimal exponent of the first digit that PostgreSQL's Ryu
/// (d2s.c / f2s.c, built without STRICTLY_SHORTEST) prints for a positive finite `v`: the fewest
/// digits strictly inside the rounding interval, its bounds excluded even where reading them
/// back would give `v`; among those, the one closest to `v`, ties to even. Rust's `{:e}` accepts
/// the bounds and breaks ties upward, so it serves only as the starting length here.
fn shortest<F: PgFloat>(v: F) -> (String, i32) {
    let (m, e, lower_closer) = v.decode();
    let (upper, lower) = match lower_closer {
        true => ((2 * m + 1, e - 1), (4 * m - 1, e - 2)),
        false => ((2 * m + 1, e - 1), (2 * m - 1, e - 1)),
    };
    let place = |c: u64, k: i32| -> Place {
        match format!("{c}e{k}").parse::<F>().ok() {
            Some(back) if back < v => Place::Below,
            Some(back) if back > v => Place::Above,
            _ if dec_eq_bin(c, k, upper) => Place::Above,
            _ if dec_eq_bin(c, k, lower) => Place::Below,
            _ => Place::Inside,
        }
    };
    let start = sci_parts(&format!("{v:e}")).0.to_string().len();
    for n in start..=F::MAX_DIGITS {
        // Rust's fixed-precision formatting rounds the exact value, ties to even.
        let (c, exp) = sci_parts(&format!("{:.*e}", n - 1, v));
        let k = exp - (n as i32 - 1);
        let pick = match place(c, k) {
            Place::Inside => Some(c),
            Place::Below => Some(c + 1).filter(|&c| place(c, k) == Place::Inside),
            Place::Above => Some(c - 1).filter(|&c| place(c, k) == Place::Inside),
        };
        if let Some(c) = pick {
            let digits = c.to_string();
            let exp = k + digits.len() as i32 - 1;
            return (digits.trim_end_matches('0').to_owned(), exp);
        }
    }
    let (c, exp) = sci_parts(&format!("{v:e}"));
    (c.to_string().trim_end_matches('0').to_owned(), exp)
}

/// Splits Rust's `{:e}` output ("1.2345e-7") into its digits as an integer and the exponent.
fn sci_parts(sci: &str) -> (u64, i32) {
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` writes an exponent");
    let digits = mantissa.chars().filter(char::is_ascii_digit);
    let c = digits.fold(0u64, |acc, d| acc * 10 + u64::from(d as u8 - b'0'));
    (c, exp.parse().expect("`{:e}` writes a decimal exponent"))
}

/// Whether `c * 10^k` equals `b * 2^f` exactly, for an odd `b`: both sides must have the same
/// power of two and the same odd part.
fn dec_eq_bin(c: u64, k: i32, (b, f): (u64, i32)) -> bool {
    if c == 0 {
        return false;
    }
    let twos = c.trailing_zeros() as i32;
    let odd = u128::from(c >> twos);
    let Some(p5) = 5u128.checked_pow(k.unsigned_abs()) else {
        return false;
    };
    twos + k == f
        && if k >= 0 {
            odd.checked_mul(p5) == Some(u128::from(b))
        } else {
            u128::from(b).checked_mul(p5) == Some(odd)
        }
}
