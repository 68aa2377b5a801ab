//! A private PKI made for one test run: a CA, a server certificate it signs
//! for 127.0.0.1 and localhost, and a client certificate, in PEM and DER;
//! and the rustls configurations of a TLS server (with or without client
//! certificates) and of a TLS client that trust it.

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

/// A certificate and its key.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
    /// PKCS#8.
    pub key_der: Vec<u8>,
}

pub struct Pki {
    pub ca_pem: String,
    pub ca_der: Vec<u8>,
    /// For 127.0.0.1 and localhost.
    pub server: Leaf,
    /// For the name `client`.
    pub client: Leaf,
}

impl Default for Pki {
    fn default() -> Pki {
        Pki::new()
    }
}

impl Pki {
    pub fn new() -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf = |names: &[&str]| {
            let params =
                CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                    .unwrap();
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
            Leaf {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
                cert_der: cert.der().to_vec(),
                key_der: key.serialize_der(),
            }
        };
        Pki {
            server: leaf(&["127.0.0.1", "localhost"]),
            client: leaf(&["client"]),
            ca_pem: ca.pem(),
            ca_der: ca.der().to_vec(),
        }
    }

    /// A rustls server configuration presenting the server certificate.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.server_config_for(None)
    }

    /// As `server_config`, requiring a client certificate that `clients`'s
    /// CA signed.
    pub fn mtls_server_config(&self, clients: &Pki) -> Arc<rustls::ServerConfig> {
        self.server_config_for(Some(clients))
    }

    fn server_config_for(&self, clients: Option<&Pki>) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match clients {
            None => builder.with_no_client_auth(),
            Some(clients) => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(clients.roots()),
                    provider,
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder
            .with_single_cert(
                vec![CertificateDer::from(self.server.cert_der.clone())],
                PrivateKeyDer::Pkcs8(self.server.key_der.clone().into()),
            )
            .unwrap();
        Arc::new(config)
    }

    /// A TLS client trusting this CA, presenting `client` when given.
    pub fn connector(&self, client: Option<&Leaf>) -> tokio_rustls::TlsConnector {
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(self.roots());
        let config = match client {
            None => builder.with_no_client_auth(),
            Some(leaf) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from(leaf.cert_der.clone())],
                    PrivateKeyDer::Pkcs8(leaf.key_der.clone().into()),
                )
                .unwrap(),
        };
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.ca_der.clone()))
            .unwrap();
        roots
    }
}
