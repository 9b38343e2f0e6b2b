//! The store's caches in memcached or Redis, through one [`RemoteClient`]: the index cache
//! (`--index-cache.config` with `type: MEMCACHED|REDIS`, [`RemoteIndexCache`]) and the
//! caching bucket's chunk subranges (`--store.caching-bucket.config` with
//! `type: MEMCACHED|REDIS`, [`RemoteChunkCache`]); and [`IndexCacheBackend`], which blocks
//! use whichever index cache is configured.
//!
//! A remote cache is shared: by several gateways, across restarts, perhaps with other
//! programs. So nothing read from it is trusted. Keys carry a Strata prefix and version
//! (`strata1:`), so a Thanos gateway on the same servers (whose values are encoded otherwise)
//! never reads ours nor we its; every value is wrapped in an envelope (a magic number and the
//! CRC32C of the rest) and a postings value also names its label pair, because its key holds
//! only a hash of it (memcached keys are at most 250 bytes). A value that fails any check is
//! a miss, counted in `strata_index_cache_remote_rejected_total` (chunks:
//! `strata_chunk_cache_remote_rejected_total`), never an error of the query. That matters
//! most for chunks: a damaged subrange taken as good would fail its chunks' CRC checks and
//! so the query, for as long as it stays cached.

use std::time::Duration;

use bytes::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use strata_tsdb::encoding::{Decbuf, put_uvarint_str};
use ulid::Ulid;

use crate::cache::{
    CacheKey, IndexCache, IndexCacheBackendConfig, IndexCacheSpec, ItemType, TypeLabel,
};
use crate::chunk_cache::{ChunkCacheConfig, GetRangeMetrics, Lookup, ObjectSizes, SubrangeKey};
use crate::memcached::{ClientMetrics, Memcached, MemcachedConfig};
use crate::redis::{Redis, RedisConfig};

/// Starts every index cache value: "Strata Index Cache", version 1.
const MAGIC: &[u8; 4] = b"SIC1";
/// Starts every caching bucket value: "Strata Chunk Cache", version 1.
const CHUNK_MAGIC: &[u8; 4] = b"SCC1";

/// A remote cache's client settings: `type: MEMCACHED` or `type: REDIS` with its `config:`.
#[derive(Debug, Clone, PartialEq)]
pub enum RemoteClientConfig {
    Memcached(MemcachedConfig),
    Redis(RedisConfig),
}

impl RemoteClientConfig {
    /// Reads `config` for `kind` (`MEMCACHED` or `REDIS`, upper case).
    pub fn from_value(kind: &str, config: Option<serde_yaml_ng::Value>) -> Result<Self, String> {
        let config = config.unwrap_or(serde_yaml_ng::Value::Null);
        match kind {
            "MEMCACHED" => MemcachedConfig::from_value(config).map(RemoteClientConfig::Memcached),
            "REDIS" => RedisConfig::from_value(config).map(RemoteClientConfig::Redis),
            other => Err(format!("{other} is not a remote cache type")),
        }
    }
}

/// The client metrics of a store's remote caches: one set per kind of server, shared by
/// the index cache's and the caching bucket's clients, registered only for the kinds used.
#[derive(Debug, Clone)]
pub struct RemoteMetrics {
    memcached: ClientMetrics,
    redis: ClientMetrics,
}

impl RemoteMetrics {
    /// Metrics for clients of `configs`, registered in `registry` when given.
    pub fn new(mut registry: Option<&mut Registry>, configs: &[&RemoteClientConfig]) -> Self {
        let uses = |memcached: bool| {
            configs
                .iter()
                .any(|c| matches!(c, RemoteClientConfig::Memcached(_)) == memcached)
        };
        RemoteMetrics {
            memcached: ClientMetrics::memcached(registry.as_deref_mut().filter(|_| uses(true))),
            redis: ClientMetrics::redis(registry.filter(|_| uses(false))),
        }
    }
}

