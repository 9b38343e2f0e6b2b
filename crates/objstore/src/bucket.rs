//! [`Bucket`]: the object storage handle the rest of Strata uses.

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, WriteMultipart,
};
use tokio::io::AsyncReadExt;

use crate::backend::{self, UploadSettings};
use crate::config::{BucketConfig, normalize_prefix};
use crate::error::{Error, Result};
use crate::metrics::{BucketMetrics, Op};

/// Size and modification time of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectAttributes {
    /// Object size in bytes.
    pub size: u64,
    /// When the object was last written, as reported by the backend.
    pub last_modified: SystemTime,
}

/// How many parts of one `upload_file` may be in flight at once. Each buffered part costs
/// `part_size` bytes of memory; two keeps the pipe full without holding a whole chunk file.
const UPLOAD_CONCURRENCY: usize = 2;
/// Read size when streaming a local file into a multipart upload.
const FILE_READ_SIZE: usize = 1024 * 1024;
/// Ranges closer than this are fetched in one request: reading a few hundred KiB extra is
/// cheaper than another round trip to object storage.
const RANGE_COALESCE_GAP: u64 = 1024 * 1024;
/// Concurrent requests of one `get_ranges` call.
const MAX_PARALLEL_RANGE_REQUESTS: usize = 10;

/// True for a not-found error about the object itself (not about its bucket).
fn is_missing_object(err: &object_store::Error) -> bool {
    matches!(err, object_store::Error::NotFound { .. }) && !is_missing_bucket(err)
}

/// S3, GCS and Azure answer 404 both for a missing object and for a missing bucket, and
/// object_store reports both as `NotFound`. A missing bucket is a configuration error that must
/// not be mistaken for "this block is gone", so look for the providers' error codes in the body.
fn is_missing_bucket(err: &object_store::Error) -> bool {
    let mut chain = String::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        chain.push_str(&e.to_string());
        chain.push('\n');
        cur = e.source();
    }
    [
        "NoSuchBucket",
        "ContainerNotFound",
        "The specified bucket does not exist",
    ]
    .iter()
    .any(|marker| chain.contains(marker))
}

/// Merges non-empty ranges that overlap or lie within [`RANGE_COALESCE_GAP`] of each other.
/// The result is sorted, disjoint, and every non-empty input range lies inside exactly one
/// output range.
fn coalesce(ranges: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut sorted: Vec<Range<u64>> = ranges.iter().filter(|r| !r.is_empty()).cloned().collect();
    sorted.sort_unstable_by_key(|r| r.start);
    let mut merged: Vec<Range<u64>> = Vec::with_capacity(sorted.len());
    for r in sorted {
        match merged.last_mut() {
            Some(last) if r.start <= last.end.saturating_add(RANGE_COALESCE_GAP) => {
                last.end = last.end.max(r.end);
            }
            _ => merged.push(r),
        }
    }
    merged
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    /// Set for FILESYSTEM buckets: range reads go through `crate::local` (one blocking call
    /// per read) instead of `store`.
    local: Option<Arc<LocalFileSystem>>,
    name: String,
    /// Normalised (`a/b`, no surrounding slashes); empty for none.
    prefix: String,
    metrics: BucketMetrics,
    upload: UploadSettings,
}

/// A handle to one bucket (or one prefix inside a bucket), cheap to clone.
///
/// Every key is relative to the bucket's prefix. Every operation is counted in the Thanos bucket
/// metrics under the bucket's [name](Bucket::name). A missing object is reported as
/// [`Error::NotFound`] (test with [`Error::is_not_found`]), never as a panic, and is not counted as
/// a failure, because callers routinely probe for objects that may be gone.
#[derive(Clone)]
pub struct Bucket {
    inner: Arc<Inner>,
}

impl fmt::Debug for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bucket")
            .field("name", &self.inner.name)
            .field("prefix", &self.inner.prefix)
            .field("store", &self.inner.store.to_string())
            .finish_non_exhaustive()
    }
}

