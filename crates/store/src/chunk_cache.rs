//! The caching bucket's chunk cache (`--store.caching-bucket.config`): chunk segment files
//! kept in fixed subranges (`chunk_subrange_size`, 16,000 bytes by default), as Thanos'
//! caching bucket keeps them, in this process (`type: IN-MEMORY`, [`ChunkCache`]) or in
//! memcached or Redis (`type: MEMCACHED`, `REDIS`, [`crate::remote_cache::RemoteChunkCache`]);
//! [`ChunkCacheBackend`] is whichever is configured.
//!
//! Why subranges and not chunks: a chunk's length is only known once its bytes are read, and
//! chunk reads are ranges estimated from the block's largest chunk. Fixed subranges make a
//! cache key of a position alone, so any later read of the same bytes, whatever its estimate,
//! finds them. A chunk that lies within one subrange (most do: a 120-sample chunk is a few
//! hundred bytes) is served as a slice of the cached subrange, without a copy.
//!
//! Misses are read from the bucket as runs of consecutive subranges, at most
//! `max_chunks_get_range_requests` requests per segment file and read (runs are joined across
//! their smallest gaps until they fit), and each subrange read is cached. Object sizes are
//! cached too (`chunk_object_attrs_ttl`), so that no subrange past a file's end is asked for.
//!
//! Memory (in-memory backend): the cache holds at most `max_size` bytes of subranges and bookkeeping, evicting the
//! least recently used by "second chance" as the index cache does (see [`crate::cache`]);
//! blocks that leave the store are dropped from it. Metrics carry Thanos' names
//! (`thanos_store_bucket_cache_*{config="chunks"}`, `thanos_cache_inmemory_*`).

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rustc_hash::FxHasher;
use serde::Deserialize;
use strata_model::ByteSize;
use ulid::Ulid;

use crate::cache::InMemorySizes;
use crate::error::StoreError;
use crate::remote_cache::{RemoteChunkCache, RemoteClient, RemoteClientConfig, RemoteMetrics};

/// Bytes charged per cached subrange on top of its value: the map bucket (96 bytes, at 2-4
/// buckets per entry once evictions leave deleted slots), the queue pairs and the shared
/// `Bytes` header. `tests/cache_memory.rs` measures a churning cache with a counting
/// allocator and fails if the budget falls short (about 260 bytes per entry were used).
const ENTRY_OVERHEAD: u64 = 448;

/// What `--store.caching-bucket.config` asks for.
// Read once at start-up: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum CachingBucketConfig {
    /// `type: IN-MEMORY`, `MEMCACHED` or `REDIS` (then [`ChunkCacheConfig::remote`] is set).
    Cache(ChunkCacheConfig),
    /// A backend Strata does not have (`GROUPCACHE`): named so that start-up can say chunks
    /// are read from the bucket directly.
    Unsupported(String),
}

/// The chunk cache's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkCacheConfig {
    /// `type: MEMCACHED` or `REDIS`: the client's `config:`. `None`: in this process, within
    /// `max_size` and `max_item_size` (which a remote cache does not use).
    pub remote: Option<RemoteClientConfig>,
    /// `config.max_size`: bytes held, subranges and bookkeeping (default 250MB).
    pub max_size: u64,
    /// `config.max_item_size`: larger subranges are not cached (default 125MB).
    pub max_item_size: u64,
    /// `chunk_subrange_size` (default 16000).
    pub subrange_size: u64,
    /// `max_chunks_get_range_requests`: bucket requests per file and read (default 3; zero or
    /// negative: one per run of missing subranges).
    pub max_get_range_requests: usize,
    /// `chunk_subrange_ttl` (default 24h).
    pub subrange_ttl: Duration,
    /// `chunk_object_attrs_ttl`: how long a segment file's size is kept (default 24h).
    pub object_size_ttl: Duration,
    /// `metafile_content_ttl`: how long a block's deletion mark, once read, is trusted by the
    /// block sync instead of read again (default 24h).
    pub metafile_content_ttl: Duration,
    /// `metafile_doesnt_exist_ttl`: the same for a block found without one (default 15m), so
    /// a new mark is seen within this time.
    pub metafile_doesnt_exist_ttl: Duration,
}

