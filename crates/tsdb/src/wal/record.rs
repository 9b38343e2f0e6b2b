//! The records a Prometheus head writes into its WAL, byte-compatible with Prometheus 2.42's
//! `tsdb/record` package.
//!
//! A record's first byte is its type. Only what a ruler needs is encoded: series (type 1),
//! float samples (type 2) and tombstones (type 3, decoded so that replay can skip past them
//! knowingly). Exemplars, mmap markers, metadata and histograms (types 4–8) and anything newer
//! decode to [`Record::Unknown`]: Prometheus itself ignores record types it does not know, so a
//! WAL written by a newer Prometheus still replays, minus what we cannot represent.
//!
//! All integer arithmetic on deltas wraps, as Go's does, so that every 64-bit reference and
//! timestamp round-trips and no input can make decoding overflow.

use std::fmt;

use strata_model::{Label, Labels};

use crate::encoding::{Decbuf, DecodeError, put_uvarint, put_uvarint_str, put_varint};

/// Record type of a series record: series references and their labels.
pub const SERIES: u8 = 1;
/// Record type of a float samples record.
pub const SAMPLES: u8 = 2;
/// Record type of a tombstones record (deleted time ranges).
pub const TOMBSTONES: u8 = 3;
/// Record type of an exemplars record (decoded as unknown here).
pub const EXEMPLARS: u8 = 4;
/// Record type of an mmap-markers record (out-of-order WBL only; decoded as unknown here).
pub const MMAP_MARKERS: u8 = 5;
/// Record type of a metadata record (decoded as unknown here).
pub const METADATA: u8 = 6;
/// Record type of a native histogram samples record (decoded as unknown here).
pub const HISTOGRAM_SAMPLES: u8 = 7;
/// Record type of a float histogram samples record (decoded as unknown here).
pub const FLOAT_HISTOGRAM_SAMPLES: u8 = 8;

/// A series' head reference and its labels, as the first record mentioning the series holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefSeries {
    pub series_ref: u64,
    pub labels: Labels,
}

/// One float sample of the series `series_ref`.
///
/// Equality compares the value's bits, so that NaNs (the staleness marker among them) compare
/// equal to themselves and a round-trip test checks the exact payload.
#[derive(Debug, Clone, Copy)]
pub struct RefSample {
    pub series_ref: u64,
    pub t: i64,
    pub v: f64,
}

impl PartialEq for RefSample {
    fn eq(&self, o: &Self) -> bool {
        self.series_ref == o.series_ref && self.t == o.t && self.v.to_bits() == o.v.to_bits()
    }
}

impl Eq for RefSample {}

/// One deleted interval `[min_time, max_time]` of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stone {
    pub series_ref: u64,
    pub min_time: i64,
    pub max_time: i64,
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Series(Vec<RefSeries>),
    Samples(Vec<RefSample>),
    Tombstones(Vec<Stone>),
    /// A record type this module does not decode (`None` for an empty record). Replay skips
    /// it and counts it.
    Unknown(Option<u8>),
}

/// Why a record's bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// The record type being decoded.
    pub record_type: u8,
    /// Offset inside the record where decoding failed.
    pub offset: usize,
    pub source: DecodeError,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} record: byte {} of the record: {}",
            type_name(self.record_type),
            self.offset,
            self.source
        )
    }
}

impl std::error::Error for RecordError {}

/// Prometheus' name of a record type, for messages.
pub fn type_name(t: u8) -> &'static str {
    match t {
        SERIES => "series",
        SAMPLES => "samples",
        TOMBSTONES => "tombstones",
        EXEMPLARS => "exemplars",
        MMAP_MARKERS => "mmapmarkers",
        METADATA => "metadata",
        HISTOGRAM_SAMPLES => "histogram_samples",
        FLOAT_HISTOGRAM_SAMPLES => "float_histogram_samples",
        _ => "unknown",
    }
}

/// Appends a series record.
pub fn encode_series(series: &[RefSeries], out: &mut Vec<u8>) {
    out.push(SERIES);
    for s in series {
        out.extend_from_slice(&s.series_ref.to_be_bytes());
        put_uvarint(out, s.labels.len() as u64);
        for l in s.labels.iter() {
            put_uvarint_str(out, &l.name);
            put_uvarint_str(out, &l.value);
        }
    }
}

/// Appends a samples record: the first sample's reference and timestamp as the base, then
/// every sample (the first included) as signed deltas to it and the value's bits.
pub fn encode_samples(samples: &[RefSample], out: &mut Vec<u8>) {
    out.push(SAMPLES);
    let Some(first) = samples.first() else {
        return;
    };
    out.extend_from_slice(&first.series_ref.to_be_bytes());
    out.extend_from_slice(&first.t.to_be_bytes());
    for s in samples {
        put_varint(
            out,
            (s.series_ref as i64).wrapping_sub(first.series_ref as i64),
        );
        put_varint(out, s.t.wrapping_sub(first.t));
        out.extend_from_slice(&s.v.to_bits().to_be_bytes());
    }
}

/// Appends a tombstones record, one entry per interval.
pub fn encode_tombstones(stones: &[Stone], out: &mut Vec<u8>) {
    out.push(TOMBSTONES);
    for s in stones {
        out.extend_from_slice(&s.series_ref.to_be_bytes());
        put_varint(out, s.min_time);
        put_varint(out, s.max_time);
    }
}

