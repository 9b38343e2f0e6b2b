//! From merged Store API series to what the engine evaluates: replica deduplication and
//! downsampled aggregates turned into float series.
//!
//! Fast path: a series that exists once (no replicas to merge) and carries raw XOR chunks
//! that do not overlap is handed to the engine as encoded chunks, which the engine decodes in
//! bulk on its workers. Everything else (replicas, overlapping chunks from several stores,
//! downsampled aggregates) is decoded here and handed over as float arrays.

use std::sync::Arc;

use strata_dedup::Algorithm;
use strata_model::Labels;
use strata_promql::{ChunkData, SeriesData, StoredSeries};
use strata_storepb::frame::WireChunk;
use strata_storepb::thanos::{Chunk, chunk};
use strata_tsdb::chunkenc::{Encoding, RawChunk};

use crate::fanout::WireSeries;

/// Which downsampled aggregate a query reads (Thanos' `aggrsFromFunc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggrRead {
    Min,
    Max,
    Count,
    Sum,
    /// The counter aggregate, with resets across chunk boundaries applied.
    Counter,
    /// `sum / count` per point: the window average.
    Average,
}

impl AggrRead {
    /// The aggregate for the function that consumes the selector.
    pub fn from_func(func: Option<&str>) -> AggrRead {
        let f = func.unwrap_or("");
        if f == "min" || f.starts_with("min_") {
            AggrRead::Min
        } else if f == "max" || f.starts_with("max_") {
            AggrRead::Max
        } else if f == "count" || f.starts_with("count_") {
            AggrRead::Count
        } else if f.starts_with("sum_") {
            // Plain `sum` falls through to the average: it wants the samples' values.
            AggrRead::Sum
        } else if matches!(f, "rate" | "increase" | "irate" | "resets") {
            AggrRead::Counter
        } else {
            AggrRead::Average
        }
    }

    /// The Store API aggregates to request (wire enum values).
    pub fn wire(self) -> Vec<i32> {
        use strata_storepb::thanos::Aggr;
        match self {
            AggrRead::Min => vec![Aggr::Min as i32],
            AggrRead::Max => vec![Aggr::Max as i32],
            AggrRead::Count => vec![Aggr::Count as i32],
            AggrRead::Sum => vec![Aggr::Sum as i32],
            AggrRead::Counter => vec![Aggr::Counter as i32],
            AggrRead::Average => vec![Aggr::Count as i32, Aggr::Sum as i32],
        }
    }
}

/// How to turn merged series into engine series.
#[derive(Debug, Clone)]
pub struct Convert<'a> {
    /// Labels removed before grouping (empty: no deduplication).
    pub replica_labels: &'a [String],
    pub algorithm: Algorithm,
    /// Counter adjustment on replica switches (`rate`-like consumers).
    pub counter: bool,
    pub aggr: AggrRead,
}

/// Removes `names` from `labels`.
pub fn strip(labels: &Labels, names: &[String]) -> Labels {
    strip_owned(labels.clone(), names)
}

/// Removes `names` from `labels`, reusing its allocation.
pub fn strip_owned(labels: Labels, names: &[String]) -> Labels {
    if names.is_empty() || !labels.iter().any(|l| names.contains(&l.name)) {
        return labels;
    }
    let mut v = labels.into_vec();
    v.retain(|l| !names.contains(&l.name));
    Labels::from_sorted(v)
}

/// Appends chunk `c`'s samples to `out`, decoded in one call into `scratch`: the bulk
/// decoder, which writes timestamps and values apart, instead of a sample at a time through
/// the iterator (on two replicas, `scripts/bench-dedup.sh`: 0.72× the suite's time).
fn decode_xor(
    c: &Chunk,
    out: &mut Vec<(i64, f64)>,
    scratch: &mut (Vec<i64>, Vec<f64>),
) -> Result<(), String> {
    let raw = c.to_raw().map_err(|e| e.to_string())?;
    let mut it = raw.xor_iter().map_err(|e| e.to_string())?;
    scratch.0.clear();
    scratch.1.clear();
    it.decode_into(&mut scratch.0, &mut scratch.1)
        .map_err(|e| e.to_string())?;
    out.extend(scratch.0.iter().copied().zip(scratch.1.iter().copied()));
    Ok(())
}

fn is_histogram(c: &Chunk) -> bool {
    c.r#type != chunk::Encoding::Xor as i32
}

