//! The notifier against real Alertmanagers (Debian's `prometheus-alertmanager`, installed by
//! `scripts/test.sh`): what arrives, with which labels and times, to how many Alertmanagers,
//! and what happens when one is down or wants credentials.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use serde_json::Value;
use strata_model::Labels;
use strata_model::timestamp::parse_rfc3339;
use strata_rule::notifier::{Alert, Notifier, NotifierConfig, NotifierOptions};
use strata_testutil::alertmanager::AlertmanagerServer;
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(20);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn alert(pairs: &[(&str, &str)], starts_at_ms: i64, ends_at_ms: Option<i64>) -> Alert {
    Alert {
        labels: Labels::from_pairs(pairs),
        annotations: Labels::from_pairs(&[("summary", "disk is full"), ("runbook", "http://rb")]),
        starts_at_ms,
        ends_at_ms,
        generator_url: "http://query:9090/graph?g0.expr=up%3D%3D0&g0.tab=1".into(),
    }
}

/// A running notifier; stopped when dropped.
struct Running {
    notifier: Arc<Notifier>,
    registry: Registry,
    _stop: oneshot::Sender<()>,
}

impl Running {
    fn start(config: NotifierConfig, options: NotifierOptions) -> Running {
        let mut registry = Registry::default();
        let notifier = Notifier::new(config, options, &mut registry).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(notifier.clone().run(async move {
            let _ = stopped.await;
        }));
        Running {
            notifier,
            registry,
            _stop: stop,
        }
    }

    fn metrics(&self) -> String {
        let mut s = String::new();
        encode(&mut s, &self.registry).unwrap();
        s
    }

