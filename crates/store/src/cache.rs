//! The index cache: postings lists and series entries fetched from object storage, kept in a
//! cache bounded by bytes (`--index-cache-size`, Thanos' IN-MEMORY cache) that evicts the least
//! recently used items, approximated by "second chance" (CLOCK): a hit only marks its item, and
//! eviction gives each marked item one more round in the queue instead of dropping it.
//!
//! Why not an exact LRU: a hit would then move its item in the recency order, and one large
//! Series call hits tens of thousands of series entries, so those moves (a remove and an
//! insert in a B-tree) were 9 % of the store gateway's CPU for such a call. With second
//! chance a hit is one hash lookup; the reordering is paid at eviction time, once per hit at
//! most, and only when the cache is full.
//!
//! Values are the raw bytes as fetched (a postings list with its length and CRC, a series entry
//! body), so a hit costs no re-encoding and the accounting is exact. An item larger than
//! `max_item_size` is not cached (counted as overflowed). Metrics carry Thanos' names
//! (`thanos_store_index_cache_*{item_type="Postings"|"Series"}`).

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;

use rustc_hash::FxHasher;
use std::sync::Mutex;

use bytes::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use strata_model::ByteSize;
use ulid::Ulid;

use crate::error::StoreError;

/// Fixed bookkeeping cost charged per item on top of its key and value bytes: the hash map
/// slot, the recency map's node share, the shared `Bytes` header and allocator rounding.
/// Measured with a counting allocator in `tests/cache_memory.rs`: about 400 B per item when
/// filled once, and up to about 620 B under eviction churn, where deleted slots make the hash
/// table grow to 2-4 buckets per item (including the moment it resizes, when the old and new
/// tables both exist). Charging 96 B let real memory reach 2-3x `--index-cache-size` with
/// small series entries.
const ITEM_OVERHEAD: u64 = 640;

/// What a cached item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemType {
    Postings,
    Series,
}

impl ItemType {
    fn as_str(self) -> &'static str {
        match self {
            ItemType::Postings => "Postings",
            ItemType::Series => "Series",
        }
    }
}

/// A cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CacheKey {
    /// The postings list of `name=value` in a block (the all-postings list is `("", "")`).
    Postings {
        block: Ulid,
        name: String,
        value: String,
    },
    /// The entry of series `id` in a block.
    Series { block: Ulid, id: u32 },
}

impl CacheKey {
    fn item_type(&self) -> ItemType {
        match self {
            CacheKey::Postings { .. } => ItemType::Postings,
            CacheKey::Series { .. } => ItemType::Series,
        }
    }

