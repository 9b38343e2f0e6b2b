//! Rewriting one block without some of its series or samples, or with its series relabelled
//! (`tools bucket rewrite`, Thanos' `compactv2` modifiers): the way to remove data from long-term
//! storage (a leaked label, a cardinality explosion, a deletion request) or to rename it.
//!
//! The source block is never changed. The rewritten block gets a new ULID, the source's time
//! range and compaction level, `thanos.source: bucket.rewrite`, and a `thanos.rewrites` entry
//! naming the source's sources and the deletions and relabel rules applied; its
//! `compaction.sources` is itself, as in Thanos, so that a reader does not take it for the
//! blocks it replaced.
//!
//! Series untouched by deletions keep their chunks byte for byte. A deletion with intervals
//! drops the chunks inside them and re-encodes the chunks that straddle their edges. Relabelled
//! series are re-sorted; series that relabelling makes equal are merged (their samples in time
//! order, the first series' sample kept on equal timestamps). Every change is written to the
//! change log in Thanos' wording (`Deleted <labels> <intervals>`,
//! `Relabelled <old> <new>`).
//!
//! Memory: the label sets and chunk references of the block's series, as Thanos' rewrite holds
//! them to re-sort relabelled series; chunks are read when written.

use std::io::Write;
use std::path::Path;

use strata_block::relabel::{RelabelConfig, relabel};
use strata_model::{Labels, Matcher};
use strata_tsdb::block::{Block, BlockWriter, BlockWriterOptions};
use strata_tsdb::meta::{BlockMeta, ThanosMeta};
use strata_tsdb::{ChunkMeta, Encoding, RawChunk};
use ulid::Ulid;

use crate::error::CompactError;

/// `thanos.source` of a rewritten block.
pub const SOURCE_REWRITE: &str = "bucket.rewrite";

/// One deletion request (Thanos' `metadata.DeletionRequest`): the series every matcher
/// selects lose their samples in `intervals` (closed, ms), or all of them when there are none.
#[derive(Debug, Clone)]
pub struct Deletion {
    pub matchers: Vec<Matcher>,
    pub intervals: Vec<(i64, i64)>,
    /// The matchers as written in the request, for the meta and the change log.
    pub selector: String,
}

impl Deletion {
    fn selects(&self, labels: &Labels) -> bool {
        self.matchers
            .iter()
            .all(|m| m.matches(labels.get(m.name()).unwrap_or("")))
    }

    /// The intervals deleted, whole time when none were given.
    fn effective(&self) -> Vec<(i64, i64)> {
        if self.intervals.is_empty() {
            vec![(i64::MIN, i64::MAX)]
        } else {
            self.intervals.clone()
        }
    }
}

/// What a rewrite applies.
#[derive(Debug, Clone, Default)]
pub struct RewriteSpec {
    pub deletions: Vec<Deletion>,
    pub relabel: Vec<RelabelConfig>,
    /// The relabel rules as given (YAML turned JSON), recorded in `thanos.rewrites`.
    pub relabel_json: Vec<serde_json::Value>,
}

/// What a rewrite did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewriteReport {
    pub series_in: u64,
    pub series_out: u64,
    /// Series removed whole (by a deletion without intervals, or dropped by relabelling).
    pub series_deleted: u64,
    /// Series that lost samples in some intervals but kept others.
    pub series_trimmed: u64,
    pub series_relabelled: u64,
}

/// One source series of an output series: its chunks, read from the index once, and the time
/// ranges deleted from it (empty: none).
type Part = (Vec<ChunkMeta>, Vec<(i64, i64)>);

/// A series as it will be written.
struct Out {
    labels: Labels,
    /// Its source series: several when relabelling made them equal.
    parts: Vec<Part>,
}

