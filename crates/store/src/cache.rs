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

use std::collections::{HashMap, VecDeque};
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
use crate::memcached::config_duration;
use crate::remote_cache::RemoteClientConfig;

/// Fixed bookkeeping cost charged per postings list on top of its key and value bytes: the
/// hash map slot, the key's copy in the eviction queue, the shared `Bytes` header and
/// allocator rounding. Measured with a counting allocator in `tests/cache_memory.rs`, which
/// fails if the charge falls short: under eviction churn, deleted slots make the hash table
/// grow to 2-4 buckets per item (including the moment it resizes, when the old and new tables
/// both exist), so the charge covers that and not only a cache filled once.
const POSTINGS_OVERHEAD: u64 = 640;

/// The same for a series entry, which has a compact slot of its own (see [`Inner`]): a
/// 56-byte map bucket, 24 bytes of queue, and the value's two allocations (its bytes and the
/// shared header of the `Bytes` that readers clone). Series entries are most of the items
/// (one per series and block a query touched, each 50-200 bytes), so this cost decides how
/// many an `--index-cache-size` holds.
const SERIES_OVERHEAD: u64 = 256;

/// What a cached item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemType {
    Postings,
    Series,
}

impl ItemType {
    pub(crate) fn as_str(self) -> &'static str {
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

