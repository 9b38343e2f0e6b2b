//! Merging blocks into one: a streaming k-way merge over the inputs' series.
//!
//! Each input is walked in series order (its postings are label order); at every step the
//! smallest label set among the inputs' current series is taken from every input that has
//! it. That series' chunks are passed through **as raw bytes** when they do not overlap,
//! which is the normal case for horizontal compaction (2h → 8h → 2d → 14d) and costs no
//! decoding. Only chunks that overlap (vertical compaction of replicas) or are touched by
//! tombstones are decoded, merged and re-encoded.
//!
//! Memory is one series' chunk list (zero-copy slices of the memory-mapped inputs) plus the
//! block writer's per-series state: it grows with the number of series, never with samples.

use std::collections::BTreeMap;
use std::path::Path;

use strata_model::Labels;
use strata_tsdb::block::{Block, BlockWriter, BlockWriterOptions, DEFAULT_SAMPLES_PER_CHUNK};
use strata_tsdb::meta::{BlockDesc, Compaction, ThanosMeta};
use strata_tsdb::tombstones::Interval;
use strata_tsdb::{BlockMeta, ChunkMeta, Encoding, RawChunk, XorEncoder};
use ulid::Ulid;

use crate::error::{CompactError, Result};

/// The `thanos.source` of blocks the compactor writes.
pub const SOURCE_COMPACTOR: &str = "compactor";

/// How often (in series) streaming readers hand the pages of their inputs back to the kernel.
pub(crate) const RELEASE_EVERY_SERIES: u64 = 4096;

/// What the merged block should say about itself.
#[derive(Debug, Clone)]
pub struct MergeOptions {
    /// External labels of the stream (the group's labels; replica labels already removed for
    /// vertical deduplication).
    pub labels: BTreeMap<String, String>,
    /// Downsampling resolution of the inputs and the output.
    pub resolution: i64,
    /// Segment size for the output (0 = Prometheus' 512 MiB).
    pub segment_size: u64,
    /// Use this ULID for the output (tests); a fresh one otherwise.
    pub ulid: Option<Ulid>,
    /// How overlapping samples of one series from different inputs are merged
    /// (`--deduplication.func`): `Chain` keeps one sample per timestamp (one-to-one, the
    /// default); `Penalty` follows one input and switches only across a gap, for replicas of an
    /// HA pair that scrape at different moments.
    pub dedup: strata_dedup::Algorithm,
}

impl Default for MergeOptions {
    fn default() -> Self {
        MergeOptions {
            labels: BTreeMap::new(),
            resolution: 0,
            segment_size: 0,
            ulid: None,
            // The compactor's default (`--deduplication.func=""`), not the querier's.
            dedup: strata_dedup::Algorithm::Chain,
        }
    }
}

/// Figures about one merge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeStats {
    pub series: u64,
    pub chunks: u64,
    pub samples: u64,
    /// Chunks that had to be decoded and re-encoded (overlaps, tombstones).
    pub rewritten_chunks: u64,
}

/// One input's position in its postings.
struct Cursor<'a> {
    block: &'a Block,
    ids: Vec<u32>,
    next: usize,
    head: Option<(Labels, Vec<ChunkMeta>, u32)>,
}

impl<'a> Cursor<'a> {
    fn new(block: &'a Block) -> Result<Self> {
        let ids = block
            .index()
            .all_postings()
            .map_err(|e| input_err(block, e))?;
        let mut c = Cursor {
            block,
            ids,
            next: 0,
            head: None,
        };
        c.advance()?;
        Ok(c)
    }

    fn advance(&mut self) -> Result<()> {
        self.head = match self.ids.get(self.next) {
            Some(&id) => {
                self.next += 1;
                let (labels, chunks) = self
                    .block
                    .index()
                    .series(id)
                    .map_err(|e| input_err(self.block, e))?;
                Some((labels, chunks, id))
            }
            None => None,
        };
        Ok(())
    }
}

fn input_err(block: &Block, source: strata_tsdb::Error) -> CompactError {
    CompactError::Input {
        block: block.meta().ulid,
        source,
    }
}

/// A chunk on its way to the output.
struct Piece {
    min: i64,
    max: i64,
    chunk: RawChunk,
    /// Deleted intervals of the series in the chunk's input block.
    deleted: Vec<Interval>,
    /// Which input block the chunk comes from: under penalty deduplication, each input is one
    /// replica's stream.
    input: usize,
}

