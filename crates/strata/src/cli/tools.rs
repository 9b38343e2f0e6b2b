//! `strata tools`: operator tools; `tools bucket {ls, inspect, verify, upload-blocks, mark,
//! cleanup, retention, downsample, web, replicate}` and `tools rules-check`.

use anyhow::{Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use strata_model::Duration;

use super::common::HttpArgs;
use super::common::{
    BlockId, FlagLabel, GlobalArgs, ObjstoreArgs, SelectorRelabelArgs, TimeRangeArgs, flag_value,
    path_or_content_args,
};
use crate::cmd::{
    tools_bucket, tools_bucket_lifecycle, tools_bucket_replicate, tools_bucket_rewrite,
    tools_rules_check,
};

/// `strata tools`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ToolsArgs {
    #[command(subcommand)]
    pub(crate) command: ToolsCommand,
}

/// Subcommands of `strata tools`.
#[derive(Debug, Clone, Subcommand)]
pub(crate) enum ToolsCommand {
    /// Bucket utility commands.
    Bucket(BucketArgs),
    /// Check if the rule files are valid or not.
    #[command(name = "rules-check")]
    RulesCheck(RulesCheckArgs),
}

/// `strata tools rules-check`.
#[derive(Debug, Clone, Args)]
pub(crate) struct RulesCheckArgs {
    /// The rule files glob to check (repeated).
    #[arg(long = "rules", value_name = "RULES", required = true)]
    pub(crate) rules: Vec<String>,
}

impl ToolsArgs {
    pub(crate) async fn run(self, global: &GlobalArgs) -> Result<()> {
        match self.command {
            ToolsCommand::Bucket(bucket) => bucket.run(global).await,
            ToolsCommand::RulesCheck(args) => tools_rules_check::run(&args.rules),
        }
    }
}

/// The bucket's `--objstore.config-file` / `--objstore.config`, declared on `tools bucket` and
/// accepted after any of its subcommands too (as in Thanos, where they belong to `bucket`).
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct BucketObjstoreArgs {
    /// Path to YAML file that contains object store configuration.
    #[arg(
        id = "objstore.config-file",
        long = "objstore.config-file",
        value_name = "FILE-PATH",
        conflicts_with = "objstore.config",
        global = true
    )]
    pub(crate) file: Option<std::path::PathBuf>,

    /// Alternative to '--objstore.config-file' (mutually exclusive). Content of YAML file that
    /// contains object store configuration.
    #[arg(
        id = "objstore.config",
        long = "objstore.config",
        value_name = "CONTENT",
        global = true
    )]
    pub(crate) content: Option<String>,
}

impl BucketObjstoreArgs {
    fn load_yaml(&self) -> Result<String> {
        ObjstoreArgs {
            file: self.file.clone(),
            content: self.content.clone(),
        }
        .load_yaml()
    }
}

/// `strata tools bucket`.
#[derive(Debug, Clone, Args)]
pub(crate) struct BucketArgs {
    #[command(flatten)]
    pub(crate) objstore: BucketObjstoreArgs,

    #[command(subcommand)]
    pub(crate) command: BucketCommand,
}

/// Subcommands of `strata tools bucket`.
#[derive(Debug, Clone, Subcommand)]
pub(crate) enum BucketCommand {
    /// List all blocks in the bucket.
    Ls(LsArgs),
    /// Inspect all blocks in the bucket in detailed, table-like way.
    Inspect(InspectArgs),
    /// Verify all blocks in the bucket against specified issues.
    Verify(VerifyArgs),
    /// Upload blocks from a local directory to the object storage.
    UploadBlocks(UploadBlocksArgs),
    /// Mark block for deletion or no-compact in a safe way. NOTE: If the compactor is currently
    /// running compacting same block, this operation would be potentially a noop.
    Mark(MarkArgs),
    /// Cleans up all blocks marked for deletion.
    Cleanup(CleanupArgs),
    /// Retention applies retention policies on the given bucket. Please make sure no
    /// compactor is running on the same bucket at the same time.
    Retention(Box<RetentionArgs>),
    /// Continuously downsamples blocks in an object store bucket.
    Downsample(Box<DownsampleArgs>),
    /// Web interface for remote storage bucket.
    Web(Box<WebUiArgs>),
    /// Replicate data from one object storage to another. NOTE: Currently it works only with
    /// Thanos blocks (meta.json has to have Thanos metadata).
    Replicate(Box<ReplicateArgs>),
    /// Rewrite chosen blocks in the bucket, while deleting or modifying series. The resulting
    /// block has a new ULID and modified stats; the source block is left as it is (mark it for
    /// deletion with --delete-blocks). Turn the compactor off while doing this.
    Rewrite(Box<RewriteArgs>),
}

