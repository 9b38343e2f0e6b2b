use std::sync::Mutex as StdMutex;

use strata_storepb::convert::{label_matcher, labels_to_model};
use strata_storepb::limits::RequestLimits;
use strata_storepb::thanos::label_matcher::Type;

use super::*;
use crate::group::STALE_NAN;

const H: i64 = 3_600_000;

fn opts(ext: &[(&str, &str)]) -> LocalStorageOptions {
    LocalStorageOptions {
        block_duration: Duration::from_secs(2 * 3600),
        retention: Duration::from_secs(48 * 3600),
        external_labels: Labels::from_pairs(ext),
        maintenance_interval: Duration::from_millis(10),
    }
}

fn open(dir: &Path, ext: &[(&str, &str)]) -> Arc<LocalStorage> {
    LocalStorage::open(dir, opts(ext), &mut Registry::default()).unwrap()
}

fn sample(labels: &[(&str, &str)], t: i64, v: f64) -> RecordedSample {
    RecordedSample {
        labels: Labels::from_pairs(labels),
        timestamp_ms: t,
        value: v,
    }
}

/// A series' samples every minute over `[from, to)`, value `t / 1000 + k`.
fn series(labels: &[(&str, &str)], from: i64, to: i64, k: f64) -> Vec<RecordedSample> {
    (from..to)
        .step_by(60_000)
        .map(|t| sample(labels, t, (t / 1000) as f64 + k))
        .collect()
}

fn bits(samples: &[(i64, f64)]) -> Vec<(i64, u64)> {
    samples.iter().map(|&(t, v)| (t, v.to_bits())).collect()
}

fn expected(s: &[RecordedSample], mint: i64, maxt: i64) -> Vec<(i64, u64)> {
    s.iter()
        .filter(|s| s.timestamp_ms >= mint && s.timestamp_ms <= maxt)
        .map(|s| (s.timestamp_ms, s.value.to_bits()))
        .collect()
}

/// Runs a Series call and returns each series' served labels and decoded samples.
async fn query(store: &LocalStore, req: SeriesRequest) -> Vec<(Labels, Vec<(i64, u64)>)> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    store.stream_series(req, &tx).await.unwrap();
    drop(tx);
    let mut out = Vec::new();
    while let Some(frame) = rx.recv().await {
        let series = match frame.unwrap().result.unwrap() {
            series_response::Result::Series(s) => vec![s],
            series_response::Result::Batch(b) => b.series,
            other => panic!("unexpected frame {other:?}"),
        };
        for s in series {
            let mut samples = Vec::new();
            let mut last = i64::MIN;
            for c in &s.chunks {
                let raw = c.raw.as_ref().unwrap().to_raw().unwrap();
                let decoded = strata_tsdb::block::decode_xor(&raw).unwrap();
                assert_eq!(decoded.first().unwrap().0, c.min_time);
                assert_eq!(decoded.last().unwrap().0, c.max_time);
                assert!(c.min_time > last, "chunks in time order");
                last = c.max_time;
                samples.extend(bits(&decoded));
            }
            out.push((labels_to_model(s.labels), samples));
        }
    }
    out
}

fn req(mint: i64, maxt: i64, matchers: Vec<LabelMatcher>) -> SeriesRequest {
    SeriesRequest {
        min_time: mint,
        max_time: maxt,
        matchers,
        ..Default::default()
    }
}

use strata_storepb::thanos::{
    LabelMatcher, LabelNamesRequest, LabelValuesRequest, SeriesRequest, series_response,
};

#[test]
fn appends_keep_stale_markers_and_count_out_of_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut registry = Registry::default();
    let st = LocalStorage::open(dir.path(), opts(&[]), &mut registry).unwrap();
    let a = [("__name__", "a")];
    Appender::append(
        &*st,
        vec![
            sample(&a, 1000, 1.0),
            sample(&a, 2000, STALE_NAN),
            sample(&a, 1500, 3.0),
            sample(&a, 2000, STALE_NAN),
            // Refused, as Prometheus refuses them: no block could hold them.
            sample(&[], 3000, 1.0),
            sample(&[("", "x")], 3000, 1.0),
        ],
    );
    assert_eq!(st.head_range(), Some((1000, 2000)));
    assert_eq!(st.head_series(), 1);
    let h = lock(&st.head);
    let s = h.series.values().next().unwrap();
    let c = s.chunks(i64::MIN, i64::MAX);
    let got = bits(&strata_tsdb::block::decode_xor(&c[0].2).unwrap());
    assert_eq!(
        got,
        vec![(1000, 1f64.to_bits()), (2000, 0x7ff0_0000_0000_0002)]
    );
    drop(h);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(text.contains("prometheus_tsdb_out_of_order_samples_total{type=\"float\"} 1\n"));
    assert!(text.contains("prometheus_tsdb_head_samples_appended_total{type=\"float\"} 2\n"));
    assert!(text.contains("prometheus_tsdb_head_series 1\n"));
    assert!(text.contains("prometheus_tsdb_head_chunks 1\n"), "{text}");
}

