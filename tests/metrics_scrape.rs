//! Scrapes `/metrics` of a real sidecar pair after calls of a known method (with a model)
//! and of a method the sidecar does not know, and checks the families against the list
//! below with prometheus_client's parsers (both exposition formats), so that a rename
//! cannot go unnoticed. Every family in the list must also be in docs/sidecar.md.

mod common;

use std::process::Command;
use std::sync::Arc;

use bloscar::admin::Health;
use bytes::Bytes;
use common::server::{MODEL_INFER, PLAIN_ECHO};
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use prost::Message;
use tokio::net::{TcpListener, TcpStream};

/// The families (as the OpenMetrics parser names them) the outbound shows after the
/// calls below, with their types.
const OUTBOUND_FAMILIES: &[(&str, &str)] = &[
    ("bloscar_build_info", "gauge"),
    ("bloscar_calls", "counter"),
    ("bloscar_compression_factor", "histogram"),
    ("bloscar_connections_open", "gauge"),
    ("bloscar_connections_refused", "counter"),
    ("bloscar_connections_timed_out", "counter"),
    ("bloscar_link_rate_bytes_per_second", "gauge"),
    ("bloscar_message_identity_bytes", "counter"),
    ("bloscar_message_wire_bytes", "counter"),
    ("bloscar_messages", "counter"),
    ("bloscar_streams_in_flight", "gauge"),
    ("bloscar_transform_seconds", "histogram"),
    ("bloscar_upstream_ejections", "counter"),
    ("bloscar_upstream_endpoints", "gauge"),
    ("bloscar_upstream_errors", "counter"),
    ("bloscar_upstream_requests", "counter"),
    ("process_cpu_seconds", "counter"),
    ("process_max_fds", "gauge"),
    ("process_open_fds", "gauge"),
    ("process_resident_memory_bytes", "gauge"),
];

/// The auto-tuner's families (`BLOSCAR_CODEC=auto`), as the OpenMetrics parser names
/// them.
const TUNER_FAMILIES: &[(&str, &str)] = &[
    ("bloscar_tuner_below_min_size", "counter"),
    ("bloscar_tuner_choices", "counter"),
    ("bloscar_tuner_entries", "gauge"),
    ("bloscar_tuner_errors", "counter"),
    ("bloscar_tuner_fallbacks", "counter"),
    ("bloscar_tuner_picks", "gauge"),
    ("bloscar_tuner_search_seconds", "counter"),
    ("bloscar_tuner_searches", "counter"),
    ("bloscar_tuner_searches_skipped", "counter"),
];

/// Fails unless every family of `families` is in docs/sidecar.md's list (counters with
/// their `_total`).
fn assert_documented(families: &[(&str, &str)]) {
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/sidecar.md")).unwrap();
    for (name, kind) in families {
        let documented = if *kind == "counter" {
            format!("| `{name}_total` |")
        } else {
            format!("| `{name}` |")
        };
        assert!(
            docs.contains(&documented),
            "{documented} missing from docs/sidecar.md"
        );
    }
}