/// A memcached or Redis client: what the remote caches call.
#[derive(Debug, Clone)]
pub enum RemoteClient {
    Memcached(Memcached),
    Redis(Redis),
}

impl RemoteClient {
    /// A client for `config`, its metrics labelled `name` (`index-cache`, `caching-bucket`).
    /// Needs a Tokio runtime.
    pub fn new(
        config: &RemoteClientConfig,
        name: &'static str,
        metrics: &RemoteMetrics,
    ) -> Result<Self, String> {
        Ok(match config {
            RemoteClientConfig::Memcached(c) => {
                RemoteClient::Memcached(Memcached::new(c.clone(), name, &metrics.memcached)?)
            }
            RemoteClientConfig::Redis(c) => {
                RemoteClient::Redis(Redis::new(c.clone(), name, &metrics.redis)?)
            }
        })
    }

    /// Looks `keys` up; in their order, `None` for a miss or a failure.
    pub async fn get_multi(&self, keys: &[String]) -> Vec<Option<Bytes>> {
        match self {
            RemoteClient::Memcached(c) => c.get_multi(keys).await,
            RemoteClient::Redis(c) => c.get_multi(keys).await,
        }
    }

    /// Queues a set; dropped (and counted) when it cannot be queued.
    pub fn set_async(&self, key: String, value: Bytes, ttl: Duration) {
        match self {
            RemoteClient::Memcached(c) => c.set_async(key, value, ttl),
            RemoteClient::Redis(c) => c.set_async(key, value, ttl),
        }
    }
}

/// The index cache in memcached or Redis.
#[derive(Debug)]
pub struct RemoteIndexCache {
    client: RemoteClient,
    ttl: Duration,
    requests: Family<TypeLabel, Counter>,
    hits: Family<TypeLabel, Counter>,
    rejected: Counter,
}

fn label(t: ItemType) -> TypeLabel {
    TypeLabel {
        item_type: t.as_str(),
    }
}

/// 64-bit FNV-1a of a label pair (name, a 0xff byte no UTF-8 text holds, value).
fn pair_hash(name: &str, value: &str) -> u64 {
    crate::memcached::fnv1a(name.bytes().chain([0xff]).chain(value.bytes()))
}

fn postings_key(block: Ulid, name: &str, value: &str) -> String {
    format!("strata1:P:{block}:{:016x}", pair_hash(name, value))
}

fn series_key(block: Ulid, id: u32) -> String {
    format!("strata1:S:{block}:{id}")
}

/// `MAGIC`, CRC32C of the rest, then (for postings) the label pair, then the value.
fn envelope(pair: Option<(&str, &str)>, value: &[u8]) -> Bytes {
    envelope_with(MAGIC, pair, value)
}

/// The value inside an envelope, if it is whole and (for postings) of the pair asked for.
fn open(pair: Option<(&str, &str)>, data: &Bytes) -> Option<Bytes> {
    open_with(MAGIC, pair, data)
}

/// An envelope starting with `magic`.
fn envelope_with(magic: &[u8; 4], pair: Option<(&str, &str)>, value: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(value.len() + 40);
    out.extend_from_slice(magic);
    out.extend_from_slice(&[0; 4]); // the CRC, once the body is written
    if let Some((n, v)) = pair {
        put_uvarint_str(&mut out, n);
        put_uvarint_str(&mut out, v);
    }
    out.extend_from_slice(value);
    let crc = crc32c::crc32c(&out[8..]);
    out[4..8].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(out)
}

/// The value inside an envelope starting with `magic`.
fn open_with(magic: &[u8; 4], pair: Option<(&str, &str)>, data: &Bytes) -> Option<Bytes> {
    if data.len() < 8 || &data[..4] != magic {
        return None;
    }
    let crc = u32::from_be_bytes(data[4..8].try_into().ok()?);
    let body = data.slice(8..);
    if crc32c::crc32c(&body) != crc {
        return None;
    }
    let mut d = Decbuf::new(&body);
    if let Some((n, v)) = pair {
        for want in [n, v] {
            if d.uvarint_bytes().ok()? != want.as_bytes() {
                return None;
            }
        }
    }
    Some(body.slice(body.len() - d.remaining()..))
}

