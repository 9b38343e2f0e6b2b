//! Chunk encodings: the Gorilla-derived XOR float encoding, bit-exact with Prometheus in both
//! directions, and the encoding identifiers of every other chunk kind a block can hold.
//!
//! Only XOR is decoded today. A chunk in another encoding (native histograms, XOR2, Thanos'
//! downsampled aggregates) is carried as raw bytes and gets [`ChunkError::UnsupportedEncoding`]
//! when someone asks for its samples, so one unsupported series never fails a whole block.

pub mod aggr;
mod bits;
pub mod xor;

use std::fmt;

pub use aggr::{AggrChunk, AggrType, CounterResets, encode_aggr_chunk};
pub use xor::{XorEncoder, XorIterator};

/// The encoding byte that precedes every chunk in a segment file (`tsdb/chunkenc/chunk.go`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    None,
    Xor,
    Histogram,
    FloatHistogram,
    Xor2,
    HistogramSt,
    FloatHistogramSt,
    /// Thanos' downsampled aggregate chunk (`AggrChunk`, 0xFF).
    ThanosAggr,
    Unknown(u8),
}

impl Encoding {
    pub fn from_u8(b: u8) -> Encoding {
        match b {
            0 => Encoding::None,
            1 => Encoding::Xor,
            2 => Encoding::Histogram,
            3 => Encoding::FloatHistogram,
            4 => Encoding::Xor2,
            5 => Encoding::HistogramSt,
            6 => Encoding::FloatHistogramSt,
            0xFF => Encoding::ThanosAggr,
            other => Encoding::Unknown(other),
        }
    }

    pub fn as_u8(self) -> u8 {
        match self {
            Encoding::None => 0,
            Encoding::Xor => 1,
            Encoding::Histogram => 2,
            Encoding::FloatHistogram => 3,
            Encoding::Xor2 => 4,
            Encoding::HistogramSt => 5,
            Encoding::FloatHistogramSt => 6,
            Encoding::ThanosAggr => 0xFF,
            Encoding::Unknown(b) => b,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Encoding::None => "none",
            Encoding::Xor => "XOR",
            Encoding::Histogram => "histogram",
            Encoding::FloatHistogram => "floathistogram",
            Encoding::Xor2 => "XOR2",
            Encoding::HistogramSt => "histogramST",
            Encoding::FloatHistogramSt => "floathistogramST",
            Encoding::ThanosAggr => "thanos-aggr",
            Encoding::Unknown(_) => "unknown",
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.as_u8(), self.name())
    }
}

/// Why a chunk's samples could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error(
        "chunk encoding {0} is not supported yet (only XOR float chunks are; native histograms come later)"
    )]
    UnsupportedEncoding(Encoding),
    #[error("chunk truncated: sample {sample} of {total} runs past the end of the data")]
    Truncated { sample: u16, total: u16 },
    #[error("chunk corrupt at sample {sample} of {total}: {reason}")]
    Corrupt {
        sample: u16,
        total: u16,
        reason: &'static str,
    },
    #[error("chunk is full: an XOR chunk holds at most 65535 samples")]
    Full,
}

/// A chunk's encoding and its encoded bytes, as stored in a segment file (without the
/// length prefix and CRC).
#[derive(Clone, PartialEq, Eq)]
pub struct RawChunk {
    pub encoding: Encoding,
    pub data: bytes::Bytes,
}

impl RawChunk {
    pub fn new(encoding: Encoding, data: impl Into<bytes::Bytes>) -> Self {
        RawChunk {
            encoding,
            data: data.into(),
        }
    }

    /// Number of samples, read from the chunk header. Every Prometheus chunk encoding starts
    /// with a big-endian u16 sample count.
    pub fn num_samples(&self) -> Option<u16> {
        match self.encoding {
            // An aggregate chunk counts its windows, as Thanos' `AggrChunk.NumSamples` does.
            Encoding::ThanosAggr => AggrChunk::new(&self.data).num_samples().ok(),
            Encoding::None | Encoding::Unknown(_) => None,
            _ if self.data.len() >= 2 => Some(u16::from_be_bytes([self.data[0], self.data[1]])),
            _ => None,
        }
    }

    /// An iterator over the float samples of an XOR chunk.
    pub fn xor_iter(&self) -> Result<XorIterator<'_>, ChunkError> {
        match self.encoding {
            Encoding::Xor => XorIterator::new(&self.data),
            other => Err(ChunkError::UnsupportedEncoding(other)),
        }
    }
}

impl fmt::Debug for RawChunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawChunk")
            .field("encoding", &self.encoding)
            .field("len", &self.data.len())
            .finish()
    }
}
