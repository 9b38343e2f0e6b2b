//! One block in the bucket, as the store gateway reads it: its meta, its index-header (loaded
//! lazily and released when idle), and range reads of postings lists, series entries and
//! chunks with the index cache in front.
//!
//! Nothing of a block is downloaded whole. Postings lists are fetched by the exact ranges the
//! index-header gives; series entries and chunks by an estimated size from their offset
//! (the meta's `index_stats` when present, else Thanos' 64 KiB and 16 000 B defaults), with a
//! second exact read when the estimate fell short. [`strata_objstore::Bucket::get_ranges`]
//! merges nearby ranges into one request. Every fetched structure is CRC-checked.

use rustc_hash::FxHashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use strata_model::Labels;
use strata_objstore::Bucket;
use strata_tsdb::chunks::segment_file_name;
use strata_tsdb::encoding::{chunk_crcs, read_uvarint};
use strata_tsdb::{BlockMeta, ChunkRef, Encoding, RawChunk};
use ulid::Ulid;

use crate::chunk_cache::{ChunkCacheBackend, SubrangeKey, plan_subrange_reads};
use crate::error::StoreError;
use crate::indexheader::{self, IndexHeader, PostingsRange};
use crate::metrics::StoreMetrics;
use crate::pool::Budget;
use crate::remote_cache::IndexCacheBackend;
use crate::sync::now_ms;

/// A parsed chunk's encoding byte and stored CRC32C, checked later in batches.
type ChunkSum = (u8, u32);

/// Thanos' `EstimatedMaxSeriesSize`: bytes read per series entry when the meta does not say.
pub const ESTIMATED_MAX_SERIES_SIZE: u64 = 64 * 1024;
/// Thanos' `EstimatedMaxChunkSize`: bytes read per chunk when the meta does not say.
pub const ESTIMATED_MAX_CHUNK_SIZE: u64 = 16_000;
/// No chunk is longer than a segment file may be (Prometheus' default and largest segment
/// size, 512 MiB): a longer length read from a chunk is damage.
const MAX_CHUNK_BYTES: u64 = 512 << 20;
/// Ranges closer than this are read in one request (Thanos' `PartitionerMaxGapSize`): reading
/// a little extra is cheaper than another round trip.
pub const MAX_GAP: u64 = 512 * 1024;
/// Largest merged request, so one request never pins a whole segment file in memory.
pub const MAX_MERGED: u64 = 8 << 20;
/// Merged requests of one call in flight at once (each also needs a read-gate permit).
const MAX_PARALLEL_PER_CALL: usize = 8;

/// What one request touched and fetched, summed over blocks (Thanos' query stats).
#[derive(Debug, Default)]
pub struct FetchStats {
    pub postings_touched: AtomicU64,
    pub postings_touched_bytes: AtomicU64,
    pub postings_fetched: AtomicU64,
    pub postings_fetched_bytes: AtomicU64,
    pub postings_fetch_count: AtomicU64,
    pub series_touched: AtomicU64,
    pub series_touched_bytes: AtomicU64,
    pub series_fetched: AtomicU64,
    pub series_fetched_bytes: AtomicU64,
    pub series_fetch_count: AtomicU64,
    pub chunks_touched: AtomicU64,
    pub chunks_touched_bytes: AtomicU64,
    pub chunks_fetched: AtomicU64,
    pub chunks_fetched_bytes: AtomicU64,
    pub chunks_fetch_count: AtomicU64,
}

fn add(c: &AtomicU64, v: u64) {
    c.fetch_add(v, Ordering::Relaxed);
}

impl FetchStats {
    /// Bytes of index and chunk data this request used, from the cache or object storage.
    pub fn bytes_touched(&self) -> u64 {
        self.postings_touched_bytes.load(Ordering::Relaxed)
            + self.series_touched_bytes.load(Ordering::Relaxed)
            + self.chunks_touched_bytes.load(Ordering::Relaxed)
    }

    /// Bytes read from object storage for this request.
    pub fn bytes_fetched(&self) -> u64 {
        self.postings_fetched_bytes.load(Ordering::Relaxed)
            + self.series_fetched_bytes.load(Ordering::Relaxed)
            + self.chunks_fetched_bytes.load(Ordering::Relaxed)
    }
}

