//! Prometheus' write-ahead log (`<data-dir>/wal`), written and read byte-compatibly with
//! Prometheus 2.42, so that a Thanos ruler's data directory keeps working when Strata takes it
//! over and Prometheus' own tools read ours.
//!
//! **Layout.** A WAL directory holds segment files `00000000`, `00000001`, … (eight-digit
//! zero-padded numbers, sequential without gaps), each at most [`DEFAULT_SEGMENT_SIZE`] and
//! written in [`PAGE_SIZE`] pages. A record (an opaque byte string, see [`record`] for what a
//! head writes) is split into fragments so that no fragment crosses a page; each fragment has a
//! 7-byte header:
//!
//! ```text
//! ┌───────────┬─────────────┬───────────────────────┬──────────────┐
//! │ type <1b> │ len <2b BE> │ CRC32-C(data) <4b BE> │ data <len b> │
//! └───────────┴─────────────┴───────────────────────┴──────────────┘
//! ```
//!
//! The type's low three bits say full (1), first (2), middle (3) or last (4) fragment; 0 means
//! "the rest of the page is zeros". Bit 3 marks a Snappy-compressed record (every fragment of
//! it). Fewer than seven bytes left in a page are padding. Records never cross segments: when
//! one does not fit the active segment, the writer starts the next one, which is what makes
//! dropping whole old segments ([`Wal::truncate`]) safe and keeps a torn write inside the last
//! segment.
//!
//! **Checkpoints** (`checkpoint.NNNNNNNN`, [`checkpoint()`]) are WAL directories holding what a
//! head still needs from segments `..=NNNNNNNN`; replay reads the last checkpoint and then the
//! segments after it ([`Reader::replay`]).
//!
//! **Crashes.** The writer hands every [`Wal::log`] call's bytes to the kernel before it returns
//! and fsyncs on [`Wal::fsync`], [`Wal::next_segment`] and [`Wal::close`]. A crash can leave
//! the last segment ending mid-record: the reader reports that as [`WalError::TornTail`] with
//! the offset of the last intact record, and [`repair`] truncates there.
//!
//! Differences from Prometheus 2.42: the reader is stricter about fragments that a Prometheus
//! writer never produces (a fragment crossing its page, fragments of one record disagreeing on
//! compression), and reports zstd-compressed fragments (Prometheus ≥ 2.45) as unsupported
//! rather than decoding garbage.

mod checkpoint;
mod error;
mod reader;
pub mod record;
#[cfg(test)]
mod tests;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

pub use checkpoint::{
    CHECKPOINT_PREFIX, CheckpointStats, checkpoint, checkpoint_dir, delete_checkpoints,
    last_checkpoint,
};
pub use error::{Corruption, WalError, WalResult};
pub use reader::{Reader, SegmentError, SegmentReader};

/// Segments are written in pages of this size.
pub const PAGE_SIZE: usize = 32 * 1024;
/// Size of a fragment header: type, length, CRC.
pub const HEADER_SIZE: usize = 7;
/// Prometheus' default segment size (`DefaultSegmentSize`).
pub const DEFAULT_SEGMENT_SIZE: u64 = 128 * 1024 * 1024;

pub(crate) const FRAG_FULL: u8 = 1;
pub(crate) const FRAG_FIRST: u8 = 2;
pub(crate) const FRAG_MIDDLE: u8 = 3;
pub(crate) const FRAG_LAST: u8 = 4;
pub(crate) const TYPE_MASK: u8 = 0b111;
pub(crate) const SNAPPY_FLAG: u8 = 1 << 3;
pub(crate) const ZSTD_FLAG: u8 = 1 << 4;
/// The compression flag bits a fragment type may carry.
pub(crate) const FLAG_MASK: u8 = SNAPPY_FLAG | ZSTD_FLAG;

