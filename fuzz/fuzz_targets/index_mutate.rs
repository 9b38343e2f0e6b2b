//! The sample block's index, edited by the fuzzer and with every checksum repaired, then
//! walked in full and queried as part of the block (with the intact chunks and tombstones).
//! This is the target that reaches the series, postings and symbol decoders with damaged
//! input; plain random bytes rarely get past the checksums.
#![no_main]

use bytes::Bytes;
use strata_fuzz::{check, mutate, sample};
use strata_tsdb::IndexReader;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let s = sample::sample_block();
    let mut bytes = s.index.clone();
    mutate::mutate(&mut bytes, data, &s.index_spans);
    let Ok(ix) = IndexReader::from_bytes("index", Bytes::from(bytes)) else {
        return;
    };
    check::index(&ix, data);
    check::block(
        ix,
        s.chunk_reader.clone(),
        s.parsed_tombstones.clone(),
        s.meta.clone(),
    );
});
