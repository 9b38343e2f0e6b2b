//! The compactor against real buckets (FILESYSTEM, and S3 served by moto) holding real
//! Prometheus blocks made by `promtool`; results are read back with `promtool tsdb dump`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use prometheus_client::registry::Registry;
use strata_block::fetch::fetch_metas;
use strata_block::markers::{mark_no_compact, read_deletion_mark};
use strata_block::transfer::{SOURCE_SIDECAR, UploadOptions, download_block, upload_block};
use strata_compact::compactor::{Compactor, CompactorConfig};
use strata_compact::metrics::CompactMetrics;
use strata_objstore::{Bucket, BucketMetrics};
use strata_testutil::moto::MotoServer;
use strata_testutil::prometheus::{self, DumpSample};
use strata_tsdb::BlockMeta;
use strata_tsdb::block::Block;
use strata_tsdb::chunkenc::aggr::{AggrChunk, AggrType};
use ulid::Ulid;

const HOUR: i64 = 3_600_000;
/// 2023-11-13T00:00:00Z: a multiple of two days, so 2d compaction windows start here.
const T0: i64 = 1_699_833_600_000;

type Series = BTreeMap<Vec<(String, String)>, Vec<(i64, u64)>>;

fn as_series(dump: Vec<DumpSample>) -> Series {
    let mut out = Series::new();
    for s in dump {
        out.entry(s.labels)
            .or_default()
            .push((s.t, s.value.to_bits()));
    }
    out
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `hours` of 15s-interval data for `series` counters starting at `start`; promtool cuts it
/// into 2h blocks. `jitter` shifts timestamps (a second replica scrapes at other moments).
fn promtool_blocks(dir: &Path, series: usize, start: i64, hours: i64, jitter: i64) -> Vec<PathBuf> {
    let mut om = String::from("# TYPE requests counter\n");
    for i in 0..series {
        let mut v = 0.0f64;
        for k in 0..(hours * 240) {
            let t = start + k * 15_000 + jitter;
            v += ((k as usize * 7 + i) % 13) as f64;
            if k % 1000 == 999 {
                v = 0.0; // a counter reset now and then
            }
            writeln!(
                om,
                "requests_total{{handler=\"/api/{i}\",code=\"200\"}} {v:?} {}.{:03}",
                t / 1000,
                t % 1000
            )
            .unwrap();
        }
    }
    om.push_str("# EOF\n");
    let blocks = prometheus::create_blocks_from_openmetrics(&om, dir).unwrap();
    assert_eq!(blocks.len() as i64, hours / 2, "{blocks:?}");
    blocks
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn upload_all(
    bucket: &Bucket,
    dirs: &[PathBuf],
    ext: &BTreeMap<String, String>,
) -> Vec<Ulid> {
    let opts = UploadOptions {
        labels: ext.clone(),
        source: SOURCE_SIDECAR.into(),
        require_labels: true,
        hash_func: Default::default(),
        file_concurrency: 0,
    };
    let mut ids = Vec::new();
    for d in dirs {
        ids.push(upload_block(bucket, d, &opts).await.unwrap().ulid);
    }
    ids
}

fn fs_bucket(dir: &Path) -> Bucket {
    let yml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        dir.display()
    );
    Bucket::from_yaml(&yml, &BucketMetrics::unregistered()).unwrap()
}

fn compactor(
    bucket: &Bucket,
    data_dir: &Path,
    tweak: impl FnOnce(&mut CompactorConfig),
) -> Compactor {
    let mut cfg = CompactorConfig::new(data_dir.to_path_buf());
    cfg.consistency_delay_ms = 0;
    tweak(&mut cfg);
    let mut registry = Registry::default();
    Compactor::new(bucket.clone(), cfg, CompactMetrics::register(&mut registry))
}

/// Blocks in the bucket without a deletion mark.
async fn live_blocks(bucket: &Bucket) -> BTreeMap<Ulid, BlockMeta> {
    let fetched = fetch_metas(bucket, 8).await.unwrap();
    let mut out = BTreeMap::new();
    for (id, m) in fetched.metas {
        if read_deletion_mark(bucket, id).await.unwrap().is_none() {
            out.insert(id, m);
        }
    }
    out
}

async fn bucket_meta_max(bucket: &Bucket, id: Ulid) -> i64 {
    strata_block::fetch::fetch_meta(bucket, id)
        .await
        .unwrap()
        .unwrap()
        .max_time
}

/// `promtool tsdb dump` of the given blocks, downloaded from the bucket into a fresh dir.
async fn dump_from_bucket(bucket: &Bucket, ids: &[Ulid], dir: &Path) -> Series {
    std::fs::create_dir_all(dir).unwrap();
    for id in ids {
        download_block(bucket, *id, dir).await.unwrap();
    }
    as_series(prometheus::dump(dir).unwrap())
}

/// Six 2h blocks: the first four become one 8h block that promtool reads the same as its
/// sources; sources are marked, then deleted once the delete delay has passed.
///
/// Six, not five: promtool's blocks end at their last sample + 1 ms rather than at the 2h
/// boundary, so (as in Prometheus' planner) an 8h window only counts as complete once a block
/// *after* the newest one starts past it.
async fn compacts_four_2h_blocks_into_8h(bucket: Bucket) {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = promtool_blocks(&tmp.path().join("gen"), 12, T0, 12, 0);
    let ext = labels(&[("cluster", "eu1"), ("replica", "0")]);
    let ids = upload_all(&bucket, &dirs, &ext).await;
    let want = dump_from_bucket(&bucket, &ids[..4], &tmp.path().join("want")).await;

    let c = compactor(&bucket, &tmp.path().join("data"), |_| {});
    let report = c.run_iteration(now_ms()).await.unwrap();
    assert_eq!(report.compactions, 1, "{report:?}");
    assert!(
        report.halted.is_empty() && report.failed.is_empty(),
        "{report:?}"
    );

    let live = live_blocks(&bucket).await;
    assert_eq!(
        live.len(),
        3,
        "the 8h block and the newest 2h blocks: {live:?}"
    );
    assert!(live.contains_key(&ids[4]) && live.contains_key(&ids[5]));
    let (&new_id, meta) = live.iter().find(|(id, _)| !ids.contains(id)).unwrap();
    assert_eq!(meta.min_time, T0);
    assert_eq!(meta.max_time, bucket_meta_max(&bucket, ids[3]).await);
    assert_eq!(meta.compaction.level, 2);
    let mut sources = ids[..4].to_vec();
    sources.sort();
    assert_eq!(meta.compaction.sources, sources);
    let thanos = meta.thanos.as_ref().unwrap();
    assert_eq!(thanos.source, "compactor");
    assert_eq!(thanos.labels, ext, "external labels carry over unchanged");
    for id in &ids[..4] {
        let mark = read_deletion_mark(&bucket, *id).await.unwrap();
        assert!(mark.is_some(), "source {id} is marked for deletion");
    }

    let got = dump_from_bucket(&bucket, &[new_id], &tmp.path().join("got")).await;
    assert_eq!(got.len(), 12);
    assert_eq!(
        got, want,
        "promtool reads the compacted block as the union of its sources"
    );

    // Within the delete delay nothing is deleted; after it the sources go, whole.
    let report = c.run_iteration(now_ms()).await.unwrap();
    assert_eq!((report.compactions, report.deleted), (0, 0), "{report:?}");
    let report = c.run_iteration(now_ms() + 49 * HOUR).await.unwrap();
    assert_eq!(report.deleted, 4, "{report:?}");
    for id in &ids[..4] {
        let left = bucket.iter(&format!("{id}/"), true).await.unwrap();
        assert!(left.is_empty(), "{id} fully deleted, found {left:?}");
    }
    assert_eq!(fetch_metas(&bucket, 8).await.unwrap().metas.len(), 3);
}

#[tokio::test]
async fn filesystem_bucket_compaction_and_cleanup() {
    let dir = tempfile::tempdir().unwrap();
    compacts_four_2h_blocks_into_8h(fs_bucket(dir.path())).await;
}

#[tokio::test]
async fn s3_bucket_compaction_and_cleanup() {
    let moto = MotoServer::start().expect("moto_server (run scripts/test.sh to install it)");
    moto.create_bucket("compact").unwrap();
    let bucket = Bucket::from_yaml(
        &moto.objstore_yml("compact"),
        &BucketMetrics::unregistered(),
    )
    .unwrap();
    compacts_four_2h_blocks_into_8h(bucket).await;
}

/// Two producers wrote overlapping blocks under the same external labels: that group halts
/// (and says so), while another group in the same bucket still compacts.
#[tokio::test]
async fn overlap_halts_only_its_group() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = fs_bucket(&tmp.path().join("bucket"));
    let bad = labels(&[("cluster", "broken")]);
    let a = promtool_blocks(&tmp.path().join("a"), 3, T0, 2, 0);
    let b = promtool_blocks(&tmp.path().join("b"), 3, T0, 2, 5_000);
    upload_all(&bucket, &a, &bad).await;
    upload_all(&bucket, &b, &bad).await;
    let good = promtool_blocks(&tmp.path().join("good"), 3, T0, 12, 0);
    upload_all(&bucket, &good, &labels(&[("cluster", "fine")])).await;

    let c = compactor(&bucket, &tmp.path().join("data"), |_| {});
    let report = c.run_iteration(now_ms()).await.unwrap();
    assert_eq!(
        report.compactions, 1,
        "the healthy group compacted: {report:?}"
    );
    assert_eq!(report.halted.len(), 1, "{report:?}");
    assert!(report.halted[0].1.contains("overlapping"), "{report:?}");
    assert_eq!(c.metrics().halted.get(), 1);
    assert_eq!(c.halted_groups().len(), 1);
    // Nothing of the halted group was touched.
    let live = live_blocks(&bucket).await;
    let broken = live.values().filter(|m| m.external_labels() == bad).count();
    assert_eq!(broken, 2);

    // Marking one of them no-compact is not enough (it still overlaps), deleting it is.
    let ids: Vec<Ulid> = live
        .values()
        .filter(|m| m.external_labels() == bad)
        .map(|m| m.ulid)
        .collect();
    strata_block::markers::mark_for_deletion(&bucket, ids[1], "operator: bad replica")
        .await
        .unwrap();
    let report = c.run_iteration(now_ms()).await.unwrap();
    assert!(report.halted.is_empty(), "{report:?}");
    assert_eq!(c.metrics().halted.get(), 0);
}

