//! The command, wiring only: settings, logging, the clients, the cache, the
//! listener and the push, signals and the exit code.
//!
//! Everything a setting names (files, certificates, the OTLP endpoint) is
//! loaded and checked before the port is bound: a bad one is exit 2 with
//! one line, and no `listening` line before it. A failure of the running
//! exporter (the port is taken) is exit 1, reported once.
//!
//! The first refresh starts as soon as the port is bound (a warm start), so
//! that a bad key or an unreachable CLS shows in the log within seconds,
//! not at the first scrape. `check` runs that one refresh and reports it.

use crate::cache::{Cache, RefreshError, RefreshFn, RenderFn, Status};
use crate::cls::{ApiStats, ClientSettings, ClsClient};
use crate::config::{self, duration, CheckOutput, Command, Config, LogFormat, LogLevel};
use crate::metrics::exposition::Rendered;
use crate::metrics::families::{refresh_families, BUILD};
use crate::metrics::live::PushStats;
use crate::server::{healthcheck, listen, web_config, AppState, Bodies};
use crate::snapshot::Snapshot;
use crate::summary::{partial_failures, Found, Report};
use crate::{otlp, server};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const NAME: &str = env!("CARGO_PKG_NAME");
/// How long the last OTLP push after SIGTERM may take.
const LAST_PUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Why the exporter did not start, or stopped: each kind its exit code.
#[derive(Debug)]
pub(crate) enum StartupError {
    /// A setting, or a file or certificate it names, is unusable (exit 2).
    Input(String),
    /// The exporter could not run: the port is taken, no runtime (exit 1).
    Runtime(String),
}

impl StartupError {
    fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            StartupError::Input(_) => 2,
            StartupError::Runtime(_) => 1,
        })
    }
}

pub fn main() -> ExitCode {
    crate::memory::without_thread_caches();
    crate::memory::configure_allocator();
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let env = |name: &str| match std::env::var(name).ok() {
        None if name == "HOSTNAME" => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned()),
        value => value,
    };
    let read_file = |path: &std::path::Path| std::fs::read_to_string(path);
    match config::parse(&args, &env, &read_file) {
        Err(error) => {
            eprintln!("{NAME}: {error}");
            ExitCode::from(2)
        }
        Ok(Command::Help(text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Ok(Command::Version) => {
            println!(
                "{NAME} {} (revision {}, {}, rustc {})",
                BUILD.version,
                BUILD.revision,
                env!("EXPORTER_TARGET"),
                BUILD.rustc_version
            );
            ExitCode::SUCCESS
        }
        Ok(Command::Healthcheck(config)) => healthcheck::run(&config),
        Ok(Command::Check(config, output)) => check(config, output),
        Ok(Command::Run(config)) => match run(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => error.exit_code(),
        },
    }
}

/// Loads what the settings name, then serves until a signal. An error is
/// reported here, once: a bad input as a bad setting is (`name: message`
/// on stderr), a runtime failure in the log.
fn run(config: Config) -> Result<(), StartupError> {
    let result = Files::load(&config)
        .map_err(StartupError::Input)
        .and_then(|files| {
            install_panic_hook(&config);
            init_logging(config.log_level, config.log_format);
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| StartupError::Runtime(format!("cannot start the async runtime: {e}")))
                .and_then(|runtime| runtime.block_on(serve(config, files)))
        });
    match &result {
        Err(StartupError::Input(message)) => eprintln!("{NAME}: {message}"),
        Err(StartupError::Runtime(message)) => tracing::error!("{message}"),
        Ok(()) => {}
    }
    result
}

/// A panic is a bug, but its message may still quote a value that came from
/// the configuration: the report is one line with the API key and the OTLP
/// header values blanked out.
fn install_panic_hook(config: &Config) {
    let secrets: Vec<String> = std::iter::once(config.api_key.expose())
        .chain(config.otel.headers.iter().map(|(_, value)| value.expose()))
        .filter(|secret| !secret.is_empty())
        .map(str::to_owned)
        .collect();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let mut message = message.replace(['\n', '\r'], " ");
        for secret in &secrets {
            message = message.replace(secret.as_str(), "[redacted]");
        }
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("{NAME}: internal error{location}: {message} (a bug: please report it)");
    }));
    // Debug builds only: lets the secret test see a real panic report.
    #[cfg(debug_assertions)]
    if let Ok(message) = std::env::var("EXPORTER_DEBUG_PANIC") {
        panic!("{message}");
    }
}

