//! Store gateway behaviour beyond the acceptance suite: restarts reuse index-headers, limits,
//! bucket outages, corrupt blocks, sync filters, resolution selection and the index cache.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use strata_block::relabel::parse_relabel_configs;
use strata_block::transfer::{UploadOptions, upload_block};
use strata_model::{Labels, Matcher};
use strata_objstore::BucketMetrics;
use strata_store::store::SeriesOutcome;
use strata_store::testing::{Reference, decode_samples, run_acceptance};
use strata_store::{BucketStore, Limits, StoreConfig, StoreError};
use strata_storepb::convert::{matcher_from_model, pack_any, unpack_any};
use strata_storepb::hintspb;
use strata_storepb::thanos::{Aggr, SeriesRequest, SeriesResponse, label_matcher, series_response};
use strata_tsdb::meta::{Compaction, Downsample, RES_1H, RES_5M, ThanosMeta};
use strata_tsdb::{BlockMeta, BlockWriter, BlockWriterOptions, Encoding, RawChunk, XorEncoder};
use ulid::Ulid;

fn all() -> Vec<strata_storepb::thanos::LabelMatcher> {
    vec![strata_storepb::convert::label_matcher(
        label_matcher::Type::Re,
        "__name__",
        ".+",
    )]
}

/// `req` fails with `ResourceExhausted`, and the message names `flag`.
async fn assert_exhausted(store: &BucketStore, req: SeriesRequest, flag: &str) {
    let status = series(store, req).await.unwrap_err().to_status();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(status.message().contains(flag), "{status}");
}

fn request(mint: i64, maxt: i64) -> SeriesRequest {
    SeriesRequest {
        min_time: mint,
        max_time: maxt,
        matchers: all(),
        ..Default::default()
    }
}

/// Runs Series in-process and collects the frames.
async fn series(
    store: &BucketStore,
    req: SeriesRequest,
) -> Result<(SeriesOutcome, Vec<SeriesResponse>), StoreError> {
    // Drained while the store produces, as the gRPC stream does: frames hold chunk pool room.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<SeriesResponse, tonic::Status>>(16);
    let drain = async move {
        let mut frames = Vec::new();
        while let Some(f) = rx.recv().await {
            frames.push(f.unwrap());
        }
        frames
    };
    let produce = async move {
        let out = store.series(req, &tx).await;
        drop(tx);
        out
    };
    let (out, frames) = futures::join!(produce, drain);
    out.map(|o| (o, frames))
}

fn warnings(frames: &[SeriesResponse]) -> Vec<String> {
    frames
        .iter()
        .filter_map(|f| match &f.result {
            Some(series_response::Result::Warning(w)) => Some(w.clone()),
            _ => None,
        })
        .collect()
}

fn series_labels(frames: &[SeriesResponse]) -> Vec<Labels> {
    frames
        .iter()
        .filter_map(|f| match &f.result {
            Some(series_response::Result::Series(s)) => {
                Some(strata_storepb::convert::labels_to_model(s.labels.clone()))
            }
            _ => None,
        })
        .collect()
}

