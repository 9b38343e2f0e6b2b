//! Decoding a Series frame on the querier: the generated decoder followed by the label
//! conversion, against [`strata_storepb::frame::decode_series_response`].
//!
//! ```text
//! cargo bench -p strata-storepb --bench frame
//! ```
//!
//! The frame is what the store gateway sends the fan-out benchmark: 64 series of
//! `http_requests_total` with five labels each and two raw chunks of 150 bytes.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use strata_storepb::convert::labels_to_model;
use strata_storepb::frame::{SeriesFrame, decode_series_response};
use strata_storepb::thanos::{
    AggrChunk, Chunk, Label, Series, SeriesBatch, SeriesResponse, series_response,
};

fn frame() -> Bytes {
    let label = |n: &str, v: String| Label {
        name: n.into(),
        value: v,
    };
    let series = (0..64)
        .map(|i| Series {
            labels: vec![
                label("__name__", "http_requests_total".into()),
                label("instance", format!("instance-{}", i % 50)),
                label("job", format!("job-{}", i % 4)),
                label("method", ["GET", "POST"][i % 2].into()),
                label("status", ["200", "404", "500"][i % 3].into()),
            ],
            chunks: (0..2)
                .map(|k| AggrChunk {
                    min_time: k * 1_800_000,
                    max_time: k * 1_800_000 + 1_785_000,
                    raw: Some(Chunk {
                        r#type: 1,
                        data: Bytes::from(vec![k as u8; 150]),
                        hash: 0,
                    }),
                    ..Default::default()
                })
                .collect(),
        })
        .collect();
    let r = SeriesResponse {
        result: Some(series_response::Result::Batch(SeriesBatch::of(series))),
    };
    Bytes::from(r.encode_to_vec())
}

fn decode(c: &mut Criterion) {
    let f = frame();
    let mut g = c.benchmark_group("series_frame");
    g.throughput(Throughput::Elements(64));
    g.bench_function("prost_then_labels_to_model", |b| {
        b.iter(|| {
            let r = SeriesResponse::decode(f.clone()).expect("decodes");
            let Some(series_response::Result::Batch(batch)) = r.result else {
                panic!("a batch")
            };
            batch
                .series
                .into_iter()
                .map(|s| (labels_to_model(s.labels), s.chunks))
                .collect::<Vec<_>>()
        })
    });
    g.bench_function("decode_series_response", |b| {
        b.iter(
            || match decode_series_response(f.clone()).expect("decodes") {
                SeriesFrame::Series(s) => s,
                other => panic!("a batch, not {other:?}"),
            },
        )
    });
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
