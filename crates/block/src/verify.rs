//! Judging blocks and buckets.
//!
//! Verification never stops at the first problem and never panics on bad data: every check
//! turns what it finds into a [`Problem`] naming the block and, where it applies, the series,
//! the chunk and the offset. The checks follow Thanos' `tools bucket verify` issues:
//!
//! - `index_known_issues`: per block, on a downloaded copy — meta.json readable and sane; the
//!   index's TOC, symbol table, postings offset table, every postings list and every series
//!   entry intact (CRC32C) and well-formed; series in strictly increasing label order; chunks
//!   of a series in time order without overlap and inside the block's range; every chunk
//!   reference pointing inside a segment file at a chunk whose CRC matches; XOR chunks
//!   decoding to samples whose first and last timestamps match the index; stats in meta.json
//!   matching what the block holds.
//! - `overlapped_blocks`: blocks of one stream (same resolution and external labels) whose
//!   time ranges overlap. Blocks already marked for deletion are left out: after a compaction
//!   the sources and the new block coexist until the delete delay passes, which is normal.
//! - `duplicated_compaction`: several blocks of one stream made from the same sources.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use strata_model::Labels;
use strata_objstore::Bucket;
use strata_tsdb::chunks::ChunkReader;
use strata_tsdb::tombstones::Tombstones;
use strata_tsdb::{BlockMeta, Encoding, IndexReader};
use ulid::Ulid;

use crate::fetch::{StreamKey, fetch_deletion_marks, fetch_metas};
use crate::transfer::download_block;
use crate::{Error, Result};

/// At most this many problems are listed per block and check; the rest are counted.
const MAX_PROBLEMS_PER_BLOCK: usize = 50;

/// How bad a finding is. Only errors make `verify` fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub block: Option<Ulid>,
    pub severity: Severity,
    /// Short machine-friendly name, e.g. `series-order`, `chunk-crc`, `overlap`.
    pub kind: &'static str,
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match self.block {
            Some(b) => write!(f, "{sev}: block {b}: {}: {}", self.kind, self.detail),
            None => write!(f, "{sev}: {}: {}", self.kind, self.detail),
        }
    }
}

/// The issues `verify` can look for, named as in Thanos.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Issue {
    IndexKnownIssues,
    OverlappedBlocks,
    DuplicatedCompaction,
}

impl Issue {
    pub const ALL: [Issue; 3] = [
        Issue::IndexKnownIssues,
        Issue::OverlappedBlocks,
        Issue::DuplicatedCompaction,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Issue::IndexKnownIssues => "index_known_issues",
            Issue::OverlappedBlocks => "overlapped_blocks",
            Issue::DuplicatedCompaction => "duplicated_compaction",
        }
    }
}

impl FromStr for Issue {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Issue::ALL.into_iter().find(|i| i.id() == s).ok_or_else(|| {
            let ids: Vec<&str> = Issue::ALL.iter().map(|i| i.id()).collect();
            format!("unknown issue {s:?}; known issues: {}", ids.join(", "))
        })
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// Collects the problems of one block, capping each kind.
struct Collector {
    block: Option<Ulid>,
    problems: Vec<Problem>,
    per_kind: BTreeMap<&'static str, usize>,
}

impl Collector {
    fn new(block: Option<Ulid>) -> Self {
        Collector {
            block,
            problems: Vec::new(),
            per_kind: BTreeMap::new(),
        }
    }

    fn add(&mut self, severity: Severity, kind: &'static str, detail: impl Into<String>) {
        let n = self.per_kind.entry(kind).or_insert(0);
        *n += 1;
        if *n <= MAX_PROBLEMS_PER_BLOCK {
            self.problems.push(Problem {
                block: self.block,
                severity,
                kind,
                detail: detail.into(),
            });
        }
    }

    fn error(&mut self, kind: &'static str, detail: impl Into<String>) {
        self.add(Severity::Error, kind, detail);
    }

    fn warning(&mut self, kind: &'static str, detail: impl Into<String>) {
        self.add(Severity::Warning, kind, detail);
    }

    fn finish(mut self) -> Vec<Problem> {
        for (kind, n) in &self.per_kind {
            if *n > MAX_PROBLEMS_PER_BLOCK {
                let severity = self
                    .problems
                    .iter()
                    .find(|p| p.kind == *kind)
                    .map_or(Severity::Error, |p| p.severity);
                self.problems.push(Problem {
                    block: self.block,
                    severity,
                    kind,
                    detail: format!(
                        "{} more problems of this kind not listed",
                        n - MAX_PROBLEMS_PER_BLOCK
                    ),
                });
            }
        }
        self.problems
    }
}

/// What a block was found to hold while verifying it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockCounts {
    pub series: u64,
    pub chunks: u64,
    pub samples: u64,
}

