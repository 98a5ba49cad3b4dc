//! Shared helpers of the proxy integration tests: real tonic servers and clients, two
//! in-process sidecars on 127.0.0.1:0, and a byte-counting TCP relay between them.
#![allow(dead_code, unused_imports)]

pub mod h2call;
pub mod h2server;
pub mod http1;
pub mod opening;
pub mod process;
pub mod raw;
pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bloscar::layer::{Role, UnknownPeer};
use bloscar::locate::{Locator, TaggedRule};
use bloscar::metrics::Metrics;
use bloscar::pb::inference::ModelInferRequest;
use bloscar::pb::inference::model_infer_request::InferInputTensor;
use bloscar::proxy::{ListenerLimits, ProxySettings};
use bloscar::{CompressOptions, FixedChooser, Limits, MessageCodec};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::Channel;

pub use h2call::{RawOutcome, framed, raw_h2_call, raw_h2_finish, raw_h2_open};
pub use h2server::{Seen, StallingServer, start_stalling_server};
pub use raw::RawCodec;
pub use server::{TestServer, start_server, start_server_with};

/// Rules for the example imaging service (its tensors are found by configuration alone).
pub const IMAGING_RULES: &str = "/example.imaging.v1.Imaging/Denoise=2";

/// The message codec both sidecars use: lz4 with shuffle, tensors from 1 KiB.
pub fn codec() -> Arc<MessageCodec> {
    let rules = TaggedRule::parse_list(IMAGING_RULES).expect("rules parse");
    let chooser = FixedChooser {
        options: CompressOptions::default(),
        min_size: 1024,
    };
    Arc::new(MessageCodec::new(
        Locator::new(rules),
        Arc::new(chooser),
        Limits::default(),
    ))
}

/// Largest message the test sidecars accept.
pub const MAX_MESSAGE: usize = 16 << 20;

/// One running sidecar listener.
pub struct Proxy {
    pub addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Proxy {
    /// Starts a listener of `role` forwarding to `forward`.
    pub async fn start(role: Role, forward: SocketAddr) -> Proxy {
        Proxy::start_with(role, forward, UnknownPeer::Identity).await
    }

    /// Starts a listener with an explicit unknown-peer policy.
    pub async fn start_with(role: Role, forward: SocketAddr, unknown_peer: UnknownPeer) -> Proxy {
        Proxy::start_full(
            role,
            forward,
            unknown_peer,
            ListenerLimits::default(),
            bloscar::MemoryBudget::unlimited(),
        )
        .await
    }

    /// Starts a listener with its own connection limit and timeouts.
    pub async fn start_limited(role: Role, forward: SocketAddr, limits: ListenerLimits) -> Proxy {
        Proxy::start_full(
            role,
            forward,
            UnknownPeer::Identity,
            limits,
            bloscar::MemoryBudget::unlimited(),
        )
        .await
    }

    /// Starts a listener whose calls charge what they hold to `memory`.
    pub async fn start_budgeted(
        role: Role,
        forward: SocketAddr,
        unknown_peer: UnknownPeer,
        memory: bloscar::MemoryBudget,
    ) -> Proxy {
        Proxy::start_full(
            role,
            forward,
            unknown_peer,
            ListenerLimits::default(),
            memory,
        )
        .await
    }

    async fn start_full(
        role: Role,
        forward: SocketAddr,
        unknown_peer: UnknownPeer,
        limits: ListenerLimits,
        memory: bloscar::MemoryBudget,
    ) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::new());
        let settings = ProxySettings {
            role,
            forward: forward.to_string(),
            codec: codec(),
            max_message_bytes: MAX_MESSAGE,
            max_http_body_bytes: MAX_MESSAGE,
            unknown_peer,
            resolve: Default::default(),
            stream_idle_timeout: None,
            limits,
            memory,
            hop_tls: Default::default(),
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(bloscar::proxy::serve(
            listener,
            settings,
            Arc::clone(&metrics),
            async {
                let _ = rx.await;
            },
            Duration::from_secs(5),
        ));
        Proxy {
            addr,
            metrics,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Asks the listener to stop and waits for it to drain.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// The sum of the samples of the Prometheus text output that `series` selects, e.g.
    /// `bloscar_messages_total{direction="request",outcome="encoded",method="..."}`
    /// (see [`metric_value`]).
    pub fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics.render(), series)
    }
}

