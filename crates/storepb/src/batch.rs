//! `thanos.SeriesBatch`, written by hand so that a server can send series it encoded itself.
//!
//! Why: the store gateway sends tens of thousands of series per large Series call. Building
//! prost structs for them costs two heap strings per label, a struct per chunk, and prost's
//! nested length computation (each nested message's length is recomputed at every level it
//! is nested in), then dropping it all again; that was about a fifth of the gateway's CPU
//! for such a call. [`EncodedSeries`] writes the same bytes directly from borrowed labels
//! and chunks: the chunk data are moved, not copied, until the gRPC encoder writes the frame,
//! as with prost.
//!
//! On the wire nothing changes: a batch is field 1 (`repeated Series series`) whatever built
//! it, and decoding always yields [`SeriesBatch::series`]. `tests/wire.rs` checks that both
//! ways of building a batch give the same bytes.

use bytes::{BufMut, Bytes};
use prost::encoding::{DecodeContext, WireType, encode_key, encode_varint, encoded_len_varint};

use crate::frame::WireChunk;
use crate::thanos::{AggrChunk, Chunk, Series};

/// `thanos.SeriesBatch`: a frame of several series.
#[derive(Clone, PartialEq, Default, Debug)]
pub struct SeriesBatch {
    /// Series as structs (what a client decodes; what a server may send).
    pub series: Vec<Series>,
    /// Series encoded by the server, sent after `series`; always empty when decoded.
    pub encoded: EncodedSeries,
}

impl SeriesBatch {
    /// A batch of series as structs.
    pub fn of(series: Vec<Series>) -> Self {
        SeriesBatch {
            series,
            encoded: EncodedSeries::default(),
        }
    }
}

impl prost::Message for SeriesBatch {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        for s in &self.series {
            prost::encoding::message::encode(1, s, buf);
        }
        self.encoded.write(buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl bytes::Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        if tag == 1 {
            prost::encoding::message::merge_repeated(wire_type, &mut self.series, buf, ctx).map_err(
                |mut e| {
                    e.push("SeriesBatch", "series");
                    e
                },
            )
        } else {
            prost::encoding::skip_field(wire_type, tag, buf, ctx)
        }
    }

    fn encoded_len(&self) -> usize {
        prost::encoding::message::encoded_len_repeated(1, &self.series) + self.encoded.len()
    }

    fn clear(&mut self) {
        self.series.clear();
        self.encoded = EncodedSeries::default();
    }
}

impl prost::Name for SeriesBatch {
    const NAME: &'static str = "SeriesBatch";
    const PACKAGE: &'static str = "thanos";

    fn full_name() -> String {
        "thanos.SeriesBatch".into()
    }

    fn type_url() -> String {
        "type.googleapis.com/thanos.SeriesBatch".into()
    }
}

/// Series encoded as entries of `SeriesBatch.series` (field 1), exactly as prost encodes the
/// same [`Series`] structs. Chunk data are kept as shared slices and spliced in when the
/// frame is written.
#[derive(Clone, PartialEq, Default, Debug)]
pub struct EncodedSeries {
    /// Everything but the chunk data.
    head: Vec<u8>,
    /// Chunk data and the offset in `head` where each goes, in order.
    splices: Vec<(usize, Bytes)>,
    /// Bytes of the spliced data.
    spliced: usize,
    /// Series encoded.
    count: usize,
}

/// Length of a length-delimited field with `tag` < 16 holding `len` bytes.
fn delimited_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// Length of a varint field with `tag` < 16 (absent when zero, as proto3 encodes it).
fn varint_field_len(v: u64) -> usize {
    if v == 0 { 0 } else { 1 + encoded_len_varint(v) }
}

/// Length of a string or bytes field (absent when empty).
fn bytes_field_len(len: usize) -> usize {
    if len == 0 { 0 } else { delimited_len(len) }
}

fn label_len(name: &[u8], value: &[u8]) -> usize {
    bytes_field_len(name.len()) + bytes_field_len(value.len())
}

