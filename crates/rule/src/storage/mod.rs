//! The ruler's local storage in Thanos' stateful mode: recorded series, `ALERTS` and
//! `ALERTS_FOR_STATE` kept in a TSDB under `--data-dir`, as Thanos' ruler keeps them in a
//! Prometheus TSDB.
//!
//! - `head`: the in-memory head (series, XOR chunks of up to 120 samples);
//! - block cutting, Prometheus' rule: once the head spans more than 1.5 ×
//!   `--tsdb.block-duration`, its oldest block-duration-aligned range is written as a block
//!   `<data-dir>/<ULID>/` with Thanos' meta section (external labels, source `ruler`,
//!   resolution 0), so that a shipper uploads it as is, then dropped from the head;
//! - retention (`--tsdb.retention`), Prometheus' rule: a block whose end is more than the
//!   retention before the newest block's end is deleted;
//! - [`LocalStore`]: the Store and Info APIs over the blocks and the head.
//!
//! Use: [`LocalStorage::open`] the data directory, hand the storage to the rule manager as
//! its [`Appender`], spawn [`LocalStorage::run`] (periodic cut and retention), serve
//! [`LocalStorage::store_service`] on the gRPC server, and point a shipper at
//! [`LocalStorage::blocks_dir`].
//!
//! Durability is the WAL's: [`WalHook`] sees every accepted append (and each truncation), and
//! [`LocalStorage::replay`] rebuilds the head from what a WAL read back.
//!
//! Locking: the head sits behind a mutex held only for in-memory work (appending, taking a
//! snapshot of chunks); the block list behind a read-write lock. A block cut writes the block
//! without either lock, then takes both (block list first, head second, the order readers
//! use too) to publish the block and drop its range from the head in one step, so a query
//! sees each sample exactly once.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use strata_model::Labels;
use strata_tsdb::meta::{Downsample, RES_RAW, ThanosMeta};
use strata_tsdb::{Block, BlockWriter, BlockWriterOptions};
use ulid::Ulid;

use crate::{Appender, RecordedSample};

mod head;
mod store;
mod wal;

use head::{AppendCounts, HeadState};
pub use store::LocalStore;
pub use wal::{DurableStorage, RuleWal};

/// Thanos' `--tsdb.block-duration` default.
pub const DEFAULT_BLOCK_DURATION: Duration = Duration::from_secs(2 * 3600);
/// Thanos' `--tsdb.retention` default.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(48 * 3600);
/// How often [`LocalStorage::run`] checks for a block to cut and blocks past retention
/// (Prometheus checks every minute).
pub const DEFAULT_MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);
/// Suffix a block directory is renamed to before it is deleted (Prometheus' name).
const TMP_DELETION_SUFFIX: &str = ".tmp-for-deletion";
/// The `thanos.source` of the ruler's blocks.
pub const BLOCK_SOURCE: &str = "ruler";

/// What went wrong with the ruler's local storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(
        "ruler data directory {}: {op}: {source}; check that --data-dir exists or can be created and is writable by the ruler",
        dir.display()
    )]
    DataDir {
        op: &'static str,
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "loading block {}: {source}; the block is damaged: move it out of --data-dir (after checking whether it was uploaded) and restart",
        dir.display()
    )]
    LoadBlock {
        dir: PathBuf,
        source: strata_tsdb::Error,
    },
    #[error(
        "cutting head range [{mint}, {maxt}) into a block under {}: {source}; the samples stay in the head and the cut is retried at the next check (free disk space if it is full)",
        dir.display()
    )]
    WriteBlock {
        dir: PathBuf,
        mint: i64,
        maxt: i64,
        source: strata_tsdb::Error,
    },
    #[error(
        "deleting block {} past retention: {source}; remove the directory by hand if this persists",
        dir.display()
    )]
    DeleteBlock {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid local storage option: {0}")]
    Options(String),
}

/// `--tsdb.*` and `--label` as the local storage needs them.
#[derive(Debug, Clone)]
pub struct LocalStorageOptions {
    /// `--tsdb.block-duration` (whole milliseconds, at least 1ms).
    pub block_duration: Duration,
    /// `--tsdb.retention`.
    pub retention: Duration,
    /// `--label`: written to every block's meta.json and added to every served series.
    pub external_labels: Labels,
    /// How often [`LocalStorage::run`] cuts blocks and applies retention.
    pub maintenance_interval: Duration,
}

