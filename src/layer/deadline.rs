//! The time limits of a gRPC call, enforced by the layer: the client's deadline
//! (`grpc-timeout`) and the stream idle timeout (nothing moved for too long).
//!
//! A call with a limit gets one [`CallTimer`]: a single `tokio::time::Sleep` that the
//! response side polls, first beside the upstream's response future, then inside the
//! response body. A call without one pays nothing. Progress (body bytes either way,
//! response headers) is an atomic store of the time; the sleep is moved only when it
//! wakes, so a busy stream does not touch the timer wheel per frame.
//!
//! When a limit passes, the client gets DEADLINE_EXCEEDED: trailers-only before the
//! response started, trailers after the last complete message otherwise, and a reset
//! (RST_STREAM CANCEL) if the limit passed in the middle of a message, where trailers
//! would cut it. The upstream call is dropped, which resets its stream; a request body
//! still streaming to the upstream fails with CANCEL, so the upstream client resets the
//! stream even while it still holds the stream to send on.
//!
//! The idle timeout ends a call with DEADLINE_EXCEEDED too, not CANCELLED: it is a time
//! limit that ran out, and gRPC clients read CANCELLED as their own doing (many ignore
//! it), while DEADLINE_EXCEEDED says "took too long, the outcome is unknown", which is
//! the truth. UNAVAILABLE would invite a retry of a call that may have had its effect.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::error::BoxError;
use crate::grpc::error_body::ResetStream;
use crate::grpc::frame::MessageCursor;
use crate::grpc::{Code, Status};

/// A time limit of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    /// The client's `grpc-timeout`, counted from when the layer got the request.
    Deadline(Duration),
    /// Nothing moved for this long.
    Idle(Duration),
}

impl Limit {
    fn status(self) -> Status {
        let message = match self {
            Limit::Deadline(timeout) => {
                format!("bloscar: the call's deadline passed (grpc-timeout {timeout:?})")
            }
            Limit::Idle(idle) => {
                format!("bloscar: the stream made no progress for {idle:?} (stream idle timeout)")
            }
        };
        Status::new(Code::DeadlineExceeded, message)
    }
}

/// What the timer finds when it wakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Expired(Limit),
    /// Nothing has passed yet: sleep again until then.
    WakeAt(Instant),
}

/// The limits of one call.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// When the deadline passes, and the timeout it came from.
    deadline: Option<(Instant, Duration)>,
    idle: Option<Duration>,
}

impl Limits {
    /// Which limit has passed at `now`, with the last progress at `progress`; else
    /// when to look again. The deadline wins a tie: it is the client's own.
    fn check(&self, now: Instant, progress: Instant) -> Check {
        if let Some((at, timeout)) = self.deadline
            && now >= at
        {
            return Check::Expired(Limit::Deadline(timeout));
        }
        let idle_end = self
            .idle
            .and_then(|idle| progress.checked_add(idle).map(|end| (end, idle)));
        if let Some((end, idle)) = idle_end
            && now >= end
        {
            return Check::Expired(Limit::Idle(idle));
        }
        let next = match (
            self.deadline.map(|(at, _)| at),
            idle_end.map(|(end, _)| end),
        ) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            // Beyond what an Instant can hold: never.
            (None, None) => far_future(now),
        };
        Check::WakeAt(next)
    }
}

/// A time so far ahead that it never comes (tokio caps its timers anyway).
fn far_future(now: Instant) -> Instant {
    now + Duration::from_secs(86_400 * 365 * 30)
}

/// What the request and the response side of a call share.
#[derive(Debug)]
pub(super) struct CallWatch {
    origin: Instant,
    /// Nanoseconds from `origin` to the last progress; kept only with an idle limit.
    progress: AtomicU64,
    tracks_progress: bool,
    expired: AtomicBool,
    /// The task sending the request body upstream, woken when a limit passes.
    request: AtomicWaker,
}

impl CallWatch {
    /// Something moved: body bytes or headers.
    fn touch(&self) {
        if self.tracks_progress {
            let nanos = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
            // Both sides touch, from different threads: never move backwards.
            self.progress.fetch_max(nanos, Ordering::Relaxed);
        }
    }

    fn last_progress(&self) -> Instant {
        self.origin + Duration::from_nanos(self.progress.load(Ordering::Relaxed))
    }

    fn expire(&self) {
        self.expired.store(true, Ordering::Release);
        self.request.wake();
    }

    fn is_expired(&self) -> bool {
        self.expired.load(Ordering::Acquire)
    }
}

