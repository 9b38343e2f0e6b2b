//! Arbitrary bytes as an XOR chunk: the decoding APIs (one sample, bulk, slices, many chunks
//! at once) must agree sample for sample and error for error, and a chunk that decodes must
//! survive re-encoding bit-exactly.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_fuzz::check::xor_chunk(data));