#[test]
fn blocks_are_cut_on_aligned_ranges_once_the_head_spans_one_and_a_half() {
    let dir = tempfile::tempdir().unwrap();
    let st = open(dir.path(), &[("replica", "r1")]);
    let base = 1_000 * 2 * H; // aligned on 2h
    let a = series(
        &[("__name__", "a")],
        base + H / 2,
        base + 3 * H + H / 2,
        0.0,
    );
    st.append_samples(a[..a.len() - 1].to_vec());
    // Head spans exactly 3h - 1min: nothing to cut.
    assert!(st.cut_blocks().unwrap().is_empty());
    st.append_samples(a[a.len() - 1..].to_vec());
    st.append_samples(series(
        &[("__name__", "a")],
        base + 3 * H + H / 2,
        base + 3 * H + H / 2 + 120_001,
        0.0,
    ));
    let ids = st.cut_blocks().unwrap();
    assert_eq!(ids.len(), 1);
    let blocks = st.blocks();
    let b = &blocks[0];
    assert_eq!(
        (b.meta().min_time, b.meta().max_time),
        (base + H / 2, base + 2 * H)
    );
    let t = b.meta().thanos.as_ref().unwrap();
    assert_eq!(t.source, "ruler");
    assert_eq!(t.downsample.resolution, 0);
    assert_eq!(t.labels.get("replica").map(String::as_str), Some("r1"));
    // The block holds exactly the range; the head the rest.
    let ids = b.select(&[]).unwrap();
    let got = b.series_samples(ids[0], i64::MIN, i64::MAX).unwrap();
    let want = expected(&a, base, base + 2 * H - 1);
    assert_eq!(
        got.timestamps
            .iter()
            .zip(&got.values)
            .map(|(&t, &v)| (t, v.to_bits()))
            .collect::<Vec<_>>(),
        want
    );
    assert_eq!(st.head_range().unwrap().0, base + 2 * H);
    // The persisted range is closed to new samples.
    st.append_samples(vec![sample(&[("__name__", "new")], base + 2 * H - 1, 1.0)]);
    assert_eq!(st.head_series(), 1);
    // Reopening loads the block and keeps it closed too.
    drop(blocks);
    drop(st);
    let st = open(dir.path(), &[("replica", "r1")]);
    assert_eq!(st.blocks().len(), 1);
    st.append_samples(vec![sample(&[("__name__", "new")], base + 2 * H - 1, 1.0)]);
    assert_eq!(st.head_series(), 0);
    st.append_samples(vec![sample(&[("__name__", "new")], base + 2 * H, 1.0)]);
    assert_eq!(st.head_series(), 1);
}

#[test]
fn a_block_that_fails_to_open_is_removed_and_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let st = open(dir.path(), &[]);
    let a = series(&[("__name__", "a")], 0, 3 * H + 120_001, 1.0);
    st.append_samples(a.clone());
    st.fail_next_open
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let e = st.cut_blocks().unwrap_err();
    assert!(matches!(e, StorageError::LoadBlock { .. }), "{e}");
    // Nothing of it is left on disk, and the head still holds its samples.
    let block_dirs = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.path().join("meta.json").exists())
            .count()
    };
    assert_eq!(block_dirs(), 0);
    assert_eq!(st.head_range().unwrap().0, 0);
    // The next cut writes the range once.
    assert_eq!(st.cut_blocks().unwrap().len(), 1);
    assert_eq!(block_dirs(), 1);
    drop(st);
    let st = open(dir.path(), &[]);
    assert_eq!(st.blocks().len(), 1);
    let b = &st.blocks()[0];
    assert_eq!((b.meta().min_time, b.meta().max_time), (0, 2 * H));
}

