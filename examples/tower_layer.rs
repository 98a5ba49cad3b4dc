//! The bloscar tower layer inside Rust services, without sidecars: a tonic KServe server
//! with `BloscarLayer::server` and a tonic client whose channel goes through
//! `BloscarLayer::client`. The client sends a 4 MiB FP32 tensor twice and prints the
//! sizes before and after encoding, from the layers' metrics.
//!
//! Run: `cargo run --example tower_layer`

use std::sync::Arc;

use bloscar::layer::BoxBody;
use bloscar::locate::Locator;
use bloscar::metrics::Metrics;
use bloscar::pb::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use bloscar::pb::inference::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer,
};
use bloscar::pb::inference::model_infer_request::InferInputTensor;
use bloscar::pb::inference::model_infer_response::InferOutputTensor;
use bloscar::pb::inference::{ModelInferRequest, ModelInferResponse, ModelStreamInferResponse};
use bloscar::{BloscarLayer, CompressOptions, FixedChooser, Limits, MessageCodec};
use tonic::{Request, Response, Status};
use tower::ServiceBuilder;

/// A model that returns its input.
struct Identity;

#[tonic::async_trait]
impl GrpcInferenceService for Identity {
    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let request = request.into_inner();
        Ok(Response::new(ModelInferResponse {
            model_name: request.model_name,
            model_version: request.model_version,
            id: request.id,
            parameters: Default::default(),
            outputs: request
                .inputs
                .into_iter()
                .map(|input| InferOutputTensor {
                    name: "OUTPUT0".into(),
                    datatype: input.datatype,
                    shape: input.shape,
                    parameters: Default::default(),
                    contents: None,
                })
                .collect(),
            raw_output_contents: request.raw_input_contents,
        }))
    }

    type ModelStreamInferStream = tonic::codegen::BoxStream<ModelStreamInferResponse>;

    async fn model_stream_infer(
        &self,
        _request: Request<tonic::Streaming<ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        Err(Status::unimplemented(
            "streaming is not part of this example",
        ))
    }
}

/// lz4 with byte-shuffle for every tensor of at least 10 KiB.
fn codec() -> Arc<MessageCodec> {
    let chooser = FixedChooser {
        options: CompressOptions::default(),
        min_size: 10 * 1024,
    };
    Arc::new(MessageCodec::new(
        Locator::default(),
        Arc::new(chooser),
        Limits::default(),
    ))
}

/// The byte counters of one layer's metrics.
fn byte_lines(metrics: &Metrics) -> Vec<String> {
    metrics
        .render()
        .lines()
        .filter(|l| l.starts_with("bloscar_message_bytes"))
        .map(str::to_owned)
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;

    // Server side: the layer decodes requests and encodes responses for bloscar clients.
    let server_metrics = Arc::new(Metrics::new());
    let server_layer = BloscarLayer::server(codec()).metrics(Arc::clone(&server_metrics));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .layer(server_layer)
            .serve_with_incoming_shutdown(
                GrpcInferenceServiceServer::new(Identity).max_decoding_message_size(64 << 20),
                tonic::transport::server::TcpIncoming::from(listener),
                async {
                    let _ = stopped.await;
                },
            ),
    );

    // Client side: the layer encodes requests once the server has shown it reads bloscar,
    // and decodes responses. tonic's generated client wants its own body type, hence the
    // `map_request`.
    let client_metrics = Arc::new(Metrics::new());
    let client_layer = BloscarLayer::client(codec()).metrics(Arc::clone(&client_metrics));
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let service = ServiceBuilder::new()
        .layer(client_layer)
        .map_request(|r: http::Request<BoxBody>| r.map(tonic::body::Body::new))
        .service(channel);
    let mut client = GrpcInferenceServiceClient::new(service).max_decoding_message_size(64 << 20);

    // A smooth 1024x1024 FP32 image: 4 MiB.
    let data: Vec<u8> = (0..1024 * 1024)
        .flat_map(|i: u32| ((i % 1024) as f32 * 0.01 + (i / 1024) as f32).to_le_bytes())
        .collect();
    let request = ModelInferRequest {
        model_name: "identity".into(),
        inputs: vec![InferInputTensor {
            name: "INPUT0".into(),
            datatype: "FP32".into(),
            shape: vec![1024, 1024],
            ..Default::default()
        }],
        raw_input_contents: vec![data.clone()],
        ..Default::default()
    };
    for call in 1..=2 {
        let response = client.model_infer(request.clone()).await?.into_inner();
        assert_eq!(
            response.raw_output_contents,
            vec![data.clone()],
            "bit-exact"
        );
        println!(
            "call {call}: sent and received a {} byte tensor, bit-exact",
            data.len()
        );
    }
    println!("\nclient layer (requests encoded from the second call):");
    for line in byte_lines(&client_metrics) {
        println!("  {line}");
    }
    println!("server layer:");
    for line in byte_lines(&server_metrics) {
        println!("  {line}");
    }

    let _ = stop.send(());
    server.await??;
    Ok(())
}
