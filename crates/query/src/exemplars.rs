//! The Exemplars API fanned out: the exemplars of the series a query's selectors select, from
//! every endpoint offering `thanos.Exemplars` (sidecars, queriers below this one), for
//! `/api/v1/query_exemplars` and this querier's own Exemplars service.
//!
//! Routing, as Thanos': Prometheus has no external labels, so each endpoint gets the query's
//! selectors without their matchers on its external labels, and only the selectors those
//! labels can satisfy (none: the endpoint is not asked). Merging: series equal but for the
//! replica labels are one, the lowest replica's kept whole (see [`merge`]); series come out
//! sorted by labels.

use strata_model::{Labels, Matcher};
use strata_storepb::thanos::{
    ExemplarData, ExemplarsRequest, PartialResponseStrategy, exemplars_response,
};

use crate::error::QueryError;
use crate::fanout::{Fanout, endpoint_failed};
use crate::wire::{Pairs, labels_json, pairs, to_set};

/// What the endpoints answered, merged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExemplarsAnswer {
    /// One entry per series, sorted by series labels.
    pub series: Vec<ExemplarData>,
    /// Failed endpoints (under partial response) and the endpoints' own warnings.
    pub warnings: Vec<String>,
}

impl Fanout {
    /// Exemplars in `[start, end]` (ms) of the series `selectors` select (see the module
    /// documentation). `replica_labels`: removed from series labels before merging.
    pub async fn exemplars(
        &self,
        selectors: &[Vec<Matcher>],
        start: i64,
        end: i64,
        replica_labels: &[String],
        partial: bool,
    ) -> Result<ExemplarsAnswer, QueryError> {
        let mut calls = Vec::new();
        for e in self.endpoints.exemplar_endpoints() {
            let Some((min_time, max_time)) = e.info.exemplars else {
                continue;
            };
            if max_time < start || min_time > end {
                continue;
            }
            if let Some(query) = endpoint_query(selectors, &e.info.label_sets)? {
                calls.push((e.addr, (e.client, query)));
            }
        }
        let strategy = if partial {
            PartialResponseStrategy::Warn
        } else {
            PartialResponseStrategy::Abort
        } as i32;
        let answers = self
            .call_endpoints(calls, |(mut c, query)| {
                let req = ExemplarsRequest {
                    query,
                    start,
                    end,
                    partial_response_strategy: strategy,
                };
                async move { c.exemplars(req).await }
            })
            .await;
        let mut out = ExemplarsAnswer::default();
        for (addr, r) in answers {
            match r {
                Ok(answers) => {
                    for a in answers {
                        match a.result {
                            Some(exemplars_response::Result::Data(d)) => out.series.push(d),
                            Some(exemplars_response::Result::Warning(w)) => {
                                out.warnings.push(format!("endpoint {addr}: {w}"));
                            }
                            None => {}
                        }
                    }
                }
                Err(e) => endpoint_failed(&mut out.warnings, "Exemplars", addr, e, partial)?,
            }
        }
        out.series = merge(out.series, replica_labels);
        Ok(out)
    }
}

