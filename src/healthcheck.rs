//! The `healthcheck` subcommand: asks the local listener for `/healthz` and
//! exits 0 on 200, 1 otherwise. A scratch image has no curl or shell, so this
//! is how a container health check runs. Silent on success.

use crate::config::{Config, ListenAddr};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(3);

pub(crate) fn run(config: &Config) -> ExitCode {
    match check(&config.listen) {
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

fn check(listen: &ListenAddr) -> Result<(), String> {
    let addr = target(listen)?;
    let mut stream =
        TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut head = [0u8; 64];
    let n = stream
        .read(&mut head)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let status_line = String::from_utf8_lossy(&head[..n]);
    if status_line.starts_with("HTTP/1.1 200 ") || status_line.starts_with("HTTP/1.0 200 ") {
        Ok(())
    } else {
        let first = status_line.lines().next().unwrap_or("").to_owned();
        Err(format!("{addr}/healthz answered {first:?}"))
    }
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