/// Verifies a block directory on local disk. `id` is the block the directory should hold.
pub fn verify_block_dir(dir: &Path, id: Ulid) -> (Vec<Problem>, BlockCounts) {
    let mut p = Collector::new(Some(id));
    let mut counts = BlockCounts::default();
    let meta = match BlockMeta::read_from_dir(dir) {
        Ok(m) => m,
        Err(e) => {
            p.error("meta", e.to_string());
            return (p.finish(), counts);
        }
    };
    if meta.ulid != id {
        p.error("meta", format!("meta.json names block {}", meta.ulid));
    }
    if meta.min_time >= meta.max_time {
        p.error(
            "meta",
            format!(
                "minTime {} is not before maxTime {}",
                meta.min_time, meta.max_time
            ),
        );
    }
    let index = match IndexReader::open(&dir.join("index")) {
        Ok(ix) => ix,
        Err(e) => {
            p.error("index", e.to_string());
            return (p.finish(), counts);
        }
    };
    let chunks = match ChunkReader::open(&dir.join("chunks")) {
        Ok(c) => Some(c),
        Err(e) => {
            p.error("chunks", e.to_string());
            None
        }
    };
    if let Err(e) = Tombstones::read_from_dir(dir) {
        p.error("tombstones", e.to_string());
    }
    let all = match index.all_postings() {
        Ok(all) => all,
        Err(e) => {
            p.error("postings", e.to_string());
            return (p.finish(), counts);
        }
    };
    check_postings(&index, &all, &mut p);
    counts = check_series(&index, chunks.as_ref(), &meta, &all, &mut p);
    for (what, stated, found) in [
        ("numSeries", meta.stats.num_series, counts.series),
        ("numChunks", meta.stats.num_chunks, counts.chunks),
        ("numSamples", meta.stats.num_samples, counts.samples),
    ] {
        // Samples are only counted for chunks we can decode; skip when some could not be.
        if stated != found && !(what == "numSamples" && p.per_kind.contains_key("chunk-encoding")) {
            p.error(
                "stats",
                format!("meta.json says {what} {stated}, the block holds {found}"),
            );
        }
    }
    (p.finish(), counts)
}

/// Every postings list decodes and only names series that exist.
fn check_postings(index: &IndexReader, all: &[u32], p: &mut Collector) {
    for name in index.label_names() {
        for value in index.label_values(name) {
            match index.postings(name, value) {
                Err(e) => p.error("postings", e.to_string()),
                Ok(list) => {
                    if let Some(r) = list.iter().find(|r| all.binary_search(r).is_err()) {
                        p.error(
                            "postings",
                            format!("postings of {name}={value:?} reference series {r}, which is not in the index"),
                        );
                    }
                    if list.is_empty() {
                        p.warning(
                            "postings",
                            format!("postings of {name}={value:?} are empty"),
                        );
                    }
                }
            }
        }
    }
}

