//! Reading records back: [`SegmentReader`] decodes the pages of one segment, [`Reader`]
//! chains the segments of a WAL (and of its last checkpoint) in order.
//!
//! Every byte is untrusted: the reader checks each fragment's header, page boundary, CRC and
//! place in its record, and stops at the first problem with the offset where the last intact
//! record ends, so that a torn tail can be cut off there.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::error::{Corruption, WalError, WalResult};
use super::{
    FLAG_MASK, FRAG_FIRST, FRAG_FULL, FRAG_LAST, FRAG_MIDDLE, HEADER_SIZE, PAGE_SIZE, SNAPPY_FLAG,
    TYPE_MASK, ZSTD_FLAG, last_checkpoint, list_segments, segment_path,
};
use crate::encoding::crc32c;

impl<R> std::fmt::Debug for SegmentReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentReader")
            .field("page_start", &self.page_start)
            .field("pos", &self.pos)
            .field("good_end", &self.good_end)
            .finish_non_exhaustive()
    }
}

/// Why a segment stopped being readable: a byte offset and a reason, or an IO error.
#[derive(Debug)]
pub enum SegmentError {
    /// Damaged or unfinished data. `good_end` is where the last intact record ends; `at` is
    /// where the problem was found.
    Corrupt {
        good_end: u64,
        at: u64,
        reason: String,
    },
    Io(io::Error),
}

/// Decodes the records of one segment from any byte source, a page at a time.
///
/// A segment is a sequence of 32 KiB pages. A segment that ends in a partial page (the writer
/// flushes partial pages, and a crash may stop anywhere) reads as if that page were padded with
/// zeros, as Prometheus reads it; a fragment cut off by the end of the data is a torn write.
pub struct SegmentReader<R> {
    src: R,
    page: Box<[u8; PAGE_SIZE]>,
    /// Segment offset of `page[0]`.
    page_start: u64,
    /// Bytes of `page` that came from the source; fewer than a page only at its end.
    page_len: usize,
    pos: usize,
    rec: Vec<u8>,
    compressed: Vec<u8>,
    /// End of the last intact record (0 before the first): where a repair truncates.
    good_end: u64,
    record_start: u64,
    failed: bool,
}

impl<R: Read> SegmentReader<R> {
    pub fn new(src: R) -> Self {
        SegmentReader {
            src,
            page: Box::new([0; PAGE_SIZE]),
            // "A full page, consumed": the first call loads page 0.
            page_start: 0u64.wrapping_sub(PAGE_SIZE as u64),
            page_len: PAGE_SIZE,
            pos: PAGE_SIZE,
            rec: Vec::new(),
            compressed: Vec::new(),
            good_end: 0,
            record_start: 0,
            failed: false,
        }
    }

    /// The record returned by the last successful [`SegmentReader::next_record`].
    pub fn record(&self) -> &[u8] {
        &self.rec
    }

    /// Segment offset where the current record starts.
    pub fn record_start(&self) -> u64 {
        self.record_start
    }

    /// Segment offset where the last intact record ends.
    pub fn good_end(&self) -> u64 {
        self.good_end
    }

