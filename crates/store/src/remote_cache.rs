//! The index cache in memcached (`--index-cache.config` with `type: MEMCACHED`), and
//! [`IndexCacheBackend`], which blocks use whichever cache is configured.
//!
//! A remote cache is shared: by several gateways, across restarts, perhaps with other
//! programs. So nothing read from it is trusted. Keys carry a Strata prefix and version
//! (`strata1:`), so a Thanos gateway on the same servers (whose values are encoded otherwise)
//! never reads ours nor we its; every value is wrapped in an envelope (a magic number and the
//! CRC32C of the rest) and a postings value also names its label pair, because its key holds
//! only a hash of it (memcached keys are at most 250 bytes). A value that fails any check is
//! a miss, counted in `strata_index_cache_remote_rejected_total`, never an error of the query.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use ulid::Ulid;

use crate::cache::{
    CacheKey, IndexCache, IndexCacheBackendConfig, IndexCacheSpec, ItemType, TypeLabel,
};
use crate::memcached::Memcached;

/// Starts every value: "Strata Index Cache", version 1.
const MAGIC: &[u8; 4] = b"SIC1";

/// The index cache in memcached.
#[derive(Debug)]
pub struct RemoteIndexCache {
    client: Memcached,
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

fn put_uvarint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// `MAGIC`, CRC32C of the rest, then (for postings) the label pair, then the value.
fn envelope(pair: Option<(&str, &str)>, value: &[u8]) -> Bytes {
    let mut body = BytesMut::with_capacity(value.len() + 32);
    if let Some((n, v)) = pair {
        put_uvarint(&mut body, n.len() as u64);
        body.put_slice(n.as_bytes());
        put_uvarint(&mut body, v.len() as u64);
        body.put_slice(v.as_bytes());
    }
    body.put_slice(value);
    let mut out = BytesMut::with_capacity(body.len() + 8);
    out.put_slice(MAGIC);
    out.put_u32(crc32c::crc32c(&body));
    out.put_slice(&body);
    out.freeze()
}

/// The value inside an envelope, if it is whole and (for postings) of the pair asked for.
fn open(pair: Option<(&str, &str)>, data: &Bytes) -> Option<Bytes> {
    if data.len() < 8 || &data[..4] != MAGIC {
        return None;
    }
    let crc = u32::from_be_bytes(data[4..8].try_into().ok()?);
    let body = data.slice(8..);
    if crc32c::crc32c(&body) != crc {
        return None;
    }
    let mut at = 0;
    if let Some((n, v)) = pair {
        for want in [n, v] {
            let (len, used) = strata_tsdb::encoding::read_uvarint(&body[at..]).ok()?;
            at += used;
            let end = at.checked_add(usize::try_from(len).ok()?)?;
            if body.get(at..end)? != want.as_bytes() {
                return None;
            }
            at = end;
        }
    }
    Some(body.slice(at..))
}

impl RemoteIndexCache {
    /// A cache over `client`; items expire after `ttl`.
    pub fn new(client: Memcached, ttl: Duration, registry: Option<&mut Registry>) -> Self {
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
            .map(|(g, &pair)| {
                let g = g?;
                let v = open(Some(pair), &g);
                if v.is_none() {
                    self.rejected.inc();
                }
                v
            })
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
            .map(|g| {
                let g = g?;
                let v = open(None, &g);
                if v.is_none() {
                    self.rejected.inc();
                }
                v
            })
            .collect();
        self.count(ItemType::Series, ids.len(), out.iter().flatten().count());
        out
    }

    /// `(requests, hits)` so far for an item type.
    pub fn stats(&self, t: ItemType) -> (u64, u64) {
        (
            self.requests.get_or_create(&label(t)).get(),
            self.hits.get_or_create(&label(t)).get(),
        )
    }
}

/// The index cache blocks use: in memory or in memcached, with Thanos' `enabled_items`.
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
    /// The cache `spec` asks for; its metrics go into `registry` when given. A memcached
    /// cache needs a Tokio runtime (its client starts tasks).
    pub fn new(spec: &IndexCacheSpec, registry: Option<&mut Registry>) -> Result<Self, String> {
        let kind = match &spec.backend {
            IndexCacheBackendConfig::InMemory(c) => Kind::InMemory(IndexCache::new(*c, registry)),
            IndexCacheBackendConfig::Memcached { client, ttl } => {
                let mut registry = registry;
                let client =
                    Memcached::new(client.clone(), "index-cache", registry.as_deref_mut())?;
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

    /// The memcached cache, when that is the backend.
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
