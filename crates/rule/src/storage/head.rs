//! The in-memory head: the ruler's most recent samples, per series, in XOR chunks.
//!
//! Chunks are cut the way Prometheus' head cuts them, with one simplification: a chunk is
//! closed after [`SAMPLES_PER_CHUNK`] samples (Prometheus estimates an end time aiming at 120
//! samples), and — as in Prometheus — never spans a block-duration-aligned boundary. The
//! second rule is what lets a block cut pass the head's chunks through untouched: every chunk
//! lies wholly inside one block range.
//!
//! The head is append-only in time per series. A sample at or before the series' last
//! timestamp is out of order and dropped (counted, as Prometheus counts it with out-of-order
//! ingestion disabled); one at exactly the last timestamp with the same value bits is a
//! harmless duplicate and dropped silently, as Prometheus' head does. A sample before
//! `min_valid_time` (the end of the last block cut, or of the newest block on disk) is out
//! of bounds: it would belong to a block that is already written.

use std::collections::HashMap;

use bytes::Bytes;
use strata_model::Labels;
use strata_tsdb::{Encoding, RawChunk, XorEncoder};

/// Samples per chunk, as Prometheus aims for.
pub(crate) const SAMPLES_PER_CHUNK: u16 = 120;

/// A chunk no more samples go into.
#[derive(Debug, Clone)]
pub(crate) struct ClosedChunk {
    pub(crate) min_time: i64,
    pub(crate) max_time: i64,
    pub(crate) data: Bytes,
}

/// The chunk samples are appended to.
#[derive(Debug, Clone)]
struct OpenChunk {
    enc: XorEncoder,
    min_time: i64,
    max_time: i64,
    /// The aligned boundary this chunk must not cross (its block range's end).
    boundary: i64,
}

/// One series of the head.
#[derive(Debug, Clone)]
pub(crate) struct MemSeries {
    pub(crate) labels: Labels,
    closed: Vec<ClosedChunk>,
    open: Option<OpenChunk>,
    /// The last appended sample: timestamp and value bits.
    last: Option<(i64, u64)>,
}

/// Why a sample was not appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// At or before the series' last timestamp (with a different value when equal).
    OutOfOrder,
    /// The same timestamp and value bits as the last sample: dropped without a count.
    Duplicate,
}

/// The start of the `range`-aligned window holding `t` (floor division: negative
/// timestamps round down too).
pub(crate) fn range_start(t: i64, range: i64) -> i64 {
    t.div_euclid(range) * range
}

impl MemSeries {
    pub(crate) fn new(labels: Labels) -> Self {
        MemSeries {
            labels,
            closed: Vec::new(),
            open: None,
            last: None,
        }
    }

    /// Appends a sample; `chunk_range` is the block duration chunks must not straddle.
    /// `Ok(true)` when the sample started a new chunk.
    pub(crate) fn append(&mut self, t: i64, v: f64, chunk_range: i64) -> Result<bool, Rejected> {
        let bits = v.to_bits();
        if let Some((lt, lv)) = self.last
            && t <= lt
        {
            return Err(if t == lt && bits == lv {
                Rejected::Duplicate
            } else {
                Rejected::OutOfOrder
            });
        }
        if self
            .open
            .as_ref()
            .is_some_and(|o| o.enc.num_samples() >= SAMPLES_PER_CHUNK || t >= o.boundary)
        {
            self.close_open();
        }
        let new_chunk = self.open.is_none();
        let open = self.open.get_or_insert_with(|| OpenChunk {
            enc: XorEncoder::new(),
            min_time: t,
            max_time: t,
            boundary: range_start(t, chunk_range).saturating_add(chunk_range),
        });
        // An XOR chunk holds up to 65535 samples; ours are closed at 120, so this never fails.
        if open.enc.append(t, v).is_err() {
            return Err(Rejected::OutOfOrder);
        }
        open.max_time = t;
        self.last = Some((t, bits));
        Ok(new_chunk)
    }

    fn close_open(&mut self) {
        if let Some(o) = self.open.take() {
            self.closed.push(ClosedChunk {
                min_time: o.min_time,
                max_time: o.max_time,
                data: Bytes::from(o.enc.bytes()),
            });
        }
    }

