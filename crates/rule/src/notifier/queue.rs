//! The bounded alert queue between the rule manager (which must never wait on an
//! Alertmanager) and the sending loop, with Thanos' label handling on the way in.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use strata_block::relabel::{RelabelConfig, relabel};
use strata_model::{Label, Labels};
use tokio::sync::Notify;

use super::Alert;

/// The queue's metrics, under Thanos' names.
#[derive(Debug, Clone, Default)]
struct QueueMetrics {
    pushed: Counter,
    popped: Counter,
    dropped: Counter,
    capacity: Gauge,
    length: Gauge,
}

/// Alerts waiting to be sent. Full, it drops the oldest in favour of the newest: the newest
/// state of an alert is what Alertmanager needs, and older entries are re-sent anyway.
#[derive(Debug)]
pub(crate) struct Queue {
    capacity: usize,
    max_batch: usize,
    /// External labels, without the dropped ones (Thanos never adds a label it drops).
    to_add: Vec<Label>,
    to_drop: HashSet<String>,
    relabel: Vec<RelabelConfig>,
    alerts: Mutex<VecDeque<Alert>>,
    more: Notify,
    metrics: QueueMetrics,
}

impl Queue {
    pub(crate) fn new(
        capacity: usize,
        max_batch: usize,
        external_labels: &Labels,
        label_drop: &[String],
        relabel: Vec<RelabelConfig>,
        registry: &mut Registry,
    ) -> Queue {
        let to_drop: HashSet<String> = label_drop.iter().cloned().collect();
        let to_add = external_labels
            .iter()
            .filter(|l| !to_drop.contains(&l.name))
            .cloned()
            .collect();
        let metrics = QueueMetrics::default();
        registry.register(
            "thanos_alert_queue_alerts_dropped",
            "Total number of alerts that were dropped from the queue.",
            metrics.dropped.clone(),
        );
        registry.register(
            "thanos_alert_queue_alerts_pushed",
            "Total number of alerts pushed to the queue.",
            metrics.pushed.clone(),
        );
        registry.register(
            "thanos_alert_queue_alerts_popped",
            "Total number of alerts popped from the queue.",
            metrics.popped.clone(),
        );
        registry.register(
            "thanos_alert_queue_capacity",
            "Capacity of the alert queue.",
            metrics.capacity.clone(),
        );
        registry.register(
            "thanos_alert_queue_length",
            "Length of the alert queue.",
            metrics.length.clone(),
        );
        let capacity = capacity.max(1);
        metrics.capacity.set(capacity as i64);
        Queue {
            capacity,
            max_batch: max_batch.max(1),
            to_add,
            to_drop,
            relabel,
            alerts: Mutex::new(VecDeque::new()),
            more: Notify::new(),
            metrics,
        }
    }

    /// Thanos' order: the alert's labels minus `--alert.label-drop`, then the external labels
    /// (overriding the alert's own of the same name), then `--alert.relabel-config`. `None`
    /// when the relabeling drops the alert.
    pub(crate) fn process_labels(&self, labels: &Labels) -> Option<Labels> {
        let mut b = strata_model::LabelsBuilder::default();
        for l in labels.iter().filter(|l| !self.to_drop.contains(&l.name)) {
            b.set(l.name.clone(), l.value.clone());
        }
        for l in &self.to_add {
            b.set(l.name.clone(), l.value.clone());
        }
        let lset = b.build();
        if self.relabel.is_empty() {
            return Some(lset);
        }
        relabel(&lset, &self.relabel)
    }

    /// Adds alerts; never waits. Counts every alert given as pushed (relabel-dropped ones
    /// included, as Thanos does) and every alert lost to the capacity as dropped.
    pub(crate) fn push(&self, alerts: Vec<Alert>) {
        if alerts.is_empty() {
            return;
        }
        self.metrics.pushed.inc_by(alerts.len() as u64);
        let mut kept: Vec<Alert> = alerts
            .into_iter()
            .filter_map(|mut a| {
                a.labels = self.process_labels(&a.labels)?;
                Some(a)
            })
            .collect();
        if kept.is_empty() {
            return;
        }
        if kept.len() > self.capacity {
            let d = kept.len() - self.capacity;
            kept.drain(..d);
            tracing::warn!(
                dropped = d,
                "alert batch larger than the queue capacity, dropping alerts"
            );
            self.metrics.dropped.inc_by(d as u64);
        }
        let mut q = self.alerts.lock().unwrap_or_else(|p| p.into_inner());
        let overflow = (q.len() + kept.len()).saturating_sub(self.capacity);
        if overflow > 0 {
            q.drain(..overflow);
            tracing::warn!(
                dropped = overflow,
                "alert notification queue full, dropping the oldest alerts"
            );
            self.metrics.dropped.inc_by(overflow as u64);
        }
        q.extend(kept);
        self.metrics.length.set(q.len() as i64);
        drop(q);
        self.more.notify_one();
    }

