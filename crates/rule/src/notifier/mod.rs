//! The Alertmanager notifier: firing and resolved alerts from the rule manager, sent to every
//! configured Alertmanager over its v2 API, as Thanos' ruler does (`pkg/alert`).
//!
//! The rule manager calls [`Notifier::send`], which never waits: alerts get their labels
//! fixed (`--alert.label-drop`, external labels, `--alert.relabel-config`, in Thanos' order)
//! and go into a bounded queue that drops its oldest entries when full. [`Notifier::run`]
//! takes batches of up to 100 from the queue and posts each to every resolved address of every
//! Alertmanager set concurrently, each POST with its set's timeout; an alert counts as sent
//! when at least one Alertmanager accepted it. The same loop re-resolves addresses (DNS, file
//! SD) every `--alertmanagers.sd-dns-interval`.
//!
//! Metrics keep Thanos' names: `thanos_alert_queue_*` for the queue and
//! `thanos_alert_sender_*` (labelled by `alertmanager`, the `host:port`) for the sending.

mod config;
mod discovery;
mod queue;
mod sender;

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::registry::Registry;
use strata_block::relabel::RelabelConfig;
use strata_model::Labels;
use strata_runtime::dns::Resolver;
use strata_runtime::http_client::{ClientAuth, HttpClientError};

pub use config::{AlertmanagerSet, FileSdConfig, NotifierConfig};

use discovery::SetDiscovery;
use queue::Queue;
use sender::{SenderMetrics, Target};

/// Thanos' queue capacity (`alert.NewQueue(…, 10000, 100, …)`).
pub const DEFAULT_QUEUE_CAPACITY: usize = 10_000;

/// Alerts per POST (Thanos' queue batch size).
pub const MAX_BATCH_SIZE: usize = 100;

/// `--alertmanagers.sd-dns-interval` default.
pub const DEFAULT_DNS_INTERVAL: Duration = Duration::from_secs(30);

/// The User-Agent of every request to an Alertmanager.
const USER_AGENT: &str = concat!("Strata/", env!("CARGO_PKG_VERSION"));

/// An alert as the rule manager hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// Identity labels, `alertname` included; external labels are added here, not by the
    /// caller.
    pub labels: Labels,
    pub annotations: Labels,
    /// When the alert started firing, milliseconds since the epoch.
    pub starts_at_ms: i64,
    /// When it stops being valid (while firing: a few resend intervals ahead) or was resolved
    /// (in the past); `None` leaves it to Alertmanager's `resolve_timeout`.
    pub ends_at_ms: Option<i64>,
    /// Link back to the expression (`--alert.query-url` + the graph path).
    pub generator_url: String,
}

/// The notifier's settings that do not come from `--alertmanagers.*`.
#[derive(Debug, Clone)]
pub struct NotifierOptions {
    /// The ruler's `--label`s, added to every alert (overriding its own of the same name).
    pub external_labels: Labels,
    /// `--alert.label-drop`: removed from every alert, external labels included, so HA ruler
    /// replicas send identical alerts that Alertmanager deduplicates.
    pub label_drop: Vec<String>,
    /// `--alert.relabel-config[-file]`, applied last; an alert it drops is not sent.
    pub relabel: Vec<RelabelConfig>,
    /// Alerts held at most while Alertmanagers are slow or down.
    pub queue_capacity: usize,
    /// `--alertmanagers.sd-dns-interval`: how often addresses are resolved again (file SD
    /// files are read again at their `refresh_interval` or this, whichever is shorter).
    pub dns_interval: Duration,
}

impl Default for NotifierOptions {
    fn default() -> Self {
        NotifierOptions {
            external_labels: Labels::default(),
            label_drop: Vec::new(),
            relabel: Vec::new(),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            dns_interval: DEFAULT_DNS_INTERVAL,
        }
    }
}

