//! The label sets of the snapshot's rows, one named struct per kind of row.
//! Values are normalised when a key is made (`label`): trimmed, `unknown`
//! when blank, so two API rows that differ only in white space meet in one
//! row. The field order is the label order (and so the sort order of the
//! exposition); the metric table pairs each field with its label name.
//!
//! A snapshot is built with keys that borrow the API's text (`Key<&str>`)
//! and frozen into keys of `Label`s: every distinct value of the snapshot
//! written once into one shared text. The snapshot outlives its refresh;
//! as thousands of small strings made among the refresh's garbage, its
//! values pinned pages all over glibc's heap, which then grew by about
//! half a MiB a refresh on a large org.

use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// A label value as exported: trimmed, `unknown` when empty.
pub(crate) fn label(value: &str) -> &str {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        "unknown"
    } else {
        trimmed
    }
}

/// A label value of a frozen snapshot: a range of its one text.
#[derive(Clone)]
pub struct Label {
    text: Arc<String>,
    start: u32,
    end: u32,
}

impl Deref for Label {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text[self.start as usize..self.end as usize]
    }
}

impl From<&str> for Label {
    /// A value with a text of its own (tests, benchmarks).
    fn from(value: &str) -> Label {
        Label::from(value.to_owned())
    }
}

impl From<String> for Label {
    fn from(value: String) -> Label {
        // No label comes near 4 GiB: the answers it is read from are capped
        // far below.
        let end = u32::try_from(value.len()).unwrap_or(u32::MAX);
        Label {
            text: Arc::new(value),
            start: 0,
            end,
        }
    }
}

impl Default for Label {
    fn default() -> Label {
        Label::from(String::new())
    }
}

impl PartialEq for Label {
    fn eq(&self, other: &Label) -> bool {
        **self == **other
    }
}
impl Eq for Label {}
impl PartialOrd for Label {
    fn partial_cmp(&self, other: &Label) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Label {
    fn cmp(&self, other: &Label) -> std::cmp::Ordering {
        (**self).cmp(&**other)
    }
}
impl std::hash::Hash for Label {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (**self).hash(state);
    }
}
impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

/// The distinct values of a snapshot being built, in the order first seen.
#[derive(Debug, Default)]
pub(crate) struct Texts<'a> {
    ranges: HashMap<&'a str, (u32, u32)>,
    text: String,
}

impl<'a> Texts<'a> {
    /// The normalised value of `value`, recorded for the frozen text.
    pub(crate) fn label(&mut self, value: &'a str) -> &'a str {
        let value = label(value);
        if !self.ranges.contains_key(value) {
            let start = self.text.len();
            self.text.push_str(value);
            let range = (offset(start), offset(self.text.len()));
            self.ranges.insert(value, range);
        }
        value
    }

    /// The one text every label of the snapshot shares.
    pub(crate) fn freeze(mut self) -> Frozen<'a> {
        self.text.shrink_to_fit();
        Frozen {
            ranges: self.ranges,
            text: Arc::new(self.text),
        }
    }
}

fn offset(at: usize) -> u32 {
    u32::try_from(at).unwrap_or(u32::MAX)
}

/// The shared text, and where each value is in it.
pub(crate) struct Frozen<'a> {
    ranges: HashMap<&'a str, (u32, u32)>,
    text: Arc<String>,
}

impl Frozen<'_> {
    fn label(&self, value: &str) -> Label {
        match self.ranges.get(value) {
            Some(&(start, end)) => Label {
                text: self.text.clone(),
                start,
                end,
            },
            // Every value of a key went through `Texts::label`.
            None => Label::from(value),
        }
    }
}

/// One entitlement row: a feature of one product key of one entitlement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct EntitlementKey<L = Label> {
    pub group_id: L,
    pub group_name: L,
    /// The entitlement's `emsEntitlementId`.
    pub ems_entitlement_id: L,
    /// The product key's `emsProductKeyId`.
    pub ems_product_key_id: L,
    pub feature: L,
    pub feature_version: L,
    pub product: L,
    pub license_type: L,
}

/// A license server, as every one of its rows names it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerKey<L = Label> {
    pub group_id: L,
    pub group_name: L,
    pub id: L,
    pub name: L,
}

/// A license server with its descriptive fields (the info row).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerInfoKey<L = Label> {
    pub server: ServerKey<L>,
    pub status: L,
    pub deployed_on: L,
    pub leasing_mode: L,
}

/// A feature of a license server: capacity and leases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerFeatureKey<L = Label> {
    pub server: ServerKey<L>,
    pub feature: L,
    pub product: L,
    pub license_type: L,
}

