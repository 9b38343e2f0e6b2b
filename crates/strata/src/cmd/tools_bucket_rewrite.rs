//! `strata tools bucket rewrite`: each `--id` block downloaded, rewritten without the series or
//! samples `--rewrite.to-delete-config` names and with `--rewrite.to-relabel-config` applied
//! (`strata_compact::rewrite`), and uploaded as a new block; with `--delete-blocks` the source
//! is then marked for deletion. A dry run (the default, as in Thanos) prints the changes to
//! stderr and writes nothing.

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use strata_block::fetch::fetch_meta;
use strata_block::markers::mark_for_deletion;
use strata_block::transfer::{UploadOptions, download_block, upload_block};
use strata_compact::rewrite::{Deletion, RewriteSpec, SOURCE_REWRITE, rewrite_block};
use strata_objstore::BucketMetrics;
use strata_tsdb::block::Block;
use ulid::Ulid;

use crate::cli::tools::RewriteArgs;
use crate::cmd::tools_bucket_lifecycle::open_bucket;
use crate::cmd::tools_bucket_replicate::parse_matchers;

/// One entry of `--rewrite.to-delete-config` (Thanos' `metadata.DeletionRequest`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeletion {
    matchers: String,
    #[serde(default)]
    intervals: Vec<RawInterval>,
    #[serde(default)]
    request_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterval {
    mint: i64,
    maxt: i64,
}

/// Parses `--rewrite.to-delete-config`: a list of `{matchers: "<selector>", intervals:
/// [{mint, maxt}]}` (ms, closed).
pub(crate) fn parse_deletions(yaml: &str) -> Result<Vec<Deletion>> {
    let raw: Vec<RawDeletion> = serde_yaml_ng::from_str::<Option<Vec<RawDeletion>>>(yaml)
        .context("parsing --rewrite.to-delete-config: want a list of {matchers, intervals}")?
        .unwrap_or_default();
    raw.into_iter()
        .map(|d| {
            let _ = d.request_id;
            let matchers = parse_matchers(&d.matchers).with_context(|| {
                format!("--rewrite.to-delete-config: matchers {:?}", d.matchers)
            })?;
            if matchers.is_empty() {
                bail!(
                    "--rewrite.to-delete-config: matchers {:?} select every series; name the \
                     series to delete",
                    d.matchers
                );
            }
            for iv in &d.intervals {
                if iv.mint > iv.maxt {
                    bail!(
                        "--rewrite.to-delete-config: interval mint {} is after maxt {} (ms)",
                        iv.mint,
                        iv.maxt
                    );
                }
            }
            Ok(Deletion {
                matchers,
                intervals: d.intervals.iter().map(|i| (i.mint, i.maxt)).collect(),
                selector: d.matchers,
            })
        })
        .collect()
}

/// The deletions and relabel rules of the command line; refuses a rewrite that asks for
/// neither.
fn spec(args: &RewriteArgs) -> Result<RewriteSpec> {
    let deletions = match args.to_delete.source().load()? {
        Some(y) => parse_deletions(&y)?,
        None => Vec::new(),
    };
    let (relabel, relabel_json) = match args.to_relabel.source().load()? {
        Some(y) if !y.trim().is_empty() => {
            let rules = strata_block::relabel::parse_relabel_configs(&y)
                .context("parsing --rewrite.to-relabel-config")?;
            let json: Vec<serde_json::Value> =
                serde_yaml_ng::from_str::<Option<Vec<serde_json::Value>>>(&y)
                    .context("parsing --rewrite.to-relabel-config")?
                    .unwrap_or_default();
            (rules, json)
        }
        _ => (Vec::new(), Vec::new()),
    };
    if deletions.is_empty() && relabel.is_empty() {
        bail!(
            "rewrite configuration should be provided: give --rewrite.to-delete-config[-file] \
             or --rewrite.to-relabel-config[-file]"
        );
    }
    Ok(RewriteSpec {
        deletions,
        relabel,
        relabel_json,
    })
}

