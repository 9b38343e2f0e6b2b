//! A rule group: its rules evaluated in order at one timestamp per interval, what each
//! produced (for staleness), and the status the Rules API shows.
//!
//! The schedule is Prometheus': a group's evaluations fall at `offset + k·interval`, where the
//! offset is a hash of the group's file and name. HA pairs of rulers thus evaluate the same
//! group at the same instants (their answers deduplicate cleanly) while different groups
//! spread over the interval instead of all querying at once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use strata_model::Labels;
use strata_model::labels::METRIC_NAME;
use strata_storepb::thanos;

use crate::alerting::{AlertState, AlertingRule, EvalError, TemplateContext};
use crate::rulefmt::{PartialResponseStrategy, Rule, RuleGroup};
use crate::{Deps, RecordedSample};

/// Prometheus' stale marker (`value.StaleNaN`): written for a series a rule no longer gives.
pub const STALE_NAN: f64 = f64::from_bits(0x7ff0_0000_0000_0002);

/// How one rule fared at its last evaluation.
#[derive(Debug, Clone, Default)]
pub struct RuleStatus {
    /// `None` before the first evaluation ("unknown").
    pub healthy: Option<bool>,
    pub last_error: String,
    /// Wall-clock time of the last evaluation (ms).
    pub last_evaluation_ms: Option<i64>,
    pub evaluation_duration: Duration,
}

impl RuleStatus {
    fn health(&self) -> &'static str {
        match self.healthy {
            None => "unknown",
            Some(true) => "ok",
            Some(false) => "err",
        }
    }
}

/// A rule and its state.
#[derive(Debug, Clone)]
pub enum RuleState {
    Recording(Rule),
    Alerting(Box<AlertingRule>),
}

impl RuleState {
    fn new(rule: Rule) -> Result<Self, crate::template::TemplateError> {
        Ok(match AlertingRule::new(rule.clone())? {
            Some(a) => RuleState::Alerting(Box::new(a)),
            None => RuleState::Recording(rule),
        })
    }

    /// The rule as written.
    pub fn rule(&self) -> &Rule {
        match self {
            RuleState::Recording(r) => r,
            RuleState::Alerting(a) => &a.rule,
        }
    }
}

/// A group being evaluated.
#[derive(Debug)]
pub struct Group {
    pub file: String,
    pub name: String,
    pub interval: Duration,
    pub query_offset: Duration,
    pub limit: u64,
    pub strategy: PartialResponseStrategy,
    pub rules: Vec<RuleState>,
    pub status: Vec<RuleStatus>,
    /// The series each rule recorded at its last successful evaluation.
    previous: Vec<HashSet<Labels>>,
    /// Wall-clock time of the last evaluation (ms) and how long it took.
    pub last_evaluation_ms: Option<i64>,
    pub evaluation_duration: Duration,
    /// The evaluation timestamp of the last evaluation (ms).
    pub last_eval_timestamp_ms: Option<i64>,
    /// Whether alerts' `for` state is to be restored after the second evaluation (groups
    /// loaded at start-up); other groups' alerting rules write `ALERTS` at once.
    pub should_restore: bool,
    /// Per rule: whether it may be evaluated beside the others (`--rule-concurrent-evaluation`),
    /// from [`independent_rules`].
    independent: Vec<bool>,
}

/// A group's identity across reloads: its file and name.
pub type GroupKey = (String, String);