/// How a [`Wal`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalOptions {
    /// Maximum segment size in bytes, a multiple of [`PAGE_SIZE`]. A single record larger than
    /// a segment still gets one segment of its own, which is then larger.
    pub segment_size: u64,
    /// Snappy-compress each record when that makes it smaller (`--tsdb.wal-compression`, on by
    /// default in Thanos).
    pub compress: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: DEFAULT_SEGMENT_SIZE,
            compress: true,
        }
    }
}

/// The path of segment `index` in `dir`.
pub fn segment_path(dir: &Path, index: u32) -> PathBuf {
    dir.join(format!("{index:08}"))
}

/// Parses a segment file name: decimal digits only (Prometheus accepts whatever `Atoi` does,
/// which for names it writes is the same thing).
fn parse_index(name: &str) -> Option<u32> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// The segment indexes in `dir`, ascending; an error if they have gaps, since a missing
/// segment in the middle means lost records that replay would silently skip.
pub fn list_segments(dir: &Path) -> WalResult<Vec<u32>> {
    let rd = fs::read_dir(dir).map_err(|e| WalError::io("list", dir, e))?;
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| WalError::io("list", dir, e))?;
        if let Some(i) = ent.file_name().to_str().and_then(parse_index) {
            out.push(i);
        }
    }
    out.sort_unstable();
    if let Some(w) = out.windows(2).find(|w| w[0].checked_add(1) != Some(w[1])) {
        return Err(WalError::Layout {
            dir: dir.to_path_buf(),
            detail: format!(
                "segments are not sequential: {:08} is followed by {:08}",
                w[0], w[1]
            ),
        });
    }
    Ok(out)
}

/// The range of segment indexes in `dir`, `None` when there are none.
pub fn segment_range(dir: &Path) -> WalResult<Option<RangeInclusive<u32>>> {
    let s = list_segments(dir)?;
    Ok(match (s.first(), s.last()) {
        (Some(&a), Some(&b)) => Some(a..=b),
        _ => None,
    })
}

/// The writer of a WAL directory.
///
/// Not thread-safe by itself: the head serializes appends (as Prometheus does with a mutex).
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    opts: WalOptions,
    file: File,
    segment: u32,
    /// Whole pages already in the active segment.
    done_pages: u64,
    page: Box<[u8; PAGE_SIZE]>,
    /// Bytes of `page` filled.
    alloc: usize,
    /// Bytes of `page` already written to the file.
    flushed: usize,
    snappy: snap::raw::Encoder,
    cbuf: Vec<u8>,
    poisoned: bool,
}

