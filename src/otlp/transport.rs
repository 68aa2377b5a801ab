//! One export attempt to the collector: OTLP/gRPC over tonic, or
//! OTLP/HTTP (protobuf) over the hyper client, and the classification of
//! the answer per the OTLP specification (retryable or not, server-given
//! delay, partial success). Retrying is the caller's business (`delivery`).

use super::codec::{EncodedCodec, EXPORT_PATH};
use crate::config::{OtelConfig, OtlpCompression, OtlpProtocol};
use crate::tls;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use prost::Message;
use std::io::Write;
use std::time::Duration;
use tonic::codec::CompressionEncoding;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataMap;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Largest answer read from an OTLP/HTTP collector (an export response or
/// an error status is a few hundred bytes).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// A `Retry-After` longer than this is treated as this: the delivery
/// deadline cuts it short anyway.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
const USER_AGENT: &str = concat!(env!("CARGO_PKG_NAME"), "/", env!("CARGO_PKG_VERSION"));

/// An encoded `ExportMetricsServiceRequest`: as it is, or gzip-compressed
/// (a stored batch that goes alone over OTLP/HTTP with gzip is sent as it
/// was stored, not inflated and compressed again).
#[derive(Debug, Clone)]
pub(crate) enum Body {
    Encoded(Bytes),
    Gzipped(Bytes),
}

/// The most a `Body::Gzipped` is inflated to where a transport needs it
/// plain (never, as the sender picks the form: a guard, not a limit).
const MAX_INFLATED: u64 = 1 << 30;

impl Body {
    pub(crate) fn len(&self) -> usize {
        match self {
            Body::Encoded(b) | Body::Gzipped(b) => b.len(),
        }
    }

    fn encoded(self) -> Result<Bytes, Failure> {
        match self {
            Body::Encoded(bytes) => Ok(bytes),
            Body::Gzipped(gzipped) => {
                use std::io::Read;
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&gzipped[..])
                    .take(MAX_INFLATED)
                    .read_to_end(&mut out)
                    .map_err(|e| {
                        Failure::Permanent(format!("a stored batch does not inflate: {e}"))
                    })?;
                Ok(Bytes::from(out))
            }
        }
    }
}

/// The collector took the batch; `rejected` data points of it were refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Accepted {
    pub rejected: i64,
    /// The collector's partial-success message, possibly empty.
    pub message: String,
}

/// Why an attempt failed, and whether the OTLP specification allows a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// `delay`: what the collector asked for (gRPC RetryInfo, HTTP Retry-After).
    Retryable {
        reason: String,
        delay: Option<Duration>,
    },
    Permanent(String),
}

/// The TLS material and headers, read and checked before anything starts:
/// a bad file, a certificate rustls refuses, a certificate and key that do
/// not fit together or a bad header is a bad setting (exit 2), not a failed
/// push.
#[derive(Clone)]
pub(crate) struct Material {
    /// PEM, holding at least one certificate, for tonic.
    ca: Option<Vec<u8>>,
    /// PEM certificate chain and key, for tonic.
    identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The same material as a client configuration, for OTLP/HTTP.
    tls: rustls::ClientConfig,
    /// OTEL_EXPORTER_OTLP_HEADERS; every value marked sensitive.
    headers: HeaderMap,
}

const CA: &str = "OTEL_EXPORTER_OTLP_CERTIFICATE";
const CLIENT_CERT: &str = "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE";
const CLIENT_KEY: &str = "OTEL_EXPORTER_OTLP_CLIENT_KEY";

