//! The rule manager: one evaluation loop per group, reloads that keep alert state, and the
//! snapshot the Rules API serves.
//!
//! A reload reads every rule file first and changes nothing unless all of them are valid, so
//! a typo in one file never stops the rules already running (Prometheus and Thanos behave the
//! same). A group its file holds unchanged keeps running untouched; a changed group (same
//! file and name) takes over its predecessor's alerts and recorded series; a group or rule that is gone has its series
//! marked stale, so queries stop seeing them at once instead of after the lookback delta,
//! unless a rule of the new files records them (a rule moved or a group renamed).

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use strata_storepb::thanos;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::group::{Group, GroupKey, STALE_NAN};
use crate::rulefmt::{RuleFile, RuleGroup};
use crate::{Deps, RecordedSample, now_ms};

/// Rule files that could not be loaded; nothing was changed.
#[derive(Debug, thiserror::Error)]
#[error("loading rule files failed, the rules already loaded keep running:\n{}", .problems.join("\n"))]
pub struct ReloadError {
    /// One line per problem, each naming its file.
    pub problems: Vec<String>,
}

struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<Group>,
    /// The group as its file wrote it: a reload that finds it unchanged leaves it running.
    config: RuleGroup,
}

/// Evaluates the groups of the rule files `patterns` match.
#[derive(Debug)]
pub struct Manager {
    deps: Arc<Deps>,
    patterns: Vec<String>,
    running: Mutex<BTreeMap<GroupKey, Running>>,
    /// Whether rule files were loaded before: only the groups of the first load restore
    /// their alerts' `for` state (Prometheus restores at start-up, not at reloads).
    loaded_once: std::sync::atomic::AtomicBool,
    snapshots: Arc<RwLock<BTreeMap<GroupKey, thanos::RuleGroup>>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").finish_non_exhaustive()
    }
}

impl Manager {
    /// A manager with no groups yet: call [`Manager::reload`] to load the files.
    pub fn new(deps: Arc<Deps>, patterns: Vec<String>) -> Arc<Self> {
        Arc::new(Manager {
            deps,
            patterns,
            running: Mutex::new(BTreeMap::new()),
            loaded_once: std::sync::atomic::AtomicBool::new(false),
            snapshots: Arc::new(RwLock::new(BTreeMap::new())),
        })
    }

    /// The rule files the patterns match now, each once, in pattern order.
    pub fn files(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for p in &self.patterns {
            for f in strata_runtime::glob::expand_glob(p) {
                if f.is_file() {
                    let f = f.to_string_lossy().into_owned();
                    if seen.insert(f.clone()) {
                        out.push(f);
                    }
                }
            }
        }
        out
    }

    /// Reads every rule file and, if all are valid, replaces the running groups with theirs.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        // One reload at a time, files read under the lock: two overlapping reloads (SIGHUP
        // and `/-/reload`) must not apply an older reading after a newer one.
        let mut running = self.running.lock().await;
        let files = self.files();
        let mut loaded: Vec<(String, RuleFile)> = Vec::with_capacity(files.len());
        let mut problems = Vec::new();
        for f in &files {
            match std::fs::read_to_string(f) {
                Err(e) => problems.push(format!("{f}: cannot read the file: {e}")),
                Ok(text) => match crate::rulefmt::parse_with(
                    &text,
                    self.deps.options.experimental_functions,
                ) {
                    Ok(file) => loaded.push((f.clone(), file)),
                    Err(errs) => problems.extend(errs.into_iter().map(|e| format!("{f}: {e}"))),
                },
            }
        }
        let mut fresh: BTreeMap<GroupKey, (Group, RuleGroup)> = BTreeMap::new();
        for (file, rf) in &loaded {
            for g in &rf.groups {
                match Group::new(
                    file,
                    g,
                    self.deps.options.eval_interval,
                    self.deps.options.query_offset,
                ) {
                    Ok(group) => {
                        fresh.insert(group.key(), (group, g.clone()));
                    }
                    Err(errs) => problems.extend(errs),
                }
            }
        }
        if !problems.is_empty() {
            self.deps.metrics.reloaded(false, &[]);
            return Err(ReloadError { problems });
        }

