//! The rows of a published snapshot: sorted by key, each key once, in one
//! vector. A snapshot is built in B-trees (rows that meet in one key are
//! summed there) and frozen into these when it is done: one allocation a
//! kind of row instead of a B-tree node per dozen rows, so the snapshot that
//! outlives its refresh does not pin pages all over the heap (the allocator
//! could not give back what the refresh freed around the nodes).

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Rows<K, V> {
    rows: Vec<(K, V)>,
}

impl<K, V> Default for Rows<K, V> {
    fn default() -> Self {
        Rows { rows: Vec::new() }
    }
}

impl<K: Ord, V> From<BTreeMap<K, V>> for Rows<K, V> {
    fn from(map: BTreeMap<K, V>) -> Self {
        let mut rows: Vec<(K, V)> = Vec::with_capacity(map.len());
        rows.extend(map);
        Rows { rows }
    }
}

impl<K: Ord, V> Rows<K, V> {
    /// Puts `value` at `key` (in key order), replacing what was there.
    pub fn insert(&mut self, key: K, value: V) {
        match self.rows.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(at) => self.rows[at].1 = value,
            Err(at) => self.rows.insert(at, (key, value)),
        }
    }
}

impl<K, V> Rows<K, V> {
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&K, &V)> {
        self.rows.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl ExactSizeIterator<Item = &K> {
        self.rows.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl ExactSizeIterator<Item = &V> {
        self.rows.iter().map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

impl<'a, K, V> IntoIterator for &'a Rows<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.rows.iter().map(|(k, v)| (k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_stay_sorted_and_unique() {
        let mut rows: Rows<&str, u32> = BTreeMap::from([("b", 2), ("a", 1)]).into();
        rows.insert("c", 3);
        rows.insert("0", 0);
        rows.insert("b", 20);
        let all: Vec<(&&str, &u32)> = rows.iter().collect();
        assert_eq!(all, [(&"0", &0), (&"a", &1), (&"b", &20), (&"c", &3)]);
        assert_eq!(rows.len(), 4);
    }
}
