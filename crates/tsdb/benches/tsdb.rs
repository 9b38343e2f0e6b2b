//! Hot paths of the block format: XOR decode and encode, postings set operations, and block
//! writing. Run with `cargo bench -p strata-tsdb --bench tsdb`; results and the machine they
//! were measured on are in `docs/benchmarks.md`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use strata_model::Labels;
use strata_tsdb::block::{BlockWriter, BlockWriterOptions};
use strata_tsdb::index::{intersect, intersect_many, union_many};
use strata_tsdb::{XorEncoder, XorIterator};

mod common;
use common::{Rng, SHAPES, chunks};

fn xor(c: &mut Criterion) {
    let mut g = c.benchmark_group("xor_decode");
    for kind in SHAPES {
        let data = chunks(kind, 1000);
        g.throughput(Throughput::Elements(120 * data.len() as u64));
        g.bench_with_input(BenchmarkId::new("bulk", kind), &data, |b, data| {
            let (mut ts, mut vs) = (Vec::with_capacity(120), Vec::with_capacity(120));
            b.iter(|| {
                for d in data {
                    ts.clear();
                    vs.clear();
                    XorIterator::new(d)
                        .unwrap()
                        .decode_into(&mut ts, &mut vs)
                        .unwrap();
                    black_box((&ts, &vs));
                }
            })
        });
        g.bench_with_input(BenchmarkId::new("iter", kind), &data, |b, data| {
            b.iter(|| {
                let mut sum = 0.0;
                for d in data {
                    for s in XorIterator::new(d).unwrap() {
                        sum += s.unwrap().1;
                    }
                }
                black_box(sum)
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("xor_encode");
    let samples: Vec<Vec<(i64, f64)>> = chunks("counter", 1000)
        .iter()
        .map(|d| XorIterator::new(d).unwrap().map(Result::unwrap).collect())
        .collect();
    g.throughput(Throughput::Elements(120 * samples.len() as u64));
    g.bench_function("counter", |b| {
        b.iter(|| {
            for s in &samples {
                black_box(XorEncoder::encode(s.iter().copied()).unwrap());
            }
        })
    });
    g.finish();
}

fn sorted_sample(rng: &mut Rng, universe: u32, n: usize) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n)
        .map(|_| (rng.next() % u64::from(universe)) as u32)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn postings(c: &mut Criterion) {
    let mut rng = Rng(42);
    let big_a = sorted_sample(&mut rng, 4_000_000, 1_000_000);
    let big_b = sorted_sample(&mut rng, 4_000_000, 1_000_000);
    let small = sorted_sample(&mut rng, 4_000_000, 1_000);
    let mid = sorted_sample(&mut rng, 4_000_000, 100_000);
    let mut g = c.benchmark_group("postings");
    g.throughput(Throughput::Elements((big_a.len() + big_b.len()) as u64));
    g.bench_function("intersect_1M_1M", |b| {
        b.iter(|| black_box(intersect(&big_a, &big_b)))
    });
    g.throughput(Throughput::Elements((big_a.len() + small.len()) as u64));
    g.bench_function("intersect_1M_1k", |b| {
        b.iter(|| black_box(intersect(&big_a, &small)))
    });
    g.throughput(Throughput::Elements(
        (big_a.len() + big_b.len() + mid.len()) as u64,
    ));
    g.bench_function("intersect_many_1M_1M_100k", |b| {
        b.iter(|| {
            black_box(intersect_many(vec![
                big_a.clone(),
                big_b.clone(),
                mid.clone(),
            ]))
        })
    });
    let lists: Vec<Vec<u32>> = (0..100)
        .map(|_| sorted_sample(&mut rng, 4_000_000, 10_000))
        .collect();
    g.throughput(Throughput::Elements(
        lists.iter().map(|l| l.len() as u64).sum(),
    ));
    g.bench_function("union_100x10k", |b| {
        b.iter(|| black_box(union_many(lists.clone())))
    });
    g.finish();
}

fn block_write(c: &mut Criterion) {
    let mut g = c.benchmark_group("block_write");
    g.sample_size(10);
    let (series, per) = (2_000usize, 720usize);
    let labels: Vec<Labels> = (0..series)
        .map(|i| {
            Labels::from_pairs(&[
                ("__name__", format!("metric_{}", i % 20)),
                ("instance", format!("10.0.{}.{}:9100", i / 250, i % 250)),
                ("job", "node".to_string()),
                ("series", i.to_string()),
            ])
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    g.throughput(Throughput::Elements((series * per) as u64));
    g.bench_function("2000_series_x_720_samples", |b| {
        b.iter(|| {
            let dir = tempfile::tempdir().unwrap();
            let mut w = BlockWriter::new(dir.path(), BlockWriterOptions::default()).unwrap();
            let mut rng = Rng(7);
            for l in &labels {
                let mut t = 1_700_000_000_000i64;
                let mut v = 0.0;
                w.add_series_iter(
                    l,
                    (0..per).map(|_| {
                        t += 15_000;
                        v += (rng.next() % 10) as f64;
                        (t, v)
                    }),
                )
                .unwrap();
            }
            black_box(w.finish().unwrap());
        })
    });
    g.finish();
}

/// Chunk CRC checks as the store gateway does them: 2,300 gauge-like chunks of 700 bytes
/// (a Series call over 100 series and 11 hours), one CRC per chunk against four interleaved.
fn chunk_crc(c: &mut Criterion) {
    let mut rng = Rng(7);
    let data: Vec<u8> = (0..2300 * 700).map(|_| rng.next() as u8).collect();
    let chunks: Vec<(u8, &[u8])> = data.chunks(700).map(|d| (1u8, d)).collect();
    let mut g = c.benchmark_group("chunk_crc");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("one_by_one", |b| {
        let mut out = Vec::with_capacity(chunks.len());
        b.iter(|| {
            out.clear();
            out.extend(
                chunks
                    .iter()
                    .map(|&(e, d)| crc32c::crc32c_append(crc32c::crc32c(&[e]), black_box(d))),
            );
            black_box(&out);
        })
    });
    g.bench_function("interleaved", |b| {
        let mut out = Vec::with_capacity(chunks.len());
        b.iter(|| {
            out.clear();
            strata_tsdb::encoding::chunk_crcs(black_box(&chunks), &mut out);
            black_box(&out);
        })
    });
    g.finish();
}

criterion_group!(benches, xor, postings, block_write, chunk_crc);
criterion_main!(benches);
