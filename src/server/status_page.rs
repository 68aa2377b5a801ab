//! The status page at `/`: a server-rendered HTML page (no JavaScript, no
//! external assets, so it works air-gapped) with the latest refresh, lease
//! use per server feature as bars, and entitlement expiry dates. Reads the
//! published snapshot only: opening the page never calls CLS. It reloads
//! itself every CACHE_TTL (a meta refresh: still no JavaScript).

use crate::cache::{Attempt, Published, Status};
use crate::clock::{days_until, format_date, format_time, unix_now};
use crate::metrics::live::{DropReason, PushCounts};
use crate::snapshot::Snapshot;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

/// The page of what is published; `reload` is CACHE_TTL, when a new
/// refresh may have something new to show.
pub(crate) fn render<R>(
    published: &Published<R>,
    org: &str,
    metrics_path: &str,
    reload: Duration,
    push: Option<&PushCounts>,
) -> String {
    let status = &published.status;
    let mut page = String::with_capacity(8192);
    let org_html = escape(org);
    // Whole seconds, at least one: a sub-second TTL must not make a browser
    // reload in a loop.
    let reload = reload.as_secs_f64().ceil().max(1.0);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{reload}\">\
         <title>NVIDIA CLS exporter: {org_html}</title>\n<style>{STYLE}</style></head>\n<body>\n\
         <h1>NVIDIA License Server Exporter</h1>\n<p class=\"org\">Org <strong>{org_html}</strong> · \
         <a href=\"{path}\">Metrics</a> · <a href=\"/healthz\">Health</a></p>\n",
        path = escape(metrics_path),
    );
    refresh_section(&mut page, status, published.last_attempt.as_ref());
    if let Some(push) = push {
        push_section(&mut page, push);
    }
    match (&status.snapshot, &published.last_attempt) {
        (Some(snapshot), _) => {
            features_section(&mut page, snapshot);
            entitlements_section(&mut page, snapshot, unix_now());
        }
        (None, None) => {
            let _ = writeln!(
                page,
                "<p class=\"empty\">No data yet: the first refresh is running; this page reloads every {reload} s.</p>",
            );
        }
        (None, Some(_)) => page.push_str(
            "<p class=\"empty\">No data: no refresh has succeeded yet (the reason is above).</p>\n",
        ),
    }
    let _ = write!(
        page,
        "<footer>nvidia-license-server-exporter {}</footer>\n</body></html>\n",
        env!("CARGO_PKG_VERSION")
    );
    page
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1d1d1f;max-width:70rem}\
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:1.6rem}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #ddd;vertical-align:middle}\
th{background:#f4f4f6}.num{text-align:right;font-variant-numeric:tabular-nums}\
.bar{background:#e8e8ec;width:12rem;height:.9rem;border-radius:.2rem;overflow:hidden}\
.fill{height:100%;background:#76b900}.fill.warn{background:#e6a700}.fill.full{background:#d0342c}\
.ok{color:#2e7d32;font-weight:600}.fail{color:#c62828;font-weight:600}.soon{color:#c62828}\
.reason{color:#c62828;overflow-wrap:anywhere}.empty{color:#666}footer{margin-top:2rem;color:#888;font-size:.8rem}";

fn refresh_section(page: &mut String, s: &Status, attempt: Option<&Attempt>) {
    page.push_str("<h2>Latest refresh</h2>\n<table class=\"refresh\">\n");
    let Some(attempt) = attempt else {
        page.push_str("<tr><th>Result</th><td>the first refresh is running</td></tr>\n</table>\n");
        return;
    };
    let result = if s.up {
        "<span class=\"ok\">succeeded</span>"
    } else {
        "<span class=\"fail\">failed</span>"
    };
    let _ = writeln!(
        page,
        "<tr><th>Result</th><td>{result}</td></tr>\n<tr><th>Tried</th><td>{}</td></tr>",
        format_time(attempt.ended_at)
    );
    if let Some(reason) = &attempt.error {
        let _ = writeln!(
            page,
            "<tr><th>Reason</th><td class=\"reason\">{}</td></tr>",
            escape(reason)
        );
    }
    let _ = writeln!(
        page,
        "<tr><th>Duration</th><td>{:.3} s</td></tr>",
        s.duration_seconds
    );
    match &s.snapshot {
        Some(snapshot) => {
            let _ = writeln!(
                page,
                "<tr><th>Data collected</th><td>{}</td></tr>",
                format_time(snapshot.collected_at)
            );
        }
        None => page.push_str("<tr><th>Data collected</th><td>never</td></tr>\n"),
    }
    if let Some(t) = s.last_success {
        let _ = writeln!(
            page,
            "<tr><th>Last success</th><td>{}</td></tr>",
            format_time(t)
        );
    }
    let _ = writeln!(
        page,
        "<tr><th>Refreshes</th><td>{} succeeded, {} failed</td></tr>\n</table>",
        s.successes, s.failures
    );
}

/// The OTLP push: its results and what waits for the collector.
fn push_section(page: &mut String, p: &PushCounts) {
    let b = &p.backlog;
    let last = p
        .last_success
        .map_or_else(|| "never".to_owned(), format_time);
    let oldest = b.oldest.map_or_else(|| "—".to_owned(), format_time);
    let dropped = DropReason::ALL
        .iter()
        .map(|r| format!("{} {}", b.dropped[*r as usize], r.label()))
        .collect::<Vec<_>>()
        .join(", ");
    let waiting = if b.batches > 0 { " class=\"fail\"" } else { "" };
    let _ = writeln!(
        page,
        "<h2>OTLP push</h2>\n<table class=\"push\">\n\
         <tr><th>Last accepted</th><td>{last}</td></tr>\n\
         <tr><th>Requests</th><td>{} succeeded, {} partly, {} failed</td></tr>\n\
         <tr><th>Waiting for the collector</th><td><span{waiting}>{} batches</span>, {} bytes stored, oldest {oldest}</td></tr>\n\
         <tr><th>Dropped undelivered</th><td>{dropped}</td></tr>\n</table>",
        p.success, p.partial, p.failure, b.batches, b.bytes
    );
}

fn features_section(page: &mut String, snapshot: &Snapshot) {
    page.push_str(
        "<h2>Leases per server feature</h2>\n<table class=\"features\">\n<tr><th>Virtual group</th><th>Server</th>\
         <th>Feature</th><th>Leased</th><th class=\"num\">Active / capacity</th></tr>\n",
    );
    if snapshot.server_features.is_empty() {
        page.push_str(
            "<tr><td colspan=\"5\" class=\"empty\">no license server features</td></tr>\n",
        );
    }
    for (key, usage) in &snapshot.server_features {
        let (group, server, feature) = (&key.server.group_name, &key.server.name, &key.feature);
        let capacity = usage.total.unwrap_or(0.0);
        let (percent, class) = if capacity > 0.0 {
            let p = (usage.active_leases / capacity * 100.0).clamp(0.0, 100.0);
            (
                p,
                if p >= 100.0 {
                    "fill full"
                } else if p >= 90.0 {
                    "fill warn"
                } else {
                    "fill"
                },
            )
        } else {
            (
                if usage.active_leases > 0.0 {
                    100.0
                } else {
                    0.0
                },
                "fill full",
            )
        };
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><div class=\"bar\" title=\"{percent:.0}%\">\
             <div class=\"{class}\" style=\"width:{percent:.1}%\"></div></div></td>\
             <td class=\"num\">{} / {}</td></tr>",
            escape(group),
            escape(server),
            escape(feature),
            number(usage.active_leases),
            usage.total.map_or_else(|| "—".to_owned(), number),
        );
    }
    page.push_str("</table>\n");
}

/// An entitlement key without its ems ids: the line of the page it goes to.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct FeatureOf<'a> {
    group_id: &'a str,
    group: &'a str,
    feature: &'a str,
    version: &'a str,
    product: &'a str,
    license_type: &'a str,
}

/// One feature's line: the quantity of its product keys summed, and each
/// key's (entitlement id, product key id, end date).
type FeatureLine<'a> = (f64, Vec<(&'a str, &'a str, Option<f64>)>);

fn entitlements_section(page: &mut String, snapshot: &Snapshot, now: f64) {
    page.push_str(
        "<h2>Entitlements</h2>\n<table class=\"entitlements\">\n<tr><th>Virtual group</th><th>Feature</th>\
         <th>Version</th><th>Product</th><th class=\"num\">Quantity</th><th>Ends</th></tr>\n",
    );
    if snapshot.entitlements.is_empty() {
        page.push_str("<tr><td colspan=\"6\" class=\"empty\">no entitlements</td></tr>\n");
    }
    // One line per feature, summed over its product keys (a renewal or an
    // added key is a row of its own in the metrics); the end date of each
    // key is listed with its ids.
    let mut features: BTreeMap<FeatureOf, FeatureLine> = BTreeMap::new();
    for (key, row) in &snapshot.entitlements {
        let line = features
            .entry(FeatureOf {
                group_id: &key.group_id,
                group: &key.group_name,
                feature: &key.feature,
                version: &key.feature_version,
                product: &key.product,
                license_type: &key.license_type,
            })
            .or_default();
        line.0 += row.total;
        line.1
            .push((&key.ems_entitlement_id, &key.ems_product_key_id, row.end));
    }
    for (
        FeatureOf {
            group,
            feature,
            version,
            product,
            ..
        },
        (total, keys),
    ) in features
    {
        let ends = keys
            .iter()
            .map(|(entitlement, product_key, end)| {
                let ids = escape(&format!("{entitlement} / {product_key}"));
                match end {
                    Some(end) => {
                        let days = days_until(now, *end);
                        let class = if days < 30 { " class=\"soon\"" } else { "" };
                        format!(
                            "<span{class}>{} ({} days)</span> {ids}",
                            format_date(*end),
                            days,
                        )
                    }
                    None => format!("never {ids}"),
                }
            })
            .collect::<Vec<_>>()
            .join("<br>");
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            escape(group),
            escape(feature),
            escape(version),
            escape(product),
            number(total),
            ends
        );
    }
    page.push_str("</table>\n");
}

fn number(v: f64) -> String {
    let mut s = String::new();
    crate::metrics::text::write_value(&mut s, v);
    s
}

pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::days_from_civil;

    #[test]
    fn entitlements_are_one_line_per_feature_with_each_product_keys_end() {
        use crate::snapshot::EntitlementRow;
        let key = |pk: &str| crate::snapshot::EntitlementKey {
            group_id: "1".into(),
            group_name: "g".into(),
            ems_entitlement_id: "ent-1".into(),
            ems_product_key_id: pk.into(),
            feature: "vWS".into(),
            feature_version: "1.0".into(),
            product: "RTX <vWS>".into(),
            license_type: "CONCURRENT".into(),
        };
        let end = days_from_civil(2026, 12, 12).unwrap() as f64 * 86_400.0;
        let mut snapshot = Snapshot::default();
        snapshot.entitlements.insert(
            key("pk-72"),
            EntitlementRow {
                total: 72.0,
                end: Some(end),
                ..EntitlementRow::default()
            },
        );
        snapshot.entitlements.insert(
            key("pk-128"),
            EntitlementRow {
                total: 128.0,
                ..EntitlementRow::default()
            },
        );
        let mut page = String::new();
        entitlements_section(&mut page, &snapshot, end - 10.0 * 86_400.0);
        let rows: Vec<&str> = page.lines().filter(|l| l.starts_with("<tr><td>")).collect();
        assert_eq!(
            rows,
            ["<tr><td>g</td><td>vWS</td><td>1.0</td><td>RTX &lt;vWS&gt;</td><td class=\"num\">200</td>\
              <td>never ent-1 / pk-128<br><span class=\"soon\">2026-12-12 (10 days)</span> ent-1 / pk-72</td></tr>"]
        );
    }

    /// Every text of the page that comes from CLS or the settings is
    /// escaped: hostile names show as text, never as markup.
    #[test]
    fn the_whole_page_escapes_what_cls_and_the_settings_send() {
        use crate::snapshot::{EntitlementRow, FeatureUse, ServerFeatureKey, ServerKey};
        let hostile = |tag: &str| -> crate::snapshot::Label {
            format!("{tag}<script>alert(\"x\")</script>&'").into()
        };
        let server = ServerKey {
            group_id: "1".into(),
            group_name: hostile("group"),
            id: "s1".into(),
            name: hostile("server"),
        };
        let mut snapshot = Snapshot::default();
        snapshot.server_features.insert(
            ServerFeatureKey {
                server,
                feature: hostile("feature"),
                product: "p".into(),
                license_type: "t".into(),
            },
            FeatureUse {
                total: Some(4.0),
                active_leases: 1.0,
                leases_known: true,
            },
        );
        snapshot.entitlements.insert(
            crate::snapshot::EntitlementKey {
                group_name: hostile("egroup"),
                ems_entitlement_id: hostile("ent"),
                ems_product_key_id: hostile("pk"),
                feature: hostile("efeature"),
                feature_version: hostile("version"),
                product: hostile("product"),
                ..Default::default()
            },
            EntitlementRow {
                total: 3.0,
                end: Some(2_000_000_000.0),
                ..EntitlementRow::default()
            },
        );
        let status = Status {
            snapshot: Some(std::sync::Arc::new(snapshot)),
            up: true,
            successes: 1,
            ..Status::default()
        };
        let attempt = Attempt {
            ended_at: 2_000_000_000.0,
            error: None,
        };
        let published = Published::of(status, (), Some(attempt));
        let page = render(
            &published,
            &hostile("org"),
            "/metrics\"><script>",
            Duration::from_secs(60),
            None,
        );
        assert!(!page.contains("<script>"), "{page}");
        assert!(!page.contains("alert(\""), "{page}");
        for tag in [
            "org", "group", "server", "feature", "egroup", "ent", "pk", "efeature", "version",
            "product",
        ] {
            assert!(
                page.contains(&format!(
                    "{tag}&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"
                )),
                "{tag} shown as text: {page}"
            );
        }
        assert!(page.contains("href=\"/metrics&quot;&gt;&lt;script&gt;\""));
    }

    fn day(y: i64, m: u32, d: u32) -> f64 {
        days_from_civil(y, m, d).unwrap() as f64 * 86_400.0
    }

    fn page(status: Status, attempt: Option<Attempt>, ttl: Duration) -> String {
        render(
            &Published::of(status, (), attempt),
            "lic-demo",
            "/metrics",
            ttl,
            None,
        )
    }

    fn page_with_push(push: Option<&PushCounts>, metrics_path: &str) -> String {
        render(
            &Published::of(Status::default(), (), None),
            "o",
            metrics_path,
            Duration::from_secs(60),
            push,
        )
    }

    #[test]
    fn a_failed_refresh_shows_its_reason_and_when_it_was_tried() {
        let status = Status {
            failures: 1,
            duration_seconds: 0.25,
            ..Status::default()
        };
        let attempt = Attempt {
            ended_at: day(2026, 11, 26) + 3661.0,
            error: Some("GET /virtual-groups failed: HTTP 401: the API key was <rejected>".into()),
        };
        let page = page(status, Some(attempt), Duration::from_secs(60));
        let refresh: Vec<&str> = page
            .lines()
            .skip_while(|l| !l.starts_with("<h2>Latest refresh"))
            .take_while(|l| !l.starts_with("</table>"))
            .collect();
        assert_eq!(
            refresh,
            [
                "<h2>Latest refresh</h2>",
                "<table class=\"refresh\">",
                "<tr><th>Result</th><td><span class=\"fail\">failed</span></td></tr>",
                "<tr><th>Tried</th><td>2026-11-26 01:01:01 UTC</td></tr>",
                "<tr><th>Reason</th><td class=\"reason\">GET /virtual-groups failed: HTTP 401: the API key was &lt;rejected&gt;</td></tr>",
                "<tr><th>Duration</th><td>0.250 s</td></tr>",
                "<tr><th>Data collected</th><td>never</td></tr>",
                "<tr><th>Refreshes</th><td>0 succeeded, 1 failed</td></tr>",
            ]
        );
        assert!(page.contains("No data: no refresh has succeeded yet (the reason is above)."));
        assert!(!page.contains("No data yet"), "{page}");
    }

    #[test]
    fn no_data_yet_is_said_only_before_the_first_attempt() {
        let page = page(Status::default(), None, Duration::from_secs(60));
        assert!(page.contains("<tr><th>Result</th><td>the first refresh is running</td></tr>"));
        assert!(page.contains(
            "<p class=\"empty\">No data yet: the first refresh is running; this page reloads every 60 s.</p>"
        ));
        assert!(!page.contains("Reason"));
    }

    #[test]
    fn the_page_reloads_itself_every_cache_ttl_in_whole_seconds() {
        for (ttl, content) in [(60_000, "60"), (500, "1"), (1_500, "2"), (300_000, "300")] {
            let page = page(Status::default(), None, Duration::from_millis(ttl));
            assert!(
                page.contains(&format!(
                    "<meta http-equiv=\"refresh\" content=\"{content}\">"
                )),
                "{ttl} ms: {page}"
            );
        }
    }

    #[test]
    fn an_end_date_shows_the_same_days_whatever_its_time_of_day() {
        use crate::snapshot::{EntitlementKey, EntitlementRow};
        let mut snapshot = Snapshot::default();
        for (pk, end) in [
            ("pk-date", day(2027, 12, 31)),
            ("pk-noon", day(2027, 12, 31) + 43_200.0),
            ("pk-last-second", day(2027, 12, 31) + 86_399.0),
        ] {
            snapshot.entitlements.insert(
                EntitlementKey {
                    ems_product_key_id: pk.into(),
                    ..EntitlementKey::default()
                },
                EntitlementRow {
                    end: Some(end),
                    ..EntitlementRow::default()
                },
            );
        }
        let mut page = String::new();
        // In the afternoon: floor((end - now) / 1 day) said 44 for the
        // first, 45 for the others.
        entitlements_section(&mut page, &snapshot, day(2027, 11, 16) + 15.0 * 3600.0);
        assert_eq!(page.matches("2027-12-31 (45 days)").count(), 3, "{page}");
        let mut page = String::new();
        entitlements_section(&mut page, &snapshot, day(2027, 12, 2) + 60.0);
        assert_eq!(
            page.matches("<span class=\"soon\">2027-12-31 (29 days)</span>")
                .count(),
            3,
            "{page}"
        );
    }

    #[test]
    fn the_push_section_shows_what_waits_and_what_was_dropped() {
        let mut push = PushCounts {
            success: 3,
            failure: 2,
            ..PushCounts::default()
        };
        push.backlog.batches = 4;
        push.backlog.bytes = 1234;
        push.backlog.oldest = Some(days_from_civil(2026, 1, 2).unwrap() as f64 * 86_400.0);
        push.backlog.dropped = [1, 0, 2, 0];
        let page = page_with_push(Some(&push), "/metrics");
        assert!(
            page.contains("<tr><th>Last accepted</th><td>never</td></tr>"),
            "{page}"
        );
        assert!(page.contains("3 succeeded, 0 partly, 2 failed"));
        assert!(page.contains(
            "<span class=\"fail\">4 batches</span>, 1234 bytes stored, oldest 2026-01-02"
        ));
        assert!(page.contains("1 age, 0 size, 2 rejected, 0 corrupt"));
        assert!(!page_with_push(None, "/m").contains("OTLP push"));
    }

    #[test]
    fn html_special_characters_are_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
