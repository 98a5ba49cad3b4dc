//! The limits of a proxy listener, seen from real sockets: connections beyond the limit
//! are closed at once and counted while the admin listener keeps answering; connections
//! that do not open in time are closed; connections without calls get GOAWAY after the
//! idle timeout, and a call keeps its connection open however long it lasts; HTTP/2
//! settings that bound what one connection can make the sidecar hold.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bloscar::config::Config;
use bloscar::layer::Role;
use bloscar::proxy::ListenerLimits;
use bloscar::sidecar::Sidecar;
use bytes::Bytes;
use common::opening::{
    GOAWAY, H2_OPENING, PING, Reception, SETTINGS, goaway_code, next_frame, open_h2, ping,
    until_closed,
};
use common::server::{MODEL_INFER, MODEL_STREAM_INFER};
use common::*;
use futures_util::StreamExt;
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use prost::Message;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Timeouts short enough for tests; the limit high enough not to matter.
fn limits(handshake_ms: u64, idle_ms: u64) -> ListenerLimits {
    ListenerLimits {
        max_connections: 100,
        handshake_timeout: Duration::from_millis(handshake_ms),
        idle_timeout: Duration::from_millis(idle_ms),
    }
}

/// One HTTP/1.1 GET with a real hyper client: status and body.
async fn get(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    try_get(addr, path).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_limit_connections_are_closed_at_once_and_counted_while_live_answers() {
    let server = start_server().await;
    let forward = server.addr.to_string();
    let config = Config::from_vars(
        [
            ("BLOSCAR_INBOUND_LISTEN", "127.0.0.1:0"),
            ("BLOSCAR_ADMIN_LISTEN", "127.0.0.1:0"),
            ("BLOSCAR_INBOUND_FORWARD", forward.as_str()),
            ("BLOSCAR_MAX_CONNECTIONS", "3"),
            ("BLOSCAR_CODEC", "lz4"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    )
    .unwrap();
    let sidecar = Sidecar::bind(&config).await.unwrap();
    let inbound = sidecar.proxy_addr(Role::Inbound).unwrap();
    let admin = sidecar.admin_addr();
    let metrics = sidecar.metrics();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(sidecar.run(async {
        let _ = stopped.await;
    }));
    let open = || {
        metric_value(
            &metrics.render(),
            "bloscar_connections_open{listener=\"inbound\"}",
        )
    };
    let refused = || {
        metric_value(
            &metrics.render(),
            "bloscar_connections_refused_total{listener=\"inbound\"}",
        )
    };

    let mut served = Vec::new();
    for _ in 0..3 {
        match open_h2(inbound).await {
            Reception::Served(stream) => served.push(stream),
            Reception::Closed => panic!("a connection within the limit was closed"),
        }
    }
    for _ in 0..2 {
        assert!(!open_h2(inbound).await.is_served());
    }
    assert_eq!((open(), refused()), (3.0, 2.0));

    // A gRPC client's call fails at once, rather than hanging: the connection ends before
    // the HTTP/2 handshake. (tonic says UNKNOWN "transport error" when the close resets
    // what it had sent, CANCELLED "connection closed" when it reads the end first.)
    let channel = tonic::transport::Channel::from_shared(format!("http://{inbound}"))
        .unwrap()
        .connect_lazy();
    let message = Bytes::from(kserve_request(smooth_f32(16)).encode_to_vec());
    let status = raw_unary(channel, MODEL_INFER, message).await.unwrap_err();
    assert!(
        matches!(status.code(), tonic::Code::Unknown | tonic::Code::Cancelled),
        "{status:?}"
    );
    assert_eq!(refused(), 3.0);

    // The admin listener answers all along, and reports the counts.
    assert_eq!(get(admin, "/live").await, (StatusCode::OK, "live\n".into()));
    let (status, text) = get(admin, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        metric_value(&text, "bloscar_connections_open{listener=\"inbound\"}"),
        3.0
    );
    assert_eq!(
        metric_value(
            &text,
            "bloscar_connections_refused_total{listener=\"inbound\"}"
        ),
        3.0
    );

    // A connection that ends frees its place.
    drop(served.pop());
    wait_until(|| open() == 2.0).await;
    assert!(open_h2(inbound).await.is_served());
    assert_eq!(refused(), 3.0);

    let _ = stop.send(());
    drop(served);
    running.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_does_not_open_in_time_is_closed_and_counted() {
    let server = start_server().await;
    // Long enough that a loaded machine still reads a prompt client's opening in time.
    let proxy = Proxy::start_limited(Role::Inbound, server.addr, limits(1000, 60_000)).await;
    let timed_out = || {
        proxy.metric(
            "bloscar_connections_timed_out_total{listener=\"inbound\",timeout=\"handshake\"}",
        )
    };
    let slow_client = |sent: &'static [u8]| async move {
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        stream.write_all(sent).await.unwrap();
        until_closed(&mut stream).await.unwrap();
    };
    tokio::join!(
        // Silent after connecting.
        slow_client(b""),
        // Part of the HTTP/2 preface.
        slow_client(b"PRI * HTTP/2.0\r\n"),
        // The preface without its SETTINGS frame.
        slow_client(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        // HTTP/1 headers that never end: hyper's header-read timeout, set to the same
        // value (not counted: the connection had opened as HTTP/1).
        slow_client(b"GET / HTTP/1.1\r\nhost: x\r\n"),
    );
    assert_eq!(timed_out(), 3.0);

    // A connection that opened in time is not bound by the handshake timeout any more.
    let Reception::Served(mut opened) = open_h2(proxy.addr).await else {
        panic!("a connection that opened was closed");
    };
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(ping(&mut opened).await);
    assert_eq!(timed_out(), 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_calls_gets_goaway_after_the_idle_timeout() {
    let server = start_server().await;
    let proxy = Proxy::start_limited(Role::Inbound, server.addr, limits(10_000, 300)).await;
    let Reception::Served(mut stream) = open_h2(proxy.addr).await else {
        panic!("a connection within the limit was closed");
    };
    let goaway = loop {
        let frame = next_frame(&mut stream)
            .await
            .expect("a GOAWAY before the connection closes");
        if frame.kind == GOAWAY {
            break frame;
        }
    };
    assert_eq!(goaway_code(&goaway), 0, "NO_ERROR");
    // The server closes the connection once its shutdown ping is acknowledged.
    while next_frame(&mut stream).await.is_some() {}
    assert_eq!(
        proxy.metric("bloscar_connections_timed_out_total{listener=\"inbound\",timeout=\"idle\"}"),
        1.0
    );
    // The connection's place is given back once its task has ended.
    wait_until(|| proxy.metric("bloscar_connections_open{listener=\"inbound\"}") == 0.0).await;
}

/// The frames of `stream` until the server closes it, answering nothing (a client that
/// vanished without closing its socket).
async fn frames_unanswered(stream: &mut TcpStream) -> Vec<(u8, u8)> {
    use tokio::io::AsyncReadExt;
    let mut frames = Vec::new();
    let mut header = [0u8; 9];
    while stream.read_exact(&mut header).await.is_ok() {
        let len =
            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
        let mut payload = vec![0u8; len];
        if stream.read_exact(&mut payload).await.is_err() {
            break;
        }
        frames.push((header[3], header[4]));
    }
    frames
}

// Paused time: the runtime jumps to the next timer whenever every task waits.
#[tokio::test(start_paused = true)]
async fn a_client_that_does_not_answer_keep_alive_pings_is_disconnected() {
    let server = start_server().await;
    let proxy = Proxy::start_limited(Role::Inbound, server.addr, limits(10_000, 3_600_000)).await;
    let Reception::Served(mut stream) = open_h2(proxy.addr).await else {
        panic!("a connection within the limit was closed");
    };
    let opened = tokio::time::Instant::now();
    let frames = frames_unanswered(&mut stream).await;
    let lasted = opened.elapsed();
    assert!(
        frames.contains(&(PING, 0)),
        "a keep-alive PING before the close: {frames:?}"
    );
    // 60 s until the PING, 20 s for its answer.
    assert!(
        (Duration::from_secs(80)..Duration::from_secs(90)).contains(&lasted),
        "closed after {lasted:?}"
    );
    wait_until(|| proxy.metric("bloscar_connections_open{listener=\"inbound\"}") == 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_call_keeps_its_connection_past_the_idle_timeout() {
    let server = start_server().await;
    let proxy = Proxy::start_limited(Role::Inbound, server.addr, limits(10_000, 300)).await;
    let idle_closed = || {
        proxy.metric("bloscar_connections_timed_out_total{listener=\"inbound\",timeout=\"idle\"}")
    };

    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let outgoing =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let mut client = raw_client(channel(proxy.addr).await);
    client.ready().await.unwrap();
    let call = client.streaming(
        tonic::Request::new(outgoing),
        http::uri::PathAndQuery::from_static(MODEL_STREAM_INFER),
        RawCodec,
    );
    let message = Bytes::from(kserve_request(smooth_f32(1024)).encode_to_vec());
    tx.send(message.clone()).await.unwrap();
    let mut responses = call.await.unwrap().into_inner();
    responses.next().await.unwrap().unwrap();

    // Silent for several idle timeouts, but with the call open.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(idle_closed(), 0.0);
    tx.send(message).await.unwrap();
    responses.next().await.unwrap().unwrap();

    // Once the call has ended, the connection is idle.
    drop(tx);
    assert!(responses.next().await.is_none());
    wait_until(|| idle_closed() == 1.0).await;
    wait_until(|| proxy.metric("bloscar_connections_open{listener=\"inbound\"}") == 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_announces_its_stream_and_header_limits() {
    let server = start_server().await;
    let proxy = Proxy::start(Role::Inbound, server.addr).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(H2_OPENING).await.unwrap();
    let settings = next_frame(&mut stream).await.unwrap();
    assert_eq!(settings.kind, SETTINGS);
    let announced: Vec<(u16, u32)> = settings
        .payload
        .chunks(6)
        .map(|s| {
            (
                u16::from_be_bytes([s[0], s[1]]),
                u32::from_be_bytes([s[2], s[3], s[4], s[5]]),
            )
        })
        .collect();
    // SETTINGS_MAX_CONCURRENT_STREAMS, SETTINGS_INITIAL_WINDOW_SIZE,
    // SETTINGS_MAX_FRAME_SIZE, SETTINGS_MAX_HEADER_LIST_SIZE.
    for expected in [
        (0x3, 1024),
        (0x4, 4 << 20),
        (0x5, 256 << 10),
        (0x6, 64 << 10),
    ] {
        assert!(
            announced.contains(&expected),
            "{expected:?} in {announced:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_block_above_the_limit_is_refused_and_the_connection_stays_up() {
    let server = start_server().await;
    let proxy = Proxy::start(Role::Inbound, server.addr).await;
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.unwrap();

    let request = |big: usize| {
        http::Request::post(format!("http://{}{MODEL_INFER}", proxy.addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("x-big", "a".repeat(big))
            .body(())
            .unwrap()
    };
    let (response, _send) = client.send_request(request(100 << 10), true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );

    // Other calls on the same connection go on.
    let mut client = client.ready().await.unwrap();
    let (response, mut send) = client.send_request(request(1 << 10), false).unwrap();
    let message = kserve_request(smooth_f32(16)).encode_to_vec();
    send.send_data(Bytes::from(framed(false, &message)), true)
        .unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    while let Some(data) = body.data().await {
        let data = data.unwrap();
        let _ = body.flow_control().release_capacity(data.len());
    }
    let trailers = body.trailers().await.unwrap().expect("trailers");
    assert_eq!(trailers["grpc-status"], "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_has_a_connection_limit_of_its_own() {
    let config = Config::from_vars(
        [
            ("BLOSCAR_INBOUND_LISTEN", "127.0.0.1:0"),
            ("BLOSCAR_ADMIN_LISTEN", "127.0.0.1:0"),
            ("BLOSCAR_CODEC", "lz4"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    )
    .unwrap();
    let sidecar = Sidecar::bind(&config).await.unwrap();
    let admin = sidecar.admin_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(sidecar.run(async {
        let _ = stopped.await;
    }));
    // No call before the silent connections: its connection could still hold a place
    // when they arrive (the server learns of its end only later), and let the extra one in.

    // Connections that say nothing hold every admin place...
    let mut silent = Vec::new();
    for _ in 0..bloscar::admin::MAX_CONNECTIONS {
        silent.push(TcpStream::connect(admin).await.unwrap());
    }
    // ...so one more is closed at once, without an answer,
    let mut extra = TcpStream::connect(admin).await.unwrap();
    extra
        .write_all(b"GET /live HTTP/1.1\r\nhost: admin\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut extra, &mut answer).await;
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    // ...until they go: then the admin answers again.
    drop(silent);
    let mut live = None;
    for _ in 0..2000 {
        if let Ok(Ok(answer)) =
            tokio::time::timeout(Duration::from_secs(1), try_get(admin, "/live")).await
        {
            live = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(live, Some((StatusCode::OK, "live\n".into())));

    let _ = stop.send(());
    running.await.unwrap().unwrap();
}

/// Like `get`, with the failure to connect or to be answered as an error.
async fn try_get(addr: SocketAddr, path: &str) -> Result<(StatusCode, String), hyper::Error> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
