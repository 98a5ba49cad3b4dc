//! Anything that is not gRPC passes through both sidecars byte for byte, over HTTP/1.1
//! and HTTP/2; an unreachable upstream is UNAVAILABLE for gRPC and 502 for plain HTTP.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bloscar::layer::Role;
use bytes::Bytes;
use common::server::MODEL_INFER;
use common::*;
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tokio::net::TcpListener;

/// A plain HTTP server (HTTP/1.1 and HTTP/2): answers 201 with the request body, and
/// records the headers and version it saw.
async fn start_http_server() -> (SocketAddr, Arc<Mutex<Vec<(Version, HeaderMap)>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let record = Arc::clone(&record);
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let record = Arc::clone(&record);
                async move {
                    record
                        .lock()
                        .unwrap()
                        .push((request.version(), request.headers().clone()));
                    let body = request.into_body().collect().await.unwrap().to_bytes();
                    let response = Response::builder()
                        .status(StatusCode::CREATED)
                        .header("x-upstream", "plain")
                        .header("content-type", "application/octet-stream")
                        .body(Full::new(body))
                        .unwrap();
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

async fn pair_to(target: SocketAddr) -> (Proxy, Relay, Proxy) {
    let inbound = Proxy::start(Role::Inbound, target).await;
    let relay = Relay::start(inbound.addr).await;
    let outbound = Proxy::start(Role::Outbound, relay.addr).await;
    (inbound, relay, outbound)
}

async fn post(
    http2: bool,
    addr: SocketAddr,
    body: Bytes,
    headers: &[(&str, &str)],
) -> Response<Bytes> {
    let mut builder = Client::builder(TokioExecutor::new());
    builder.http2_only(http2);
    let client = builder.build_http::<Full<Bytes>>();
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{addr}/upload?x=1"))
        .header("content-type", "application/octet-stream");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = client
        .request(request.body(Full::new(body)).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_passes_through_untouched() {
    let (server, seen) = start_http_server().await;
    let (_inbound, relay, outbound) = pair_to(server).await;
    let body = Bytes::from(smooth_f32(64 * 1024));
    let response = post(
        false,
        outbound.addr,
        body.clone(),
        &[
            ("connection", "x-private"),
            ("x-private", "1"),
            ("x-user", "kept"),
        ],
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["x-upstream"], "plain");
    assert_eq!(response.body(), &body);
    let (version, headers) = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(version, Version::HTTP_11);
    assert_eq!(headers["x-user"], "kept");
    assert!(
        headers.get("x-private").is_none(),
        "hop-by-hop header forwarded"
    );
    // Byte for byte: nothing was compressed.
    assert!(relay.counts().0 > body.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_non_grpc_passes_through_untouched() {
    let (server, seen) = start_http_server().await;
    let (_inbound, relay, outbound) = pair_to(server).await;
    let body = Bytes::from(smooth_f32(64 * 1024));
    let response = post(true, outbound.addr, body.clone(), &[("x-user", "kept")]).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.body(), &body);
    let (version, headers) = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(version, Version::HTTP_2);
    assert_eq!(headers["x-user"], "kept");
    assert!(relay.counts().0 > body.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_is_unavailable_or_bad_gateway() {
    // A port that was free a moment ago: nothing listens there.
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    for role in [Role::Outbound, Role::Inbound] {
        let proxy = Proxy::start(role, closed).await;
        let request = Bytes::from(kserve_request(smooth_f32(1024)).encode_to_vec());
        let status = raw_unary(channel(proxy.addr).await, MODEL_INFER, request)
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::Unavailable,
            "{role:?}: {status:?}"
        );
        let response = post(false, proxy.addr, Bytes::from_static(b"x"), &[]).await;
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY, "{role:?}");
        assert!(proxy.metric("bloscar_calls_total{status=\"unavailable\"}") >= 1.0);
    }
}
