//! Thanos-compatible bucket metrics.
//!
//! Dashboards and alerts written for Thanos (`thanos_objstore_bucket_operation_failures_total`
//! rising, `thanos_objstore_bucket_last_successful_upload_time` too old) must keep working, so the
//! names, label names and operation label values are Thanos' exactly.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A bucket operation, as Thanos labels it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Op {
    Iter,
    Get,
    GetRange,
    Exists,
    Upload,
    Delete,
    Attributes,
}

impl Op {
    pub(crate) const ALL: [Op; 7] = [
        Op::Iter,
        Op::Get,
        Op::GetRange,
        Op::Exists,
        Op::Upload,
        Op::Delete,
        Op::Attributes,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Op::Iter => "iter",
            Op::Get => "get",
            Op::GetRange => "get_range",
            Op::Exists => "exists",
            Op::Upload => "upload",
            Op::Delete => "delete",
            Op::Attributes => "attributes",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    bucket: String,
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BucketLabel {
    bucket: String,
}

/// Thanos' duration buckets, so histogram_quantile queries compare like with like.
const DURATION_BUCKETS: [f64; 13] = [
    0.01, 0.1, 0.3, 0.6, 1.0, 3.0, 6.0, 9.0, 20.0, 30.0, 60.0, 90.0, 120.0,
];

type HistogramFamily = Family<OpLabels, Histogram, fn() -> Histogram>;

struct Inner {
    ops: Family<OpLabels, Counter>,
    failures: Family<OpLabels, Counter>,
    duration: HistogramFamily,
    last_upload: Family<BucketLabel, Gauge<f64, AtomicU64>>,
}

/// The bucket metric families. Register them once per registry and share the value (it is a
/// cheap `Arc` clone) between all buckets: each bucket reports under its own `bucket` label, and
/// registering the same metric names twice would produce an invalid exposition.
#[derive(Clone)]
pub struct BucketMetrics {
    inner: Arc<Inner>,
}

impl fmt::Debug for BucketMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BucketMetrics").finish_non_exhaustive()
    }
}

impl Default for BucketMetrics {
    fn default() -> Self {
        Self::unregistered()
    }
}

impl BucketMetrics {
    /// Creates the metric families and registers them into `registry`:
    /// `thanos_objstore_bucket_operations_total`, `thanos_objstore_bucket_operation_failures_total`,
    /// `thanos_objstore_bucket_operation_duration_seconds` and
    /// `thanos_objstore_bucket_last_successful_upload_time`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::unregistered();
        let m = &metrics.inner;
        // prometheus-client appends `_total` to counter names and a period to help texts.
        registry.register(
            "thanos_objstore_bucket_operations",
            "Total number of all attempted operations against a bucket",
            m.ops.clone(),
        );
        registry.register(
            "thanos_objstore_bucket_operation_failures",
            "Total number of operations against a bucket that failed, but were not expected to \
             fail in certain way from caller perspective. Those errors have to be investigated",
            m.failures.clone(),
        );
        registry.register(
            "thanos_objstore_bucket_operation_duration_seconds",
            "Duration of successful operations against the bucket per operation - iter \
             operations include time spent on each callback",
            m.duration.clone(),
        );
        registry.register(
            "thanos_objstore_bucket_last_successful_upload_time",
            "Second timestamp of the last successful upload to the bucket",
            m.last_upload.clone(),
        );
        metrics
    }

    /// Metric families that are not exposed anywhere (for tools and tests that do not serve
    /// metrics).
    pub fn unregistered() -> Self {
        BucketMetrics {
            inner: Arc::new(Inner {
                ops: Family::default(),
                failures: Family::default(),
                duration: Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS)),
                last_upload: Family::default(),
            }),
        }
    }

    /// Creates every series of `bucket` at zero, as Thanos does, so that `rate()` and absence
    /// alerts work from the first scrape.
    pub(crate) fn init_bucket(&self, bucket: &str) {
        for op in Op::ALL {
            let labels = op_labels(bucket, op);
            let _ = self.inner.ops.get_or_create(&labels);
            let _ = self.inner.failures.get_or_create(&labels);
            let _ = self.inner.duration.get_or_create(&labels);
        }
        let _ = self.inner.last_upload.get_or_create(&BucketLabel {
            bucket: bucket.to_string(),
        });
    }

    /// Records one finished operation. `failed` excludes expected outcomes such as not-found.
    pub(crate) fn observe(&self, bucket: &str, op: Op, elapsed: Duration, failed: bool) {
        let labels = op_labels(bucket, op);
        self.inner.ops.get_or_create(&labels).inc();
        if failed {
            self.inner.failures.get_or_create(&labels).inc();
        } else {
            self.inner
                .duration
                .get_or_create(&labels)
                .observe(elapsed.as_secs_f64());
        }
    }

    pub(crate) fn upload_succeeded(&self, bucket: &str) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        self.inner
            .last_upload
            .get_or_create(&BucketLabel {
                bucket: bucket.to_string(),
            })
            .set(now);
    }

    /// Current value of `thanos_objstore_bucket_operations_total{bucket, operation}`.
    pub fn operations(&self, bucket: &str, operation: &str) -> u64 {
        self.inner
            .ops
            .get(&OpLabels {
                bucket: bucket.to_string(),
                operation: operation.to_string(),
            })
            .map_or(0, |c| c.get())
    }

    /// Current value of `thanos_objstore_bucket_operation_failures_total{bucket, operation}`.
    pub fn failures(&self, bucket: &str, operation: &str) -> u64 {
        self.inner
            .failures
            .get(&OpLabels {
                bucket: bucket.to_string(),
                operation: operation.to_string(),
            })
            .map_or(0, |c| c.get())
    }
}

fn op_labels(bucket: &str, op: Op) -> OpLabels {
    OpLabels {
        bucket: bucket.to_string(),
        operation: op.as_str().to_string(),
    }
}