    /// Bytes charged for the key and the item's bookkeeping.
    fn size(&self) -> u64 {
        match self {
            // The name and value are held twice: in the map and in the eviction queue.
            CacheKey::Postings { name, value, .. } => {
                (2 * (name.len() + value.len()) + 16) as u64 + POSTINGS_OVERHEAD
            }
            CacheKey::Series { .. } => SERIES_OVERHEAD,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TypeLabel {
    pub(crate) item_type: &'static str,
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
    fn removed(&self, t: ItemType, value: &Bytes, size: u64) -> TypeLabel {
        let l = CacheMetrics::label(t);
        self.items.get_or_create(&l).dec();
        self.items_size.get_or_create(&l).dec_by(value.len() as i64);
        self.total_size.get_or_create(&l).dec_by(size as i64);
        l
    }
}

#[derive(Debug)]
struct Entry {
    value: Bytes,
    /// The item's place in the eviction queue ([`Inner::order`]): a queued pair with another
    /// tick is stale.
    tick: u64,
    /// Hit since the item last entered the queue: it gets a second chance at eviction.
    referenced: bool,
}

impl Entry {
    /// The value, the item marked as used.
    fn hit(&mut self) -> Bytes {
        self.referenced = true;
        self.value.clone()
    }
}

/// Bytes charged for a series entry holding `value` ([`entry_size`] of its key and value).
fn series_size(value: &Bytes) -> u64 {
    SERIES_OVERHEAD + value.len() as u64
}

/// An item as the eviction queue names it.
#[derive(Debug, Clone)]
enum Queued {
    /// A series entry: [`series_slot`] of its block's number and its id.
    Series(u64),
    Postings(Box<CacheKey>),
}

/// The series slot of entry `id` in the block numbered `block` ([`Inner::blocks`]).
fn series_slot(block: u32, id: u32) -> u64 {
    (u64::from(block) << 32) | u64::from(id)
}

/// Fast hashing: keys are block numbers and series ids, or label pairs of the store's own
/// queries, so a fast hash is safe here; SipHash cost a few percent of a large Series call.
type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// The cache's state, behind its one lock.
///
/// Series entries are kept apart from postings lists, under 8-byte slots (a block number
/// and a series id) instead of the 72-byte [`CacheKey`]: a Series call looks up one entry
/// per series and block, so their map is the hot one, and its buckets (56 bytes, not 120)
/// decide how much of the table a call walks through and how much memory each entry costs.
#[derive(Debug, Default)]
struct Inner {
    series: FastMap<u64, Entry>,
    postings: FastMap<CacheKey, Entry>,
    /// Block numbers of the blocks with series entries (see [`series_slot`]); a block gets a
    /// new number when it comes back after [`IndexCache::remove_block`], which leaves the
    /// queue's pairs for its old number stale.
    blocks: FastMap<Ulid, u32>,
    next_block: u32,
    /// Eviction queue, oldest first. Pairs whose item is gone or was queued again (another
    /// tick) are stale: skipped when popped, and dropped in bulk when they outnumber the
    /// items ([`Inner::drop_stale`]).
    order: VecDeque<(u64, Queued)>,
    tick: u64,
    size: u64,
}

impl Inner {
    fn len(&self) -> usize {
        self.series.len() + self.postings.len()
    }

    /// The series slot of `id` in `block`, if the block has entries.
    fn slot(&self, block: Ulid, id: u32) -> Option<u64> {
        self.blocks.get(&block).map(|&b| series_slot(b, id))
    }

    fn entry(&self, q: &Queued) -> Option<&Entry> {
        match q {
            Queued::Series(slot) => self.series.get(slot),
            Queued::Postings(key) => self.postings.get(key),
        }
    }

    fn entry_mut(&mut self, q: &Queued) -> Option<&mut Entry> {
        match q {
            Queued::Series(slot) => self.series.get_mut(slot),
            Queued::Postings(key) => self.postings.get_mut(key),
        }
    }

    /// The value under `key`, marked as used.
    fn touch(&mut self, key: &CacheKey) -> Option<Bytes> {
        let e = match key {
            CacheKey::Series { block, id } => {
                let slot = self.slot(*block, *id)?;
                self.series.get_mut(&slot)?
            }
            CacheKey::Postings { .. } => self.postings.get_mut(key)?,
        };
        Some(e.hit())
    }

    /// Drops every series entry and block number (numbers start again at 0).
    fn forget_series(&mut self, metrics: &CacheMetrics) {
        for (_, e) in self.series.drain() {
            let s = series_size(&e.value);
            self.size -= s;
            metrics.removed(ItemType::Series, &e.value, s);
        }
        self.blocks.clear();
        self.next_block = 0;
        self.drop_stale();
    }

    /// Queues an item whose entry holds the next tick, [`Inner::tick`] + 1.
    fn queue(&mut self, q: Queued) {
        self.tick += 1;
        self.order.push_back((self.tick, q));
    }

    /// Drops the queue's stale pairs once they outnumber the items, so that removed blocks
    /// and requeued items do not grow the queue without bound (amortized: the queue has
    /// doubled since the last time).
    fn drop_stale(&mut self) {
        if self.order.len() > 2 * self.len() + 1024 {
            let mut order = std::mem::take(&mut self.order);
            order.retain(|(tick, q)| self.entry(q).is_some_and(|e| e.tick == *tick));
            self.order = order;
        }
    }

    /// Takes the next item to evict out of the queue, requeueing (and unmarking) every item
    /// hit since it was queued, with its type and the bytes it was charged. `None` when the
    /// cache is empty.
    fn next_victim(&mut self) -> Option<(ItemType, u64, Entry)> {
        while let Some((tick, q)) = self.order.pop_front() {
            let next = self.tick + 1;
            let Some(e) = self.entry_mut(&q) else {
                continue;
            };
            if e.tick != tick {
                continue;
            }
            if e.referenced {
                e.referenced = false;
                e.tick = next;
                self.queue(q);
                continue;
            }
            return Some(match q {
                Queued::Series(slot) => {
                    let e = self.series.remove(&slot)?;
                    (ItemType::Series, series_size(&e.value), e)
                }
                Queued::Postings(key) => {
                    let e = self.postings.remove(&key)?;
                    (ItemType::Postings, entry_size(&key, &e.value), e)
                }
            });
        }
        None
    }
}

/// Sizes of the in-memory index cache (`--index-cache-size`, or `IN-MEMORY` in
/// `--index-cache.config`).
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
}

/// Which index cache `--index-cache.config` asks for, and what it keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexCacheSpec {
    pub backend: IndexCacheBackendConfig,
    /// `enabled_items` (Thanos: `Postings`, `Series`, `ExpandedPostings`); empty: all.
    /// Strata has no expanded-postings item, so that name selects nothing.
    pub postings: bool,
    pub series: bool,
}

/// The cache's backend.
// Read once at start-up and kept: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum IndexCacheBackendConfig {
    /// `IN-MEMORY` (or `--index-cache-size`).
    InMemory(IndexCacheConfig),
    /// `MEMCACHED` or `REDIS`, with `ttl` (24h when unset or 0, as in Thanos).
    Remote {
        client: RemoteClientConfig,
        ttl: std::time::Duration,
    },
}

