//! Reading a whole index held in memory (usually memory-mapped).
//!
//! Opening checks the header, the TOC, the symbol table and the postings offset table, each
//! against its CRC32C, and validates every string once; after that, lookups only slice. Each
//! series entry and postings list is CRC-checked when read. The reader keeps per label value
//! one small entry (`ValueEntry`, 24 bytes) and per symbol one offset (4 bytes); strings stay
//! in the mapped file.

use std::ops::Range;
use std::path::Path;

use bytes::Bytes;
use strata_model::{Label, Labels};

use super::{MAGIC_INDEX, SERIES_ALIGN, Toc};
use crate::chunks::{ChunkMeta, ChunkRef};
use crate::encoding::{Decbuf, DecodeError, crc32c, read_uvarint};
use crate::error::{Error, Result};

/// Offset (relative to the first symbol) and length of each symbol; strings validated.
#[derive(Debug, Clone, Default)]
struct Symbols {
    base: usize,
    offsets: Vec<u32>,
}

#[derive(Debug, Clone, Copy)]
struct ValueEntry {
    value_at: u64,
    value_len: u32,
    postings_at: u64,
}

#[derive(Debug, Clone)]
struct NameEntry {
    name_at: u64,
    name_len: u32,
    values: Range<u32>,
}

/// A read-only view of an index file.
#[derive(Debug, Clone)]
pub struct IndexReader {
    file: String,
    data: Bytes,
    version: u8,
    toc: Toc,
    symbols: Symbols,
    names: Vec<NameEntry>,
    values: Vec<ValueEntry>,
    all_postings_at: Option<u64>,
    /// The mapping behind `data` when the index was opened from a file.
    mapped: Option<crate::Mapped>,
}

