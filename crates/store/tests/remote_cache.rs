//! The index cache and the caching bucket's chunk cache in a real memcached (Debian's
//! `memcached`) and a real Redis (Debian's `redis-server`): gateways answer as the bucket
//! does through them, share them (what one gateway cached another reads), survive what a
//! shared cache can hold (values that are not ours, damaged, cut or of the wrong length),
//! and a server that is gone only costs the cache.

mod common;

use std::time::{Duration, Instant};

use common::*;
use strata_objstore::BucketMetrics;
use strata_store::StoreConfig;
use strata_store::cache::{IndexCacheSpec, ItemType};
use strata_store::chunk_cache::{CachingBucketConfig, ChunkCacheConfig};
use strata_store::testing::{Reference, run_acceptance};
use strata_testutil::memcached::MemcachedServer;
use strata_testutil::redis::RedisServer;

/// The cache server a test runs against.
enum Server {
    Memcached(MemcachedServer),
    Redis(RedisServer),
}

impl Server {
    fn memcached() -> Server {
        Server::Memcached(MemcachedServer::start().unwrap())
    }

    fn redis() -> Server {
        Server::Redis(RedisServer::start().unwrap())
    }

    /// `type:` and `config:` of a cache on this server.
    fn yaml(&self) -> String {
        match self {
            Server::Memcached(m) => format!(
                "type: MEMCACHED\nconfig:\n  addresses: [{}]\n  timeout: 2s\n",
                m.address()
            ),
            Server::Redis(r) => format!(
                "type: REDIS\nconfig:\n  addr: {}\n  read_timeout: 1s\n  write_timeout: 1s\n",
                r.address()
            ),
        }
    }

    /// The client metrics' prefix.
    fn metrics(&self) -> &'static str {
        match self {
            Server::Memcached(_) => "thanos_memcached",
            Server::Redis(_) => "strata_redis",
        }
    }

    /// The name of the operation that writes (memcached sets one by one, Redis in pipelines).
    fn set_operation(&self) -> &'static str {
        match self {
            Server::Memcached(_) => "set",
            Server::Redis(_) => "setmulti",
        }
    }

    fn keys(&self) -> Vec<String> {
        match self {
            Server::Memcached(m) => m.keys(),
            Server::Redis(r) => r.keys(),
        }
        .unwrap()
    }

    fn set(&self, key: &str, value: &[u8]) {
        match self {
            Server::Memcached(m) => m.set(key, value),
            Server::Redis(r) => r.set(key, value),
        }
        .unwrap()
    }

    /// Waits for the background sets to land; the number of items.
    fn settle(&self) -> u64 {
        match self {
            Server::Memcached(m) => m.settled_items(Duration::from_secs(20)),
            Server::Redis(r) => r.settled_keys(Duration::from_secs(20)),
        }
        .unwrap()
    }

    fn kill(&mut self) {
        match self {
            Server::Memcached(m) => m.kill(),
            Server::Redis(r) => r.kill(),
        }
    }
}

fn index_spec(server: &Server) -> IndexCacheSpec {
    IndexCacheSpec::from_yaml(&server.yaml()).unwrap()
}