/// HA replicas: with `replica` as a replica label the two streams form one group and merge
/// into one deduplicated block.
#[tokio::test]
async fn replicas_merge_vertically_into_one_block() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = fs_bucket(&tmp.path().join("bucket"));
    let r0 = promtool_blocks(&tmp.path().join("r0"), 5, T0, 12, 0);
    let r1 = promtool_blocks(&tmp.path().join("r1"), 5, T0, 12, 0);
    let ids0 = upload_all(
        &bucket,
        &r0,
        &labels(&[("cluster", "eu1"), ("replica", "a")]),
    )
    .await;
    let ids1 = upload_all(
        &bucket,
        &r1,
        &labels(&[("cluster", "eu1"), ("replica", "b")]),
    )
    .await;
    let want = dump_from_bucket(&bucket, &ids0[..4], &tmp.path().join("want")).await;

    let c = compactor(&bucket, &tmp.path().join("data"), |cfg| {
        cfg.replica_labels = vec!["replica".into()];
        cfg.vertical_compaction = true;
    });
    let report = c.run_iteration(now_ms()).await.unwrap();
    assert!(
        report.halted.is_empty() && report.failed.is_empty(),
        "{report:?}"
    );
    let live = live_blocks(&bucket).await;
    let merged: Vec<&BlockMeta> = live
        .values()
        .filter(|m| m.min_time == T0 && m.max_time > T0 + 7 * HOUR)
        .collect();
    assert_eq!(merged.len(), 1, "{live:?}");
    let m = merged[0];
    assert_eq!(m.compaction.sources.len(), 8, "both replicas' four blocks");
    assert_eq!(
        m.thanos.as_ref().unwrap().labels,
        labels(&[("cluster", "eu1")]),
        "the replica label is gone from the merged block"
    );
    let got = dump_from_bucket(&bucket, &[m.ulid], &tmp.path().join("got")).await;
    assert_eq!(
        got, want,
        "identical replicas deduplicate to one copy of each sample"
    );
    for id in ids0[..4].iter().chain(&ids1[..4]) {
        assert!(read_deletion_mark(&bucket, *id).await.unwrap().is_some());
    }
}

