//! The index-header: the parts of a block's `index` that selecting series needs, kept on local
//! disk so that a block is queryable without downloading its index.
//!
//! The file is Thanos' binary index-header, format v1 (`pkg/block/indexheader/binary_reader.go`),
//! so a data directory can move between Thanos and Strata:
//!
//! ```text
//! magic BE32 0xBAAAD792 | version u8 = 1 | index version u8 | BE64 postings offset table position in the index
//! symbol table            raw copy of index bytes [TOC.symbols, next section)
//! postings offset table   raw copy of index bytes [TOC.postings_offset_table, EOF), the index TOC included
//! TOC                     BE64 symbols position | BE64 postings offset table position | CRC32C of those 16 bytes
//! ```
//!
//! It is built ([`build`]) from three range reads of the index in the bucket (TOC, symbol table,
//! postings offset table), streamed to `<data-dir>/<ULID>/index-header` through a temporary file
//! and renamed into place, so a crash never leaves a half-written header that looks whole. A
//! restart reuses the file.
//!
//! The reader ([`IndexHeader`]) never maps the file. Opening it streams through the two
//! sections once (checking their CRC32C) and keeps in memory only every label name, every 32nd
//! value of each name plus its last, and the position of every 32nd symbol: memory per block is
//! O(names + values/32 + symbols/32), not O(index). Everything else is read with `pread`
//! (`FileExt::read_at`) on demand. Lookups are synchronous file reads; callers run them on the
//! blocking pool.
//!
//! A postings list's byte range in the original index runs from its offset to the next entry's
//! offset (the next list), and for the last list to the position in the header field. Readers
//! of the range parse the list's own length and check its CRC, so a range that overshoots
//! (padding, the label-indices table) is harmless.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use strata_objstore::Bucket;
use strata_tsdb::index::{MAGIC_INDEX, TOC_LEN, Toc};
use ulid::Ulid;

use crate::error::StoreError;

/// Magic number at the start of an index-header file.
pub const MAGIC_INDEX_HEADER: u32 = 0xBAAA_D792;
/// The index-header format version written and read.
pub const INDEX_HEADER_V1: u8 = 1;
/// File name of the index-header inside `<data-dir>/<ULID>/`.
pub const INDEX_HEADER_FILENAME: &str = "index-header";
/// Keep every n-th postings offset and symbol offset in memory (Thanos'
/// `--store.index-header-posting-offsets-in-mem-sampling` default).
pub const SAMPLING: usize = 32;

const HEADER_LEN: u64 = 4 + 1 + 1 + 8;
const BINARY_TOC_LEN: u64 = 8 + 8 + 4;
/// Copy size when streaming index sections from the bucket into the header file.
const COPY_PIECE: u64 = 8 << 20;
/// Read-ahead of the sequential reader.
const READ_BUF: usize = 64 << 10;

/// Byte range of one postings list in the original index: `len BE32 | body | CRC32C`, possibly
/// followed by bytes that are not part of it.
pub type PostingsRange = Range<u64>;

