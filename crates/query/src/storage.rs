//! The engine's view of the stores: a [`strata_promql::Storage`] per request that fans out,
//! merges, deduplicates and reads downsampled data as the request's options say.
//!
//! A request's storage owns its own `--query.max-concurrent-select` permits: however many
//! engine threads call [`Storage::select`] at once, at most that many Series fan-outs of one
//! query are in flight, and the rest wait for a permit.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Instant, UNIX_EPOCH};
use tracing::Instrument as _;

use strata_api::{
    EncodedAnswer, MaxSourceResolution, MetadataAnswer, MetadataWarnings, MetricMeta,
    RequestOptions, RulesQuery, RulesView, StorageProvider, StoreStatus, TargetState,
};

use strata_dedup::Algorithm;
use strata_model::{Labels, Matcher};
use strata_promql::{SelectBatches, SelectHints, SelectResult, Storage, StorageError};
use strata_storepb::convert::matcher_from_model;
use strata_storepb::thanos::{
    Func, LabelMatcher, LabelNamesRequest, LabelValuesRequest, PartialResponseStrategy, QueryHints,
    Range, SeriesRequest,
};

use crate::error::QueryError;
use crate::fanout::{Fanout, Merged, WireSeries};
use crate::metrics::{QueryMetrics, SelectStats};
use crate::series::{AggrRead, Convert, strip_owned, to_engine};

/// `--query.max-concurrent-select`'s default, as in Thanos.
pub const DEFAULT_MAX_CONCURRENT_SELECT: usize = 4;

/// The querier's flag defaults for per-request options.
#[derive(Debug, Clone)]
pub struct QuerierConfig {
    /// `--query.replica-label`.
    pub replica_labels: Vec<String>,
    /// `--deduplication.func`.
    pub dedup_func: Algorithm,
    /// `--query.partial-response`.
    pub partial_response: bool,
    /// `--query.auto-downsampling`.
    pub auto_downsampling: bool,
    /// `--query.max-concurrent-select`: Series fan-outs (selects) one query runs at once
    /// (0 counts as 1).
    pub max_concurrent_select: usize,
    /// `--query.enforce-tenancy` with `--query.tenant-label-name`: every Series, label names
    /// and label values call of a request carries `<label>="<the request's tenant>"`, in
    /// place of any matcher on that label the query has, so a request sees its tenant's
    /// series only (Thanos rewrites the query's selectors to the same effect). Requests
    /// that come through the querier's own Store API are not scoped, as in Thanos, where
    /// only the querier a request is sent to enforces.
    pub tenant_label: Option<String>,
    /// Where selections are recorded (`thanos_store_api_query_duration_seconds`).
    pub metrics: Option<Arc<QueryMetrics>>,
    /// `--query.instant.default.max_source_resolution`: the resolution an instant query
    /// asking for `auto` may read (ms; a range query's `auto` is a fifth of its step).
    pub instant_default_max_resolution_ms: i64,
    /// The default partial response of the rules, targets, metric metadata and exemplars
    /// APIs (`--rule.partial-response`, `--target.partial-response`,
    /// `--metric-metadata.partial-response`, `--exemplar.partial-response`; Thanos: on), for
    /// requests without `partial_response`.
    pub api_partial: ApiPartialDefaults,
    /// `--query.dynamic-lookback-delta`: a request that may read 1h-resolution data looks
    /// back at least an hour, as Thanos' querier does (a 5m lookback would see gaps between
    /// downsampled samples).
    pub dynamic_lookback: bool,
}

impl Default for QuerierConfig {
    fn default() -> Self {
        QuerierConfig {
            replica_labels: Vec::new(),
            dedup_func: Algorithm::default(),
            partial_response: false,
            auto_downsampling: false,
            max_concurrent_select: DEFAULT_MAX_CONCURRENT_SELECT,
            tenant_label: None,
            metrics: None,
            instant_default_max_resolution_ms: 0,
            dynamic_lookback: false,
            api_partial: ApiPartialDefaults::default(),
        }
    }
}

