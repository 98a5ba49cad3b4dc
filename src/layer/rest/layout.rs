//! Where the tensors of a KServe v2 REST inference body are.
//!
//! With the binary tensor data extension, a body is a JSON header of
//! `Inference-Header-Content-Length` bytes followed by the binary tensors, in the order
//! of the header's `inputs` (request) or `outputs` (response) whose `parameters` give a
//! `binary_data_size`. Without the header, the whole body is JSON.

use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::RestError;
use crate::DType;
use crate::locate::Direction;

/// The header naming the JSON header's length in a body with binary tensors.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// One binary tensor of a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryTensor {
    /// Its name in the JSON header.
    pub name: String,
    /// Its declared element type (`BYTES` for an unknown datatype).
    pub dtype: DType,
    /// Offset of its first byte in the body.
    pub offset: usize,
    /// Its bytes; never 0.
    pub len: usize,
}

/// How a body holds its tensors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// A JSON header followed by these binary tensors (possibly none).
    Binary(Vec<BinaryTensor>),
    /// JSON only: tensors, if any, are `data` arrays inside it.
    Json,
}

#[derive(Deserialize)]
struct Header {
    #[serde(default)]
    inputs: Vec<Tensor>,
    #[serde(default)]
    outputs: Vec<Tensor>,
}

#[derive(Deserialize)]
struct Tensor {
    #[serde(default)]
    name: String,
    #[serde(default)]
    datatype: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

/// The layout of `body`, a request or response body with `headers`.
///
/// A body that declares binary tensors must hold exactly what its header declares: a
/// header length beyond the body, a header that is not JSON, or sizes that do not add up
/// to the bytes after the header are refused, since the server would misread them too.
pub fn of_body(
    headers: &HeaderMap,
    direction: Direction,
    body: &[u8],
) -> Result<Layout, RestError> {
    let Some(value) = headers.get(HEADER_LENGTH) else {
        return Ok(Layout::Json);
    };
    let text = value.to_str().unwrap_or("");
    let header_len: usize = text
        .trim()
        .parse()
        .map_err(|_| RestError::HeaderLength(text.to_owned()))?;
    if header_len > body.len() {
        return Err(RestError::HeaderBeyondBody {
            header: header_len,
            body: body.len(),
        });
    }
    let header: Header = serde_json::from_slice(&body[..header_len])
        .map_err(|err| RestError::NotJson(err.to_string()))?;
    let tensors = match direction {
        Direction::Request => header.inputs,
        Direction::Response => header.outputs,
    };
    let mut offset = header_len;
    let mut out = Vec::new();
    for tensor in tensors {
        let Some(size) = tensor
            .parameters
            .as_ref()
            .and_then(|p| p.get("binary_data_size"))
        else {
            continue;
        };
        let len = size
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| RestError::BinarySize(tensor.name.clone()))?;
        let end = offset
            .checked_add(len)
            .filter(|&end| end <= body.len())
            .ok_or(RestError::SizesDisagree {
                present: body.len() - header_len,
            })?;
        if len > 0 {
            out.push(BinaryTensor {
                dtype: DType::from_kserve(&tensor.datatype).unwrap_or(DType::Bytes),
                name: tensor.name,
                offset,
                len,
            });
        }
        offset = end;
    }
    if offset != body.len() {
        return Err(RestError::SizesDisagree {
            present: body.len() - header_len,
        });
    }
    Ok(Layout::Binary(out))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn body(header: &str, binary: &[u8]) -> (HeaderMap, Vec<u8>) {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_LENGTH, HeaderValue::from(header.len()));
        let mut body = header.as_bytes().to_vec();
        body.extend_from_slice(binary);
        (headers, body)
    }

    #[test]
    fn binary_tensors_follow_the_header_in_order() {
        let header = r#"{"inputs":[{"name":"a","datatype":"FP16","shape":[2],"parameters":{"binary_data_size":4}},{"name":"j","datatype":"INT32","shape":[1],"data":[1]},{"name":"b","datatype":"BOOL","shape":[3],"parameters":{"binary_data_size":3}}],"outputs":[{"name":"o","parameters":{"binary_data":true}}]}"#;
        let (headers, data) = body(header, &[1, 2, 3, 4, 0, 1, 0]);
        let layout = of_body(&headers, Direction::Request, &data).unwrap();
        let n = header.len();
        assert_eq!(
            layout,
            Layout::Binary(vec![
                BinaryTensor {
                    name: "a".into(),
                    dtype: DType::F16,
                    offset: n,
                    len: 4
                },
                BinaryTensor {
                    name: "b".into(),
                    dtype: DType::Bool,
                    offset: n + 4,
                    len: 3
                },
            ])
        );
        // The response direction reads `outputs`, which declare no binary data here.
        assert!(of_body(&headers, Direction::Response, &data).is_err());
        assert_eq!(
            of_body(&HeaderMap::new(), Direction::Request, &data).unwrap(),
            Layout::Json
        );
    }

    #[test]
    fn bodies_that_disagree_with_their_header_are_refused() {
        let header =
            r#"{"outputs":[{"name":"o","datatype":"FP32","parameters":{"binary_data_size":8}}]}"#;
        let (headers, data) = body(header, &[0; 7]);
        assert!(matches!(
            of_body(&headers, Direction::Response, &data),
            Err(RestError::SizesDisagree { present: 7 })
        ));
        let (headers, data) = body(header, &[0; 9]);
        assert!(of_body(&headers, Direction::Response, &data).is_err());
        let (headers, data) = body(header, &[0; 8]);
        assert!(of_body(&headers, Direction::Response, &data).is_ok());

        let mut long = headers.clone();
        long.insert(HEADER_LENGTH, HeaderValue::from(data.len() + 1));
        assert!(matches!(
            of_body(&long, Direction::Response, &data),
            Err(RestError::HeaderBeyondBody { .. })
        ));
        let mut short = headers.clone();
        short.insert(HEADER_LENGTH, HeaderValue::from(10));
        assert!(matches!(
            of_body(&short, Direction::Response, &data),
            Err(RestError::NotJson(_))
        ));
        let mut junk = headers;
        junk.insert(HEADER_LENGTH, HeaderValue::from_static("-1"));
        assert!(matches!(
            of_body(&junk, Direction::Response, &data),
            Err(RestError::HeaderLength(_))
        ));
        let huge = r#"{"outputs":[{"name":"o","parameters":{"binary_data_size":18446744073709551615}},{"name":"p","parameters":{"binary_data_size":2}}]}"#;
        let (headers, data) = body(huge, &[0; 1]);
        assert!(of_body(&headers, Direction::Response, &data).is_err());
    }
}
