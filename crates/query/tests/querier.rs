//! The querier core against real store gateways (in-process, over blocks made by promtool
//! 2.42): the Store API acceptance suite on the querier's own Store API, HA deduplication
//! with per-request options, a store that hangs, and downsampled reads.

mod common;

use std::time::{Duration, Instant};

use common::*;
use strata_api::{MaxSourceResolution, RequestOptions};
use strata_model::{Labels, Matcher};
use strata_promql::{SelectHints, Storage, Value};
use strata_store::testing::{HangingStore, StoreApiClient, run_acceptance};
use strata_storepb::thanos::info::InfoRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn querier_store_api_passes_acceptance() {
    let tmp = tempfile::tempdir().unwrap();
    let (reference, served) = two_gateways(tmp.path()).await;
    let addrs: Vec<String> = served.iter().map(|s| s.addr.to_string()).collect();
    let f = fanout(&addrs, None).await;
    // The gateways strip replica labels themselves, so the querier passes that on to them.
    assert!(
        f.endpoints.stores().iter().all(|s| s.strips_replica_labels),
        "{:?}",
        f.endpoints.status()
    );
    let (addr, _stop) = serve_querier(f).await;
    let mut client = StoreApiClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let report = run_acceptance(&mut client, &reference).await.unwrap();
    assert!(report.cases > 40, "{report:?}");

    // A querier on top of the querier: stacking works, and Info says `query`.
    let (top, _stop_top) = serve_querier(fanout(&[addr.to_string()], None).await).await;
    let mut client = StoreApiClient::connect(format!("http://{top}"))
        .await
        .unwrap();
    run_acceptance(&mut client, &reference).await.unwrap();
    let info = client.info.info(InfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.component_type, "query");
    assert!(info.store.unwrap().supports_without_replica_labels);
    assert_eq!(info.label_sets.len(), 2);
}

