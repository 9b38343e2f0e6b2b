//! A block on local disk: reading one ([`Block`]) and writing one as a stream
//! ([`BlockWriter`]).
//!
//! The writer's memory is proportional to the number of series (symbols, one postings ref
//! and one spool record position per series), never to the number of samples: chunk data goes
//! straight to the segment files, and each series' index record waits in a spool file on disk
//! until the symbol table — which must precede the series in the index — is complete.
//!
//! Crash safety: everything is written under `<ULID>.tmp-for-creation`, fsynced, and renamed
//! to `<ULID>` only when complete, the way Prometheus does it. A failed or dropped writer
//! removes its temporary directory; a directory of that name left by a crash is never mistaken
//! for a block.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use strata_model::{Label, Labels, Matcher};
use ulid::Ulid;

use crate::chunkenc::{ChunkError, Encoding, RawChunk, XorEncoder};
use crate::chunks::{ChunkMeta, ChunkReader, ChunkRef, DEFAULT_SEGMENT_SIZE, SegmentWriter};
use crate::encoding::{Decbuf, put_uvarint, put_uvarint_str, put_varint};
use crate::error::{Error, Result};
use crate::index::{IndexReader, IndexWriter, postings_for_matchers};
use crate::meta::{BlockMeta, BlockStats, Compaction, FileMeta, META_FILENAME, ThanosMeta};
use crate::tombstones::Tombstones;

/// Suffix of the directory a block is written into before it is complete.
pub const TMP_CREATION_SUFFIX: &str = ".tmp-for-creation";
/// Prometheus' default number of samples per chunk.
pub const DEFAULT_SAMPLES_PER_CHUNK: usize = 120;

/// A block directory opened for reading.
#[derive(Debug, Clone)]
pub struct Block {
    dir: PathBuf,
    meta: BlockMeta,
    index: IndexReader,
    chunks: ChunkReader,
    tombstones: Tombstones,
}

/// One series with its decoded float samples.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSamples {
    pub labels: Labels,
    pub timestamps: Vec<i64>,
    pub values: Vec<f64>,
}

impl Block {
    /// Opens a block directory: meta.json, index, chunk segments and tombstones.
    pub fn open(dir: &Path) -> Result<Block> {
        let meta = BlockMeta::read_from_dir(dir)?;
        let index = IndexReader::open(&dir.join("index"))?;
        let chunks = ChunkReader::open(&dir.join("chunks"))?;
        let tombstones = Tombstones::read_from_dir(dir)?;
        Ok(Block {
            dir: dir.to_path_buf(),
            meta,
            index,
            chunks,
            tombstones,
        })
    }

