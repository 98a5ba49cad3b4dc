//! The ordered output of a transforming body: bytes ready to send and CPU-bound jobs
//! still running on the blocking pool, framed as gRPC messages and released in order.
//!
//! Jobs start as soon as they are queued, so while the HTTP/2 connection sends one
//! chunk, the next ones are being compressed or decompressed: the stages overlap. A
//! process-wide semaphore bounds the jobs running at once across all streams, so a burst
//! of streams queues for the cores instead of oversubscribing them.
//!
//! Every queued piece carries the [`Charge`] of the memory budget for the bytes it holds:
//! a job's charge covers its input and output while it runs and then only its output,
//! and a piece's charge travels with its bytes when it is handed on (given back once the
//! connection has written and dropped them), or is dropped with the queue when the
//! stream ends.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::budget::Charge;
use crate::grpc::frame::prefix;
use crate::grpc::{Code, Status};
use crate::stream_encoder::{MessageSummary, Out};

/// Jobs in flight per stream: enough to keep both stages busy (one compressing while
/// one is on the link), few enough that memory stays a few chunks per stream. Beyond
/// this the body stops reading its input, so flow control holds the sender back.
pub const MAX_JOBS_AHEAD: usize = 3;

/// Most bytes handed on at once: the sidecar's largest HTTP/2 frame. The connection
/// takes a whole piece as soon as its window has room for one byte of it and holds the
/// rest until the window opens; smaller pieces leave more of a chunk here, where the
/// stream can still decide about it (a restored chunk is four times this).
pub const MAX_HANDOFF: usize = 256 << 10;

/// Bytes handed on with their charge: HTTP/2 keeps what it has taken in its send
/// buffer (up to the sidecar's send buffer per stream) until the peer's window opens, so
/// the charge stays with the bytes until the connection has written them and dropped
/// the last reference, and a peer that does not read holds the budget, not memory
/// beyond it.
struct Charged {
    bytes: Bytes,
    _charge: Charge,
}

impl AsRef<[u8]> for Charged {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// `bytes` that give `charge` back once the last reference to them is dropped.
fn charged(bytes: Bytes, charge: Charge) -> Bytes {
    if charge.bytes() == 0 {
        return bytes;
    }
    Bytes::from_owner(Charged {
        bytes,
        _charge: charge,
    })
}

/// What a transforming body does next.
#[derive(Debug)]
pub enum Output {
    /// Send these bytes.
    Data(Bytes),
    /// A message was fully sent.
    Sent(SentMessage),
    /// A job failed: the stream ends with this status.
    Failed(Status),
    /// Read more of the input: there is room for more work.
    NeedInput,
    /// Everything was sent; the input's trailers, if any, go last.
    Finished(Option<HeaderMap>),
    /// The stream is over.
    Done,
}

/// Where the body is with its input.
enum Input {
    Open,
    /// Ended; trailers (if any) go out once everything queued has been sent.
    Ended(Option<HeaderMap>),
    Done,
}

/// What the ordered queue releases next.
enum Pending {
    Bytes(Bytes),
    End(SentMessage),
    Failed(Status),
}

/// A message the pipeline has fully released.
#[derive(Debug, Clone, Copy)]
pub struct SentMessage {
    /// Its plain length.
    pub len: usize,
    /// Bytes it took on the wire, gRPC prefixes included.
    pub wire_len: usize,
    /// Whether it went encoded (a container) rather than as it was.
    pub encoded: bool,
    /// When its first byte arrived.
    pub started: Instant,
    /// The setting of its first compressed tensor, if any.
    pub options: Option<crate::CompressOptions>,
    /// Time its jobs spent compressing or decompressing on the blocking pool (not
    /// waiting for a slot), added up.
    pub job_time: Duration,
}

/// A spawned task that is aborted when dropped: a stream that ends stops its queued
/// jobs from starting.
struct Task<T>(JoinHandle<T>);

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for Task<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

/// A job's result, the charge of its input and output, and how long it ran.
type Job = Task<Result<(Result<Bytes, Status>, Charge, Duration), Status>>;
/// Output still to come, and what it costs the budget until all of it has been sent.
pub type Expansion = Result<(Vec<Out>, Charge), Status>;

enum Slot {
    Ready(Bytes, Charge),
    /// A job's result, preceded by a gRPC prefix with this flag when `Some`.
    Job(Job, Option<bool>),
    /// A task whose result is more output (a message gathered whole, then encoded).
    Expand(Task<Expansion>),
    /// Gives back a charge once everything queued before it has been sent.
    Release(Charge),
    End(MessageSummary),
}

/// Ordered output with jobs in flight; see the module docs.
pub struct Pipeline {
    queue: VecDeque<Slot>,
    jobs: Arc<Semaphore>,
    jobs_ahead: usize,
    /// Something was queued since [`Pipeline::poll_output`] last ran.
    queued: bool,
    wire_len: usize,
    /// Time the jobs released since the last message's end ran.
    job_time: Duration,
    input: Input,
}

impl Pipeline {
    /// An empty pipeline whose jobs take permits of `jobs`.
    pub fn new(jobs: Arc<Semaphore>) -> Self {
        Pipeline {
            queue: VecDeque::new(),
            jobs,
            jobs_ahead: 0,
            queued: false,
            wire_len: 0,
            job_time: Duration::ZERO,
            input: Input::Open,
        }
    }

