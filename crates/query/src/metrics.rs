//! The querier's own metrics, with Thanos' names so existing dashboards and alerts work.
//!
//! `thanos_store_api_query_duration_seconds` (Thanos' `pkg/store/telemetry.go`): how long
//! each selection took to arrive from the stores, labelled by how large it was. The size
//! labels are buckets too, chosen by `--query.telemetry.request-series-seconds-quantiles`
//! and `--query.telemetry.request-samples-quantiles`; the durations' buckets by
//! `--query.telemetry.request-duration-seconds-quantiles`.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use strata_storepb::frame::{WireChunk, WireSeries};
use strata_storepb::thanos::Chunk;

/// The three `--query.telemetry.*` lists.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryBuckets {
    /// `--query.telemetry.request-duration-seconds-quantiles`: the histogram's buckets.
    pub duration_seconds: Vec<f64>,
    /// `--query.telemetry.request-samples-quantiles`: the `samples_le` label's values.
    pub samples: Vec<f64>,
    /// `--query.telemetry.request-series-seconds-quantiles` (sic): the `series_le` label's
    /// values.
    pub series: Vec<f64>,
}

impl Default for TelemetryBuckets {
    /// Thanos' defaults.
    fn default() -> Self {
        TelemetryBuckets {
            duration_seconds: vec![0.1, 0.25, 0.75, 1.25, 1.75, 2.5, 3.0, 5.0, 10.0],
            samples: vec![100.0, 1e3, 1e4, 1e5, 1e6],
            series: vec![10.0, 100.0, 1e3, 1e4, 1e5],
        }
    }
}