    fn size(&self) -> u64 {
        match self {
            // The name and value are held twice: in the map and in the recency order.
            CacheKey::Postings { name, value, .. } => (2 * (name.len() + value.len()) + 16) as u64,
            CacheKey::Series { .. } => 20,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    item_type: &'static str,
}

#[derive(Debug, Default, Clone)]
struct CacheMetrics {
    requests: Family<TypeLabel, Counter>,
    hits: Family<TypeLabel, Counter>,
    added: Family<TypeLabel, Counter>,
    evicted: Family<TypeLabel, Counter>,
    overflowed: Family<TypeLabel, Counter>,
    items: Family<TypeLabel, Gauge>,
    items_size: Family<TypeLabel, Gauge>,
    total_size: Family<TypeLabel, Gauge>,
    max_size: Gauge,
    max_item_size: Gauge,
}

impl CacheMetrics {
    fn register(&self, r: &mut Registry) {
        let p = "thanos_store_index_cache";
        r.register(
            format!("{p}_requests"),
            "Total number of items requests to the cache",
            self.requests.clone(),
        );
        r.register(
            format!("{p}_hits"),
            "Total number of items requests to the cache that were a hit",
            self.hits.clone(),
        );
        r.register(
            format!("{p}_items_added"),
            "Total number of items that were added to the index cache",
            self.added.clone(),
        );
        r.register(
            format!("{p}_items_evicted"),
            "Total number of items that were evicted from the index cache",
            self.evicted.clone(),
        );
        r.register(
            format!("{p}_items_overflowed"),
            "Total number of items that could not be added to the cache due to being too big",
            self.overflowed.clone(),
        );
        r.register(
            format!("{p}_items"),
            "Current number of items in the index cache",
            self.items.clone(),
        );
        r.register(
            format!("{p}_items_size_bytes"),
            "Current byte size of items in the index cache",
            self.items_size.clone(),
        );
        r.register(
            format!("{p}_total_size_bytes"),
            "Current byte size of items (both value and key) in the index cache",
            self.total_size.clone(),
        );
        r.register(
            format!("{p}_max_size_bytes"),
            "Maximum number of bytes to be held in the index cache",
            self.max_size.clone(),
        );
        r.register(
            format!("{p}_max_item_size_bytes"),
            "Maximum number of bytes for single entry to be held in the index cache",
            self.max_item_size.clone(),
        );
    }

    fn label(t: ItemType) -> TypeLabel {
        TypeLabel {
            item_type: t.as_str(),
        }
    }

    /// Counts an item that left the cache (evicted or dropped with its block) out of the
    /// item and size gauges; returns its label.
    fn removed(&self, key: &CacheKey, value: &Bytes, size: u64) -> TypeLabel {
        let l = CacheMetrics::label(key.item_type());
        self.items.get_or_create(&l).dec();
        self.items_size.get_or_create(&l).dec_by(value.len() as i64);
        self.total_size.get_or_create(&l).dec_by(size as i64);
        l
    }
}

#[derive(Debug)]
struct Entry {
    value: Bytes,
    /// The item's place in the eviction queue ([`Inner::order`]).
    tick: u64,
    /// Hit since the item last entered the queue: it gets a second chance at eviction.
    referenced: bool,
}

#[derive(Debug, Default)]
struct Inner {
    /// Keys are block ids and series ids, or label pairs of the store's own queries: a fast
    /// hash is safe here, and SipHash cost a few percent of a large Series call.
    map: HashMap<CacheKey, Entry, BuildHasherDefault<FxHasher>>,
    /// Eviction queue: the smallest tick is next, unless it was hit since it was queued.
    order: BTreeMap<u64, CacheKey>,
    tick: u64,
    size: u64,
}

impl Inner {
    /// The value under `key`, marked as used.
    fn touch(&mut self, key: &CacheKey) -> Option<Bytes> {
        let e = self.map.get_mut(key)?;
        e.referenced = true;
        Some(e.value.clone())
    }

    /// Takes the next item to evict out of the queue, requeueing (and unmarking) every item
    /// hit since it was queued. `None` when the cache is empty.
    fn next_victim(&mut self) -> Option<(CacheKey, Entry)> {
        while let Some((_, key)) = self.order.pop_first() {
            let Some(e) = self.map.get_mut(&key) else {
                continue;
            };
            if e.referenced {
                self.tick += 1;
                e.referenced = false;
                e.tick = self.tick;
                self.order.insert(self.tick, key);
                continue;
            }
            return self.map.remove_entry(&key);
        }
        None
    }
}

/// Configuration of the index cache (`--index-cache.config`; only `IN-MEMORY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexCacheConfig {
    /// Total bytes held (keys, values and bookkeeping).
    pub max_size: u64,
    /// Largest single item cached.
    pub max_item_size: u64,
}

impl IndexCacheConfig {
    /// The configuration `--index-cache-size` gives: one item may take half the cache, as in
    /// Thanos' defaults (250MB / 125MB).
    pub fn with_size(max_size: u64) -> Self {
        IndexCacheConfig {
            max_size,
            max_item_size: max_size / 2,
        }
    }

