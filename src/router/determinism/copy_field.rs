//! One field of a COPY data row, decoded as PostgreSQL reads it (text format: backslash
//! escapes and the NULL string; CSV: quotes, the escape character and the NULL string). Used to
//! read the sharding key of each row of a `COPY … FROM STDIN` into a sharded table. Pure.

use super::CopyFormat;

/// Field `k` (0-based) of a row's content (its line terminator left out): `None` if the row
/// has fewer fields, `Some(None)` for NULL, else the field's value.
pub fn field_of(row: &[u8], k: usize, f: &CopyFormat) -> Option<Option<Vec<u8>>> {
    if f.csv {
        csv_field(row, k, f)
    } else {
        text_field(row, k, f)
    }
}

fn text_field(row: &[u8], k: usize, f: &CopyFormat) -> Option<Option<Vec<u8>>> {
    // Raw bounds of field k: delimiters not preceded by a backslash escape.
    let mut field = 0;
    let mut start = 0;
    let mut i = 0;
    let mut end = row.len();
    while i < row.len() {
        match row[i] {
            b'\\' => i += 2,
            c if c == f.delimiter => {
                if field == k {
                    end = i;
                    break;
                }
                field += 1;
                start = i + 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    if field != k {
        return None;
    }
    let raw = &row[start..end.min(row.len())];
    if raw == f.null.as_slice() {
        return Some(None);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        if c != b'\\' || i + 1 >= raw.len() {
            out.push(c);
            i += 1;
            continue;
        }
        let n = raw[i + 1];
        i += 2;
        match n {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(n - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            b'x' if raw.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut v = 0u32;
                for _ in 0..2 {
                    match raw.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            i += 1;
                        }
                        None => break,
                    }
                }
                out.push(v as u8);
            }
            other => out.push(other),
        }
    }
    Some(Some(out))
}

fn csv_field(row: &[u8], k: usize, f: &CopyFormat) -> Option<Option<Vec<u8>>> {
    let mut field = 0;
    let mut i = 0;
    loop {
        // One field from i: its value, whether any of it was quoted, and where it ended.
        let mut value = Vec::new();
        let mut quoted = false;
        let mut in_quotes = false;
        let start = i;
        while i < row.len() {
            let c = row[i];
            if in_quotes {
                if c == f.escape && row.get(i + 1) == Some(&f.quote) && f.escape != f.quote {
                    value.push(f.quote);
                    i += 2;
                } else if c == f.escape && f.escape != f.quote && row.get(i + 1) == Some(&f.escape)
                {
                    value.push(f.escape);
                    i += 2;
                } else if c == f.quote && f.escape == f.quote && row.get(i + 1) == Some(&f.quote) {
                    value.push(f.quote);
                    i += 2;
                } else if c == f.quote {
                    in_quotes = false;
                    i += 1;
                } else {
                    value.push(c);
                    i += 1;
                }
                continue;
            }
            if c == f.delimiter {
                break;
            }
            if c == f.quote {
                in_quotes = true;
                quoted = true;
            } else {
                value.push(c);
            }
            i += 1;
        }
        if field == k {
            let raw = &row[start..i];
            if !quoted && raw == f.null.as_slice() {
                return Some(None);
            }
            return Some(Some(value));
        }
        if i >= row.len() {
            return None;
        }
        field += 1;
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text() -> CopyFormat {
        CopyFormat {
            csv: false,
            delimiter: b'\t',
            quote: b'"',
            escape: b'"',
            header: false,
            null: b"\\N".to_vec(),
        }
    }

    fn csv() -> CopyFormat {
        CopyFormat {
            csv: true,
            delimiter: b',',
            quote: b'"',
            escape: b'"',
            header: false,
            null: Vec::new(),
        }
    }

    fn v(s: &str) -> Option<Option<Vec<u8>>> {
        Some(Some(s.as_bytes().to_vec()))
    }

    #[test]
    fn text_fields_with_escapes_and_null() {
        let f = text();
        assert_eq!(field_of(b"1\tann\t2", 0, &f), v("1"));
        assert_eq!(field_of(b"1\tann\t2", 2, &f), v("2"));
        assert_eq!(field_of(b"1\tann\t2", 3, &f), None);
        assert_eq!(field_of(b"a\\tb\tx", 0, &f), v("a\tb"));
        assert_eq!(field_of(b"a\\\tb\tx", 1, &f), v("x"));
        assert_eq!(field_of(b"\\N\tx", 0, &f), Some(None));
        assert_eq!(field_of(b"\\\\N\tx", 0, &f), v("\\N"));
        assert_eq!(field_of(b"\\061\\x32\\n", 0, &f), v("12\n"));
        assert_eq!(field_of(b"", 0, &f), v(""));
        assert_eq!(field_of(b"x\t", 1, &f), v(""));
    }

    #[test]
    fn csv_fields_with_quotes_and_null() {
        let f = csv();
        assert_eq!(field_of(b"1,ann,2", 1, &f), v("ann"));
        assert_eq!(field_of(b"\"1,5\",x", 0, &f), v("1,5"));
        assert_eq!(field_of(b"\"1,5\",x", 1, &f), v("x"));
        assert_eq!(field_of(b"\"a\"\"b\",x", 0, &f), v("a\"b"));
        assert_eq!(field_of(b",x", 0, &f), Some(None));
        assert_eq!(field_of(b"\"\",x", 0, &f), v(""));
        assert_eq!(field_of(b"1,2", 2, &f), None);
        assert_eq!(field_of(b"x,", 1, &f), Some(None));
        let mut e = csv();
        e.escape = b'\\';
        assert_eq!(field_of(b"\"a\\\"b\",x", 0, &e), v("a\"b"));
        assert_eq!(field_of(b"\"a\\\"b\",x", 1, &e), v("x"));
    }
}
