//! `strata sidecar`: Store API over one Prometheus, block shipper and config reloader.

use anyhow::Result;
use clap::{Args, ValueEnum};
use strata_model::{Duration, TimeOrDuration};

use super::common::{
    GlobalArgs, GrpcServerArgs, HashFunc, HttpArgs, ObjstoreArgs, RequestLoggingArgs,
    StoreLimitsArgs, flag_value, path_or_content_args,
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

    /// If true shipper will try to upload compacted blocks as well. Useful for migration
    /// purposes. Works only if compaction is disabled on Prometheus. Do it once and then
    /// disable the flag when done.
    #[arg(
        long = "shipper.upload-compacted",
        overrides_with = "no_shipper_upload_compacted"
    )]
    shipper_upload_compacted: bool,
    #[arg(
        long = "no-shipper.upload-compacted",
        overrides_with = "shipper_upload_compacted",
        hide = true
    )]
    no_shipper_upload_compacted: bool,

    /// Hash function for the hashes of uploaded files ("" for none, or "SHA256").
    #[arg(long = "hash-func", value_name = "FUNC", default_value = "")]
    pub(crate) hash_func: HashFunc,

    /// The file to store shipper metadata in.
    #[arg(
        long = "shipper.meta-file-name",
        value_name = "NAME",
        default_value = "thanos.shipper.json"
    )]
    pub(crate) shipper_meta_file_name: String,

    /// Number of goroutines to use when uploading block files to object storage (0: default).
    #[arg(
        long = "shipper.upload-concurrency",
        value_name = "N",
        default_value_t = 0
    )]
    pub(crate) shipper_upload_concurrency: usize,

    /// Skip the check that Prometheus' min and max block durations are equal (hidden in Thanos).
    #[arg(
        long = "shipper.ignore-unequal-block-size",
        overrides_with = "no_shipper_ignore_unequal_block_size",
        hide = true
    )]
    shipper_ignore_unequal_block_size: bool,
    #[arg(
        long = "no-shipper.ignore-unequal-block-size",
        overrides_with = "shipper_ignore_unequal_block_size",
        hide = true
    )]
    no_shipper_ignore_unequal_block_size: bool,

    /// Keep uploading newer blocks when an older one fails (hidden in Thanos).
    #[arg(
        long = "shipper.allow-out-of-order-uploads",
        overrides_with = "no_shipper_allow_out_of_order_uploads",
        hide = true
    )]
    shipper_allow_out_of_order_uploads: bool,
    #[arg(
        long = "no-shipper.allow-out-of-order-uploads",
        overrides_with = "shipper_allow_out_of_order_uploads",
        hide = true
    )]
    no_shipper_allow_out_of_order_uploads: bool,

    /// Skip blocks that fail validation instead of stopping the upload (hidden in Thanos).
    #[arg(
        long = "shipper.skip-corrupted-blocks",
        overrides_with = "no_shipper_skip_corrupted_blocks",
        hide = true
    )]
    shipper_skip_corrupted_blocks: bool,
    #[arg(
        long = "no-shipper.skip-corrupted-blocks",
        overrides_with = "shipper_skip_corrupted_blocks",
        hide = true
    )]
    no_shipper_skip_corrupted_blocks: bool,

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
    pub(crate) fn shipper_upload_compacted(&self) -> bool {
        flag_value(
            self.shipper_upload_compacted,
            self.no_shipper_upload_compacted,
            false,
        )
    }

    pub(crate) fn shipper_ignore_unequal_block_size(&self) -> bool {
        flag_value(
            self.shipper_ignore_unequal_block_size,
            self.no_shipper_ignore_unequal_block_size,
            false,
        )
    }

    pub(crate) fn shipper_allow_out_of_order_uploads(&self) -> bool {
        flag_value(
            self.shipper_allow_out_of_order_uploads,
            self.no_shipper_allow_out_of_order_uploads,
            false,
        )
    }

    pub(crate) fn shipper_skip_corrupted_blocks(&self) -> bool {
        flag_value(
            self.shipper_skip_corrupted_blocks,
            self.no_shipper_skip_corrupted_blocks,
            false,
        )
    }

    pub(crate) async fn run(self, _global: &GlobalArgs) -> Result<()> {
        crate::cmd::sidecar::run(self).await
    }
}
