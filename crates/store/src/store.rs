//! [`BucketStore`]: the Store API over every block of a bucket.
//!
//! A sync ([`BucketStore::sync_blocks`]) replaces the set of served blocks atomically; requests
//! in flight keep the set they started with. A request selects blocks per external label set
//! and resolution (`BlockSet::blocks_for`, Thanos' `getFor`), opens a cursor per block
//! concurrently (`query::BlockCursor`: postings, then series entries decoded a batch
//! at a time in final-label order), merges the cursors k-way into one sorted stream (series
//! with equal labels become one series with the chunks of all blocks), and fetches chunks batch
//! by batch as it streams the answer, each batch's reads reserved in the chunk pool first
//! (the `pool` module). Memory per request is a batch of decoded series over all its blocks and a
//! batch of output series, not the answer; chunk bytes over all requests are bounded by
//! `--chunk-pool-size`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tracing::Instrument as _;

use futures::{StreamExt, TryStreamExt};
use prometheus_client::registry::Registry;
use smallvec::SmallVec;
use strata_model::{Labels, Matcher};
use strata_objstore::Bucket;
use strata_runtime::task::CallTask;
use strata_storepb::convert::{encoding_from_tsdb, labels_from_model, pack_any, unpack_any};
use strata_storepb::hintspb;
use strata_storepb::thanos::info::{InfoResponse, StoreInfo, TsdbInfo};
use strata_storepb::thanos::{
    Aggr, AggrChunk, Chunk, EncodedSeries, LabelNamesRequest, LabelNamesResponse,
    LabelValuesRequest, LabelValuesResponse, PartialResponseStrategy, RawWireChunk, Series,
    SeriesBatch, SeriesRequest, SeriesResponse, ZLabelSet, series_response,
};
use strata_tsdb::{BlockMeta, ChunkMeta, ChunkRef, Encoding, RawChunk};
use tokio::sync::{Semaphore, mpsc};
use ulid::Ulid;

use crate::block::{BucketBlock, FetchStats};
use crate::cache::{IndexCacheBackendConfig, IndexCacheConfig, IndexCacheSpec};
use crate::chunk_cache::{ChunkCacheBackend, ChunkCacheConfig};
use crate::error::StoreError;
use crate::matchers::MatcherCache;
use crate::metrics::{CHUNKS, POSTINGS, Reason, SERIES, StoreMetrics};
use crate::packed::PackedLabels;
use crate::pool::{Budget, ChunkPool, ChunkPoolStats};
use crate::query::{
    BlockCursor, BlockSeries, RequestLimits, SERIES_BATCH, SeriesQuery, for_each_series,
    split_ext_matchers,
};
use crate::remote_cache::{IndexCacheBackend, RemoteClientConfig, RemoteMetrics};
use crate::sync::{FilterConfig, MetaSyncer, Synced};

/// Blocks whose series are selected at once for one request.
const BLOCK_CONCURRENCY: usize = 32;
/// Range requests to object storage in flight at once, over all requests. Unbounded,
/// concurrent queries over many blocks multiply into hundreds of reads, each a blocking-pool
/// thread on FILESYSTEM buckets (measured: 188 threads and about +17 MiB RSS for 4 clients
/// over 120 blocks); beyond a few dozen, more parallel reads add memory, not throughput.
pub const MAX_CONCURRENT_READS: usize = 16;
/// Blocks whose chunks are fetched at once for one batch: each may read up to
/// [`crate::block::MAX_MERGED`] bytes per request, so this bounds a request's read buffers.
const CHUNK_FETCH_CONCURRENCY: usize = 4;
/// Output series whose chunks are fetched in one round (fewer when the chunk pool is small).
const OUTPUT_BATCH: usize = 1_000;
/// Series entries a request decodes per round, over all its blocks: each block's cursor
/// decodes this many divided by the blocks queried (at least [`MIN_BLOCK_BATCH`]) per round,
/// and holds up to three rounds (merging, decoded ahead, decoding). Decoded series (packed
/// labels and chunk metas) are what grew with data before streaming; this caps them at a few
/// MiB per request. Fewer means more decode rounds per block for queries over many blocks,
/// each repeating its symbol lookups.
const SERIES_IN_FLIGHT: usize = 8_192;
/// Series in a Series call's first output batch when the client asks for one series per
/// frame (batched calls use four frames, see `series_inner`).
const FIRST_OUTPUT_BATCH: usize = 64;
/// Series entries a request decodes in its first round, over all its blocks; each later
/// round of a block doubles, up to its share of [`SERIES_IN_FLIGHT`]. Frames wait for the
/// rounds: for an instant query over 5,000 series of one block, decoding all of them in one
/// round held the first frame back by 2.8 ms while the querier, which evaluates frames as
/// they arrive, waited.
const FIRST_ROUND_SERIES: usize = 512;
/// Series entries a block decodes per round at least, so a query over very many blocks still
/// reads series entries in batches rather than one round trip per few series.
const MIN_BLOCK_BATCH: usize = 32;

/// Per-request limits (`--store.limits.*`). Zero means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub request_series: u64,
    pub request_samples: u64,
    /// `--store.grpc.downloaded-bytes-limit`: bytes touched or fetched per request.
    pub downloaded_bytes: u64,
}

/// Everything a [`BucketStore`] is configured with.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `--data-dir`: index-headers live in `<data-dir>/<ULID>/index-header`.
    pub data_dir: PathBuf,
    pub filter: FilterConfig,
    /// `--index-cache-size` or `--index-cache.config`.
    pub index_cache: IndexCacheSpec,
    pub limits: Limits,
    /// `--store.grpc.series-max-concurrency`.
    pub max_concurrency: usize,
    /// `--block-sync-concurrency`: index-headers built at once.
    pub block_sync_concurrency: usize,
    /// `--block-meta-fetch-concurrency`.
    pub meta_fetch_concurrency: usize,
    /// `--store.enable-index-header-lazy-reader`: load index-headers on first use and release
    /// idle ones; otherwise they are loaded (in the background) as soon as blocks are synced.
    pub lazy_index_header: bool,
    /// How long an index-header may stay unused before it is released (lazy mode;
    /// `--store.index-header-lazy-reader-idle-timeout`, 0: never released).
    pub idle_timeout: Duration,
    /// `--debug.estimated-max-series-size` and `--debug.estimated-max-chunk-size`: how much to
    /// read for one series entry or chunk when the block's meta.json has no index stats (a
    /// read that falls short is made again, longer).
    pub estimated_max_series_size: u64,
    pub estimated_max_chunk_size: u64,
    /// `--chunk-pool-size`: chunk bytes held by all requests at once (0: unbounded). A request
    /// reserves room for every buffer a batch of chunk reads can return before reading
    /// (waiting for it, or `ResourceExhausted` when one series alone needs more than the pool),
    /// and the buffers give it back when the gRPC stream has encoded the last frame using them,
    /// so chunk memory under load is bounded by this, not by how much data queries touch.
    pub chunk_pool_bytes: u64,
    /// The caching bucket's chunk cache (`--store.caching-bucket.config` with
    /// `type: IN-MEMORY`, `MEMCACHED` or `REDIS`); `None`: chunks are read from the bucket
    /// every time.
    pub chunk_cache: Option<ChunkCacheConfig>,
    /// `--matcher-cache-size`: compiled regex matchers kept (0: none).
    pub matcher_cache_size: usize,
}

impl StoreConfig {
    /// Thanos' defaults, with the given data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            data_dir: data_dir.into(),
            filter: FilterConfig::default(),
            index_cache: IndexCacheSpec::in_memory(IndexCacheConfig::with_size(250 << 20)),
            limits: Limits::default(),
            max_concurrency: 20,
            block_sync_concurrency: 20,
            meta_fetch_concurrency: 32,
            lazy_index_header: false,
            idle_timeout: Duration::from_secs(5 * 60),
            estimated_max_series_size: crate::block::ESTIMATED_MAX_SERIES_SIZE,
            estimated_max_chunk_size: crate::block::ESTIMATED_MAX_CHUNK_SIZE,
            chunk_pool_bytes: 2 << 30,
            chunk_cache: None,
            matcher_cache_size: 0,
        }
    }
}

/// Blocks sharing one external label set, by resolution.
#[derive(Debug, Clone)]
struct Group {
    ext: Labels,
    /// Resolutions present, coarsest first.
    resolutions: Vec<i64>,
    /// Per resolution, blocks sorted by min time.
    blocks: Vec<Vec<Arc<BucketBlock>>>,
}

