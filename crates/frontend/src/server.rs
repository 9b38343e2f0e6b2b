//! The frontend's HTTP handlers: range queries and metadata requests taken apart and joined,
//! everything else proxied.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use crate::cache::{Extent, Piece, ResultsCache, merge_extents, partition};
use crate::downstream::{Answer, Downstream, DownstreamError};
use crate::metadata::MetadataAnswer;
use crate::metrics::{CacheLabels, FrontendMetrics, OpLabels};
use crate::request::{BadRequest, MetadataRequest, RangeRequest};
use crate::response::Matrix;
use crate::split::{align, interval_number, split};
use crate::{FrontendConfig, TENANT_HEADER};

/// The largest request body read (Thanos' frontend: 10 MiB).
const MAX_BODY: usize = 10 << 20;

/// The frontend: its settings, the querier and the caches.
#[derive(Debug)]
pub struct Frontend {
    pub config: FrontendConfig,
    pub downstream: Downstream,
    pub range_cache: Option<ResultsCache>,
    pub labels_cache: Option<ResultsCache>,
    pub metrics: FrontendMetrics,
}

/// The frontend's routes; anything not routed here is proxied to the querier.
pub fn router(frontend: Arc<Frontend>) -> Router {
    Router::new()
        .route(
            "/api/v1/query_range",
            axum::routing::get(query_range).post(query_range),
        )
        .route(
            "/api/v1/labels",
            axum::routing::get(metadata).post(metadata),
        )
        .route(
            "/api/v1/series",
            axum::routing::get(metadata).post(metadata),
        )
        .route("/api/v1/label/{name}/values", axum::routing::get(metadata))
        .route(
            "/api/v1/query",
            axum::routing::get(query_instant).post(query_instant),
        )
        .fallback(proxy)
        .layer(axum::middleware::from_fn_with_state(frontend.clone(), cors))
        .with_state(frontend)
}

/// CORS headers on every answer, as Thanos' servers set them (unless `--web.disable-cors`).
async fn cors(
    State(fe): State<Arc<Frontend>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let mut resp = next.run(req).await;
    if !fe.config.disable_cors {
        let h = resp.headers_mut();
        for (name, value) in [
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "Accept, Accept-Encoding, Authorization, Content-Type, Origin",
            ),
            (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, OPTIONS"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (header::ACCESS_CONTROL_EXPOSE_HEADERS, "Date"),
        ] {
            h.insert(name, HeaderValue::from_static(value));
        }
    }
    resp
}

/// An answer the frontend writes itself.
fn json(status: StatusCode, body: impl Into<Bytes>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(body.into()),
    )
        .into_response()
}

