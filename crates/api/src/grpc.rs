//! The Thanos Query API (`/thanos.Query/Query` and `/thanos.Query/QueryRange`): PromQL over
//! gRPC, served by the querier beside its Store API.
//!
//! Thanos' ruler evaluates its rules through it when given `--grpc-query-endpoint`, and
//! Thanos' distributed engine sends sub-queries through it. A query here is the same query
//! as on `/api/v1/query`: the same engine, the same storage options per request, the same
//! `--query.max-concurrent` slots, `--query.timeout` and active query log, since both
//! routes share one state.
//!
//! What the wire asks of a server, as Thanos' querier answers:
//! - times are whole Unix seconds; an instant query at second 0 is evaluated now;
//! - an empty `replica_labels` means the querier's `--query.replica-label`s, a zero
//!   `max_resolution_seconds` the querier's default (`--query.auto-downsampling`), a zero
//!   `lookback_delta_seconds` its `--query.lookback-delta`;
//! - warnings come first, one message each, then one message per sample (instant) or per
//!   series (range); a scalar is one series without labels;
//! - a failed evaluation is `ABORTED`, except that with `enablePartialResponse` it is sent
//!   as a warning and the call succeeds with no series.
//!
//! Not sent: the `stats` message newer Thanos servers end with. A message with neither
//! warnings nor a series is one that older Thanos clients' instant-query readers cannot take,
//! and Strata's engine does not count samples per query.

use std::sync::Arc;
use std::time::Duration;

use strata_model::Matcher;
use strata_promql::{Engine, QueryOutput, Value};
use strata_storepb::convert::{labels_from_model, matchers_to_model};
use strata_storepb::prometheus_copy::{Sample as WireSample, TimeSeries};
use strata_storepb::thanos::query_server::Query;
use strata_storepb::thanos::{
    EngineType, QueryRangeRequest, QueryRangeResponse, QueryRequest, QueryResponse, ShardInfo,
    StoreMatchers, query_range_response, query_response,
};
use tonic::{Request, Response, Status};

use crate::{
    ApiError, ApiState, MaxSourceResolution, RequestOptions, StepProblem, now_ms, step_problem,
};

/// The answer stream of either call: the whole answer is evaluated before the first message,
/// as the HTTP API's is.
pub type Answers<T> = futures::stream::Iter<std::vec::IntoIter<Result<T, Status>>>;

/// The Query API service; built with the HTTP API by [`crate::router_and_grpc`], whose state it
/// shares.
#[derive(Debug, Clone)]
pub struct QueryGrpc {
    pub(crate) state: Arc<ApiState>,
}

/// The parts of both requests that choose how a query runs.
struct Common<'a> {
    query: &'a str,
    timeout_seconds: i64,
    max_resolution_seconds: i64,
    replica_labels: &'a [String],
    store_matchers: &'a [StoreMatchers],
    dedup: bool,
    partial_response: bool,
    shard_info: Option<&'a ShardInfo>,
    lookback_delta_seconds: i64,
    engine: i32,
    /// The range query's step (ms; 0 for an instant query), for `auto` resolution.
    step_ms: i64,
}