/// The notifier could not be set up from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    /// `--alertmanagers.config` is not YAML of the expected shape (unknown keys included).
    #[error(
        "--alertmanagers.config: not a valid Alertmanager configuration: {0} (expected \
         `alertmanagers:` with a list of http_config, static_configs, file_sd_configs, scheme, \
         path_prefix, timeout, api_version)"
    )]
    ConfigYaml(String),
    /// A key of `--alertmanagers.config` has an unusable value.
    #[error("--alertmanagers.config: {key}: {detail}")]
    Config { key: String, detail: String },
    /// A `--alertmanagers.url` cannot be used (its password is masked here).
    #[error(
        "--alertmanagers.url {url:?}: {detail}; want [dns+|dnssrv+|dnssrvnoa+]http(s)://\
         [user:password@]host[:port][/path_prefix]"
    )]
    BadUrl { url: String, detail: String },
    /// `--alertmanagers.send-timeout` is zero.
    #[error("--alertmanagers.send-timeout must be positive")]
    SendTimeout,
    /// The HTTP client of a set cannot be built (contradictory auth, unreadable TLS files…).
    #[error("Alertmanager set {index} ({addresses}): http_config: {source}")]
    HttpClient {
        /// Position in `alertmanagers` (or among the `--alertmanagers.url`s).
        index: usize,
        /// The set's addresses, to find it.
        addresses: String,
        #[source]
        source: HttpClientError,
    },
}

/// One configured set with its client.
#[derive(Debug)]
struct SetClient {
    config: AlertmanagerSet,
    http: reqwest::Client,
    auth: ClientAuth,
}

/// Sends alerts to Alertmanagers; see the [module documentation](self).
#[derive(Debug)]
pub struct Notifier {
    sets: Vec<SetClient>,
    queue: Queue,
    metrics: SenderMetrics,
    /// Resolved `host:port`s of each set, replaced on every refresh.
    endpoints: RwLock<Vec<Vec<String>>>,
    dns_interval: Duration,
}

impl Notifier {
    /// Builds the clients and registers the metrics; nothing is sent or resolved until
    /// [`Notifier::run`].
    pub fn new(
        config: NotifierConfig,
        options: NotifierOptions,
        registry: &mut Registry,
    ) -> Result<Arc<Self>, NotifierError> {
        if config.alertmanagers.is_empty() {
            tracing::warn!("no Alertmanager configured: alerts are evaluated but not sent");
        }
        let sets = config
            .alertmanagers
            .into_iter()
            .enumerate()
            .map(|(index, set)| {
                let (http, auth) = set.http_config.build(USER_AGENT).map_err(|source| {
                    NotifierError::HttpClient {
                        index,
                        addresses: set
                            .static_addresses
                            .iter()
                            .map(config::address_text)
                            .collect::<Vec<_>>()
                            .join(", "),
                        source,
                    }
                })?;
                Ok(SetClient {
                    config: set,
                    http,
                    auth,
                })
            })
            .collect::<Result<Vec<_>, NotifierError>>()?;
        let queue = Queue::new(
            options.queue_capacity,
            MAX_BATCH_SIZE,
            &options.external_labels,
            &options.label_drop,
            options.relabel,
            registry,
        );
        let metrics = SenderMetrics::new(registry);
        let n = sets.len();
        Ok(Arc::new(Notifier {
            sets,
            queue,
            metrics,
            endpoints: RwLock::new(vec![Vec::new(); n]),
            dns_interval: if options.dns_interval.is_zero() {
                DEFAULT_DNS_INTERVAL
            } else {
                options.dns_interval
            },
        }))
    }

    /// Queues alerts for sending; never waits on an Alertmanager. A full queue drops its
    /// oldest alerts (counted in `thanos_alert_queue_alerts_dropped_total`). Pending alerts are
    /// the caller's to leave out, as Thanos' rule manager does: everything given is sent.
    pub fn send(&self, alerts: Vec<Alert>) {
        self.queue.push(alerts);
    }

    /// The `/api/v2/alerts` URL of every currently resolved Alertmanager (for
    /// `/api/v1/alertmanagers`).
    pub fn alertmanagers(&self) -> Vec<String> {
        let endpoints = self.endpoints.read().unwrap_or_else(|p| p.into_inner());
        self.sets
            .iter()
            .zip(endpoints.iter())
            .flat_map(|(s, eps)| eps.iter().map(|a| s.config.alerts_url(a)))
            .collect()
    }

