//! Range query answers: read from a querier's JSON, cut to a time range, merged, and written
//! back in the layout Prometheus writes.
//!
//! A split query's parts come back as separate matrices whose series must be joined by label
//! set and whose samples must be joined in time order; a cached extent is a matrix cut to the
//! part of the range it covers. The samples are never decoded into numbers: a series' samples
//! are kept as *runs*, slices of the querier's JSON text (`[1700000000,"1"],[…]`) with the
//! times of their first and last sample, so joining parts in time order is appending runs,
//! and writing the answer is copying them. Only a cut through a run, or two runs that
//! overlap in time, read the samples one by one. That keeps the querier's digits exactly,
//! and makes a joined answer cost about what copying its text costs (a 3.3 M sample matrix:
//! `docs/benchmarks.md`, *Query frontend*), where decoding every sample cost four times the
//! query.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use strata_model::json::write_str;

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
    /// Label names and values, sorted by name: the series' identity and order.
    pub metric: BTreeMap<String, String>,
    /// The `metric` object as the querier wrote it, written back as it is.
    metric_json: Bytes,
    /// Float samples (`values`).
    pub values: Points,
    /// Native histogram samples (`histograms`).
    pub histograms: Points,
}

/// A series' samples of one kind, in time order, as runs of the querier's JSON text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Points {
    runs: Vec<Run>,
}

/// Consecutive samples as JSON text: `[t,v],[t,v]` without the enclosing brackets.
#[derive(Debug, Clone, PartialEq)]
struct Run {
    text: Bytes,
    /// Milliseconds of the first and the last sample.
    first: i64,
    last: i64,
}

/// One sample of a run: its time and where its `[t,v]` text lies in the run.
#[derive(Debug, Clone, Copy)]
struct Item {
    t: i64,
    start: usize,
    end: usize,
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
    #[error("a sample of the querier's answer is not [<time>, <value>]: {0}")]
    Sample(String),
}

#[derive(Deserialize)]
struct Envelope<'a> {
    status: String,
    #[serde(borrow, default)]
    data: Option<Data<'a>>,
    #[serde(default)]
    warnings: Vec<String>,
    #[serde(default)]
    infos: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data<'a> {
    result_type: String,
    #[serde(borrow, default)]
    result: Vec<RawSeries<'a>>,
}

#[derive(Deserialize)]
struct RawSeries<'a> {
    #[serde(borrow, default)]
    metric: Option<&'a RawValue>,
    #[serde(borrow, default)]
    values: Option<&'a RawValue>,
    #[serde(borrow, default)]
    histograms: Option<&'a RawValue>,
}

/// The part of `body` that `raw` (borrowed from it) is.
fn slice_of(body: &Bytes, raw: &str) -> Bytes {
    let start = raw.as_ptr() as usize - body.as_ptr() as usize;
    body.slice(start..start + raw.len())
}

impl Points {
    /// The samples of a JSON array (`[[t,v],…]`, borrowed from `body`).
    fn from_array(body: &Bytes, raw: Option<&RawValue>) -> Result<Points, ResponseError> {
        let Some(raw) = raw else {
            return Ok(Points::default());
        };
        let text = raw.get().trim();
        if text == "null" {
            return Ok(Points::default());
        }
        let inner = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .ok_or_else(|| ResponseError::Sample(format!("{:.40}", text)))?
            .trim();
        if inner.is_empty() {
            return Ok(Points::default());
        }
        let text = slice_of(body, inner);
        let (first, last) = first_and_last(&text)?;
        Ok(Points {
            runs: vec![Run { text, first, last }],
        })
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The time of the first sample.
    pub fn first_time(&self) -> Option<i64> {
        self.runs.first().map(|r| r.first)
    }

    /// Joins `more` (later or overlapping samples) into these.
    fn join(&mut self, more: Points) -> Result<(), ResponseError> {
        match (self.runs.last(), more.runs.first()) {
            (None, _) => *self = more,
            (_, None) => {}
            (Some(a), Some(b)) if b.first > a.last => self.runs.extend(more.runs),
            _ => *self = merge_items(self, &more)?,
        }
        Ok(())
    }

    /// The samples within `[start, end]`.
    fn cut(&self, start: i64, end: i64) -> Result<Points, ResponseError> {
        let mut out = Points::default();
        for r in &self.runs {
            if r.last < start || r.first > end {
                continue;
            }
            if r.first >= start && r.last <= end {
                out.runs.push(r.clone());
                continue;
            }
            let items = scan(&r.text)?;
            let inside: Vec<&Item> = items
                .iter()
                .filter(|i| i.t >= start && i.t <= end)
                .collect();
            if let (Some(a), Some(b)) = (inside.first(), inside.last()) {
                out.runs.push(Run {
                    text: r.text.slice(a.start..b.end),
                    first: a.t,
                    last: b.t,
                });
            }
        }
        Ok(out)
    }

    fn text_len(&self) -> usize {
        self.runs.iter().map(|r| r.text.len() + 1).sum()
    }

    fn write(&self, out: &mut Vec<u8>) {
        for (i, r) in self.runs.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&r.text);
        }
    }
}

