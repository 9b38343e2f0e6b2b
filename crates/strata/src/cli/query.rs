//! `strata query`: the querier, PromQL over every Store API endpoint with deduplication.

use std::fmt;
use std::str::FromStr;

use anyhow::Result;
use clap::{Args, ValueEnum};
use strata_model::Duration;

use super::common::{
    FlagLabel, GlobalArgs, GrpcServerArgs, HttpArgs, RequestLoggingArgs, SelectorRelabelArgs,
    StoreLimitsArgs, TlsVersion, WebArgs, flag_value, path_or_content_args,
};

path_or_content_args!(
    /// `--endpoint.sd-config-file` / `--endpoint.sd-config`.
    EndpointSdConfigArgs,
    "endpoint.sd-config",
    "Config File with endpoint definitions."
);

/// `--query.promql-engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum PromqlEngine {
    Prometheus,
    Thanos,
}

/// `--query.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum QueryMode {
    Local,
    Distributed,
}

/// `--deduplication.func` of the querier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum QueryDedupFunc {
    /// Stick to one replica, switch after a gap (for HA Prometheus pairs).
    Penalty,
    /// 1:1 merge of identical samples (for Receive replication).
    Chain,
}

/// `--grpc-compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum GrpcCompression {
    None,
    Snappy,
}

/// `--query.tenant-certificate-field`: `""` or a TLS client certificate field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum TenantCertificateField {
    #[default]
    None,
    Organization,
    OrganizationalUnit,
    CommonName,
}

impl FromStr for TenantCertificateField {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" => Ok(TenantCertificateField::None),
            "organization" => Ok(TenantCertificateField::Organization),
            "organizationalUnit" => Ok(TenantCertificateField::OrganizationalUnit),
            "commonName" => Ok(TenantCertificateField::CommonName),
            _ => Err(format!(
                "unknown certificate field {s:?} (possible values: organization, \
                 organizationalUnit, commonName)"
            )),
        }
    }
}

impl fmt::Display for TenantCertificateField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TenantCertificateField::None => "",
            TenantCertificateField::Organization => "organization",
            TenantCertificateField::OrganizationalUnit => "organizationalUnit",
            TenantCertificateField::CommonName => "commonName",
        })
    }
}

/// gRPC client flags used to reach the Store API endpoints.
#[derive(Debug, Clone, Args)]
pub(crate) struct GrpcClientArgs {
    /// Use TLS when talking to the gRPC server.
    #[arg(
        long = "grpc-client-tls-secure",
        overrides_with = "no_grpc_client_tls_secure"
    )]
    grpc_client_tls_secure: bool,
    #[arg(
        long = "no-grpc-client-tls-secure",
        overrides_with = "grpc_client_tls_secure",
        hide = true
    )]
    no_grpc_client_tls_secure: bool,

    /// Disable TLS certificate verification i.e self signed, signed by fake CA.
    #[arg(
        long = "grpc-client-tls-skip-verify",
        overrides_with = "no_grpc_client_tls_skip_verify"
    )]
    grpc_client_tls_skip_verify: bool,
    #[arg(
        long = "no-grpc-client-tls-skip-verify",
        overrides_with = "grpc_client_tls_skip_verify",
        hide = true
    )]
    no_grpc_client_tls_skip_verify: bool,

    /// TLS Certificates to use to identify this client to the server.
    #[arg(
        long = "grpc-client-tls-cert",
        value_name = "FILE-PATH",
        default_value = ""
    )]
    pub(crate) grpc_client_tls_cert: String,

    /// TLS Key for the client's certificate.
    #[arg(
        long = "grpc-client-tls-key",
        value_name = "FILE-PATH",
        default_value = ""
    )]
    pub(crate) grpc_client_tls_key: String,

    /// TLS CA Certificates to use to verify gRPC servers.
    #[arg(
        long = "grpc-client-tls-ca",
        value_name = "FILE-PATH",
        default_value = ""
    )]
    pub(crate) grpc_client_tls_ca: String,

    /// Server name to verify the hostname on the returned gRPC certificates.
    #[arg(
        long = "grpc-client-server-name",
        value_name = "NAME",
        default_value = ""
    )]
    pub(crate) grpc_client_server_name: String,

    /// Compression algorithm to use for gRPC requests to other clients.
    #[arg(long = "grpc-compression", value_enum, default_value_t = GrpcCompression::None)]
    pub(crate) grpc_compression: GrpcCompression,

    /// TLS supported minimum version for gRPC client. 1.0 and 1.1 mean 1.2 (TLS 1.2 and 1.3
    /// are spoken).
    #[arg(long = "grpc-client-tls-min-version", value_enum, default_value_t = TlsVersion::V1_3)]
    pub(crate) grpc_client_tls_min_version: TlsVersion,
}

