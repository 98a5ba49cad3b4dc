//! A body wrapper that cuts a gRPC stream into whole length-prefixed messages,
//! transforms each one, and frames the results again.
//!
//! Frame boundaries and message boundaries are unrelated: a DATA frame may hold part of a
//! message or several messages. The wrapper buffers at most one message (bounded by the
//! maximum message size, checked from the 5-byte prefix before any buffering), runs the
//! transform off the async reactor when it may be costly, and passes trailers through.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame};
use pin_project_lite::pin_project;
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::status::{Code, Status};
use crate::BoxError;

/// Length of the gRPC message prefix: one flag byte and a big-endian u32 length.
pub const PREFIX_LEN: usize = 5;

/// Uncompressed messages below this size are transformed in place: finding nothing worth
/// compressing in them costs less than a hop to the blocking pool.
const INLINE_LIMIT: usize = 4 * 1024;

/// One gRPC message: its compressed flag and its bytes (without the prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The compressed flag: the data is in the call's `grpc-encoding`, not identity.
    pub compressed: bool,
    /// The message bytes.
    pub data: Bytes,
}

impl Message {
    /// The 5-byte prefix that frames this message.
    pub fn prefix(&self) -> Result<[u8; PREFIX_LEN], Status> {
        let len = u32::try_from(self.data.len())
            .map_err(|_| Status::new(Code::ResourceExhausted, "message longer than 4 GiB"))?;
        let mut prefix = [0u8; PREFIX_LEN];
        prefix[0] = u8::from(self.compressed);
        prefix[1..].copy_from_slice(&len.to_be_bytes());
        Ok(prefix)
    }
}

/// What is done to each whole message of a stream.
pub trait Transform: Send + Sync + 'static {
    /// Returns the message to send in place of `message`, or the status that ends the call.
    fn transform(&self, message: Message) -> Result<Message, Status>;
}

impl<F> Transform for F
where
    F: Fn(Message) -> Result<Message, Status> + Send + Sync + 'static,
{
    fn transform(&self, message: Message) -> Result<Message, Status> {
        self(message)
    }
}

/// Where a failing request body leaves its status, so the response side can report it
/// instead of the bare reset the upstream connection sees.
#[derive(Debug, Clone, Default)]
pub struct ErrorSlot(Arc<Mutex<Option<Status>>>);

impl ErrorSlot {
    /// Records `status` unless an earlier failure was recorded.
    pub fn set(&self, status: Status) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(status);
    }

    /// The recorded status, if any.
    pub fn get(&self) -> Option<Status> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

enum State {
    /// Collecting the next message from the inner body.
    Reading,
    /// A message waits for a slot in the bounded transform pool.
    Waiting(Acquire, Option<Message>),
    /// A message is being transformed on the blocking pool.
    Transforming(JoinHandle<Result<Message, Status>>),
    /// Trailers to send once the output queue is empty.
    Trailers(Option<HeaderMap>),
    Done,
}

pin_project! {
    /// The message-transforming body; errors are [`Status`] values (boxed).
    pub struct MessageBody<B> {
        #[pin]
        inner: B,
        transform: Arc<dyn Transform>,
        max_message_bytes: usize,
        slot: ErrorSlot,
        buf: BytesMut,
        out: VecDeque<Bytes>,
        state: State,
        pool: Option<Arc<Semaphore>>,
    }
}

impl<B> MessageBody<B> {
    /// Wraps `inner`; messages longer than `max_message_bytes` end the stream with
    /// RESOURCE_EXHAUSTED, and any failure is also recorded in `slot`.
    pub fn new(
        inner: B,
        transform: Arc<dyn Transform>,
        max_message_bytes: usize,
        slot: ErrorSlot,
    ) -> Self {
        MessageBody {
            inner,
            transform,
            max_message_bytes,
            slot,
            buf: BytesMut::new(),
            out: VecDeque::new(),
            state: State::Reading,
            pool: None,
        }
    }

    /// Runs costly transforms only while holding a permit of `pool`, which bounds how
    /// many messages of all streams are transformed at once (and so the memory their
    /// results take).
    pub fn bounded(mut self, pool: Arc<Semaphore>) -> Self {
        self.pool = Some(pool);
        self
    }
}

