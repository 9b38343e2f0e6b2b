//! Prometheus remote write for the stateless ruler (`--remote-write.config[-file]`): recorded
//! series are sent to one or more receivers instead of being stored in a local TSDB.
//!
//! Flow: the rule manager calls [`RemoteWriter::append`] once per evaluation with the
//! samples it recorded. Each sample's series gets the ruler's external labels (a label the
//! series already has wins, as in Prometheus' `processExternalLabels`), then each remote's
//! `write_relabel_configs` (a series the rules drop is counted in
//! `prometheus_remote_storage_samples_dropped_total`), and is queued on every remote.
//! [`RemoteWriter::run`] drives the senders: batches of up to `max_samples_per_send`
//! samples, or fewer after `batch_send_deadline`, each a snappy-compressed protobuf
//! `WriteRequest` `POST`ed with `Content-Encoding: snappy`,
//! `Content-Type: application/x-protobuf` and `X-Prometheus-Remote-Write-Version: 0.1.0`.
//! 5xx answers, network errors and (with `retry_on_http_429`) 429 are retried with
//! exponential backoff; any other non-2xx answer drops the batch (counted in
//! `…_samples_failed_total`, logged with the start of the answer's body). See `queue` for
//! sharding, ordering and the queue bound.
//!
//! # Durability
//!
//! **The queue is in memory only.** Thanos' stateless ruler keeps a write-ahead log under
//! `--data-dir` and replays it after a restart; Strata does not (yet). What is lost:
//! - on a crash or `SIGKILL`: every sample queued and not yet acknowledged by the receiver
//!   (at most `capacity × max_shards` per remote; normally one batch deadline's worth);
//! - on a graceful shutdown: what cannot be delivered within [`FLUSH_DEADLINE`] (the
//!   receiver is down or keeps failing), counted as dropped;
//! - while a receiver is down for long: the oldest samples beyond the queue bound, counted as
//!   dropped.
//!
//! Recording rules re-evaluate every interval, so a gap is bounded by the outage, and the
//! rule's next evaluations are delivered once the receiver is back.

mod client;
mod config;
mod metrics;
mod queue;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use strata_block::relabel::relabel;
use strata_model::Labels;

pub use config::{
    Auth, MetadataConfig, Pem, QueueConfig, RemoteConfig, RemoteWriteConfig, Secret, TlsConfig,
};

use metrics::Families;
use queue::{Pending, Remote};

/// How long a graceful shutdown keeps sending what is queued: Thanos passes Prometheus'
/// remote storage a one-minute flush deadline.
pub const FLUSH_DEADLINE: Duration = Duration::from_secs(60);

/// What went wrong setting up remote write. Every message names the remote or configuration
/// key at fault and what to change.
#[derive(Debug, thiserror::Error)]
pub enum RemoteWriteError {
    /// Not YAML, the wrong shape, or an unknown key (the parser names it and its position).
    #[error("--remote-write.config: {0}")]
    Yaml(String),
    #[error("--remote-write.config: remote_write[{index}].{key}: {detail}")]
    Invalid {
        index: usize,
        key: &'static str,
        detail: String,
    },
    #[error(
        "--remote-write.config: remote_write[{index}].{key} is not supported by Strata yet: remove it (for sigv4, oauth2 and azuread: let a signing proxy in front of the receiver authenticate, and point url at the proxy)"
    )]
    Unsupported { index: usize, key: &'static str },
    #[error("remote write {remote:?}: reading {key} {path}: {source}")]
    File {
        remote: String,
        key: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("remote write {remote:?}: {detail}")]
    Client { remote: String, detail: String },
}

/// One sample a rule produced. A stale marker (the series disappeared from the rule's
/// result) is a NaN with Prometheus' `StaleNaN` bit pattern `0x7ff0000000000002`; the value
/// is sent bit for bit, so the receiver recognizes it.
pub use crate::RecordedSample;