impl BucketArgs {
    pub(crate) async fn run(self, _global: &GlobalArgs) -> Result<()> {
        let bucket = self.objstore.load_yaml()?;
        match self.command {
            BucketCommand::Ls(args) => tools_bucket::ls(&bucket, &args).await,
            BucketCommand::Inspect(args) => tools_bucket::inspect(&bucket, &args).await,
            BucketCommand::Verify(args) => {
                let backup = args
                    .objstore_backup
                    .source()
                    .load()?
                    .filter(|t| !t.trim().is_empty());
                if args.repair() && backup.is_none() {
                    bail!(
                        "--repair needs a backup bucket: give --objstore-backup.config-file or \
                         --objstore-backup.config"
                    );
                }
                tools_bucket::verify(&bucket, backup.as_deref(), &args).await
            }
            BucketCommand::UploadBlocks(args) => tools_bucket::upload_blocks(&bucket, &args).await,
            BucketCommand::Mark(args) => tools_bucket_lifecycle::mark(&bucket, &args).await,
            BucketCommand::Cleanup(args) => tools_bucket_lifecycle::cleanup(&bucket, &args).await,
            BucketCommand::Retention(args) => {
                tools_bucket_lifecycle::retention(&bucket, &args).await
            }
            BucketCommand::Downsample(args) => {
                tools_bucket_lifecycle::downsample(&bucket, &args).await
            }
            BucketCommand::Web(args) => tools_bucket_lifecycle::web(&bucket, &args).await,
            BucketCommand::Replicate(args) => tools_bucket_replicate::run(&bucket, &args).await,
            BucketCommand::Rewrite(args) => tools_bucket_rewrite::run(&bucket, &args).await,
        }
    }
}

// ------------------------------------------------------------------------------------------
// ls
// ------------------------------------------------------------------------------------------

/// `tools bucket ls --output`: `""` (one ULID per line), `json` or `wide`.
///
/// Thanos also accepts a Go template here; Strata does not, and says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum LsOutput {
    #[default]
    Default,
    Json,
    Wide,
}

impl std::str::FromStr for LsOutput {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" => Ok(LsOutput::Default),
            "json" => Ok(LsOutput::Json),
            "wide" => Ok(LsOutput::Wide),
            _ => Err(format!(
                "unsupported output format {s:?} (possible values: \"\", json, wide; Go templates \
                 are not supported)"
            )),
        }
    }
}

impl std::fmt::Display for LsOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LsOutput::Default => "",
            LsOutput::Json => "json",
            LsOutput::Wide => "wide",
        })
    }
}

/// Flags of `strata tools bucket ls`.
#[derive(Debug, Clone, Args)]
pub(crate) struct LsArgs {
    /// Optional format in which to print each block's information: json or wide.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "FORMAT",
        default_value = ""
    )]
    pub(crate) output: LsOutput,

    /// Exclude blocks marked for deletion.
    #[arg(long = "exclude-delete", overrides_with = "no_exclude_delete")]
    exclude_delete: bool,
    #[arg(
        long = "no-exclude-delete",
        overrides_with = "exclude_delete",
        hide = true
    )]
    no_exclude_delete: bool,

    #[command(flatten)]
    pub(crate) selector_relabel: SelectorRelabelArgs,

    #[command(flatten)]
    pub(crate) time_range: TimeRangeArgs,

    /// Timeout to download metadata from remote storage.
    #[arg(long = "timeout", value_name = "DURATION", default_value = "5m")]
    pub(crate) timeout: Duration,
}

impl LsArgs {
    pub(crate) fn exclude_delete(&self) -> bool {
        flag_value(self.exclude_delete, self.no_exclude_delete, false)
    }
}

// ------------------------------------------------------------------------------------------
// inspect
// ------------------------------------------------------------------------------------------

