//! The Prometheus-compatible HTTP API (`/api/v1/...`) over Strata's PromQL engine, and
//! Thanos' Query API over gRPC beside it ([`grpc`]), which shares its state.
//!
//! This crate owns request parsing (parameters from the query string and from form bodies,
//! Prometheus' time and duration syntaxes, its validation messages), query admission
//! (`--query.max-concurrent`, `--query.timeout`, cancellation when the client goes away)
//! and the JSON the API answers with, byte for byte as Prometheus writes it ([`json`]).
//!
//! Queries run on blocking threads (the engine is synchronous and uses its own worker
//! pool); results are written to the client in chunks as they are encoded, so a large
//! matrix is never held twice in memory.
//!
//! **Invariants:** every failure is a JSON error envelope with Prometheus' `errorType` and
//! HTTP status, never a panic or a bare 500; the router has no state of its own beyond the
//! [`ApiConfig`] it is built from.

pub mod grpc;
pub mod json;

mod active;
pub use active::{ActiveQuery, ActiveQueryTracker};

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use strata_model::{Labels, Matcher};
use strata_promql::{Engine, Error, QueryContext, QueryOutput, Storage, Value};
use tokio::sync::Semaphore;

/// `/api/v1/status/buildinfo`.
#[derive(Debug, Clone, Default)]
pub struct BuildInfo {
    pub version: String,
    pub revision: String,
    pub branch: String,
    pub build_user: String,
    pub build_date: String,
    pub go_version: String,
}

/// `max_source_resolution`: how coarse downsampled data a query may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxSourceResolution {
    /// `auto`: a fifth of the query step, as Thanos' `--query.auto-downsampling` does.
    Auto,
    /// A resolution window in milliseconds (`0s` or `raw`: raw data only).
    Millis(i64),
}

/// Thanos' per-request query parameters, which choose how the storage behind a request
/// merges what the stores return. They are parsed here, where every other parameter is,
/// and interpreted by the [`StorageProvider`], which knows the flag defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestOptions {
    /// `dedup` (default true): merge series that differ only in replica labels.
    pub dedup: bool,
    /// `replicaLabels[]`: replaces `--query.replica-label` for this request when given.
    pub replica_labels: Option<Vec<String>>,
    /// `partial_response`: `None` means the `--query.partial-response` default.
    pub partial_response: Option<bool>,
    /// `max_source_resolution`: `None` means the `--query.auto-downsampling` default.
    pub max_source_resolution: Option<MaxSourceResolution>,
    /// `storeMatch[]`: one matcher set per selector. A store is queried only if one of the
    /// sets matches its `__address__` (matchers on other labels are ignored, as Thanos does).
    /// Empty: every store.
    pub store_matchers: Vec<Vec<Matcher>>,
    /// Whose request it is: the `--query.tenant-header` header's value, else
    /// `--query.default-tenant-id`.
    pub tenant: String,
}

impl Default for RequestOptions {
    fn default() -> Self {
        RequestOptions {
            dedup: true,
            replica_labels: None,
            partial_response: None,
            max_source_resolution: None,
            store_matchers: Vec::new(),
            tenant: DEFAULT_TENANT.to_string(),
        }
    }
}

/// `--query.default-tenant-id`'s default, as in Thanos.
pub const DEFAULT_TENANT: &str = "default-tenant";

/// Where a request's tenant comes from: `--query.tenant-header` and
/// `--query.default-tenant-id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantConfig {
    /// The header naming the tenant (Thanos' default `THANOS-TENANT`; matched without
    /// regard to case, as HTTP header names are).
    pub header: String,
    /// The tenant of a request without the header.
    pub default_tenant: String,
}

impl Default for TenantConfig {
    fn default() -> Self {
        TenantConfig {
            header: "THANOS-TENANT".to_string(),
            default_tenant: DEFAULT_TENANT.to_string(),
        }
    }
}

impl TenantConfig {
    /// The tenant of a request with these headers. A header that is not visible ASCII is
    /// refused rather than guessed at: under `--query.enforce-tenancy` it picks the data.
    fn tenant(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        match headers.get(self.header.as_str()) {
            None => Ok(self.default_tenant.clone()),
            Some(v) => match v.to_str() {
                Ok("") => Ok(self.default_tenant.clone()),
                Ok(t) => Ok(t.to_string()),
                Err(_) => Err(ApiError::bad_data(format!(
                    "the {} header is not a valid tenant name (visible ASCII only)",
                    self.header
                ))),
            },
        }
    }
}

/// One endpoint in `/api/v1/stores`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreStatus {
    /// The endpoint address.
    pub name: String,
    /// When it was last probed (ms since the epoch; 0 if never).
    pub last_check_ms: i64,
    /// Why the last probe failed, if it did.
    pub last_error: Option<String>,
    /// Its external label sets.
    pub label_sets: Vec<Labels>,
    /// The time range it advertises (ms).
    pub min_time: i64,
    pub max_time: i64,
}

/// Builds the [`Storage`] a request reads from. The querier answers each request with a
/// fan-out configured by that request's options; a fixed storage ([`FixedStorage`]) ignores
/// them. Kept as a trait so this crate does not depend on the querier.
pub trait StorageProvider: Send + Sync + std::fmt::Debug {
    /// The storage for a request with these options.
    fn storage(&self, opts: &RequestOptions) -> Arc<dyn Storage>;

    /// The lookback delta (ms) for a request with these options and step (0: instant),
    /// given the engine's: a querier reading downsampled data looks back further
    /// (`--query.dynamic-lookback-delta`). The default keeps the engine's.
    fn lookback_delta_ms(&self, _opts: &RequestOptions, _step_ms: i64, lookback_ms: i64) -> i64 {
        lookback_ms
    }

    /// The storage for a metadata request (`series`, `labels`, `label/<name>/values`), and
    /// where it leaves its warnings: [`Storage`]'s metadata methods return no warnings, yet
    /// under partial response a failed store must still be reported in the JSON.
    fn metadata_storage(&self, opts: &RequestOptions) -> (Arc<dyn Storage>, MetadataWarnings) {
        (self.storage(opts), MetadataWarnings::default())
    }

    /// The endpoints for `/api/v1/stores`, keyed by component type (`sidecar`, `store`, …).
    fn stores(&self) -> BTreeMap<String, Vec<StoreStatus>> {
        BTreeMap::new()
    }

