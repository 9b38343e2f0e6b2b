//! One compactor iteration over a bucket, in Thanos' order: sync metas → garbage-collect
//! redundant blocks → compact each group → downsample → apply retention → delete what is due.
//!
//! **Crash safety.** Every step leaves the bucket readable and the next iteration converges:
//! - A result is uploaded with `meta.json` last, so a crash mid-upload leaves a partial
//!   upload that nobody reads and that cleanup removes later.
//! - Inputs are marked for deletion only after their result is complete. If the process dies
//!   in between, the next sync sees blocks whose `compaction.sources` are covered by another
//!   block and marks them (garbage collection): no overlap is ever planned twice.
//! - Deletion removes `meta.json` first, so a half-deleted block is a partial upload, never a
//!   block with missing files.
//!
//! **Never quiet.** Overlapping blocks in a stream without vertical compaction halt that
//! stream only: an error naming the blocks is logged every iteration, `thanos_compact_halted`
//! is 1, and every other stream keeps compacting.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use strata_block::fetch::fetch_metas;
use strata_block::markers::{
    DeletionMark, read_deletion_mark, read_no_compact_mark, read_no_downsample_mark,
    write_deletion_mark,
};
use strata_block::transfer::{HashFunc, UploadOptions, download_block_concurrently, upload_block};
use strata_model::TimeOrDuration;
use strata_objstore::Bucket;
use strata_tsdb::BlockMeta;
use strata_tsdb::block::Block;
use strata_tsdb::meta::{META_FILENAME, RES_1H, RES_5M, RES_RAW};
use ulid::Ulid;

use crate::downsample::{RAW_DOWNSAMPLE_RANGE_MS, RES_5M_DOWNSAMPLE_RANGE_MS, downsample_block};
use crate::error::{CompactError, Result};
use crate::merge::{MergeOptions, SOURCE_COMPACTOR, merge_blocks};
use crate::metrics::{CompactMetrics, GroupLabels, MarkLabels};
use crate::planner::{self, DEFAULT_RANGES_MS};

/// Partial uploads younger than this are left alone (an upload may still be running).
pub const PARTIAL_UPLOAD_MIN_AGE_MS: i64 = 48 * 3_600_000;

/// The compactor's settings (the `strata compact` flags).
#[derive(Debug, Clone)]
pub struct CompactorConfig {
    /// Local working directory (`--data-dir`); blocks are downloaded and built under it.
    pub data_dir: PathBuf,
    /// Fresh blocks are invisible for this long (`--consistency-delay`, 30m).
    pub consistency_delay_ms: i64,
    /// Marked blocks are deleted after this long (`--delete-delay`, 48h).
    pub delete_delay_ms: i64,
    /// Retention per resolution (0 = forever).
    pub retention_raw_ms: i64,
    pub retention_5m_ms: i64,
    pub retention_1h_ms: i64,
    pub downsampling: bool,
    /// Labels removed before grouping, so replicas merge (`--deduplication.replica-label`).
    pub replica_labels: Vec<String>,
    /// Merge overlapping blocks instead of halting (`--compact.enable-vertical-compaction`,
    /// implied by replica labels).
    pub vertical_compaction: bool,
    /// How vertical compaction merges replicas (`--deduplication.func`: `""` is `Chain`,
    /// one-to-one; `penalty` is `Penalty`).
    pub dedup: strata_dedup::Algorithm,
    /// Compaction ranges (Thanos: 1h, 2h, 8h, 2d, 14d).
    pub ranges: Vec<i64>,
    pub fetch_concurrency: usize,
    /// Groups compacted at the same time (`--compact.concurrency`).
    pub compact_concurrency: usize,
    /// Blocks downsampled at the same time (`--downsample.concurrency`).
    pub downsample_concurrency: usize,
    /// Only blocks overlapping `[min_time, max_time]` are acted on (`--min-time`,
    /// `--max-time`), resolved against the iteration's "now".
    pub min_time: TimeOrDuration,
    pub max_time: TimeOrDuration,
    /// Which blocks this compactor owns, from their external labels (`--selector.relabel-config`);
    /// `None` takes every block.
    pub selector: Option<BlockSelector>,
    /// `--hash-func`: file hashes recorded in the meta.json of every block uploaded.
    pub hash_func: HashFunc,
    /// `--block-files-concurrency`: files of one block downloaded or uploaded at once.
    pub block_files_concurrency: usize,
    /// `--compact.blocks-fetch-concurrency`: input blocks of a compaction downloaded at once.
    pub blocks_fetch_concurrency: usize,
}