/// The blocks served at one moment.
#[derive(Debug, Clone, Default)]
pub struct BlockSet {
    blocks: BTreeMap<Ulid, Arc<BucketBlock>>,
    groups: Vec<Group>,
}

impl BlockSet {
    fn new(blocks: BTreeMap<Ulid, Arc<BucketBlock>>) -> Self {
        let mut by_ext: BTreeMap<Labels, BTreeMap<i64, Vec<Arc<BucketBlock>>>> = BTreeMap::new();
        for b in blocks.values() {
            by_ext
                .entry(b.ext.clone())
                .or_default()
                .entry(b.meta.resolution())
                .or_default()
                .push(b.clone());
        }
        let groups = by_ext
            .into_iter()
            .map(|(ext, by_res)| {
                let mut res: Vec<(i64, Vec<Arc<BucketBlock>>)> = by_res.into_iter().collect();
                res.sort_by_key(|r| std::cmp::Reverse(r.0));
                for (_, bs) in &mut res {
                    bs.sort_by_key(|b| (b.meta.min_time, b.id));
                }
                Group {
                    ext,
                    resolutions: res.iter().map(|r| r.0).collect(),
                    blocks: res.into_iter().map(|r| r.1).collect(),
                }
            })
            .collect();
        BlockSet { blocks, groups }
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Thanos' `getFor`: the blocks covering `[mint, maxt]` at the coarsest resolution not
    /// above `max_res`, with gaps filled recursively from finer resolutions.
    fn get_for(g: &Group, mint: i64, maxt: i64, max_res: i64, out: &mut Vec<Arc<BucketBlock>>) {
        if mint > maxt {
            return;
        }
        let Some(i) = g.resolutions.iter().position(|&r| r <= max_res) else {
            return;
        };
        let finer = g.resolutions.get(i + 1).copied();
        let mut start = mint;
        for b in &g.blocks[i] {
            // Blocks are half-open: [min_time, max_time).
            if b.meta.max_time <= mint {
                continue;
            }
            if b.meta.min_time > maxt {
                break;
            }
            if let Some(f) = finer {
                Self::get_for(g, start, b.meta.min_time - 1, f, out);
            }
            out.push(b.clone());
            start = start.max(b.meta.max_time);
        }
        if let Some(f) = finer {
            Self::get_for(g, start, maxt, f, out);
        }
    }

    /// Blocks to query with the index matchers left after external-label matchers, which
    /// select blocks instead.
    fn blocks_for(
        &self,
        mint: i64,
        maxt: i64,
        max_res: i64,
        matchers: &[Matcher],
        block_matchers: &[Matcher],
    ) -> Vec<(Arc<BucketBlock>, Vec<Matcher>)> {
        let mut out = Vec::new();
        for g in &self.groups {
            let Some(rest) = split_ext_matchers(matchers, &g.ext) else {
                continue;
            };
            let mut bs = Vec::new();
            Self::get_for(g, mint, maxt, max_res, &mut bs);
            for b in bs {
                if !block_matchers.is_empty() && !block_matches(&b, block_matchers) {
                    continue;
                }
                out.push((b, rest.clone()));
            }
        }
        out
    }

    /// Blocks of every resolution overlapping `[mint, maxt]` (label calls).
    fn overlapping(
        &self,
        mint: i64,
        maxt: i64,
        matchers: &[Matcher],
        block_matchers: &[Matcher],
    ) -> Vec<(Arc<BucketBlock>, Vec<Matcher>)> {
        let mut out = Vec::new();
        for g in &self.groups {
            let Some(rest) = split_ext_matchers(matchers, &g.ext) else {
                continue;
            };
            for b in g.blocks.iter().flatten() {
                if b.meta.min_time > maxt || b.meta.max_time <= mint {
                    continue;
                }
                if !block_matchers.is_empty() && !block_matches(b, block_matchers) {
                    continue;
                }
                out.push((b.clone(), rest.clone()));
            }
        }
        out
    }
}

/// Hints' block matchers see the external labels and `__block_id`.
fn block_matches(b: &BucketBlock, ms: &[Matcher]) -> bool {
    let id = b.id.to_string();
    ms.iter().all(|m| {
        let v = if m.name() == "__block_id" {
            id.as_str()
        } else {
            b.ext.get(m.name()).unwrap_or("")
        };
        m.matches(v)
    })
}

/// What a sync changed.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    pub loaded: usize,
    pub added: Vec<Ulid>,
    pub dropped: Vec<Ulid>,
    pub states: BTreeMap<&'static str, usize>,
}

/// What a Series call did, for callers and tests.
#[derive(Debug, Default)]
pub struct SeriesOutcome {
    pub series: usize,
    pub chunks: usize,
    pub blocks: Vec<Ulid>,
    pub stats: Arc<FetchStats>,
}

/// The store gateway's Store API implementation over a bucket.
#[derive(Debug)]
pub struct BucketStore {
    bucket: Bucket,
    config: StoreConfig,
    set: RwLock<Arc<BlockSet>>,
    syncer: tokio::sync::Mutex<MetaSyncer>,
    cache: Arc<IndexCacheBackend>,
    chunk_cache: Option<Arc<ChunkCacheBackend>>,
    matchers: MatcherCache,
    metrics: StoreMetrics,
    gate: Arc<Semaphore>,
    /// Object storage reads in flight, over all requests (see [`MAX_CONCURRENT_READS`]).
    reads: Arc<Semaphore>,
    /// `--chunk-pool-size` (see [`crate::pool`]); `None` when 0 (unbounded).
    chunk_pool: Option<ChunkPool>,
}

/// Where a Series call sends its frames.
pub type SeriesSink = strata_storepb::server::SeriesSender;

impl BucketStore {
    /// A store over `bucket`. Metrics go into `registry` when given. No IO happens here; call
    /// [`BucketStore::sync_blocks`] before serving.
    pub fn new(
        bucket: Bucket,
        config: StoreConfig,
        registry: Option<&mut Registry>,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| StoreError::io("create directory", &config.data_dir, e))?;
        let mut registry = registry;
        let metrics = match registry.as_deref_mut() {
            Some(r) => StoreMetrics::register(r),
            None => StoreMetrics::unregistered(),
        };
        // One set of client metrics per kind of cache server for both caches, registered
        // only for the kinds in use.
        let remote_configs: Vec<&RemoteClientConfig> = [
            match &config.index_cache.backend {
                IndexCacheBackendConfig::Remote { client, .. } => Some(client),
                IndexCacheBackendConfig::InMemory(_) => None,
            },
            config.chunk_cache.as_ref().and_then(|c| c.remote.as_ref()),
        ]
        .into_iter()
        .flatten()
        .collect();
        let remote = RemoteMetrics::new(registry.as_deref_mut(), &remote_configs);
        let cache = IndexCacheBackend::new(&config.index_cache, registry.as_deref_mut(), &remote)
            .map_err(|e| StoreError::Config(format!("--index-cache.config: {e}")))?;
        let chunk_cache =
            match config.chunk_cache.clone() {
                Some(c) => Some(ChunkCacheBackend::new(c, registry, &remote).map_err(|e| {
                    StoreError::Config(format!("--store.caching-bucket.config: {e}"))
                })?),
                None => None,
            };
        let max = config.max_concurrency.max(1);
        metrics.gate_max.set(max as i64);
        let syncer = MetaSyncer::new(
            bucket.clone(),
            config.filter.clone(),
            config.meta_fetch_concurrency,
            metrics.clone(),
        );
        let chunk_pool = (config.chunk_pool_bytes > 0)
            .then(|| ChunkPool::new(config.chunk_pool_bytes, &metrics));
        Ok(BucketStore {
            matchers: MatcherCache::new(config.matcher_cache_size),
            reads: Arc::new(Semaphore::new(MAX_CONCURRENT_READS)),
            chunk_pool,
            bucket,
            config,
            set: RwLock::new(Arc::new(BlockSet::default())),
            syncer: tokio::sync::Mutex::new(syncer),
            cache: Arc::new(cache),
            chunk_cache: chunk_cache.map(Arc::new),
            metrics,
            gate: Arc::new(Semaphore::new(max)),
        })
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    pub fn cache(&self) -> &IndexCacheBackend {
        &self.cache
    }

    /// The compiled regex matchers kept (`--matcher-cache-size`).
    pub fn matcher_cache(&self) -> &MatcherCache {
        &self.matchers
    }

    /// The caching bucket's chunk cache, when configured.
    pub fn chunk_cache(&self) -> Option<&ChunkCacheBackend> {
        self.chunk_cache.as_deref()
    }