    /// Takes up to the maximum batch size from the front, waiting while the queue is empty.
    pub(crate) async fn pop(&self) -> Vec<Alert> {
        loop {
            // Registered before looking, so a push between the look and the wait still wakes us.
            let notified = self.more.notified();
            if let Some(batch) = self.try_pop() {
                return batch;
            }
            notified.await;
        }
    }

    fn try_pop(&self) -> Option<Vec<Alert>> {
        let mut q = self.alerts.lock().unwrap_or_else(|p| p.into_inner());
        if q.is_empty() {
            return None;
        }
        let n = q.len().min(self.max_batch);
        let batch: Vec<Alert> = q.drain(..n).collect();
        self.metrics.length.set(q.len() as i64);
        self.metrics.popped.inc_by(n as u64);
        Some(batch)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.alerts.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    fn alert(name: &str, extra: &[(&str, &str)]) -> Alert {
        let mut pairs = vec![("alertname", name)];
        pairs.extend_from_slice(extra);
        Alert {
            labels: Labels::from_pairs(&pairs),
            annotations: Labels::default(),
            starts_at_ms: 0,
            ends_at_ms: None,
            generator_url: String::new(),
        }
    }

    fn metrics(reg: &Registry) -> String {
        let mut s = String::new();
        encode(&mut s, reg).unwrap();
        s
    }

    #[test]
    fn label_order_is_drop_then_external_then_relabel() {
        let mut reg = Registry::default();
        let rules = strata_block::relabel::parse_relabel_configs(
            "- source_labels: [cluster]\n  target_label: origin\n- source_labels: [severity]\n  regex: debug\n  action: drop\n",
        )
        .unwrap();
        let q = Queue::new(
            10,
            5,
            &Labels::from_pairs(&[("cluster", "eu"), ("replica", "a")]),
            &["replica".to_string(), "instance".to_string()],
            rules,
            &mut reg,
        );
        // The alert's own `cluster` is overridden; `instance` dropped; `replica` (an external
        // label that is also dropped) never added; relabel sees the external label.
        let got = q
            .process_labels(&Labels::from_pairs(&[
                ("alertname", "X"),
                ("cluster", "mine"),
                ("instance", "i"),
            ]))
            .unwrap();
        assert_eq!(
            got,
            Labels::from_pairs(&[("alertname", "X"), ("cluster", "eu"), ("origin", "eu")])
        );
        assert!(
            q.process_labels(&Labels::from_pairs(&[
                ("alertname", "X"),
                ("severity", "debug")
            ]))
            .is_none()
        );

        q.push(vec![alert("A", &[]), alert("B", &[("severity", "debug")])]);
        assert_eq!(q.len(), 1);
        let m = metrics(&reg);
        assert!(
            m.contains("thanos_alert_queue_alerts_pushed_total 2"),
            "{m}"
        );
        assert!(
            m.contains("thanos_alert_queue_alerts_dropped_total 0"),
            "{m}"
        );
    }

    #[tokio::test]
    async fn overflow_drops_the_oldest_and_pops_in_batches() {
        let mut reg = Registry::default();
        let q = Queue::new(3, 2, &Labels::default(), &[], Vec::new(), &mut reg);
        q.push(vec![alert("a", &[]), alert("b", &[])]);
        q.push(vec![alert("c", &[]), alert("d", &[])]);
        // One larger than the capacity on its own: its oldest are dropped first.
        let m = metrics(&reg);
        assert!(
            m.contains("thanos_alert_queue_alerts_dropped_total 1"),
            "{m}"
        );
        assert!(m.contains("thanos_alert_queue_length 3"), "{m}");
        assert!(m.contains("thanos_alert_queue_capacity 3"), "{m}");
        let names = |b: Vec<Alert>| {
            b.iter()
                .map(|a| a.labels.get("alertname").unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(q.pop().await), ["b", "c"]);
        assert_eq!(names(q.pop().await), ["d"]);
        q.push((0..5).map(|i| alert(&i.to_string(), &[])).collect());
        assert_eq!(names(q.pop().await), ["2", "3"]);
        let m = metrics(&reg);
        assert!(
            m.contains("thanos_alert_queue_alerts_dropped_total 3"),
            "{m}"
        );
        assert!(
            m.contains("thanos_alert_queue_alerts_pushed_total 9"),
            "{m}"
        );
        assert!(
            m.contains("thanos_alert_queue_alerts_popped_total 5"),
            "{m}"
        );
        // pop waits for a push.
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), q.pop());
        assert_eq!(names(waiting.await.unwrap()), ["4"]);
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), q.pop());
        assert!(waiting.await.is_err());
    }
}