    /// Assembles a block from parts already opened (for example, read from object storage).
    pub fn from_parts(
        dir: PathBuf,
        meta: BlockMeta,
        index: IndexReader,
        chunks: ChunkReader,
        tombstones: Tombstones,
    ) -> Block {
        Block {
            dir,
            meta,
            index,
            chunks,
            tombstones,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    pub fn index(&self) -> &IndexReader {
        &self.index
    }

    pub fn chunks(&self) -> &ChunkReader {
        &self.chunks
    }

    pub fn tombstones(&self) -> &Tombstones {
        &self.tombstones
    }

    /// Hands the resident pages of the block's mapped files back to the kernel (see
    /// [`ChunkReader::release_memory`]); call it now and then while streaming a whole block.
    pub fn release_memory(&self) {
        self.index.release_memory();
        self.chunks.release_memory();
    }

    /// The sorted refs of the series that match every matcher.
    pub fn select(&self, matchers: &[Matcher]) -> Result<Vec<u32>> {
        postings_for_matchers(&self.index, matchers)
    }

    /// The raw chunk behind a chunk meta.
    pub fn chunk(&self, r: ChunkRef) -> Result<RawChunk> {
        self.chunks.chunk(r)
    }

    /// Decodes the samples of series `id` within `[mint, maxt]` (closed), with this block's
    /// tombstones applied. Chunks outside the range are not read.
    pub fn series_samples(&self, id: u32, mint: i64, maxt: i64) -> Result<SeriesSamples> {
        let (labels, chunks) = self.index.series(id)?;
        let (mut ts, mut vs) = (Vec::new(), Vec::new());
        for c in chunks.iter().filter(|c| c.overlaps(mint, maxt)) {
            let raw = self.chunks.chunk(c.chunk_ref)?;
            let start = ts.len();
            let chunk_err = |source| Error::Chunk {
                file: self.dir.display().to_string(),
                chunk_ref: c.chunk_ref,
                source,
            };
            raw.xor_iter()
                .and_then(|mut it| it.decode_into(&mut ts, &mut vs))
                .map_err(chunk_err)?;
            // The index says where the chunk's samples lie; a sample elsewhere means the index
            // or the chunk is damaged. Refusing it also bounds the output: chunks of a series
            // do not overlap, so no chunk can be decoded twice through different entries (a
            // 20 KB block could otherwise ask for gigabytes).
            if ts[start..]
                .iter()
                .any(|&t| t < c.min_time || t > c.max_time)
            {
                return Err(chunk_err(crate::ChunkError::Corrupt {
                    sample: 0,
                    total: raw.num_samples().unwrap_or(0),
                    reason: "samples outside the chunk's time range in the index",
                }));
            }
            if c.min_time < mint || c.max_time > maxt {
                retain_range(&mut ts, &mut vs, start, mint, maxt);
            }
        }
        let deleted = self.tombstones.get(u64::from(id));
        if !deleted.is_empty() {
            let keep: Vec<bool> = ts
                .iter()
                .map(|t| !deleted.iter().any(|iv| iv.contains(*t)))
                .collect();
            let mut k = keep.iter();
            ts.retain(|_| *k.next().expect("same length"));
            let mut k = keep.iter();
            vs.retain(|_| *k.next().expect("same length"));
        }
        Ok(SeriesSamples {
            labels,
            timestamps: ts,
            values: vs,
        })
    }

    /// Every series matching `matchers`, with samples in `[mint, maxt]`, in label order.
    /// Series left without samples (by the range or tombstones) are skipped.
    pub fn query<'a>(
        &'a self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<impl Iterator<Item = Result<SeriesSamples>> + 'a> {
        let ids = self.select(matchers)?;
        Ok(ids
            .into_iter()
            .filter_map(move |id| match self.series_samples(id, mint, maxt) {
                Ok(s) if s.timestamps.is_empty() => None,
                other => Some(other),
            }))
    }
}

/// Drops the samples appended since `start` that fall outside `[mint, maxt]`.
fn retain_range(ts: &mut Vec<i64>, vs: &mut Vec<f64>, start: usize, mint: i64, maxt: i64) {
    let mut w = start;
    for r in start..ts.len() {
        if ts[r] >= mint && ts[r] <= maxt {
            ts[w] = ts[r];
            vs[w] = vs[r];
            w += 1;
        }
    }
    ts.truncate(w);
    vs.truncate(w);
}

/// Options for [`BlockWriter`].
#[derive(Debug, Clone)]
pub struct BlockWriterOptions {
    /// Samples per XOR chunk when the writer encodes samples itself.
    pub samples_per_chunk: usize,
    /// Maximum size of a chunk segment file.
    pub segment_size: u64,
    /// Fixed `[min, max)` block range. Samples outside it are refused. Without it, the range
    /// is `[first sample, last sample + 1)`.
    pub time_range: Option<(i64, i64)>,
    /// The `compaction` section; defaults to level 1 with the block as its own source.
    pub compaction: Option<Compaction>,
    /// The Thanos section. When set, `files` is filled in from what was written.
    pub thanos: Option<ThanosMeta>,
    /// The ULID of the block; a fresh one by default.
    pub ulid: Option<Ulid>,
}

impl Default for BlockWriterOptions {
    fn default() -> Self {
        BlockWriterOptions {
            samples_per_chunk: DEFAULT_SAMPLES_PER_CHUNK,
            segment_size: DEFAULT_SEGMENT_SIZE,
            time_range: None,
            compaction: None,
            thanos: None,
            ulid: None,
        }
    }
}

/// Writes a block from series handed over one at a time, in label order.
#[derive(Debug)]
pub struct BlockWriter {
    parent: PathBuf,
    ulid: Ulid,
    tmp: PathBuf,
    opts: BlockWriterOptions,
    chunks: Option<SegmentWriter>,
    spool: Option<BufWriter<File>>,
    spool_path: PathBuf,
    symbols: BTreeSet<String>,
    last: Option<Labels>,
    stats: BlockStats,
    min_t: i64,
    max_t: i64,
    chunk_max_size: u64,
    record: Vec<u8>,
    metas: Vec<ChunkMeta>,
    done: bool,
}

impl BlockWriter {
    /// Starts a block under `parent` (created if missing).
    pub fn new(parent: &Path, opts: BlockWriterOptions) -> Result<Self> {
        let ulid = opts.ulid.unwrap_or_else(Ulid::generate);
        let tmp = parent.join(format!("{ulid}{TMP_CREATION_SUFFIX}"));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| Error::io("remove stale", &tmp, e))?;
        }
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io("create directory", &tmp, e))?;
        let chunks = SegmentWriter::create(&tmp.join("chunks"), opts.segment_size)?;
        let spool_path = tmp.join("series.spool");
        let spool = File::create(&spool_path).map_err(|e| Error::io("create", &spool_path, e))?;
        Ok(BlockWriter {
            parent: parent.to_path_buf(),
            ulid,
            tmp,
            opts,
            chunks: Some(chunks),
            spool: Some(BufWriter::with_capacity(1 << 20, spool)),
            spool_path,
            symbols: BTreeSet::new(),
            last: None,
            stats: BlockStats::default(),
            min_t: i64::MAX,
            max_t: i64::MIN,
            chunk_max_size: 0,
            record: Vec::with_capacity(1024),
            metas: Vec::new(),
            done: false,
        })
    }

    pub fn ulid(&self) -> Ulid {
        self.ulid
    }

    fn err(&self, detail: impl Into<String>) -> Error {
        Error::Write {
            block: self.ulid.to_string(),
            detail: detail.into(),
        }
    }

    fn check_series(&self, labels: &Labels) -> Result<()> {
        if labels.is_empty() {
            return Err(self.err("a series must have at least one label"));
        }
        if let Some(l) = labels.iter().find(|l| l.name.is_empty()) {
            return Err(self.err(format!(
                "series {labels}: empty label name (value {:?})",
                l.value
            )));
        }
        if let Some(last) = &self.last
            && labels <= last
        {
            return Err(self.err(format!(
                    "series {labels} added after {last}: series must be added in strictly increasing label order"
                )));
        }
        Ok(())
    }

    fn check_time(&self, labels: &Labels, t: i64, prev: Option<i64>) -> Result<()> {
        if let Some(p) = prev
            && t <= p
        {
            return Err(self.err(format!(
                "series {labels}: sample at {t} is not after the previous sample at {p}"
            )));
        }
        if let Some((min, max)) = self.opts.time_range
            && (t < min || t >= max)
        {
            return Err(self.err(format!(
                "series {labels}: sample at {t} is outside the block range [{min}, {max})"
            )));
        }
        Ok(())
    }

    /// Adds a series from its samples, cutting XOR chunks of `samples_per_chunk` samples.
    /// Timestamps must strictly increase. A series without samples is skipped.
    pub fn add_series(&mut self, labels: &Labels, samples: &[(i64, f64)]) -> Result<()> {
        self.add_series_iter(labels, samples.iter().copied())
    }

    /// Like [`BlockWriter::add_series`], from an iterator: only one chunk of samples is held.
    pub fn add_series_iter(
        &mut self,
        labels: &Labels,
        samples: impl IntoIterator<Item = (i64, f64)>,
    ) -> Result<()> {
        self.check_series(labels)?;
        let per_chunk = self.opts.samples_per_chunk.clamp(1, usize::from(u16::MAX));
        let mut metas = std::mem::take(&mut self.metas);
        metas.clear();
        let mut enc = XorEncoder::new();
        let (mut first, mut prev): (i64, Option<i64>) = (0, None);
        let mut n = 0u64;
        for (t, v) in samples {
            if let Err(e) = self.check_time(labels, t, prev) {
                self.metas = metas;
                return Err(e);
            }
            if enc.num_samples() == 0 {
                first = t;
            }
            enc.append(t, v).map_err(|e| self.err(e.to_string()))?;
            prev = Some(t);
            n += 1;
            if usize::from(enc.num_samples()) >= per_chunk {
                let bytes = enc.bytes();
                metas.push(self.write_chunk(Encoding::Xor, &bytes, first, t)?);
                enc = XorEncoder::new();
            }
        }
        if enc.num_samples() > 0 {
            let bytes = enc.bytes();
            metas.push(self.write_chunk(Encoding::Xor, &bytes, first, prev.expect("a sample"))?);
        }
        self.stats.num_float_samples += n;
        self.stats.num_samples += n;
        let res = if metas.is_empty() {
            Ok(())
        } else {
            self.spool_series(labels, &metas)
        };
        self.metas = metas;
        res
    }

    /// Adds a series from chunks already encoded (compaction passes chunks through). Each
    /// entry is `(min_time, max_time, chunk)`, in time order, not overlapping.
    pub fn add_series_chunks(
        &mut self,
        labels: &Labels,
        chunks: &[(i64, i64, RawChunk)],
    ) -> Result<()> {
        self.check_series(labels)?;
        let mut metas = Vec::with_capacity(chunks.len());
        let mut prev_max: Option<i64> = None;
        for (mint, maxt, c) in chunks {
            if maxt < mint || prev_max.is_some_and(|p| *mint <= p) {
                return Err(self.err(format!(
                    "series {labels}: chunk [{mint}, {maxt}] overlaps or precedes the previous chunk"
                )));
            }
            self.check_time(labels, *mint, None)?;
            self.check_time(labels, *maxt, None)?;
            prev_max = Some(*maxt);
            let n = c.num_samples().map_or(0, u64::from);
            self.stats.num_samples += n;
            if c.encoding == Encoding::Xor {
                self.stats.num_float_samples += n;
            } else if matches!(c.encoding, Encoding::Histogram | Encoding::FloatHistogram) {
                self.stats.num_histogram_samples += n;
            }
            metas.push(self.write_chunk(c.encoding, &c.data, *mint, *maxt)?);
        }
        if metas.is_empty() {
            return Ok(());
        }
        self.spool_series(labels, &metas)
    }

    fn write_chunk(
        &mut self,
        enc: Encoding,
        data: &[u8],
        mint: i64,
        maxt: i64,
    ) -> Result<ChunkMeta> {
        let w = self.chunks.as_mut().expect("writer not finished");
        let chunk_ref = w.write_chunk(enc, data)?;
        self.stats.num_chunks += 1;
        self.min_t = self.min_t.min(mint);
        self.max_t = self.max_t.max(maxt);
        let size = (crate::encoding::uvarint_len(data.len() as u64) + 1 + data.len() + 4) as u64;
        self.chunk_max_size = self.chunk_max_size.max(size);
        Ok(ChunkMeta {
            min_time: mint,
            max_time: maxt,
            chunk_ref,
        })
    }

    /// Records the series for the index: labels as strings and its chunk metas.
    fn spool_series(&mut self, labels: &Labels, metas: &[ChunkMeta]) -> Result<()> {
        self.record.clear();
        put_uvarint(&mut self.record, labels.len() as u64);
        for l in labels {
            put_uvarint_str(&mut self.record, &l.name);
            put_uvarint_str(&mut self.record, &l.value);
            for s in [&l.name, &l.value] {
                if !self.symbols.contains(s.as_str()) {
                    self.symbols.insert(s.clone());
                }
            }
        }
        put_uvarint(&mut self.record, metas.len() as u64);
        for m in metas {
            put_varint(&mut self.record, m.min_time);
            put_varint(&mut self.record, m.max_time);
            put_uvarint(&mut self.record, m.chunk_ref.0);
        }
        let spool = self.spool.as_mut().expect("writer not finished");
        let mut len = Vec::with_capacity(5);
        put_uvarint(&mut len, self.record.len() as u64);
        spool
            .write_all(&len)
            .and_then(|()| spool.write_all(&self.record))
            .map_err(|e| Error::io("write", &self.spool_path, e))?;
        self.stats.num_series += 1;
        self.last = Some(labels.clone());
        Ok(())
    }

    /// Writes the index and meta.json, fsyncs everything, and moves the block into place as
    /// `<parent>/<ULID>`. Returns its meta.
    pub fn finish(mut self) -> Result<BlockMeta> {
        let res = self.finish_inner();
        if res.is_err() {
            self.cleanup();
        }
        self.done = true;
        res
    }

    fn finish_inner(&mut self) -> Result<BlockMeta> {
        let segments = self.chunks.take().expect("finish once").finish()?;
        let spool = self.spool.take().expect("finish once");
        let spool_file = spool
            .into_inner()
            .map_err(|e| Error::io("flush", &self.spool_path, e.into_error()))?;
        drop(spool_file);

        let (min_time, max_time) = match self.opts.time_range {
            Some(r) => r,
            None if self.stats.num_series == 0 => {
                return Err(self.err("the block has no samples and no time range"));
            }
            None => (self.min_t, self.max_t + 1),
        };

        let index_path = self.tmp.join("index");
        let symbols: Vec<String> = std::mem::take(&mut self.symbols).into_iter().collect();
        let mut iw = IndexWriter::create(&index_path, symbols)?;
        let f = File::open(&self.spool_path).map_err(|e| Error::io("open", &self.spool_path, e))?;
        let mut r = BufReader::with_capacity(1 << 20, f);
        let mut rec = Vec::new();
        let mut labels = Vec::new();
        let mut metas = Vec::new();
        for _ in 0..self.stats.num_series {
            read_spool_record(&mut r, &mut rec)
                .map_err(|e| Error::io("read", &self.spool_path, e))?;
            decode_spool_record(&rec, &mut labels, &mut metas).map_err(|e| {
                Error::decode(&self.spool_path.display().to_string(), 0, "spool record", e)
            })?;
            iw.add_series(&Labels::from_sorted(std::mem::take(&mut labels)), &metas)?;
        }
        drop(r);
        let index_stats = iw.finish()?;
        std::fs::remove_file(&self.spool_path)
            .map_err(|e| Error::io("remove", &self.spool_path, e))?;

        let mut meta = BlockMeta::new(self.ulid, min_time, max_time);
        meta.stats = self.stats.clone();
        if let Some(c) = self.opts.compaction.take() {
            meta.compaction = c;
        }
        if let Some(mut t) = self.opts.thanos.take() {
            let mut files: Vec<FileMeta> = segments
                .iter()
                .map(|s| FileMeta {
                    rel_path: format!("chunks/{}", s.name),
                    size_bytes: s.size as i64,
                    hash: None,
                })
                .collect();
            files.push(FileMeta {
                rel_path: "index".into(),
                size_bytes: index_stats.size as i64,
                hash: None,
            });
            files.push(FileMeta {
                rel_path: META_FILENAME.into(),
                size_bytes: 0,
                hash: None,
            });
            files.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
            t.files = files;
            t.index_stats.series_max_size = index_stats.series_max_size as i64;
            t.index_stats.chunk_max_size = self.chunk_max_size as i64;
            meta.thanos = Some(t);
        }
        meta.write_to_dir(&self.tmp)?;
        crate::sync_dir(&self.tmp.join("chunks"))?;
        crate::sync_dir(&self.tmp)?;

        let dst = self.parent.join(self.ulid.to_string());
        std::fs::rename(&self.tmp, &dst).map_err(|e| Error::io("rename", &self.tmp, e))?;
        crate::sync_dir(&self.parent)?;
        Ok(meta)
    }

    fn cleanup(&mut self) {
        self.chunks = None;
        self.spool = None;
        let _ = std::fs::remove_dir_all(&self.tmp);
    }

    /// Abandons the block and removes everything written so far.
    pub fn abort(mut self) {
        self.cleanup();
        self.done = true;
    }
}

