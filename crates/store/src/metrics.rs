//! The store gateway's metrics, with Thanos' names so existing dashboards and alerts work.
//!
//! prometheus-client has no summaries, so the per-request data histograms (Thanos summaries in
//! older releases, histograms in newer ones) are histograms with exponential buckets.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `data_type` of the series data metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DataType {
    pub(crate) data_type: &'static str,
}

pub(crate) const POSTINGS: DataType = DataType {
    data_type: "postings",
};
pub(crate) const SERIES: DataType = DataType {
    data_type: "series",
};
pub(crate) const CHUNKS: DataType = DataType {
    data_type: "chunks",
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Reason {
    pub(crate) reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct State {
    pub(crate) state: &'static str,
}

type HistFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn count_histogram() -> Histogram {
    Histogram::new(exponential_buckets(200.0, 2.0, 15))
}

fn bytes_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1024.0, 2.0, 20))
}

fn duration_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.01, 0.1, 0.3, 0.6, 1.0, 3.0, 6.0, 9.0, 20.0, 30.0, 60.0, 90.0, 120.0,
    ])
}

/// Every metric the store gateway exports. Cheap to clone (each metric is an `Arc`).
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    pub(crate) blocks_loaded: Gauge,
    pub(crate) block_loads: Counter,
    pub(crate) block_load_failures: Counter,
    pub(crate) block_drops: Counter,
    pub(crate) series_data_touched: HistFamily<DataType>,
    pub(crate) series_data_fetched: HistFamily<DataType>,
    pub(crate) series_data_size_touched: HistFamily<DataType>,
    pub(crate) series_data_size_fetched: HistFamily<DataType>,
    pub(crate) series_blocks_queried: Histogram,
    pub(crate) series_get_all_duration: Histogram,
    pub(crate) series_merge_duration: Histogram,
    pub(crate) series_result_series: Histogram,
    pub(crate) queries_dropped: Family<Reason, Counter>,
    pub(crate) series_refetches: Counter,
    pub(crate) chunk_refetches: Counter,
    pub(crate) gate_in_flight: Gauge,
    pub(crate) gate_max: Gauge,
    pub(crate) gate_duration: Histogram,
    /// Bytes of chunk read buffers held now and at most (see [`crate::pool`]).
    pub(crate) chunk_pool_held: Gauge,
    pub(crate) chunk_pool_peak: Gauge,
    pub(crate) lazy_load: Counter,
    pub(crate) lazy_load_failed: Counter,
    pub(crate) lazy_unload: Counter,
    pub(crate) lazy_load_duration: Histogram,
    pub(crate) meta_syncs: Counter,
    pub(crate) meta_sync_failures: Counter,
    pub(crate) meta_sync_duration: Histogram,
    pub(crate) meta_synced: Family<State, Gauge>,
}

/// The `state` values of `thanos_blocks_meta_synced`.
pub(crate) const SYNC_STATES: &[&str] = &[
    "corrupted-meta-json",
    "no-meta-json",
    "loaded",
    "failed",
    "label-excluded",
    "time-excluded",
    "too-fresh",
    "duplicate",
    "marked-for-deletion",
    "marked-for-no-compact",
];

impl Default for StoreMetrics {
    fn default() -> Self {
        Self::unregistered()
    }
}

impl StoreMetrics {
    /// Metrics not exposed anywhere (tests, tools).
    pub fn unregistered() -> Self {
        let m = StoreMetrics {
            blocks_loaded: Gauge::default(),
            block_loads: Counter::default(),
            block_load_failures: Counter::default(),
            block_drops: Counter::default(),
            series_data_touched: Family::new_with_constructor(count_histogram),
            series_data_fetched: Family::new_with_constructor(count_histogram),
            series_data_size_touched: Family::new_with_constructor(bytes_histogram),
            series_data_size_fetched: Family::new_with_constructor(bytes_histogram),
            series_blocks_queried: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            series_get_all_duration: duration_histogram(),
            series_merge_duration: duration_histogram(),
            series_result_series: count_histogram(),
            queries_dropped: Family::default(),
            series_refetches: Counter::default(),
            chunk_refetches: Counter::default(),
            gate_in_flight: Gauge::default(),
            gate_max: Gauge::default(),
            gate_duration: duration_histogram(),
            chunk_pool_held: Gauge::default(),
            chunk_pool_peak: Gauge::default(),
            lazy_load: Counter::default(),
            lazy_load_failed: Counter::default(),
            lazy_unload: Counter::default(),
            lazy_load_duration: duration_histogram(),
            meta_syncs: Counter::default(),
            meta_sync_failures: Counter::default(),
            meta_sync_duration: duration_histogram(),
            meta_synced: Family::default(),
        };
        for s in SYNC_STATES {
            let _ = m.meta_synced.get_or_create(&State { state: s });
        }
        for d in [POSTINGS, SERIES, CHUNKS] {
            let _ = m.series_data_touched.get_or_create(&d);
            let _ = m.series_data_fetched.get_or_create(&d);
            let _ = m.series_data_size_touched.get_or_create(&d);
            let _ = m.series_data_size_fetched.get_or_create(&d);
        }
        for r in ["series", "chunks", "bytes"] {
            let _ = m.queries_dropped.get_or_create(&Reason { reason: r });
        }
        m
    }

