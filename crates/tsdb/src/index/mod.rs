//! The block index, format v2 (`tsdb/docs/format/index.md`).
//!
//! ```text
//! magic BE32 0xBAAAD700 | version u8
//! symbol table                 sorted, deduplicated strings; a symbol ref is its ordinal
//! series                       each entry 16-byte aligned; series ref = file offset / 16
//! postings lists               each 4-byte aligned; the first is the all-series list
//! postings offset table        (name, value) -> postings list offset, sorted
//! TOC                          six BE64 section offsets + CRC32C, the last 52 bytes
//! ```
//!
//! Series refs are sorted in label-set order, so every postings list is also a list of
//! series in label order: intersecting lists keeps that order, which the Store API relies on.

mod postings;
mod reader;
mod select;
mod writer;

pub use postings::{difference, intersect, intersect_many, union_many};
pub use reader::{IndexReader, decode_postings, decode_series_entry};
pub use select::{PostingsIndex, postings_for_matchers};
pub use writer::{IndexWriter, IndexWriterStats};

use crate::encoding::{Decbuf, crc32c};
use crate::error::{Error, Result};

/// Magic number at the start of an index file.
pub const MAGIC_INDEX: u32 = 0xBAAA_D700;
/// The index format version we write.
pub const FORMAT_V2: u8 = 2;
/// Length of the table of contents at the end of the file.
pub const TOC_LEN: usize = 6 * 8 + 4;
/// Series entries start at multiples of this; a series ref is the offset divided by it.
pub const SERIES_ALIGN: u64 = 16;
/// An index cannot grow past 64 GiB: series refs are 32-bit multiples of 16.
pub const MAX_INDEX_SIZE: u64 = SERIES_ALIGN * (u32::MAX as u64);

/// Section offsets, from the last 52 bytes of the index. Zero means "absent".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Toc {
    pub symbols: u64,
    pub series: u64,
    pub label_indices: u64,
    pub label_indices_table: u64,
    pub postings: u64,
    pub postings_table: u64,
}

impl Toc {
    /// Parses and CRC-checks the TOC at the end of `index`.
    pub fn parse(file: &str, index: &[u8]) -> Result<Toc> {
        if index.len() < 5 + TOC_LEN {
            return Err(Error::corrupt(
                file,
                0,
                "index",
                format!(
                    "file is {} bytes, too short to hold a header and TOC",
                    index.len()
                ),
            ));
        }
        Toc::parse_tail(file, &index[index.len() - TOC_LEN..], index.len() as u64)
    }

    /// Parses and CRC-checks a TOC from the last [`TOC_LEN`] bytes of an index that is
    /// `index_len` bytes long, without the rest of the file. The store gateway reads only this
    /// tail of an index in object storage before fetching the sections it names.
    pub fn parse_tail(file: &str, tail: &[u8], index_len: u64) -> Result<Toc> {
        if tail.len() != TOC_LEN || index_len < (5 + TOC_LEN) as u64 {
            return Err(Error::corrupt(
                file,
                0,
                "index",
                format!(
                    "an index of {index_len} bytes with a {}-byte TOC: too short to hold a header and TOC",
                    tail.len()
                ),
            ));
        }
        let at = index_len - TOC_LEN as u64;
        let b = tail;
        let stored = u32::from_be_bytes(b[48..52].try_into().expect("4 bytes"));
        let computed = crc32c(&b[..48]);
        if stored != computed {
            return Err(Error::corrupt(
                file,
                at,
                "index TOC",
                format!("CRC32C mismatch: stored {stored:#010x}, computed {computed:#010x}"),
            ));
        }
        let mut d = Decbuf::new(&b[..48]);
        let mut next = || d.be64().expect("48 bytes hold six BE64");
        let toc = Toc {
            symbols: next(),
            series: next(),
            label_indices: next(),
            label_indices_table: next(),
            postings: next(),
            postings_table: next(),
        };
        for (name, off) in [
            ("symbols", toc.symbols),
            ("series", toc.series),
            ("postings offset table", toc.postings_table),
        ] {
            if off > at || (off != 0 && off < 5) {
                return Err(Error::corrupt(
                    file,
                    at,
                    "index TOC",
                    format!("{name} offset {off} outside the file (TOC at {at})"),
                ));
            }
        }
        Ok(toc)
    }

    pub(crate) fn encode(&self) -> [u8; TOC_LEN] {
        let mut out = [0u8; TOC_LEN];
        for (i, v) in [
            self.symbols,
            self.series,
            self.label_indices,
            self.label_indices_table,
            self.postings,
            self.postings_table,
        ]
        .into_iter()
        .enumerate()
        {
            out[i * 8..i * 8 + 8].copy_from_slice(&v.to_be_bytes());
        }
        let crc = crc32c(&out[..48]);
        out[48..].copy_from_slice(&crc.to_be_bytes());
        out
    }
}

#[cfg(test)]
mod toc_tests {
    use super::*;

    #[test]
    fn toc_parses_from_the_tail_alone() {
        let toc = Toc {
            symbols: 5,
            series: 100,
            label_indices: 0,
            label_indices_table: 0,
            postings: 200,
            postings_table: 300,
        };
        let tail = toc.encode();
        assert_eq!(Toc::parse_tail("i", &tail, 400).unwrap(), toc);
        let mut whole = vec![0u8; 400 - TOC_LEN];
        whole.extend_from_slice(&tail);
        assert_eq!(Toc::parse("i", &whole).unwrap(), toc);
        // An offset past the TOC, a flipped bit and a short tail are refused.
        assert!(Toc::parse_tail("i", &tail, 310).is_err());
        let mut bad = tail;
        bad[3] ^= 1;
        let err = Toc::parse_tail("i", &bad, 400).unwrap_err().to_string();
        assert!(err.contains("CRC32C"), "{err}");
        assert!(Toc::parse_tail("i", &tail[1..], 400).is_err());
    }
}
