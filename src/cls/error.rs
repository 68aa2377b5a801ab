//! Typed errors of CLS requests, with the short kind that metric labels use.

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
    /// Connecting, TLS or the HTTP exchange failed; the text is the cause chain.
    Transport(String),
    /// No answer within the request timeout or the refresh deadline.
    Timeout,
    /// The body was larger than the cap.
    TooLarge(usize),
    /// The body was not the JSON we can read.
    Decode(String),
}

impl ClsError {
    pub fn new(endpoint: Endpoint, what: impl Into<String>, kind: ErrorKind) -> Self {
        ClsError {
            endpoint,
            what: what.into(),
            kind,
        }
    }

    /// Whether trying the same request again may help (429, 502-504, transport
    /// failures and timeouts); 4xx answers say the request itself is wrong.
    pub fn retryable(&self) -> bool {
        match self.kind {
            ErrorKind::Status(code) => matches!(code, 429 | 502 | 503 | 504),
            ErrorKind::Transport(_) | ErrorKind::Timeout => true,
            ErrorKind::TooLarge(_) | ErrorKind::Decode(_) => false,
        }
    }
}

impl fmt::Display for ClsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: ", self.what)?;
        match &self.kind {
            ErrorKind::Status(401) => f.write_str(
                "HTTP 401: the API key was rejected; check NVIDIA_API_KEY and that it has \"Licensing State\" access",
            ),
            ErrorKind::Status(403) => f.write_str(
                "HTTP 403: the API key lacks access; it needs the \"Licensing State\" access type for this org",
            ),
            ErrorKind::Status(code) => write!(f, "HTTP {code}"),
            ErrorKind::Transport(cause) => write!(f, "{cause}"),
            ErrorKind::Timeout => f.write_str("timed out"),
            ErrorKind::TooLarge(limit) => write!(f, "response body larger than {limit} bytes"),
            ErrorKind::Decode(cause) => write!(f, "response is not valid JSON of the expected shape: {cause}"),
        }
    }
}

impl std::error::Error for ClsError {}
