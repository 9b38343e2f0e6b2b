//! `strata compact`: compaction, downsampling, retention and deletion of bucket blocks.

use std::fmt;
use std::str::FromStr;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use strata_compact::compactor::{BlockSelector, CompactorConfig};
use strata_model::{ByteSize, Duration};

use super::common::{
    BlockDiscoveryStrategy, BlockViewerArgs, GlobalArgs, HashFunc, HttpArgs, ObjstoreArgs,
    SelectorRelabelArgs, TimeRangeArgs, accepted_without_effect, flag_value,
};

/// Default of `--compact.progress-interval` (as in the flag's declaration).
const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_mins(5);
/// Default of `--compact.block-max-index-size` (as in the flag's declaration).
const DEFAULT_BLOCK_MAX_INDEX_SIZE: ByteSize = ByteSize::gib(64);

/// The block selector of `--selector.relabel-config[-file]`, if rules are given.
pub(crate) fn selector(args: &SelectorRelabelArgs) -> Result<Option<BlockSelector>> {
    let Some(text) = args.source().load()? else {
        return Ok(None);
    };
    let rules = strata_block::relabel::parse_relabel_configs(&text)
        .context("parsing --selector.relabel-config")?;
    Ok((!rules.is_empty()).then(|| BlockSelector::from_relabel(rules)))
}

/// `--deduplication.func` of the compactor: `""` (1:1 merge) or `penalty`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum CompactDedupFunc {
    /// Merge identical samples one to one (fits Receive replication).
    #[default]
    OneToOne,
    /// The querier's penalty algorithm (for HA Prometheus pairs).
    Penalty,
}

impl FromStr for CompactDedupFunc {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" => Ok(CompactDedupFunc::OneToOne),
            "penalty" => Ok(CompactDedupFunc::Penalty),
            _ => Err(format!(
                "unknown deduplication function {s:?} (possible values: \"\", penalty)"
            )),
        }
    }
}

impl fmt::Display for CompactDedupFunc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CompactDedupFunc::OneToOne => "",
            CompactDedupFunc::Penalty => "penalty",
        })
    }
}

/// Flags of `strata compact` (Thanos `cmd/thanos/compact.go`).
#[derive(Debug, Clone, Args)]
pub(crate) struct CompactArgs {
    #[command(flatten)]
    pub(crate) http: HttpArgs,

    /// Data directory in which to cache blocks and process compactions.
    #[arg(long = "data-dir", value_name = "DIR", default_value = "./data")]
    pub(crate) data_dir: String,

    #[command(flatten)]
    pub(crate) objstore: ObjstoreArgs,

