//! Selecting series in one block: matchers → postings → series entries → labels and chunk
//! metas.
//!
//! Matcher semantics come from [`strata_tsdb::index::postings_for_matchers`], the same code the
//! local block reader uses, so the gateway and a local read cannot disagree. That function is
//! synchronous, while postings live in object storage, so it runs twice: first over a
//! [`Recorder`] that answers from the index-header alone and notes which postings lists each
//! call needs (answering "some list" with a placeholder so no branch is cut short), then, once
//! every needed list is fetched in one batch of merged range reads, over a [`Replayer`] that
//! hands the fetched lists back call by call. The second run takes the same path as the first
//! until the real lists differ in emptiness, and then it only stops earlier.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use strata_model::{Label, Labels, MatchOp, Matcher};
use strata_tsdb::ChunkMeta;
use strata_tsdb::index::{PostingsIndex, decode_series_entry, postings_for_matchers, union_many};

use crate::block::{BucketBlock, FetchStats};
use crate::error::StoreError;
use crate::indexheader::{IndexHeader, PostingsRange};

/// Series entries fetched and decoded per round trip.
const SERIES_BATCH: usize = 10_000;

type Key = (String, String, PostingsRange);

/// First pass: records the postings lists each call needs.
struct Recorder<'h> {
    header: &'h IndexHeader,
    calls: RefCell<Vec<Vec<Key>>>,
    error: RefCell<Option<StoreError>>,
}

impl Recorder<'_> {
    fn record(&self, r: Result<Vec<Key>, StoreError>) -> strata_tsdb::Result<Vec<u32>> {
        match r {
            Ok(keys) => {
                let placeholder = if keys.is_empty() { vec![] } else { vec![0] };
                self.calls.borrow_mut().push(keys);
                Ok(placeholder)
            }
            Err(e) => {
                self.error.borrow_mut().get_or_insert(e);
                // The real error is taken from `self.error`; this one only stops selection.
                Err(strata_tsdb::Error::Unsupported {
                    file: "index-header".into(),
                    detail: "lookup failed".into(),
                })
            }
        }
    }
}

impl PostingsIndex for Recorder<'_> {
    fn all_postings(&self) -> strata_tsdb::Result<Vec<u32>> {
        let keys = self
            .header
            .all_postings()
            .map(|r| vec![(String::new(), String::new(), r)])
            .unwrap_or_default();
        self.record(Ok(keys))
    }

    fn postings_for_values(&self, name: &str, values: &[&str]) -> strata_tsdb::Result<Vec<u32>> {
        let r = self.header.postings_ranges(name, values).map(|v| {
            v.into_iter()
                .map(|(value, range)| (name.to_string(), value, range))
                .collect()
        });
        self.record(r)
    }

    fn postings_matching(
        &self,
        name: &str,
        prefix: &str,
        accept: &mut dyn FnMut(&str) -> bool,
    ) -> strata_tsdb::Result<Vec<u32>> {
        let r = self
            .header
            .postings_ranges_matching(name, prefix, accept)
            .map(|v| {
                v.into_iter()
                    .map(|(value, range)| (name.to_string(), value, range))
                    .collect()
            });
        self.record(r)
    }
}

/// Second pass: answers each call with the union of the lists the first pass recorded for it.
struct Replayer {
    answers: Vec<Vec<u32>>,
    next: Cell<usize>,
}

impl Replayer {
    fn next(&self) -> strata_tsdb::Result<Vec<u32>> {
        let i = self.next.get();
        self.next.set(i + 1);
        Ok(self.answers.get(i).cloned().unwrap_or_default())
    }
}

impl PostingsIndex for Replayer {
    fn all_postings(&self) -> strata_tsdb::Result<Vec<u32>> {
        self.next()
    }
    fn postings_for_values(&self, _: &str, _: &[&str]) -> strata_tsdb::Result<Vec<u32>> {
        self.next()
    }
    fn postings_matching(
        &self,
        _: &str,
        _: &str,
        _: &mut dyn FnMut(&str) -> bool,
    ) -> strata_tsdb::Result<Vec<u32>> {
        self.next()
    }
}