impl Drop for BlockWriter {
    fn drop(&mut self) {
        if !self.done {
            self.cleanup();
        }
    }
}

fn read_spool_record(r: &mut impl Read, rec: &mut Vec<u8>) -> std::io::Result<()> {
    let mut len: u64 = 0;
    let mut shift = 0;
    loop {
        let mut b = [0u8; 1];
        r.read_exact(&mut b)?;
        len |= u64::from(b[0] & 0x7f) << shift;
        if b[0] < 0x80 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "bad record length",
            ));
        }
    }
    rec.resize(len as usize, 0);
    r.read_exact(rec)
}

fn decode_spool_record(
    rec: &[u8],
    labels: &mut Vec<Label>,
    metas: &mut Vec<ChunkMeta>,
) -> std::result::Result<(), crate::encoding::DecodeError> {
    labels.clear();
    metas.clear();
    let mut d = Decbuf::new(rec);
    let n = d.uvarint_count()?;
    for _ in 0..n {
        let name = d.uvarint_str()?;
        let value = d.uvarint_str()?;
        labels.push(Label::new(name, value));
    }
    let n = d.uvarint_count()?;
    for _ in 0..n {
        let min_time = d.varint()?;
        let max_time = d.varint()?;
        let r = d.uvarint()?;
        metas.push(ChunkMeta {
            min_time,
            max_time,
            chunk_ref: ChunkRef(r),
        });
    }
    Ok(())
}

/// Decodes all samples of an XOR chunk (a convenience for tests and tools).
pub fn decode_xor(chunk: &RawChunk) -> std::result::Result<Vec<(i64, f64)>, ChunkError> {
    chunk.xor_iter()?.collect()
}
