//! `strata tools rules-check`: checks Prometheus rule files as Thanos' `tools rules-check`
//! does, so that a CI pipeline that gates rule changes with it keeps working: the file must
//! be Prometheus' rule format (unknown fields refused, as Prometheus' strict YAML reading
//! does) with Thanos' `partial_response_strategy` allowed on groups; group names present and
//! unique per file; each rule either `record` or `alert`, with an `expr` that parses as
//! PromQL, a valid metric name to record under, valid label and annotation names, and no
//! alerting-only fields on recording rules.
//!
//! Not checked: the Go templates of labels and annotations (Prometheus parses them with Go's
//! `text/template`, which Strata does not have).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Result, bail};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
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
    limit: Option<i64>,
    #[serde(default)]
    rules: Vec<RuleYaml>,
    /// Thanos' own: `warn` or `abort`.
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

/// A YAML scalar as the string Go's YAML reading makes of it.
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

/// The rules of one file's text, or every problem found in it (each naming its group and
/// rule).
pub(crate) fn check(text: &str) -> Result<usize, Vec<String>> {
    // An empty file is a file without groups, as in Prometheus.
    let file: RuleFile = if text.trim().is_empty() {
        RuleFile::default()
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| vec![e.to_string()])?
    };
    let engine = strata_promql::Engine::default();
    let mut errors = Vec::new();
    let mut names = BTreeSet::new();
    let mut rules = 0;
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
        if let Some(i) = &g.interval
            && let Err(e) = strata_model::Duration::parse_prometheus(i)
        {
            errors.push(format!("{group}: interval: {e}"));
        }
        if g.limit.is_some_and(|l| l < 0) {
            errors.push(format!("{group}: limit must not be negative"));
        }
        if let Some(s) = &g.partial_response_strategy
            && !matches!(s.to_ascii_uppercase().as_str(), "WARN" | "ABORT")
        {
            errors.push(format!(
                "{group}: partial_response_strategy {s:?}: want warn or abort"
            ));
        }
        for (ri, r) in g.rules.iter().enumerate() {
            rules += 1;
            let record = r.record.as_ref().and_then(scalar).filter(|s| !s.is_empty());
            let alert = r.alert.as_ref().and_then(scalar).filter(|s| !s.is_empty());
            let name = record.clone().or_else(|| alert.clone()).unwrap_or_default();
            let at = format!("{group}, rule {} ({name:?})", ri + 1);
            match (&record, &alert) {
                (Some(_), Some(_)) => {
                    errors.push(format!("{at}: only one of 'record' and 'alert' may be set"));
                }
                (None, None) => {
                    errors.push(format!("{at}: one of 'record' or 'alert' must be set"))
                }
                _ => {}
            }
            match r.expr.as_ref().and_then(scalar).filter(|s| !s.is_empty()) {
                None => errors.push(format!("{at}: field 'expr' must be set")),
                Some(expr) => {
                    if let Err(e) = engine.parse(&expr) {
                        errors.push(format!("{at}: could not parse expression: {e}"));
                    }
                }
            }
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
            for (field, d) in [("for", &r.for_), ("keep_firing_for", &r.keep_firing_for)] {
                if let Some(d) = d
                    && let Err(e) = strata_model::Duration::parse_prometheus(d)
                {
                    errors.push(format!("{at}: {field}: {e}"));
                }
            }
            for (k, v) in r.labels.iter().flatten() {
                if !valid_label_name(k) || k == "__name__" {
                    errors.push(format!("{at}: invalid label name {k:?}"));
                }
                if scalar(v).is_none() {
                    errors.push(format!("{at}: label {k:?}: the value must be a string"));
                }
            }
            for (k, v) in r.annotations.iter().flatten() {
                if !valid_label_name(k) {
                    errors.push(format!("{at}: invalid annotation name {k:?}"));
                }
                if scalar(v).is_none() {
                    errors.push(format!(
                        "{at}: annotation {k:?}: the value must be a string"
                    ));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

/// Checks every file each of `patterns` matches (a path, or a glob with `*`/`?` in its file
/// name), logging each file's result; fails naming how many files failed.
pub(crate) fn run(patterns: &[String]) -> Result<()> {
    let mut failed = 0usize;
    for p in patterns {
        tracing::info!(pattern = %p, "checking");
        let files: Vec<_> = strata_query::endpoint::expand_glob(p)
            .into_iter()
            .filter(|f| f.is_file())
            .collect();
        if files.is_empty() {
            tracing::error!(result = "FAILED", pattern = %p, error = "matching file not found");
            failed += 1;
            continue;
        }
        for f in files {
            if !check_file(&f) {
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} rule file(s) or pattern(s) failed the check (see the errors above)");
    }
    Ok(())
}

fn check_file(f: &Path) -> bool {
    tracing::info!(filename = %f.display(), "checking");
    let text = match std::fs::read_to_string(f) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(result = "FAILED", filename = %f.display(), error = %e, "cannot read the file");
            return false;
        }
    };
    match check(&text) {
        Ok(n) => {
            tracing::info!(result = "SUCCESS", filename = %f.display(), rules_found = n);
            true
        }
        Err(errors) => {
            tracing::error!(result = "FAILED", filename = %f.display());
            for e in errors {
                tracing::error!(filename = %f.display(), error = %e);
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_files_count_their_rules() {
        let text = "groups:\n  - name: g\n    partial_response_strategy: WARN\n    interval: 30s\n    rules:\n      - record: job:up:sum\n        expr: sum by (job) (up)\n      - alert: Down\n        expr: up == 0\n        for: 5m\n        labels:\n          severity: 1\n        annotations:\n          summary: down\n";
        assert_eq!(check(text), Ok(2));
        assert_eq!(check(""), Ok(0));
        assert_eq!(check("groups: []\n"), Ok(0));
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
            let errors = check(text).unwrap_err();
            assert!(
                errors.iter().any(|e| e.contains(want)),
                "{want:?} not in {errors:?} for\n{text}"
            );
        }
    }
}
