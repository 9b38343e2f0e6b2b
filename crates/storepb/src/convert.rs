//! Conversions between the wire messages and Strata's types.
//!
//! Everything that crosses the wire is untrusted: a matcher with a bad regex, a label set out
//! of order or a chunk with an unknown encoding becomes a [`ConvertError`] that says which
//! value was wrong, which servers turn into `InvalidArgument`.

use prost::Name;
use strata_model::{Labels, MatchOp, Matcher, MatcherError};
use strata_tsdb::{Encoding, RawChunk};

use crate::thanos::{
    AggrChunk, Chunk, Label, LabelMatcher, Series, SeriesResponse, chunk, label_matcher,
    series_response,
};

/// A wire value that cannot be turned into a Strata value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// A matcher's type is not one of EQ, NEQ, RE, NRE.
    #[error(
        "label matcher for {name:?} has unknown type {value} (known: EQ=0, NEQ=1, RE=2, NRE=3)"
    )]
    UnknownMatcherType { name: String, value: i32 },
    /// A regex matcher does not compile.
    #[error(transparent)]
    Matcher(#[from] MatcherError),
    /// A chunk's encoding is not one Strata knows.
    #[error("chunk has unknown encoding {0} (known: XOR=0, HISTOGRAM=1, FLOAT_HISTOGRAM=2)")]
    UnknownEncoding(i32),
    /// A TSDB chunk encoding that has no Store API equivalent.
    #[error("TSDB chunk encoding {0} cannot be sent over the Store API")]
    UnsupportedEncoding(Encoding),
    /// An `Any` holds another message type than the one asked for.
    #[error("hints of type {got:?} where {want:?} was expected")]
    HintsType { got: String, want: String },
    /// An `Any` of the right type whose bytes do not decode.
    #[error("hints {type_url:?} do not decode: {source}")]
    HintsDecode {
        type_url: String,
        #[source]
        source: prost::DecodeError,
    },
}

// ---------------------------------------------------------------------------------------------
// Labels
// ---------------------------------------------------------------------------------------------

impl From<&strata_model::Label> for Label {
    fn from(l: &strata_model::Label) -> Self {
        Label {
            name: l.name.clone(),
            value: l.value.clone(),
        }
    }
}

impl From<Label> for strata_model::Label {
    fn from(l: Label) -> Self {
        strata_model::Label::new(l.name, l.value)
    }
}

/// Wire labels from a label set (already sorted by name).
pub fn labels_from_model(labels: &Labels) -> Vec<Label> {
    labels.iter().map(Label::from).collect()
}

/// Wire labels from a label set that is no longer needed: the strings move, nothing is copied.
pub fn labels_into_wire(labels: Labels) -> Vec<Label> {
    labels
        .into_vec()
        .into_iter()
        .map(|l| Label {
            name: l.name,
            value: l.value,
        })
        .collect()
}

/// A label set from wire labels. Labels from another server may be unsorted or carry empty
/// values; [`Labels::new`] sorts them and drops empty ones, as Prometheus does.
pub fn labels_to_model(labels: Vec<Label>) -> Labels {
    // The collect reuses the allocation (same layout); `from_received` keeps well-formed sets
    // as they are instead of sorting a copy.
    Labels::from_received(labels.into_iter().map(strata_model::Label::from).collect())
}

// ---------------------------------------------------------------------------------------------
// Matchers
// ---------------------------------------------------------------------------------------------

/// A Strata matcher from a wire matcher; a regex that does not compile is an error naming it.
pub fn matcher_to_model(m: &LabelMatcher) -> Result<Matcher, ConvertError> {
    let op = match label_matcher::Type::try_from(m.r#type) {
        Ok(label_matcher::Type::Eq) => MatchOp::Equal,
        Ok(label_matcher::Type::Neq) => MatchOp::NotEqual,
        Ok(label_matcher::Type::Re) => MatchOp::RegexMatch,
        Ok(label_matcher::Type::Nre) => MatchOp::RegexNoMatch,
        Err(_) => {
            return Err(ConvertError::UnknownMatcherType {
                name: m.name.clone(),
                value: m.r#type,
            });
        }
    };
    Ok(Matcher::new(op, m.name.clone(), m.value.clone())?)
}

/// Strata matchers from wire matchers.
pub fn matchers_to_model(ms: &[LabelMatcher]) -> Result<Vec<Matcher>, ConvertError> {
    ms.iter().map(matcher_to_model).collect()
}

