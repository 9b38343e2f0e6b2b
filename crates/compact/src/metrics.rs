//! The compactor's metrics, with Thanos' names (dashboards and alerts such as
//! `ThanosCompactHalted` and `ThanosCompactHasNotRun` use them).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// `{group="<resolution>@<labels hash>"}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub group: String,
}

/// `{marker, reason}` of `thanos_compact_blocks_marked_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MarkLabels {
    pub marker: String,
    pub reason: String,
}

/// Every compactor metric. Cheap to clone (the metrics share state).
#[derive(Clone, Debug, Default)]
pub struct CompactMetrics {
    pub halted: Gauge,
    pub iterations: Counter,
    pub group_compactions: Family<GroupLabels, Counter>,
    pub group_compaction_failures: Family<GroupLabels, Counter>,
    pub group_vertical_compactions: Family<GroupLabels, Counter>,
    pub downsamples: Family<GroupLabels, Counter>,
    pub downsample_failures: Family<GroupLabels, Counter>,
    pub blocks_marked: Family<MarkLabels, Counter>,
    pub blocks_cleaned: Counter,
    pub block_cleanup_failures: Counter,
    pub partial_uploads_deleted: Counter,
    pub todo_compactions: Family<GroupLabels, Gauge>,
    pub todo_compaction_blocks: Family<GroupLabels, Gauge>,
    pub todo_downsample_blocks: Family<GroupLabels, Gauge>,
    pub todo_deletion_blocks: Gauge,
}

impl CompactMetrics {
    /// Metrics registered in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = CompactMetrics::default();
        registry.register(
            "thanos_compact_halted",
            "Set to 1 if a group halted on a critical error (such as overlapping blocks); other groups keep compacting.",
            m.halted.clone(),
        );
        registry.register(
            "thanos_compact_iterations",
            "Total number of compactor iterations that completed.",
            m.iterations.clone(),
        );
        registry.register(
            "thanos_compact_group_compactions",
            "Total number of group compactions.",
            m.group_compactions.clone(),
        );
        registry.register(
            "thanos_compact_group_compactions_failures",
            "Total number of failed group compactions.",
            m.group_compaction_failures.clone(),
        );
        registry.register(
            "thanos_compact_group_vertical_compactions",
            "Total number of group compactions that merged overlapping blocks.",
            m.group_vertical_compactions.clone(),
        );
        registry.register(
            "thanos_compact_downsample",
            "Total number of downsampled blocks.",
            m.downsamples.clone(),
        );
        registry.register(
            "thanos_compact_downsample_failures",
            "Total number of failed downsamplings.",
            m.downsample_failures.clone(),
        );
        registry.register(
            "thanos_compact_blocks_marked",
            "Total number of blocks marked.",
            m.blocks_marked.clone(),
        );
        registry.register(
            "thanos_compact_blocks_cleaned",
            "Total number of blocks deleted.",
            m.blocks_cleaned.clone(),
        );
        registry.register(
            "thanos_compact_block_cleanup_failures",
            "Failures encountered while deleting blocks.",
            m.block_cleanup_failures.clone(),
        );
        registry.register(
            "thanos_compact_aborted_partial_uploads_deletion_attempts",
            "Total number of started deletions of blocks assumed to be abandoned partial uploads.",
            m.partial_uploads_deleted.clone(),
        );
        registry.register(
            "thanos_compact_todo_compactions",
            "The number of compactions left to do, by group.",
            m.todo_compactions.clone(),
        );
        registry.register(
            "thanos_compact_todo_compaction_blocks",
            "The number of blocks still to be compacted, by group.",
            m.todo_compaction_blocks.clone(),
        );
        registry.register(
            "thanos_compact_todo_downsample_blocks",
            "The number of blocks still to be downsampled, by group.",
            m.todo_downsample_blocks.clone(),
        );
        registry.register(
            "thanos_compact_todo_deletion_blocks",
            "The number of blocks marked for deletion and waiting to be deleted.",
            m.todo_deletion_blocks.clone(),
        );
        m
    }
}