impl GrpcClientArgs {
    pub(crate) fn grpc_client_tls_secure(&self) -> bool {
        flag_value(
            self.grpc_client_tls_secure,
            self.no_grpc_client_tls_secure,
            false,
        )
    }

    pub(crate) fn grpc_client_tls_skip_verify(&self) -> bool {
        flag_value(
            self.grpc_client_tls_skip_verify,
            self.no_grpc_client_tls_skip_verify,
            false,
        )
    }
}

/// Flags of `strata query` (Thanos `cmd/thanos/query.go`).
#[derive(Debug, Clone, Args)]
pub(crate) struct QueryArgs {
    #[command(flatten)]
    pub(crate) http: HttpArgs,

    #[command(flatten)]
    pub(crate) grpc: GrpcServerArgs,

    #[command(flatten)]
    pub(crate) grpc_client: GrpcClientArgs,

    #[command(flatten)]
    pub(crate) web: WebArgs,

    /// Addresses of statically configured Thanos API servers (repeatable). The scheme may be
    /// prefixed with 'dns+' or 'dnssrv+' to detect Thanos API servers through respective DNS
    /// lookups.
    #[arg(long = "endpoint", value_name = "ENDPOINT")]
    pub(crate) endpoints: Vec<String>,

    /// Experimental: DNS name of statically configured Thanos API server groups (repeatable),
    /// queried round-robin instead of fanned out.
    #[arg(long = "endpoint-group", value_name = "ENDPOINT-GROUP")]
    pub(crate) endpoint_groups: Vec<String>,

    /// Addresses of statically configured Thanos API servers that are always used, even if the
    /// health check fails (repeatable).
    #[arg(long = "endpoint-strict", value_name = "ENDPOINT")]
    pub(crate) endpoints_strict: Vec<String>,

    /// Experimental: DNS name of Thanos API server groups that are always used, even if the
    /// health check fails (repeatable).
    #[arg(long = "endpoint-group-strict", value_name = "ENDPOINT-GROUP")]
    pub(crate) endpoint_groups_strict: Vec<String>,

    /// Deprecated alias of --endpoint (repeatable).
    #[arg(long = "store", value_name = "STORE")]
    pub(crate) stores: Vec<String>,

    /// Deprecated alias of --endpoint-strict (repeatable).
    #[arg(long = "store-strict", value_name = "STORE")]
    pub(crate) stores_strict: Vec<String>,

    /// Deprecated aliases of --endpoint (repeatable, hidden as in Thanos): addresses of rules,
    /// metadata, exemplars and targets API servers. Every endpoint is asked what it offers, so
    /// these are endpoints like any other.
    #[arg(long = "rule", value_name = "RULE", hide = true)]
    pub(crate) rule_endpoints: Vec<String>,
    #[arg(long = "metadata", value_name = "METADATA", hide = true)]
    pub(crate) metadata_endpoints: Vec<String>,
    #[arg(long = "exemplar", value_name = "EXEMPLAR", hide = true)]
    pub(crate) exemplar_endpoints: Vec<String>,
    #[arg(long = "target", value_name = "TARGET", hide = true)]
    pub(crate) target_endpoints: Vec<String>,

    #[command(flatten)]
    pub(crate) endpoint_sd_config: EndpointSdConfigArgs,

