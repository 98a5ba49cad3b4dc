//! Why a TLS handshake failed, in the bounded set of reasons the metrics count.

use std::io;

use rustls::{CertificateError, Error};

pub use crate::metrics::TlsFailure;

/// The reason `error` (from a handshake) stands for.
pub fn classify(error: &Error) -> TlsFailure {
    match error {
        Error::NoCertificatesPresented => TlsFailure::NoCertificate,
        Error::InvalidCertificate(e) => match e {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                TlsFailure::UnknownCa
            }
            CertificateError::ApplicationVerificationFailure => TlsFailure::SanNotAllowed,
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => TlsFailure::Expired,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsFailure::NameMismatch
            }
            _ => TlsFailure::Other,
        },
        Error::InvalidMessage(_) | Error::InappropriateMessage { .. } => TlsFailure::NotTls,
        Error::AlertReceived(_) | Error::PeerIncompatible(_) => TlsFailure::PeerRefused,
        _ => TlsFailure::Other,
    }
}

/// The rustls error inside an I/O error from tokio-rustls, if the handshake failed on
/// TLS grounds (rather than the connection closing or timing out).
pub fn tls_error(error: &io::Error) -> Option<&Error> {
    error.get_ref()?.downcast_ref::<Error>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::AlertDescription;
    use rustls::InvalidMessage;

    #[test]
    fn reasons() {
        assert_eq!(
            classify(&Error::NoCertificatesPresented),
            TlsFailure::NoCertificate
        );
        assert_eq!(
            classify(&Error::InvalidCertificate(CertificateError::UnknownIssuer)),
            TlsFailure::UnknownCa
        );
        assert_eq!(
            classify(&Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure
            )),
            TlsFailure::SanNotAllowed
        );
        assert_eq!(
            classify(&Error::InvalidCertificate(CertificateError::Expired)),
            TlsFailure::Expired
        );
        assert_eq!(
            classify(&Error::InvalidCertificate(
                CertificateError::NotValidForName
            )),
            TlsFailure::NameMismatch
        );
        assert_eq!(
            classify(&Error::InvalidMessage(InvalidMessage::InvalidContentType)),
            TlsFailure::NotTls
        );
        assert_eq!(
            classify(&Error::AlertReceived(AlertDescription::UnknownCA)),
            TlsFailure::PeerRefused
        );
        assert_eq!(classify(&Error::DecryptError), TlsFailure::Other);
        let wrapped = io::Error::new(io::ErrorKind::InvalidData, Error::DecryptError);
        assert_eq!(tls_error(&wrapped), Some(&Error::DecryptError));
        assert_eq!(
            tls_error(&io::Error::from(io::ErrorKind::UnexpectedEof)),
            None
        );
    }
}
