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

use bytes::Bytes;

use strata_model::{Labels, MatchOp, Matcher};
use strata_tsdb::ChunkMeta;
use strata_tsdb::index::{PostingsIndex, decode_series_entry, postings_for_matchers, union_many};

use crate::block::{BucketBlock, FetchStats};
use crate::error::StoreError;
use crate::indexheader::{IndexHeader, PostingsRange};
use crate::packed::{PackedBuilder, PackedLabels};
use crate::resolved::ResolvedEntry;

/// Series entries fetched and decoded per round trip, at most.
pub(crate) const SERIES_BATCH: usize = 10_000;

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
    pub(crate) labels: PackedLabels,
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

/// What a block is asked for a request.
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

/// Calls `f` with every series of `block` matching `q` (final labels, in order), one decoded
/// batch at a time. Series without chunks in the time range are left out. For label calls,
/// which fold series into a set; Series calls merge [`BlockCursor`]s instead.
pub(crate) async fn for_each_series(
    block: &Arc<BucketBlock>,
    q: &SeriesQuery<'_>,
    mut f: impl FnMut(BlockSeries),
) -> Result<(), StoreError> {
    let mut c = BlockCursor::open(block.clone(), q, SERIES_BATCH, SERIES_BATCH).await?;
    while c.fill(q).await? {
        c.ready.drain(..).for_each(&mut f);
    }
    Ok(())
}

/// How a block's series reach final-label order.
#[derive(Debug)]
enum Order {
    /// Attaching the external labels keeps the index order except for the prefix case that
    /// [`Reorder`] fixes with a handful of series held back: streamed batch by batch.
    Stream(Reorder),
    /// An external or replica label name also occurs in the block's series, so attaching or
    /// removing it can move any series anywhere: the block is collected and sorted whole, as
    /// Thanos does in that case. Bounded by `--store.limits.request-series`.
    SortAll,
}

/// A block's matching series for one request, decoded batch by batch in final-label order.
/// Holds the block's matching series refs (4 bytes each) and at most one batch of decoded
/// series, so a request's memory does not grow with how many series a block matches.
#[derive(Debug)]
pub(crate) struct BlockCursor {
    pub(crate) block: Arc<BucketBlock>,
    header: Arc<IndexHeader>,
    ids: Vec<u32>,
    next: usize,
    /// Series entries the next round decodes: it starts small and doubles up to `batch`, so
    /// that a request's first frames go out (and the client starts evaluating them) without
    /// waiting for a whole round of every block, while later rounds stay large.
    round: usize,
    batch: usize,
    order: Order,
    /// Decoded series in final-label order, ready to merge.
    pub(crate) ready: std::collections::VecDeque<BlockSeries>,
}

impl BlockCursor {
    /// Selects the block's postings for `q` and decides how its series are ordered; decodes
    /// nothing yet. One [`BlockCursor::decode_round`] decodes `first_batch` series entries,
    /// the next twice as many, and so on up to `batch`.
    pub(crate) async fn open(
        block: Arc<BucketBlock>,
        q: &SeriesQuery<'_>,
        first_batch: usize,
        batch: usize,
    ) -> Result<Self, StoreError> {
        let header = block.header().await?;
        let ids = block_postings(&block, header.clone(), q.matchers, q.stats).await?;
        q.limits.check_bytes(q.stats)?;
        let clash = header
            .label_names()
            .any(|n| block.ext.get(n).is_some() || q.strip.iter().any(|s| s == n));
        let order = if clash {
            Order::SortAll
        } else {
            let ext = finalize_labels(Labels::default(), &block.ext, q.strip);
            Order::Stream(Reorder::new(ext))
        };
        Ok(BlockCursor {
            block,
            header,
            ids,
            next: 0,
            round: first_batch.clamp(1, batch.max(1)),
            batch: batch.max(1),
            order,
            ready: std::collections::VecDeque::new(),
        })
    }

    /// Makes sure [`BlockCursor::ready`] holds at least one series unless the block is
    /// exhausted; returns whether it does.
    pub(crate) async fn fill(&mut self, q: &SeriesQuery<'_>) -> Result<bool, StoreError> {
        while self.ready.is_empty() && self.has_more() {
            self.decode_round(q).await?;
        }
        Ok(!self.ready.is_empty())
    }

    /// Whether series entries remain to be decoded.
    pub(crate) fn has_more(&self) -> bool {
        self.next < self.ids.len()
    }

