//! The fan-out: one request sent to every store that can hold matching data, the answers
//! merged into one sorted list.
//!
//! Stores are picked by their advertised time range and external label sets (a matcher on an
//! external label that the set's value fails rules the store out), and by the request's
//! `storeMatch[]` selectors, matched against the store's address. Each store is called
//! concurrently; `--store.response-timeout` bounds the wait for each frame, as Thanos' does,
//! so a store that hangs costs at most that long. A failing store is a warning naming it
//! under partial response, else the error of the whole request.
//!
//! Every store sends its series sorted by labels, so the lists are merged k-way: series with
//! equal labels from several stores (a sidecar and a store gateway covering the same
//! Prometheus) become one series holding both stores' chunks, in store order.

use std::time::Duration;
use tracing::Instrument as _;

use strata_model::{Labels, Matcher};
use strata_runtime::task::CallTask;
use strata_storepb::convert::matchers_to_model;
use strata_storepb::frame::{
    SeriesFrame, SeriesFrameCodec, SeriesMessages, decode_series_response,
};
use strata_storepb::thanos::store_client::StoreClient;
use strata_storepb::thanos::{LabelMatcher, LabelNamesRequest, LabelValuesRequest, SeriesRequest};

use crate::endpoint::{EndpointSet, StoreChannel, StoreEndpoint};
use crate::error::QueryError;
use crate::series::same_labels;

/// Series per frame asked of the stores (`response_batch_size`): one frame per series costs
/// the store and the querier a protobuf message and a channel hop each; 64 series per frame
/// cut the Series call by a quarter in `examples/fanout_profile.rs`. Stores that predate
/// batching ignore the field and send one series per frame.
pub const RESPONSE_BATCH: i64 = 64;

pub use strata_storepb::frame::WireSeries;

/// A store's Series method. Answers are read with [`strata_storepb::frame::call_series`], which cuts messages out of
/// the HTTP/2 DATA frames without tonic's copies; when tonic compresses the calls (gzip),
/// tonic's own decoder reads them instead. Either way the frames are decoded by the caller
/// ([`strata_storepb::frame`]).
#[derive(Debug, Clone)]
pub struct SeriesClient {
    channel: StoreChannel,
    /// Set when tonic compresses the calls.
    tonic: Option<tonic::client::Grpc<StoreChannel>>,
    max_frame: usize,
}

/// The frames of one Series answer.
#[derive(Debug)]
pub enum SeriesStream {
    Direct(SeriesMessages),
    Tonic(tonic::Streaming<bytes::Bytes>),
}

impl SeriesStream {
    /// The next frame; `None` when the call ended well. Cancel-safe.
    pub async fn message(&mut self) -> Result<Option<bytes::Bytes>, tonic::Status> {
        match self {
            SeriesStream::Direct(m) => m.message().await,
            SeriesStream::Tonic(s) => s.message().await,
        }
    }
}

impl SeriesClient {
    /// A client on `channel` accepting frames up to `max_frame` bytes, compressed with
    /// `compression` both ways when set (as the generated clients are configured).
    pub(crate) fn new(
        channel: StoreChannel,
        max_frame: usize,
        compression: Option<tonic::codec::CompressionEncoding>,
    ) -> Self {
        let tonic = compression.map(|e| {
            tonic::client::Grpc::new(channel.clone())
                .max_decoding_message_size(max_frame)
                .send_compressed(e)
                .accept_compressed(e)
        });
        SeriesClient {
            channel,
            tonic,
            max_frame,
        }
    }

    /// Calls `/thanos.Store/Series`.
    pub async fn series(&mut self, req: SeriesRequest) -> Result<SeriesStream, tonic::Status> {
        let Some(grpc) = &mut self.tonic else {
            return strata_storepb::frame::call_series(&mut self.channel, &req, self.max_frame)
                .await
                .map(SeriesStream::Direct);
        };
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("store not ready: {e}")))?;
        let mut req = tonic::Request::new(req);
        req.extensions_mut()
            .insert(tonic::GrpcMethod::new("thanos.Store", "Series"));
        let path = tonic::codegen::http::uri::PathAndQuery::from_static("/thanos.Store/Series");
        Ok(SeriesStream::Tonic(
            grpc.server_streaming(req, path, SeriesFrameCodec)
                .await?
                .into_inner(),
        ))
    }
}

/// What a fan-out returned.
#[derive(Debug, Default)]
pub struct Merged<T> {
    pub items: T,
    /// Store warnings and, under partial response, the failures of stores, each naming the
    /// store.
    pub warnings: Vec<String>,
}

/// Sends requests to the stores of an [`EndpointSet`].
#[derive(Debug, Clone)]
pub struct Fanout {
    pub endpoints: std::sync::Arc<EndpointSet>,
    /// `--store.response-timeout` (None: wait for as long as `max_wait`).
    pub response_timeout: Option<Duration>,
    /// The longest any store call may take in total (the query timeout), so that a store
    /// that hangs without a response timeout cannot hold a query thread forever.
    pub max_wait: Duration,
    /// `--store.limits.request-series` and `--store.limits.request-samples`.
    pub limits: SeriesLimits,
    /// `--selector.relabel-config[-file]`: which stores may be queried, by their external
    /// label sets.
    pub selector: std::sync::Arc<Vec<strata_block::relabel::RelabelConfig>>,
}

