//! What the sidecar knows about its Prometheus, and the loop that keeps it current.
//!
//! The external labels identify everything the sidecar serves and uploads, so nothing happens
//! before they are known: the Store API answers `Unavailable`, the shipper does not start and
//! `/-/ready` says why. After start-up, the same request every
//! `--prometheus.get_config_interval` is the heartbeat: it refreshes the labels (a reloaded
//! Prometheus may have changed them), sets `thanos_sidecar_prometheus_up`, and flips readiness
//! when Prometheus becomes unreachable or loses its external labels.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use strata_model::{Labels, TimeOrDuration};
use strata_runtime::Prober;
use tokio_util::sync::CancellationToken;

use crate::error::PromError;
use crate::promclient::PrometheusClient;

/// Where Thanos documents why external labels are required.
pub const EXTERNAL_LABELS_DOCS: &str = "https://thanos.io/tip/thanos/storage.md#external-labels";

/// Sentinel for "lowest timestamp not known".
const UNKNOWN: i64 = i64::MIN;

/// The sidecar's view of its Prometheus, shared by the Store API and the shipper.
#[derive(Debug)]
pub struct PromState {
    labels: RwLock<Option<Labels>>,
    min_time_flag: TimeOrDuration,
    lowest: AtomicI64,
    /// Whether a label name of Prometheus' series is also an external label name (`None`:
    /// not known yet). See [`PromState::external_names_may_clash`].
    name_clash: RwLock<Option<bool>>,
}

impl PromState {
    /// A state with nothing known yet; `min_time_flag` is `--min-time`.
    pub fn new(min_time_flag: TimeOrDuration) -> Self {
        PromState {
            labels: RwLock::new(None),
            min_time_flag,
            lowest: AtomicI64::new(UNKNOWN),
            name_clash: RwLock::new(None),
        }
    }

    /// Whether a series may carry its own value for an external label name, which the
    /// external label then overrides (as Thanos does). Such series can sort anywhere among
    /// their neighbours once served, so the Series answer is then sorted whole before it is
    /// sent. True until the heartbeat has compared Prometheus' label names with the external
    /// label names.
    pub fn external_names_may_clash(&self) -> bool {
        self.name_clash
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .unwrap_or(true)
    }

    /// Records whether Prometheus' label names include an external label name (the heartbeat
    /// and tests); returns what was known before.
    pub fn set_external_names_clash(&self, clash: bool) -> Option<bool> {
        self.name_clash
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .replace(clash)
    }