    /// Closes the open chunk when it ends before `t`: no sample can go into it any more
    /// (samples before `t` are out of bounds), and a cut passes it to a block.
    pub(crate) fn close_if_before(&mut self, t: i64) {
        if self.open.as_ref().is_some_and(|o| o.max_time < t) {
            self.close_open();
        }
    }

    /// The chunks overlapping `[mint, maxt]` (closed interval), in time order; the open chunk
    /// is copied as it is now.
    pub(crate) fn chunks(&self, mint: i64, maxt: i64) -> Vec<(i64, i64, RawChunk)> {
        let mut out: Vec<(i64, i64, RawChunk)> = self
            .closed
            .iter()
            .filter(|c| c.min_time <= maxt && mint <= c.max_time)
            .map(|c| {
                (
                    c.min_time,
                    c.max_time,
                    RawChunk::new(Encoding::Xor, c.data.clone()),
                )
            })
            .collect();
        if let Some(o) = &self.open
            && o.min_time <= maxt
            && mint <= o.max_time
        {
            out.push((
                o.min_time,
                o.max_time,
                RawChunk::new(Encoding::Xor, o.enc.bytes()),
            ));
        }
        out
    }

    /// Whether some sample lies in `[mint, maxt]` (as far as chunk bounds tell).
    pub(crate) fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.bounds()
            .is_some_and(|(lo, hi)| lo <= maxt && mint <= hi)
    }

    /// The first and last timestamps held.
    pub(crate) fn bounds(&self) -> Option<(i64, i64)> {
        let lo = self
            .closed
            .first()
            .map(|c| c.min_time)
            .or(self.open.as_ref().map(|o| o.min_time))?;
        let hi = self
            .open
            .as_ref()
            .map(|o| o.max_time)
            .or(self.closed.last().map(|c| c.max_time))?;
        Some((lo, hi))
    }

    /// Closed chunks wholly before `t`, removed from the series.
    pub(crate) fn take_before(&mut self, t: i64) -> Vec<ClosedChunk> {
        let n = self.closed.iter().take_while(|c| c.max_time < t).count();
        self.closed.drain(..n).collect()
    }

    /// Closed chunks wholly before `t`, copied (cheap: chunk bytes are shared).
    pub(crate) fn chunks_before(&self, t: i64) -> Vec<ClosedChunk> {
        self.closed
            .iter()
            .take_while(|c| c.max_time < t)
            .cloned()
            .collect()
    }

    pub(crate) fn num_chunks(&self) -> usize {
        self.closed.len() + usize::from(self.open.is_some())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.num_chunks() == 0
    }
}

/// Outcome counts of one append call.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AppendCounts {
    pub(crate) appended: u64,
    pub(crate) out_of_order: u64,
    pub(crate) out_of_bounds: u64,
    pub(crate) duplicates: u64,
    pub(crate) new_series: u64,
}

/// The head's series and time bounds. Lives behind the storage's mutex.
#[derive(Debug)]
pub(crate) struct HeadState {
    pub(crate) series: HashMap<u64, MemSeries>,
    pub(crate) refs: HashMap<Labels, u64>,
    pub(crate) next_ref: u64,
    /// The oldest sample held (`i64::MAX` when empty).
    pub(crate) min_time: i64,
    /// The newest sample held (`i64::MIN` when empty).
    pub(crate) max_time: i64,
    /// Samples before this belong to a block already written: out of bounds.
    pub(crate) min_valid_time: i64,
    /// The block duration: chunks never straddle a multiple of it.
    pub(crate) chunk_range: i64,
    /// Chunks held (open and closed), for `prometheus_tsdb_head_chunks`.
    pub(crate) chunks: usize,
}

impl HeadState {
    pub(crate) fn new(chunk_range: i64, min_valid_time: i64) -> Self {
        HeadState {
            series: HashMap::new(),
            refs: HashMap::new(),
            next_ref: 1,
            min_time: i64::MAX,
            max_time: i64::MIN,
            min_valid_time,
            chunk_range,
            chunks: 0,
        }
    }

