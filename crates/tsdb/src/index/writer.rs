//! Writing an index file in one sequential pass.
//!
//! The caller supplies the sorted symbol table up front, then every series in label order;
//! [`IndexWriter::finish`] writes the postings, the postings offset table and the TOC.
//!
//! Memory: the writer keeps the symbols, one `u32` per series (the all-series postings list)
//! and a count per label name. Postings for the other label pairs are built by re-reading the
//! series section from disk for batches of label names, each batch holding at most
//! `max(series, postings_budget)` refs in memory. Small indexes are done in one batch; a
//! 10-million-series index never needs more than a few tens of megabytes for postings.
//!
//! The layout matches what current Prometheus writes: no deprecated label-index sections,
//! `TOC.label_indices == TOC.postings` = end of the series section, and
//! `TOC.label_indices_table == TOC.postings_table` = end of the last postings list (Thanos'
//! index-header uses that value as the end of the last list).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use strata_model::Labels;

use super::{FORMAT_V2, MAGIC_INDEX, MAX_INDEX_SIZE, SERIES_ALIGN, Toc};
use crate::chunks::ChunkMeta;
use crate::encoding::{
    crc32c, put_uvarint, put_uvarint_str, put_varint, read_uvarint, uvarint_len,
};
use crate::error::{Error, Result};

/// Default memory budget for postings built in one batch (in refs: 16 Mi refs = 64 MiB).
const DEFAULT_POSTINGS_BUDGET_REFS: u64 = 16 << 20;

/// Figures about a finished index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexWriterStats {
    pub size: u64,
    pub num_series: u64,
    /// The largest series entry, in bytes (length prefix and CRC included).
    pub series_max_size: u64,
    /// Number of passes over the series section needed to build the postings.
    pub postings_passes: u32,
}

/// Writes an index file. See the module documentation for the contract.
#[derive(Debug)]
pub struct IndexWriter {
    path: PathBuf,
    w: BufWriter<File>,
    pos: u64,
    toc: Toc,
    symbols: Vec<String>,
    last: Option<Labels>,
    last_chunk_ref: u64,
    series_refs: Vec<u32>,
    /// Label name symbol → number of series carrying it.
    name_counts: BTreeMap<u32, u64>,
    buf: Vec<u8>,
    body: Vec<u8>,
    series_max_size: u64,
    postings_budget_refs: u64,
}

impl IndexWriter {
    /// Creates the index at `path` and writes the header and the symbol table. `symbols` must
    /// be sorted and unique, and contain every label name and value the series will use.
    pub fn create(path: &Path, symbols: Vec<String>) -> Result<Self> {
        let f = File::create(path).map_err(|e| Error::io("create", path, e))?;
        let mut iw = IndexWriter {
            path: path.to_path_buf(),
            w: BufWriter::with_capacity(1 << 20, f),
            pos: 0,
            toc: Toc::default(),
            symbols: Vec::new(),
            last: None,
            last_chunk_ref: 0,
            series_refs: Vec::new(),
            name_counts: BTreeMap::new(),
            buf: Vec::with_capacity(4096),
            body: Vec::with_capacity(4096),
            series_max_size: 0,
            postings_budget_refs: DEFAULT_POSTINGS_BUDGET_REFS,
        };
        let mut header = [0u8; 5];
        header[..4].copy_from_slice(&MAGIC_INDEX.to_be_bytes());
        header[4] = FORMAT_V2;
        iw.write(&header)?;
        iw.write_symbols(symbols)?;
        iw.toc.series = iw.pos;
        Ok(iw)
    }

    /// Caps the refs held in memory while building postings (for tests and tight memory).
    pub fn set_postings_budget(&mut self, refs: u64) {
        self.postings_budget_refs = refs.max(1);
    }

    fn err(&self, detail: impl Into<String>) -> Error {
        Error::Write {
            block: self.path.display().to_string(),
            detail: detail.into(),
        }
    }

    fn write(&mut self, b: &[u8]) -> Result<()> {
        self.w
            .write_all(b)
            .map_err(|e| Error::io("write", &self.path, e))?;
        self.pos += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self, align: u64) -> Result<()> {
        let rem = self.pos % align;
        if rem != 0 {
            let zeros = [0u8; 16];
            self.write(&zeros[..(align - rem) as usize])?;
        }
        Ok(())
    }