/// Partial response by default, per API other than queries (see
/// [`QuerierConfig::api_partial`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiPartialDefaults {
    pub rules: bool,
    pub targets: bool,
    pub metric_metadata: bool,
    pub exemplars: bool,
}

impl Default for ApiPartialDefaults {
    fn default() -> Self {
        ApiPartialDefaults {
            rules: true,
            targets: true,
            metric_metadata: true,
            exemplars: true,
        }
    }
}

#[derive(Debug)]
struct Inner {
    fanout: Fanout,
    cfg: QuerierConfig,
    handle: tokio::runtime::Handle,
}

/// The querier: builds a [`QueryStorage`] for each request ([`StorageProvider`]) and lists
/// the endpoints for `/api/v1/stores`.
#[derive(Debug, Clone)]
pub struct Querier {
    inner: Arc<Inner>,
}

impl Querier {
    /// A querier over `fanout`; store calls run on `handle`'s runtime.
    pub fn new(fanout: Fanout, cfg: QuerierConfig, handle: tokio::runtime::Handle) -> Self {
        Querier {
            inner: Arc::new(Inner {
                fanout,
                cfg,
                handle,
            }),
        }
    }

    /// Runs `call` on the fan-out on the querier's runtime (where the endpoints' channels
    /// live) and shapes its answer with `shape`, for the API's non-PromQL endpoints.
    fn on_runtime<T, U, C, Fut>(
        &self,
        call: C,
        shape: impl FnOnce(T) -> U + Send + 'static,
    ) -> futures::future::BoxFuture<'static, Result<U, StorageError>>
    where
        T: Send + 'static,
        U: Send + 'static,
        C: FnOnce(Fanout) -> Fut,
        Fut: std::future::Future<Output = Result<T, QueryError>> + Send + 'static,
    {
        let task = self.inner.handle.spawn(call(self.inner.fanout.clone()));
        Box::pin(async move {
            let answer = task
                .await
                .map_err(|e| StorageError::new(format!("fan-out task: {e}")))?
                .map_err(StorageError::from)?;
            Ok(shape(answer))
        })
    }

    /// Whether a request to an API whose default is `default` allows partial responses, and
    /// [`Querier::request_replica_labels`].
    fn request_partial_and_replicas(
        &self,
        o: &RequestOptions,
        default: bool,
    ) -> (bool, Vec<String>) {
        (
            o.partial_response.unwrap_or(default),
            self.request_replica_labels(o),
        )
    }

    /// The replica labels a request deduplicates by: none with `dedup=false`, else its
    /// `replicaLabels[]` or `--query.replica-label`.
    fn request_replica_labels(&self, o: &RequestOptions) -> Vec<String> {
        if o.dedup {
            o.replica_labels
                .clone()
                .unwrap_or_else(|| self.inner.cfg.replica_labels.clone())
        } else {
            Vec::new()
        }
    }

    /// The storage for these options, as a concrete type (tests, benchmarks).
    pub fn storage_for(&self, o: &RequestOptions) -> QueryStorage {
        let cfg = &self.inner.cfg;
        let replica_labels = self.request_replica_labels(o);
        QueryStorage {
            inner: self.inner.clone(),
            replica_labels,
            partial: o.partial_response.unwrap_or(cfg.partial_response),
            max_resolution: o.max_source_resolution.unwrap_or(if cfg.auto_downsampling {
                MaxSourceResolution::Auto
            } else {
                MaxSourceResolution::Millis(0)
            }),
            metadata_warnings: MetadataWarnings::default(),
            tenant: cfg
                .tenant_label
                .as_ref()
                .map(|l| Matcher::equal(l.as_str(), o.tenant.as_str())),
            tenant_name: Arc::from(o.tenant.as_str()),
            store_match: Arc::new(o.store_matchers.clone()),
            select_slots: Arc::new(tokio::sync::Semaphore::new(
                cfg.max_concurrent_select.max(1),
            )),
            early_left: Arc::new(std::sync::atomic::AtomicUsize::new(
                cfg.max_concurrent_select.saturating_sub(1),
            )),
        }
    }
}

