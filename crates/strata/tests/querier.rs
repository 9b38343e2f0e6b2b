//! `strata query` end to end over real processes: two Prometheus 2.42 servers as HA replicas
//! behind `strata sidecar`s (one stopped for a while), per-request deduplication options,
//! `/api/v1/stores`, a store that hangs (partial response and its absence), the querier's
//! own Store API stacked under a second querier, and downsampled blocks in a `strata store`
//! read through `max_source_resolution` and `--query.auto-downsampling`; `storeMatch[]` over
//! two `strata store`s serving TLS with a self-signed certificate that only
//! `--grpc-client-tls-skip-verify` accepts; `--grpc-compression=snappy` from a querier to a
//! `strata store` and to another querier; `--endpoint.sd-config-file` re-read while running
//! and `--endpoint-group` listed as one store; `--endpoint.sd-config` giving one store mutual
//! TLS (a test CA's certificates) and another snappy in clear text; two HA replicas' uploaded
//! blocks behind one `strata store`, deduplicated as the penalty algorithm does by replica;
//! `/api/v1/metadata`, `/api/v1/rules`, `/api/v1/alerts`, `/api/v1/query_exemplars` and
//! `/api/v1/targets` from the replicas' sidecars, through a querier and a querier above it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use strata_testutil::process::{free_port, http_request, url_encode as enc, wait_until};
use strata_testutil::prometheus::prometheus;

/// GET: status and body, or status 0 when the server cannot be reached.
fn get(port: u16, path: &str) -> (u16, String) {
    match http_request("GET", &format!("http://127.0.0.1:{port}{path}"), b"") {
        Ok(r) => (r.status, String::from_utf8_lossy(&r.body).into_owned()),
        Err(_) => (0, String::new()),
    }
}

fn json(port: u16, path: &str) -> (u16, Value) {
    let (s, b) = get(port, path);
    (
        s,
        serde_json::from_str(&b).unwrap_or_else(|e| panic!("{e}: {b}")),
    )
}

use strata_testutil::process::LoggedProcess as Proc;

/// Whether the answer to `path` says `Cache-Control: no-store` (Thanos' querier marks errors
/// and partial answers so, and query frontends then do not cache them).
fn no_store(port: u16, path: &str) -> bool {
    let r = strata_testutil::process::http_request(
        "GET",
        &format!("http://127.0.0.1:{port}{path}"),
        b"",
    )
    .unwrap();
    r.headers
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "cache-control:no-store")
}

/// A scrape target: `demo_events_total`, growing by 1 per second (to the millisecond) since
/// the test started, so that any correct rate over it is 1/s.
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
                "# HELP demo_events_total Events seen by the demo target.\n\
                 # TYPE demo_events_total counter\ndemo_events_total {}\n",
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

/// A scrape target in OpenMetrics: `demo_requests_total`, one more per scrape, each scrape
/// with an exemplar (`trace_id="trace-<count>"`, value 1).
fn start_exemplar_target() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(mut c) = conn else { continue };
            let mut buf = [0u8; 2048];
            let _ = c.read(&mut buf);
            let body = format!(
                "# TYPE demo_requests counter\n\
                 demo_requests_total {n} # {{trace_id=\"trace-{n}\"}} 1\n# EOF\n"
            );
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// One HA replica: Prometheus (external labels `cluster`, `replica`) and its sidecar.
struct Replica {
    dir: PathBuf,
    prom_port: u16,
    prom: Option<Proc>,
    sidecar: Proc,
    grpc_port: u16,
}

fn start_prometheus(dir: &Path, port: u16) -> Proc {
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
    .args([
        "--storage.tsdb.min-block-duration=2h",
        "--storage.tsdb.max-block-duration=2h",
        "--enable-feature=exemplar-storage",
    ]);
    let p = Proc::start(dir, &format!("prometheus-{port}"), &mut cmd);
    wait_until("Prometheus ready", Duration::from_secs(60), || {
        get(port, "/-/ready").0 == 200
    });
    p
}

impl Replica {
    fn start(root: &Path, name: &str, target: u16) -> Replica {
        Replica::start_with_rules(root, name, target, None)
    }

    /// [`Replica::start`], with `rules` (a rule file's YAML) loaded and evaluated every second,
    /// from one path for every replica under `root` (HA replicas share their rule files).
    fn start_with_rules(root: &Path, name: &str, target: u16, rules: Option<&str>) -> Replica {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  external_labels:\n    cluster: eu1\n    replica: {name}\n\
             scrape_configs:\n  - job_name: demo\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
        );
        if let Some(rules) = rules {
            let file = root.join("rules.yml");
            std::fs::write(&file, rules).unwrap();
            config.push_str(&format!("rule_files:\n  - {}\n", file.display()));
        }
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let prom_port = free_port();
        let prom = start_prometheus(&dir, prom_port);
        let (http, grpc_port) = (free_port(), free_port());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
        cmd.arg("sidecar")
            .arg(format!("--http-address=127.0.0.1:{http}"))
            .arg(format!("--grpc-address=127.0.0.1:{grpc_port}"))
            .arg(format!("--prometheus.url=http://127.0.0.1:{prom_port}"))
            .arg(format!("--tsdb.path={}", dir.join("tsdb").display()));
        let sidecar = Proc::start(&dir, "sidecar", &mut cmd);
        wait_until("sidecar ready", Duration::from_secs(60), || {
            get(http, "/-/ready").0 == 200
        });
        Replica {
            dir,
            prom_port,
            prom: Some(prom),
            sidecar,
            grpc_port,
        }
    }
}

struct Querier {
    _proc: Proc,
    http: u16,
    grpc: u16,
}

fn start_querier(dir: &Path, name: &str, args: &[String]) -> Querier {
    start_querier_env(dir, name, args, &[])
}

/// [`start_querier`] with environment variables set.
fn start_querier_env(dir: &Path, name: &str, args: &[String], env: &[(&str, &Path)]) -> Querier {
    let (http, grpc) = (free_port(), free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.envs(env.iter().copied())
        .arg("query")
        .arg(format!("--http-address=127.0.0.1:{http}"))
        .arg(format!("--grpc-address=127.0.0.1:{grpc}"))
        .arg("--store.sd-dns-interval=1s")
        .args(args);
    let mut proc = Proc::start(dir, name, &mut cmd);
    let start = Instant::now();
    while get(http, "/-/ready").0 != 200 {
        proc.guard
            .ensure_running()
            .unwrap_or_else(|e| panic!("{e:#}\n{}", proc.log()));
        assert!(start.elapsed() < Duration::from_secs(30), "{}", proc.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    Querier {
        _proc: proc,
        http,
        grpc,
    }
}

fn now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// `(labels, [(t, v)])` of a matrix result.
fn matrix(v: &Value) -> Vec<(Value, Vec<(f64, String)>)> {
    v["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|s| {
            let pts = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_f64().unwrap(), p[1].as_str().unwrap().to_string()))
                .collect();
            (s["metric"].clone(), pts)
        })
        .collect()
}