impl QueryGrpc {
    /// Evaluates `f` as the request asks: its storage options, its timeout, its lookback.
    /// `Ok(Err(warning))` is a failure that partial response turns into a warning.
    async fn evaluate<F>(
        &self,
        c: Common<'_>,
        headers: &axum::http::HeaderMap,
        span: tracing::Span,
        f: F,
    ) -> Result<Result<QueryOutput, String>, Status>
    where
        F: FnOnce(
                &Engine,
                &dyn strata_promql::Storage,
                &strata_promql::QueryContext,
            ) -> Result<QueryOutput, strata_promql::Error>
            + Send
            + 'static,
    {
        let st = &self.state;
        match EngineType::try_from(c.engine) {
            Ok(EngineType::Default | EngineType::Prometheus | EngineType::Thanos) => {}
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "invalid engine parameter {}: want default (0), prometheus (1) or thanos (2)",
                    c.engine
                )));
            }
        }
        if let Some(s) = c.shard_info
            && s.total_shards > 1
        {
            // The stores below are asked for every series; answering one shard's query with
            // all of them would count each series in every shard.
            return Err(Status::unimplemented(
                "sharded queries (shard_info) are not supported by this querier",
            ));
        }
        let opts = self.request_options(&c, headers)?;
        let storage = st.cfg.storage.storage(&opts);
        // The request's lookback when it gives one, else the querier's (dynamic for
        // downsampled data), as Thanos' querier picks it.
        let requested =
            (c.lookback_delta_seconds > 0).then(|| c.lookback_delta_seconds.saturating_mul(1000));
        let engine = st.engine_for(&opts, c.step_ms, requested);
        let mut timeout = st.cfg.query_timeout;
        if c.timeout_seconds > 0 {
            timeout = timeout.min(Duration::from_secs(c.timeout_seconds as u64));
        }
        let ctx = strata_promql::QueryContext::with_timeout(timeout);
        let run = st.run(c.query, ctx, (storage, engine), span, f);
        match run.await {
            Ok(out) => Ok(Ok(out)),
            Err(e) if c.partial_response => Ok(Err(e.msg)),
            Err(e) => Err(status_of(e)),
        }
    }

    fn request_options(
        &self,
        c: &Common<'_>,
        headers: &axum::http::HeaderMap,
    ) -> Result<RequestOptions, Status> {
        // The HTTP API's rule: gRPC metadata are HTTP/2 headers.
        let tenant = self.state.cfg.tenancy.tenant(headers).map_err(status_of)?;
        let store_matchers = c
            .store_matchers
            .iter()
            .map(|m| matchers_to_model(&m.label_matchers))
            .collect::<Result<Vec<Vec<Matcher>>, _>>()
            .map_err(|e| Status::invalid_argument(format!("storeMatchers: {e}")))?;
        let replica_labels: Vec<String> = c
            .replica_labels
            .iter()
            .filter(|l| !l.is_empty())
            .cloned()
            .collect();
        if c.max_resolution_seconds < 0 {
            return Err(Status::invalid_argument(
                "max_resolution_seconds: a negative resolution is not accepted",
            ));
        }
        Ok(RequestOptions {
            dedup: c.dedup,
            replica_labels: (!replica_labels.is_empty()).then_some(replica_labels),
            partial_response: Some(c.partial_response),
            max_source_resolution: (c.max_resolution_seconds > 0)
                .then(|| MaxSourceResolution::Millis(c.max_resolution_seconds * 1000)),
            store_matchers,
            tenant,
        })
    }
}

/// The gRPC status for an API error: a request the client got wrong is
/// `INVALID_ARGUMENT`, a query that ran out of time `DEADLINE_EXCEEDED`; any other failed
/// evaluation is `ABORTED`, as Thanos' querier answers.
fn status_of(e: ApiError) -> Status {
    match e.kind {
        "bad_data" => Status::invalid_argument(e.msg),
        "timeout" => Status::deadline_exceeded(e.msg),
        "canceled" => Status::cancelled(e.msg),
        _ => Status::aborted(e.msg),
    }
}

/// The messages of an answer: every warning and info first, one message each, then a series
/// per sample of a vector, per series of a matrix (`range` calls only), or one without labels
/// for a scalar. A failure that partial response turned into a warning is that warning alone.
fn answers<T>(
    out: Result<QueryOutput, String>,
    range: bool,
    warning: impl Fn(String) -> T,
    series: impl Fn(TimeSeries) -> T,
) -> Result<Answers<T>, Status> {
    let out = match out {
        Ok(out) => out,
        Err(w) => return Ok(futures::stream::iter(vec![Ok(warning(w))])),
    };
    let a = &out.annotations;
    let mut msgs: Vec<Result<T, Status>> = a
        .warnings
        .iter()
        .chain(&a.infos)
        .map(|w| Ok(warning(w.clone())))
        .collect();
    match &out.value {
        Value::Vector(samples) => msgs.extend(
            samples
                .iter()
                .map(|s| Ok(series(series_of(&s.labels, std::iter::once((s.t, s.v)))))),
        ),
        Value::Scalar { t, v } => msgs.push(Ok(series(series_of(
            &strata_model::Labels::empty(),
            std::iter::once((*t, *v)),
        )))),
        Value::Matrix(m) if range => msgs.extend(
            m.iter()
                .map(|s| Ok(series(series_of(&s.labels, s.points.iter().copied())))),
        ),
        other => {
            return Err(Status::invalid_argument(format!(
                "the query gives a {}: the Query call answers instant vectors and scalars, \
                 QueryRange matrices",
                other.type_name()
            )));
        }
    }
    Ok(futures::stream::iter(msgs))
}

