//! Deduplication cost in CPU nanoseconds per input and per output sample, measured with the
//! thread's CPU clock so the figure holds on a shared, busy machine (criterion's wall-clock
//! numbers do not). Same inputs as `benches/dedup.rs`.
//!
//! `cargo run --release -p strata-dedup --example dedup_cpu [seconds-per-case]`

use std::hint::black_box;

use strata_testutil::cpu::thread_cpu_ns;

use strata_dedup::{Algorithm, Sample, dedup_into};

#[path = "../benches/common/mod.rs"]
mod common;

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let [a, b, c] = common::replicas();
    let same = a.clone();
    let cases: [(&str, Algorithm, bool, Vec<&[Sample]>); 5] = [
        ("penalty 2x1M", Algorithm::Penalty, false, vec![&a, &b]),
        (
            "penalty counter 2x1M",
            Algorithm::Penalty,
            true,
            vec![&a, &b],
        ),
        ("penalty 3x1M", Algorithm::Penalty, false, vec![&a, &b, &c]),
        (
            "chain identical 2x1M",
            Algorithm::Chain,
            false,
            vec![&a, &same],
        ),
        ("chain jittered 2x1M", Algorithm::Chain, false, vec![&a, &b]),
    ];
    println!("case                   CPU ns/input sample  CPU ns/output sample  (in -> out)");
    let mut out = Vec::with_capacity(4 * common::SAMPLES);
    for (name, alg, counter, replicas) in &cases {
        let input: u64 = replicas.iter().map(|r| r.len() as u64).sum();
        let (mut runs, mut produced) = (0u64, 0u64);
        let budget = (secs * 1e9) as u64;
        let start = thread_cpu_ns();
        while thread_cpu_ns() - start < budget {
            out.clear();
            dedup_into(replicas, *alg, *counter, &mut out);
            black_box(&out);
            runs += 1;
            produced = out.len() as u64;
        }
        let ns = (thread_cpu_ns() - start) as f64 / runs as f64;
        println!(
            "{name:<22} {:>19.2}  {:>20.2}  ({input} -> {produced}, {runs} runs)",
            ns / input as f64,
            ns / produced as f64,
        );
    }
}