/// Rewrites `src` into `<out_parent>/<new_id>` (nothing is written with `dry_run`), logging
/// every change to `log`. Returns the new block's meta (`None` in a dry run) and a report.
pub fn rewrite_block(
    src: &Block,
    out_parent: &Path,
    new_id: Ulid,
    spec: &RewriteSpec,
    log: &mut dyn Write,
    dry_run: bool,
) -> Result<(Option<BlockMeta>, RewriteReport), CompactError> {
    let meta = src.meta();
    let err = |e: strata_tsdb::Error| CompactError::Input {
        block: meta.ulid,
        source: e,
    };
    let log_err = |e: std::io::Error| CompactError::Io {
        op: "write the change log",
        path: out_parent.to_path_buf(),
        source: e,
    };
    let index = src.index();
    let mut report = RewriteReport::default();
    let mut outs: Vec<Out> = Vec::new();
    for id in index.all_postings().map_err(err)? {
        report.series_in += 1;
        let (labels, chunks) = index.series(id).map_err(err)?;
        let mut deleted: Vec<(i64, i64)> = Vec::new();
        for d in spec.deletions.iter().filter(|d| d.selects(&labels)) {
            deleted.extend(d.effective());
        }
        let whole = deleted
            .iter()
            .any(|&(a, b)| a <= meta.min_time && b >= meta.max_time.saturating_sub(1));
        if !deleted.is_empty() {
            writeln!(log, "Deleted {labels} {}", go_intervals(&deleted)).map_err(log_err)?;
        }
        // The block's own tombstones are applied too (not logged: they are not this
        // rewrite's), as a compaction would.
        deleted.extend(
            src.tombstones()
                .get(u64::from(id))
                .iter()
                .map(|iv| (iv.min, iv.max)),
        );
        if whole {
            report.series_deleted += 1;
            continue;
        }
        let out_labels = if spec.relabel.is_empty() {
            labels.clone()
        } else {
            match relabel(&labels, &spec.relabel).filter(|l| !l.is_empty()) {
                // Dropped, or left without labels: the series is deleted.
                None => {
                    writeln!(
                        log,
                        "Deleted {labels} {}",
                        go_intervals(&[(i64::MIN, i64::MAX)])
                    )
                    .map_err(log_err)?;
                    report.series_deleted += 1;
                    continue;
                }
                Some(new) => {
                    if new != labels {
                        writeln!(log, "Relabelled {labels} {new}").map_err(log_err)?;
                        report.series_relabelled += 1;
                    }
                    new
                }
            }
        };
        outs.push(Out {
            labels: out_labels,
            parts: vec![(chunks, deleted)],
        });
    }
    // Relabelling may change the order and make series equal: sort, then merge equals.
    outs.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut merged: Vec<Out> = Vec::with_capacity(outs.len());
    for o in outs {
        match merged.last_mut() {
            Some(last) if last.labels == o.labels => last.parts.extend(o.parts),
            _ => merged.push(o),
        }
    }
    if dry_run {
        // Without reading chunks: a series trimmed to nothing still counts as written here.
        report.series_out = merged.len() as u64;
        report.series_trimmed = merged
            .iter()
            .filter(|o| o.parts.iter().any(|(_, d)| !d.is_empty()))
            .count() as u64;
        return Ok((None, report));
    }

    let mut thanos: ThanosMeta = meta.thanos.clone().unwrap_or_default();
    thanos.source = SOURCE_REWRITE.into();
    thanos.files.clear();
    thanos.rewrites.push(serde_json::json!({
        "sources": meta.compaction.sources.iter().map(Ulid::to_string).collect::<Vec<_>>(),
        "deletions_applied": spec.deletions.iter().map(|d| {
            let mut v = serde_json::json!({ "matchers": d.selector });
            if !d.intervals.is_empty() {
                v["intervals"] = d.intervals.iter()
                    .map(|&(a, b)| serde_json::json!({ "Mint": a, "Maxt": b }))
                    .collect();
            }
            v
        }).collect::<Vec<_>>(),
        "relabels_applied": spec.relabel_json,
    }));
    let mut compaction = meta.compaction.clone();
    compaction.sources = vec![new_id];
    let mut w = BlockWriter::new(
        out_parent,
        BlockWriterOptions {
            time_range: Some((meta.min_time, meta.max_time)),
            compaction: Some(compaction),
            thanos: Some(thanos),
            ulid: Some(new_id),
            ..BlockWriterOptions::default()
        },
    )?;
    for o in &merged {
        let untouched = o.parts.len() == 1 && o.parts[0].1.is_empty();
        if untouched {
            let raw = read_chunks(src, &o.parts[0].0).map_err(err)?;
            w.add_series_chunks(&o.labels, &raw)?;
            report.series_out += 1;
            continue;
        }
        let samples = samples_of(src, &o.labels, &o.parts)?;
        let trimmed = o.parts.iter().any(|(_, d)| !d.is_empty());
        if samples.is_empty() {
            // Every sample was in a deleted interval.
            report.series_deleted += 1;
            continue;
        }
        w.add_series(&o.labels, &samples)?;
        report.series_out += 1;
        report.series_trimmed += u64::from(trimmed);
    }
    let new_meta = w.finish()?;
    Ok((Some(new_meta), report))
}

fn read_chunks(
    src: &Block,
    chunks: &[ChunkMeta],
) -> Result<Vec<(i64, i64, RawChunk)>, strata_tsdb::Error> {
    chunks
        .iter()
        .map(|c| Ok((c.min_time, c.max_time, src.chunk(c.chunk_ref)?)))
        .collect()
}