/// The counter `metric` with labels starting `labels`, summed over the rest.
fn counter(text: &str, metric: &str, labels: &str) -> f64 {
    let prefix = format!("{metric}{{{labels}");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A FILESYSTEM bucket under `dir` with promtool's blocks of `hours` of data (`seed`), and
/// what the acceptance queries must answer from it.
async fn bucket_with_blocks(
    dir: &std::path::Path,
    hours: i64,
    seed: i64,
) -> (strata_objstore::Bucket, BucketMetrics, Reference) {
    let metrics = BucketMetrics::unregistered();
    let bucket = fs_bucket(&dir.join("bucket"), &metrics);
    let blocks = promtool_blocks(&dir.join("blocks"), hours, seed);
    let mut reference = Reference::default();
    upload(&bucket, &blocks, &[("cluster", "eu1")], &mut reference).await;
    (bucket, metrics, reference)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_share_a_memcached_index_cache_and_answer_as_the_bucket_does() {
    gateways_share_an_index_cache(Server::memcached()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_share_a_redis_index_cache_and_answer_as_the_bucket_does() {
    gateways_share_an_index_cache(Server::redis()).await;
}

async fn gateways_share_an_index_cache(mut mc: Server) {
    let tmp = tempfile::tempdir().unwrap();
    let (bucket, _, reference) = bucket_with_blocks(tmp.path(), 3, 0).await;

    let spec = index_spec(&mc);
    let start = |name: &str| {
        let mut config = StoreConfig::new(tmp.path().join(name));
        config.index_cache = spec.clone();
        Served::start(bucket.clone(), config)
    };

    // The first gateway fills the cache.
    let a = start("a").await;
    run_acceptance(&mut a.client().await, &reference)
        .await
        .expect("first gateway, cold");
    let items = mc.settle();
    assert!(items > 0, "nothing was cached");
    let keys = mc.keys();
    assert!(keys.iter().all(|k| k.starts_with("strata1:")), "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("strata1:P:")));
    assert!(keys.iter().any(|k| k.starts_with("strata1:S:")));
    let text = a.metrics_text();
    let sets = counter(
        &text,
        &format!("{}_operations_total", mc.metrics()),
        &format!("name=\"index-cache\",operation=\"{}\"", mc.set_operation()),
    );
    assert!(sets > 0.0, "{text}");
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
        mc.set(k, value);
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
    mc.settle();
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

    // The server gone: the gateway answers from the bucket, each get a failure, not an error.
    mc.kill();
    let d = start("d").await;
    let t0 = Instant::now();
    run_acceptance(&mut d.client().await, &reference)
        .await
        .expect("answers without the cache server");
    assert!(t0.elapsed() < Duration::from_secs(60));
    let text = d.metrics_text();
    let failures = counter(
        &text,
        &format!("{}_operation_failures_total", mc.metrics()),
        "name=\"index-cache\",operation=\"getmulti\"",
    );
    assert!(failures > 0.0, "{text}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enabled_items_keep_the_other_items_out_of_memcached() {
    let mc = Server::memcached();
    let tmp = tempfile::tempdir().unwrap();
    let (bucket, _, reference) = bucket_with_blocks(tmp.path(), 2, 1).await;
    let mut config = StoreConfig::new(tmp.path().join("data"));
    config.index_cache =
        IndexCacheSpec::from_yaml(&format!("{}enabled_items: [Postings]\n", mc.yaml())).unwrap();
    let s = Served::start(bucket.clone(), config).await;
    run_acceptance(&mut s.client().await, &reference)
        .await
        .unwrap();
    mc.settle();
    let keys = mc.keys();
    assert!(!keys.is_empty());
    assert!(keys.iter().all(|k| k.starts_with("strata1:P:")), "{keys:?}");
    s.stop().await;
}

/// `--store.caching-bucket.config` on `server` (small subranges, so that chunks often span
/// two).
fn chunk_cache_config(server: &Server) -> ChunkCacheConfig {
    match CachingBucketConfig::from_yaml(&format!(
        "{}chunk_subrange_size: 500\nmax_chunks_get_range_requests: 2\n",
        server.yaml()
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
    gateways_share_chunk_subranges(Server::memcached()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_share_chunk_subranges_in_redis() {
    gateways_share_chunk_subranges(Server::redis()).await;
}

/// Both caches on `mc`.
async fn gateways_share_chunk_subranges(mut mc: Server) {
    let tmp = tempfile::tempdir().unwrap();
    let (bucket, metrics, reference) = bucket_with_blocks(tmp.path(), 3, 2).await;

    let (index, chunks) = (index_spec(&mc), chunk_cache_config(&mc));
    // One data directory for all: a later gateway finds its index-headers on disk, so that
    // every bucket read it makes is one a cache should have saved.
    let start = || {
        let mut config = StoreConfig::new(tmp.path().join("data"));
        config.index_cache = index.clone();
        config.chunk_cache = Some(chunks.clone());
        Served::start(bucket.clone(), config)
    };

    let a = start().await;
    run_acceptance(&mut a.client().await, &reference)
        .await
        .expect("first gateway, cold");
    mc.settle();
    let keys = mc.keys();
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
    let kind = match mc {
        Server::Memcached(_) => "memcached",
        Server::Redis(_) => "redis",
    };
    for want in [
        format!(
            "{}_operations_total{{name=\"caching-bucket\",operation=\"{}\"}}",
            mc.metrics(),
            mc.set_operation()
        ),
        format!(
            "{}_operations_total{{name=\"index-cache\",operation=\"{}\"}}",
            mc.metrics(),
            mc.set_operation()
        ),
        "thanos_store_bucket_cache_getrange_fetched_bytes_total{origin=\"bucket\",config=\"chunks\"}".into(),
        format!("thanos_cache_{kind}_requests_total{{name=\"caching-bucket\"}}"),
    ] {
        assert!(text.contains(&want), "{want}\n{text}");
    }
    // Both clients share the families: each is exposed once.
    assert_eq!(
        text.matches(&format!("# TYPE {}_operations counter", mc.metrics()))
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
        mc.set(k, &value);
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
    mc.settle();
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

    // The server gone: chunks come from the bucket.
    mc.kill();
    let d = start().await;
    run_acceptance(&mut d.client().await, &reference)
        .await
        .expect("answers without the cache server");
    let text = d.metrics_text();
    let failures = counter(
        &text,
        &format!("{}_operation_failures_total", mc.metrics()),
        "name=\"caching-bucket\",operation=\"getmulti\"",
    );
    assert!(failures > 0.0, "{text}");
    d.stop().await;
}

/// Redis with a password and a database other than 0, as Thanos configures them: items go
/// to that database with the configured TTL; a wrong password costs the cache, not the
/// answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_credentials_database_and_ttl_are_used() {
    let password = "s3cret: p@ss/word";
    let mut redis = RedisServer::start_with(Some(password)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (bucket, _, reference) = bucket_with_blocks(tmp.path(), 2, 3).await;
    let address = redis.address();
    let yaml = |password: &str| {
        format!(
            "type: REDIS\nconfig:\n  addr: {}\n  username: default\n  password: '{password}'\n  \
             db: 2\nttl: 1h\n",
            address
        )
    };
    let mut config = StoreConfig::new(tmp.path().join("data"));
    config.index_cache = IndexCacheSpec::from_yaml(&yaml(password)).unwrap();
    let s = Served::start(bucket.clone(), config.clone()).await;
    run_acceptance(&mut s.client().await, &reference)
        .await
        .unwrap();
    s.stop().await;
    assert_eq!(
        redis.settled_keys(Duration::from_secs(20)).unwrap(),
        0,
        "nothing in database 0"
    );
    redis.select(2);
    assert!(redis.settled_keys(Duration::from_secs(20)).unwrap() > 0);
    let keys = redis.keys().unwrap();
    for k in keys.iter().take(20) {
        let ttl = redis.pttl(k).unwrap();
        assert!(ttl > 3_500_000 && ttl <= 3_600_000, "{k}: {ttl} ms left");
    }

    // Another gateway finds every item there.
    let s = Served::start(bucket.clone(), config.clone()).await;
    run_acceptance(&mut s.client().await, &reference)
        .await
        .unwrap();
    let (requests, hits) = s.store.cache().remote().unwrap().stats(ItemType::Series);
    assert!(requests > 0);
    assert_eq!(hits, requests);
    s.stop().await;

    // A wrong password: every get fails, the answers do not.
    config.index_cache = IndexCacheSpec::from_yaml(&yaml("wrong")).unwrap();
    let s = Served::start(bucket.clone(), config).await;
    run_acceptance(&mut s.client().await, &reference)
        .await
        .expect("answers with the cache refusing us");
    let text = s.metrics_text();
    let failures = counter(
        &text,
        "strata_redis_operation_failures_total",
        "name=\"index-cache\",operation=\"getmulti\"",
    );
    assert!(failures > 0.0, "{text}");
    s.stop().await;
    redis.kill();
}

/// `auto_discovery: true`, as on ElastiCache: the address is a configuration endpoint (here
/// a stand-in answering `config get cluster` the way ElastiCache does) that lists the nodes;
/// the gateway spreads its items over them and sends the endpoint nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_auto_discovery_uses_the_nodes_the_cluster_lists() {
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let nodes = [
        MemcachedServer::start().unwrap(),
        MemcachedServer::start().unwrap(),
    ];
    let port = |m: &MemcachedServer| m.address().rsplit(':').next().unwrap().to_string();
    // One node by IP, one by host name only (no IP), as ElastiCache may list them.
    let listing = format!(
        "7\nnode-a.local|127.0.0.1|{} localhost||{}\n",
        port(&nodes[0]),
        port(&nodes[1])
    );
    let answer = format!("CONFIG cluster 0 {}\r\n{listing}\r\nEND\r\n", listing.len());
    let endpoint = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint_addr = endpoint.local_addr().unwrap().to_string();
    let heard: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = heard.clone();
    let server = tokio::spawn(async move {
        loop {
            let (conn, _) = endpoint.accept().await.unwrap();
            let (answer, log) = (answer.clone(), log.clone());
            tokio::spawn(async move {
                let mut conn = BufReader::new(conn);
                let mut line = String::new();
                while conn.read_line(&mut line).await.unwrap_or(0) > 0 {
                    log.lock().unwrap().push(line.trim_end().to_string());
                    if line.trim_end() == "config get cluster" {
                        conn.get_mut().write_all(answer.as_bytes()).await.unwrap();
                    }
                    line.clear();
                }
            });
        }
    });

    let tmp = tempfile::tempdir().unwrap();
    let (bucket, _, reference) = bucket_with_blocks(tmp.path(), 3, 4).await;
    let mut config = StoreConfig::new(tmp.path().join("data"));
    config.index_cache = IndexCacheSpec::from_yaml(&format!(
        "type: MEMCACHED\nconfig:\n  addresses: [{endpoint_addr}]\n  auto_discovery: true\n  \
         dns_provider_update_interval: 1s\n"
    ))
    .unwrap();
    let s = Served::start(bucket, config).await;
    let strata_store::remote_cache::RemoteClient::Memcached(client) =
        s.store.cache().remote().expect("a remote cache").client()
    else {
        panic!("a memcached client")
    };
    // Discovery runs in the background; wait for it, as queries before it only miss.
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.servers().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no nodes discovered: {:?}",
            heard.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        *client.servers(),
        [
            format!("127.0.0.1:{}", port(&nodes[0])),
            format!("localhost:{}", port(&nodes[1]))
        ]
    );
    run_acceptance(&mut s.client().await, &reference)
        .await
        .unwrap();
    for n in &nodes {
        let items = n.settled_items(Duration::from_secs(20)).unwrap();
        assert!(
            items > 0,
            "{}: no items; keys go to every node",
            n.address()
        );
    }
    let heard = heard.lock().unwrap().clone();
    assert!(!heard.is_empty());
    assert!(
        heard.iter().all(|l| l == "config get cluster"),
        "the endpoint got: {heard:?}"
    );
    s.stop().await;
    server.abort();
}