impl Default for LocalStorageOptions {
    fn default() -> Self {
        LocalStorageOptions {
            block_duration: DEFAULT_BLOCK_DURATION,
            retention: DEFAULT_RETENTION,
            external_labels: Labels::default(),
            maintenance_interval: DEFAULT_MAINTENANCE_INTERVAL,
        }
    }
}

/// One new series, as a WAL logs it.
#[derive(Debug, Clone, Copy)]
pub struct SeriesRecord<'a> {
    pub series_ref: u64,
    pub labels: &'a Labels,
}

/// One accepted sample, as a WAL logs it. `value` is bit-exact (stale markers).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleRecord {
    pub series_ref: u64,
    pub timestamp_ms: i64,
    pub value: f64,
}

/// Where a WAL plugs in. Called with the head locked, so records arrive in the order the
/// head applied them and a series record always precedes its samples; implementations must
/// only buffer (or write without waiting long): evaluation waits on the head's lock.
pub trait WalHook: Send + Sync + std::fmt::Debug {
    /// The series created and the samples accepted by one append call.
    fn log(&self, series: &[SeriesRecord<'_>], samples: &[SampleRecord]);
    /// Everything before `mint` is in blocks now and series not in `live` are gone from the
    /// head: a WAL may checkpoint and drop older segments.
    fn truncated(&self, mint: i64, live: &[u64]) {
        let _ = (mint, live);
    }
}

/// A replay in progress ([`LocalStorage::start_replay`]).
pub struct Replay<'a> {
    storage: &'a LocalStorage,
    head: MutexGuard<'a, HeadState>,
    /// Log refs whose series the head holds under another ref.
    alias: std::collections::HashMap<u64, u64>,
    /// The largest ref the log used, series record or sample.
    max_ref: u64,
    counts: AppendCounts,
    stats: ReplayStats,
}

impl std::fmt::Debug for Replay<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Replay<'_> {
    /// A series record.
    pub fn series(&mut self, series_ref: u64, labels: Labels) {
        self.max_ref = self.max_ref.max(series_ref);
        // As appends refuse them: a block could not be written with such a series.
        if labels.is_empty() || labels.iter().any(|l| l.name.is_empty()) {
            return;
        }
        let to = self.head.create_with_ref(series_ref, labels);
        if to != series_ref {
            self.alias.insert(series_ref, to);
        } else {
            self.alias.remove(&series_ref);
        }
        self.stats.series += 1;
    }

    /// A sample, after its series' record.
    pub fn sample(&mut self, s: SampleRecord) {
        self.max_ref = self.max_ref.max(s.series_ref);
        let r = self
            .alias
            .get(&s.series_ref)
            .copied()
            .unwrap_or(s.series_ref);
        if !self.head.series.contains_key(&r) {
            self.stats.unknown_refs += 1;
            return;
        }
        if self
            .head
            .append_to(r, s.timestamp_ms, s.value, &mut self.counts)
        {
            self.stats.samples += 1;
        } else {
            self.stats.dropped += 1;
        }
    }

    /// Ends the replay: drops series left without samples and unlocks the head.
    pub fn finish(mut self) -> ReplayStats {
        let h = &mut *self.head;
        // New series never take a ref the log already used, even one whose series record
        // is gone: its samples would otherwise be read as the new series' after a restart.
        h.next_ref = h.next_ref.max(self.max_ref.saturating_add(1));
        // Series records without a surviving sample hold nothing to serve.
        h.series.retain(|_, s| !s.is_empty());
        let live = &h.series;
        let refs: Vec<Labels> = h
            .refs
            .iter()
            .filter(|(_, r)| !live.contains_key(r))
            .map(|(l, _)| l.clone())
            .collect();
        for l in refs {
            h.refs.remove(&l);
        }
        self.storage.metrics.record_head(h);
        self.stats
    }
}

/// What [`LocalStorage::replay`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplayStats {
    pub series: u64,
    pub samples: u64,
    /// Samples for refs no series record named.
    pub unknown_refs: u64,
    /// Out of order, duplicates, or before the newest block's end.
    pub dropped: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    r#type: &'static str,
}

