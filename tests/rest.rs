//! KServe v2 REST inference through the real bloscar binary (both roles in one process,
//! a byte-counting relay between them) to a hyper server that answers as an inference
//! server does: binary tensors and JSON bodies compressed between the sidecars and
//! restored exactly, over HTTP/1.1 and HTTP/2; the app's own gzip respected; every other
//! path passed through; bad input answered with an HTTP error and a JSON body while the
//! proxy keeps serving.

mod common;

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::Relay;
use common::process::{Process, free_addr, sidecar_command};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The largest REST body the sidecars hold in these tests.
const LIMIT: usize = 1 << 20;

/// A request as the app received it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// The app: answers inference requests as KServe v2 servers do (binary outputs echo
/// the binary inputs, JSON outputs echo the JSON inputs), gzips answers for clients
/// that accept gzip, echoes bodies in the client's own coding, and answers health,
/// metadata and repository paths.
async fn start_app() -> (SocketAddr, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Log = Arc::default();
    let record = Arc::clone(&log);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let record = Arc::clone(&record);
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let record = Arc::clone(&record);
                async move {
                    let (parts, body) = request.into_parts();
                    let body = body.collect().await.unwrap().to_bytes();
                    let seen = Seen {
                        method: parts.method,
                        path: parts.uri.path().to_owned(),
                        headers: parts.headers,
                        body,
                    };
                    record.lock().unwrap().push(seen.clone());
                    Ok::<_, Infallible>(answer(&seen))
                }
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, log)
}

fn answer(seen: &Seen) -> Response<Full<Bytes>> {
    let respond = |status: StatusCode, headers: &[(&str, String)], body: Vec<u8>| {
        let mut builder = Response::builder().status(status);
        for (k, v) in headers {
            builder = builder.header(*k, v);
        }
        builder.body(Full::new(Bytes::from(body))).unwrap()
    };
    if seen.method != Method::POST || !seen.path.ends_with("/infer") {
        return match seen.path.as_str() {
            "/v2/health/ready" => respond(StatusCode::OK, &[], Vec::new()),
            "/v2/repository/index" => respond(
                StatusCode::OK,
                &[("content-type", "application/json".into())],
                br#"[{"name":"m","state":"READY"}]"#.to_vec(),
            ),
            _ => respond(
                StatusCode::OK,
                &[("content-type", "application/json".into())],
                br#"{"name":"m","platform":"echo","inputs":[]}"#.to_vec(),
            ),
        };
    }
    if let Some(coding) = seen.headers.get("content-encoding") {
        let coding = coding.to_str().unwrap().to_owned();
        return respond(
            StatusCode::OK,
            &[("content-encoding", coding)],
            seen.body.to_vec(),
        );
    }
    let (mut headers, body) = match seen.headers.get("inference-header-content-length") {
        Some(len) => {
            let len: usize = len.to_str().unwrap().parse().unwrap();
            let header: Value = serde_json::from_slice(&seen.body[..len]).unwrap();
            let outputs: Vec<Value> = header["inputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    json!({"name": t["name"], "datatype": t["datatype"], "shape": t["shape"],
                           "parameters": {"binary_data_size": t["parameters"]["binary_data_size"]}})
                })
                .collect();
            let mut out =
                serde_json::to_vec(&json!({"model_name": "m", "outputs": outputs})).unwrap();
            let header_len = out.len();
            out.extend_from_slice(&seen.body[len..]);
            (
                vec![
                    ("content-type", "application/octet-stream".to_owned()),
                    ("inference-header-content-length", header_len.to_string()),
                ],
                out,
            )
        }
        None => {
            let request: Value = serde_json::from_slice(&seen.body).unwrap();
            let body =
                serde_json::to_vec(&json!({"model_name": "m", "outputs": request["inputs"]}))
                    .unwrap();
            (vec![("content-type", "application/json".to_owned())], body)
        }
    };
    let gzip = seen
        .headers
        .get_all("accept-encoding")
        .iter()
        .any(|v| v.to_str().unwrap().contains("gzip"));
    let body = if gzip {
        headers.push(("content-encoding", "gzip".into()));
        gzip_bytes(&body)
    } else {
        body
    };
    respond(StatusCode::OK, &headers, body)
}