fn check_series(
    index: &IndexReader,
    chunks: Option<&ChunkReader>,
    meta: &BlockMeta,
    all: &[u32],
    p: &mut Collector,
) -> BlockCounts {
    let mut counts = BlockCounts::default();
    let (mut refs, mut metas) = (Vec::new(), Vec::new());
    let mut prev: Option<Labels> = None;
    let mut last_chunk_ref = 0u64;
    let (mut ts, mut vs) = (Vec::new(), Vec::new());
    for &sid in all {
        if let Err(e) = index.series_raw(sid, &mut refs, &mut metas) {
            p.error("series", e.to_string());
            continue;
        }
        let labels = match index.resolve_labels(&refs) {
            Ok(l) => l,
            Err(e) => {
                p.error("series", format!("series ref {sid}: {e}"));
                continue;
            }
        };
        counts.series += 1;
        if labels.is_empty() {
            p.error("series", format!("series ref {sid} has no labels"));
        }
        if let Some(l) = labels.iter().find(|l| l.value.is_empty()) {
            p.error(
                "series",
                format!(
                    "series {labels} (ref {sid}) has an empty value for {:?}",
                    l.name
                ),
            );
        }
        if let Some(prev) = &prev
            && labels <= *prev
        {
            p.error(
                    "series-order",
                    format!("series {labels} (ref {sid}) is not after {prev}: series must be sorted and unique"),
                );
        }
        if metas.is_empty() {
            p.warning(
                "series",
                format!("series {labels} (ref {sid}) has no chunks"),
            );
        }
        for (i, c) in metas.iter().enumerate() {
            counts.chunks += 1;
            let what = format!("series {labels} chunk {i} [{}, {}]", c.min_time, c.max_time);
            if c.min_time > c.max_time {
                p.error("chunk-range", format!("{what}: mint after maxt"));
            }
            if i > 0 && c.min_time <= metas[i - 1].max_time {
                p.error(
                    "chunk-order",
                    format!("{what}: out of order or overlapping with the previous chunk, which ends at {}", metas[i - 1].max_time),
                );
            }
            if c.min_time < meta.min_time || c.max_time >= meta.max_time {
                p.error(
                    "chunk-outside-block",
                    format!(
                        "{what}: outside the block range [{}, {})",
                        meta.min_time, meta.max_time
                    ),
                );
            }
            if c.chunk_ref.0 < last_chunk_ref {
                p.warning(
                    "chunk-ref-order",
                    format!(
                        "{what}: reference {} is below the previous {}",
                        c.chunk_ref,
                        strata_tsdb::ChunkRef(last_chunk_ref)
                    ),
                );
            }
            last_chunk_ref = c.chunk_ref.0;
            let Some(reader) = chunks else { continue };
            let raw = match reader.chunk(c.chunk_ref) {
                Ok(raw) => raw,
                Err(e) => {
                    p.error("chunk", format!("{what}: {e}"));
                    continue;
                }
            };
            if raw.encoding != Encoding::Xor {
                p.warning(
                    "chunk-encoding",
                    format!(
                        "{what}: encoding {} is not checked sample by sample yet",
                        raw.encoding
                    ),
                );
                continue;
            }
            ts.clear();
            vs.clear();
            let decoded = raw
                .xor_iter()
                .and_then(|mut it| it.decode_into(&mut ts, &mut vs));
            if let Err(e) = decoded {
                p.error("chunk-data", format!("{what} at {}: {e}", c.chunk_ref));
                continue;
            }
            counts.samples += ts.len() as u64;
            match (ts.first(), ts.last()) {
                (Some(&first), Some(&last)) if first != c.min_time || last != c.max_time => p
                    .error(
                        "chunk-data",
                        format!(
                            "{what}: samples run from {first} to {last}, not as the index says"
                        ),
                    ),
                (None, _) => p.error("chunk-data", format!("{what}: chunk holds no samples")),
                _ => {}
            }
            if let Some(w) = ts.windows(2).find(|w| w[1] <= w[0]) {
                p.error(
                    "chunk-data",
                    format!(
                        "{what}: sample timestamps not increasing ({} then {})",
                        w[0], w[1]
                    ),
                );
            }
        }
        prev = Some(labels);
    }
    counts
}

/// Blocks of one stream whose time ranges overlap. `metas` should exclude blocks marked for
/// deletion.
pub fn find_overlaps<'a>(metas: impl IntoIterator<Item = &'a BlockMeta>) -> Vec<Problem> {
    let mut streams: BTreeMap<StreamKey, Vec<&BlockMeta>> = BTreeMap::new();
    for m in metas {
        streams.entry(StreamKey::of(m)).or_default().push(m);
    }
    let mut out = Vec::new();
    for (key, mut blocks) in streams {
        blocks.sort_by_key(|m| (m.min_time, m.max_time, m.ulid));
        // The block reaching furthest so far: overlaps are reported against it.
        let mut reach: Option<&BlockMeta> = None;
        for b in blocks {
            if let Some(r) = reach {
                if b.min_time < r.max_time {
                    out.push(Problem {
                        block: Some(b.ulid),
                        severity: Severity::Error,
                        kind: "overlap",
                        detail: format!(
                            "[{}, {}) overlaps block {} [{}, {}) in stream {key}; \
                             mark one of them for deletion or enable vertical compaction",
                            b.min_time, b.max_time, r.ulid, r.min_time, r.max_time
                        ),
                    });
                }
                if b.max_time > r.max_time {
                    reach = Some(b);
                }
            } else {
                reach = Some(b);
            }
        }
    }
    out
}

/// Several blocks of one stream compacted from the same sources: all but the oldest are
/// duplicates.
pub fn find_duplicated_compactions<'a>(
    metas: impl IntoIterator<Item = &'a BlockMeta>,
) -> Vec<Problem> {
    let mut groups: BTreeMap<(StreamKey, BTreeSet<Ulid>), Vec<&BlockMeta>> = BTreeMap::new();
    for m in metas {
        if m.compaction.sources.is_empty() {
            continue;
        }
        let sources: BTreeSet<Ulid> = m.compaction.sources.iter().copied().collect();
        groups
            .entry((StreamKey::of(m), sources))
            .or_default()
            .push(m);
    }
    let mut out = Vec::new();
    for ((key, _), mut blocks) in groups {
        if blocks.len() < 2 {
            continue;
        }
        blocks.sort_by_key(|m| m.ulid);
        for dup in &blocks[1..] {
            out.push(Problem {
                block: Some(dup.ulid),
                severity: Severity::Error,
                kind: "duplicated-compaction",
                detail: format!(
                    "made from the same sources as block {} in stream {key}; one of them is redundant",
                    blocks[0].ulid
                ),
            });
        }
    }
    out
}

