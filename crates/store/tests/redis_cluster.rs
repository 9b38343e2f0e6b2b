//! The Redis client against a real Redis Cluster of three masters (Debian's `redis-server`,
//! slots assigned by `redis-cli --cluster create`): from one seed address (as a managed
//! cluster's configuration endpoint is given) or a list whose first member is down, the
//! client finds every master and stores each key on the node that owns its slot, and reads
//! them all back in one lookup. A slot moved to another node (`CLUSTER SETSLOT … NODE`)
//! costs one failed lookup, then the new map is read.

use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_store::memcached::ClientMetrics;
use strata_store::redis::{Redis, RedisConfig};
use strata_testutil::process::free_port;
use strata_testutil::redis::{RedisServer, Reply};

fn client(addr: &str) -> Redis {
    let yaml = format!("addr: \"{addr}\"\ndial_timeout: 2s\n");
    let cfg = RedisConfig::from_value(serde_yaml_ng::from_str(&yaml).unwrap()).unwrap();
    Redis::new(cfg, "test", &ClientMetrics::redis(None)).unwrap()
}

/// Sets every key and waits until one lookup finds them all.
async fn store_all(c: &Redis, keys: &[String]) {
    for k in keys {
        c.set_async(k.clone(), Bytes::from(k.clone()), Duration::from_secs(600));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = c.get_multi(keys).await;
        if got
            .iter()
            .zip(keys)
            .all(|(v, k)| v.as_deref() == Some(k.as_bytes()))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not every key came back: {} found",
            got.iter().filter(|v| v.is_some()).count()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn node_id(n: &RedisServer) -> Vec<u8> {
    match n.command(&[b"CLUSTER", b"MYID"]).unwrap() {
        Reply::Bulk(Some(id)) => id,
        other => panic!("CLUSTER MYID: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_stored_on_the_node_owning_their_slot() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = RedisServer::start_cluster(dir.path(), 3).unwrap();
    let keys: Vec<String> = (0..300)
        .map(|i| format!("strata1:S:block{i}:{i}"))
        .collect();

    let c = client(&nodes[1].address());
    store_all(&c, &keys).await;
    let per_node: Vec<usize> = nodes.iter().map(|n| n.keys().unwrap().len()).collect();
    assert_eq!(per_node.iter().sum::<usize>(), keys.len(), "{per_node:?}");
    assert!(
        per_node.iter().all(|&n| n > 50),
        "keys spread over every master: {per_node:?}"
    );

    // A list of seeds whose first is down.
    let c = client(&format!("127.0.0.1:{},{}", free_port(), nodes[2].address()));
    let got = c.get_multi(&keys).await;
    assert!(got.iter().all(Option::is_some));

    // Move the slot of one key to another node: the next lookups follow the new map.
    let key = &keys[0];
    let slot = match nodes[0]
        .command(&[b"CLUSTER", b"KEYSLOT", key.as_bytes()])
        .unwrap()
    {
        Reply::Integer(s) => s.to_string(),
        other => panic!("{other:?}"),
    };
    let owner = nodes
        .iter()
        .position(|n| n.keys().unwrap().contains(key))
        .unwrap();
    let target = (owner + 1) % nodes.len();
    let target_id = node_id(&nodes[target]);
    // An empty slot cannot be moved with its keys by hand here: drop what it holds first.
    for n in &nodes[owner..=owner] {
        for k in n.keys().unwrap() {
            if let Ok(Reply::Integer(s)) = n.command(&[b"CLUSTER", b"KEYSLOT", k.as_bytes()])
                && s.to_string() == slot
            {
                n.command(&[b"DEL", k.as_bytes()]).unwrap();
            }
        }
    }
    for n in &nodes {
        let r = n
            .command(&[b"CLUSTER", b"SETSLOT", slot.as_bytes(), b"NODE", &target_id])
            .unwrap();
        assert_eq!(r, Reply::Status("OK".into()), "{r:?}");
    }
    let moved = vec![key.clone()];
    store_all(&c, &moved).await;
    assert!(nodes[target].keys().unwrap().contains(key));
}