    /// Interval between endpoint config refreshes.
    #[arg(
        long = "endpoint.sd-config-reload-interval",
        value_name = "DURATION",
        default_value = "5m"
    )]
    pub(crate) endpoint_sd_config_reload_interval: Duration,

    /// (Deprecated) Path to files that contain addresses of store API servers. The path can be
    /// a glob pattern (repeatable).
    #[arg(long = "store.sd-files", value_name = "PATH")]
    pub(crate) store_sd_files: Vec<String>,

    /// (Deprecated) Refresh interval to re-read file SD files.
    #[arg(
        long = "store.sd-interval",
        value_name = "DURATION",
        default_value = "5m"
    )]
    pub(crate) store_sd_interval: Duration,

    /// Interval between DNS resolutions.
    #[arg(
        long = "store.sd-dns-interval",
        value_name = "DURATION",
        default_value = "30s"
    )]
    pub(crate) store_sd_dns_interval: Duration,

    /// Timeout before an unhealthy store is cleaned from the store UI page.
    #[arg(
        long = "store.unhealthy-timeout",
        value_name = "DURATION",
        default_value = "5m"
    )]
    pub(crate) store_unhealthy_timeout: Duration,

    /// If a Store doesn't send any data in this specified duration then a Store will be
    /// ignored and partial data will be returned if it's enabled. 0 disables timeout.
    #[arg(
        long = "store.response-timeout",
        value_name = "DURATION",
        default_value = "0ms"
    )]
    pub(crate) store_response_timeout: Duration,

    #[command(flatten)]
    pub(crate) store_limits: StoreLimitsArgs,

    /// Maximum time to process query by query node.
    #[arg(long = "query.timeout", value_name = "DURATION", default_value = "2m")]
    pub(crate) query_timeout: Duration,

    /// Default PromQL engine to use.
    #[arg(long = "query.promql-engine", value_enum, default_value_t = PromqlEngine::Prometheus)]
    pub(crate) promql_engine: PromqlEngine,

    /// Whether to enable extended rate functions (xrate, xincrease and xdelta). Only has effect
    /// when used with Thanos engine.
    #[arg(
        long = "query.enable-x-functions",
        overrides_with = "no_enable_x_functions"
    )]
    enable_x_functions: bool,
    #[arg(
        long = "no-query.enable-x-functions",
        overrides_with = "enable_x_functions",
        hide = true
    )]
    no_enable_x_functions: bool,

    /// PromQL query mode.
    #[arg(long = "query.mode", value_enum, default_value_t = QueryMode::Local)]
    pub(crate) query_mode: QueryMode,

    /// Maximum number of queries processed concurrently by query node.
    #[arg(long = "query.max-concurrent", value_name = "N", default_value_t = 20)]
    pub(crate) max_concurrent: usize,

    /// Maximum number of select requests made concurrently per a query.
    #[arg(
        long = "query.max-concurrent-select",
        value_name = "N",
        default_value_t = 4
    )]
    pub(crate) max_concurrent_select: usize,

    /// The maximum lookback duration for retrieving metrics during expression evaluations.
    /// Should be at least 2 times the slowest scrape interval. If unset the PromQL default of
    /// 5m is used.
    #[arg(long = "query.lookback-delta", value_name = "DURATION")]
    pub(crate) lookback_delta: Option<Duration>,

    /// Labels to treat as a replica indicator along which data is deduplicated (repeatable,
    /// also comma-separated). Queries can still disable it with 'dedup=false'.
    #[arg(
        long = "query.replica-label",
        value_name = "LABEL",
        value_delimiter = ','
    )]
    pub(crate) replica_labels: Vec<String>,

    /// Labels that partition the leaf queriers in distributed mode (repeatable).
    #[arg(long = "query.partition-label", value_name = "LABEL")]
    pub(crate) partition_labels: Vec<String>,

    /// Optional selection of query connection metric labels to be collected from endpoint set
    /// (repeatable).
    #[arg(
        long = "query.conn-metric.label",
        value_name = "LABEL",
        default_values_t = ["external_labels".to_owned(), "store_type".to_owned()]
    )]
    pub(crate) conn_metric_labels: Vec<String>,

    /// Deduplication algorithm for merging overlapping series. Needs --query.replica-label.
    #[arg(long = "deduplication.func", value_enum, default_value_t = QueryDedupFunc::Penalty)]
    pub(crate) dedup_func: QueryDedupFunc,

    /// The default metadata time range duration for retrieving labels through Labels and
    /// Series API when the range parameters are not specified. 0 means since the beginning.
    #[arg(
        long = "query.metadata.default-time-range",
        value_name = "DURATION",
        default_value = "0s"
    )]
    pub(crate) metadata_default_time_range: Duration,

    /// Query selector labels that will be exposed in info endpoint (repeated), name="value".
    #[arg(long = "selector-label", value_name = "NAME=\"VALUE\"")]
    pub(crate) selector_labels: Vec<FlagLabel>,

    /// Enable automatic adjustment (step / 5) to what source of data should be used in store
    /// gateways if no max_source_resolution param is specified.
    #[arg(
        long = "query.auto-downsampling",
        overrides_with = "no_auto_downsampling"
    )]
    auto_downsampling: bool,
    #[arg(
        long = "no-query.auto-downsampling",
        overrides_with = "auto_downsampling",
        hide = true
    )]
    no_auto_downsampling: bool,

    /// Enable partial response for queries if no partial_response param is specified (default
    /// on; --no-query.partial-response to disable).
    #[arg(
        long = "query.partial-response",
        overrides_with = "no_partial_response"
    )]
    partial_response: bool,
    #[arg(
        long = "no-query.partial-response",
        overrides_with = "partial_response",
        hide = true
    )]
    no_partial_response: bool,

    /// Allow for larger lookback duration for queries based on resolution (default on; hidden in Thanos).
    #[arg(
        long = "query.dynamic-lookback-delta",
        overrides_with = "no_dynamic_lookback_delta",
        hide = true
    )]
    dynamic_lookback_delta: bool,
    #[arg(
        long = "no-query.dynamic-lookback-delta",
        overrides_with = "dynamic_lookback_delta",
        hide = true
    )]
    no_dynamic_lookback_delta: bool,

    /// Default max_source_resolution of instant queries that ask for `auto` (hidden in Thanos).
    #[arg(
        long = "query.instant.default.max_source_resolution",
        value_name = "DURATION",
        default_value = "0s",
        hide = true
    )]
    pub(crate) instant_default_max_source_resolution: Duration,

    /// Timeout of the gRPC Info requests that probe endpoints (hidden in Thanos).
    #[arg(
        long = "endpoint.info-timeout",
        value_name = "DURATION",
        default_value = "5s",
        hide = true
    )]
    pub(crate) endpoint_info_timeout: Duration,

    /// Thanos engine only: fail instead of falling back to the Prometheus engine (hidden in Thanos).
    #[arg(
        long = "query.disable-fallback",
        overrides_with = "no_disable_fallback",
        hide = true
    )]
    disable_fallback: bool,
    #[arg(
        long = "no-query.disable-fallback",
        overrides_with = "disable_fallback",
        hide = true
    )]
    no_disable_fallback: bool,

    /// Distributed mode only: use the engines' lowest MinT (hidden in Thanos).
    #[arg(
        long = "query.distributed-with-overlapping-interval",
        overrides_with = "no_distributed_with_overlapping_interval",
        hide = true
    )]
    distributed_with_overlapping_interval: bool,
    #[arg(
        long = "no-query.distributed-with-overlapping-interval",
        overrides_with = "distributed_with_overlapping_interval",
        hide = true
    )]
    no_distributed_with_overlapping_interval: bool,

    /// Enable partial response for the rule endpoint (default on; hidden in Thanos).
    #[arg(
        long = "rule.partial-response",
        overrides_with = "no_rule_partial_response",
        hide = true
    )]
    rule_partial_response: bool,
    #[arg(
        long = "no-rule.partial-response",
        overrides_with = "rule_partial_response",
        hide = true
    )]
    no_rule_partial_response: bool,

    /// Enable partial response for the target endpoint (default on; hidden in Thanos).
    #[arg(
        long = "target.partial-response",
        overrides_with = "no_target_partial_response",
        hide = true
    )]
    target_partial_response: bool,
    #[arg(
        long = "no-target.partial-response",
        overrides_with = "target_partial_response",
        hide = true
    )]
    no_target_partial_response: bool,

    /// Enable partial response for the metric-metadata endpoint (default on; hidden in Thanos).
    #[arg(
        long = "metric-metadata.partial-response",
        overrides_with = "no_metric_metadata_partial_response",
        hide = true
    )]
    metric_metadata_partial_response: bool,
    #[arg(
        long = "no-metric-metadata.partial-response",
        overrides_with = "metric_metadata_partial_response",
        hide = true
    )]
    no_metric_metadata_partial_response: bool,

    /// Enable partial response for the exemplar endpoint (default on; hidden in Thanos).
    #[arg(
        long = "exemplar.partial-response",
        overrides_with = "no_exemplar_partial_response",
        hide = true
    )]
    exemplar_partial_response: bool,
    #[arg(
        long = "no-exemplar.partial-response",
        overrides_with = "exemplar_partial_response",
        hide = true
    )]
    no_exemplar_partial_response: bool,

    /// Enable partial response for the status endpoint (default on; hidden in Thanos).
    #[arg(
        long = "status.partial-response",
        overrides_with = "no_status_partial_response",
        hide = true
    )]
    status_partial_response: bool,
    #[arg(
        long = "no-status.partial-response",
        overrides_with = "status_partial_response",
        hide = true
    )]
    no_status_partial_response: bool,

    /// Series proxy strategy: eager or lazy (hidden in Thanos, for testing).
    #[arg(
        long = "grpc.proxy-strategy",
        value_name = "STRATEGY",
        default_value = "eager",
        hide = true
    )]
    pub(crate) grpc_proxy_strategy: String,

    /// Resolver to use for DNS lookups of endpoints: golang or miekgdns (hidden in Thanos).
    #[arg(
        long = "store.sd-dns-resolver",
        value_name = "RESOLVER",
        default_value = "miekgdns",
        hide = true
    )]
    pub(crate) store_sd_dns_resolver: String,

    /// Addresses injected into the DNS resolver (hidden in Thanos, for tests).
    #[arg(long = "inject-test-addresses", value_name = "ADDRESS", hide = true)]
    pub(crate) inject_test_addresses: Vec<String>,

    /// Buffered responses of the lazy proxy strategy (hidden in Thanos).
    #[arg(
        long = "query.lazy-retrieval-max-buffered-responses",
        value_name = "N",
        default_value_t = 20,
        hide = true
    )]
    pub(crate) lazy_retrieval_max_buffered_responses: usize,

    /// Directory to log currently active queries in the queries.active file.
    #[arg(
        long = "query.active-query-path",
        value_name = "DIR",
        default_value = ""
    )]
    pub(crate) active_query_path: String,

    /// Comma separated feature names to enable (promql-experimental-functions).
    #[arg(long = "enable-feature", value_name = "FEATURE", value_delimiter = ',')]
    pub(crate) enable_features: Vec<String>,

    /// Set default evaluation interval for sub queries.
    #[arg(
        long = "query.default-evaluation-interval",
        value_name = "DURATION",
        default_value = "1m"
    )]
    pub(crate) default_evaluation_interval: Duration,

    /// Set default step for range queries (used by the UI when no step is given).
    #[arg(
        long = "query.default-step",
        value_name = "DURATION",
        default_value = "1s"
    )]
    pub(crate) default_step: Duration,

    #[command(flatten)]
    pub(crate) selector_relabel: SelectorRelabelArgs,

    #[command(flatten)]
    pub(crate) request_logging: RequestLoggingArgs,

    /// The external Thanos Query URL that would be set in all alerts 'Source' field.
    #[arg(long = "alert.query-url", value_name = "URL")]
    pub(crate) alert_query_url: Option<String>,

    /// HTTP header to determine tenant.
    #[arg(
        long = "query.tenant-header",
        value_name = "HEADER",
        default_value = "THANOS-TENANT"
    )]
    pub(crate) tenant_header: String,

    /// Default tenant ID to use if tenant header is not present.
    #[arg(
        long = "query.default-tenant-id",
        value_name = "ID",
        default_value = "default-tenant"
    )]
    pub(crate) default_tenant_id: String,

    /// Use TLS client's certificate field to determine tenant (organization,
    /// organizationalUnit or commonName); overrides --query.tenant-header.
    #[arg(
        long = "query.tenant-certificate-field",
        value_name = "FIELD",
        default_value = ""
    )]
    pub(crate) tenant_certificate_field: TenantCertificateField,

    /// Enforce tenancy on Query APIs.
    #[arg(long = "query.enforce-tenancy", overrides_with = "no_enforce_tenancy")]
    enforce_tenancy: bool,
    #[arg(
        long = "no-query.enforce-tenancy",
        overrides_with = "enforce_tenancy",
        hide = true
    )]
    no_enforce_tenancy: bool,

    /// Developer flag, hidden: serve the query API over the TSDB blocks in DIR instead of
    /// Store API endpoints (used by tests and benchmarks until the fan-out of issue 5).
    #[arg(long = "debug.blocks-dir", value_name = "DIR", hide = true)]
    pub(crate) debug_blocks_dir: Option<std::path::PathBuf>,

    /// The quantiles for exporting metrics about the request duration quantiles.
    #[arg(
        long = "query.telemetry.request-duration-seconds-quantiles",
        value_name = "SECONDS",
        default_values_t = [0.1, 0.25, 0.75, 1.25, 1.75, 2.5, 3.0, 5.0, 10.0]
    )]
    pub(crate) telemetry_duration_quantiles: Vec<f64>,

    /// The quantiles for exporting metrics about the samples count quantiles.
    #[arg(
        long = "query.telemetry.request-samples-quantiles",
        value_name = "COUNT",
        default_values_t = [100.0, 1e3, 1e4, 1e5, 1e6]
    )]
    pub(crate) telemetry_samples_quantiles: Vec<f64>,

    /// The quantiles for exporting metrics about the series count quantiles.
    #[arg(
        long = "query.telemetry.request-series-seconds-quantiles",
        value_name = "COUNT",
        default_values_t = [10.0, 100.0, 1e3, 1e4, 1e5]
    )]
    pub(crate) telemetry_series_quantiles: Vec<f64>,

    /// Label name to use when enforcing tenancy (if --query.enforce-tenancy is enabled).
    #[arg(
        long = "query.tenant-label-name",
        value_name = "NAME",
        default_value = "tenant_id"
    )]
    pub(crate) tenant_label_name: String,
}