impl Wal {
    /// Opens the WAL in `dir` (created if missing) for appending. Like Prometheus, it never
    /// appends to an existing segment: it starts a new one after the last, so that whatever a
    /// crash left at the end of the old one stays behind a segment boundary.
    ///
    /// Replay and, if needed, [`repair`] come first: this only writes.
    pub fn open(dir: &Path, opts: WalOptions) -> WalResult<Wal> {
        if opts.segment_size == 0 || !opts.segment_size.is_multiple_of(PAGE_SIZE as u64) {
            return Err(WalError::Invalid {
                dir: dir.to_path_buf(),
                detail: format!(
                    "segment size {} is not a positive multiple of the {PAGE_SIZE}-byte page",
                    opts.segment_size
                ),
            });
        }
        fs::create_dir_all(dir).map_err(|e| WalError::io("create directory", dir, e))?;
        let next = match list_segments(dir)?.last() {
            Some(&l) => l.checked_add(1).ok_or_else(|| WalError::Invalid {
                dir: dir.to_path_buf(),
                detail: "segment numbers are exhausted".into(),
            })?,
            None => 0,
        };
        let (file, done_pages) = create_segment(dir, next)?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            opts,
            file,
            segment: next,
            done_pages,
            page: Box::new([0; PAGE_SIZE]),
            alloc: 0,
            flushed: 0,
            snappy: snap::raw::Encoder::new(),
            cbuf: Vec::new(),
            poisoned: false,
        })
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options the WAL writes with.
    pub fn options(&self) -> WalOptions {
        self.opts
    }

    /// The index of the segment being written.
    pub fn active_segment(&self) -> u32 {
        self.segment
    }

    /// The range of segments in the directory (the active one included).
    pub fn segments(&self) -> WalResult<RangeInclusive<u32>> {
        Ok(segment_range(&self.dir)?.unwrap_or(self.segment..=self.segment))
    }

    fn check(&self) -> WalResult<()> {
        if self.poisoned {
            return Err(WalError::Poisoned {
                dir: self.dir.clone(),
                segment: self.segment,
            });
        }
        Ok(())
    }

    fn write_failed<T>(&mut self, op: &'static str, e: std::io::Error) -> WalResult<T> {
        self.poisoned = true;
        Err(WalError::io(op, segment_path(&self.dir, self.segment), e))
    }

    /// Appends records in order and hands their bytes to the kernel before returning (not
    /// fsynced: see [`Wal::fsync`]). Several records per call make one write.
    pub fn log<R: AsRef<[u8]>>(&mut self, records: &[R]) -> WalResult<()> {
        self.check()?;
        for (i, r) in records.iter().enumerate() {
            self.log_one(r.as_ref(), i + 1 == records.len())?;
        }
        Ok(())
    }

    fn page_full(&self) -> bool {
        PAGE_SIZE - self.alloc < HEADER_SIZE
    }

    fn log_one(&mut self, rec: &[u8], last_of_batch: bool) -> WalResult<()> {
        if self.page_full() {
            self.flush_page(true)?;
        }
        // Compress first: the compressed size decides whether a new segment is needed.
        let mut cbuf = std::mem::take(&mut self.cbuf);
        let mut compressed = false;
        if self.opts.compress && !rec.is_empty() {
            cbuf.clear();
            cbuf.resize(snap::raw::max_compress_len(rec.len()), 0);
            if let Ok(n) = self.snappy.compress(rec, &mut cbuf) {
                cbuf.truncate(n);
                // Small records can grow; then they are stored as they are.
                compressed = n < rec.len();
            }
        }
        let res = self.write_fragments(if compressed { &cbuf } else { rec }, compressed);
        self.cbuf = cbuf;
        res?;
        if last_of_batch && self.alloc > 0 {
            self.flush_page(false)?;
        }
        Ok(())
    }

    fn write_fragments(&mut self, mut enc: &[u8], compressed: bool) -> WalResult<()> {
        // Room left in the active segment, page by page.
        let pages = self.opts.segment_size / PAGE_SIZE as u64;
        let free_pages = pages.saturating_sub(self.done_pages + 1);
        let left = (PAGE_SIZE - self.alloc).saturating_sub(HEADER_SIZE) as u64
            + (PAGE_SIZE - HEADER_SIZE) as u64 * free_pages;
        if enc.len() as u64 > left && (self.done_pages > 0 || self.alloc > 0) {
            self.next_segment()?;
        }
        let flag = if compressed { SNAPPY_FLAG } else { 0 };
        let mut first = true;
        // One pass at least, so that an empty record is written too.
        while first || !enc.is_empty() {
            let room = PAGE_SIZE - self.alloc - HEADER_SIZE;
            let n = enc.len().min(room);
            let (part, rest) = enc.split_at(n);
            let typ = match (first, rest.is_empty()) {
                (true, true) => FRAG_FULL,
                (true, false) => FRAG_FIRST,
                (false, false) => FRAG_MIDDLE,
                (false, true) => FRAG_LAST,
            };
            let buf = &mut self.page[self.alloc..];
            buf[0] = typ | flag;
            buf[1..3].copy_from_slice(&(n as u16).to_be_bytes());
            buf[3..7].copy_from_slice(&crate::encoding::crc32c(part).to_be_bytes());
            buf[HEADER_SIZE..HEADER_SIZE + n].copy_from_slice(part);
            self.alloc += HEADER_SIZE + n;
            if self.page_full() {
                self.flush_page(true)?;
            }
            enc = rest;
            first = false;
        }
        Ok(())
    }

    /// Writes the unwritten part of the page; with `clear`, pads it to its end with zeros and
    /// starts a new page.
    fn flush_page(&mut self, clear: bool) -> WalResult<()> {
        let clear = clear || self.page_full();
        if clear {
            self.alloc = PAGE_SIZE; // The rest of the page is already zeros.
        }
        if let Err(e) = self.file.write_all(&self.page[self.flushed..self.alloc]) {
            return self.write_failed("write segment", e);
        }
        self.flushed = self.alloc;
        if clear {
            self.page.fill(0);
            self.alloc = 0;
            self.flushed = 0;
            self.done_pages += 1;
        }
        Ok(())
    }

    /// Makes everything logged so far durable (fsync of the active segment).
    pub fn fsync(&mut self) -> WalResult<()> {
        self.check()?;
        if self.alloc > self.flushed {
            self.flush_page(false)?;
        }
        if let Err(e) = self.file.sync_data() {
            return self.write_failed("fsync segment", e);
        }
        Ok(())
    }

    /// Writes out any buffered bytes (every [`Wal::log`] already does; kept for callers that
    /// want to say so).
    pub fn flush(&mut self) -> WalResult<()> {
        self.check()?;
        if self.alloc > self.flushed {
            self.flush_page(false)?;
        }
        Ok(())
    }

    /// Closes the active segment (padded to a whole page and fsynced) and starts the next one,
    /// whose index it returns. A head does this before a checkpoint so that the segments it
    /// checkpoints are no longer written to.
    pub fn next_segment(&mut self) -> WalResult<u32> {
        self.check()?;
        if self.alloc > 0 {
            self.flush_page(true)?;
        }
        if let Err(e) = self.file.sync_data() {
            return self.write_failed("fsync segment", e);
        }
        let next = self
            .segment
            .checked_add(1)
            .ok_or_else(|| WalError::Invalid {
                dir: self.dir.clone(),
                detail: "segment numbers are exhausted".into(),
            })?;
        let (file, done_pages) = create_segment(&self.dir, next)?;
        self.file = file;
        self.segment = next;
        self.done_pages = done_pages;
        Ok(next)
    }

    /// Deletes the segments numbered below `below` (never the active one), oldest first, so
    /// that an interrupted truncation leaves no gap.
    pub fn truncate(&mut self, below: u32) -> WalResult<()> {
        let below = below.min(self.segment);
        for i in list_segments(&self.dir)? {
            if i >= below {
                break;
            }
            let p = segment_path(&self.dir, i);
            fs::remove_file(&p).map_err(|e| WalError::io("delete segment", &p, e))?;
        }
        Ok(())
    }

    /// Repairs the damage `c` found by a reader (see [`repair`]) and continues in a new
    /// segment after the repaired one.
    pub fn repair(&mut self, c: &Corruption) -> WalResult<()> {
        repair(&self.dir, c)?;
        let next = c.segment.saturating_add(1);
        let (file, done_pages) = create_segment(&self.dir, next)?;
        self.file = file;
        self.segment = next;
        self.done_pages = done_pages;
        self.page.fill(0);
        self.alloc = 0;
        self.flushed = 0;
        self.poisoned = false;
        Ok(())
    }

    /// Pads the last page, fsyncs and closes the active segment.
    pub fn close(mut self) -> WalResult<()> {
        self.check()?;
        if self.alloc > 0 {
            self.flush_page(true)?;
        }
        self.file
            .sync_all()
            .map_err(|e| WalError::io("fsync segment", segment_path(&self.dir, self.segment), e))
    }
}

