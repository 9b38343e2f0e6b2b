//! The results cache (`--query-range.response-cache-config`, `--labels.response-cache-config`):
//! where it keeps values (in memory, memcached or Redis) and what it keeps (extents).
//!
//! A split part's answer is kept under a key naming the tenant, the query with every
//! parameter but its range, and the split interval the part lies in. The value is a list of
//! *extents*: stretches of that interval already answered, each with its answer. A request
//! takes what the extents cover and asks the querier only for the gaps; the new answers join
//! the extents. Nothing newer than `--query-range.response-cache-max-freshness` is kept
//! (recent data may still change: a late scrape, a store not yet synced), nor an answer with
//! warnings (a partial response) or one the querier marked `Cache-Control: no-store`.
//!
//! Nothing read from the cache is trusted: a remote cache is shared with other programs and
//! may hand back damaged or foreign values. A value carries a magic number, the full key it
//! was stored under (keys are hashed to fit memcached's 250 bytes) and a CRC-32C of the rest;
//! any mismatch is a miss, counted, never an error of the query.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;
use strata_store::remote_cache::{RemoteClient, RemoteClientConfig};

use crate::response::Matrix;

/// "Strata Frontend Extents", version 1.
const MAGIC: &[u8; 4] = b"SFE1";
/// "Strata Frontend Blob", version 1: a metadata answer.
const BLOB_MAGIC: &[u8; 4] = b"SFB1";

/// `--cache-compression-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    Snappy,
}