/// The sorted refs of the series of `block` matching every matcher.
pub(crate) async fn block_postings(
    block: &BucketBlock,
    header: Arc<IndexHeader>,
    matchers: &[Matcher],
    stats: &FetchStats,
) -> Result<Vec<u32>, StoreError> {
    let id = block.id;
    let record = move |header: &IndexHeader, ms: &[Matcher]| {
        let rec = Recorder {
            header,
            calls: RefCell::new(Vec::new()),
            error: RefCell::new(None),
        };
        let res = postings_for_matchers(&rec, ms);
        if let Some(e) = rec.error.into_inner() {
            return Err(e);
        }
        res.map_err(|e| StoreError::CorruptBlock {
            block: id,
            detail: e.to_string(),
        })?;
        Ok(rec.calls.into_inner())
    };
    // Exact lookups read a few hundred bytes of a header file that was read whole when it was
    // opened (so it is in the page cache): cheaper inline than a hop to the blocking pool,
    // which dominated CPU when done per block. Scans over a label's values can read much more
    // and go to the blocking pool.
    let calls = if matchers.iter().any(needs_scan) {
        let ms = matchers.to_vec();
        crate::error::blocking(move || record(&header, &ms)).await??
    } else {
        record(&header, matchers)?
    };

    // Fetch every distinct list once.
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    let mut unique: Vec<Key> = Vec::new();
    for k in calls.iter().flatten() {
        index.entry((k.0.clone(), k.1.clone())).or_insert_with(|| {
            unique.push(k.clone());
            unique.len() - 1
        });
    }
    let lists = if unique.is_empty() {
        Vec::new()
    } else {
        block.fetch_postings(&unique, stats).await?
    };
    let answers: Vec<Vec<u32>> = calls
        .iter()
        .map(|keys| {
            union_many(
                keys.iter()
                    .map(|k| lists[index[&(k.0.clone(), k.1.clone())]].clone())
                    .collect(),
            )
        })
        .collect();
    let rep = Replayer {
        answers,
        next: Cell::new(0),
    };
    postings_for_matchers(&rep, matchers).map_err(|e| StoreError::CorruptBlock {
        block: id,
        detail: e.to_string(),
    })
}

/// Whether selecting postings for `m` scans the values of its label (a regex that is not a
/// literal alternation) rather than looking values up.
fn needs_scan(m: &Matcher) -> bool {
    matches!(m.op(), MatchOp::RegexMatch | MatchOp::RegexNoMatch)
        && !m.matches_everything()
        && m.set_matches().is_none()
}

/// Symbol groups resolved inline; more go to the blocking pool.
const INLINE_SYMBOL_GROUPS: usize = 64;

/// One series of one block: final labels (external labels attached, replica labels removed)
/// and the chunks overlapping the request's time range.
#[derive(Debug, Clone)]
pub(crate) struct BlockSeries {
    pub(crate) labels: Labels,
    pub(crate) chunks: Vec<ChunkMeta>,
}

/// Per-request limits shared by every block of the request.
#[derive(Debug, Default)]
pub(crate) struct RequestLimits {
    /// 0: no limit.
    pub(crate) max_series: u64,
    /// 0: no limit. Counted as chunks of 120 samples.
    pub(crate) max_samples: u64,
    /// 0: no limit. Bytes touched or fetched, whichever is larger.
    pub(crate) max_bytes: u64,
    pub(crate) series: AtomicU64,
    pub(crate) chunks: AtomicU64,
}

/// Samples a chunk is assumed to hold for `--store.limits.request-samples` (Thanos' rule).
pub(crate) const SAMPLES_PER_CHUNK: u64 = 120;

impl RequestLimits {
    fn reserve_series(&self, n: u64) -> Result<(), StoreError> {
        let got = self.series.fetch_add(n, Ordering::Relaxed) + n;
        if self.max_series > 0 && got > self.max_series {
            return Err(StoreError::ResourceExhausted(format!(
                "exceeded series limit: limit {} violated (got {got}); the request touches too many series: narrow the selector or raise --store.limits.request-series",
                self.max_series
            )));
        }
        Ok(())
    }

    pub(crate) fn check_bytes(&self, stats: &FetchStats) -> Result<(), StoreError> {
        if self.max_bytes == 0 {
            return Ok(());
        }
        let got = stats.bytes_touched().max(stats.bytes_fetched());
        if got > self.max_bytes {
            return Err(StoreError::ResourceExhausted(format!(
                "exceeded bytes limit: limit {} bytes violated (got {got}); narrow the selector or time range or raise --store.grpc.downloaded-bytes-limit",
                self.max_bytes
            )));
        }
        Ok(())
    }

    fn reserve_chunks(&self, n: u64) -> Result<(), StoreError> {
        let got = self.chunks.fetch_add(n, Ordering::Relaxed) + n;
        if self.max_samples > 0 {
            let max_chunks = (self.max_samples / SAMPLES_PER_CHUNK).max(1);
            if got > max_chunks {
                return Err(StoreError::ResourceExhausted(format!(
                    "exceeded samples limit: limit {} samples ({max_chunks} chunks of {SAMPLES_PER_CHUNK}) violated (got {got} chunks); narrow the selector or time range or raise --store.limits.request-samples",
                    self.max_samples
                )));
            }
        }
        Ok(())
    }
}

/// What [`block_series`] is asked.
pub(crate) struct SeriesQuery<'a> {
    pub(crate) matchers: &'a [Matcher],
    pub(crate) min_time: i64,
    pub(crate) max_time: i64,
    /// Labels removed from the output (`without_replica_labels`).
    pub(crate) strip: &'a [String],
    /// Whether chunks count against the samples limit (not for label calls or skip_chunks).
    pub(crate) count_chunks: bool,
    pub(crate) limits: &'a RequestLimits,
    pub(crate) stats: &'a FetchStats,
}

