//! The reference point of `benches/serving.py`: a bare hyper server that
//! answers every request with ready bytes and fixed headers, on the same
//! runtime as the exporter, with nothing else on the path (no routing, no
//! cache, no live values). What it reaches is the ceiling the exporter's
//! scrape path is measured against.
//!
//! bare-hyper ADDR PLAIN_FILE GZIP_FILE CONTENT_TYPE VARY [TIMEOUT_SECONDS]
//! (with TIMEOUT_SECONDS, hyper's header read timeout, which the exporter
//! sets against slowloris clients, costs a timer per request)
//! (answers `Accept-Encoding: gzip` requests with GZIP_FILE; anything else
//! with PLAIN_FILE; runs until killed; loopback only in the benchmark)

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, VARY};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (addr, plain, gzip, content_type, vary, timeout) = match &args[..] {
        [a, p, g, c, v] => (a, p, g, c, v, None),
        [a, p, g, c, v, t] => match t.parse::<u64>() {
            Ok(t) => (a, p, g, c, v, Some(std::time::Duration::from_secs(t))),
            Err(_) => {
                eprintln!("bare-hyper: bad TIMEOUT_SECONDS {t:?}");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!(
                "usage: bare-hyper ADDR PLAIN_FILE GZIP_FILE CONTENT_TYPE VARY [TIMEOUT_SECONDS]"
            );
            return ExitCode::from(2);
        }
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    if let Some(timeout) = timeout {
        http.timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(timeout);
    }
    let read = |path: &str| std::fs::read(path).map(Bytes::from);
    let (Ok(plain), Ok(gzip)) = (read(plain), read(gzip)) else {
        eprintln!("bare-hyper: cannot read the body files");
        return ExitCode::from(1);
    };
    let (Ok(content_type), Ok(vary)) = (
        HeaderValue::from_str(content_type),
        HeaderValue::from_str(vary),
    ) else {
        eprintln!("bare-hyper: bad header value");
        return ExitCode::from(2);
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bare-hyper: cannot listen on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (plain, gzip) = (plain.clone(), gzip.clone());
        let (content_type, vary) = (content_type.clone(), vary.clone());
        let http = http.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let zipped = req
                    .headers()
                    .get(ACCEPT_ENCODING)
                    .is_some_and(|v| v.as_bytes().windows(4).any(|w| w == b"gzip"));
                let mut response =
                    Response::new(Full::new(if zipped { gzip.clone() } else { plain.clone() }));
                let headers = response.headers_mut();
                headers.insert(CONTENT_TYPE, content_type.clone());
                headers.insert(VARY, vary.clone());
                if zipped {
                    headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                }
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = http.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