/// Decides from a block's meta (in Thanos: its external labels and `__block_id`) whether this
/// compactor acts on it (the sharding of `--selector.relabel-config`). Blocks it rejects are left entirely alone:
/// not compacted, not downsampled, not deleted.
#[derive(Clone)]
pub struct BlockSelector(pub Arc<SelectFn>);

/// The predicate inside a [`BlockSelector`]: a block's meta in, verdict out.
pub type SelectFn = dyn Fn(&BlockMeta) -> bool + Send + Sync;

impl BlockSelector {
    /// The selector of `--selector.relabel-config` rules: blocks the rules drop are not ours.
    pub fn from_relabel(rules: Vec<strata_block::relabel::RelabelConfig>) -> BlockSelector {
        BlockSelector(Arc::new(move |m: &BlockMeta| {
            strata_block::relabel::selects_block(m, &rules)
        }))
    }
}

impl std::fmt::Debug for BlockSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlockSelector(..)")
    }
}

impl CompactorConfig {
    pub fn new(data_dir: PathBuf) -> Self {
        CompactorConfig {
            data_dir,
            consistency_delay_ms: 30 * 60_000,
            delete_delay_ms: 48 * 3_600_000,
            retention_raw_ms: 0,
            retention_5m_ms: 0,
            retention_1h_ms: 0,
            downsampling: true,
            replica_labels: Vec::new(),
            vertical_compaction: false,
            dedup: strata_dedup::Algorithm::Chain,
            ranges: DEFAULT_RANGES_MS.to_vec(),
            fetch_concurrency: 32,
            compact_concurrency: 1,
            downsample_concurrency: 1,
            min_time: TimeOrDuration::min_time(),
            max_time: TimeOrDuration::max_time(),
            selector: None,
            hash_func: HashFunc::None,
            block_files_concurrency: 1,
            blocks_fetch_concurrency: 1,
        }
    }

    fn retention_for(&self, resolution: i64) -> i64 {
        match resolution {
            RES_RAW => self.retention_raw_ms,
            RES_5M => self.retention_5m_ms,
            RES_1H => self.retention_1h_ms,
            _ => 0,
        }
    }
}

/// A compaction group: one stream of blocks (resolution + external labels, replica labels
/// removed).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey {
    pub resolution: i64,
    pub labels: BTreeMap<String, String>,
}

impl GroupKey {
    /// Thanos' group key: `<resolution>@<xxhash64 of the labels>`, as its logs and metrics
    /// show it.
    pub fn key(&self) -> String {
        let mut h = xxhash_rust::xxh64::Xxh64::new(0);
        for (k, v) in &self.labels {
            h.update(k.as_bytes());
            h.update(&[0xff]);
            h.update(v.as_bytes());
            h.update(&[0xff]);
        }
        format!("{}@{}", self.resolution, h.digest())
    }
}

/// A block's deletion mark, and whether it carries a no-compact and a no-downsample mark.
type BlockMarks = (Option<DeletionMark>, bool, bool);

/// The bucket as one iteration sees it.
#[derive(Debug, Default)]
pub struct Synced {
    /// Blocks to work with: complete, past the consistency delay, not marked for deletion,
    /// not redundant; replica labels removed.
    pub metas: BTreeMap<Ulid, BlockMeta>,
    /// Every deletion mark found.
    pub deletion_marks: BTreeMap<Ulid, DeletionMark>,
    pub no_compact: HashSet<Ulid>,
    pub no_downsample: HashSet<Ulid>,
    /// Blocks whose sources another block covers (left by an interrupted compaction).
    pub redundant: Vec<Ulid>,
    /// Directories without `meta.json`.
    pub partial: Vec<Ulid>,
}

/// What one iteration did.
#[derive(Debug, Default, Clone)]
pub struct IterationReport {
    pub compactions: usize,
    pub downsamples: usize,
    pub marked_for_deletion: usize,
    pub deleted: usize,
    pub partial_deleted: usize,
    /// Halted groups and why.
    pub halted: Vec<(String, String)>,
    /// Groups that failed (and will be retried next iteration).
    pub failed: Vec<(String, String)>,
}

/// The compactor.
#[derive(Debug)]
pub struct Compactor {
    bucket: Bucket,
    cfg: CompactorConfig,
    metrics: CompactMetrics,
    halted: Mutex<BTreeMap<String, String>>,
}

