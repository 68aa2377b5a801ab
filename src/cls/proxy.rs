//! The outbound connector: direct TCP, or a CONNECT tunnel through the
//! HTTPS_PROXY for hosts not listed in NO_PROXY. TLS to CLS runs inside the
//! tunnel, so the proxy sees only the host name.

use hyper::Uri;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpStream;
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone)]
pub(crate) struct ProxyConnector {
    http: HttpConnector,
    /// None: no proxy configured, every connection is direct.
    matcher: Option<Arc<Matcher>>,
}

impl ProxyConnector {
    /// `proxy` is an `http://host:port` URL (validated by config);
    /// `no_proxy` are NO_PROXY entries (host names, domains, IPs, CIDRs).
    pub(crate) fn new(
        http: HttpConnector,
        proxy: Option<&str>,
        no_proxy: &[String],
    ) -> ProxyConnector {
        let matcher = proxy.map(|proxy| {
            // Plain http:// targets (a test or an internal mirror) use the
            // same proxy, through the same CONNECT tunnel.
            Arc::new(
                Matcher::builder()
                    .https(proxy.to_owned())
                    .http(proxy.to_owned())
                    .no(no_proxy.join(","))
                    .build(),
            )
        });
        ProxyConnector { http, matcher }
    }
}

impl Service<Uri> for ProxyConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let mut http = self.http.clone();
        match self.matcher.as_ref().and_then(|m| m.intercept(&dst)) {
            Some(intercept) => {
                let mut tunnel = Tunnel::new(intercept.uri().clone(), http);
                Box::pin(async move {
                    tunnel.call(dst).await.map_err(|e| {
                        format!("proxy CONNECT failed: {}", crate::cause::chain(&e)).into()
                    })
                })
            }
            None => Box::pin(async move { http.call(dst).await.map_err(Into::into) }),
        }
    }
}
