//! A TCP front on 127.0.0.1 before a backend (the fake CLS): it relays plain
//! bytes, or terminates TLS with a test certificate and relays, or answers
//! hostile bytes that are not HTTP. The mode can be switched at runtime, which
//! cuts the connections open at the time, so a fault of the transport can
//! follow a good refresh. The TLS mode's certificates come from pki.rs.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the front does with each connection.
#[derive(Clone)]
pub enum Mode {
    /// Relays bytes both ways to the backend.
    Plain,
    /// Terminates TLS with this configuration, then relays.
    Tls(Arc<rustls::ServerConfig>),
    /// Reads whatever comes, answers these bytes and closes.
    Garbage(Vec<u8>),
}

pub struct Front {
    addr: SocketAddr,
    /// Shared with the accept loop, so connections see a change, never a
    /// dropped sender.
    mode: Arc<watch::Sender<Mode>>,
}

impl Front {
    pub async fn start(backend: SocketAddr, mode: Mode) -> Front {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(watch::Sender::new(mode));
        let shared = mode.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let mut changes = shared.subscribe();
                let current = changes.borrow_and_update().clone();
                tokio::spawn(async move {
                    // At most a minute, and only until the mode changes.
                    tokio::select! {
                        _ = serve(stream, current, backend) => {}
                        _ = changes.changed() => {}
                        _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                    }
                });
            }
        });
        Front { addr, mode }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// New connections get `mode`; the open ones are cut.
    pub fn set_mode(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

async fn serve(mut stream: TcpStream, mode: Mode, backend: SocketAddr) {
    match mode {
        Mode::Plain => {
            let Ok(mut plain) = TcpStream::connect(backend).await else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut stream, &mut plain).await;
        }
        Mode::Tls(config) => {
            let Ok(mut tls) = tokio_rustls::TlsAcceptor::from(config).accept(stream).await else {
                return;
            };
            let Ok(mut plain) = TcpStream::connect(backend).await else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
        }
        Mode::Garbage(bytes) => {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request).await;
            let _ = stream.write_all(&bytes).await;
            let _ = stream.shutdown().await;
        }
    }
}
