//! Writes the seed corpus of every fuzz target: `seeds [DIR]` fills `DIR/<target>/`
//! (default `fuzz/corpus`).
//!
//! Seeds are generated with the crate's own writers instead of being checked in, so they
//! always match the current format and cost nothing in the repository. Each seed has a fixed
//! name and fixed content, so running this again overwrites rather than accumulates; what
//! libFuzzer adds to the same directories (hash-named files) is left alone.

use std::fs;
use std::path::{Path, PathBuf};

use strata_fuzz::sample::{STALE_NAN, sample_block};
use strata_tsdb::chunks::{SEGMENT_HEADER_LEN, SEGMENT_MAGIC, SEGMENT_VERSION};
use strata_tsdb::encoding::{crc32c, put_uvarint};
use strata_tsdb::index::IndexWriter;
use strata_tsdb::meta::BlockMeta;
use strata_tsdb::tombstones::{Interval, Tombstones};
use strata_tsdb::{Encoding, XorEncoder};

fn main() {
    let root = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".into()),
    );
    let s = sample_block();
    let mut out = Seeds { root, count: 0 };

    for (i, c) in s.xor_chunks.iter().enumerate() {
        out.write("xor_chunk", &format!("sample-{i}"), c);
    }
    for (name, c) in crafted_xor_chunks() {
        out.write("xor_chunk", name, &c);
    }
    // Aggregate chunks: all five parts, some absent, and an empty one.
    {
        use strata_tsdb::Encoding;
        use strata_tsdb::chunkenc::aggr::encode_aggr_chunk;
        let x = |i: usize| s.xor_chunks[i % s.xor_chunks.len()].as_slice();
        let full = encode_aggr_chunk(&[
            Some((Encoding::Xor, x(0))),
            Some((Encoding::Xor, x(1))),
            Some((Encoding::Xor, x(2))),
            Some((Encoding::Xor, x(3))),
            Some((Encoding::Xor, x(4))),
        ]);
        out.write("aggr_chunk", "all-parts", &full);
        let sparse = encode_aggr_chunk(&[
            Some((Encoding::Xor, x(0))),
            Some((Encoding::Xor, x(1))),
            None,
            None,
            Some((Encoding::Xor, x(2))),
        ]);
        out.write("aggr_chunk", "count-sum-counter", &sparse);
        out.write("aggr_chunk", "empty", &encode_aggr_chunk(&[None; 5]));
    }

    for (name, body) in [
        ("matrix", &br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a"},"values":[[1,"1"],[2.5,"NaN"],[4,"+Inf"]]},{"metric":{},"values":[[3,"0"]]}]},"warnings":["w"]}"#[..]),
        ("histograms", br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"\u003c"},"histograms":[[1,{"count":"2","sum":"1","buckets":[[0,"0","1","2"]]}]]}]}}"#),
        ("spaced", b"{ \"status\" : \"success\", \"data\" : { \"resultType\" : \"matrix\", \"result\" : [ { \"metric\" : { \"b\" : \"1\" } , \"values\" : [ [ 1 , \"1\" ] , [ 2 , \"2\" ] ] } ] } }"),
    ] {
        out.write("frontend_matrix", name, body);
    }

    out.write("chunk_segment", "sample", &s.segment);
    out.write("chunk_segment", "every-encoding", &every_encoding_segment());
    let mut padded = every_encoding_segment();
    padded.extend_from_slice(&[0; 32]);
    out.write("chunk_segment", "zero-padded", &padded);
    let mut two = s.segment.clone();
    two.extend_from_slice(&every_encoding_segment());
    out.write("chunk_segment", "two-segments", &two);

    out.write("index", "sample", &s.index);
    out.write("index", "empty", &empty_index());
    out.write("meta_json", "sample", &s.meta_json);
    out.write("meta_json", "prometheus", &prometheus_meta());
    out.write("meta_json", "odd-fields", ODD_META.as_bytes());
    out.write("tombstones", "sample", &s.tombstones);
    out.write("tombstones", "empty", &Tombstones::default().encode());
    // The tombstones target also reads its input as bare entries (it adds header and CRC).
    out.write(
        "tombstones",
        "entries",
        &s.tombstones[5..s.tombstones.len() - 4],
    );
    let mut many = Tombstones::default();
    for i in 0..40 {
        many.add(
            i % 3,
            Interval {
                min: i as i64 * 10,
                max: i as i64 * 10 + 4,
            },
        );
    }
    out.write("tombstones", "many", &many.encode());

    for (name, seg) in wal_segments() {
        out.write("wal_reader", name, &seg);
    }

    // Remote read answers: two frames of a streamed answer holding real XOR chunks, and a
    // snappy SAMPLES answer.
    {
        use prost::Message;
        use strata_prompb::{
            Chunk, ChunkedReadResponse, ChunkedSeries, Label, QueryResult, ReadResponse, Sample,
            TimeSeries,
        };
        let label = |n: &str, v: &str| Label {
            name: n.into(),
            value: v.into(),
        };
        let mut stream = Vec::new();
        for (i, c) in s.xor_chunks.iter().take(4).enumerate() {
            let msg = ChunkedReadResponse {
                chunked_series: vec![ChunkedSeries {
                    labels: vec![label("__name__", "up"), label("i", &i.to_string())],
                    chunks: vec![Chunk {
                        min_time_ms: 0,
                        max_time_ms: 1000,
                        r#type: 1,
                        data: c.clone().into(),
                    }],
                }],
                query_index: 0,
            }
            .encode_to_vec();
            put_uvarint(&mut stream, msg.len() as u64);
            stream.extend_from_slice(&crc32c(&msg).to_be_bytes());
            stream.extend_from_slice(&msg);
        }
        out.write("remote_read", "streamed", &stream);
        let samples = ReadResponse {
            results: vec![QueryResult {
                timeseries: vec![TimeSeries {
                    labels: vec![label("__name__", "up")],
                    samples: (0..20)
                        .map(|k| Sample {
                            value: if k == 7 {
                                f64::from_bits(STALE_NAN)
                            } else {
                                k as f64
                            },
                            timestamp: k * 15_000,
                        })
                        .collect(),
                    histograms: Vec::new(),
                }],
            }],
        }
        .encode_to_vec();
        let body = snap::raw::Encoder::new()
            .compress_vec(&samples)
            .expect("snappy compresses");
        out.write("remote_read", "samples", &body);

        // gRPC Snappy: one framed stream alone, and two gRPC messages (one compressed with it,
        // one plain) as a `grpc-encoding: snappy` body carries them.
        let mut framed = bytes::BytesMut::new();
        strata_fuzz::grpc_snappy::compress_framed(&samples, &mut framed).expect("compresses");
        out.write("grpc_snappy", "framed", &framed);
        let mut body = Vec::new();
        grpc_message(&mut body, 1, &framed);
        grpc_message(&mut body, 0, b"\x0a\x02up");
        out.write("grpc_snappy", "messages", &body);

        // The same messages uncompressed, as a Series answer's body arrives, with split
        // points after the prefix of the first (the body starts after two split bytes).
        let mut plain = vec![3u8, 4];
        grpc_message(&mut plain, 0, &samples);
        grpc_message(&mut plain, 0, b"\x0a\x02up");
        out.write("grpc_messages", "two", &plain);
    }

    // A client certificate's skeleton with a subjectAltName extension (a DNS name, an IPv4
    // address, an e-mail address), for the HTTP server's `client_allowed_sans` reader.
    {
        fn der(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
            let content: Vec<u8> = parts.concat();
            let mut out = vec![tag];
            match content.len() {
                n if n < 0x80 => out.push(n as u8),
                n if n < 0x100 => out.extend([0x81, n as u8]),
                n => out.extend([0x82, (n >> 8) as u8, n as u8]),
            }
            out.extend(content);
            out
        }
        let names = der(
            0x30,
            &[
                &der(0x82, &[b"localhost"]),
                &der(0x87, &[&[127, 0, 0, 1]]),
                &der(0x81, &[b"ops@example.com"]),
            ],
        );
        let ext = der(
            0x30,
            &[&der(0x06, &[&[0x55, 0x1d, 0x11]]), &der(0x04, &[&names])],
        );
        let tbs = der(
            0x30,
            &[&der(0x02, &[&[1]]), &der(0xa3, &[&der(0x30, &[&ext])])],
        );
        let cert = der(0x30, &[&tbs, &der(0x30, &[]), &der(0x03, &[&[0]])]);
        assert_eq!(
            strata_fuzz::client_cert_der::subject_alt_names(&cert).expect("reads"),
            ["localhost", "127.0.0.1", "ops@example.com"]
        );
        out.write("client_cert_sans", "sans", &cert);
    }

    // Series frames as a store gateway sends them: a batch of series with raw chunks, a
    // single series with a downsampled chunk, a warning, and hints.
    {
        use prost::Message;
        use strata_fuzz::series_frame::{
            AggrChunk, Chunk, Label, Result, Series, SeriesBatch, SeriesResponse,
        };
        let label = |n: &str, v: &str| Label {
            name: n.into(),
            value: v.into(),
        };
        let chunk = |d: &[u8]| Chunk {
            r#type: 1,
            data: bytes::Bytes::copy_from_slice(d),
            hash: 0,
        };
        let series = |job: &str| Series {
            labels: vec![label("__name__", "up"), label("job", job)],
            chunks: vec![AggrChunk {
                min_time: 1_000,
                max_time: 61_000,
                raw: Some(chunk(&[
                    0, 2, 0x80, 0x8e, 0x0f, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0,
                ])),
                ..Default::default()
            }],
        };
        let frames = [
            (
                "batch",
                Result::Batch(SeriesBatch {
                    series: vec![series("a"), series("b")],
                }),
            ),
            (
                "aggregates",
                Result::Series(Series {
                    labels: vec![label("job", "c")],
                    chunks: vec![AggrChunk {
                        min_time: -5,
                        max_time: 299_999,
                        count: Some(chunk(&[1, 2, 3])),
                        sum: Some(chunk(&[4, 5])),
                        counter: Some(chunk(&[6])),
                        ..Default::default()
                    }],
                }),
            ),
            ("warning", Result::Warning("store a: slow".into())),
            (
                "hints",
                Result::Hints(prost_types::Any {
                    type_url: "type.googleapis.com/hintspb.SeriesResponseHints".into(),
                    value: vec![10, 2, 10, 0],
                }),
            ),
        ];
        for (name, r) in frames {
            let f = SeriesResponse { result: Some(r) }.encode_to_vec();
            out.write("series_frame", name, &f);
        }
    }

    // Mutation programs: `flags | (kind, offset BE16, arg)*` (see strata_fuzz::mutate).
    let programs: [(&str, &[u8]); 6] = [
        ("intact", &[0]),
        ("no-repair-flip", &[1, 0, 0, 40, 0x10]),
        ("flip", &[0, 0, 0, 40, 0x10]),
        ("length", &[0, 3, 0, 9, 200]),
        ("truncate", &[0, 5, 1, 0, 0]),
        ("dup-and-varint", &[0, 7, 0, 30, 5, 9, 0, 70, 3]),
    ];
    for (name, p) in programs {
        out.write("index_mutate", name, p);
        out.write("chunk_segment_mutate", name, p);
    }
    println!("wrote {} seeds under {}", out.count, out.root.display());
}

