//! Turning an answer's body into items: the JSON object check, the lenient
//! model, `compressedClients` and `paginationInfo`. Pure, so the
//! `cls_decode` fuzz target runs exactly what the client runs.

use super::error::{ClsError, Endpoint, ErrorKind};
use super::model::{
    InflatedClients, LeaseClient, LeasesPage, LicensePool, LicensePoolsPage, LicenseServer,
    LicenseServersPage, VirtualGroup, VirtualGroupsPage,
};
use super::paging::PageInfo;
use super::request::MAX_BODY_BYTES;
use serde::de::DeserializeOwned;
use std::io::Read;

/// Largest inflated `compressedClients` payload (a gzip bomb stops here): no
/// more than a plain answer may hold. The JSON is parsed as it inflates, so
/// this bounds the work, and the inflated text is never held in memory.
pub(crate) const MAX_INFLATED_BYTES: usize = MAX_BODY_BYTES;

/// Decodes an answer, which must be a JSON object: fields inside it are read
/// leniently (see `model`), but a list, a string or garbage at the top is not
/// an answer we can trust to mean "nothing here". The body is read as it
/// comes (see `request`): memory holds what is decoded, not the text.
fn decode<T: DeserializeOwned>(
    endpoint: Endpoint,
    path: &str,
    body: &mut dyn Read,
) -> Result<T, ClsError> {
    let error =
        |detail: String| ClsError::new(endpoint, format!("GET {path}"), ErrorKind::Decode(detail));
    let mut first = [0u8; 1];
    loop {
        match body.read(&mut first) {
            Ok(0) => return Err(error("expected a JSON object".to_owned())),
            Ok(_) if first[0].is_ascii_whitespace() => {}
            Ok(_) => break,
            Err(e) => return Err(error(e.to_string())),
        }
    }
    if first[0] != b'{' {
        return Err(error("expected a JSON object".to_owned()));
    }
    parse(&mut (&first[..]).chain(body)).map_err(|e| error(e.to_string()))
}

/// Every JSON text of the CLS is parsed here, through one kind of reader:
/// the decoder of each model type then exists once in the binary, not once
/// per reader (a plain slice, the streamed body, the inflated clients).
fn parse<T: DeserializeOwned>(text: &mut dyn Read) -> serde_json::Result<T> {
    serde_json::from_reader(text)
}

/// One page's items and what its `paginationInfo` says (None without one).
pub(crate) type DecodedPage<T> = (Vec<T>, Option<PageInfo>);

/// Everything the client does to turn an answer's body into items: the JSON
/// object check, the lenient model, `compressedClients`, `paginationInfo`.
/// Pure, so the `cls_decode` fuzz target runs exactly this.
pub fn decode_page<P: Page>(
    endpoint: Endpoint,
    path: &str,
    mut body: &[u8],
) -> Result<DecodedPage<P::Item>, ClsError> {
    decode_page_from::<P>(endpoint, path, &mut body)
}

/// `decode_page` of a body read as it arrives.
pub(crate) fn decode_page_from<P: Page>(
    endpoint: Endpoint,
    path: &str,
    body: &mut dyn Read,
) -> Result<DecodedPage<P::Item>, ClsError> {
    let page: P = decode(endpoint, path, body)?;
    let (items, info) = page.into_parts().map_err(|detail| {
        ClsError::new(endpoint, format!("GET {path}"), ErrorKind::Decode(detail))
    })?;
    Ok((items, info.as_ref().and_then(PageInfo::read)))
}

/// A listing's answer: its items, its `paginationInfo`, and a key per item
/// that says when the same object came back twice.
pub trait Page: DeserializeOwned {
    type Item: Send + 'static;
    /// The items and `paginationInfo`, or why the answer cannot be used.
    fn into_parts(self) -> Result<(Vec<Self::Item>, Option<serde_json::Value>), String>;
    fn key(item: &Self::Item) -> String;
}

impl Page for VirtualGroupsPage {
    type Item = VirtualGroup;
    fn into_parts(self) -> Result<(Vec<VirtualGroup>, Option<serde_json::Value>), String> {
        Ok((self.virtual_groups, self.pagination_info))
    }
    fn key(item: &VirtualGroup) -> String {
        item.id.clone()
    }
}

impl Page for LicenseServersPage {
    type Item = LicenseServer;
    fn into_parts(self) -> Result<(Vec<LicenseServer>, Option<serde_json::Value>), String> {
        Ok((self.license_servers, self.pagination_info))
    }
    fn key(item: &LicenseServer) -> String {
        item.id.clone()
    }
}

impl Page for LicensePoolsPage {
    type Item = LicensePool;
    fn into_parts(self) -> Result<(Vec<LicensePool>, Option<serde_json::Value>), String> {
        Ok((self.license_pools, self.pagination_info))
    }
    fn key(item: &LicensePool) -> String {
        item.id.clone()
    }
}

