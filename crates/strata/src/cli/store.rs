//! `strata store`: the store gateway, a Store API over the blocks in a bucket.

use anyhow::Result;
use clap::{Args, ValueEnum};
use strata_model::{ByteSize, Duration};

use super::common::{
    BlockDiscoveryStrategy, BlockViewerArgs, GlobalArgs, GrpcServerArgs, HttpArgs, ObjstoreArgs,
    RequestLoggingArgs, SelectorRelabelArgs, StoreLimitsArgs, TimeRangeArgs, flag_value,
    path_or_content_args,
};

path_or_content_args!(
    /// `--index-cache.config-file` / `--index-cache.config`.
    IndexCacheConfigArgs,
    "index-cache.config",
    "YAML file that contains index cache configuration (IN-MEMORY, MEMCACHED or REDIS)."
);

path_or_content_args!(
    /// `--objstore-parquet.config-file` / `--objstore-parquet.config`.
    ParquetObjstoreArgs,
    "objstore-parquet.config",
    "YAML file of the object store holding blocks converted to Parquet by thanos-parquet-gateway."
);

path_or_content_args!(
    /// `--store.caching-bucket.config-file` / `--store.caching-bucket.config`.
    CachingBucketConfigArgs,
    "store.caching-bucket.config",
    "YAML that contains configuration for caching bucket."
);

/// `--store.index-header-lazy-download-strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LazyDownloadStrategy {
    /// Build every index-header when its block is loaded.
    Eager,
    /// Build an index-header when a query first needs its block.
    Lazy,
}

/// Flags of `strata store` (Thanos `cmd/thanos/store.go`).
#[derive(Debug, Clone, Args)]
pub(crate) struct StoreArgs {
    #[command(flatten)]
    pub(crate) http: HttpArgs,

    #[command(flatten)]
    pub(crate) grpc: GrpcServerArgs,

    /// Local data directory used for caching purposes (index-header, in-mem cache items and
    /// meta.jsons). If removed, no data will be lost, just store will have to rebuild the
    /// cache. Raw blocks put here are not served.
    #[arg(long = "data-dir", value_name = "DIR", default_value = "./data")]
    pub(crate) data_dir: String,

