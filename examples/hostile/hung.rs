//! Hung and slow upstreams, through the pair: calls that the app never answers or
//! answers after 5 s (the app misbehaves only for calls carrying `x-hostile`), with and
//! without `grpc-timeout: 500m`. The calls without a deadline that the app never answers
//! are held open, 200 of them, for the whole attack.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;

use crate::app::{BEHAVIOUR, HANG, SLOW};
use crate::case::{Target, until};
use crate::raw::{Connection, MODEL_INFER, call, head, message_frame, status_name};
use crate::tensors::{infer_request, smooth_fp32};

/// Calls the app never answers, without a deadline, held open.
const HELD: usize = 200;
/// Calls the app answers after 5 s, without a deadline, kept going in a loop.
const SLOW_AT_ONCE: usize = 50;
/// Calls with `grpc-timeout: 500m` to each of `hang` and `slow`, kept going in a loop.
const TIMED_AT_ONCE: usize = 10;
const DEADLINE: &str = "500m";
/// When the attacker gives up on a call that should have ended (see [`timed_call`]).
const GIVE_UP_AFTER: Duration = Duration::from_secs(10);

/// What every call of the attack shares: a connection to the outbound and the request.
#[derive(Clone)]
struct Caller {
    send: SendRequest<Bytes>,
    authority: String,
    body: Bytes,
}

/// One call over raw HTTP/2 (a gRPC library would enforce the deadline itself; here
/// only the sidecars do): its status's name and how long it took. A call that may be
/// held (no deadline, `hang`) waits as long as it takes; any other is given up after
/// [`GIVE_UP_AFTER`], when it waits for something that should have come long before.
async fn timed_call(
    caller: &Caller,
    behaviour: &'static str,
    deadline: bool,
) -> (String, Duration) {
    let start = Instant::now();
    let mut headers = vec![(BEHAVIOUR, behaviour)];
    if deadline {
        headers.push(("grpc-timeout", DEADLINE));
    }
    let answer = call(
        &caller.send,
        head(&caller.authority, MODEL_INFER, &headers),
        caller.body.clone(),
    );
    let bound = if behaviour == HANG && !deadline {
        Duration::MAX
    } else {
        GIVE_UP_AFTER
    };
    let status = match tokio::time::timeout(bound, answer).await {
        Ok(Ok(answer)) => match (answer.status, answer.message) {
            (Some(0 | 4), _) | (_, None) => status_name(answer.status).to_string(),
            (_, Some(message)) => format!("{} ({message})", status_name(answer.status)),
        },
        Ok(Err(e)) => format!("failed ({e})"),
        Err(_) => format!("no answer within {} s", GIVE_UP_AFTER.as_secs()),
    };
    (status, start.elapsed())
}

type Tally = BTreeMap<String, Vec<Duration>>;

fn describe(tally: &Tally) -> String {
    if tally.is_empty() {
        return "none ended".into();
    }
    tally
        .iter()
        .map(|(status, times)| {
            let mut times = times.clone();
            times.sort();
            format!(
                "{status} ×{} (median {:.2} s)",
                times.len(),
                times[times.len() / 2].as_secs_f64()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs the hung, slow and timed calls for the attack's time.
pub async fn run(target: Target) -> Vec<String> {
    let start = Instant::now();
    let open = || Connection::open(target.outbound, 4 << 20, 16 << 20);
    let (held_connection, loop_connection) = match (open().await, open().await) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return vec![format!("could not connect: {e}")],
    };
    let caller = |connection: &Connection| Caller {
        send: connection.send.clone(),
        authority: target.outbound.to_string(),
        body: message_frame(&infer_request(smooth_fp32(1 << 10, 5))),
    };
    let (held_caller, loop_caller) = (caller(&held_connection), caller(&loop_connection));
    let mut held = tokio::task::JoinSet::new();
    for _ in 0..HELD {
        let caller = held_caller.clone();
        held.spawn(async move { timed_call(&caller, HANG, false).await });
    }
    let stop_at = tokio::time::Instant::from_std(start + target.duration);
    let mut loops = tokio::task::JoinSet::new();
    let kinds: [(&'static str, &'static str, bool, usize); 3] = [
        ("slow, no deadline", SLOW, false, SLOW_AT_ONCE),
        ("hang, grpc-timeout 500m", HANG, true, TIMED_AT_ONCE),
        ("slow, grpc-timeout 500m", SLOW, true, TIMED_AT_ONCE),
    ];
    for (label, behaviour, deadline, at_once) in kinds {
        for _ in 0..at_once {
            let caller = loop_caller.clone();
            loops.spawn(async move {
                let mut tally = Tally::new();
                while tokio::time::Instant::now() < stop_at {
                    let (status, took) = timed_call(&caller, behaviour, deadline).await;
                    tally.entry(status).or_default().push(took);
                }
                (label, tally)
            });
        }
    }
    until(start, target.duration).await;
    let waiting_at_end = target.app.hung_now.load(Ordering::Relaxed);
    let mut held_ended = Tally::new();
    while let Some(Ok((status, took))) = held.try_join_next() {
        held_ended.entry(status).or_default().push(took);
    }
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    while let Some(joined) = loops.join_next().await {
        if let Ok((label, tally)) = joined {
            let into = tallies.entry(label).or_default();
            for (status, times) in tally {
                into.entry(status).or_default().extend(times);
            }
        }
    }
    held.abort_all();
    drop((held_caller, loop_caller, held_connection, loop_connection));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let waiting_after = target.app.hung_now.load(Ordering::Relaxed);
    let mut observations = vec![format!(
        "{HELD} calls the app never answers, no deadline: {} of them still open at the end \
         (ended early: {})",
        HELD - held_ended.values().map(Vec::len).sum::<usize>(),
        describe(&held_ended)
    )];
    for (label, tally) in &tallies {
        observations.push(format!("{label}: {}", describe(tally)));
    }
    observations.push(format!(
        "app handlers waiting on `hang` calls: {waiting_at_end} at the end, {waiting_after} \
         1 s after the attacker dropped its calls"
    ));
    observations
}
