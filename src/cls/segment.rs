//! Ids and the org name as URL path segments: percent-encoded, so API data
//! can never change a path's shape, and refused where no path can name them.

use super::error::{ClsError, Endpoint, ErrorKind};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything but RFC 3986's unreserved characters is encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub(crate) fn encode_segment(segment: &str) -> String {
    utf8_percent_encode(segment, SEGMENT).to_string()
}

/// An id as a path segment, or None when it cannot name anything: empty
/// or blank (a null id), or `.` and `..`, which a server or proxy on the way
/// reads as "this" and "the parent" path and so would answer for another
/// resource than the one asked for.
pub(crate) fn id_segment(id: &str) -> Option<String> {
    match id.trim() {
        "" | "." | ".." => None,
        _ => Some(encode_segment(id)),
    }
}

/// The failure recorded for a sub-resource that is not asked for because
/// its parent has no usable id (no request is made or counted).
pub(crate) fn no_usable_id(endpoint: Endpoint, what: String) -> ClsError {
    ClsError::new(
        endpoint,
        what,
        ErrorKind::Request("the id is empty, \".\" or \"..\", so no path can name it".into()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("lic-abc_1.2~"), "lic-abc_1.2~");
        assert_eq!(encode_segment("a/b c?d#e"), "a%2Fb%20c%3Fd%23e");
        assert_eq!(encode_segment("Zü"), "Z%C3%BC");
        assert_eq!(encode_segment(".."), "..");
    }

    #[test]
    fn ids_that_name_no_resource_make_no_path() {
        for id in ["", "  ", ".", "..", " .. "] {
            assert_eq!(id_segment(id), None, "{id:?}");
        }
        assert_eq!(id_segment("...").as_deref(), Some("..."));
        assert_eq!(id_segment("a/..").as_deref(), Some("a%2F.."));
    }
}
