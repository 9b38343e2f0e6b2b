//! The decoder itself, free of tonic and of the generated code: it names its chunk types
//! through the parent module, so that the fuzz targets (`fuzz/`) compile this file by path
//! next to prost-derived twins of `thanos.AggrChunk` and `thanos.Chunk` and check it against
//! prost's own decoding of the same bytes.

use bytes::Bytes;
use prost::DecodeError;
use prost::Message;
use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};
use strata_model::{Label, Labels};

use super::{AggrChunk, Chunk};

/// One series as a store sent it: labels (external labels included) and chunks.
pub type WireSeries = (Labels, Vec<WireChunk>);

/// A `thanos.AggrChunk` as the querier holds it: the same content in 72 bytes instead of the
/// generated struct's 304.
///
/// Why: the generated struct has room for six parts, but raw data (what almost every query
/// reads) carries one. A large selection holds a chunk struct per 120 samples, so the empty
/// room was as many bytes as the chunk data themselves, and writing, moving and dropping it
/// was a measurable part of the querier's decoding. The five downsampled parts live behind
/// one box, present only when a store sent one of them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WireChunk {
    pub min_time: i64,
    pub max_time: i64,
    pub raw: Option<Chunk>,
    pub aggr: Option<Box<AggrParts>>,
}

/// The downsampled parts of a [`WireChunk`] (`thanos.AggrChunk` fields 4 to 8).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AggrParts {
    pub count: Option<Chunk>,
    pub sum: Option<Chunk>,
    pub min: Option<Chunk>,
    pub max: Option<Chunk>,
    pub counter: Option<Chunk>,
}

impl WireChunk {
    /// The downsampled parts, all absent for a raw chunk.
    pub fn parts(&self) -> &AggrParts {
        static NONE: AggrParts = AggrParts {
            count: None,
            sum: None,
            min: None,
            max: None,
            counter: None,
        };
        self.aggr.as_deref().unwrap_or(&NONE)
    }
}

impl From<AggrChunk> for WireChunk {
    fn from(c: AggrChunk) -> Self {
        let aggr = (c.count.is_some()
            || c.sum.is_some()
            || c.min.is_some()
            || c.max.is_some()
            || c.counter.is_some())
        .then(|| {
            Box::new(AggrParts {
                count: c.count,
                sum: c.sum,
                min: c.min,
                max: c.max,
                counter: c.counter,
            })
        });
        WireChunk {
            min_time: c.min_time,
            max_time: c.max_time,
            raw: c.raw,
            aggr,
        }
    }
}

impl From<WireChunk> for AggrChunk {
    fn from(c: WireChunk) -> Self {
        let p = c.aggr.map(|b| *b).unwrap_or_default();
        AggrChunk {
            min_time: c.min_time,
            max_time: c.max_time,
            raw: c.raw,
            count: p.count,
            sum: p.sum,
            min: p.min,
            max: p.max,
            counter: p.counter,
        }
    }
}

/// A decoded `thanos.SeriesResponse`.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum SeriesFrame {
    /// Series (one for a `series` frame, several for a `batch`), in the order sent.
    Series(Vec<WireSeries>),
    /// A warning that does not fail the call.
    Warning(String),
    /// Hints (their content is not used by the querier).
    Hints,
    /// A frame with no result set.
    #[default]
    Empty,
}

