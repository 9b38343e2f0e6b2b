//! Metadata answers (`/api/v1/labels`, `/api/v1/label/<name>/values`, `/api/v1/series`)
//! joined from the answers for parts of their range: the union of the parts, sorted as the
//! querier sorts them (names and values as strings, series by label set).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use strata_model::json::write_str;

use crate::response::ResponseError;

/// A metadata answer: a list of strings or of label sets.
#[derive(Debug, Clone, PartialEq)]
pub enum Metadata {
    Strings(BTreeSet<String>),
    Series(BTreeSet<LabelSet>),
}

/// A label set, ordered as Prometheus orders them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSet(pub BTreeMap<String, String>);

impl Ord for LabelSet {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        for ((an, av), (bn, bv)) in self.0.iter().zip(other.0.iter()) {
            let c = an.cmp(bn).then_with(|| av.cmp(bv));
            if c.is_ne() {
                return c;
            }
        }
        self.0.len().cmp(&other.0.len())
    }
}

impl PartialOrd for LabelSet {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A metadata answer with its notes.
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataAnswer {
    pub data: Metadata,
    pub warnings: Vec<String>,
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default)]
    warnings: Vec<String>,
}

impl MetadataAnswer {
    /// Reads a successful answer; `series` says which kind of list is expected.
    pub fn parse(body: &[u8], series: bool) -> Result<MetadataAnswer, ResponseError> {
        let env: Envelope = serde_json::from_slice(body)?;
        if env.status != "success" {
            return Err(ResponseError::NotSuccess(env.status));
        }
        let data = env.data.unwrap_or(serde_json::Value::Array(Vec::new()));
        let data = if data.is_null() {
            serde_json::Value::Array(Vec::new())
        } else {
            data
        };
        let data = if series {
            let sets: Vec<BTreeMap<String, String>> = serde_json::from_value(data)?;
            Metadata::Series(sets.into_iter().map(LabelSet).collect())
        } else {
            let names: Vec<String> = serde_json::from_value(data)?;
            Metadata::Strings(names.into_iter().collect())
        };
        Ok(MetadataAnswer {
            data,
            warnings: env.warnings,
        })
    }

    /// The union of `parts` (all of one kind).
    pub fn merge(parts: Vec<MetadataAnswer>, series: bool) -> MetadataAnswer {
        let mut out = MetadataAnswer {
            data: if series {
                Metadata::Series(BTreeSet::new())
            } else {
                Metadata::Strings(BTreeSet::new())
            },
            warnings: Vec::new(),
        };
        for p in parts {
            for w in p.warnings {
                if !out.warnings.contains(&w) {
                    out.warnings.push(w);
                }
            }
            match (&mut out.data, p.data) {
                (Metadata::Strings(a), Metadata::Strings(b)) => a.extend(b),
                (Metadata::Series(a), Metadata::Series(b)) => a.extend(b),
                // Parts are parsed with the same `series` flag, so kinds always agree.
                _ => {}
            }
        }
        out
    }

    /// `{"status":"success","data":[...]}` and `warnings` when there are any.
    pub fn to_json(&self) -> String {
        let mut out = String::from(r#"{"status":"success","data":["#);
        match &self.data {
            Metadata::Strings(s) => {
                for (i, v) in s.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(&mut out, v);
                }
            }
            Metadata::Series(sets) => {
                for (i, set) in sets.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push('{');
                    for (j, (k, v)) in set.0.iter().enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        write_str(&mut out, k);
                        out.push(':');
                        write_str(&mut out, v);
                    }
                    out.push('}');
                }
            }
        }
        out.push(']');
        if !self.warnings.is_empty() {
            out.push_str(",\"warnings\":[");
            for (i, w) in self.warnings.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(&mut out, w);
            }
            out.push(']');
        }
        out.push('}');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_lists_join_as_sorted_sets() {
        let a = MetadataAnswer::parse(br#"{"status":"success","data":["b","a"]}"#, false).unwrap();
        let b = MetadataAnswer::parse(
            br#"{"status":"success","data":["c","a"],"warnings":["w"]}"#,
            false,
        )
        .unwrap();
        let m = MetadataAnswer::merge(vec![a, b], false);
        assert_eq!(
            m.to_json(),
            r#"{"status":"success","data":["a","b","c"],"warnings":["w"]}"#
        );
        let empty = MetadataAnswer::parse(br#"{"status":"success","data":null}"#, false).unwrap();
        assert_eq!(
            MetadataAnswer::merge(vec![empty], false).to_json(),
            r#"{"status":"success","data":[]}"#
        );
    }

    #[test]
    fn series_join_once_each_in_label_order() {
        let a = MetadataAnswer::parse(
            br#"{"status":"success","data":[{"__name__":"up","job":"b"},{"__name__":"up","job":"a"}]}"#,
            true,
        )
        .unwrap();
        let b = MetadataAnswer::parse(
            br#"{"status":"success","data":[{"__name__":"up","job":"a"},{"__name__":"up"}]}"#,
            true,
        )
        .unwrap();
        assert_eq!(
            MetadataAnswer::merge(vec![a, b], true).to_json(),
            r#"{"status":"success","data":[{"__name__":"up"},{"__name__":"up","job":"a"},{"__name__":"up","job":"b"}]}"#
        );
    }

    #[test]
    fn wrong_shapes_are_errors() {
        assert!(MetadataAnswer::parse(br#"{"status":"success","data":[1]}"#, false).is_err());
        assert!(MetadataAnswer::parse(br#"{"status":"success","data":["a"]}"#, true).is_err());
        assert!(MetadataAnswer::parse(br#"{"status":"error"}"#, false).is_err());
    }
}
