//! Text-format values (as a node sent them) re-encoded in the binary format PostgreSQL's
//! `*send` functions produce, for a client that asked for binary results of a read pgproxy
//! merged from text. Only types whose text form pgproxy reads exactly are encoded.

use super::datetime::{parse_date, parse_timestamp, Stamp};
use super::float::parse_float;
use super::numeric::Numeric;
use super::{oid, parse_bool, parse_int, parse_oid, parse_uuid, ValueError};

/// Days from 1970-01-01 to PostgreSQL's epoch 2000-01-01.
const EPOCH_DAYS: i128 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const EPOCH_MICROS: i128 = EPOCH_DAYS * 86_400_000_000;

/// Whether `to_binary` encodes values of this type.
pub fn binary_encodable(type_oid: u32) -> bool {
    use oid::*;
    matches!(
        type_oid,
        BOOL | INT2
            | INT4
            | INT8
            | OID
            | FLOAT4
            | FLOAT8
            | NUMERIC
            | TEXT
            | VARCHAR
            | BPCHAR
            | NAME
            | JSON
            | JSONB
            | UUID
            | BYTEA
            | DATE
            | TIMESTAMP
            | TIMESTAMPTZ
    )
}

/// The binary form of a non-NULL text value of `type_oid`.
pub fn to_binary(type_oid: u32, text: &[u8]) -> Result<Vec<u8>, ValueError> {
    let invalid = || ValueError::Invalid(type_oid);
    Ok(match type_oid {
        oid::BOOL => vec![u8::from(parse_bool(text).ok_or_else(invalid)?)],
        oid::INT2 => parse_int::<i16>(text)
            .ok_or_else(invalid)?
            .to_be_bytes()
            .to_vec(),
        oid::INT4 => parse_int::<i32>(text)
            .ok_or_else(invalid)?
            .to_be_bytes()
            .to_vec(),
        oid::INT8 => parse_int::<i64>(text)
            .ok_or_else(invalid)?
            .to_be_bytes()
            .to_vec(),
        oid::OID => parse_oid(text).ok_or_else(invalid)?.to_be_bytes().to_vec(),
        oid::FLOAT4 => parse_float::<f32>(text)
            .ok_or_else(invalid)?
            .to_be_bytes()
            .to_vec(),
        oid::FLOAT8 => parse_float::<f64>(text)
            .ok_or_else(invalid)?
            .to_be_bytes()
            .to_vec(),
        oid::NUMERIC => Numeric::parse(text).ok_or_else(invalid)?.to_binary(),
        oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME | oid::JSON => text.to_vec(),
        oid::JSONB => [&[1u8][..], text].concat(),
        oid::UUID => parse_uuid(text).ok_or_else(invalid)?.to_be_bytes().to_vec(),
        oid::BYTEA => bytea_hex(text).ok_or_else(invalid)?,
        oid::DATE => match parse_date(text).ok_or_else(invalid)? {
            Stamp::NegInf => i32::MIN.to_be_bytes().to_vec(),
            Stamp::PosInf => i32::MAX.to_be_bytes().to_vec(),
            Stamp::At(d) => i32::try_from(d - EPOCH_DAYS)
                .map_err(|_| invalid())?
                .to_be_bytes()
                .to_vec(),
        },
        oid::TIMESTAMP | oid::TIMESTAMPTZ => {
            let tz = type_oid == oid::TIMESTAMPTZ;
            match parse_timestamp(text, tz).ok_or_else(invalid)? {
                Stamp::NegInf => i64::MIN.to_be_bytes().to_vec(),
                Stamp::PosInf => i64::MAX.to_be_bytes().to_vec(),
                Stamp::At(us) => i64::try_from(us - EPOCH_MICROS)
                    .map_err(|_| invalid())?
                    .to_be_bytes()
                    .to_vec(),
            }
        }
        _ => return Err(ValueError::Unsupported(type_oid)),
    })
}

/// `bytea` in the default `bytea_output = hex` form (`\x…`).
fn bytea_hex(text: &[u8]) -> Option<Vec<u8>> {
    let hex = text.strip_prefix(b"\\x")?;
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.chunks(2)
        .map(|p| {
            let s = std::str::from_utf8(p).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}
