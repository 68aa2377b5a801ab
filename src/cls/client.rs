//! The CLS client itself: its settings, the HTTP connection pool, the auth
//! header, and the limits every request shares. The org walk, paging, one
//! request and decoding are in `walk`, `paging`, `request` and `decode`.

use super::proxy::ProxyConnector;
use super::segment::encode_segment;
use super::stats::ApiStats;
use bytes::Bytes;
use http_body_util::Empty;
use hyper::header::HeaderValue;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::AtomicU8;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// What the client needs to know; built by the wiring from the validated
/// config and the CA bundle read at start.
#[derive(Clone)]
pub(crate) struct ClientSettings {
    pub(crate) base_url: String,
    pub(crate) api_key: String,
    pub(crate) org_name: String,
    pub(crate) service_instance_id: Option<String>,
    pub(crate) parallelism: usize,
    pub(crate) page_size: u32,
    /// NVIDIA_API_CA_FILE's certificates, trusted on top of the webpki roots.
    pub(crate) extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// `http://host:port` of an HTTPS_PROXY, and the NO_PROXY entries.
    pub(crate) proxy: Option<String>,
    pub(crate) no_proxy: Vec<String>,
}

type HttpClient = Client<hyper_rustls::HttpsConnector<ProxyConnector>, Empty<Bytes>>;

/// Cheap to clone: the connection pool and counters are shared.
#[derive(Clone)]
pub(crate) struct ClsClient {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) http: HttpClient,
    /// `{base}/v1/org/{org}` with the org percent-encoded.
    pub(super) org_url: String,
    pub(super) api_key: HeaderValue,
    pub(super) service_instance_id: Option<String>,
    /// One limit for every request of a refresh, whatever its level, so a
    /// group's leases never wait for other groups' server lists.
    pub(super) permits: Semaphore,
    pub(super) page_size: u32,
    /// Which lease path answers (`walk::LEASES_*`): learned once, then
    /// remembered. An atomic: the group walks of a refresh run at once.
    pub(super) leases_path: AtomicU8,
    pub(super) stats: Arc<ApiStats>,
}

impl ClsClient {
    /// Fails on a setting that cannot make a request: a CA certificate
    /// rustls refuses, an API key or service instance id that cannot be an
    /// HTTP header. Needs no runtime and does no I/O.
    pub(crate) fn new(settings: ClientSettings, stats: Arc<ApiStats>) -> Result<Self, String> {
        let tls = crate::tls::client_config(&settings.extra_roots, "NVIDIA_API_CA_FILE", None)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let connector = ProxyConnector::new(http, settings.proxy.as_deref(), &settings.no_proxy);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(settings.parallelism.max(1))
            .build(crate::tls::https_connector(tls, connector));

        let mut api_key = HeaderValue::from_str(&settings.api_key).map_err(|_| {
            "NVIDIA_API_KEY holds characters not allowed in an HTTP header".to_owned()
        })?;
        api_key.set_sensitive(true);
        if let Some(id) = &settings.service_instance_id {
            HeaderValue::from_str(id).map_err(|_| {
                "NVIDIA_SERVICE_INSTANCE_ID holds characters not allowed in an HTTP header"
                    .to_owned()
            })?;
        }
        let base = settings.base_url.trim_end_matches('/');
        Ok(ClsClient {
            inner: Arc::new(Inner {
                http: client,
                org_url: format!("{base}/v1/org/{}", encode_segment(&settings.org_name)),
                api_key,
                service_instance_id: settings.service_instance_id,
                permits: Semaphore::new(settings.parallelism.max(1)),
                page_size: settings.page_size.max(1),
                leases_path: AtomicU8::new(super::walk::LEASES_UNKNOWN),
                stats,
            }),
        })
    }
}

/// Test doubles for the client's tests: a server of one canned answer and
/// a client pointed at it.
#[cfg(test)]
pub(super) mod testing {
    use super::*;

    /// Answers every request on 127.0.0.1 with `answer` (head, and as much
    /// of the body as it holds), then sends nothing more. Returns the base URL.
    pub(crate) async fn answering(answer: &'static [u8]) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut buf, mut seen) = (vec![0u8; 8192], Vec::new());
                    while let Ok(n @ 1..) = stream.read(&mut buf).await {
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            if stream.write_all(answer).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        format!("http://{addr}")
    }

    pub(crate) fn client_of(base_url: String) -> ClsClient {
        let settings = ClientSettings {
            base_url,
            api_key: "k".into(),
            org_name: "o".into(),
            service_instance_id: None,
            parallelism: 2,
            page_size: 100,
            extra_roots: Vec::new(),
            proxy: None,
            no_proxy: Vec::new(),
        };
        ClsClient::new(settings, Arc::new(ApiStats::default())).unwrap()
    }
}
