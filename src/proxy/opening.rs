//! The first bytes of a connection: read before hyper sees the connection, so that a
//! client that connects and then says nothing (or too little) can be timed out, and then
//! handed to hyper as if nothing had been read.
//!
//! A connection has opened once it has sent the HTTP/2 client preface and the SETTINGS
//! frame that must follow it, or its first bytes are not the preface (HTTP/1, whose
//! request headers hyper's own header-read timeout then bounds).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The HTTP/2 client connection preface (RFC 9113, section 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An HTTP/2 frame header: length (3 bytes), type, flags, stream identifier (4 bytes).
const FRAME_HEADER_LEN: usize = 9;
const SETTINGS: u8 = 0x4;
/// SETTINGS_MAX_FRAME_SIZE before the server's SETTINGS are acknowledged: no SETTINGS
/// frame from a compliant client is larger, so at most this much is read ahead.
const INITIAL_MAX_FRAME: usize = 16_384;

/// Which protocol a connection opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    /// The HTTP/2 preface and a whole first frame.
    Http2,
    /// Bytes that are not the HTTP/2 preface.
    Http1,
}

impl Protocol {
    /// The protocol's name in logs: `http2` or `http1`.
    pub(super) fn name(self) -> &'static str {
        match self {
            Protocol::Http2 => "http2",
            Protocol::Http1 => "http1",
        }
    }
}

/// Reads from `io` until the connection has opened (see the module's documentation),
/// and returns the protocol and the bytes read, which [`Replay`] puts back in front.
///
/// A first frame that is not SETTINGS, or one larger than any compliant client sends,
/// ends the reading early: hyper answers it with the protocol error it is. A client that
/// closes before it has opened is an `UnexpectedEof` error.
pub(super) async fn read_opening<T>(io: &mut T) -> io::Result<(Protocol, Bytes)>
where
    T: AsyncRead + Unpin,
{
    let mut read = BytesMut::with_capacity(PREFACE.len() + FRAME_HEADER_LEN);
    loop {
        if let Some(protocol) = opened(&read) {
            return Ok((protocol, read.freeze()));
        }
        if io.read_buf(&mut read).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before sending a request",
            ));
        }
    }
}

/// Whether `read`, the bytes a connection has sent so far, has opened it, and how.
fn opened(read: &[u8]) -> Option<Protocol> {
    let compared = read.len().min(PREFACE.len());
    if read[..compared] != PREFACE[..compared] {
        return Some(Protocol::Http1);
    }
    let frame = read.get(PREFACE.len()..)?;
    let header = frame.get(..FRAME_HEADER_LEN)?;
    let length =
        usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
    if header[3] != SETTINGS || length > INITIAL_MAX_FRAME {
        return Some(Protocol::Http2);
    }
    (frame.len() >= FRAME_HEADER_LEN + length).then_some(Protocol::Http2)
}

pin_project! {
    /// A connection whose first bytes were already read: reads return them first, then
    /// continue from the connection; writes go straight to it.
    pub(super) struct Replay<T> {
        read: Bytes,
        #[pin]
        io: T,
    }
}

impl<T> Replay<T> {
    /// `io`, whose first bytes `read` were already read from it.
    pub(super) fn new(read: Bytes, io: T) -> Replay<T> {
        Replay { read, io }
    }
}

impl<T: AsyncRead> AsyncRead for Replay<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if this.read.is_empty() {
            return this.io.poll_read(cx, buf);
        }
        let n = this.read.len().min(buf.remaining());
        buf.put_slice(&this.read[..n]);
        this.read.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite> AsyncWrite for Replay<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// The preface and an empty SETTINGS frame, as every HTTP/2 client starts.
    fn h2_opening(settings_len: usize) -> Vec<u8> {
        let mut out = PREFACE.to_vec();
        out.extend_from_slice(&(settings_len as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&[SETTINGS, 0, 0, 0, 0, 0]);
        out.extend(std::iter::repeat_n(0u8, settings_len));
        out
    }

    #[test]
    fn http2_opens_with_the_whole_settings_frame() {
        let opening = h2_opening(12);
        for end in 0..opening.len() {
            assert_eq!(opened(&opening[..end]), None, "{end} bytes");
        }
        assert_eq!(opened(&opening), Some(Protocol::Http2));
    }

    #[test]
    fn anything_else_than_the_preface_is_http1_from_the_first_differing_byte() {
        assert_eq!(opened(b"G"), Some(Protocol::Http1));
        assert_eq!(opened(b"P"), None);
        assert_eq!(opened(b"POST / HTTP/1.1\r\n"), Some(Protocol::Http1));
        assert_eq!(opened(b"PRI * HTTP/1.1"), Some(Protocol::Http1));
    }

    #[test]
    fn a_first_frame_hyper_must_refuse_ends_the_reading() {
        // A HEADERS frame first, and a SETTINGS frame larger than any client may send.
        let mut headers_first = PREFACE.to_vec();
        headers_first.extend_from_slice(&[0, 0, 5, 0x1, 0, 0, 0, 0, 1]);
        assert_eq!(opened(&headers_first), Some(Protocol::Http2));
        let mut huge = PREFACE.to_vec();
        huge.extend_from_slice(&[0xff, 0xff, 0xff, SETTINGS, 0, 0, 0, 0, 0]);
        assert_eq!(opened(&huge), Some(Protocol::Http2));
    }

    #[tokio::test]
    async fn the_bytes_read_are_replayed_before_the_rest() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut sent = h2_opening(6);
        sent.extend_from_slice(b"after the opening");
        let writer = tokio::spawn(async move {
            // In small pieces, as a slow client would.
            for piece in sent.chunks(5) {
                client.write_all(piece).await.unwrap();
            }
            client
        });
        let mut server = server;
        let (protocol, read) = read_opening(&mut server).await.unwrap();
        assert_eq!(protocol, Protocol::Http2);
        let mut replay = Replay::new(read, server);
        drop(writer.await.unwrap());
        let mut everything = Vec::new();
        replay.read_to_end(&mut everything).await.unwrap();
        let mut expected = h2_opening(6);
        expected.extend_from_slice(b"after the opening");
        assert_eq!(everything, expected);
    }

    #[tokio::test]
    async fn a_client_that_closes_before_opening_is_an_eof_error() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(&PREFACE[..10]).await.unwrap();
        drop(client);
        let mut server = server;
        let err = read_opening(&mut server).await.err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
