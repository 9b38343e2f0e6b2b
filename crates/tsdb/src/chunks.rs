//! Chunk segment files (`chunks/000001`, …): reading chunks by reference and writing them.
//!
//! ```text
//! magic BE32 = 0x85BD40DD | version u8 = 1 | 3 zero bytes
//! chunk*: len uvarint | encoding u8 | data[len] | CRC32C BE32 over (encoding, data)
//! ```
//!
//! A chunk reference packs the 0-based position of the segment in the sorted list of segment
//! files (high 32 bits) and the byte offset of the chunk's length field (low 32 bits).

use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::chunkenc::{Encoding, RawChunk};
use crate::encoding::{crc32c, put_uvarint, read_uvarint};
use crate::error::{Error, Result};

/// Magic number at the start of every segment file.
pub const SEGMENT_MAGIC: u32 = 0x85BD_40DD;
/// Segment file format version.
pub const SEGMENT_VERSION: u8 = 1;
/// Magic, version and padding.
pub const SEGMENT_HEADER_LEN: usize = 8;
/// Prometheus' default maximum segment size.
pub const DEFAULT_SEGMENT_SIZE: u64 = 512 * 1024 * 1024;

/// `BlockChunkRef`: segment index in the high 32 bits, byte offset in the low 32 bits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ChunkRef(pub u64);

impl ChunkRef {
    pub fn new(segment: u32, offset: u32) -> Self {
        ChunkRef((u64::from(segment) << 32) | u64::from(offset))
    }

    /// 0-based position of the segment file in sorted order (`000001` is 0).
    pub fn segment(self) -> u32 {
        (self.0 >> 32) as u32
    }

    pub fn offset(self) -> u32 {
        self.0 as u32
    }
}

impl fmt::Display for ChunkRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.segment(), self.offset())
    }
}

impl fmt::Debug for ChunkRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A chunk as the index describes it: inclusive first and last sample times, and where it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChunkMeta {
    pub min_time: i64,
    pub max_time: i64,
    pub chunk_ref: ChunkRef,
}

impl ChunkMeta {
    /// Whether the chunk has samples in the closed interval `[mint, maxt]`.
    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.min_time <= maxt && mint <= self.max_time
    }
}

/// Name of the n-th (0-based) segment file: `000001`, `000002`, …
pub fn segment_file_name(index: u32) -> String {
    format!("{:06}", u64::from(index) + 1)
}

/// Lists the segment files of a `chunks` directory in the order chunk references use:
/// numerically named files, sorted. Other files are ignored, as Prometheus ignores them.
pub fn list_segment_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io("list chunk segments in", dir, e))?;
    let mut files = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::io("list chunk segments in", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Ok(n) = name.parse::<u64>() {
            files.push((n, entry.path()));
        }
    }
    files.sort();
    Ok(files.into_iter().map(|(_, p)| p).collect())
}

/// Reads chunks from a block's segment files.
#[derive(Debug, Clone)]
pub struct ChunkReader {
    segments: Vec<Segment>,
    /// The mappings behind `segments` when they were opened from files.
    mapped: Vec<crate::Mapped>,
}

#[derive(Debug, Clone)]
struct Segment {
    name: String,
    data: Bytes,
}

impl ChunkReader {
    /// Opens (memory-maps) every segment in a block's `chunks` directory.
    pub fn open(dir: &Path) -> Result<Self> {
        let mut segments = Vec::new();
        let mut mapped = Vec::new();
        for path in list_segment_files(dir)? {
            let m = crate::Mapped::open(&path)?;
            segments.push((path.display().to_string(), m.bytes()));
            mapped.push(m);
        }
        let mut r = Self::from_segments(segments)?;
        r.mapped = mapped;
        Ok(r)
    }

    /// Hands the resident pages of memory-mapped segments back to the kernel; a no-op for
    /// segments held in memory. Streaming readers call this now and then so that their memory
    /// does not grow with the amount of chunk data read.
    pub fn release_memory(&self) {
        for m in &self.mapped {
            m.release();
        }
    }

    /// Builds a reader over segment contents already in memory, in segment order. The names
    /// only appear in error messages.
    pub fn from_segments(segments: Vec<(String, Bytes)>) -> Result<Self> {
        let mut out = Vec::with_capacity(segments.len());
        for (name, data) in segments {
            check_segment_header(&name, &data)?;
            out.push(Segment { name, data });
        }
        Ok(ChunkReader {
            segments: out,
            mapped: Vec::new(),
        })
    }

    pub fn num_segments(&self) -> usize {
        self.segments.len()
    }

    /// Size in bytes of each segment, in order.
    pub fn segment_sizes(&self) -> Vec<u64> {
        self.segments.iter().map(|s| s.data.len() as u64).collect()
    }

