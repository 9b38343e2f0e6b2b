//! Moving blocks between local disk and a bucket.
//!
//! Upload order is the whole safety story: every `chunks/*` segment, then `index`, then
//! `meta.json` **last**. Readers only consider directories with a `meta.json`, so at every
//! moment the bucket holds either a complete block or a partial upload that nobody reads. An
//! interrupted upload is simply run again: files are overwritten, and the compactor removes
//! abandoned partial uploads.
//!
//! The local block is never modified: the Thanos section is written into the uploaded
//! `meta.json` only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use strata_objstore::Bucket;
use strata_tsdb::BlockMeta;
use strata_tsdb::chunks::list_segment_files;
use strata_tsdb::meta::{FileMeta, META_FILENAME, ObjectHash, ThanosMeta};
use ulid::Ulid;

use crate::{Error, Result, block_key};

/// Sources recorded in `thanos.source`.
pub const SOURCE_BUCKET_UPLOAD: &str = "bucket.upload";
pub const SOURCE_SIDECAR: &str = "sidecar";
/// `thanos.source` of the blocks a ruler writes and ships.
pub const SOURCE_RULER: &str = "ruler";

/// How to fill the Thanos section of an uploaded block.
#[derive(Debug, Clone, Default)]
pub struct UploadOptions {
    /// External labels identifying the block's stream (replica, cluster, …).
    pub labels: BTreeMap<String, String>,
    /// `thanos.source`, e.g. [`SOURCE_BUCKET_UPLOAD`].
    pub source: String,
    /// Refuse blocks without external labels, as Thanos' `block.Upload` does: a block without
    /// them cannot be told apart from another producer's.
    pub require_labels: bool,
    /// `--hash-func`: record each file's hash in `thanos.files`, so that a later download
    /// can keep a local copy that still matches instead of fetching it again.
    pub hash_func: HashFunc,
    /// Chunk segment files uploaded at once (`--shipper.upload-concurrency`,
    /// `--block-files-concurrency`); 0 and 1 upload them one after another. The index and
    /// `meta.json` still follow them, in that order.
    pub file_concurrency: usize,
}

/// The hash recorded for each block file (`--hash-func`; Thanos' `metadata.HashFunc`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HashFunc {
    /// No hashes (Thanos' default, `--hash-func=""`).
    #[default]
    None,
    /// SHA-256, written as lower-case hex under `hashFunc: "SHA256"`.
    Sha256,
}

/// The name Thanos writes in `hashFunc` for SHA-256.
const SHA256_NAME: &str = "SHA256";

/// `--hash-func`'s values: `""` and `SHA256`.
impl std::str::FromStr for HashFunc {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "" => Ok(HashFunc::None),
            SHA256_NAME => Ok(HashFunc::Sha256),
            _ => Err(format!(
                "unknown hash function {s:?} (possible values: \"\", \"SHA256\")"
            )),
        }
    }
}

impl std::fmt::Display for HashFunc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HashFunc::None => "",
            HashFunc::Sha256 => SHA256_NAME,
        })
    }
}

/// The SHA-256 of a file, as Thanos records it (lower-case hex), read in 1 MiB pieces.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io("read", path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// A block's files on disk, as uploaded: relative path and size.
fn block_files(dir: &Path, id: &str) -> Result<Vec<(String, PathBuf, u64)>> {
    let mut files = Vec::new();
    let chunks_dir = dir.join("chunks");
    if !chunks_dir.is_dir() {
        return Err(Error::Invalid {
            block: id.to_string(),
            detail: format!("{} has no chunks directory", dir.display()),
        });
    }
    for path in list_segment_files(&chunks_dir)? {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let size = std::fs::metadata(&path)
            .map_err(|e| Error::io("stat", &path, e))?
            .len();
        files.push((format!("chunks/{name}"), path, size));
    }
    let index = dir.join("index");
    let size = std::fs::metadata(&index)
        .map_err(|e| Error::io("stat", &index, e))?
        .len();
    files.push(("index".to_string(), index, size));
    Ok(files)
}

