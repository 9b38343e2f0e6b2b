//! The Rules API fanned out: the recording and alerting rules of every endpoint offering
//! `thanos.Rules` (sidecars over Prometheus, queriers below this one), merged and
//! deduplicated as Thanos' querier does, for `/api/v1/rules`, `/api/v1/alerts` and this
//! querier's own Rules service.
//!
//! Merging: groups with the same file and name (HA replicas load the same rule files) become
//! one, holding every endpoint's rules. Deduplication: within a group, rules equal in type,
//! name, labels without the replica labels, query and (alerting rules) `for` duration are one
//! rule; the one kept is the most critical alerting rule (firing, then pending), then the most
//! recently evaluated. Rules come out in that order: alerting rules first, then by name,
//! labels and query, as Thanos sorts them. Endpoints are merged in address order, so the
//! answer does not depend on which answered first.

use std::cmp::Ordering;

use strata_model::Matcher;
use strata_storepb::thanos::{
    Alert, AlertState, Label, LabelSet, PartialResponseStrategy, RuleGroup, RulesRequest, rule,
    rules_request, rules_response,
};

use crate::error::QueryError;
use crate::fanout::{Fanout, endpoint_failed};
use crate::wire::{labels_json, time_json};

/// Which rules a request asks for, beyond the type: each list, when not empty, keeps the
/// rules it names; `matchers` keeps the rules whose labels match one of the sets. A group
/// that none of its rules survives is dropped (under the type alone it is kept, empty).
#[derive(Debug, Clone, Default)]
pub struct RuleFilters {
    pub rule_names: Vec<String>,
    pub rule_groups: Vec<String>,
    pub files: Vec<String>,
    /// Parsed `match[]` selectors, and the same as written (passed on to the endpoints).
    pub matchers: Vec<Vec<Matcher>>,
    pub matcher_strings: Vec<String>,
}

impl RuleFilters {
    fn is_empty(&self) -> bool {
        self.rule_names.is_empty()
            && self.rule_groups.is_empty()
            && self.files.is_empty()
            && self.matchers.is_empty()
    }

    fn keeps_group(&self, g: &RuleGroup) -> bool {
        (self.rule_groups.is_empty() || self.rule_groups.contains(&g.name))
            && (self.files.is_empty() || self.files.contains(&g.file))
    }

    fn keeps_rule(&self, r: &rule::Result) -> bool {
        let (name, labels) = name_and_labels(r);
        (self.rule_names.is_empty() || self.rule_names.iter().any(|n| n == name))
            && (self.matchers.is_empty()
                || self.matchers.iter().any(|set| {
                    set.iter().all(|m| {
                        let v = labels
                            .iter()
                            .find(|l| l.name == m.name())
                            .map_or("", |l| l.value.as_str());
                        m.matches(v)
                    })
                }))
    }
}

/// What the endpoints answered, merged, deduplicated and filtered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RulesAnswer {
    /// Sorted by file, then name.
    pub groups: Vec<RuleGroup>,
    /// Failed endpoints (under partial response) and the endpoints' own warnings.
    pub warnings: Vec<String>,
}

impl Fanout {
    /// Rules from every endpoint offering the Rules API (see the module documentation).
    /// `replica_labels`: the labels that tell HA replicas' rules apart (none: only
    /// identical rules are one). `partial`: a failing endpoint is a warning, not the error.
    pub async fn rules(
        &self,
        kind: rules_request::Type,
        filters: &RuleFilters,
        replica_labels: &[String],
        partial: bool,
    ) -> Result<RulesAnswer, QueryError> {
        let endpoints = self.endpoints.rules_endpoints();
        let req = RulesRequest {
            r#type: kind as i32,
            partial_response_strategy: if partial {
                PartialResponseStrategy::Warn
            } else {
                PartialResponseStrategy::Abort
            } as i32,
            matcher_string: filters.matcher_strings.clone(),
            rule_name: filters.rule_names.clone(),
            rule_group: filters.rule_groups.clone(),
            file: filters.files.clone(),
        };
        let endpoints = endpoints.into_iter().map(|e| (e.addr, e.client)).collect();
        let answers = self
            .call_endpoints(endpoints, |mut c| {
                let req = req.clone();
                async move { c.rules(req).await }
            })
            .await;
        let mut groups = Vec::new();
        let mut warnings = Vec::new();
        for (addr, r) in answers {
            match r {
                Ok(answers) => {
                    for a in answers {
                        match a.result {
                            Some(rules_response::Result::Group(g)) => groups.push(g),
                            Some(rules_response::Result::Warning(w)) => {
                                warnings.push(format!("endpoint {addr}: {w}"));
                            }
                            None => {}
                        }
                    }
                }
                Err(e) => endpoint_failed(&mut warnings, "Rules", addr, e, partial)?,
            }
        }
        Ok(RulesAnswer {
            groups: merge(groups, kind, filters, replica_labels),
            warnings,
        })
    }
}

