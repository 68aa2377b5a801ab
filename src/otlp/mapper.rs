//! Metric families → one OTLP `ExportMetricsServiceRequest` (docs/otlp.md,
//! "The mapping"). Pure: no I/O, no clock; the caller passes the times.
//!
//! Names are the table's names: a counter is declared without `_total`, which
//! is also what the OpenTelemetry Collector's Prometheus receiver makes of a
//! `_total` series. Gauges become Gauges, counters cumulative monotonic Sums
//! starting at the process start. Every value is a double, as in Prometheus.

use crate::metrics::family::{Family, Kind};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

/// What stays the same for every push of this process.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// Resource attributes in order, keys unique.
    pub resource: Vec<(String, String)>,
    /// The constant `org_name` label.
    pub org: String,
    /// Instrumentation scope: this exporter's name and version.
    pub scope_name: &'static str,
    pub scope_version: &'static str,
    /// Start time of the cumulative Sums, unix seconds.
    pub start_time: f64,
}

/// The resource attributes: `service.name`, `service.instance.id` and
/// `service.version` first, then OTEL_RESOURCE_ATTRIBUTES in order. The
/// resolved name and instance id win over the same keys in `extra` (config
/// already folded them in); a `service.version` given there wins over ours.
/// A key repeated in `extra` keeps its last value.
pub(crate) fn resource_attributes(
    service_name: &str,
    service_instance_id: &str,
    service_version: &str,
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vec![
        ("service.name".into(), service_name.into()),
        ("service.instance.id".into(), service_instance_id.into()),
        ("service.version".into(), service_version.into()),
    ];
    for (key, value) in extra {
        if key == "service.name" || key == "service.instance.id" {
            continue;
        }
        match out.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.clone(),
            None => out.push((key.clone(), value.clone())),
        }
    }
    out
}

/// `snapshot` families carry the snapshot time; `live` ones (process figures,
/// push counters) the time they were read.
pub(crate) fn request(
    id: &Identity,
    snapshot: &[Family],
    snapshot_time: f64,
    live: &[Family],
    live_time: f64,
) -> ExportMetricsServiceRequest {
    let start = nanos(id.start_time);
    let metrics = snapshot
        .iter()
        .map(|f| (f, nanos(snapshot_time)))
        .chain(live.iter().map(|f| (f, nanos(live_time))))
        .map(|(family, time)| metric(family, &id.org, start, time))
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: id
                    .resource
                    .iter()
                    .map(|(k, v)| key_value(k, v.clone()))
                    .collect(),
                ..Resource::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: id.scope_name.to_owned(),
                    version: id.scope_version.to_owned(),
                    ..InstrumentationScope::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn metric(family: &Family, org: &str, start: u64, time: u64) -> Metric {
    let desc = family.desc();
    let points = family
        .samples()
        .map(|sample| {
            let org_label = desc
                .org_label
                .then(|| key_value("org_name", org.to_owned()));
            NumberDataPoint {
                attributes: org_label
                    .into_iter()
                    .chain(
                        desc.labels
                            .iter()
                            .zip(sample.labels())
                            .map(|(name, value)| key_value(name, (*value).to_owned())),
                    )
                    .collect(),
                start_time_unix_nano: if desc.kind == Kind::Counter { start } else { 0 },
                time_unix_nano: time,
                value: Some(number_data_point::Value::AsDouble(sample.value())),
                ..NumberDataPoint::default()
            }
        })
        .collect();
    let data = match desc.kind {
        Kind::Gauge => metric::Data::Gauge(Gauge {
            data_points: points,
        }),
        Kind::Counter => metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        }),
    };
    Metric {
        name: desc.name.to_owned(),
        description: desc.help.to_owned(),
        unit: desc.unit.ucum().to_owned(),
        data: Some(data),
        ..Metric::default()
    }
}

fn key_value(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..KeyValue::default()
    }
}