impl Page for LeasesPage {
    type Item = LeaseClient;
    /// `compressedClients`, when it is a non-empty string, is inflated here
    /// and replaces `clients` (the Go exporter's rule): an answer that
    /// carries both holds the same clients twice, and counting both would
    /// count leases without ids twice. A broken one fails the answer:
    /// publishing the instance's leases as none would be wrong, so it
    /// becomes a partial failure like any other failed lease call.
    fn into_parts(self) -> Result<(Vec<LeaseClient>, Option<serde_json::Value>), String> {
        if self.compressed_clients.trim().is_empty() {
            return Ok((self.clients, self.pagination_info));
        }
        let clients = inflate_clients(&self.compressed_clients)
            .map_err(|e| format!("compressedClients could not be read: {e}"))?;
        Ok((clients, self.pagination_info))
    }
    fn key(item: &LeaseClient) -> String {
        let ids: Vec<&str> = item.leases.iter().map(|l| l.lease_id.as_str()).collect();
        ids.join("\u{0}")
    }
}

/// base64 (standard alphabet, padding optional) → gzip → JSON `{"clients":[…]}`,
/// with the inflated size capped.
pub(crate) fn inflate_clients(encoded: &str) -> Result<Vec<LeaseClient>, String> {
    let compressed = crate::encoding::decode_base64(encoded).ok_or("not valid base64")?;
    // Parsed as it inflates: memory holds the clients, never the text.
    let mut inflated = Counted {
        inner: flate2::read::MultiGzDecoder::new(&compressed[..])
            .take(MAX_INFLATED_BYTES as u64 + 1),
        count: 0,
    };
    let parsed = parse::<InflatedClients>(&mut std::io::BufReader::new(&mut inflated));
    if inflated.count > MAX_INFLATED_BYTES {
        return Err(format!("inflates to more than {MAX_INFLATED_BYTES} bytes"));
    }
    match parsed {
        Ok(c) => Ok(c.clients),
        Err(e) if e.is_io() => Err(format!("not valid gzip: {e}")),
        Err(e) => Err(format!("not valid JSON: {e}")),
    }
}

/// A reader that counts the bytes it hands on.
struct Counted<R> {
    inner: R,
    count: usize,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn encode_base64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn compressed_clients_inflate_and_bombs_are_refused() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(br#"{"clients":[{"leases":[{"leaseId":"x"}]}]}"#)
            .unwrap();
        let bytes = gz.finish().unwrap();
        let encoded = encode_base64(&bytes);
        let clients = inflate_clients(&encoded).unwrap();
        assert_eq!(clients[0].leases[0].lease_id, "x");
        assert!(inflate_clients("bm90IGd6aXA=")
            .unwrap_err()
            .starts_with("not valid gzip"));
    }

    #[test]
    fn compressed_clients_replace_plain_clients() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(br#"{"clients":[{"leases":[{"featureName":"A"}]}]}"#)
            .unwrap();
        let encoded = encode_base64(&gz.finish().unwrap());
        let body = format!(
            r#"{{"clients":[{{"leases":[{{"featureName":"A"}}]}}],"compressedClients":"{encoded}"}}"#
        );
        let (clients, _) =
            decode_page::<LeasesPage>(Endpoint::Leases, "/l", body.as_bytes()).unwrap();
        assert_eq!(clients.len(), 1, "the same client, once");
        // Blank: `clients` is what the answer holds.
        let (clients, _) = decode_page::<LeasesPage>(
            Endpoint::Leases,
            "/l",
            br#"{"clients":[{"leases":[]},{"leases":[]}],"compressedClients":" "}"#,
        )
        .unwrap();
        assert_eq!(clients.len(), 2);
    }

    #[test]
    fn answers_must_be_json_objects() {
        let decode =
            |mut body: &[u8]| decode::<VirtualGroupsPage>(Endpoint::VirtualGroups, "/x", &mut body);
        let err = decode(b"[1]").unwrap_err();
        assert_eq!(err.to_string(), "GET /x failed: response is not valid JSON of the expected shape: expected a JSON object");
        assert!(decode(b"{").is_err());
        assert!(decode(b"").is_err());
        assert!(decode(b" \n{}").is_ok());
        assert!(decode(b"{} x").is_err(), "trailing text");
    }

    #[test]
    fn decode_page_returns_items_and_page_info_or_a_decode_error() {
        let (servers, info) = decode_page::<LicenseServersPage>(
            Endpoint::LicenseServers,
            "/s",
            br#"{"licenseServers":[{"id":"s1"},7],"paginationInfo":{"pageNumber":1,"totalPages":"3"}}"#,
        )
        .unwrap();
        assert_eq!(servers.len(), 1);
        assert_eq!(servers[0].id, "s1");
        assert_eq!(info.unwrap().total_pages, Some(3));
        let (_, info) =
            decode_page::<LicensePoolsPage>(Endpoint::LicensePools, "/p", b"{}").unwrap();
        assert_eq!(info, None);
        let err = decode_page::<LeasesPage>(
            Endpoint::Leases,
            "/l",
            br#"{"clients":[],"compressedClients":"!!"}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "GET /l failed: response is not valid JSON of the expected shape: compressedClients could not be read: not valid base64"
        );
    }
}