    /// What the chunk pool holds now and held at most; `None` without a pool.
    pub fn chunk_pool_stats(&self) -> Option<ChunkPoolStats> {
        self.chunk_pool.as_ref().map(ChunkPool::stats)
    }

    /// The blocks served now.
    pub fn blocks(&self) -> Arc<BlockSet> {
        self.set.read().expect("block set lock").clone()
    }

    /// The metas of the blocks served now (Thanos' "loaded" blocks), by ULID.
    pub fn loaded_metas(&self) -> Vec<BlockMeta> {
        self.blocks()
            .blocks
            .values()
            .map(|b| b.meta.clone())
            .collect()
    }

    /// ULIDs of the blocks served now.
    pub fn block_ids(&self) -> Vec<Ulid> {
        self.blocks().blocks.keys().copied().collect()
    }

    /// Index-headers currently held in memory.
    pub fn loaded_headers(&self) -> usize {
        self.blocks()
            .blocks
            .values()
            .filter(|b| b.header_loaded())
            .count()
    }

    /// Syncs the served blocks with the bucket. New blocks are served at once; their
    /// index-headers are built (or loaded, without the lazy reader) in the background.
    pub async fn sync_blocks(self: &Arc<Self>) -> Result<SyncReport, StoreError> {
        let Synced { metas, states } = self.syncer.lock().await.sync().await?;
        let old = self.blocks();
        let mut next = BTreeMap::new();
        let mut added = Vec::new();
        for (id, meta) in metas {
            match old.blocks.get(&id) {
                Some(b) => {
                    next.insert(id, b.clone());
                }
                None => {
                    let b = Arc::new(BucketBlock::new(
                        meta,
                        self.bucket.clone(),
                        &self.config,
                        self.cache.clone(),
                        self.metrics.clone(),
                        self.reads.clone(),
                        self.chunk_cache.clone(),
                    ));
                    added.push(b.clone());
                    next.insert(id, b);
                }
            }
        }
        let dropped: Vec<Ulid> = old
            .blocks
            .keys()
            .filter(|id| !next.contains_key(id))
            .copied()
            .collect();
        let report = SyncReport {
            loaded: next.len(),
            added: added.iter().map(|b| b.id).collect(),
            dropped: dropped.clone(),
            states,
        };
        self.metrics.block_loads.inc_by(added.len() as u64);
        self.metrics.block_drops.inc_by(dropped.len() as u64);
        self.metrics.blocks_loaded.set(next.len() as i64);
        *self.set.write().expect("block set lock") = Arc::new(BlockSet::new(next));
        for id in &dropped {
            self.cache.remove_block(*id);
            if let Some(cc) = &self.chunk_cache {
                cc.remove_block(*id);
            }
            let dir = self.config.data_dir.join(id.to_string());
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(block = %id, err = %e, "removing the local files of a dropped block");
            }
        }
        self.remove_stale_dirs();
        if !added.is_empty() {
            let store = self.clone();
            tokio::spawn(async move { store.prepare_blocks(added).await });
        }
        Ok(report)
    }

    /// Builds index-headers of new blocks (and loads them, without the lazy reader). A block
    /// whose header cannot be built is logged and counted, and stays listed: a query that needs
    /// it retries, and reports it if it fails again.
    async fn prepare_blocks(&self, blocks: Vec<Arc<BucketBlock>>) {
        let lazy = self.config.lazy_index_header;
        futures::stream::iter(blocks)
            .for_each_concurrent(self.config.block_sync_concurrency.max(1), |b| async move {
                let res = if lazy {
                    b.ensure_header_file().await
                } else {
                    b.header().await.map(|_| ())
                };
                if let Err(e) = res {
                    self.metrics.block_load_failures.inc();
                    tracing::warn!(block = %b.id, err = %e, "preparing block failed; it is skipped until a query needs it");
                }
            })
            .await;
    }

    /// Waits until every served block has its index-header built (and loaded, without the lazy
    /// reader). For tests and benchmarks that want a warm store.
    pub async fn prepare_all(&self) {
        let blocks: Vec<Arc<BucketBlock>> = self.blocks().blocks.values().cloned().collect();
        self.prepare_blocks(blocks).await;
    }

    fn remove_stale_dirs(&self) {
        let Ok(rd) = std::fs::read_dir(&self.config.data_dir) else {
            return;
        };
        let set = self.blocks();
        for e in rd.flatten() {
            let name = e.file_name();
            let Some(id) = name.to_str().and_then(|n| Ulid::from_string(n).ok()) else {
                continue;
            };
            if !set.blocks.contains_key(&id) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    /// Releases index-headers unused for the idle timeout (lazy mode only). Returns how many.
    pub fn release_idle(&self) -> usize {
        if !self.config.lazy_index_header || self.config.idle_timeout.is_zero() {
            return 0;
        }
        let idle = self.config.idle_timeout.as_millis() as i64;
        self.blocks()
            .blocks
            .values()
            .filter(|b| b.release_if_idle(idle))
            .count()
    }

    /// The Info API answer: component `store`, time range and external label sets.
    pub fn info(&self) -> InfoResponse {
        let set = self.blocks();
        let mut per_ext: BTreeMap<&Labels, (i64, i64)> = BTreeMap::new();
        for b in set.blocks.values() {
            let e = per_ext.entry(&b.ext).or_insert((i64::MAX, i64::MIN));
            e.0 = e.0.min(b.meta.min_time);
            e.1 = e.1.max(b.meta.max_time);
        }
        let (fmin, fmax) = self.config.filter.time_range(crate::sync::now_ms());
        let clamp = |(a, b): (i64, i64)| (a.max(fmin), b.min(fmax));
        let (mut min_time, mut max_time) = (i64::MAX, i64::MIN);
        let mut label_sets = Vec::new();
        let mut tsdb_infos = Vec::new();
        for (ext, range) in &per_ext {
            let (a, b) = clamp(*range);
            min_time = min_time.min(a);
            max_time = max_time.max(b);
            let zl = ZLabelSet {
                labels: labels_from_model(ext),
            };
            label_sets.push(zl.clone());
            tsdb_infos.push(TsdbInfo {
                labels: Some(zl),
                min_time: a,
                max_time: b,
            });
        }
        InfoResponse {
            label_sets,
            component_type: "store".into(),
            store: Some(StoreInfo {
                min_time,
                max_time,
                supports_sharding: false,
                supports_without_replica_labels: true,
                tsdb_infos,
                supports_projections: false,
            }),
            ..Default::default()
        }
    }

    fn request_limits(&self) -> RequestLimits {
        RequestLimits {
            max_series: self.config.limits.request_series,
            max_samples: self.config.limits.request_samples,
            max_bytes: self.config.limits.downloaded_bytes,
            ..Default::default()
        }
    }

    /// Serves one Series call, sending frames to `sink`. An error is returned (not sent) so the
    /// caller decides how to report it. The sink must be drained while this runs: frames own
    /// chunk pool room, so a sink read only afterwards can stall the call once the pool is full.
    pub async fn series(
        &self,
        req: SeriesRequest,
        sink: &SeriesSink,
    ) -> Result<SeriesOutcome, StoreError> {
        let gate_start = Instant::now();
        let _permit = self
            .gate
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Cancelled)?;
        self.metrics
            .gate_duration
            .observe(gate_start.elapsed().as_secs_f64());
        self.metrics.gate_in_flight.inc();
        let res = self.series_inner(req, sink).await;
        self.metrics.gate_in_flight.dec();
        strata_runtime::alloc::release_freed();
        if let Err(StoreError::ResourceExhausted(msg)) = &res {
            let reason = if msg.contains("series limit") {
                "series"
            } else if msg.contains("bytes limit") {
                "bytes"
            } else {
                "chunks"
            };
            self.metrics
                .queries_dropped
                .get_or_create(&Reason { reason })
                .inc();
        }
        res
    }

    async fn series_inner(
        &self,
        req: SeriesRequest,
        sink: &SeriesSink,
    ) -> Result<SeriesOutcome, StoreError> {
        let matchers = self.matchers.convert(&req.matchers)?;
        let hints: Option<hintspb::SeriesRequestHints> = req
            .hints
            .as_ref()
            .map(unpack_any::<hintspb::SeriesRequestHints>)
            .transpose()?;
        let block_matchers = match &hints {
            Some(h) => self.matchers.convert(&h.block_matchers)?,
            None => Vec::new(),
        };
        let mut aggrs = Vec::new();
        for &a in &req.aggregates {
            aggrs.push(
                Aggr::try_from(a)
                    .map_err(|_| StoreError::InvalidArgument(format!("unknown aggregate {a}")))?,
            );
        }
        let abort = req.partial_response_disabled
            || req.partial_response_strategy == PartialResponseStrategy::Abort as i32;
        let set = self.blocks();
        let selected = set.blocks_for(
            req.min_time,
            req.max_time,
            req.max_resolution_window,
            &matchers,
            &block_matchers,
        );
        let mut outcome = SeriesOutcome {
            blocks: selected.iter().map(|(b, _)| b.id).collect(),
            ..Default::default()
        };
        self.metrics
            .series_blocks_queried
            .observe(selected.len() as f64);
        let limits = Arc::new(self.request_limits());
        let stats = outcome.stats.clone();
        let start = Instant::now();
        let per_block =
            (SERIES_IN_FLIGHT / selected.len().max(1)).clamp(MIN_BLOCK_BATCH, SERIES_BATCH);
        let first_per_block =
            (FIRST_ROUND_SERIES / selected.len().max(1)).clamp(MIN_BLOCK_BATCH, per_block);
        let fill_query = SeriesQuery {
            matchers: &[],
            min_time: req.min_time,
            max_time: req.max_time,
            strip: &req.without_replica_labels,
            count_chunks: !req.skip_chunks,
            limits: &limits,
            stats: &stats,
        };
        // Open every block (postings, first batch of series) concurrently. The spans are
        // Thanos' (`--tracing.config`; free without it).
        let opened: Vec<(Arc<BucketBlock>, Result<BlockCursor, StoreError>)> =
            futures::stream::iter(selected)
                .map(|(b, ms)| {
                    let fill_query = &fill_query;
                    let span = tracing::info_span!(
                        "bucket_store_block_series",
                        block.id = %b.id,
                        block.mint = b.meta.min_time,
                        block.maxt = b.meta.max_time,
                        block.resolution = b.meta.resolution(),
                    );
                    async move {
                        let q = SeriesQuery {
                            matchers: &ms,
                            ..*fill_query
                        };
                        let r = async {
                            let mut c =
                                BlockCursor::open(b.clone(), &q, first_per_block, per_block)
                                    .await?;
                            c.fill(&q).await?;
                            Ok(c)
                        }
                        .await;
                        (b, r)
                    }
                    .instrument(span)
                })
                .buffered(BLOCK_CONCURRENCY)
                .collect()
                .instrument(tracing::info_span!("bucket_store_preload_all"))
                .await;
        let decode = DecodeQuery {
            min_time: req.min_time,
            max_time: req.max_time,
            strip: req.without_replica_labels.clone().into(),
            count_chunks: !req.skip_chunks,
            limits: limits.clone(),
            stats: stats.clone(),
        };
        let mut merger = Merger::default();
        for (b, r) in opened {
            match r {
                Ok(c) => merger.add(c, &decode),
                Err(e @ StoreError::CorruptBlock { .. }) if !abort => {
                    tracing::warn!(block = %b.id, err = %e, "skipping a corrupt block in a Series call");
                    self.metrics.block_load_failures.inc();
                    send(sink, SeriesResponse::warning(e.to_string())).await?;
                }
                Err(e) => return Err(e),
            }
        }
        self.metrics
            .series_get_all_duration
            .observe(start.elapsed().as_secs_f64());

        let merge_start = Instant::now();
        let batch_size = req.response_batch_size.max(1) as usize;
        // Output batches hold whole frames, so frames are cut where they would be without
        // batching (unless the chunk pool forces a smaller batch).
        let target = if batch_size > 1 {
            OUTPUT_BATCH.div_ceil(batch_size) * batch_size
        } else {
            OUTPUT_BATCH
        };
        // The first batch is small, so the client receives (and starts evaluating) data while
        // the rest is fetched; measured on the fan-out benchmark's small queries. Four frames:
        // the querier hands its engine 256 series first, and a selection of 100 series (say)
        // is then one fetch round instead of two (gateway time per call 1.73 -> 1.58 ms).
        let first = if batch_size > 1 {
            (4 * batch_size).min(target)
        } else {
            FIRST_OUTPUT_BATCH
        };
        let limit = if req.limit > 0 {
            req.limit as usize
        } else {
            usize::MAX
        };
        // Frames are built and sent by a task of their own, so that on a multi-core machine
        // turning a batch into wire series (and tonic encoding them) overlaps merging and
        // fetching the next batch here. It runs at most one batch behind: memory stays
        // bounded by the chunk pool as before, since fetched chunks carry their pool room.
        let (batches, rx) = mpsc::channel::<Fetched>(1);
        let mut frames = CallTask::spawn(build_frames(
            rx,
            sink.clone(),
            aggrs.clone(),
            merger.block_ids(),
            batch_size,
        ));
        let mut queue: VecDeque<MergedSeries> = VecDeque::new();
        let mut exhausted = false;
        let mut produced = 0usize;
        // Where the call's time goes, for the debug log (`--log.level=debug`).
        let (mut merging, mut fetching) = (Duration::ZERO, Duration::ZERO);
        let mut first_handed: Option<Duration> = None;
        let produce = async {
            loop {
                let want = if produced == 0 { first } else { target };
                let merge_round = Instant::now();
                while !exhausted && queue.len() < want {
                    if produced + queue.len() >= limit {
                        exhausted = true;
                        break;
                    }
                    match merger.next(sink, abort, &self.metrics).await? {
                        Some(m) => queue.push_back(m),
                        None => exhausted = true,
                    }
                }
                merging += merge_round.elapsed();
                if queue.is_empty() {
                    return Ok(());
                }
                let mut n = queue.len();
                // Whole frames per batch, except for the last batch, which is fetched in one
                // round however it ends.
                if batch_size > 1 && n > batch_size && !exhausted {
                    n -= n % batch_size;
                }
                // Room in the chunk pool for every buffer this batch can read, reserved
                // before reading; the buffers carry it until the gRPC stream has encoded
                // their frames.
                let budget = match (&self.chunk_pool, req.skip_chunks) {
                    (Some(pool), false) => loop {
                        let bytes = merger.read_bytes(queue.range(..n));
                        if bytes <= pool.stats().capacity {
                            break Some(Arc::new(pool.reserve(bytes).await?));
                        }
                        if n == 1 {
                            return Err(pool.too_small(bytes));
                        }
                        n /= 2;
                    },
                    _ => None,
                };
                let batch: Vec<MergedSeries> = queue.drain(..n).collect();
                let fetch_round = Instant::now();
                let chunks = if req.skip_chunks {
                    None
                } else {
                    let c = merger.fetch_chunks(&batch, &stats, budget.as_ref()).await?;
                    limits.check_bytes(&stats)?;
                    Some(c)
                };
                fetching += fetch_round.elapsed();
                drop(budget);
                first_handed.get_or_insert_with(|| start.elapsed());
                produced += batch.len();
                if batches.send((batch, chunks)).await.is_err() {
                    // The frame builder stopped (its error is reported below).
                    return Ok(());
                }
            }
        };
        let produced_result: Result<(), StoreError> = produce.await;
        drop(batches);
        let built = joined(&mut frames).await;
        produced_result?;
        let (series, chunks) = built?;
        outcome.series += series;
        outcome.chunks += chunks;
        let blocks = merger.live_blocks();
        self.metrics
            .series_merge_duration
            .observe(merge_start.elapsed().as_secs_f64());
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        tracing::debug!(
            series = outcome.series,
            chunks = outcome.chunks,
            blocks = outcome.blocks.len(),
            open_ms = ms(merge_start - start),
            merge_ms = ms(merging),
            fetch_ms = ms(fetching),
            first_batch_ms = first_handed.map(ms),
            total_ms = ms(start.elapsed()),
            "Series call served"
        );
        self.metrics
            .series_result_series
            .observe(outcome.series as f64);
        self.observe_stats(&stats);
        if let Some(h) = &hints {
            let mut rh = hintspb::SeriesResponseHints {
                queried_blocks: blocks
                    .iter()
                    .map(|b| hintspb::Block {
                        id: b.id.to_string(),
                    })
                    .collect(),
                query_stats: None,
            };
            if h.enable_query_stats {
                rh.query_stats = Some(query_stats(&stats, blocks.len(), &outcome));
            }
            send(sink, SeriesResponse::hints(pack_any(&rh))).await?;
        }
        Ok(outcome)
    }

    fn observe_stats(&self, s: &FetchStats) {
        use std::sync::atomic::Ordering::Relaxed;
        let m = &self.metrics;
        for (d, touched, tbytes, fetched, fbytes) in [
            (
                POSTINGS,
                &s.postings_touched,
                &s.postings_touched_bytes,
                &s.postings_fetched,
                &s.postings_fetched_bytes,
            ),
            (
                SERIES,
                &s.series_touched,
                &s.series_touched_bytes,
                &s.series_fetched,
                &s.series_fetched_bytes,
            ),
            (
                CHUNKS,
                &s.chunks_touched,
                &s.chunks_touched_bytes,
                &s.chunks_fetched,
                &s.chunks_fetched_bytes,
            ),
        ] {
            m.series_data_touched
                .get_or_create(&d)
                .observe(touched.load(Relaxed) as f64);
            m.series_data_size_touched
                .get_or_create(&d)
                .observe(tbytes.load(Relaxed) as f64);
            m.series_data_fetched
                .get_or_create(&d)
                .observe(fetched.load(Relaxed) as f64);
            m.series_data_size_fetched
                .get_or_create(&d)
                .observe(fbytes.load(Relaxed) as f64);
        }
    }

    /// What LabelNames and LabelValues share: over the selected blocks (concurrently), the
    /// strings of a block without matchers left come from `whole` (its header, its external
    /// labels), and otherwise from `visit` over its matching series in `[start, end]`
    /// (replica labels `strip`ped). Returns the union and a warning per corrupt block.
    async fn block_strings<W, WF, V>(
        &self,
        selected: &[(Arc<BucketBlock>, Vec<Matcher>)],
        (start, end, strip): (i64, i64, &[String]),
        whole: W,
        visit: V,
    ) -> Result<(BTreeSet<String>, Vec<String>), StoreError>
    where
        W: Fn(Arc<BucketBlock>) -> WF,
        WF: std::future::Future<Output = Result<BTreeSet<String>, StoreError>>,
        V: Fn(&crate::query::BlockSeries, &mut BTreeSet<String>),
    {
        let limits = self.request_limits();
        let stats = FetchStats::default();
        let results: Vec<Result<BTreeSet<String>, StoreError>> =
            futures::stream::iter(selected.iter().cloned())
                .map(|(b, ms)| {
                    let (limits, stats, whole, visit) = (&limits, &stats, &whole, &visit);
                    async move {
                        if ms.is_empty() {
                            return whole(b).await;
                        }
                        let q = SeriesQuery {
                            matchers: &ms,
                            min_time: start,
                            max_time: end,
                            strip,
                            count_chunks: false,
                            limits,
                            stats,
                        };
                        let mut out = BTreeSet::new();
                        for_each_series(&b, &q, |s| visit(&s, &mut out)).await?;
                        Ok(out)
                    }
                })
                .buffered(BLOCK_CONCURRENCY)
                .collect()
                .await;
        let mut union = BTreeSet::new();
        let warnings = merge_block_results(results, &mut union)?;
        Ok((union, warnings))
    }

    /// Serves LabelNames.
    pub async fn label_names(
        &self,
        req: LabelNamesRequest,
    ) -> Result<LabelNamesResponse, StoreError> {
        let matchers = self.matchers.convert(&req.matchers)?;
        let hints: Option<hintspb::LabelNamesRequestHints> = req
            .hints
            .as_ref()
            .map(unpack_any::<hintspb::LabelNamesRequestHints>)
            .transpose()?;
        let block_matchers = match &hints {
            Some(h) => self.matchers.convert(&h.block_matchers)?,
            None => Vec::new(),
        };
        let set = self.blocks();
        let selected = set.overlapping(req.start, req.end, &matchers, &block_matchers);
        let (mut names, warnings) = self
            .block_strings(
                &selected,
                (req.start, req.end, &req.without_replica_labels),
                |b| async move {
                    let h = b.header().await?;
                    let mut out: BTreeSet<String> = h.label_names().map(str::to_string).collect();
                    out.extend(b.ext.iter().map(|l| l.name.clone()));
                    Ok(out)
                },
                |s, out| {
                    for (n, _) in s.labels.iter() {
                        if !out.contains(n) {
                            out.insert(n.to_string());
                        }
                    }
                },
            )
            .await?;
        for s in &req.without_replica_labels {
            names.remove(s);
        }
        let mut names: Vec<String> = names.into_iter().collect();
        if req.limit > 0 {
            names.truncate(req.limit as usize);
        }
        Ok(LabelNamesResponse {
            names,
            warnings,
            hints: hints.map(|_| {
                pack_any(&hintspb::LabelNamesResponseHints {
                    queried_blocks: queried_blocks(&selected),
                })
            }),
        })
    }

    /// Serves LabelValues.
    pub async fn label_values(
        &self,
        req: LabelValuesRequest,
    ) -> Result<LabelValuesResponse, StoreError> {
        if req.label.is_empty() {
            return Err(StoreError::InvalidArgument(
                "LabelValues needs a label name".into(),
            ));
        }
        let matchers = self.matchers.convert(&req.matchers)?;
        let hints: Option<hintspb::LabelValuesRequestHints> = req
            .hints
            .as_ref()
            .map(unpack_any::<hintspb::LabelValuesRequestHints>)
            .transpose()?;
        let block_matchers = match &hints {
            Some(h) => self.matchers.convert(&h.block_matchers)?,
            None => Vec::new(),
        };
        let name = req.label.clone();
        if req.without_replica_labels.contains(&name) {
            return Ok(LabelValuesResponse::default());
        }
        let set = self.blocks();
        let selected = set.overlapping(req.start, req.end, &matchers, &block_matchers);
        let (values, warnings) = self
            .block_strings(
                &selected,
                (req.start, req.end, &req.without_replica_labels),
                |b| {
                    let name = name.clone();
                    async move {
                        let mut out = BTreeSet::new();
                        if let Some(v) = b.ext.get(&name) {
                            out.insert(v.to_string());
                        } else {
                            let h = b.header().await?;
                            out.extend(
                                crate::error::blocking(move || h.label_values(&name)).await??,
                            );
                        }
                        Ok(out)
                    }
                },
                |s, out| {
                    if let Some(v) = s.labels.get(&name)
                        && !out.contains(v)
                    {
                        out.insert(v.to_string());
                    }
                },
            )
            .await?;
        let mut values: Vec<String> = values.into_iter().collect();
        if req.limit > 0 {
            values.truncate(req.limit as usize);
        }
        Ok(LabelValuesResponse {
            values,
            warnings,
            hints: hints.map(|_| {
                pack_any(&hintspb::LabelValuesResponseHints {
                    queried_blocks: queried_blocks(&selected),
                })
            }),
        })
    }
}