    /// Decodes the next batch (all of it when sorting whole) and appends what is settled to
    /// [`BlockCursor::ready`].
    pub(crate) async fn decode_round(&mut self, q: &SeriesQuery<'_>) -> Result<(), StoreError> {
        if !self.has_more() {
            return Ok(());
        }
        let end = match self.order {
            Order::Stream(_) => {
                let round = self.round;
                self.round = (round * 2).min(self.batch);
                (self.next + round).min(self.ids.len())
            }
            Order::SortAll => self.ids.len(),
        };
        let mut decoded = Vec::new();
        let mut at = self.next;
        while at < end {
            let to = (at + SERIES_BATCH).min(end);
            decode_batch(
                &self.block,
                &self.header,
                &self.ids[at..to],
                q,
                &mut decoded,
            )
            .await?;
            at = to;
        }
        self.next = end;
        let last = self.next == self.ids.len();
        match &mut self.order {
            Order::Stream(r) => {
                for s in decoded {
                    r.push(s, &mut self.ready);
                }
                if last {
                    r.flush(&mut self.ready);
                }
            }
            Order::SortAll => {
                decoded.sort_by(|a, b| a.series.labels.cmp(&b.series.labels));
                self.ready.extend(decoded.into_iter().map(|d| d.series));
            }
        }
        if last {
            // Nothing more to decode: give the refs back now, not when the request ends.
            self.ids = Vec::new();
            self.next = 0;
        }
        Ok(())
    }
}

/// A decoded series: its final form and how many labels it had in the index (the external
/// labels of a streamed block never clash, so its index labels are the final ones minus the
/// external names).
#[derive(Debug)]
struct Decoded {
    series: BlockSeries,
    index_len: usize,
}

