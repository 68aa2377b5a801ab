//! Serde types for CLS API answers, tolerant of missing fields, unknown fields,
//! numbers sent as strings, nulls and wrongly typed values.
//!
//! The API's schema is only partly documented (docs/cls.md), so every field
//! defaults to its zero value instead of failing the whole answer: a strange
//! field must not cost the operator every other series. The one exception is
//! the list an answer exists to carry (`virtualGroups`, `licenseServers`, …):
//! missing or null it is empty, but of another type the answer is not one we
//! can read, and taking it for "none" would publish an empty org as a success.

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::marker::PhantomData;

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct VirtualGroupsPage {
    #[serde(deserialize_with = "virtual_groups")]
    pub virtual_groups: Vec<VirtualGroup>,
    pub pagination_info: Option<serde_json::Value>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct VirtualGroup {
    #[serde(deserialize_with = "text")]
    pub id: String,
    #[serde(deserialize_with = "text")]
    pub name: String,
    #[serde(deserialize_with = "objects")]
    pub entitlements: Vec<Entitlement>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Entitlement {
    #[serde(deserialize_with = "text")]
    pub id: String,
    #[serde(deserialize_with = "text")]
    pub ems_entitlement_id: String,
    #[serde(deserialize_with = "objects")]
    pub entitlement_product_keys: Vec<ProductKey>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProductKey {
    #[serde(deserialize_with = "text")]
    pub ems_product_key_id: String,
    #[serde(deserialize_with = "objects")]
    pub entitlement_features: Vec<EntitlementFeature>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EntitlementFeature {
    #[serde(deserialize_with = "text")]
    pub feature_name: String,
    #[serde(deserialize_with = "text")]
    pub feature_version: String,
    #[serde(deserialize_with = "text")]
    pub product_name: String,
    #[serde(deserialize_with = "text")]
    pub license_type: String,
    #[serde(deserialize_with = "text")]
    pub start_date: String,
    #[serde(deserialize_with = "text")]
    pub end_date: String,
    #[serde(deserialize_with = "number")]
    pub total_quantity: f64,
    #[serde(deserialize_with = "number")]
    pub in_use_quantity: f64,
    #[serde(deserialize_with = "number")]
    pub unassigned_quantity: f64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LicenseServersPage {
    #[serde(deserialize_with = "license_servers")]
    pub license_servers: Vec<LicenseServer>,
    pub pagination_info: Option<serde_json::Value>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LicenseServer {
    #[serde(deserialize_with = "text")]
    pub id: String,
    #[serde(deserialize_with = "text")]
    pub name: String,
    #[serde(deserialize_with = "text")]
    pub status: String,
    #[serde(deserialize_with = "text")]
    pub virtual_group_id: String,
    #[serde(deserialize_with = "text")]
    pub virtual_group_name: String,
    #[serde(deserialize_with = "text")]
    pub deployed_on: String,
    #[serde(deserialize_with = "text")]
    pub leasing_mode: String,
    #[serde(deserialize_with = "text")]
    pub service_instance_id: String,
    #[serde(deserialize_with = "objects")]
    pub license_server_features: Vec<ServerFeature>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ServerFeature {
    #[serde(deserialize_with = "text")]
    pub id: String,
    #[serde(deserialize_with = "text")]
    pub feature_name: String,
    #[serde(deserialize_with = "text")]
    pub product_name: String,
    #[serde(deserialize_with = "text")]
    pub license_type: String,
    #[serde(deserialize_with = "number")]
    pub total_quantity: f64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LicensePoolsPage {
    #[serde(deserialize_with = "license_pools")]
    pub license_pools: Vec<LicensePool>,
    pub pagination_info: Option<serde_json::Value>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LicensePool {
    #[serde(deserialize_with = "text")]
    pub id: String,
    #[serde(deserialize_with = "text")]
    pub name: String,
    #[serde(deserialize_with = "objects")]
    pub license_pool_features: Vec<PoolFeature>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PoolFeature {
    #[serde(deserialize_with = "text")]
    pub license_server_feature_id: String,
    #[serde(deserialize_with = "number")]
    pub total_allotment: f64,
    #[serde(deserialize_with = "number")]
    pub in_use: f64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LeasesPage {
    #[serde(deserialize_with = "clients")]
    pub clients: Vec<LeaseClient>,
    #[serde(deserialize_with = "text")]
    pub compressed_clients: String,
    pub pagination_info: Option<serde_json::Value>,
}

/// The JSON inside `compressedClients`, once inflated.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct InflatedClients {
    #[serde(deserialize_with = "clients")]
    pub clients: Vec<LeaseClient>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LeaseClient {
    #[serde(deserialize_with = "objects")]
    pub leases: Vec<Lease>,
    #[serde(deserialize_with = "object")]
    pub additional_properties: ClientProperties,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct ClientProperties {
    #[serde(deserialize_with = "text")]
    pub license_server_id: String,
    #[serde(deserialize_with = "text")]
    pub license_server_name: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Lease {
    #[serde(deserialize_with = "text")]
    pub lease_id: String,
    #[serde(deserialize_with = "text")]
    pub feature_name: String,
    #[serde(deserialize_with = "number")]
    pub lease_count: f64,
    #[serde(deserialize_with = "text")]
    pub license_allotment_feature_id: String,
}

/// A string field: strings as they are, numbers and booleans as their decimal
/// text (ids may arrive as numbers), anything else as "".
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_any(TextVisitor)
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        // An integral float id (`7.0`) names the same object as `7`.
        if v.fract() == 0.0 && v.abs() < 9.0e15 {
            Ok((v as i64).to_string())
        } else {
            Ok(v.to_string())
        }
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Ok(String::new())
    }
    fn visit_none<E: de::Error>(self) -> Result<String, E> {
        Ok(String::new())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(TextVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<String, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(String::new())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<String, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(String::new())
    }
}

/// A numeric field: JSON numbers, and strings holding a finite number; anything
/// else (null, garbage, "NaN") counts as 0.
fn number<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    d.deserialize_any(NumberVisitor)
}

struct NumberVisitor;

impl<'de> Visitor<'de> for NumberVisitor {
    type Value = f64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        Ok(v as f64)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        Ok(v as f64)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        Ok(if v.is_finite() { v } else { 0.0 })
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
        Ok(v.trim()
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .unwrap_or(0.0))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<f64, E> {
        Ok(0.0)
    }
    fn visit_unit<E: de::Error>(self) -> Result<f64, E> {
        Ok(0.0)
    }
    fn visit_none<E: de::Error>(self) -> Result<f64, E> {
        Ok(0.0)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<f64, D::Error> {
        d.deserialize_any(NumberVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<f64, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(0.0)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<f64, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(0.0)
    }
}

/// A nested object: decoded when it is an object, its default otherwise.
fn object<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(d.deserialize_any(ObjectVisitor(PhantomData))?
        .unwrap_or_default())
}

struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Option<T>, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Some)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<T>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }
}

/// A list of objects: a non-list counts as empty, and elements that are not
/// objects are dropped rather than failing the whole answer.
fn objects<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    d.deserialize_any(ObjectsVisitor(PhantomData))
}

struct ObjectsVisitor<T>(PhantomData<T>);

/// One list element: `Some` when it was an object.
struct Element<T>(Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Element<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ObjectVisitor(PhantomData)).map(Element)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectsVisitor<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(Element(item)) = seq.next_element::<Element<T>>()? {
            out.extend(item);
        }
        Ok(out)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Vec<T>, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<T>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Vec::new())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }
    fn visit_none<E: de::Error>(self) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }
}

fn virtual_groups<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<VirtualGroup>, D::Error> {
    d.deserialize_any(ListingVisitor("virtualGroups", PhantomData))
}

fn license_servers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<LicenseServer>, D::Error> {
    d.deserialize_any(ListingVisitor("licenseServers", PhantomData))
}

fn license_pools<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<LicensePool>, D::Error> {
    d.deserialize_any(ListingVisitor("licensePools", PhantomData))
}

fn clients<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<LeaseClient>, D::Error> {
    d.deserialize_any(ListingVisitor("clients", PhantomData))
}

/// The list an answer carries, by its key: elements as in `objects`, null as
/// empty, anything else an error that names the key.
struct ListingVisitor<T>(&'static str, PhantomData<T>);

impl<T> ListingVisitor<T> {
    fn refuse<E: de::Error>(&self) -> Result<Vec<T>, E> {
        Err(E::custom(format!("{} is not a list", self.0)))
    }
}

impl<'de, T: Deserialize<'de> + Default> Visitor<'de> for ListingVisitor<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a list of {}", self.0)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Vec<T>, A::Error> {
        ObjectsVisitor(PhantomData).visit_seq(seq)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }
    fn visit_none<E: de::Error>(self) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Vec<T>, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Vec<T>, A::Error> {
        self.refuse()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Vec<T>, E> {
        self.refuse()
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Vec<T>, E> {
        self.refuse()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Vec<T>, E> {
        self.refuse()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Vec<T>, E> {
        self.refuse()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Vec<T>, E> {
        self.refuse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_unknown_fields_take_defaults() {
        let page: LicenseServersPage =
            serde_json::from_str(r#"{"licenseServers":[{"id":"s1","extra":{"a":[1]}}],"x":1}"#)
                .unwrap();
        assert_eq!(page.license_servers.len(), 1);
        assert_eq!(page.license_servers[0].id, "s1");
        assert_eq!(page.license_servers[0].name, "");
        assert!(page.license_servers[0].license_server_features.is_empty());
        assert!(page.pagination_info.is_none());
    }

    #[test]
    fn numbers_accept_ints_floats_and_numeric_strings() {
        let f: ServerFeature = serde_json::from_str(r#"{"totalQuantity":"12.5"}"#).unwrap();
        assert_eq!(f.total_quantity, 12.5);
        let f: ServerFeature = serde_json::from_str(r#"{"totalQuantity":10}"#).unwrap();
        assert_eq!(f.total_quantity, 10.0);
        let f: ServerFeature = serde_json::from_str(r#"{"totalQuantity":10.0}"#).unwrap();
        assert_eq!(f.total_quantity, 10.0);
        let f: ServerFeature = serde_json::from_str(r#"{"totalQuantity":"NaN"}"#).unwrap();
        assert_eq!(f.total_quantity, 0.0);
        let f: ServerFeature = serde_json::from_str(r#"{"totalQuantity":null}"#).unwrap();
        assert_eq!(f.total_quantity, 0.0);
        let f: ServerFeature = serde_json::from_str(r#"{"totalQuantity":[1,2]}"#).unwrap();
        assert_eq!(f.total_quantity, 0.0);
    }

    #[test]
    fn ids_accept_numbers_and_integral_floats() {
        let g: VirtualGroup = serde_json::from_str(r#"{"id":7.0,"name":null}"#).unwrap();
        assert_eq!(g.id, "7");
        assert_eq!(g.name, "");
        let g: VirtualGroup = serde_json::from_str(r#"{"id":"12"}"#).unwrap();
        assert_eq!(g.id, "12");
    }

    #[test]
    fn wrongly_typed_lists_and_elements_are_dropped_not_fatal() {
        let page: VirtualGroupsPage =
            serde_json::from_str(r#"{"virtualGroups":[1,"x",null,{"id":3,"entitlements":"no"}]}"#)
                .unwrap();
        assert_eq!(page.virtual_groups.len(), 1);
        assert_eq!(page.virtual_groups[0].id, "3");
        assert!(page.virtual_groups[0].entitlements.is_empty());
        let page: VirtualGroupsPage = serde_json::from_str(r#"{"virtualGroups":null}"#).unwrap();
        assert!(page.virtual_groups.is_empty());
        let page: VirtualGroupsPage = serde_json::from_str(r#"{"other":1}"#).unwrap();
        assert!(page.virtual_groups.is_empty());
    }

    /// Regression: `{"virtualGroups":"nope"}` was read as an org without
    /// groups and published as a successful refresh, dropping every series.
    #[test]
    fn the_list_an_answer_carries_must_be_a_list() {
        for body in [
            r#"{"virtualGroups":{"a":1}}"#,
            r#"{"virtualGroups":"nope"}"#,
            r#"{"virtualGroups":7}"#,
        ] {
            let error = serde_json::from_str::<VirtualGroupsPage>(body).unwrap_err();
            assert!(
                error.to_string().starts_with("virtualGroups is not a list"),
                "{error}"
            );
        }
        let error =
            serde_json::from_str::<LicenseServersPage>(r#"{"licenseServers":true}"#).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("licenseServers is not a list"),
            "{error}"
        );
        assert!(serde_json::from_str::<LicensePoolsPage>(r#"{"licensePools":{}}"#).is_err());
        assert!(serde_json::from_str::<LeasesPage>(r#"{"clients":"x"}"#).is_err());
        assert!(serde_json::from_str::<InflatedClients>(r#"{"clients":1}"#).is_err());
    }

    #[test]
    fn client_properties_use_snake_case_keys() {
        let c: LeaseClient = serde_json::from_str(
            r#"{"leases":[{"leaseId":"l1","leaseCount":2}],"additionalProperties":{"license_server_id":"s1","license_server_name":"n"}}"#,
        )
        .unwrap();
        assert_eq!(c.additional_properties.license_server_id, "s1");
        assert_eq!(c.leases[0].lease_count, 2.0);
        let c: LeaseClient = serde_json::from_str(r#"{"additionalProperties":"x"}"#).unwrap();
        assert_eq!(c.additional_properties.license_server_id, "");
    }
}
