//! Framing: splits a byte stream into typed-by-tag message frames without copying.
//!
//! A frame keeps its raw bytes (tag, length, body) so the forwarding hot path can pass it on
//! untouched; accessors give the tag and body as views. Decoding never panics on any input: it
//! answers "need more bytes" (`Ok(None)`), a frame, or an error for a length that is invalid or
//! larger than the configured cap.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Errors found while framing network input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The declared length is below the 4 bytes of the length field itself.
    #[error("invalid message length {0}")]
    InvalidLength(i32),
    /// The declared length exceeds the configured maximum message size.
    #[error("message of {len} bytes exceeds the maximum of {max} bytes (max_message_size)")]
    TooLarge {
        /// Declared length.
        len: usize,
        /// Configured cap.
        max: usize,
    },
}

/// One tagged protocol message: `tag`, `int32 length` (including itself), body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    raw: Bytes,
}

impl Frame {
    /// Wraps already-framed bytes. `raw` must hold tag + length + body.
    pub fn from_raw(raw: Bytes) -> Self {
        debug_assert!(raw.len() >= 5);
        Frame { raw }
    }

    /// Builds a frame from a tag and a body.
    pub fn new(tag: u8, body: &[u8]) -> Self {
        let mut b = BytesMut::with_capacity(5 + body.len());
        b.put_u8(tag);
        b.put_i32((body.len() + 4) as i32);
        b.put_slice(body);
        Frame { raw: b.freeze() }
    }

    /// The message type byte.
    #[inline]
    pub fn tag(&self) -> u8 {
        self.raw[0]
    }

    /// The message body (after tag and length).
    #[inline]
    pub fn body(&self) -> &[u8] {
        &self.raw[5..]
    }

    /// The body as a cheap `Bytes` view.
    pub fn body_bytes(&self) -> Bytes {
        self.raw.slice(5..)
    }

    /// The whole frame as sent on the wire.
    #[inline]
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Consumes the frame, returning its wire bytes.
    pub fn into_raw(self) -> Bytes {
        self.raw
    }

    /// Length on the wire (tag + length field + body).
    #[inline]
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Always false: a frame has at least a tag and a length.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// A borrowed view of one complete frame inside a read buffer (no copy, no refcount).
#[derive(Clone, Copy, Debug)]
pub struct FrameRef<'a> {
    raw: &'a [u8],
}

impl<'a> FrameRef<'a> {
    /// Wraps a slice holding exactly one frame (as measured by `peek_frame_len`).
    pub fn new(raw: &'a [u8]) -> Self {
        debug_assert!(raw.len() >= 5);
        FrameRef { raw }
    }

    /// The message type byte.
    #[inline]
    pub fn tag(&self) -> u8 {
        self.raw[0]
    }

    /// The message body.
    #[inline]
    pub fn body(&self) -> &'a [u8] {
        &self.raw[5..]
    }

    /// The whole frame.
    #[inline]
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }
}

/// Looks at the head of `buf` and returns the length of the first complete tagged frame, if any.
#[inline]
pub fn peek_frame_len(buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(FrameError::InvalidLength(len));
    }
    let total = len as usize + 1;
    if total > max {
        return Err(FrameError::TooLarge { len: total, max });
    }
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some(total))
}

/// Splits one complete tagged frame off the front of `buf`, if one is there.
#[inline]
pub fn decode(buf: &mut BytesMut, max: usize) -> Result<Option<Frame>, FrameError> {
    match peek_frame_len(buf, max)? {
        Some(n) => Ok(Some(Frame {
            raw: buf.split_to(n).freeze(),
        })),
        None => Ok(None),
    }
}

/// Decodes an untagged startup-phase packet (`int32 length`, body): StartupMessage, SSLRequest,
/// GSSENCRequest or CancelRequest. Returns the body without the length.
pub fn decode_untagged(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 8 {
        return Err(FrameError::InvalidLength(len));
    }
    let len = len as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    if buf.len() < len {
        return Ok(None);
    }
    let mut b = buf.split_to(len);
    b.advance(4);
    Ok(Some(b.freeze()))
}

/// Reads a NUL-terminated string from the front of `b`, advancing past the NUL.
/// Returns `None` when there is no NUL or the bytes are not UTF-8.
pub fn read_cstr<'a>(b: &mut &'a [u8]) -> Option<&'a str> {
    let pos = memchr::memchr(0, b)?;
    let s = std::str::from_utf8(&b[..pos]).ok()?;
    *b = &b[pos + 1..];
    Some(s)
}

/// Reads a big-endian i16 from the front of `b`.
pub fn read_i16(b: &mut &[u8]) -> Option<i16> {
    if b.len() < 2 {
        return None;
    }
    let v = i16::from_be_bytes([b[0], b[1]]);
    *b = &b[2..];
    Some(v)
}

/// Reads a big-endian i32 from the front of `b`.
pub fn read_i32(b: &mut &[u8]) -> Option<i32> {
    if b.len() < 4 {
        return None;
    }
    let v = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    *b = &b[4..];
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_frames_and_waits_for_more() {
        let mut buf = BytesMut::new();
        buf.put_slice(&Frame::new(b'Q', b"select 1\0").into_raw());
        buf.put_slice(&[b'S', 0, 0]);
        let f = decode(&mut buf, 1024).expect("valid").expect("complete");
        assert_eq!(f.tag(), b'Q');
        assert_eq!(f.body(), b"select 1\0");
        assert_eq!(decode(&mut buf, 1024), Ok(None));
        buf.put_slice(&[0, 4]);
        let f = decode(&mut buf, 1024).expect("valid").expect("complete");
        assert_eq!(f.tag(), b'S');
        assert!(f.body().is_empty());
        assert!(buf.is_empty());
    }

    #[test]
    fn rejects_bad_and_oversized_lengths() {
        let mut buf = BytesMut::from(&[b'Q', 0, 0, 0, 3][..]);
        assert_eq!(decode(&mut buf, 1024), Err(FrameError::InvalidLength(3)));
        let mut buf = BytesMut::from(&[b'Q', 0x7f, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            decode(&mut buf, 1024),
            Err(FrameError::TooLarge { .. })
        ));
        let mut buf = BytesMut::from(&[b'Q', 0xff, 0xff, 0xff, 0xff][..]);
        assert_eq!(decode(&mut buf, 1024), Err(FrameError::InvalidLength(-1)));
    }

    #[test]
    fn untagged_packets() {
        let mut buf = BytesMut::from(&[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f][..]);
        let body = decode_untagged(&mut buf, 10_000)
            .expect("valid")
            .expect("complete");
        assert_eq!(&body[..], &[4, 0xd2, 0x16, 0x2f]);
        let mut buf = BytesMut::from(&[0, 0, 0, 2][..]);
        assert!(decode_untagged(&mut buf, 10_000).is_err());
    }

    #[test]
    fn cstr_reading_is_total() {
        let mut b: &[u8] = b"abc\0def";
        assert_eq!(read_cstr(&mut b), Some("abc"));
        assert_eq!(read_cstr(&mut b), None);
        let mut b: &[u8] = &[1];
        assert_eq!(read_i16(&mut b), None);
        assert_eq!(read_i32(&mut b), None);
    }
}