/// Unix seconds → nanoseconds; a time before 1970 (never expected) is 0.
fn nanos(seconds: f64) -> u64 {
    if seconds.is_finite() && seconds > 0.0 {
        // Whole seconds and the fraction apart: 1.7e18 ns is past f64's
        // exact integers.
        let whole = seconds.trunc();
        (whole as u64) * 1_000_000_000 + ((seconds - whole) * 1e9).round() as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::family::{Desc, Unit};

    static QUANTITY: Desc = Desc {
        name: "x_quantity",
        help: "Quantity.",
        kind: Kind::Gauge,
        unit: Unit::Licenses,
        labels: &["feature_name", "server_id"],
        org_label: true,
    };
    static REQUESTS: Desc = Desc {
        name: "x_requests",
        help: "Requests.",
        kind: Kind::Counter,
        unit: Unit::None,
        labels: &["code"],
        org_label: true,
    };
    static RSS: Desc = Desc {
        name: "process_resident_memory_bytes",
        help: "RSS.",
        kind: Kind::Gauge,
        unit: Unit::Bytes,
        labels: &[],
        org_label: false,
    };

    fn id() -> Identity {
        Identity {
            resource: resource_attributes("svc", "pod-1", "1.2.3", &[]),
            org: "lic-demo".into(),
            scope_name: "scope",
            scope_version: "0.1.0",
            start_time: 1_700_000_000.5,
        }
    }

    fn attrs(point: &NumberDataPoint) -> Vec<(String, String)> {
        point
            .attributes
            .iter()
            .map(
                |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => (kv.key.clone(), s.clone()),
                    other => panic!("not a string: {other:?}"),
                },
            )
            .collect()
    }

    #[test]
    fn gauge_counter_and_process_families_map_per_the_contract() {
        let snapshot = vec![
            Family::raw(&QUANTITY, [(vec!["vPC", "s-1"], 20.0)]),
            Family::raw(&REQUESTS, [(vec!["200"], 7.0)]),
        ];
        let live = vec![Family::raw(&RSS, [(vec![], 4096.0)])];
        let req = request(&id(), &snapshot, 1_700_000_100.25, &live, 1_700_000_101.0);
        let rm = &req.resource_metrics[0];
        let scope = &rm.scope_metrics[0];
        assert_eq!(scope.scope.as_ref().unwrap().name, "scope");
        let [quantity, requests, rss] = &scope.metrics[..] else {
            panic!("three metrics")
        };

        assert_eq!(
            (quantity.name.as_str(), quantity.unit.as_str()),
            ("x_quantity", "{license}")
        );
        assert_eq!(quantity.description, "Quantity.");
        let Some(metric::Data::Gauge(g)) = &quantity.data else {
            panic!("gauge")
        };
        let p = &g.data_points[0];
        assert_eq!(
            attrs(p),
            [
                ("org_name".into(), "lic-demo".into()),
                ("feature_name".into(), "vPC".into()),
                ("server_id".into(), "s-1".into())
            ]
        );
        assert_eq!(p.time_unix_nano, 1_700_000_100_250_000_000);
        assert_eq!(p.start_time_unix_nano, 0);
        assert_eq!(p.value, Some(number_data_point::Value::AsDouble(20.0)));

        assert_eq!(
            (requests.name.as_str(), requests.unit.as_str()),
            ("x_requests", "1")
        );
        let Some(metric::Data::Sum(s)) = &requests.data else {
            panic!("sum")
        };
        assert!(s.is_monotonic);
        assert_eq!(
            s.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        assert_eq!(
            s.data_points[0].start_time_unix_nano,
            1_700_000_000_500_000_000
        );
        assert_eq!(
            attrs(&s.data_points[0]),
            [
                ("org_name".into(), "lic-demo".into()),
                ("code".into(), "200".into())
            ]
        );

        assert_eq!(rss.unit, "By");
        let Some(metric::Data::Gauge(g)) = &rss.data else {
            panic!("gauge")
        };
        assert!(g.data_points[0].attributes.is_empty(), "no org_name");
        assert_eq!(g.data_points[0].time_unix_nano, 1_700_000_101_000_000_000);
    }

    #[test]
    fn resource_has_service_identity_then_extra_attributes() {
        let extra = vec![
            ("deployment.environment".to_string(), "prod".to_string()),
            ("service.name".to_string(), "ignored".to_string()),
            ("service.version".to_string(), "9".to_string()),
            ("deployment.environment".to_string(), "staging".to_string()),
        ];
        assert_eq!(
            resource_attributes("svc", "pod-1", "1.2.3", &extra),
            [
                ("service.name".to_string(), "svc".to_string()),
                ("service.instance.id".to_string(), "pod-1".to_string()),
                ("service.version".to_string(), "9".to_string()),
                ("deployment.environment".to_string(), "staging".to_string()),
            ]
        );
    }

    #[test]
    fn times_before_the_epoch_or_not_finite_are_zero() {
        assert_eq!(nanos(-1.0), 0);
        assert_eq!(nanos(f64::NAN), 0);
        assert_eq!(nanos(1.5), 1_500_000_000);
    }
}
