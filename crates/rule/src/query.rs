//! The queriers the ruler evaluates its rules against: Thanos' `--query`, `--query.sd-files`
//! and `--query.config` discovery, and instant queries over the Prometheus HTTP API; and
//! `--grpc-query-endpoint`, queriers asked over Thanos' Query API (PromQL over gRPC) when no
//! HTTP querier answers, as Thanos' ruler asks them.
//!
//! Thanos' ruler asks one querier per evaluation, in random order until one answers, so that
//! a querier that is down or restarting costs a retry, not a failed rule. Each query carries
//! `dedup=true` (rules must see one series per HA pair, not one per replica) and
//! `partial_response` from the group's strategy: `abort` groups fail when a store fails,
//! `warn` groups go on and count the warning.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rand::seq::SliceRandom;
use serde::Deserialize;
use strata_model::{Label, Labels};
use strata_runtime::dns::{AddressSpec, Resolver};
use strata_runtime::http_client::{ClientAuth, HttpClientConfig};
use strata_storepb::prometheus_copy::TimeSeries;
use strata_storepb::thanos::query_client::QueryClient as GrpcQueryClient;
use strata_storepb::thanos::{
    QueryRangeRequest, QueryRequest, query_range_response, query_response,
};
use tonic::transport::Channel;

use crate::rulefmt::PartialResponseStrategy;

/// What an instant query gave: a vector (a scalar is one sample without labels, as
/// Prometheus' rule evaluation treats it) and the querier's warnings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryAnswer {
    pub samples: Vec<(Labels, f64)>,
    pub warnings: Vec<String>,
}

/// A query that no querier answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(
        "no querier to ask: none of --query, --query.sd-files, --query.config or \
         --grpc-query-endpoint gave an address (check the flags and that the names resolve)"
    )]
    NoQueriers,
    #[error("querier {url}: {detail}")]
    Querier { url: String, detail: String },
    #[error(
        "querier {url} answered {result_type}, not a vector or scalar: a rule's expression must give one of those"
    )]
    NotVector { url: String, result_type: String },
}

/// A range query's answer: each series and its `(ms, value)` points.
pub type Matrix = Vec<(Labels, Vec<(i64, f64)>)>;

/// The discovery configuration of one set of queriers.
#[derive(Debug, Clone)]
pub struct QuerierGroup {
    /// `host:port`, `dns+host:port`, `dnssrv+name` or `dnssrvnoa+name`.
    pub static_addresses: Vec<AddressSpec>,
    /// File SD files (globs); targets are `host:port`.
    pub sd_files: Vec<String>,
    pub scheme: String,
    pub path_prefix: String,
    /// Authentication, TLS and transport towards these queriers (Thanos' `http_config`).
    pub http_config: HttpClientConfig,
}

/// `--query.config`'s YAML: a list of querier sets (Thanos' `httpconfig.Config`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupYaml {
    #[serde(default)]
    http_config: HttpClientConfig,
    #[serde(default)]
    static_configs: Vec<String>,
    #[serde(default)]
    file_sd_configs: Vec<FileSdYaml>,
    #[serde(default = "default_scheme")]
    scheme: String,
    #[serde(default)]
    path_prefix: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSdYaml {
    files: Vec<String>,
    #[serde(default)]
    refresh_interval: Option<String>,
}

fn default_scheme() -> String {
    "http".to_owned()
}

/// A querier configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--query.config: {0}")]
    Yaml(String),
    #[error("--query.config, entry {index}: {detail}")]
    Entry { index: usize, detail: String },
    #[error("--query {address:?}: {detail}")]
    Query { address: String, detail: String },
    #[error("--query.config, entry {index}: http_config: {source}")]
    Client {
        index: usize,
        source: strata_runtime::http_client::HttpClientError,
    },
}