    /// Metric metadata for `/api/v1/metadata`: of `metric` only unless it is empty, of at
    /// most `limit` metrics unless `limit` is negative. The default has none: blocks carry no
    /// metadata (the querier asks its endpoints' Metadata API).
    fn metric_metadata(
        &self,
        metric: String,
        limit: i32,
        opts: &RequestOptions,
    ) -> futures::future::BoxFuture<'static, Result<MetadataAnswer, strata_promql::StorageError>>
    {
        let _ = (metric, limit, opts);
        Box::pin(async { Ok(MetadataAnswer::default()) })
    }

    /// Exemplars in `[start, end]` (ms) of the series `selectors` select (the selectors of
    /// `query`), for `/api/v1/query_exemplars`. The default has none: blocks carry no
    /// exemplars (the querier asks its endpoints' Exemplars API).
    fn exemplars(
        &self,
        selectors: Vec<Vec<Matcher>>,
        start: i64,
        end: i64,
        opts: &RequestOptions,
    ) -> futures::future::BoxFuture<'static, Result<EncodedAnswer, strata_promql::StorageError>>
    {
        let _ = (selectors, start, end, opts);
        nothing("[]")
    }

    /// Scrape targets for `/api/v1/targets`, of one state when `state` is given. The
    /// default has none (the querier asks its endpoints' Targets API).
    fn targets(
        &self,
        state: Option<TargetState>,
        opts: &RequestOptions,
    ) -> futures::future::BoxFuture<'static, Result<EncodedAnswer, strata_promql::StorageError>>
    {
        let _ = (state, opts);
        nothing(r#"{"activeTargets":[],"droppedTargets":[]}"#)
    }

    /// Rules and their alerts, for `/api/v1/rules` and `/api/v1/alerts`. The default has
    /// none: blocks carry no rules (the querier asks its endpoints' Rules API).
    fn rules(
        &self,
        query: RulesQuery,
        view: RulesView,
        opts: &RequestOptions,
    ) -> futures::future::BoxFuture<'static, Result<EncodedAnswer, strata_promql::StorageError>>
    {
        let _ = (query, opts);
        nothing(match view {
            RulesView::Rules => r#"{"groups":[]}"#,
            RulesView::Alerts => r#"{"alerts":[]}"#,
        })
    }
}

/// An empty answer: `data` is the endpoint's JSON for nothing.
fn nothing(
    data: &'static str,
) -> futures::future::BoxFuture<'static, Result<EncodedAnswer, strata_promql::StorageError>> {
    Box::pin(async move {
        Ok(EncodedAnswer {
            data: data.to_string(),
            warnings: Vec::new(),
        })
    })
}

/// What `/api/v1/rules` and `/api/v1/alerts` ask for.
#[derive(Debug, Clone, Default)]
pub struct RulesQuery {
    /// `type`: `alert` or `record`; `None` for both.
    pub kind: Option<RuleKind>,
    /// `rule_name[]`, `rule_group[]`, `file[]`: when given, only those.
    pub rule_names: Vec<String>,
    pub rule_groups: Vec<String>,
    pub files: Vec<String>,
    /// `match[]`: only rules whose labels match one of the selectors (parsed, and as written).
    pub matchers: Vec<Vec<Matcher>>,
    pub matcher_strings: Vec<String>,
}

/// A target state of `/api/v1/targets`' `state` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetState {
    Active,
    Dropped,
}

/// A rule type of `/api/v1/rules`' `type` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    Alert,
    Record,
}

/// Which of the two rule endpoints answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RulesView {
    /// `/api/v1/rules`: `{"groups": […]}`.
    Rules,
    /// `/api/v1/alerts`: `{"alerts": […]}`, the alerting rules' alerts.
    Alerts,
}

/// An answer whose `data` the storage has already encoded, and its warnings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncodedAnswer {
    pub data: String,
    pub warnings: Vec<String>,
}

/// One metadata entry of a metric, as `/api/v1/metadata` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricMeta {
    /// `counter`, `gauge`, `histogram`, `summary`, `unknown`, …
    pub kind: String,
    pub help: String,
    pub unit: String,
}

/// `/api/v1/metadata`'s answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataAnswer {
    /// Metric name to its distinct entries.
    pub metrics: BTreeMap<String, Vec<MetricMeta>>,
    /// Sources that failed under partial response, and their own warnings.
    pub warnings: Vec<String>,
}

/// Warnings collected by a storage during one metadata request.
pub type MetadataWarnings = Arc<std::sync::Mutex<Vec<String>>>;

/// A storage that answers every request the same way (`--debug.blocks-dir`, tests).
#[derive(Debug, Clone)]
pub struct FixedStorage(pub Arc<dyn Storage>);

impl StorageProvider for FixedStorage {
    fn storage(&self, _: &RequestOptions) -> Arc<dyn Storage> {
        self.0.clone()
    }
}

/// Everything the API serves from.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The engine (lookback delta, features).
    pub engine: Engine,
    /// Where series come from, per request.
    pub storage: Arc<dyn StorageProvider>,
    /// `--query.timeout`: the longest a query may run.
    pub query_timeout: Duration,
    /// `--query.max-concurrent`: queries evaluated at once; more wait.
    pub max_concurrent: usize,
    /// `/api/v1/status/flags`: every flag and its value.
    pub flags: BTreeMap<String, String>,
    /// `/api/v1/status/buildinfo`.
    pub build: BuildInfo,
    /// Process start time (ms), for `/api/v1/status/runtimeinfo`.
    pub start_time_ms: i64,
    /// Send Thanos' permissive CORS headers on API responses (`--web.disable-cors` unset).
    pub cors: bool,
    /// Whose request it is.
    pub tenancy: TenantConfig,
    /// `--query.metadata.default-time-range`: the range of a `series`, `labels` or
    /// `label/<name>/values` request without `start`/`end` (zero: all time).
    pub metadata_default_range: Duration,
    /// `--query.active-query-path`: where queries being evaluated are logged.
    pub active_queries: Option<Arc<ActiveQueryTracker>>,
}

#[derive(Debug)]
struct ApiState {
    cfg: ApiConfig,
    slots: Arc<Semaphore>,
}

/// Responses are written in pieces of about this size.
const CHUNK: usize = 64 * 1024;

/// The `/api/v1` routes (to be nested under `--web.route-prefix` by the caller).
pub fn router(cfg: ApiConfig) -> Router {
    router_and_grpc(cfg).0
}

