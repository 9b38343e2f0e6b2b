//! A conformance suite for [`Bucket`] backends.
//!
//! Every backend must behave the same towards the block code — Thanos' semantics, not the
//! backend's own — so the same checks run against the in-memory store, a local directory and a
//! real S3-compatible server. The checks are public so that any crate (or an operator debugging a
//! new S3-compatible product) can run them against a bucket.
//!
//! The checks write only below a fresh, unique prefix and delete what they wrote. They assert
//! metric deltas, so the bucket's [`BucketMetrics`](crate::BucketMetrics) must not be used by
//! anything else for the same bucket name while they run.
//!
//! Failures panic with a message naming the check, as test assertions do.

use std::ops::Range;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::{Bucket, Error};

/// Runs every check, each under its own fresh prefix of `bucket`, then verifies nothing was left
/// behind.
pub async fn conformance(bucket: &Bucket) {
    let root = bucket.with_prefix(&unique_name("conformance"));
    read_write(&root.with_prefix("rw")).await;
    ranges(&root.with_prefix("ranges")).await;
    not_found(&root.with_prefix("nf")).await;
    iter(&root.with_prefix("iter")).await;
    prefix_isolation(&root.with_prefix("iso")).await;
    invalid_input(&root.with_prefix("invalid")).await;
    upload_file(&root.with_prefix("file")).await;
    metrics(&root.with_prefix("metrics")).await;
    cleanup(&root).await;
    assert_eq!(
        root.iter("", true).await.expect("iter after cleanup"),
        Vec::<String>::new(),
        "conformance: objects left behind"
    );
}

/// A name unique to this process and moment, for isolating runs that share a bucket.
pub fn unique_name(stem: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{stem}-{}-{nanos}", std::process::id())
}

