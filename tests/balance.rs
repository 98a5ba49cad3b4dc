//! The outbound sidecar spreading calls over the endpoints of one DNS name, as it does
//! behind a headless Kubernetes Service: real `bloscar` processes (inbound sidecars on
//! 127.0.0.2, .3, ... all on one port, the outbound in front of one tonic client
//! connection), real tonic servers that say which backend answered, and a real DNS
//! server in the test (hickory-server) that the outbound resolves the name with and whose
//! records the test changes. One test puts mutual TLS on the hop, with certificates
//! made here with rcgen.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bloscar::pb::inference::{ModelInferRequest, ModelInferResponse};
use bytes::Bytes;
use common::http1::get;
use common::process::{PATIENCE, Process, free_addr, sidecar_command};
// Addresses: 127.0.0.2-5 (first test), 6-8 (mixed adoption), 12-13 (HTTP/1.1) and
// 15-17 (TLS) are the endpoints; 9, 10, 11, 14 and 18 the outbound sidecars.
use common::server::{EchoService, MODEL_INFER, Recorder};
use common::{kserve_request, metric_value, raw_unary_request, smooth_f32};
use hickory_server::Server;
use hickory_server::proto::rr::rdata::{A, SOA};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType, RrKey};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use http::StatusCode;
use hyper_util::rt::TokioIo;
use prost::Message;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio::net::{TcpListener, UdpSocket};
use tonic::transport::Channel;

/// The name the outbound forwards to, fully qualified so no search domain is tried.
const NAME: &str = "peers.bloscar.test.";
const ZONE: &str = "bloscar.test.";
/// The records' TTL, and the outbound's longest interval between resolutions.
const TTL_SECS: u32 = 1;

/// An authoritative DNS server for [`ZONE`] on a free UDP port of 127.0.0.1.
struct Dns {
    addr: SocketAddr,
    zone: Arc<InMemoryZoneHandler>,
    serial: AtomicUsize,
    _server: Server<Catalog>,
}

impl Dns {
    async fn start(ips: &[Ipv4Addr]) -> Dns {
        let origin = Name::from_ascii(ZONE).unwrap();
        let zone = Arc::new(InMemoryZoneHandler::empty(
            origin.clone(),
            ZoneType::Primary,
            AxfrPolicy::Deny,
        ));
        let soa = SOA::new(
            Name::from_ascii("ns.bloscar.test.").unwrap(),
            Name::from_ascii("admin.bloscar.test.").unwrap(),
            1,
            60,
            60,
            600,
            TTL_SECS,
        );
        zone.upsert(
            Record::from_rdata(origin.clone(), TTL_SECS, RData::SOA(soa)),
            1,
        )
        .await;
        let mut catalog = Catalog::new();
        catalog.upsert(
            LowerName::new(&origin),
            vec![Arc::clone(&zone) as Arc<dyn ZoneHandler>],
        );
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let mut server = Server::new(catalog);
        server.register_socket(socket);
        let dns = Dns {
            addr,
            zone,
            serial: AtomicUsize::new(1),
            _server: server,
        };
        dns.set(ips).await;
        dns
    }

    /// [`NAME`] now has exactly the A records `ips`.
    async fn set(&self, ips: &[Ipv4Addr]) {
        let name = Name::from_ascii(NAME).unwrap();
        let serial = self.serial.fetch_add(1, Ordering::SeqCst) as u32 + 1;
        self.zone
            .records_mut()
            .await
            .remove(&RrKey::new(LowerName::new(&name), RecordType::A));
        for ip in ips {
            let record = Record::from_rdata(name.clone(), TTL_SECS, RData::A(A(*ip)));
            assert!(self.zone.upsert(record, serial).await);
        }
    }
}

/// A tonic server on `addr` that echoes KServe calls and names itself in the response
/// header `x-backend`.
struct Backend {
    addr: SocketAddr,
    recorder: Arc<Recorder>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

async fn start_backend(addr: SocketAddr, name: &'static str) -> Backend {
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = EchoService::default();
    let recorder = Arc::clone(&service.recorder);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let label = move |mut response: http::Response<tonic::body::Body>| {
        response
            .headers_mut()
            .insert("x-backend", http::HeaderValue::from_static(name));
        response
    };
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .layer(tower::util::MapResponseLayer::new(label))
            .serve_with_incoming_shutdown(
                service,
                tonic::transport::server::TcpIncoming::from(listener),
                async {
                    let _ = rx.await;
                },
            )
            .await;
    });
    Backend {
        addr,
        recorder,
        _shutdown: tx,
    }
}