/// The one timer of a call with a time limit.
pub(super) struct CallTimer {
    sleep: Pin<Box<Sleep>>,
    limits: Limits,
    watch: Arc<CallWatch>,
}

impl CallTimer {
    /// A timer for a call starting now, or `None` when it has no limit: no deadline
    /// (`timeout` absent) and no idle limit (`idle` absent or zero).
    pub(super) fn start(timeout: Option<Duration>, idle: Option<Duration>) -> Option<CallTimer> {
        let idle = idle.filter(|idle| !idle.is_zero());
        if timeout.is_none() && idle.is_none() {
            return None;
        }
        let now = Instant::now();
        // A limit beyond what an Instant can hold is no limit.
        let deadline = timeout.and_then(|t| now.checked_add(t).map(|at| (at, t)));
        let idle = idle.filter(|&idle| now.checked_add(idle).is_some());
        if deadline.is_none() && idle.is_none() {
            return None;
        }
        let limits = Limits { deadline, idle };
        let first = match limits.check(now, now) {
            Check::WakeAt(at) => at,
            // Already over (a zero timeout): wake at once.
            Check::Expired(_) => now,
        };
        Some(CallTimer {
            sleep: Box::pin(tokio::time::sleep_until(first)),
            limits,
            watch: Arc::new(CallWatch {
                origin: now,
                progress: AtomicU64::new(0),
                tracks_progress: idle.is_some(),
                expired: AtomicBool::new(false),
                request: AtomicWaker::new(),
            }),
        })
    }

    /// What the request side watches.
    pub(super) fn watch(&self) -> Arc<CallWatch> {
        Arc::clone(&self.watch)
    }

    /// Ready with the status to end the call with once a limit has passed; then the
    /// request side stops too.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<Status> {
        loop {
            ready!(self.sleep.as_mut().poll(cx));
            match self
                .limits
                .check(Instant::now(), self.watch.last_progress())
            {
                Check::Expired(limit) => {
                    self.watch.expire();
                    return Poll::Ready(limit.status());
                }
                Check::WakeAt(at) => self.sleep.as_mut().reset(at),
            }
        }
    }

    /// Runs `future` (the upstream's response) until it is done or a limit passes; the
    /// response's headers count as progress. The timer comes back with the outcome.
    pub(super) fn race<F: Future>(self, future: F) -> Race<F> {
        Race {
            future,
            timer: Some(self),
        }
    }
}

pin_project! {
    /// The upstream's response future under the call's timer: see [`CallTimer::race`].
    pub(super) struct Race<F> {
        #[pin]
        future: F,
        timer: Option<CallTimer>,
    }
}

impl<F: Future> Future for Race<F> {
    type Output = (CallTimer, Result<F::Output, Status>);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let timer = this
            .timer
            .as_mut()
            .expect("a race is not polled after it ended");
        let outcome = match this.future.poll(cx) {
            Poll::Ready(output) => {
                timer.watch.touch();
                Ok(output)
            }
            Poll::Pending => Err(ready!(timer.poll_expired(cx))),
        };
        let timer = this.timer.take().expect("checked above");
        Poll::Ready((timer, outcome))
    }
}

pin_project! {
    /// The request body on its way upstream: counts its bytes as progress, and fails
    /// with an HTTP/2 CANCEL once a limit of the call has passed, so that the upstream
    /// client resets the stream instead of sending on.
    pub(super) struct WatchedRequest<B> {
        #[pin]
        inner: B,
        watch: Arc<CallWatch>,
    }
}

impl<B> WatchedRequest<B> {
    pub(super) fn new(inner: B, watch: Arc<CallWatch>) -> Self {
        WatchedRequest { inner, watch }
    }
}

impl<B> Body for WatchedRequest<B>
where
    B: Body<Data = Bytes, Error = BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        // Registered before the check, so an expiry in between still wakes this task.
        this.watch.request.register(cx.waker());
        if this.watch.is_expired() {
            return Poll::Ready(Some(Err(Box::new(h2::Error::from(h2::Reason::CANCEL)))));
        }
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && frame.data_ref().is_some_and(|data| !data.is_empty())
        {
            this.watch.touch();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// The response body on its way to the client, under the call's timer: when a limit
    /// passes it drops the upstream's body and ends with the status, as an error that
    /// [`GrpcErrorBody`](crate::grpc::error_body::GrpcErrorBody) turns into trailers, or
    /// into a reset when the client has part of a message.
    pub(super) struct TimedResponse<B> {
        #[pin]
        inner: Option<B>,
        timer: CallTimer,
        sent: MessageCursor,
    }
}

