//! Arbitrary bytes as the body of a Series answer, split into pieces as HTTP/2 DATA frames
//! split it: the querier's gRPC message cutter against a plain parser of the whole body.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_fuzz::check::grpc_messages(data));