fn gzip_bytes(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Both sidecars in one bloscar process, a relay counting the bytes between them.
struct Setup {
    outbound: SocketAddr,
    inbound: SocketAddr,
    admin: SocketAddr,
    relay: Relay,
    log: Log,
    process: Process,
}

impl Setup {
    async fn start() -> Setup {
        Setup::start_with(&[]).await
    }

    async fn start_with(extra: &[(&str, String)]) -> Setup {
        let (app, log) = start_app().await;
        let inbound = free_addr();
        let outbound = free_addr();
        let relay = Relay::start(inbound).await;
        let admin = free_addr();
        let env = [
            ("BLOSCAR_MODE", "both".to_owned()),
            ("BLOSCAR_INBOUND_LISTEN", inbound.to_string()),
            ("BLOSCAR_INBOUND_FORWARD", app.to_string()),
            ("BLOSCAR_OUTBOUND_LISTEN", outbound.to_string()),
            ("BLOSCAR_OUTBOUND_FORWARD", relay.addr.to_string()),
            ("BLOSCAR_CODEC", "lz4:5:byte".to_owned()),
            ("BLOSCAR_MIN_TENSOR_BYTES", "1024".to_owned()),
            ("BLOSCAR_MAX_HTTP_BODY_BYTES", LIMIT.to_string()),
        ];
        let env: Vec<(&str, String)> = env.iter().chain(extra).cloned().collect();
        let mut process = Process::spawn(sidecar_command(admin, &env));
        process.wait_listening(admin).await;
        Setup {
            outbound,
            inbound,
            admin,
            relay,
            log,
            process,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }

    async fn metrics(&self) -> String {
        let response = send(
            false,
            self.admin,
            Method::GET,
            "/metrics",
            &[],
            Bytes::new(),
        )
        .await;
        String::from_utf8(response.body().to_vec()).unwrap()
    }
}

async fn send(
    http2: bool,
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, String)],
    body: Bytes,
) -> Response<Bytes> {
    let mut builder = Client::builder(TokioExecutor::new());
    builder.http2_only(http2);
    let client = builder.build_http::<Full<Bytes>>();
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        request = request.header(*k, v);
    }
    let response = client
        .request(request.body(Full::new(body)).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

/// One binary input: name, datatype, shape, bytes.
struct Tensor {
    name: &'static str,
    datatype: &'static str,
    shape: Vec<usize>,
    data: Vec<u8>,
}

/// Inputs of every kind: smooth floats of each width, integers, a boolean mask, bytes
/// elements with their length prefixes, and a small tensor below the size threshold.
fn tensors() -> Vec<Tensor> {
    let n = 16 << 10;
    let bytes: Vec<u8> = (0..2000)
        .flat_map(|i| {
            let s = format!("label-{}", i % 7);
            let mut e = (s.len() as u32).to_le_bytes().to_vec();
            e.extend_from_slice(s.as_bytes());
            e
        })
        .collect();
    vec![
        Tensor {
            name: "fp32",
            datatype: "FP32",
            shape: vec![n],
            data: (0..n)
                .flat_map(|i| (i as f32 * 0.001).sin().to_le_bytes())
                .collect(),
        },
        Tensor {
            name: "fp16",
            datatype: "FP16",
            shape: vec![n],
            data: (0..n)
                .flat_map(|i| (0x3c00u16 + (i / 64) as u16).to_le_bytes())
                .collect(),
        },
        Tensor {
            name: "int64",
            datatype: "INT64",
            shape: vec![4, n / 4],
            data: (0..n as i64).flat_map(|i| (i / 3).to_le_bytes()).collect(),
        },
        Tensor {
            name: "mask",
            datatype: "BOOL",
            shape: vec![n],
            data: (0..n).map(|i| u8::from(i % 100 < 30)).collect(),
        },
        Tensor {
            name: "text",
            datatype: "BYTES",
            shape: vec![2000],
            data: bytes,
        },
        Tensor {
            name: "small",
            datatype: "UINT8",
            shape: vec![16],
            data: (0..16).collect(),
        },
    ]
}

/// A binary-extension request body and its header length.
fn binary_request(tensors: &[Tensor]) -> (Vec<u8>, usize) {
    let inputs: Vec<Value> = tensors
        .iter()
        .map(|t| {
            json!({"name": t.name, "datatype": t.datatype, "shape": t.shape,
                   "parameters": {"binary_data_size": t.data.len()}})
        })
        .collect();
    let mut body = serde_json::to_vec(&json!({
        "inputs": inputs,
        "outputs": tensors.iter().map(|t| json!({"name": t.name, "parameters": {"binary_data": true}})).collect::<Vec<_>>(),
    }))
    .unwrap();
    let header_len = body.len();
    for t in tensors {
        body.extend_from_slice(&t.data);
    }
    (body, header_len)
}

fn infer_headers(header_len: usize) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/octet-stream".to_owned()),
        ("inference-header-content-length", header_len.to_string()),
    ]
}