/// Prometheus' error body.
fn api_error(status: StatusCode, kind: &str, msg: &str) -> Response {
    let mut body = String::from(r#"{"status":"error","errorType":"#);
    strata_api::json::write_str(&mut body, kind);
    body.push_str(r#","error":"#);
    strata_api::json::write_str(&mut body, msg);
    body.push('}');
    json(status, body)
}

fn bad_request(e: BadRequest) -> Response {
    api_error(StatusCode::BAD_REQUEST, "bad_data", &e.0)
}

fn unavailable(e: &DownstreamError) -> Response {
    tracing::warn!(error = %e, "downstream querier unreachable");
    api_error(StatusCode::BAD_GATEWAY, "unavailable", &e.to_string())
}

/// A querier's answer passed to the client as it came.
fn pass(answer: Answer) -> Response {
    let mut r = Response::new(Body::from(answer.body));
    *r.status_mut() = answer.status;
    if let Some(ct) = answer.content_type {
        r.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    r
}

/// A querier's 2xx answer that the frontend could not read: a bad gateway, naming it.
fn unreadable(what: &str, e: impl std::fmt::Display) -> Response {
    api_error(
        StatusCode::BAD_GATEWAY,
        "internal",
        &format!("the downstream querier's answer to {what} cannot be read: {e}"),
    )
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The form pairs of a request: its query string and, for a form POST, its body.
async fn form_pairs(req: Request) -> Result<(HeaderMap, Vec<(String, String)>, String), Response> {
    let (parts, body) = req.into_parts();
    let query = parts.uri.query().unwrap_or_default();
    let mut pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|e| bad_request(BadRequest(format!("invalid query string: {e}"))))?;
    if parts.method == Method::POST {
        let bytes = axum::body::to_bytes(body, MAX_BODY)
            .await
            .map_err(|e| bad_request(BadRequest(format!("reading the request body: {e}"))))?;
        let more: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| bad_request(BadRequest(format!("invalid form body: {e}"))))?;
        // Go's `ParseForm` puts body values before URL values.
        let mut all = more;
        all.extend(pairs);
        pairs = all;
    }
    Ok((parts.headers, pairs, parts.uri.path().to_string()))
}

async fn query_range(State(fe): State<Arc<Frontend>>, req: Request) -> Response {
    // Declared first, so it runs last: after the parts' answers are freed.
    let _release = strata_runtime::alloc::ReleaseFreedOnDrop;
    let started = Instant::now();
    let accept_gzip = strata_runtime::http::accepts_gzip(req.headers());
    let (headers, pairs, _) = match form_pairs(req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    fe.metrics
        .queries
        .get_or_create(&OpLabels { op: "query_range" })
        .inc();
    let resp = fe.query_range(&headers, &pairs).await;
    fe.observe("query_range", started, &headers, &pairs);
    fe.finish(resp, accept_gzip).await
}

async fn metadata(State(fe): State<Arc<Frontend>>, req: Request) -> Response {
    // Declared first, so it runs last: after the parts' answers are freed.
    let _release = strata_runtime::alloc::ReleaseFreedOnDrop;
    let started = Instant::now();
    let accept_gzip = strata_runtime::http::accepts_gzip(req.headers());
    let (headers, pairs, path) = match form_pairs(req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let op = if path.ends_with("/series") {
        "series"
    } else if path.ends_with("/labels") {
        "label_names"
    } else {
        "label_values"
    };
    fe.metrics.queries.get_or_create(&OpLabels { op }).inc();
    let resp = fe.metadata(&path, &headers, &pairs).await;
    fe.observe(op, started, &headers, &pairs);
    fe.finish(resp, accept_gzip).await
}

async fn query_instant(State(fe): State<Arc<Frontend>>, req: Request) -> Response {
    let started = Instant::now();
    let accept_gzip = strata_runtime::http::accepts_gzip(req.headers());
    let (headers, mut pairs, _) = match form_pairs(req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    fe.metrics
        .queries
        .get_or_create(&OpLabels { op: "query" })
        .inc();
    if !pairs.iter().any(|(k, _)| k == "partial_response") {
        let v = if fe.config.range.partial_response {
            "true"
        } else {
            "false"
        };
        pairs.push(("partial_response".into(), v.into()));
    }
    let form = serde_urlencoded::to_string(&pairs).unwrap_or_default();
    let out = fe.downstream_headers(&headers);
    // One attempt, as Thanos' instant path makes.
    let resp = match fe
        .downstream
        .call("/api/v1/query", &form, &out, false)
        .await
    {
        Ok(a) => pass(a),
        Err(e) => unavailable(&e),
    };
    fe.observe("query", started, &headers, &pairs);
    fe.finish(resp, accept_gzip).await
}

async fn proxy(State(fe): State<Arc<Frontend>>, req: Request) -> Response {
    let accept_gzip = strata_runtime::http::accepts_gzip(req.headers());
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return api_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "bad_data",
                &format!("reading the request body: {e}"),
            );
        }
    };
    let url = fe.downstream.url(&path);
    let mut out = fe.downstream.client().request(parts.method, &url);
    let tenant = fe.tenant(&parts.headers);
    for (name, value) in &parts.headers {
        let custom_tenant = name.as_str().eq_ignore_ascii_case(&fe.config.tenant_header)
            || name.as_str().eq_ignore_ascii_case(TENANT_HEADER);
        if (crate::downstream::forwarded(name) || name == header::CONTENT_TYPE) && !custom_tenant {
            out = out.header(name, value);
        }
    }
    out = out.header(TENANT_HEADER, tenant);
    let resp = match out.body(body).send().await {
        Ok(r) => r,
        Err(source) => return unavailable(&DownstreamError { url, source }),
    };
    let mut r = Response::builder().status(resp.status());
    for (name, value) in resp.headers() {
        if crate::downstream::forwarded(name) || name == header::CONTENT_TYPE {
            r = r.header(name, value);
        }
    }
    if fe.config.compress_responses && accept_gzip {
        // Compressing needs the whole body; proxied answers are otherwise streamed.
        return match resp.bytes().await {
            Ok(b) => match r.body(Body::from(b)) {
                Ok(r) => gzip(r).await,
                Err(e) => api_error(StatusCode::BAD_GATEWAY, "internal", &e.to_string()),
            },
            Err(source) => unavailable(&DownstreamError { url, source }),
        };
    }
    let stream = futures::stream::unfold(resp, |mut resp| async move {
        match resp.chunk().await {
            Ok(Some(c)) => Some((Ok::<Bytes, reqwest::Error>(c), resp)),
            Ok(None) => None,
            Err(e) => Some((Err(e), resp)),
        }
    });
    r.body(Body::from_stream(stream))
        .unwrap_or_else(|e| api_error(StatusCode::BAD_GATEWAY, "internal", &e.to_string()))
}

/// Gzips a response's body (`--query-frontend.compress-responses`).
async fn gzip(resp: Response) -> Response {
    if resp.headers().contains_key(header::CONTENT_ENCODING) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return api_error(StatusCode::BAD_GATEWAY, "internal", "reading an answer");
    };
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    if enc.write_all(&bytes).is_err() {
        return Response::from_parts(parts, Body::from(bytes));
    }
    let Ok(out) = enc.finish() else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    parts
        .headers
        .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(out))
}

