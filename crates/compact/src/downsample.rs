//! Downsampling: raw → 5m aggregates once a raw block spans 40 hours, 5m → 1h once a 5m block
//! spans 10 days, in Thanos' `AggrChunk` encoding so that Thanos reads our blocks and we read
//! theirs (`pkg/compact/downsample/downsample.go`).
//!
//! Each output sample summarises one window `(k·res, (k+1)·res]`, stamped at the window's
//! last millisecond (`t - t % res + res - 1`, capped at the batch's last sample so batches do
//! not overlap): count, sum, min, max, and the reset-adjusted counter. Raw series are cut into
//! batches of about 140 windows; already-aggregated series are re-aggregated only along
//! chunk boundaries, because a counter chunk's first and last values are the true raw values
//! and must survive every level.

use std::path::Path;

use strata_tsdb::block::{Block, BlockWriter, BlockWriterOptions};
use strata_tsdb::chunkenc::{AggrChunk, AggrType, CounterResets, encode_aggr_chunk};
use strata_tsdb::meta::{Downsample, RES_1H, RES_5M, ThanosMeta};
use strata_tsdb::{BlockMeta, Encoding, RawChunk, XorEncoder};
use ulid::Ulid;

use crate::error::{CompactError, Result};
use crate::merge::SOURCE_COMPACTOR;

/// A raw block is downsampled to 5m once it spans at least this long.
pub const RAW_DOWNSAMPLE_RANGE_MS: i64 = 40 * 3_600_000;
/// A 5m block is downsampled to 1h once it spans at least this long.
pub const RES_5M_DOWNSAMPLE_RANGE_MS: i64 = 10 * 24 * 3_600_000;

/// Prometheus' stale marker.
fn is_stale(v: f64) -> bool {
    v.to_bits() == 0x7ff0_0000_0000_0002
}

/// End of the window `t` falls in (Go's `%` semantics, as Thanos computes it).
fn current_window(t: i64, res: i64) -> i64 {
    t - (t % res) + res - 1
}

/// Running statistics: per window (count, sum, min, max) and over the whole batch (the
/// reset-adjusted counter).
#[derive(Debug, Clone, Copy)]
struct Aggregator {
    total: u64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    counter: f64,
    last: f64,
}

impl Aggregator {
    fn new() -> Self {
        Aggregator {
            total: 0,
            count: 0,
            sum: 0.0,
            min: f64::MAX,
            max: -f64::MAX,
            counter: 0.0,
            last: 0.0,
        }
    }

    fn reset_window(&mut self) {
        self.count = 0;
        self.sum = 0.0;
        self.min = f64::MAX;
        self.max = -f64::MAX;
    }

    fn add(&mut self, v: f64) {
        if self.total > 0 {
            // A drop is a counter reset: the new value counts from zero.
            self.counter += if v < self.last { v } else { v - self.last };
        } else {
            self.counter = v;
        }
        self.last = v;
        self.sum += v;
        self.count += 1;
        self.total += 1;
        if v < self.min {
            self.min = v;
        }
        if v > self.max {
            self.max = v;
        }
    }
}

/// Aggregates `data` window by window, calling `add` at each window's end; returns the last
/// window's timestamp. Stale markers are skipped.
fn downsample_batch(data: &[(i64, f64)], res: i64, mut add: impl FnMut(i64, &Aggregator)) -> i64 {
    let last_t = data[data.len() - 1].0;
    let mut aggr = Aggregator::new();
    let mut next_t: i64 = -1;
    for &(t, v) in data {
        if is_stale(v) {
            continue;
        }
        if t > next_t {
            if next_t != -1 {
                add(next_t, &aggr);
            }
            aggr.reset_window();
            next_t = current_window(t, res).min(last_t);
        }
        aggr.add(v);
    }
    add(next_t, &aggr);
    next_t
}