/// One replica's samples, decoded: raw chunks merged by time (one sample per timestamp), or
/// the requested aggregate of downsampled chunks.
fn decode_replica(chunks: &[WireChunk], aggr: AggrRead) -> Result<Option<Vec<(i64, f64)>>, String> {
    let mut chunks: Vec<&WireChunk> = chunks.iter().collect();
    chunks.sort_by_key(|c| c.min_time);
    let mut out = Vec::new();
    let mut counter = CounterState::default();
    let mut scratch = (Vec::new(), Vec::new());
    for c in chunks {
        if let Some(raw) = &c.raw {
            if is_histogram(raw) {
                return Ok(None);
            }
            decode_xor(raw, &mut out, &mut scratch)?;
            continue;
        }
        let parts = c.parts();
        let mut pick = |x: &Option<Chunk>, name: &str| -> Result<Vec<(i64, f64)>, String> {
            let mut v = Vec::new();
            match x {
                Some(ch) => decode_xor(ch, &mut v, &mut scratch)?,
                None => return Err(format!("downsampled chunk without the {name} aggregate")),
            }
            Ok(v)
        };
        match aggr {
            AggrRead::Min => out.extend(pick(&parts.min, "min")?),
            AggrRead::Max => out.extend(pick(&parts.max, "max")?),
            AggrRead::Count => out.extend(pick(&parts.count, "count")?),
            AggrRead::Sum => out.extend(pick(&parts.sum, "sum")?),
            AggrRead::Counter => counter.push(pick(&parts.counter, "counter")?, &mut out),
            AggrRead::Average => {
                let sum = pick(&parts.sum, "sum")?;
                let count = pick(&parts.count, "count")?;
                // Both aggregates sit at the same window-end timestamps.
                let mut j = 0;
                for (t, s) in sum {
                    while j < count.len() && count[j].0 < t {
                        j += 1;
                    }
                    if let Some(&(ct, n)) = count.get(j)
                        && ct == t
                    {
                        out.push((t, s / n));
                    }
                }
            }
        }
    }
    if !out.is_sorted_by_key(|s| s.0) {
        out.sort_by_key(|s| s.0);
    }
    out.dedup_by_key(|s| s.0);
    Ok(Some(out))
}

/// Reads counter aggregate chunks as one counter: within a chunk the values are already
/// reset-adjusted totals, and the chunk's last sample repeats the last window's timestamp
/// with the last raw value. Across chunks, the next chunk starts from its first raw value,
/// so it is lifted by what the previous chunks accumulated (and, if that first value is
/// below the previous last raw value, the counter reset at the boundary).
#[derive(Debug, Default)]
struct CounterState {
    /// Added to the current chunk's values.
    offset: f64,
    /// Previous chunk: its last adjusted value (offset applied) and its last raw value.
    prev: Option<(f64, f64)>,
}

impl CounterState {
    fn push(&mut self, mut samples: Vec<(i64, f64)>, out: &mut Vec<(i64, f64)>) {
        let mut last_raw = None;
        if samples.len() >= 2 && samples[samples.len() - 1].0 == samples[samples.len() - 2].0 {
            last_raw = samples.pop().map(|s| s.1);
        }
        let Some(&(_, first)) = samples.first() else {
            return;
        };
        if let Some((prev_adj, prev_raw)) = self.prev {
            self.offset = if first < prev_raw {
                prev_adj
            } else {
                prev_adj - prev_raw
            };
        }
        let mut last_adj = first + self.offset;
        for (t, v) in &samples {
            last_adj = v + self.offset;
            out.push((*t, last_adj));
        }
        let last_raw = last_raw.unwrap_or(samples[samples.len() - 1].1);
        self.prev = Some((last_adj, last_raw));
    }
}

/// The chunks as engine chunks when they are all raw XOR, sorted and not overlapping (the
/// fast path), else the chunks back. Their data are moved, not cloned: each clone and drop
/// of a chunk slice counts on the received frame's shared reference count, which the
/// threads decoding frames count on too.
fn raw_chunks(chunks: Vec<WireChunk>) -> Result<Vec<ChunkData>, Vec<WireChunk>> {
    let mut prev_max = i64::MIN;
    for c in &chunks {
        let Some(raw) = &c.raw else {
            return Err(chunks);
        };
        if is_histogram(raw) || (c.min_time <= prev_max && prev_max != i64::MIN) {
            return Err(chunks);
        }
        prev_max = c.max_time;
    }
    // A loop, not `collect`: collecting in place would keep (or shrink with a copy) the
    // allocation of the larger `WireChunk`s.
    let mut out = Vec::with_capacity(chunks.len());
    for c in chunks {
        if let Some(raw) = c.raw {
            out.push(ChunkData {
                min_time: c.min_time,
                max_time: c.max_time,
                chunk: RawChunk::new(Encoding::Xor, raw.data),
            });
        }
    }
    Ok(out)
}

