//! Arbitrary bytes as a Prometheus remote read answer: a stream of CRC-checked frames
//! (`STREAMED_XOR_CHUNKS`) and a snappy-compressed `ReadResponse` (`SAMPLES`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_fuzz::check::remote_read(data));
