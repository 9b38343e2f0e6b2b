//! The Store API over a live Prometheus: Series through remote read, LabelNames and
//! LabelValues through Prometheus' HTTP API, Info from the external labels.
//!
//! External labels are the sidecar's to apply, not Prometheus': matchers on them are answered
//! here (a mismatch returns nothing without asking Prometheus; a match is dropped from what
//! Prometheus is asked), and every series leaves with them, overriding a series label of the
//! same name, as Thanos does. `without_replica_labels` strips any label, external or not
//! (Thanos' sidecar strips external labels only, which leaves a querier that pushed the
//! stripping down with replica labels still on the series).
//!
//! Series come from remote read with `STREAMED_XOR_CHUNKS` (Prometheus' own chunks, passed
//! through without decoding; XOR = 1 there, 0 here) and fall back to `SAMPLES`, re-encoded into
//! XOR chunks of at most 120 samples. The streamed path keeps memory to one series at a time
//! (a few where external labels reorder series, see `Reorder`; the whole answer where series
//! carry external label names, see `Whole`): frames are read as the gRPC client takes them. `skip_chunks` (the series API of a querier)
//! asks `/api/v1/series` instead, which reads no chunk at all.
//!
//! Two deliberate differences from Thanos: a request whose only matchers are on external
//! labels is answered (with `__name__=~".+"` sent to Prometheus) instead of refused, and a
//! label name or value is returned only when Prometheus holds data in the requested range.

use std::sync::Arc;

use strata_model::{Labels, Matcher};
use strata_storepb::convert::{labels_from_model, matchers_to_model};
use strata_storepb::server::SeriesSender;
use strata_storepb::thanos::info::{
    ExemplarsInfo, InfoResponse, MetricMetadataInfo, RulesInfo, StoreInfo, TargetsInfo, TsdbInfo,
};
use strata_storepb::thanos::{
    AggrChunk, Chunk, ExemplarData, ExemplarsRequest, LabelMatcher, LabelNamesRequest,
    LabelNamesResponse, LabelValuesRequest, LabelValuesResponse, Meta, MetricMetadata,
    MetricMetadataEntry, MetricMetadataRequest, RuleGroup, RulesRequest, Series, SeriesBatch,
    SeriesRequest, SeriesResponse, TargetDiscovery, TargetsRequest, ZLabelSet, chunk,
    rules_request, series_response, targets_request,
};
use strata_tsdb::XorEncoder;

use crate::error::StoreError;
use crate::promclient::{self, PrometheusClient, ReadAnswer};
use crate::prometheus::PromState;
use crate::prompb::{self, Query};

/// Samples per chunk when re-encoding a SAMPLES answer, as Prometheus cuts chunks.
pub const MAX_SAMPLES_PER_CHUNK: usize = 120;

/// `--store.limits.request-series` and `--store.limits.request-samples` (0: no limit).
pub use strata_storepb::limits::RequestLimits as Limits;

/// The Store API implementation over one Prometheus.
#[derive(Debug, Clone)]
pub struct PrometheusStore {
    client: PrometheusClient,
    state: Arc<PromState>,
    limits: Limits,
}

/// What to ask Prometheus after the external labels are dealt with.
#[derive(Debug)]
struct Plan {
    ext: Labels,
    /// Matchers on series labels, for Prometheus.
    rest: Vec<Matcher>,
    /// Label names to remove from answers (`without_replica_labels`).
    strip: Vec<String>,
    /// Whether a name in `strip` is not an external label: removing a series' own label can
    /// reorder series and make several one, so answers are then held whole and sorted.
    strips_own: bool,
}

impl Plan {
    /// A series' labels as served: Prometheus' labels, external labels on top, stripped
    /// names removed.
    fn finalize(&self, series: Labels) -> Labels {
        let merged = series.merged_with(&self.ext);
        if self.strip.is_empty() {
            return merged;
        }
        Labels::from_sorted(
            merged
                .into_vec()
                .into_iter()
                .filter(|l| !self.strip.contains(&l.name))
                .collect(),
        )
    }