/// A crash after the upload of a compacted block but before its sources were marked: the
/// next run must see the sources as redundant and mark them, not compact them again.
#[tokio::test]
async fn interrupted_compaction_is_finished_without_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = fs_bucket(&tmp.path().join("bucket"));
    let dirs = promtool_blocks(&tmp.path().join("gen"), 4, T0, 12, 0);
    let ids = upload_all(&bucket, &dirs, &labels(&[("cluster", "eu1")])).await;
    let c = compactor(&bucket, &tmp.path().join("data"), |_| {});
    c.run_iteration(now_ms()).await.unwrap();
    for id in &ids[..4] {
        bucket
            .delete(&format!("{id}/deletion-mark.json"))
            .await
            .unwrap();
    }
    let report = c.run_iteration(now_ms()).await.unwrap();
    assert_eq!(report.compactions, 0, "{report:?}");
    assert_eq!(report.marked_for_deletion, 4, "{report:?}");
    assert_eq!(live_blocks(&bucket).await.len(), 3);
}

/// No-compact marks are honoured, fresh blocks wait out the consistency delay, raw
/// retention marks old blocks, and abandoned partial uploads are removed.
#[tokio::test]
async fn marks_consistency_delay_retention_and_partial_uploads() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = fs_bucket(&tmp.path().join("bucket"));
    let dirs = promtool_blocks(&tmp.path().join("gen"), 3, T0, 12, 0);
    let ids = upload_all(&bucket, &dirs, &labels(&[("cluster", "eu1")])).await;

    // Default consistency delay: blocks uploaded just now are not looked at yet.
    let c = compactor(&bucket, &tmp.path().join("data"), |cfg| {
        cfg.consistency_delay_ms = 30 * 60_000;
    });
    let report = c.run_iteration(now_ms()).await.unwrap();
    assert_eq!(report.compactions, 0, "{report:?}");

    // A no-compact mark on the second block splits the first 8h window: only the run after
    // it (blocks 3 and 4) is compacted, as Thanos' planner does.
    mark_no_compact(&bucket, ids[1], "manual", "test")
        .await
        .unwrap();
    let report = c.run_iteration(now_ms() + HOUR).await.unwrap();
    assert_eq!(report.compactions, 1, "{report:?}");
    let live = live_blocks(&bucket).await;
    assert_eq!(live.len(), 5, "{live:?}");
    assert!(live.contains_key(&ids[0]) && live.contains_key(&ids[1]));
    assert!(!live.contains_key(&ids[2]) && !live.contains_key(&ids[3]));
    let report = c.run_iteration(now_ms() + HOUR).await.unwrap();
    assert_eq!(
        report.compactions, 0,
        "nothing left around the marked block"
    );

    // A partial upload (no meta.json) older than two days gets removed; a young one stays.
    let old = Ulid::from_parts((now_ms() - 72 * HOUR) as u64, 1);
    let young = Ulid::from_parts(now_ms() as u64, 2);
    for id in [old, young] {
        bucket
            .upload(&format!("{id}/chunks/000001"), vec![1u8; 16].into())
            .await
            .unwrap();
    }
    // Raw retention of 1 day: every block (from 2023) is past it.
    let c = compactor(&bucket, &tmp.path().join("data"), |cfg| {
        cfg.retention_raw_ms = 24 * HOUR;
    });
    let report = c.run_iteration(now_ms()).await.unwrap();
    assert_eq!(report.partial_deleted, 1, "{report:?}");
    assert!(
        bucket
            .iter(&format!("{old}/"), true)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !bucket
            .iter(&format!("{young}/"), true)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(report.marked_for_deletion, 5, "{report:?}");
    assert!(live_blocks(&bucket).await.is_empty());
}