    /// The chunk at `r`, with its CRC verified. The data is a zero-copy slice of the segment.
    pub fn chunk(&self, r: ChunkRef) -> Result<RawChunk> {
        let seg = self.segments.get(r.segment() as usize).ok_or_else(|| {
            Error::corrupt(
                "chunks",
                r.0,
                "chunk reference",
                format!(
                    "segment index {} out of range: the block has {} segment files",
                    r.segment(),
                    self.segments.len()
                ),
            )
        })?;
        let (raw, _) = read_chunk_at(&seg.name, &seg.data, r.offset() as usize)?;
        Ok(raw)
    }

    /// Walks every chunk of segment `index` in file order: `(offset, chunk)`; a sequential
    /// scan used by verification.
    pub fn scan_segment(&self, index: usize) -> impl Iterator<Item = Result<(u32, RawChunk)>> + '_ {
        let seg = &self.segments[index];
        let mut pos = SEGMENT_HEADER_LEN;
        let mut failed = false;
        std::iter::from_fn(move || {
            // Segments may end in zero padding (Prometheus preallocates); stop there.
            if failed || pos >= seg.data.len() || seg.data[pos] == 0 {
                return None;
            }
            match read_chunk_at(&seg.name, &seg.data, pos) {
                Ok((c, next)) => {
                    let at = pos as u32;
                    pos = next;
                    Some(Ok((at, c)))
                }
                Err(e) => {
                    failed = true;
                    Some(Err(e))
                }
            }
        })
    }
}

fn check_segment_header(name: &str, data: &[u8]) -> Result<()> {
    if data.len() < SEGMENT_HEADER_LEN {
        return Err(Error::corrupt(
            name,
            0,
            "segment header",
            format!(
                "file is {} bytes, shorter than the 8-byte header",
                data.len()
            ),
        ));
    }
    let magic = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
    if magic != SEGMENT_MAGIC {
        return Err(Error::corrupt(
            name,
            0,
            "segment header",
            format!("magic {magic:#010x}, want {SEGMENT_MAGIC:#010x}"),
        ));
    }
    if data[4] != SEGMENT_VERSION {
        return Err(Error::Unsupported {
            file: name.to_string(),
            detail: format!(
                "chunk segment format version {} is not supported (want 1)",
                data[4]
            ),
        });
    }
    Ok(())
}

/// Decodes the chunk whose length field is at `pos`; returns it and the offset after its CRC.
fn read_chunk_at(name: &str, data: &Bytes, pos: usize) -> Result<(RawChunk, usize)> {
    if pos < SEGMENT_HEADER_LEN || pos >= data.len() {
        return Err(Error::corrupt(
            name,
            pos as u64,
            "chunk reference",
            format!("offset outside the segment (size {})", data.len()),
        ));
    }
    let (len, n) = read_uvarint(&data[pos..])
        .map_err(|e| Error::decode(name, pos as u64, "chunk length", e))?;
    let enc_at = pos + n;
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| enc_at.checked_add(1)?.checked_add(l)?.checked_add(4))
        .filter(|&end| end <= data.len())
        .ok_or_else(|| {
            Error::corrupt(
                name,
                pos as u64,
                "chunk",
                format!(
                    "length {len} runs past the end of the segment (size {})",
                    data.len()
                ),
            )
        })?;
    let crc_at = end - 4;
    let stored = u32::from_be_bytes(data[crc_at..end].try_into().expect("4 bytes"));
    let computed = crc32c(&data[enc_at..crc_at]);
    if stored != computed {
        return Err(Error::corrupt(
            name,
            pos as u64,
            "chunk",
            format!("CRC32C mismatch: stored {stored:#010x}, computed {computed:#010x}"),
        ));
    }
    let encoding = Encoding::from_u8(data[enc_at]);
    Ok((
        RawChunk {
            encoding,
            data: data.slice(enc_at + 1..crc_at),
        },
        end,
    ))
}

/// A segment file the writer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    /// File name inside `chunks/`, e.g. `000001`.
    pub name: String,
    pub size: u64,
}

/// Writes chunks into numbered segment files, cutting a new file before one would exceed the
/// segment size.
#[derive(Debug)]
pub struct SegmentWriter {
    dir: PathBuf,
    segment_size: u64,
    current: Option<(BufWriter<File>, PathBuf)>,
    /// Position in the current segment.
    pos: u64,
    files: Vec<SegmentFile>,
    scratch: Vec<u8>,
}