/// Creates (or opens, after a repair deleted it) segment `index` for appending; returns the file
/// and its number of whole pages.
fn create_segment(dir: &Path, index: u32) -> WalResult<(File, u64)> {
    let path = segment_path(dir, index);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| WalError::io("create segment", &path, e))?;
    let len = file
        .metadata()
        .map_err(|e| WalError::io("stat", &path, e))?
        .len();
    if !len.is_multiple_of(PAGE_SIZE as u64) {
        // Appending after a partial page would misalign every later page.
        let padded = len.next_multiple_of(PAGE_SIZE as u64);
        file.set_len(padded)
            .map_err(|e| WalError::io("pad segment", &path, e))?;
        return Ok((file, padded / PAGE_SIZE as u64));
    }
    sync_dir(dir)?;
    Ok((file, len / PAGE_SIZE as u64))
}

fn sync_dir(dir: &Path) -> WalResult<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| WalError::io("fsync directory", dir, e))
}

/// Repairs a WAL after a reader found damage `c`, as Prometheus does: deletes every segment
/// after the damaged one and truncates the damaged one where its last intact record ends
/// (padding the page with zeros). Everything from the damage on is lost; for a torn tail that
/// is only the record a crash interrupted.
///
/// A damaged checkpoint cannot be repaired this way (its records are the only copy of what the
/// head needs from the segments it replaced): that is an error.
pub fn repair(wal_dir: &Path, c: &Corruption) -> WalResult<()> {
    if c.in_checkpoint {
        return Err(WalError::Invalid {
            dir: c.dir.clone(),
            detail: format!(
                "cannot repair a damaged checkpoint ({c}); move the checkpoint away to start \
                 without the data it holds"
            ),
        });
    }
    if c.dir != wal_dir {
        return Err(WalError::Invalid {
            dir: wal_dir.to_path_buf(),
            detail: format!("the damage to repair is in another directory: {c}"),
        });
    }
    for i in list_segments(wal_dir)?.into_iter().rev() {
        if i <= c.segment {
            break;
        }
        let p = segment_path(wal_dir, i);
        fs::remove_file(&p).map_err(|e| WalError::io("delete segment", &p, e))?;
    }
    let p = segment_path(wal_dir, c.segment);
    let f = OpenOptions::new()
        .write(true)
        .open(&p)
        .map_err(|e| WalError::io("open segment for repair", &p, e))?;
    // Truncating and then extending zero-fills the rest of the page.
    f.set_len(c.offset)
        .and_then(|()| f.set_len(c.offset.next_multiple_of(PAGE_SIZE as u64)))
        .and_then(|()| f.sync_all())
        .map_err(|e| WalError::io("truncate segment", &p, e))?;
    sync_dir(wal_dir)
}

/// Counts of what [`replay`] saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayStats {
    pub records: u64,
    pub series: u64,
    pub samples: u64,
    pub tombstones: u64,
    /// Records of types this crate does not decode (exemplars, metadata, histograms, …),
    /// skipped.
    pub unknown_records: u64,
}

/// Replays the WAL in `dir` (last checkpoint, then the segments after it), decoding each
/// record and handing it to `f`. A record that does not decode is reported as damage at its
/// position, like a bad fragment, so that [`repair`] can cut it off.
pub fn replay(dir: &Path, mut f: impl FnMut(record::Record)) -> WalResult<ReplayStats> {
    let mut r = Reader::replay(dir)?;
    let mut st = ReplayStats::default();
    while let Some(rec) = r.next()? {
        let rec =
            record::decode(rec).map_err(|e| r.record_corruption(format!("undecodable {e}")))?;
        st.records += 1;
        match &rec {
            record::Record::Series(s) => st.series += s.len() as u64,
            record::Record::Samples(s) => st.samples += s.len() as u64,
            record::Record::Tombstones(s) => st.tombstones += s.len() as u64,
            record::Record::Unknown(_) => st.unknown_records += 1,
        }
        f(rec);
    }
    Ok(st)
}