impl TelemetryBuckets {
    /// Checks that each list is finite and strictly increasing, as histogram buckets must
    /// be (Go's client panics at start-up otherwise); the error names the list.
    pub fn check(&self) -> Result<(), String> {
        for (name, list) in [
            (
                "--query.telemetry.request-duration-seconds-quantiles",
                &self.duration_seconds,
            ),
            ("--query.telemetry.request-samples-quantiles", &self.samples),
            (
                "--query.telemetry.request-series-seconds-quantiles",
                &self.series,
            ),
        ] {
            if list.iter().any(|v| !v.is_finite()) {
                return Err(format!("{name}: every value must be a finite number"));
            }
            if list.windows(2).any(|w| w[0] >= w[1]) {
                return Err(format!(
                    "{name}: values must be given in increasing order, each once (got {list:?})"
                ));
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SelectLabels {
    series_le: String,
    samples_le: String,
    tenant: String,
}

/// Builds each label set's histogram with the configured buckets.
#[derive(Clone, Debug)]
struct DurationBuckets(Arc<[f64]>);

impl MetricConstructor<Histogram> for DurationBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

/// The querier's metrics.
#[derive(Debug)]
pub struct QueryMetrics {
    select_duration: Family<SelectLabels, Histogram, DurationBuckets>,
    samples: Vec<f64>,
    series: Vec<f64>,
}

impl QueryMetrics {
    /// The metrics, registered in `registry`. `buckets` must have passed
    /// [`TelemetryBuckets::check`].
    pub fn register(buckets: &TelemetryBuckets, registry: &mut Registry) -> Arc<Self> {
        let m = QueryMetrics {
            select_duration: Family::new_with_constructor(DurationBuckets(
                buckets.duration_seconds.clone().into(),
            )),
            samples: buckets.samples.clone(),
            series: buckets.series.clone(),
        };
        registry.register(
            "thanos_store_api_query_duration_seconds",
            "Duration of the Thanos Store API select phase for a query.",
            m.select_duration.clone(),
        );
        Arc::new(m)
    }

    /// Records one selection of `tenant`'s that took `took`, as Thanos does: not at all
    /// when it brought no series, chunk or sample.
    pub(crate) fn observe_select(&self, tenant: &str, stats: &SelectStats, took: Duration) {
        if stats.series == 0 || stats.chunks == 0 || stats.samples == 0 {
            return;
        }
        let labels = SelectLabels {
            series_le: bucket_label(stats.series as f64, &self.series),
            samples_le: bucket_label(stats.samples as f64, &self.samples),
            tenant: tenant.to_string(),
        };
        self.select_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }
}

/// The smallest bucket not below `value`, or `+Inf` from the largest bucket on (Thanos'
/// `findBucket`: so a value equal to the largest bucket is `+Inf` where it equals any
/// other bucket it is that bucket).
fn bucket_label(value: f64, buckets: &[f64]) -> String {
    match buckets.last() {
        Some(&last) if value < last => {
            let i = buckets.partition_point(|&b| b < value);
            format!("{}", buckets[i])
        }
        _ => "+Inf".to_string(),
    }
}

/// How much one selection brought: series, chunks and samples (from the chunks' headers,
/// without decoding them; each part of a downsampled chunk counts, as in Thanos'
/// `SeriesStatsCounter`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SelectStats {
    pub(crate) series: u64,
    pub(crate) chunks: u64,
    pub(crate) samples: u64,
}

impl SelectStats {
    pub(crate) fn add(&mut self, batch: &[WireSeries]) {
        for (_, chunks) in batch {
            self.series += 1;
            for c in chunks {
                self.add_chunk(c);
            }
        }
    }

    fn add_chunk(&mut self, c: &WireChunk) {
        let mut part = |p: Option<&Chunk>| {
            if let Some(p) = p {
                self.chunks += 1;
                // Every Prometheus chunk encoding starts with its sample count, 2 bytes
                // big-endian.
                if let [hi, lo, ..] = p.data[..] {
                    self.samples += u64::from(u16::from_be_bytes([hi, lo]));
                }
            }
        };
        part(c.raw.as_ref());
        if let Some(a) = &c.aggr {
            for p in [&a.count, &a.sum, &a.min, &a.max, &a.counter] {
                part(p.as_ref());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_labels_follow_thanos_find_bucket() {
        let b = [10.0, 100.0, 1000.0];
        for (v, want) in [
            (1.0, "10"),
            (10.0, "10"),
            (11.0, "100"),
            (100.0, "100"),
            (999.0, "1000"),
            (1000.0, "+Inf"),
            (5000.0, "+Inf"),
        ] {
            assert_eq!(bucket_label(v, &b), want, "{v}");
        }
        assert_eq!(bucket_label(3.0, &[]), "+Inf");
        assert_eq!(bucket_label(0.3, &[0.25, 0.5]), "0.5");
    }

    #[test]
    fn bucket_lists_must_increase() {
        assert_eq!(TelemetryBuckets::default().check(), Ok(()));
        let e = TelemetryBuckets {
            samples: vec![100.0, 10.0],
            ..Default::default()
        }
        .check()
        .unwrap_err();
        assert!(
            e.contains("--query.telemetry.request-samples-quantiles"),
            "{e}"
        );
        let e = TelemetryBuckets {
            duration_seconds: vec![1.0, f64::NAN],
            ..Default::default()
        }
        .check()
        .unwrap_err();
        assert!(e.contains("finite"), "{e}");
    }

    #[test]
    fn a_selections_size_is_read_from_chunk_headers() {
        use strata_model::Labels;
        let chunk = |n: u16| Chunk {
            data: bytes::Bytes::from([&n.to_be_bytes()[..], &[0u8; 8][..]].concat()),
            ..Default::default()
        };
        let raw = |n| WireChunk {
            raw: Some(chunk(n)),
            ..Default::default()
        };
        let downsampled = WireChunk {
            aggr: Some(Box::new(strata_storepb::frame::AggrParts {
                count: Some(chunk(5)),
                sum: Some(chunk(5)),
                ..Default::default()
            })),
            ..Default::default()
        };
        let mut s = SelectStats::default();
        s.add(&[
            (Labels::from_pairs(&[("a", "1")]), vec![raw(120), raw(30)]),
            (Labels::from_pairs(&[("a", "2")]), vec![downsampled]),
        ]);
        assert_eq!(
            s,
            SelectStats {
                series: 2,
                chunks: 4,
                samples: 160
            }
        );
    }

    #[test]
    fn a_selection_is_observed_under_its_size_and_tenant() {
        let mut r = Registry::default();
        let m = QueryMetrics::register(&TelemetryBuckets::default(), &mut r);
        let stats = SelectStats {
            series: 50,
            chunks: 60,
            samples: 7_000,
        };
        m.observe_select("team-a", &stats, Duration::from_millis(300));
        m.observe_select("team-a", &SelectStats::default(), Duration::from_secs(1));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        assert!(
            text.contains(
                "thanos_store_api_query_duration_seconds_count{series_le=\"100\",samples_le=\"10000\",tenant=\"team-a\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "thanos_store_api_query_duration_seconds_bucket{le=\"0.75\",series_le=\"100\",samples_le=\"10000\",tenant=\"team-a\"} 1"
            ),
            "{text}"
        );
    }
}

/// `thanos_store_nodes_grpc_connections{external_labels, store_type}`: the healthy endpoints,
/// counted at each scrape from the endpoint set, with the labels `--query.conn-metric.label`
/// keeps (Thanos' endpoint set collector).
#[derive(Debug)]
pub struct ConnectionsCollector {
    set: Arc<crate::EndpointSet>,
    external_labels: bool,
    store_type: bool,
}

impl ConnectionsCollector {
    /// A collector over `set` with the labels named in `labels` (`external_labels`,
    /// `store_type`); any other name is refused, naming the flag.
    pub fn new(set: Arc<crate::EndpointSet>, labels: &[String]) -> Result<Self, String> {
        if let Some(bad) = labels
            .iter()
            .find(|l| *l != "external_labels" && *l != "store_type")
        {
            return Err(format!(
                "--query.conn-metric.label: {bad:?} is not one of \"external_labels\", \"store_type\""
            ));
        }
        Ok(ConnectionsCollector {
            set,
            external_labels: labels.iter().any(|l| l == "external_labels"),
            store_type: labels.iter().any(|l| l == "store_type"),
        })
    }
}

impl prometheus_client::collector::Collector for ConnectionsCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::gauge::Gauge;
        let family = Family::<Vec<(&'static str, String)>, Gauge>::default();
        for ((store_type, ext), n) in self.set.connection_counts() {
            let mut labels = Vec::with_capacity(2);
            if self.external_labels {
                labels.push(("external_labels", ext));
            }
            if self.store_type {
                labels.push(("store_type", store_type));
            }
            family.get_or_create(&labels).inc_by(n);
        }
        let metric = encoder.encode_descriptor(
            "thanos_store_nodes_grpc_connections",
            "Number of gRPC connection to Store APIs. Opened connection means healthy store APIs available for Querier.",
            None,
            family.metric_type(),
        )?;
        family.encode(metric)
    }
}
