//! The raw stage as the user meets it: flag forms and precedence, trimming,
//! positional arguments, the `healthcheck` subcommand, `--help` and `--version`.

use super::*;

#[test]
fn flag_beats_env() {
    let c = run(&["-scrape-timeout", "7s"], &[("SCRAPE_TIMEOUT", "5s")]);
    assert_eq!(c.scrape_timeout, Duration::from_secs(7));
}

#[test]
fn last_flag_wins() {
    assert_eq!(
        run(&["-parallelism", "2", "--parallelism=3"], &[]).parallelism,
        3
    );
}

#[test]
fn values_are_trimmed_and_empty_counts_as_unset() {
    assert_eq!(env(&[("METRICS_PATH", "  /x \n")]).metrics_path, "/x");
    assert_eq!(env(&[("METRICS_PATH", "  ")]).metrics_path, "/metrics");
    assert_eq!(
        run(&["-metrics-path="], &[("METRICS_PATH", "/env")]).metrics_path,
        "/env"
    );
}

#[test]
fn bare_bool_flag_means_true_and_takes_no_separate_value() {
    assert!(
        run(&["-otel-enabled"], &[("OTEL_ENABLED", "false")])
            .otel
            .enabled
    );
    assert!(!run(&["--otel-insecure=false"], &[]).otel.insecure);
    assert_eq!(
        error(&["-otel-enabled", "false"], &[]),
        "unexpected argument \"false\" (see --help)"
    );
}

#[test]
fn flag_syntax_errors() {
    assert_eq!(error(&["-foo"], &[]), "unknown flag -foo (see --help)");
    assert_eq!(error(&["--foo=1"], &[]), "unknown flag --foo (see --help)");
    assert_eq!(
        error(&["-listen-address"], &[]),
        "flag -listen-address needs a value (see --help)"
    );
    assert_eq!(error(&["---x"], &[]), "bad flag syntax: ---x (see --help)");
    assert_eq!(
        error(&["---key=sekrit"], &[]),
        "bad flag syntax: ---key (see --help)"
    );
}

#[test]
fn flag_errors_stay_one_line_for_arguments_with_control_characters() {
    // Found by the config_parse fuzz target: the flag was quoted raw.
    assert_eq!(
        error(&["-\u{90}\r\u{11}"], &[]),
        "unknown flag -\\u{90}\\r\\u{11} (see --help)"
    );
    assert_eq!(
        error(&["--x\ny=1"], &[]),
        "unknown flag --x\\ny (see --help)"
    );
    assert_eq!(
        error(&["---\n=v"], &[]),
        "bad flag syntax: ---\\n (see --help)"
    );
}

#[test]
fn flag_value_may_start_with_a_dash() {
    assert_eq!(run(&["-nvidia-org-name", "-org"], &[]).org_name, "-org");
}

#[test]
fn double_dash_ends_flags() {
    assert_eq!(
        error(&["--", "-parallelism"], &[]),
        "unexpected argument \"-parallelism\" (see --help)"
    );
    let hc = healthcheck(&["-parallelism", "2", "--", "healthcheck"], &[]);
    assert!(matches!(hc, Ok((_, c)) if c.parallelism == 2));
}

#[test]
fn stray_arguments_are_rejected() {
    assert_eq!(
        error(&["serve"], &[]),
        "unexpected argument \"serve\" (see --help)"
    );
    assert_eq!(
        error(&["healthcheck", "now"], &[]),
        "unexpected argument \"now\" (see --help)"
    );
}