/// The Rules API type and filters an HTTP rules request asks for.
pub fn request_filters(query: strata_api::RulesQuery) -> (rules_request::Type, RuleFilters) {
    let kind = match query.kind {
        None => rules_request::Type::All,
        Some(strata_api::RuleKind::Alert) => rules_request::Type::Alert,
        Some(strata_api::RuleKind::Record) => rules_request::Type::Record,
    };
    let filters = RuleFilters {
        rule_names: query.rule_names,
        rule_groups: query.rule_groups,
        files: query.files,
        matchers: query.matchers,
        matcher_strings: query.matcher_strings,
    };
    (kind, filters)
}

/// `/api/v1/rules` or `/api/v1/alerts` over groups held locally (the ruler's own), filtered
/// and ordered as the querier answers over its endpoints' groups.
pub fn local_answer(
    groups: Vec<RuleGroup>,
    query: strata_api::RulesQuery,
    view: strata_api::RulesView,
) -> strata_api::EncodedAnswer {
    let (kind, filters) = request_filters(query);
    let groups = merge(groups, kind, &filters, &[]);
    strata_api::EncodedAnswer {
        data: match view {
            strata_api::RulesView::Rules => rules_json(&groups),
            strata_api::RulesView::Alerts => alerts_json(&groups),
        },
        warnings: Vec::new(),
    }
}