fn chunk_len(c: &Chunk) -> usize {
    chunk_fields_len(c.r#type, c.data.len(), c.hash)
}

/// Length of a `Chunk` message's fields.
fn chunk_fields_len(r#type: i32, data_len: usize, hash: u64) -> usize {
    varint_field_len(r#type as i64 as u64) + bytes_field_len(data_len) + varint_field_len(hash)
}

fn aggr_chunk_len(c: &AggrChunk) -> usize {
    let parts = [&c.raw, &c.count, &c.sum, &c.min, &c.max, &c.counter];
    aggr_fields_len(c.min_time, c.max_time, parts.into_iter().flatten())
}

/// Length of an `AggrChunk` message's fields: its times and the parts present.
fn aggr_fields_len<'a>(
    min_time: i64,
    max_time: i64,
    parts: impl Iterator<Item = &'a Chunk>,
) -> usize {
    varint_field_len(min_time as u64)
        + varint_field_len(max_time as u64)
        + parts.map(|p| delimited_len(chunk_len(p))).sum::<usize>()
}

/// A [`WireChunk`]'s parts in `AggrChunk` field order (3 to 8), absent ones `None`.
fn wire_parts(c: &mut WireChunk) -> [Option<&mut Chunk>; 6] {
    let raw = c.raw.as_mut();
    match c.aggr.as_deref_mut() {
        None => [raw, None, None, None, None, None],
        Some(a) => [
            raw,
            a.count.as_mut(),
            a.sum.as_mut(),
            a.min.as_mut(),
            a.max.as_mut(),
            a.counter.as_mut(),
        ],
    }
}

fn wire_chunk_len(c: &WireChunk) -> usize {
    let p = c.parts();
    let parts = [&c.raw, &p.count, &p.sum, &p.min, &p.max, &p.counter];
    aggr_fields_len(c.min_time, c.max_time, parts.into_iter().flatten())
}

/// A raw chunk to send as an `AggrChunk` with only `raw` set (see
/// [`EncodedSeries::push_raw`]).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RawWireChunk {
    pub min_time: i64,
    pub max_time: i64,
    /// `thanos.Chunk.type` (a [`crate::thanos::chunk::Encoding`]).
    pub r#type: i32,
    pub data: Bytes,
}

impl RawWireChunk {
    /// Length of the `Chunk` message (no hash: it is zero, so absent).
    fn chunk_len(&self) -> usize {
        chunk_fields_len(self.r#type, self.data.len(), 0)
    }

    /// Length of the `AggrChunk` message.
    fn aggr_len(&self) -> usize {
        self.aggr_len_around(self.chunk_len())
    }

    /// Length of the `AggrChunk` message around a `Chunk` message of `chunk_len` bytes.
    fn aggr_len_around(&self, chunk_len: usize) -> usize {
        varint_field_len(self.min_time as u64)
            + varint_field_len(self.max_time as u64)
            + delimited_len(chunk_len)
    }

    /// The chunk's bytes in a `Series` up to its data: the `chunks` key and length, the
    /// `AggrChunk` fields, the `raw` key and length, and the `Chunk` fields before `data`
    /// (with `data`'s key and length). Written into a stack buffer and appended at once,
    /// where writing it field by field through prost's key and varint writers made a Series
    /// call over 5,000 series in 7 blocks (115,000 chunks) take 320 M instructions, against
    /// 304 M this way (`strata-store`'s `examples/series_profile.rs`).
    fn head(&self) -> RawChunkHead {
        let mut h = RawChunkHead {
            bytes: [0; RAW_CHUNK_HEAD_MAX],
            len: 0,
        };
        let chunk_len = self.chunk_len();
        h.varint(0x12); // Series.chunks = 2
        h.varint(self.aggr_len_around(chunk_len) as u64);
        if self.min_time != 0 {
            h.varint(0x08); // AggrChunk.min_time = 1
            h.varint(self.min_time as u64);
        }
        if self.max_time != 0 {
            h.varint(0x10); // AggrChunk.max_time = 2
            h.varint(self.max_time as u64);
        }
        h.varint(0x1a); // AggrChunk.raw = 3
        h.varint(chunk_len as u64);
        if self.r#type != 0 {
            h.varint(0x08); // Chunk.type = 1
            h.varint(self.r#type as i64 as u64);
        }
        if !self.data.is_empty() {
            h.varint(0x12); // Chunk.data = 2
            h.varint(self.data.len() as u64);
        }
        h
    }
}

/// Longest [`RawWireChunk::head`]: six keys, two 10-byte times, a 10-byte type and three
/// lengths of at most 10 bytes each.
const RAW_CHUNK_HEAD_MAX: usize = 6 + 10 * 6;

struct RawChunkHead {
    bytes: [u8; RAW_CHUNK_HEAD_MAX],
    len: usize,
}

impl RawChunkHead {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.bytes[self.len] = v as u8 | 0x80;
            self.len += 1;
            v >>= 7;
        }
        self.bytes[self.len] = v as u8;
        self.len += 1;
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl EncodedSeries {
    /// Appends one series: `labels` in order (name, value; UTF-8, as the wire's strings must
    /// be: they are copied as they are), and its chunks, whose data are
    /// taken (`chunks` is left empty, its allocation kept for the next series).
    pub fn push<N: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        labels: impl Iterator<Item = (N, V)> + Clone,
        chunks: &mut Vec<AggrChunk>,
    ) {
        let chunks_len: usize = chunks
            .iter()
            .map(|c| delimited_len(aggr_chunk_len(c)))
            .sum();
        self.put_series_head(labels, chunks_len);
        // The chunks are read in place and only their data taken: moving the large
        // `AggrChunk` structs out one by one was a measurable share of the gateway's copying.
        for c in chunks.iter_mut() {
            let len = aggr_chunk_len(c);
            let parts = [
                c.raw.as_mut(),
                c.count.as_mut(),
                c.sum.as_mut(),
                c.min.as_mut(),
                c.max.as_mut(),
                c.counter.as_mut(),
            ];
            self.put_aggr_chunk(len, c.min_time, c.max_time, parts);
        }
        chunks.clear();
        self.count += 1;
    }