impl Frontend {
    /// The tenant of a request: its `--query-frontend.tenant-header` (else `THANOS-TENANT`),
    /// else `--query-frontend.default-tenant-id`.
    fn tenant(&self, headers: &HeaderMap) -> String {
        [self.config.tenant_header.as_str(), TENANT_HEADER]
            .iter()
            .find_map(|h| header_str(headers, h))
            .unwrap_or(&self.config.default_tenant)
            .to_string()
    }

    /// Who asks (`--query-frontend.org-id-header`, then the tenant headers), `anonymous`
    /// when none says: the first part of every cache key.
    fn org_id(&self, headers: &HeaderMap) -> String {
        self.config
            .org_id_headers
            .iter()
            .map(String::as_str)
            .chain([self.config.tenant_header.as_str(), TENANT_HEADER])
            .find_map(|h| header_str(headers, h))
            .unwrap_or("anonymous")
            .to_string()
    }

    /// The headers of a request the frontend builds: the `--query-frontend.forward-header`
    /// ones the client sent, the tenant as `THANOS-TENANT`, the org id as `X-Scope-OrgID`,
    /// and the trace context.
    fn downstream_headers(&self, client: &HeaderMap) -> HeaderMap {
        let mut out = HeaderMap::new();
        for name in &self.config.forward_headers {
            if let Ok(n) = http::HeaderName::from_bytes(name.as_bytes())
                && let Some(v) = client.get(&n)
                && crate::downstream::forwarded(&n)
            {
                out.insert(n, v.clone());
            }
        }
        if let Ok(v) = HeaderValue::from_str(&self.tenant(client)) {
            out.insert(TENANT_HEADER, v);
        }
        if let Ok(v) = HeaderValue::from_str(&self.org_id(client)) {
            out.insert("x-scope-orgid", v);
        }
        strata_runtime::otel::inject_current(&mut out);
        out
    }

