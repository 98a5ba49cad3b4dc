//! Graceful shutdown of a listener: it stops accepting, and a stream in flight finishes.

mod common;

use bloscar::layer::Role;
use bytes::Bytes;
use common::server::MODEL_STREAM_INFER;
use common::*;
use futures_util::StreamExt;
use prost::Message;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_refuses_new_connections_and_lets_streams_finish() {
    let server = start_server().await;
    let inbound = Proxy::start(Role::Inbound, server.addr).await;
    let outbound = Proxy::start(Role::Outbound, inbound.addr).await;
    let outbound_addr = outbound.addr;

    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let outgoing =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let mut client = raw_client(channel(outbound_addr).await);
    client.ready().await.unwrap();
    let call = client.streaming(
        tonic::Request::new(outgoing),
        http::uri::PathAndQuery::from_static(MODEL_STREAM_INFER),
        RawCodec,
    );
    let message = Bytes::from(kserve_request(smooth_f32(64 * 1024)).encode_to_vec());
    tx.send(message.clone()).await.unwrap();
    let mut responses = call.await.unwrap().into_inner();
    responses.next().await.unwrap().unwrap();

    let stopping = tokio::spawn(outbound.stop());
    // New connections are refused once the listener is closed.
    wait_until_async(|| async { TcpStream::connect(outbound_addr).await.is_err() }).await;
    assert!(
        !stopping.is_finished(),
        "the listener must wait for the stream"
    );

    // The stream in flight keeps working until the client ends it.
    for _ in 0..3 {
        tx.send(message.clone()).await.unwrap();
        responses.next().await.unwrap().unwrap();
    }
    drop(tx);
    assert!(responses.next().await.is_none());
    stopping.await.unwrap();
    assert_eq!(server.recorder.requests().len(), 4);
}

/// Like `wait_until`, for an asynchronous condition.
async fn wait_until_async<F, Fut>(mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..2000 {
        if done().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("condition not reached within 20 s");
}