/// The hints' list of the blocks a label call read.
fn queried_blocks(selected: &[(Arc<BucketBlock>, Vec<Matcher>)]) -> Vec<hintspb::Block> {
    selected
        .iter()
        .map(|(b, _)| hintspb::Block {
            id: b.id.to_string(),
        })
        .collect()
}

/// Folds per-block label sets into `into`: a corrupt block becomes a warning naming it, any
/// other error fails the request.
fn merge_block_results(
    results: Vec<Result<BTreeSet<String>, StoreError>>,
    into: &mut BTreeSet<String>,
) -> Result<Vec<String>, StoreError> {
    let mut warnings = Vec::new();
    for r in results {
        match r {
            Ok(v) => into.extend(v),
            Err(e @ StoreError::CorruptBlock { .. }) => warnings.push(e.to_string()),
            Err(e) => return Err(e),
        }
    }
    Ok(warnings)
}

/// A batch of merged series and, unless chunks are skipped, each one's fetched chunks.
type Fetched = (Vec<MergedSeries>, Option<BatchChunks>);

/// The fetched chunks of a batch of series: every series' chunks in one list, series after
/// series (one allocation per batch rather than per series).
#[derive(Debug)]
struct BatchChunks {
    chunks: Vec<(ChunkLoc, RawChunk)>,
    /// Chunks per series, in batch order.
    counts: Vec<usize>,
}

