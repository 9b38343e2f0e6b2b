//! Prometheus' remote read messages (package `prometheus`, `prompb/remote.proto` and
//! `prompb/types.proto`), declared by hand for the fields Strata speaks.
//!
//! The read path: `ReadRequest` out, `ReadResponse` (SAMPLES) or a stream of
//! `ChunkedReadResponse` frames (STREAMED_XOR_CHUNKS) back. The write path (remote write 1.0,
//! as the stateless ruler sends recorded series): `WriteRequest` with `TimeSeries` and
//! `MetricMetadata`. Field numbers and enum values are
//! Prometheus' wire contract; `tests` below pin them with hand-encoded bytes. Native histogram
//! samples are kept as undecoded bytes: the sidecar only needs to notice them and say that it
//! cannot serve them in the SAMPLES fallback.

use bytes::Bytes;

/// `prometheus.ReadRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadRequest {
    #[prost(message, repeated, tag = "1")]
    pub queries: Vec<Query>,
    /// `ResponseType` values, most preferred first.
    #[prost(enumeration = "ResponseType", repeated, tag = "2")]
    pub accepted_response_types: Vec<i32>,
}

/// `prometheus.ReadRequest.ResponseType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ResponseType {
    /// One snappy-compressed `ReadResponse` holding every sample.
    Samples = 0,
    /// A stream of CRC-checked `ChunkedReadResponse` frames with encoded chunks.
    StreamedXorChunks = 1,
}

/// `prometheus.Query`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Query {
    #[prost(int64, tag = "1")]
    pub start_timestamp_ms: i64,
    #[prost(int64, tag = "2")]
    pub end_timestamp_ms: i64,
    #[prost(message, repeated, tag = "3")]
    pub matchers: Vec<LabelMatcher>,
    #[prost(message, optional, tag = "4")]
    pub hints: Option<ReadHints>,
}

/// `prometheus.ReadHints`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadHints {
    #[prost(int64, tag = "1")]
    pub step_ms: i64,
    #[prost(string, tag = "2")]
    pub func: String,
    #[prost(int64, tag = "3")]
    pub start_ms: i64,
    #[prost(int64, tag = "4")]
    pub end_ms: i64,
    #[prost(string, repeated, tag = "5")]
    pub grouping: Vec<String>,
    #[prost(bool, tag = "6")]
    pub by: bool,
    #[prost(int64, tag = "7")]
    pub range_ms: i64,
}

/// `prometheus.LabelMatcher`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelMatcher {
    #[prost(enumeration = "MatcherType", tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub value: String,
}

/// `prometheus.LabelMatcher.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MatcherType {
    Eq = 0,
    Neq = 1,
    Re = 2,
    Nre = 3,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// `prometheus.TimeSeries`. Exemplars (3) are skipped; histograms (4) are kept as raw
/// message bytes, only to be counted.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    #[prost(bytes = "vec", repeated, tag = "4")]
    pub histograms: Vec<Vec<u8>>,
}

/// `prometheus.QueryResult`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct QueryResult {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.ReadResponse`: the SAMPLES answer, one result per query.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadResponse {
    #[prost(message, repeated, tag = "1")]
    pub results: Vec<QueryResult>,
}

/// `prometheus.ChunkedReadResponse`: one frame of a STREAMED_XOR_CHUNKS answer, holding
/// (part of) one series.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ChunkedReadResponse {
    #[prost(message, repeated, tag = "1")]
    pub chunked_series: Vec<ChunkedSeries>,
    #[prost(int64, tag = "2")]
    pub query_index: i64,
}

/// `prometheus.ChunkedSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ChunkedSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub chunks: Vec<Chunk>,
}

/// `prometheus.Chunk`: `[min_time_ms, max_time_ms]` is closed; `type` uses TSDB chunk
/// encoding numbers (XOR = 1), unlike the Store API (XOR = 0).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Chunk {
    #[prost(int64, tag = "1")]
    pub min_time_ms: i64,
    #[prost(int64, tag = "2")]
    pub max_time_ms: i64,
    #[prost(int32, tag = "3")]
    pub r#type: i32,
    #[prost(bytes = "bytes", tag = "4")]
    pub data: Bytes,
}

