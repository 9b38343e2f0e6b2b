//! Alerting rules: the state of each alert (pending, firing, resolved) from one evaluation to
//! the next, the `ALERTS` and `ALERTS_FOR_STATE` series, and which alerts to (re)send.
//!
//! The rules are Prometheus 2.42's (`rules/alerting.go`), kept step for step because users'
//! alerts, Alertmanager's deduplication and dashboards over `ALERTS` depend on them:
//! - an alert is identified by its labels after templating (without `__name__`, with
//!   `alertname`); two samples giving the same identity fail the evaluation;
//! - a new alert is pending and fires once it has been active for `for`; a pending alert that
//!   is no longer returned is forgotten, a firing one is resolved and kept for 15 minutes so
//!   Alertmanager hears that it resolved;
//! - `keep_firing_for` keeps a firing alert firing that long after its condition stops;
//! - an alert is sent when it fires, again every `--resend-delay`, and once more when it
//!   resolves; each send is valid for four evaluation intervals (or resend delays), so two
//!   missed evaluations do not resolve it in Alertmanager.

use std::collections::HashMap;
use std::time::Duration;

use strata_model::labels::METRIC_NAME;
use strata_model::{Label, Labels};

use crate::rulefmt::{Rule, RuleKind};
use crate::template::{Template, TemplateData, TemplateError, TemplateQuerier};

/// The series of every active alert, its state in `alertstate`.
pub const ALERTS: &str = "ALERTS";
/// The series of every active alert whose value is when it became active (for restoring).
pub const ALERTS_FOR_STATE: &str = "ALERTS_FOR_STATE";

/// How long a resolved alert is still reported (Prometheus' `resolvedRetention`).
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

/// The label every alert carries its rule's name in.
pub const ALERT_NAME: &str = "alertname";

/// An alert's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlertState {
    Inactive,
    Pending,
    Firing,
}

impl AlertState {
    /// As Prometheus' API and the `alertstate` label spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert of a rule. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveAlert {
    pub labels: Labels,
    pub annotations: Labels,
    pub state: AlertState,
    pub value: f64,
    pub active_at_ms: i64,
    pub fired_at_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
    pub last_sent_at_ms: Option<i64>,
    pub valid_until_ms: i64,
    pub keep_firing_since_ms: Option<i64>,
}

impl ActiveAlert {
    /// Prometheus' `needsSending`: never while pending; at once when it resolved since the
    /// last send; otherwise when the resend delay has passed.
    fn needs_sending(&self, ts: i64, resend_delay_ms: i64) -> bool {
        if self.state == AlertState::Pending {
            return false;
        }
        let last = self.last_sent_at_ms.unwrap_or(i64::MIN);
        if self.resolved_at_ms.is_some_and(|r| r > last) {
            return true;
        }
        last.saturating_add(resend_delay_ms) < ts
    }
}

/// An alert as Alertmanager is told of it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertToSend {
    pub labels: Labels,
    pub annotations: Labels,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
}

/// What templates may use beyond the sample: the ruler's external labels and URL, and the
/// queriers (the `query` function).
#[derive(Clone, Copy)]
pub struct TemplateContext<'a> {
    pub external_labels: &'a Labels,
    pub external_url: &'a str,
    pub querier: Option<&'a dyn TemplateQuerier>,
}

impl std::fmt::Debug for TemplateContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemplateContext")
            .field("external_labels", self.external_labels)
            .field("external_url", &self.external_url)
            .finish_non_exhaustive()
    }
}

/// An evaluation that could not be completed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("vector contains metrics with the same labelset after applying alert labels")]
    DuplicateAlert,
    #[error("vector contains metrics with the same labelset after applying rule labels")]
    DuplicateSeries,
    #[error("exceeded limit of {limit} with {count} alerts")]
    TooManyAlerts { limit: u64, count: usize },
    #[error("exceeded limit of {limit} with {count} series")]
    TooManySeries { limit: u64, count: usize },
    #[error("{0}")]
    Query(String),
}