/// A wire matcher from a Strata matcher.
pub fn matcher_from_model(m: &Matcher) -> LabelMatcher {
    let t = match m.op() {
        MatchOp::Equal => label_matcher::Type::Eq,
        MatchOp::NotEqual => label_matcher::Type::Neq,
        MatchOp::RegexMatch => label_matcher::Type::Re,
        MatchOp::RegexNoMatch => label_matcher::Type::Nre,
    };
    LabelMatcher {
        r#type: t as i32,
        name: m.name().to_string(),
        value: m.value().to_string(),
    }
}

/// Shorthand for building wire matchers in clients and tests.
pub fn label_matcher(t: label_matcher::Type, name: &str, value: &str) -> LabelMatcher {
    LabelMatcher {
        r#type: t as i32,
        name: name.to_string(),
        value: value.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Chunks
// ---------------------------------------------------------------------------------------------

/// The Store API encoding of a TSDB chunk encoding. The numbering differs: TSDB writes XOR as
/// 1 in segment files, the Store API sends it as 0.
pub fn encoding_from_tsdb(e: Encoding) -> Result<chunk::Encoding, ConvertError> {
    match e {
        Encoding::Xor => Ok(chunk::Encoding::Xor),
        Encoding::Histogram => Ok(chunk::Encoding::Histogram),
        Encoding::FloatHistogram => Ok(chunk::Encoding::FloatHistogram),
        other => Err(ConvertError::UnsupportedEncoding(other)),
    }
}

/// The TSDB chunk encoding of a Store API encoding.
pub fn encoding_to_tsdb(e: chunk::Encoding) -> Encoding {
    match e {
        chunk::Encoding::Xor => Encoding::Xor,
        chunk::Encoding::Histogram => Encoding::Histogram,
        chunk::Encoding::FloatHistogram => Encoding::FloatHistogram,
    }
}

impl Chunk {
    /// A wire chunk carrying a TSDB chunk's bytes unchanged (no copy, no re-encoding).
    pub fn from_raw(raw: &RawChunk) -> Result<Chunk, ConvertError> {
        Chunk::from_raw_owned(raw.clone())
    }

    /// [`Chunk::from_raw`] for a chunk no longer needed: its buffer handle moves too (no
    /// reference count traffic on the shared read buffer).
    pub fn from_raw_owned(raw: RawChunk) -> Result<Chunk, ConvertError> {
        Ok(Chunk {
            r#type: encoding_from_tsdb(raw.encoding)? as i32,
            data: raw.data,
            hash: 0,
        })
    }

    /// The TSDB chunk this wire chunk carries.
    pub fn to_raw(&self) -> Result<RawChunk, ConvertError> {
        let e = chunk::Encoding::try_from(self.r#type)
            .map_err(|_| ConvertError::UnknownEncoding(self.r#type))?;
        Ok(RawChunk::new(encoding_to_tsdb(e), self.data.clone()))
    }
}

impl AggrChunk {
    /// A raw (not downsampled) chunk covering `[min_time, max_time]`.
    pub fn raw(min_time: i64, max_time: i64, chunk: Chunk) -> AggrChunk {
        AggrChunk {
            min_time,
            max_time,
            raw: Some(chunk),
            ..Default::default()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Responses and hints
// ---------------------------------------------------------------------------------------------

impl SeriesResponse {
    /// A frame carrying one series.
    pub fn series(s: Series) -> SeriesResponse {
        SeriesResponse {
            result: Some(series_response::Result::Series(s)),
        }
    }

    /// A frame carrying a warning (partial response).
    pub fn warning(w: impl Into<String>) -> SeriesResponse {
        SeriesResponse {
            result: Some(series_response::Result::Warning(w.into())),
        }
    }

    /// A frame carrying hints.
    pub fn hints(h: prost_types::Any) -> SeriesResponse {
        SeriesResponse {
            result: Some(series_response::Result::Hints(h)),
        }
    }
}

/// Packs a message into `google.protobuf.Any` with its Thanos type URL
/// (`type.googleapis.com/<package>.<Message>`).
pub fn pack_any<M: Name>(m: &M) -> prost_types::Any {
    prost_types::Any {
        type_url: M::type_url(),
        value: prost::Message::encode_to_vec(m),
    }
}

/// Unpacks `M` from an `Any`. The type is matched on the part after the last `/`, since Go
/// clients and servers do not all use the same URL prefix.
pub fn unpack_any<M: Name + Default>(any: &prost_types::Any) -> Result<M, ConvertError> {
    let got = any.type_url.rsplit('/').next().unwrap_or_default();
    if got != M::full_name() {
        return Err(ConvertError::HintsType {
            got: any.type_url.clone(),
            want: M::type_url(),
        });
    }
    M::decode(any.value.as_slice()).map_err(|source| ConvertError::HintsDecode {
        type_url: any.type_url.clone(),
        source,
    })
}

/// Adds `ext` to every rule's labels, as Thanos' sidecar and ruler do (an external label wins
/// over a rule label of the same name), so that the querier tells HA replicas' rules apart by
/// their replica label; alert instances are left as they are.
pub fn add_external_labels_to_rules(groups: &mut [crate::thanos::RuleGroup], ext: &Labels) {
    if ext.is_empty() {
        return;
    }
    for g in groups {
        for r in &mut g.rules {
            let labels = match &mut r.result {
                Some(crate::thanos::rule::Result::Recording(x)) => &mut x.labels,
                Some(crate::thanos::rule::Result::Alert(x)) => &mut x.labels,
                None => continue,
            };
            let set = labels.get_or_insert_with(crate::thanos::LabelSet::default);
            let mut merged: std::collections::BTreeMap<String, String> =
                set.labels.drain(..).map(|l| (l.name, l.value)).collect();
            for l in ext.iter() {
                merged.insert(l.name.to_string(), l.value.to_string());
            }
            set.labels = merged
                .into_iter()
                .map(|(name, value)| crate::thanos::Label { name, value })
                .collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hintspb;

    #[test]
    fn matchers_round_trip_and_bad_regex_is_named() {
        for (t, op) in [
            (label_matcher::Type::Eq, "="),
            (label_matcher::Type::Neq, "!="),
            (label_matcher::Type::Re, "=~"),
            (label_matcher::Type::Nre, "!~"),
        ] {
            let wire = label_matcher(t, "job", "a|b");
            let m = matcher_to_model(&wire).unwrap();
            assert_eq!(m.op().as_str(), op);
            assert_eq!(matcher_from_model(&m), wire);
        }
        let err = matcher_to_model(&label_matcher(label_matcher::Type::Re, "job", "(a"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"job\"") && err.contains("\"(a\""), "{err}");
        let bad = LabelMatcher {
            r#type: 7,
            name: "x".into(),
            value: String::new(),
        };
        assert!(
            matcher_to_model(&bad)
                .unwrap_err()
                .to_string()
                .contains("unknown type 7")
        );
    }

    #[test]
    fn chunk_encodings_are_renumbered() {
        let raw = RawChunk::new(Encoding::Xor, vec![0u8, 1, 2]);
        let c = Chunk::from_raw(&raw).unwrap();
        assert_eq!(c.r#type, 0, "XOR is 0 on the Store API, 1 in TSDB");
        assert_eq!(c.to_raw().unwrap(), raw);
        let h = Chunk::from_raw(&RawChunk::new(Encoding::FloatHistogram, vec![])).unwrap();
        assert_eq!(h.r#type, 2);
        assert_eq!(h.to_raw().unwrap().encoding.as_u8(), 3);
        assert!(Chunk::from_raw(&RawChunk::new(Encoding::ThanosAggr, vec![])).is_err());
        let unknown = Chunk {
            r#type: 9,
            ..Default::default()
        };
        assert!(unknown.to_raw().unwrap_err().to_string().contains('9'));
    }

    #[test]
    fn labels_are_sorted_and_empty_values_dropped() {
        let wire = vec![
            Label {
                name: "b".into(),
                value: "2".into(),
            },
            Label {
                name: "a".into(),
                value: "1".into(),
            },
            Label {
                name: "c".into(),
                value: String::new(),
            },
        ];
        let l = labels_to_model(wire);
        assert_eq!(l, Labels::from_pairs(&[("a", "1"), ("b", "2")]));
        assert_eq!(labels_from_model(&l)[0].name, "a");
    }

    #[test]
    fn hints_pack_with_thanos_type_urls() {
        let h = hintspb::SeriesRequestHints {
            block_matchers: vec![label_matcher(label_matcher::Type::Eq, "__block_id", "X")],
            enable_query_stats: true,
        };
        let any = pack_any(&h);
        assert_eq!(
            any.type_url,
            "type.googleapis.com/hintspb.SeriesRequestHints"
        );
        assert_eq!(unpack_any::<hintspb::SeriesRequestHints>(&any).unwrap(), h);
        let err = unpack_any::<hintspb::SeriesResponseHints>(&any).unwrap_err();
        assert!(err.to_string().contains("SeriesResponseHints"), "{err}");
        // Another URL prefix is accepted.
        let other = prost_types::Any {
            type_url: "example.com/x/hintspb.SeriesRequestHints".into(),
            value: any.value.clone(),
        };
        assert_eq!(
            unpack_any::<hintspb::SeriesRequestHints>(&other).unwrap(),
            h
        );
    }
}
