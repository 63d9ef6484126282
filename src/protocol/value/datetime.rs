//! date, timestamp and timestamptz in the text PostgreSQL 15 prints with `DateStyle = ISO`
//! (`EncodeDateOnly` / `EncodeDateTime`), read into points on one axis so they can be ordered:
//! BC years, infinities and UTC offsets down to seconds included. Other DateStyles are refused,
//! never guessed. Pure: no IO, no time zone database (the offset is in the text).

/// A date or timestamp on one axis: -infinity < every finite value < infinity.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Stamp {
    /// `-infinity`.
    NegInf,
    /// Days (date) or microseconds (timestamp) since 1970-01-01, UTC for timestamptz.
    At(i128),
    /// `infinity`.
    PosInf,
}

/// A reader over ASCII text for the fixed ISO layouts.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    /// Consumes `lit` if the text continues with it.
    fn eat(&mut self, lit: &[u8]) -> bool {
        match self.0.strip_prefix(lit) {
            Some(rest) => {
                self.0 = rest;
                true
            }
            None => false,
        }
    }

    /// Reads `min..=max` decimal digits; returns the value and the number of digits.
    fn digits(&mut self, min: usize, max: usize) -> Option<(i128, usize)> {
        let n = self
            .0
            .iter()
            .take(max)
            .take_while(|c| c.is_ascii_digit())
            .count();
        if n < min {
            return None;
        }
        let v = self.0[..n]
            .iter()
            .fold(0i128, |acc, c| acc * 10 + i128::from(c - b'0'));
        self.0 = &self.0[n..];
        Some((v, n))
    }

    /// Reads exactly `n` digits.
    fn fixed(&mut self, n: usize) -> Option<i128> {
        self.digits(n, n).map(|(v, _)| v)
    }

    /// `YYYY-MM-DD` (four or more year digits) and an optional trailing ` BC` checked later:
    /// returns (year as printed, month, day).
    fn ymd(&mut self) -> Option<(i128, i128, i128)> {
        let (y, _) = self.digits(4, 7)?;
        self.eat(b"-").then_some(())?;
        let m = self.fixed(2)?;
        self.eat(b"-").then_some(())?;
        Some((y, m, self.fixed(2)?))
    }
}

/// `infinity` / `-infinity`, as date and timestamp output print them.
fn parse_infinity(text: &[u8]) -> Option<Stamp> {
    match text {
        b"infinity" => Some(Stamp::PosInf),
        b"-infinity" => Some(Stamp::NegInf),
        _ => None,
    }
}

/// ISO `date` output: `2024-03-01`, `0044-03-15 BC`, `infinity`.
pub(super) fn parse_date(text: &[u8]) -> Option<Stamp> {
    if let Some(s) = parse_infinity(text) {
        return Some(s);
    }
    let mut c = Cursor(text);
    let (y, m, d) = c.ymd()?;
    let bc = c.eat(b" BC");
    c.0.is_empty().then_some(())?;
    Some(Stamp::At(day_number(y, bc, m, d)?))
}

/// ISO `timestamp` / `timestamptz` output: `2024-03-01 10:00:00[.ffffff][±HH[:MM[:SS]]][ BC]`.
/// With `tz` the UTC offset is required and the result is the instant in UTC.
pub(super) fn parse_timestamp(text: &[u8], tz: bool) -> Option<Stamp> {
    if let Some(s) = parse_infinity(text) {
        return Some(s);
    }
    let mut c = Cursor(text);
    let (y, m, d) = c.ymd()?;
    c.eat(b" ").then_some(())?;
    let (h, mi) = (c.fixed(2)?, c.eat(b":").then(|| c.fixed(2))??);
    let s = c.eat(b":").then(|| c.fixed(2))??;
    if h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let mut micros = ((h * 60 + mi) * 60 + s) * 1_000_000;
    if c.eat(b".") {
        let (frac, n) = c.digits(1, 6)?;
        micros += frac * 10i128.pow(6 - n as u32);
    }
    if tz {
        let west = match c.0.first() {
            Some(b'+') => false,
            Some(b'-') => true,
            _ => return None,
        };
        c.0 = &c.0[1..];
        let mut offset = c.fixed(2)? * 3600;
        if c.eat(b":") {
            offset += c.fixed(2)? * 60;
            if c.eat(b":") {
                offset += c.fixed(2)?;
            }
        }
        // Local time = UTC + offset, so UTC = local - offset (east of Greenwich is '+').
        micros -= (if west { -offset } else { offset }) * 1_000_000;
    }
    let bc = c.eat(b" BC");
    c.0.is_empty().then_some(())?;
    Some(Stamp::At(
        day_number(y, bc, m, d)? * 86_400_000_000 + micros,
    ))
}

/// Days since 1970-01-01 in the proleptic Gregorian calendar PostgreSQL uses (1 BC is the leap
/// year 0); None for a year 0 or a day that does not exist.
fn day_number(year: i128, bc: bool, m: i128, d: i128) -> Option<i128> {
    if year == 0 {
        return None;
    }
    let y = if bc { 1 - year } else { year };
    let leap = y.rem_euclid(4) == 0 && (y.rem_euclid(100) != 0 || y.rem_euclid(400) == 0);
    let month_len = match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if !(1..=month_len).contains(&d) {
        return None;
    }
    // Days from civil (March-based years, 400-year eras).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}