    /// [`EncodedSeries::push`] for the chunks a querier received ([`WireChunk`]s): the same
    /// bytes as for the `AggrChunk`s they convert to, without converting (a querier serving
    /// the Store API to a querier above it hands on what its stores sent). `chunks` is left
    /// empty, its allocation kept.
    pub fn push_wire<N: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        labels: impl Iterator<Item = (N, V)> + Clone,
        chunks: &mut Vec<WireChunk>,
    ) {
        let chunks_len: usize = chunks
            .iter()
            .map(|c| delimited_len(wire_chunk_len(c)))
            .sum();
        self.put_series_head(labels, chunks_len);
        for c in chunks.iter_mut() {
            let (len, min_time, max_time) = (wire_chunk_len(c), c.min_time, c.max_time);
            self.put_aggr_chunk(len, min_time, max_time, wire_parts(c));
        }
        chunks.clear();
        self.count += 1;
    }

    /// One `Series.chunks` entry: an `AggrChunk` of `len` bytes with `parts` as fields 3 to
    /// 8, their data taken.
    fn put_aggr_chunk(
        &mut self,
        len: usize,
        min_time: i64,
        max_time: i64,
        parts: [Option<&mut Chunk>; 6],
    ) {
        encode_key(2, WireType::LengthDelimited, &mut self.head);
        encode_varint(len as u64, &mut self.head);
        put_varint_field(1, min_time as u64, &mut self.head);
        put_varint_field(2, max_time as u64, &mut self.head);
        for (tag, p) in (3u32..).zip(parts) {
            if let Some(p) = p {
                self.put_chunk(tag, p);
            }
        }
    }

    /// [`EncodedSeries::push`] for a series whose chunks are all raw (not downsampled): the
    /// same bytes as `AggrChunk`s with only `raw` set, without building those 350-byte structs
    /// (a chunk here is 56 bytes). `chunks` is left empty, its allocation kept.
    pub fn push_raw<N: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        labels: impl Iterator<Item = (N, V)> + Clone,
        chunks: &mut Vec<RawWireChunk>,
    ) {
        let chunks_len: usize = chunks.iter().map(|c| delimited_len(c.aggr_len())).sum();
        self.put_series_head(labels, chunks_len);
        for c in chunks.iter_mut() {
            self.head.extend_from_slice(c.head().as_slice());
            self.splice(&mut c.data);
        }
        chunks.clear();
        self.count += 1;
    }

    /// The start of a `Series` entry holding `labels` and chunks of `chunks_len` bytes
    /// (their fields included), and the labels.
    fn put_series_head<N: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        labels: impl Iterator<Item = (N, V)> + Clone,
        chunks_len: usize,
    ) {
        let labels_len: usize = labels
            .clone()
            .map(|(n, v)| delimited_len(label_len(n.as_ref(), v.as_ref())))
            .sum();
        let h = &mut self.head;
        encode_key(1, WireType::LengthDelimited, h);
        encode_varint((labels_len + chunks_len) as u64, h);
        for (n, v) in labels {
            let (n, v) = (n.as_ref(), v.as_ref());
            let len = label_len(n, v);
            if len < 0x80 && !n.is_empty() && !v.is_empty() {
                // Most labels: every length fits a one-byte varint, and the keys are
                // constants (`labels = 1`, then `name = 1` and `value = 2`, length-delimited).
                h.extend_from_slice(&[0x0a, len as u8, 0x0a, n.len() as u8]);
                h.extend_from_slice(n);
                h.extend_from_slice(&[0x12, v.len() as u8]);
                h.extend_from_slice(v);
                continue;
            }
            encode_key(1, WireType::LengthDelimited, h);
            encode_varint(len as u64, h);
            put_bytes_field(1, n, h);
            put_bytes_field(2, v, h);
        }
    }

    fn put_chunk(&mut self, tag: u32, c: &mut Chunk) {
        self.put_chunk_fields(tag, c.r#type, &mut c.data, c.hash);
    }

    /// A `Chunk` message as field `tag`; its data are taken and spliced in when written.
    fn put_chunk_fields(&mut self, tag: u32, r#type: i32, data: &mut Bytes, hash: u64) {
        let h = &mut self.head;
        encode_key(tag, WireType::LengthDelimited, h);
        encode_varint(chunk_fields_len(r#type, data.len(), hash) as u64, h);
        put_varint_field(1, r#type as i64 as u64, h);
        if !data.is_empty() {
            encode_key(2, WireType::LengthDelimited, h);
            encode_varint(data.len() as u64, h);
            self.splice(data);
        }
        put_varint_field(3, hash, &mut self.head);
    }

    /// Takes `data` to be written after the bytes encoded so far (nothing when empty).
    fn splice(&mut self, data: &mut Bytes) {
        if !data.is_empty() {
            self.spliced += data.len();
            self.splices.push((self.head.len(), std::mem::take(data)));
        }
    }

    /// Takes the series encoded so far, leaving an empty value with room for as much again:
    /// the frames of one call are alike, so the next frame is written without its buffers
    /// growing (and being copied) step by step.
    pub fn take(&mut self) -> EncodedSeries {
        let next = EncodedSeries {
            head: Vec::with_capacity(self.head.len()),
            splices: Vec::with_capacity(self.splices.len()),
            spliced: 0,
            count: 0,
        };
        std::mem::replace(self, next)
    }

    /// Series encoded so far.
    pub fn count(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Encoded length in bytes.
    pub fn len(&self) -> usize {
        self.head.len() + self.spliced
    }

    fn write(&self, buf: &mut impl BufMut) {
        let mut at = 0;
        for (offset, data) in &self.splices {
            buf.put_slice(&self.head[at..*offset]);
            buf.put_slice(data);
            at = *offset;
        }
        buf.put_slice(&self.head[at..]);
    }
}

fn put_varint_field(tag: u32, v: u64, buf: &mut Vec<u8>) {
    if v != 0 {
        encode_key(tag, WireType::Varint, buf);
        encode_varint(v, buf);
    }
}

fn put_bytes_field(tag: u32, b: &[u8], buf: &mut Vec<u8>) {
    if !b.is_empty() {
        encode_key(tag, WireType::LengthDelimited, buf);
        encode_varint(b.len() as u64, buf);
        buf.extend_from_slice(b);
    }
}