/// The coarsest resolution (ms) a selection with `max` may read: `auto` is a fifth of the
/// step, or for instant queries (step 0) `--query.instant.default.max_source_resolution`.
fn resolution_of(max: MaxSourceResolution, step: i64, instant_default: i64) -> i64 {
    match max {
        MaxSourceResolution::Millis(ms) => ms,
        MaxSourceResolution::Auto if step == 0 => instant_default,
        MaxSourceResolution::Auto => step / 5,
    }
}

/// Thanos' dynamic lookback delta (`LookbackDeltaFactory`): over the downsampling levels
/// (raw, 5m, 1h), a request allowed to read a level coarser than both the one below it and
/// the configured lookback looks back at least that level's resolution.
pub fn dynamic_lookback_ms(lookback_ms: i64, max_resolution_ms: i64) -> i64 {
    const LEVELS: [i64; 3] = [0, 5 * 60 * 1000, 60 * 60 * 1000];
    let mut per_level = [lookback_ms; 3];
    let mut current = lookback_ms;
    for (i, &r) in LEVELS.iter().enumerate() {
        if lookback_ms < r {
            current = r;
        }
        per_level[i] = current;
    }
    for i in (1..LEVELS.len()).rev() {
        let left = LEVELS[i - 1].max(lookback_ms);
        if left < max_resolution_ms {
            return per_level[i];
        }
    }
    per_level[0]
}

impl StorageProvider for Querier {
    fn storage(&self, opts: &RequestOptions) -> Arc<dyn Storage> {
        Arc::new(self.storage_for(opts))
    }

    fn lookback_delta_ms(&self, opts: &RequestOptions, step_ms: i64, lookback_ms: i64) -> i64 {
        let cfg = &self.inner.cfg;
        if !cfg.dynamic_lookback {
            return lookback_ms;
        }
        let max = opts
            .max_source_resolution
            .unwrap_or(if cfg.auto_downsampling {
                MaxSourceResolution::Auto
            } else {
                MaxSourceResolution::Millis(0)
            });
        let res = resolution_of(max, step_ms, cfg.instant_default_max_resolution_ms);
        dynamic_lookback_ms(lookback_ms, res)
    }

    fn metadata_storage(&self, opts: &RequestOptions) -> (Arc<dyn Storage>, MetadataWarnings) {
        let s = self.storage_for(opts);
        let w = s.metadata_warnings.clone();
        (Arc::new(s), w)
    }

