//! The label sets of the snapshot's rows, one named struct per kind of row.
//! Values are normalised when a key is made (`Interner::label`): trimmed,
//! `unknown` when blank, so two API rows that differ only in white space
//! meet in one row. The field order is the label order (and so the sort
//! order of the exposition); the metric table pairs each field with its
//! label name.
//!
//! A value is shared text: the same group, server or feature name in a
//! hundred rows is one allocation (a large org's snapshot held 100,000
//! small strings, most of them copies, and their churn fragmented the heap).

use std::collections::HashSet;
use std::sync::Arc;

/// A label value, shared by every key that shows it.
pub(crate) type Label = Arc<str>;

/// A label value as exported: trimmed, `unknown` when empty.
pub(crate) fn label(value: &str) -> &str {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        "unknown"
    } else {
        trimmed
    }
}

/// Makes each distinct label value of a snapshot once.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    values: HashSet<Label>,
}

impl Interner {
    /// The normalised value of `text`, shared with every other key that has it.
    pub(crate) fn label(&mut self, text: &str) -> Label {
        let value = label(text);
        if let Some(shared) = self.values.get(value) {
            return shared.clone();
        }
        let shared: Label = value.into();
        self.values.insert(shared.clone());
        shared
    }

    /// A feature of `server`; the texts are normalised here.
    pub(crate) fn feature(
        &mut self,
        server: &ServerKey,
        feature: &str,
        product: &str,
        license_type: &str,
    ) -> ServerFeatureKey {
        ServerFeatureKey {
            server: server.clone(),
            feature: self.label(feature),
            product: self.label(product),
            license_type: self.label(license_type),
        }
    }
}

/// One entitlement row: a feature of one product key of one entitlement.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct EntitlementKey {
    pub group_id: Label,
    pub group_name: Label,
    /// The entitlement's `emsEntitlementId`.
    pub ems_entitlement_id: Label,
    /// The product key's `emsProductKeyId`.
    pub ems_product_key_id: Label,
    pub feature: Label,
    pub feature_version: Label,
    pub product: Label,
    pub license_type: Label,
}

/// A license server, as every one of its rows names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerKey {
    pub group_id: Label,
    pub group_name: Label,
    pub id: Label,
    pub name: Label,
}

/// A license server with its descriptive fields (the info row).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerInfoKey {
    pub server: ServerKey,
    pub status: Label,
    pub deployed_on: Label,
    pub leasing_mode: Label,
}

/// A feature of a license server: capacity and leases.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerFeatureKey {
    pub server: ServerKey,
    pub feature: Label,
    pub product: Label,
    pub license_type: Label,
}

/// A server feature's share in one license pool.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct PoolFeatureKey {
    pub server: ServerKey,
    pub pool_id: Label,
    pub pool_name: Label,
    pub feature: Label,
    pub product: Label,
    pub license_type: Label,
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
    fn a_value_is_made_once() {
        let mut interner = Interner::default();
        let (a, b) = (interner.label(" zrh "), interner.label("zrh"));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*a, "zrh");
        assert_eq!(&*interner.label(" "), "unknown");
    }

    /// The exposition is sorted by key: a nested server key must sort as
    /// its fields would, written out flat, in label order.
    #[test]
    fn keys_sort_by_their_fields_in_label_order() {
        let server = |id: &str, name: &str| ServerKey {
            group_id: "1".into(),
            group_name: "g".into(),
            id: id.into(),
            name: name.into(),
        };
        let mut i = Interner::default();
        let a = i.feature(&server("s1", "z"), "b", "p", "t");
        let b = i.feature(&server("s2", "a"), "a", "p", "t");
        let c = i.feature(&server("s2", "a"), "b", "p", "t");
        assert!(a < b && b < c);
    }
}