impl Default for ChunkCacheConfig {
    fn default() -> Self {
        ChunkCacheConfig {
            remote: None,
            max_size: 250 << 20,
            max_item_size: 125 << 20,
            subrange_size: 16_000,
            max_get_range_requests: 3,
            subrange_ttl: Duration::from_secs(24 * 3600),
            object_size_ttl: Duration::from_secs(24 * 3600),
            metafile_content_ttl: Duration::from_secs(24 * 3600),
            metafile_doesnt_exist_ttl: Duration::from_secs(15 * 60),
        }
    }
}

impl CachingBucketConfig {
    /// Parses Thanos' caching bucket YAML. Every field Thanos documents is accepted. Of the
    /// metadata settings, `metafile_content_ttl` and `metafile_doesnt_exist_ttl` decide how
    /// long the block sync trusts a deletion mark (or its absence) once read; the others
    /// (`blocks_iter_ttl`, `metafile_exists_ttl`, `metafile_max_size`) are checked but have
    /// no use here: the store lists the bucket once per sync and keeps metas in memory.
    pub fn from_yaml(yaml: &str) -> Result<Self, StoreError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(rename = "type")]
            kind: String,
            #[serde(default)]
            config: Option<serde_yaml_ng::Value>,
            chunk_subrange_size: Option<i64>,
            max_chunks_get_range_requests: Option<i64>,
            chunk_object_attrs_ttl: Option<String>,
            chunk_subrange_ttl: Option<String>,
            blocks_iter_ttl: Option<String>,
            metafile_exists_ttl: Option<String>,
            metafile_doesnt_exist_ttl: Option<String>,
            metafile_content_ttl: Option<String>,
            metafile_max_size: Option<String>,
        }
        let bad = |d: String| StoreError::Config(format!("--store.caching-bucket.config: {d}"));
        let raw: Raw = serde_yaml_ng::from_str(yaml).map_err(|e| bad(e.to_string()))?;
        let duration = |what: &str, v: &Option<String>, default: Duration| match v {
            None => Ok(default),
            Some(s) => strata_model::Duration::parse_go(s)
                .or_else(|_| strata_model::Duration::parse_prometheus(s))
                .map(|d| d.to_std())
                .map_err(|e| bad(format!("{what}: {e}"))),
        };
        let bytes = |what: &str, v: &Option<String>, default: u64| match v {
            None => Ok(default),
            Some(s) => s
                .parse::<ByteSize>()
                .map(|b| b.0)
                .map_err(|e| bad(format!("{what}: {e}"))),
        };
        let d = ChunkCacheConfig::default();
        let metafile_content_ttl = duration(
            "metafile_content_ttl",
            &raw.metafile_content_ttl,
            d.metafile_content_ttl,
        )?;
        let metafile_doesnt_exist_ttl = duration(
            "metafile_doesnt_exist_ttl",
            &raw.metafile_doesnt_exist_ttl,
            d.metafile_doesnt_exist_ttl,
        )?;
        for (what, v) in [
            ("blocks_iter_ttl", &raw.blocks_iter_ttl),
            ("metafile_exists_ttl", &raw.metafile_exists_ttl),
        ] {
            duration(what, v, Duration::ZERO)?;
        }
        bytes("metafile_max_size", &raw.metafile_max_size, 0)?;
        let subrange_size = match raw.chunk_subrange_size {
            None => d.subrange_size,
            Some(n) if n > 0 => n as u64,
            Some(n) => {
                return Err(bad(format!(
                    "chunk_subrange_size must be positive, not {n}"
                )));
            }
        };
        let max_get_range_requests = match raw.max_chunks_get_range_requests {
            None => d.max_get_range_requests,
            Some(n) if n > 0 => n as usize,
            Some(_) => usize::MAX,
        };
        let subrange_ttl = duration(
            "chunk_subrange_ttl",
            &raw.chunk_subrange_ttl,
            d.subrange_ttl,
        )?;
        let object_size_ttl = duration(
            "chunk_object_attrs_ttl",
            &raw.chunk_object_attrs_ttl,
            d.object_size_ttl,
        )?;
        let (remote, max_size, max_item_size) = match raw.kind.to_ascii_uppercase().as_str() {
            "IN-MEMORY" | "INMEMORY" => {
                let (max_size, max_item_size) = InMemorySizes::from_config(raw.config, bad)?;
                (None, max_size, max_item_size)
            }
            kind @ ("MEMCACHED" | "REDIS") => {
                let client = RemoteClientConfig::from_value(kind, raw.config).map_err(bad)?;
                (Some(client), d.max_size, d.max_item_size)
            }
            "GROUPCACHE" => {
                return Ok(CachingBucketConfig::Unsupported(raw.kind));
            }
            other => return Err(bad(format!("unknown caching bucket type {other:?}"))),
        };
        Ok(CachingBucketConfig::Cache(ChunkCacheConfig {
            remote,
            max_size,
            max_item_size,
            subrange_size,
            max_get_range_requests,
            subrange_ttl,
            object_size_ttl,
            metafile_content_ttl,
            metafile_doesnt_exist_ttl,
        }))
    }
}