/// A `bloscar` process and its admin address.
struct Sidecar {
    process: Process,
    admin: SocketAddr,
}

impl Sidecar {
    /// The binary with `env`, its admin listener on a free port of the IP `admin_ip`:
    /// the test's own loopback addresses, where no other test's process takes the port
    /// between its choice and the bind.
    fn start(admin_ip: Ipv4Addr, env: &[(&str, String)]) -> Sidecar {
        let admin = free_on(admin_ip);
        let mut env = env.to_vec();
        env.push(("BLOSCAR_LOG", "info".into()));
        // A fixed codec: every tensor is encoded, without waiting for the link to be
        // measured.
        env.push(("BLOSCAR_CODEC", "lz4:5:byte".into()));
        Sidecar {
            process: Process::spawn(sidecar_command(admin, &env)),
            admin,
        }
    }

    /// An inbound sidecar on `listen` in front of `backend`.
    fn inbound(listen: SocketAddr, backend: SocketAddr) -> Sidecar {
        let IpAddr::V4(ip) = listen.ip() else {
            unreachable!("IPv4 loopback")
        };
        Sidecar::start(
            ip,
            &[
                ("BLOSCAR_MODE", "inbound".into()),
                ("BLOSCAR_INBOUND_LISTEN", listen.to_string()),
                ("BLOSCAR_INBOUND_FORWARD", backend.to_string()),
            ],
        )
    }

    /// The outbound sidecar on `listen`, forwarding to [`NAME`] at `port`, resolved with
    /// `dns`.
    fn outbound(listen: SocketAddr, port: u16, dns: &Dns) -> Sidecar {
        let IpAddr::V4(ip) = listen.ip() else {
            unreachable!("IPv4 loopback")
        };
        Sidecar::start(
            ip,
            &[
                ("BLOSCAR_MODE", "outbound".into()),
                ("BLOSCAR_OUTBOUND_LISTEN", listen.to_string()),
                ("BLOSCAR_OUTBOUND_FORWARD", format!("{NAME}:{port}")),
                ("BLOSCAR_OUTBOUND_NAMESERVER", dns.addr.to_string()),
                (
                    "BLOSCAR_OUTBOUND_RESOLVE_INTERVAL_SECS",
                    TTL_SECS.to_string(),
                ),
            ],
        )
    }

