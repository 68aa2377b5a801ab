//! The label sets of the snapshot's rows, one named struct per kind of row.
//! Values are normalised when a key is made (`label`): trimmed, `unknown`
//! when blank, so two API rows that differ only in white space meet in one
//! row. The field order is the label order (and so the sort order of the
//! exposition); the metric table pairs each field with its label name.

/// A label value as exported: trimmed, `unknown` when empty.
pub(crate) fn label(value: &str) -> String {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        "unknown".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// One entitlement row: a feature of one product key of one entitlement.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct EntitlementKey {
    pub group_id: String,
    pub group_name: String,
    /// The entitlement's `emsEntitlementId`.
    pub ems_entitlement_id: String,
    /// The product key's `emsProductKeyId`.
    pub ems_product_key_id: String,
    pub feature: String,
    pub feature_version: String,
    pub product: String,
    pub license_type: String,
}

/// A license server, as every one of its rows names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerKey {
    pub group_id: String,
    pub group_name: String,
    pub id: String,
    pub name: String,
}

/// A license server with its descriptive fields (the info row).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerInfoKey {
    pub server: ServerKey,
    pub status: String,
    pub deployed_on: String,
    pub leasing_mode: String,
}

/// A feature of a license server: capacity and leases.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerFeatureKey {
    pub server: ServerKey,
    pub feature: String,
    pub product: String,
    pub license_type: String,
}

/// A server feature's share in one license pool.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct PoolFeatureKey {
    pub server: ServerKey,
    pub pool_id: String,
    pub pool_name: String,
    pub feature: String,
    pub product: String,
    pub license_type: String,
}

impl ServerKey {
    /// A feature of this server; the texts are normalised here.
    pub fn feature(&self, feature: &str, product: &str, license_type: &str) -> ServerFeatureKey {
        ServerFeatureKey {
            server: self.clone(),
            feature: label(feature),
            product: label(product),
            license_type: label(license_type),
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
        let a = server("s1", "z").feature("b", "p", "t");
        let b = server("s2", "a").feature("a", "p", "t");
        let c = server("s2", "a").feature("b", "p", "t");
        assert!(a < b && b < c);
    }
}