/// Turns fetched batches into Store API frames of `batch_size` series (one series per frame
/// when 1) and sends them; returns the series and chunks sent. `block_ids[i]` is the ULID of
/// the merge's cursor `i`, named in errors about its aggregate chunks.
async fn build_frames(
    mut rx: mpsc::Receiver<Fetched>,
    sink: SeriesSink,
    aggrs: Vec<Aggr>,
    block_ids: Vec<Ulid>,
    batch_size: usize,
) -> Result<(usize, usize), StoreError> {
    let (mut series, mut chunks_sent) = (0usize, 0usize);
    // Batched frames are encoded here directly from the packed labels and chunk slices
    // (`EncodedSeries`), without wire structs.
    let mut pending = EncodedSeries::default();
    // One series' chunks at a time; reused (and emptied by `EncodedSeries::push`).
    let mut out_chunks: Vec<AggrChunk> = Vec::new();
    let mut raw_chunks: Vec<RawWireChunk> = Vec::new();
    while let Some((batch, chunks)) = rx.recv().await {
        let (mut chunks, counts) = match chunks {
            Some(b) => (b.chunks.into_iter(), b.counts),
            None => (Vec::new().into_iter(), Vec::new()),
        };
        for (k, m) in batch.into_iter().enumerate() {
            let n = counts.get(k).copied().unwrap_or(0);
            // Raw chunks (all but downsampled blocks') go into the frame without `AggrChunk`s.
            let raw = batch_size > 1
                && (chunks.as_slice().iter().take(n))
                    .all(|(_, r)| r.encoding != Encoding::ThanosAggr);
            let c = chunks.by_ref().take(n);
            if raw {
                raw_chunks.clear();
                for (j, r) in c {
                    raw_chunks.push(RawWireChunk {
                        min_time: j.min_time,
                        max_time: j.max_time,
                        r#type: encoding_from_tsdb(r.encoding)? as i32,
                        data: r.data,
                    });
                }
                sort_and_dedup(&mut raw_chunks, |c| (c.min_time, c.max_time));
                chunks_sent += raw_chunks.len();
                pending.push_raw(m.labels.iter_bytes(), &mut raw_chunks);
            } else {
                out_chunks.clear();
                for (j, r) in c {
                    out_chunks.push(aggr_chunk(j, r, &aggrs, block_ids[j.block])?);
                }
                sort_and_dedup(&mut out_chunks, |c| (c.min_time, c.max_time));
                chunks_sent += out_chunks.len();
                if batch_size <= 1 {
                    let s = Series {
                        labels: m.labels.to_wire(),
                        chunks: std::mem::take(&mut out_chunks),
                    };
                    send(&sink, SeriesResponse::series(s)).await?;
                } else {
                    pending.push(m.labels.iter_bytes(), &mut out_chunks);
                }
            }
            series += 1;
            if batch_size > 1 && pending.count() >= batch_size {
                send(&sink, batch_frame(pending.take())).await?;
            }
        }
        // A partial frame holds pool permits: send it rather than carry it into the wait for
        // the next batch's room.
        if !pending.is_empty() {
            send(&sink, batch_frame(pending.take())).await?;
        }
    }
    Ok((series, chunks_sent))
}