/// Two HA replicas (external labels differ only in `replica`), "b" down for 40 minutes and
/// scraping 1.234 s later than "a".
async fn ha_pair(tmp: &std::path::Path) -> (Vec<Served>, Vec<String>) {
    let down = (T0 + 3_600_000, T0 + 3_600_000 + 2_400_000);
    let mut served = Vec::new();
    for (name, shift, skip) in [("a", 0, None), ("b", 1234, Some(down))] {
        let blocks = promtool_blocks(&tmp.join(name), &openmetrics(4, shift, skip));
        let bucket = fs_bucket(&tmp.join(format!("bucket-{name}")));
        upload(&bucket, &blocks, &[("cluster", "eu1"), ("replica", name)]).await;
        served.push(Served::start(bucket, &tmp.join(format!("data-{name}"))).await);
    }
    let addrs = served.iter().map(|s| s.addr.to_string()).collect();
    (served, addrs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_dedup_per_request_options() {
    let tmp = tempfile::tempdir().unwrap();
    let (_served, addrs) = ha_pair(tmp.path()).await;
    let q = querier(fanout(&addrs, None).await, &["replica"]);
    let t = T0 + 3 * 3_600_000;

    // dedup on (default): one series per job/instance, no replica label.
    let out = instant(&q, RequestOptions::default(), "http_requests_total", t)
        .await
        .unwrap();
    let s = series_of(&out.value);
    assert_eq!(s.len(), 8);
    assert!(
        s.iter()
            .all(|(l, _)| !l.contains("replica") && l.get("cluster") == Some("eu1"))
    );

    // dedup=false: both replicas.
    let off = RequestOptions {
        dedup: false,
        ..Default::default()
    };
    let s = series_of(
        &instant(&q, off, "http_requests_total", t)
            .await
            .unwrap()
            .value,
    );
    assert_eq!(s.len(), 16);
    assert!(s.iter().all(|(l, _)| l.contains("replica")));

    // replicaLabels[]=cluster replaces --query.replica-label for this request.
    let other = RequestOptions {
        replica_labels: Some(vec!["cluster".into()]),
        ..Default::default()
    };
    let s = series_of(
        &instant(&q, other, "http_requests_total", t)
            .await
            .unwrap()
            .value,
    );
    assert_eq!(s.len(), 16);
    assert!(
        s.iter()
            .all(|(l, _)| l.contains("replica") && !l.contains("cluster"))
    );

    // Metadata: the replica label is gone from names, values and series.
    let st = q.storage_for(&RequestOptions::default());
    let (names, values, series) = tokio::task::spawn_blocking(move || {
        (
            st.label_names(&[], T0, t).unwrap(),
            st.label_values("replica", &[], T0, t).unwrap(),
            st.series_labels(&[vec![Matcher::equal("__name__", "temperature")]], T0, t)
                .unwrap(),
        )
    })
    .await
    .unwrap();
    assert!(names.contains(&"cluster".to_string()) && !names.contains(&"replica".to_string()));
    assert!(values.is_empty());
    assert_eq!(series.len(), 2);

    // The deduplicated query equals the replica that never stopped, with no gap and no
    // doubled counts, including rate() across b's outage.
    let (start, end, step) = (T0 + 600_000, T0 + 4 * 3_600_000 - 600_000, 60_000);
    for query in [
        "rate(http_requests_total[5m])",
        "count_over_time(http_requests_total[1m])",
        "temperature",
    ] {
        let dedup = series_of(
            &range(&q, RequestOptions::default(), query, start, end, step)
                .await
                .unwrap()
                .value,
        );
        let a_only = format!(
            "{}{{replica=\"a\"}}{}",
            &query[..query.find(['[', ')']).map_or(query.len(), |i| i)],
            &query[query.find(['[', ')']).map_or(query.len(), |i| i)..]
        );
        let a = series_of(
            &range(
                &q,
                RequestOptions {
                    dedup: false,
                    ..Default::default()
                },
                &a_only,
                start,
                end,
                step,
            )
            .await
            .unwrap()
            .value,
        );
        let strip = |l: &Labels| Labels::new(l.iter().filter(|x| x.name != "replica").cloned());
        let a: Vec<_> = a.into_iter().map(|(l, p)| (strip(&l), p)).collect();
        assert_eq!(dedup.len(), a.len(), "{query}");
        for ((dl, dp), (al, ap)) in dedup.iter().zip(&a) {
            assert_eq!(dl, al, "{query}");
            assert_eq!(
                dp.len(),
                ((end - start) / step + 1) as usize,
                "{query}: gap in {dl}"
            );
            assert_eq!(dp, ap, "{query}: {dl} differs from replica a");
        }
        if query.starts_with("count_over_time") {
            assert!(
                dedup.iter().all(|(_, p)| p.iter().all(|&(_, v)| v == 4.0)),
                "doubled counts"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_store_is_a_warning_or_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let blocks = promtool_blocks(&tmp.path().join("a"), &openmetrics(2, 0, None));
    let bucket = fs_bucket(&tmp.path().join("bucket"));
    upload(&bucket, &blocks, &[("cluster", "eu1")]).await;
    let good = Served::start(bucket, &tmp.path().join("data")).await;
    let (hang, _stop) = HangingStore {
        label_sets: vec![Labels::from_pairs(&[("cluster", "hang")])],
    }
    .start()
    .await;
    let timeout = Duration::from_millis(700);
    let f = fanout(&[good.addr.to_string(), hang.to_string()], Some(timeout)).await;
    let q = querier(f, &[]);
    let t = T0 + 3_600_000;

    let started = Instant::now();
    let out = instant(&q, RequestOptions::default(), "temperature", t)
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(took < timeout + Duration::from_secs(2), "took {took:?}");
    assert_eq!(
        series_of(&out.value).len(),
        2,
        "the good store still answers"
    );
    let warnings: Vec<&String> = out.annotations.warnings.iter().collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains(&hang.to_string()), "{warnings:?}");

    let abort = RequestOptions {
        partial_response: Some(false),
        ..Default::default()
    };
    let started = Instant::now();
    let err = instant(&q, abort, "temperature", t).await.unwrap_err();
    assert!(started.elapsed() < timeout + Duration::from_secs(2));
    let msg = err.to_string();
    assert!(
        msg.contains(&hang.to_string()) && msg.contains("response-timeout"),
        "{msg}"
    );

    // A matcher on the hanging store's external label keeps it out of the fan-out.
    let out = instant(
        &q,
        RequestOptions::default(),
        "temperature{cluster=\"eu1\"}",
        t,
    )
    .await
    .unwrap();
    assert!(out.annotations.warnings.is_empty());

    // Metadata under partial response: the hanging store is skipped after the timeout.
    let st = q.storage_for(&RequestOptions::default());
    let (names, warnings) = tokio::task::spawn_blocking(move || {
        (
            st.label_names(&[], 0, t).unwrap(),
            st.take_metadata_warnings(),
        )
    })
    .await
    .unwrap();
    assert!(names.contains(&"room".to_string()));
    assert!(
        warnings.iter().any(|w| w.contains(&hang.to_string())),
        "{warnings:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downsampled_blocks_through_max_source_resolution() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = promtool_blocks(&tmp.path().join("raw"), &openmetrics(4, 0, None));
    let down_dir = tmp.path().join("5m");
    std::fs::create_dir_all(&down_dir).unwrap();
    let mut down = Vec::new();
    for b in &raw {
        let block = strata_tsdb::Block::open(b).unwrap();
        let (meta, _) =
            strata_compact::downsample::downsample_block(&block, 300_000, &down_dir, None)
                .unwrap()
                .unwrap();
        down.push(down_dir.join(meta.ulid.to_string()));
    }
    let bucket = fs_bucket(&tmp.path().join("bucket"));
    upload(&bucket, &raw, &[("cluster", "eu1")]).await;
    upload(&bucket, &down, &[("cluster", "eu1")]).await;
    let served = Served::start(bucket, &tmp.path().join("data")).await;
    let q = querier(fanout(&[served.addr.to_string()], None).await, &[]);
    let t = T0 + 3 * 3_600_000;
    let with = |r: MaxSourceResolution| RequestOptions {
        max_source_resolution: Some(r),
        ..Default::default()
    };

    // Raw: 240 samples an hour; 5m: 12 aggregated points an hour.
    let count = "count_over_time(temperature{room=\"hall\"}[1h])";
    let raw_count = series_of(
        &instant(&q, with(MaxSourceResolution::Millis(0)), count, t)
            .await
            .unwrap()
            .value,
    );
    assert_eq!(raw_count[0].1[0].1, 240.0);
    let c5 = series_of(
        &instant(&q, with(MaxSourceResolution::Millis(300_000)), count, t)
            .await
            .unwrap()
            .value,
    );
    assert_eq!(c5[0].1[0].1, 12.0);
    // auto: a fifth of the step; a 30m step reads 5m data, an instant query raw data.
    let auto = series_of(
        &range(
            &q,
            with(MaxSourceResolution::Auto),
            count,
            t - 3_600_000,
            t,
            1_800_000,
        )
        .await
        .unwrap()
        .value,
    );
    assert_eq!(auto[0].1.len(), 3);
    assert!(auto[0].1.iter().all(|p| p.1 == 12.0), "{auto:?}");
    let auto_instant = series_of(
        &instant(&q, with(MaxSourceResolution::Auto), count, t)
            .await
            .unwrap()
            .value,
    );
    assert_eq!(auto_instant[0].1[0].1, 240.0);

    // A plain selector reads sum/count: the window's average, at the window's end.
    let j = 20;
    let t_end = T0 + 300_000 * (j + 1) - 1;
    let want: f64 = (20 * j..20 * j + 20)
        .map(|k| (k as f64 * 0.37).sin() * 10.0 + 20.0)
        .sum::<f64>()
        / 20.0;
    let got = series_of(
        &instant(
            &q,
            with(MaxSourceResolution::Millis(300_000)),
            "temperature{room=\"hall\"}",
            t_end,
        )
        .await
        .unwrap()
        .value,
    );
    assert!(
        (got[0].1[0].1 - want).abs() < 1e-9,
        "{} vs {want}",
        got[0].1[0].1
    );

    // max_over_time reads the MAX aggregate, rate() the COUNTER one.
    let max5 = series_of(
        &instant(
            &q,
            with(MaxSourceResolution::Millis(300_000)),
            "max_over_time(temperature{room=\"hall\"}[1h])",
            t,
        )
        .await
        .unwrap()
        .value,
    );
    let max_raw = series_of(
        &instant(
            &q,
            with(MaxSourceResolution::Millis(0)),
            "max_over_time(temperature{room=\"hall\"}[1h])",
            t,
        )
        .await
        .unwrap()
        .value,
    );
    assert!(
        (max5[0].1[0].1 - max_raw[0].1[0].1).abs() < 0.5,
        "{max5:?} vs {max_raw:?}"
    );
    let rate5 = series_of(
        &instant(
            &q,
            with(MaxSourceResolution::Millis(300_000)),
            "rate(http_requests_total{job=\"api\",instance=\"i1\"}[1h])",
            t,
        )
        .await
        .unwrap()
        .value,
    );
    // The counter grows by 2 every 15 s.
    assert!((rate5[0].1[0].1 - 2.0 / 15.0).abs() < 0.01, "{rate5:?}");

    // The engine's hints reach the store: a direct select asking for min gets the minimum.
    let st = q.storage_for(&with(MaxSourceResolution::Millis(300_000)));
    let sel = tokio::task::spawn_blocking(move || {
        st.select(
            &[Matcher::equal("__name__", "temperature")],
            &SelectHints {
                start: T0,
                end: t,
                func: Some("min_over_time".into()),
                ..Default::default()
            },
        )
        .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(sel.series.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_stores_give_each_series_once() {
    // Two gateways over the same bucket (an HA pair of store gateways): every series comes
    // twice with the same chunks, and the querier must answer exactly as one gateway does.
    let tmp = tempfile::tempdir().unwrap();
    let blocks = promtool_blocks(&tmp.path().join("a"), &openmetrics(3, 0, None));
    let bucket_dir = tmp.path().join("bucket");
    upload(&fs_bucket(&bucket_dir), &blocks, &[("cluster", "eu1")]).await;
    let g1 = Served::start(fs_bucket(&bucket_dir), &tmp.path().join("d1")).await;
    let g2 = Served::start(fs_bucket(&bucket_dir), &tmp.path().join("d2")).await;
    let both = querier(
        fanout(&[g1.addr.to_string(), g2.addr.to_string()], None).await,
        &[],
    );
    let one = querier(fanout(&[g1.addr.to_string()], None).await, &[]);
    assert_same_range_answers(
        &both,
        &one,
        &[
            "http_requests_total",
            "rate(http_requests_total[5m])",
            "sum by (job) (increase(http_requests_total[1h]))",
            "max_over_time(temperature[10m])",
        ],
    )
    .await;
}

/// Two gateways, one per cluster, for `storeMatch[]`.
async fn two_clusters(tmp: &std::path::Path) -> (Vec<Served>, Vec<String>) {
    let mut served = Vec::new();
    for name in ["eu1", "us1"] {
        let blocks = promtool_blocks(&tmp.join(name), &openmetrics(2, 0, None));
        let bucket = fs_bucket(&tmp.join(format!("bucket-{name}")));
        upload(&bucket, &blocks, &[("cluster", name)]).await;
        served.push(Served::start(bucket, &tmp.join(format!("data-{name}"))).await);
    }
    let addrs = served.iter().map(|s| s.addr.to_string()).collect();
    (served, addrs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_match_picks_stores_by_address() {
    let tmp = tempfile::tempdir().unwrap();
    let (_served, addrs) = two_clusters(tmp.path()).await;
    let q = querier(fanout(&addrs, None).await, &[]);
    let t = T0 + 3_600_000;
    let addr = |a: &str| Matcher::equal("__address__", a);
    let re = |v: &str| Matcher::new(strata_model::MatchOp::RegexMatch, "__address__", v).unwrap();
    let clusters = |out: &Value| -> Vec<String> {
        let mut c: Vec<String> = series_of(out)
            .iter()
            .map(|(l, _)| l.get("cluster").unwrap().to_string())
            .collect();
        c.dedup();
        c
    };
    let with = |sets: Vec<Vec<Matcher>>| RequestOptions {
        store_matchers: sets,
        ..Default::default()
    };

    // No storeMatch[]: both stores.
    let out = instant(&q, RequestOptions::default(), "temperature", t)
        .await
        .unwrap();
    assert_eq!(clusters(&out.value), ["eu1", "us1"]);

    // One address: that store only, for instant and range queries.
    let only_eu = with(vec![vec![addr(&addrs[0])]]);
    let out = instant(&q, only_eu.clone(), "temperature", t)
        .await
        .unwrap();
    assert_eq!(clusters(&out.value), ["eu1"]);
    let out = range(&q, only_eu.clone(), "temperature", T0, t, 60_000)
        .await
        .unwrap();
    assert_eq!(clusters(&out.value), ["eu1"]);

    // Any selector matching is enough; a negative matcher excludes.
    let both = with(vec![vec![addr(&addrs[0])], vec![addr(&addrs[1])]]);
    let out = instant(&q, both, "temperature", t).await.unwrap();
    assert_eq!(clusters(&out.value), ["eu1", "us1"]);
    let not_eu = with(vec![vec![
        re("127\\.0\\.0\\.1:.*"),
        Matcher::not_equal("__address__", &addrs[0]),
    ]]);
    let out = instant(&q, not_eu, "temperature", t).await.unwrap();
    assert_eq!(clusters(&out.value), ["us1"]);

    // Nothing matches: no store is asked, the result is empty.
    let none = with(vec![vec![addr("10.0.0.1:1")]]);
    let out = instant(&q, none.clone(), "temperature", t).await.unwrap();
    assert!(series_of(&out.value).is_empty());

    // Metadata follows the same selection.
    let st = q.storage_for(&with(vec![vec![addr(&addrs[1])]]));
    let st_none = q.storage_for(&none);
    let (values, series, names, nothing) = tokio::task::spawn_blocking(move || {
        (
            st.label_values("cluster", &[], T0, t).unwrap(),
            st.series_labels(&[vec![Matcher::equal("__name__", "temperature")]], T0, t)
                .unwrap(),
            st_none.label_names(&[], T0, t).unwrap(),
            st_none.label_values("cluster", &[], T0, t).unwrap(),
        )
    })
    .await
    .unwrap();
    assert_eq!(values, ["us1"]);
    assert_eq!(series.len(), 2);
    assert!(series.iter().all(|l| l.get("cluster") == Some("us1")));
    assert!(names.is_empty() && nothing.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_select_bounds_one_query() {
    let store = CountingStore::new(Duration::from_millis(150));
    let (addr, _stop) = store.start().await;
    let f = fanout(&[addr.to_string()], None).await;
    let querier_with = |n: usize| {
        strata_query::Querier::new(
            f.clone(),
            strata_query::QuerierConfig {
                max_concurrent_select: n,
                ..Default::default()
            },
            tokio::runtime::Handle::current(),
        )
    };
    // `threads` engine threads calling select on one query's storage at once.
    let selects = |q: &strata_query::Querier, threads: usize| {
        let st = std::sync::Arc::new(q.storage_for(&RequestOptions::default()));
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let st = st.clone();
                std::thread::spawn(move || {
                    st.select(
                        &[Matcher::equal("__name__", format!("m{i}"))],
                        &SelectHints {
                            start: 0,
                            end: 1,
                            ..Default::default()
                        },
                    )
                    .map(|r| r.series.len())
                })
            })
            .collect();
        handles
    };
    let join = |handles: Vec<std::thread::JoinHandle<Result<usize, _>>>| {
        for h in handles {
            assert_eq!(h.join().unwrap().unwrap(), 0);
        }
    };

    for limit in [1, 2, 4] {
        store.reset();
        let q = querier_with(limit);
        let started = Instant::now();
        let h = selects(&q, 8);
        tokio::task::spawn_blocking(move || join(h)).await.unwrap();
        assert_eq!(store.calls(), 8);
        assert_eq!(store.max_in_flight(), limit, "limit {limit}");
        // 8 calls of 150 ms, `limit` at a time.
        let waves = 8usize.div_ceil(limit) as u32;
        assert!(
            started.elapsed() >= Duration::from_millis(150) * waves - Duration::from_millis(20),
            "limit {limit}: {:?}",
            started.elapsed()
        );
    }

    // The default is Thanos' 4.
    assert_eq!(
        strata_query::QuerierConfig::default().max_concurrent_select,
        4
    );

    // The bound is per query: two queries with a limit of 2 each run 4 selects at once.
    store.reset();
    let (q1, q2) = (querier_with(2), querier_with(2));
    let (h1, h2) = (selects(&q1, 6), selects(&q2, 6));
    tokio::task::spawn_blocking(move || {
        join(h1);
        join(h2);
    })
    .await
    .unwrap();
    assert_eq!(store.calls(), 12);
    assert_eq!(store.max_in_flight(), 4);
}

/// A query's selections are in flight together (the engine starts them before evaluating,
/// `Storage::select_early`), as many as `--query.max-concurrent-select` allows less one, with
/// and without deduplication; the rest follow as evaluation reaches them, without waiting
/// for permits that early selections hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_querys_selections_are_in_flight_together() {
    const DELAY: Duration = Duration::from_millis(300);
    let store = CountingStore::new(DELAY);
    let (addr, _stop) = store.start().await;
    let f = fanout(&[addr.to_string()], None).await;
    let querier_with = |limit: usize, replica_labels: &[&str]| {
        strata_query::Querier::new(
            f.clone(),
            strata_query::QuerierConfig {
                max_concurrent_select: limit,
                replica_labels: replica_labels.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
            tokio::runtime::Handle::current(),
        )
    };
    let query = "m1 + m2 * m3";
    for replica_labels in [&[][..], &["replica"][..]] {
        // Three selections, started together: one store delay, not three.
        store.reset();
        let q = querier_with(4, replica_labels);
        let started = Instant::now();
        let out = instant(&q, RequestOptions::default(), query, 1_000).await;
        assert!(out.is_ok(), "{out:?}");
        let took = started.elapsed();
        assert_eq!(store.calls(), 3, "replica labels {replica_labels:?}");
        assert_eq!(
            store.max_in_flight(),
            3,
            "replica labels {replica_labels:?}"
        );
        assert!(
            took < 2 * DELAY,
            "replica labels {replica_labels:?}: three selections took {took:?}"
        );

        // Five selections with three permits: two start early, the others one at a time as
        // evaluation reaches them.
        store.reset();
        let q = querier_with(3, replica_labels);
        let out = tokio::time::timeout(
            Duration::from_secs(30),
            range(
                &q,
                RequestOptions::default(),
                "m1 + m2 + m3 + m4 + m5",
                0,
                60_000,
                15_000,
            ),
        )
        .await
        .expect("selections beyond the early ones still get permits");
        assert!(out.is_ok(), "{out:?}");
        assert_eq!(store.calls(), 5);
        assert_eq!(
            store.max_in_flight(),
            2,
            "replica labels {replica_labels:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_skip_verify_accepts_an_untrusted_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (cert, key) = strata_testutil::tls::self_signed_certificate(&certs);
    let blocks = promtool_blocks(&tmp.path().join("a"), &openmetrics(2, 0, None));
    let bucket = fs_bucket(&tmp.path().join("bucket"));
    upload(&bucket, &blocks, &[("cluster", "eu1")]).await;
    let served = served_tls(bucket, &tmp.path().join("data"), &cert, &key).await;
    let addr = served.addr.to_string();
    let t = T0 + 3_600_000;
    let tls_fanout = |skip_verify: bool, ca: Option<std::path::PathBuf>| {
        let addr = addr.clone();
        async move {
            let set = strata_query::EndpointSet::new(strata_query::EndpointSetConfig {
                // Strict: queried even when its probe failed, so the query shows the failure.
                strict: vec![addr],
                client: strata_query::ClientConfig {
                    tls: true,
                    tls_skip_verify: skip_verify,
                    ca,
                    ..Default::default()
                },
                ..Default::default()
            })
            .unwrap();
            set.update().await;
            let status = set.status();
            (
                strata_query::Fanout {
                    endpoints: set,
                    response_timeout: None,
                    max_wait: Duration::from_secs(30),
                    limits: Default::default(),
                    selector: Default::default(),
                },
                status,
            )
        }
    };
    let abort = RequestOptions {
        partial_response: Some(false),
        ..Default::default()
    };

    // Verified TLS: the self-signed certificate is refused, by the probe and by the query.
    let (f, status) = tls_fanout(false, None).await;
    let err = status[0].last_error.clone().unwrap_or_default();
    assert!(
        status[0].info.is_none() && err.contains("certificate"),
        "{status:?}"
    );
    let err = instant(&querier(f, &[]), abort.clone(), "temperature", t)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&addr), "{err}");

    // --grpc-client-tls-skip-verify: accepted without any CA, over TLS.
    let (f, status) = tls_fanout(true, None).await;
    assert!(status[0].last_error.is_none(), "{status:?}");
    assert_eq!(
        status[0].info.as_ref().map(|i| i.component_type.as_str()),
        Some("store")
    );
    let out = instant(&querier(f, &[]), abort.clone(), "temperature", t)
        .await
        .unwrap();
    assert_eq!(series_of(&out.value).len(), 2);

    // With skip-verify a CA is neither needed nor used.
    let (_, status) = tls_fanout(true, Some(cert.clone())).await;
    assert!(status[0].last_error.is_none(), "{status:?}");

    // Skip-verify still speaks TLS: a plaintext store does not answer it.
    let plain_blocks = fs_bucket(&tmp.path().join("bucket"));
    let plain = Served::start(plain_blocks, &tmp.path().join("data-plain")).await;
    let set = strata_query::EndpointSet::new(strata_query::EndpointSetConfig {
        endpoints: vec![plain.addr.to_string()],
        client: strata_query::ClientConfig {
            tls: true,
            tls_skip_verify: true,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    set.update().await;
    assert!(set.status()[0].last_error.is_some(), "{:?}", set.status());
}

/// A raw XOR chunk of one sample at `t`, on the wire.
fn wire_chunk(t: i64) -> strata_storepb::thanos::AggrChunk {
    use strata_storepb::thanos::{AggrChunk, Chunk, chunk};
    AggrChunk {
        min_time: t,
        max_time: t,
        raw: Some(Chunk {
            r#type: chunk::Encoding::Xor as i32,
            data: strata_tsdb::XorEncoder::encode([(t, 1.0)]).unwrap().into(),
            hash: 0,
        }),
        ..Default::default()
    }
}

fn wire_series(name: &str, times: &[i64]) -> strata_storepb::thanos::Series {
    strata_storepb::thanos::Series {
        labels: vec![strata_storepb::thanos::Label {
            name: "__name__".into(),
            value: name.into(),
        }],
        chunks: times.iter().map(|&t| wire_chunk(t)).collect(),
    }
}

fn batch_frame(
    series: Vec<strata_storepb::thanos::Series>,
) -> strata_storepb::thanos::SeriesResponse {
    use strata_storepb::thanos::{SeriesBatch, SeriesResponse, series_response};
    SeriesResponse {
        result: Some(series_response::Result::Batch(SeriesBatch::of(series))),
    }
}

/// Every selected series in order, with its chunks' start times (the tests' chunks hold one
/// sample each; series whose chunks came out of time order are handed over decoded).
fn chunk_times(series: &[strata_promql::StoredSeries]) -> Vec<(String, Vec<i64>)> {
    series
        .iter()
        .map(|s| {
            let times = match &s.data {
                strata_promql::SeriesData::Chunks(c) => c.iter().map(|c| c.min_time).collect(),
                strata_promql::SeriesData::Floats { timestamps, .. } => timestamps.to_vec(),
                other => panic!("expected samples, got {other:?}"),
            };
            (s.labels.get("__name__").unwrap().to_string(), times)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_selects_merge_as_the_collected_ones_do() {
    // Store A: 2,500 series in frames of 100, series m00099 split across two frames (one
    // chunk in each). Store B: the first ten series again, with later chunks.
    let names: Vec<String> = (0..2500).map(|i| format!("m{i:05}")).collect();
    let mut a_series: Vec<_> = names.iter().map(|n| wire_series(n, &[0])).collect();
    a_series.insert(100, wire_series("m00099", &[500]));
    let mut a = CountingStore::new(Duration::ZERO);
    a.frames = a_series
        .chunks(100)
        .map(|c| batch_frame(c.to_vec()))
        .collect();
    let mut b = CountingStore::new(Duration::ZERO);
    b.frames = vec![batch_frame(
        names[..10]
            .iter()
            .map(|n| wire_series(n, &[1000]))
            .collect(),
    )];
    let ((addr_a, _stop_a), (addr_b, _stop_b)) = (a.start().await, b.start().await);
    let q = querier(
        fanout(&[addr_a.to_string(), addr_b.to_string()], None).await,
        &[],
    );
    let st = std::sync::Arc::new(q.storage_for(&RequestOptions::default()));
    let (streamed, batches, collected) = tokio::task::spawn_blocking(move || {
        let hints = SelectHints {
            start: 0,
            end: 2000,
            ..Default::default()
        };
        let ms = [Matcher::new(strata_model::MatchOp::RegexMatch, "__name__", "m.*").unwrap()];
        let mut streamed = Vec::new();
        let mut batches = 0;
        for b in st.select_batches(&ms, &hints).unwrap() {
            streamed.extend(b.unwrap().series);
            batches += 1;
        }
        let collected = st.select(&ms, &hints).unwrap().series;
        (chunk_times(&streamed), batches, chunk_times(&collected))
    })
    .await
    .unwrap();
    // Handed over in several batches (the engine starts on the first while the rest arrive).
    assert!(batches >= 3, "{batches} batches");
    assert_eq!(streamed, collected);
    let got: Vec<&str> = streamed.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(got, names.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        streamed[0].1,
        [0, 1000],
        "both stores' chunks, in store order"
    );
    assert_eq!(
        streamed[99].1,
        [0, 500],
        "a series split across frames is one series"
    );
    assert_eq!(streamed[100].1, [0]);
}

/// Every series name a streamed select of all series hands over, and its warnings.
async fn select_names(
    q: strata_query::Querier,
    partial: bool,
) -> Result<Result<(Vec<String>, Vec<String>), String>, tokio::task::JoinError> {
    let st = q.storage_for(&RequestOptions {
        partial_response: Some(partial),
        ..Default::default()
    });
    tokio::task::spawn_blocking(move || {
        let hints = SelectHints {
            start: 0,
            end: 1,
            ..Default::default()
        };
        let ms = [Matcher::new(strata_model::MatchOp::RegexMatch, "__name__", ".+").unwrap()];
        let mut out = (Vec::new(), Vec::new());
        for b in st.select_batches(&ms, &hints).map_err(|e| e.to_string())? {
            let b = b.map_err(|e| e.to_string())?;
            out.0
                .extend(chunk_times(&b.series).into_iter().map(|s| s.0));
            out.1.extend(b.warnings);
        }
        Ok::<_, String>(out)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_sending_unsorted_series_is_named() {
    let mut bad = CountingStore::new(Duration::ZERO);
    bad.frames = vec![
        batch_frame(vec![wire_series("b", &[0]), wire_series("c", &[0])]),
        batch_frame(vec![wire_series("a", &[0])]),
    ];
    let (addr, _stop) = bad.start().await;
    let f = fanout(&[addr.to_string()], None).await;
    // Streaming: the merge cannot reorder what it has handed over, so the store is refused
    // by name, as an error or (partial response) a warning.
    let err = select_names(querier(f.clone(), &[]), false)
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        err.contains("out of order") && err.contains(&addr.to_string()),
        "{err}"
    );
    let (got, warnings) = select_names(querier(f.clone(), &[]), true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, ["b", "c"], "what came before the break");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("out of order") && w.contains(&addr.to_string()))
    );
    // Deduplicating, a store that does not strip replica labels itself is collected,
    // stripped and sorted by the querier, so such a store is still sorted.
    let (got, warnings) = select_names(querier(f, &["replica"]), false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, ["a", "b", "c"]);
    assert!(warnings.is_empty());
}

/// Frames are decoded on several tasks at once; a break of the order inside one frame is
/// found too, after the frames before it were handed on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_sending_unsorted_series_within_a_frame_is_named() {
    let mut bad = CountingStore::new(Duration::ZERO);
    let mut frames: Vec<_> = (0..8)
        .map(|i| batch_frame(vec![wire_series(&format!("a{i}"), &[0])]))
        .collect();
    frames.push(batch_frame(vec![
        wire_series("c", &[0]),
        wire_series("b", &[0]),
    ]));
    bad.frames = frames;
    let (addr, _stop) = bad.start().await;
    let q = querier(fanout(&[addr.to_string()], None).await, &[]);
    let (got, warnings) = select_names(q, true).await.unwrap().unwrap();
    let before: Vec<String> = (0..8).map(|i| format!("a{i}")).collect();
    assert_eq!(got, before, "every frame before the break, in order");
    assert!(
        warnings.iter().any(|w| w
            .contains(r#"out of order ({__name__="b"} after {__name__="c"})"#)
            && w.contains(&addr.to_string())),
        "{warnings:?}"
    );
}

/// A store that sends 600 series, `m00000` to `m00599`, in frames of 100, then stalls.
fn stalls_after_600_series() -> CountingStore {
    let names: Vec<String> = (0..600).map(|i| format!("m{i:05}")).collect();
    let mut store = CountingStore::new(Duration::ZERO);
    store.frames = names
        .chunks(100)
        .map(|c| batch_frame(c.iter().map(|n| wire_series(n, &[0])).collect()))
        .collect();
    store.hang = true;
    store
}

/// A deduplicating select streams too: with `without_replica_labels` pushed down to a store
/// that strips them itself, replicas arrive together, and the first series reach the engine
/// while the store has stalled (collected first, nothing would arrive before the store's
/// response timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deduplicating_select_streams_what_has_arrived() {
    let mut store = stalls_after_600_series();
    store.claims_to_strip = true;
    let (addr, _stop) = store.start().await;
    let f = fanout(&[addr.to_string()], Some(Duration::from_secs(20))).await;
    let st = querier(f, &["replica"]).storage_for(&RequestOptions::default());
    let (first, took) = tokio::task::spawn_blocking(move || {
        let hints = SelectHints {
            start: 0,
            end: 1,
            ..Default::default()
        };
        let ms = [Matcher::new(strata_model::MatchOp::RegexMatch, "__name__", "m.*").unwrap()];
        let started = Instant::now();
        let mut batches = st.select_batches(&ms, &hints).unwrap();
        let first = batches.next().unwrap().unwrap();
        (chunk_times(&first.series), started.elapsed())
    })
    .await
    .unwrap();
    assert!(took < Duration::from_secs(10), "first batch after {took:?}");
    assert_eq!(first.len(), strata_query::fanout::STREAM_FIRST_BATCH);
    assert_eq!(first[0], ("m00000".to_string(), vec![0]));
}

/// The querier's Store API hands on merged series while its stores are still sending: a
/// querier above it receives the first series although the store below has stalled (with
/// the whole selection collected first, nothing would arrive before the store's
/// response timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_querier_store_api_streams_what_has_arrived() {
    use strata_storepb::thanos::store_client::StoreClient;
    use strata_storepb::thanos::{SeriesRequest, series_response};
    let store = stalls_after_600_series();
    let (addr, _stop) = store.start().await;
    let timeout = Duration::from_secs(20);
    let (mid, _stop_mid) = serve_querier(fanout(&[addr.to_string()], Some(timeout)).await).await;
    let mut client = StoreClient::connect(format!("http://{mid}")).await.unwrap();
    let started = Instant::now();
    let mut stream = client
        .series(SeriesRequest {
            min_time: 0,
            max_time: 1,
            matchers: vec![strata_storepb::thanos::LabelMatcher {
                r#type: 2, // regex match
                name: "__name__".into(),
                value: "m.*".into(),
            }],
            response_batch_size: 64,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut got: Vec<String> = Vec::new();
    while got.len() < strata_query::fanout::STREAM_FIRST_BATCH {
        let frame = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("frames while the store below stalls")
            .unwrap()
            .expect("the call still open");
        let Some(series_response::Result::Batch(b)) = frame.result else {
            panic!("expected a batch frame, got {frame:?}");
        };
        assert!(b.series.len() <= 64, "{} series in a frame", b.series.len());
        got.extend(b.series.iter().map(|s| s.labels[0].value.clone()));
    }
    assert!(
        started.elapsed() < timeout / 2,
        "took {:?}",
        started.elapsed()
    );
    let want: Vec<String> = (0..got.len()).map(|i| format!("m{i:05}")).collect();
    assert_eq!(got, want);
}

/// `without_replica_labels` through the querier's Store API, from a store that does not
/// strip labels itself (its Info does not say it can, like Thanos stores before v0.31): the
/// fan-out strips its answer, re-sorts it (stripping reorders series here) and joins the
/// series that became equal, chunks of both kept; `limit` counts the stripped series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_labels_are_stripped_for_a_store_that_cannot() {
    use strata_storepb::thanos::store_client::StoreClient;
    use strata_storepb::thanos::{Label, Series, SeriesRequest};
    let series = |pairs: &[(&str, &str)], t: i64| Series {
        labels: pairs
            .iter()
            .map(|(n, v)| Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        chunks: vec![wire_chunk(t)],
    };
    let mut store = CountingStore::new(Duration::ZERO);
    store.frames = vec![
        batch_frame(vec![
            series(
                &[("__name__", "m"), ("a", "1"), ("replica", "x"), ("z", "2")],
                10,
            ),
            series(
                &[("__name__", "m"), ("a", "1"), ("replica", "y"), ("z", "1")],
                20,
            ),
        ]),
        batch_frame(vec![
            series(
                &[("__name__", "m"), ("a", "1"), ("replica", "y"), ("z", "2")],
                30,
            ),
            series(&[("__name__", "m"), ("b", "1"), ("replica", "x")], 40),
        ]),
    ];
    // A client of a querier whose only store is `store`, the store's address, and both
    // servers' stop handles.
    let via_querier = async |store: CountingStore| {
        let (addr, stop_store) = store.start().await;
        let (mid, stop_mid) = serve_querier(fanout(&[addr.to_string()], None).await).await;
        let client = StoreClient::connect(format!("http://{mid}")).await.unwrap();
        (client, addr, (stop_store, stop_mid))
    };
    let (mut client, _, _stops) = via_querier(store.clone()).await;
    let call = |limit: i64, strip: Vec<String>| SeriesRequest {
        min_time: 0,
        max_time: 100,
        matchers: vec![strata_storepb::thanos::LabelMatcher {
            r#type: 0,
            name: "__name__".into(),
            value: "m".into(),
        }],
        without_replica_labels: strip,
        response_batch_size: 2,
        limit,
        ..Default::default()
    };
    let read = async |client: &mut StoreClient<tonic::transport::Channel>, req| {
        let mut stream = client.series(req).await.unwrap().into_inner();
        let mut got = Vec::new();
        while let Some(frame) = stream.message().await.unwrap() {
            use strata_storepb::thanos::series_response::Result as R;
            let batch = match frame.result {
                Some(R::Batch(b)) => b.series,
                Some(R::Series(s)) => vec![s],
                other => panic!("unexpected frame {other:?}"),
            };
            for s in batch {
                let labels: Vec<String> = s
                    .labels
                    .iter()
                    .map(|l| format!("{}={}", l.name, l.value))
                    .collect();
                let times: Vec<i64> = s.chunks.iter().map(|c| c.min_time).collect();
                got.push((labels.join(","), times));
            }
        }
        got
    };
    let stripped = vec!["replica".to_string()];
    assert_eq!(
        read(&mut client, call(0, stripped.clone())).await,
        [
            ("__name__=m,a=1,z=1".to_string(), vec![20]),
            ("__name__=m,a=1,z=2".to_string(), vec![10, 30]),
            ("__name__=m,b=1".to_string(), vec![40]),
        ]
    );
    assert_eq!(
        read(&mut client, call(2, stripped)).await,
        [
            ("__name__=m,a=1,z=1".to_string(), vec![20]),
            ("__name__=m,a=1,z=2".to_string(), vec![10, 30]),
        ]
    );
    // Nothing to strip: the store's series as sent.
    assert_eq!(read(&mut client, call(0, Vec::new())).await.len(), 4);

    // A store that says it strips but leaves the labels on (as Thanos' sidecar does with
    // labels that are not external): the querier removes them too. Seen in its first frame,
    // its answer is collected and sorted, as for a store that cannot strip.
    let mut liar = store.clone();
    liar.claims_to_strip = true;
    let (mut client, _, _stops) = via_querier(liar).await;
    assert_eq!(
        read(&mut client, call(0, vec!["replica".to_string()])).await,
        [
            ("__name__=m,a=1,z=1".to_string(), vec![20]),
            ("__name__=m,a=1,z=2".to_string(), vec![10, 30]),
            ("__name__=m,b=1".to_string(), vec![40]),
        ]
    );
    // Seen only after series were handed on, where removing them breaks the store's order:
    // the call fails naming the store instead of answering out of order.
    let mut liar = store.clone();
    liar.claims_to_strip = true;
    liar.frames.insert(
        0,
        batch_frame(vec![series(&[("__name__", "m"), ("a", "0")], 5)]),
    );
    let (mut client, liar_addr, _stops) = via_querier(liar).await;
    let mut req = call(0, vec!["replica".to_string()]);
    req.partial_response_disabled = true;
    let mut stream = client.series(req).await.unwrap().into_inner();
    let err = loop {
        match stream.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the call ended without an error"),
            Err(e) => break e,
        }
    };
    assert!(
        err.message().contains("out of order") && err.message().contains(&liar_addr.to_string()),
        "{err:?}"
    );
    // Where removing them keeps the order, the answer is the stripped series.
    let mut liar = CountingStore::new(Duration::ZERO);
    liar.claims_to_strip = true;
    liar.frames = vec![batch_frame(vec![
        series(&[("__name__", "m"), ("a", "1"), ("replica", "x")], 10),
        series(&[("__name__", "m"), ("a", "2"), ("replica", "x")], 20),
    ])];
    let (mut client, _, _stops) = via_querier(liar).await;
    assert_eq!(
        read(&mut client, call(0, vec!["replica".to_string()])).await,
        [
            ("__name__=m,a=1".to_string(), vec![10]),
            ("__name__=m,a=2".to_string(), vec![20]),
        ]
    );
}
