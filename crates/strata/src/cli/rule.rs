//! `strata rule`: the ruler, evaluating recording and alerting rules against queriers.

use anyhow::Result;
use clap::{Args, ValueEnum};
use strata_model::Duration;

use super::common::{
    FlagLabel, GlobalArgs, GrpcServerArgs, HttpArgs, ObjstoreArgs, RequestLoggingArgs, ShipperArgs,
    StoreLimitsArgs, WebArgs, flag_value, path_or_content_args,
};

path_or_content_args!(
    /// `--alertmanagers.config-file` / `--alertmanagers.config`.
    AlertmanagersConfigArgs,
    "alertmanagers.config",
    "YAML file that contains alerting configuration. If defined, it takes precedence over the \
     '--alertmanagers.url' and '--alertmanagers.send-timeout' flags."
);

path_or_content_args!(
    /// `--alert.relabel-config-file` / `--alert.relabel-config`.
    AlertRelabelConfigArgs,
    "alert.relabel-config",
    "YAML file that contains alert relabelling configuration."
);

path_or_content_args!(
    /// `--query.config-file` / `--query.config`.
    QueryConfigArgs,
    "query.config",
    "YAML file that contains query API servers configuration. If defined, it takes precedence \
     over the '--query' and '--query.sd-files' flags."
);

path_or_content_args!(
    /// `--remote-write.config-file` / `--remote-write.config`.
    RemoteWriteConfigArgs,
    "remote-write.config",
    "YAML config for the remote-write configurations (Prometheus remote_write). This enables \
     stateless mode: no series are stored in the ruler's TSDB."
);

/// `--query.http-method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum HttpMethod {
    #[value(name = "GET")]
    Get,
    #[value(name = "POST")]
    Post,
}

/// Flags of `strata rule` (Thanos `cmd/thanos/rule.go`).
#[derive(Debug, Clone, Args)]
pub(crate) struct RuleArgs {
    #[command(flatten)]
    pub(crate) http: HttpArgs,

    #[command(flatten)]
    pub(crate) grpc: GrpcServerArgs,

    #[command(flatten)]
    pub(crate) web: WebArgs,

    /// Labels to be applied to all generated metrics (repeated), name="value". Similar to
    /// external labels for Prometheus, used to identify ruler and its blocks as unique source.
    #[arg(long = "label", value_name = "NAME=\"VALUE\"")]
    pub(crate) labels: Vec<FlagLabel>,

    /// Data directory.
    #[arg(long = "data-dir", value_name = "DIR", default_value = "data/")]
    pub(crate) data_dir: String,

    /// Rule files that should be used by rule manager. Can be in glob format (repeated).
    #[arg(long = "rule-file", value_name = "PATH", default_values_t = ["rules/".to_owned()])]
    pub(crate) rule_files: Vec<String>,

    /// Minimum amount of time to wait before resending an alert to Alertmanager.
    #[arg(long = "resend-delay", value_name = "DURATION", default_value = "1m")]
    pub(crate) resend_delay: Duration,

    /// The default evaluation interval to use.
    #[arg(long = "eval-interval", value_name = "DURATION", default_value = "1m")]
    pub(crate) eval_interval: Duration,

