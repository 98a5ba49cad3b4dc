//! Writes gathered over a whole turn of the task that drives a connection.
//!
//! h2 writes a DATA frame of more than 256 bytes from the caller's buffer and flushes
//! the connection before it encodes the next frame. A small gRPC message's DATA and the
//! frame that ends it (an empty DATA with END_STREAM, or the trailers) so left in two
//! writes at every hop, and each woke the next process twice, even when both were in
//! hand in the same turn.
//!
//! [`gathered`] splits an I/O object in two: [`GatheredIo`] for h2 (or hyper), which
//! keeps small writes and takes a flush as "this may go now", and [`AfterTurn`] around
//! the future that drives the connection, which writes what was flushed when that
//! future's turn ends. Every frame of a turn is in hand by then: a downstream
//! connection's future runs its calls itself, and an upstream connection belongs to one
//! downstream connection, whose turn hands it every frame before the upstream's own
//! turn comes. So frames that are ready together leave in one write, without waiting
//! for another turn. Writes bigger than [`GATHER_LIMIT`] go straight through, after
//! what is held.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Largest write that is gathered; larger ones are written at once. A small message's
/// frames are far below it; a bulk transfer's frames (up to 256 KiB) are not copied.
pub(super) const GATHER_LIMIT: usize = 64 << 10;
/// Room for held bytes kept between turns: a few small messages' frames. A bulk
/// transfer's larger room is given back once written, so that thousands of idle
/// connections do not each keep [`GATHER_LIMIT`].
const KEPT_ROOM: usize = 8 << 10;

/// `io` split into the half that h2 writes to and the half that writes out at the end
/// of the driving task's turn; wrap the connection's future with the second.
pub(super) fn gathered<T>(io: T) -> (GatheredIo<T>, Flusher<T>) {
    let shared = Arc::new(Mutex::new(Held {
        io,
        buf: Vec::new(),
        flush_asked: false,
        failed: None,
    }));
    (
        GatheredIo {
            shared: Arc::clone(&shared),
        },
        Flusher { shared },
    )
}

/// The I/O object and the bytes written to it that are not yet on their way.
struct Held<T> {
    io: T,
    buf: Vec<u8>,
    /// Whether the writer flushed while bytes were held: they may go now.
    flush_asked: bool,
    /// A failed write of held bytes, reported to the next write or flush.
    failed: Option<io::Error>,
}

impl<T: AsyncWrite + Unpin> Held<T> {
    /// Writes out everything held; `Pending` (with `cx` registered) while the socket is
    /// full.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(err) = self.failed.take() {
            return Poll::Ready(Err(err));
        }
        let mut written = 0;
        let result = loop {
            if written == self.buf.len() {
                break Poll::Ready(Ok(()));
            }
            match Pin::new(&mut self.io).poll_write(cx, &self.buf[written..]) {
                Poll::Ready(Ok(0)) => break Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(err)) => break Poll::Ready(Err(err)),
                Poll::Pending => break Poll::Pending,
            }
        };
        self.buf.drain(..written);
        if self.buf.is_empty() {
            self.flush_asked = false;
            // An idle connection keeps no more than a small message's room.
            if self.buf.capacity() > KEPT_ROOM {
                self.buf = Vec::new();
            }
        }
        result
    }
}

fn lock<T>(shared: &Mutex<Held<T>>) -> MutexGuard<'_, Held<T>> {
    // A panic while the lock was held leaves plain bytes: still usable.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// The half of a [`gathered`] I/O object that h2 (or hyper) reads and writes.
pub(super) struct GatheredIo<T> {
    shared: Arc<Mutex<Held<T>>>,
}

/// The half of a [`gathered`] I/O object that wraps the connection's future.
pub(super) struct Flusher<T> {
    shared: Arc<Mutex<Held<T>>>,
}

impl<T> Flusher<T> {
    /// `connection`, writing out what it flushed at the end of each of its turns.
    pub(super) fn around<F: Future>(self, connection: F) -> AfterTurn<F, T> {
        AfterTurn {
            connection,
            shared: self.shared,
        }
    }
}

pin_project! {
    /// A connection's future whose flushed writes leave at the end of its turn.
    pub(super) struct AfterTurn<F, T> {
        #[pin]
        connection: F,
        shared: Arc<Mutex<Held<T>>>,
    }
}

impl<F, T> AfterTurn<F, T> {
    /// The connection's future itself (e.g. to start a graceful shutdown).
    pub(super) fn connection(self: Pin<&mut Self>) -> Pin<&mut F> {
        self.project().connection
    }
}