async fn fs_store(
    bucket_dir: &Path,
    data: &Path,
    config: impl FnOnce(&mut StoreConfig),
) -> Arc<BucketStore> {
    let mut c = StoreConfig::new(data);
    config(&mut c);
    let bucket = fs_bucket(bucket_dir, &BucketMetrics::unregistered());
    let store = Arc::new(BucketStore::new(bucket, c, None).unwrap());
    store.sync_blocks().await.unwrap();
    store.prepare_all().await;
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_reuses_index_headers() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket_dir = tmp.path().join("bucket");
    let metrics = BucketMetrics::unregistered();
    let bucket = fs_bucket(&bucket_dir, &metrics);
    let mut reference = Reference::default();
    let blocks = promtool_blocks(&tmp.path().join("blocks"), 3, 0);
    upload(&bucket, &blocks, &[("cluster", "eu1")], &mut reference).await;
    let data = tmp.path().join("data");

    let first = fs_store(&bucket_dir, &data, |_| {}).await;
    let ids = first.block_ids();
    assert_eq!(ids.len(), blocks.len());
    let headers: Vec<_> = ids
        .iter()
        .map(|id| data.join(id.to_string()).join("index-header"))
        .collect();
    let mtimes: Vec<_> = headers
        .iter()
        .map(|h| std::fs::metadata(h).unwrap().modified().unwrap())
        .collect();
    drop(first);

    // A new process over the same data directory: headers load from disk, no index reads.
    let before = metrics.operations("bucket", "get_range");
    let second = Arc::new(BucketStore::new(bucket.clone(), StoreConfig::new(&data), None).unwrap());
    second.sync_blocks().await.unwrap();
    second.prepare_all().await;
    assert_eq!(second.loaded_headers(), ids.len());
    assert_eq!(
        metrics.operations(bucket.name(), "get_range"),
        before,
        "loading existing index-headers must not read the bucket"
    );
    for (h, m) in headers.iter().zip(&mtimes) {
        assert_eq!(std::fs::metadata(h).unwrap().modified().unwrap(), *m);
    }

    // A damaged header is rebuilt, and the block still answers correctly.
    let mut raw = std::fs::read(&headers[0]).unwrap();
    let mid = raw.len() / 2;
    raw[mid] ^= 0xff;
    std::fs::write(&headers[0], &raw).unwrap();
    let third = fs_store(&bucket_dir, &tmp.path().join("data"), |_| {}).await;
    let (_, frames) = series(&third, request(T0, T0 + 3 * 3_600_000))
        .await
        .unwrap();
    assert!(warnings(&frames).is_empty());
    let want = reference
        .series(
            &[Matcher::new(strata_model::MatchOp::RegexMatch, "__name__", ".+").unwrap()],
            T0,
            T0 + 3 * 3_600_000,
            &[],
        )
        .unwrap();
    assert_eq!(series_labels(&frames).len(), want.len());
    assert_ne!(
        std::fs::read(&headers[0]).unwrap(),
        raw,
        "the damaged header was rebuilt"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_resource_exhausted_and_name_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket_dir = tmp.path().join("bucket");
    let bucket = fs_bucket(&bucket_dir, &BucketMetrics::unregistered());
    let blocks = promtool_blocks(&tmp.path().join("blocks"), 2, 0);
    upload(
        &bucket,
        &blocks,
        &[("cluster", "eu1")],
        &mut Reference::default(),
    )
    .await;

    let store = fs_store(&bucket_dir, &tmp.path().join("d1"), |c| {
        c.limits = Limits {
            request_series: 5,
            ..Default::default()
        }
    })
    .await;
    assert_exhausted(
        &store,
        request(T0, T0 + 7_200_000),
        "--store.limits.request-series",
    )
    .await;
    // Within the limit it works (series are counted per block, as in Thanos).
    let mut narrow = request(T0, T0 + 7_200_000);
    narrow.matchers = vec![strata_storepb::convert::label_matcher(
        label_matcher::Type::Eq,
        "room",
        "kitchen",
    )];
    let (o, _) = series(&store, narrow).await.unwrap();
    assert_eq!(o.series, 1);

    let store = fs_store(&bucket_dir, &tmp.path().join("d2"), |c| {
        c.limits = Limits {
            request_samples: 1000,
            ..Default::default()
        }
    })
    .await;
    assert_exhausted(
        &store,
        request(T0, T0 + 7_200_000),
        "--store.limits.request-samples",
    )
    .await;
    // skip_chunks does not count samples.
    let mut labels_only = request(T0, T0 + 7_200_000);
    labels_only.skip_chunks = true;
    series(&store, labels_only).await.unwrap();

    let store = fs_store(&bucket_dir, &tmp.path().join("d3"), |c| {
        c.limits = Limits {
            downloaded_bytes: 10_000,
            ..Default::default()
        }
    })
    .await;
    assert_exhausted(
        &store,
        request(T0, T0 + 7_200_000),
        "--store.grpc.downloaded-bytes-limit",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_chunk_pool_bounds_memory_but_answers_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket_dir = tmp.path().join("bucket");
    let bucket = fs_bucket(&bucket_dir, &BucketMetrics::unregistered());
    let blocks = promtool_blocks(&tmp.path().join("blocks"), 3, 0);
    let mut reference = Reference::default();
    upload(&bucket, &blocks, &[("cluster", "eu1")], &mut reference).await;
    let mut config = StoreConfig::new(tmp.path().join("data"));
    // Room for a few series' reads (chunk sizes unknown: 16 000 B estimated per chunk).
    config.chunk_pool_bytes = 256 << 10;
    let served = Served::start(bucket, config).await;
    // Concurrent requests share 256 KiB of chunk pool; each waits its turn.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let mut c = served.client().await;
        tasks.push(tokio::spawn(async move {
            c.series(request(T0, T0 + 3 * 3_600_000))
                .await
                .unwrap()
                .series
                .len()
        }));
    }
    let counts: Vec<usize> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert!(
        counts.iter().all(|&c| c == counts[0] && c > 0),
        "{counts:?}"
    );
    let mut client = served.client().await;
    run_acceptance(&mut client, &reference).await.unwrap();
    let pool = served.store.chunk_pool_stats().unwrap();
    assert!(pool.peak <= 256 << 10, "{pool:?}");
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_outage_fails_series_cleanly_and_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket_dir = tmp.path().join("bucket");
    let bucket = fs_bucket(&bucket_dir, &BucketMetrics::unregistered());
    let blocks = promtool_blocks(&tmp.path().join("blocks"), 2, 0);
    upload(
        &bucket,
        &blocks,
        &[("cluster", "eu1")],
        &mut Reference::default(),
    )
    .await;
    let served = Served::start(bucket, StoreConfig::new(tmp.path().join("data"))).await;
    served.store.prepare_all().await;
    let mut client = served.client().await;
    let ok = client.series(request(T0, T0 + 7_200_000)).await.unwrap();
    assert!(!ok.series.is_empty());

    // The bucket disappears (chunks and index unreadable).
    let moved = tmp.path().join("bucket-away");
    std::fs::rename(&bucket_dir, &moved).unwrap();
    std::fs::create_dir_all(&bucket_dir).unwrap();
    let err = client
        .series(request(T0, T0 + 7_200_000))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    assert!(err.message().contains("object storage"), "{err}");

    // It comes back; the same server answers again.
    std::fs::remove_dir_all(&bucket_dir).unwrap();
    std::fs::rename(&moved, &bucket_dir).unwrap();
    let again = client.series(request(T0, T0 + 7_200_000)).await.unwrap();
    assert_eq!(again.series.len(), ok.series.len());
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_block_is_skipped_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket_dir = tmp.path().join("bucket");
    let bucket = fs_bucket(&bucket_dir, &BucketMetrics::unregistered());
    let good = promtool_blocks(&tmp.path().join("good"), 2, 0);
    let bad = promtool_blocks(&tmp.path().join("bad"), 2, 3);
    let mut reference = Reference::default();
    upload(&bucket, &good, &[("cluster", "eu1")], &mut reference).await;
    upload(
        &bucket,
        &bad,
        &[("cluster", "us1")],
        &mut Reference::default(),
    )
    .await;
    // Damage the index of one block in the bucket.
    let bad_id = bad[0].file_name().unwrap().to_str().unwrap().to_string();
    let index = bucket_dir.join(&bad_id).join("index");
    let mut raw = std::fs::read(&index).unwrap();
    let n = raw.len();
    raw[n - 10] ^= 0xff;
    std::fs::write(&index, &raw).unwrap();

    let store = fs_store(&bucket_dir, &tmp.path().join("data"), |_| {}).await;
    let (_, frames) = series(&store, request(T0, T0 + 7_200_000)).await.unwrap();
    let w = warnings(&frames);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains(&bad_id), "{w:?}");
    // Every series of the good stream is there.
    let want = reference
        .series(
            &[Matcher::new(strata_model::MatchOp::RegexMatch, "__name__", ".+").unwrap()],
            T0,
            T0 + 7_200_000,
            &[],
        )
        .unwrap();
    let got: Vec<Labels> = series_labels(&frames)
        .into_iter()
        .filter(|l| l.get("cluster") == Some("eu1"))
        .collect();
    assert_eq!(
        got,
        want.iter().map(|s| s.labels.clone()).collect::<Vec<_>>()
    );
    // With the ABORT strategy the call fails instead.
    let mut abort = request(T0, T0 + 7_200_000);
    abort.partial_response_strategy = 1;
    let err = series(&store, abort).await.unwrap_err();
    assert!(err.to_string().contains(&bad_id), "{err}");
}

