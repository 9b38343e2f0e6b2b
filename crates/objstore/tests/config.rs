//! objstore.yml parsing: every provider, prefix, environment expansion, Thanos' keys, errors.

use std::time::Duration;

use strata_objstore::{
    Bucket, BucketConfig, BucketLookupType, BucketMetrics, Error, ProviderConfig, STORAGE_DOCS,
};

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(text: &str) -> Result<BucketConfig, Error> {
    BucketConfig::from_yaml_with_env(text, no_env)
}

fn err_text(text: &str) -> String {
    parse(text)
        .expect_err("config should be rejected")
        .to_string()
}

/// Every S3 key Thanos documents, as a full manifest would have them.
const FULL_S3: &str = r#"
type: S3
prefix: ""
config:
  bucket: "metrics"
  endpoint: "s3.eu-west-1.amazonaws.com"
  region: ""
  aws_sdk_auth: false
  access_key: "AKIA"
  insecure: false
  signature_version2: false
  disable_dualstack: false
  secret_key: "secret"
  session_token: ""
  put_user_metadata: {team: observability}
  http_config:
    idle_conn_timeout: 1m30s
    response_header_timeout: 2m
    insecure_skip_verify: false
    tls_handshake_timeout: 10s
    expect_continue_timeout: 1s
    max_idle_conns: 100
    max_idle_conns_per_host: 100
    max_conns_per_host: 0
    tls_config:
      ca_file: ""
      cert_file: ""
      key_file: ""
      server_name: ""
      insecure_skip_verify: false
    disable_compression: false
  trace:
    enable: false
  list_objects_version: ""
  bucket_lookup_type: auto
  send_content_md5: true
  disable_multipart: false
  part_size: 67108864
  sse_config:
    type: ""
    kms_key_id: ""
    kms_encryption_context: {}
    encryption_key: ""
  sts_endpoint: ""
  max_retries: 0
"#;

#[test]
fn s3_full_thanos_manifest_loads() {
    let c = parse(FULL_S3).unwrap();
    let ProviderConfig::S3(s3) = &c.provider else {
        panic!("{c:?}")
    };
    assert_eq!(s3.bucket.as_deref(), Some("metrics"));
    assert_eq!(s3.access_key.as_ref().unwrap().expose(), "AKIA");
    assert_eq!(s3.bucket_lookup_type, Some(BucketLookupType::Auto));
    let http = s3.http_config.as_ref().unwrap();
    assert_eq!(http.idle_conn_timeout, Some(Duration::from_secs(90)));
    assert_eq!(http.response_header_timeout, Some(Duration::from_secs(120)));
    assert_eq!(s3.part_size, Some(64 << 20));
    assert_eq!(c.prefix, "");
    assert_eq!(c.bucket_name(), "metrics");
    // Secrets never show in Debug output (configs get logged).
    assert!(!format!("{c:?}").contains("secret\""), "{c:?}");
    // The only key here that is set to something we cannot honour.
    let ignored: Vec<_> = c.ignored_keys().into_iter().map(|k| k.key).collect();
    assert_eq!(ignored, ["send_content_md5"]);
    // And it builds a client (no network needed to build).
    Bucket::from_config(&c, &BucketMetrics::unregistered()).unwrap();
}

#[test]
fn type_is_case_insensitive() {
    for t in ["s3", "S3", " s3 "] {
        let c = parse(&format!("type: {t}\nconfig:\n  bucket: b\n")).unwrap();
        assert_eq!(c.provider.type_name(), "S3");
    }
    let c = parse("type: Filesystem\nconfig:\n  directory: /tmp/x\n").unwrap();
    assert_eq!(c.provider.type_name(), "FILESYSTEM");
}

#[test]
fn gcs_config() {
    let c = parse(
        "type: GCS\nconfig:\n  bucket: g\n  service_account: ''\n  use_grpc: true\n  \
         grpc_conn_pool_size: 4\n  chunk_size_bytes: 8388608\n  max_retries: 3\n  \
         http_config:\n    tls_handshake_timeout: 5s\n",
    )
    .unwrap();
    let ProviderConfig::Gcs(g) = &c.provider else {
        panic!()
    };
    assert_eq!(g.bucket.as_deref(), Some("g"));
    assert_eq!(g.max_retries, Some(3));
    let ignored: Vec<_> = c.ignored_keys().into_iter().map(|k| k.key).collect();
    assert_eq!(ignored, ["use_grpc", "grpc_conn_pool_size"]);
    Bucket::from_config(&c, &BucketMetrics::unregistered()).unwrap();
}

