//! `strata tools bucket {ls, inspect, verify, upload-blocks}`.
//!
//! Each function receives the object store YAML (already loaded and validated by
//! [`crate::cli::tools`]) and the parsed flags of its subcommand. Output formats follow
//! Thanos' `tools bucket` so that scripts written against it keep working: block listings on
//! stdout, progress and summaries as log lines on stderr.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result, anyhow, bail};
use strata_block::fetch::{
    DEFAULT_FETCH_CONCURRENCY, FetchedMetas, fetch_deletion_marks, fetch_metas,
};
use strata_block::transfer::{SOURCE_BUCKET_UPLOAD, UploadOptions, prepare_meta, upload_block};
use strata_block::verify::{self, Issue, VerifyOptions, find_overlaps};
use strata_objstore::{Bucket, BucketMetrics};
use strata_tsdb::BlockMeta;
use strata_tsdb::meta::{RES_5M, RES_RAW};
use ulid::Ulid;

use crate::cli::common::FlagLabel;
use crate::cli::tools::{
    InspectArgs, InspectColumn, InspectOutput, LsArgs, LsOutput, UploadBlocksArgs, VerifyArgs,
    VerifyIssue,
};

/// Blocks are downsampled to 5m once they span 40h, and to 1h once a 5m block spans 10 days.
const DOWNSAMPLE_RAW_RANGE_MS: i64 = 40 * 3_600_000;
const DOWNSAMPLE_5M_RANGE_MS: i64 = 10 * 24 * 3_600_000;

fn open_bucket(yaml: &str) -> Result<Bucket> {
    Bucket::from_yaml(yaml, &BucketMetrics::unregistered()).context("opening the bucket")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Fetches every meta within `timeout`, logging what is not a usable block.
async fn fetch_all(bucket: &Bucket, timeout: strata_model::Duration) -> Result<FetchedMetas> {
    let fetched = tokio::time::timeout(
        timeout.to_std(),
        fetch_metas(bucket, DEFAULT_FETCH_CONCURRENCY),
    )
    .await
    .map_err(|_| {
        anyhow!(
            "fetching block metas from bucket {} timed out after {timeout}",
            bucket.name()
        )
    })?
    .with_context(|| format!("fetching block metas from bucket {}", bucket.name()))?;
    for id in &fetched.partial {
        tracing::warn!(block = %id, "skipping block without meta.json (partial upload)");
    }
    for (id, why) in &fetched.corrupted {
        tracing::warn!(block = %id, error = %why, "skipping block with unreadable meta.json");
    }
    Ok(fetched)
}

/// Lists the blocks in the bucket.
pub(crate) async fn ls(objstore_yaml: &str, args: &LsArgs) -> Result<()> {
    let rules = match args.selector_relabel.source().load()? {
        Some(text) => strata_block::relabel::parse_relabel_configs(&text)
            .context("parsing --selector.relabel-config")?,
        None => Vec::new(),
    };
    let bucket = open_bucket(objstore_yaml)?;
    let fetched = fetch_all(&bucket, args.timeout).await?;
    let now = now_ms();
    let (min, max) = (
        args.time_range.min_time.resolve(now),
        args.time_range.max_time.resolve(now),
    );
    let mut metas: Vec<&BlockMeta> = fetched
        .metas
        .values()
        .filter(|m| m.max_time >= min && m.min_time <= max)
        .filter(|m| strata_block::relabel::selects_block(m, &rules))
        .collect();
    if args.exclude_delete() {
        let marks = fetch_deletion_marks(
            &bucket,
            metas.iter().map(|m| m.ulid),
            DEFAULT_FETCH_CONCURRENCY,
        )
        .await?;
        metas.retain(|m| !marks.contains_key(&m.ulid));
    }
    let mut out = std::io::stdout().lock();
    for m in &metas {
        match args.output {
            LsOutput::Default => writeln!(out, "{}", m.ulid)?,
            LsOutput::Json => out.write_all(&m.to_json())?,
            LsOutput::Wide => {
                let (from, until) = (m.min_time.div_euclid(1000), m.max_time.div_euclid(1000));
                writeln!(
                    out,
                    "{} -- {} - {} Diff: {}, Compaction: {}, Downsample: {}, Source: {}",
                    m.ulid,
                    format_time(from * 1000, "%Y-%m-%d %H:%M"),
                    format_time(until * 1000, "%Y-%m-%d %H:%M"),
                    go_duration((until - from) * 1000),
                    m.compaction.level,
                    m.resolution(),
                    m.thanos.as_ref().map_or("", |t| t.source.as_str()),
                )?
            }
        }
    }
    out.flush()?;
    tracing::info!(objects = metas.len(), "ls done");
    Ok(())
}

/// Prints a table of the blocks in the bucket.
pub(crate) async fn inspect(objstore_yaml: &str, args: &InspectArgs) -> Result<()> {
    let bucket = open_bucket(objstore_yaml)?;
    let fetched = fetch_all(&bucket, args.timeout).await?;
    let mut metas: Vec<&BlockMeta> = fetched
        .metas
        .values()
        .filter(|m| matches_selector(m, &args.selector))
        .collect();
    metas.sort_by(|a, b| {
        args.sort_by
            .iter()
            .map(|c| sort_key(a, *c).cmp(&sort_key(b, *c)))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| a.ulid.cmp(&b.ulid))
    });
    let mut out = std::io::stdout().lock();
    match args.output {
        InspectOutput::Json => {
            serde_json::to_writer_pretty(&mut out, &metas)?;
            writeln!(out)?;
        }
        format => {
            let rows: Vec<Vec<String>> = metas.iter().map(|m| inspect_row(m)).collect();
            match format {
                InspectOutput::Table => write_table(&mut out, &INSPECT_HEADER, &rows)?,
                InspectOutput::Tsv => write_separated(&mut out, &INSPECT_HEADER, &rows, '\t')?,
                _ => write_separated(&mut out, &INSPECT_HEADER, &rows, ',')?,
            }
        }
    }
    out.flush()?;
    Ok(())
}

