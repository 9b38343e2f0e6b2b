//! Thanos' marker files, stored next to a block's files (`pkg/block/metadata/markers.go`).
//!
//! Times are Unix **seconds**; `version` must be 1, as Thanos refuses anything else.

use serde::{Deserialize, Serialize};
use strata_objstore::Bucket;
use ulid::Ulid;

use crate::{Error, Result, block_key};

pub const DELETION_MARK_FILENAME: &str = "deletion-mark.json";
pub const NO_COMPACT_MARK_FILENAME: &str = "no-compact-mark.json";
pub const NO_DOWNSAMPLE_MARK_FILENAME: &str = "no-downsample-mark.json";

fn is_empty(s: &str) -> bool {
    s.is_empty()
}

/// `deletion-mark.json`: the block is to be deleted after the compactor's `--delete-delay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionMark {
    pub id: Ulid,
    pub version: u32,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub details: String,
    /// Unix seconds.
    pub deletion_time: i64,
}

/// `no-compact-mark.json`: the compactor must leave the block alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoCompactMark {
    pub id: Ulid,
    pub version: u32,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub details: String,
    /// Unix seconds.
    pub no_compact_time: i64,
    /// `manual`, `index-size-exceeding`, `block-index-out-of-order-chunk`,
    /// `downsample-vertical-compaction`.
    pub reason: String,
}

/// `no-downsample-mark.json`: the compactor must not downsample the block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoDownsampleMark {
    pub id: Ulid,
    pub version: u32,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub details: String,
    /// Unix seconds.
    pub no_downsample_time: i64,
    pub reason: String,
}