    /// Minimum age of fresh (non-compacted) blocks before they are being processed. Malformed
    /// blocks older than the maximum of consistency-delay and 48h0m0s will be removed.
    #[arg(
        long = "consistency-delay",
        value_name = "DURATION",
        default_value = "30m"
    )]
    pub(crate) consistency_delay: Duration,

    /// How long to retain raw samples in bucket. Setting this to 0d will retain samples of this
    /// resolution forever.
    #[arg(
        long = "retention.resolution-raw",
        value_name = "DURATION",
        default_value = "0d"
    )]
    pub(crate) retention_raw: Duration,

    /// How long to retain samples of resolution 1 (5 minutes) in bucket. Setting this to 0d
    /// will retain samples of this resolution forever.
    #[arg(
        long = "retention.resolution-5m",
        value_name = "DURATION",
        default_value = "0d"
    )]
    pub(crate) retention_5m: Duration,

    /// How long to retain samples of resolution 2 (1 hour) in bucket. Setting this to 0d will
    /// retain samples of this resolution forever.
    #[arg(
        long = "retention.resolution-1h",
        value_name = "DURATION",
        default_value = "0d"
    )]
    pub(crate) retention_1h: Duration,

    /// Do not exit after all compactions have been processed and wait for new work.
    #[arg(short = 'w', long = "wait", overrides_with = "no_wait")]
    wait: bool,
    #[arg(long = "no-wait", overrides_with = "wait", hide = true)]
    no_wait: bool,

    /// Wait interval between consecutive compaction runs and bucket refreshes. Only works when
    /// --wait flag specified.
    #[arg(long = "wait-interval", value_name = "DURATION", default_value = "5m")]
    pub(crate) wait_interval: Duration,

    /// Disables downsampling. This is not recommended as querying long time ranges without
    /// non-downsampled data is not efficient.
    #[arg(
        long = "downsampling.disable",
        overrides_with = "no_downsampling_disable"
    )]
    downsampling_disable: bool,
    #[arg(
        long = "no-downsampling.disable",
        overrides_with = "downsampling_disable",
        hide = true
    )]
    no_downsampling_disable: bool,

    /// How to discover blocks in the bucket: one list call per block directory (concurrent) or
    /// a single recursive iteration (recursive).
    #[arg(
        long = "block-discovery-strategy",
        value_enum,
        default_value_t = BlockDiscoveryStrategy::Concurrent
    )]
    pub(crate) block_discovery_strategy: BlockDiscoveryStrategy,

    /// Number of goroutines to use when fetching block metadata from object storage.
    #[arg(
        long = "block-meta-fetch-concurrency",
        value_name = "N",
        default_value_t = 32
    )]
    pub(crate) block_meta_fetch_concurrency: usize,

    /// Number of goroutines to use when fetching/uploading block files from object storage.
    #[arg(
        long = "block-files-concurrency",
        value_name = "N",
        default_value_t = 1
    )]
    pub(crate) block_files_concurrency: usize,

    /// Repeat interval for syncing the blocks between local and remote view for /global Block
    /// Viewer UI.
    #[arg(
        long = "block-viewer.global.sync-block-interval",
        value_name = "DURATION",
        default_value = "1m"
    )]
    pub(crate) block_viewer_sync_interval: Duration,

    /// Maximum time for syncing the blocks between local and remote view for /global Block
    /// Viewer UI.
    #[arg(
        long = "block-viewer.global.sync-block-timeout",
        value_name = "DURATION",
        default_value = "5m"
    )]
    pub(crate) block_viewer_sync_timeout: Duration,

    /// How often we should clean up partially uploaded blocks and blocks with deletion mark in
    /// the background when --wait has been enabled. 0s disables it.
    #[arg(
        long = "compact.cleanup-interval",
        value_name = "DURATION",
        default_value = "5m"
    )]
    pub(crate) cleanup_interval: Duration,

    /// Frequency of calculating the compaction progress in the background when --wait has been
    /// enabled. 0s disables it.
    #[arg(
        long = "compact.progress-interval",
        value_name = "DURATION",
        default_value = "5m"
    )]
    pub(crate) progress_interval: Duration,

    /// Number of goroutines to use when compacting groups.
    #[arg(long = "compact.concurrency", value_name = "N", default_value_t = 1)]
    pub(crate) concurrency: usize,

    /// Number of goroutines to use when download block during compaction.
    #[arg(
        long = "compact.blocks-fetch-concurrency",
        value_name = "N",
        default_value_t = 1
    )]
    pub(crate) blocks_fetch_concurrency: usize,

    /// Number of goroutines to use when downsampling blocks.
    #[arg(long = "downsample.concurrency", value_name = "N", default_value_t = 1)]
    pub(crate) downsample_concurrency: usize,

    /// Time before a block marked for deletion is deleted from bucket. If 0, blocks are deleted
    /// straight away (which can break queries still using them).
    #[arg(long = "delete-delay", value_name = "DURATION", default_value = "48h")]
    pub(crate) delete_delay: Duration,

    /// Experimental. Deduplication algorithm for merging overlapping blocks: "" (1:1 merge of
    /// identical samples) or "penalty". Needs --deduplication.replica-label.
    #[arg(long = "deduplication.func", value_name = "FUNC", default_value = "")]
    pub(crate) dedup_func: CompactDedupFunc,

    /// Experimental. Label to treat as a replica indicator of blocks that can be deduplicated
    /// (repeatable, also comma-separated). This merges replica blocks into one, irreversibly.
    #[arg(
        long = "deduplication.replica-label",
        value_name = "LABEL",
        value_delimiter = ','
    )]
    pub(crate) dedup_replica_labels: Vec<String>,

    /// Hash function for the hashes of produced files ("" for none, or "SHA256").
    #[arg(long = "hash-func", value_name = "FUNC", default_value = "")]
    pub(crate) hash_func: HashFunc,

    #[command(flatten)]
    pub(crate) time_range: TimeRangeArgs,

    #[command(flatten)]
    pub(crate) selector_relabel: SelectorRelabelArgs,

    #[command(flatten)]
    pub(crate) block_viewer: BlockViewerArgs,

    /// Compaction and downsampling index verification ignores out-of-order label names
    /// (hidden in Thanos).
    #[arg(
        long = "debug.accept-malformed-index",
        overrides_with = "no_accept_malformed_index",
        hide = true
    )]
    accept_malformed_index: bool,
    #[arg(
        long = "no-debug.accept-malformed-index",
        overrides_with = "accept_malformed_index",
        hide = true
    )]
    no_accept_malformed_index: bool,

    /// Halt (keep running, doing nothing) on critical errors such as overlapping blocks
    /// instead of exiting; --no-debug.halt-on-error makes the compactor exit (hidden in
    /// Thanos).
    #[arg(
        long = "debug.halt-on-error",
        overrides_with = "no_halt_on_error",
        hide = true
    )]
    halt_on_error: bool,
    #[arg(
        long = "no-debug.halt-on-error",
        overrides_with = "halt_on_error",
        hide = true
    )]
    no_halt_on_error: bool,

    /// Maximum compaction level, 1 to 4 (hidden in Thanos).
    #[arg(
        long = "debug.max-compaction-level",
        value_name = "N",
        default_value_t = 4,
        hide = true
    )]
    pub(crate) max_compaction_level: u32,

    /// Enable vertical compaction of overlapping blocks; implied by replica labels (hidden in
    /// Thanos).
    #[arg(
        long = "compact.enable-vertical-compaction",
        overrides_with = "no_enable_vertical_compaction",
        hide = true
    )]
    enable_vertical_compaction: bool,
    #[arg(
        long = "no-compact.enable-vertical-compaction",
        overrides_with = "enable_vertical_compaction",
        hide = true
    )]
    no_enable_vertical_compaction: bool,

    /// Mark blocks with out-of-order chunks for no compaction instead of halting (hidden in
    /// Thanos).
    #[arg(
        long = "compact.skip-block-with-out-of-order-chunks",
        overrides_with = "no_skip_block_with_out_of_order_chunks",
        hide = true
    )]
    skip_block_with_out_of_order_chunks: bool,
    #[arg(
        long = "no-compact.skip-block-with-out-of-order-chunks",
        overrides_with = "skip_block_with_out_of_order_chunks",
        hide = true
    )]
    no_skip_block_with_out_of_order_chunks: bool,

    /// Maximum index size of a compacted block; the largest source of a too big compaction is
    /// marked no-compact instead (hidden in Thanos).
    #[arg(
        long = "compact.block-max-index-size",
        value_name = "BYTES",
        default_value = "64GB",
        hide = true
    )]
    pub(crate) block_max_index_size: ByteSize,
}