/// The query for an endpoint with external label sets `label_sets`: each selector that they
/// can satisfy, without its matchers on their labels, joined by ` + ` (Prometheus reads only
/// the selectors). `None` when no selector can match the endpoint.
fn endpoint_query(
    selectors: &[Vec<Matcher>],
    label_sets: &[Labels],
) -> Result<Option<String>, QueryError> {
    let mut parts = Vec::new();
    'selectors: for sel in selectors {
        let mut kept = Vec::new();
        for m in sel {
            let with_name: Vec<&str> = label_sets.iter().filter_map(|l| l.get(m.name())).collect();
            if with_name.is_empty() {
                kept.push(m.to_string());
            } else if !with_name.iter().any(|v| m.matches(v)) {
                continue 'selectors;
            }
        }
        if kept.is_empty() {
            return Err(QueryError::BadRequest(format!(
                "exemplar query selector {{{}}} has matchers on external labels only: add one on the series' own labels",
                sel.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        parts.push(format!("{{{}}}", kept.join(", ")));
    }
    Ok((!parts.is_empty()).then(|| parts.join(" + ")))
}

/// Removes the replica labels from every series, sorts by series labels and keeps one of
/// equal series: the one whose labels sorted first with the replica labels still on (the
/// lowest replica), whichever endpoint sent it, so that a querier stacked above another
/// keeps the same one.
pub fn merge(series: Vec<ExemplarData>, replica_labels: &[String]) -> Vec<ExemplarData> {
    // (labels without the replica labels, all labels, the series)
    let mut keyed: Vec<(Pairs, Pairs, ExemplarData)> = series
        .into_iter()
        .map(|s| {
            let (kept, all) = pairs(&s.series_labels, replica_labels);
            (kept, all, s)
        })
        .collect();
    keyed.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    keyed.dedup_by(|later, kept| later.0 == kept.0);
    keyed
        .into_iter()
        .map(|(kept, _, s)| ExemplarData {
            series_labels: to_set(kept),
            ..s
        })
        .collect()
}

/// `/api/v1/query_exemplars`' data, in Prometheus' JSON: `[{"seriesLabels", "exemplars":
/// [{"labels", "value", "timestamp"}]}]`.
pub fn exemplars_json(series: &[ExemplarData]) -> String {
    let out: Vec<serde_json::Value> = series
        .iter()
        .map(|s| {
            let exemplars: Vec<serde_json::Value> = s
                .exemplars
                .iter()
                .map(|e| {
                    let mut value = String::new();
                    strata_promql::format::format_sample_value(e.value, &mut value);
                    // Seconds, the shortest decimal that reads back as the same float.
                    serde_json::json!({
                        "labels": labels_json(e.labels.as_ref()),
                        "value": value,
                        "timestamp": e.ts as f64 / 1000.0,
                    })
                })
                .collect();
            serde_json::json!({
                "seriesLabels": labels_json(s.series_labels.as_ref()),
                "exemplars": exemplars,
            })
        })
        .collect();
    serde_json::Value::Array(out).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_model::Label;
    use strata_storepb::thanos::LabelSet;
    use strata_storepb::thanos::{Exemplar, Label as WireLabel};

    fn set(pairs: &[(&str, &str)]) -> Option<LabelSet> {
        Some(LabelSet {
            labels: pairs
                .iter()
                .map(|(n, v)| WireLabel {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
        })
    }

    #[test]
    fn endpoint_queries_drop_satisfied_external_matchers_and_skip_the_rest() {
        let sels = vec![
            vec![
                Matcher::equal("__name__", "demo"),
                Matcher::equal("cluster", "eu1"),
            ],
            vec![
                Matcher::equal("__name__", "other"),
                Matcher::equal("cluster", "us1"),
            ],
        ];
        let eu = vec![Labels::new([
            Label::new("cluster", "eu1"),
            Label::new("replica", "a"),
        ])];
        assert_eq!(
            endpoint_query(&sels, &eu).unwrap().as_deref(),
            Some(r#"{__name__="demo"}"#)
        );
        let none = vec![Labels::new([Label::new("cluster", "ap1")])];
        assert_eq!(endpoint_query(&sels, &none).unwrap(), None);
        // No external labels: everything is passed on.
        assert_eq!(
            endpoint_query(&sels[..1], &[]).unwrap().as_deref(),
            Some(r#"{__name__="demo", cluster="eu1"}"#)
        );
        let only_external = vec![vec![Matcher::equal("cluster", "eu1")]];
        assert!(matches!(
            endpoint_query(&only_external, &eu),
            Err(QueryError::BadRequest(_))
        ));
    }

    #[test]
    fn replicas_series_are_one_and_the_lowest_replica_is_kept() {
        let data = |replica: &str, ts: i64| ExemplarData {
            series_labels: set(&[("__name__", "demo"), ("replica", replica)]),
            exemplars: vec![Exemplar {
                labels: set(&[("trace_id", "t")]),
                value: 1.5,
                ts,
            }],
        };
        let other = ExemplarData {
            series_labels: set(&[("__name__", "a_first")]),
            exemplars: Vec::new(),
        };
        let out = merge(
            vec![data("b", 2_000), data("a", 1_000), other],
            &["replica".to_string()],
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].series_labels, set(&[("__name__", "a_first")]));
        assert_eq!(out[1].exemplars[0].ts, 1_000);
        let v: serde_json::Value = serde_json::from_str(&exemplars_json(&out)).unwrap();
        assert_eq!(
            v[1]["seriesLabels"],
            serde_json::json!({"__name__": "demo"})
        );
        assert_eq!(v[1]["exemplars"][0]["value"], "1.5");
        assert_eq!(v[1]["exemplars"][0]["timestamp"].as_f64(), Some(1.0));
        assert_eq!(v[1]["exemplars"][0]["labels"]["trace_id"], "t");
    }
}
