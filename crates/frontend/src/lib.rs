//! The query frontend (`strata query-frontend`): a stateless HTTP service in front of the
//! queriers that makes long dashboards cheap to redraw, as Thanos' query frontend does.
//!
//! - **Range queries** (`/api/v1/query_range`) are aligned to their step
//!   (`--query-range.align-range-with-step`), cut into parts at multiples of
//!   `--query-range.split-interval` ([`split`]), answered part by part, at most
//!   `--query-range.max-query-parallelism` at once, each part retried on a 5xx or a failed
//!   connection, then joined ([`response::Matrix::merge`]). With a results cache
//!   ([`cache`]), a part is answered from what earlier requests fetched and the querier is
//!   asked only for the gaps. An answer to `max_source_resolution=auto` that starts late
//!   (raw data already deleted) is completed from 5m, then 1h data
//!   (`--query-range.request-downsampled`).
//! - **Metadata requests** (`/api/v1/labels`, `/api/v1/label/<name>/values`,
//!   `/api/v1/series`) get a default range (`--labels.default-time-range`), are cut at
//!   `--labels.split-interval` and joined as sets.
//! - **Everything else** (instant queries, rules, alerts, the UI, remote read, …) is passed
//!   to the querier as it came and its answer back as it went.
//!
//! Why parts join into the whole: a range query is evaluated at each step on its own, so
//! cutting between steps changes nothing but who computes which step. Queries whose answer
//! depends on the whole range (`@ start()`, `@ end()`), and requests for statistics or
//! plans, are passed whole. Invariants the tests hold: parts cover every step exactly once
//! (`split` property test); a merged answer equals the querier's answer to the whole
//! request, byte for byte (`crates/strata/tests/query_frontend.rs`, against a real Prometheus and a Strata
//! querier).

pub mod cache;
pub mod downstream;
pub mod metadata;
pub mod metrics;
pub mod request;
pub mod response;
pub mod server;
pub mod split;

use std::time::Duration;

pub use cache::{CacheConfig, Compression, ResultsCache};
pub use downstream::Downstream;
pub use server::{Frontend, router};

/// What the range query path does (`--query-range.*`).
#[derive(Debug, Clone)]
pub struct RangeConfig {
    /// `--query-range.align-range-with-step`.
    pub align_range_with_step: bool,
    /// `--query-range.split-interval` (zero: not split, or split dynamically).
    pub split_interval: Duration,
    /// `--query-range.min-split-interval`, `--query-range.max-split-interval` and
    /// `--query-range.horizontal-shards`: the interval chosen per query when
    /// `split_interval` is zero ([`RangeConfig::interval_for`]).
    pub min_split_interval: Duration,
    pub max_split_interval: Duration,
    pub horizontal_shards: u64,
    /// `--query-range.request-downsampled`: a query with `max_source_resolution=auto`
    /// whose answer starts late is asked again, for the missing start, from coarser data.
    pub request_downsampled: bool,
    /// `--query-range.max-retries-per-request`: attempts per part (at least one is made).
    pub max_retries: u32,
    /// `--query-range.max-query-length` (zero: no limit).
    pub max_query_length: Duration,
    /// `--query-range.max-query-parallelism`.
    pub max_query_parallelism: usize,
    /// `--query-range.response-cache-max-freshness`.
    pub max_freshness: Duration,
    /// `--query-range.partial-response`: `partial_response` for requests without one.
    pub partial_response: bool,
}

impl Default for RangeConfig {
    fn default() -> Self {
        RangeConfig {
            align_range_with_step: true,
            split_interval: Duration::from_secs(24 * 3600),
            min_split_interval: Duration::ZERO,
            max_split_interval: Duration::ZERO,
            horizontal_shards: 0,
            request_downsampled: true,
            max_retries: 5,
            max_query_length: Duration::ZERO,
            max_query_parallelism: 14,
            max_freshness: Duration::from_secs(60),
            partial_response: true,
        }
    }
}

impl RangeConfig {
    /// The split interval of a query over `range_ms` (milliseconds; 0: not split). Fixed
    /// with `--query-range.split-interval`; else, as Thanos chooses it dynamically, the
    /// maximum interval for a range of at least two of them, the range cut into
    /// `--query-range.horizontal-shards` pieces for one above the minimum interval, and the
    /// minimum interval below that.
    pub fn interval_for(&self, range_ms: i64) -> i64 {
        if !self.split_interval.is_zero() {
            return self.split_interval.as_millis() as i64;
        }
        let max = self.max_split_interval.as_millis() as i64;
        let min = self.min_split_interval.as_millis() as i64;
        if max > 0 && range_ms / max >= 2 {
            max
        } else if range_ms > min && self.horizontal_shards > 0 {
            (range_ms / self.horizontal_shards as i64).max(1)
        } else {
            min
        }
    }