    /// The series' ref, creating the series (with a fresh ref) when new.
    pub(crate) fn get_or_create(&mut self, labels: &Labels) -> (u64, bool) {
        if let Some(&r) = self.refs.get(labels) {
            return (r, false);
        }
        let r = self.next_ref;
        self.next_ref += 1;
        self.refs.insert(labels.clone(), r);
        self.series.insert(r, MemSeries::new(labels.clone()));
        (r, true)
    }

    /// Creates a series under a given ref (WAL replay). A label set already present keeps its
    /// ref; the returned ref is the one samples logged under `r` go to.
    pub(crate) fn create_with_ref(&mut self, r: u64, labels: Labels) -> u64 {
        if let Some(&existing) = self.refs.get(&labels) {
            return existing;
        }
        if self.series.contains_key(&r) {
            // The ref is taken (replay after appends): the series gets a fresh one.
            return self.get_or_create(&labels).0;
        }
        self.next_ref = self.next_ref.max(r.saturating_add(1));
        self.refs.insert(labels.clone(), r);
        self.series.insert(r, MemSeries::new(labels));
        r
    }

    /// Appends one sample to series `r`, checking bounds and order.
    pub(crate) fn append_to(&mut self, r: u64, t: i64, v: f64, counts: &mut AppendCounts) -> bool {
        if t < self.min_valid_time {
            counts.out_of_bounds += 1;
            return false;
        }
        let Some(s) = self.series.get_mut(&r) else {
            return false;
        };
        match s.append(t, v, self.chunk_range) {
            Ok(new_chunk) => {
                self.chunks += usize::from(new_chunk);
                counts.appended += 1;
                self.min_time = self.min_time.min(t);
                self.max_time = self.max_time.max(t);
                true
            }
            Err(Rejected::OutOfOrder) => {
                counts.out_of_order += 1;
                false
            }
            Err(Rejected::Duplicate) => {
                counts.duplicates += 1;
                false
            }
        }
    }

    /// Prometheus' head compaction rule: the head spans more than 1.5 block durations.
    /// Returns the range to persist, `[max(head min, aligned start), aligned end)`.
    pub(crate) fn compactable_range(&self) -> Option<(i64, i64)> {
        if self.min_time == i64::MAX || self.max_time == i64::MIN {
            return None;
        }
        let span = self.max_time.saturating_sub(self.min_time);
        if span <= self.chunk_range / 2 * 3 {
            return None;
        }
        let start = range_start(self.min_time, self.chunk_range);
        Some((self.min_time.max(start), start + self.chunk_range))
    }