pub(crate) async fn run(objstore_yaml: &str, args: &RewriteArgs) -> Result<()> {
    let spec = spec(args)?;
    let bucket = open_bucket(objstore_yaml, &BucketMetrics::unregistered())?;
    let tmp = args
        .tmp_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("thanos-rewrite"));
    // Every block is checked first, so that a typo in one --id changes nothing.
    let mut metas = Vec::new();
    for id in &args.ids {
        match fetch_meta(&bucket, id.0)
            .await
            .with_context(|| format!("reading {}/meta.json", id.0))?
        {
            Some(m) => metas.push(m),
            None => bail!(
                "block {} not found in bucket {}: no {}/meta.json; nothing was rewritten",
                id.0,
                bucket.name(),
                id.0
            ),
        }
    }
    std::fs::create_dir_all(&tmp)
        .with_context(|| format!("creating --tmp.dir {}", tmp.display()))?;
    let dry_run = args.dry_run();
    for meta in metas {
        let id = meta.ulid;
        tracing::info!(source = %id, "downloading block");
        let dir = download_block(&bucket, id, &tmp)
            .await
            .with_context(|| format!("downloading block {id} into {}", tmp.display()))?;
        let new_id = Ulid::generate();
        let log_path = tmp.join(format!("{new_id}.change.log"));
        let (tmp2, spec2, log_path2) = (tmp.clone(), spec.clone(), log_path.clone());
        let change_log = args.add_change_log();
        let (new_meta, report) = tokio::task::spawn_blocking(move || {
            let block = Block::open(&dir)
                .with_context(|| format!("opening the downloaded block {}", dir.display()))?;
            let mut log: Box<dyn std::io::Write> = if dry_run {
                Box::new(std::io::stderr())
            } else if change_log {
                Box::new(std::io::BufWriter::new(
                    std::fs::File::create(&log_path2)
                        .with_context(|| format!("creating {}", log_path2.display()))?,
                ))
            } else {
                Box::new(std::io::sink())
            };
            let out = rewrite_block(&block, &tmp2, new_id, &spec2, &mut log, dry_run)
                .with_context(|| format!("rewriting block {id}"))?;
            log.flush().context("writing the change log")?;
            drop(block);
            let _ = std::fs::remove_dir_all(&dir);
            Ok::<_, anyhow::Error>(out)
        })
        .await
        .context("rewrite task")??;
        tracing::info!(
            source = %id,
            series_in = report.series_in,
            series_out = report.series_out,
            deleted = report.series_deleted,
            trimmed = report.series_trimmed,
            relabelled = report.series_relabelled,
            dry_run,
            "block rewritten"
        );
        let Some(new_meta) = new_meta else {
            continue;
        };
        let new_dir = tmp.join(new_id.to_string());
        if change_log {
            let to = new_dir.join("change.log");
            std::fs::rename(&log_path, &to)
                .with_context(|| format!("moving the change log to {}", to.display()))?;
            tracing::info!(file = %to.display(), "changelog will be available");
        }
        upload(&bucket, &new_dir, &new_meta, args).await?;
        tracing::info!(source = %id, new = %new_id, "uploaded");
        if args.delete_blocks() {
            mark_for_deletion(&bucket, id, "block rewritten")
                .await
                .with_context(|| format!("marking the source block {id} for deletion"))?;
            tracing::info!(block = %id, "source block marked for deletion");
        }
    }
    if dry_run {
        tracing::info!(
            "dry run finished: the changes are printed above; pass --no-dry-run to rewrite"
        );
    }
    Ok(())
}

async fn upload(
    bucket: &strata_objstore::Bucket,
    dir: &Path,
    meta: &strata_tsdb::BlockMeta,
    args: &RewriteArgs,
) -> Result<()> {
    let opts = UploadOptions {
        labels: meta
            .thanos
            .as_ref()
            .map(|t| t.labels.clone())
            .unwrap_or_default(),
        source: SOURCE_REWRITE.into(),
        require_labels: !args.prom_blocks(),
        hash_func: args.hash_func,
        file_concurrency: 0,
    };
    upload_block(bucket, dir, &opts)
        .await
        .with_context(|| format!("uploading the rewritten block {}", meta.ulid))?;
    Ok(())
}