impl IndexReader {
    /// Memory-maps and opens the index at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let m = crate::Mapped::open(path)?;
        let mut r = Self::from_bytes(path.display().to_string(), m.bytes())?;
        r.mapped = Some(m);
        Ok(r)
    }

    /// Hands the resident pages of a memory-mapped index back to the kernel (a no-op for an
    /// index held in memory). Decoded symbols and offset tables are kept.
    pub fn release_memory(&self) {
        if let Some(m) = &self.mapped {
            m.release();
        }
    }

    /// Opens an index held in memory. `file` names it in errors.
    pub fn from_bytes(file: impl Into<String>, data: Bytes) -> Result<Self> {
        let file = file.into();
        if data.len() < 5 {
            return Err(Error::corrupt(
                &file,
                0,
                "index header",
                "file shorter than 5 bytes",
            ));
        }
        let magic = u32::from_be_bytes(data[..4].try_into().expect("4 bytes"));
        if magic != MAGIC_INDEX {
            return Err(Error::corrupt(
                &file,
                0,
                "index header",
                format!("magic {magic:#010x}, want {MAGIC_INDEX:#010x}"),
            ));
        }
        let version = data[4];
        match version {
            2 | 3 => {}
            1 => {
                return Err(Error::Unsupported {
                    file,
                    detail: "index format v1 (Prometheus < 2.8) is not supported; rewrite the block with a newer Prometheus or Thanos".into(),
                });
            }
            v => {
                return Err(Error::Unsupported {
                    file,
                    detail: format!("unknown index format version {v} (supported: 2, 3)"),
                });
            }
        }
        let toc = Toc::parse(&file, &data)?;
        let mut r = IndexReader {
            file,
            data,
            version,
            toc,
            symbols: Symbols::default(),
            names: Vec::new(),
            values: Vec::new(),
            all_postings_at: None,
            mapped: None,
        };
        r.symbols = r.read_symbols()?;
        r.read_postings_offset_table()?;
        Ok(r)
    }

    pub fn file(&self) -> &str {
        &self.file
    }

    pub fn version(&self) -> u8 {
        self.version
    }

    pub fn toc(&self) -> &Toc {
        &self.toc
    }

    /// Size of the index file in bytes.
    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }

    /// The raw index bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.data
    }

    /// Reads a `len BE32 | body | CRC32C` section at `at`, returning the body.
    fn crc_section(&self, at: u64, what: &'static str) -> Result<&[u8]> {
        self.crc_section_in(&self.data, at, what)
    }

    fn crc_section_in<'d>(&self, data: &'d Bytes, at: u64, what: &'static str) -> Result<&'d [u8]> {
        let body_end = (data.len() - super::TOC_LEN) as u64;
        let start = usize::try_from(at)
            .ok()
            .filter(|&s| (s as u64) + 4 <= body_end)
            .ok_or_else(|| {
                Error::corrupt(&self.file, at, what, "section offset outside the file")
            })?;
        let len = u32::from_be_bytes(data[start..start + 4].try_into().expect("4 bytes"));
        let end = start + 4 + len as usize;
        if end as u64 + 4 > data.len() as u64 {
            return Err(Error::corrupt(
                &self.file,
                at,
                what,
                format!("length {len} runs past the end of the file"),
            ));
        }
        let body = &data[start + 4..end];
        let stored = u32::from_be_bytes(data[end..end + 4].try_into().expect("4 bytes"));
        let computed = crc32c(body);
        if stored != computed {
            return Err(Error::corrupt(
                &self.file,
                at,
                what,
                format!("CRC32C mismatch: stored {stored:#010x}, computed {computed:#010x}"),
            ));
        }
        Ok(body)
    }

    fn read_symbols(&self) -> Result<Symbols> {
        const WHAT: &str = "symbol table";
        if self.toc.symbols == 0 {
            return Ok(Symbols::default());
        }
        let body = self.crc_section(self.toc.symbols, WHAT)?;
        let base_abs = self.toc.symbols as usize + 8;
        let mut d = Decbuf::new(body);
        let count = d
            .be32()
            .map_err(|e| Error::decode(&self.file, self.toc.symbols, WHAT, e))?;
        let mut offsets = Vec::with_capacity((count as usize).min(body.len()));
        let mut prev: Option<&[u8]> = None;
        for i in 0..count {
            let rel = body.len() - d.remaining() - 4;
            let at = (base_abs + rel) as u64;
            let s = d
                .uvarint_bytes()
                .map_err(|e| Error::decode(&self.file, at, WHAT, e))?;
            if std::str::from_utf8(s).is_err() {
                return Err(Error::decode(
                    &self.file,
                    at,
                    WHAT,
                    DecodeError::InvalidUtf8,
                ));
            }
            if prev.is_some_and(|p| p >= s) {
                return Err(Error::corrupt(
                    &self.file,
                    at,
                    WHAT,
                    format!(
                        "symbol {i} is not greater than the previous one (table must be sorted and unique)"
                    ),
                ));
            }
            prev = Some(s);
            offsets.push(rel as u32);
        }
        Ok(Symbols {
            base: base_abs,
            offsets,
        })
    }

    fn read_postings_offset_table(&mut self) -> Result<()> {
        const WHAT: &str = "postings offset table";
        let at = self.toc.postings_table;
        if at == 0 {
            return Ok(());
        }
        let data = self.data.clone();
        let body = self.crc_section_in(&data, at, WHAT)?;
        let body_abs = at + 4;
        let mut d = Decbuf::new(body);
        let count = d
            .be32()
            .map_err(|e| Error::decode(&self.file, at, WHAT, e))?;
        let mut all_postings_at = None;
        let mut names: Vec<NameEntry> = Vec::new();
        let mut values: Vec<ValueEntry> = Vec::with_capacity((count as usize).min(body.len() / 4));
        let mut prev: Option<(&[u8], &[u8])> = None;
        for _ in 0..count {
            let entry_at = body_abs + (body.len() - d.remaining()) as u64;
            let err = |e: DecodeError| Error::decode(&self.file, entry_at, WHAT, e);
            let keys = d.uvarint().map_err(err)?;
            if keys != 2 {
                return Err(Error::corrupt(
                    &self.file,
                    entry_at,
                    WHAT,
                    format!("entry has {keys} keys, want 2"),
                ));
            }
            let name = d.uvarint_bytes().map_err(err)?;
            // Where the string bytes end, minus their length: immune to non-minimal varints.
            let name_off = body_abs + (body.len() - d.remaining() - name.len()) as u64;
            let value = d.uvarint_bytes().map_err(err)?;
            let value_off = body_abs + (body.len() - d.remaining() - value.len()) as u64;
            let postings_at = d.uvarint().map_err(err)?;
            if std::str::from_utf8(name).is_err() || std::str::from_utf8(value).is_err() {
                return Err(err(DecodeError::InvalidUtf8));
            }
            if prev.is_some_and(|p| p >= (name, value)) {
                return Err(Error::corrupt(
                    &self.file,
                    entry_at,
                    WHAT,
                    "entries are not sorted by label name and value",
                ));
            }
            prev = Some((name, value));
            if postings_at >= self.data.len() as u64 {
                return Err(Error::corrupt(
                    &self.file,
                    entry_at,
                    WHAT,
                    format!("postings offset {postings_at} outside the file"),
                ));
            }
            if name.is_empty() {
                if value.is_empty() {
                    all_postings_at = Some(postings_at);
                    continue;
                }
                return Err(Error::corrupt(
                    &self.file,
                    entry_at,
                    WHAT,
                    "entry with an empty label name and a non-empty value",
                ));
            }
            let vi = values.len() as u32;
            match names.last_mut() {
                Some(n) if self.data[n.name_at as usize..][..n.name_len as usize] == *name => {
                    n.values.end = vi + 1;
                }
                _ => names.push(NameEntry {
                    name_at: name_off,
                    name_len: name.len() as u32,
                    values: vi..vi + 1,
                }),
            }
            values.push(ValueEntry {
                value_at: value_off,
                value_len: value.len() as u32,
                postings_at,
            });
        }
        self.names = names;
        self.values = values;
        self.all_postings_at = all_postings_at;
        Ok(())
    }

    /// A string validated as UTF-8 when the index was opened.
    #[inline]
    fn str_at(&self, at: u64, len: u32) -> &str {
        let b = &self.data[at as usize..at as usize + len as usize];
        std::str::from_utf8(b).expect("validated as UTF-8 when the index was opened")
    }

    pub fn num_symbols(&self) -> usize {
        self.symbols.offsets.len()
    }

    /// The symbol with ordinal `id` (v2 symbol reference).
    pub fn symbol(&self, id: u32) -> Result<&str> {
        let rel = *self.symbols.offsets.get(id as usize).ok_or_else(|| {
            Error::corrupt(
                &self.file,
                self.toc.symbols,
                "symbol reference",
                format!(
                    "symbol {id} out of range: the table has {}",
                    self.symbols.offsets.len()
                ),
            )
        })?;
        let at = self.symbols.base + rel as usize;
        let (len, n) = read_uvarint(&self.data[at..]).expect("validated when the index was opened");
        Ok(self.str_at((at + n) as u64, len as u32))
    }

    /// Every symbol, in sorted order.
    pub fn symbols(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.symbols.offsets.len() as u32).map(|i| self.symbol(i).expect("in range"))
    }

    /// All label names, sorted.
    pub fn label_names(&self) -> Vec<&str> {
        self.names
            .iter()
            .map(|n| self.str_at(n.name_at, n.name_len))
            .collect()
    }

    fn name_entry(&self, name: &str) -> Option<&NameEntry> {
        self.names
            .binary_search_by(|n| self.str_at(n.name_at, n.name_len).cmp(name))
            .ok()
            .map(|i| &self.names[i])
    }

    fn value_entries(&self, name: &str) -> &[ValueEntry] {
        match self.name_entry(name) {
            Some(n) => &self.values[n.values.start as usize..n.values.end as usize],
            None => &[],
        }
    }

    /// Every value of label `name`, sorted.
    pub fn label_values(&self, name: &str) -> Vec<&str> {
        self.value_entries(name)
            .iter()
            .map(|v| self.str_at(v.value_at, v.value_len))
            .collect()
    }

    /// Number of distinct values of label `name`.
    pub fn num_label_values(&self, name: &str) -> usize {
        self.value_entries(name).len()
    }

    /// Decodes the postings list whose `len` field is at `at`.
    pub fn postings_at(&self, at: u64) -> Result<Vec<u32>> {
        let body = self.crc_section(at, "postings list")?;
        decode_postings(body).map_err(|e| Error::decode(&self.file, at, "postings list", e))
    }

    /// Every series ref in the index, sorted.
    pub fn all_postings(&self) -> Result<Vec<u32>> {
        match self.all_postings_at {
            Some(at) => self.postings_at(at),
            None => Ok(Vec::new()),
        }
    }

    /// Series with label `name` equal to `value`.
    pub fn postings(&self, name: &str, value: &str) -> Result<Vec<u32>> {
        let entries = self.value_entries(name);
        match entries.binary_search_by(|v| self.str_at(v.value_at, v.value_len).cmp(value)) {
            Ok(i) => self.postings_at(entries[i].postings_at),
            Err(_) => Ok(Vec::new()),
        }
    }

    /// The union of the postings of `name` for each value in `values`.
    pub fn postings_for_values(&self, name: &str, values: &[&str]) -> Result<Vec<u32>> {
        let entries = self.value_entries(name);
        let mut lists = Vec::new();
        for v in values {
            if let Ok(i) = entries.binary_search_by(|e| self.str_at(e.value_at, e.value_len).cmp(v))
            {
                lists.push(self.postings_at(entries[i].postings_at)?);
            }
        }
        Ok(super::union_many(lists))
    }

    /// The union of the postings of `name` for every value starting with `prefix` that
    /// `accept` accepts.
    pub fn postings_matching(
        &self,
        name: &str,
        prefix: &str,
        accept: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Vec<u32>> {
        let entries = self.value_entries(name);
        let start = entries.partition_point(|e| self.str_at(e.value_at, e.value_len) < prefix);
        let mut lists = Vec::new();
        for e in &entries[start..] {
            let v = self.str_at(e.value_at, e.value_len);
            if !v.starts_with(prefix) {
                break;
            }
            if accept(v) {
                lists.push(self.postings_at(e.postings_at)?);
            }
        }
        Ok(super::union_many(lists))
    }

    /// The label and chunk references of series `id`, decoded into reusable buffers.
    pub fn series_raw(
        &self,
        id: u32,
        label_refs: &mut Vec<(u32, u32)>,
        chunks: &mut Vec<ChunkMeta>,
    ) -> Result<()> {
        let at = u64::from(id) * SERIES_ALIGN;
        let body = self.series_body(at)?;
        decode_series_entry(body, label_refs, chunks)
            .map_err(|e| Error::decode(&self.file, at, "series entry", e))
    }

    fn series_body(&self, at: u64) -> Result<&[u8]> {
        const WHAT: &str = "series entry";
        let body_end = self.data.len() - super::TOC_LEN;
        let start = usize::try_from(at)
            .ok()
            .filter(|&s| s >= 5 && s < body_end)
            .ok_or_else(|| Error::corrupt(&self.file, at, WHAT, "series ref outside the file"))?;
        let (len, n) = read_uvarint(&self.data[start..body_end])
            .map_err(|e| Error::decode(&self.file, at, WHAT, e))?;
        let body_start = start + n;
        let body_end_at = usize::try_from(len)
            .ok()
            .and_then(|l| body_start.checked_add(l))
            .filter(|&e| e + 4 <= body_end)
            .ok_or_else(|| {
                Error::corrupt(
                    &self.file,
                    at,
                    WHAT,
                    format!("length {len} runs past the end"),
                )
            })?;
        let body = &self.data[body_start..body_end_at];
        let stored = u32::from_be_bytes(
            self.data[body_end_at..body_end_at + 4]
                .try_into()
                .expect("4"),
        );
        let computed = crc32c(body);
        if stored != computed {
            return Err(Error::corrupt(
                &self.file,
                at,
                WHAT,
                format!("CRC32C mismatch: stored {stored:#010x}, computed {computed:#010x}"),
            ));
        }
        Ok(body)
    }

    /// Resolves symbol references into a label set.
    pub fn resolve_labels(&self, label_refs: &[(u32, u32)]) -> Result<Labels> {
        let mut labels = Vec::with_capacity(label_refs.len());
        for &(n, v) in label_refs {
            labels.push(Label::new(self.symbol(n)?, self.symbol(v)?));
        }
        if !Labels::is_valid_sorted(&labels) {
            return Err(Error::corrupt(
                &self.file,
                0,
                "series entry",
                "labels are not sorted by name or repeat a name",
            ));
        }
        Ok(Labels::from_sorted(labels))
    }

    /// The labels and chunks of series `id`.
    pub fn series(&self, id: u32) -> Result<(Labels, Vec<ChunkMeta>)> {
        let (mut refs, mut chunks) = (Vec::new(), Vec::new());
        self.series_raw(id, &mut refs, &mut chunks)?;
        Ok((self.resolve_labels(&refs)?, chunks))
    }
}