/// A value read back from the server, if `check` accepts it; one it refuses is counted in
/// `rejected` (a miss, never an error).
fn checked(
    got: Option<Bytes>,
    rejected: &Counter,
    check: impl FnOnce(&Bytes) -> Option<Bytes>,
) -> Option<Bytes> {
    let v = check(&got?);
    if v.is_none() {
        rejected.inc();
    }
    v
}

impl RemoteIndexCache {
    /// A cache over `client`; items expire after `ttl`.
    pub fn new(client: RemoteClient, ttl: Duration, registry: Option<&mut Registry>) -> Self {
        let c = RemoteIndexCache {
            client,
            ttl,
            requests: Family::default(),
            hits: Family::default(),
            rejected: Counter::default(),
        };
        if let Some(r) = registry {
            r.register(
                "thanos_store_index_cache_requests",
                "Total number of items requests to the cache",
                c.requests.clone(),
            );
            r.register(
                "thanos_store_index_cache_hits",
                "Total number of items requests to the cache that were a hit",
                c.hits.clone(),
            );
            r.register(
                "strata_index_cache_remote_rejected",
                "Values read from the remote index cache that failed their checks (treated as misses)",
                c.rejected.clone(),
            );
        }
        for t in [ItemType::Postings, ItemType::Series] {
            let _ = c.requests.get_or_create(&label(t));
            let _ = c.hits.get_or_create(&label(t));
        }
        c
    }

    fn count(&self, t: ItemType, asked: usize, found: usize) {
        self.requests.get_or_create(&label(t)).inc_by(asked as u64);
        self.hits.get_or_create(&label(t)).inc_by(found as u64);
    }

    async fn get_postings(&self, block: Ulid, pairs: &[(&str, &str)]) -> Vec<Option<Bytes>> {
        let keys: Vec<String> = pairs
            .iter()
            .map(|(n, v)| postings_key(block, n, v))
            .collect();
        let got = self.client.get_multi(&keys).await;
        let out: Vec<Option<Bytes>> = got
            .into_iter()
            .zip(pairs)
            .map(|(g, &pair)| checked(g, &self.rejected, |g| open(Some(pair), g)))
            .collect();
        self.count(
            ItemType::Postings,
            pairs.len(),
            out.iter().flatten().count(),
        );
        out
    }

    async fn get_series(&self, block: Ulid, ids: &[u32]) -> Vec<Option<Bytes>> {
        let keys: Vec<String> = ids.iter().map(|&id| series_key(block, id)).collect();
        let got = self.client.get_multi(&keys).await;
        let out: Vec<Option<Bytes>> = got
            .into_iter()
            .map(|g| checked(g, &self.rejected, |g| open(None, g)))
            .collect();
        self.count(ItemType::Series, ids.len(), out.iter().flatten().count());
        out
    }

    /// The client it uses.
    pub fn client(&self) -> &RemoteClient {
        &self.client
    }

    /// `(requests, hits)` so far for an item type.
    pub fn stats(&self, t: ItemType) -> (u64, u64) {
        (
            self.requests.get_or_create(&label(t)).get(),
            self.hits.get_or_create(&label(t)).get(),
        )
    }
}

/// The index cache blocks use: in memory, in memcached or in Redis, with Thanos'
/// `enabled_items`.
#[derive(Debug)]
pub struct IndexCacheBackend {
    kind: Kind,
    postings: bool,
    series: bool,
}

// One per store: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Kind {
    InMemory(IndexCache),
    Remote(RemoteIndexCache),
}