impl<B> TimedResponse<B> {
    pub(super) fn new(inner: B, timer: CallTimer) -> Self {
        TimedResponse {
            inner: Some(inner),
            timer,
            sent: MessageCursor::default(),
        }
    }
}

impl<B> Body for TimedResponse<B>
where
    B: Body<Data = Bytes, Error = BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if this.inner.is_none() {
            return Poll::Ready(None);
        }
        // A body that always has a frame ready would never get to the timer below.
        if this.timer.sleep.is_elapsed()
            && let Poll::Ready(status) = this.timer.poll_expired(cx)
        {
            return Poll::Ready(Some(Err(abandon(this.inner, this.sent, status))));
        }
        let inner = this.inner.as_mut().as_pin_mut().expect("checked above");
        match inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.sent.advance(data);
                    if !data.is_empty() {
                        this.timer.watch.touch();
                    }
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(end) => return Poll::Ready(end),
            Poll::Pending => {}
        }
        let status = ready!(this.timer.poll_expired(cx));
        Poll::Ready(Some(Err(abandon(this.inner, this.sent, status))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }
}

/// Ends a timed response with `status`: drops the upstream's body, which ends the
/// upstream call, and asks for trailers, or for a reset when the client has part of a
/// message.
fn abandon<B>(mut inner: Pin<&mut Option<B>>, sent: &MessageCursor, status: Status) -> BoxError {
    inner.set(None);
    if sent.at_boundary() {
        Box::new(status)
    } else {
        Box::new(ResetStream(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn the_deadline_passes_at_its_instant() {
        let t0 = Instant::now();
        let limits = Limits {
            deadline: Some((t0 + secs(2), secs(2))),
            idle: None,
        };
        assert_eq!(limits.check(t0, t0), Check::WakeAt(t0 + secs(2)));
        assert_eq!(
            limits.check(t0 + secs(2), t0),
            Check::Expired(Limit::Deadline(secs(2)))
        );
    }

    #[test]
    fn progress_pushes_the_idle_limit_back() {
        let t0 = Instant::now();
        let limits = Limits {
            deadline: None,
            idle: Some(secs(10)),
        };
        assert_eq!(limits.check(t0, t0), Check::WakeAt(t0 + secs(10)));
        // Woken at 10 s, but something moved at 4 s: look again at 14 s.
        assert_eq!(
            limits.check(t0 + secs(10), t0 + secs(4)),
            Check::WakeAt(t0 + secs(14))
        );
        assert_eq!(
            limits.check(t0 + secs(14), t0 + secs(4)),
            Check::Expired(Limit::Idle(secs(10)))
        );
    }

    #[test]
    fn the_earlier_limit_sets_the_wake_and_the_deadline_wins_a_tie() {
        let t0 = Instant::now();
        let limits = Limits {
            deadline: Some((t0 + secs(30), secs(30))),
            idle: Some(secs(10)),
        };
        assert_eq!(limits.check(t0, t0), Check::WakeAt(t0 + secs(10)));
        assert_eq!(
            limits.check(t0 + secs(25), t0 + secs(24)),
            Check::WakeAt(t0 + secs(30))
        );
        assert_eq!(
            limits.check(t0 + secs(30), t0 + secs(20)),
            Check::Expired(Limit::Deadline(secs(30)))
        );
    }

    #[test]
    fn both_limits_end_calls_with_deadline_exceeded() {
        assert_eq!(
            Limit::Deadline(secs(1)).status().code,
            Code::DeadlineExceeded
        );
        assert_eq!(Limit::Idle(secs(1)).status().code, Code::DeadlineExceeded);
    }

    #[tokio::test]
    async fn calls_without_limits_get_no_timer() {
        assert!(CallTimer::start(None, None).is_none());
        assert!(CallTimer::start(None, Some(Duration::ZERO)).is_none());
        assert!(CallTimer::start(Some(secs(1)), None).is_some());
        assert!(CallTimer::start(None, Some(secs(1))).is_some());
    }

    #[tokio::test]
    async fn a_zero_timeout_has_already_passed() {
        let timer = CallTimer::start(Some(Duration::ZERO), None).unwrap();
        let (timer, outcome) = timer.race(std::future::pending::<()>()).await;
        assert_eq!(outcome.unwrap_err().code, Code::DeadlineExceeded);
        assert!(timer.watch.is_expired());
    }

    #[tokio::test]
    async fn a_response_in_time_wins_the_race() {
        let timer = CallTimer::start(Some(secs(3600)), None).unwrap();
        let (timer, outcome) = timer.race(async { 7 }).await;
        assert_eq!(outcome, Ok(7));
        assert!(!timer.watch.is_expired());
    }
}