/// The querier's `--store.limits.request-series` and `--store.limits.request-samples`: the
/// most series, and samples, one Series fan-out (a selection, or a Series call on the
/// querier's own Store API) may bring, counted after the stores' answers are merged, as
/// Thanos counts them on its proxy. Samples are counted as chunks of at most 120 (Thanos'
/// rule), so the chunk limit is the samples limit divided by 120, rounded up. 0: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeriesLimits {
    pub series: u64,
    pub samples: u64,
}

/// Samples a chunk is taken to hold for `--store.limits.request-samples`.
const SAMPLES_PER_CHUNK: u64 = 120;

/// One fan-out's count against its [`SeriesLimits`].
#[derive(Debug, Default)]
struct LimitCount {
    limits: SeriesLimits,
    series: u64,
    chunks: u64,
}

impl LimitCount {
    fn new(limits: SeriesLimits) -> Self {
        LimitCount {
            limits,
            ..Default::default()
        }
    }

    /// Counts one merged series of `chunks` chunks.
    fn add(&mut self, chunks: usize) -> Result<(), QueryError> {
        self.series += 1;
        self.chunks += chunks as u64;
        let l = self.limits;
        if l.series > 0 && self.series > l.series {
            return Err(QueryError::LimitExceeded(format!(
                "exceeded series limit: limit {} violated (got {}); narrow the selector or \
                 raise --store.limits.request-series",
                l.series, self.series
            )));
        }
        let max_chunks = l.samples.div_ceil(SAMPLES_PER_CHUNK);
        if l.samples > 0 && self.chunks > max_chunks {
            return Err(QueryError::LimitExceeded(format!(
                "exceeded samples limit: limit {} samples ({max_chunks} chunks of \
                 {SAMPLES_PER_CHUNK}) violated (got {} chunks); narrow the selector or time \
                 range or raise --store.limits.request-samples",
                l.samples, self.chunks
            )));
        }
        Ok(())
    }
}

/// Whether `--selector.relabel-config`'s `rules` let a store with these external label sets
/// be queried: when they keep any one of its sets (a store without label sets is judged by
/// the empty set). No rules: every store.
pub fn selected_by_relabel(
    label_sets: &[Labels],
    rules: &[strata_block::relabel::RelabelConfig],
) -> bool {
    if rules.is_empty() {
        return true;
    }
    if label_sets.is_empty() {
        return strata_block::relabel::relabel(&Labels::empty(), rules).is_some();
    }
    label_sets
        .iter()
        .any(|ls| strata_block::relabel::relabel(ls, rules).is_some())
}

/// Whether a store with these external label sets can hold series matching `matchers`.
pub fn labels_can_match(label_sets: &[Labels], matchers: &[Matcher]) -> bool {
    if label_sets.is_empty() {
        return true;
    }
    label_sets.iter().any(|set| {
        matchers.iter().all(|m| match set.get(m.name()) {
            Some(v) => m.matches(v),
            None => true,
        })
    })
}

/// Whether `storeMatch[]` lets a request reach the store at `addr`: each selector is matched
/// against the label set `{__address__="<addr>"}` and one matching selector is enough. As in
/// Thanos, a matcher on any other label is ignored (the set has no such label). No selectors:
/// every store.
pub fn address_matches(store_match: &[Vec<Matcher>], addr: &str) -> bool {
    store_match.is_empty()
        || store_match.iter().any(|set| {
            set.iter()
                .filter(|m| m.name() == ADDRESS_LABEL)
                .all(|m| m.matches(addr))
        })
}

/// The label `storeMatch[]` selectors match a store's address with.
pub const ADDRESS_LABEL: &str = "__address__";

impl Fanout {
    /// The stores whose range overlaps `[mint, maxt]`, whose labels can match and whose
    /// address one of `store_match` (`storeMatch[]`; empty: any) matches.
    pub fn stores_for(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        store_match: &[Vec<Matcher>],
    ) -> Vec<StoreEndpoint> {
        self.endpoints
            .stores()
            .into_iter()
            .filter(|s| s.min_time <= maxt && s.max_time >= mint)
            .filter(|s| labels_can_match(&s.label_sets, matchers))
            .filter(|s| selected_by_relabel(&s.label_sets, &self.selector))
            .filter(|s| address_matches(store_match, &s.addr))
            .collect()
    }

    fn frame_timeout(&self) -> Duration {
        self.response_timeout.unwrap_or(self.max_wait)
    }