#[test]
fn ha_replicas_deduplicate_without_gaps() {
    let tmp = tempfile::tempdir().unwrap();
    let target = start_target();
    let mut a = Replica::start(tmp.path(), "a", target);
    let b = Replica::start(tmp.path(), "b", target);
    let q = start_querier(
        tmp.path(),
        "query",
        &[
            format!("--endpoint=127.0.0.1:{}", a.grpc_port),
            format!("--endpoint=127.0.0.1:{}", b.grpc_port),
            "--query.replica-label=replica".into(),
        ],
    );
    // Both replicas have scraped before the range starts.
    wait_until("both replicas have data", Duration::from_secs(30), || {
        let (_, v) = json(
            q.http,
            &format!(
                "/api/v1/query?query={}&dedup=false",
                enc("demo_events_total")
            ),
        );
        v["data"]["result"].as_array().is_some_and(|r| r.len() == 2)
    });
    let start = now_s().ceil() + 1.0;

    // /api/v1/stores: both sidecars, with their label sets.
    wait_until("both sidecars listed", Duration::from_secs(30), || {
        let (_, v) = json(q.http, "/api/v1/stores");
        v["data"]["sidecar"]
            .as_array()
            .is_some_and(|l| l.len() == 2)
    });
    let (_, stores) = json(q.http, "/api/v1/stores");
    let first = &stores["data"]["sidecar"][0];
    assert!(first["labelSets"][0]["replica"].is_string(), "{stores}");
    assert!(first["lastError"].is_null(), "{stores}");
    assert!(first["lastCheck"].as_str().unwrap().ends_with('Z'));

    // Replica a, the one deduplication follows while both are up (it sorts first), is down
    // for 12 s in the middle.
    std::thread::sleep(Duration::from_secs(8));
    a.prom.take();
    std::thread::sleep(Duration::from_secs(12));
    a.prom = Some(start_prometheus(&a.dir, a.prom_port));
    std::thread::sleep(Duration::from_secs(8));
    let end = now_s().floor() - 1.0;

    let range = |query: &str, extra: &str| {
        let (status, v) = json(
            q.http,
            &format!(
                "/api/v1/query_range?query={}&start={start}&end={end}&step=1{extra}",
                enc(query)
            ),
        );
        assert_eq!(status, 200, "{v}");
        v
    };
    let steps = (end - start) as usize + 1;

    // Deduplicated: one series, no replica label, a value at every step.
    let dedup = matrix(&range("demo_events_total", ""));
    assert_eq!(dedup.len(), 1, "{dedup:?}");
    assert!(dedup[0].0.get("replica").is_none());
    assert_eq!(dedup[0].0["cluster"], "eu1");
    assert_eq!(dedup[0].1.len(), steps, "gap in {:?}", dedup[0].1);
    // Equal to the replica that never stopped: exactly for `up`; for the counter (which grows
    // 1/s), up to what the penalty algorithm allows. When `a` stops, `b` is sought to 2 scrape
    // intervals past `a`'s last sample (Thanos' penalty: twice the last gap), so the
    // deduplicated series holds `a`'s last value for 2 to 3 s while `b` has moved on: at most
    // about 3 of growth apart. A gap left unfilled during the 12 s outage would be far more.
    let up = matrix(&range("up", ""));
    let up_b = matrix(&range("up{replica=\"b\"}", "&dedup=false"));
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].1, up_b[0].1);
    let only_b = matrix(&range("demo_events_total{replica=\"b\"}", "&dedup=false"));
    assert_eq!(only_b[0].1.len(), steps);
    for ((t, d), (_, w)) in dedup[0].1.iter().zip(&only_b[0].1) {
        let (d, w): (f64, f64) = (d.parse().unwrap(), w.parse().unwrap());
        assert!((d - w).abs() <= 3.5, "at {t}: {d} vs replica b {w}");
    }

    // No doubled counts: one series counted at every step, and the rate stays about 1/s
    // (doubled would be 2; the outage unfilled, no value or far less). A 10 s window that
    // starts inside the 2-3 s switch-over gap (see above) sees only 7-8 s of growth and
    // extrapolates half an interval at its start: down to about 0.75 (CI once saw 0.763).
    for (query, lo, hi) in [
        ("count(demo_events_total)", 1.0, 1.0),
        ("sum(rate(demo_events_total[10s]))", 0.7, 1.2),
    ] {
        let m = matrix(&range(query, ""));
        eprintln!("DEDUP {query}: {:?}", m);
        eprintln!(
            "A {query}: {:?}",
            matrix(&range(
                &query.replace("total", "total{replica=\"a\"}"),
                "&dedup=false"
            ))
        );
        eprintln!(
            "B {query}: {:?}",
            matrix(&range(
                &query.replace("total", "total{replica=\"b\"}"),
                "&dedup=false"
            ))
        );
        assert_eq!(m.len(), 1, "{query}");
        assert_eq!(m[0].1.len(), steps, "{query}: gap");
        // (The rate's window must first fill with samples.)
        for (t, v) in m[0].1.iter().filter(|(t, _)| *t >= start + 10.0) {
            let v: f64 = v.parse().unwrap();
            assert!(v >= lo && v <= hi, "{query} at {t}: {v}");
        }
    }

    // dedup=false: both replicas, with their replica label; replicaLabels[] overrides.
    let both = matrix(&range("demo_events_total", "&dedup=false"));
    assert_eq!(both.len(), 2);
    let other = matrix(&range("demo_events_total", "&replicaLabels[]=cluster"));
    assert_eq!(other.len(), 2);
    assert!(
        other
            .iter()
            .all(|(l, _)| l.get("cluster").is_none() && l.get("replica").is_some())
    );

    // Metadata endpoints go across stores and drop the replica label when deduplicating.
    let (_, labels) = json(q.http, "/api/v1/labels");
    let names: Vec<&str> = labels["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        names.contains(&"cluster") && !names.contains(&"replica"),
        "{labels}"
    );
    let (_, labels) = json(q.http, "/api/v1/labels?dedup=false");
    assert!(
        labels["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "replica")
    );
    let (_, vals) = json(q.http, "/api/v1/label/replica/values?dedup=false");
    assert_eq!(vals["data"], serde_json::json!(["a", "b"]));
    let (_, series) = json(
        q.http,
        &format!("/api/v1/series?match[]={}", enc("demo_events_total")),
    );
    assert_eq!(series["data"].as_array().unwrap().len(), 1, "{series}");

    // A global querier over this querier's Store API answers the same.
    let top = start_querier(
        tmp.path(),
        "query-top",
        &[
            format!("--endpoint=127.0.0.1:{}", q.grpc),
            "--query.replica-label=replica".into(),
        ],
    );
    let (status, v) = json(
        top.http,
        &format!(
            "/api/v1/query_range?query={}&start={start}&end={end}&step=1",
            enc("demo_events_total")
        ),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(matrix(&v)[0].1, dedup[0].1);
    let (_, stores) = json(top.http, "/api/v1/stores");
    assert!(
        stores["data"]["query"]
            .as_array()
            .is_some_and(|l| l.len() == 1),
        "{stores}"
    );
    drop(top);
    drop(q);
    let _ = (a.sidecar.log(), b.sidecar.log());
}

/// A Store API server that never answers a Series call, on `rt`.
fn hanging_store(
    rt: &tokio::runtime::Runtime,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    rt.block_on(
        strata_store::testing::HangingStore {
            label_sets: Vec::new(),
        }
        .start(),
    )
}

#[test]
fn hanging_store_times_out_with_a_warning_or_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (hang, _stop) = hanging_store(&rt);
    let target = start_target();
    let a = Replica::start(tmp.path(), "a", target);
    let q = start_querier(
        tmp.path(),
        "query",
        &[
            format!("--endpoint=127.0.0.1:{}", a.grpc_port),
            format!("--endpoint={hang}"),
            "--store.response-timeout=1s".into(),
        ],
    );
    let path = format!("/api/v1/query?query={}", enc("demo_events_total"));
    wait_until("data through the sidecar", Duration::from_secs(30), || {
        let (_, v) = json(q.http, &path);
        v["data"]["result"].as_array().is_some_and(|r| r.len() == 1)
    });

    let started = Instant::now();
    let (status, v) = json(q.http, &path);
    let took = started.elapsed();
    assert_eq!(status, 200, "{v}");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert_eq!(v["data"]["result"].as_array().unwrap().len(), 1, "{v}");
    let warnings = v["warnings"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains(&hang.to_string())),
        "{v}"
    );
    assert!(
        no_store(q.http, &path),
        "a partial answer is marked no-store"
    );

    let started = Instant::now();
    let (status, v) = json(q.http, &format!("{path}&partial_response=false"));
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(status >= 400, "{status} {v}");
    assert_eq!(v["status"], "error");
    let err = v["error"].as_str().unwrap();
    assert!(
        err.contains(&hang.to_string()) && err.contains("response-timeout"),
        "{err}"
    );

    // Metadata endpoints report the hanging store the same way.
    let started = Instant::now();
    let (status, v) = json(q.http, "/api/v1/labels");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(status, 200, "{v}");
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "__name__"),
        "{v}"
    );
    assert!(
        v["warnings"].as_array().is_some_and(|w| w
            .iter()
            .any(|w| w.as_str().unwrap().contains(&hang.to_string()))),
        "{v}"
    );
    let (status, v) = json(q.http, "/api/v1/labels?partial_response=false");
    assert!(status >= 400, "{v}");
    assert!(
        no_store(q.http, "/api/v1/labels"),
        "partial metadata: no-store"
    );
    assert!(
        no_store(q.http, "/api/v1/labels?partial_response=false"),
        "errors: no-store"
    );
    assert!(
        !no_store(q.http, &format!("/api/v1/query?query={}", enc("vector(1)"))),
        "a whole answer may be cached"
    );

    // The flag default applies when the parameter is absent.
    drop(q);
    let q = start_querier(
        tmp.path(),
        "query-abort",
        &[
            format!("--endpoint=127.0.0.1:{}", a.grpc_port),
            format!("--endpoint={hang}"),
            "--store.response-timeout=1s".into(),
            "--no-query.partial-response".into(),
        ],
    );
    let (status, _) = json(q.http, &path);
    assert!(status >= 400);
    let (status, v) = json(q.http, &format!("{path}&partial_response=true"));
    assert_eq!(status, 200, "{v}");
    drop(rt);
}

#[test]
fn bad_client_flags_fail_clearly() {
    let cases: &[(&[&str], &str)] = &[
        (&["--endpoint=dns+nohost"], "dns+nohost"),
        // Both are supported now: a bad value of either still fails, naming the flag.
        // (The log line is logfmt: the value's quotes come escaped.)
        (
            &["--endpoint-group=foo+g:1"],
            "--endpoint-group \\\"foo+g:1",
        ),
        (
            &["--endpoint.sd-config=endpoints: ["],
            "--endpoint.sd-config:",
        ),
        (
            &["--endpoint.sd-config=endpoints: [{address: 'a:1', stict: true}]"],
            "unknown field `stict`",
        ),
        (
            &["--endpoint.sd-config-file=/nonexistent/endpoints.yml"],
            "--endpoint.sd-config-file /nonexistent/endpoints.yml",
        ),
        (
            &[
                "--endpoint.sd-config=endpoints: [{address: 'a:1', grpc_client_config: \
               {tls_config: {enabled: true, ca_file: /nonexistent/ca.pem}}}]",
            ],
            "tls_config.ca_file (or --grpc-client-tls-ca) /nonexistent/ca.pem",
        ),
        (
            &[
                "--endpoint.sd-config=endpoints: [{address: 'a:1', grpc_client_config: \
               {compression_type: gzip}}]",
            ],
            "must be 'none' or 'snappy'",
        ),
        (
            &["--endpoint.sd-config=default_client_config: \
               {tls_config: {ca_file: /nonexistent/ca.pem}}"],
            "default_client_config: reading tls_config.ca_file (or --grpc-client-tls-ca) \
             /nonexistent/ca.pem",
        ),
        (
            &["--grpc-client-tls-min-version=1.4"],
            "--grpc-client-tls-min-version",
        ),
        (
            &[
                "--query.telemetry.request-samples-quantiles=1000",
                "--query.telemetry.request-samples-quantiles=100",
            ],
            "--query.telemetry.request-samples-quantiles: values must be given in increasing order",
        ),
        (
            &["--http.config=/etc/thanos/web.yml"],
            "--http.config: reading /etc/thanos/web.yml: No such file",
        ),
        (
            &["--query.max-concurrent-select=0"],
            "--query.max-concurrent-select",
        ),
        (
            &[
                "--query.enforce-tenancy",
                "--query.tenant-certificate-field=commonName",
            ],
            "--query.tenant-certificate-field is not supported",
        ),
        (
            &[
                "--query.enforce-tenancy",
                "--query.tenant-label-name=tenant-id",
            ],
            "--query.tenant-label-name=\\\"tenant-id\\\" is not a valid label name",
        ),
        (
            &["--query.tenant-header=bad header"],
            "--query.tenant-header=\\\"bad header\\\" is not a valid HTTP header name",
        ),
    ];
    for (flags, want) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args([
                "query",
                "--http-address=127.0.0.1:0",
                "--grpc-address=127.0.0.1:0",
            ])
            .args(*flags)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flags:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{flags:?}: {err}");
    }
}

#[test]
fn downsampled_blocks_through_max_source_resolution() {
    use std::fmt::Write as _;
    // 4 h of a gauge every 15 s from a 5-minute boundary, raw and downsampled to 5m, in one
    // bucket served by a `strata store` process.
    const T0: i64 = 1_700_000_100_000;
    let tmp = tempfile::tempdir().unwrap();
    let mut om = String::from("# TYPE temperature gauge\n");
    for k in 0..(4 * 240) {
        let t = T0 + k * 15_000;
        writeln!(om, "temperature {} {}.{:03}", k % 20, t / 1000, t % 1000).unwrap();
    }
    om.push_str("# EOF\n");
    let raw =
        strata_testutil::prometheus::create_blocks_from_openmetrics(&om, &tmp.path().join("raw"))
            .unwrap();
    let down_dir = tmp.path().join("5m");
    std::fs::create_dir_all(&down_dir).unwrap();
    let mut blocks = raw.clone();
    for b in &raw {
        let block = strata_tsdb::Block::open(b).unwrap();
        let (meta, _) =
            strata_compact::downsample::downsample_block(&block, 300_000, &down_dir, None)
                .unwrap()
                .unwrap();
        blocks.push(down_dir.join(meta.ulid.to_string()));
    }
    let objstore = fs_bucket_with(&tmp.path().join("bucket"), &blocks, "eu1");
    let (_store, store_grpc) = start_store(tmp.path(), "store", &objstore, &[]);
    let q = start_querier(
        tmp.path(),
        "query",
        &[
            format!("--endpoint=127.0.0.1:{store_grpc}"),
            "--query.auto-downsampling".into(),
        ],
    );
    wait_until("the store listed", Duration::from_secs(30), || {
        json(q.http, "/api/v1/stores").1["data"]["store"].is_array()
    });
    let t = (T0 + 3 * 3_600_000) / 1000;
    let count = enc("count_over_time(temperature[1h])");
    let value = |v: &Value| -> f64 {
        v["data"]["result"][0]["value"][1]
            .as_str()
            .unwrap_or_else(|| panic!("{v}"))
            .parse()
            .unwrap()
    };
    for (param, want) in [
        ("&max_source_resolution=0s", 240.0),
        ("&max_source_resolution=raw", 240.0),
        ("&max_source_resolution=5m", 12.0),
        ("&max_source_resolution=1h", 12.0),
        // auto (the flag's default here) on an instant query: a fifth of no step is raw.
        ("", 240.0),
    ] {
        let (status, v) = json(
            q.http,
            &format!("/api/v1/query?query={count}&time={t}{param}"),
        );
        assert_eq!(status, 200, "{v}");
        assert_eq!(value(&v), want, "{param}: {v}");
    }
    // A range query with a 30m step under auto-downsampling reads the 5m data.
    let (status, v) = json(
        q.http,
        &format!(
            "/api/v1/query_range?query={count}&start={}&end={t}&step=1800",
            t - 3600
        ),
    );
    assert_eq!(status, 200, "{v}");
    for p in v["data"]["result"][0]["values"].as_array().unwrap() {
        assert_eq!(p[1], "12", "{v}");
    }
    // max_over_time reads the MAX aggregate: the raw maximum (19) survives downsampling.
    let (_, v) = json(
        q.http,
        &format!(
            "/api/v1/query?query={}&time={t}&max_source_resolution=5m",
            enc("max_over_time(temperature[1h])")
        ),
    );
    assert_eq!(value(&v), 19.0, "{v}");
    let (status, v) = json(
        q.http,
        &format!("/api/v1/query?query={count}&max_source_resolution=x"),
    );
    assert_eq!(status, 400, "{v}");
}