/// The files the settings name, read and checked before anything starts.
struct Files {
    /// NVIDIA_API_CA_FILE.
    extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// The OTLP certificates and headers, when the push is enabled.
    otlp: Option<otlp::Material>,
    /// OTEL_SPOOL_DIR, created if missing and checked writable, when the
    /// push is enabled.
    spool: Option<otlp::Spool>,
    /// WEB_CONFIG_FILE: listener TLS and basic auth.
    web: web_config::WebConfig,
}

impl Files {
    fn load(config: &Config) -> Result<Files, String> {
        let extra_roots = match &config.api_ca_file {
            Some(path) => crate::tls::read_certificates("NVIDIA_API_CA_FILE", path)?,
            None => Vec::new(),
        };
        let otlp = config
            .otel
            .enabled
            .then(|| otlp::Material::load(&config.otel))
            .transpose()?;
        let spool = match (&config.otel.backlog.spool_dir, config.otel.enabled) {
            (Some(dir), true) => Some(otlp::Spool::open(dir)?),
            _ => None,
        };
        let web = match &config.web_config_file {
            Some(path) => web_config::load(path)?,
            None => web_config::WebConfig {
                tls: None,
                auth: None,
            },
        };
        Ok(Files {
            extra_roots,
            otlp,
            spool,
            web,
        })
    }
}