impl Bucket {
    /// Opens the bucket described by a parsed objstore.yml. Keys that cannot be honoured are
    /// logged as warnings. No request is made: a wrong endpoint or credential shows on first use.
    pub fn from_config(config: &BucketConfig, metrics: &BucketMetrics) -> Result<Bucket> {
        for ignored in config.ignored_keys() {
            tracing::warn!(
                key = ignored.key,
                provider = config.provider.type_name(),
                "objstore.yml key `{}` is accepted for Thanos compatibility but has no effect: {}",
                ignored.key,
                ignored.reason
            );
        }
        let backend = backend::build(config)?;
        let bucket = Bucket::from_parts(
            backend.store,
            backend.local,
            config.bucket_name(),
            &config.prefix,
            metrics,
            backend.upload,
        );
        tracing::debug!(
            bucket = %bucket.inner.name,
            prefix = %bucket.inner.prefix,
            provider = config.provider.type_name(),
            "opened bucket"
        );
        Ok(bucket)
    }

    /// Parses objstore.yml text (with environment expansion) and opens the bucket.
    pub fn from_yaml(text: &str, metrics: &BucketMetrics) -> Result<Bucket> {
        Bucket::from_config(&BucketConfig::from_yaml(text)?, metrics)
    }

    /// Wraps an existing `object_store` client, for callers that build their own.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        name: impl Into<String>,
        prefix: &str,
        metrics: &BucketMetrics,
    ) -> Bucket {
        Bucket::from_parts(
            store,
            None,
            name.into(),
            prefix,
            metrics,
            UploadSettings::default(),
        )
    }

    /// An empty in-memory bucket, for tests and tools.
    pub fn in_memory(name: impl Into<String>, metrics: &BucketMetrics) -> Bucket {
        Bucket::new(Arc::new(InMemory::new()), name, "", metrics)
    }

    fn from_parts(
        store: Arc<dyn ObjectStore>,
        local: Option<Arc<LocalFileSystem>>,
        name: String,
        prefix: &str,
        metrics: &BucketMetrics,
        upload: UploadSettings,
    ) -> Bucket {
        metrics.init_bucket(&name);
        Bucket {
            inner: Arc::new(Inner {
                store,
                local,
                name,
                prefix: normalize_prefix(prefix),
                metrics: metrics.clone(),
                upload,
            }),
        }
    }

    /// The same bucket seen through a further prefix: keys of the returned handle live under
    /// `self.prefix()/sub`. Used to isolate tenants or tests in one bucket.
    pub fn with_prefix(&self, sub: &str) -> Bucket {
        let sub = normalize_prefix(sub);
        let prefix = match (self.inner.prefix.is_empty(), sub.is_empty()) {
            (_, true) => self.inner.prefix.clone(),
            (true, false) => sub,
            (false, false) => format!("{}/{sub}", self.inner.prefix),
        };
        self.rebuild(|inner| inner.prefix = prefix)
    }

    /// The same bucket with a different multipart part size for [`Bucket::upload_file`]. Mostly
    /// for tests, which exercise multipart uploads without writing hundreds of MiB; S3 and GCS
    /// reject parts below 5 MiB (except the last).
    pub fn with_part_size(&self, part_size: usize) -> Bucket {
        self.rebuild(|inner| inner.upload.part_size = part_size.max(1))
    }

    fn rebuild(&self, change: impl FnOnce(&mut Inner)) -> Bucket {
        let mut inner = Inner {
            store: Arc::clone(&self.inner.store),
            local: self.inner.local.clone(),
            name: self.inner.name.clone(),
            prefix: self.inner.prefix.clone(),
            metrics: self.inner.metrics.clone(),
            upload: self.inner.upload.clone(),
        };
        change(&mut inner);
        Bucket {
            inner: Arc::new(inner),
        }
    }

    /// The bucket name, used as the `bucket` label of the metrics and in error messages.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The key prefix inside the bucket (no surrounding `/`; empty for none).
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The metrics this bucket reports to.
    pub fn metrics(&self) -> &BucketMetrics {
        &self.inner.metrics
    }

    /// Reads a whole object.
    pub async fn get(&self, key: &str) -> Result<Bytes> {
        self.instrument(Op::Get, async {
            let path = self.object_path(key)?;
            let result = self.inner.store.get(&path).await;
            let result = match result {
                Ok(r) => r.bytes().await,
                Err(e) => Err(e),
            };
            result.map_err(|e| self.backend_error(Op::Get, key, e))
        })
        .await
    }

    /// Streams a whole object into a local file (created or truncated) and fsyncs it; returns
    /// the number of bytes written. Memory stays at one network buffer whatever the object
    /// size, which matters for 512 MiB chunk segments.
    pub async fn download_file(&self, key: &str, file: &FsPath) -> Result<u64> {
        use tokio::io::AsyncWriteExt;
        self.instrument(Op::Get, async {
            let path = self.object_path(key)?;
            let local_err = |source| Error::LocalFile {
                bucket: self.inner.name.clone(),
                key: key.to_string(),
                path: file.to_path_buf(),
                source,
            };
            let result = self
                .inner
                .store
                .get(&path)
                .await
                .map_err(|e| self.backend_error(Op::Get, key, e))?;
            let mut out = tokio::fs::File::create(file).await.map_err(local_err)?;
            let mut stream = result.into_stream();
            let mut written = 0u64;
            while let Some(chunk) = stream
                .try_next()
                .await
                .map_err(|e| self.backend_error(Op::Get, key, e))?
            {
                out.write_all(&chunk).await.map_err(local_err)?;
                written += chunk.len() as u64;
            }
            out.sync_all().await.map_err(local_err)?;
            Ok(written)
        })
        .await
    }

    /// Reads bytes `range` of an object. A range reaching past the end of the object is cut at
    /// the end (as S3 does); a range starting at or after the end is
    /// [`Error::RangeNotSatisfiable`]. An empty range returns no bytes without a request.
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.instrument(Op::GetRange, async {
            let path = self.object_path(key)?;
            self.check_range(&range)?;
            if range.is_empty() {
                return Ok(Bytes::new());
            }
            if self.inner.local.is_some() {
                let read = self.read_local(&path, key, vec![range.clone()]).await?;
                return match read.data.into_iter().next().flatten() {
                    Some(bytes) => Ok(bytes),
                    None => Err(self.not_satisfiable(key, &range, read.size)),
                };
            }
            match self.inner.store.get_range(&path, range.clone()).await {
                Ok(bytes) => Ok(bytes),
                Err(e) => Err(self.range_error(&path, key, &range, e).await),
            }
        })
        .await
    }

    /// Reads several ranges of one object. Ranges less than 1 MiB apart are merged into one
    /// request and the merged requests run concurrently, which matters for the store gateway's
    /// many small chunk reads. Counted as one `get_range` operation. Per range, the semantics are
    /// those of [`Bucket::get_range`].
    pub async fn get_ranges(&self, key: &str, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.instrument(Op::GetRange, async {
            let path = self.object_path(key)?;
            for range in ranges {
                self.check_range(range)?;
            }
            // Our own coalescing rather than object_store's: its slicing panics when a merged
            // request comes back short because a range lies past the end of the object.
            let merged = coalesce(ranges);
            let fetched: Vec<Bytes> = if self.inner.local.is_some() {
                // One blocking call reads every merged range of the file.
                let read = self.read_local(&path, key, merged.clone()).await?;
                let size = read.size;
                read.data
                    .into_iter()
                    .map(|d| {
                        d.ok_or_else(|| {
                            let r = ranges.iter().find(|r| !r.is_empty() && r.start >= size);
                            self.not_satisfiable(key, r.unwrap_or(&merged[0]), size)
                        })
                    })
                    .collect::<Result<_>>()?
            } else {
                futures::stream::iter(merged.iter().cloned())
                    .map(|m| {
                        let path = &path;
                        async move {
                            match self.inner.store.get_range(path, m.clone()).await {
                                Ok(bytes) => Ok(bytes),
                                Err(e) => Err(self.range_error(path, key, &m, e).await),
                            }
                        }
                    })
                    .buffered(MAX_PARALLEL_RANGE_REQUESTS)
                    .try_collect()
                    .await
                    .map_err(|err| match err {
                        // Report the first requested range that lies past the end, not the merge.
                        Error::RangeNotSatisfiable { size, .. } => ranges
                            .iter()
                            .find(|r| !r.is_empty() && r.start >= size)
                            .map_or(err, |r| self.not_satisfiable(key, r, size)),
                        other => other,
                    })?
            };
            ranges
                .iter()
                .map(|r| {
                    if r.is_empty() {
                        return Ok(Bytes::new());
                    }
                    // `coalesce` guarantees exactly one merged range contains `r`.
                    let i = merged.partition_point(|m| m.end < r.end);
                    let (m, data) = (&merged[i], &fetched[i]);
                    let offset = r.start - m.start;
                    let available = data.len() as u64;
                    if offset >= available {
                        // The merged read was cut at the object's end, so its end is known.
                        return Err(self.not_satisfiable(key, r, m.start + available));
                    }
                    let end = (r.end - m.start).min(available);
                    Ok(data.slice(offset as usize..end as usize))
                })
                .collect()
        })
        .await
    }

    /// Whether an object exists. A "directory" (a prefix of other keys) is not an object.
    ///
    /// This is a HEAD request, and a 404 to HEAD has no body, so on S3 and GCS a missing
    /// *bucket* also reads as `false` here; `get`, `iter` and `upload` report
    /// [`Error::BucketNotFound`]. Checking the bucket on every negative answer would double the
    /// requests of the common "is there a deletion mark?" probe.
    pub async fn exists(&self, key: &str) -> Result<bool> {
        self.instrument(Op::Exists, async {
            let path = self.object_path(key)?;
            match self.inner.store.head(&path).await {
                Ok(_) => Ok(true),
                Err(e) if is_missing_object(&e) => Ok(false),
                Err(e) => Err(self.backend_error(Op::Exists, key, e)),
            }
        })
        .await
    }

    /// Size and modification time of an object.
    pub async fn attributes(&self, key: &str) -> Result<ObjectAttributes> {
        self.instrument(Op::Attributes, async {
            let path = self.object_path(key)?;
            let meta = self
                .inner
                .store
                .head(&path)
                .await
                .map_err(|e| self.backend_error(Op::Attributes, key, e))?;
            Ok(ObjectAttributes {
                size: meta.size,
                last_modified: SystemTime::from(meta.last_modified),
            })
        })
        .await
    }

    /// Writes an object from memory, replacing any existing object with the same key.
    pub async fn upload(&self, key: &str, data: Bytes) -> Result<()> {
        self.instrument(Op::Upload, async {
            let path = self.object_path(key)?;
            self.put_single(&path, key, data).await?;
            self.inner.metrics.upload_succeeded(&self.inner.name);
            Ok(())
        })
        .await
    }

    /// Uploads a local file. Files larger than the part size (S3 `part_size`, default 64 MiB)
    /// are streamed as a multipart upload, so a 512 MiB chunk file never sits in memory whole:
    /// at most two parts are buffered. A failed multipart upload is aborted so that no orphaned
    /// parts keep costing storage.
    pub async fn upload_file(&self, key: &str, file: &FsPath) -> Result<()> {
        self.instrument(Op::Upload, async {
            let path = self.object_path(key)?;
            let local_err = |source| Error::LocalFile {
                bucket: self.inner.name.clone(),
                key: key.to_string(),
                path: file.to_path_buf(),
                source,
            };
            let mut f = tokio::fs::File::open(file).await.map_err(local_err)?;
            let len = f.metadata().await.map_err(local_err)?.len();
            let part_size = self.inner.upload.part_size;
            if !self.inner.upload.multipart || len <= part_size as u64 {
                let mut buf = Vec::with_capacity(len as usize);
                f.read_to_end(&mut buf).await.map_err(local_err)?;
                self.put_single(&path, key, Bytes::from(buf)).await?;
            } else {
                let opts = PutMultipartOptions::from(self.inner.upload.attributes.clone());
                let upload = self
                    .inner
                    .store
                    .put_multipart_opts(&path, opts)
                    .await
                    .map_err(|e| self.backend_error(Op::Upload, key, e))?;
                let mut writer = WriteMultipart::new_with_chunk_size(upload, part_size);
                let streamed = self.stream_file(&mut f, &mut writer, key, &local_err).await;
                match streamed {
                    Ok(()) => {
                        writer
                            .finish()
                            .await
                            .map_err(|e| self.backend_error(Op::Upload, key, e))?;
                    }
                    Err(err) => {
                        if let Err(abort) = writer.abort().await {
                            tracing::warn!(
                                bucket = %self.inner.name,
                                key,
                                error = %abort,
                                "aborting failed multipart upload failed; \
                                 a lifecycle rule for incomplete uploads will clean it up"
                            );
                        }
                        return Err(err);
                    }
                }
            }
            self.inner.metrics.upload_succeeded(&self.inner.name);
            Ok(())
        })
        .await
    }

    async fn stream_file(
        &self,
        f: &mut tokio::fs::File,
        writer: &mut WriteMultipart,
        key: &str,
        local_err: &impl Fn(std::io::Error) -> Error,
    ) -> Result<()> {
        let mut buf = vec![0u8; FILE_READ_SIZE];
        loop {
            writer
                .wait_for_capacity(UPLOAD_CONCURRENCY)
                .await
                .map_err(|e| self.backend_error(Op::Upload, key, e))?;
            let n = f.read(&mut buf).await.map_err(local_err)?;
            if n == 0 {
                return Ok(());
            }
            writer.write(&buf[..n]);
        }
    }

    async fn put_single(&self, path: &Path, key: &str, data: Bytes) -> Result<()> {
        let opts = PutOptions::from(self.inner.upload.attributes.clone());
        self.inner
            .store
            .put_opts(path, PutPayload::from(data), opts)
            .await
            .map_err(|e| self.backend_error(Op::Upload, key, e))?;
        Ok(())
    }

    /// Deletes an object. Deleting a missing object succeeds: S3 cannot tell the difference, and
    /// idempotent deletes let an interrupted block deletion simply be run again.
    pub async fn delete(&self, key: &str) -> Result<()> {
        self.instrument(Op::Delete, async {
            let path = self.object_path(key)?;
            match self.inner.store.delete(&path).await {
                Ok(()) => Ok(()),
                Err(e) if is_missing_object(&e) => Ok(()),
                Err(e) => Err(self.backend_error(Op::Delete, key, e)),
            }
        })
        .await
    }

    /// Lists the object names under directory `dir` (`""` for the top), sorted, relative to the
    /// bucket prefix, as Thanos' `Iter` does: non-recursive lists the direct children, with
    /// sub-directories as `name/`; recursive lists every object below `dir` and no directories.
    /// `dir` is a directory, not a string prefix: `iter("di")` does not list `dir/…`.
    pub async fn iter(&self, dir: &str, recursive: bool) -> Result<Vec<String>> {
        self.instrument(Op::Iter, async {
            let dir_path = self.full_path(dir.trim_end_matches('/'), "directory")?;
            let prefix = (!dir_path.as_ref().is_empty()).then_some(&dir_path);
            let mut names = Vec::new();
            if recursive {
                let mut stream = self.inner.store.list(prefix);
                while let Some(meta) = stream
                    .try_next()
                    .await
                    .map_err(|e| self.backend_error(Op::Iter, dir, e))?
                {
                    names.push(self.relative(&meta.location));
                }
            } else {
                let listing = self
                    .inner
                    .store
                    .list_with_delimiter(prefix)
                    .await
                    .map_err(|e| self.backend_error(Op::Iter, dir, e))?;
                names.extend(
                    listing
                        .common_prefixes
                        .iter()
                        .map(|p| format!("{}/", self.relative(p))),
                );
                names.extend(listing.objects.iter().map(|m| self.relative(&m.location)));
            }
            // Backends differ in order (the filesystem has none); Thanos callers expect S3's.
            names.sort_unstable();
            names.dedup();
            Ok(names)
        })
        .await
    }

    async fn instrument<T>(&self, op: Op, fut: impl Future<Output = Result<T>>) -> Result<T> {
        let start = Instant::now();
        let result = fut.await;
        let failed = matches!(&result, Err(e) if !e.is_not_found());
        self.inner
            .metrics
            .observe(&self.inner.name, op, start.elapsed(), failed);
        if let Err(e) = &result
            && failed
        {
            tracing::debug!(bucket = %self.inner.name, operation = op.as_str(), error = %e, "bucket operation failed");
        }
        result
    }

    /// The store path of an object key; rejects keys that cannot name an object.
    fn object_path(&self, key: &str) -> Result<Path> {
        if key.is_empty() || key.ends_with('/') || key.starts_with('/') {
            return Err(self.invalid_key(
                key,
                "an object key must be non-empty and must not start or end with `/`",
            ));
        }
        let path = self.full_path(key, "object key")?;
        if path.as_ref().is_empty() {
            return Err(self.invalid_key(key, "the key names no object"));
        }
        Ok(path)
    }

    fn full_path(&self, key: &str, what: &'static str) -> Result<Path> {
        let joined = match (self.inner.prefix.is_empty(), key.is_empty()) {
            (_, true) => self.inner.prefix.clone(),
            (true, false) => key.to_string(),
            (false, false) => format!("{}/{key}", self.inner.prefix),
        };
        Path::parse(&joined).map_err(|e| Error::InvalidInput {
            bucket: self.inner.name.clone(),
            what,
            reason: format!("`{key}`: {e}"),
        })
    }

    fn invalid_key(&self, key: &str, why: &str) -> Error {
        Error::InvalidInput {
            bucket: self.inner.name.clone(),
            what: "object key",
            reason: format!("`{key}`: {why}"),
        }
    }

    /// A store path made relative to the bucket prefix again.
    fn relative(&self, path: &Path) -> String {
        let full = path.as_ref();
        if self.inner.prefix.is_empty() {
            return full.to_string();
        }
        full.strip_prefix(self.inner.prefix.as_str())
            .map(|rest| rest.trim_start_matches('/'))
            .unwrap_or(full)
            .to_string()
    }

    fn check_range(&self, range: &Range<u64>) -> Result<()> {
        if range.start > range.end {
            return Err(Error::InvalidInput {
                bucket: self.inner.name.clone(),
                what: "range",
                reason: format!("start {} is after end {}", range.start, range.end),
            });
        }
        Ok(())
    }

    /// Range reads of a FILESYSTEM bucket (see `crate::local`), errors as the backend's.
    async fn read_local(
        &self,
        path: &Path,
        key: &str,
        ranges: Vec<Range<u64>>,
    ) -> Result<crate::local::Ranges> {
        let local = self.inner.local.as_ref().expect("a FILESYSTEM bucket");
        let fs_path = local
            .path_to_filesystem(path)
            .map_err(|e| self.backend_error(Op::GetRange, key, e))?;
        crate::local::read_ranges(fs_path.clone(), ranges)
            .await
            .map_err(|source| {
                let err = if source.kind() == std::io::ErrorKind::NotFound {
                    object_store::Error::NotFound {
                        path: fs_path.display().to_string(),
                        source: Box::new(source),
                    }
                } else {
                    object_store::Error::Generic {
                        store: "LocalFileSystem",
                        source: Box::new(source),
                    }
                };
                self.backend_error(Op::GetRange, key, err)
            })
    }

    fn not_satisfiable(&self, key: &str, range: &Range<u64>, size: u64) -> Error {
        Error::RangeNotSatisfiable {
            bucket: self.inner.name.clone(),
            key: key.to_string(),
            start: range.start,
            end: range.end,
            size,
        }
    }

    /// Classifies a failed range read. Backends report "range starts past the end" in different
    /// ways (HTTP 416, an invalid-range error, an I/O error), so on failure we ask for the object
    /// size once; the extra request only happens on the error path.
    async fn range_error(
        &self,
        path: &Path,
        key: &str,
        range: &Range<u64>,
        err: object_store::Error,
    ) -> Error {
        if matches!(err, object_store::Error::NotFound { .. }) {
            return self.backend_error(Op::GetRange, key, err);
        }
        match self.inner.store.head(path).await {
            Ok(meta) if range.start >= meta.size => self.not_satisfiable(key, range, meta.size),
            _ => self.backend_error(Op::GetRange, key, err),
        }
    }

    fn backend_error(&self, op: Op, key: &str, err: object_store::Error) -> Error {
        match err {
            object_store::Error::NotFound { .. } if !is_missing_bucket(&err) => Error::NotFound {
                bucket: self.inner.name.clone(),
                key: key.to_string(),
            },
            source if is_missing_bucket(&source) => Error::BucketNotFound {
                operation: op.as_str(),
                bucket: self.inner.name.clone(),
                key: key.to_string(),
                source: Box::new(source),
            },
            source => Error::Backend {
                operation: op.as_str(),
                bucket: self.inner.name.clone(),
                key: key.to_string(),
                source: Box::new(source),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::coalesce;

    #[test]
    fn coalesce_merges_near_and_overlapping_ranges() {
        assert_eq!(coalesce(&[]), vec![]);
        let empty = 5..5;
        assert_eq!(coalesce(std::slice::from_ref(&empty)), vec![]);
        assert_eq!(coalesce(&[10..20, 0..5]), vec![0..20]);
        assert_eq!(coalesce(&[0..10, 5..8]), vec![0..10]);
        let far = 10 + super::RANGE_COALESCE_GAP + 1;
        assert_eq!(coalesce(&[0..10, far..far + 1]), vec![0..10, far..far + 1]);
    }
}
