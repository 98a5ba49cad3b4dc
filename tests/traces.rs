//! Traces through both sidecars: the real binary as an outbound and an inbound process,
//! exporting OTLP to an in-test trace receiver (a tonic server of the OTLP
//! `TraceService`), one KServe call from a tonic client with a caller `traceparent` to a
//! real tonic echo app. The spans must form one trace under the caller's span:
//! outbound call -> inbound call -> the app, with the encode and decode work beside them.
//! A second call, which the app fails, is a trace of its own whose call spans are errors.
//!
//! `cargo test --test traces -- --nocapture` prints the trace received.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Command, ExitStatus};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::process::{BIN, Process, free_addr, sidecar_command};
use common::server::MODEL_INFER;
use common::{channel, kserve_request, raw_unary_request, smooth_f32, start_server};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use tokio::net::TcpListener;

/// The caller's trace and span, as its `traceparent` names them.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";
/// A second call, which the app fails, in a trace of its own.
const FAILED_TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const FAILED_CALLER_SPAN_ID: &str = "b7ad6b7169203331";

/// One span as received, with the service that sent it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    kind: SpanKind,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: BTreeMap<String, Value>,
    /// The span's status code (OTLP: 0 unset, 1 ok, 2 error).
    status: i32,
    micros: u64,
}

impl Received {
    fn attr(&self, key: &str) -> &Value {
        self.attributes
            .get(key)
            .unwrap_or_else(|| panic!("{} has no {key}: {self:?}", self.name))
    }

    fn int(&self, key: &str) -> i64 {
        match self.attr(key) {
            Value::IntValue(v) => *v,
            other => panic!("{key} is not an integer: {other:?}"),
        }
    }

    fn str(&self, key: &str) -> &str {
        match self.attr(key) {
            Value::StringValue(v) => v,
            other => panic!("{key} is not a string: {other:?}"),
        }
    }

    fn float(&self, key: &str) -> f64 {
        match self.attr(key) {
            Value::DoubleValue(v) => *v,
            other => panic!("{key} is not a float: {other:?}"),
        }
    }
}

