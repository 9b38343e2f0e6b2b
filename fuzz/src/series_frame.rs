//! The querier's Series frame decoder (`strata_storepb::frame`), compiled here from its source
//! file, with prost-derived twins of the Store API messages it decodes.
//!
//! Why twins: `strata-storepb` generates these types at build time and pulls in tonic and a
//! TLS library, which fuzzing builds would instrument for nothing. The structs below carry the
//! field numbers and types of `thanos.SeriesResponse` and its parts (crates/storepb/proto), so
//! prost's derived decoding of them is the reference the hand-written decoder must agree with.

use bytes::Bytes;
use strata_model::Labels;

/// The decoder, as the querier runs it.
#[path = "../../crates/storepb/src/frame/decode.rs"]
#[allow(dead_code, unreachable_pub)]
pub mod decode;

/// `thanos.Chunk`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Chunk {
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(bytes = "bytes", tag = "2")]
    pub data: Bytes,
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

/// `thanos.AggrChunk`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AggrChunk {
    #[prost(int64, tag = "1")]
    pub min_time: i64,
    #[prost(int64, tag = "2")]
    pub max_time: i64,
    #[prost(message, optional, tag = "3")]
    pub raw: Option<Chunk>,
    #[prost(message, optional, tag = "4")]
    pub count: Option<Chunk>,
    #[prost(message, optional, tag = "5")]
    pub sum: Option<Chunk>,
    #[prost(message, optional, tag = "6")]
    pub min: Option<Chunk>,
    #[prost(message, optional, tag = "7")]
    pub max: Option<Chunk>,
    #[prost(message, optional, tag = "8")]
    pub counter: Option<Chunk>,
}

/// `thanos.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `thanos.Series`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Series {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub chunks: Vec<AggrChunk>,
}

/// `thanos.SeriesBatch`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SeriesBatch {
    #[prost(message, repeated, tag = "1")]
    pub series: Vec<Series>,
}

/// `thanos.SeriesResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SeriesResponse {
    #[prost(oneof = "Result", tags = "1, 2, 3, 4")]
    pub result: Option<Result>,
}

/// `thanos.SeriesResponse.result`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Result {
    #[prost(message, tag = "1")]
    Series(Series),
    #[prost(string, tag = "2")]
    Warning(String),
    #[prost(message, tag = "3")]
    Hints(prost_types::Any),
    #[prost(message, tag = "4")]
    Batch(SeriesBatch),
}

/// What prost's decoding of `bytes`, followed by the querier's label conversion, gives.
pub fn by_prost(bytes: &[u8]) -> std::result::Result<decode::SeriesFrame, prost::DecodeError> {
    let r = <SeriesResponse as prost::Message>::decode(bytes)?;
    let conv = |s: Series| {
        let labels = s
            .labels
            .into_iter()
            .map(|l| strata_model::Label {
                name: l.name,
                value: l.value,
            })
            .collect();
        let chunks = s.chunks.into_iter().map(decode::WireChunk::from).collect();
        (Labels::from_received(labels), chunks)
    };
    Ok(match r.result {
        None => decode::SeriesFrame::Empty,
        Some(Result::Series(s)) => decode::SeriesFrame::Series(vec![conv(s)]),
        Some(Result::Batch(b)) => {
            decode::SeriesFrame::Series(b.series.into_iter().map(conv).collect())
        }
        Some(Result::Warning(w)) => decode::SeriesFrame::Warning(w),
        Some(Result::Hints(_)) => decode::SeriesFrame::Hints,
    })
}
