//! Arbitrary bytes as a Thanos aggregate chunk (encoding 0xff, the downsampled format): every
//! sub-chunk is looked up and decoded, a chunk whose parts all parse re-encodes to the same
//! bytes, and the counter-reset iterator digests whatever the counter part holds.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_fuzz::check::aggr_chunk(data));
