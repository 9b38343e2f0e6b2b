//! [`BlockStorage`]: the engine's [`Storage`] over local TSDB blocks.
//!
//! Used by the benchmarks and by `strata query --debug.blocks-dir`. Chunks are handed to the
//! engine as zero-copy slices of the memory-mapped segment files; the engine decodes them
//! on its worker threads. Series present in several blocks are merged into one series (the
//! blocks' chunks concatenated in time order), the way Prometheus' merge querier presents
//! them.

use std::collections::BTreeSet;
use std::path::Path;

use strata_model::{Labels, Matcher};
use strata_tsdb::Block;

use crate::error::StorageError;
use crate::storage::{ChunkData, SelectHints, SelectResult, SeriesData, Storage, StoredSeries};

/// Local blocks, opened once.
#[derive(Debug)]
pub struct BlockStorage {
    blocks: Vec<Block>,
}

impl BlockStorage {
    /// Opens every block directory (a directory with a `meta.json`) directly under `dir`.
    pub fn open_dir(dir: &Path) -> Result<BlockStorage, StorageError> {
        let mut blocks = Vec::new();
        let entries = std::fs::read_dir(dir)
            .map_err(|e| StorageError::new(format!("reading {}: {e}", dir.display())))?;
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("meta.json").is_file())
            .collect();
        paths.sort();
        for p in paths {
            let b = Block::open(&p)
                .map_err(|e| StorageError::new(format!("opening block {}: {e}", p.display())))?;
            blocks.push(b);
        }
        Ok(BlockStorage { blocks })
    }

    /// Wraps blocks already opened.
    pub fn new(blocks: Vec<Block>) -> BlockStorage {
        BlockStorage { blocks }
    }

    /// The blocks, in directory order.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    fn overlapping(&self, mint: i64, maxt: i64) -> impl Iterator<Item = &Block> {
        // A block covers [min_time, max_time).
        self.blocks
            .iter()
            .filter(move |b| b.meta().min_time <= maxt && mint < b.meta().max_time)
    }

    fn matching_labels(
        &self,
        matcher_sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<BTreeSet<Labels>, StorageError> {
        let mut out = BTreeSet::new();
        let all = [Vec::new()];
        let sets: &[Vec<Matcher>] = if matcher_sets.is_empty() {
            &all
        } else {
            matcher_sets
        };
        for b in self.overlapping(mint, maxt) {
            for ms in sets {
                let ids = b.select(ms).map_err(|e| err(b, e))?;
                for id in ids {
                    let (labels, chunks) = b.index().series(id).map_err(|e| err(b, e))?;
                    if chunks.iter().any(|c| c.overlaps(mint, maxt)) {
                        out.insert(labels);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Merges per-block series lists (each sorted by labels, blocks in time order) into one
/// sorted list; a series present in several blocks gets all their samples, in time order.
fn merge_sorted(lists: Vec<Vec<StoredSeries>>) -> Vec<StoredSeries> {
    let total: usize = lists.iter().map(Vec::len).sum();
    let mut out: Vec<StoredSeries> = Vec::with_capacity(total);
    let mut iters: Vec<std::vec::IntoIter<StoredSeries>> =
        lists.into_iter().map(Vec::into_iter).collect();
    let mut heads: Vec<Option<StoredSeries>> = iters.iter_mut().map(Iterator::next).collect();
    loop {
        // The smallest head; ties keep the earliest block first.
        let mut best: Option<usize> = None;
        for (i, h) in heads.iter().enumerate() {
            if let Some(s) = h {
                let better = match best {
                    None => true,
                    Some(b) => s.labels < heads[b].as_ref().expect("head").labels,
                };
                if better {
                    best = Some(i);
                }
            }
        }
        let Some(b) = best else { break };
        let s = std::mem::replace(&mut heads[b], iters[b].next()).expect("head");
        match out.last_mut() {
            Some(last) if last.labels == s.labels => append(last, s),
            _ => out.push(s),
        }
    }
    out
}

/// Adds a later block's samples of the same series.
fn append(dst: &mut StoredSeries, src: StoredSeries) {
    match (&mut dst.data, src.data) {
        (SeriesData::Chunks(a), SeriesData::Chunks(b)) => a.extend(b),
        (dst_data, src_data) => {
            let mut all: Vec<(i64, f64)> = Vec::new();
            for d in [
                std::mem::replace(dst_data, SeriesData::NativeHistograms),
                src_data,
            ] {
                match d {
                    SeriesData::Floats { timestamps, values } => {
                        all.extend(timestamps.iter().copied().zip(values.iter().copied()));
                    }
                    SeriesData::Chunks(chunks) => {
                        for c in chunks {
                            if let Ok(s) = strata_tsdb::block::decode_xor(&c.chunk) {
                                all.extend(s);
                            }
                        }
                    }
                    SeriesData::NativeHistograms => {
                        *dst_data = SeriesData::NativeHistograms;
                        return;
                    }
                }
            }
            all.sort_by_key(|p| p.0);
            all.dedup_by_key(|p| p.0);
            *dst_data = SeriesData::Floats {
                timestamps: all.iter().map(|p| p.0).collect(),
                values: all.iter().map(|p| p.1).collect(),
            };
        }
    }
}

fn err(b: &Block, e: impl std::fmt::Display) -> StorageError {
    StorageError::new(format!("block {}: {e}", b.dir().display()))
}

impl Storage for BlockStorage {
    fn select(
        &self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Result<SelectResult, StorageError> {
        let (mint, maxt) = (hints.start, hints.end);
        // Each block lists its series in label order (index order); merge the lists.
        let mut lists: Vec<Vec<StoredSeries>> = Vec::new();
        for b in self.overlapping(mint, maxt) {
            let ids = b.select(matchers).map_err(|e| err(b, e))?;
            let mut list = Vec::with_capacity(ids.len());
            for id in ids {
                let (labels, metas) = b.index().series(id).map_err(|e| err(b, e))?;
                if !b.tombstones().get(u64::from(id)).is_empty() {
                    // Deleted ranges: decode with the tombstones applied.
                    let s = b.series_samples(id, mint, maxt).map_err(|e| err(b, e))?;
                    if !s.timestamps.is_empty() {
                        list.push(StoredSeries {
                            labels,
                            data: SeriesData::Floats {
                                timestamps: s.timestamps.into(),
                                values: s.values.into(),
                            },
                        });
                    }
                    continue;
                }
                let mut chunks = Vec::new();
                for m in metas.iter().filter(|m| m.overlaps(mint, maxt)) {
                    let chunk = b.chunk(m.chunk_ref).map_err(|e| err(b, e))?;
                    chunks.push(ChunkData {
                        min_time: m.min_time,
                        max_time: m.max_time,
                        chunk,
                    });
                }
                if !chunks.is_empty() {
                    list.push(StoredSeries {
                        labels,
                        data: SeriesData::Chunks(chunks),
                    });
                }
            }
            if !list.is_empty() {
                lists.push(list);
            }
        }
        let series = match lists.len() {
            0 => Vec::new(),
            1 => lists.pop().expect("one list"),
            _ => merge_sorted(lists),
        };
        Ok(SelectResult {
            series,
            warnings: Vec::new(),
        })
    }

    fn label_names(
        &self,
        matcher_sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        if matcher_sets.is_empty() {
            let mut names = BTreeSet::new();
            for b in self.overlapping(mint, maxt) {
                names.extend(b.index().label_names().into_iter().map(str::to_string));
            }
            return Ok(names.into_iter().collect());
        }
        Ok(crate::storage::names_of(self.matching_labels(
            matcher_sets,
            mint,
            maxt,
        )?))
    }

    fn label_values(
        &self,
        name: &str,
        matcher_sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        if matcher_sets.is_empty() {
            let mut values = BTreeSet::new();
            for b in self.overlapping(mint, maxt) {
                values.extend(b.index().label_values(name).into_iter().map(str::to_string));
            }
            return Ok(values.into_iter().collect());
        }
        Ok(crate::storage::values_of(
            name,
            self.matching_labels(matcher_sets, mint, maxt)?,
        ))
    }

    fn series_labels(
        &self,
        matcher_sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StorageError> {
        Ok(self
            .matching_labels(matcher_sets, mint, maxt)?
            .into_iter()
            .collect())
    }
}
