//! TLS to the members: the rustls configuration a URL's `cacert`, `cert`
//! and `key` ask for, and what a failed handshake means in words an
//! operator can act on.
//!
//! Only the CA of `cacert` is trusted (not the system's roots): an etcd
//! cluster's certificates come from its own CA, and a certificate some
//! public CA signed for a member's address must not do. The crypto is
//! rustls' `ring` provider, which builds with a C compiler alone.

use std::path::Path;
use std::sync::Arc;

use rustls::{AlertDescription, CertificateError};
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig, TlsProvider};

use super::url::TlsFiles;

/// The TLS configuration for `files`, or why it cannot be had (naming
/// the file).
pub fn config(files: &TlsFiles) -> Result<TlsConfig, String> {
    let ca = certificates(&files.cacert, "cacert")?;
    // rustls deprecates ring's provider for lacking post-quantum key
    // exchange; aws-lc-rs, which has it, needs cmake and more to build.
    #[allow(deprecated)]
    let ring = rustls::crypto::ring::default_provider();
    let mut builder = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(Arc::new(ring))
        .root_certs(RootCerts::new_with_certs(&ca));
    if let Some((cert, key)) = &files.client {
        let chain = certificates(cert, "cert")?;
        let key = private_key(key)?;
        builder = builder.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
    }
    Ok(builder.build())
}

fn read(file: &Path, option: &str) -> Result<Vec<u8>, String> {
    std::fs::read(file).map_err(|e| format!("{option}={}: {e}", file.display()))
}

/// Every certificate of a PEM file; at least one.
fn certificates(file: &Path, option: &str) -> Result<Vec<Certificate<'static>>, String> {
    let pem = read(file, option)?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(format!("{option}={}: {e}", file.display())),
        }
    }
    if certs.is_empty() {
        return Err(format!(
            "{option}={}: no PEM certificate in it",
            file.display()
        ));
    }
    Ok(certs)
}

fn private_key(file: &Path) -> Result<PrivateKey<'static>, String> {
    let pem = read(file, "key")?;
    PrivateKey::from_pem(&pem)
        .map_err(|e| format!("key={}: no PEM private key in it ({e})", file.display()))
}

/// What a TLS failure with a member means, in words; `with_cert`: whether
/// we offered a client certificate.
pub fn reason(e: &rustls::Error, with_cert: bool) -> String {
    use rustls::Error as E;
    match e {
        E::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                format!("TLS: the member's certificate is not signed by the CA of cacert= ({c:?})")
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "TLS: the member's certificate is not for the name asked ({c:?}); \
                     server-name= gives the name it carries"
                )
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                format!("TLS: the member's certificate has expired ({c:?})")
            }
            _ => format!("TLS: the member's certificate is refused ({c:?})"),
        },
        E::AlertReceived(
            a @ (AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateRequired
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::DecryptError
            | AlertDescription::AccessDenied),
        ) if with_cert => format!(
            "TLS: the member refused our client certificate (alert {a:?}); cert= and key= \
             must be a pair its CA signed"
        ),
        E::AlertReceived(a) if !with_cert => format!(
            "TLS: the member refused the handshake (alert {a:?}): it may want a client \
             certificate; give cert= and key="
        ),
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => {
            format!("TLS: the member does not speak TLS on this port ({e})")
        }
        _ => format!("TLS: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_empty_files_are_named() {
        let dir = std::env::temp_dir().join(format!("caskfs-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, b"not a certificate\n").unwrap();
        let files = |ca: &Path| TlsFiles {
            cacert: ca.to_path_buf(),
            client: None,
            server_name: None,
        };
        let e = config(&files(&dir.join("missing.pem"))).unwrap_err();
        assert!(e.starts_with("cacert=") && e.contains("missing.pem"), "{e}");
        let e = config(&files(&empty)).unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reasons_say_what_to_fix() {
        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert!(reason(&unknown, true).contains("not signed by the CA of cacert="));
        let alert = rustls::Error::AlertReceived(AlertDescription::UnknownCA);
        assert!(reason(&alert, true).contains("refused our client certificate"));
        assert!(reason(&alert, false).contains("give cert= and key="));
    }
}