    /// Runs `req` on every selected store and merges the answers. `partial`: a failing store
    /// becomes a warning instead of the error. `store_match`: the request's `storeMatch[]`
    /// (empty: every store).
    pub async fn series(
        &self,
        req: SeriesRequest,
        partial: bool,
        store_match: &[Vec<Matcher>],
    ) -> Result<Merged<Vec<WireSeries>>, QueryError> {
        let matchers =
            matchers_to_model(&req.matchers).map_err(|e| QueryError::BadRequest(e.to_string()))?;
        let stores = self.stores_for(&matchers, req.min_time, req.max_time, store_match);
        let frame_timeout = self.frame_timeout();
        let deadline = tokio::time::Instant::now() + self.max_wait;
        let calls = stores.into_iter().map(|s| {
            let req = req.clone();
            async move {
                let r = call_series(s.series, &s.addr, req, frame_timeout, deadline).await;
                (s.addr, r)
            }
        });
        let results = futures::future::join_all(calls).await;
        let mut out = Merged::default();
        let mut lists = Vec::new();
        for (addr, r) in results {
            match r {
                Ok((series, warnings)) => {
                    out.warnings
                        .extend(warnings.into_iter().map(|w| format!("store {addr}: {w}")));
                    lists.push(series);
                }
                Err(e) => fail(&mut out.warnings, &addr, e, partial)?,
            }
        }
        out.items = merge_sorted(lists);
        let mut count = LimitCount::new(self.limits);
        for (_, chunks) in &out.items {
            count.add(chunks.len())?;
        }
        Ok(out)
    }

    /// LabelNames on every selected store, unioned.
    pub async fn label_names(
        &self,
        req: LabelNamesRequest,
        partial: bool,
        store_match: &[Vec<Matcher>],
    ) -> Result<Merged<Vec<String>>, QueryError> {
        let sel = Selection {
            matchers: &req.matchers,
            start: req.start,
            end: req.end,
            store_match,
        };
        self.strings(sel, partial, |mut c| {
            let req = req.clone();
            async move {
                let r = c.label_names(req).await?.into_inner();
                Ok((r.names, r.warnings))
            }
        })
        .await
    }

    /// LabelValues on every selected store, unioned.
    pub async fn label_values(
        &self,
        req: LabelValuesRequest,
        partial: bool,
        store_match: &[Vec<Matcher>],
    ) -> Result<Merged<Vec<String>>, QueryError> {
        let sel = Selection {
            matchers: &req.matchers,
            start: req.start,
            end: req.end,
            store_match,
        };
        self.strings(sel, partial, |mut c| {
            let req = req.clone();
            async move {
                let r = c.label_values(req).await?.into_inner();
                Ok((r.values, r.warnings))
            }
        })
        .await
    }

    /// Runs `call` (a label names or values request) on every store that can match, each
    /// bounded by the frame timeout, and unions the strings.
    async fn strings<F, Fut>(
        &self,
        sel: Selection<'_>,
        partial: bool,
        call: F,
    ) -> Result<Merged<Vec<String>>, QueryError>
    where
        F: Fn(StoreClient<StoreChannel>) -> Fut,
        Fut: std::future::Future<Output = Result<(Vec<String>, Vec<String>), tonic::Status>>,
    {
        let matchers =
            matchers_to_model(sel.matchers).map_err(|e| QueryError::BadRequest(e.to_string()))?;
        let stores = self.stores_for(&matchers, sel.start, sel.end, sel.store_match);
        let t = self.frame_timeout();
        let calls = stores.into_iter().map(|s| {
            let answer = call(s.client);
            async move {
                let r = match tokio::time::timeout(t, answer).await {
                    Ok(Ok(r)) => Ok(r),
                    Ok(Err(st)) => Err(status_message(&st)),
                    Err(_) => Err(timeout_message(t)),
                };
                (s.addr, r)
            }
        });
        self.union(futures::future::join_all(calls).await, partial)
    }

    fn union(
        &self,
        results: Vec<(String, StringsResult)>,
        partial: bool,
    ) -> Result<Merged<Vec<String>>, QueryError> {
        let mut set = std::collections::BTreeSet::new();
        let mut out = Merged::default();
        for (addr, r) in results {
            match r {
                Ok((items, warnings)) => {
                    set.extend(items);
                    out.warnings
                        .extend(warnings.into_iter().map(|w| format!("store {addr}: {w}")));
                }
                Err(e) => fail(&mut out.warnings, &addr, e, partial)?,
            }
        }
        out.items = set.into_iter().collect();
        Ok(out)
    }
}

/// One endpoint's messages of a streaming call (the Metadata, Rules, Exemplars and Targets
/// APIs), or why not.
pub(crate) type EndpointAnswer<M> = (String, Result<Vec<M>, String>);

impl Fanout {
    /// Calls `call` on every endpoint concurrently, each call (its whole stream) within the
    /// frame timeout, and returns each endpoint's messages in address order, so that what
    /// is merged from them does not depend on which answered first.
    pub(crate) async fn call_endpoints<C, M, F, Fut>(
        &self,
        mut endpoints: Vec<(String, C)>,
        call: F,
    ) -> Vec<EndpointAnswer<M>>
    where
        F: Fn(C) -> Fut,
        Fut: std::future::Future<
                Output = Result<tonic::Response<tonic::Streaming<M>>, tonic::Status>,
            >,
    {
        endpoints.sort_by(|a, b| a.0.cmp(&b.0));
        let t = self.frame_timeout();
        let calls = endpoints.into_iter().map(|(addr, client)| {
            let answer = call(client);
            async move {
                let all = async {
                    let mut stream = answer.await?.into_inner();
                    let mut messages = Vec::new();
                    while let Some(m) = stream.message().await? {
                        messages.push(m);
                    }
                    Ok::<_, tonic::Status>(messages)
                };
                let r = match tokio::time::timeout(t, all).await {
                    Ok(Ok(r)) => Ok(r),
                    Ok(Err(st)) => Err(status_message(&st)),
                    Err(_) => Err(timeout_message(t)),
                };
                (addr, r)
            }
        });
        futures::future::join_all(calls).await
    }
}