#[test]
fn a_gap_in_the_head_is_skipped_by_the_next_cut() {
    let dir = tempfile::tempdir().unwrap();
    let st = open(dir.path(), &[]);
    let a = [("__name__", "a")];
    st.append_samples(vec![sample(&a, 0, 1.0), sample(&a, 10 * H, 2.0)]);
    let ids = st.cut_blocks().unwrap();
    assert_eq!(ids.len(), 1);
    assert_eq!(st.blocks().len(), 1);
    assert_eq!(st.head_range(), Some((10 * H, 10 * H)));
}

#[test]
fn retention_deletes_blocks_ending_long_before_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(&[]);
    o.retention = Duration::from_secs(3600);
    let st = LocalStorage::open(dir.path(), o, &mut Registry::default()).unwrap();
    st.append_samples(series(&[("__name__", "a")], 0, 7 * H, 0.0));
    let ids = st.cut_blocks().unwrap();
    assert_eq!(ids.len(), 2); // [0,2h), [2h,4h); the head keeps [4h,7h)
    // A query holding the old block delays its deletion.
    let held = st.blocks();
    let gone = st.apply_retention().unwrap();
    assert_eq!(gone, vec![ids[0]]);
    assert!(dir.path().join(ids[0].to_string()).exists());
    drop(held);
    st.apply_retention().unwrap();
    assert!(!dir.path().join(ids[0].to_string()).exists());
    assert!(dir.path().join(ids[1].to_string()).exists());
    assert_eq!(st.blocks().len(), 1);
    drop(st);

    // A retention of 0 keeps everything, as in Prometheus.
    let mut o = opts(&[]);
    o.retention = Duration::ZERO;
    let st = LocalStorage::open(dir.path(), o, &mut Registry::default()).unwrap();
    st.append_samples(series(&[("__name__", "a")], 7 * H, 40 * H, 0.0));
    assert!(st.cut_blocks().unwrap().len() > 10);
    assert!(st.apply_retention().unwrap().is_empty());
}

#[tokio::test]
async fn series_are_selected_merged_and_labelled() {
    let dir = tempfile::tempdir().unwrap();
    let st = open(dir.path(), &[("cluster", "eu"), ("replica", "r1")]);
    let a = series(&[("__name__", "a"), ("job", "x")], 0, 5 * H, 0.0);
    // Its own `cluster` label is overridden by the external one.
    let b = series(&[("__name__", "b"), ("cluster", "own")], 0, 5 * H, 0.5);
    let c = series(&[("__name__", "a"), ("job", "y")], 3 * H, 5 * H, 0.25);
    st.append_samples(a.clone());
    st.append_samples(b.clone());
    st.append_samples(c.clone());
    assert_eq!(st.cut_blocks().unwrap().len(), 1); // [0,2h)
    let store = st.store_service();

    // Everything: across block and head, sorted by served labels.
    let got = query(&store, req(i64::MIN, i64::MAX, vec![])).await;
    let names: Vec<String> = got.iter().map(|(l, _)| l.to_string()).collect();
    assert_eq!(
        names,
        vec![
            r#"{__name__="a", cluster="eu", job="x", replica="r1"}"#,
            r#"{__name__="a", cluster="eu", job="y", replica="r1"}"#,
            r#"{__name__="b", cluster="eu", replica="r1"}"#,
        ]
    );
    assert_eq!(got[0].1, expected(&a, i64::MIN, i64::MAX));
    assert_eq!(got[1].1, expected(&c, i64::MIN, i64::MAX));
    assert_eq!(got[2].1, expected(&b, i64::MIN, i64::MAX));

    // Matchers and a time range: chunks overlapping the range are sent whole.
    let got = query(
        &store,
        req(
            H,
            3 * H,
            vec![
                label_matcher(Type::Re, "job", "x|z"),
                label_matcher(Type::Eq, "cluster", "eu"),
            ],
        ),
    )
    .await;
    assert_eq!(got.len(), 1);
    let ts: Vec<i64> = got[0].1.iter().map(|s| s.0).collect();
    assert!(*ts.first().unwrap() <= H && *ts.last().unwrap() >= 3 * H);
    // Only series with data in the range.
    let got = query(
        &store,
        req(0, H, vec![label_matcher(Type::Eq, "__name__", "a")]),
    )
    .await;
    assert_eq!(got.len(), 1);
    // An external label matcher that does not match selects nothing.
    let got = query(
        &store,
        req(0, 5 * H, vec![label_matcher(Type::Eq, "cluster", "own")]),
    )
    .await;
    assert!(got.is_empty());

    // without_replica_labels, skip_chunks, batching and limit.
    let mut r = req(
        i64::MIN,
        i64::MAX,
        vec![label_matcher(Type::Eq, "__name__", "a")],
    );
    r.without_replica_labels = vec!["replica".into()];
    r.skip_chunks = true;
    r.response_batch_size = 10;
    r.limit = 1;
    let got = query(&store, r).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].0.to_string(),
        r#"{__name__="a", cluster="eu", job="x"}"#
    );
    assert!(got[0].1.is_empty());

    // Label APIs.
    let names = store
        .label_names_answer(&LabelNamesRequest {
            start: 0,
            end: 5 * H,
            without_replica_labels: vec!["replica".into()],
            ..Default::default()
        })
        .unwrap()
        .names;
    assert_eq!(names, vec!["__name__", "cluster", "job"]);
    let values = |label: &str, start, end| {
        store
            .label_values_answer(&LabelValuesRequest {
                label: label.into(),
                start,
                end,
                ..Default::default()
            })
            .unwrap()
            .values
    };
    assert_eq!(values("job", 0, 5 * H), vec!["x", "y"]);
    assert_eq!(values("job", 0, H), vec!["x"]);
    assert_eq!(values("cluster", 0, 5 * H), vec!["eu"]);

    // Info: the oldest sample to +inf, external labels, rules.
    let info = store.info_response();
    assert_eq!(info.component_type, "rule");
    let s = info.store.unwrap();
    assert_eq!((s.min_time, s.max_time), (0, i64::MAX));
    assert!(info.rules.is_some());
    assert_eq!(
        labels_to_model(info.label_sets[0].labels.clone()).to_string(),
        r#"{cluster="eu", replica="r1"}"#
    );
}