/// A `strata store` process over a FILESYSTEM bucket holding promtool blocks of a
/// `temperature` gauge (two rooms, 2 h) with the external label `cluster`, serving gRPC with
/// `grpc_args` (TLS flags). Returns the process and its gRPC port.
fn start_store_with_blocks(
    dir: &Path,
    cluster: &str,
    t0: i64,
    grpc_args: &[String],
) -> (Proc, u16) {
    use std::fmt::Write as _;
    let mut om = String::from("# TYPE temperature gauge\n");
    for room in ["kitchen", "hall"] {
        for k in 0..(2 * 240) {
            let t = t0 + k * 15_000;
            writeln!(
                om,
                "temperature{{room=\"{room}\"}} {k} {}.{:03}",
                t / 1000,
                t % 1000
            )
            .unwrap();
        }
    }
    om.push_str("# EOF\n");
    let blocks = strata_testutil::prometheus::create_blocks_from_openmetrics(
        &om,
        &dir.join(format!("blocks-{cluster}")),
    )
    .unwrap();
    let objstore = fs_bucket_with(&dir.join(format!("bucket-{cluster}")), &blocks, cluster);
    start_store(dir, &format!("store-{cluster}"), &objstore, grpc_args)
}

/// A `strata store` process named `name` (its data directory and log under `dir`) over the
/// bucket `objstore`, with `grpc_args`, once ready. Returns the process and its gRPC port.
fn start_store(dir: &Path, name: &str, objstore: &str, grpc_args: &[String]) -> (Proc, u16) {
    let (http, grpc) = (free_port(), free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg("store")
        .arg(format!("--objstore.config={objstore}"))
        .arg(format!(
            "--data-dir={}",
            dir.join(format!("data-{name}")).display()
        ))
        .arg(format!("--http-address=127.0.0.1:{http}"))
        .arg(format!("--grpc-address=127.0.0.1:{grpc}"))
        .args(grpc_args);
    let proc = Proc::start(dir, name, &mut cmd);
    wait_until("store ready", Duration::from_secs(60), || {
        get(http, "/-/ready").0 == 200
    });
    (proc, grpc)
}

/// The `cluster` labels of a query's series, in order, repeats removed.
fn clusters(v: &Value) -> Vec<String> {
    let mut c: Vec<String> = v["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|s| s["metric"]["cluster"].as_str().unwrap().to_string())
        .collect();
    c.dedup();
    c
}

/// A form POST: status and JSON body.
fn post_form(port: u16, path: &str, form: &str) -> (u16, Value) {
    let r = strata_testutil::process::http_request_with_headers(
        "POST",
        &format!("http://127.0.0.1:{port}{path}"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    )
    .unwrap();
    let body = String::from_utf8_lossy(&r.body).into_owned();
    (
        r.status,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}")),
    )
}

/// A test CA's certificates, a store of cluster `eu1` serving mutual TLS with them, and a
/// clear-text store of cluster `us1`, both with `start_store_with_blocks`' data from `t0`.
fn mtls_and_plain_stores(
    dir: &Path,
    t0: i64,
) -> (strata_testutil::tls::CaSigned, (Proc, u16), (Proc, u16)) {
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let c = strata_testutil::tls::ca_signed_certificates(&certs);
    let mtls = [
        format!("--grpc-server-tls-cert={}", c.server_cert.display()),
        format!("--grpc-server-tls-key={}", c.server_key.display()),
        format!("--grpc-server-tls-client-ca={}", c.ca.display()),
    ];
    let eu = start_store_with_blocks(dir, "eu1", t0, &mtls);
    let us = start_store_with_blocks(dir, "us1", t0, &[]);
    (c, eu, us)
}

/// Each endpoint's own client settings from `--endpoint.sd-config` (Thanos'
/// `grpc_client_config`): one store serves mutual TLS with a certificate from a test CA,
/// the other clear text and takes snappy; the querier's own flags set neither. Both answer.
/// Without its client certificate the TLS store refuses the querier, and the other still
/// answers.
#[test]
fn sd_config_gives_each_endpoint_its_own_tls() {
    const T0: i64 = 1_700_000_100_000;
    let tmp = tempfile::tempdir().unwrap();
    let (c, (_eu, eu), (_us, us)) = mtls_and_plain_stores(tmp.path(), T0);
    let sd_config = |client_cert: bool| {
        let identity = if client_cert {
            format!(
                ", cert_file: '{}', key_file: '{}'",
                c.client_cert.display(),
                c.client_key.display()
            )
        } else {
            String::new()
        };
        format!(
            "--endpoint.sd-config=endpoints:\n\
             - address: 127.0.0.1:{eu}\n  \
               grpc_client_config:\n    \
                 tls_config: {{enabled: true, ca_file: '{}'{identity}}}\n    \
                 server_name: localhost\n\
             - address: 127.0.0.1:{us}\n  \
               grpc_client_config: {{compression_type: snappy}}\n",
            c.ca.display()
        )
    };
    let t = (T0 + 3_600_000) / 1000;
    let query = format!("/api/v1/query?query=temperature&time={t}");

    let q = start_querier(tmp.path(), "query-sd-tls", &[sd_config(true)]);
    let (status, v) = json(q.http, &query);
    assert_eq!(status, 200, "{v}");
    assert_eq!(clusters(&v), ["eu1", "us1"], "{v}");
    assert!(v.get("warnings").is_none(), "{v}");
    drop(q);

    // Verified against the CA but without a client certificate: the TLS store refuses.
    let q = start_querier(tmp.path(), "query-sd-no-cert", &[sd_config(false)]);
    let (_, v) = json(q.http, "/api/v1/stores");
    let errors: Vec<(String, String)> = v["data"]
        .as_object()
        .unwrap_or_else(|| panic!("{v}"))
        .values()
        .flat_map(|l| l.as_array().unwrap())
        .map(|s| {
            (
                s["name"].as_str().unwrap_or("").to_string(),
                s["lastError"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(errors.len(), 2, "{v}");
    for (name, err) in &errors {
        assert_eq!(name.ends_with(&format!(":{eu}")), !err.is_empty(), "{v}");
    }
    let (status, v) = json(q.http, &query);
    assert_eq!(status, 200, "{v}");
    assert_eq!(clusters(&v), ["us1"], "{v}");
}

/// The newer form of the endpoint SD config's client settings (Thanos'
/// `default_client_config` and `client_config`, thanos-io/thanos#8594), and TLS verified
/// against the system's roots. `default_client_config` gives every endpoint, the one from
/// `--endpoint` included, a client certificate and a server name; naming the certificate
/// turns TLS on; there is no CA file, so the server's certificate is verified against the
/// system's roots, which `SSL_CERT_FILE` points at the test CA. The clear-text store's own
/// `client_config` switches TLS off again and takes snappy. With `SSL_CERT_FILE` naming
/// another CA, the TLS store's certificate is refused and the other store still answers.
#[test]
fn default_client_config_and_system_roots_reach_a_tls_store() {
    const T0: i64 = 1_700_000_100_000;
    let tmp = tempfile::tempdir().unwrap();
    let (c, (_eu, eu), (_us, us)) = mtls_and_plain_stores(tmp.path(), T0);
    let other = tmp.path().join("other-ca");
    std::fs::create_dir_all(&other).unwrap();
    let other_ca = strata_testutil::tls::ca_signed_certificates(&other).ca;
    let args = [
        format!("--endpoint=127.0.0.1:{eu}"),
        format!(
            "--endpoint.sd-config=default_client_config:\n  \
               tls_config: {{cert_file: '{}', key_file: '{}'}}\n  \
               server_name: localhost\n\
             endpoints:\n\
             - address: 127.0.0.1:{us}\n  \
               client_config: {{tls_config: {{enabled: false}}, compression: snappy}}\n",
            c.client_cert.display(),
            c.client_key.display()
        ),
    ];
    let t = (T0 + 3_600_000) / 1000;
    let query = format!("/api/v1/query?query=temperature&time={t}");

    let q = start_querier_env(
        tmp.path(),
        "query-default-client",
        &args,
        &[("SSL_CERT_FILE", &c.ca)],
    );
    let (status, v) = json(q.http, &query);
    assert_eq!(status, 200, "{v}");
    assert_eq!(clusters(&v), ["eu1", "us1"], "{v}");
    assert!(v.get("warnings").is_none(), "{v}");
    drop(q);

    let q = start_querier_env(
        tmp.path(),
        "query-other-roots",
        &args,
        &[("SSL_CERT_FILE", &other_ca)],
    );
    let (status, v) = json(q.http, &query);
    assert_eq!(status, 200, "{v}");
    assert_eq!(clusters(&v), ["us1"], "{v}");
    let (_, v) = json(q.http, "/api/v1/stores");
    let text = v.to_string();
    assert!(text.contains(&format!("127.0.0.1:{eu}")), "{v}");
    assert!(
        text.to_lowercase().contains("certificate"),
        "the TLS store's error names its certificate: {v}"
    );
}

/// `--query.enforce-tenancy`: every store call of a request carries
/// `tenant_id="<the THANOS-TENANT header>"` (`--query.default-tenant-id` without it), in
/// place of any matcher on `tenant_id` the request has, for queries and the metadata APIs
/// alike. Without the flag the header changes nothing.
#[test]
fn enforce_tenancy_scopes_every_request_to_its_tenant() {
    use std::fmt::Write as _;
    const T0: i64 = 1_700_000_100_000;
    let tmp = tempfile::tempdir().unwrap();
    let mut om = String::from("# TYPE jobs gauge\n");
    for (tenant, value) in [("team-a", 1), ("team-b", 2), ("default-tenant", 3)] {
        for k in 0..240 {
            let t = T0 + k * 15_000;
            writeln!(
                om,
                "jobs{{tenant_id=\"{tenant}\"}} {value} {}.{:03}",
                t / 1000,
                t % 1000
            )
            .unwrap();
        }
    }
    om.push_str("# EOF\n");
    let blocks = strata_testutil::prometheus::create_blocks_from_openmetrics(
        &om,
        &tmp.path().join("blocks"),
    )
    .unwrap();
    let objstore = fs_bucket_labelled(&tmp.path().join("bucket"), &blocks, &[("cluster", "eu1")]);
    let (_store, grpc) = start_store(tmp.path(), "store", &objstore, &[]);
    let endpoint = format!("--endpoint=127.0.0.1:{grpc}");
    let t = (T0 + 1_800_000) / 1000;
    // The tenants a request sees, by the `tenant_id` of the series it gets back.
    let seen = |q: &Querier, path: &str, tenant: Option<&str>| -> Value {
        let headers: Vec<(&str, &str)> = tenant.map(|t| ("THANOS-TENANT", t)).into_iter().collect();
        let r = strata_testutil::process::http_request_with_headers(
            "GET",
            &format!("http://127.0.0.1:{}{path}", q.http),
            &headers,
            b"",
        )
        .unwrap();
        let body = String::from_utf8_lossy(&r.body).into_owned();
        assert_eq!(r.status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    };
    let tenants_of_query = |q: &Querier, query: &str, tenant: Option<&str>| -> Vec<String> {
        let v = seen(
            q,
            &format!("/api/v1/query?query={}&time={t}", enc(query)),
            tenant,
        );
        let mut out: Vec<String> = v["data"]["result"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .map(|s| s["metric"]["tenant_id"].as_str().unwrap().to_string())
            .collect();
        out.sort();
        out
    };

    let q = start_querier(
        tmp.path(),
        "query-tenancy",
        &[endpoint.clone(), "--query.enforce-tenancy".into()],
    );
    wait_until("the store to be healthy", Duration::from_secs(30), || {
        !tenants_of_query(&q, "jobs", Some("team-a")).is_empty()
    });
    assert_eq!(tenants_of_query(&q, "jobs", Some("team-a")), ["team-a"]);
    assert_eq!(tenants_of_query(&q, "jobs", Some("team-b")), ["team-b"]);
    assert_eq!(tenants_of_query(&q, "jobs", None), ["default-tenant"]);
    // A matcher on the tenant label is replaced, not added to.
    assert_eq!(
        tenants_of_query(&q, "jobs{tenant_id=\"team-b\"}", Some("team-a")),
        ["team-a"]
    );
    assert_eq!(
        tenants_of_query(&q, "sum by (tenant_id) (jobs)", Some("team-b")),
        ["team-b"]
    );
    let v = seen(&q, "/api/v1/label/tenant_id/values", Some("team-a"));
    assert_eq!(v["data"], serde_json::json!(["team-a"]), "{v}");
    let v = seen(
        &q,
        &format!("/api/v1/series?match[]={}", enc("{__name__=\"jobs\"}")),
        Some("team-b"),
    );
    assert_eq!(v["data"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["data"][0]["tenant_id"], "team-b", "{v}");
    // Each selection is recorded under its size and the request's tenant. One series of
    // 240 samples in two chunks: under 10 series and 1,000 samples.
    let (_, metrics) = get(q.http, "/metrics");
    for tenant in ["team-a", "team-b", "default-tenant"] {
        let line = format!(
            "thanos_store_api_query_duration_seconds_count{{series_le=\"10\",samples_le=\"1000\",tenant=\"{tenant}\"}}"
        );
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    // The healthy endpoints, as Thanos counts them.
    let line = "thanos_store_nodes_grpc_connections{external_labels=\"{cluster=\\\"eu1\\\"}\",store_type=\"store\"} 1";
    assert!(metrics.contains(line), "{line} in\n{metrics}");
    drop(q);

    // Without --query.enforce-tenancy every tenant's series answer.
    let q = start_querier(
        tmp.path(),
        "query-no-tenancy",
        &[endpoint, "--query.conn-metric.label=store_type".into()],
    );
    wait_until("the store to be healthy", Duration::from_secs(30), || {
        !tenants_of_query(&q, "jobs", None).is_empty()
    });
    let (_, metrics) = get(q.http, "/metrics");
    let line = "thanos_store_nodes_grpc_connections{store_type=\"store\"} 1";
    assert!(metrics.contains(line), "{line} in\n{metrics}");
    assert_eq!(
        tenants_of_query(&q, "jobs", Some("team-a")),
        ["default-tenant", "team-a", "team-b"]
    );
}

/// Querier flags that shape what the stores are asked and may answer, each taking effect:
/// `--selector.relabel-config` (stores picked by their external labels),
/// `--store.limits.request-series` and `-samples` (a selection past them fails, naming the
/// flag), `--query.metadata.default-time-range` (metadata calls without a range look back
/// that far only), and `--selector-label` (advertised on the querier's Info API, matched and
/// dropped from calls to its Store API, so a querier above picks it by them).
#[test]
fn querier_flags_shape_the_fan_out() {
    const T0: i64 = 1_700_000_100_000;
    let tmp = tempfile::tempdir().unwrap();
    let (_eu, eu) = start_store_with_blocks(tmp.path(), "eu1", T0, &[]);
    let (_us, us) = start_store_with_blocks(tmp.path(), "us1", T0, &[]);
    let stores = [
        format!("--endpoint=127.0.0.1:{eu}"),
        format!("--endpoint=127.0.0.1:{us}"),
    ];
    let t = (T0 + 3_600_000) / 1000;
    let query = |q: &Querier, expr: &str| {
        json(
            q.http,
            &format!("/api/v1/query?query={}&time={t}", enc(expr)),
        )
    };
    let wait_for_both = |q: &Querier| {
        wait_until("both stores", Duration::from_secs(30), || {
            let (_, v) = json(q.http, "/api/v1/stores");
            v["data"]["store"].as_array().is_some_and(|a| a.len() == 2)
        })
    };

    let args = |extra: &[&str]| -> Vec<String> {
        stores
            .iter()
            .cloned()
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };
    let q = start_querier(
        tmp.path(),
        "query-relabel",
        &args(&[
            "--selector.relabel-config=[{source_labels: [cluster], regex: eu1, action: keep}]",
            "--query.mode=distributed",
        ]),
    );
    wait_for_both(&q);
    // A flag Strata does not act on is said so at start-up.
    assert!(
        q._proc.log().contains(
            "--query.mode=distributed is accepted for compatibility with Thanos but has no effect"
        ),
        "{}",
        q._proc.log()
    );
    let (status, v) = query(&q, "temperature");
    assert_eq!(status, 200, "{v}");
    assert_eq!(clusters(&v), ["eu1"], "{v}");
    drop(q);

    let q = start_querier(
        tmp.path(),
        "query-series-limit",
        &args(&["--store.limits.request-series=3"]),
    );
    wait_for_both(&q);
    let (status, v) = query(&q, "temperature{room=\"hall\"}");
    assert_eq!(status, 200, "{v}");
    assert_eq!(clusters(&v), ["eu1", "us1"], "{v}");
    // Four series.
    let (status, v) = query(&q, "temperature");
    assert!(status >= 400, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(
        e.contains("exceeded series limit") && e.contains("--store.limits.request-series"),
        "{v}"
    );
    drop(q);

    let q = start_querier(
        tmp.path(),
        "query-samples-limit",
        &args(&["--store.limits.request-samples=240"]),
    );
    wait_for_both(&q);
    // One series, at most two chunks (the instant's five minutes may reach back into the
    // chunk before): within the limit of 240 samples (2 chunks).
    let (status, v) = query(&q, "temperature{room=\"hall\", cluster=\"eu1\"}");
    assert_eq!(status, 200, "{v}");
    assert_eq!(clusters(&v), ["eu1"], "{v}");
    // Two series over two hours: more chunks.
    let (status, v) = query(&q, "max_over_time(temperature{room=\"hall\"}[2h])");
    assert!(status >= 400, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(
        e.contains("exceeded samples limit") && e.contains("--store.limits.request-samples"),
        "{v}"
    );
    drop(q);

    let q = start_querier(
        tmp.path(),
        "query-metadata-range",
        &args(&["--query.metadata.default-time-range=1h"]),
    );
    wait_for_both(&q);
    // The data is from 2023: nothing in the last hour, everything when asked.
    let (_, v) = json(q.http, "/api/v1/labels");
    assert_eq!(v["data"], serde_json::json!([]), "{v}");
    let (_, v) = json(q.http, "/api/v1/labels?start=0");
    assert!(
        v["data"].as_array().unwrap().iter().any(|n| n == "room"),
        "{v}"
    );
    drop(q);

    // A leaf querier advertising region="eu", and a global querier over it.
    let leaf = start_querier(
        tmp.path(),
        "query-leaf",
        &args(&["--selector-label=region=\"eu\""]),
    );
    wait_for_both(&leaf);
    let global = start_querier(
        tmp.path(),
        "query-global",
        &[format!("--endpoint=127.0.0.1:{}", leaf.grpc)],
    );
    wait_until("the leaf querier", Duration::from_secs(30), || {
        let (_, v) = json(global.http, "/api/v1/stores");
        v["data"]["query"].as_array().is_some_and(|a| a.len() == 1)
    });
    let (_, v) = json(global.http, "/api/v1/stores");
    let sets = v["data"]["query"][0]["labelSets"].to_string();
    assert!(
        sets.contains("\"region\":\"eu\"") && sets.contains("\"cluster\":\"eu1\""),
        "{v}"
    );
    let (status, v) = query(&global, "temperature{region=\"eu\", room=\"hall\"}");
    assert_eq!(status, 200, "{v}");
    assert_eq!(clusters(&v), ["eu1", "us1"], "{v}");
    let (status, v) = query(&global, "temperature{region=\"us\", room=\"hall\"}");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["result"], serde_json::json!([]), "{v}");
}

/// Deduplication of two HA replicas from uploaded blocks behind one `strata store`. The
/// querier sends `without_replica_labels`, the gateway strips the replica label, so each
/// series' replicas reach the querier as one series with both replicas' chunks, split again
/// by time. The deduplicated raw samples must be what the penalty algorithm makes of the two
/// replicas' samples taken apart (`dedup=false`), across promtool's block and chunk
/// boundaries, with a gap in the replica deduplication follows first.
#[test]
fn uploaded_replicas_deduplicate_through_a_store_gateway() {
    use std::fmt::Write as _;
    // a's last sample before the 2h block boundary at 1700006400 s comes 1.9 s before it, so
    // b's first sample of the next block comes before a's (the case a first-fit split of the
    // chunks gets wrong).
    const T0: i64 = 1_700_006_400_000 - 420 * 15_000 - 1_877;
    const H: i64 = 3_600_000;
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    let mut objstore = String::new();
    for (replica, shift, gap) in [("a", 0, H..H + 20 * 60_000), ("b", 5_000, 0..0)] {
        let mut om = String::from("# TYPE c counter\n");
        for k in 0..(4 * 240) {
            let t = T0 + shift + k * 15_000;
            if gap.contains(&(t - T0)) {
                continue;
            }
            writeln!(om, "c_total{{job=\"x\"}} {k} {}.{:03}", t / 1000, t % 1000).unwrap();
        }
        om.push_str("# EOF\n");
        let blocks = strata_testutil::prometheus::create_blocks_from_openmetrics(
            &om,
            &tmp.path().join(format!("blocks-{replica}")),
        )
        .unwrap();
        assert!(blocks.len() >= 2, "{replica}: {blocks:?}");
        objstore = fs_bucket_labelled(
            &bucket,
            &blocks,
            &[("cluster", "eu1"), ("replica", replica)],
        );
    }
    let (_store, grpc) = start_store(tmp.path(), "store", &objstore, &[]);
    let q = start_querier(
        tmp.path(),
        "query",
        &[
            format!("--endpoint=127.0.0.1:{grpc}"),
            "--query.replica-label=replica".into(),
        ],
    );
    let at = (T0 + 4 * H) / 1000;
    let samples = |extra: &str| -> Vec<(Value, Vec<(i64, f64)>)> {
        let (status, v) = json(
            q.http,
            &format!(
                "/api/v1/query?query={}&time={at}{extra}",
                enc("c_total[5h]")
            ),
        );
        assert_eq!(status, 200, "{v}");
        matrix(&v)
            .into_iter()
            .map(|(l, pts)| {
                let pts = pts
                    .into_iter()
                    .map(|(t, v)| ((t * 1000.0).round() as i64, v.parse().unwrap()))
                    .collect();
                (l, pts)
            })
            .collect()
    };
    let apart = samples("&dedup=false");
    assert_eq!(apart.len(), 2, "{apart:?}");
    assert_eq!(apart[0].0["replica"], "a");
    let want = strata_dedup::dedup_samples(
        &[&apart[0].1, &apart[1].1],
        strata_dedup::Algorithm::Penalty,
        false,
    );
    let dedup = samples("");
    assert_eq!(dedup.len(), 1, "{dedup:?}");
    assert!(dedup[0].0.get("replica").is_none());
    let got = &dedup[0].1;
    if let Some(i) = (0..got.len().max(want.len())).find(|&i| got.get(i) != want.get(i)) {
        panic!(
            "deduplicated samples differ from the penalty algorithm's at {i} of {}/{}: {:?} vs {:?}",
            got.len(),
            want.len(),
            &got[i.saturating_sub(2)..(i + 2).min(got.len())],
            &want[i.saturating_sub(2)..(i + 2).min(want.len())]
        );
    }
    // a's gap is filled from b, and no sample comes twice as often as scraped.
    assert!(
        dedup[0]
            .1
            .iter()
            .any(|(t, _)| (T0 + H..T0 + H + 20 * 60_000).contains(t))
    );
    assert!(dedup[0].1.windows(2).all(|w| w[1].0 - w[0].0 >= 10_000));
}

#[test]
fn store_match_over_tls_stores_with_skip_verify() {
    const T0: i64 = 1_700_000_100_000;
    let tmp = tempfile::tempdir().unwrap();
    // A self-signed server certificate: no CA the querier knows signed it.
    strata_testutil::tls::self_signed_certificate(tmp.path());
    let tls = [
        format!(
            "--grpc-server-tls-cert={}",
            tmp.path().join("cert.pem").display()
        ),
        format!(
            "--grpc-server-tls-key={}",
            tmp.path().join("key.pem").display()
        ),
    ];
    let (_eu, eu) = start_store_with_blocks(tmp.path(), "eu1", T0, &tls);
    let (_us, us) = start_store_with_blocks(tmp.path(), "us1", T0, &tls);
    let endpoints = [
        format!("--endpoint=127.0.0.1:{eu}"),
        format!("--endpoint=127.0.0.1:{us}"),
    ];
    let t = (T0 + 3_600_000) / 1000;
    let query = format!("/api/v1/query?query=temperature&time={t}");

    // Without skip-verify the certificate is refused: the stores stay down.
    let q = start_querier(
        tmp.path(),
        "query-verify",
        &[endpoints.to_vec(), vec!["--grpc-client-tls-secure".into()]].concat(),
    );
    let (_, v) = json(q.http, "/api/v1/stores");
    let errors: Vec<&str> = v["data"]
        .as_object()
        .unwrap_or_else(|| panic!("{v}"))
        .values()
        .flat_map(|l| l.as_array().unwrap())
        .map(|s| s["lastError"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(errors.len(), 2, "{v}");
    assert!(errors.iter().all(|e| e.contains("certificate")), "{v}");
    let (status, v) = json(q.http, &query);
    assert_eq!(status, 200, "{v}");
    assert!(clusters(&v).is_empty(), "{v}");
    drop(q);

    // With it, both stores answer over TLS.
    let q = start_querier(
        tmp.path(),
        "query-skip-verify",
        &[
            endpoints.to_vec(),
            vec![
                "--grpc-client-tls-secure".into(),
                "--grpc-client-tls-skip-verify".into(),
                "--query.max-concurrent-select=2".into(),
            ],
        ]
        .concat(),
    );
    let (status, v) = json(q.http, &query);
    assert_eq!(status, 200, "{v}");
    assert_eq!(clusters(&v), ["eu1", "us1"], "{v}");

    // storeMatch[] on every endpoint, GET and form POST.
    let eu_only = enc(&format!("{{__address__=\"127.0.0.1:{eu}\"}}"));
    let us_re = enc(&format!("{{__address__=~\".*:{us}\"}}"));
    let (status, v) = json(q.http, &format!("{query}&storeMatch[]={eu_only}"));
    assert_eq!(status, 200, "{v}");
    assert_eq!(clusters(&v), ["eu1"], "{v}");
    let (_, v) = json(
        q.http,
        &format!("{query}&storeMatch[]={eu_only}&storeMatch[]={us_re}"),
    );
    assert_eq!(clusters(&v), ["eu1", "us1"], "{v}");
    let (status, v) = post_form(
        q.http,
        "/api/v1/query_range",
        &format!(
            "query=temperature&start={}&end={t}&step=60&storeMatch[]={us_re}",
            t - 600
        ),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(clusters(&v), ["us1"], "{v}");
    let (status, v) = post_form(
        q.http,
        "/api/v1/query",
        &format!("query=temperature&time={t}&storeMatch[]={eu_only}"),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(clusters(&v), ["eu1"], "{v}");
    let (_, v) = json(
        q.http,
        &format!("/api/v1/label/cluster/values?storeMatch[]={us_re}"),
    );
    assert_eq!(v["data"], serde_json::json!(["us1"]), "{v}");
    let (_, v) = json(
        q.http,
        &format!(
            "/api/v1/series?match[]=temperature&storeMatch[]={eu_only}&start={}&end={t}",
            t - 600
        ),
    );
    let series = v["data"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(series.len(), 2, "{v}");
    assert!(series.iter().all(|s| s["cluster"] == "eu1"), "{v}");
    let (_, v) = post_form(
        q.http,
        "/api/v1/series",
        &format!("match[]=temperature&storeMatch[]={us_re}"),
    );
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["cluster"] == "us1"),
        "{v}"
    );
    let nowhere = enc("{__address__=\"10.0.0.1:1\"}");
    let (_, v) = json(q.http, &format!("/api/v1/labels?storeMatch[]={nowhere}"));
    assert_eq!(v["data"], serde_json::json!([]), "{v}");
    let (_, v) = post_form(q.http, "/api/v1/labels", &format!("storeMatch[]={eu_only}"));
    assert!(
        v["data"].as_array().unwrap().iter().any(|n| n == "cluster"),
        "{v}"
    );

    // A malformed selector is a 400 naming the parameter, on every endpoint.
    let bad = enc("{__address__=~\"(\"}");
    for path in [
        format!("{query}&storeMatch[]={bad}"),
        format!("/api/v1/query_range?query=up&start=0&end=60&step=15&storeMatch[]={bad}"),
        format!("/api/v1/series?match[]=up&storeMatch[]={bad}"),
        format!("/api/v1/labels?storeMatch[]={bad}"),
        format!("/api/v1/label/job/values?storeMatch[]={bad}"),
    ] {
        let (status, v) = json(q.http, &path);
        assert_eq!(status, 400, "{path}: {v}");
        assert_eq!(v["errorType"], "bad_data", "{path}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains("storeMatch[]"),
            "{path}: {v}"
        );
    }
    let (status, v) = post_form(
        q.http,
        "/api/v1/query",
        &format!("query=up&storeMatch[]={bad}"),
    );
    assert_eq!(status, 400, "{v}");
}

/// A FILESYSTEM bucket in `dir` holding `blocks` uploaded with external label
/// `cluster=<cluster>`; returns its objstore.yml.
fn fs_bucket_with(dir: &std::path::Path, blocks: &[std::path::PathBuf], cluster: &str) -> String {
    fs_bucket_labelled(dir, blocks, &[("cluster", cluster)])
}

/// [`fs_bucket_with`] with the external labels `labels`; adds to what `dir` holds.
fn fs_bucket_labelled(
    dir: &std::path::Path,
    blocks: &[std::path::PathBuf],
    labels: &[(&str, &str)],
) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let objstore = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        dir.display()
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let bucket = strata_objstore::Bucket::from_yaml(
            &objstore,
            &strata_objstore::BucketMetrics::unregistered(),
        )
        .unwrap();
        let opts = strata_block::transfer::UploadOptions {
            labels: labels
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            source: "sidecar".into(),
            require_labels: false,
            hash_func: Default::default(),
            file_concurrency: 0,
        };
        for b in blocks {
            strata_block::transfer::upload_block(&bucket, b, &opts)
                .await
                .unwrap();
        }
    });
    objstore
}

/// A TCP proxy to `127.0.0.1:target` on a free port, recording every byte forwarded per
/// direction (to the server, to the client). h2c is plaintext, so gRPC payloads show.
fn sniff(target: u16) -> (u16, [std::sync::Arc<std::sync::Mutex<Vec<u8>>>; 2]) {
    use std::sync::{Arc, Mutex};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = [
        Arc::new(Mutex::new(Vec::new())),
        Arc::new(Mutex::new(Vec::new())),
    ];
    let recorders = seen.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", target)) else {
                continue;
            };
            let pairs = [
                (client.try_clone().unwrap(), server.try_clone().unwrap(), 0),
                (server, client, 1),
            ];
            for (mut from, mut to, dir) in pairs {
                let seen = recorders[dir].clone();
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 << 10];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        seen.lock().unwrap().extend_from_slice(&buf[..n]);
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    (port, seen)
}

/// Framed-snappy streams (stream identifier chunks) in recorded bytes.
fn snappy_streams(b: &std::sync::Mutex<Vec<u8>>) -> usize {
    b.lock()
        .unwrap()
        .windows(10)
        .filter(|w| *w == b"\xff\x06\x00\x00sNaPpY")
        .count()
}

#[test]
fn grpc_compression_snappy_between_processes() {
    const T0: i64 = 1_700_000_100_000;
    let tmp = tempfile::tempdir().unwrap();
    let (_store, store) = start_store_with_blocks(tmp.path(), "eu1", T0, &[]);
    let (store_wire, store_seen) = sniff(store);
    let plain = start_querier(
        tmp.path(),
        "query-plain",
        &[format!("--endpoint=127.0.0.1:{store}")],
    );
    let snappy = start_querier(
        tmp.path(),
        "query-snappy",
        &[
            format!("--endpoint=127.0.0.1:{store_wire}"),
            "--grpc-compression=snappy".into(),
        ],
    );
    // A querier over the Snappy querier's own Store API, with Snappy as well.
    let (mid_wire, mid_seen) = sniff(snappy.grpc);
    let top = start_querier(
        tmp.path(),
        "query-top",
        &[
            format!("--endpoint=127.0.0.1:{mid_wire}"),
            "--grpc-compression=snappy".into(),
        ],
    );
    let t = T0 / 1000;
    let query = format!(
        "/api/v1/query_range?query={}&start={}&end={}&step=60",
        enc("temperature"),
        t + 600,
        t + 7000
    );
    let result = |q: &Querier| -> Value {
        let mut last = Value::Null;
        wait_until("two series", Duration::from_secs(30), || {
            let (status, v) = json(q.http, &query);
            last = v;
            status == 200
                && last["data"]["result"]
                    .as_array()
                    .is_some_and(|a| a.len() == 2)
        });
        assert!(last["warnings"].is_null(), "{last}");
        last["data"]["result"].clone()
    };
    let want = result(&plain);
    assert!(want[0]["values"].as_array().unwrap().len() > 100, "{want}");
    assert_eq!(result(&snappy), want);
    assert_eq!(result(&top), want);
    // Both links really carried Snappy, both ways.
    for (link, seen) in [
        ("querier → store", &store_seen),
        ("querier → querier", &mid_seen),
    ] {
        let (up, down) = (snappy_streams(&seen[0]), snappy_streams(&seen[1]));
        assert!(
            up > 0 && down > 0,
            "{link}: {up} requests, {down} responses compressed"
        );
    }
}

/// `--endpoint.sd-config-file` and `--endpoint-group` in the binary: the file's endpoint and
/// the group (one member here) are listed in `/api/v1/stores` (the group under Thanos'
/// `thanos:///` name) and queried; rewriting the file moves the querier to another store;
/// a malformed rewrite changes nothing.
#[test]
fn endpoint_sd_config_file_and_group_between_processes() {
    const T0: i64 = 1_700_000_100_000;
    let tmp = tempfile::tempdir().unwrap();
    let (_a, a) = start_store_with_blocks(tmp.path(), "a", T0, &[]);
    let (_b, b) = start_store_with_blocks(tmp.path(), "b", T0, &[]);
    let (_c, c) = start_store_with_blocks(tmp.path(), "c", T0, &[]);
    let file = tmp.path().join("endpoints.yml");
    std::fs::write(&file, format!("endpoints:\n  - address: 127.0.0.1:{a}\n")).unwrap();
    let q = start_querier(
        tmp.path(),
        "query",
        &[
            format!("--endpoint.sd-config-file={}", file.display()),
            "--endpoint.sd-config-reload-interval=1s".into(),
            format!("--endpoint-group=127.0.0.1:{b}"),
        ],
    );
    let names = || -> Vec<String> {
        let (_, v) = json(q.http, "/api/v1/stores");
        let mut n: Vec<String> = v["data"]["store"]
            .as_array()
            .map(|l| {
                l.iter()
                    .map(|s| s["name"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default();
        n.sort();
        n
    };
    let clusters = || -> Vec<String> {
        let t = (T0 + 3_600_000) as f64 / 1000.0;
        let (status, v) = json(
            q.http,
            &format!(
                "/api/v1/query?query={}&time={t}",
                enc("count by (cluster) (temperature)")
            ),
        );
        assert_eq!(status, 200, "{v}");
        let mut c: Vec<String> = v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r["metric"]["cluster"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        c.sort();
        c
    };
    let want = vec![format!("127.0.0.1:{a}"), format!("thanos:///127.0.0.1:{b}")];
    wait_until(
        "the file's store and the group listed",
        Duration::from_secs(30),
        || names() == want,
    );
    assert_eq!(clusters(), ["a", "b"]);

    // The file now names c instead of a.
    std::fs::write(
        &file,
        format!("endpoints: [{{address: '127.0.0.1:{c}'}}]\n"),
    )
    .unwrap();
    let want = vec![format!("127.0.0.1:{c}"), format!("thanos:///127.0.0.1:{b}")];
    wait_until("the reloaded file applied", Duration::from_secs(30), || {
        names() == want
    });
    assert_eq!(clusters(), ["b", "c"]);

    // A malformed rewrite is logged and changes nothing.
    std::fs::write(&file, "endpoints:\n  - address: [\n").unwrap();
    wait_until("the reload error logged", Duration::from_secs(30), || {
        q._proc
            .log()
            .contains("reloading the endpoint SD config failed")
    });
    assert_eq!(names(), want);
    assert_eq!(clusters(), ["b", "c"]);
}

/// Stops replica `b`'s Prometheus (its sidecar stays up and fails every call), then checks
/// that `path` on querier port `q` answers with one warning naming that sidecar and with
/// data that `data_ok` accepts, and fails with an error naming it without partial response.
fn replica_down_is_warning_or_error(
    b: &mut Replica,
    q: u16,
    path: &str,
    data_ok: impl Fn(&Value) -> bool,
) -> String {
    b.prom.take();
    let sidecar_b = format!("127.0.0.1:{}", b.grpc_port);
    wait_until(
        "a warning naming b's sidecar",
        Duration::from_secs(30),
        || {
            let (status, v) = json(q, path);
            status == 200 && data_ok(&v["data"]) && warns_only_of(&v, &sidecar_b)
        },
    );
    let sep = if path.contains('?') { '&' } else { '?' };
    let (status, v) = json(q, &format!("{path}{sep}partial_response=false"));
    assert_eq!(status, 500, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains(&sidecar_b),
        "the error names the failed sidecar: {v}"
    );
    sidecar_b
}

/// Whether an API answer has exactly one warning, and it names `who`.
fn warns_only_of(v: &Value, who: &str) -> bool {
    v["warnings"]
        .as_array()
        .is_some_and(|w| w.len() == 1 && w[0].as_str().is_some_and(|w| w.contains(who)))
}

/// Two HA replicas scraping `target` (and evaluating `rules`, if given), a querier over
/// their sidecars that deduplicates by `replica`, and a querier above that one.
fn ha_pair_with_stacked_queriers(
    root: &Path,
    rules: Option<&str>,
    target: u16,
) -> (Replica, Replica, Querier, Querier) {
    let a = Replica::start_with_rules(root, "a", target, rules);
    let b = Replica::start_with_rules(root, "b", target, rules);
    // Replica b is given through Thanos' deprecated, hidden `--rule` alias: every endpoint is
    // asked what it offers, so that is an endpoint like any other.
    let q = start_querier(
        root,
        "query",
        &[
            format!("--endpoint=127.0.0.1:{}", a.grpc_port),
            format!("--rule=127.0.0.1:{}", b.grpc_port),
            "--query.replica-label=replica".into(),
        ],
    );
    let top = start_querier(
        root,
        "global",
        &[
            format!("--endpoint=127.0.0.1:{}", q.grpc),
            "--query.replica-label=replica".into(),
        ],
    );
    (a, b, q, top)
}

/// `/api/v1/metadata` is Prometheus' own answer, through the sidecars' Metadata API: the two
/// replicas' identical entries once, `metric` and `limit` applied, the same through a querier
/// stacked on the first (its own Metadata API); a replica whose Prometheus is down is a
/// warning naming its sidecar under partial response, the request's error without it.
#[test]
fn metadata_from_sidecars_through_stacked_queriers() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, mut b, q, top) = ha_pair_with_stacked_queriers(tmp.path(), None, start_target());
    let metric = "demo_events_total";
    for port in [a.prom_port, b.prom_port] {
        wait_until(
            "Prometheus has the metadata",
            Duration::from_secs(30),
            || {
                let (_, v) = json(port, "/api/v1/metadata");
                v["data"][metric].is_array()
            },
        );
    }
    let (_, prom) = json(a.prom_port, "/api/v1/metadata");
    assert_eq!(
        prom["data"][metric],
        serde_json::json!([{"type": "counter", "help": "Events seen by the demo target.", "unit": ""}]),
        "{prom}"
    );
    // The querier above lists the first once its probe has seen it offer metadata.
    wait_until(
        "metadata through both queriers",
        Duration::from_secs(30),
        || {
            [q.http, top.http].iter().all(|&port| {
                let (_, v) = json(port, "/api/v1/metadata");
                v["data"][metric].is_array()
            })
        },
    );
    for port in [q.http, top.http] {
        let (status, v) = json(port, "/api/v1/metadata");
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["data"], prom["data"], "querier on {port}");
        assert!(v.get("warnings").is_none(), "{v}");
        let (_, one) = json(port, &format!("/api/v1/metadata?metric={metric}"));
        assert_eq!(
            one["data"],
            serde_json::json!({ metric: prom["data"][metric].clone() }),
            "{one}"
        );
        let (_, none) = json(port, "/api/v1/metadata?metric=no_such_metric");
        assert_eq!(none["data"], serde_json::json!({}), "{none}");
        let (_, zero) = json(port, "/api/v1/metadata?limit=0");
        assert_eq!(zero["data"], serde_json::json!({}), "{zero}");
        let (status, bad) = json(port, "/api/v1/metadata?limit=many");
        assert_eq!(status, 400, "{bad}");
        assert_eq!(bad["errorType"], "bad_data", "{bad}");
    }

    let sidecar_b = replica_down_is_warning_or_error(&mut b, q.http, "/api/v1/metadata", |d| {
        *d == prom["data"]
    });
    // The querier above reports the warning the one below passed on.
    let (status, v) = json(top.http, "/api/v1/metadata");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"], prom["data"], "{v}");
    assert!(
        v["warnings"]
            .as_array()
            .is_some_and(|w| w.iter().any(|w| w.as_str().unwrap().contains(&sidecar_b))),
        "{v}"
    );

    // Without the parameter, the metadata API's own flag decides, as in Thanos:
    // `--no-query.partial-response` leaves it partial, `--no-metric-metadata.partial-response`
    // makes it fail.
    let endpoints = [
        format!("--endpoint=127.0.0.1:{}", a.grpc_port),
        format!("--endpoint={sidecar_b}"),
    ];
    for (flag, partial) in [
        ("--no-query.partial-response", true),
        ("--no-metric-metadata.partial-response", false),
    ] {
        let mut args = endpoints.to_vec();
        args.push(flag.into());
        let other = start_querier(tmp.path(), &format!("query{flag}"), &args);
        wait_until(
            "the other querier answers for both sidecars",
            Duration::from_secs(30),
            || {
                let (status, v) = json(other.http, "/api/v1/metadata");
                if partial {
                    status == 200 && warns_only_of(&v, &sidecar_b)
                } else {
                    status == 500 && v["error"].as_str().is_some_and(|e| e.contains(&sidecar_b))
                }
            },
        );
    }
    drop(a);
}

const RULES: &str = "groups:
  - name: demo
    rules:
      - record: demo:events:rate1m
        expr: rate(demo_events_total[1m])
      - alert: DemoAlwaysFiring
        expr: vector(1)
        labels:
          severity: page
        annotations:
          summary: always firing
      - alert: DemoNever
        expr: demo_events_total < 0
        for: 5m
";

/// `(type, name, state)` of each rule of the only group of a `/api/v1/rules` answer, and the
/// names of the rules' labels.
fn rule_list(v: &Value) -> Vec<(String, String, String, Vec<String>)> {
    let groups = v["data"]["groups"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(groups.len(), 1, "{v}");
    assert_eq!(groups[0]["name"], "demo", "{v}");
    groups[0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let labels = r["labels"].as_object().unwrap().keys().cloned().collect();
            (
                r["type"].as_str().unwrap().to_string(),
                r["name"].as_str().unwrap().to_string(),
                r["state"].as_str().unwrap_or("").to_string(),
                labels,
            )
        })
        .collect()
}

/// `/api/v1/rules` and `/api/v1/alerts` through the sidecars' Rules API: two replicas
/// evaluating the same rule file are one group of three rules, external labels on and the
/// replica label off (`dedup=false`: six), the firing alert once; `type`, `rule_name[]` and
/// `match[]` filter; a querier above (its own Rules API) deduplicates the same way; a replica
/// whose Prometheus is down is a warning naming its sidecar, or the error without partial
/// response.
#[test]
fn rules_and_alerts_from_sidecars_deduplicated() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, mut b, q, top) = ha_pair_with_stacked_queriers(tmp.path(), Some(RULES), start_target());
    for port in [a.prom_port, b.prom_port] {
        wait_until(
            "the alert fires in Prometheus",
            Duration::from_secs(30),
            || {
                let (_, v) = json(port, "/api/v1/alerts");
                v["data"]["alerts"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|a| a["state"] == "firing"))
            },
        );
    }
    let expected = vec![
        (
            "alerting",
            "DemoAlwaysFiring",
            "firing",
            vec!["cluster", "severity"],
        ),
        ("alerting", "DemoNever", "inactive", vec!["cluster"]),
        ("recording", "demo:events:rate1m", "", vec!["cluster"]),
    ];
    let expected: Vec<(String, String, String, Vec<String>)> = expected
        .into_iter()
        .map(|(t, n, s, l)| {
            (
                t.into(),
                n.into(),
                s.into(),
                l.into_iter().map(String::from).collect(),
            )
        })
        .collect();
    wait_until(
        "rules through both queriers",
        Duration::from_secs(30),
        || {
            [q.http, top.http].iter().all(|&port| {
                let (_, v) = json(port, "/api/v1/rules");
                v["data"]["groups"].as_array().is_some_and(|g| g.len() == 1)
                    && rule_list(&v) == expected
            })
        },
    );
    // The same queries as Prometheus evaluates.
    let (_, prom) = json(a.prom_port, "/api/v1/rules");
    let (_, ours) = json(q.http, "/api/v1/rules");
    let queries = |v: &Value| -> std::collections::BTreeSet<String> {
        v["data"]["groups"][0]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["query"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(queries(&ours), queries(&prom));
    assert_eq!(
        ours["data"]["groups"][0]["file"],
        prom["data"]["groups"][0]["file"]
    );
    assert!(ours.get("warnings").is_none(), "{ours}");

    let (_, all) = json(q.http, "/api/v1/rules?dedup=false");
    let all = rule_list(&all);
    assert_eq!(all.len(), 6, "{all:?}");
    assert!(
        all.iter().all(|r| r.3.contains(&"replica".to_string())),
        "{all:?}"
    );

    let (_, alerts) = json(q.http, "/api/v1/rules?type=alert");
    assert_eq!(rule_list(&alerts).len(), 2);
    let (_, records) = json(q.http, "/api/v1/rules?type=record");
    assert_eq!(rule_list(&records)[0].1, "demo:events:rate1m");
    let (status, bad) = json(q.http, "/api/v1/rules?type=alerts");
    assert_eq!(
        (status, bad["errorType"].as_str()),
        (400, Some("bad_data")),
        "{bad}"
    );
    let (_, named) = json(q.http, "/api/v1/rules?rule_name[]=DemoNever");
    assert_eq!(rule_list(&named)[0].1, "DemoNever");
    let (_, matched) = json(
        q.http,
        &format!("/api/v1/rules?match[]={}", enc("{severity=\"page\"}")),
    );
    assert_eq!(rule_list(&matched).len(), 1);
    let (_, none) = json(q.http, "/api/v1/rules?rule_group[]=other");
    assert_eq!(none["data"]["groups"], serde_json::json!([]), "{none}");

    for port in [q.http, top.http] {
        let (_, v) = json(port, "/api/v1/alerts");
        let list = v["data"]["alerts"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"));
        assert_eq!(list.len(), 1, "the firing alert once: {v}");
        assert_eq!(list[0]["labels"]["alertname"], "DemoAlwaysFiring");
        assert_eq!(list[0]["state"], "firing");
        assert_eq!(list[0]["annotations"]["summary"], "always firing");
    }
    let (_, v) = json(q.http, "/api/v1/alerts?dedup=false");
    assert_eq!(v["data"]["alerts"].as_array().unwrap().len(), 2, "{v}");

    replica_down_is_warning_or_error(&mut b, q.http, "/api/v1/rules", |d| {
        d["groups"].as_array().is_some_and(|g| g.len() == 1)
    });
    drop(a);
}

/// `/api/v1/query_exemplars` through the sidecars' Exemplars API: the two replicas' series
/// are one (the replica label off, `cluster` on), its exemplars those of replica `a` (the
/// lowest replica label), exactly as that Prometheus answers them; `dedup=false`
/// gives both; matchers on external labels route (and are not sent to Prometheus); a
/// querier above answers the same; bad parameters are the client's error.
#[test]
fn exemplars_from_sidecars_deduplicated() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, q, top) = ha_pair_with_stacked_queriers(tmp.path(), None, start_exemplar_target());
    for port in [a.prom_port, b.prom_port] {
        wait_until("Prometheus has exemplars", Duration::from_secs(30), || {
            let (_, v) = json(port, "/api/v1/query_exemplars?query=demo_requests_total");
            v["data"][0]["exemplars"]
                .as_array()
                .is_some_and(|e| e.len() >= 2)
        });
    }
    // A closed range, so that every answer below covers the same exemplars.
    let end = now_s() - 1.0;
    std::thread::sleep(Duration::from_millis(1200));
    let path = |q: &str| format!("/api/v1/query_exemplars?query={}&start=0&end={end}", enc(q));
    let (_, prom) = json(a.prom_port, &path("demo_requests_total"));
    let prom_exemplars = prom["data"][0]["exemplars"].clone();
    assert!(
        prom_exemplars.as_array().is_some_and(|e| !e.is_empty()),
        "{prom}"
    );
    wait_until(
        "exemplars through both queriers",
        Duration::from_secs(30),
        || {
            [q.http, top.http].iter().all(|&port| {
                let (_, v) = json(port, &path("demo_requests_total"));
                v["data"].as_array().is_some_and(|d| d.len() == 1)
            })
        },
    );
    for port in [q.http, top.http] {
        let (status, v) = json(port, &path("demo_requests_total"));
        assert_eq!(status, 200, "{v}");
        let series = &v["data"][0];
        assert_eq!(series["seriesLabels"]["cluster"], "eu1", "{v}");
        assert!(series["seriesLabels"].get("replica").is_none(), "{v}");
        assert_eq!(series["exemplars"], prom_exemplars, "querier on {port}");
    }
    let (_, both) = json(
        q.http,
        &format!("{}&dedup=false", path("demo_requests_total")),
    );
    assert_eq!(both["data"].as_array().unwrap().len(), 2, "{both}");
    let (_, routed) = json(
        q.http,
        &path("rate(demo_requests_total{cluster=\"eu1\"}[1m])"),
    );
    assert_eq!(routed["data"][0]["exemplars"], prom_exemplars, "{routed}");
    let (_, elsewhere) = json(q.http, &path("demo_requests_total{cluster=\"us1\"}"));
    assert_eq!(elsewhere["data"], serde_json::json!([]), "{elsewhere}");
    // A selector only on external labels cannot be routed: the client's fault, not the server's.
    let (status, bad) = json(q.http, &path("{cluster=\"eu1\"}"));
    assert_eq!(
        (status, bad["errorType"].as_str()),
        (400, Some("bad_data")),
        "{bad}"
    );
    assert!(
        bad["error"]
            .as_str()
            .unwrap()
            .contains("external labels only"),
        "{bad}"
    );
    let (status, bad) = json(q.http, "/api/v1/query_exemplars?query=sum(");
    assert_eq!(
        (status, bad["errorType"].as_str()),
        (400, Some("bad_data")),
        "{bad}"
    );
    let (status, bad) = json(
        q.http,
        "/api/v1/query_exemplars?query=demo_requests_total&start=10&end=5",
    );
    assert_eq!(
        (status, bad["errorType"].as_str()),
        (400, Some("bad_data")),
        "{bad}"
    );
}

/// `/api/v1/targets` through the sidecars' Targets API: the replicas' copies of the one
/// target are one (`cluster` on, the replica label off), as Prometheus reports it; both with
/// `dedup=false`; `state` filters; the querier above answers the same; a replica whose
/// Prometheus is down is a warning naming its sidecar, or the error without partial response.
#[test]
fn targets_from_sidecars_deduplicated() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, mut b, q, top) = ha_pair_with_stacked_queriers(tmp.path(), None, start_target());
    for port in [a.prom_port, b.prom_port] {
        wait_until(
            "Prometheus scraped its target",
            Duration::from_secs(30),
            || {
                let (_, v) = json(port, "/api/v1/targets");
                v["data"]["activeTargets"][0]["health"] == "up"
            },
        );
    }
    let (_, prom) = json(a.prom_port, "/api/v1/targets");
    let prom_target = &prom["data"]["activeTargets"][0];
    wait_until(
        "targets through both queriers",
        Duration::from_secs(30),
        || {
            [q.http, top.http].iter().all(|&port| {
                let (_, v) = json(port, "/api/v1/targets");
                v["data"]["activeTargets"]
                    .as_array()
                    .is_some_and(|t| t.len() == 1 && t[0]["health"] == "up")
            })
        },
    );
    for port in [q.http, top.http] {
        let (status, v) = json(port, "/api/v1/targets");
        assert_eq!(status, 200, "{v}");
        let t = &v["data"]["activeTargets"][0];
        assert_eq!(t["scrapeUrl"], prom_target["scrapeUrl"], "{v}");
        assert_eq!(t["scrapePool"], "demo", "{v}");
        assert_eq!(t["labels"]["job"], "demo", "{v}");
        assert_eq!(t["labels"]["cluster"], "eu1", "{v}");
        assert!(t["labels"].get("replica").is_none(), "{v}");
        assert!(t["discoveredLabels"].get("replica").is_none(), "{v}");
        assert_eq!(v["data"]["droppedTargets"], serde_json::json!([]), "{v}");
    }
    let (_, both) = json(q.http, "/api/v1/targets?dedup=false");
    assert_eq!(
        both["data"]["activeTargets"].as_array().unwrap().len(),
        2,
        "{both}"
    );
    let (_, dropped) = json(q.http, "/api/v1/targets?state=dropped");
    assert_eq!(
        dropped["data"]["activeTargets"],
        serde_json::json!([]),
        "{dropped}"
    );
    let (status, bad) = json(q.http, "/api/v1/targets?state=sleeping");
    assert_eq!(
        (status, bad["errorType"].as_str()),
        (400, Some("bad_data")),
        "{bad}"
    );

    replica_down_is_warning_or_error(&mut b, q.http, "/api/v1/targets", |d| {
        d["activeTargets"].as_array().is_some_and(|t| t.len() == 1)
    });
}

/// `--query.active-query-path`: a query in flight is in `queries.active` (here one stuck on a
/// store that never answers); after the querier is killed, the next start logs it as
/// unfinished, as Prometheus and Thanos do, and starts from an empty log.
#[test]
fn active_queries_are_logged_and_reported_after_a_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (hang, _stop) = hanging_store(&rt);
    let dir = tmp.path().join("active");
    let args = [
        format!("--endpoint={hang}"),
        format!("--query.active-query-path={}", dir.display()),
        "--query.max-concurrent=4".into(),
    ];
    let mut q = start_querier(tmp.path(), "query", &args);
    let file = dir.join("queries.active");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 1 + 4 * 1000);
    let query = "sum(rate(stuck_total{job=\"x\"}[5m]))";
    let port = q.http;
    let path = format!("/api/v1/query?query={}", enc(query));
    std::thread::spawn(move || {
        let _ = http_request("GET", &format!("http://127.0.0.1:{port}{path}"), b"");
    });
    let in_file = || {
        let b = std::fs::read(&file).unwrap();
        String::from_utf8_lossy(&b).replace('\0', "")
    };
    wait_until("the query in the log", Duration::from_secs(10), || {
        in_file().contains("stuck_total")
    });
    let logged = in_file();
    assert!(
        logged.starts_with(
            "[{\"query\":\"sum(rate(stuck_total{job=\\\"x\\\"}[5m]))\",\"timestamp_sec\":"
        ),
        "{logged}"
    );
    q._proc.guard.kill();
    drop(q);
    let q = start_querier(tmp.path(), "query-2", &args);
    let log = q._proc.log();
    assert!(
        log.contains("These queries didn't finish in prometheus' last run:")
            && log.contains("stuck_total"),
        "{log}"
    );
    assert_eq!(in_file(), "[", "a fresh log");
    // A query that finishes leaves no entry behind.
    let (status, _) = json(q.http, "/api/v1/query?query=vector(1)");
    assert_eq!(status, 200);
    assert_eq!(in_file(), "[");
}

/// The log lines of `log` that contain every one of `needles`.
fn lines_with<'a>(log: &'a str, needles: &[&str]) -> Vec<&'a str> {
    log.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .collect()
}

/// `--request.logging-config`: the store gateway logs the gRPC calls its allowlist names, with
/// a start line, and the querier the HTTP requests its allowlist names (path and port, whatever
/// the query string), with the fields Thanos' lines carry; the rest is not logged, and a bad
/// configuration fails start-up naming the flag.
#[test]
fn request_logging_follows_the_configuration() {
    const T0: i64 = 1_700_000_100_000;
    let tmp = tempfile::tempdir().unwrap();
    let store_log = "grpc:\n  options:\n    level: INFO\n    decision:\n      log_start: true\n      \
                     log_end: true\n  config:\n    - service: thanos.Store\n      method: Series\n";
    let (store, grpc) = start_store_with_blocks(
        tmp.path(),
        "eu1",
        T0,
        &[
            format!("--request.logging-config={store_log}"),
            "--log.level=debug".into(),
        ],
    );
    let http = free_port();
    let query_log = format!(
        "options: {{level: ERROR, decision: {{log_start: false, log_end: true}}}}\n\
         http:\n  options: {{level: DEBUG, decision: {{log_start: true, log_end: true}}}}\n  \
         config: [{{path: /api/v1/query, port: {http}}}]\n"
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg("query")
        .arg(format!("--http-address=127.0.0.1:{http}"))
        .arg(format!("--grpc-address=127.0.0.1:{}", free_port()))
        .arg(format!("--endpoint=127.0.0.1:{grpc}"))
        .arg(format!("--request.logging-config={query_log}"))
        .arg("--log.level=debug");
    let q = Proc::start(tmp.path(), "query", &mut cmd);
    wait_until("querier ready", Duration::from_secs(30), || {
        get(http, "/-/ready").0 == 200
    });
    let at = (T0 + 3_600_000) as f64 / 1000.0;
    let (status, v) = json(http, &format!("/api/v1/query?query=temperature&time={at}"));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["result"].as_array().unwrap().len(), 2, "{v}");
    let (status, _) = json(http, "/api/v1/query?query=sum(");
    assert_eq!(status, 400);
    let (status, _) = json(http, "/api/v1/labels");
    assert_eq!(status, 200);

    wait_until("the querier's lines", Duration::from_secs(10), || {
        lines_with(&q.log(), &["finished call", "status_code=400"]).len() == 1
    });
    let qlog = q.log();
    let finished = lines_with(&qlog, &["msg=\"finished call\"", "protocol=http"]);
    assert_eq!(finished.len(), 2, "{qlog}");
    let ok = finished[0];
    for field in [
        "level=debug",
        "http.component=server",
        &format!("http.method=\"GET /api/v1/query?query=temperature&time={at}\""),
        "http.status_code=200",
        "http.time_ms=",
        "http.remote_addr=127.0.0.1:",
        "thanos.method_name=/api/v1/query",
    ] {
        assert!(ok.contains(field), "{field} missing in {ok}");
    }
    assert_eq!(
        lines_with(&qlog, &["msg=\"started call\"", "protocol=http"]).len(),
        2,
        "{qlog}"
    );
    // Outside the allowlist: not logged. The querier's gRPC server logs errors only.
    assert!(
        lines_with(&qlog, &["/api/v1/labels", "call"]).is_empty(),
        "{qlog}"
    );
    assert!(
        lines_with(&qlog, &["/-/ready", "call"]).is_empty(),
        "{qlog}"
    );
    assert!(lines_with(&qlog, &["protocol=grpc"]).is_empty(), "{qlog}");

    let slog = store.log();
    let series = lines_with(
        &slog,
        &[
            "msg=\"finished call\"",
            "grpc.method=Series",
            "grpc.code=OK",
        ],
    );
    assert_eq!(series.len(), 1, "the one query that read the store\n{slog}");
    for field in [
        "protocol=grpc",
        "grpc.component=server",
        "grpc.service=thanos.Store",
        "peer.address=127.0.0.1:",
        "grpc.start_time=",
        "grpc.time_ms=",
    ] {
        assert!(
            series[0].contains(field),
            "{field} missing in {}",
            series[0]
        );
    }
    assert_eq!(
        lines_with(&slog, &["msg=\"started call\"", "grpc.method=Series"]).len(),
        1,
        "{slog}"
    );
    // The querier's Info probes are not in the allowlist.
    assert!(
        lines_with(&slog, &["grpc.method=Info"]).is_empty(),
        "{slog}"
    );

    // A bad configuration: start-up fails, naming the flag and the value.
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("query")
        .arg(format!("--http-address=127.0.0.1:{}", free_port()))
        .arg("--request.logging-config=options: {level: LOUD, decision: {log_end: true}}")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("--request.logging-config") && err.contains("LOUD"),
        "{err}"
    );
}

/// One span as a collector received it.
#[derive(Debug, Clone)]
struct Exported {
    service: String,
    trace: String,
    id: String,
    parent: String,
    name: String,
    attributes: Vec<(String, String)>,
}

type SpanLog = std::sync::Arc<std::sync::Mutex<Vec<Exported>>>;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Records the spans of an OTLP export request.
fn record_export(
    log: &SpanLog,
    req: opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
) {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    let text = |v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>| match v
        .as_ref()
        .and_then(|v| v.value.as_ref())
    {
        Some(V::StringValue(s)) => s.clone(),
        Some(V::IntValue(i)) => i.to_string(),
        Some(V::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    };
    let mut out = log.lock().unwrap();
    for rs in req.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .map(|kv| text(&kv.value))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                out.push(Exported {
                    service: service.clone(),
                    trace: hex(&s.trace_id),
                    id: hex(&s.span_id),
                    parent: hex(&s.parent_span_id),
                    name: s.name.clone(),
                    attributes: s
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), text(&kv.value)))
                        .collect(),
                });
            }
        }
    }
}

