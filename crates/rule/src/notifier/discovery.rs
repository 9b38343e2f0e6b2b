//! Turning an Alertmanager set's addresses into `host:port`s: the static ones and those of its
//! file SD files, each resolved through Thanos' `dns+`/`dnssrv+`/`dnssrvnoa+` syntax.
//!
//! Files and DNS are read again on every refresh. A file that cannot be read or parsed, and a
//! name that resolves to nothing, keep their last good answer: a DNS hiccup or a file being
//! rewritten must not make the ruler forget its Alertmanagers (Thanos' DNS provider and
//! Prometheus' file SD behave the same way).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;

use strata_runtime::dns::{AddressSpec, Resolver};

use super::config::{AlertmanagerSet, FileSdConfig, address_text, parse_address};

/// What one set's refresh remembers between rounds.
#[derive(Debug, Default)]
pub(crate) struct SetDiscovery {
    /// Last good addresses of each file.
    files: HashMap<PathBuf, Vec<String>>,
    /// Last non-empty resolution of each address spec (by its text).
    resolved: HashMap<String, BTreeSet<String>>,
}

impl SetDiscovery {
    /// The set's `host:port`s now.
    pub(crate) async fn refresh(
        &mut self,
        set: &AlertmanagerSet,
        resolver: &Resolver,
    ) -> Vec<String> {
        let mut specs: Vec<AddressSpec> = set.static_addresses.clone();
        for f in &set.file_sd {
            for addr in self.read_file_sd(f) {
                match parse_address(&addr) {
                    Ok(s) => specs.push(s),
                    Err(e) => tracing::warn!(err = %e, "file SD: skipping an Alertmanager address"),
                }
            }
        }
        let mut out = BTreeSet::new();
        let mut seen = HashSet::new();
        for spec in specs {
            let key = address_text(&spec);
            if !seen.insert(key.clone()) {
                continue;
            }
            let got = match &spec {
                AddressSpec::Static(a) => BTreeSet::from([a.clone()]),
                _ => resolver.resolve(&spec).await,
            };
            if got.is_empty() {
                if let Some(last) = self.resolved.get(&key) {
                    tracing::warn!(address = %key, "Alertmanager address resolved to nothing; keeping the last answer");
                    out.extend(last.iter().cloned());
                }
                continue;
            }
            out.extend(got.iter().cloned());
            self.resolved.insert(key, got);
        }
        out.into_iter().collect()
    }

    /// Every address the files of `cfg` list now.
    fn read_file_sd(&mut self, cfg: &FileSdConfig) -> Vec<String> {
        let mut out = Vec::new();
        for pattern in &cfg.files {
            for path in strata_runtime::glob::expand_glob(pattern) {
                match strata_runtime::file_sd::read_targets(&path) {
                    Ok(t) => {
                        self.files.insert(path.clone(), t.clone());
                        out.extend(t);
                    }
                    Err(e) => {
                        tracing::warn!(file = %path.display(), err = %e, "file SD: cannot read Alertmanager addresses; keeping the last ones");
                        out.extend(self.files.get(&path).cloned().unwrap_or_default());
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn file_sd_reads_json_and_yaml_and_keeps_last_good() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.json"),
            r#"[{"targets": ["10.0.0.1:9093", "10.0.0.2:9093"], "labels": {"x": "y"}}]"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("b.yml"), "- targets: ['10.0.0.3:9093']\n").unwrap();
        std::fs::write(dir.path().join("c.txt"), "ignored").unwrap();
        let set = AlertmanagerSet {
            http_config: Default::default(),
            static_addresses: vec![AddressSpec::Static("s:1".into())],
            file_sd: vec![FileSdConfig {
                files: vec![
                    dir.path().join("*.json").display().to_string(),
                    dir.path().join("b.yml").display().to_string(),
                ],
                refresh_interval: Duration::from_secs(1),
            }],
            scheme: "http".into(),
            path_prefix: String::new(),
            timeout: Duration::from_secs(1),
        };
        let mut d = SetDiscovery::default();
        let r = Resolver::without_srv();
        let got = d.refresh(&set, &r).await;
        assert_eq!(
            got,
            ["10.0.0.1:9093", "10.0.0.2:9093", "10.0.0.3:9093", "s:1"]
        );
        // A broken rewrite keeps the last good list.
        std::fs::write(dir.path().join("b.yml"), "- targets: [").unwrap();
        let got = d.refresh(&set, &r).await;
        assert_eq!(
            got,
            ["10.0.0.1:9093", "10.0.0.2:9093", "10.0.0.3:9093", "s:1"]
        );
        std::fs::write(dir.path().join("b.yml"), "- targets: ['10.0.0.4:9093']\n").unwrap();
        std::fs::remove_file(dir.path().join("a.json")).unwrap();
        let got = d.refresh(&set, &r).await;
        assert_eq!(got, ["10.0.0.4:9093", "s:1"]);
    }
}