/// 52 hours of 2h blocks: the compactor builds 8h blocks, then a 2d block, then downsamples
/// it to 5m. Every 5m aggregate (count, sum, min, max) matches the raw samples.
#[tokio::test]
async fn compacts_to_two_days_and_downsamples() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = fs_bucket(&tmp.path().join("bucket"));
    let dirs = promtool_blocks(&tmp.path().join("gen"), 6, T0, 52, 0);
    let ids = upload_all(&bucket, &dirs, &labels(&[("cluster", "eu1")])).await;
    let raw = dump_from_bucket(&bucket, &ids[..24], &tmp.path().join("raw")).await;

    let c = compactor(&bucket, &tmp.path().join("data"), |_| {});
    let report = c.run_iteration(now_ms()).await.unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(
        report.compactions, 7,
        "six 8h blocks, then one 2d block: {report:?}"
    );
    assert_eq!(report.downsamples, 1, "{report:?}");

    let live = live_blocks(&bucket).await;
    let two_days: Vec<&BlockMeta> = live
        .values()
        .filter(|m| m.min_time == T0 && m.max_time > T0 + 47 * HOUR)
        .collect();
    assert_eq!(two_days.len(), 2, "raw and 5m: {live:?}");
    let raw_block = two_days.iter().find(|m| m.resolution() == 0).unwrap();
    let ds = two_days.iter().find(|m| m.resolution() == 300_000).unwrap();
    assert_eq!(raw_block.compaction.sources.len(), 24);
    assert_eq!(ds.compaction.sources, raw_block.compaction.sources);
    assert_eq!(ds.thanos.as_ref().unwrap().downsample.resolution, 300_000);
    let got = dump_from_bucket(&bucket, &[raw_block.ulid], &tmp.path().join("got")).await;
    assert_eq!(got, raw);

    // Check every 5m window against the raw samples.
    let dl = tmp.path().join("ds");
    std::fs::create_dir_all(&dl).unwrap();
    let block = Block::open(&download_block(&bucket, ds.ulid, &dl).await.unwrap()).unwrap();
    let mut checked = 0;
    for id in block.index().all_postings().unwrap() {
        let (lset, metas) = block.index().series(id).unwrap();
        let key: Vec<(String, String)> = lset
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        let samples = &raw[&key];
        let mut want: BTreeMap<i64, (f64, f64, f64, f64)> = BTreeMap::new();
        for &(t, bits) in samples {
            let v = f64::from_bits(bits);
            let w = want
                .entry(t - t % 300_000)
                .or_insert((0.0, 0.0, f64::MAX, f64::MIN));
            w.0 += 1.0;
            w.1 += v;
            w.2 = w.2.min(v);
            w.3 = w.3.max(v);
        }
        let mut got: BTreeMap<i64, [f64; 4]> = BTreeMap::new();
        for m in metas {
            let chunk = block.chunk(m.chunk_ref).unwrap();
            let a = AggrChunk::new(&chunk.data);
            for (i, t) in [AggrType::Count, AggrType::Sum, AggrType::Min, AggrType::Max]
                .into_iter()
                .enumerate()
            {
                for (ts, v) in a.samples(t).unwrap() {
                    got.entry(ts - ts % 300_000).or_default()[i] = v;
                }
            }
        }
        assert_eq!(got.len(), want.len(), "{key:?}");
        for (w, (n, sum, min, max)) in want {
            let g = got[&w];
            assert_eq!(g[0], n, "{key:?} count @{w}");
            assert!(
                (g[1] - sum).abs() <= 1e-9 * sum.abs().max(1.0),
                "{key:?} sum @{w}"
            );
            assert_eq!((g[2], g[3]), (min, max), "{key:?} min/max @{w}");
            checked += 1;
        }
    }
    assert_eq!(checked, 6 * 48 * 12, "every 5m window of every series");

    // Another iteration has nothing left to do: no re-downsampling.
    let report = c.run_iteration(now_ms()).await.unwrap();
    assert_eq!(
        (report.compactions, report.downsamples),
        (0, 0),
        "{report:?}"
    );
    let distinct: BTreeSet<i64> = live_blocks(&bucket)
        .await
        .values()
        .map(|m| m.resolution())
        .collect();
    assert_eq!(distinct, BTreeSet::from([0, 300_000]));
}

