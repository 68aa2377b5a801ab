//! The listener's security, configured like the Prometheus exporter-toolkit
//! web configuration file (`--web.config.file`): TLS with an optional client
//! CA, and HTTP basic auth with bcrypt password hashes.
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.pem
//!   key_file: server-key.pem
//!   client_auth_type: RequireAndVerifyClientCert   # or NoClientCert, VerifyClientCertIfGiven
//!   client_ca_file: clients-ca.pem
//!   min_version: TLS12                              # or TLS13
//! basic_auth_users:
//!   prometheus: $2y$10$...                          # bcrypt hash (htpasswd -nB)
//! ```
//!
//! Relative paths are relative to the file's directory, as in the toolkit.
//! Unknown keys are errors, so a typo does not silently leave the listener open.

use crate::tls;
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;
use yaml_rust2::{Yaml, YamlLoader};

pub(crate) struct WebConfig {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub auth: Option<Arc<BasicAuth>>,
}

/// Reads and checks the whole file; every error names the file and the key.
pub(crate) fn load(path: &Path) -> Result<WebConfig, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("WEB_CONFIG_FILE=\"{shown}\" cannot be read: {e}"))?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base).map_err(|e| format!("WEB_CONFIG_FILE=\"{shown}\" is not valid: {e}"))
}

fn parse(text: &str, base: &Path) -> Result<WebConfig, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| format!("YAML: {e}"))?;
    let root = match docs.into_iter().next() {
        None | Some(Yaml::Null) => {
            return Ok(WebConfig {
                tls: None,
                auth: None,
            })
        }
        Some(Yaml::Hash(map)) => map,
        Some(_) => return Err("the top level must be a mapping".into()),
    };
    let mut tls = None;
    let mut auth = None;
    for (key, value) in root {
        match key.as_str() {
            Some("tls_server_config") => tls = tls_config(&value, base)?,
            Some("basic_auth_users") => auth = basic_auth(&value)?,
            // Accepted for compatibility with existing files; HTTP/2 and
            // extra headers are not offered by this listener.
            Some("http_server_config") => {}
            _ => return Err(format!("unknown key {}", show_key(&key))),
        }
    }
    Ok(WebConfig { tls, auth })
}

fn show_key(key: &Yaml) -> String {
    key.as_str()
        .map_or_else(|| format!("{key:?}"), |k| format!("\"{k}\""))
}