/// The querier sets the flags describe: `--query.config` when given (it takes precedence, as
/// in Thanos), else one set from `--query` and `--query.sd-files`.
pub fn querier_groups(
    query: &[String],
    sd_files: &[String],
    config_yaml: Option<&str>,
) -> Result<Vec<QuerierGroup>, ConfigError> {
    if let Some(text) = config_yaml.filter(|t| !t.trim().is_empty()) {
        let entries: Vec<GroupYaml> =
            serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Yaml(e.to_string()))?;
        let mut out = Vec::with_capacity(entries.len());
        for (index, e) in entries.into_iter().enumerate() {
            let entry = |detail: String| ConfigError::Entry { index, detail };
            if !matches!(e.scheme.as_str(), "http" | "https") {
                return Err(entry(format!("scheme {:?}: want http or https", e.scheme)));
            }
            for f in &e.file_sd_configs {
                if let Some(r) = &f.refresh_interval {
                    strata_model::Duration::parse_prometheus(r)
                        .map_err(|err| entry(format!("file_sd_configs refresh_interval: {err}")))?;
                }
            }
            let static_addresses = e
                .static_configs
                .iter()
                .map(|a| AddressSpec::parse(a).map_err(|err| entry(err.to_string())))
                .collect::<Result<_, _>>()?;
            out.push(QuerierGroup {
                static_addresses,
                sd_files: e
                    .file_sd_configs
                    .into_iter()
                    .flat_map(|f| f.files)
                    .collect(),
                scheme: e.scheme,
                path_prefix: e.path_prefix,
                http_config: e.http_config,
            });
        }
        return Ok(out);
    }
    // As Thanos: each `--query` is a set of its own, `host:port` or a URL (`http` or
    // `https`, with a path prefix); the file SD files are one more set, over plain HTTP.
    let mut out = Vec::with_capacity(query.len() + 1);
    for q in query {
        let bad = |detail: &str| ConfigError::Query {
            address: q.clone(),
            detail: detail.to_owned(),
        };
        let (scheme, rest) = match q.split_once("://") {
            Some((s @ ("http" | "https"), rest)) => (s, rest),
            Some((s, _)) => {
                return Err(bad(&format!(
                    "{s:?} is not a supported scheme (http or https)"
                )));
            }
            None => ("http", q.as_str()),
        };
        let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let spec = AddressSpec::parse(host).map_err(|e| bad(&e.to_string()))?;
        out.push(QuerierGroup {
            static_addresses: vec![spec],
            sd_files: Vec::new(),
            scheme: scheme.to_owned(),
            path_prefix: prefix.to_owned(),
            http_config: HttpClientConfig::default(),
        });
    }
    if !sd_files.is_empty() {
        out.push(QuerierGroup {
            static_addresses: Vec::new(),
            sd_files: sd_files.to_vec(),
            scheme: "http".into(),
            path_prefix: String::new(),
            http_config: HttpClientConfig::default(),
        });
    }
    Ok(out)
}

/// Settings of the client.
#[derive(Debug, Clone)]
pub struct QueryClientOptions {
    /// `--query.http-method`: POST (a form body) or GET.
    pub post: bool,
    /// How long one query may take before the next querier is tried.
    pub timeout: Duration,
    /// `--query.sd-dns-interval`.
    pub dns_interval: Duration,
    /// `--query.sd-interval`.
    pub sd_interval: Duration,
    /// `--query.only-prometheus-params`: leave out Thanos' `dedup` and `partial_response`
    /// (for queriers that refuse parameters Prometheus does not know).
    pub only_prometheus_params: bool,
}

/// Instant queries against the discovered queriers.
#[derive(Debug)]
pub struct QueryClient {
    groups: Vec<QuerierGroup>,
    /// Each set's client and credentials, from its `http_config`.
    clients: Vec<(reqwest::Client, ClientAuth)>,
    /// `--grpc-query-endpoint`: queriers' gRPC addresses (`host:port`, `dns+`, `dnssrv+`).
    grpc: Vec<AddressSpec>,
    options: QueryClientOptions,
    resolver: Resolver,
    /// The base URLs (`scheme://host:port/prefix`) last discovered, with their set.
    urls: RwLock<Vec<(String, usize)>>,
    /// The gRPC `host:port`s last discovered.
    grpc_targets: RwLock<Vec<String>>,
    /// A channel per gRPC target, made on first use (channels reconnect by themselves).
    channels: Mutex<HashMap<String, Channel>>,
}