/// The meta as it will be uploaded: the local meta with the Thanos section filled in.
pub fn prepare_meta(dir: &Path, opts: &UploadOptions) -> Result<BlockMeta> {
    let mut meta = BlockMeta::read_from_dir(dir)?;
    let dir_name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if dir_name != meta.ulid.to_string() {
        return Err(Error::Invalid {
            block: meta.ulid.to_string(),
            detail: format!(
                "meta.json names block {} but the directory is {}",
                meta.ulid,
                dir.display()
            ),
        });
    }
    if opts.require_labels && opts.labels.is_empty() {
        return Err(Error::Invalid {
            block: meta.ulid.to_string(),
            detail: "no external labels given: blocks need external labels (e.g. \
                     --label 'cluster=\"eu1\"') so that blocks of different sources stay apart"
                .into(),
        });
    }
    let files = block_files(dir, &meta.ulid.to_string())?;
    let mut thanos: ThanosMeta = meta.thanos.take().unwrap_or_default();
    thanos.labels = opts.labels.clone();
    thanos.source = opts.source.clone();
    thanos.segment_files = files
        .iter()
        .filter_map(|(rel, _, _)| rel.strip_prefix("chunks/").map(str::to_string))
        .collect();
    let mut file_metas: Vec<FileMeta> = files
        .iter()
        .map(|(rel, path, size)| {
            let hash = match opts.hash_func {
                HashFunc::None => None,
                HashFunc::Sha256 => Some(ObjectHash {
                    func: SHA256_NAME.into(),
                    value: sha256_file(path)?,
                }),
            };
            Ok(FileMeta {
                rel_path: rel.clone(),
                size_bytes: *size as i64,
                hash,
            })
        })
        .collect::<Result<_>>()?;
    file_metas.push(FileMeta {
        rel_path: META_FILENAME.into(),
        size_bytes: 0,
        hash: None,
    });
    file_metas.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    thanos.files = file_metas;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    thanos.upload_time = Some(strata_model::timestamp::format_rfc3339(now_ms));
    meta.thanos = Some(thanos);
    Ok(meta)
}

/// Moves the files of a previous download in `dst` whose hash matches the one the bucket's
/// `meta.json` records into `tmp`; returns their relative paths. A file without a recorded
/// hash, with another hash function, missing or different is left to be downloaded.
async fn keep_matching_files(
    bucket: &Bucket,
    id: Ulid,
    dst: &Path,
    tmp: &Path,
) -> Result<Vec<String>> {
    let raw = bucket.get(&block_key(id, META_FILENAME)).await?;
    let Ok(meta) = BlockMeta::parse(META_FILENAME, &raw) else {
        // An unreadable meta is the download's to report, not this shortcut's.
        return Ok(Vec::new());
    };
    let wanted: Vec<(String, String)> = meta
        .thanos
        .iter()
        .flat_map(|t| &t.files)
        .filter(|f| f.rel_path != META_FILENAME && !f.rel_path.contains(".."))
        .filter_map(|f| {
            let h = f.hash.as_ref()?;
            (h.func == SHA256_NAME).then(|| (f.rel_path.clone(), h.value.clone()))
        })
        .collect();
    let (dst, tmp) = (dst.to_path_buf(), tmp.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let mut kept = Vec::new();
        for (rel, want) in wanted {
            let local = dst.join(&rel);
            if !local.is_file() || sha256_file(&local).ok().as_deref() != Some(want.as_str()) {
                continue;
            }
            let to = tmp.join(&rel);
            if std::fs::rename(&local, &to).is_ok() {
                kept.push(rel);
            }
        }
        kept
    })
    .await
    .map_err(|e| Error::Invalid {
        block: id.to_string(),
        detail: format!("checking the hashes of a previous download: {e}"),
    })
}

