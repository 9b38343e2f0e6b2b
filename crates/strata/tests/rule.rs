//! `strata rule` end to end over real processes: a Prometheus 2.42 scraping a target behind a
//! `strata sidecar` and a `strata query`; the ruler evaluating a rule file against the
//! querier, in Thanos' stateless mode, writing recorded series and `ALERTS` to a second
//! Prometheus 2.42 over remote write and sending alerts to a real Alertmanager; its Rules API
//! read over HTTP and by a querier over gRPC; reloads (`POST /-/reload`) that add a group,
//! refuse a broken file, and mark a removed rule's series stale; a stateful ruler that
//! evaluates through the querier's Query API over gRPC (`--grpc-query-endpoint`); start-up
//! errors.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use strata_testutil::alertmanager::AlertmanagerServer;
use strata_testutil::process::{
    LoggedProcess as Proc, free_port, http_request, url_encode as enc, wait_until,
};
use strata_testutil::prometheus::prometheus;

fn get(port: u16, path: &str) -> (u16, String) {
    match http_request("GET", &format!("http://127.0.0.1:{port}{path}"), b"") {
        Ok(r) => (r.status, String::from_utf8_lossy(&r.body).into_owned()),
        Err(_) => (0, String::new()),
    }
}

fn json(port: u16, path: &str) -> Value {
    let (_, b) = get(port, path);
    serde_json::from_str(&b).unwrap_or(Value::Null)
}

/// `demo_events_total`, growing by 1 per second since the test started.
fn start_target() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let t0 = Instant::now();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut buf = [0u8; 2048];
            let _ = c.read(&mut buf);
            let body = format!(
                "# TYPE demo_events_total counter\ndemo_events_total {}\n",
                t0.elapsed().as_millis() as f64 / 1000.0
            );
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

fn start_prometheus(dir: &Path, config: &str, extra: &[&str]) -> (Proc, u16) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let port = free_port();
    let mut cmd = Command::new(prometheus().unwrap());
    cmd.arg(format!(
        "--config.file={}",
        dir.join("prometheus.yml").display()
    ))
    .arg(format!(
        "--storage.tsdb.path={}",
        dir.join("tsdb").display()
    ))
    .arg(format!("--web.listen-address=127.0.0.1:{port}"))
    .args(extra);
    let p = Proc::start(dir, "prometheus", &mut cmd);
    wait_until("Prometheus ready", Duration::from_secs(60), || {
        get(port, "/-/ready").0 == 200
    });
    (p, port)
}

/// A `strata` process with HTTP and gRPC ports, ready.
struct Strata {
    proc: Proc,
    http: u16,
    grpc: u16,
}

