//! Pins the wire format: every message is encoded by hand here, field number by field number,
//! from the Thanos facts (formats.md §c), and compared with what the generated code produces.
//! A wrong field number, wire type or enum value in a `.proto` file fails these tests.

use prost::Message;
use strata_storepb::convert::{label_matcher, pack_any};
use strata_storepb::hintspb;
use strata_storepb::thanos::info::{InfoResponse, StoreInfo, TsdbInfo};
use strata_storepb::thanos::{
    AggrChunk, Chunk, EngineType, Label, LabelNamesRequest, LabelValuesRequest,
    LabelValuesResponse, QueryHints, QueryPlan, QueryRangeRequest, QueryRangeResponse,
    QueryRequest, QueryResponse, SeriesBatch, SeriesRequest, SeriesResponse, ShardInfo,
    StoreMatchers, ZLabelSet, label_matcher, query_plan, query_range_response, query_response,
    series_response,
};

const VARINT: u8 = 0;
const LEN: u8 = 2;

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A hand-rolled protobuf writer: just enough to spell messages out field by field.
#[derive(Default)]
struct W(Vec<u8>);

impl W {
    fn key(&mut self, field: u32, wire: u8) {
        varint(u64::from(field) << 3 | u64::from(wire), &mut self.0);
    }
    fn int(mut self, field: u32, v: i64) -> Self {
        self.key(field, VARINT);
        varint(v as u64, &mut self.0);
        self
    }
    fn bytes(mut self, field: u32, b: &[u8]) -> Self {
        self.key(field, LEN);
        varint(b.len() as u64, &mut self.0);
        self.0.extend_from_slice(b);
        self
    }
    fn str(self, field: u32, s: &str) -> Self {
        self.bytes(field, s.as_bytes())
    }
    fn msg(self, field: u32, m: W) -> Self {
        self.bytes(field, &m.0)
    }
}

fn label(name: &str, value: &str) -> W {
    W::default().str(1, name).str(2, value)
}

#[test]
fn series_request_fields_1_to_16() {
    let req = SeriesRequest {
        min_time: 1000,
        max_time: 2000,
        matchers: vec![
            label_matcher(label_matcher::Type::Eq, "job", "api"),
            label_matcher(label_matcher::Type::Nre, "pod", "x.*"),
        ],
        max_resolution_window: 300_000,
        aggregates: vec![1, 5],
        partial_response_disabled: true,
        partial_response_strategy: 1,
        skip_chunks: true,
        hints: Some(pack_any(&hintspb::SeriesRequestHints {
            block_matchers: vec![],
            enable_query_stats: true,
        })),
        step: 15,
        range: 60,
        query_hints: Some(QueryHints {
            step_millis: 30,
            func: Some(strata_storepb::thanos::Func {
                name: "rate".into(),
            }),
            grouping: Some(strata_storepb::thanos::Grouping {
                by: true,
                labels: vec!["job".into()],
            }),
            range: Some(strata_storepb::thanos::Range { millis: 300 }),
            projection_labels: vec!["a".into()],
            projection_include: true,
            series_hash_label_name: "h".into(),
        }),
        shard_info: Some(ShardInfo {
            shard_index: 1,
            total_shards: 4,
            by: true,
            labels: vec!["job".into()],
        }),
        without_replica_labels: vec!["replica".into()],
        limit: 10,
        response_batch_size: 64,
    };
    let any = W::default()
        .str(1, "type.googleapis.com/hintspb.SeriesRequestHints")
        .msg(2, W::default().int(2, 1));
    let want = W::default()
        .int(1, 1000)
        .int(2, 2000)
        // EQ is enum value 0, which proto3 does not write.
        .msg(3, W::default().str(2, "job").str(3, "api"))
        .msg(3, W::default().int(1, 3).str(2, "pod").str(3, "x.*"))
        .int(4, 300_000)
        // proto3 packs repeated enums.
        .bytes(5, &[1, 5])
        .int(6, 1)
        .int(7, 1)
        .int(8, 1)
        .msg(9, any)
        .int(10, 15)
        .int(11, 60)
        .msg(
            12,
            W::default()
                .int(1, 30)
                .msg(2, W::default().str(1, "rate"))
                .msg(4, W::default().int(1, 1).str(3, "job"))
                .msg(5, W::default().int(1, 300))
                .str(6, "a")
                .int(7, 1)
                .str(8, "h"),
        )
        .msg(13, W::default().int(1, 1).int(2, 4).int(3, 1).str(4, "job"))
        .str(14, "replica")
        .int(15, 10)
        .int(16, 64);
    assert_eq!(req.encode_to_vec(), want.0, "encoded SeriesRequest differs");
    assert_eq!(SeriesRequest::decode(want.0.as_slice()).unwrap(), req);
}

