//! A whole REST body as a bloscar container: each binary tensor compressed with its
//! element type's size as the tuner chooses, or a JSON-only body compressed as a whole
//! with zstd. The JSON header stays in the skeleton byte for byte.

use crate::codec::{Codec, CompressOptions, Shuffle};
use crate::container::{self, PatchSpec};
use crate::message::{Chooser, TensorInfo, TensorOutcome};
use crate::{DType, Error};

use super::layout::Layout;

/// The setting of a JSON-only body: text, so no shuffle, and zstd, which finds the
/// repeats in number text that Blosc's faster codecs miss.
const JSON_OPTIONS: CompressOptions = CompressOptions {
    codec: Codec::Zstd,
    level: 3,
    shuffle: Shuffle::None,
};

/// JSON bodies smaller than this travel as they are: the container's header would eat
/// most of the gain.
const MIN_JSON_LEN: usize = 1024;

/// The tensor name a JSON-only body is chosen for (no tensor has an empty name in
/// KServe v2, so it cannot collide with one).
const JSON_NAME: &str = "";

/// What the encoder knows of the call.
pub struct Context<'a> {
    /// The metrics and tuner method label of REST inference.
    pub method: &'a str,
    /// The model key (`name` or `name:version`).
    pub model: &'a str,
    /// The link's measured goodput to the peer, when known.
    pub link_bytes_per_sec: Option<f64>,
}

/// The container of `body`, or `None` when nothing was worth compressing or the
/// container would not be smaller than the body.
pub fn encode(
    chooser: &dyn Chooser,
    context: &Context<'_>,
    layout: &Layout,
    body: &[u8],
) -> Result<Option<Vec<u8>>, Error> {
    let mut specs = Vec::new();
    let mut chosen = Vec::new();
    match layout {
        Layout::Json => {
            // The chooser says whether compressing pays (the link, the data); the codec
            // is zstd whatever it would pick for a tensor, since this is text.
            let info = TensorInfo {
                method: context.method,
                name: JSON_NAME,
                dtype: DType::Bytes,
                elem_size: 1,
                model: context.model,
                link_bytes_per_sec: context.link_bytes_per_sec,
                len: body.len(),
            };
            if body.len() >= MIN_JSON_LEN && chooser.choose(&info, body).is_some() {
                specs.push(PatchSpec {
                    offset: 0,
                    len: body.len(),
                    elem_size: 1,
                    options: JSON_OPTIONS,
                });
            }
        }
        Layout::Binary(tensors) => {
            for tensor in tensors {
                let info = TensorInfo {
                    method: context.method,
                    name: &tensor.name,
                    dtype: tensor.dtype,
                    elem_size: tensor.dtype.elem_size(),
                    model: context.model,
                    link_bytes_per_sec: context.link_bytes_per_sec,
                    len: tensor.len,
                };
                let data = &body[tensor.offset..tensor.offset + tensor.len];
                if let Some(options) = chooser.choose(&info, data) {
                    specs.push(PatchSpec {
                        offset: tensor.offset,
                        len: tensor.len,
                        elem_size: info.elem_size,
                        options,
                    });
                    chosen.push(info);
                }
            }
        }
    }
    if specs.is_empty() {
        return Ok(None);
    }
    let encoded = container::encode(body, &specs)?;
    for ((info, spec), report) in chosen.iter().zip(&specs).zip(&encoded.patches) {
        chooser.observe(
            info,
            &TensorOutcome {
                name: info.name.to_owned(),
                dtype: info.dtype,
                options: spec.options,
                original_len: spec.len,
                compressed_len: report.compressed_len,
                compress_time: report.compress_time,
            },
        );
    }
    Ok((encoded.bytes.len() < body.len()).then_some(encoded.bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::Limits;
    use crate::layer::rest::layout::BinaryTensor;
    use crate::message::FixedChooser;

    #[test]
    fn binary_tensors_and_json_bodies_restore_exactly() {
        let chooser = FixedChooser {
            options: CompressOptions::default(),
            min_size: 64,
        };
        let context = Context {
            method: "/v2/models/infer",
            model: "m",
            link_bytes_per_sec: None,
        };
        let header = br#"{"inputs":[{"name":"x","datatype":"FP32","shape":[1024],"parameters":{"binary_data_size":4096}}]}"#;
        let mut body = header.to_vec();
        body.extend((0..1024).flat_map(|i| (i as f32 * 0.001).to_le_bytes()));
        let layout = Layout::Binary(vec![BinaryTensor {
            name: "x".into(),
            dtype: DType::F32,
            offset: header.len(),
            len: 4096,
        }]);
        let encoded = encode(&chooser, &context, &layout, &body).unwrap().unwrap();
        assert!(encoded.len() < body.len());
        assert_eq!(
            container::decode(&encoded, &Limits::default()).unwrap(),
            body
        );

        let json = format!(
            r#"{{"inputs":[{{"name":"x","datatype":"INT32","shape":[2000],"data":[{}]}}]}}"#,
            vec!["7"; 2000].join(",")
        );
        let encoded = encode(&chooser, &context, &Layout::Json, json.as_bytes())
            .unwrap()
            .unwrap();
        assert!(encoded.len() * 10 < json.len());
        assert_eq!(
            container::decode(&encoded, &Limits::default()).unwrap(),
            json.as_bytes()
        );
        // Small JSON travels as it is.
        assert!(
            encode(&chooser, &context, &Layout::Json, b"{}")
                .unwrap()
                .is_none()
        );
    }
}
