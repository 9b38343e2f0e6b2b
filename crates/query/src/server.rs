//! The querier's own Store API (and Metadata, Rules, Exemplars and Targets APIs), so that a global querier can sit on top of
//! per-cluster queriers: Info reports type `query` with the union of the endpoints' label sets and time
//! ranges; Series returns the merged, not deduplicated, stream (as Thanos' does: the upper
//! querier deduplicates), with `without_replica_labels` applied by the stores or, for those
//! that cannot, by the fan-out.

use strata_model::Labels;
use strata_runtime::task::CallTask;
use strata_storepb::convert::{labels_from_model, matchers_to_model};
use strata_storepb::server::{
    ExemplarsAnswers, MetadataAnswers, RulesAnswers, SeriesFrames, SeriesSender, TargetsAnswers,
    spawn_series,
};
use strata_storepb::thanos::exemplars_server::Exemplars;
use strata_storepb::thanos::info::info_server::Info;
use strata_storepb::thanos::info::{
    ExemplarsInfo, InfoRequest, InfoResponse, MetricMetadataInfo, QueryApiInfo, RulesInfo,
    StoreInfo, TargetsInfo,
};
use strata_storepb::thanos::metadata_server::Metadata;
use strata_storepb::thanos::rules_server::Rules;
use strata_storepb::thanos::store_server::Store;
use strata_storepb::thanos::targets_server::Targets;
use strata_storepb::thanos::{
    AggrChunk, EncodedSeries, ExemplarsRequest, ExemplarsResponse, LabelMatcher, LabelNamesRequest,
    LabelNamesResponse, LabelValuesRequest, LabelValuesResponse, MetricMetadata,
    MetricMetadataEntry, MetricMetadataRequest, MetricMetadataResponse, PartialResponseStrategy,
    RulesRequest, RulesResponse, Series, SeriesBatch, SeriesRequest, SeriesResponse,
    TargetsRequest, TargetsResponse, ZLabelSet, exemplars_response, metric_metadata_response,
    rules_request, rules_response, series_response, targets_request, targets_response,
};
use tonic::{Request, Response, Status};

use crate::error::QueryError;
use crate::fanout::{Fanout, WireSeries};

/// The Store and Info services over a [`Fanout`].
#[derive(Debug, Clone)]
pub struct QueryStoreService {
    fanout: Fanout,
    /// `--selector-label`: see [`QueryStoreService::with_selector_labels`].
    selector: Labels,
}

impl QueryStoreService {
    pub fn new(fanout: Fanout) -> Self {
        QueryStoreService {
            fanout,
            selector: Labels::empty(),
        }
    }

    /// `--selector-label`, as Thanos' proxy takes it: the Info API advertises every label set
    /// extended with these labels (they win over a store's own label of the same name; alone
    /// when no store has label sets), so a querier above can pick this one by them; a call
    /// whose matchers on these names do not match their values gets nothing, and those
    /// matchers are dropped before the stores are called.
    pub fn with_selector_labels(mut self, labels: Labels) -> Self {
        self.selector = labels;
        self
    }

    /// `matchers` with those on selector labels checked and removed: `None` when one of them
    /// rules this querier out.
    fn match_selector(
        &self,
        matchers: Vec<LabelMatcher>,
    ) -> Result<Option<Vec<LabelMatcher>>, Status> {
        if self.selector.is_empty() {
            return Ok(Some(matchers));
        }
        let model =
            matchers_to_model(&matchers).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let mut kept = Vec::with_capacity(matchers.len());
        for (wire, m) in matchers.into_iter().zip(&model) {
            match self.selector.get(m.name()) {
                Some(v) if !m.matches(v) => return Ok(None),
                Some(_) => {}
                None => kept.push(wire),
            }
        }
        Ok(Some(kept))
    }
}

#[tonic::async_trait]
impl Metadata for QueryStoreService {
    type MetricMetadataStream = MetadataAnswers;

    /// The endpoints' metadata merged ([`Fanout::metric_metadata`]): the warnings, then one
    /// map.
    async fn metric_metadata(
        &self,
        request: Request<MetricMetadataRequest>,
    ) -> Result<Response<Self::MetricMetadataStream>, Status> {
        let req = request.into_inner();
        let partial = is_partial(false, req.partial_response_strategy);
        let answer = self
            .fanout
            .metric_metadata(&req.metric, req.limit, partial)
            .await
            .map_err(to_status)?;
        let mut out: Vec<Result<MetricMetadataResponse, Status>> = answer
            .warnings
            .into_iter()
            .map(|w| {
                Ok(MetricMetadataResponse {
                    result: Some(metric_metadata_response::Result::Warning(w)),
                })
            })
            .collect();
        let metadata = answer
            .metrics
            .into_iter()
            .map(|(name, metas)| (name, MetricMetadataEntry { metas }))
            .collect();
        out.push(Ok(MetricMetadataResponse {
            result: Some(metric_metadata_response::Result::Metadata(MetricMetadata {
                metadata,
            })),
        }));
        Ok(Response::new(futures::stream::iter(out)))
    }
}

