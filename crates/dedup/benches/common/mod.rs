//! Realistic HA replicas for the benchmarks: one counter scraped every 15 s with a few
//! milliseconds of jitter, a different phase per replica, and restarts that leave gaps of a few
//! minutes (after which the counter starts again from zero, as a restarted process's does).

use strata_dedup::Sample;

/// Samples per replica.
pub(crate) const SAMPLES: usize = 1_000_000;
const INTERVAL: i64 = 15_000;

/// xorshift64*: deterministic inputs without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One replica: `SAMPLES` scrapes from `phase` ms on, each ±`jitter` ms, with a gap of 2–10
/// minutes on average every 20k scrapes (about 3.5 days).
pub(crate) fn replica(seed: u64, phase: i64, jitter: i64) -> Vec<Sample> {
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(SAMPLES);
    let mut t = 1_700_000_000_000 + phase;
    let mut v = 0.0;
    while out.len() < SAMPLES {
        t += INTERVAL;
        if rng.below(20_000) == 0 {
            t += INTERVAL * (8 + rng.below(32) as i64);
            v = 0.0;
        }
        v += rng.below(100) as f64;
        let j = if jitter > 0 {
            rng.below(2 * jitter as u64 + 1) as i64 - jitter
        } else {
            0
        };
        out.push((t + j, v));
    }
    out
}

/// The replicas every case uses: `a`, `b` (7.3 s later), `c` (11.1 s later).
pub(crate) fn replicas() -> [Vec<Sample>; 3] {
    [
        replica(0x9e37_79b9_7f4a_7c15, 0, 5),
        replica(0xd1b5_4a32_d192_ed03, 7_300, 5),
        replica(0x8cb9_2ba7_2f3d_8dd7, 11_100, 5),
    ]
}