    async fn finish(&self, resp: Response, accept_gzip: bool) -> Response {
        if self.config.compress_responses && accept_gzip {
            gzip(resp).await
        } else {
            resp
        }
    }

    /// Records the request's duration, and logs it when slower than
    /// `--query-frontend.log-queries-longer-than`.
    fn observe(
        &self,
        op: &'static str,
        started: Instant,
        headers: &HeaderMap,
        pairs: &[(String, String)],
    ) {
        let took = started.elapsed();
        self.metrics
            .duration
            .get_or_create(&OpLabels { op })
            .observe(took.as_secs_f64());
        let Some(limit) = self.config.log_queries_longer_than else {
            return;
        };
        if took < limit {
            return;
        }
        let params: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("param_{k}={v}"))
            .collect();
        let user = self
            .config
            .slow_query_logs_user_header
            .as_deref()
            .and_then(|h| header_str(headers, h))
            .unwrap_or("-");
        tracing::info!(
            op,
            time_taken = ?took,
            org_id = %self.org_id(headers),
            remote_user = user,
            grafana_dashboard_uid = header_str(headers, "x-dashboard-uid").unwrap_or("-"),
            grafana_panel_id = header_str(headers, "x-panel-id").unwrap_or("-"),
            params = %params.join(" "),
            "slow query detected"
        );
    }

    /// `/api/v1/query_range`.
    pub async fn query_range(&self, headers: &HeaderMap, pairs: &[(String, String)]) -> Response {
        let cfg = &self.config.range;
        let mut req = match RangeRequest::parse(pairs) {
            Ok(r) => r,
            Err(e) => return bad_request(e),
        };
        req.default_param(
            "partial_response",
            if cfg.partial_response {
                "true"
            } else {
                "false"
            },
        );
        let limit = cfg.max_query_length.as_millis() as i64;
        if limit > 0 && req.end.saturating_sub(req.start) > limit {
            return bad_request(BadRequest(format!(
                "the query time range exceeds the limit (query length: {}, limit: {})",
                go_duration(req.end.saturating_sub(req.start)),
                go_duration(limit)
            )));
        }
        if cfg.align_range_with_step {
            (req.start, req.end) = align(req.start, req.end, req.step);
        }
        let mut call = Call {
            downstream: self.downstream.clone(),
            headers: self.downstream_headers(headers),
            org_id: self.org_id(headers),
            // Thanos' results cache leaves out requests that choose stores or ask for
            // replicas undeduplicated, and requests that say not to store.
            cacheable: req.param("storeMatch[]").is_none()
                && !req.param("dedup").is_some_and(is_false)
                && !no_store(headers),
        };
        call.downstream.retries = cfg.max_retries.saturating_sub(1);
        let downsample =
            cfg.request_downsampled && req.param("max_source_resolution") == Some("auto");
        let interval = cfg.interval_for(req.end.saturating_sub(req.start));
        let whole = !req.splittable()
            || (split(req.start, req.end, req.step, interval).len() == 1
                && self.range_cache.is_none());
        if whole && !downsample {
            // Nothing to join: the querier's answer is the answer, byte for byte.
            self.metrics.split_queries.inc();
            return match call
                .downstream
                .call(
                    "/api/v1/query_range",
                    &req.form(req.start, req.end),
                    &call.headers,
                    false,
                )
                .await
            {
                Ok(a) => pass(a),
                Err(e) => unavailable(&e),
            };
        }
        let first = match self.range_matrix(&call, &req).await {
            Ok(m) => m,
            Err(r) => return r,
        };
        let answer = if downsample {
            match self.downsampled(&call, &req, first).await {
                Ok(m) => m,
                Err(r) => return r,
            }
        } else {
            first
        };
        json(StatusCode::OK, answer.to_json())
    }

    /// `--query-range.request-downsampled`: an `auto` resolution answer that starts after
    /// the range does (older raw data deleted by retention, say) is completed from the
    /// next coarser resolution (5m, then 1h) for the part before its first sample.
    async fn downsampled(
        &self,
        call: &Call,
        req: &RangeRequest,
        first: Matrix,
    ) -> Result<Matrix, Response> {
        const LEVELS: [i64; 2] = [300_000, 3_600_000];
        let mut resolution = req.step / 5;
        let mut answers = vec![first];
        let mut end = req.end;
        for level in LEVELS {
            if level <= resolution {
                continue;
            }
            let earliest = answers.last().and_then(first_sample);
            match earliest {
                Some(t) if t == req.start => break,
                Some(t) => {
                    end = t - req.step;
                    if req.start > end {
                        break;
                    }
                }
                None => {}
            }
            let mut coarser = req.clone();
            coarser.end = end;
            for (k, v) in &mut coarser.other {
                if k == "max_source_resolution" {
                    *v = (level / 1000).to_string();
                }
            }
            answers.push(self.range_matrix(call, &coarser).await?);
            resolution = level;
        }
        Matrix::merge(answers).map_err(|e| unreadable("a range query", e))
    }

    /// The answer to a range query as a matrix: split and cached when it may be.
    async fn range_matrix(&self, call: &Call, req: &RangeRequest) -> Result<Matrix, Response> {
        if !req.splittable() {
            return self
                .fetch_matrix(call, req, req.start, req.end)
                .await
                .map(|(m, _)| m);
        }
        let interval = self
            .config
            .range
            .interval_for(req.end.saturating_sub(req.start));
        let parts = split(req.start, req.end, req.step, interval);
        let identity = req.identity();
        let answers: Vec<Result<Matrix, Response>> = futures::stream::iter(parts)
            .map(|(s, e)| self.range_part(call, req, &identity, interval, s, e))
            .buffered(self.config.range.max_query_parallelism.max(1))
            .collect()
            .await;
        let mut matrices = Vec::with_capacity(answers.len());
        for a in answers {
            matrices.push(a?);
        }
        Matrix::merge(matrices).map_err(|e| unreadable("a range query", e))
    }

    /// One part `[start, end]` of a range query: from the cache where it has the steps,
    /// from the querier for the rest.
    async fn range_part(
        &self,
        call: &Call,
        req: &RangeRequest,
        identity: &str,
        interval: i64,
        start: i64,
        end: i64,
    ) -> Result<Matrix, Response> {
        let newest = now_ms() - self.config.range.max_freshness.as_millis() as i64;
        let cache = self
            .range_cache
            .as_ref()
            // Extents assume steps on multiples of the step (what alignment gives).
            .filter(|_| call.cacheable && req.start.rem_euclid(req.step) == 0 && start <= newest);
        let Some(cache) = cache else {
            return self
                .fetch_matrix(call, req, start, end)
                .await
                .map(|(m, _)| m);
        };
        let key = format!(
            "{}\u{0}{identity}\u{0}{interval}\u{0}{}",
            call.org_id,
            interval_number(start, interval)
        );
        let labels = CacheLabels { name: cache.name };
        self.metrics.cache_requests.get_or_create(&labels).inc();
        let extents = cache.get(&key).await.unwrap_or_default();
        if !extents.is_empty() {
            self.metrics.cache_hits.get_or_create(&labels).inc();
        }
        let pieces = partition(start, end, req.step, &extents);
        let steps = |s: i64, e: i64| ((e - s) / req.step + 1) as u64;
        let gap_steps: u64 = pieces
            .iter()
            .map(|p| match p {
                Piece::Gap(s, e) => steps(*s, *e),
                Piece::Cached(_) => 0,
            })
            .sum();
        self.metrics.fetched_steps.inc_by(gap_steps);
        self.metrics
            .cached_steps
            .inc_by(steps(start, end).saturating_sub(gap_steps));
        // In time order, so that joining them appends each series' samples.
        let mut found = Vec::with_capacity(pieces.len());
        let mut new_extents = Vec::new();
        for piece in pieces {
            let (s, e) = match piece {
                Piece::Cached(m) => {
                    found.push(m);
                    continue;
                }
                Piece::Gap(s, e) => (s, e),
            };
            let (m, no_store) = self.fetch_matrix(call, req, s, e).await?;
            if !no_store && m.warnings.is_empty() && m.infos.is_empty() {
                new_extents.push(Extent {
                    start: s,
                    end: e,
                    matrix: m.clone(),
                });
            }
            found.push(m);
        }
        if !new_extents.is_empty() {
            let mut all = extents;
            all.extend(new_extents);
            let merged = merge_extents(all, req.step, newest);
            if !merged.is_empty() {
                cache.set(&key, &merged);
            }
        }
        Matrix::merge(found).map_err(|e| unreadable("a range query", e))
    }

    /// Asks the querier for `[start, end]` of the query; a non-2xx answer is handed back as
    /// the response to give the client. Also says whether the querier marked the answer
    /// `no-store`.
    async fn fetch_matrix(
        &self,
        call: &Call,
        req: &RangeRequest,
        start: i64,
        end: i64,
    ) -> Result<(Matrix, bool), Response> {
        self.metrics.split_queries.inc();
        let answer = call
            .downstream
            .call(
                "/api/v1/query_range",
                &req.form(start, end),
                &call.headers,
                false,
            )
            .await
            .map_err(|e| unavailable(&e))?;
        if !answer.status.is_success() {
            return Err(pass(answer));
        }
        let no_store = answer.no_store;
        Matrix::parse_bytes(&answer.body)
            .map(|m| (m, no_store))
            .map_err(|e| unreadable("a range query", e))
    }

    /// `/api/v1/labels`, `/api/v1/label/<name>/values`, `/api/v1/series`.
    pub async fn metadata(
        &self,
        path: &str,
        headers: &HeaderMap,
        pairs: &[(String, String)],
    ) -> Response {
        let cfg = &self.config.labels;
        let series = path.ends_with("/series");
        let mut req = match MetadataRequest::parse(
            pairs,
            cfg.default_time_range.as_millis() as i64,
            now_ms(),
        ) {
            Ok(r) => r,
            Err(e) => return bad_request(e),
        };
        if !req.other.iter().any(|(k, _)| k == "partial_response") {
            req.other.push((
                "partial_response".into(),
                if cfg.partial_response {
                    "true"
                } else {
                    "false"
                }
                .into(),
            ));
        }
        let get_only = path.contains("/label/");
        let mut downstream = self.downstream.clone();
        downstream.retries = cfg.max_retries.saturating_sub(1);
        let out = self.downstream_headers(headers);
        let parts = split(req.start, req.end, 1, cfg.split_interval.as_millis() as i64);
        if parts.len() == 1 {
            self.metrics.split_queries.inc();
            return match downstream
                .call(path, &req.form(req.start, req.end), &out, get_only)
                .await
            {
                Ok(a) => pass(a),
                Err(e) => unavailable(&e),
            };
        }
        let interval = cfg.split_interval.as_millis() as i64;
        let newest = now_ms() - cfg.max_freshness.as_millis() as i64;
        let undeduplicated = series && req.other.iter().any(|(k, v)| k == "dedup" && is_false(v));
        let cacheable = !req.other.iter().any(|(k, _)| k == "storeMatch[]")
            && !undeduplicated
            && !no_store(headers);
        let mut identity = format!("{}\u{0}{path}", self.org_id(headers));
        crate::request::push_sorted_params(&mut identity, &req.other, &[]);
        let answers: Vec<Result<MetadataAnswer, Response>> = futures::stream::iter(parts)
            .map(|(s, e)| {
                let (downstream, req, out, identity) = (&downstream, &req, &out, &identity);
                async move {
                    // Only a whole split interval, old enough not to change, is cached: the
                    // next request over the same days finds it whatever its own range.
                    let whole = interval > 0
                        && s.rem_euclid(interval) == 0
                        && e == s + interval - 1
                        && e <= newest;
                    let cache = self.labels_cache.as_ref().filter(|_| cacheable && whole);
                    let key = format!(
                        "{identity}\u{0}{interval}\u{0}{}",
                        s.div_euclid(interval.max(1))
                    );
                    if let Some(cache) = cache {
                        let labels = CacheLabels { name: cache.name };
                        self.metrics.cache_requests.get_or_create(&labels).inc();
                        if let Some(blob) = cache.get_blob(&key).await
                            && let Ok(a) = MetadataAnswer::parse(&blob, series)
                        {
                            self.metrics.cache_hits.get_or_create(&labels).inc();
                            return Ok(a);
                        }
                    }
                    self.metrics.split_queries.inc();
                    let a = downstream
                        .call(path, &req.form(s, e), out, get_only)
                        .await
                        .map_err(|e| unavailable(&e))?;
                    if !a.status.is_success() {
                        return Err(pass(a));
                    }
                    let parsed = MetadataAnswer::parse(&a.body, series)
                        .map_err(|e| unreadable("a metadata request", e))?;
                    if let Some(cache) = cache
                        && !a.no_store
                        && parsed.warnings.is_empty()
                    {
                        cache.set_blob(&key, &a.body);
                    }
                    Ok(parsed)
                }
            })
            .buffered(cfg.max_query_parallelism.max(1))
            .collect()
            .await;
        let mut ok = Vec::with_capacity(answers.len());
        for a in answers {
            match a {
                Ok(m) => ok.push(m),
                Err(r) => return r,
            }
        }
        json(StatusCode::OK, MetadataAnswer::merge(ok, series).to_json())
    }
}