/// How many output chunks a series should get: enough for at most ~140 windows each, given
/// the range and how densely the input fills it.
fn target_chunk_count(mint: i64, maxt: i64, in_res: i64, out_res: i64, count: usize) -> usize {
    let max_samples = ((maxt - mint) / out_res) as f64;
    let fullness = (count as f64 / ((maxt - mint) as f64 / in_res as f64)).min(1.0);
    let expected = (max_samples * fullness) as usize + 1;
    let mut x = 1;
    while expected / x > 140 {
        x += 1;
    }
    x
}

/// Five XOR encoders, one per aggregate, and the chunk's time range.
struct Builder {
    encs: [Option<XorEncoder>; 5],
    mint: i64,
    maxt: i64,
}

impl Builder {
    fn new() -> Self {
        Builder {
            encs: Default::default(),
            mint: i64::MAX,
            maxt: i64::MIN,
        }
    }

    fn append(&mut self, t: AggrType, ts: i64, v: f64) -> Result<()> {
        self.encs[t as usize]
            .get_or_insert_with(XorEncoder::new)
            .append(ts, v)
            .map_err(|source| CompactError::Chunk {
                series: String::new(),
                source,
            })
    }

    fn widen(&mut self, t: i64) {
        self.mint = self.mint.min(t);
        self.maxt = self.maxt.max(t);
    }

    fn finish(self) -> (i64, i64, RawChunk) {
        let bytes: Vec<Option<Vec<u8>>> = self
            .encs
            .iter()
            .map(|e| e.as_ref().map(XorEncoder::bytes))
            .collect();
        let parts: [Option<(Encoding, &[u8])>; 5] =
            std::array::from_fn(|i| bytes[i].as_deref().map(|b| (Encoding::Xor, b)));
        (
            self.mint,
            self.maxt,
            RawChunk::new(Encoding::ThanosAggr, encode_aggr_chunk(&parts)),
        )
    }
}

/// Downsamples raw samples (time-ordered) to `res`: aggregate chunks as `(mint, maxt, chunk)`.
pub fn downsample_raw(data: &[(i64, f64)], res: i64) -> Result<Vec<(i64, i64, RawChunk)>> {
    if data.is_empty() {
        return Ok(Vec::new());
    }
    let (mint, maxt) = (data[0].0, data[data.len() - 1].0);
    // Thanos assumes one raw sample a minute for sizing; the exact figure only shapes chunks.
    let num_chunks = target_chunk_count(mint, maxt, 60_000, res, data.len());
    let batch_size = data.len() / num_chunks + 1;
    let mut out = Vec::with_capacity(num_chunks);
    let mut rest = data;
    while !rest.is_empty() {
        let mut j = batch_size.min(rest.len());
        // Do not end a batch in the middle of a window.
        let window = current_window(rest[j - 1].0, res);
        while j < rest.len() && rest[j].0 <= window {
            j += 1;
        }
        let batch: Vec<(i64, f64)> = rest[..j]
            .iter()
            .copied()
            .filter(|s| !s.1.is_nan())
            .collect();
        rest = &rest[j..];
        if batch.is_empty() {
            continue;
        }
        let mut b = Builder::new();
        // The first raw value opens the counter chunk (see `CounterResets`).
        b.append(AggrType::Counter, batch[0].0, batch[0].1)?;
        let mut err = Ok(());
        let last_t = downsample_batch(&batch, res, |t, a| {
            b.widen(t);
            for (ty, v) in [
                (AggrType::Count, a.count as f64),
                (AggrType::Sum, a.sum),
                (AggrType::Min, a.min),
                (AggrType::Max, a.max),
                (AggrType::Counter, a.counter),
            ] {
                if err.is_ok() {
                    err = b.append(ty, t, v);
                }
            }
        });
        err?;
        // The last raw value closes it, at the last window's timestamp.
        b.append(AggrType::Counter, last_t, batch[batch.len() - 1].1)?;
        out.push(b.finish());
    }
    Ok(out)
}

/// Samples of one aggregate across chunks, skipping stale markers and anything going back in
/// time, as Thanos expands them.
fn expand(samples: impl IntoIterator<Item = (i64, f64)>, out: &mut Vec<(i64, f64)>) {
    let mut last_t = 0i64;
    for (t, v) in samples {
        if is_stale(v) {
            continue;
        }
        if t >= last_t {
            out.push((t, v));
            last_t = t;
        }
    }
}

