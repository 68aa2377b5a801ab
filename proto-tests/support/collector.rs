//! An in-process OTLP receiver for the push tests: a tonic `MetricsService`
//! or a hyper server for OTLP/HTTP, on 127.0.0.1. It records every export
//! and answers from a script, then with a fallback the test may change (a
//! collector that comes back). Included by the OTLP test files with
//! `#[path]`, not through `support`: only they need a tonic server.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use prost::Message;
use std::collections::VecDeque;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Server, ServerTlsConfig};
use tonic::Code;

/// What the receiver answers to one export.
#[derive(Clone, Debug)]
pub enum Answer {
    Accept,
    /// Rejected data points and the message.
    Partial(i64, &'static str),
    /// A gRPC error, with a RetryInfo delay when given.
    Grpc(Code, Option<Duration>),
    /// An OTLP/HTTP status code with an empty body.
    Http(u16),
}

#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    /// Lowercase names.
    pub headers: Vec<(String, String)>,
    pub path: String,
    pub request: ExportMetricsServiceRequest,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Records every export; answers from a script, then with the fallback.
#[derive(Clone)]
pub struct Collector {
    got: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
    fallback: Arc<Mutex<Answer>>,
}

impl Collector {
    pub fn new(script: Vec<Answer>, fallback: Answer) -> Collector {
        Collector {
            got: Arc::default(),
            script: Arc::new(Mutex::new(script.into())),
            fallback: Arc::new(Mutex::new(fallback)),
        }
    }

    pub fn accepting() -> Collector {
        Collector::new(vec![], Answer::Accept)
    }

    /// What every export gets once the script is used up, from now on.
    pub fn set_fallback(&self, answer: Answer) {
        *self.fallback.lock().unwrap() = answer;
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    pub fn next_answer(&self) -> Answer {
        self.script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| self.fallback.lock().unwrap().clone())
    }

    /// Waits (polling, at most `limit`) until `n` exports have arrived.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.count() >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.count() >= n
    }
}

/// `google.rpc.Status` / `google.rpc.RetryInfo`, as a collector sends them.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<ProtoAny>,
}
#[derive(Clone, PartialEq, Message)]
struct ProtoAny {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}
#[derive(Clone, PartialEq, Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}
#[derive(Clone, PartialEq, Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

fn grpc_status(code: Code, delay: Option<Duration>) -> tonic::Status {
    let Some(delay) = delay else {
        return tonic::Status::new(code, "injected");
    };
    let info = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: delay.as_secs() as i64,
            nanos: delay.subsec_nanos() as i32,
        }),
    };
    let status = RpcStatus {
        code: code as i32,
        message: "injected".into(),
        details: vec![ProtoAny {
            type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
            value: info.encode_to_vec(),
        }],
    };
    tonic::Status::with_details(code, "injected", Bytes::from(status.encode_to_vec()))
}

fn response(rejected: i64, message: &str) -> ExportMetricsServiceResponse {
    ExportMetricsServiceResponse {
        partial_success: (rejected > 0 || !message.is_empty()).then(|| {
            ExportMetricsPartialSuccess {
                rejected_data_points: rejected,
                error_message: message.to_owned(),
            }
        }),
    }
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let headers = request
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    v.to_str().unwrap_or("<binary>").to_owned(),
                )
            })
            .collect();
        self.got.lock().unwrap().push(Received {
            at: Instant::now(),
            headers,
            path: "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export".into(),
            request: request.into_inner(),
        });
        match self.next_answer() {
            Answer::Accept => Ok(tonic::Response::new(response(0, ""))),
            Answer::Partial(n, message) => Ok(tonic::Response::new(response(n, message))),
            Answer::Grpc(code, delay) => Err(grpc_status(code, delay)),
            Answer::Http(code) => panic!("HTTP answer {code} scripted for gRPC"),
        }
    }
}

/// A gRPC receiver on `addr` (port 0: any), optionally behind TLS.
pub async fn grpc_collector_on(
    collector: &Collector,
    addr: SocketAddr,
    tls: Option<ServerTlsConfig>,
) -> SocketAddr {
    let listener = TcpListener::bind(addr).await.expect("bind receiver");
    let addr = listener.local_addr().unwrap();
    let service = MetricsServiceServer::new(collector.clone())
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip);
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).expect("server TLS");
    }
    let router = builder.add_service(service);
    tokio::spawn(router.serve_with_incoming(TcpIncoming::from(listener)));
    addr
}

/// A plain gRPC receiver on any port: its endpoint URL.
pub async fn grpc_collector(collector: &Collector) -> String {
    let addr = grpc_collector_on(collector, "127.0.0.1:0".parse().unwrap(), None).await;
    format!("http://{addr}")
}

/// An OTLP/HTTP receiver, optionally behind TLS (tokio-rustls): its
/// endpoint URL.
pub async fn http_collector(
    collector: &Collector,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> String {
    http_collector_on(collector, "127.0.0.1:0".parse().unwrap(), tls).await
}

/// An OTLP/HTTP receiver on `addr` (port 0: any): its endpoint URL.
pub async fn http_collector_on(
    collector: &Collector,
    addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> String {
    let scheme = if tls.is_some() { "https" } else { "http" };
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let listener = TcpListener::bind(addr).await.expect("bind receiver");
    let addr = listener.local_addr().unwrap();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let collector = collector.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let collector = collector.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let collector = collector.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let raw = body.collect().await.unwrap().to_bytes();
                        let gzip = parts
                            .headers
                            .get("content-encoding")
                            .is_some_and(|v| v == "gzip");
                        let bytes = if gzip {
                            let mut out = Vec::new();
                            flate2::read::GzDecoder::new(&raw[..])
                                .read_to_end(&mut out)
                                .unwrap();
                            out
                        } else {
                            raw.to_vec()
                        };
                        collector.got.lock().unwrap().push(Received {
                            at: Instant::now(),
                            headers: parts
                                .headers
                                .iter()
                                .map(|(k, v)| {
                                    (k.as_str().to_owned(), v.to_str().unwrap().to_owned())
                                })
                                .collect(),
                            path: parts.uri.path().to_owned(),
                            request: ExportMetricsServiceRequest::decode(&bytes[..])
                                .expect("OTLP/HTTP body decodes"),
                        });
                        let (status, body) = match collector.next_answer() {
                            Answer::Accept => (200, response(0, "").encode_to_vec()),
                            Answer::Partial(n, m) => (200, response(n, m).encode_to_vec()),
                            Answer::Http(code) => (code, Vec::new()),
                            Answer::Grpc(code, _) => panic!("gRPC answer {code:?} for HTTP"),
                        };
                        let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
                        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        response.headers_mut().insert(
                            "content-type",
                            hyper::header::HeaderValue::from_static("application/x-protobuf"),
                        );
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let http = hyper::server::conn::http1::Builder::new();
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(stream).await {
                            let _ = http.serve_connection(TokioIo::new(tls), service).await;
                        }
                    }
                    None => {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
            });
        }
    });
    format!("{scheme}://{addr}")
}