    async fn wait_ready(&mut self) {
        let start = Instant::now();
        while !matches!(get(self.admin, "/ready").await, Ok((StatusCode::OK, _))) {
            self.process.assert_running();
            assert!(
                start.elapsed() < PATIENCE,
                "never ready:\n{}",
                self.process.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn metrics(&self) -> String {
        get(self.admin, "/metrics").await.unwrap().1
    }

    /// Ends the process at once (SIGKILL): its connections are reset by the kernel.
    fn kill(&mut self) {
        self.process.child.kill().unwrap();
        self.process.child.wait().unwrap();
    }
}

fn loopback(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// A free port on `ip`.
fn free_on(ip: Ipv4Addr) -> SocketAddr {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A port free on every address of `lasts` (127.0.0.x), for sidecars that share it as
/// the endpoints of one name do.
fn common_port(lasts: &[u8]) -> u16 {
    'search: for _ in 0..50 {
        let first = std::net::TcpListener::bind((loopback(lasts[0]), 0)).unwrap();
        let port = first.local_addr().unwrap().port();
        for &last in &lasts[1..] {
            if std::net::TcpListener::bind((loopback(last), port)).is_err() {
                continue 'search;
            }
        }
        return port;
    }
    panic!("no port free on all of {lasts:?}");
}

/// A compressible KServe request.
fn request() -> Bytes {
    Bytes::from(kserve_request(smooth_f32(16 * 1024)).encode_to_vec())
}

/// One call through `channel`: the backend that answered, after checking the echo.
async fn call(channel: &Channel, message: &Bytes, sleep_ms: u64) -> Result<String, tonic::Status> {
    let mut request = tonic::Request::new(message.clone());
    if sleep_ms > 0 {
        request
            .metadata_mut()
            .insert("x-sleep-ms", sleep_ms.to_string().parse().unwrap());
    }
    let response = raw_unary_request(channel.clone(), MODEL_INFER, request).await?;
    let backend = response
        .metadata()
        .get("x-backend")
        .expect("x-backend")
        .to_str()
        .unwrap()
        .to_owned();
    let sent = ModelInferRequest::decode(message.clone()).unwrap();
    let echoed = ModelInferResponse::decode(response.into_inner()).unwrap();
    assert_eq!(echoed.raw_output_contents, sent.raw_input_contents);
    Ok(backend)
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn endpoint_series(family: &str, ip: Ipv4Addr, port: u16) -> String {
    format!("{family}{{listener=\"outbound\",endpoint=\"{ip}:{port}\"}}")
}

/// Waits until `done` holds, panicking after `limit`.
async fn within(limit: Duration, what: &str, mut done: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_spread_over_a_names_endpoints_survive_a_kill_and_follow_dns() {
    let lasts = [2u8, 3, 4, 5];
    let port = common_port(&lasts);
    let names = ["b2", "b3", "b4", "b5"];
    let mut backends = Vec::new();
    let mut inbounds = Vec::new();
    for (&last, name) in lasts.iter().zip(names) {
        let backend = start_backend("127.0.0.1:0".parse().unwrap(), name).await;
        inbounds.push(Sidecar::inbound(
            SocketAddr::new(IpAddr::V4(loopback(last)), port),
            backend.addr,
        ));
        backends.push(backend);
    }
    let dns = Dns::start(&[loopback(2), loopback(3), loopback(4)]).await;
    let outbound_addr = free_on(loopback(9));
    let mut outbound = Sidecar::outbound(outbound_addr, port, &dns);
    for sidecar in inbounds.iter_mut().chain([&mut outbound]) {
        sidecar.wait_ready().await;
    }
    // One client connection for the whole test.
    let channel = channel(outbound_addr).await;
    let message = request();

    // (a) 300 calls one after another: each endpoint gets a third, within 15%.
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..300 {
        let backend = call(&channel, &message, 0).await.unwrap();
        *counts.entry(backend).or_default() += 1;
    }
    println!("(a) 300 calls over 3 endpoints: {counts:?}");
    assert_eq!(counts.len(), 3, "{counts:?}");
    for (backend, &count) in &counts {
        assert!((85..=115).contains(&count), "{backend}: {count} of 300");
    }
    let text = outbound.metrics().await;
    for last in [2, 3, 4] {
        let series = endpoint_series("bloscar_upstream_requests_total", loopback(last), port);
        println!("    {series} {}", metric_value(&text, &series));
    }
    assert_eq!(
        metric_value(&text, "bloscar_upstream_endpoints{listener=\"outbound\"}"),
        3.0
    );

    // (b) Four callers with calls of 50 ms each; 127.0.0.4's sidecar is killed mid-run.
    let in_flight = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let after_kill: Arc<std::sync::Mutex<HashMap<String, usize>>> = Arc::default();
    let killed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (channel, message) = (channel.clone(), message.clone());
        let (in_flight, done, failures) = (in_flight.clone(), done.clone(), failures.clone());
        let (after_kill, killed) = (after_kill.clone(), killed.clone());
        workers.push(tokio::spawn(async move {
            for _ in 0..60 {
                let started_after_kill = killed.load(Ordering::SeqCst);
                in_flight.fetch_add(1, Ordering::SeqCst);
                let result = call(&channel, &message, 50).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                done.fetch_add(1, Ordering::SeqCst);
                match result {
                    Ok(backend) if started_after_kill => {
                        *after_kill.lock().unwrap().entry(backend).or_default() += 1;
                    }
                    Ok(_) => {}
                    Err(status) => failures.lock().unwrap().push((
                        started_after_kill,
                        status.code(),
                        status.message().to_owned(),
                    )),
                }
            }
        }));
    }
    while done.load(Ordering::SeqCst) < 80 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let b4 = &backends[2].recorder;
    let b4_before = b4.completed.load(Ordering::SeqCst);
    // Calls b4 has begun and not finished: on the endpoint when it goes.
    let b4_open =
        b4.headers.lock().unwrap().len() - b4_before - b4.cancelled.load(Ordering::SeqCst);
    // Calls the client has open: an upper bound of those on the killed endpoint.
    let open_at_kill = in_flight.load(Ordering::SeqCst);
    inbounds[2].kill();
    killed.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    let after_kill = after_kill.lock().unwrap().clone();
    println!(
        "(b) 240 calls, 4 at a time; calls open at the kill: {open_at_kill} (at b4: \
         {b4_open}); failed: {}; answered by b4 before the kill: {b4_before}; by backend \
         after it: {after_kill:?}",
        failures.len()
    );
    for failure in &failures {
        println!("    failed: {failure:?}");
    }
    // Only calls on the endpoint when it went may fail: one started after the kill, even
    // one sent on the dying connection before the outbound saw it close, is sent again
    // to another endpoint.
    assert!(failures.len() <= open_at_kill, "{failures:?}");
    assert!(
        failures.iter().all(|(after, _, _)| !after),
        "calls started after the kill failed: {failures:?}"
    );
    assert!(!after_kill.contains_key("b4"), "{after_kill:?}");
    let text = outbound.metrics().await;
    let ejections = metric_value(
        &text,
        &endpoint_series("bloscar_upstream_ejections_total", loopback(4), port),
    );
    println!("    ejections of 127.0.0.4: {ejections}");
    assert!(ejections >= 1.0, "{text}");
    // Later calls all succeed, on the two endpoints left.
    for _ in 0..30 {
        let backend = call(&channel, &message, 0).await.unwrap();
        assert_ne!(backend, "b4");
    }

    // (c) The record set changes: 127.0.0.4 is replaced by 127.0.0.5.
    dns.set(&[loopback(2), loopback(3), loopback(5)]).await;
    let changed = Instant::now();
    let mut seen_new = None;
    let mut calls = 0;
    while seen_new.is_none() {
        calls += 1;
        if call(&channel, &message, 0).await.unwrap() == "b5" {
            seen_new = Some(changed.elapsed());
        }
        assert!(
            changed.elapsed() < Duration::from_secs(10),
            "b5 got no call"
        );
    }
    let seen_new = seen_new.unwrap();
    println!(
        "(c) first call to the new endpoint {seen_new:?} after the DNS change ({calls} calls)"
    );
    // TTL plus the resolution interval, and slack for a loaded machine.
    assert!(seen_new < Duration::from_secs(2 * TTL_SECS as u64 + 3));
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..150 {
        *counts
            .entry(call(&channel, &message, 0).await.unwrap())
            .or_default() += 1;
    }
    println!("    next 150 calls: {counts:?}");
    assert_eq!(
        counts.keys().cloned().collect::<Vec<_>>(),
        ["b2", "b3", "b5"]
    );
    let text = outbound.metrics().await;
    assert_eq!(
        metric_value(&text, "bloscar_upstream_endpoints{listener=\"outbound\"}"),
        3.0
    );
    // The removed endpoint's series are gone.
    assert!(
        !text.contains(&format!("endpoint=\"127.0.0.4:{port}\"")),
        "{text}"
    );

    // (d) An endpoint that leaves the answer with calls in flight: they finish, and no
    // new call goes there.
    let b3 = &backends[1].recorder;
    let b3_done_before = b3.completed.load(Ordering::SeqCst);
    let mut long_calls = Vec::new();
    for _ in 0..6 {
        let (channel, message) = (channel.clone(), message.clone());
        long_calls.push(tokio::spawn(
            async move { call(&channel, &message, 1500).await },
        ));
    }
    within(Duration::from_secs(5), "a long call on b3", async || {
        b3.headers.lock().unwrap().len() > b3_done_before + b3.cancelled.load(Ordering::SeqCst)
    })
    .await;
    let b3_open = b3.headers.lock().unwrap().len() - b3_done_before;
    dns.set(&[loopback(2), loopback(5)]).await;
    within(Duration::from_secs(5), "127.0.0.3 removed", async || {
        !outbound
            .metrics()
            .await
            .contains(&format!("endpoint=\"127.0.0.3:{port}\""))
    })
    .await;
    let mut results = Vec::new();
    for long_call in long_calls {
        results.push(long_call.await.unwrap());
    }
    let b3_finished = b3.completed.load(Ordering::SeqCst) - b3_done_before;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..40 {
        *counts
            .entry(call(&channel, &message, 0).await.unwrap())
            .or_default() += 1;
    }
    println!(
        "(d) 127.0.0.3 removed with {b3_open} calls open on it: {b3_finished} finished there; \
         the 6 long calls: {:?}; next 40 calls: {counts:?}",
        results
            .iter()
            .map(|r| r.as_ref().map_err(|s| s.code()))
            .collect::<Vec<_>>()
    );
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(b3_finished, b3_open);
    assert_eq!(counts.keys().cloned().collect::<Vec<_>>(), ["b2", "b5"]);
    within(Duration::from_secs(5), "all calls done", async || {
        outbound
            .metrics()
            .await
            .contains("bloscar_streams_in_flight 0")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_adopted_name_gets_encoded_calls_on_adopted_endpoints_only() {
    let lasts = [6u8, 7, 8];
    let port = common_port(&lasts);
    let b6 = start_backend("127.0.0.1:0".parse().unwrap(), "b6").await;
    let b7 = start_backend("127.0.0.1:0".parse().unwrap(), "b7").await;
    // No sidecar: the plain server itself is the endpoint.
    let b8 = start_backend(SocketAddr::new(IpAddr::V4(loopback(8)), port), "b8").await;
    let mut inbound6 = Sidecar::inbound(SocketAddr::new(IpAddr::V4(loopback(6)), port), b6.addr);
    let mut inbound7 = Sidecar::inbound(SocketAddr::new(IpAddr::V4(loopback(7)), port), b7.addr);
    let dns = Dns::start(&[loopback(6), loopback(7), loopback(8)]).await;
    let outbound_addr = free_on(loopback(10));
    let mut outbound = Sidecar::outbound(outbound_addr, port, &dns);
    for sidecar in [&mut inbound6, &mut inbound7, &mut outbound] {
        sidecar.wait_ready().await;
    }
    let channel = channel(outbound_addr).await;
    let message = request();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..150 {
        // Every answer is checked: the echo equals the request.
        let backend = call(&channel, &message, 0).await.unwrap();
        *counts.entry(backend).or_default() += 1;
    }
    let decoded = |text: &str| {
        metric_value(
            text,
            &format!(
                "bloscar_messages_total{{direction=\"request\",outcome=\"decoded\",method=\"{MODEL_INFER}\"}}"
            ),
        ) as usize
    };
    let (decoded6, decoded7) = (
        decoded(&inbound6.metrics().await),
        decoded(&inbound7.metrics().await),
    );
    let encoded = metric_value(
        &outbound.metrics().await,
        &format!(
            "bloscar_messages_total{{direction=\"request\",outcome=\"encoded\",method=\"{MODEL_INFER}\"}}"
        ),
    ) as usize;
    let plain_seen_bloscar = b8
        .recorder
        .headers
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.get("grpc-encoding").is_some_and(|v| v == "bloscar"))
        .count();
    println!(
        "mixed adoption, 150 calls, all answered correctly: {counts:?}; requests decoded by \
         the sidecar of b6: {decoded6}, of b7: {decoded7}; encoded by the outbound: {encoded}; \
         bloscar requests reaching the plain b8: {plain_seen_bloscar}"
    );
    assert_eq!(counts.values().sum::<usize>(), 150);
    assert_eq!(
        counts.len(),
        3,
        "{counts:?}\noutbound:\n{}\ninbound 127.0.0.7:\n{}",
        outbound.process.logs(),
        inbound7.process.logs()
    );
    // Each adopted endpoint's first call goes plain while its capability is unknown;
    // every later one is encoded.
    assert_eq!(decoded6, counts["b6"] - 1);
    assert_eq!(decoded7, counts["b7"] - 1);
    assert_eq!(encoded, decoded6 + decoded7);
    assert_eq!(plain_seen_bloscar, 0);
    assert_eq!(b8.recorder.requests().len(), counts["b8"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_with_one_address_works_as_an_address_does() {
    // `localhost` with the system's resolver configuration: one address, 127.0.0.1.
    let backend = start_backend("127.0.0.1:0".parse().unwrap(), "only").await;
    let inbound_addr = free_addr();
    let mut inbound = Sidecar::inbound(inbound_addr, backend.addr);
    let outbound_addr = free_on(loopback(11));
    let mut outbound = Sidecar::start(
        loopback(11),
        &[
            ("BLOSCAR_MODE", "outbound".into()),
            ("BLOSCAR_OUTBOUND_LISTEN", outbound_addr.to_string()),
            (
                "BLOSCAR_OUTBOUND_FORWARD",
                format!("localhost:{}", inbound_addr.port()),
            ),
        ],
    );
    inbound.wait_ready().await;
    outbound.wait_ready().await;
    let channel = channel(outbound_addr).await;
    let message = request();
    for _ in 0..5 {
        assert_eq!(call(&channel, &message, 0).await.unwrap(), "only");
    }
    let text = outbound.metrics().await;
    let series = format!(
        "bloscar_upstream_requests_total{{listener=\"outbound\",endpoint=\"{inbound_addr}\"}}"
    );
    assert_eq!(metric_value(&text, &series), 5.0, "{text}");
    assert_eq!(
        metric_value(&text, "bloscar_upstream_endpoints{listener=\"outbound\"}"),
        1.0
    );
    // The second call on was encoded, as with an IP address.
    assert_eq!(
        metric_value(
            &text,
            &format!(
                "bloscar_messages_total{{direction=\"request\",outcome=\"encoded\",method=\"{MODEL_INFER}\"}}"
            )
        ),
        4.0
    );
}

/// A plain HTTP/1.1 server on `addr` that answers every request with its `name`.
async fn start_http1_server(addr: SocketAddr, name: &'static str) {
    let listener = TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = hyper::service::service_fn(move |_: http::Request<_>| async move {
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                    Bytes::from_static(name.as_bytes()),
                )))
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_requests_pass_through_to_the_names_endpoints() {
    let lasts = [12u8, 13];
    let port = common_port(&lasts);
    start_http1_server(SocketAddr::new(IpAddr::V4(loopback(12)), port), "h12").await;
    start_http1_server(SocketAddr::new(IpAddr::V4(loopback(13)), port), "h13").await;
    let dns = Dns::start(&[loopback(12), loopback(13)]).await;
    let outbound_addr = free_on(loopback(14));
    let mut outbound = Sidecar::outbound(outbound_addr, port, &dns);
    outbound.wait_ready().await;
    let mut answered: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..20 {
        // A connection per request: the outbound makes (or reuses) an upstream one each.
        let (status, body) = get(outbound_addr, "/anything").await.unwrap();
        assert_eq!(status, StatusCode::OK);
        *answered.entry(body).or_default() += 1;
    }
    println!("HTTP/1.1 through the outbound to a name: {answered:?}");
    assert_eq!(answered.values().sum::<usize>(), 20);
    assert!(
        answered.keys().all(|k| k == "h12" || k == "h13"),
        "{answered:?}"
    );
}

/// PEM files in a directory of their own, removed at the end.
struct PemFiles(std::path::PathBuf);

impl PemFiles {
    fn new(name: &str) -> PemFiles {
        let dir =
            std::env::temp_dir().join(format!("bloscar-balance-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        PemFiles(dir)
    }

    fn write(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path.display().to_string()
    }
}

impl Drop for PemFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A leaf certificate for the DNS name `name`, signed by `ca`: its PEM and its key's.
fn issue(ca: &CertifiedIssuer<'static, KeyPair>, name: &str) -> (String, String) {
    let params = CertificateParams::new(vec![name.to_owned()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_spread_over_a_names_endpoints_over_mutual_tls() {
    let lasts = [15u8, 16, 17];
    let port = common_port(&lasts);
    let files = PemFiles::new("mtls");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "bloscar balance test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let ca_file = files.write("ca.crt", &ca.pem());
    // The inbounds' certificate names the DNS name only, not their addresses: the
    // outbound checks every endpoint for the host it forwards to.
    let (server_cert, server_key) = issue(&ca, NAME.trim_end_matches('.'));
    let (client_cert, client_key) = issue(&ca, "client.bloscar.test");
    let server_tls = [
        (
            "BLOSCAR_INBOUND_TLS_CERT",
            files.write("tls.crt", &server_cert),
        ),
        (
            "BLOSCAR_INBOUND_TLS_KEY",
            files.write("tls.key", &server_key),
        ),
        ("BLOSCAR_INBOUND_TLS_CLIENT_CA", ca_file.clone()),
    ];
    let names = ["t15", "t16", "t17"];
    let mut backends = Vec::new();
    let mut inbounds = Vec::new();
    for (&last, name) in lasts.iter().zip(names) {
        let backend = start_backend("127.0.0.1:0".parse().unwrap(), name).await;
        let listen = SocketAddr::new(IpAddr::V4(loopback(last)), port);
        let mut env = vec![
            ("BLOSCAR_MODE", "inbound".to_string()),
            ("BLOSCAR_INBOUND_LISTEN", listen.to_string()),
            ("BLOSCAR_INBOUND_FORWARD", backend.addr.to_string()),
        ];
        env.extend(server_tls.iter().cloned());
        inbounds.push(Sidecar::start(loopback(last), &env));
        backends.push(backend);
    }
    let dns = Dns::start(&[loopback(15), loopback(16), loopback(17)]).await;
    let outbound_addr = free_on(loopback(18));
    let mut outbound = Sidecar::start(
        loopback(18),
        &[
            ("BLOSCAR_MODE", "outbound".into()),
            ("BLOSCAR_OUTBOUND_LISTEN", outbound_addr.to_string()),
            ("BLOSCAR_OUTBOUND_FORWARD", format!("{NAME}:{port}")),
            ("BLOSCAR_OUTBOUND_NAMESERVER", dns.addr.to_string()),
            (
                "BLOSCAR_OUTBOUND_RESOLVE_INTERVAL_SECS",
                TTL_SECS.to_string(),
            ),
            ("BLOSCAR_OUTBOUND_TLS_CA", ca_file),
            (
                "BLOSCAR_OUTBOUND_TLS_CERT",
                files.write("client.crt", &client_cert),
            ),
            (
                "BLOSCAR_OUTBOUND_TLS_KEY",
                files.write("client.key", &client_key),
            ),
        ],
    );
    for sidecar in inbounds.iter_mut().chain([&mut outbound]) {
        sidecar.wait_ready().await;
    }
    let channel = channel(outbound_addr).await;
    let message = request();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..90 {
        // Every answer is checked: the echo equals the request.
        let backend = call(&channel, &message, 0).await.unwrap();
        *counts.entry(backend).or_default() += 1;
    }
    let text = outbound.metrics().await;
    let mut decoded = Vec::new();
    for inbound in &inbounds {
        let text = inbound.metrics().await;
        assert_eq!(
            metric_value(&text, "bloscar_tls_handshake_failures_total"),
            0.0,
            "{}",
            inbound.process.logs()
        );
        decoded.push(metric_value(
            &text,
            &format!(
                "bloscar_messages_total{{direction=\"request\",outcome=\"decoded\",method=\"{MODEL_INFER}\"}}"
            ),
        ) as usize);
    }
    println!(
        "90 calls over mutual TLS to 3 endpoints of one name: {counts:?}; decoded by each inbound: {decoded:?}"
    );
    for last in lasts {
        let series = endpoint_series("bloscar_upstream_requests_total", loopback(last), port);
        println!("    {series} {}", metric_value(&text, &series));
    }
    assert_eq!(
        counts.len(),
        3,
        "{counts:?}\noutbound:\n{}",
        outbound.process.logs()
    );
    for (backend, &count) in &counts {
        assert!((25..=35).contains(&count), "{backend}: {count} of 90");
    }
    assert_eq!(
        metric_value(
            &text,
            "bloscar_upstream_requests_total{listener=\"outbound\"}"
        ),
        90.0
    );
    assert_eq!(
        metric_value(&text, "bloscar_tls_handshake_failures_total"),
        0.0,
        "{}",
        outbound.process.logs()
    );
    // Each endpoint's first call goes plain while what it reads is unknown; every later
    // one is encoded, and decoded by that endpoint's inbound.
    for (name, decoded) in names.iter().zip(&decoded) {
        assert_eq!(*decoded, counts[*name] - 1, "{name}");
    }
    for backend in &backends {
        assert!(!backend.recorder.requests().is_empty());
    }
}