impl IndexCacheBackend {
    /// The cache `spec` asks for; its metrics go into `registry` when given, a remote
    /// client's into `remote` (shared with the caching bucket's client). A remote cache
    /// needs a Tokio runtime (its client starts tasks).
    pub fn new(
        spec: &IndexCacheSpec,
        registry: Option<&mut Registry>,
        remote: &RemoteMetrics,
    ) -> Result<Self, String> {
        let kind = match &spec.backend {
            IndexCacheBackendConfig::InMemory(c) => Kind::InMemory(IndexCache::new(*c, registry)),
            IndexCacheBackendConfig::Remote { client, ttl } => {
                let client = RemoteClient::new(client, "index-cache", remote)?;
                Kind::Remote(RemoteIndexCache::new(client, *ttl, registry))
            }
        };
        Ok(IndexCacheBackend {
            kind,
            postings: spec.postings,
            series: spec.series,
        })
    }

    /// The in-memory cache, when that is the backend.
    pub fn in_memory(&self) -> Option<&IndexCache> {
        match &self.kind {
            Kind::InMemory(c) => Some(c),
            Kind::Remote(_) => None,
        }
    }

    /// The memcached or Redis cache, when that is the backend.
    pub fn remote(&self) -> Option<&RemoteIndexCache> {
        match &self.kind {
            Kind::Remote(c) => Some(c),
            Kind::InMemory(_) => None,
        }
    }

    /// The postings lists (as fetched: length, list, CRC) of `pairs` in `block`, in their
    /// order; `None` for those not cached.
    pub async fn get_postings(&self, block: Ulid, pairs: &[(&str, &str)]) -> Vec<Option<Bytes>> {
        if !self.postings {
            return vec![None; pairs.len()];
        }
        match &self.kind {
            Kind::InMemory(c) => pairs
                .iter()
                .map(|(n, v)| {
                    c.get(&CacheKey::Postings {
                        block,
                        name: n.to_string(),
                        value: v.to_string(),
                    })
                })
                .collect(),
            Kind::Remote(c) => c.get_postings(block, pairs).await,
        }
    }

    /// Keeps a postings list.
    pub fn put_postings(&self, block: Ulid, name: &str, value: &str, list: Bytes) {
        if !self.postings {
            return;
        }
        match &self.kind {
            Kind::InMemory(c) => c.put(
                CacheKey::Postings {
                    block,
                    name: name.to_string(),
                    value: value.to_string(),
                },
                list,
            ),
            Kind::Remote(c) => c.client.set_async(
                postings_key(block, name, value),
                envelope(Some((name, value)), &list),
                c.ttl,
            ),
        }
    }

    /// The resolved series entries of `ids` in `block`, in their order.
    pub async fn get_series(&self, block: Ulid, ids: &[u32]) -> Vec<Option<Bytes>> {
        if !self.series {
            return vec![None; ids.len()];
        }
        match &self.kind {
            Kind::InMemory(c) => c.get_series(block, ids),
            Kind::Remote(c) => c.get_series(block, ids).await,
        }
    }

    /// Keeps a resolved series entry.
    pub fn put_series(&self, block: Ulid, id: u32, entry: Bytes) {
        if !self.series {
            return;
        }
        match &self.kind {
            Kind::InMemory(c) => c.put(CacheKey::Series { block, id }, entry),
            Kind::Remote(c) => {
                c.client
                    .set_async(series_key(block, id), envelope(None, &entry), c.ttl)
            }
        }
    }