/// Uploads a local block directory: chunks, then index, then `meta.json` last. Returns the
/// meta as uploaded.
pub async fn upload_block(bucket: &Bucket, dir: &Path, opts: &UploadOptions) -> Result<BlockMeta> {
    let meta = if opts.hash_func == HashFunc::None {
        prepare_meta(dir, opts)?
    } else {
        // Hashing reads every file of the block: off the async workers.
        let (d, o) = (dir.to_path_buf(), opts.clone());
        tokio::task::spawn_blocking(move || prepare_meta(&d, &o))
            .await
            .map_err(|e| Error::Invalid {
                block: dir.display().to_string(),
                detail: format!("hashing the block's files: {e}"),
            })??
    };
    let id = meta.ulid;
    // Segments first (several at once if asked), then the index, then meta.json.
    let files = block_files(dir, &id.to_string())?;
    let (segments, rest): (Vec<_>, Vec<_>) = files
        .into_iter()
        .partition(|(rel, _, _)| rel.starts_with("chunks/"));
    futures::stream::iter(segments)
        .map(|(rel, path, _)| async move { bucket.upload_file(&block_key(id, &rel), &path).await })
        .buffer_unordered(opts.file_concurrency.max(1))
        .try_collect::<Vec<_>>()
        .await?;
    for (rel, path, _) in rest {
        bucket.upload_file(&block_key(id, &rel), &path).await?;
    }
    bucket
        .upload(&block_key(id, META_FILENAME), Bytes::from(meta.to_json()))
        .await?;
    tracing::info!(block = %id, bucket = bucket.name(), "uploaded block");
    Ok(meta)
}

/// Downloads block `id` into `<parent>/<id>` (replacing a previous download) and returns that
/// directory. Files go to `<id>.tmp-download` first, so a failed download never leaves
/// something that looks like a complete block. A file of a previous download that the
/// bucket's `meta.json` lists with a hash (`--hash-func`), and that still has that hash, is
/// kept instead of fetched again, as Thanos' `block.Download` does.
pub async fn download_block(bucket: &Bucket, id: Ulid, parent: &Path) -> Result<PathBuf> {
    download_block_concurrently(bucket, id, parent, 1).await
}

/// [`download_block`] with up to `concurrency` files fetched at once
/// (`--block-files-concurrency`).
pub async fn download_block_concurrently(
    bucket: &Bucket,
    id: Ulid,
    parent: &Path,
    concurrency: usize,
) -> Result<PathBuf> {
    let dst = parent.join(id.to_string());
    let tmp = parent.join(format!("{id}.tmp-download"));
    let io = |op, p: &Path, e| Error::io(op, p, e);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io("remove", &tmp, e))?;
    }
    std::fs::create_dir_all(tmp.join("chunks")).map_err(|e| io("create directory", &tmp, e))?;
    let result = download_into(bucket, id, &dst, &tmp, concurrency).await;
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if dst.exists() {
        std::fs::remove_dir_all(&dst).map_err(|e| io("remove", &dst, e))?;
    }
    std::fs::rename(&tmp, &dst).map_err(|e| io("rename", &tmp, e))?;
    Ok(dst)
}

async fn download_into(
    bucket: &Bucket,
    id: Ulid,
    dst: &Path,
    tmp: &Path,
    concurrency: usize,
) -> Result<()> {
    let prefix = format!("{id}/");
    let names = bucket.iter(&id.to_string(), true).await?;
    let kept = if dst.is_dir() && names.iter().any(|n| n == &block_key(id, META_FILENAME)) {
        keep_matching_files(bucket, id, dst, tmp).await?
    } else {
        Vec::new()
    };
    let mut got_meta = false;
    let mut todo: Vec<(String, PathBuf)> = Vec::new();
    for name in &names {
        let Some(rel) = name.strip_prefix(&prefix) else {
            continue;
        };
        let wanted = rel == META_FILENAME
            || rel == "index"
            || rel == strata_tsdb::tombstones::TOMBSTONES_FILENAME
            || rel
                .strip_prefix("chunks/")
                .is_some_and(|s| s.parse::<u64>().is_ok());
        if !wanted {
            continue;
        }
        got_meta |= rel == META_FILENAME;
        if kept.iter().any(|k| k == rel) {
            continue;
        }
        todo.push((name.clone(), tmp.join(rel)));
    }
    if !got_meta {
        return Err(Error::Invalid {
            block: id.to_string(),
            detail: format!(
                "no meta.json in bucket {}: not a block, or a partial upload",
                bucket.name()
            ),
        });
    }
    futures::stream::iter(todo)
        .map(|(name, to)| async move { bucket.download_file(&name, &to).await })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}
