//! The shipper: uploads the blocks Prometheus writes into `--tsdb.path` to the bucket, with
//! Thanos' semantics (`pkg/shipper`).
//!
//! Every iteration (30 s by default) lists the block directories oldest first and, for each
//! block not yet recorded in the state file, skips it if it is empty or compacted (level > 1,
//! unless `--shipper.upload-compacted`), records it if the bucket already has its `meta.json`,
//! and otherwise uploads it: hard links of its files go to `<tsdb>/thanos/upload/<ULID>` (so
//! Prometheus deleting the block by retention mid-upload changes nothing), then chunks, index
//! and `meta.json` last with the `thanos` section (external labels, `source: sidecar`,
//! `files` with sizes). A compacted block is uploaded only if it overlaps no block of the same
//! external labels already in the bucket.
//!
//! **Crash safety.** `meta.json` is written last, so a block interrupted mid-upload is a partial
//! upload that readers ignore. The state file (`thanos.shipper.json`,
//! `{"version":1,"uploaded":[…]}`) is replaced atomically (temporary file, fsync, rename, fsync
//! of the directory) after every upload; it only saves `exists` calls, since the bucket's
//! `meta.json` is the truth: a block uploaded but not yet recorded when the process died is
//! recorded on the next iteration, never uploaded twice, and a block whose upload was cut short
//! is uploaded again in full.
//!
//! **Failures.** A failed upload stops the iteration (blocks go up in time order) unless
//! `--shipper.allow-out-of-order-uploads`; it is counted and retried on the next iteration.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use strata_block::transfer::{UploadOptions, upload_block};
use strata_objstore::Bucket;
use strata_tsdb::BlockMeta;
use tokio_util::sync::CancellationToken;
use ulid::Ulid;

use crate::error::ShipperError;
use crate::prometheus::PromState;

/// Thanos' default state file name (`--shipper.meta-file-name`).
pub const DEFAULT_META_FILE_NAME: &str = "thanos.shipper.json";
/// The only state file version.
pub const META_VERSION: u32 = 1;
/// How often Thanos' shipper scans the data directory.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(30);

/// The state file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipperMeta {
    pub version: u32,
    pub uploaded: Vec<Ulid>,
}

/// The shipper's settings.
#[derive(Debug, Clone)]
pub struct ShipperConfig {
    /// `--tsdb.path`.
    pub dir: PathBuf,
    /// `--shipper.meta-file-name`.
    pub meta_file_name: String,
    /// `--shipper.upload-compacted`.
    pub upload_compacted: bool,
    /// `--shipper.allow-out-of-order-uploads`.
    pub allow_out_of_order: bool,
    /// `--shipper.skip-corrupted-blocks`.
    pub skip_corrupted: bool,
    /// `thanos.source` of uploaded blocks.
    pub source: String,
    /// `--hash-func`: file hashes recorded in uploaded metas.
    pub hash_func: strata_block::transfer::HashFunc,
    /// `--shipper.upload-concurrency`: chunk files of a block uploaded at once (0 and 1: one
    /// after another).
    pub file_concurrency: usize,
}

impl ShipperConfig {
    /// Thanos' defaults for a sidecar shipping `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ShipperConfig {
            dir: dir.into(),
            meta_file_name: DEFAULT_META_FILE_NAME.into(),
            upload_compacted: false,
            allow_out_of_order: false,
            skip_corrupted: false,
            source: strata_block::transfer::SOURCE_SIDECAR.into(),
            hash_func: strata_block::transfer::HashFunc::None,
            file_concurrency: 0,
        }
    }
}

/// `thanos_shipper_*`.
#[derive(Debug, Clone, Default)]
pub struct ShipperMetrics {
    pub dir_syncs: Counter,
    pub dir_sync_failures: Counter,
    pub uploads: Counter,
    pub upload_failures: Counter,
    pub corrupted_blocks: Counter,
    pub upload_compacted_done: Gauge,
}

