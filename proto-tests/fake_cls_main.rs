//! `fake-cls` example: runs the fake CLS server for demos and manual testing.
//!
//! cargo run --example fake-cls -- [--listen ADDR] [--fixture PATH] [--api-key KEY]
//!     [--latency-ms N] [--generate GROUPS,SERVERS,LEASES] [--demo] [--org NAME]
//!     [--page-base 0|1] [--max-page-size N] [--compressed-leases]
//!     [--leases-all-only] [--leases-plain-only]
//!
//! `--demo` serves the demo org of `scripts/demo` (support/demo_org.rs),
//! dated from today. Leases are served at `/leases/all` (what CLS serves today) and at
//! `/leases`. `--leases-plain-only` plays an older deployment that serves
//! `/leases` alone (`/leases/all` answers 404); `--leases-all-only` one
//! where `/leases` answers 404.

#[path = "support/canned.rs"]
mod canned;
#[path = "support/demo_org.rs"]
mod demo_org;
#[path = "support/fake_cls.rs"]
mod fake_cls;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use fake_cls::{generate_org, FakeCls, Paging};

const USAGE: &str = "usage: fake-cls [--listen ADDR] [--fixture PATH] [--api-key KEY] \
[--latency-ms N] [--generate GROUPS,SERVERS,LEASES] [--demo] [--org NAME] [--page-base 0|1] \
[--max-page-size N] [--compressed-leases] [--leases-all-only] [--leases-plain-only]";

struct Opts {
    listen: SocketAddr,
    fixture: String,
    api_key: String,
    latency_ms: u64,
    generate: Option<(usize, usize, usize)>,
    demo: bool,
    org: Option<String>,
    page_base: Option<u32>,
    max_page_size: Option<usize>,
    compressed_leases: bool,
    leases_all_only: bool,
    leases_plain_only: bool,
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        listen: ([127, 0, 0, 1], 8099).into(),
        fixture: "proto-tests/fixtures/org.json".to_string(),
        api_key: "demo-key".to_string(),
        latency_ms: 0,
        generate: None,
        demo: false,
        org: None,
        page_base: None,
        max_page_size: None,
        compressed_leases: false,
        leases_all_only: false,
        leases_plain_only: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "--listen" => {
                let v = value("--listen")?;
                o.listen = v.parse().map_err(|_| format!("bad --listen {v:?}"))?;
            }
            "--fixture" => o.fixture = value("--fixture")?,
            "--api-key" => o.api_key = value("--api-key")?,
            "--org" => o.org = Some(value("--org")?),
            "--latency-ms" => {
                let v = value("--latency-ms")?;
                o.latency_ms = v.parse().map_err(|_| format!("bad --latency-ms {v:?}"))?;
            }
            "--page-base" => {
                let v = value("--page-base")?;
                o.page_base = Some(v.parse().map_err(|_| format!("bad --page-base {v:?}"))?);
            }
            "--max-page-size" => {
                let v = value("--max-page-size")?;
                o.max_page_size = Some(
                    v.parse()
                        .map_err(|_| format!("bad --max-page-size {v:?}"))?,
                );
            }
            "--generate" => {
                let v = value("--generate")?;
                let n: Vec<usize> = v
                    .split(',')
                    .map(|p| p.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| format!("bad --generate {v:?}"))?;
                match n.as_slice() {
                    [g, s, l] => o.generate = Some((*g, *s, *l)),
                    _ => return Err(format!("--generate wants GROUPS,SERVERS,LEASES, got {v:?}")),
                }
            }
            "--demo" => o.demo = true,
            "--compressed-leases" => o.compressed_leases = true,
            "--leases-all-only" => o.leases_all_only = true,
            "--leases-plain-only" => o.leases_plain_only = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(o)
}

fn load_org(o: &Opts) -> Result<serde_json::Value, String> {
    let mut org = match o.generate {
        Some((g, s, l)) => generate_org(o.org.as_deref().unwrap_or("lic-bench"), g, s, l),
        None if o.demo => demo_org::demo_org(demo_org::today()),
        None => {
            let text = std::fs::read_to_string(&o.fixture)
                .map_err(|e| format!("reading {}: {e}", o.fixture))?;
            serde_json::from_str(&text).map_err(|e| format!("parsing {}: {e}", o.fixture))?
        }
    };
    if let (Some(name), Some(obj)) = (&o.org, org.as_object_mut()) {
        obj.insert("org".into(), serde_json::Value::String(name.clone()));
    }
    Ok(org)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("fake-cls: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let org = match load_org(&o) {
        Ok(org) => org,
        Err(e) => {
            eprintln!("fake-cls: {e}");
            return ExitCode::from(2);
        }
    };
    let fake = match FakeCls::start_on(o.listen, org, &o.api_key).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("fake-cls: cannot listen on {}: {e}", o.listen);
            return ExitCode::from(1);
        }
    };
    fake.set_latency(Duration::from_millis(o.latency_ms));
    fake.set_compressed_leases(o.compressed_leases);
    fake.set_leases_all_only(o.leases_all_only);
    fake.set_leases_plain_only(o.leases_plain_only);
    if o.page_base.is_some() || o.max_page_size.is_some() {
        fake.set_paging(Paging {
            max_page_size: o.max_page_size,
            ..Paging::enabled(o.page_base.unwrap_or(0))
        });
    }
    println!(
        "fake CLS listening on {} org={} api-key={}",
        fake.base_url(),
        fake.org_name(),
        o.api_key
    );
    wait_for_signal().await;
    fake.shutdown();
    ExitCode::SUCCESS
}
