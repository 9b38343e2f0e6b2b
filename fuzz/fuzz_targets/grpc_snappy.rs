//! Arbitrary bytes as a Snappy framed stream and as gRPC messages compressed with it
//! (`grpc-encoding: snappy`, Thanos' `--grpc-compression=snappy`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_fuzz::check::grpc_snappy(data));
