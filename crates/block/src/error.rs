use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong moving or judging a block.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bucket refused or failed an operation.
    #[error(transparent)]
    Bucket(#[from] strata_objstore::Error),

    /// A block's files could not be read or written.
    #[error(transparent)]
    Block(#[from] strata_tsdb::Error),

    /// A local file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A block that cannot be used as asked (wrong directory name, no external labels, …).
    #[error("block {block}: {detail}")]
    Invalid { block: String, detail: String },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