/// Decodes the series entries `ids` in index order into `out`, leaving out series without
/// chunks in the time range, and counts them against the request's limits. Entries come
/// resolved from the index cache, or are read from the bucket, resolved and cached.
async fn decode_batch(
    block: &BucketBlock,
    header: &Arc<IndexHeader>,
    batch: &[u32],
    q: &SeriesQuery<'_>,
    out: &mut Vec<Decoded>,
) -> Result<(), StoreError> {
    let mut entries = block.cached_series(batch, q.stats).await;
    let misses: Vec<usize> = (0..batch.len()).filter(|&i| entries[i].is_none()).collect();
    if !misses.is_empty() {
        let ids: Vec<u32> = misses.iter().map(|&i| batch[i]).collect();
        let bodies = block.read_series(&ids, q.stats).await?;
        q.limits.check_bytes(q.stats)?;
        let resolved = resolve_entries(block, header, &ids, &bodies).await?;
        for ((&i, &id), entry) in misses.iter().zip(&ids).zip(resolved) {
            block.cache_series(id, entry.clone());
            entries[i] = Some(entry);
        }
    } else {
        q.limits.check_bytes(q.stats)?;
    }
    // Keep series with chunks in range.
    let mut kept: Vec<(&Bytes, ResolvedEntry<'_>, Vec<ChunkMeta>)> = Vec::new();
    for (entry, &id) in entries.iter().zip(batch) {
        let corrupt = |detail: &str| StoreError::CorruptBlock {
            block: block.id,
            detail: format!("series {id}: cached entry: {detail}"),
        };
        let entry = entry
            .as_ref()
            .ok_or_else(|| corrupt("neither cached nor read"))?;
        let parsed = ResolvedEntry::parse(entry).map_err(corrupt)?;
        let chunks: Vec<ChunkMeta> = parsed
            .chunks()
            .filter(|c| c.overlaps(q.min_time, q.max_time))
            .collect();
        if !chunks.is_empty() {
            kept.push((entry, parsed, chunks));
        }
    }
    q.limits.reserve_series(kept.len() as u64)?;
    if q.count_chunks {
        q.limits
            .reserve_chunks(kept.iter().map(|(_, _, c)| c.len() as u64).sum())?;
    }
    let mut builder = PackedBuilder::default();
    out.reserve(kept.len());
    for (entry, parsed, chunks) in kept {
        // Cached labels are final but for the request's replica labels: without any to
        // remove, the label set is a slice of the cache entry.
        let cached = parsed.packed(entry);
        let strip = |n: &str| q.strip.iter().any(|s| s == n);
        let labels = if q.strip.is_empty() || !cached.iter().any(|(n, _)| strip(n)) {
            cached
        } else {
            for (n, v) in cached.iter().filter(|(n, _)| !strip(n)) {
                builder.push(n, v);
            }
            builder.finish()
        };
        out.push(Decoded {
            series: BlockSeries { labels, chunks },
            index_len: parsed.index_len(),
        });
    }
    Ok(())
}

/// Turns index series entries (`bodies`, of the series `ids`) into resolved entries: decoded,
/// their label symbols looked up in one pass over the index-header, checked (labels sorted by
/// name, no name twice), and the block's external labels attached.
async fn resolve_entries(
    block: &BucketBlock,
    header: &Arc<IndexHeader>,
    ids: &[u32],
    bodies: &[Bytes],
) -> Result<Vec<Bytes>, StoreError> {
    let mut refs = Vec::new();
    let mut metas = Vec::new();
    let mut all_metas: Vec<Vec<ChunkMeta>> = Vec::with_capacity(bodies.len());
    let mut shape = Vec::with_capacity(bodies.len());
    let mut flat_refs: Vec<u32> = Vec::new();
    for (body, id) in bodies.iter().zip(ids) {
        decode_series_entry(body, &mut refs, &mut metas).map_err(|e| StoreError::CorruptBlock {
            block: block.id,
            detail: format!("series {id}: {e}"),
        })?;
        shape.push(refs.len());
        for &(n, v) in &refs {
            flat_refs.push(n);
            flat_refs.push(v);
        }
        all_metas.push(std::mem::take(&mut metas));
    }
    // Few symbol groups (one read each) are resolved inline, many on the blocking pool;
    // see `block_postings` for why.
    let mut groups: Vec<u32> = flat_refs
        .iter()
        .map(|r| r / crate::indexheader::SAMPLING as u32)
        .collect();
    groups.sort_unstable();
    groups.dedup();
    let (text, spans) = if groups.len() <= INLINE_SYMBOL_GROUPS {
        let (mut text, mut spans) = (String::new(), Vec::new());
        header.lookup_symbols_into(&flat_refs, &mut text, &mut spans)?;
        (text, spans)
    } else {
        let h = header.clone();
        crate::error::blocking(move || {
            let (mut text, mut spans) = (String::new(), Vec::new());
            h.lookup_symbols_into(&flat_refs, &mut text, &mut spans)
                .map(|()| (text, spans))
        })
        .await??
    };
    let sym = |i: usize| {
        let (a, b) = spans[i];
        &text[a as usize..b as usize]
    };
    let mut at = 0;
    let mut out = Vec::with_capacity(bodies.len());
    let mut final_labels: Vec<(&str, &str)> = Vec::new();
    for (((n, metas), id), body) in shape.into_iter().zip(&all_metas).zip(ids).zip(bodies) {
        let corrupt = |detail: &str| StoreError::CorruptBlock {
            block: block.id,
            detail: format!("series {id}: {detail}"),
        };
        if at + 2 * n > spans.len() {
            return Err(corrupt("fewer label symbols resolved than referenced"));
        }
        if (1..n).any(|k| sym(at + 2 * k - 2) >= sym(at + 2 * k)) {
            return Err(corrupt("labels are not sorted or repeat a name"));
        }
        let index = (0..n).map(|k| (sym(at + 2 * k), sym(at + 2 * k + 1)));
        final_labels.clear();
        attach_external(index, &block.ext, |n, v| final_labels.push((n, v)));
        out.push(crate::resolved::encode(
            final_labels.iter().copied(),
            n,
            body.len(),
            metas,
        ));
        at += 2 * n;
    }
    Ok(out)
}

/// Restores final-label order for a block whose external labels do not clash with its series'
/// label names, holding back only the few series that attaching them can move.
///
/// Why so few: the index orders series by their labels, and inserting the same external labels
/// into two label sets keeps their order unless one set is a proper prefix of the other. With
/// `a < b` differing first at position `i`, both merged sets agree up to `a[i]`, where `b` has
/// `b[i]` or an external label named after `a[i]`; either sorts after `a[i]`. With `a` a prefix
/// of `b`, `a`'s merged set continues with the external labels named after `b[len(a)]`, which
/// sort after `b[len(a)]`: `b` moves before `a` exactly when such an external label exists.
///
/// So a pending series `x` may still be overtaken only by later series extending it, and those
/// all follow it contiguously in the index (everything between `x` and an extension of `x`
/// extends `x`). With `c` the latest series seen: if `x` is not a prefix of `c`, no later series
/// extends it; if `c[len(x)]` is named after the last external label, no later extension (whose
/// label at that position sorts at or after `c`'s) can sort before `x` either. Such an `x` is
/// *settled*. Pending series are kept in a min-heap by final labels and emitted while the
/// smallest is settled. When the smallest is not settled it is a prefix of `c`, and every other
/// pending series is too (any other would sort before it): the heap holds at most one series
/// per label of `c`, plus `c`.
#[derive(Debug)]
struct Reorder {
    /// The external labels as attached (replica labels removed).
    ext: Labels,
    /// `c`: the latest series in index order. Never settled while external labels exist.
    latest: Option<Decoded>,
    /// Earlier series not yet emitted.
    pending: std::collections::BinaryHeap<std::cmp::Reverse<ByLabels>>,
}

/// A pending series ordered by its final labels.
#[derive(Debug)]
struct ByLabels(Decoded);

impl PartialEq for ByLabels {
    fn eq(&self, o: &Self) -> bool {
        self.0.series.labels == o.0.series.labels
    }
}
impl Eq for ByLabels {}
impl PartialOrd for ByLabels {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for ByLabels {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.series.labels.cmp(&o.0.series.labels)
    }
}

impl Reorder {
    fn new(ext: Labels) -> Self {
        Reorder {
            ext,
            latest: None,
            pending: std::collections::BinaryHeap::new(),
        }
    }

    /// The index labels of a streamed block's series: its final labels minus the external ones.
    fn index_labels<'a>(&'a self, d: &'a Decoded) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        d.series
            .labels
            .iter()
            .filter(|(n, _)| self.ext.get(n).is_none())
    }

    /// Whether no series after `c` in index order can sort before `x` (an earlier series) once
    /// labels are final.
    fn settled(&self, x: &Decoded, c: &Decoded) -> bool {
        let Some(last_ext) = self.ext.iter().last() else {
            return true;
        };
        if x.index_len >= c.index_len {
            // Not a proper prefix of `c`.
            return true;
        }
        let mut cl = self.index_labels(c);
        for xl in self.index_labels(x) {
            match cl.next() {
                Some(l) if l == xl => {}
                _ => return true,
            }
        }
        // `x` is a proper prefix of `c`: settled once `c`'s next label is named after every
        // external label.
        cl.next()
            .is_some_and(|(next, _)| next > last_ext.name.as_str())
    }

    /// Takes the next series in index order; moves settled series to `out` in final order.
    fn push(&mut self, d: Decoded, out: &mut std::collections::VecDeque<BlockSeries>) {
        if self.ext.is_empty() {
            out.push_back(d.series);
            return;
        }
        if let Some(prev) = self.latest.replace(d) {
            let c = self.latest.as_ref().map(|c| &c.series.labels);
            if self.pending.is_empty()
                && c.is_some_and(|c| prev.series.labels < *c)
                && self.latest.as_ref().is_some_and(|c| self.settled(&prev, c))
            {
                // The common case (no prefix relations): nothing held, no heap traffic.
                out.push_back(prev.series);
                return;
            }
            self.pending.push(std::cmp::Reverse(ByLabels(prev)));
        }
        let Some(c) = &self.latest else {
            return;
        };
        while let Some(std::cmp::Reverse(top)) = self.pending.peek() {
            if top.0.series.labels > c.series.labels || !self.settled(&top.0, c) {
                break;
            }
            if let Some(std::cmp::Reverse(ByLabels(s))) = self.pending.pop() {
                out.push_back(s.series);
            }
        }
    }

    /// The block is exhausted: everything pending is settled.
    fn flush(&mut self, out: &mut std::collections::VecDeque<BlockSeries>) {
        if let Some(c) = self.latest.take() {
            self.pending.push(std::cmp::Reverse(ByLabels(c)));
        }
        while let Some(std::cmp::Reverse(ByLabels(s))) = self.pending.pop() {
            out.push_back(s.series);
        }
    }
}

