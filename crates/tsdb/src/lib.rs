//! The Prometheus TSDB block format, read and written byte-compatibly with Prometheus and
//! Thanos.
//!
//! A block is a directory `<ULID>/` holding `meta.json` ([`meta`]), an `index` ([`index`]),
//! chunk segment files `chunks/000001…` ([`chunks`], encodings in [`chunkenc`]) and optional
//! `tombstones` ([`tombstones`]). [`block::Block`] opens one; [`block::BlockWriter`] writes one
//! as a stream.
//!
//! [`wal`] is the head's write-ahead log (`<data-dir>/wal`): segments, records, checkpoints and
//! repair, in Prometheus' format.
//!
//! **Architecture invariants.**
//! - This crate knows nothing about object storage, gRPC or PromQL. Its readers work on byte
//!   buffers ([`bytes::Bytes`], memory-mapped for local files), so the store gateway can feed
//!   them ranges fetched from a bucket.
//! - Every decoder treats its input as untrusted: malformed bytes produce an [`Error`] that
//!   names the file, offset and structure, never a panic. Fuzz targets in `fuzz/` hold this.
//! - Everything written is byte-compatible with Prometheus: `promtool tsdb analyze|dump` read
//!   our blocks, and an XOR chunk we encode is bit-identical to the one Prometheus encodes.
//! - Writing is streaming: memory grows with the number of series, not samples.

pub mod block;
pub mod chunkenc;
pub mod chunks;
pub mod encoding;
mod error;
pub mod index;
pub mod meta;
pub mod tombstones;
pub mod wal;

use std::fs::File;
use std::io::Write;
use std::path::Path;

use bytes::Bytes;

pub use block::{Block, BlockWriter, BlockWriterOptions, SeriesSamples};
pub use chunkenc::{ChunkError, Encoding, RawChunk, XorEncoder, XorIterator};
pub use chunks::{ChunkMeta, ChunkReader, ChunkRef};
pub use error::{Error, Result};
pub use index::IndexReader;
pub use meta::{BlockMeta, ThanosMeta};

/// Maps a file read-only. Block files are immutable once written (Prometheus and Thanos never
/// modify them in place), which is what makes mapping them sound.
pub fn mmap_file(path: &Path) -> Result<Bytes> {
    let f = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let len = f.metadata().map_err(|e| Error::io("stat", path, e))?.len();
    if len == 0 {
        return Ok(Bytes::new());
    }
    // SAFETY: the mapping is read-only and block files are never modified after they are
    // written; a concurrent truncation by another process is outside the contract (the same
    // contract Prometheus' mmap-based readers rely on).
    #[allow(unsafe_code)]
    let map = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| Error::io("mmap", path, e))?;
    Ok(Bytes::from_owner(map))
}

/// A memory-mapped block file whose resident pages can be handed back to the kernel.
///
/// Readers that stream through a whole block (compaction, downsampling) would otherwise keep
/// every page they touched resident until memory pressure evicts it, and the process' RSS
/// would grow with the size of the block rather than with what it holds in memory. Releasing
/// the pages is free of side effects: the mapping is read-only and the file never changes, so
/// a later access simply faults the page back in from the page cache.
#[derive(Debug, Clone)]
pub(crate) struct Mapped {
    data: Bytes,
}

impl Mapped {
    pub(crate) fn open(path: &Path) -> Result<Mapped> {
        Ok(Mapped {
            data: mmap_file(path)?,
        })
    }

    pub(crate) fn bytes(&self) -> Bytes {
        self.data.clone()
    }

    /// Drops this mapping's resident pages (`MADV_DONTNEED`). Only ever called on memory from
    /// [`mmap_file`]: on anonymous memory the same call would zero it.
    pub(crate) fn release(&self) {
        if self.data.is_empty() {
            return;
        }
        // mmap returns page-aligned addresses and `data` spans the whole mapping.
        let ptr = self.data.as_ptr() as *mut libc::c_void;
        // SAFETY: `ptr..ptr+len` is exactly a live, read-only, file-backed mapping owned by
        // `data` (created by `mmap_file`); MADV_DONTNEED on such a mapping only discards
        // resident copies of file pages, which are re-read from the file on the next access.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::madvise(ptr, self.data.len(), libc::MADV_DONTNEED) };
        debug_assert_eq!(rc, 0, "madvise(MADV_DONTNEED) failed");
    }
}

/// Writes a file and fsyncs it.
pub(crate) fn write_file_synced(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(|e| Error::io("create", path, e))?;
    f.write_all(data).map_err(|e| Error::io("write", path, e))?;
    f.sync_all().map_err(|e| Error::io("fsync", path, e))
}

/// Fsyncs a directory so that renames and new entries in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    let f = File::open(dir).map_err(|e| Error::io("open directory", dir, e))?;
    f.sync_all()
        .map_err(|e| Error::io("fsync directory", dir, e))
}
