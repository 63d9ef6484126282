//! COPY data in binary format, cut into tuples as it streams in: the file header (signature,
//! flags, header extension), then per tuple an int16 field count and per field an int32
//! length (-1: NULL) and the bytes, then the trailer (field count -1). Used to send each tuple
//! of a `COPY … FROM STDIN (FORMAT binary)` into a sharded table to its key's shard. Pure.

/// The 11-byte signature every binary COPY file starts with.
pub const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// The trailer: a field count of -1.
pub const TRAILER: [u8; 2] = [0xff, 0xff];

/// One complete tuple.
pub struct BinaryTuple<'a> {
    /// The tuple's bytes, its field count included.
    pub bytes: &'a [u8],
    /// Field `key` of it: None if the tuple has fewer fields, Some(None) for NULL.
    pub key: Option<Option<&'a [u8]>>,
}

/// Cuts binary COPY data into its header and tuples.
#[derive(Debug, Default)]
pub struct BinaryCutter {
    buf: Vec<u8>,
    /// The header, once complete (given out once by `take_header`).
    header: Option<Vec<u8>>,
    header_taken: bool,
    /// The trailer was seen: what follows is ignored (PostgreSQL ignores it too).
    pub ended: bool,
}

fn be16(b: &[u8]) -> i16 {
    i16::from_be_bytes([b[0], b[1]])
}

fn be32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl BinaryCutter {
    /// Takes more data.
    pub fn push(&mut self, data: &[u8]) {
        if !self.ended {
            self.buf.extend_from_slice(data);
        }
    }

    /// Bytes held that do not make a complete header or tuple yet.
    pub fn partial_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Whether the header was complete.
    pub fn header_seen(&self) -> bool {
        self.header.is_some()
    }

    /// What is held after the last complete tuple (nothing once the trailer was seen).
    pub fn take_rest(&mut self) -> Vec<u8> {
        if self.ended {
            return Vec::new();
        }
        std::mem::take(&mut self.buf)
    }

    /// The header once complete, given out once; Err when the data is no binary COPY file.
    pub fn take_header(&mut self) -> Result<Option<Vec<u8>>, String> {
        if self.header.is_none() {
            let n = SIGNATURE.len();
            let have = self.buf.len().min(n);
            if self.buf[..have] != SIGNATURE[..have] {
                return Err("COPY file signature not recognized".into());
            }
            if self.buf.len() < n + 8 {
                return Ok(None);
            }
            let ext = be32(&self.buf[n + 4..]);
            if ext < 0 {
                return Err("invalid COPY file header (missing length)".into());
            }
            let end = n + 8 + ext as usize;
            if self.buf.len() < end {
                return Ok(None);
            }
            self.header = Some(self.buf.drain(..end).collect());
        }
        if self.header_taken {
            return Ok(None);
        }
        self.header_taken = true;
        Ok(self.header.clone())
    }

    /// Gives `each` every complete tuple (field `key` read), and removes them; stops at the
    /// trailer. Err for a tuple PostgreSQL would reject as malformed (a negative length).
    pub fn drain(
        &mut self,
        key: usize,
        mut each: impl FnMut(BinaryTuple<'_>),
    ) -> Result<(), String> {
        if self.header.is_none() {
            return Ok(());
        }
        let mut pos = 0;
        let buf = &self.buf;
        while buf.len() >= pos + 2 {
            let fields = be16(&buf[pos..]);
            if fields == -1 {
                self.ended = true;
                pos = buf.len();
                break;
            }
            if fields < 0 {
                return Err(format!("row field count is {fields}"));
            }
            let mut at = pos + 2;
            let mut key_field = None;
            let mut complete = true;
            for f in 0..fields as usize {
                if buf.len() < at + 4 {
                    complete = false;
                    break;
                }
                let len = be32(&buf[at..]);
                at += 4;
                let value = if len == -1 {
                    None
                } else if len < 0 {
                    return Err(format!("invalid field size {len}"));
                } else {
                    let end = at + len as usize;
                    if buf.len() < end {
                        complete = false;
                        break;
                    }
                    let v = &buf[at..end];
                    at = end;
                    Some(v)
                };
                if f == key {
                    key_field = Some(value);
                }
            }
            if !complete {
                break;
            }
            each(BinaryTuple {
                bytes: &buf[pos..at],
                key: key_field,
            });
            pos = at;
        }
        self.buf.drain(..pos);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Vec<u8> {
        let mut h = SIGNATURE.to_vec();
        h.extend(0i32.to_be_bytes());
        h.extend(0i32.to_be_bytes());
        h
    }

    fn tuple(fields: &[Option<&[u8]>]) -> Vec<u8> {
        let mut t = (fields.len() as i16).to_be_bytes().to_vec();
        for f in fields {
            match f {
                None => t.extend((-1i32).to_be_bytes()),
                Some(v) => {
                    t.extend((v.len() as i32).to_be_bytes());
                    t.extend(*v);
                }
            }
        }
        t
    }

    #[test]
    fn tuples_cut_at_any_chunk_boundary() {
        let mut data = header();
        let k1 = 7i64.to_be_bytes();
        let k2 = 9i64.to_be_bytes();
        data.extend(tuple(&[Some(&k1), Some(b"ann")]));
        data.extend(tuple(&[Some(&k2), None]));
        data.extend(tuple(&[None, Some(b"x")]));
        data.extend(TRAILER);
        for chunk in 1..data.len() {
            let mut c = BinaryCutter::default();
            let mut got = Vec::new();
            let mut hdr = None;
            for piece in data.chunks(chunk) {
                c.push(piece);
                if let Some(h) = c.take_header().expect("header") {
                    hdr = Some(h);
                }
                c.drain(0, |t| {
                    got.push((t.bytes.to_vec(), t.key.map(|k| k.map(<[u8]>::to_vec))))
                })
                .expect("tuples");
            }
            assert_eq!(hdr, Some(header()), "chunk {chunk}");
            assert!(c.ended);
            assert_eq!(got.len(), 3, "chunk {chunk}");
            assert_eq!(got[0].1, Some(Some(k1.to_vec())));
            assert_eq!(got[1].1, Some(Some(k2.to_vec())));
            assert_eq!(got[2].1, Some(None));
            assert_eq!(got[0].0, tuple(&[Some(&k1), Some(b"ann")]));
        }
    }

    #[test]
    fn bad_data_is_reported() {
        let mut c = BinaryCutter::default();
        c.push(b"1\tann\n");
        assert!(c.take_header().is_err());
        let mut c = BinaryCutter::default();
        let mut data = header();
        data.extend((-3i16).to_be_bytes());
        c.push(&data);
        c.take_header().expect("header");
        assert!(c.drain(0, |_| {}).is_err());
        // A tuple with fewer fields than the key's position.
        let mut c = BinaryCutter::default();
        let mut data = header();
        data.extend(tuple(&[Some(b"a")]));
        c.push(&data);
        c.take_header().expect("header");
        let mut keys = Vec::new();
        c.drain(3, |t| keys.push(t.key.is_none())).expect("tuples");
        assert_eq!(keys, vec![true]);
    }
}
