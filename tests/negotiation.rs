//! Negotiation of the `bloscar` encoding: sidecars on one side only, the app's own
//! encodings, and the tower layer talking to a sidecar.

mod common;

use std::sync::Arc;

use bloscar::BloscarLayer;
use bloscar::layer::BoxBody;
use bloscar::layer::{Role, UnknownPeer};
use bloscar::metrics::Metrics;
use bloscar::pb::inference::ModelInferRequest;
use bloscar::pb::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use bytes::Bytes;
use common::server::{EchoService, MODEL_INFER};
use common::*;
use prost::Message;
use tonic::codec::CompressionEncoding;
use tower::ServiceBuilder;

fn bloscar_in(headers: &http::HeaderMap, name: &str) -> bool {
    headers
        .get(name)
        .is_some_and(|v| v.to_str().unwrap().contains("bloscar"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_towards_a_server_without_sidecar_encodes_nothing() {
    let server = start_server().await;
    let relay = Relay::start(server.addr).await;
    let outbound = Proxy::start(Role::Outbound, relay.addr).await;
    let request = Bytes::from(kserve_request(smooth_f32(128 * 1024)).encode_to_vec());
    for _ in 0..3 {
        let response = raw_unary(channel(outbound.addr).await, MODEL_INFER, request.clone())
            .await
            .unwrap();
        assert_eq!(server.recorder.requests().last(), Some(&request));
        assert_eq!(server.recorder.responses().last(), Some(response.get_ref()));
        assert!(!bloscar_in(
            &server.recorder.last_headers(),
            "grpc-encoding"
        ));
    }
    let (up, _) = relay.counts();
    assert!(
        up >= 3 * request.len() as u64,
        "something was compressed: {up}"
    );
    let encoded = format!(
        "bloscar_messages_total{{direction=\"request\",outcome=\"encoded\",method=\"{MODEL_INFER}\"}}"
    );
    assert_eq!(outbound.metric(&encoded), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_without_sidecar_through_inbound() {
    let server = start_server().await;
    let inbound = Proxy::start(Role::Inbound, server.addr).await;
    let request = kserve_request(smooth_f32(128 * 1024));
    let mut client = GrpcInferenceServiceClient::new(channel(inbound.addr).await);
    for _ in 0..2 {
        // A plain tonic client: it would reject a bloscar-encoded response outright.
        let response = client.model_infer(request.clone()).await.unwrap();
        assert_eq!(
            response.get_ref().raw_output_contents,
            request.raw_input_contents
        );
        assert!(response.metadata().get("grpc-encoding").is_none());
    }
    assert_eq!(
        server.recorder.requests().last(),
        Some(&Bytes::from(request.encode_to_vec()))
    );
    assert!(!bloscar_in(
        &server.recorder.last_headers(),
        "grpc-accept-encoding"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_peer_encode_compresses_the_first_call() {
    let pair = Pair::start_with(UnknownPeer::Encode).await;
    let request = Bytes::from(kserve_request(smooth_f32(256 * 1024)).encode_to_vec());
    raw_unary(pair.channel().await, MODEL_INFER, request.clone())
        .await
        .unwrap();
    assert_eq!(pair.server.recorder.requests(), vec![request.clone()]);
    let (up, down) = pair.relay.counts();
    assert!(
        up < request.len() as u64 / 10,
        "first request not encoded: {up}"
    );
    assert!(down < request.len() as u64 / 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_gzip_requests_are_reencoded_and_the_server_gets_identity() {
    let pair = Pair::start().await;
    let request = kserve_request(smooth_f32(256 * 1024));
    let mut client = GrpcInferenceServiceClient::new(pair.channel().await)
        .send_compressed(CompressionEncoding::Gzip);
    client.model_infer(request.clone()).await.unwrap();
    let before = pair.relay.counts().0;
    let response = client.model_infer(request.clone()).await.unwrap();
    let second = pair.relay.counts().0 - before;
    assert_eq!(
        response.get_ref().raw_output_contents,
        request.raw_input_contents
    );
    let headers = pair.server.recorder.last_headers();
    assert!(headers.get("grpc-encoding").is_none(), "{headers:?}");
    assert_eq!(
        pair.server.recorder.requests().last(),
        Some(&Bytes::from(request.encode_to_vec()))
    );
    let gzip_size = {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&request.encode_to_vec()).unwrap();
        gz.finish().unwrap().len() as u64
    };
    println!("gzip from the app: {gzip_size} B; bloscar between the sidecars: {second} B");
    assert!(second < gzip_size, "{second} >= {gzip_size}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_would_gzip_answers_identity_and_bloscar_compresses_once() {
    let service = EchoService {
        gzip_responses: true,
        ..Default::default()
    };
    let server = start_server_with(tonic::transport::Server::builder(), service).await;
    let inbound = Proxy::start(Role::Inbound, server.addr).await;
    let relay = Relay::start(inbound.addr).await;
    let outbound = Proxy::start(Role::Outbound, relay.addr).await;
    let request = kserve_request(smooth_f32(256 * 1024));
    let mut client = GrpcInferenceServiceClient::new(channel(outbound.addr).await)
        .accept_compressed(CompressionEncoding::Gzip);
    for _ in 0..2 {
        let response = client.model_infer(request.clone()).await.unwrap();
        assert_eq!(
            response.get_ref().raw_output_contents,
            request.raw_input_contents
        );
    }
    // A sidecar called: the inbound kept the client's gzip from the app, so the app
    // answered in identity and bloscar compressed once. Nor did the app see the token.
    let headers = server.recorder.last_headers();
    let accept = headers
        .get("grpc-accept-encoding")
        .map_or("", |v| v.to_str().unwrap());
    assert!(
        !accept.contains("gzip") && !accept.contains("bloscar"),
        "{accept}"
    );
    let (_, down) = relay.counts();
    let len = request.raw_input_contents[0].len() as u64;
    assert!(down < len / 10, "responses not re-encoded: {down}");
    let encoded = format!(
        "bloscar_messages_total{{direction=\"response\",outcome=\"encoded\",method=\"{MODEL_INFER}\"}}"
    );
    assert_eq!(inbound.metric(&encoded), 2.0);
}

/// A typed KServe client whose channel goes through the bloscar client layer.
fn layered_client(
    channel: tonic::transport::Channel,
    layer: BloscarLayer,
) -> GrpcInferenceServiceClient<
    impl tonic::client::GrpcService<
        tonic::body::Body,
        ResponseBody = BoxBody,
        Error = bloscar::BoxError,
        Future: Send,
    > + Clone,
> {
    let service = ServiceBuilder::new()
        .layer(layer)
        .map_request(|r: http::Request<BoxBody>| r.map(tonic::body::Body::new))
        .service(channel);
    GrpcInferenceServiceClient::new(service)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tower_client_layer_talks_to_an_inbound_sidecar() {
    let server = start_server().await;
    let inbound = Proxy::start(Role::Inbound, server.addr).await;
    let relay = Relay::start(inbound.addr).await;
    let metrics = Arc::new(Metrics::new());
    let layer = BloscarLayer::client(codec())
        .unknown_peer(UnknownPeer::Encode)
        .metrics(Arc::clone(&metrics));
    let mut client = layered_client(channel(relay.addr).await, layer);
    let request = kserve_request(smooth_f32(256 * 1024));
    let response = client.model_infer(request.clone()).await.unwrap();
    assert_eq!(
        response.get_ref().raw_output_contents,
        request.raw_input_contents
    );
    assert_eq!(
        server.recorder.requests(),
        vec![Bytes::from(request.encode_to_vec())]
    );
    let (up, down) = relay.counts();
    let len = request.raw_input_contents[0].len() as u64;
    assert!(up < len / 10 && down < len / 10, "up {up} down {down}");
    let decoded = format!(
        "bloscar_messages_total{{direction=\"response\",outcome=\"decoded\",method=\"{MODEL_INFER}\"}}"
    );
    assert_eq!(metric_value(&metrics.render(), &decoded), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_sidecar_talks_to_a_tower_server_layer() {
    let builder = tonic::transport::Server::builder().layer(BloscarLayer::server(codec()));
    let server = start_server_with(builder, EchoService::default()).await;
    let relay = Relay::start(server.addr).await;
    let outbound = Proxy::start(Role::Outbound, relay.addr).await;
    let request = kserve_request(smooth_f32(256 * 1024));
    let mut client = GrpcInferenceServiceClient::new(channel(outbound.addr).await);
    for _ in 0..2 {
        let response = client.model_infer(request.clone()).await.unwrap();
        assert_eq!(
            response.get_ref().raw_output_contents,
            request.raw_input_contents
        );
    }
    // The service behind the layer got identity, without the token.
    assert_eq!(
        server.recorder.requests().last(),
        Some(&Bytes::from(request.encode_to_vec()))
    );
    let headers = server.recorder.last_headers();
    assert!(!bloscar_in(&headers, "grpc-encoding"));
    assert!(!bloscar_in(&headers, "grpc-accept-encoding"));
    let (up, down) = relay.counts();
    let len = request.raw_input_contents[0].len() as u64;
    // First request identity (capability unknown), second encoded; both responses encoded.
    assert!(up < len + len / 10, "up {up}");
    assert!(down < len / 10, "down {down}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tower_layers_talk_to_each_other_directly() {
    let builder = tonic::transport::Server::builder().layer(BloscarLayer::server(codec()));
    let server = start_server_with(builder, EchoService::default()).await;
    let relay = Relay::start(server.addr).await;
    let mut client = layered_client(channel(relay.addr).await, BloscarLayer::client(codec()));
    let request = kserve_request(smooth_f32(256 * 1024));
    for _ in 0..2 {
        let response = client.model_infer(request.clone()).await.unwrap();
        assert_eq!(
            response.get_ref().raw_output_contents,
            request.raw_input_contents
        );
    }
    let sent = Bytes::from(request.encode_to_vec());
    assert_eq!(server.recorder.requests(), vec![sent.clone(), sent]);
    let decoded = ModelInferRequest::decode(server.recorder.requests()[1].clone()).unwrap();
    assert_eq!(decoded, request);
    let (up, down) = relay.counts();
    let len = request.raw_input_contents[0].len() as u64;
    assert!(
        up < len + len / 10 && down < len / 10,
        "up {up} down {down}"
    );
}