/// Puts a series' output chunks in time order and drops exact duplicates (a chunk two
/// overlapping blocks both hold). Blocks come in time order, so chunks usually do too; they
/// are sorted only when needed, which spares moving large structs around.
fn sort_and_dedup<T: PartialEq, K: Ord>(chunks: &mut Vec<T>, key: impl Fn(&T) -> K + Copy) {
    if !chunks.is_sorted_by_key(key) {
        chunks.sort_by_key(key);
    }
    chunks.dedup();
}

async fn send(sink: &SeriesSink, r: SeriesResponse) -> Result<(), StoreError> {
    sink.send(Ok(r)).await.map_err(|_| StoreError::Cancelled)
}

fn batch_frame(encoded: EncodedSeries) -> SeriesResponse {
    SeriesResponse {
        result: Some(series_response::Result::Batch(SeriesBatch {
            series: Vec::new(),
            encoded,
        })),
    }
}

/// One output series: its labels and, per block it occurs in, that block's chunk metas.
#[derive(Debug)]
struct MergedSeries {
    labels: crate::packed::PackedLabels,
    /// Inline for a series of one block, as in every query over the newest block only (an
    /// allocation per series less).
    parts: SmallVec<[(usize, Vec<ChunkMeta>); 1]>,
}

/// Where a fetched chunk came from.
#[derive(Debug, Clone, Copy)]
struct ChunkLoc {
    block: usize,
    min_time: i64,
    max_time: i64,
}

/// A block's next series in the merge; ties between equal label sets go by block order, then
/// by order within the block, so chunks keep a stable order.
#[derive(Debug)]
struct Head {
    series: BlockSeries,
    cursor: usize,
    seq: u64,
}

impl PartialEq for Head {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == std::cmp::Ordering::Equal
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Head {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.series
            .labels
            .cmp(&o.series.labels)
            .then(self.cursor.cmp(&o.cursor))
            .then(self.seq.cmp(&o.seq))
    }
}

/// What a block's decoding task needs of the request, owned (the task outlives no request,
/// but is spawned, so it cannot borrow).
#[derive(Debug, Clone)]
struct DecodeQuery {
    min_time: i64,
    max_time: i64,
    strip: Arc<[String]>,
    count_chunks: bool,
    limits: Arc<RequestLimits>,
    stats: Arc<FetchStats>,
}

impl DecodeQuery {
    fn as_query(&self) -> SeriesQuery<'_> {
        SeriesQuery {
            matchers: &[],
            min_time: self.min_time,
            max_time: self.max_time,
            strip: &self.strip,
            count_chunks: self.count_chunks,
            limits: &self.limits,
            stats: &self.stats,
        }
    }
}

/// Decoded batches a block's task sends ahead of the merge.
type DecodedBatch = Result<VecDeque<BlockSeries>, StoreError>;

