//! Arbitrary bytes as an index file: open it, then walk everything it holds (symbols, label
//! names and values, postings, series, matcher selection).
//!
//! Each input is tried twice: as given, and with the TOC checksum recomputed, because the TOC
//! CRC is the first gate and random bytes never pass it by chance.
#![no_main]

use bytes::Bytes;
use strata_fuzz::{check, mutate};
use strata_tsdb::IndexReader;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    open_and_walk(data);
    let fixed = mutate::with_toc_crc(data);
    if fixed != data {
        open_and_walk(&fixed);
    }
});

fn open_and_walk(data: &[u8]) {
    let Ok(ix) = IndexReader::from_bytes("index", Bytes::copy_from_slice(data)) else {
        return;
    };
    // The 32 bytes before the TOC: inside the postings offset table in a real index, so the
    // probed series references are numbers the fuzzer is already shaping.
    let end = data.len().saturating_sub(52);
    check::index(&ix, &data[end.saturating_sub(32)..end]);
}