/// Columns of `tools bucket inspect`, usable with `--sort-by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum InspectColumn {
    #[value(name = "ULID")]
    Ulid,
    #[value(name = "FROM")]
    From,
    #[value(name = "UNTIL")]
    Until,
    #[value(name = "RANGE")]
    Range,
    #[value(name = "UNTIL-DOWN")]
    UntilDown,
    #[value(name = "#SERIES")]
    Series,
    #[value(name = "#SAMPLES")]
    Samples,
    #[value(name = "#CHUNKS")]
    Chunks,
    #[value(name = "COMP-LEVEL")]
    CompLevel,
    #[value(name = "COMP-FAILED")]
    CompFailed,
    #[value(name = "LABELS")]
    Labels,
    #[value(name = "RESOLUTION")]
    Resolution,
    #[value(name = "SOURCE")]
    Source,
}

/// `tools bucket inspect --output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum InspectOutput {
    Table,
    Tsv,
    Csv,
    /// Strata extension: one JSON document.
    Json,
}

/// Flags of `strata tools bucket inspect`.
#[derive(Debug, Clone, Args)]
pub(crate) struct InspectArgs {
    /// Selects blocks based on label, e.g. '-l key1="value1" -l key2="value2"'. All key value
    /// pairs must match.
    #[arg(short = 'l', long = "selector", value_name = "NAME=\"VALUE\"")]
    pub(crate) selector: Vec<FlagLabel>,

    /// Sort by columns (repeatable): rows equal in the first column are sorted by the next.
    #[arg(
        long = "sort-by",
        value_enum,
        value_name = "COLUMN",
        default_values_t = [InspectColumn::From, InspectColumn::Until]
    )]
    pub(crate) sort_by: Vec<InspectColumn>,

    /// Timeout to download metadata from remote storage.
    #[arg(long = "timeout", value_name = "DURATION", default_value = "5m")]
    pub(crate) timeout: Duration,

    /// Output format for result.
    #[arg(long = "output", value_enum, default_value_t = InspectOutput::Table)]
    pub(crate) output: InspectOutput,
}

// ------------------------------------------------------------------------------------------
// verify
// ------------------------------------------------------------------------------------------

/// Issues `tools bucket verify` can look for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum VerifyIssue {
    /// Overlapping blocks in one stream (verify only).
    #[value(name = "overlapped_blocks")]
    OverlappedBlocks,
    /// Known index problems (verify and repair).
    #[value(name = "index_known_issues")]
    IndexKnownIssues,
    /// Blocks compacted twice (verify and repair).
    #[value(name = "duplicated_compaction")]
    DuplicatedCompaction,
}

path_or_content_args!(
    /// `--objstore-backup.config-file` / `--objstore-backup.config`.
    BackupObjstoreArgs,
    "objstore-backup.config",
    "YAML file that contains object store-backup configuration. Used for repair logic to backup \
     blocks before removal."
);

/// Flags of `strata tools bucket verify`.
#[derive(Debug, Clone, Args)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    pub(crate) objstore_backup: BackupObjstoreArgs,

    /// Attempt to repair blocks for which issues were detected.
    #[arg(short = 'r', long = "repair", overrides_with = "no_repair")]
    repair: bool,
    #[arg(long = "no-repair", overrides_with = "repair", hide = true)]
    no_repair: bool,

    /// Issues to verify (and optionally repair), repeatable.
    #[arg(
        short = 'i',
        long = "issues",
        value_enum,
        value_name = "ISSUE",
        default_values_t = [VerifyIssue::IndexKnownIssues, VerifyIssue::OverlappedBlocks]
    )]
    pub(crate) issues: Vec<VerifyIssue>,

    /// Block IDs to verify (and optionally repair) only. If none is specified, all blocks will
    /// be verified. Repeated field.
    #[arg(long = "id", value_name = "ULID")]
    pub(crate) ids: Vec<BlockId>,

    /// Duration after which blocks marked for deletion would be deleted permanently from
    /// source bucket by compactor component. If 0, blocks are deleted straight away.
    #[arg(long = "delete-delay", value_name = "DURATION", default_value = "0s")]
    pub(crate) delete_delay: Duration,
}

impl VerifyArgs {
    pub(crate) fn repair(&self) -> bool {
        flag_value(self.repair, self.no_repair, false)
    }
}

// ------------------------------------------------------------------------------------------
// upload-blocks
// ------------------------------------------------------------------------------------------

/// Flags of `strata tools bucket upload-blocks`.
#[derive(Debug, Clone, Args)]
pub(crate) struct UploadBlocksArgs {
    /// Path to the directory containing blocks to upload.
    #[arg(long = "path", value_name = "DIR", default_value = "./data")]
    pub(crate) path: std::path::PathBuf,

