//! TLS on the hop between the sidecars: handshakes that failed, by listener and by a
//! bounded set of reasons, and reloads of the certificate files.

use std::fmt;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Why a TLS handshake failed: a small fixed set, so that the label stays bounded
/// whatever peers send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsFailure {
    /// Mutual TLS: the client presented no certificate.
    NoCertificate,
    /// The peer's certificate is not issued by a trusted CA (or its signature is bad).
    UnknownCa,
    /// Mutual TLS: the client certificate has none of the allowed subject alternative
    /// names.
    SanNotAllowed,
    /// The peer's certificate has expired or is not valid yet.
    Expired,
    /// The server certificate is not valid for the expected server name.
    NameMismatch,
    /// The peer did not speak TLS (e.g. a cleartext client on a TLS port), or sent
    /// malformed TLS.
    NotTls,
    /// The peer ended the handshake with an alert: it refused this side's certificate,
    /// or the two have no protocol version or cipher in common.
    PeerRefused,
    /// Anything else.
    Other,
}

impl TlsFailure {
    /// Every reason, in the order the series are created.
    pub const ALL: [TlsFailure; 8] = [
        TlsFailure::NoCertificate,
        TlsFailure::UnknownCa,
        TlsFailure::SanNotAllowed,
        TlsFailure::Expired,
        TlsFailure::NameMismatch,
        TlsFailure::NotTls,
        TlsFailure::PeerRefused,
        TlsFailure::Other,
    ];

    /// The label value (and the word logs use).
    pub fn label(self) -> &'static str {
        match self {
            TlsFailure::NoCertificate => "no_certificate",
            TlsFailure::UnknownCa => "unknown_ca",
            TlsFailure::SanNotAllowed => "san_not_allowed",
            TlsFailure::Expired => "expired",
            TlsFailure::NameMismatch => "name_mismatch",
            TlsFailure::NotTls => "not_tls",
            TlsFailure::PeerRefused => "peer_refused",
            TlsFailure::Other => "other",
        }
    }
}

impl EncodeLabelValue for TlsFailure {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> fmt::Result {
        fmt::Write::write_str(encoder, self.label())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FailureLabels {
    /// `inbound` (handshakes the listener accepted) or `outbound` (those it dialed).
    listener: &'static str,
    reason: TlsFailure,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReloadLabels {
    listener: &'static str,
    /// `ok`, or `failed` (the previous files stay in use).
    result: &'static str,
}

/// The TLS metric families.
#[derive(Debug, Default)]
pub(super) struct TlsMetrics {
    failures: Family<FailureLabels, Counter>,
    reloads: Family<ReloadLabels, Counter>,
}

impl TlsMetrics {
    /// Registers the families in `registry` (the `bloscar` one).
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes on the hop between the sidecars that failed, by listener (inbound: \
             accepted, outbound: dialed) and reason",
            self.failures.clone(),
        );
        registry.register(
            "tls_reloads",
            "Changes of the TLS certificate, key or CA files seen, by listener and whether the \
             new files were taken into use (ok) or refused, keeping the previous ones (failed)",
            self.reloads.clone(),
        );
    }

    /// Creates `listener`'s series so that they read 0 before any failure.
    pub(super) fn listener_started(&self, listener: &'static str) {
        for reason in TlsFailure::ALL {
            let _ = self
                .failures
                .get_or_create(&FailureLabels { listener, reason });
        }
        for result in ["ok", "failed"] {
            let _ = self
                .reloads
                .get_or_create(&ReloadLabels { listener, result });
        }
    }

    pub(super) fn failure(&self, listener: &'static str, reason: TlsFailure) {
        self.failures
            .get_or_create(&FailureLabels { listener, reason })
            .inc();
    }

    pub(super) fn reload(&self, listener: &'static str, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads
            .get_or_create(&ReloadLabels { listener, result })
            .inc();
    }
}
