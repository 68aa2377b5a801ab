//! The `healthcheck` subcommand: asks the local listener for `/healthz` and
//! exits 0 on 200, 1 otherwise. A scratch image has no curl or shell, so this
//! is how a container health check runs. Silent on success.
//!
//! With TLS on the listener (`--web.config.file`), the check speaks TLS but
//! does not verify the certificate: it asks its own process on loopback
//! whether it is alive, and the certificate names a public host name, not
//! 127.0.0.1. With basic auth, `/healthz` must stay open (the default).

use crate::config::{HealthcheckConfig, ListenAddr};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(3);

pub(crate) fn run(config: &HealthcheckConfig) -> ExitCode {
    let tls = match &config.web_config_file {
        Some(path) => match super::web_config::load(path) {
            Ok(web) => web.tls.is_some(),
            Err(e) => {
                eprintln!("healthcheck failed: {e}");
                return ExitCode::from(1);
            }
        },
        None => false,
    };
    match check(&config.listen, tls) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("healthcheck failed: {e}");
            ExitCode::from(1)
        }
    }
}

fn check(listen: &ListenAddr, tls: bool) -> Result<(), String> {
    let targets =
        super::listen::local_targets(listen).map_err(|e| format!("cannot resolve: {e}"))?;
    let mut connected = Err(String::from("no address to connect to"));
    for addr in targets {
        connected = TcpStream::connect_timeout(&addr, TIMEOUT)
            .map(|stream| (addr, stream))
            .map_err(|e| format!("connect {addr}: {e}"));
        if connected.is_ok() {
            break;
        }
    }
    let (addr, stream) = connected?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut head = [0u8; 64];
    let n = if tls {
        let name = rustls::pki_types::ServerName::from(addr.ip());
        let connection = rustls::ClientConnection::new(no_verification(), name)
            .map_err(|e| format!("TLS: {e}"))?;
        exchange(
            rustls::StreamOwned::new(connection, stream),
            addr,
            &mut head,
        )?
    } else {
        exchange(stream, addr, &mut head)?
    };
    let status_line = String::from_utf8_lossy(&head[..n]);
    if status_line.starts_with("HTTP/1.1 200 ") || status_line.starts_with("HTTP/1.0 200 ") {
        Ok(())
    } else {
        let first = status_line.lines().next().unwrap_or("").to_owned();
        Err(format!("{addr}/healthz answered {first:?}"))
    }
}

fn exchange(
    mut stream: impl Read + Write,
    addr: SocketAddr,
    head: &mut [u8],
) -> Result<usize, String> {
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send to {addr}: {e}"))?;
    stream
        .read(head)
        .map_err(|e| format!("read from {addr}: {e}"))
}

/// A TLS client config that accepts any server certificate (see the module
/// comment for why that is right for a loopback liveness probe).
fn no_verification() -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    #[derive(Debug)]
    struct AcceptAny(rustls::crypto::CryptoProvider);

    impl ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    let provider = crate::tls::provider();
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(std::sync::Arc::new(AcceptAny(
                    (*provider).clone(),
                )))
                .with_no_client_auth()
        });
    std::sync::Arc::new(
        config.expect("invariant: the ring provider supports the default TLS versions"),
    )
}