        let first = !self
            .loaded_once
            .swap(true, std::sync::atomic::Ordering::SeqCst);
        for (g, _) in fresh.values_mut() {
            if first && self.deps.options.restore.is_some() {
                g.should_restore = true;
            } else {
                // Rules that a reload finds again take their restored state over below.
                g.mark_restored();
            }
        }
        let mut summary = Vec::with_capacity(fresh.len());
        for (key, (g, _)) in &fresh {
            summary.push((g.strategy, g.file.clone(), g.name.clone(), g.rules.len()));
            self.deps.metrics.group_loaded(
                &group_label(key),
                g.interval.as_secs_f64(),
                g.rules.len(),
            );
        }
        // A rule moved to another group or file (or a group renamed) keeps writing its
        // series: marking them stale now would open a gap until its next evaluation, and
        // Prometheus, which writes such markers two intervals late and stamped in the past,
        // sees them dropped as out of order. Series a rule of the new files records stay.
        let still_recorded = recorded_names(fresh.values().map(|(g, _)| g));
        // A group its file still holds as it was keeps running untouched, as in Prometheus:
        // no evaluation is delayed and its restore at start-up goes on. The others are
        // stopped; the ones that stay (changed) hand their state on.
        let mut stale = Vec::new();
        let old: Vec<(GroupKey, Running)> = std::mem::take(&mut *running).into_iter().collect();
        for (key, r) in old {
            if let Some((_, config)) = fresh.get(&key)
                && *config == r.config
                && !r.task.is_finished()
            {
                fresh.remove(&key);
                running.insert(key, r);
                continue;
            }
            let _ = r.stop.send(true);
            let mut prev = match r.task.await {
                Ok(g) => g,
                Err(e) => {
                    tracing::error!(group = %key.1, file = %key.0, err = %e, "rule group task failed");
                    continue;
                }
            };
            match fresh.get_mut(&key) {
                Some((next, _)) => stale.extend(next.take_state(&mut prev)),
                None => {
                    stale.extend(prev.recorded_series());
                    self.deps.metrics.group_removed(&group_label(&key));
                    if let Ok(mut s) = self.snapshots.write() {
                        s.remove(&key);
                    }
                }
            }
        }
        stale.retain(|labels| !still_recorded.covers(labels));
        if !stale.is_empty() {
            let ts = now_ms();
            self.deps.appender.append(
                stale
                    .into_iter()
                    .map(|labels| RecordedSample {
                        labels,
                        timestamp_ms: ts,
                        value: STALE_NAN,
                    })
                    .collect(),
            );
        }
        for (key, (g, config)) in fresh {
            if let Ok(mut s) = self.snapshots.write() {
                s.insert(key.clone(), g.snapshot());
            }
            let (stop, stopped) = watch::channel(false);
            let task = tokio::spawn(run_group(
                g,
                self.deps.clone(),
                self.snapshots.clone(),
                stopped,
            ));
            running.insert(key, Running { stop, task, config });
        }
        self.deps.metrics.reloaded(true, &summary);
        tracing::info!(
            files = files.len(),
            groups = running.len(),
            "rule files loaded"
        );
        Ok(())
    }

    /// Every group as the Rules API shows it, sorted by file and name.
    pub fn groups(&self) -> Vec<thanos::RuleGroup> {
        self.snapshots
            .read()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Each running group's task (tests: a group left running keeps its task).
    #[cfg(test)]
    async fn tasks(&self) -> BTreeMap<GroupKey, tokio::task::Id> {
        self.running
            .lock()
            .await
            .iter()
            .map(|(k, r)| (k.clone(), r.task.id()))
            .collect()
    }

    /// Stops every group (after its evaluation in progress).
    pub async fn stop(&self) {
        let mut running = self.running.lock().await;
        for (_, r) in std::mem::take(&mut *running) {
            let _ = r.stop.send(true);
            let _ = r.task.await;
        }
    }
}

/// What the rules of a configuration record: recording rules' names, and alert names (whose
/// `ALERTS` and `ALERTS_FOR_STATE` series carry them as `alertname`).
#[derive(Debug, Default)]
struct RecordedNames {
    metrics: BTreeSet<String>,
    alerts: BTreeSet<String>,
}

impl RecordedNames {
    /// Whether a rule of the configuration may record the series `labels`.
    fn covers(&self, labels: &strata_model::Labels) -> bool {
        match labels.metric_name() {
            Some(crate::alerting::ALERTS | crate::alerting::ALERTS_FOR_STATE) => labels
                .get("alertname")
                .is_some_and(|a| self.alerts.contains(a)),
            Some(name) => self.metrics.contains(name),
            None => false,
        }
    }
}

fn recorded_names<'a>(groups: impl Iterator<Item = &'a Group>) -> RecordedNames {
    let mut out = RecordedNames::default();
    for g in groups {
        for r in &g.rules {
            let rule = r.rule();
            match rule.kind {
                crate::rulefmt::RuleKind::Recording => out.metrics.insert(rule.name.clone()),
                crate::rulefmt::RuleKind::Alerting { .. } => out.alerts.insert(rule.name.clone()),
            };
        }
    }
    out
}

