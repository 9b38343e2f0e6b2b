//! Checkpoints: what a head still needs from a range of old segments, condensed into a small
//! WAL of its own (`wal/checkpoint.NNNNNNNN`) so that the segments can be deleted.
//!
//! A checkpoint is a WAL-format directory, so that replay reads it with the same reader and
//! simply continues with the segments after `NNNNNNNN`. It is written under a `.tmp` name and
//! renamed into place once complete and fsynced: a crash leaves either the old state or the new
//! checkpoint, never half of one.

use std::fs;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use super::error::{WalError, WalResult};
use super::record::{self, Record};
use super::{Reader, Wal, WalOptions, sync_dir};

/// The name prefix of checkpoint directories.
pub const CHECKPOINT_PREFIX: &str = "checkpoint.";
const TMP_SUFFIX: &str = ".tmp";

/// What a checkpoint kept and dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    pub total_series: u64,
    pub dropped_series: u64,
    pub total_samples: u64,
    pub dropped_samples: u64,
    pub total_tombstones: u64,
    pub dropped_tombstones: u64,
    /// Records of types this crate does not decode, which a checkpoint cannot carry over.
    pub dropped_unknown_records: u64,
}

/// The directory of checkpoint `index` in `wal_dir`.
pub fn checkpoint_dir(wal_dir: &Path, index: u32) -> PathBuf {
    wal_dir.join(format!("{CHECKPOINT_PREFIX}{index:08}"))
}

/// The checkpoints in `wal_dir`, ascending by index.
fn list_checkpoints(wal_dir: &Path) -> WalResult<Vec<(u32, PathBuf)>> {
    let rd = fs::read_dir(wal_dir).map_err(|e| WalError::io("list", wal_dir, e))?;
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| WalError::io("list", wal_dir, e))?;
        let name = ent.file_name();
        let Some(num) = name
            .to_str()
            .and_then(|n| n.strip_prefix(CHECKPOINT_PREFIX))
        else {
            continue;
        };
        let Some(idx) = super::parse_index(num) else {
            continue; // `.tmp` leftovers and foreign names.
        };
        let path = ent.path();
        if !path.is_dir() {
            return Err(WalError::Layout {
                dir: wal_dir.to_path_buf(),
                detail: format!("checkpoint {} is not a directory", path.display()),
            });
        }
        out.push((idx, path));
    }
    out.sort_unstable_by_key(|(i, _)| *i);
    Ok(out)
}

/// The most recent checkpoint in `wal_dir` and its index.
pub fn last_checkpoint(wal_dir: &Path) -> WalResult<Option<(PathBuf, u32)>> {
    Ok(list_checkpoints(wal_dir)?.pop().map(|(i, p)| (p, i)))
}

/// Deletes the checkpoints numbered below `below` (after a newer one has been written).
pub fn delete_checkpoints(wal_dir: &Path, below: u32) -> WalResult<()> {
    for (i, p) in list_checkpoints(wal_dir)? {
        if i >= below {
            break;
        }
        fs::remove_dir_all(&p).map_err(|e| WalError::io("delete checkpoint", &p, e))?;
    }
    Ok(())
}

