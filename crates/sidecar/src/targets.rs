//! Prometheus' `/api/v1/targets` answer turned into the Targets API's messages, every label
//! set extended with the external labels (as Thanos' sidecar does: the querier tells HA
//! replicas' targets apart by them).

use std::collections::BTreeMap;

use serde::Deserialize;
use strata_model::Labels;
use strata_storepb::thanos::{ActiveTarget, DroppedTarget, TargetDiscovery, TargetHealth};

use crate::rules::{label_set, timestamp};

/// `data` of `/api/v1/targets`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TargetsData {
    #[serde(default)]
    active_targets: Vec<ActiveJson>,
    #[serde(default)]
    dropped_targets: Vec<DroppedJson>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ActiveJson {
    #[serde(default)]
    discovered_labels: BTreeMap<String, String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    scrape_pool: String,
    #[serde(default)]
    scrape_url: String,
    #[serde(default)]
    global_url: String,
    #[serde(default)]
    last_error: String,
    #[serde(default)]
    last_scrape: Option<String>,
    #[serde(default)]
    last_scrape_duration: f64,
    #[serde(default)]
    health: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DroppedJson {
    #[serde(default)]
    discovered_labels: BTreeMap<String, String>,
}

fn extended(mut m: BTreeMap<String, String>, ext: &Labels) -> BTreeMap<String, String> {
    for l in ext.iter() {
        m.insert(l.name.to_string(), l.value.to_string());
    }
    m
}

impl TargetsData {
    /// The targets as the Targets API carries them, label sets extended with `ext` (an
    /// external label wins over a target's label of the same name), or what cannot be read.
    pub(crate) fn convert(self, ext: &Labels) -> Result<TargetDiscovery, String> {
        let active_targets = self
            .active_targets
            .into_iter()
            .map(|t| {
                let health = match t.health.as_str() {
                    "up" => TargetHealth::Up,
                    "down" => TargetHealth::Down,
                    "unknown" | "" => TargetHealth::Unknown,
                    other => {
                        return Err(format!("target {}: unknown health {other:?}", t.scrape_url));
                    }
                };
                Ok(ActiveTarget {
                    discovered_labels: Some(label_set(Some(extended(t.discovered_labels, ext)))),
                    labels: Some(label_set(Some(extended(t.labels, ext)))),
                    last_scrape: timestamp(t.last_scrape.as_deref())
                        .map_err(|e| format!("target {}: {e}", t.scrape_url))?,
                    scrape_pool: t.scrape_pool,
                    scrape_url: t.scrape_url,
                    global_url: t.global_url,
                    last_error: t.last_error,
                    last_scrape_duration: t.last_scrape_duration,
                    health: health as i32,
                })
            })
            .collect::<Result<_, String>>()?;
        let dropped_targets = self
            .dropped_targets
            .into_iter()
            .map(|t| DroppedTarget {
                discovered_labels: Some(label_set(Some(extended(t.discovered_labels, ext)))),
            })
            .collect();
        Ok(TargetDiscovery {
            active_targets,
            dropped_targets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_targets_convert_with_external_labels() {
        let body = r#"{"activeTargets":[{"discoveredLabels":{"__address__":"h:1","job":"demo"},
            "labels":{"instance":"h:1","job":"demo"},"scrapePool":"demo","scrapeUrl":"http://h:1/metrics",
            "globalUrl":"http://h:1/metrics","lastError":"","lastScrape":"2024-01-02T03:04:05.5Z",
            "lastScrapeDuration":0.002,"health":"up","scrapeInterval":"1s","scrapeTimeout":"1s"}],
            "droppedTargets":[{"discoveredLabels":{"__address__":"h:2"}}]}"#;
        let data: TargetsData = serde_json::from_str(body).unwrap();
        let ext = Labels::new([strata_model::Label::new("replica", "a")]);
        let t = data.convert(&ext).unwrap();
        let a = &t.active_targets[0];
        assert_eq!(a.health, TargetHealth::Up as i32);
        assert_eq!(a.last_scrape.unwrap().nanos, 500_000_000);
        let names = |l: &Option<strata_storepb::thanos::LabelSet>| -> Vec<String> {
            l.as_ref()
                .unwrap()
                .labels
                .iter()
                .map(|l| l.name.clone())
                .collect()
        };
        assert_eq!(names(&a.labels), ["instance", "job", "replica"]);
        assert_eq!(
            names(&a.discovered_labels),
            ["__address__", "job", "replica"]
        );
        assert_eq!(
            names(&t.dropped_targets[0].discovered_labels),
            ["__address__", "replica"]
        );

        let bad: TargetsData =
            serde_json::from_str(r#"{"activeTargets":[{"health":"sideways"}]}"#).unwrap();
        assert!(bad.convert(&ext).unwrap_err().contains("sideways"));
    }
}