/// Emits a series' labels with the block's external labels attached, in order: its index
/// labels (sorted) and `ext` merged, an external label winning on a clash, as in Thanos. The
/// same rule as [`finalize_labels`] (without replica labels to remove), without a string per
/// label.
fn attach_external<'a>(
    index: impl Iterator<Item = (&'a str, &'a str)>,
    ext: &'a Labels,
    mut emit: impl FnMut(&'a str, &'a str),
) {
    let mut e = ext.iter().peekable();
    for (n, v) in index {
        while let Some(x) = e.next_if(|x| x.name.as_str() < n) {
            emit(&x.name, &x.value);
        }
        match e.next_if(|x| x.name == n) {
            Some(x) => emit(&x.name, &x.value),
            None => emit(n, v),
        }
    }
    for x in e {
        emit(&x.name, &x.value);
    }
}

/// Series labels with the block's external labels attached (they win on a clash, as in
/// Thanos) and the replica labels removed.
pub(crate) fn finalize_labels(series: Labels, ext: &Labels, strip: &[String]) -> Labels {
    // `merged_with` copies every label; without external labels the series' own are final.
    let merged = if ext.is_empty() {
        series
    } else {
        series.merged_with(ext)
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs)
    }

    /// Streams `index` (sorted index labels) through [`Reorder`] with `ext` attached; returns
    /// the output and the most series held back at once.
    fn stream(index: &[Labels], ext: &Labels) -> (Vec<Labels>, usize) {
        let mut r = Reorder::new(ext.clone());
        let mut out = std::collections::VecDeque::new();
        let mut held = 0;
        for l in index {
            let d = Decoded {
                series: BlockSeries {
                    labels: PackedLabels::from_labels(&finalize_labels(l.clone(), ext, &[])),
                    chunks: vec![],
                },
                index_len: l.len(),
            };
            r.push(d, &mut out);
            held = held.max(r.pending.len() + usize::from(r.latest.is_some()));
        }
        r.flush(&mut out);
        (
            out.into_iter().map(|s| s.labels.to_labels()).collect(),
            held,
        )
    }

    fn sorted_final(index: &[Labels], ext: &Labels) -> Vec<Labels> {
        let mut v: Vec<Labels> = index
            .iter()
            .map(|l| finalize_labels(l.clone(), ext, &[]))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_prefix_series_moves_after_its_extensions_when_an_external_label_sorts_later() {
        // {a="1"} < {a="1", b="2"} in the index, but with cluster="x" attached
        // {a="1", b="2", cluster="x"} < {a="1", cluster="x"}.
        let index = vec![ls(&[("a", "1")]), ls(&[("a", "1"), ("b", "2")])];
        let ext = ls(&[("cluster", "x")]);
        let (out, _) = stream(&index, &ext);
        assert_eq!(out, sorted_final(&index, &ext));
        assert_eq!(out[0], ls(&[("a", "1"), ("b", "2"), ("cluster", "x")]));
    }

    #[test]
    fn a_prefix_series_stays_first_when_extensions_continue_after_the_external_labels() {
        let index = vec![
            ls(&[("a", "1")]),
            ls(&[("a", "1"), ("z", "1")]),
            ls(&[("a", "1"), ("z", "2")]),
            ls(&[("a", "2")]),
        ];
        let ext = ls(&[("cluster", "x")]);
        let (out, held) = stream(&index, &ext);
        assert_eq!(out, sorted_final(&index, &ext));
        assert!(held <= 2, "held {held}");
    }

    #[test]
    fn streaming_equals_sorting_over_nested_prefixes_and_mixed_label_names() {
        // Deterministic pseudo-random label sets over names around the external ones.
        let names = ["__name__", "a", "b", "job", "m", "zone"];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for ext in [
            ls(&[("c", "x")]),
            ls(&[("aa", "x"), ("n", "y")]),
            ls(&[("zz", "x")]),
            ls(&[("_", "x")]),
        ] {
            for _ in 0..20 {
                let mut index: Vec<Labels> = (0..300)
                    .map(|_| {
                        let mut pairs = Vec::new();
                        for n in names {
                            if next() % 3 != 0 {
                                pairs.push((n, format!("{}", next() % 3)));
                            }
                        }
                        Labels::from_pairs(&pairs)
                    })
                    .filter(|l| !l.is_empty())
                    .collect();
                index.sort();
                index.dedup();
                let (out, held) = stream(&index, &ext);
                assert_eq!(out, sorted_final(&index, &ext), "ext {ext:?}");
                // At most one held series per label of the latest one, plus itself.
                assert!(held <= names.len() + 1, "held {held}");
            }
        }
    }

    #[test]
    fn without_external_labels_nothing_is_held() {
        let index = vec![ls(&[("a", "1")]), ls(&[("a", "1"), ("b", "2")])];
        let (out, held) = stream(&index, &Labels::default());
        assert_eq!(out, index);
        assert_eq!(held, 0);
    }
}