    /// Parses Thanos' `--index-cache.config` YAML: `type: IN-MEMORY` with
    /// `config: {max_size, max_item_size}`. Other types are refused by name.
    pub fn from_yaml(yaml: &str) -> Result<Self, StoreError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(rename = "type")]
            kind: String,
            #[serde(default)]
            config: Option<RawInMemory>,
            #[serde(default)]
            enabled_items: Option<Vec<String>>,
            #[serde(default)]
            ttl: Option<String>,
        }
        #[derive(Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        struct RawInMemory {
            max_size: Option<String>,
            max_item_size: Option<String>,
        }
        let bad = |d: String| StoreError::Config(format!("--index-cache.config: {d}"));
        let raw: Raw = serde_yaml_ng::from_str(yaml).map_err(|e| bad(e.to_string()))?;
        let _ = (raw.enabled_items, raw.ttl);
        match raw.kind.to_ascii_uppercase().as_str() {
            "IN-MEMORY" | "INMEMORY" => {}
            "MEMCACHED" | "REDIS" => {
                return Err(bad(format!(
                    "index cache type {} is not supported yet; use IN-MEMORY",
                    raw.kind
                )));
            }
            other => return Err(bad(format!("unknown index cache type {other:?}"))),
        }
        let c = raw.config.unwrap_or_default();
        let parse = |what: &str, v: Option<String>, default: u64| -> Result<u64, StoreError> {
            match v {
                None => Ok(default),
                Some(s) => s
                    .parse::<ByteSize>()
                    .map(|b| b.0)
                    .map_err(|e| bad(format!("{what}: {e}"))),
            }
        };
        let max_size = parse("max_size", c.max_size, 250 << 20)?;
        let max_item_size = parse("max_item_size", c.max_item_size, 125 << 20)?;
        if max_item_size > max_size {
            return Err(bad(format!(
                "max_item_size {max_item_size} is larger than max_size {max_size}"
            )));
        }
        Ok(IndexCacheConfig {
            max_size,
            max_item_size,
        })
    }
}

/// A byte-bounded LRU of postings lists and series entries, shared by all blocks.
#[derive(Debug)]
pub struct IndexCache {
    inner: Mutex<Inner>,
    config: IndexCacheConfig,
    metrics: CacheMetrics,
}

impl IndexCache {
    /// A cache; its metrics are registered when `registry` is given.
    pub fn new(config: IndexCacheConfig, registry: Option<&mut Registry>) -> Self {
        let metrics = CacheMetrics::default();
        if let Some(r) = registry {
            metrics.register(r);
        }
        metrics.max_size.set(config.max_size as i64);
        metrics.max_item_size.set(config.max_item_size as i64);
        for t in [ItemType::Postings, ItemType::Series] {
            let l = CacheMetrics::label(t);
            for f in [
                &metrics.requests,
                &metrics.hits,
                &metrics.added,
                &metrics.evicted,
                &metrics.overflowed,
            ] {
                let _ = f.get_or_create(&l);
            }
            for f in [&metrics.items, &metrics.items_size, &metrics.total_size] {
                let _ = f.get_or_create(&l);
            }
        }
        IndexCache {
            inner: Mutex::new(Inner::default()),
            config,
            metrics,
        }
    }

    /// Looks up `key`, counting a request and, if found, a hit.
    pub fn get(&self, key: &CacheKey) -> Option<Bytes> {
        let l = CacheMetrics::label(key.item_type());
        self.metrics.requests.get_or_create(&l).inc();
        let mut g = self.inner.lock().expect("cache lock");
        let found = g.touch(key);
        drop(g);
        if found.is_some() {
            self.metrics.hits.get_or_create(&l).inc();
        }
        found
    }

    /// Looks up the entries of series `ids` of `block` under one lock (a Series call asks
    /// for thousands at a time), counting requests and hits once per call.
    pub fn get_series(&self, block: Ulid, ids: &[u32]) -> Vec<Option<Bytes>> {
        let mut g = self.inner.lock().expect("cache lock");
        let out: Vec<Option<Bytes>> = ids
            .iter()
            .map(|&id| g.touch(&CacheKey::Series { block, id }))
            .collect();
        drop(g);
        let l = CacheMetrics::label(ItemType::Series);
        let hits = out.iter().filter(|b| b.is_some()).count();
        self.metrics
            .requests
            .get_or_create(&l)
            .inc_by(ids.len() as u64);
        self.metrics.hits.get_or_create(&l).inc_by(hits as u64);
        out
    }