#[test]
fn azure_config() {
    let c = parse(
        "type: AZURE\nconfig:\n  storage_account: acc\n  storage_account_key: a2V5a2V5\n  \
         container: blocks\n  endpoint: blob.core.windows.net\n  storage_create_container: true\n  \
         max_retries: 2\n  msi_resource: ''\n  user_assigned_id: ''\n  az_tenant_id: ''\n  \
         client_id: ''\n  client_secret: ''\n  storage_connection_string: ''\n  \
         reader_config:\n    max_retry_requests: 3\n  pipeline_config:\n    max_tries: 4\n    \
         try_timeout: 30s\n    retry_delay: 1s\n    max_retry_delay: 10s\n  http_config: {}\n",
    )
    .unwrap();
    let ProviderConfig::Azure(a) = &c.provider else {
        panic!()
    };
    assert_eq!(a.container.as_deref(), Some("blocks"));
    assert_eq!(
        a.pipeline_config.as_ref().unwrap().try_timeout,
        Some(Duration::from_secs(30))
    );
    assert_eq!(c.bucket_name(), "blocks");
    let ignored: Vec<_> = c.ignored_keys().into_iter().map(|k| k.key).collect();
    assert_eq!(
        ignored,
        [
            "storage_create_container",
            "reader_config.max_retry_requests"
        ]
    );
    Bucket::from_config(&c, &BucketMetrics::unregistered()).unwrap();
}

#[test]
fn azure_connection_string_replaces_account_settings() {
    let c = parse(
        "type: AZURE\nconfig:\n  container: c\n  storage_connection_string: \
         \"DefaultEndpointsProtocol=https;AccountName=acc;AccountKey=a2V5;EndpointSuffix=core.windows.net\"\n",
    )
    .unwrap();
    Bucket::from_config(&c, &BucketMetrics::unregistered()).unwrap();
    assert!(err_text("type: AZURE\nconfig:\n  container: c\n").contains("storage_account"));
}

#[test]
fn filesystem_config_and_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "type: FILESYSTEM\nprefix: /a/b/\nconfig:\n  directory: {}\n",
        dir.path().join("new").display()
    );
    let c = parse(&text).unwrap();
    assert_eq!(c.prefix, "a/b");
    let bucket = Bucket::from_config(&c, &BucketMetrics::unregistered()).unwrap();
    assert_eq!(bucket.prefix(), "a/b");
    assert!(dir.path().join("new").is_dir(), "directory is created");
    assert!(err_text("type: FILESYSTEM\nconfig: {}\n").contains("missing `directory`"));
}

#[test]
fn env_expansion() {
    let env = |name: &str| match name {
        "BUCKET" => Some("from-env".to_string()),
        "SECRET" => Some("s3cr3t".to_string()),
        _ => None,
    };
    let c = BucketConfig::from_yaml_with_env(
        "type: S3\nconfig:\n  bucket: ${BUCKET}\n  access_key: $(SECRET)\n  secret_key: ${SECRET}\n",
        env,
    )
    .unwrap();
    let ProviderConfig::S3(s3) = &c.provider else {
        panic!()
    };
    assert_eq!(s3.bucket.as_deref(), Some("from-env"));
    assert_eq!(s3.secret_key.as_ref().unwrap().expose(), "s3cr3t");

    let err = BucketConfig::from_yaml_with_env(
        "type: S3\nconfig:\n  bucket: b\n  secret_key: ${NOT_SET_ANYWHERE}\n",
        env,
    )
    .unwrap_err();
    assert!(matches!(&err, Error::EnvVarNotSet { name } if name == "NOT_SET_ANYWHERE"));
    assert!(err.to_string().contains("`NOT_SET_ANYWHERE`"), "{err}");
}

#[test]
fn env_expansion_reads_the_process_environment() {
    // Cargo sets CARGO_MANIFEST_DIR for test processes; no need to mutate the environment.
    let c = BucketConfig::from_yaml(
        "type: FILESYSTEM\nconfig:\n  directory: ${CARGO_MANIFEST_DIR}/data\n",
    )
    .unwrap();
    assert_eq!(
        c.bucket_name(),
        format!("{}/data", env!("CARGO_MANIFEST_DIR"))
    );
    let err = BucketConfig::from_yaml(
        "type: FILESYSTEM\nconfig:\n  directory: ${STRATA_SURELY_UNSET_VARIABLE_1234}\n",
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("`STRATA_SURELY_UNSET_VARIABLE_1234`"),
        "{err}"
    );
}