/// An endpoint's failed `api` call (`Rules`, `MetricMetadata`, …): a warning naming it under
/// partial response, else the request's error.
pub(crate) fn endpoint_failed(
    warnings: &mut Vec<String>,
    api: &str,
    addr: String,
    e: String,
    partial: bool,
) -> Result<(), QueryError> {
    if partial {
        tracing::warn!(endpoint = %addr, err = %e, api, "endpoint call failed; partial response");
        warnings.push(format!("endpoint {addr}: {api}: {e}"));
        Ok(())
    } else {
        Err(QueryError::Store {
            store: addr,
            message: format!("{api}: {e}"),
        })
    }
}

/// Which stores a label names or values request goes to.
struct Selection<'a> {
    matchers: &'a [LabelMatcher],
    start: i64,
    end: i64,
    store_match: &'a [Vec<Matcher>],
}

/// A store's strings (names or values) and warnings, or why it failed.
type StringsResult = Result<(Vec<String>, Vec<String>), String>;

fn fail(
    warnings: &mut Vec<String>,
    addr: &str,
    e: String,
    partial: bool,
) -> Result<(), QueryError> {
    if partial {
        tracing::warn!(store = %addr, err = %e, "store failed; partial response");
        warnings.push(format!("store {addr}: {e}"));
        Ok(())
    } else {
        Err(QueryError::Store {
            store: addr.to_string(),
            message: e,
        })
    }
}

fn status_message(st: &tonic::Status) -> String {
    format!("{:?}: {}", st.code(), st.message())
}

fn timeout_message(t: Duration) -> String {
    format!(
        "no answer within {} (--store.response-timeout)",
        strata_model::Duration::from_std(t)
    )
}

/// What one store's Series call hands on, frame by frame: the frame's series (labels
/// converted, equal neighbours joined) or a warning. A failure is the last item.
enum StoreFrame {
    Series(Vec<WireSeries>),
    Warning(String),
}

type StoreItem = Result<StoreFrame, String>;

/// Reads one store's Series call into `tx`, with a per-frame timeout and an overall
/// deadline; the call's failure (or a timeout) is sent as the last item. `sorted`: the
/// series must arrive sorted by labels (a series split across frames is allowed), or the
/// call fails naming the two series; the streaming merge relies on it.
async fn read_series(
    client: SeriesClient,
    addr: String,
    req: SeriesRequest,
    frame_timeout: Duration,
    deadline: tokio::time::Instant,
    sorted: bool,
    tx: tokio::sync::mpsc::Sender<StoreItem>,
) {
    if let Err(e) = read_frames(client, &addr, req, frame_timeout, deadline, sorted, &tx).await {
        let _ = tx.send(Err(e)).await;
    }
}

/// A store call's answer within its wait, or why not.
fn waited<T>(
    r: Result<Result<T, tonic::Status>, tokio::time::error::Elapsed>,
    frame_timeout: Duration,
) -> Result<T, String> {
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(st)) => Err(status_message(&st)),
        Err(_) => Err(timeout_message(frame_timeout)),
    }
}

/// Frames of one store decoded at once, each on a task of its own, while the next frames are
/// received. Decoding (label strings above all) costs more than receiving: on one task, a
/// store's frames were decoded one after another while the other core waited.
const FRAMES_DECODING: usize = 3;

/// A frame decoded off the reading task: its series (equal neighbours joined, and when the
/// call must be sorted and nothing was stripped, checked within the frame) and whether
/// stripping removed any label, a warning, or nothing to hand on.
enum Decoded {
    Series(Vec<WireSeries>, bool),
    Warning(String),
    Nothing,
}

/// Decodes one received frame (see [`Decoded`]). `strip`: the call's `without_replica_labels`,
/// removed here too in case the store left some on (Thanos' sidecar strips external labels
/// only; see `read_frames` for what follows).
fn decode_frame(frame: bytes::Bytes, sorted: bool, strip: &[String]) -> Result<Decoded, String> {
    let wire = match decode_series_response(frame) {
        Ok(SeriesFrame::Series(s)) => s,
        Ok(SeriesFrame::Warning(w)) => return Ok(Decoded::Warning(w)),
        Ok(SeriesFrame::Hints | SeriesFrame::Empty) => return Ok(Decoded::Nothing),
        Err(e) => {
            return Err(status_message(&tonic::Status::internal(format!(
                "decoding a Series frame: {e}"
            ))));
        }
    };
    let mut series: Vec<WireSeries> = Vec::with_capacity(wire.len());
    let mut stripped = false;
    for (labels, chunks) in wire {
        let n = labels.len();
        let labels = crate::series::strip_owned(labels, strip);
        stripped |= labels.len() != n;
        push_joined(&mut series, (labels, chunks));
    }
    if sorted && !stripped {
        check_sorted(&series)?;
    }
    Ok(Decoded::Series(series, stripped))
}