/// Re-aggregates one batch of aggregate chunks to `res`.
pub fn downsample_aggr_batch(chunks: &[AggrChunk<'_>], res: i64) -> Result<(i64, i64, RawChunk)> {
    let mut b = Builder::new();
    let mut buf = Vec::new();
    let chunk_err = |source| CompactError::Chunk {
        series: String::new(),
        source,
    };
    for (ty, pick) in [
        // Count re-aggregates by summing the windows' counts.
        (
            AggrType::Count,
            (|a: &Aggregator| a.sum) as fn(&Aggregator) -> f64,
        ),
        (AggrType::Sum, |a: &Aggregator| a.sum),
        (AggrType::Min, |a: &Aggregator| a.min),
        (AggrType::Max, |a: &Aggregator| a.max),
    ] {
        buf.clear();
        for c in chunks {
            expand(c.samples(ty).map_err(chunk_err)?, &mut buf);
        }
        if buf.is_empty() {
            continue;
        }
        let mut err = Ok(());
        downsample_batch(&buf, res, |t, a| {
            b.widen(t);
            if err.is_ok() {
                err = b.append(ty, t, pick(a));
            }
        });
        err?;
    }
    // Counters: apply resets across the chunks first, then aggregate the monotonic series.
    let mut resets = CounterResets::new();
    let mut adjusted = Vec::new();
    for c in chunks {
        let s = c.samples(AggrType::Counter).map_err(chunk_err)?;
        resets.push_stream(&s, &mut adjusted);
    }
    buf.clear();
    expand(adjusted, &mut buf);
    if !buf.is_empty() {
        b.append(AggrType::Counter, buf[0].0, buf[0].1)?;
        let mut err = Ok(());
        let last_t = downsample_batch(&buf, res, |t, a| {
            b.widen(t);
            if err.is_ok() {
                err = b.append(AggrType::Counter, t, a.counter);
            }
        });
        err?;
        b.append(AggrType::Counter, last_t, resets.last_value())?;
    }
    Ok(b.finish())
}

/// Re-aggregates a series' aggregate chunks (time-ordered) from `in_res` to `out_res`.
pub fn downsample_aggr(
    chunks: &[AggrChunk<'_>],
    mint: i64,
    maxt: i64,
    in_res: i64,
    out_res: i64,
) -> Result<Vec<(i64, i64, RawChunk)>> {
    if chunks.is_empty() {
        return Ok(Vec::new());
    }
    let mut samples = 0;
    for c in chunks {
        samples += usize::from(c.num_samples().map_err(|source| CompactError::Chunk {
            series: String::new(),
            source,
        })?);
    }
    let num_chunks = target_chunk_count(mint, maxt, in_res, out_res, samples);
    let batch = (chunks.len() / num_chunks).max(1);
    chunks
        .chunks(batch)
        .map(|part| downsample_aggr_batch(part, out_res))
        .collect()
}

/// Figures about one downsampled block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DownsampleStats {
    pub series: u64,
    pub input_samples: u64,
    pub output_chunks: u64,
}

/// Downsamples a whole block to `res` (5m from raw, or 1h from 5m) into a new block under
/// `out_parent`. The new block keeps the source's time range, external labels and
/// `compaction` section, as Thanos does. `None` when the block has no series.
pub fn downsample_block(
    block: &Block,
    res: i64,
    out_parent: &Path,
    ulid: Option<Ulid>,
) -> Result<Option<(BlockMeta, DownsampleStats)>> {
    let src = block.meta();
    let src_res = src.resolution();
    let valid = (src_res == 0 && res == RES_5M) || (src_res == RES_5M && res == RES_1H);
    if !valid {
        return Err(CompactError::Plan(format!(
            "block {} has resolution {src_res} ms; it cannot be downsampled to {res} ms",
            src.ulid
        )));
    }
    let thanos = src.thanos.clone().unwrap_or_default();
    let opts = BlockWriterOptions {
        time_range: Some((src.min_time, src.max_time)),
        compaction: Some(src.compaction.clone()),
        thanos: Some(ThanosMeta {
            labels: thanos.labels,
            downsample: Downsample { resolution: res },
            source: SOURCE_COMPACTOR.into(),
            ..Default::default()
        }),
        ulid,
        ..Default::default()
    };
    let mut w = BlockWriter::new(out_parent, opts)?;
    let input_err = |source| CompactError::Input {
        block: src.ulid,
        source,
    };
    let mut stats = DownsampleStats::default();
    let mut samples: Vec<(i64, f64)> = Vec::new();
    for (n, id) in block
        .index()
        .all_postings()
        .map_err(input_err)?
        .into_iter()
        .enumerate()
    {
        if (n as u64 + 1).is_multiple_of(crate::merge::RELEASE_EVERY_SERIES) {
            block.release_memory();
        }
        let (labels, metas) = block.index().series(id).map_err(input_err)?;
        if let Some(w) = metas.windows(2).find(|w| w[0].max_time >= w[1].min_time) {
            return Err(CompactError::Unmergeable {
                series: labels.to_string(),
                detail: format!(
                    "found overlapping chunks within series: [{}, {}] and [{}, {}]",
                    w[0].min_time, w[0].max_time, w[1].min_time, w[1].max_time
                ),
            });
        }
        let series_err = |source| CompactError::Chunk {
            series: labels.to_string(),
            source,
        };
        let raws: Vec<RawChunk> = metas
            .iter()
            .map(|m| block.chunk(m.chunk_ref).map_err(input_err))
            .collect::<Result<_>>()?;
        let out = if src_res == 0 {
            samples.clear();
            let mut decoded = Vec::new();
            for r in &raws {
                decoded.clear();
                let it = r.xor_iter().map_err(series_err)?;
                for s in it {
                    decoded.push(s.map_err(series_err)?);
                }
                expand(decoded.iter().copied(), &mut samples);
            }
            stats.input_samples += samples.len() as u64;
            downsample_raw(&samples, res)?
        } else {
            let mut aggrs = Vec::with_capacity(raws.len());
            for r in &raws {
                if r.encoding != Encoding::ThanosAggr {
                    return Err(CompactError::Unmergeable {
                        series: labels.to_string(),
                        detail: format!(
                            "expected downsampled chunks, found encoding {}",
                            r.encoding
                        ),
                    });
                }
                aggrs.push(AggrChunk::new(&r.data));
            }
            let (mint, maxt) = (metas[0].min_time, metas[metas.len() - 1].max_time);
            downsample_aggr(&aggrs, mint, maxt, src_res, res)?
        };
        if out.is_empty() {
            continue;
        }
        stats.series += 1;
        stats.output_chunks += out.len() as u64;
        w.add_series_chunks(&labels, &out)?;
    }
    if stats.series == 0 {
        w.abort();
        return Ok(None);
    }
    Ok(Some((w.finish()?, stats)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALE: f64 = f64::from_bits(0x7ff0_0000_0000_0002);

    fn aggr_samples(c: &RawChunk, t: AggrType) -> Vec<(i64, f64)> {
        AggrChunk::new(&c.data).samples(t).unwrap()
    }

    /// Thanos' test vector: raw data downsampled at resolution 100.
    #[test]
    fn raw_to_res_100() {
        let input = [
            (20, 1.0),
            (40, 2.0),
            (60, 3.0),
            (80, 1.0),
            (100, 2.0),
            (101, STALE),
            (120, 5.0),
            (180, 10.0),
            (250, 1.0),
        ];
        let out = downsample_raw(&input, 100).unwrap();
        assert_eq!(out.len(), 1);
        let c = &out[0].2;
        assert_eq!(
            aggr_samples(c, AggrType::Count),
            vec![(99, 4.0), (199, 3.0), (250, 1.0)]
        );
        assert_eq!(
            aggr_samples(c, AggrType::Sum),
            vec![(99, 7.0), (199, 17.0), (250, 1.0)]
        );
        assert_eq!(
            aggr_samples(c, AggrType::Min),
            vec![(99, 1.0), (199, 2.0), (250, 1.0)]
        );
        assert_eq!(
            aggr_samples(c, AggrType::Max),
            vec![(99, 3.0), (199, 10.0), (250, 1.0)]
        );
        assert_eq!(
            aggr_samples(c, AggrType::Counter),
            vec![(20, 1.0), (99, 4.0), (199, 13.0), (250, 14.0), (250, 1.0)]
        );
        assert_eq!((out[0].0, out[0].1), (99, 250));
    }

    fn chunk(parts: [&[(i64, f64)]; 5]) -> Vec<u8> {
        let bytes: Vec<Option<Vec<u8>>> = parts
            .iter()
            .map(|s| (!s.is_empty()).then(|| XorEncoder::encode(s.iter().copied()).unwrap()))
            .collect();
        let parts: [Option<(Encoding, &[u8])>; 5] =
            std::array::from_fn(|i| bytes[i].as_deref().map(|b| (Encoding::Xor, b)));
        encode_aggr_chunk(&parts)
    }

    /// Thanos' test vector: aggregates re-downsampled at resolution 500, along chunk
    /// boundaries (the repeated counter timestamps mark them).
    #[test]
    fn aggregates_to_res_500_and_idempotent() {
        let c1 = [(199, 5.0), (299, 1.0), (399, 10.0), (400, 3.0), (499, 10.0)];
        let c1_min = [
            (199, 5.0),
            (299, 1.0),
            (399, 10.0),
            (400, -3.0),
            (499, 10.0),
        ];
        let c2 = [(699, 0.0), (999, 100.0)];
        let a = chunk([
            &c1,
            &c1,
            &c1_min,
            &c1_min,
            &[(99, 100.0), (299, 150.0), (499, 210.0), (499, 10.0)],
        ]);
        let b = chunk([
            &c2,
            &c2,
            &c2,
            &c2,
            &[(599, 20.0), (799, 50.0), (999, 120.0), (999, 50.0)],
        ]);
        let c = chunk([
            &[],
            &[],
            &[],
            &[],
            &[(1099, 40.0), (1199, 80.0), (1299, 110.0)],
        ]);
        let chunks = [AggrChunk::new(&a), AggrChunk::new(&b), AggrChunk::new(&c)];
        let (_, _, out) = downsample_aggr_batch(&chunks, 500).unwrap();
        assert_eq!(
            aggr_samples(&out, AggrType::Count),
            vec![(499, 29.0), (999, 100.0)]
        );
        assert_eq!(
            aggr_samples(&out, AggrType::Sum),
            vec![(499, 29.0), (999, 100.0)]
        );
        assert_eq!(
            aggr_samples(&out, AggrType::Min),
            vec![(499, -3.0), (999, 0.0)]
        );
        assert_eq!(
            aggr_samples(&out, AggrType::Max),
            vec![(499, 10.0), (999, 100.0)]
        );
        let counter = aggr_samples(&out, AggrType::Counter);
        assert_eq!(
            counter,
            vec![
                (99, 100.0),
                (499, 210.0),
                (999, 320.0),
                (1299, 430.0),
                (1299, 110.0)
            ]
        );
        // Downsampling the output again at the same resolution changes nothing.
        let (_, _, again) = downsample_aggr_batch(&[AggrChunk::new(&out.data)], 500).unwrap();
        assert_eq!(again.data, out.data);
    }

    #[test]
    fn chunk_count_targets_about_140_windows() {
        // 10 days at 1m sampled, to 5m: 2880 windows → 21 chunks of ≤140.
        let n = target_chunk_count(0, 10 * 86_400_000, 60_000, RES_5M, 14_400);
        assert_eq!(n, 21);
        assert_eq!(target_chunk_count(0, 0, 60_000, RES_5M, 1), 1);
    }
}
