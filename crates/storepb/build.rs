//! Compiles the Store, Info, Metadata, Rules, Exemplars, Targets and Query API `.proto` files into Rust with prost and tonic.
//!
//! The `.proto` files are parsed by `protox`, a protobuf compiler written in Rust, so building
//! Strata needs no `protoc` on the machine: `cargo build` works on a bare toolchain, and the
//! generated code cannot drift with the system's protobuf version.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/store/labelpb/types.proto",
    "proto/store/storepb/types.proto",
    "proto/store/storepb/rpc.proto",
    "proto/store/hintspb/hints.proto",
    "proto/info/infopb/rpc.proto",
    "proto/metadata/metadatapb/rpc.proto",
    "proto/rules/rulespb/rpc.proto",
    "proto/exemplars/exemplarspb/rpc.proto",
    "proto/targets/targetspb/rpc.proto",
    "proto/store/storepb/prompb/types.proto",
    "proto/api/query/querypb/query.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for p in PROTOS {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = prost_build::Config::new();
    // `prost::Name` with Thanos' type URLs, for hints packed into `google.protobuf.Any`.
    config
        .enable_type_names()
        .type_name_domain(["."], "type.googleapis.com");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Prost's encoding with each message's room reserved up front (src/codec.rs).
        .codec_path("crate::codec::StoreCodec")
        // Chunk data is handed out as slices of the bytes fetched from object storage.
        .bytes(".thanos.Chunk.data")
        // Written by hand (src/batch.rs) so that a server can send series it encoded itself.
        .extern_path(".thanos.SeriesBatch", "crate::batch::SeriesBatch")
        .out_dir(&out)
        .compile_fds_with_config(fds, config)?;
    Ok(())
}