fn start_strata(dir: &Path, name: &str, sub: &str, args: &[String]) -> Strata {
    let (http, grpc) = (free_port(), free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg(sub)
        .arg(format!("--http-address=127.0.0.1:{http}"))
        .arg(format!("--grpc-address=127.0.0.1:{grpc}"))
        .args(args);
    let mut proc = Proc::start(dir, name, &mut cmd);
    let start = Instant::now();
    while get(http, "/-/ready").0 != 200 {
        proc.guard
            .ensure_running()
            .unwrap_or_else(|e| panic!("{e:#}\n{}", proc.log()));
        assert!(start.elapsed() < Duration::from_secs(60), "{}", proc.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    Strata { proc, http, grpc }
}

/// Runs `strata rule` with `args` and expects it to exit at once with an error containing
/// `want`.
fn start_fails(dir: &Path, args: &[String], want: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("rule")
        .arg(format!("--http-address=127.0.0.1:{}", free_port()))
        .arg(format!("--grpc-address=127.0.0.1:{}", free_port()))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{args:?} started: {text}");
    assert!(text.contains(want), "{want:?} not in: {text}");
}

/// A Prometheus 2.42 in `root/<name>` behind a `strata sidecar` and a `strata query` (with
/// `query_args`): the stack the ruler queries, or receives into.
struct Source {
    _prometheus: Proc,
    /// The Prometheus' HTTP port.
    port: u16,
    _sidecar: Strata,
    querier: Strata,
}

fn start_source(
    root: &Path,
    name: &str,
    config: &str,
    prometheus_args: &[&str],
    query_args: &[String],
) -> Source {
    let dir = root.join(name);
    let (prometheus, port) = start_prometheus(&dir, config, prometheus_args);
    let sidecar = start_strata(
        &dir,
        "sidecar",
        "sidecar",
        &[
            format!("--prometheus.url=http://127.0.0.1:{port}"),
            format!("--tsdb.path={}", dir.join("tsdb").display()),
        ],
    );
    let mut args = vec![format!("--endpoint=127.0.0.1:{}", sidecar.grpc)];
    args.extend_from_slice(query_args);
    let querier = start_strata(root, "query", "query", &args);
    Source {
        _prometheus: prometheus,
        port,
        _sidecar: sidecar,
        querier,
    }
}

/// Scrapes `demo_events_total` from `target` every second, with these external labels.
fn scrape_config(target: u16, external_labels: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  external_labels:\n{external_labels}\
         scrape_configs:\n  - job_name: demo\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
    )
}

const RULES: &str = "groups:
  - name: demo
    partial_response_strategy: warn
    rules:
      - record: job:demo_events:rate10s
        expr: sum by (job) (rate(demo_events_total[10s]))
      - alert: DemoEvents
        expr: sum by (job) (demo_events_total) > 0
        labels:
          severity: page
          source_job: '{{ $labels.job }}'
        annotations:
          summary: '{{ $labels.job }} counted events; ruler {{ $externalLabels.ruler }}'
";

/// The instant vector of `q` on Prometheus `port`: `(metric, value)`.
fn vector(port: u16, q: &str) -> Vec<(Value, String)> {
    let v = json(port, &format!("/api/v1/query?query={}", enc(q)));
    v["data"]["result"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|s| {
                    (
                        s["metric"].clone(),
                        s["value"][1].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn rule_names(v: &Value) -> Vec<String> {
    v["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .map(|r| r["name"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn stateless_ruler_records_alerts_and_reloads() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let target = start_target();
    let source = start_source(
        root,
        "source",
        &scrape_config(target, "    cluster: eu1\n"),
        &[],
        &[],
    );
    let querier = &source.querier;
    let (_receiver, receiver_port) = start_prometheus(
        &root.join("receiver"),
        "global:\n  scrape_interval: 1m\n",
        &["--web.enable-remote-write-receiver"],
    );
    let am = AlertmanagerServer::start().unwrap();

    let rules_dir = root.join("rules");
    std::fs::create_dir_all(&rules_dir).unwrap();
    std::fs::write(rules_dir.join("demo.yml"), RULES).unwrap();
    let rw = root.join("remote-write.yml");
    std::fs::write(
        &rw,
        format!(
            "remote_write:\n  - url: http://127.0.0.1:{receiver_port}/api/v1/write\n    name: receiver\n    queue_config:\n      batch_send_deadline: 1s\n"
        ),
    )
    .unwrap();
    let ruler_args = vec![
        format!("--query=127.0.0.1:{}", querier.http),
        format!("--remote-write.config-file={}", rw.display()),
        format!("--alertmanagers.url={}", am.url()),
        format!("--rule-file={}/*.yml", rules_dir.display()),
        "--eval-interval=1s".into(),
        "--label=ruler=\"r1\"".into(),
        "--label=replica=\"x\"".into(),
        "--alert.label-drop=replica".into(),
        "--alert.query-url=http://querier.example".into(),
        format!("--data-dir={}", root.join("ruler-data").display()),
    ];
    let ruler = start_strata(root, "rule", "rule", &ruler_args);

    // Recorded series and ALERTS reach the receiver, with the ruler's external labels.
    // (The first evaluations see fewer than 10 s of the counter, so their rates are low.)
    wait_until(
        "the recorded rate in the receiver",
        Duration::from_secs(60),
        || {
            vector(receiver_port, "job:demo_events:rate10s")
                .first()
                .and_then(|s| s.1.parse::<f64>().ok())
                .is_some_and(|r| (0.8..=1.2).contains(&r))
        },
    );
    let rec = vector(receiver_port, "job:demo_events:rate10s");
    assert_eq!(rec.len(), 1, "{rec:?}");
    assert_eq!(
        rec[0].0,
        serde_json::json!({"__name__": "job:demo_events:rate10s", "job": "demo", "ruler": "r1", "replica": "x"})
    );
    wait_until("ALERTS in the receiver", Duration::from_secs(30), || {
        !vector(receiver_port, "ALERTS{alertstate=\"firing\"}").is_empty()
    });
    let alerts = vector(receiver_port, "ALERTS");
    assert_eq!(
        alerts[0].0,
        serde_json::json!({
            "__name__": "ALERTS", "alertname": "DemoEvents", "alertstate": "firing",
            "job": "demo", "severity": "page", "source_job": "demo",
            "ruler": "r1", "replica": "x"
        })
    );

    // The alert reaches Alertmanager with the external labels, without the dropped one.
    let am_alerts = |timeout: Duration| -> Vec<Value> {
        let text = am.wait_for_alerts(timeout, |t| t.trim() != "[]").unwrap();
        serde_json::from_str(&text).unwrap()
    };
    let first = am_alerts(Duration::from_secs(30));
    let a = &first[0];
    assert_eq!(
        a["labels"],
        serde_json::json!({
            "alertname": "DemoEvents", "job": "demo", "severity": "page",
            "source_job": "demo", "ruler": "r1"
        })
    );
    assert_eq!(a["annotations"]["summary"], "demo counted events; ruler r1");
    let generator = a["generatorURL"].as_str().unwrap();
    assert!(
        generator.starts_with("http://querier.example/graph?g0.expr=sum+by+%28job%29"),
        "{generator}"
    );

    // The ruler's own API, and its Rules API through a querier.
    let rules = json(ruler.http, "/api/v1/rules");
    assert_eq!(rules["status"], "success", "{rules}");
    let group = &rules["data"]["groups"][0];
    assert_eq!(group["name"], "demo");
    assert_eq!(group["partialResponseStrategy"], "WARN");
    assert_eq!(group["interval"], 1.0);
    for r in group["rules"].as_array().unwrap() {
        assert_eq!(r["health"], "ok", "{r}");
        assert_eq!(r["labels"]["ruler"], "r1", "{r}");
    }
    let firing = json(ruler.http, "/api/v1/alerts");
    assert_eq!(firing["data"]["alerts"][0]["state"], "firing", "{firing}");
    assert_eq!(
        firing["data"]["alerts"][0]["annotations"]["summary"],
        "demo counted events; ruler r1"
    );
    let upper = start_strata(
        root,
        "query-over-ruler",
        "query",
        &[format!("--endpoint=127.0.0.1:{}", ruler.grpc)],
    );
    wait_until(
        "the ruler's rules through a querier",
        Duration::from_secs(30),
        || {
            let mut names = rule_names(&json(upper.http, "/api/v1/rules"));
            names.sort();
            names == ["DemoEvents", "job:demo_events:rate10s"]
        },
    );
    let stores = json(upper.http, "/api/v1/stores");
    assert!(stores["data"]["rule"].is_array(), "{stores}");

    // A broken file: the reload fails, the rules keep running.
    std::fs::write(rules_dir.join("broken.yml"), "groups:\n  - name: b\n    rules:\n      - alert: X\n        expr: up\n        annotations:\n          a: '{{ .Nope '\n").unwrap();
    let r = http_request(
        "POST",
        &format!("http://127.0.0.1:{}/-/reload", ruler.http),
        b"",
    )
    .unwrap();
    let body = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.status, 500, "{body}");
    assert!(body.contains("broken.yml"), "{body}");
    std::fs::remove_file(rules_dir.join("broken.yml")).unwrap();
    assert_eq!(rule_names(&json(ruler.http, "/api/v1/rules")).len(), 2);

    // Dropping the recording rule marks its series stale in the receiver at once (no 5m
    // lookback), and a new group appears.
    std::fs::write(
        rules_dir.join("demo.yml"),
        RULES.replace(
            "      - record: job:demo_events:rate10s\n        expr: sum by (job) (rate(demo_events_total[10s]))\n",
            "",
        ),
    )
    .unwrap();
    std::fs::write(
        rules_dir.join("more.yml"),
        "groups:\n  - name: more\n    rules:\n      - record: demo:one\n        expr: vector(1)\n",
    )
    .unwrap();
    let r = http_request(
        "POST",
        &format!("http://127.0.0.1:{}/-/reload", ruler.http),
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let mut names = rule_names(&json(ruler.http, "/api/v1/rules"));
    names.sort();
    assert_eq!(names, ["DemoEvents", "demo:one"]);
    wait_until(
        "the dropped rule's series to go stale",
        Duration::from_secs(30),
        || vector(receiver_port, "job:demo_events:rate10s").is_empty(),
    );
    wait_until("the new group's series", Duration::from_secs(30), || {
        !vector(receiver_port, "demo:one").is_empty()
    });
    // The alert kept firing across the reloads: Alertmanager holds the one alert, started
    // when it first fired.
    let again = am_alerts(Duration::from_secs(5));
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0]["startsAt"], a["startsAt"]);

    let metrics = get(ruler.http, "/metrics").1;
    for m in [
        "prometheus_rule_evaluations_total{rule_group=",
        "thanos_rule_loaded_rules{",
        "thanos_rule_config_last_reload_successful 1",
        "thanos_alert_sender_alerts_sent_total{",
        "prometheus_remote_storage_samples_total{",
    ] {
        assert!(metrics.contains(m), "{m} missing from\n{metrics}");
    }
    drop(ruler.proc);
}

/// A restarted ruler restores how long its alerts had been pending (Prometheus'
/// `RestoreForState`, Thanos' stateless restore through the queriers): the alert's `activeAt`
/// after the restart is the one before it, moved on by the downtime, not the restart time.
#[test]
fn for_state_is_restored_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let receiver = start_source(
        root,
        "receiver",
        "global:\n  scrape_interval: 1m\n  external_labels:\n    receiver: r\n",
        &["--web.enable-remote-write-receiver"],
        &[],
    );
    let (receiver_port, querier) = (receiver.port, &receiver.querier);
    let rules = root.join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: slow\n    rules:\n      - alert: Slow\n        expr: vector(1)\n        for: 1h\n",
    )
    .unwrap();
    let rw = root.join("remote-write.yml");
    std::fs::write(
        &rw,
        format!(
            "remote_write:\n  - url: http://127.0.0.1:{receiver_port}/api/v1/write\n    queue_config:\n      batch_send_deadline: 1s\n"
        ),
    )
    .unwrap();
    let args = vec![
        format!("--query=127.0.0.1:{}", querier.http),
        format!("--remote-write.config-file={}", rw.display()),
        format!("--rule-file={}", rules.display()),
        "--eval-interval=1s".into(),
        "--label=ruler=\"r1\"".into(),
        // What the ruler's remote write and the receiver's sidecar add to the series.
        "--restore-ignored-label=ruler".into(),
        "--restore-ignored-label=receiver".into(),
        "--for-grace-period=1s".into(),
    ];
    let active_at = |port: u16| -> Option<f64> {
        let v = json(port, "/api/v1/alerts");
        let t = v["data"]["alerts"][0]["activeAt"].as_str()?.to_owned();
        strata_model::timestamp::parse_rfc3339(&t)
            .ok()
            .map(|ms| ms as f64 / 1000.0)
    };
    let ruler = start_strata(root, "rule-1", "rule", &args);
    wait_until(
        "ALERTS_FOR_STATE in the receiver",
        Duration::from_secs(60),
        || !vector(receiver_port, "ALERTS_FOR_STATE{alertname=\"Slow\"}").is_empty(),
    );
    let before = active_at(ruler.http).expect("a pending alert");
    // Let the receiver hold several seconds of the state, then restart the ruler.
    std::thread::sleep(Duration::from_secs(4));
    drop(ruler);
    std::thread::sleep(Duration::from_secs(2));
    let restarted_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let ruler = start_strata(root, "rule-2", "rule", &args);
    // The restore runs after the second evaluation.
    wait_until("the restored alert", Duration::from_secs(30), || {
        active_at(ruler.http).is_some_and(|t| t < restarted_at - 3.0)
    });
    let after = active_at(ruler.http).unwrap();
    // The time already spent pending still counts: `activeAt` is the one before the restart,
    // moved on by the downtime the queriers show. (Through a range query the last state is
    // carried forward by the lookback delta up to the restart, as with Thanos, so the
    // downtime seen is at most a few seconds.)
    assert!(
        after >= before && after <= before + 3.0,
        "before {before}, after {after}"
    );
}

/// Thanos' default, stateful mode: the ruler keeps what it records in its own TSDB
/// (`--data-dir`), serves it over the Store API to a querier, cuts blocks and ships them to
/// the bucket with its external labels and `source: ruler`, replays its WAL after a crash
/// (nothing recorded before it is lost), and refuses a second ruler on the same directory.
#[test]
fn stateful_ruler_serves_ships_and_replays() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let bucket = root.join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    // A querier without stores still evaluates `vector(1)`.
    let source = start_strata(root, "query-source", "query", &[]);
    let rules = root.join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: local\n    rules:\n      - record: demo:one\n        expr: vector(1)\n      - alert: Always\n        expr: vector(1)\n",
    )
    .unwrap();
    let data = root.join("ruler-data");
    let args = vec![
        format!("--query=127.0.0.1:{}", source.http),
        format!("--rule-file={}", rules.display()),
        "--eval-interval=1s".into(),
        "--label=replica=\"r0\"".into(),
        "--tsdb.block-duration=10s".into(),
        format!("--data-dir={}", data.display()),
        format!(
            "--objstore.config=type: FILESYSTEM\nconfig:\n  directory: {}",
            bucket.display()
        ),
    ];
    let ruler = start_strata(root, "rule-1", "rule", &args);
    let upper = start_strata(
        root,
        "query-over-ruler",
        "query",
        &[format!("--endpoint=127.0.0.1:{}", ruler.grpc)],
    );
    let count = |port: u16| -> f64 {
        let v = json(
            port,
            &format!(
                "/api/v1/query?query={}",
                enc("count_over_time(demo:one[10m])")
            ),
        );
        v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0)
    };
    wait_until(
        "the recorded series through the querier",
        Duration::from_secs(60),
        || count(upper.http) >= 3.0,
    );
    let v = json(
        upper.http,
        &format!("/api/v1/query?query={}", enc("demo:one")),
    );
    assert_eq!(
        v["data"]["result"][0]["metric"],
        serde_json::json!({"__name__": "demo:one", "replica": "r0"}),
        "{v}"
    );
    let alerts = json(
        upper.http,
        &format!("/api/v1/query?query={}", enc("ALERTS")),
    );
    assert_eq!(
        alerts["data"]["result"][0]["metric"]["alertstate"], "firing",
        "{alerts}"
    );

    // A block is cut and shipped, as Thanos' bucket layout has it.
    let shipped_meta = || -> Option<Value> {
        for e in std::fs::read_dir(&bucket).ok()?.flatten() {
            if let Ok(text) = std::fs::read_to_string(e.path().join("meta.json")) {
                return serde_json::from_str(&text).ok();
            }
        }
        None
    };
    wait_until("a shipped block", Duration::from_secs(90), || {
        shipped_meta().is_some()
    });
    let meta = shipped_meta().unwrap();
    assert_eq!(meta["thanos"]["source"], "ruler", "{meta}");
    assert_eq!(
        meta["thanos"]["labels"],
        serde_json::json!({"replica": "r0"}),
        "{meta}"
    );
    assert_eq!(meta["thanos"]["downsample"]["resolution"], 0, "{meta}");

    // The cut checkpoints the WAL (off the evaluation path).
    wait_until("a WAL checkpoint", Duration::from_secs(30), || {
        std::fs::read_dir(data.join("wal")).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("checkpoint."))
        })
    });

    // A second ruler on the same directory is refused.
    start_fails(root, &args, "locked by another process");

    // A crash: what was recorded comes back from the blocks and the WAL.
    let before = count(upper.http);
    drop(ruler);
    let ruler = start_strata(root, "rule-2", "rule", &args);
    let upper = start_strata(
        root,
        "query-over-ruler-2",
        "query",
        &[format!("--endpoint=127.0.0.1:{}", ruler.grpc)],
    );
    wait_until(
        "the ruler back with its data",
        Duration::from_secs(60),
        || count(upper.http) >= before,
    );
    // The head came back from the WAL (the blocks alone hold only what was cut).
    let log = ruler.proc.log();
    let replayed = log
        .lines()
        .find(|l| l.contains("WAL replayed"))
        .and_then(|l| l.split(" samples=").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok());
    assert!(replayed.is_some_and(|n| n > 0), "{log}");
}