/// Deterministic, non-repeating test content (so misplaced ranges are detected).
pub fn pattern(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Deletes every object under `bucket`.
pub async fn cleanup(bucket: &Bucket) {
    for name in bucket.iter("", true).await.expect("cleanup: iter") {
        bucket.delete(&name).await.expect("cleanup: delete");
    }
}

/// upload, get, exists, attributes, overwrite, empty objects, delete.
pub async fn read_write(bucket: &Bucket) {
    let before = SystemTime::now();
    bucket
        .upload("a.txt", Bytes::from_static(b"hello world"))
        .await
        .expect("read_write: upload");
    assert_eq!(
        bucket.get("a.txt").await.expect("read_write: get"),
        "hello world"
    );
    assert!(bucket.exists("a.txt").await.expect("read_write: exists"));

    let attrs = bucket
        .attributes("a.txt")
        .await
        .expect("read_write: attributes");
    assert_eq!(attrs.size, 11, "read_write: attributes size");
    // Backends report seconds (S3) or better; allow clock granularity and small skew.
    let slack = Duration::from_secs(120);
    assert!(
        attrs.last_modified + slack >= before && attrs.last_modified <= SystemTime::now() + slack,
        "read_write: last_modified {:?} is not close to now",
        attrs.last_modified
    );

    bucket
        .upload("a.txt", Bytes::from_static(b"replaced"))
        .await
        .expect("read_write: overwrite");
    assert_eq!(
        bucket.get("a.txt").await.unwrap(),
        "replaced",
        "read_write: overwrite"
    );
    assert_eq!(bucket.attributes("a.txt").await.unwrap().size, 8);

    bucket
        .upload("empty", Bytes::new())
        .await
        .expect("read_write: empty upload");
    assert_eq!(
        bucket.get("empty").await.expect("read_write: empty get"),
        ""
    );
    assert_eq!(bucket.attributes("empty").await.unwrap().size, 0);

    let nested = "dir/sub/deep/object.bin";
    bucket
        .upload(nested, Bytes::from(pattern(1000)))
        .await
        .expect("read_write: nested upload");
    assert_eq!(bucket.get(nested).await.unwrap(), pattern(1000));

    for key in ["a.txt", "empty", nested] {
        bucket.delete(key).await.expect("read_write: delete");
        assert!(
            !bucket.exists(key).await.unwrap(),
            "read_write: {key} still exists after delete"
        );
        assert!(bucket.get(key).await.unwrap_err().is_not_found());
    }
}

/// get_range and get_ranges, including ranges touching, crossing and starting past the end.
pub async fn ranges(bucket: &Bucket) {
    let data = pattern(10_000);
    bucket
        .upload("obj", Bytes::from(data.clone()))
        .await
        .expect("ranges: upload");

    let cases: [Range<u64>; 5] = [0..1, 0..10_000, 100..2_000, 9_990..10_000, 9_999..10_000];
    for r in cases {
        let got = bucket
            .get_range("obj", r.clone())
            .await
            .expect("ranges: get_range");
        assert_eq!(
            got,
            data[r.start as usize..r.end as usize],
            "ranges: get_range {r:?}"
        );
    }
    // Crossing the end: cut at the end, as S3 does.
    let got = bucket
        .get_range("obj", 9_000..20_000)
        .await
        .expect("ranges: crossing end");
    assert_eq!(
        got,
        data[9_000..],
        "ranges: range crossing the end is cut at the end"
    );
    // Empty range: no bytes.
    assert_eq!(
        bucket.get_range("obj", 5..5).await.unwrap(),
        "",
        "ranges: empty range"
    );

    for r in [10_000..10_001, 20_000..30_000] {
        match bucket.get_range("obj", r.clone()).await {
            Err(Error::RangeNotSatisfiable { size, start, .. }) => {
                assert_eq!(
                    (size, start),
                    (10_000, r.start),
                    "ranges: error fields for {r:?}"
                );
            }
            other => panic!("ranges: range {r:?} past the end gave {other:?}"),
        }
    }
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 10..5;
    assert!(
        matches!(
            bucket.get_range("obj", backwards).await,
            Err(Error::InvalidInput { what: "range", .. })
        ),
        "ranges: start after end must be rejected"
    );

    let many = [
        0..10,
        5..15,
        4_000..4_100,
        4_100..4_200,
        9_950..10_000,
        7..7,
    ];
    let got = bucket
        .get_ranges("obj", &many)
        .await
        .expect("ranges: get_ranges");
    assert_eq!(got.len(), many.len());
    for (r, bytes) in many.iter().zip(&got) {
        assert_eq!(
            bytes,
            &data[r.start as usize..r.end as usize],
            "ranges: get_ranges {r:?}"
        );
    }
    assert!(bucket.get_ranges("obj", &[]).await.unwrap().is_empty());
    assert!(matches!(
        bucket.get_ranges("obj", &[0..10, 10_500..10_600]).await,
        Err(Error::RangeNotSatisfiable { start: 10_500, .. })
    ));

    bucket.upload("empty", Bytes::new()).await.unwrap();
    assert!(matches!(
        bucket.get_range("empty", 0..1).await,
        Err(Error::RangeNotSatisfiable { size: 0, .. })
    ));
    bucket.delete("obj").await.unwrap();
    bucket.delete("empty").await.unwrap();
}

/// Missing objects give a matchable not-found error, never a panic, and deleting one succeeds.
pub async fn not_found(bucket: &Bucket) {
    let missing = "no/such/object";
    let err = bucket.get(missing).await.unwrap_err();
    assert!(err.is_not_found(), "not_found: get gave {err:?}");
    assert!(
        err.to_string().contains(missing),
        "not_found: message names the key: {err}"
    );
    let err = bucket.get_range(missing, 0..10).await.unwrap_err();
    assert!(err.is_not_found(), "not_found: get_range gave {err:?}");
    let err = bucket
        .get_ranges(missing, &[0..10, 20..30])
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "not_found: get_ranges gave {err:?}");
    let err = bucket.attributes(missing).await.unwrap_err();
    assert!(err.is_not_found(), "not_found: attributes gave {err:?}");
    assert!(!bucket.exists(missing).await.expect("not_found: exists"));
    bucket
        .delete(missing)
        .await
        .expect("not_found: deleting a missing object succeeds");
    assert_eq!(bucket.iter("no", true).await.unwrap(), Vec::<String>::new());
}

