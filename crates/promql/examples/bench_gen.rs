//! Writes the PromQL benchmark data set as TSDB blocks.
//!
//! `cargo run --release -p strata-promql --example bench_gen -- DIR [SERIES_SCALE]`
//!
//! `BENCH_GEN_SHIFT_MS=N` moves every sample N ms later: with 5000, the same data as a second
//! HA replica would scrape it 5 s after the first (the deduplication benchmark).
//!
//! 12 hours at a 15 s scrape interval, in six 2-hour blocks (as Prometheus cuts them):
//! - `http_requests_total{job,instance,method,status}`: 5,000 counters with occasional resets;
//! - `http_request_duration_seconds_bucket{job,instance,le}`: 1,000 cumulative histogram
//!   buckets (100 histograms × 10 buckets);
//! - `node_memory_bytes{job,instance}`: 100 gauges drifting up and down.
//!
//! Every sample timestamp sits off whole seconds (a per-series phase of `ms % 1000 != 0`),
//! so that no sample lies exactly on a query's window boundary: Prometheus 2.42 includes a
//! sample at the start of a range, 3.x does not, and boundary samples would make the two
//! disagree for reasons unrelated to the engines. There are no gaps in any series, so the
//! 2.42 and 3.x orders of rate extrapolation give the same results.

use std::path::PathBuf;

use strata_model::Labels;
use strata_tsdb::{BlockWriter, BlockWriterOptions};

/// First sample time: 2023-11-14T22:13:20Z plus 137 ms.
pub const START_MS: i64 = 1_700_000_000_000;
const STEP_MS: i64 = 15_000;
const HOURS: i64 = 12;
const BLOCK_MS: i64 = 2 * 3_600_000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn f(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

enum Kind {
    Counter { rate: f64 },
    Bucket { rate: f64 },
    Gauge { level: f64 },
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: bench_gen DIR [SCALE]"));
    let scale: usize = args.next().map_or(1, |s| s.parse().expect("scale"));
    std::fs::create_dir_all(&dir).expect("creating output dir");
    let shift: i64 = std::env::var("BENCH_GEN_SHIFT_MS")
        .ok()
        .map_or(0, |s| s.parse().expect("BENCH_GEN_SHIFT_MS: milliseconds"));

    let mut series: Vec<(Labels, Kind, i64)> = Vec::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let phase = |rng: &mut Rng| {
        // A phase within the scrape interval that is never on a whole second.
        let p = (rng.next() % STEP_MS as u64) as i64;
        if p % 1000 == 0 { p + 137 } else { p }
    };
    let jobs = ["api", "web", "db", "cache"];
    let methods = ["GET", "POST", "PUT", "DELETE", "PATCH"];
    let statuses = [
        "200", "201", "204", "301", "400", "401", "404", "500", "502", "503",
    ];
    for s in 0..scale {
        for job in jobs {
            for inst in 0..25 {
                let instance = format!("10.0.{s}.{inst}:9100");
                for method in methods {
                    for status in statuses {
                        let l = Labels::from_pairs(&[
                            ("__name__", "http_requests_total"),
                            ("instance", instance.as_str()),
                            ("job", job),
                            ("method", method),
                            ("status", status),
                        ]);
                        let rate = 0.1 + rng.f() * 20.0;
                        series.push((l, Kind::Counter { rate }, phase(&mut rng)));
                    }
                }
                let hist_phase = phase(&mut rng);
                let base = 1.0 + rng.f() * 50.0;
                for (k, le) in [
                    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf",
                ]
                .iter()
                .enumerate()
                {
                    let l = Labels::from_pairs(&[
                        ("__name__", "http_request_duration_seconds_bucket"),
                        ("instance", instance.as_str()),
                        ("job", job),
                        ("le", le),
                    ]);
                    // Cumulative: higher buckets count at least as much as lower ones.
                    let rate = base * (k as f64 + 1.0) / 10.0;
                    series.push((l, Kind::Bucket { rate }, hist_phase));
                }
                let l = Labels::from_pairs(&[
                    ("__name__", "node_memory_bytes"),
                    ("instance", instance.as_str()),
                    ("job", job),
                ]);
                let level = 1e9 + rng.f() * 4e9;
                series.push((l, Kind::Gauge { level }, phase(&mut rng)));
            }
        }
    }
    series.sort_by(|a, b| a.0.cmp(&b.0));

    // Generate every series' samples once (deterministically), then cut into blocks.
    let n = (HOURS * 3_600_000 / STEP_MS) as usize;
    let mut all: Vec<Vec<(i64, f64)>> = Vec::with_capacity(series.len());
    for (i, (_, kind, ph)) in series.iter().enumerate() {
        let mut r = Rng(0x1234_5678 + i as u64 * 7919);
        let mut v = match kind {
            Kind::Counter { .. } | Kind::Bucket { .. } => 1e6 + (r.next() % 1_000_000) as f64,
            Kind::Gauge { level } => *level,
        };
        let mut out = Vec::with_capacity(n);
        for k in 0..n {
            let t = START_MS + shift + ph + k as i64 * STEP_MS;
            match kind {
                Kind::Counter { rate } => {
                    v += (rate * 15.0 * (0.5 + r.f())).round();
                    // A rare counter reset (process restart).
                    if r.next().is_multiple_of(5000) {
                        v = (r.next() % 100) as f64;
                    }
                }
                Kind::Bucket { rate } => v += (rate * 15.0).round(),
                Kind::Gauge { .. } => v += (r.f() - 0.48) * 1e6,
            }
            out.push((t, v));
        }
        all.push(out);
    }
    let end = START_MS + shift + HOURS * 3_600_000 + STEP_MS;
    let mut total = 0usize;
    let mut b0 = START_MS - START_MS % BLOCK_MS;
    while b0 < end {
        let b1 = b0 + BLOCK_MS;
        let mut w = BlockWriter::new(&dir, BlockWriterOptions::default()).expect("block writer");
        for ((l, _, _), samples) in series.iter().zip(&all) {
            let part: Vec<(i64, f64)> = samples
                .iter()
                .copied()
                .filter(|(t, _)| *t >= b0 && *t < b1)
                .collect();
            if !part.is_empty() {
                total += part.len();
                w.add_series(l, &part).expect("adding series");
            }
        }
        let meta = w.finish().expect("finishing block");
        eprintln!("block {} [{}, {})", meta.ulid, meta.min_time, meta.max_time);
        b0 = b1;
    }
    eprintln!(
        "{} series, {total} samples in {}",
        series.len(),
        dir.display()
    );
}
