//! Time limits the layer enforces on gRPC calls, with real servers and clients: the
//! client's deadline (`grpc-timeout`) through the real proxy, against a raw HTTP/2 app
//! that hangs and reports how its stream ended, and through two sidecars with tonic; the
//! stream idle timeout through a tonic server with the layer in front of its app.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bloscar::BloscarLayer;
use bloscar::grpc::Code;
use bloscar::layer::Role;
use bytes::Bytes;
use common::server::{EchoService, MODEL_STREAM_INFER, PLAIN_ECHO};
use common::*;
use futures_util::StreamExt;
use http::uri::PathAndQuery;
use prost::Message;
use tonic::metadata::MetadataValue;

/// One small message, framed.
fn one_message() -> Vec<u8> {
    framed(false, b"\x0a\x01x")
}

/// The next thing the stalling app saw must be a call; returns its headers.
async fn call_seen(app: &mut StallingServer) -> http::HeaderMap {
    match app.next().await {
        Seen::Call(headers) => headers,
        other => panic!("expected a call, saw {other:?}"),
    }
}

/// The next thing the stalling app saw must be its stream's reset; returns the reason.
async fn reset_seen(app: &mut StallingServer) -> h2::Reason {
    match app.next().await {
        Seen::Reset(reason) => reason,
        other => panic!("expected a reset, saw {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_app_gets_deadline_exceeded_and_its_stream_reset() {
    let mut app = start_stalling_server(None).await;
    let inbound = Proxy::start(Role::Inbound, app.addr).await;
    let (response, _send) = raw_h2_open(
        inbound.addr,
        PLAIN_ECHO,
        &[("grpc-timeout", "200m")],
        &one_message(),
        true,
    )
    .await;
    let outcome = raw_h2_finish(response).await;
    let status = outcome.ended.expect("a status, not a reset");
    assert_eq!(status.code, Code::DeadlineExceeded, "{status}");
    assert!(outcome.trailers_only);
    // The app got the header as the client sent it, and then a reset of its stream.
    assert_eq!(call_seen(&mut app).await["grpc-timeout"], "200m");
    assert_eq!(reset_seen(&mut app).await, h2::Reason::CANCEL);
    assert_eq!(
        inbound.metric("bloscar_calls_total{status=\"deadline_exceeded\"}"),
        1.0
    );
    wait_until(|| inbound.metric("bloscar_streams_in_flight") == 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_two_sidecars_a_hung_tonic_server_is_cancelled() {
    // A raw client: tonic's own client enforces grpc-timeout itself, first.
    let pair = Pair::start().await;
    let (response, _send) = raw_h2_open(
        pair.outbound.addr,
        PLAIN_ECHO,
        &[("grpc-timeout", "200m"), ("x-sleep-ms", "60000")],
        &one_message(),
        true,
    )
    .await;
    let outcome = raw_h2_finish(response).await;
    assert_eq!(
        outcome.ended.expect("a status").code,
        Code::DeadlineExceeded
    );
    assert!(outcome.trailers_only);
    assert_eq!(pair.server.recorder.last_headers()["grpc-timeout"], "200m");
    wait_until(|| pair.server.recorder.cancelled.load(Ordering::SeqCst) == 1).await;
    wait_until(|| pair.inbound.metric("bloscar_streams_in_flight") == 0.0).await;
    wait_until(|| pair.outbound.metric("bloscar_streams_in_flight") == 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_app_is_reset_while_the_client_is_still_sending() {
    let mut app = start_stalling_server(None).await;
    let inbound = Proxy::start(Role::Inbound, app.addr).await;
    // The request stays open: the proxy is still sending it upstream when time is up.
    let (response, _send) = raw_h2_open(
        inbound.addr,
        PLAIN_ECHO,
        &[("grpc-timeout", "200m")],
        &one_message(),
        false,
    )
    .await;
    let outcome = raw_h2_finish(response).await;
    assert_eq!(
        outcome.ended.expect("a status").code,
        Code::DeadlineExceeded
    );
    call_seen(&mut app).await;
    assert_eq!(reset_seen(&mut app).await, h2::Reason::CANCEL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_whole_messages_the_deadline_comes_as_trailers() {
    let message = one_message();
    let mut app = start_stalling_server(Some(message.clone())).await;
    let inbound = Proxy::start(Role::Inbound, app.addr).await;
    let (response, _send) = raw_h2_open(
        inbound.addr,
        PLAIN_ECHO,
        &[("grpc-timeout", "300m")],
        &one_message(),
        true,
    )
    .await;
    let outcome = raw_h2_finish(response).await;
    assert!(!outcome.trailers_only);
    assert_eq!(outcome.data, message);
    assert_eq!(
        outcome.ended.expect("trailers, not a reset").code,
        Code::DeadlineExceeded
    );
    call_seen(&mut app).await;
    assert_eq!(reset_seen(&mut app).await, h2::Reason::CANCEL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_call_past_its_deadline_resets_the_app_while_the_client_still_sends() {
    // The app has answered with headers and a message; the client's request is still
    // open, so the proxy still holds the upstream stream to send on: it must reset it.
    let message = one_message();
    let mut app = start_stalling_server(Some(message.clone())).await;
    let inbound = Proxy::start(Role::Inbound, app.addr).await;
    let (response, _send) = raw_h2_open(
        inbound.addr,
        PLAIN_ECHO,
        &[("grpc-timeout", "300m")],
        &one_message(),
        false,
    )
    .await;
    let outcome = raw_h2_finish(response).await;
    assert_eq!(outcome.data, message);
    assert_eq!(
        outcome.ended.expect("trailers, not a reset").code,
        Code::DeadlineExceeded
    );
    call_seen(&mut app).await;
    assert_eq!(reset_seen(&mut app).await, h2::Reason::CANCEL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_middle_of_a_message_the_deadline_resets_the_stream() {
    // The app sends 8 of a 10-byte message's 15 framed bytes, then hangs.
    let cut = framed(false, b"0123456789")[..8].to_vec();
    let mut app = start_stalling_server(Some(cut.clone())).await;
    let inbound = Proxy::start(Role::Inbound, app.addr).await;
    let (response, _send) = raw_h2_open(
        inbound.addr,
        PLAIN_ECHO,
        &[("grpc-timeout", "300m")],
        &one_message(),
        true,
    )
    .await;
    let outcome = raw_h2_finish(response).await;
    // Trailers would follow a cut message: the client's stream is reset instead.
    assert_eq!(outcome.data, cut);
    assert_eq!(outcome.ended.unwrap_err(), h2::Reason::CANCEL);
    call_seen(&mut app).await;
    assert_eq!(reset_seen(&mut app).await, h2::Reason::CANCEL);
    // The call still counts as ended by its deadline.
    wait_until(|| inbound.metric("bloscar_calls_total{status=\"deadline_exceeded\"}") == 1.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_grpc_timeout_is_passed_on_and_not_enforced() {
    let pair = Pair::start().await;
    let mut request = tonic::Request::new(Bytes::from_static(b"\x0a\x01x"));
    let metadata = request.metadata_mut();
    metadata.insert("grpc-timeout", MetadataValue::from_static("1 m"));
    metadata.insert("x-sleep-ms", MetadataValue::from_static("300"));
    let response = raw_unary_request(pair.channel().await, PLAIN_ECHO, request).await;
    // tonic's server ignores it too: the call completes after the server's pause.
    assert_eq!(
        response.unwrap().into_inner(),
        Bytes::from_static(b"\x0a\x01x")
    );
    assert_eq!(pair.server.recorder.last_headers()["grpc-timeout"], "1 m");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_finish_in_time_are_untouched() {
    let pair = Pair::start().await;
    // No deadline: a server that takes a moment answers.
    let mut request = tonic::Request::new(Bytes::from_static(b"\x0a\x01x"));
    request
        .metadata_mut()
        .insert("x-sleep-ms", MetadataValue::from_static("300"));
    let response = raw_unary_request(pair.channel().await, PLAIN_ECHO, request).await;
    assert_eq!(
        response.unwrap().into_inner(),
        Bytes::from_static(b"\x0a\x01x")
    );
    // A deadline well beyond the server's pause.
    let mut request = tonic::Request::new(Bytes::from_static(b"\x0a\x01y"));
    request.set_timeout(Duration::from_secs(30));
    request
        .metadata_mut()
        .insert("x-sleep-ms", MetadataValue::from_static("100"));
    let response = raw_unary_request(pair.channel().await, PLAIN_ECHO, request).await;
    assert_eq!(
        response.unwrap().into_inner(),
        Bytes::from_static(b"\x0a\x01y")
    );
    assert_eq!(
        pair.outbound
            .metric("bloscar_calls_total{status=\"deadline_exceeded\"}"),
        0.0
    );
}

/// A server-streaming request for the test server with these `x-*` settings.
fn server_stream_request(settings: &[(&'static str, &'static str)]) -> tonic::Request<Bytes> {
    let message = Bytes::from(kserve_request(smooth_f32(256)).encode_to_vec());
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("x-mode", MetadataValue::from_static("server"));
    for (key, value) in settings {
        request
            .metadata_mut()
            .insert(*key, MetadataValue::from_static(value));
    }
    request
}

/// Runs a server-streaming call and returns how many responses arrived and how the
/// stream ended.
async fn server_stream(
    channel: tonic::transport::Channel,
    request: tonic::Request<Bytes>,
) -> (usize, Result<(), tonic::Status>) {
    let mut client = raw_client(channel);
    client.ready().await.unwrap();
    let mut stream = client
        .server_streaming(
            request,
            PathAndQuery::from_static(MODEL_STREAM_INFER),
            RawCodec,
        )
        .await
        .unwrap()
        .into_inner();
    let mut received = 0;
    while let Some(item) = stream.next().await {
        match item {
            Ok(_) => received += 1,
            Err(status) => return (received, Err(status)),
        }
    }
    (received, Ok(()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_stalled_past_its_deadline_ends_after_its_last_message() {
    let pair = Pair::start().await;
    let mut request = server_stream_request(&[("x-count", "5"), ("x-stall-after", "2")]);
    request.set_timeout(Duration::from_millis(500));
    let (received, ended) = server_stream(pair.channel().await, request).await;
    assert_eq!(received, 2);
    assert_eq!(ended.unwrap_err().code(), tonic::Code::DeadlineExceeded);
    // The server's stream was dropped: its call was reset through both sidecars.
    wait_until(|| pair.server.recorder.cancelled.load(Ordering::SeqCst) == 1).await;
    wait_until(|| pair.inbound.metric("bloscar_streams_in_flight") == 0.0).await;
}

/// A tonic server whose app sits behind an inbound layer with this idle limit.
async fn server_with_idle_limit(idle: Duration) -> TestServer {
    let layer = BloscarLayer::server(codec()).stream_idle_timeout(Some(idle));
    start_server_with(
        tonic::transport::Server::builder().layer(layer),
        EchoService::default(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_keeps_sending_is_not_cut_by_the_idle_limit() {
    let server = server_with_idle_limit(Duration::from_secs(1)).await;
    // Eight responses 200 ms apart: longer than the limit in all, never idle that long.
    let request = server_stream_request(&[("x-count", "8"), ("x-interval-ms", "200")]);
    let (received, ended) = server_stream(channel(server.addr).await, request).await;
    assert_eq!(received, 8);
    ended.unwrap();
    assert_eq!(server.recorder.completed.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_is_cut_by_the_idle_limit() {
    let server = server_with_idle_limit(Duration::from_millis(500)).await;
    let request = server_stream_request(&[("x-count", "5"), ("x-stall-after", "2")]);
    let (received, ended) = server_stream(channel(server.addr).await, request).await;
    assert_eq!(received, 2);
    let status = ended.unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    assert!(status.message().contains("no progress"), "{status:?}");
    wait_until(|| server.recorder.cancelled.load(Ordering::SeqCst) == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_thinking_past_the_idle_limit_is_cut_and_one_within_it_answers() {
    let server = server_with_idle_limit(Duration::from_secs(1)).await;
    let call = |sleep_ms: &'static str| {
        let mut request = tonic::Request::new(Bytes::from_static(b"\x0a\x01x"));
        request
            .metadata_mut()
            .insert("x-sleep-ms", MetadataValue::from_static(sleep_ms));
        let addr = server.addr;
        async move { raw_unary_request(channel(addr).await, PLAIN_ECHO, request).await }
    };
    assert_eq!(
        call("200").await.unwrap().into_inner(),
        Bytes::from_static(b"\x0a\x01x")
    );
    let status = call("60000").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    wait_until(|| server.recorder.cancelled.load(Ordering::SeqCst) == 1).await;
}
