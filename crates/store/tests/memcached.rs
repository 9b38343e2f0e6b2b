//! The index cache and the caching bucket's chunk cache in a real memcached (Debian's
//! `memcached`): gateways answer as the bucket does through them, share them (what one
//! gateway cached another reads), survive what a shared cache can hold (values that are not
//! ours, damaged, cut or of the wrong length), and a memcached that is gone only costs the
//! cache.

mod common;

use std::time::{Duration, Instant};

use common::*;
use strata_objstore::BucketMetrics;
use strata_store::StoreConfig;
use strata_store::cache::{IndexCacheSpec, ItemType};
use strata_store::chunk_cache::{CachingBucketConfig, ChunkCacheConfig};
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

/// `--store.caching-bucket.config` with `type: MEMCACHED` (small subranges, so that chunks
/// often span two), with the index cache in memcached too.
fn chunk_cache_config(address: &str) -> ChunkCacheConfig {
    match CachingBucketConfig::from_yaml(&format!(
        "type: MEMCACHED\nconfig:\n  addresses: [{address}]\n  timeout: 2s\n\
         chunk_subrange_size: 500\nmax_chunks_get_range_requests: 2\n"
    ))
    .unwrap()
    {
        CachingBucketConfig::Cache(c) => c,
        other => panic!("{other:?}"),
    }
}

/// A value with a good envelope (magic and checksum) but a length no subrange of it can have.
fn well_formed_but_wrong_length() -> Vec<u8> {
    let body = b"ten bytes!";
    let mut v = b"SCC1".to_vec();
    v.extend_from_slice(&crc32c::crc32c(body).to_be_bytes());
    v.extend_from_slice(body);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_share_chunk_subranges_in_memcached() {
    let mut mc = MemcachedServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let metrics = BucketMetrics::unregistered();
    let bucket = fs_bucket(&tmp.path().join("bucket"), &metrics);
    let blocks = promtool_blocks(&tmp.path().join("blocks"), 3, 2);
    let mut reference = Reference::default();
    upload(&bucket, &blocks, &[("cluster", "eu1")], &mut reference).await;

    let address = mc.address();
    // One data directory for all: a later gateway finds its index-headers on disk, so that
    // every bucket read it makes is one a cache should have saved.
    let start = || {
        let mut config = StoreConfig::new(tmp.path().join("data"));
        config.index_cache = memcached_spec(&address);
        config.chunk_cache = Some(chunk_cache_config(&address));
        Served::start(bucket.clone(), config)
    };

    let a = start().await;
    run_acceptance(&mut a.client().await, &reference)
        .await
        .expect("first gateway, cold");
    settle(&mc);
    let keys = mc.keys().unwrap();
    let subranges: Vec<&String> = keys
        .iter()
        .filter(|k| k.starts_with("strata1:C:"))
        .collect();
    assert!(!subranges.is_empty(), "{keys:?}");
    assert!(
        subranges.iter().all(|k| k.contains(":500:")),
        "{subranges:?}"
    );
    assert!(keys.iter().any(|k| k.starts_with("strata1:A:")), "{keys:?}");
    let text = a.metrics_text();
    for want in [
        "thanos_memcached_operations_total{name=\"caching-bucket\",operation=\"set\"}",
        "thanos_memcached_operations_total{name=\"index-cache\",operation=\"set\"}",
        "thanos_store_bucket_cache_getrange_fetched_bytes_total{origin=\"bucket\",config=\"chunks\"}",
        "thanos_cache_memcached_requests_total{name=\"caching-bucket\"}",
    ] {
        assert!(text.contains(want), "{want}\n{text}");
    }
    // Both clients share the families: each is exposed once.
    assert_eq!(
        text.matches("# TYPE thanos_memcached_operations counter")
            .count(),
        1,
        "{text}"
    );
    a.stop().await;

    // A second gateway reads every chunk subrange it needs from memcached, and nothing at
    // all from the bucket's files.
    let b = start().await;
    let reads_before = metrics.operations(bucket.name(), "get_range");
    run_acceptance(&mut b.client().await, &reference)
        .await
        .expect("second gateway, from memcached");
    let remote = b.store.chunk_cache().unwrap().remote().expect("memcached");
    let (requests, hits) = remote.stats();
    assert!(requests > 0);
    assert_eq!(
        hits, requests,
        "every subrange was cached by the first gateway"
    );
    assert_eq!(
        metrics.operations(bucket.name(), "get_range") - reads_before,
        0,
        "bucket reads with every item cached"
    );
    b.stop().await;

    // Every subrange and size damaged, cut, foreign or of the wrong length: the answers stay
    // right (no chunk fails its CRC), the values are rejected and stored again.
    for (i, k) in keys
        .iter()
        .filter(|k| !k.starts_with("strata1:P:") && !k.starts_with("strata1:S:"))
        .enumerate()
    {
        let value: Vec<u8> = match i % 4 {
            0 => b"SCC1\x00\x00\x00\x00not the crc".to_vec(),
            1 => b"SCC".to_vec(),
            2 => b"\x0a\x03foreign value".to_vec(),
            _ => well_formed_but_wrong_length(),
        };
        mc.set(k, &value).unwrap();
    }
    let c = start().await;
    run_acceptance(&mut c.client().await, &reference)
        .await
        .expect("answers with every cached subrange damaged");
    let text = c.metrics_text();
    let rejected: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("strata_chunk_cache_remote_rejected_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(
        rejected >= subranges.len() as f64,
        "{rejected} < {}\n{text}",
        subranges.len()
    );
    settle(&mc);
    let remote = c.store.chunk_cache().unwrap().remote().unwrap();
    let before = remote.stats();
    run_acceptance(&mut c.client().await, &reference)
        .await
        .expect("answers from the repaired cache");
    let after = remote.stats();
    assert!(after.0 > before.0);
    assert_eq!(
        after.1 - before.1,
        after.0 - before.0,
        "{before:?} {after:?}"
    );
    c.stop().await;

    // memcached gone: chunks come from the bucket.
    mc.kill();
    let d = start().await;
    run_acceptance(&mut d.client().await, &reference)
        .await
        .expect("answers without memcached");
    let text = d.metrics_text();
    assert!(
        text.contains("thanos_memcached_operation_failures_total{name=\"caching-bucket\",operation=\"getmulti\",reason=\"other\"}"),
        "{text}"
    );
    d.stop().await;
}