    /// External labels to add to the uploaded blocks (repeated), name="value".
    #[arg(long = "label", value_name = "NAME=\"VALUE\"")]
    pub(crate) labels: Vec<FlagLabel>,

    /// If true shipper will try to upload compacted blocks as well.
    #[arg(
        long = "shipper.upload-compacted",
        overrides_with = "no_shipper_upload_compacted"
    )]
    shipper_upload_compacted: bool,
    #[arg(
        long = "no-shipper.upload-compacted",
        overrides_with = "shipper_upload_compacted",
        hide = true
    )]
    no_shipper_upload_compacted: bool,

    /// Number of goroutines to use when uploading block files to object storage.
    #[arg(
        long = "shipper.upload-concurrency",
        value_name = "N",
        default_value_t = 5
    )]
    pub(crate) shipper_upload_concurrency: usize,
}

impl UploadBlocksArgs {
    pub(crate) fn shipper_upload_compacted(&self) -> bool {
        flag_value(
            self.shipper_upload_compacted,
            self.no_shipper_upload_compacted,
            false,
        )
    }
}

// ------------------------------------------------------------------------------------------
// mark, cleanup, retention, downsample
// ------------------------------------------------------------------------------------------

/// `tools bucket mark --marker`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum MarkerKind {
    #[value(name = "deletion-mark.json")]
    Deletion,
    #[value(name = "no-compact-mark.json")]
    NoCompact,
    #[value(name = "no-downsample-mark.json")]
    NoDownsample,
}

/// Flags of `strata tools bucket mark`.
#[derive(Debug, Clone, Args)]
pub(crate) struct MarkArgs {
    /// ID (ULID) of the blocks to be marked (repeated flag).
    #[arg(long = "id", value_name = "ULID", required = true)]
    pub(crate) ids: Vec<BlockId>,

    /// Marker to be put.
    #[arg(long = "marker", value_enum, value_name = "MARKER", required = true)]
    pub(crate) marker: MarkerKind,

    /// Human readable details to be put into marker.
    #[arg(long = "details", value_name = "DETAILS", default_value = "")]
    pub(crate) details: String,

    /// Remove the marker.
    #[arg(long = "remove", overrides_with = "no_remove")]
    remove: bool,
    #[arg(long = "no-remove", overrides_with = "remove", hide = true)]
    no_remove: bool,
}

impl MarkArgs {
    pub(crate) fn remove(&self) -> bool {
        flag_value(self.remove, self.no_remove, false)
    }
}

/// Flags of `strata tools bucket cleanup`.
#[derive(Debug, Clone, Args)]
pub(crate) struct CleanupArgs {
    /// Time before a block marked for deletion is deleted from bucket.
    #[arg(long = "delete-delay", value_name = "DURATION", default_value = "48h")]
    pub(crate) delete_delay: Duration,

    /// Minimum age of fresh (non-compacted) blocks before they are being processed. Malformed
    /// blocks older than the maximum of consistency-delay and 48h0m0s will be removed.
    #[arg(
        long = "consistency-delay",
        value_name = "DURATION",
        default_value = "30m"
    )]
    pub(crate) consistency_delay: Duration,

    /// Number of goroutines to use when syncing block metadata from object storage.
    #[arg(
        long = "block-sync-concurrency",
        value_name = "N",
        default_value_t = 20
    )]
    pub(crate) block_sync_concurrency: usize,

    #[command(flatten)]
    pub(crate) selector_relabel: SelectorRelabelArgs,
}

/// Flags of `strata tools bucket retention`.
#[derive(Debug, Clone, Args)]
pub(crate) struct RetentionArgs {
    #[command(flatten)]
    pub(crate) cleanup: CleanupArgs,

    /// Label to treat as a replica indicator of blocks that can be deduplicated (repeated
    /// flag).
    #[arg(
        long = "deduplication.replica-label",
        value_name = "LABEL",
        value_delimiter = ','
    )]
    pub(crate) dedup_replica_labels: Vec<String>,

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
}

/// Flags of `strata tools bucket downsample`.
#[derive(Debug, Clone, Args)]
pub(crate) struct DownsampleArgs {
    #[command(flatten)]
    pub(crate) http: HttpArgs,

