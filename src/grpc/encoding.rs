//! `grpc-encoding` / `grpc-accept-encoding` and the standard message encodings
//! (gzip, deflate, zstd), decoded within the same size limit as everything else.

use std::io::Read;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::status::{Code, Status};

/// The `grpc-encoding` token of the bloscar message encoding.
pub const BLOSCAR: &str = "bloscar";
/// Request/response header naming the encoding of compressed messages.
pub const GRPC_ENCODING: HeaderName = HeaderName::from_static("grpc-encoding");
/// Header listing the encodings a peer can read.
pub const GRPC_ACCEPT_ENCODING: HeaderName = HeaderName::from_static("grpc-accept-encoding");

/// A message encoding named in `grpc-encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// No compression.
    Identity,
    /// gzip (RFC 1952).
    Gzip,
    /// zlib-wrapped deflate (RFC 1950), as gRPC's `deflate` is.
    Deflate,
    /// Zstandard frames.
    Zstd,
    /// bloscar containers (skeleton + Blosc patches).
    Bloscar,
}

impl Encoding {
    /// Parses a token; `None` for encodings bloscar cannot read.
    pub fn parse(token: &str) -> Option<Encoding> {
        match token.trim() {
            "" | "identity" => Some(Encoding::Identity),
            "gzip" => Some(Encoding::Gzip),
            "deflate" => Some(Encoding::Deflate),
            "zstd" => Some(Encoding::Zstd),
            BLOSCAR => Some(Encoding::Bloscar),
            _ => None,
        }
    }

    /// The token as written in headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Identity => "identity",
            Encoding::Gzip => "gzip",
            Encoding::Deflate => "deflate",
            Encoding::Zstd => "zstd",
            Encoding::Bloscar => BLOSCAR,
        }
    }

    /// The encoding declared by `grpc-encoding` in `headers`: `Ok(Identity)` when absent,
    /// `Err(token)` for an encoding bloscar cannot read.
    pub fn from_headers(headers: &HeaderMap) -> Result<Encoding, String> {
        match headers.get(GRPC_ENCODING) {
            None => Ok(Encoding::Identity),
            Some(value) => {
                let token = value.to_str().unwrap_or("");
                Encoding::parse(token).ok_or_else(|| token.to_owned())
            }
        }
    }
}

/// Whether `grpc-accept-encoding` in `headers` lists `token`.
pub fn accepts(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(GRPC_ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Adds `token` to `grpc-accept-encoding` unless it is already listed.
pub fn add_accept(headers: &mut HeaderMap, token: &str) {
    if accepts(headers, token) {
        return;
    }
    let mut list = accept_list(headers);
    list.push(token.to_owned());
    set_accept(headers, &list);
}

/// Removes `token` from `grpc-accept-encoding`; drops the header when nothing is left.
pub fn remove_accept(headers: &mut HeaderMap, token: &str) {
    if !accepts(headers, token) {
        return;
    }
    let list: Vec<String> = accept_list(headers)
        .into_iter()
        .filter(|t| !t.eq_ignore_ascii_case(token))
        .collect();
    set_accept(headers, &list);
}

fn accept_list(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(GRPC_ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

fn set_accept(headers: &mut HeaderMap, list: &[String]) {
    headers.remove(GRPC_ACCEPT_ENCODING);
    if list.is_empty() {
        return;
    }
    if let Ok(value) = HeaderValue::from_str(&list.join(",")) {
        headers.insert(GRPC_ACCEPT_ENCODING, value);
    }
}

/// Decodes one gzip, deflate or zstd message, refusing output beyond `limit` bytes
/// (RESOURCE_EXHAUSTED) without ever holding more than `limit + 1` bytes.
pub fn decompress(encoding: Encoding, data: &[u8], limit: usize) -> Result<Vec<u8>, Status> {
    let mut out = Vec::new();
    decoder(encoding, data)?
        .take(cap(limit))
        .read_to_end(&mut out)
        .map_err(|err| invalid(encoding, err))?;
    within(encoding, out.len(), limit)?;
    Ok(out)
}

/// The length [`decompress`] would return, found without keeping the output, so that
/// memory for it can be set aside first.
pub fn decompressed_len(encoding: Encoding, data: &[u8], limit: usize) -> Result<usize, Status> {
    let len = std::io::copy(
        &mut decoder(encoding, data)?.take(cap(limit)),
        &mut std::io::sink(),
    )
    .map_err(|err| invalid(encoding, err))?;
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    within(encoding, len, limit)?;
    Ok(len)
}

fn decoder<'a>(encoding: Encoding, data: &'a [u8]) -> Result<Box<dyn Read + 'a>, Status> {
    Ok(match encoding {
        Encoding::Gzip => Box::new(flate2::read::GzDecoder::new(data)),
        Encoding::Deflate => Box::new(flate2::read::ZlibDecoder::new(data)),
        Encoding::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(data).map_err(|err| invalid(encoding, err))?,
        ),
        Encoding::Identity | Encoding::Bloscar => {
            return Err(Status::new(
                Code::Internal,
                format!("{} is not a standard compression", encoding.as_str()),
            ));
        }
    })
}

/// Reads stop one byte past the limit: enough to tell that it was passed.
fn cap(limit: usize) -> u64 {
    u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1)
}