impl Group {
    /// A group from a rule file, with the ruler's defaults for what the file leaves out; the
    /// errors name each rule whose templates do not parse.
    pub fn new(
        file: &str,
        g: &RuleGroup,
        default_interval: Duration,
        default_query_offset: Duration,
    ) -> Result<Self, Vec<String>> {
        let mut rules = Vec::with_capacity(g.rules.len());
        let mut errors = Vec::new();
        for r in &g.rules {
            match RuleState::new(r.clone()) {
                Ok(r) => rules.push(r),
                Err(e) => errors.push(format!(
                    "{file}: group {:?}, rule {:?}: {e}",
                    g.name, r.name
                )),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let n = rules.len();
        let independent = independent_rules(&rules);
        Ok(Group {
            file: file.to_owned(),
            name: g.name.clone(),
            interval: g
                .interval
                .filter(|i| !i.is_zero())
                .unwrap_or(default_interval),
            query_offset: g.query_offset.unwrap_or(default_query_offset),
            limit: g.limit,
            strategy: g.partial_response_strategy,
            rules,
            status: vec![RuleStatus::default(); n],
            previous: vec![HashSet::new(); n],
            last_evaluation_ms: None,
            evaluation_duration: Duration::ZERO,
            last_eval_timestamp_ms: None,
            should_restore: false,
            independent,
        })
    }

    /// Lets every alerting rule write `ALERTS` without restoring (rules added by a reload, or
    /// a ruler without a source to restore from).
    pub fn mark_restored(&mut self) {
        for r in &mut self.rules {
            if let RuleState::Alerting(a) = r {
                a.set_restored();
            }
        }
    }

    /// Prometheus' `RestoreForState` at `now_ms`: each active alert's `ALERTS_FOR_STATE`
    /// within the outage tolerance tells how long it had been active before the restart.
    /// Rules whose `for` is shorter than the grace period are not restored (waiting a grace
    /// period would make them wait longer than their `for`). A failed lookup leaves that
    /// alert as it is: the rule goes on, as a fresh start would.
    pub async fn restore_for_state(&mut self, now_ms: i64, deps: &Deps) {
        let Some(opts) = &deps.options.restore else {
            self.mark_restored();
            return;
        };
        let tolerance = i64::try_from(opts.outage_tolerance.as_millis()).unwrap_or(i64::MAX);
        let mint = now_ms.saturating_sub(tolerance);
        for r in &mut self.rules {
            let RuleState::Alerting(a) = r else { continue };
            if a.hold_duration() >= opts.for_grace_period {
                for series in a.for_state_series() {
                    match opts.source.last_sample(&series, mint, now_ms).await {
                        Ok(Some(last)) => {
                            a.restore_active_at(&series, last, now_ms, opts.for_grace_period)
                        }
                        Ok(None) => {}
                        Err(e) => tracing::warn!(
                            group = %self.name, alert = %a.rule.name, series = %series, err = %e,
                            "restoring the for state of an alert failed"
                        ),
                    }
                }
            }
            a.set_restored();
        }
    }

    pub fn key(&self) -> GroupKey {
        (self.file.clone(), self.name.clone())
    }

    /// Takes over the state of `old`, the same group before a reload: the alerts of each
    /// alerting rule and the series of each rule that is still there (matched by name and
    /// labels, in order), so that a reload neither re-fires alerts nor leaves
    /// series without stale markers. Returns the series of rules that are gone, to be marked
    /// stale.
    pub fn take_state(&mut self, old: &mut Group) -> Vec<Labels> {
        let mut used = vec![false; old.rules.len()];
        for (i, r) in self.rules.iter_mut().enumerate() {
            let found = old.rules.iter().enumerate().position(|(j, o)| {
                // By name and labels, as Prometheus' `nameAndLabels`: an edited expression
                // keeps its alerts firing and its series unbroken.
                !used[j]
                    && o.rule().name == r.rule().name
                    && o.rule().labels == r.rule().labels
                    && o.rule().is_alerting() == r.rule().is_alerting()
            });
            let Some(j) = found else { continue };
            used[j] = true;
            self.previous[i] = std::mem::take(&mut old.previous[j]);
            self.status[i] = old.status[j].clone();
            if let (RuleState::Alerting(new), RuleState::Alerting(prev)) = (r, &mut old.rules[j]) {
                new.take_state(prev);
            }
        }
        self.last_evaluation_ms = old.last_evaluation_ms;
        self.evaluation_duration = old.evaluation_duration;
        self.last_eval_timestamp_ms = old.last_eval_timestamp_ms;
        // A reload before the start-up restore happened keeps it due.
        self.should_restore |= old.should_restore;
        used.iter()
            .enumerate()
            .filter(|(_, u)| !**u)
            .flat_map(|(j, _)| std::mem::take(&mut old.previous[j]))
            .collect()
    }

    /// Every series the group's rules last recorded (to be marked stale when the group goes).
    pub fn recorded_series(&mut self) -> Vec<Labels> {
        self.previous.iter_mut().flat_map(std::mem::take).collect()
    }

    /// Prometheus' `hash()` of a group: xxHash64 over `file`, its value, `name`, its value,
    /// each followed by 0xff.
    fn hash(&self) -> u64 {
        let mut b = Vec::with_capacity(self.file.len() + self.name.len() + 12);
        for (n, v) in [("file", &self.file), ("name", &self.name)] {
            b.extend_from_slice(n.as_bytes());
            b.push(0xff);
            b.extend_from_slice(v.as_bytes());
            b.push(0xff);
        }
        xxhash_rust::xxh64::xxh64(&b, 0)
    }

    /// The last evaluation timestamp at or before `now_ms` on this group's grid (ms).
    pub fn eval_timestamp(&self, now_ms: i64) -> i64 {
        let interval_ns = i128::try_from(self.interval.as_nanos())
            .unwrap_or(i128::MAX)
            .max(1);
        let offset = i128::from(self.hash()) % interval_ns;
        let now_ns = i128::from(now_ms) * 1_000_000;
        let adj = now_ns - offset;
        let base = adj - adj.rem_euclid(interval_ns);
        ((base + offset) / 1_000_000) as i64
    }

    /// Evaluates every rule at `ts` (ms): records their output, sends due alerts.
    ///
    /// With `--rule-concurrent-evaluation` above 1 ([`Deps::rule_slots`]), the query of a
    /// rule that no other rule of the group reads, and that reads no other rule's output, is
    /// sent at once when a slot is free, and the rules after it go on meanwhile, as
    /// Prometheus 2.53+ does; its result is applied after the rules evaluated in order. Any
    /// other rule is evaluated in order, after the rules before it have recorded.
    pub async fn eval(&mut self, ts: i64, deps: &Arc<Deps>) {
        let group_label = format!("{};{}", self.file, self.name);
        let query_ts = ts - i64::try_from(self.query_offset.as_millis()).unwrap_or(0);
        let mut samples_total = 0usize;
        let mut side_by_side = Vec::new();
        for i in 0..self.rules.len() {
            let started = std::time::Instant::now();
            let wall = crate::now_ms();
            deps.metrics.evaluations(&group_label);
            if self.independent[i]
                && let Some(permit) = deps
                    .rule_slots
                    .as_ref()
                    .and_then(|s| s.clone().try_acquire_owned().ok())
            {
                let querier = deps.querier.clone();
                let expr = self.rules[i].rule().expr.clone();
                let strategy = self.strategy;
                let query = tokio::spawn(async move {
                    let answer = querier.instant(&expr, query_ts, strategy).await;
                    drop(permit);
                    answer
                });
                side_by_side.push((i, query, started, wall));
                continue;
            }
            let result = self.eval_rule(i, ts, query_ts, deps).await;
            samples_total +=
                self.finish_rule(i, ts, query_ts, started, wall, result, deps, &group_label);
        }
        for (i, query, started, wall) in side_by_side {
            let answer = match query.await {
                Ok(a) => a.map_err(EvalError::Query),
                Err(e) => Err(EvalError::Query(format!("the query task failed: {e}"))),
            };
            let result = answer.and_then(|a| self.apply_answer(i, ts, a, deps));
            samples_total +=
                self.finish_rule(i, ts, query_ts, started, wall, result, deps, &group_label);
        }
        deps.metrics.last_samples(&group_label, samples_total);
    }

    /// Records rule `i`'s evaluation: its status and metrics, its due alerts, its samples
    /// and the stale markers of the series it no longer gives. Returns the samples it gave.
    #[allow(clippy::too_many_arguments)]
    fn finish_rule(
        &mut self,
        i: usize,
        ts: i64,
        query_ts: i64,
        started: std::time::Instant,
        wall: i64,
        result: Result<Vec<(Labels, f64)>, EvalError>,
        deps: &Arc<Deps>,
        group_label: &str,
    ) -> usize {
        let status = &mut self.status[i];
        status.evaluation_duration = started.elapsed();
        status.last_evaluation_ms = Some(wall);
        let produced = match result {
            Ok(v) => {
                status.healthy = Some(true);
                status.last_error.clear();
                v
            }
            Err(e) => {
                status.healthy = Some(false);
                status.last_error = e.to_string();
                deps.metrics.failures(group_label);
                tracing::warn!(
                    group = %self.name, file = %self.file, rule = %self.rules[i].rule().name,
                    index = i, err = %e, "evaluating rule failed"
                );
                return 0;
            }
        };
        let count = produced.len();
        if let RuleState::Alerting(a) = &mut self.rules[i] {
            let due = a.alerts_to_send(ts, deps.options.resend_delay, self.interval);
            if !due.is_empty() {
                let generator_url = deps.generator_url(&a.rule.expr);
                deps.alerts.send(due, &generator_url);
            }
        }
        let mut returned = HashSet::with_capacity(produced.len());
        let mut out = Vec::with_capacity(produced.len());
        for (labels, value) in produced {
            out.push(RecordedSample {
                labels: labels.clone(),
                timestamp_ms: query_ts,
                value,
            });
            returned.insert(labels);
        }
        for gone in self.previous[i].difference(&returned) {
            out.push(RecordedSample {
                labels: gone.clone(),
                timestamp_ms: query_ts,
                value: STALE_NAN,
            });
        }
        self.previous[i] = returned;
        if !out.is_empty() {
            deps.appender.append(out);
        }
        count
    }

    /// One rule's output at evaluation time `ts`, its query evaluated at `query_ts` (the
    /// query offset before): alert state keeps the evaluation clock, as Prometheus'.
    async fn eval_rule(
        &mut self,
        i: usize,
        ts: i64,
        query_ts: i64,
        deps: &Arc<Deps>,
    ) -> Result<Vec<(Labels, f64)>, EvalError> {
        let expr = self.rules[i].rule().expr.clone();
        let answer = deps
            .querier
            .instant(&expr, query_ts, self.strategy)
            .await
            .map_err(EvalError::Query)?;
        self.apply_answer(i, ts, answer, deps)
    }

    /// Rule `i`'s output from its query's answer.
    fn apply_answer(
        &mut self,
        i: usize,
        ts: i64,
        answer: crate::query::QueryAnswer,
        deps: &Arc<Deps>,
    ) -> Result<Vec<(Labels, f64)>, EvalError> {
        if !answer.warnings.is_empty() {
            deps.metrics.warnings(self.strategy);
            tracing::warn!(
                group = %self.name, query = %self.rules[i].rule().expr,
                warnings = %answer.warnings.join(", "),
                "rule evaluation had warnings"
            );
        }
        match &mut self.rules[i] {
            RuleState::Recording(rule) => record(rule, answer.samples, self.limit),
            RuleState::Alerting(a) => {
                let querier = crate::TemplateBridge {
                    querier: deps.querier.clone(),
                    ts,
                    strategy: self.strategy,
                };
                let ctx = TemplateContext {
                    external_labels: &deps.options.external_labels,
                    external_url: &deps.options.external_url,
                    querier: Some(&querier),
                };
                Ok(a.eval(ts, answer.samples, self.limit, ctx)?)
            }
        }
    }

    /// The group as the Rules API shows it.
    pub fn snapshot(&self) -> thanos::RuleGroup {
        let rules = self
            .rules
            .iter()
            .zip(&self.status)
            .map(|(r, s)| rule_snapshot(r, s, self.strategy))
            .collect();
        thanos::RuleGroup {
            name: self.name.clone(),
            file: self.file.clone(),
            rules,
            interval: self.interval.as_secs_f64(),
            evaluation_duration_seconds: self.evaluation_duration.as_secs_f64(),
            last_evaluation: timestamp(self.last_evaluation_ms),
            partial_response_strategy: strategy(self.strategy) as i32,
            limit: self.limit as i64,
        }
    }
}

/// Which rules of a group may be evaluated beside the others: those whose output no rule of
/// the group reads and that read no rule's output, as Prometheus 2.53's dependency map
/// (`buildDependencyMap`) decides. Nothing is independent in a group of one rule, in a group
/// where no rule reads a metric, or when a rule's selectors cannot be tied to names: one
/// without an exact metric name (`{job="a"}`, `{__name__=~"a|b"}`) or one reading `ALERTS` or
/// `ALERTS_FOR_STATE`, which the group itself writes. (Prometheus also gives up on
/// `{__name__="a"}`; an exact name is a name here.)
fn independent_rules(rules: &[RuleState]) -> Vec<bool> {
    let none = vec![false; rules.len()];
    if rules.len() <= 1 {
        return none;
    }
    // The expressions were checked at load; experimental functions are names like others.
    let engine = strata_promql::Engine::new(strata_promql::EngineOptions {
        experimental_functions: true,
        ..Default::default()
    });
    // The metric names each rule reads.
    let mut inputs: Vec<Vec<String>> = Vec::with_capacity(rules.len());
    for r in rules {
        let Ok(selectors) = engine.query_selectors(&r.rule().expr) else {
            return none;
        };
        let mut names = Vec::with_capacity(selectors.len());
        for matchers in selectors {
            let name = matchers.iter().find(|m| {
                m.name() == METRIC_NAME && m.op() == strata_model::matcher::MatchOp::Equal
            });
            match name.map(|m| m.value()) {
                None | Some(crate::alerting::ALERTS | crate::alerting::ALERTS_FOR_STATE) => {
                    return none;
                }
                Some(n) => names.push(n.to_owned()),
            }
        }
        inputs.push(names);
    }
    if inputs.iter().all(Vec::is_empty) {
        return none;
    }
    (0..rules.len())
        .map(|i| {
            let name = &rules[i].rule().name;
            let read_by_any = inputs.iter().any(|reads| reads.contains(name));
            let reads_any = inputs[i]
                .iter()
                .any(|n| rules.iter().any(|r| &r.rule().name == n));
            !read_by_any && !reads_any
        })
        .collect()
}

/// A recording rule's output: the query's samples under the rule's name and labels.
fn record(
    rule: &Rule,
    samples: Vec<(Labels, f64)>,
    limit: u64,
) -> Result<Vec<(Labels, f64)>, EvalError> {
    let mut out = Vec::with_capacity(samples.len());
    let mut seen = HashSet::with_capacity(samples.len());
    for (metric, value) in samples {
        let mut b = metric.builder();
        b.set(METRIC_NAME, rule.name.clone());
        for l in &rule.labels {
            if l.value.is_empty() {
                b.remove(&l.name);
            } else {
                b.set(l.name.clone(), l.value.clone());
            }
        }
        let labels = b.build();
        if !seen.insert(labels.clone()) {
            return Err(EvalError::DuplicateSeries);
        }
        out.push((labels, value));
    }
    if limit > 0 && out.len() as u64 > limit {
        return Err(EvalError::TooManySeries {
            limit,
            count: out.len(),
        });
    }
    Ok(out)
}

fn timestamp(ms: Option<i64>) -> Option<prost_types::Timestamp> {
    ms.map(|ms| prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    })
}

fn strategy(s: PartialResponseStrategy) -> thanos::PartialResponseStrategy {
    match s {
        PartialResponseStrategy::Warn => thanos::PartialResponseStrategy::Warn,
        PartialResponseStrategy::Abort => thanos::PartialResponseStrategy::Abort,
    }
}

fn label_set(labels: impl IntoIterator<Item = (String, String)>) -> Option<thanos::LabelSet> {
    Some(thanos::LabelSet {
        labels: labels
            .into_iter()
            .map(|(name, value)| thanos::Label { name, value })
            .collect(),
    })
}

fn labels_of(l: &Labels) -> Option<thanos::LabelSet> {
    label_set(l.iter().map(|l| (l.name.clone(), l.value.clone())))
}

fn rule_labels(r: &Rule) -> Option<thanos::LabelSet> {
    label_set(
        r.labels
            .iter()
            .filter(|l| !l.value.is_empty())
            .map(|l| (l.name.clone(), l.value.clone())),
    )
}

fn alert_state(s: AlertState) -> thanos::AlertState {
    match s {
        AlertState::Inactive => thanos::AlertState::Inactive,
        AlertState::Pending => thanos::AlertState::Pending,
        AlertState::Firing => thanos::AlertState::Firing,
    }
}

fn rule_snapshot(r: &RuleState, s: &RuleStatus, strat: PartialResponseStrategy) -> thanos::Rule {
    let result = match r {
        RuleState::Recording(rule) => thanos::rule::Result::Recording(thanos::RecordingRule {
            name: rule.name.clone(),
            query: rule.expr.clone(),
            labels: rule_labels(rule),
            health: s.health().into(),
            last_error: s.last_error.clone(),
            evaluation_duration_seconds: s.evaluation_duration.as_secs_f64(),
            last_evaluation: timestamp(s.last_evaluation_ms),
        }),
        RuleState::Alerting(a) => {
            let (for_, keep, annotations) = match &a.rule.kind {
                crate::rulefmt::RuleKind::Alerting {
                    for_,
                    keep_firing_for,
                    annotations,
                } => (*for_, *keep_firing_for, annotations.clone()),
                crate::rulefmt::RuleKind::Recording => Default::default(),
            };
            let alerts = a
                .alerts()
                .into_iter()
                .filter(|x| x.state != AlertState::Inactive)
                .map(|x| thanos::AlertInstance {
                    labels: labels_of(&x.labels),
                    annotations: labels_of(&x.annotations),
                    state: alert_state(x.state) as i32,
                    active_at: timestamp(Some(x.active_at_ms)),
                    value: crate::format_value(x.value),
                    partial_response_strategy: strategy(strat) as i32,
                })
                .collect();
            thanos::rule::Result::Alert(thanos::Alert {
                state: alert_state(a.state()) as i32,
                name: a.rule.name.clone(),
                query: a.rule.expr.clone(),
                duration_seconds: for_.as_secs_f64(),
                keep_firing_for_seconds: keep.as_secs_f64(),
                labels: rule_labels(&a.rule),
                annotations: label_set(annotations.into_iter().map(|l| (l.name, l.value))),
                alerts,
                health: s.health().into(),
                last_error: s.last_error.clone(),
                evaluation_duration_seconds: s.evaluation_duration.as_secs_f64(),
                last_evaluation: timestamp(s.last_evaluation_ms),
            })
        }
    };
    thanos::Rule {
        result: Some(result),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_model::Label;

    /// A group of `rules` (`record: expr` or `alert:name: expr`) in one file.
    fn group_of(rules: &[(&str, &str)]) -> Group {
        let mut yaml = String::from("groups:\n  - name: g\n    rules:\n");
        for (name, expr) in rules {
            match name.strip_prefix("alert:") {
                Some(a) => yaml.push_str(&format!("      - alert: {a}\n        expr: '{expr}'\n")),
                None => yaml.push_str(&format!("      - record: {name}\n        expr: '{expr}'\n")),
            }
        }
        let f = crate::rulefmt::parse(&yaml).unwrap();
        Group::new(
            "f.yml",
            &f.groups[0],
            Duration::from_secs(60),
            Duration::ZERO,
        )
        .unwrap()
    }

    #[test]
    fn independent_rules_are_those_no_rule_reads_and_that_read_no_rule() {
        type Rules<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Rules<'_>, &[bool])] = &[
            (&[("a", "sum(x)"), ("b", "sum(rate(y[5m]))")], &[true, true]),
            (&[("a", "sum(x)"), ("b", "sum(a)")], &[false, false]),
            (
                &[("a", "sum(x)"), ("b", "sum(y)"), ("alert:C", "b > 1")],
                &[true, false, false],
            ),
            // A subquery and an exact __name__ matcher read names too.
            (
                &[
                    ("a", "sum(x)"),
                    ("b", "max_over_time({__name__=\"a\"}[5m:1m])"),
                    ("c", "z"),
                ],
                &[false, false, true],
            ),
            // A rule reading its own output depends on itself.
            (&[("a", "a + 1"), ("b", "y")], &[false, true]),
            // What cannot be tied to names makes the whole group sequential.
            (
                &[("a", "sum({job=\"x\"})"), ("b", "sum(y)")],
                &[false, false],
            ),
            (
                &[("a", "sum({__name__=~\"x|y\"})"), ("b", "y")],
                &[false, false],
            ),
            (&[("a", "count(ALERTS)"), ("b", "y")], &[false, false]),
            (&[("a", "ALERTS_FOR_STATE"), ("b", "y")], &[false, false]),
            // Nothing to gain: one rule, or no rule reading any metric.
            (&[("a", "sum(x)")], &[false]),
            (&[("a", "vector(1)"), ("b", "time()")], &[false, false]),
        ];
        for (rules, want) in cases {
            assert_eq!(group_of(rules).independent, *want, "{rules:?}");
        }
    }

    /// Answers every query after `delay`, one sample each; counts queries in flight.
    #[derive(Debug)]
    struct Slow {
        delay: Duration,
        in_flight: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
        recorded: std::sync::Mutex<Vec<RecordedSample>>,
    }

    #[async_trait::async_trait]
    impl crate::Querier for Slow {
        async fn instant(
            &self,
            _: &str,
            _: i64,
            _: PartialResponseStrategy,
        ) -> Result<crate::query::QueryAnswer, String> {
            use std::sync::atomic::Ordering::SeqCst;
            let now = self.in_flight.fetch_add(1, SeqCst) + 1;
            self.most.fetch_max(now, SeqCst);
            tokio::time::sleep(self.delay).await;
            self.in_flight.fetch_sub(1, SeqCst);
            Ok(crate::query::QueryAnswer {
                samples: vec![(Labels::from_pairs(&[("job", "a")]), 1.0)],
                warnings: vec![],
            })
        }
    }

    impl crate::Appender for Slow {
        fn append(&self, samples: Vec<RecordedSample>) {
            self.recorded.lock().unwrap().extend(samples);
        }
    }

    impl crate::AlertSink for Slow {
        fn send(&self, _: Vec<crate::alerting::AlertToSend>, _: &str) {}
    }

    fn slow_deps(slow: &Arc<Slow>, slots: Option<usize>) -> Arc<Deps> {
        Arc::new(Deps {
            querier: slow.clone(),
            appender: slow.clone(),
            alerts: slow.clone(),
            options: crate::RuleOptions {
                external_labels: Labels::default(),
                external_url: String::new(),
                generator: crate::GeneratorUrl::new("", crate::GeneratorUrl::DEFAULT_TEMPLATE)
                    .unwrap(),
                eval_interval: Duration::from_secs(60),
                query_offset: Duration::ZERO,
                resend_delay: Duration::from_secs(60),
                restore: None,
                experimental_functions: false,
            },
            metrics: crate::metrics::RuleMetrics::new(&mut Default::default()),
            rule_slots: slots.map(|n| Arc::new(tokio::sync::Semaphore::new(n))),
        })
    }

    #[tokio::test]
    async fn independent_rules_are_queried_side_by_side_within_the_slots() {
        use std::sync::atomic::Ordering::SeqCst;
        let rules = [
            ("a", "sum(w)"),
            ("b", "sum(x)"),
            ("c", "sum(y)"),
            ("d", "sum(z)"),
            ("e", "sum(a)"),
        ];
        // The rules evaluated in order take no slot (as Prometheus'): with 3 slots, b, c and
        // d are in flight while e runs; with 1, only b is, beside c, then d, then e.
        for (slots, most) in [(None, 1), (Some(1), 2), (Some(3), 4), (Some(8), 4)] {
            let slow = Arc::new(Slow {
                delay: Duration::from_millis(100),
                in_flight: Default::default(),
                most: Default::default(),
                recorded: Default::default(),
            });
            let deps = slow_deps(&slow, slots);
            let mut g = group_of(&rules);
            assert_eq!(g.independent, [false, true, true, true, false]);
            g.eval(60_000, &deps).await;
            assert_eq!(slow.most.load(SeqCst), most, "{slots:?}");
            let names: Vec<String> = slow
                .recorded
                .lock()
                .unwrap()
                .iter()
                .map(|s| s.labels.get("__name__").unwrap().to_owned())
                .collect();
            let mut sorted = names.clone();
            sorted.sort();
            assert_eq!(sorted, ["a", "b", "c", "d", "e"], "{slots:?}");
            // e's query came after a had recorded.
            let pos = |n: &str| names.iter().position(|x| x == n).unwrap();
            assert!(pos("a") < pos("e"));
            assert!(g.status.iter().all(|s| s.healthy == Some(true)));
        }
    }

    fn rec(labels: Vec<Label>) -> Rule {
        Rule {
            name: "job:up:sum".into(),
            expr: "sum by (job) (up)".into(),
            labels,
            kind: crate::rulefmt::RuleKind::Recording,
        }
    }

    #[test]
    fn recording_renames_and_relabels() {
        let r = rec(vec![Label::new("job", ""), Label::new("team", "a")]);
        let out = record(
            &r,
            vec![(Labels::from_pairs(&[("job", "x"), ("zone", "1")]), 2.0)],
            0,
        )
        .unwrap();
        assert_eq!(
            out,
            vec![(
                Labels::from_pairs(&[("__name__", "job:up:sum"), ("team", "a"), ("zone", "1")]),
                2.0
            )]
        );
        // Two series that the rule's labels make equal.
        let dup = vec![
            (Labels::from_pairs(&[("job", "x")]), 1.0),
            (Labels::from_pairs(&[("job", "y")]), 1.0),
        ];
        assert_eq!(record(&r, dup.clone(), 0), Err(EvalError::DuplicateSeries));
        let r = rec(vec![]);
        assert!(record(&r, dup.clone(), 2).is_ok());
        assert_eq!(
            record(&r, dup, 1),
            Err(EvalError::TooManySeries { limit: 1, count: 2 })
        );
    }

    #[test]
    fn a_reload_keeps_alerts_of_a_rule_whose_expression_changed() {
        let file = |expr: &str| {
            crate::rulefmt::parse(&format!(
                "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: {expr}\n      - record: r\n        expr: {expr}\n"
            ))
            .unwrap()
            .groups
            .remove(0)
        };
        let mut old = Group::new(
            "f",
            &file("up == 0"),
            Duration::from_secs(60),
            Duration::ZERO,
        )
        .unwrap();
        old.mark_restored();
        let ctx = TemplateContext {
            external_labels: &Labels::empty(),
            external_url: "",
            querier: None,
        };
        if let RuleState::Alerting(a) = &mut old.rules[0] {
            a.eval(0, vec![(Labels::from_pairs(&[("job", "x")]), 1.0)], 0, ctx)
                .unwrap();
        }
        old.previous[1].insert(Labels::from_pairs(&[("__name__", "r")]));
        let mut new = Group::new(
            "f",
            &file("up == 1"),
            Duration::from_secs(60),
            Duration::ZERO,
        )
        .unwrap();
        // Matched by name and labels: nothing to mark stale, the alert kept.
        assert!(new.take_state(&mut old).is_empty());
        let RuleState::Alerting(a) = &new.rules[0] else {
            unreachable!()
        };
        assert_eq!(a.alerts().len(), 1);
        assert_eq!(a.state(), AlertState::Firing);
    }

    #[test]
    fn evaluation_timestamps_fall_on_the_group_grid() {
        let g = Group::new(
            "rules.yml",
            &RuleGroup {
                name: "g".into(),
                interval: Some(Duration::from_secs(60)),
                query_offset: None,
                limit: 0,
                partial_response_strategy: PartialResponseStrategy::Abort,
                rules: vec![],
            },
            Duration::from_secs(30),
            Duration::ZERO,
        )
        .unwrap();
        assert_eq!(g.interval, Duration::from_secs(60));
        let t = g.eval_timestamp(1_700_000_000_000);
        assert!(t <= 1_700_000_000_000 && 1_700_000_000_000 - t < 60_000);
        // Every later time in the same slot maps to the same timestamp, the next slot to
        // +60 s. (The slot starts within the millisecond `t` names: Prometheus keeps
        // nanoseconds and truncates to milliseconds for the samples.)
        assert_eq!(g.eval_timestamp(t + 1), t);
        assert_eq!(g.eval_timestamp(t + 59_999), t);
        assert_eq!(g.eval_timestamp(t + 60_001), t + 60_000);
        // The offset within the minute is the group's hash modulo the interval.
        let offset_ms = ((g.hash() % 60_000_000_000) / 1_000_000) as i64;
        assert_eq!(t.rem_euclid(60_000), offset_ms);
    }
}
