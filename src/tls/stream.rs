//! A connection on the hop: plain TCP, or TLS over TCP.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsStream;

/// A TCP connection, with or without TLS, as the listener and the upstream client use it.
#[derive(Debug)]
pub enum HopStream {
    /// Cleartext.
    Plain(TcpStream),
    /// TLS (boxed: the session state is large, and most connections are plain).
    Tls(Box<TlsStream<TcpStream>>),
}

impl HopStream {
    /// The TCP connection underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            HopStream::Plain(tcp) => tcp,
            HopStream::Tls(tls) => tls.get_ref().0,
        }
    }

    /// The ALPN protocol agreed, if TLS negotiated one.
    pub fn alpn(&self) -> Option<&[u8]> {
        match self {
            HopStream::Plain(_) => None,
            HopStream::Tls(tls) => tls.get_ref().1.alpn_protocol(),
        }
    }
}

impl From<TcpStream> for HopStream {
    fn from(tcp: TcpStream) -> HopStream {
        HopStream::Plain(tcp)
    }
}

impl From<TlsStream<TcpStream>> for HopStream {
    fn from(tls: TlsStream<TcpStream>) -> HopStream {
        HopStream::Tls(Box::new(tls))
    }
}

impl AsyncRead for HopStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            HopStream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            HopStream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for HopStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            HopStream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            HopStream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            HopStream::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            HopStream::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            HopStream::Plain(tcp) => tcp.is_write_vectored(),
            HopStream::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            HopStream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            HopStream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            HopStream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            HopStream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}