/// Thanos `Iter` semantics.
pub async fn iter(bucket: &Bucket) {
    let keys = [
        "top",
        "dir/a",
        "dir/b",
        "dir/sub/c",
        "dir/sub/deeper/d",
        "dirx/e",
        "other/f",
    ];
    for key in keys {
        bucket
            .upload(key, Bytes::from(key.to_string()))
            .await
            .expect("iter: upload");
    }
    let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let check = async |dir: &str, recursive: bool, want: &[&str]| {
        let got = bucket.iter(dir, recursive).await.expect("iter: iter");
        assert_eq!(got, list(want), "iter({dir:?}, recursive={recursive})");
    };
    check("", false, &["dir/", "dirx/", "other/", "top"]).await;
    check("dir", false, &["dir/a", "dir/b", "dir/sub/"]).await;
    check("dir/", false, &["dir/a", "dir/b", "dir/sub/"]).await;
    check("dir/sub", false, &["dir/sub/c", "dir/sub/deeper/"]).await;
    check(
        "dir",
        true,
        &["dir/a", "dir/b", "dir/sub/c", "dir/sub/deeper/d"],
    )
    .await;
    let mut all = keys.to_vec();
    all.sort_unstable();
    check("", true, &all).await;
    // A directory, not a string prefix.
    check("di", false, &[]).await;
    check("missing", true, &[]).await;
    assert!(
        !bucket.exists("dir").await.unwrap(),
        "iter: a directory is not an object"
    );

    // Deleting the last object of a directory makes the directory disappear.
    bucket.delete("dir/sub/deeper/d").await.unwrap();
    check("dir/sub", false, &["dir/sub/c"]).await;
    for key in keys {
        bucket.delete(key).await.unwrap();
    }
    check("", false, &[]).await;
}

/// Keys are relative to the prefix and one prefix cannot see another's objects.
pub async fn prefix_isolation(bucket: &Bucket) {
    let p1 = bucket.with_prefix("p1");
    let p2 = bucket.with_prefix("/p2/");
    assert!(p1.prefix().ends_with("/p1"), "prefix: {}", p1.prefix());
    assert!(p2.prefix().ends_with("/p2"), "prefix: {}", p2.prefix());
    p1.upload("x", Bytes::from_static(b"one"))
        .await
        .expect("prefix: upload p1");
    p2.upload("x", Bytes::from_static(b"two"))
        .await
        .expect("prefix: upload p2");
    assert_eq!(p1.get("x").await.unwrap(), "one");
    assert_eq!(p2.get("x").await.unwrap(), "two");
    assert_eq!(
        bucket.get("p1/x").await.unwrap(),
        "one",
        "prefix: parent sees p1/x"
    );
    assert_eq!(p1.iter("", true).await.unwrap(), vec!["x".to_string()]);
    assert_eq!(
        bucket.iter("", false).await.unwrap(),
        vec!["p1/".to_string(), "p2/".to_string()]
    );
    p1.delete("x").await.unwrap();
    assert!(!p1.exists("x").await.unwrap());
    assert_eq!(
        p2.get("x").await.unwrap(),
        "two",
        "prefix: p2 untouched by p1's delete"
    );
    p2.delete("x").await.unwrap();
}

/// Bad keys and ranges are errors, not panics.
pub async fn invalid_input(bucket: &Bucket) {
    for key in ["", "/abs", "trailing/", "a//b", "../escape", "a/./b"] {
        match bucket.get(key).await {
            Err(Error::InvalidInput {
                what: "object key", ..
            }) => {}
            other => panic!("invalid_input: key {key:?} gave {other:?}"),
        }
        assert!(
            bucket.upload(key, Bytes::new()).await.is_err(),
            "upload {key:?}"
        );
        assert!(bucket.exists(key).await.is_err(), "exists {key:?}");
    }
    assert!(bucket.iter("../x", false).await.is_err(), "iter of `../x`");
}

