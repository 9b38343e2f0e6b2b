//! Series frames decoded straight into Strata's label sets, for the querier's Series calls.
//!
//! Why: decoding `thanos.SeriesResponse` with the generated code builds a `thanos::Series`
//! with a `thanos::Label` per label, then converts it into a [`strata_model::Labels`]; prost's generic merge
//! loops run for every label and chunk. On the fan-out benchmark that decoding was a quarter
//! of the querier's CPU for an instant query over 5,000 series. [`decode_series_response`]
//! reads the same bytes in one pass: label strings are copied once, into the label set the
//! engine keeps, and chunk data stay slices of the received frame (no copy).
//!
//! The result is what the generated decoder followed by
//! [`labels_to_model`](crate::convert::labels_to_model) (and [`WireChunk::from`] for the
//! chunks) gives, for any input, including
//! protobuf's merge rules (a oneof set twice keeps the last, a `series` field that repeats
//! merges into one series, unknown fields are skipped) and its errors (a malformed frame is an
//! error, never a panic). The unit tests below check that against prost on encoded and on
//! corrupted messages.

use bytes::Bytes;

use crate::codec::ReservingEncoder;
use crate::thanos::SeriesRequest;
use crate::thanos::{AggrChunk, Chunk};

mod call;
pub mod cut;
mod decode;

pub use call::{SeriesMessages, call_series};
pub use decode::{
    AggrParts, FrameError, SeriesFrame, WireChunk, WireSeries, decode_series_response,
};

/// The querier's codec for `/thanos.Store/Series`: requests are encoded as by every Store API
/// client ([`crate::codec`]); each answer is handed on as the frame's bytes, for
/// [`decode_series_response`] to decode.
///
/// Why not decode in the codec: tonic decodes a stream's frames one after another on the task
/// reading the stream, and decoding (label strings above all) costs more than receiving. The
/// querier decodes a store's frames on several tasks at once and keeps their order itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeriesFrameCodec;

impl tonic::codec::Codec for SeriesFrameCodec {
    type Encode = SeriesRequest;
    type Decode = Bytes;
    type Encoder = ReservingEncoder<SeriesRequest>;
    type Decoder = FrameBytes;

    fn encoder(&mut self) -> ReservingEncoder<SeriesRequest> {
        ReservingEncoder::default()
    }

    fn decoder(&mut self) -> FrameBytes {
        FrameBytes
    }
}

/// Takes each frame's bytes as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameBytes;

impl tonic::codec::Decoder for FrameBytes {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Bytes>, tonic::Status> {
        // Contiguous in tonic's buffer, so this takes the frame without copying it.
        Ok(Some(bytes::Buf::copy_to_bytes(
            src,
            bytes::Buf::remaining(src),
        )))
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::convert::labels_to_model;
    use crate::thanos::{self, Chunk, SeriesBatch, SeriesResponse, series_response};

    /// What the generated decoder and the label conversion make of `bytes`.
    fn by_prost(bytes: &[u8]) -> Result<SeriesFrame, prost::DecodeError> {
        let r = SeriesResponse::decode(Bytes::copy_from_slice(bytes))?;
        let conv = |s: thanos::Series| {
            let chunks = s.chunks.into_iter().map(WireChunk::from).collect();
            (labels_to_model(s.labels), chunks)
        };
        Ok(match r.result {
            None => SeriesFrame::Empty,
            Some(series_response::Result::Series(s)) => SeriesFrame::Series(vec![conv(s)]),
            Some(series_response::Result::Batch(b)) => {
                SeriesFrame::Series(b.series.into_iter().map(conv).collect())
            }
            Some(series_response::Result::Warning(w)) => SeriesFrame::Warning(w),
            Some(series_response::Result::Hints(_)) => SeriesFrame::Hints,
        })
    }

    fn ours(bytes: &[u8]) -> Result<SeriesFrame, FrameError> {
        decode_series_response(Bytes::copy_from_slice(bytes))
    }

    fn series(i: u64) -> thanos::Series {
        let label = |n: &str, v: String| thanos::Label {
            name: n.into(),
            value: v,
        };
        let mut labels = vec![
            label("__name__", "m".into()),
            label("job", format!("j{}", i % 3)),
            label("zone", format!("z-{i}")),
        ];
        if i % 4 == 1 {
            // Unsorted, with an empty value: converted by `Labels::new`.
            labels.swap(0, 2);
            labels.push(label("empty", String::new()));
        }
        let chunk = |d: u8| Chunk {
            r#type: 1,
            data: Bytes::from(vec![d; 3 + (i as usize % 5)]),
            hash: i,
        };
        thanos::Series {
            labels,
            chunks: (0..i % 3)
                .map(|k| AggrChunk {
                    min_time: k as i64 * 100 - 50,
                    max_time: k as i64 * 100 + 49,
                    raw: Some(chunk(k as u8)),
                    count: i.is_multiple_of(2).then(|| chunk(7)),
                    ..Default::default()
                })
                .collect(),
        }
    }

