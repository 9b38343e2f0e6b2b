//! `strata sidecar`: Store API over one Prometheus, block shipper and config reloader.

use anyhow::Result;
use clap::{Args, ValueEnum};
use strata_model::{Duration, TimeOrDuration};

use super::common::{
    GlobalArgs, GrpcServerArgs, HttpArgs, ObjstoreArgs, RequestLoggingArgs, ShipperArgs,
    StoreLimitsArgs, path_or_content_args,
};

path_or_content_args!(
    /// `--prometheus.http-client-file` / `--prometheus.http-client`.
    PrometheusHttpClientArgs,
    "prometheus.http-client",
    "YAML file or string with http client configs (basic auth, bearer token, TLS, proxy)."
);

/// `--reloader.method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ReloaderMethod {
    /// POST to Prometheus' /-/reload.
    Http,
    /// Send SIGHUP to the Prometheus process.
    Signal,
}

/// Flags of `strata sidecar` (Thanos `cmd/thanos/sidecar.go`).
#[derive(Debug, Clone, Args)]
pub(crate) struct SidecarArgs {
    #[command(flatten)]
    pub(crate) http: HttpArgs,

    #[command(flatten)]
    pub(crate) grpc: GrpcServerArgs,

    /// URL at which to reach Prometheus's API. For better performance use local network.
    #[arg(
        long = "prometheus.url",
        value_name = "URL",
        default_value = "http://localhost:9090"
    )]
    pub(crate) prometheus_url: String,

    /// Maximum time to wait for the Prometheus instance to start up.
    #[arg(
        long = "prometheus.ready_timeout",
        value_name = "DURATION",
        default_value = "10m"
    )]
    pub(crate) prometheus_ready_timeout: Duration,

    /// How often to get Prometheus config.
    #[arg(
        long = "prometheus.get_config_interval",
        value_name = "DURATION",
        default_value = "30s"
    )]
    pub(crate) prometheus_get_config_interval: Duration,

    /// Timeout for getting Prometheus config.
    #[arg(
        long = "prometheus.get_config_timeout",
        value_name = "DURATION",
        default_value = "30s"
    )]
    pub(crate) prometheus_get_config_timeout: Duration,

    #[command(flatten)]
    pub(crate) prometheus_http_client: PrometheusHttpClientArgs,

    /// Data directory of TSDB.
    #[arg(long = "tsdb.path", value_name = "DIR", default_value = "./data")]
    pub(crate) tsdb_path: String,

    /// Config file watched by the reloader.
    #[arg(
        long = "reloader.config-file",
        value_name = "FILE-PATH",
        default_value = ""
    )]
    pub(crate) reloader_config_file: String,

    /// Output file for environment variable substituted config file.
    #[arg(
        long = "reloader.config-envsubst-file",
        value_name = "FILE-PATH",
        default_value = ""
    )]
    pub(crate) reloader_config_envsubst_file: String,

    /// Rule directories for the reloader to refresh (repeated field).
    #[arg(long = "reloader.rule-dir", value_name = "DIR")]
    pub(crate) reloader_rule_dirs: Vec<String>,

    /// Controls how often reloader re-reads config and rules.
    #[arg(
        long = "reloader.watch-interval",
        value_name = "DURATION",
        default_value = "3m"
    )]
    pub(crate) reloader_watch_interval: Duration,

    /// Controls how often reloader retries config reload in case of error.
    #[arg(
        long = "reloader.retry-interval",
        value_name = "DURATION",
        default_value = "5s"
    )]
    pub(crate) reloader_retry_interval: Duration,

    /// Method used to reload the configuration.
    #[arg(long = "reloader.method", value_enum, default_value_t = ReloaderMethod::Http)]
    pub(crate) reloader_method: ReloaderMethod,

    /// Executable name used to match the process being reloaded when using the signal method.
    #[arg(
        long = "reloader.process-name",
        value_name = "NAME",
        default_value = "prometheus"
    )]
    pub(crate) reloader_process_name: String,

    #[command(flatten)]
    pub(crate) request_logging: RequestLoggingArgs,

    /// Object storage to upload blocks to; without it the sidecar only serves the Store API.
    #[command(flatten)]
    pub(crate) objstore: ObjstoreArgs,

    #[command(flatten)]
    pub(crate) shipper: ShipperArgs,

    /// How often the shipper scans --tsdb.path for new blocks (a Strata extension, hidden;
    /// Thanos always uses 30s).
    #[arg(
        long = "shipper.sync-interval",
        value_name = "DURATION",
        default_value = "30s",
        hide = true
    )]
    pub(crate) shipper_sync_interval: Duration,

    #[command(flatten)]
    pub(crate) store_limits: StoreLimitsArgs,

    /// Start of time range limit to serve: only metrics later than this value are served. An
    /// RFC3339 time or a duration relative to now, such as -1d or 2h45m. Valid duration units
    /// are ms, s, m, h, d, w, y.
    #[arg(
        long = "min-time",
        value_name = "TIME",
        default_value = strata_model::timestamp::MIN_TIME_RFC3339,
        allow_hyphen_values = true
    )]
    pub(crate) min_time: TimeOrDuration,
}

impl SidecarArgs {
    pub(crate) async fn run(self, _global: &GlobalArgs) -> Result<()> {
        crate::cmd::sidecar::run(self).await
    }
}
