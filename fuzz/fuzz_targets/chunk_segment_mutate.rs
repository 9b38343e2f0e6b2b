//! The sample block's chunk segment, edited by the fuzzer and with its chunk CRCs repaired,
//! read on its own and as part of the block (with the intact index): damaged chunk payloads
//! reach the XOR decoder through the same path a query takes.
#![no_main]

use bytes::Bytes;
use strata_fuzz::{check, mutate, sample};
use strata_tsdb::chunks::ChunkReader;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let s = sample::sample_block();
    let mut seg = s.segment.clone();
    mutate::mutate(&mut seg, data, &s.segment_spans);
    let Ok(reader) = ChunkReader::from_segments(vec![("000001".into(), Bytes::from(seg))]) else {
        return;
    };
    check::chunk_reader(&reader, s.chunk_refs.iter().copied());
    check::block(
        s.index_reader.clone(),
        reader,
        s.parsed_tombstones.clone(),
        s.meta.clone(),
    );
});
