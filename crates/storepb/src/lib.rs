//! The Thanos Store API and Info API, byte-compatible on the wire.
//!
//! This crate owns the protocol: the `.proto` files under `proto/` (written for Strata from the
//! wire facts of Thanos' `pkg/store/storepb`, `pkg/store/labelpb`, `pkg/store/hintspb` and
//! `pkg/info/infopb`), the Rust code generated from them at build time by prost and tonic, and
//! the conversions between wire messages and Strata's own types ([`convert`]).
//!
//! - [`thanos`]: package `thanos`: the `Store` service (`/thanos.Store/Series`, `LabelNames`,
//!   `LabelValues`), `SeriesRequest`, `SeriesResponse` (`series | warning | hints | batch`),
//!   `Series`, `AggrChunk`, `Chunk`, `LabelMatcher`, `Label`, `LabelSet`, `ZLabelSet`, …
//! - [`thanos::info`]: package `thanos.info`: the `Info` service and `InfoResponse`,
//!   `StoreInfo`, `TsdbInfo`.
//! - [`thanos`] also holds the Query API (`/thanos.Query/Query` and `QueryRange`: PromQL over
//!   gRPC, whose answers are [`prometheus_copy::TimeSeries`]).
//! - [`hintspb`]: package `hintspb`: hints carried in `google.protobuf.Any` with type URLs
//!   `type.googleapis.com/hintspb.<Message>` (see [`convert::pack_any`]).
//! - [`batch`]: `SeriesBatch`, written by hand: a server may send series it encoded itself
//!   ([`batch::EncodedSeries`]), byte for byte what prost would encode.
//! - [`codec`]: the codec of the generated clients and servers: prost's, reserving each
//!   message's encoded length before writing it.
//! - [`frame`]: the querier's decoding of Series frames straight into label sets, and its
//!   tonic codec for `/thanos.Store/Series`.
//! - [`server`]: the one gRPC server set-up every Store API server uses.
//! - [`snappy`]: Thanos' `--grpc-compression=snappy` (framed Snappy per gRPC message), which
//!   tonic lacks: a server layer that every [`server::serve`] installs, and a client channel
//!   wrapper for the querier.
//!
//! **Architecture invariants.**
//! - Package names, message names, field numbers and enum values are the Thanos wire contract
//!   and never change; `tests/wire.rs` pins them with hand-encoded bytes.
//! - No IO and no server logic: this crate is shared by the store gateway, and later the
//!   sidecar and querier, which must all speak exactly the same messages.
//! - The `.proto` files are compiled by `protox` (pure Rust), so no `protoc` is needed to build.

#![allow(clippy::doc_lazy_continuation, clippy::large_enum_variant)]

pub mod batch;
pub mod codec;
pub mod convert;
pub mod frame;
pub mod limits;
pub mod observe;
pub mod server;
pub mod snappy;

/// Package `thanos`: the Store API, its data types and the label messages; the Metadata, Rules, Exemplars and Targets APIs.
#[allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    clippy::all
)]
pub mod thanos {
    include!(concat!(env!("OUT_DIR"), "/thanos.rs"));

    pub use crate::batch::{EncodedSeries, RawWireChunk, SeriesBatch};

    /// Package `thanos.info`: the Info API.
    #[allow(
        missing_docs,
        unreachable_pub,
        missing_debug_implementations,
        clippy::all
    )]
    pub mod info {
        include!(concat!(env!("OUT_DIR"), "/thanos.info.rs"));
    }
}

/// Package `prometheus_copy`: Thanos' copy of Prometheus' remote types, as far as the Query
/// API's answers carry them (`TimeSeries`, `Sample`).
#[allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    clippy::all
)]
pub mod prometheus_copy {
    include!(concat!(env!("OUT_DIR"), "/prometheus_copy.rs"));
}

/// Package `hintspb`: store hints sent inside `google.protobuf.Any`.
#[allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    clippy::all
)]
pub mod hintspb {
    include!(concat!(env!("OUT_DIR"), "/hintspb.rs"));
}

pub use convert::ConvertError;
pub use prost_types::Any;
