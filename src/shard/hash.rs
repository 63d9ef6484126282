//! PostgreSQL-compatible hash partitioning: a key lands on the shard that PostgreSQL's own
//! `PARTITION BY HASH` would choose with modulus = number of shards, remainder = shard index.
//!
//! Owns the key types a sharded table may use, parsing their text and binary forms the way
//! PostgreSQL's input functions do, and the hash itself: Bob Jenkins' lookup3 as PostgreSQL
//! ships it (`src/common/hashfn.c`), the per-type `*_hash_extended` support functions and the
//! row-hash combination of `compute_partition_hash_value` (`partbounds.c`).
//! Must not: do IO, or depend on anything but the key (no config, no shard map).
//!
//! Two PostgreSQL facts this relies on:
//! - `hash_bytes_extended` reads the bytes as little-endian words on the machines we run on;
//!   a big-endian PostgreSQL hashes text and uuid differently. We reproduce little-endian.
//! - `text` hashes its bytes only under a deterministic collation (the default); a partition key
//!   with a nondeterministic ICU collation hashes a normalized sort key instead, which we do not.

#[cfg(test)]
mod tests;

/// `HASH_PARTITION_SEED` from `src/include/catalog/partition.h`: the seed every partition-key
/// hash support function is called with.
const HASH_PARTITION_SEED: u64 = 0x7A5B_2236_7996_DCFD;

/// The constant of `hash_combine64` (`src/include/common/hashfn.h`).
const HASH_COMBINE_CONSTANT: u64 = 0x49a0_f4dd_15e5_a8e3;

/// Type of the sharding key column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    /// `smallint` (`int2`).
    Smallint,
    /// `integer` (`int4`).
    Integer,
    /// `bigint` (`int8`).
    Bigint,
    /// `text` (and `varchar`, which uses the text hash opclass).
    Text,
    /// `uuid`.
    Uuid,
}

/// One key value, already parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyValue {
    /// A `smallint`, `integer` or `bigint` value.
    Int(i64),
    /// A `text` value (valid UTF-8 without NUL, as PostgreSQL stores it).
    Text(String),
    /// A `uuid` in its 16 bytes, network order (as `uuid_in` stores it).
    Uuid([u8; 16]),
}

impl KeyType {
    /// Parses a key from its text form (what a SQL literal or a text-format bind parameter holds; for
    /// integers accept leading/trailing spaces and a sign like PostgreSQL's int8in; out of range for the
    /// type -> Err). Uuid: accept the forms PostgreSQL's uuid_in accepts (with/without hyphens, braces, upper case).
    pub fn parse(self, text: &str) -> Result<KeyValue, String> {
        match self {
            KeyType::Smallint => parse_int(text, self, i16::MIN.into(), i16::MAX.into()),
            KeyType::Integer => parse_int(text, self, i32::MIN.into(), i32::MAX.into()),
            KeyType::Bigint => parse_int(text, self, i64::MIN, i64::MAX),
            KeyType::Text => parse_text(text),
            KeyType::Uuid => parse_uuid(text),
        }
    }

    /// Parses a binary-format bind parameter (int2/int4/int8 big-endian of the right width, text = UTF-8 bytes, uuid = 16 bytes).
    pub fn parse_binary(self, bytes: &[u8]) -> Result<KeyValue, String> {
        let width = |n: usize| {
            if bytes.len() == n {
                Ok(())
            } else {
                Err(format!(
                    "incorrect binary data format: {} needs {n} bytes, got {}",
                    self.pg_name(),
                    bytes.len()
                ))
            }
        };
        match self {
            KeyType::Smallint => {
                width(2)?;
                Ok(KeyValue::Int(
                    i16::from_be_bytes([bytes[0], bytes[1]]).into(),
                ))
            }
            KeyType::Integer => {
                width(4)?;
                let mut b = [0u8; 4];
                b.copy_from_slice(bytes);
                Ok(KeyValue::Int(i32::from_be_bytes(b).into()))
            }
            KeyType::Bigint => {
                width(8)?;
                let mut b = [0u8; 8];
                b.copy_from_slice(bytes);
                Ok(KeyValue::Int(i64::from_be_bytes(b)))
            }
            KeyType::Text => match std::str::from_utf8(bytes) {
                Ok(s) => parse_text(s),
                Err(e) => Err(format!("invalid byte sequence for encoding \"UTF8\": {e}")),
            },
            KeyType::Uuid => {
                width(16)?;
                let mut b = [0u8; 16];
                b.copy_from_slice(bytes);
                Ok(KeyValue::Uuid(b))
            }
        }
    }

