//! KServe v2 over HTTP/1.1 for the demo: the binary tensor data extension (a JSON header
//! of `Inference-Header-Content-Length` bytes, then the raw tensor), a keep-alive client,
//! and the identity model's REST answer.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

use super::tensors::DemoTensor;

/// Largest body either side accepts.
const MAX_BODY: usize = 256 << 20;
const HEADER_LENGTH: &str = "inference-header-content-length";

/// The path of `model`'s REST inference.
pub fn infer_path(model: &str) -> String {
    format!("/v2/models/{model}/infer")
}

/// A request body carrying `tensor` as binary data, and its JSON header's length.
pub fn infer_body(tensor: &DemoTensor) -> (Vec<u8>, usize) {
    let header = json!({
        "inputs": [{
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": tensor.shape,
            "parameters": {"binary_data_size": tensor.data.len()},
        }],
        "outputs": [{"name": tensor.name, "parameters": {"binary_data": true}}],
    });
    let mut body = header.to_string().into_bytes();
    let header_len = body.len();
    body.extend_from_slice(&tensor.data);
    (body, header_len)
}

/// The identity model's answer to a binary-extension request: every binary input back
/// as the output of the same name. `None` for a body that is not one.
pub fn echo(model: &str, header_len: usize, body: &[u8]) -> Option<(Vec<u8>, usize)> {
    let header: Value = serde_json::from_slice(body.get(..header_len)?).ok()?;
    let outputs: Vec<Value> = header["inputs"]
        .as_array()?
        .iter()
        .map(|t| {
            json!({"name": t["name"], "datatype": t["datatype"], "shape": t["shape"],
                   "parameters": {"binary_data_size": t["parameters"]["binary_data_size"]}})
        })
        .collect();
    let mut out = json!({"model_name": model, "outputs": outputs})
        .to_string()
        .into_bytes();
    let out_header = out.len();
    out.extend_from_slice(&body[header_len..]);
    Some((out, out_header))
}

/// The echo server's REST answer to `path` with `headers` and `body`.
pub fn respond(path: &str, headers: &http::HeaderMap, body: &[u8]) -> Response<Bytes> {
    let model = path
        .strip_prefix("/v2/models/")
        .and_then(|p| p.strip_suffix("/infer"));
    let header_len = headers
        .get(HEADER_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let answer = model
        .zip(header_len)
        .and_then(|(m, len)| echo(m, len, body));
    let mut response = match answer {
        Some((out, out_header)) => {
            let mut response = Response::new(Bytes::from(out));
            response
                .headers_mut()
                .insert(HEADER_LENGTH, out_header.into());
            response
        }
        None => {
            let error = json!({"error": "the demo echo serves binary-extension inference only"});
            let mut response = Response::new(Bytes::from(error.to_string()));
            *response.status_mut() = StatusCode::BAD_REQUEST;
            response
        }
    };
    let len = response.body().len();
    response.headers_mut().insert("content-length", len.into());
    response.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// One HTTP/1.1 connection that makes REST inference calls.
pub struct Client {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    authority: String,
}

impl Client {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> Result<Client, String> {
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(Client {
            sender,
            authority: addr.to_string(),
        })
    }

    /// Sends `tensor` to the identity model `model` and checks that the answer's binary
    /// output is the tensor, bit for bit, with the lengths its headers declare.
    pub async fn infer(&mut self, model: &str, tensor: &DemoTensor) -> Result<(), String> {
        let (body, header_len) = infer_body(tensor);
        let request = Request::post(format!("http://{}{}", self.authority, infer_path(model)))
            .header("host", &self.authority)
            .header("content-type", "application/octet-stream")
            .header(HEADER_LENGTH, header_len)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if parts.status != StatusCode::OK {
            return Err(format!(
                "HTTP {}: {}",
                parts.status,
                String::from_utf8_lossy(&body)
            ));
        }
        let declared =
            |name: &str| -> Option<usize> { parts.headers.get(name)?.to_str().ok()?.parse().ok() };
        let header_len = declared(HEADER_LENGTH).ok_or("no Inference-Header-Content-Length")?;
        if declared("content-length") != Some(body.len()) || header_len > body.len() {
            return Err("the response's lengths do not describe its body".to_owned());
        }
        if body[header_len..] != tensor.data[..] {
            return Err("a REST response differs from its request's tensor".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_returns_the_binary_inputs_as_outputs() {
        let tensor = super::super::tensors::segmentation_mask(0.05);
        let (body, header_len) = infer_body(&tensor);
        let (out, out_header) = echo("m", header_len, &body).unwrap();
        assert_eq!(&out[out_header..], &tensor.data[..]);
        let header: Value = serde_json::from_slice(&out[..out_header]).unwrap();
        assert_eq!(
            header["outputs"][0]["parameters"]["binary_data_size"],
            tensor.data.len()
        );
        assert!(echo("m", body.len() + 1, &body).is_none());
    }
}
