//! Prometheus relabeling, as `--selector.relabel-config` uses it to choose the blocks a
//! component acts on (store gateway, compactor, `tools bucket`) from their external labels plus
//! `__block_id`: a block whose label set the rules drop is not this component's.
//!
//! The YAML is a list of Prometheus `relabel_config`s: `source_labels`, `separator` (`;`),
//! `regex` (`(.*)`, fully anchored), `modulus`, `target_label`, `replacement` (`$1`) and
//! `action` (`replace`). Supported actions: `replace`, `keep`, `drop`, `hashmod`, `labelmap`,
//! `labeldrop`, `labelkeep`, `lowercase`, `uppercase`, `keepequal`, `dropequal`. `hashmod`
//! takes the MD5 of the joined source values and reduces its last eight bytes, read big-endian,
//! modulo `modulus`, exactly like Prometheus, so shards agree with Thanos' on the same config.

use md5::{Digest, Md5};
use regex::Regex;
use serde::Deserialize;
use strata_model::{Label, Labels};

/// A relabel configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[error("relabel config {index}: {detail}")]
pub struct RelabelError {
    /// 0-based position of the rule in the list.
    pub index: usize,
    pub detail: String,
}

/// What a rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Replace,
    Keep,
    Drop,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
    KeepEqual,
    DropEqual,
}

/// One parsed rule.
#[derive(Debug, Clone)]
pub struct RelabelConfig {
    pub source_labels: Vec<String>,
    pub separator: String,
    pub regex: Regex,
    pub modulus: u64,
    pub target_label: String,
    pub replacement: String,
    pub action: Action,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    source_labels: Vec<String>,
    separator: Option<String>,
    regex: Option<String>,
    #[serde(default)]
    modulus: u64,
    #[serde(default)]
    target_label: String,
    replacement: Option<String>,
    action: Option<String>,
}

/// Parses a YAML list of relabel rules. Empty text means no rules.
pub fn parse_relabel_configs(yaml: &str) -> Result<Vec<RelabelConfig>, RelabelError> {
    if yaml.trim().is_empty() {
        return Ok(Vec::new());
    }
    let raw: Option<Vec<RawConfig>> = serde_yaml_ng::from_str(yaml).map_err(|e| RelabelError {
        index: 0,
        detail: format!("not a YAML list of relabel rules: {e}"),
    })?;
    raw.unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(index, r)| compile(index, r))
        .collect()
}

fn compile(index: usize, r: RawConfig) -> Result<RelabelConfig, RelabelError> {
    let err = |detail: String| RelabelError { index, detail };
    let action = match r
        .action
        .as_deref()
        .unwrap_or("replace")
        .to_ascii_lowercase()
        .as_str()
    {
        "replace" => Action::Replace,
        "keep" => Action::Keep,
        "drop" => Action::Drop,
        "hashmod" => Action::HashMod,
        "labelmap" => Action::LabelMap,
        "labeldrop" => Action::LabelDrop,
        "labelkeep" => Action::LabelKeep,
        "lowercase" => Action::Lowercase,
        "uppercase" => Action::Uppercase,
        "keepequal" => Action::KeepEqual,
        "dropequal" => Action::DropEqual,
        other => {
            return Err(err(format!(
                "unknown relabel action {other:?} (supported: replace, keep, drop, hashmod, labelmap, labeldrop, labelkeep, lowercase, uppercase, keepequal, dropequal)"
            )));
        }
    };
    let pattern = r.regex.unwrap_or_else(|| "(.*)".to_string());
    let regex = Regex::new(&format!("^(?s:{pattern})$"))
        .map_err(|e| err(format!("invalid regex {pattern:?}: {e}")))?;
    let needs_target = matches!(
        action,
        Action::Replace
            | Action::HashMod
            | Action::Lowercase
            | Action::Uppercase
            | Action::KeepEqual
            | Action::DropEqual
    );
    if needs_target && r.target_label.is_empty() {
        return Err(err(format!("action {action:?} requires target_label")));
    }
    if action == Action::HashMod && r.modulus == 0 {
        return Err(err("action hashmod requires a non-zero modulus".into()));
    }
    Ok(RelabelConfig {
        source_labels: r.source_labels,
        separator: r.separator.unwrap_or_else(|| ";".to_string()),
        regex,
        modulus: r.modulus,
        target_label: r.target_label,
        replacement: r.replacement.unwrap_or_else(|| "$1".to_string()),
        action,
    })
}

/// Applies the rules in order. `None` means the label set was dropped.
pub fn relabel(labels: &Labels, rules: &[RelabelConfig]) -> Option<Labels> {
    let mut lb: Vec<Label> = labels.iter().cloned().collect();
    for rule in rules {
        if !apply(&mut lb, rule) {
            return None;
        }
    }
    Some(Labels::new(lb))
}

fn get<'a>(lb: &'a [Label], name: &str) -> &'a str {
    lb.iter()
        .find(|l| l.name == name)
        .map_or("", |l| l.value.as_str())
}

fn set(lb: &mut Vec<Label>, name: &str, value: String) {
    lb.retain(|l| l.name != name);
    if !value.is_empty() {
        lb.push(Label::new(name, value));
    }
}

