//! A bounded cache of entity and item reads (the connector's hot actions: `GetItems`, `GetItem`
//! and the entity lookup behind every item operation).
//!
//! Entries are tagged with the store's data epoch read *before* the database was read; an entry
//! counts only while the epoch is unchanged, so any committed change to entities or items
//! (refresh, unification, item create/update, instance delete) makes every older entry a miss.
//! Keys include the tenant: an entry is only ever served to the tenant whose request filled it.
//! Errors (404, 400) are never cached.

use std::sync::Arc;

use quick_cache::sync::Cache;
use quick_cache::Weighter;
use serde_json::value::RawValue;

use super::entities::ItemsPage;
use crate::store::entities::EntityRecord;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum ReadKey {
    Entity {
        tenant: String,
        instance: String,
        entity: String,
    },
    Item {
        tenant: String,
        instance: String,
        entity: String,
        item: String,
    },
    /// The query options as given; equal text gives an equal page.
    Page {
        tenant: String,
        instance: String,
        entity: String,
        filter: Option<String>,
        select: Option<String>,
        orderby: Option<String>,
        top: Option<i64>,
        skip: Option<i64>,
    },
}

impl ReadKey {
    fn text_len(&self) -> usize {
        let opt = |o: &Option<String>| o.as_ref().map_or(0, String::len);
        match self {
            ReadKey::Entity {
                tenant,
                instance,
                entity,
            } => tenant.len() + instance.len() + entity.len(),
            ReadKey::Item {
                tenant,
                instance,
                entity,
                item,
            } => tenant.len() + instance.len() + entity.len() + item.len(),
            ReadKey::Page {
                tenant,
                instance,
                entity,
                filter,
                select,
                orderby,
                ..
            } => {
                tenant.len()
                    + instance.len()
                    + entity.len()
                    + opt(filter)
                    + opt(select)
                    + opt(orderby)
            }
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum ReadValue {
    Entity(Arc<EntityRecord>),
    Item(Arc<RawValue>),
    Page(Arc<ItemsPage>),
}

#[derive(Debug, Clone)]
struct Entry {
    epoch: u64,
    value: ReadValue,
    /// Approximate bytes held, computed once (the weigher must be cheap).
    weight: u64,
}

#[derive(Debug, Clone)]
struct ByBytes;

impl Weighter<ReadKey, Entry> for ByBytes {
    fn weight(&self, _key: &ReadKey, entry: &Entry) -> u64 {
        entry.weight
    }
}

/// Per-entry bookkeeping beyond the text: key and entry structs, the cache's own slot.
const ENTRY_OVERHEAD: usize = 160;

pub(crate) struct ReadCache {
    /// `None` when caching is switched off.
    cache: Option<Cache<ReadKey, Entry, ByBytes>>,
}

impl ReadCache {
    /// A cache holding about `capacity_bytes` of entries; 0 switches caching off.
    pub(crate) fn new(capacity_bytes: u64) -> Self {
        let cache = (capacity_bytes > 0).then(|| {
            // Sized for pages of ~20 KB and items of a few hundred bytes alike.
            let estimated_items = (capacity_bytes / 1024).clamp(16, 1 << 20) as usize;
            Cache::with_weighter(estimated_items, capacity_bytes, ByBytes)
        });
        Self { cache }
    }

    /// The cached value for `key` if it was read at `epoch`.
    pub(crate) fn get(&self, key: &ReadKey, epoch: u64) -> Option<ReadValue> {
        let entry = self.cache.as_ref()?.get(key)?;
        (entry.epoch == epoch).then_some(entry.value)
    }

    /// Remembers `value`, read from the database after the epoch was `epoch`.
    pub(crate) fn put(&self, key: ReadKey, epoch: u64, value: ReadValue) {
        let Some(cache) = &self.cache else { return };
        let value_len = match &value {
            ReadValue::Entity(e) => e.schema.to_string().len() + e.name.len() + 64,
            ReadValue::Item(raw) => raw.get().len(),
            ReadValue::Page(page) => page.items.get().len(),
        };
        let weight = (key.text_len() + value_len + ENTRY_OVERHEAD) as u64;
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

    fn item_key(item: &str) -> ReadKey {
        ReadKey::Item {
            tenant: "t".into(),
            instance: "i".into(),
            entity: "e".into(),
            item: item.into(),
        }
    }

    fn raw(text: &str) -> ReadValue {
        ReadValue::Item(Arc::from(RawValue::from_string(text.into()).unwrap()))
    }

    fn text(v: Option<ReadValue>) -> Option<String> {
        match v? {
            ReadValue::Item(r) => Some(r.get().to_string()),
            _ => None,
        }
    }

    #[test]
    fn an_entry_counts_only_at_the_epoch_it_was_read() {
        let cache = ReadCache::new(1 << 20);
        cache.put(item_key("1"), 7, raw(r#"{"a":1}"#));
        assert_eq!(
            text(cache.get(&item_key("1"), 7)).as_deref(),
            Some(r#"{"a":1}"#)
        );
        assert!(
            cache.get(&item_key("1"), 8).is_none(),
            "a later epoch misses"
        );
        assert!(cache.get(&item_key("2"), 7).is_none());
    }

    #[test]
    fn keys_of_other_tenants_do_not_match() {
        let cache = ReadCache::new(1 << 20);
        cache.put(item_key("1"), 1, raw("{}"));
        let other = ReadKey::Item {
            tenant: "u".into(),
            instance: "i".into(),
            entity: "e".into(),
            item: "1".into(),
        };
        assert!(cache.get(&other, 1).is_none());
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let cache = ReadCache::new(0);
        cache.put(item_key("1"), 1, raw("{}"));
        assert!(cache.get(&item_key("1"), 1).is_none());
    }

    #[test]
    fn the_capacity_bounds_what_is_kept() {
        let cache = ReadCache::new(64 * 1024);
        let big = format!(r#"{{"x":"{}"}}"#, "y".repeat(1000));
        for i in 0..1000 {
            cache.put(item_key(&i.to_string()), 1, raw(&big));
        }
        let kept = (0..1000)
            .filter(|i| cache.get(&item_key(&i.to_string()), 1).is_some())
            .count();
        assert!(
            kept > 0 && kept < 100,
            "kept {kept} entries of ~1.2 KB in 64 KiB"
        );
    }
}
