//! The Store API acceptance suite against the store gateway, over blocks made by real
//! Prometheus (promtool 2.42) in a FILESYSTEM bucket and in a real S3 server (moto): results
//! must equal reading the same blocks locally.

mod common;

use common::*;
use strata_objstore::{Bucket, BucketMetrics};
use strata_store::StoreConfig;
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

    // The same, with index-headers loaded lazily and released.
    let mut config = StoreConfig::new(tmp.path().join("data-lazy"));
    config.lazy_index_header = true;
    config.idle_timeout = std::time::Duration::ZERO;
    let bucket = fs_bucket(&tmp.path().join("bucket"), &BucketMetrics::unregistered());
    let lazy = Served::start(bucket, config).await;
    let mut client = lazy.client().await;
    run_acceptance(&mut client, &reference).await.unwrap();
    let loaded = lazy.store.loaded_headers();
    assert!(loaded > 0);
    assert_eq!(lazy.store.release_idle(), loaded);
    assert_eq!(lazy.store.loaded_headers(), 0);
    // Released headers load again on the next query.
    run_acceptance(&mut client, &reference).await.unwrap();
    lazy.stop().await;
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
    let served = Served::start(bucket, StoreConfig::new(tmp.path().join("data"))).await;
    let mut client = served.client().await;
    let report = run_acceptance(&mut client, &reference).await.unwrap();
    assert!(report.cases > 40, "{report:?}");
    served.stop().await;
}