/// The YAML of `--query-range.response-cache-config` / `--labels.response-cache-config`.
#[derive(Debug, Clone, PartialEq)]
pub enum CacheConfig {
    /// `type: IN-MEMORY`.
    InMemory {
        max_size_bytes: u64,
        max_items: usize,
        /// How long an entry lives (`validity`; 0: until evicted).
        validity: Duration,
    },
    /// `type: MEMCACHED` or `type: REDIS`, with how long values live (`expiration`).
    Remote {
        client: RemoteClientConfig,
        expiration: Duration,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    config: Option<serde_yaml_ng::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct InMemoryYaml {
    max_size: Option<String>,
    max_size_items: Option<i64>,
    validity: Option<String>,
}

/// Thanos' default `expiration` of a remote results cache entry.
const DEFAULT_EXPIRATION: Duration = Duration::from_secs(24 * 3600);
/// The default `max_size` of an in-memory results cache (Thanos': 100 MB).
const DEFAULT_MAX_SIZE: u64 = 100 * 1024 * 1024;

impl CacheConfig {
    /// Reads the YAML. Empty text: no cache.
    pub fn from_yaml(text: &str) -> Result<Option<CacheConfig>, String> {
        if text.trim().is_empty() {
            return Ok(None);
        }
        let raw: RawConfig = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        match raw.kind.to_ascii_uppercase().as_str() {
            "IN-MEMORY" | "INMEMORY" => {
                let c: InMemoryYaml = match raw.config {
                    Some(v) if !v.is_null() => {
                        serde_yaml_ng::from_value(v).map_err(|e| format!("config: {e}"))?
                    }
                    _ => InMemoryYaml::default(),
                };
                let max_size_bytes = match c.max_size.as_deref().filter(|s| !s.is_empty()) {
                    Some(s) => {
                        strata_model_bytes(s).map_err(|e| format!("config.max_size: {e}"))?
                    }
                    None => DEFAULT_MAX_SIZE,
                };
                let max_items = match c.max_size_items {
                    Some(n) if n < 0 => return Err("config.max_size_items: negative".into()),
                    Some(n) => n as usize,
                    None => 0,
                };
                let validity = match c.validity.as_deref().filter(|s| !s.is_empty()) {
                    Some(s) => go_duration(s).map_err(|e| format!("config.validity: {e}"))?,
                    None => Duration::ZERO,
                };
                Ok(Some(CacheConfig::InMemory {
                    max_size_bytes,
                    max_items,
                    validity,
                }))
            }
            kind @ ("MEMCACHED" | "REDIS") => {
                // `expiration` belongs to the results cache, not to the client: take it out
                // before the client reads the rest strictly.
                let mut config = raw.config.unwrap_or(serde_yaml_ng::Value::Null);
                let mut expiration = DEFAULT_EXPIRATION;
                if let serde_yaml_ng::Value::Mapping(m) = &mut config
                    && let Some(v) = m.remove("expiration")
                {
                    let s = v
                        .as_str()
                        .ok_or_else(|| "config.expiration: not a duration".to_string())?;
                    expiration = go_duration(s).map_err(|e| format!("config.expiration: {e}"))?;
                }
                let client = RemoteClientConfig::from_value(kind, Some(config))
                    .map_err(|e| format!("config: {e}"))?;
                Ok(Some(CacheConfig::Remote { client, expiration }))
            }
            other => Err(format!(
                "type {other:?} is not a results cache type (IN-MEMORY, MEMCACHED or REDIS)"
            )),
        }
    }
}

fn strata_model_bytes(s: &str) -> Result<u64, String> {
    s.parse::<strata_model::ByteSize>()
        .map(strata_model::ByteSize::as_u64)
        .map_err(|e| e.to_string())
}

fn go_duration(s: &str) -> Result<Duration, String> {
    strata_model::Duration::parse_go(s)
        .map(|d| d.to_std())
        .map_err(|e| e.to_string())
}

/// Where values are kept.
#[derive(Debug)]
enum Backend {
    Memory(Mutex<MemoryCache>),
    Remote(RemoteClient),
}

/// A results cache: values by key, with the checks above.
#[derive(Debug)]
pub struct ResultsCache {
    backend: Backend,
    ttl: Duration,
    compression: Compression,
    /// Names the cache in metrics and logs (`query_range`, `labels`).
    pub name: &'static str,
}

impl ResultsCache {
    /// A cache as `config` says; remote clients are created here (they connect lazily).
    pub fn new(
        name: &'static str,
        config: &CacheConfig,
        compression: Compression,
        remote_metrics: &strata_store::remote_cache::RemoteMetrics,
    ) -> Result<ResultsCache, String> {
        let (backend, ttl) = match config {
            CacheConfig::InMemory {
                max_size_bytes,
                max_items,
                validity,
            } => (
                Backend::Memory(Mutex::new(MemoryCache::new(*max_size_bytes, *max_items))),
                *validity,
            ),
            CacheConfig::Remote { client, expiration } => (
                Backend::Remote(RemoteClient::new(client, name, remote_metrics)?),
                *expiration,
            ),
        };
        Ok(ResultsCache {
            backend,
            ttl,
            compression,
            name,
        })
    }

    /// The extents stored under `key`; none when absent or not valid.
    pub async fn get(&self, key: &str) -> Option<Vec<Extent>> {
        let stored = self.storage_key(key);
        let raw = match &self.backend {
            Backend::Memory(m) => m.lock().expect("results cache lock").get(&stored),
            Backend::Remote(r) => r.get_multi(std::slice::from_ref(&stored)).await.pop()?,
        }?;
        decode(&raw, key, self.compression)
    }

    /// Stores `extents` under `key` (in the background for remote caches).
    pub fn set(&self, key: &str, extents: &[Extent]) {
        let stored = self.storage_key(key);
        let value = encode(extents, key, self.compression);
        self.put(stored, value);
    }

    /// A metadata answer stored under `key` (one whole split interval's), if valid.
    pub async fn get_blob(&self, key: &str) -> Option<Bytes> {
        let stored = self.storage_key(key);
        let raw = match &self.backend {
            Backend::Memory(m) => m.lock().expect("results cache lock").get(&stored),
            Backend::Remote(r) => r.get_multi(std::slice::from_ref(&stored)).await.pop()?,
        }?;
        let owned = open_envelope(&raw, BLOB_MAGIC, self.compression)?;
        let mut body: &[u8] = &owned;
        if take_bytes(&mut body)? != key.as_bytes() {
            return None;
        }
        let blob = take_bytes(&mut body)?;
        body.is_empty().then(|| Bytes::copy_from_slice(blob))
    }

    /// Stores a metadata answer under `key`.
    pub fn set_blob(&self, key: &str, blob: &[u8]) {
        let stored = self.storage_key(key);
        let mut body = Vec::with_capacity(key.len() + blob.len() + 8);
        put_bytes(&mut body, key.as_bytes());
        put_bytes(&mut body, blob);
        let value = seal_envelope(body, BLOB_MAGIC, self.compression);
        self.put(stored, value);
    }

    fn put(&self, stored: String, value: Bytes) {
        match &self.backend {
            Backend::Memory(m) => {
                let expires = (!self.ttl.is_zero()).then(|| Instant::now() + self.ttl);
                m.lock()
                    .expect("results cache lock")
                    .set(stored, value, expires);
            }
            Backend::Remote(r) => r.set_async(stored, value, self.ttl),
        }
    }

    /// A key short enough for memcached, from the full key: a prefix naming Strata's format,
    /// then two independent 64-bit hashes. The full key is checked again on reading.
    fn storage_key(&self, key: &str) -> String {
        let a = xxhash(key.as_bytes(), 0);
        let b = xxhash(key.as_bytes(), 0x9e37_79b9_7f4a_7c15);
        format!("strata-fe1:{}:{a:016x}{b:016x}", self.name)
    }
}

fn xxhash(b: &[u8], seed: u64) -> u64 {
    // FNV-1a folded with a seed: the key is checked in full on reading, so this only
    // spreads keys; it does not have to resist collisions.
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for &x in b {
        h ^= u64::from(x);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^ (h >> 29)
}

/// A stretch `[start, end]` (milliseconds) of a split interval whose answer is known.
#[derive(Debug, Clone, PartialEq)]
pub struct Extent {
    pub start: i64,
    pub end: i64,
    pub matrix: Matrix,
}

/// A stretch of a request: answered by the cache, or a gap to ask the querier for.
#[derive(Debug)]
pub enum Piece {
    Cached(Matrix),
    Gap(i64, i64),
}

/// What the extents give of `[start, end]` at `step` (steps on multiples of `step`), in time
/// order: the cached answers, cut to the range, and the gaps between them. An extent whose
/// answer does not read (a damaged remote value) counts as absent: its steps are fetched.
pub fn partition(start: i64, end: i64, step: i64, extents: &[Extent]) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut cursor = start;
    for e in extents {
        if cursor > end || e.start > end {
            break;
        }
        if e.end < cursor {
            continue;
        }
        let Ok(m) = e.matrix.cut(cursor.max(e.start), end.min(e.end)) else {
            continue;
        };
        if e.start > cursor {
            out.push(Piece::Gap(cursor, step_before(e.start, step)));
        }
        out.push(Piece::Cached(m));
        cursor = step_after(e.end, step);
    }
    if cursor <= end {
        out.push(Piece::Gap(cursor, end));
    }
    out
}

/// Joins new answers into the extents (sorted by start, overlapping or touching ones made
/// one) and drops everything after `newest` (the freshness limit).
pub fn merge_extents(mut extents: Vec<Extent>, step: i64, newest: i64) -> Vec<Extent> {
    extents.sort_by_key(|e| e.start);
    let mut out: Vec<Extent> = Vec::with_capacity(extents.len());
    for e in extents {
        match out.last_mut() {
            Some(last) if e.start <= last.end.saturating_add(step) => {
                let m = std::mem::take(&mut last.matrix);
                match Matrix::merge(vec![m.clone(), e.matrix]) {
                    Ok(merged) => {
                        last.matrix = merged;
                        last.end = last.end.max(e.end);
                    }
                    // Keep what was there; the new answer is only not cached.
                    Err(_) => last.matrix = m,
                }
            }
            _ => out.push(e),
        }
    }
    let limit = newest.div_euclid(step) * step;
    out.retain_mut(|e| {
        if e.end > limit {
            e.end = limit;
            match e.matrix.cut(e.start, limit) {
                Ok(m) => e.matrix = m,
                Err(_) => return false,
            }
        }
        e.start <= e.end
    });
    out
}

/// The last multiple of `step` before `t`.
fn step_before(t: i64, step: i64) -> i64 {
    (t - 1).div_euclid(step) * step
}

/// The first multiple of `step` after `t`.
fn step_after(t: i64, step: i64) -> i64 {
    (t.div_euclid(step) + 1) * step
}

fn encode(extents: &[Extent], key: &str, compression: Compression) -> Bytes {
    let mut body = Vec::new();
    put_bytes(&mut body, key.as_bytes());
    body.extend_from_slice(&(extents.len() as u32).to_le_bytes());
    for e in extents {
        body.extend_from_slice(&e.start.to_le_bytes());
        body.extend_from_slice(&e.end.to_le_bytes());
        put_bytes(&mut body, &e.matrix.to_json());
    }
    seal_envelope(body, MAGIC, compression)
}

/// Compresses `body` as asked and wraps it: magic, compression, CRC-32C of what follows.
fn seal_envelope(body: Vec<u8>, magic: &[u8; 4], compression: Compression) -> Bytes {
    let body = match compression {
        Compression::None => body,
        Compression::Snappy => snap::raw::Encoder::new()
            .compress_vec(&body)
            .unwrap_or_default(),
    };
    let mut out = Vec::with_capacity(body.len() + 9);
    out.extend_from_slice(magic);
    out.push(compression as u8);
    out.extend_from_slice(&crc32(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Bytes::from(out)
}

/// The body of a value sealed by [`seal_envelope`]; `None` when anything does not check.
fn open_envelope(raw: &Bytes, magic: &[u8; 4], compression: Compression) -> Option<Bytes> {
    let rest = raw.strip_prefix(magic)?;
    let (&kind, rest) = rest.split_first()?;
    if kind != compression as u8 {
        return None;
    }
    let (crc, body) = rest.split_at_checked(4)?;
    if crc32(body).to_le_bytes() != crc {
        return None;
    }
    match compression {
        // A slice of the value, not a copy: the in-memory cache hands out its own bytes.
        Compression::None => Some(raw.slice(raw.len() - body.len()..)),
        Compression::Snappy => snap::raw::Decoder::new()
            .decompress_vec(body)
            .ok()
            .map(Bytes::from),
    }
}

fn decode(raw: &Bytes, key: &str, compression: Compression) -> Option<Vec<Extent>> {
    let owned = open_envelope(raw, MAGIC, compression)?;
    let mut body: &[u8] = &owned;
    if take_bytes(&mut body)? != key.as_bytes() {
        return None;
    }
    let n = u32::from_le_bytes(take(&mut body, 4)?.try_into().ok()?) as usize;
    let mut extents = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let start = i64::from_le_bytes(take(&mut body, 8)?.try_into().ok()?);
        let end = i64::from_le_bytes(take(&mut body, 8)?.try_into().ok()?);
        let text = take_bytes(&mut body)?;
        let start_at = owned.len() - body.len() - text.len();
        let matrix = Matrix::parse_bytes(&owned.slice(start_at..start_at + text.len())).ok()?;
        extents.push(Extent { start, end, matrix });
    }
    body.is_empty().then_some(extents)
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, tail) = b.split_at_checked(n)?;
    *b = tail;
    Some(head)
}

fn take_bytes<'a>(b: &mut &'a [u8]) -> Option<&'a [u8]> {
    let n = u32::from_le_bytes(take(b, 4)?.try_into().ok()?) as usize;
    take(b, n)
}

