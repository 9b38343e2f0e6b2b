//! Prometheus' rule file format, read as strictly as Prometheus reads it, with Thanos'
//! `partial_response_strategy` allowed on groups.
//!
//! One reader serves both `strata tools rules-check` (which only reports) and the ruler (which
//! evaluates what it read), so a file the check passes is exactly a file the ruler loads.
//! Every problem of a file is collected, each naming its group and rule, rather than stopping
//! at the first: a CI gate should list everything that is wrong in one run.
//!
//! Not checked here: the Go templates of labels and annotations. The ruler parses them when it
//! loads the file (`crate::template`), and reports errors in them at that point.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;
use strata_model::Label;

/// What a group does when some of its queriers' stores fail (Thanos' own group field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PartialResponseStrategy {
    /// The evaluation fails: the safe choice for alerts, and Thanos' default.
    #[default]
    Abort,
    /// The evaluation goes on with what answered, and a warning is counted.
    Warn,
}

impl PartialResponseStrategy {
    /// As Thanos' API and gRPC spell it (`WARN`, `ABORT`).
    pub fn as_str(self) -> &'static str {
        match self {
            PartialResponseStrategy::Abort => "ABORT",
            PartialResponseStrategy::Warn => "WARN",
        }
    }
}

/// One rule file's groups, in file order.
#[derive(Debug, Clone, Default)]
pub struct RuleFile {
    pub groups: Vec<RuleGroup>,
}

/// A group: rules evaluated in order, every `interval`.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleGroup {
    pub name: String,
    /// The group's own interval; `None` means the ruler's `--eval-interval`.
    pub interval: Option<Duration>,
    /// The group's own query offset (`query_offset`, newer Prometheus and Thanos); `None`
    /// means the ruler's `--rule-query-offset`.
    pub query_offset: Option<Duration>,
    /// Most series (recording) or alerts (alerting) one evaluation of a rule may produce;
    /// 0 is no limit.
    pub limit: u64,
    pub partial_response_strategy: PartialResponseStrategy,
    pub rules: Vec<Rule>,
}

/// One rule as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The recorded metric name or the alert name.
    pub name: String,
    pub expr: String,
    /// Labels set on (recording) or templated onto (alerting) every output series, sorted by
    /// name. An empty value removes the label, as Prometheus' label builder does, so these
    /// are not a [`strata_model::Labels`] (which has no empty values).
    pub labels: Vec<Label>,
    pub kind: RuleKind,
}

/// What sets recording and alerting rules apart.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    Recording,
    Alerting {
        /// How long an alert must be active before it fires.
        for_: Duration,
        /// How long a firing alert keeps firing after its condition stops holding.
        keep_firing_for: Duration,
        /// Templated annotations, sorted by name.
        annotations: Vec<Label>,
    },
}

impl Rule {
    /// `true` for an alerting rule.
    pub fn is_alerting(&self) -> bool {
        matches!(self.kind, RuleKind::Alerting { .. })
    }
}