/// The first pair of `series` out of order, as the error naming them.
fn check_sorted(series: &[WireSeries]) -> Result<(), String> {
    match series.windows(2).find(|w| w[1].0 <= w[0].0) {
        Some(w) => Err(out_of_order(&w[0].0, &w[1].0)),
        None => Ok(()),
    }
}

fn out_of_order(a: &Labels, b: &Labels) -> String {
    format!(
        "series out of order ({b} after {a}); a Store API server must send series sorted by \
         labels"
    )
}

/// A spawned frame decode, aborted when dropped (a query that ends early drops its reads).
type Decoding = CallTask<Result<Decoded, String>>;

/// A frame decode's result (a panic in it resumes here).
async fn decoded(task: &mut Decoding) -> Result<Decoded, String> {
    task.join()
        .await
        .unwrap_or_else(|| Err("decoding a Series frame: cancelled".to_string()))
}

/// What [`read_frames`] has handed on so far.
#[derive(Default)]
struct HandedOn {
    /// The last series handed on, for the order check across frames.
    last: Option<Labels>,
    /// Whether any series was handed on.
    any: bool,
    /// The answer collected whole instead (see [`read_frames`]).
    collected: Option<Vec<WireSeries>>,
}

/// [`read_series`] until the call fails (`Ok` also when `tx` is closed: nobody listens).
/// Up to [`FRAMES_DECODING`] frames are decoded at once; they are handed on in the order
/// received.
///
/// A store asked to strip `without_replica_labels` that says it can may still leave some on:
/// Thanos' sidecar strips only external labels, and a replica label can be a series' own.
/// The decode removes them, which can reorder the store's series. When its first frame of
/// series shows this, the store's whole answer is collected and sorted before it is handed
/// on, as for a store that cannot strip (`read_stripped_here`), so the query still answers;
/// if it shows only later, what was handed on cannot be reordered, and the order check names
/// the store if the order broke.
async fn read_frames(
    mut client: SeriesClient,
    addr: &str,
    req: SeriesRequest,
    frame_timeout: Duration,
    deadline: tokio::time::Instant,
    sorted: bool,
    tx: &tokio::sync::mpsc::Sender<StoreItem>,
) -> Result<(), String> {
    let wait_until = || {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        tokio::time::Instant::now() + frame_timeout.min(left)
    };
    let strip: std::sync::Arc<[String]> = req.without_replica_labels.clone().into();
    let start = std::time::Instant::now();
    let call = tokio::time::timeout_at(wait_until(), client.series(req)).await;
    let mut stream = waited(call, frame_timeout)?;
    // When the answer came, for the debug log (`--log.level=debug`).
    let answered = start.elapsed();
    let (mut frames, mut first_frame) = (0usize, None);
    let mut handed = HandedOn::default();
    let mut decoding: std::collections::VecDeque<Decoding> = Default::default();
    // Hands one decoded frame on; `false` when nobody listens any more.
    let hand_on = async |d: Decoded, h: &mut HandedOn| -> Result<bool, String> {
        let item = match d {
            Decoded::Nothing => return Ok(true),
            Decoded::Warning(w) => StoreFrame::Warning(w),
            Decoded::Series(series, stripped) => {
                if let Some(all) = &mut h.collected {
                    all.extend(series);
                    return Ok(true);
                }
                if sorted && stripped && !h.any && !series.is_empty() {
                    tracing::debug!(
                        store = %addr,
                        "store left labels of without_replica_labels on; collecting its answer"
                    );
                    h.collected = Some(series);
                    return Ok(true);
                }
                if sorted {
                    if stripped {
                        check_sorted(&series)?;
                    }
                    if let (Some(a), Some(b)) = (h.last.as_ref(), series.first())
                        && b.0 < *a
                    {
                        return Err(out_of_order(a, &b.0));
                    }
                    if let Some(s) = series.last() {
                        h.last = Some(s.0.clone());
                    }
                }
                if series.is_empty() {
                    return Ok(true);
                }
                h.any = true;
                StoreFrame::Series(series)
            }
        };
        Ok(tx.send(Ok(item)).await.is_ok())
    };
    // The wait for the next frame starts when the previous one came, and is not restarted
    // by decodes finishing meanwhile.
    let mut frame_due = wait_until();
    let mut ended = false;
    loop {
        if ended || decoding.len() >= FRAMES_DECODING {
            let Some(mut d) = decoding.pop_front() else {
                if let Some(mut all) = handed.collected.take()
                    && !all.is_empty()
                {
                    sort_and_join(&mut all);
                    let _ = tx.send(Ok(StoreFrame::Series(all))).await;
                }
                let ms = |d: Duration| d.as_secs_f64() * 1e3;
                tracing::debug!(
                    store = %addr,
                    frames,
                    headers_ms = ms(answered),
                    first_frame_ms = first_frame.map(ms),
                    total_ms = ms(start.elapsed()),
                    "Series call answered"
                );
                return Ok(());
            };
            if !hand_on(decoded(&mut d).await?, &mut handed).await? {
                return Ok(());
            }
            continue;
        }
        // The oldest decode, when one runs, is handed on as soon as it ends, while the next
        // frame is awaited.
        let next = tokio::select! {
            biased;
            Some(r) = async { Some(decoded(decoding.front_mut()?).await) }, if !decoding.is_empty() => {
                decoding.pop_front();
                if !hand_on(r?, &mut handed).await? {
                    return Ok(());
                }
                continue;
            }
            next = tokio::time::timeout_at(frame_due, stream.message()) => next,
        };
        let Some(frame) = waited(next, frame_timeout)? else {
            ended = true;
            continue;
        };
        frames += 1;
        first_frame.get_or_insert_with(|| start.elapsed());
        frame_due = wait_until();
        let strip = strip.clone();
        decoding.push_back(CallTask::spawn(async move {
            decode_frame(frame, sorted, &strip)
        }));
    }
}