    /// Drops a block's items from memory; a remote cache lets them expire (other gateways
    /// may still serve the block).
    pub fn remove_block(&self, block: Ulid) {
        if let Kind::InMemory(c) = &self.kind {
            c.remove_block(block);
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameLabel {
    name: &'static str,
}

const CACHING_BUCKET: NameLabel = NameLabel {
    name: "caching-bucket",
};

/// A subrange's key. The subrange size is part of it: gateways configured with other sizes
/// share the servers without reading each other's subranges as their own.
fn subrange_key(k: &SubrangeKey, subrange_size: u64) -> String {
    format!(
        "strata1:C:{}:{}:{subrange_size}:{}",
        k.block, k.segment, k.index
    )
}

fn object_size_key(block: Ulid, segment: u32) -> String {
    format!("strata1:A:{block}:{segment}")
}

/// The caching bucket's chunk subranges in memcached or Redis. Segment file sizes are kept
/// in memory too (one small entry per file), so that a read asks the server only for
/// subranges.
#[derive(Debug)]
pub struct RemoteChunkCache {
    client: RemoteClient,
    cfg: ChunkCacheConfig,
    sizes: ObjectSizes,
    get_range: GetRangeMetrics,
    requests: Family<NameLabel, Counter>,
    hits: Family<NameLabel, Counter>,
    rejected: Counter,
}

impl RemoteChunkCache {
    /// A cache over `client` with `cfg`'s subrange size and TTLs.
    pub fn new(
        client: RemoteClient,
        cfg: ChunkCacheConfig,
        mut registry: Option<&mut Registry>,
    ) -> Self {
        let c = RemoteChunkCache {
            client,
            sizes: ObjectSizes::new(cfg.object_size_ttl),
            cfg,
            get_range: GetRangeMetrics::new(registry.as_deref_mut()),
            requests: Family::default(),
            hits: Family::default(),
            rejected: Counter::default(),
        };
        if let Some(r) = registry {
            // Thanos' names: thanos_cache_memcached_* or thanos_cache_redis_*.
            let kind = match &c.client {
                RemoteClient::Memcached(_) => "memcached",
                RemoteClient::Redis(_) => "redis",
            };
            r.register(
                format!("thanos_cache_{kind}_requests"),
                format!("Total number of items requests to {kind}."),
                c.requests.clone(),
            );
            r.register(
                format!("thanos_cache_{kind}_hits"),
                "Total number of items requests to the cache that were a hit.",
                c.hits.clone(),
            );
            r.register(
                "strata_chunk_cache_remote_rejected",
                "Values read from the remote chunk cache that failed their checks (treated as misses)",
                c.rejected.clone(),
            );
        }
        let _ = c.requests.get_or_create(&CACHING_BUCKET);
        let _ = c.hits.get_or_create(&CACHING_BUCKET);
        c
    }

    pub fn config(&self) -> &ChunkCacheConfig {
        &self.cfg
    }

    /// `(requests, hits)` of subranges so far.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.requests.get_or_create(&CACHING_BUCKET).get(),
            self.hits.get_or_create(&CACHING_BUCKET).get(),
        )
    }

    pub(crate) async fn object_size(&self, block: Ulid, segment: u32) -> Option<u64> {
        if let Some(size) = self.sizes.get(block, segment) {
            return Some(size);
        }
        let got = self
            .client
            .get_multi(&[object_size_key(block, segment)])
            .await
            .pop()
            .flatten();
        let size = checked(got, &self.rejected, |g| {
            open_with(CHUNK_MAGIC, None, g).filter(|b| b.len() == 8)
        })
        .map(|b| u64::from_be_bytes(b[..].try_into().expect("8 bytes")))?;
        self.sizes.set(block, segment, size);
        Some(size)
    }

    pub(crate) fn set_object_size(&self, block: Ulid, segment: u32, size: u64) {
        self.sizes.set(block, segment, size);
        self.client.set_async(
            object_size_key(block, segment),
            envelope_with(CHUNK_MAGIC, None, &size.to_be_bytes()),
            self.cfg.object_size_ttl,
        );
    }

    /// Subranges `indexes` of a segment file of `object_size` bytes. A value is taken only
    /// whole (its checksum) and of the length its place in the file says it has.
    pub(crate) async fn lookup(
        &self,
        block: Ulid,
        segment: u32,
        indexes: &[u64],
        requested: u64,
        object_size: u64,
    ) -> Lookup {
        let s = self.cfg.subrange_size;
        let keys: Vec<String> = indexes
            .iter()
            .map(|&index| {
                subrange_key(
                    &SubrangeKey {
                        block,
                        segment,
                        index,
                    },
                    s,
                )
            })
            .collect();
        let got = self.client.get_multi(&keys).await;
        let found: Vec<Option<Bytes>> = got
            .into_iter()
            .zip(indexes)
            .map(|(g, &index)| {
                let expected = object_size.saturating_sub(index.saturating_mul(s)).min(s);
                checked(g, &self.rejected, |g| {
                    open_with(CHUNK_MAGIC, None, g).filter(|v| v.len() as u64 == expected)
                })
            })
            .collect();
        let hits = found.iter().flatten().count();
        let bytes = found.iter().flatten().map(|v| v.len() as u64).sum();
        self.requests
            .get_or_create(&CACHING_BUCKET)
            .inc_by(indexes.len() as u64);
        self.hits.get_or_create(&CACHING_BUCKET).inc_by(hits as u64);
        self.get_range
            .looked_up(requested, indexes.len(), hits, bytes);
        Lookup { found }
    }

    /// Queues subranges read from the bucket (`bytes` of them in all) to be stored.
    pub(crate) fn store(&self, items: Vec<(SubrangeKey, Bytes)>, bytes: u64) {
        self.get_range.fetched_from_bucket(bytes);
        for (k, v) in items {
            self.client.set_async(
                subrange_key(&k, self.cfg.subrange_size),
                envelope_with(CHUNK_MAGIC, None, &v),
                self.cfg.subrange_ttl,
            );
        }
    }

    /// Forgets a dropped block's file sizes; its subranges expire on the server.
    pub(crate) fn remove_block(&self, block: Ulid) {
        self.sizes.remove_block(block);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_open_only_whole_and_for_their_pair() {
        let v = envelope(Some(("job", "api")), b"list");
        assert_eq!(open(Some(("job", "api")), &v).unwrap(), &b"list"[..]);
        // Another pair with the same hash would have another name or value inside.
        assert!(open(Some(("job", "apj")), &v).is_none());
        assert!(open(Some(("jo", "bapi")), &v).is_none());
        let s = envelope(None, b"entry");
        assert_eq!(open(None, &s).unwrap(), &b"entry"[..]);
        // Damaged, cut, foreign.
        let mut bad = s.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(open(None, &Bytes::from(bad)).is_none());
        assert!(open(None, &s.slice(..6)).is_none());
        assert!(open(None, &Bytes::from_static(b"\x00\x01garbage")).is_none());
        // A postings envelope whose pair runs past the end.
        let cut = envelope(None, &[200, 1]);
        assert!(open(Some(("a", "b")), &cut).is_none());
    }

    proptest::proptest! {
        /// What a cache server returns is untrusted: any bytes open to nothing or to what
        /// was wrapped, never a panic; every envelope opens to its value.
        #[test]
        fn envelopes_survive_any_bytes(
            value in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            name in "[a-z_]{0,12}",
            label in "\\PC{0,12}",
            cut in 0usize..400,
        ) {
            for magic in [MAGIC, CHUNK_MAGIC] {
                let pair = Some((name.as_str(), label.as_str()));
                let e = envelope_with(magic, pair, &value);
                let opened = open_with(magic, pair, &e);
                proptest::prop_assert_eq!(opened.as_deref(), Some(&value[..]));
                let _ = open_with(magic, pair, &e.slice(..cut.min(e.len())));
                let _ = open_with(magic, None, &Bytes::from(junk.clone()));
                let mut prefixed = magic.to_vec();
                prefixed.extend_from_slice(&junk);
                let _ = open_with(magic, pair, &Bytes::from(prefixed));
            }
        }
    }

    #[test]
    fn keys_are_valid_memcached_keys_whatever_the_labels() {
        let b = Ulid::nil();
        let long = "x y\n".repeat(200);
        for k in [
            postings_key(b, &long, &long),
            postings_key(b, "", ""),
            series_key(b, u32::MAX),
        ] {
            assert!(crate::memcached::valid_key(&k), "{k}");
        }
        assert_ne!(postings_key(b, "ab", "c"), postings_key(b, "a", "bc"));
    }
}
