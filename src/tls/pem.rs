//! PEM files: certificate chains, private keys and CA bundles, each read whole (within a
//! size limit) and parsed into the DER types rustls takes.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

/// Largest PEM file read: a CA bundle of a few hundred certificates (the system bundle
/// is about 220 KiB) fits many times over; anything larger is not a certificate file.
pub(super) const MAX_PEM_BYTES: u64 = 4 << 20;

/// The bytes of `path`, at most [`MAX_PEM_BYTES`].
///
/// Read synchronously: the files are small (a Secret mount is tmpfs), and they are read
/// at start-up and then at most once per check interval.
pub(super) fn read(variable: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let failed = |problem: String| TlsError::Read {
        variable,
        path: path.to_owned(),
        problem,
    };
    let file = std::fs::File::open(path).map_err(|e| failed(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| failed(e.to_string()))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(failed(format!(
            "larger than {MAX_PEM_BYTES} bytes: not a PEM certificate or key file"
        )));
    }
    Ok(bytes)
}

/// Every certificate in `bytes` (the contents of `path`), in order; at least one.
pub(super) fn certificates(
    variable: &'static str,
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::content(variable, path, format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::content(
            variable,
            path,
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in the file",
        ));
    }
    Ok(certs)
}

/// The first private key in `bytes` (PKCS#8, PKCS#1 or SEC1).
pub(super) fn private_key(
    variable: &'static str,
    path: &Path,
    bytes: &[u8],
) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(bytes).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::content(
            variable,
            path,
            "no PEM private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY) in the file",
        ),
        e => TlsError::content(variable, path, format!("bad PEM: {e}")),
    })
}

/// The CA certificates in `bytes` as trust anchors; at least one, each a valid CA
/// certificate.
pub(super) fn roots(
    variable: &'static str,
    path: &Path,
    bytes: &[u8],
) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for (i, cert) in certificates(variable, path, bytes)?.into_iter().enumerate() {
        store.add(cert).map_err(|e| {
            TlsError::content(
                variable,
                path,
                format!("certificate {} is not a usable CA certificate: {e}", i + 1),
            )
        })?;
    }
    Ok(Arc::new(store))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_oversized_files_are_read_errors() {
        let e = read("BLOSCAR_X", Path::new("/nonexistent/tls.crt")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("BLOSCAR_X: cannot read /nonexistent/tls.crt: "),
            "{e}"
        );
        let dir = std::env::temp_dir().join(format!("bloscar-pem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big.pem");
        std::fs::write(&big, vec![b'A'; MAX_PEM_BYTES as usize + 1]).unwrap();
        let e = read("BLOSCAR_X", &big).unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn text_without_pem_sections_is_refused() {
        let path = Path::new("x.pem");
        let e = certificates("BLOSCAR_X", path, b"hello").unwrap_err();
        assert_eq!(
            e.to_string(),
            "BLOSCAR_X: x.pem: no PEM certificate (-----BEGIN CERTIFICATE-----) in the file"
        );
        let e = private_key("BLOSCAR_X", path, b"hello").unwrap_err();
        assert!(e.to_string().contains("no PEM private key"), "{e}");
        let e = certificates(
            "BLOSCAR_X",
            path,
            b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("bad PEM"), "{e}");
        let e = roots(
            "BLOSCAR_X",
            path,
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("not a usable CA certificate"), "{e}");
    }
}