/// [`read_series`] for a store that does not strip `req.without_replica_labels` itself (it
/// did not say it can in its Info): its whole answer is collected, stripped here and
/// re-sorted (stripping reorders series and can make several one), then handed on as one
/// frame. Asked without a limit, since stripping can merge its first series.
async fn read_stripped_here(
    client: SeriesClient,
    addr: String,
    mut req: SeriesRequest,
    frame_timeout: Duration,
    deadline: tokio::time::Instant,
    tx: tokio::sync::mpsc::Sender<StoreItem>,
) {
    let names = std::mem::take(&mut req.without_replica_labels);
    req.limit = 0;
    let (series, warnings) = match call_series(client, &addr, req, frame_timeout, deadline).await {
        Ok(answer) => answer,
        Err(e) => {
            let _ = tx.send(Err(e)).await;
            return;
        }
    };
    for w in warnings {
        if tx.send(Ok(StoreFrame::Warning(w))).await.is_err() {
            return;
        }
    }
    let mut series: Vec<WireSeries> = series
        .into_iter()
        .map(|(l, c)| (crate::series::strip_owned(l, &names), c))
        .collect();
    sort_and_join(&mut series);
    if !series.is_empty() {
        let _ = tx.send(Ok(StoreFrame::Series(series))).await;
    }
}

/// Appends `s` to `series`, or its chunks to the last series when the labels are equal: a
/// store may split one series across frames, and equal labels in a row are one series.
fn push_joined(series: &mut Vec<WireSeries>, (labels, chunks): WireSeries) {
    match series.last_mut() {
        Some((l, c)) if same_labels(l, &labels) => c.extend(chunks),
        _ => series.push((labels, chunks)),
    }
}

/// One store's Series call, collected. A store that breaks the sort contract still gives a
/// correct list (sorted here).
async fn call_series(
    client: SeriesClient,
    addr: &str,
    req: SeriesRequest,
    frame_timeout: Duration,
    deadline: tokio::time::Instant,
) -> Result<(Vec<WireSeries>, Vec<String>), String> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(STORE_FRAMES_AHEAD);
    let read = read_series(
        client,
        addr.to_string(),
        req,
        frame_timeout,
        deadline,
        false,
        tx,
    );
    let collect = async move {
        let (mut series, mut warnings) = (Vec::<WireSeries>::new(), Vec::new());
        while let Some(item) = rx.recv().await {
            match item? {
                StoreFrame::Warning(w) => warnings.push(w),
                StoreFrame::Series(frame) => {
                    for s in frame {
                        push_joined(&mut series, s);
                    }
                }
            }
        }
        Ok::<_, String>((series, warnings))
    };
    let ((), collected) = tokio::join!(read, collect);
    let (mut series, warnings) = collected?;
    if !series.is_sorted_by(|a, b| a.0 <= b.0) {
        sort_and_join(&mut series);
    }
    Ok((series, warnings))
}

/// Frames buffered per store between its gRPC stream and the merge.
const STORE_FRAMES_AHEAD: usize = 4;

/// Series per batch a streaming fan-out hands the engine: enough to keep its workers busy
/// between hand-overs, few enough that evaluation starts while most of a large selection is
/// still in transit.
pub const STREAM_BATCH: usize = 1024;

/// The first batch is smaller, so that evaluation starts sooner; it cut a fifth off the
/// latency of small selections in the fan-out benchmark.
pub const STREAM_FIRST_BATCH: usize = 256;

/// A store's place in the streaming merge.
struct StoreCursor {
    addr: String,
    rx: tokio::sync::mpsc::Receiver<StoreItem>,
    buf: std::collections::VecDeque<WireSeries>,
    done: bool,
}

impl StoreCursor {
    /// Waits until a series is buffered or the store is done (a failure is the store's
    /// warning under partial response, else the request's error).
    async fn fill(&mut self, warnings: &mut Vec<String>, partial: bool) -> Result<(), QueryError> {
        while self.buf.is_empty() && !self.done {
            match self.rx.recv().await {
                None => self.done = true,
                // The buffer is empty here: it takes the frame's vector as it is.
                Some(Ok(StoreFrame::Series(v))) => self.buf = v.into(),
                Some(Ok(StoreFrame::Warning(w))) => {
                    warnings.push(format!("store {}: {w}", self.addr));
                }
                Some(Err(e)) => {
                    self.done = true;
                    fail(warnings, &self.addr, e, partial)?;
                }
            }
        }
        Ok(())
    }

    fn head(&self) -> Option<&Labels> {
        self.buf.front().map(|s| &s.0)
    }