    /// The external labels, once known (never empty).
    pub fn external_labels(&self) -> Option<Labels> {
        self.labels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sets the external labels (tests and the heartbeat).
    pub fn set_external_labels(&self, labels: Labels) {
        *self.labels.write().unwrap_or_else(|e| e.into_inner()) = Some(labels);
    }

    /// Records Prometheus' lowest timestamp (`None`: its database is empty).
    pub fn set_lowest_timestamp(&self, t: Option<i64>) {
        self.lowest.store(t.unwrap_or(UNKNOWN), Ordering::Relaxed);
    }

    /// The oldest time served: `--min-time` (resolved now when relative), raised to
    /// Prometheus' lowest timestamp when known. An empty Prometheus advertises `--min-time`
    /// rather than "nothing", so that data arriving between two refreshes is not hidden.
    pub fn min_time(&self) -> i64 {
        let flag = self.min_time_flag.resolve(now_ms());
        match self.lowest.load(Ordering::Relaxed) {
            UNKNOWN => flag,
            lowest => flag.max(lowest),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `thanos_sidecar_prometheus_up` and `thanos_sidecar_last_heartbeat_success_time_seconds`.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatMetrics {
    pub prometheus_up: Gauge,
    pub last_heartbeat_success: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// 1 while Prometheus is reachable but has no external labels.
    pub external_labels_missing: Gauge,
}

impl HeartbeatMetrics {
    /// Registers the metrics under Thanos' names (plus Strata's missing-labels gauge).
    pub fn register(registry: &mut Registry) -> Self {
        let m = HeartbeatMetrics::default();
        registry.register(
            "thanos_sidecar_prometheus_up",
            "Boolean indicator whether the sidecar can reach its Prometheus peer.",
            m.prometheus_up.clone(),
        );
        registry.register(
            "thanos_sidecar_last_heartbeat_success_time_seconds",
            "Timestamp of the last successful heartbeat in seconds.",
            m.last_heartbeat_success.clone(),
        );
        registry.register(
            "strata_sidecar_prometheus_external_labels_missing",
            "1 while the Prometheus peer answers but has no external labels configured.",
            m.external_labels_missing.clone(),
        );
        m
    }
}

/// Why a refresh did not give usable external labels.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// Prometheus could not be asked.
    #[error("{0}")]
    Unreachable(#[from] PromError),
    /// Prometheus answered, without external labels.
    #[error(
        "no external labels configured on Prometheus server at {url}, uniquely identifying external labels must be configured (global.external_labels); see {EXTERNAL_LABELS_DOCS} for details"
    )]
    NoExternalLabels { url: String },
}

/// Keeps [`PromState`] current from Prometheus.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    pub client: PrometheusClient,
    pub state: Arc<PromState>,
    pub metrics: HeartbeatMetrics,
    pub prober: Prober,
    /// `--prometheus.get_config_timeout`.
    pub timeout: Duration,
}

impl Heartbeat {
    /// One refresh: external labels (and, best effort, the lowest timestamp). Updates the
    /// metrics and readiness; keeps the last good labels on failure.
    pub async fn refresh(&self) -> Result<Labels, RefreshError> {
        let result = match self.client.external_labels(self.timeout).await {
            Ok(l) if l.is_empty() => Err(RefreshError::NoExternalLabels {
                url: self.client.base().to_string(),
            }),
            Ok(l) => Ok(l),
            Err(e) => Err(RefreshError::Unreachable(e)),
        };
        match &result {
            Ok(labels) => {
                self.metrics.prometheus_up.set(1);
                self.metrics.external_labels_missing.set(0);
                self.metrics
                    .last_heartbeat_success
                    .set(now_ms() as f64 / 1000.0);
                let changed = self.state.external_labels().as_ref() != Some(labels);
                if changed {
                    tracing::info!(external_labels = %labels, "loaded Prometheus external labels");
                }
                self.state.set_external_labels(labels.clone());
                match self.client.lowest_timestamp(self.timeout).await {
                    Ok(t) => self.state.set_lowest_timestamp(t),
                    Err(e) => {
                        tracing::debug!(error = %e, "reading Prometheus' lowest timestamp failed; keeping the last one")
                    }
                }
                self.check_name_clash(labels).await;
                self.prober.set_ready();
            }
            Err(RefreshError::NoExternalLabels { .. }) => {
                self.metrics.prometheus_up.set(1);
                self.metrics.external_labels_missing.set(1);
                self.prober
                    .set_not_ready(format!("{}", result.as_ref().unwrap_err()));
            }
            Err(RefreshError::Unreachable(e)) => {
                self.metrics.prometheus_up.set(0);
                self.prober
                    .set_not_ready(format!("Prometheus is unreachable: {e}"));
            }
        }
        result
    }

    /// Start-up: refreshes every `retry` until the external labels are known, giving up after
    /// `ready_timeout` (`--prometheus.ready_timeout`). `None` when cancelled.
    pub async fn wait_for_labels(
        &self,
        ready_timeout: Duration,
        retry: Duration,
        cancel: &CancellationToken,
    ) -> Option<Result<Labels, RefreshError>> {
        let deadline = Instant::now() + ready_timeout;
        loop {
            let err = match self.refresh().await {
                Ok(l) => return Some(Ok(l)),
                Err(e) => e,
            };
            match &err {
                RefreshError::Unreachable(_) => tracing::warn!(
                    error = %err,
                    "failed to fetch initial external labels. Is Prometheus running? Retrying"
                ),
                RefreshError::NoExternalLabels { .. } => tracing::error!(
                    error = %err,
                    "Prometheus has no external labels; waiting for its configuration to set them"
                ),
            }
            if Instant::now() + retry > deadline {
                return Some(Err(err));
            }
            tokio::select! {
                () = tokio::time::sleep(retry) => {}
                () = cancel.cancelled() => return None,
            }
        }
    }

