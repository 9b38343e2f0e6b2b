//! The in-memory queue of one remote: shards, batching, retries.
//!
//! Each remote has `min_shards` shards (one by default). A series always goes to the same
//! shard (by the hash of its final label set) and each shard sends one batch at a time, in
//! queue order, retrying it until it is sent or given up before taking the next: so the
//! samples of a series reach the receiver in the order they were appended, which a TSDB
//! receiver requires (it refuses out-of-order samples for good). Prometheus re-shards
//! dynamically between `min_shards` and `max_shards` from the measured throughput; a ruler's
//! output is small and bursty, so Strata keeps the shard count fixed.
//!
//! The queue is bounded: at most `capacity × max_shards` samples (Prometheus' own ceiling of
//! samples pending in memory), split evenly over the shards. When a shard is full the oldest
//! sample is dropped and counted in `prometheus_remote_storage_samples_dropped_total`: the
//! ruler never blocks on a slow or dead receiver, and the newest evaluations, which matter
//! most to dashboards and alerts downstream, are the ones kept.

use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use strata_model::Labels;
use strata_prompb::{Label, Sample, TimeSeries, WriteRequest, encode_write_request};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::client::{Failure, Sender, Verdict};
use super::config::RemoteConfig;
use super::metrics::RemoteMetrics;

/// One sample waiting to be sent, with its series' final labels (external labels and write
/// relabeling applied).
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) series: Arc<Labels>,
    pub(crate) timestamp_ms: i64,
    pub(crate) value: f64,
}

#[derive(Debug, Default)]
struct ShardState {
    queue: VecDeque<Pending>,
    /// When the oldest sample not yet batched arrived: the batch deadline runs from here.
    oldest_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct Shard {
    state: Mutex<ShardState>,
    notify: Notify,
}

/// One remote: configuration, client, shards and metrics.
#[derive(Debug)]
pub(crate) struct Remote {
    pub(crate) cfg: RemoteConfig,
    sender: Sender,
    shards: Vec<Shard>,
    per_shard_limit: usize,
    pub(crate) metrics: RemoteMetrics,
    stopping: AtomicBool,
    /// When stopping: the instant after which no further attempt starts.
    flush_deadline: Mutex<Option<Instant>>,
    highest_sent_ms: AtomicI64,
    /// Samples taken into a batch whose sending has not finished: lost if the flush deadline
    /// aborts the sender, and then counted as dropped.
    in_flight: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a queue half-updated in a way that matters
    // more than losing the remote entirely; keep going with the data as it is.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Remote {
    pub(crate) fn new(cfg: RemoteConfig, sender: Sender, metrics: RemoteMetrics) -> Remote {
        let shards = cfg.queue.min_shards.max(1);
        let total = cfg.queue.capacity.saturating_mul(cfg.queue.max_shards);
        let per_shard_limit = (total / shards).max(1);
        metrics.shards.set(shards as i64);
        metrics.shard_capacity.set(cfg.queue.capacity as i64);
        metrics
            .max_samples_per_send
            .set(cfg.queue.max_samples_per_send as i64);
        Remote {
            cfg,
            sender,
            shards: (0..shards).map(|_| Shard::default()).collect(),
            per_shard_limit,
            metrics,
            stopping: AtomicBool::new(false),
            flush_deadline: Mutex::new(None),
            highest_sent_ms: AtomicI64::new(i64::MIN),
            in_flight: AtomicU64::new(0),
        }
    }

    pub(crate) fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Queues the samples of one evaluation; never waits on the network.
    pub(crate) fn enqueue(&self, samples: Vec<Pending>) {
        let now = Instant::now();
        let n = self.shards.len();
        let mut by_shard: Vec<Vec<Pending>> = vec![Vec::new(); n];
        for p in samples {
            let i = if n == 1 {
                0
            } else {
                let mut h = DefaultHasher::new();
                p.series.hash(&mut h);
                (h.finish() % n as u64) as usize
            };
            by_shard[i].push(p);
        }
        for (shard, batch) in self.shards.iter().zip(by_shard) {
            if batch.is_empty() {
                continue;
            }
            let added = batch.len() as i64;
            let mut dropped = 0u64;
            {
                let mut st = lock(&shard.state);
                if st.queue.is_empty() {
                    st.oldest_at = Some(now);
                }
                for p in batch {
                    if st.queue.len() >= self.per_shard_limit {
                        st.queue.pop_front();
                        dropped += 1;
                    }
                    st.queue.push_back(p);
                }
            }
            self.metrics.pending.inc_by(added - dropped as i64);
            if dropped > 0 {
                self.metrics.dropped.inc_by(dropped);
                tracing::warn!(
                    remote_name = %self.cfg.remote_name,
                    url = %self.cfg.url,
                    dropped,
                    "remote write queue full: dropped the oldest samples (the receiver is too slow or down; raise queue_config.capacity or min_shards)"
                );
            }
            shard.notify.notify_one();
        }
    }