/// The `/api/v1` routes and the Query API over gRPC ([`grpc::QueryGrpc`]), sharing one state:
/// a query on either counts against the same `--query.max-concurrent` slots.
pub fn router_and_grpc(cfg: ApiConfig) -> (Router, grpc::QueryGrpc) {
    let slots = Arc::new(Semaphore::new(cfg.max_concurrent.max(1)));
    let cors = cfg.cors;
    let state = Arc::new(ApiState { cfg, slots });
    let grpc = grpc::QueryGrpc {
        state: state.clone(),
    };
    let router = Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/metadata", get(metadata))
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/targets", get(targets))
        .route(
            "/api/v1/query_exemplars",
            get(query_exemplars).post(query_exemplars),
        )
        .route("/api/v1/stores", get(stores))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route("/api/v1/status/flags", get(flags))
        .route("/api/v1/status/runtimeinfo", get(runtimeinfo))
        .with_state(state);
    (with_cors(router, cors), grpc)
}

/// The routes of a ruler's API: `/api/v1/rules`, `/api/v1/alerts` and the status pages, as
/// Thanos' ruler serves them (no query endpoints: a ruler keeps no series to query).
pub fn rules_router(cfg: ApiConfig) -> Router {
    let cors = cfg.cors;
    let state = Arc::new(ApiState {
        slots: Arc::new(Semaphore::new(cfg.max_concurrent.max(1))),
        cfg,
    });
    let router = Router::new()
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route("/api/v1/status/flags", get(flags))
        .route("/api/v1/status/runtimeinfo", get(runtimeinfo))
        .with_state(state);
    with_cors(router, cors)
}

/// `router` with Thanos' CORS headers on every response when `cors`.
fn with_cors(router: Router, cors: bool) -> Router {
    if cors {
        router.layer(axum::middleware::map_response(add_cors))
    } else {
        router
    }
}