fn init_logging(level: LogLevel, format: LogFormat) {
    let level = match level {
        LogLevel::Error => tracing::Level::ERROR,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Debug => tracing::Level::DEBUG,
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn serve(config: Config, files: Files) -> Result<(), StartupError> {
    let Files {
        extra_roots,
        otlp,
        spool,
        web,
    } = files;
    // The clients refuse what they cannot use (a CA certificate rustls
    // rejects, a key that cannot be a header, an OTLP endpoint tonic cannot
    // parse) before anything is bound.
    let stats = Arc::new(ApiStats::default());
    let client = cls_client(&config, extra_roots, stats.clone()).map_err(StartupError::Input)?;
    let transport = otlp
        .as_ref()
        .map(|material| otlp::Transport::new(&config.otel, material))
        .transpose()
        .map_err(StartupError::Input)?;
    let cache = Cache::new(
        refresher(client),
        renderer(config.org_name.clone(), stats.clone()),
        config.cache_ttl,
        config.scrape_timeout,
    );

    let listener = listen::bind(&config.listen).await.map_err(|e| {
        StartupError::Runtime(format!(
            "cannot listen on LISTEN_ADDRESS=\"{}\": {e}",
            config.listen_address
        ))
    })?;
    let shutdown = shutdown_signal();
    let local = listener
        .local_addr()
        .map_or_else(|_| config.listen_address.clone(), |a| a.to_string());
    // The operator's strings are quoted and escaped (Debug): an org name
    // with a newline must not split the record in two.
    tracing::info!(
        address = %local,
        metrics_path = ?config.metrics_path,
        org = ?config.org_name,
        base_url = ?config.api_base_url,
        cache_ttl = %duration::format_go_duration(config.cache_ttl),
        scrape_timeout = %duration::format_go_duration(config.scrape_timeout),
        tls = web.tls.is_some(),
        basic_auth = web.auth.is_some(),
        "{NAME} {} listening", BUILD.version
    );
    // The warm start: the first refresh runs now. A scrape that comes
    // meanwhile joins it (single-flight); its result is logged at once
    // (`refresher` on success, the cache's warning on failure).
    let warm = cache.clone();
    tokio::spawn(async move {
        warm.get().await;
    });
    let push_stats = transport
        .as_ref()
        .map(|_| Arc::new(PushStats::new(spool.is_some())));
    let push = match (transport, &push_stats) {
        (Some(transport), Some(push_stats)) => Some(otlp::Push::start(
            &config.otel,
            transport,
            spool,
            cache.clone(),
            Arc::new(move |status: &Status| refresh_families(status, &stats)),
            config.org_name.clone(),
            push_stats.clone(),
        )),
        _ => None,
    };
    let state = Arc::new(AppState::new(
        cache,
        config.metrics_path.clone(),
        config.org_name.clone(),
        push_stats,
        web.tls.map(tokio_rustls::TlsAcceptor::from),
        web.auth,
        config.healthz_open,
    ));
    server::serve(listener, state, shutdown).await;
    if let Some(push) = push {
        push.shutdown(LAST_PUSH_TIMEOUT).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The CLS client of the settings; an error is a setting it cannot use.
fn cls_client(
    config: &Config,
    extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    stats: Arc<ApiStats>,
) -> Result<ClsClient, String> {
    ClsClient::new(
        ClientSettings {
            base_url: config.api_base_url.clone(),
            api_key: config.api_key.expose().to_owned(),
            org_name: config.org_name.clone(),
            service_instance_id: config.service_instance_id.clone(),
            parallelism: config.parallelism as usize,
            page_size: config.cls_page_size,
            extra_roots,
            proxy: config.https_proxy.clone(),
            no_proxy: config.no_proxy.clone(),
        },
        stats,
    )
}

/// Fetches the org and builds a snapshot; a failed sub-resource is logged
/// here and left out (partial refresh), a failed group listing fails it all.
/// The first refresh that succeeds at once says what it found, at info: the
/// line an operator looks for after starting the exporter (later ones only
/// at debug, from the cache).
fn refresher(client: ClsClient) -> RefreshFn {
    let first = Arc::new(AtomicBool::new(true));
    Arc::new(move |deadline| {
        let client = client.clone();
        let first = first.swap(false, Ordering::Relaxed);
        Box::pin(async move {
            let started = tokio::time::Instant::now();
            let collected_at = crate::clock::unix_now();
            let org = client
                .fetch_org(deadline)
                .await
                .map_err(RefreshError::Cls)?;
            for failure in org.groups.iter().flat_map(|g| &g.failures) {
                tracing::warn!(
                    endpoint = failure.endpoint.label(),
                    "partial refresh, publishing without this part: {failure}"
                );
            }
            let snapshot = Snapshot::build(&org, collected_at);
            if first {
                tracing::info!(
                    duration_seconds = started.elapsed().as_secs_f64(),
                    partial_failures = org.groups.iter().map(|g| g.failures.len()).sum::<usize>(),
                    "first refresh succeeded: {}",
                    Found::new(&org, &snapshot, collected_at)
                );
            }
            Ok(snapshot)
        })
    })
}

/// The `check` subcommand: the files the settings name and the client, as
/// for serving (a bad one is exit 2), then one refresh within SCRAPE_TIMEOUT
/// and its report on stdout; exit 0 when the org was read (parts of it may
/// have failed: the report lists them), 1 when it could not be.
fn check(config: Config, output: CheckOutput) -> ExitCode {
    let stats = Arc::new(ApiStats::default());
    let client = match Files::load(&config)
        .and_then(|files| cls_client(&config, files.extra_roots, stats.clone()))
    {
        Ok(client) => client,
        Err(message) => {
            eprintln!("{NAME}: {message}");
            return ExitCode::from(2);
        }
    };
    install_panic_hook(&config);
    init_logging(config.log_level, config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{NAME}: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let timeout = config.scrape_timeout;
    let (result, elapsed) = runtime.block_on(async {
        let started = tokio::time::Instant::now();
        let deadline = started + timeout;
        let result = match tokio::time::timeout_at(deadline, client.fetch_org(deadline)).await {
            Ok(Ok(org)) => Ok(org),
            Ok(Err(e)) => Err(RefreshError::Cls(e)),
            Err(_) => Err(RefreshError::TimedOut(timeout)),
        };
        (result, started.elapsed())
    });
    let now = crate::clock::unix_now();
    let report = Report {
        org: &config.org_name,
        outcome: match &result {
            Ok(org) => Ok(Found::new(org, &Snapshot::build(org, now), now)),
            Err(e) => Err(e),
        },
        partial_failures: result
            .as_ref()
            .map_or_else(|_| Vec::new(), partial_failures),
        api_calls: stats.request_total(),
        pages: stats.pages(),
        retries: stats.retries(),
        duration_seconds: elapsed.as_secs_f64(),
    };
    match output {
        CheckOutput::Text => print!("{}", report.text()),
        CheckOutput::Json => println!("{}", report.json()),
    }
    if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The listener's bodies for a new status: the refresh part rendered once.
fn renderer(org: String, stats: Arc<ApiStats>) -> RenderFn<Bodies> {
    Arc::new(move |status: &Status| {
        // The families are freed (a statement's temporaries end with it)
        // before the large plain parts move into their memfds, where a part
        // is briefly in both the heap and its memfd.
        let rendered = Rendered::new(&refresh_families(status, &stats), &org);
        Bodies::new(rendered)
    })
}

/// Installs the SIGTERM and SIGINT handlers now and returns a future that
/// resolves on the first of them (the process may be PID 1 in a container,
/// where no default handler would stop it). Called before the "listening"
/// line: a signal sent as soon as that line appears (a supervisor, a test)
/// must shut down cleanly, not end the process by the default action.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            tracing::error!("cannot install signal handlers; stop the process with SIGKILL");
            std::future::pending::<()>().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
            _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
        }
    }
}
