//! `strata query-frontend`: range query splitting, retries and results caching in front of
//! the queriers (Thanos `cmd/thanos/query_frontend.go`).

use anyhow::Result;
use clap::{Args, ValueEnum};
use strata_model::Duration;

use super::common::{GlobalArgs, HttpArgs, RequestLoggingArgs, path_or_content_args};

path_or_content_args!(
    /// `--query-range.response-cache-config-file` / `--query-range.response-cache-config`.
    RangeCacheArgs,
    "query-range.response-cache-config",
    "YAML file that contains response cache configuration."
);

path_or_content_args!(
    /// `--labels.response-cache-config-file` / `--labels.response-cache-config`.
    LabelsCacheArgs,
    "labels.response-cache-config",
    "YAML file that contains response cache configuration."
);

path_or_content_args!(
    /// `--query-frontend.downstream-tripper-config-file` /
    /// `--query-frontend.downstream-tripper-config`.
    TripperArgs,
    "query-frontend.downstream-tripper-config",
    "YAML file that contains downstream tripper configuration. If your downstream URL is \
     localhost or 127.0.0.1 then it is highly recommended to increase max_idle_conns_per_host \
     to at least 100."
);

/// `--query-frontend.tenant-certificate-field`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CertificateField {
    #[value(name = "organization")]
    Organization,
    #[value(name = "organizationalUnit")]
    OrganizationalUnit,
    #[value(name = "commonName")]
    CommonName,
}

/// Flags of `strata query-frontend`.
#[derive(Debug, Clone, Args)]
pub(crate) struct QueryFrontendArgs {
    #[command(flatten)]
    pub(crate) http: HttpArgs,

