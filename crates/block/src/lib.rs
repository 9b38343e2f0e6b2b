//! Blocks in a bucket.
//!
//! A block in object storage is the directory layout Prometheus writes, under its ULID:
//! `<ULID>/meta.json`, `<ULID>/index`, `<ULID>/chunks/000001…`, plus Thanos' marker files
//! (`deletion-mark.json`, `no-compact-mark.json`, `no-downsample-mark.json`). This crate owns
//! the rules for moving blocks in and out of a bucket and for judging them:
//!
//! - [`fetch`]: list block directories and read their metas, telling complete blocks from
//!   partial uploads (no `meta.json` yet) and corrupted ones.
//! - [`markers`]: the marker files.
//! - [`transfer`]: upload a local block in the one safe order — chunks, then index, then
//!   `meta.json` **last** — so that a reader never sees a block without all its files; and
//!   download one.
//! - [`verify`]: check blocks (CRCs, series order, chunk references, chunk order and ranges,
//!   stats) and the bucket (overlapping blocks of one stream, duplicated compactions).
//!
//! **Architecture invariant:** the byte formats live in `strata-tsdb` and the storage
//! backends in `strata-objstore`; this crate only combines them. It never deletes anything:
//! deletion belongs to the compactor.

mod error;
pub mod fetch;
pub mod markers;
pub mod relabel;
pub mod transfer;
pub mod verify;

pub use error::{Error, Result};

/// Key of a file inside a block directory: `<ULID>/<rel>`.
pub fn block_key(id: ulid::Ulid, rel: &str) -> String {
    format!("{id}/{rel}")
}