fn apply(lb: &mut Vec<Label>, rule: &RelabelConfig) -> bool {
    let joined = rule
        .source_labels
        .iter()
        .map(|n| get(lb, n))
        .collect::<Vec<_>>()
        .join(&rule.separator);
    match rule.action {
        Action::Keep => rule.regex.is_match(&joined),
        Action::Drop => !rule.regex.is_match(&joined),
        Action::KeepEqual => joined == get(lb, &rule.target_label),
        Action::DropEqual => joined != get(lb, &rule.target_label),
        Action::Replace => {
            if let Some(caps) = rule.regex.captures(&joined) {
                let mut target = String::new();
                caps.expand(&rule.target_label, &mut target);
                let mut value = String::new();
                caps.expand(&rule.replacement, &mut value);
                if !target.is_empty() {
                    set(lb, &target, value);
                }
            }
            true
        }
        Action::Lowercase => {
            set(lb, &rule.target_label, joined.to_lowercase());
            true
        }
        Action::Uppercase => {
            set(lb, &rule.target_label, joined.to_uppercase());
            true
        }
        Action::HashMod => {
            let sum = Md5::digest(joined.as_bytes());
            let h = u64::from_be_bytes(sum[8..16].try_into().expect("8 bytes"));
            set(lb, &rule.target_label, (h % rule.modulus).to_string());
            true
        }
        Action::LabelMap => {
            let mut added = Vec::new();
            for l in lb.iter() {
                if let Some(caps) = rule.regex.captures(&l.name) {
                    let mut name = String::new();
                    caps.expand(&rule.replacement, &mut name);
                    added.push((name, l.value.clone()));
                }
            }
            for (n, v) in added {
                set(lb, &n, v);
            }
            true
        }
        Action::LabelDrop => {
            lb.retain(|l| !rule.regex.is_match(&l.name));
            true
        }
        Action::LabelKeep => {
            lb.retain(|l| rule.regex.is_match(&l.name));
            true
        }
    }
}

/// Whether `rules` keep `meta`'s block: its external labels plus `__block_id` (the ULID), as
/// Thanos' label-sharding filter sees it. No rules keep every block.
pub fn selects_block(meta: &strata_tsdb::BlockMeta, rules: &[RelabelConfig]) -> bool {
    if rules.is_empty() {
        return true;
    }
    let mut labels: Vec<Label> = meta
        .external_labels()
        .into_iter()
        .map(|(n, v)| Label::new(n, v))
        .collect();
    labels.push(Label::new("__block_id", meta.ulid.to_string()));
    relabel(&Labels::new(labels), rules).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs)
    }

    #[test]
    fn keep_drop_and_replace() {
        let rules = parse_relabel_configs(
            r#"
- action: keep
  source_labels: [cluster]
  regex: eu-.*
- action: drop
  source_labels: [cluster, env]
  regex: eu-2;dev
- source_labels: [cluster]
  regex: "(eu)-(.*)"
  target_label: region
  replacement: "${1}rope-$2"
"#,
        )
        .unwrap();
        assert_eq!(relabel(&l(&[("cluster", "us-1")]), &rules), None);
        assert_eq!(
            relabel(&l(&[("cluster", "eu-2"), ("env", "dev")]), &rules),
            None
        );
        assert_eq!(
            relabel(&l(&[("cluster", "eu-1")]), &rules),
            Some(l(&[("cluster", "eu-1"), ("region", "europe-1")]))
        );
        // Anchored: "xeu-1" does not match "eu-.*".
        assert_eq!(relabel(&l(&[("cluster", "xeu-1")]), &rules), None);
    }

    #[test]
    fn hashmod_matches_prometheus() {
        // Prometheus: sum64(md5("foo")) % 1000. md5("foo") = acbd18db4cc2f85cedef654fccc4a4d8;
        // its last 8 bytes 0xedef654fccc4a4d8 = 17145033699835028696, mod 1000 = 696.
        let rules = parse_relabel_configs(
            "- action: hashmod\n  source_labels: [a]\n  modulus: 1000\n  target_label: shard\n",
        )
        .unwrap();
        let out = relabel(&l(&[("a", "foo")]), &rules).unwrap();
        assert_eq!(out.get("shard"), Some("696"));
    }

    #[test]
    fn labelmap_labeldrop_and_errors() {
        let rules = parse_relabel_configs(
            "- action: labelmap\n  regex: 'ext_(.+)'\n- action: labeldrop\n  regex: 'ext_.*'\n",
        )
        .unwrap();
        assert_eq!(
            relabel(&l(&[("ext_a", "1"), ("b", "2")]), &rules),
            Some(l(&[("a", "1"), ("b", "2")]))
        );
        let e = parse_relabel_configs("- action: explode\n").unwrap_err();
        assert!(e.to_string().contains("explode"), "{e}");
        let e = parse_relabel_configs("- action: hashmod\n  target_label: x\n").unwrap_err();
        assert!(e.to_string().contains("modulus"), "{e}");
        let e = parse_relabel_configs("- regex: '('\n  target_label: x\n").unwrap_err();
        assert!(e.to_string().contains("invalid regex"), "{e}");
        let e = parse_relabel_configs("- sourcelabels: [a]\n").unwrap_err();
        assert!(e.to_string().contains("sourcelabels"), "{e}");
        assert!(parse_relabel_configs("").unwrap().is_empty());
    }
}