/// Decodes a postings list body (`count BE32 | count × BE32`).
pub fn decode_postings(body: &[u8]) -> Result<Vec<u32>, DecodeError> {
    let mut d = Decbuf::new(body);
    let count = d.be32()? as usize;
    let refs = d.rest();
    if refs.len() != count * 4 {
        return Err(DecodeError::OutOfRange("postings count"));
    }
    let out: Vec<u32> = refs
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes(c.try_into().expect("4 bytes")))
        .collect();
    if out.windows(2).any(|w| w[0] >= w[1]) {
        return Err(DecodeError::OutOfRange(
            "postings order (refs must increase)",
        ));
    }
    Ok(out)
}

/// Decodes a series entry body into label symbol refs and chunk metas.
pub fn decode_series_entry(
    body: &[u8],
    label_refs: &mut Vec<(u32, u32)>,
    chunks: &mut Vec<ChunkMeta>,
) -> Result<(), DecodeError> {
    label_refs.clear();
    chunks.clear();
    let mut d = Decbuf::new(body);
    let nlabels = d.uvarint_count()?;
    for _ in 0..nlabels {
        let n = d.uvarint32()?;
        let v = d.uvarint32()?;
        label_refs.push((n, v));
    }
    let nchunks = d.uvarint_count()?;
    if nchunks == 0 {
        return Ok(());
    }
    chunks.reserve(nchunks);
    let mint = d.varint()?;
    let maxt = mint.wrapping_add(d.uvarint()? as i64);
    let mut r = d.uvarint()?;
    chunks.push(ChunkMeta {
        min_time: mint,
        max_time: maxt,
        chunk_ref: ChunkRef(r),
    });
    let mut prev_maxt = maxt;
    for _ in 1..nchunks {
        let mint = prev_maxt.wrapping_add(d.uvarint()? as i64);
        let maxt = mint.wrapping_add(d.uvarint()? as i64);
        r = r.wrapping_add(d.varint()? as u64);
        chunks.push(ChunkMeta {
            min_time: mint,
            max_time: maxt,
            chunk_ref: ChunkRef(r),
        });
        prev_maxt = maxt;
    }
    Ok(())
}

impl super::PostingsIndex for IndexReader {
    fn all_postings(&self) -> Result<Vec<u32>> {
        IndexReader::all_postings(self)
    }

    fn postings_for_values(&self, name: &str, values: &[&str]) -> Result<Vec<u32>> {
        IndexReader::postings_for_values(self, name, values)
    }

    fn postings_matching(
        &self,
        name: &str,
        prefix: &str,
        accept: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Vec<u32>> {
        IndexReader::postings_matching(self, name, prefix, accept)
    }
}