    /// Switches to flushing: every shard sends what it holds, then stops; no attempt starts
    /// after `deadline`.
    pub(crate) fn begin_stop(&self, deadline: Instant) {
        *lock(&self.flush_deadline) = Some(deadline);
        self.stopping.store(true, Ordering::SeqCst);
        for s in &self.shards {
            s.notify.notify_one();
        }
    }

    /// Counts what is still queued or was being sent when the senders were aborted as
    /// dropped (after the flush deadline) and empties the queues. Call once the shard tasks
    /// have ended.
    pub(crate) fn abandon_pending(&self) -> u64 {
        let aborted = self.in_flight.swap(0, Ordering::SeqCst);
        if aborted > 0 {
            self.metrics.dropped.inc_by(aborted);
        }
        let mut n = 0u64;
        for s in &self.shards {
            let mut st = lock(&s.state);
            n += st.queue.len() as u64;
            st.queue.clear();
            st.oldest_at = None;
        }
        if n > 0 {
            self.metrics.dropped.inc_by(n);
            self.metrics.pending.dec_by(n as i64);
        }
        n + aborted
    }

    /// Empties the queues, returning their samples (shard by shard): for tests of what
    /// `enqueue` kept.
    #[cfg(test)]
    pub(crate) fn take_all_for_test(&self) -> Vec<Pending> {
        let mut out = Vec::new();
        for s in &self.shards {
            out.extend(lock(&s.state).queue.drain(..));
        }
        out
    }

    fn deadline(&self) -> Option<Instant> {
        *lock(&self.flush_deadline)
    }

