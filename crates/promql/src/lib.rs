//! Strata's PromQL engine.
//!
//! This crate owns PromQL evaluation with the semantics of Prometheus 3.x (what current Thanos
//! ships): selectors with lookback delta, staleness markers, left-open range windows, `offset`
//! and `@`, subqueries, binary operators with vector matching, every aggregation and the
//! float functions. Syntax comes from the `promql-parser` crate; this crate never parses
//! PromQL text itself (see [`engine::Engine::parse`] for the few checks it adds).
//!
//! It evaluates over the [`Storage`] trait: select series by matchers and a time range (with
//! [`SelectHints`] saying which function, range and grouping asked for them), get them back
//! sorted by labels with their samples as encoded chunks or decoded arrays. The same engine
//! runs over [`MemStorage`] (tests, the conformance runner), [`BlockStorage`] (local TSDB
//! blocks: benchmarks and `strata query --debug.blocks-dir`) and, later, Store API clients.
//!
//! How it is fast, and why the speed does not change results:
//! - Every node is evaluated once over all steps (never step by step through the tree), so
//!   labels, group mappings and vector-matching signatures are computed once per series, not
//!   once per step.
//! - Each series' chunks are decoded once, in bulk, into timestamp and value arrays; range
//!   functions slide two monotone indices over them (O(samples + steps)).
//! - Series are processed in parallel (rayon), but every floating-point reduction (`sum`,
//!   `avg`, ...) folds its inputs in Prometheus' order, with the same Kahan-Neumaier steps, so
//!   results are the same as Prometheus', bit for bit where Prometheus itself is
//!   deterministic.
//!
//! **Invariants:** no async and no IO of its own (storage does the IO); a bad query is a typed
//! [`Error`], never a panic; native histograms are refused with a clear error, never
//! mis-evaluated as floats.

// Per-step loops index several parallel arrays (values, presence, parameters) with the same
// step index; iterator chains would hide that correspondence rather than clarify it.
#![allow(clippy::needless_range_loop)]

mod annotations;
mod blocks;
mod early;
pub mod engine;
mod error;
mod escapes;
mod eval;
pub mod format;
mod fxhash;
mod kahan;
pub mod storage;
pub mod value;

pub use annotations::Annotations;
pub use blocks::BlockStorage;
pub use engine::{Engine, EngineOptions, QueryContext, QueryOutput};
pub use error::{Error, StorageError, StorageErrorKind};
pub use storage::{
    ChunkData, MemStorage, SelectBatches, SelectHints, SelectResult, SeriesData, Storage,
    StoredSeries,
};
pub use value::{Sample, Series, Value};

/// The NaN that marks a series as stale (Prometheus' `value.StaleNaN`).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Whether `v` is the staleness marker (compared by bits: any other NaN is a value).
#[inline]
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}
