//! Sending one batch to every Alertmanager at once: the v2 API's JSON body, one POST per
//! resolved address, and Thanos' sender metrics.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Serialize;
use strata_model::Labels;
use strata_model::timestamp::format_rfc3339_millis;
use strata_runtime::http_client::ClientAuth;

use super::Alert;

/// How much of an error response body is kept for the log.
const ERROR_BODY_BYTES: usize = 512;

/// The `alertmanager` label: the address (`host:port`), as Thanos labels by `u.Host`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AmLabel {
    pub(crate) alertmanager: String,
}

/// Thanos' sender metrics.
#[derive(Debug, Clone)]
pub(crate) struct SenderMetrics {
    pub(crate) sent: Family<AmLabel, Counter>,
    pub(crate) errors: Family<AmLabel, Counter>,
    pub(crate) dropped: Counter,
    pub(crate) latency: Family<AmLabel, Histogram>,
}

impl SenderMetrics {
    pub(crate) fn new(registry: &mut Registry) -> Self {
        let m = SenderMetrics {
            sent: Family::default(),
            errors: Family::default(),
            dropped: Counter::default(),
            // Go client's default buckets, as Thanos' histogram has no others.
            latency: Family::new_with_constructor(|| {
                Histogram::new([
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ])
            }),
        };
        registry.register(
            "thanos_alert_sender_alerts_sent",
            "Total number of alerts sent by alertmanager.",
            m.sent.clone(),
        );
        registry.register(
            "thanos_alert_sender_errors",
            "Total number of errors while sending alerts to alertmanager.",
            m.errors.clone(),
        );
        registry.register(
            "thanos_alert_sender_alerts_dropped",
            "Total number of alerts dropped in case of all sends to alertmanagers failed.",
            m.dropped.clone(),
        );
        registry.register(
            "thanos_alert_sender_latency_seconds",
            "Latency for sending alert notifications (not including dropped notifications).",
            m.latency.clone(),
        );
        m
    }
}

/// One postableAlert of Alertmanager's v2 API.
#[derive(Debug, Serialize)]
struct PostableAlert<'a> {
    labels: BTreeMap<&'a str, &'a str>,
    annotations: BTreeMap<&'a str, &'a str>,
    #[serde(rename = "startsAt")]
    starts_at: String,
    /// Absent while the rule manager gives no end (Alertmanager then applies its
    /// `resolve_timeout`).
    #[serde(rename = "endsAt", skip_serializing_if = "Option::is_none")]
    ends_at: Option<String>,
    #[serde(rename = "generatorURL", skip_serializing_if = "str::is_empty")]
    generator_url: &'a str,
}

fn label_map(l: &Labels) -> BTreeMap<&str, &str> {
    l.iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect()
}

/// The `POST /api/v2/alerts` body: a JSON array of postableAlerts, times in RFC 3339 UTC
/// with milliseconds (as Alertmanager's Go client writes them).
pub(crate) fn encode_alerts(alerts: &[Alert]) -> Vec<u8> {
    let body: Vec<PostableAlert<'_>> = alerts
        .iter()
        .map(|a| PostableAlert {
            labels: label_map(&a.labels),
            annotations: label_map(&a.annotations),
            starts_at: format_rfc3339_millis(a.starts_at_ms),
            ends_at: a.ends_at_ms.map(format_rfc3339_millis),
            generator_url: &a.generator_url,
        })
        .collect();
    // Serialising maps of strings and strings cannot fail.
    serde_json::to_vec(&body).unwrap_or_else(|_| b"[]".to_vec())
}

/// Where one POST goes.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// `host:port`, the metrics' `alertmanager` label.
    pub(crate) address: String,
    /// The full `/api/v2/alerts` URL.
    pub(crate) url: String,
    pub(crate) http: reqwest::Client,
    pub(crate) auth: ClientAuth,
    pub(crate) timeout: Duration,
}

/// Why one POST failed (logged with the Alertmanager's address).
#[derive(Debug, thiserror::Error)]
pub(crate) enum PostError {
    #[error("reading the credentials of its http_config: {0}")]
    Credentials(#[from] strata_runtime::http_client::HttpClientError),
    #[error(
        "no answer within the timeout of {0:?} (raise the set's `timeout` or --alertmanagers.send-timeout)"
    )]
    Timeout(Duration),
    /// The error with its causes (reqwest's own message leaves out "connection refused").
    #[error("request failed: {0}")]
    Request(String),
    #[error("answered {status}: {body}")]
    Status { status: u16, body: String },
}