impl QueryArgs {
    pub(crate) fn enable_x_functions(&self) -> bool {
        flag_value(self.enable_x_functions, self.no_enable_x_functions, false)
    }

    pub(crate) fn auto_downsampling(&self) -> bool {
        flag_value(self.auto_downsampling, self.no_auto_downsampling, false)
    }

    /// Default true, as in Thanos.
    /// `--rule.partial-response`, `--target.partial-response`,
    /// `--metric-metadata.partial-response` and `--exemplar.partial-response` (default true).
    pub(crate) fn api_partial(&self) -> strata_query::ApiPartialDefaults {
        strata_query::ApiPartialDefaults {
            rules: flag_value(
                self.rule_partial_response,
                self.no_rule_partial_response,
                true,
            ),
            targets: flag_value(
                self.target_partial_response,
                self.no_target_partial_response,
                true,
            ),
            metric_metadata: flag_value(
                self.metric_metadata_partial_response,
                self.no_metric_metadata_partial_response,
                true,
            ),
            exemplars: flag_value(
                self.exemplar_partial_response,
                self.no_exemplar_partial_response,
                true,
            ),
        }
    }

    /// `--query.dynamic-lookback-delta` (default true).
    pub(crate) fn dynamic_lookback_delta(&self) -> bool {
        flag_value(
            self.dynamic_lookback_delta,
            self.no_dynamic_lookback_delta,
            true,
        )
    }

