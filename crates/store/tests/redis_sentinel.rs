//! The Redis client with `master_name` (Redis Sentinel) against real Redis 7 processes
//! (Debian's `redis-server`): a master, its replica and a sentinel. The client finds the
//! master through the sentinels listed in `addr` (a dead one first), and after the master
//! dies and the sentinel promotes the replica, the cache works again against the new master.

use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_store::memcached::ClientMetrics;
use strata_store::redis::{Redis, RedisConfig};
use strata_testutil::process::free_port;
use strata_testutil::redis::{RedisServer, Reply};

/// Sets `key` through the client until it reads back, for at most `within`.
async fn round_trip(client: &Redis, key: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        client.set_async(
            key.into(),
            Bytes::from_static(b"v"),
            Duration::from_secs(600),
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        if client.get_multi(&[key.to_owned()]).await[0].as_deref() == Some(&b"v"[..]) {
            return true;
        }
    }
    false
}

/// The master's port the sentinel names now.
fn master_port(sentinel: &RedisServer) -> Option<u16> {
    match sentinel
        .command(&[b"SENTINEL", b"get-master-addr-by-name", b"cache"])
        .ok()?
    {
        Reply::Array(a) => match a.get(1) {
            Some(Reply::Bulk(Some(p))) => String::from_utf8_lossy(p).parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_is_found_through_the_sentinels_and_again_after_a_failover() {
    let dir = tempfile::tempdir().unwrap();
    let mut master = RedisServer::start().unwrap();
    let replica = RedisServer::start_replica_of(master.port()).unwrap();
    let sentinel = RedisServer::start_sentinel(dir.path(), "cache", master.port()).unwrap();
    assert_eq!(master_port(&sentinel), Some(master.port()));

    let yaml = format!(
        "addr: 127.0.0.1:{},{}\nmaster_name: cache\ndial_timeout: 1s\nread_timeout: 1s\n\
         write_timeout: 1s\n",
        free_port(),
        sentinel.address()
    );
    let cfg = RedisConfig::from_value(serde_yaml_ng::from_str(&yaml).unwrap()).unwrap();
    let client = Redis::new(cfg, "test", &ClientMetrics::redis(None)).unwrap();
    assert!(round_trip(&client, "before", Duration::from_secs(10)).await);
    assert!(master.keys().unwrap().contains(&"before".to_string()));

    // The sentinel must know the replica before it can promote it.
    let start = Instant::now();
    while !matches!(
        sentinel.command(&[b"SENTINEL", b"replicas", b"cache"]),
        Ok(Reply::Array(a)) if !a.is_empty()
    ) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the sentinel never saw the replica"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    master.kill();
    let start = Instant::now();
    while master_port(&sentinel) != Some(replica.port()) {
        assert!(start.elapsed() < Duration::from_secs(60), "no failover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The broken connection is dropped and the next dial asks the sentinel again (dials back
    // off to at most 30 s while the old master is gone).
    assert!(round_trip(&client, "after", Duration::from_secs(45)).await);
    assert!(replica.keys().unwrap().contains(&"after".to_string()));
}

#[tokio::test]
async fn a_master_no_sentinel_knows_is_a_miss_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let master = RedisServer::start().unwrap();
    let sentinel = RedisServer::start_sentinel(dir.path(), "cache", master.port()).unwrap();
    let yaml = format!(
        "addr: {}\nmaster_name: other\ndial_timeout: 1s\n",
        sentinel.address()
    );
    let cfg = RedisConfig::from_value(serde_yaml_ng::from_str(&yaml).unwrap()).unwrap();
    let client = Redis::new(cfg, "test", &ClientMetrics::redis(None)).unwrap();
    let started = Instant::now();
    assert_eq!(client.get_multi(&["k".to_string()]).await, vec![None]);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(master.keys().unwrap().is_empty());
}