impl QueryStoreService {
    /// The union of the exemplar endpoints' time ranges; none without such an endpoint.
    fn exemplars_info(&self) -> Option<ExemplarsInfo> {
        let eps = self.fanout.endpoints.exemplar_endpoints();
        let ranges: Vec<(i64, i64)> = eps.iter().filter_map(|e| e.info.exemplars).collect();
        (!ranges.is_empty()).then(|| ExemplarsInfo {
            min_time: ranges.iter().map(|r| r.0).min().unwrap_or(i64::MIN),
            max_time: ranges.iter().map(|r| r.1).max().unwrap_or(i64::MAX),
        })
    }
}

#[tonic::async_trait]
impl Exemplars for QueryStoreService {
    type ExemplarsStream = ExemplarsAnswers;

    /// The endpoints' exemplars merged ([`Fanout::exemplars`]) without replica labels
    /// removed: the querier above deduplicates.
    async fn exemplars(
        &self,
        request: Request<ExemplarsRequest>,
    ) -> Result<Response<Self::ExemplarsStream>, Status> {
        let req = request.into_inner();
        let partial = is_partial(false, req.partial_response_strategy);
        let selectors = strata_promql::Engine::default()
            .query_selectors(&req.query)
            .map_err(|e| Status::invalid_argument(format!("query {:?}: {e}", req.query)))?;
        let answer = self
            .fanout
            .exemplars(&selectors, req.start, req.end, &[], partial)
            .await
            .map_err(to_status)?;
        let warnings = answer
            .warnings
            .into_iter()
            .map(exemplars_response::Result::Warning);
        let series = answer
            .series
            .into_iter()
            .map(exemplars_response::Result::Data);
        let out: Vec<Result<ExemplarsResponse, Status>> = warnings
            .chain(series)
            .map(|r| Ok(ExemplarsResponse { result: Some(r) }))
            .collect();
        Ok(Response::new(futures::stream::iter(out)))
    }
}

#[tonic::async_trait]
impl Targets for QueryStoreService {
    type TargetsStream = TargetsAnswers;

    /// The endpoints' targets merged ([`Fanout::targets`]) without replica labels removed:
    /// the querier above deduplicates.
    async fn targets(
        &self,
        request: Request<TargetsRequest>,
    ) -> Result<Response<Self::TargetsStream>, Status> {
        let req = request.into_inner();
        let partial = is_partial(false, req.partial_response_strategy);
        let state = targets_request::State::try_from(req.state)
            .map_err(|_| Status::invalid_argument(format!("unknown target state {}", req.state)))?;
        let answer = self
            .fanout
            .targets(state, &[], partial)
            .await
            .map_err(to_status)?;
        let out: Vec<Result<TargetsResponse, Status>> = answer
            .warnings
            .into_iter()
            .map(targets_response::Result::Warning)
            .chain(std::iter::once(targets_response::Result::Targets(
                answer.targets,
            )))
            .map(|r| Ok(TargetsResponse { result: Some(r) }))
            .collect();
        Ok(Response::new(futures::stream::iter(out)))
    }
}

#[tonic::async_trait]
impl Rules for QueryStoreService {
    type RulesStream = RulesAnswers;

