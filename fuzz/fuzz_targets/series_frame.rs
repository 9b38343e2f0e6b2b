//! Arbitrary bytes as a Series frame the querier receives from a store: the hand-written
//! decoder must agree with prost's decoding of the same bytes (followed by the label
//! conversion) on every input, both on what decodes and on what fails.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_fuzz::check::series_frame(data));