/// Reads a block's deletion mark; `None` when the block is not marked. A mark that does not
/// parse, or has a version other than 1, is an error naming the object.
pub async fn read_deletion_mark(bucket: &Bucket, id: Ulid) -> Result<Option<DeletionMark>> {
    let key = block_key(id, DELETION_MARK_FILENAME);
    let data = match bucket.get(&key).await {
        Ok(d) => d,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mark: DeletionMark = serde_json::from_slice(&data).map_err(|e| Error::Invalid {
        block: id.to_string(),
        detail: format!("{}/{key}: unreadable deletion mark: {e}", bucket.name()),
    })?;
    if mark.version != 1 {
        return Err(Error::Invalid {
            block: id.to_string(),
            detail: format!("{key}: unexpected deletion mark version {}", mark.version),
        });
    }
    Ok(Some(mark))
}

/// Reads a marker of type `T` from `<id>/<file>`; `None` when absent. A marker that does not
/// parse, or has a version other than 1, is an error naming the object.
async fn read_marker<T: serde::de::DeserializeOwned>(
    bucket: &Bucket,
    id: Ulid,
    file: &str,
    version: impl Fn(&T) -> u32,
) -> Result<Option<T>> {
    let key = block_key(id, file);
    let data = match bucket.get(&key).await {
        Ok(d) => d,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mark: T = serde_json::from_slice(&data).map_err(|e| Error::Invalid {
        block: id.to_string(),
        detail: format!("{}/{key}: unreadable marker: {e}", bucket.name()),
    })?;
    if version(&mark) != 1 {
        return Err(Error::Invalid {
            block: id.to_string(),
            detail: format!("{key}: unexpected marker version {}", version(&mark)),
        });
    }
    Ok(Some(mark))
}

/// Reads a block's no-compact mark; `None` when the block is not marked.
pub async fn read_no_compact_mark(bucket: &Bucket, id: Ulid) -> Result<Option<NoCompactMark>> {
    read_marker(bucket, id, NO_COMPACT_MARK_FILENAME, |m: &NoCompactMark| {
        m.version
    })
    .await
}

/// Reads a block's no-downsample mark; `None` when the block is not marked.
pub async fn read_no_downsample_mark(
    bucket: &Bucket,
    id: Ulid,
) -> Result<Option<NoDownsampleMark>> {
    read_marker(
        bucket,
        id,
        NO_DOWNSAMPLE_MARK_FILENAME,
        |m: &NoDownsampleMark| m.version,
    )
    .await
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Marks a block for deletion (unless it already is): the compactor deletes it once the
/// mark is older than its `--delete-delay`. Returns whether a new mark was written.
pub async fn mark_for_deletion(bucket: &Bucket, id: Ulid, details: &str) -> Result<bool> {
    Ok(write_deletion_mark(bucket, id, details).await?.is_some())
}

/// [`mark_for_deletion`], returning the mark as written (`None` if the block already had
/// one), so a caller keeping marks in memory holds exactly what the bucket holds.
pub async fn write_deletion_mark(
    bucket: &Bucket,
    id: Ulid,
    details: &str,
) -> Result<Option<DeletionMark>> {
    if read_deletion_mark(bucket, id).await?.is_some() {
        return Ok(None);
    }
    let mark = DeletionMark {
        id,
        version: 1,
        details: details.into(),
        deletion_time: now_secs(),
    };
    let data = serde_json::to_vec_pretty(&mark).expect("a marker always serializes");
    bucket
        .upload(&block_key(id, DELETION_MARK_FILENAME), data.into())
        .await?;
    Ok(Some(mark))
}

/// Marks a block so that the compactor leaves it alone. Returns whether a new mark was
/// written.
pub async fn mark_no_compact(
    bucket: &Bucket,
    id: Ulid,
    reason: &str,
    details: &str,
) -> Result<bool> {
    if read_no_compact_mark(bucket, id).await?.is_some() {
        return Ok(false);
    }
    let mark = NoCompactMark {
        id,
        version: 1,
        details: details.into(),
        no_compact_time: now_secs(),
        reason: reason.into(),
    };
    let data = serde_json::to_vec_pretty(&mark).expect("a marker always serializes");
    bucket
        .upload(&block_key(id, NO_COMPACT_MARK_FILENAME), data.into())
        .await?;
    Ok(true)
}

/// Marks a block so that the compactor does not downsample it. Returns whether a new mark was
/// written.
pub async fn mark_no_downsample(
    bucket: &Bucket,
    id: Ulid,
    reason: &str,
    details: &str,
) -> Result<bool> {
    if read_no_downsample_mark(bucket, id).await?.is_some() {
        return Ok(false);
    }
    let mark = NoDownsampleMark {
        id,
        version: 1,
        details: details.into(),
        no_downsample_time: now_secs(),
        reason: reason.into(),
    };
    let data = serde_json::to_vec_pretty(&mark).expect("a marker always serializes");
    bucket
        .upload(&block_key(id, NO_DOWNSAMPLE_MARK_FILENAME), data.into())
        .await?;
    Ok(true)
}

/// Removes marker `filename` (one of the `*_MARK_FILENAME`s) from a block. Returns whether
/// there was one.
pub async fn remove_marker(bucket: &Bucket, id: Ulid, filename: &str) -> Result<bool> {
    let key = block_key(id, filename);
    if !bucket.exists(&key).await? {
        return Ok(false);
    }
    bucket.delete(&key).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_json_matches_thanos() {
        let m: DeletionMark = serde_json::from_str(
            r#"{"id":"01DRBP4RNVZ94135ZA6B10EMRR","version":1,"deletion_time":1600000000}"#,
        )
        .unwrap();
        assert_eq!(m.deletion_time, 1_600_000_000);
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"id":"01DRBP4RNVZ94135ZA6B10EMRR","version":1,"deletion_time":1600000000}"#
        );
        let n = NoCompactMark {
            id: m.id,
            version: 1,
            details: "why".into(),
            no_compact_time: 5,
            reason: "manual".into(),
        };
        let s = serde_json::to_string(&n).unwrap();
        assert!(s.contains(r#""reason":"manual""#) && s.contains(r#""details":"why""#));
        assert_eq!(serde_json::from_str::<NoCompactMark>(&s).unwrap(), n);
    }
}
