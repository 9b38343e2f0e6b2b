//! Arbitrary bytes as chunk segment files: header checks, the sequential scan, reads by
//! reference at offsets taken from the input, and the samples of every chunk found.
#![no_main]

use bytes::Bytes;
use strata_tsdb::chunks::{ChunkReader, ChunkRef, SEGMENT_MAGIC};

/// References probed at every offset of the first segment up to here: each one is a chunk
/// length, encoding and CRC check at a position the scan would not stop at.
const PROBE_OFFSETS: usize = 256;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let segments = split_segments(data);
    let named = segments
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("{:06}", i + 1), Bytes::copy_from_slice(s)))
        .collect();
    let Ok(reader) = ChunkReader::from_segments(named) else {
        return;
    };
    // The last 16 bytes of the input, read as two whole references, reach the second segment
    // and out-of-range segment indexes too.
    let tail = &data[data.len().saturating_sub(16)..];
    let tail_refs = tail
        .chunks_exact(8)
        .map(|b| ChunkRef(u64::from_be_bytes(b.try_into().unwrap())));
    let offsets = (0..data.len().min(PROBE_OFFSETS) as u32).map(|o| ChunkRef::new(0, o));
    let second = (0..16).map(|o| ChunkRef::new(1, o));
    strata_fuzz::check::chunk_reader(&reader, tail_refs.chain(offsets).chain(second));
});

/// A second segment starts where the segment magic appears again past the first header, so
/// one input can describe a two-file block (chunk references carry the file's position).
fn split_segments(data: &[u8]) -> Vec<&[u8]> {
    let magic = SEGMENT_MAGIC.to_be_bytes();
    let second = data
        .get(8..)
        .and_then(|rest| rest.windows(4).position(|w| w == magic))
        .map(|p| p + 8);
    match second {
        Some(at) => vec![&data[..at], &data[at..]],
        None => vec![data],
    }
}
