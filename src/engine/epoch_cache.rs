//! A bounded cache whose entries are valid while an epoch is unchanged. The engine caches entity
//! and item reads in one, tagged with the store's data epoch read *before* the database was
//! read: any later committed change moves the epoch and turns every older entry into a miss.
//!
//! Generic: it knows nothing of what it holds beyond its approximate size ([`Weigh`]).

use std::hash::Hash;

use quick_cache::sync::Cache;
use quick_cache::Weighter;

/// The approximate bytes a key or value holds (computed once per entry: weighing must be cheap).
pub(crate) trait Weigh {
    fn weight(&self) -> usize;
}

#[derive(Debug, Clone)]
struct Entry<V> {
    epoch: u64,
    value: V,
    weight: u64,
}

#[derive(Debug, Clone)]
struct ByBytes;

impl<K, V> Weighter<K, Entry<V>> for ByBytes {
    fn weight(&self, _key: &K, entry: &Entry<V>) -> u64 {
        entry.weight
    }
}

/// Per-entry bookkeeping beyond the text: key and entry structs, the cache's own slot.
const ENTRY_OVERHEAD: usize = 160;

pub(crate) struct EpochCache<K, V> {
    /// `None` when caching is switched off.
    cache: Option<Cache<K, Entry<V>, ByBytes>>,
}

impl<K: Eq + Hash + Clone + Weigh, V: Clone + Weigh> EpochCache<K, V> {
    /// A cache holding about `capacity_bytes` of entries; 0 switches caching off.
    pub(crate) fn new(capacity_bytes: u64) -> Self {
        let cache = (capacity_bytes > 0).then(|| {
            // Sized for pages of ~20 KB and items of a few hundred bytes alike.
            let estimated_items = (capacity_bytes / 1024).clamp(16, 1 << 20) as usize;
            Cache::with_weighter(estimated_items, capacity_bytes, ByBytes)
        });
        Self { cache }
    }

    /// The cached value for `key` if it was read at `epoch`. Without an epoch (the store cannot
    /// tell when data changed) nothing is ever cached.
    pub(crate) fn get(&self, key: &K, epoch: Option<u64>) -> Option<V> {
        let epoch = epoch?;
        let entry = self.cache.as_ref()?.get(key)?;
        (entry.epoch == epoch).then_some(entry.value)
    }

    /// Remembers `value`, read after the epoch was `epoch`.
    pub(crate) fn put(&self, key: K, epoch: Option<u64>, value: V) {
        let (Some(cache), Some(epoch)) = (&self.cache, epoch) else {
            return;
        };
        let weight = (key.weight() + value.weight() + ENTRY_OVERHEAD) as u64;
        cache.insert(
            key,
            Entry {
                epoch,
                value,
                weight,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tenant's item: (tenant, item).
    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    struct Key(String, String);

    impl Weigh for Key {
        fn weight(&self) -> usize {
            self.0.len() + self.1.len()
        }
    }

    impl Weigh for String {
        fn weight(&self) -> usize {
            self.len()
        }
    }

    fn item_key(item: &str) -> Key {
        Key("t".into(), item.into())
    }

    fn raw(text: &str) -> String {
        text.to_string()
    }

    fn text(v: Option<String>) -> Option<String> {
        v
    }

    #[test]
    fn an_entry_counts_only_at_the_epoch_it_was_read() {
        let cache = EpochCache::new(1 << 20);
        cache.put(item_key("1"), Some(7), raw(r#"{"a":1}"#));
        assert_eq!(
            text(cache.get(&item_key("1"), Some(7))).as_deref(),
            Some(r#"{"a":1}"#)
        );
        assert!(
            cache.get(&item_key("1"), Some(8)).is_none(),
            "a later epoch misses"
        );
        assert!(cache.get(&item_key("2"), Some(7)).is_none());
    }

    #[test]
    fn keys_of_other_tenants_do_not_match() {
        let cache = EpochCache::new(1 << 20);
        cache.put(item_key("1"), Some(1), raw("{}"));
        let other = Key("u".into(), "1".into());
        assert!(cache.get(&other, Some(1)).is_none());
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let cache = EpochCache::new(0);
        cache.put(item_key("1"), Some(1), raw("{}"));
        assert!(cache.get(&item_key("1"), Some(1)).is_none());
    }

    #[test]
    fn the_capacity_bounds_what_is_kept() {
        let cache = EpochCache::new(64 * 1024);
        let big = format!(r#"{{"x":"{}"}}"#, "y".repeat(1000));
        for i in 0..1000 {
            cache.put(item_key(&i.to_string()), Some(1), raw(&big));
        }
        let kept = (0..1000)
            .filter(|i| cache.get(&item_key(&i.to_string()), Some(1)).is_some())
            .count();
        assert!(
            kept > 0 && kept < 100,
            "kept {kept} entries of ~1.2 KB in 64 KiB"
        );
    }
}