/// A Rules API request over groups held locally: its type and its name, group and file
/// filters (its `match[]` selectors are left to the caller, which applies them again in any
/// case, as Thanos' querier does).
pub fn filter_for_request(groups: Vec<RuleGroup>, req: &RulesRequest) -> Vec<RuleGroup> {
    let kind = rules_request::Type::try_from(req.r#type).unwrap_or(rules_request::Type::All);
    let filters = RuleFilters {
        rule_names: req.rule_name.clone(),
        rule_groups: req.rule_group.clone(),
        files: req.file.clone(),
        ..RuleFilters::default()
    };
    merge(groups, kind, &filters, &[])
}

/// Merges groups of equal file and name, deduplicates each group's rules and applies the
/// type and `filters` (for endpoints that do not).
pub fn merge(
    mut groups: Vec<RuleGroup>,
    kind: rules_request::Type,
    filters: &RuleFilters,
    replica_labels: &[String],
) -> Vec<RuleGroup> {
    // Stable: equal groups keep the endpoints' order, and so do their rules.
    groups.sort_by(|a, b| (&a.file, &a.name).cmp(&(&b.file, &b.name)));
    let mut merged: Vec<RuleGroup> = Vec::with_capacity(groups.len());
    for g in groups {
        match merged.last_mut() {
            Some(last) if last.file == g.file && last.name == g.name => {
                last.rules.extend(g.rules);
            }
            _ => merged.push(g),
        }
    }
    merged.retain(|g| filters.keeps_group(g));
    for g in &mut merged {
        g.rules.retain(|r| {
            r.result.as_ref().is_some_and(|r| {
                let type_ok = matches!(
                    (kind, r),
                    (rules_request::Type::Alert, rule::Result::Alert(_))
                        | (rules_request::Type::Record, rule::Result::Recording(_))
                        | (rules_request::Type::All, _)
                );
                type_ok && filters.keeps_rule(r)
            })
        });
        dedup_rules(&mut g.rules, replica_labels);
    }
    if !filters.is_empty() {
        merged.retain(|g| !g.rules.is_empty());
    }
    merged
}

/// Deduplicates one group's rules (see the module documentation).
fn dedup_rules(rules: &mut Vec<strata_storepb::thanos::Rule>, replica_labels: &[String]) {
    let mut results: Vec<rule::Result> = std::mem::take(rules)
        .into_iter()
        .filter_map(|r| r.result)
        .collect();
    for r in &mut results {
        let labels = labels_mut(r);
        labels.retain(|l| !replica_labels.contains(&l.name));
        labels.sort_by(|a, b| a.name.cmp(&b.name));
    }
    // The one to keep sorts first among equals.
    results.sort_by(|a, b| identity(a, b).then_with(|| preference(a, b)));
    results.dedup_by(|later, kept| identity(later, kept) == Ordering::Equal);
    *rules = results
        .into_iter()
        .map(|r| strata_storepb::thanos::Rule { result: Some(r) })
        .collect();
}

/// The order of rules that are not the same rule: alerting rules first, then by name,
/// labels, query and `for` duration; `Equal` for the same rule.
fn identity(a: &rule::Result, b: &rule::Result) -> Ordering {
    use rule::Result::{Alert as A, Recording as R};
    let rank = |r: &rule::Result| matches!(r, R(_)) as u8;
    rank(a)
        .cmp(&rank(b))
        .then_with(|| name_and_labels(a).0.cmp(name_and_labels(b).0))
        .then_with(|| {
            let (la, lb) = (name_and_labels(a).1, name_and_labels(b).1);
            la.iter()
                .map(|l| (&l.name, &l.value))
                .cmp(lb.iter().map(|l| (&l.name, &l.value)))
        })
        .then_with(|| query(a).cmp(query(b)))
        .then_with(|| match (a, b) {
            (A(x), A(y)) => x.duration_seconds.total_cmp(&y.duration_seconds),
            _ => Ordering::Equal,
        })
}

/// Among copies of one rule: the most critical alerting rule first, then the most recently
/// evaluated.
fn preference(a: &rule::Result, b: &rule::Result) -> Ordering {
    use rule::Result::{Alert as A, Recording as R};
    let evaluated = |r: &rule::Result| {
        let t = match r {
            A(x) => x.last_evaluation,
            R(x) => x.last_evaluation,
        };
        t.map_or((i64::MIN, 0), |t| (t.seconds, t.nanos))
    };
    let state = |r: &rule::Result| match r {
        A(Alert { state, .. }) => match AlertState::try_from(*state) {
            Ok(AlertState::Firing) => 0,
            Ok(AlertState::Pending) => 1,
            _ => 2,
        },
        R(_) => 2,
    };
    state(a)
        .cmp(&state(b))
        .then_with(|| evaluated(b).cmp(&evaluated(a)))
}

fn name_and_labels(r: &rule::Result) -> (&str, &[Label]) {
    let (name, labels) = match r {
        rule::Result::Alert(x) => (&x.name, &x.labels),
        rule::Result::Recording(x) => (&x.name, &x.labels),
    };
    (
        name.as_str(),
        labels.as_ref().map_or(&[][..], |l| &l.labels),
    )
}

fn labels_mut(r: &mut rule::Result) -> &mut Vec<Label> {
    let labels = match r {
        rule::Result::Alert(x) => &mut x.labels,
        rule::Result::Recording(x) => &mut x.labels,
    };
    &mut labels.get_or_insert_with(LabelSet::default).labels
}

fn query(r: &rule::Result) -> &str {
    match r {
        rule::Result::Alert(x) => &x.query,
        rule::Result::Recording(x) => &x.query,
    }
}

/// `/api/v1/rules`' data, in Thanos' JSON: `{"groups":[…]}`.
pub fn rules_json(groups: &[RuleGroup]) -> String {
    let groups: Vec<serde_json::Value> = groups.iter().map(group_json).collect();
    serde_json::json!({ "groups": groups }).to_string()
}

/// `/api/v1/alerts`' data: every alerting rule's alerts, `{"alerts":[…]}`.
pub fn alerts_json(groups: &[RuleGroup]) -> String {
    let alerts: Vec<serde_json::Value> = groups
        .iter()
        .flat_map(|g| &g.rules)
        .filter_map(|r| match &r.result {
            Some(rule::Result::Alert(a)) => Some(a.alerts.iter().map(alert_instance_json)),
            _ => None,
        })
        .flatten()
        .collect();
    serde_json::json!({ "alerts": alerts }).to_string()
}

fn group_json(g: &RuleGroup) -> serde_json::Value {
    let rules: Vec<serde_json::Value> = g
        .rules
        .iter()
        .filter_map(|r| r.result.as_ref().map(rule_json))
        .collect();
    serde_json::json!({
        "name": g.name,
        "file": g.file,
        "rules": rules,
        "interval": g.interval,
        "evaluationTime": g.evaluation_duration_seconds,
        "lastEvaluation": time_json(g.last_evaluation),
        "limit": g.limit,
        "partialResponseStrategy": strategy_json(g.partial_response_strategy),
    })
}

fn rule_json(r: &rule::Result) -> serde_json::Value {
    match r {
        rule::Result::Recording(x) => {
            let mut v = serde_json::json!({
                "name": x.name,
                "query": x.query,
                "labels": labels_json(x.labels.as_ref()),
                "health": x.health,
                "evaluationTime": x.evaluation_duration_seconds,
                "lastEvaluation": time_json(x.last_evaluation),
                "type": "recording",
            });
            if !x.last_error.is_empty() {
                v["lastError"] = x.last_error.clone().into();
            }
            v
        }
        rule::Result::Alert(x) => {
            let alerts: Vec<serde_json::Value> = x.alerts.iter().map(alert_instance_json).collect();
            let mut v = serde_json::json!({
                "state": state_json(x.state),
                "name": x.name,
                "query": x.query,
                "duration": x.duration_seconds,
                "keepFiringFor": x.keep_firing_for_seconds,
                "labels": labels_json(x.labels.as_ref()),
                "annotations": labels_json(x.annotations.as_ref()),
                "alerts": alerts,
                "health": x.health,
                "evaluationTime": x.evaluation_duration_seconds,
                "lastEvaluation": time_json(x.last_evaluation),
                "type": "alerting",
            });
            if !x.last_error.is_empty() {
                v["lastError"] = x.last_error.clone().into();
            }
            v
        }
    }
}

fn alert_instance_json(a: &strata_storepb::thanos::AlertInstance) -> serde_json::Value {
    let mut v = serde_json::json!({
        "labels": labels_json(a.labels.as_ref()),
        "annotations": labels_json(a.annotations.as_ref()),
        "state": state_json(a.state),
        "value": a.value,
        "partialResponseStrategy": strategy_json(a.partial_response_strategy),
    });
    if a.active_at.is_some() {
        v["activeAt"] = time_json(a.active_at).into();
    }
    v
}

fn state_json(s: i32) -> &'static str {
    match AlertState::try_from(s) {
        Ok(AlertState::Firing) => "firing",
        Ok(AlertState::Pending) => "pending",
        _ => "inactive",
    }
}