#[test]
fn series_response_oneof_arms() {
    // series = 1: labels, then one AggrChunk with a raw XOR chunk (type XOR = 0, omitted).
    let raw = W::default().bytes(2, &[0, 1, 0xAB]).int(3, 7);
    let series = W::default()
        .msg(1, label("__name__", "up"))
        .msg(2, W::default().int(1, -5).int(2, 10).msg(3, raw));
    let bytes = W::default().msg(1, series).0;
    let got = SeriesResponse::decode(bytes.as_slice()).unwrap();
    let Some(series_response::Result::Series(s)) = got.result else {
        panic!("want a series, got {got:?}")
    };
    assert_eq!(
        s.labels,
        vec![Label {
            name: "__name__".into(),
            value: "up".into()
        }]
    );
    assert_eq!(
        s.chunks,
        vec![AggrChunk {
            min_time: -5,
            max_time: 10,
            raw: Some(Chunk {
                r#type: 0,
                data: vec![0u8, 1, 0xAB].into(),
                hash: 7,
            }),
            ..Default::default()
        }]
    );

    // Aggregates: count = 4, sum = 5, min = 6, max = 7, counter = 8; HISTOGRAM = 1.
    let mut agg = W::default();
    for f in 4..=8 {
        agg = agg.msg(f, W::default().int(1, 1).bytes(2, &[f as u8]));
    }
    let a = AggrChunk::decode(agg.0.as_slice()).unwrap();
    assert_eq!(a.count.unwrap().data.as_ref(), &[4]);
    assert_eq!(a.sum.unwrap().data.as_ref(), &[5]);
    assert_eq!(a.min.unwrap().data.as_ref(), &[6]);
    assert_eq!(a.max.unwrap().data.as_ref(), &[7]);
    assert_eq!(a.counter.unwrap().r#type, 1);

    // warning = 2
    let got = SeriesResponse::decode(W::default().str(2, "partial").0.as_slice()).unwrap();
    assert_eq!(got, SeriesResponse::warning("partial"));

    // hints = 3
    let any = W::default()
        .str(1, "type.googleapis.com/hintspb.SeriesResponseHints")
        .msg(2, W::default().msg(1, W::default().str(1, "01ABC")));
    let got = SeriesResponse::decode(W::default().msg(3, any).0.as_slice()).unwrap();
    let Some(series_response::Result::Hints(h)) = got.result else {
        panic!("want hints")
    };
    let h: hintspb::SeriesResponseHints = strata_storepb::convert::unpack_any(&h).unwrap();
    assert_eq!(h.queried_blocks[0].id, "01ABC");

    // batch = 4
    let batch = W::default()
        .msg(1, W::default().msg(1, label("a", "1")))
        .msg(1, W::default().msg(1, label("a", "2")));
    let got = SeriesResponse::decode(W::default().msg(4, batch).0.as_slice()).unwrap();
    let Some(series_response::Result::Batch(SeriesBatch { series, .. })) = got.result else {
        panic!("want a batch")
    };
    assert_eq!(series.len(), 2);
    assert_eq!(series[1].labels[0].value, "2");
}

#[test]
fn label_requests() {
    let req = LabelNamesRequest {
        partial_response_disabled: true,
        partial_response_strategy: 1,
        start: 1,
        end: 2,
        hints: None,
        matchers: vec![label_matcher(label_matcher::Type::Re, "a", "b")],
        without_replica_labels: vec!["r".into()],
        limit: 3,
    };
    let want = W::default()
        .int(1, 1)
        .int(2, 1)
        .int(3, 1)
        .int(4, 2)
        .msg(6, W::default().int(1, 2).str(2, "a").str(3, "b"))
        .str(7, "r")
        .int(8, 3);
    assert_eq!(req.encode_to_vec(), want.0);

    let req = LabelValuesRequest {
        label: "job".into(),
        partial_response_disabled: true,
        partial_response_strategy: 1,
        start: -1,
        end: 5,
        hints: None,
        matchers: vec![label_matcher(label_matcher::Type::Neq, "a", "")],
        without_replica_labels: vec!["r".into()],
        limit: 9,
    };
    let want = W::default()
        .str(1, "job")
        .int(2, 1)
        .int(3, 1)
        // Negative int64: ten-byte two's complement varint.
        .int(4, -1)
        .int(5, 5)
        .msg(7, W::default().int(1, 1).str(2, "a"))
        .str(8, "r")
        .int(9, 9);
    assert_eq!(req.encode_to_vec(), want.0);

    let resp = LabelValuesResponse::decode(
        W::default()
            .str(1, "a")
            .str(1, "b")
            .str(2, "w")
            .0
            .as_slice(),
    )
    .unwrap();
    assert_eq!(resp.values, vec!["a", "b"]);
    assert_eq!(resp.warnings, vec!["w"]);
}

#[test]
fn info_response() {
    let resp = InfoResponse {
        label_sets: vec![ZLabelSet {
            labels: vec![Label {
                name: "cluster".into(),
                value: "eu".into(),
            }],
        }],
        component_type: "store".into(),
        store: Some(StoreInfo {
            min_time: 10,
            max_time: 20,
            supports_sharding: true,
            supports_without_replica_labels: true,
            tsdb_infos: vec![TsdbInfo {
                labels: Some(ZLabelSet { labels: vec![] }),
                min_time: 11,
                max_time: 19,
            }],
            supports_projections: true,
        }),
        ..Default::default()
    };
    let want = W::default()
        .msg(1, W::default().msg(1, label("cluster", "eu")))
        .str(2, "store")
        .msg(
            3,
            W::default()
                .int(1, 10)
                .int(2, 20)
                .int(3, 1)
                .int(5, 1)
                .msg(6, W::default().msg(1, W::default()).int(2, 11).int(3, 19))
                .int(7, 1),
        );
    assert_eq!(resp.encode_to_vec(), want.0);
    assert_eq!(InfoResponse::decode(want.0.as_slice()).unwrap(), resp);
}

#[test]
fn grpc_method_paths() {
    // The generated clients and servers route by these exact paths.
    let src = [
        strata_storepb::thanos::store_server::SERVICE_NAME,
        strata_storepb::thanos::info::info_server::SERVICE_NAME,
    ];
    assert_eq!(src, ["thanos.Store", "thanos.info.Info"]);
    assert_eq!(
        strata_storepb::thanos::query_server::SERVICE_NAME,
        "thanos.Query"
    );
}

#[test]
fn query_api_requests() {
    // pkg/api/query/querypb: QueryRequest fields 1-8 and 10-14 (9 was enableQueryPushdown).
    let req = QueryRequest {
        query: "up".into(),
        query_plan: Some(QueryPlan {
            encoding: Some(query_plan::Encoding::Json(b"{}".to_vec())),
        }),
        time_seconds: 1_700_000_000,
        timeout_seconds: 30,
        max_resolution_seconds: 300,
        replica_labels: vec!["replica".into()],
        store_matchers: vec![StoreMatchers {
            label_matchers: vec![label_matcher(label_matcher::Type::Eq, "a", "b")],
        }],
        enable_dedup: true,
        enable_partial_response: true,
        skip_chunks: true,
        shard_info: Some(ShardInfo {
            shard_index: 1,
            total_shards: 2,
            by: false,
            labels: Vec::new(),
        }),
        lookback_delta_seconds: 600,
        engine: EngineType::Thanos as i32,
    };
    let want = W::default()
        .str(1, "up")
        .int(2, 1_700_000_000)
        .int(3, 30)
        .int(4, 300)
        .str(5, "replica")
        .msg(6, W::default().msg(1, W::default().str(2, "a").str(3, "b")))
        .int(7, 1)
        .int(8, 1)
        .int(10, 1)
        .msg(11, W::default().int(1, 1).int(2, 2))
        .int(12, 600)
        .int(13, 2)
        .msg(14, W::default().bytes(1, b"{}"));
    assert_eq!(req.encode_to_vec(), want.0);

    // QueryRangeRequest: times 2-4, then the same fields two numbers on (11 was pushdown).
    let req = QueryRangeRequest {
        query: "up".into(),
        start_time_seconds: 10,
        end_time_seconds: 20,
        interval_seconds: 5,
        timeout_seconds: 30,
        max_resolution_seconds: 3600,
        replica_labels: vec!["r".into()],
        enable_dedup: true,
        enable_partial_response: true,
        skip_chunks: true,
        lookback_delta_seconds: 60,
        engine: EngineType::Prometheus as i32,
        query_plan: Some(QueryPlan {
            encoding: Some(query_plan::Encoding::Json(b"[]".to_vec())),
        }),
        ..Default::default()
    };
    let want = W::default()
        .str(1, "up")
        .int(2, 10)
        .int(3, 20)
        .int(4, 5)
        .int(5, 30)
        .int(6, 3600)
        .str(7, "r")
        .int(9, 1)
        .int(10, 1)
        .int(12, 1)
        .int(14, 60)
        .int(15, 1)
        .msg(16, W::default().bytes(1, b"[]"));
    assert_eq!(req.encode_to_vec(), want.0);
}

#[test]
fn query_api_responses() {
    // A series: prometheus_copy.TimeSeries{labels = 1, samples = 2 {value = 1 (double),
    // timestamp = 2}}, in the oneof's arm 2; warnings are arm 1, stats field 3.
    let sample = {
        let mut w = W::default();
        w.key(1, 1);
        w.0.extend_from_slice(&2.5f64.to_le_bytes());
        w.int(2, 1_700_000_000_000)
    };
    let series = W::default().msg(1, label("job", "a")).msg(2, sample);
    let want = W::default().msg(2, series);
    let got = QueryResponse::decode(want.0.as_slice()).unwrap();
    match got.result {
        Some(query_response::Result::Timeseries(ts)) => {
            assert_eq!(
                ts.labels,
                vec![Label {
                    name: "job".into(),
                    value: "a".into()
                }]
            );
            assert_eq!(ts.samples[0].value, 2.5);
            assert_eq!(ts.samples[0].timestamp, 1_700_000_000_000);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        QueryResponse::decode(want.0.as_slice())
            .unwrap()
            .encode_to_vec(),
        want.0
    );

    let warn = W::default().str(1, "store down");
    let got = QueryRangeResponse::decode(warn.0.as_slice()).unwrap();
    assert_eq!(
        got.result,
        Some(query_range_response::Result::Warnings("store down".into()))
    );
    let stats = W::default().msg(3, W::default().int(1, 10).int(2, 4));
    let got = QueryResponse::decode(stats.0.as_slice()).unwrap();
    assert_eq!(got.result, None);
    assert_eq!(
        got.stats.map(|s| (s.samples_total, s.peak_samples)),
        Some((10, 4))
    );
}

/// A short label and a long one with multi-byte characters.
fn two_labels() -> Vec<Label> {
    vec![
        Label {
            name: "__name__".into(),
            value: "up".into(),
        },
        Label {
            name: "zone".into(),
            value: "zürich".repeat(30),
        },
    ]
}

/// A server's own encoding of a batch ([`EncodedSeries`]) is byte for byte what prost writes
/// for the same structs, and decodes back to them.
#[test]
fn encoded_series_are_what_prost_writes() {
    use strata_storepb::thanos::{AggrChunk, Chunk, EncodedSeries, Label, Series, chunk};
    let ch = |t: i32, data: &[u8], hash: u64| Chunk {
        r#type: t,
        data: bytes::Bytes::copy_from_slice(data),
        hash,
    };
    let big = vec![0xA5u8; 300];
    let series = vec![
        Series {
            labels: two_labels(),
            chunks: vec![
                AggrChunk {
                    min_time: -5,
                    max_time: 1_700_000_000_000,
                    raw: Some(ch(chunk::Encoding::Xor as i32, &big, 0)),
                    ..Default::default()
                },
                AggrChunk {
                    min_time: 0,
                    max_time: 0,
                    raw: Some(ch(chunk::Encoding::Xor as i32, &[], 0)),
                    count: Some(ch(chunk::Encoding::Histogram as i32, &[1], 7)),
                    sum: Some(ch(0, &[2, 3], u64::MAX)),
                    min: Some(ch(0, &[4], 0)),
                    max: Some(ch(0, &[5], 0)),
                    counter: Some(ch(2, &[6], 1)),
                },
            ],
        },
        Series {
            labels: vec![Label {
                name: "a".into(),
                value: String::new(),
            }],
            chunks: vec![],
        },
        Series::default(),
    ];
    let mut encoded = EncodedSeries::default();
    for s in &series {
        let mut chunks = s.chunks.clone();
        encoded.push(
            s.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
            &mut chunks,
        );
        assert!(chunks.is_empty());
    }
    assert_eq!(encoded.count(), 3);
    let by_prost = SeriesBatch::of(series.clone());
    let by_hand = SeriesBatch {
        series: Vec::new(),
        encoded: encoded.clone(),
    };
    assert_eq!(by_hand.encoded_len(), by_prost.encoded_len());
    assert_eq!(by_hand.encode_to_vec(), by_prost.encode_to_vec());
    let back = SeriesBatch::decode(by_hand.encode_to_vec().as_slice()).unwrap();
    assert_eq!(back, by_prost);
    // Structs and encoded series in one batch: structs first.
    let mixed = SeriesBatch {
        series: series[..1].to_vec(),
        encoded,
    };
    let back = SeriesBatch::decode(mixed.encode_to_vec().as_slice()).unwrap();
    assert_eq!(back.series.len(), 4);
    assert_eq!(back.series[0], series[0]);
    assert_eq!(&back.series[1..], &series[..]);
    // In a response frame, as the gateway sends it.
    let frame = SeriesResponse {
        result: Some(series_response::Result::Batch(by_hand)),
    };
    let want = SeriesResponse {
        result: Some(series_response::Result::Batch(by_prost)),
    };
    assert_eq!(frame.encode_to_vec(), want.encode_to_vec());
}

/// `encoded` is byte for byte what prost writes for a batch of `structs`, and decodes back to
/// them.
fn assert_encoded_as_prost(
    encoded: strata_storepb::thanos::EncodedSeries,
    structs: Vec<strata_storepb::thanos::Series>,
) {
    let by_prost = SeriesBatch::of(structs);
    let by_hand = SeriesBatch {
        series: Vec::new(),
        encoded,
    };
    assert_eq!(by_hand.encoded_len(), by_prost.encoded_len());
    assert_eq!(by_hand.encode_to_vec(), by_prost.encode_to_vec());
    assert_eq!(
        SeriesBatch::decode(by_hand.encode_to_vec().as_slice()).unwrap(),
        by_prost
    );
}

/// Series of a querier's received chunks ([`WireChunk`]s, raw and downsampled, hashes set
/// or not) encoded with [`EncodedSeries::push_wire`] are byte for byte what prost writes for
/// the `AggrChunk`s they convert to.
#[test]
fn wire_chunk_series_are_what_prost_writes() {
    use strata_storepb::frame::WireChunk;
    use strata_storepb::thanos::{AggrChunk, Chunk, EncodedSeries, Series, chunk};
    let ch = |t: i32, len: usize, hash: u64| Chunk {
        r#type: t,
        data: bytes::Bytes::from(vec![0x5Au8; len]),
        hash,
    };
    let xor = chunk::Encoding::Xor as i32;
    let chunks = [
        AggrChunk::raw(-5, 1_700_000_000_000, ch(xor, 300, 0)),
        AggrChunk::raw(0, 0, ch(xor, 0, 0)),
        AggrChunk::raw(i64::MIN, i64::MAX, ch(3, 16_384, u64::MAX)),
        // Downsampled: some aggregates, with and without the raw part.
        AggrChunk {
            min_time: 10,
            max_time: 20,
            count: Some(ch(xor, 127, 0)),
            sum: Some(ch(xor, 128, 7)),
            counter: Some(ch(xor, 1, 0)),
            ..Default::default()
        },
        AggrChunk {
            min_time: 30,
            max_time: 40,
            raw: Some(ch(xor, 2, 0)),
            min: Some(ch(0, 0, 0)),
            max: Some(ch(xor, 5, 1)),
            ..Default::default()
        },
        // No part at all.
        AggrChunk {
            min_time: 50,
            max_time: 60,
            ..Default::default()
        },
    ];
    let labels = two_labels();
    let mut encoded = EncodedSeries::default();
    let mut structs = Vec::new();
    for n in 0..=chunks.len() {
        let mut wire: Vec<WireChunk> = chunks[..n].iter().cloned().map(WireChunk::from).collect();
        encoded.push_wire(
            labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
            &mut wire,
        );
        assert!(wire.is_empty());
        structs.push(Series {
            labels: labels.clone(),
            chunks: chunks[..n].to_vec(),
        });
    }
    assert_encoded_as_prost(encoded, structs);
}

/// Series of raw chunks encoded with [`EncodedSeries::push_raw`] are byte for byte what prost
/// writes for `AggrChunk`s with only `raw` set.
#[test]
fn raw_chunk_series_are_what_prost_writes() {
    use strata_storepb::thanos::{AggrChunk, Chunk, EncodedSeries, RawWireChunk, Series, chunk};
    let cases: Vec<(i64, i64, i32, Vec<u8>)> = vec![
        (
            -5,
            1_700_000_000_000,
            chunk::Encoding::Xor as i32,
            vec![0xA5; 300],
        ),
        (0, 0, chunk::Encoding::Xor as i32, vec![]),
        (
            i64::MIN,
            i64::MAX,
            chunk::Encoding::FloatHistogram as i32,
            vec![1, 2, 3],
        ),
        (7, 9, 0, vec![4; 200]),
        // Lengths around the one- and two-byte varint limits.
        (1, 2, 0, vec![9; 118]),
        (1, 2, 0, vec![9; 127]),
        (1, 2, 0, vec![9; 128]),
        (-1, 0, 0, vec![9; 16_380]),
        (0, -1, 0, vec![9; 16_384]),
    ];
    let labels = two_labels();
    let mut encoded = EncodedSeries::default();
    let mut structs = Vec::new();
    for n in 0..=cases.len() {
        let mut raw: Vec<RawWireChunk> = cases[..n]
            .iter()
            .map(|(min_time, max_time, t, data)| RawWireChunk {
                min_time: *min_time,
                max_time: *max_time,
                r#type: *t,
                data: bytes::Bytes::copy_from_slice(data),
            })
            .collect();
        encoded.push_raw(
            labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
            &mut raw,
        );
        assert!(raw.is_empty());
        structs.push(Series {
            labels: labels.clone(),
            chunks: cases[..n]
                .iter()
                .map(|(min_time, max_time, t, data)| {
                    AggrChunk::raw(
                        *min_time,
                        *max_time,
                        Chunk {
                            r#type: *t,
                            data: bytes::Bytes::copy_from_slice(data),
                            hash: 0,
                        },
                    )
                })
                .collect(),
        });
    }
    assert_encoded_as_prost(encoded, structs);
}

/// Label sets written by [`EncodedSeries`] around the one-byte length limit of its short-label
/// path (a label's fields under 128 bytes), empty names and values included, are byte for
/// byte what prost writes.
#[test]
fn label_lengths_around_one_byte_varints_are_what_prost_writes() {
    use strata_storepb::thanos::{EncodedSeries, Label, Series};
    let mut series = Vec::new();
    for name_len in [0usize, 1, 60, 62, 63, 64, 125, 126, 127, 128] {
        for value_len in [
            0usize, 1, 60, 61, 62, 63, 64, 123, 124, 125, 126, 127, 128, 200,
        ] {
            series.push(Series {
                labels: vec![
                    Label {
                        name: "n".repeat(name_len),
                        value: "v".repeat(value_len),
                    },
                    Label {
                        name: "z".into(),
                        value: "ü".repeat(value_len / 2),
                    },
                ],
                chunks: vec![],
            });
        }
    }
    let mut encoded = EncodedSeries::default();
    for s in &series {
        encoded.push(
            s.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
            &mut Vec::new(),
        );
    }
    let by_hand = SeriesBatch {
        series: Vec::new(),
        encoded,
    };
    let by_prost = SeriesBatch::of(series);
    assert_eq!(by_hand.encode_to_vec(), by_prost.encode_to_vec());
    assert_eq!(by_hand.encoded_len(), by_prost.encoded_len());
}