/// The binary part of a response, after its header.
fn binary_part(response: &Response<Bytes>) -> &[u8] {
    let len: usize = response.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    &response.body()[len..]
}

/// A POST of `body` to the inference path of model `m`.
async fn infer(
    http2: bool,
    addr: SocketAddr,
    headers: &[(&str, String)],
    body: impl Into<Bytes>,
) -> Response<Bytes> {
    send(
        http2,
        addr,
        Method::POST,
        "/v2/models/m/infer",
        headers,
        body.into(),
    )
    .await
}

/// `response` is a refusal with `status` and a JSON error that mentions `needle`.
fn assert_refused(response: &Response<Bytes>, status: StatusCode, needle: &str) {
    assert_eq!(response.status(), status);
    assert!(
        error_of(response).contains(needle),
        "{}",
        error_of(response)
    );
}

fn error_of(response: &Response<Bytes>) -> String {
    assert_eq!(response.headers()["content-type"], "application/json");
    let value: Value = serde_json::from_slice(response.body()).unwrap();
    value["error"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_tensors_cross_compressed_and_arrive_exact() {
    let setup = Setup::start().await;
    let tensors = tensors();
    let (body, header_len) = binary_request(&tensors);
    let binary: Vec<u8> = tensors.iter().flat_map(|t| t.data.clone()).collect();
    let headers = infer_headers(header_len);
    for (round, http2) in [(0, false), (1, false), (2, true)] {
        let before = setup.relay.counts();
        let path = "/v2/models/m/versions/2/infer";
        let response = send(
            http2,
            setup.outbound,
            Method::POST,
            path,
            &headers,
            Bytes::from(body.clone()),
        )
        .await;
        let (up, down) = (
            setup.relay.counts().0 - before.0,
            setup.relay.counts().1 - before.1,
        );
        assert_eq!(response.status(), StatusCode::OK);
        // What the app got: the exact body and lengths, no trace of the sidecars.
        let seen = setup.seen().pop().unwrap();
        assert_eq!(seen.body, body, "round {round}");
        assert_eq!(seen.headers["content-length"], body.len().to_string());
        assert_eq!(
            seen.headers["inference-header-content-length"],
            header_len.to_string()
        );
        for name in ["accept-encoding", "content-encoding", "bloscar-link-rate"] {
            assert!(seen.headers.get(name).is_none(), "{name}");
        }
        // What the client got: the app's exact answer.
        assert_eq!(binary_part(&response), binary);
        let expected = answer(&seen)
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(response.body(), &expected);
        assert_eq!(
            response.headers()["content-length"],
            expected.len().to_string()
        );
        for name in ["accept-encoding", "content-encoding", "bloscar-held"] {
            assert!(response.headers().get(name).is_none(), "{name}");
        }
        eprintln!(
            "round {round} (http2 {http2}): body {} B, link up {up} B, down {down} B",
            body.len()
        );
        if round == 0 {
            // The peer is not known yet: the request goes as it is; its answer tells
            // the outbound that the peer reads bloscar, and comes compressed.
            assert!(up as usize > body.len());
        } else {
            assert!((up as usize) < body.len() / 3, "up {up} of {}", body.len());
        }
        assert!(
            (down as usize) < expected.len() / 3,
            "down {down} of {}",
            expected.len()
        );
    }
    let metrics = setup.metrics().await;
    for line in [
        r#"bloscar_messages_total{direction="request",outcome="encoded",method="/v2/models/*/infer",model="m:2"} 2"#,
        r#"bloscar_messages_total{direction="response",outcome="encoded",method="/v2/models/*/infer",model="m:2"} 3"#,
        r#"bloscar_calls_total{method="/v2/models/*/infer",model="m:2",status="ok"} 6"#,
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_bodies_are_compressed_whole_and_the_apps_gzip_is_left_alone() {
    let setup = Setup::start().await;
    let data: Vec<i64> = (0..4000).map(|i| i * 7 % 1000).collect();
    let body = serde_json::to_vec(
        &json!({"inputs": [{"name": "x", "datatype": "INT64", "shape": [4000], "data": data}]}),
    )
    .unwrap();
    let json_headers = vec![("content-type", "application/json".to_owned())];
    for http2 in [false, false, true] {
        let before = setup.relay.counts();
        let response = infer(
            http2,
            setup.outbound,
            &json_headers,
            Bytes::from(body.clone()),
        )
        .await;
        let up = setup.relay.counts().0 - before.0;
        let seen = setup.seen().pop().unwrap();
        assert_eq!(seen.body, body);
        let expected = answer(&seen)
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(response.body(), &expected);
        eprintln!(
            "json (http2 {http2}): body {} B, link up {up} B",
            body.len()
        );
    }
    let before = setup.relay.counts();
    let _ = infer(
        false,
        setup.outbound,
        &json_headers,
        Bytes::from(body.clone()),
    )
    .await;
    assert!(((setup.relay.counts().0 - before.0) as usize) < body.len() / 3);

    // The client compresses its request and accepts a gzip answer: both travel as the
    // apps wrote them, and the app's Accept-Encoding is exactly the client's.
    let gz = gzip_bytes(&body);
    let mut headers = json_headers.clone();
    headers.push(("content-encoding", "gzip".into()));
    headers.push(("accept-encoding", "gzip, deflate".into()));
    let response = infer(false, setup.outbound, &headers, Bytes::from(gz.clone())).await;
    let seen = setup.seen().pop().unwrap();
    assert_eq!(seen.body, gz);
    assert_eq!(seen.headers["content-encoding"], "gzip");
    let accepted: Vec<_> = seen.headers.get_all("accept-encoding").iter().collect();
    assert_eq!(accepted, ["gzip, deflate"]);
    assert_eq!(response.headers()["content-encoding"], "gzip");
    assert_eq!(response.body(), &gz);

    // A plain request that accepts gzip: the app gzips its answer, which passes as it is.
    let headers = vec![
        ("content-type", "application/json".to_owned()),
        ("accept-encoding", "gzip".to_owned()),
    ];
    let response = infer(true, setup.outbound, &headers, Bytes::from(body.clone())).await;
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let seen = setup.seen().pop().unwrap();
    assert_eq!(seen.body, body);
    let plain = answer(&Seen {
        headers: HeaderMap::new(),
        ..seen
    })
    .into_body()
    .collect()
    .await
    .unwrap()
    .to_bytes();
    assert_eq!(gunzip(response.body()), plain);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_rest_paths_pass_through_unchanged() {
    let setup = Setup::start().await;
    for http2 in [false, true] {
        for (method, path, body) in [
            (Method::GET, "/v2/health/ready", Bytes::new()),
            (Method::GET, "/v2/models/m", Bytes::new()),
            (Method::GET, "/v2/models/m/infer", Bytes::new()),
            (
                Method::POST,
                "/v2/repository/index",
                Bytes::from_static(b"{}"),
            ),
        ] {
            let headers = vec![
                ("accept-encoding", "gzip".to_owned()),
                ("x-app", "1".to_owned()),
            ];
            let response = send(
                http2,
                setup.outbound,
                method.clone(),
                path,
                &headers,
                body.clone(),
            )
            .await;
            assert_eq!(response.status(), StatusCode::OK, "{method} {path}");
            let seen = setup.seen().pop().unwrap();
            assert_eq!((&seen.method, seen.path.as_str()), (&method, path));
            assert_eq!(seen.body, body);
            assert_eq!(seen.headers["accept-encoding"], "gzip");
            assert_eq!(seen.headers["x-app"], "1");
            let expected = answer(&seen)
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes();
            assert_eq!(response.body(), &expected);
            assert!(response.headers().get("content-encoding").is_none());
        }
    }
}

/// Sends raw HTTP/1.1 bytes and reads until the server closes or `wait` passes.
async fn raw_http1(addr: SocketAddr, bytes: &[u8], close_write: bool) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    if close_write {
        stream.shutdown().await.unwrap();
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    if out.windows(4).any(|w| w == b"\r\n\r\n") && out.ends_with(b"}") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_an_http_error_with_a_json_body_and_the_proxy_keeps_serving() {
    let setup = Setup::start().await;
    let tensors = tensors();
    let (body, header_len) = binary_request(&tensors);
    let good = |http2| {
        let body = Bytes::from(body.clone());
        let headers = infer_headers(header_len);
        let addr = setup.outbound;
        async move {
            let response = infer(http2, addr, &headers, body.clone()).await;
            assert_eq!(response.status(), StatusCode::OK);
            response
        }
    };
    // Learn the peer, so that what follows would be encoded.
    good(false).await;
    good(true).await;
    let delivered = setup.seen().len();

    // binary_data_size values that overrun the body.
    let mut short = body.clone();
    short.truncate(body.len() - 10);
    let response = infer(
        false,
        setup.outbound,
        &infer_headers(header_len),
        Bytes::from(short),
    )
    .await;
    assert_refused(&response, StatusCode::BAD_REQUEST, "binary_data_size");

    // A wrong Inference-Header-Content-Length: beyond the body, inside the JSON, junk.
    for (len, expect) in [
        ((body.len() + 1).to_string(), "beyond the body"),
        ((header_len - 5).to_string(), "not valid JSON"),
        ("twelve".to_owned(), "not a byte count"),
    ] {
        let headers = vec![("inference-header-content-length", len)];
        let response = infer(true, setup.outbound, &headers, Bytes::from(body.clone())).await;
        assert_refused(&response, StatusCode::BAD_REQUEST, expect);
    }

    // A body over the limit.
    let big = vec![7u8; LIMIT + 1];
    let response = infer(false, setup.outbound, &infer_headers(0), Bytes::from(big)).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(error_of(&response).contains("limit"));

    // A valid chunked body works.
    let chunks: Vec<Result<Frame<Bytes>, Infallible>> = body
        .chunks(10_000)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    let client = Client::builder(TokioExecutor::new()).build_http();
    let request = Request::post(format!("http://{}/v2/models/m/infer", setup.outbound))
        .header("inference-header-content-length", header_len.to_string())
        .body(StreamBody::new(futures_util::stream::iter(chunks)))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let answer_body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(answer_body.ends_with(&body[header_len..]));
    let seen = setup.seen().pop().unwrap();
    assert_eq!(seen.body, body);
    assert_eq!(seen.headers["content-length"], body.len().to_string());
    let delivered_chunked = setup.seen().len();
    assert_eq!(delivered_chunked, delivered + 1);

    // A truncated chunked body fails cleanly.
    let mut raw = format!(
        "POST /v2/models/m/infer HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ninference-header-content-length: {header_len}\r\n\r\n{:x}\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body[..body.len() / 2]);
    let answer_text = raw_http1(setup.outbound, &raw, true).await;
    assert!(
        answer_text.is_empty() || answer_text.starts_with("HTTP/1.1 400"),
        "{answer_text}"
    );

    // Corrupt bloscar bodies sent to the inbound: garbage, and a real container with a
    // flipped byte.
    let spec = bloscar::container::PatchSpec {
        offset: header_len,
        len: body.len() - header_len,
        elem_size: 1,
        options: bloscar::CompressOptions::default(),
    };
    let mut flipped = bloscar::container::encode(&body, &[spec]).unwrap().bytes;
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    for corrupt in [b"BLCRjunk".to_vec(), flipped] {
        let mut headers = infer_headers(header_len);
        headers.push(("content-encoding", "bloscar".into()));
        headers.push(("accept-encoding", "bloscar".into()));
        let response = infer(false, setup.inbound, &headers, Bytes::from(corrupt)).await;
        assert_refused(&response, StatusCode::BAD_REQUEST, "bloscar body");
    }

    // Nothing wrong reached the app, and the proxy still serves both protocols.
    assert_eq!(setup.seen().len(), delivered_chunked);
    good(false).await;
    good(true).await;
    assert_eq!(setup.seen().len(), delivered_chunked + 2);
    let metrics = setup.metrics().await;
    assert!(metrics.contains(
        r#"bloscar_calls_total{method="/v2/models/*/infer",model="m",status="invalid_argument"}"#
    ));
    assert!(metrics.contains(r#"bloscar_calls_total{method="/v2/models/*/infer",model="m",status="resource_exhausted"} 1"#));
    let logs = setup.process.logs();
    assert!(logs.contains("REST inference call refused"), "{logs}");
}

/// One sidecar of `mode` (`outbound` or `inbound`) in front of the app, without its peer.
async fn lone_sidecar(mode: &str) -> (SocketAddr, Log, Process) {
    let (app, log) = start_app().await;
    let listen = free_addr();
    let admin = free_addr();
    let upper = mode.to_uppercase();
    let env = [
        ("BLOSCAR_MODE", mode.to_owned()),
        (&*format!("BLOSCAR_{upper}_LISTEN"), listen.to_string()),
        (&*format!("BLOSCAR_{upper}_FORWARD"), app.to_string()),
        ("BLOSCAR_CODEC", "lz4:5:byte".to_owned()),
        ("BLOSCAR_MIN_TENSOR_BYTES", "1024".to_owned()),
    ]
    .map(|(k, v)| (k.to_owned(), v));
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let mut process = Process::spawn(sidecar_command(admin, &env));
    process.wait_listening(admin).await;
    (listen, log, process)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bloscar_never_reaches_an_app_or_a_client_without_a_sidecar() {
    let tensors = tensors();
    let (body, header_len) = binary_request(&tensors);
    let binary: Vec<u8> = tensors.iter().flat_map(|t| t.data.clone()).collect();

    // An outbound in front of a server without a sidecar: every request arrives as the
    // client sent it (plus the advertisement the server does not understand).
    let (outbound, log, _process) = lone_sidecar("outbound").await;
    for http2 in [false, false, true, false] {
        let response = infer(
            http2,
            outbound,
            &infer_headers(header_len),
            Bytes::from(body.clone()),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(binary_part(&response), binary);
        let seen = log.lock().unwrap().last().cloned().unwrap();
        assert_eq!(seen.body, body);
        assert!(seen.headers.get("content-encoding").is_none());
        assert!(seen.headers.get("bloscar-link-rate").is_none());
        let accepted: Vec<_> = seen.headers.get_all("accept-encoding").iter().collect();
        assert_eq!(accepted, ["bloscar"]);
    }

    // A client without a sidecar talking to an inbound: plain answers, no advertisement.
    let (inbound, log, _process) = lone_sidecar("inbound").await;
    for http2 in [false, true] {
        let response = infer(
            http2,
            inbound,
            &infer_headers(header_len),
            Bytes::from(body.clone()),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        let seen = log.lock().unwrap().last().cloned().unwrap();
        assert_eq!(seen.body, body);
        let expected = answer(&seen)
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(response.body(), &expected);
        for name in ["content-encoding", "accept-encoding", "bloscar-held"] {
            assert!(response.headers().get(name).is_none(), "{name}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_held_whole_are_charged_to_the_memory_budget() {
    // 8 MiB in all: 4 MiB per direction, so a 3 MiB body (held, and what it becomes)
    // can never fit, whatever the REST limit says.
    let setup = Setup::start_with(&[
        ("BLOSCAR_MEMORY_BUDGET", "8MiB".to_owned()),
        ("BLOSCAR_MAX_HTTP_BODY_BYTES", "64MiB".to_owned()),
    ])
    .await;
    let big = Tensor {
        name: "big",
        datatype: "FP32",
        shape: vec![3 << 18],
        data: vec![1; 3 << 20],
    };
    let (body, header_len) = binary_request(&[big]);
    let response = infer(
        false,
        setup.outbound,
        &infer_headers(header_len),
        Bytes::from(body),
    )
    .await;
    assert_refused(&response, StatusCode::PAYLOAD_TOO_LARGE, "memory budget");
    assert!(setup.seen().is_empty());
    // Smaller bodies still go through.
    let tensors = tensors();
    let (body, header_len) = binary_request(&tensors);
    let response = infer(
        false,
        setup.outbound,
        &infer_headers(header_len),
        Bytes::from(body.clone()),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(setup.seen().pop().unwrap().body, body);
}
