//! An HTTP CONNECT proxy on 127.0.0.1 that records the head of every
//! request and either opens the tunnel to the target it names or refuses
//! it with 403 (so nothing leaves loopback).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct ConnectProxy {
    addr: SocketAddr,
    /// The head of every request, in arrival order.
    heads: Arc<Mutex<Vec<String>>>,
}

impl ConnectProxy {
    /// A proxy that opens the tunnels asked for.
    pub async fn tunnelling() -> ConnectProxy {
        ConnectProxy::start(true).await
    }

    /// A proxy that refuses every request with 403.
    pub async fn refusing() -> ConnectProxy {
        ConnectProxy::start(false).await
    }

    async fn start(tunnel: bool) -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let log = heads.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let log = log.clone();
                // At most a minute per connection.
                tokio::spawn(tokio::time::timeout(
                    Duration::from_secs(60),
                    serve(client, tunnel, log),
                ));
            }
        });
        ConnectProxy { addr, heads }
    }

    /// `http://127.0.0.1:PORT`, for HTTPS_PROXY.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    /// The target (`host:port`) of every CONNECT request.
    pub fn targets(&self) -> Vec<String> {
        self.heads()
            .iter()
            .filter_map(|h| h.strip_prefix("CONNECT ")?.split(' ').next())
            .map(str::to_owned)
            .collect()
    }

    pub fn clear(&self) {
        self.heads.lock().unwrap().clear();
    }

    /// The first head, waiting at most `limit` for it.
    pub async fn first_head(&self, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(head) = self.heads().into_iter().next() {
                return Some(head);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn serve(mut client: TcpStream, tunnel: bool, log: Arc<Mutex<Vec<String>>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        if client.read_exact(&mut byte).await.is_err() {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    log.lock().unwrap().push(head.clone());
    if !tunnel {
        let _ = client
            .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
        return;
    }
    let Some(target) = head
        .strip_prefix("CONNECT ")
        .and_then(|r| r.split(' ').next())
    else {
        let _ = client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            .await;
        return;
    };
    let Ok(mut upstream) = TcpStream::connect(target).await else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
        return;
    };
    let _ = client
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await;
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}
