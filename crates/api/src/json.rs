//! The JSON Prometheus' HTTP API writes, byte for byte.
//!
//! Prometheus encodes with jsoniter in its standard-library-compatible mode, plus custom
//! encoders for samples (`web/api/v1/json_codec.go`): label names and values are escaped
//! HTML-safely (`<`, `>`, `&` as `\u003c` ...), timestamps are seconds with the milliseconds
//! written as three digits only when not zero, and values are strings formatted by Go's
//! `strconv`. The writer here reproduces that layout directly, so a response can be written
//! series by series without building a document tree.

use strata_model::Labels;
use strata_promql::format::{format_sample_value, format_timestamp};
use strata_promql::{Sample, Series, Value};

pub use strata_model::json::write_str;

/// `{"name":"value",...}` in label order.
pub fn write_labels(out: &mut String, labels: &Labels) {
    out.push('{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, &l.name);
        out.push(':');
        write_str(out, &l.value);
    }
    out.push('}');
}

/// `[<ts>,"<value>"]`.
pub fn write_point(out: &mut String, t: i64, v: f64) {
    out.push('[');
    format_timestamp(t, out);
    out.push_str(",\"");
    format_sample_value(v, out);
    out.push_str("\"]");
}

/// One vector element: `{"metric":{...},"value":[t,"v"]}`.
pub fn write_sample(out: &mut String, s: &Sample) {
    out.push_str("{\"metric\":");
    write_labels(out, &s.labels);
    out.push_str(",\"value\":");
    write_point(out, s.t, s.v);
    out.push('}');
}

/// One matrix series: `{"metric":{...},"values":[[t,"v"],...]}`.
pub fn write_series(out: &mut String, s: &Series) {
    out.push_str("{\"metric\":");
    write_labels(out, &s.labels);
    out.push_str(",\"values\":[");
    for (i, &(t, v)) in s.points.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_point(out, t, v);
    }
    out.push_str("]}");
}

/// Writes a query result's `data` object in pieces: `emit` is called whenever `out` has
/// grown past `chunk` bytes, so a large matrix never needs to exist as one string.
pub fn write_query_data(
    out: &mut String,
    value: &Value,
    chunk: usize,
    emit: &mut dyn FnMut(&mut String) -> bool,
) -> bool {
    out.push_str("{\"resultType\":\"");
    out.push_str(value.type_name());
    out.push_str("\",\"result\":");
    match value {
        Value::Scalar { t, v } => write_point(out, *t, *v),
        Value::String { t, s } => {
            out.push('[');
            format_timestamp(*t, out);
            out.push(',');
            write_str(out, s);
            out.push(']');
        }
        Value::Vector(samples) => {
            out.push('[');
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sample(out, s);
                if out.len() >= chunk && !emit(out) {
                    return false;
                }
            }
            out.push(']');
        }
        Value::Matrix(series) => {
            out.push('[');
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_series(out, s);
                if out.len() >= chunk && !emit(out) {
                    return false;
                }
            }
            out.push(']');
        }
    }
    out.push('}');
    true
}

/// The closing part of a success envelope: warnings and infos when there are any.
pub fn write_envelope_tail(out: &mut String, warnings: &[String], infos: &[String]) {
    for (key, list) in [("warnings", warnings), ("infos", infos)] {
        if list.is_empty() {
            continue;
        }
        out.push_str(",\"");
        out.push_str(key);
        out.push_str("\":[");
        for (i, w) in list.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_str(out, w);
        }
        out.push(']');
    }
    out.push('}');
}

/// A complete error envelope.
pub fn error_body(error_type: &str, message: &str, warnings: &[String]) -> String {
    let mut out = String::from("{\"status\":\"error\",\"errorType\":");
    write_str(&mut out, error_type);
    out.push_str(",\"error\":");
    write_str(&mut out, message);
    write_envelope_tail(&mut out, warnings, &[]);
    out
}

/// A complete success envelope around already-encoded `data`.
pub fn success_body(data: &str) -> String {
    let mut out = String::with_capacity(data.len() + 32);
    out.push_str("{\"status\":\"success\",\"data\":");
    out.push_str(data);
    out.push('}');
    out
}

/// `/api/v1/metadata`'s data: `{"<metric>":[{"type":…,"help":…,"unit":…}],…}`.
pub fn metric_metadata(
    metrics: &std::collections::BTreeMap<String, Vec<crate::MetricMeta>>,
) -> String {
    let mut out = String::from("{");
    for (i, (name, metas)) in metrics.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(&mut out, name);
        out.push_str(":[");
        for (j, m) in metas.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push_str("{\"type\":");
            write_str(&mut out, &m.kind);
            out.push_str(",\"help\":");
            write_str(&mut out, &m.help);
            out.push_str(",\"unit\":");
            write_str(&mut out, &m.unit);
            out.push('}');
        }
        out.push(']');
    }
    out.push('}');
    out
}

/// `["a","b"]`.
pub fn string_array(items: &[String]) -> String {
    let mut out = String::from("[");
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(&mut out, s);
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_go() {
        let mut s = String::new();
        write_str(&mut s, "a\"b\\c\n<&>\u{1}\u{2028}é");
        assert_eq!(s, r#""a\"b\\c\n\u003c\u0026\u003e\u0001\u2028é""#);
    }

    #[test]
    fn points() {
        let mut s = String::new();
        write_point(&mut s, 1001, 1e21);
        assert_eq!(s, r#"[1.001,"1e+21"]"#);
        s.clear();
        write_point(&mut s, 10, f64::NAN);
        assert_eq!(s, r#"[0.010,"NaN"]"#);
        s.clear();
        write_point(&mut s, -1, f64::NEG_INFINITY);
        assert_eq!(s, r#"[-0.001,"-Inf"]"#);
    }
}