/// Merges `inputs` (one stream's blocks: same labels and resolution) into a new block under
/// `out_parent`. Returns `None` when nothing is left (everything deleted by tombstones).
pub fn merge_blocks(
    inputs: &[Block],
    out_parent: &Path,
    opts: &MergeOptions,
) -> Result<Option<(BlockMeta, MergeStats)>> {
    if inputs.is_empty() {
        return Err(CompactError::Plan("no blocks to merge".into()));
    }
    let min_time = inputs
        .iter()
        .map(|b| b.meta().min_time)
        .min()
        .expect("non-empty");
    let max_time = inputs
        .iter()
        .map(|b| b.meta().max_time)
        .max()
        .expect("non-empty");
    let mut sources: Vec<Ulid> = inputs
        .iter()
        .flat_map(|b| b.meta().compaction.sources.iter().copied())
        .collect();
    sources.sort();
    sources.dedup();
    let mut parents: Vec<BlockDesc> = inputs
        .iter()
        .map(|b| BlockDesc {
            ulid: b.meta().ulid,
            min_time: b.meta().min_time,
            max_time: b.meta().max_time,
        })
        .collect();
    parents.sort_by_key(|p| (p.min_time, p.ulid));
    let level = inputs
        .iter()
        .map(|b| b.meta().compaction.level)
        .max()
        .unwrap_or(1)
        + 1;
    let writer_opts = BlockWriterOptions {
        time_range: Some((min_time, max_time)),
        compaction: Some(Compaction {
            level,
            sources,
            parents,
            ..Default::default()
        }),
        thanos: Some(ThanosMeta {
            labels: opts.labels.clone(),
            downsample: strata_tsdb::meta::Downsample {
                resolution: opts.resolution,
            },
            source: SOURCE_COMPACTOR.into(),
            ..Default::default()
        }),
        ulid: opts.ulid,
        segment_size: if opts.segment_size == 0 {
            BlockWriterOptions::default().segment_size
        } else {
            opts.segment_size
        },
        ..Default::default()
    };
    let mut w = BlockWriter::new(out_parent, writer_opts)?;
    let mut cursors: Vec<Cursor<'_>> = inputs.iter().map(Cursor::new).collect::<Result<_>>()?;
    let mut stats = MergeStats::default();
    let mut pieces: Vec<Piece> = Vec::new();
    let mut rounds: u64 = 0;
    // Each round takes the smallest label set among the inputs' current series.
    while let Some(min) = cursors
        .iter()
        .filter_map(|c| c.head.as_ref().map(|h| &h.0))
        .min()
        .cloned()
    {
        rounds += 1;
        if rounds.is_multiple_of(RELEASE_EVERY_SERIES) {
            // Keep RSS bounded by what we hold, not by how much of the inputs we have read.
            inputs.iter().for_each(Block::release_memory);
        }
        pieces.clear();
        for (input, c) in cursors.iter_mut().enumerate() {
            let matches = c.head.as_ref().is_some_and(|h| h.0 == min);
            if !matches {
                continue;
            }
            let (_, metas, id) = c.head.take().expect("checked");
            let deleted = c.block.tombstones().get(u64::from(id)).to_vec();
            for m in metas {
                let chunk = c
                    .block
                    .chunk(m.chunk_ref)
                    .map_err(|e| input_err(c.block, e))?;
                pieces.push(Piece {
                    min: m.min_time,
                    max: m.max_time,
                    chunk,
                    deleted: deleted.clone(),
                    input,
                });
            }
            c.advance()?;
        }
        let chunks = merge_series(&min, &mut pieces, opts.dedup, &mut stats)?;
        if chunks.is_empty() {
            continue;
        }
        stats.series += 1;
        stats.chunks += chunks.len() as u64;
        stats.samples += chunks
            .iter()
            .map(|c| c.2.num_samples().map_or(0, u64::from))
            .sum::<u64>();
        w.add_series_chunks(&min, &chunks)?;
    }
    if stats.series == 0 {
        w.abort();
        return Ok(None);
    }
    Ok(Some((w.finish()?, stats)))
}