struct Seeds {
    root: PathBuf,
    count: usize,
}

impl Seeds {
    fn write(&mut self, target: &str, name: &str, data: &[u8]) {
        let dir = self.root.join(target);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let path = dir.join(format!("seed-{name}"));
        fs::write(&path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        self.count += 1;
    }
}

/// XOR chunks for the corners of the format the sample block does not reach.
fn crafted_xor_chunks() -> Vec<(&'static str, Vec<u8>)> {
    let enc = |s: &[(i64, f64)]| XorEncoder::encode(s.iter().copied()).expect("encodes");
    let stale = f64::from_bits(STALE_NAN);
    let full_width = [
        (0, f64::from_bits(1)),
        (1, f64::from_bits(1 << 63)),
        (2, f64::from_bits(1)),
    ];
    let long: Vec<(i64, f64)> = (0..300)
        .map(|i| (i * 15_000 + (i * i) % 97, (i as f64 * 0.1).sin()))
        .collect();
    let extremes = [
        (i64::MIN, f64::NEG_INFINITY),
        (i64::MAX, stale),
        (0, f64::NAN),
        (i64::MIN + 1, -0.0),
    ];
    let long_bytes = enc(&long);
    vec![
        ("empty", enc(&[])),
        ("one", enc(&[(1234, 5.5)])),
        ("two-stale", enc(&[(-5, 1.0), (10, stale)])),
        ("full-width-xor", enc(&full_width)),
        ("long", long_bytes.clone()),
        ("extremes", enc(&extremes)),
        ("truncated", long_bytes[..long_bytes.len() / 2].to_vec()),
    ]
}

/// A segment holding one chunk of each encoding byte the format defines, plus an unknown one.
fn every_encoding_segment() -> Vec<u8> {
    let mut seg = Vec::new();
    seg.extend_from_slice(&SEGMENT_MAGIC.to_be_bytes());
    seg.push(SEGMENT_VERSION);
    seg.resize(SEGMENT_HEADER_LEN, 0);
    let xor = XorEncoder::encode([(1, 1.0), (2, 2.0), (4, 2.0)]).expect("encodes");
    for code in [1u8, 2, 3, 4, 5, 6, 0xFF, 0x42] {
        let data: &[u8] = if Encoding::from_u8(code) == Encoding::Xor {
            &xor
        } else {
            &[0, 1, 2, 3]
        };
        put_uvarint(&mut seg, data.len() as u64);
        let start = seg.len();
        seg.push(code);
        seg.extend_from_slice(data);
        let crc = crc32c(&seg[start..]);
        seg.extend_from_slice(&crc.to_be_bytes());
    }
    seg
}

/// An index with an empty symbol table and no series, written by the index writer.
fn empty_index() -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("strata-fuzz-seeds-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("create temp dir");
    let path: &Path = &dir.join("index");
    IndexWriter::create(path, Vec::new())
        .and_then(IndexWriter::finish)
        .expect("write empty index");
    let bytes = fs::read(path).expect("read empty index");
    let _ = fs::remove_dir_all(&dir);
    bytes
}

/// A plain Prometheus meta.json: no Thanos section.
fn prometheus_meta() -> Vec<u8> {
    let ulid = "01ARZ3NDEKTSV4RRFFQ69G5FAV".parse().expect("valid ULID");
    BlockMeta::new(ulid, -1_000, 7_200_000).to_json()
}

/// Go-style nulls, every optional section, and fields this version does not know.
const ODD_META: &str = r#"{
	"ulid": "01ARZ3NDEKTSV4RRFFQ69G5FAV",
	"minTime": -9223372036854775808,
	"maxTime": 9223372036854775807,
	"stats": {"numSamples": 18446744073709551615, "numTombstones": 3, "future": 1.5e300},
	"compaction": {"level": 4, "sources": null, "parents": [{"ulid": "01BX5ZZKBKACTAV9WEVGEMMVRZ", "minTime": 0, "maxTime": 1}],
		"deletable": true, "failed": false, "hints": ["from-out-of-order"], "x": [null, -0.0, "\u00e9\ud83d\ude00"]},
	"version": 1,
	"thanos": {"version": 1, "labels": null, "downsample": {"resolution": 3600000}, "source": "compactor",
		"segment_files": null, "files": [{"rel_path": "index", "size_bytes": 12, "hash": {"hashFunc": "SHA256", "value": "00"}}],
		"rewrites": [{"sources": []}], "index_stats": {"series_max_size": 64}, "extensions": {"a": [1, 2]},
		"upload_time": "2024-01-01T00:00:00Z", "unknown": {}},
	"z": 0.1
}"#;