const FLOAT: TypeLabel = TypeLabel { r#type: "float" };

/// The storage's metrics, under Prometheus' TSDB names (Thanos' ruler exposes those).
#[derive(Debug, Clone, Default)]
struct StorageMetrics {
    samples_appended: Family<TypeLabel, Counter>,
    out_of_order: Family<TypeLabel, Counter>,
    out_of_bound: Family<TypeLabel, Counter>,
    head_series: Gauge,
    head_series_created: Counter,
    head_series_removed: Counter,
    head_chunks: Gauge,
    head_min_time: Gauge<i64, AtomicI64>,
    head_max_time: Gauge<i64, AtomicI64>,
    head_truncations: Counter,
    compactions: Counter,
    compactions_failed: Counter,
    blocks_loaded: Gauge,
    time_retentions: Counter,
}

impl StorageMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = StorageMetrics::default();
        let r = registry;
        r.register(
            "prometheus_tsdb_head_samples_appended",
            "Total number of appended samples.",
            m.samples_appended.clone(),
        );
        r.register(
            "prometheus_tsdb_out_of_order_samples",
            "Total number of out of order samples ingestion failed attempts due to out of order being disabled.",
            m.out_of_order.clone(),
        );
        r.register(
            "prometheus_tsdb_out_of_bound_samples",
            "Total number of out of bound samples ingestion failed attempts with out of order support disabled.",
            m.out_of_bound.clone(),
        );
        r.register(
            "prometheus_tsdb_head_series",
            "Total number of series in the head block.",
            m.head_series.clone(),
        );
        r.register(
            "prometheus_tsdb_head_series_created",
            "Total number of series created in the head",
            m.head_series_created.clone(),
        );
        r.register(
            "prometheus_tsdb_head_series_removed",
            "Total number of series removed in the head",
            m.head_series_removed.clone(),
        );
        r.register(
            "prometheus_tsdb_head_chunks",
            "Total number of chunks in the head block.",
            m.head_chunks.clone(),
        );
        r.register(
            "prometheus_tsdb_head_min_time",
            "Minimum time bound of the head block. The unit is decided by the library consumer.",
            m.head_min_time.clone(),
        );
        r.register(
            "prometheus_tsdb_head_max_time",
            "Maximum timestamp of the head block. The unit is decided by the library consumer.",
            m.head_max_time.clone(),
        );
        r.register(
            "prometheus_tsdb_head_truncations",
            "Total number of head truncations attempted.",
            m.head_truncations.clone(),
        );
        r.register(
            "prometheus_tsdb_compactions",
            "Total number of compactions that were executed for the partition.",
            m.compactions.clone(),
        );
        r.register(
            "prometheus_tsdb_compactions_failed",
            "Total number of compactions that failed for the partition.",
            m.compactions_failed.clone(),
        );
        r.register(
            "prometheus_tsdb_blocks_loaded",
            "Number of currently loaded data blocks",
            m.blocks_loaded.clone(),
        );
        r.register(
            "prometheus_tsdb_time_retentions",
            "The number of times that blocks were deleted because the maximum time limit was exceeded.",
            m.time_retentions.clone(),
        );
        m
    }

    fn record_appends(&self, c: &AppendCounts) {
        if c.appended > 0 {
            self.samples_appended
                .get_or_create(&FLOAT)
                .inc_by(c.appended);
        }
        if c.out_of_order > 0 {
            self.out_of_order
                .get_or_create(&FLOAT)
                .inc_by(c.out_of_order);
        }
        if c.out_of_bounds > 0 {
            self.out_of_bound
                .get_or_create(&FLOAT)
                .inc_by(c.out_of_bounds);
        }
        if c.new_series > 0 {
            self.head_series_created.inc_by(c.new_series);
        }
    }

    fn record_head(&self, h: &HeadState) {
        self.head_series.set(h.series.len() as i64);
        self.head_chunks.set(h.chunks as i64);
        self.head_min_time.set(h.min_time);
        self.head_max_time.set(h.max_time);
    }
}