fn tls_config(value: &Yaml, base: &Path) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
    let map = match value {
        Yaml::Null => return Ok(None),
        Yaml::Hash(map) => map,
        _ => return Err("tls_server_config must be a mapping".into()),
    };
    let mut cert_file = None;
    let mut key_file = None;
    let mut client_ca_file = None;
    let mut client_auth = "NoClientCert".to_owned();
    let mut versions: &[&rustls::SupportedProtocolVersion] = rustls::DEFAULT_VERSIONS;
    for (key, value) in map {
        let text = || {
            value.as_str().map(str::to_owned).ok_or_else(|| {
                format!(
                    "tls_server_config.{} must be a string",
                    key.as_str().unwrap_or("?")
                )
            })
        };
        match key.as_str() {
            Some("cert_file") => cert_file = Some(base.join(text()?)),
            Some("key_file") => key_file = Some(base.join(text()?)),
            Some("client_ca_file") => client_ca_file = Some(base.join(text()?)),
            Some("client_auth_type") => client_auth = text()?,
            Some("min_version") => {
                versions = match text()?.as_str() {
                    "TLS12" => rustls::ALL_VERSIONS,
                    "TLS13" => TLS13_ONLY,
                    other => {
                        return Err(format!(
                            "tls_server_config.min_version \"{other}\" is not TLS12 or TLS13"
                        ))
                    }
                }
            }
            _ => {
                return Err(format!(
                    "unknown key tls_server_config.{}",
                    key.as_str().unwrap_or("?")
                ))
            }
        }
    }
    let cert_file = cert_file.ok_or("tls_server_config.cert_file is required")?;
    let key_file = key_file.ok_or("tls_server_config.key_file is required")?;
    let certs = tls::read_certificates("tls_server_config.cert_file", &cert_file)?;
    let key_name = "tls_server_config.key_file";
    let key = tls::private_key(key_name, &key_file, &tls::read_file(key_name, &key_file)?)?;

    let provider = tls::provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS versions: {e}"))?;
    let client_roots = || -> Result<Arc<rustls::RootCertStore>, String> {
        let path = client_ca_file.as_ref().ok_or_else(|| {
            format!("client_auth_type {client_auth} needs tls_server_config.client_ca_file")
        })?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in tls::read_certificates("tls_server_config.client_ca_file", path)? {
            roots
                .add(cert)
                .map_err(|e| format!("client_ca_file {}: {e}", path.display()))?;
        }
        Ok(Arc::new(roots))
    };
    let builder = match client_auth.as_str() {
        "NoClientCert" => builder.with_no_client_auth(),
        "RequireAndVerifyClientCert" | "VerifyClientCertIfGiven" => {
            let mut verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(client_roots()?, provider);
            if client_auth == "VerifyClientCertIfGiven" {
                verifier = verifier.allow_unauthenticated();
            }
            builder.with_client_cert_verifier(verifier.build().map_err(|e| format!("client CA: {e}"))?)
        }
        other => {
            return Err(format!(
                "client_auth_type \"{other}\" is not supported: use NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
            ))
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("cert_file and key_file do not make a usable pair: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

static TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

fn basic_auth(value: &Yaml) -> Result<Option<Arc<BasicAuth>>, String> {
    let map = match value {
        Yaml::Null => return Ok(None),
        Yaml::Hash(map) => map,
        _ => {
            return Err("basic_auth_users must be a mapping of user names to bcrypt hashes".into())
        }
    };
    let mut users = Vec::new();
    for (user, hash) in map {
        let user = user
            .as_str()
            .ok_or("basic_auth_users: user names must be strings")?;
        // The hash is a secret too: an error names the user, never the hash.
        let hash = hash.as_str().filter(|h| is_bcrypt(h)).ok_or_else(|| {
            format!("basic_auth_users.{user} is not a bcrypt hash ($2a$, $2b$ or $2y$)")
        })?;
        users.push((user.to_owned(), hash.to_owned()));
    }
    let Some((_, first)) = users.first() else {
        return Ok(None);
    };
    // Unknown users are checked against a hash of the same cost as a real
    // one, so that they take as long as a wrong password.
    let cost = first
        .get(4..6)
        .and_then(|c| c.parse().ok())
        .unwrap_or(bcrypt::DEFAULT_COST);
    let dummy = bcrypt::hash("not a password of anyone", cost)
        .map_err(|e| format!("basic_auth_users: {e}"))?;
    Ok(Some(Arc::new(BasicAuth {
        users,
        dummy,
        verified: Mutex::new(HashSet::new()),
    })))
}

fn is_bcrypt(hash: &str) -> bool {
    hash.len() == 60 && ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p))
}

/// Basic auth users and a cache of verified credentials.
pub(crate) struct BasicAuth {
    users: Vec<(String, String)>,
    /// Checked for unknown users (same cost as the first configured hash).
    dummy: String,
    /// SHA-256 of (user, password, hash) for credentials that verified: bcrypt
    /// is slow on purpose, and a scrape every few seconds must not pay for it
    /// each time. Only digests are kept, never passwords. Bounded.
    verified: Mutex<HashSet<[u8; 32]>>,
}

const CACHE_LIMIT: usize = 1024;

impl BasicAuth {
    /// Checks an `Authorization` header value. CPU-heavy (bcrypt) unless the
    /// credentials verified before: call it off the async threads.
    pub(crate) fn check(&self, authorization: Option<&[u8]>) -> bool {
        let Some((user, password)) = authorization.and_then(credentials) else {
            return false;
        };
        // Compare every user name in constant time, so neither the result
        // nor its timing says whether the name exists.
        let mut found: Option<&str> = None;
        for (name, hash) in &self.users {
            if bool::from(name.as_bytes().ct_eq(user.as_bytes())) {
                found = Some(hash);
            }
        }
        let hash = found.unwrap_or(&self.dummy);
        let digest = {
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            for part in [user.as_bytes(), password.as_bytes(), hash.as_bytes()] {
                ctx.update(&(part.len() as u64).to_le_bytes());
                ctx.update(part);
            }
            let mut out = [0u8; 32];
            out.copy_from_slice(ctx.finish().as_ref());
            out
        };
        if found.is_some()
            && self
                .verified
                .lock()
                .map(|set| set.contains(&digest))
                .unwrap_or(false)
        {
            return true;
        }
        let ok = bcrypt::verify(password.as_bytes(), hash).unwrap_or(false) && found.is_some();
        if ok {
            if let Ok(mut set) = self.verified.lock() {
                if set.len() >= CACHE_LIMIT {
                    set.clear();
                }
                set.insert(digest);
            }
        }
        ok
    }
}

/// `Basic base64(user:password)` → (user, password).
fn credentials(header: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(header).ok()?;
    let (scheme, encoded) = text.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(crate::encoding::decode_base64(encoded.trim())?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(users: &[(&str, &str)]) -> BasicAuth {
        BasicAuth {
            users: users
                .iter()
                .map(|(u, p)| ((*u).to_owned(), bcrypt::hash(p, 4).unwrap()))
                .collect(),
            dummy: bcrypt::hash("x", 4).unwrap(),
            verified: Mutex::new(HashSet::new()),
        }
    }

    fn header(user: &str, password: &str) -> Vec<u8> {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let raw = format!("{user}:{password}").into_bytes();
        let mut out = String::from("Basic ");
        for chunk in raw.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                out.push(if i <= chunk.len() {
                    A[(n >> (18 - 6 * i) & 63) as usize] as char
                } else {
                    '='
                });
            }
        }
        out.into_bytes()
    }

    #[test]
    fn basic_auth_accepts_only_the_right_password() {
        let a = auth(&[("alice", "secret"), ("bob", "pw:with:colons")]);
        assert!(a.check(Some(&header("alice", "secret"))));
        assert!(a.check(Some(&header("alice", "secret"))), "cached");
        assert!(a.check(Some(&header("bob", "pw:with:colons"))));
        assert!(!a.check(Some(&header("alice", "wrong"))));
        assert!(!a.check(Some(&header("mallory", "secret"))));
        assert!(!a.check(Some(b"Bearer abc")));
        assert!(!a.check(Some(b"Basic !!!")));
        assert!(!a.check(None));
    }

    #[test]
    fn the_dummy_hash_has_the_cost_of_the_configured_one() {
        let hash = bcrypt::hash("pw", 5).unwrap();
        let config = parse(
            &format!("basic_auth_users:\n  alice: '{hash}'"),
            Path::new("."),
        )
        .unwrap();
        let auth = config.auth.unwrap();
        assert!(is_bcrypt(&auth.dummy));
        assert_eq!(&auth.dummy[..7], &hash[..7]);
    }

    #[test]
    fn config_errors_name_the_key() {
        let base = Path::new(".");
        assert!(parse("", base).unwrap().tls.is_none());
        assert_eq!(
            parse("bogus: 1", base).err().unwrap(),
            "unknown key \"bogus\""
        );
        assert_eq!(
            parse("tls_server_config:\n  cert_fil: x", base)
                .err()
                .unwrap(),
            "unknown key tls_server_config.cert_fil"
        );
        assert_eq!(
            parse("tls_server_config:\n  key_file: k", base)
                .err()
                .unwrap(),
            "tls_server_config.cert_file is required"
        );
        assert_eq!(
            parse("basic_auth_users:\n  alice: plaintext", base)
                .err()
                .unwrap(),
            "basic_auth_users.alice is not a bcrypt hash ($2a$, $2b$ or $2y$)"
        );
        let hash = bcrypt::hash("pw", 4).unwrap();
        let users = parse(&format!("basic_auth_users:\n  alice: '{hash}'"), base).unwrap();
        assert!(users.auth.is_some());
        assert!(parse("[1, 2]", base).is_err());
    }
}
