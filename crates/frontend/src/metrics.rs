//! The frontend's metrics, under Thanos' names where Thanos has the metric.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// `op` of `thanos_query_frontend_queries_total` (Thanos' values: `query`, `query_range`,
/// `label_names`, `label_values`, `series`; requests passed through are not counted).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub op: &'static str,
}

/// `name` of the results cache counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub name: &'static str,
}

/// The frontend's counters.
#[derive(Debug, Clone)]
pub struct FrontendMetrics {
    /// Requests taken, by kind.
    pub queries: Family<OpLabels, Counter>,
    /// Parts sent to the querier after splitting (`thanos_frontend_split_queries_total`).
    pub split_queries: Counter,
    /// Downstream attempts retried (a 5xx or a failed connection).
    pub retries: Family<OpLabels, Counter>,
    /// Cache lookups and the ones that found a usable value.
    pub cache_requests: Family<CacheLabels, Counter>,
    pub cache_hits: Family<CacheLabels, Counter>,
    /// Steps answered from the cache and steps asked of the querier, over range query parts
    /// that went through the cache: how much of the work the cache saves.
    pub cached_steps: Counter,
    pub fetched_steps: Counter,
    /// Time per request, by kind.
    pub duration: Family<OpLabels, Histogram>,
}

impl FrontendMetrics {
    pub fn new(registry: Option<&mut Registry>) -> Self {
        let m = FrontendMetrics {
            queries: Family::default(),
            split_queries: Counter::default(),
            retries: Family::default(),
            cache_requests: Family::default(),
            cache_hits: Family::default(),
            cached_steps: Counter::default(),
            fetched_steps: Counter::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0])
            }),
        };
        // Every operation from zero, as Thanos exports them.
        for op in [
            "query",
            "query_range",
            "label_names",
            "label_values",
            "series",
        ] {
            let _ = m.queries.get_or_create(&OpLabels { op });
        }
        if let Some(r) = registry {
            r.register(
                "thanos_query_frontend_queries",
                "Total queries passing through the query frontend, by operation",
                m.queries.clone(),
            );
            r.register(
                "thanos_frontend_split_queries",
                "Total number of underlying query requests after the split by interval is applied",
                m.split_queries.clone(),
            );
            r.register(
                "strata_frontend_retries",
                "Downstream requests retried after a 5xx answer or a failed connection",
                m.retries.clone(),
            );
            r.register(
                "strata_frontend_cache_requests",
                "Results cache lookups",
                m.cache_requests.clone(),
            );
            r.register(
                "strata_frontend_cache_hits",
                "Results cache lookups that found a usable value",
                m.cache_hits.clone(),
            );
            r.register(
                "strata_frontend_cached_steps",
                "Range query steps answered from the results cache",
                m.cached_steps.clone(),
            );
            r.register(
                "strata_frontend_fetched_steps",
                "Range query steps asked of the querier by parts that went through the results cache",
                m.fetched_steps.clone(),
            );
            r.register(
                "strata_frontend_request_duration_seconds",
                "Time to answer a request, by operation",
                m.duration.clone(),
            );
        }
        m
    }
}