fn floats(samples: Vec<(i64, f64)>) -> SeriesData {
    let (t, v): (Vec<i64>, Vec<f64>) = samples.into_iter().unzip();
    SeriesData::Floats {
        timestamps: Arc::from(t),
        values: Arc::from(v),
    }
}

/// `a == b`, comparing from the last label, and each label's value before its name:
/// neighbours in a sorted selection usually share their first labels (`__name__`,
/// `instance`, `job`) and differ in a later one's value, so this settles most pairs with one
/// string comparison where the forward order needs eight or ten (measured: a quarter of
/// `to_engine`'s time for an instant query over 5,000 series was these comparisons). Every
/// place that asks whether neighbouring series are one series uses it.
pub(crate) fn same_labels(a: &Labels, b: &Labels) -> bool {
    a.len() == b.len()
        && a.iter()
            .rev()
            .zip(b.iter().rev())
            .all(|(x, y)| x.value == y.value && x.name == y.name)
}

/// A deduplicated series' chunks, from every replica and store that sent it, split into
/// chains that do not overlap in time, each standing for one replica. This is what lets
/// stores strip the replica labels themselves (`without_replica_labels`) and send one series
/// per label set, replicas' chunks together; Thanos splits them again the same way
/// (`dedup.NewOverlapSplit`, since v0.31).
///
/// The chunks are sorted by start (then end), and a chunk equal to the one before it (the
/// same block read by two stores, say) is dropped. Replicas scrape the same targets, so their
/// chunks overlap and a chunk can only continue a chain that ended before it starts; one
/// replica's chunks never overlap each other.
///
/// Thanos gives each chunk to the first chain that ended before it. That can hand one
/// replica's chunk to another's chain: at a block boundary, when the replica scraping a few
/// seconds later has the first sample of the new block, or at the start of a selection,
/// when only the later replica's chunk reaches back into it. Deduplication then switches
/// replicas there without its penalty (measured on the benchmark's two replicas 5 s apart:
/// 15 of 25 queries answered differently from deduplication by replica label, by up to 2 %).
/// So a chunk goes to the chain it continues: the one whose next sample, at the sample
/// spacing of the chain's last chunk, was due within a quarter of a spacing of the chunk's
/// start (the
/// nearest, if several; scrapes keep their timing to milliseconds, replicas are offset by a
/// random part of the interval). A chunk that continues none (the first after a gap, say)
/// starts a chain of its own, one more replica to the deduplication.
pub(crate) fn split_replicas(mut chunks: Vec<WireChunk>) -> Vec<Vec<WireChunk>> {
    if chunks.is_sorted_by(|a, b| a.max_time < b.min_time) {
        return vec![chunks];
    }
    chunks.sort_by_key(|c| (c.min_time, c.max_time));
    chunks.dedup();
    let mut chains: Vec<Chain> = Vec::new();
    for c in chunks {
        let next = next_sample(&c);
        let best = chains
            .iter_mut()
            .filter_map(|ch| ch.off_from(&c).map(|off| (off, ch)))
            .min_by_key(|(off, _)| *off);
        match best {
            Some((_, ch)) => {
                ch.chunks.push(c);
                ch.next = next;
            }
            None => chains.push(Chain {
                chunks: vec![c],
                next,
            }),
        }
    }
    chains.into_iter().map(|ch| ch.chunks).collect()
}

/// One replica's chunks in [`split_replicas`].
struct Chain {
    chunks: Vec<WireChunk>,
    /// When its next sample is due, and its sample spacing ([`next_sample`]).
    next: Option<(i64, i64)>,
}

impl Chain {
    /// How far `c` starts from this chain's next sample, if `c` continues the chain: the
    /// chain ended before `c` starts, and its next sample was due within a quarter of a
    /// spacing of `c`'s start.
    fn off_from(&self, c: &WireChunk) -> Option<u64> {
        let (due, spacing) = self.next?;
        let ended = self.chunks.last().is_some_and(|l| l.max_time < c.min_time);
        let off = due.abs_diff(c.min_time);
        (ended && off <= spacing.unsigned_abs() / 4).then_some(off)
    }
}