    /// Drops every chunk wholly before `t` and the series left without chunks; recomputes
    /// the head's time bounds. Samples before `t` are out of bounds from now on.
    pub(crate) fn truncate(&mut self, t: i64) {
        self.min_valid_time = self.min_valid_time.max(t);
        let mut min = i64::MAX;
        let mut max = i64::MIN;
        self.series.retain(|_, s| {
            s.close_if_before(t);
            s.take_before(t);
            match s.bounds() {
                Some((lo, hi)) => {
                    min = min.min(lo);
                    max = max.max(hi);
                    true
                }
                None => false,
            }
        });
        let series = &self.series;
        self.refs.retain(|_, r| series.contains_key(r));
        self.min_time = min;
        self.max_time = max;
        self.chunks = self.series.values().map(MemSeries::num_chunks).sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::STALE_NAN;

    const H2: i64 = 2 * 3_600_000;

    fn decode(c: &RawChunk) -> Vec<(i64, u64)> {
        strata_tsdb::block::decode_xor(c)
            .unwrap()
            .into_iter()
            .map(|(t, v)| (t, v.to_bits()))
            .collect()
    }

    #[test]
    fn out_of_order_and_duplicates_are_dropped() {
        let mut s = MemSeries::new(Labels::from_pairs(&[("__name__", "a")]));
        assert_eq!(s.append(10, 1.0, H2), Ok(true));
        assert_eq!(s.append(20, 2.0, H2), Ok(false));
        assert_eq!(s.append(20, 2.0, H2), Err(Rejected::Duplicate));
        assert_eq!(s.append(20, 3.0, H2), Err(Rejected::OutOfOrder));
        assert_eq!(s.append(5, 3.0, H2), Err(Rejected::OutOfOrder));
        assert_eq!(s.append(30, STALE_NAN, H2), Ok(false));
        let chunks = s.chunks(i64::MIN, i64::MAX);
        assert_eq!(chunks.len(), 1);
        assert_eq!(
            decode(&chunks[0].2),
            vec![
                (10, 1f64.to_bits()),
                (20, 2f64.to_bits()),
                (30, STALE_NAN.to_bits())
            ]
        );
    }

    #[test]
    fn chunks_are_cut_at_120_samples_and_at_range_boundaries() {
        let mut s = MemSeries::new(Labels::from_pairs(&[("__name__", "a")]));
        for i in 0..250 {
            s.append(i * 1000, i as f64, H2).unwrap();
        }
        let c = s.chunks(i64::MIN, i64::MAX);
        let sizes: Vec<usize> = c.iter().map(|c| decode(&c.2).len()).collect();
        assert_eq!(sizes, vec![120, 120, 10]);
        assert_eq!((c[1].0, c[1].1), (120_000, 239_000));

        // A chunk never straddles a multiple of the range, even with few samples.
        let mut s = MemSeries::new(Labels::from_pairs(&[("__name__", "b")]));
        for t in [H2 - 2000, H2 - 1000, H2, H2 + 1000] {
            s.append(t, 1.0, H2).unwrap();
        }
        let c = s.chunks(i64::MIN, i64::MAX);
        assert_eq!(
            c.iter().map(|c| (c.0, c.1)).collect::<Vec<_>>(),
            vec![(H2 - 2000, H2 - 1000), (H2, H2 + 1000)]
        );
    }

    #[test]
    fn compactable_only_past_one_and_a_half_ranges() {
        let mut h = HeadState::new(H2, i64::MIN);
        let (r, _) = h.get_or_create(&Labels::from_pairs(&[("__name__", "a")]));
        let mut c = AppendCounts::default();
        let start = 30 * 60_000; // 00:30
        h.append_to(r, start, 1.0, &mut c);
        h.append_to(r, start + H2 / 2 * 3, 1.0, &mut c); // exactly 3h: not yet
        assert_eq!(h.compactable_range(), None);
        h.append_to(r, start + H2 / 2 * 3 + 1, 1.0, &mut c);
        assert_eq!(h.compactable_range(), Some((start, H2)));

        h.truncate(H2);
        assert_eq!(h.min_time, start + H2 / 2 * 3);
        assert_eq!(h.compactable_range(), None);
        // Samples of the persisted range are now out of bounds.
        h.append_to(r, H2 - 1, 1.0, &mut c);
        assert_eq!(c.out_of_bounds, 1);
    }

    #[test]
    fn truncation_drops_old_chunks_and_empty_series() {
        let mut h = HeadState::new(H2, i64::MIN);
        let a = Labels::from_pairs(&[("__name__", "a")]);
        let b = Labels::from_pairs(&[("__name__", "b")]);
        let (ra, _) = h.get_or_create(&a);
        let (rb, _) = h.get_or_create(&b);
        let mut c = AppendCounts::default();
        for t in (0..3 * H2).step_by(60_000) {
            h.append_to(ra, t, 1.0, &mut c);
        }
        h.append_to(rb, 1000, 1.0, &mut c);
        let before = h.series[&ra].chunks_before(H2);
        assert!(before.iter().all(|c| c.max_time < H2));
        assert_eq!(before.iter().map(|c| c.min_time).min(), Some(0));
        h.truncate(H2);
        assert!(!h.refs.contains_key(&b));
        assert!(!h.series.contains_key(&rb));
        assert_eq!(h.series[&ra].bounds(), Some((H2, 3 * H2 - 60_000)));
        assert_eq!(h.min_time, H2);
        // A new series for `b` gets a new ref.
        let (rb2, created) = h.get_or_create(&b);
        assert!(created && rb2 != rb);
    }
}
