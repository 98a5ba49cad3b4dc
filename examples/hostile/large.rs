//! Many large messages on few connections: 100 calls of 60 MiB on 2 connections to the
//! outbound, either stalled half way through their request, or sent whole with their
//! responses never read (the client grants a 64 KiB window and never releases it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;

use crate::app::{AppStats, BEHAVIOUR, BULK, Bulk};
use crate::case::{Target, until};
use crate::raw::{Connection, MODEL_INFER, head, message_frame};
use crate::tensors::{echo, infer_request, smooth_fp32};

/// Calls in flight at once.
pub const STREAMS: usize = 100;
/// Connections they share.
const CONNECTIONS: usize = 2;
/// The tensor in each request (and in its echo).
pub const MESSAGE_BYTES: usize = 60 << 20;
/// The smallest windows HTTP/2 allows a peer: what a client that never reads grants.
const TINY_WINDOW: u32 = 65_535;
/// How long the unread answers are held once every request has arrived.
const HOLD: Duration = Duration::from_secs(15);

/// The 60 MiB request and its echo as frames, made once for both cases.
pub fn bulk() -> Arc<Bulk> {
    let request = infer_request(smooth_fp32(MESSAGE_BYTES, 7));
    let request_frame = message_frame(&request);
    let response_frame = message_frame(&echo(request));
    Arc::new(Bulk {
        request: request_frame,
        response: response_frame,
    })
}

/// Calls that the attacker keeps open: their response futures and request streams.
type Held = Vec<(h2::client::ResponseFuture, h2::SendStream<Bytes>)>;

/// Opens `STREAMS` calls to the outbound, sending `body` on each (and ending the request
/// if `end`). The connections grant the peer `window` bytes per stream and per
/// connection.
async fn open_calls(
    target: &Target,
    body: &Bytes,
    end: bool,
    window: (u32, u32),
) -> Result<(Vec<Connection>, Held), String> {
    let mut connections = Vec::new();
    let mut held = Vec::new();
    let authority = target.outbound.to_string();
    for _ in 0..CONNECTIONS {
        let connection = Connection::open(target.outbound, window.0, window.1).await?;
        for _ in 0..STREAMS / CONNECTIONS {
            let mut send = connection
                .send
                .clone()
                .ready()
                .await
                .map_err(|e| format!("ready: {e}"))?;
            let (response, mut stream) = send
                .send_request(head(&authority, MODEL_INFER, &[(BEHAVIOUR, BULK)]), false)
                .map_err(|e| format!("send request: {e}"))?;
            // Zero-copy: h2 queues a slice of the shared frame until flow control lets it go.
            stream
                .send_data(body.clone(), end)
                .map_err(|e| format!("send data: {e}"))?;
            held.push((response, stream));
        }
        connections.push(connection);
    }
    Ok((connections, held))
}

/// How many held calls have a response head, and how many the peer reset.
fn answered_and_reset(held: &mut Held) -> (usize, usize) {
    let mut answered = 0;
    let mut reset = 0;
    for (response, stream) in held.iter_mut() {
        if let Some(result) = response.now_or_never() {
            match result {
                Ok(_) => answered += 1,
                Err(_) => reset += 1,
            }
        } else if std::future::poll_fn(|cx| std::task::Poll::Ready(stream.poll_reset(cx)))
            .now_or_never()
            .is_some_and(|poll| poll.is_ready())
        {
            reset += 1;
        }
    }
    (answered, reset)
}

fn mib(bytes: u64) -> u64 {
    bytes >> 20
}

/// Each call sends the first half of its request, then nothing, until the end.
pub async fn stalled(target: Target, bulk: Arc<Bulk>) -> Vec<String> {
    let start = Instant::now();
    let half = bulk.request.slice(..bulk.request.len() / 2);
    let (connections, mut held) = match open_calls(&target, &half, false, (4 << 20, 16 << 20)).await
    {
        Ok(opened) => opened,
        Err(e) => return vec![format!("the attack could not open its calls: {e}")],
    };
    until(start, target.duration).await;
    let delivered = AppStats::get(&target.app.bulk_bytes);
    let (answered, reset) = answered_and_reset(&mut held);
    drop(held);
    drop(connections);
    vec![format!(
        "{STREAMS} calls on {CONNECTIONS} connections each sent {} MiB of a {} MiB request \
         and stalled: the app received {} of {} MiB; {answered} answered, {reset} reset \
         by the sidecar before the attacker gave up",
        mib(half.len() as u64),
        mib(bulk.request.len() as u64),
        mib(delivered),
        mib(half.len() as u64 * STREAMS as u64),
    )]
}

/// Each call sends its whole request; the attacker never reads a response byte beyond
/// the 64 KiB windows it granted. Once the app has every request (or the attack's time
/// is up), the unread answers are held for [`HOLD`] more.
pub async fn never_read(target: Target, bulk: Arc<Bulk>) -> Vec<String> {
    let start = Instant::now();
    let (connections, mut held) =
        match open_calls(&target, &bulk.request, true, (TINY_WINDOW, TINY_WINDOW)).await {
            Ok(opened) => opened,
            Err(e) => return vec![format!("the attack could not open its calls: {e}")],
        };
    let stats = &target.app;
    let all_arrived = loop {
        let arrived = AppStats::get(&stats.bulk_matched) + AppStats::get(&stats.bulk_differed);
        if arrived >= STREAMS as u64 {
            break Some(start.elapsed());
        }
        if start.elapsed() >= target.duration {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(HOLD).await;
    let delivered = AppStats::get(&stats.bulk_bytes);
    let (answered, reset) = answered_and_reset(&mut held);
    drop(held);
    drop(connections);
    vec![format!(
        "{STREAMS} calls of {} MiB sent whole on {CONNECTIONS} connections, responses never \
         read: the app received {} MiB, {} requests whole and equal ({} differed) and \
         answered them ({}); the unread answers were held {} s more; {answered} response \
         heads reached the attacker, {reset} calls reset",
        mib(bulk.request.len() as u64),
        mib(delivered),
        AppStats::get(&stats.bulk_matched),
        AppStats::get(&stats.bulk_differed),
        all_arrived.map_or("not all within the attack's time".into(), |at| format!(
            "the last request arrived {:.1} s into the attack",
            at.as_secs_f64()
        )),
        HOLD.as_secs(),
    )]
}
