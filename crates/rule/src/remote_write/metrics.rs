//! Prometheus' remote storage metrics (`storage/remote/queue_manager.go`, `write.go` of 2.42),
//! same names, help and labels, so existing dashboards and alerts (`PrometheusRemoteWrite*`,
//! `ThanosRule*`) keep working.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// `remote_name` and `url`: which remote a series is about.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RemoteLabels {
    pub(crate) remote_name: String,
    pub(crate) url: String,
}

type HistogramFamily = Family<RemoteLabels, Histogram, fn() -> Histogram>;

fn batch_duration_histogram() -> Histogram {
    // Prometheus' DefBuckets plus 25, 60, 120, 300 seconds.
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0, 120.0, 300.0,
    ])
}

/// Every family, registered once per [`super::RemoteWriter`].
#[derive(Debug, Clone)]
pub(crate) struct Families {
    /// Unlabelled, as in Prometheus: samples handed to remote storage.
    pub(crate) samples_in: Counter,
    /// Unlabelled, as in Prometheus: the newest timestamp appended.
    pub(crate) highest_timestamp: Gauge<f64, AtomicU64>,
    samples: Family<RemoteLabels, Counter>,
    failed: Family<RemoteLabels, Counter>,
    retried: Family<RemoteLabels, Counter>,
    dropped: Family<RemoteLabels, Counter>,
    bytes: Family<RemoteLabels, Counter>,
    pending: Family<RemoteLabels, Gauge>,
    highest_sent_timestamp: Family<RemoteLabels, Gauge<f64, AtomicU64>>,
    sent_batch_duration: HistogramFamily,
    shards: Family<RemoteLabels, Gauge>,
    shard_capacity: Family<RemoteLabels, Gauge>,
    max_samples_per_send: Family<RemoteLabels, Gauge>,
}

/// The metric handles of one remote.
#[derive(Debug, Clone)]
pub(crate) struct RemoteMetrics {
    pub(crate) samples: Counter,
    pub(crate) failed: Counter,
    pub(crate) retried: Counter,
    pub(crate) dropped: Counter,
    pub(crate) bytes: Counter,
    pub(crate) pending: Gauge,
    pub(crate) highest_sent_timestamp: Gauge<f64, AtomicU64>,
    pub(crate) sent_batch_duration: Histogram,
    pub(crate) shards: Gauge,
    pub(crate) shard_capacity: Gauge,
    pub(crate) max_samples_per_send: Gauge,
}

impl Families {
    pub(crate) fn register(registry: &mut Registry) -> Families {
        let f = Families {
            samples_in: Counter::default(),
            highest_timestamp: Gauge::default(),
            samples: Family::default(),
            failed: Family::default(),
            retried: Family::default(),
            dropped: Family::default(),
            bytes: Family::default(),
            pending: Family::default(),
            highest_sent_timestamp: Family::default(),
            sent_batch_duration: Family::new_with_constructor(batch_duration_histogram),
            shards: Family::default(),
            shard_capacity: Family::default(),
            max_samples_per_send: Family::default(),
        };
        const P: &str = "prometheus_remote_storage_";
        let name = |n: &str| format!("{P}{n}");
        registry.register(
            name("samples_in"),
            "Samples in to remote storage, compare to samples out for queue managers.",
            f.samples_in.clone(),
        );
        registry.register(
            name("highest_timestamp_in_seconds"),
            "Highest timestamp that has come into the remote storage via the Appender interface, in seconds since epoch.",
            f.highest_timestamp.clone(),
        );
        registry.register(
            name("samples"),
            "Total number of samples sent to remote storage.",
            f.samples.clone(),
        );
        registry.register(
            name("samples_failed"),
            "Total number of samples which failed on send to remote storage, non-recoverable errors.",
            f.failed.clone(),
        );
        registry.register(
            name("samples_retried"),
            "Total number of samples which failed on send to remote storage but were retried because the send error was recoverable.",
            f.retried.clone(),
        );
        registry.register(
            name("samples_dropped"),
            "Total number of samples which were dropped after being read from the WAL before being sent via remote write, either via relabelling or unintentionally because of an unknown reference ID.",
            f.dropped.clone(),
        );
        registry.register(
            name("bytes"),
            "The total number of bytes of data (not metadata) sent by the queue after compression.",
            f.bytes.clone(),
        );
        registry.register(
            name("samples_pending"),
            "The number of samples pending in the queues shards to be sent to the remote storage.",
            f.pending.clone(),
        );
        registry.register(
            name("queue_highest_sent_timestamp_seconds"),
            "Timestamp from a WAL sample, the highest timestamp successfully sent by this queue, in seconds since epoch.",
            f.highest_sent_timestamp.clone(),
        );
        registry.register(
            name("sent_batch_duration_seconds"),
            "Duration of send calls to the remote storage.",
            f.sent_batch_duration.clone(),
        );
        registry.register(
            name("shards"),
            "The number of shards used for parallel sending to the remote storage.",
            f.shards.clone(),
        );
        registry.register(
            name("shard_capacity"),
            "The capacity of each shard of the queue used for parallel sending to the remote storage.",
            f.shard_capacity.clone(),
        );
        registry.register(
            name("max_samples_per_send"),
            "The maximum number of samples to be sent, in a single request, to the remote storage.",
            f.max_samples_per_send.clone(),
        );
        f
    }

    pub(crate) fn remote(&self, remote_name: &str, url: &str) -> RemoteMetrics {
        let l = RemoteLabels {
            remote_name: remote_name.to_string(),
            url: url.to_string(),
        };
        RemoteMetrics {
            samples: self.samples.get_or_create(&l).clone(),
            failed: self.failed.get_or_create(&l).clone(),
            retried: self.retried.get_or_create(&l).clone(),
            dropped: self.dropped.get_or_create(&l).clone(),
            bytes: self.bytes.get_or_create(&l).clone(),
            pending: self.pending.get_or_create(&l).clone(),
            highest_sent_timestamp: self.highest_sent_timestamp.get_or_create(&l).clone(),
            sent_batch_duration: self.sent_batch_duration.get_or_create(&l).clone(),
            shards: self.shards.get_or_create(&l).clone(),
            shard_capacity: self.shard_capacity.get_or_create(&l).clone(),
            max_samples_per_send: self.max_samples_per_send.get_or_create(&l).clone(),
        }
    }
}
