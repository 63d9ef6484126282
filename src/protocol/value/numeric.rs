//! Exact decimal arithmetic on PostgreSQL `numeric` values given in text form: parsing as
//! `numeric_in` does, ordering as `cmp_numerics` does, addition as `numeric_add` does, and the
//! division `avg()` ends with (`numeric_div` with `select_div_scale`). Pure: no IO, no floats.
//! Source of the rules: PostgreSQL 15 `src/backend/utils/adt/numeric.c`.

use std::cmp::Ordering;

/// `NUMERIC_MIN_SIG_DIGITS`: division keeps at least this many significant digits.
const MIN_SIG_DIGITS: i64 = 16;
/// `NUMERIC_MAX_DISPLAY_SCALE`: the largest scale a division result gets.
const MAX_DISPLAY_SCALE: i64 = 1000;
/// `NUMERIC_DSCALE_MAX`: the largest display scale a numeric can store.
const DSCALE_MAX: usize = 0x3FFF;
/// Decimal digits before the point a numeric can hold: `(NUMERIC_WEIGHT_MAX + 1) * DEC_DIGITS`.
const MAX_INT_DIGITS: usize = (i16::MAX as usize + 1) * 4;
/// `NUMERIC_MAX_PRECISION`: `numeric_in` refuses larger exponents.
const MAX_EXPONENT: i64 = 1000;

/// A numeric value: special values or a finite decimal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Numeric {
    /// Not-a-number: equal to itself, greater than everything else.
    NaN,
    /// `Infinity`.
    PosInf,
    /// `-Infinity`.
    NegInf,
    /// A finite value.
    Finite(Decimal),
}

/// A finite decimal `(-1)^neg * digits * 10^-scale`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Decimal {
    neg: bool,
    /// Decimal digits (0..=9), most significant first, without leading zeros; empty for zero.
    digits: Vec<u8>,
    /// Display scale: digits shown after the decimal point.
    scale: usize,
}

/// Why an arithmetic result cannot be represented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Overflow;

impl Numeric {
    /// Parses what `numeric_in` accepts (without PG 16's underscores and non-decimal integers).
    /// None if the text is not a valid numeric.
    pub(super) fn parse(text: &[u8]) -> Option<Numeric> {
        let s = std::str::from_utf8(text)
            .ok()?
            .trim_matches(super::is_pg_space);
        match s.to_ascii_lowercase().as_str() {
            "nan" => return Some(Numeric::NaN),
            "infinity" | "+infinity" | "inf" | "+inf" => return Some(Numeric::PosInf),
            "-infinity" | "-inf" => return Some(Numeric::NegInf),
            _ => {}
        }
        let b = s.as_bytes();
        let (neg, mut i) = match b.first() {
            Some(b'-') => (true, 1),
            Some(b'+') => (false, 1),
            _ => (false, 0),
        };
        let mut mantissa = Vec::new();
        let (mut frac, mut seen_point) = (0i64, false);
        while let Some(&c) = b.get(i) {
            match c {
                b'0'..=b'9' => {
                    mantissa.push(c - b'0');
                    frac += i64::from(seen_point);
                }
                b'.' if !seen_point => seen_point = true,
                _ => break,
            }
            i += 1;
        }
        if mantissa.is_empty() {
            return None;
        }
        let mut exp = 0i64;
        if matches!(b.get(i), Some(b'e' | b'E')) {
            exp = s.get(i + 1..)?.parse().ok()?;
            if !(-MAX_EXPONENT..=MAX_EXPONENT).contains(&exp) {
                return None;
            }
        } else if i != b.len() {
            return None;
        }
        // value = mantissa * 10^(exp - frac); the display scale is never negative.
        let scale = (frac - exp).max(0);
        let zeros = usize::try_from(exp - frac + scale).ok()?;
        mantissa.resize(mantissa.len() + zeros, 0);
        let d = Decimal::new(neg, mantissa, usize::try_from(scale).ok()?);
        d.check().ok()?;
        Some(Numeric::Finite(d))
    }

    /// Orders as the default btree opclass does: NaN equals NaN and sorts above everything,
    /// then +Infinity, the finite values, -Infinity.
    pub(super) fn cmp(&self, other: &Numeric) -> Ordering {
        fn rank(n: &Numeric) -> u8 {
            match n {
                Numeric::NegInf => 0,
                Numeric::Finite(_) => 1,
                Numeric::PosInf => 2,
                Numeric::NaN => 3,
            }
        }
        match (self, other) {
            (Numeric::Finite(a), Numeric::Finite(b)) => a.cmp(b),
            _ => rank(self).cmp(&rank(other)),
        }
    }