async fn post(t: &Target, body: Vec<u8>) -> Result<(), PostError> {
    let rb = t
        .http
        .post(&t.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .timeout(t.timeout)
        .body(body);
    let rb = t.auth.apply(rb)?;
    let resp = rb.send().await.map_err(|e| {
        if e.is_timeout() {
            PostError::Timeout(t.timeout)
        } else {
            PostError::Request(with_causes(&e))
        }
    })?;
    let status = resp.status();
    if status.is_success() {
        // Drain so the connection is reused.
        let _ = resp.bytes().await;
        return Ok(());
    }
    let body = resp.bytes().await.unwrap_or_default();
    Err(PostError::Status {
        status: status.as_u16(),
        body: String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_BYTES)])
            .trim()
            .to_string(),
    })
}

/// `error: cause: cause…`, each cause once.
fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

/// Sends `alerts` to every target concurrently. Counted as sent when at least one target
/// accepted them; dropped (`thanos_alert_sender_alerts_dropped_total`) otherwise, no
/// Alertmanager at all included. A failing Alertmanager is logged and counted, never fatal.
pub(crate) async fn send(metrics: &SenderMetrics, targets: &[Target], alerts: &[Alert]) {
    if alerts.is_empty() {
        return;
    }
    let body = encode_alerts(alerts);
    let posts = targets.iter().map(|t| {
        let body = body.clone();
        async move {
            tracing::debug!(alertmanager = %t.address, alerts = alerts.len(), "sending alerts");
            let start = Instant::now();
            let label = AmLabel {
                alertmanager: t.address.clone(),
            };
            match post(t, body).await {
                Ok(()) => {
                    metrics
                        .latency
                        .get_or_create(&label)
                        .observe(start.elapsed().as_secs_f64());
                    metrics
                        .sent
                        .get_or_create(&label)
                        .inc_by(alerts.len() as u64);
                    true
                }
                Err(e) => {
                    tracing::warn!(
                        alertmanager = %t.address,
                        url = %t.url,
                        alerts = alerts.len(),
                        err = %e,
                        "sending alerts failed"
                    );
                    metrics.errors.get_or_create(&label).inc();
                    false
                }
            }
        }
    });
    let ok = futures::future::join_all(posts)
        .await
        .into_iter()
        .filter(|ok| *ok)
        .count();
    if ok == 0 {
        metrics.dropped.inc_by(alerts.len() as u64);
        tracing::warn!(
            alerts = alerts.len(),
            alertmanagers = targets.len(),
            "failed to send alerts to any Alertmanager"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_body_shape() {
        let alerts = vec![
            Alert {
                labels: Labels::from_pairs(&[("alertname", "Down"), ("job", "x")]),
                annotations: Labels::from_pairs(&[("summary", "it is \"down\"")]),
                starts_at_ms: 1_704_067_200_000,
                ends_at_ms: Some(1_704_067_500_123),
                generator_url: "http://q/graph?g0.expr=up".into(),
            },
            Alert {
                labels: Labels::from_pairs(&[("alertname", "Other")]),
                annotations: Labels::default(),
                starts_at_ms: 0,
                ends_at_ms: None,
                generator_url: String::new(),
            },
        ];
        let got: serde_json::Value = serde_json::from_slice(&encode_alerts(&alerts)).unwrap();
        let want = serde_json::json!([
            {
                "labels": {"alertname": "Down", "job": "x"},
                "annotations": {"summary": "it is \"down\""},
                "startsAt": "2024-01-01T00:00:00.000Z",
                "endsAt": "2024-01-01T00:05:00.123Z",
                "generatorURL": "http://q/graph?g0.expr=up"
            },
            {
                "labels": {"alertname": "Other"},
                "annotations": {},
                "startsAt": "1970-01-01T00:00:00.000Z"
            }
        ]);
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn a_refused_connection_says_so() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let t = Target {
            address: format!("127.0.0.1:{port}"),
            url: format!("http://127.0.0.1:{port}/api/v2/alerts"),
            http: reqwest::Client::new(),
            auth: ClientAuth::None,
            timeout: Duration::from_secs(2),
        };
        let err = post(&t, b"[]".to_vec()).await.unwrap_err().to_string();
        assert!(err.to_lowercase().contains("refused"), "{err}");
    }
}