impl RuleFile {
    /// How many rules the file holds.
    pub fn rule_count(&self) -> usize {
        self.groups.iter().map(|g| g.rules.len()).sum()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileYaml {
    #[serde(default)]
    groups: Vec<GroupYaml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupYaml {
    #[serde(default)]
    name: String,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    query_offset: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    rules: Vec<RuleYaml>,
    /// Thanos' own: `warn` or `abort`, in any case.
    #[serde(default)]
    partial_response_strategy: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleYaml {
    #[serde(default)]
    record: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    alert: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    expr: Option<serde_yaml_ng::Value>,
    #[serde(default, rename = "for")]
    for_: Option<String>,
    #[serde(default)]
    keep_firing_for: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, serde_yaml_ng::Value>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, serde_yaml_ng::Value>>,
}

/// A YAML scalar as the string Go's YAML reading makes of it (`severity: 1` is `"1"`).
fn scalar(v: &serde_yaml_ng::Value) -> Option<String> {
    match v {
        serde_yaml_ng::Value::String(s) => Some(s.clone()),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        serde_yaml_ng::Value::Bool(b) => Some(b.to_string()),
        serde_yaml_ng::Value::Null => Some(String::new()),
        _ => None,
    }
}

fn valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A Prometheus duration field, its problem pushed to `errors`.
fn duration(text: Option<&str>, at: &str, field: &str, errors: &mut Vec<String>) -> Duration {
    match text.map(strata_model::Duration::parse_prometheus) {
        None => Duration::ZERO,
        Some(Ok(d)) => d.into(),
        Some(Err(e)) => {
            errors.push(format!("{at}: {field}: {e}"));
            Duration::ZERO
        }
    }
}

/// The labels or annotations of a rule, each problem pushed to `errors`.
fn label_map(
    map: Option<&BTreeMap<String, serde_yaml_ng::Value>>,
    at: &str,
    what: &str,
    errors: &mut Vec<String>,
) -> Vec<Label> {
    let mut out = Vec::new();
    for (k, v) in map.into_iter().flatten() {
        if !valid_label_name(k) || (what == "label" && k == "__name__") {
            errors.push(format!("{at}: invalid {what} name {k:?}"));
        }
        match scalar(v) {
            Some(v) => out.push(Label::new(k.clone(), v)),
            None => errors.push(format!("{at}: {what} {k:?}: the value must be a string")),
        }
    }
    // A BTreeMap iterates in name order.
    out
}

/// Reads one rule file's text: its groups, or every problem found in it (each naming its group
/// and rule).
pub fn parse(text: &str) -> Result<RuleFile, Vec<String>> {
    parse_with(text, false)
}

/// [`parse`], with PromQL's experimental functions allowed in expressions when
/// `experimental_functions` (`--enable-feature=promql-experimental-functions`).
pub fn parse_with(text: &str, experimental_functions: bool) -> Result<RuleFile, Vec<String>> {
    // An empty file is a file without groups, as in Prometheus.
    let file: FileYaml = if text.trim().is_empty() {
        FileYaml::default()
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| vec![e.to_string()])?
    };
    let engine = strata_promql::Engine::new(strata_promql::EngineOptions {
        experimental_functions,
        ..Default::default()
    });
    let mut errors = Vec::new();
    let mut names = BTreeSet::new();
    let mut groups = Vec::with_capacity(file.groups.len());
    for (gi, g) in file.groups.iter().enumerate() {
        let group = if g.name.is_empty() {
            errors.push(format!(
                "group {}: the group name must not be empty",
                gi + 1
            ));
            format!("group {}", gi + 1)
        } else {
            if !names.insert(g.name.as_str()) {
                errors.push(format!(
                    "group {:?}: the name is repeated in the same file",
                    g.name
                ));
            }
            format!("group {:?}", g.name)
        };
        let interval = g
            .interval
            .as_deref()
            .map(|i| duration(Some(i), &group, "interval", &mut errors));
        let query_offset = g
            .query_offset
            .as_deref()
            .map(|i| duration(Some(i), &group, "query_offset", &mut errors));
        if g.limit.is_some_and(|l| l < 0) {
            errors.push(format!("{group}: limit must not be negative"));
        }
        let partial_response_strategy = match g.partial_response_strategy.as_deref() {
            None => PartialResponseStrategy::Abort,
            Some(s) => match s.to_ascii_uppercase().as_str() {
                "WARN" => PartialResponseStrategy::Warn,
                "ABORT" => PartialResponseStrategy::Abort,
                _ => {
                    errors.push(format!(
                        "{group}: partial_response_strategy {s:?}: want warn or abort"
                    ));
                    PartialResponseStrategy::Abort
                }
            },
        };
        let mut rules = Vec::with_capacity(g.rules.len());
        for (ri, r) in g.rules.iter().enumerate() {
            if let Some(rule) = parse_rule(
                r,
                &format!("{group}, rule {}", ri + 1),
                &engine,
                &mut errors,
            ) {
                rules.push(rule);
            }
        }
        groups.push(RuleGroup {
            name: g.name.clone(),
            interval,
            query_offset,
            limit: g.limit.unwrap_or(0).max(0) as u64,
            partial_response_strategy,
            rules,
        });
    }
    if errors.is_empty() {
        Ok(RuleFile { groups })
    } else {
        Err(errors)
    }
}

/// One rule, or `None` with its problems pushed to `errors`.
fn parse_rule(
    r: &RuleYaml,
    at: &str,
    engine: &strata_promql::Engine,
    errors: &mut Vec<String>,
) -> Option<Rule> {
    let before = errors.len();
    let record = r.record.as_ref().and_then(scalar).filter(|s| !s.is_empty());
    let alert = r.alert.as_ref().and_then(scalar).filter(|s| !s.is_empty());
    let name = record.clone().or_else(|| alert.clone()).unwrap_or_default();
    let at = format!("{at} ({name:?})");
    match (&record, &alert) {
        (Some(_), Some(_)) => {
            errors.push(format!("{at}: only one of 'record' and 'alert' may be set"));
        }
        (None, None) => errors.push(format!("{at}: one of 'record' or 'alert' must be set")),
        _ => {}
    }
    let expr = match r.expr.as_ref().and_then(scalar).filter(|s| !s.is_empty()) {
        None => {
            errors.push(format!("{at}: field 'expr' must be set"));
            String::new()
        }
        Some(expr) => {
            if let Err(e) = engine.parse(&expr) {
                errors.push(format!("{at}: could not parse expression: {e}"));
            }
            expr
        }
    };
    if let Some(rec) = &record {
        if !valid_metric_name(rec) {
            errors.push(format!("{at}: invalid recording rule name {rec:?}"));
        }
        if r.annotations.as_ref().is_some_and(|a| !a.is_empty()) {
            errors.push(format!(
                "{at}: invalid field 'annotations' in a recording rule"
            ));
        }
        if r.for_.is_some() {
            errors.push(format!("{at}: invalid field 'for' in a recording rule"));
        }
        if r.keep_firing_for.is_some() {
            errors.push(format!(
                "{at}: invalid field 'keep_firing_for' in a recording rule"
            ));
        }
    }
    let for_ = duration(r.for_.as_deref(), &at, "for", errors);
    let keep_firing_for = duration(r.keep_firing_for.as_deref(), &at, "keep_firing_for", errors);
    let labels = label_map(r.labels.as_ref(), &at, "label", errors);
    let annotations = label_map(r.annotations.as_ref(), &at, "annotation", errors);
    if errors.len() > before {
        return None;
    }
    let kind = if record.is_some() {
        RuleKind::Recording
    } else {
        RuleKind::Alerting {
            for_,
            keep_firing_for,
            annotations,
        }
    };
    Some(Rule {
        name,
        expr,
        labels,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(text: &str) -> Result<usize, Vec<String>> {
        parse(text).map(|f| f.rule_count())
    }

    #[test]
    fn experimental_functions_only_when_enabled() {
        let text =
            "groups:\n  - name: g\n    rules:\n      - record: top\n        expr: limitk(2, up)\n";
        let e = parse(text).unwrap_err();
        assert!(
            e.iter()
                .any(|e| e.contains("promql-experimental-functions")),
            "{e:?}"
        );
        assert_eq!(parse_with(text, true).unwrap().rule_count(), 1);
    }

    #[test]
    fn valid_files_are_read_whole() {
        let text = "groups:\n  - name: g\n    partial_response_strategy: WARN\n    interval: 30s\n    limit: 10\n    rules:\n      - record: job:up:sum\n        expr: sum by (job) (up)\n        labels:\n          team: a\n      - alert: Down\n        expr: up == 0\n        for: 5m\n        keep_firing_for: 1m\n        labels:\n          severity: 1\n        annotations:\n          summary: down\n";
        let file = parse(text).unwrap();
        assert_eq!(file.rule_count(), 2);
        let g = &file.groups[0];
        assert_eq!(g.name, "g");
        assert_eq!(g.interval, Some(Duration::from_secs(30)));
        assert_eq!(g.limit, 10);
        assert_eq!(g.partial_response_strategy, PartialResponseStrategy::Warn);
        assert_eq!(g.rules[0].name, "job:up:sum");
        assert_eq!(g.rules[0].kind, RuleKind::Recording);
        assert_eq!(g.rules[0].labels, vec![Label::new("team", "a")]);
        assert_eq!(g.rules[1].labels, vec![Label::new("severity", "1")]);
        assert_eq!(
            g.rules[1].kind,
            RuleKind::Alerting {
                for_: Duration::from_secs(300),
                keep_firing_for: Duration::from_secs(60),
                annotations: vec![Label::new("summary", "down")],
            }
        );
        assert_eq!(count(""), Ok(0));
        assert_eq!(count("groups: []\n"), Ok(0));
        let abort = parse("groups:\n  - name: g\n    rules: []\n").unwrap();
        assert_eq!(
            abort.groups[0].partial_response_strategy,
            PartialResponseStrategy::Abort
        );
        assert_eq!(abort.groups[0].interval, None);
    }

    #[test]
    fn every_problem_is_named() {
        let cases = [
            (
                "groups:\n  - name: g\n    rules:\n      - record: a\n        alert: b\n        expr: up\n",
                "only one of",
            ),
            (
                "groups:\n  - name: g\n    rules:\n      - expr: up\n",
                "one of 'record' or 'alert'",
            ),
            (
                "groups:\n  - name: g\n    rules:\n      - record: a\n",
                "'expr' must be set",
            ),
            (
                "groups:\n  - name: g\n    rules:\n      - record: a\n        expr: sum(\n",
                "could not parse",
            ),
            (
                "groups:\n  - name: g\n    rules:\n      - record: 1a\n        expr: up\n",
                "invalid recording rule name",
            ),
            (
                "groups:\n  - name: g\n    rules:\n      - record: a\n        expr: up\n        for: 1m\n",
                "'for' in a recording rule",
            ),
            (
                "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        labels:\n          bad-name: x\n",
                "invalid label name",
            ),
            (
                "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        for: soon\n",
                "for:",
            ),
            (
                "groups:\n  - name: g\n    rules: []\n  - name: g\n    rules: []\n",
                "repeated",
            ),
            ("groups:\n  - rules: []\n", "must not be empty"),
            (
                "groups:\n  - name: g\n    partial_response_strategy: maybe\n    rules: []\n",
                "partial_response_strategy",
            ),
            (
                "groups:\n  - name: g\n    unknown_field: 1\n    rules: []\n",
                "unknown_field",
            ),
        ];
        for (text, want) in cases {
            let errors = count(text).unwrap_err();
            assert!(
                errors.iter().any(|e| e.contains(want)),
                "{want:?} not in {errors:?} for\n{text}"
            );
        }
    }
}
