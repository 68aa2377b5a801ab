//! Value parsers: one setting's trimmed text → its typed value, or the reason it is not valid.
//!
//! Pure functions of their input. An error is a lowercase reason without the value:
//! the caller knows the setting's name and whether the value is secret, and wraps it.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::duration::parse_go_duration;
use super::ListenAddr;

/// Go's `strconv.ParseBool`.
pub(crate) fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err("expected true or false (or 1, 0, t, f)".to_string()),
    }
}

pub(crate) fn parse_duration(v: &str) -> Result<Duration, String> {
    match parse_go_duration(v)? {
        Duration::ZERO => Err("must be positive".to_string()),
        d => Ok(d),
    }
}

pub(crate) fn parse_millis(v: &str) -> Result<Duration, String> {
    match v.parse::<u64>() {
        Ok(ms) if ms > 0 && v.bytes().all(|b| b.is_ascii_digit()) => Ok(Duration::from_millis(ms)),
        _ => Err("expected a whole number of milliseconds greater than zero".to_string()),
    }
}

pub(crate) fn parse_in_range(v: &str, max: u32) -> Result<u32, String> {
    match v.parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) && v.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(format!("expected an integer from 1 to {max}")),
    }
}

/// The units of a size, largest first within each family: binary (1024)
/// and decimal (1000), as the user writes them.
const EXPECTED_SIZE: &str =
    "expected a size such as 64MiB, 512KiB or 1GB (units B, KiB, MiB, GiB, KB, MB, GB)";
const SIZE_UNITS: [(&str, u64); 7] = [
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("GB", 1_000_000_000),
    ("MB", 1_000_000),
    ("KB", 1_000),
    ("B", 1),
];

/// A size: a whole number and a unit (`64MiB`, `512 KiB`, `1GB`, `4096B`).
/// The unit is required: a bare `64` is as likely meant as MiB as bytes.
pub(crate) fn parse_size(v: &str) -> Result<u64, String> {
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = v.split_at(digits);
    let unit = unit.trim_start();
    let scale = SIZE_UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, scale)| *scale)
        .ok_or(EXPECTED_SIZE.to_string())?;
    let number: u64 = number.parse().map_err(|_| EXPECTED_SIZE.to_string())?;
    match number.checked_mul(scale) {
        Some(0) => Err("must be positive".to_string()),
        Some(bytes) => Ok(bytes),
        None => Err("too large".to_string()),
    }
}

/// A size as `--help` shows it: in the largest binary unit that divides it.
pub(crate) fn format_size(bytes: u64) -> String {
    SIZE_UNITS
        .iter()
        .filter(|(name, _)| name.ends_with("iB") || *name == "B")
        .find(|(_, scale)| bytes % scale == 0 && bytes >= *scale)
        .map_or_else(
            || format!("{bytes}B"),
            |(name, scale)| format!("{}{name}", bytes / scale),
        )
}

/// One of `all`, case-insensitively; the error lists them.
pub(crate) fn choose<T: Copy, const N: usize>(
    v: &str,
    all: [T; N],
    name: fn(T) -> &'static str,
) -> Result<T, String> {
    all.into_iter()
        .find(|c| v.eq_ignore_ascii_case(name(*c)))
        .ok_or_else(|| {
            let names = all.map(name);
            let (last, rest) = names.split_last().unwrap_or((&"", &[]));
            format!("expected {} or {last}", rest.join(", "))
        })
}

pub(crate) fn parse_metrics_path(v: &str) -> Result<String, String> {
    match v {
        "/" | "/healthz" => {
            Err("must not be / or /healthz, which the exporter serves itself".to_string())
        }
        _ if !v.starts_with('/') => Err("must start with /".to_string()),
        _ if v.contains(['?', '#']) => Err("must not contain ? or #".to_string()),
        _ => Ok(v.to_string()),
    }
}

pub(crate) fn parse_base_url(v: &str) -> Result<String, String> {
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"))
        .ok_or("must start with https:// or http://")?;
    if v.contains(['?', '#']) {
        return Err("must not have a query or fragment".to_string());
    }
    let authority = rest.split('/').next().unwrap_or_default();
    match split_host_port(authority)? {
        ("", _) => Err("missing host".to_string()),
        _ => Ok(v.trim_end_matches('/').to_string()),
    }
}

/// An HTTP proxy URL, normalised to `http://host:port`; a bare `host:port` is accepted as Go does.
pub(crate) fn parse_proxy(v: &str) -> Result<String, &'static str> {
    const EXPECTED: &str = "expected http://host:port";
    if v.starts_with("https://") {
        return Err("only http:// proxies are supported");
    }
    let authority = v.strip_prefix("http://").unwrap_or(v).trim_end_matches('/');
    if authority.contains(['/', '?', '#']) || authority.contains("://") {
        return Err(EXPECTED);
    }
    match split_host_port(authority).map_err(|_| EXPECTED)? {
        ("", _) => Err(EXPECTED),
        (host, port) => Ok(format!("http://{host}:{}", port.unwrap_or(80))),
    }
}