/// Several groups compacted and downsampled concurrently end up exactly as one at a time.
#[tokio::test]
async fn groups_compact_concurrently() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = fs_bucket(&tmp.path().join("bucket"));
    let mut wants = Vec::new();
    for c in ["a", "b", "c"] {
        let dirs = promtool_blocks(&tmp.path().join(c), 3, T0, 52, 0);
        let ids = upload_all(&bucket, &dirs, &labels(&[("cluster", c)])).await;
        wants.push((
            c,
            dump_from_bucket(&bucket, &ids[..24], &tmp.path().join(format!("want-{c}"))).await,
        ));
    }
    let c = compactor(&bucket, &tmp.path().join("data"), |cfg| {
        cfg.compact_concurrency = 3;
        cfg.downsample_concurrency = 2;
    });
    let report = c.run_iteration(now_ms()).await.unwrap();
    assert!(
        report.failed.is_empty() && report.halted.is_empty(),
        "{report:?}"
    );
    assert_eq!(
        (report.compactions, report.downsamples),
        (21, 3),
        "{report:?}"
    );
    let live = live_blocks(&bucket).await;
    for (cluster, want) in wants {
        let two_days: Vec<&BlockMeta> = live
            .values()
            .filter(|m| m.external_labels() == labels(&[("cluster", cluster)]))
            .filter(|m| m.min_time == T0 && m.max_time > T0 + 47 * HOUR)
            .collect();
        assert_eq!(two_days.len(), 2, "raw and 5m for {cluster}");
        let raw = two_days.iter().find(|m| m.resolution() == 0).unwrap();
        let got = dump_from_bucket(
            &bucket,
            &[raw.ulid],
            &tmp.path().join(format!("got-{cluster}")),
        )
        .await;
        assert_eq!(got, want, "{cluster}");
    }
    let report = c.run_iteration(now_ms()).await.unwrap();
    assert_eq!(
        (report.compactions, report.downsamples),
        (0, 0),
        "{report:?}"
    );
}