    fn write_symbols(&mut self, symbols: Vec<String>) -> Result<()> {
        if let Some(w) = symbols.windows(2).find(|w| w[0] >= w[1]) {
            return Err(self.err(format!(
                "symbols must be sorted and unique: {:?} followed by {:?}",
                w[0], w[1]
            )));
        }
        let size: u64 = 4 + symbols
            .iter()
            .map(|s| (uvarint_len(s.len() as u64) + s.len()) as u64)
            .sum::<u64>();
        if size > u64::from(u32::MAX) {
            return Err(self.err(format!("symbol table of {size} bytes exceeds 4 GiB")));
        }
        self.toc.symbols = self.pos;
        self.write(&(size as u32).to_be_bytes())?;
        let mut crc = 0u32;
        let count = (symbols.len() as u32).to_be_bytes();
        crc = crc32c::crc32c_append(crc, &count);
        self.write(&count)?;
        let mut buf = std::mem::take(&mut self.buf);
        for s in &symbols {
            buf.clear();
            put_uvarint_str(&mut buf, s);
            crc = crc32c::crc32c_append(crc, &buf);
            self.write(&buf)?;
        }
        self.buf = buf;
        self.write(&crc.to_be_bytes())?;
        self.symbols = symbols;
        Ok(())
    }

    fn symbol_ref(&self, s: &str) -> Result<u32> {
        self.symbols
            .binary_search_by(|x| x.as_str().cmp(s))
            .map(|i| i as u32)
            .map_err(|_| self.err(format!("symbol {s:?} missing from the symbol table")))
    }

    /// Adds the next series. Series must come in strictly increasing label order, chunks in
    /// time order without overlap, and chunk references must never decrease.
    pub fn add_series(&mut self, labels: &Labels, chunks: &[ChunkMeta]) -> Result<u32> {
        if let Some(last) = &self.last
            && labels <= last
        {
            return Err(self.err(format!(
                    "out-of-order series: {labels} added after {last}; series must be added in label order"
                )));
        }
        let mut last_ref = self.last_chunk_ref;
        for (i, c) in chunks.iter().enumerate() {
            if c.chunk_ref.0 < last_ref {
                return Err(self.err(format!(
                    "series {labels}: chunk reference {} is lower than the previous {}",
                    c.chunk_ref,
                    crate::chunks::ChunkRef(last_ref)
                )));
            }
            last_ref = c.chunk_ref.0;
            if c.max_time < c.min_time {
                return Err(self.err(format!(
                    "series {labels}: chunk maxt {} is less than mint {}",
                    c.max_time, c.min_time
                )));
            }
            if i > 0 && c.min_time <= chunks[i - 1].max_time {
                return Err(self.err(format!(
                    "series {labels}: chunk mint {} is not after the previous chunk's maxt {}",
                    c.min_time,
                    chunks[i - 1].max_time
                )));
            }
        }

        self.pad(SERIES_ALIGN)?;
        let id = self.pos / SERIES_ALIGN;
        if self.pos >= MAX_INDEX_SIZE {
            return Err(self.err("index exceeds 64 GiB: series references would overflow 32 bits"));
        }

        let mut body = std::mem::take(&mut self.body);
        body.clear();
        put_uvarint(&mut body, labels.len() as u64);
        for l in labels {
            if l.name.is_empty() {
                self.body = body;
                return Err(self.err(format!("series {labels} has a label with an empty name")));
            }
            let (n, v) = (self.symbol_ref(&l.name)?, self.symbol_ref(&l.value)?);
            put_uvarint(&mut body, u64::from(n));
            put_uvarint(&mut body, u64::from(v));
            *self.name_counts.entry(n).or_insert(0) += 1;
        }
        put_uvarint(&mut body, chunks.len() as u64);
        if let Some(first) = chunks.first() {
            put_varint(&mut body, first.min_time);
            put_uvarint(&mut body, (first.max_time - first.min_time) as u64);
            put_uvarint(&mut body, first.chunk_ref.0);
            let (mut t0, mut r0) = (first.max_time, first.chunk_ref.0 as i64);
            for c in &chunks[1..] {
                put_uvarint(&mut body, (c.min_time - t0) as u64);
                put_uvarint(&mut body, (c.max_time - c.min_time) as u64);
                put_varint(&mut body, c.chunk_ref.0 as i64 - r0);
                t0 = c.max_time;
                r0 = c.chunk_ref.0 as i64;
            }
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        put_uvarint(&mut buf, body.len() as u64);
        let crc = crc32c(&body);
        self.write(&buf)?;
        self.write(&body)?;
        self.write(&crc.to_be_bytes())?;
        self.series_max_size = self
            .series_max_size
            .max((buf.len() + body.len() + 4) as u64);
        self.buf = buf;
        self.body = body;

        self.last_chunk_ref = last_ref;
        self.last = Some(labels.clone());
        self.series_refs.push(id as u32);
        Ok(id as u32)
    }

    /// Writes the postings, the postings offset table and the TOC, and fsyncs the file.
    pub fn finish(mut self) -> Result<IndexWriterStats> {
        self.toc.label_indices = self.pos;
        self.toc.postings = self.pos;
        self.pad(4)?;

        let po_path = self.path.with_extension("tmp-postings-offsets");
        let po_file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&po_path)
            .map_err(|e| Error::io("create", &po_path, e))?;
        let mut po = BufWriter::with_capacity(1 << 20, po_file);
        let mut po_count = 0u32;
        let result = self.write_all_postings(&mut po, &mut po_count);
        let po_file = match result.and_then(|passes| {
            po.into_inner()
                .map(|f| (f, passes))
                .map_err(|e| Error::io("flush", &po_path, e.into_error()))
        }) {
            Ok(v) => v,
            Err(e) => {
                let _ = std::fs::remove_file(&po_path);
                return Err(e);
            }
        };
        let (po_file, passes) = po_file;
        let res = self.write_postings_offset_table(po_file, &po_path, po_count);
        let _ = std::fs::remove_file(&po_path);
        res?;

        let toc = self.toc.encode();
        self.write(&toc)?;
        let f = self
            .w
            .into_inner()
            .map_err(|e| Error::io("flush", &self.path, e.into_error()))?;
        f.sync_all()
            .map_err(|e| Error::io("fsync", &self.path, e))?;
        Ok(IndexWriterStats {
            size: self.pos,
            num_series: self.series_refs.len() as u64,
            series_max_size: self.series_max_size,
            postings_passes: passes,
        })
    }

