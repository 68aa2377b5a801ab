//! The exporter's text 0.0.4 encoder against the `prometheus-client` and
//! `prometheus` crates on identical data: a synthetic snapshot of 10,000
//! series with 7 to 10 labels, some needing escaping. Prints ns per series
//! (median of several runs), bytes allocated per encode, and a `RESULT`
//! line for benches/RESULTS.md; checks first that every output parses to
//! the same samples, HELP and TYPE lines, and exits non-zero when not.
//!
//! ```text
//! encoder-bench [--smoke | --quick] [--series N] [--runs N] [--budget-ms N]
//! encoder-bench --profile ENCODER [--iters N]   (for valgrind --tool=callgrind)
//! ```

mod alloc;
mod data;
// The protocol tests' strict checker, one file for the three packages that
// check expositions; the benchmark needs only `check`.
#[allow(dead_code)]
#[path = "../../../proto-tests/support/exposition.rs"]
mod exposition;

use nvidia_license_server_exporter::harness::Family;
use nvidia_license_server_exporter::harness::{encode, Format, Prepared};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

struct Args {
    smoke: bool,
    series: usize,
    runs: usize,
    budget: Duration,
    max_iters: u32,
    profile: Option<String>,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        smoke: false,
        series: 10_000,
        runs: 7,
        budget: Duration::from_millis(300),
        max_iters: 200,
        profile: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or(format!("{name} needs a number"))
        };
        match arg.as_str() {
            "--smoke" => args.smoke = true,
            "--quick" => {
                args.runs = 3;
                args.budget = Duration::from_millis(100);
            }
            "--series" => args.series = number("--series")? as usize,
            "--runs" => args.runs = number("--runs")?.max(1) as usize,
            "--budget-ms" => args.budget = Duration::from_millis(number("--budget-ms")?),
            "--iters" => args.max_iters = number("--iters")?.max(1) as u32,
            "--profile" => args.profile = Some(it.next().ok_or("--profile needs an encoder")?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.smoke {
        args.series = 200;
    }
    if args.series < data::SERIES_PER_UNIT {
        return Err(format!(
            "--series must be at least {}",
            data::SERIES_PER_UNIT
        ));
    }
    Ok(args)
}

/// One way of producing the exposition into a reused buffer.
struct Encoder<'a> {
    /// Key in the RESULT line.
    key: &'static str,
    label: &'static str,
    /// Whether its output is checked (the memcpy floor copies ours).
    checked: bool,
    run: Box<dyn FnMut(&mut String) + 'a>,
}

/// The plain `write!` baseline: what an encoder that formats every piece
/// through `fmt` on every render costs.
fn naive_write(out: &mut String, families: &[Family], org: &str) {
    struct Escaped<'a>(&'a str);
    impl std::fmt::Display for Escaped<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            if !self.0.contains(['\\', '"', '\n']) {
                return f.write_str(self.0);
            }
            for c in self.0.chars() {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    '"' => f.write_str("\\\"")?,
                    '\n' => f.write_str("\\n")?,
                    c => f.write_char(c)?,
                }
            }
            Ok(())
        }
    }
    for family in families {
        let d = family.desc();
        let _ = writeln!(out, "# HELP {} {}", d.name, d.help);
        let _ = writeln!(out, "# TYPE {} gauge", d.name);
        for s in family.samples() {
            let _ = write!(out, "{}{{org_name=\"{}\"", d.name, Escaped(org));
            for (name, value) in d.labels.iter().zip(s.labels()) {
                let _ = write!(out, ",{}=\"{}\"", name, Escaped(value));
            }
            let _ = writeln!(out, "}} {}", s.value());
        }
    }
}