/// A server feature's share in one license pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct PoolFeatureKey<L = Label> {
    pub server: ServerKey<L>,
    pub pool_id: L,
    pub pool_name: L,
    pub feature: L,
    pub product: L,
    pub license_type: L,
}

impl ServerKey<&str> {
    pub(crate) fn freeze(&self, text: &Frozen<'_>) -> ServerKey {
        ServerKey {
            group_id: text.label(self.group_id),
            group_name: text.label(self.group_name),
            id: text.label(self.id),
            name: text.label(self.name),
        }
    }
}

impl EntitlementKey<&str> {
    pub(crate) fn freeze(&self, text: &Frozen<'_>) -> EntitlementKey {
        EntitlementKey {
            group_id: text.label(self.group_id),
            group_name: text.label(self.group_name),
            ems_entitlement_id: text.label(self.ems_entitlement_id),
            ems_product_key_id: text.label(self.ems_product_key_id),
            feature: text.label(self.feature),
            feature_version: text.label(self.feature_version),
            product: text.label(self.product),
            license_type: text.label(self.license_type),
        }
    }
}

impl ServerInfoKey<&str> {
    pub(crate) fn freeze(&self, text: &Frozen<'_>) -> ServerInfoKey {
        ServerInfoKey {
            server: self.server.freeze(text),
            status: text.label(self.status),
            deployed_on: text.label(self.deployed_on),
            leasing_mode: text.label(self.leasing_mode),
        }
    }
}

impl ServerFeatureKey<&str> {
    pub(crate) fn freeze(&self, text: &Frozen<'_>) -> ServerFeatureKey {
        ServerFeatureKey {
            server: self.server.freeze(text),
            feature: text.label(self.feature),
            product: text.label(self.product),
            license_type: text.label(self.license_type),
        }
    }
}

impl PoolFeatureKey<&str> {
    pub(crate) fn freeze(&self, text: &Frozen<'_>) -> PoolFeatureKey {
        PoolFeatureKey {
            server: self.server.freeze(text),
            pool_id: text.label(self.pool_id),
            pool_name: text.label(self.pool_name),
            feature: text.label(self.feature),
            product: text.label(self.product),
            license_type: text.label(self.license_type),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_trimmed_and_empty_becomes_unknown() {
        assert_eq!(label("  a b "), "a b");
        assert_eq!(label(" \t\n"), "unknown");
        assert_eq!(label(""), "unknown");
    }

    #[test]
    fn a_snapshot_writes_each_value_once_into_one_text() {
        let mut texts = Texts::default();
        let key = ServerKey {
            group_id: texts.label(" zrh "),
            group_name: texts.label("zrh"),
            id: texts.label(" "),
            name: texts.label("Zürich"),
        };
        assert_eq!(texts.text, "zrhunknownZürich");
        let frozen = texts.freeze();
        let key = key.freeze(&frozen);
        assert_eq!(
            [&*key.group_id, &*key.group_name, &*key.id, &*key.name],
            ["zrh", "zrh", "unknown", "Zürich"]
        );
        assert!(Arc::ptr_eq(&key.group_id.text, &key.name.text));
        assert_eq!(
            key,
            ServerKey {
                group_id: "zrh".into(),
                group_name: "zrh".into(),
                id: "unknown".into(),
                name: "Zürich".into(),
            }
        );
    }

    /// The exposition is sorted by key: a nested server key must sort as
    /// its fields would, written out flat, in label order; and a frozen
    /// key as the text it was built from (the rows are frozen in order).
    #[test]
    fn keys_sort_by_their_fields_in_label_order() {
        let server = |id, name| ServerKey {
            group_id: "1",
            group_name: "g",
            id,
            name,
        };
        let feature = |server, feature| ServerFeatureKey {
            server,
            feature,
            product: "p",
            license_type: "t",
        };
        let a = feature(server("s1", "z"), "b");
        let b = feature(server("s2", "a"), "a");
        let c = feature(server("s2", "a"), "b");
        assert!(a < b && b < c);
        let frozen = |k: &ServerFeatureKey<&str>| ServerFeatureKey {
            server: ServerKey {
                group_id: k.server.group_id.into(),
                group_name: k.server.group_name.into(),
                id: k.server.id.into(),
                name: k.server.name.into(),
            },
            feature: Label::from(k.feature),
            product: k.product.into(),
            license_type: k.license_type.into(),
        };
        assert!(frozen(&a) < frozen(&b) && frozen(&b) < frozen(&c));
        assert!(Label::from("a b") < Label::from("a c") && Label::from("") < Label::from("a"));
    }
}
