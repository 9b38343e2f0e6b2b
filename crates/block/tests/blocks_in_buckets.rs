//! Blocks moving through real buckets (in-memory, FILESYSTEM, and S3 served by moto):
//! upload order, fetch classification, download round trip and verification findings.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path as ObjPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use strata_block::fetch::{fetch_metas, list_block_ids};
use strata_block::transfer::{SOURCE_BUCKET_UPLOAD, UploadOptions, download_block, upload_block};
use strata_block::verify::{
    Issue, Severity, VerifyOptions, find_overlaps, verify_block_dir, verify_bucket,
};
use strata_model::Labels;
use strata_objstore::{Bucket, BucketMetrics};
use strata_testutil::moto::MotoServer;
use strata_tsdb::BlockMeta;
use strata_tsdb::block::{BlockWriter, BlockWriterOptions};
use ulid::Ulid;

/// An in-memory store that records the order in which objects are written.
#[derive(Debug)]
struct Recording {
    inner: InMemory,
    puts: Arc<Mutex<Vec<String>>>,
}

impl fmt::Display for Recording {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Recording({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Recording {
    async fn put_opts(
        &self,
        location: &ObjPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.puts.lock().unwrap().push(location.to_string());
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &ObjPath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.puts.lock().unwrap().push(location.to_string());
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &ObjPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjPath>> {
        self.inner.delete_stream(locations)
    }
    fn list(
        &self,
        prefix: Option<&ObjPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjPath>,
    ) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &ObjPath,
        to: &ObjPath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

fn series(n: usize, start: i64) -> Vec<(Labels, Vec<(i64, f64)>)> {
    let mut out: Vec<_> = (0..n)
        .map(|i| {
            let l = Labels::from_pairs(&[
                ("__name__", "up".to_string()),
                ("instance", format!("i-{i:03}")),
            ]);
            let s = (0..300)
                .map(|k| (start + k * 15_000 + i as i64, k as f64))
                .collect();
            (l, s)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Writes a small block (with several chunk segments) into `parent` and returns its dir.
fn make_block(parent: &Path, start: i64, segment_size: u64) -> (PathBuf, BlockMeta) {
    let opts = BlockWriterOptions {
        segment_size,
        ..Default::default()
    };
    let mut w = BlockWriter::new(parent, opts).unwrap();
    for (l, s) in series(40, start) {
        w.add_series(&l, &s).unwrap();
    }
    let meta = w.finish().unwrap();
    (parent.join(meta.ulid.to_string()), meta)
}

fn puts_clear(p: &Arc<Mutex<Vec<String>>>) {
    p.lock().unwrap().clear();
}

fn upload_opts() -> UploadOptions {
    UploadOptions {
        labels: [("cluster".to_string(), "eu1".to_string())].into(),
        source: SOURCE_BUCKET_UPLOAD.into(),
        require_labels: true,
        hash_func: Default::default(),
        file_concurrency: 0,
    }
}

#[tokio::test]
async fn upload_writes_chunks_then_index_then_meta_last() {
    let puts = Arc::new(Mutex::new(Vec::new()));
    let store = Recording {
        inner: InMemory::new(),
        puts: puts.clone(),
    };
    let puts_handle = puts.clone();
    let bucket = Bucket::new(Arc::new(store), "rec", "", &BucketMetrics::unregistered());
    let dir = tempfile::tempdir().unwrap();
    let (bdir, _) = make_block(dir.path(), 0, 8 * 1024);
    let meta = upload_block(&bucket, &bdir, &upload_opts()).await.unwrap();
    let puts = puts.lock().unwrap().clone();
    let id = meta.ulid;
    assert!(
        puts.len() >= 4,
        "several segments, index and meta: {puts:?}"
    );
    assert_eq!(puts.last().unwrap(), &format!("{id}/meta.json"));
    assert_eq!(puts[puts.len() - 2], format!("{id}/index"));
    assert!(
        puts[..puts.len() - 2]
            .iter()
            .all(|p| p.starts_with(&format!("{id}/chunks/")))
    );

    // The uploaded meta carries the Thanos section with every file and its size.
    let t = meta.thanos.as_ref().unwrap();
    assert_eq!(t.labels.get("cluster").map(String::as_str), Some("eu1"));
    assert_eq!(t.source, "bucket.upload");
    assert_eq!(t.downsample.resolution, 0);
    assert_eq!(t.files.last().unwrap().rel_path, "meta.json");
    for f in &t.files[..t.files.len() - 1] {
        let size = std::fs::metadata(bdir.join(&f.rel_path)).unwrap().len();
        assert_eq!(f.size_bytes as u64, size, "{}", f.rel_path);
    }
    // The local block was not modified.
    assert!(BlockMeta::read_from_dir(&bdir).unwrap().thanos.is_none());
    // Several segments at once: still every segment before the index, the index before meta.
    puts_clear(&puts_handle);
    let (bdir2, _) = make_block(dir.path(), 50_000_000, 8 * 1024);
    let meta2 = upload_block(
        &bucket,
        &bdir2,
        &UploadOptions {
            file_concurrency: 4,
            ..upload_opts()
        },
    )
    .await
    .unwrap();
    let puts2 = puts_handle.lock().unwrap().clone();
    let id2 = meta2.ulid;
    assert_eq!(puts2.len(), puts.len(), "{puts2:?}");
    assert_eq!(puts2.last().unwrap(), &format!("{id2}/meta.json"));
    assert_eq!(puts2[puts2.len() - 2], format!("{id2}/index"));
    let mut segs: Vec<&String> = puts2[..puts2.len() - 2].iter().collect();
    assert!(
        segs.iter()
            .all(|p| p.starts_with(&format!("{id2}/chunks/")))
    );
    segs.sort();
    segs.dedup();
    assert_eq!(segs.len(), puts2.len() - 2, "each segment once");
    // Without labels, upload is refused.
    let err = upload_block(
        &bucket,
        &bdir,
        &UploadOptions {
            labels: BTreeMap::new(),
            ..upload_opts()
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("external labels"), "{err}");
}

/// The behaviour every backend must show.
async fn fetch_download_and_verify(bucket: &Bucket) {
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, a) = make_block(dir.path(), 0, 1 << 20);
    // b in many small segments, for the concurrent download below.
    let (b_dir, b) = make_block(dir.path(), 10_000_000, 8 * 1024);
    upload_block(bucket, &a_dir, &upload_opts()).await.unwrap();
    upload_block(bucket, &b_dir, &upload_opts()).await.unwrap();

    // A partial upload (no meta.json) and a corrupted meta, plus unrelated objects.
    let partial = Ulid::generate();
    bucket
        .upload(&format!("{partial}/index"), Bytes::from_static(b"x"))
        .await
        .unwrap();
    let corrupted = Ulid::generate();
    bucket
        .upload(
            &format!("{corrupted}/meta.json"),
            Bytes::from_static(b"{nope"),
        )
        .await
        .unwrap();
    bucket
        .upload("debug/metas/x.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();

    let ids = list_block_ids(bucket).await.unwrap();
    assert_eq!(ids.len(), 4, "{ids:?}");
    let fetched = fetch_metas(bucket, 4).await.unwrap();
    assert_eq!(fetched.metas.keys().copied().collect::<Vec<_>>(), {
        let mut v = vec![a.ulid, b.ulid];
        v.sort();
        v
    });
    assert_eq!(fetched.partial, vec![partial]);
    assert_eq!(fetched.corrupted.len(), 1);
    assert_eq!(fetched.corrupted[0].0, corrupted);

    // Download round trip: the same bytes as the local block.
    let dl = tempfile::tempdir().unwrap();
    let got = download_block(bucket, a.ulid, dl.path()).await.unwrap();
    for rel in ["index", "chunks/000001"] {
        assert_eq!(
            std::fs::read(got.join(rel)).unwrap(),
            std::fs::read(a_dir.join(rel)).unwrap(),
            "{rel}"
        );
    }
    // Several files at once: the same bytes.
    let got_b = strata_block::transfer::download_block_concurrently(bucket, b.ulid, dl.path(), 4)
        .await
        .unwrap();
    assert!(std::fs::read_dir(b_dir.join("chunks")).unwrap().count() > 1);
    assert_eq!(
        std::fs::read(got_b.join("index")).unwrap(),
        std::fs::read(b_dir.join("index")).unwrap()
    );
    for e in std::fs::read_dir(b_dir.join("chunks")).unwrap() {
        let e = e.unwrap();
        assert_eq!(
            std::fs::read(got_b.join("chunks").join(e.file_name())).unwrap(),
            std::fs::read(e.path()).unwrap()
        );
    }
    assert!(download_block(bucket, partial, dl.path()).await.is_err());
    assert!(!dl.path().join(format!("{partial}.tmp-download")).exists());

    // Verify: the two good blocks are clean; the partial one is a warning, the corrupted an error.
    let work = tempfile::tempdir().unwrap();
    let opts = VerifyOptions {
        issues: Issue::ALL.into_iter().collect(),
        ids: vec![],
        work_dir: work.path().to_path_buf(),
        fetch_concurrency: 4,
    };
    let report = verify_bucket(bucket, &opts).await.unwrap();
    assert_eq!(report.blocks_checked, 2);
    let errors: Vec<_> = report
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .collect();
    assert_eq!(errors.len(), 1, "{:#?}", report.problems);
    assert_eq!(errors[0].block, Some(corrupted));
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.block == Some(partial) && p.kind == "partial-upload")
    );

    // Damage block a's index in the bucket: verify reports it against that block.
    let key = format!("{}/index", a.ulid);
    let mut index = bucket.get(&key).await.unwrap().to_vec();
    let mid = index.len() / 3;
    index[mid] ^= 0xFF;
    bucket.upload(&key, Bytes::from(index)).await.unwrap();
    let only_a = VerifyOptions {
        ids: vec![a.ulid],
        ..opts.clone()
    };
    let report = verify_bucket(bucket, &only_a).await.unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.block == Some(a.ulid) && p.severity == Severity::Error),
        "{:#?}",
        report.problems
    );
    assert!(
        report.problems.iter().all(|p| p.block == Some(a.ulid)),
        "only block a is reported"
    );
}

#[tokio::test]
async fn in_memory_bucket() {
    fetch_download_and_verify(&Bucket::in_memory("mem", &BucketMetrics::unregistered())).await;
}

#[tokio::test]
async fn filesystem_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let yml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        dir.path().display()
    );
    let bucket = Bucket::from_yaml(&yml, &BucketMetrics::unregistered()).unwrap();
    fetch_download_and_verify(&bucket).await;
}

#[tokio::test]
async fn s3_bucket_served_by_moto() {
    let moto = MotoServer::start().expect("moto_server (run scripts/test.sh to install it)");
    moto.create_bucket("blocks").unwrap();
    let bucket =
        Bucket::from_yaml(&moto.objstore_yml("blocks"), &BucketMetrics::unregistered()).unwrap();
    fetch_download_and_verify(&bucket).await;
}

fn meta_at(min: i64, max: i64, labels: &[(&str, &str)]) -> BlockMeta {
    let mut m = BlockMeta::new(Ulid::generate(), min, max);
    m.thanos = Some(strata_tsdb::ThanosMeta {
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    });
    m
}

#[test]
fn overlaps_are_found_per_stream_only() {
    let a = meta_at(0, 100, &[("r", "1")]);
    let b = meta_at(100, 200, &[("r", "1")]); // adjacent, not overlapping
    let c = meta_at(150, 160, &[("r", "1")]); // inside b
    let d = meta_at(0, 100, &[("r", "2")]); // another stream
    let problems = find_overlaps([&a, &b, &c, &d]);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].block, Some(c.ulid));
    assert!(problems[0].detail.contains(&b.ulid.to_string()));
}

#[test]
fn a_damaged_local_block_lists_each_problem() {
    let dir = tempfile::tempdir().unwrap();
    let (bdir, meta) = make_block(dir.path(), 0, 1 << 20);
    let (problems, counts) = verify_block_dir(&bdir, meta.ulid);
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(counts.series, 40);
    assert_eq!(counts.samples, meta.stats.num_samples);

    // Flip a byte inside the chunk data: the chunk's CRC no longer matches.
    let seg = bdir.join("chunks/000001");
    let mut data = std::fs::read(&seg).unwrap();
    data[100] ^= 0x01;
    std::fs::write(&seg, &data).unwrap();
    // And claim wrong stats.
    let mut m = meta.clone();
    m.stats.num_series = 41;
    m.write_to_dir(&bdir).unwrap();
    let (problems, _) = verify_block_dir(&bdir, meta.ulid);
    let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert!(
        text.iter().any(|t| t.contains("CRC32C mismatch")),
        "{text:#?}"
    );
    assert!(text.iter().any(|t| t.contains("numSeries 41")), "{text:#?}");
    assert!(text.iter().all(|t| t.contains(&meta.ulid.to_string())));
}

/// `--hash-func=SHA256` on moto S3: the uploaded meta records each chunk segment's and the
/// index's SHA-256 (as `sha256sum` computes it; meta.json itself has none, as in Thanos). A
/// download over a previous one keeps the files whose hash still matches instead of fetching
/// them, and fetches a file that changed locally.
#[tokio::test]
async fn sha256_hashes_are_recorded_and_spare_downloads() {
    use strata_block::transfer::HashFunc;
    let moto = MotoServer::start().expect("moto_server (run scripts/test.sh to install it)");
    moto.create_bucket("hashes").unwrap();
    let metrics = BucketMetrics::unregistered();
    let bucket = Bucket::from_yaml(&moto.objstore_yml("hashes"), &metrics).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (bdir, _) = make_block(dir.path(), 0, 64 * 1024);
    let opts = UploadOptions {
        hash_func: HashFunc::Sha256,
        ..upload_opts()
    };
    let meta = upload_block(&bucket, &bdir, &opts).await.unwrap();
    let files = &meta.thanos.as_ref().unwrap().files;
    assert!(files.len() >= 3, "{files:?}");
    for f in files {
        if f.rel_path == "meta.json" {
            assert!(f.hash.is_none());
            continue;
        }
        let out = std::process::Command::new("sha256sum")
            .arg(bdir.join(&f.rel_path))
            .output()
            .unwrap();
        let want = String::from_utf8(out.stdout).unwrap();
        let h = f.hash.as_ref().expect("every block file is hashed");
        assert_eq!(h.func, "SHA256");
        assert_eq!(want.split_whitespace().next(), Some(h.value.as_str()));
    }
    // The meta in the bucket says the same.
    let uploaded = BlockMeta::parse(
        "meta.json",
        &bucket
            .get(&format!("{}/meta.json", meta.ulid))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(&uploaded.thanos.unwrap().files, files);

    let dl = tempfile::tempdir().unwrap();
    let gets = || metrics.operations(bucket.name(), "get");
    let before = gets();
    let got = download_block(&bucket, meta.ulid, dl.path()).await.unwrap();
    let first = gets() - before;
    assert_eq!(first as usize, files.len(), "every file fetched once");
    // Again over the first download: only meta.json (read once to compare, once to keep).
    let before = gets();
    download_block(&bucket, meta.ulid, dl.path()).await.unwrap();
    assert_eq!(gets() - before, 2, "matching files are kept, not fetched");
    for f in files.iter().filter(|f| f.rel_path != "meta.json") {
        assert_eq!(
            std::fs::read(got.join(&f.rel_path)).unwrap(),
            std::fs::read(bdir.join(&f.rel_path)).unwrap(),
            "{}",
            f.rel_path
        );
    }
    // A local file that changed is fetched again, and comes back whole.
    std::fs::write(got.join("index"), b"damaged").unwrap();
    let before = gets();
    download_block(&bucket, meta.ulid, dl.path()).await.unwrap();
    assert_eq!(gets() - before, 3, "meta.json twice and the index");
    assert_eq!(
        std::fs::read(got.join("index")).unwrap(),
        std::fs::read(bdir.join("index")).unwrap()
    );
    // Without recorded hashes nothing is kept.
    let plain = upload_block(&bucket, &bdir, &upload_opts()).await.unwrap();
    assert!(plain.thanos.unwrap().files.iter().all(|f| f.hash.is_none()));
    let before = gets();
    download_block(&bucket, meta.ulid, dl.path()).await.unwrap();
    assert_eq!((gets() - before) as usize, files.len() + 1);
}