impl ShipperMetrics {
    /// Registers the metrics under Thanos' names; `thanos_shipper_upload_compacted_done` only
    /// with `--shipper.upload-compacted`, as Thanos does.
    pub fn register(registry: &mut Registry, upload_compacted: bool) -> Self {
        let m = ShipperMetrics::default();
        registry.register(
            "thanos_shipper_dir_syncs",
            "Total number of dir syncs",
            m.dir_syncs.clone(),
        );
        registry.register(
            "thanos_shipper_dir_sync_failures",
            "Total number of failed dir syncs",
            m.dir_sync_failures.clone(),
        );
        registry.register(
            "thanos_shipper_uploads",
            "Total number of uploaded blocks",
            m.uploads.clone(),
        );
        registry.register(
            "thanos_shipper_upload_failures",
            "Total number of block upload failures",
            m.upload_failures.clone(),
        );
        registry.register(
            "thanos_shipper_corrupted_blocks",
            "Total number of corrupted blocks",
            m.corrupted_blocks.clone(),
        );
        if upload_compacted {
            registry.register(
                "thanos_shipper_upload_compacted_done",
                "If 1 it means shipper uploaded all compacted blocks from the filesystem.",
                m.upload_compacted_done.clone(),
            );
        }
        m
    }
}

/// What one iteration did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Blocks uploaded now.
    pub uploaded: Vec<Ulid>,
    /// Blocks found already in the bucket and recorded without an upload.
    pub recorded: Vec<Ulid>,
    /// Blocks whose upload failed (only with out-of-order uploads; otherwise the first failure
    /// is the iteration's error).
    pub failed: Vec<Ulid>,
}

/// Uploads new local blocks.
#[derive(Debug, Clone)]
pub struct Shipper {
    config: ShipperConfig,
    bucket: Bucket,
    state: Arc<PromState>,
    metrics: ShipperMetrics,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ShipperError + 'a {
    move |source| ShipperError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Reads the state file; `Ok(None)` when it does not exist.
pub fn read_meta_file(path: &Path) -> Result<Option<ShipperMeta>, String> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    let meta: ShipperMeta = serde_json::from_slice(&data).map_err(|e| {
        format!(
            "{} is not a shipper state file: {e} ({:?})",
            path.display(),
            String::from_utf8_lossy(&data[..data.len().min(200)])
        )
    })?;
    if meta.version != META_VERSION {
        return Err(format!(
            "{} has version {}, only {META_VERSION} is known",
            path.display(),
            meta.version
        ));
    }
    Ok(Some(meta))
}

/// Writes the state file atomically: a temporary file, fsynced, renamed over the old one, and
/// the directory fsynced so that the rename survives a power loss. Indented with tabs, as
/// Thanos writes it.
pub fn write_meta_file(path: &Path, meta: &ShipperMeta) -> Result<(), ShipperError> {
    let tmp = path.with_extension("json.tmp");
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    meta.serialize(&mut ser)
        .map_err(|e| io("encoding", path)(std::io::Error::other(e)))?;
    out.push(b'\n');
    {
        let mut f = std::fs::File::create(&tmp).map_err(io("creating", &tmp))?;
        f.write_all(&out).map_err(io("writing", &tmp))?;
        f.sync_all().map_err(io("syncing", &tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io("renaming into place", path))?;
    if let Some(parent) = path.parent() {
        let d = std::fs::File::open(parent).map_err(io("opening directory", parent))?;
        d.sync_all().map_err(io("syncing directory", parent))?;
    }
    Ok(())
}

/// Hard-links a block's files (chunks, index, meta.json) into `dst`, copying when linking is
/// impossible (another file system).
fn link_block(src: &Path, dst: &Path) -> Result<(), ShipperError> {
    if dst.exists() {
        std::fs::remove_dir_all(dst).map_err(io("removing stale upload directory", dst))?;
    }
    let chunks = dst.join("chunks");
    std::fs::create_dir_all(&chunks).map_err(io("creating", &chunks))?;
    let mut files = vec![PathBuf::from("index"), PathBuf::from("meta.json")];
    let src_chunks = src.join("chunks");
    for e in std::fs::read_dir(&src_chunks).map_err(io("listing", &src_chunks))? {
        let e = e.map_err(io("listing", &src_chunks))?;
        files.push(Path::new("chunks").join(e.file_name()));
    }
    for rel in files {
        let (from, to) = (src.join(&rel), dst.join(&rel));
        if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to).map_err(io("copying", &from))?;
        }
    }
    Ok(())
}