    fn load_page(&mut self) -> io::Result<()> {
        self.page_start = self.page_start.wrapping_add(PAGE_SIZE as u64);
        self.pos = 0;
        let mut n = 0;
        while n < PAGE_SIZE {
            match self.src.read(&mut self.page[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.page_len = n;
        Ok(())
    }

    fn corrupt(&mut self, at_pos: usize, reason: impl Into<String>) -> SegmentError {
        self.failed = true;
        SegmentError::Corrupt {
            good_end: self.good_end,
            at: self.page_start + at_pos as u64,
            reason: reason.into(),
        }
    }

    /// Advances to the next record: `Ok(true)` when [`SegmentReader::record`] holds one,
    /// `Ok(false)` at the end of the segment. After an error it keeps returning `Ok(false)`.
    pub fn next_record(&mut self) -> Result<bool, SegmentError> {
        if self.failed {
            return Ok(false);
        }
        self.rec.clear();
        self.compressed.clear();
        let mut fragments = 0usize;
        let mut snappy = false;
        loop {
            if self.pos >= PAGE_SIZE
                && self.page_len == PAGE_SIZE
                && let Err(e) = self.load_page()
            {
                self.failed = true;
                return Err(SegmentError::Io(e));
            }
            if self.pos >= self.page_len {
                // End of the data; what follows in a partial page reads as zeros.
                if fragments > 0 {
                    let at = self.pos;
                    return Err(self.corrupt(
                        at,
                        "the segment ends inside a record whose last fragment was never written",
                    ));
                }
                self.failed = true; // Nothing more to read; makes further calls cheap.
                return Ok(false);
            }
            let pos = self.pos;
            let head = self.page[pos];
            if fragments == 0 {
                self.record_start = self.page_start + pos as u64;
            }
            if head & !(TYPE_MASK | FLAG_MASK) != 0 {
                return Err(self.corrupt(
                    pos,
                    format!("unknown flag bits in fragment type {head:#04x}"),
                ));
            }
            if head & TYPE_MASK == 0 {
                // Page terminator: the rest of the page must be zeros.
                if fragments > 0 {
                    return Err(self.corrupt(pos, "page padding inside an unfinished record"));
                }
                if let Some(k) = self.page[pos..self.page_len].iter().position(|&b| b != 0) {
                    return Err(self.corrupt(pos + k, "non-zero byte in the padding of a page"));
                }
                // A partial page ends the data: moving to its end ends the segment.
                self.pos = self.page_len;
                continue;
            }
            if PAGE_SIZE - pos < HEADER_SIZE {
                return Err(self.corrupt(
                    pos,
                    format!(
                        "non-zero byte {head:#04x} in the last {} bytes of a page, too few for a \
                         fragment header",
                        PAGE_SIZE - pos
                    ),
                ));
            }
            if pos + HEADER_SIZE > self.page_len {
                return Err(self.corrupt(pos, "the segment ends inside a fragment header"));
            }
            if head & ZSTD_FLAG != 0 {
                return Err(self.corrupt(
                    pos,
                    "zstd-compressed fragment (written by a Prometheus newer than 2.42 with \
                     --storage.tsdb.wal-compression-type=zstd), which this reader does not \
                     support",
                ));
            }
            let typ = head & TYPE_MASK;
            let is_snappy = head & SNAPPY_FLAG != 0;
            let len = u16::from_be_bytes([self.page[pos + 1], self.page[pos + 2]]) as usize;
            let crc = u32::from_be_bytes(
                self.page[pos + 3..pos + 7]
                    .try_into()
                    .expect("4 bytes of the header"),
            );
            let start = pos + HEADER_SIZE;
            if start + len > PAGE_SIZE {
                return Err(self.corrupt(
                    pos,
                    format!(
                        "fragment of {len} bytes runs past the end of its page ({} bytes left)",
                        PAGE_SIZE - start
                    ),
                ));
            }
            if start + len > self.page_len {
                return Err(self.corrupt(pos, "the segment ends inside a fragment"));
            }
            let data = &self.page[start..start + len];
            let got = crc32c(data);
            if got != crc {
                return Err(self.corrupt(
                    pos,
                    format!("fragment checksum mismatch: stored {crc:08x}, computed {got:08x}"),
                ));
            }
            match (typ, fragments) {
                (FRAG_FULL | FRAG_FIRST, 0) | (FRAG_MIDDLE | FRAG_LAST, 1..) => {}
                (FRAG_FULL | FRAG_FIRST, _) => {
                    return Err(self.corrupt(
                        pos,
                        "a record starts before the previous one has its last fragment",
                    ));
                }
                (FRAG_MIDDLE | FRAG_LAST, _) => {
                    return Err(self.corrupt(pos, "a continuation fragment without a first one"));
                }
                _ => {
                    return Err(self.corrupt(pos, format!("invalid fragment type {typ}")));
                }
            }
            if fragments == 0 {
                snappy = is_snappy;
            } else if snappy != is_snappy {
                return Err(self.corrupt(
                    pos,
                    "fragments of one record disagree on whether it is compressed",
                ));
            }
            if is_snappy {
                self.compressed.extend_from_slice(data);
            } else {
                self.rec.extend_from_slice(data);
            }
            self.pos = start + len;
            fragments += 1;
            if typ == FRAG_FULL || typ == FRAG_LAST {
                if snappy
                    && !self.compressed.is_empty()
                    && let Err(reason) = decompress(&self.compressed, &mut self.rec)
                {
                    self.failed = true;
                    return Err(SegmentError::Corrupt {
                        good_end: self.good_end,
                        at: self.record_start,
                        reason,
                    });
                }
                self.good_end = self.page_start + self.pos as u64;
                return Ok(true);
            }
        }
    }
}

/// Snappy decompression of a record, refusing claimed lengths that no valid block of this
/// size could reach (a corrupt length must not become a giant allocation).
fn decompress(src: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let n = snap::raw::decompress_len(src)
        .map_err(|e| format!("snappy-compressed record is damaged: {e}"))?;
    // A 3-byte copy element expands to at most 64 bytes.
    if n > src.len().saturating_mul(22).saturating_add(64) {
        return Err(format!(
            "snappy-compressed record of {} bytes claims an impossible length {n}",
            src.len()
        ));
    }
    out.clear();
    out.resize(n, 0);
    snap::raw::Decoder::new()
        .decompress(src, out)
        .map_err(|e| format!("snappy-compressed record is damaged: {e}"))?;
    Ok(())
}

/// One segment file to read.
#[derive(Debug, Clone)]
struct SegmentFile {
    dir: PathBuf,
    index: u32,
    in_checkpoint: bool,
    len: u64,
}

/// Reads the records of a sequence of segments in order: a WAL, a range of it, or a replay
/// (last checkpoint, then the segments after it).
///
/// Records never span segments (the writer starts a new segment instead), so each segment is
/// decoded on its own. Damage in the last non-empty WAL segment is reported as
/// [`WalError::TornTail`], anywhere else as [`WalError::Corrupt`].
#[derive(Debug)]
pub struct Reader {
    segments: Vec<SegmentFile>,
    /// Index into `segments` of the segment being read.
    cur: usize,
    seg: Option<SegmentReader<File>>,
    /// Index into `segments` of the last WAL segment with any bytes.
    last_nonempty: Option<usize>,
    done: bool,
}

impl Reader {
    /// Every segment of the WAL in `dir` (checkpoints are not read; see [`Reader::replay`]).
    pub fn open(dir: &Path) -> WalResult<Reader> {
        Reader::open_range(dir, None, None)
    }

    /// The segments of `dir` numbered `first..=last` (either bound open when `None`).
    pub fn open_range(dir: &Path, first: Option<u32>, last: Option<u32>) -> WalResult<Reader> {
        let mut r = Reader::empty();
        r.add_dir(dir, first, last, false)?;
        r.finish()
    }

    /// What a head replays on startup: the last checkpoint, if any, then the WAL segments
    /// after it. A directory that does not exist yet (first start) has nothing to replay.
    pub fn replay(dir: &Path) -> WalResult<Reader> {
        let mut r = Reader::empty();
        if !dir.exists() {
            return r.finish();
        }
        let mut first = None;
        if let Some((cp, idx)) = last_checkpoint(dir)? {
            r.add_dir(&cp, None, None, true)?;
            first = Some(idx.saturating_add(1));
        }
        r.add_dir(dir, first, None, false)?;
        r.finish()
    }

    /// The segments of a checkpoint directory followed by the WAL segments `first..=last`.
    pub(crate) fn checkpoint_and_range(
        checkpoint: Option<&Path>,
        dir: &Path,
        first: u32,
        last: u32,
    ) -> WalResult<Reader> {
        let mut r = Reader::empty();
        if let Some(cp) = checkpoint {
            r.add_dir(cp, None, None, true)?;
        }
        r.add_dir(dir, Some(first), Some(last), false)?;
        r.finish()
    }

    fn empty() -> Reader {
        Reader {
            segments: Vec::new(),
            cur: 0,
            seg: None,
            last_nonempty: None,
            done: false,
        }
    }

    fn add_dir(
        &mut self,
        dir: &Path,
        first: Option<u32>,
        last: Option<u32>,
        in_checkpoint: bool,
    ) -> WalResult<()> {
        for index in list_segments(dir)? {
            if first.is_some_and(|f| index < f) || last.is_some_and(|l| index > l) {
                continue;
            }
            let path = segment_path(dir, index);
            let len = std::fs::metadata(&path)
                .map_err(|e| WalError::io("stat", &path, e))?
                .len();
            self.segments.push(SegmentFile {
                dir: dir.to_path_buf(),
                index,
                in_checkpoint,
                len,
            });
        }
        Ok(())
    }

    fn finish(mut self) -> WalResult<Reader> {
        self.last_nonempty = self
            .segments
            .iter()
            .rposition(|s| !s.in_checkpoint && s.len > 0);
        Ok(self)
    }

    /// The next record, or `None` after the last one. After an error, `None`.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> WalResult<Option<&[u8]>> {
        if self.next_inner()? {
            Ok(Some(self.seg.as_ref().expect("a segment is open").record()))
        } else {
            Ok(None)
        }
    }

    fn next_inner(&mut self) -> WalResult<bool> {
        while !self.done {
            if self.seg.is_none() {
                let Some(s) = self.segments.get(self.cur) else {
                    self.done = true;
                    break;
                };
                let path = segment_path(&s.dir, s.index);
                let f = File::open(&path).map_err(|e| {
                    self.done = true;
                    WalError::io("open segment", &path, e)
                })?;
                self.seg = Some(SegmentReader::new(f));
            }
            let seg = self.seg.as_mut().expect("just opened");
            match seg.next_record() {
                Ok(true) => return Ok(true),
                Ok(false) => {
                    self.seg = None;
                    self.cur += 1;
                }
                Err(e) => {
                    self.done = true;
                    let s = &self.segments[self.cur];
                    return Err(match e {
                        SegmentError::Io(e) => {
                            WalError::io("read segment", segment_path(&s.dir, s.index), e)
                        }
                        SegmentError::Corrupt {
                            good_end,
                            at,
                            reason,
                        } => self.corruption(good_end, at, reason),
                    });
                }
            }
        }
        Ok(false)
    }

    /// A corruption in the current segment, classified as a torn tail when no later WAL
    /// segment holds data.
    fn corruption(&self, good_end: u64, at: u64, reason: String) -> WalError {
        let s = &self.segments[self.cur.min(self.segments.len().saturating_sub(1))];
        let c = Corruption {
            dir: s.dir.clone(),
            segment: s.index,
            offset: good_end,
            at,
            reason,
            in_checkpoint: s.in_checkpoint,
        };
        let torn = !s.in_checkpoint && self.last_nonempty.is_none_or(|l| self.cur >= l);
        if torn {
            WalError::TornTail(c)
        } else {
            WalError::Corrupt(c)
        }
    }

    /// Turns a problem found in the current record (one that cannot be decoded) into a
    /// corruption at its position, so that repair cuts it off with what follows.
    pub fn record_corruption(&self, reason: impl Into<String>) -> WalError {
        let start = self.seg.as_ref().map_or(0, |s| s.record_start());
        self.corruption(start, start, reason.into())
    }

    /// The directory, segment index and offset of the current record's first byte.
    pub fn position(&self) -> Option<(&Path, u32, u64)> {
        let s = self.segments.get(self.cur)?;
        Some((
            &s.dir,
            s.index,
            self.seg.as_ref().map_or(0, |r| r.record_start()),
        ))
    }
}
