//! `--endpoint.sd-config-file` and endpoint groups against real Store API servers served
//! in-process on 127.0.0.1: the config file re-read (endpoints added and removed, a
//! malformed rewrite keeping the previous set), and a group of two stores behind one DNS
//! name queried as one store whose calls alternate between its members.

mod common;

use std::time::Duration;

use common::*;
use strata_api::RequestOptions;
use strata_query::{EndpointSet, EndpointSetConfig, Fanout, SdConfigSource};
use strata_storepb::thanos::SeriesRequest;

fn addrs(set: &EndpointSet) -> Vec<String> {
    let mut a: Vec<String> = set.stores().into_iter().map(|s| s.addr).collect();
    a.sort();
    a
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sd_config_file_is_reloaded_and_bad_rewrites_keep_the_endpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, _stop_a) = CountingStore::new(Duration::ZERO).start().await;
    let (b, _stop_b) = CountingStore::new(Duration::ZERO).start().await;
    let (c, _stop_c) = CountingStore::new(Duration::ZERO).start().await;
    let dead_strict = format!("127.0.0.1:{}", strata_testutil::process::free_port());
    let file = tmp.path().join("endpoints.yml");
    std::fs::write(
        &file,
        format!(
            "endpoints:\n  - address: {a}\n  - address: {b}\n  - address: {dead_strict}\n    strict: true\n"
        ),
    )
    .unwrap();
    let set = EndpointSet::new(EndpointSetConfig {
        sd_config: Some(SdConfigSource::File(file.clone())),
        // Re-read on every update.
        sd_config_interval: Duration::ZERO,
        ..Default::default()
    })
    .unwrap();
    set.update().await;
    // Both live endpoints, and the strict one although nothing listens there.
    assert_eq!(
        addrs(&set),
        sorted(vec![a.to_string(), b.to_string(), dead_strict.clone()])
    );

    // a leaves, c arrives, the strict entry becomes an ordinary one (and, dead, is not
    // queried).
    std::fs::write(
        &file,
        format!("endpoints:\n  - address: {b}\n  - address: {c}\n  - address: {dead_strict}\n"),
    )
    .unwrap();
    set.update().await;
    assert_eq!(addrs(&set), sorted(vec![b.to_string(), c.to_string()]));
    let known: Vec<String> = set.status().into_iter().map(|s| s.addr).collect();
    assert!(!known.contains(&a.to_string()), "{known:?}");

    // Malformed rewrites (broken YAML, a misspelled field, a bad address) are logged and the
    // previous endpoints stay.
    for bad in [
        "endpoints:\n  - address: [".to_string(),
        format!("endpoints:\n  - adress: {a}\n"),
        "endpoints:\n  - address: nohost\n".to_string(),
    ] {
        std::fs::write(&file, &bad).unwrap();
        set.update().await;
        assert_eq!(
            addrs(&set),
            sorted(vec![b.to_string(), c.to_string()]),
            "after writing {bad:?}"
        );
    }
    // A missing file too.
    std::fs::remove_file(&file).unwrap();
    set.update().await;
    assert_eq!(addrs(&set), sorted(vec![b.to_string(), c.to_string()]));

    // And a good file afterwards is picked up again.
    std::fs::write(&file, format!("endpoints: [{{address: '{a}'}}]\n")).unwrap();
    set.update().await;
    assert_eq!(addrs(&set), [a.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_sd_config_at_start_is_an_error_naming_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("endpoints.yml");
    std::fs::write(&file, "endpoints:\n  - address: a:1\n    strictt: true\n").unwrap();
    let e = EndpointSet::new(EndpointSetConfig {
        sd_config: Some(SdConfigSource::File(file.clone())),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(&format!("--endpoint.sd-config-file {}", file.display()))
            && e.contains("strictt"),
        "{e}"
    );
    let e = EndpointSet::new(EndpointSetConfig {
        sd_config: Some(SdConfigSource::Inline("endpoints: {".into())),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("--endpoint.sd-config:"), "{e}");
}

/// One Series call through the store's client, read to the end.
async fn series_call(set: &EndpointSet) -> Result<(), tonic::Status> {
    let stores = set.stores();
    assert_eq!(stores.len(), 1, "{:?}", set.status());
    let mut client = stores[0].client.clone();
    let mut stream = client
        .series(SeriesRequest {
            min_time: 0,
            max_time: 1,
            ..Default::default()
        })
        .await?
        .into_inner();
    while stream.message().await?.is_some() {}
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_group_is_one_store_round_robin_over_its_members() {
    let store_a = CountingStore::new(Duration::ZERO);
    let store_b = CountingStore::new(Duration::ZERO);
    let (a, _stop_a) = store_a.start().await;
    let (b, stop_b) = store_b.start().await;
    let dns = common::srv_server(vec![a.port(), b.port()], "127.0.0.1").await;
    let name = "dnssrv+_grpc._tcp.group.test.";
    let set = EndpointSet::new(EndpointSetConfig {
        groups: vec![name.into()],
        dns_server: Some(dns),
        ..Default::default()
    })
    .unwrap();
    set.update().await;

    // One store, under Thanos' name for groups, over both members.
    let group = format!("thanos:///{name}");
    assert_eq!(addrs(&set), [group.as_str()]);
    let status = set.status();
    assert_eq!(status.len(), 1, "{status:?}");
    assert_eq!(status[0].info.as_ref().unwrap().component_type, "store");
    assert_eq!(
        sorted(set.group_members(&group).unwrap()),
        sorted(vec![a.to_string(), b.to_string()])
    );

    // Series calls alternate between the members.
    let mut order = Vec::new();
    for _ in 0..6 {
        let before = (store_a.calls(), store_b.calls());
        series_call(&set).await.unwrap();
        let after = (store_a.calls(), store_b.calls());
        order.push(match (after.0 - before.0, after.1 - before.1) {
            (1, 0) => 'a',
            (0, 1) => 'b',
            other => panic!("one call reached {other:?} members"),
        });
    }
    assert!(
        order.windows(2).all(|w| w[0] != w[1]),
        "calls did not alternate: {order:?}"
    );
    assert_eq!((store_a.calls(), store_b.calls()), (3, 3));

    // A query through the querier is one Series call to the group, not one per member.
    store_a.reset();
    store_b.reset();
    let q = querier(
        Fanout {
            endpoints: set.clone(),
            response_timeout: None,
            max_wait: Duration::from_secs(30),
            limits: Default::default(),
            selector: Default::default(),
        },
        &[],
    );
    instant(&q, RequestOptions::default(), "up", T0)
        .await
        .unwrap();
    assert_eq!(store_a.calls() + store_b.calls(), 1);

    // b goes down: after the next probe every call goes to a, and the group stays healthy.
    let _ = stop_b.send(());
    tokio::time::sleep(Duration::from_millis(200)).await;
    set.update().await;
    assert_eq!(addrs(&set), [group.as_str()], "{:?}", set.status());
    store_a.reset();
    store_b.reset();
    for _ in 0..4 {
        series_call(&set).await.unwrap();
    }
    assert_eq!((store_a.calls(), store_b.calls()), (4, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_group_is_kept_while_every_member_is_down() {
    let dead = strata_testutil::process::free_port();
    let set = EndpointSet::new(EndpointSetConfig {
        groups_strict: vec![format!("127.0.0.1:{dead}")],
        groups: vec![format!(
            "dns+localhost:{}",
            strata_testutil::process::free_port()
        )],
        unhealthy_timeout: Duration::from_millis(100),
        ..Default::default()
    })
    .unwrap();
    set.update().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    set.update().await;
    // The strict group is still queried; the other, unhealthy past the timeout, is not.
    assert_eq!(addrs(&set), [format!("thanos:///127.0.0.1:{dead}")]);
    let st = set.status();
    let strict = st.iter().find(|s| s.strict).unwrap();
    assert!(
        strict
            .last_error
            .as_ref()
            .unwrap()
            .contains("no member of the group answered"),
        "{strict:?}"
    );
}