/// upload_file: a small file in one request and a multi-part file streamed in parts.
pub async fn upload_file(bucket: &Bucket) {
    let dir = TempDir::new();
    // Below S3's 5 MiB part minimum only the last part may be, so use exactly that.
    let part = 5 * 1024 * 1024;
    let multipart = bucket.with_part_size(part);

    let small = dir.write("small", &pattern(1234));
    multipart
        .upload_file("small", &small)
        .await
        .expect("upload_file: small");
    assert_eq!(multipart.get("small").await.unwrap(), pattern(1234));

    let len = 2 * part + 12_345;
    let data = pattern(len);
    let big = dir.write("big", &data);
    multipart
        .upload_file("chunks/000001", &big)
        .await
        .expect("upload_file: multipart");
    let attrs = bucket.attributes("chunks/000001").await.unwrap();
    assert_eq!(attrs.size, len as u64, "upload_file: size");
    let got = bucket.get("chunks/000001").await.unwrap();
    assert!(
        got == data[..],
        "upload_file: content differs after multipart upload"
    );
    // Across the first part boundary.
    let r = (part as u64 - 100)..(part as u64 + 100);
    let got = bucket.get_range("chunks/000001", r.clone()).await.unwrap();
    assert_eq!(
        got,
        data[r.start as usize..r.end as usize],
        "upload_file: range across parts"
    );

    // Streaming download back to a file gives the same bytes.
    let back = dir.path.join("downloaded");
    let n = bucket
        .download_file("chunks/000001", &back)
        .await
        .expect("download_file");
    assert_eq!(n, len as u64, "download_file: size");
    assert!(
        std::fs::read(&back).unwrap() == data,
        "download_file: content differs"
    );
    match bucket.download_file("does-not-exist", &back).await {
        Err(e) if e.is_not_found() => {}
        other => panic!("download_file: missing object gave {other:?}"),
    }

    let missing = dir.path.join("does-not-exist");
    match bucket.upload_file("nope", &missing).await {
        Err(Error::LocalFile { .. }) => {}
        other => panic!("upload_file: missing local file gave {other:?}"),
    }
    assert!(!bucket.exists("nope").await.unwrap());
    bucket.delete("small").await.unwrap();
    bucket.delete("chunks/000001").await.unwrap();
}

/// Operation counters move as Thanos' do: one per call, not-found is not a failure.
pub async fn metrics(bucket: &Bucket) {
    let m = bucket.metrics().clone();
    let name = bucket.name().to_string();
    let snapshot = |m: &crate::BucketMetrics| {
        [
            "get",
            "get_range",
            "exists",
            "upload",
            "delete",
            "attributes",
            "iter",
        ]
        .map(|op| (m.operations(&name, op), m.failures(&name, op)))
    };
    let before = snapshot(&m);
    bucket
        .upload("m", Bytes::from_static(b"0123456789"))
        .await
        .unwrap();
    bucket.get("m").await.unwrap();
    bucket.get("missing").await.unwrap_err();
    bucket.get_range("m", 0..2).await.unwrap();
    bucket.get_range("m", 50..60).await.unwrap_err();
    bucket.exists("m").await.unwrap();
    bucket.exists("missing").await.unwrap();
    bucket.attributes("missing").await.unwrap_err();
    bucket.iter("", true).await.unwrap();
    bucket.delete("m").await.unwrap();
    let after = snapshot(&m);
    let delta: Vec<(u64, u64)> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a.0 - b.0, a.1 - b.1))
        .collect();
    assert_eq!(
        delta,
        vec![(2, 0), (2, 1), (2, 0), (1, 0), (1, 0), (1, 0), (1, 0)],
        "metrics: (operations, failures) deltas for get, get_range, exists, upload, delete, \
         attributes, iter"
    );
}

/// A temporary directory removed on drop (keeps this module free of dev-only dependencies).
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new() -> TempDir {
        let path = std::env::temp_dir().join(unique_name("strata-objstore-test"));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    fn write(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.path.join(name);
        std::fs::write(&p, data).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