    fn metric_metadata(
        &self,
        metric: String,
        limit: i32,
        opts: &RequestOptions,
    ) -> futures::future::BoxFuture<'static, Result<MetadataAnswer, StorageError>> {
        let partial = opts
            .partial_response
            .unwrap_or(self.inner.cfg.api_partial.metric_metadata);
        self.on_runtime(
            move |f| async move { f.metric_metadata(&metric, limit, partial).await },
            |a| MetadataAnswer {
                metrics: a
                    .metrics
                    .into_iter()
                    .map(|(name, metas)| {
                        let metas = metas
                            .into_iter()
                            .map(|m| MetricMeta {
                                kind: m.r#type,
                                help: m.help,
                                unit: m.unit,
                            })
                            .collect();
                        (name, metas)
                    })
                    .collect(),
                warnings: a.warnings,
            },
        )
    }

    fn exemplars(
        &self,
        selectors: Vec<Vec<Matcher>>,
        start: i64,
        end: i64,
        opts: &RequestOptions,
    ) -> futures::future::BoxFuture<'static, Result<EncodedAnswer, StorageError>> {
        let (partial, replica_labels) =
            self.request_partial_and_replicas(opts, self.inner.cfg.api_partial.exemplars);
        // Exemplars carry series labels: under `--query.enforce-tenancy` every selector is
        // scoped to the tenant, as selections are.
        let selectors = match &self.inner.cfg.tenant_label {
            None => selectors,
            Some(label) => scope_selectors(
                selectors,
                &Matcher::equal(label.as_str(), opts.tenant.as_str()),
            ),
        };
        self.on_runtime(
            move |f| async move {
                f.exemplars(&selectors, start, end, &replica_labels, partial)
                    .await
            },
            |a| EncodedAnswer {
                data: crate::exemplars::exemplars_json(&a.series),
                warnings: a.warnings,
            },
        )
    }

    fn targets(
        &self,
        state: Option<TargetState>,
        opts: &RequestOptions,
    ) -> futures::future::BoxFuture<'static, Result<EncodedAnswer, StorageError>> {
        use strata_storepb::thanos::targets_request::State;
        let (partial, replica_labels) =
            self.request_partial_and_replicas(opts, self.inner.cfg.api_partial.targets);
        let state = match state {
            None => State::Any,
            Some(TargetState::Active) => State::Active,
            Some(TargetState::Dropped) => State::Dropped,
        };
        self.on_runtime(
            move |f| async move { f.targets(state, &replica_labels, partial).await },
            |a| EncodedAnswer {
                data: crate::targets::targets_json(&a.targets),
                warnings: a.warnings,
            },
        )
    }

    fn rules(
        &self,
        query: RulesQuery,
        view: RulesView,
        opts: &RequestOptions,
    ) -> futures::future::BoxFuture<'static, Result<EncodedAnswer, StorageError>> {
        // As Thanos: with deduplication off, only identical rules are one.
        let (partial, replica_labels) =
            self.request_partial_and_replicas(opts, self.inner.cfg.api_partial.rules);
        let (kind, filters) = crate::rules::request_filters(query);
        self.on_runtime(
            move |f| async move { f.rules(kind, &filters, &replica_labels, partial).await },
            move |a| EncodedAnswer {
                data: match view {
                    RulesView::Rules => crate::rules::rules_json(&a.groups),
                    RulesView::Alerts => crate::rules::alerts_json(&a.groups),
                },
                warnings: a.warnings,
            },
        )
    }

    fn stores(&self) -> BTreeMap<String, Vec<StoreStatus>> {
        let mut out: BTreeMap<String, Vec<StoreStatus>> = BTreeMap::new();
        for s in self.inner.fanout.endpoints.status() {
            let kind = s
                .info
                .as_ref()
                .map_or_else(String::new, |i| i.component_type.clone());
            let kind = if kind.is_empty() {
                "unknown".to_string()
            } else {
                kind
            };
            out.entry(kind).or_default().push(StoreStatus {
                name: s.addr,
                last_check_ms: s
                    .last_check
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_millis() as i64),
                last_error: s.last_error,
                label_sets: s
                    .info
                    .as_ref()
                    .map(|i| i.label_sets.clone())
                    .unwrap_or_default(),
                min_time: s.info.as_ref().map_or(i64::MIN, |i| i.min_time),
                max_time: s.info.as_ref().map_or(i64::MAX, |i| i.max_time),
            });
        }
        out
    }
}

/// `selectors` with any matcher on the tenant label replaced by `tenant` (the tenant's own),
/// under `--query.enforce-tenancy`.
fn scope_selectors(selectors: Vec<Vec<Matcher>>, tenant: &Matcher) -> Vec<Vec<Matcher>> {
    selectors
        .into_iter()
        .map(|sel| {
            sel.into_iter()
                .filter(|m| m.name() != tenant.name())
                .chain(std::iter::once(tenant.clone()))
                .collect()
        })
        .collect()
}

