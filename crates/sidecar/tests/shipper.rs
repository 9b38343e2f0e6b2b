//! The shipper over blocks made by Prometheus' promtool, into an in-memory bucket and a
//! FILESYSTEM bucket that goes away and comes back: what is uploaded, what is skipped, the
//! state file, the metrics, and recovery.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_model::{Labels, TimeOrDuration};
use strata_objstore::{Bucket, BucketMetrics};
use strata_sidecar::PromState;
use strata_sidecar::shipper::{
    ShipperConfig, ShipperMeta, ShipperMetrics, read_meta_file, write_meta_file,
};
use strata_sidecar::{Shipper, error::ShipperError};
use strata_testutil::prometheus::create_blocks_from_openmetrics;
use strata_tsdb::BlockMeta;
use ulid::Ulid;

const T0: i64 = 1_700_000_000_000;

/// Three 2h blocks (promtool cuts at 2h boundaries) in `<dir>/tsdb`.
fn tsdb_with_blocks(dir: &Path) -> (PathBuf, Vec<BlockMeta>) {
    let mut om = String::from("# TYPE up gauge\n");
    for k in 0..(5 * 240) {
        let t = T0 + k * 15_000;
        for i in 0..3 {
            writeln!(om, "up{{i=\"{i}\"}} {k} {}.{:03}", t / 1000, t % 1000).unwrap();
        }
    }
    om.push_str("# EOF\n");
    let tsdb = dir.join("tsdb");
    let blocks = create_blocks_from_openmetrics(&om, &tsdb).unwrap();
    assert!(blocks.len() >= 3, "{blocks:?}");
    let metas = blocks
        .iter()
        .map(|b| BlockMeta::read_from_dir(b).unwrap())
        .collect();
    (tsdb, metas)
}

/// A copy of block `src` under a new ULID with its meta changed by `edit`.
fn derived_block(tsdb: &Path, src: &BlockMeta, edit: impl FnOnce(&mut BlockMeta)) -> BlockMeta {
    let id = Ulid::generate();
    let dst = tsdb.join(id.to_string());
    std::fs::create_dir_all(dst.join("chunks")).unwrap();
    let from = tsdb.join(src.ulid.to_string());
    std::fs::copy(from.join("index"), dst.join("index")).unwrap();
    for e in std::fs::read_dir(from.join("chunks")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join("chunks").join(e.file_name())).unwrap();
    }
    let mut meta = src.clone();
    meta.ulid = id;
    edit(&mut meta);
    meta.write_to_dir(&dst).unwrap();
    meta
}

fn state(ext: &[(&str, &str)]) -> Arc<PromState> {
    let s = Arc::new(PromState::new(TimeOrDuration::min_time()));
    s.set_external_labels(Labels::from_pairs(ext));
    s
}

async fn bucket_meta(bucket: &Bucket, id: Ulid) -> Option<BlockMeta> {
    strata_block::fetch::fetch_meta(bucket, id).await.unwrap()
}