impl QueryClient {
    /// A client for `groups`; call [`QueryClient::refresh`] before the first query, then run
    /// [`QueryClient::run_discovery`] to keep the addresses current. Fails on an unusable
    /// `http_config` (a TLS or credentials file that cannot be read, contradictory settings).
    pub fn new(
        groups: Vec<QuerierGroup>,
        grpc: Vec<AddressSpec>,
        options: QueryClientOptions,
    ) -> Result<Arc<Self>, ConfigError> {
        let user_agent = concat!("Strata-ruler/", env!("CARGO_PKG_VERSION"));
        let clients = groups
            .iter()
            .enumerate()
            .map(|(index, g)| {
                g.http_config
                    .build(user_agent)
                    .map_err(|source| ConfigError::Client { index, source })
            })
            .collect::<Result<_, _>>()?;
        let resolver = if groups
            .iter()
            .flat_map(|g| &g.static_addresses)
            .chain(&grpc)
            .any(AddressSpec::uses_srv)
        {
            Resolver::try_new(None).unwrap_or_else(|e| {
                tracing::warn!(err = %e, "no DNS resolver for dnssrv+ query addresses");
                Resolver::without_srv()
            })
        } else {
            Resolver::without_srv()
        };
        Ok(Arc::new(QueryClient {
            groups,
            clients,
            grpc,
            options,
            resolver,
            urls: RwLock::new(Vec::new()),
            grpc_targets: RwLock::new(Vec::new()),
            channels: Mutex::new(HashMap::new()),
        }))
    }

    /// The gRPC queriers' addresses now.
    pub fn grpc_targets(&self) -> Vec<String> {
        self.grpc_targets
            .read()
            .map(|t| t.clone())
            .unwrap_or_default()
    }

    /// The queriers' base URLs now, with the index of their set.
    pub fn urls(&self) -> Vec<(String, usize)> {
        self.urls.read().map(|u| u.clone()).unwrap_or_default()
    }

    /// Resolves every address and reads every SD file again.
    pub async fn refresh(&self) {
        let mut urls = BTreeSet::new();
        for (i, g) in self.groups.iter().enumerate() {
            let mut hosts = BTreeSet::new();
            for spec in &g.static_addresses {
                hosts.extend(self.resolver.resolve(spec).await);
            }
            hosts.extend(read_sd_files(&g.sd_files));
            let prefix = g.path_prefix.trim_matches('/');
            for h in hosts {
                let url = if prefix.is_empty() {
                    format!("{}://{h}", g.scheme)
                } else {
                    format!("{}://{h}/{prefix}", g.scheme)
                };
                urls.insert((url, i));
            }
        }
        let urls: Vec<(String, usize)> = urls.into_iter().collect();
        if let Ok(mut u) = self.urls.write()
            && *u != urls
        {
            let list: Vec<&str> = urls.iter().map(|(u, _)| u.as_str()).collect();
            tracing::info!(queriers = ?list, "query API servers discovered");
            *u = urls;
        }
        let mut targets = BTreeSet::new();
        for spec in &self.grpc {
            targets.extend(self.resolver.resolve(spec).await);
        }
        let targets: Vec<String> = targets.into_iter().collect();
        if let Ok(mut t) = self.grpc_targets.write()
            && *t != targets
        {
            tracing::info!(queriers = ?targets, "gRPC query API servers discovered");
            if let Ok(mut ch) = self.channels.lock() {
                ch.retain(|addr, _| targets.contains(addr));
            }
            *t = targets;
        }
    }