fn encoders<'a>(
    families: &'a [Family],
    prepared: &'a Prepared,
    pc: &'a prometheus_client::registry::Registry,
    prom: &'a prometheus::Registry,
    gathered: &'a [prometheus::proto::MetricFamily],
    reference: &'a str,
) -> Vec<Encoder<'a>> {
    vec![
        Encoder {
            key: "ours",
            label: "ours (render; label sets escaped at refresh)",
            checked: true,
            run: Box::new(move |out| prepared.encode(out, Format::Text004)),
        },
        Encoder {
            key: "ours_prepare",
            label: "ours: escaping the label sets (once a refresh)",
            checked: false,
            run: Box::new(move |_| {
                std::hint::black_box(Prepared::new(families, data::ORG));
            }),
        },
        Encoder {
            key: "ours_once",
            label: "ours: escape + render (a one-off encode)",
            checked: true,
            run: Box::new(move |out| encode(out, families, data::ORG, Format::Text004)),
        },
        Encoder {
            key: "prometheus_client",
            label: "prometheus-client 0.26 (prometheus_text::encode)",
            checked: true,
            run: Box::new(move |out| {
                prometheus_client::encoding::prometheus_text::encode(out, pc)
                    .expect("writing to a String cannot fail")
            }),
        },
        Encoder {
            key: "prometheus",
            label: "prometheus 0.14 (TextEncoder, gathered once)",
            checked: true,
            run: Box::new(move |out| {
                prometheus::TextEncoder::new()
                    .encode_utf8(gathered, out)
                    .expect("the gathered families are valid")
            }),
        },
        Encoder {
            key: "prometheus_gather",
            label: "prometheus 0.14 (gather + TextEncoder, per scrape)",
            checked: true,
            run: Box::new(move |out| {
                prometheus::TextEncoder::new()
                    .encode_utf8(&prom.gather(), out)
                    .expect("the gathered families are valid")
            }),
        },
        Encoder {
            key: "naive_write",
            label: "naive write!-based encoder",
            checked: true,
            run: Box::new(move |out| naive_write(out, families, data::ORG)),
        },
        Encoder {
            key: "memcpy",
            label: "memcpy of the output (floor)",
            checked: false,
            run: Box::new(move |out| out.push_str(reference)),
        },
    ]
}

fn render(encoder: &mut Encoder, out: &mut String) {
    out.clear();
    (encoder.run)(out);
}

/// What the outputs must agree on: samples as (name, sorted labels) →
/// value bits, and HELP (unescaped) and TYPE per family. Order and number
/// spelling do not matter (`1` and `1.0` are one value); escaping does.
#[derive(Debug, PartialEq)]
struct Reading {
    samples: BTreeMap<(String, Vec<(String, String)>), u64>,
    families: BTreeMap<String, (Option<String>, Option<String>)>,
}

/// An output through the strict checker, as text 0.0.4.
fn read(text: &str) -> Result<Reading, String> {
    let checked = exposition::check(text, exposition::Flavor::Text004)?;
    let samples = checked
        .samples
        .into_iter()
        .map(|s| {
            let mut labels = s.labels;
            labels.sort();
            ((s.name, labels), s.value.to_bits())
        })
        .collect();
    let families = checked
        .families
        .into_iter()
        .map(|f| (f.name, (f.help, f.kind)))
        .collect();
    Ok(Reading { samples, families })
}

/// What differs between two readings, briefly; None when they agree.
fn difference(a: &Reading, b: &Reading) -> Option<String> {
    if a == b {
        return None;
    }
    let only = |x: &Reading, y: &Reading| {
        x.samples
            .iter()
            .find(|(k, v)| y.samples.get(*k) != Some(v))
            .map(|(k, v)| format!("{k:?} = {}", f64::from_bits(*v)))
    };
    if let Some(s) = only(a, b) {
        return Some(format!("sample {s} not in the other"));
    }
    if let Some(s) = only(b, a) {
        return Some(format!("sample {s} only in the other"));
    }
    let family = a
        .families
        .iter()
        .find(|(k, v)| b.families.get(*k) != Some(v))
        .map_or_else(|| "a family".to_owned(), |(k, _)| k.clone());
    Some(format!("HELP or TYPE of {family} differs"))
}

/// Every checked output against ours.
fn check(
    encoders: &mut [Encoder],
    reference: &str,
    ours: &Reading,
    series: usize,
) -> Result<(), String> {
    if ours.samples.len() != series {
        return Err(format!(
            "ours has {} samples, expected {series}",
            ours.samples.len()
        ));
    }
    let mut out = String::new();
    for encoder in encoders.iter_mut().filter(|e| e.checked) {
        render(encoder, &mut out);
        let parsed = read(&out).map_err(|e| format!("{}: {e}", encoder.label))?;
        if let Some(diff) = difference(ours, &parsed) {
            return Err(format!("{} differs from ours: {diff}", encoder.label));
        }
        println!(
            "ok  {:<52} {} samples, {} bytes",
            encoder.label,
            parsed.samples.len(),
            out.len()
        );
    }
    // The check itself must see a difference: one value changed.
    let tampered = tamper(reference);
    let parsed = read(&tampered).map_err(|e| format!("tampered: {e}"))?;
    if difference(ours, &parsed).is_none() {
        return Err("the check did not see a changed value".into());
    }
    Ok(())
}