    /// The external label set as served.
    fn ext_served(&self) -> impl Iterator<Item = &strata_model::Label> {
        self.ext.iter().filter(|l| !self.strip.contains(&l.name))
    }
}

/// Puts the series of a streamed remote read answer into the order of their served labels.
///
/// Why: Prometheus sends series sorted by its own labels, and attaching the external labels
/// can change that order where one series' labels are a prefix of another's. `{a="1"}` comes
/// before `{a="1",b="2"}` in Prometheus, but with `cluster="eu1"` attached,
/// `{a="1",b="2",cluster="eu1"}` sorts first (`b` < `cluster`). The Store API promises sorted
/// series, and queriers merge the stores' streams relying on it.
///
/// The store gateway solves the same problem for blocks (`Reorder` in `strata-store`), with
/// the same reasoning: a series `x` can be overtaken only by later series extending its
/// labels, which follow it contiguously in Prometheus' order. With `c` the latest series:
/// if `x`'s own labels are not a proper prefix of `c`'s, or `c`'s next own label is named
/// after every external label, nothing still to come sorts before `x`, and `x` is *settled*.
/// Pending series wait in a min-heap by served labels, at most one per label of `c`.
struct Reorder {
    /// The external labels as served (stripped ones removed): empty, nothing is reordered.
    ext: Labels,
    /// `c`, the latest series, with its chunks so far (a series may span frames).
    latest: Option<Held>,
    pending: std::collections::BinaryHeap<std::cmp::Reverse<Held>>,
}

/// A streamed answer held whole, for a Prometheus whose series may carry external label
/// names (see [`PromState::external_names_may_clash`]): what Thanos' sidecar does for every
/// answer since v0.32. The request limits are checked while it fills, so that they still
/// bound the memory held.
struct Whole {
    limits: Limits,
    series: Vec<Held>,
    samples: u64,
}

impl Whole {
    fn new(limits: Limits) -> Self {
        Whole {
            limits,
            series: Vec::new(),
            samples: 0,
        }
    }

    fn push(&mut self, labels: Labels, chunks: Vec<AggrChunk>) -> Result<(), StoreError> {
        self.limits.count_samples(&mut self.samples, &chunks)?;
        // A series may span remote read frames.
        if let Some(Held(l, c)) = self.series.last_mut()
            && *l == labels
        {
            c.extend(chunks);
            return Ok(());
        }
        self.limits.check_series(self.series.len() as u64 + 1)?;
        self.series.push(Held(labels, chunks));
        Ok(())
    }

    /// The series sorted by served labels; equal label sets end up next to each other in
    /// the order received, for the emitter to join.
    fn sorted(mut self) -> Vec<Held> {
        self.series.sort_by(|a, b| a.0.cmp(&b.0));
        self.series
    }
}

/// A series held by [`Reorder`], ordered by its served labels.
struct Held(Labels, Vec<AggrChunk>);

impl PartialEq for Held {
    fn eq(&self, o: &Self) -> bool {
        self.0 == o.0
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Held {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.cmp(&o.0)
    }
}

impl Reorder {
    fn new(plan: &Plan) -> Self {
        Reorder {
            ext: Labels::from_sorted(plan.ext_served().cloned().collect()),
            latest: None,
            pending: Default::default(),
        }
    }

    /// A series' own labels (as Prometheus sent them): its served labels but the external ones.
    fn own<'a>(&'a self, l: &'a Labels) -> impl Iterator<Item = &'a strata_model::Label> + 'a {
        l.iter().filter(|l| self.ext.get(&l.name).is_none())
    }

    /// Whether no series after `c` in Prometheus' order can sort before `x` (see the type).
    fn settled(&self, x: &Labels, c: &Labels) -> bool {
        let Some(last_ext) = self.ext.iter().last() else {
            return true;
        };
        let mut cl = self.own(c);
        for xl in self.own(x) {
            match cl.next() {
                Some(l) if l == xl => {}
                _ => return true,
            }
        }
        cl.next().is_none_or(|next| next.name > last_ext.name)
    }

