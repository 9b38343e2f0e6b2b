//! The compactor: the only component that deletes data, so correctness and crash safety come
//! before speed.
//!
//! - [`planner`]: which blocks of a stream to compact next (Thanos' planner, a pure function).
//! - [`merge`]: merging blocks into one as a streaming k-way merge over series, passing
//!   chunks through as raw bytes and only decoding where chunks overlap (vertical
//!   deduplication) or tombstones apply.
//! - [`downsample`]: 5m and 1h aggregates in Thanos' `AggrChunk` encoding.
//! - [`compactor`]: one iteration over a bucket: sync, garbage collection, per-group
//!   compaction (halting a group loudly on overlaps), downsampling, retention, deletion.
//! - [`metrics`]: Thanos' `thanos_compact_*` metrics.
//!
//! **Architecture invariants:** blocks are only ever added whole (uploaded with `meta.json`
//! last) and removed by marking first and deleting after the delete delay; a crash at any
//! point leaves the bucket readable, and the next run converges (a block whose sources are
//! covered by another block is recognised as redundant). Memory grows with the number of
//! series being merged, never with the number of samples.

pub mod compactor;
pub mod downsample;
mod error;
pub mod merge;
pub mod metrics;
pub mod planner;
pub mod rewrite;

pub use error::{CompactError, Result};
