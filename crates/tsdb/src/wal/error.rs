//! The WAL's error type.
//!
//! Every message names the directory or file and, for damaged data, the byte offset, and says
//! what the operator (or the calling code) can do about it: a torn tail is the normal result of
//! a crash and is repaired by truncation; damage anywhere else loses data and needs a decision.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::segment_path;

/// Result alias for the WAL.
pub type WalResult<T> = std::result::Result<T, WalError>;

/// Where a WAL (or checkpoint) stops being readable.
///
/// `offset` is where the last good record of `segment` ends: everything before it is intact,
/// and [`super::repair`] truncates the segment there. `at` is where the damage itself was seen
/// (at or after `offset`), for the log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// The directory holding the segment: the WAL directory, or a `checkpoint.NNNNNNNN`
    /// directory inside it.
    pub dir: PathBuf,
    /// The segment's index (its file name).
    pub segment: u32,
    /// Byte offset in the segment where the last intact record ends.
    pub offset: u64,
    /// Byte offset in the segment where the damage was found.
    pub at: u64,
    /// What is wrong there.
    pub reason: String,
    /// Whether the segment belongs to a checkpoint (never repairable: a checkpoint is written
    /// whole and renamed into place, so damage in it is not a torn write).
    pub in_checkpoint: bool,
}

impl Corruption {
    /// The damaged segment file.
    pub fn path(&self) -> PathBuf {
        segment_path(&self.dir, self.segment)
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at offset {}: {} (last intact record ends at offset {})",
            self.path().display(),
            self.at,
            self.reason,
            self.offset
        )
    }
}

/// What went wrong reading or writing the write-ahead log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// An operating-system call failed on a WAL file or directory.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The last segment ends in an unfinished or damaged record: a crash interrupted a write.
    /// Expected after a crash; [`super::repair`] (or [`super::Wal::repair`]) fixes it and only
    /// the unfinished record is lost.
    #[error(
        "WAL tail is torn: {0}; this is what a crash mid-write leaves behind: repair the WAL, \
         which truncates the last segment after its last intact record"
    )]
    TornTail(Corruption),

    /// Damage before the last segment, or in a checkpoint: the records after it are lost
    /// unless the directory is restored from a copy.
    #[error(
        "WAL is corrupt: {0}; the records after this point cannot be read: restore the WAL \
         directory from a backup, or repair it, which deletes every record after the damage"
    )]
    Corrupt(Corruption),

    /// The directory does not hold a well-formed WAL (gaps in the segment numbers, a
    /// checkpoint that is not a directory, …).
    #[error(
        "WAL directory {}: {detail} (the directory was modified by hand or by another program)",
        dir.display()
    )]
    Layout { dir: PathBuf, detail: String },

    /// Invalid options or a request the WAL cannot honour.
    #[error("WAL {}: {detail}", dir.display())]
    Invalid { dir: PathBuf, detail: String },

    /// A previous write failed half-way, so the active segment may end in a partial record.
    #[error(
        "WAL {}: an earlier write to segment {segment} failed; reopen the WAL (its replay \
         repairs the torn tail) before logging more records",
        dir.display()
    )]
    Poisoned { dir: PathBuf, segment: u32 },
}

impl WalError {
    pub(crate) fn io(op: &'static str, path: impl AsRef<Path>, source: io::Error) -> Self {
        WalError::Io {
            op,
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// The position of damaged data, for [`super::repair`]; `None` for other errors.
    pub fn corruption(&self) -> Option<&Corruption> {
        match self {
            WalError::TornTail(c) | WalError::Corrupt(c) => Some(c),
            _ => None,
        }
    }

    /// True for a torn tail, which is safe to repair automatically.
    pub fn is_torn_tail(&self) -> bool {
        matches!(self, WalError::TornTail(_))
    }
}
