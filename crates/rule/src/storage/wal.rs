//! The head's write-ahead log: Prometheus' WAL format (`strata_tsdb::wal`) in
//! `--data-dir/wal`, so recorded series and `ALERTS` survive a restart or a crash, and a
//! Thanos ruler's data directory (or ours, read by Prometheus' tools) keeps working.
//!
//! The head hands every append's new series and accepted samples to [`RuleWal`] under its
//! lock (so the log's order is the head's order), where they are only encoded and queued;
//! [`DurableStorage`]'s `append` then writes them, outside the head's lock, before it
//! returns. A cut block makes the log checkpoint what is still live and drop the rest, as
//! Prometheus' head truncation does.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use strata_model::Labels;
use strata_tsdb::wal::record::{self, RefSample, RefSeries};
use strata_tsdb::wal::{Wal, WalError, WalOptions};

use super::{LocalStorage, ReplayStats, SampleRecord, SeriesRecord, WalHook};
use crate::{Appender, RecordedSample};

/// What the log holds for the writer and the next truncation.
#[derive(Debug, Default)]
struct Pending {
    /// Encoded records, in the head's order.
    records: Vec<Vec<u8>>,
    /// A block was cut: everything before `mint` is persisted, only `live` refs remain.
    truncate: Option<(i64, Vec<u64>)>,
}

/// The WAL behind a [`LocalStorage`].
#[derive(Debug)]
pub struct RuleWal {
    dir: PathBuf,
    compress: bool,
    pending: Mutex<Pending>,
    wal: Mutex<Wal>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RuleWal {
    /// Replays `dir` (the last checkpoint, then the segments after it) into `storage`, cuts
    /// off a torn tail left by a crash (the records before it are kept), and opens the log
    /// for writing. Damage anywhere else is an error: the head would not know what it lost.
    pub fn open_and_replay(
        dir: &Path,
        compress: bool,
        storage: &LocalStorage,
    ) -> Result<(Arc<Self>, ReplayStats), WalError> {
        std::fs::create_dir_all(dir).map_err(|source| WalError::Io {
            op: "creating",
            path: dir.to_path_buf(),
            source,
        })?;
        // Records go into the head as they are read, so replaying holds the head, not the
        // log. At a torn tail the reader stops before it: what was applied is what the
        // repaired log holds, so the log is repaired and the replay ends there.
        let mut replay = storage.start_replay();
        let replayed = strata_tsdb::wal::replay(dir, |rec| match rec {
            record::Record::Series(s) => {
                for s in s {
                    replay.series(s.series_ref, s.labels);
                }
            }
            record::Record::Samples(s) => {
                for s in s {
                    replay.sample(SampleRecord {
                        series_ref: s.series_ref,
                        timestamp_ms: s.t,
                        value: s.v,
                    });
                }
            }
            _ => {}
        });
        match replayed {
            Ok(_) => {}
            Err(e) if e.is_torn_tail() => {
                let Some(c) = e.corruption().cloned() else {
                    return Err(e);
                };
                // Records this reader cannot decode (zstd, from a newer Prometheus) are not
                // a torn write: cutting them off would lose them.
                if c.reason.contains("zstd") || c.reason.contains("unsupported") {
                    return Err(e);
                }
                tracing::warn!(
                    segment = %c.path().display(), offset = c.offset, err = %e,
                    "the WAL ends in a torn write (a crash mid-write); cutting it off"
                );
                strata_tsdb::wal::repair(dir, &c)?;
            }
            Err(e) => return Err(e),
        }
        let stats = replay.finish();
        let wal = Wal::open(
            dir,
            WalOptions {
                compress,
                ..WalOptions::default()
            },
        )?;
        Ok((
            Arc::new(RuleWal {
                dir: dir.to_path_buf(),
                compress,
                pending: Mutex::new(Pending::default()),
                wal: Mutex::new(wal),
            }),
            stats,
        ))
    }

    /// Writes what the head queued (the append path: no checkpoint here, so an evaluation
    /// never waits for one).
    pub fn flush(&self) -> Result<(), WalError> {
        let mut wal = lock(&self.wal);
        let records = std::mem::take(&mut lock(&self.pending).records);
        if !records.is_empty()
            && let Err(e) = wal.log(&records)
        {
            // A failed write leaves the log refusing more: start a fresh segment (the torn
            // one is repaired at the next start) and write the records again, once.
            tracing::warn!(err = %e, "WAL write failed; reopening the WAL on a new segment");
            *wal = Wal::open(
                &self.dir,
                WalOptions {
                    compress: self.compress,
                    ..WalOptions::default()
                },
            )?;
            wal.log(&records)?;
        }
        Ok(())
    }

    /// Writes what is queued, checkpoints if a block was cut, and syncs the log to disk (at
    /// shutdown).
    pub fn sync(&self, storage: &LocalStorage) -> Result<(), WalError> {
        self.flush()?;
        self.checkpoint_if_due(storage)?;
        lock(&self.wal).fsync()
    }

    /// Prometheus' head truncation, once a block was cut: a new segment is started, every
    /// older segment is rewritten into `checkpoint.<last>` keeping the series in the head
    /// now (those created after the cut included: their records are in those segments) and
    /// the samples at or after the cut, then the segments and older checkpoints go. The
    /// rewrite reads closed segments only, so appends go on meanwhile. Returns whether a
    /// checkpoint was due.
    pub fn checkpoint_if_due(&self, storage: &LocalStorage) -> Result<bool, WalError> {
        let Some((mint, mut live)) = lock(&self.pending).truncate.take() else {
            return Ok(false);
        };
        self.flush()?;
        let (first, active) = {
            let mut wal = lock(&self.wal);
            let first = *wal.segments()?.start();
            (first, wal.next_segment()?)
        };
        if active == 0 || first >= active {
            return Ok(true);
        }
        let last = active - 1;
        if strata_tsdb::wal::last_checkpoint(&self.dir)?.is_some_and(|(_, i)| i >= last) {
            return Ok(true);
        }
        live.extend(storage.live_refs());
        let live: std::collections::HashSet<u64> = live.into_iter().collect();
        let stats = strata_tsdb::wal::checkpoint(
            &self.dir,
            first..=last,
            |r| live.contains(&r),
            mint,
            self.compress,
        )?;
        lock(&self.wal).truncate(active)?;
        strata_tsdb::wal::delete_checkpoints(&self.dir, last)?;
        tracing::info!(segments = ?(first..=last), ?stats, "WAL checkpoint written");
        Ok(true)
    }

    /// Checkpoints after each cut, off the evaluation path, until `shutdown`.
    pub async fn run_checkpoints(
        self: Arc<Self>,
        storage: Arc<LocalStorage>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            }
            let (wal, st) = (self.clone(), storage.clone());
            match tokio::task::spawn_blocking(move || wal.checkpoint_if_due(&st)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::error!(err = %e, "WAL checkpoint failed; the WAL keeps every segment until the next cut")
                }
                Err(e) => tracing::error!(err = %e, "WAL checkpoint task failed"),
            }
        }
    }
}