/// One request's storage: deduplication over `replica_labels` (empty: off), partial
/// response, the downsampling resolution, the stores `storeMatch[]` allows, and the
/// request's select permits. Clones share the permits (they are the same query).
#[derive(Debug, Clone)]
pub struct QueryStorage {
    inner: Arc<Inner>,
    replica_labels: Vec<String>,
    partial: bool,
    max_resolution: MaxSourceResolution,
    /// Warnings of the metadata calls (the `Storage` trait returns none for them).
    metadata_warnings: MetadataWarnings,
    /// `--query.enforce-tenancy`: the matcher every store call carries (see
    /// [`QuerierConfig::tenant_label`]).
    tenant: Option<Matcher>,
    /// The request's tenant, for the metrics.
    tenant_name: Arc<str>,
    /// `storeMatch[]` (empty: every store).
    store_match: Arc<Vec<Vec<Matcher>>>,
    /// `--query.max-concurrent-select` permits of this query's Series fan-outs.
    select_slots: Arc<tokio::sync::Semaphore>,
    /// Selections this query may still start early ([`Storage::select_early`]): one fewer
    /// than the permits. Early selections wait for evaluation holding their permits, so a
    /// selection evaluation makes late (one the early pass did not find) always has one.
    early_left: Arc<std::sync::atomic::AtomicUsize>,
}

fn wire(ms: &[Matcher]) -> Vec<LabelMatcher> {
    ms.iter().map(matcher_from_model).collect()
}

fn strategy(partial: bool) -> i32 {
    if partial {
        PartialResponseStrategy::Warn as i32
    } else {
        PartialResponseStrategy::Abort as i32
    }
}