    /// Cache TSDB index-headers on disk to reduce startup time (--no-cache-index-header to keep
    /// them only in memory).
    #[arg(long = "cache-index-header", overrides_with = "no_cache_index_header")]
    cache_index_header: bool,
    #[arg(
        long = "no-cache-index-header",
        overrides_with = "cache_index_header",
        hide = true
    )]
    no_cache_index_header: bool,

    /// Maximum size of items held in the in-memory index cache. Ignored if
    /// --index-cache.config or --index-cache.config-file is specified.
    #[arg(
        long = "index-cache-size",
        value_name = "BYTES",
        default_value = "250MB"
    )]
    pub(crate) index_cache_size: ByteSize,

    #[command(flatten)]
    pub(crate) index_cache: IndexCacheConfigArgs,

    #[command(flatten)]
    pub(crate) caching_bucket: CachingBucketConfigArgs,

    /// Maximum size of concurrently allocatable bytes reserved strictly to reuse for chunks in
    /// memory.
    #[arg(long = "chunk-pool-size", value_name = "BYTES", default_value = "2GB")]
    pub(crate) chunk_pool_size: ByteSize,

    /// Maximum amount of downloaded (either fetched or touched) bytes in a single
    /// Series/LabelNames/LabelValues call. 0 means no limit.
    #[arg(
        long = "store.grpc.downloaded-bytes-limit",
        value_name = "BYTES",
        default_value = "0"
    )]
    pub(crate) downloaded_bytes_limit: ByteSize,

    /// Maximum number of concurrent Series calls.
    #[arg(
        long = "store.grpc.series-max-concurrency",
        value_name = "N",
        default_value_t = 20
    )]
    pub(crate) series_max_concurrency: usize,

    /// DEPRECATED: use --store.limits.request-samples.
    #[arg(
        long = "store.grpc.series-sample-limit",
        value_name = "N",
        default_value_t = 0
    )]
    pub(crate) series_sample_limit: u64,

    /// DEPRECATED: use --store.limits.request-series.
    #[arg(
        long = "store.grpc.touched-series-limit",
        value_name = "N",
        default_value_t = 0
    )]
    pub(crate) touched_series_limit: u64,

    #[command(flatten)]
    pub(crate) store_limits: StoreLimitsArgs,

    #[command(flatten)]
    pub(crate) objstore: ObjstoreArgs,

    /// Repeat interval for syncing the blocks between local and remote view.
    #[arg(
        long = "sync-block-duration",
        value_name = "DURATION",
        default_value = "15m"
    )]
    pub(crate) sync_block_duration: Duration,

    /// Number of goroutines to use when constructing index-cache.json blocks from object
    /// storage. Must be equal or greater than 1.
    #[arg(
        long = "block-sync-concurrency",
        value_name = "N",
        default_value_t = 20
    )]
    pub(crate) block_sync_concurrency: usize,

    /// Number of goroutines to use when fetching block metadata from object storage.
    #[arg(
        long = "block-meta-fetch-concurrency",
        value_name = "N",
        default_value_t = 32
    )]
    pub(crate) block_meta_fetch_concurrency: usize,

    /// How to discover blocks in the bucket: one list call per block directory (concurrent) or
    /// a single recursive iteration (recursive).
    #[arg(
        long = "block-discovery-strategy",
        value_enum,
        default_value_t = BlockDiscoveryStrategy::Concurrent
    )]
    pub(crate) block_discovery_strategy: BlockDiscoveryStrategy,

    #[command(flatten)]
    pub(crate) time_range: TimeRangeArgs,

    /// Minimum age of all blocks before they are being read. Set it to safe value (e.g 30m) if
    /// your object storage is eventually consistent.
    #[arg(
        long = "consistency-delay",
        value_name = "DURATION",
        default_value = "0s"
    )]
    pub(crate) consistency_delay: Duration,

    /// Duration after which the blocks marked for deletion will be filtered out while fetching
    /// blocks. Should be half of the compactor's --delete-delay.
    #[arg(
        long = "ignore-deletion-marks-delay",
        value_name = "DURATION",
        default_value = "24h"
    )]
    pub(crate) ignore_deletion_marks_delay: Duration,

    #[command(flatten)]
    pub(crate) selector_relabel: SelectorRelabelArgs,

    /// If true, Store Gateway will lazy memory map index-header only once the block is
    /// required by a query.
    #[arg(
        long = "store.enable-index-header-lazy-reader",
        overrides_with = "no_enable_index_header_lazy_reader"
    )]
    enable_index_header_lazy_reader: bool,
    #[arg(
        long = "no-store.enable-index-header-lazy-reader",
        overrides_with = "enable_index_header_lazy_reader",
        hide = true
    )]
    no_enable_index_header_lazy_reader: bool,

    /// If index-header lazy reader is enabled and this idle timeout setting is > 0, memory
    /// map-ed index-headers will be automatically released after 'idle timeout' inactivity.
    #[arg(
        long = "store.index-header-lazy-reader-idle-timeout",
        value_name = "DURATION",
        default_value = "5m",
        hide = true
    )]
    pub(crate) index_header_lazy_reader_idle_timeout: Duration,

    /// How many postings offsets of the index-header are kept in memory (one in N).
    #[arg(
        long = "store.index-header-posting-offsets-in-mem-sampling",
        value_name = "N",
        default_value_t = 32,
        hide = true
    )]
    pub(crate) index_header_posting_offsets_in_mem_sampling: u32,

    /// Estimated max series size when its block's meta.json has no index stats; a series
    /// read past it is fetched again.
    #[arg(
        long = "debug.estimated-max-series-size",
        value_name = "BYTES",
        default_value_t = 64 * 1024,
        hide = true
    )]
    pub(crate) estimated_max_series_size: u64,

    /// Estimated max chunk size when its block's meta.json has no index stats; a chunk read
    /// past it is fetched again.
    #[arg(
        long = "debug.estimated-max-chunk-size",
        value_name = "BYTES",
        default_value_t = 16_000,
        hide = true
    )]
    pub(crate) estimated_max_chunk_size: u64,

    #[command(flatten)]
    pub(crate) objstore_parquet: ParquetObjstoreArgs,

    /// Strategy of how to download index headers lazily: eager downloads them when a block is
    /// loaded, lazy when a query first needs the block.
    #[arg(
        long = "store.index-header-lazy-download-strategy",
        value_enum,
        default_value_t = LazyDownloadStrategy::Eager
    )]
    pub(crate) index_header_lazy_download_strategy: LazyDownloadStrategy,

    /// If true, Store Gateway will estimate postings size and try to lazily expand postings if
    /// it downloads less data than expanding all postings.
    #[arg(
        long = "store.enable-lazy-expanded-postings",
        overrides_with = "no_enable_lazy_expanded_postings"
    )]
    enable_lazy_expanded_postings: bool,
    #[arg(
        long = "no-store.enable-lazy-expanded-postings",
        overrides_with = "enable_lazy_expanded_postings",
        hide = true
    )]
    no_enable_lazy_expanded_postings: bool,

    /// Mark posting group as lazy if it fetches more keys than R * max series the query should
    /// fetch (only with lazy expanded postings).
    #[arg(
        long = "store.posting-group-max-key-series-ratio",
        value_name = "R",
        default_value_t = 100.0
    )]
    pub(crate) posting_group_max_key_series_ratio: f64,

    /// Batch size when fetching series from blocks (hidden in Thanos).
    #[arg(
        long = "debug.series-batch-size",
        value_name = "N",
        default_value_t = 10_000,
        hide = true
    )]
    pub(crate) series_batch_size: usize,

    /// Advertise the pre-0.8 compatibility label set `{@thanos_compatibility_store_type="store"}`
    /// (hidden in Thanos).
    #[arg(
        long = "debug.advertise-compatibility-label",
        overrides_with = "no_advertise_compatibility_label",
        hide = true
    )]
    advertise_compatibility_label: bool,
    #[arg(
        long = "no-debug.advertise-compatibility-label",
        overrides_with = "advertise_compatibility_label",
        hide = true
    )]
    no_advertise_compatibility_label: bool,

    /// Max number of cached matchers items. Using 0 disables caching.
    #[arg(long = "matcher-cache-size", value_name = "N", default_value_t = 0)]
    pub(crate) matcher_cache_size: usize,

    #[command(flatten)]
    pub(crate) block_viewer: BlockViewerArgs,

    #[command(flatten)]
    pub(crate) request_logging: RequestLoggingArgs,
}

impl StoreArgs {
    /// Whether `--[no-]debug.advertise-compatibility-label` was given.
    pub(crate) fn advertise_compatibility_label_given(&self) -> bool {
        self.advertise_compatibility_label || self.no_advertise_compatibility_label
    }

    /// Default true, as in Thanos (`--no-cache-index-header` turns it off).
    pub(crate) fn cache_index_header(&self) -> bool {
        flag_value(self.cache_index_header, self.no_cache_index_header, true)
    }

    pub(crate) fn enable_index_header_lazy_reader(&self) -> bool {
        flag_value(
            self.enable_index_header_lazy_reader,
            self.no_enable_index_header_lazy_reader,
            false,
        )
    }

    pub(crate) fn enable_lazy_expanded_postings(&self) -> bool {
        flag_value(
            self.enable_lazy_expanded_postings,
            self.no_enable_lazy_expanded_postings,
            false,
        )
    }

    pub(crate) async fn run(self, _global: &GlobalArgs) -> Result<()> {
        crate::cmd::store::run(self).await
    }
}
