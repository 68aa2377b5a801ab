//! Where the listener listens: the one reading of LISTEN_ADDRESS into socket
//! addresses, for binding and for the healthcheck that connects to it.

use crate::config::ListenAddr;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use tokio::net::TcpListener;

/// The addresses to bind, best first. `:port` is every interface: IPv6 and
/// IPv4 where the host has both (one dual-stack socket), IPv4 alone where
/// IPv6 is disabled. There is no /etc/hosts in a scratch image, so
/// `localhost` is loopback by definition.
pub(crate) fn addresses(listen: &ListenAddr) -> io::Result<Vec<SocketAddr>> {
    match listen {
        ListenAddr::AllInterfaces(port) => Ok(vec![
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, *port)),
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, *port)),
        ]),
        ListenAddr::Ip(addr) => Ok(vec![*addr]),
        ListenAddr::Host(host, port) if host.eq_ignore_ascii_case("localhost") => {
            Ok(vec![SocketAddr::from((Ipv4Addr::LOCALHOST, *port))])
        }
        ListenAddr::Host(host, port) => {
            let resolved: Vec<SocketAddr> = (host.as_str(), *port).to_socket_addrs()?.collect();
            if resolved.is_empty() {
                return Err(io::Error::other(format!("{host} has no address")));
            }
            Ok(resolved)
        }
    }
}

/// A listener on the first of `addresses` that binds.
pub(crate) async fn bind(listen: &ListenAddr) -> io::Result<TcpListener> {
    let mut last = io::Error::other("no address to listen on");
    for addr in addresses(listen)? {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Where a client on this host reaches the listener: each address, an
/// unspecified one (`0.0.0.0`, `[::]`) through loopback; IPv4 first, which
/// also reaches a dual-stack socket.
pub(crate) fn local_targets(listen: &ListenAddr) -> io::Result<Vec<SocketAddr>> {
    let loopback = |ip: IpAddr| match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    };
    let mut targets: Vec<SocketAddr> = addresses(listen)?
        .into_iter()
        .map(|a| SocketAddr::new(loopback(a.ip()), a.port()))
        .collect();
    targets.sort_by_key(SocketAddr::is_ipv6);
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_are_checked_through_loopback() {
        let first = |listen: ListenAddr| local_targets(&listen).unwrap()[0];
        assert_eq!(
            first(ListenAddr::AllInterfaces(9844)),
            "127.0.0.1:9844".parse().unwrap()
        );
        assert_eq!(
            local_targets(&ListenAddr::AllInterfaces(9844)).unwrap(),
            [
                "127.0.0.1:9844".parse::<SocketAddr>().unwrap(),
                "[::1]:9844".parse().unwrap()
            ]
        );
        assert_eq!(
            first(ListenAddr::Ip("0.0.0.0:1".parse().unwrap())),
            "127.0.0.1:1".parse().unwrap()
        );
        assert_eq!(
            first(ListenAddr::Ip("[::]:2".parse().unwrap())),
            "[::1]:2".parse().unwrap()
        );
        assert_eq!(
            first(ListenAddr::Host("localhost".into(), 3)),
            "127.0.0.1:3".parse().unwrap()
        );
    }

    #[test]
    fn every_interface_is_tried_dual_stack_first() {
        assert_eq!(
            addresses(&ListenAddr::AllInterfaces(1)).unwrap(),
            [
                "[::]:1".parse::<SocketAddr>().unwrap(),
                "0.0.0.0:1".parse().unwrap()
            ]
        );
    }
}