impl Shipper {
    pub fn new(
        config: ShipperConfig,
        bucket: Bucket,
        state: Arc<PromState>,
        metrics: ShipperMetrics,
    ) -> Self {
        Shipper {
            config,
            bucket,
            state,
            metrics,
        }
    }

    fn meta_path(&self) -> PathBuf {
        self.config.dir.join(&self.config.meta_file_name)
    }

    /// Local blocks, oldest first. Corrupted ones fail the listing unless
    /// `--shipper.skip-corrupted-blocks`.
    fn local_blocks(&self) -> Result<Vec<BlockMeta>, ShipperError> {
        let dir = &self.config.dir;
        let mut metas = Vec::new();
        for e in std::fs::read_dir(dir).map_err(io("listing --tsdb.path", dir))? {
            let e = e.map_err(io("listing --tsdb.path", dir))?;
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if Ulid::from_str(name).is_err() || !e.path().is_dir() {
                continue;
            }
            match BlockMeta::read_from_dir(&e.path()) {
                Ok(m) => metas.push(m),
                Err(source) if self.config.skip_corrupted => {
                    self.metrics.corrupted_blocks.inc();
                    tracing::error!(block = %e.path().display(), error = %source, "skipping corrupted block (--shipper.skip-corrupted-blocks)");
                }
                Err(source) => {
                    return Err(ShipperError::Corrupted {
                        dir: e.path(),
                        source,
                    });
                }
            }
        }
        metas.sort_by_key(|m| (m.min_time, m.ulid));
        Ok(metas)
    }

    /// Blocks of the same external labels already in the bucket, for the overlap check.
    async fn bucket_metas(
        &self,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<BlockMeta>, ShipperError> {
        let fetched = strata_block::fetch::fetch_metas(
            &self.bucket,
            strata_block::fetch::DEFAULT_FETCH_CONCURRENCY,
        )
        .await
        .map_err(|source| ShipperError::Listing { source })?;
        Ok(fetched
            .metas
            .into_values()
            .filter(|m| &m.external_labels() == labels)
            .collect())
    }

    /// One iteration.
    pub async fn sync(&self) -> Result<SyncReport, ShipperError> {
        let result = self.sync_inner().await;
        self.metrics.dir_syncs.inc();
        if result.is_err() {
            self.metrics.dir_sync_failures.inc();
        }
        result
    }

    async fn sync_inner(&self) -> Result<SyncReport, ShipperError> {
        let labels: BTreeMap<String, String> = self
            .state
            .external_labels()
            .ok_or(ShipperError::NoExternalLabels)?
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        let meta_path = self.meta_path();
        let known: BTreeSet<Ulid> = match read_meta_file(&meta_path) {
            Ok(m) => m
                .map(|m| m.uploaded.into_iter().collect())
                .unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "reading the shipper state failed; it will be rewritten (the bucket says what is uploaded)");
                BTreeSet::new()
            }
        };
        let locals = self.local_blocks()?;
        // Rebuilt from the blocks still present locally, as Thanos does.
        let mut state = ShipperMeta {
            version: META_VERSION,
            uploaded: Vec::new(),
        };
        let mut report = SyncReport::default();
        let mut bucket_metas: Option<Vec<BlockMeta>> = None;
        let mut first_error = None;
        for m in &locals {
            if known.contains(&m.ulid) {
                state.uploaded.push(m.ulid);
                continue;
            }
            if m.stats.num_samples == 0 {
                tracing::debug!(block = %m.ulid, "ignoring empty block");
                continue;
            }
            if m.compaction.level > 1 && !self.config.upload_compacted {
                continue;
            }
            let uploaded = match self.ship(m, &labels, &mut bucket_metas).await {
                Ok(true) => {
                    report.uploaded.push(m.ulid);
                    true
                }
                Ok(false) => {
                    report.recorded.push(m.ulid);
                    false
                }
                Err(e) => {
                    self.metrics.upload_failures.inc();
                    if !self.config.allow_out_of_order {
                        first_error = Some(e);
                        break;
                    }
                    tracing::error!(block = %m.ulid, error = %e, "shipping failed; retrying on the next iteration");
                    report.failed.push(m.ulid);
                    continue;
                }
            };
            state.uploaded.push(m.ulid);
            if let Err(e) = write_meta_file(&meta_path, &state) {
                tracing::warn!(error = %e, "updating the shipper state failed");
            }
            // Counted only once recorded, so that whoever sees the counter move (a test, an
            // operator comparing the two) also finds the block in the state file.
            if uploaded {
                self.metrics.uploads.inc();
            }
        }
        // Keep what is recorded for blocks not visited after an early stop.
        for m in &locals {
            if known.contains(&m.ulid) && !state.uploaded.contains(&m.ulid) {
                state.uploaded.push(m.ulid);
            }
        }
        if let Err(e) = write_meta_file(&meta_path, &state) {
            tracing::warn!(error = %e, "updating the shipper state failed");
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        if self.config.upload_compacted && report.failed.is_empty() {
            self.metrics.upload_compacted_done.set(1);
        }
        Ok(report)
    }