    /// Stores `value` under `key`, evicting items to make room: the longest queued that were
    /// not hit since they were queued.
    pub fn put(&self, key: CacheKey, value: Bytes) {
        let t = key.item_type();
        let l = CacheMetrics::label(t);
        let size = entry_size(&key, &value);
        if size > self.config.max_item_size || size > self.config.max_size {
            self.metrics.overflowed.get_or_create(&l).inc();
            return;
        }
        let mut g = self.inner.lock().expect("cache lock");
        let inner = &mut *g;
        if inner.map.contains_key(&key) {
            return;
        }
        while inner.size + size > self.config.max_size {
            let Some((victim, e)) = inner.next_victim() else {
                break;
            };
            let vs = entry_size(&victim, &e.value);
            inner.size -= vs;
            let vl = self.metrics.removed(&victim, &e.value, vs);
            self.metrics.evicted.get_or_create(&vl).inc();
        }
        inner.tick += 1;
        let tick = inner.tick;
        inner.order.insert(tick, key.clone());
        self.metrics.added.get_or_create(&l).inc();
        self.metrics.items.get_or_create(&l).inc();
        self.metrics
            .items_size
            .get_or_create(&l)
            .inc_by(value.len() as i64);
        self.metrics
            .total_size
            .get_or_create(&l)
            .inc_by(size as i64);
        inner.size += size;
        inner.map.insert(
            key,
            Entry {
                value,
                tick,
                referenced: false,
            },
        );
    }

    /// Bytes currently held (keys, values and bookkeeping).
    pub fn size(&self) -> u64 {
        self.inner.lock().expect("cache lock").size
    }

    /// Number of items held.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("cache lock").map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every item of a block (when the block is unloaded).
    pub fn remove_block(&self, block: Ulid) {
        let mut g = self.inner.lock().expect("cache lock");
        let inner = &mut *g;
        let victims: Vec<CacheKey> = inner
            .map
            .keys()
            .filter(|k| match k {
                CacheKey::Postings { block: b, .. } | CacheKey::Series { block: b, .. } => {
                    *b == block
                }
            })
            .cloned()
            .collect();
        for k in victims {
            if let Some(e) = inner.map.remove(&k) {
                inner.order.remove(&e.tick);
                let s = entry_size(&k, &e.value);
                inner.size -= s;
                self.metrics.removed(&k, &e.value, s);
            }
        }
    }

    /// `(requests, hits)` so far for an item type.
    pub fn stats(&self, t: ItemType) -> (u64, u64) {
        let l = CacheMetrics::label(t);
        (
            self.metrics.requests.get_or_create(&l).get(),
            self.metrics.hits.get_or_create(&l).get(),
        )
    }
}

