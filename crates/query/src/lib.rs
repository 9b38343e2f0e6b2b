//! The querier core (`strata query`): one PromQL view over many Store API servers.
//!
//! - [`client`]: how they are reached (`--grpc-client-*`, `--grpc-compression`, and an
//!   endpoint's own `grpc_client_config` in the endpoint SD config).
//! - [`endpoint`]: which servers exist (`--endpoint` static, `dns+`, `dnssrv+`,
//!   `dnssrvnoa+`, `--store.sd-files`, `--endpoint.sd-config[-file]`), endpoint groups
//!   (`--endpoint-group`: one store, calls round-robin over its members), their health and
//!   what they hold (Info API).
//! - [`fanout`]: one request sent concurrently to the servers that can hold matching data,
//!   with `--store.response-timeout` and partial response, answers merged k-way by labels.
//! - [`series`]: replica deduplication (strata-dedup) and downsampled aggregates turned into
//!   the float series the engine evaluates.
//! - [`storage`]: the per-request [`strata_promql::Storage`] the HTTP API evaluates over
//!   (`dedup`, `replicaLabels[]`, `partial_response`, `max_source_resolution`,
//!   `storeMatch[]`), bounded by `--query.max-concurrent-select`.
//! - [`server`]: the querier's own Store API, so queriers stack.
//! - `tls`: the certificate verifier behind `--grpc-client-tls-skip-verify`.
//!
//! **Invariants:** every failure of a store names the store (its address); a store's bad
//! answer is an error or a warning, never a panic; nothing here holds a lock across an await.

pub mod client;
pub mod endpoint;
pub mod error;
pub mod exemplars;
pub mod fanout;
pub mod metadata;
pub mod metrics;
pub mod rules;
pub mod series;
pub mod server;
pub mod storage;
pub mod targets;
mod tls;
mod wire;

pub use client::{ClientConfig, Compression, EndpointClient, TlsMinVersion};
pub use endpoint::{
    EndpointEntry, EndpointSet, EndpointSetConfig, EndpointSpec, SdConfig, SdConfigError,
    SdConfigSource, parse_sd_config,
};
pub use error::QueryError;
pub use fanout::{Fanout, SeriesLimits};
pub use metadata::MetricMetadataAnswer;
pub use metrics::{ConnectionsCollector, QueryMetrics, TelemetryBuckets};
pub use server::QueryStoreService;
pub use storage::{
    ApiPartialDefaults, DEFAULT_MAX_CONCURRENT_SELECT, Querier, QuerierConfig, QueryStorage,
};