    /// Wait interval between downsample runs.
    #[arg(long = "wait-interval", value_name = "DURATION", default_value = "5m")]
    pub(crate) wait_interval: Duration,

    /// Number of goroutines to use when downsampling blocks.
    #[arg(long = "downsample.concurrency", value_name = "N", default_value_t = 1)]
    pub(crate) downsample_concurrency: usize,

    /// Number of goroutines to use when fetching/uploading block files from object storage.
    #[arg(
        long = "block-files-concurrency",
        value_name = "N",
        default_value_t = 1
    )]
    pub(crate) block_files_concurrency: usize,

    /// Data directory in which to cache blocks and process downsamplings.
    #[arg(long = "data-dir", value_name = "DIR", default_value = "./data")]
    pub(crate) data_dir: String,

    /// Hash function for the hashes of produced files ("" for none, or "SHA256").
    #[arg(long = "hash-func", value_name = "FUNC", default_value = "")]
    pub(crate) hash_func: super::common::HashFunc,
}

/// Flags of `strata tools bucket web`.
#[derive(Debug, Clone, Args)]
pub(crate) struct WebUiArgs {
    #[command(flatten)]
    pub(crate) http: HttpArgs,

    #[command(flatten)]
    pub(crate) web: super::common::WebArgs,

    /// Refresh interval to download metadata from remote storage.
    #[arg(long = "refresh", value_name = "DURATION", default_value = "30m")]
    pub(crate) refresh: Duration,

    /// Timeout to download metadata from remote storage.
    #[arg(long = "timeout", value_name = "DURATION", default_value = "5m")]
    pub(crate) timeout: Duration,

    /// External block label to use as group title.
    #[arg(long = "label", value_name = "LABEL")]
    pub(crate) label: Option<String>,

    #[command(flatten)]
    pub(crate) admin: super::common::AdminOperationsArgs,

    /// Only the blocks overlapping this range are shown.
    #[command(flatten)]
    pub(crate) time_range: super::common::TimeRangeArgs,

    #[command(flatten)]
    pub(crate) selector_relabel: SelectorRelabelArgs,
}

path_or_content_args!(
    /// `--objstore-to.config-file` / `--objstore-to.config` of `tools bucket replicate`.
    ObjstoreToArgs,
    "objstore-to.config",
    "YAML file that contains object store-to configuration. See format details: \
     https://thanos.io/tip/thanos/storage.md/#configuration The object storage which replicate \
     data to."
);

/// Flags of `strata tools bucket replicate`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ReplicateArgs {
    #[command(flatten)]
    pub(crate) http: HttpArgs,

    #[command(flatten)]
    pub(crate) objstore_to: ObjstoreToArgs,

    /// Only blocks with these resolutions will be replicated. Repeated flag.
    #[arg(
        long = "resolution",
        value_name = "RESOLUTION",
        default_values_t = [Duration::ZERO, Duration::from_mins(5), Duration::from_hours(1)]
    )]
    pub(crate) resolution: Vec<Duration>,

    /// Only blocks with at least this compaction level will be replicated.
    #[arg(long = "compaction-min", value_name = "LEVEL", default_value_t = 1)]
    pub(crate) compaction_min: u32,

    /// Only blocks up to a maximum of this compaction level will be replicated.
    #[arg(long = "compaction-max", value_name = "LEVEL", default_value_t = 4)]
    pub(crate) compaction_max: u32,

    /// Only blocks with these compaction levels will be replicated. Repeated flag. Overrides
    /// compaction-min and compaction-max if set.
    #[arg(long = "compaction", value_name = "LEVEL")]
    pub(crate) compaction: Vec<u32>,

    /// Only blocks whose external labels exactly match this matcher will be replicated. All
    /// Prometheus matchers are supported, including =, !=, =~ and !~.
    #[arg(long = "matcher", value_name = "MATCHER", default_value = "")]
    pub(crate) matcher: String,

    /// Run replication only one time, then exit.
    #[arg(long = "single-run", overrides_with = "no_single_run")]
    single_run: bool,
    #[arg(long = "no-single-run", overrides_with = "single_run", hide = true)]
    no_single_run: bool,

    /// Only blocks overlapping this range are replicated.
    #[command(flatten)]
    pub(crate) time_range: TimeRangeArgs,

    /// Block to be replicated to the destination bucket. IDs will be used to match blocks and
    /// other matchers will be ignored. When specified, this command will be run only once after
    /// successful replication. Repeated field
    #[arg(long = "id", value_name = "ID")]
    pub(crate) ids: Vec<String>,

    /// If true, blocks marked for deletion are skipped.
    #[arg(
        long = "ignore-marked-for-deletion",
        overrides_with = "no_ignore_marked_for_deletion"
    )]
    ignore_marked_for_deletion: bool,
    #[arg(
        long = "no-ignore-marked-for-deletion",
        overrides_with = "ignore_marked_for_deletion",
        hide = true
    )]
    no_ignore_marked_for_deletion: bool,
}

