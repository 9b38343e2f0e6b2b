//! What every long-running Strata component shares.
//!
//! - [`Prober`]: the component's health and readiness, as Thanos reports them on `/-/healthy`
//!   (the process is up and set up) and `/-/ready` (it can take traffic: a store gateway after
//!   its first block sync, a sidecar once Prometheus' external labels are known).
//! - [`http`]: the HTTP server every component runs on `--http-address`, with the probes and
//!   `/metrics` (served from the first moment, before readiness: metrics must not be gated),
//!   to which each component adds its own routes.
//! - [`http_client`]: Thanos' HTTP client configuration (basic auth, bearer token, TLS,
//!   proxy) and the `reqwest` client built from it, for the sidecar's Prometheus and the
//!   ruler's Alertmanagers.
//! - [`web_config`]: `--http.config`, the exporter-toolkit web configuration file: TLS, basic
//!   authentication, extra response headers and a rate limit for that server.
//! - [`tls`]: the system's trust roots, and TLS connections accepted with each handshake in a
//!   task of its own (the HTTP servers with `--http.config`, the gRPC servers).
//! - [`request_log`]: `--request.logging-config`, Thanos' per-request log lines for the HTTP
//!   server (here) and the gRPC servers (their layer is in `strata-storepb`).
//! - [`client_tls`]: `tls_config` of outgoing HTTP clients (the sidecar's Prometheus client,
//!   the ruler's remote write) turned into reqwest settings.
//! - [`dns`]: Thanos' address discovery (`host:port`, `dns+`, `dnssrv+`, `dnssrvnoa+`), for
//!   the querier's endpoints and the store gateway's memcached addresses.
//! - [`otel`]: `--tracing.config`, spans exported over OTLP and the trace context carried
//!   between components.
//! - [`Shutdown`]: one cancellation token that SIGINT/SIGTERM trigger, so that servers drain
//!   and background loops stop in order.
//! - [`task`]: tasks a call spawns for its own work, aborted with the call, their panics
//!   surfacing in it.
//! - [`alloc`]: glibc's allocator tuned for servers that free large buffers after every
//!   request (the store gateway and the querier).
//!
//! **Architecture invariant:** this crate knows nothing about blocks, buckets, PromQL or the
//! Store API. It is the only place that installs signal handlers.

pub mod alloc;
pub mod client_tls;
pub mod dns;
pub mod file_sd;
pub mod glob;
pub mod http;
pub mod http_client;
pub mod otel;
mod probe;
pub mod request_log;
mod shutdown;
pub mod task;
pub mod tls;
pub mod web_config;

pub use probe::Prober;
pub use shutdown::Shutdown;