impl QueryStorage {
    /// Runs a store call to completion from the engine's (blocking) thread.
    fn block<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = Result<T, crate::QueryError>> + Send + 'static,
    ) -> Result<T, StorageError> {
        wait_call(self.spawn_call(f))
    }

    /// Starts a store call on the runtime; its answer comes through the returned channel
    /// ([`wait_call`]).
    fn spawn_call<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = Result<T, crate::QueryError>> + Send + 'static,
    ) -> std::sync::mpsc::Receiver<Result<T, crate::QueryError>> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.inner.handle.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx
    }

    /// Warnings left by the metadata calls so far (and forgets them).
    pub fn take_metadata_warnings(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .metadata_warnings
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    fn note(&self, warnings: Vec<String>) {
        if !warnings.is_empty() {
            self.metadata_warnings
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(warnings);
        }
    }

    fn resolution(&self, step: i64) -> i64 {
        resolution_of(
            self.max_resolution,
            step,
            self.inner.cfg.instant_default_max_resolution_ms,
        )
    }

    /// `matchers` scoped to the request's tenant under `--query.enforce-tenancy`: any
    /// matcher on the tenant label replaced by the tenant's.
    fn scoped(&self, matchers: &[Matcher]) -> Vec<LabelMatcher> {
        match &self.tenant {
            None => wire(matchers),
            Some(t) => matchers
                .iter()
                .filter(|m| m.name() != t.name())
                .chain(std::iter::once(t))
                .map(matcher_from_model)
                .collect(),
        }
    }

    fn series_request(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> SeriesRequest {
        SeriesRequest {
            min_time: mint,
            max_time: maxt,
            matchers: self.scoped(matchers),
            response_batch_size: crate::fanout::RESPONSE_BATCH,
            partial_response_strategy: strategy(self.partial),
            partial_response_disabled: !self.partial,
            ..Default::default()
        }
    }

    /// One Series fan-out, run once a select permit of this query is free.
    fn fan_out_series(&self, req: SeriesRequest) -> Result<Merged<Vec<WireSeries>>, StorageError> {
        wait_call(self.spawn_fan_out_series(req))
    }

    /// [`QueryStorage::fan_out_series`] started on the runtime ([`QueryStorage::spawn_call`]).
    fn spawn_fan_out_series(
        &self,
        req: SeriesRequest,
    ) -> std::sync::mpsc::Receiver<CollectedSelect> {
        let (fanout, partial, store_match) = self.fan_out_parts();
        let slots = self.select_slots.clone();
        self.spawn_call(async move {
            let _permit = select_permit(slots).await?;
            fanout.series(req, partial, &store_match).await
        })
    }

    /// Takes one of this query's early selections, if any are left.
    fn take_early(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        self.early_left
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    /// What a fan-out task needs of this storage, owned.
    fn fan_out_parts(&self) -> (Fanout, bool, Arc<Vec<Vec<Matcher>>>) {
        (
            self.inner.fanout.clone(),
            self.partial,
            self.store_match.clone(),
        )
    }

    /// The union of the strings `call` (a label names or values fan-out) answers for each of
    /// `matcher_sets` (once without matchers when there are none), noting their warnings.
    fn strings_over_sets<F, Fut>(
        &self,
        matcher_sets: &[Vec<Matcher>],
        call: F,
    ) -> Result<BTreeSet<String>, StorageError>
    where
        F: Fn(Vec<LabelMatcher>) -> Fut,
        Fut: std::future::Future<Output = Result<Merged<Vec<String>>, crate::QueryError>>
            + Send
            + 'static,
    {
        let empty = [Vec::new()];
        let sets = if matcher_sets.is_empty() {
            &empty[..]
        } else {
            matcher_sets
        };
        let mut out = BTreeSet::new();
        for ms in sets {
            let strings = self.block(call(self.scoped(ms)))?;
            self.note(strings.warnings);
            out.extend(strings.items);
        }
        Ok(out)
    }

    /// Label sets of the matching series (chunks skipped), replica labels removed.
    fn labels_of(
        &self,
        matcher_sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<BTreeSet<Labels>, StorageError> {
        let all = [vec![
            Matcher::new(strata_model::MatchOp::RegexMatch, "__name__", ".+")
                .map_err(|e| StorageError::new(format!("building the all-series matcher: {e}")))?,
        ]];
        let sets = if matcher_sets.is_empty() {
            &all[..]
        } else {
            matcher_sets
        };
        let mut out = BTreeSet::new();
        for ms in sets {
            let mut req = self.series_request(ms, mint, maxt);
            req.skip_chunks = true;
            let merged = self.fan_out_series(req)?;
            self.note(merged.warnings);
            for (l, _) in merged.items {
                out.insert(strip_owned(l, &self.replica_labels));
            }
        }
        Ok(out)
    }

    /// The Series request of a select, and how its answer becomes engine series.
    fn select_plan(&self, matchers: &[Matcher], hints: &SelectHints) -> (SeriesRequest, Plan) {
        let aggr = AggrRead::from_func(hints.func.as_deref());
        let mut req = self.series_request(matchers, hints.start, hints.end);
        // Deduplicating: the stores strip the replica labels (the fan-out does it for those
        // that cannot), so replicas arrive as one series in label order and the selection
        // streams like any other; `to_engine` splits each series' replicas again.
        req.without_replica_labels = self.replica_labels.clone();
        req.max_resolution_window = self.resolution(hints.step);
        req.aggregates = aggr.wire();
        req.query_hints = Some(QueryHints {
            step_millis: hints.step,
            func: hints.func.as_ref().map(|f| Func { name: f.clone() }),
            range: (hints.range > 0).then_some(Range {
                millis: hints.range,
            }),
            ..Default::default()
        });
        let plan = Plan {
            algorithm: self.inner.cfg.dedup_func,
            counter: hints
                .func
                .as_deref()
                .is_some_and(strata_dedup::is_counter_function),
            aggr,
        };
        (req, plan)
    }
}

/// How a select's merged series become engine series (with [`Convert`]'s replica labels).
#[derive(Debug, Clone, Copy)]
struct Plan {
    algorithm: Algorithm,
    counter: bool,
    aggr: AggrRead,
}

impl Plan {
    fn convert<'a>(&self, replica_labels: &'a [String]) -> Convert<'a> {
        Convert {
            replica_labels,
            algorithm: self.algorithm,
            counter: self.counter,
            aggr: self.aggr,
        }
    }
}

/// The batches of a streaming select: merged series as the fan-out hands them over,
/// converted (and deduplicated over `replica_labels`) on the engine's thread. Dropping it
/// stops the fan-out.
struct StreamedSelect {
    rx: tokio::sync::mpsc::Receiver<Result<Merged<Vec<WireSeries>>, crate::QueryError>>,
    plan: Plan,
    replica_labels: Vec<String>,
    ended: bool,
    /// What the selection has brought so far, recorded when it ends (not when it fails or
    /// is dropped, as Thanos records completed selections only).
    metrics: Option<SelectMetrics>,
}

/// A streaming selection's `thanos_store_api_query_duration_seconds` observation in the
/// making.
struct SelectMetrics {
    metrics: Arc<QueryMetrics>,
    tenant: Arc<str>,
    started: Instant,
    stats: SelectStats,
}

impl Iterator for StreamedSelect {
    type Item = Result<SelectResult, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ended {
            return None;
        }
        // The engine's threads are not the runtime's: waiting here blocks no async task.
        let next = self.rx.blocking_recv();
        let merged = match next {
            None => {
                self.ended = true;
                if let Some(m) = &self.metrics {
                    m.metrics
                        .observe_select(&m.tenant, &m.stats, m.started.elapsed());
                }
                return None;
            }
            Some(Err(e)) => {
                self.ended = true;
                return Some(Err(StorageError::from(e)));
            }
            Some(Ok(m)) => m,
        };
        if let Some(m) = &mut self.metrics {
            m.stats.add(&merged.items);
        }
        Some(
            to_engine(merged.items, &self.plan.convert(&self.replica_labels))
                .map(|series| SelectResult {
                    series,
                    warnings: merged.warnings,
                })
                .map_err(|e| {
                    self.ended = true;
                    StorageError::new(e)
                }),
        )
    }
}

