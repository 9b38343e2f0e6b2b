//! The Targets API fanned out: the scrape targets of every endpoint offering
//! `thanos.Targets` (sidecars, queriers below this one), deduplicated as Thanos' querier does,
//! for `/api/v1/targets` and this querier's own Targets service.
//!
//! Active targets equal in scrape URL, pool, discovered labels and labels without the replica
//! labels are one; the copy kept is the one in the lowest health (down, then up, then
//! unknown: a replica that cannot scrape a target is what to see), then the most recently
//! scraped, then the lowest replica. Dropped targets equal in discovered labels without the
//! replica labels are one.

use strata_storepb::thanos::{
    ActiveTarget, DroppedTarget, PartialResponseStrategy, TargetDiscovery, TargetHealth,
    TargetsRequest, targets_request, targets_response,
};

use crate::error::QueryError;
use crate::fanout::{Fanout, endpoint_failed};
use crate::wire::{Pairs, labels_json, pairs, time_json, to_set};

/// What the endpoints answered, merged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetsAnswer {
    pub targets: TargetDiscovery,
    /// Failed endpoints (under partial response) and the endpoints' own warnings.
    pub warnings: Vec<String>,
}

impl Fanout {
    /// Targets (of `state`) from every endpoint offering the Targets API, deduplicated by
    /// `replica_labels` (see the module documentation).
    pub async fn targets(
        &self,
        state: targets_request::State,
        replica_labels: &[String],
        partial: bool,
    ) -> Result<TargetsAnswer, QueryError> {
        let endpoints = self
            .endpoints
            .targets_endpoints()
            .into_iter()
            .map(|e| (e.addr, e.client))
            .collect();
        let req = TargetsRequest {
            state: state as i32,
            partial_response_strategy: if partial {
                PartialResponseStrategy::Warn
            } else {
                PartialResponseStrategy::Abort
            } as i32,
        };
        let answers = self
            .call_endpoints(endpoints, |mut c| async move { c.targets(req).await })
            .await;
        let mut out = TargetsAnswer::default();
        for (addr, r) in answers {
            match r {
                Ok(answers) => {
                    for a in answers {
                        match a.result {
                            Some(targets_response::Result::Targets(t)) => {
                                out.targets.active_targets.extend(t.active_targets);
                                out.targets.dropped_targets.extend(t.dropped_targets);
                            }
                            Some(targets_response::Result::Warning(w)) => {
                                out.warnings.push(format!("endpoint {addr}: {w}"));
                            }
                            None => {}
                        }
                    }
                }
                Err(e) => endpoint_failed(&mut out.warnings, "Targets", addr, e, partial)?,
            }
        }
        out.targets = merge(std::mem::take(&mut out.targets), replica_labels);
        Ok(out)
    }
}

/// Deduplicates active and dropped targets (see the module documentation); both come out
/// sorted, active ones by scrape URL.
pub fn merge(t: TargetDiscovery, replica_labels: &[String]) -> TargetDiscovery {
    struct Keyed {
        /// Scrape URL, pool, discovered labels and labels, without the replica labels.
        identity: (String, String, Pairs, Pairs),
        all_labels: Pairs,
        target: ActiveTarget,
    }
    let health_rank = |h: i32| match TargetHealth::try_from(h) {
        Ok(TargetHealth::Down) => 0,
        Ok(TargetHealth::Up) => 1,
        _ => 2,
    };
    let mut active: Vec<Keyed> = t
        .active_targets
        .into_iter()
        .map(|target| {
            let (discovered, _) = pairs(&target.discovered_labels, replica_labels);
            let (labels, all_labels) = pairs(&target.labels, replica_labels);
            Keyed {
                identity: (
                    target.scrape_url.clone(),
                    target.scrape_pool.clone(),
                    discovered,
                    labels,
                ),
                all_labels,
                target,
            }
        })
        .collect();
    active.sort_by(|a, b| {
        a.identity.cmp(&b.identity).then_with(|| {
            let scraped = |k: &Keyed| {
                k.target
                    .last_scrape
                    .map_or((i64::MIN, 0), |t| (t.seconds, t.nanos))
            };
            health_rank(a.target.health)
                .cmp(&health_rank(b.target.health))
                .then_with(|| scraped(b).cmp(&scraped(a)))
                .then_with(|| a.all_labels.cmp(&b.all_labels))
        })
    });
    active.dedup_by(|later, kept| later.identity == kept.identity);
    let active_targets = active
        .into_iter()
        .map(|k| {
            let (_, _, discovered, labels) = k.identity;
            ActiveTarget {
                discovered_labels: to_set(discovered),
                labels: to_set(labels),
                ..k.target
            }
        })
        .collect();

    let mut dropped: Vec<(Pairs, Pairs)> = t
        .dropped_targets
        .iter()
        .map(|d| pairs(&d.discovered_labels, replica_labels))
        .collect();
    dropped.sort();
    dropped.dedup_by(|later, kept| later.0 == kept.0);
    let dropped_targets = dropped
        .into_iter()
        .map(|(kept, _)| DroppedTarget {
            discovered_labels: to_set(kept),
        })
        .collect();
    TargetDiscovery {
        active_targets,
        dropped_targets,
    }
}