/// Both sample lists merged in time order, one run; at equal times `a`'s sample is kept.
fn merge_items(a: &Points, b: &Points) -> Result<Points, ResponseError> {
    let items = |p: &Points| -> Result<Vec<(i64, Bytes)>, ResponseError> {
        let mut out = Vec::new();
        for r in &p.runs {
            for i in scan(&r.text)? {
                out.push((i.t, r.text.slice(i.start..i.end)));
            }
        }
        Ok(out)
    };
    let (a, b) = (items(a)?, items(b)?);
    let mut merged: Vec<(i64, Bytes)> = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let take_a = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.0 == y.0 => {
                j += 1;
                true
            }
            (Some(x), Some(y)) => x.0 < y.0,
            (Some(_), None) => true,
            _ => false,
        };
        if take_a {
            merged.push(a[i].clone());
            i += 1;
        } else {
            merged.push(b[j].clone());
            j += 1;
        }
    }
    let (Some(first), Some(last)) = (merged.first().map(|x| x.0), merged.last().map(|x| x.0))
    else {
        return Ok(Points::default());
    };
    let mut text = Vec::with_capacity(merged.iter().map(|x| x.1.len() + 1).sum());
    for (k, (_, t)) in merged.iter().enumerate() {
        if k > 0 {
            text.push(b',');
        }
        text.extend_from_slice(t);
    }
    Ok(Points {
        runs: vec![Run {
            text: Bytes::from(text),
            first,
            last,
        }],
    })
}

/// The times of the first and the last sample of a run. The last is found from the end:
/// its `[` is the last one in the text when the value holds none (a float's value, a
/// string, never does); otherwise, and when what follows does not read as a sample, the
/// whole run is read.
fn first_and_last(text: &[u8]) -> Result<(i64, i64), ResponseError> {
    let (first, _) = item_at(text, 0)?;
    if let Some(pos) = text.iter().rposition(|&b| b == b'[')
        && let Ok((last, end)) = item_at(text, pos)
        && skip_ws(text, end) == text.len()
        && last >= first
    {
        return Ok((first, last));
    }
    let items = scan(text)?;
    Ok((first, items.last().map_or(first, |i| i.t)))
}

/// Every sample of a run, checking that they are in time order.
fn scan(text: &[u8]) -> Result<Vec<Item>, ResponseError> {
    let mut items = Vec::new();
    let mut pos = skip_ws(text, 0);
    while pos < text.len() {
        let start = pos;
        let (t, end) = item_at(text, pos)?;
        if items.last().is_some_and(|i: &Item| i.t >= t) {
            return Err(ResponseError::Sample(
                "samples out of time order".to_string(),
            ));
        }
        items.push(Item { t, start, end });
        pos = skip_ws(text, end);
        if pos < text.len() {
            if text[pos] != b',' {
                return Err(bad_sample(text, pos));
            }
            pos = skip_ws(text, pos + 1);
        }
    }
    Ok(items)
}

fn bad_sample(text: &[u8], pos: usize) -> ResponseError {
    let end = (pos + 40).min(text.len());
    ResponseError::Sample(String::from_utf8_lossy(&text[pos.min(end)..end]).into_owned())
}

fn skip_ws(text: &[u8], mut pos: usize) -> usize {
    while pos < text.len() && matches!(text[pos], b' ' | b'\t' | b'\n' | b'\r') {
        pos += 1;
    }
    pos
}