/// Decodes the rest of a block's series, a batch at a time, into `tx`: one batch waits in the
/// channel while the next is decoded, so blocks decode in parallel with each other and with
/// the merge. Stops at the first error (sent) or when the merge is gone.
async fn decode_ahead(mut c: BlockCursor, q: DecodeQuery, tx: mpsc::Sender<DecodedBatch>) {
    let q = q.as_query();
    while c.has_more() {
        match c.decode_round(&q).await {
            Ok(()) if c.ready.is_empty() => {}
            Ok(()) => {
                if tx.send(Ok(std::mem::take(&mut c.ready))).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
    }
}

/// The result of a task spawned for a Series call (a panic in it resumes in the call).
async fn joined<T: Send + 'static>(
    task: &mut CallTask<Result<T, StoreError>>,
) -> Result<T, StoreError> {
    task.join().await.unwrap_or(Err(StoreError::Cancelled))
}

/// One block's side of the merge: its decoded series not merged yet, and the task decoding
/// the rest.
#[derive(Debug)]
struct Source {
    block: Arc<BucketBlock>,
    ready: VecDeque<BlockSeries>,
    /// `None` once the task has sent its last batch.
    rx: Option<mpsc::Receiver<DecodedBatch>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The k-way merge of a request's block cursors into one stream sorted by labels; equal label
/// sets from several blocks (or from one block, when replica labels were removed) become one
/// series. It holds one series per block plus, per block, the batch being merged, one decoded
/// ahead and one being decoded, so its memory is bounded per request, not by how many series
/// the request matches.
#[derive(Debug, Default)]
struct Merger {
    sources: Vec<Source>,
    /// Blocks that failed mid-stream (a warning was sent): no longer read or reported.
    dead: Vec<bool>,
    heads: Heads,
}

/// Blocks up to which the merge scans its heads instead of keeping a heap.
const SCAN_HEADS: usize = 16;

/// Each block's next series in the merge.
#[derive(Debug)]
enum Heads {
    /// A slot per block, scanned. Most series span every block of a query (blocks of one
    /// source follow each other in time), so one scan finds a series and all its parts with
    /// a comparison and an equality check per block, where a heap pops and pushes each part
    /// (about `2 log k` comparisons). 5,000 series in 7 blocks: 363 M instructions per warm
    /// Series call with the heap, 318 M with the scan (`examples/series_profile.rs`). Over
    /// many blocks whose series do not overlap, the heap's `log k` per series wins, hence
    /// [`SCAN_HEADS`].
    Scan(Vec<Option<BlockSeries>>),
    /// Ties between equal label sets go by block, then by insertion (`seq`).
    Heap {
        heap: BinaryHeap<Reverse<Head>>,
        seq: u64,
    },
}

impl Default for Heads {
    fn default() -> Self {
        Heads::Scan(Vec::new())
    }
}

impl Heads {
    /// Puts block `cursor`'s next series in; it has no series in until its last was taken.
    fn insert(&mut self, cursor: usize, series: BlockSeries) {
        match self {
            Heads::Scan(slots) if cursor < SCAN_HEADS => {
                if slots.len() <= cursor {
                    slots.resize_with(cursor + 1, || None);
                }
                debug_assert!(slots[cursor].is_none(), "one head per block");
                slots[cursor] = Some(series);
            }
            Heads::Scan(slots) => {
                // More blocks than a scan serves: move the heads into a heap.
                let slots = std::mem::take(slots);
                *self = Heads::Heap {
                    heap: BinaryHeap::new(),
                    seq: 0,
                };
                for (c, s) in slots.into_iter().enumerate() {
                    if let Some(s) = s {
                        self.insert(c, s);
                    }
                }
                self.insert(cursor, series);
            }
            Heads::Heap { heap, seq } => {
                *seq += 1;
                heap.push(Reverse(Head {
                    series,
                    cursor,
                    seq: *seq,
                }));
            }
        }
    }

    /// Takes the head with the smallest labels (the first block's on ties).
    fn take_min(&mut self) -> Option<(usize, BlockSeries)> {
        match self {
            Heads::Scan(slots) => {
                let mut min: Option<(usize, &PackedLabels)> = None;
                for (c, s) in slots.iter().enumerate() {
                    if let Some(s) = s
                        && min.is_none_or(|(_, m)| s.labels < *m)
                    {
                        min = Some((c, &s.labels));
                    }
                }
                let c = min?.0;
                slots[c].take().map(|s| (c, s))
            }
            Heads::Heap { heap, .. } => heap.pop().map(|Reverse(h)| (h.cursor, h.series)),
        }
    }

    /// Takes the next head whose labels are `labels`, from block `from` on (scan) or from
    /// the heap's top; `None` when no head has them.
    fn take_equal(&mut self, labels: &PackedLabels, from: usize) -> Option<(usize, BlockSeries)> {
        match self {
            Heads::Scan(slots) => {
                let c = (from..slots.len())
                    .find(|&c| slots[c].as_ref().is_some_and(|s| s.labels == *labels))?;
                slots[c].take().map(|s| (c, s))
            }
            Heads::Heap { heap, .. } => {
                if heap
                    .peek()
                    .is_some_and(|Reverse(t)| t.series.labels == *labels)
                {
                    heap.pop().map(|Reverse(h)| (h.cursor, h.series))
                } else {
                    None
                }
            }
        }
    }
}

impl Merger {
    /// Adds an opened cursor whose first batch is decoded, and starts decoding the rest.
    fn add(&mut self, mut c: BlockCursor, q: &DecodeQuery) {
        let cursor = self.sources.len();
        if let Some(series) = c.ready.pop_front() {
            self.heads.insert(cursor, series);
        }
        let ready = std::mem::take(&mut c.ready);
        let block = c.block.clone();
        let (rx, task) = if c.has_more() {
            let (tx, rx) = mpsc::channel(1);
            let task = tokio::spawn(decode_ahead(c, q.clone(), tx));
            (Some(rx), Some(task))
        } else {
            (None, None)
        };
        self.sources.push(Source {
            block,
            ready,
            rx,
            task,
        });
        self.dead.push(false);
    }

    /// The ULID of each cursor's block, by cursor index.
    fn block_ids(&self) -> Vec<Ulid> {
        self.sources.iter().map(|c| c.block.id).collect()
    }

    /// The blocks that answered.
    fn live_blocks(&self) -> Vec<Arc<BucketBlock>> {
        self.sources
            .iter()
            .zip(&self.dead)
            .filter(|(_, d)| !**d)
            .map(|(c, _)| c.block.clone())
            .collect()
    }

    /// Puts source `i`'s next series into the heap, waiting for its next decoded batch if
    /// needed. A block that turns out corrupt is dropped with a warning unless the request
    /// aborts on errors.
    async fn advance(
        &mut self,
        i: usize,
        sink: &SeriesSink,
        abort: bool,
        metrics: &StoreMetrics,
    ) -> Result<(), StoreError> {
        if self.dead[i] {
            return Ok(());
        }
        let src = &mut self.sources[i];
        if src.ready.is_empty()
            && let Some(rx) = &mut src.rx
        {
            match rx.recv().await {
                Some(Ok(batch)) => src.ready = batch,
                Some(Err(e @ StoreError::CorruptBlock { .. })) if !abort => {
                    tracing::warn!(block = %src.block.id, err = %e, "dropping a corrupt block from a Series call");
                    metrics.block_load_failures.inc();
                    self.dead[i] = true;
                    src.rx = None;
                    send(sink, SeriesResponse::warning(e.to_string())).await?;
                    return Ok(());
                }
                Some(Err(e)) => return Err(e),
                None => {
                    src.rx = None;
                    // The task ended without an error: every batch was sent, unless it
                    // panicked, which must not pass for the end of the block.
                    if let Some(t) = src.task.take()
                        && let Err(e) = t.await
                        && e.is_panic()
                    {
                        std::panic::resume_unwind(e.into_panic());
                    }
                }
            }
        }
        if let Some(series) = src.ready.pop_front() {
            self.heads.insert(i, series);
        }
        Ok(())
    }

    /// The next output series, or `None` when every block is exhausted.
    async fn next(
        &mut self,
        sink: &SeriesSink,
        abort: bool,
        metrics: &StoreMetrics,
    ) -> Result<Option<MergedSeries>, StoreError> {
        let Some((cursor, first)) = self.heads.take_min() else {
            return Ok(None);
        };
        let mut parts = SmallVec::with_capacity(self.sources.len().min(8));
        parts.push((cursor, first.chunks));
        let mut m = MergedSeries {
            labels: first.labels,
            parts,
        };
        self.advance(cursor, sink, abort, metrics).await?;
        // The same labels in later blocks, or again in this one (when replica labels were
        // removed); blocks before `cursor` had larger labels.
        let mut from = cursor;
        while let Some((c, t)) = self.heads.take_equal(&m.labels, from) {
            m.parts.push((c, t.chunks));
            from = c;
            self.advance(c, sink, abort, metrics).await?;
        }
        Ok(Some(m))
    }

    /// Pool bytes the chunk reads of `batch` can hold (see [`BucketBlock::chunk_read_bytes`]).
    fn read_bytes<'a>(&self, batch: impl Iterator<Item = &'a MergedSeries>) -> u64 {
        let mut refs: BTreeMap<usize, Vec<ChunkRef>> = BTreeMap::new();
        for m in batch {
            for (bi, chunks) in &m.parts {
                refs.entry(*bi)
                    .or_default()
                    .extend(chunks.iter().map(|c| c.chunk_ref));
            }
        }
        refs.iter()
            .map(|(bi, r)| self.sources[*bi].block.chunk_read_bytes(r))
            .sum()
    }

    /// Fetches the chunks of a batch of merged series: per block, one batch of range reads.
    async fn fetch_chunks(
        &self,
        batch: &[MergedSeries],
        stats: &Arc<FetchStats>,
        budget: Option<&Arc<Budget>>,
    ) -> Result<BatchChunks, StoreError> {
        // Per block: the chunk refs wanted and where each goes.
        let mut wanted: BTreeMap<usize, (Vec<ChunkRef>, Vec<Dest>)> = BTreeMap::new();
        for (k, m) in batch.iter().enumerate() {
            for (bi, chunks) in &m.parts {
                let w = wanted.entry(*bi).or_default();
                for c in chunks {
                    w.0.push(c.chunk_ref);
                    w.1.push((
                        k,
                        ChunkLoc {
                            block: *bi,
                            min_time: c.min_time,
                            max_time: c.max_time,
                        },
                    ));
                }
            }
        }
        // Each block's reads in a task of its own: reads the page cache holds are copied and
        // checked on the calling task (see `strata_objstore`), so in one task the blocks of a
        // batch took their turns on one core. 100 series in 7 blocks: 0.48 -> 0.34 ms.
        let fetched: Vec<(usize, Vec<Dest>, Vec<RawChunk>)> =
            futures::stream::iter(wanted.into_iter().map(|(bi, (refs, dest))| {
                let b = self.sources[bi].block.clone();
                let (stats, budget) = (stats.clone(), budget.cloned());
                let mut task = CallTask::spawn(async move {
                    let chunks = b.fetch_chunks(&refs, &stats, budget.as_deref()).await?;
                    Ok::<_, StoreError>((bi, dest, chunks))
                });
                async move { joined(&mut task).await }
            }))
            .buffer_unordered(CHUNK_FETCH_CONCURRENCY)
            .try_collect()
            .await?;
        // Each block answers its chunks in batch order (one per ref), so the flat list takes
        // them series by series, from the series' blocks in its parts' order.
        let mut chunks = Vec::with_capacity(fetched.iter().map(|(_, d, _)| d.len()).sum());
        let mut per_block: Vec<_> = (0..self.sources.len()).map(|_| None).collect();
        for (bi, dest, fetched) in fetched {
            debug_assert_eq!(dest.len(), fetched.len(), "one chunk per ref");
            per_block[bi] = Some(dest.into_iter().zip(fetched));
        }
        let mut counts = Vec::with_capacity(batch.len());
        for (k, m) in batch.iter().enumerate() {
            let before = chunks.len();
            for (bi, metas) in &m.parts {
                if let Some(it) = per_block[*bi].as_mut() {
                    for ((dk, loc), c) in it.by_ref().take(metas.len()) {
                        debug_assert_eq!(dk, k, "a block's chunks come in batch order");
                        chunks.push((loc, c));
                    }
                }
            }
            counts.push(chunks.len() - before);
        }
        Ok(BatchChunks { chunks, counts })
    }
}

/// Where a fetched chunk goes: output series index in the batch, and its origin.
type Dest = (usize, ChunkLoc);

/// The wire chunk for a raw chunk: raw encodings go to `raw` unchanged; Thanos' aggregate
/// chunks (downsampled blocks) are split and the requested aggregates filled.
fn aggr_chunk(
    loc: ChunkLoc,
    raw: RawChunk,
    aggrs: &[Aggr],
    block: Ulid,
) -> Result<AggrChunk, StoreError> {
    let mut out = AggrChunk {
        min_time: loc.min_time,
        max_time: loc.max_time,
        ..Default::default()
    };
    match raw.encoding {
        Encoding::Xor | Encoding::Histogram | Encoding::FloatHistogram => {
            out.raw = Some(Chunk::from_raw_owned(raw)?);
        }
        Encoding::ThanosAggr => {
            let parts = split_aggr_chunk(&raw.data).map_err(|d| StoreError::CorruptBlock {
                block,
                detail: format!("aggregate chunk: {d}"),
            })?;
            for a in aggrs {
                let (slot, idx) = match a {
                    Aggr::Count => (&mut out.count, 0),
                    Aggr::Sum => (&mut out.sum, 1),
                    Aggr::Min => (&mut out.min, 2),
                    Aggr::Max => (&mut out.max, 3),
                    Aggr::Counter => (&mut out.counter, 4),
                    Aggr::Raw => continue,
                };
                let Some(c) = &parts[idx] else {
                    return Err(StoreError::CorruptBlock {
                        block,
                        detail: format!(
                            "aggregate {} does not exist in a downsampled chunk",
                            a.as_str_name()
                        ),
                    });
                };
                *slot = Some(Chunk::from_raw(c)?);
            }
        }
        other => {
            return Err(StoreError::CorruptBlock {
                block,
                detail: format!("chunk encoding {other} cannot be served over the Store API"),
            });
        }
    }
    Ok(out)
}

/// Splits Thanos' aggregate chunk (`pkg/compact/downsample/aggr.go`): for count, sum, min,
/// max and counter in that order, `uvarint len` then, when `len > 0`, an encoding byte and
/// `len` bytes of chunk data.
pub fn split_aggr_chunk(data: &bytes::Bytes) -> Result<[Option<RawChunk>; 5], String> {
    let mut out: [Option<RawChunk>; 5] = Default::default();
    let mut at = 0usize;
    for slot in &mut out {
        let (len, n) =
            strata_tsdb::encoding::read_uvarint(&data[at..]).map_err(|e| e.to_string())?;
        at += n;
        if len == 0 {
            continue;
        }
        let len = len as usize;
        if at + 1 + len > data.len() {
            return Err(format!("sub-chunk of {len} bytes runs past the end"));
        }
        *slot = Some(RawChunk::new(
            Encoding::from_u8(data[at]),
            data.slice(at + 1..at + 1 + len),
        ));
        at += 1 + len;
    }
    Ok(out)
}

fn query_stats(s: &FetchStats, blocks: usize, o: &SeriesOutcome) -> hintspb::QueryStats {
    use std::sync::atomic::Ordering::Relaxed;
    let g = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed) as i64;
    hintspb::QueryStats {
        blocks_queried: blocks as i64,
        merged_series_count: o.series as i64,
        merged_chunks_count: o.chunks as i64,
        postings_touched: g(&s.postings_touched),
        postings_touched_size_sum: g(&s.postings_touched_bytes),
        postings_to_fetch: g(&s.postings_fetched),
        postings_fetched: g(&s.postings_fetched),
        postings_fetched_size_sum: g(&s.postings_fetched_bytes),
        postings_fetch_count: g(&s.postings_fetch_count),
        series_touched: g(&s.series_touched),
        series_touched_size_sum: g(&s.series_touched_bytes),
        series_fetched: g(&s.series_fetched),
        series_fetched_size_sum: g(&s.series_fetched_bytes),
        series_fetch_count: g(&s.series_fetch_count),
        chunks_touched: g(&s.chunks_touched),
        chunks_touched_size_sum: g(&s.chunks_touched_bytes),
        chunks_fetched: g(&s.chunks_fetched),
        chunks_fetched_size_sum: g(&s.chunks_fetched_bytes),
        chunks_fetch_count: g(&s.chunks_fetch_count),
        data_downloaded_size_sum: s.bytes_fetched() as i64,
        get_all_duration: None,
        merge_duration: None,
    }
}