    /// Takes the next series (or part of one) in Prometheus' order and appends to `out` the
    /// series that are settled, in served-label order.
    fn push(&mut self, labels: Labels, chunks: Vec<AggrChunk>, out: &mut Vec<Held>) {
        if let Some(Held(l, c)) = &mut self.latest
            && *l == labels
        {
            c.extend(chunks);
            return;
        }
        let Some(prev) = self.latest.replace(Held(labels, chunks)) else {
            return;
        };
        let Some(Held(c, _)) = &self.latest else {
            return;
        };
        if self.pending.is_empty() && prev.0 < *c && self.settled(&prev.0, c) {
            // The common case (no prefix relation): nothing held.
            out.push(prev);
            return;
        }
        self.pending.push(std::cmp::Reverse(prev));
        while let Some(std::cmp::Reverse(top)) = self.pending.peek() {
            if top.0 > *c || !self.settled(&top.0, c) {
                break;
            }
            if let Some(std::cmp::Reverse(h)) = self.pending.pop() {
                out.push(h);
            }
        }
    }

    /// The answer ended: everything held, in order.
    fn finish(&mut self, out: &mut Vec<Held>) {
        if let Some(c) = self.latest.take() {
            self.pending.push(std::cmp::Reverse(c));
        }
        while let Some(std::cmp::Reverse(h)) = self.pending.pop() {
            out.push(h);
        }
    }
}

/// Sends series to the gRPC stream: merges consecutive frames of one series, batches
/// (`response_batch_size`), stops at `limit`, and enforces the request limits.
struct Emitter<'a> {
    tx: &'a SeriesSender,
    limits: Limits,
    batch_size: usize,
    limit: usize,
    batch: Vec<Series>,
    pending: Option<(Labels, Vec<AggrChunk>)>,
    last: Option<Labels>,
    sent: usize,
    samples: u64,
    warned_order: bool,
}

impl<'a> Emitter<'a> {
    fn new(tx: &'a SeriesSender, req: &SeriesRequest, limits: Limits) -> Self {
        Emitter {
            tx,
            limits,
            batch_size: req.response_batch_size.max(1) as usize,
            limit: req.limit.max(0) as usize,
            batch: Vec::new(),
            pending: None,
            last: None,
            sent: 0,
            samples: 0,
            warned_order: false,
        }
    }

    /// Whether `limit` series have been emitted (or are pending): reading can stop.
    fn full(&self) -> bool {
        self.limit > 0 && self.sent + usize::from(self.pending.is_some()) >= self.limit
    }

    /// Adds (part of) a series. Returns false when no more series are wanted.
    async fn push(&mut self, labels: Labels, chunks: Vec<AggrChunk>) -> Result<bool, StoreError> {
        self.limits.count_samples(&mut self.samples, &chunks)?;
        if let Some((pl, pc)) = &mut self.pending
            && *pl == labels
        {
            pc.extend(chunks);
            return Ok(true);
        }
        if self.full() {
            return Ok(false);
        }
        if let Some(p) = self.pending.take() {
            self.emit(p).await?;
        }
        self.pending = Some((labels, chunks));
        Ok(true)
    }

    async fn emit(&mut self, (labels, chunks): (Labels, Vec<AggrChunk>)) -> Result<(), StoreError> {
        if let Some(last) = &self.last
            && *last >= labels
            && !self.warned_order
        {
            // Only possible when a series carries its own value for an external label name
            // and the heartbeat has not seen that label name yet (answers are then sorted
            // whole, see `Whole`): the order promised by the Store API is broken for this
            // answer.
            tracing::warn!(previous = %last, next = %labels, "series out of order after applying external labels: a series has its own value for an external label name, not yet seen by the heartbeat");
            self.warned_order = true;
        }
        self.sent += 1;
        self.limits.check_series(self.sent as u64)?;
        self.batch.push(Series {
            labels: labels_from_model(&labels),
            chunks,
        });
        self.last = Some(labels);
        if self.batch.len() >= self.batch_size {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), StoreError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let result = if self.batch_size > 1 {
            series_response::Result::Batch(SeriesBatch::of(std::mem::take(&mut self.batch)))
        } else {
            series_response::Result::Series(self.batch.pop().expect("one series in the batch"))
        };
        self.tx
            .send(Ok(SeriesResponse {
                result: Some(result),
            }))
            .await
            .map_err(|_| StoreError::Cancelled)
    }