    /// Takes the head series, joined with its continuation in the next frames.
    ///
    /// `buf` only ever holds what is left of one frame ([`StoreCursor::fill`] refills it
    /// when empty), and [`decode_frame`] has joined equal neighbours within a frame: so a
    /// series can only continue in the next frame, and the labels are compared only when the
    /// head was the frame's last series. Comparing every neighbour again here read two label
    /// sets that the decoding thread had last touched, for nothing.
    async fn pop(
        &mut self,
        warnings: &mut Vec<String>,
        partial: bool,
    ) -> Result<Option<WireSeries>, QueryError> {
        let Some((labels, mut chunks)) = self.buf.pop_front() else {
            return Ok(None);
        };
        loop {
            if !self.buf.is_empty() {
                return Ok(Some((labels, chunks)));
            }
            self.fill(warnings, partial).await?;
            match self.buf.front() {
                Some(next) if same_labels(&next.0, &labels) => {
                    if let Some((_, more)) = self.buf.pop_front() {
                        chunks.extend(more);
                    }
                }
                _ => return Ok(Some((labels, chunks))),
            }
        }
    }
}

impl Fanout {
    /// As [`Fanout::series`], merged while the stores are still sending and handed to `out`
    /// in batches of [`STREAM_FIRST_BATCH`], then [`STREAM_BATCH`] series (the last batch
    /// carries what is left, and any batch the warnings so far). An error ends the stream.
    /// Stores must send their series sorted (as every Thanos Store API server does); one that
    /// does not fails the call, naming itself. Returns when done or when `out` is dropped.
    pub async fn series_stream(
        &self,
        req: SeriesRequest,
        partial: bool,
        store_match: &[Vec<Matcher>],
        out: tokio::sync::mpsc::Sender<Result<Merged<Vec<WireSeries>>, QueryError>>,
    ) {
        let matchers = match matchers_to_model(&req.matchers) {
            Ok(m) => m,
            Err(e) => {
                let _ = out.send(Err(QueryError::BadRequest(e.to_string()))).await;
                return;
            }
        };
        let stores = self.stores_for(&matchers, req.min_time, req.max_time, store_match);
        let frame_timeout = self.frame_timeout();
        let deadline = tokio::time::Instant::now() + self.max_wait;
        let strip = &req.without_replica_labels;
        let mut cursors: Vec<StoreCursor> = stores
            .into_iter()
            .map(|s| {
                let (tx, rx) = tokio::sync::mpsc::channel(STORE_FRAMES_AHEAD);
                // Thanos' client span of one store's Series call (`--tracing.config`).
                let span = tracing::info_span!(
                    "proxy.series",
                    otel.kind = "client",
                    store.addr = %s.addr,
                );
                if strip.is_empty() || s.strips_replica_labels {
                    tokio::spawn(
                        read_series(
                            s.series,
                            s.addr.clone(),
                            req.clone(),
                            frame_timeout,
                            deadline,
                            true,
                            tx,
                        )
                        .instrument(span),
                    );
                } else {
                    tokio::spawn(
                        read_stripped_here(
                            s.series,
                            s.addr.clone(),
                            req.clone(),
                            frame_timeout,
                            deadline,
                            tx,
                        )
                        .instrument(span),
                    );
                }
                StoreCursor {
                    addr: s.addr,
                    rx,
                    buf: Default::default(),
                    done: false,
                }
            })
            .collect();
        let mut warnings = Vec::new();
        let mut count = LimitCount::new(self.limits);
        let merged = merge_cursors(&mut cursors, partial, &mut warnings, &mut count, &out).await;
        let last = match merged {
            Ok(rest) => Ok(Merged {
                items: rest,
                warnings,
            }),
            Err(e) => Err(e),
        };
        let _ = out.send(last).await;
    }
}

/// The k-way merge of [`Fanout::series_stream`]: sends full batches to `out` and returns the
/// last, partial one. Equal labels from several stores become one series, chunks in store
/// order.
async fn merge_cursors(
    cursors: &mut [StoreCursor],
    partial: bool,
    warnings: &mut Vec<String>,
    count: &mut LimitCount,
    out: &tokio::sync::mpsc::Sender<Result<Merged<Vec<WireSeries>>, QueryError>>,
) -> Result<Vec<WireSeries>, QueryError> {
    let mut batch: Vec<WireSeries> = Vec::with_capacity(STREAM_BATCH);
    let mut limit = STREAM_FIRST_BATCH;
    loop {
        for c in cursors.iter_mut() {
            c.fill(warnings, partial).await?;
        }
        // The first store whose head has the smallest labels; equal heads come after it.
        let mut best: Option<usize> = None;
        for (i, c) in cursors.iter().enumerate() {
            if let Some(h) = c.head()
                && best.is_none_or(|b| cursors[b].head().is_none_or(|bh| h < bh))
            {
                best = Some(i);
            }
        }
        let Some(b) = best else {
            return Ok(batch);
        };
        let Some((labels, mut chunks)) = cursors[b].pop(warnings, partial).await? else {
            return Ok(batch);
        };
        for c in cursors.iter_mut().skip(b + 1) {
            if c.head().is_some_and(|h| same_labels(h, &labels))
                && let Some((_, more)) = c.pop(warnings, partial).await?
            {
                chunks.extend(more);
            }
        }
        count.add(chunks.len())?;
        batch.push((labels, chunks));
        if batch.len() >= limit {
            limit = STREAM_BATCH;
            let full = Merged {
                items: std::mem::replace(&mut batch, Vec::with_capacity(STREAM_BATCH)),
                warnings: std::mem::take(warnings),
            };
            if out.send(Ok(full)).await.is_err() {
                // The query stopped reading (finished early or cancelled).
                return Ok(Vec::new());
            }
        }
    }
}