impl WalHook for RuleWal {
    fn log(&self, series: &[SeriesRecord<'_>], samples: &[SampleRecord]) {
        let mut p = lock(&self.pending);
        if !series.is_empty() {
            let s: Vec<RefSeries> = series
                .iter()
                .map(|s| RefSeries {
                    series_ref: s.series_ref,
                    labels: s.labels.clone(),
                })
                .collect();
            let mut out = Vec::new();
            record::encode_series(&s, &mut out);
            p.records.push(out);
        }
        if !samples.is_empty() {
            let s: Vec<RefSample> = samples
                .iter()
                .map(|s| RefSample {
                    series_ref: s.series_ref,
                    t: s.timestamp_ms,
                    v: s.value,
                })
                .collect();
            let mut out = Vec::new();
            record::encode_samples(&s, &mut out);
            p.records.push(out);
        }
    }

    fn truncated(&self, mint: i64, live: &[u64]) {
        lock(&self.pending).truncate = Some((mint, live.to_vec()));
    }
}

/// The local storage with its WAL: what the rule manager appends to in stateful mode.
#[derive(Debug)]
pub struct DurableStorage {
    pub storage: Arc<LocalStorage>,
    pub wal: Arc<RuleWal>,
}

impl Appender for DurableStorage {
    fn append(&self, samples: Vec<RecordedSample>) {
        self.storage.append_samples(samples);
        if let Err(e) = self.wal.flush() {
            tracing::error!(err = %e, "writing the WAL failed: recorded samples are in memory only until the next block");
        }
    }
}

/// The last sample of exactly `series` in `[mint, maxt]`: the head first (the newest data),
/// then the blocks, newest first.
fn last_sample(
    storage: &LocalStorage,
    series: &Labels,
    mint: i64,
    maxt: i64,
) -> Result<Option<(i64, f64)>, String> {
    let last_of =
        |raw: &strata_tsdb::RawChunk, best: &mut Option<(i64, f64)>| -> Result<(), String> {
            for s in raw.xor_iter().map_err(|e| e.to_string())? {
                let (t, v) = s.map_err(|e| e.to_string())?;
                if (mint..=maxt).contains(&t) && best.is_none_or(|(bt, _)| t >= bt) {
                    *best = Some((t, v));
                }
            }
            Ok(())
        };
    let mut best = None;
    {
        let h = super::lock(&storage.head);
        if let Some(s) = h.refs.get(series).and_then(|r| h.series.get(r)) {
            for (_, _, raw) in s.chunks(mint, maxt) {
                last_of(&raw, &mut best)?;
            }
        }
    }
    if best.is_some() {
        return Ok(best);
    }
    let matchers: Vec<strata_model::Matcher> = series
        .iter()
        .map(|l| strata_model::Matcher::equal(l.name.clone(), l.value.clone()))
        .collect();
    for b in storage.blocks().iter().rev() {
        let m = b.meta();
        if m.max_time <= mint || m.min_time > maxt {
            continue;
        }
        for id in b.select(&matchers).map_err(|e| e.to_string())? {
            let s = b
                .series_samples(id, mint, maxt)
                .map_err(|e| e.to_string())?;
            if &s.labels != series {
                continue;
            }
            if let (Some(t), Some(v)) = (s.timestamps.last(), s.values.last()) {
                return Ok(Some((*t, *v)));
            }
        }
    }
    Ok(None)
}

#[async_trait::async_trait]
impl crate::ForStateSource for LocalStorage {
    async fn last_sample(
        &self,
        series: &Labels,
        mint_ms: i64,
        maxt_ms: i64,
    ) -> Result<Option<(i64, f64)>, String> {
        last_sample(self, series, mint_ms, maxt_ms)
    }
}