impl<F: Future, T: AsyncWrite + Unpin> Future for AfterTurn<F, T> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let output = this.connection.poll(cx);
        let mut held = lock(this.shared);
        if !held.flush_asked {
            return output;
        }
        if let Poll::Ready(Err(err)) = held.poll_write_out(cx) {
            // The connection learns of it from its next write or flush, which this wake
            // makes it reach.
            held.failed = Some(err);
            cx.waker().wake_by_ref();
        }
        output
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for GatheredIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut lock(&self.shared).io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> GatheredIo<T> {
    /// Takes `len` bytes (`fill` appends them) into the held bytes, or, when they would
    /// not fit, writes the held bytes out and `direct` the new ones.
    fn poll_take(
        &self,
        cx: &mut Context<'_>,
        len: usize,
        fill: impl FnOnce(&mut Vec<u8>),
        direct: impl FnOnce(&mut T, &mut Context<'_>) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        let mut held = lock(&self.shared);
        if let Some(err) = held.failed.take() {
            return Poll::Ready(Err(err));
        }
        if held.buf.len() + len > GATHER_LIMIT {
            ready!(held.poll_write_out(cx))?;
            if len > GATHER_LIMIT {
                return direct(&mut held.io, cx);
            }
        }
        fill(&mut held.buf);
        Poll::Ready(Ok(len))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GatheredIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_take(
            cx,
            data.len(),
            |buf| buf.extend_from_slice(data),
            |io, cx| Pin::new(io).poll_write(cx, data),
        )
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        self.poll_take(
            cx,
            len,
            |buf| bufs.iter().for_each(|b| buf.extend_from_slice(b)),
            |io, cx| Pin::new(io).poll_write_vectored(cx, bufs),
        )
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut held = lock(&self.shared);
        if let Some(err) = held.failed.take() {
            return Poll::Ready(Err(err));
        }
        if held.buf.is_empty() {
            return Pin::new(&mut held.io).poll_flush(cx);
        }
        // Written out by `AfterTurn` at the end of the next turn of the same task.
        held.flush_asked = true;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut held = lock(&self.shared);
        ready!(held.poll_write_out(cx))?;
        Pin::new(&mut held.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// An I/O object that counts the writes that reach it.
    struct Counting<T> {
        io: T,
        writes: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl<T: AsyncWrite + Unpin> AsyncWrite for Counting<T> {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Pin::new(&mut self.io).poll_write(cx, buf)
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_shutdown(cx)
        }
    }

    /// Frames flushed during one turn leave together when it ends, not at each flush.
    #[tokio::test]
    async fn flushes_of_one_turn_leave_in_one_write_when_it_ends() {
        let (client, mut server) = tokio::io::duplex(1 << 20);
        let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (mut io, flusher) = gathered(Counting {
            io: client,
            writes: Arc::clone(&writes),
        });
        let mut step = 0;
        let driver = flusher.around(poll_fn(move |cx| {
            step += 1;
            if step > 1 {
                return Poll::Ready(());
            }
            // One turn: a frame, flushed, then the frame that ends the message, flushed.
            assert!(Pin::new(&mut io).poll_write(cx, b"data").is_ready());
            assert!(Pin::new(&mut io).poll_flush(cx).is_ready());
            assert!(Pin::new(&mut io).poll_write(cx, b"+end").is_ready());
            assert!(Pin::new(&mut io).poll_flush(cx).is_ready());
            Poll::Pending
        }));
        let mut driver = std::pin::pin!(driver);
        assert!(futures_util::poll!(driver.as_mut()).is_pending());
        let mut seen = [0u8; 8];
        server.read_exact(&mut seen).await.unwrap();
        assert_eq!(&seen, b"data+end");
        assert_eq!(writes.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert!(futures_util::poll!(driver.as_mut()).is_ready());
    }

    /// A write bigger than the limit goes out at once, after what was held, in order.
    #[tokio::test]
    async fn large_writes_go_straight_through_in_order() {
        let (client, mut server) = tokio::io::duplex(4 << 20);
        let (mut io, _flusher) = gathered(client);
        io.write_all(b"head").await.unwrap();
        let big = vec![7u8; GATHER_LIMIT + 1];
        io.write_all(&big).await.unwrap();
        let mut seen = vec![0u8; 4 + big.len()];
        server.read_exact(&mut seen).await.unwrap();
        assert_eq!(&seen[..4], b"head");
        assert!(seen[4..].iter().all(|&b| b == 7));
    }

    /// Shutting down writes out what is held first.
    #[tokio::test]
    async fn shutdown_writes_what_is_held() {
        let (client, mut server) = tokio::io::duplex(1 << 20);
        let (mut io, _flusher) = gathered(client);
        io.write_all(b"last words").await.unwrap();
        io.flush().await.unwrap();
        io.shutdown().await.unwrap();
        let mut seen = Vec::new();
        server.read_to_end(&mut seen).await.unwrap();
        assert_eq!(seen, b"last words");
    }
}