    /// The input ended (with these trailers): they go out after everything queued.
    pub fn end_input(&mut self, trailers: Option<HeaderMap>) {
        self.input = Input::Ended(trailers);
    }

    /// The stream failed: nothing more is read or sent.
    pub fn stop(&mut self) {
        self.input = Input::Done;
        self.queue.clear();
    }

    /// What to do next: send what is ready, in order; read more input while there is
    /// room; finish once the input has ended and everything was sent.
    pub fn poll_output(&mut self, cx: &mut Context<'_>) -> Poll<Output> {
        self.queued = false;
        match self.poll_next(cx) {
            Poll::Ready(Some(Pending::Bytes(bytes))) => return Poll::Ready(Output::Data(bytes)),
            Poll::Ready(Some(Pending::End(sent))) => return Poll::Ready(Output::Sent(sent)),
            Poll::Ready(Some(Pending::Failed(status))) => {
                return Poll::Ready(Output::Failed(status));
            }
            Poll::Ready(None) | Poll::Pending => {}
        }
        // A job not yet done has registered the waker.
        let empty = self.queue.is_empty();
        match &mut self.input {
            Input::Done if empty => Poll::Ready(Output::Done),
            Input::Ended(trailers) if empty => {
                let trailers = trailers.take();
                self.input = Input::Done;
                Poll::Ready(Output::Finished(trailers))
            }
            Input::Open if self.jobs_ahead < MAX_JOBS_AHEAD => Poll::Ready(Output::NeedInput),
            _ => Poll::Pending,
        }
    }

    /// Queues output whose budget is held elsewhere (by a [`Slot::Release`] after it).
    pub fn push_all(&mut self, outs: impl IntoIterator<Item = Out>) -> Result<(), Status> {
        for out in outs {
            self.push(out, Charge::none())?;
        }
        Ok(())
    }

    /// Queues one piece of the encoder's output, framed for gRPC, with the charge of the
    /// bytes it holds (see [`Out::held_len`]).
    pub fn push(&mut self, out: Out, charge: Charge) -> Result<(), Status> {
        match out {
            Out::IdentityStart(len) => {
                self.push_bytes(Bytes::copy_from_slice(&prefix(false, len)?))
            }
            Out::Raw(bytes) => self.push_charged(bytes, charge),
            Out::Record(parts) => {
                let len = parts.iter().map(Bytes::len).sum();
                self.push_bytes(Bytes::copy_from_slice(&prefix(true, len)?));
                let last = parts.len().saturating_sub(1);
                let mut charge = Some(charge);
                for (i, part) in parts.into_iter().enumerate() {
                    if i == last {
                        self.push_charged(part, charge.take().unwrap_or_default());
                    } else {
                        self.push_bytes(part);
                    }
                }
            }
            Out::Compress(job) => self.push_job(move || Ok(job.run()), Some(true), charge),
            Out::End(summary) => self.enqueue(Slot::End(summary)),
        }
        Ok(())
    }

    /// Queues bytes to send as they are (framing, which the budget does not count).
    pub fn push_bytes(&mut self, bytes: Bytes) {
        self.push_charged(bytes, Charge::none());
    }

    /// Queues bytes to send as they are, with the charge released once they are sent.
    pub fn push_charged(&mut self, bytes: Bytes, charge: Charge) {
        if !bytes.is_empty() {
            self.enqueue(Slot::Ready(bytes, charge));
        }
    }

    /// Starts `job` on the blocking pool; its result is sent in order, after a gRPC
    /// prefix with the flag `prefix_flag` when given. `charge` covers the job's input and
    /// output: it stays with the job while it runs, then the part its output needs goes
    /// with the output.
    pub fn push_job<F>(&mut self, job: F, prefix_flag: Option<bool>, charge: Charge)
    where
        F: FnOnce() -> Result<Bytes, Status> + Send + 'static,
    {
        let jobs = Arc::clone(&self.jobs);
        // The charge travels into the blocking closure, so that a job still running
        // after its stream ended keeps its bytes counted until it finishes.
        let handle = Task(tokio::spawn(async move {
            run_blocking(&jobs, move || {
                let began = Instant::now();
                let result = job();
                (result, charge, began.elapsed())
            })
            .await
        }));
        self.jobs_ahead += 1;
        self.enqueue(Slot::Job(handle, prefix_flag));
    }