const INSPECT_HEADER: [&str; 13] = [
    "ULID",
    "FROM",
    "UNTIL",
    "RANGE",
    "UNTIL-DOWN",
    "#SERIES",
    "#SAMPLES",
    "#CHUNKS",
    "COMP-LEVEL",
    "COMP-FAILED",
    "LABELS",
    "RESOLUTION",
    "SOURCE",
];

fn matches_selector(m: &BlockMeta, selector: &[FlagLabel]) -> bool {
    let labels = m.external_labels();
    selector
        .iter()
        .all(|s| labels.get(&s.name) == Some(&s.value))
}

/// How long until the compactor downsamples the block (`-` when it never will), as Thanos'
/// `compact.UntilNextDownsampling`: downsampling depends on the block's length, not its age.
fn until_downsampling(m: &BlockMeta) -> String {
    let range = m.max_time - m.min_time;
    let needed = match m.resolution() {
        RES_RAW => DOWNSAMPLE_RAW_RANGE_MS,
        RES_5M => DOWNSAMPLE_5M_RANGE_MS,
        _ => return "-".into(),
    };
    go_duration((needed - range).max(0))
}

/// Typed sort keys, so that times, durations and counts sort by value (Thanos parses its
/// formatted cells back for the same effect).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum SortKey {
    Int(i64),
    Text(String),
}

