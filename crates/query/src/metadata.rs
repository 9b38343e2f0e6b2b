//! The Metadata API fanned out: the metric metadata (type, help, unit) that every endpoint
//! offering `thanos.Metadata` (sidecars, queriers below this one) holds, merged for
//! `/api/v1/metadata` and for this querier's own Metadata service.
//!
//! Endpoints are asked concurrently, each within `--store.response-timeout` (or the query
//! timeout), and merged in address order, so the answer does not depend on which endpoint
//! answered first: a metric's entries are those of every endpoint, each distinct entry once,
//! in the order of the first endpoint that has it. HA replicas scrape the same targets and so
//! send the same entries, which is what makes the merge a deduplication.

use std::collections::BTreeMap;

use strata_storepb::thanos::{
    Meta, MetricMetadata, MetricMetadataEntry, MetricMetadataRequest, PartialResponseStrategy,
    metric_metadata_response,
};

use crate::error::QueryError;
use crate::fanout::{Fanout, endpoint_failed};

/// What the endpoints answered, merged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricMetadataAnswer {
    /// Metric name to its distinct entries.
    pub metrics: BTreeMap<String, Vec<Meta>>,
    /// Failed endpoints (under partial response) and the endpoints' own warnings, each
    /// naming its endpoint.
    pub warnings: Vec<String>,
}

impl MetricMetadataAnswer {
    /// Adds one endpoint's metadata: new metrics with their entries, and entries not yet
    /// known to known metrics.
    fn add(&mut self, md: MetricMetadata) {
        // The map arrives in no particular order: sorted, the merge is the same every time.
        let mut names: Vec<(String, MetricMetadataEntry)> = md.metadata.into_iter().collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, entry) in names {
            let metas = self.metrics.entry(name).or_default();
            for m in entry.metas {
                if !metas.contains(&m) {
                    metas.push(m);
                }
            }
        }
    }

    /// Keeps the first `limit` metrics by name; a negative limit keeps all (the API's
    /// meaning, as Prometheus' and Thanos').
    fn truncate(&mut self, limit: i32) {
        let Ok(limit) = usize::try_from(limit) else {
            return;
        };
        if self.metrics.len() > limit {
            let keep: Vec<String> = self.metrics.keys().take(limit).cloned().collect();
            self.metrics.retain(|k, _| keep.binary_search(k).is_ok());
        }
    }
}

impl Fanout {
    /// Metric metadata from every endpoint offering the Metadata API, merged (see the module
    /// documentation): of `metric` only when it is not empty, of at most `limit` metrics when
    /// `limit` is not negative. `partial`: a failing endpoint becomes a warning instead of the
    /// error. No endpoint with metadata: an empty answer, as Thanos gives.
    pub async fn metric_metadata(
        &self,
        metric: &str,
        limit: i32,
        partial: bool,
    ) -> Result<MetricMetadataAnswer, QueryError> {
        let endpoints = self.endpoints.metadata_endpoints();
        let req = MetricMetadataRequest {
            metric: metric.to_string(),
            limit,
            partial_response_strategy: if partial {
                PartialResponseStrategy::Warn
            } else {
                PartialResponseStrategy::Abort
            } as i32,
        };
        let endpoints = endpoints.into_iter().map(|e| (e.addr, e.client)).collect();
        let answers = self
            .call_endpoints(endpoints, |mut c| {
                let req = req.clone();
                async move { c.metric_metadata(req).await }
            })
            .await;
        let mut out = MetricMetadataAnswer::default();
        for (addr, r) in answers {
            match r {
                Ok(answers) => {
                    for a in answers {
                        match a.result {
                            Some(metric_metadata_response::Result::Metadata(md)) => out.add(md),
                            Some(metric_metadata_response::Result::Warning(w)) => {
                                out.warnings.push(format!("endpoint {addr}: {w}"));
                            }
                            None => {}
                        }
                    }
                }
                Err(e) => endpoint_failed(&mut out.warnings, "MetricMetadata", addr, e, partial)?,
            }
        }
        out.truncate(limit);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(kind: &str, help: &str) -> Meta {
        Meta {
            r#type: kind.into(),
            help: help.into(),
            unit: String::new(),
        }
    }

    fn md(entries: Vec<(&str, Vec<Meta>)>) -> MetricMetadata {
        MetricMetadata {
            metadata: entries
                .into_iter()
                .map(|(n, metas)| (n.to_string(), MetricMetadataEntry { metas }))
                .collect(),
        }
    }

    #[test]
    fn replicas_entries_are_kept_once_and_new_ones_appended() {
        let up = meta("gauge", "Up.");
        let reqs = meta("counter", "Requests.");
        let reqs_other_help = meta("counter", "Requests served.");
        let mut a = MetricMetadataAnswer::default();
        a.add(md(vec![
            ("up", vec![up.clone()]),
            ("reqs", vec![reqs.clone()]),
        ]));
        a.add(md(vec![
            ("up", vec![up.clone()]),
            ("reqs", vec![reqs_other_help.clone(), reqs.clone()]),
        ]));
        assert_eq!(a.metrics["up"], vec![up]);
        assert_eq!(a.metrics["reqs"], vec![reqs, reqs_other_help]);
    }

    #[test]
    fn limit_keeps_the_first_metrics_by_name_and_negative_keeps_all() {
        let m = meta("gauge", "");
        let mut a = MetricMetadataAnswer::default();
        a.add(md(vec![
            ("c", vec![m.clone()]),
            ("a", vec![m.clone()]),
            ("b", vec![m]),
        ]));
        let mut all = a.clone();
        all.truncate(-1);
        assert_eq!(all.metrics.len(), 3);
        let mut none = a.clone();
        none.truncate(0);
        assert!(none.metrics.is_empty());
        a.truncate(2);
        assert_eq!(a.metrics.keys().collect::<Vec<_>>(), ["a", "b"]);
    }
}
