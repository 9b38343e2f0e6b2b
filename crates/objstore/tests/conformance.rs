//! The conformance suite against every backend we can run here: in-memory, a local directory,
//! and a real S3-compatible server (moto) reached through an objstore.yml `type: S3` config.

use prometheus_client::registry::Registry;
use strata_objstore::{Bucket, BucketConfig, BucketMetrics, Error, testing};
use strata_testutil::moto::MotoServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory() {
    let bucket = Bucket::in_memory("mem", &BucketMetrics::unregistered());
    testing::conformance(&bucket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let yml = format!(
        "type: filesystem\nconfig:\n  directory: {}\n",
        dir.path().display()
    );
    let bucket = Bucket::from_yaml(&yml, &BucketMetrics::unregistered()).unwrap();
    testing::conformance(&bucket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_with_prefix_writes_under_the_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let yml = format!(
        "type: FILESYSTEM\nprefix: /tenant/a/\nconfig:\n  directory: {}\n",
        dir.path().join("root").display()
    );
    let bucket = Bucket::from_yaml(&yml, &BucketMetrics::unregistered()).unwrap();
    assert_eq!(bucket.prefix(), "tenant/a");
    testing::conformance(&bucket).await;
    bucket.upload("blk/meta.json", "{}".into()).await.unwrap();
    let on_disk = dir.path().join("root/tenant/a/blk/meta.json");
    assert_eq!(std::fs::read_to_string(&on_disk).unwrap(), "{}");
    assert_eq!(
        bucket.iter("", false).await.unwrap(),
        vec!["blk/".to_string()]
    );
}

fn start_moto(bucket: &str) -> MotoServer {
    // Not skipped when moto is missing: the error says how to install it.
    let server = MotoServer::start().unwrap_or_else(|e| panic!("{e:#}"));
    server
        .create_bucket(bucket)
        .unwrap_or_else(|e| panic!("{e:#}"));
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_moto() {
    let server = start_moto("strata-conformance");
    let yml = format!(
        "type: S3\nconfig:\n  bucket: strata-conformance\n  endpoint: {}\n  insecure: true\n  \
         access_key: dummy\n  secret_key: dummy\n  bucket_lookup_type: path\n  max_retries: 2\n  \
         http_config:\n    idle_conn_timeout: 1m30s\n    response_header_timeout: 2m\n",
        server.endpoint()
    );
    let mut registry = Registry::default();
    let metrics = BucketMetrics::register(&mut registry);
    let bucket = Bucket::from_yaml(&yml, &metrics).unwrap();
    assert_eq!(bucket.name(), "strata-conformance");
    testing::conformance(&bucket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_moto_with_prefix_and_auto_lookup() {
    let server = start_moto("strata-prefixed");
    // `auto` must pick path style for a non-AWS endpoint, or moto would be asked for a
    // `strata-prefixed.127.0.0.1` host.
    let yml = format!(
        "type: s3\nprefix: tenant-1\nconfig:\n  bucket: strata-prefixed\n  endpoint: {}\n  \
         insecure: true\n  access_key: ${{TEST_KEY}}\n  secret_key: $(TEST_KEY)\n",
        server.endpoint()
    );
    let config = BucketConfig::from_yaml_with_env(&yml, |name| {
        (name == "TEST_KEY").then(|| "dummy".to_string())
    })
    .unwrap();
    let bucket = Bucket::from_config(&config, &BucketMetrics::unregistered()).unwrap();
    testing::conformance(&bucket).await;

    // The prefix is real on the server: the unprefixed view sees the object under tenant-1/.
    bucket.upload("k", "v".into()).await.unwrap();
    let root = Bucket::from_yaml(
        &server.objstore_yml("strata-prefixed"),
        &BucketMetrics::unregistered(),
    )
    .unwrap();
    assert_eq!(root.get("tenant-1/k").await.unwrap(), "v");
    assert_eq!(
        root.iter("", false).await.unwrap(),
        vec!["tenant-1/".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_missing_bucket_is_not_a_missing_object() {
    let server = start_moto("exists");
    let bucket = Bucket::from_yaml(
        &server.objstore_yml("never-created"),
        &BucketMetrics::unregistered(),
    )
    .unwrap();
    let err = bucket.upload("a/b", "x".into()).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::BucketNotFound { .. }), "{err:?}");
    assert!(
        msg.contains("`never-created` does not exist") && msg.contains("a/b"),
        "{msg}"
    );
    for err in [
        bucket.get("a/b").await.unwrap_err(),
        bucket.get_range("a/b", 0..1).await.unwrap_err(),
        bucket.iter("", true).await.unwrap_err(),
        bucket.iter("", false).await.unwrap_err(),
    ] {
        assert!(matches!(err, Error::BucketNotFound { .. }), "{err:?}");
    }
    // HEAD responses carry no body, so exists/attributes cannot tell (documented on `exists`).
    assert!(!bucket.exists("a/b").await.unwrap());
    assert_eq!(bucket.metrics().failures("never-created", "upload"), 1);
    assert_eq!(bucket.metrics().failures("never-created", "get"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_unreachable_endpoint_fails_with_a_clear_error() {
    // Nothing listens on this port; max_retries keeps the test short.
    let port = strata_testutil::process::free_port();
    let yml = format!(
        "type: S3\nconfig:\n  bucket: b\n  endpoint: 127.0.0.1:{port}\n  insecure: true\n  \
         access_key: k\n  secret_key: s\n  max_retries: 1\n"
    );
    let bucket = Bucket::from_yaml(&yml, &BucketMetrics::unregistered()).unwrap();
    let err = bucket.get("x").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Backend {
                operation: "get",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("`x` in bucket `b`"), "{err}");
}
