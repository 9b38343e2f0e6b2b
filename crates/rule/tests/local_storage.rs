//! The ruler's local storage end to end: samples over more than 3h are cut into blocks by
//! the periodic task, the blocks are read back by Prometheus' own `promtool` (2.42), the
//! Store API is called over gRPC across the block/head boundary, and retention deletes the
//! oldest block.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use strata_model::Labels;
use strata_rule::storage::{LocalStorage, LocalStorageOptions};
use strata_rule::{Appender, RecordedSample};
use strata_storepb::convert::{label_matcher, labels_to_model};
use strata_storepb::thanos::info::InfoRequest;
use strata_storepb::thanos::info::info_client::InfoClient;
use strata_storepb::thanos::label_matcher::Type;
use strata_storepb::thanos::store_client::StoreClient;
use strata_storepb::thanos::{LabelValuesRequest, SeriesRequest, series_response};
use strata_testutil::prometheus::{analyze, dump};

const H: i64 = 3_600_000;
const STALE: u64 = 0x7ff0_0000_0000_0002;

/// `(labels, t, value bits)` of every sample, sorted.
type Samples = BTreeMap<(Labels, i64), u64>;

fn workload(start: i64, end: i64) -> Vec<RecordedSample> {
    let mut out = Vec::new();
    let rec = Labels::from_pairs(&[("__name__", "job:up:sum"), ("job", "api")]);
    let rec2 = Labels::from_pairs(&[("__name__", "job:up:sum"), ("job", "db")]);
    let alert = Labels::from_pairs(&[
        ("__name__", "ALERTS"),
        ("alertname", "Down"),
        ("alertstate", "firing"),
    ]);
    let mut i = 0u64;
    let mut t = start;
    while t < end {
        out.push(RecordedSample {
            labels: rec.clone(),
            timestamp_ms: t,
            value: (i as f64) * 0.1 + 1e-3,
        });
        if i.is_multiple_of(3) {
            out.push(RecordedSample {
                labels: rec2.clone(),
                timestamp_ms: t + 7,
                value: -(i as f64) / 7.0,
            });
        }
        // The alert fires for 40 minutes of every hour and is marked stale in between.
        let minute = (t - start) / 60_000 % 60;
        if minute < 40 {
            out.push(RecordedSample {
                labels: alert.clone(),
                timestamp_ms: t,
                value: 1.0,
            });
        } else if minute == 40 && (t - start) % 60_000 < 15_000 {
            out.push(RecordedSample {
                labels: alert.clone(),
                timestamp_ms: t,
                value: f64::from_bits(STALE),
            });
        }
        i += 1;
        t += 15_000;
    }
    out
}

fn index(samples: &[RecordedSample], mint: i64, maxt: i64) -> Samples {
    samples
        .iter()
        .filter(|s| s.timestamp_ms >= mint && s.timestamp_ms <= maxt)
        .map(|s| ((s.labels.clone(), s.timestamp_ms), s.value.to_bits()))
        .collect()
}

