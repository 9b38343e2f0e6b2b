//! Range query answers: read from a querier's JSON, cut to a time range, merged, and written
//! back in the layout Prometheus writes.
//!
//! A split query's parts come back as separate matrices whose series must be joined by label
//! set and whose samples must be joined in time order; a cached extent is a matrix cut to the
//! part of the range it covers. Values are kept as the text the querier wrote (never parsed
//! into floats and formatted again), so a merged answer carries the querier's digits exactly;
//! timestamps are parsed to milliseconds, which Prometheus' JSON writes exactly (seconds with
//! at most three decimals).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::value::RawValue;
use strata_api::json::write_str;
use strata_promql::format::format_timestamp;

/// A matrix answer of `/api/v1/query_range`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Matrix {
    /// Series sorted by label set, as Prometheus sorts a matrix.
    pub series: Vec<Series>,
    /// The answer's `warnings`, in order, without repeats.
    pub warnings: Vec<String>,
    /// The answer's `infos` (Prometheus 2.45 and later), in order, without repeats.
    pub infos: Vec<String>,
}

/// One series of a matrix.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// Label names and values, sorted by name (the order of the JSON object).
    pub metric: BTreeMap<String, String>,
    /// Float samples: milliseconds and the value as the querier wrote it.
    pub values: Vec<(i64, String)>,
    /// Native histogram samples: milliseconds and the histogram object's JSON text, kept
    /// byte for byte as the querier wrote it.
    pub histograms: Vec<(i64, String)>,
}

/// Why a querier's answer could not be read as a matrix.
#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    #[error("the querier's answer is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the querier answered status {0:?} without an error")]
    NotSuccess(String),
    #[error("the querier answered a {0:?} to a range query, expected a matrix")]
    NotMatrix(String),
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    warnings: Vec<String>,
    #[serde(default)]
    infos: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    #[serde(default)]
    result: Vec<RawSeries>,
}

#[derive(Deserialize)]
struct RawSeries {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(Millis, String)>,
    #[serde(default)]
    histograms: Vec<(Millis, Box<RawValue>)>,
}

/// A JSON timestamp in seconds (Prometheus writes at most three decimals), as milliseconds.
struct Millis(i64);

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Millis;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a timestamp in seconds")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Millis, E> {
                if !v.is_finite() {
                    return Err(E::custom("timestamp is not finite"));
                }
                Ok(Millis((v * 1000.0).round() as i64))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Millis, E> {
                v.checked_mul(1000)
                    .map(Millis)
                    .ok_or_else(|| E::custom("timestamp out of range"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Millis, E> {
                i64::try_from(v)
                    .ok()
                    .and_then(|v| v.checked_mul(1000))
                    .map(Millis)
                    .ok_or_else(|| E::custom("timestamp out of range"))
            }
        }
        d.deserialize_any(V)
    }
}

impl Matrix {
    /// Reads a successful `query_range` answer. Series are sorted by label set and samples by
    /// time, whatever order the querier wrote them in.
    pub fn parse(body: &[u8]) -> Result<Matrix, ResponseError> {
        let env: Envelope = serde_json::from_slice(body)?;
        if env.status != "success" {
            return Err(ResponseError::NotSuccess(env.status));
        }
        let data = env
            .data
            .ok_or_else(|| ResponseError::NotMatrix("answer without data".into()))?;
        if data.result_type != "matrix" {
            return Err(ResponseError::NotMatrix(data.result_type));
        }
        let mut series: Vec<Series> = data
            .result
            .into_iter()
            .map(|s| {
                let mut out = Series {
                    metric: s.metric,
                    values: s.values.into_iter().map(|(t, v)| (t.0, v)).collect(),
                    histograms: s
                        .histograms
                        .into_iter()
                        .map(|(t, h)| (t.0, h.get().to_string()))
                        .collect(),
                };
                if !out.values.is_sorted_by_key(|p| p.0) {
                    out.values.sort_by_key(|p| p.0);
                }
                if !out.histograms.is_sorted_by_key(|p| p.0) {
                    out.histograms.sort_by_key(|p| p.0);
                }
                out
            })
            .collect();
        if !series.is_sorted_by(|a, b| label_cmp(&a.metric, &b.metric).is_le()) {
            series.sort_by(|a, b| label_cmp(&a.metric, &b.metric));
        }
        let mut m = Matrix {
            series: Vec::new(),
            warnings: Vec::new(),
            infos: Vec::new(),
        };
        m.add_notes(env.warnings, env.infos);
        m.series = series;
        Ok(m)
    }

    fn add_notes(&mut self, warnings: Vec<String>, infos: Vec<String>) {
        for w in warnings {
            if !self.warnings.contains(&w) {
                self.warnings.push(w);
            }
        }
        for i in infos {
            if !self.infos.contains(&i) {
                self.infos.push(i);
            }
        }
    }