fn strategy_json(s: i32) -> &'static str {
    match PartialResponseStrategy::try_from(s) {
        Ok(PartialResponseStrategy::Abort) => "ABORT",
        _ => "WARN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_storepb::thanos::{AlertInstance, RecordingRule, Rule};

    fn ls(pairs: &[(&str, &str)]) -> Option<LabelSet> {
        Some(LabelSet {
            labels: pairs
                .iter()
                .map(|(n, v)| Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
        })
    }

    fn ts(seconds: i64) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp { seconds, nanos: 0 })
    }

    fn alert(replica: &str, state: AlertState, evaluated: i64) -> Rule {
        Rule {
            result: Some(rule::Result::Alert(Alert {
                state: state as i32,
                name: "Down".into(),
                query: "up == 0".into(),
                duration_seconds: 60.0,
                labels: ls(&[("replica", replica), ("severity", "page")]),
                alerts: vec![AlertInstance {
                    labels: ls(&[("alertname", "Down"), ("replica", replica)]),
                    state: state as i32,
                    ..Default::default()
                }],
                last_evaluation: ts(evaluated),
                ..Default::default()
            })),
        }
    }

    fn recording(replica: &str, evaluated: i64) -> Rule {
        Rule {
            result: Some(rule::Result::Recording(RecordingRule {
                name: "job:up:sum".into(),
                query: "sum by (job) (up)".into(),
                labels: ls(&[("replica", replica)]),
                last_evaluation: ts(evaluated),
                ..Default::default()
            })),
        }
    }

    fn group(name: &str, rules: Vec<Rule>) -> RuleGroup {
        RuleGroup {
            name: name.into(),
            file: "/etc/rules.yml".into(),
            rules,
            ..Default::default()
        }
    }

    fn replica_of(r: &Rule) -> Option<String> {
        match r.result.as_ref().unwrap() {
            rule::Result::Alert(a) => a.alerts[0]
                .labels
                .as_ref()
                .unwrap()
                .labels
                .iter()
                .find(|l| l.name == "replica")
                .map(|l| l.value.clone()),
            rule::Result::Recording(_) => None,
        }
    }

    #[test]
    fn replicas_groups_merge_and_rules_deduplicate_by_state_then_evaluation() {
        let a = group(
            "g",
            vec![recording("a", 100), alert("a", AlertState::Pending, 200)],
        );
        let b = group(
            "g",
            vec![alert("b", AlertState::Firing, 100), recording("b", 150)],
        );
        let replicas = vec!["replica".to_string()];
        let out = merge(
            vec![a.clone(), b.clone()],
            rules_request::Type::All,
            &RuleFilters::default(),
            &replicas,
        );
        assert_eq!(out.len(), 1);
        let rules = &out[0].rules;
        assert_eq!(rules.len(), 2, "{rules:?}");
        // Alerting first; the firing copy wins over the pending one evaluated later.
        assert_eq!(replica_of(&rules[0]).as_deref(), Some("b"));
        let Some(rule::Result::Alert(x)) = &rules[0].result else {
            panic!()
        };
        assert_eq!(
            x.labels,
            ls(&[("severity", "page")]),
            "replica label removed"
        );
        // Recording rules: the most recently evaluated.
        let Some(rule::Result::Recording(x)) = &rules[1].result else {
            panic!()
        };
        assert_eq!(x.last_evaluation, ts(150));

        // Without replica labels the copies differ and all stay.
        let out = merge(
            vec![a, b],
            rules_request::Type::All,
            &RuleFilters::default(),
            &[],
        );
        assert_eq!(out[0].rules.len(), 4);
    }

    #[test]
    fn filters_keep_named_rules_and_drop_groups_left_empty() {
        let groups = vec![
            group(
                "g",
                vec![recording("a", 1), alert("a", AlertState::Inactive, 1)],
            ),
            group("h", vec![recording("a", 1)]),
        ];
        let by_name = RuleFilters {
            rule_names: vec!["Down".into()],
            ..Default::default()
        };
        let out = merge(groups.clone(), rules_request::Type::All, &by_name, &[]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].name, "g");
        assert_eq!(out[0].rules.len(), 1);

        let by_labels = RuleFilters {
            matchers: vec![vec![Matcher::equal("severity", "page")]],
            ..Default::default()
        };
        let out = merge(groups.clone(), rules_request::Type::All, &by_labels, &[]);
        assert_eq!((out.len(), out[0].rules.len()), (1, 1));

        // The type alone keeps groups, empty.
        let out = merge(
            groups,
            rules_request::Type::Alert,
            &RuleFilters::default(),
            &[],
        );
        assert_eq!(out.len(), 2);
        assert!(out[1].rules.is_empty());
    }

    #[test]
    fn json_has_thanos_field_names_and_go_times() {
        let mut g = group("g", vec![alert("a", AlertState::Firing, 1)]);
        g.last_evaluation = Some(prost_types::Timestamp {
            seconds: 1_704_164_645,
            nanos: 120_000_000,
        });
        let v: serde_json::Value = serde_json::from_str(&rules_json(&[g.clone()])).unwrap();
        let grp = &v["groups"][0];
        assert_eq!(grp["lastEvaluation"], "2024-01-02T03:04:05.12Z");
        assert_eq!(grp["partialResponseStrategy"], "WARN");
        let r = &grp["rules"][0];
        assert_eq!(r["type"], "alerting");
        assert_eq!(r["state"], "firing");
        assert_eq!(r["duration"], 60.0);
        assert_eq!(r["labels"]["severity"], "page");
        assert!(r["alerts"][0].get("activeAt").is_none());
        let v: serde_json::Value = serde_json::from_str(&alerts_json(&[g])).unwrap();
        assert_eq!(v["alerts"][0]["labels"]["alertname"], "Down");
        assert_eq!(v["alerts"][0]["state"], "firing");
        assert_eq!(time_json(None), "0001-01-01T00:00:00Z");
    }
}