/// External labels can reorder series: `{a="1"}` precedes `{a="1",b="2"}` in a block,
/// but with `cluster` added `{a="1",b="2",cluster=…}` sorts first. Served order follows the
/// served labels, whatever the source.
#[tokio::test]
async fn series_are_ordered_by_served_labels() {
    let dir = tempfile::tempdir().unwrap();
    let st = open(dir.path(), &[("cluster", "eu")]);
    for l in [
        &[("a", "1")][..],
        &[("a", "1"), ("b", "2")],
        &[("a", "1"), ("d", "4")],
    ] {
        st.append_samples(series(l, 0, 4 * H, 0.0));
    }
    st.cut_blocks().unwrap();
    let store = st.store_service();
    let got = query(&store, req(i64::MIN, i64::MAX, vec![])).await;
    let names: Vec<String> = got.iter().map(|(l, _)| l.to_string()).collect();
    assert_eq!(
        names,
        vec![
            r#"{a="1", b="2", cluster="eu"}"#,
            r#"{a="1", cluster="eu"}"#,
            r#"{a="1", cluster="eu", d="4"}"#,
        ]
    );
    // Every sample once, block then head.
    assert!(got.iter().all(|(_, s)| s.len() == 240));
}

#[derive(Debug, Default)]
struct RecordingWal {
    series: StdMutex<Vec<(u64, Labels)>>,
    samples: StdMutex<Vec<SampleRecord>>,
    truncated: StdMutex<Vec<i64>>,
}