    /// The hidden Thanos switches that are set to something other than their default, by flag
    /// name (each is logged as having no effect).
    pub(crate) fn hidden_switches_off_default(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for (name, on, off, default) in [
            (
                "--query.disable-fallback",
                self.disable_fallback,
                self.no_disable_fallback,
                false,
            ),
            (
                "--query.distributed-with-overlapping-interval",
                self.distributed_with_overlapping_interval,
                self.no_distributed_with_overlapping_interval,
                false,
            ),
            (
                "--status.partial-response",
                self.status_partial_response,
                self.no_status_partial_response,
                true,
            ),
        ] {
            if flag_value(on, off, default) != default {
                out.push(name);
            }
        }
        out
    }

    pub(crate) fn partial_response(&self) -> bool {
        flag_value(self.partial_response, self.no_partial_response, true)
    }

    pub(crate) fn enforce_tenancy(&self) -> bool {
        flag_value(self.enforce_tenancy, self.no_enforce_tenancy, false)
    }

    /// `--query.replica-label` values, split on commas, empties removed, sorted and
    /// deduplicated (Thanos' `strutil.ParseFlagLabels`).
    pub(crate) fn replica_labels(&self) -> Vec<String> {
        let mut labels: Vec<String> = self
            .replica_labels
            .iter()
            .filter(|l| !l.is_empty())
            .cloned()
            .collect();
        labels.sort();
        labels.dedup();
        labels
    }

    pub(crate) async fn run(self, _global: &GlobalArgs) -> Result<()> {
        crate::cmd::query::run(self).await
    }
}