fn sort_key(m: &BlockMeta, c: InspectColumn) -> SortKey {
    use InspectColumn as C;
    match c {
        C::Ulid => SortKey::Text(m.ulid.to_string()),
        C::From => SortKey::Int(m.min_time),
        C::Until => SortKey::Int(m.max_time),
        C::Range => SortKey::Int(m.max_time - m.min_time),
        C::UntilDown => SortKey::Text(until_downsampling(m)),
        C::Series => SortKey::Int(m.stats.num_series as i64),
        C::Samples => SortKey::Int(m.stats.num_samples as i64),
        C::Chunks => SortKey::Int(m.stats.num_chunks as i64),
        C::CompLevel => SortKey::Int(i64::from(m.compaction.level)),
        C::CompFailed => SortKey::Int(i64::from(m.compaction.failed)),
        C::Labels => SortKey::Text(format_labels(m)),
        C::Resolution => SortKey::Int(m.resolution()),
        C::Source => SortKey::Text(
            m.thanos
                .as_ref()
                .map(|t| t.source.clone())
                .unwrap_or_default(),
        ),
    }
}

fn format_labels(m: &BlockMeta) -> String {
    m.external_labels()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn inspect_row(m: &BlockMeta) -> Vec<String> {
    vec![
        m.ulid.to_string(),
        format_time(m.min_time.div_euclid(1000) * 1000, "%d-%m-%Y %H:%M:%S"),
        format_time(m.max_time.div_euclid(1000) * 1000, "%d-%m-%Y %H:%M:%S"),
        go_duration(m.max_time - m.min_time),
        until_downsampling(m),
        thousands(m.stats.num_series),
        thousands(m.stats.num_samples),
        thousands(m.stats.num_chunks),
        thousands(u64::from(m.compaction.level)),
        m.compaction.failed.to_string(),
        format_labels(m),
        go_duration(m.resolution()),
        m.thanos
            .as_ref()
            .map(|t| t.source.clone())
            .unwrap_or_default(),
    ]
}

/// Thanos' table: borders left and right, `|` separators, a dashed line under the centered
/// header, left-aligned cells.
fn write_table(out: &mut impl Write, header: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut line = String::from("|");
    for (h, w) in header.iter().zip(&widths) {
        let pad = w - h.len();
        // tablewriter gives the larger half of odd padding to the left.
        let left = pad.div_ceil(2);
        line.push_str(&format!(
            " {}{}{} |",
            " ".repeat(left),
            h,
            " ".repeat(pad - left)
        ));
    }
    writeln!(out, "{line}")?;
    let sep: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
    writeln!(out, "|{}|", sep.join("|"))?;
    for r in rows {
        let mut line = String::from("|");
        for (cell, w) in r.iter().zip(&widths) {
            line.push_str(&format!(
                " {cell}{} |",
                " ".repeat(w - cell.chars().count())
            ));
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// TSV or CSV with a header line; CSV fields are quoted when they need it.
fn write_separated(
    out: &mut impl Write,
    header: &[&str],
    rows: &[Vec<String>],
    sep: char,
) -> std::io::Result<()> {
    let field = |s: &str| -> String {
        if sep == ',' && s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let head: Vec<String> = header.iter().map(|h| field(h)).collect();
    writeln!(out, "{}", head.join(&sep.to_string()))?;
    for r in rows {
        let cells: Vec<String> = r.iter().map(|c| field(c)).collect();
        writeln!(out, "{}", cells.join(&sep.to_string()))?;
    }
    Ok(())
}

/// `1234567` → `1,234,567`, as Go's English message printer writes counts.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A millisecond duration as Go's `time.Duration.String()` prints it: `0s`, `250ms`,
/// `1.5s`, `2h0m0s`, `1h59m59.878s`.
fn go_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    if ms < 1000 {
        return format!("{sign}{ms}ms");
    }
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        format!("{s}.{}s", format!("{frac:03}").trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => format!("{sign}{secs}"),
        (0, m) => format!("{sign}{m}m{secs}"),
        (h, m) => format!("{sign}{h}h{m}m{secs}"),
    }
}

/// Formats a Unix-ms time in UTC with a tiny strftime subset (`%Y %m %d %H %M %S`).
fn format_time(ms: i64, pattern: &str) -> String {
    let rfc = strata_model::timestamp::format_rfc3339(ms);
    // "YYYY-MM-DDTHH:MM:SSZ" (RFC 3339 in UTC, whole seconds).
    let (date, time) = rfc.split_once('T').unwrap_or((&rfc, ""));
    let mut d = date.splitn(3, '-');
    let (y, mo, da) = (
        d.next().unwrap_or(""),
        d.next().unwrap_or(""),
        d.next().unwrap_or(""),
    );
    let time = time.trim_end_matches('Z');
    let mut t = time.splitn(3, ':');
    let (h, mi, s) = (
        t.next().unwrap_or(""),
        t.next().unwrap_or(""),
        t.next().unwrap_or(""),
    );
    let s = s.split('.').next().unwrap_or(s);
    pattern
        .replace("%Y", y)
        .replace("%m", mo)
        .replace("%d", da)
        .replace("%H", h)
        .replace("%M", mi)
        .replace("%S", s)
}

/// Verifies the blocks in the bucket. `backup_yaml` (for `--repair`) is accepted for
/// compatibility; repair itself is refused with a clear message.
pub(crate) async fn verify(
    objstore_yaml: &str,
    backup_yaml: Option<&str>,
    args: &VerifyArgs,
) -> Result<()> {
    let _ = backup_yaml;
    if args.repair() {
        bail!(
            "--repair is not supported yet: verify reports problems only. Fix a damaged block by \
             re-uploading it from its source, or mark it with `tools bucket mark`"
        );
    }
    let bucket = open_bucket(objstore_yaml)?;
    let work = tempfile::Builder::new()
        .prefix("strata-verify-")
        .tempdir()
        .context("creating a temporary directory for downloaded blocks")?;
    let issues = args
        .issues
        .iter()
        .map(|i| match i {
            VerifyIssue::IndexKnownIssues => Issue::IndexKnownIssues,
            VerifyIssue::OverlappedBlocks => Issue::OverlappedBlocks,
            VerifyIssue::DuplicatedCompaction => Issue::DuplicatedCompaction,
        })
        .collect();
    let opts = VerifyOptions {
        issues,
        ids: args.ids.iter().map(|b| b.0).collect(),
        work_dir: work.path().to_path_buf(),
        fetch_concurrency: DEFAULT_FETCH_CONCURRENCY,
    };
    let report = verify::verify_bucket(&bucket, &opts)
        .await
        .context("verifying the bucket")?;
    let mut out = std::io::stdout().lock();
    for p in &report.problems {
        writeln!(out, "{p}")?;
    }
    out.flush()?;
    let (errors, warnings) = (report.errors(), report.problems.len() - report.errors());
    tracing::info!(
        blocks = report.blocks_total,
        checked = report.blocks_checked,
        errors,
        warnings,
        "verify done"
    );
    if errors > 0 {
        bail!(
            "verify found {errors} problem(s) in bucket {}; see the lines above",
            bucket.name()
        );
    }
    Ok(())
}

/// Uploads the blocks under `--path` with the `--label` external labels, oldest first,
/// skipping what is already in the bucket.
pub(crate) async fn upload_blocks(objstore_yaml: &str, args: &UploadBlocksArgs) -> Result<()> {
    let mut labels = BTreeMap::new();
    for l in &args.labels {
        if labels.insert(l.name.clone(), l.value.clone()).is_some() {
            bail!("--label {} is given more than once", l.name);
        }
    }
    let opts = UploadOptions {
        labels,
        source: SOURCE_BUCKET_UPLOAD.into(),
        require_labels: true,
        hash_func: Default::default(),
        file_concurrency: args.shipper_upload_concurrency,
    };
    let dirs = local_blocks(&args.path)?;
    if dirs.is_empty() {
        tracing::warn!(path = %args.path.display(), "no blocks found");
    }
    let bucket = open_bucket(objstore_yaml)?;
    // Existing blocks, for the overlap check that guards compacted uploads.
    let existing = if args.shipper_upload_compacted() {
        Some(
            fetch_metas(&bucket, DEFAULT_FETCH_CONCURRENCY)
                .await
                .context("listing the bucket")?,
        )
    } else {
        None
    };
    let (mut uploaded, mut skipped) = (0usize, 0usize);
    for (id, dir) in dirs {
        // Builds the meta as it would be uploaded: validates the block and the labels first.
        let meta = prepare_meta(&dir, &opts).with_context(|| format!("block {}", dir.display()))?;
        if meta.compaction.level > 1 && !args.shipper_upload_compacted() {
            tracing::info!(block = %id, level = meta.compaction.level,
                "skipping compacted block (pass --shipper.upload-compacted to upload it)");
            skipped += 1;
            continue;
        }
        if meta.stats.num_samples == 0 {
            tracing::info!(block = %id, "skipping empty block");
            skipped += 1;
            continue;
        }
        if bucket
            .exists(&strata_block::block_key(id, "meta.json"))
            .await?
        {
            tracing::info!(block = %id, "block already in the bucket; skipping");
            skipped += 1;
            continue;
        }
        if let Some(existing) = &existing {
            let others: Vec<&BlockMeta> = existing
                .metas
                .values()
                .chain(std::iter::once(&meta))
                .collect();
            if let Some(p) = find_overlaps(others)
                .into_iter()
                .find(|p| p.block == Some(id) || p.detail.contains(&id.to_string()))
            {
                bail!("refusing to upload block {id}: {}", p.detail);
            }
        }
        upload_block(&bucket, &dir, &opts)
            .await
            .with_context(|| format!("uploading block {}", dir.display()))?;
        uploaded += 1;
    }
    tracing::info!(uploaded, skipped, "upload-blocks done");
    Ok(())
}

/// The block directories under `path`, oldest (lowest ULID) first. Temporary directories and
/// anything without a `meta.json` are ignored.
fn local_blocks(path: &Path) -> Result<Vec<(Ulid, PathBuf)>> {
    let rd =
        std::fs::read_dir(path).with_context(|| format!("reading --path {}", path.display()))?;
    let mut out = Vec::new();
    for e in rd {
        let e = e.with_context(|| format!("reading --path {}", path.display()))?;
        let name = e.file_name();
        let Some(id) = name.to_str().and_then(|n| Ulid::from_str(n).ok()) else {
            continue;
        };
        if e.path().join("meta.json").is_file() {
            out.push((id, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_tsdb::meta::RES_1H;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(1), "1ms");
        assert_eq!(go_duration(1500), "1.5s");
        assert_eq!(go_duration(7_200_000), "2h0m0s");
        assert_eq!(go_duration(3_599_878), "59m59.878s");
        assert_eq!(go_duration(300_000), "5m0s");
        assert_eq!(go_duration(-90_000), "-1m30s");
        assert_eq!(go_duration(40 * 3_600_000), "40h0m0s");
    }

    #[test]
    fn counts_and_times() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(
            format_time(1_700_000_000_123, "%d-%m-%Y %H:%M:%S"),
            "14-11-2023 22:13:20"
        );
        assert_eq!(format_time(0, "%Y-%m-%d %H:%M"), "1970-01-01 00:00");
    }

    #[test]
    fn downsampling_countdown() {
        let mut m = BlockMeta::new(Ulid::nil(), 0, 2 * 3_600_000);
        assert_eq!(until_downsampling(&m), "38h0m0s");
        m.max_time = 48 * 3_600_000;
        assert_eq!(until_downsampling(&m), "0s");
        m.thanos = Some(strata_tsdb::ThanosMeta {
            downsample: strata_tsdb::meta::Downsample { resolution: RES_1H },
            ..Default::default()
        });
        assert_eq!(until_downsampling(&m), "-");
    }

    #[test]
    fn table_layout() {
        let mut out = Vec::new();
        write_table(
            &mut out,
            &["ID", "N"],
            &[vec!["abc".into(), "1,000".into()]],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "|  ID |   N   |\n|-----|-------|\n| abc | 1,000 |\n"
        );
    }
}