/// Decodes one record. Unknown and empty records are not errors (see [`Record::Unknown`]).
pub fn decode(rec: &[u8]) -> Result<Record, RecordError> {
    let Some((&t, body)) = rec.split_first() else {
        return Ok(Record::Unknown(None));
    };
    let mut d = Decbuf::new(body);
    let fail = |d: &Decbuf<'_>, e: DecodeError| RecordError {
        record_type: t,
        offset: rec.len() - d.remaining(),
        source: e,
    };
    match t {
        SERIES => {
            let mut out = Vec::new();
            while !d.is_empty() {
                let r = (|| {
                    let series_ref = d.be64()?;
                    let n = d.uvarint_count()?;
                    let mut labels = Vec::with_capacity(n.min(64));
                    for _ in 0..n {
                        let name = d.uvarint_str()?;
                        let value = d.uvarint_str()?;
                        labels.push(Label::new(name, value));
                    }
                    Ok(RefSeries {
                        series_ref,
                        labels: Labels::from_received(labels),
                    })
                })();
                out.push(r.map_err(|e| fail(&d, e))?);
            }
            Ok(Record::Series(out))
        }
        SAMPLES => {
            if d.is_empty() {
                return Ok(Record::Samples(Vec::new()));
            }
            let base_ref = d.be64().map_err(|e| fail(&d, e))?;
            let base_t = d.be64().map_err(|e| fail(&d, e))? as i64;
            // Each sample takes at least 10 bytes, which bounds the allocation by the input.
            let mut out = Vec::with_capacity(d.remaining() / 10);
            while !d.is_empty() {
                let r = (|| {
                    let dref = d.varint()?;
                    let dt = d.varint()?;
                    let v = f64::from_bits(d.be64()?);
                    Ok(RefSample {
                        series_ref: (base_ref as i64).wrapping_add(dref) as u64,
                        t: base_t.wrapping_add(dt),
                        v,
                    })
                })();
                out.push(r.map_err(|e| fail(&d, e))?);
            }
            Ok(Record::Samples(out))
        }
        TOMBSTONES => {
            let mut out = Vec::new();
            while !d.is_empty() {
                let r = (|| {
                    Ok(Stone {
                        series_ref: d.be64()?,
                        min_time: d.varint()?,
                        max_time: d.varint()?,
                    })
                })();
                out.push(r.map_err(|e| fail(&d, e))?);
            }
            Ok(Record::Tombstones(out))
        }
        other => Ok(Record::Unknown(Some(other))),
    }
}

/// Encodes a decoded record again (unknown records have nothing to encode and give `false`).
pub fn encode(rec: &Record, out: &mut Vec<u8>) -> bool {
    match rec {
        Record::Series(s) => encode_series(s, out),
        Record::Samples(s) => encode_samples(s, out),
        Record::Tombstones(s) => encode_tombstones(s, out),
        Record::Unknown(_) => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prometheus' staleness marker.
    const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

    #[test]
    fn samples_layout_matches_prometheus() {
        let s = [
            RefSample {
                series_ref: 10,
                t: 1000,
                v: 1.5,
            },
            RefSample {
                series_ref: 9,
                t: 1015,
                v: f64::from_bits(STALE_NAN),
            },
        ];
        let mut out = Vec::new();
        encode_samples(&s, &mut out);
        let mut want = vec![SAMPLES];
        want.extend_from_slice(&10u64.to_be_bytes());
        want.extend_from_slice(&1000i64.to_be_bytes());
        want.extend_from_slice(&[0, 0]);
        want.extend_from_slice(&1.5f64.to_bits().to_be_bytes());
        want.extend_from_slice(&[1, 30]); // zig-zag -1, +15
        want.extend_from_slice(&STALE_NAN.to_be_bytes());
        assert_eq!(out, want);
        let Record::Samples(back) = decode(&out).unwrap() else {
            panic!("not samples")
        };
        assert_eq!(back, s);
        assert_eq!(back[1].v.to_bits(), STALE_NAN);
    }

    #[test]
    fn series_layout_matches_prometheus() {
        let s = [RefSeries {
            series_ref: 3,
            labels: Labels::from_pairs(&[("__name__", "up"), ("job", "a")]),
        }];
        let mut out = Vec::new();
        encode_series(&s, &mut out);
        let mut want = vec![SERIES, 0, 0, 0, 0, 0, 0, 0, 3, 2];
        for p in ["__name__", "up", "job", "a"] {
            want.push(p.len() as u8);
            want.extend_from_slice(p.as_bytes());
        }
        assert_eq!(out, want);
        assert_eq!(decode(&out).unwrap(), Record::Series(s.to_vec()));
    }

    #[test]
    fn tombstones_and_unknown_records() {
        let st = [Stone {
            series_ref: u64::MAX,
            min_time: i64::MIN,
            max_time: i64::MAX,
        }];
        let mut out = Vec::new();
        encode_tombstones(&st, &mut out);
        assert_eq!(decode(&out).unwrap(), Record::Tombstones(st.to_vec()));
        assert_eq!(decode(&[]).unwrap(), Record::Unknown(None));
        assert_eq!(decode(&[4, 1, 2, 3]).unwrap(), Record::Unknown(Some(4)));
        assert_eq!(decode(&[SAMPLES]).unwrap(), Record::Samples(vec![]));
    }

    #[test]
    fn truncated_records_are_errors() {
        let mut out = Vec::new();
        encode_samples(
            &[RefSample {
                series_ref: 1,
                t: 2,
                v: 3.0,
            }],
            &mut out,
        );
        for n in (2..out.len()).filter(|&n| n != 17) {
            let e = decode(&out[..n]).unwrap_err();
            assert_eq!(e.record_type, SAMPLES);
            assert!(e.to_string().starts_with("samples record"), "{e}");
        }
        assert!(decode(&[SERIES, 0, 0, 0, 0, 0, 0, 0, 1, 5]).is_err());
        assert!(decode(&[TOMBSTONES, 0]).is_err());
    }
}