impl IndexCacheSpec {
    /// The in-memory cache `--index-cache-size` gives, every item enabled.
    pub fn in_memory(config: IndexCacheConfig) -> Self {
        IndexCacheSpec {
            backend: IndexCacheBackendConfig::InMemory(config),
            postings: true,
            series: true,
        }
    }

    /// Parses Thanos' `--index-cache.config` YAML: `type: IN-MEMORY` with
    /// `config: {max_size, max_item_size}`, or `type: MEMCACHED` or `REDIS` with Thanos'
    /// client `config`; `enabled_items` and `ttl` beside them.
    pub fn from_yaml(yaml: &str) -> Result<Self, StoreError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(rename = "type")]
            kind: String,
            #[serde(default)]
            config: Option<serde_yaml_ng::Value>,
            #[serde(default)]
            enabled_items: Option<Vec<String>>,
            #[serde(default)]
            ttl: Option<String>,
        }
        let bad = |d: String| StoreError::Config(format!("--index-cache.config: {d}"));
        let raw: Raw = serde_yaml_ng::from_str(yaml).map_err(|e| bad(e.to_string()))?;
        let (mut postings, mut series) = (true, true);
        if let Some(items) = raw.enabled_items.filter(|i| !i.is_empty()) {
            (postings, series) = (false, false);
            for i in &items {
                match i.as_str() {
                    "Postings" => postings = true,
                    "Series" => series = true,
                    "ExpandedPostings" => {}
                    other => {
                        return Err(bad(format!(
                            "enabled_items: unknown item type {other:?} (Postings, Series or \
                             ExpandedPostings)"
                        )));
                    }
                }
            }
        }
        let backend = match raw.kind.to_ascii_uppercase().as_str() {
            "IN-MEMORY" | "INMEMORY" => {
                let (max_size, max_item_size) = InMemorySizes::from_config(raw.config, bad)?;
                IndexCacheBackendConfig::InMemory(IndexCacheConfig {
                    max_size,
                    max_item_size,
                })
            }
            kind @ ("MEMCACHED" | "REDIS") => {
                let client = RemoteClientConfig::from_value(kind, raw.config).map_err(bad)?;
                let ttl =
                    config_duration("ttl", raw.ttl, std::time::Duration::from_secs(24 * 3600))
                        .map_err(bad)?;
                IndexCacheBackendConfig::Remote { client, ttl }
            }
            other => return Err(bad(format!("unknown index cache type {other:?}"))),
        };
        Ok(IndexCacheSpec {
            backend,
            postings,
            series,
        })
    }
}

/// The `config:` of Thanos' `IN-MEMORY` cache type, read alike for the index cache and the
/// caching bucket.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct InMemorySizes {
    max_size: Option<String>,
    max_item_size: Option<String>,
}

impl InMemorySizes {
    /// `(max_size, max_item_size)` from an IN-MEMORY cache's `config:` (absent or empty:
    /// the defaults), as [`InMemorySizes::resolve`] gives them.
    pub(crate) fn from_config(
        config: Option<serde_yaml_ng::Value>,
        bad: impl Fn(String) -> StoreError,
    ) -> Result<(u64, u64), StoreError> {
        let sizes: InMemorySizes = match config {
            None | Some(serde_yaml_ng::Value::Null) => InMemorySizes::default(),
            Some(v) => serde_yaml_ng::from_value(v).map_err(|e| bad(format!("config: {e}")))?,
        };
        sizes.resolve(bad)
    }