    async fn finish(mut self) -> Result<(), StoreError> {
        if let Some(p) = self.pending.take() {
            self.emit(p).await?;
        }
        self.flush().await
    }
}

/// The Store API encoding of a remote read chunk (TSDB numbering, XOR = 1).
fn store_encoding(prom: i32) -> Option<chunk::Encoding> {
    match prom {
        1 => Some(chunk::Encoding::Xor),
        2 => Some(chunk::Encoding::Histogram),
        3 => Some(chunk::Encoding::FloatHistogram),
        _ => None,
    }
}

fn prom_labels(labels: Vec<prompb::Label>) -> Labels {
    Labels::new(
        labels
            .into_iter()
            .map(|l| strata_model::Label::new(l.name, l.value)),
    )
}

/// Encodes samples (sorted by time) into XOR chunks of at most [`MAX_SAMPLES_PER_CHUNK`].
pub fn encode_samples(samples: &[prompb::Sample]) -> Result<Vec<AggrChunk>, String> {
    let mut out = Vec::with_capacity(samples.len().div_ceil(MAX_SAMPLES_PER_CHUNK));
    for part in samples.chunks(MAX_SAMPLES_PER_CHUNK) {
        let mut enc = XorEncoder::new();
        for s in part {
            enc.append(s.timestamp, s.value)
                .map_err(|e| format!("encoding the sample at {}: {e}", s.timestamp))?;
        }
        out.push(AggrChunk {
            min_time: part[0].timestamp,
            max_time: part[part.len() - 1].timestamp,
            raw: Some(Chunk {
                r#type: chunk::Encoding::Xor as i32,
                data: enc.bytes().into(),
                hash: 0,
            }),
            ..Default::default()
        });
    }
    Ok(out)
}

impl PrometheusStore {
    pub fn new(client: PrometheusClient, state: Arc<PromState>, limits: Limits) -> Self {
        PrometheusStore {
            client,
            state,
            limits,
        }
    }

    /// The shared Prometheus state.
    pub fn state(&self) -> &Arc<PromState> {
        &self.state
    }

    /// Splits the matchers: `None` when a matcher on an external label rejects its value.
    fn plan(
        &self,
        matchers: &[LabelMatcher],
        without: &[String],
    ) -> Result<Option<Plan>, StoreError> {
        let matchers =
            matchers_to_model(matchers).map_err(|e| StoreError::InvalidArgument(e.to_string()))?;
        let ext = self.state.external_labels().ok_or(StoreError::NotReady)?;
        let mut rest = Vec::with_capacity(matchers.len());
        for m in matchers {
            match ext.get(m.name()) {
                Some(v) if !m.matches(v) => return Ok(None),
                Some(_) => {}
                None => rest.push(m),
            }
        }
        let mut strip: Vec<String> = without.to_vec();
        strip.sort();
        strip.dedup();
        let strips_own = strip.iter().any(|n| !ext.contains(n));
        Ok(Some(Plan {
            ext,
            rest,
            strip,
            strips_own,
        }))
    }

