//! The index cache in a real memcached (Debian's `memcached`): gateways answer as the bucket
//! does through it, share it (what one gateway cached another reads), survive what a shared
//! cache can hold (values that are not ours, damaged or cut), and a memcached that is gone
//! only costs the cache.

mod common;

use std::time::{Duration, Instant};

use common::*;
use strata_objstore::BucketMetrics;
use strata_store::StoreConfig;
use strata_store::cache::{IndexCacheSpec, ItemType};
use strata_store::testing::{Reference, run_acceptance};
use strata_testutil::memcached::MemcachedServer;

fn memcached_spec(address: &str) -> IndexCacheSpec {
    IndexCacheSpec::from_yaml(&format!(
        "type: MEMCACHED\nconfig:\n  addresses: [{address}]\n  timeout: 2s\n"
    ))
    .unwrap()
}

fn settle(m: &MemcachedServer) -> u64 {
    m.settled_items(Duration::from_secs(20)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_share_a_memcached_index_cache_and_answer_as_the_bucket_does() {
    let mut mc = MemcachedServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let metrics = BucketMetrics::unregistered();
    let bucket = fs_bucket(&tmp.path().join("bucket"), &metrics);
    let blocks = promtool_blocks(&tmp.path().join("blocks"), 3, 0);
    let mut reference = Reference::default();
    upload(&bucket, &blocks, &[("cluster", "eu1")], &mut reference).await;

    let address = mc.address();
    let start = |name: &str| {
        let mut config = StoreConfig::new(tmp.path().join(name));
        config.index_cache = memcached_spec(&address);
        Served::start(bucket.clone(), config)
    };

    // The first gateway fills the cache.
    let a = start("a").await;
    run_acceptance(&mut a.client().await, &reference)
        .await
        .expect("first gateway, cold");
    let items = settle(&mc);
    assert!(items > 0, "nothing was cached");
    let keys = mc.keys().unwrap();
    assert!(keys.iter().all(|k| k.starts_with("strata1:")), "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("strata1:P:")));
    assert!(keys.iter().any(|k| k.starts_with("strata1:S:")));
    let text = a.metrics_text();
    assert!(
        text.contains("thanos_memcached_operations_total{name=\"index-cache\",operation=\"set\"}"),
        "{text}"
    );
    a.stop().await;

    // A second gateway, with nothing of its own in memory, finds every item the same queries
    // need in memcached.
    let b = start("b").await;
    run_acceptance(&mut b.client().await, &reference)
        .await
        .expect("second gateway, from the shared cache");
    let remote = b.store.cache().remote().expect("memcached backend");
    for t in [ItemType::Postings, ItemType::Series] {
        let (requests, hits) = remote.stats(t);
        assert!(requests > 0, "{t:?}");
        assert_eq!(
            hits, requests,
            "{t:?}: every item was cached by the first gateway"
        );
    }
    let text = b.metrics_text();
    assert!(
        text.contains("thanos_store_index_cache_hits_total{item_type=\"Series\"}"),
        "{text}"
    );
    b.stop().await;

    // Values that are not what we stored: each key overwritten with damaged, cut or foreign
    // bytes. Answers stay right; the values are counted as rejected and stored again.
    for (i, k) in keys.iter().enumerate() {
        let value: &[u8] = match i % 3 {
            0 => b"SIC1\x00\x00\x00\x00not the crc",
            1 => b"SIC",
            _ => b"\x0a\x03foreign value a Thanos gateway could have written",
        };
        mc.set(k, value).unwrap();
    }
    let c = start("c").await;
    run_acceptance(&mut c.client().await, &reference)
        .await
        .expect("answers with every cached value damaged");
    let text = c.metrics_text();
    let rejected: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("strata_index_cache_remote_rejected_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(rejected > 0.0, "{text}");
    // The rejected values were replaced by good ones: a second run hits every item.
    settle(&mc);
    let remote = c.store.cache().remote().unwrap();
    let before = remote.stats(ItemType::Series);
    run_acceptance(&mut c.client().await, &reference)
        .await
        .expect("answers from the repaired cache");
    let after = remote.stats(ItemType::Series);
    assert!(after.0 > before.0);
    assert_eq!(
        after.1 - before.1,
        after.0 - before.0,
        "{before:?} {after:?}"
    );
    c.stop().await;

    // memcached gone: the gateway answers from the bucket, each get a failure, not an error.
    mc.kill();
    let d = start("d").await;
    let t0 = Instant::now();
    run_acceptance(&mut d.client().await, &reference)
        .await
        .expect("answers without memcached");
    assert!(t0.elapsed() < Duration::from_secs(60));
    let text = d.metrics_text();
    assert!(
        text.contains("thanos_memcached_operation_failures_total{name=\"index-cache\",operation=\"getmulti\",reason=\"other\"}"),
        "{text}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enabled_items_keep_the_other_items_out_of_memcached() {
    let mc = MemcachedServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let bucket = fs_bucket(&tmp.path().join("bucket"), &BucketMetrics::unregistered());
    let blocks = promtool_blocks(&tmp.path().join("blocks"), 2, 1);
    let mut reference = Reference::default();
    upload(&bucket, &blocks, &[("cluster", "eu1")], &mut reference).await;
    let mut config = StoreConfig::new(tmp.path().join("data"));
    config.index_cache = IndexCacheSpec::from_yaml(&format!(
        "type: MEMCACHED\nconfig:\n  addresses: [{}]\nenabled_items: [Postings]\n",
        mc.address()
    ))
    .unwrap();
    let s = Served::start(bucket.clone(), config).await;
    run_acceptance(&mut s.client().await, &reference)
        .await
        .unwrap();
    settle(&mc);
    let keys = mc.keys().unwrap();
    assert!(!keys.is_empty());
    assert!(keys.iter().all(|k| k.starts_with("strata1:P:")), "{keys:?}");
    s.stop().await;
}