    /// Refreshes every `--query.sd-dns-interval` (and reads SD files every
    /// `--query.sd-interval`), until `shutdown`. The first refresh is the caller's
    /// ([`QueryClient::refresh`], before the first evaluation), so this one waits first.
    pub async fn run_discovery(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        let every = self
            .options
            .dns_interval
            .min(self.options.sd_interval)
            .max(Duration::from_secs(1));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(every) => {}
            }
            self.refresh().await;
        }
    }

    /// Evaluates `expr` at `ts_ms` on one querier, trying the others in random order while
    /// they fail.
    pub async fn instant(
        &self,
        expr: &str,
        ts_ms: i64,
        strategy: PartialResponseStrategy,
    ) -> Result<QueryAnswer, QueryError> {
        let mut urls = self.urls();
        urls.shuffle(&mut rand::rng());
        let mut last = None;
        for (url, set) in urls {
            match self.instant_on((&url, set), expr, ts_ms, strategy).await {
                Ok(a) => return Ok(a),
                Err(e) => {
                    tracing::debug!(querier = %url, err = %e, "query failed; trying the next querier");
                    last = Some(e);
                }
            }
        }
        // As Thanos' ruler: the gRPC queriers when no HTTP one answered.
        let mut targets = self.grpc_targets();
        targets.shuffle(&mut rand::rng());
        for addr in targets {
            match self.instant_grpc(&addr, expr, ts_ms, strategy).await {
                Ok(a) => return Ok(a),
                Err(e) => {
                    tracing::debug!(querier = %addr, err = %e, "query failed; trying the next querier");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(QueryError::NoQueriers))
    }

    /// The samples `expr` gives from `start_ms` to `end_ms` every `step`, on one querier
    /// (the others tried in random order while they fail).
    pub async fn range(
        &self,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
        step: Duration,
        strategy: PartialResponseStrategy,
    ) -> Result<Matrix, QueryError> {
        let mut urls = self.urls();
        urls.shuffle(&mut rand::rng());
        let mut last = None;
        for (base, set) in urls {
            let start = format_time(start_ms);
            let end = format_time(end_ms);
            let step = format!("{:.3}", step.as_secs_f64().max(0.001));
            let params = self.with_thanos_params(
                vec![
                    ("query", expr),
                    ("start", start.as_str()),
                    ("end", end.as_str()),
                    ("step", step.as_str()),
                ],
                strategy,
            );
            match self
                .call((&base, set), "/api/v1/query_range", &params)
                .await
            {
                Ok(body) => match parse_matrix(&body) {
                    Ok(m) => return Ok(m),
                    Err(detail) => {
                        last = Some(QueryError::Querier {
                            url: format!("{base}/api/v1/query_range"),
                            detail,
                        })
                    }
                },
                Err(e) => last = Some(e),
            }
        }
        let mut targets = self.grpc_targets();
        targets.shuffle(&mut rand::rng());
        for addr in targets {
            match self
                .range_grpc(&addr, expr, start_ms, end_ms, step, strategy)
                .await
            {
                Ok(m) => return Ok(m),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(QueryError::NoQueriers))
    }

    /// The Query API client of `addr` (a lazily connected channel, kept for the next call).
    fn grpc_client(&self, addr: &str) -> Result<GrpcQueryClient<Channel>, QueryError> {
        let mut channels = self.channels.lock().map_err(|_| QueryError::Querier {
            url: grpc_url(addr),
            detail: "channel cache poisoned".into(),
        })?;
        let channel = match channels.get(addr) {
            Some(c) => c.clone(),
            None => {
                let c = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                    .map_err(|e| QueryError::Querier {
                        url: grpc_url(addr),
                        detail: format!("not a gRPC address: {e}"),
                    })?
                    .connect_timeout(self.options.timeout.min(Duration::from_secs(10)))
                    .tcp_nodelay(true)
                    .connect_lazy();
                channels.insert(addr.to_owned(), c.clone());
                c
            }
        };
        Ok(GrpcQueryClient::new(channel).max_decoding_message_size(GRPC_MAX_MESSAGE))
    }

    /// An instant query through `addr`'s Query API. The API counts whole seconds, so the time
    /// sent is the evaluation time's second, as Thanos' ruler sends it.
    async fn instant_grpc(
        &self,
        addr: &str,
        expr: &str,
        ts_ms: i64,
        strategy: PartialResponseStrategy,
    ) -> Result<QueryAnswer, QueryError> {
        let request = QueryRequest {
            query: expr.to_owned(),
            time_seconds: ts_ms.div_euclid(1000),
            timeout_seconds: self.options.timeout.as_secs() as i64,
            enable_dedup: true,
            enable_partial_response: strategy == PartialResponseStrategy::Warn,
            ..Default::default()
        };
        self.grpc_call(addr, async |mut client| {
            let mut stream = client.query(request).await?.into_inner();
            let mut answer = QueryAnswer::default();
            while let Some(m) = stream.message().await? {
                match m.result {
                    Some(query_response::Result::Warnings(w)) => answer.warnings.push(w),
                    Some(query_response::Result::Timeseries(ts)) => {
                        let (labels, points) = series_of(ts)?;
                        let Some(&(_, v)) = points.first() else {
                            return Err(format!("a sample of {labels} without a value").into());
                        };
                        answer.samples.push((labels, v));
                    }
                    // A stats message (newer Thanos queriers end with one).
                    None => {}
                }
            }
            Ok(answer)
        })
        .await
    }

    /// A range query through `addr`'s Query API (whole seconds, as [`Self::instant_grpc`]).
    async fn range_grpc(
        &self,
        addr: &str,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
        step: Duration,
        strategy: PartialResponseStrategy,
    ) -> Result<Matrix, QueryError> {
        let request = QueryRangeRequest {
            query: expr.to_owned(),
            start_time_seconds: start_ms.div_euclid(1000),
            end_time_seconds: end_ms.div_euclid(1000),
            interval_seconds: step.as_secs().max(1) as i64,
            timeout_seconds: self.options.timeout.as_secs() as i64,
            enable_dedup: true,
            enable_partial_response: strategy == PartialResponseStrategy::Warn,
            ..Default::default()
        };
        self.grpc_call(addr, async |mut client| {
            let mut stream = client.query_range(request).await?.into_inner();
            let mut out = Matrix::new();
            while let Some(m) = stream.message().await? {
                if let Some(query_range_response::Result::Timeseries(ts)) = m.result {
                    out.push(series_of(ts)?);
                }
            }
            Ok(out)
        })
        .await
    }

    /// One Query API call on `addr`, within the query timeout; a failure names the querier.
    async fn grpc_call<T>(
        &self,
        addr: &str,
        call: impl AsyncFnOnce(GrpcQueryClient<Channel>) -> Result<T, GrpcCallError>,
    ) -> Result<T, QueryError> {
        let err = |detail: String| QueryError::Querier {
            url: grpc_url(addr),
            detail,
        };
        let client = self.grpc_client(addr)?;
        match tokio::time::timeout(self.options.timeout, call(client)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(err(e.0)),
            Err(_) => Err(err(format!("no answer within {:?}", self.options.timeout))),
        }
    }

    /// One API call: the answer's body, or the failure (transport or HTTP) naming the URL.
    async fn call(
        &self,
        (base, set): (&str, usize),
        path: &str,
        params: &[(&str, &str)],
    ) -> Result<bytes::Bytes, QueryError> {
        let url = format!("{base}{path}");
        let err = |detail: String| QueryError::Querier {
            url: url.clone(),
            detail,
        };
        let encoded = serde_urlencoded::to_string(params).map_err(|e| err(e.to_string()))?;
        let (http, auth) = &self.clients[set];
        let request = if self.options.post {
            http.post(&url)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(encoded)
        } else {
            http.get(format!("{url}?{encoded}"))
        };
        let request = auth
            .apply(request.timeout(self.options.timeout))
            .map_err(|e| err(e.to_string()))?;
        let response = request.send().await.map_err(|e| err(e.to_string()))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| err(e.to_string()))?;
        if !status.is_success() && !status.is_client_error() {
            // 4xx answers carry the API's JSON error, which says more than the status.
            let excerpt = String::from_utf8_lossy(&body[..body.len().min(256)]).into_owned();
            return Err(err(format!("HTTP {status}: {excerpt}")));
        }
        Ok(body)
    }

    async fn instant_on(
        &self,
        (base, set): (&str, usize),
        expr: &str,
        ts_ms: i64,
        strategy: PartialResponseStrategy,
    ) -> Result<QueryAnswer, QueryError> {
        let time = format_time(ts_ms);
        let params =
            self.with_thanos_params(vec![("query", expr), ("time", time.as_str())], strategy);
        let body = self.call((base, set), "/api/v1/query", &params).await?;
        let url = format!("{base}/api/v1/query");
        parse_answer(&body).map_err(|detail| match detail {
            AnswerError::NotVector(result_type) => QueryError::NotVector { url, result_type },
            AnswerError::Other(detail) => QueryError::Querier { url, detail },
        })
    }
}

/// The largest Query API message read: one series of a range answer (11,000 points at most).
const GRPC_MAX_MESSAGE: usize = 64 << 20;

fn grpc_url(addr: &str) -> String {
    format!("grpc://{addr}")
}

/// Why a Query API call failed: the status or the answer's fault, in words.
struct GrpcCallError(String);

impl From<tonic::Status> for GrpcCallError {
    fn from(s: tonic::Status) -> Self {
        GrpcCallError(format!("{:?}: {}", s.code(), s.message()))
    }
}

impl From<String> for GrpcCallError {
    fn from(s: String) -> Self {
        GrpcCallError(s)
    }
}

/// A Query API series as labels and `(ms, value)` points. Native histograms are refused:
/// the ruler's evaluation, like Strata's engine, holds float samples only.
fn series_of(ts: TimeSeries) -> Result<(Labels, Vec<(i64, f64)>), String> {
    let labels = strata_storepb::convert::labels_to_model(ts.labels);
    if !ts.histograms.is_empty() {
        return Err(format!(
            "the answer holds native histogram samples for {labels}, which the ruler cannot \
             record"
        ));
    }
    let points = ts.samples.iter().map(|p| (p.timestamp, p.value)).collect();
    Ok((labels, points))
}

impl QueryClient {
    /// `params` with Thanos' `dedup=true` and the group's `partial_response`, unless
    /// `--query.only-prometheus-params`.
    fn with_thanos_params<'a>(
        &self,
        mut params: Vec<(&'static str, &'a str)>,
        strategy: PartialResponseStrategy,
    ) -> Vec<(&'static str, &'a str)> {
        if !self.options.only_prometheus_params {
            params.push(("dedup", "true"));
            params.push(("partial_response", partial_param(strategy)));
        }
        params
    }
}