    fn frames() -> Vec<Vec<u8>> {
        let resp = |r| SeriesResponse { result: Some(r) }.encode_to_vec();
        let mut out = vec![
            resp(series_response::Result::Series(series(5))),
            resp(series_response::Result::Batch(SeriesBatch::of(
                (0..9).map(series).collect(),
            ))),
            resp(series_response::Result::Warning("store x: slow ✓".into())),
            resp(series_response::Result::Hints(prost_types::Any {
                type_url: "type.googleapis.com/hintspb.SeriesResponseHints".into(),
                value: vec![10, 0],
            })),
            SeriesResponse { result: None }.encode_to_vec(),
        ];
        // Protobuf merge rules: a repeated `series` field merges into one series, a oneof set
        // twice keeps the last, and unknown fields are skipped.
        let (a, b) = (out[0].clone(), out[1].clone());
        out.push([a.clone(), a.clone()].concat());
        out.push([a.clone(), b.clone()].concat());
        out.push([b.clone(), b.clone()].concat());
        out.push([b.clone(), out[2].clone(), a.clone()].concat());
        out.push([vec![0x28, 0x96, 0x01], a, vec![0x3a, 0x01, 0xff]].concat());
        out
    }

    #[test]
    fn frames_decode_as_prost_and_the_label_conversion_do() {
        for (i, f) in frames().iter().enumerate() {
            let want = by_prost(f).expect("prost decodes");
            assert_eq!(ours(f).expect("decodes"), want, "frame {i}");
        }
        // The cases above decode to real series, not just to nothing on both sides.
        let SeriesFrame::Series(batch) = ours(&frames()[1]).unwrap() else {
            panic!("a batch")
        };
        assert_eq!(batch.len(), 9);
        assert_eq!(
            batch[2].0.to_string(),
            r#"{__name__="m", job="j2", zone="z-2"}"#
        );
        assert_eq!(batch[2].1.len(), 2);
    }

    #[test]
    fn wire_chunks_are_small_and_convert_both_ways() {
        // The reason the type exists: a raw chunk without the generated struct's empty room.
        assert!(std::mem::size_of::<WireChunk>() <= 72);
        for i in 0..6 {
            for c in series(i).chunks {
                let w = WireChunk::from(c.clone());
                // Raw data keeps no box for the downsampled parts.
                assert_eq!(w.aggr.is_some(), c.count.is_some(), "series {i}");
                assert_eq!(w.parts().count, c.count);
                assert_eq!(AggrChunk::from(w), c);
            }
        }
        let every_part = AggrChunk {
            min_time: -1,
            max_time: 1,
            raw: None,
            count: Some(Chunk::default()),
            sum: Some(Chunk {
                r#type: 1,
                data: Bytes::from_static(b"s"),
                hash: 2,
            }),
            min: Some(Chunk::default()),
            max: Some(Chunk::default()),
            counter: Some(Chunk::default()),
        };
        assert_eq!(
            AggrChunk::from(WireChunk::from(every_part.clone())),
            every_part
        );
        assert_eq!(WireChunk::default().parts(), &AggrParts::default());
    }

    #[test]
    fn corrupt_frames_fail_or_decode_exactly_as_prost() {
        for f in frames() {
            for cut in 0..f.len() {
                let cut_frame = &f[..cut];
                assert_eq!(
                    ours(cut_frame).is_ok(),
                    by_prost(cut_frame).is_ok(),
                    "cut at {cut}"
                );
                if let Ok(want) = by_prost(cut_frame) {
                    assert_eq!(ours(cut_frame).unwrap(), want, "cut at {cut}");
                }
            }
            for at in 0..f.len() {
                for flip in [0x01u8, 0x80, 0xff] {
                    let mut g = f.clone();
                    g[at] ^= flip;
                    match (ours(&g), by_prost(&g)) {
                        (Ok(a), Ok(b)) => assert_eq!(a, b, "byte {at} ^ {flip:#x}"),
                        (Err(_), Err(_)) => {}
                        (a, b) => panic!("byte {at} ^ {flip:#x}: ours {a:?}, prost {b:?}"),
                    }
                }
            }
        }
    }
}