/// One cached subrange: bytes `[index × subrange_size, …)` of a block's segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubrangeKey {
    pub block: Ulid,
    /// The segment file's number (`chunks/000001` is 1).
    pub segment: u32,
    pub index: u64,
}

#[derive(Debug)]
struct Entry {
    value: Bytes,
    expires: Instant,
    /// The entry's place in the eviction queue: a queued pair with another tick is stale.
    tick: u64,
    /// Hit since it last entered the queue: it gets a second chance at eviction.
    referenced: bool,
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Segment file sizes, each until `chunk_object_attrs_ttl` after it was learnt, so that no
/// subrange past a file's end is asked for. Kept in memory by both backends (one small entry
/// per file).
#[derive(Debug)]
pub(crate) struct ObjectSizes {
    ttl: Duration,
    sizes: Mutex<FastMap<(Ulid, u32), (u64, Instant)>>,
}

impl ObjectSizes {
    pub(crate) fn new(ttl: Duration) -> Self {
        ObjectSizes {
            ttl,
            sizes: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FastMap<(Ulid, u32), (u64, Instant)>> {
        self.sizes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The size of a segment file, unless unknown or expired.
    pub(crate) fn get(&self, block: Ulid, segment: u32) -> Option<u64> {
        self.lock()
            .get(&(block, segment))
            .filter(|(_, exp)| *exp > Instant::now())
            .map(|(s, _)| *s)
    }

    pub(crate) fn set(&self, block: Ulid, segment: u32, size: u64) {
        let exp = Instant::now() + self.ttl;
        self.lock().insert((block, segment), (size, exp));
    }

    /// Forgets a dropped block's files.
    pub(crate) fn remove_block(&self, block: Ulid) {
        self.lock().retain(|(b, _), _| *b != block);
    }
}

#[derive(Debug, Default)]
struct Inner {
    entries: FastMap<SubrangeKey, Entry>,
    order: VecDeque<(u64, SubrangeKey)>,
    tick: u64,
    size: u64,
}

impl Inner {
    fn remove(&mut self, key: &SubrangeKey) -> Option<u64> {
        let e = self.entries.remove(key)?;
        let s = charge(&e.value);
        self.size -= s;
        Some(s)
    }

    /// Drops the queue's stale pairs once they outnumber the entries (amortized).
    fn drop_stale(&mut self) {
        if self.order.len() > 2 * self.entries.len() + 1024 {
            let mut order = std::mem::take(&mut self.order);
            order.retain(|(tick, k)| self.entries.get(k).is_some_and(|e| e.tick == *tick));
            self.order = order;
        }
    }

    /// Evicts one entry (second chance); its charge, or `None` when empty.
    fn evict_one(&mut self) -> Option<u64> {
        while let Some((tick, key)) = self.order.pop_front() {
            let next = self.tick + 1;
            let Some(e) = self.entries.get_mut(&key) else {
                continue;
            };
            if e.tick != tick {
                continue;
            }
            if e.referenced {
                e.referenced = false;
                e.tick = next;
                self.tick = next;
                self.order.push_back((next, key));
                continue;
            }
            return self.remove(&key);
        }
        None
    }
}

fn charge(value: &Bytes) -> u64 {
    value.len() as u64 + ENTRY_OVERHEAD
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConfigLabel {
    config: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OriginLabel {
    origin: &'static str,
    config: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: &'static str,
    config: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameLabel {
    name: &'static str,
}

const CHUNKS: &str = "chunks";
const GET_RANGE: OperationLabel = OperationLabel {
    operation: "get_range",
    config: CHUNKS,
};
const CACHE_NAME: NameLabel = NameLabel {
    name: "caching-bucket",
};

/// Thanos' caching bucket metrics (`thanos_store_bucket_cache_*{config="chunks"}`), which
/// both backends keep.
#[derive(Debug, Default, Clone)]
pub(crate) struct GetRangeMetrics {
    requested_bytes: Family<ConfigLabel, Counter>,
    fetched_bytes: Family<OriginLabel, Counter>,
    operation_requests: Family<OperationLabel, Counter>,
    operation_hits: Family<OperationLabel, Counter>,
}

impl GetRangeMetrics {
    pub(crate) fn new(registry: Option<&mut Registry>) -> Self {
        let m = GetRangeMetrics::default();
        if let Some(r) = registry {
            let b = "thanos_store_bucket_cache";
            r.register(
                format!("{b}_getrange_requested_bytes"),
                "Total number of bytes requested via GetRange.",
                m.requested_bytes.clone(),
            );
            r.register(
                format!("{b}_getrange_fetched_bytes"),
                "Total number of bytes fetched because of GetRange operation. Data from bucket is then stored to cache.",
                m.fetched_bytes.clone(),
            );
            r.register(
                format!("{b}_operation_requests"),
                "Number of requested operations matching given config.",
                m.operation_requests.clone(),
            );
            r.register(
                format!("{b}_operation_hits"),
                "Number of operations served from cache for given config.",
                m.operation_hits.clone(),
            );
        }
        m
    }

    /// One get-range operation of `requested` bytes over `asked` subranges, `hits` of them
    /// (`bytes` in all) found in the cache.
    pub(crate) fn looked_up(&self, requested: u64, asked: usize, hits: usize, bytes: u64) {
        self.requested_bytes
            .get_or_create(&ConfigLabel { config: CHUNKS })
            .inc_by(requested);
        self.fetched_bytes
            .get_or_create(&OriginLabel {
                origin: "cache",
                config: CHUNKS,
            })
            .inc_by(bytes);
        self.operation_requests.get_or_create(&GET_RANGE).inc();
        if hits == asked {
            self.operation_hits.get_or_create(&GET_RANGE).inc();
        }
    }

    /// `bytes` read from the bucket for subranges the cache lacked.
    pub(crate) fn fetched_from_bucket(&self, bytes: u64) {
        self.fetched_bytes
            .get_or_create(&OriginLabel {
                origin: "bucket",
                config: CHUNKS,
            })
            .inc_by(bytes);
    }
}

/// Thanos' in-memory cache metrics (`thanos_cache_inmemory_*{name="caching-bucket"}`).
#[derive(Debug, Default, Clone)]
struct Metrics {
    get_range: GetRangeMetrics,
    requests: Family<NameLabel, Counter>,
    hits: Family<NameLabel, Counter>,
    added: Family<NameLabel, Counter>,
    evicted: Family<NameLabel, Counter>,
    overflowed: Family<NameLabel, Counter>,
    items: Family<NameLabel, Gauge>,
    items_size: Family<NameLabel, Gauge>,
    max_size: Family<NameLabel, Gauge>,
}

impl Metrics {
    fn new(mut registry: Option<&mut Registry>) -> Self {
        let m = Metrics {
            get_range: GetRangeMetrics::new(registry.as_deref_mut()),
            ..Metrics::default()
        };
        let Some(r) = registry else {
            return m;
        };
        let p = "thanos_cache_inmemory";
        r.register(
            format!("{p}_requests"),
            "Total number of requests to the cache.",
            m.requests.clone(),
        );
        r.register(
            format!("{p}_hits"),
            "Total number of requests to the cache that were a hit.",
            m.hits.clone(),
        );
        r.register(
            format!("{p}_items_added"),
            "Total number of items that were added to the cache.",
            m.added.clone(),
        );
        r.register(
            format!("{p}_items_evicted"),
            "Total number of items that were evicted from the cache.",
            m.evicted.clone(),
        );
        r.register(
            format!("{p}_items_overflowed"),
            "Total number of items that could not be added to the cache due to being too big.",
            m.overflowed.clone(),
        );
        r.register(
            format!("{p}_items"),
            "Current number of items in the cache.",
            m.items.clone(),
        );
        r.register(
            format!("{p}_items_size_bytes"),
            "Current byte size of items in the cache.",
            m.items_size.clone(),
        );
        r.register(
            format!("{p}_max_size_bytes"),
            "Maximum number of bytes to be held in the cache.",
            m.max_size.clone(),
        );
        m
    }
}

/// Chunk segment files in memory, by subrange, shared by every block of a store.
#[derive(Debug)]
pub struct ChunkCache {
    cfg: ChunkCacheConfig,
    inner: Mutex<Inner>,
    sizes: ObjectSizes,
    metrics: Metrics,
}

/// What a read of a segment file's subranges found.
#[derive(Debug, Default)]
pub struct Lookup {
    /// Per wanted subrange index, in the order asked: the bytes when cached.
    pub found: Vec<Option<Bytes>>,
}

impl ChunkCache {
    pub fn new(cfg: ChunkCacheConfig, registry: Option<&mut Registry>) -> Self {
        let metrics = Metrics::new(registry);
        metrics
            .max_size
            .get_or_create(&CACHE_NAME)
            .set(cfg.max_size as i64);
        ChunkCache {
            sizes: ObjectSizes::new(cfg.object_size_ttl),
            cfg,
            inner: Mutex::new(Inner::default()),
            metrics,
        }
    }

    pub fn config(&self) -> &ChunkCacheConfig {
        &self.cfg
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached size of a segment file, unless unknown or expired.
    pub(crate) fn object_size(&self, block: Ulid, segment: u32) -> Option<u64> {
        self.sizes.get(block, segment)
    }

    pub(crate) fn set_object_size(&self, block: Ulid, segment: u32, size: u64) {
        self.sizes.set(block, segment, size);
    }

    /// Looks up subranges `indexes` of one segment file; counts one get-range operation of
    /// `requested` bytes.
    pub fn lookup(&self, block: Ulid, segment: u32, indexes: &[u64], requested: u64) -> Lookup {
        let now = Instant::now();
        let mut found = Vec::with_capacity(indexes.len());
        let mut hits = 0u64;
        let mut bytes = 0u64;
        {
            let mut g = self.lock();
            for &index in indexes {
                let key = SubrangeKey {
                    block,
                    segment,
                    index,
                };
                let v = match g.entries.get_mut(&key) {
                    Some(e) if e.expires > now => {
                        e.referenced = true;
                        Some(e.value.clone())
                    }
                    Some(_) => {
                        g.remove(&key);
                        None
                    }
                    None => None,
                };
                if let Some(v) = &v {
                    hits += 1;
                    bytes += v.len() as u64;
                }
                found.push(v);
            }
            self.publish(&g);
        }
        let m = &self.metrics;
        m.requests
            .get_or_create(&CACHE_NAME)
            .inc_by(indexes.len() as u64);
        m.hits.get_or_create(&CACHE_NAME).inc_by(hits);
        m.get_range
            .looked_up(requested, indexes.len(), hits as usize, bytes);
        Lookup { found }
    }

    /// Caches subranges read from the bucket (`bytes` of them in all).
    pub fn store(&self, items: Vec<(SubrangeKey, Bytes)>, bytes: u64) {
        self.metrics.get_range.fetched_from_bucket(bytes);
        let expires = Instant::now() + self.cfg.subrange_ttl;
        let mut added = 0u64;
        let mut evicted = 0u64;
        let mut overflowed = 0u64;
        {
            let mut g = self.lock();
            for (key, value) in items {
                // Its own copy: a subrange read with others is a slice of their one buffer,
                // which would stay whole in memory as long as any of them is cached, so
                // evicting one would free nothing.
                let value = Bytes::copy_from_slice(&value);
                let c = charge(&value);
                if value.len() as u64 > self.cfg.max_item_size || c > self.cfg.max_size {
                    overflowed += 1;
                    continue;
                }
                g.remove(&key);
                while g.size + c > self.cfg.max_size {
                    if g.evict_one().is_none() {
                        break;
                    }
                    evicted += 1;
                }
                g.tick += 1;
                let tick = g.tick;
                g.order.push_back((tick, key));
                g.entries.insert(
                    key,
                    Entry {
                        value,
                        expires,
                        tick,
                        referenced: false,
                    },
                );
                g.size += c;
                added += 1;
            }
            g.drop_stale();
            self.publish(&g);
        }
        let m = &self.metrics;
        m.added.get_or_create(&CACHE_NAME).inc_by(added);
        m.evicted.get_or_create(&CACHE_NAME).inc_by(evicted);
        m.overflowed.get_or_create(&CACHE_NAME).inc_by(overflowed);
    }

    /// Drops a block that left the store.
    pub fn remove_block(&self, block: Ulid) {
        let mut g = self.lock();
        let keys: Vec<SubrangeKey> = g
            .entries
            .keys()
            .filter(|k| k.block == block)
            .copied()
            .collect();
        for k in &keys {
            g.remove(k);
        }
        self.sizes.remove_block(block);
        g.drop_stale();
        self.publish(&g);
    }

    fn publish(&self, g: &Inner) {
        let m = &self.metrics;
        m.items
            .get_or_create(&CACHE_NAME)
            .set(g.entries.len() as i64);
        m.items_size.get_or_create(&CACHE_NAME).set(g.size as i64);
    }

    /// Bytes held (subranges and bookkeeping).
    pub fn size(&self) -> u64 {
        self.lock().size
    }

    /// Subranges held.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The chunk cache blocks use: in this process or in memcached.
#[derive(Debug)]
pub enum ChunkCacheBackend {
    InMemory(ChunkCache),
    Remote(RemoteChunkCache),
}

impl ChunkCacheBackend {
    /// The cache `cfg` asks for; its metrics go into `registry` when given, a remote
    /// client's into `remote` (shared with the index cache's client). A remote cache needs
    /// a Tokio runtime (its client starts tasks).
    pub fn new(
        cfg: ChunkCacheConfig,
        registry: Option<&mut Registry>,
        remote: &RemoteMetrics,
    ) -> Result<Self, String> {
        Ok(match &cfg.remote {
            None => ChunkCacheBackend::InMemory(ChunkCache::new(cfg, registry)),
            Some(client) => {
                let client = RemoteClient::new(client, "caching-bucket", remote)?;
                ChunkCacheBackend::Remote(RemoteChunkCache::new(client, cfg, registry))
            }
        })
    }

    pub fn config(&self) -> &ChunkCacheConfig {
        match self {
            ChunkCacheBackend::InMemory(c) => c.config(),
            ChunkCacheBackend::Remote(c) => c.config(),
        }
    }

    /// The in-memory cache, when that is the backend.
    pub fn in_memory(&self) -> Option<&ChunkCache> {
        match self {
            ChunkCacheBackend::InMemory(c) => Some(c),
            ChunkCacheBackend::Remote(_) => None,
        }
    }

    /// The memcached or Redis cache, when that is the backend.
    pub fn remote(&self) -> Option<&RemoteChunkCache> {
        match self {
            ChunkCacheBackend::Remote(c) => Some(c),
            ChunkCacheBackend::InMemory(_) => None,
        }
    }

    /// The cached size of a segment file, unless unknown or expired.
    pub(crate) async fn object_size(&self, block: Ulid, segment: u32) -> Option<u64> {
        match self {
            ChunkCacheBackend::InMemory(c) => c.object_size(block, segment),
            ChunkCacheBackend::Remote(c) => c.object_size(block, segment).await,
        }
    }

    pub(crate) fn set_object_size(&self, block: Ulid, segment: u32, size: u64) {
        match self {
            ChunkCacheBackend::InMemory(c) => c.set_object_size(block, segment, size),
            ChunkCacheBackend::Remote(c) => c.set_object_size(block, segment, size),
        }
    }

    /// Looks up subranges `indexes` of one segment file of `object_size` bytes; counts one
    /// get-range operation of `requested` bytes.
    pub(crate) async fn lookup(
        &self,
        block: Ulid,
        segment: u32,
        indexes: &[u64],
        requested: u64,
        object_size: u64,
    ) -> Lookup {
        match self {
            ChunkCacheBackend::InMemory(c) => c.lookup(block, segment, indexes, requested),
            ChunkCacheBackend::Remote(c) => {
                c.lookup(block, segment, indexes, requested, object_size)
                    .await
            }
        }
    }

    /// Caches subranges read from the bucket (`bytes` of them in all).
    pub(crate) fn store(&self, items: Vec<(SubrangeKey, Bytes)>, bytes: u64) {
        match self {
            ChunkCacheBackend::InMemory(c) => c.store(items, bytes),
            ChunkCacheBackend::Remote(c) => c.store(items, bytes),
        }
    }

    /// Drops a block that left the store from memory; a remote cache lets its subranges expire
    /// (other gateways may still serve the block).
    pub(crate) fn remove_block(&self, block: Ulid) {
        match self {
            ChunkCacheBackend::InMemory(c) => c.remove_block(block),
            ChunkCacheBackend::Remote(c) => c.remove_block(block),
        }
    }
}

/// Which bucket reads fetch the missing subranges `missing` (sorted, unique indexes): runs of
/// consecutive indexes, joined across their smallest gaps until at most `max_requests` remain.
/// Each read is a range of subrange indexes, end exclusive.
pub(crate) fn plan_subrange_reads(missing: &[u64], max_requests: usize) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &i in missing {
        match runs.last_mut() {
            Some((_, end)) if *end == i => *end = i + 1,
            _ => runs.push((i, i + 1)),
        }
    }
    let max_requests = max_requests.max(1);
    while runs.len() > max_requests {
        // Join the pair with the smallest gap (the first such pair on ties).
        let (at, _) = runs
            .windows(2)
            .enumerate()
            .map(|(k, w)| (k, w[1].0 - w[0].1))
            .min_by_key(|&(k, gap)| (gap, k))
            .expect("more than one run");
        let next = runs.remove(at + 1);
        runs[at].1 = next.1;
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(index: u64) -> SubrangeKey {
        SubrangeKey {
            block: Ulid::from_parts(1, 1),
            segment: 1,
            index,
        }
    }

    #[test]
    fn thanos_yaml_is_read_with_its_defaults() {
        let c = CachingBucketConfig::from_yaml(
            "type: in-memory\nconfig:\n  max_size: 64MB\n  max_item_size: 1MiB\n\
             chunk_subrange_size: 8000\nmax_chunks_get_range_requests: 0\n\
             chunk_object_attrs_ttl: 1h\nchunk_subrange_ttl: 10m\nblocks_iter_ttl: 5m\n\
             metafile_exists_ttl: 2h\nmetafile_doesnt_exist_ttl: 15m\n\
             metafile_content_ttl: 24h\nmetafile_max_size: 1MiB\n",
        )
        .unwrap();
        assert_eq!(
            c,
            CachingBucketConfig::Cache(ChunkCacheConfig {
                remote: None,
                max_size: 64 << 20, // units are powers of two, as Thanos reads them
                max_item_size: 1 << 20,
                subrange_size: 8000,
                max_get_range_requests: usize::MAX,
                subrange_ttl: Duration::from_secs(600),
                object_size_ttl: Duration::from_secs(3600),
                metafile_content_ttl: Duration::from_secs(24 * 3600),
                metafile_doesnt_exist_ttl: Duration::from_secs(15 * 60),
            })
        );
        assert_eq!(
            CachingBucketConfig::from_yaml("type: IN-MEMORY").unwrap(),
            CachingBucketConfig::Cache(ChunkCacheConfig::default())
        );
        // MEMCACHED: the client's own settings, the subrange settings as for IN-MEMORY.
        let CachingBucketConfig::Cache(c) = CachingBucketConfig::from_yaml(
            "type: MEMCACHED\nconfig:\n  addresses: [a:11211]\n  max_item_size: 2MiB\n\
             chunk_subrange_size: 8000\nchunk_subrange_ttl: 1h\n",
        )
        .unwrap() else {
            panic!("a memcached cache")
        };
        let Some(RemoteClientConfig::Memcached(client)) = &c.remote else {
            panic!("memcached settings")
        };
        assert_eq!(client.addresses, ["a:11211"]);
        assert_eq!(client.max_item_size, 2 << 20);
        assert_eq!(
            (c.subrange_size, c.subrange_ttl),
            (8000, Duration::from_secs(3600))
        );
        let CachingBucketConfig::Cache(c) =
            CachingBucketConfig::from_yaml("type: REDIS\nconfig:\n  addr: a:6379").unwrap()
        else {
            panic!("a redis cache")
        };
        assert!(matches!(&c.remote, Some(RemoteClientConfig::Redis(r)) if r.addr == "a:6379"));
        assert_eq!(
            CachingBucketConfig::from_yaml("type: GROUPCACHE\nconfig: {}").unwrap(),
            CachingBucketConfig::Unsupported("GROUPCACHE".into())
        );
        for bad in [
            "type: DISK",
            "type: IN-MEMORY\nchunk_subrange_size: 0",
            "type: IN-MEMORY\nchunk_subrange_ttl: soon",
            "type: IN-MEMORY\nconfig:\n  max_size: 1MB\n  max_item_size: 2MB",
            "type: IN-MEMORY\nconfig:\n  addresses: [a]",
            "type: IN-MEMORY\nchunks_subrange_size: 1",
            "type: MEMCACHED",
            "type: MEMCACHED\nconfig:\n  addresses: [a:1]\n  max_size: 1MB",
        ] {
            let e = CachingBucketConfig::from_yaml(bad).unwrap_err().to_string();
            assert!(e.contains("--store.caching-bucket.config"), "{bad}: {e}");
        }
    }

    #[test]
    fn missing_subranges_are_read_in_at_most_the_allowed_requests() {
        assert_eq!(plan_subrange_reads(&[], 3), vec![]);
        assert_eq!(
            plan_subrange_reads(&[1, 2, 3, 7, 9, 10, 20], 10),
            vec![(1, 4), (7, 8), (9, 11), (20, 21)]
        );
        // Smallest gaps joined first: 7..8 and 9..11 (gap 1), then 1..4 and 7..11 (gap 3).
        assert_eq!(
            plan_subrange_reads(&[1, 2, 3, 7, 9, 10, 20], 2),
            vec![(1, 11), (20, 21)]
        );
        assert_eq!(plan_subrange_reads(&[4, 8, 12], 1), vec![(4, 13)]);
        assert_eq!(plan_subrange_reads(&[4, 8], 0), vec![(4, 9)]);
    }

    #[test]
    fn the_cache_holds_at_most_its_size_and_keeps_what_is_used() {
        let value = Bytes::from(vec![7u8; 1000]);
        let per = charge(&value);
        let cfg = ChunkCacheConfig {
            max_size: 4 * per,
            ..ChunkCacheConfig::default()
        };
        let c = ChunkCache::new(cfg.clone(), None);
        c.store((0..4).map(|i| (key(i), value.clone())).collect(), 4000);
        assert_eq!((c.len(), c.size()), (4, 4 * per));
        // 0 is used, so it gets a second chance: 1 goes first, then 2.
        assert!(c.lookup(key(0).block, 1, &[0], 1000).found[0].is_some());
        c.store(vec![(key(4), value.clone()), (key(5), value.clone())], 2000);
        assert_eq!((c.len(), c.size()), (4, 4 * per));
        let found = c.lookup(key(0).block, 1, &[0, 1, 2, 3, 4, 5], 6000).found;
        let held: Vec<bool> = found.iter().map(Option::is_some).collect();
        assert_eq!(held, [true, false, false, true, true, true]);
        // Too large for one item: not cached.
        let big = ChunkCache::new(
            ChunkCacheConfig {
                max_item_size: 10,
                ..cfg
            },
            None,
        );
        big.store(vec![(key(0), value.clone())], 1000);
        assert!(big.is_empty());
        c.remove_block(key(0).block);
        assert_eq!((c.len(), c.size()), (0, 0));
    }

    #[test]
    fn expired_subranges_and_sizes_are_not_served() {
        let c = ChunkCache::new(
            ChunkCacheConfig {
                subrange_ttl: Duration::ZERO,
                object_size_ttl: Duration::ZERO,
                ..ChunkCacheConfig::default()
            },
            None,
        );
        c.store(vec![(key(0), Bytes::from_static(b"abc"))], 3);
        c.set_object_size(key(0).block, 1, 3);
        assert!(c.lookup(key(0).block, 1, &[0], 3).found[0].is_none());
        assert_eq!(c.object_size(key(0).block, 1), None);
        assert!(c.is_empty());
    }
}