/// `partial_response` for a group's strategy: `abort` groups must not see partial answers.
fn partial_param(strategy: PartialResponseStrategy) -> &'static str {
    match strategy {
        PartialResponseStrategy::Warn => "true",
        PartialResponseStrategy::Abort => "false",
    }
}

/// `ms` as the API's seconds with milliseconds, exactly (no float rounding).
fn format_time(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let a = ms.unsigned_abs();
    format!("{sign}{}.{:03}", a / 1000, a % 1000)
}

fn read_sd_files(patterns: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (path, targets) in strata_runtime::file_sd::read_patterns(patterns) {
        match targets {
            Ok(targets) => {
                for t in targets {
                    match AddressSpec::parse(&t) {
                        Ok(AddressSpec::Static(a)) => {
                            out.insert(a);
                        }
                        _ => tracing::warn!(
                            path = %path.display(), target = %t,
                            "query file SD target is not host:port; ignored"
                        ),
                    }
                }
            }
            Err(e) => tracing::warn!(path = %path.display(), err = %e, "reading query file SD"),
        }
    }
    out
}

enum AnswerError {
    NotVector(String),
    Other(String),
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: String,
    #[serde(default)]
    error: String,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

/// The `data` of a successful API answer, and its warnings.
fn parse_envelope(body: &[u8]) -> Result<(Data, Vec<String>), String> {
    let env: Envelope = serde_json::from_slice(body).map_err(|e| {
        let excerpt = String::from_utf8_lossy(&body[..body.len().min(256)]).into_owned();
        format!("not a Prometheus API answer ({e}): {excerpt}")
    })?;
    if env.status != "success" {
        return Err(format!("{}: {}", env.error_type, env.error));
    }
    let data = env.data.ok_or("the answer has no data")?;
    Ok((data, env.warnings))
}

fn labels_of(metric: std::collections::BTreeMap<String, String>) -> Labels {
    Labels::from_sorted(metric.into_iter().map(|(n, v)| Label::new(n, v)).collect())
}

/// Reads a Prometheus API answer to an instant query.
fn parse_answer(body: &[u8]) -> Result<QueryAnswer, AnswerError> {
    #[derive(Deserialize)]
    struct VectorSample {
        metric: std::collections::BTreeMap<String, String>,
        value: (serde_json::Value, String),
    }
    let other = |s: String| AnswerError::Other(s);
    let (data, warnings) = parse_envelope(body).map_err(other)?;
    let samples = match data.result_type.as_str() {
        "vector" => {
            let v: Vec<VectorSample> = serde_json::from_value(data.result)
                .map_err(|e| other(format!("bad vector: {e}")))?;
            let mut out = Vec::with_capacity(v.len());
            for s in v {
                let value = parse_value(&s.value.1).map_err(other)?;
                out.push((labels_of(s.metric), value));
            }
            out
        }
        "scalar" => {
            let (_, v): (serde_json::Value, String) = serde_json::from_value(data.result)
                .map_err(|e| other(format!("bad scalar: {e}")))?;
            vec![(Labels::default(), parse_value(&v).map_err(other)?)]
        }
        t => return Err(AnswerError::NotVector(t.to_owned())),
    };
    Ok(QueryAnswer { samples, warnings })
}

/// Reads a Prometheus API answer to a range query: each series and its `(ms, value)`s.
fn parse_matrix(body: &[u8]) -> Result<Matrix, String> {
    #[derive(Deserialize)]
    struct MatrixSeries {
        metric: std::collections::BTreeMap<String, String>,
        #[serde(default)]
        values: Vec<(f64, String)>,
    }
    let (data, _) = parse_envelope(body)?;
    if data.result_type != "matrix" {
        return Err(format!("a range query answered {}", data.result_type));
    }
    let m: Vec<MatrixSeries> =
        serde_json::from_value(data.result).map_err(|e| format!("bad matrix: {e}"))?;
    m.into_iter()
        .map(|s| {
            let points = s
                .values
                .iter()
                .map(|(t, v)| Ok(((t * 1000.0).round() as i64, parse_value(v)?)))
                .collect::<Result<Vec<_>, String>>()?;
            Ok((labels_of(s.metric), points))
        })
        .collect()
}

/// Alerts' `for` state read back through the queriers, as Thanos' stateless ruler restores
/// it: a range query over `ALERTS_FOR_STATE` of the alert, every `--query.default-step`.
/// The series found carry whatever the remote-write receiver added (the ruler's external
/// labels, a tenant); `--restore-ignored-label` names those, so that the series is
/// recognised as the alert's own.
#[derive(Debug)]
pub struct QueriedForState {
    pub client: Arc<QueryClient>,
    pub step: Duration,
    pub ignored_labels: Vec<String>,
}

#[async_trait::async_trait]
impl crate::ForStateSource for QueriedForState {
    async fn last_sample(
        &self,
        series: &Labels,
        mint_ms: i64,
        maxt_ms: i64,
    ) -> Result<Option<(i64, f64)>, String> {
        let expr = series.to_string();
        let found = self
            .client
            .range(
                &expr,
                mint_ms,
                maxt_ms,
                self.step,
                PartialResponseStrategy::Abort,
            )
            .await
            .map_err(|e| e.to_string())?;
        for (labels, points) in found {
            let mut b = labels.builder();
            for l in &self.ignored_labels {
                b.remove(l);
            }
            // A range query drops `__name__`; the selector fixed it.
            b.set(strata_model::labels::METRIC_NAME, "ALERTS_FOR_STATE");
            if &b.build() == series {
                return Ok(points.last().copied());
            }
        }
        Ok(None)
    }
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s.parse().map_err(|_| format!("bad sample value {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read() {
        let a = parse_answer(
            br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"a","__name__":"up"},"value":[1.5,"1"]},{"metric":{},"value":[1.5,"NaN"]}]},"warnings":["store x down"]}"#,
        )
        .ok()
        .unwrap();
        assert_eq!(a.samples.len(), 2);
        assert_eq!(
            a.samples[0],
            (Labels::from_pairs(&[("__name__", "up"), ("job", "a")]), 1.0)
        );
        assert!(a.samples[1].1.is_nan());
        assert_eq!(a.warnings, vec!["store x down".to_string()]);
        let s = parse_answer(
            br#"{"status":"success","data":{"resultType":"scalar","result":[1,"-Inf"]}}"#,
        )
        .ok()
        .unwrap();
        assert_eq!(s.samples, vec![(Labels::default(), f64::NEG_INFINITY)]);
        assert!(matches!(
            parse_answer(br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#),
            Err(AnswerError::NotVector(t)) if t == "matrix"
        ));
        assert!(matches!(
            parse_answer(br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#),
            Err(AnswerError::Other(e)) if e == "bad_data: parse error"
        ));
        assert!(matches!(
            parse_answer(b"<html>"),
            Err(AnswerError::Other(_))
        ));
    }

    #[test]
    fn thanos_params_are_left_out_only_when_asked() {
        let client = |only| {
            QueryClient::new(
                Vec::new(),
                Vec::new(),
                QueryClientOptions {
                    post: true,
                    timeout: Duration::from_secs(1),
                    dns_interval: Duration::from_secs(30),
                    sd_interval: Duration::from_secs(300),
                    only_prometheus_params: only,
                },
            )
            .unwrap()
        };
        let base = vec![("query", "up"), ("time", "1.000")];
        assert_eq!(
            client(false).with_thanos_params(base.clone(), PartialResponseStrategy::Abort),
            [
                ("query", "up"),
                ("time", "1.000"),
                ("dedup", "true"),
                ("partial_response", "false")
            ]
        );
        assert_eq!(
            client(false).with_thanos_params(base.clone(), PartialResponseStrategy::Warn)[3],
            ("partial_response", "true")
        );
        assert_eq!(
            client(true).with_thanos_params(base.clone(), PartialResponseStrategy::Warn),
            base
        );
    }

    #[test]
    fn times_are_exact() {
        assert_eq!(format_time(1_700_000_000_123), "1700000000.123");
        assert_eq!(format_time(5), "0.005");
        assert_eq!(format_time(-1), "-0.001");
    }

    #[test]
    fn querier_sets_come_from_the_flags_or_the_config() {
        let g = querier_groups(
            &[
                "q1:9090".into(),
                "dns+q:9090".into(),
                "https://q2:443/thanos".into(),
            ],
            &["/sd/*.json".into()],
            None,
        )
        .unwrap();
        assert_eq!(g.len(), 4);
        assert_eq!(
            g[0].static_addresses,
            [AddressSpec::Static("q1:9090".into())]
        );
        assert_eq!(
            (g[2].scheme.as_str(), g[2].path_prefix.as_str()),
            ("https", "thanos")
        );
        assert_eq!(g[3].sd_files, ["/sd/*.json"]);
        assert!(querier_groups(&[], &[], None).unwrap().is_empty());
        assert!(querier_groups(&["ftp://q:9090".into()], &[], None).is_err());
        assert!(querier_groups(&["q".into()], &[], None).is_err());
        let cfg = "- static_configs: [\"a:1\", \"dnssrv+_http._tcp.q\"]\n  path_prefix: /thanos\n  file_sd_configs:\n    - files: [\"/x/*.json\"]\n      refresh_interval: 1m\n";
        let g = querier_groups(&["ignored:1".into()], &[], Some(cfg)).unwrap();
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].static_addresses.len(), 2);
        assert_eq!(g[0].path_prefix, "/thanos");
        assert_eq!(g[0].sd_files, vec!["/x/*.json".to_string()]);
        let bad = querier_groups(&[], &[], Some("- static_configs: [a:1]\n  unknown: 1\n"));
        assert!(bad.unwrap_err().to_string().contains("unknown"));
        let auth = querier_groups(
            &[],
            &[],
            Some("- static_configs: [a:1]\n  http_config:\n    basic_auth: {username: u, password: p}\n"),
        )
        .unwrap();
        assert_eq!(auth[0].http_config.basic_auth.username, "u");
        let bad = querier_groups(
            &[],
            &[],
            Some("- static_configs: [a:1]\n  http_config:\n    basic_auth: {user: u}\n"),
        );
        assert!(bad.unwrap_err().to_string().contains("user"));
    }
}
