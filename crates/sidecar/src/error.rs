//! The sidecar's errors, one enum per part, each naming the object that failed (the Prometheus
//! URL, the block, the file) and what to do about it.

use std::path::PathBuf;

/// Talking to Prometheus failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PromError {
    /// The request could not be sent or the answer not read (connection refused, timeout, TLS).
    #[error(
        "request to Prometheus at {url}: {source}; is Prometheus running and reachable at --prometheus.url?"
    )]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// Prometheus answered with a non-2xx status.
    #[error("Prometheus at {url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    /// Prometheus' API answered with its JSON error envelope.
    #[error("Prometheus at {url} refused the request ({error_type}): {error}")]
    Api {
        url: String,
        error_type: String,
        error: String,
    },
    /// The answer did not have the expected shape.
    #[error("Prometheus at {url}: cannot decode {what}: {detail}")]
    Decode {
        url: String,
        what: &'static str,
        detail: String,
    },
    /// The `--prometheus.http-client[-file]` configuration cannot be used.
    #[error("--prometheus.http-client configuration: {0}")]
    ClientConfig(String),
    /// A file named by the HTTP client configuration (token, password, certificate) cannot be
    /// read.
    #[error("--prometheus.http-client configuration: reading {what} {}: {source}", path.display())]
    ClientFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `--prometheus.url` is not a usable URL.
    #[error("--prometheus.url {url:?} is not a valid http(s) URL: {detail}")]
    BadUrl { url: String, detail: String },
}

impl From<strata_runtime::http_client::HttpClientError> for PromError {
    fn from(e: strata_runtime::http_client::HttpClientError) -> Self {
        use strata_runtime::http_client::HttpClientError;
        match e {
            HttpClientError::Config(detail) => PromError::ClientConfig(detail),
            HttpClientError::File { what, path, source } => {
                PromError::ClientFile { what, path, source }
            }
        }
    }
}

impl PromError {
    /// Whether this is Prometheus being unreachable or failing (as opposed to a bad request or
    /// configuration): the gRPC status is then `Unavailable`, so clients retry elsewhere.
    pub fn is_unavailable(&self) -> bool {
        match self {
            PromError::Request { .. } | PromError::Decode { .. } => true,
            PromError::Status { status, .. } => *status >= 500,
            PromError::Api { error_type, .. } => !matches!(
                error_type.as_str(),
                "bad_data" | "not_found" | "not_acceptable"
            ),
            PromError::ClientConfig(_)
            | PromError::ClientFile { .. }
            | PromError::BadUrl { .. } => false,
        }
    }
}

/// A Store API request could not be answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The request itself is wrong (a bad matcher).
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    /// Prometheus' external labels are not known yet (start-up, or Prometheus unreachable).
    #[error(
        "Prometheus' external labels are not known yet: the sidecar has not reached Prometheus since it started"
    )]
    NotReady,
    /// A `--store.limits.*` limit was hit.
    #[error(transparent)]
    Limit(#[from] strata_storepb::limits::LimitExceeded),
    /// Prometheus failed or sent something the sidecar cannot serve.
    #[error("{0}")]
    Prometheus(#[from] PromError),
    /// Prometheus returned data the Store API cannot carry.
    #[error("series {series}: {detail}")]
    Unsupported { series: String, detail: String },
    /// The client went away; nothing to report.
    #[error("cancelled by the client")]
    Cancelled,
}

impl StoreError {
    /// The gRPC status clients see.
    pub fn to_status(&self) -> tonic::Status {
        let msg = self.to_string();
        match self {
            StoreError::InvalidArgument(_) => tonic::Status::invalid_argument(msg),
            StoreError::NotReady => tonic::Status::unavailable(msg),
            StoreError::Limit(_) => tonic::Status::resource_exhausted(msg),
            StoreError::Prometheus(e) if e.is_unavailable() => tonic::Status::unavailable(msg),
            StoreError::Prometheus(_) => tonic::Status::internal(msg),
            StoreError::Unsupported { .. } => tonic::Status::unimplemented(msg),
            StoreError::Cancelled => tonic::Status::cancelled(msg),
        }
    }
}

/// The shipper could not upload a block or keep its state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShipperError {
    /// A local file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A local block cannot be read (meta.json missing or corrupt).
    #[error("block {}: {source}", dir.display())]
    Corrupted {
        dir: PathBuf,
        #[source]
        source: strata_tsdb::Error,
    },
    /// Reading from or writing to the bucket failed.
    #[error("block {block}: {source}")]
    Bucket {
        block: String,
        #[source]
        source: strata_objstore::Error,
    },
    /// Uploading a block failed.
    #[error("uploading block {block}: {source}")]
    Upload {
        block: String,
        #[source]
        source: strata_block::Error,
    },
    /// Listing the bucket's blocks for the overlap check failed.
    #[error("listing the bucket's blocks for the overlap check: {source}")]
    Listing {
        #[source]
        source: strata_block::Error,
    },
    /// A compacted block would overlap blocks already in the bucket.
    #[error(
        "compacted block {block} [{min_time}, {max_time}) overlaps block(s) already in the bucket with the same external labels: {overlaps}; not uploading it (remove the overlap or upload with --shipper.upload-compacted off)"
    )]
    Overlap {
        block: String,
        min_time: i64,
        max_time: i64,
        overlaps: String,
    },
    /// External labels are needed for every uploaded block.
    #[error(
        "no external labels known: blocks cannot be uploaded without the external labels that tell them apart"
    )]
    NoExternalLabels,
}

/// The reloader could not apply the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloaderError {
    /// A watched file or the output file cannot be read or written.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The template references an environment variable that is not set.
    #[error(
        "{}: found reference to unset environment variable \"{var}\"; set it in the sidecar's environment",
        path.display()
    )]
    UnsetVariable { path: PathBuf, var: String },
    /// The template is gzip-compressed.
    #[error(
        "{}: gzip-compressed configuration files are not supported yet; store it uncompressed",
        path.display()
    )]
    Compressed { path: PathBuf },
    /// Prometheus did not accept the reload.
    #[error("reloading Prometheus: {0}")]
    Reload(#[source] PromError),
}
