//! Arbitrary bytes as a querier's answer to a range query, as the query frontend reads it
//! (from the querier, or from a remote results cache that anything may have written to).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_fuzz::check::frontend_matrix(data));