/// What every part of one client request shares.
struct Call {
    downstream: Downstream,
    headers: HeaderMap,
    org_id: String,
    /// Whether the request may be answered from and stored in the cache.
    cacheable: bool,
}

/// Go's `strconv.ParseBool` false values, as Thanos reads `dedup`.
fn is_false(v: &str) -> bool {
    matches!(v, "false" | "0" | "f" | "F" | "FALSE" | "False")
}

/// A header's value as text, when present, not empty and text.
fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}

/// Whether the client asked that its answer not be cached (`Cache-Control: no-store`).
fn no_store(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("no-store"))
}

/// The earliest first sample of any series of an answer (float or histogram).
fn first_sample(m: &Matrix) -> Option<i64> {
    m.series
        .iter()
        .filter_map(|s| {
            let f = s.values.first_time();
            let h = s.histograms.first_time();
            match (f, h) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        })
        .min()
}

/// A duration in milliseconds as Go prints one (`720h0m0s`), for messages Thanos users know.
fn go_duration(ms: i64) -> String {
    let d = Duration::from_millis(ms.max(0) as u64);
    let s = d.as_secs();
    let (h, m, sec) = (s / 3600, (s / 60) % 60, s % 60);
    let frac = d.subsec_millis();
    let secs = if frac == 0 {
        format!("{sec}s")
    } else {
        let digits = format!("{frac:03}");
        format!("{sec}.{}s", digits.trim_end_matches('0'))
    };
    if h > 0 {
        format!("{h}h{m}m{secs}")
    } else if m > 0 {
        format!("{m}m{secs}")
    } else {
        secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_prints_them() {
        for (ms, want) in [
            (72 * 3_600_000, "72h0m0s"),
            (90_000, "1m30s"),
            (1_500, "1.5s"),
            (61_020, "1m1.02s"),
            (0, "0s"),
        ] {
            assert_eq!(go_duration(ms), want);
        }
    }

    #[test]
    fn the_earliest_sample_counts_floats_and_histograms() {
        let m = Matrix::parse(
            br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"1"},"values":[[20,"1"]]},{"metric":{"a":"2"},"histograms":[[10,{"count":"1","sum":"1"}]]}]}}"#,
        )
        .unwrap();
        assert_eq!(first_sample(&m), Some(10_000));
        assert_eq!(first_sample(&Matrix::default()), None);
    }
}