/// `text` with the value of its last sample changed (`v` becomes `v1`).
fn tamper(text: &str) -> String {
    let mut out = text.trim_end_matches('\n').to_owned();
    out.push_str("1\n");
    out
}

/// Nanoseconds per series of one run: as many renders as fit in the budget.
fn time(encoder: &mut Encoder, out: &mut String, series: usize, args: &Args) -> f64 {
    render(encoder, out); // warm: buffer capacity, caches
    let start = Instant::now();
    let mut iters = 0u32;
    while iters < args.max_iters && (iters == 0 || start.elapsed() < args.budget) {
        render(encoder, out);
        iters += 1;
    }
    start.elapsed().as_nanos() as f64 / f64::from(iters) / series as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("encoder-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args = args()?;
    let status = data::status(data::snapshot(args.series / data::SERIES_PER_UNIT));
    let families = data::families(&status);
    let series = data::series(&families);
    let pc = data::prometheus_client_registry(&families);
    let prom = data::prometheus_registry(&families);
    let gathered = prom.gather();

    let mut reference = String::new();
    encode(&mut reference, &families, data::ORG, Format::Text004);
    let ours = read(&reference).map_err(|e| format!("ours: {e}"))?;
    let prepared = Prepared::new(&families, data::ORG);
    let mut encoders = encoders(&families, &prepared, &pc, &prom, &gathered, &reference);

    if let Some(name) = &args.profile {
        let encoder = encoders
            .iter_mut()
            .find(|e| e.key == name)
            .ok_or(format!("no encoder {name:?}"))?;
        let mut out = String::new();
        for _ in 0..args.max_iters {
            render(encoder, &mut out);
        }
        println!(
            "{} renders of {series} series by {}",
            args.max_iters, encoder.label
        );
        return Ok(());
    }

    println!(
        "{series} series in {} families, {} bytes of exposition",
        families.len(),
        reference.len()
    );
    check(&mut encoders, &reference, &ours, series)?;
    if args.smoke {
        println!("smoke: all outputs parse to the same {series} samples");
        return Ok(());
    }

    let mut out = String::new();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); encoders.len()];
    // Runs interleave the encoders, so a busy moment on the shared machine
    // falls on all of them rather than on one.
    for _ in 0..args.runs {
        for (encoder, t) in encoders.iter_mut().zip(&mut times) {
            t.push(time(encoder, &mut out, series, &args));
        }
    }
    let mut rows = Vec::new();
    for (encoder, t) in encoders.iter_mut().zip(times) {
        render(encoder, &mut out); // the buffer is large enough: count the encoder only
        let (bytes, calls) = alloc::measure(|| render(encoder, &mut out));
        rows.push((encoder.key, encoder.label, median(t), bytes, calls));
    }
    let ours_ns = rows[0].2;
    println!(
        "\n{:<52} {:>10} {:>9} {:>14} {:>8}",
        "encoder (median of runs)", "ns/series", "× ours", "bytes alloc", "allocs"
    );
    for (_, label, ns, bytes, calls) in &rows {
        println!(
            "{label:<52} {ns:>10.1} {:>9.2} {bytes:>14} {calls:>8}",
            ns / ours_ns
        );
    }
    let fastest_alternative = rows
        .iter()
        .filter(|r| r.0 == "prometheus_client" || r.0 == "prometheus")
        .map(|r| r.2)
        .fold(f64::INFINITY, f64::min);
    println!(
        "\nours is {:.2}× faster than the faster alternative (target: 3×)",
        fastest_alternative / ours_ns
    );
    // One line for benches/all.py: `_ns_per_series` only for ours and the
    // two crates (it compares those), the baselines under other names.
    let mut line = format!("RESULT encoder series={series} runs={}", args.runs);
    for (key, _, ns, bytes, _) in &rows {
        match *key {
            "naive_write" | "memcpy" => {
                let _ = write!(line, " {key}_ns={ns:.1}");
            }
            _ => {
                let _ = write!(line, " {key}_ns_per_series={ns:.1} {key}_bytes={bytes}");
            }
        }
    }
    let speedup = fastest_alternative / ours_ns;
    let _ = write!(
        line,
        " speedup_vs_faster_alternative={speedup:.2} target=3 met={}",
        if speedup >= 3.0 { "yes" } else { "no" }
    );
    println!("{line}");
    Ok(())
}