impl Material {
    pub(crate) fn load(config: &OtelConfig) -> Result<Material, String> {
        let (ca, roots) = match &config.certificate {
            None => (None, Vec::new()),
            Some(path) => {
                let pem = tls::read_file(CA, path)?;
                let roots = tls::certificates(CA, path, &pem)?;
                (Some(pem), roots)
            }
        };
        let (identity, client) = match (&config.client_certificate, &config.client_key) {
            (None, None) => (None, None),
            (Some(cert_path), Some(key_path)) => {
                let cert = tls::read_file(CLIENT_CERT, cert_path)?;
                let chain = tls::certificates(CLIENT_CERT, cert_path, &cert)?;
                let key = tls::read_file(CLIENT_KEY, key_path)?;
                let parsed = tls::private_key(CLIENT_KEY, key_path, &key)?;
                (
                    Some((cert, key)),
                    Some(tls::ClientIdentity {
                        chain,
                        key: parsed,
                        settings: "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY",
                    }),
                )
            }
            (Some(_), None) => {
                return Err(format!(
                    "{CLIENT_CERT} is set without {CLIENT_KEY}: set both for mTLS"
                ))
            }
            (None, Some(_)) => {
                return Err(format!(
                    "{CLIENT_KEY} is set without {CLIENT_CERT}: set both for mTLS"
                ))
            }
        };
        let tls = tls::client_config(&roots, CA, client)?;
        let mut headers = HeaderMap::new();
        for (i, (key, value)) in config.headers.iter().enumerate() {
            // The value is a secret: name the entry, never show it.
            let bad = |what: &str| {
                format!(
                    "OTEL_EXPORTER_OTLP_HEADERS=\"<redacted>\" is not valid: entry {} has {what}",
                    i + 1
                )
            };
            let name = HeaderName::from_bytes(key.as_bytes())
                .map_err(|_| bad("a name that is not a valid header name"))?;
            let mut value = HeaderValue::from_str(value.expose())
                .map_err(|_| bad("a value with characters not allowed in a header"))?;
            value.set_sensitive(true);
            headers.append(name, value);
        }
        Ok(Material {
            ca,
            identity,
            tls,
            headers,
        })
    }
}

/// A connection to the collector; cheap to clone.
#[derive(Clone)]
pub(crate) enum Transport {
    // Boxed: both clients are a few hundred bytes.
    Grpc(Box<Grpc>),
    Http(Box<Http>),
}

impl Transport {
    /// Connects lazily: a collector that is down at start is reached once it
    /// is up. Must run inside the runtime.
    pub(crate) fn new(config: &OtelConfig, material: &Material) -> Result<Transport, String> {
        match config.protocol {
            OtlpProtocol::Grpc => Grpc::new(config, material).map(|g| Transport::Grpc(Box::new(g))),
            OtlpProtocol::HttpProtobuf => {
                Http::new(config, material).map(|h| Transport::Http(Box::new(h)))
            }
        }
    }

    /// One attempt with an encoded `ExportMetricsServiceRequest`; `timeout`
    /// is also told to the collector (`grpc-timeout`).
    pub(crate) async fn export(&self, body: Body, timeout: Duration) -> Result<Accepted, Failure> {
        match self {
            Transport::Grpc(grpc) => grpc.export(body.encoded()?, timeout).await,
            Transport::Http(http) => http.export(body).await,
        }
    }

    /// Whether a gzip-compressed body goes out as it is (OTLP/HTTP with
    /// gzip); gRPC compresses each message itself.
    pub(crate) fn takes_gzip(&self) -> bool {
        matches!(self, Transport::Http(http) if http.gzip)
    }
}

#[derive(Clone)]
pub(crate) struct Grpc {
    client: tonic::client::Grpc<Channel>,
    metadata: MetadataMap,
}

impl Grpc {
    fn new(config: &OtelConfig, material: &Material) -> Result<Grpc, String> {
        let invalid = |e: &dyn std::fmt::Display| {
            format!(
                "the OTLP endpoint \"{}\" is not usable: {e}",
                config.endpoint
            )
        };
        let mut endpoint = Endpoint::from_shared(config.endpoint.clone())
            .map_err(|e| invalid(&e))?
            .user_agent(USER_AGENT)
            .map_err(|e| invalid(&e))?
            .connect_timeout(config.timeout)
            .tcp_nodelay(true);
        if !config.insecure {
            let mut tls = ClientTlsConfig::new().with_webpki_roots();
            if let Some(ca) = &material.ca {
                tls = tls.ca_certificate(Certificate::from_pem(ca));
            }
            if let Some((cert, key)) = &material.identity {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            endpoint = endpoint.tls_config(tls).map_err(|e| invalid(&e))?;
        }
        let mut client = tonic::client::Grpc::new(endpoint.connect_lazy());
        if config.compression == OtlpCompression::Gzip {
            client = client
                .send_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Gzip);
        }
        Ok(Grpc {
            client,
            metadata: MetadataMap::from_headers(material.headers.clone()),
        })
    }