/// When the sample after chunk `c` is due, and the chunk's sample spacing: the time between
/// its first two samples, read from its header without decoding it (an XOR chunk starts with
/// its sample count, a big-endian `u16`, then the first timestamp as a varint, the first
/// value's 8 bytes and the first delta as a uvarint; each part of a downsampled chunk is such
/// a chunk, one sample per window). An average over the chunk would be skewed by a gap inside
/// it, and the chunk after the gap would then look like another replica's. `None` for a chunk
/// of one sample, or whose header cannot be read.
fn next_sample(c: &WireChunk) -> Option<(i64, i64)> {
    let parts = c.parts();
    let data = [
        &c.raw,
        &parts.count,
        &parts.sum,
        &parts.counter,
        &parts.min,
        &parts.max,
    ]
    .into_iter()
    .find_map(|p| p.as_ref())
    .map(|ch| &ch.data)?;
    let n = u16::from_be_bytes([*data.first()?, *data.get(1)?]);
    if n < 2 {
        return None;
    }
    let (_, t0_len) = strata_tsdb::encoding::read_varint(data.get(2..)?).ok()?;
    let (delta, _) = strata_tsdb::encoding::read_uvarint(data.get(2 + t0_len + 8..)?).ok()?;
    let spacing = i64::try_from(delta).ok()?;
    Some((c.max_time.saturating_add(spacing), spacing))
}

/// A replica of raw XOR chunks that do not overlap, decoded only where the penalty merge
/// reads it. The replica being followed is read whole; the other is mostly sought past,
/// whole chunks at a time (a chunk that ends before the seek target is skipped undecoded), so
/// on an HA pair without gaps most of the other replica is never decoded. Positions count
/// the samples of the chunks decoded so far: a skipped chunk's samples would only have been
/// passed over.
struct LazyReplica<'a> {
    chunks: Vec<&'a Chunk>,
    /// Each chunk's last timestamp (the chunk meta's, as the store sent it).
    max_times: Vec<i64>,
    /// The first chunk neither decoded nor skipped.
    next: usize,
    samples: Vec<(i64, f64)>,
    scratch: (Vec<i64>, Vec<f64>),
    /// Why a chunk could not be decoded: the replica ends there, and the series fails.
    err: Option<String>,
}

impl<'a> LazyReplica<'a> {
    /// `None` unless the chain is raw XOR chunks in time order that do not overlap (the
    /// eager path handles the rest: downsampled parts, native histograms, overlaps).
    fn of(chain: &'a [WireChunk]) -> Option<LazyReplica<'a>> {
        let mut chunks = Vec::with_capacity(chain.len());
        let mut max_times = Vec::with_capacity(chain.len());
        let mut prev_max = i64::MIN;
        for c in chain {
            let raw = c.raw.as_ref()?;
            if is_histogram(raw)
                || c.aggr.is_some()
                || (!chunks.is_empty() && c.min_time <= prev_max)
            {
                return None;
            }
            prev_max = c.max_time;
            chunks.push(raw);
            max_times.push(c.max_time);
        }
        Some(LazyReplica {
            chunks,
            max_times,
            next: 0,
            samples: Vec::new(),
            scratch: (Vec::new(), Vec::new()),
            err: None,
        })
    }

    /// Decodes the next chunk onto `samples`; false when there is none (or it is corrupt).
    fn decode_next(&mut self) -> bool {
        let Some(&c) = self.chunks.get(self.next) else {
            return false;
        };
        self.next += 1;
        match decode_xor(c, &mut self.samples, &mut self.scratch) {
            Ok(()) => true,
            Err(e) => {
                self.err = Some(e);
                self.next = self.chunks.len();
                false
            }
        }
    }
}

impl strata_dedup::Replica for &mut LazyReplica<'_> {
    fn at(&mut self, i: usize) -> Option<(i64, f64)> {
        while i >= self.samples.len() {
            if !self.decode_next() {
                return None;
            }
        }
        Some(self.samples[i])
    }

    fn seek(&mut self, i: &mut usize, t: i64) -> Option<(i64, f64)> {
        loop {
            while let Some(&s) = self.samples.get(*i) {
                if s.0 >= t {
                    return Some(s);
                }
                *i += 1;
            }
            // Every sample decoded so far is before `t`: chunks that end before it too are
            // passed over without decoding them.
            while self.max_times.get(self.next).is_some_and(|&m| m < t) {
                self.next += 1;
            }
            if !self.decode_next() {
                return None;
            }
        }
    }
}