    /// `numeric_add`: exact, with the larger display scale; NaN wins, +Inf plus -Inf is NaN.
    pub(super) fn add(&self, other: &Numeric) -> Result<Numeric, Overflow> {
        use Numeric::*;
        Ok(match (self, other) {
            (NaN, _) | (_, NaN) | (PosInf, NegInf) | (NegInf, PosInf) => NaN,
            (PosInf, _) | (_, PosInf) => PosInf,
            (NegInf, _) | (_, NegInf) => NegInf,
            (Finite(a), Finite(b)) => {
                let sum = a.add(b);
                sum.check()?;
                Finite(sum)
            }
        })
    }

    /// `numeric_div(self, count)` for a positive count, as the final step of `avg()`.
    pub(super) fn div_count(&self, count: u64) -> Numeric {
        match self {
            Numeric::Finite(d) => Numeric::Finite(d.div_count(count)),
            special => special.clone(),
        }
    }

    /// The text `numeric_out` prints.
    pub(super) fn to_text(&self) -> String {
        match self {
            Numeric::NaN => "NaN".to_owned(),
            Numeric::PosInf => "Infinity".to_owned(),
            Numeric::NegInf => "-Infinity".to_owned(),
            Numeric::Finite(d) => d.to_text(),
        }
    }
}

impl Numeric {
    /// The binary send format of `numeric_send`: ndigits, weight, sign, dscale, then base-10000
    /// digits.
    pub(super) fn to_binary(&self) -> Vec<u8> {
        let (sign, d) = match self {
            Numeric::NaN => (0xC000u16, None),
            Numeric::PosInf => (0xD000, None),
            Numeric::NegInf => (0xF000, None),
            Numeric::Finite(d) => (if d.neg { 0x4000 } else { 0 }, Some(d)),
        };
        // PostgreSQL 15 sends 32 as the display scale of ±Infinity (0 for NaN).
        let special_scale = if matches!(self, Numeric::PosInf | Numeric::NegInf) {
            32
        } else {
            0
        };
        let (mut groups, mut weight, dscale) = (Vec::<i16>::new(), 0i64, special_scale);
        let dscale = match d {
            None => dscale,
            Some(d) => {
                let int_len = d.digits.len() as i64 - d.scale as i64;
                let pad = (4 - int_len.rem_euclid(4)) % 4;
                let mut all = vec![0u8; pad as usize];
                all.extend_from_slice(&d.digits);
                while !all.len().is_multiple_of(4) {
                    all.push(0);
                }
                groups = all
                    .chunks(4)
                    .map(|c| c.iter().fold(0i16, |acc, &x| acc * 10 + i16::from(x)))
                    .collect();
                weight = (int_len + pad) / 4 - 1;
                while groups.first() == Some(&0) {
                    groups.remove(0);
                    weight -= 1;
                }
                while groups.last() == Some(&0) {
                    groups.pop();
                }
                if groups.is_empty() {
                    weight = 0;
                }
                d.scale
            }
        };
        let mut out = Vec::with_capacity(8 + groups.len() * 2);
        out.extend_from_slice(&(groups.len() as i16).to_be_bytes());
        out.extend_from_slice(&(weight as i16).to_be_bytes());
        let sign = if groups.is_empty() && sign == 0x4000 {
            0
        } else {
            sign
        };
        out.extend_from_slice(&sign.to_be_bytes());
        out.extend_from_slice(&(dscale as i16).to_be_bytes());
        for g in groups {
            out.extend_from_slice(&g.to_be_bytes());
        }
        out
    }
}

impl Decimal {
    /// Builds a normalized decimal (no leading zeros, zero is never negative).
    fn new(neg: bool, mut digits: Vec<u8>, scale: usize) -> Decimal {
        let lead = digits.iter().take_while(|&&d| d == 0).count();
        digits.drain(..lead);
        Decimal {
            neg: neg && !digits.is_empty(),
            digits,
            scale,
        }
    }

    /// An integer.
    pub(super) fn from_int(v: i128) -> Decimal {
        let digits = v
            .unsigned_abs()
            .to_string()
            .bytes()
            .map(|c| c - b'0')
            .collect();
        Decimal::new(v < 0, digits, 0)
    }

    /// Fails like `make_result` ("value overflows numeric format") past the storage limits.
    fn check(&self) -> Result<(), Overflow> {
        let int_digits = self.digits.len().saturating_sub(self.scale);
        if int_digits > MAX_INT_DIGITS || self.scale > DSCALE_MAX {
            return Err(Overflow);
        }
        Ok(())
    }

    /// The digit standing for 10^pos (0 outside the stored digits).
    fn digit_at(&self, pos: i64) -> u8 {
        let from_end = pos + self.scale as i64;
        let len = self.digits.len() as i64;
        if from_end < 0 || from_end >= len {
            return 0;
        }
        self.digits[(len - 1 - from_end) as usize]
    }

    /// Weight and first digit of the normalized base-10000 form (`NumericVar`), (0, 0) for zero.
    fn base10000_head(&self) -> (i64, u32) {
        if self.digits.is_empty() {
            return (0, 0);
        }
        let exp10 = self.digits.len() as i64 - 1 - self.scale as i64;
        let weight = exp10.div_euclid(4);
        let first = (0..4).rev().fold(0u32, |acc, k| {
            acc * 10 + u32::from(self.digit_at(weight * 4 + k))
        });
        (weight, first)
    }

