//! The sidecar: what runs next to each Prometheus (Thanos' `thanos sidecar`).
//!
//! Three jobs, each in its own module, sharing one view of the Prometheus peer
//! ([`prometheus::PromState`]: its external labels and oldest timestamp):
//!
//! - [`store`] and [`grpc`]: the Thanos Store API (and Info API) over Prometheus' remote read
//!   and HTTP API, so a querier sees the recent data that has not reached the bucket yet.
//! - [`shipper`]: uploads every new 2h block Prometheus writes into the bucket, with Thanos'
//!   `meta.json` section and its `thanos.shipper.json` state file.
//! - [`reloader`]: renders Prometheus' configuration template (`$(VAR)` from the environment)
//!   and asks Prometheus to reload when it or the rule files change.
//!
//! [`promclient`] is the HTTP client for Prometheus (auth and TLS from
//! `--prometheus.http-client`); the remote read wire format is [`strata_prompb`].
//!
//! **Architecture invariants.**
//! - Nothing is served or uploaded before the external labels are known: they tell this
//!   Prometheus' data apart from every other's, in the querier and in the bucket.
//! - The sidecar never deletes from the bucket and never modifies Prometheus' blocks: uploads
//!   go through `strata-block` (chunks, index, `meta.json` last) from hard links, so Prometheus
//!   may delete a block mid-upload without harm.
//! - Prometheus being down, the bucket being down or the configuration being wrong is logged,
//!   counted and retried; it never ends the process once it has started.

pub mod error;
mod exemplars;
pub mod grpc;
pub mod promclient;
pub mod prometheus;
pub mod reloader;
mod rules;
pub mod shipper;
pub mod store;
mod targets;

/// The remote read messages and frames ([`strata_prompb`]).
pub use strata_prompb as prompb;

pub use error::{PromError, StoreError};
pub use promclient::{HttpClientConfig, PrometheusClient};
pub use prometheus::{Heartbeat, HeartbeatMetrics, PromState};
pub use reloader::{Reloader, ReloaderConfig, ReloaderMetrics};
pub use shipper::{Shipper, ShipperConfig, ShipperMetrics};
pub use store::{Limits, PrometheusStore};