/// The sum of the samples in Prometheus text whose name is that of `series` and whose
/// labels include every label `series` names (0 when none): `name{a="x"}` adds up
/// `name{a="x",b="y"}` over every `b`. Label values must not hold `",`.
pub fn metric_value(text: &str, series: &str) -> f64 {
    let (name, wanted) = split_series(series);
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (sample, value) = line.rsplit_once(' ')?;
            let (n, labels) = split_series(sample);
            (n == name && wanted.iter().all(|w| labels.contains(w)))
                .then(|| value.trim().parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// `name{a="x",b="y"}` as `name` and `["a=\"x\"", "b=\"y\""]`.
fn split_series(series: &str) -> (&str, Vec<&str>) {
    let series = series.trim();
    match series.split_once('{') {
        None => (series, Vec::new()),
        Some((name, rest)) => {
            let inner = rest.trim_end_matches('}');
            let labels = inner
                .split("\",")
                .map(|l| l.trim_end_matches('"'))
                .filter(|l| !l.is_empty())
                .collect();
            (name, labels)
        }
    }
}

/// A TCP relay that counts the bytes crossing it in each direction.
pub struct Relay {
    pub addr: SocketAddr,
    /// Bytes from the connecting side to the target.
    pub up: Arc<AtomicU64>,
    /// Bytes from the target back.
    pub down: Arc<AtomicU64>,
}

impl Relay {
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicU64::new(0));
        let down = Arc::new(AtomicU64::new(0));
        let (u, d) = (Arc::clone(&up), Arc::clone(&down));
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, Arc::clone(&u)));
                tokio::spawn(pump(sr, cw, Arc::clone(&d)));
            }
        });
        Relay { addr, up, down }
    }

    /// Bytes relayed so far (up, down).
    pub fn counts(&self) -> (u64, u64) {
        (
            self.up.load(Ordering::SeqCst),
            self.down.load(Ordering::SeqCst),
        )
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    count: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                count.fetch_add(n as u64, Ordering::SeqCst);
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

/// The full topology: client -> outbound -> relay -> inbound -> server.
pub struct Pair {
    pub server: TestServer,
    pub inbound: Proxy,
    pub relay: Relay,
    pub outbound: Proxy,
}

impl Pair {
    pub async fn start() -> Pair {
        Pair::start_with(UnknownPeer::Identity).await
    }

    pub async fn start_with(unknown_peer: UnknownPeer) -> Pair {
        let server = start_server().await;
        let inbound = Proxy::start(Role::Inbound, server.addr).await;
        let relay = Relay::start(inbound.addr).await;
        let outbound = Proxy::start_with(Role::Outbound, relay.addr, unknown_peer).await;
        Pair {
            server,
            inbound,
            relay,
            outbound,
        }
    }

    /// A client channel to the outbound sidecar.
    pub async fn channel(&self) -> Channel {
        channel(self.outbound.addr).await
    }
}

/// A tonic channel to `addr`.
pub async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A raw-bytes tonic client on `channel`.
pub fn raw_client(channel: Channel) -> tonic::client::Grpc<Channel> {
    tonic::client::Grpc::new(channel)
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20)
}

/// Sends one unary message as raw bytes and returns the raw response.
pub async fn raw_unary(
    channel: Channel,
    path: &'static str,
    message: Bytes,
) -> Result<tonic::Response<Bytes>, tonic::Status> {
    raw_unary_request(channel, path, tonic::Request::new(message)).await
}

/// Sends one unary request (with its metadata) as raw bytes.
pub async fn raw_unary_request(
    channel: Channel,
    path: &'static str,
    request: tonic::Request<Bytes>,
) -> Result<tonic::Response<Bytes>, tonic::Status> {
    let mut client = raw_client(channel);
    client.ready().await.unwrap();
    client
        .unary(
            request,
            http::uri::PathAndQuery::from_static(path),
            RawCodec,
        )
        .await
}

/// A smooth FP32 ramp: compresses very well with shuffle.
pub fn smooth_f32(count: usize) -> Vec<u8> {
    (0..count)
        .flat_map(|i| ((i as f32) * 0.001).to_le_bytes())
        .collect()
}

/// Random bytes: Blosc cannot shrink them.
pub use bloscar::bench::synthetic::random_bytes;

/// A KServe request with one FP32 input holding `data` in `raw_input_contents`.
pub fn kserve_request(data: Vec<u8>) -> ModelInferRequest {
    let elements = (data.len() / 4) as i64;
    ModelInferRequest {
        model_name: "echo".into(),
        model_version: "1".into(),
        id: "req-1".into(),
        parameters: Default::default(),
        inputs: vec![InferInputTensor {
            name: "INPUT0".into(),
            datatype: "FP32".into(),
            shape: vec![1, elements],
            parameters: Default::default(),
            contents: None,
        }],
        outputs: vec![],
        raw_input_contents: vec![data],
    }
}

/// Waits until `done` holds, checking every 10 ms; panics after 20 s so a broken
/// behaviour fails the test instead of hanging it.
pub async fn wait_until(mut done: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached within 20 s");
}