/// `prometheus.WriteRequest`: the body of a remote write (protocol 1.0) `POST`, snappy
/// block-compressed on the wire. Field 2 is reserved upstream.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// `prometheus.MetricMetadata`: one metric family's type, help and unit. Field 3 is unused
/// upstream.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricMetadata {
    #[prost(enumeration = "MetricType", tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    #[prost(string, tag = "4")]
    pub help: String,
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// `prometheus.MetricMetadata.MetricType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MetricType {
    Unknown = 0,
    Counter = 1,
    Gauge = 2,
    Histogram = 3,
    GaugeHistogram = 4,
    Summary = 5,
    Info = 6,
    StateSet = 7,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// A request encoded field by field from the wire facts: ReadRequest{queries=1,
    /// accepted_response_types=2 packed}, Query{start=1, end=2, matchers=3}, LabelMatcher{type=1,
    /// name=2, value=3}.
    #[test]
    fn read_request_bytes_follow_prometheus_field_numbers() {
        let req = ReadRequest {
            queries: vec![Query {
                start_timestamp_ms: 1,
                end_timestamp_ms: 2,
                matchers: vec![LabelMatcher {
                    r#type: MatcherType::Re as i32,
                    name: "a".into(),
                    value: "b".into(),
                }],
                hints: None,
            }],
            accepted_response_types: vec![
                ResponseType::StreamedXorChunks as i32,
                ResponseType::Samples as i32,
            ],
        };
        let matcher = [0x08, 0x02, 0x12, 0x01, b'a', 0x1a, 0x01, b'b'];
        let mut query = vec![0x08, 0x01, 0x10, 0x02, 0x1a, matcher.len() as u8];
        query.extend_from_slice(&matcher);
        let mut want = vec![0x0a, query.len() as u8];
        want.extend_from_slice(&query);
        want.extend_from_slice(&[0x12, 0x02, 0x01, 0x00]);
        assert_eq!(req.encode_to_vec(), want);
    }

    #[test]
    fn chunked_frame_message_decodes_from_hand_made_bytes() {
        // ChunkedReadResponse{chunked_series=[{labels=[{a,b}], chunks=[{1,2,type=1,data="xy"}]}],
        // query_index=3}
        let label = [0x0a, 0x01, b'a', 0x12, 0x01, b'b'];
        let chunk = [0x08, 0x01, 0x10, 0x02, 0x18, 0x01, 0x22, 0x02, b'x', b'y'];
        let mut series = vec![0x0a, label.len() as u8];
        series.extend_from_slice(&label);
        series.extend_from_slice(&[0x12, chunk.len() as u8]);
        series.extend_from_slice(&chunk);
        let mut msg = vec![0x0a, series.len() as u8];
        msg.extend_from_slice(&series);
        msg.extend_from_slice(&[0x10, 0x03]);
        let got = ChunkedReadResponse::decode(msg.as_slice()).unwrap();
        assert_eq!(got.query_index, 3);
        let s = &got.chunked_series[0];
        assert_eq!(
            (s.labels[0].name.as_str(), s.labels[0].value.as_str()),
            ("a", "b")
        );
        assert_eq!(s.chunks[0].r#type, 1);
        assert_eq!((s.chunks[0].min_time_ms, s.chunks[0].max_time_ms), (1, 2));
        assert_eq!(&s.chunks[0].data[..], b"xy");
    }

    #[test]
    fn time_series_keeps_histograms_as_bytes_and_samples_as_doubles() {
        // TimeSeries{samples=[{value=1.5, timestamp=7}], histograms=[<3 bytes>]}
        let mut sample = vec![0x09];
        sample.extend_from_slice(&1.5f64.to_le_bytes());
        sample.extend_from_slice(&[0x10, 0x07]);
        let mut msg = vec![0x12, sample.len() as u8];
        msg.extend_from_slice(&sample);
        msg.extend_from_slice(&[0x22, 0x03, 0x01, 0x02, 0x03]);
        let got = TimeSeries::decode(msg.as_slice()).unwrap();
        assert_eq!(
            got.samples,
            vec![Sample {
                value: 1.5,
                timestamp: 7
            }]
        );
        assert_eq!(got.histograms, vec![vec![1, 2, 3]]);
    }

    /// WriteRequest{timeseries=1, metadata=3}, TimeSeries{labels=1, samples=2},
    /// Sample{value=1 (fixed64), timestamp=2}, MetricMetadata{type=1, name=2, help=4, unit=5}:
    /// the bytes Prometheus' receiver expects, built by hand.
    #[test]
    fn write_request_bytes_follow_prometheus_field_numbers() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "a".into(),
                    value: "b".into(),
                }],
                samples: vec![Sample {
                    value: stale,
                    timestamp: 5,
                }],
                histograms: Vec::new(),
            }],
            metadata: vec![MetricMetadata {
                r#type: MetricType::Gauge as i32,
                metric_family_name: "m".into(),
                help: "h".into(),
                unit: "u".into(),
            }],
        };
        let label = [0x0a, 0x01, b'a', 0x12, 0x01, b'b'];
        let mut sample = vec![0x09];
        sample.extend_from_slice(&0x7ff0_0000_0000_0002u64.to_le_bytes());
        sample.extend_from_slice(&[0x10, 0x05]);
        let mut series = vec![0x0a, label.len() as u8];
        series.extend_from_slice(&label);
        series.extend_from_slice(&[0x12, sample.len() as u8]);
        series.extend_from_slice(&sample);
        let meta = [
            0x08, 0x02, 0x12, 0x01, b'm', 0x22, 0x01, b'h', 0x2a, 0x01, b'u',
        ];
        let mut want = vec![0x0a, series.len() as u8];
        want.extend_from_slice(&series);
        want.extend_from_slice(&[0x1a, meta.len() as u8]);
        want.extend_from_slice(&meta);
        let got = req.encode_to_vec();
        assert_eq!(got, want);
        // And back: the stale marker keeps its exact bit pattern.
        let back = WriteRequest::decode(got.as_slice()).unwrap();
        assert_eq!(
            back.timeseries[0].samples[0].value.to_bits(),
            0x7ff0_0000_0000_0002
        );
        assert_eq!(back.metadata[0].r#type, MetricType::Gauge as i32);
    }
}