/// The ruler's local TSDB: a head, the blocks under `--data-dir`, and their Store API.
#[derive(Debug)]
pub struct LocalStorage {
    dir: PathBuf,
    opts: LocalStorageOptions,
    retention_ms: i64,
    head: Mutex<HeadState>,
    /// Loaded blocks, sorted by min time. Readers take a snapshot of the list.
    blocks: RwLock<Arc<Vec<Arc<Block>>>>,
    /// Blocks past retention still read by a query: deleted once the last reader is done.
    doomed: Mutex<Vec<Arc<Block>>>,
    /// Serializes block cuts (the periodic task and explicit calls).
    cutting: Mutex<()>,
    wal: RwLock<Option<Arc<dyn WalHook>>>,
    metrics: StorageMetrics,
    /// Tests: the next written block fails to open.
    #[cfg(test)]
    fail_next_open: std::sync::atomic::AtomicBool,
}

fn duration_ms(what: &str, d: Duration) -> Result<i64, StorageError> {
    let ms = i64::try_from(d.as_millis())
        .map_err(|_| StorageError::Options(format!("{what} {d:?} is too large")))?;
    Ok(ms)
}

/// Deletes a block directory, renaming it first so that a crash mid-delete leaves no half
/// block that looks whole (the start-up removes what the rename marks).
fn remove_block_dir(dir: &Path) -> std::io::Result<()> {
    let mut tmp = dir.to_path_buf().into_os_string();
    tmp.push(TMP_DELETION_SUFFIX);
    let tmp = PathBuf::from(tmp);
    std::fs::rename(dir, &tmp)?;
    std::fs::remove_dir_all(&tmp)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves consistent data (every update completes before
    // the next can observe it), so a poisoned lock is used as is.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl LocalStorage {
    /// Opens (creating it when missing) the data directory: removes what a crash left of an
    /// unfinished block, loads the blocks in it, and starts an empty head whose samples must
    /// come after the newest block's end.
    pub fn open(
        dir: &Path,
        opts: LocalStorageOptions,
        registry: &mut Registry,
    ) -> Result<Arc<Self>, StorageError> {
        let block_ms = duration_ms("--tsdb.block-duration", opts.block_duration)?;
        if block_ms < 1 {
            return Err(StorageError::Options(format!(
                "--tsdb.block-duration must be at least 1ms, got {:?}",
                opts.block_duration
            )));
        }
        let retention_ms = duration_ms("--tsdb.retention", opts.retention)?;
        let data_dir = |op, source| StorageError::DataDir {
            op,
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| data_dir("create", e))?;
        let mut blocks = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| data_dir("list", e))? {
            let entry = entry.map_err(|e| data_dir("list", e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = entry.path();
            if name.ends_with(strata_tsdb::block::TMP_CREATION_SUFFIX)
                || name.ends_with(TMP_DELETION_SUFFIX)
            {
                // An unfinished block from a crash (its samples are still in the WAL), or a
                // block whose deletion a crash interrupted.
                std::fs::remove_dir_all(&path)
                    .map_err(|e| data_dir("remove unfinished block", e))?;
                continue;
            }
            if Ulid::from_string(name).is_err() || !path.is_dir() {
                continue;
            }
            let block = Block::open(&path)
                .map_err(|source| StorageError::LoadBlock { dir: path, source })?;
            blocks.push(Arc::new(block));
        }
        blocks.sort_by_key(|b| (b.meta().min_time, b.meta().ulid));
        let min_valid = blocks
            .iter()
            .map(|b| b.meta().max_time)
            .max()
            .unwrap_or(i64::MIN);
        let metrics = StorageMetrics::register(registry);
        metrics.blocks_loaded.set(blocks.len() as i64);
        let head = HeadState::new(block_ms, min_valid);
        metrics.record_head(&head);
        Ok(Arc::new(LocalStorage {
            dir: dir.to_path_buf(),
            opts,
            retention_ms,
            head: Mutex::new(head),
            blocks: RwLock::new(Arc::new(blocks)),
            doomed: Mutex::new(Vec::new()),
            cutting: Mutex::new(()),
            wal: RwLock::new(None),
            metrics,
            #[cfg(test)]
            fail_next_open: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Where blocks are written (`--data-dir` itself, as in Thanos): the shipper's source.
    pub fn blocks_dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> &LocalStorageOptions {
        &self.opts
    }

    /// Plugs a WAL in: from now on it sees every append and truncation.
    pub fn set_wal_hook(&self, hook: Arc<dyn WalHook>) {
        *self
            .wal
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(hook);
    }

    fn wal(&self) -> Option<Arc<dyn WalHook>> {
        self.wal
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The loaded blocks, oldest first.
    /// The refs of the series in the head now.
    pub fn live_refs(&self) -> std::collections::HashSet<u64> {
        lock(&self.head).series.keys().copied().collect()
    }

    pub fn blocks(&self) -> Arc<Vec<Arc<Block>>> {
        self.blocks
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The head's `(min time, max time)`, `None` when empty.
    pub fn head_range(&self) -> Option<(i64, i64)> {
        let h = lock(&self.head);
        (h.min_time <= h.max_time).then_some((h.min_time, h.max_time))
    }

    /// The number of series in the head.
    pub fn head_series(&self) -> usize {
        lock(&self.head).series.len()
    }

    /// The Store and Info APIs over this storage.
    pub fn store_service(self: &Arc<Self>) -> LocalStore {
        LocalStore::new(Arc::clone(self))
    }

    /// Appends samples. Rejected samples (out of order, out of bounds) are counted in
    /// Prometheus' metrics and dropped, as Prometheus' rule manager drops them.
    pub fn append_samples(&self, samples: Vec<RecordedSample>) {
        let wal = self.wal();
        let mut counts = AppendCounts::default();
        let mut h = lock(&self.head);
        let mut new_refs: Vec<u64> = Vec::new();
        let mut accepted: Vec<SampleRecord> = Vec::new();
        let mut invalid = 0u64;
        for s in samples {
            if s.timestamp_ms < h.min_valid_time {
                counts.out_of_bounds += 1;
                continue;
            }
            // Prometheus' head refuses these too; admitted, they would fail every block cut.
            if s.labels.is_empty() || s.labels.iter().any(|l| l.name.is_empty()) {
                invalid += 1;
                continue;
            }
            let (r, created) = h.get_or_create(&s.labels);
            if created {
                counts.new_series += 1;
                if wal.is_some() {
                    new_refs.push(r);
                }
            }
            if h.append_to(r, s.timestamp_ms, s.value, &mut counts) && wal.is_some() {
                accepted.push(SampleRecord {
                    series_ref: r,
                    timestamp_ms: s.timestamp_ms,
                    value: s.value,
                });
            }
        }
        if let Some(wal) = &wal
            && (!new_refs.is_empty() || !accepted.is_empty())
        {
            let series: Vec<SeriesRecord<'_>> = new_refs
                .iter()
                .filter_map(|r| {
                    h.series.get(r).map(|s| SeriesRecord {
                        series_ref: *r,
                        labels: &s.labels,
                    })
                })
                .collect();
            wal.log(&series, &accepted);
        }
        self.metrics.record_head(&h);
        drop(h);
        if invalid > 0 {
            tracing::warn!(
                samples = invalid,
                "recorded samples without labels or with an empty label name dropped by the local storage"
            );
        }
        if counts.out_of_order > 0 || counts.out_of_bounds > 0 {
            tracing::debug!(
                out_of_order = counts.out_of_order,
                out_of_bounds = counts.out_of_bounds,
                "recorded samples dropped by the local storage"
            );
        }
        self.metrics.record_appends(&counts);
    }

    /// Rebuilds the head from a WAL: series records (ref, labels) then samples (ref, t, v),
    /// in log order. Nothing is handed to the WAL hook. Samples before the newest block's end
    /// are dropped (already persisted), as are samples out of order.
    pub fn replay(
        &self,
        series: impl IntoIterator<Item = (u64, Labels)>,
        samples: impl IntoIterator<Item = SampleRecord>,
    ) -> ReplayStats {
        let mut r = self.start_replay();
        for (series_ref, labels) in series {
            r.series(series_ref, labels);
        }
        for s in samples {
            r.sample(s);
        }
        r.finish()
    }

    /// A replay fed record by record, in log order, as the WAL is read: nothing of the log
    /// is held beyond the head it rebuilds. The head is locked until [`Replay::finish`].
    pub fn start_replay(&self) -> Replay<'_> {
        Replay {
            storage: self,
            head: lock(&self.head),
            alias: std::collections::HashMap::new(),
            max_ref: 0,
            counts: AppendCounts::default(),
            stats: ReplayStats::default(),
        }
    }

    /// Cuts every block the head is ready for (Prometheus' rule, see the module docs).
    /// Blocking file I/O: call it from a blocking thread in async code. Returns the new
    /// blocks' ULIDs.
    pub fn cut_blocks(&self) -> Result<Vec<Ulid>, StorageError> {
        let _cutting = lock(&self.cutting);
        let mut out = Vec::new();
        loop {
            let res = self.cut_one();
            match res {
                Ok(Some(Some(id))) => out.push(id),
                Ok(Some(None)) => {}
                Ok(None) => return Ok(out),
                Err(e) => {
                    self.metrics.compactions_failed.inc();
                    return Err(e);
                }
            }
        }
    }

    /// One cut: `None` when the head is not ready, `Some(None)` when the range held no
    /// sample (the head is truncated all the same).
    fn cut_one(&self) -> Result<Option<Option<Ulid>>, StorageError> {
        let (mint, maxt, mut snapshot) = {
            let mut h = lock(&self.head);
            let Some((mint, maxt)) = h.compactable_range() else {
                return Ok(None);
            };
            // From here on no sample can enter the range being written.
            h.min_valid_time = h.min_valid_time.max(maxt);
            let mut snap = Vec::new();
            for s in h.series.values_mut() {
                s.close_if_before(maxt);
                let chunks = s.chunks_before(maxt);
                if !chunks.is_empty() {
                    snap.push((s.labels.clone(), chunks));
                }
            }
            (mint, maxt, snap)
        };
        snapshot.sort_by(|a, b| a.0.cmp(&b.0));
        let block = if snapshot.is_empty() {
            None
        } else {
            Some(self.write_block(mint, maxt, &snapshot)?)
        };
        drop(snapshot);
        let id = block.as_ref().map(|b| b.meta().ulid);
        {
            let mut blocks = self
                .blocks
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut h = lock(&self.head);
            if let Some(b) = block {
                let mut list: Vec<Arc<Block>> = blocks.as_ref().clone();
                list.push(Arc::new(b));
                list.sort_by_key(|b| (b.meta().min_time, b.meta().ulid));
                self.metrics.blocks_loaded.set(list.len() as i64);
                *blocks = Arc::new(list);
            }
            let before = h.series.len();
            h.truncate(maxt);
            self.metrics
                .head_series_removed
                .inc_by((before - h.series.len()) as u64);
            self.metrics.head_truncations.inc();
            self.metrics.record_head(&h);
            if let Some(wal) = self.wal() {
                let live: Vec<u64> = h.series.keys().copied().collect();
                wal.truncated(maxt, &live);
            }
        }
        if let Some(id) = id {
            self.metrics.compactions.inc();
            tracing::info!(block = %id, mint, maxt, "write block");
        }
        Ok(Some(id))
    }

    /// Writes one block from the head's chunks, passed through as cut: head chunks never
    /// straddle a block-duration boundary, so each lies wholly inside the block, and the
    /// bytes served from the head before the cut are the bytes served from the block after.
    fn write_block(
        &self,
        mint: i64,
        maxt: i64,
        series: &[(Labels, Vec<head::ClosedChunk>)],
    ) -> Result<Block, StorageError> {
        let err = |source| StorageError::WriteBlock {
            dir: self.dir.clone(),
            mint,
            maxt,
            source,
        };
        let thanos = ThanosMeta {
            labels: self
                .opts
                .external_labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect(),
            downsample: Downsample {
                resolution: RES_RAW,
            },
            source: BLOCK_SOURCE.into(),
            ..Default::default()
        };
        let mut w = BlockWriter::new(
            &self.dir,
            BlockWriterOptions {
                time_range: Some((mint, maxt)),
                thanos: Some(thanos),
                ..Default::default()
            },
        )
        .map_err(err)?;
        let mut chunks = Vec::new();
        for (labels, cs) in series {
            chunks.clear();
            chunks.extend(cs.iter().map(|c| {
                (
                    c.min_time,
                    c.max_time,
                    strata_tsdb::RawChunk::new(strata_tsdb::Encoding::Xor, c.data.clone()),
                )
            }));
            w.add_series_chunks(labels, &chunks).map_err(err)?;
        }
        let id = w.ulid();
        w.finish().map_err(err)?;
        let dir = self.dir.join(id.to_string());
        #[cfg(test)]
        if self
            .fail_next_open
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            // As a block that cannot be read back would: the index made unreadable.
            let _ = std::fs::write(dir.join("index"), b"not an index");
        }
        match Block::open(&dir) {
            Ok(b) => Ok(b),
            Err(source) => {
                // The head keeps these samples and the next cut writes them again: this copy
                // must go, or the two would overlap (and the shipper could upload this one).
                if let Err(e) = remove_block_dir(&dir) {
                    tracing::error!(block = %dir.display(), err = %e, "removing a block that failed to open");
                }
                Err(StorageError::LoadBlock { dir, source })
            }
        }
    }

    /// Prometheus' time retention: blocks whose end is more than `--tsdb.retention` before
    /// the newest block's end are unloaded and deleted (a block still read by a query is
    /// deleted once the query is done). Measuring against the newest block rather than the
    /// clock is what Prometheus (and so Thanos' ruler) does: a ruler that stopped evaluating
    /// keeps its last blocks. A retention of 0 keeps every block, as in Prometheus. Returns
    /// the ULIDs unloaded.
    pub fn apply_retention(&self) -> Result<Vec<Ulid>, StorageError> {
        let mut gone = Vec::new();
        if self.retention_ms > 0 {
            let mut blocks = self
                .blocks
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let newest = blocks.iter().map(|b| b.meta().max_time).max();
            let newest = newest.unwrap_or(i64::MIN);
            let (old, keep): (Vec<Arc<Block>>, Vec<Arc<Block>>) = blocks
                .iter()
                .cloned()
                .partition(|b| newest.saturating_sub(b.meta().max_time) > self.retention_ms);
            if !old.is_empty() {
                self.metrics.time_retentions.inc();
                self.metrics.blocks_loaded.set(keep.len() as i64);
                *blocks = Arc::new(keep);
                gone.extend(old.iter().map(|b| b.meta().ulid));
                lock(&self.doomed).extend(old);
            }
        }
        self.delete_doomed()?;
        Ok(gone)
    }

    /// Deletes the unloaded blocks no query holds any more.
    fn delete_doomed(&self) -> Result<(), StorageError> {
        let ready: Vec<Arc<Block>> = {
            let mut doomed = lock(&self.doomed);
            let (ready, busy) = std::mem::take(&mut *doomed)
                .into_iter()
                .partition(|b| Arc::strong_count(b) == 1);
            *doomed = busy;
            ready
        };
        for b in ready {
            let dir = b.dir().to_path_buf();
            drop(b);
            remove_block_dir(&dir).map_err(|source| StorageError::DeleteBlock {
                dir: dir.clone(),
                source,
            })?;
            tracing::info!(block = %dir.display(), "deleting obsolete block");
        }
        Ok(())
    }

    /// Cuts blocks and applies retention now (what [`LocalStorage::run`] does periodically).
    pub fn maintain(&self) -> Result<(), StorageError> {
        let cut = self.cut_blocks();
        let retention = self.apply_retention();
        cut.and(retention).map(|_| ())
    }

    /// Cuts blocks and applies retention every `maintenance_interval` until `shutdown`
    /// completes. Nothing is persisted at shutdown: the head is the WAL's to recover.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let mut tick = tokio::time::interval(self.opts.maintenance_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = tick.tick() => {}
            }
            let this = Arc::clone(&self);
            match tokio::task::spawn_blocking(move || this.maintain()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "local storage maintenance failed"),
                Err(e) => tracing::error!(error = %e, "local storage maintenance panicked"),
            }
        }
    }
}

impl Appender for LocalStorage {
    fn append(&self, samples: Vec<RecordedSample>) {
        self.append_samples(samples);
    }
}

#[cfg(test)]
mod tests;