/// The sample `[t, v]` starting at `pos`: its time in milliseconds and where it ends.
fn item_at(text: &[u8], pos: usize) -> Result<(i64, usize), ResponseError> {
    if text.get(pos) != Some(&b'[') {
        return Err(bad_sample(text, pos));
    }
    let num_start = skip_ws(text, pos + 1);
    let mut p = num_start;
    while p < text.len() && matches!(text[p], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
        p += 1;
    }
    let t: f64 = std::str::from_utf8(&text[num_start..p])
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|t: &f64| t.is_finite())
        .ok_or_else(|| bad_sample(text, pos))?;
    p = skip_ws(text, p);
    if text.get(p) != Some(&b',') {
        return Err(bad_sample(text, pos));
    }
    p = skip_value(text, skip_ws(text, p + 1)).ok_or_else(|| bad_sample(text, pos))?;
    p = skip_ws(text, p);
    if text.get(p) != Some(&b']') {
        return Err(bad_sample(text, pos));
    }
    Ok(((t * 1000.0).round() as i64, p + 1))
}

/// The end of the JSON value starting at `pos` (a string, an object or array, or a bare
/// number or literal). The text was already checked as JSON by the parser; this only has to
/// find where a value ends.
fn skip_value(text: &[u8], pos: usize) -> Option<usize> {
    match *text.get(pos)? {
        b'"' => skip_string(text, pos),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut p = pos;
            while p < text.len() {
                match text[p] {
                    b'"' => {
                        p = skip_string(text, p)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(p + 1);
                        }
                    }
                    _ => {}
                }
                p += 1;
            }
            None
        }
        _ => {
            let mut p = pos;
            while p < text.len()
                && !matches!(text[p], b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r')
            {
                p += 1;
            }
            (p > pos).then_some(p)
        }
    }
}

/// The end of the string starting at `pos` (its opening quote).
fn skip_string(text: &[u8], pos: usize) -> Option<usize> {
    let mut p = pos + 1;
    while p < text.len() {
        match text[p] {
            b'\\' => p += 2,
            b'"' => return Some(p + 1),
            _ => p += 1,
        }
    }
    None
}