/// CRC-32C (Castagnoli, with the CPU's instruction where there is one): a cached answer of
/// tens of megabytes is checked in milliseconds.
fn crc32(b: &[u8]) -> u32 {
    crc32c::crc32c(b)
}

/// An in-memory cache bounded by bytes and items, least recently used out first.
#[derive(Debug)]
struct MemoryCache {
    max_bytes: u64,
    max_items: usize,
    bytes: u64,
    tick: u64,
    items: HashMap<String, MemoryEntry>,
    order: BTreeMap<u64, String>,
}

#[derive(Debug)]
struct MemoryEntry {
    value: Bytes,
    expires: Option<Instant>,
    tick: u64,
}

/// What an entry costs beyond its key and value (map and order bookkeeping).
const ENTRY_OVERHEAD: u64 = 128;

impl MemoryCache {
    fn new(max_bytes: u64, max_items: usize) -> Self {
        MemoryCache {
            max_bytes,
            max_items,
            bytes: 0,
            tick: 0,
            items: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    fn cost(key: &str, value: &Bytes) -> u64 {
        2 * key.len() as u64 + value.len() as u64 + ENTRY_OVERHEAD
    }

    fn get(&mut self, key: &str) -> Option<Bytes> {
        let now = Instant::now();
        let expired = self
            .items
            .get(key)
            .is_some_and(|e| e.expires.is_some_and(|t| t <= now));
        if expired {
            self.remove(key);
            return None;
        }
        self.tick += 1;
        let tick = self.tick;
        let e = self.items.get_mut(key)?;
        self.order.remove(&e.tick);
        e.tick = tick;
        self.order.insert(tick, key.to_string());
        Some(e.value.clone())
    }

    fn set(&mut self, key: String, value: Bytes, expires: Option<Instant>) {
        self.remove(&key);
        let cost = Self::cost(&key, &value);
        if cost > self.max_bytes {
            return;
        }
        while self.bytes + cost > self.max_bytes
            || (self.max_items > 0 && self.items.len() >= self.max_items)
        {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(e) = self.items.remove(&oldest) {
                self.bytes -= Self::cost(&oldest, &e.value);
            }
        }
        self.tick += 1;
        self.bytes += cost;
        self.order.insert(self.tick, key.clone());
        self.items.insert(
            key,
            MemoryEntry {
                value,
                expires,
                tick: self.tick,
            },
        );
    }

    fn remove(&mut self, key: &str) {
        if let Some(e) = self.items.remove(key) {
            self.order.remove(&e.tick);
            self.bytes -= Self::cost(key, &e.value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(points: &[i64]) -> Matrix {
        let values: Vec<String> = points
            .iter()
            .map(|t| format!("[{}.{:03},\"{t}\"]", t / 1000, t % 1000))
            .collect();
        let json = format!(
            r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{"a":"1"}},"values":[{}]}}]}}}}"#,
            values.join(",")
        );
        Matrix::parse(json.as_bytes()).unwrap()
    }

    /// The answers' JSON: what the tests compare (the same samples may be held in different
    /// runs).
    fn text(m: &[Matrix]) -> Vec<String> {
        m.iter()
            .map(|m| String::from_utf8(m.to_json()).unwrap())
            .collect()
    }

    fn extent(start: i64, end: i64) -> Extent {
        let points: Vec<i64> = (start..=end).step_by(10).collect();
        Extent {
            start,
            end,
            matrix: matrix(&points),
        }
    }

    #[test]
    fn partition_takes_what_extents_cover_and_asks_for_the_gaps() {
        /// The pieces as text: gaps as `(start, end)`, cached answers as their JSON.
        fn show(p: Vec<Piece>) -> Vec<String> {
            p.into_iter()
                .map(|p| match p {
                    Piece::Gap(s, e) => format!("gap {s}..{e}"),
                    Piece::Cached(m) => text(&[m]).remove(0),
                })
                .collect()
        }
        let extents = vec![extent(20, 40), extent(70, 80)];
        assert_eq!(
            show(partition(0, 100, 10, &extents)),
            vec![
                "gap 0..10".to_string(),
                text(&[matrix(&[20, 30, 40])]).remove(0),
                "gap 50..60".to_string(),
                text(&[matrix(&[70, 80])]).remove(0),
                "gap 90..100".to_string(),
            ]
        );
        // A request inside one extent is answered whole.
        assert_eq!(
            show(partition(30, 40, 10, &extents)),
            text(&[matrix(&[30, 40])])
        );
        // No extents: one gap.
        assert_eq!(show(partition(0, 100, 10, &[])), vec!["gap 0..100"]);
        // An extent that does not read is fetched again, in one gap with its neighbours.
        let mut broken = extent(20, 40);
        broken.matrix = Matrix::parse(
            br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[0.01,"1"],[0.03,"1"],[0.02,"1"],[0.05,"1"]]}]}}"#,
        )
        .unwrap();
        assert_eq!(
            show(partition(0, 100, 10, &[broken, extent(70, 80)])),
            vec![
                "gap 0..60".to_string(),
                text(&[matrix(&[70, 80])]).remove(0),
                "gap 90..100".to_string(),
            ]
        );
    }

    #[test]
    fn extents_join_when_they_touch_and_stop_at_the_freshness_limit() {
        let merged = merge_extents(vec![extent(50, 60), extent(0, 30), extent(70, 90)], 10, 85);
        assert_eq!(merged.len(), 2);
        assert_eq!((merged[0].start, merged[0].end), (0, 30));
        assert_eq!((merged[1].start, merged[1].end), (50, 80));
        assert_eq!(
            text(std::slice::from_ref(&merged[1].matrix)),
            text(&[matrix(&[50, 60, 70, 80])])
        );
        // Entirely too fresh: nothing kept.
        assert!(merge_extents(vec![extent(90, 100)], 10, 85).is_empty());
    }

    #[test]
    fn values_round_trip_and_anything_else_is_a_miss() {
        for compression in [Compression::None, Compression::Snappy] {
            let extents = vec![extent(0, 40), extent(70, 90)];
            let v = encode(&extents, "k", compression);
            let back = decode(&v, "k", compression).unwrap();
            assert_eq!(back.len(), extents.len());
            for (a, b) in back.iter().zip(&extents) {
                assert_eq!((a.start, a.end), (b.start, b.end));
                assert_eq!(
                    text(std::slice::from_ref(&a.matrix)),
                    text(std::slice::from_ref(&b.matrix))
                );
            }
            assert_eq!(decode(&v, "other key", compression), None);
            for cut in 0..v.len() {
                assert_eq!(decode(&v.slice(..cut), "k", compression), None);
            }
            let mut bad = v.to_vec();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert_eq!(decode(&Bytes::from(bad.clone()), "k", compression), None);
        }
    }

    #[test]
    fn memory_cache_evicts_least_recently_used_within_its_bounds() {
        let mut c = MemoryCache::new(3 * (ENTRY_OVERHEAD + 12), 0);
        let v = Bytes::from_static(b"0123456789");
        c.set("a".into(), v.clone(), None);
        c.set("b".into(), v.clone(), None);
        c.set("c".into(), v.clone(), None);
        assert!(c.get("a").is_some());
        c.set("d".into(), v.clone(), None);
        assert!(c.get("b").is_none(), "b was least recently used");
        assert!(c.get("a").is_some() && c.get("c").is_some() && c.get("d").is_some());
        assert!(c.bytes <= c.max_bytes);
        let mut c = MemoryCache::new(1 << 20, 2);
        for k in ["a", "b", "c"] {
            c.set(k.into(), v.clone(), None);
        }
        assert_eq!(c.items.len(), 2);
        c.set("e".into(), v.clone(), Some(Instant::now()));
        assert!(c.get("e").is_none(), "expired");
    }

    #[test]
    fn cache_configs_are_read_strictly() {
        let c = CacheConfig::from_yaml(
            "type: IN-MEMORY\nconfig:\n  max_size: 1MB\n  max_size_items: 10\n  validity: 1h\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            c,
            CacheConfig::InMemory {
                max_size_bytes: 1024 * 1024,
                max_items: 10,
                validity: Duration::from_secs(3600)
            }
        );
        assert_eq!(CacheConfig::from_yaml("").unwrap(), None);
        let c = CacheConfig::from_yaml(
            "type: MEMCACHED\nconfig:\n  addresses: [127.0.0.1:11211]\n  expiration: 2h\n",
        )
        .unwrap()
        .unwrap();
        assert!(
            matches!(c, CacheConfig::Remote { expiration, .. } if expiration == Duration::from_secs(7200))
        );
        for bad in [
            "type: FILE\n",
            "type: IN-MEMORY\nconfig:\n  max_size: lots\n",
            "type: IN-MEMORY\nconfig:\n  bogus: 1\n",
            "type: MEMCACHED\nconfig:\n  bogus: 1\n",
        ] {
            assert!(CacheConfig::from_yaml(bad).is_err(), "{bad}");
        }
    }
}