/// One deduplicated series' data: its replicas ([`split_replicas`]) merged by `cv`'s
/// algorithm, or, when there is only one, that one as it is (the engine's fast path for raw
/// chunks).
fn dedup_series(chunks: Vec<WireChunk>, cv: &Convert<'_>) -> Result<SeriesData, String> {
    let mut chains = split_replicas(chunks);
    if chains.len() == 1
        && let Some(only) = chains.pop()
    {
        return single(only, cv.aggr);
    }
    if let ([x, y], Algorithm::Penalty) = (chains.as_slice(), cv.algorithm)
        && let (Some(mut x), Some(mut y)) = (LazyReplica::of(x), LazyReplica::of(y))
    {
        let mut out = Vec::new();
        strata_dedup::pair_into(&mut x, &mut y, cv.counter, &mut out);
        if let Some(e) = x.err.or(y.err) {
            return Err(e);
        }
        return Ok(floats(out));
    }
    let mut replicas = Vec::with_capacity(chains.len());
    for chain in &chains {
        match decode_replica(chain, cv.aggr)? {
            Some(s) => replicas.push(s),
            None => return Ok(SeriesData::NativeHistograms),
        }
    }
    let refs: Vec<&[(i64, f64)]> = replicas.iter().map(Vec::as_slice).collect();
    Ok(floats(strata_dedup::dedup_samples(
        &refs,
        cv.algorithm,
        cv.counter,
    )))
}

