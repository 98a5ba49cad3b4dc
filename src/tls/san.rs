//! The subject alternative names of an X.509 certificate (RFC 5280, 4.2.1.6): its DNS
//! names and URIs, for the allowed-SAN check of client certificates.
//!
//! A small DER walk over the certificate: from the Certificate to its tbsCertificate,
//! its `[3]` extensions, the extension with id 2.5.29.17, and its GeneralNames. It runs
//! on certificates that rustls has already verified, but is written for any bytes: every
//! length is checked against what is left, and anything unexpected yields no names (so
//! the check fails closed).

/// The DER encoding of the subjectAltName extension's id, 2.5.29.17.
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const OCTET_STRING: u8 = 0x04;
/// `[3]` constructed, explicit: tbsCertificate's extensions.
const EXTENSIONS: u8 = 0xa3;
/// GeneralName `dNSName [2] IA5String`, implicit.
const DNS_NAME: u8 = 0x82;
/// GeneralName `uniformResourceIdentifier [6] IA5String`, implicit.
const URI: u8 = 0x86;

/// A subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum San {
    /// A `dNSName`.
    Dns(String),
    /// A `uniformResourceIdentifier` (SPIFFE IDs are these).
    Uri(String),
}

impl San {
    /// The name as written in the certificate.
    pub(super) fn as_str(&self) -> &str {
        match self {
            San::Dns(s) | San::Uri(s) => s,
        }
    }
}

/// The DNS names and URIs of `certificate` (DER); empty if it has none, or cannot be
/// read.
pub(super) fn subject_alt_names(certificate: &[u8]) -> Vec<San> {
    names(certificate).unwrap_or_default()
}

fn names(certificate: &[u8]) -> Option<Vec<San>> {
    let (tag, cert, _) = element(certificate)?;
    expect(tag, SEQUENCE)?;
    let (tag, mut tbs, _) = element(cert)?;
    expect(tag, SEQUENCE)?;
    // The fields before the extensions are skipped whatever they are; the extensions are
    // the tbsCertificate's last field, [3].
    let extensions = loop {
        let (tag, body, rest) = element(tbs)?;
        if tag == EXTENSIONS {
            break body;
        }
        tbs = rest;
    };
    let (tag, mut list, _) = element(extensions)?;
    expect(tag, SEQUENCE)?;
    while !list.is_empty() {
        let (tag, extension, rest) = element(list)?;
        expect(tag, SEQUENCE)?;
        list = rest;
        let (tag, id, mut fields) = element(extension)?;
        expect(tag, OID)?;
        if id != SUBJECT_ALT_NAME {
            continue;
        }
        let (mut tag, mut value, rest) = element(fields)?;
        if tag == BOOLEAN {
            fields = rest;
            (tag, value, _) = element(fields)?;
        }
        expect(tag, OCTET_STRING)?;
        return general_names(value);
    }
    Some(Vec::new())
}

fn general_names(value: &[u8]) -> Option<Vec<San>> {
    let (tag, mut names, _) = element(value)?;
    expect(tag, SEQUENCE)?;
    let mut out = Vec::new();
    while !names.is_empty() {
        let (tag, name, rest) = element(names)?;
        names = rest;
        // IA5String is ASCII; anything else is not a name anyone could have allowed.
        let text = || std::str::from_utf8(name).ok().filter(|s| s.is_ascii());
        match tag {
            DNS_NAME => out.push(San::Dns(text()?.to_owned())),
            URI => out.push(San::Uri(text()?.to_owned())),
            _ => {}
        }
    }
    Some(out)
}

fn expect(tag: u8, wanted: u8) -> Option<()> {
    (tag == wanted).then_some(())
}

/// The first DER element of `input`: its tag, its contents and what follows it. Only
/// single-byte tags and definite lengths (all DER has) of up to four bytes are read.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, after) = rest.split_at(count);
        rest = after;
        bytes
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b))
    };
    if rest.len() < len {
        return None;
    }
    let (body, after) = rest.split_at(len);
    Some((tag, body, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_or_odd_input_yields_no_names() {
        assert!(subject_alt_names(&[]).is_empty());
        assert!(subject_alt_names(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_empty());
        assert!(subject_alt_names(&[0x30, 0x03, 0x30, 0x01]).is_empty());
        assert!(subject_alt_names(&[0x1f, 0x00]).is_empty());
    }

    #[test]
    fn general_names_keep_dns_names_and_uris_only() {
        // SEQUENCE { dNSName "a.b", iPAddress 127.0.0.1, URI "spiffe://t/x" }
        let mut value = vec![0x30, 0];
        value.extend([0x82, 3]);
        value.extend(b"a.b");
        value.extend([0x87, 4, 127, 0, 0, 1]);
        value.extend([0x86, 12]);
        value.extend(b"spiffe://t/x");
        value[1] = (value.len() - 2) as u8;
        assert_eq!(
            general_names(&value),
            Some(vec![
                San::Dns("a.b".into()),
                San::Uri("spiffe://t/x".into())
            ])
        );
    }
}