    /// Compares Prometheus' label names (all series, all time) with the external label
    /// names; best effort, the last answer is kept on failure.
    async fn check_name_clash(&self, ext: &Labels) {
        let names = self.client.label_names(None, 0, now_ms() + 86_400_000);
        match tokio::time::timeout(self.timeout, names).await {
            Ok(Ok(names)) => {
                let clash: Vec<&str> = ext
                    .iter()
                    .map(|l| l.name.as_str())
                    .filter(|n| names.iter().any(|p| p == n))
                    .collect();
                let was = self.state.set_external_names_clash(!clash.is_empty());
                if !clash.is_empty() && was != Some(true) {
                    tracing::warn!(labels = ?clash, "Prometheus' series carry labels named like its external labels: the external labels override them, and Series answers are held whole and sorted before they are sent");
                }
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "reading Prometheus' label names failed; keeping the last answer")
            }
            Err(_) => {
                tracing::debug!(
                    "reading Prometheus' label names timed out; keeping the last answer"
                )
            }
        }
    }

    /// The heartbeat loop: a refresh every `interval` until cancelled.
    pub async fn run(&self, interval: Duration, cancel: CancellationToken) {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = cancel.cancelled() => return,
            }
            match self.refresh().await {
                Ok(_) => {}
                Err(e @ RefreshError::Unreachable(_)) => {
                    tracing::warn!(error = %e, "heartbeat failed: Prometheus is unreachable; serving and shipping resume when it answers");
                }
                Err(e @ RefreshError::NoExternalLabels { .. }) => {
                    tracing::error!(error = %e, "heartbeat: Prometheus lost its external labels; keeping the last known ones");
                }
            }
        }
    }
}

/// Checks that Prometheus does not compact blocks itself (min and max block durations equal),
/// which the shipper needs: a block compacted locally before it was uploaded would never reach
/// the bucket.
pub fn check_block_durations(
    flags: &std::collections::BTreeMap<String, String>,
    ignore: bool,
) -> Result<(), String> {
    const MIN: &str = "storage.tsdb.min-block-duration";
    const MAX: &str = "storage.tsdb.max-block-duration";
    let (Some(min), Some(max)) = (flags.get(MIN), flags.get(MAX)) else {
        tracing::warn!(
            "Prometheus does not report its block durations; cannot check that local compaction is off"
        );
        return Ok(());
    };
    let parse = |v: &String, flag: &str| {
        v.parse::<strata_model::Duration>()
            .map_err(|e| format!("Prometheus reports --{flag}={v:?}, which does not parse: {e}"))
    };
    let (pmin, pmax) = (parse(min, MIN)?, parse(max, MAX)?);
    if pmin != pmax {
        if !ignore {
            return Err(format!(
                "found that TSDB Max time is {max} and Min time is {min}. Compaction needs to be \
                 disabled (run Prometheus with --{MIN} equal to --{MAX}, 2h recommended): blocks \
                 compacted by Prometheus before upload would never reach the bucket"
            ));
        }
        tracing::warn!(
            min = %min, max = %max,
            "Prometheus' min and max block durations differ (--shipper.ignore-unequal-block-size): a 2h block compacted before its upload may be missing from the bucket"
        );
    }
    if pmin != strata_model::Duration::from_secs(2 * 3600) {
        tracing::warn!(block_time = %min, "found that TSDB block time is not 2h. Only 2h block time is recommended");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn min_time_is_the_flag_raised_to_the_lowest_timestamp() {
        let s = PromState::new("1970-01-01T00:00:01Z".parse().unwrap());
        assert_eq!(s.min_time(), 1000);
        s.set_lowest_timestamp(Some(5000));
        assert_eq!(s.min_time(), 5000);
        s.set_lowest_timestamp(Some(10));
        assert_eq!(s.min_time(), 1000);
        s.set_lowest_timestamp(None);
        assert_eq!(s.min_time(), 1000);
    }

    #[test]
    fn block_durations_must_be_equal_unless_ignored() {
        let f = |min: &str, max: &str| {
            BTreeMap::from([
                (
                    "storage.tsdb.min-block-duration".to_string(),
                    min.to_string(),
                ),
                (
                    "storage.tsdb.max-block-duration".to_string(),
                    max.to_string(),
                ),
            ])
        };
        assert!(check_block_durations(&f("2h", "2h"), false).is_ok());
        let err = check_block_durations(&f("2h", "1d12h"), false).unwrap_err();
        assert!(
            err.contains("TSDB Max time is 1d12h and Min time is 2h"),
            "{err}"
        );
        assert!(check_block_durations(&f("2h", "1d12h"), true).is_ok());
        assert!(
            check_block_durations(&f("2h", "x"), false)
                .unwrap_err()
                .contains("does not parse")
        );
        assert!(check_block_durations(&BTreeMap::new(), false).is_ok());
    }
}