/// Appends one gRPC message to `body`: the compressed flag, the big-endian length, the bytes.
fn grpc_message(body: &mut Vec<u8>, flag: u8, payload: &[u8]) {
    body.push(flag);
    body.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    body.extend_from_slice(payload);
}

/// WAL segments written by our writer: uncompressed and Snappy-compressed records of every
/// type the reader decodes, a record spanning pages, and an unknown record type.
fn wal_segments() -> Vec<(&'static str, Vec<u8>)> {
    use strata_model::Labels;
    use strata_tsdb::wal::record::{self, Record, RefSample, RefSeries, Stone};
    use strata_tsdb::wal::{Wal, WalOptions, segment_path};

    let recs: Vec<Vec<u8>> = [
        Record::Series(vec![RefSeries {
            series_ref: 1,
            labels: Labels::from_pairs(&[("__name__", "up"), ("job", "rule")]),
        }]),
        Record::Samples(
            (0..200)
                .map(|i| RefSample {
                    series_ref: 1 + i % 3,
                    t: 1_700_000_000_000 + i as i64 * 15_000,
                    v: if i == 7 {
                        f64::from_bits(STALE_NAN)
                    } else {
                        i as f64 * 0.5
                    },
                })
                .collect(),
        ),
        Record::Tombstones(vec![Stone {
            series_ref: 1,
            min_time: 0,
            max_time: 100,
        }]),
    ]
    .iter()
    .map(|r| {
        let mut b = Vec::new();
        record::encode(r, &mut b);
        b
    })
    .collect();
    let mut out = Vec::new();
    for (name, compress) in [("wal-plain", false), ("wal-snappy", true)] {
        let dir =
            std::env::temp_dir().join(format!("strata-fuzz-seeds-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut w = Wal::open(
            &dir,
            WalOptions {
                compress,
                ..WalOptions::default()
            },
        )
        .expect("open a WAL in the temporary directory");
        w.log(&recs).expect("log");
        w.log(&[vec![record::EXEMPLARS, 0, 1], vec![0x55; 40_000]])
            .expect("log");
        w.close().expect("close");
        out.push((
            name,
            fs::read(segment_path(&dir, 0)).expect("read the segment"),
        ));
        let _ = fs::remove_dir_all(&dir);
    }
    out
}
