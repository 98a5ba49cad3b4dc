//! Calls open on one connection, so that a connection without any can be closed after
//! the idle timeout.
//!
//! hyper has no idle timeout for HTTP/2 connections, and bytes are no measure of idleness
//! (keep-alive pings flow on idle connections, and a long call may be silent for
//! minutes), so the service counts requests: one is open from its arrival until its
//! response body has ended or been dropped.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::sync::watch;

/// The calls open on one connection; clones share the count.
#[derive(Debug, Clone)]
pub(super) struct Activity {
    open: Arc<watch::Sender<usize>>,
}

impl Activity {
    /// A connection with no call open yet.
    pub(super) fn new() -> Activity {
        Activity {
            open: Arc::new(watch::Sender::new(0)),
        }
    }

    /// Counts a call as open until the returned guard is dropped.
    pub(super) fn call_started(&self) -> OpenCall {
        self.open.send_modify(|open| *open += 1);
        OpenCall {
            open: self.open.clone(),
        }
    }

    /// Resolves once no call has been open for `timeout` without a break.
    pub(super) async fn idle_for(&self, timeout: Duration) {
        let mut open = self.open.subscribe();
        loop {
            // The sender lives as long as `self`: these never fail.
            let _ = open.wait_for(|open| *open == 0).await;
            // Any change restarts the wait: a call that came and went inside the
            // timeout leaves the connection busy since it ended.
            if tokio::time::timeout(timeout, open.changed()).await.is_err() {
                return;
            }
        }
    }
}

/// One open call; dropping it ends the call's count.
#[derive(Debug)]
pub(super) struct OpenCall {
    open: Arc<watch::Sender<usize>>,
}

impl Drop for OpenCall {
    fn drop(&mut self) {
        self.open.send_modify(|open| *open -= 1);
    }
}

pin_project! {
    /// A response body that keeps its call open until it has ended or is dropped
    /// (the client reset the stream, or the connection closed).
    pub(super) struct Counted<B> {
        #[pin]
        body: B,
        call: Option<OpenCall>,
    }
}

impl<B> Counted<B> {
    /// `body`, keeping `call` open while it lasts.
    pub(super) fn new(body: B, call: OpenCall) -> Counted<B> {
        Counted {
            body,
            call: Some(call),
        }
    }
}

impl<B: Body> Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = this.body.poll_frame(cx);
        if let Poll::Ready(None | Some(Err(_))) = frame {
            this.call.take();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};

    #[tokio::test]
    async fn idle_only_without_open_calls_for_the_whole_timeout() {
        use tokio::time::{Instant, sleep};
        let activity = Activity::new();
        let timeout = Duration::from_millis(100);
        let call = activity.call_started();
        let idle = tokio::spawn({
            let activity = activity.clone();
            async move {
                activity.idle_for(timeout).await;
                Instant::now()
            }
        });
        // With a call open, no amount of time makes the connection idle.
        sleep(timeout * 10).await;
        assert!(!idle.is_finished());
        drop(call);
        // A call that comes and goes restarts the wait.
        sleep(timeout / 2).await;
        drop(activity.call_started());
        let last_call_ended = Instant::now();
        let became_idle = idle.await.unwrap();
        // Timers never fire early: idleness counts from the end of the last call.
        assert!(became_idle >= last_call_ended + timeout);
    }

    #[tokio::test]
    async fn a_body_keeps_its_call_open_until_it_ends() {
        let activity = Activity::new();
        let body = Counted::new(
            Full::new(Bytes::from_static(b"data")),
            activity.call_started(),
        );
        assert_eq!(*activity.open.borrow(), 1);
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(&collected[..], b"data");
        assert_eq!(*activity.open.borrow(), 0);

        let body = Counted::new(
            Full::new(Bytes::from_static(b"data")),
            activity.call_started(),
        );
        assert_eq!(*activity.open.borrow(), 1);
        drop(body);
        assert_eq!(*activity.open.borrow(), 0);
    }
}