impl<B> Body for MessageBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            if let Some(chunk) = this.out.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            match this.state {
                State::Done => return Poll::Ready(None),
                State::Trailers(trailers) => {
                    let trailers = trailers.take();
                    *this.state = State::Done;
                    if let Some(trailers) = trailers {
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                    return Poll::Ready(None);
                }
                State::Waiting(acquire, message) => {
                    // A closed pool only means no bound.
                    let permit = ready!(acquire.as_mut().poll(cx)).ok();
                    let Some(message) = message.take() else {
                        *this.state = State::Reading;
                        continue;
                    };
                    let transform = Arc::clone(this.transform);
                    *this.state = State::Transforming(tokio::task::spawn_blocking(move || {
                        let _permit = permit;
                        transform.transform(message)
                    }));
                }
                State::Transforming(handle) => {
                    let joined = ready!(Pin::new(handle).poll(cx));
                    *this.state = State::Reading;
                    let result = joined.unwrap_or_else(|err| {
                        Err(Status::new(
                            Code::Internal,
                            format!("transform failed: {err}"),
                        ))
                    });
                    if let Err(status) = push_framed(this.out, result) {
                        return Poll::Ready(Some(Err(fail(this.slot, this.state, status))));
                    }
                }
                State::Reading => {
                    match next_message(this.buf, *this.max_message_bytes) {
                        Err(status) => {
                            this.buf.clear();
                            return Poll::Ready(Some(Err(fail(this.slot, this.state, status))));
                        }
                        Ok(Some(message)) => {
                            let transform = Arc::clone(this.transform);
                            if !message.compressed && message.data.len() < INLINE_LIMIT {
                                let result = transform.transform(message);
                                if let Err(status) = push_framed(this.out, result) {
                                    return Poll::Ready(Some(Err(fail(
                                        this.slot, this.state, status,
                                    ))));
                                }
                            } else if let Some(pool) = this.pool {
                                let acquire = Box::pin(Arc::clone(pool).acquire_owned());
                                *this.state = State::Waiting(acquire, Some(message));
                            } else {
                                *this.state =
                                    State::Transforming(tokio::task::spawn_blocking(move || {
                                        transform.transform(message)
                                    }));
                            }
                            continue;
                        }
                        Ok(None) => {}
                    }
                    match ready!(this.inner.as_mut().poll_frame(cx)) {
                        Some(Ok(frame)) => match frame.into_data() {
                            Ok(data) => this.buf.put(data),
                            Err(frame) => {
                                if !this.buf.is_empty() {
                                    let status = cut_mid_message();
                                    return Poll::Ready(Some(Err(fail(
                                        this.slot, this.state, status,
                                    ))));
                                }
                                *this.state = State::Trailers(frame.into_trailers().ok());
                            }
                        },
                        Some(Err(err)) => {
                            *this.state = State::Done;
                            return Poll::Ready(Some(Err(err.into())));
                        }
                        None => {
                            if !this.buf.is_empty() {
                                let status = cut_mid_message();
                                return Poll::Ready(Some(Err(fail(this.slot, this.state, status))));
                            }
                            *this.state = State::Trailers(None);
                        }
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done) && self.out.is_empty()
    }
}

/// Splits the next whole message off `buf`, or `None` when more bytes are needed.
/// The declared length is checked against the limit before anything is buffered for it.
fn next_message(buf: &mut BytesMut, max: usize) -> Result<Option<Message>, Status> {
    if buf.len() < PREFIX_LEN {
        return Ok(None);
    }
    let compressed = match buf[0] {
        0 => false,
        1 => true,
        flag => {
            return Err(Status::new(
                Code::Internal,
                format!("invalid gRPC compressed flag {flag}"),
            ));
        }
    };
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > max {
        return Err(Status::new(
            Code::ResourceExhausted,
            format!("message of {len} bytes exceeds the limit of {max} bytes"),
        ));
    }
    if buf.len() < PREFIX_LEN + len {
        return Ok(None);
    }
    buf.advance(PREFIX_LEN);
    let data = buf.split_to(len).freeze();
    Ok(Some(Message { compressed, data }))
}

/// Queues a transformed message, prefix first.
fn push_framed(out: &mut VecDeque<Bytes>, result: Result<Message, Status>) -> Result<(), Status> {
    let message = result?;
    out.push_back(Bytes::copy_from_slice(&message.prefix()?));
    if !message.data.is_empty() {
        out.push_back(message.data);
    }
    Ok(())
}

fn cut_mid_message() -> Status {
    Status::new(
        Code::Internal,
        "stream ended in the middle of a gRPC message",
    )
}

fn fail(slot: &ErrorSlot, state: &mut State, status: Status) -> BoxError {
    tracing::warn!(code = status.code.label(), message = %status.message, "gRPC stream failed");
    slot.set(status.clone());
    *state = State::Done;
    Box::new(status)
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::{BodyExt, StreamBody};

    use super::*;

    fn framed(messages: &[(bool, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (compressed, data) in messages {
            out.push(u8::from(*compressed));
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            out.extend_from_slice(data);
        }
        out
    }

    /// A body delivering `bytes` in chunks of `chunk` bytes, then optional trailers.
    fn chunked(
        bytes: &[u8],
        chunk: usize,
        trailers: Option<HeaderMap>,
    ) -> impl Body<Data = Bytes, Error = Infallible> + use<> {
        let mut frames: Vec<Result<Frame<Bytes>, Infallible>> = bytes
            .chunks(chunk)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        if let Some(trailers) = trailers {
            frames.push(Ok(Frame::trailers(trailers)));
        }
        StreamBody::new(futures_util::stream::iter(frames))
    }

    fn reverse() -> Arc<dyn Transform> {
        Arc::new(|m: Message| {
            let mut data = m.data.to_vec();
            data.reverse();
            Ok(Message {
                compressed: m.compressed,
                data: Bytes::from(data),
            })
        })
    }

    async fn collect(
        body: MessageBody<impl Body<Data = Bytes, Error = Infallible>>,
    ) -> Result<(Vec<u8>, Option<HeaderMap>), Status> {
        let collected = body.collect().await.map_err(|e| {
            e.downcast::<Status>()
                .map(|s| *s)
                .unwrap_or_else(|e| panic!("not a status: {e}"))
        })?;
        let trailers = collected.trailers().cloned();
        Ok((collected.to_bytes().to_vec(), trailers))
    }

    #[tokio::test]
    async fn messages_are_reassembled_across_any_frame_split() {
        let big: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let input = framed(&[(false, b"abc"), (false, b""), (true, &big), (false, b"xy")]);
        let mut reversed_big = big.clone();
        reversed_big.reverse();
        let expected = framed(&[
            (false, b"cba"),
            (false, b""),
            (true, &reversed_big),
            (false, b"yx"),
        ]);
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        for chunk in [1, 2, 5, 7, 4096, input.len()] {
            let body = MessageBody::new(
                chunked(&input, chunk, Some(trailers.clone())),
                reverse(),
                1 << 20,
                ErrorSlot::default(),
            );
            let (out, got_trailers) = collect(body).await.unwrap();
            assert_eq!(out, expected, "chunk size {chunk}");
            assert_eq!(got_trailers.as_ref(), Some(&trailers));
        }
    }

    #[tokio::test]
    async fn oversize_prefix_fails_before_buffering() {
        // Only the prefix arrives: the limit is enforced from the declared length.
        let mut input = vec![0u8];
        input.extend_from_slice(&(64u32 << 20).to_be_bytes());
        let slot = ErrorSlot::default();
        let body = MessageBody::new(chunked(&input, 5, None), reverse(), 1 << 20, slot.clone());
        let err = collect(body).await.unwrap_err();
        assert_eq!(err.code, Code::ResourceExhausted);
        assert_eq!(slot.get().map(|s| s.code), Some(Code::ResourceExhausted));
    }

    #[tokio::test]
    async fn stream_cut_mid_message_is_an_error() {
        let input = framed(&[(false, b"hello world")]);
        let body = MessageBody::new(
            chunked(&input[..9], 3, None),
            reverse(),
            1024,
            ErrorSlot::default(),
        );
        let err = collect(body).await.unwrap_err();
        assert_eq!(err.code, Code::Internal);
        assert!(err.message.contains("middle of a gRPC message"));
    }

    #[tokio::test]
    async fn invalid_flag_and_transform_errors_end_the_stream() {
        let mut input = framed(&[(false, b"ok")]);
        input[0] = 7;
        let body = MessageBody::new(
            chunked(&input, 64, None),
            reverse(),
            1024,
            ErrorSlot::default(),
        );
        assert_eq!(collect(body).await.unwrap_err().code, Code::Internal);

        let failing: Arc<dyn Transform> =
            Arc::new(|_m: Message| Err(Status::new(Code::DataLoss, "checksum mismatch")));
        let input = framed(&[(true, &[0u8; 10_000])]);
        let body = MessageBody::new(
            chunked(&input, 1000, None),
            failing,
            1 << 20,
            ErrorSlot::default(),
        );
        let err = collect(body).await.unwrap_err();
        assert_eq!(err, Status::new(Code::DataLoss, "checksum mismatch"));
    }

    #[tokio::test]
    async fn a_bounded_pool_serialises_costly_transforms_of_many_streams() {
        let pool = Arc::new(Semaphore::new(1));
        let big = vec![7u8; 64 * 1024];
        let input = framed(&[
            (false, &big),
            (true, b"small but compressed"),
            (false, &big),
        ]);
        let bodies = (0..4).map(|_| {
            let body = MessageBody::new(
                chunked(&input, 1000, None),
                reverse(),
                1 << 20,
                ErrorSlot::default(),
            )
            .bounded(Arc::clone(&pool));
            tokio::spawn(collect(body))
        });
        for body in bodies.collect::<Vec<_>>() {
            let (out, _) = body.await.unwrap().unwrap();
            assert_eq!(out.len(), input.len());
        }
        assert_eq!(pool.available_permits(), 1);
    }

    /// The runtime below has one thread: if a costly transform ran on it, the task that
    /// releases the transform could never run, and the transform would give up.
    #[test]
    fn costly_transforms_run_off_the_async_threads() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (release, released) = std::sync::mpsc::channel::<()>();
            let released = Mutex::new(released);
            let waiting: Arc<dyn Transform> = Arc::new(move |m: Message| {
                let released = released.lock().unwrap_or_else(|e| e.into_inner());
                released
                    .recv_timeout(std::time::Duration::from_secs(30))
                    .map_err(|_| Status::new(Code::Internal, "transform ran on the reactor"))?;
                Ok(m)
            });
            let big = vec![1u8; 64 * 1024];
            let input = framed(&[(false, &big)]);
            let body = MessageBody::new(
                chunked(&input, 4096, None),
                waiting,
                1 << 20,
                ErrorSlot::default(),
            );
            let collecting = tokio::spawn(collect(body));
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                let _ = release.send(());
            });
            let (out, _) = collecting.await.unwrap().unwrap();
            assert_eq!(out, input);
        });
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Any messages, cut into frames at any points, come out whole and in order.
        #[test]
        fn any_framing_of_any_messages_is_reassembled(
            messages in proptest::collection::vec(
                (proptest::bool::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..9000)),
                0..6,
            ),
            cuts in proptest::collection::vec(1usize..5000, 1..20),
        ) {
            let refs: Vec<(bool, &[u8])> = messages.iter().map(|(c, d)| (*c, d.as_slice())).collect();
            let input = framed(&refs);
            let expected = framed(
                &messages
                    .iter()
                    .map(|(c, d)| (*c, d.iter().rev().copied().collect::<Vec<u8>>()))
                    .collect::<Vec<_>>()
                    .iter()
                    .map(|(c, d)| (*c, d.as_slice()))
                    .collect::<Vec<_>>(),
            );
            let mut frames = Vec::new();
            let mut rest = &input[..];
            for cut in cuts.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (head, tail) = rest.split_at((*cut).min(rest.len()));
                frames.push(Ok::<_, Infallible>(Frame::data(Bytes::copy_from_slice(head))));
                rest = tail;
            }
            let body = MessageBody::new(
                StreamBody::new(futures_util::stream::iter(frames)),
                reverse(),
                1 << 20,
                ErrorSlot::default(),
            );
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let (out, trailers) = runtime.block_on(collect(body)).unwrap();
            proptest::prop_assert_eq!(out, expected);
            proptest::prop_assert!(trailers.is_none());
        }
    }
}