    /// The sending loop of shard `idx`: returns once stopping and empty.
    pub(crate) async fn run_shard(self: Arc<Self>, idx: usize) {
        let shard = &self.shards[idx];
        let max = self.cfg.queue.max_samples_per_send.max(1);
        let wait_for = self.cfg.queue.batch_send_deadline;
        loop {
            let notified = shard.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let stopping = self.stopping.load(Ordering::SeqCst);
            let (batch, wake_at) = {
                let mut st = lock(&shard.state);
                let due = st.oldest_at.is_some_and(|t| t.elapsed() >= wait_for);
                if st.queue.is_empty() {
                    if stopping {
                        return;
                    }
                    (Vec::new(), None)
                } else if st.queue.len() >= max || stopping || due {
                    let take = st.queue.len().min(max);
                    let batch: Vec<Pending> = st.queue.drain(..take).collect();
                    st.oldest_at = (!st.queue.is_empty()).then(Instant::now);
                    (batch, None)
                } else {
                    (Vec::new(), st.oldest_at.map(|t| t + wait_for))
                }
            };
            if !batch.is_empty() {
                let n = batch.len() as u64;
                self.metrics.pending.dec_by(n as i64);
                self.in_flight.fetch_add(n, Ordering::SeqCst);
                self.send_batch(batch).await;
                self.in_flight.fetch_sub(n, Ordering::SeqCst);
                continue;
            }
            match wake_at {
                Some(at) => {
                    tokio::select! {
                        () = &mut notified => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Sends one batch: retried with exponential backoff (`min_backoff` doubling up to
    /// `max_backoff`, or the server's `Retry-After`) while the failure is recoverable, forever
    /// until sent unless stopping, when no attempt starts after the flush deadline.
    async fn send_batch(&self, batch: Vec<Pending>) {
        let n = batch.len() as u64;
        let max_ts = batch
            .iter()
            .map(|p| p.timestamp_ms)
            .max()
            .unwrap_or(i64::MIN);
        let req = build_request(&batch);
        drop(batch);
        let body = match encode_write_request(&req) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                self.metrics.failed.inc_by(n);
                tracing::error!(remote_name = %self.cfg.remote_name, url = %self.cfg.url, samples = n, error = %e, "cannot encode a remote write request; samples dropped");
                return;
            }
        };
        let mut backoff = self.cfg.queue.min_backoff;
        loop {
            if self.deadline().is_some_and(|d| Instant::now() >= d) {
                self.metrics.dropped.inc_by(n);
                tracing::error!(
                    remote_name = %self.cfg.remote_name,
                    url = %self.cfg.url,
                    samples = n,
                    "remote write flush deadline passed: samples dropped"
                );
                return;
            }
            self.metrics.samples.inc_by(n);
            self.metrics.bytes.inc_by(body.len() as u64);
            let started = Instant::now();
            let result = self.sender.send(body.clone()).await;
            self.metrics
                .sent_batch_duration
                .observe(started.elapsed().as_secs_f64());
            let Failure {
                verdict,
                detail,
                retry_after,
            } = match result {
                Ok(()) => {
                    let prev = self.highest_sent_ms.fetch_max(max_ts, Ordering::SeqCst);
                    if max_ts > prev {
                        self.metrics
                            .highest_sent_timestamp
                            .set(max_ts as f64 / 1000.0);
                    }
                    return;
                }
                Err(f) => f,
            };
            if verdict != Verdict::Retry {
                self.metrics.failed.inc_by(n);
                tracing::error!(
                    remote_name = %self.cfg.remote_name,
                    url = %self.cfg.url,
                    samples = n,
                    error = %detail,
                    "non-recoverable error sending samples to remote storage; they are dropped (fix the receiver's complaint: labels, timestamps, auth)"
                );
                return;
            }
            self.metrics.retried.inc_by(n);
            let wait = retry_after.unwrap_or(backoff);
            if let Some(deadline) = self.deadline()
                && Instant::now() + wait >= deadline
            {
                self.metrics.dropped.inc_by(n);
                tracing::error!(
                    remote_name = %self.cfg.remote_name,
                    url = %self.cfg.url,
                    samples = n,
                    error = %detail,
                    "shutting down and the remote still fails: samples dropped"
                );
                return;
            }
            tracing::warn!(
                remote_name = %self.cfg.remote_name,
                url = %self.cfg.url,
                samples = n,
                error = %detail,
                retry_in = ?wait,
                "failed to send batch, retrying"
            );
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(self.cfg.queue.max_backoff);
            if backoff.is_zero() {
                backoff = Duration::from_millis(1).min(self.cfg.queue.max_backoff);
            }
        }
    }
}

/// One `WriteRequest` for a batch: a `TimeSeries` per series in order of first appearance,
/// its samples in queue order. Label sets are already sorted (a `Labels` invariant), as the
/// protocol requires.
pub(crate) fn build_request(batch: &[Pending]) -> WriteRequest {
    let mut index: HashMap<&Labels, usize> = HashMap::new();
    let mut timeseries: Vec<TimeSeries> = Vec::new();
    for p in batch {
        let i = *index.entry(&p.series).or_insert_with(|| {
            timeseries.push(TimeSeries {
                labels: p
                    .series
                    .iter()
                    .map(|l| Label {
                        name: l.name.clone(),
                        value: l.value.clone(),
                    })
                    .collect(),
                samples: Vec::new(),
                histograms: Vec::new(),
            });
            timeseries.len() - 1
        });
        timeseries[i].samples.push(Sample {
            value: p.value,
            timestamp: p.timestamp_ms,
        });
    }
    WriteRequest {
        timeseries,
        metadata: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_groups_samples_by_series_in_order() {
        let a = Arc::new(Labels::from_pairs(&[("__name__", "a"), ("x", "1")]));
        let b = Arc::new(Labels::from_pairs(&[("__name__", "b")]));
        let p = |s: &Arc<Labels>, t, v| Pending {
            series: s.clone(),
            timestamp_ms: t,
            value: v,
        };
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let req = build_request(&[p(&a, 1, 1.0), p(&b, 1, 2.0), p(&a, 2, stale)]);
        assert_eq!(req.timeseries.len(), 2);
        let names: Vec<_> = req.timeseries[0]
            .labels
            .iter()
            .map(|l| l.name.as_str())
            .collect();
        assert_eq!(names, ["__name__", "x"]);
        let ts: Vec<_> = req.timeseries[0]
            .samples
            .iter()
            .map(|s| s.timestamp)
            .collect();
        assert_eq!(ts, [1, 2]);
        assert_eq!(
            req.timeseries[0].samples[1].value.to_bits(),
            0x7ff0_0000_0000_0002
        );
        assert_eq!(req.timeseries[1].samples[0].value, 2.0);
    }
}