fn invalid(encoding: Encoding, err: std::io::Error) -> Status {
    Status::new(
        Code::Internal,
        format!("invalid {} message: {err}", encoding.as_str()),
    )
}

fn within(encoding: Encoding, len: usize, limit: usize) -> Result<(), Status> {
    if len > limit {
        return Err(Status::new(
            Code::ResourceExhausted,
            format!(
                "{} message decompresses beyond the limit of {limit} bytes",
                encoding.as_str()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn standard_encodings_round_trip() {
        let data: Vec<u8> = (0..10_000u32).flat_map(|i| i.to_le_bytes()).collect();
        assert_eq!(
            decompress(Encoding::Gzip, &gzip(&data), data.len()).unwrap(),
            data
        );

        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&data).unwrap();
        let deflated = enc.finish().unwrap();
        assert_eq!(
            decompress(Encoding::Deflate, &deflated, data.len()).unwrap(),
            data
        );

        let zstd = zstd::stream::encode_all(&data[..], 3).unwrap();
        assert_eq!(decompress(Encoding::Zstd, &zstd, data.len()).unwrap(), data);
    }

    #[test]
    fn decompressed_len_agrees_with_decompress() {
        for data in [
            Vec::new(),
            vec![7u8],
            (0..100_003u32).map(|i| i as u8).collect(),
        ] {
            let packed = gzip(&data);
            let len = decompressed_len(Encoding::Gzip, &packed, data.len()).unwrap();
            assert_eq!(len, data.len());
            let zstd = zstd::stream::encode_all(&data[..], 3).unwrap();
            assert_eq!(
                decompressed_len(Encoding::Zstd, &zstd, data.len()).unwrap(),
                data.len()
            );
        }
        let bomb = gzip(&vec![0u8; 8 << 20]);
        let err = decompressed_len(Encoding::Gzip, &bomb, 1 << 20).unwrap_err();
        assert_eq!(err.code, Code::ResourceExhausted);
        let err = decompressed_len(Encoding::Gzip, b"not gzip", 1 << 20).unwrap_err();
        assert_eq!(err.code, Code::Internal);
    }

    #[test]
    fn gzip_bomb_is_resource_exhausted() {
        let bomb = gzip(&vec![0u8; 8 << 20]);
        assert!(bomb.len() < 64 << 10);
        let err = decompress(Encoding::Gzip, &bomb, 1 << 20).unwrap_err();
        assert_eq!(err.code, Code::ResourceExhausted);
    }

    #[test]
    fn garbage_is_internal() {
        let err = decompress(Encoding::Gzip, b"not gzip at all", 1024).unwrap_err();
        assert_eq!(err.code, Code::Internal);
        let err = decompress(Encoding::Zstd, b"not zstd at all", 1024).unwrap_err();
        assert_eq!(err.code, Code::Internal);
    }

    #[test]
    fn accept_encoding_lists_are_edited_in_place() {
        let mut headers = HeaderMap::new();
        headers.insert(
            GRPC_ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, identity"),
        );
        add_accept(&mut headers, BLOSCAR);
        assert_eq!(headers[GRPC_ACCEPT_ENCODING], "gzip,identity,bloscar");
        assert!(accepts(&headers, BLOSCAR));
        remove_accept(&mut headers, BLOSCAR);
        assert_eq!(headers[GRPC_ACCEPT_ENCODING], "gzip,identity");

        let mut only = HeaderMap::new();
        only.insert(GRPC_ACCEPT_ENCODING, HeaderValue::from_static("bloscar"));
        remove_accept(&mut only, BLOSCAR);
        assert!(only.get(GRPC_ACCEPT_ENCODING).is_none());
    }

    #[test]
    fn grpc_encoding_header_is_parsed() {
        let mut headers = HeaderMap::new();
        assert_eq!(Encoding::from_headers(&headers), Ok(Encoding::Identity));
        headers.insert(GRPC_ENCODING, HeaderValue::from_static("bloscar"));
        assert_eq!(Encoding::from_headers(&headers), Ok(Encoding::Bloscar));
        headers.insert(GRPC_ENCODING, HeaderValue::from_static("snappy"));
        assert_eq!(Encoding::from_headers(&headers), Err("snappy".to_owned()));
    }
}