    /// Creates the metrics and registers them (counters get `_total` from the client library).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::unregistered();
        let r = registry;
        r.register(
            "thanos_bucket_store_blocks_loaded",
            "Number of currently loaded blocks",
            m.blocks_loaded.clone(),
        );
        r.register(
            "thanos_bucket_store_block_loads",
            "Total number of remote block loading attempts",
            m.block_loads.clone(),
        );
        r.register(
            "thanos_bucket_store_block_load_failures",
            "Total number of failed remote block loading attempts",
            m.block_load_failures.clone(),
        );
        r.register(
            "thanos_bucket_store_block_drops",
            "Total number of local blocks that were dropped",
            m.block_drops.clone(),
        );
        r.register(
            "thanos_bucket_store_series_data_touched",
            "Number of items of a data type touched to fulfill a single Store API series request",
            m.series_data_touched.clone(),
        );
        r.register(
            "thanos_bucket_store_series_data_fetched",
            "Number of items of a data type retrieved to fulfill a single Store API series request",
            m.series_data_fetched.clone(),
        );
        r.register(
            "thanos_bucket_store_series_data_size_touched_bytes",
            "Total size of items of a data type touched to fulfill a single Store API series request in Bytes",
            m.series_data_size_touched.clone(),
        );
        r.register(
            "thanos_bucket_store_series_data_size_fetched_bytes",
            "Total size of items of a data type fetched to fulfill a single Store API series request in Bytes",
            m.series_data_size_fetched.clone(),
        );
        r.register(
            "thanos_bucket_store_series_blocks_queried",
            "Number of blocks in a bucket store that were touched to satisfy a query",
            m.series_blocks_queried.clone(),
        );
        r.register(
            "thanos_bucket_store_series_get_all_duration_seconds",
            "Time it takes until all per-block prepares and loads for a query are finished",
            m.series_get_all_duration.clone(),
        );
        r.register(
            "thanos_bucket_store_series_merge_duration_seconds",
            "Time it takes to merge sub-results from all queried blocks into a single result",
            m.series_merge_duration.clone(),
        );
        r.register(
            "thanos_bucket_store_series_result_series",
            "Number of series observed in the final result of a query",
            m.series_result_series.clone(),
        );
        r.register(
            "thanos_bucket_store_queries_dropped",
            "Number of queries that were dropped due to the limit",
            m.queries_dropped.clone(),
        );
        r.register(
            "thanos_bucket_store_series_refetches",
            "Total number of cases where configured estimated series bytes was not enough was to fetch series from index, resulting in refetch",
            m.series_refetches.clone(),
        );
        r.register(
            "thanos_bucket_store_chunk_refetches",
            "Total number of cases where configured estimated chunk bytes was not enough was to fetch chunks from object store, resulting in refetch",
            m.chunk_refetches.clone(),
        );
        r.register(
            "thanos_bucket_store_series_gate_queries_in_flight",
            "Number of queries that are currently in flight",
            m.gate_in_flight.clone(),
        );
        r.register(
            "thanos_bucket_store_series_gate_queries_max",
            "Maximum number of concurrent queries",
            m.gate_max.clone(),
        );
        r.register(
            "strata_store_chunk_pool_held_bytes",
            "Bytes of chunk data read from object storage and not yet sent, bounded by --chunk-pool-size",
            m.chunk_pool_held.clone(),
        );
        r.register(
            "strata_store_chunk_pool_peak_bytes",
            "The most bytes of chunk data held at once since start",
            m.chunk_pool_peak.clone(),
        );
        r.register(
            "thanos_bucket_store_series_gate_duration_seconds",
            "How many seconds it took for queries to wait at the gate",
            m.gate_duration.clone(),
        );
        r.register(
            "thanos_bucket_store_indexheader_lazy_load",
            "Total number of index-header lazy load operations",
            m.lazy_load.clone(),
        );
        r.register(
            "thanos_bucket_store_indexheader_lazy_load_failed",
            "Total number of failed index-header lazy load operations",
            m.lazy_load_failed.clone(),
        );
        r.register(
            "thanos_bucket_store_indexheader_lazy_unload",
            "Total number of index-header lazy unload operations",
            m.lazy_unload.clone(),
        );
        r.register(
            "thanos_bucket_store_indexheader_lazy_load_duration_seconds",
            "Duration of the index-header lazy loading in seconds",
            m.lazy_load_duration.clone(),
        );
        r.register(
            "thanos_blocks_meta_syncs",
            "Total blocks metadata synchronization attempts",
            m.meta_syncs.clone(),
        );
        r.register(
            "thanos_blocks_meta_sync_failures",
            "Total blocks metadata synchronization failures",
            m.meta_sync_failures.clone(),
        );
        r.register(
            "thanos_blocks_meta_sync_duration_seconds",
            "Duration of the blocks metadata synchronization in seconds",
            m.meta_sync_duration.clone(),
        );
        r.register(
            "thanos_blocks_meta_synced",
            "Number of block metadata synced",
            m.meta_synced.clone(),
        );
        m
    }
}