/// A block the store gateway serves.
#[derive(Debug)]
pub struct BucketBlock {
    pub(crate) id: Ulid,
    pub(crate) meta: BlockMeta,
    /// External labels from the meta's Thanos section.
    pub(crate) ext: Labels,
    bucket: Bucket,
    header_path: PathBuf,
    header: tokio::sync::Mutex<Option<Arc<IndexHeader>>>,
    /// Unix ms of the last query that used the header.
    last_used: AtomicI64,
    cache: Arc<IndexCacheBackend>,
    metrics: StoreMetrics,
    /// Shared by every block of the store: bounds object storage reads in flight.
    reads: Arc<tokio::sync::Semaphore>,
    /// The caching bucket's chunk cache (`--store.caching-bucket.config`), shared by every
    /// block of the store.
    chunk_cache: Option<Arc<ChunkCacheBackend>>,
    series_est: u64,
    chunk_est: u64,
}

impl BucketBlock {
    pub(crate) fn new(
        meta: BlockMeta,
        bucket: Bucket,
        config: &crate::StoreConfig,
        cache: Arc<IndexCacheBackend>,
        metrics: StoreMetrics,
        reads: Arc<tokio::sync::Semaphore>,
        chunk_cache: Option<Arc<ChunkCacheBackend>>,
    ) -> Self {
        let ext = Labels::new(
            meta.external_labels()
                .into_iter()
                .map(|(n, v)| strata_model::Label::new(n, v)),
        );
        let stats = meta
            .thanos
            .as_ref()
            .map(|t| t.index_stats)
            .unwrap_or_default();
        let positive = |v: i64, d: u64| if v > 0 { v as u64 } else { d };
        BucketBlock {
            id: meta.ulid,
            header_path: indexheader::header_path(&config.data_dir, meta.ulid),
            meta,
            ext,
            bucket,
            header: tokio::sync::Mutex::new(None),
            last_used: AtomicI64::new(0),
            cache,
            metrics,
            reads,
            chunk_cache,
            series_est: positive(stats.series_max_size, config.estimated_max_series_size),
            chunk_est: positive(stats.chunk_max_size, config.estimated_max_chunk_size),
        }
    }

    pub fn id(&self) -> Ulid {
        self.id
    }

    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    fn index_key(&self) -> String {
        format!("{}/index", self.id)
    }

    fn bucket_err(&self, source: strata_objstore::Error) -> StoreError {
        StoreError::Bucket {
            block: self.id,
            source,
        }
    }

    async fn index_size(&self) -> Result<u64, StoreError> {
        let from_meta = self.meta.thanos.as_ref().and_then(|t| {
            t.files
                .iter()
                .find(|f| f.rel_path == "index")
                .map(|f| f.size_bytes)
                .filter(|&s| s > 0)
        });
        match from_meta {
            Some(s) => Ok(s as u64),
            None => Ok(self
                .bucket
                .attributes(&self.index_key())
                .await
                .map_err(|e| self.bucket_err(e))?
                .size),
        }
    }

    /// Makes sure the index-header file exists (building it from the bucket if needed),
    /// without loading it into memory.
    pub(crate) async fn ensure_header_file(&self) -> Result<(), StoreError> {
        // Under the header lock: a query may be building the same file.
        let _g = self.header.lock().await;
        if self.header_path.exists() {
            return Ok(());
        }
        let size = self.index_size().await?;
        indexheader::build(&self.bucket, self.id, size, &self.header_path).await
    }

    /// The index-header, loading (and if needed building) it on first use.
    pub(crate) async fn header(&self) -> Result<Arc<IndexHeader>, StoreError> {
        self.last_used.store(now_ms(), Ordering::Relaxed);
        let mut g = self.header.lock().await;
        if let Some(h) = &*g {
            return Ok(h.clone());
        }
        let start = Instant::now();
        self.metrics.lazy_load.inc();
        match self.load_header().await {
            Ok(h) => {
                self.metrics
                    .lazy_load_duration
                    .observe(start.elapsed().as_secs_f64());
                tracing::debug!(block = %self.id, elapsed = ?start.elapsed(), memory = h.memory_bytes(), "loaded index-header");
                *g = Some(h.clone());
                Ok(h)
            }
            Err(e) => {
                self.metrics.lazy_load_failed.inc();
                Err(e)
            }
        }
    }