fn write_raw_block(
    dir: &Path,
    mint: i64,
    maxt: i64,
    thanos: ThanosMeta,
    sources: Vec<Ulid>,
) -> BlockMeta {
    let ulid = Ulid::generate();
    let mut w = BlockWriter::new(
        dir,
        BlockWriterOptions {
            time_range: Some((mint, maxt)),
            thanos: Some(thanos),
            ulid: Some(ulid),
            compaction: Some(Compaction {
                level: 1,
                sources: if sources.is_empty() {
                    vec![ulid]
                } else {
                    sources
                },
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .unwrap();
    let samples: Vec<(i64, f64)> = (mint..maxt).step_by(60_000).map(|t| (t, 1.0)).collect();
    w.add_series(&labels(&[("__name__", "m"), ("res", "raw")]), &samples)
        .unwrap();
    w.finish().unwrap()
}

/// A downsampled block: one series whose chunks are Thanos aggregate chunks (count, sum, min,
/// max, counter) with one sample per `res`.
fn write_downsampled_block(dir: &Path, mint: i64, maxt: i64, res: i64) -> BlockMeta {
    let mut w = BlockWriter::new(
        dir,
        BlockWriterOptions {
            time_range: Some((mint, maxt)),
            thanos: Some(ThanosMeta {
                downsample: Downsample { resolution: res },
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .unwrap();
    let ts: Vec<i64> = (mint..maxt)
        .step_by(res as usize)
        .map(|t| t + res - 1)
        .filter(|&t| t < maxt)
        .collect();
    let mut data = Vec::new();
    for (k, value) in [4.0, 10.0, 1.0, 3.0, 7.0].into_iter().enumerate() {
        let mut e = XorEncoder::new();
        for &t in &ts {
            e.append(t, value + k as f64 * 0.0).unwrap();
        }
        let b = e.bytes();
        strata_tsdb::encoding::put_uvarint(&mut data, b.len() as u64);
        data.push(Encoding::Xor.as_u8());
        data.extend_from_slice(&b);
    }
    w.add_series_chunks(
        &labels(&[("__name__", "m"), ("res", &res.to_string())]),
        &[(
            ts[0],
            *ts.last().unwrap(),
            RawChunk::new(Encoding::ThanosAggr, data),
        )],
    )
    .unwrap();
    w.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolution_choice_fills_gaps_from_finer_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("local");
    let bucket_dir = tmp.path().join("bucket");
    let bucket = fs_bucket(&bucket_dir, &BucketMetrics::unregistered());
    let h = 3_600_000;
    let raw = write_raw_block(&local, 0, 10 * h, ThanosMeta::default(), vec![]);
    let m5 = write_downsampled_block(&local, 0, 6 * h, RES_5M);
    let h1 = write_downsampled_block(&local, 0, 4 * h, RES_1H);
    let opts = UploadOptions {
        labels: [("cluster".to_string(), "eu1".to_string())].into(),
        source: "compactor".into(),
        require_labels: false,
        hash_func: Default::default(),
        file_concurrency: 0,
    };
    for m in [&raw, &m5, &h1] {
        upload_block(&bucket, &local.join(m.ulid.to_string()), &opts)
            .await
            .unwrap();
    }
    let store = fs_store(&bucket_dir, &tmp.path().join("data"), |_| {}).await;

    let req = |max_res: i64| SeriesRequest {
        min_time: 0,
        max_time: 10 * h - 1,
        matchers: vec![strata_storepb::convert::label_matcher(
            label_matcher::Type::Eq,
            "__name__",
            "m",
        )],
        max_resolution_window: max_res,
        aggregates: vec![Aggr::Count as i32, Aggr::Sum as i32],
        ..Default::default()
    };
    // Raw only.
    let (o, _) = series(&store, req(0)).await.unwrap();
    assert_eq!(o.blocks, vec![raw.ulid]);
    // Up to 5m: the 5m block for [0, 6h), raw for the rest.
    let (o, frames) = series(&store, req(RES_5M)).await.unwrap();
    assert_eq!(o.blocks, vec![m5.ulid, raw.ulid]);
    let ls = series_labels(&frames);
    assert_eq!(ls.len(), 2, "{ls:?}");
    // Up to 1h: 1h for [0, 4h), 5m for [4h, 6h), raw for [6h, 10h).
    let (o, frames) = series(&store, req(RES_1H)).await.unwrap();
    assert_eq!(o.blocks, vec![h1.ulid, m5.ulid, raw.ulid]);
    for f in &frames {
        let Some(series_response::Result::Series(s)) = &f.result else {
            continue;
        };
        let l = strata_storepb::convert::labels_to_model(s.labels.clone());
        for c in &s.chunks {
            if l.get("res") == Some("raw") {
                assert!(c.raw.is_some() && c.count.is_none());
            } else {
                // The requested aggregates, and only those.
                assert!(c.raw.is_none() && c.min.is_none() && c.max.is_none());
                let count = c.count.as_ref().unwrap().to_raw().unwrap();
                let vals: Vec<f64> = count.xor_iter().unwrap().map(|s| s.unwrap().1).collect();
                assert!(
                    !vals.is_empty() && vals.iter().all(|&v| v == 4.0),
                    "{vals:?}"
                );
                let sum = c.sum.as_ref().unwrap().to_raw().unwrap();
                assert!(sum.xor_iter().unwrap().all(|s| s.unwrap().1 == 10.0));
            }
        }
    }
    // A window inside the 1h block's range touches only that block.
    let mut inner = req(RES_1H);
    inner.min_time = h;
    inner.max_time = 2 * h;
    let (o, _) = series(&store, inner).await.unwrap();
    assert_eq!(o.blocks, vec![h1.ulid]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_filters_count_every_state() {
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("local");
    let bucket_dir = tmp.path().join("bucket");
    let bucket = fs_bucket(&bucket_dir, &BucketMetrics::unregistered());
    let h = 3_600_000;
    let up = |ext: &'static str, source: &'static str| UploadOptions {
        labels: [("cluster".to_string(), ext.to_string())].into(),
        source: source.into(),
        require_labels: false,
        hash_func: Default::default(),
        file_concurrency: 0,
    };
    // Two source blocks and a compacted block covering both: the sources are duplicates.
    let s1 = write_raw_block(&local, 0, 2 * h, ThanosMeta::default(), vec![]);
    let s2 = write_raw_block(&local, 2 * h, 4 * h, ThanosMeta::default(), vec![]);
    let c = write_raw_block(
        &local,
        0,
        4 * h,
        ThanosMeta::default(),
        vec![s1.ulid, s2.ulid],
    );
    for m in [&s1, &s2, &c] {
        upload_block(
            &bucket,
            &local.join(m.ulid.to_string()),
            &up("eu1", "compactor"),
        )
        .await
        .unwrap();
    }
    // A block of another cluster (label-excluded), one far in the past (time-excluded), one
    // marked for deletion long ago.
    let other = write_raw_block(&local, 0, 2 * h, ThanosMeta::default(), vec![]);
    upload_block(
        &bucket,
        &local.join(other.ulid.to_string()),
        &up("us1", "compactor"),
    )
    .await
    .unwrap();
    let old = write_raw_block(&local, -100 * h, -98 * h, ThanosMeta::default(), vec![]);
    upload_block(
        &bucket,
        &local.join(old.ulid.to_string()),
        &up("eu1", "compactor"),
    )
    .await
    .unwrap();
    let gone = write_raw_block(&local, 10 * h, 12 * h, ThanosMeta::default(), vec![]);
    upload_block(
        &bucket,
        &local.join(gone.ulid.to_string()),
        &up("eu1", "compactor"),
    )
    .await
    .unwrap();
    bucket
        .upload(
            &format!("{}/deletion-mark.json", gone.ulid),
            format!(
                "{{\"id\":\"{}\",\"version\":1,\"deletion_time\":1000}}",
                gone.ulid
            )
            .into(),
        )
        .await
        .unwrap();
    // A fresh block from a sidecar (too fresh under a consistency delay), and a partial
    // upload, and a corrupt meta.
    let fresh = write_raw_block(&local, 20 * h, 22 * h, ThanosMeta::default(), vec![]);
    upload_block(
        &bucket,
        &local.join(fresh.ulid.to_string()),
        &up("eu1", "sidecar"),
    )
    .await
    .unwrap();
    let partial = Ulid::generate();
    bucket
        .upload(&format!("{partial}/index"), "x".into())
        .await
        .unwrap();
    let broken = Ulid::generate();
    bucket
        .upload(&format!("{broken}/meta.json"), "{not json".into())
        .await
        .unwrap();

    let mut registry = prometheus_client::registry::Registry::default();
    let mut config = StoreConfig::new(tmp.path().join("data"));
    config.filter.min_time = "1970-01-01T00:00:00Z".parse().unwrap();
    config.filter.relabel =
        parse_relabel_configs("- action: keep\n  source_labels: [cluster]\n  regex: eu1\n")
            .unwrap();
    config.filter.consistency_delay = Duration::from_secs(600);
    let store = Arc::new(BucketStore::new(bucket, config, Some(&mut registry)).unwrap());
    let report = store.sync_blocks().await.unwrap();
    let st = |s: &str| report.states.get(s).copied().unwrap_or(0);
    assert_eq!(store.block_ids(), vec![c.ulid]);
    assert_eq!(st("loaded"), 1);
    assert_eq!(st("duplicate"), 2);
    assert_eq!(st("label-excluded"), 1);
    assert_eq!(st("time-excluded"), 1);
    assert_eq!(st("marked-for-deletion"), 1);
    assert_eq!(st("too-fresh"), 1);
    assert_eq!(st("no-meta-json"), 1);
    assert_eq!(st("corrupted-meta-json"), 1);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for line in [
        "thanos_blocks_meta_synced{state=\"loaded\"} 1",
        "thanos_blocks_meta_synced{state=\"duplicate\"} 2",
        "thanos_blocks_meta_synced{state=\"too-fresh\"} 1",
        "thanos_bucket_store_blocks_loaded 1",
        "thanos_blocks_meta_syncs_total 1",
    ] {
        assert!(text.contains(line), "{line} missing in:\n{text}");
    }
    // Info advertises the block's range and labels, clamped by --min-time.
    let info = store.info();
    let si = info.store.unwrap();
    assert_eq!((si.min_time, si.max_time), (0, 4 * h));
    assert_eq!(info.label_sets.len(), 1);
    assert_eq!(info.component_type, "store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_cache_serves_repeated_queries_and_hints_report_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket_dir = tmp.path().join("bucket");
    let bucket = fs_bucket(&bucket_dir, &BucketMetrics::unregistered());
    let blocks = promtool_blocks(&tmp.path().join("blocks"), 3, 0);
    let mut reference = Reference::default();
    upload(&bucket, &blocks, &[("cluster", "eu1")], &mut reference).await;
    let served = Served::start(bucket, StoreConfig::new(tmp.path().join("data"))).await;
    served.store.prepare_all().await;
    let mut client = served.client().await;
    let mut req = request(T0, T0 + 3 * 3_600_000);
    req.hints = Some(pack_any(&hintspb::SeriesRequestHints {
        block_matchers: vec![],
        enable_query_stats: true,
    }));
    let stats = |r: &strata_store::testing::SeriesResult| -> hintspb::SeriesResponseHints {
        unpack_any(&r.hints[0]).unwrap()
    };
    let first = client.series(req.clone()).await.unwrap();
    let h1 = stats(&first);
    assert_eq!(h1.queried_blocks.len(), blocks.len());
    let q1 = h1.query_stats.unwrap();
    assert!(
        q1.postings_fetched > 0 && q1.series_fetched > 0 && q1.chunks_fetched > 0,
        "{q1:?}"
    );
    let second = client.series(req.clone()).await.unwrap();
    let q2 = stats(&second).query_stats.unwrap();
    assert_eq!(
        q2.postings_fetched, 0,
        "postings come from the cache: {q2:?}"
    );
    assert_eq!(q2.series_fetched, 0, "series come from the cache: {q2:?}");
    // A hit counts the size of the index entry, whatever form the cache keeps it in, so byte
    // limits and size metrics mean what they mean in Thanos.
    assert_eq!(
        (q2.series_touched, q2.series_touched_size_sum),
        (q1.series_touched, q1.series_touched_size_sum),
        "{q1:?} {q2:?}"
    );
    // Cached series entries are kept resolved (labels and chunk metas decoded): what they
    // give is what the index gave, for this range and for a narrower one.
    assert_eq!(second.series, first.series);
    let narrow = request(T0 + 3_600_000, T0 + 2 * 3_600_000);
    let warm = client.series(narrow.clone()).await.unwrap();
    let cold_store = Served::start(
        fs_bucket(&bucket_dir, &BucketMetrics::unregistered()),
        StoreConfig::new(tmp.path().join("data-cold")),
    )
    .await;
    cold_store.store.prepare_all().await;
    let cold = cold_store.client().await.series(narrow).await.unwrap();
    assert!(!cold.series.is_empty());
    assert!(cold.series.len() <= first.series.len());
    assert_eq!(warm.series, cold.series);
    let text = served.metrics_text();
    assert!(
        text.contains("thanos_store_index_cache_hits_total{item_type=\"Postings\"}"),
        "{text}"
    );
    assert!(text.contains("thanos_bucket_store_series_data_fetched_bucket"));

    // Block matchers in hints select blocks by ULID.
    let id = blocks[0].file_name().unwrap().to_str().unwrap().to_string();
    req.hints = Some(pack_any(&hintspb::SeriesRequestHints {
        block_matchers: vec![matcher_from_model(&Matcher::equal("__block_id", &id))],
        enable_query_stats: false,
    }));
    let one = client.series(req).await.unwrap();
    let h = stats(&one);
    assert_eq!(h.queried_blocks.len(), 1);
    assert_eq!(h.queried_blocks[0].id, id);
    // Samples of what is returned still decode.
    for (_, chunks) in &one.series {
        decode_samples(chunks, i64::MIN, i64::MAX).unwrap();
    }
    run_acceptance(&mut client, &reference).await.unwrap();
    served.stop().await;
}

/// A batched Series call whose selection fits its first output batch reads each block's
/// chunks in one round: the last batch is not cut to whole frames (100 series in frames of
/// 64 were read as 64, then 36, in two reads of the block's chunk file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selection_within_the_first_batch_reads_its_chunks_once() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket_dir = tmp.path().join("bucket");
    let metrics = BucketMetrics::unregistered();
    let bucket = fs_bucket(&bucket_dir, &metrics);
    let mut w = BlockWriter::new(&tmp.path().join("raw"), BlockWriterOptions::default()).unwrap();
    let samples: Vec<(i64, f64)> = (0..4).map(|s| (T0 + s * 60_000, s as f64)).collect();
    for i in 0..100 {
        let l = labels(&[("__name__", "m"), ("i", &format!("{i:03}"))]);
        w.add_series(&l, &samples).unwrap();
    }
    let meta = w.finish().unwrap();
    let block = tmp.path().join("raw").join(meta.ulid.to_string());
    upload(
        &bucket,
        &[block],
        &[("cluster", "eu1")],
        &mut Reference::default(),
    )
    .await;
    let store = Arc::new(
        BucketStore::new(
            bucket.clone(),
            StoreConfig::new(tmp.path().join("data")),
            None,
        )
        .unwrap(),
    );
    store.sync_blocks().await.unwrap();
    store.prepare_all().await;
    let req = SeriesRequest {
        response_batch_size: 64,
        ..request(T0, T0 + 3_600_000)
    };
    // The first call also reads postings and series entries; the second finds them cached.
    series(&store, req.clone()).await.unwrap();
    let before = metrics.operations(bucket.name(), "get_range");
    let (outcome, frames) = series(&store, req).await.unwrap();
    assert_eq!(outcome.series, 100);
    assert_eq!(frames.len(), 2, "frames of 64 and 36 series");
    assert_eq!(
        metrics.operations(bucket.name(), "get_range") - before,
        1,
        "one read of the chunk file"
    );
}

/// The caching bucket's chunk cache (`type: IN-MEMORY`) answers every acceptance query as
/// the bucket does: with subranges so small that most chunks span several (copied out of
/// them), with at most two bucket reads per file, and with a cache too small to hold one
/// query's chunks (evicting as it goes). Warm, the same queries read no chunk from the
/// bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chunk_cache_answers_as_the_bucket_does() {
    use strata_store::chunk_cache::ChunkCacheConfig;
    let tmp = tempfile::tempdir().unwrap();
    let bucket_dir = tmp.path().join("bucket");
    let metrics = BucketMetrics::unregistered();
    let bucket = fs_bucket(&bucket_dir, &metrics);
    let blocks = promtool_blocks(&tmp.path().join("blocks"), 3, 0);
    let mut reference = Reference::default();
    upload(&bucket, &blocks, &[("cluster", "eu1")], &mut reference).await;
    for (name, cfg) in [
        ("default", ChunkCacheConfig::default()),
        (
            "97-byte subranges, two reads",
            ChunkCacheConfig {
                subrange_size: 97,
                max_get_range_requests: 2,
                ..ChunkCacheConfig::default()
            },
        ),
        (
            "8 KiB cache",
            ChunkCacheConfig {
                max_size: 8 << 10,
                max_item_size: 4 << 10,
                subrange_size: 1000,
                ..ChunkCacheConfig::default()
            },
        ),
    ] {
        let mut config = StoreConfig::new(tmp.path().join(format!("data-{}", name.len())));
        config.chunk_cache = Some(cfg);
        let served = Served::start(bucket.clone(), config).await;
        let mut client = served.client().await;
        run_acceptance(&mut client, &reference)
            .await
            .unwrap_or_else(|e| panic!("{name}, cold: {e}"));
        let before = metrics.operations(bucket.name(), "get_range");
        run_acceptance(&mut client, &reference)
            .await
            .unwrap_or_else(|e| panic!("{name}, warm: {e}"));
        let reads = metrics.operations(bucket.name(), "get_range") - before;
        let cache = served.store.chunk_cache().unwrap().in_memory().unwrap();
        if name == "8 KiB cache" {
            assert!(cache.size() <= 8 << 10, "{name}: {}", cache.size());
            assert!(reads > 0, "{name}: a cache this small cannot hold a query");
        } else {
            assert_eq!(reads, 0, "{name}: warm queries read from the cache only");
            assert!(!cache.is_empty());
        }
        let text = served.metrics_text();
        assert!(
            text.contains("thanos_store_bucket_cache_getrange_fetched_bytes_total{origin=\"cache\",config=\"chunks\"}"),
            "{text}"
        );
        served.stop().await;
    }
}

/// With the caching bucket's metafile TTLs, a block sync trusts a deletion mark's absence
/// for `metafile_doesnt_exist_ttl` instead of reading it at every sync: no mark reads on the
/// second sync, and a mark added meanwhile is seen only once the TTL has passed. Without
/// TTLs every sync reads every mark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_marks_are_trusted_for_the_metafile_ttls() {
    use strata_store::metrics::StoreMetrics;
    use strata_store::sync::{FilterConfig, MetaSyncer};
    let tmp = tempfile::tempdir().unwrap();
    let metrics = BucketMetrics::unregistered();
    let bucket = fs_bucket(&tmp.path().join("bucket"), &metrics);
    let local = tmp.path().join("local");
    let h = 3_600_000;
    let m = write_raw_block(&local, 0, 2 * h, ThanosMeta::default(), vec![]);
    upload_block(
        &bucket,
        &local.join(m.ulid.to_string()),
        &UploadOptions {
            labels: [("cluster".to_string(), "eu1".to_string())].into(),
            source: "sidecar".into(),
            require_labels: false,
            hash_func: Default::default(),
            file_concurrency: 0,
        },
    )
    .await
    .unwrap();
    let syncer = |ttls| {
        MetaSyncer::new(
            bucket.clone(),
            FilterConfig {
                ignore_deletion_marks_delay: Duration::ZERO,
                mark_ttls: ttls,
                ..FilterConfig::default()
            },
            4,
            StoreMetrics::unregistered(),
        )
    };
    let gets = || metrics.operations(bucket.name(), "get");
    let mut cached = syncer(Some((
        Duration::from_secs(3600),
        Duration::from_millis(1500),
    )));
    let mut plain = syncer(None);
    assert_eq!(cached.sync().await.unwrap().metas.len(), 1);
    assert_eq!(plain.sync().await.unwrap().metas.len(), 1);
    let before = gets();
    cached.sync().await.unwrap();
    assert_eq!(gets(), before, "no mark read while its absence is trusted");
    plain.sync().await.unwrap();
    assert_eq!(gets(), before + 1, "one mark read per sync without TTLs");

    strata_block::markers::mark_for_deletion(&bucket, m.ulid, "test")
        .await
        .unwrap();
    // Past the mark's second (the delay compares whole seconds) and the 1.5 s TTL.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert!(plain.sync().await.unwrap().metas.is_empty(), "seen at once");
    // The absence was read more than 1.5 s ago: read again, and the mark is seen.
    assert!(cached.sync().await.unwrap().metas.is_empty());
    // Found marks are trusted for the content TTL: no read on the next sync.
    let before = gets();
    assert!(cached.sync().await.unwrap().metas.is_empty());
    assert_eq!(gets(), before);
}