    /// `(max_size, max_item_size)` in bytes, with Thanos' defaults (250MB, 125MB, units powers
    /// of two); an item may not be larger than the cache. `bad` words an error for the flag.
    pub(crate) fn resolve(
        self,
        bad: impl Fn(String) -> StoreError,
    ) -> Result<(u64, u64), StoreError> {
        let parse = |what: &str, v: Option<String>, default: u64| match v {
            None => Ok(default),
            Some(s) => s
                .parse::<ByteSize>()
                .map(|b| b.0)
                .map_err(|e| bad(format!("{what}: {e}"))),
        };
        let max_size = parse("max_size", self.max_size, 250 << 20)?;
        let max_item_size = parse("max_item_size", self.max_item_size, 125 << 20)?;
        if max_item_size > max_size {
            return Err(bad(format!(
                "max_item_size {max_item_size} is larger than max_size {max_size}"
            )));
        }
        Ok((max_size, max_item_size))
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
        let out: Vec<Option<Bytes>> = match g.blocks.get(&block).copied() {
            None => vec![None; ids.len()],
            Some(b) => ids
                .iter()
                .map(|&id| g.series.get_mut(&series_slot(b, id)).map(Entry::hit))
                .collect(),
        };
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
        let queued = match &key {
            CacheKey::Series { block, id } => {
                let b = match inner.blocks.get(block) {
                    Some(&b) => b,
                    None => {
                        if inner.next_block == u32::MAX {
                            // Four billion block loads: forget the series entries rather
                            // than give a number twice.
                            inner.forget_series(&self.metrics);
                        }
                        let b = inner.next_block;
                        inner.next_block += 1;
                        inner.blocks.insert(*block, b);
                        b
                    }
                };
                let slot = series_slot(b, *id);
                if inner.series.contains_key(&slot) {
                    return;
                }
                Queued::Series(slot)
            }
            CacheKey::Postings { .. } => {
                if inner.postings.contains_key(&key) {
                    return;
                }
                Queued::Postings(Box::new(key.clone()))
            }
        };
        while inner.size + size > self.config.max_size {
            let Some((vt, vs, e)) = inner.next_victim() else {
                break;
            };
            inner.size -= vs;
            let vl = self.metrics.removed(vt, &e.value, vs);
            self.metrics.evicted.get_or_create(&vl).inc();
        }
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
        let entry = Entry {
            value,
            tick: inner.tick + 1,
            referenced: false,
        };
        match &queued {
            Queued::Series(slot) => inner.series.insert(*slot, entry),
            Queued::Postings(_) => inner.postings.insert(key, entry),
        };
        inner.queue(queued);
        inner.drop_stale();
    }

    /// Bytes currently held (keys, values and bookkeeping).
    pub fn size(&self) -> u64 {
        self.inner.lock().expect("cache lock").size
    }