/// The merged series as engine series. With replica labels (deduplication), the labels are
/// stripped of them (stores that strip themselves have already), series that become equal
/// are joined, and each series' replicas are found by `split_replicas` and merged; the
/// result is sorted by the output labels. Labels and chunks are moved, never copied: this
/// runs once per selected series on the query path.
///
/// `merged` must hold each label set once (the fan-out's merges join equal series), so that
/// without replica labels there is nothing to group and neighbours are not compared: those
/// label sets were decoded on other threads, and reading them again here cost an instant
/// query over 5,000 series a tenth of its conversion time.
pub fn to_engine(merged: Vec<WireSeries>, cv: &Convert<'_>) -> Result<Vec<StoredSeries>, String> {
    if cv.replica_labels.is_empty() {
        debug_assert!(
            merged.windows(2).all(|w| !same_labels(&w[0].0, &w[1].0)),
            "to_engine: equal neighbours were not joined"
        );
        let mut out = Vec::with_capacity(merged.len());
        for (labels, chunks) in merged {
            out.push(StoredSeries {
                labels,
                data: single(chunks, cv.aggr)?,
            });
        }
        return Ok(out);
    }
    let mut items = merged;
    for it in &mut items {
        it.0 = strip_owned(std::mem::take(&mut it.0), cv.replica_labels);
    }
    // Replicas that a store did not strip become neighbours (and are joined below).
    if !items.is_sorted_by(|a, b| a.0 <= b.0) {
        items.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let mut joined: Vec<WireSeries> = Vec::with_capacity(items.len());
    let mut it = items.into_iter().peekable();
    while let Some((labels, mut chunks)) = it.next() {
        while let Some((_, more)) = it.next_if(|n| same_labels(&n.0, &labels)) {
            chunks.extend(more);
        }
        joined.push((labels, chunks));
    }
    // Series with replicas are decoded and merged here, on the engine's thread pool (rayon's
    // global pool, which the engine evaluates on) rather than one series at a time on the
    // thread that reads the selection: on two replicas, 0.73× the suite's time again.
    use rayon::prelude::*;
    joined
        .into_par_iter()
        .map(|(labels, chunks)| {
            Ok(StoredSeries {
                labels,
                data: dedup_series(chunks, cv)?,
            })
        })
        .collect()
}

/// The engine data of a series that has no replicas: its raw chunks when they can be
/// handed over as they are, else its samples decoded.
fn single(chunks: Vec<WireChunk>, aggr: AggrRead) -> Result<SeriesData, String> {
    Ok(match raw_chunks(chunks) {
        Ok(chunks) => SeriesData::Chunks(chunks),
        Err(chunks) => match decode_replica(&chunks, aggr)? {
            Some(s) => floats(s),
            None => SeriesData::NativeHistograms,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_labels_is_equality() {
        let l = |pairs: &[(&str, &str)]| Labels::from_pairs(pairs);
        let a = l(&[("__name__", "up"), ("job", "a"), ("status", "200")]);
        let cases = [
            (
                l(&[("__name__", "up"), ("job", "a"), ("status", "200")]),
                true,
            ),
            (
                l(&[("__name__", "up"), ("job", "a"), ("status", "500")]),
                false,
            ),
            (
                l(&[("__name__", "down"), ("job", "a"), ("status", "200")]),
                false,
            ),
            (
                l(&[("__name__", "up"), ("jobs", "a"), ("status", "200")]),
                false,
            ),
            (l(&[("job", "a"), ("status", "200")]), false),
            (l(&[("__name__", "up"), ("job", "a")]), false),
            (Labels::empty(), false),
        ];
        for (b, want) in cases {
            assert_eq!(same_labels(&a, &b), want, "{a} vs {b}");
            assert_eq!(same_labels(&a, &b), a == b);
        }
        assert!(same_labels(&Labels::empty(), &Labels::empty()));
    }

    #[test]
    fn function_to_aggregate_mapping() {
        for (f, want) in [
            ("min", AggrRead::Min),
            ("min_over_time", AggrRead::Min),
            ("max_over_time", AggrRead::Max),
            ("count_over_time", AggrRead::Count),
            ("count", AggrRead::Count),
            ("sum_over_time", AggrRead::Sum),
            ("sum", AggrRead::Average),
            ("rate", AggrRead::Counter),
            ("increase", AggrRead::Counter),
            ("irate", AggrRead::Counter),
            ("resets", AggrRead::Counter),
            ("avg_over_time", AggrRead::Average),
            ("minute", AggrRead::Average),
        ] {
            assert_eq!(AggrRead::from_func(Some(f)), want, "{f}");
        }
        assert_eq!(AggrRead::from_func(None), AggrRead::Average);
        assert_eq!(AggrRead::Average.wire(), vec![1, 2]);
        assert_eq!(AggrRead::Counter.wire(), vec![5]);
    }

    #[test]
    fn counter_chunks_continue_across_boundaries() {
        let mut st = CounterState::default();
        let mut out = Vec::new();
        // Chunk 1: raw 10 → 30 with a reset inside (adjusted total 50), last raw 5.
        st.push(
            vec![(0, 10.0), (300, 30.0), (600, 50.0), (600, 5.0)],
            &mut out,
        );
        // Chunk 2 starts at raw 7 (no reset at the boundary: 7 ≥ 5).
        st.push(vec![(700, 7.0), (900, 9.0), (900, 9.0)], &mut out);
        // Chunk 3 starts at raw 1 (reset at the boundary: 1 < 9).
        st.push(vec![(1000, 1.0), (1200, 4.0)], &mut out);
        let v: Vec<f64> = out.iter().map(|s| s.1).collect();
        assert_eq!(v, [10.0, 30.0, 50.0, 52.0, 54.0, 55.0, 58.0]);
    }

    /// A raw XOR chunk of `samples` on the wire.
    fn xor(samples: &[(i64, f64)]) -> WireChunk {
        WireChunk {
            min_time: samples[0].0,
            max_time: samples[samples.len() - 1].0,
            raw: Some(Chunk {
                r#type: chunk::Encoding::Xor as i32,
                data: strata_tsdb::XorEncoder::encode(samples.iter().copied())
                    .unwrap()
                    .into(),
                hash: 0,
            }),
            aggr: None,
        }
    }

    /// Samples every `step` ms over `[from, to)`, value = timestamp / 1000 + `offset`.
    fn samples(from: i64, to: i64, step: i64, offset: f64) -> Vec<(i64, f64)> {
        (from..to)
            .step_by(step as usize)
            .map(|t| (t, t as f64 / 1000.0 + offset))
            .collect()
    }

    /// Two replicas merged lazily (the replica not followed decoded only where it is read)
    /// give what the eager merge of the decoded replicas gives, over many shapes: gaps in
    /// either replica, counter resets, offsets, chunk sizes, and one replica ending early.
    #[test]
    fn lazily_decoded_replicas_merge_as_decoded_ones() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for case in 0..1000 {
            let mut replica = |offset: i64| -> Vec<(i64, f64)> {
                let n = 20 + rand(400) as i64;
                let mut v = 0.0;
                let mut out = Vec::new();
                let mut t = offset;
                for _ in 0..n {
                    // Mostly every 15 s (to the millisecond, or jittered, so that seek
                    // targets land on chunk ends too), now and then a gap of up to 10 minutes.
                    t += match rand(25) {
                        0 => 15_000 * (2 + rand(40) as i64),
                        1..=5 => 1 + rand(30_000) as i64,
                        _ => 15_000,
                    };
                    v = if rand(200) == 0 {
                        0.0
                    } else {
                        v + rand(10) as f64
                    };
                    out.push((t, v));
                }
                out
            };
            let a = replica(0);
            let b_offset = (a.len() as i64 * 7_919) % 15_000;
            let b = replica(b_offset);
            let size = 1 + rand(130) as usize;
            let chain = |s: &[(i64, f64)]| -> Vec<WireChunk> { s.chunks(size).map(xor).collect() };
            let (ca, cb) = (chain(&a), chain(&b));
            for counter in [false, true] {
                let want = strata_dedup::dedup_samples(&[&a, &b], Algorithm::Penalty, counter);
                let (mut x, mut y) = (LazyReplica::of(&ca).unwrap(), LazyReplica::of(&cb).unwrap());
                let mut got = Vec::new();
                strata_dedup::pair_into(&mut x, &mut y, counter, &mut got);
                assert!(x.err.is_none() && y.err.is_none());
                assert_eq!(
                    got, want,
                    "case {case}, chunks of {size}, counter {counter}"
                );
            }
        }
    }

    /// Overlapping chunks, downsampled parts or a corrupt chunk are not taken lazily, or fail
    /// the series clearly.
    #[test]
    fn lazy_replicas_take_only_raw_chunks_that_do_not_overlap() {
        let s = samples(0, 100_000, 10_000, 0.0);
        let overlapping = vec![xor(&s[..6]), xor(&s[4..])];
        assert!(LazyReplica::of(&overlapping).is_none());
        let mut downsampled = xor(&s);
        downsampled.aggr = Some(Box::default());
        assert!(LazyReplica::of(&[downsampled]).is_none());
        let mut corrupt = xor(&s);
        if let Some(raw) = &mut corrupt.raw {
            raw.data = bytes::Bytes::from_static(&[0, 9, 1]);
        }
        let good = [xor(&samples(0, 100_000, 10_000, 1.0))];
        let bad = [corrupt];
        let (mut x, mut y) = (
            LazyReplica::of(&bad).unwrap(),
            LazyReplica::of(&good).unwrap(),
        );
        let mut out = Vec::new();
        strata_dedup::pair_into(&mut x, &mut y, false, &mut out);
        assert!(x.err.is_some());
    }

    #[test]
    fn split_replicas_recovers_overlapping_replicas() {
        // Replica a scrapes at 0, 10 s, …; b 5 s later. Chunks of 100 s.
        let a: Vec<WireChunk> = (0..3)
            .map(|i| xor(&samples(i * 100_000, (i + 1) * 100_000, 10_000, 0.0)))
            .collect();
        let b: Vec<WireChunk> = (0..2)
            .map(|i| {
                xor(&samples(
                    i * 100_000 + 5_000,
                    (i + 1) * 100_000,
                    10_000,
                    0.0,
                ))
            })
            .collect();
        // Stores' order, interleaved, and one of a's chunks twice (from two stores).
        let mixed = vec![
            b[1].clone(),
            a[0].clone(),
            a[2].clone(),
            b[0].clone(),
            a[1].clone(),
            a[1].clone(),
        ];
        assert_eq!(split_replicas(mixed), [a.clone(), b.clone()]);
        // One replica: one chain, as it came.
        assert_eq!(split_replicas(a.clone()), std::slice::from_ref(&a));
        assert_eq!(split_replicas(Vec::new()), [Vec::<WireChunk>::new()]);
        // Where a stops, its chain ends: b's next chunk continues b's chain, the one it
        // follows at b's sample spacing (Thanos' first fit would give it to a's chain).
        let a_short = vec![a[0].clone()];
        assert_eq!(
            split_replicas([a_short, b.clone()].concat()),
            [vec![a[0].clone()], b.clone()]
        );
        // At the start of a selection, where only b's chunk reaches back into it, a's first
        // chunk (5 s before b's next sample is due) starts a chain of its own.
        let b0 = xor(&samples(5_000, 100_000, 10_000, 0.0));
        let a1 = xor(&samples(100_000, 200_000, 10_000, 0.0));
        let b1 = xor(&samples(105_000, 200_000, 10_000, 0.0));
        assert_eq!(
            split_replicas(vec![a1.clone(), b1.clone(), b0.clone()]),
            [vec![b0, b1], vec![a1]]
        );
        // At a block boundary (100 s) where b's first sample of the next block comes before
        // a's, each replica still keeps its chain: a scrapes at 8, 18, …, 98 s, then 108 s;
        // b, 5 s behind, at 13, …, 93 s, then 103 s. By the chains' ends alone (a's at 98 s
        // is nearer 103 s than b's at 93 s), or by first fit, b's chunk would go to a.
        let a2 = vec![
            xor(&samples(8_000, 100_000, 10_000, 0.0)),
            xor(&samples(108_000, 200_000, 10_000, 0.0)),
        ];
        let b2 = vec![
            xor(&samples(13_000, 100_000, 10_000, 0.0)),
            xor(&samples(103_000, 200_000, 10_000, 0.0)),
        ];
        assert_eq!(split_replicas([a2.clone(), b2.clone()].concat()), [a2, b2]);
    }

    /// A series whose replicas a store sent as one (labels stripped, chunks together) is
    /// deduplicated as the same replicas sent as two series with their replica labels.
    #[test]
    fn replicas_sent_together_deduplicate_as_replicas_sent_apart() {
        let a = samples(0, 300_000, 10_000, 0.0);
        // b is 5 s behind and its counter 0.5 lower, with a gap from 100 s to 200 s in a.
        let b = samples(5_000, 300_000, 10_000, -0.5);
        let a_gap: Vec<(i64, f64)> = a
            .iter()
            .copied()
            .filter(|(t, _)| *t < 100_000 || *t >= 200_000)
            .collect();
        let chunks = |s: &[(i64, f64)]| -> Vec<WireChunk> { s.chunks(8).map(xor).collect() };
        let l = |replica: Option<&str>| {
            let mut p = vec![("__name__", "x_total")];
            if let Some(r) = replica {
                p.push(("replica", r));
            }
            Labels::from_pairs(&p)
        };
        let replica_labels = ["replica".to_string()];
        for counter in [false, true] {
            let cv = Convert {
                replica_labels: &replica_labels,
                algorithm: Algorithm::Penalty,
                counter,
                aggr: AggrRead::Average,
            };
            // Deduplication by replica: a before b, as their labels sort.
            let by_replica =
                strata_dedup::dedup_samples(&[&a_gap, &b], Algorithm::Penalty, counter);
            let apart = to_engine(
                vec![(l(Some("a")), chunks(&a_gap)), (l(Some("b")), chunks(&b))],
                &cv,
            )
            .unwrap();
            // a's second chunk spans its gap (80, 90, 200, …, 250 s): by its average spacing,
            // a's next chunk would not seem to continue it.
            let together =
                to_engine(vec![(l(None), [chunks(&b), chunks(&a_gap)].concat())], &cv).unwrap();
            assert_eq!(apart.len(), 1);
            assert_eq!(together.len(), 1);
            assert_eq!(together[0].labels, l(None));
            let floats = |d: &SeriesData| match d {
                SeriesData::Floats { timestamps, values } => timestamps
                    .iter()
                    .copied()
                    .zip(values.iter().copied())
                    .collect::<Vec<_>>(),
                other => panic!("{other:?}"),
            };
            let got = floats(&together[0].data);
            assert_eq!(got, by_replica, "counter {counter}");
            assert_eq!(floats(&apart[0].data), by_replica, "counter {counter}");
            // No doubled rate: one sample per 10 s, and the gap filled from b.
            assert!(got.windows(2).all(|w| w[1].0 - w[0].0 >= 10_000), "{got:?}");
            assert!(got.iter().any(|(t, _)| (100_000..200_000).contains(t)));
        }
        // b stops early and a is followed to the end: a's chunk after its gap continues a's
        // chain (by its average spacing it would not, and as another replica under penalty
        // it would lose its first samples).
        let b_short = samples(5_000, 80_000, 10_000, -0.5);
        let cv = Convert {
            replica_labels: &replica_labels,
            algorithm: Algorithm::Penalty,
            counter: false,
            aggr: AggrRead::Average,
        };
        let together = to_engine(
            vec![(l(None), [chunks(&a_gap), chunks(&b_short)].concat())],
            &cv,
        )
        .unwrap();
        let by_replica =
            strata_dedup::dedup_samples(&[&a_gap, &b_short], Algorithm::Penalty, false);
        match &together[0].data {
            SeriesData::Floats { timestamps, values } => {
                let got: Vec<(i64, f64)> = timestamps
                    .iter()
                    .copied()
                    .zip(values.iter().copied())
                    .collect();
                assert_eq!(got, by_replica);
            }
            other => panic!("{other:?}"),
        }
        // One replica only: the raw chunks go to the engine as they are.
        let cv = Convert {
            replica_labels: &replica_labels,
            algorithm: Algorithm::Penalty,
            counter: false,
            aggr: AggrRead::Average,
        };
        let one = to_engine(vec![(l(Some("a")), chunks(&a))], &cv).unwrap();
        assert!(matches!(one[0].data, SeriesData::Chunks(_)));
        assert_eq!(one[0].labels, l(None));
    }

    #[test]
    fn strip_replica_labels() {
        let l = Labels::from_pairs(&[("__name__", "up"), ("replica", "a"), ("zone", "x")]);
        assert_eq!(
            strip(&l, &["replica".to_string()]),
            Labels::from_pairs(&[("__name__", "up"), ("zone", "x")])
        );
        assert_eq!(strip(&l, &[]), l);
    }
}