    /// Streams the series matching `req` into `tx`.
    pub async fn series(&self, req: SeriesRequest, tx: &SeriesSender) -> Result<(), StoreError> {
        let Some(plan) = self.plan(&req.matchers, &req.without_replica_labels)? else {
            return Ok(());
        };
        let mint = req.min_time.max(self.state.min_time());
        let maxt = req.max_time;
        if mint > maxt {
            return Ok(());
        }
        let mut out = Emitter::new(tx, &req, self.limits);
        if req.skip_chunks {
            let mut all: Vec<Labels> = self
                .client
                .series(&promclient::selector(&plan.rest), mint, maxt)
                .await?
                .into_iter()
                .map(|l| plan.finalize(l))
                .collect();
            all.sort();
            all.dedup();
            for l in all {
                if !out.push(l, Vec::new()).await? {
                    break;
                }
            }
            return out.finish().await;
        }

        let mut matchers: Vec<prompb::LabelMatcher> = plan
            .rest
            .iter()
            .map(|m| prompb::LabelMatcher {
                r#type: promclient::matcher_type(m.op()) as i32,
                name: m.name().to_string(),
                value: m.value().to_string(),
            })
            .collect();
        if matchers.is_empty() {
            // Only external-label matchers (or none): everything Prometheus holds.
            matchers.push(prompb::LabelMatcher {
                r#type: prompb::MatcherType::Re as i32,
                name: strata_model::labels::METRIC_NAME.into(),
                value: ".+".into(),
            });
        }
        let query = Query {
            start_timestamp_ms: mint,
            end_timestamp_ms: maxt,
            matchers,
            hints: None,
        };
        match self.client.remote_read(query).await? {
            ReadAnswer::Streamed(mut stream) => {
                // Where a series may carry an external label name, or one of its own labels
                // is stripped, every served series is held and sorted at the end (`whole`);
                // otherwise `Reorder` holds a few.
                let mut whole = (plan.strips_own || self.state.external_names_may_clash())
                    .then(|| Whole::new(self.limits));
                let mut order = Reorder::new(&plan);
                let mut settled = Vec::new();
                while let Some(frame) = stream.next_frame().await? {
                    for s in frame.chunked_series {
                        let labels = plan.finalize(prom_labels(s.labels));
                        let mut chunks = Vec::with_capacity(s.chunks.len());
                        for c in s.chunks {
                            let Some(enc) = store_encoding(c.r#type) else {
                                return Err(StoreError::Unsupported {
                                    series: labels.to_string(),
                                    detail: format!(
                                        "Prometheus sent a chunk of encoding {} that the Store API cannot carry",
                                        c.r#type
                                    ),
                                });
                            };
                            chunks.push(AggrChunk {
                                min_time: c.min_time_ms,
                                max_time: c.max_time_ms,
                                raw: Some(Chunk {
                                    r#type: enc as i32,
                                    data: c.data,
                                    hash: 0,
                                }),
                                ..Default::default()
                            });
                        }
                        if let Some(w) = &mut whole {
                            w.push(labels, chunks)?;
                            continue;
                        }
                        order.push(labels, chunks, &mut settled);
                        for Held(labels, chunks) in settled.drain(..) {
                            if !out.push(labels, chunks).await? {
                                // Dropping the stream closes the connection: Prometheus stops.
                                return out.finish().await;
                            }
                        }
                    }
                }
                match whole {
                    Some(w) => settled = w.sorted(),
                    None => order.finish(&mut settled),
                }
                for Held(labels, chunks) in settled.drain(..) {
                    if !out.push(labels, chunks).await? {
                        break;
                    }
                }
            }
            ReadAnswer::Samples(mut answer) => {
                let result = answer.results.pop().unwrap_or_default();
                let mut series: Vec<(Labels, prompb::TimeSeries)> = result
                    .timeseries
                    .into_iter()
                    .map(|mut ts| {
                        (
                            plan.finalize(prom_labels(std::mem::take(&mut ts.labels))),
                            ts,
                        )
                    })
                    .collect();
                // The SAMPLES path of Prometheus does not sort.
                series.sort_by(|a, b| a.0.cmp(&b.0));
                for (labels, ts) in series {
                    if !ts.histograms.is_empty() {
                        return Err(StoreError::Unsupported {
                            series: labels.to_string(),
                            detail: "native histogram samples cannot be served from a SAMPLES \
                                     remote read answer; use Prometheus ≥ 2.13 (streamed chunks)"
                                .into(),
                        });
                    }
                    if ts.samples.is_empty() {
                        continue;
                    }
                    let mut samples = ts.samples;
                    samples.sort_by_key(|s| s.timestamp);
                    let chunks =
                        encode_samples(&samples).map_err(|detail| StoreError::Unsupported {
                            series: labels.to_string(),
                            detail,
                        })?;
                    if !out.push(labels, chunks).await? {
                        break;
                    }
                }
            }
        }
        out.finish().await
    }