    /// Checks the settings as Thanos does at start-up (same messages).
    pub fn validate(&self, cached: bool) -> Result<(), String> {
        let dynamic = !self.min_split_interval.is_zero()
            || !self.max_split_interval.is_zero()
            || self.horizontal_shards > 0;
        if cached && self.split_interval.is_zero() && !dynamic {
            return Err("split queries or split threshold interval should be greater than 0 when caching is enabled".into());
        }
        if dynamic {
            if !self.split_interval.is_zero() {
                return Err("split queries interval and dynamic query split interval cannot be set at the same time".into());
            }
            if self.horizontal_shards == 0 {
                return Err("min horizontal shards should be greater than 0 when query split threshold is enabled".into());
            }
            if self.max_split_interval.is_zero() {
                return Err("max query split interval should be greater than 0 when query split threshold is enabled".into());
            }
            if self.min_split_interval.is_zero() {
                return Err("min query split interval should be greater than 0 when query split threshold is enabled".into());
            }
        }
        Ok(())
    }
}

/// What the metadata path does (`--labels.*`).
#[derive(Debug, Clone)]
pub struct LabelsConfig {
    /// `--labels.split-interval` (zero: not split).
    pub split_interval: Duration,
    /// `--labels.max-retries-per-request`.
    pub max_retries: u32,
    /// `--labels.max-query-parallelism`.
    pub max_query_parallelism: usize,
    /// `--labels.response-cache-max-freshness`.
    pub max_freshness: Duration,
    /// `--labels.partial-response`.
    pub partial_response: bool,
    /// `--labels.default-time-range`.
    pub default_time_range: Duration,
}

impl Default for LabelsConfig {
    fn default() -> Self {
        LabelsConfig {
            split_interval: Duration::from_secs(24 * 3600),
            max_retries: 5,
            max_query_parallelism: 14,
            max_freshness: Duration::from_secs(60),
            partial_response: true,
            default_time_range: Duration::from_secs(24 * 3600),
        }
    }
}

/// The whole frontend's settings, built by the CLI from Thanos' flags.
#[derive(Debug, Clone)]
pub struct FrontendConfig {
    pub range: RangeConfig,
    pub labels: LabelsConfig,
    /// `--query-frontend.compress-responses`: gzip answers for clients that accept it.
    pub compress_responses: bool,
    /// `--query-frontend.log-queries-longer-than`: `Some(ZERO)` logs every query (Thanos'
    /// negative value), `None` none.
    pub log_queries_longer_than: Option<Duration>,
    /// `--query-frontend.org-id-header`: headers naming the requester (the first present
    /// wins, else `anonymous`): part of every cache key, and of the slow query log. The
    /// tenant headers are always among them.
    pub org_id_headers: Vec<String>,
    /// `--query-frontend.forward-header`: request headers passed on with the requests the
    /// frontend builds (range and metadata parts, instant queries); the tenant header always
    /// is. Requests passed through keep all their headers.
    pub forward_headers: Vec<String>,
    /// `--query-frontend.tenant-header`: where the tenant is read from; it reaches the
    /// querier as `THANOS-TENANT`.
    pub tenant_header: String,
    /// `--query-frontend.default-tenant-id`: the tenant of requests without the header.
    pub default_tenant: String,
    /// `--query-frontend.slow-query-logs-user-header`: the slow query log's `remote_user`.
    pub slow_query_logs_user_header: Option<String>,
    /// `--web.disable-cors`: no CORS headers.
    pub disable_cors: bool,
}

impl Default for FrontendConfig {
    fn default() -> Self {
        FrontendConfig {
            range: RangeConfig::default(),
            labels: LabelsConfig::default(),
            compress_responses: false,
            log_queries_longer_than: None,
            org_id_headers: Vec::new(),
            forward_headers: Vec::new(),
            tenant_header: TENANT_HEADER.to_string(),
            default_tenant: "default-tenant".to_string(),
            slow_query_logs_user_header: None,
            disable_cors: false,
        }
    }
}

/// The header Thanos components read the tenant from.
pub const TENANT_HEADER: &str = "THANOS-TENANT";
