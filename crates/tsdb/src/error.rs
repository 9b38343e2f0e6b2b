//! The crate's error type.
//!
//! Every variant names the file (or object) it concerns, and corruption errors also give the
//! byte offset and the structure being decoded, so that an operator reading a log line knows
//! which block to look at and where.

use std::io;
use std::path::{Path, PathBuf};

use crate::chunkenc::ChunkError;
use crate::encoding::DecodeError;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong reading or writing a block.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed on a file.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Bytes that do not follow the format: the file is damaged, truncated, or not what its
    /// name says.
    #[error(
        "corrupt {file} at offset {offset}: {what}: {detail} (the file is damaged or is not a Prometheus TSDB block file)"
    )]
    Corrupt {
        file: String,
        offset: u64,
        what: &'static str,
        detail: String,
    },

    /// A chunk's samples could not be decoded or encoded.
    #[error("{file}: chunk {chunk_ref}: {source}")]
    Chunk {
        file: String,
        chunk_ref: crate::chunks::ChunkRef,
        #[source]
        source: ChunkError,
    },

    /// `meta.json` could not be parsed or carries values we must refuse.
    #[error("invalid block meta {file}: {detail}")]
    Meta { file: String, detail: String },

    /// A format version we cannot read.
    #[error("{file}: {detail}")]
    Unsupported { file: String, detail: String },

    /// The block writer was used against its contract (series out of order, overlapping
    /// chunks, index too large, …). Nothing is left behind in the output directory.
    #[error("writing block {block}: {detail}")]
    Write { block: String, detail: String },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl AsRef<Path>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub(crate) fn corrupt(
        file: impl Into<String>,
        offset: u64,
        what: &'static str,
        detail: impl ToString,
    ) -> Self {
        Error::Corrupt {
            file: file.into(),
            offset,
            what,
            detail: detail.to_string(),
        }
    }

    pub(crate) fn decode(file: &str, offset: u64, what: &'static str, e: DecodeError) -> Self {
        Error::corrupt(file, offset, what, e)
    }

    /// True for errors caused by damaged or malformed data (as opposed to IO failures).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Error::Corrupt { .. } | Error::Chunk { .. } | Error::Meta { .. }
        )
    }
}