/// Why a frame did not decode.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// A varint, key or skipped field that prost's primitives reject.
    #[error("malformed Series frame: {0}")]
    Proto(#[from] DecodeError),
    /// A known field with the wrong wire type.
    #[error("malformed Series frame: field {field} of {message} has wire type {got:?}")]
    WireType {
        message: &'static str,
        field: u32,
        got: WireType,
    },
    /// A length-delimited field longer than what is left of its message.
    #[error("malformed Series frame: a field of {message} runs past the end of its message")]
    Truncated { message: &'static str },
    /// A label name, label value or warning that is not UTF-8.
    #[error("malformed Series frame: a string of {message} is not UTF-8")]
    Utf8 { message: &'static str },
}

/// A series while its frame is decoded: protobuf lets a message field repeat and merge, so
/// labels become a label set only at the end.
#[derive(Default)]
struct RawSeries {
    labels: Vec<Label>,
    chunks: Vec<WireChunk>,
}

impl RawSeries {
    fn finish(self) -> WireSeries {
        (Labels::from_received(self.labels), self.chunks)
    }
}

enum Partial {
    Empty,
    Single(RawSeries),
    Batch(Vec<RawSeries>),
    Warning(String),
    Hints,
}

/// Decodes one `thanos.SeriesResponse` (see the module docs). Nested messages are read in
/// place; only chunk data become [`Bytes`] (slices of `frame`, one reference count each).
pub fn decode_series_response(frame: Bytes) -> Result<SeriesFrame, FrameError> {
    const MSG: &str = "SeriesResponse";
    let mut buf: &[u8] = &frame;
    let mut out = Partial::Empty;
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        match tag {
            1 => {
                let body = delimited(MSG, tag, wire_type, &mut buf)?;
                if !matches!(out, Partial::Single(_)) {
                    out = Partial::Single(RawSeries::default());
                }
                if let Partial::Single(s) = &mut out {
                    merge_series(s, body, &frame)?;
                }
            }
            2 => {
                let body = delimited(MSG, tag, wire_type, &mut buf)?;
                out = Partial::Warning(text(MSG, body)?.to_owned());
            }
            3 => {
                // Checked like any message (a malformed `Any` fails the frame), then dropped.
                let body = delimited(MSG, tag, wire_type, &mut buf)?;
                prost_types::Any::decode(body)?;
                out = Partial::Hints;
            }
            4 => {
                let mut body = delimited(MSG, tag, wire_type, &mut buf)?;
                if !matches!(out, Partial::Batch(_)) {
                    out = Partial::Batch(Vec::new());
                }
                if let Partial::Batch(list) = &mut out {
                    while !body.is_empty() {
                        let (tag, wire_type) = decode_key(&mut body)?;
                        if tag == 1 {
                            let series = delimited("SeriesBatch", tag, wire_type, &mut body)?;
                            let mut s = RawSeries::default();
                            merge_series(&mut s, series, &frame)?;
                            list.push(s);
                        } else {
                            skip_field(wire_type, tag, &mut body, DecodeContext::default())?;
                        }
                    }
                }
            }
            _ => skip_field(wire_type, tag, &mut buf, DecodeContext::default())?,
        }
    }
    Ok(match out {
        Partial::Empty => SeriesFrame::Empty,
        Partial::Single(s) => SeriesFrame::Series(vec![s.finish()]),
        Partial::Batch(list) => {
            SeriesFrame::Series(list.into_iter().map(RawSeries::finish).collect())
        }
        Partial::Warning(w) => SeriesFrame::Warning(w),
        Partial::Hints => SeriesFrame::Hints,
    })
}

/// The body of length-delimited field `field` of `message`, taken from the front of `buf`.
fn delimited<'a>(
    message: &'static str,
    field: u32,
    wire_type: WireType,
    buf: &mut &'a [u8],
) -> Result<&'a [u8], FrameError> {
    expect_wire_type(message, field, wire_type, WireType::LengthDelimited)?;
    let len = decode_varint(buf)?;
    if len > buf.len() as u64 {
        return Err(FrameError::Truncated { message });
    }
    let (body, rest) = buf.split_at(len as usize);
    *buf = rest;
    Ok(body)
}

/// A varint field of `message` (proto3 `int64`, `uint64`, `int32` and enums alike).
fn varint(
    message: &'static str,
    field: u32,
    wire_type: WireType,
    buf: &mut &[u8],
) -> Result<u64, FrameError> {
    expect_wire_type(message, field, wire_type, WireType::Varint)?;
    Ok(decode_varint(buf)?)
}

fn expect_wire_type(
    message: &'static str,
    field: u32,
    got: WireType,
    want: WireType,
) -> Result<(), FrameError> {
    if got == want {
        Ok(())
    } else {
        Err(FrameError::WireType {
            message,
            field,
            got,
        })
    }
}

/// A string field of `message`, which must be UTF-8.
fn text<'a>(message: &'static str, b: &'a [u8]) -> Result<&'a str, FrameError> {
    std::str::from_utf8(b).map_err(|_| FrameError::Utf8 { message })
}

/// How many times field 1 and field 2 occur in a message body (for exact allocations), and
/// where the run of field-1 entries the body starts with ends.
fn count_fields(full: &[u8]) -> Result<(usize, usize, usize), FrameError> {
    let (mut ones, mut twos) = (0, 0);
    let mut leading_ones_end = None;
    let mut body = full;
    while !body.is_empty() {
        let at = full.len() - body.len();
        let (tag, wire_type) = decode_key(&mut body)?;
        match tag {
            1 => ones += 1,
            2 => twos += 1,
            _ => {}
        }
        if tag != 1 && leading_ones_end.is_none() {
            leading_ones_end = Some(at);
        }
        skip_field(wire_type, tag, &mut body, DecodeContext::default())?;
    }
    Ok((ones, twos, leading_ones_end.unwrap_or(full.len())))
}

