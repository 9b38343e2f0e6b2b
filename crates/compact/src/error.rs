use ulid::Ulid;

/// Result alias for this crate.
pub type Result<T, E = CompactError> = std::result::Result<T, E>;

/// What stopped a compaction, a downsampling or a bucket operation of the compactor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompactError {
    /// An input block could not be read.
    #[error("input block {block}: {source}")]
    Input {
        block: Ulid,
        #[source]
        source: strata_tsdb::Error,
    },

    /// Writing the output block failed.
    #[error(transparent)]
    Output(#[from] strata_tsdb::Error),

    /// A chunk could not be decoded or encoded.
    #[error("series {series}: {source}")]
    Chunk {
        series: String,
        #[source]
        source: strata_tsdb::ChunkError,
    },

    /// Chunks that cannot be merged (e.g. overlapping downsampled or histogram chunks).
    #[error("series {series}: {detail}")]
    Unmergeable { series: String, detail: String },

    /// The plan itself is not sound.
    #[error("compaction plan: {0}")]
    Plan(String),

    /// Blocks of one stream overlap and vertical compaction is off: the group halts.
    #[error(
        "group {group} halted: overlapping blocks {blocks}; enable vertical compaction \
         (--deduplication.replica-label / --compact.enable-vertical-compaction) or mark one \
         of them for deletion or no-compact"
    )]
    Overlap { group: String, blocks: String },

    /// The bucket failed.
    #[error(transparent)]
    Bucket(#[from] strata_block::Error),

    /// A local file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}