    /// Label names, from Prometheus plus the external label names.
    pub async fn label_names(
        &self,
        req: LabelNamesRequest,
    ) -> Result<LabelNamesResponse, StoreError> {
        let Some(plan) = self.plan(&req.matchers, &req.without_replica_labels)? else {
            return Ok(LabelNamesResponse::default());
        };
        let start = req.start.max(self.state.min_time());
        if start > req.end {
            return Ok(LabelNamesResponse::default());
        }
        let sel = (!plan.rest.is_empty()).then(|| promclient::selector(&plan.rest));
        let mut names = self
            .client
            .label_names(sel.as_deref(), start, req.end)
            .await?;
        if !names.is_empty() {
            names.extend(plan.ext_served().map(|l| l.name.clone()));
        }
        names.retain(|n| !plan.strip.contains(n));
        names.sort();
        names.dedup();
        if req.limit > 0 {
            names.truncate(req.limit as usize);
        }
        Ok(LabelNamesResponse {
            names,
            ..Default::default()
        })
    }

    /// Label values: an external label's own value when there is data, else Prometheus'.
    pub async fn label_values(
        &self,
        req: LabelValuesRequest,
    ) -> Result<LabelValuesResponse, StoreError> {
        let Some(plan) = self.plan(&req.matchers, &req.without_replica_labels)? else {
            return Ok(LabelValuesResponse::default());
        };
        if req.label.is_empty() {
            return Err(StoreError::InvalidArgument("label name is empty".into()));
        }
        if plan.strip.contains(&req.label) {
            return Ok(LabelValuesResponse::default());
        }
        let start = req.start.max(self.state.min_time());
        if start > req.end {
            return Ok(LabelValuesResponse::default());
        }
        let sel = (!plan.rest.is_empty()).then(|| promclient::selector(&plan.rest));
        let mut values = if let Some(v) = plan.ext.get(&req.label) {
            // The external label has one value, on every series: served when some series
            // (matching the other matchers) has data in the range.
            let any = self
                .client
                .label_names(sel.as_deref(), start, req.end)
                .await?;
            if any.is_empty() {
                Vec::new()
            } else {
                vec![v.to_string()]
            }
        } else {
            self.client
                .label_values(&req.label, sel.as_deref(), start, req.end)
                .await?
        };
        values.sort();
        values.dedup();
        if req.limit > 0 {
            values.truncate(req.limit as usize);
        }
        Ok(LabelValuesResponse {
            values,
            ..Default::default()
        })
    }

    /// The Exemplars API's answer: Prometheus' exemplars of the series `req.query` selects,
    /// series labels extended with the external labels. Matchers on external labels are the
    /// querier's to drop (Prometheus has no such labels), as with Thanos' sidecar.
    pub async fn exemplars(&self, req: &ExemplarsRequest) -> Result<Vec<ExemplarData>, StoreError> {
        let ext = self.state.external_labels().ok_or(StoreError::NotReady)?;
        Ok(self
            .client
            .exemplars(&req.query, req.start, req.end, &ext)
            .await?)
    }

    /// The Targets API's answer: Prometheus' targets (of one state if the request asks),
    /// label sets extended with the external labels.
    pub async fn targets(&self, req: &TargetsRequest) -> Result<TargetDiscovery, StoreError> {
        let ext = self.state.external_labels().ok_or(StoreError::NotReady)?;
        let state = match targets_request::State::try_from(req.state) {
            Ok(targets_request::State::Active) => Some("active"),
            Ok(targets_request::State::Dropped) => Some("dropped"),
            Ok(targets_request::State::Any) => None,
            Err(_) => {
                return Err(StoreError::InvalidArgument(format!(
                    "unknown target state {}",
                    req.state
                )));
            }
        };
        Ok(self.client.targets(state, &ext).await?)
    }