#[tokio::test]
async fn uploads_new_blocks_once_with_the_thanos_section_and_records_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (tsdb, metas) = tsdb_with_blocks(tmp.path());
    let empty = derived_block(&tsdb, &metas[0], |m| {
        m.stats.num_samples = 0;
        m.min_time += 10 * 3_600_000;
        m.max_time += 10 * 3_600_000;
    });
    let bucket = Bucket::in_memory("test", &BucketMetrics::unregistered());
    let metrics = ShipperMetrics::default();
    let shipper = Shipper::new(
        ShipperConfig::new(&tsdb),
        bucket.clone(),
        state(&[("cluster", "eu1"), ("replica", "0")]),
        metrics.clone(),
    );

    let report = shipper.sync().await.unwrap();
    let ids: Vec<Ulid> = metas.iter().map(|m| m.ulid).collect();
    assert_eq!(report.uploaded, ids, "oldest first, empty block skipped");
    assert_eq!(metrics.uploads.get(), ids.len() as u64);
    assert_eq!(metrics.dir_syncs.get(), 1);
    for m in &metas {
        let got = bucket_meta(&bucket, m.ulid).await.expect("uploaded");
        let thanos = got.thanos.expect("thanos section");
        assert_eq!(thanos.source, "sidecar");
        assert_eq!(thanos.downsample.resolution, 0);
        assert_eq!(
            thanos.labels.into_iter().collect::<Vec<_>>(),
            vec![
                ("cluster".into(), "eu1".into()),
                ("replica".into(), "0".into())
            ]
        );
        let rel: Vec<&str> = thanos.files.iter().map(|f| f.rel_path.as_str()).collect();
        assert_eq!(rel, vec!["chunks/000001", "index", "meta.json"]);
        let index_len = std::fs::metadata(tsdb.join(m.ulid.to_string()).join("index"))
            .unwrap()
            .len();
        assert_eq!(thanos.files[1].size_bytes as u64, index_len);
        // The local block is untouched: no Thanos section was written into it.
        assert!(
            BlockMeta::read_from_dir(&tsdb.join(m.ulid.to_string()))
                .unwrap()
                .thanos
                .is_none()
        );
    }
    assert!(bucket_meta(&bucket, empty.ulid).await.is_none());
    // The upload directory is cleaned up.
    assert_eq!(
        std::fs::read_dir(tsdb.join("thanos/upload"))
            .unwrap()
            .count(),
        0
    );

    let text = std::fs::read_to_string(tsdb.join("thanos.shipper.json")).unwrap();
    assert!(
        text.starts_with("{\n\t\"version\": 1,\n\t\"uploaded\": [\n"),
        "{text}"
    );
    let recorded = read_meta_file(&tsdb.join("thanos.shipper.json"))
        .unwrap()
        .unwrap();
    assert_eq!(recorded.uploaded, ids);

    // Nothing new: nothing uploaded, no bucket lookup needed.
    let report = shipper.sync().await.unwrap();
    assert!(
        report.uploaded.is_empty() && report.recorded.is_empty(),
        "{report:?}"
    );
    assert_eq!(metrics.uploads.get(), ids.len() as u64);

    // State lost (or corrupt): the bucket says what is there; recorded, not re-uploaded.
    std::fs::write(tsdb.join("thanos.shipper.json"), "{not json").unwrap();
    let report = shipper.sync().await.unwrap();
    assert!(report.uploaded.is_empty(), "{report:?}");
    assert_eq!(report.recorded, ids);
    assert_eq!(metrics.uploads.get(), ids.len() as u64);
    assert_eq!(
        read_meta_file(&tsdb.join("thanos.shipper.json"))
            .unwrap()
            .unwrap()
            .uploaded,
        ids
    );

    // A block Prometheus deleted (retention) drops out of the state.
    std::fs::remove_dir_all(tsdb.join(ids[0].to_string())).unwrap();
    shipper.sync().await.unwrap();
    assert_eq!(
        read_meta_file(&tsdb.join("thanos.shipper.json"))
            .unwrap()
            .unwrap()
            .uploaded,
        ids[1..].to_vec()
    );
}

#[tokio::test]
async fn compacted_blocks_need_the_flag_and_must_not_overlap() {
    let tmp = tempfile::tempdir().unwrap();
    let (tsdb, metas) = tsdb_with_blocks(tmp.path());
    let bucket = Bucket::in_memory("test", &BucketMetrics::unregistered());
    let st = state(&[("cluster", "eu1")]);
    Shipper::new(
        ShipperConfig::new(&tsdb),
        bucket.clone(),
        st.clone(),
        ShipperMetrics::default(),
    )
    .sync()
    .await
    .unwrap();

    // A level-2 block over the same time as an uploaded one, and one far away.
    let overlapping = derived_block(&tsdb, &metas[0], |m| m.compaction.level = 2);
    let later = derived_block(&tsdb, &metas[0], |m| {
        m.compaction.level = 2;
        m.min_time += 100 * 3_600_000;
        m.max_time += 100 * 3_600_000;
    });

    // Without --shipper.upload-compacted both are ignored.
    let report = Shipper::new(
        ShipperConfig::new(&tsdb),
        bucket.clone(),
        st.clone(),
        ShipperMetrics::default(),
    )
    .sync()
    .await
    .unwrap();
    assert!(report.uploaded.is_empty(), "{report:?}");

    let mut cfg = ShipperConfig::new(&tsdb);
    cfg.upload_compacted = true;
    let metrics = ShipperMetrics::default();
    let shipper = Shipper::new(cfg, bucket.clone(), st.clone(), metrics.clone());
    let err = shipper.sync().await.unwrap_err();
    match &err {
        ShipperError::Overlap {
            block, overlaps, ..
        } => {
            assert_eq!(block, &overlapping.ulid.to_string());
            assert!(overlaps.contains(&metas[0].ulid.to_string()), "{err}");
        }
        other => panic!("want an overlap error, got {other}"),
    }
    assert_eq!(metrics.upload_failures.get(), 1);
    assert_eq!(metrics.dir_sync_failures.get(), 1);
    assert_eq!(metrics.upload_compacted_done.get(), 0);
    assert!(bucket_meta(&bucket, overlapping.ulid).await.is_none());
    // In order: the later block waits behind the refused one.
    assert!(bucket_meta(&bucket, later.ulid).await.is_none());

    // Once the overlapping block is gone, the later one goes up and the migration is done.
    std::fs::remove_dir_all(tsdb.join(overlapping.ulid.to_string())).unwrap();
    let report = shipper.sync().await.unwrap();
    assert_eq!(report.uploaded, vec![later.ulid]);
    assert_eq!(metrics.upload_compacted_done.get(), 1);
}