/// The series of `block` matching `q`, sorted by their final labels. Series without chunks in
/// the time range are left out.
pub(crate) async fn block_series(
    block: &BucketBlock,
    q: &SeriesQuery<'_>,
) -> Result<Vec<BlockSeries>, StoreError> {
    let header = block.header().await?;
    let ids = block_postings(block, header.clone(), q.matchers, q.stats).await?;
    q.limits.check_bytes(q.stats)?;
    let mut out: Vec<BlockSeries> = Vec::new();
    let mut refs = Vec::new();
    let mut metas = Vec::new();
    for batch in ids.chunks(SERIES_BATCH) {
        let bodies = block.fetch_series(batch, q.stats).await?;
        q.limits.check_bytes(q.stats)?;
        // Decode, keep series with chunks in range, and collect their label symbol refs.
        let mut kept: Vec<(usize, Vec<ChunkMeta>)> = Vec::new();
        let mut symbol_refs: Vec<u32> = Vec::new();
        for (i, body) in bodies.iter().enumerate() {
            decode_series_entry(body, &mut refs, &mut metas).map_err(|e| {
                StoreError::CorruptBlock {
                    block: block.id,
                    detail: format!("series {}: {e}", batch[i]),
                }
            })?;
            let chunks: Vec<ChunkMeta> = metas
                .iter()
                .filter(|c| c.overlaps(q.min_time, q.max_time))
                .copied()
                .collect();
            if chunks.is_empty() {
                continue;
            }
            symbol_refs.push(refs.len() as u32);
            for &(n, v) in &refs {
                symbol_refs.push(n);
                symbol_refs.push(v);
            }
            kept.push((i, chunks));
        }
        q.limits.reserve_series(kept.len() as u64)?;
        if q.count_chunks {
            q.limits
                .reserve_chunks(kept.iter().map(|(_, c)| c.len() as u64).sum())?;
        }
        // Resolve all label symbols of the batch in one pass over the header.
        let mut flat_refs = Vec::with_capacity(symbol_refs.len());
        let mut shape = Vec::with_capacity(kept.len());
        let mut j = 0;
        while j < symbol_refs.len() {
            let n = symbol_refs[j] as usize;
            shape.push(n);
            flat_refs.extend_from_slice(&symbol_refs[j + 1..j + 1 + 2 * n]);
            j += 1 + 2 * n;
        }
        // Few symbol groups (one read each) are resolved inline, many on the blocking pool;
        // see `block_postings` for why.
        let mut groups: Vec<u32> = flat_refs
            .iter()
            .map(|r| r / crate::indexheader::SAMPLING as u32)
            .collect();
        groups.sort_unstable();
        groups.dedup();
        let strings = if groups.len() <= INLINE_SYMBOL_GROUPS {
            header.lookup_symbols(&flat_refs)?
        } else {
            let h = header.clone();
            crate::error::blocking(move || h.lookup_symbols(&flat_refs)).await??
        };
        let mut s = strings.into_iter();
        for ((_, chunks), n) in kept.into_iter().zip(shape) {
            let mut labels = Vec::with_capacity(n + block.ext.len());
            for _ in 0..n {
                let name = s.next().expect("shape matches");
                let value = s.next().expect("shape matches");
                labels.push(Label { name, value });
            }
            if !Labels::is_valid_sorted(&labels) {
                return Err(StoreError::CorruptBlock {
                    block: block.id,
                    detail: "a series' labels are not sorted or repeat a name".into(),
                });
            }
            let labels = finalize_labels(Labels::from_sorted(labels), &block.ext, q.strip);
            out.push(BlockSeries { labels, chunks });
        }
    }
    // Attaching external labels or removing replica labels can reorder series.
    if !out.windows(2).all(|w| w[0].labels <= w[1].labels) {
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
    }
    Ok(out)
}

/// Series labels with the block's external labels attached (they win on a clash, as in
/// Thanos) and the replica labels removed.
pub(crate) fn finalize_labels(series: Labels, ext: &Labels, strip: &[String]) -> Labels {
    let merged = series.merged_with(ext);
    if strip.is_empty() || !merged.iter().any(|l| strip.contains(&l.name)) {
        return merged;
    }
    Labels::from_sorted(
        merged
            .into_vec()
            .into_iter()
            .filter(|l| !strip.contains(&l.name))
            .collect(),
    )
}

/// Splits matchers into those on the block's external labels and the rest. `None` when an
/// external-label matcher rejects the block's value; otherwise the matchers to run against
/// the index.
pub(crate) fn split_ext_matchers(matchers: &[Matcher], ext: &Labels) -> Option<Vec<Matcher>> {
    let mut rest = Vec::with_capacity(matchers.len());
    for m in matchers {
        match ext.get(m.name()) {
            Some(v) => {
                if !m.matches(v) {
                    return None;
                }
            }
            None => rest.push(m.clone()),
        }
    }
    Some(rest)
}
