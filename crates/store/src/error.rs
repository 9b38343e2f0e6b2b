//! The store gateway's error type, and how each kind maps onto a gRPC status.

use std::path::{Path, PathBuf};

use ulid::Ulid;

/// What went wrong serving a request or syncing blocks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The request is malformed (bad regex, unknown enum value, bad hints).
    #[error("invalid request: {0}")]
    InvalidArgument(String),

    /// A per-request limit was hit. The message names the limit and its flag.
    #[error("{0}")]
    ResourceExhausted(String),

    /// Object storage failed while reading a block.
    #[error("reading block {block} from object storage: {source}")]
    Bucket {
        block: Ulid,
        #[source]
        source: strata_objstore::Error,
    },

    /// Listing the bucket or reading metas failed.
    #[error("syncing blocks from object storage: {0}")]
    Sync(#[from] strata_block::Error),

    /// A block's data does not decode. The block is skipped; its ULID is in the message.
    #[error("block {block} is corrupt: {detail}")]
    CorruptBlock { block: Ulid, detail: String },

    /// A local index-header file is damaged; it is rebuilt from the bucket.
    #[error("index-header {} is corrupt: {detail} (it will be rebuilt from the bucket)", path.display())]
    CorruptIndexHeader { path: PathBuf, detail: String },

    /// A local file operation failed (the data directory).
    #[error("{op} {}: {source} (check --data-dir: free space and permissions)", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A configuration value cannot be used.
    #[error("{0}")]
    Config(String),

    /// The request was cancelled or the server is shutting down.
    #[error("request cancelled")]
    Cancelled,
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: impl AsRef<Path>, source: std::io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// The gRPC status a client sees. Object storage outages are `Unavailable` so a querier
    /// treats them as a failed store (a partial-response warning), not as a bad query.
    pub fn to_status(&self) -> tonic::Status {
        let msg = self.to_string();
        match self {
            StoreError::InvalidArgument(_) => tonic::Status::invalid_argument(msg),
            StoreError::ResourceExhausted(_) => tonic::Status::resource_exhausted(msg),
            StoreError::Bucket { .. } | StoreError::Sync(_) => tonic::Status::unavailable(msg),
            StoreError::Cancelled => tonic::Status::cancelled(msg),
            StoreError::CorruptBlock { .. }
            | StoreError::CorruptIndexHeader { .. }
            | StoreError::Io { .. }
            | StoreError::Config(_) => tonic::Status::internal(msg),
        }
    }
}

impl From<strata_storepb::ConvertError> for StoreError {
    fn from(e: strata_storepb::ConvertError) -> Self {
        StoreError::InvalidArgument(e.to_string())
    }
}

/// Runs blocking work (index-header file reads) on tokio's blocking pool, at most one task per
/// CPU at a time. The work is CPU and page-cache bound, so more parallelism only adds threads:
/// unbounded, concurrent queries over many blocks spawned a blocking thread per block (measured:
/// ~100 threads and +10 MiB RSS for 4 clients).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StoreError> {
    use std::sync::OnceLock;
    static GATE: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    let gate = GATE.get_or_init(|| {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(cpus.max(2))
    });
    let _permit = gate.acquire().await.map_err(|_| StoreError::Cancelled)?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Io {
            op: "run blocking index-header work",
            path: std::path::PathBuf::new(),
            source: std::io::Error::other(e.to_string()),
        })
}