/// `--grpc-query-endpoint`: the ruler evaluates through the querier's Query API over gRPC.
/// The `--query` given beside it is down, so every evaluation goes through the fallback to
/// gRPC that Thanos' ruler makes; the recorded rate of a real Prometheus' counter, deduplicated
/// by the querier, is then read back through the ruler's own Store API.
#[test]
fn ruler_evaluates_through_the_grpc_query_api() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let target = start_target();
    let source = start_source(
        root,
        "source",
        &scrape_config(target, "    cluster: eu1\n    replica: a\n"),
        &[],
        &["--query.replica-label=replica".into()],
    );
    let querier = &source.querier;
    let rules = root.join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: grpc\n    rules:\n      - record: demo:rate10s\n        expr: rate(demo_events_total[10s])\n      - alert: DemoEvents\n        expr: sum by (job) (demo_events_total) > 0\n",
    )
    .unwrap();
    let ruler = start_strata(
        root,
        "rule",
        "rule",
        &[
            format!("--query=127.0.0.1:{}", free_port()),
            format!("--grpc-query-endpoint=127.0.0.1:{}", querier.grpc),
            format!("--rule-file={}", rules.display()),
            "--eval-interval=1s".into(),
            // Both rules read only the source's counter: they are queried side by side.
            "--rule-concurrent-evaluation=2".into(),
            "--label=ruler=\"r1\"".into(),
            format!("--data-dir={}", root.join("ruler-data").display()),
        ],
    );
    let upper = start_strata(
        root,
        "query-over-ruler",
        "query",
        &[format!("--endpoint=127.0.0.1:{}", ruler.grpc)],
    );
    wait_until(
        "the recorded rate through the ruler's Store API",
        Duration::from_secs(60),
        || {
            vector(upper.http, "demo:rate10s")
                .first()
                .and_then(|s| s.1.parse::<f64>().ok())
                .is_some_and(|r| (0.8..=1.2).contains(&r))
        },
    );
    let rec = vector(upper.http, "demo:rate10s");
    // The source's labels without the replica label: the ruler asked for deduplication.
    assert_eq!(
        rec.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        vec![serde_json::json!({
            "__name__": "demo:rate10s",
            "cluster": "eu1",
            "instance": format!("127.0.0.1:{target}"),
            "job": "demo",
            "ruler": "r1",
        })],
        "{rec:?}"
    );
    let alerts = vector(upper.http, "ALERTS");
    assert!(
        alerts
            .iter()
            .any(|a| a.0["alertname"] == "DemoEvents" && a.0["alertstate"] == "firing"),
        "{alerts:?}"
    );
    // Both rules evaluate without errors, each evaluation falling back from the HTTP
    // querier that is down to the gRPC one.
    let rules_api = json(ruler.http, "/api/v1/rules");
    let health: Vec<&str> = rules_api["data"]["groups"][0]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["health"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(health, ["ok", "ok"], "{rules_api}");
}