/// The output chunks of one series: raw pieces passed through where possible.
fn merge_series(
    labels: &Labels,
    pieces: &mut [Piece],
    dedup: strata_dedup::Algorithm,
    stats: &mut MergeStats,
) -> Result<Vec<(i64, i64, RawChunk)>> {
    pieces.sort_by_key(|p| (p.min, p.max));
    let mut out = Vec::with_capacity(pieces.len());
    if dedup == strata_dedup::Algorithm::Penalty
        && pieces.iter().any(|p| p.input != pieces[0].input)
    {
        // The penalty algorithm carries state (which replica it follows, the penalties) from
        // sample to sample. Cut into runs of overlapping chunks, it would restart at every run
        // boundary and take the first sample of each run from whichever replica is earlier.
        // So a series that more than one input holds is deduplicated as one stream: a series'
        // samples, not a block's, are what this holds in memory.
        rewrite_run(labels, pieces, dedup, &mut out)?;
        stats.rewritten_chunks += pieces.len() as u64;
        return Ok(out);
    }
    let mut i = 0;
    while i < pieces.len() {
        // The run of pieces that overlap each other (transitively), starting at i.
        let mut j = i + 1;
        let mut run_max = pieces[i].max;
        while j < pieces.len() && pieces[j].min <= run_max {
            run_max = run_max.max(pieces[j].max);
            j += 1;
        }
        let run = &pieces[i..j];
        let touched = run.iter().any(|p| {
            p.deleted
                .iter()
                .any(|iv| iv.min <= p.max && p.min <= iv.max)
        });
        if run.len() == 1 && !touched {
            let p = &run[0];
            out.push((p.min, p.max, p.chunk.clone()));
        } else {
            rewrite_run(labels, run, dedup, &mut out)?;
            stats.rewritten_chunks += run.len() as u64;
        }
        i = j;
    }
    Ok(out)
}

/// Decodes overlapping (or partly deleted) chunks and merges their samples: with `Chain`, one
/// sample per timestamp (the earlier piece's: one-to-one deduplication of replicas); with
/// `Penalty`, each input's samples form one replica stream and Thanos' penalty algorithm picks
/// among them. The result is re-encoded.
fn rewrite_run(
    labels: &Labels,
    run: &[Piece],
    dedup: strata_dedup::Algorithm,
    out: &mut Vec<(i64, i64, RawChunk)>,
) -> Result<()> {
    // Samples tagged with their input, in run order.
    let mut tagged: Vec<(usize, i64, f64)> = Vec::new();
    for p in run {
        if p.chunk.encoding != Encoding::Xor {
            return Err(CompactError::Unmergeable {
                series: labels.to_string(),
                detail: format!(
                    "chunks in encoding {} overlap or carry tombstones; only XOR chunks can be merged",
                    p.chunk.encoding
                ),
            });
        }
        let it = p.chunk.xor_iter().map_err(|source| CompactError::Chunk {
            series: labels.to_string(),
            source,
        })?;
        for s in it {
            let (t, v) = s.map_err(|source| CompactError::Chunk {
                series: labels.to_string(),
                source,
            })?;
            if !p.deleted.iter().any(|iv| iv.contains(t)) {
                tagged.push((p.input, t, v));
            }
        }
    }
    let samples: Vec<(i64, f64)> = match dedup {
        strata_dedup::Algorithm::Chain => {
            // Stable: among equal timestamps the earlier piece wins.
            tagged.sort_by_key(|s| s.1);
            tagged.dedup_by_key(|s| s.1);
            tagged.into_iter().map(|(_, t, v)| (t, v)).collect()
        }
        strata_dedup::Algorithm::Penalty => {
            // One time-ordered stream per input (stable sort keeps run order within an input).
            tagged.sort_by_key(|s| (s.0, s.1));
            tagged.dedup_by_key(|s| (s.0, s.1));
            let mut replicas: Vec<Vec<(i64, f64)>> = Vec::new();
            let mut last_input = None;
            for (input, t, v) in tagged {
                if last_input != Some(input) {
                    replicas.push(Vec::new());
                    last_input = Some(input);
                }
                replicas.last_mut().expect("pushed").push((t, v));
            }
            let slices: Vec<&[(i64, f64)]> = replicas.iter().map(Vec::as_slice).collect();
            let mut merged = Vec::new();
            // Counter adjustment belongs to queries of rate() and friends, not to storage: the
            // compactor stores what the replicas recorded (as Thanos' compactor does).
            strata_dedup::dedup_into(
                &slices,
                strata_dedup::Algorithm::Penalty,
                false,
                &mut merged,
            );
            merged
        }
    };
    for part in samples.chunks(DEFAULT_SAMPLES_PER_CHUNK) {
        let data =
            XorEncoder::encode(part.iter().copied()).map_err(|source| CompactError::Chunk {
                series: labels.to_string(),
                source,
            })?;
        out.push((
            part[0].0,
            part[part.len() - 1].0,
            RawChunk::new(Encoding::Xor, data),
        ));
    }
    Ok(())
}
