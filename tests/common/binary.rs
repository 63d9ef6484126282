//! Binary-format result values as comparable text, for the randomized differential tests
//! (the same bytes from PostgreSQL and from pgproxy print the same).

use std::fmt::Write as _;
use tokio_postgres::types::{FromSql, Type};

/// A result value in binary format, whatever its type.
pub struct Raw(pub Option<Vec<u8>>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw.to_vec())))
    }
    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

/// `numeric_send` output as `numeric_out` would print it.
pub fn numeric_text(b: &[u8]) -> String {
    let g = |i: usize| i16::from_be_bytes([b[i], b[i + 1]]);
    let (ndigits, weight, sign, dscale) = (g(0) as usize, g(2) as i64, g(4) as u16, g(6) as usize);
    match sign {
        0xC000 => return "NaN".into(),
        0xD000 => return "Infinity".into(),
        0xF000 => return "-Infinity".into(),
        _ => {}
    }
    let digit = |k: i64| -> i16 {
        if k < 0 || k as usize >= ndigits {
            0
        } else {
            g(8 + 2 * k as usize)
        }
    };
    let mut s = String::new();
    if sign == 0x4000 {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        for k in 0..=weight {
            if k == 0 {
                let _ = write!(s, "{}", digit(k));
            } else {
                let _ = write!(s, "{:04}", digit(k));
            }
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        let mut k = weight + 1;
        while frac.len() < dscale {
            let _ = write!(frac, "{:04}", digit(k));
            k += 1;
        }
        frac.truncate(dscale);
        s.push('.');
        s += &frac;
    }
    s
}

pub fn binary_text(ty: &Type, b: &[u8]) -> String {
    let be = |n: usize| -> i64 {
        let mut v: i64 = if b.first().is_some_and(|x| x & 0x80 != 0) {
            -1
        } else {
            0
        };
        for x in &b[..n] {
            v = (v << 8) | i64::from(*x);
        }
        v
    };
    match ty.oid() {
        16 => if b == [1] { "t" } else { "f" }.into(),
        21 if b.len() == 2 => be(2).to_string(),
        23 if b.len() == 4 => be(4).to_string(),
        20 if b.len() == 8 => be(8).to_string(),
        701 if b.len() == 8 => {
            let v = f64::from_be_bytes(b.try_into().expect("8 bytes"));
            format!("{v:?}")
        }
        25 | 1043 | 1042 | 19 => String::from_utf8_lossy(b).into_owned(),
        1700 if b.len() >= 8 => numeric_text(b),
        1082 if b.len() == 4 => format!("date:{}", be(4)),
        1114 | 1184 if b.len() == 8 => format!("ts:{}", be(8)),
        _ => b.iter().map(|x| format!("{x:02x}")).collect(),
    }
}
