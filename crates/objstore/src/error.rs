//! The error type of this crate.
//!
//! Every variant says what failed, on which object or bucket, and what to do about it, because
//! these errors end up in the logs of a compactor or store gateway that an operator reads at 3am.

use std::path::PathBuf;

/// Where operators find the meaning of every objstore.yml key.
pub const STORAGE_DOCS: &str = "https://thanos.io/tip/thanos/storage.md";

/// Errors from parsing bucket configuration and from bucket operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The objstore.yml text is not valid YAML, or a value has the wrong type.
    #[error("bucket config: {message}; see {STORAGE_DOCS}")]
    Config {
        /// What is wrong, including the key path when known.
        message: String,
    },

    /// A key that Thanos does not know either. Rejected rather than ignored so that a typo
    /// (`acces_key`) does not silently fall back to other credentials.
    #[error(
        "bucket config: unknown key `{key}` in {section} config; remove or fix it \
         (see {STORAGE_DOCS} for the keys Thanos accepts)"
    )]
    UnknownKey {
        /// The offending key, as written.
        key: String,
        /// Which section it was found in, e.g. `S3`, `S3 http_config` or `top-level`.
        section: String,
    },

    /// `${NAME}` / `$(NAME)` in objstore.yml refers to an unset environment variable.
    #[error(
        "bucket config: environment variable `{name}` is referenced in objstore.yml but not set; \
         set it in the process environment or remove the reference"
    )]
    EnvVarNotSet {
        /// The variable's name.
        name: String,
    },

    /// The configuration parsed but a backend client could not be built from it.
    #[error(
        "bucket config: cannot set up the {provider} bucket client: {source}; check the config"
    )]
    Build {
        /// `S3`, `GCS`, `AZURE` or `FILESYSTEM`.
        provider: &'static str,
        /// The underlying cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The object does not exist. Callers match on this (see [`Error::is_not_found`]) because a
    /// missing object is often an expected state (a block being deleted, a partial upload).
    #[error("object `{key}` not found in bucket `{bucket}`")]
    NotFound {
        /// Bucket name.
        bucket: String,
        /// Object key relative to the bucket prefix.
        key: String,
    },

    /// A range read asked for bytes that the object does not have.
    #[error(
        "range {start}..{end} of object `{key}` in bucket `{bucket}` is not satisfiable: \
         the object is {size} bytes long; the caller's index or offsets are likely stale or corrupt"
    )]
    RangeNotSatisfiable {
        /// Bucket name.
        bucket: String,
        /// Object key.
        key: String,
        /// Requested start offset.
        start: u64,
        /// Requested end offset (exclusive).
        end: u64,
        /// Actual object size.
        size: u64,
    },

    /// A key or range that can never be valid, rejected before any request is made.
    #[error("invalid {what} for bucket `{bucket}`: {reason}")]
    InvalidInput {
        /// Bucket name.
        bucket: String,
        /// `object key` or `range`.
        what: &'static str,
        /// Why it was rejected, naming the offending value.
        reason: String,
    },

    /// A local file to upload could not be read.
    #[error(
        "upload of `{key}` to bucket `{bucket}`: cannot read local file `{}`: {source}",
        path.display()
    )]
    LocalFile {
        /// Bucket name.
        bucket: String,
        /// Destination object key.
        key: String,
        /// Local file path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The bucket (S3/GCS bucket, Azure container) itself does not exist. Never reported as
    /// [`Error::NotFound`]: a missing bucket is a configuration problem, not a missing object.
    #[error(
        "bucket `{bucket}` does not exist ({operation} `{key}`); create it, or fix the bucket \
         name (`bucket`, or `container` for Azure) in objstore.yml"
    )]
    BucketNotFound {
        /// Thanos' operation name.
        operation: &'static str,
        /// Bucket name.
        bucket: String,
        /// Object key or listed directory.
        key: String,
        /// The backend error.
        #[source]
        source: Box<object_store::Error>,
    },

    /// The storage backend failed (after the retries the backend client does on its own).
    #[error(
        "{operation} `{key}` in bucket `{bucket}` failed: {source}; check the bucket's \
         availability, credentials and permissions"
    )]
    Backend {
        /// Thanos' operation name: `get`, `get_range`, `upload`, ….
        operation: &'static str,
        /// Bucket name.
        bucket: String,
        /// Object key or listed directory.
        key: String,
        /// The backend error.
        #[source]
        source: Box<object_store::Error>,
    },
}

impl Error {
    /// True when the error means "the object does not exist".
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::Config {
            message: message.into(),
        }
    }

    pub(crate) fn build(
        provider: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Build {
            provider,
            source: source.into(),
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
