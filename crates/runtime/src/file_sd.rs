//! Prometheus' file-based service discovery files, as Thanos reads them for
//! `--store.sd-files`, the ruler's `--query.sd-files` and the `file_sd_configs` of its query
//! and Alertmanager configurations: a list of target groups, JSON for `.json` files and YAML
//! for `.yml`/`.yaml` ones. Only the `targets` matter here (an address carries no labels), so
//! `labels` are accepted and not read.
//!
//! Callers decide what a target means (an endpoint, an Alertmanager) and what to do with a
//! file that fails (skip it, or keep its last good answer).

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Deserialize)]
struct TargetGroup {
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default, rename = "labels")]
    _labels: Option<serde::de::IgnoredAny>,
}

/// The targets of one file, or why it cannot be read (the message names no path: callers log
/// it with theirs).
pub fn read_targets(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let groups: Vec<TargetGroup> = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => serde_json::from_str(&text).map_err(|e| e.to_string())?,
        Some("yml" | "yaml") => {
            let g: Option<Vec<TargetGroup>> =
                serde_yaml_ng::from_str(&text).map_err(|e| e.to_string())?;
            g.unwrap_or_default()
        }
        _ => return Err("file SD files must end in .json, .yml or .yaml".into()),
    };
    Ok(groups.into_iter().flat_map(|g| g.targets).collect())
}

/// Every file `patterns` match now (see [`crate::glob::expand_glob`]) with its targets or
/// its error, in pattern order.
pub fn read_patterns(patterns: &[String]) -> Vec<(PathBuf, Result<Vec<String>, String>)> {
    patterns
        .iter()
        .flat_map(|p| crate::glob::expand_glob(p))
        .map(|path| {
            let t = read_targets(&path);
            (path, t)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_yaml_files_give_their_targets() {
        let dir = std::env::temp_dir().join(format!("strata-file-sd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("a.json"),
            r#"[{"targets":["a:1","b:2"],"labels":{"x":"y"}},{"targets":["c:3"]}]"#,
        )
        .unwrap();
        std::fs::write(dir.join("b.yml"), "- targets: ['d:4']\n  labels: {x: y}\n").unwrap();
        std::fs::write(dir.join("c.yaml"), "").unwrap();
        std::fs::write(dir.join("d.txt"), "- targets: ['e:5']\n").unwrap();
        std::fs::write(dir.join("e.json"), "{").unwrap();
        assert_eq!(
            read_targets(&dir.join("a.json")).unwrap(),
            ["a:1", "b:2", "c:3"]
        );
        assert_eq!(read_targets(&dir.join("b.yml")).unwrap(), ["d:4"]);
        assert!(read_targets(&dir.join("c.yaml")).unwrap().is_empty());
        assert!(
            read_targets(&dir.join("d.txt"))
                .unwrap_err()
                .contains(".json, .yml")
        );
        assert!(read_targets(&dir.join("e.json")).is_err());
        assert!(read_targets(&dir.join("none.json")).is_err());
        let all = read_patterns(&[format!("{}/*.y*ml", dir.display())]);
        assert_eq!(all.len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
