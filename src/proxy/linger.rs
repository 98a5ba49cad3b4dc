//! Closing a downstream connection without losing what was last written to it.
//!
//! When a socket is closed while bytes the client sent are still unread (a WINDOW_UPDATE
//! or PING acknowledgement for the last response, sent just before hyper closed the
//! connection), the kernel answers with a TCP reset instead of a FIN, and a client that
//! has not read the end of the response yet loses it: a stream that finished during a
//! drain ended at the client with "connection reset". So after hyper has shut the write
//! side (FIN sent), the connection reads and discards what the client still sends until
//! the client closes too, for at most [`LINGER`]: then the socket closes with nothing
//! unread and the client reads everything that was sent.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Longest wait for the client to close its side once the connection has shut down.
/// A client reading its answers closes within a round trip of the FIN; one that does
/// not is not waited for.
pub(super) const LINGER: Duration = Duration::from_secs(2);

pin_project! {
    /// `io`, whose shutdown waits (within [`LINGER`]) for the peer to close its side.
    pub(super) struct Lingering<T> {
        #[pin]
        io: T,
        state: State,
        // Boxed so that the connection stays `Unpin`, as hyper needs.
        deadline: Option<Pin<Box<Sleep>>>,
    }
}

/// Where the shutdown has got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The connection is in use; nothing shut yet.
    Open,
    /// The write side is shut: reading until the peer's end of stream.
    Draining,
    /// The peer closed, the deadline passed, or reading failed.
    Closed,
}

impl<T> Lingering<T> {
    /// `io`, not yet shut down.
    pub(super) fn new(io: T) -> Lingering<T> {
        Lingering {
            io,
            state: State::Open,
            deadline: None,
        }
    }
}

impl<T: AsyncRead> AsyncRead for Lingering<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().io.poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite> AsyncWrite for Lingering<T> {
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
        let mut this = self.project();
        loop {
            match *this.state {
                State::Open => {
                    ready!(this.io.as_mut().poll_shutdown(cx))?;
                    *this.state = State::Draining;
                    *this.deadline = Some(Box::pin(tokio::time::sleep(LINGER)));
                }
                State::Draining => {
                    if let Some(deadline) = this.deadline.as_mut()
                        && deadline.as_mut().poll(cx).is_ready()
                    {
                        *this.state = State::Closed;
                        continue;
                    }
                    let mut scratch = [0u8; 4096];
                    let mut discard = ReadBuf::new(&mut scratch);
                    match ready!(this.io.as_mut().poll_read(cx, &mut discard)) {
                        Ok(()) if discard.filled().is_empty() => *this.state = State::Closed,
                        Ok(()) => {}
                        // The write side is already shut; a failed read only ends the wait.
                        Err(_) => *this.state = State::Closed,
                    }
                }
                State::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn shutdown_reads_what_the_peer_still_sends_until_it_closes() {
        let (client, server) = tokio::io::duplex(64);
        let mut server = Lingering::new(server);
        let (mut client_read, mut client_write) = tokio::io::split(client);
        server.write_all(b"last answer").await.unwrap();
        let peer = tokio::spawn(async move {
            // The peer sends more after the server has finished, then reads and closes.
            client_write.write_all(&[7u8; 1000]).await.unwrap();
            let mut answer = Vec::new();
            client_read.read_to_end(&mut answer).await.unwrap();
            drop(client_write);
            answer
        });
        server.shutdown().await.unwrap();
        assert_eq!(peer.await.unwrap(), b"last answer");
        assert_eq!(server.state, State::Closed);
    }

    #[tokio::test]
    async fn a_peer_that_never_closes_is_not_waited_for_beyond_the_linger_time() {
        let (client, server) = tokio::io::duplex(64);
        let mut server = Lingering::new(server);
        let started = tokio::time::Instant::now();
        server.shutdown().await.unwrap();
        assert!(started.elapsed() >= LINGER);
        assert_eq!(server.state, State::Closed);
        drop(client);
    }
}