    /// Whether to disable CORS headers to be set by Thanos. By default Thanos sets CORS
    /// headers to be allowed by all.
    #[arg(long = "web.disable-cors", overrides_with = "no_web_disable_cors")]
    pub(crate) web_disable_cors: bool,
    #[arg(
        long = "no-web.disable-cors",
        overrides_with = "web_disable_cors",
        hide = true
    )]
    no_web_disable_cors: bool,

    /// Mutate incoming queries to align their start and end with their step for better
    /// cache-ability. Note: Grafana dashboards do that by default (default on;
    /// --no-query-range.align-range-with-step to disable).
    #[arg(
        long = "query-range.align-range-with-step",
        overrides_with = "no_align_range_with_step"
    )]
    align_range_with_step: bool,
    #[arg(
        long = "no-query-range.align-range-with-step",
        overrides_with = "align_range_with_step",
        hide = true
    )]
    no_align_range_with_step: bool,

    /// Make additional query for downsampled data in case of empty or incomplete response to
    /// range request (default on; --no-query-range.request-downsampled to disable).
    #[arg(
        long = "query-range.request-downsampled",
        overrides_with = "no_request_downsampled"
    )]
    request_downsampled: bool,
    #[arg(
        long = "no-query-range.request-downsampled",
        overrides_with = "request_downsampled",
        hide = true
    )]
    no_request_downsampled: bool,

    /// Split query range requests by an interval and execute in parallel, it should be
    /// greater than 0 when query-range.response-cache-config is configured.
    #[arg(
        long = "query-range.split-interval",
        value_name = "DURATION",
        default_value = "24h"
    )]
    pub(crate) range_split_interval: Duration,

    /// Split query range requests above this interval in query-range.horizontal-shards
    /// requests of equal range. Using this parameter is not allowed with
    /// query-range.split-interval. One should also set query-range.split-min-horizontal-shards
    /// to a value greater than 1 to enable splitting.
    #[arg(
        long = "query-range.min-split-interval",
        value_name = "DURATION",
        default_value = "0"
    )]
    pub(crate) range_min_split_interval: Duration,

    /// Split query range below this interval in query-range.horizontal-shards. Queries with a
    /// range longer than this value will be split in multiple requests of this length.
    #[arg(
        long = "query-range.max-split-interval",
        value_name = "DURATION",
        default_value = "0"
    )]
    pub(crate) range_max_split_interval: Duration,

    /// Split queries in this many requests when query duration is below
    /// query-range.max-split-interval.
    #[arg(
        long = "query-range.horizontal-shards",
        value_name = "N",
        default_value_t = 0
    )]
    pub(crate) range_horizontal_shards: u64,

    /// Maximum number of retries for a single query range request; beyond this, the
    /// downstream error is returned.
    #[arg(
        long = "query-range.max-retries-per-request",
        value_name = "N",
        default_value_t = 5
    )]
    pub(crate) range_max_retries: u32,

    /// Enable experimental x- functions in query-frontend. --no-query-frontend.enable-x-functions
    /// for disabling.
    #[arg(
        long = "query-frontend.enable-x-functions",
        overrides_with = "no_enable_x_functions"
    )]
    pub(crate) enable_x_functions: bool,
    #[arg(
        long = "no-query-frontend.enable-x-functions",
        overrides_with = "enable_x_functions",
        hide = true
    )]
    no_enable_x_functions: bool,

    /// Limit the query time range (end - start time) in the query-frontend, 0 disables it.
    #[arg(
        long = "query-range.max-query-length",
        value_name = "DURATION",
        default_value = "0"
    )]
    pub(crate) range_max_query_length: Duration,

    /// Maximum number of query range requests will be scheduled in parallel by the Frontend.
    #[arg(
        long = "query-range.max-query-parallelism",
        value_name = "N",
        default_value_t = 14
    )]
    pub(crate) range_max_query_parallelism: usize,

    /// Most recent allowed cacheable result for query range requests, to prevent caching very
    /// recent results that might still be in flux.
    #[arg(
        long = "query-range.response-cache-max-freshness",
        value_name = "DURATION",
        default_value = "1m"
    )]
    pub(crate) range_max_freshness: Duration,

    /// Enable partial response for query range requests if no partial_response param is
    /// specified (default on; --no-query-range.partial-response to disable).
    #[arg(
        long = "query-range.partial-response",
        overrides_with = "no_range_partial_response"
    )]
    range_partial_response: bool,
    #[arg(
        long = "no-query-range.partial-response",
        overrides_with = "range_partial_response",
        hide = true
    )]
    no_range_partial_response: bool,

    #[command(flatten)]
    pub(crate) range_cache: RangeCacheArgs,

    /// Split labels requests by an interval and execute in parallel, it should be greater
    /// than 0 when labels.response-cache-config is configured.
    #[arg(
        long = "labels.split-interval",
        value_name = "DURATION",
        default_value = "24h"
    )]
    pub(crate) labels_split_interval: Duration,

    /// Maximum number of retries for a single label/series API request; beyond this, the
    /// downstream error is returned.
    #[arg(
        long = "labels.max-retries-per-request",
        value_name = "N",
        default_value_t = 5
    )]
    pub(crate) labels_max_retries: u32,

    /// Maximum number of labels requests will be scheduled in parallel by the Frontend.
    #[arg(
        long = "labels.max-query-parallelism",
        value_name = "N",
        default_value_t = 14
    )]
    pub(crate) labels_max_query_parallelism: usize,

    /// Most recent allowed cacheable result for labels requests, to prevent caching very
    /// recent results that might still be in flux.
    #[arg(
        long = "labels.response-cache-max-freshness",
        value_name = "DURATION",
        default_value = "1m"
    )]
    pub(crate) labels_max_freshness: Duration,

    /// Enable partial response for labels requests if no partial_response param is
    /// specified (default on; --no-labels.partial-response to disable).
    #[arg(
        long = "labels.partial-response",
        overrides_with = "no_labels_partial_response"
    )]
    labels_partial_response: bool,
    #[arg(
        long = "no-labels.partial-response",
        overrides_with = "labels_partial_response",
        hide = true
    )]
    no_labels_partial_response: bool,

    /// The default metadata time range duration for retrieving labels through Labels and
    /// Series API when the range parameters are not specified.
    #[arg(
        long = "labels.default-time-range",
        value_name = "DURATION",
        default_value = "24h"
    )]
    pub(crate) labels_default_time_range: Duration,

    #[command(flatten)]
    pub(crate) labels_cache: LabelsCacheArgs,

    /// Use compression in results cache. Supported values are: 'snappy' and '' (disable
    /// compression).
    #[arg(
        long = "cache-compression-type",
        value_name = "TYPE",
        default_value = ""
    )]
    pub(crate) cache_compression_type: String,

    /// URL of downstream Prometheus Query compatible API.
    #[arg(
        long = "query-frontend.downstream-url",
        value_name = "URL",
        default_value = "http://localhost:9090"
    )]
    pub(crate) downstream_url: String,

    #[command(flatten)]
    pub(crate) tripper: TripperArgs,

    /// Compress HTTP responses.
    #[arg(
        long = "query-frontend.compress-responses",
        overrides_with = "no_compress_responses"
    )]
    pub(crate) compress_responses: bool,
    #[arg(
        long = "no-query-frontend.compress-responses",
        overrides_with = "compress_responses",
        hide = true
    )]
    no_compress_responses: bool,

    /// Log queries that are slower than the specified duration. Set to 0 to disable. Set to
    /// < 0 to enable on all queries.
    #[arg(
        long = "query-frontend.log-queries-longer-than",
        value_name = "DURATION",
        default_value = "0",
        allow_hyphen_values = true
    )]
    pub(crate) log_queries_longer_than: String,

    /// Force query stats. Strata's querier does not count samples per query, so there are
    /// no stats to force.
    #[arg(
        long = "query-frontend.force-query-stats",
        overrides_with = "no_force_query_stats"
    )]
    pub(crate) force_query_stats: bool,
    #[arg(
        long = "no-query-frontend.force-query-stats",
        overrides_with = "force_query_stats",
        hide = true
    )]
    no_force_query_stats: bool,

    /// Deprecation Warning - This flag will be soon deprecated in favor of
    /// query-frontend.tenant-header and both flags cannot be used at the same time. Request
    /// header names used to identify the source of slow queries (repeated flag). The values of
    /// the header will be added to the org id field in the slow query log. If multiple headers
    /// match the request, the first matching arg specified will take precedence. If no
    /// headers match 'anonymous' will be used.
    #[arg(long = "query-frontend.org-id-header", value_name = "HTTP-HEADER-NAME")]
    pub(crate) org_id_headers: Vec<String>,

    /// List of headers forwarded by the query-frontend to downstream queriers, default is
    /// empty.
    #[arg(long = "query-frontend.forward-header", value_name = "HEADER")]
    pub(crate) forward_headers: Vec<String>,

    /// HTTP header to determine tenant.
    #[arg(
        long = "query-frontend.tenant-header",
        value_name = "HEADER",
        default_value = "THANOS-TENANT",
        hide = true
    )]
    pub(crate) tenant_header: String,

    /// Default tenant ID to use if tenant header is not present.
    #[arg(
        long = "query-frontend.default-tenant-id",
        value_name = "TENANT",
        default_value = "default-tenant",
        hide = true
    )]
    pub(crate) default_tenant: String,

    /// Use TLS client's certificate field to determine tenant for write requests. Must be one
    /// of organization, organizationalUnit or commonName. This setting will cause the
    /// query-frontend.tenant-header flag value to be ignored.
    #[arg(
        long = "query-frontend.tenant-certificate-field",
        value_enum,
        hide = true
    )]
    pub(crate) tenant_certificate_field: Option<CertificateField>,

    /// Number of shards to use when distributing shardable PromQL queries. For more details,
    /// you can refer to the Vertical query sharding proposal:
    /// https://thanos.io/tip/proposals-accepted/202205-vertical-query-sharding.md
    // The help text is Thanos' word for word, the bare URL included.
    #[allow(rustdoc::bare_urls)]
    #[arg(long = "query-frontend.vertical-shards", value_name = "N")]
    pub(crate) vertical_shards: Option<u32>,

    /// Set the value of the field remote_user in the slow query logs to the value of the
    /// given HTTP header. Falls back to reading the user from the basic auth header.
    #[arg(
        long = "query-frontend.slow-query-logs-user-header",
        value_name = "HEADER",
        default_value = ""
    )]
    pub(crate) slow_query_logs_user_header: String,

    #[command(flatten)]
    pub(crate) request_logging: RequestLoggingArgs,
}

impl QueryFrontendArgs {
    pub(crate) fn align_range_with_step(&self) -> bool {
        !self.no_align_range_with_step
    }

    pub(crate) fn request_downsampled(&self) -> bool {
        !self.no_request_downsampled
    }

    pub(crate) fn range_partial_response(&self) -> bool {
        !self.no_range_partial_response
    }

    pub(crate) fn labels_partial_response(&self) -> bool {
        !self.no_labels_partial_response
    }

    pub(crate) async fn run(self, _global: &GlobalArgs) -> Result<()> {
        crate::cmd::query_frontend::run(self).await
    }
}
