//! Throughput of deduplication on realistic HA replicas (see `common/mod.rs`): two or three
//! replicas of one counter, 1M samples each. Run with `cargo bench -p strata-dedup --bench
//! dedup`. Criterion's throughput is per *input* sample; the output length is printed once per
//! case. On a shared machine prefer the CPU-time figures of
//! `cargo run --release -p strata-dedup --example dedup_cpu`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use strata_dedup::{Algorithm, Sample, dedup_into};

mod common;

fn bench(c: &mut Criterion) {
    let [a, b, c3] = common::replicas();
    // Receive-style replication: the same samples twice.
    let same = a.clone();

    let cases: [(&str, Algorithm, bool, Vec<&[Sample]>); 5] = [
        ("penalty_2x1M", Algorithm::Penalty, false, vec![&a, &b]),
        (
            "penalty_counter_2x1M",
            Algorithm::Penalty,
            true,
            vec![&a, &b],
        ),
        ("penalty_3x1M", Algorithm::Penalty, false, vec![&a, &b, &c3]),
        (
            "chain_identical_2x1M",
            Algorithm::Chain,
            false,
            vec![&a, &same],
        ),
        ("chain_jittered_2x1M", Algorithm::Chain, false, vec![&a, &b]),
    ];

    let mut g = c.benchmark_group("dedup");
    g.sample_size(20);
    let mut out = Vec::with_capacity(4 * common::SAMPLES);
    for (name, alg, counter, replicas) in &cases {
        let input: usize = replicas.iter().map(|r| r.len()).sum();
        out.clear();
        dedup_into(replicas, *alg, *counter, &mut out);
        eprintln!(
            "{name}: {input} input samples -> {} output samples",
            out.len()
        );
        g.throughput(Throughput::Elements(input as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), replicas, |bch, r| {
            bch.iter(|| {
                out.clear();
                dedup_into(r, *alg, *counter, &mut out);
                black_box(out.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
