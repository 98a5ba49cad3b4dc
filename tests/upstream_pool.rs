//! The upstream client connects to the configured target only: the authority a client
//! writes travels on unchanged but never opens a connection of its own, and a connection
//! that the upstream closes is replaced on the next call.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bloscar::layer::Role;
use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A plain HTTP server (HTTP/1.1 and HTTP/2) that echoes the request body and records
/// how many connections it accepted and the authority of each request. Dropping
/// `stop`'s sender closes the listener and every connection.
struct CountingServer {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    authorities: Arc<Mutex<Vec<String>>>,
    stop: watch::Sender<bool>,
}

impl CountingServer {
    async fn start(addr: SocketAddr) -> CountingServer {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let authorities = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = watch::channel(false);
        let (count, record) = (Arc::clone(&connections), Arc::clone(&authorities));
        tokio::spawn(async move {
            let mut listener_stopped = stopped.clone();
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => accepted.unwrap(),
                    _ = listener_stopped.changed() => return,
                };
                count.fetch_add(1, Ordering::SeqCst);
                stream.set_nodelay(true).unwrap();
                let record = Arc::clone(&record);
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let record = Arc::clone(&record);
                    async move {
                        let authority = match request.version() {
                            Version::HTTP_2 => request.uri().authority().map(ToString::to_string),
                            _ => request
                                .headers()
                                .get(http::header::HOST)
                                .map(|h| h.to_str().unwrap().to_string()),
                        };
                        record.lock().unwrap().push(authority.unwrap_or_default());
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(StatusCode::OK)
                                .body(Full::new(body))
                                .unwrap(),
                        )
                    }
                });
                let mut connection_stopped = stopped.clone();
                tokio::spawn(async move {
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = connection => {}
                        _ = connection_stopped.changed() => {}
                    }
                });
            }
        });
        CountingServer {
            addr,
            connections,
            authorities,
            stop,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn authorities(&self) -> Vec<String> {
        self.authorities.lock().unwrap().clone()
    }

    fn shut(self) {
        let _ = self.stop.send(true);
    }
}

/// An HTTP/2 connection (prior knowledge) to `addr`, whatever the requests' URIs name.
async fn h2_client(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (send, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    send
}

async fn post_h2(
    send: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    authority: &str,
    body: &'static [u8],
) -> (StatusCode, Bytes) {
    let request = Request::post(format!("http://{authority}/echo"))
        .body(Full::new(Bytes::from_static(body)))
        .unwrap();
    let response = send.send_request(request).await.unwrap();
    let status = response.status();
    (
        status,
        response.into_body().collect().await.unwrap().to_bytes(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_authorities_share_one_upstream_connection() {
    let server = CountingServer::start("127.0.0.1:0".parse().unwrap()).await;
    let proxy = Proxy::start(Role::Inbound, server.addr).await;
    let mut send = h2_client(proxy.addr).await;
    let sent: Vec<String> = (0..200)
        .map(|i| format!("tenant-{i}.example:8000"))
        .collect();
    for authority in &sent {
        let (status, body) = post_h2(&mut send, authority, b"hello").await;
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"hello"[..]));
    }
    assert_eq!(server.connections(), 1);
    assert_eq!(server.authorities(), sent);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_downstream_connection_has_upstream_connections_of_its_own() {
    let server = CountingServer::start("127.0.0.1:0".parse().unwrap()).await;
    let proxy = Proxy::start(Role::Inbound, server.addr).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(h2_client(proxy.addr).await);
    }
    for _ in 0..5 {
        for send in &mut clients {
            let (status, body) = post_h2(send, "app.example", b"hello").await;
            assert_eq!((status, &body[..]), (StatusCode::OK, &b"hello"[..]));
        }
    }
    assert_eq!(server.connections(), 3);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_hosts_keep_their_host_header_and_reuse_connections() {
    let server = CountingServer::start("127.0.0.1:0".parse().unwrap()).await;
    let proxy = Proxy::start(Role::Inbound, server.addr).await;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let sent: Vec<String> = (0..50).map(|i| format!("tenant-{i}.example")).collect();
    for host in &sent {
        let request = Request::post(format!("http://{}/echo", proxy.addr))
            .header(http::header::HOST, host.as_str())
            .body(Full::new(Bytes::from_static(b"hi")))
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hi");
    }
    // One call at a time: the one pooled connection serves them all.
    assert_eq!(server.connections(), 1);
    assert_eq!(server.authorities(), sent);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_upstream_connection_is_replaced() {
    let server = CountingServer::start("127.0.0.1:0".parse().unwrap()).await;
    let addr = server.addr;
    let proxy = Proxy::start(Role::Inbound, addr).await;
    let mut send = h2_client(proxy.addr).await;
    assert_eq!(post_h2(&mut send, "app", b"one").await.0, StatusCode::OK);
    // The upstream goes away with its connections, then comes back on the same port.
    server.shut();
    let server = loop {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        if let Ok(listener) = std::net::TcpListener::bind(addr) {
            drop(listener);
            break CountingServer::start(addr).await;
        }
    };
    // The proxy saw its connection close while the port was rebound; the next call
    // opens a new one.
    let (status, body) = post_h2(&mut send, "app", b"two").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"two"[..]));
    assert_eq!(server.connections(), 1);
    proxy.stop().await;
}