/// An OTLP/gRPC trace collector on a free port.
async fn grpc_collector() -> (u16, SpanLog) {
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    };
    struct Collector(SpanLog);
    #[tonic::async_trait]
    impl TraceService for Collector {
        async fn export(
            &self,
            req: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            record_export(&self.0, req.into_inner());
            Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
        }
    }
    let log = SpanLog::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let svc = TraceServiceServer::new(Collector(log.clone()));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    (port, log)
}

/// An OTLP/HTTP (protobuf) trace collector on a free port, at `/v1/traces`.
async fn http_collector() -> (u16, SpanLog) {
    use prost::Message as _;
    let log = SpanLog::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let state = log.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let state = state.clone();
            async move {
                let req = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(body)
                    .unwrap();
                record_export(&state, req);
                ([("content-type", "application/x-protobuf")], Vec::<u8>::new())
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, log)
}

/// `--tracing.config` with `type: OTLP`: a query forced into tracing is one trace across
/// both processes (the querier exporting over gRPC, the store gateway over HTTP), with
/// Thanos' span names, the store's call a child of the querier's client span, and the trace
/// id in `X-Thanos-Trace-Id`; a request the sampler drops leaves no span in either process.
#[test]
fn one_trace_spans_the_querier_and_the_store() {
    const T0: i64 = 1_700_000_100_000;
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (grpc_port, from_querier) = rt.block_on(grpc_collector());
    let (http_port, from_store) = rt.block_on(http_collector());
    let store_tracing = format!(
        "type: OTLP\nconfig:\n  client_type: http\n  endpoint: 127.0.0.1:{http_port}\n  \
         insecure: true\n  service_name: gateway\n"
    );
    let (_store, grpc) = start_store_with_blocks(
        tmp.path(),
        "eu1",
        T0,
        &[format!("--tracing.config={store_tracing}")],
    );
    // Roots are never sampled here, unless forced.
    let query_tracing = format!(
        "type: OTLP\nconfig:\n  client_type: grpc\n  endpoint: 127.0.0.1:{grpc_port}\n  \
         insecure: true\n  service_name: querier\n  sampler_type: traceidratiobased\n  \
         sampler_param: \"0\"\n"
    );
    let q = start_querier(
        tmp.path(),
        "query",
        &[
            format!("--endpoint=127.0.0.1:{grpc}"),
            format!("--tracing.config={query_tracing}"),
        ],
    );
    let at = (T0 + 3_600_000) as f64 / 1000.0;
    let url = format!(
        "http://127.0.0.1:{}/api/v1/query?query=temperature&time={at}",
        q.http
    );
    let (plain, forced) = rt.block_on(async {
        let client = reqwest::Client::new();
        let plain = client.get(&url).send().await.unwrap();
        let forced = client
            .get(&url)
            .header("X-Thanos-Force-Tracing", "true")
            .send()
            .await
            .unwrap();
        (plain, forced)
    });
    assert_eq!(plain.status(), 200);
    assert!(plain.headers().get("x-thanos-trace-id").is_none());
    assert_eq!(forced.status(), 200);
    let trace = forced
        .headers()
        .get("x-thanos-trace-id")
        .expect("a sampled request names its trace")
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(trace.len(), 32, "{trace}");

    let named = |log: &SpanLog, name: &str| -> Vec<Exported> {
        log.lock()
            .unwrap()
            .iter()
            .filter(|s| s.name == name)
            .cloned()
            .collect()
    };
    wait_until("both processes' spans", Duration::from_secs(20), || {
        !named(&from_querier, "proxy.series").is_empty()
            && !named(&from_store, "bucket_store_block_series").is_empty()
    });
    let one = |log: &SpanLog, name: &str| -> Exported {
        let all = named(log, name);
        assert_eq!(all.len(), 1, "{name}: {all:#?}");
        let s = all[0].clone();
        assert_eq!(s.trace, trace, "{s:#?}");
        s
    };
    let http = one(&from_querier, "/query HTTP[server]");
    assert_eq!(http.service, "querier");
    assert!(http.parent.chars().all(|c| c == '0') || http.parent.is_empty());
    let eval = one(&from_querier, "promql_instant_query");
    assert_eq!(eval.parent, http.id);
    assert!(
        eval.attributes
            .contains(&("query".into(), "temperature".into())),
        "{eval:#?}"
    );
    let select = one(&from_querier, "querier_select");
    assert_eq!(select.parent, eval.id);
    let proxy = one(&from_querier, "proxy.series");
    assert_eq!(proxy.parent, select.id);
    assert!(
        proxy
            .attributes
            .contains(&("store.addr".into(), format!("127.0.0.1:{grpc}"))),
        "{proxy:#?}"
    );
    let series = one(&from_store, "/thanos.Store/Series");
    assert_eq!(series.service, "gateway");
    assert_eq!(
        series.parent, proxy.id,
        "the store's call continues the querier's"
    );
    let preload = one(&from_store, "bucket_store_preload_all");
    assert_eq!(preload.parent, series.id);
    let block = one(&from_store, "bucket_store_block_series");
    assert_eq!(block.parent, preload.id);
    assert!(
        block.attributes.iter().any(|(k, _)| k == "block.id"),
        "{block:#?}"
    );
    // The unsampled request: no second evaluation or Series span anywhere.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(named(&from_querier, "promql_instant_query").len(), 1);
    assert_eq!(named(&from_store, "/thanos.Store/Series").len(), 1);
}
