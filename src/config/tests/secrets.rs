//! The required credentials, the key file, and secrets never echoed: not in errors, not in `Debug`.

use super::*;

#[test]
fn missing_required_values_say_how_to_set_them() {
    assert_eq!(
        error(&[], &[("NVIDIA_ORG_NAME", "")]),
        "NVIDIA_ORG_NAME is required: set NVIDIA_ORG_NAME or pass -nvidia-org-name"
    );
    assert_eq!(
        error(&[], &[("NVIDIA_API_KEY", "")]),
        "NVIDIA_API_KEY is required: set NVIDIA_API_KEY or NVIDIA_API_KEY_FILE, \
         or pass -nvidia-api-key"
    );
}

#[test]
fn nls_aliases_are_fallbacks() {
    let unset = [("NVIDIA_API_KEY", ""), ("NVIDIA_ORG_NAME", "")];
    let nls = [("NLS_API_KEY", "nls-key"), ("NLS_ORG_NAME", "nls-org")];
    let c = env(&[unset[0], unset[1], nls[0], nls[1]]);
    assert_eq!(
        (c.api_key.expose(), c.org_name.as_str()),
        ("nls-key", "nls-org")
    );
    let c = env(&nls);
    assert_eq!(
        (c.api_key.expose(), c.org_name.as_str()),
        ("key-123", "acme")
    );
}

#[test]
fn bad_key_is_never_echoed() {
    assert_eq!(
        error(&[], &[("NVIDIA_API_KEY", ""), ("NLS_API_KEY", "sec ret")]),
        "NLS_API_KEY=\"<redacted>\" is not valid: the key must be visible ASCII without spaces"
    );
}

fn with_key_file(content: io::Result<&str>) -> Result<Command, String> {
    let content = std::cell::RefCell::new(Some(content.map(str::to_string)));
    let read = |path: &Path| {
        assert_eq!(path, Path::new("/run/secrets/key"));
        content
            .borrow_mut()
            .take()
            .expect("the key file is read once")
    };
    let vars = [
        ("NVIDIA_API_KEY", ""),
        ("NVIDIA_API_KEY_FILE", "/run/secrets/key"),
    ];
    try_parse(&[], &vars, &read)
}

#[test]
fn key_file_trailing_newline_is_stripped() {
    for content in ["from-file", "from-file\n", "from-file\r\n"] {
        match with_key_file(Ok(content)) {
            Ok(Command::Run(c)) => assert_eq!(c.api_key.expose(), "from-file"),
            other => panic!("expected Run, got {other:?}"),
        }
    }
}

#[test]
fn key_file_errors_name_the_path_but_not_the_content() {
    let prefix = "NVIDIA_API_KEY_FILE=\"/run/secrets/key\" is not valid:";
    let missing = io::Error::new(io::ErrorKind::NotFound, "no such file");
    let err = |r| with_key_file(r).expect_err("an error");
    assert_eq!(
        err(Err(missing)),
        format!("{prefix} cannot read it: no such file")
    );
    assert_eq!(err(Ok("\n")), format!("{prefix} the file is empty"));
    let bad = format!("{prefix} the key must be visible ASCII without spaces");
    assert_eq!(err(Ok("two\nlines\n")), bad);
}

#[test]
fn direct_key_wins_over_key_file_which_is_not_read() {
    let c = env(&[("NVIDIA_API_KEY_FILE", "/unreadable")]);
    assert_eq!(c.api_key.expose(), "key-123");
}

#[test]
fn debug_output_redacts_secrets() {
    let headers = ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=hdr-sekrit");
    let c = env(&[("NVIDIA_API_KEY", "key-sekrit"), headers]);
    assert_eq!(c.otel.headers[0].1.expose(), "hdr-sekrit");
    let debug = format!("{c:?}");
    assert!(
        !debug.contains("key-sekrit") && !debug.contains("hdr-sekrit"),
        "{debug}"
    );
    assert!(debug.contains("api_key: <redacted>"), "{debug}");
    assert_eq!(Secret::from("x".to_string()).to_string(), "<redacted>");
}

#[test]
fn bad_headers_are_never_echoed() {
    assert_eq!(
        error(&[], &[("OTEL_EXPORTER_OTLP_HEADERS", "a=1,Bearer sekrit")]),
        "OTEL_EXPORTER_OTLP_HEADERS=\"<redacted>\" is not valid: entry 2 is not key=value"
    );
}
