//! The Store API acceptance suite against the store gateway, over blocks made by real
//! Prometheus (promtool 2.42) in a FILESYSTEM bucket and in a real S3 server (moto): results
//! must equal reading the same blocks locally.

mod common;

use common::*;
use strata_objstore::{Bucket, BucketMetrics};
use strata_store::StoreConfig;
use strata_store::chunk_cache::ChunkCacheConfig;
use strata_store::testing::{Reference, run_acceptance};
use strata_testutil::moto::MotoServer;

/// Two streams (different external labels, different data), several blocks each.
async fn fill(bucket: &Bucket, work: &std::path::Path) -> Reference {
    let mut reference = Reference::default();
    let a = promtool_blocks(&work.join("a"), 5, 0);
    let b = promtool_blocks(&work.join("b"), 3, 7);
    upload(
        bucket,
        &a,
        &[("cluster", "eu1"), ("replica", "0")],
        &mut reference,
    )
    .await;
    upload(
        bucket,
        &b,
        &[("cluster", "us1"), ("replica", "1")],
        &mut reference,
    )
    .await;
    reference
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acceptance_on_filesystem() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = fs_bucket(&tmp.path().join("bucket"), &BucketMetrics::unregistered());
    let reference = fill(&bucket, tmp.path()).await;
    let served = Served::start(bucket, StoreConfig::new(tmp.path().join("data"))).await;
    let mut client = served.client().await;
    let report = run_acceptance(&mut client, &reference).await.unwrap();
    assert!(report.cases > 40, "{report:?}");
    assert!(report.series_compared > 100, "{report:?}");

    // The same, with index-headers loaded lazily and released, and a matcher cache of three
    // (the suite's regex matchers come and go from it).
    let mut config = StoreConfig::new(tmp.path().join("data-lazy"));
    config.lazy_index_header = true;
    config.idle_timeout = std::time::Duration::from_millis(1);
    config.matcher_cache_size = 3;
    let bucket = fs_bucket(&tmp.path().join("bucket"), &BucketMetrics::unregistered());
    let lazy = Served::start(bucket, config).await;
    let mut client = lazy.client().await;
    run_acceptance(&mut client, &reference).await.unwrap();
    let loaded = lazy.store.loaded_headers();
    assert!(loaded > 0);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_eq!(lazy.store.release_idle(), loaded);
    assert_eq!(lazy.store.loaded_headers(), 0);
    // Released headers load again on the next query.
    run_acceptance(&mut client, &reference).await.unwrap();
    assert!(lazy.store.matcher_cache().hits() > 0);
    assert_eq!(lazy.store.matcher_cache().len(), 3);
    lazy.stop().await;

    // An idle timeout of 0 never releases (as Thanos' flag).
    let mut config = StoreConfig::new(tmp.path().join("data-never"));
    config.lazy_index_header = true;
    config.idle_timeout = std::time::Duration::ZERO;
    let bucket = fs_bucket(&tmp.path().join("bucket"), &BucketMetrics::unregistered());
    let never = Served::start(bucket, config).await;
    let mut client = never.client().await;
    run_acceptance(&mut client, &reference).await.unwrap();
    assert!(never.store.loaded_headers() > 0);
    assert_eq!(never.store.release_idle(), 0);
    never.stop().await;
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acceptance_on_s3() {
    let moto = MotoServer::start().unwrap();
    moto.create_bucket("store-acceptance").unwrap();
    let bucket = Bucket::from_yaml(
        &moto.objstore_yml("store-acceptance"),
        &BucketMetrics::unregistered(),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let reference = fill(&bucket, tmp.path()).await;
    let served = Served::start(bucket.clone(), StoreConfig::new(tmp.path().join("data"))).await;
    let mut client = served.client().await;
    let report = run_acceptance(&mut client, &reference).await.unwrap();
    assert!(report.cases > 40, "{report:?}");
    served.stop().await;
    // The caching bucket's chunk cache over real S3 reads: cold, then warm from the cache
    // (small subranges, so that chunks span several and misses are joined into requests).
    let mut config = StoreConfig::new(tmp.path().join("data-cached"));
    config.chunk_cache = Some(ChunkCacheConfig {
        subrange_size: 1000,
        max_get_range_requests: 2,
        ..ChunkCacheConfig::default()
    });
    let cached = Served::start(bucket, config).await;
    let mut client = cached.client().await;
    for round in ["cold", "warm"] {
        let report = run_acceptance(&mut client, &reference)
            .await
            .unwrap_or_else(|e| panic!("{round}: {e}"));
        assert!(report.cases > 40, "{report:?}");
    }
    let text = cached.metrics_text();
    let hits = text
        .lines()
        .find_map(|l| l.strip_prefix("thanos_cache_inmemory_hits_total{name=\"caching-bucket\"} "))
        .expect("the hit counter is exported");
    assert!(hits.parse::<f64>().unwrap() > 0.0, "{text}");
    cached.stop().await;
}

/// A block whose `meta.json` understates its largest chunk makes the gateway's first reads
/// stop short of some chunks: they are read again at their real length (counted in
/// `thanos_bucket_store_chunk_refetches`), and the answers are still exact. A chunk whose
/// bytes are damaged fails the call with an error naming the block and the checksum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_chunk_reads_are_completed_and_damaged_chunks_named() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket_dir = tmp.path().join("bucket");
    let bucket = fs_bucket(&bucket_dir, &BucketMetrics::unregistered());
    let mut reference = Reference::default();
    let blocks = promtool_blocks(&tmp.path().join("a"), 3, 0);
    upload(&bucket, &blocks, &[("cluster", "eu1")], &mut reference).await;
    for b in &blocks {
        let dir = bucket_dir.join(b.file_name().unwrap());
        let mut meta = strata_tsdb::BlockMeta::read_from_dir(&dir).unwrap();
        let thanos = meta.thanos.get_or_insert_with(Default::default);
        thanos.index_stats.chunk_max_size = 12;
        meta.write_to_dir(&dir).unwrap();
    }
    // Through the chunk cache too: the estimate is short of whole subranges, so chunks are
    // completed by the same exact re-reads.
    let cached_config = |dir: &str| {
        let mut c = StoreConfig::new(tmp.path().join(dir));
        c.chunk_cache = Some(ChunkCacheConfig {
            subrange_size: 50,
            ..ChunkCacheConfig::default()
        });
        c
    };
    let cached = Served::start(bucket.clone(), cached_config("data-cached")).await;
    let report = run_acceptance(&mut cached.client().await, &reference)
        .await
        .unwrap();
    assert!(report.series_compared > 100, "{report:?}");
    cached.stop().await;
    let served = Served::start(bucket.clone(), StoreConfig::new(tmp.path().join("data"))).await;
    let mut client = served.client().await;
    let report = run_acceptance(&mut client, &reference).await.unwrap();
    assert!(report.series_compared > 100, "{report:?}");
    let refetches: f64 = served
        .metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix("thanos_bucket_store_chunk_refetches_total "))
        .expect("the refetch counter is exported")
        .parse()
        .unwrap();
    assert!(refetches > 0.0, "no chunk was read again");

    // Damage one byte in the middle of the first block's chunk data (past the segment
    // header and the first chunk's length and encoding).
    let id = blocks[0].file_name().unwrap().to_str().unwrap().to_string();
    let seg = bucket_dir.join(&id).join("chunks").join("000001");
    let mut raw = std::fs::read(&seg).unwrap();
    raw[20] ^= 0x55;
    std::fs::write(&seg, &raw).unwrap();
    let mut req = strata_storepb::thanos::SeriesRequest {
        min_time: i64::MIN,
        max_time: i64::MAX,
        matchers: vec![strata_storepb::convert::matcher_from_model(
            &strata_model::Matcher::new(strata_model::MatchOp::RegexMatch, "__name__", ".+")
                .unwrap(),
        )],
        ..Default::default()
    };
    req.partial_response_strategy = 1;
    let err = client
        .series(req.clone())
        .await
        .expect_err("a damaged chunk was served");
    assert!(err.message().contains("CRC32C mismatch"), "{err}");
    assert!(err.message().contains(&id), "{err}");
    served.stop().await;
    // A gateway with the chunk cache checks what it caches the same way.
    let cached = Served::start(bucket.clone(), cached_config("data-cached-2")).await;
    let err = cached
        .client()
        .await
        .series(req.clone())
        .await
        .expect_err("a damaged chunk was served from the cache path");
    assert!(err.message().contains("CRC32C mismatch"), "{err}");
    cached.stop().await;
    // A first chunk whose length is damaged to claim more than any chunk can hold (its
    // first read stops short, as above): named as corrupt, with and without the cache, and
    // no read of the claimed length is attempted.
    // 2^62 bytes: no overflow in the arithmetic, a read far past the file's end.
    let mut huge = vec![0x80; 8];
    huge.push(0x40);
    raw[8..17].copy_from_slice(&huge);
    std::fs::write(&seg, &raw).unwrap();
    for (dir, cache) in [("data-len", false), ("data-len-cached", true)] {
        let config = if cache {
            cached_config(dir)
        } else {
            StoreConfig::new(tmp.path().join(dir))
        };
        let served = Served::start(bucket.clone(), config).await;
        let err = served
            .client()
            .await
            .series(req.clone())
            .await
            .expect_err("a chunk with a damaged length was served");
        assert!(err.message().contains(&id), "{err}");
        assert!(err.message().contains("length"), "{err}");
        served.stop().await;
    }
}