/// Sorts series by labels and joins those with equal labels into one, chunks in their
/// original order.
pub fn sort_and_join(series: &mut Vec<WireSeries>) {
    series.sort_by(|a, b| a.0.cmp(&b.0));
    series.dedup_by(|b, a| {
        if same_labels(&a.0, &b.0) {
            a.1.append(&mut b.1);
            true
        } else {
            false
        }
    });
}

/// Merges lists sorted by labels into one sorted list; equal labels become one series whose
/// chunks are the inputs' chunks in list order. The number of lists is the number of stores
/// (tens at most), so each step scans the heads linearly instead of keeping a heap.
pub fn merge_sorted(lists: Vec<Vec<WireSeries>>) -> Vec<WireSeries> {
    let total: usize = lists.iter().map(Vec::len).sum();
    let mut iters: Vec<std::vec::IntoIter<WireSeries>> = lists
        .into_iter()
        .filter(|l| !l.is_empty())
        .map(Vec::into_iter)
        .collect();
    if iters.len() <= 1 {
        return iters.pop().map(Iterator::collect).unwrap_or_default();
    }
    let mut out: Vec<WireSeries> = Vec::with_capacity(total);
    loop {
        // The first list whose head has the smallest labels; equal heads come after it.
        let mut best: Option<usize> = None;
        for i in 0..iters.len() {
            let Some(h) = iters[i].as_slice().first() else {
                continue;
            };
            if best.is_none_or(|b| h.0 < iters[b].as_slice()[0].0) {
                best = Some(i);
            }
        }
        let Some(b) = best else { break };
        let Some((labels, mut chunks)) = iters[b].next() else {
            break;
        };
        for it in iters.iter_mut().skip(b + 1) {
            if it
                .as_slice()
                .first()
                .is_some_and(|h| same_labels(&h.0, &labels))
                && let Some((_, more)) = it.next()
            {
                chunks.extend(more);
            }
        }
        out.push((labels, chunks));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_storepb::frame::WireChunk;

    fn s(name: &str, tag: i64) -> WireSeries {
        (
            Labels::from_pairs(&[("__name__", name)]),
            vec![WireChunk {
                min_time: tag,
                ..Default::default()
            }],
        )
    }

    #[test]
    fn k_way_merge_joins_equal_series_in_store_order() {
        let out = merge_sorted(vec![
            vec![s("a", 1), s("c", 1)],
            vec![],
            vec![s("a", 2), s("b", 2), s("d", 2)],
            vec![s("c", 3)],
        ]);
        let names: Vec<&str> = out.iter().map(|x| x.0.get("__name__").unwrap()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        let tags: Vec<Vec<i64>> = out
            .iter()
            .map(|x| x.1.iter().map(|c| c.min_time).collect())
            .collect();
        assert_eq!(tags, [vec![1, 2], vec![2], vec![1, 3], vec![2]]);
        assert!(merge_sorted(vec![]).is_empty());
        assert_eq!(merge_sorted(vec![vec![s("x", 1)]]).len(), 1);
    }

    #[test]
    fn store_selection_by_external_labels() {
        let sets = vec![Labels::from_pairs(&[("cluster", "eu"), ("replica", "a")])];
        assert!(labels_can_match(&sets, &[Matcher::equal("cluster", "eu")]));
        assert!(!labels_can_match(&sets, &[Matcher::equal("cluster", "us")]));
        assert!(labels_can_match(&sets, &[Matcher::equal("job", "x")]));
        assert!(labels_can_match(&[], &[Matcher::equal("cluster", "us")]));
    }

    #[test]
    fn store_selection_by_address() {
        let re =
            |v: &str| Matcher::new(strata_model::MatchOp::RegexMatch, ADDRESS_LABEL, v).unwrap();
        let addr = "10.0.0.1:10901";
        assert!(address_matches(&[], addr));
        assert!(address_matches(
            &[vec![Matcher::equal(ADDRESS_LABEL, addr)]],
            addr
        ));
        assert!(!address_matches(
            &[vec![Matcher::equal(ADDRESS_LABEL, "x:1")]],
            addr
        ));
        // Any selector is enough.
        assert!(address_matches(
            &[
                vec![Matcher::equal(ADDRESS_LABEL, "x:1")],
                vec![re("10\\..*")]
            ],
            addr
        ));
        // All matchers of one selector must hold.
        assert!(!address_matches(
            &[vec![re("10\\..*"), Matcher::not_equal(ADDRESS_LABEL, addr)]],
            addr
        ));
        // Matchers on other labels are ignored, as in Thanos.
        assert!(address_matches(
            &[vec![Matcher::equal("__name__", "up")]],
            addr
        ));
        assert!(!address_matches(
            &[vec![Matcher::equal("__name__", "up"), re("192\\..*")]],
            addr
        ));
    }
}