#[test]
fn ruler_start_up_errors_name_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let rw = dir.join("rw.yml");
    std::fs::write(
        &rw,
        "remote_write:\n  - url: http://127.0.0.1:1/api/v1/write\n",
    )
    .unwrap();
    let rw_flag = format!("--remote-write.config-file={}", rw.display());
    start_fails(
        dir,
        std::slice::from_ref(&rw_flag),
        "no --query parameter was given",
    );
    let cfg = dir.join("query.yml");
    std::fs::write(&cfg, "- static_configs: ['127.0.0.1:1']\n").unwrap();
    start_fails(
        dir,
        &[
            "--grpc-query-endpoint=127.0.0.1:1".into(),
            format!("--query.config-file={}", cfg.display()),
            rw_flag.clone(),
        ],
        "cannot be defined at the same time",
    );
    start_fails(
        dir,
        &["--grpc-query-endpoint=dns+nohost".into(), rw_flag.clone()],
        "--grpc-query-endpoint",
    );
    start_fails(
        dir,
        &[
            "--query=127.0.0.1:1".into(),
            format!(
                "--objstore.config=type: FILESYSTEM\nconfig:\n  directory: {}",
                dir.display()
            ),
        ],
        "--label is required to upload blocks",
    );
    start_fails(
        dir,
        &[
            "--query=127.0.0.1:1".into(),
            "--query=127.0.0.1:1".into(),
            rw_flag.clone(),
        ],
        "duplicated",
    );
    let bad = dir.join("bad.yml");
    std::fs::write(
        &bad,
        "groups:\n  - name: g\n    rules:\n      - record: x\n        expr: sum(\n",
    )
    .unwrap();
    start_fails(
        dir,
        &[
            "--query=127.0.0.1:1".into(),
            rw_flag.clone(),
            format!("--rule-file={}", bad.display()),
        ],
        "bad.yml",
    );
    start_fails(
        dir,
        &[
            "--query=127.0.0.1:1".into(),
            rw_flag,
            "--alert.query-template=/x?e={{.Other}}".into(),
        ],
        "--alert.query-template",
    );
}
