//! Typed views of the row messages pgproxy builds or reads when it merges results from several
//! shards (RowDescription, DataRow) and of a Bind's parameter values (for routing). Pure.

use super::frame::{read_cstr, read_i16, read_i32, Frame};
use super::message::be;
use bytes::{BufMut, BytesMut};

/// One RowDescription field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Column name.
    pub name: String,
    /// Table OID (0 if none).
    pub table: u32,
    /// Column number (0 if none).
    pub column: i16,
    /// Type OID.
    pub type_oid: u32,
    /// Type size (negative: variable).
    pub type_len: i16,
    /// Type modifier.
    pub type_mod: i32,
    /// Format code (0 text, 1 binary).
    pub format: i16,
}

/// One RowDescription field, borrowed from the message.
struct FieldRef<'a> {
    name: &'a str,
    table: u32,
    column: i16,
    type_oid: u32,
    type_len: i16,
    type_mod: i32,
    format: i16,
}

/// Reads the next field of a RowDescription body.
fn read_field<'a>(b: &mut &'a [u8]) -> Option<FieldRef<'a>> {
    Some(FieldRef {
        name: read_cstr(b)?,
        table: read_i32(b)? as u32,
        column: read_i16(b)?,
        type_oid: read_i32(b)? as u32,
        type_len: read_i16(b)?,
        type_mod: read_i32(b)?,
        format: read_i16(b)?,
    })
}

/// The fields of a RowDescription body.
pub fn row_description_fields(body: &[u8]) -> Option<Vec<Field>> {
    let mut b = body;
    let n = read_i16(&mut b)?;
    let mut out = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        let f = read_field(&mut b)?;
        out.push(Field {
            name: f.name.to_string(),
            table: f.table,
            column: f.column,
            type_oid: f.type_oid,
            type_len: f.type_len,
            type_mod: f.type_mod,
            format: f.format,
        });
    }
    Some(out)
}

/// Builds a RowDescription.
pub fn row_description(fields: &[Field]) -> Frame {
    let mut b = BytesMut::new();
    b.put_u8(be::ROW_DESCRIPTION);
    b.put_i32(0);
    b.put_i16(fields.len() as i16);
    for f in fields {
        b.put_slice(f.name.as_bytes());
        b.put_u8(0);
        b.put_u32(f.table);
        b.put_i16(f.column);
        b.put_u32(f.type_oid);
        b.put_i16(f.type_len);
        b.put_i32(f.type_mod);
        b.put_i16(f.format);
    }
    finish(b)
}

/// What a prepared statement returns, as PostgreSQL compares it when it revalidates a cached
/// plan ("cached plan must not change result type"): the column names, types and type
/// modifiers, or no rows at all. Table OIDs, column numbers and formats are left out, and so
/// are the OIDs of user-defined types: each node of a shard numbers its own objects.
///
/// Kept as one byte string (per column: name, NUL, type OID, type length, type modifier),
/// NoData as `None`: recorded for every statement a client describes, so it is built with
/// one allocation and compared as bytes. The RowDescription it was built from is kept too
/// (in front of the shape's bytes, `raw_len` long): a repeated unnamed statement checks its
/// predecessor's shape against its own Describe by comparing that (`is_described_by`).
#[derive(Debug, Clone)]
pub struct ResultShape(Option<Described>);

#[derive(Debug, Clone)]
struct Described {
    /// The RowDescription body, then the shape's bytes.
    bytes: std::sync::Arc<[u8]>,
    raw_len: usize,
}

impl Described {
    fn raw(&self) -> &[u8] {
        &self.bytes[..self.raw_len]
    }

    fn shape(&self) -> &[u8] {
        &self.bytes[self.raw_len..]
    }
}

impl PartialEq for ResultShape {
    fn eq(&self, other: &ResultShape) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => a.shape() == b.shape(),
            _ => false,
        }
    }
}

impl Eq for ResultShape {}

/// OIDs below this are PostgreSQL's own (built-in types), equal on every server.
const FIRST_NORMAL_OID: u32 = 16384;