    /// The samples of this answer within `[start, end]` (milliseconds, both included);
    /// series left without samples are dropped.
    pub fn cut(&self, start: i64, end: i64) -> Matrix {
        let series = self
            .series
            .iter()
            .filter_map(|s| {
                let values = within(&s.values, start, end);
                let histograms = within(&s.histograms, start, end);
                (!values.is_empty() || !histograms.is_empty()).then(|| Series {
                    metric: s.metric.clone(),
                    values: values.to_vec(),
                    histograms: histograms.to_vec(),
                })
            })
            .collect();
        Matrix {
            series,
            warnings: self.warnings.clone(),
            infos: self.infos.clone(),
        }
    }

    /// Whether the answer has no series and no notes.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty() && self.warnings.is_empty() && self.infos.is_empty()
    }

    /// Joins answers for parts of one range query: series by label set, samples in time order.
    /// Where parts overlap (a sample at the same time in two parts) the earlier part's sample
    /// is kept, so joining a cached extent with a fresh answer that reaches into it gives each
    /// step once.
    pub fn merge(parts: Vec<Matrix>) -> Matrix {
        let mut out = Matrix::default();
        let mut by_labels: BTreeMap<LabelKey, Series> = BTreeMap::new();
        for part in parts {
            out.add_notes(part.warnings, part.infos);
            for s in part.series {
                match by_labels.entry(LabelKey(s.metric)) {
                    std::collections::btree_map::Entry::Vacant(e) => {
                        let metric = e.key().0.clone();
                        e.insert(Series {
                            metric,
                            values: s.values,
                            histograms: s.histograms,
                        });
                    }
                    std::collections::btree_map::Entry::Occupied(mut e) => {
                        let into = e.get_mut();
                        join(&mut into.values, s.values);
                        join(&mut into.histograms, s.histograms);
                    }
                }
            }
        }
        out.series = by_labels.into_values().collect();
        out
    }

    /// The answer as Prometheus writes it: `{"status":"success","data":{"resultType":
    /// "matrix","result":[...]}}`, then `warnings` and `infos` when there are any.
    pub fn to_json(&self) -> String {
        let points: usize = self
            .series
            .iter()
            .map(|s| s.values.len() + s.histograms.len())
            .sum();
        let mut out = String::with_capacity(64 + self.series.len() * 96 + points * 24);
        out.push_str(r#"{"status":"success","data":{"resultType":"matrix","result":["#);
        for (i, s) in self.series.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"metric\":{");
            for (j, (name, value)) in s.metric.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                write_str(&mut out, name);
                out.push(':');
                write_str(&mut out, value);
            }
            out.push('}');
            if !s.values.is_empty() {
                out.push_str(",\"values\":[");
                for (j, (t, v)) in s.values.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    out.push('[');
                    format_timestamp(*t, &mut out);
                    out.push(',');
                    write_str(&mut out, v);
                    out.push(']');
                }
                out.push(']');
            }
            if !s.histograms.is_empty() {
                out.push_str(",\"histograms\":[");
                for (j, (t, h)) in s.histograms.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    out.push('[');
                    format_timestamp(*t, &mut out);
                    out.push(',');
                    out.push_str(h);
                    out.push(']');
                }
                out.push(']');
            }
            out.push('}');
        }
        out.push_str("]}");
        write_notes(&mut out, "warnings", &self.warnings);
        write_notes(&mut out, "infos", &self.infos);
        out.push('}');
        out
    }
}

fn write_notes(out: &mut String, key: &str, notes: &[String]) {
    if notes.is_empty() {
        return;
    }
    out.push_str(",\"");
    out.push_str(key);
    out.push_str("\":[");
    for (i, n) in notes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, n);
    }
    out.push(']');
}

/// The samples of a time-sorted list within `[start, end]`.
fn within<T>(points: &[(i64, T)], start: i64, end: i64) -> &[(i64, T)] {
    let from = points.partition_point(|p| p.0 < start);
    let to = points.partition_point(|p| p.0 <= end);
    &points[from..to.max(from)]
}

/// Appends `more` to `into`, both sorted by time: samples of `more` at or before the last of
/// `into` are dropped when `more` starts after `into`'s start; otherwise the two are merged
/// and the first of two samples at one time is kept.
fn join<T>(into: &mut Vec<(i64, T)>, more: Vec<(i64, T)>) {
    let Some(last) = into.last().map(|p| p.0) else {
        *into = more;
        return;
    };
    match more.first().map(|p| p.0) {
        None => {}
        Some(first) if first > last => into.extend(more),
        Some(_) => {
            let old = std::mem::take(into);
            let mut a = old.into_iter().peekable();
            let mut b = more.into_iter().peekable();
            loop {
                let take_a = match (a.peek(), b.peek()) {
                    (Some(x), Some(y)) => {
                        if x.0 == y.0 {
                            b.next();
                            true
                        } else {
                            x.0 < y.0
                        }
                    }
                    (Some(_), None) => true,
                    (None, Some(_)) => false,
                    (None, None) => break,
                };
                let next = if take_a { a.next() } else { b.next() };
                into.extend(next);
            }
        }
    }
}