/// `--selector.relabel-config` shards the bucket: blocks the rules drop are another
/// compactor's, left entirely alone (not compacted, not cleaned up).
#[tokio::test]
async fn relabel_selector_shards_the_bucket() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = fs_bucket(&tmp.path().join("bucket"));
    let mine = upload_all(
        &bucket,
        &promtool_blocks(&tmp.path().join("a"), 2, T0, 12, 0),
        &labels(&[("cluster", "a")]),
    )
    .await;
    let theirs = upload_all(
        &bucket,
        &promtool_blocks(&tmp.path().join("b"), 2, T0, 12, 0),
        &labels(&[("cluster", "b")]),
    )
    .await;
    // One of their blocks is marked: its deletion is their compactor's business.
    strata_block::markers::mark_for_deletion(&bucket, theirs[5], "theirs")
        .await
        .unwrap();
    let rules = strata_block::relabel::parse_relabel_configs(
        "- action: keep\n  source_labels: [cluster]\n  regex: a\n",
    )
    .unwrap();
    let c = compactor(&bucket, &tmp.path().join("data"), |cfg| {
        cfg.selector = Some(strata_compact::compactor::BlockSelector::from_relabel(
            rules,
        ));
        cfg.delete_delay_ms = 0;
    });
    let report = c.run_iteration(now_ms()).await.unwrap();
    assert_eq!(report.compactions, 1, "{report:?}");
    assert_eq!(report.deleted, 4, "only our compacted sources: {report:?}");
    for id in &theirs {
        assert!(
            !bucket
                .iter(&format!("{id}/"), true)
                .await
                .unwrap()
                .is_empty(),
            "{id} untouched"
        );
    }
    for id in &theirs[..5] {
        assert!(read_deletion_mark(&bucket, *id).await.unwrap().is_none());
    }
    for id in &mine[..4] {
        assert!(
            bucket
                .iter(&format!("{id}/"), true)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