impl Compactor {
    pub fn new(bucket: Bucket, cfg: CompactorConfig, metrics: CompactMetrics) -> Self {
        Compactor {
            bucket,
            cfg,
            metrics,
            halted: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn metrics(&self) -> &CompactMetrics {
        &self.metrics
    }

    /// Groups halted in the last iteration, with the reason.
    pub fn halted_groups(&self) -> BTreeMap<String, String> {
        self.halted.lock().expect("halted lock").clone()
    }

    fn work_dir(&self) -> PathBuf {
        self.cfg.data_dir.join("compact")
    }

    /// Runs one full iteration. `now_ms` is the current time (injectable for tests).
    pub async fn run_iteration(&self, now_ms: i64) -> Result<IterationReport> {
        let mut report = IterationReport::default();
        // Leftovers of a previous, interrupted run are useless: start clean.
        let work = self.work_dir();
        if work.exists() {
            std::fs::remove_dir_all(&work).map_err(|source| CompactError::Io {
                op: "clean",
                path: work.clone(),
                source,
            })?;
        }
        let mut synced = self.sync(now_ms).await?;
        self.garbage_collect(&mut synced, &mut report).await?;
        self.compact_groups(&mut synced, &mut report).await?;
        if self.cfg.downsampling {
            self.downsample(&mut synced, &mut report).await?;
        }
        self.apply_retention(&mut synced, now_ms, &mut report)
            .await?;
        self.clean(&synced, now_ms, &mut report).await?;
        self.update_progress(&synced, &report);
        self.metrics.iterations.inc();
        Ok(report)
    }

    /// Only deletes: blocks whose deletion mark is past the delete delay, and abandoned
    /// partial uploads (`strata tools bucket cleanup`).
    pub async fn run_cleanup(&self, now_ms: i64) -> Result<IterationReport> {
        let mut report = IterationReport::default();
        let synced = self.sync(now_ms).await?;
        self.clean(&synced, now_ms, &mut report).await?;
        Ok(report)
    }

    /// Only marks blocks past their resolution's retention (`strata tools bucket retention`).
    pub async fn run_retention(&self, now_ms: i64) -> Result<IterationReport> {
        let mut report = IterationReport::default();
        let mut synced = self.sync(now_ms).await?;
        self.apply_retention(&mut synced, now_ms, &mut report)
            .await?;
        Ok(report)
    }

    /// Only downsamples (`strata tools bucket downsample`).
    pub async fn run_downsampling(&self, now_ms: i64) -> Result<IterationReport> {
        let mut report = IterationReport::default();
        let work = self.work_dir();
        if work.exists() {
            std::fs::remove_dir_all(&work).map_err(|source| CompactError::Io {
                op: "clean",
                path: work.clone(),
                source,
            })?;
        }
        let mut synced = self.sync(now_ms).await?;
        self.downsample(&mut synced, &mut report).await?;
        Ok(report)
    }

    /// Reads the bucket: metas, markers, and what to leave out.
    pub async fn sync(&self, now_ms: i64) -> Result<Synced> {
        let fetched = fetch_metas(&self.bucket, self.cfg.fetch_concurrency).await?;
        for (id, why) in &fetched.corrupted {
            tracing::error!(block = %id, error = %why, "block with unreadable meta.json; leaving it untouched");
        }
        let ids: Vec<Ulid> = fetched.metas.keys().copied().collect();
        let conc = self.cfg.fetch_concurrency.max(1);
        let marks: Vec<(Ulid, Result<BlockMarks>)> = futures::stream::iter(ids)
            .map(|id| async move {
                let r = async {
                    let d = read_deletion_mark(&self.bucket, id).await?;
                    let nc = read_no_compact_mark(&self.bucket, id).await?.is_some();
                    let nd = read_no_downsample_mark(&self.bucket, id).await?.is_some();
                    Ok::<_, CompactError>((d, nc, nd))
                }
                .await;
                (id, r)
            })
            .buffer_unordered(conc)
            .collect()
            .await;
        let mut synced = Synced {
            partial: fetched.partial.clone(),
            ..Default::default()
        };
        for (id, r) in marks {
            let (d, nc, nd) = r?;
            if let Some(d) = d {
                synced.deletion_marks.insert(id, d);
            }
            if nc {
                synced.no_compact.insert(id);
            }
            if nd {
                synced.no_downsample.insert(id);
            }
        }
        let (min_t, max_t) = (
            self.cfg.min_time.resolve(now_ms),
            self.cfg.max_time.resolve(now_ms),
        );
        for (id, mut meta) in fetched.metas {
            let selected = self.cfg.selector.as_ref().is_none_or(|sel| (sel.0)(&meta));
            if !selected || meta.max_time < min_t || meta.min_time > max_t {
                // Not ours (another shard's, or outside --min-time/--max-time): left entirely
                // alone, deletion included, as Thanos' filters do.
                synced.deletion_marks.remove(&id);
                synced.no_compact.remove(&id);
                synced.no_downsample.remove(&id);
                continue;
            }
            if synced.deletion_marks.contains_key(&id) {
                continue;
            }
            let source = meta
                .thanos
                .as_ref()
                .map(|t| t.source.as_str())
                .unwrap_or("");
            let trusted = matches!(source, "compactor" | "compactor.repair" | "bucket.repair");
            let age = now_ms - id.timestamp_ms() as i64;
            if !trusted && age < self.cfg.consistency_delay_ms {
                continue;
            }
            if let Some(t) = meta.thanos.as_mut() {
                for l in &self.cfg.replica_labels {
                    t.labels.remove(l);
                }
            }
            synced.metas.insert(id, meta);
        }
        synced.redundant = redundant_blocks(&synced.metas);
        for id in &synced.redundant {
            synced.metas.remove(id);
        }
        Ok(synced)
    }

    /// Marks a block for deletion and remembers the mark, so that this iteration's cleanup
    /// already counts it (with `--delete-delay=0s` a single run deletes what it replaced, as
    /// Thanos does). Returns whether a new mark was written.
    async fn mark_deleted(&self, synced: &mut Synced, id: Ulid, details: &str) -> Result<bool> {
        let written = write_deletion_mark(&self.bucket, id, details).await?;
        let wrote = written.is_some();
        let mark = match written {
            Some(m) => Some(m),
            None => read_deletion_mark(&self.bucket, id).await?,
        };
        if let Some(mark) = mark {
            synced.deletion_marks.insert(id, mark);
        }
        Ok(wrote)
    }

    /// Marks blocks whose sources another block covers.
    async fn garbage_collect(
        &self,
        synced: &mut Synced,
        report: &mut IterationReport,
    ) -> Result<()> {
        for id in synced.redundant.clone() {
            if self
                .mark_deleted(
                    synced,
                    id,
                    "outdated block: its sources are covered by another block",
                )
                .await?
            {
                tracing::info!(block = %id, "marked redundant block for deletion");
                self.metrics
                    .blocks_marked
                    .get_or_create(&mark("garbage-collect"))
                    .inc();
                report.marked_for_deletion += 1;
            }
        }
        Ok(())
    }

    fn groups(metas: &BTreeMap<Ulid, BlockMeta>) -> BTreeMap<GroupKey, Vec<BlockMeta>> {
        let mut groups: BTreeMap<GroupKey, Vec<BlockMeta>> = BTreeMap::new();
        for m in metas.values() {
            let key = GroupKey {
                resolution: m.resolution(),
                labels: m.external_labels(),
            };
            groups.entry(key).or_default().push(m.clone());
        }
        for v in groups.values_mut() {
            v.sort_by_key(|m| (m.min_time, m.max_time, m.ulid));
        }
        groups
    }

    async fn compact_groups(
        &self,
        synced: &mut Synced,
        report: &mut IterationReport,
    ) -> Result<()> {
        let mut halted = BTreeMap::new();
        let mut any_halted = false;
        // Groups are independent streams: each runs on its own copy of the state it needs,
        // and the copies are folded back in afterwards, whatever each group's outcome.
        let no_compact = synced.no_compact.clone();
        let outcomes: Vec<(GroupKey, Vec<Ulid>, Synced, Result<usize>)> =
            futures::stream::iter(Self::groups(&synced.metas))
                .map(|(key, metas)| {
                    let ids: Vec<Ulid> = metas.iter().map(|m| m.ulid).collect();
                    let mut local = Synced {
                        metas: metas.iter().map(|m| (m.ulid, m.clone())).collect(),
                        no_compact: no_compact.clone(),
                        ..Default::default()
                    };
                    async move {
                        let r = self.compact_group(&key, metas, &mut local).await;
                        (key, ids, local, r)
                    }
                })
                .buffer_unordered(self.cfg.compact_concurrency.max(1))
                .collect()
                .await;
        for (key, ids, local, result) in outcomes {
            for id in ids {
                synced.metas.remove(&id);
            }
            synced.metas.extend(local.metas);
            synced.deletion_marks.extend(local.deletion_marks);
            synced.no_compact.extend(local.no_compact);
            let gk = key.key();
            match result {
                Ok(n) => {
                    report.compactions += n;
                }
                Err(CompactError::Overlap { group, blocks }) => {
                    let why = format!("overlapping blocks {blocks}");
                    tracing::error!(
                        group = %group,
                        blocks = %blocks,
                        "critical: overlapping blocks in a group without vertical compaction; this group is halted (other groups continue). Enable vertical compaction (--deduplication.replica-label), or mark one of the blocks for deletion or no-compact"
                    );
                    halted.insert(gk.clone(), why.clone());
                    report.halted.push((gk, why));
                    any_halted = true;
                }
                Err(e) => {
                    tracing::error!(group = %gk, error = %e, "compaction of group failed; will retry next iteration");
                    self.metrics
                        .group_compaction_failures
                        .get_or_create(&group(&gk))
                        .inc();
                    report.failed.push((gk, e.to_string()));
                }
            }
        }
        self.metrics.halted.set(i64::from(any_halted));
        *self.halted.lock().expect("halted lock") = halted;
        Ok(())
    }

    /// Compacts one group until its planner has nothing left. Returns how many compactions ran.
    async fn compact_group(
        &self,
        key: &GroupKey,
        mut metas: Vec<BlockMeta>,
        synced: &mut Synced,
    ) -> Result<usize> {
        let gk = key.key();
        if !self.cfg.vertical_compaction {
            let refs: Vec<&BlockMeta> = metas.iter().collect();
            let overlapping = planner::select_overlapping(&refs);
            if !overlapping.is_empty() {
                let blocks = overlapping
                    .iter()
                    .map(|m| format!("{} [{}, {})", m.ulid, m.min_time, m.max_time))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(CompactError::Overlap { group: gk, blocks });
            }
        }
        let mut done = 0;
        loop {
            let plan: Vec<BlockMeta> = {
                let refs: Vec<&BlockMeta> = metas.iter().collect();
                planner::plan(&self.cfg.ranges, &refs, &synced.no_compact)
                    .into_iter()
                    .cloned()
                    .collect()
            };
            if plan.is_empty() {
                break;
            }
            let vertical =
                !planner::select_overlapping(&plan.iter().collect::<Vec<_>>()).is_empty();
            if vertical && key.resolution != RES_RAW {
                // Downsampled blocks cannot be merged sample by sample: keep them out.
                for m in &plan {
                    strata_block::markers::mark_no_compact(
                        &self.bucket,
                        m.ulid,
                        "downsample-vertical-compaction",
                        "overlapping downsampled blocks cannot be vertically compacted",
                    )
                    .await?;
                    synced.no_compact.insert(m.ulid);
                }
                continue;
            }
            let result = self.compact_plan(key, &plan).await?;
            if let Some(meta) = &result {
                tracing::info!(group = %gk, block = %meta.ulid, inputs = plan.len(), vertical, "compacted blocks");
            }
            for m in &plan {
                let details = match &result {
                    Some(r) => format!("source of compacted block {}", r.ulid),
                    None => "compacted into nothing: every sample was deleted".to_string(),
                };
                self.mark_deleted(synced, m.ulid, &details).await?;
                self.metrics
                    .blocks_marked
                    .get_or_create(&mark("compacted"))
                    .inc();
                synced.metas.remove(&m.ulid);
            }
            metas.retain(|m| !plan.iter().any(|p| p.ulid == m.ulid));
            if let Some(meta) = result {
                let mut stripped = meta.clone();
                if let Some(t) = stripped.thanos.as_mut() {
                    for l in &self.cfg.replica_labels {
                        t.labels.remove(l);
                    }
                }
                synced.metas.insert(meta.ulid, stripped.clone());
                metas.push(stripped);
                metas.sort_by_key(|m| (m.min_time, m.max_time, m.ulid));
            }
            self.metrics
                .group_compactions
                .get_or_create(&group(&gk))
                .inc();
            if vertical {
                self.metrics
                    .group_vertical_compactions
                    .get_or_create(&group(&gk))
                    .inc();
            }
            done += 1;
        }
        Ok(done)
    }

    /// Downloads, merges and uploads one plan; returns the uploaded meta (`None` when the
    /// inputs held nothing).
    async fn compact_plan(&self, key: &GroupKey, plan: &[BlockMeta]) -> Result<Option<BlockMeta>> {
        let dir = self.work_dir().join(format!("group-{}", plan[0].ulid));
        let inputs_dir = dir.join("inputs");
        let out_dir = dir.join("output");
        std::fs::create_dir_all(&inputs_dir).map_err(|source| CompactError::Io {
            op: "create",
            path: inputs_dir.clone(),
            source,
        })?;
        // Input blocks downloaded `--compact.blocks-fetch-concurrency` at a time, each with
        // `--block-files-concurrency` files at once; opened in plan order.
        let files = self.cfg.block_files_concurrency;
        let paths: Vec<std::path::PathBuf> = futures::stream::iter(plan)
            .map(|m| download_block_concurrently(&self.bucket, m.ulid, &inputs_dir, files))
            .buffered(self.cfg.blocks_fetch_concurrency.max(1))
            .try_collect()
            .await?;
        let mut blocks = Vec::with_capacity(plan.len());
        for (m, p) in plan.iter().zip(&paths) {
            blocks.push(Block::open(p).map_err(|source| CompactError::Input {
                block: m.ulid,
                source,
            })?);
        }
        let opts = MergeOptions {
            labels: key.labels.clone(),
            resolution: key.resolution,
            dedup: self.cfg.dedup,
            ..Default::default()
        };
        let merged = {
            let out = out_dir.clone();
            tokio::task::spawn_blocking(move || merge_blocks(&blocks, &out, &opts))
                .await
                .map_err(|e| CompactError::Plan(format!("merge task: {e}")))??
        };
        let result = match merged {
            None => None,
            Some((meta, _)) => {
                let bdir = out_dir.join(meta.ulid.to_string());
                let uploaded =
                    upload_block(&self.bucket, &bdir, &upload_opts(key, &self.cfg)).await?;
                Some(uploaded)
            }
        };
        let _ = std::fs::remove_dir_all(&dir);
        Ok(result)
    }

    async fn downsample(&self, synced: &mut Synced, report: &mut IterationReport) -> Result<()> {
        for (from, to, min_range) in [
            (RES_RAW, RES_5M, RAW_DOWNSAMPLE_RANGE_MS),
            (RES_5M, RES_1H, RES_5M_DOWNSAMPLE_RANGE_MS),
        ] {
            let results: Vec<(BlockMeta, Result<Option<BlockMeta>>)> =
                futures::stream::iter(downsample_candidates(synced, from, to, min_range))
                    .map(|m| async move {
                        let r = self.downsample_one(&m, to).await;
                        (m, r)
                    })
                    .buffer_unordered(self.cfg.downsample_concurrency.max(1))
                    .collect()
                    .await;
            for (m, result) in results {
                let gk = GroupKey {
                    resolution: from,
                    labels: m.external_labels(),
                }
                .key();
                match result {
                    Ok(Some(out)) => {
                        tracing::info!(block = %m.ulid, downsampled = %out.ulid, resolution = to, "downsampled block");
                        self.metrics.downsamples.get_or_create(&group(&gk)).inc();
                        report.downsamples += 1;
                        synced.metas.insert(out.ulid, out);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(block = %m.ulid, error = %e, "downsampling failed; will retry next iteration");
                        self.metrics
                            .downsample_failures
                            .get_or_create(&group(&gk))
                            .inc();
                        report.failed.push((gk, e.to_string()));
                    }
                }
            }
        }
        Ok(())
    }

    async fn downsample_one(&self, m: &BlockMeta, to: i64) -> Result<Option<BlockMeta>> {
        let dir = self.work_dir().join(format!("downsample-{}", m.ulid));
        let p = download_block_concurrently(
            &self.bucket,
            m.ulid,
            &dir,
            self.cfg.block_files_concurrency,
        )
        .await?;
        let block = Block::open(&p).map_err(|source| CompactError::Input {
            block: m.ulid,
            source,
        })?;
        let out = dir.join("output");
        let result = tokio::task::spawn_blocking(move || downsample_block(&block, to, &out, None))
            .await
            .map_err(|e| CompactError::Plan(format!("downsample task: {e}")))??;
        let uploaded = match result {
            None => None,
            Some((meta, _)) => {
                let key = GroupKey {
                    resolution: to,
                    labels: m.external_labels(),
                };
                let bdir = dir.join("output").join(meta.ulid.to_string());
                Some(upload_block(&self.bucket, &bdir, &upload_opts(&key, &self.cfg)).await?)
            }
        };
        let _ = std::fs::remove_dir_all(&dir);
        Ok(uploaded)
    }

    async fn apply_retention(
        &self,
        synced: &mut Synced,
        now_ms: i64,
        report: &mut IterationReport,
    ) -> Result<()> {
        let expired: Vec<Ulid> = synced
            .metas
            .values()
            .filter(|m| {
                let r = self.cfg.retention_for(m.resolution());
                r > 0 && m.max_time < now_ms - r
            })
            .map(|m| m.ulid)
            .collect();
        for id in expired {
            if self
                .mark_deleted(synced, id, "block is older than its resolution's retention")
                .await?
            {
                tracing::info!(block = %id, "marked block for deletion: past retention");
                self.metrics
                    .blocks_marked
                    .get_or_create(&mark("retention"))
                    .inc();
                report.marked_for_deletion += 1;
            }
            synced.metas.remove(&id);
        }
        Ok(())
    }

    /// Deletes blocks whose deletion mark is older than the delete delay, and abandoned
    /// partial uploads.
    async fn clean(
        &self,
        synced: &Synced,
        now_ms: i64,
        report: &mut IterationReport,
    ) -> Result<()> {
        let now_s = now_ms / 1000;
        for (id, mark) in &synced.deletion_marks {
            // A zero delay means "now", even for a mark written a moment ago in this
            // iteration: its wall-clock second may be ahead of `now_ms`, which was taken at
            // the start of the iteration.
            if self.cfg.delete_delay_ms > 0
                && (now_s - mark.deletion_time) * 1000 < self.cfg.delete_delay_ms
            {
                continue;
            }
            match delete_block(&self.bucket, *id).await {
                Ok(()) => {
                    tracing::info!(block = %id, "deleted block marked for deletion");
                    self.metrics.blocks_cleaned.inc();
                    report.deleted += 1;
                }
                Err(e) => {
                    tracing::error!(block = %id, error = %e, "deleting block failed; will retry");
                    self.metrics.block_cleanup_failures.inc();
                }
            }
        }
        let min_age = self.cfg.consistency_delay_ms.max(PARTIAL_UPLOAD_MIN_AGE_MS);
        for id in &synced.partial {
            if now_ms - (id.timestamp_ms() as i64) < min_age {
                continue;
            }
            match delete_block(&self.bucket, *id).await {
                Ok(()) => {
                    tracing::info!(block = %id, "deleted abandoned partial upload");
                    self.metrics.partial_uploads_deleted.inc();
                    report.partial_deleted += 1;
                }
                Err(e) => {
                    tracing::error!(block = %id, error = %e, "deleting partial upload failed")
                }
            }
        }
        Ok(())
    }

    /// `thanos_compact_todo_*`: what is left to do, by replaying the planner.
    fn update_progress(&self, synced: &Synced, report: &IterationReport) {
        self.metrics.todo_compactions.clear();
        self.metrics.todo_compaction_blocks.clear();
        self.metrics.todo_downsample_blocks.clear();
        for (key, metas) in Self::groups(&synced.metas) {
            let gk = key.key();
            let (plans, blocks) = simulate_plans(&self.cfg.ranges, metas, &synced.no_compact);
            self.metrics
                .todo_compactions
                .get_or_create(&group(&gk))
                .set(plans as i64);
            self.metrics
                .todo_compaction_blocks
                .get_or_create(&group(&gk))
                .set(blocks as i64);
            let todo = match key.resolution {
                RES_RAW => downsample_candidates(synced, RES_RAW, RES_5M, RAW_DOWNSAMPLE_RANGE_MS),
                RES_5M => downsample_candidates(synced, RES_5M, RES_1H, RES_5M_DOWNSAMPLE_RANGE_MS),
                _ => Vec::new(),
            }
            .iter()
            .filter(|m| m.external_labels() == key.labels)
            .count();
            self.metrics
                .todo_downsample_blocks
                .get_or_create(&group(&gk))
                .set(todo as i64);
        }
        self.metrics
            .todo_deletion_blocks
            .set(synced.deletion_marks.len().saturating_sub(report.deleted) as i64);
    }
}

/// Blocks of resolution `from`, long enough, not marked no-downsample, whose sources are not
/// all covered by a block of resolution `to` yet.
fn downsample_candidates(synced: &Synced, from: i64, to: i64, min_range: i64) -> Vec<BlockMeta> {
    let covered: HashSet<Ulid> = synced
        .metas
        .values()
        .filter(|m| m.resolution() == to)
        .flat_map(|m| m.compaction.sources.iter().copied())
        .collect();
    synced
        .metas
        .values()
        .filter(|m| m.resolution() == from && m.max_time - m.min_time >= min_range)
        .filter(|m| !synced.no_downsample.contains(&m.ulid))
        .filter(|m| !m.compaction.sources.iter().all(|s| covered.contains(s)))
        .cloned()
        .collect()
}

fn group(gk: &str) -> GroupLabels {
    GroupLabels {
        group: gk.to_string(),
    }
}

fn mark(reason: &str) -> MarkLabels {
    MarkLabels {
        marker: "deletion-mark.json".into(),
        reason: reason.into(),
    }
}

fn upload_opts(key: &GroupKey, cfg: &CompactorConfig) -> UploadOptions {
    UploadOptions {
        labels: key.labels.clone(),
        source: SOURCE_COMPACTOR.into(),
        require_labels: false,
        hash_func: cfg.hash_func,
        file_concurrency: cfg.block_files_concurrency,
    }
}

/// Runs the planner on a copy of a group, applying each plan as if compacted, and counts the
/// plans and the blocks they take.
pub fn simulate_plans(
    ranges: &[i64],
    mut metas: Vec<BlockMeta>,
    no_compact: &HashSet<Ulid>,
) -> (usize, usize) {
    let (mut plans, mut blocks) = (0, 0);
    for _ in 0..10_000 {
        let plan: Vec<BlockMeta> = {
            let refs: Vec<&BlockMeta> = metas.iter().collect();
            planner::plan(ranges, &refs, no_compact)
                .into_iter()
                .cloned()
                .collect()
        };
        if plan.is_empty() {
            break;
        }
        plans += 1;
        blocks += plan.len();
        let min = plan
            .iter()
            .map(|m| m.min_time)
            .min()
            .expect("non-empty plan");
        let max = plan
            .iter()
            .map(|m| m.max_time)
            .max()
            .expect("non-empty plan");
        metas.retain(|m| !plan.iter().any(|p| p.ulid == m.ulid));
        let mut merged = BlockMeta::new(Ulid::generate(), min, max);
        merged.compaction.level = plan.iter().map(|m| m.compaction.level).max().unwrap_or(1) + 1;
        metas.push(merged);
        metas.sort_by_key(|m| (m.min_time, m.max_time));
    }
    (plans, blocks)
}

/// Blocks whose `compaction.sources` are a subset of another block's (same resolution): the
/// leftovers of a compaction interrupted before it marked its inputs. Of two blocks with the
/// same sources, the older ULID is kept.
pub fn redundant_blocks(metas: &BTreeMap<Ulid, BlockMeta>) -> Vec<Ulid> {
    let sets: Vec<(&BlockMeta, BTreeSet<Ulid>)> = metas
        .values()
        .map(|m| (m, m.compaction.sources.iter().copied().collect()))
        .collect();
    let mut out = Vec::new();
    for (a, sa) in &sets {
        if sa.is_empty() {
            continue;
        }
        let covered = sets.iter().any(|(b, sb)| {
            b.ulid != a.ulid
                && b.resolution() == a.resolution()
                && sa.is_subset(sb)
                && (sa.len() < sb.len() || b.ulid < a.ulid)
        });
        if covered {
            out.push(a.ulid);
        }
    }
    out
}

/// Deletes a block: `meta.json` first (from then on it is a partial upload, which no reader
/// uses), then its other files, then the deletion mark last.
pub async fn delete_block(bucket: &Bucket, id: Ulid) -> Result<()> {
    let prefix = id.to_string();
    let names = bucket
        .iter(&prefix, true)
        .await
        .map_err(strata_block::Error::from)?;
    let meta_key = format!("{prefix}/{META_FILENAME}");
    let mark_key = format!("{prefix}/{}", strata_block::markers::DELETION_MARK_FILENAME);
    if names.contains(&meta_key) {
        bucket
            .delete(&meta_key)
            .await
            .map_err(strata_block::Error::from)?;
    }
    for name in &names {
        if *name != meta_key && *name != mark_key {
            bucket
                .delete(name)
                .await
                .map_err(strata_block::Error::from)?;
        }
    }
    if names.contains(&mark_key) {
        bucket
            .delete(&mark_key)
            .await
            .map_err(strata_block::Error::from)?;
    }
    Ok(())
}

/// Where a group's work directory would be (exposed for tests).
pub fn group_dir(data_dir: &Path, first_block: Ulid) -> PathBuf {
    data_dir
        .join("compact")
        .join(format!("group-{first_block}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_key_matches_thanos_format() {
        let k = GroupKey {
            resolution: 0,
            labels: BTreeMap::new(),
        };
        // xxhash64 of nothing, seed 0.
        assert_eq!(k.key(), "0@17241709254077376921");
        let k = GroupKey {
            resolution: 300000,
            labels: [("a".into(), "b".into())].into(),
        };
        assert!(k.key().starts_with("300000@"));
    }

    #[test]
    fn redundant_blocks_are_those_covered_by_another() {
        let mk = |srcs: &[Ulid], level| {
            let mut m = BlockMeta::new(Ulid::generate(), 0, 10);
            m.compaction.sources = srcs.to_vec();
            m.compaction.level = level;
            m
        };
        let (a, b, c) = (Ulid::generate(), Ulid::generate(), Ulid::generate());
        let ma = mk(&[a], 1);
        let mb = mk(&[b], 1);
        let mc = mk(&[c], 1);
        let mab = mk(&[a, b], 2);
        let metas: BTreeMap<Ulid, BlockMeta> = [ma.clone(), mb.clone(), mc.clone(), mab.clone()]
            .into_iter()
            .map(|m| (m.ulid, m))
            .collect();
        let mut r = redundant_blocks(&metas);
        r.sort();
        let mut want = vec![ma.ulid, mb.ulid];
        want.sort();
        assert_eq!(r, want);
    }
}