impl ResultShape {
    /// The shape in a RowDescription or NoData message (None for anything else or a
    /// malformed one).
    pub fn of(tag: u8, body: &[u8]) -> Option<ResultShape> {
        match tag {
            be::NO_DATA => Some(ResultShape(None)),
            be::ROW_DESCRIPTION => {
                let mut out = Vec::with_capacity(2 * body.len());
                out.extend_from_slice(body);
                shape_bytes(body, |c| out.extend_from_slice(c))?;
                Some(ResultShape(Some(Described {
                    bytes: out.into(),
                    raw_len: body.len(),
                })))
            }
            _ => None,
        }
    }

    /// Whether a RowDescription or NoData message describes this shape (`of` would return an
    /// equal one), checked without building one.
    pub fn is_described_by(&self, tag: u8, body: &[u8]) -> bool {
        match (tag, &self.0) {
            (be::NO_DATA, None) => true,
            // The same message as before (same server, or same table OIDs): the common case.
            (be::ROW_DESCRIPTION, Some(d)) if d.raw() == body => true,
            (be::ROW_DESCRIPTION, Some(d)) => {
                let mut rest: &[u8] = d.shape();
                let mut same = true;
                let walked = shape_bytes(body, |c| {
                    match rest.strip_prefix(c) {
                        Some(r) if same => rest = r,
                        _ => same = false,
                    };
                });
                walked.is_some() && same && rest.is_empty()
            }
            _ => false,
        }
    }
}

/// Hands `out` the bytes of a RowDescription body's shape, piece by piece (see
/// [`ResultShape`]); None if the body is malformed.
fn shape_bytes(body: &[u8], mut out: impl FnMut(&[u8])) -> Option<()> {
    let mut b = body;
    let n = read_i16(&mut b)?;
    out(&n.to_be_bytes());
    for _ in 0..n {
        let f = read_field(&mut b)?;
        let oid = if f.type_oid < FIRST_NORMAL_OID {
            f.type_oid
        } else {
            0
        };
        out(f.name.as_bytes());
        out(&[0]);
        out(&oid.to_be_bytes());
        out(&f.type_len.to_be_bytes());
        out(&f.type_mod.to_be_bytes());
    }
    Some(())
}

/// The values of a DataRow body (None = NULL).
pub fn data_row_values(body: &[u8]) -> Option<Vec<Option<Vec<u8>>>> {
    let mut b = body;
    let n = read_i16(&mut b)?;
    let mut out = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        let len = read_i32(&mut b)?;
        if len < 0 {
            out.push(None);
            continue;
        }
        let len = len as usize;
        if b.len() < len {
            return None;
        }
        out.push(Some(b[..len].to_vec()));
        b = &b[len..];
    }
    Some(out)
}

/// Builds a DataRow from values (None = NULL).
pub fn data_row(values: &[Option<Vec<u8>>]) -> Frame {
    let size: usize = values
        .iter()
        .map(|v| 4 + v.as_ref().map_or(0, Vec::len))
        .sum();
    let mut b = BytesMut::with_capacity(7 + size);
    b.put_u8(be::DATA_ROW);
    b.put_i32(0);
    b.put_i16(values.len() as i16);
    for v in values {
        match v {
            None => b.put_i32(-1),
            Some(v) => {
                b.put_i32(v.len() as i32);
                b.put_slice(v);
            }
        }
    }
    finish(b)
}

fn finish(mut b: BytesMut) -> Frame {
    let len = (b.len() - 1) as i32;
    b[1..5].copy_from_slice(&len.to_be_bytes());
    Frame::from_raw(b.freeze())
}

/// A Bind's parameters and result formats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindValues<'a> {
    /// Per parameter: (format code, value; None = NULL).
    pub params: Vec<(i16, Option<&'a [u8]>)>,
    /// Result column format codes (empty: all text; one: for every column).
    pub result_formats: Vec<i16>,
}

/// The format of column (or parameter) `i` given a Bind's format codes: none means all text,
/// one applies to every column, otherwise one per column (None past the end).
pub fn column_format(formats: &[i16], i: usize) -> Option<i16> {
    match formats.len() {
        0 => Some(0),
        1 => Some(formats[0]),
        _ => formats.get(i).copied(),
    }
}