fn series_of(
    labels: &strata_model::Labels,
    points: impl Iterator<Item = (i64, f64)>,
) -> TimeSeries {
    TimeSeries {
        labels: labels_from_model(labels),
        samples: points
            .map(|(timestamp, value)| WireSample { value, timestamp })
            .collect(),
        histograms: Vec::new(),
    }
}

/// `secs` as the engine's milliseconds, refusing what milliseconds cannot hold.
fn millis(field: &str, secs: i64) -> Result<i64, Status> {
    secs.checked_mul(1000)
        .ok_or_else(|| Status::invalid_argument(format!("{field}: {secs} s is out of range")))
}

#[tonic::async_trait]
impl Query for QueryGrpc {
    type QueryStream = Answers<QueryResponse>;
    type QueryRangeStream = Answers<QueryRangeResponse>;

    async fn query(
        &self,
        request: Request<QueryRequest>,
    ) -> Result<Response<Self::QueryStream>, Status> {
        let (metadata, _, r) = request.into_parts();
        let headers = metadata.into_headers();
        let t = match r.time_seconds {
            0 => now_ms(),
            s => millis("time_seconds", s)?,
        };
        let c = Common {
            query: &r.query,
            timeout_seconds: r.timeout_seconds,
            max_resolution_seconds: r.max_resolution_seconds,
            replica_labels: &r.replica_labels,
            store_matchers: &r.store_matchers,
            dedup: r.enable_dedup,
            partial_response: r.enable_partial_response,
            shard_info: r.shard_info.as_ref(),
            lookback_delta_seconds: r.lookback_delta_seconds,
            engine: r.engine,
            step_ms: 0,
        };
        let qs = r.query.clone();
        let span = tracing::info_span!("grpc_instant_query", query = %qs, time = t);
        let out = self
            .evaluate(c, &headers, span, move |e, s, ctx| {
                e.instant(s, &qs, t, ctx)
            })
            .await?;
        let answers = answers(
            out,
            false,
            |w| QueryResponse {
                result: Some(query_response::Result::Warnings(w)),
                stats: None,
            },
            |ts| QueryResponse {
                result: Some(query_response::Result::Timeseries(ts)),
                stats: None,
            },
        )?;
        Ok(Response::new(answers))
    }

    async fn query_range(
        &self,
        request: Request<QueryRangeRequest>,
    ) -> Result<Response<Self::QueryRangeStream>, Status> {
        let (metadata, _, r) = request.into_parts();
        let headers = metadata.into_headers();
        let start = millis("start_time_seconds", r.start_time_seconds)?;
        let end = millis("end_time_seconds", r.end_time_seconds)?;
        let step = millis("interval_seconds", r.interval_seconds)?;
        if end < start {
            return Err(Status::invalid_argument(
                "end_time_seconds must not be before start_time_seconds",
            ));
        }
        match step_problem(start, end, step) {
            None => {}
            Some(StepProblem::NotPositive) => {
                return Err(Status::invalid_argument(
                    "interval_seconds: zero or negative query resolution step widths are not \
                     accepted. Try a positive integer",
                ));
            }
            Some(StepProblem::TooManyPoints) => {
                return Err(Status::invalid_argument(
                    "exceeded maximum resolution of 11,000 points per timeseries. Try a longer \
                     interval_seconds",
                ));
            }
        }
        let c = Common {
            query: &r.query,
            timeout_seconds: r.timeout_seconds,
            max_resolution_seconds: r.max_resolution_seconds,
            replica_labels: &r.replica_labels,
            store_matchers: &r.store_matchers,
            dedup: r.enable_dedup,
            partial_response: r.enable_partial_response,
            shard_info: r.shard_info.as_ref(),
            lookback_delta_seconds: r.lookback_delta_seconds,
            engine: r.engine,
            step_ms: step,
        };
        let qs = r.query.clone();
        let span = tracing::info_span!("grpc_range_query", query = %qs, start, end, step);
        let out = self
            .evaluate(c, &headers, span, move |e, s, ctx| {
                e.range(s, &qs, start, end, step, ctx)
            })
            .await?;
        let answers = answers(
            out,
            true,
            |w| QueryRangeResponse {
                result: Some(query_range_response::Result::Warnings(w)),
                stats: None,
            },
            |ts| QueryRangeResponse {
                result: Some(query_range_response::Result::Timeseries(ts)),
                stats: None,
            },
        )?;
        Ok(Response::new(answers))
    }
}