    async fn export(&self, body: Bytes, timeout: Duration) -> Result<Accepted, Failure> {
        let mut client = self.client.clone();
        // A lazy channel is ready at once; an error here means its worker
        // is gone, which a later attempt may not see.
        client.ready().await.map_err(|e| Failure::Retryable {
            reason: format!("the gRPC channel is not ready: {}", error_chain(&e)),
            delay: None,
        })?;
        let mut call = tonic::Request::new(body);
        *call.metadata_mut() = self.metadata.clone();
        call.set_timeout(timeout);
        let path = PathAndQuery::from_static(EXPORT_PATH);
        match client.unary(call, path, EncodedCodec).await {
            Ok(response) => Ok(accepted(response.into_inner())),
            Err(status) => Err(classify_grpc(&status)),
        }
    }
}

fn accepted(response: ExportMetricsServiceResponse) -> Accepted {
    response
        .partial_success
        .map(|p| Accepted {
            rejected: p.rejected_data_points,
            message: p.error_message,
        })
        .unwrap_or_default()
}

/// The OTLP specification's retryable gRPC codes; RESOURCE_EXHAUSTED only
/// when the collector says when to come back (RetryInfo).
pub(crate) fn classify_grpc(status: &tonic::Status) -> Failure {
    use tonic::Code;
    let delay = retry_delay(status.details());
    let mut reason = format!("{:?}: {}", status.code(), status.message());
    if let Some(source) = std::error::Error::source(status) {
        reason.push_str(": ");
        reason.push_str(&error_chain(source));
    }
    match status.code() {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::Aborted
        | Code::OutOfRange
        | Code::DataLoss => Failure::Retryable { reason, delay },
        Code::ResourceExhausted if delay.is_some() => Failure::Retryable { reason, delay },
        _ => Failure::Permanent(reason),
    }
}

use crate::cause::chain as error_chain;

/// `google.rpc.Status` and the parts of it read here (no googleapis crate
/// for three messages).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<ProtoAny>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct ProtoAny {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

pub(crate) const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// The RetryInfo delay in a `google.rpc.Status` (gRPC `grpc-status-details-bin`,
/// or an OTLP/HTTP error body).
fn retry_delay(status_details: &[u8]) -> Option<Duration> {
    if status_details.is_empty() {
        return None;
    }
    let status = RpcStatus::decode(status_details).ok()?;
    status
        .details
        .iter()
        .filter(|any| any.type_url == RETRY_INFO_TYPE)
        .find_map(|any| RetryInfo::decode(&any.value[..]).ok()?.retry_delay)
        .map(|d| {
            let seconds = u64::try_from(d.seconds).unwrap_or(0);
            let nanos = u32::try_from(d.nanos).unwrap_or(0).min(999_999_999);
            Duration::new(seconds, nanos).min(MAX_RETRY_AFTER)
        })
}

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

#[derive(Clone)]
pub(crate) struct Http {
    client: HttpClient,
    uri: hyper::Uri,
    headers: HeaderMap,
    gzip: bool,
}