/// A label set ordered as Prometheus orders them (`labels.Compare`): pair by pair, name then
/// value, a shorter set first when it is a prefix of the other.
#[derive(PartialEq, Eq)]
struct LabelKey(BTreeMap<String, String>);

impl Ord for LabelKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        label_cmp(&self.0, &other.0)
    }
}

impl PartialOrd for LabelKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

fn label_cmp(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> std::cmp::Ordering {
    for ((an, av), (bn, bv)) in a.iter().zip(b.iter()) {
        let c = an.cmp(bn).then_with(|| av.cmp(bv));
        if c.is_ne() {
            return c;
        }
    }
    a.len().cmp(&b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"b"},"values":[[1700000000,"1"],[1700000060,"0"]]},{"metric":{"__name__":"up","job":"a"},"values":[[1700000000.500,"2.5"]]}]},"warnings":["w1"]}"#;
    const B: &str = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"b"},"values":[[1700000060,"9"],[1700000120,"NaN"]]},{"metric":{"job":"<c>"},"values":[[1700000120,"+Inf"]]}]},"warnings":["w1","w2"]}"#;

    #[test]
    fn parses_sorts_and_writes_back_as_prometheus_does() {
        let m = Matrix::parse(A.as_bytes()).unwrap();
        assert_eq!(m.series.len(), 2);
        assert_eq!(m.series[0].metric["job"], "a", "sorted by labels");
        assert_eq!(
            m.series[0].values,
            vec![(1_700_000_000_500, "2.5".to_string())]
        );
        assert_eq!(
            m.to_json(),
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a"},"values":[[1700000000.500,"2.5"]]},{"metric":{"__name__":"up","job":"b"},"values":[[1700000000,"1"],[1700000060,"0"]]}]},"warnings":["w1"]}"#
        );
    }

    #[test]
    fn merge_joins_series_keeps_the_first_sample_of_a_step_and_unions_warnings() {
        let a = Matrix::parse(A.as_bytes()).unwrap();
        let b = Matrix::parse(B.as_bytes()).unwrap();
        let m = Matrix::merge(vec![a, b]);
        let json = m.to_json();
        assert_eq!(
            json,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a"},"values":[[1700000000.500,"2.5"]]},{"metric":{"__name__":"up","job":"b"},"values":[[1700000000,"1"],[1700000060,"0"],[1700000120,"NaN"]]},{"metric":{"job":"\u003cc\u003e"},"values":[[1700000120,"+Inf"]]}]},"warnings":["w1","w2"]}"#
        );
        // `__name__` sorts after upper case names, as Go's byte order puts it.
        let c = Matrix::parse(
            br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"x"},"values":[[1,"1"]]},{"metric":{"A":"x"},"values":[[1,"1"]]}]}}"#,
        )
        .unwrap();
        assert_eq!(c.series[0].metric.keys().next().unwrap(), "A");
    }

    #[test]
    fn merge_interleaves_parts_that_overlap() {
        let mut into = vec![(1, "a"), (3, "a"), (5, "a")];
        join(&mut into, vec![(2, "b"), (3, "b"), (6, "b")]);
        assert_eq!(into, vec![(1, "a"), (2, "b"), (3, "a"), (5, "a"), (6, "b")]);
        let mut empty: Vec<(i64, &str)> = Vec::new();
        join(&mut empty, vec![(1, "b")]);
        assert_eq!(empty, vec![(1, "b")]);
    }

    #[test]
    fn cut_keeps_a_closed_range_and_drops_emptied_series() {
        let m = Matrix::parse(A.as_bytes()).unwrap();
        let c = m.cut(1_700_000_060_000, 1_700_000_060_000);
        assert_eq!(c.series.len(), 1);
        assert_eq!(
            c.series[0].values,
            vec![(1_700_000_060_000, "0".to_string())]
        );
        assert_eq!(c.warnings, vec!["w1".to_string()]);
    }

    #[test]
    fn histograms_are_carried_through() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"1"},"histograms":[[10,{"count":"3","sum":"1.5","buckets":[[0,"0","1","3"]]}]]}]}}"#;
        let m = Matrix::parse(body).unwrap();
        assert_eq!(m.to_json().as_bytes(), &body[..]);
    }

    #[test]
    fn anything_but_a_successful_matrix_is_an_error() {
        for (body, want) in [
            (&br#"{"status":"error","errorType":"bad_data","error":"x"}"#[..], "status"),
            (br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#, "vector"),
            (br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[["x","1"]]}]}}"#, "JSON"),
            (b"<html>", "JSON"),
        ] {
            let e = Matrix::parse(body).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }
}
