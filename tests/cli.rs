//! The `bloscar` binary as users run it: the command line, configuration errors, the
//! admin listener, and draining on SIGTERM with a real tonic server and client through
//! both roles of one process.

#[path = "common/process.rs"]
#[allow(dead_code)]
mod process;
#[path = "common/raw.rs"]
mod raw;
#[path = "common/server.rs"]
#[allow(dead_code)]
mod server;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::{Command, ExitStatus, Output};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bloscar::pb::inference::{
    ModelInferRequest, ModelInferResponse, ModelStreamInferResponse, model_infer_response,
};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use process::{BIN, PATIENCE, Process, free_addr, sidecar_command};
use prost::Message;
use raw::RawCodec;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tonic::server::Grpc;
use tonic::{Request, Response, Status};

const STREAM_METHOD: &str = "/inference.GRPCInferenceService/ModelStreamInfer";

fn bloscar(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run bloscar")
}

#[test]
fn version_and_help() {
    let out = bloscar(&["--version"], &[]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("bloscar {}\n", env!("CARGO_PKG_VERSION"))
    );

    let out = bloscar(&["--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("Usage: bloscar [COMMAND]"), "{help}");
    assert!(help.contains("run "), "{help}");
    for variable in bloscar::config::VARIABLES {
        assert!(
            help.contains(variable.name),
            "{} missing:\n{help}",
            variable.name
        );
    }

    let out = bloscar(&["help", "run"], &[]);
    assert!(out.status.success());
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("Usage: bloscar run")
    );

    // A bad command line is EX_USAGE, apart from a bad environment (EX_CONFIG).
    let out = bloscar(&["--no-such-flag"], &[]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .starts_with("error: unexpected argument '--no-such-flag' found")
    );
}

#[test]
fn help_reads_well_in_a_terminal() {
    let out = bloscar(&["--help"], &[]);
    let help = String::from_utf8(out.stdout).unwrap();
    for line in help.lines() {
        assert!(line.chars().count() <= 80, "longer than 80 columns: {line}");
        assert!(!line.contains("]("), "a Markdown link: {line}");
        assert!(!line.contains("table below"), "{line}");
    }
    assert!(
        help.contains(
            "\n  BLOSCAR_MEMORY_BUDGET (half the container's memory limit, else 1 GiB)\n"
        )
    );
    assert!(help.contains("see docs/sidecar.md#memory."), "{help}");
    assert!(
        help.contains("78 (EX_CONFIG) for an invalid BLOSCAR_* variable or an OTEL_*"),
        "{help}"
    );
    assert!(
        help.contains("\nTraces:\n  Off unless OTEL_EXPORTER_OTLP_ENDPOINT"),
        "{help}"
    );
}

#[test]
fn invalid_configuration_exits_78_with_one_log_line_naming_the_variable() {
    let cases = [
        (
            ("BLOSCAR_CODEC", "lz5"),
            "BLOSCAR_CODEC",
            "BLOSCAR_CODEC: invalid value \"lz5\": expected auto, or codec[:level[:shuffle]]",
        ),
        (
            ("BLOSCAR_MODE", "outbound"),
            "BLOSCAR_OUTBOUND_FORWARD",
            "BLOSCAR_OUTBOUND_FORWARD: required when BLOSCAR_MODE is outbound or both",
        ),
        (
            ("BLOSCAR_MAX_MESSAGE_BYTES", "0"),
            "BLOSCAR_MAX_MESSAGE_BYTES",
            "BLOSCAR_MAX_MESSAGE_BYTES: invalid value \"0\": expected a size",
        ),
        (
            ("BLOSCAR_ADMIN_LISTEN", "localhost:9449"),
            "BLOSCAR_ADMIN_LISTEN",
            "BLOSCAR_ADMIN_LISTEN: invalid value \"localhost:9449\": expected ip:port",
        ),
        (
            ("BLOSCAR_LOG_FORMAT", "xml"),
            "BLOSCAR_LOG_FORMAT",
            "BLOSCAR_LOG_FORMAT: invalid value \"xml\": expected text or json",
        ),
    ];
    for ((name, value), variable, expected) in cases {
        for args in [&[][..], &["run"][..]] {
            // Text: one line in tracing's format.
            let out = bloscar(args, &[(name, value)]);
            assert_eq!(out.status.code(), Some(78), "{name}={value}");
            assert!(out.stdout.is_empty());
            let stderr = String::from_utf8(out.stderr).unwrap();
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
            assert!(
                stderr.contains(" ERROR bloscar::cli::run: invalid configuration "),
                "{stderr}"
            );
            assert!(
                stderr.contains(&format!("variable=\"{variable}\" error={expected}")),
                "{stderr}"
            );
            assert!(stderr.ends_with(" exit_code=78\n"), "{stderr}");
        }
        if name == "BLOSCAR_LOG_FORMAT" {
            continue;
        }
        // JSON: one JSON object, whatever variable is wrong.
        let out = bloscar(&[], &[(name, value), ("BLOSCAR_LOG_FORMAT", "json")]);
        assert_eq!(out.status.code(), Some(78), "{name}={value}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        let line: serde_json::Value = serde_json::from_str(&stderr).expect("a JSON line");
        assert_eq!(line["level"], "ERROR", "{line}");
        assert_eq!(line["target"], "bloscar::cli::run", "{line}");
        assert_eq!(line["message"], "invalid configuration", "{line}");
        assert_eq!(line["variable"], variable, "{line}");
        assert_eq!(line["exit_code"], 78, "{line}");
        let error = line["error"].as_str().unwrap();
        assert!(error.starts_with(expected), "{line}");
    }
}

#[test]
fn a_listener_that_cannot_bind_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = bloscar(
        &[],
        &[
            ("BLOSCAR_INBOUND_LISTEN", "127.0.0.1:0"),
            ("BLOSCAR_ADMIN_LISTEN", &addr),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let failures: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("cannot listen"))
        .collect();
    assert_eq!(failures.len(), 1, "logged once:\n{stderr}");
    assert!(
        failures[0].contains(&format!(
            " ERROR bloscar::cli::run: cannot listen variable=\"BLOSCAR_ADMIN_LISTEN\" address={addr} error=BLOSCAR_ADMIN_LISTEN: cannot listen on {addr}: "
        )),
        "{stderr}"
    );

    let out = bloscar(
        &[],
        &[
            ("BLOSCAR_INBOUND_LISTEN", "127.0.0.1:0"),
            ("BLOSCAR_ADMIN_LISTEN", &addr),
            ("BLOSCAR_LOG_FORMAT", "json"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let failures: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|line| line["level"] == "ERROR")
        .collect();
    assert_eq!(failures.len(), 1, "{stderr}");
    assert_eq!(failures[0]["message"], "cannot listen");
    assert_eq!(failures[0]["variable"], "BLOSCAR_ADMIN_LISTEN");
    assert_eq!(failures[0]["address"], addr.as_str());
    drop(taken);
}

/// The binary running in the background as a sidecar, with its admin listener.
struct Sidecar {
    process: Process,
    admin: SocketAddr,
}

impl Sidecar {
    fn start(env: &[(&str, String)]) -> Sidecar {
        let admin = free_addr();
        let mut command = sidecar_command(admin, &[("BLOSCAR_LOG", "info,bloscar=debug".into())]);
        command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        Sidecar {
            process: Process::spawn(command),
            admin,
        }
    }

    fn logs(&self) -> String {
        self.process.logs()
    }

    fn signal(&self, name: &str) {
        self.process.signal(name);
    }

    /// Polls `/ready` until it answers 200.
    async fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            if let Ok((StatusCode::OK, _, _)) = get(self.admin, "/ready").await {
                return;
            }
            self.process.assert_running();
            assert!(start.elapsed() < PATIENCE, "never ready:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_exit(&mut self) -> ExitStatus {
        self.process.wait_exit().await
    }
}

/// One HTTP/1.1 GET with a real hyper client: status, headers, body.
async fn get(addr: SocketAddr, path: &str) -> io::Result<(StatusCode, HeaderMap, String)> {
    request(addr, http::Method::GET, path).await
}

async fn request(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
) -> io::Result<(StatusCode, HeaderMap, String)> {
    request_accepting(addr, method, path, "*/*").await
}

async fn request_accepting(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
    accept: &str,
) -> io::Result<(StatusCode, HeaderMap, String)> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    tokio::spawn(connection);
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, addr.to_string())
        .header(http::header::ACCEPT, accept)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .map_err(io::Error::other)?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(io::Error::other)?.to_bytes();
    Ok((
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn admin_endpoints_and_sigint() {
    let mut sidecar = Sidecar::start(&[("BLOSCAR_INBOUND_LISTEN", free_addr().to_string())]);
    sidecar.wait_ready().await;
    let admin = sidecar.admin;

    let (status, headers, body) = get(admin, "/live").await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "live\n"));
    assert_eq!(content_type(&headers), "text/plain; charset=utf-8");

    let (status, _, body) = get(admin, "/ready").await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ready\n"));

    // Prometheus asks for OpenMetrics first; a plain client gets the text format 0.0.4.
    let (status, headers, body) = request_accepting(
        admin,
        http::Method::GET,
        "/metrics",
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        content_type(&headers),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(
        body.contains("# TYPE bloscar_streams_in_flight gauge\n"),
        "{body}"
    );
    assert!(
        body.contains("\n# TYPE bloscar_connections_refused counter\n"),
        "{body}"
    );
    assert!(body.contains("\nbloscar_streams_in_flight 0\n"), "{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    let (status, headers, body) = request_accepting(
        admin,
        http::Method::GET,
        "/metrics",
        "text/plain;version=0.0.4",
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        content_type(&headers),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(
        body.contains("\n# TYPE bloscar_connections_refused_total counter\n"),
        "{body}"
    );
    assert!(body.contains("\nbloscar_streams_in_flight 0\n"), "{body}");
    assert!(!body.contains("# EOF"), "{body}");

    let (status, _, _) = get(admin, "/").await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = get(admin, "/metrics/extra").await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, headers, _) = request(admin, http::Method::POST, "/ready").await.unwrap();
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers[http::header::ALLOW], "GET, HEAD");
    let (status, _, body) = request(admin, http::Method::HEAD, "/live").await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""));

    sidecar.signal("INT");
    let status = sidecar.wait_exit().await;
    assert_eq!(status.code(), Some(0), "{}", sidecar.logs());
    let logs = sidecar.logs();
    assert!(
        logs.contains("shutting down") && logs.contains("SIGINT"),
        "{logs}"
    );
}

#[tokio::test]
async fn json_logs_and_a_warning_for_unknown_variables() {
    let mut sidecar = Sidecar::start(&[
        ("BLOSCAR_INBOUND_LISTEN", free_addr().to_string()),
        ("BLOSCAR_LOG_FORMAT", "json".into()),
        ("BLOSCAR_CODE", "zstd".into()),
    ]);
    sidecar.wait_ready().await;
    sidecar.signal("TERM");
    let status = sidecar.wait_exit().await;
    assert_eq!(status.code(), Some(0), "{}", sidecar.logs());
    let logs = sidecar.logs();
    assert!(logs.lines().count() >= 4, "{logs}");
    for line in logs.lines() {
        assert!(
            line.starts_with("{\"timestamp\":")
                && line.ends_with('}')
                && line.contains("\"level\":"),
            "not a JSON log line: {line}"
        );
    }
    let warning = logs
        .lines()
        .find(|line| line.contains("\"variable\":\"BLOSCAR_CODE\""))
        .unwrap_or_else(|| panic!("no warning about BLOSCAR_CODE:\n{logs}"));
    assert!(warning.contains("\"level\":\"WARN\""), "{warning}");
}

/// The JSON type of a value, for checking that a field keeps one type on every line.
fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "bool",
        serde_json::Value::Number(n) if n.is_f64() => "float",
        serde_json::Value::Number(_) => "integer",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// A KServe request for model echo:1 with one smooth 256 KiB FP32 input.
fn echo_request() -> Bytes {
    let values: Vec<u8> = (0..65536)
        .flat_map(|k| ((k as f32) * 0.001).to_le_bytes())
        .collect();
    let request = ModelInferRequest {
        model_name: "echo".into(),
        model_version: "1".into(),
        inputs: vec![
            bloscar::pb::inference::model_infer_request::InferInputTensor {
                name: "INPUT0".into(),
                datatype: "FP32".into(),
                shape: vec![1, 65536],
                ..Default::default()
            },
        ],
        raw_input_contents: vec![values],
        ..Default::default()
    };
    Bytes::from(request.encode_to_vec())
}

#[tokio::test]
async fn json_logs_keep_one_type_per_field_name_peers_and_an_access_line_per_call() {
    let app = server::start_server().await;
    let inbound = free_addr();
    let outbound = free_addr();
    let mut sidecar = Sidecar::start(&[
        ("BLOSCAR_MODE", "both".into()),
        ("BLOSCAR_INBOUND_LISTEN", inbound.to_string()),
        ("BLOSCAR_INBOUND_FORWARD", app.addr.to_string()),
        ("BLOSCAR_OUTBOUND_LISTEN", outbound.to_string()),
        ("BLOSCAR_OUTBOUND_FORWARD", inbound.to_string()),
        ("BLOSCAR_CODEC", "lz4:5:byte".into()),
        ("BLOSCAR_LOG_FORMAT", "json".into()),
        ("BLOSCAR_LOG", "info,bloscar::access=debug".into()),
    ]);
    sidecar.wait_ready().await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{outbound}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let request = echo_request();
    let mut responses = Vec::new();
    // The first call teaches the outbound that its peer reads bloscar; the second is
    // encoded on the way.
    for _ in 0..2 {
        let mut client = tonic::client::Grpc::new(channel.clone());
        client.ready().await.unwrap();
        let response = client
            .unary(
                Request::new(request.clone()),
                http::uri::PathAndQuery::from_static(server::MODEL_INFER),
                RawCodec,
            )
            .await
            .expect("the call succeeds")
            .into_inner();
        responses.push(response);
    }
    sidecar.signal("TERM");
    let status = sidecar.wait_exit().await;
    assert_eq!(status.code(), Some(0), "{}", sidecar.logs());
    let logs = sidecar.logs();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();

    // One JSON type per field name over the whole log, one casing for roles.
    let mut kinds: std::collections::BTreeMap<String, &str> = Default::default();
    for line in &lines {
        for (name, value) in line.as_object().unwrap() {
            let kind = json_kind(value);
            let first = *kinds.entry(name.clone()).or_insert(kind);
            assert_eq!(first, kind, "{name} changes type: {line}\n{logs}");
        }
        if let Some(role) = line.get("role") {
            assert!(role == "inbound" || role == "outbound", "{line}");
        }
    }
    for (name, kind) in [
        ("grace_secs", "integer"),
        ("handshake_timeout_secs", "integer"),
        ("idle_timeout_secs", "integer"),
        ("request_bytes", "integer"),
        ("response_bytes", "integer"),
        ("duration_ms", "float"),
        ("mode", "string"),
    ] {
        assert_eq!(kinds.get(name).copied(), Some(kind), "{name}\n{logs}");
    }
    let find = |message: &str| -> Vec<&serde_json::Value> {
        lines.iter().filter(|l| l["message"] == message).collect()
    };
    let started = find("started");
    assert_eq!(started.len(), 1, "{logs}");
    assert_eq!(started[0]["mode"], "both");
    assert_eq!(started[0]["outbound_forward"], inbound.to_string());
    let learned = find("learned the peer's capability");
    assert_eq!(learned.len(), 1, "{logs}");
    assert_eq!(learned[0]["peer"], inbound.to_string());
    assert_eq!(learned[0]["role"], "outbound");
    assert_eq!(learned[0]["speaks_bloscar"], true);
    assert_eq!(find("draining").len(), 1, "{logs}");
    assert_eq!(find("stopped").len(), 1, "{logs}");

    // The access log: one line per call and role, in call order.
    let access: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["target"] == "bloscar::access")
        .collect();
    assert_eq!(access.len(), 4, "{logs}");
    let of = |role: &str| -> Vec<&serde_json::Value> {
        access
            .iter()
            .copied()
            .filter(|l| l["role"] == role)
            .collect()
    };
    let (out_lines, in_lines) = (of("outbound"), of("inbound"));
    assert_eq!((out_lines.len(), in_lines.len()), (2, 2), "{logs}");
    for line in &access {
        assert_eq!(line["level"], "DEBUG");
        assert_eq!(line["message"], "call");
        assert_eq!(line["method"], server::MODEL_INFER);
        // The first call's request passed on unread still names its model.
        assert_eq!(line["model"], "echo:1", "{line}");
        assert_eq!(line["status"], "ok");
        assert!(line["duration_ms"].as_f64().unwrap() > 0.0, "{line}");
        assert!(line["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    }
    for (line, response) in out_lines.iter().zip(&responses) {
        // What the client app sent and got back: identity, each message with its
        // 5-byte gRPC prefix.
        assert_eq!(line["forward"], inbound.to_string());
        assert_eq!(line["request_bytes"], request.len() as u64 + 5, "{line}");
        assert_eq!(line["response_bytes"], response.len() as u64 + 5, "{line}");
    }
    for line in &in_lines {
        assert_eq!(line["forward"], app.addr.to_string());
    }
    // Between the sidecars: identity on the first call, compressed on the second.
    assert_eq!(in_lines[0]["request_bytes"], request.len() as u64 + 5);
    let compressed = in_lines[1]["request_bytes"].as_u64().unwrap();
    assert!(compressed < request.len() as u64 / 4, "{}", in_lines[1]);
}

/// A server-streaming tonic service that sends its first response at once and the rest
/// only when the test opens the gate, so the stream is surely in flight while the
/// sidecar shuts down.
#[derive(Clone)]
struct GatedStream {
    responses: Arc<Vec<Bytes>>,
    gate: watch::Receiver<bool>,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;
type ResponseStream = Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, Status>> + Send>>;

impl<B> tower::Service<http::Request<B>> for GatedStream
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let handler = self.clone();
        Box::pin(async move { Ok(Grpc::new(RawCodec).server_streaming(handler, request).await) })
    }
}

impl tower::Service<Request<Bytes>> for GatedStream {
    type Response = Response<ResponseStream>;
    type Error = Status;
    type Future = BoxFuture<Result<Self::Response, Status>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request<Bytes>) -> Self::Future {
        let responses = self.responses.clone();
        let gate = self.gate.clone();
        Box::pin(async move {
            let stream = futures_util::stream::unfold((0usize, gate), move |(i, mut gate)| {
                let responses = responses.clone();
                async move {
                    let message = responses.get(i)?.clone();
                    if i > 0 {
                        let _ = gate.wait_for(|open| *open).await;
                    }
                    Some((Ok(message), (i + 1, gate)))
                }
            });
            Ok(Response::new(Box::pin(stream) as ResponseStream))
        })
    }
}

/// KServe stream responses, each with a smooth 256 KiB FP32 output worth compressing.
fn stream_responses(count: usize) -> Vec<Bytes> {
    (0..count)
        .map(|i| {
            let values: Vec<u8> = (0..65536)
                .flat_map(|k| ((k as f32 * 0.001).sin() + i as f32).to_le_bytes())
                .collect();
            let response = ModelStreamInferResponse {
                error_message: String::new(),
                infer_response: Some(ModelInferResponse {
                    model_name: "slow".into(),
                    id: i.to_string(),
                    outputs: vec![model_infer_response::InferOutputTensor {
                        name: "out".into(),
                        datatype: "FP32".into(),
                        shape: vec![65536],
                        ..Default::default()
                    }],
                    raw_output_contents: vec![values],
                    ..Default::default()
                }),
            };
            Bytes::from(response.encode_to_vec())
        })
        .collect()
}

/// A gated server stream in flight through both roles of one bloscar process, its first
/// response received.
struct StreamInFlight {
    sidecar: Sidecar,
    inbound: SocketAddr,
    outbound: SocketAddr,
    responses: Arc<Vec<Bytes>>,
    open_gate: watch::Sender<bool>,
    stream: tonic::Streaming<Bytes>,
    first: Bytes,
}

async fn stream_in_flight(grace_secs: u64) -> StreamInFlight {
    // The app server: a real tonic server behind the inbound role.
    let responses = Arc::new(stream_responses(8));
    let (open_gate, gate) = watch::channel(false);
    let server_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_addr = server_listener.local_addr().unwrap();
    let service = GatedStream {
        responses: responses.clone(),
        gate,
    };
    tokio::spawn(tonic::transport::Server::builder().serve_with_incoming(
        service,
        tonic::transport::server::TcpIncoming::from(server_listener),
    ));

    // One process with both roles: the client app -> outbound -> inbound -> server app.
    let inbound = free_addr();
    let outbound = free_addr();
    let mut sidecar = Sidecar::start(&[
        ("BLOSCAR_MODE", "both".into()),
        ("BLOSCAR_INBOUND_LISTEN", inbound.to_string()),
        ("BLOSCAR_INBOUND_FORWARD", server_addr.to_string()),
        ("BLOSCAR_OUTBOUND_LISTEN", outbound.to_string()),
        ("BLOSCAR_OUTBOUND_FORWARD", inbound.to_string()),
        ("BLOSCAR_CODEC", "lz4:5:byte".into()),
        ("BLOSCAR_SHUTDOWN_GRACE_SECS", grace_secs.to_string()),
    ]);
    sidecar.wait_ready().await;

    // The client app: a real tonic client through the outbound listener.
    let channel = tonic::transport::Channel::from_shared(format!("http://{outbound}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = tonic::client::Grpc::new(channel).max_decoding_message_size(64 << 20);
    client.ready().await.unwrap();
    let request = ModelInferRequest {
        model_name: "slow".into(),
        ..Default::default()
    };
    let mut stream = client
        .server_streaming(
            Request::new(Bytes::from(request.encode_to_vec())),
            http::uri::PathAndQuery::from_static(STREAM_METHOD),
            RawCodec,
        )
        .await
        .expect("stream starts")
        .into_inner();
    let first = stream.next().await.expect("a first response").unwrap();
    assert_eq!(first, responses[0]);
    StreamInFlight {
        sidecar,
        inbound,
        outbound,
        responses,
        open_gate,
        stream,
        first,
    }
}

#[tokio::test]
async fn sigterm_lets_a_stream_in_flight_finish_and_refuses_new_connections() {
    let StreamInFlight {
        mut sidecar,
        inbound,
        outbound,
        responses,
        open_gate,
        mut stream,
        first,
    } = stream_in_flight(120).await;

    // The admin listener sees the call in flight and the first response encoded.
    let (_, _, metrics) = get(sidecar.admin, "/metrics").await.unwrap();
    let in_flight = metric(&metrics, "bloscar_streams_in_flight ");
    assert!(in_flight >= 1.0, "{metrics}");
    let encoded = metric(
        &metrics,
        &format!(
            "bloscar_messages_total{{direction=\"response\",outcome=\"encoded\",method=\"{STREAM_METHOD}\""
        ),
    );
    assert!(encoded >= 1.0, "{metrics}");

    sidecar.signal("TERM");

    // Draining: not ready any more, the proxy listeners refuse new connections.
    let start = Instant::now();
    loop {
        let (status, _, body) = get(sidecar.admin, "/ready").await.unwrap();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(body, "draining\n");
            break;
        }
        assert_eq!(status, StatusCode::OK);
        assert!(start.elapsed() < PATIENCE, "{}", sidecar.logs());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for addr in [outbound, inbound] {
        let start = Instant::now();
        loop {
            match TcpStream::connect(addr).await {
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => break,
                Err(e) => panic!("connecting to {addr}: {e}"),
                Ok(_) => {
                    assert!(start.elapsed() < PATIENCE, "{addr} still accepts");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
    assert!(
        sidecar.process.child.try_wait().unwrap().is_none(),
        "exited with the stream in flight:\n{}",
        sidecar.logs()
    );

    // The stream in flight finishes, every message bit-exact, with an OK status.
    open_gate.send(true).unwrap();
    let mut received = vec![first];
    while let Some(message) = stream.next().await {
        received.push(message.expect("stream ends with OK"));
    }
    assert_eq!(received.len(), responses.len());
    for (got, sent) in received.iter().zip(responses.iter()) {
        assert!(got == sent, "a response changed on the way");
    }

    let status = sidecar.wait_exit().await;
    assert_eq!(status.code(), Some(0), "{}", sidecar.logs());
    let logs = sidecar.logs();
    assert!(
        logs.contains("SIGTERM") && logs.contains("draining"),
        "{logs}"
    );
}

#[tokio::test]
async fn the_grace_period_bounds_the_drain() {
    let StreamInFlight {
        mut sidecar,
        mut stream,
        open_gate,
        ..
    } = stream_in_flight(1).await;
    sidecar.signal("TERM");
    // The server never sends the rest: after the grace period the process closes the
    // stream and still exits cleanly.
    let status = sidecar.wait_exit().await;
    assert_eq!(status.code(), Some(0), "{}", sidecar.logs());
    let logs = sidecar.logs();
    assert!(logs.contains("grace period over"), "{logs}");
    // Cut short: the client sees an error, never a clean end after one message.
    let end = stream.next().await;
    assert!(matches!(end, Some(Err(_))), "{end:?}");
    drop(open_gate);
}

/// The value of the series whose line starts with `prefix` (0 when absent).
fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit_once(' '))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0.0)
}
