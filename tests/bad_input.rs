//! Bad input at both listeners: garbage bytes, an HTTP/2 preface followed by junk, a
//! message longer than the limit, a stream cut in the middle of a message, and corrupt
//! bloscar containers from a fake peer. Each gets the right gRPC status (or a closed
//! connection), and a stream opened before keeps working throughout.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bloscar::grpc::{Code, Status};
use bloscar::layer::{Role, UnknownPeer};
use bloscar::locate::Direction;
use bytes::Bytes;
use common::server::{MODEL_INFER, MODEL_STREAM_INFER};
use common::*;
use futures_util::StreamExt;
use http::Request;
use http_body_util::StreamBody;
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Writes `bytes` on a fresh TCP connection and reads until the listener closes it.
async fn send_junk(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut reply = Vec::new();
    // A bound, so that a listener that keeps the connection open fails the test.
    tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut reply))
        .await
        .expect("the listener closed the connection")
        .ok();
    reply
}

/// A bidi stream kept open across the bad inputs; each `check` sends one message and
/// expects its echo.
struct LongStream {
    tx: tokio::sync::mpsc::Sender<Bytes>,
    responses: tonic::Streaming<Bytes>,
}

impl LongStream {
    async fn open(addr: SocketAddr) -> LongStream {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        let outgoing =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|m| (m, rx)) },
            );
        let mut client = raw_client(channel(addr).await);
        client.ready().await.unwrap();
        let call = client.streaming(
            tonic::Request::new(outgoing),
            http::uri::PathAndQuery::from_static(MODEL_STREAM_INFER),
            RawCodec,
        );
        let first = Bytes::from(kserve_request(smooth_f32(8192)).encode_to_vec());
        tx.send(first).await.unwrap();
        let mut responses = call.await.unwrap().into_inner();
        responses.next().await.unwrap().unwrap();
        LongStream { tx, responses }
    }

    async fn check(&mut self) {
        let message = Bytes::from(kserve_request(smooth_f32(8192)).encode_to_vec());
        self.tx.send(message).await.unwrap();
        self.responses.next().await.unwrap().unwrap();
    }
}

