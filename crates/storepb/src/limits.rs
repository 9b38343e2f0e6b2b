//! `--store.limits.request-series` and `--store.limits.request-samples` for the Store API
//! servers that enforce them per request themselves (the sidecar, the ruler), as Thanos'
//! limited store server does: a Series call that would send more series, or chunks holding
//! more samples, fails with `RESOURCE_EXHAUSTED` naming the flag.

use crate::thanos::AggrChunk;

/// The limits of one request (0: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestLimits {
    /// `--store.limits.request-series`.
    pub series: u64,
    /// `--store.limits.request-samples`.
    pub samples: u64,
}

/// A request past one of its limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} limit {limit} exceeded ({flag}): narrow the query or raise the limit")]
pub struct LimitExceeded {
    /// `series` or `samples`.
    pub what: &'static str,
    pub limit: u64,
    pub flag: &'static str,
}

impl From<LimitExceeded> for tonic::Status {
    fn from(e: LimitExceeded) -> Self {
        tonic::Status::resource_exhausted(e.to_string())
    }
}

impl RequestLimits {
    /// Adds the samples of `chunks` to `total`; an error once it passes the samples limit.
    pub fn count_samples(
        &self,
        total: &mut u64,
        chunks: &[AggrChunk],
    ) -> Result<(), LimitExceeded> {
        if self.samples == 0 {
            return Ok(());
        }
        for c in chunks {
            *total += c.raw.as_ref().map_or(0, |r| chunk_samples(&r.data));
        }
        if *total > self.samples {
            return Err(LimitExceeded {
                what: "samples",
                limit: self.samples,
                flag: "--store.limits.request-samples",
            });
        }
        Ok(())
    }

    /// An error when `series` series pass the series limit.
    pub fn check_series(&self, series: u64) -> Result<(), LimitExceeded> {
        if self.series > 0 && series > self.series {
            return Err(LimitExceeded {
                what: "series",
                limit: self.series,
                flag: "--store.limits.request-series",
            });
        }
        Ok(())
    }
}

/// The samples an XOR chunk holds: its first two bytes, big-endian (the TSDB chunk header).
pub fn chunk_samples(data: &[u8]) -> u64 {
    match data {
        [a, b, ..] => u64::from(u16::from_be_bytes([*a, *b])),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thanos::{Chunk, chunk};

    fn xor(samples: u16) -> AggrChunk {
        let mut data = samples.to_be_bytes().to_vec();
        data.extend_from_slice(&[0; 8]);
        AggrChunk {
            min_time: 0,
            max_time: 1,
            raw: Some(Chunk {
                r#type: chunk::Encoding::Xor as i32,
                data: data.into(),
                hash: 0,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn limits_count_series_and_the_samples_chunks_hold() {
        let l = RequestLimits {
            series: 2,
            samples: 250,
        };
        assert!(l.check_series(2).is_ok());
        assert_eq!(l.check_series(3).unwrap_err().what, "series");
        let mut total = 0;
        assert!(l.count_samples(&mut total, &[xor(120), xor(120)]).is_ok());
        assert_eq!(total, 240);
        let e = l.count_samples(&mut total, &[xor(11)]).unwrap_err();
        assert_eq!(e.flag, "--store.limits.request-samples");
        assert_eq!(
            tonic::Status::from(e).code(),
            tonic::Code::ResourceExhausted
        );
        // No limit: nothing counted.
        let none = RequestLimits::default();
        let mut total = 0;
        assert!(none.count_samples(&mut total, &[xor(60_000)]).is_ok());
        assert!(none.check_series(u64::MAX).is_ok());
    }
}
