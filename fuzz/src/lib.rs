//! Shared code for the fuzz targets of `strata-tsdb`, `strata-prompb`, and the gRPC Snappy
//! codec, gRPC message cutter and Series frame decoder of `strata-storepb`.
//!
//! The targets themselves (`fuzz_targets/*.rs`) are thin: each turns the fuzzer's bytes into
//! one or more files and hands them to a walk in [`check`], which drives a decoder through
//! every public entry point and asserts the properties that hold for *any* input, corrupt or
//! not (different decoding paths agree, what decodes re-encodes losslessly, results are
//! sorted). Keeping the walks here lets the plain and the structure-aware targets of the same
//! format share them, so a property added once is checked from every angle.
//!
//! [`sample`] builds a small valid block once per process; [`mutate`] applies fuzzer-chosen
//! edits to its files and then recomputes their CRC32Cs. Without that, nearly every mutation
//! of an index or a chunk segment is stopped by a checksum and the decoders behind it are
//! never reached.

pub mod check;
pub mod mutate;
pub mod sample;
pub mod series_frame;

/// The Snappy framing and gRPC message rewriting of `strata-storepb`, compiled here from its
/// source file: the crate itself pulls in tonic and a TLS library, which fuzzing builds would
/// instrument for nothing. The file depends only on `bytes`, `snap`, `crc32c` and `thiserror`.
#[path = "../../crates/storepb/src/snappy/codec.rs"]
#[allow(dead_code, unreachable_pub)]
pub mod grpc_snappy;

/// How the querier cuts a Series answer into gRPC messages (`strata-storepb`'s
/// `frame/cut.rs`), compiled here from its source file for the same reason; it depends only
/// on `bytes` and `thiserror`.
#[path = "../../crates/storepb/src/frame/cut.rs"]
#[allow(dead_code, unreachable_pub)]
pub mod grpc_messages;

/// The query frontend's range query answers (`strata-frontend`'s `response.rs`), compiled
/// here from its source file: the crate itself pulls in the querier's API and the remote
/// caches' clients. The file depends only on `bytes`, `serde`, `serde_json`, `thiserror` and
/// `strata-model`.
#[path = "../../crates/frontend/src/response.rs"]
#[allow(dead_code, unreachable_pub)]
pub mod frontend_response;

/// The DER reader behind the HTTP server's `client_allowed_sans` (`strata-runtime`'s
/// `web_config/der.rs`), compiled here from its source file; it depends on `std` alone.
#[path = "../../crates/runtime/src/web_config/der.rs"]
#[allow(dead_code, unreachable_pub)]
pub mod client_cert_der;
