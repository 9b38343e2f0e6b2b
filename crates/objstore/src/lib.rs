//! Object storage for Strata.
//!
//! Thanos keeps everything durable — TSDB blocks, their `meta.json`, deletion marks, the bucket
//! index — in an object store described by an `objstore.yml` file. Strata is a drop-in
//! replacement, so it must read the same files (including every key Thanos accepts), talk to the
//! same backends (S3 and S3-compatible servers, GCS, Azure Blob Storage, a local directory) and
//! export the same `thanos_objstore_bucket_*` metrics that existing dashboards and alerts use.
//!
//! This crate is that layer and nothing more: it moves named byte strings in and out of a bucket.
//! It knows nothing about TSDB blocks, ULIDs or `meta.json`; those live in the block crate, which
//! uses [`Bucket`] through its small Thanos-shaped API (`get`, `get_range`, `exists`,
//! `attributes`, `upload`, `upload_file`, `delete`, `iter`).
//!
//! The heavy lifting (signing, retries, multipart uploads, range coalescing) is done by the
//! [`object_store`] crate; this crate adds Thanos' configuration format, its listing semantics, its
//! metrics, and errors that tell an operator what to do.
//! One exception: range reads of FILESYSTEM buckets are done here, one blocking call per read
//! (`local`), because the store gateway makes many of them on its query path.
//!
//! # Configuration
//!
//! [`BucketConfig::from_yaml`] reads Thanos' objstore.yml: `type` (FILESYSTEM, S3, GCS, AZURE,
//! any case), `config`, and `prefix`, after expanding `${VAR}` / `$(VAR)` from the environment.
//! Every key Thanos knows is accepted; those the backends cannot honour are listed by
//! [`BucketConfig::ignored_keys`] and logged as warnings; unknown keys are errors naming the key.
//! Durations use Go syntax (`90s`, `1m30s`).
//!
//! # Retries
//!
//! The cloud backends retry inside the `object_store` client: connection errors, timeouts,
//! HTTP 5xx, 429 and 408 responses (and S3's 200-with-`InternalError`/`SlowDown` bodies) are
//! retried with exponential backoff and jitter from 100 ms up to 15 s per wait, for at most
//! `max_retries` retries (Thanos' `0` means the default, 10) and 3 minutes per request. Client
//! errors (403, 404, 412, …) are not retried. Range reads, listings and each part of a
//! multipart upload are individual requests and are retried the same way. Azure's
//! `pipeline_config` (`max_tries`, `retry_delay`, `max_retry_delay`, `try_timeout`) maps onto the
//! same settings. The filesystem backend does not retry. There is no overall request deadline
//! (large downloads legitimately take long); `http_config.response_header_timeout` (default 2m)
//! bounds how long a connection may stall.
//!
//! ```no_run
//! # async fn demo() -> Result<(), strata_objstore::Error> {
//! use prometheus_client::registry::Registry;
//! use strata_objstore::{Bucket, BucketMetrics};
//!
//! let mut registry = Registry::default();
//! let metrics = BucketMetrics::register(&mut registry);
//! let bucket = Bucket::from_yaml(
//!     "type: FILESYSTEM\nconfig:\n  directory: /var/lib/strata/bucket\n",
//!     &metrics,
//! )?;
//! bucket.upload("hello.txt", "hi".into()).await?;
//! assert_eq!(bucket.iter("", false).await?, vec!["hello.txt".to_string()]);
//! # Ok(())
//! # }
//! ```

mod backend;
mod bucket;
mod config;
mod duration;
mod envsubst;
mod error;
mod local;
mod metrics;
pub mod testing;

pub use bucket::{Bucket, ObjectAttributes};
pub use config::{
    AzureConfig, AzurePipelineConfig, AzureReaderConfig, BucketConfig, BucketLookupType,
    FilesystemConfig, GcsConfig, HttpConfig, IgnoredKey, ProviderConfig, S3Config, Secret,
    SseConfig, TlsConfig, TraceConfig,
};
pub use error::{Error, Result, STORAGE_DOCS};
pub use metrics::BucketMetrics;