    /// The magnitude's digits padded with zeros to `scale` (which must be >= self.scale).
    fn scaled(&self, scale: usize) -> Vec<u8> {
        let mut v = self.digits.clone();
        if !v.is_empty() {
            v.resize(v.len() + scale - self.scale, 0);
        }
        v
    }

    /// Orders by value; the display scale does not matter (1.0 == 1.00).
    fn cmp(&self, other: &Decimal) -> Ordering {
        let mag = || {
            let scale = self.scale.max(other.scale);
            cmp_mag(&self.scaled(scale), &other.scaled(scale))
        };
        match (self.neg, other.neg) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => mag(),
            (true, true) => mag().reverse(),
        }
    }

    /// Exact sum with the larger display scale (`add_var`).
    fn add(&self, other: &Decimal) -> Decimal {
        let scale = self.scale.max(other.scale);
        let (a, b) = (self.scaled(scale), other.scaled(scale));
        if self.neg == other.neg {
            return Decimal::new(self.neg, add_mag(&a, &b), scale);
        }
        match cmp_mag(&a, &b) {
            Ordering::Less => Decimal::new(other.neg, sub_mag(&b, &a), scale),
            _ => Decimal::new(self.neg, sub_mag(&a, &b), scale),
        }
    }

    /// `numeric_div(self, count)`: the result scale from `select_div_scale`, the quotient rounded
    /// half away from zero at that scale (what `div_var(..., round = true)` yields: it truncates
    /// past a guard digit, then rounds on the first dropped decimal digit).
    fn div_count(&self, count: u64) -> Decimal {
        let divisor = Decimal::from_int(i128::from(count));
        let (w1, f1) = self.base10000_head();
        let (w2, f2) = divisor.base10000_head();
        // Estimated quotient weight; equal first digits are taken to mean var1 < var2.
        let qweight = w1 - w2 - i64::from(f1 <= f2);
        let rscale = (MIN_SIG_DIGITS - qweight * 4)
            .max(self.scale as i64)
            .clamp(0, MAX_DISPLAY_SCALE) as usize;
        // Truncated quotient at one decimal digit past both scales, then round that digit away.
        let work = rscale.max(self.scale) + 1;
        let dividend = self.scaled(work);
        let mut quotient = Vec::with_capacity(dividend.len());
        let mut rem: u128 = 0;
        for &d in &dividend {
            let cur = rem * 10 + u128::from(d);
            quotient.push((cur / u128::from(count)) as u8);
            rem = cur % u128::from(count);
        }
        // The last `drop` digits go; the first of them decides the rounding (an implicit
        // leading zero when the quotient is shorter than that).
        let drop = work - rscale;
        let keep = quotient.len().checked_sub(drop);
        let round_up = keep.is_some_and(|k| quotient[k] >= 5);
        quotient.truncate(keep.unwrap_or(0));
        if round_up {
            quotient = add_mag(&quotient, &[1]);
        }
        Decimal::new(self.neg, quotient, rscale)
    }

    /// The text `numeric_out` prints: all `scale` fraction digits, no exponent.
    fn to_text(&self) -> String {
        let mut out = String::with_capacity(self.digits.len() + self.scale + 3);
        if self.neg {
            out.push('-');
        }
        let mut digits = vec![0u8; (self.scale + 1).saturating_sub(self.digits.len())];
        digits.extend_from_slice(&self.digits);
        let int_len = digits.len() - self.scale;
        for (i, d) in digits.iter().enumerate() {
            if i == int_len {
                out.push('.');
            }
            out.push(char::from(b'0' + d));
        }
        out
    }
}

/// Compares two magnitudes without leading zeros.
fn cmp_mag(a: &[u8], b: &[u8]) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Sum of two magnitudes (right-aligned).
fn add_mag(a: &[u8], b: &[u8]) -> Vec<u8> {
    let n = a.len().max(b.len());
    let mut out = vec![0u8; n + 1];
    let mut carry = 0u8;
    for i in 0..n {
        let da = if i < a.len() { a[a.len() - 1 - i] } else { 0 };
        let db = if i < b.len() { b[b.len() - 1 - i] } else { 0 };
        let s = da + db + carry;
        out[n - i] = s % 10;
        carry = s / 10;
    }
    out[0] = carry;
    out
}

/// Difference of two magnitudes with `a >= b` (right-aligned).
fn sub_mag(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = a.to_vec();
    let mut borrow = 0u8;
    for i in 0..a.len() {
        let db = (if i < b.len() { b[b.len() - 1 - i] } else { 0 }) + borrow;
        let idx = a.len() - 1 - i;
        if out[idx] >= db {
            out[idx] -= db;
            borrow = 0;
        } else {
            out[idx] = out[idx] + 10 - db;
            borrow = 1;
        }
    }
    out
}