    /// The PostgreSQL type name (for messages).
    pub fn pg_name(self) -> &'static str {
        match self {
            KeyType::Smallint => "smallint",
            KeyType::Integer => "integer",
            KeyType::Bigint => "bigint",
            KeyType::Text => "text",
            KeyType::Uuid => "uuid",
        }
    }
}

/// PostgreSQL's row hash for a single-column hash partition key: hash_combine64(0, <type>_hash_extended(value, HASH_PARTITION_SEED)).
///
/// The value is hashed by its own kind. An `Int` for a `smallint`/`integer` key that lies outside
/// `integer`'s range (never produced by [`KeyType::parse`]) hashes as the `bigint` it is; inside
/// the range this makes no difference, because PostgreSQL's integer hash functions agree on every
/// value they share (that is why `hashint8extended` folds its high half into the low half).
pub fn partition_hash(ty: KeyType, v: &KeyValue) -> u64 {
    let hash = match v {
        KeyValue::Int(i) => match (ty, i32::try_from(*i)) {
            // hashint2extended widens to int4 first, so int2 and int4 hash alike.
            (KeyType::Smallint | KeyType::Integer, Ok(small)) => hashint4extended(small),
            _ => hashint8extended(*i),
        },
        // hashtextextended under a deterministic collation: the bytes, without the varlena header.
        KeyValue::Text(s) => hash_bytes_extended(s.as_bytes(), HASH_PARTITION_SEED),
        KeyValue::Uuid(bytes) => hash_bytes_extended(bytes, HASH_PARTITION_SEED),
    };
    // compute_partition_hash_value starts from 0 and combines one hash per key column.
    hash_combine64(0, hash)
}

/// The remainder (= shard index) for `modulus` shards: partition_hash % modulus.
///
/// A `modulus` of 0 (no shards) yields 0 rather than a panic; config validation rejects it.
pub fn hash_shard(ty: KeyType, v: &KeyValue, modulus: u64) -> u64 {
    partition_hash(ty, v).checked_rem(modulus).unwrap_or(0)
}

/// `hash_combine64` from `src/include/common/hashfn.h`.
fn hash_combine64(a: u64, b: u64) -> u64 {
    a ^ b
        .wrapping_add(HASH_COMBINE_CONSTANT)
        .wrapping_add(a << 54)
        .wrapping_add(a >> 7)
}

/// `hashint4extended` (`int.c`): the int4's bits as a uint32.
fn hashint4extended(v: i32) -> u64 {
    hash_uint32_extended(v as u32, HASH_PARTITION_SEED)
}

/// `hashint8extended` (`int8.c`): fold the high half into the low half so that values which fit
/// in an int4 hash exactly as `hashint4extended` does (the integer_ops family needs that).
fn hashint8extended(v: i64) -> u64 {
    let lohalf = v as u32;
    let hihalf = (v >> 32) as u32;
    let folded = lohalf ^ if v >= 0 { hihalf } else { !hihalf };
    hash_uint32_extended(folded, HASH_PARTITION_SEED)
}

/// lookup3's `mix` as in `hashfn.c`.
fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c) ^ c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a) ^ a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b) ^ b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c) ^ c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a) ^ a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b) ^ b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

/// lookup3's `final` as in `hashfn.c`.
fn final_mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(14));
    *a = (*a ^ *c).wrapping_sub(c.rotate_left(11));
    *b = (*b ^ *a).wrapping_sub(a.rotate_left(25));
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(16));
    *a = (*a ^ *c).wrapping_sub(c.rotate_left(4));
    *b = (*b ^ *a).wrapping_sub(a.rotate_left(14));
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(24));
}

/// The initial state of both hash functions: a = b = c = 0x9e3779b9 + len + 3923095, with a
/// nonzero seed folded into a and b and mixed.
fn initial_state(len: usize, seed: u64) -> (u32, u32, u32) {
    // The C code adds the length as a uint32; keys longer than 4 GiB cannot exist (1 GB varlena limit).
    let init = 0x9e37_79b9u32
        .wrapping_add(len as u32)
        .wrapping_add(3_923_095);
    let (mut a, mut b, mut c) = (init, init, init);
    if seed != 0 {
        a = a.wrapping_add((seed >> 32) as u32);
        b = b.wrapping_add(seed as u32);
        mix(&mut a, &mut b, &mut c);
    }
    (a, b, c)
}

/// `hash_uint32_extended` (`hash_bytes_uint32_extended` in `hashfn.c`).
fn hash_uint32_extended(k: u32, seed: u64) -> u64 {
    let (mut a, mut b, mut c) = initial_state(4, seed);
    a = a.wrapping_add(k);
    final_mix(&mut a, &mut b, &mut c);
    (u64::from(b) << 32) | u64::from(c)
}