impl CompactArgs {
    pub(crate) fn wait(&self) -> bool {
        flag_value(self.wait, self.no_wait, false)
    }

    pub(crate) fn downsampling_disable(&self) -> bool {
        flag_value(
            self.downsampling_disable,
            self.no_downsampling_disable,
            false,
        )
    }

    /// Default true, as in Thanos.
    pub(crate) fn halt_on_error(&self) -> bool {
        flag_value(self.halt_on_error, self.no_halt_on_error, true)
    }

    pub(crate) fn enable_vertical_compaction(&self) -> bool {
        flag_value(
            self.enable_vertical_compaction,
            self.no_enable_vertical_compaction,
            false,
        )
    }

    pub(crate) fn skip_block_with_out_of_order_chunks(&self) -> bool {
        flag_value(
            self.skip_block_with_out_of_order_chunks,
            self.no_skip_block_with_out_of_order_chunks,
            false,
        )
    }

    /// `--deduplication.replica-label` values, empties removed, sorted and deduplicated.
    pub(crate) fn dedup_replica_labels(&self) -> Vec<String> {
        let mut labels: Vec<String> = self
            .dedup_replica_labels
            .iter()
            .filter(|l| !l.is_empty())
            .cloned()
            .collect();
        labels.sort();
        labels.dedup();
        labels
    }

    /// The compactor's settings from the flags; refuses flag values Strata cannot honour yet
    /// rather than ignoring them.
    pub(crate) fn compactor_config(&self) -> Result<CompactorConfig> {
        if !(1..=4).contains(&self.max_compaction_level) {
            bail!(
                "--debug.max-compaction-level={} is out of range: it must be between 1 and 4",
                self.max_compaction_level
            );
        }
        let mut cfg = CompactorConfig::new(PathBuf::from(&self.data_dir));
        cfg.consistency_delay_ms = self.consistency_delay.as_millis_i64();
        cfg.delete_delay_ms = self.delete_delay.as_millis_i64();
        cfg.hash_func = self.hash_func;
        cfg.block_files_concurrency = self.block_files_concurrency.max(1);
        cfg.blocks_fetch_concurrency = self.blocks_fetch_concurrency.max(1);
        cfg.retention_raw_ms = self.retention_raw.as_millis_i64();
        cfg.retention_5m_ms = self.retention_5m.as_millis_i64();
        cfg.retention_1h_ms = self.retention_1h.as_millis_i64();
        cfg.downsampling = !self.downsampling_disable();
        cfg.replica_labels = self.dedup_replica_labels();
        cfg.vertical_compaction =
            self.enable_vertical_compaction() || !cfg.replica_labels.is_empty();
        cfg.dedup = match self.dedup_func {
            CompactDedupFunc::OneToOne => strata_dedup::Algorithm::Chain,
            CompactDedupFunc::Penalty => strata_dedup::Algorithm::Penalty,
        };
        if cfg.dedup == strata_dedup::Algorithm::Penalty && cfg.replica_labels.is_empty() {
            tracing::warn!(
                "--deduplication.func=penalty only matters with --deduplication.replica-label: without replica labels there are no replicas to deduplicate"
            );
        }
        cfg.ranges = strata_compact::planner::DEFAULT_RANGES_MS
            [..=self.max_compaction_level as usize]
            .to_vec();
        cfg.fetch_concurrency = self.block_meta_fetch_concurrency.max(1);
        cfg.compact_concurrency = self.concurrency.max(1);
        cfg.downsample_concurrency = self.downsample_concurrency.max(1);
        cfg.selector = selector(&self.selector_relabel)?;
        cfg.min_time = self.time_range.min_time;
        cfg.max_time = self.time_range.max_time;
        Ok(cfg)
    }