impl ReplicateArgs {
    pub(crate) fn single_run(&self) -> bool {
        flag_value(self.single_run, self.no_single_run, false)
    }

    pub(crate) fn ignore_marked_for_deletion(&self) -> bool {
        flag_value(
            self.ignore_marked_for_deletion,
            self.no_ignore_marked_for_deletion,
            false,
        )
    }
}

path_or_content_args!(
    /// `--rewrite.to-delete-config-file` / `--rewrite.to-delete-config`.
    ToDeleteArgs,
    "rewrite.to-delete-config",
    "YAML file that contains []metadata.DeletionRequest that will be applied to blocks"
);

path_or_content_args!(
    /// `--rewrite.to-relabel-config-file` / `--rewrite.to-relabel-config`.
    ToRelabelArgs,
    "rewrite.to-relabel-config",
    "YAML file that contains relabel configs that will be applied to blocks"
);

/// Flags of `strata tools bucket rewrite`.
#[derive(Debug, Clone, Args)]
pub(crate) struct RewriteArgs {
    /// ID (ULID) of the blocks for rewrite (repeated flag).
    #[arg(long = "id", value_name = "ULID", required = true)]
    pub(crate) ids: Vec<BlockId>,

    /// Working directory for temporary files (default: thanos-rewrite in the system's temporary
    /// directory).
    #[arg(long = "tmp.dir", value_name = "DIR")]
    pub(crate) tmp_dir: Option<std::path::PathBuf>,

    /// Hash function for the hashes of produced files ("" for none, or "SHA256").
    #[arg(long = "hash-func", value_name = "FUNC", default_value = "")]
    pub(crate) hash_func: super::common::HashFunc,

    /// Prints the series changes instead of doing them. Defaults to true, for the user to
    /// double check; pass --no-dry-run to rewrite.
    #[arg(long = "dry-run", overrides_with = "no_dry_run")]
    dry_run: bool,
    #[arg(long = "no-dry-run", overrides_with = "dry_run")]
    no_dry_run: bool,

    #[command(flatten)]
    pub(crate) to_delete: ToDeleteArgs,

    #[command(flatten)]
    pub(crate) to_relabel: ToRelabelArgs,

    /// Write every modification to change.log in the new block's directory under --tmp.dir.
    #[arg(long = "rewrite.add-change-log", overrides_with = "no_add_change_log")]
    add_change_log: bool,
    #[arg(
        long = "no-rewrite.add-change-log",
        overrides_with = "add_change_log",
        hide = true
    )]
    no_add_change_log: bool,

    /// The blocks are Prometheus' own: external labels are not required on upload.
    #[arg(long = "prom-blocks", overrides_with = "no_prom_blocks")]
    prom_blocks: bool,
    #[arg(long = "no-prom-blocks", overrides_with = "prom_blocks", hide = true)]
    no_prom_blocks: bool,

    /// Mark the source blocks for deletion after rewriting them (not in a dry run).
    #[arg(long = "delete-blocks", overrides_with = "no_delete_blocks")]
    delete_blocks: bool,
    #[arg(
        long = "no-delete-blocks",
        overrides_with = "delete_blocks",
        hide = true
    )]
    no_delete_blocks: bool,
}

impl RewriteArgs {
    pub(crate) fn dry_run(&self) -> bool {
        flag_value(self.dry_run, self.no_dry_run, true)
    }

    pub(crate) fn add_change_log(&self) -> bool {
        flag_value(self.add_change_log, self.no_add_change_log, true)
    }

    pub(crate) fn prom_blocks(&self) -> bool {
        flag_value(self.prom_blocks, self.no_prom_blocks, false)
    }

    pub(crate) fn delete_blocks(&self) -> bool {
        flag_value(self.delete_blocks, self.no_delete_blocks, false)
    }
}