    /// The Rules API's answer: Prometheus' rule groups (of one type if the request asks),
    /// each rule's labels extended with the external labels. Other filters of the request
    /// are left to the querier, as Thanos' sidecar leaves them (Prometheus 2.42 has none).
    pub async fn rules(&self, req: &RulesRequest) -> Result<Vec<RuleGroup>, StoreError> {
        let ext = self.state.external_labels().ok_or(StoreError::NotReady)?;
        let kind = match rules_request::Type::try_from(req.r#type) {
            Ok(rules_request::Type::Alert) => Some("alert"),
            Ok(rules_request::Type::Record) => Some("record"),
            Ok(rules_request::Type::All) => None,
            Err(_) => {
                return Err(StoreError::InvalidArgument(format!(
                    "unknown rule type {}",
                    req.r#type
                )));
            }
        };
        let mut groups = self.client.rules(kind).await?;
        strata_storepb::convert::add_external_labels_to_rules(&mut groups, &ext);
        Ok(groups)
    }

    /// The Metadata API's answer: Prometheus' metric metadata, as one map (Thanos' sidecar
    /// sends it the same way). `limit` is Prometheus' (negative: every metric).
    pub async fn metric_metadata(
        &self,
        req: &MetricMetadataRequest,
    ) -> Result<MetricMetadata, StoreError> {
        let md = self.client.metric_metadata(&req.metric, req.limit).await?;
        Ok(MetricMetadata {
            metadata: md
                .into_iter()
                .map(|(name, metas)| {
                    let metas = metas
                        .into_iter()
                        .map(|m| Meta {
                            r#type: m.kind,
                            help: m.help,
                            unit: m.unit,
                        })
                        .collect();
                    (name, MetricMetadataEntry { metas })
                })
                .collect(),
        })
    }

