//! Benchmark data shared by the criterion benches and the CPU-time example, so that both
//! measure exactly the same chunks.

#![allow(dead_code, unreachable_pub)]

use strata_tsdb::XorEncoder;

/// A small deterministic PRNG (xorshift64*), so every run measures the same data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// The chunk shapes measured: a counter (small integer increments), a gauge (arbitrary float
/// values, XOR's worst case) and a constant (its best case).
pub const SHAPES: [&str; 3] = ["counter", "gauge", "constant"];

/// `n` chunks of 120 samples shaped like real scrapes: 15 s interval with ±2 ms jitter.
pub fn chunks(shape: &str, n: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|c| {
            let mut t = 1_700_000_000_000i64 + c as i64 * 1_800_000;
            let mut v = 0.0f64;
            let samples: Vec<(i64, f64)> = (0..120)
                .map(|_| {
                    t += 15_000 + (rng.next() % 5) as i64 - 2;
                    v = match shape {
                        "counter" => v + (rng.next() % 100) as f64,
                        "gauge" => (rng.next() % 1_000_000) as f64 / 7.0,
                        _ => 1.0,
                    };
                    (t, v)
                })
                .collect();
            XorEncoder::encode(samples).expect("120 samples fit a chunk")
        })
        .collect()
}