/// Merges a `thanos.Series` body into `s`.
fn merge_series(s: &mut RawSeries, full: &[u8], frame: &Bytes) -> Result<(), FrameError> {
    const MSG: &str = "Series";
    // One pass to size the vectors: label sets are kept by the engine, so no slack.
    let (labels, chunks, labels_end) = count_fields(full)?;
    s.labels.reserve_exact(labels);
    s.chunks.reserve_exact(chunks);
    // The labels (which come first, as every encoder writes them) checked as UTF-8 at once:
    // keys and short lengths are ASCII, so the whole run usually is valid text, and each
    // string in it is then a slice (a check per string was 7 % of the decoding).
    let text = Text {
        checked: std::str::from_utf8(&full[..labels_end]).ok(),
        base: full.as_ptr() as usize,
    };
    let mut body = full;
    while !body.is_empty() {
        let (tag, wire_type) = decode_key(&mut body)?;
        match tag {
            1 => {
                let label = delimited(MSG, tag, wire_type, &mut body)?;
                s.labels.push(decode_label(label, &text)?);
            }
            2 => {
                let chunk = delimited(MSG, tag, wire_type, &mut body)?;
                s.chunks.push(decode_aggr_chunk(chunk, frame)?);
            }
            _ => skip_field(wire_type, tag, &mut body, DecodeContext::default())?,
        }
    }
    Ok(())
}

/// A series body's leading labels, when they are valid UTF-8 as a whole.
struct Text<'a> {
    checked: Option<&'a str>,
    /// Address of the body's first byte.
    base: usize,
}

impl<'a> Text<'a> {
    /// `b` (a slice of the series body) as a string: a slice of the checked text when it lies
    /// in it on character boundaries (any such slice of valid UTF-8 is valid), else checked
    /// on its own.
    fn str(&self, message: &'static str, b: &'a [u8]) -> Result<&'a str, FrameError> {
        let at = (b.as_ptr() as usize).wrapping_sub(self.base);
        match self
            .checked
            .and_then(|t| t.get(at..at.checked_add(b.len())?))
        {
            Some(s) => Ok(s),
            None => text(message, b),
        }
    }
}

/// A `thanos.Label` (`name = 1`, `value = 2`; a repeated field keeps its last value, and
/// every occurrence must be UTF-8, as prost checks them).
fn decode_label<'a>(mut body: &'a [u8], checked: &Text<'a>) -> Result<Label, FrameError> {
    const MSG: &str = "Label";
    let (mut name, mut value) = ("", "");
    while !body.is_empty() {
        let (tag, wire_type) = decode_key(&mut body)?;
        match tag {
            1 => name = checked.str(MSG, delimited(MSG, tag, wire_type, &mut body)?)?,
            2 => value = checked.str(MSG, delimited(MSG, tag, wire_type, &mut body)?)?,
            _ => skip_field(wire_type, tag, &mut body, DecodeContext::default())?,
        }
    }
    Ok(Label {
        name: name.to_owned(),
        value: value.to_owned(),
    })
}

/// A `thanos.AggrChunk`; every part's data is a slice of `frame`.
fn decode_aggr_chunk(mut body: &[u8], frame: &Bytes) -> Result<WireChunk, FrameError> {
    const MSG: &str = "AggrChunk";
    let mut c = WireChunk::default();
    while !body.is_empty() {
        let (tag, wire_type) = decode_key(&mut body)?;
        let part = match tag {
            1 => {
                c.min_time = varint(MSG, tag, wire_type, &mut body)? as i64;
                continue;
            }
            2 => {
                c.max_time = varint(MSG, tag, wire_type, &mut body)? as i64;
                continue;
            }
            3 => &mut c.raw,
            4 => &mut c.aggr.get_or_insert_default().count,
            5 => &mut c.aggr.get_or_insert_default().sum,
            6 => &mut c.aggr.get_or_insert_default().min,
            7 => &mut c.aggr.get_or_insert_default().max,
            8 => &mut c.aggr.get_or_insert_default().counter,
            _ => {
                skip_field(wire_type, tag, &mut body, DecodeContext::default())?;
                continue;
            }
        };
        let chunk = delimited(MSG, tag, wire_type, &mut body)?;
        // A part that repeats merges into the first, as for any message field.
        merge_chunk(part.get_or_insert_with(Chunk::default), chunk, frame)?;
    }
    Ok(c)
}

/// Merges a `thanos.Chunk` body into `c`.
fn merge_chunk(c: &mut Chunk, mut body: &[u8], frame: &Bytes) -> Result<(), FrameError> {
    const MSG: &str = "Chunk";
    while !body.is_empty() {
        let (tag, wire_type) = decode_key(&mut body)?;
        match tag {
            1 => c.r#type = varint(MSG, tag, wire_type, &mut body)? as i32,
            2 => c.data = frame.slice_ref(delimited(MSG, tag, wire_type, &mut body)?),
            3 => c.hash = varint(MSG, tag, wire_type, &mut body)?,
            _ => skip_field(wire_type, tag, &mut body, DecodeContext::default())?,
        }
    }
    Ok(())
}
