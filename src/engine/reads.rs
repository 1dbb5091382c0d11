//! What the engine's read cache holds: the key of each kind of read (the tenant is part of
//! every key, so an entry is only served to the tenant whose request filled it), the cached
//! values and their sizes. Errors are never cached.

use std::sync::Arc;

use serde_json::value::RawValue;

use super::epoch_cache::{EpochCache, Weigh};
use crate::store::entities::EntityRecord;

/// The engine's cache of entity and item reads, valid while the store's data epoch is unchanged.
pub(crate) type ReadCache = EpochCache<ReadKey, ReadValue>;

/// One page of items: a JSON array of the items as stored (no parse and re-serialize on the way
/// out), shared so a cached page is served without copying.
#[derive(Debug, Clone)]
pub struct ItemsPage {
    pub items: Arc<RawValue>,
    /// Where the next page starts, when there is one.
    pub next: Option<NextPage>,
    /// What is left of `$top` after this page (its next link carries it).
    pub remaining_top: Option<i64>,
    /// `$count=true`: how many items match in all.
    pub count: Option<i64>,
    /// The page as the caller last rendered it (the API layer's response body): a cached page
    /// is then rendered once, not on every read. Everything the rendering depends on is part of
    /// the cache key.
    pub rendered: std::sync::OnceLock<bytes::Bytes>,
}

/// Where the page after a page of items starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextPage {
    /// After this key (pages in key order): the next link carries it as `$skiptoken`.
    AfterKey(String),
    /// At this `$skip` (pages with `$orderby`).
    Skip(i64),
}

/// OData query options of `GetItems`, as received (names already matched and checked by the
/// API layer). Equal options give an equal page, so this is also the page's cache key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ItemsQuery {
    pub filter: Option<String>,
    pub select: Option<String>,
    pub orderby: Option<String>,
    pub search: Option<String>,
    /// At most this many items in all pages together.
    pub top: Option<i64>,
    pub skip: Option<i64>,
    /// The continuation of a page in key order, as the previous page's next link gave it.
    pub skiptoken: Option<String>,
    /// `$count=true`: the page says how many items match in all.
    pub count: bool,
    /// `Prefer: odata.maxpagesize`: a smaller page size.
    pub max_page_size: Option<i64>,
}

impl ItemsQuery {
    pub(crate) fn text_len(&self) -> usize {
        [
            &self.filter,
            &self.select,
            &self.orderby,
            &self.search,
            &self.skiptoken,
        ]
        .iter()
        .map(|o| o.as_ref().map_or(0, String::len))
        .sum()
    }
}

/// What the read cache holds: the key of a read (the tenant is part of every key).
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
        options: ItemsQuery,
    },
}

impl Weigh for ReadKey {
    fn weight(&self) -> usize {
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
                options,
            } => tenant.len() + instance.len() + entity.len() + options.text_len(),
        }
    }
}

/// A cached read.
#[derive(Debug, Clone)]
pub(crate) enum ReadValue {
    Entity(Arc<EntityRecord>),
    Item(Arc<RawValue>),
    Page(Arc<ItemsPage>),
}

impl Weigh for ReadValue {
    fn weight(&self) -> usize {
        match self {
            ReadValue::Entity(e) => e.schema.to_string().len() + e.name.len() + 64,
            ReadValue::Item(raw) => raw.get().len(),
            ReadValue::Page(page) => page.items.get().len(),
        }
    }
}