    /// The endpoints' rules merged ([`Fanout::rules`]), not deduplicated by replica labels
    /// (only identical rules are one): as for series, the querier above deduplicates. Its
    /// filters are applied here too.
    async fn rules(
        &self,
        request: Request<RulesRequest>,
    ) -> Result<Response<Self::RulesStream>, Status> {
        let req = request.into_inner();
        let partial = is_partial(false, req.partial_response_strategy);
        let kind = rules_request::Type::try_from(req.r#type)
            .map_err(|_| Status::invalid_argument(format!("unknown rule type {}", req.r#type)))?;
        let mut matchers = Vec::new();
        for m in &req.matcher_string {
            let parsed = strata_promql::Engine::default()
                .parse_selector(m)
                .map_err(|e| Status::invalid_argument(format!("matcher {m:?}: {e}")))?;
            matchers.push(parsed);
        }
        let filters = crate::rules::RuleFilters {
            rule_names: req.rule_name,
            rule_groups: req.rule_group,
            files: req.file,
            matchers,
            matcher_strings: req.matcher_string,
        };
        let answer = self
            .fanout
            .rules(kind, &filters, &[], partial)
            .await
            .map_err(to_status)?;
        let warnings = answer
            .warnings
            .into_iter()
            .map(rules_response::Result::Warning);
        let groups = answer.groups.into_iter().map(rules_response::Result::Group);
        let out: Vec<Result<RulesResponse, Status>> = warnings
            .chain(groups)
            .map(|r| Ok(RulesResponse { result: Some(r) }))
            .collect();
        Ok(Response::new(futures::stream::iter(out)))
    }
}

fn to_status(e: QueryError) -> Status {
    match e {
        QueryError::BadRequest(m) => Status::invalid_argument(m),
        QueryError::LimitExceeded(m) => Status::resource_exhausted(m),
        other => Status::unavailable(other.to_string()),
    }
}

fn is_partial(disabled: bool, strategy: i32) -> bool {
    !disabled && strategy != PartialResponseStrategy::Abort as i32
}

/// Cuts the series a Series call answers into frames of `batch` series each, encoded
/// straight from the received chunks ([`EncodedSeries::push_wire`]); a client that asked for
/// no batching gets one `Series` message per frame.
struct FrameWriter {
    batch: usize,
    pending: EncodedSeries,
}

impl FrameWriter {
    fn new(batch: usize) -> Self {
        FrameWriter {
            batch,
            pending: EncodedSeries::default(),
        }
    }

    /// Adds a series; returns a frame when one is full.
    fn push(&mut self, (labels, mut chunks): WireSeries) -> Option<SeriesResponse> {
        if self.batch <= 1 {
            return Some(SeriesResponse::series(Series {
                labels: labels_from_model(&labels),
                chunks: chunks.into_iter().map(AggrChunk::from).collect(),
            }));
        }
        self.pending.push_wire(
            labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
            &mut chunks,
        );
        (self.pending.count() >= self.batch).then(|| self.take())
    }

    /// The last, partial frame, if any series are left.
    fn finish(&mut self) -> Option<SeriesResponse> {
        (!self.pending.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> SeriesResponse {
        SeriesResponse {
            result: Some(series_response::Result::Batch(SeriesBatch {
                series: Vec::new(),
                encoded: self.pending.take(),
            })),
        }
    }
}

/// Sends `frame`; `false` when the client went away.
async fn send(tx: &SeriesSender, frame: SeriesResponse) -> bool {
    tx.send(Ok(frame)).await.is_ok()
}

#[tonic::async_trait]
impl Store for QueryStoreService {
    type SeriesStream = SeriesFrames;

    /// The merged series are passed on as the stores send them ([`Fanout::series_stream`]),
    /// so a querier between a global querier and its stores holds a few frames per store, not
    /// the whole selection, and the querier above receives the first series while the rest
    /// are in transit. `without_replica_labels` goes on to the stores, which strip and
    /// re-sort themselves when they say they can (every Strata and recent Thanos store does);
    /// the answers of the others are stripped and sorted here, each collected first.
    async fn series(
        &self,
        request: Request<SeriesRequest>,
    ) -> Result<Response<Self::SeriesStream>, Status> {
        let mut req = request.into_inner();
        matchers_to_model(&req.matchers).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let Some(matchers) = self.match_selector(std::mem::take(&mut req.matchers))? else {
            return Ok(Response::new(spawn_series(|_| async { Ok(()) })));
        };
        if matchers.is_empty() {
            return Err(Status::invalid_argument(
                "no matchers specified (excluding selector labels)",
            ));
        }
        req.matchers = matchers;
        let partial = is_partial(req.partial_response_disabled, req.partial_response_strategy);
        let limit = usize::try_from(req.limit)
            .ok()
            .filter(|&l| l > 0)
            .unwrap_or(usize::MAX);
        let mut frames = FrameWriter::new(usize::try_from(req.response_batch_size).unwrap_or(0));
        req.response_batch_size = crate::fanout::RESPONSE_BATCH;
        let fanout = self.fanout.clone();
        Ok(Response::new(spawn_series(move |tx| async move {
            let (merged_tx, mut merged) = tokio::sync::mpsc::channel(1);
            // Aborted when this call ends (the client went away, or the limit is met).
            let _merge = CallTask::spawn(async move {
                fanout.series_stream(req, partial, &[], merged_tx).await;
            });
            let mut sent = 0usize;
            while let Some(batch) = merged.recv().await {
                let batch = batch.map_err(to_status)?;
                for w in batch.warnings {
                    if !send(&tx, SeriesResponse::warning(w)).await {
                        return Ok(());
                    }
                }
                for s in batch.items.into_iter().take(limit - sent) {
                    sent += 1;
                    if let Some(f) = frames.push(s)
                        && !send(&tx, f).await
                    {
                        return Ok(());
                    }
                }
                if sent == limit {
                    break;
                }
            }
            if let Some(f) = frames.finish() {
                send(&tx, f).await;
            }
            Ok(())
        })))
    }

    async fn label_names(
        &self,
        request: Request<LabelNamesRequest>,
    ) -> Result<Response<LabelNamesResponse>, Status> {
        let mut req = request.into_inner();
        let Some(matchers) = self.match_selector(std::mem::take(&mut req.matchers))? else {
            return Ok(Response::new(LabelNamesResponse::default()));
        };
        req.matchers = matchers;
        let partial = is_partial(req.partial_response_disabled, req.partial_response_strategy);
        let strip_names = std::mem::take(&mut req.without_replica_labels);
        let r = self
            .fanout
            .label_names(req, partial, &[])
            .await
            .map_err(to_status)?;
        Ok(Response::new(LabelNamesResponse {
            names: r
                .items
                .into_iter()
                .filter(|n| !strip_names.contains(n))
                .collect(),
            warnings: r.warnings,
            hints: None,
        }))
    }

    async fn label_values(
        &self,
        request: Request<LabelValuesRequest>,
    ) -> Result<Response<LabelValuesResponse>, Status> {
        let mut req = request.into_inner();
        let Some(matchers) = self.match_selector(std::mem::take(&mut req.matchers))? else {
            return Ok(Response::new(LabelValuesResponse::default()));
        };
        req.matchers = matchers;
        let partial = is_partial(req.partial_response_disabled, req.partial_response_strategy);
        let strip_names = std::mem::take(&mut req.without_replica_labels);
        if strip_names.contains(&req.label) {
            return Ok(Response::new(LabelValuesResponse::default()));
        }
        let r = self
            .fanout
            .label_values(req, partial, &[])
            .await
            .map_err(to_status)?;
        Ok(Response::new(LabelValuesResponse {
            values: r.items,
            warnings: r.warnings,
            hints: None,
        }))
    }
}

impl QueryStoreService {
    /// A store's label set with the selector labels added (theirs win).
    fn extended(&self, set: &Labels) -> Labels {
        if self.selector.is_empty() {
            return set.clone();
        }
        Labels::new(set.iter().chain(self.selector.iter()).cloned())
    }
}

#[tonic::async_trait]
impl Info for QueryStoreService {
    async fn info(&self, _: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let stores = self.fanout.endpoints.stores();
        let mut sets = std::collections::BTreeSet::new();
        let (mut min, mut max) = (i64::MAX, i64::MIN);
        for s in &stores {
            sets.extend(s.label_sets.iter().map(|l| self.extended(l)));
            min = min.min(s.min_time);
            max = max.max(s.max_time);
        }
        if sets.is_empty() && !self.selector.is_empty() {
            sets.insert(self.selector.clone());
        }
        if stores.is_empty() {
            // Nothing to serve: an empty range, as Thanos' querier without stores reports.
            (min, max) = (i64::MAX, i64::MIN);
        }
        Ok(Response::new(InfoResponse {
            label_sets: sets
                .iter()
                .map(|l| ZLabelSet {
                    labels: labels_from_model(l),
                })
                .collect(),
            component_type: "query".into(),
            // As Thanos' querier: offered while some endpoint below offers it.
            metric_metadata: (!self.fanout.endpoints.metadata_endpoints().is_empty())
                .then_some(MetricMetadataInfo {}),
            rules: (!self.fanout.endpoints.rules_endpoints().is_empty()).then_some(RulesInfo {}),
            exemplars: self.exemplars_info(),
            targets: (!self.fanout.endpoints.targets_endpoints().is_empty())
                .then_some(TargetsInfo {}),
            // PromQL over gRPC (`strata_api::grpc`), served beside this Store API.
            query: Some(QueryApiInfo {}),
            store: Some(StoreInfo {
                min_time: min,
                max_time: max,
                supports_sharding: false,
                supports_without_replica_labels: true,
                tsdb_infos: Vec::new(),
                supports_projections: false,
            }),
            ..Default::default()
        }))
    }
}