    async fn load_header(&self) -> Result<Arc<IndexHeader>, StoreError> {
        let path = self.header_path.clone();
        if path.exists() {
            let p = path.clone();
            match crate::error::blocking(move || IndexHeader::open(&p)).await? {
                Ok(h) => return Ok(Arc::new(h)),
                Err(e) => {
                    tracing::warn!(block = %self.id, err = %e, "index-header unusable; rebuilding it from the bucket");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let size = self.index_size().await?;
        indexheader::build(&self.bucket, self.id, size, &path).await?;
        let p = path.clone();
        let id = self.id;
        crate::error::blocking(move || IndexHeader::open(&p))
            .await?
            .map(Arc::new)
            .map_err(|e| StoreError::CorruptBlock {
                block: id,
                detail: format!("the index-header built from the bucket does not read back: {e}"),
            })
    }

    /// Drops the in-memory header if unused for `idle_ms`. Returns whether it did.
    pub(crate) fn release_if_idle(&self, idle_ms: i64) -> bool {
        if now_ms() - self.last_used.load(Ordering::Relaxed) < idle_ms {
            return false;
        }
        match self.header.try_lock() {
            Ok(mut g) if g.is_some() => {
                *g = None;
                self.metrics.lazy_unload.inc();
                true
            }
            _ => false,
        }
    }

    pub(crate) fn header_loaded(&self) -> bool {
        self.header.try_lock().map(|g| g.is_some()).unwrap_or(true)
    }

    /// Fetches postings lists; the result is in the order of `keys`. Lists are cached.
    pub(crate) async fn fetch_postings(
        &self,
        keys: &[(String, String, PostingsRange)],
        stats: &FetchStats,
    ) -> Result<Vec<Vec<u32>>, StoreError> {
        let mut out: Vec<Option<Vec<u32>>> = vec![None; keys.len()];
        let mut misses: Vec<usize> = Vec::new();
        let pairs: Vec<(&str, &str)> = keys
            .iter()
            .map(|(n, v, _)| (n.as_str(), v.as_str()))
            .collect();
        let cached = self.cache.get_postings(self.id, &pairs).await;
        for (i, ((_, _, range), hit)) in keys.iter().zip(cached).enumerate() {
            match hit {
                Some(b) => {
                    out[i] = Some(indexheader::decode_postings_list(self.id, range.start, &b)?);
                    add(&stats.postings_touched_bytes, b.len() as u64);
                }
                None => misses.push(i),
            }
        }
        add(&stats.postings_touched, keys.len() as u64);
        if !misses.is_empty() {
            let ranges: Vec<Range<u64>> = misses.iter().map(|&i| keys[i].2.clone()).collect();
            let (fetched, read) = self.get_ranges(&self.index_key(), &ranges, None).await?;
            add(&stats.postings_fetch_count, 1);
            add(&stats.postings_fetched_bytes, read);
            for (&i, data) in misses.iter().zip(fetched) {
                let (name, value, range) = &keys[i];
                let mut data = data;
                let need = indexheader::postings_list_len(&data).unwrap_or(8);
                if (data.len() as u64) < need {
                    // The list is longer than the range the header gave: read it exactly.
                    data = self
                        .get_range(&self.index_key(), range.start..range.start + need)
                        .await?;
                    add(&stats.postings_fetched_bytes, data.len() as u64);
                }
                let exact = data.slice(..(need as usize).min(data.len()));
                let list = indexheader::decode_postings_list(self.id, range.start, &exact)?;
                add(&stats.postings_touched_bytes, exact.len() as u64);
                // Copy: a slice would pin the whole merged read in the cache.
                self.cache
                    .put_postings(self.id, name, value, Bytes::copy_from_slice(&exact));
                out[i] = Some(list);
            }
            add(&stats.postings_fetched, misses.len() as u64);
        }
        Ok(out.into_iter().map(|l| l.expect("filled")).collect())
    }

    /// The resolved entries (`crate::resolved`) of the series `ids` that the index cache
    /// holds, in the order of `ids`; `None` for the others, which [`BucketBlock::read_series`]
    /// reads.
    pub(crate) async fn cached_series(
        &self,
        ids: &[u32],
        stats: &FetchStats,
    ) -> Vec<Option<Bytes>> {
        let out = self.cache.get_series(self.id, ids).await;
        for b in out.iter().flatten() {
            add(&stats.series_touched_bytes, crate::resolved::index_bytes(b));
        }
        add(&stats.series_touched, ids.len() as u64);
        out
    }

    /// Keeps a series' resolved entry in the index cache.
    pub(crate) fn cache_series(&self, id: u32, entry: Bytes) {
        self.cache.put_series(self.id, id, entry);
    }

    /// Reads the index entries of the series `ids` from the bucket in one batch of range
    /// reads: each entry's body, its CRC checked, in the order of `ids`.
    pub(crate) async fn read_series(
        &self,
        ids: &[u32],
        stats: &FetchStats,
    ) -> Result<Vec<Bytes>, StoreError> {
        let ranges: Vec<Range<u64>> = ids
            .iter()
            .map(|&id| {
                let at = u64::from(id) * strata_tsdb::index::SERIES_ALIGN;
                at..at + self.series_est
            })
            .collect();
        let (fetched, read) = self.get_ranges(&self.index_key(), &ranges, None).await?;
        add(&stats.series_fetch_count, 1);
        add(&stats.series_fetched_bytes, read);
        let mut out = Vec::with_capacity(ids.len());
        for (&id, data) in ids.iter().zip(fetched) {
            let at = u64::from(id) * strata_tsdb::index::SERIES_ALIGN;
            let body = match self.series_body(at, &data)? {
                Some(b) => b,
                None => {
                    self.metrics.series_refetches.inc();
                    let (len, n) =
                        read_uvarint(&data).map_err(|e| self.corrupt_at(at, "series entry", e))?;
                    let exact = self
                        .get_range(&self.index_key(), at..at + n as u64 + len + 4)
                        .await?;
                    add(&stats.series_fetched_bytes, exact.len() as u64);
                    self.series_body(at, &exact)?.ok_or_else(|| {
                        self.corrupt_at(at, "series entry", "runs past the end of the index")
                    })?
                }
            };
            add(&stats.series_touched_bytes, body.len() as u64);
            out.push(body);
        }
        add(&stats.series_fetched, ids.len() as u64);
        Ok(out)
    }

    fn corrupt_at(&self, at: u64, what: &str, detail: impl std::fmt::Display) -> StoreError {
        StoreError::CorruptBlock {
            block: self.id,
            detail: format!("{what} at index offset {at}: {detail}"),
        }
    }

    /// The CRC-checked body of the series entry at the start of `data`, or `None` if `data`
    /// is too short to hold it.
    fn series_body(&self, at: u64, data: &Bytes) -> Result<Option<Bytes>, StoreError> {
        let (len, n) = match read_uvarint(data) {
            Ok(v) => v,
            Err(strata_tsdb::encoding::DecodeError::UnexpectedEof { .. }) => return Ok(None),
            Err(e) => return Err(self.corrupt_at(at, "series entry", e)),
        };
        let end = (n as u64).saturating_add(len).saturating_add(4);
        if end > data.len() as u64 {
            return Ok(None);
        }
        let body = data.slice(n..n + len as usize);
        let stored = u32::from_be_bytes(
            data[n + len as usize..n + len as usize + 4]
                .try_into()
                .expect("4"),
        );
        let computed = crc32c::crc32c(&body);
        if stored != computed {
            return Err(self.corrupt_at(
                at,
                "series entry",
                format!("CRC32C mismatch: stored {stored:#010x}, computed {computed:#010x}"),
            ));
        }
        Ok(Some(body))
    }

    /// Fetches raw chunks, in the order of `refs`. The data are slices of what was read:
    /// never copied, never re-encoded.
    ///
    /// With a `budget` (the chunk pool), every buffer read is adopted by it before it is parsed,
    /// so the pool accounts for it until the last chunk slice of it is dropped; the caller
    /// reserved at least [`BucketBlock::chunk_read_bytes`] for `refs`.
    pub(crate) async fn fetch_chunks(
        &self,
        refs: &[ChunkRef],
        stats: &FetchStats,
        budget: Option<&Budget>,
    ) -> Result<Vec<RawChunk>, StoreError> {
        let mut by_segment: FxHashMap<u32, Vec<usize>> = FxHashMap::default();
        for (i, r) in refs.iter().enumerate() {
            by_segment.entry(r.segment()).or_default().push(i);
        }
        add(&stats.chunks_touched, refs.len() as u64);
        let fetches = by_segment.into_iter().map(|(seg, idx)| async move {
            let key = format!("{}/chunks/{}", self.id, segment_file_name(seg));
            let ranges: Vec<Range<u64>> = idx
                .iter()
                .map(|&i| {
                    let o = u64::from(refs[i].offset());
                    o..o + self.chunk_est
                })
                .collect();
            let (data, read, view) = match &self.chunk_cache {
                Some(cc) => {
                    let view = self.segment_view(cc, seg, &key, &ranges).await?;
                    let data = ranges.iter().map(|r| view.first_part(r)).collect();
                    (data, view.read, Some(view))
                }
                None => {
                    let (data, read) = self.get_ranges(&key, &ranges, budget).await?;
                    (data, read, None)
                }
            };
            add(&stats.chunks_fetch_count, 1);
            add(&stats.chunks_fetched_bytes, read);
            let mut out = Vec::with_capacity(idx.len());
            // Per chunk: its encoding byte and stored CRC, checked all at once below.
            let mut sums: Vec<ChunkSum> = Vec::with_capacity(idx.len());
            for ((&i, d), r) in idx.iter().zip(data).zip(&ranges) {
                let mut parsed = self.parse_chunk(refs[i], d)?;
                // A chunk running past its cached subrange: its bytes copied out of the
                // subranges that hold them, when the view has them all.
                // Otherwise its start, length included, for the exact re-read below.
                if let (Err(_), Some(view)) = (&parsed, &view) {
                    if let Some(whole) = view.whole_chunk(r.start) {
                        let whole = match budget {
                            Some(b) => b.adopt(whole)?,
                            None => whole,
                        };
                        parsed = self.parse_chunk(refs[i], whole)?;
                    } else if let Some(head) = view.head(r.start) {
                        parsed = Err(head);
                    }
                }
                let (chunk, sum) = match parsed {
                    Ok(c) => c,
                    Err(d) => {
                        self.metrics.chunk_refetches.inc();
                        let (len, n) = read_uvarint(&d)
                            .map_err(|e| self.chunk_corrupt(refs[i], e.to_string()))?;
                        // A damaged length must not become a read of the rest of the file.
                        if len > MAX_CHUNK_BYTES {
                            return Err(self.chunk_corrupt(
                                refs[i],
                                format!(
                                    "claims a length of {len} bytes, more than a segment file holds"
                                ),
                            ));
                        }
                        let o = u64::from(refs[i].offset());
                        let mut exact = self.get_range(&key, o..o + n as u64 + 1 + len + 4).await?;
                        if let Some(b) = budget {
                            exact = b.adopt(exact)?;
                        }
                        add(&stats.chunks_fetched_bytes, exact.len() as u64);
                        self.parse_chunk(refs[i], exact)?.map_err(|_| {
                            self.chunk_corrupt(
                                refs[i],
                                "runs past the end of the segment file".into(),
                            )
                        })?
                    }
                };
                add(&stats.chunks_touched_bytes, chunk.data.len() as u64);
                out.push((i, chunk));
                sums.push(sum);
            }
            self.check_crcs(&out, &sums, refs)?;
            // Slices pin the whole merged reads until the answer is sent. When most of what
            // was read is gaps, copy the chunks out so the reads are freed now.
            let useful: usize = out.iter().map(|(_, c)| c.data.len()).sum();
            // (Slices of cached subranges pin nothing the cache does not hold anyway.)
            if view.is_none() && (useful as u64) * 2 < read {
                let mut buf = bytes::BytesMut::with_capacity(useful);
                for (_, c) in &out {
                    buf.extend_from_slice(&c.data);
                }
                let mut buf = buf.freeze();
                if let Some(b) = budget {
                    buf = b.adopt(buf)?;
                }
                let mut at = 0;
                for (_, c) in &mut out {
                    let n = c.data.len();
                    c.data = buf.slice(at..at + n);
                    at += n;
                }
            }
            Ok::<_, StoreError>(out)
        });
        let results = futures::future::try_join_all(fetches).await?;
        let mut out: Vec<Option<RawChunk>> = vec![None; refs.len()];
        for (i, c) in results.into_iter().flatten() {
            out[i] = Some(c);
        }
        add(&stats.chunks_fetched, refs.len() as u64);
        Ok(out.into_iter().map(|c| c.expect("filled")).collect())
    }

    /// The most bytes [`BucketBlock::fetch_chunks`] can hold at once for `refs` (short of
    /// exact re-reads of chunks longer than the estimate): its merged reads, plus the copy it
    /// makes of a segment's chunks when those are less than half of what was read.
    pub(crate) fn chunk_read_bytes(&self, refs: &[ChunkRef]) -> u64 {
        let mut by_segment: FxHashMap<u32, Vec<Range<u64>>> = FxHashMap::default();
        for r in refs {
            let o = u64::from(r.offset());
            by_segment
                .entry(r.segment())
                .or_default()
                .push(o..o + self.chunk_est);
        }
        by_segment
            .values()
            .map(|ranges| {
                let read: u64 = plan_reads(ranges)
                    .iter()
                    .map(|(g, _)| g.end - g.start + 1023)
                    .sum();
                read + read / 2 + 1024
            })
            .sum()
    }

    fn chunk_corrupt(&self, r: ChunkRef, detail: String) -> StoreError {
        StoreError::CorruptBlock {
            block: self.id,
            detail: format!("chunk {r}: {detail}"),
        }
    }

    /// `len uvarint | encoding u8 | data | CRC32C(encoding, data)` at the start of `d`; `d`
    /// back (`Ok(Err(d))`) when it holds only the start of the chunk. The chunk's data are `d`
    /// narrowed in place: no reference count is taken per chunk. The CRC is not checked here
    /// but returned with the encoding byte, for [`BucketBlock::check_crcs`].
    fn parse_chunk(
        &self,
        r: ChunkRef,
        mut d: Bytes,
    ) -> Result<Result<(RawChunk, ChunkSum), Bytes>, StoreError> {
        let (len, n) = match read_uvarint(&d) {
            Ok(v) => v,
            Err(strata_tsdb::encoding::DecodeError::UnexpectedEof { .. }) => return Ok(Err(d)),
            Err(e) => return Err(self.chunk_corrupt(r, e.to_string())),
        };
        let len =
            usize::try_from(len).map_err(|_| self.chunk_corrupt(r, "length overflows".into()))?;
        let end = n
            .checked_add(1)
            .and_then(|v| v.checked_add(len))
            .and_then(|v| v.checked_add(4))
            .ok_or_else(|| self.chunk_corrupt(r, "length overflows".into()))?;
        if end > d.len() {
            return Ok(Err(d));
        }
        let stored = u32::from_be_bytes(d[end - 4..end].try_into().expect("4"));
        let encoding = d[n];
        d.truncate(end - 4);
        bytes::Buf::advance(&mut d, n + 1);
        Ok(Ok((
            RawChunk::new(Encoding::from_u8(encoding), d),
            (encoding, stored),
        )))
    }

    /// Checks the CRC of every chunk of `out` (`sums`: each one's encoding byte and stored
    /// CRC; `out`'s indices point into `refs`), four at a time (`chunk_crcs`). A mismatch is
    /// a corrupt chunk, named.
    fn check_crcs(
        &self,
        out: &[(usize, RawChunk)],
        sums: &[ChunkSum],
        refs: &[ChunkRef],
    ) -> Result<(), StoreError> {
        let input: Vec<(u8, &[u8])> = out
            .iter()
            .zip(sums)
            .map(|((_, c), &(e, _))| (e, &c.data[..]))
            .collect();
        let mut computed = Vec::new();
        chunk_crcs(&input, &mut computed);
        for (((i, _), &(_, stored)), computed) in out.iter().zip(sums).zip(computed) {
            if stored != computed {
                return Err(self.chunk_corrupt(
                    refs[*i],
                    format!("CRC32C mismatch: stored {stored:#010x}, computed {computed:#010x}"),
                ));
            }
        }
        Ok(())
    }

    /// The subranges of segment file `seg` (object `key`) that `ranges` overlap, from the
    /// chunk cache or, for those it lacks, read from the bucket (in at most
    /// `max_chunks_get_range_requests` requests) and cached.
    async fn segment_view(
        &self,
        cc: &ChunkCacheBackend,
        seg: u32,
        key: &str,
        ranges: &[Range<u64>],
    ) -> Result<SegmentView, StoreError> {
        let s = cc.config().subrange_size;
        let size = match cc.object_size(self.id, seg).await {
            Some(size) => size,
            None => {
                let size = {
                    let _permit = self.read_permit().await?;
                    self.bucket
                        .attributes(key)
                        .await
                        .map_err(|e| self.bucket_err(e))?
                        .size
                };
                cc.set_object_size(self.id, seg, size);
                size
            }
        };
        let mut wanted: Vec<u64> = Vec::with_capacity(ranges.len() * 2);
        for r in ranges {
            let end = r.end.min(size);
            if r.start < end {
                wanted.extend(r.start / s..=(end - 1) / s);
            }
        }
        wanted.sort_unstable();
        wanted.dedup();
        let requested = wanted.iter().map(|&k| (k * s + s).min(size) - k * s).sum();
        let found = cc
            .lookup(self.id, seg, &wanted, requested, size)
            .await
            .found;
        let mut parts: FxHashMap<u64, Bytes> = FxHashMap::default();
        let mut missing = Vec::new();
        for (k, v) in wanted.into_iter().zip(found) {
            match v {
                Some(v) => {
                    parts.insert(k, v);
                }
                None => missing.push(k),
            }
        }
        let reads = plan_subrange_reads(&missing, cc.config().max_get_range_requests);
        let fetched: Vec<((u64, u64), Bytes)> = futures::stream::iter(reads)
            .map(|(a, b)| async move {
                let data = self.get_range(key, a * s..(b * s).min(size)).await?;
                Ok::<_, StoreError>(((a, b), data))
            })
            .buffer_unordered(MAX_PARALLEL_PER_CALL)
            .try_collect()
            .await?;
        let mut read = 0;
        let mut new = Vec::new();
        for ((a, b), data) in fetched {
            read += data.len() as u64;
            for k in a..b {
                let from = (((k - a) * s) as usize).min(data.len());
                let to = (((k - a + 1) * s) as usize).min(data.len());
                if from == to {
                    break;
                }
                let part = data.slice(from..to);
                new.push((
                    SubrangeKey {
                        block: self.id,
                        segment: seg,
                        index: k,
                    },
                    part.clone(),
                ));
                parts.insert(k, part);
            }
        }
        cc.store(new, read);
        Ok(SegmentView {
            parts,
            subrange: s,
            size,
            read,
        })
    }

    /// A permit of the store's read gate, held for one object storage request.
    async fn read_permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, StoreError> {
        self.reads
            .acquire()
            .await
            .map_err(|_| StoreError::Cancelled)
    }

    async fn get_range(&self, key: &str, r: Range<u64>) -> Result<Bytes, StoreError> {
        let _permit = self.read_permit().await?;
        self.bucket
            .get_range(key, r)
            .await
            .map_err(|e| self.bucket_err(e))
    }

    /// Reads several ranges of one object: ranges closer than [`MAX_GAP`] are merged into one
    /// request of at most [`MAX_MERGED`] bytes (unless one range alone is larger), and each
    /// request takes a permit of the store's read gate, so requests in flight are bounded
    /// exactly. Results are zero-copy slices of the merged reads, cut at the object's end, of
    /// buffers adopted by `budget` when given. Also returns the bytes read.
    async fn get_ranges(
        &self,
        key: &str,
        ranges: &[Range<u64>],
        budget: Option<&Budget>,
    ) -> Result<(Vec<Bytes>, u64), StoreError> {
        let groups = plan_reads(ranges);
        let fetched: Vec<(Range<u64>, Vec<usize>, Bytes)> = futures::stream::iter(groups)
            .map(|(g, members)| async move {
                let mut data = self.get_range(key, g.clone()).await?;
                if let Some(b) = budget {
                    data = b.adopt(data)?;
                }
                Ok::<_, StoreError>((g, members, data))
            })
            .buffer_unordered(MAX_PARALLEL_PER_CALL)
            .try_collect()
            .await?;
        let mut out = vec![Bytes::new(); ranges.len()];
        let read = fetched.iter().map(|f| f.2.len() as u64).sum();
        for (g, members, data) in fetched {
            for i in members {
                let r = &ranges[i];
                let from = ((r.start - g.start) as usize).min(data.len());
                let to = ((r.end - g.start) as usize).min(data.len());
                out[i] = data.slice(from..to);
            }
        }
        Ok((out, read))
    }
}

/// A segment file's subranges that one read needs (see [`BucketBlock::segment_view`]).
struct SegmentView {
    parts: FxHashMap<u64, Bytes>,
    subrange: u64,
    /// The segment file's size.
    size: u64,
    /// Bytes read from the bucket for this view.
    read: u64,
}

impl SegmentView {
    /// The bytes of `r` that lie in its first subrange, as a slice of it (no copy): the
    /// whole chunk unless it runs past the subrange's end.
    fn first_part(&self, r: &Range<u64>) -> Bytes {
        let k = r.start / self.subrange;
        let Some(part) = self.parts.get(&k) else {
            return Bytes::new();
        };
        let from = (r.start - k * self.subrange) as usize;
        let to = ((r.end.min(self.size) - k * self.subrange) as usize).min(part.len());
        if from >= to {
            return Bytes::new();
        }
        part.slice(from..to)
    }

    /// The whole chunk at `offset`, copied out of the subranges holding it: `None` when
    /// its length cannot be read or the view lacks some of its bytes (a chunk longer than
    /// estimated, for the exact re-read).
    fn whole_chunk(&self, offset: u64) -> Option<Bytes> {
        let head = self.head(offset)?;
        let (len, n) = read_uvarint(&head).ok()?;
        let total = (n as u64).checked_add(1 + 4)?.checked_add(len)?;
        // Past the file's end: damage, which the exact re-read names.
        let end = offset.checked_add(total).filter(|&e| e <= self.size)?;
        Some(self.copy(offset, end)?.freeze())
    }

    /// The first bytes of the chunk at `offset`, enough for its length (whose varint may
    /// itself span two subranges), copied.
    fn head(&self, offset: u64) -> Option<Bytes> {
        let end = offset.saturating_add(10).min(self.size);
        Some(self.copy(offset, end)?.freeze())
    }

    /// Bytes `[start, end)` of the file, copied; `None` when a subrange is missing.
    fn copy(&self, start: u64, end: u64) -> Option<bytes::BytesMut> {
        let mut out = bytes::BytesMut::with_capacity(end.saturating_sub(start) as usize);
        let mut at = start;
        while at < end {
            let k = at / self.subrange;
            let part = self.parts.get(&k)?;
            let from = (at - k * self.subrange) as usize;
            let to = ((end - k * self.subrange) as usize).min(part.len());
            if from >= to {
                return None;
            }
            out.extend_from_slice(&part[from..to]);
            at += (to - from) as u64;
        }
        Some(out)
    }
}

/// How [`BucketBlock::get_ranges`] reads `ranges`: merged requests and the ranges each serves.
fn plan_reads(ranges: &[Range<u64>]) -> Vec<(Range<u64>, Vec<usize>)> {
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_unstable_by_key(|&i| ranges[i].start);
    let mut groups: Vec<(Range<u64>, Vec<usize>)> = Vec::new();
    for i in order {
        let r = &ranges[i];
        match groups.last_mut() {
            Some((g, members))
                if r.start <= g.end.saturating_add(MAX_GAP)
                    && r.end.max(g.end) - g.start <= MAX_MERGED =>
            {
                g.end = g.end.max(r.end);
                members.push(i);
            }
            _ => groups.push((r.clone(), vec![i])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A segment file of chunks `len uvarint | encoding | data | crc` of the given data
    /// lengths, and each chunk's offset and total length.
    fn segment(lens: &[usize]) -> (Vec<u8>, Vec<(u64, u64)>) {
        let mut file = vec![0u8; 8];
        let mut chunks = Vec::new();
        for (i, &len) in lens.iter().enumerate() {
            let start = file.len();
            let mut l = len as u64;
            loop {
                let b = (l & 0x7f) as u8;
                l >>= 7;
                if l == 0 {
                    file.push(b);
                    break;
                }
                file.push(b | 0x80);
            }
            file.push(1);
            file.extend((0..len).map(|k| (i * 31 + k) as u8));
            file.extend_from_slice(&[9, 9, 9, 9]);
            chunks.push((start as u64, (file.len() - start) as u64));
        }
        (file, chunks)
    }

    /// A view holding every subrange of `file`.
    fn view(file: &[u8], subrange: u64) -> SegmentView {
        let data = Bytes::copy_from_slice(file);
        let parts = (0..file.len().div_ceil(subrange as usize))
            .map(|k| {
                let from = k * subrange as usize;
                let to = (from + subrange as usize).min(file.len());
                (k as u64, data.slice(from..to))
            })
            .collect();
        SegmentView {
            parts,
            subrange,
            size: file.len() as u64,
            read: 0,
        }
    }

    proptest! {
        /// Whatever the subrange size, a chunk comes out of the view as the file holds it:
        /// whole from its first subrange when it fits there, else copied out of several.
        #[test]
        fn a_view_gives_each_chunk_as_the_file_holds_it(
            lens in proptest::collection::vec(0usize..400, 1..40),
            subrange in 1u64..700,
            est in 1u64..900,
        ) {
            let (file, chunks) = segment(&lens);
            let v = view(&file, subrange);
            for &(o, total) in &chunks {
                let want = &file[o as usize..(o + total) as usize];
                let first = v.first_part(&(o..o + est));
                let first_len = (est.min(file.len() as u64 - o))
                    .min(subrange - o % subrange) as usize;
                prop_assert_eq!(&first[..], &file[o as usize..o as usize + first_len]);
                let whole = v.whole_chunk(o).expect("every subrange is in the view");
                prop_assert_eq!(&whole[..], want);
                let head = v.head(o).unwrap();
                prop_assert_eq!(&head[..], &file[o as usize..(o as usize + 10).min(file.len())]);
            }
            // A view without a subrange the chunk needs gives nothing to copy.
            let mut partial = view(&file, subrange);
            let (o, total) = chunks[chunks.len() - 1];
            let last = (o + total - 1) / subrange;
            partial.parts.remove(&last);
            prop_assert!(partial.whole_chunk(o).is_none());
        }
    }
}
