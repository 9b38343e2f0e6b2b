//! Series streaming: output order when external labels are attached or replica labels are
//! removed (the cases where that can reorder series), across several cursor batches per block,
//! and the chunk pool as a hard bound on chunk bytes held across concurrent requests.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use strata_model::{Labels, Matcher};
use strata_objstore::BucketMetrics;
use strata_store::testing::{Reference, decode_samples};
use strata_store::{StoreConfig, StoreError};
use strata_storepb::convert::matcher_from_model;
use strata_storepb::thanos::SeriesRequest;
use strata_tsdb::{BlockWriter, BlockWriterOptions};

const H2: i64 = 2 * 3_600_000;

/// Label sets built to stress ordering: nested prefixes (`{__name__}` ⊂ `{__name__, a}` ⊂
/// `{__name__, a, b}`), names sorting before and after the external names `cluster` and
/// `replica`, and (with `with_clash`) series carrying `replica` or `cluster` themselves.
fn edge_series(n: usize, with_clash: bool) -> Vec<Labels> {
    let mut out = Vec::new();
    for i in 0..n {
        let name = format!("m{}", i % 7);
        let v = format!("{}", i / 7);
        out.push(labels(&[("__name__", &name), ("a", &v)]));
        out.push(labels(&[("__name__", &name), ("a", &v), ("b", "1")]));
        out.push(labels(&[("__name__", &name), ("a", &v), ("zz", "1")]));
        out.push(labels(&[("__name__", &name), ("d", &v)]));
        if with_clash && i % 5 == 0 {
            out.push(labels(&[("__name__", &name), ("a", &v), ("replica", "x")]));
            out.push(labels(&[
                ("__name__", &name),
                ("cluster", "own"),
                ("e", &v),
            ]));
        }
    }
    for m in 0..7 {
        out.push(labels(&[("__name__", &format!("m{m}"))]));
    }
    out.sort();
    out.dedup();
    out
}

fn write_block(dir: &Path, mint: i64, series: &[Labels]) -> PathBuf {
    let mut w = BlockWriter::new(
        dir,
        BlockWriterOptions {
            time_range: Some((mint, mint + H2)),
            ..Default::default()
        },
    )
    .unwrap();
    // Values depend on time only: series that become equal once replica labels are removed
    // then have identical chunks, so the expected merge has one answer.
    for l in series {
        let samples = (0..4).map(|s| (mint + s * 1_800_000, s as f64));
        w.add_series_iter(l, samples).unwrap();
    }
    let meta = w.finish().unwrap();
    dir.join(meta.ulid.to_string())
}

fn request(mint: i64, maxt: i64, strip: &[&str], batch: i64) -> SeriesRequest {
    SeriesRequest {
        min_time: mint,
        max_time: maxt,
        matchers: vec![matcher_from_model(
            &Matcher::new(strata_model::MatchOp::RegexMatch, "__name__", ".+").unwrap(),
        )],
        without_replica_labels: strip.iter().map(|s| s.to_string()).collect(),
        response_batch_size: batch,
        ..Default::default()
    }
}