/// The CORS headers Thanos' API sets on every response unless `--web.disable-cors`.
async fn add_cors(mut r: Response) -> Response {
    let h = r.headers_mut();
    for (k, v) in [
        (
            "access-control-allow-headers",
            "Accept, Accept-Encoding, Authorization, Content-Type, Origin",
        ),
        ("access-control-allow-methods", "GET, OPTIONS"),
        ("access-control-allow-origin", "*"),
        ("access-control-expose-headers", "Date"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    r
}

/// An API error: Prometheus' `errorType` and message.
#[derive(Debug)]
struct ApiError {
    kind: &'static str,
    msg: String,
    warnings: Vec<String>,
}

impl ApiError {
    fn bad_data(msg: impl Into<String>) -> Self {
        ApiError {
            kind: "bad_data",
            msg: msg.into(),
            warnings: Vec::new(),
        }
    }

    /// A storage's failure (an endpoint that failed without partial response, say).
    fn storage(e: strata_promql::StorageError) -> Self {
        ApiError {
            kind: e.error_type(),
            msg: e.message,
            warnings: Vec::new(),
        }
    }

    fn param(name: &str, msg: impl std::fmt::Display) -> Self {
        ApiError::bad_data(format!("invalid parameter {name:?}: {msg}"))
    }

    fn from_query(e: Error) -> Self {
        let kind = e.error_type();
        let msg = match &e {
            Error::Parse(_) | Error::BadQuery(_) => format!("invalid parameter \"query\": {e}"),
            _ => e.to_string(),
        };
        ApiError {
            kind,
            msg,
            warnings: Vec::new(),
        }
    }

    fn status(&self) -> StatusCode {
        match self.kind {
            "bad_data" => StatusCode::BAD_REQUEST,
            "execution" => StatusCode::UNPROCESSABLE_ENTITY,
            "canceled" => StatusCode::from_u16(499).expect("valid status"),
            "timeout" => StatusCode::SERVICE_UNAVAILABLE,
            "not_found" => StatusCode::NOT_FOUND,
            "not_acceptable" => StatusCode::NOT_ACCEPTABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json::error_body(self.kind, &self.msg, &self.warnings);
        let mut r = json_response(self.status(), body);
        no_store(&mut r);
        r
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Request parameters: form body first (it takes precedence, as in Go's `FormValue`), then
/// the query string.
#[derive(Debug, Default)]
struct Params {
    pairs: Vec<(String, String)>,
    /// The request's headers (the tenant header is read from them).
    headers: HeaderMap,
}

impl Params {
    fn new(query: Option<String>, headers: &HeaderMap, body: &Bytes) -> Result<Self, ApiError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if is_form && !body.is_empty() {
            let b: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
                .map_err(|e| ApiError::bad_data(format!("error parsing form values: {e}")))?;
            pairs.extend(b);
        }
        if let Some(q) = query {
            let q: Vec<(String, String)> = serde_urlencoded::from_str(&q)
                .map_err(|e| ApiError::bad_data(format!("error parsing form values: {e}")))?;
            pairs.extend(q);
        }
        Ok(Params {
            pairs,
            headers: headers.clone(),
        })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Go's `strconv.ParseBool`, which Thanos uses for `dedup` and `partial_response`.
fn parse_bool(name: &str, s: &str) -> Result<bool, ApiError> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(ApiError::param(
            name,
            format!("cannot parse {s:?} as a boolean"),
        )),
    }
}

/// Parses Thanos' querier parameters (`dedup`, `replicaLabels[]`, `partial_response`,
/// `max_source_resolution`, `storeMatch[]`) and the tenant header.
fn request_options(
    p: &Params,
    engine: &Engine,
    tenancy: &TenantConfig,
) -> Result<RequestOptions, ApiError> {
    let mut o = RequestOptions {
        tenant: tenancy.tenant(&p.headers)?,
        ..RequestOptions::default()
    };
    for m in p.all("storeMatch[]") {
        o.store_matchers.push(
            engine
                .parse_selector(m)
                .map_err(|e| ApiError::param("storeMatch[]", e))?,
        );
    }
    if let Some(v) = p.get("dedup") {
        o.dedup = parse_bool("dedup", v)?;
    }
    let replicas: Vec<String> = p
        .all("replicaLabels[]")
        .into_iter()
        .flat_map(|v| v.split(','))
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect();
    if !replicas.is_empty() {
        o.replica_labels = Some(replicas);
    }
    if let Some(v) = p.get("partial_response") {
        o.partial_response = Some(parse_bool("partial_response", v)?);
    }
    if let Some(v) = p.get("max_source_resolution") {
        o.max_source_resolution = Some(match v {
            "auto" => MaxSourceResolution::Auto,
            "raw" => MaxSourceResolution::Millis(0),
            _ => {
                let ms =
                    parse_duration(v).map_err(|e| ApiError::param("max_source_resolution", e))?;
                if ms < 0 {
                    return Err(ApiError::param(
                        "max_source_resolution",
                        "negative duration is not accepted",
                    ));
                }
                MaxSourceResolution::Millis(ms)
            }
        });
    }
    Ok(o)
}

/// Prometheus' `parseTime`: Unix seconds (fractions rounded to milliseconds) or RFC 3339.
/// Seconds beyond what milliseconds in an `i64` hold saturate (the first and last
/// representable instants) rather than overflow.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>()
        && f.is_finite()
    {
        let secs = f.trunc();
        let frac = ((f - secs) * 1000.0).round() / 1000.0;
        return Ok((secs as i64)
            .saturating_mul(1000)
            .saturating_add((frac * 1000.0).round() as i64));
    }
    strata_model::timestamp::parse_rfc3339(s)
        .map_err(|_| format!("cannot parse {s:?} to a valid timestamp"))
}

/// Prometheus' `parseDuration`: float seconds or a duration (`5m`), in milliseconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    if let Ok(d) = s.parse::<f64>() {
        let ns = d * 1e9;
        if !ns.is_finite() || ns > i64::MAX as f64 || ns < i64::MIN as f64 {
            return Err(format!(
                "cannot parse {s:?} to a valid duration. It overflows int64"
            ));
        }
        return Ok((ns as i64) / 1_000_000);
    }
    strata_model::Duration::parse_prometheus(s)
        .map(|d| d.as_millis_i64())
        .map_err(|_| format!("cannot parse {s:?} to a valid duration"))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn time_param(p: &Params, name: &str, default: i64) -> Result<i64, ApiError> {
    match p.get(name) {
        None => Ok(default),
        Some(s) => parse_time(s).map_err(|e| ApiError::param(name, e)),
    }
}

/// Cancels the query when the request goes away before the query finishes.
struct CancelOnDrop(QueryContext);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl ApiState {
    /// A metadata request's `start` and `end`: where one is absent, all time, or with
    /// `--query.metadata.default-time-range` the last that long up to now (Thanos'
    /// `parseMetadataTimeRange`).
    fn metadata_range(&self, p: &Params) -> Result<(i64, i64), ApiError> {
        let (default_start, default_end) = match self.cfg.metadata_default_range {
            d if d.is_zero() => (MIN_TIME, MAX_TIME),
            d => {
                let now = now_ms();
                (now.saturating_sub(d.as_millis() as i64), now)
            }
        };
        let start = time_param(p, "start", default_start)?;
        let end = time_param(p, "end", default_end)?;
        if end < start {
            return Err(ApiError::bad_data(
                "end timestamp must not be before start time",
            ));
        }
        Ok((start, end))
    }

    /// The storage for this request's querier options.
    /// The storage of a query with these parameters and step (0: instant), and the engine
    /// to evaluate it with when its lookback differs from the configured one (the
    /// provider's dynamic lookback for downsampled data).
    fn query_storage(
        &self,
        p: &Params,
        step_ms: i64,
    ) -> Result<(Arc<dyn Storage>, Option<Engine>), ApiError> {
        let opts = request_options(p, &self.cfg.engine, &self.cfg.tenancy)?;
        let engine = self.engine_for(&opts, step_ms, None);
        Ok((self.cfg.storage.storage(&opts), engine))
    }

    /// An engine with the request's lookback (`requested`, else the provider's for these
    /// options), when it is not the configured engine's.
    fn engine_for(
        &self,
        opts: &RequestOptions,
        step_ms: i64,
        requested: Option<i64>,
    ) -> Option<Engine> {
        let configured = self.cfg.engine.options().lookback_delta_ms;
        let lookback = requested.unwrap_or_else(|| {
            self.cfg
                .storage
                .lookback_delta_ms(opts, step_ms, configured)
        });
        (lookback != configured).then(|| {
            Engine::new(strata_promql::EngineOptions {
                lookback_delta_ms: lookback,
                ..self.cfg.engine.options().clone()
            })
        })
    }

    fn context(&self, p: &Params) -> Result<QueryContext, ApiError> {
        let mut timeout = self.cfg.query_timeout;
        if let Some(t) = p.get("timeout") {
            let ms = parse_duration(t).map_err(|e| ApiError::param("timeout", e))?;
            timeout = timeout.min(Duration::from_millis(ms.max(0) as u64));
        }
        Ok(QueryContext::with_timeout(timeout))
    }

    /// Runs a query on a blocking thread once a slot is free, within `span` (the evaluation's
    /// span, for `--tracing.config`; the store calls it makes are its children).
    async fn run<F>(
        &self,
        query: &str,
        ctx: QueryContext,
        (storage, engine): (Arc<dyn Storage>, Option<Engine>),
        span: tracing::Span,
        f: F,
    ) -> Result<QueryOutput, ApiError>
    where
        F: FnOnce(&Engine, &dyn Storage, &QueryContext) -> Result<QueryOutput, Error>
            + Send
            + 'static,
    {
        let _permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::from_query(Error::Canceled("query queue")))?;
        // In the active query log while it runs (freed however the request ends).
        let _active = self
            .cfg
            .active_queries
            .as_ref()
            .and_then(|t| t.insert(query));
        let guard = CancelOnDrop(ctx.clone());
        let engine = engine.unwrap_or_else(|| self.cfg.engine.clone());
        let res = tokio::task::spawn_blocking(move || {
            span.in_scope(|| f(&engine, storage.as_ref(), &ctx))
        })
        .await
        .map_err(|e| ApiError {
            kind: "internal",
            msg: format!("query evaluation failed: {e}"),
            warnings: Vec::new(),
        })?;
        std::mem::forget(guard);
        res.map_err(ApiError::from_query)
    }
}

/// Series encoded per parallel batch: big enough to keep both cores busy, small enough
/// that a batch's JSON stays a few megabytes.
const ENCODE_BATCH: usize = 256;

/// Streams a query result as the success envelope. Series are encoded in parallel batches
/// on the engine's worker pool and written in order.
fn stream_result(out: QueryOutput) -> Response {
    let partial = !out.annotations.warnings.is_empty();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(4);
    tokio::task::spawn_blocking(move || {
        // Declared before the result so that it runs after the result is freed.
        let _release = strata_runtime::alloc::ReleaseFreedOnDrop;
        let out = out;
        let mut buf = String::with_capacity(CHUNK + 1024);
        buf.push_str("{\"status\":\"success\",\"data\":");
        let send = |b: &mut String| -> bool {
            let chunk = Bytes::from(std::mem::take(b));
            b.reserve(CHUNK + 1024);
            tx.blocking_send(Ok(chunk)).is_ok()
        };
        let ok = match &out.value {
            Value::Matrix(series) => {
                encode_list(&mut buf, "matrix", series, json::write_series, &send)
            }
            Value::Vector(samples) => {
                encode_list(&mut buf, "vector", samples, json::write_sample, &send)
            }
            other => {
                let mut emit = |b: &mut String| send(b);
                json::write_query_data(&mut buf, other, CHUNK, &mut emit)
            }
        };
        if !ok {
            return;
        }
        let warnings: Vec<String> = out.annotations.warnings.iter().cloned().collect();
        let infos: Vec<String> = out.annotations.infos.iter().cloned().collect();
        json::write_envelope_tail(&mut buf, &warnings, &infos);
        let _ = tx.blocking_send(Ok(Bytes::from(buf)));
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if partial {
        no_store(&mut r);
    }
    r
}

/// `Cache-Control: no-store` on an error or an answer with warnings (a partial response),
/// as Thanos' querier sets it: a query frontend in front then caches neither.
fn no_store(r: &mut Response) {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// `{"resultType":"<kind>","result":[...]}` with the items encoded in parallel: each batch
/// is split into one contiguous run per worker, each run is encoded into its own buffer, and
/// the buffers are sent in order as they are (no copy into a common buffer).
fn encode_list<T: Sync>(
    buf: &mut String,
    kind: &str,
    items: &[T],
    write: fn(&mut String, &T),
    send: &dyn Fn(&mut String) -> bool,
) -> bool {
    use rayon::prelude::*;
    buf.push_str("{\"resultType\":\"");
    buf.push_str(kind);
    buf.push_str("\",\"result\":[");
    let workers = rayon::current_num_threads().max(1);
    let mut first = true;
    for batch in items.chunks(ENCODE_BATCH * workers) {
        let run = batch.len().div_ceil(workers);
        let mut parts: Vec<String> = batch
            .par_chunks(run)
            .map(|items| {
                let mut s = String::with_capacity(items.len() * 64);
                for (i, it) in items.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    write(&mut s, it);
                }
                s
            })
            .collect();
        for p in &mut parts {
            if !first {
                buf.push(',');
            }
            first = false;
            if buf.len() + p.len() < CHUNK {
                buf.push_str(p);
                continue;
            }
            if !buf.is_empty() && !send(buf) {
                return false;
            }
            if !send(p) {
                return false;
            }
        }
        if buf.len() >= CHUNK && !send(buf) {
            return false;
        }
    }
    buf.push_str("]}");
    true
}

async fn query(
    State(st): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let res = async {
        let p = Params::new(q, &headers, &body)?;
        let t = time_param(&p, "time", now_ms())?;
        let ctx = st.context(&p)?;
        let storage = st.query_storage(&p, 0)?;
        let qs = p.get("query").unwrap_or("").to_string();
        let span = tracing::info_span!("promql_instant_query", query = %qs, time = t);
        st.run(&qs.clone(), ctx, storage, span, move |e, s, c| {
            e.instant(s, &qs, t, c)
        })
        .await
    }
    .await;
    match res {
        Ok(out) => stream_result(out),
        Err(e) => e.into_response(),
    }
}

async fn query_range(
    State(st): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let res = async {
        let p = Params::new(q, &headers, &body)?;
        let start =
            parse_time(p.get("start").unwrap_or("")).map_err(|e| ApiError::param("start", e))?;
        let end = parse_time(p.get("end").unwrap_or("")).map_err(|e| ApiError::param("end", e))?;
        if end < start {
            return Err(ApiError::param(
                "end",
                "end timestamp must not be before start time",
            ));
        }
        let step =
            parse_duration(p.get("step").unwrap_or("")).map_err(|e| ApiError::param("step", e))?;
        match step_problem(start, end, step) {
            None => {}
            Some(StepProblem::NotPositive) => {
                return Err(ApiError::param(
                    "step",
                    "zero or negative query resolution step widths are not accepted. Try a \
                     positive integer",
                ));
            }
            Some(StepProblem::TooManyPoints) => {
                return Err(ApiError::bad_data(
                    "exceeded maximum resolution of 11,000 points per timeseries. Try \
                     decreasing the query resolution (?step=XX)",
                ));
            }
        }
        let ctx = st.context(&p)?;
        let storage = st.query_storage(&p, step)?;
        let qs = p.get("query").unwrap_or("").to_string();
        let span = tracing::info_span!(
            "promql_range_query",
            query = %qs,
            start,
            end,
            step
        );
        st.run(&qs.clone(), ctx, storage, span, move |e, s, c| {
            e.range(s, &qs, start, end, step, c)
        })
        .await
    }
    .await;
    match res {
        Ok(out) => stream_result(out),
        Err(e) => e.into_response(),
    }
}

/// Why a range query's step cannot be evaluated over `[start, end]`, as Prometheus' API
/// checks it (each API words it with its own parameter names).
enum StepProblem {
    /// Zero or negative.
    NotPositive,
    /// More than [`MAX_POINTS_PER_SERIES`] points per series: refused for safety.
    TooManyPoints,
}

/// The most points a range query may give each series (Prometheus' limit).
const MAX_POINTS_PER_SERIES: i64 = 11_000;

fn step_problem(start: i64, end: i64, step: i64) -> Option<StepProblem> {
    if step <= 0 {
        Some(StepProblem::NotPositive)
    } else if (end - start) / step > MAX_POINTS_PER_SERIES {
        Some(StepProblem::TooManyPoints)
    } else {
        None
    }
}

/// Parses `match[]` selectors into matcher sets.
fn match_sets(p: &Params, engine: &Engine) -> Result<Vec<Vec<Matcher>>, ApiError> {
    let mut sets = Vec::new();
    for m in p.all("match[]") {
        sets.push(
            engine
                .parse_selector(m)
                .map_err(|e| ApiError::param("match[]", e))?,
        );
    }
    Ok(sets)
}

const MIN_TIME: i64 = strata_model::timestamp::MIN_TIME_MS;
const MAX_TIME: i64 = strata_model::timestamp::MAX_TIME_MS;

/// Runs a metadata call; returns its result and the storage's warnings.
async fn metadata_call<T, F>(
    st: Arc<ApiState>,
    p: &Params,
    f: F,
) -> Result<(T, Vec<String>), ApiError>
where
    T: Send + 'static,
    F: FnOnce(&dyn Storage) -> Result<T, strata_promql::StorageError> + Send + 'static,
{
    let (storage, warnings) =
        st.cfg
            .storage
            .metadata_storage(&request_options(p, &st.cfg.engine, &st.cfg.tenancy)?);
    let out = tokio::task::spawn_blocking(move || f(storage.as_ref()))
        .await
        .map_err(|e| ApiError {
            kind: "internal",
            msg: e.to_string(),
            warnings: Vec::new(),
        })?
        .map_err(ApiError::storage)?;
    let warnings = std::mem::take(&mut *warnings.lock().unwrap_or_else(|e| e.into_inner()));
    Ok((out, warnings))
}

/// A storage-encoded answer in the success envelope with its warnings, or the error.
fn encoded_response(res: Result<EncodedAnswer, ApiError>) -> Response {
    match res {
        Ok(a) => metadata_response(&a.data, &a.warnings),
        Err(e) => e.into_response(),
    }
}

/// The success envelope with the storage's warnings.
fn metadata_response(data: &str, warnings: &[String]) -> Response {
    let mut body = json::success_body(data);
    if warnings.is_empty() {
        return json_response(StatusCode::OK, body);
    }
    body.pop();
    json::write_envelope_tail(&mut body, warnings, &[]);
    let mut r = json_response(StatusCode::OK, body);
    no_store(&mut r);
    r
}

async fn series(
    State(st): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let res: Result<(String, Vec<String>), ApiError> = async {
        let p = Params::new(q, &headers, &body)?;
        if p.all("match[]").is_empty() {
            return Err(ApiError::bad_data("no match[] parameter provided"));
        }
        let (start, end) = st.metadata_range(&p)?;
        let sets = match_sets(&p, &st.cfg.engine)?;
        let (list, warnings): (Vec<Labels>, _) =
            metadata_call(st.clone(), &p, move |s| s.series_labels(&sets, start, end)).await?;
        let mut data = String::from("[");
        for (i, l) in list.iter().enumerate() {
            if i > 0 {
                data.push(',');
            }
            json::write_labels(&mut data, l);
        }
        data.push(']');
        Ok((data, warnings))
    }
    .await;
    match res {
        Ok((data, warnings)) => metadata_response(&data, &warnings),
        Err(e) => e.into_response(),
    }
}

async fn labels(
    State(st): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let res: Result<(String, Vec<String>), ApiError> = async {
        let p = Params::new(q, &headers, &body)?;
        let (start, end) = st.metadata_range(&p)?;
        let sets = match_sets(&p, &st.cfg.engine)?;
        let (mut names, warnings) =
            metadata_call(st.clone(), &p, move |s| s.label_names(&sets, start, end)).await?;
        apply_limit(&p, &mut names)?;
        Ok((json::string_array(&names), warnings))
    }
    .await;
    match res {
        Ok((data, warnings)) => metadata_response(&data, &warnings),
        Err(e) => e.into_response(),
    }
}

fn apply_limit(p: &Params, items: &mut Vec<String>) -> Result<(), ApiError> {
    if let Some(l) = p.get("limit") {
        let n: usize = l
            .parse()
            .map_err(|_| ApiError::param("limit", "limit must be a positive number"))?;
        if n > 0 {
            items.truncate(n);
        }
    }
    Ok(())
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

async fn label_values(
    State(st): State<Arc<ApiState>>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let res: Result<(String, Vec<String>), ApiError> = async {
        let p = Params::new(q, &headers, &Bytes::new())?;
        // UTF-8 names may come escaped as `U__...` (Prometheus' value escaping).
        let name = unescape_label_name(&name);
        if name.is_empty() || (!valid_label_name(&name) && !name.contains('.')) {
            return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
        }
        let (start, end) = st.metadata_range(&p)?;
        let sets = match_sets(&p, &st.cfg.engine)?;
        let n = name.clone();
        let (mut values, warnings) = metadata_call(st.clone(), &p, move |s| {
            s.label_values(&n, &sets, start, end)
        })
        .await?;
        apply_limit(&p, &mut values)?;
        Ok((json::string_array(&values), warnings))
    }
    .await;
    match res {
        Ok((data, warnings)) => metadata_response(&data, &warnings),
        Err(e) => e.into_response(),
    }
}

/// Decodes Prometheus' `U__` label-name escaping (`U__a_2e_b` is `a.b`, `__` is `_`).
fn unescape_label_name(s: &str) -> String {
    let Some(rest) = s.strip_prefix("U__") else {
        return s.to_string();
    };
    let mut out = String::new();
    let mut it = rest.split('_').peekable();
    // Segments between underscores: `` (from `__`) is a literal underscore, hex is a code
    // point, anything else is literal text.
    let mut first = true;
    while let Some(seg) = it.next() {
        if first {
            out.push_str(seg);
            first = false;
            continue;
        }
        if seg.is_empty() {
            out.push('_');
            if let Some(next) = it.next() {
                out.push_str(next);
            }
        } else if let Some(c) = u32::from_str_radix(seg, 16).ok().and_then(char::from_u32) {
            out.push(c);
            if let Some(next) = it.next() {
                out.push_str(next);
            }
        } else {
            out.push('_');
            out.push_str(seg);
        }
    }
    out
}

/// `/api/v1/rules`: `type` (`alert`, `record`), `rule_name[]`, `rule_group[]`, `file[]`,
/// `match[]`, with the request's deduplication and partial response options.
async fn rules(
    State(st): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    rules_view(st, q, headers, RulesView::Rules).await
}

/// `/api/v1/targets`: `state` (`active`, `dropped`, `any`), deduplicated by replica labels.
async fn targets(
    State(st): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let res: Result<EncodedAnswer, ApiError> = async {
        let p = Params::new(q, &headers, &Bytes::new())?;
        let state = match p.get("state").unwrap_or("").to_ascii_lowercase().as_str() {
            "" | "any" => None,
            "active" => Some(TargetState::Active),
            "dropped" => Some(TargetState::Dropped),
            other => {
                return Err(ApiError::param(
                    "state",
                    format!("unknown target state {other:?}: want active, dropped or any"),
                ));
            }
        };
        let opts = request_options(&p, &st.cfg.engine, &st.cfg.tenancy)?;
        st.cfg
            .storage
            .targets(state, &opts)
            .await
            .map_err(ApiError::storage)
    }
    .await;
    encoded_response(res)
}

/// `/api/v1/query_exemplars`: `query` (its selectors say which series), `start`, `end`.
async fn query_exemplars(
    State(st): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let res: Result<EncodedAnswer, ApiError> = async {
        let p = Params::new(q, &headers, &body)?;
        let query = p.get("query").unwrap_or("");
        let selectors = st
            .cfg
            .engine
            .query_selectors(query)
            .map_err(|e| ApiError::param("query", e))?;
        let start = time_param(&p, "start", MIN_TIME)?;
        let end = time_param(&p, "end", MAX_TIME)?;
        if end < start {
            return Err(ApiError::param(
                "end",
                "end timestamp must not be before start time",
            ));
        }
        let opts = request_options(&p, &st.cfg.engine, &st.cfg.tenancy)?;
        st.cfg
            .storage
            .exemplars(selectors, start, end, &opts)
            .await
            .map_err(ApiError::storage)
    }
    .await;
    encoded_response(res)
}

/// `/api/v1/alerts`: the alerts of every alerting rule, deduplicated as `/api/v1/rules` is.
async fn alerts(
    State(st): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    rules_view(st, q, headers, RulesView::Alerts).await
}

async fn rules_view(
    st: Arc<ApiState>,
    q: Option<String>,
    headers: HeaderMap,
    view: RulesView,
) -> Response {
    let res: Result<EncodedAnswer, ApiError> = async {
        let p = Params::new(q, &headers, &Bytes::new())?;
        let mut query = RulesQuery::default();
        if view == RulesView::Alerts {
            query.kind = Some(RuleKind::Alert);
        } else {
            query.kind = match p.get("type").unwrap_or("") {
                "" => None,
                "alert" => Some(RuleKind::Alert),
                "record" => Some(RuleKind::Record),
                other => {
                    return Err(ApiError::param(
                        "type",
                        format!("unknown rule type {other:?}: want alert or record"),
                    ));
                }
            };
            query.rule_names = p.all("rule_name[]").iter().map(|s| s.to_string()).collect();
            query.rule_groups = p
                .all("rule_group[]")
                .iter()
                .map(|s| s.to_string())
                .collect();
            query.files = p.all("file[]").iter().map(|s| s.to_string()).collect();
            query.matchers = match_sets(&p, &st.cfg.engine)?;
            query.matcher_strings = p.all("match[]").iter().map(|s| s.to_string()).collect();
        }
        let opts = request_options(&p, &st.cfg.engine, &st.cfg.tenancy)?;
        st.cfg
            .storage
            .rules(query, view, &opts)
            .await
            .map_err(ApiError::storage)
    }
    .await;
    encoded_response(res)
}

/// `/api/v1/metadata` (`metric`, `limit`; negative or absent: no limit), in Prometheus'
/// shape: `{"<metric>": [{"type", "help", "unit"}]}`.
async fn metadata(
    State(st): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let res: Result<(String, Vec<String>), ApiError> = async {
        let p = Params::new(q, &headers, &Bytes::new())?;
        let limit = match p.get("limit") {
            None | Some("") => -1,
            Some(l) => l
                .parse::<i32>()
                .map_err(|_| ApiError::param("limit", "limit must be a number"))?,
        };
        let metric = p.get("metric").unwrap_or("").to_string();
        let opts = request_options(&p, &st.cfg.engine, &st.cfg.tenancy)?;
        let answer = st
            .cfg
            .storage
            .metric_metadata(metric, limit, &opts)
            .await
            .map_err(ApiError::storage)?;
        Ok((json::metric_metadata(&answer.metrics), answer.warnings))
    }
    .await;
    match res {
        Ok((data, warnings)) => metadata_response(&data, &warnings),
        Err(e) => e.into_response(),
    }
}

/// `/api/v1/stores`, in Thanos' shape: `{"<type>": [{"name", "lastCheck", "lastError",
/// "labelSets", "minTime", "maxTime"}]}`.
async fn stores(State(st): State<Arc<ApiState>>) -> Response {
    let mut data = String::from("{");
    for (i, (kind, list)) in st.cfg.storage.stores().iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        json::write_str(&mut data, kind);
        data.push_str(":[");
        for (j, s) in list.iter().enumerate() {
            if j > 0 {
                data.push(',');
            }
            data.push_str("{\"name\":");
            json::write_str(&mut data, &s.name);
            data.push_str(",\"lastCheck\":");
            json::write_str(
                &mut data,
                &strata_model::timestamp::format_rfc3339_millis(s.last_check_ms),
            );
            data.push_str(",\"lastError\":");
            match &s.last_error {
                Some(e) => json::write_str(&mut data, e),
                None => data.push_str("null"),
            }
            data.push_str(",\"labelSets\":[");
            for (k, l) in s.label_sets.iter().enumerate() {
                if k > 0 {
                    data.push(',');
                }
                json::write_labels(&mut data, l);
            }
            data.push_str(&format!(
                "],\"minTime\":{},\"maxTime\":{}}}",
                s.min_time, s.max_time
            ));
        }
        data.push(']');
    }
    data.push('}');
    json_response(StatusCode::OK, json::success_body(&data))
}

async fn buildinfo(State(st): State<Arc<ApiState>>) -> Response {
    let b = &st.cfg.build;
    let mut data = String::from("{");
    for (i, (k, v)) in [
        ("version", &b.version),
        ("revision", &b.revision),
        ("branch", &b.branch),
        ("buildUser", &b.build_user),
        ("buildDate", &b.build_date),
        ("goVersion", &b.go_version),
    ]
    .iter()
    .enumerate()
    {
        if i > 0 {
            data.push(',');
        }
        json::write_str(&mut data, k);
        data.push(':');
        json::write_str(&mut data, v);
    }
    data.push('}');
    json_response(StatusCode::OK, json::success_body(&data))
}

async fn flags(State(st): State<Arc<ApiState>>) -> Response {
    let mut data = String::from("{");
    for (i, (k, v)) in st.cfg.flags.iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        json::write_str(&mut data, k);
        data.push(':');
        json::write_str(&mut data, v);
    }
    data.push('}');
    json_response(StatusCode::OK, json::success_body(&data))
}

async fn runtimeinfo(State(st): State<Arc<ApiState>>) -> Response {
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut data = String::from("{\"startTime\":");
    json::write_str(
        &mut data,
        &strata_model::timestamp::format_rfc3339_millis(st.cfg.start_time_ms),
    );
    data.push_str(",\"CWD\":");
    json::write_str(&mut data, &cwd);
    data.push_str(&format!(
        ",\"goroutineCount\":{},\"GOMAXPROCS\":{threads},\"GOGC\":\"\",\"GODEBUG\":\"\"}}",
        threads
    ));
    json_response(StatusCode::OK, json::success_body(&data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_request_is_the_clients_fault_a_failed_store_the_servers() {
        use strata_promql::StorageError;
        let refused = ApiError::storage(StorageError::bad_request("selector on external labels"));
        assert_eq!(
            (refused.kind, refused.status()),
            ("bad_data", StatusCode::BAD_REQUEST)
        );
        let failed = ApiError::storage(StorageError::new("store 10.0.0.1:10901: unavailable"));
        assert_eq!(
            (failed.kind, failed.status()),
            ("internal", StatusCode::INTERNAL_SERVER_ERROR)
        );
        let in_query = ApiError::from_query(Error::Storage(StorageError::bad_request("x")));
        assert_eq!(in_query.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn times_and_durations() {
        assert_eq!(parse_time("1.001").unwrap(), 1001);
        assert_eq!(parse_time("1435781451.781").unwrap(), 1_435_781_451_781);
        assert_eq!(
            parse_time("2015-07-01T20:10:51.781Z").unwrap(),
            1_435_781_451_781
        );
        assert!(
            parse_time("abc")
                .unwrap_err()
                .contains("cannot parse \"abc\"")
        );
        // Beyond the range of millisecond timestamps: saturated, not overflowed.
        assert_eq!(parse_time("1e300").unwrap(), i64::MAX);
        assert_eq!(parse_time("-1e300").unwrap(), i64::MIN);
        assert_eq!(parse_duration("15").unwrap(), 15_000);
        assert_eq!(parse_duration("0.5").unwrap(), 500);
        assert_eq!(parse_duration("5m").unwrap(), 300_000);
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn querier_options() {
        let e = Engine::new(strata_promql::EngineOptions::default());
        let p = |q: &str| Params::new(Some(q.to_string()), &HeaderMap::new(), &Bytes::new());
        let t = TenantConfig::default();
        let o = request_options(&p("").unwrap(), &e, &t).unwrap();
        assert_eq!(o, RequestOptions::default());
        assert!(o.dedup);
        let o = request_options(
            &p(
                "dedup=false&replicaLabels[]=a&replicaLabels[]=b,c&partial_response=0\
                &max_source_resolution=5m",
            )
            .unwrap(),
            &e,
            &t,
        )
        .unwrap();
        assert!(!o.dedup);
        assert_eq!(
            o.replica_labels,
            Some(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(o.partial_response, Some(false));
        assert_eq!(
            o.max_source_resolution,
            Some(MaxSourceResolution::Millis(300_000))
        );
        for (q, want) in [
            ("max_source_resolution=auto", MaxSourceResolution::Auto),
            ("max_source_resolution=0s", MaxSourceResolution::Millis(0)),
            ("max_source_resolution=raw", MaxSourceResolution::Millis(0)),
            (
                "max_source_resolution=1h",
                MaxSourceResolution::Millis(3_600_000),
            ),
        ] {
            let o = request_options(&p(q).unwrap(), &e, &t).unwrap();
            assert_eq!(o.max_source_resolution, Some(want), "{q}");
        }
        for bad in [
            "dedup=yes",
            "partial_response=x",
            "max_source_resolution=-5m",
            "storeMatch[]=%7B__address__%3D~%22(%22%7D",
            "storeMatch[]=sum(up)",
        ] {
            let err = request_options(&p(bad).unwrap(), &e, &t).unwrap_err();
            assert_eq!(err.kind, "bad_data", "{bad}");
            if bad.starts_with("storeMatch") {
                assert!(err.msg.contains("\"storeMatch[]\""), "{}", err.msg);
            }
        }

        // storeMatch[]: one matcher set per value, in order.
        let o = request_options(
            &p("storeMatch[]=%7B__address__%3D%22a%3A1%22%7D&storeMatch[]=%7B__address__%3D~%22b.*%22%7D")
                .unwrap(),
            &e,
            &t,
        )
        .unwrap();
        assert_eq!(
            o.store_matchers,
            vec![
                vec![Matcher::equal("__address__", "a:1")],
                vec![
                    Matcher::new(strata_model::MatchOp::RegexMatch, "__address__", "b.*").unwrap()
                ],
            ]
        );
    }

    #[test]
    fn the_tenant_comes_from_the_header_or_the_default() {
        let e = Engine::new(strata_promql::EngineOptions::default());
        let tenant = |cfg: &TenantConfig, headers: &[(&'static str, &[u8])]| {
            let mut h = HeaderMap::new();
            for (k, v) in headers {
                h.insert(*k, HeaderValue::from_bytes(v).unwrap());
            }
            let p = Params::new(None, &h, &Bytes::new()).unwrap();
            request_options(&p, &e, cfg).map(|o| o.tenant)
        };
        let thanos = TenantConfig::default();
        assert_eq!(tenant(&thanos, &[]).unwrap(), "default-tenant");
        assert_eq!(
            tenant(&thanos, &[("thanos-tenant", b"team-a")]).unwrap(),
            "team-a"
        );
        assert_eq!(
            tenant(&thanos, &[("thanos-tenant", b"")]).unwrap(),
            "default-tenant"
        );
        assert_eq!(
            tenant(&thanos, &[("x-scope-orgid", b"team-b")]).unwrap(),
            "default-tenant"
        );
        let err = tenant(&thanos, &[("thanos-tenant", b"caf\xc3\xa9")]).unwrap_err();
        assert_eq!(err.kind, "bad_data");
        assert!(err.msg.contains("THANOS-TENANT"), "{}", err.msg);
        let own = TenantConfig {
            header: "X-Scope-OrgID".into(),
            default_tenant: "anonymous".into(),
        };
        assert_eq!(
            tenant(&own, &[("x-scope-orgid", b"team-b")]).unwrap(),
            "team-b"
        );
        assert_eq!(
            tenant(&own, &[("thanos-tenant", b"team-a")]).unwrap(),
            "anonymous"
        );
    }

    #[test]
    fn escaped_label_names() {
        assert_eq!(unescape_label_name("U__a_2e_b"), "a.b");
        assert_eq!(unescape_label_name("job"), "job");
    }
}
