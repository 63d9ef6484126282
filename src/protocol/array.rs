//! The number of elements of an array value as a client sends it in a Bind (what
//! `cardinality()` would say), in text or binary format. Pure: no allocation beyond the scan.

/// Elements of an array parameter: `format` 0 (text) or 1 (binary); `None` if `v` is not a
/// well-formed array value.
pub fn array_len(format: i16, v: &[u8]) -> Option<usize> {
    match format {
        0 => text_array_len(std::str::from_utf8(v).ok()?),
        1 => binary_array_len(v),
        _ => None,
    }
}

/// `{1,2,3}`, `{{1,2},{3,4}}`, `{"a,b",NULL}`, `[0:1]={7,8}`: the leaf elements.
fn text_array_len(s: &str) -> Option<usize> {
    let s = s.trim();
    // Optional dimension decoration before '='.
    let s = match s.strip_prefix('[') {
        Some(_) => s.split_once('=')?.1.trim_start(),
        None => s,
    };
    let body = s.strip_prefix('{')?;
    let mut depth = 1usize;
    let (mut quoted, mut escaped, mut item) = (false, false, false);
    let mut count = 0usize;
    for (i, c) in body.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                item = true;
            }
            '"' => {
                quoted = !quoted;
                item = true;
            }
            _ if quoted => {}
            '{' => depth += 1,
            '}' => {
                count += usize::from(item);
                item = false;
                depth -= 1;
                if depth == 0 {
                    // Nothing may follow the outer '}'.
                    return body[i + 1..].trim().is_empty().then_some(count);
                }
            }
            ',' => {
                count += usize::from(item);
                item = false;
            }
            c if c.is_whitespace() => {}
            _ => item = true,
        }
    }
    None
}

/// The binary array header: dimensions, flags, element type, then (size, lower bound) per
/// dimension.
fn binary_array_len(v: &[u8]) -> Option<usize> {
    let word = |at: usize| -> Option<i32> {
        Some(i32::from_be_bytes(v.get(at..at + 4)?.try_into().ok()?))
    };
    let ndim = usize::try_from(word(0)?).ok()?;
    if ndim > 6 {
        return None;
    }
    let mut n = if ndim == 0 { 0 } else { 1usize };
    for d in 0..ndim {
        n = n.checked_mul(usize::try_from(word(12 + 8 * d)?).ok()?)?;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::array_len;

    #[test]
    fn text_arrays() {
        for (s, n) in [
            ("{}", Some(0)),
            ("{1,2,3}", Some(3)),
            (" { 1 , 2 } ", Some(2)),
            ("{{1,2},{3,4},{5,6}}", Some(6)),
            ("{\"a,b\",NULL,\"c\\\"}\"}", Some(3)),
            ("{\"\"}", Some(1)),
            ("[0:1]={7,8}", Some(2)),
            ("{1,2", None),
            ("1,2", None),
            ("{1}}", None),
            ("{1} x", None),
        ] {
            assert_eq!(array_len(0, s.as_bytes()), n, "{s}");
        }
    }

    #[test]
    fn binary_arrays() {
        let header = |dims: &[(i32, i32)]| {
            let mut v = Vec::new();
            v.extend((dims.len() as i32).to_be_bytes());
            v.extend(0i32.to_be_bytes());
            v.extend(20u32.to_be_bytes());
            for (size, lb) in dims {
                v.extend(size.to_be_bytes());
                v.extend(lb.to_be_bytes());
            }
            v
        };
        assert_eq!(array_len(1, &header(&[])), Some(0));
        assert_eq!(array_len(1, &header(&[(5, 1)])), Some(5));
        assert_eq!(array_len(1, &header(&[(2, 1), (3, 1)])), Some(6));
        assert_eq!(array_len(1, &header(&[(-1, 1)])), None);
        assert_eq!(array_len(1, &[0, 0, 0, 1]), None);
    }
}