/// Parses what follows the two names of a Bind body (`Bind::rest`).
pub fn bind_values(rest: &[u8]) -> Option<BindValues<'_>> {
    let mut b = rest;
    let nf = read_i16(&mut b)?;
    let mut formats = Vec::new();
    for _ in 0..nf.max(0) {
        formats.push(read_i16(&mut b)?);
    }
    let np = read_i16(&mut b)?;
    let mut params = Vec::new();
    for i in 0..np.max(0) as usize {
        let format = column_format(&formats, i)?;
        let len = read_i32(&mut b)?;
        if len < 0 {
            params.push((format, None));
            continue;
        }
        let len = len as usize;
        if b.len() < len {
            return None;
        }
        params.push((format, Some(&b[..len])));
        b = &b[len..];
    }
    let nr = read_i16(&mut b)?;
    let mut result_formats = Vec::new();
    for _ in 0..nr.max(0) {
        result_formats.push(read_i16(&mut b)?);
    }
    Some(BindValues {
        params,
        result_formats,
    })
}

/// The `rest` of a Bind (`Bind::rest`) for a statement whose parameter `$k` is parameter
/// `params[k-1]` (1-based) of the original: those values, each with its own format code
/// written out, and the same result formats. None when `rest` is malformed or lacks one of
/// them.
pub fn bind_subset(rest: &[u8], params: &[usize]) -> Option<Vec<u8>> {
    let v = bind_values(rest)?;
    let count = i16::try_from(params.len()).ok()?;
    let mut out = BytesMut::with_capacity(rest.len());
    out.put_i16(count);
    let mut kept = Vec::with_capacity(params.len());
    for &n in params {
        let p = *v.params.get(n.checked_sub(1)?)?;
        out.put_i16(p.0);
        kept.push(p.1);
    }
    out.put_i16(count);
    for value in kept {
        match value {
            None => out.put_i32(-1),
            Some(b) => {
                out.put_i32(i32::try_from(b.len()).ok()?);
                out.put_slice(b);
            }
        }
    }
    out.put_i16(i16::try_from(v.result_formats.len()).ok()?);
    for f in v.result_formats {
        out.put_i16(f);
    }
    Some(out.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, table: u32, type_oid: u32, type_len: i16, type_mod: i32) -> Field {
        Field {
            name: name.into(),
            table,
            column: 1,
            type_oid,
            type_len,
            type_mod,
            format: 0,
        }
    }

    fn shape(fields: &[Field]) -> ResultShape {
        let f = row_description(fields);
        ResultShape::of(f.tag(), f.body()).expect("a RowDescription")
    }

    #[test]
    fn result_shapes_compare_what_postgresql_compares() {
        let int4 = shape(&[field("a", 16400, 23, 4, -1)]);
        // Another node: other table OID, same columns.
        assert_eq!(int4, shape(&[field("a", 17000, 23, 4, -1)]));
        // ALTER … TYPE bigint, a renamed column, another typmod, another column count.
        assert_ne!(int4, shape(&[field("a", 16400, 20, 8, -1)]));
        assert_ne!(int4, shape(&[field("b", 16400, 23, 4, -1)]));
        let v10 = shape(&[field("v", 0, 1043, -1, 14)]);
        assert_ne!(v10, shape(&[field("v", 0, 1043, -1, 24)]));
        assert_ne!(int4, shape(&[]));
        // A user-defined type (an enum) has its own OID on each node.
        let e = shape(&[field("mood", 16400, 16390, 4, -1)]);
        assert_eq!(e, shape(&[field("mood", 16400, 24001, 4, -1)]));
        let none = ResultShape::of(be::NO_DATA, &[]).expect("NoData");
        assert_ne!(none, shape(&[]));
        assert!(ResultShape::of(b'C', b"SELECT 1\0").is_none());
        assert!(ResultShape::of(be::ROW_DESCRIPTION, &[0, 1, b'a']).is_none());
    }

    #[test]
    fn is_described_by_agrees_with_comparing_shapes() {
        let two = [field("a", 16400, 23, 4, -1), field("b", 16400, 25, -1, -1)];
        let cases: Vec<Frame> = vec![
            row_description(&two),
            row_description(&[field("a", 17000, 23, 4, -1), field("b", 1, 25, -1, -1)]),
            row_description(&two[..1]),
            row_description(&[field("a", 16400, 23, 4, -1), field("bb", 16400, 25, -1, -1)]),
            row_description(&[field("ab", 16400, 23, 4, -1)]),
            row_description(&[]),
            Frame::new(be::NO_DATA, &[]),
        ];
        for x in &cases {
            let sx = ResultShape::of(x.tag(), x.body()).expect("a description");
            for y in &cases {
                let sy = ResultShape::of(y.tag(), y.body()).expect("a description");
                assert_eq!(
                    sx.is_described_by(y.tag(), y.body()),
                    sx == sy,
                    "{x:?} {y:?}"
                );
            }
            // Malformed, or not a description at all.
            assert!(!sx.is_described_by(be::ROW_DESCRIPTION, &[0, 1, b'a']));
            assert!(!sx.is_described_by(b'C', b"SELECT 1\0"));
        }
    }

    #[test]
    fn rows_round_trip() {
        let fields = vec![Field {
            name: "a".into(),
            table: 7,
            column: 2,
            type_oid: 23,
            type_len: 4,
            type_mod: -1,
            format: 0,
        }];
        let f = row_description(&fields);
        assert_eq!(row_description_fields(f.body()), Some(fields));
        let values = vec![Some(b"12".to_vec()), None, Some(Vec::new())];
        let f = data_row(&values);
        assert_eq!(data_row_values(f.body()), Some(values));
        assert_eq!(
            data_row_values(&[0, 1, 0, 0, 0, 9]),
            None,
            "truncated value"
        );
    }

    #[test]
    fn bind_parameters() {
        // 1 format (binary for all), 2 params: 8 bytes and NULL, 1 result format (text).
        let mut b = BytesMut::new();
        b.put_i16(1);
        b.put_i16(1);
        b.put_i16(2);
        b.put_i32(8);
        b.put_i64(42);
        b.put_i32(-1);
        b.put_i16(1);
        b.put_i16(0);
        let v = bind_values(&b).expect("parse");
        assert_eq!(v.params.len(), 2);
        assert_eq!(v.params[0], (1, Some(&42i64.to_be_bytes()[..])));
        assert_eq!(v.params[1], (1, None));
        assert_eq!(v.result_formats, vec![0]);
        assert_eq!(bind_values(&[0, 0, 0, 1, 0, 0, 0, 5, 1]), None, "truncated");
    }

    #[test]
    fn bind_subset_keeps_the_chosen_values_with_their_formats() {
        // formats [text, binary, text]; values "a", 0x0102, NULL; result formats [1]
        let mut rest = BytesMut::new();
        rest.put_i16(3);
        for f in [0i16, 1, 0] {
            rest.put_i16(f);
        }
        rest.put_i16(3);
        rest.put_i32(1);
        rest.put_slice(b"a");
        rest.put_i32(2);
        rest.put_slice(&[1, 2]);
        rest.put_i32(-1);
        rest.put_i16(1);
        rest.put_i16(1);
        let sub = bind_subset(&rest, &[2, 3]).expect("subset");
        let v = bind_values(&sub).expect("parses");
        assert_eq!(v.params, vec![(1, Some(&[1u8, 2][..])), (0, None)]);
        assert_eq!(v.result_formats, vec![1]);
        // One format code for all: each kept value gets it.
        let mut one = BytesMut::new();
        one.put_i16(1);
        one.put_i16(1);
        one.put_i16(2);
        one.put_i32(1);
        one.put_slice(b"x");
        one.put_i32(1);
        one.put_slice(b"y");
        one.put_i16(0);
        let v2 = bind_subset(&one, &[2]).expect("subset");
        let v = bind_values(&v2).expect("parses");
        assert_eq!(v.params, vec![(1, Some(&b"y"[..]))]);
        assert!(bind_subset(&one, &[3]).is_none());
    }
}