/// An alerting rule and its alerts.
#[derive(Debug, Clone)]
pub struct AlertingRule {
    pub rule: Rule,
    for_ms: i64,
    keep_firing_for_ms: i64,
    /// The rule's labels and annotations, parsed once at load.
    label_templates: Vec<(String, Template)>,
    annotation_templates: Vec<(String, Template)>,
    /// Alerts by identity (their labels).
    active: HashMap<Labels, ActiveAlert>,
    /// Whether `for` state has been restored (or restoring was given up): until then no
    /// `ALERTS` series are written, as in Prometheus, so a restart does not write a gap of
    /// pending alerts over firing ones.
    restored: bool,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl AlertingRule {
    /// An alerting rule, its templates parsed as Prometheus parses them at load (so that a
    /// bad template is a load error, not an alert that says so); `Ok(None)` for a recording
    /// rule.
    pub fn new(rule: Rule) -> Result<Option<Self>, TemplateError> {
        let RuleKind::Alerting {
            for_,
            keep_firing_for,
            annotations,
        } = &rule.kind
        else {
            return Ok(None);
        };
        let name = format!("__alert_{}", rule.name);
        let parse = |list: &[Label]| -> Result<Vec<(String, Template)>, TemplateError> {
            list.iter()
                .map(|l| Ok((l.name.clone(), Template::parse_alert(&name, &l.value)?)))
                .collect()
        };
        Ok(Some(AlertingRule {
            for_ms: millis(*for_),
            keep_firing_for_ms: millis(*keep_firing_for),
            label_templates: parse(&rule.labels)?,
            annotation_templates: parse(annotations)?,
            rule,
            active: HashMap::new(),
            restored: false,
        }))
    }

    /// The alerts, in label order.
    pub fn alerts(&self) -> Vec<&ActiveAlert> {
        let mut v: Vec<&ActiveAlert> = self.active.values().collect();
        v.sort_by(|a, b| a.labels.cmp(&b.labels));
        v
    }

    /// The rule's state: the highest of its alerts' (resolved alerts count as inactive).
    pub fn state(&self) -> AlertState {
        self.active
            .values()
            .map(|a| a.state)
            .max()
            .unwrap_or(AlertState::Inactive)
    }

    /// Takes over the alerts of the same rule from before a reload.
    pub fn take_state(&mut self, old: &mut AlertingRule) {
        self.active = std::mem::take(&mut old.active);
        self.restored = old.restored;
    }

    /// Marks `for` state as restored: from now on `ALERTS` series are written.
    pub fn set_restored(&mut self) {
        self.restored = true;
    }

    /// Whether `for` state has been restored.
    pub fn is_restored(&self) -> bool {
        self.restored
    }

    /// The `for` duration.
    pub fn hold_duration(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.for_ms).unwrap_or(0))
    }

    /// The `ALERTS_FOR_STATE` series of every active alert (pending or firing), whose last
    /// value before a restart says since when it was active.
    pub fn for_state_series(&self) -> Vec<Labels> {
        let mut v: Vec<Labels> = self
            .active
            .values()
            .filter(|a| a.state != AlertState::Inactive)
            .map(|a| for_state_series(&a.labels))
            .collect();
        v.sort();
        v
    }

    /// Prometheus' `RestoreForState` for one alert: `series` is its `ALERTS_FOR_STATE`
    /// series; `last` its last sample before the restart (`(t, active since, in seconds)`),
    /// found in storage. An alert that was pending keeps the time it had already waited, so a
    /// restart neither fires it early nor makes it wait its whole `for` again; one that was
    /// firing fires at the next evaluation; and one that would fire within `grace` of `now`
    /// waits for `grace` instead, so alerts do not all fire the moment the ruler is back.
    pub fn restore_active_at(
        &mut self,
        series: &Labels,
        last: (i64, f64),
        now_ms: i64,
        grace: Duration,
    ) {
        let grace_ms = millis(grace);
        let (down_at_ms, active_since_s) = last;
        if active_since_s.is_nan() || !active_since_s.is_finite() {
            return;
        }
        // An alert's labels are its `ALERTS_FOR_STATE` series without the name (alerts carry
        // no `__name__`): one lookup, not a pass over every alert.
        let mut key = series.builder();
        key.remove(METRIC_NAME);
        let Some(a) = self.active.get_mut(&key.build()) else {
            return;
        };
        // Prometheus works in whole seconds here: the stored value is seconds, and the time
        // of the last sample is truncated to seconds.
        let down_at_ms = down_at_ms.div_euclid(1000) * 1000;
        let mut active_at_ms = (active_since_s as i64).saturating_mul(1000);
        let pending_ms = down_at_ms.saturating_sub(active_at_ms);
        let remaining_ms = self.for_ms.saturating_sub(pending_ms);
        if remaining_ms <= 0 {
            // It was firing when the ruler went down: the next evaluation fires it again.
        } else if remaining_ms < grace_ms {
            active_at_ms = now_ms.saturating_add(grace_ms).saturating_sub(self.for_ms);
        } else {
            active_at_ms = active_at_ms.saturating_add(now_ms.saturating_sub(down_at_ms));
        }
        a.active_at_ms = active_at_ms;
    }

    /// Applies one evaluation at `ts` (ms) whose query gave `samples`; returns the `ALERTS`
    /// and `ALERTS_FOR_STATE` samples to record.
    pub fn eval(
        &mut self,
        ts: i64,
        samples: Vec<(Labels, f64)>,
        limit: u64,
        ctx: TemplateContext<'_>,
    ) -> Result<Vec<(Labels, f64)>, EvalError> {
        let mut fresh: HashMap<Labels, ActiveAlert> = HashMap::with_capacity(samples.len());
        for (metric, value) in samples {
            let data = TemplateData {
                labels: metric.clone(),
                external_labels: ctx.external_labels.clone(),
                external_url: ctx.external_url.to_owned(),
                value,
            };
            let expand = |t: &Template| -> String {
                t.execute(&data, ctx.querier).unwrap_or_else(|e| {
                    tracing::warn!(alert = %self.rule.name, err = %e, "expanding alert template failed");
                    format!("<error expanding template: {e}>")
                })
            };
            let mut b = metric.builder();
            b.remove(METRIC_NAME);
            for (name, t) in &self.label_templates {
                let v = expand(t);
                if v.is_empty() {
                    b.remove(name);
                } else {
                    b.set(name.clone(), v);
                }
            }
            b.set(ALERT_NAME, self.rule.name.clone());
            let labels = b.build();
            let annotations = Labels::new(
                self.annotation_templates
                    .iter()
                    .map(|(name, t)| Label::new(name.clone(), expand(t))),
            );
            if fresh.contains_key(&labels) {
                return Err(EvalError::DuplicateAlert);
            }
            fresh.insert(
                labels.clone(),
                ActiveAlert {
                    labels,
                    annotations,
                    state: AlertState::Pending,
                    value,
                    active_at_ms: ts,
                    fired_at_ms: None,
                    resolved_at_ms: None,
                    last_sent_at_ms: None,
                    valid_until_ms: 0,
                    keep_firing_since_ms: None,
                },
            );
        }
        let returned: std::collections::HashSet<Labels> = fresh.keys().cloned().collect();
        for (key, alert) in fresh {
            match self.active.get_mut(&key) {
                Some(existing) if existing.state != AlertState::Inactive => {
                    existing.value = alert.value;
                    existing.annotations = alert.annotations;
                }
                _ => {
                    self.active.insert(key, alert);
                }
            }
        }

        let mut out = Vec::new();
        let mut active_or_pending = 0usize;
        let mut forget = Vec::new();
        for (key, a) in self.active.iter_mut() {
            if !returned.contains(key) {
                let mut keep_firing = false;
                if a.state == AlertState::Firing && self.keep_firing_for_ms > 0 {
                    let since = *a.keep_firing_since_ms.get_or_insert(ts);
                    keep_firing = ts - since < self.keep_firing_for_ms;
                }
                if a.state == AlertState::Pending
                    || a.resolved_at_ms
                        .is_some_and(|r| ts - r > RESOLVED_RETENTION_MS)
                {
                    forget.push(key.clone());
                }
                if a.state != AlertState::Inactive && !keep_firing {
                    a.state = AlertState::Inactive;
                    a.resolved_at_ms = Some(ts);
                }
                if !keep_firing {
                    continue;
                }
            } else {
                a.keep_firing_since_ms = None;
            }
            active_or_pending += 1;
            if a.state == AlertState::Pending && ts - a.active_at_ms >= self.for_ms {
                a.state = AlertState::Firing;
                a.fired_at_ms = Some(ts);
            }
            if self.restored {
                out.push((alerts_series(&a.labels, a.state), 1.0));
                out.push((for_state_series(&a.labels), (a.active_at_ms / 1000) as f64));
            }
        }
        for key in forget {
            self.active.remove(&key);
        }
        if limit > 0 && active_or_pending as u64 > limit {
            self.active.clear();
            return Err(EvalError::TooManyAlerts {
                limit,
                count: active_or_pending,
            });
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The alerts due to be sent at `ts` (Prometheus' `sendAlerts`), marked as sent.
    pub fn alerts_to_send(
        &mut self,
        ts: i64,
        resend_delay: Duration,
        interval: Duration,
    ) -> Vec<AlertToSend> {
        let resend_ms = millis(resend_delay);
        let delta = resend_ms.max(millis(interval));
        let mut out = Vec::new();
        for a in self.active.values_mut() {
            if !a.needs_sending(ts, resend_ms) {
                continue;
            }
            a.last_sent_at_ms = Some(ts);
            a.valid_until_ms = ts.saturating_add(delta.saturating_mul(4));
            out.push(AlertToSend {
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                starts_at_ms: a.fired_at_ms.unwrap_or(a.active_at_ms),
                ends_at_ms: a.resolved_at_ms.unwrap_or(a.valid_until_ms),
            });
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }
}

/// `ALERTS{alertname=…, alertstate=…, …}`.
fn alerts_series(labels: &Labels, state: AlertState) -> Labels {
    let mut b = labels.builder();
    b.set(METRIC_NAME, ALERTS);
    b.set("alertstate", state.as_str());
    b.build()
}

/// `ALERTS_FOR_STATE{alertname=…, …}`, whose value is when the alert became active.
fn for_state_series(labels: &Labels) -> Labels {
    let mut b = labels.builder();
    b.set(METRIC_NAME, ALERTS_FOR_STATE);
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(for_s: u64, keep_s: u64) -> AlertingRule {
        let mut r = AlertingRule::new(Rule {
            name: "Down".into(),
            expr: "up == 0".into(),
            labels: vec![
                Label::new("instance", ""),
                Label::new("severity", "page"),
                Label::new("where", "{{ $labels.instance }}"),
            ],
            kind: RuleKind::Alerting {
                for_: Duration::from_secs(for_s),
                keep_firing_for: Duration::from_secs(keep_s),
                annotations: vec![Label::new("summary", "{{ $labels.job }} is {{ $value }}")],
            },
        })
        .unwrap()
        .unwrap();
        r.set_restored();
        r
    }

    const CTX: TemplateContext<'static> = TemplateContext {
        external_labels: &Labels::empty(),
        external_url: "http://ruler",
        querier: None,
    };

    fn up(instance: &str) -> (Labels, f64) {
        (
            Labels::from_pairs(&[("__name__", "up"), ("instance", instance), ("job", "node")]),
            0.0,
        )
    }

    const MIN: i64 = 60_000;

    #[test]
    fn alerts_go_pending_then_firing_then_resolved_then_away() {
        let mut r = rule(120, 0);
        let out = r.eval(0, vec![up("a")], 0, CTX).unwrap();
        let a = r.alerts()[0].clone();
        // The instance label is removed by the rule's empty value, the template sees it.
        assert_eq!(
            a.labels,
            Labels::from_pairs(&[
                ("alertname", "Down"),
                ("job", "node"),
                ("severity", "page"),
                ("where", "a")
            ])
        );
        assert_eq!(
            a.annotations,
            Labels::from_pairs(&[("summary", "node is 0")])
        );
        assert_eq!(a.state, AlertState::Pending);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].0.get("__name__"), Some("ALERTS"));
        assert_eq!(out[0].0.get("alertstate"), Some("pending"));
        assert_eq!(out[1].0.get("__name__"), Some("ALERTS_FOR_STATE"));
        assert!(
            r.alerts_to_send(0, Duration::from_secs(60), Duration::from_secs(60))
                .is_empty()
        );

        r.eval(MIN, vec![up("a")], 0, CTX).unwrap();
        assert_eq!(r.state(), AlertState::Pending);
        r.eval(2 * MIN, vec![up("a")], 0, CTX).unwrap();
        assert_eq!(r.state(), AlertState::Firing);
        let sent = r.alerts_to_send(2 * MIN, Duration::from_secs(60), Duration::from_secs(60));
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].starts_at_ms, 2 * MIN);
        assert_eq!(sent[0].ends_at_ms, 2 * MIN + 4 * MIN);
        // Not again before the resend delay has passed.
        r.eval(2 * MIN + 30_000, vec![up("a")], 0, CTX).unwrap();
        assert!(
            r.alerts_to_send(
                2 * MIN + 30_000,
                Duration::from_secs(60),
                Duration::from_secs(60)
            )
            .is_empty()
        );
        r.eval(3 * MIN + 1, vec![up("a")], 0, CTX).unwrap();
        assert_eq!(
            r.alerts_to_send(
                3 * MIN + 1,
                Duration::from_secs(60),
                Duration::from_secs(60)
            )
            .len(),
            1
        );

        // Gone from the query: resolved, sent at once with its end, kept 15 minutes.
        let out = r.eval(4 * MIN, vec![], 0, CTX).unwrap();
        assert!(out.is_empty());
        assert_eq!(r.state(), AlertState::Inactive);
        let sent = r.alerts_to_send(4 * MIN, Duration::from_secs(60), Duration::from_secs(60));
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].ends_at_ms, 4 * MIN);
        r.eval(19 * MIN, vec![], 0, CTX).unwrap();
        assert_eq!(r.alerts().len(), 1);
        r.eval(19 * MIN + 1, vec![], 0, CTX).unwrap();
        assert!(r.alerts().is_empty());
    }

    #[test]
    fn pending_alerts_that_go_away_are_forgotten_and_restart() {
        let mut r = rule(120, 0);
        r.eval(0, vec![up("a")], 0, CTX).unwrap();
        r.eval(MIN, vec![], 0, CTX).unwrap();
        assert!(r.alerts().is_empty());
        r.eval(2 * MIN, vec![up("a")], 0, CTX).unwrap();
        assert_eq!(r.alerts()[0].active_at_ms, 2 * MIN);
        // A resolved alert that comes back is a new pending alert.
        let mut r = rule(0, 0);
        r.eval(0, vec![up("a")], 0, CTX).unwrap();
        assert_eq!(r.state(), AlertState::Firing);
        r.eval(MIN, vec![], 0, CTX).unwrap();
        r.eval(2 * MIN, vec![up("a")], 0, CTX).unwrap();
        let a = r.alerts()[0];
        assert_eq!((a.active_at_ms, a.state), (2 * MIN, AlertState::Firing));
        assert_eq!(a.resolved_at_ms, None);
    }

    #[test]
    fn keep_firing_for_holds_a_firing_alert() {
        let mut r = rule(0, 150);
        r.eval(0, vec![up("a")], 0, CTX).unwrap();
        assert_eq!(r.state(), AlertState::Firing);
        // Kept from the first evaluation that misses it (at MIN) for 150 s.
        for t in [MIN, 2 * MIN, 3 * MIN] {
            let out = r.eval(t, vec![], 0, CTX).unwrap();
            assert_eq!(r.state(), AlertState::Firing, "at {t}");
            assert_eq!(out.len(), 2);
        }
        r.eval(4 * MIN, vec![], 0, CTX).unwrap();
        assert_eq!(r.state(), AlertState::Inactive);
    }

    #[test]
    fn duplicates_and_limits_fail_the_evaluation() {
        let mut r = rule(0, 0);
        // Equal once __name__ is dropped and the instance label removed.
        let dup = vec![
            up("a"),
            (
                Labels::from_pairs(&[("__name__", "other"), ("instance", "a"), ("job", "node")]),
                1.0,
            ),
        ];
        assert_eq!(r.eval(0, dup, 0, CTX), Err(EvalError::DuplicateAlert));
        let mut r = rule(0, 0);
        assert!(r.eval(0, vec![up("a"), up("b")], 2, CTX).is_ok());
        assert_eq!(
            r.eval(MIN, vec![up("a"), up("b"), up("c")], 2, CTX),
            Err(EvalError::TooManyAlerts { limit: 2, count: 3 })
        );
        assert!(r.alerts().is_empty());
    }

    #[test]
    fn restoring_keeps_the_time_already_spent_pending() {
        const S: i64 = 1000;
        let grace = Duration::from_secs(600);
        // `for: 1h`; the ruler went down at 10 000 s with the alert active since 9 000 s, and
        // is back at 20 000 s (the first evaluations made the alert pending again).
        let restore = |last: (i64, f64), now: i64| {
            let mut r = rule(3600, 0);
            r.eval(now, vec![up("a")], 0, CTX).unwrap();
            let series = r.for_state_series();
            assert_eq!(series.len(), 1);
            r.restore_active_at(&series[0], last, now, grace);
            r.alerts()[0].active_at_ms
        };
        // 1000 s of the hour spent: active since 19 000 s, so 2600 s still to wait.
        assert_eq!(restore((10_000 * S + 123, 9_000.0), 20_000 * S), 19_000 * S);
        // Firing when it went down: active since then, so it fires at once.
        assert_eq!(restore((10_000 * S, 5_000.0), 20_000 * S), 5_000 * S);
        // Within the grace period of firing: it fires a grace period from now.
        assert_eq!(
            restore((10_000 * S, 6_500.0), 20_000 * S),
            20_000 * S + 600 * S - 3600 * S
        );
        // A stale marker's NaN says it was not active: nothing restored.
        assert_eq!(restore((10_000 * S, f64::NAN), 20_000 * S), 20_000 * S);
    }

    #[test]
    fn no_alerts_series_before_restoring() {
        let mut r = rule(0, 0);
        r.restored = false;
        assert!(r.eval(0, vec![up("a")], 0, CTX).unwrap().is_empty());
        r.set_restored();
        assert_eq!(r.eval(MIN, vec![up("a")], 0, CTX).unwrap().len(), 2);
    }
}