#[tokio::test]
async fn a_bucket_outage_fails_uploads_loudly_and_they_resume_when_it_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let (tsdb, metas) = tsdb_with_blocks(tmp.path());
    let dir = tmp.path().join("bucket");
    let bucket = Bucket::from_yaml(
        &format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            dir.display()
        ),
        &BucketMetrics::unregistered(),
    )
    .unwrap();
    // The bucket's directory is a plain file: every operation fails.
    if dir.is_dir() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::write(&dir, "not a directory").unwrap();
    let metrics = ShipperMetrics::default();
    let shipper = Shipper::new(
        ShipperConfig::new(&tsdb),
        bucket.clone(),
        state(&[("cluster", "eu1")]),
        metrics.clone(),
    );
    let err = shipper.sync().await.unwrap_err();
    assert!(
        err.to_string().contains(&metas[0].ulid.to_string()),
        "{err}"
    );
    assert_eq!(metrics.upload_failures.get(), 1);
    assert_eq!(metrics.dir_sync_failures.get(), 1);
    assert_eq!(metrics.uploads.get(), 0);
    assert!(
        read_meta_file(&tsdb.join("thanos.shipper.json"))
            .unwrap()
            .unwrap()
            .uploaded
            .is_empty()
    );

    std::fs::remove_file(&dir).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    let report = shipper.sync().await.unwrap();
    assert_eq!(report.uploaded.len(), metas.len());
    assert_eq!(metrics.uploads.get(), metas.len() as u64);
    for m in &metas {
        assert!(dir.join(m.ulid.to_string()).join("meta.json").is_file());
    }
}

#[tokio::test]
async fn no_external_labels_no_upload() {
    let tmp = tempfile::tempdir().unwrap();
    let (tsdb, _) = tsdb_with_blocks(tmp.path());
    let bucket = Bucket::in_memory("test", &BucketMetrics::unregistered());
    let st = Arc::new(PromState::new(TimeOrDuration::min_time()));
    let shipper = Shipper::new(
        ShipperConfig::new(&tsdb),
        bucket,
        st,
        ShipperMetrics::default(),
    );
    let err = shipper.sync().await.unwrap_err();
    assert!(matches!(err, ShipperError::NoExternalLabels), "{err}");
}

#[test]
fn state_file_round_trips_and_rejects_other_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("thanos.shipper.json");
    assert_eq!(read_meta_file(&path).unwrap(), None);
    let meta = ShipperMeta {
        version: 1,
        uploaded: vec![Ulid::from_string("01M81PH4PZE9BVZHAKSRFTQF28").unwrap()],
    };
    write_meta_file(&path, &meta).unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "{\n\t\"version\": 1,\n\t\"uploaded\": [\n\t\t\"01M81PH4PZE9BVZHAKSRFTQF28\"\n\t]\n}\n"
    );
    assert_eq!(read_meta_file(&path).unwrap(), Some(meta));
    assert!(!tmp.path().join("thanos.shipper.json.tmp").exists());
    std::fs::write(&path, "{\"version\":2,\"uploaded\":[]}").unwrap();
    assert!(read_meta_file(&path).unwrap_err().contains("version 2"));
}