/// Both listeners of a pair whose outbound encodes from the first call, so both sides
/// look inside every message.
async fn encoding_pair() -> Pair {
    Pair::start_with(UnknownPeer::Encode).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_broken_preface_close_only_their_connection() {
    let pair = encoding_pair().await;
    let mut long = LongStream::open(pair.outbound.addr).await;
    for addr in [pair.outbound.addr, pair.inbound.addr] {
        let reply = send_junk(addr, b"\x16\x03\x01\x02\x00garbage that is no HTTP\r\n\r\n").await;
        // HTTP/1 parsing fails: at most a 400, then the connection closes.
        assert!(
            reply.is_empty() || reply.starts_with(b"HTTP/1.1 400"),
            "{reply:?}"
        );
        long.check().await;

        let mut junk = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        junk.extend_from_slice(&[0xff; 64]);
        let reply = send_junk(addr, &junk).await;
        // The server's SETTINGS and then a GOAWAY (frame type 7) before closing.
        assert!(
            reply.windows(4).any(|w| w[3] == 7),
            "no GOAWAY in {reply:?}"
        );
        long.check().await;
    }
    let request = Bytes::from(kserve_request(smooth_f32(4096)).encode_to_vec());
    raw_unary(pair.channel().await, MODEL_INFER, request)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_messages_are_resource_exhausted() {
    let pair = encoding_pair().await;
    let mut long = LongStream::open(pair.outbound.addr).await;
    // Only the prefix is sent: the limit holds before any buffering.
    let mut prefix = vec![0u8];
    prefix.extend_from_slice(&(64u32 << 20).to_be_bytes());
    let status = raw_h2_call(pair.outbound.addr, None, prefix.clone()).await;
    assert_eq!(status.code, Code::ResourceExhausted, "{status}");
    long.check().await;

    prefix[0] = 1;
    let status = raw_h2_call(pair.inbound.addr, Some("bloscar"), prefix).await;
    assert_eq!(status.code, Code::ResourceExhausted, "{status}");
    long.check().await;
    assert!(
        pair.inbound
            .metric("bloscar_calls_total{status=\"resource_exhausted\"}")
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_mid_message_is_internal() {
    let pair = encoding_pair().await;
    let mut long = LongStream::open(pair.outbound.addr).await;
    let whole = framed(false, &kserve_request(smooth_f32(4096)).encode_to_vec());
    let status = raw_h2_call(pair.outbound.addr, None, whole[..1000].to_vec()).await;
    assert_eq!(status.code, Code::Internal, "{status}");
    assert!(
        status.message.contains("middle of a gRPC message"),
        "{status}"
    );
    long.check().await;

    let status = raw_h2_call(pair.inbound.addr, Some("bloscar"), whole[..1000].to_vec()).await;
    assert_eq!(status.code, Code::Internal, "{status}");
    long.check().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_containers_at_the_inbound_are_data_loss_or_internal() {
    let pair = encoding_pair().await;
    let mut long = LongStream::open(pair.outbound.addr).await;

    // Not a container at all.
    let status = raw_h2_call(
        pair.inbound.addr,
        Some("bloscar"),
        framed(true, b"this is not a bloscar container"),
    )
    .await;
    assert!(
        matches!(status.code, Code::DataLoss | Code::Internal),
        "{status}"
    );
    assert!(status.message.starts_with("bloscar: "), "{status}");
    long.check().await;

    // A real container with one payload byte flipped.
    let message = kserve_request(smooth_f32(64 * 1024)).encode_to_vec();
    let mut container = codec()
        .encode(MODEL_INFER, Direction::Request, &message)
        .unwrap()
        .expect("the tensor is encoded")
        .bytes;
    let last = container.len() - 1;
    container[last] ^= 0x5a;
    let status = raw_h2_call(pair.inbound.addr, Some("bloscar"), framed(true, &container)).await;
    assert_eq!(status.code, Code::DataLoss, "{status}");
    assert!(status.message.contains("checksum"), "{status}");
    long.check().await;

    // A message too short to hold a container header, and a truncated container.
    for bad in [&container[..3], &container[..container.len() / 2]] {
        let status = raw_h2_call(pair.inbound.addr, Some("bloscar"), framed(true, bad)).await;
        assert!(
            matches!(status.code, Code::DataLoss | Code::Internal),
            "{status}"
        );
    }
    long.check().await;
    // The app never saw any of them.
    let seen = pair.server.recorder.requests().len();
    assert_eq!(seen, 4, "only the long stream's messages reach the app");
}

/// A fake peer sidecar: answers every call with `message` under `grpc-encoding: bloscar`.
async fn start_fake_peer(message: Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let message = Bytes::from(message);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let message = message.clone();
            let service = hyper::service::service_fn(move |_request: Request<_>| {
                let message = message.clone();
                async move {
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", "0".parse().unwrap());
                    let frames: Vec<Result<Frame<Bytes>, Infallible>> =
                        vec![Ok(Frame::data(message)), Ok(Frame::trailers(trailers))];
                    let response = http::Response::builder()
                        .header("content-type", "application/grpc")
                        .header("grpc-encoding", "bloscar")
                        .header("grpc-accept-encoding", "bloscar")
                        .body(StreamBody::new(futures_util::stream::iter(frames)))
                        .unwrap();
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_containers_from_a_fake_peer_fail_only_their_call_at_the_outbound() {
    let message = kserve_request(smooth_f32(64 * 1024)).encode_to_vec();
    let mut container = codec()
        .encode(MODEL_INFER, Direction::Response, &message)
        .unwrap()
        .map(|m| m.bytes)
        .unwrap_or_else(|| message.clone());
    let last = container.len() - 1;
    container[last] ^= 0x5a;

    for body in [
        framed(true, b"garbage instead of a container"),
        framed(true, &container),
        // A prefix claiming more than the limit.
        {
            let mut prefix = vec![1u8];
            prefix.extend_from_slice(&(64u32 << 20).to_be_bytes());
            prefix
        },
    ] {
        let peer = start_fake_peer(body).await;
        let outbound = Proxy::start(Role::Outbound, peer).await;
        let request = Bytes::from(kserve_request(smooth_f32(1024)).encode_to_vec());
        let status = raw_unary(channel(outbound.addr).await, MODEL_INFER, request)
            .await
            .unwrap_err();
        assert!(
            matches!(
                status.code(),
                tonic::Code::DataLoss | tonic::Code::Internal | tonic::Code::ResourceExhausted
            ),
            "{status:?}"
        );
        assert!(!status.message().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_bad_streams_on_one_connection_leave_good_ones_working() {
    let pair = encoding_pair().await;
    let tcp = TcpStream::connect(pair.inbound.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    // Interleave corrupt and valid bloscar requests on one HTTP/2 connection.
    let message = kserve_request(smooth_f32(64 * 1024)).encode_to_vec();
    let container = codec()
        .encode(MODEL_INFER, Direction::Request, &message)
        .unwrap()
        .unwrap()
        .bytes;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let mut client = client.clone().ready().await.unwrap();
        let body = if i % 2 == 0 {
            framed(true, &container)
        } else {
            framed(true, b"corrupt")
        };
        let request = Request::post(format!("http://x{MODEL_INFER}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("grpc-encoding", "bloscar")
            .body(())
            .unwrap();
        let (response, mut send) = client.send_request(request, false).unwrap();
        send.send_data(Bytes::from(body), true).unwrap();
        tasks.push(tokio::spawn(async move {
            let response = response.await.unwrap();
            if let Some(status) = Status::from_header_map(response.headers()) {
                return status.code;
            }
            let mut body = response.into_body();
            while let Some(data) = body.data().await {
                let data = data.unwrap();
                let _ = body.flow_control().release_capacity(data.len());
            }
            let trailers = body.trailers().await.unwrap().unwrap();
            Status::from_header_map(&trailers).unwrap().code
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let code = task.await.unwrap();
        if i % 2 == 0 {
            assert_eq!(code, Code::Ok, "valid request {i}");
        } else {
            assert!(matches!(code, Code::DataLoss | Code::Internal), "{code:?}");
        }
    }
    assert_eq!(pair.server.recorder.requests().len(), 5);
    for seen in pair.server.recorder.requests() {
        assert_eq!(seen, Bytes::from(message.clone()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tonic_server_behind_the_layer_reports_corrupt_containers() {
    let builder = tonic::transport::Server::builder().layer(bloscar::BloscarLayer::server(codec()));
    let server = start_server_with(builder, common::server::EchoService::default()).await;
    let status = raw_h2_call(server.addr, Some("bloscar"), framed(true, b"corrupt")).await;
    assert!(
        matches!(status.code, Code::DataLoss | Code::Internal),
        "{status}"
    );
    assert!(status.message.starts_with("bloscar: "), "{status}");
    let mut prefix = vec![1u8];
    prefix.extend_from_slice(&(u32::MAX).to_be_bytes());
    let status = raw_h2_call(server.addr, Some("bloscar"), prefix).await;
    assert_eq!(status.code, Code::ResourceExhausted, "{status}");
    assert!(server.recorder.requests().is_empty());
}
