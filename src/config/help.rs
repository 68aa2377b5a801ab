//! The `--help` text, built from the settings table so that it lists every setting.

use std::fmt::Write as _;

use super::duration::format_go_duration;
use super::settings::{Setting, Shown, SETTINGS};
use super::values::format_size;

pub(crate) fn text() -> String {
    let name = env!("CARGO_PKG_NAME");
    let mut out = format!(
        "{name} exports NVIDIA Cloud License Service data as Prometheus metrics and over OTLP.\n\n\
         Usage:\n  {name} [flags]\n  {name} check [-output text|json] [flags]\n  {name} healthcheck [flags]\n\n\
         Subcommands:\n  check\n        Reads CLS once with the same settings and prints what it found (org, counts,\n        \
         nearest end date, API calls, each part that failed), as text or with -output json\n        \
         as one JSON object. Serves nothing. Exit 0: CLS was read; 1: it could not be (one\n        \
         line says why); 2: bad settings.\n  \
         healthcheck\n        GET /healthz on the local listener (LISTEN_ADDRESS); exit 0 when it answers 200.\n        \
         Reads the same flags and environment; NVIDIA_API_KEY and NVIDIA_ORG_NAME are not needed.\n\n\
         Exit status of the exporter: 0 after SIGTERM or SIGINT, 1 when it cannot run (the port\n\
         is in use, ...), 2 on bad settings or unusable files they name.\n\n\
         Flags take -name value, -name=value, --name value or --name=value; a bare boolean\n\
         flag means true. A flag wins over its environment variable, which wins over the\n\
         default. An empty environment variable counts as unset.\n  -h, --help\n        print this help\n  \
         --version\n        print the version\n\nSettings (flag and environment variable):\n"
    );
    SETTINGS
        .iter()
        .filter(|s| s.flag.is_some())
        .for_each(|s| entry(&mut out, s));
    out.push_str("\nEnvironment only (the standard OTEL_EXPORTER_OTLP_* variables win over the OTEL_* settings):\n");
    SETTINGS
        .iter()
        .filter(|s| s.flag.is_none())
        .for_each(|s| entry(&mut out, s));
    out
}

/// One setting: its flag and names with the default on one line, the help indented below.
fn entry(out: &mut String, s: &Setting) {
    let names = std::iter::once(&s.env)
        .chain(s.aliases)
        .copied()
        .collect::<Vec<_>>()
        .join(" or ");
    let default = match s.default {
        Shown::Nothing => String::new(),
        Shown::Required => " (required)".to_string(),
        Shown::Text(text) => format!(" (default {text})"),
        Shown::Duration(d) => format!(" (default {})", format_go_duration(d)),
        Shown::Int(n) => format!(" (default {n})"),
        Shown::Bool(b) => format!(" (default {b})"),
        Shown::Size(n) => format!(" (default {})", format_size(n)),
    };
    let _ = match s.flag {
        Some(flag) if s.arg.is_empty() => write!(out, "  -{flag}, {names}"),
        Some(flag) => write!(out, "  -{flag} {}, {names}", s.arg),
        None => write!(out, "  {names}"),
    };
    let _ = writeln!(out, "{default}\n        {}", s.help);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_setting_with_its_default() {
        let help = text();
        let name = env!("CARGO_PKG_NAME");
        for s in SETTINGS {
            for name in std::iter::once(&s.env).chain(s.aliases) {
                assert!(help.contains(name), "{name} missing from help");
            }
            if let Some(flag) = s.flag {
                let shown = [format!("  -{flag} {}, ", s.arg), format!("  -{flag}, ")];
                assert!(
                    shown.iter().any(|f| help.contains(f)),
                    "-{flag} missing from help"
                );
            }
        }
        for line in [
            "  -scrape-timeout duration, SCRAPE_TIMEOUT (default 20s)\n",
            "  -listen-address addr, LISTEN_ADDRESS (default :9844)\n",
            "  -nvidia-org-name name, NVIDIA_ORG_NAME or NLS_ORG_NAME (required)\n",
            "  -otel-insecure, OTEL_INSECURE (default true)\n",
            "  -parallelism n, PARALLELISM (default 8)\n",
            "  -log-level level, LOG_LEVEL (default info)\n",
            "  -otel-backlog-max-age duration, OTEL_BACKLOG_MAX_AGE (default 24h0m0s)\n",
            "  -otel-backlog-max-bytes size, OTEL_BACKLOG_MAX_BYTES (default 64MiB)\n",
            "  -otel-spool-dir path, OTEL_SPOOL_DIR\n",
            "  HTTPS_PROXY or https_proxy\n",
            "  OTEL_EXPORTER_OTLP_TIMEOUT (default 10000)\n",
            "  healthcheck\n",
            "  check\n",
            &*format!("  {name} check [-output text|json] [flags]\n"),
        ] {
            assert!(help.contains(line), "{line:?} missing from help:\n{help}");
        }
    }
}