/// A collected fan-out's answer (`Storage::select`).
type CollectedSelect = Result<Merged<Vec<WireSeries>>, crate::QueryError>;

/// Waits for a store call started with [`QueryStorage::spawn_call`].
fn wait_call<T>(
    rx: std::sync::mpsc::Receiver<Result<T, crate::QueryError>>,
) -> Result<T, StorageError> {
    rx.recv()
        .map_err(|_| StorageError::new("querier runtime shut down"))?
        .map_err(StorageError::from)
}

/// Waits for one of the query's `--query.max-concurrent-select` permits.
async fn select_permit(
    slots: Arc<tokio::sync::Semaphore>,
) -> Result<tokio::sync::OwnedSemaphorePermit, crate::QueryError> {
    slots
        .acquire_owned()
        .await
        .map_err(|_| crate::QueryError::ShuttingDown("the query's select permits"))
}

/// Merged batches in flight between a streaming fan-out and the engine.
const STREAMED_BATCHES_AHEAD: usize = 2;

impl Storage for QueryStorage {
    fn selects_early(&self) -> bool {
        true
    }

    /// Selects start as [`Storage::select_batches`] starts them. At most one fewer than the
    /// query's select permits start early (see `early_left`).
    fn select_early(
        &self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Option<Result<SelectBatches, StorageError>> {
        if !self.take_early() {
            return None;
        }
        Some(self.select_batches(matchers, hints))
    }

    fn select(
        &self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Result<SelectResult, StorageError> {
        let (req, plan) = self.select_plan(matchers, hints);
        let started = Instant::now();
        let merged = self.fan_out_series(req)?;
        if let Some(m) = &self.inner.cfg.metrics {
            let mut stats = SelectStats::default();
            stats.add(&merged.items);
            m.observe_select(&self.tenant_name, &stats, started.elapsed());
        }
        let series = to_engine(merged.items, &plan.convert(&self.replica_labels))
            .map_err(StorageError::new)?;
        Ok(SelectResult {
            series,
            warnings: merged.warnings,
        })
    }

    /// Streams, deduplicating or not: with `without_replica_labels` pushed down (see
    /// `select_plan`), a series' replicas arrive together.
    fn select_batches(
        &self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Result<SelectBatches, StorageError> {
        let (req, plan) = self.select_plan(matchers, hints);
        let (fanout, partial, store_match) = self.fan_out_parts();
        let slots = self.select_slots.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(STREAMED_BATCHES_AHEAD);
        // Thanos' span for a selection; its store calls are its children.
        let span = tracing::info_span!(
            "querier_select",
            minTime = req.min_time,
            maxTime = req.max_time,
            matchers = %format_args!("{{{}}}", matchers.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")),
        );
        self.inner.handle.spawn(
            async move {
                let _permit = match select_permit(slots).await {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                fanout.series_stream(req, partial, &store_match, tx).await;
            }
            .instrument(span),
        );
        Ok(Box::new(StreamedSelect {
            rx,
            plan,
            replica_labels: self.replica_labels.clone(),
            ended: false,
            metrics: self.inner.cfg.metrics.clone().map(|m| SelectMetrics {
                metrics: m,
                tenant: self.tenant_name.clone(),
                started: Instant::now(),
                stats: SelectStats::default(),
            }),
        }))
    }

    fn label_names(
        &self,
        matcher_sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let (fanout, partial, store_match) = self.fan_out_parts();
        let names = self.strings_over_sets(matcher_sets, move |matchers| {
            let req = LabelNamesRequest {
                start: mint,
                end: maxt,
                matchers,
                partial_response_strategy: strategy(partial),
                partial_response_disabled: !partial,
                ..Default::default()
            };
            let (fanout, store_match) = (fanout.clone(), store_match.clone());
            async move { fanout.label_names(req, partial, &store_match).await }
        })?;
        Ok(names
            .into_iter()
            .filter(|n| !self.replica_labels.contains(n))
            .collect())
    }

    fn label_values(
        &self,
        name: &str,
        matcher_sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        if self.replica_labels.iter().any(|r| r == name) {
            return Ok(Vec::new());
        }
        let (fanout, partial, store_match) = self.fan_out_parts();
        let name = name.to_string();
        let values = self.strings_over_sets(matcher_sets, move |matchers| {
            let req = LabelValuesRequest {
                label: name.clone(),
                start: mint,
                end: maxt,
                matchers,
                partial_response_strategy: strategy(partial),
                partial_response_disabled: !partial,
                ..Default::default()
            };
            let (fanout, store_match) = (fanout.clone(), store_match.clone());
            async move { fanout.label_values(req, partial, &store_match).await }
        })?;
        Ok(values.into_iter().collect())
    }

    fn series_labels(
        &self,
        matcher_sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StorageError> {
        Ok(self
            .labels_of(matcher_sets, mint, maxt)?
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_lookback_follows_thanos_factory() {
        const M: i64 = 60 * 1000;
        const H: i64 = 60 * M;
        // The default 5m lookback: raw and 5m data keep it, anything coarser looks back 1h.
        for (res, want) in [(0, 5 * M), (5 * M, 5 * M), (6 * M, H), (H, H), (2 * H, H)] {
            assert_eq!(dynamic_lookback_ms(5 * M, res), want, "res {res}");
        }
        // A lookback already above a level keeps it.
        for (res, want) in [(0, 30 * M), (10 * M, 30 * M), (H, H)] {
            assert_eq!(dynamic_lookback_ms(30 * M, res), want, "res {res}");
        }
        assert_eq!(dynamic_lookback_ms(2 * H, H), 2 * H);
        // Auto is a fifth of the step, or the instant default for instant queries.
        assert_eq!(resolution_of(MaxSourceResolution::Auto, 30 * M, 7), 6 * M);
        assert_eq!(resolution_of(MaxSourceResolution::Auto, 0, 7), 7);
        assert_eq!(resolution_of(MaxSourceResolution::Millis(H), 0, 7), H);
    }

    #[test]
    fn tenant_scoping_replaces_the_tenant_matchers_of_every_selector() {
        let tenant = Matcher::equal("tenant_id", "team-a");
        let out = scope_selectors(
            vec![
                vec![
                    Matcher::equal("__name__", "up"),
                    Matcher::equal("tenant_id", "team-b"),
                ],
                vec![Matcher::equal("__name__", "jobs")],
            ],
            &tenant,
        );
        let shown: Vec<Vec<String>> = out
            .iter()
            .map(|s| s.iter().map(ToString::to_string).collect())
            .collect();
        assert_eq!(
            shown,
            [
                vec![r#"__name__="up""#, r#"tenant_id="team-a""#],
                vec![r#"__name__="jobs""#, r#"tenant_id="team-a""#],
            ]
        );
    }
}