#[test]
fn healthcheck_needs_no_key_or_org() {
    let vars = [
        ("NVIDIA_API_KEY", ""),
        ("NVIDIA_ORG_NAME", ""),
        ("NVIDIA_API_KEY_FILE", "/x"),
    ];
    match healthcheck(&["healthcheck", "-listen-address", "127.0.0.1:9000"], &vars) {
        Ok((hc, c)) => {
            assert_eq!(hc.listen, ListenAddr::Ip(([127, 0, 0, 1], 9000).into()));
            assert_eq!((c.api_key.expose(), c.org_name.as_str()), ("", ""));
            assert_eq!(c.listen_address, "127.0.0.1:9000");
            assert_eq!(c.metrics_path, "/metrics");
        }
        other => panic!("expected Healthcheck, got {other:?}"),
    }
}

#[test]
fn healthcheck_flags_may_come_first_and_are_validated() {
    let hc = healthcheck(&["-metrics-path", "/m", "healthcheck"], &[]);
    assert!(matches!(hc, Ok((_, c)) if c.metrics_path == "/m"));
    assert_eq!(
        error(&["healthcheck", "-listen-address=nope"], &[]),
        "-listen-address=\"nope\" is not valid: expected :port, host:port, ip:port or [ipv6]:port"
    );
}

#[test]
fn help_and_version_need_no_required_values() {
    for flag in ["-h", "-help", "--help", "--h"] {
        let got = try_parse(&[flag], &[("NVIDIA_API_KEY", "")], &no_files);
        assert!(matches!(got, Ok(Command::Help(_))), "{flag}");
    }
    for flag in ["-version", "--version"] {
        let got = try_parse(&[flag], &[("NVIDIA_API_KEY", "")], &no_files);
        assert!(matches!(got, Ok(Command::Version)), "{flag}");
    }
}

#[test]
fn check_reads_every_setting_as_the_server_does() {
    let args = ["check", "-parallelism", "3"];
    match try_parse(&args, &[("CACHE_TTL", "5m")], &no_files) {
        Ok(Command::Check(c, output)) => {
            assert_eq!(output, CheckOutput::Text);
            assert_eq!((c.parallelism, c.cache_ttl), (3, Duration::from_secs(300)));
            assert_eq!(
                (c.api_key.expose(), c.org_name.as_str()),
                ("key-123", "acme")
            );
        }
        other => panic!("expected Check, got {other:?}"),
    }
    // Unlike the healthcheck, it needs the key and the org name.
    assert_eq!(
        error(&["check"], &[("NVIDIA_ORG_NAME", "")]),
        "NVIDIA_ORG_NAME is required: set NVIDIA_ORG_NAME or pass -nvidia-org-name"
    );
    assert_eq!(
        error(&["check", "-scrape-timeout=0s"], &[]),
        "-scrape-timeout=\"0s\" is not valid: must be positive"
    );
}

#[test]
fn check_output_is_text_or_json_in_every_flag_form() {
    for args in [
        &["check", "-output", "json"][..],
        &["check", "--output=json"],
        &["--output", "JSON", "check"],
        &["-output=json", "--", "check"],
    ] {
        match try_parse(args, &[], &no_files) {
            Ok(Command::Check(_, output)) => assert_eq!(output, CheckOutput::Json, "{args:?}"),
            other => panic!("{args:?}: expected Check, got {other:?}"),
        }
    }
    assert!(matches!(
        try_parse(&["check", "-output", "text"], &[], &no_files),
        Ok(Command::Check(_, CheckOutput::Text))
    ));
    assert_eq!(
        error(&["check", "-output", "yaml"], &[]),
        "-output=\"yaml\" is not valid: expected text or json"
    );
    assert_eq!(
        error(&["check", "-output"], &[]),
        "flag -output needs a value (see --help)"
    );
    for args in [&["-output", "json"][..], &["healthcheck", "--output=json"]] {
        let which = args.iter().find(|a| a.contains("output")).unwrap();
        let flag = which.split('=').next().unwrap();
        assert_eq!(
            error(args, &[]),
            format!("flag {flag} is only for the check subcommand (see --help)"),
        );
    }
    assert_eq!(
        error(&["check", "healthcheck"], &[]),
        "unexpected argument \"healthcheck\" (see --help)"
    );
}
