//! Block discovery: which blocks of the bucket this store gateway serves.
//!
//! Each sync lists the block directories, fetches `meta.json` of blocks not seen before (metas
//! are immutable, so known ones are never fetched again), then applies Thanos' store gateway
//! filters in Thanos' order, counting each block under one `thanos_blocks_meta_synced{state}`:
//!
//! 1. time partition (`--min-time`/`--max-time`): blocks outside are `time-excluded`;
//! 2. label sharding (`--selector.relabel-config` over external labels and `__block_id`):
//!    dropped blocks are `label-excluded`;
//! 3. consistency delay (`--consistency-delay`): blocks younger than the delay (by ULID time)
//!    are `too-fresh`, unless a compactor or bucket repair made them;
//! 4. deletion marks (`--ignore-deletion-marks-delay`): blocks marked longer ago than the delay
//!    are `marked-for-deletion`;
//! 5. deduplication: a block whose compaction sources are all covered by another block of the
//!    same resolution is `duplicate` (the compactor has replaced it but not deleted it yet).
//!
//! A meta that does not parse is `corrupted-meta-json` and a directory without one is
//! `no-meta-json`; neither stops the sync. A bucket failure fails the sync and the store
//! keeps serving what it had.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use strata_block::fetch::{fetch_meta, list_block_ids};
use strata_block::markers::read_deletion_mark;
use strata_model::TimeOrDuration;
use strata_objstore::Bucket;
use strata_tsdb::BlockMeta;
use ulid::Ulid;

use crate::error::StoreError;
use crate::metrics::{State, StoreMetrics};
use strata_block::relabel::{RelabelConfig, selects_block};

/// Sources whose blocks are exempt from the consistency delay: they are written by a single
/// writer that uploads `meta.json` last (Thanos' `metadata.{BucketRepair,Compactor,
/// CompactorRepair}Source`).
const TRUSTED_SOURCES: &[&str] = &["bucket.repair", "compactor", "compactor.repair"];

/// The filters of a sync.
#[derive(Debug, Clone)]
pub struct FilterConfig {
    pub min_time: TimeOrDuration,
    pub max_time: TimeOrDuration,
    pub relabel: Vec<RelabelConfig>,
    pub consistency_delay: Duration,
    pub ignore_deletion_marks_delay: Duration,
    /// With the caching bucket (`--store.caching-bucket.config`, `type: IN-MEMORY`): how long
    /// a block's deletion mark, once read, is taken as known instead of read again at every
    /// sync: `(metafile_content_ttl, metafile_doesnt_exist_ttl)`, for a mark found and for
    /// none. `None` reads every candidate's mark at every sync.
    pub mark_ttls: Option<(Duration, Duration)>,
}

impl Default for FilterConfig {
    fn default() -> Self {
        FilterConfig {
            min_time: TimeOrDuration::min_time(),
            max_time: TimeOrDuration::max_time(),
            relabel: Vec::new(),
            consistency_delay: Duration::ZERO,
            ignore_deletion_marks_delay: Duration::from_secs(24 * 3600),
            mark_ttls: None,
        }
    }
}

impl FilterConfig {
    /// `[min, max]` in milliseconds, relative times resolved against `now_ms`.
    pub fn time_range(&self, now_ms: i64) -> (i64, i64) {
        (self.min_time.resolve(now_ms), self.max_time.resolve(now_ms))
    }
}

/// The result of one sync.
#[derive(Debug, Default, Clone)]
pub struct Synced {
    /// Blocks to serve.
    pub metas: BTreeMap<Ulid, BlockMeta>,
    /// How many blocks ended in each state.
    pub states: BTreeMap<&'static str, usize>,
}

