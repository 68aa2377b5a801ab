//! The vocabulary of the metric table: a family's declaration (`Desc`), the
//! label set its samples carry (`Labels`), and the samples themselves.
//!
//! A family is declared as a `Metric<K, N>`: its label names are `K`'s, and
//! its samples can only be made from `K`s, so a sample always has the
//! family's labels, in the family's order. A key with a label too many or
//! too few does not compile (`N` is both the names' and the values' count).

use std::marker::PhantomData;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

/// The unit of a family: OpenMetrics `# UNIT` for seconds and bytes (whose
/// names end in the unit); the OTLP mapping uses all of them, in UCUM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    Bytes,
    Licenses,
    Leases,
    None,
}

impl Unit {
    /// The OpenMetrics unit, when the family's name carries it.
    pub fn openmetrics(self) -> Option<&'static str> {
        match self {
            Unit::Seconds => Some("seconds"),
            Unit::Bytes => Some("bytes"),
            _ => None,
        }
    }

    /// The UCUM unit of the OTLP mapping.
    pub fn ucum(self) -> &'static str {
        match self {
            Unit::Seconds => "s",
            Unit::Bytes => "By",
            Unit::Licenses => "{license}",
            Unit::Leases => "{lease}",
            Unit::None => "1",
        }
    }
}

/// What the encoders need to know of a family. Counter names are declared
/// without `_total`; each encoder adds it where its format wants it.
#[derive(Debug)]
pub struct Desc {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub unit: Unit,
    /// Labels after the constant `org_name`.
    pub labels: &'static [&'static str],
    /// False only for the standard `process_*` families.
    pub org_label: bool,
}

/// A label set: the label names of the families it keys (after `org_name`)
/// and, for one key, the values of those labels in the same order. Names
/// and values of a key are written side by side in its one `impl`.
pub trait Labels<const N: usize> {
    const NAMES: &'static [&'static str; N];
    fn values(&self) -> [&str; N];
}

/// The label set of families with `org_name` only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct NoLabels;

impl Labels<0> for NoLabels {
    const NAMES: &'static [&'static str; 0] = &[];
    fn values(&self) -> [&str; 0] {
        []
    }
}

/// A family of the table, keyed by `K`.
pub struct Metric<K, const N: usize> {
    pub desc: Desc,
    key: PhantomData<fn(&K)>,
}

impl<K: Labels<N>, const N: usize> Metric<K, N> {
    /// A family with the constant `org_name` label first.
    pub const fn new(name: &'static str, kind: Kind, unit: Unit, help: &'static str) -> Self {
        Metric {
            desc: Desc {
                name,
                help,
                kind,
                unit,
                labels: K::NAMES,
                org_label: true,
            },
            key: PhantomData,
        }
    }

    /// A family without `org_name`: the standard `process_*` ones.
    pub const fn standard(name: &'static str, kind: Kind, unit: Unit, help: &'static str) -> Self {
        let mut metric = Metric::new(name, kind, unit, help);
        metric.desc.org_label = false;
        metric
    }

    /// The family with one sample per key and value.
    pub fn family<'a>(&'static self, rows: impl IntoIterator<Item = (&'a K, f64)>) -> Family
    where
        K: 'a,
    {
        Family {
            desc: &self.desc,
            samples: rows
                .into_iter()
                .map(|(key, value)| Sample {
                    labels: key.values().map(str::to_owned).to_vec(),
                    value,
                })
                .collect(),
        }
    }
}

impl<K, const N: usize> Metric<K, N> {
    /// The family with one sample per row of label values, in label order:
    /// as many values as the family has labels, but any text. For the fuzz
    /// targets, which put arbitrary strings in every label; the exporter
    /// makes its families from keys (`family`).
    pub fn family_of_values(
        &'static self,
        rows: impl IntoIterator<Item = ([String; N], f64)>,
    ) -> Family {
        Family {
            desc: &self.desc,
            samples: rows
                .into_iter()
                .map(|(labels, value)| Sample {
                    labels: labels.to_vec(),
                    value,
                })
                .collect(),
        }
    }
}

impl Metric<NoLabels, 0> {
    /// The family of one sample.
    pub fn one(&'static self, value: f64) -> Family {
        self.family([(&NoLabels, value)])
    }
}

/// A family's samples, made only through its `Metric`.
#[derive(Debug, Clone)]
pub struct Family {
    desc: &'static Desc,
    samples: Vec<Sample>,
}

impl Family {
    pub fn desc(&self) -> &'static Desc {
        self.desc
    }

    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }
}

#[cfg(test)]
impl Family {
    /// Any samples under any declaration, for the encoders' own tests
    /// (the table's families are made through their `Metric`).
    pub(crate) fn raw(
        desc: &'static Desc,
        samples: impl IntoIterator<Item = (Vec<String>, f64)>,
    ) -> Family {
        Family {
            desc,
            samples: samples
                .into_iter()
                .map(|(labels, value)| Sample { labels, value })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    labels: Vec<String>,
    value: f64,
}

impl Sample {
    /// Values in the order of `Desc::labels`, already normalised.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    pub fn value(&self) -> f64 {
        self.value
    }
}
