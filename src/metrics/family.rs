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

    /// The family with one sample per key and value; its label values are
    /// borrowed from the keys.
    pub fn family<'a>(&'static self, rows: impl IntoIterator<Item = (&'a K, f64)>) -> Family<'a>
    where
        K: 'a,
    {
        let mut family = Family::empty(&self.desc);
        for (key, value) in rows {
            family.labels.extend(key.values());
            family.values.push(value);
        }
        family
    }

    /// The family of keys whose label values live for ever (counters by
    /// result, endpoint or code), which need not outlive the call.
    pub fn family_of(&'static self, rows: impl IntoIterator<Item = (K, f64)>) -> Family<'static>
    where
        K: StaticLabels<N>,
    {
        let mut family = Family::empty(&self.desc);
        for (key, value) in rows {
            family.labels.extend(key.static_values());
            family.values.push(value);
        }
        family
    }
}

/// A label set whose values are `'static` text.
pub trait StaticLabels<const N: usize>: Labels<N> {
    fn static_values(&self) -> [&'static str; N];
}

impl StaticLabels<0> for NoLabels {
    fn static_values(&self) -> [&'static str; 0] {
        []
    }
}

impl<K, const N: usize> Metric<K, N> {
    /// The family with one sample per row of label values, in label order:
    /// as many values as the family has labels, but any text. For the fuzz
    /// targets, which put arbitrary strings in every label; the exporter
    /// makes its families from keys (`family`).
    pub fn family_of_values<'a>(
        &'static self,
        rows: impl IntoIterator<Item = ([&'a str; N], f64)>,
    ) -> Family<'a> {
        let mut family = Family::empty(&self.desc);
        for (labels, value) in rows {
            family.labels.extend(labels);
            family.values.push(value);
        }
        family
    }
}

impl Metric<NoLabels, 0> {
    /// The family of one sample.
    pub fn one(&'static self, value: f64) -> Family<'static> {
        self.family_of([(NoLabels, value)])
    }
}

/// A family's samples, made only through its `Metric`: the label values of
/// every sample end to end (as many a sample as the family has labels),
/// borrowed from the keys they came from, and the values.
#[derive(Debug, Clone)]
pub struct Family<'a> {
    desc: &'static Desc,
    labels: Vec<&'a str>,
    values: Vec<f64>,
}

/// One sample of a family.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample<'f, 'a> {
    labels: &'f [&'a str],
    value: f64,
}

impl<'a> Family<'a> {
    fn empty(desc: &'static Desc) -> Family<'a> {
        Family {
            desc,
            labels: Vec::new(),
            values: Vec::new(),
        }
    }

    pub fn desc(&self) -> &'static Desc {
        self.desc
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn samples(&self) -> impl ExactSizeIterator<Item = Sample<'_, 'a>> + '_ {
        let width = self.desc.labels.len();
        self.values
            .iter()
            .enumerate()
            .map(move |(i, &value)| Sample {
                labels: &self.labels[i * width..(i + 1) * width],
                value,
            })
    }
}

#[cfg(test)]
impl<'a> Family<'a> {
    /// Any samples under any declaration, for the encoders' own tests (the
    /// table's families are made through their `Metric`). Each sample must
    /// have a value for every label of `desc`.
    pub(crate) fn raw(
        desc: &'static Desc,
        samples: impl IntoIterator<Item = (Vec<&'a str>, f64)>,
    ) -> Family<'a> {
        let mut family = Family::empty(desc);
        for (labels, value) in samples {
            assert_eq!(labels.len(), desc.labels.len(), "{}", desc.name);
            family.labels.extend(labels);
            family.values.push(value);
        }
        family
    }
}

impl<'f, 'a> Sample<'f, 'a> {
    /// Values in the order of `Desc::labels`, already normalised.
    pub fn labels(&self) -> &'f [&'a str] {
        self.labels
    }

    pub fn value(&self) -> f64 {
        self.value
    }
}