    /// Logs each flag given a value the compactor does not act on, with the reason.
    fn log_flags_without_effect(&self) {
        if self.block_discovery_strategy != BlockDiscoveryStrategy::Concurrent {
            accepted_without_effect(
                "--block-discovery-strategy",
                "blocks are found with one listing of the bucket's top level and a meta.json \
                 read per block, whatever the strategy",
            );
        }
        if self.progress_interval != DEFAULT_PROGRESS_INTERVAL {
            accepted_without_effect(
                "--compact.progress-interval",
                "the progress metrics (thanos_compact_todo_*) are computed at the end of every \
                 iteration instead",
            );
        }
        if self.block_max_index_size != DEFAULT_BLOCK_MAX_INDEX_SIZE {
            accepted_without_effect(
                "--compact.block-max-index-size",
                "the limit is not enforced: no source block is marked no-compact for it; a \
                 compaction whose index would outgrow the index format's limits fails with an \
                 error instead",
            );
        }
        if self.skip_block_with_out_of_order_chunks() {
            accepted_without_effect(
                "--compact.skip-block-with-out-of-order-chunks",
                "blocks with out-of-order chunks are not skipped or marked no-compact: \
                 compaction sorts each series' chunks and merges overlapping ones (XOR chunks; \
                 overlapping chunks of other encodings fail the group's compaction, retried every \
                 iteration)",
            );
        }
        if flag_value(
            self.accept_malformed_index,
            self.no_accept_malformed_index,
            false,
        ) {
            accepted_without_effect(
                "--debug.accept-malformed-index",
                "the index reader does not check label order, and every index the compactor \
                 writes is sorted",
            );
        }
        crate::cmd::compact::log_web_flags_without_effect(&self.block_viewer.web);
    }

    pub(crate) async fn run(self, _global: &GlobalArgs) -> Result<()> {
        // Before anything else: a bad --http.config fails start-up at once.
        let web_config = self.http.web_config()?;
        let bucket_yaml = self.objstore.load_yaml()?;
        let config = self.compactor_config()?;
        self.log_flags_without_effect();
        if self.retention_raw.as_millis_i64() > 0
            && self.retention_raw.as_millis_i64() < 40 * 3_600_000
            && config.downsampling
        {
            tracing::warn!(
                "--retention.resolution-raw is shorter than 40h: raw blocks may be deleted before they are downsampled"
            );
        }
        crate::cmd::compact::CompactCommand {
            bucket_yaml,
            http_address: self.http.http_address.clone(),
            http_grace_period: self.http.http_grace_period.to_std(),
            web_config,
            config,
            wait: self.wait(),
            wait_interval: std::time::Duration::from_millis(self.wait_interval.as_millis()),
            cleanup_interval: self.cleanup_interval.to_std(),
            halt_on_error: self.halt_on_error(),
            viewer: (!self.block_viewer.web_disable()).then(|| {
                crate::cmd::compact::ViewerSettings {
                    options: crate::cmd::block_viewer::ViewerOptions {
                        title_label: self.block_viewer.bucket_web_label.clone(),
                        admin: !self.block_viewer.disable_admin_operations(),
                        rules: Vec::new(),
                        time_range: None,
                    },
                    route_prefix: self.block_viewer.web.web_route_prefix.clone(),
                    sync_interval: std::time::Duration::from_millis(
                        self.block_viewer_sync_interval.as_millis(),
                    ),
                    sync_timeout: std::time::Duration::from_millis(
                        self.block_viewer_sync_timeout.as_millis(),
                    ),
                }
            }),
        }
        .run()
        .await
    }
}