    /// Number of items held.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("cache lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every item of a block (when the block is unloaded).
    pub fn remove_block(&self, block: Ulid) {
        let mut g = self.inner.lock().expect("cache lock");
        let inner = &mut *g;
        let mut freed = 0;
        if let Some(b) = inner.blocks.remove(&block) {
            inner.series.retain(|slot, e| {
                if (slot >> 32) as u32 != b {
                    return true;
                }
                let s = series_size(&e.value);
                freed += s;
                self.metrics.removed(ItemType::Series, &e.value, s);
                false
            });
        }
        inner.postings.retain(|k, e| {
            if !matches!(k, CacheKey::Postings { block: b, .. } if *b == block) {
                return true;
            }
            let s = entry_size(k, &e.value);
            freed += s;
            self.metrics.removed(ItemType::Postings, &e.value, s);
            false
        });
        inner.size -= freed;
        inner.drop_stale();
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

/// Bytes charged for an item: its key, its value and its bookkeeping.
fn entry_size(key: &CacheKey, value: &Bytes) -> u64 {
    key.size() + value.len() as u64
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
    fn a_removed_block_leaves_nothing_behind() {
        let (a, b) = (Ulid::from_parts(1, 1), Ulid::from_parts(2, 2));
        let c = IndexCache::new(IndexCacheConfig::with_size(1 << 30), None);
        let value = |block: Ulid, id: u32| Bytes::from(format!("{block}/{id}"));
        // A block unloaded and loaded again, many times: its entries go each time, the other
        // block's stay, and the queue's stale pairs are dropped instead of piling up.
        for round in 0..50u32 {
            for id in 0..100 {
                c.put(CacheKey::Series { block: a, id }, value(a, id));
                c.put(
                    CacheKey::Series {
                        block: b,
                        id: round * 100 + id,
                    },
                    value(b, round * 100 + id),
                );
            }
            c.put(pk(&round.to_string()), Bytes::from_static(b"p"));
            assert!(c.get_series(a, &[0, 99]).iter().all(Option::is_some));
            c.remove_block(a);
            assert!(c.get_series(a, &[0, 99]).iter().all(Option::is_none));
        }
        let ids: Vec<u32> = (0..5000).collect();
        let got = c.get_series(b, &ids);
        assert!(
            ids.iter()
                .zip(&got)
                .all(|(&id, v)| v.as_ref() == Some(&value(b, id)))
        );
        assert_eq!(c.len(), 5000 + 50);
        let inner = c.inner.lock().unwrap();
        assert!(
            inner.order.len() <= 2 * inner.len() + 1024,
            "{}",
            inner.order.len()
        );
        drop(inner);
        // Postings lists of the block go with it; the size is the remaining items'.
        c.remove_block(Ulid::nil());
        c.remove_block(b);
        assert_eq!((c.len(), c.size()), (0, 0));
    }

    #[test]
    fn config_yaml() {
        let c = IndexCacheSpec::from_yaml(
            "type: IN-MEMORY\nconfig:\n  max_size: 1GB\n  max_item_size: 10MB\n",
        )
        .unwrap();
        assert_eq!(
            c.backend,
            IndexCacheBackendConfig::InMemory(IndexCacheConfig {
                max_size: 1 << 30,
                max_item_size: 10 << 20
            })
        );
        assert!(c.postings && c.series);
        let e = IndexCacheSpec::from_yaml("type: GROUPCACHE\nconfig: {}\n").unwrap_err();
        assert!(e.to_string().contains("unknown index cache type"), "{e}");
        assert!(IndexCacheSpec::from_yaml("type: IN-MEMORY\nconfig:\n  max_size: x\n").is_err());
        let d = IndexCacheSpec::from_yaml("type: in-memory\n").unwrap();
        assert_eq!(
            d.backend,
            IndexCacheBackendConfig::InMemory(IndexCacheConfig::with_size(250 << 20))
        );
        let m = IndexCacheSpec::from_yaml(
            "type: MEMCACHED\nconfig:\n  addresses: [127.0.0.1:11211]\nenabled_items: [Series]\n",
        )
        .unwrap();
        assert!(!m.postings && m.series);
        let IndexCacheBackendConfig::Remote {
            client: RemoteClientConfig::Memcached(client),
            ttl,
        } = m.backend
        else {
            panic!("memcached")
        };
        assert_eq!(client.addresses, ["127.0.0.1:11211"]);
        assert_eq!(ttl, std::time::Duration::from_secs(24 * 3600));
        let m = IndexCacheSpec::from_yaml(
            "type: memcached\nconfig: {addresses: ['dns+m:11211']}\nttl: 1h\n",
        )
        .unwrap();
        assert!(
            matches!(m.backend, IndexCacheBackendConfig::Remote { ttl, .. } if ttl.as_secs() == 3600)
        );
        let r = IndexCacheSpec::from_yaml("type: REDIS\nconfig:\n  addr: redis:6379\n").unwrap();
        assert!(matches!(
            r.backend,
            IndexCacheBackendConfig::Remote { client: RemoteClientConfig::Redis(c), .. }
                if c.addr == "redis:6379"
        ));
        for (yaml, want) in [
            ("type: MEMCACHED\nconfig: {}\n", "addresses"),
            ("type: MEMCACHED\n", "addresses"),
            ("type: REDIS\nconfig: {}\n", "addr"),
            (
                "type: REDIS\nconfig: {addr: 'a:1,b', master_name: m}\n",
                "\"b\" is not host:port",
            ),
            (
                "type: MEMCACHED\nconfig: {addresses: [a:1]}\nttl: x\n",
                "ttl",
            ),
            (
                "type: IN-MEMORY\nenabled_items: [Chunks]\n",
                "enabled_items",
            ),
        ] {
            let e = IndexCacheSpec::from_yaml(yaml).unwrap_err().to_string();
            assert!(
                e.contains("--index-cache.config") && e.contains(want),
                "{yaml}: {e}"
            );
        }
    }
}