/// Writes `checkpoint.<last segment>` from the last checkpoint (if any) and the WAL segments
/// `segments`, keeping the series for which `keep_series` holds, the samples at or after
/// `min_time` and the tombstones that reach `min_time`.
///
/// When a checkpoint exists, segments it already covers are skipped, and `segments` must
/// start no later than the segment after it (otherwise records would be missing). The caller
/// then deletes segments `..=end` ([`Wal::truncate`]) and older checkpoints
/// ([`delete_checkpoints`]). Damage in what is read is an error: repairing is not an option
/// here, since the head would not know which series records were lost.
pub fn checkpoint(
    wal_dir: &Path,
    segments: RangeInclusive<u32>,
    keep_series: impl Fn(u64) -> bool,
    min_time: i64,
    compress: bool,
) -> WalResult<CheckpointStats> {
    let (mut from, to) = segments.into_inner();
    let last = last_checkpoint(wal_dir)?;
    if let Some((_, idx)) = &last {
        let after = idx.saturating_add(1);
        if to <= *idx {
            // Rewriting the checkpoint being read would need a non-atomic replace.
            return Err(WalError::Invalid {
                dir: wal_dir.to_path_buf(),
                detail: format!(
                    "segments up to {to:08} are already in checkpoint {idx:08}; nothing to do"
                ),
            });
        }
        if from > after {
            return Err(WalError::Invalid {
                dir: wal_dir.to_path_buf(),
                detail: format!(
                    "checkpoint of segments {from}..={to} would leave a gap after the last \
                     checkpoint {idx:08}"
                ),
            });
        }
        from = after;
    }
    // Leftovers of an interrupted checkpoint.
    for ent in fs::read_dir(wal_dir).map_err(|e| WalError::io("list", wal_dir, e))? {
        let ent = ent.map_err(|e| WalError::io("list", wal_dir, e))?;
        let n = ent.file_name();
        let n = n.to_string_lossy();
        if n.starts_with(CHECKPOINT_PREFIX) && n.ends_with(TMP_SUFFIX) {
            let p = ent.path();
            fs::remove_dir_all(&p).map_err(|e| WalError::io("delete", &p, e))?;
        }
    }
    let mut reader =
        Reader::checkpoint_and_range(last.as_ref().map(|(p, _)| p.as_path()), wal_dir, from, to)?;
    let final_dir = checkpoint_dir(wal_dir, to);
    let tmp = PathBuf::from(format!("{}{TMP_SUFFIX}", final_dir.display()));
    let result = write_checkpoint(&mut reader, &tmp, keep_series, min_time, compress);
    let stats = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    if final_dir.exists() {
        fs::remove_dir_all(&final_dir)
            .map_err(|e| WalError::io("replace checkpoint", &final_dir, e))?;
    }
    fs::rename(&tmp, &final_dir).map_err(|e| WalError::io("rename checkpoint", &tmp, e))?;
    sync_dir(wal_dir)?;
    Ok(stats)
}

fn write_checkpoint(
    reader: &mut Reader,
    tmp: &Path,
    keep_series: impl Fn(u64) -> bool,
    min_time: i64,
    compress: bool,
) -> WalResult<CheckpointStats> {
    let mut st = CheckpointStats::default();
    let mut cp = Wal::open(
        tmp,
        WalOptions {
            compress,
            ..WalOptions::default()
        },
    )?;
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut batch_bytes = 0usize;
    while let Some(rec) = reader.next()? {
        let rec = record::decode(rec)
            .map_err(|e| reader.record_corruption(format!("undecodable {e}")))?;
        let kept = match rec {
            Record::Series(mut s) => {
                let n = s.len() as u64;
                s.retain(|s| keep_series(s.series_ref));
                st.total_series += n;
                st.dropped_series += n - s.len() as u64;
                Record::Series(s)
            }
            Record::Samples(mut s) => {
                let n = s.len() as u64;
                s.retain(|s| s.t >= min_time);
                st.total_samples += n;
                st.dropped_samples += n - s.len() as u64;
                Record::Samples(s)
            }
            Record::Tombstones(mut s) => {
                let n = s.len() as u64;
                s.retain(|s| s.max_time >= min_time);
                st.total_tombstones += n;
                st.dropped_tombstones += n - s.len() as u64;
                Record::Tombstones(s)
            }
            Record::Unknown(_) => {
                st.dropped_unknown_records += 1;
                continue;
            }
        };
        let empty = match &kept {
            Record::Series(s) => s.is_empty(),
            Record::Samples(s) => s.is_empty(),
            Record::Tombstones(s) => s.is_empty(),
            Record::Unknown(_) => true,
        };
        if empty {
            continue;
        }
        let mut buf = Vec::new();
        record::encode(&kept, &mut buf);
        batch_bytes += buf.len();
        batch.push(buf);
        // Written in batches of about 1 MiB, as Prometheus does.
        if batch_bytes > 1 << 20 {
            cp.log(&batch)?;
            batch.clear();
            batch_bytes = 0;
        }
    }
    if !batch.is_empty() {
        cp.log(&batch)?;
    }
    cp.close()?;
    sync_dir(tmp)?;
    Ok(st)
}