impl SegmentWriter {
    /// Creates `dir` (the block's `chunks` directory) if needed. No file is created until the
    /// first chunk is written, so a block without chunks has an empty `chunks` directory, as
    /// Prometheus writes it.
    pub fn create(dir: &Path, segment_size: u64) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
        Ok(SegmentWriter {
            dir: dir.to_path_buf(),
            segment_size: segment_size.clamp(4096, u64::from(u32::MAX)),
            current: None,
            pos: 0,
            files: Vec::new(),
            scratch: Vec::with_capacity(1024),
        })
    }

    /// Appends a chunk and returns its reference.
    pub fn write_chunk(&mut self, encoding: Encoding, data: &[u8]) -> Result<ChunkRef> {
        self.scratch.clear();
        put_uvarint(&mut self.scratch, data.len() as u64);
        let enc_at = self.scratch.len();
        self.scratch.push(encoding.as_u8());
        self.scratch.extend_from_slice(data);
        let crc = crc32c(&self.scratch[enc_at..]);
        self.scratch.extend_from_slice(&crc.to_be_bytes());
        let n = self.scratch.len() as u64;

        if self.current.is_none() || self.pos + n > self.segment_size {
            self.cut()?;
        }
        if self.pos + n > u64::from(u32::MAX) {
            return Err(Error::Write {
                block: self.dir.display().to_string(),
                detail: format!("chunk of {n} bytes does not fit a segment file"),
            });
        }
        let seq = (self.files.len() - 1) as u32;
        let r = ChunkRef::new(seq, self.pos as u32);
        let (w, path) = self.current.as_mut().expect("segment open after cut");
        w.write_all(&self.scratch)
            .map_err(|e| Error::io("write", &*path, e))?;
        self.pos += n;
        self.files.last_mut().expect("segment recorded").size = self.pos;
        Ok(r)
    }

    fn cut(&mut self) -> Result<()> {
        self.finish_current()?;
        let name = segment_file_name(self.files.len() as u32);
        let path = self.dir.join(&name);
        let f = File::create(&path).map_err(|e| Error::io("create", &path, e))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        let mut header = [0u8; SEGMENT_HEADER_LEN];
        header[..4].copy_from_slice(&SEGMENT_MAGIC.to_be_bytes());
        header[4] = SEGMENT_VERSION;
        w.write_all(&header)
            .map_err(|e| Error::io("write", &path, e))?;
        self.pos = SEGMENT_HEADER_LEN as u64;
        self.files.push(SegmentFile {
            name,
            size: self.pos,
        });
        self.current = Some((w, path));
        Ok(())
    }

    fn finish_current(&mut self) -> Result<()> {
        if let Some((w, path)) = self.current.take() {
            let f = w
                .into_inner()
                .map_err(|e| Error::io("flush", &path, e.into_error()))?;
            f.sync_all().map_err(|e| Error::io("fsync", &path, e))?;
        }
        Ok(())
    }

    /// Flushes and fsyncs the last segment; returns every segment written.
    pub fn finish(mut self) -> Result<Vec<SegmentFile>> {
        self.finish_current()?;
        Ok(std::mem::take(&mut self.files))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_and_cut_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::create(dir.path(), 4096).unwrap();
        let mut refs = Vec::new();
        for i in 0..200u32 {
            let data = vec![i as u8; 50 + (i as usize % 7)];
            refs.push((w.write_chunk(Encoding::Xor, &data).unwrap(), data));
        }
        let files = w.finish().unwrap();
        assert!(files.len() > 1, "segments were cut");
        assert!(files.iter().all(|f| f.size <= 4096));
        assert_eq!(files[0].name, "000001");
        assert_eq!(refs[0].0, ChunkRef::new(0, 8));

        let r = ChunkReader::open(dir.path()).unwrap();
        assert_eq!(r.num_segments(), files.len());
        for (cref, data) in &refs {
            let c = r.chunk(*cref).unwrap();
            assert_eq!(c.encoding, Encoding::Xor);
            assert_eq!(&c.data[..], &data[..]);
        }
        let scanned: usize = (0..r.num_segments())
            .map(|i| r.scan_segment(i).count())
            .sum();
        assert_eq!(scanned, refs.len());
    }

    #[test]
    fn corruption_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::create(dir.path(), DEFAULT_SEGMENT_SIZE).unwrap();
        let r0 = w.write_chunk(Encoding::Xor, b"hello").unwrap();
        w.finish().unwrap();
        let path = dir.path().join("000001");
        let mut bytes = std::fs::read(&path).unwrap();
        let good = Bytes::from(bytes.clone());
        let reader = ChunkReader::from_segments(vec![("s".into(), good)]).unwrap();
        assert!(reader.chunk(r0).is_ok());
        assert!(reader.chunk(ChunkRef::new(1, 8)).is_err());
        assert!(reader.chunk(ChunkRef::new(0, 3)).is_err());
        assert!(reader.chunk(ChunkRef::new(0, 9_999)).is_err());

        bytes[11] ^= 0x40; // inside the data
        let bad =
            ChunkReader::from_segments(vec![("s".into(), Bytes::from(bytes.clone()))]).unwrap();
        let err = bad.chunk(r0).unwrap_err().to_string();
        assert!(err.contains("CRC32C mismatch"), "{err}");

        bytes[0] = 0;
        assert!(ChunkReader::from_segments(vec![("s".into(), Bytes::from(bytes))]).is_err());
        assert!(
            ChunkReader::from_segments(vec![("s".into(), Bytes::from_static(b"\x85"))]).is_err()
        );
    }
}