    /// The default rule group query offset duration to use.
    #[arg(
        long = "rule-query-offset",
        value_name = "DURATION",
        default_value = "0s"
    )]
    pub(crate) rule_query_offset: Duration,

    /// How many rules can be evaluated concurrently.
    #[arg(
        long = "rule-concurrent-evaluation",
        value_name = "N",
        default_value_t = 1
    )]
    pub(crate) rule_concurrent_evaluation: usize,

    /// Max time to tolerate prometheus outage for restoring "for" state of alert.
    #[arg(
        long = "for-outage-tolerance",
        value_name = "DURATION",
        default_value = "1h"
    )]
    pub(crate) for_outage_tolerance: Duration,

    /// Minimum duration between alert and restored "for" state. This is maintained only for
    /// alerts with configured "for" time greater than grace period.
    #[arg(
        long = "for-grace-period",
        value_name = "DURATION",
        default_value = "10m"
    )]
    pub(crate) for_grace_period: Duration,

    /// Label names to be ignored when restoring alerts from the remote storage. This is only
    /// used in stateless mode (repeated).
    #[arg(long = "restore-ignored-label", value_name = "LABEL")]
    pub(crate) restore_ignored_labels: Vec<String>,

    /// Block duration for TSDB block.
    #[arg(
        long = "tsdb.block-duration",
        value_name = "DURATION",
        default_value = "2h"
    )]
    pub(crate) tsdb_block_duration: Duration,

    /// Block retention time on local disk.
    #[arg(
        long = "tsdb.retention",
        value_name = "DURATION",
        default_value = "48h"
    )]
    pub(crate) tsdb_retention: Duration,

    /// Do not create lockfile in TSDB data directory.
    #[arg(long = "tsdb.no-lockfile", overrides_with = "no_tsdb_no_lockfile")]
    tsdb_no_lockfile: bool,
    #[arg(
        long = "no-tsdb.no-lockfile",
        overrides_with = "tsdb_no_lockfile",
        hide = true
    )]
    no_tsdb_no_lockfile: bool,

    /// Compress the tsdb WAL (default on; --no-tsdb.wal-compression to disable).
    #[arg(
        long = "tsdb.wal-compression",
        overrides_with = "no_tsdb_wal_compression"
    )]
    tsdb_wal_compression: bool,
    #[arg(
        long = "no-tsdb.wal-compression",
        overrides_with = "tsdb_wal_compression",
        hide = true
    )]
    no_tsdb_wal_compression: bool,

    /// Alertmanager replica URLs to push firing alerts (repeated). The scheme may be prefixed
    /// with 'dns+' or 'dnssrv+'; the port defaults to 9093.
    #[arg(long = "alertmanagers.url", value_name = "URL")]
    pub(crate) alertmanager_urls: Vec<String>,

    /// Timeout for sending alerts to Alertmanager.
    #[arg(
        long = "alertmanagers.send-timeout",
        value_name = "DURATION",
        default_value = "10s"
    )]
    pub(crate) alertmanagers_send_timeout: Duration,

    #[command(flatten)]
    pub(crate) alertmanagers_config: AlertmanagersConfigArgs,

    /// Interval between DNS resolutions of Alertmanager hosts.
    #[arg(
        long = "alertmanagers.sd-dns-interval",
        value_name = "DURATION",
        default_value = "30s"
    )]
    pub(crate) alertmanagers_sd_dns_interval: Duration,

    /// The external Thanos Query URL that would be set in all alerts 'Source' field.
    #[arg(long = "alert.query-url", value_name = "URL")]
    pub(crate) alert_query_url: Option<String>,

    /// Labels by name to drop before sending to alertmanager (repeated), e.g. the replica label
    /// so that Alertmanager deduplicates HA rulers.
    #[arg(long = "alert.label-drop", value_name = "LABEL")]
    pub(crate) alert_label_drop: Vec<String>,

    #[command(flatten)]
    pub(crate) alert_relabel_config: AlertRelabelConfigArgs,

    /// Template to use in alerts source field. Need only include {{.Expr}} parameter.
    #[arg(
        long = "alert.query-template",
        value_name = "TEMPLATE",
        default_value = "/graph?g0.expr={{.Expr}}&g0.tab=1"
    )]
    pub(crate) alert_query_template: String,

    /// Addresses of statically configured query API servers (repeatable). The scheme may be
    /// prefixed with 'dns+' or 'dnssrv+'.
    #[arg(long = "query", value_name = "QUERY")]
    pub(crate) queries: Vec<String>,

    #[command(flatten)]
    pub(crate) query_config: QueryConfigArgs,

    /// Path to file that contains addresses of query API servers. The path can be a glob
    /// pattern (repeatable).
    #[arg(long = "query.sd-files", value_name = "PATH")]
    pub(crate) query_sd_files: Vec<String>,

    /// Refresh interval to re-read file SD files (used as a fallback).
    #[arg(
        long = "query.sd-interval",
        value_name = "DURATION",
        default_value = "5m"
    )]
    pub(crate) query_sd_interval: Duration,

    /// Interval between DNS resolutions.
    #[arg(
        long = "query.sd-dns-interval",
        value_name = "DURATION",
        default_value = "30s"
    )]
    pub(crate) query_sd_dns_interval: Duration,

    /// HTTP method to use when sending queries.
    #[arg(long = "query.http-method", value_enum, default_value_t = HttpMethod::Post)]
    pub(crate) query_http_method: HttpMethod,

    /// Default range query step to use. This is only used in stateless Ruler and alert state
    /// restoration.
    #[arg(
        long = "query.default-step",
        value_name = "DURATION",
        default_value = "1s"
    )]
    pub(crate) query_default_step: Duration,

    /// Do not add Thanos' parameters (dedup, partial_response) to queries (hidden in Thanos).
    #[arg(
        long = "query.only-prometheus-params",
        overrides_with = "no_query_only_prometheus_params",
        hide = true
    )]
    query_only_prometheus_params: bool,
    #[arg(
        long = "no-query.only-prometheus-params",
        overrides_with = "query_only_prometheus_params",
        hide = true
    )]
    no_query_only_prometheus_params: bool,

    /// Resolver to use for DNS lookups of queriers: golang or miekgdns (hidden in Thanos).
    #[arg(
        long = "query.sd-dns-resolver",
        value_name = "RESOLVER",
        default_value = "miekgdns",
        hide = true
    )]
    pub(crate) query_sd_dns_resolver: String,

    /// Whether to enable extended rate functions (xrate, xincrease and xdelta). Only has effect
    /// when used with the Thanos engine.
    #[arg(
        long = "query.enable-x-functions",
        overrides_with = "no_query_enable_x_functions"
    )]
    query_enable_x_functions: bool,
    #[arg(
        long = "no-query.enable-x-functions",
        overrides_with = "query_enable_x_functions",
        hide = true
    )]
    no_query_enable_x_functions: bool,

    /// Comma separated experimental feature names to enable. The current list of features is
    /// promql-experimental-functions.
    #[arg(long = "enable-feature", value_name = "FEATURE", value_delimiter = ',')]
    pub(crate) enable_features: Vec<String>,

    /// (Deprecated) Enables the ingestion of native histograms. This flag is a no-op now and
    /// will be removed in the future. Native histogram ingestion is always enabled.
    #[arg(
        long = "tsdb.enable-native-histograms",
        overrides_with = "no_tsdb_enable_native_histograms"
    )]
    tsdb_enable_native_histograms: bool,
    #[arg(
        long = "no-tsdb.enable-native-histograms",
        overrides_with = "tsdb_enable_native_histograms",
        hide = true
    )]
    no_tsdb_enable_native_histograms: bool,

    /// Addresses of queriers' gRPC Query API (repeatable; host:port, dns+host:port or
    /// dnssrv+name), asked when no HTTP querier (--query) answers.
    #[arg(long = "grpc-query-endpoint", value_name = "ENDPOINT")]
    pub(crate) grpc_query_endpoints: Vec<String>,

    #[command(flatten)]
    pub(crate) remote_write_config: RemoteWriteConfigArgs,

    /// Object storage to upload blocks to; without it nothing is uploaded.
    #[command(flatten)]
    pub(crate) objstore: ObjstoreArgs,

    #[command(flatten)]
    pub(crate) shipper: ShipperArgs,

    #[command(flatten)]
    pub(crate) store_limits: StoreLimitsArgs,

    #[command(flatten)]
    pub(crate) request_logging: RequestLoggingArgs,
}

