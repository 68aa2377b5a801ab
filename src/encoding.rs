//! Decoding base64 as the exporter meets it: `compressedClients` in lease
//! answers and the credentials of HTTP basic auth.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Standard or URL-safe alphabet, padding optional, line breaks and other
/// ASCII white space ignored; None when it is not base64.
pub(crate) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD
        .decode(&compact)
        .or_else(|_| URL_SAFE.decode(&compact))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::decode_base64 as decode;

    #[test]
    fn decodes_with_and_without_padding() {
        assert_eq!(decode("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(decode("aGVsbG8"), Some(b"hello".to_vec()));
        assert_eq!(decode("aGVs\\nbG8h"), None);
        assert_eq!(decode("aGVs\nbG8h"), Some(b"hello!".to_vec()));
        assert_eq!(decode("YWxpY2U6c2VjcmV0"), Some(b"alice:secret".to_vec()));
        assert_eq!(decode("a"), None);
        assert_eq!(decode("a$=="), None);
    }

    #[test]
    fn both_alphabets_are_read() {
        assert_eq!(decode("-_-_"), Some(vec![0xfb, 0xff, 0xbf]));
        assert_eq!(decode("+/+/"), Some(vec![0xfb, 0xff, 0xbf]));
    }
}