fn corrupt(path: &Path, at: u64, detail: impl std::fmt::Display) -> StoreError {
    StoreError::CorruptIndexHeader {
        path: path.to_path_buf(),
        detail: format!("at offset {at}: {detail}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Building
// ---------------------------------------------------------------------------------------------

/// Builds the index-header of block `id` at `path` from range reads of `<id>/index` (of
/// `index_size` bytes) in `bucket`. Memory stays at one copy piece whatever the index size.
pub async fn build(
    bucket: &Bucket,
    id: Ulid,
    index_size: u64,
    path: &Path,
) -> Result<(), StoreError> {
    let key = format!("{id}/index");
    let berr = |source| StoreError::Bucket { block: id, source };
    if index_size < (5 + TOC_LEN) as u64 {
        return Err(StoreError::CorruptBlock {
            block: id,
            detail: format!("index is {index_size} bytes, too short for a header and a TOC"),
        });
    }
    let head = bucket.get_range(&key, 0..5).await.map_err(berr)?;
    if head.len() < 5 {
        return Err(StoreError::CorruptBlock {
            block: id,
            detail: "index shorter than its 5-byte header".into(),
        });
    }
    let magic = u32::from_be_bytes(head[..4].try_into().expect("4 bytes"));
    if magic != MAGIC_INDEX {
        return Err(StoreError::CorruptBlock {
            block: id,
            detail: format!("index magic {magic:#010x}, want {MAGIC_INDEX:#010x}"),
        });
    }
    let version = head[4];
    if version != 2 && version != 3 {
        return Err(StoreError::CorruptBlock {
            block: id,
            detail: format!(
                "index format v{version} is not supported (only v2 and v3; v1 blocks come from Prometheus < 2.8 and must be rewritten)"
            ),
        });
    }
    let tail = bucket
        .get_range(&key, index_size - TOC_LEN as u64..index_size)
        .await
        .map_err(berr)?;
    let file = format!("{}/{key}", bucket.name());
    let toc = Toc::parse_tail(&file, &tail, index_size).map_err(|e| StoreError::CorruptBlock {
        block: id,
        detail: e.to_string(),
    })?;
    let symbols_end = [
        toc.series,
        toc.label_indices,
        toc.postings,
        toc.label_indices_table,
        toc.postings_table,
    ]
    .into_iter()
    .filter(|&o| o > toc.symbols)
    .min()
    .unwrap_or(toc.symbols);
    if toc.symbols == 0 || symbols_end <= toc.symbols || toc.postings_table == 0 {
        return Err(StoreError::CorruptBlock {
            block: id,
            detail: format!("index TOC lacks a symbol table or postings offset table: {toc:?}"),
        });
    }

    let dir = path.parent().expect("header path has a parent");
    std::fs::create_dir_all(dir).map_err(|e| StoreError::io("create directory", dir, e))?;
    let tmp = path.with_extension("tmp");
    let res = async {
        let f = File::create(&tmp).map_err(|e| StoreError::io("create", &tmp, e))?;
        let mut w = BufWriter::with_capacity(256 << 10, f);
        let mut head = Vec::with_capacity(HEADER_LEN as usize);
        head.extend_from_slice(&MAGIC_INDEX_HEADER.to_be_bytes());
        head.push(INDEX_HEADER_V1);
        head.push(version);
        head.extend_from_slice(&toc.postings_table.to_be_bytes());
        w.write_all(&head)
            .map_err(|e| StoreError::io("write", &tmp, e))?;
        let symbols_at = HEADER_LEN;
        copy_range(bucket, id, &key, toc.symbols..symbols_end, &mut w, &tmp).await?;
        let pot_at = symbols_at + (symbols_end - toc.symbols);
        copy_range(
            bucket,
            id,
            &key,
            toc.postings_table..index_size,
            &mut w,
            &tmp,
        )
        .await?;
        let mut btoc = Vec::with_capacity(BINARY_TOC_LEN as usize);
        btoc.extend_from_slice(&symbols_at.to_be_bytes());
        btoc.extend_from_slice(&pot_at.to_be_bytes());
        let crc = crc32c::crc32c(&btoc);
        btoc.extend_from_slice(&crc.to_be_bytes());
        w.write_all(&btoc)
            .map_err(|e| StoreError::io("write", &tmp, e))?;
        let f = w
            .into_inner()
            .map_err(|e| StoreError::io("flush", &tmp, e.into_error()))?;
        f.sync_all().map_err(|e| StoreError::io("fsync", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| StoreError::io("rename", &tmp, e))
    }
    .await;
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

async fn copy_range(
    bucket: &Bucket,
    id: Ulid,
    key: &str,
    range: Range<u64>,
    w: &mut impl Write,
    tmp: &Path,
) -> Result<(), StoreError> {
    let mut at = range.start;
    while at < range.end {
        let end = (at + COPY_PIECE).min(range.end);
        let piece = bucket
            .get_range(key, at..end)
            .await
            .map_err(|source| StoreError::Bucket { block: id, source })?;
        if piece.len() as u64 != end - at {
            return Err(StoreError::CorruptBlock {
                block: id,
                detail: format!(
                    "index range {at}..{end} came back with {} bytes: the object is shorter than its TOC says",
                    piece.len()
                ),
            });
        }
        w.write_all(&piece)
            .map_err(|e| StoreError::io("write", tmp, e))?;
        at = end;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Sequential reading with pread
// ---------------------------------------------------------------------------------------------

/// A forward-only cursor over `[pos, end)` of a file, reading ahead with `pread`.
struct SeqReader<'f> {
    file: &'f File,
    path: &'f Path,
    /// File offset of `buf[0]`.
    buf_at: u64,
    buf: Vec<u8>,
    /// Read position inside `buf`.
    i: usize,
    end: u64,
    read_ahead: usize,
}

impl<'f> SeqReader<'f> {
    /// A reader for a whole-section scan: reads ahead in large pieces.
    fn new(file: &'f File, path: &'f Path, at: u64, end: u64) -> Self {
        Self::with_read_ahead(file, path, at, end, READ_BUF)
    }

    /// A reader for a short lookup, which usually needs a few hundred bytes.
    fn with_read_ahead(
        file: &'f File,
        path: &'f Path,
        at: u64,
        end: u64,
        read_ahead: usize,
    ) -> Self {
        SeqReader {
            file,
            path,
            buf_at: at,
            buf: Vec::new(),
            i: 0,
            end,
            read_ahead,
        }
    }

    /// File offset of the next byte.
    fn pos(&self) -> u64 {
        self.buf_at + self.i as u64
    }

    fn at_end(&self) -> bool {
        self.pos() >= self.end
    }

    /// Makes at least `n` unread bytes available in `buf[i..]`.
    fn need(&mut self, n: usize) -> Result<(), StoreError> {
        if self.buf.len() - self.i >= n {
            return Ok(());
        }
        let pos = self.pos();
        if pos + n as u64 > self.end {
            return Err(corrupt(
                self.path,
                pos,
                format!(
                    "need {n} bytes but the section ends at {} (truncated or corrupt file)",
                    self.end
                ),
            ));
        }
        let want = n.max(self.read_ahead).min((self.end - pos) as usize);
        // Read ahead more the further a scan goes.
        self.read_ahead = (self.read_ahead * 2).min(READ_BUF);
        self.buf.drain(..self.i);
        self.buf_at = pos;
        self.i = 0;
        let have = self.buf.len();
        self.buf.resize(want, 0);
        read_exact_at(
            self.file,
            self.path,
            &mut self.buf[have..],
            pos + have as u64,
        )
    }

    fn byte(&mut self) -> Result<u8, StoreError> {
        self.need(1)?;
        let b = self.buf[self.i];
        self.i += 1;
        Ok(b)
    }

    fn be32(&mut self) -> Result<u32, StoreError> {
        self.need(4)?;
        let v = u32::from_be_bytes(self.buf[self.i..self.i + 4].try_into().expect("4"));
        self.i += 4;
        Ok(v)
    }

    fn uvarint(&mut self) -> Result<u64, StoreError> {
        let mut x = 0u64;
        let mut shift = 0;
        for n in 0..10 {
            let b = self.byte()?;
            if b < 0x80 {
                if n == 9 && b > 1 {
                    break;
                }
                return Ok(x | (u64::from(b) << shift));
            }
            x |= u64::from(b & 0x7f) << shift;
            shift += 7;
        }
        Err(corrupt(self.path, self.pos(), "varint overflows 64 bits"))
    }

    /// A `uvarint length | bytes` string, borrowed from the read buffer.
    fn uvarint_str(&mut self) -> Result<&str, StoreError> {
        let at = self.pos();
        let len = self.uvarint()?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l as u64 <= self.end - self.pos())
            .ok_or_else(|| {
                corrupt(
                    self.path,
                    at,
                    format!("string length {len} runs past the section"),
                )
            })?;
        self.need(len)?;
        let b = &self.buf[self.i..self.i + len];
        self.i += len;
        std::str::from_utf8(b).map_err(|_| corrupt(self.path, at, "string is not valid UTF-8"))
    }

    fn skip_uvarint_str(&mut self) -> Result<(), StoreError> {
        let at = self.pos();
        let len = self.uvarint()?;
        if len > self.end - self.pos() {
            return Err(corrupt(
                self.path,
                at,
                format!("string length {len} runs past the section"),
            ));
        }
        let len = len as usize;
        if self.buf.len() - self.i >= len {
            self.i += len;
        } else {
            // Jump without reading what is skipped.
            let to = self.pos() + len as u64;
            self.buf.clear();
            self.i = 0;
            self.buf_at = to;
        }
        Ok(())
    }
}

fn read_exact_at(file: &File, path: &Path, buf: &mut [u8], at: u64) -> Result<(), StoreError> {
    file.read_exact_at(buf, at)
        .map_err(|e| StoreError::io("read", path, e))
}

/// CRC32C of `[at, at + len)` of a file, streamed.
fn crc_of(file: &File, path: &Path, at: u64, len: u64) -> Result<u32, StoreError> {
    let mut crc = 0u32;
    let mut buf = vec![0u8; READ_BUF.min(len as usize).max(1)];
    let mut pos = at;
    let end = at + len;
    while pos < end {
        let n = ((end - pos) as usize).min(buf.len());
        read_exact_at(file, path, &mut buf[..n], pos)?;
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        pos += n as u64;
    }
    Ok(crc)
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// One sampled postings offset table entry.
#[derive(Debug)]
struct Sample {
    value: Box<str>,
    /// File offset of the entry in the header.
    entry_at: u64,
}

#[derive(Debug)]
struct NameEntry {
    name: Box<str>,
    /// Every [`SAMPLING`]-th value from the first, plus the last.
    samples: Vec<Sample>,
    /// File offset just past this name's last entry.
    end_at: u64,
    /// Postings offset of the entry after this name's last one: the end of its last list.
    next_postings: u64,
}

/// A block's index-header opened for lookups.
#[derive(Debug)]
pub struct IndexHeader {
    path: PathBuf,
    file: File,
    index_version: u8,
    /// File offset of the first symbol (after the table's length and count).
    symbols_at: u64,
    symbols_end: u64,
    num_symbols: u32,
    /// File offsets of symbols 0, 32, 64, …
    symbol_samples: Vec<u64>,
    names: Vec<NameEntry>,
    all_postings: Option<PostingsRange>,
    /// Bytes of the file, for metrics.
    size: u64,
}

impl IndexHeader {
    /// Opens and checks an index-header file.
    pub fn open(path: &Path) -> Result<IndexHeader, StoreError> {
        let file = File::open(path).map_err(|e| StoreError::io("open", path, e))?;
        let size = file
            .metadata()
            .map_err(|e| StoreError::io("stat", path, e))?
            .len();
        if size < HEADER_LEN + BINARY_TOC_LEN {
            return Err(corrupt(path, 0, format!("file is {size} bytes, too short")));
        }
        let mut head = [0u8; HEADER_LEN as usize];
        read_exact_at(&file, path, &mut head, 0)?;
        let magic = u32::from_be_bytes(head[..4].try_into().expect("4"));
        if magic != MAGIC_INDEX_HEADER {
            return Err(corrupt(
                path,
                0,
                format!("magic {magic:#010x}, want {MAGIC_INDEX_HEADER:#010x}"),
            ));
        }
        if head[4] != INDEX_HEADER_V1 {
            return Err(corrupt(
                path,
                4,
                format!("unknown index-header version {}", head[4]),
            ));
        }
        let index_version = head[5];
        if index_version != 2 && index_version != 3 {
            return Err(corrupt(
                path,
                5,
                format!("index format v{index_version} is not supported (only v2 and v3)"),
            ));
        }
        let last_posting_end = u64::from_be_bytes(head[6..14].try_into().expect("8"));

        let toc_at = size - BINARY_TOC_LEN;
        let mut toc = [0u8; BINARY_TOC_LEN as usize];
        read_exact_at(&file, path, &mut toc, toc_at)?;
        let stored = u32::from_be_bytes(toc[16..20].try_into().expect("4"));
        let computed = crc32c::crc32c(&toc[..16]);
        if stored != computed {
            return Err(corrupt(
                path,
                toc_at,
                format!("TOC CRC32C mismatch: stored {stored:#010x}, computed {computed:#010x}"),
            ));
        }
        let symbols_off = u64::from_be_bytes(toc[..8].try_into().expect("8"));
        let pot_off = u64::from_be_bytes(toc[8..16].try_into().expect("8"));
        if symbols_off < HEADER_LEN || pot_off <= symbols_off || pot_off >= toc_at {
            return Err(corrupt(
                path,
                toc_at,
                format!(
                    "TOC positions symbols={symbols_off} postings offset table={pot_off} are inconsistent"
                ),
            ));
        }

        let mut h = IndexHeader {
            path: path.to_path_buf(),
            file,
            index_version,
            symbols_at: 0,
            symbols_end: 0,
            num_symbols: 0,
            symbol_samples: Vec::new(),
            names: Vec::new(),
            all_postings: None,
            size,
        };
        h.read_symbols(symbols_off, pot_off)?;
        h.read_postings_offset_table(pot_off, toc_at, last_posting_end)?;
        Ok(h)
    }

    /// Checks a `len BE32 | body | CRC32C` section at `at` (ending before `limit`); returns the
    /// body's range.
    fn section(&self, at: u64, limit: u64, what: &str) -> Result<Range<u64>, StoreError> {
        let mut b = [0u8; 4];
        if at + 4 > limit {
            return Err(corrupt(&self.path, at, format!("{what} runs past its end")));
        }
        read_exact_at(&self.file, &self.path, &mut b, at)?;
        let len = u64::from(u32::from_be_bytes(b));
        let body = at + 4..at + 4 + len;
        if body.end + 4 > limit {
            return Err(corrupt(
                &self.path,
                at,
                format!("{what} length {len} runs past its end at {limit}"),
            ));
        }
        read_exact_at(&self.file, &self.path, &mut b, body.end)?;
        let stored = u32::from_be_bytes(b);
        let computed = crc_of(&self.file, &self.path, body.start, len)?;
        if stored != computed {
            return Err(corrupt(
                &self.path,
                at,
                format!("{what} CRC32C mismatch: stored {stored:#010x}, computed {computed:#010x}"),
            ));
        }
        Ok(body)
    }

    fn read_symbols(&mut self, at: u64, limit: u64) -> Result<(), StoreError> {
        let body = self.section(at, limit, "symbol table")?;
        let mut r = SeqReader::new(&self.file, &self.path, body.start, body.end);
        let count = r.be32()?;
        self.symbols_at = r.pos();
        let mut samples = Vec::with_capacity(count as usize / SAMPLING + 1);
        for i in 0..count as usize {
            if i % SAMPLING == 0 {
                samples.push(r.pos());
            }
            r.uvarint_str()?;
        }
        self.symbols_end = r.pos();
        self.num_symbols = count;
        self.symbol_samples = samples;
        Ok(())
    }

    fn read_postings_offset_table(
        &mut self,
        at: u64,
        limit: u64,
        last_posting_end: u64,
    ) -> Result<(), StoreError> {
        let body = self.section(at, limit, "postings offset table")?;
        let mut r = SeqReader::new(&self.file, &self.path, body.start, body.end);
        let count = r.be32()?;
        let mut names: Vec<NameEntry> = Vec::new();
        // The previous entry: (name index or None for the all-postings key, value, entry offset,
        // postings offset).
        let mut prev_value: Option<(String, u64)> = None;
        let mut in_name_count = 0usize;
        let mut all_start: Option<u64> = None;
        for _ in 0..count {
            let entry_at = r.pos();
            let keys = r.uvarint()?;
            if keys != 2 {
                return Err(corrupt(
                    &self.path,
                    entry_at,
                    format!("entry has {keys} keys, want 2"),
                ));
            }
            let name = r.uvarint_str()?.to_string();
            let value = r.uvarint_str()?.to_string();
            let postings_at = r.uvarint()?;
            // The previous list ends where this one starts.
            if let Some(start) = all_start.take() {
                self.all_postings = Some(start..postings_at);
            }
            if name.is_empty() {
                if !value.is_empty() || !names.is_empty() {
                    return Err(corrupt(
                        &self.path,
                        entry_at,
                        "entry with an empty label name that is not the leading all-postings key",
                    ));
                }
                all_start = Some(postings_at);
                continue;
            }
            let new_name = names.last().is_none_or(|n| *n.name != *name);
            if new_name {
                if let Some(last) = names.last_mut() {
                    if *last.name > *name {
                        return Err(corrupt(&self.path, entry_at, "label names are not sorted"));
                    }
                    close_name(
                        last,
                        prev_value.take(),
                        in_name_count,
                        entry_at,
                        postings_at,
                    );
                }
                names.push(NameEntry {
                    name: name.into_boxed_str(),
                    samples: Vec::new(),
                    end_at: 0,
                    next_postings: 0,
                });
                in_name_count = 0;
            } else if prev_value.as_ref().is_some_and(|(p, _)| *p >= value) {
                return Err(corrupt(&self.path, entry_at, "label values are not sorted"));
            }
            let n = names.last_mut().expect("pushed above");
            if in_name_count.is_multiple_of(SAMPLING) {
                n.samples.push(Sample {
                    value: value.clone().into_boxed_str(),
                    entry_at,
                });
            }
            prev_value = Some((value, entry_at));
            in_name_count += 1;
        }
        if let Some(start) = all_start {
            self.all_postings = Some(start..last_posting_end);
        }
        let end = r.pos();
        if let Some(last) = names.last_mut() {
            close_name(last, prev_value, in_name_count, end, last_posting_end);
        }
        self.names = names;
        Ok(())
    }

    /// Label names, sorted.
    pub fn label_names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|n| &*n.name)
    }

    pub fn index_version(&self) -> u8 {
        self.index_version
    }

    pub fn num_symbols(&self) -> u32 {
        self.num_symbols
    }

    /// Size of the header file in bytes.
    pub fn file_size(&self) -> u64 {
        self.size
    }

    /// Bytes of heap this reader holds (approximately).
    pub fn memory_bytes(&self) -> usize {
        let names: usize = self
            .names
            .iter()
            .map(|n| {
                std::mem::size_of::<NameEntry>()
                    + n.name.len()
                    + n.samples
                        .iter()
                        .map(|s| std::mem::size_of::<Sample>() + s.value.len())
                        .sum::<usize>()
            })
            .sum();
        names + self.symbol_samples.len() * 8
    }

    /// The range of the list of every series, if the index has one.
    pub fn all_postings(&self) -> Option<PostingsRange> {
        self.all_postings.clone()
    }

    fn name(&self, name: &str) -> Option<&NameEntry> {
        self.names
            .binary_search_by(|n| (*n.name).cmp(name))
            .ok()
            .map(|i| &self.names[i])
    }

    /// Scans the values of `name` from the sample at or before `from`, in order, calling
    /// `f(value, range)` until it returns `false`. Returns whether `f` stopped the scan (as
    /// opposed to the name's values running out).
    fn scan(
        &self,
        n: &NameEntry,
        from: &str,
        f: &mut dyn FnMut(&str, PostingsRange) -> bool,
    ) -> Result<bool, StoreError> {
        let si = n
            .samples
            .partition_point(|s| *s.value <= *from)
            .saturating_sub(1);
        let Some(start) = n.samples.get(si) else {
            return Ok(false);
        };
        let mut r =
            SeqReader::with_read_ahead(&self.file, &self.path, start.entry_at, n.end_at, 1024);
        // Each value is reported once the next entry is read: its postings offset ends the
        // previous list.
        let mut pending: Option<(String, u64)> = None;
        loop {
            if r.at_end() {
                if let Some((v, p)) = pending.take() {
                    return Ok(!f(&v, p..n.next_postings));
                }
                return Ok(false);
            }
            r.uvarint()?;
            r.skip_uvarint_str()?;
            let value = r.uvarint_str()?.to_string();
            let postings_at = r.uvarint()?;
            if let Some((v, p)) = pending.take()
                && !f(&v, p..postings_at)
            {
                return Ok(true);
            }
            pending = Some((value, postings_at));
        }
    }

    /// Every value of `name`, sorted.
    pub fn label_values(&self, name: &str) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        if let Some(n) = self.name(name) {
            self.scan(n, "", &mut |v, _| {
                out.push(v.to_string());
                true
            })?;
        }
        Ok(out)
    }

    /// The postings ranges of `name=v` for each `v` in `values` that exists, in value order.
    pub fn postings_ranges(
        &self,
        name: &str,
        values: &[&str],
    ) -> Result<Vec<(String, PostingsRange)>, StoreError> {
        let mut out = Vec::new();
        let Some(n) = self.name(name) else {
            return Ok(out);
        };
        let mut wanted: Vec<&str> = values.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let mut i = 0;
        while i < wanted.len() {
            // Scan from the sample before the next wanted value, and keep going only while
            // wanted values lie before the following sample; past it, jump instead.
            let first = wanted[i];
            let next_sample = n
                .samples
                .get(n.samples.partition_point(|s| *s.value <= *first))
                .map(|s| &*s.value);
            let stopped = self.scan(n, first, &mut |v, range| {
                while i < wanted.len() && wanted[i] < v {
                    i += 1;
                }
                if i < wanted.len() && wanted[i] == v {
                    out.push((v.to_string(), range));
                    i += 1;
                }
                match (wanted.get(i), next_sample) {
                    (None, _) => false,
                    (Some(w), Some(s)) => *w < s,
                    (Some(_), None) => true,
                }
            })?;
            if !stopped {
                // The name's values ran out: the remaining wanted values do not exist.
                break;
            }
        }
        Ok(out)
    }

    /// The postings ranges of every value of `name` that starts with `prefix` and is accepted.
    pub fn postings_ranges_matching(
        &self,
        name: &str,
        prefix: &str,
        accept: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Vec<(String, PostingsRange)>, StoreError> {
        let mut out = Vec::new();
        let Some(n) = self.name(name) else {
            return Ok(out);
        };
        self.scan(n, prefix, &mut |v, range| {
            if v < prefix {
                return true;
            }
            if !v.starts_with(prefix) {
                return false;
            }
            if accept(v) {
                out.push((v.to_string(), range));
            }
            true
        })?;
        Ok(out)
    }

    /// Resolves symbol references (v2/v3: ordinals) into strings. `refs` need not be sorted;
    /// the result is in the same order. Each group of [`SAMPLING`] symbols is read at most once.
    pub fn lookup_symbols(&self, refs: &[u32]) -> Result<Vec<String>, StoreError> {
        let mut text = String::new();
        let mut spans = Vec::new();
        self.lookup_symbols_into(refs, &mut text, &mut spans)?;
        Ok(spans
            .iter()
            .map(|&(a, b)| text[a as usize..b as usize].to_string())
            .collect())
    }

    /// [`IndexHeader::lookup_symbols`] without a string per reference: each distinct symbol
    /// is appended to `text` once, and `spans[i]` (replaced, not appended to) is where
    /// `refs[i]`'s symbol lies in it.
    pub fn lookup_symbols_into(
        &self,
        refs: &[u32],
        text: &mut String,
        spans: &mut Vec<(u32, u32)>,
    ) -> Result<(), StoreError> {
        let mut order: Vec<usize> = (0..refs.len()).collect();
        order.sort_unstable_by_key(|&i| refs[i]);
        spans.clear();
        spans.resize(refs.len(), (0, 0));
        let mut k = 0;
        while k < order.len() {
            let r = refs[order[k]];
            if r >= self.num_symbols {
                return Err(corrupt(
                    &self.path,
                    self.symbols_at,
                    format!(
                        "symbol reference {r} out of range: the table has {}",
                        self.num_symbols
                    ),
                ));
            }
            let group = r as usize / SAMPLING;
            let start = self.symbol_samples[group];
            let end = self
                .symbol_samples
                .get(group + 1)
                .copied()
                .unwrap_or(self.symbols_end);
            let mut rd = SeqReader::new(&self.file, &self.path, start, end);
            let mut ordinal = (group * SAMPLING) as u32;
            // Symbols skipped on the way are only read; a wanted one is copied out once
            // however many references ask for it.
            let mut cur = None;
            let first = rd.uvarint_str()?;
            if r == ordinal {
                cur = Some(push_span(text, first)?);
            }
            while k < order.len() && (refs[order[k]] as usize) / SAMPLING == group {
                let want = refs[order[k]];
                while ordinal < want {
                    let s = rd.uvarint_str()?;
                    ordinal += 1;
                    if ordinal == want {
                        cur = Some(push_span(text, s)?);
                    }
                }
                spans[order[k]] = cur.expect("the wanted symbol was read");
                k += 1;
            }
        }
        Ok(())
    }
}

/// Appends `s` to `text` and returns its span; symbol tables over 4 GiB are refused.
fn push_span(text: &mut String, s: &str) -> Result<(u32, u32), StoreError> {
    let a = text.len();
    text.push_str(s);
    match (u32::try_from(a), u32::try_from(text.len())) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        _ => Err(StoreError::ResourceExhausted(
            "a batch's label symbols exceed 4 GiB".into(),
        )),
    }
}

fn close_name(
    n: &mut NameEntry,
    last: Option<(String, u64)>,
    count: usize,
    end_at: u64,
    next_postings: u64,
) {
    n.end_at = end_at;
    n.next_postings = next_postings;
    // Always keep the last value, unless it was sampled already.
    if let Some((value, entry_at)) = last
        && !(count - 1).is_multiple_of(SAMPLING)
    {
        n.samples.push(Sample {
            value: value.into_boxed_str(),
            entry_at,
        });
    }
}

/// Path of a block's index-header under the data directory.
pub fn header_path(data_dir: &Path, id: Ulid) -> PathBuf {
    data_dir.join(id.to_string()).join(INDEX_HEADER_FILENAME)
}

/// Decodes a postings list fetched from `range` of block `block`'s index: `len BE32 | body |
/// CRC32C`, followed by anything. The list's length and CRC are checked.
pub fn decode_postings_list(block: Ulid, at: u64, data: &[u8]) -> Result<Vec<u32>, StoreError> {
    let bad = |detail: String| StoreError::CorruptBlock {
        block,
        detail: format!("postings list at index offset {at}: {detail}"),
    };
    if data.len() < 8 {
        return Err(bad(format!("only {} bytes", data.len())));
    }
    let len = u32::from_be_bytes(data[..4].try_into().expect("4")) as usize;
    if data.len() < 8 + len {
        return Err(bad(format!(
            "length {len} runs past the {} bytes read",
            data.len()
        )));
    }
    let body = &data[4..4 + len];
    let stored = u32::from_be_bytes(data[4 + len..8 + len].try_into().expect("4"));
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(bad(format!(
            "CRC32C mismatch: stored {stored:#010x}, computed {computed:#010x}"
        )));
    }
    strata_tsdb::index::decode_postings(body).map_err(|e| bad(e.to_string()))
}

/// The length a postings list at the start of `data` says it has (with its length field and
/// CRC), if `data` holds at least its length field.
pub fn postings_list_len(data: &[u8]) -> Option<u64> {
    let b: [u8; 4] = data.get(..4)?.try_into().ok()?;
    Some(u64::from(u32::from_be_bytes(b)) + 8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_model::Labels;
    use strata_objstore::{Bucket, BucketMetrics};
    use strata_tsdb::{BlockWriter, BlockWriterOptions, IndexReader};

    fn write_block(dir: &Path) -> Ulid {
        let mut w = BlockWriter::new(dir, BlockWriterOptions::default()).unwrap();
        let mut series = Vec::new();
        for name in ["a_metric", "b_metric"] {
            for i in 0..150 {
                let mut l = vec![
                    ("__name__", name.to_string()),
                    ("i", format!("v{i:04}")),
                    ("job", format!("job{}", i % 3)),
                ];
                if i == 7 {
                    l.push(("zz", "only".to_string()));
                }
                series.push(Labels::from_pairs(&l));
            }
        }
        series.sort();
        for l in &series {
            w.add_series(l, &[(1000, 1.0), (2000, 2.0)]).unwrap();
        }
        w.finish().unwrap().ulid
    }

    #[tokio::test]
    async fn header_agrees_with_the_index() {
        let tmp = tempfile::tempdir().unwrap();
        let bucket_dir = tmp.path().join("bucket");
        std::fs::create_dir_all(&bucket_dir).unwrap();
        let id = write_block(&bucket_dir);
        let yaml = format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            bucket_dir.display()
        );
        let bucket = Bucket::from_yaml(&yaml, &BucketMetrics::unregistered()).unwrap();
        let index_path = bucket_dir.join(id.to_string()).join("index");
        let index_bytes = std::fs::read(&index_path).unwrap();
        let ix = IndexReader::open(&index_path).unwrap();

        let path = header_path(&tmp.path().join("data"), id);
        build(&bucket, id, index_bytes.len() as u64, &path)
            .await
            .unwrap();
        let h = IndexHeader::open(&path).unwrap();

        assert_eq!(h.label_names().collect::<Vec<_>>(), ix.label_names());
        for name in ix.label_names() {
            assert_eq!(
                h.label_values(name).unwrap(),
                ix.label_values(name),
                "{name}"
            );
        }
        let fetch = |r: &PostingsRange| {
            let end = (r.end as usize).min(index_bytes.len());
            decode_postings_list(id, r.start, &index_bytes[r.start as usize..end]).unwrap()
        };
        // Exact lookups across sample boundaries, with missing values mixed in.
        let values: Vec<String> = ix.label_values("i").iter().map(|s| s.to_string()).collect();
        let mut wanted: Vec<&str> = values.iter().step_by(7).map(String::as_str).collect();
        wanted.extend(["v0000x", "a", "zzz", "v0031", "v0032", "v0033", "v0149"]);
        let got = h.postings_ranges("i", &wanted).unwrap();
        let mut expect: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|v| values.iter().any(|x| x == v))
            .collect();
        expect.sort_unstable();
        expect.dedup();
        assert_eq!(
            got.iter().map(|(v, _)| v.as_str()).collect::<Vec<_>>(),
            expect
        );
        for (v, r) in &got {
            assert_eq!(fetch(r), ix.postings("i", v).unwrap(), "i={v}");
        }
        // Every list of every name, including the last list of the index.
        for name in ix.label_names() {
            let vals = ix.label_values(name);
            let got = h.postings_ranges(name, &vals).unwrap();
            assert_eq!(got.len(), vals.len());
            for (v, r) in &got {
                assert_eq!(fetch(r), ix.postings(name, v).unwrap(), "{name}={v}");
            }
        }
        assert_eq!(
            fetch(&h.all_postings().unwrap()),
            ix.all_postings().unwrap()
        );
        assert!(h.postings_ranges("nope", &["x"]).unwrap().is_empty());
        // Prefix scans.
        let m = h
            .postings_ranges_matching("i", "v01", &mut |v| v.ends_with('3'))
            .unwrap();
        let expect: Vec<&str> = values
            .iter()
            .map(String::as_str)
            .filter(|v| v.starts_with("v01") && v.ends_with('3'))
            .collect();
        assert_eq!(
            m.iter().map(|(v, _)| v.as_str()).collect::<Vec<_>>(),
            expect
        );
        // Symbols, in scrambled order.
        let n = ix.num_symbols() as u32;
        let refs: Vec<u32> = (0..n).rev().chain([0, n / 2, n - 1]).collect();
        let got = h.lookup_symbols(&refs).unwrap();
        for (r, s) in refs.iter().zip(&got) {
            assert_eq!(s, ix.symbol(*r).unwrap());
        }
        assert!(h.lookup_symbols(&[n]).is_err());
        assert!(h.memory_bytes() < 4096, "{}", h.memory_bytes());

        // A damaged byte is caught when the header is opened.
        let mut raw = std::fs::read(&path).unwrap();
        let mid = raw.len() / 2;
        raw[mid] ^= 0x40;
        std::fs::write(&path, &raw).unwrap();
        let err = IndexHeader::open(&path).unwrap_err().to_string();
        assert!(err.contains("CRC32C"), "{err}");
    }
}