/// `/api/v1/targets`' data, in Thanos' JSON: `{"activeTargets": […], "droppedTargets": […]}`.
pub fn targets_json(t: &TargetDiscovery) -> String {
    let active: Vec<serde_json::Value> = t
        .active_targets
        .iter()
        .map(|a| {
            let health = match TargetHealth::try_from(a.health) {
                Ok(TargetHealth::Up) => "up",
                Ok(TargetHealth::Down) => "down",
                _ => "unknown",
            };
            serde_json::json!({
                "discoveredLabels": labels_json(a.discovered_labels.as_ref()),
                "labels": labels_json(a.labels.as_ref()),
                "scrapePool": a.scrape_pool,
                "scrapeUrl": a.scrape_url,
                "globalUrl": a.global_url,
                "lastError": a.last_error,
                "lastScrape": time_json(a.last_scrape),
                "lastScrapeDuration": a.last_scrape_duration,
                "health": health,
            })
        })
        .collect();
    let dropped: Vec<serde_json::Value> = t
        .dropped_targets
        .iter()
        .map(|d| serde_json::json!({ "discoveredLabels": labels_json(d.discovered_labels.as_ref()) }))
        .collect();
    serde_json::json!({ "activeTargets": active, "droppedTargets": dropped }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_storepb::thanos::LabelSet;

    fn set(pairs: &[(&str, &str)]) -> Option<LabelSet> {
        to_set(
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn active(replica: &str, health: TargetHealth, scraped: i64) -> ActiveTarget {
        ActiveTarget {
            discovered_labels: set(&[("__address__", "h:1"), ("replica", replica)]),
            labels: set(&[("instance", "h:1"), ("replica", replica)]),
            scrape_pool: "demo".into(),
            scrape_url: "http://h:1/metrics".into(),
            last_scrape: Some(prost_types::Timestamp {
                seconds: scraped,
                nanos: 0,
            }),
            health: health as i32,
            ..Default::default()
        }
    }

    #[test]
    fn replicas_targets_are_one_the_down_copy_first_then_the_latest() {
        let replicas = vec!["replica".to_string()];
        let t = TargetDiscovery {
            active_targets: vec![
                active("a", TargetHealth::Up, 20),
                active("b", TargetHealth::Down, 10),
            ],
            dropped_targets: vec![
                DroppedTarget {
                    discovered_labels: set(&[("__address__", "x"), ("replica", "b")]),
                },
                DroppedTarget {
                    discovered_labels: set(&[("__address__", "x"), ("replica", "a")]),
                },
            ],
        };
        let out = merge(t.clone(), &replicas);
        assert_eq!(out.active_targets.len(), 1);
        assert_eq!(out.active_targets[0].health, TargetHealth::Down as i32);
        assert_eq!(out.active_targets[0].labels, set(&[("instance", "h:1")]));
        assert_eq!(out.dropped_targets.len(), 1);
        assert_eq!(
            out.dropped_targets[0].discovered_labels,
            set(&[("__address__", "x")])
        );

        // Both up: the latest scrape.
        let both_up = TargetDiscovery {
            active_targets: vec![
                active("a", TargetHealth::Up, 10),
                active("b", TargetHealth::Up, 20),
            ],
            dropped_targets: Vec::new(),
        };
        let out = merge(both_up.clone(), &replicas);
        assert_eq!(out.active_targets[0].last_scrape.unwrap().seconds, 20);
        // Without replica labels both stay.
        assert_eq!(merge(both_up, &[]).active_targets.len(), 2);

        let v: serde_json::Value = serde_json::from_str(&targets_json(&out)).unwrap();
        assert_eq!(v["activeTargets"][0]["health"], "up");
        assert_eq!(v["activeTargets"][0]["scrapePool"], "demo");
        assert_eq!(v["activeTargets"][0]["labels"]["instance"], "h:1");
        assert_eq!(v["droppedTargets"], serde_json::json!([]));
    }
}
