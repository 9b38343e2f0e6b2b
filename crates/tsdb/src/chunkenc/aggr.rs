//! Thanos' downsampled aggregate chunk (`AggrChunk`, encoding byte 0xFF;
//! `pkg/compact/downsample/aggr.go`) and the counter-reset iterator that reads counters back
//! out of it.
//!
//! The chunk's data is five sub-chunks in fixed order — count, sum, min, max, counter — each
//! `uvarint(len) | encoding u8 | data`, or a single `0` byte when absent. For float series
//! every sub-chunk is XOR. Each aggregate sample sits at the end of its window
//! (`t - t % res + res - 1`). The counter sub-chunk starts with the first raw sample, holds
//! the running reset-adjusted total per window, and ends with a sample repeating the last
//! window's timestamp that carries the last raw value, so that resets *between* chunks can
//! be detected by [`CounterResets`].

use super::{ChunkError, Encoding, XorIterator};
use crate::encoding::{put_uvarint, read_uvarint};

/// The five aggregates, in their order inside the chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AggrType {
    Count = 0,
    Sum = 1,
    Min = 2,
    Max = 3,
    Counter = 4,
}

impl AggrType {
    pub const ALL: [AggrType; 5] = [
        AggrType::Count,
        AggrType::Sum,
        AggrType::Min,
        AggrType::Max,
        AggrType::Counter,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AggrType::Count => "count",
            AggrType::Sum => "sum",
            AggrType::Min => "min",
            AggrType::Max => "max",
            AggrType::Counter => "counter",
        }
    }
}

/// Encodes an aggregate chunk's data from its five sub-chunks (`None` = absent), each given
/// as `(encoding, data)`.
pub fn encode_aggr_chunk(parts: &[Option<(Encoding, &[u8])>; 5]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().flatten().map(|p| p.1.len() + 3).sum());
    for p in parts {
        match p {
            None => out.push(0),
            Some((enc, data)) => {
                put_uvarint(&mut out, data.len() as u64);
                out.push(enc.as_u8());
                out.extend_from_slice(data);
            }
        }
    }
    out
}

/// A view over an aggregate chunk's data.
#[derive(Clone, Copy, Debug)]
pub struct AggrChunk<'a> {
    data: &'a [u8],
}

impl<'a> AggrChunk<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        AggrChunk { data }
    }

    /// The sub-chunk of aggregate `t`: `Ok(None)` when absent.
    pub fn get(&self, t: AggrType) -> Result<Option<(Encoding, &'a [u8])>, ChunkError> {
        let corrupt = |reason| ChunkError::Corrupt {
            sample: 0,
            total: 0,
            reason,
        };
        let mut rest = self.data;
        for i in 0..=t as usize {
            let (len, n) = read_uvarint(rest).map_err(|_| corrupt("aggregate chunk length"))?;
            rest = &rest[n..];
            if len == 0 {
                if i == t as usize {
                    return Ok(None);
                }
                continue;
            }
            let len = usize::try_from(len).map_err(|_| corrupt("aggregate chunk length"))?;
            // `len < rest.len()` is `1 + len <= rest.len()` without overflowing on a huge
            // length (found by the aggr_chunk fuzz target).
            if len >= rest.len() {
                return Err(corrupt("aggregate sub-chunk runs past the chunk"));
            }
            let enc = Encoding::from_u8(rest[0]);
            let data = &rest[1..1 + len];
            if i == t as usize {
                return Ok(Some((enc, data)));
            }
            rest = &rest[1 + len..];
        }
        Ok(None)
    }

    /// An iterator over the float samples of aggregate `t` (`None` when absent).
    pub fn iter(&self, t: AggrType) -> Result<Option<XorIterator<'a>>, ChunkError> {
        match self.get(t)? {
            None => Ok(None),
            Some((Encoding::Xor, data)) => Ok(Some(XorIterator::new(data)?)),
            Some((enc, _)) => Err(ChunkError::UnsupportedEncoding(enc)),
        }
    }

    /// Samples of aggregate `t`, decoded (empty when absent).
    pub fn samples(&self, t: AggrType) -> Result<Vec<(i64, f64)>, ChunkError> {
        match self.iter(t)? {
            None => Ok(Vec::new()),
            Some(it) => it.collect(),
        }
    }

    /// Number of windows, from the count aggregate's header.
    pub fn num_samples(&self) -> Result<u16, ChunkError> {
        Ok(self.iter(AggrType::Count)?.map_or(0, |it| it.num_samples()))
    }
}