/// NO_PROXY entries, trimmed, empty ones dropped.
pub(crate) fn parse_no_proxy(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// An OTLP endpoint: whether its scheme asks for TLS (`None` without a scheme), and the rest.
pub(crate) fn parse_endpoint(v: &str) -> Result<(Option<bool>, String), String> {
    let (tls, rest) = match v.split_once("://") {
        Some(("https", rest)) => (Some(true), rest),
        Some(("http", rest)) => (Some(false), rest),
        Some(_) => {
            return Err("expected host:port, http://host:port or https://host:port".to_string())
        }
        None => (None, v),
    };
    let rest = rest.trim_end_matches('/');
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match split_host_port(authority)? {
        ("", _) => Err("missing host".to_string()),
        (_, None) if tls.is_none() => {
            Err("expected host:port, http://host:port or https://host:port".to_string())
        }
        _ if tls.is_none() && !path.is_empty() => {
            Err("a path needs an http:// or https:// scheme".to_string())
        }
        _ if v.contains(['?', '#']) => Err("must not have a query or fragment".to_string()),
        _ => Ok((tls, rest.to_string())),
    }
}

pub(crate) fn parse_listen(v: &str) -> Result<ListenAddr, &'static str> {
    match split_host_port(v)? {
        (_, None) => Err("expected :port, host:port, ip:port or [ipv6]:port"),
        ("", Some(port)) => Ok(ListenAddr::AllInterfaces(port)),
        (host, Some(port)) => match v.parse::<SocketAddr>() {
            Ok(addr) => Ok(ListenAddr::Ip(addr)),
            Err(_) => Ok(ListenAddr::Host(host.to_string(), port)),
        },
    }
}

/// Splits `host`, `host:port` or `[ipv6]:port`, checking the host's characters and
/// the port's range. The host may be empty; IPv6 hosts keep their brackets.
fn split_host_port(v: &str) -> Result<(&str, Option<u16>), &'static str> {
    let (host, port) = match v.strip_prefix('[') {
        Some(inner) => {
            let (ip, after) = inner
                .split_once(']')
                .ok_or("an IPv6 address needs a closing ]")?;
            ip.parse::<Ipv6Addr>()
                .map_err(|_| "not a valid IPv6 address")?;
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or("expected :port after the IPv6 address")?,
                ),
            };
            (&v[..ip.len() + 2], port)
        }
        None => match v.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (v, None),
        },
    };
    let host_ok = host.starts_with('[')
        || host.parse::<Ipv4Addr>().is_ok()
        || host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !host_ok {
        return Err("not a valid host name or address (IPv6 addresses need [brackets])");
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(
            p.parse::<u16>()
                .map_err(|_| "the port must be a number from 0 to 65535")?,
        ),
        Some(_) => return Err("the port must be a number from 0 to 65535"),
    };
    Ok((host, port))
}

/// `k=v,k2=v2` with percent-encoded keys and values, as in the OpenTelemetry spec.
/// Errors name the entry by position, never its content (header values are secret).
pub(crate) fn parse_pairs(v: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for (i, entry) in v
        .split(',')
        .enumerate()
        .filter(|(_, e)| !e.trim().is_empty())
    {
        let n = i + 1;
        let (key, value) = entry
            .split_once('=')
            .ok_or_else(|| format!("entry {n} is not key=value"))?;
        let key = percent_decode(key.trim())
            .ok_or_else(|| format!("entry {n} has a bad percent-encoding"))?;
        let value = percent_decode(value.trim())
            .ok_or_else(|| format!("entry {n} has a bad percent-encoding"))?;
        if key.is_empty() {
            return Err(format!("entry {n} has an empty key"));
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// `None` on a truncated or non-hex escape, or when the bytes are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    // percent_decode_str passes a malformed escape (`%zz`, a trailing `%4`) through
    // as written, where the hand-written decoder this replaced rejected it: so the
    // check that every `%` starts two hex digits comes first. (That decoder also
    // read `%+1` as byte 1, through from_str_radix's sign; no escape, now rejected.)
    let bytes = s.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(i, b)| {
        *b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return None;
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_and_decimal_units_and_need_one() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("3GB"), Ok(3_000_000_000));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert_eq!(parse_size("5KB"), Ok(5_000));
        assert_eq!(parse_size("4096B"), Ok(4096));
        assert_eq!(parse_size("0MiB"), Err("must be positive".to_string()));
        assert_eq!(
            parse_size("99999999999999999999GiB"),
            Err(EXPECTED_SIZE.to_string()),
            "too many digits for a u64"
        );
        assert_eq!(parse_size("17179869184GiB"), Err("too large".to_string()));
        for bad in [
            "64", "MiB", "1.5GiB", "-1MiB", "64mib", "64 MiB x", "64Mi", "",
        ] {
            assert_eq!(parse_size(bad), Err(EXPECTED_SIZE.to_string()), "{bad:?}");
        }
    }

    #[test]
    fn sizes_are_shown_in_the_largest_binary_unit_that_divides_them() {
        assert_eq!(format_size(64 << 20), "64MiB");
        assert_eq!(format_size(4 << 20), "4MiB");
        assert_eq!(format_size(1536), "1536B", "1.5 KiB is not a whole KiB");
        assert_eq!(format_size(1 << 30), "1GiB");
        assert_eq!(format_size(1000), "1000B");
    }

    #[test]
    fn percent_decode_accepts_only_two_hex_digit_escapes_of_utf8() {
        assert_eq!(percent_decode("a%20b%3Dc").as_deref(), Some("a b=c"));
        assert_eq!(percent_decode("gr%C3%BCn").as_deref(), Some("grün"));
        assert_eq!(percent_decode("%2541").as_deref(), Some("%41"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        for bad in ["%zz", "%", "%4", "a%", "%%41", "%é1", "%+1", "%C3"] {
            assert_eq!(percent_decode(bad), None, "{bad:?}");
        }
    }
}
