//! The ruler's own metrics, under the names Prometheus' rule manager and Thanos' ruler give
//! them, so the Thanos mixin's alerts and dashboards (`ThanosRuleHighRuleEvaluationFailures`,
//! `ThanosRuleRuleEvaluationLatencyHigh`, …) keep working unchanged.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::rulefmt::PartialResponseStrategy;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabel {
    rule_group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StrategyLabel {
    strategy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoadedLabels {
    strategy: String,
    file: String,
    group: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Handles on the ruler's metrics (cheap to clone: each is shared).
#[derive(Debug, Clone, Default)]
pub struct RuleMetrics {
    evaluations: Family<GroupLabel, Counter>,
    failures: Family<GroupLabel, Counter>,
    last_samples: Family<GroupLabel, Gauge>,
    interval: Family<GroupLabel, FloatGauge>,
    last_duration: Family<GroupLabel, FloatGauge>,
    last_timestamp: Family<GroupLabel, FloatGauge>,
    iterations: Family<GroupLabel, Counter>,
    missed: Family<GroupLabel, Counter>,
    rules: Family<GroupLabel, Gauge>,
    warnings: Family<StrategyLabel, Counter>,
    loaded: Family<LoadedLabels, Gauge>,
    reload_ok: Gauge,
    reload_time: FloatGauge,
}

fn group(rule_group: &str) -> GroupLabel {
    GroupLabel {
        rule_group: rule_group.to_owned(),
    }
}

impl RuleMetrics {
    /// Registers every metric in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let m = RuleMetrics::default();
        registry.register(
            "prometheus_rule_evaluations",
            "The total number of rule evaluations.",
            m.evaluations.clone(),
        );
        registry.register(
            "prometheus_rule_evaluation_failures",
            "The total number of rule evaluation failures.",
            m.failures.clone(),
        );
        registry.register(
            "prometheus_rule_group_last_evaluation_samples",
            "The number of samples returned during the last rule group evaluation.",
            m.last_samples.clone(),
        );
        registry.register(
            "prometheus_rule_group_interval_seconds",
            "The interval of a rule group.",
            m.interval.clone(),
        );
        registry.register(
            "prometheus_rule_group_last_duration_seconds",
            "The duration of the last rule group evaluation.",
            m.last_duration.clone(),
        );
        registry.register(
            "prometheus_rule_group_last_evaluation_timestamp_seconds",
            "The timestamp of the last rule group evaluation in seconds.",
            m.last_timestamp.clone(),
        );
        registry.register(
            "prometheus_rule_group_iterations",
            "The total number of scheduled rule group evaluations, whether executed or missed.",
            m.iterations.clone(),
        );
        registry.register(
            "prometheus_rule_group_iterations_missed",
            "The total number of rule group evaluations missed due to slow rule group evaluation.",
            m.missed.clone(),
        );
        registry.register(
            "prometheus_rule_group_rules",
            "The number of rules.",
            m.rules.clone(),
        );
        registry.register(
            "thanos_rule_evaluation_with_warnings",
            "The total number of rule evaluation that were successful but had warnings which can indicate partial error.",
            m.warnings.clone(),
        );
        registry.register(
            "thanos_rule_loaded_rules",
            "Loaded rules partitioned by file and group.",
            m.loaded.clone(),
        );
        registry.register(
            "thanos_rule_config_last_reload_successful",
            "Whether the last configuration reload attempt was successful.",
            m.reload_ok.clone(),
        );
        registry.register(
            "thanos_rule_config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration reload.",
            m.reload_time.clone(),
        );
        // Both strategies are exposed from the start, as Thanos does, so rate() over them
        // sees the first warning.
        for s in [
            PartialResponseStrategy::Abort,
            PartialResponseStrategy::Warn,
        ] {
            let _ = m.warnings.get_or_create(&strategy(s));
        }
        m
    }

    pub(crate) fn evaluations(&self, g: &str) {
        self.evaluations.get_or_create(&group(g)).inc();
    }

    pub(crate) fn failures(&self, g: &str) {
        self.failures.get_or_create(&group(g)).inc();
    }

    pub(crate) fn last_samples(&self, g: &str, n: usize) {
        self.last_samples.get_or_create(&group(g)).set(n as i64);
    }

    pub(crate) fn warnings(&self, s: PartialResponseStrategy) {
        self.warnings.get_or_create(&strategy(s)).inc();
    }

    /// One scheduled iteration done, `missed` skipped before it.
    pub(crate) fn iteration(&self, g: &str, missed: u64, duration_s: f64, ts_ms: i64) {
        let l = group(g);
        self.iterations.get_or_create(&l).inc_by(missed + 1);
        if missed > 0 {
            self.missed.get_or_create(&l).inc_by(missed);
        }
        self.last_duration.get_or_create(&l).set(duration_s);
        self.last_timestamp
            .get_or_create(&l)
            .set(ts_ms as f64 / 1000.0);
    }

    /// A group is (re)loaded.
    pub(crate) fn group_loaded(&self, g: &str, interval_s: f64, rules: usize) {
        let l = group(g);
        self.interval.get_or_create(&l).set(interval_s);
        self.rules.get_or_create(&l).set(rules as i64);
        // Created now so a group that never fails still shows a zero.
        let _ = self.evaluations.get_or_create(&l);
        let _ = self.failures.get_or_create(&l);
        let _ = self.missed.get_or_create(&l);
    }

    /// A group is gone: its series go too.
    pub(crate) fn group_removed(&self, g: &str) {
        let l = group(g);
        for f in [
            &self.evaluations,
            &self.failures,
            &self.iterations,
            &self.missed,
        ] {
            f.remove(&l);
        }
        self.last_samples.remove(&l);
        self.rules.remove(&l);
        for f in [&self.interval, &self.last_duration, &self.last_timestamp] {
            f.remove(&l);
        }
    }

    /// The outcome of a reload: which groups are loaded now.
    pub(crate) fn reloaded(
        &self,
        ok: bool,
        groups: &[(PartialResponseStrategy, String, String, usize)],
    ) {
        self.reload_ok.set(i64::from(ok));
        if !ok {
            return;
        }
        self.reload_time.set(crate::now_ms() as f64 / 1000.0);
        self.loaded.clear();
        for (s, file, name, n) in groups {
            self.loaded
                .get_or_create(&LoadedLabels {
                    strategy: s.as_str().to_owned(),
                    file: file.clone(),
                    group: name.clone(),
                })
                .set(*n as i64);
        }
    }
}

fn strategy(s: PartialResponseStrategy) -> StrategyLabel {
    StrategyLabel {
        strategy: s.as_str().to_ascii_lowercase(),
    }
}
