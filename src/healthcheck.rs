//! The `healthcheck` subcommand: asks the local listener for `/healthz` and
//! exits 0 on 200, 1 otherwise. A scratch image has no curl or shell, so this
//! is how a container health check runs. Silent on success.
//!
//! With TLS on the listener (`--web.config.file`), the check speaks TLS but
//! does not verify the certificate: it asks its own process on loopback
//! whether it is alive, and the certificate names a public host name, not
//! 127.0.0.1. With basic auth, `/healthz` must stay open (the default).

use crate::config::{Config, ListenAddr};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(3);

pub fn run(config: &Config) -> ExitCode {
    let tls = match &config.web_config_file {
        Some(path) => match crate::web_config::load(path) {
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

/// The address to connect to: an unspecified listen address (`:9844`,
/// `0.0.0.0`, `[::]`) is reached through loopback.
fn target(listen: &ListenAddr) -> Result<SocketAddr, String> {
    let loopback = |ip: IpAddr| match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    };
    match listen {
        ListenAddr::AllInterfaces(port) => Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, *port))),
        ListenAddr::Ip(addr) => Ok(SocketAddr::new(loopback(addr.ip()), addr.port())),
        ListenAddr::Host(host, port) if host.eq_ignore_ascii_case("localhost") => {
            Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, *port)))
        }
        ListenAddr::Host(host, port) => (host.as_str(), *port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host} has no address")),
    }
}

fn check(listen: &ListenAddr, tls: bool) -> Result<(), String> {
    let addr = target(listen)?;
    let stream =
        TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("connect {addr}: {e}"))?;
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

    let provider = rustls::crypto::ring::default_provider();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(provider.clone()))
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(std::sync::Arc::new(AcceptAny(provider)))
                .with_no_client_auth()
        });
    std::sync::Arc::new(
        config.expect("invariant: the ring provider supports the default TLS versions"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_are_checked_through_loopback() {
        assert_eq!(
            target(&ListenAddr::AllInterfaces(9844)).unwrap(),
            "127.0.0.1:9844".parse().unwrap()
        );
        assert_eq!(
            target(&ListenAddr::Ip("0.0.0.0:1".parse().unwrap())).unwrap(),
            "127.0.0.1:1".parse().unwrap()
        );
        assert_eq!(
            target(&ListenAddr::Ip("[::]:2".parse().unwrap())).unwrap(),
            "[::1]:2".parse().unwrap()
        );
        assert_eq!(
            target(&ListenAddr::Host("localhost".into(), 3)).unwrap(),
            "127.0.0.1:3".parse().unwrap()
        );
    }
}