    /// Sends queued alerts and keeps the addresses fresh until `shutdown` completes. Alerts
    /// still queued then are not sent (as in Thanos).
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        let needs_srv = self.sets.iter().any(|s| {
            !s.config.file_sd.is_empty() || s.config.static_addresses.iter().any(|a| a.uses_srv())
        });
        let resolver = if needs_srv {
            Resolver::system()
        } else {
            Resolver::without_srv()
        };
        let mut discoveries: Vec<SetDiscovery> =
            self.sets.iter().map(|_| SetDiscovery::default()).collect();
        let interval = self
            .sets
            .iter()
            .flat_map(|s| s.config.file_sd.iter().map(|f| f.refresh_interval))
            .fold(self.dns_interval, Duration::min);
        let mut shutdown = std::pin::pin!(shutdown);
        // The first addresses before the first batch, so alerts queued before `run` are not
        // counted as dropped for want of an Alertmanager.
        tokio::select! {
            _ = &mut shutdown => return,
            _ = self.refresh(&mut discoveries, &resolver) => {}
        }
        let refresh = async {
            loop {
                tokio::time::sleep(interval).await;
                self.refresh(&mut discoveries, &resolver).await;
            }
        };
        let sending = async {
            loop {
                let batch = self.queue.pop().await;
                let targets = self.targets();
                sender::send(&self.metrics, &targets, &batch).await;
            }
        };
        tokio::select! {
            _ = &mut shutdown => {}
            _ = refresh => {}
            _ = sending => {}
        }
    }

    async fn refresh(&self, discoveries: &mut [SetDiscovery], resolver: &Resolver) {
        let mut all = Vec::with_capacity(self.sets.len());
        for (set, d) in self.sets.iter().zip(discoveries.iter_mut()) {
            all.push(d.refresh(&set.config, resolver).await);
        }
        let mut endpoints = self.endpoints.write().unwrap_or_else(|p| p.into_inner());
        if *endpoints != all {
            tracing::info!(alertmanagers = ?all, "Alertmanager addresses changed");
        }
        *endpoints = all;
    }

    fn targets(&self) -> Vec<Target> {
        let endpoints = self.endpoints.read().unwrap_or_else(|p| p.into_inner());
        self.sets
            .iter()
            .zip(endpoints.iter())
            .flat_map(|(s, eps)| {
                eps.iter().map(|a| Target {
                    address: a.clone(),
                    url: s.config.alerts_url(a),
                    http: s.http.clone(),
                    auth: s.auth.clone(),
                    timeout: s.config.timeout,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_http_config_names_the_set() {
        let config = NotifierConfig::from_yaml(
            "alertmanagers:\n  - static_configs: [\"a:1\"]\n  - static_configs: [\"dns+b:2\"]\n    http_config:\n      tls_config: {cert_file: c.pem}\n",
        )
        .unwrap();
        let err = Notifier::new(config, NotifierOptions::default(), &mut Registry::default())
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("Alertmanager set 1 (dns+b:2)"), "{msg}");
        assert!(
            msg.contains("tls_config.cert_file and tls_config.key_file"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn without_alertmanagers_alerts_are_dropped_and_run_stops_on_shutdown() {
        let mut registry = Registry::default();
        let n = Notifier::new(
            NotifierConfig::default(),
            NotifierOptions::default(),
            &mut registry,
        )
        .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(n.clone().run(async move {
            let _ = stopped.await;
        }));
        n.send(vec![Alert {
            labels: Labels::from_pairs(&[("alertname", "A")]),
            annotations: Labels::default(),
            starts_at_ms: 0,
            ends_at_ms: None,
            generator_url: String::new(),
        }]);
        let mut text = String::new();
        for _ in 0..100 {
            text.clear();
            prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
            if text.contains("thanos_alert_sender_alerts_dropped_total 1") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            text.contains("thanos_alert_sender_alerts_dropped_total 1"),
            "{text}"
        );
        assert!(
            text.contains("thanos_alert_queue_alerts_popped_total 1"),
            "{text}"
        );
        assert!(n.alertmanagers().is_empty());
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("run stops on shutdown")
            .unwrap();
    }
}