    fn write_postings_list(
        &mut self,
        po: &mut BufWriter<File>,
        po_count: &mut u32,
        name: &str,
        value: &str,
        refs: &[u32],
    ) -> Result<()> {
        // Each list starts 4-byte aligned (lists are multiples of 4 long, so this only
        // matters for the first).
        self.pad(4)?;
        let mut entry = Vec::with_capacity(name.len() + value.len() + 12);
        put_uvarint(&mut entry, 2);
        put_uvarint_str(&mut entry, name);
        put_uvarint_str(&mut entry, value);
        put_uvarint(&mut entry, self.pos);
        po.write_all(&entry)
            .map_err(|e| Error::io("write", &self.path, e))?;
        *po_count = po_count
            .checked_add(1)
            .ok_or_else(|| self.err("more than 2^32 label pairs"))?;

        let mut body = std::mem::take(&mut self.body);
        body.clear();
        body.reserve(4 + refs.len() * 4);
        body.extend_from_slice(&(refs.len() as u32).to_be_bytes());
        for r in refs {
            body.extend_from_slice(&r.to_be_bytes());
        }
        if body.len() > u32::MAX as usize {
            self.body = body;
            return Err(self.err(format!("postings list for {name}={value:?} exceeds 4 GiB")));
        }
        let crc = crc32c(&body);
        self.write(&(body.len() as u32).to_be_bytes())?;
        self.write(&body)?;
        self.write(&crc.to_be_bytes())?;
        self.body = body;
        Ok(())
    }