    /// The value of one sample line (`name{labels}`), 0 when absent.
    fn metric(&self, series: &str) -> f64 {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    async fn wait_metric(&self, series: &str, min: f64) -> f64 {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let v = self.metric(series);
            if v >= min || tokio::time::Instant::now() > deadline {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Alerts Alertmanager holds (resolved ones are not listed by its API), waiting up to
/// [`WAIT`] for `done` to accept them.
async fn alerts_when(am: &AlertmanagerServer, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = am.alerts_json("").unwrap();
        let v: Vec<Value> = serde_json::from_str(&text).unwrap();
        if done(&v) || tokio::time::Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn named<'a>(alerts: &'a [Value], name: &str) -> Option<&'a Value> {
    alerts.iter().find(|a| a["labels"]["alertname"] == name)
}

fn urls(ams: &[&AlertmanagerServer]) -> NotifierConfig {
    let urls: Vec<String> = ams.iter().map(|a| a.url()).collect();
    NotifierConfig::from_flags(&urls, Duration::from_secs(5), None).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_arrive_with_labels_annotations_and_times() {
    let am = AlertmanagerServer::start().unwrap();
    let relabel = strata_block::relabel::parse_relabel_configs(
        "- source_labels: [cluster]\n  target_label: region\n  regex: (eu)-.*\n\
         - source_labels: [severity]\n  regex: debug\n  action: drop\n",
    )
    .unwrap();
    let run = Running::start(
        urls(&[&am]),
        NotifierOptions {
            external_labels: Labels::from_pairs(&[("cluster", "eu-1"), ("replica", "r0")]),
            label_drop: vec!["replica".into(), "pod".into()],
            relabel,
            ..NotifierOptions::default()
        },
    );
    let now = now_ms();
    let (starts, ends) = (now - 60_000, now + 600_000);
    run.notifier.send(vec![
        alert(
            &[
                ("alertname", "DiskFull"),
                ("cluster", "overridden"),
                ("pod", "p-1"),
                ("severity", "page"),
            ],
            starts,
            Some(ends),
        ),
        alert(
            &[("alertname", "Noise"), ("severity", "debug")],
            starts,
            Some(ends),
        ),
        alert(&[("alertname", "Flapping")], starts, Some(ends)),
    ]);
    let got = alerts_when(&am, |a| {
        named(a, "DiskFull").is_some() && named(a, "Flapping").is_some()
    })
    .await;
    let disk = named(&got, "DiskFull").unwrap_or_else(|| panic!("DiskFull not received: {got:?}"));
    assert_eq!(
        disk["labels"],
        serde_json::json!({"alertname": "DiskFull", "cluster": "eu-1", "region": "eu", "severity": "page"})
    );
    assert_eq!(
        disk["annotations"],
        serde_json::json!({"summary": "disk is full", "runbook": "http://rb"})
    );
    let t = |v: &Value| parse_rfc3339(v.as_str().unwrap()).unwrap();
    assert_eq!(t(&disk["startsAt"]), starts);
    assert_eq!(t(&disk["endsAt"]), ends);
    assert_eq!(
        disk["generatorURL"],
        "http://query:9090/graph?g0.expr=up%3D%3D0&g0.tab=1"
    );
    assert_eq!(disk["status"]["state"], "active");
    assert!(
        named(&got, "Noise").is_none(),
        "relabel-dropped alert was sent: {got:?}"
    );
    assert_eq!(got.len(), 2, "{got:?}");

    // Resolved: Alertmanager no longer lists it.
    run.notifier.send(vec![alert(
        &[("alertname", "Flapping")],
        starts,
        Some(now_ms() - 1000),
    )]);
    let got = alerts_when(&am, |a| named(a, "Flapping").is_none()).await;
    assert!(
        named(&got, "Flapping").is_none(),
        "resolved alert still active: {got:?}"
    );
    assert!(named(&got, "DiskFull").is_some());

    let addr = am.address();
    assert_eq!(
        run.metric(&format!(
            "thanos_alert_sender_alerts_sent_total{{alertmanager=\"{addr}\"}}"
        )),
        3.0
    );
    assert_eq!(run.metric("thanos_alert_queue_alerts_pushed_total"), 4.0);
    assert_eq!(run.metric("thanos_alert_sender_alerts_dropped_total"), 0.0);
    assert_eq!(
        run.notifier.alertmanagers(),
        [format!("http://{addr}/api/v2/alerts")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alertmanager_receives_and_a_down_one_does_not_block_the_others() {
    let a = AlertmanagerServer::start().unwrap();
    let b = AlertmanagerServer::start().unwrap();
    let down = format!("127.0.0.1:{}", strata_testutil::process::free_port());
    // Two sets: a and b from URLs, plus a set from the YAML form listing b and the dead one.
    let config = NotifierConfig::from_flags(
        &[],
        Duration::from_secs(5),
        Some(&format!(
            "alertmanagers:\n  - static_configs: [\"{}\", \"{down}\"]\n    timeout: 2s\n  - static_configs: [\"{}\"]\n",
            a.address(),
            b.address()
        )),
    )
    .unwrap();
    let run = Running::start(config, NotifierOptions::default());
    let now = now_ms();
    run.notifier.send(vec![alert(
        &[("alertname", "Both")],
        now,
        Some(now + 600_000),
    )]);
    for am in [&a, &b] {
        let got = alerts_when(am, |v| named(v, "Both").is_some()).await;
        assert!(named(&got, "Both").is_some(), "{}: {got:?}", am.address());
    }
    let errors = run
        .wait_metric(
            &format!("thanos_alert_sender_errors_total{{alertmanager=\"{down}\"}}"),
            1.0,
        )
        .await;
    assert_eq!(errors, 1.0, "{}", run.metrics());
    assert_eq!(run.metric("thanos_alert_sender_alerts_dropped_total"), 0.0);
    let mut listed = run.notifier.alertmanagers();
    listed.sort();
    let mut want = vec![
        format!("http://{}/api/v2/alerts", a.address()),
        format!("http://{down}/api/v2/alerts"),
        format!("http://{}/api/v2/alerts", b.address()),
    ];
    want.sort();
    assert_eq!(listed, want);

    // With every Alertmanager down the alerts are counted as dropped.
    let mut a = a;
    let mut b = b;
    a.kill();
    b.kill();
    run.notifier
        .send(vec![alert(&[("alertname", "Lost")], now, None)]);
    let dropped = run
        .wait_metric("thanos_alert_sender_alerts_dropped_total", 1.0)
        .await;
    assert_eq!(dropped, 1.0, "{}", run.metrics());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_from_the_config_and_from_the_url() {
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let am = AlertmanagerServer::start_with_basic_auth("ruler", "s3cret", &hash).unwrap();
    let now = now_ms();

    let good = NotifierConfig::from_yaml(&format!(
        "alertmanagers:\n  - http_config:\n      basic_auth: {{username: ruler, password: s3cret}}\n    static_configs: [\"{}\"]\n",
        am.address()
    ))
    .unwrap();
    let run = Running::start(good, NotifierOptions::default());
    run.notifier.send(vec![alert(
        &[("alertname", "FromConfig")],
        now,
        Some(now + 600_000),
    )]);
    let got = alerts_when(&am, |v| named(v, "FromConfig").is_some()).await;
    assert!(named(&got, "FromConfig").is_some(), "{got:?}");

    let from_url = NotifierConfig::from_flags(
        &[format!("http://ruler:s3cret@{}", am.address())],
        Duration::from_secs(5),
        None,
    )
    .unwrap();
    let run2 = Running::start(from_url, NotifierOptions::default());
    run2.notifier.send(vec![alert(
        &[("alertname", "FromUrl")],
        now,
        Some(now + 600_000),
    )]);
    let got = alerts_when(&am, |v| named(v, "FromUrl").is_some()).await;
    assert!(named(&got, "FromUrl").is_some(), "{got:?}");

    // A wrong password is refused by Alertmanager: an error, the alert dropped.
    let bad = NotifierConfig::from_flags(
        &[format!("http://ruler:wrong@{}", am.address())],
        Duration::from_secs(5),
        None,
    )
    .unwrap();
    let run3 = Running::start(bad, NotifierOptions::default());
    run3.notifier.send(vec![alert(
        &[("alertname", "Refused")],
        now,
        Some(now + 600_000),
    )]);
    let dropped = run3
        .wait_metric("thanos_alert_sender_alerts_dropped_total", 1.0)
        .await;
    assert_eq!(dropped, 1.0, "{}", run3.metrics());
    let series = format!(
        "thanos_alert_sender_errors_total{{alertmanager=\"{}\"}}",
        am.address()
    );
    assert_eq!(run3.metric(&series), 1.0);
    let got = alerts_when(&am, |_| true).await;
    assert!(named(&got, "Refused").is_none(), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sd_addresses_are_picked_up_on_refresh() {
    let am = AlertmanagerServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("am.yml");
    std::fs::write(&file, "[]\n").unwrap();
    let config = NotifierConfig::from_yaml(&format!(
        "alertmanagers:\n  - file_sd_configs:\n      - files: [\"{}\"]\n        refresh_interval: 1s\n",
        dir.path().join("*.yml").display()
    ))
    .unwrap();
    let run = Running::start(
        config,
        NotifierOptions {
            dns_interval: Duration::from_secs(1),
            ..NotifierOptions::default()
        },
    );
    let now = now_ms();
    // No Alertmanager known yet: the alert is dropped, and counted.
    run.notifier.send(vec![alert(
        &[("alertname", "Early")],
        now,
        Some(now + 600_000),
    )]);
    assert_eq!(
        run.wait_metric("thanos_alert_sender_alerts_dropped_total", 1.0)
            .await,
        1.0
    );
    assert!(run.notifier.alertmanagers().is_empty());

    std::fs::write(&file, format!("- targets: [\"{}\"]\n", am.address())).unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while run.notifier.alertmanagers().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        run.notifier.alertmanagers(),
        [format!("http://{}/api/v2/alerts", am.address())]
    );
    run.notifier.send(vec![alert(
        &[("alertname", "Late")],
        now,
        Some(now + 600_000),
    )]);
    let got = alerts_when(&am, |v| named(v, "Late").is_some()).await;
    assert!(named(&got, "Late").is_some(), "{got:?}");
    assert!(named(&got, "Early").is_none(), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_the_ca_from_tls_config() {
    let dir = tempfile::tempdir().unwrap();
    let certs = strata_testutil::tls::ca_signed_certificates(dir.path());
    let am = AlertmanagerServer::start_with_web_config(&format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
        certs.server_cert.display(),
        certs.server_key.display()
    ))
    .unwrap();
    let series = format!(
        "thanos_alert_sender_alerts_sent_total{{alertmanager=\"{}\"}}",
        am.address()
    );
    let errors = format!(
        "thanos_alert_sender_errors_total{{alertmanager=\"{}\"}}",
        am.address()
    );
    let now = now_ms();
    let trusted = NotifierConfig::from_yaml(&format!(
        "alertmanagers:\n  - scheme: https\n    static_configs: [\"{}\"]\n    http_config:\n      tls_config: {{ca_file: {}}}\n",
        am.address(),
        certs.ca.display()
    ))
    .unwrap();
    let run = Running::start(trusted, NotifierOptions::default());
    run.notifier.send(vec![alert(
        &[("alertname", "Tls")],
        now,
        Some(now + 600_000),
    )]);
    // Alertmanager answered 200 over TLS (its API cannot be read back here without TLS).
    assert_eq!(
        run.wait_metric(&series, 1.0).await,
        1.0,
        "{}",
        run.metrics()
    );
    assert_eq!(run.metric(&errors), 0.0);

    // Without the CA the certificate is not trusted: an error, nothing sent.
    let untrusted = NotifierConfig::from_flags(
        &[format!("https://{}", am.address())],
        Duration::from_secs(5),
        None,
    )
    .unwrap();
    let run2 = Running::start(untrusted, NotifierOptions::default());
    run2.notifier.send(vec![alert(
        &[("alertname", "Tls")],
        now,
        Some(now + 600_000),
    )]);
    assert_eq!(
        run2.wait_metric(&errors, 1.0).await,
        1.0,
        "{}",
        run2.metrics()
    );
    assert_eq!(run2.metric(&series), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_urls_resolve_to_every_address() {
    let am = AlertmanagerServer::start().unwrap();
    let port = am.address().rsplit_once(':').unwrap().1.to_string();
    let config = NotifierConfig::from_flags(
        &[format!("dns+http://localhost:{port}/")],
        Duration::from_secs(5),
        None,
    )
    .unwrap();
    let run = Running::start(config, NotifierOptions::default());
    let now = now_ms();
    run.notifier.send(vec![alert(
        &[("alertname", "ViaDns")],
        now,
        Some(now + 600_000),
    )]);
    let got = alerts_when(&am, |v| named(v, "ViaDns").is_some()).await;
    assert!(named(&got, "ViaDns").is_some(), "{got:?}");
    // `localhost` may also resolve to ::1, where nothing listens: that address fails alone.
    let listed = run.notifier.alertmanagers();
    assert!(
        listed.contains(&format!("http://127.0.0.1:{port}/api/v2/alerts")),
        "{listed:?}"
    );
    assert_eq!(run.metric("thanos_alert_sender_alerts_dropped_total"), 0.0);
}
