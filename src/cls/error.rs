//! Typed errors of CLS requests, with the short kind that metric labels use.

use std::borrow::Cow;
use std::fmt;

/// The four CLS endpoints, named as the `endpoint` metric label names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    VirtualGroups,
    LicenseServers,
    LicensePools,
    Leases,
}

impl Endpoint {
    pub const ALL: [Endpoint; 4] = [
        Endpoint::VirtualGroups,
        Endpoint::LicenseServers,
        Endpoint::LicensePools,
        Endpoint::Leases,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Endpoint::VirtualGroups => "virtual_groups",
            Endpoint::LicenseServers => "license_servers",
            Endpoint::LicensePools => "license_pools",
            Endpoint::Leases => "leases",
        }
    }
}

/// What went wrong with one request. `what` names the request (endpoint and
/// path, never the key) so a log line says which call failed.
#[derive(Debug, Clone)]
pub struct ClsError {
    pub endpoint: Endpoint,
    pub what: String,
    pub kind: ErrorKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ErrorKind {
    /// The API answered with a non-2xx status.
    Status(u16),
    /// Connecting or the HTTP exchange failed; the text is the cause chain.
    Transport(String),
    /// The TLS handshake failed (a certificate the roots do not trust, no
    /// protocol in common): apart from `Transport` because the fix differs
    /// (NVIDIA_API_CA_FILE, a TLS-inspecting proxy), and `check` says so.
    Tls(String),
    /// The request could not be made (a URI too long for HTTP, a service
    /// instance id that cannot be a header value): the same again would fail.
    Request(String),
    /// No answer within the request timeout or the refresh deadline.
    Timeout,
    /// The body was larger than the cap.
    TooLarge(usize),
    /// The body was not the JSON we can read.
    Decode(String),
}

impl ErrorKind {
    /// A failed exchange: `Tls` when rustls refused the handshake, else
    /// `Transport`; either with the whole cause chain.
    pub(crate) fn of_transport(error: &(dyn std::error::Error + 'static)) -> ErrorKind {
        let chain = crate::cause::chain(error);
        if is_tls(error) {
            ErrorKind::Tls(chain)
        } else {
            ErrorKind::Transport(chain)
        }
    }
}

/// Whether a rustls error is in the cause chain. hyper-rustls hands it on
/// inside an `io::Error` (inside another one), whose `source()` skips the
/// error it wraps: an `io::Error` is looked into instead.
fn is_tls(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<rustls::Error>() {
            return true;
        }
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(wrapped) => Some(wrapped as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    false
}

impl ClsError {
    pub fn new(endpoint: Endpoint, what: impl Into<String>, kind: ErrorKind) -> Self {
        ClsError {
            endpoint,
            what: what.into(),
            kind,
        }
    }

    /// Whether trying the same request again may help: 429, the 5xx that
    /// mean "not now" (500, 502, 503, 504), transport failures and timeouts.
    /// 4xx answers say the request itself is wrong; 501, 505 and the like
    /// will not change either.
    ///
    /// 500 is retried although the issue that set this policy listed only
    /// 429 and 502-504 (docs/cls.md): an internal error of
    /// a cloud API is most often transient, the call is an idempotent GET,
    /// and the cost is bounded (four attempts, backoff, SCRAPE_TIMEOUT, once
    /// per CACHE_TTL).
    pub fn retryable(&self) -> bool {
        match self.kind {
            ErrorKind::Status(code) => matches!(code, 429 | 500 | 502 | 503 | 504),
            ErrorKind::Transport(_) | ErrorKind::Tls(_) | ErrorKind::Timeout => true,
            ErrorKind::Request(_) | ErrorKind::TooLarge(_) | ErrorKind::Decode(_) => false,
        }
    }
}

/// The most characters of a path or a cause that a message quotes. Ids in
/// paths are API data: a hostile one must not make a log line of hundreds of
/// KiB, which log shippers split into several records.
pub(crate) const MAX_QUOTED_CHARS: usize = 512;

/// `text` cut to `MAX_QUOTED_CHARS` characters, saying how long it was.
pub(crate) fn shorten(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        None => Cow::Borrowed(text),
        Some((cut, _)) => Cow::Owned(format!("{}… ({} bytes in all)", &text[..cut], text.len())),
    }
}

impl fmt::Display for ClsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: ", shorten(&self.what))?;
        match &self.kind {
            ErrorKind::Status(401) => f.write_str(
                "HTTP 401: the API key was rejected; check NVIDIA_API_KEY and that it has \"Licensing State\" access",
            ),
            ErrorKind::Status(403) => f.write_str(
                "HTTP 403: the API key lacks access; it needs the \"Licensing State\" access type for this org",
            ),
            ErrorKind::Status(code) => write!(f, "HTTP {code}"),
            ErrorKind::Transport(cause) | ErrorKind::Tls(cause) => write!(f, "{}", shorten(cause)),
            ErrorKind::Request(cause) => {
                write!(f, "the request cannot be made: {}", shorten(cause))
            }
            ErrorKind::Timeout => f.write_str("timed out"),
            ErrorKind::TooLarge(limit) => write!(f, "response body larger than {limit} bytes"),
            ErrorKind::Decode(cause) => write!(
                f,
                "response is not valid JSON of the expected shape: {}",
                shorten(cause)
            ),
        }
    }
}

impl std::error::Error for ClsError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> ClsError {
        ClsError::new(Endpoint::Leases, "GET /x", ErrorKind::Status(code))
    }

    #[test]
    fn statuses_that_mean_not_now_are_retried() {
        for code in [429, 500, 502, 503, 504] {
            assert!(status(code).retryable(), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 501, 505] {
            assert!(!status(code).retryable(), "{code}");
        }
        let request = ClsError::new(Endpoint::Leases, "GET /x", ErrorKind::Request("x".into()));
        assert!(!request.retryable());
    }

    #[test]
    fn a_rustls_error_inside_an_io_error_is_a_tls_failure() {
        // As hyper-rustls hands it on: an io::Error in an io::Error.
        let tls = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        assert!(
            matches!(ErrorKind::of_transport(&tls), ErrorKind::Tls(t) if t.contains("UnknownIssuer"))
        );
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(
            ErrorKind::of_transport(&refused),
            ErrorKind::Transport("refused".into())
        );
    }

    #[test]
    fn a_huge_path_is_quoted_cut_to_one_short_line() {
        let path = format!("GET /virtual-groups/{}", "é".repeat(40_000));
        let error = ClsError::new(
            Endpoint::LicenseServers,
            path.clone(),
            ErrorKind::Request("uri too long".into()),
        );
        let text = error.to_string();
        assert!(
            text.len() < 2 * MAX_QUOTED_CHARS + 100,
            "{} bytes",
            text.len()
        );
        assert!(text.starts_with("GET /virtual-groups/éé"));
        assert!(text.ends_with(&format!(
            "… ({} bytes in all) failed: the request cannot be made: uri too long",
            path.len()
        )));
        assert_eq!(shorten("GET /short"), "GET /short");
        let exact = "x".repeat(MAX_QUOTED_CHARS);
        assert_eq!(shorten(&exact), exact.as_str());
    }
}
