//! Client certificates restricted to allowed subject alternative names: the CA says who
//! the peer is, the list says which of the CA's identities may call (a SPIFFE ID per
//! workload, or the DNS names of the client sidecars).

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

use super::san::{San, subject_alt_names};

/// A verifier that accepts what `inner` accepts, if the certificate carries one of the
/// allowed names. A refusal is `ApplicationVerificationFailure` (the TLS alert
/// `access_denied`), which [`super::failure::classify`] reads as `san_not_allowed`.
#[derive(Debug)]
pub(super) struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

impl AllowedSans {
    pub(super) fn new(inner: Arc<dyn ClientCertVerifier>, allowed: Vec<String>) -> AllowedSans {
        AllowedSans { inner, allowed }
    }
}

/// Whether `name` matches the allowed `pattern`: equal (DNS names ignoring ASCII case),
/// or starting with what comes before a trailing `*`.
pub(super) fn matches(pattern: &str, name: &San) -> bool {
    let text = name.as_str();
    match pattern.strip_suffix('*') {
        Some(prefix) => match name {
            San::Dns(_) => text
                .get(..prefix.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(prefix)),
            San::Uri(_) => text.starts_with(prefix),
        },
        None => match name {
            San::Dns(_) => text.eq_ignore_ascii_case(pattern),
            San::Uri(_) => text == pattern,
        },
    }
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let names = subject_alt_names(end_entity);
        let allowed = names
            .iter()
            .any(|name| self.allowed.iter().any(|p| matches(p, name)));
        if allowed {
            Ok(verified)
        } else {
            let presented: Vec<&str> = names.iter().map(San::as_str).collect();
            tracing::debug!(
                ?presented,
                "client certificate has none of the allowed subject alternative names"
            );
            Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let dns = San::Dns("Client.ML.svc".into());
        assert!(matches("client.ml.svc", &dns));
        assert!(matches("client.*", &dns));
        assert!(!matches("server.ml.svc", &dns));
        let uri = San::Uri("spiffe://td/ns/ml/sa/client".into());
        assert!(matches("spiffe://td/ns/ml/sa/client", &uri));
        assert!(matches("spiffe://td/ns/ml/*", &uri));
        assert!(!matches("spiffe://td/ns/other/*", &uri));
        assert!(!matches("SPIFFE://td/ns/ml/sa/client", &uri));
        assert!(!matches("spiffe://td/ns/ml/sa/client-2", &uri));
    }

    #[test]
    fn names_of_a_real_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["client.ml.svc".to_owned()]).unwrap();
        params.subject_alt_names.push(rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from("spiffe://td/ns/ml/sa/client").unwrap(),
        ));
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress([10, 0, 0, 1].into()));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            subject_alt_names(cert.der()),
            vec![
                San::Dns("client.ml.svc".into()),
                San::Uri("spiffe://td/ns/ml/sa/client".into())
            ]
        );
        let bare = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert!(subject_alt_names(bare.der()).is_empty());
    }
}
