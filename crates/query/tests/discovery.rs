//! Endpoint discovery and health against real Store API servers (store gateways served
//! in-process): static addresses, `dns+` through the system resolver, file SD in YAML and
//! JSON re-read on change, strict endpoints kept while down, unhealthy ones forgotten.

mod common;

use std::time::Duration;

use common::*;
use strata_query::{EndpointSet, EndpointSetConfig};

async fn gateway(tmp: &std::path::Path, name: &str) -> Served {
    let blocks = promtool_blocks(&tmp.join(name), &openmetrics(1, 0, None));
    let bucket = fs_bucket(&tmp.join(format!("bucket-{name}")));
    upload(&bucket, &blocks, &[("cluster", name)]).await;
    Served::start(bucket, &tmp.join(format!("data-{name}"))).await
}

fn addrs(set: &EndpointSet) -> Vec<String> {
    set.stores().into_iter().map(|s| s.addr).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_dns_and_file_sd() {
    let tmp = tempfile::tempdir().unwrap();
    let a = gateway(tmp.path(), "a").await;
    let b = gateway(tmp.path(), "b").await;
    let sd = tmp.path().join("sd");
    std::fs::create_dir_all(&sd).unwrap();
    std::fs::write(
        sd.join("stores.yml"),
        format!("- targets: ['{}']\n", b.addr),
    )
    .unwrap();
    let set = EndpointSet::new(EndpointSetConfig {
        endpoints: vec![format!("dns+localhost:{}", a.addr.port())],
        sd_files: vec![format!("{}/*.yml", sd.display())],
        sd_interval: Duration::ZERO,
        dns_interval: Duration::ZERO,
        ..Default::default()
    })
    .unwrap();
    set.update().await;
    let mut got = addrs(&set);
    got.sort();
    let mut want = vec![format!("127.0.0.1:{}", a.addr.port()), b.addr.to_string()];
    want.sort();
    assert!(
        want.iter().all(|w| got.contains(w)),
        "got {got:?}, want {want:?}"
    );
    let status = set.status();
    let b_status = status
        .iter()
        .find(|s| s.addr == b.addr.to_string())
        .unwrap();
    let info = b_status.info.as_ref().unwrap();
    assert_eq!(info.component_type, "store");
    assert_eq!(info.label_sets[0].get("cluster"), Some("b"));
    assert!(info.min_time < info.max_time);

    // The file changes (JSON this time): b leaves on the next read.
    std::fs::remove_file(sd.join("stores.yml")).unwrap();
    let json_set = EndpointSet::new(EndpointSetConfig {
        sd_files: vec![sd.join("x.json").display().to_string()],
        sd_interval: Duration::ZERO,
        ..Default::default()
    })
    .unwrap();
    std::fs::write(
        sd.join("x.json"),
        format!("[{{\"targets\": [\"{}\"], \"labels\": {{}}}}]", a.addr),
    )
    .unwrap();
    json_set.update().await;
    assert_eq!(addrs(&json_set), [a.addr.to_string()]);
    set.update().await;
    assert!(!addrs(&set).contains(&b.addr.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_kept_unhealthy_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let a = gateway(tmp.path(), "a").await;
    let dead = format!("127.0.0.1:{}", strata_testutil::process::free_port());
    let dead_strict = format!("127.0.0.1:{}", strata_testutil::process::free_port());
    let set = EndpointSet::new(EndpointSetConfig {
        endpoints: vec![a.addr.to_string(), dead.clone()],
        strict: vec![dead_strict.clone()],
        unhealthy_timeout: Duration::from_millis(300),
        ..Default::default()
    })
    .unwrap();
    set.update().await;
    // The dead endpoint is not queried; the strict one is, though it never answered.
    let q = addrs(&set);
    assert!(q.contains(&a.addr.to_string()) && q.contains(&dead_strict) && !q.contains(&dead));
    let st = set.status();
    let d = st.iter().find(|s| s.addr == dead).unwrap();
    assert!(d.last_error.as_ref().unwrap().contains("Info"), "{d:?}");
    // After --store.unhealthy-timeout the dead one is forgotten; the strict one stays.
    tokio::time::sleep(Duration::from_millis(400)).await;
    set.update().await;
    let st: Vec<String> = set.status().into_iter().map(|s| s.addr).collect();
    assert!(!st.contains(&dead) && st.contains(&dead_strict), "{st:?}");
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_srv_discovery() {
    let tmp = tempfile::tempdir().unwrap();
    let a = gateway(tmp.path(), "a").await;
    let b = gateway(tmp.path(), "b").await;
    let dns = common::srv_server(vec![a.addr.port(), b.addr.port()], "localhost").await;

    // dnssrvnoa+: the SRV targets as host names.
    let set = EndpointSet::new(EndpointSetConfig {
        endpoints: vec!["dnssrvnoa+_grpc._tcp.stores.test.".into()],
        dns_server: Some(dns),
        ..Default::default()
    })
    .unwrap();
    set.update().await;
    let mut got: Vec<String> = set.status().into_iter().map(|s| s.addr).collect();
    got.sort();
    let mut want = vec![
        format!("localhost:{}", a.addr.port()),
        format!("localhost:{}", b.addr.port()),
    ];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(addrs(&set).len(), 2, "{:?}", set.status());

    // dnssrv+: the targets resolved to addresses as well.
    let set = EndpointSet::new(EndpointSetConfig {
        endpoints: vec!["dnssrv+_grpc._tcp.stores.test.".into()],
        dns_server: Some(dns),
        ..Default::default()
    })
    .unwrap();
    set.update().await;
    let got = addrs(&set);
    for s in [&a, &b] {
        assert!(
            got.contains(&format!("127.0.0.1:{}", s.addr.port())),
            "{got:?}"
        );
    }
}