/// Prometheus' `rule_group` label value: `<file>;<group>`.
fn group_label(key: &GroupKey) -> String {
    format!("{};{}", key.0, key.1)
}

/// A group's loop: evaluate at each slot of its grid until told to stop; returns the group
/// (with its state) for a reload to take over.
async fn run_group(
    mut g: Group,
    deps: Arc<Deps>,
    snapshots: Arc<RwLock<BTreeMap<GroupKey, thanos::RuleGroup>>>,
    mut stop: watch::Receiver<bool>,
) -> Group {
    let key = g.key();
    let label = group_label(&key);
    let interval_ms = i64::try_from(g.interval.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    // The first evaluation is at the next slot, so restarts and reloads keep the grid.
    let mut ts = g.eval_timestamp(now_ms()) + interval_ms;
    let mut evaluations = 0u64;
    loop {
        let wait = Duration::from_millis(u64::try_from(ts - now_ms()).unwrap_or(0));
        tokio::select! {
            _ = stop.changed() => return g,
            _ = tokio::time::sleep(wait) => {}
        }
        // Slots that passed while the last evaluation ran are skipped, and counted.
        let behind = now_ms() - ts;
        let missed = if behind >= interval_ms {
            (behind / interval_ms) as u64
        } else {
            0
        };
        ts += missed as i64 * interval_ms;
        let started = Instant::now();
        let wall = now_ms();
        // An evaluation in progress finishes before a stop takes effect, as Prometheus'
        // group stop waits for its iteration: every rule gets its sample for the slot.
        // A panic (a bug) ends this evaluation, not the group: its rules would otherwise stop
        // being evaluated, and its alerts stop firing, without a sign but the log line.
        if let Err(panic) = AssertUnwindSafe(g.eval(ts, &deps)).catch_unwind().await {
            deps.metrics.failures(&label);
            tracing::error!(
                group = %key.1, file = %key.0, ts,
                panic = panic_message(panic.as_ref()),
                "rule group evaluation panicked; the group goes on at its next slot"
            );
        }
        g.evaluation_duration = started.elapsed();
        g.last_evaluation_ms = Some(wall);
        evaluations += 1;
        // As Prometheus: restore after the second evaluation, so that recording rules the
        // alerts depend on have caught up first.
        // (Not when a stop is waiting: restoring queries storage, and a reload or shutdown
        // would wait for it.)
        let stopping = stop.has_changed().unwrap_or(true);
        if g.should_restore && evaluations >= 2 && !stopping {
            if let Err(panic) = AssertUnwindSafe(g.restore_for_state(now_ms(), &deps))
                .catch_unwind()
                .await
            {
                tracing::error!(
                    group = %key.1, file = %key.0,
                    panic = panic_message(panic.as_ref()),
                    "restoring the group's alert state panicked; its alerts start afresh"
                );
            }
            g.should_restore = false;
        }
        g.last_eval_timestamp_ms = Some(ts);
        deps.metrics
            .iteration(&label, missed, g.evaluation_duration.as_secs_f64(), ts);
        if let Ok(mut s) = snapshots.write() {
            s.insert(key.clone(), g.snapshot());
        }
        ts += interval_ms;
    }
}

/// The message a panic was raised with, when it is text.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not text)")
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use strata_model::Labels;

    use super::*;
    use crate::alerting::AlertToSend;
    use crate::metrics::RuleMetrics;
    use crate::query::QueryAnswer;
    use crate::rulefmt::PartialResponseStrategy;
    use crate::{AlertSink, Appender, Querier, RuleOptions};

    #[derive(Debug, Default)]
    struct Fake {
        samples: StdMutex<Vec<RecordedSample>>,
        alerts: StdMutex<Vec<(AlertToSend, String)>>,
        queries: StdMutex<Vec<(String, i64, PartialResponseStrategy)>>,
        panicked: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl Querier for Fake {
        async fn instant(
            &self,
            expr: &str,
            ts_ms: i64,
            strategy: PartialResponseStrategy,
        ) -> Result<QueryAnswer, String> {
            self.queries
                .lock()
                .unwrap()
                .push((expr.to_owned(), ts_ms, strategy));
            let one = |pairs: &[(&str, &str)], v: f64| QueryAnswer {
                samples: vec![(Labels::from_pairs(pairs), v)],
                warnings: vec![],
            };
            match expr {
                "panics_once"
                    if self
                        .panicked
                        .swap(true, std::sync::atomic::Ordering::SeqCst) =>
                {
                    Ok(one(&[], 1.0))
                }
                "panics_once" => panic!("a bug in the first evaluation"),
                "up == 0" => Ok(one(&[("__name__", "up"), ("instance", "a")], 0.0)),
                "sum(x)" => Ok(one(&[], 7.0)),
                "sum(y)" => Ok(one(&[("job", "y")], 8.0)),
                _ => Err(format!("no such query {expr}")),
            }
        }
    }

    impl Appender for Fake {
        fn append(&self, samples: Vec<RecordedSample>) {
            self.samples.lock().unwrap().extend(samples);
        }
    }

    impl AlertSink for Fake {
        fn send(&self, alerts: Vec<AlertToSend>, generator_url: &str) {
            let mut a = self.alerts.lock().unwrap();
            a.extend(alerts.into_iter().map(|x| (x, generator_url.to_owned())));
        }
    }

    fn deps(fake: &Arc<Fake>) -> Arc<Deps> {
        Arc::new(Deps {
            querier: fake.clone(),
            appender: fake.clone(),
            alerts: fake.clone(),
            options: RuleOptions {
                external_labels: Labels::from_pairs(&[("replica", "r1")]),
                external_url: "http://q:9090".into(),
                generator: crate::GeneratorUrl::new(
                    "http://q:9090",
                    crate::GeneratorUrl::DEFAULT_TEMPLATE,
                )
                .unwrap(),
                eval_interval: Duration::from_millis(100),
                query_offset: Duration::ZERO,
                resend_delay: Duration::from_secs(60),
                restore: None,
                experimental_functions: false,
            },
            metrics: RuleMetrics::new(&mut Default::default()),
            rule_slots: None,
        })
    }

    async fn until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_evaluation_does_not_end_the_group() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.yml"),
            "groups:\n  - name: g\n    rules:\n      - record: p\n        expr: panics_once\n      - record: x:sum\n        expr: sum(x)\n",
        )
        .unwrap();
        let fake = Arc::new(Fake::default());
        let m = Manager::new(deps(&fake), vec![format!("{}/*.yml", dir.path().display())]);
        m.reload().await.unwrap();
        let count = |name: &str| {
            fake.samples
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.labels.get("__name__") == Some(name))
                .count()
        };
        // The first evaluation panicked before x:sum; the next ones record both.
        until("evaluations after the panic", || {
            count("p") >= 2 && count("x:sum") >= 2
        })
        .await;
        assert!(fake.panicked.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(m.groups().len(), 1);
        m.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn groups_evaluate_record_alert_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.yml");
        std::fs::write(
            &file,
            "groups:\n  - name: g\n    partial_response_strategy: warn\n    rules:\n      - record: x:sum\n        expr: sum(x)\n      - record: y:sum\n        expr: sum(y)\n      - alert: Down\n        expr: up == 0\n        labels:\n          severity: page\n      - record: broken\n        expr: broken_query\n",
        )
        .unwrap();
        let fake = Arc::new(Fake::default());
        let m = Manager::new(deps(&fake), vec![format!("{}/*.yml", dir.path().display())]);
        m.reload().await.unwrap();
        until("the alert", || !fake.alerts.lock().unwrap().is_empty()).await;
        until("ALERTS series", || {
            fake.samples
                .lock()
                .unwrap()
                .iter()
                .any(|s| s.labels.get("__name__") == Some("ALERTS"))
        })
        .await;
        {
            let samples = fake.samples.lock().unwrap();
            let x = samples
                .iter()
                .find(|s| s.labels.get("__name__") == Some("x:sum"))
                .unwrap();
            assert_eq!(x.value, 7.0);
            // Evaluation timestamps are on the 100 ms grid of the group.
            let g = Group::new(
                &file.to_string_lossy(),
                &crate::rulefmt::parse(&std::fs::read_to_string(&file).unwrap())
                    .unwrap()
                    .groups[0],
                Duration::from_millis(100),
                Duration::ZERO,
            )
            .unwrap();
            assert_eq!(g.eval_timestamp(x.timestamp_ms + 1), x.timestamp_ms);
            let (alert, url) = &fake.alerts.lock().unwrap()[0];
            assert_eq!(
                alert.labels,
                Labels::from_pairs(&[
                    ("alertname", "Down"),
                    ("instance", "a"),
                    ("severity", "page")
                ])
            );
            assert_eq!(url, "http://q:9090/graph?g0.expr=up+%3D%3D+0&g0.tab=1");
            let q = fake.queries.lock().unwrap();
            assert!(
                q.iter()
                    .all(|(_, _, s)| *s == PartialResponseStrategy::Warn)
            );
        }
        let groups = m.groups();
        assert_eq!(groups.len(), 1);
        let health: Vec<String> = groups[0]
            .rules
            .iter()
            .map(|r| match r.result.as_ref().unwrap() {
                thanos::rule::Result::Recording(x) => {
                    format!("{}:{}:{}", x.name, x.health, x.last_error)
                }
                thanos::rule::Result::Alert(x) => {
                    format!("{}:{}:{}", x.name, x.health, x.alerts.len())
                }
            })
            .collect();
        assert_eq!(
            health,
            vec![
                "x:sum:ok:".to_string(),
                "y:sum:ok:".into(),
                "Down:ok:1".into(),
                "broken:err:no such query broken_query".into()
            ]
        );

        // A bad file changes nothing.
        std::fs::write(
            dir.path().join("b.yml"),
            "groups:\n  - name: h\n    rules:\n      - record: z\n",
        )
        .unwrap();
        let err = m.reload().await.unwrap_err();
        assert!(err.to_string().contains("b.yml"), "{err}");
        assert_eq!(m.groups().len(), 1);
        std::fs::remove_file(dir.path().join("b.yml")).unwrap();

        // y:sum goes: its series is marked stale; the alert stays firing and is not re-sent.
        std::fs::write(
            &file,
            "groups:\n  - name: g\n    partial_response_strategy: warn\n    rules:\n      - record: x:sum\n        expr: sum(x)\n      - alert: Down\n        expr: up == 0\n        labels:\n          severity: page\n",
        )
        .unwrap();
        let sent_before = fake.alerts.lock().unwrap().len();
        m.reload().await.unwrap();
        let stale = || {
            fake.samples.lock().unwrap().iter().any(|s| {
                s.labels.get("__name__") == Some("y:sum")
                    && s.value.to_bits() == STALE_NAN.to_bits()
            })
        };
        assert!(stale());
        let count = |name: &str| {
            fake.samples
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.labels.get("__name__") == Some(name))
                .count()
        };
        let before = count("x:sum");
        until("evaluations after the reload", || {
            count("x:sum") > before + 1
        })
        .await;
        assert_eq!(fake.alerts.lock().unwrap().len(), sent_before);
        let g = &m.groups()[0];
        assert_eq!(g.rules.len(), 2);

        // A reload that changes nothing leaves the group running, as it was.
        let tasks = m.tasks().await;
        m.reload().await.unwrap();
        assert_eq!(m.tasks().await, tasks);
        // One changed file restarts its groups only.
        std::fs::write(
            dir.path().join("d.yml"),
            "groups:\n  - name: d\n    rules:\n      - record: d\n        expr: sum(x)\n",
        )
        .unwrap();
        m.reload().await.unwrap();
        let with_d = m.tasks().await;
        assert_eq!(with_d.len(), 2);
        std::fs::write(
            dir.path().join("d.yml"),
            "groups:\n  - name: d\n    interval: 1s\n    rules:\n      - record: d\n        expr: sum(x)\n",
        )
        .unwrap();
        m.reload().await.unwrap();
        let after = m.tasks().await;
        let g_key = tasks.keys().next().unwrap();
        assert_eq!(after[g_key], tasks[g_key]);
        let d_key = with_d.keys().find(|k| *k != g_key).unwrap();
        assert_ne!(after[d_key], with_d[d_key]);
        std::fs::remove_file(dir.path().join("d.yml")).unwrap();

        // The group renamed and x:sum moved to another file: its series is not marked stale
        // (the moved rule goes on recording it), nor the alert's.
        std::fs::write(
            &file,
            "groups:\n  - name: renamed\n    rules:\n      - alert: Down\n        expr: up == 0\n        labels:\n          severity: page\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("c.yml"),
            "groups:\n  - name: other\n    rules:\n      - record: x:sum\n        expr: sum(x)\n",
        )
        .unwrap();
        m.reload().await.unwrap();
        let stale_of = |name: &str| {
            fake.samples
                .lock()
                .unwrap()
                .iter()
                .filter(|s| {
                    s.labels.get("__name__") == Some(name)
                        && s.value.to_bits() == STALE_NAN.to_bits()
                })
                .count()
        };
        assert_eq!(stale_of("x:sum"), 0);
        assert_eq!(stale_of("ALERTS"), 0);
        assert_eq!(m.groups().len(), 2);
        m.stop().await;
    }
}
