//! The querier's errors.

/// Why the querier could not be set up or a request failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// An `--endpoint`/`--store` value that is not one of the accepted forms.
    #[error("invalid endpoint {0:?}: want host:port, dns+host:port, dnssrv+name or dnssrvnoa+name")]
    BadEndpoint(String),
    /// A gRPC client option that cannot be honoured.
    #[error("{0}")]
    ClientConfig(String),
    /// `--endpoint.sd-config[-file]` cannot be used at start-up.
    #[error(transparent)]
    SdConfig(#[from] crate::endpoint::SdConfigError),
    /// Reading a TLS file named by a flag.
    #[error("reading {flag} {path}: {source}")]
    ReadTls {
        flag: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A store failed (or timed out) and partial response is off.
    #[error("store {store}: {message}")]
    Store { store: String, message: String },
    /// A request the querier cannot run (for example a bad matcher).
    #[error("{0}")]
    BadRequest(String),
    /// A selection went past `--store.limits.request-series` or `-samples`.
    #[error("{0}")]
    LimitExceeded(String),
    /// The querier is shutting down: what could not run.
    #[error("querier shutting down ({0} closed); retry the query")]
    ShuttingDown(&'static str),
}

/// An address that is not in Thanos' syntax, named as the querier's endpoint.
impl From<strata_runtime::dns::BadAddress> for QueryError {
    fn from(e: strata_runtime::dns::BadAddress) -> Self {
        QueryError::BadEndpoint(e.address)
    }
}

/// How the engine and the HTTP API see a failed store call: a request the querier refuses
/// stays the client's fault (`bad_data`, 400); every other failure is the server's.
impl From<QueryError> for strata_promql::StorageError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::BadRequest(m) => strata_promql::StorageError::bad_request(m),
            e => strata_promql::StorageError::new(e.to_string()),
        }
    }
}