/// `hash_any_extended` (`hash_bytes_extended` in `hashfn.c`), little-endian word order.
fn hash_bytes_extended(key: &[u8], seed: u64) -> u64 {
    let (mut a, mut b, mut c) = initial_state(key.len(), seed);
    let word = |w: &[u8]| {
        w.iter()
            .rev()
            .fold(0u32, |acc, &x| (acc << 8) | u32::from(x))
    };
    let mut chunks = key.chunks_exact(12);
    for block in &mut chunks {
        a = a.wrapping_add(word(&block[0..4]));
        b = b.wrapping_add(word(&block[4..8]));
        c = c.wrapping_add(word(&block[8..12]));
        mix(&mut a, &mut b, &mut c);
    }
    let rest = chunks.remainder();
    // The last 0..=11 bytes: a and b take theirs as little-endian words; c's lowest byte is
    // "reserved for the length" in lookup3, so bytes 8..11 go to c shifted up by one byte.
    a = a.wrapping_add(word(&rest[..rest.len().min(4)]));
    if rest.len() > 4 {
        b = b.wrapping_add(word(&rest[4..rest.len().min(8)]));
    }
    if rest.len() > 8 {
        c = c.wrapping_add(word(&rest[8..]) << 8);
    }
    // Unlike Jenkins' own lookup3 (which loops while more than 12 bytes remain and returns early
    // on an empty tail), PostgreSQL mixes every full block and always runs `final`.
    final_mix(&mut a, &mut b, &mut c);
    (u64::from(b) << 32) | u64::from(c)
}

/// `isspace` in the C locale, as `pg_strtoint*` uses it (includes vertical tab, unlike Rust's
/// `is_ascii_whitespace`).
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// `pg_strtoint16/32/64` of PostgreSQL 15: optional spaces, an optional sign, decimal digits,
/// optional spaces; nothing else (no underscores, no hex: those came in PostgreSQL 16).
fn parse_int(text: &str, ty: KeyType, min: i64, max: i64) -> Result<KeyValue, String> {
    let syntax = || format!("invalid input syntax for type {}: \"{text}\"", ty.pg_name());
    let range = || format!("value \"{text}\" is out of range for type {}", ty.pg_name());
    let bytes = text.as_bytes();
    let mut i = bytes.iter().take_while(|&&b| is_c_space(b)).count();
    let negative = match bytes.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let digits = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return Err(syntax());
    }
    // Accumulate negatively, like PostgreSQL, so that the type's minimum does not overflow; an
    // overflow is reported as out of range even if junk follows, as PostgreSQL does.
    let mut acc: i64 = 0;
    for &d in &bytes[i..i + digits] {
        acc = acc
            .checked_mul(10)
            .and_then(|v| v.checked_sub(i64::from(d - b'0')))
            .filter(|&v| v >= min)
            .ok_or_else(range)?;
    }
    i += digits;
    if !bytes[i..].iter().all(|&b| is_c_space(b)) {
        return Err(syntax());
    }
    let value = if negative {
        acc
    } else {
        acc.checked_neg().filter(|&v| v <= max).ok_or_else(range)?
    };
    Ok(KeyValue::Int(value))
}

/// Any UTF-8 string PostgreSQL's `text` can hold: everything but NUL.
fn parse_text(text: &str) -> Result<KeyValue, String> {
    if text.contains('\0') {
        return Err("invalid byte sequence for encoding \"UTF8\": 0x00".to_string());
    }
    Ok(KeyValue::Text(text.to_string()))
}

/// `string_to_uuid` of `uuid.c`: an optional `{`…`}`, 32 hex digits (either case), with an
/// optional hyphen after any group of four digits but the last; no spaces.
fn parse_uuid(text: &str) -> Result<KeyValue, String> {
    let syntax = || format!("invalid input syntax for type uuid: \"{text}\"");
    let mut src = text.as_bytes();
    let braces = src.first() == Some(&b'{');
    if braces {
        src = &src[1..];
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        let (hi, lo) = match src {
            [hi, lo, ..] => (hex_digit(*hi), hex_digit(*lo)),
            _ => return Err(syntax()),
        };
        *byte = (hi.ok_or_else(syntax)? << 4) | lo.ok_or_else(syntax)?;
        src = &src[2..];
        if i % 2 == 1 && i < 15 && src.first() == Some(&b'-') {
            src = &src[1..];
        }
    }
    if braces {
        match src.split_first() {
            Some((b'}', rest)) => src = rest,
            _ => return Err(syntax()),
        }
    }
    if !src.is_empty() {
        return Err(syntax());
    }
    Ok(KeyValue::Uuid(out))
}

fn hex_digit(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}