/// Blocks: two time ranges under `{cluster="eu1", replica="r1"}`, one overlapping under
/// `{cluster="eu1", replica="r2"}` (merged with the first when `replica` is stripped), and one
/// whose series carry the external label names themselves.
async fn fixture(tmp: &Path, config: impl FnOnce(&mut StoreConfig)) -> (Served, Reference) {
    let bucket = fs_bucket(&tmp.join("bucket"), &BucketMetrics::unregistered());
    let raw = tmp.join("raw");
    let t0 = 1_700_000_000_000 - 1_700_000_000_000 % H2;
    let plain = edge_series(1_500, false);
    let clash = edge_series(300, true);
    let mut reference = Reference::default();
    let r1 = [("cluster", "eu1"), ("replica", "r1")];
    let r2 = [("cluster", "eu1"), ("replica", "r2")];
    let b1 = write_block(&raw.join("1"), t0, &plain);
    let b2 = write_block(&raw.join("2"), t0 + H2, &plain);
    let b3 = write_block(&raw.join("3"), t0, &plain[..plain.len() / 2]);
    let b4 = write_block(&raw.join("4"), t0 + H2, &clash);
    upload(&bucket, &[b1, b2], &r1, &mut reference).await;
    upload(&bucket, &[b3], &r2, &mut reference).await;
    upload(&bucket, &[b4], &[("cluster", "eu2")], &mut reference).await;
    let mut c = StoreConfig::new(tmp.join("data"));
    config(&mut c);
    (Served::start(bucket, c).await, reference)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_stay_sorted_when_external_or_replica_labels_reorder_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (served, reference) = fixture(tmp.path(), |_| {}).await;
    let (min, max) = reference.time_range();
    let all = vec![Matcher::new(strata_model::MatchOp::RegexMatch, "__name__", ".+").unwrap()];
    let mut client = served.client().await;
    for strip in [
        &[][..],
        &["replica"][..],
        &["cluster"][..],
        &["a"][..],
        &["replica", "cluster"][..],
    ] {
        for batch in [0, 7] {
            let want = reference
                .series(
                    &all,
                    min,
                    max - 1,
                    &strip.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                )
                .unwrap();
            let got = client
                .series(request(min, max - 1, strip, batch))
                .await
                .unwrap();
            assert!(got.warnings.is_empty(), "{:?}", got.warnings);
            let got_labels: Vec<&Labels> = got.series.iter().map(|s| &s.0).collect();
            let want_labels: Vec<&Labels> = want.iter().map(|s| &s.labels).collect();
            assert!(
                got_labels == want_labels,
                "strip {strip:?} batch {batch}: {} series, want {}; first difference at {:?}",
                got_labels.len(),
                want_labels.len(),
                got_labels
                    .iter()
                    .zip(&want_labels)
                    .position(|(a, b)| a != b)
            );
            for ((_, chunks), w) in got.series.iter().zip(&want) {
                let samples = decode_samples(chunks, min, max - 1).unwrap();
                assert_eq!(samples, w.samples, "{}", w.labels);
            }
        }
    }
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chunk_pool_bounds_chunk_bytes_held_across_concurrent_requests() {
    let tmp = tempfile::tempdir().unwrap();
    const POOL: u64 = 96 << 10;
    let (served, reference) = fixture(tmp.path(), |c| c.chunk_pool_bytes = POOL).await;
    let (min, max) = reference.time_range();
    let all = vec![Matcher::new(strata_model::MatchOp::RegexMatch, "__name__", ".+").unwrap()];
    let want = reference.series(&all, min, max - 1, &[]).unwrap();
    let mut tasks = Vec::new();
    for k in 0..4 {
        let mut c = served.client().await;
        tasks.push(tokio::spawn(async move {
            c.series(request(min, max - 1, &[], [0, 7, 100, 1][k]))
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        let got = t.await.unwrap();
        assert_eq!(got.series.len(), want.len());
        for ((l, chunks), w) in got.series.iter().zip(&want) {
            assert_eq!(l, &w.labels);
            assert_eq!(decode_samples(chunks, min, max - 1).unwrap(), w.samples);
        }
    }
    let stats = served.store.chunk_pool_stats().unwrap();
    assert_eq!(stats.capacity, POOL);
    assert!(stats.peak > 0, "{stats:?}");
    assert!(
        stats.peak <= POOL,
        "chunk buffers peaked at {} bytes over a pool of {POOL}",
        stats.peak
    );
    assert_eq!(stats.held, 0, "every buffer went back to the pool");
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_smaller_than_one_series_reads_is_resource_exhausted_naming_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let (served, reference) = fixture(tmp.path(), |c| c.chunk_pool_bytes = 1 << 10).await;
    let (min, max) = reference.time_range();
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let err = served
        .store
        .series(request(min, max - 1, &[], 0), &tx)
        .await
        .unwrap_err();
    drop(tx);
    drain.await.unwrap();
    assert!(
        matches!(&err, StoreError::ResourceExhausted(m) if m.contains("--chunk-pool-size")),
        "{err}"
    );
    served.stop().await;
}
