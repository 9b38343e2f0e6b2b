//! Query errors, typed by what the HTTP API must answer (`bad_data`, `execution`, `timeout`,
//! `canceled`, `internal`).

/// A storage failure, as the storage implementation reports it.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StorageError {
    /// What went wrong, naming the object (block, file, endpoint) involved.
    pub message: String,
}

impl StorageError {
    /// A storage error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        StorageError {
            message: message.into(),
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
            Error::Storage(_) => "internal",
        }
    }
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// Shorthand for an execution error.
pub(crate) fn exec_err(msg: impl Into<String>) -> Error {
    Error::Execution(msg.into())
}