impl WalHook for RecordingWal {
    fn log(&self, series: &[SeriesRecord<'_>], samples: &[SampleRecord]) {
        self.series
            .lock()
            .unwrap()
            .extend(series.iter().map(|s| (s.series_ref, s.labels.clone())));
        self.samples.lock().unwrap().extend_from_slice(samples);
    }
    fn truncated(&self, mint: i64, _live: &[u64]) {
        self.truncated.lock().unwrap().push(mint);
    }
}

#[tokio::test]
async fn the_wal_hook_sees_what_replay_rebuilds() {
    let dir = tempfile::tempdir().unwrap();
    let st = open(dir.path(), &[]);
    let wal = Arc::new(RecordingWal::default());
    st.set_wal_hook(wal.clone());
    let a = [("__name__", "a")];
    let b = [("__name__", "b")];
    st.append_samples(vec![
        sample(&a, 1000, 1.0),
        sample(&b, 1000, 2.0),
        sample(&a, 500, 9.0),
    ]);
    st.append_samples(vec![sample(&a, 2000, STALE_NAN)]);
    let series = wal.series.lock().unwrap().clone();
    let samples = wal.samples.lock().unwrap().clone();
    assert_eq!(series.len(), 2);
    assert_eq!(samples.len(), 3);

    let dir2 = tempfile::tempdir().unwrap();
    let st2 = open(dir2.path(), &[]);
    // A sample for an unknown ref is skipped.
    let mut replayed = samples.clone();
    replayed.push(SampleRecord {
        series_ref: 99,
        timestamp_ms: 1,
        value: 0.0,
    });
    let stats = st2.replay(series.clone(), replayed);
    assert_eq!(
        stats,
        ReplayStats {
            series: 2,
            samples: 3,
            unknown_refs: 1,
            dropped: 0
        }
    );
    let all = |s: &Arc<LocalStorage>| {
        let s = s.store_service();
        async move { query(&s, req(i64::MIN, i64::MAX, vec![])).await }
    };
    assert_eq!(all(&st).await, all(&st2).await);
    // A replayed ref already taken by another series gets a fresh one, past every ref the
    // log used (99, whose series record is gone, included).
    let stats = st2.replay(
        vec![(1, Labels::from_pairs(&[("__name__", "z")]))],
        vec![SampleRecord {
            series_ref: 1,
            timestamp_ms: 5000,
            value: 5.0,
        }],
    );
    assert_eq!(stats.samples, 1);
    assert_eq!(
        lock(&st2.head).refs[&Labels::from_pairs(&[("__name__", "z")])],
        100
    );
    assert_eq!(lock(&st2.head).series[&1].labels, series[0].1);
    // New series after replay get fresh refs.
    st2.append_samples(vec![sample(&[("__name__", "c")], 3000, 1.0)]);
    assert_eq!(
        lock(&st2.head).refs[&Labels::from_pairs(&[("__name__", "c")])],
        101
    );

    st.append_samples(series_after(&a, 2000));
    st.cut_blocks().unwrap();
    assert_eq!(*wal.truncated.lock().unwrap(), vec![2 * H]);
}

#[tokio::test]
async fn series_calls_past_the_request_limits_fail_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let st = open(dir.path(), &[]);
    // Three series of 60 samples (one a minute for an hour), in the head.
    for n in ["a", "b", "c"] {
        st.append_samples(series(&[("__name__", n)], 0, H, 0.0));
    }
    let call = async |limits: RequestLimits| {
        let store = st.store_service().with_limits(limits);
        let (tx, _rx) = tokio::sync::mpsc::channel(1024);
        store
            .stream_series(req(i64::MIN, i64::MAX, vec![]), &tx)
            .await
    };
    assert!(call(RequestLimits::default()).await.is_ok());
    assert!(
        call(RequestLimits {
            series: 3,
            samples: 180
        })
        .await
        .is_ok()
    );
    let e = call(RequestLimits {
        series: 2,
        samples: 0,
    })
    .await
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    assert!(e.message().contains("--store.limits.request-series"), "{e}");
    let e = call(RequestLimits {
        series: 0,
        samples: 179,
    })
    .await
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    assert!(
        e.message().contains("--store.limits.request-samples"),
        "{e}"
    );
}

fn series_after(labels: &[(&str, &str)], from: i64) -> Vec<RecordedSample> {
    series(labels, from + 60_000, from + 4 * H, 1.0)
}

#[tokio::test]
async fn run_cuts_blocks_until_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let st = open(dir.path(), &[]);
    st.append_samples(series(&[("__name__", "a")], 0, 4 * H, 0.0));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(Arc::clone(&st).run(async {
        let _ = rx.await;
    }));
    for _ in 0..200 {
        if !st.blocks().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(st.blocks().len(), 1);
    tx.send(()).unwrap();
    task.await.unwrap();
}

#[test]
fn unfinished_blocks_are_removed_and_damaged_ones_named() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir
        .path()
        .join("01H00000000000000000000000.tmp-for-creation");
    std::fs::create_dir_all(&tmp).unwrap();
    let deleting = dir
        .path()
        .join("01H00000000000000000000001.tmp-for-deletion");
    std::fs::create_dir_all(&deleting).unwrap();
    drop(open(dir.path(), &[]));
    assert!(!tmp.exists() && !deleting.exists());
    let bad = dir.path().join("01H00000000000000000000000");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("meta.json"), "{").unwrap();
    let err = LocalStorage::open(dir.path(), opts(&[]), &mut Registry::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("01H00000000000000000000000") && msg.contains("move it out of --data-dir"),
        "{msg}"
    );
}
