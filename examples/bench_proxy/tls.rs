//! Certificates for the pair with mutual TLS on the hop (`--hop-tls`): a CA, the inbound's
//! server certificate and the outbound's client certificate, made with rcgen in a
//! temporary directory.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// The files, removed when dropped.
pub struct HopCertificates {
    dir: PathBuf,
}

impl HopCertificates {
    /// Makes the CA and both certificates.
    pub fn new() -> HopCertificates {
        let dir = std::env::temp_dir().join(format!("bloscar-bench-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "bloscar bench CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let write = |name: &str, contents: &str| {
            std::fs::write(dir.join(name), contents).expect("write a certificate file")
        };
        write("ca.crt", &ca.pem());
        for (name, san) in [("server", "inbound.bench"), ("client", "outbound.bench")] {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(vec![san.to_owned()])
                .unwrap()
                .signed_by(&key, &ca)
                .unwrap();
            write(&format!("{name}.crt"), &cert.pem());
            write(&format!("{name}.key"), &key.serialize_pem());
        }
        HopCertificates { dir }
    }

    /// The variables of both sidecars (each reads those of its own role).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let path = |name: &str| self.dir.join(name).display().to_string();
        vec![
            ("BLOSCAR_INBOUND_TLS_CERT", path("server.crt")),
            ("BLOSCAR_INBOUND_TLS_KEY", path("server.key")),
            ("BLOSCAR_INBOUND_TLS_CLIENT_CA", path("ca.crt")),
            ("BLOSCAR_INBOUND_TLS_ALLOWED_SANS", "outbound.bench".into()),
            ("BLOSCAR_OUTBOUND_TLS_CA", path("ca.crt")),
            ("BLOSCAR_OUTBOUND_TLS_SERVER_NAME", "inbound.bench".into()),
            ("BLOSCAR_OUTBOUND_TLS_CERT", path("client.crt")),
            ("BLOSCAR_OUTBOUND_TLS_KEY", path("client.key")),
        ]
    }
}

impl Drop for HopCertificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