    /// The Info API answer: component `sidecar`, the external labels, `[min time, +inf)`.
    pub fn info(&self) -> InfoResponse {
        let min_time = self.state.min_time();
        let max_time = i64::MAX;
        let (label_sets, tsdb_infos) = match self.state.external_labels() {
            Some(ext) => {
                let zl = ZLabelSet {
                    labels: labels_from_model(&ext),
                };
                (
                    vec![zl.clone()],
                    vec![TsdbInfo {
                        labels: Some(zl),
                        min_time,
                        max_time,
                    }],
                )
            }
            None => (Vec::new(), Vec::new()),
        };
        InfoResponse {
            label_sets,
            component_type: "sidecar".into(),
            metric_metadata: Some(MetricMetadataInfo {}),
            rules: Some(RulesInfo {}),
            exemplars: Some(ExemplarsInfo { min_time, max_time }),
            targets: Some(TargetsInfo {}),
            store: Some(StoreInfo {
                min_time,
                max_time,
                supports_sharding: false,
                supports_without_replica_labels: true,
                tsdb_infos,
                supports_projections: false,
            }),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every label set over names `a`..`d` (values `0`, `1`) with external labels named
    /// among and after them, in Prometheus' order, comes out of [`Reorder`] sorted by served
    /// labels, each series once, its parts (one per frame) joined; and it never holds more
    /// than one series per label of the latest plus the latest.
    #[test]
    fn reorder_sorts_by_served_labels() {
        // Own label sets: each of a..d absent, "0" or "1" (`__name__` first, always "m").
        let mut own: Vec<Labels> = (0..81)
            .map(|mut k| {
                let mut pairs = vec![("__name__".to_string(), "m".to_string())];
                for n in ["a", "b", "d", "f"] {
                    match k % 3 {
                        0 => {}
                        v => pairs.push((n.to_string(), (v - 1).to_string())),
                    }
                    k /= 3;
                }
                Labels::from_pairs(&pairs)
            })
            .collect();
        own.sort();
        for (ext, strip) in [
            (vec![("c", "x")], vec![]),
            (vec![("cluster", "eu1"), ("replica", "a")], vec![]),
            (vec![("e", "x"), ("g", "y")], vec![]),
            (vec![("0", "first")], vec![]),
            (vec![("c", "x"), ("e", "y")], vec!["e".to_string()]),
            (vec![], vec![]),
        ] {
            let plan = Plan {
                ext: Labels::from_pairs(&ext),
                rest: Vec::new(),
                strip,
                strips_own: false,
            };
            let mut order = Reorder::new(&plan);
            let mut out = Vec::new();
            let mut most_held = 0;
            for (i, l) in own.iter().enumerate() {
                let chunk = |t: i64| AggrChunk {
                    min_time: t,
                    max_time: t,
                    ..Default::default()
                };
                // Every third series in two parts, as across two remote read frames.
                order.push(plan.finalize(l.clone()), vec![chunk(i as i64)], &mut out);
                if i % 3 == 0 {
                    order.push(plan.finalize(l.clone()), vec![chunk(-1)], &mut out);
                }
                most_held = most_held.max(order.pending.len());
            }
            order.finish(&mut out);
            let got: Vec<&Labels> = out.iter().map(|h| &h.0).collect();
            let mut want: Vec<Labels> = own.iter().map(|l| plan.finalize(l.clone())).collect();
            want.sort();
            assert_eq!(got, want.iter().collect::<Vec<_>>(), "ext {ext:?}");
            for h in &out {
                let i = own
                    .iter()
                    .position(|l| plan.finalize(l.clone()) == h.0)
                    .unwrap();
                let times: Vec<i64> = h.1.iter().map(|c| c.min_time).collect();
                let want = if i % 3 == 0 {
                    vec![i as i64, -1]
                } else {
                    vec![i as i64]
                };
                assert_eq!(times, want, "{}", h.0);
            }
            assert!(most_held <= 5, "held {most_held} for ext {ext:?}");
        }
    }

    #[test]
    fn samples_are_cut_into_chunks_of_120_that_decode_back() {
        let samples: Vec<prompb::Sample> = (0..250)
            .map(|i| prompb::Sample {
                value: i as f64 * 0.5,
                timestamp: 1000 + i * 15_000,
            })
            .collect();
        let chunks = encode_samples(&samples).unwrap();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[0].min_time, 1000);
        assert_eq!(chunks[2].max_time, 1000 + 249 * 15_000);
        let mut back = Vec::new();
        for c in &chunks {
            let raw = c.raw.as_ref().unwrap();
            assert_eq!(raw.r#type, chunk::Encoding::Xor as i32);
            assert!(strata_storepb::limits::chunk_samples(&raw.data) <= 120);
            for s in strata_tsdb::XorIterator::new(&raw.data).unwrap() {
                back.push(s.unwrap());
            }
        }
        let want: Vec<(i64, f64)> = samples.iter().map(|s| (s.timestamp, s.value)).collect();
        assert_eq!(back, want);
    }

    #[test]
    fn labels_get_external_labels_on_top_and_stripped_names_removed() {
        let plan = Plan {
            ext: Labels::from_pairs(&[("cluster", "eu1"), ("replica", "a")]),
            rest: Vec::new(),
            strip: vec!["replica".into()],
            strips_own: false,
        };
        // Prometheus already added its own external labels; a series' own `cluster` loses.
        let got = plan.finalize(Labels::from_pairs(&[
            ("__name__", "up"),
            ("cluster", "mine"),
            ("replica", "a"),
        ]));
        assert_eq!(
            got,
            Labels::from_pairs(&[("__name__", "up"), ("cluster", "eu1")])
        );
        let names: Vec<&str> = plan.ext_served().map(|l| l.name.as_str()).collect();
        assert_eq!(names, vec!["cluster"]);
    }

    #[test]
    fn chunk_encodings_are_renumbered_for_the_store_api() {
        assert_eq!(store_encoding(1), Some(chunk::Encoding::Xor));
        assert_eq!(store_encoding(2), Some(chunk::Encoding::Histogram));
        assert_eq!(store_encoding(3), Some(chunk::Encoding::FloatHistogram));
        assert_eq!(store_encoding(0), None);
        assert_eq!(store_encoding(4), None);
        assert_eq!(
            strata_storepb::limits::chunk_samples(&[0x01, 0x02, 0xff]),
            258
        );
        assert_eq!(strata_storepb::limits::chunk_samples(&[0x01]), 0);
    }
}