fn entry_size(key: &CacheKey, value: &Bytes) -> u64 {
    key.size() + value.len() as u64 + ITEM_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pk(v: &str) -> CacheKey {
        CacheKey::Postings {
            block: Ulid::nil(),
            name: "n".into(),
            value: v.into(),
        }
    }

    #[test]
    fn evicts_least_recently_used_within_the_byte_budget() {
        let item = entry_size(&pk("a"), &Bytes::from(vec![0u8; 100]));
        let c = IndexCache::new(
            IndexCacheConfig {
                max_size: item * 3,
                max_item_size: item * 2,
            },
            None,
        );
        for v in ["a", "b", "c"] {
            c.put(pk(v), Bytes::from(vec![0u8; 100]));
        }
        assert_eq!(c.len(), 3);
        // Touch "a" so "b" is the oldest.
        assert!(c.get(&pk("a")).is_some());
        c.put(pk("d"), Bytes::from(vec![0u8; 100]));
        assert!(c.get(&pk("b")).is_none());
        assert!(c.get(&pk("a")).is_some() && c.get(&pk("c")).is_some());
        assert!(c.size() <= item * 3);
        // Too big for one item: not cached.
        c.put(pk("huge"), Bytes::from(vec![0u8; (item * 2) as usize]));
        assert!(c.get(&pk("huge")).is_none());
        let (req, hits) = c.stats(ItemType::Postings);
        assert_eq!((req, hits), (5, 3));
        c.remove_block(Ulid::nil());
        assert_eq!((c.len(), c.size()), (0, 0));
    }

    #[test]
    fn used_series_entries_outlive_unused_ones_in_a_large_cache() {
        // 800 items: hits do not move an entry in the queue, so this checks that second
        // chance still evicts what was not used before what was.
        let block = Ulid::nil();
        let item = entry_size(
            &CacheKey::Series { block, id: 0 },
            &Bytes::from(vec![0u8; 10]),
        );
        let c = IndexCache::new(IndexCacheConfig::with_size(item * 800), None);
        for id in 0..800 {
            c.put(CacheKey::Series { block, id }, Bytes::from(vec![0u8; 10]));
        }
        // The first 200 are the oldest; use them (several times, in batches as Series calls do).
        let hot: Vec<u32> = (0..200).collect();
        for _ in 0..3 {
            assert!(c.get_series(block, &hot).iter().all(Option::is_some));
        }
        // 300 new items evict 300 old ones: all must come from the unused 200..800.
        for id in 800..1100 {
            c.put(CacheKey::Series { block, id }, Bytes::from(vec![0u8; 10]));
        }
        assert_eq!(c.len(), 800);
        assert!(c.get_series(block, &hot).iter().all(Option::is_some));
        let evicted: Vec<u32> = (200..500).collect();
        assert!(c.get_series(block, &evicted).iter().all(Option::is_none));
        let (req, hits) = c.stats(ItemType::Series);
        assert_eq!((req, hits), (4 * 200 + 300, 4 * 200));
    }

    #[test]
    fn a_hit_buys_one_more_round_not_a_permanent_place() {
        let item = entry_size(&pk("a"), &Bytes::from(vec![0u8; 10]));
        let c = IndexCache::new(
            IndexCacheConfig {
                max_size: item * 3,
                max_item_size: item,
            },
            None,
        );
        for v in ["a", "b", "c"] {
            c.put(pk(v), Bytes::from(vec![0u8; 10]));
        }
        // Every item hit: the first eviction unmarks all three and then takes the oldest.
        for v in ["a", "b", "c"] {
            assert!(c.get(&pk(v)).is_some());
        }
        c.put(pk("d"), Bytes::from(vec![0u8; 10]));
        assert!(c.get(&pk("a")).is_none());
        // "b" was not hit again since its second chance: it goes next, before "c" (hit now).
        assert!(c.get(&pk("c")).is_some());
        c.put(pk("e"), Bytes::from(vec![0u8; 10]));
        assert!(c.get(&pk("b")).is_none());
        assert!(c.get(&pk("c")).is_some() && c.get(&pk("d")).is_some());
        assert_eq!(c.len(), 3);
        assert!(c.size() <= item * 3);
    }

    #[test]
    fn config_yaml() {
        let c = IndexCacheConfig::from_yaml(
            "type: IN-MEMORY\nconfig:\n  max_size: 1GB\n  max_item_size: 10MB\n",
        )
        .unwrap();
        assert_eq!((c.max_size, c.max_item_size), (1 << 30, 10 << 20));
        let e = IndexCacheConfig::from_yaml("type: MEMCACHED\nconfig: {}\n").unwrap_err();
        assert!(e.to_string().contains("not supported yet"), "{e}");
        assert!(IndexCacheConfig::from_yaml("type: IN-MEMORY\nconfig:\n  max_size: x\n").is_err());
        let d = IndexCacheConfig::from_yaml("type: in-memory\n").unwrap();
        assert_eq!(d.max_size, 250 << 20);
    }
}