impl RuleArgs {
    /// `--query.only-prometheus-params` (default false).
    pub(crate) fn query_only_prometheus_params(&self) -> bool {
        flag_value(
            self.query_only_prometheus_params,
            self.no_query_only_prometheus_params,
            false,
        )
    }

    /// `--query.enable-x-functions` (default false).
    pub(crate) fn query_enable_x_functions(&self) -> bool {
        flag_value(
            self.query_enable_x_functions,
            self.no_query_enable_x_functions,
            false,
        )
    }

    /// Whether `--[no-]tsdb.enable-native-histograms` was given (a no-op in Thanos too).
    pub(crate) fn native_histograms_flag_given(&self) -> bool {
        self.tsdb_enable_native_histograms || self.no_tsdb_enable_native_histograms
    }

    pub(crate) fn tsdb_no_lockfile(&self) -> bool {
        flag_value(self.tsdb_no_lockfile, self.no_tsdb_no_lockfile, false)
    }

    /// Default true, as in Thanos.
    pub(crate) fn tsdb_wal_compression(&self) -> bool {
        flag_value(
            self.tsdb_wal_compression,
            self.no_tsdb_wal_compression,
            true,
        )
    }

    pub(crate) async fn run(self, _global: &GlobalArgs) -> Result<()> {
        crate::cmd::rule::run(self).await
    }
}