impl Series {
    /// A series from its labels and samples given as JSON text (`[[t,"v"],…]`); for tests
    /// and callers that build answers.
    pub fn from_json(
        metric: &BTreeMap<String, String>,
        values: &str,
    ) -> Result<Series, ResponseError> {
        let mut json = String::new();
        write_metric(&mut json, metric);
        let body = Bytes::from(format!(r#"{{"metric":{json},"values":{values}}}"#));
        let raw: RawSeries<'_> = serde_json::from_slice(&body)?;
        Ok(Series {
            metric: metric.clone(),
            metric_json: Bytes::from(json),
            values: Points::from_array(&body, raw.values)?,
            histograms: Points::default(),
        })
    }
}

fn write_metric(out: &mut String, metric: &BTreeMap<String, String>) {
    out.push('{');
    for (j, (name, value)) in metric.iter().enumerate() {
        if j > 0 {
            out.push(',');
        }
        write_str(out, name);
        out.push(':');
        write_str(out, value);
    }
    out.push('}');
}

impl Matrix {
    /// Reads a successful `query_range` answer. Series are sorted by label set whatever order
    /// the querier wrote them in; samples are taken in the querier's order (time order).
    pub fn parse(body: &[u8]) -> Result<Matrix, ResponseError> {
        Matrix::parse_bytes(&Bytes::copy_from_slice(body))
    }

    /// [`Matrix::parse`] without copying: the series' text stays in `body`.
    pub fn parse_bytes(body: &Bytes) -> Result<Matrix, ResponseError> {
        let env: Envelope<'_> = serde_json::from_slice(body)?;
        if env.status != "success" {
            return Err(ResponseError::NotSuccess(env.status));
        }
        let data = env
            .data
            .ok_or_else(|| ResponseError::NotMatrix("answer without data".into()))?;
        if data.result_type != "matrix" {
            return Err(ResponseError::NotMatrix(data.result_type));
        }
        let mut series = Vec::with_capacity(data.result.len());
        for s in data.result {
            let (metric, metric_json) = match s.metric {
                Some(m) => (
                    serde_json::from_str::<BTreeMap<String, String>>(m.get())?,
                    slice_of(body, m.get()),
                ),
                None => (BTreeMap::new(), Bytes::from_static(b"{}")),
            };
            series.push(Series {
                metric,
                metric_json,
                values: Points::from_array(body, s.values)?,
                histograms: Points::from_array(body, s.histograms)?,
            });
        }
        if !series.is_sorted_by(|a, b| label_cmp(&a.metric, &b.metric).is_le()) {
            series.sort_by(|a, b| label_cmp(&a.metric, &b.metric));
        }
        let mut m = Matrix {
            series,
            ..Matrix::default()
        };
        m.add_notes(env.warnings, env.infos);
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
    pub fn cut(&self, start: i64, end: i64) -> Result<Matrix, ResponseError> {
        let mut series = Vec::with_capacity(self.series.len());
        for s in &self.series {
            let values = s.values.cut(start, end)?;
            let histograms = s.histograms.cut(start, end)?;
            if !values.is_empty() || !histograms.is_empty() {
                series.push(Series {
                    metric: s.metric.clone(),
                    metric_json: s.metric_json.clone(),
                    values,
                    histograms,
                });
            }
        }
        Ok(Matrix {
            series,
            warnings: self.warnings.clone(),
            infos: self.infos.clone(),
        })
    }

    /// Joins answers for parts of one range query: series by label set, samples in time order.
    /// Where parts overlap (a sample at the same time in two parts) the earlier part's sample
    /// is kept, so joining a cached extent with a fresh answer that reaches into it gives each
    /// step once.
    pub fn merge(parts: Vec<Matrix>) -> Result<Matrix, ResponseError> {
        let mut parts = parts.into_iter();
        let Some(mut out) = parts.next() else {
            return Ok(Matrix::default());
        };
        for part in parts {
            out.add_notes(part.warnings, part.infos);
            // Both lists are sorted by labels: merge them in one pass.
            let old = std::mem::take(&mut out.series);
            let mut merged = Vec::with_capacity(old.len().max(part.series.len()));
            let mut a = old.into_iter().peekable();
            let mut b = part.series.into_iter().peekable();
            loop {
                let order = match (a.peek(), b.peek()) {
                    (Some(x), Some(y)) => label_cmp(&x.metric, &y.metric),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => break,
                };
                match order {
                    std::cmp::Ordering::Less => merged.extend(a.next()),
                    std::cmp::Ordering::Greater => merged.extend(b.next()),
                    std::cmp::Ordering::Equal => {
                        let (Some(mut x), Some(y)) = (a.next(), b.next()) else {
                            break;
                        };
                        x.values.join(y.values)?;
                        x.histograms.join(y.histograms)?;
                        merged.push(x);
                    }
                }
            }
            out.series = merged;
        }
        Ok(out)
    }

    /// The answer as Prometheus writes it: `{"status":"success","data":{"resultType":
    /// "matrix","result":[...]}}`, then `warnings` and `infos` when there are any.
    pub fn to_json(&self) -> Vec<u8> {
        let size: usize = self
            .series
            .iter()
            .map(|s| s.metric_json.len() + s.values.text_len() + s.histograms.text_len() + 48)
            .sum();
        let mut out = Vec::with_capacity(96 + size);
        out.extend_from_slice(br#"{"status":"success","data":{"resultType":"matrix","result":["#);
        for (i, s) in self.series.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"metric\":");
            out.extend_from_slice(&s.metric_json);
            if !s.values.is_empty() {
                out.extend_from_slice(b",\"values\":[");
                s.values.write(&mut out);
                out.push(b']');
            }
            if !s.histograms.is_empty() {
                out.extend_from_slice(b",\"histograms\":[");
                s.histograms.write(&mut out);
                out.push(b']');
            }
            out.push(b'}');
        }
        out.extend_from_slice(b"]}");
        let mut notes = String::new();
        write_notes(&mut notes, "warnings", &self.warnings);
        write_notes(&mut notes, "infos", &self.infos);
        out.extend_from_slice(notes.as_bytes());
        out.push(b'}');
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

/// Prometheus' order of label sets (`labels.Compare`): pair by pair, name then value, a
/// shorter set first when it is a prefix of the other.
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
    const B: &str = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"b"},"values":[[1700000060,"9"],[1700000120,"NaN"]]},{"metric":{"job":"\u003cc\u003e"},"values":[[1700000120,"+Inf"]]}]},"warnings":["w1","w2"]}"#;

    fn json(m: &Matrix) -> String {
        String::from_utf8(m.to_json()).unwrap()
    }

    fn times(p: &Points) -> Vec<i64> {
        p.runs
            .iter()
            .flat_map(|r| scan(&r.text).unwrap())
            .map(|i| i.t)
            .collect()
    }

    #[test]
    fn parses_sorts_and_writes_back_as_prometheus_does() {
        let m = Matrix::parse(A.as_bytes()).unwrap();
        assert_eq!(m.series.len(), 2);
        assert_eq!(m.series[0].metric["job"], "a", "sorted by labels");
        assert_eq!(times(&m.series[0].values), vec![1_700_000_000_500]);
        assert_eq!(
            json(&m),
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a"},"values":[[1700000000.500,"2.5"]]},{"metric":{"__name__":"up","job":"b"},"values":[[1700000000,"1"],[1700000060,"0"]]}]},"warnings":["w1"]}"#
        );
    }

    #[test]
    fn merge_joins_series_keeps_the_first_sample_of_a_step_and_unions_warnings() {
        let a = Matrix::parse(A.as_bytes()).unwrap();
        let b = Matrix::parse(B.as_bytes()).unwrap();
        let m = Matrix::merge(vec![a, b]).unwrap();
        assert_eq!(
            json(&m),
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
    fn parts_in_time_order_are_appended_and_overlapping_ones_interleaved() {
        let m = BTreeMap::from([("a".to_string(), "1".to_string())]);
        let s = |v: &str| Series::from_json(&m, v).unwrap().values;
        let mut p = s(r#"[[1,"a"],[3,"a"],[5,"a"]]"#);
        p.join(s(r#"[[6,"b"], [7,"b"]]"#)).unwrap();
        assert_eq!(p.runs.len(), 2, "appended without reading the samples");
        p.join(s(r#"[[2,"c"],[3,"c"],[8,"c"]]"#)).unwrap();
        assert_eq!(times(&p), vec![1000, 2000, 3000, 5000, 6000, 7000, 8000]);
        let mut out = Vec::new();
        p.write(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"[1,"a"],[2,"c"],[3,"a"],[5,"a"],[6,"b"],[7,"b"],[8,"c"]"#
        );
        let mut empty = Points::default();
        empty.join(s(r#"[[1,"b"]]"#)).unwrap();
        assert_eq!(times(&empty), vec![1000]);
    }

    #[test]
    fn cut_keeps_a_closed_range_and_drops_emptied_series() {
        let m = Matrix::parse(A.as_bytes()).unwrap();
        let c = m.cut(1_700_000_060_000, 1_700_000_060_000).unwrap();
        assert_eq!(c.series.len(), 1);
        assert_eq!(times(&c.series[0].values), vec![1_700_000_060_000]);
        assert_eq!(c.warnings, vec!["w1".to_string()]);
        assert_eq!(
            json(&c),
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"b"},"values":[[1700000060,"0"]]}]},"warnings":["w1"]}"#
        );
    }

    #[test]
    fn histograms_and_odd_spacing_are_carried_through() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"1"},"histograms":[[10,{"count":"3","sum":"1.5","buckets":[[0,"0","1","3"]]}],[20,{"count":"4","sum":"2","buckets":[]}]]}]}}"#;
        let m = Matrix::parse(body).unwrap();
        assert_eq!(json(&m).as_bytes(), &body[..]);
        assert_eq!(times(&m.series[0].histograms), vec![10_000, 20_000]);
        assert_eq!(m.series[0].histograms.runs[0].last, 20_000);
        let spaced = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"1"},"values":[ [ 1 , "1" ] ,
            [2,"2"] ]}]}}"#;
        let m = Matrix::parse(spaced).unwrap();
        assert_eq!(times(&m.series[0].values), vec![1000, 2000]);
        assert_eq!(m.series[0].values.runs[0].last, 2000);
    }

    #[test]
    fn anything_but_a_successful_matrix_is_an_error() {
        for (body, want) in [
            (&br#"{"status":"error","errorType":"bad_data","error":"x"}"#[..], "status"),
            (br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#, "vector"),
            (br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[["x","1"]]}]}}"#, "sample"),
            (br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"],[5]]}]}}"#, "sample"),
            (br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":{}}]}}"#, "sample"),
            (b"<html>", "JSON"),
        ] {
            let e = Matrix::parse(body).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }
}