async fn scrape(addr: std::net::SocketAddr, accept: &str) -> (String, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = http::Request::get("/metrics")
        .header(http::header::HOST, addr.to_string())
        .header(http::header::ACCEPT, accept)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let content_type = response.headers()[http::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (content_type, String::from_utf8(body.to_vec()).unwrap())
}

/// The `name type` lines prometheus_client's parser prints for `body`.
fn parse(format: &str, body: &str) -> Vec<String> {
    let root = env!("CARGO_MANIFEST_DIR");
    let venvs = Command::new("bash")
        .arg(format!("{root}/scripts/venvs.sh"))
        .status()
        .unwrap();
    assert!(venvs.success(), "scripts/venvs.sh failed");
    // One file per parse: the tests of this file run at once.
    static PARSES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = PARSES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("metrics-{}-{n}-{format}.txt", std::process::id()));
    std::fs::write(&file, body).unwrap();
    let out = Command::new(format!("{root}/.venvs/prometheus/bin/python"))
        .arg(format!("{root}/tests/python/parse_metrics.py"))
        .arg(format)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "parser rejected the {format} scrape: {}\n{body}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_parses_and_is_listed() {
    let pair = Pair::start().await;
    let request = Bytes::from(kserve_request(smooth_f32(64 * 1024)).encode_to_vec());
    // The first call teaches the outbound that its peer reads bloscar; the second is
    // encoded.
    for _ in 0..2 {
        raw_unary(pair.channel().await, MODEL_INFER, request.clone())
            .await
            .unwrap();
    }
    raw_unary(
        pair.channel().await,
        PLAIN_ECHO,
        Bytes::from_static(b"plain"),
    )
    .await
    .unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = Arc::clone(&pair.outbound.metrics);
    tokio::spawn(bloscar::admin::serve(
        listener,
        Arc::new(Health::new()),
        move || metrics.render(),
        std::future::pending(),
    ));

    let (content_type, om) = scrape(addr, "application/openmetrics-text;version=1.0.0").await;
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let expected: Vec<String> = OUTBOUND_FAMILIES
        .iter()
        .map(|(name, kind)| format!("{name} {kind}"))
        .collect();
    assert_eq!(parse("openmetrics", &om), expected, "{om}");

    let (content_type, text) = scrape(addr, "text/plain;version=0.0.4").await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    // The 0.0.4 parser names counter families without `_total` too.
    assert_eq!(parse("text", &text), expected, "{text}");

    // Per-model and pass-through series, counted by the outbound: two ModelInfer calls
    // of model echo:1 and one call of a method it does not know. The first ModelInfer
    // request passed as it was while the peer was unknown; its first bytes still name
    // the model, so that call counts under echo:1 too.
    let infer = format!("method=\"{MODEL_INFER}\",model=\"echo:1\"");
    for line in [
        format!("bloscar_calls_total{{{infer},status=\"ok\"}} 2"),
        format!("bloscar_messages_total{{direction=\"request\",outcome=\"encoded\",{infer}}} 1"),
        // The inbound encodes both responses: each request said its sender reads bloscar.
        format!("bloscar_messages_total{{direction=\"response\",outcome=\"decoded\",{infer}}} 2"),
        format!("bloscar_messages_total{{direction=\"request\",outcome=\"passed\",{infer}}} 1"),
        format!("bloscar_calls_total{{method=\"{PLAIN_ECHO}\",model=\"\",status=\"ok\"}} 1"),
        format!(
            "bloscar_messages_total{{direction=\"request\",outcome=\"passed\",method=\"{PLAIN_ECHO}\",model=\"\"}} 1"
        ),
        format!(
            "bloscar_messages_total{{direction=\"response\",outcome=\"passed\",method=\"{PLAIN_ECHO}\",model=\"\"}} 1"
        ),
    ] {
        assert!(om.contains(&format!("\n{line}\n")), "{line}\n{om}");
    }
    assert!(
        !om.contains(&format!("method=\"{MODEL_INFER}\",model=\"\"")),
        "a ModelInfer series without its model:\n{om}"
    );

    assert_documented(OUTBOUND_FAMILIES);
}

#[test]
fn the_tuner_families_parse_and_are_listed() {
    use bloscar::codec::tune::{Tuner, TunerConfig};
    use bloscar::{Chooser, DType, TensorInfo};

    let tuner = Arc::new(Tuner::new(TunerConfig {
        background: false,
        ..TunerConfig::with_link_mbps(100.0)
    }));
    let mut metrics = bloscar::metrics::Metrics::new();
    metrics.register_collector(Box::new(tuner.collector()));
    let data = smooth_f32(64 * 1024);
    let info = TensorInfo {
        method: MODEL_INFER,
        name: "INPUT0",
        dtype: DType::F32,
        elem_size: 4,
        model: "echo:1",
        link_bytes_per_sec: None,
        len: data.len(),
    };
    tuner.choose(&info, &data);

    let expected: Vec<String> = TUNER_FAMILIES
        .iter()
        .map(|(name, kind)| format!("{name} {kind}"))
        .collect();
    let bloscar_only = |families: Vec<String>| -> Vec<String> {
        families
            .into_iter()
            .filter(|f| f.starts_with("bloscar_tuner_"))
            .collect()
    };
    let om = metrics.render();
    assert_eq!(bloscar_only(parse("openmetrics", &om)), expected, "{om}");
    let text = bloscar::metrics::exposition::to_text_004(&om);
    assert_eq!(bloscar_only(parse("text", &text)), expected, "{text}");
    assert_documented(TUNER_FAMILIES);
}
