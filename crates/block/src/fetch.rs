//! Listing the blocks of a bucket and reading their metas.
//!
//! A top-level directory whose name is a ULID is a block. Its `meta.json` is uploaded last, so
//! a directory without one is a *partial* upload (in progress, or abandoned by a crash) and is
//! not a block yet; a `meta.json` that does not parse makes the block *corrupted*. Neither
//! stops the listing: they are reported next to the good blocks, as Thanos' meta fetcher
//! does, so that one bad object never hides the rest of the bucket.

use std::collections::BTreeMap;
use std::str::FromStr;

use futures::StreamExt;
use strata_objstore::Bucket;
use strata_tsdb::BlockMeta;
use strata_tsdb::meta::META_FILENAME;
use ulid::Ulid;

use crate::markers::{self, DeletionMark};
use crate::{Result, block_key};

/// Default number of metas fetched at once (Thanos' `--block-meta-fetch-concurrency`).
pub const DEFAULT_FETCH_CONCURRENCY: usize = 32;

/// What a bucket holds.
#[derive(Debug, Default, Clone)]
pub struct FetchedMetas {
    /// Complete blocks, by ULID.
    pub metas: BTreeMap<Ulid, BlockMeta>,
    /// Block directories without `meta.json`.
    pub partial: Vec<Ulid>,
    /// Blocks whose `meta.json` could not be read, with the reason.
    pub corrupted: Vec<(Ulid, String)>,
}

/// The ULIDs of the block directories at the top of the bucket, sorted. Other entries (such as
/// Thanos' `debug/` directory) are ignored.
pub async fn list_block_ids(bucket: &Bucket) -> Result<Vec<Ulid>> {
    let mut ids: Vec<Ulid> = bucket
        .iter("", false)
        .await?
        .iter()
        .filter_map(|name| name.strip_suffix('/'))
        .filter_map(|name| Ulid::from_str(name).ok())
        .collect();
    ids.sort();
    Ok(ids)
}

/// Reads one block's meta. `Ok(None)` when the block has no `meta.json` (a partial upload).
pub async fn fetch_meta(bucket: &Bucket, id: Ulid) -> Result<Option<BlockMeta>> {
    let key = block_key(id, META_FILENAME);
    match bucket.get(&key).await {
        Ok(data) => {
            let name = format!("{}/{key}", bucket.name());
            Ok(Some(BlockMeta::parse(&name, &data)?))
        }
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Lists every block and fetches the metas, `concurrency` at a time. Bucket errors (the
/// bucket is unreachable) fail the whole fetch; a bad block never does.
pub async fn fetch_metas(bucket: &Bucket, concurrency: usize) -> Result<FetchedMetas> {
    let ids = list_block_ids(bucket).await?;
    let results: Vec<(Ulid, Result<Option<BlockMeta>>)> = futures::stream::iter(ids)
        .map(|id| async move { (id, fetch_meta(bucket, id).await) })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut out = FetchedMetas::default();
    for (id, r) in results {
        match r {
            Ok(Some(meta)) if meta.ulid != id => out.corrupted.push((
                id,
                format!(
                    "meta.json names block {}, not its directory {id}",
                    meta.ulid
                ),
            )),
            Ok(Some(meta)) => {
                out.metas.insert(id, meta);
            }
            Ok(None) => out.partial.push(id),
            Err(crate::Error::Block(e)) if e.is_corruption() => {
                out.corrupted.push((id, e.to_string()))
            }
            Err(e) => return Err(e),
        }
    }
    out.partial.sort();
    out.corrupted.sort_by_key(|a| a.0);
    Ok(out)
}

/// The deletion marks of the given blocks, `concurrency` at a time.
pub async fn fetch_deletion_marks(
    bucket: &Bucket,
    ids: impl IntoIterator<Item = Ulid>,
    concurrency: usize,
) -> Result<BTreeMap<Ulid, DeletionMark>> {
    let results: Vec<(Ulid, Result<Option<DeletionMark>>)> = futures::stream::iter(ids)
        .map(|id| async move { (id, markers::read_deletion_mark(bucket, id).await) })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut out = BTreeMap::new();
    for (id, r) in results {
        if let Some(mark) = r? {
            out.insert(id, mark);
        }
    }
    Ok(out)
}

/// The compaction stream a block belongs to: its resolution and external labels. Blocks of
/// one stream must not overlap in time. Thanos prints the key as `<resolution>@<labels hash>`;
/// here the labels are kept readable.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamKey {
    pub resolution: i64,
    pub labels: BTreeMap<String, String>,
}

impl StreamKey {
    pub fn of(meta: &BlockMeta) -> Self {
        StreamKey {
            resolution: meta.resolution(),
            labels: meta.external_labels(),
        }
    }
}

impl std::fmt::Display for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{{", self.resolution)?;
        for (i, (k, v)) in self.labels.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{k}={v:?}")?;
        }
        f.write_str("}")
    }
}
