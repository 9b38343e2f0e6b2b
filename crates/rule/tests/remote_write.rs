//! Remote write of recorded series against a real Prometheus 2.42 receiver
//! (`--web.enable-remote-write-receiver`) and against a stand-in HTTP server that records
//! what it is sent and answers with scripted statuses.

use std::collections::VecDeque;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::registry::Registry;
use strata_model::Labels;
use strata_rule::remote_write::{RecordedSample, RemoteWriteConfig, RemoteWriter};
use strata_testutil::process::{ChildGuard, free_port, http_request};
use strata_testutil::prometheus::prometheus;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

fn stale() -> f64 {
    f64::from_bits(STALE_NAN)
}

/// A Prometheus 2.42 accepting remote write on `port`, storing under `dir`; killed on drop.
struct Prom {
    guard: ChildGuard,
    url: String,
}

fn start_prometheus(dir: &Path, port: u16) -> Prom {
    let prom = spawn_prometheus(dir, port, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_request("GET", &format!("{}/-/ready", prom.url), b"")
        .map(|r| r.status)
        .unwrap_or(0)
        != 200
    {
        assert!(Instant::now() < deadline, "prometheus never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    prom
}

/// Starts Prometheus and waits until it listens (answering HTTP at all: over TLS, Go answers a
/// plain request with 400).
fn spawn_prometheus(dir: &Path, port: u16, extra: &[String]) -> Prom {
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1h\n").unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let mut cmd = Command::new(prometheus().unwrap());
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-remote-write-receiver")
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log);
    let mut guard = ChildGuard::spawn("prometheus", &mut cmd).unwrap();
    let url = format!("http://127.0.0.1:{port}");
    guard
        .wait_for_http(&format!("{url}/-/ready"), Duration::from_secs(60))
        .unwrap();
    Prom { guard, url }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `GET /api/v1/query` and its `data.result`.
fn query(prom: &str, q: &str, time_ms: i64) -> Vec<serde_json::Value> {
    let url = format!(
        "{prom}/api/v1/query?query={}&time={}",
        encode(q),
        time_ms as f64 / 1000.0
    );
    let resp = http_request("GET", &url, b"").unwrap();
    assert_eq!(
        resp.status,
        200,
        "{url}: {}",
        String::from_utf8_lossy(&resp.body)
    );
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Raw samples of every series matching `selector` in `(end - range, end]`, as
/// `(labels, [(ts_ms, value)])`, sorted by labels.
fn raw_samples(
    prom: &str,
    selector: &str,
    end_ms: i64,
    range: &str,
) -> Vec<(Labels, Vec<(i64, f64)>)> {
    let mut out: Vec<(Labels, Vec<(i64, f64)>)> =
        query(prom, &format!("{selector}[{range}]"), end_ms)
            .into_iter()
            .map(|r| {
                let labels: Vec<(String, String)> = r["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                let values = r["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        let ts = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                        (ts, p[1].as_str().unwrap().parse::<f64>().unwrap())
                    })
                    .collect();
                (Labels::from_pairs(&labels), values)
            })
            .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The value of the first sample line of `registry` starting with `prefix` (0 when absent).
fn metric(registry: &Registry, prefix: &str) -> f64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .map(|v| v.parse().unwrap())
        .unwrap_or(0.0)
}

async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sample(pairs: &[(&str, &str)], ts: i64, value: f64) -> RecordedSample {
    RecordedSample {
        labels: Labels::from_pairs(pairs),
        timestamp_ms: ts,
        value,
    }
}

fn start_writer(
    yaml: &str,
    external: &[(&str, &str)],
) -> (
    Arc<RemoteWriter>,
    Registry,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let mut registry = Registry::default();
    let writer = RemoteWriter::new(
        RemoteWriteConfig::from_yaml(yaml).unwrap(),
        Labels::from_pairs(external),
        &mut registry,
    )
    .unwrap();
    writer.set_flush_deadline(Duration::from_secs(10));
    let (stop, stopped) = oneshot::channel::<()>();
    let run = tokio::spawn(writer.clone().run(async {
        let _ = stopped.await;
    }));
    (writer, registry, stop, run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_series_round_trip_through_prometheus_and_4xx_is_not_retried() {
    let tmp = tempfile::tempdir().unwrap();
    let prom = start_prometheus(tmp.path(), free_port());
    let yaml = format!(
        "remote_write:\n  - url: {}/api/v1/write\n    name: prom\n    queue_config:\n      max_samples_per_send: 2\n      batch_send_deadline: 100ms\n      min_backoff: 10ms\n      max_backoff: 100ms\n",
        prom.url
    );
    let (writer, registry, stop, run) =
        start_writer(&yaml, &[("cluster", "eu"), ("replica", "r0")]);
    let t0 = (now_ms() - 120_000) / 1000 * 1000;
    // Three evaluations; `job:a` goes stale at the third, and has its own replica label.
    writer.append(vec![
        sample(&[("__name__", "job:a"), ("replica", "own")], t0, 1.0),
        sample(&[("__name__", "job:b"), ("k", "x")], t0, 10.0),
        sample(&[("__name__", "job:b"), ("k", "y")], t0, 20.0),
    ]);
    writer.append(vec![
        sample(
            &[("__name__", "job:a"), ("replica", "own")],
            t0 + 15_000,
            2.5,
        ),
        sample(&[("__name__", "job:b"), ("k", "x")], t0 + 15_000, 11.0),
        sample(&[("__name__", "job:b"), ("k", "y")], t0 + 15_000, -0.125),
    ]);
    writer.append(vec![
        sample(
            &[("__name__", "job:a"), ("replica", "own")],
            t0 + 30_000,
            stale(),
        ),
        sample(&[("__name__", "job:b"), ("k", "x")], t0 + 30_000, 12.0),
        sample(&[("__name__", "job:b"), ("k", "y")], t0 + 30_000, 1e300),
    ]);
    let pending = "prometheus_remote_storage_samples_pending{remote_name=\"prom\"";
    wait_until("the queue to drain", Duration::from_secs(30), || {
        metric(
            &registry,
            "prometheus_remote_storage_queue_highest_sent_timestamp_seconds",
        ) >= (t0 + 30_000) as f64 / 1000.0
            && metric(&registry, pending) == 0.0
    })
    .await;

    let want = vec![
        (
            Labels::from_pairs(&[("__name__", "job:a"), ("cluster", "eu"), ("replica", "own")]),
            vec![(t0, 1.0), (t0 + 15_000, 2.5)],
        ),
        (
            Labels::from_pairs(&[
                ("__name__", "job:b"),
                ("cluster", "eu"),
                ("k", "x"),
                ("replica", "r0"),
            ]),
            vec![(t0, 10.0), (t0 + 15_000, 11.0), (t0 + 30_000, 12.0)],
        ),
        (
            Labels::from_pairs(&[
                ("__name__", "job:b"),
                ("cluster", "eu"),
                ("k", "y"),
                ("replica", "r0"),
            ]),
            vec![(t0, 20.0), (t0 + 15_000, -0.125), (t0 + 30_000, 1e300)],
        ),
    ];
    // The queue's metrics say a shard sent the last timestamp, not that every shard's last
    // request was answered: read until the answer is complete, then compare.
    let deadline = Instant::now() + Duration::from_secs(10);
    let got = loop {
        let got = raw_samples(&prom.url, "{cluster=\"eu\"}", t0 + 30_000, "5m");
        if got == want || Instant::now() >= deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(got, want);
    // The stale marker arrived as one: `job:a` is gone right after it, while `job:b`, with no
    // marker, is still found by the 5-minute lookback.
    let after = t0 + 45_000;
    assert!(query(&prom.url, "job:a", after).is_empty());
    assert_eq!(query(&prom.url, "job:b", after).len(), 2);
    assert_eq!(query(&prom.url, "job:a", t0 + 29_000).len(), 1);

    let sent = metric(&registry, "prometheus_remote_storage_samples_total{");
    assert_eq!(sent, 9.0, "every sample sent once, no retry");
    assert_eq!(
        metric(
            &registry,
            "prometheus_remote_storage_samples_retried_total{"
        ),
        0.0
    );

    // An out-of-order sample: Prometheus answers 400, the batch is dropped and counted, not
    // retried, and what was stored is untouched.
    writer.append(vec![sample(
        &[("__name__", "job:b"), ("k", "x")],
        t0 - 60_000,
        99.0,
    )]);
    wait_until("the 4xx to be counted", Duration::from_secs(30), || {
        metric(&registry, "prometheus_remote_storage_samples_failed_total{") == 1.0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        metric(
            &registry,
            "prometheus_remote_storage_samples_retried_total{"
        ),
        0.0
    );
    assert_eq!(
        metric(&registry, "prometheus_remote_storage_samples_total{"),
        10.0
    );
    assert_eq!(
        raw_samples(&prom.url, "{cluster=\"eu\"}", t0 + 30_000, "5m"),
        want
    );

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .unwrap()
        .unwrap();
    drop(prom.guard);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_queued_while_the_receiver_is_down_are_retried_and_delivered() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let yaml = format!(
        "remote_write:\n  - url: http://127.0.0.1:{port}/api/v1/write\n    queue_config:\n      batch_send_deadline: 50ms\n      min_backoff: 50ms\n      max_backoff: 200ms\n"
    );
    let (writer, registry, stop, run) = start_writer(&yaml, &[("ruler", "r1")]);
    let t0 = (now_ms() - 60_000) / 1000 * 1000;
    writer.append(vec![
        sample(&[("__name__", "late:a")], t0, 1.0),
        sample(&[("__name__", "late:b")], t0, 2.0),
    ]);
    wait_until(
        "retries against the absent receiver",
        Duration::from_secs(30),
        || {
            metric(
                &registry,
                "prometheus_remote_storage_samples_retried_total{",
            ) >= 4.0
        },
    )
    .await;
    writer.append(vec![sample(&[("__name__", "late:a")], t0 + 15_000, 3.0)]);
    let prom = start_prometheus(tmp.path(), port);
    wait_until(
        "delivery after the receiver came up",
        Duration::from_secs(30),
        || {
            metric(&registry, "prometheus_remote_storage_samples_pending{") == 0.0
                && metric(
                    &registry,
                    "prometheus_remote_storage_queue_highest_sent_timestamp_seconds",
                ) >= (t0 + 15_000) as f64 / 1000.0
        },
    )
    .await;
    let got = raw_samples(&prom.url, "{ruler=\"r1\"}", t0 + 15_000, "5m");
    assert_eq!(
        got,
        vec![
            (
                Labels::from_pairs(&[("__name__", "late:a"), ("ruler", "r1")]),
                vec![(t0, 1.0), (t0 + 15_000, 3.0)]
            ),
            (
                Labels::from_pairs(&[("__name__", "late:b"), ("ruler", "r1")]),
                vec![(t0, 2.0)]
            ),
        ]
    );
    assert_eq!(
        metric(&registry, "prometheus_remote_storage_samples_failed_total{"),
        0.0
    );
    assert_eq!(
        metric(
            &registry,
            "prometheus_remote_storage_samples_dropped_total{"
        ),
        0.0
    );
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .unwrap()
        .unwrap();
    drop(prom.guard);
}

/// One request as the stand-in saw it.
#[derive(Debug, Clone)]
struct Seen {
    head: String,
    body: Vec<u8>,
    /// What the stand-in answered.
    status: u16,
}

impl Seen {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// A stand-in receiver on 127.0.0.1: records every request and answers with the next status
/// of `script` (204 once the script is used up). Runs until the test's runtime ends.
async fn stand_in(script: Vec<u16>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let script = Arc::new(Mutex::new(VecDeque::from(script)));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let (seen, script) = (seen2.clone(), script.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        let mut chunk = [0u8; 4096];
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body = buf[head_end..head_end + len].to_vec();
                    buf.drain(..head_end + len);
                    // One critical section, so that the n-th request seen got the n-th status.
                    let status = {
                        let mut seen = seen.lock().unwrap();
                        let status = script.lock().unwrap().pop_front().unwrap_or(204);
                        seen.push(Seen { head, body, status });
                        status
                    };
                    let text = if status == 400 {
                        "out of bounds: sample too old\nsecond line"
                    } else {
                        ""
                    };
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{text}",
                        text.len()
                    );
                    if conn.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_carry_the_protocol_headers_and_credentials_and_statuses_are_honoured() {
    // Remote "retry" answers 503 then 429 (retried: retry_on_http_429) then 204; remote
    // "refuse" answers 400 (dropped after one request). A long batch deadline: only the
    // shutdown flush sends.
    let (retry_url, retry_seen) = stand_in(vec![503, 429]).await;
    let (refuse_url, refuse_seen) = stand_in(vec![400]).await;
    let pw = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(pw.path(), "s3cret\n").unwrap();
    let yaml = format!(
        r#"remote_write:
  - url: {retry_url}/receive
    name: retry
    headers:
      X-Scope-OrgID: team-a
    basic_auth:
      username: ruler
      password_file: {}
    queue_config:
      batch_send_deadline: 1h
      min_backoff: 10ms
      max_backoff: 50ms
      retry_on_http_429: true
  - url: {refuse_url}/receive
    name: refuse
    authorization:
      credentials: tok
    queue_config:
      batch_send_deadline: 1h
"#,
        pw.path().display()
    );
    let (writer, registry, stop, run) = start_writer(&yaml, &[("replica", "a")]);
    writer.append(vec![
        sample(&[("__name__", "m"), ("z", "1")], 1_000, 0.5),
        sample(&[("__name__", "m"), ("z", "1")], 2_000, stale()),
    ]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        retry_seen.lock().unwrap().is_empty(),
        "sent before the deadline"
    );
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .unwrap()
        .unwrap();

    let seen = retry_seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "503 and 429 retried, then sent");
    for req in &seen {
        assert!(
            req.head.starts_with("POST /receive HTTP/1.1\r\n"),
            "{}",
            req.head
        );
        assert_eq!(req.header("content-encoding").as_deref(), Some("snappy"));
        assert_eq!(
            req.header("content-type").as_deref(),
            Some("application/x-protobuf")
        );
        assert_eq!(
            req.header("x-prometheus-remote-write-version").as_deref(),
            Some("0.1.0")
        );
        assert!(req.header("user-agent").unwrap().starts_with("Strata/"));
        assert_eq!(req.header("x-scope-orgid").as_deref(), Some("team-a"));
        // base64("ruler:s3cret"): the password file's trailing newline is trimmed.
        assert_eq!(
            req.header("authorization").as_deref(),
            Some("Basic cnVsZXI6czNjcmV0")
        );
        let wr = strata_prompb::decode_write_request(&req.body, 1 << 20).unwrap();
        assert_eq!(wr.timeseries.len(), 1);
        let names: Vec<(&str, &str)> = wr.timeseries[0]
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(names, [("__name__", "m"), ("replica", "a"), ("z", "1")]);
        let s = &wr.timeseries[0].samples;
        assert_eq!((s[0].timestamp, s[0].value), (1_000, 0.5));
        assert_eq!(s[1].timestamp, 2_000);
        assert_eq!(s[1].value.to_bits(), STALE_NAN, "stale marker bit-exact");
    }
    let r = "{remote_name=\"retry\"";
    assert_eq!(
        metric(
            &registry,
            &format!("prometheus_remote_storage_samples_retried_total{r}")
        ),
        4.0
    );
    assert_eq!(
        metric(
            &registry,
            &format!("prometheus_remote_storage_samples_total{r}")
        ),
        6.0
    );
    assert_eq!(
        metric(
            &registry,
            &format!("prometheus_remote_storage_samples_failed_total{r}")
        ),
        0.0
    );

    let refused = refuse_seen.lock().unwrap().clone();
    assert_eq!(refused.len(), 1, "a 400 is not retried");
    assert_eq!(
        refused[0].header("authorization").as_deref(),
        Some("Bearer tok")
    );
    let f = "{remote_name=\"refuse\"";
    assert_eq!(
        metric(
            &registry,
            &format!("prometheus_remote_storage_samples_failed_total{f}")
        ),
        2.0
    );
    assert_eq!(
        metric(
            &registry,
            &format!("prometheus_remote_storage_samples_retried_total{f}")
        ),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_receiver_at_shutdown_costs_at_most_the_flush_deadline() {
    let port = free_port();
    let yaml = format!(
        "remote_write:\n  - url: http://127.0.0.1:{port}/w\n    name: dead\n    queue_config:\n      min_backoff: 10ms\n      max_backoff: 50ms\n"
    );
    let mut registry = Registry::default();
    let writer = RemoteWriter::new(
        RemoteWriteConfig::from_yaml(&yaml).unwrap(),
        Labels::empty(),
        &mut registry,
    )
    .unwrap();
    writer.set_flush_deadline(Duration::from_millis(500));
    writer.append(vec![sample(&[("__name__", "m")], 1, 1.0)]);
    let started = Instant::now();
    writer.clone().run(async {}).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        metric(
            &registry,
            "prometheus_remote_storage_samples_dropped_total{"
        ),
        1.0
    );
    assert_eq!(
        metric(&registry, "prometheus_remote_storage_samples_pending{"),
        0.0
    );
}

/// `(series name, timestamp)` of every request the stand-in answered with `status`, in
/// arrival order.
fn batches(seen: &Mutex<Vec<Seen>>, status: u16) -> Vec<Vec<(String, i64)>> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|req| req.status == status)
        .map(|req| {
            let wr = strata_prompb::decode_write_request(&req.body, 1 << 20).unwrap();
            wr.timeseries
                .iter()
                .flat_map(|ts| {
                    let name = ts
                        .labels
                        .iter()
                        .find(|l| l.name == "__name__")
                        .map(|l| l.value.clone())
                        .unwrap_or_default();
                    ts.samples.iter().map(move |s| (name.clone(), s.timestamp))
                })
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_cut_at_max_samples_per_send_and_sent_at_the_batch_deadline() {
    let (url, seen) = stand_in(Vec::new()).await;
    let yaml = format!(
        "remote_write:\n  - url: {url}/w\n    queue_config:\n      max_samples_per_send: 2\n      batch_send_deadline: 2s\n"
    );
    let (writer, _registry, stop, run) = start_writer(&yaml, &[]);
    let appended = Instant::now();
    writer.append(
        (1..=5)
            .map(|t| sample(&[("__name__", "m")], t, t as f64))
            .collect(),
    );
    // Full batches go at once; the remainder waits for the deadline.
    wait_until("two full batches", Duration::from_secs(5), || {
        seen.lock().unwrap().len() >= 2
    })
    .await;
    assert!(appended.elapsed() < Duration::from_millis(1500));
    assert_eq!(seen.lock().unwrap().len(), 2);
    wait_until("the deadline batch", Duration::from_secs(5), || {
        seen.lock().unwrap().len() >= 3
    })
    .await;
    assert!(appended.elapsed() >= Duration::from_secs(2));
    let m = |t| ("m".to_string(), t);
    assert_eq!(
        batches(&seen, 204),
        vec![vec![m(1), m(2)], vec![m(3), m(4)], vec![m(5)]]
    );
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_several_shards_each_series_keeps_its_order() {
    // Every fifth request fails with 503 and is retried: retries must not reorder either.
    let (url, seen) = stand_in([204, 204, 204, 204, 503].repeat(10)).await;
    let yaml = format!(
        "remote_write:\n  - url: {url}/w\n    queue_config:\n      min_shards: 4\n      max_shards: 4\n      max_samples_per_send: 3\n      batch_send_deadline: 20ms\n      min_backoff: 5ms\n      max_backoff: 20ms\n"
    );
    let (writer, registry, stop, run) = start_writer(&yaml, &[]);
    for t in 0..6 {
        writer.append(
            (0..20)
                .map(|s| sample(&[("__name__", &format!("s{s}"))], t, 1.0))
                .collect(),
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(metric(&registry, "prometheus_remote_storage_shards{"), 4.0);
    let mut per_series: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for batch in batches(&seen, 204) {
        for (name, t) in batch {
            per_series.entry(name).or_default().push(t);
        }
    }
    assert!(
        seen.lock().unwrap().iter().any(|r| r.status == 503),
        "some attempts were retried"
    );
    assert_eq!(per_series.len(), 20);
    for (name, ts) in per_series {
        assert_eq!(ts, (0..6).collect::<Vec<_>>(), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_a_ca_bundle_and_a_client_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = strata_testutil::tls::ca_signed_certificates(tmp.path());
    let web = tmp.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n",
            certs.server_cert.display(),
            certs.server_key.display(),
            certs.ca.display()
        ),
    )
    .unwrap();
    let port = free_port();
    let prom = spawn_prometheus(
        tmp.path(),
        port,
        &[format!("--web.config.file={}", web.display())],
    );
    let yaml = format!(
        r#"remote_write:
  - url: https://localhost:{port}/api/v1/write
    name: mtls
    tls_config:
      ca_file: {ca}
      cert_file: {cert}
      key_file: {key}
      min_version: TLS12
    queue_config:
      batch_send_deadline: 50ms
      min_backoff: 50ms
      max_backoff: 200ms
  - url: https://localhost:{port}/api/v1/write
    name: no-client-cert
    tls_config:
      ca_file: {ca}
    queue_config:
      batch_send_deadline: 50ms
      min_backoff: 50ms
      max_backoff: 200ms
"#,
        ca = certs.ca.display(),
        cert = certs.client_cert.display(),
        key = certs.client_key.display(),
    );
    let (writer, registry, stop, run) = start_writer(&yaml, &[]);
    let t0 = now_ms() / 1000 * 1000 - 10_000;
    writer.append(vec![sample(&[("__name__", "tls:m")], t0, 7.0)]);
    // Prometheus answers 2xx only once the sample is in its TSDB (503 while starting, which
    // is retried).
    wait_until("delivery over mutual TLS", Duration::from_secs(60), || {
        metric(
            &registry,
            "prometheus_remote_storage_queue_highest_sent_timestamp_seconds{remote_name=\"mtls\"",
        ) == t0 as f64 / 1000.0
    })
    .await;
    let m = |name: &str, remote: &str| {
        metric(
            &registry,
            &format!("prometheus_remote_storage_{name}{{remote_name=\"{remote}\""),
        )
    };
    assert_eq!(m("samples_failed_total", "mtls"), 0.0);
    // Without a client certificate the handshake fails: a network error, retried, never sent.
    wait_until(
        "retries without a client certificate",
        Duration::from_secs(30),
        || m("samples_retried_total", "no-client-cert") >= 2.0,
    )
    .await;
    assert_eq!(
        m("samples_pending", "no-client-cert"),
        0.0,
        "taken into a batch"
    );
    assert_eq!(
        m("queue_highest_sent_timestamp_seconds", "no-client-cert"),
        0.0
    );
    writer.set_flush_deadline(Duration::from_millis(300));
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m("samples_dropped_total", "no-client-cert"), 1.0);
    drop(prom.guard);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_still_hanging_at_the_flush_deadline_is_abandoned_and_counted() {
    // A receiver that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = listener.accept().await {
            conns.push(c);
        }
    });
    let yaml =
        format!("remote_write:\n  - url: {url}/w\n    name: silent\n    remote_timeout: 5m\n");
    let mut registry = Registry::default();
    let writer = RemoteWriter::new(
        RemoteWriteConfig::from_yaml(&yaml).unwrap(),
        Labels::empty(),
        &mut registry,
    )
    .unwrap();
    writer.set_flush_deadline(Duration::from_millis(300));
    writer.append(vec![
        sample(&[("__name__", "m")], 1, 1.0),
        sample(&[("__name__", "m")], 2, 2.0),
    ]);
    let started = Instant::now();
    writer.clone().run(async {}).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        metric(
            &registry,
            "prometheus_remote_storage_samples_dropped_total{"
        ),
        2.0
    );
    held.abort();
}