#[cfg(test)]
mod heads_tests {
    use proptest::prelude::*;
    use strata_model::Labels;
    use strata_tsdb::chunks::{ChunkMeta, ChunkRef};

    use super::*;

    /// A block's series in merge order; each chunk's ref names its block and position, so the
    /// merged parts show where they came from.
    fn block(cursor: usize, ids: &[u8]) -> VecDeque<BlockSeries> {
        ids.iter()
            .enumerate()
            .map(|(k, &id)| BlockSeries {
                labels: PackedLabels::from_labels(&Labels::from_pairs(&[
                    ("__name__", "m"),
                    ("id", &format!("{id:03}")),
                ])),
                chunks: vec![ChunkMeta {
                    min_time: 0,
                    max_time: 0,
                    chunk_ref: ChunkRef::new(cursor as u32, k as u32),
                }],
            })
            .collect()
    }

    /// The merge of `Merger::next`, with blocks that are lists: label sets, and per series
    /// the chunk refs of its parts in order.
    fn merge(mut heads: Heads, blocks: &[Vec<u8>]) -> Vec<(String, Vec<ChunkRef>)> {
        let mut sources: Vec<VecDeque<BlockSeries>> = blocks
            .iter()
            .enumerate()
            .map(|(c, b)| block(c, b))
            .collect();
        for (c, s) in sources.iter_mut().enumerate() {
            if let Some(first) = s.pop_front() {
                heads.insert(c, first);
            }
        }
        let mut out = Vec::new();
        while let Some((cursor, first)) = heads.take_min() {
            let mut refs = vec![first.chunks[0].chunk_ref];
            if let Some(next) = sources[cursor].pop_front() {
                heads.insert(cursor, next);
            }
            let mut from = cursor;
            while let Some((c, t)) = heads.take_equal(&first.labels, from) {
                refs.push(t.chunks[0].chunk_ref);
                from = c;
                if let Some(next) = sources[c].pop_front() {
                    heads.insert(c, next);
                }
            }
            out.push((first.labels.to_labels().to_string(), refs));
        }
        out
    }

    proptest! {
        /// Scanning and the heap merge any blocks alike (sorted label sets, repeated within a
        /// block as after removing replica labels), also past `SCAN_HEADS` blocks, where a
        /// scan turns into a heap; and the merge is sorted, keeps every part, and lists a
        /// series' parts by block, then by order within the block.
        #[test]
        fn scan_and_heap_merge_alike(
            mut blocks in proptest::collection::vec(
                proptest::collection::vec(0u8..40, 0..30), 1..(SCAN_HEADS + 6)),
        ) {
            for b in &mut blocks {
                b.sort_unstable();
            }
            let scanned = merge(Heads::default(), &blocks);
            let heaped = merge(Heads::Heap { heap: BinaryHeap::new(), seq: 0 }, &blocks);
            prop_assert_eq!(&scanned, &heaped);
            prop_assert!(scanned.windows(2).all(|w| w[0].0 < w[1].0));
            let parts: usize = scanned.iter().map(|(_, r)| r.len()).sum();
            prop_assert_eq!(parts, blocks.iter().map(Vec::len).sum::<usize>());
            for (_, refs) in &scanned {
                let order: Vec<(u32, u32)> =
                    refs.iter().map(|r| (r.segment(), r.offset())).collect();
                prop_assert!(order.windows(2).all(|w| w[0] < w[1]), "{:?}", order);
            }
        }
    }
}