fn storage(dir: &std::path::Path, retention: Duration) -> Arc<LocalStorage> {
    LocalStorage::open(
        dir,
        LocalStorageOptions {
            block_duration: Duration::from_secs(2 * 3600),
            retention,
            external_labels: Labels::from_pairs(&[("cluster", "eu1"), ("replica", "r0")]),
            maintenance_interval: Duration::from_millis(20),
        },
        &mut Registry::default(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_read_by_promtool_store_api_over_grpc_and_retention() {
    let dir = tempfile::tempdir().unwrap();
    // Two hours aligned, in the past; samples from 00:30 to 06:10.
    let base = 1_700_000_000_000 / (2 * H) * (2 * H);
    let (start, end) = (base + H / 2, base + 6 * H + H / 6);
    let samples = workload(start, end);
    let st = storage(dir.path(), Duration::from_secs(48 * 3600));
    // Appended the way evaluation hands samples over: one timestamp's worth at a time.
    let mut batch = Vec::new();
    for s in &samples {
        if batch
            .last()
            .is_some_and(|b: &RecordedSample| b.timestamp_ms / 15_000 != s.timestamp_ms / 15_000)
        {
            Appender::append(&*st, std::mem::take(&mut batch));
        }
        batch.push(s.clone());
    }
    Appender::append(&*st, batch);

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(Arc::clone(&st).run(async {
        let _ = stopped.await;
    }));
    for _ in 0..500 {
        if st.blocks().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let blocks = st.blocks();
    assert_eq!(
        blocks.len(),
        2,
        "two blocks cut: [00:30, 02:00) and [02:00, 04:00)"
    );
    assert_eq!(
        blocks
            .iter()
            .map(|b| (b.meta().min_time, b.meta().max_time))
            .collect::<Vec<_>>(),
        vec![(start, base + 2 * H), (base + 2 * H, base + 4 * H)]
    );
    assert_eq!(st.head_range().unwrap().0, base + 4 * H);
    for b in blocks.iter() {
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(b.dir().join("meta.json")).unwrap()).unwrap();
        assert_eq!(meta["thanos"]["source"], "ruler");
        assert_eq!(meta["thanos"]["downsample"]["resolution"], 0);
        assert_eq!(meta["thanos"]["labels"]["cluster"], "eu1");
        assert_eq!(meta["thanos"]["labels"]["replica"], "r0");
    }

    // (a) Prometheus reads the blocks: analyze each, dump all, compare exactly.
    for b in blocks.iter() {
        let report = analyze(dir.path(), &b.meta().ulid.to_string()).unwrap();
        assert!(report.contains(&b.meta().ulid.to_string()), "{report}");
    }
    let mut dumped = Samples::new();
    for d in dump(dir.path()).unwrap() {
        let labels = Labels::from_pairs(&d.labels);
        let bits = if d.value.is_nan() {
            // promtool prints every NaN as `NaN`: only stale markers are appended as NaN.
            STALE
        } else {
            d.value.to_bits()
        };
        assert!(
            dumped.insert((labels, d.t), bits).is_none(),
            "sample dumped twice"
        );
    }
    let want = index(&samples, start, base + 4 * H - 1);
    assert!(want.values().any(|&b| b == STALE));
    assert_eq!(dumped.len(), want.len());
    assert!(
        dumped == want,
        "promtool's dump differs from what was appended"
    );

    // (b) The Store API over gRPC, blocks and head merged.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_grpc, grpc_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(strata_storepb::server::serve(
        listener,
        st.store_service(),
        None,
        async {
            let _ = grpc_stopped.await;
        },
    ));
    let mut client = StoreClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let series = |mint: i64, maxt: i64, matchers| SeriesRequest {
        min_time: mint,
        max_time: maxt,
        matchers,
        ..Default::default()
    };
    let ext = Labels::from_pairs(&[("cluster", "eu1"), ("replica", "r0")]);
    let mut call = async |req: SeriesRequest| {
        let mut stream = client.series(req).await.unwrap().into_inner();
        let mut got = Samples::new();
        let mut order = Vec::new();
        while let Some(frame) = stream.message().await.unwrap() {
            let Some(series_response::Result::Series(s)) = frame.result else {
                panic!("unexpected frame {frame:?}");
            };
            let labels = labels_to_model(s.labels);
            let mut last = i64::MIN;
            for c in s.chunks {
                assert!(c.min_time > last, "chunks in time order");
                last = c.max_time;
                let raw = c.raw.unwrap().to_raw().unwrap();
                for (t, v) in strata_tsdb::block::decode_xor(&raw).unwrap() {
                    assert!(got.insert((labels.clone(), t), v.to_bits()).is_none());
                }
            }
            order.push(labels);
        }
        (order, got)
    };
    let (order, got) = call(series(i64::MIN, i64::MAX, vec![])).await;
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "series sorted by labels");
    assert_eq!(order.len(), 3);
    assert!(order.iter().all(|l| l.get("cluster") == Some("eu1")));
    let served: Samples = index(&samples, i64::MIN, i64::MAX)
        .into_iter()
        .map(|((l, t), v)| ((l.merged_with(&ext), t), v))
        .collect();
    assert!(
        got == served,
        "the Store API's samples differ from what was appended"
    );

    // A range across the block/head boundary (04:00): whole chunks overlapping it.
    let (order, got) = call(series(
        base + 3 * H,
        base + 5 * H,
        vec![label_matcher(Type::Eq, "job", "api")],
    ))
    .await;
    assert_eq!(order.len(), 1);
    let ts: Vec<i64> = got.keys().map(|k| k.1).collect();
    assert!(ts.first().unwrap() <= &(base + 3 * H) && ts.last().unwrap() >= &(base + 5 * H));
    assert!(ts.iter().any(|&t| t < base + 4 * H) && ts.iter().any(|&t| t >= base + 4 * H));
    for (k, v) in &got {
        assert_eq!(served.get(k), Some(v));
    }
    let values = client
        .label_values(LabelValuesRequest {
            label: "job".into(),
            start: base,
            end: base + 7 * H,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .values;
    assert_eq!(values, vec!["api", "db"]);
    let mut info = InfoClient::connect(format!("http://{addr}")).await.unwrap();
    let info = info.info(InfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.component_type, "rule");
    assert_eq!(info.store.unwrap().min_time, start);
    stop_grpc.send(()).unwrap();
    server.await.unwrap().unwrap();
    stop.send(()).unwrap();
    task.await.unwrap();

    // (c) Retention: reopened with 1h, the block ending 2h before the newest goes.
    let oldest = blocks[0].meta().ulid;
    drop(blocks);
    drop(st);
    let st = storage(dir.path(), Duration::from_secs(3600));
    assert_eq!(st.blocks().len(), 2);
    assert_eq!(st.apply_retention().unwrap(), vec![oldest]);
    assert!(!dir.path().join(oldest.to_string()).exists());
    assert_eq!(st.blocks().len(), 1);
}
