//! Prometheus' `/api/v1/rules` answer turned into the Rules API's messages, and the external
//! labels the sidecar adds to every rule (Prometheus does not, and a querier deduplicating HA
//! replicas' rules needs them, as Thanos' sidecar provides).

use std::collections::BTreeMap;

use serde::Deserialize;
use strata_storepb::thanos::{
    Alert, AlertInstance, AlertState, Label, LabelSet, RecordingRule, Rule, RuleGroup, rule,
};

/// `data` of `/api/v1/rules`.
#[derive(Debug, Deserialize)]
pub(crate) struct RulesData {
    #[serde(default)]
    groups: Vec<GroupJson>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupJson {
    name: String,
    #[serde(default)]
    file: String,
    #[serde(default)]
    rules: Vec<RuleJson>,
    #[serde(default)]
    interval: f64,
    #[serde(default)]
    limit: i64,
    #[serde(default)]
    evaluation_time: f64,
    #[serde(default)]
    last_evaluation: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuleJson {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    #[serde(default)]
    query: String,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    health: String,
    #[serde(default)]
    last_error: String,
    #[serde(default)]
    evaluation_time: f64,
    #[serde(default)]
    last_evaluation: Option<String>,
    // Alerting rules only.
    #[serde(default)]
    state: String,
    #[serde(default)]
    duration: f64,
    #[serde(default)]
    keep_firing_for: f64,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    alerts: Vec<AlertJson>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AlertJson {
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    state: String,
    #[serde(default)]
    active_at: Option<String>,
    #[serde(default)]
    value: String,
}

impl RulesData {
    /// The groups as the Rules API carries them, or what in the answer cannot be read.
    pub(crate) fn into_groups(self) -> Result<Vec<RuleGroup>, String> {
        self.groups.into_iter().map(GroupJson::convert).collect()
    }
}

impl GroupJson {
    fn convert(self) -> Result<RuleGroup, String> {
        let rules = self
            .rules
            .into_iter()
            .map(|r| {
                let name = r.name.clone();
                r.convert()
                    .map_err(|e| format!("group {:?}, rule {name:?}: {e}", self.name))
            })
            .collect::<Result<_, _>>()?;
        Ok(RuleGroup {
            last_evaluation: timestamp(self.last_evaluation.as_deref())
                .map_err(|e| format!("group {:?}: {e}", self.name))?,
            name: self.name,
            file: self.file,
            rules,
            interval: self.interval,
            evaluation_duration_seconds: self.evaluation_time,
            limit: self.limit,
            partial_response_strategy: 0,
        })
    }
}

impl RuleJson {
    fn convert(self) -> Result<Rule, String> {
        let last_evaluation = timestamp(self.last_evaluation.as_deref())?;
        let result = match self.kind.as_str() {
            "recording" => rule::Result::Recording(RecordingRule {
                name: self.name,
                query: self.query,
                labels: Some(label_set(self.labels)),
                health: self.health,
                last_error: self.last_error,
                evaluation_duration_seconds: self.evaluation_time,
                last_evaluation,
            }),
            "alerting" => rule::Result::Alert(Alert {
                state: alert_state(&self.state)? as i32,
                name: self.name,
                query: self.query,
                duration_seconds: self.duration,
                labels: Some(label_set(self.labels)),
                annotations: Some(label_set(self.annotations)),
                alerts: self
                    .alerts
                    .into_iter()
                    .map(|a| {
                        Ok(AlertInstance {
                            labels: Some(label_set(a.labels)),
                            annotations: Some(label_set(a.annotations)),
                            state: alert_state(&a.state)? as i32,
                            active_at: timestamp(a.active_at.as_deref())?,
                            value: a.value,
                            partial_response_strategy: 0,
                        })
                    })
                    .collect::<Result<_, String>>()?,
                health: self.health,
                last_error: self.last_error,
                evaluation_duration_seconds: self.evaluation_time,
                last_evaluation,
                keep_firing_for_seconds: self.keep_firing_for,
            }),
            other => return Err(format!("unknown rule type {other:?}")),
        };
        Ok(Rule {
            result: Some(result),
        })
    }
}

pub(crate) fn label_set(m: Option<BTreeMap<String, String>>) -> LabelSet {
    LabelSet {
        labels: m
            .unwrap_or_default()
            .into_iter()
            .map(|(name, value)| Label { name, value })
            .collect(),
    }
}

fn alert_state(s: &str) -> Result<AlertState, String> {
    match s {
        "inactive" | "" => Ok(AlertState::Inactive),
        "pending" => Ok(AlertState::Pending),
        "firing" => Ok(AlertState::Firing),
        other => Err(format!("unknown alert state {other:?}")),
    }
}

/// A time as Prometheus writes it (Go's RFC 3339 with up to nanoseconds), to the
/// nanosecond.
pub(crate) fn timestamp(s: Option<&str>) -> Result<Option<prost_types::Timestamp>, String> {
    let Some(s) = s.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    // The fraction is read here to the nanosecond; the rest by the millisecond parser.
    let (whole, nanos) = match s.get(19..).and_then(|rest| rest.strip_prefix('.')) {
        Some(rest) => {
            let n = rest.bytes().take_while(u8::is_ascii_digit).count();
            let digits = &rest[..n];
            let mut nanos: i32 = 0;
            for (i, c) in digits.bytes().take(9).enumerate() {
                nanos += i32::from(c - b'0') * 10i32.pow(8 - i as u32);
            }
            (format!("{}{}", &s[..19], &rest[n..]), nanos)
        }
        None => (s.to_string(), 0),
    };
    let ms = strata_model::timestamp::parse_rfc3339(&whole).map_err(|e| e.to_string())?;
    Ok(Some(prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_rules_answer_converts() {
        let body = r#"{"groups":[{"name":"g","file":"/etc/rules.yml","interval":15,"limit":0,
            "evaluationTime":0.0012,"lastEvaluation":"2024-01-02T03:04:05.123456789Z","rules":[
            {"state":"firing","name":"Down","query":"up == 0","duration":60,"keepFiringFor":0,
             "labels":{"severity":"page"},"annotations":{"summary":"down"},
             "alerts":[{"labels":{"alertname":"Down","job":"x"},"annotations":{"summary":"down"},
               "state":"firing","activeAt":"2024-01-02T03:00:00Z","value":"0e+00"}],
             "health":"ok","evaluationTime":0.0005,"lastEvaluation":"2024-01-02T03:04:05.1Z",
             "type":"alerting"},
            {"name":"job:up:sum","query":"sum by (job) (up)","health":"err",
             "lastError":"boom","evaluationTime":0.0001,
             "lastEvaluation":"0001-01-01T00:00:00Z","type":"recording"}]}]}"#;
        let data: RulesData = serde_json::from_str(body).unwrap();
        let mut groups = data.into_groups().unwrap();
        let g = &groups[0];
        assert_eq!(
            (g.name.as_str(), g.file.as_str(), g.interval),
            ("g", "/etc/rules.yml", 15.0)
        );
        let t = g.last_evaluation.unwrap();
        assert_eq!((t.seconds, t.nanos), (1_704_164_645, 123_456_789));
        let Some(rule::Result::Alert(a)) = &g.rules[0].result else {
            panic!("{:?}", g.rules[0]);
        };
        assert_eq!(a.state, AlertState::Firing as i32);
        assert_eq!(a.duration_seconds, 60.0);
        assert_eq!(a.alerts.len(), 1);
        assert_eq!(a.alerts[0].active_at.unwrap().seconds, 1_704_164_400);
        assert_eq!(a.last_evaluation.unwrap().nanos, 100_000_000);
        let Some(rule::Result::Recording(r)) = &g.rules[1].result else {
            panic!("{:?}", g.rules[1]);
        };
        assert_eq!((r.health.as_str(), r.last_error.as_str()), ("err", "boom"));

        let ext = strata_model::Labels::new([
            strata_model::Label::new("replica", "a"),
            strata_model::Label::new("severity", "external"),
        ]);
        strata_storepb::convert::add_external_labels_to_rules(&mut groups, &ext);
        let Some(rule::Result::Alert(a)) = &groups[0].rules[0].result else {
            unreachable!()
        };
        let names: Vec<(&str, &str)> = a
            .labels
            .as_ref()
            .unwrap()
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(names, [("replica", "a"), ("severity", "external")]);
        // Alert instances keep Prometheus' labels.
        assert_eq!(a.alerts[0].labels.as_ref().unwrap().labels.len(), 2);
    }

    /// Whatever Prometheus sends as a time is read or refused, never a panic: short strings,
    /// non-ASCII at and around the fraction, fractions longer than nanoseconds.
    #[test]
    fn odd_times_are_read_or_refused() {
        assert_eq!(timestamp(None).unwrap(), None);
        assert_eq!(timestamp(Some("")).unwrap(), None);
        let t = timestamp(Some("2024-01-02T03:04:05.123456789123Z"))
            .unwrap()
            .unwrap();
        assert_eq!(t.nanos, 123_456_789);
        let t = timestamp(Some("2024-01-02T03:04:05+02:00"))
            .unwrap()
            .unwrap();
        assert_eq!(t.seconds, 1_704_157_445);
        for bad in [
            "2024",
            "2024-01-02T03:04:05.",
            "2024-01-02T03:04:0é.5Z",
            "2024-01-02T03:04:05.5é",
            "2024-01-02T03:04:05.ééZ",
            "é024-01-02T03:04:05Z",
            "yesterday at noon, roughly",
        ] {
            assert!(timestamp(Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unknown_rule_types_and_states_are_errors() {
        for body in [
            r#"{"groups":[{"name":"g","rules":[{"type":"other","name":"x"}]}]}"#,
            r#"{"groups":[{"name":"g","rules":[{"type":"alerting","name":"x","state":"odd"}]}]}"#,
            r#"{"groups":[{"name":"g","lastEvaluation":"yesterday","rules":[]}]}"#,
        ] {
            let data: RulesData = serde_json::from_str(body).unwrap();
            let e = data.into_groups().unwrap_err();
            assert!(e.contains("group \"g\""), "{e}");
        }
    }
}