    /// Writes the all-series list, then every (name, value) list in sorted order. Returns the
    /// number of passes over the series section.
    fn write_all_postings(&mut self, po: &mut BufWriter<File>, po_count: &mut u32) -> Result<u32> {
        let all = std::mem::take(&mut self.series_refs);
        self.write_postings_list(po, po_count, "", "", &all)?;

        // Batch label names (in symbol order = string order) under the memory budget.
        let budget = self.postings_budget_refs.max(all.len() as u64);
        let names: Vec<(u32, u64)> = self.name_counts.iter().map(|(&n, &c)| (n, c)).collect();
        let mut passes = 0;
        let mut i = 0;
        while i < names.len() {
            let mut j = i;
            let mut refs = 0;
            while j < names.len() && (j == i || refs + names[j].1 <= budget) {
                refs += names[j].1;
                j += 1;
            }
            let batch: HashMap<u32, usize> = names[i..j]
                .iter()
                .enumerate()
                .map(|(k, &(n, _))| (n, k))
                .collect();
            // Per name in the batch: value symbol → series refs.
            let mut postings: Vec<BTreeMap<u32, Vec<u32>>> = vec![BTreeMap::new(); j - i];
            self.scan_series(&all, |id, refs| {
                for &(n, v) in refs {
                    if let Some(&k) = batch.get(&n) {
                        postings[k].entry(v).or_default().push(id);
                    }
                }
            })?;
            passes += 1;
            for (k, values) in postings.into_iter().enumerate() {
                let name = self.symbols[names[i + k].0 as usize].clone();
                for (v, list) in values {
                    let value = self.symbols[v as usize].clone();
                    self.write_postings_list(po, po_count, &name, &value, &list)?;
                }
            }
            i = j;
        }
        self.series_refs = all;
        Ok(passes)
    }

    /// Re-reads the series section written so far and calls `f` with each series' ref and
    /// label symbol pairs.
    fn scan_series(&mut self, ids: &[u32], mut f: impl FnMut(u32, &[(u32, u32)])) -> Result<()> {
        self.w
            .flush()
            .map_err(|e| Error::io("flush", &self.path, e))?;
        let file = File::open(&self.path).map_err(|e| Error::io("open", &self.path, e))?;
        let mut r = BufReader::with_capacity(1 << 20, file);
        r.seek(SeekFrom::Start(self.toc.series))
            .map_err(|e| Error::io("seek", &self.path, e))?;
        let mut pos = self.toc.series;
        let mut body = Vec::new();
        let mut pairs = Vec::new();
        let corrupt = |at: u64, d: &str| {
            Error::corrupt(
                self.path.display().to_string(),
                at,
                "series entry (re-read)",
                d,
            )
        };
        for &id in ids {
            let at = u64::from(id) * SERIES_ALIGN;
            r.seek_relative((at - pos) as i64)
                .map_err(|e| Error::io("seek", &self.path, e))?;
            // Read the length varint byte by byte (at most 10 bytes).
            let mut lenbuf = [0u8; 10];
            let mut n = 0;
            loop {
                r.read_exact(&mut lenbuf[n..n + 1])
                    .map_err(|e| Error::io("read", &self.path, e))?;
                n += 1;
                if lenbuf[n - 1] < 0x80 || n == 10 {
                    break;
                }
            }
            let (len, _) = read_uvarint(&lenbuf[..n]).map_err(|e| corrupt(at, &e.to_string()))?;
            body.resize(len as usize + 4, 0);
            r.read_exact(&mut body)
                .map_err(|e| Error::io("read", &self.path, e))?;
            pos = at + n as u64 + len + 4;
            let mut d = crate::encoding::Decbuf::new(&body[..len as usize]);
            pairs.clear();
            let nl = d.uvarint().map_err(|e| corrupt(at, &e.to_string()))?;
            for _ in 0..nl {
                let name = d.uvarint32().map_err(|e| corrupt(at, &e.to_string()))?;
                let value = d.uvarint32().map_err(|e| corrupt(at, &e.to_string()))?;
                pairs.push((name, value));
            }
            f(id, &pairs);
        }
        Ok(())
    }

    fn write_postings_offset_table(&mut self, po: File, po_path: &Path, count: u32) -> Result<()> {
        self.toc.label_indices_table = self.pos;
        self.toc.postings_table = self.pos;
        let size = po
            .metadata()
            .map_err(|e| Error::io("stat", po_path, e))?
            .len();
        let len = 4 + size;
        if len > u64::from(u32::MAX) {
            return Err(self.err(format!(
                "postings offset table of {len} bytes exceeds 4 GiB"
            )));
        }
        self.write(&(len as u32).to_be_bytes())?;
        let count = count.to_be_bytes();
        let mut crc = crc32c::crc32c_append(0, &count);
        self.write(&count)?;
        let mut r = BufReader::with_capacity(1 << 20, po);
        r.seek(SeekFrom::Start(0))
            .map_err(|e| Error::io("seek", po_path, e))?;
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            let n = r
                .read(&mut chunk)
                .map_err(|e| Error::io("read", po_path, e))?;
            if n == 0 {
                break;
            }
            crc = crc32c::crc32c_append(crc, &chunk[..n]);
            self.write(&chunk[..n])?;
        }
        self.write(&crc.to_be_bytes())
    }
}