/// Options for [`verify_bucket`].
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub issues: BTreeSet<Issue>,
    /// Only these blocks (all when empty).
    pub ids: Vec<Ulid>,
    /// Where blocks are downloaded for `index_known_issues`; each is removed after its check.
    pub work_dir: PathBuf,
    pub fetch_concurrency: usize,
}

/// The outcome of [`verify_bucket`].
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub problems: Vec<Problem>,
    /// Blocks whose contents were checked (downloaded).
    pub blocks_checked: usize,
    /// Complete blocks in the bucket.
    pub blocks_total: usize,
}

impl VerifyReport {
    pub fn errors(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .count()
    }
}

/// Verifies the blocks of a bucket. Problems in the data are reported, not returned as
/// errors; an `Err` means the bucket itself could not be read.
pub async fn verify_bucket(bucket: &Bucket, opts: &VerifyOptions) -> Result<VerifyReport> {
    let fetched = fetch_metas(bucket, opts.fetch_concurrency).await?;
    let mut report = VerifyReport {
        blocks_total: fetched.metas.len(),
        ..Default::default()
    };
    let wanted: BTreeSet<Ulid> = opts.ids.iter().copied().collect();
    let selected = |id: &Ulid| wanted.is_empty() || wanted.contains(id);

    for id in &wanted {
        let known = fetched.metas.contains_key(id)
            || fetched.partial.contains(id)
            || fetched.corrupted.iter().any(|(c, _)| c == id);
        if !known {
            report.problems.push(Problem {
                block: Some(*id),
                severity: Severity::Error,
                kind: "missing",
                detail: format!("no such block in bucket {}", bucket.name()),
            });
        }
    }
    for (id, why) in fetched.corrupted.iter().filter(|(id, _)| selected(id)) {
        report.problems.push(Problem {
            block: Some(*id),
            severity: Severity::Error,
            kind: "meta",
            detail: why.clone(),
        });
    }
    for id in fetched.partial.iter().filter(|id| selected(id)) {
        report.problems.push(Problem {
            block: Some(*id),
            severity: Severity::Warning,
            kind: "partial-upload",
            detail: "no meta.json: an upload in progress or one that was interrupted \
                     (the compactor removes abandoned ones)"
                .into(),
        });
    }

    let bucket_wide = opts.issues.contains(&Issue::OverlappedBlocks)
        || opts.issues.contains(&Issue::DuplicatedCompaction);
    if bucket_wide {
        let marks = fetch_deletion_marks(
            bucket,
            fetched.metas.keys().copied(),
            opts.fetch_concurrency,
        )
        .await?;
        let live: Vec<&BlockMeta> = fetched
            .metas
            .values()
            .filter(|m| !marks.contains_key(&m.ulid))
            .collect();
        let mut found = Vec::new();
        if opts.issues.contains(&Issue::OverlappedBlocks) {
            found.extend(find_overlaps(live.iter().copied()));
        }
        if opts.issues.contains(&Issue::DuplicatedCompaction) {
            found.extend(find_duplicated_compactions(live.iter().copied()));
        }
        report.problems.extend(
            found
                .into_iter()
                .filter(|p| p.block.is_none_or(|b| selected(&b))),
        );
    }

    if opts.issues.contains(&Issue::IndexKnownIssues) {
        std::fs::create_dir_all(&opts.work_dir)
            .map_err(|e| Error::io("create directory", &opts.work_dir, e))?;
        for id in fetched.metas.keys().filter(|id| selected(id)) {
            let dir = match download_block(bucket, *id, &opts.work_dir).await {
                Ok(dir) => dir,
                Err(Error::Bucket(e)) if !e.is_not_found() => return Err(Error::Bucket(e)),
                Err(e) => {
                    report.problems.push(Problem {
                        block: Some(*id),
                        severity: Severity::Error,
                        kind: "download",
                        detail: e.to_string(),
                    });
                    continue;
                }
            };
            let (problems, _) = verify_block_dir(&dir, *id);
            report.problems.extend(problems);
            report.blocks_checked += 1;
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove downloaded block");
            }
        }
    }
    Ok(report)
}
