//! The client side of a session: the socket, its read buffer, and framed reads and writes.

use super::SessionError;
use crate::net::Stream;
use crate::protocol::frame::{self, Frame, FrameError};
use crate::protocol::ClientError;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A client connection.
pub struct ClientConn {
    /// The socket (plain or TLS).
    pub stream: Stream,
    /// Bytes read and not yet consumed.
    pub buf: BytesMut,
    /// Largest message accepted.
    pub max_message: usize,
}

impl ClientConn {
    /// Reads more bytes; `ClientGone` on orderly close. An idle client holds no read buffer:
    /// with an empty one, wait for the socket to become readable before allocating (10,000
    /// idle clients must cost little memory).
    pub async fn fill(&mut self) -> Result<usize, SessionError> {
        if self.buf.capacity() == 0 {
            if let Stream::Plain(tcp) = &self.stream {
                tcp.readable()
                    .await
                    .map_err(|e| SessionError::ClientIo(e.to_string()))?;
            }
        }
        if self.buf.capacity() == 0 {
            self.buf = BytesMut::with_capacity(16 * 1024);
        } else if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) => Err(SessionError::ClientGone),
            Ok(n) => Ok(n),
            Err(e) => Err(SessionError::ClientIo(e.to_string())),
        }
    }

    /// Frees the read buffer if it holds nothing (the session is idle).
    pub fn shrink_if_empty(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            self.buf = BytesMut::new();
        }
    }

    /// Splits one complete frame off the buffer, if there is one.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, SessionError> {
        frame::decode(&mut self.buf, self.max_message).map_err(frame_error)
    }

    /// Reads one complete frame.
    pub async fn read_frame(&mut self) -> Result<Frame, SessionError> {
        loop {
            if let Some(f) = self.next_frame()? {
                return Ok(f);
            }
            self.fill().await?;
        }
    }

    /// Writes bytes.
    pub async fn write_all(&mut self, b: &[u8]) -> Result<(), SessionError> {
        self.stream
            .write_all(b)
            .await
            .map_err(|e| SessionError::ClientIo(e.to_string()))
    }

    /// Sends a fatal error and closes. Errors while doing so are ignored: the client may be gone.
    pub async fn fatal(&mut self, e: &(dyn ClientError + Send + Sync)) {
        let mut f = e.to_frame();
        if !e.is_fatal() {
            f = crate::protocol::message::error_response(
                crate::protocol::message::Severity::Fatal,
                e.sqlstate(),
                &e.to_string(),
                e.hint().as_deref(),
            );
        }
        let _ = self.stream.write_all(f.raw()).await;
        let _ = self.stream.shutdown().await;
    }
}

/// Maps a framing error to the session error reported to the client.
pub fn frame_error(e: FrameError) -> SessionError {
    match e {
        FrameError::TooLarge { .. } => SessionError::TooLarge(e.to_string()),
        FrameError::InvalidLength(_) => SessionError::Protocol(e.to_string()),
    }
}