/// Turns a sequence of counter streams (raw chunks, or the counter sub-chunks of aggregate
/// chunks, in time order) into one monotonic series: drops are treated as resets and the
/// running total carries on, so `rate` and `increase` see a clean counter. The special last
/// sample of an aggregate counter chunk (a repeated timestamp holding the true last raw
/// value) is consumed to detect a reset between that chunk and the next. NaN samples are
/// skipped; samples going back in time are dropped.
#[derive(Debug, Default, Clone)]
pub struct CounterResets {
    started: bool,
    last_t: i64,
    last_v: f64,
    total: f64,
}

impl CounterResets {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one stream's samples; appends the adjusted samples to `out`.
    pub fn push_stream(&mut self, samples: &[(i64, f64)], out: &mut Vec<(i64, f64)>) {
        for &(t, v) in samples {
            if v.is_nan() {
                continue;
            }
            if !self.started {
                self.started = true;
                self.last_t = t;
                self.last_v = v;
                self.total = v;
                out.push((t, v));
                continue;
            }
            if t > self.last_t {
                if v >= self.last_v {
                    self.total += v - self.last_v;
                } else {
                    self.total += v;
                }
                self.last_t = t;
                self.last_v = v;
                out.push((t, self.total));
            } else if t == self.last_t {
                // The true last raw value of the chunk just read.
                self.last_v = v;
            }
        }
    }

    /// The last raw value seen (what a following chunk's first value is compared with).
    pub fn last_value(&self) -> f64 {
        self.last_v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunkenc::XorEncoder;

    /// Regression (fuzz/regressions/aggr_chunk): a sub-chunk length of 2^64-1 overflowed the
    /// bounds check and panicked instead of reporting a corrupt chunk.
    #[test]
    fn huge_sub_chunk_length_is_corrupt_not_a_panic() {
        let data = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fuzz/regressions/aggr_chunk/length-overflow.bin"
        ));
        let c = AggrChunk::new(data);
        for t in [AggrType::Count, AggrType::Sum, AggrType::Counter] {
            assert!(matches!(c.get(t), Err(ChunkError::Corrupt { .. })), "{t:?}");
            assert!(c.samples(t).is_err());
        }
    }

    #[test]
    fn encode_and_read_back_with_absent_parts() {
        let count = XorEncoder::encode([(99, 4.0), (199, 3.0)]).unwrap();
        let sum = XorEncoder::encode([(99, 7.0), (199, 17.0)]).unwrap();
        let data = encode_aggr_chunk(&[
            Some((Encoding::Xor, &count)),
            Some((Encoding::Xor, &sum)),
            None,
            None,
            None,
        ]);
        let c = AggrChunk::new(&data);
        assert_eq!(
            c.samples(AggrType::Count).unwrap(),
            vec![(99, 4.0), (199, 3.0)]
        );
        assert_eq!(
            c.samples(AggrType::Sum).unwrap(),
            vec![(99, 7.0), (199, 17.0)]
        );
        // Absent aggregates, including a trailing one, are absent (not an error; Thanos'
        // reader has a quirk here that we do not copy).
        assert!(c.get(AggrType::Min).unwrap().is_none());
        assert!(c.get(AggrType::Counter).unwrap().is_none());
        assert_eq!(c.num_samples().unwrap(), 2);
        // Layout: uvarint(len) | 0x01 | data for present parts, 0x00 for absent ones.
        assert_eq!(data[0] as usize, count.len());
        assert_eq!(data[1], 1);
        assert_eq!(&data[data.len() - 3..], &[0, 0, 0]);
        // Truncations are errors.
        for cut in 0..data.len() - 3 {
            let c = AggrChunk::new(&data[..cut]);
            assert!(
                c.get(AggrType::Sum).is_err() || c.samples(AggrType::Sum).is_err(),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn counter_resets_across_chunk_boundaries() {
        // Per-chunk counter streams from Thanos' test vector (raw data at resolution 50).
        let chunks: [&[(i64, f64)]; 4] = [
            &[(10, 1.0), (30, 5.0), (30, 5.0)],
            &[(50, 1.0), (70, 10.0), (70, 10.0)],
            &[(120, 1.0), (140, 20.0), (140, 20.0)],
            &[(160, 21.0), (180, 40.0), (180, 40.0)],
        ];
        let mut it = CounterResets::new();
        let mut out = Vec::new();
        for c in chunks {
            it.push_stream(c, &mut out);
        }
        assert_eq!(
            out,
            vec![
                (10, 1.0),
                (30, 5.0),
                (50, 6.0),
                (70, 15.0),
                (120, 16.0),
                (140, 35.0),
                (160, 36.0),
                (180, 55.0)
            ]
        );
    }
}