    /// Ships one block. `Ok(false)`: the bucket already had it.
    async fn ship(
        &self,
        m: &BlockMeta,
        labels: &BTreeMap<String, String>,
        bucket_metas: &mut Option<Vec<BlockMeta>>,
    ) -> Result<bool, ShipperError> {
        let id = m.ulid;
        let key = strata_block::block_key(id, strata_tsdb::meta::META_FILENAME);
        let exists = self
            .bucket
            .exists(&key)
            .await
            .map_err(|source| ShipperError::Bucket {
                block: id.to_string(),
                source,
            })?;
        if exists {
            tracing::info!(block = %id, "block already in the bucket; recording it as uploaded");
            return Ok(false);
        }
        if m.compaction.level > 1 && !self.config.allow_out_of_order {
            if bucket_metas.is_none() {
                tracing::info!(block = %id, "gathering the bucket's blocks to check the compacted block for overlaps");
                *bucket_metas = Some(self.bucket_metas(labels).await?);
            }
            let overlaps: Vec<String> = bucket_metas
                .iter()
                .flatten()
                .filter(|b| b.ulid != id && b.min_time < m.max_time && m.min_time < b.max_time)
                .map(|b| format!("{} [{}, {})", b.ulid, b.min_time, b.max_time))
                .collect();
            if !overlaps.is_empty() {
                return Err(ShipperError::Overlap {
                    block: id.to_string(),
                    min_time: m.min_time,
                    max_time: m.max_time,
                    overlaps: overlaps.join(", "),
                });
            }
        }
        tracing::info!(block = %id, "upload new block");
        let updir = self
            .config
            .dir
            .join("thanos")
            .join("upload")
            .join(id.to_string());
        link_block(&self.config.dir.join(id.to_string()), &updir)?;
        let opts = UploadOptions {
            labels: labels.clone(),
            source: self.config.source.clone(),
            require_labels: true,
            hash_func: self.config.hash_func,
            file_concurrency: self.config.file_concurrency,
        };
        let result = upload_block(&self.bucket, &updir, &opts).await;
        if let Err(e) = std::fs::remove_dir_all(&updir) {
            tracing::warn!(dir = %updir.display(), error = %e, "removing the upload directory failed");
        }
        let uploaded = result.map_err(|source| ShipperError::Upload {
            block: id.to_string(),
            source,
        })?;
        if let Some(b) = bucket_metas.as_mut() {
            b.push(uploaded);
        }
        Ok(true)
    }

    /// Runs an iteration every `interval` (the first one at once) until cancelled.
    pub async fn run(&self, interval: Duration, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = cancel.cancelled() => return,
            }
            // Shutdown abandons an upload in flight: meta.json goes last, so what was sent is
            // a partial upload that the next start uploads again in full.
            let result = tokio::select! {
                r = self.sync() => r,
                () = cancel.cancelled() => return,
            };
            match result {
                Ok(r) if !r.uploaded.is_empty() || !r.recorded.is_empty() => tracing::info!(
                    uploaded = r.uploaded.len(),
                    already_in_bucket = r.recorded.len(),
                    "shipper iteration done"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "shipper iteration failed; retrying in {interval:?}")
                }
            }
        }
    }
}