/// The samples of the source series `parts` outside each one's deleted intervals, merged in
/// time order (on equal timestamps the earlier part's sample is kept). Float (XOR) chunks
/// only: a series with other chunks cannot have samples removed or be merged.
fn samples_of(
    src: &Block,
    labels: &Labels,
    parts: &[Part],
) -> Result<Vec<(i64, f64)>, CompactError> {
    let input = |e: strata_tsdb::Error| CompactError::Input {
        block: src.meta().ulid,
        source: e,
    };
    let mut all: Vec<(i64, usize, f64)> = Vec::new();
    for (k, (chunks, deleted)) in parts.iter().enumerate() {
        let kept = |t: i64| !deleted.iter().any(|&(a, b)| a <= t && t <= b);
        for c in chunks {
            // A chunk wholly inside a deleted interval is not read.
            if deleted
                .iter()
                .any(|&(a, b)| a <= c.min_time && c.max_time <= b)
            {
                continue;
            }
            let raw = src.chunk(c.chunk_ref).map_err(input)?;
            if raw.encoding != Encoding::Xor {
                return Err(CompactError::Unmergeable {
                    series: labels.to_string(),
                    detail: format!(
                        "samples can be deleted, and series merged, only in float (XOR) chunks, \
                         not {} ones (native histograms, downsampled data): delete whole series \
                         instead",
                        raw.encoding.name()
                    ),
                });
            }
            let (mut ts, mut vs) = (Vec::new(), Vec::new());
            raw.xor_iter()
                .and_then(|mut it| it.decode_into(&mut ts, &mut vs))
                .map_err(|source| CompactError::Chunk {
                    series: labels.to_string(),
                    source,
                })?;
            all.extend(
                ts.into_iter()
                    .zip(vs)
                    .filter(|&(t, _)| kept(t))
                    .map(|(t, v)| (t, k, v)),
            );
        }
    }
    all.sort_by_key(|&(t, k, _)| (t, k));
    all.dedup_by_key(|s| s.0);
    Ok(all.into_iter().map(|(t, _, v)| (t, v)).collect())
}

/// Intervals printed as Go prints Prometheus' `tombstones.Intervals` (`[{0 100} {200 300}]`),
/// the form Thanos' change log uses.
fn go_intervals(iv: &[(i64, i64)]) -> String {
    let parts: Vec<String> = iv.iter().map(|(a, b)| format!("{{{a} {b}}}")).collect();
    format!("[{}]", parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_tsdb::tombstones::{Interval, Tombstones};

    fn samples_in(block: &Block, labels: &Labels) -> Vec<(i64, f64)> {
        let ids = block.index().all_postings().unwrap();
        for id in ids {
            let (l, _) = block.index().series(id).unwrap();
            if &l == labels {
                let s = block.series_samples(id, i64::MIN, i64::MAX).unwrap();
                return s.timestamps.into_iter().zip(s.values).collect();
            }
        }
        panic!("no series {labels}");
    }

    /// The block's tombstones are applied (a compaction would not bring their samples
    /// back either), a deletion without intervals removes the series, and a deletion with
    /// intervals that leaves nothing counts the series as deleted.
    #[test]
    fn tombstones_and_deletions_leave_what_they_should() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = BlockWriter::new(tmp.path(), BlockWriterOptions::default()).unwrap();
        let s: Vec<(i64, f64)> = (0..100).map(|i| (i * 1000, i as f64)).collect();
        let a = Labels::from_pairs(&[("__name__", "a")]);
        let b = Labels::from_pairs(&[("__name__", "b")]);
        let c = Labels::from_pairs(&[("__name__", "c")]);
        for l in [&a, &b, &c] {
            w.add_series(l, &s).unwrap();
        }
        let meta = w.finish().unwrap();
        let dir = tmp.path().join(meta.ulid.to_string());
        let block = Block::open(&dir).unwrap();
        let a_id = block.index().all_postings().unwrap()[0];
        let mut t = Tombstones::default();
        t.add(
            u64::from(a_id),
            Interval {
                min: 10_000,
                max: 19_000,
            },
        );
        std::fs::write(dir.join("tombstones"), t.encode()).unwrap();
        let block = Block::open(&dir).unwrap();
        let spec = RewriteSpec {
            deletions: vec![
                Deletion {
                    matchers: vec![Matcher::equal("__name__", "b")],
                    intervals: vec![],
                    selector: "{__name__=\"b\"}".into(),
                },
                Deletion {
                    matchers: vec![Matcher::equal("__name__", "c")],
                    intervals: vec![(0, 99_000)],
                    selector: "{__name__=\"c\"}".into(),
                },
            ],
            ..RewriteSpec::default()
        };
        let out = tempfile::tempdir().unwrap();
        let mut log = Vec::new();
        let (new, report) =
            rewrite_block(&block, out.path(), Ulid::generate(), &spec, &mut log, false).unwrap();
        let new = new.unwrap();
        assert_eq!(report.series_in, 3);
        assert_eq!(report.series_out, 1);
        assert_eq!(report.series_deleted, 2);
        let log = String::from_utf8(log).unwrap();
        assert_eq!(
            log,
            "Deleted {__name__=\"b\"} [{-9223372036854775808 9223372036854775807}]\n\
             Deleted {__name__=\"c\"} [{0 99000}]\n"
        );
        let got = Block::open(&out.path().join(new.ulid.to_string())).unwrap();
        let want: Vec<(i64, f64)> = s
            .iter()
            .copied()
            .filter(|&(t, _)| !(10_000..=19_000).contains(&t))
            .collect();
        assert_eq!(samples_in(&got, &a), want);
        assert_eq!(new.stats.num_series, 1);
    }
}