#[test]
fn unknown_keys_are_errors_naming_key_and_section() {
    let cases = [
        (
            "type: S3\nconfig:\n  bucket: b\n  acces_key: x\n",
            "acces_key",
            "S3",
        ),
        (
            "type: S3\nconfig:\n  bucket: b\n  http_config:\n    idle_timeout: 1s\n",
            "idle_timeout",
            "S3 http_config",
        ),
        (
            "type: S3\nconfig:\n  bucket: b\n  http_config:\n    tls_config:\n      ca: x\n",
            "ca",
            "S3 http_config.tls_config",
        ),
        (
            "type: GCS\nconfig:\n  bucket: b\n  project: p\n",
            "project",
            "GCS",
        ),
        (
            "type: AZURE\nconfig:\n  container: c\n  account: a\n",
            "account",
            "AZURE",
        ),
        (
            "type: FILESYSTEM\nconfig:\n  dir: /x\n",
            "dir",
            "FILESYSTEM",
        ),
        ("type: S3\nconfg:\n  bucket: b\n", "confg", "top-level"),
    ];
    for (text, key, section) in cases {
        match parse(text) {
            Err(Error::UnknownKey { key: k, section: s }) => {
                assert_eq!((k.as_str(), s.as_str()), (key, section), "{text}");
            }
            other => panic!("{text}: expected unknown key `{key}`, got {other:?}"),
        }
        let msg = err_text(text);
        assert!(
            msg.contains(&format!("unknown key `{key}` in {section} config")),
            "{msg}"
        );
        assert!(msg.contains(STORAGE_DOCS), "{msg}");
    }
}

#[test]
fn known_but_unsupported_keys_are_accepted_and_reported() {
    let c = parse(
        "type: S3\nconfig:\n  bucket: b\n  signature_version2: true\n  trace:\n    enable: true\n  \
         list_objects_version: v1\n  aws_sdk_auth: true\n  http_config:\n    max_conns_per_host: 5\n    max_idle_conns: 50\n    \
         tls_config:\n      server_name: x\n  sse_config:\n    type: SSE-KMS\n    kms_key_id: k\n    \
         kms_encryption_context: {a: b}\n",
    )
    .unwrap();
    let ignored: Vec<_> = c.ignored_keys().into_iter().map(|k| k.key).collect();
    assert_eq!(
        ignored,
        [
            "aws_sdk_auth",
            "signature_version2",
            "trace.enable",
            "list_objects_version",
            "sse_config.kms_encryption_context",
            "http_config.max_idle_conns",
            "http_config.max_conns_per_host",
            "http_config.tls_config.server_name",
        ]
    );
    for k in c.ignored_keys() {
        assert!(!k.reason.is_empty());
    }
    Bucket::from_config(&c, &BucketMetrics::unregistered()).unwrap();
}

#[test]
fn bad_yaml_and_bad_values_are_errors() {
    for (text, needle) in [
        ("type: S3\nconfig: [unclosed\n", "bucket config"),
        ("", "empty"),
        ("just a string", "bucket config"),
        ("config:\n  bucket: b\n", "missing `type:`"),
        ("type: SWIFT\nconfig: {}\n", "does not support"),
        ("type: NOPE\nconfig: {}\n", "unknown bucket type `NOPE`"),
        ("type: S3\nconfig:\n  endpoint: x\n", "missing `bucket`"),
        (
            "type: S3\nconfig:\n  bucket: b\n  insecure: maybe\n",
            "config.insecure",
        ),
        (
            "type: S3\nconfig:\n  bucket: b\n  http_config:\n    idle_conn_timeout: 90\n",
            "missing unit",
        ),
        (
            "type: S3\nconfig:\n  bucket: b\n  http_config:\n    idle_conn_timeout: 5x\n",
            "unknown unit",
        ),
        (
            "type: S3\nconfig:\n  bucket: b\n  bucket_lookup_type: dns\n",
            "bucket_lookup_type",
        ),
        (
            "type: S3\nconfig:\n  bucket: b\n  list_objects_version: v3\n",
            "list_objects_version",
        ),
        (
            "type: S3\nconfig:\n  bucket: b\n  part_size: 1024\n",
            "part_size",
        ),
        (
            "type: S3\nconfig:\n  bucket: b\n  access_key: a\n",
            "together",
        ),
        (
            "type: S3\nconfig:\n  bucket: b\n  sse_config:\n    type: SSE-KMS\n",
            "kms_key_id",
        ),
        (
            "type: S3\nconfig:\n  bucket: b\n  sse_config:\n    type: ROT13\n",
            "ROT13",
        ),
        ("type: GCS\nconfig: {}\n", "missing `bucket`"),
        (
            "type: AZURE\nconfig:\n  storage_account: a\n",
            "missing `container`",
        ),
    ] {
        let msg = err_text(text);
        assert!(msg.contains(needle), "{text:?}: {msg}");
    }
}

#[test]
fn build_errors_name_the_file() {
    let c = parse(
        "type: S3\nconfig:\n  bucket: b\n  http_config:\n    tls_config:\n      \
         ca_file: /nonexistent/ca.pem\n",
    )
    .unwrap();
    let err = Bucket::from_config(&c, &BucketMetrics::unregistered()).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");

    let c = parse(
        "type: S3\nconfig:\n  bucket: b\n  sse_config:\n    type: SSE-C\n    \
         encryption_key: /nonexistent/key\n",
    )
    .unwrap();
    let err = Bucket::from_config(&c, &BucketMetrics::unregistered()).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/key"), "{err}");
}