/// The remote write side of the stateless ruler: one queue per configured remote.
///
/// ```no_run
/// # async fn demo(yaml: &str) -> Result<(), strata_rule::remote_write::RemoteWriteError> {
/// use strata_model::Labels;
/// use strata_rule::remote_write::{RecordedSample, RemoteWriteConfig, RemoteWriter};
///
/// let mut registry = prometheus_client::registry::Registry::default();
/// let writer = RemoteWriter::new(
///     RemoteWriteConfig::from_yaml(yaml)?,
///     Labels::from_pairs(&[("replica", "ruler-0")]),
///     &mut registry,
/// )?;
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let senders = tokio::spawn(writer.clone().run(async {
///     let _ = stopped.await;
/// }));
/// // After each evaluation of a recording rule:
/// writer.append(vec![RecordedSample {
///     labels: Labels::from_pairs(&[("__name__", "job:up:sum")]),
///     timestamp_ms: 1_700_000_000_000,
///     value: 3.0,
/// }]);
/// // On shutdown: flushes for at most the flush deadline.
/// let _ = stop.send(());
/// let _ = senders.await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct RemoteWriter {
    remotes: Vec<Arc<Remote>>,
    external_labels: Labels,
    families: Families,
    highest_ms: AtomicI64,
    /// Milliseconds; see [`RemoteWriter::set_flush_deadline`].
    flush_deadline_ms: AtomicU64,
    /// Set by the first [`RemoteWriter::run`]: a second set of senders would break the
    /// per-series order.
    running: AtomicBool,
}

impl RemoteWriter {
    /// Builds the clients and queues and registers the metrics in `registry`. Call it once per
    /// registry: prometheus-client would expose a second registration of the same names twice
    /// (a configuration reload must build a new registry or keep the writer). Fails on an
    /// unusable TLS file, credentials file or proxy.
    pub fn new(
        config: RemoteWriteConfig,
        external_labels: Labels,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Result<Arc<Self>, RemoteWriteError> {
        let families = Families::register(registry);
        let mut remotes = Vec::with_capacity(config.remotes.len());
        for cfg in config.remotes {
            let sender = client::Sender::new(&cfg)?;
            let m = families.remote(&cfg.remote_name, cfg.url.as_str());
            remotes.push(Arc::new(Remote::new(cfg, sender, m)));
        }
        Ok(Arc::new(RemoteWriter {
            remotes,
            external_labels,
            families,
            highest_ms: AtomicI64::new(i64::MIN),
            flush_deadline_ms: AtomicU64::new(FLUSH_DEADLINE.as_millis() as u64),
            running: AtomicBool::new(false),
        }))
    }

    /// Changes how long [`RemoteWriter::run`] keeps flushing after shutdown (default
    /// [`FLUSH_DEADLINE`]); takes effect at the next shutdown.
    pub fn set_flush_deadline(&self, deadline: Duration) {
        self.flush_deadline_ms.store(
            u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
    }

    /// The configured remotes' `remote_name`s, in configuration order.
    pub fn remote_names(&self) -> Vec<String> {
        self.remotes
            .iter()
            .map(|r| r.cfg.remote_name.clone())
            .collect()
    }

    /// Queues one evaluation's samples on every remote. Never blocks on the network: a full
    /// queue drops its oldest samples instead (see the module docs).
    pub fn append(&self, samples: Vec<RecordedSample>) {
        if samples.is_empty() {
            return;
        }
        self.families.samples_in.inc_by(samples.len() as u64);
        if let Some(max) = samples.iter().map(|s| s.timestamp_ms).max() {
            let prev = self.highest_ms.fetch_max(max, Ordering::SeqCst);
            if max > prev {
                self.families.highest_timestamp.set(max as f64 / 1000.0);
            }
        }
        if self.remotes.is_empty() {
            return;
        }
        let with_external: Vec<(Arc<Labels>, i64, f64)> = samples
            .into_iter()
            .map(|s| {
                (
                    Arc::new(add_external_labels(&s.labels, &self.external_labels)),
                    s.timestamp_ms,
                    s.value,
                )
            })
            .collect();
        for remote in &self.remotes {
            let rules = &remote.cfg.write_relabel_configs;
            let mut dropped = 0u64;
            let mut queued = Vec::with_capacity(with_external.len());
            // One evaluation holds each series once (or a few times), so relabeling per
            // sample costs about what per-series caching would.
            for (series, timestamp_ms, value) in &with_external {
                let series = if rules.is_empty() {
                    series.clone()
                } else {
                    match relabel(series, rules) {
                        Some(l) if !l.is_empty() => Arc::new(l),
                        _ => {
                            dropped += 1;
                            continue;
                        }
                    }
                };
                queued.push(Pending {
                    series,
                    timestamp_ms: *timestamp_ms,
                    value: *value,
                });
            }
            if dropped > 0 {
                remote.metrics.dropped.inc_by(dropped);
            }
            remote.enqueue(queued);
        }
    }

    /// Runs the senders until `shutdown` completes, then flushes what is queued for at most
    /// the flush deadline ([`FLUSH_DEADLINE`] unless changed); whatever is left after it is
    /// counted as dropped.
    ///
    /// Call it once: a second call logs an error and returns at once.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        if self.running.swap(true, Ordering::SeqCst) {
            tracing::error!("RemoteWriter::run called twice; the second call does nothing");
            return;
        }
        let mut tasks = tokio::task::JoinSet::new();
        for remote in &self.remotes {
            for idx in 0..remote.shard_count() {
                tasks.spawn(remote.clone().run_shard(idx));
            }
        }
        shutdown.await;
        let deadline = tokio::time::Instant::now()
            + Duration::from_millis(self.flush_deadline_ms.load(Ordering::SeqCst));
        for remote in &self.remotes {
            remote.begin_stop(deadline);
        }
        // An attempt already under way may outlive the deadline by up to `remote_timeout`;
        // give it a moment, then stop waiting.
        let grace = deadline + Duration::from_secs(1);
        let drained =
            tokio::time::timeout_at(grace, async { while tasks.join_next().await.is_some() {} })
                .await;
        if drained.is_err() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        for remote in &self.remotes {
            let lost = remote.abandon_pending();
            if lost > 0 {
                tracing::error!(
                    remote_name = %remote.cfg.remote_name,
                    url = %remote.cfg.url,
                    samples = lost,
                    "remote write flush deadline passed: queued samples dropped"
                );
            }
        }
    }
}

/// Adds the external labels a series does not already have: on a name clash the series'
/// own value wins, as in Prometheus' remote write (`processExternalLabels`).
pub(crate) fn add_external_labels(series: &Labels, external: &Labels) -> Labels {
    if external.is_empty() {
        return series.clone();
    }
    let mut b = series.builder();
    for l in external.iter() {
        if !series.contains(&l.name) {
            b.set(l.name.clone(), l.value.clone());
        }
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn series_labels_win_over_external_labels() {
        let series = Labels::from_pairs(&[("__name__", "x"), ("replica", "mine")]);
        let ext = Labels::from_pairs(&[("replica", "r0"), ("cluster", "eu")]);
        assert_eq!(
            add_external_labels(&series, &ext),
            Labels::from_pairs(&[("__name__", "x"), ("replica", "mine"), ("cluster", "eu")])
        );
        assert_eq!(add_external_labels(&series, &Labels::empty()), series);
    }

    fn writer(yaml: &str, ext: &[(&str, &str)]) -> (Arc<RemoteWriter>, Registry) {
        let mut reg = Registry::default();
        let w = RemoteWriter::new(
            RemoteWriteConfig::from_yaml(yaml).unwrap(),
            Labels::from_pairs(ext),
            &mut reg,
        )
        .unwrap();
        (w, reg)
    }

    fn metrics_text(reg: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, reg).unwrap();
        out
    }

    #[test]
    fn relabel_applies_after_external_labels_and_drops_are_counted() {
        let (w, reg) = writer(
            r#"
remote_write:
  - url: http://127.0.0.1:1/api/v1/write
    name: r
    write_relabel_configs:
      - source_labels: [cluster, __name__]
        regex: "eu;drop_me"
        action: drop
      - target_label: via
        replacement: rw
"#,
            &[("cluster", "eu")],
        );
        w.append(vec![
            RecordedSample {
                labels: Labels::from_pairs(&[("__name__", "keep_me")]),
                timestamp_ms: 1000,
                value: 1.0,
            },
            RecordedSample {
                labels: Labels::from_pairs(&[("__name__", "drop_me")]),
                timestamp_ms: 1000,
                value: 2.0,
            },
        ]);
        let text = metrics_text(&reg);
        assert!(
            text.contains(
                "prometheus_remote_storage_samples_dropped_total{remote_name=\"r\",url=\"http://127.0.0.1:1/api/v1/write\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("prometheus_remote_storage_samples_pending{remote_name=\"r\",url=\"http://127.0.0.1:1/api/v1/write\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("prometheus_remote_storage_samples_in_total 2"),
            "{text}"
        );
        assert!(
            text.contains("prometheus_remote_storage_highest_timestamp_in_seconds 1.0"),
            "{text}"
        );
        let st = w.remotes[0].clone();
        let got = st.take_all_for_test();
        assert_eq!(got.len(), 1);
        assert_eq!(
            *got[0].series,
            Labels::from_pairs(&[("__name__", "keep_me"), ("cluster", "eu"), ("via", "rw")])
        );
    }

    #[test]
    fn a_full_queue_drops_the_oldest() {
        let (w, reg) = writer(
            "remote_write:\n- url: http://127.0.0.1:1/\n  name: q\n  queue_config:\n    capacity: 3\n    max_shards: 1\n",
            &[],
        );
        let samples = (0..5)
            .map(|i| RecordedSample {
                labels: Labels::from_pairs(&[("__name__", "m")]),
                timestamp_ms: i,
                value: i as f64,
            })
            .collect();
        w.append(samples);
        let got: Vec<i64> = w.remotes[0]
            .take_all_for_test()
            .iter()
            .map(|p| p.timestamp_ms)
            .collect();
        assert_eq!(got, [2, 3, 4]);
        assert!(
            metrics_text(&reg).contains("prometheus_remote_storage_samples_dropped_total{remote_name=\"q\",url=\"http://127.0.0.1:1/\"} 2")
        );
    }
}
