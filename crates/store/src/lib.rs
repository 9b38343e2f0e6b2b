//! The store gateway: a Thanos Store API over every block of a bucket, read without
//! downloading blocks.
//!
//! This crate owns everything between a bucket of TSDB blocks and the `thanos.Store` /
//! `thanos.info.Info` gRPC services that `strata store` serves:
//!
//! - [`sync`]: block discovery with Thanos' filters (time partition, label sharding through
//!   [`strata_block::relabel`], consistency delay, deletion marks, deduplication) and
//!   `thanos_blocks_meta_synced{state}`.
//! - [`indexheader`]: the per-block index-header (Thanos' binary format v1), built from range
//!   reads of the index and kept in `--data-dir`; its reader keeps only sampled offsets in
//!   memory and reads the file with `pread`.
//! - [`block`]: one block: lazy header loading and idle release, and range reads of postings,
//!   series entries and chunks (merged, CRC-checked, with an exact re-read when an estimate
//!   falls short).
//! - [`cache`]: the byte-bounded LRU index cache for postings and series entries.
//! - `pool`: the chunk pool, the byte budget for chunk data in flight over all requests.
//! - [`store`]: [`BucketStore`]: block sets per external labels and resolution, Series with
//!   per-block selection, a k-way merge and chunk fetching in batches while streaming,
//!   LabelNames, LabelValues, Info, limits.
//! - [`grpc`]: the tonic services and server (with Thanos' TLS flags' semantics).
//! - [`testing`]: the Store API acceptance suite, usable against any Store API server.
//! - [`metrics`]: Thanos' metric names.
//!
//! **Architecture invariants.**
//! - Memory is bounded by configuration, not by block sizes: per block only the sampled
//!   index-header (names, every 32nd value and symbol); per request a fixed number of decoded
//!   series over all its blocks and one batch of output series; chunk data over all requests
//!   by `--chunk-pool-size` (`pool`: enforced, not estimated); across requests
//!   the index cache's byte budget and `--store.grpc.series-max-concurrency`.
//! - Chunks go out exactly as stored (raw bytes, never re-encoded); external labels are
//!   attached to every series and output is sorted by the final labels.
//! - Matcher semantics are those of [`strata_tsdb::index::postings_for_matchers`], shared with
//!   local block reads, so the gateway and a local read cannot disagree.
//! - Bad input is an error, never a panic: a corrupt block becomes a warning (or an error
//!   under the ABORT strategy) naming its ULID while other blocks keep serving; an object
//!   storage failure is `Unavailable`; a limit is `ResourceExhausted` naming its flag.

pub mod block;
pub mod cache;
pub mod chunk_cache;
pub mod error;
pub mod grpc;
pub mod indexheader;
pub mod matchers;
pub mod memcached;
pub mod metrics;
mod packed;
mod pool;
mod query;
pub mod redis;
pub mod remote_cache;
mod resolved;
pub mod store;
pub mod sync;
pub mod testing;

pub use error::StoreError;
pub use pool::ChunkPoolStats;
pub use store::{BucketStore, Limits, StoreConfig};
