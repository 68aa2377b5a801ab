//! An error with its whole cause chain on one line. hyper-util, rustls and
//! tonic wrap the cause that matters ("connection refused", "certificate
//! expired") inside a generic message that alone says little.

/// `error` and each of its `source()`s joined with `: `, a cause left out
/// when the text before it already holds it.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapped(&'static str, Option<Box<Wrapped>>);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn causes_are_joined_once_each() {
        let error = Wrapped(
            "client error (Connect)",
            Some(Box::new(Wrapped(
                "tcp connect error: Connection refused",
                Some(Box::new(Wrapped("Connection refused", None))),
            ))),
        );
        assert_eq!(
            chain(&error),
            "client error (Connect): tcp connect error: Connection refused"
        );
    }
}