/// The OTLP trace receiver: keeps every span it is sent.
#[derive(Default, Clone)]
struct Receiver {
    spans: Arc<Mutex<Vec<Received>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.clone())
                .map(|v| match v {
                    Value::StringValue(s) => s,
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                spans.push(Received {
                    service: service.clone(),
                    kind: span.kind(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: span
                        .attributes
                        .into_iter()
                        .filter_map(|kv| Some((kv.key, kv.value?.value?)))
                        .collect(),
                    status: span.status.map_or(0, |s| s.code),
                    micros: span
                        .end_time_unix_nano
                        .saturating_sub(span.start_time_unix_nano)
                        / 1000,
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn start_receiver() -> (SocketAddr, Receiver) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let receiver = Receiver::default();
    let service = TraceServiceServer::new(receiver.clone());
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .serve_with_incoming(service, incoming)
            .await
            .unwrap();
    });
    (addr, receiver)
}

/// The binary in the background as a sidecar, with its admin listener.
struct Sidecar {
    process: Process,
    admin: SocketAddr,
}

impl Sidecar {
    fn start(env: &[(&str, String)]) -> Sidecar {
        let admin = free_addr();
        Sidecar {
            process: Process::spawn(sidecar_command(admin, env)),
            admin,
        }
    }

    fn logs(&self) -> String {
        self.process.logs()
    }

    /// Waits until the admin listener accepts connections (it binds after the proxies).
    async fn wait_listening(&mut self) {
        self.process.wait_listening(self.admin).await;
    }

    /// SIGTERM, then the exit: the export is flushed on the way out.
    async fn terminate(&mut self) -> ExitStatus {
        self.process.signal("TERM");
        self.process.wait_exit().await
    }
}

/// The environment both sidecars share: lz4 with byte-shuffle on every tensor from
/// 1 KiB, and OTLP export to `collector`.
fn environment(collector: SocketAddr, service: &str) -> Vec<(&'static str, String)> {
    vec![
        ("BLOSCAR_CODEC", "lz4:5:byte".into()),
        ("BLOSCAR_MIN_TENSOR_BYTES", "1024".into()),
        ("BLOSCAR_LOG", "info".into()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{collector}")),
        ("OTEL_SERVICE_NAME", service.into()),
        // Short batches; the SIGTERM flush is what the test relies on.
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
    ]
}

/// Prints the trace as a tree under the caller's span.
fn print_tree(spans: &[Received], parent: &str, depth: usize) {
    for span in spans.iter().filter(|s| s.parent_span_id == parent) {
        let attributes: Vec<String> = span
            .attributes
            .iter()
            .map(|(k, v)| match v {
                Value::StringValue(s) => format!("{k}={s}"),
                Value::IntValue(i) => format!("{k}={i}"),
                Value::DoubleValue(f) => format!("{k}={f}"),
                Value::BoolValue(b) => format!("{k}={b}"),
                other => format!("{k}={other:?}"),
            })
            .collect();
        println!(
            "{:indent$}{} [{}] {:?} span={} parent={} {} us\n{:indent$}    {}",
            "",
            span.name,
            span.service,
            span.kind,
            span.span_id,
            span.parent_span_id,
            span.micros,
            "",
            attributes.join(" "),
            indent = depth * 2
        );
        print_tree(spans, &span.span_id, depth + 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_call_is_one_trace_through_both_sidecars() {
    let (collector, receiver) = start_receiver().await;
    let app = start_server().await;

    let inbound_addr = free_addr();
    let mut env = environment(collector, "bloscar-inbound");
    env.extend([
        ("BLOSCAR_MODE", "inbound".to_string()),
        ("BLOSCAR_INBOUND_LISTEN", inbound_addr.to_string()),
        ("BLOSCAR_INBOUND_FORWARD", app.addr.to_string()),
    ]);
    let mut inbound = Sidecar::start(&env);

    let outbound_addr = free_addr();
    let mut env = environment(collector, "bloscar-outbound");
    env.extend([
        ("BLOSCAR_MODE", "outbound".to_string()),
        ("BLOSCAR_OUTBOUND_LISTEN", outbound_addr.to_string()),
        ("BLOSCAR_OUTBOUND_FORWARD", inbound_addr.to_string()),
        // Encode from the first call: the test makes only one.
        ("BLOSCAR_UNKNOWN_PEER", "encode".to_string()),
    ]);
    let mut outbound = Sidecar::start(&env);
    inbound.wait_listening().await;
    outbound.wait_listening().await;

    // 256 KiB of a smooth FP32 ramp: far above the threshold, and compresses well.
    let request = kserve_request(smooth_f32(64 * 1024));
    let message = Bytes::from(request.encode_to_vec());
    let mut call = tonic::Request::new(message.clone());
    call.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01")
            .parse()
            .unwrap(),
    );
    let response = raw_unary_request(channel(outbound_addr).await, MODEL_INFER, call)
        .await
        .expect("the call succeeds");
    let echoed = common::server::kserve_echo(&request).encode_to_vec();
    assert_eq!(response.into_inner(), Bytes::from(echoed.clone()));

    // The app saw the trace continued by the inbound sidecar.
    let app_traceparent = app
        .recorder
        .last_headers()
        .get("traceparent")
        .expect("the app gets a traceparent")
        .to_str()
        .unwrap()
        .to_owned();

    // A call the app fails with NOT_FOUND (5), in a trace of its own.
    let mut call = tonic::Request::new(message.clone());
    call.metadata_mut().insert(
        "traceparent",
        format!("00-{FAILED_TRACE_ID}-{FAILED_CALLER_SPAN_ID}-01")
            .parse()
            .unwrap(),
    );
    call.metadata_mut()
        .insert("x-fail-code", "5".parse().unwrap());
    let failed = raw_unary_request(channel(outbound_addr).await, MODEL_INFER, call)
        .await
        .expect_err("the app fails the call");
    assert_eq!(failed.code(), tonic::Code::NotFound);

    for sidecar in [&mut outbound, &mut inbound] {
        let status = sidecar.terminate().await;
        assert!(status.success(), "{status}:\n{}", sidecar.logs());
    }
    let (spans, failed_spans): (Vec<Received>, Vec<Received>) = receiver
        .spans
        .lock()
        .unwrap()
        .iter()
        .cloned()
        .partition(|s| s.trace_id != FAILED_TRACE_ID);

    println!("caller span {CALLER_SPAN_ID} in trace {TRACE_ID}");
    print_tree(&spans, CALLER_SPAN_ID, 1);
    println!("the app received traceparent: {app_traceparent}");

    // One trace, under the caller's span.
    assert!(
        spans.iter().all(|s| s.trace_id == TRACE_ID),
        "{spans:#?}\noutbound:\n{}\ninbound:\n{}",
        outbound.logs(),
        inbound.logs()
    );
    let mut names: Vec<(&str, &str)> = spans
        .iter()
        .map(|s| (s.service.as_str(), s.name.as_str()))
        .collect();
    names.sort();
    let call_name = "inference.GRPCInferenceService/ModelInfer";
    assert_eq!(
        names,
        [
            ("bloscar-inbound", "bloscar.decode"),
            ("bloscar-inbound", "bloscar.encode"),
            ("bloscar-inbound", call_name),
            ("bloscar-outbound", "bloscar.decode"),
            ("bloscar-outbound", "bloscar.encode"),
            ("bloscar-outbound", call_name),
        ]
    );
    let find = |service: &str, name: &str| {
        spans
            .iter()
            .find(|s| s.service == service && s.name == name)
            .unwrap()
            .clone()
    };

    // The outbound's call continues the caller's span; the inbound's continues the
    // outbound's; the app's continues the inbound's.
    let out_call = find("bloscar-outbound", call_name);
    let in_call = find("bloscar-inbound", call_name);
    assert_eq!(out_call.parent_span_id, CALLER_SPAN_ID);
    assert_eq!(in_call.parent_span_id, out_call.span_id);
    assert_eq!(
        app_traceparent,
        format!("00-{TRACE_ID}-{}-01", in_call.span_id)
    );
    assert_eq!(out_call.kind, SpanKind::Client);
    assert_eq!(in_call.kind, SpanKind::Server);
    for (call, role) in [(&out_call, "outbound"), (&in_call, "inbound")] {
        // Unset: only errors are marked.
        assert_eq!(call.status, 0);
        assert_eq!(call.str("rpc.system"), "grpc");
        assert_eq!(call.str("rpc.service"), "inference.GRPCInferenceService");
        assert_eq!(call.str("rpc.method"), "ModelInfer");
        assert_eq!(call.int("rpc.grpc.status_code"), 0);
        assert_eq!(call.str("bloscar.role"), role);
        assert_eq!(call.str("bloscar.model"), "echo:1");
    }

    // The request: encoded by the outbound, decoded by the inbound, byte for byte.
    let encode = find("bloscar-outbound", "bloscar.encode");
    let decode = find("bloscar-inbound", "bloscar.decode");
    assert_eq!(encode.parent_span_id, out_call.span_id);
    assert_eq!(decode.parent_span_id, in_call.span_id);
    for span in [&encode, &decode] {
        assert_eq!(span.str("bloscar.direction"), "request");
    }
    assert_eq!(encode.attr("bloscar.encoded"), &Value::BoolValue(true));
    assert_eq!(encode.str("bloscar.codec"), "lz4:5:byte");
    assert_eq!(decode.str("bloscar.codec"), "lz4");
    let plain = message.len() as i64;
    let wire = encode.int("bloscar.bytes_out");
    assert_eq!(encode.int("bloscar.bytes_in"), plain);
    assert_eq!(decode.int("bloscar.bytes_in"), wire);
    assert_eq!(decode.int("bloscar.bytes_out"), plain);
    assert!(
        wire * 4 < plain,
        "a smooth ramp compresses: {wire} of {plain}"
    );
    let ratio = (plain as f64 / wire as f64 * 1000.0).round() / 1000.0;
    assert_eq!(encode.float("bloscar.ratio"), ratio);
    assert_eq!(decode.float("bloscar.ratio"), ratio);
    // Blosc worked on both sides.
    for span in [&encode, &decode] {
        assert!(span.float("bloscar.blosc_ms") > 0.0, "{span:?}");
    }

    // The response: encoded by the inbound, decoded by the outbound.
    let encode = find("bloscar-inbound", "bloscar.encode");
    let decode = find("bloscar-outbound", "bloscar.decode");
    assert_eq!(encode.parent_span_id, in_call.span_id);
    assert_eq!(decode.parent_span_id, out_call.span_id);
    assert_eq!(encode.str("bloscar.direction"), "response");
    assert_eq!(decode.str("bloscar.direction"), "response");
    assert_eq!(encode.int("bloscar.bytes_in"), echoed.len() as i64);
    assert_eq!(
        decode.int("bloscar.bytes_in"),
        encode.int("bloscar.bytes_out")
    );
    assert_eq!(decode.int("bloscar.bytes_out"), echoed.len() as i64);

    // The failed call: both call spans carry the app's status and are errors; the
    // request was encoded and decoded, and no response message was.
    let mut names: Vec<(&str, &str)> = failed_spans
        .iter()
        .map(|s| (s.service.as_str(), s.name.as_str()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("bloscar-inbound", "bloscar.decode"),
            ("bloscar-inbound", call_name),
            ("bloscar-outbound", "bloscar.encode"),
            ("bloscar-outbound", call_name),
        ]
    );
    let out_call = failed_spans
        .iter()
        .find(|s| s.service == "bloscar-outbound" && s.name == call_name)
        .unwrap();
    assert_eq!(out_call.parent_span_id, FAILED_CALLER_SPAN_ID);
    for call in failed_spans.iter().filter(|s| s.name == call_name) {
        assert_eq!(call.int("rpc.grpc.status_code"), 5);
        assert_eq!(call.status, 2, "error: {call:?}");
    }
}

#[tokio::test]
async fn without_export_the_callers_traceparent_reaches_the_app_untouched() {
    // In-process sidecars: nothing in this process turned tracing on.
    assert!(!bloscar::trace::is_enabled());
    let pair = common::Pair::start().await;
    let request = kserve_request(smooth_f32(64 * 1024));
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01");
    let mut call = tonic::Request::new(Bytes::from(request.encode_to_vec()));
    call.metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    call.metadata_mut()
        .insert("tracestate", "vendor=1".parse().unwrap());
    raw_unary_request(pair.channel().await, MODEL_INFER, call)
        .await
        .expect("the call succeeds");
    let headers = pair.server.recorder.last_headers();
    assert_eq!(headers.get("traceparent").unwrap(), traceparent.as_str());
    assert_eq!(headers.get("tracestate").unwrap(), "vendor=1");
}

#[test]
fn an_export_bloscar_cannot_do_is_a_configuration_error() {
    let run = |env: &[(&str, &str)]| {
        Command::new(BIN)
            .env_clear()
            .env("BLOSCAR_LOG_FORMAT", "json")
            .envs(env.iter().copied())
            .output()
            .expect("run bloscar")
    };
    let refused = run(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
    ]);
    // The same exit as any invalid configuration, before anything listens.
    let invalid = run(&[("BLOSCAR_MODE", "sideways")]);
    assert!(!invalid.status.success());
    assert_eq!(refused.status.code(), invalid.status.code());
    let stderr = String::from_utf8(refused.stderr).unwrap();
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON log line"))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert_eq!(lines[0]["level"], "ERROR");
    assert_eq!(lines[0]["message"], "invalid configuration");
    assert_eq!(lines[0]["variable"], "OTEL_EXPORTER_OTLP_PROTOCOL");
    assert_eq!(
        lines[0]["error"],
        "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf: bloscar exports traces with OTLP over \
         gRPC only (grpc)"
    );
}
