//! TLS on the hop between the sidecars, with the real binary as an outbound and an inbound
//! process and a real tonic app behind them, certificates made here with rcgen:
//!
//! - calls go through, encoded, over TLS and over mutual TLS with an allowed SPIFFE ID;
//! - peers without a client certificate, with one from another CA, or with a name not
//!   allowed, and a cleartext peer, are refused, and each refusal is counted in the
//!   inbound's `/metrics` under its reason;
//! - certificate files rewritten in place are used by the next connection, on both
//!   sides, without a restart.
//!
//! `cargo test --test tls -- --nocapture` prints the metric lines.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::process::{PATIENCE, Process, free_addr, sidecar_command};
use common::server::{MODEL_INFER, kserve_echo};
use common::{TestServer, channel, kserve_request, metric_value, raw_unary, smooth_f32};
use prost::Message;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The name the inbound's certificates are issued for (and 127.0.0.1, which the
/// outbound checks by default: the host of its forward address).
const INBOUND_NAME: &str = "inbound.bloscar.test";
/// The SPIFFE ID of the client sidecar that mutual TLS allows.
const CLIENT_ID: &str = "spiffe://bloscar.test/ns/ml/sa/client";

/// A certificate authority.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, PEM.
struct Leaf {
    cert: String,
    key: String,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        Ca {
            issuer: CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf certificate for `dns` names (or IP addresses) and `uris`.
    fn issue(&self, dns: &[&str], uris: &[&str]) -> Leaf {
        let names: Vec<String> = dns.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        for uri in uris {
            params
                .subject_alt_names
                .push(SanType::URI((*uri).try_into().unwrap()));
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

/// A directory of PEM files, removed at the end.
struct Files {
    dir: PathBuf,
}

impl Files {
    fn new(name: &str) -> Files {
        let dir = std::env::temp_dir().join(format!("bloscar-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Files { dir }
    }

    /// Writes `contents` to `name` (replacing the file, as a Secret update does) and
    /// returns the path.
    fn write(&self, name: &str, contents: &str) -> String {
        let path = self.dir.join(name);
        let temporary = self.dir.join(format!(".{name}.new"));
        std::fs::write(&temporary, contents).unwrap();
        std::fs::rename(&temporary, &path).unwrap();
        path.display().to_string()
    }

    /// The outbound's client certificate and key, written as `{name}.crt` and `.key`.
    fn client_identity(&self, name: &str, leaf: &Leaf) -> Vec<(&'static str, String)> {
        vec![
            (
                "BLOSCAR_OUTBOUND_TLS_CERT",
                self.write(&format!("{name}.crt"), &leaf.cert),
            ),
            (
                "BLOSCAR_OUTBOUND_TLS_KEY",
                self.write(&format!("{name}.key"), &leaf.key),
            ),
        ]
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The binary as a sidecar, with its admin listener.
struct Sidecar {
    process: Process,
    admin: SocketAddr,
}

impl Sidecar {
    async fn start(env: Vec<(&'static str, String)>) -> Sidecar {
        let admin = free_addr();
        let mut sidecar = Sidecar {
            process: Process::spawn(sidecar_command(admin, &env)),
            admin,
        };
        sidecar.process.wait_listening(admin).await;
        sidecar
    }

    fn logs(&self) -> String {
        self.process.logs()
    }

    /// The admin listener's `/metrics` text.
    async fn metrics(&self) -> String {
        let mut stream = TcpStream::connect(self.admin).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        text
    }

    async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics().await, series)
    }

    /// Waits until `series` reads `value` (counters are updated as the handshake ends,
    /// which the client may see first).
    async fn wait_metric(&self, series: &str, value: f64) {
        let start = Instant::now();
        loop {
            let now = self.metric(series).await;
            if now == value {
                return;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "{series} is {now}, not {value}:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The lines of `/metrics` whose name starts with `prefix`.
    async fn lines(&self, prefix: &str) -> Vec<String> {
        self.metrics()
            .await
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_owned)
            .collect()
    }
}

/// Both sidecars share these: lz4 with byte-shuffle from 1 KiB, encoding from the first
/// call.
fn common_env() -> Vec<(&'static str, String)> {
    vec![
        ("BLOSCAR_CODEC", "lz4:5:byte".into()),
        ("BLOSCAR_MIN_TENSOR_BYTES", "1024".into()),
        ("BLOSCAR_UNKNOWN_PEER", "encode".into()),
        ("BLOSCAR_LOG", "info".into()),
    ]
}

/// An inbound sidecar in front of `app`, listening on a free port, with `tls` variables.
async fn inbound(app: &TestServer, tls: &[(&'static str, String)]) -> (Sidecar, SocketAddr) {
    let listen = free_addr();
    let mut env = common_env();
    env.extend([
        ("BLOSCAR_MODE", "inbound".to_string()),
        ("BLOSCAR_INBOUND_LISTEN", listen.to_string()),
        ("BLOSCAR_INBOUND_FORWARD", app.addr.to_string()),
    ]);
    env.extend(tls.iter().cloned());
    (Sidecar::start(env).await, listen)
}

/// An outbound sidecar forwarding to `peer`, with `tls` variables.
async fn outbound(peer: SocketAddr, tls: &[(&'static str, String)]) -> (Sidecar, SocketAddr) {
    let listen = free_addr();
    let mut env = common_env();
    env.extend([
        ("BLOSCAR_MODE", "outbound".to_string()),
        ("BLOSCAR_OUTBOUND_LISTEN", listen.to_string()),
        ("BLOSCAR_OUTBOUND_FORWARD", peer.to_string()),
    ]);
    env.extend(tls.iter().cloned());
    (Sidecar::start(env).await, listen)
}

/// One KServe call through the outbound at `addr`, on a connection of its own.
async fn call(addr: SocketAddr) -> Result<(), tonic::Status> {
    let request = kserve_request(smooth_f32(64 * 1024));
    let response = raw_unary(
        channel(addr).await,
        MODEL_INFER,
        Bytes::from(request.encode_to_vec()),
    )
    .await?;
    assert_eq!(
        response.into_inner(),
        Bytes::from(kserve_echo(&request).encode_to_vec())
    );
    Ok(())
}

const REQUESTS_ENCODED: &str = "bloscar_messages_total{direction=\"request\",outcome=\"encoded\"}";
const REQUESTS_DECODED: &str = "bloscar_messages_total{direction=\"request\",outcome=\"decoded\"}";

fn failures(listener: &str, reason: &str) -> String {
    format!("bloscar_tls_handshake_failures_total{{listener=\"{listener}\",reason=\"{reason}\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_encoded_over_tls_and_mutual_tls() {
    let app = common::start_server().await;
    let files = Files::new("calls");
    let ca = Ca::new("bloscar test CA");
    let server = ca.issue(&[INBOUND_NAME, "127.0.0.1"], &[]);
    let client = ca.issue(&[], &[CLIENT_ID]);
    let server_tls = [
        (
            "BLOSCAR_INBOUND_TLS_CERT",
            files.write("tls.crt", &server.cert),
        ),
        (
            "BLOSCAR_INBOUND_TLS_KEY",
            files.write("tls.key", &server.key),
        ),
    ];
    let ca_file = files.write("ca.crt", &ca.pem());

    // TLS: the outbound checks the inbound's certificate against the CA, for the forward
    // host (127.0.0.1) by default.
    let (tls_inbound, tls_addr) = inbound(&app, &server_tls).await;
    let (tls_outbound, tls_out) =
        outbound(tls_addr, &[("BLOSCAR_OUTBOUND_TLS_CA", ca_file.clone())]).await;
    for _ in 0..2 {
        call(tls_out).await.unwrap();
    }
    assert_eq!(tls_outbound.metric(REQUESTS_ENCODED).await, 2.0);
    assert_eq!(tls_inbound.metric(REQUESTS_DECODED).await, 2.0);

    // Mutual TLS: the inbound asks for a client certificate of the CA carrying the
    // allowed SPIFFE ID; the outbound presents one and checks the inbound's name.
    let mut mutual = server_tls.to_vec();
    mutual.extend([
        ("BLOSCAR_INBOUND_TLS_CLIENT_CA", ca_file.clone()),
        (
            "BLOSCAR_INBOUND_TLS_ALLOWED_SANS",
            format!("other.example,{CLIENT_ID}"),
        ),
    ]);
    let (mtls_inbound, mtls_addr) = inbound(&app, &mutual).await;
    let (mtls_outbound, mtls_out) = outbound(
        mtls_addr,
        &[
            ("BLOSCAR_OUTBOUND_TLS_CA", ca_file.clone()),
            ("BLOSCAR_OUTBOUND_TLS_SERVER_NAME", INBOUND_NAME.into()),
        ]
        .into_iter()
        .chain(files.client_identity("client", &client))
        .collect::<Vec<_>>(),
    )
    .await;
    for _ in 0..2 {
        call(mtls_out).await.unwrap();
    }
    assert_eq!(mtls_outbound.metric(REQUESTS_ENCODED).await, 2.0);
    assert_eq!(mtls_inbound.metric(REQUESTS_DECODED).await, 2.0);
    for sidecar in [&tls_inbound, &tls_outbound, &mtls_inbound, &mtls_outbound] {
        assert_eq!(
            sidecar.metric("bloscar_tls_handshake_failures_total").await,
            0.0,
            "{}",
            sidecar.logs()
        );
    }
    println!("mutual TLS, outbound:");
    for line in mtls_outbound.lines("bloscar_messages_total").await {
        println!("  {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_that_mutual_tls_refuses_are_counted_by_reason() {
    let app = common::start_server().await;
    let files = Files::new("refused");
    let ca = Ca::new("bloscar test CA");
    let other_ca = Ca::new("another CA");
    let server = ca.issue(&[INBOUND_NAME], &[]);
    let ca_file = files.write("ca.crt", &ca.pem());
    let (inbound, inbound_addr) = inbound(
        &app,
        &[
            (
                "BLOSCAR_INBOUND_TLS_CERT",
                files.write("tls.crt", &server.cert),
            ),
            (
                "BLOSCAR_INBOUND_TLS_KEY",
                files.write("tls.key", &server.key),
            ),
            ("BLOSCAR_INBOUND_TLS_CLIENT_CA", ca_file.clone()),
            ("BLOSCAR_INBOUND_TLS_ALLOWED_SANS", CLIENT_ID.into()),
        ],
    )
    .await;
    let dial = |extra: Vec<(&'static str, String)>| {
        let mut env = vec![
            ("BLOSCAR_OUTBOUND_TLS_CA", ca_file.clone()),
            ("BLOSCAR_OUTBOUND_TLS_SERVER_NAME", INBOUND_NAME.to_string()),
        ];
        env.extend(extra);
        env
    };
    let cases = [
        ("no_certificate", dial(vec![])),
        (
            "unknown_ca",
            dial(files.client_identity("stranger", &other_ca.issue(&[], &[CLIENT_ID]))),
        ),
        (
            "san_not_allowed",
            dial(files.client_identity(
                "other-workload",
                &ca.issue(
                    &["client.bloscar.test"],
                    &["spiffe://bloscar.test/ns/ml/sa/other"],
                ),
            )),
        ),
    ];
    for (reason, env) in cases {
        let (outbound, out) = outbound(inbound_addr, &env).await;
        let refused = call(out).await.expect_err("the inbound refuses the peer");
        println!(
            "{reason}: the client sees {:?}: {}",
            refused.code(),
            refused.message()
        );
        assert_eq!(
            refused.code(),
            tonic::Code::Unavailable,
            "{}",
            outbound.logs()
        );
        inbound.wait_metric(&failures("inbound", reason), 1.0).await;
    }
    // A cleartext peer on the TLS port.
    let (plain, plain_out) = outbound(inbound_addr, &[]).await;
    assert!(call(plain_out).await.is_err(), "{}", plain.logs());
    inbound
        .wait_metric(&failures("inbound", "not_tls"), 1.0)
        .await;

    assert_eq!(inbound.metric(REQUESTS_DECODED).await, 0.0);
    assert_eq!(app.recorder.requests().len(), 0);
    let logs = inbound.logs();
    for reason in ["no_certificate", "unknown_ca", "san_not_allowed", "not_tls"] {
        assert!(
            logs.contains("TLS handshake failed") && logs.contains(reason),
            "no log line for {reason}:\n{logs}"
        );
    }
    println!("inbound:");
    for line in inbound.lines("bloscar_tls_handshake_failures_total").await {
        println!("  {line}");
    }
    let total = inbound.metric("bloscar_tls_handshake_failures_total").await;
    assert_eq!(total, 4.0);
}

/// The certificate the listener at `addr` serves now, seen by a rustls client that
/// trusts `cas`.
async fn served_certificate(addr: SocketAddr, cas: &[&Ca]) -> CertificateDer<'static> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        roots.add(ca.issuer.der().clone()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from(INBOUND_NAME).unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_files_are_used_by_the_next_connection() {
    let app = common::start_server().await;
    let files = Files::new("rotation");
    let (old_ca, new_ca) = (Ca::new("CA of January"), Ca::new("CA of February"));
    let old = old_ca.issue(&[INBOUND_NAME], &[]);
    let new = new_ca.issue(&[INBOUND_NAME], &[]);
    let cert = files.write("tls.crt", &old.cert);
    let key = files.write("tls.key", &old.key);
    let (inbound, inbound_addr) = inbound(
        &app,
        &[
            ("BLOSCAR_INBOUND_TLS_CERT", cert),
            ("BLOSCAR_INBOUND_TLS_KEY", key),
        ],
    )
    .await;
    let (outbound, out) = outbound(
        inbound_addr,
        &[
            (
                "BLOSCAR_OUTBOUND_TLS_CA",
                files.write("peer-ca.crt", &old_ca.pem()),
            ),
            ("BLOSCAR_OUTBOUND_TLS_SERVER_NAME", INBOUND_NAME.into()),
        ],
    )
    .await;
    call(out).await.unwrap();
    assert_eq!(
        served_certificate(inbound_addr, &[&old_ca, &new_ca]).await,
        old.der
    );

    // The inbound's Secret is renewed by another CA: the next handshake serves the new
    // certificate, without a restart.
    files.write("tls.crt", &new.cert);
    files.write("tls.key", &new.key);
    let start = Instant::now();
    while served_certificate(inbound_addr, &[&old_ca, &new_ca]).await != new.der {
        assert!(
            start.elapsed() < PATIENCE,
            "never served:\n{}",
            inbound.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    inbound
        .wait_metric(
            "bloscar_tls_reloads_total{listener=\"inbound\",result=\"ok\"}",
            1.0,
        )
        .await;

    // The outbound still trusts only the old CA: a new connection is refused...
    let refused = call(out)
        .await
        .expect_err("the new certificate is not trusted yet");
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    outbound
        .wait_metric(&failures("outbound", "unknown_ca"), 1.0)
        .await;

    // ...until its CA file is rewritten too: the next connection trusts the new CA.
    files.write("peer-ca.crt", &new_ca.pem());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    call(out).await.unwrap();
    outbound
        .wait_metric(
            "bloscar_tls_reloads_total{listener=\"outbound\",result=\"ok\"}",
            1.0,
        )
        .await;
    assert_eq!(outbound.metric(REQUESTS_ENCODED).await, 2.0);
    assert!(
        inbound
            .logs()
            .contains("TLS files changed: new handshakes use them"),
        "{}",
        inbound.logs()
    );

    // A rewrite that does not work (a key that is not the certificate's) is refused, and
    // the last good files stay in use.
    let failed = "bloscar_tls_reloads_total{listener=\"inbound\",result=\"failed\"}";
    let failed_before = inbound.metric(failed).await;
    files.write("tls.key", &old.key);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        served_certificate(inbound_addr, &[&old_ca, &new_ca]).await,
        new.der
    );
    assert_eq!(inbound.metric(failed).await, failed_before + 1.0);
    assert!(
        inbound
            .logs()
            .contains("TLS files changed but cannot be used: keeping the previous ones"),
        "{}",
        inbound.logs()
    );
    call(out).await.unwrap();
    println!("inbound:");
    for line in inbound.lines("bloscar_tls_reloads_total").await {
        println!("  {line}");
    }
    println!("outbound:");
    for line in outbound.lines("bloscar_tls_").await {
        println!("  {line}");
    }
}

#[test]
fn unusable_tls_settings_exit_78_naming_the_variable() {
    let files = Files::new("config");
    let ca = Ca::new("bloscar test CA");
    let server = ca.issue(&[INBOUND_NAME], &[]);
    let other = ca.issue(&[INBOUND_NAME], &[]);
    let cert = files.write("tls.crt", &server.cert);
    let key = files.write("tls.key", &server.key);
    let other_key = files.write("other.key", &other.key);
    let garbage = files.write("garbage.pem", "not a certificate\n");
    let ca_file = files.write("ca.crt", &ca.pem());
    let missing = files.dir.join("missing.crt").display().to_string();
    let outbound = [
        ("BLOSCAR_MODE", "outbound".to_string()),
        ("BLOSCAR_OUTBOUND_FORWARD", "peer.ns.svc:9440".to_string()),
    ];
    // The environment, the variable named and the start of the error.
    type Case<'a> = (Vec<(&'a str, String)>, &'a str, String);
    let cases: Vec<Case> = vec![
        (
            vec![("BLOSCAR_INBOUND_TLS_CERT", cert.clone())],
            "BLOSCAR_INBOUND_TLS_KEY",
            "BLOSCAR_INBOUND_TLS_KEY: required when BLOSCAR_INBOUND_TLS_CERT is set".into(),
        ),
        (
            vec![("BLOSCAR_INBOUND_TLS_CLIENT_CA", ca_file.clone())],
            "BLOSCAR_INBOUND_TLS_CERT",
            "BLOSCAR_INBOUND_TLS_CERT: required when BLOSCAR_INBOUND_TLS_CLIENT_CA is set".into(),
        ),
        (
            vec![
                ("BLOSCAR_INBOUND_TLS_CERT", missing.clone()),
                ("BLOSCAR_INBOUND_TLS_KEY", key.clone()),
            ],
            "BLOSCAR_INBOUND_TLS_CERT",
            format!("BLOSCAR_INBOUND_TLS_CERT: cannot read {missing}: "),
        ),
        (
            vec![
                ("BLOSCAR_INBOUND_TLS_CERT", garbage.clone()),
                ("BLOSCAR_INBOUND_TLS_KEY", key.clone()),
            ],
            "BLOSCAR_INBOUND_TLS_CERT",
            format!("BLOSCAR_INBOUND_TLS_CERT: {garbage}: no PEM certificate"),
        ),
        (
            vec![
                ("BLOSCAR_INBOUND_TLS_CERT", cert.clone()),
                ("BLOSCAR_INBOUND_TLS_KEY", other_key.clone()),
            ],
            "BLOSCAR_INBOUND_TLS_KEY",
            format!("BLOSCAR_INBOUND_TLS_KEY: {other_key}: cannot be used with the certificate"),
        ),
        (
            vec![
                ("BLOSCAR_INBOUND_TLS_CERT", cert.clone()),
                ("BLOSCAR_INBOUND_TLS_KEY", key.clone()),
                ("BLOSCAR_INBOUND_TLS_CLIENT_CA", garbage.clone()),
            ],
            "BLOSCAR_INBOUND_TLS_CLIENT_CA",
            format!("BLOSCAR_INBOUND_TLS_CLIENT_CA: {garbage}: no PEM certificate"),
        ),
        (
            [
                outbound.to_vec(),
                vec![("BLOSCAR_OUTBOUND_TLS_CA", missing.clone())],
            ]
            .concat(),
            "BLOSCAR_OUTBOUND_TLS_CA",
            format!("BLOSCAR_OUTBOUND_TLS_CA: cannot read {missing}: "),
        ),
        (
            [
                outbound.to_vec(),
                vec![
                    ("BLOSCAR_OUTBOUND_TLS_CA", ca_file.clone()),
                    ("BLOSCAR_OUTBOUND_TLS_CERT", cert.clone()),
                ],
            ]
            .concat(),
            "BLOSCAR_OUTBOUND_TLS_KEY",
            "BLOSCAR_OUTBOUND_TLS_KEY: required when BLOSCAR_OUTBOUND_TLS_CERT is set".into(),
        ),
        (
            [
                outbound.to_vec(),
                vec![
                    ("BLOSCAR_OUTBOUND_TLS_CA", ca_file.clone()),
                    ("BLOSCAR_OUTBOUND_TLS_CERT", cert.clone()),
                    ("BLOSCAR_OUTBOUND_TLS_KEY", garbage.clone()),
                ],
            ]
            .concat(),
            "BLOSCAR_OUTBOUND_TLS_KEY",
            format!("BLOSCAR_OUTBOUND_TLS_KEY: {garbage}: no PEM private key"),
        ),
    ];
    for (env, variable, expected) in cases {
        let out = std::process::Command::new(common::process::BIN)
            .env_clear()
            .env("BLOSCAR_ADMIN_LISTEN", "127.0.0.1:0")
            .env("BLOSCAR_INBOUND_LISTEN", "127.0.0.1:0")
            .env("BLOSCAR_OUTBOUND_LISTEN", "127.0.0.1:0")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(78), "{env:?}:\n{stderr}");
        assert!(out.stdout.is_empty());
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&format!("variable=\"{variable}\" error={expected}")),
            "{env:?}:\n{stderr}"
        );
        assert!(stderr.ends_with(" exit_code=78\n"), "{stderr}");
    }
}

/// A plain HTTP/1.1 app: answers 201 with the request body, and the HTTP version it saw
/// in `x-app-saw`.
async fn start_http1_app() -> SocketAddr {
    use http_body_util::{BodyExt, Full};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(
                |request: http::Request<hyper::body::Incoming>| async move {
                    let version = format!("{:?}", request.version());
                    let body = request.into_body().collect().await?.to_bytes();
                    Ok::<_, hyper::Error>(
                        http::Response::builder()
                            .status(201)
                            .header("x-app-saw", version)
                            .body(Full::new(body))
                            .unwrap(),
                    )
                },
            );
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_passes_through_over_mutual_tls() {
    let app = start_http1_app().await;
    let files = Files::new("http1");
    let ca = Ca::new("bloscar test CA");
    let server = ca.issue(&[INBOUND_NAME], &[]);
    let client = ca.issue(&[], &[CLIENT_ID]);
    let ca_file = files.write("ca.crt", &ca.pem());
    let listen = free_addr();
    let mut env = common_env();
    env.extend([
        ("BLOSCAR_MODE", "inbound".to_string()),
        ("BLOSCAR_INBOUND_LISTEN", listen.to_string()),
        ("BLOSCAR_INBOUND_FORWARD", app.to_string()),
        (
            "BLOSCAR_INBOUND_TLS_CERT",
            files.write("tls.crt", &server.cert),
        ),
        (
            "BLOSCAR_INBOUND_TLS_KEY",
            files.write("tls.key", &server.key),
        ),
        ("BLOSCAR_INBOUND_TLS_CLIENT_CA", ca_file.clone()),
    ]);
    let inbound = Sidecar::start(env).await;
    let (outbound, out) = outbound(
        listen,
        &[
            ("BLOSCAR_OUTBOUND_TLS_CA", ca_file),
            ("BLOSCAR_OUTBOUND_TLS_SERVER_NAME", INBOUND_NAME.into()),
        ]
        .into_iter()
        .chain(files.client_identity("client", &client))
        .collect::<Vec<_>>(),
    )
    .await;
    let mut stream = TcpStream::connect(out).await.unwrap();
    stream
        .write_all(
            b"POST /upload HTTP/1.1\r\nHost: app.example\r\nContent-Length: 11\r\n\
              Connection: close\r\n\r\nhello world",
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(
        response.starts_with("HTTP/1.1 201"),
        "{response}\n{}\n{}",
        outbound.logs(),
        inbound.logs()
    );
    assert!(response.contains("x-app-saw: HTTP/1.1"), "{response}");
    assert!(response.ends_with("hello world"), "{response}");
    assert_eq!(
        inbound.metric("bloscar_tls_handshake_failures_total").await,
        0.0
    );
}
