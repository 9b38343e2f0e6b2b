//! Structure-aware mutation: fuzzer bytes read as a list of edits to a valid file, followed by
//! a repair of the file's CRC32Cs.
//!
//! Random bytes almost never carry a correct checksum, and libFuzzer's own mutations of a
//! valid seed break one on nearly every edit, so the decoders behind the checksums (series
//! entries, postings lists, the symbol table, chunk payloads) would see little but their
//! happy path. Here the fuzzer picks small, format-shaped edits (flip a byte, plant a length,
//! cut the file, duplicate a run of bytes) and the checksums are recomputed afterwards at the
//! places the original file had them, reading the (possibly edited) length fields. The
//! decoders then get structurally damaged input that passes integrity checks, which is what a
//! buggy writer, or an attacker who can compute a CRC, produces.
//!
//! Input layout: `flags | op*`, each op four bytes `kind | offset BE16 | arg`. Flag bit 0
//! skips the CRC repair, so the checksum verification paths stay covered too.

use strata_tsdb::encoding::{crc32c, read_uvarint};

/// Where a CRC32C sits in a file and which bytes it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrcSpan {
    /// `len BE32 | body[len] | CRC(body)`: the index symbol table, postings offset table and
    /// postings lists.
    Be32Body(usize),
    /// `len uvarint | body[len] | CRC(body)`: an index series entry.
    UvarintBody(usize),
    /// `len uvarint | encoding u8 | data[len] | CRC(encoding, data)`: a segment chunk.
    UvarintChunk(usize),
    /// The index TOC: the last 52 bytes, the CRC over the first 48 of them.
    IndexToc,
}

/// At most this many edits per input: a handful of local edits keeps the file recognisable,
/// which is what gets deep; thousands would just produce noise.
const MAX_OPS: usize = 32;

/// Applies the edits in `input` to `buf`, then repairs the CRCs listed in `spans` unless the
/// input's flags say not to.
pub fn mutate(buf: &mut Vec<u8>, input: &[u8], spans: &[CrcSpan]) {
    let Some((&flags, ops)) = input.split_first() else {
        return;
    };
    for op in ops.chunks_exact(4).take(MAX_OPS) {
        apply(buf, op[0], u16::from_be_bytes([op[1], op[2]]), op[3]);
    }
    if flags & 1 == 0 {
        repair(buf, spans);
    }
}

/// One edit. Offsets wrap around the current length so that every op lands somewhere.
fn apply(buf: &mut Vec<u8>, kind: u8, off: u16, arg: u8) {
    let len = buf.len();
    if len == 0 {
        return;
    }
    let at = usize::from(off) % len;
    // Bytes from `at` that an op may touch without running off the end.
    let room = len - at;
    match kind % 10 {
        0 => buf[at] ^= arg,
        1 => buf[at] = arg,
        2 => buf[at] = buf[at].wrapping_add(arg),
        // A small big-endian 32-bit value: counts and lengths that are plausible but wrong.
        3 => put(buf, at, &u32::from(arg).to_be_bytes()),
        // A huge one: lengths and offsets that overflow naive arithmetic.
        4 => put(buf, at, &(u32::MAX - u32::from(arg)).to_be_bytes()),
        5 => buf.truncate(at),
        6 => {
            let n = (usize::from(arg % 16) + 1).min(room);
            buf.drain(at..at + n);
        }
        // Duplicate a run: shifts everything after it, like an inserted field.
        7 => {
            let n = (usize::from(arg % 16) + 1).min(room);
            let run = buf[at..at + n].to_vec();
            buf.splice(at..at, run);
        }
        // Overwrite with bytes from elsewhere in the file: moves real structures around.
        8 => {
            let src = usize::from(arg) * len / 256;
            let n = 8.min(room).min(len - src);
            buf.copy_within(src..src + n, at);
        }
        // A run of varint continuation bytes: overlong and overflowing varints.
        _ => {
            let n = (usize::from(arg % 11) + 1).min(room);
            buf[at..at + n].fill(0xFF);
        }
    }
}

/// Writes `bytes` at `at`, clipped to the buffer.
fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    let n = bytes.len().min(buf.len() - at);
    buf[at..at + n].copy_from_slice(&bytes[..n]);
}

/// Recomputes every CRC in `spans` that still fits in `buf`, reading the length fields as they
/// are now. Spans whose length field or CRC fall outside the (possibly truncated) buffer are
/// left alone.
pub fn repair(buf: &mut [u8], spans: &[CrcSpan]) {
    for &span in spans {
        let covered = match span {
            CrcSpan::Be32Body(at) => buf.get(at..at + 4).and_then(|l| {
                let len = u32::from_be_bytes(l.try_into().expect("4 bytes")) as usize;
                Some((at + 4, (at + 4).checked_add(len)?))
            }),
            CrcSpan::UvarintBody(at) | CrcSpan::UvarintChunk(at) => buf
                .get(at..)
                .and_then(|b| read_uvarint(b).ok())
                .and_then(|(len, n)| {
                    let start = at + n;
                    let extra = usize::from(matches!(span, CrcSpan::UvarintChunk(_)));
                    let end = usize::try_from(len).ok()?.checked_add(start + extra)?;
                    Some((start, end))
                }),
            CrcSpan::IndexToc => buf.len().checked_sub(52).map(|toc| (toc, toc + 48)),
        };
        if let Some((start, end)) = covered
            && end + 4 <= buf.len()
        {
            let crc = crc32c(&buf[start..end]);
            buf[end..end + 4].copy_from_slice(&crc.to_be_bytes());
        }
    }
}

/// Fixes just the TOC checksum of an index-shaped buffer: the first gate of the index reader,
/// which a fuzzer otherwise has to solve before anything else is reached.
pub fn with_toc_crc(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    repair(&mut out, &[CrcSpan::IndexToc]);
    out
}