impl Http {
    fn new(config: &OtelConfig, material: &Material) -> Result<Http, String> {
        let uri: hyper::Uri = config.endpoint.parse().map_err(|e| {
            format!(
                "the OTLP endpoint \"{}\" is not usable: {e}",
                config.endpoint
            )
        })?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.timeout));
        let https = tls::https_connector(material.tls.clone(), http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(https);
        Ok(Http {
            client,
            uri,
            headers: material.headers.clone(),
            gzip: config.compression == OtlpCompression::Gzip,
        })
    }

    async fn export(&self, body: Body) -> Result<Accepted, Failure> {
        let mut builder = hyper::Request::post(self.uri.clone())
            .header(CONTENT_TYPE, "application/x-protobuf")
            .header(hyper::header::USER_AGENT, USER_AGENT);
        let body = match (body, self.gzip) {
            (Body::Gzipped(gzipped), true) => gzipped,
            (body, false) => body.encoded()?,
            (Body::Encoded(encoded), true) => {
                let mut encoder = flate2::write::GzEncoder::new(
                    Vec::with_capacity(encoded.len() / 4 + 64),
                    flate2::Compression::default(),
                );
                // Writing to a Vec cannot fail.
                let _ = encoder.write_all(&encoded);
                Bytes::from(encoder.finish().unwrap_or_default())
            }
        };
        if self.gzip {
            builder = builder.header(CONTENT_ENCODING, "gzip");
        }
        if let Some(headers) = builder.headers_mut() {
            for (name, value) in &self.headers {
                headers.append(name, value.clone());
            }
        }
        let http_request = builder
            .body(Full::new(body))
            .map_err(|e| Failure::Permanent(format!("cannot build the request: {e}")))?;
        let response = self
            .client
            .request(http_request)
            .await
            .map_err(|e| Failure::Retryable {
                reason: error_chain(&e),
                delay: None,
            })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| crate::retry::parse_retry_after(v, std::time::SystemTime::now()))
            .map(|wait| wait.min(MAX_RETRY_AFTER));
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| Failure::Retryable {
                reason: format!("HTTP {status}, reading the answer: {e}"),
                delay: None,
            })?;
        if status.is_success() {
            // An empty or undecodable 2xx body is a full success.
            return Ok(ExportMetricsServiceResponse::decode(body)
                .map(accepted)
                .unwrap_or_default());
        }
        let rpc = RpcStatus::decode(body.clone()).ok();
        let message = rpc.as_ref().map(|s| s.message.as_str()).unwrap_or_default();
        let reason = if message.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {message}")
        };
        match status.as_u16() {
            429 | 502 | 503 | 504 => Err(Failure::Retryable {
                reason,
                delay: retry_after.or_else(|| retry_delay(&body)),
            }),
            _ => Err(Failure::Permanent(reason)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn with_retry_info(code: Code, seconds: i64) -> tonic::Status {
        let info = RetryInfo {
            retry_delay: Some(ProtoDuration { seconds, nanos: 0 }),
        };
        let status = RpcStatus {
            code: code as i32,
            message: "slow down".into(),
            details: vec![ProtoAny {
                type_url: RETRY_INFO_TYPE.into(),
                value: info.encode_to_vec(),
            }],
        };
        tonic::Status::with_details(code, "slow down", Bytes::from(status.encode_to_vec()))
    }

    #[test]
    fn only_the_specified_codes_are_retried() {
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Cancelled,
            Code::Aborted,
            Code::OutOfRange,
            Code::DataLoss,
        ] {
            assert!(
                matches!(
                    classify_grpc(&tonic::Status::new(code, "x")),
                    Failure::Retryable { delay: None, .. }
                ),
                "{code:?}"
            );
        }
        for code in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::NotFound,
            Code::Unimplemented,
            Code::Internal,
            Code::ResourceExhausted,
        ] {
            assert!(
                matches!(
                    classify_grpc(&tonic::Status::new(code, "x")),
                    Failure::Permanent(_)
                ),
                "{code:?}"
            );
        }
    }

    #[test]
    fn resource_exhausted_with_retry_info_is_retried_after_the_given_delay() {
        assert_eq!(
            classify_grpc(&with_retry_info(Code::ResourceExhausted, 3)),
            Failure::Retryable {
                reason: "ResourceExhausted: slow down".into(),
                delay: Some(Duration::from_secs(3))
            }
        );
        let Failure::Retryable { delay, .. } =
            classify_grpc(&with_retry_info(Code::Unavailable, 100_000))
        else {
            panic!("retryable")
        };
        assert_eq!(delay, Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn garbage_status_details_give_no_delay() {
        assert_eq!(retry_delay(b"\xff\xff\xff"), None);
        assert_eq!(retry_delay(b""), None);
    }
}