/// Fetches and filters block metas, remembering the metas it has seen.
#[derive(Debug)]
pub struct MetaSyncer {
    bucket: Bucket,
    filter: FilterConfig,
    concurrency: usize,
    known: HashMap<Ulid, BlockMeta>,
    /// Deletion marks read, with when they stop being trusted (`FilterConfig::mark_ttls`).
    marks: HashMap<
        Ulid,
        (
            Option<strata_block::markers::DeletionMark>,
            std::time::Instant,
        ),
    >,
    metrics: StoreMetrics,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl MetaSyncer {
    pub fn new(
        bucket: Bucket,
        filter: FilterConfig,
        concurrency: usize,
        metrics: StoreMetrics,
    ) -> Self {
        MetaSyncer {
            bucket,
            filter,
            concurrency: concurrency.max(1),
            known: HashMap::new(),
            marks: HashMap::new(),
            metrics,
        }
    }

    /// One sync: list, fetch new metas, filter. Updates the `thanos_blocks_meta_*` metrics.
    pub async fn sync(&mut self) -> Result<Synced, StoreError> {
        let start = Instant::now();
        self.metrics.meta_syncs.inc();
        let res = self.sync_inner().await;
        self.metrics
            .meta_sync_duration
            .observe(start.elapsed().as_secs_f64());
        match &res {
            Ok(s) => {
                for st in crate::metrics::SYNC_STATES {
                    let v = s.states.get(st).copied().unwrap_or(0);
                    self.metrics
                        .meta_synced
                        .get_or_create(&State { state: st })
                        .set(v as i64);
                }
            }
            Err(_) => {
                self.metrics.meta_sync_failures.inc();
            }
        }
        res
    }

    async fn sync_inner(&mut self) -> Result<Synced, StoreError> {
        let ids = list_block_ids(&self.bucket).await?;
        let mut out = Synced::default();
        let count = |states: &mut BTreeMap<&'static str, usize>, s: &'static str| {
            *states.entry(s).or_default() += 1;
        };
        let new: Vec<Ulid> = ids
            .iter()
            .copied()
            .filter(|id| !self.known.contains_key(id))
            .collect();
        let bucket = &self.bucket;
        let fetched: Vec<(Ulid, strata_block::Result<Option<BlockMeta>>)> =
            futures::stream::iter(new)
                .map(|id| async move { (id, fetch_meta(bucket, id).await) })
                .buffer_unordered(self.concurrency)
                .collect()
                .await;
        let mut failure = None;
        for (id, r) in fetched {
            match r {
                Ok(Some(meta)) if meta.ulid == id => {
                    self.known.insert(id, meta);
                }
                Ok(Some(meta)) => {
                    tracing::warn!(block = %id, meta_ulid = %meta.ulid, "meta.json names another block; ignoring the block");
                    count(&mut out.states, "corrupted-meta-json");
                }
                Ok(None) => count(&mut out.states, "no-meta-json"),
                Err(strata_block::Error::Block(e)) if e.is_corruption() => {
                    tracing::warn!(block = %id, err = %e, "corrupted meta.json; ignoring the block");
                    count(&mut out.states, "corrupted-meta-json");
                }
                Err(e) => {
                    count(&mut out.states, "failed");
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failure {
            return Err(e.into());
        }
        // Forget blocks that disappeared from the bucket.
        let listed: std::collections::HashSet<Ulid> = ids.iter().copied().collect();
        self.known.retain(|id, _| listed.contains(id));

        let now = now_ms();
        let (min_t, max_t) = self.filter.time_range(now);
        let mut candidates: Vec<&BlockMeta> = Vec::new();
        for meta in self.known.values() {
            // Blocks are half-open [min_time, max_time); the flags are a closed range.
            if meta.max_time <= min_t || meta.min_time > max_t {
                count(&mut out.states, "time-excluded");
                continue;
            }
            if !selects_block(meta, &self.filter.relabel) {
                count(&mut out.states, "label-excluded");
                continue;
            }
            let age_ms = now - meta.ulid.timestamp_ms() as i64;
            let trusted = meta
                .thanos
                .as_ref()
                .is_some_and(|t| TRUSTED_SOURCES.contains(&t.source.as_str()));
            if !trusted && age_ms < self.filter.consistency_delay.as_millis() as i64 {
                count(&mut out.states, "too-fresh");
                continue;
            }
            candidates.push(meta);
        }

        let ids: Vec<Ulid> = candidates.iter().map(|m| m.ulid).collect();
        // Marks still trusted (caching bucket) are not read again.
        let at = std::time::Instant::now();
        self.marks
            .retain(|id, (_, until)| *until > at && listed.contains(id));
        let (cached, to_read): (Vec<Ulid>, Vec<Ulid>) =
            ids.into_iter().partition(|id| self.marks.contains_key(id));
        let mut marks: Vec<(Ulid, strata_block::Result<_>)> = futures::stream::iter(to_read)
            .map(|id| async move { (id, read_deletion_mark(bucket, id).await) })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        if let Some((found_ttl, missing_ttl)) = self.filter.mark_ttls {
            for (id, r) in &marks {
                if let Ok(m) = r {
                    let ttl = if m.is_some() { found_ttl } else { missing_ttl };
                    self.marks.insert(*id, (m.clone(), at + ttl));
                }
            }
        }
        marks.extend(
            cached
                .into_iter()
                .map(|id| (id, Ok(self.marks[&id].0.clone()))),
        );
        let mut marked = std::collections::HashSet::new();
        let delay_s = self.filter.ignore_deletion_marks_delay.as_secs() as i64;
        for (id, r) in marks {
            match r {
                Ok(Some(m)) if now / 1000 - m.deletion_time > delay_s => {
                    marked.insert(id);
                }
                Ok(_) => {}
                // An unreadable mark does not hide the block (Thanos logs and keeps it).
                Err(strata_block::Error::Invalid { detail, .. }) => {
                    tracing::warn!(block = %id, %detail, "unreadable deletion mark; serving the block");
                }
                Err(e) => return Err(e.into()),
            }
        }
        candidates.retain(|m| {
            if marked.contains(&m.ulid) {
                count(&mut out.states, "marked-for-deletion");
                false
            } else {
                true
            }
        });

        // Deduplicate: bigger source sets first; a block whose sources are all in a kept
        // block of the same resolution is redundant.
        candidates.sort_by(|a, b| {
            b.compaction
                .sources
                .len()
                .cmp(&a.compaction.sources.len())
                .then(a.ulid.cmp(&b.ulid))
        });
        let mut kept: Vec<&BlockMeta> = Vec::new();
        for m in candidates {
            let covered = kept.iter().any(|k| {
                k.resolution() == m.resolution()
                    && !m.compaction.sources.is_empty()
                    && m.compaction
                        .sources
                        .iter()
                        .all(|s| k.compaction.sources.contains(s))
            });
            if covered {
                count(&mut out.states, "duplicate");
            } else {
                kept.push(m);
            }
        }
        for m in kept {
            count(&mut out.states, "loaded");
            out.metas.insert(m.ulid, m.clone());
        }
        Ok(out)
    }
}
