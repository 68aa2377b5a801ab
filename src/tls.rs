//! TLS in one place: reading PEM files, and the rustls client configuration
//! and HTTPS connector that both outbound clients use (CLS, and the OTLP
//! push over HTTP; over gRPC, tonic builds its own from the same checked
//! material). rustls with the ring provider and the built-in webpki roots:
//! a scratch image has no system trust store.
//!
//! Errors are one line naming the setting (`NAME="path" …`), for a start
//! that stops with exit 2 before the port is bound.

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// The one crypto provider of every TLS connection, in and out.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// `name="path"`, as messages quote a file setting.
fn quoted(name: &str, path: &Path) -> String {
    format!("{name}=\"{}\"", path.display())
}

pub(crate) fn read_file(name: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{} cannot be read: {e}", quoted(name, path)))
}

/// The certificates of a PEM file; at least one.
pub(crate) fn read_certificates(
    name: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, String> {
    certificates(name, path, &read_file(name, path)?)
}

/// The certificates of PEM text read from `path`; at least one.
pub(crate) fn certificates(
    name: &str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not valid PEM: {e:?}", quoted(name, path)))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", quoted(name, path)));
    }
    Ok(certs)
}

/// The private key of PEM text read from `path`.
pub(crate) fn private_key(
    name: &str,
    path: &Path,
    pem: &[u8],
) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
        format!(
            "{} holds no usable PEM private key: {e:?}",
            quoted(name, path)
        )
    })
}

/// A client certificate chain and its key, for mutual TLS; `settings`
/// names both for messages.
pub(crate) struct ClientIdentity {
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
    pub(crate) settings: &'static str,
}

/// A client configuration trusting the webpki roots and `extra_roots`
/// (from the setting `roots_name`), presenting `identity` when given.
pub(crate) fn client_config(
    extra_roots: &[CertificateDer<'static>],
    roots_name: &str,
    identity: Option<ClientIdentity>,
) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra_roots {
        roots
            .add(cert.clone())
            .map_err(|e| format!("{roots_name} holds a certificate rustls rejects: {e}"))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots);
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some(ClientIdentity {
            chain,
            key,
            settings,
        }) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("{settings} do not fit together: {e}")),
    }
}

/// An HTTP/1.1 and HTTP/2 connector over `inner` that speaks TLS to
/// `https://` URIs and plain TCP to `http://` ones (tests, internal mirrors).
pub(crate) fn https_connector<C>(config: rustls::ClientConfig, inner: C) -> HttpsConnector<C> {
    HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem_of(certified: &rcgen::CertifiedKey) -> (Vec<u8>, Vec<u8>) {
        (
            certified.cert.pem().into_bytes(),
            certified.key_pair.serialize_pem().into_bytes(),
        )
    }

    #[test]
    fn pem_errors_name_the_setting_and_the_file() {
        let path = Path::new("/nonexistent/ca.pem");
        let error = read_certificates("NVIDIA_API_CA_FILE", path).unwrap_err();
        assert!(
            error.starts_with("NVIDIA_API_CA_FILE=\"/nonexistent/ca.pem\" cannot be read: "),
            "{error}"
        );
        assert_eq!(
            certificates("X", path, b"no pem here").unwrap_err(),
            "X=\"/nonexistent/ca.pem\" holds no PEM certificate"
        );
        assert!(private_key("K", path, b"")
            .unwrap_err()
            .starts_with("K=\"/nonexistent/ca.pem\" holds no usable PEM private key"));
    }

    #[test]
    fn a_client_identity_must_be_a_matching_pair() {
        let a = rcgen::generate_simple_self_signed(["a.test".to_owned()]).unwrap();
        let b = rcgen::generate_simple_self_signed(["b.test".to_owned()]).unwrap();
        let path = Path::new("x.pem");
        let identity = |cert: &rcgen::CertifiedKey, key: &rcgen::CertifiedKey| ClientIdentity {
            chain: certificates("C", path, &pem_of(cert).0).unwrap(),
            key: private_key("K", path, &pem_of(key).1).unwrap(),
            settings: "C and K",
        };
        assert!(client_config(&[], "CA", Some(identity(&a, &a))).is_ok());
        let error = client_config(&[], "CA", Some(identity(&a, &b))).unwrap_err();
        assert!(error.starts_with("C and K do not fit together"), "{error}");
        let ca = certificates("CA", path, &pem_of(&a).0).unwrap();
        assert!(client_config(&ca, "CA", None).is_ok());
    }
}
