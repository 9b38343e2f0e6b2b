//! Query errors, typed by what the HTTP API must answer (`bad_data`, `execution`, `timeout`,
//! `canceled`, `internal`).

/// A storage failure, as the storage implementation reports it.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StorageError {
    /// What went wrong, naming the object (block, file, endpoint) involved.
    pub message: String,
    /// Whose fault it is: decides the API's `errorType` and HTTP status.
    pub kind: StorageErrorKind,
}

/// Whose fault a storage failure is.
///
/// The HTTP API answers a request the storage refuses as asked (a selector it cannot route,
/// say) with `bad_data` and 400, as Prometheus does for a bad query, so that a client does
/// not retry it; anything else is the server's (`internal`, 500).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StorageErrorKind {
    /// The storage failed (an endpoint down, a corrupt block, a timeout).
    #[default]
    Internal,
    /// The request cannot run as asked; retrying it will fail the same way.
    BadRequest,
}

impl StorageError {
    /// A storage error with this message, the storage's fault.
    pub fn new(message: impl Into<String>) -> Self {
        StorageError {
            message: message.into(),
            kind: StorageErrorKind::Internal,
        }
    }

    /// A request the storage refuses as asked: `bad_data` (400) in the API.
    pub fn bad_request(message: impl Into<String>) -> Self {
        StorageError {
            message: message.into(),
            kind: StorageErrorKind::BadRequest,
        }
    }

    /// The Prometheus API `errorType` for this error.
    pub fn error_type(&self) -> &'static str {
        match self.kind {
            StorageErrorKind::Internal => "internal",
            StorageErrorKind::BadRequest => "bad_data",
        }
    }
}

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The query text does not parse, or uses a disabled feature. `bad_data` (400).
    #[error("{0}")]
    Parse(String),
    /// The query parses but cannot run as asked (for example a range query over a range
    /// vector). `bad_data` (400).
    #[error("{0}")]
    BadQuery(String),
    /// Evaluation failed (duplicate label sets, many-to-many matching, ...). `execution`
    /// (422).
    #[error("{0}")]
    Execution(String),
    /// The query ran past its deadline. `timeout` (503).
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    /// The query was canceled. `canceled` (499).
    #[error("query was canceled in {0}")]
    Canceled(&'static str),
    /// The query would hold more samples than allowed. `execution` (422).
    #[error("query processing would load too many samples into memory in {0}")]
    TooManySamples(&'static str),
    /// The storage failed. `internal` (500).
    #[error("{0}")]
    Storage(#[from] StorageError),
    /// A selected series holds native histogram samples, which this engine does not evaluate
    /// yet. `execution` (422).
    #[error(
        "native histograms are not supported yet: series {0} has native histogram samples in \
         the queried range"
    )]
    NativeHistogram(String),
}

impl Error {
    /// The Prometheus API `errorType` for this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::Parse(_) | Error::BadQuery(_) => "bad_data",
            Error::Execution(_) | Error::TooManySamples(_) | Error::NativeHistogram(_) => {
                "execution"
            }
            Error::Timeout(_) => "timeout",
            Error::Canceled(_) => "canceled",
            Error::Storage(e) => e.error_type(),
        }
    }
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// Shorthand for an execution error.
pub(crate) fn exec_err(msg: impl Into<String>) -> Error {
    Error::Execution(msg.into())
}