    /// Runs `task` (which may wait for the budget, then run jobs with
    /// [`run_blocking`]); its output takes its place in the queue, and its charge is
    /// released once all of that output has been sent.
    pub fn push_expand<T>(&mut self, task: T)
    where
        T: Future<Output = Expansion> + Send + 'static,
    {
        self.jobs_ahead += 1;
        self.enqueue(Slot::Expand(Task(tokio::spawn(task))));
    }

    /// Whether anything was queued since output was last asked for: a body that is
    /// about to wait (for the budget) must first offer it, since it may be what frees the
    /// budget, and nothing else would wake the body's reader for it.
    pub fn has_new_output(&self) -> bool {
        self.queued
    }

    fn enqueue(&mut self, slot: Slot) {
        self.queued = true;
        self.queue.push_back(slot);
    }

    /// The semaphore of the Blosc job slots, for tasks given to [`Pipeline::push_expand`].
    pub fn jobs(&self) -> Arc<Semaphore> {
        Arc::clone(&self.jobs)
    }

    /// The next output in order, once it is ready; `None` when the queue is empty.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Pending>> {
        loop {
            let Some(front) = self.queue.front_mut() else {
                return Poll::Ready(None);
            };
            match front {
                Slot::Ready(bytes, charge) if bytes.len() > MAX_HANDOFF => {
                    // HTTP/2 takes a whole piece once its window has room for one byte:
                    // pieces no longer than a frame keep the rest here.
                    let piece = bytes.split_to(MAX_HANDOFF);
                    let piece = charged(piece, charge.split(MAX_HANDOFF));
                    self.wire_len += piece.len();
                    return Poll::Ready(Some(Pending::Bytes(piece)));
                }
                Slot::Ready(..) => {
                    let Some(Slot::Ready(bytes, charge)) = self.queue.pop_front() else {
                        unreachable!("the front slot was ready");
                    };
                    let bytes = charged(bytes, charge);
                    self.wire_len += bytes.len();
                    return Poll::Ready(Some(Pending::Bytes(bytes)));
                }
                Slot::Release(_) => {
                    if let Some(Slot::Release(charge)) = self.queue.pop_front() {
                        drop(charge);
                    }
                }
                Slot::End(summary) => {
                    let sent = SentMessage {
                        len: summary.len,
                        wire_len: std::mem::take(&mut self.wire_len),
                        encoded: summary.encoded,
                        started: summary.started,
                        options: summary.options,
                        job_time: std::mem::take(&mut self.job_time),
                    };
                    self.queue.pop_front();
                    return Poll::Ready(Some(Pending::End(sent)));
                }
                Slot::Job(handle, prefix_flag) => {
                    let joined = match Pin::new(handle).poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(joined) => flatten(joined),
                    };
                    let flag = *prefix_flag;
                    self.queue.pop_front();
                    self.jobs_ahead -= 1;
                    let (bytes, mut charge) = match joined {
                        Ok((Ok(bytes), charge, ran)) => {
                            self.job_time += ran;
                            (bytes, charge)
                        }
                        Ok((Err(status), ..)) | Err(status) => {
                            return Poll::Ready(Some(Pending::Failed(status)));
                        }
                    };
                    // The input is gone; what the output holds stays counted.
                    let kept = charge.split(bytes.len());
                    drop(charge);
                    let len = bytes.len();
                    self.queue.push_front(Slot::Ready(bytes, kept));
                    if let Some(flag) = flag {
                        match prefix(flag, len) {
                            Ok(p) => self.queue.push_front(Slot::Ready(
                                Bytes::copy_from_slice(&p),
                                Charge::none(),
                            )),
                            Err(status) => return Poll::Ready(Some(Pending::Failed(status))),
                        }
                    }
                }
                Slot::Expand(handle) => {
                    let result = match Pin::new(handle).poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(joined) => flatten(joined),
                    };
                    self.queue.pop_front();
                    self.jobs_ahead -= 1;
                    let (outs, charge) = match result {
                        Ok(expanded) => expanded,
                        Err(status) => return Poll::Ready(Some(Pending::Failed(status))),
                    };
                    // The expansion's output goes before everything queued after it.
                    let rest = std::mem::take(&mut self.queue);
                    let pushed = self.push_all(outs);
                    self.queue.push_back(Slot::Release(charge));
                    self.queue.extend(rest);
                    if let Err(status) = pushed {
                        return Poll::Ready(Some(Pending::Failed(status)));
                    }
                }
            }
        }
    }
}

/// Runs `job` on the blocking pool once one of the `jobs` slots is free.
pub async fn run_blocking<T, F>(jobs: &Semaphore, job: F) -> Result<T, Status>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    // A closed semaphore only means no bound.
    let _permit = jobs.acquire().await.ok();
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|err| Status::new(Code::Internal, format!("transform failed: {err}")))
}

fn flatten<T>(joined: Result<Result<T, Status>, tokio::task::JoinError>) -> Result<T, Status> {
    joined.unwrap_or_else(|err| {
        Err(Status::new(
            Code::Internal,
            format!("transform failed: {err}"),
        ))
    })
}
