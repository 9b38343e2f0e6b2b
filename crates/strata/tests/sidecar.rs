//! `strata sidecar` end to end, next to a real Prometheus 2.42 started by each test: blocks
//! shipped to FILESYSTEM and S3 (moto) buckets with Thanos' `meta.json`, the Store API checked
//! with the acceptance suite against the same blocks, the reloader's `$(POD_NAME)` reaching
//! Prometheus, and the failure modes (Prometheus unreachable or without external labels, the
//! bucket going away and coming back, local compaction left on) each seen in the log, the
//! metrics and the readiness probe, without the process dying.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use strata_model::Labels;
use strata_objstore::{Bucket, BucketMetrics};
use strata_store::testing::{Reference, StoreApiClient, run_acceptance};
use strata_testutil::moto::MotoServer;
use strata_testutil::netem::Proxy;
use strata_testutil::process::{ChildGuard, free_port, http_request, wait_until};
use strata_testutil::prometheus::{create_blocks_from_openmetrics, prometheus};
use strata_tsdb::BlockMeta;

const T0: i64 = 1_700_000_123_000;

fn openmetrics(series: usize, hours: i64) -> String {
    let mut om = String::from("# TYPE work counter\n");
    for k in 0..(hours * 240) {
        let t = T0 + k * 15_000;
        for i in 0..series {
            writeln!(
                om,
                "work_total{{job=\"j{}\",instance=\"i{i}\"}} {} {}.{:03}",
                i % 3,
                k * (i as i64 + 1),
                t / 1000,
                t % 1000
            )
            .unwrap();
        }
    }
    om.push_str("# EOF\n");
    om
}

/// Blocks made by promtool under `<dir>/made`.
fn make_blocks(dir: &Path, series: usize, hours: i64) -> Vec<PathBuf> {
    create_blocks_from_openmetrics(&openmetrics(series, hours), &dir.join("made")).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

fn get(url: &str) -> (u16, String) {
    match http_request("GET", url, b"") {
        Ok(r) => (r.status, String::from_utf8_lossy(&r.body).into_owned()),
        Err(e) => (0, format!("{e:#}")),
    }
}

struct Prom {
    _guard: ChildGuard,
    url: String,
}

/// Prometheus on `port` with `config` and `<dir>/tsdb`, `extra` flags after the defaults.
fn start_prometheus(dir: &Path, config: &Path, port: u16, extra: &[&str]) -> Prom {
    let log = std::fs::File::create(dir.join(format!("prometheus-{port}.log"))).unwrap();
    let mut cmd = Command::new(prometheus().unwrap());
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args([
            "--storage.tsdb.retention.time=100y",
            "--web.enable-lifecycle",
        ])
        .args(if extra.is_empty() {
            &[
                "--storage.tsdb.min-block-duration=2h",
                "--storage.tsdb.max-block-duration=2h",
            ][..]
        } else {
            extra
        })
        .stdout(Stdio::null())
        .stderr(log);
    let mut guard = ChildGuard::spawn("prometheus", &mut cmd).unwrap();
    let url = format!("http://127.0.0.1:{port}");
    guard
        .wait_for_http(&format!("{url}/-/healthy"), Duration::from_secs(60))
        .unwrap();
    wait_until("Prometheus ready", Duration::from_secs(60), || {
        get(&format!("{url}/-/ready")).0 == 200
    });
    Prom { _guard: guard, url }
}

fn prometheus_config(dir: &Path, ext: &[(&str, &str)]) -> PathBuf {
    let mut yaml = String::from("global:\n  scrape_interval: 1h\n");
    if !ext.is_empty() {
        yaml.push_str("  external_labels:\n");
        for (n, v) in ext {
            writeln!(yaml, "    {n}: {v:?}").unwrap();
        }
    }
    let path = dir.join("prometheus.yml");
    std::fs::write(&path, yaml).unwrap();
    path
}

struct Sidecar {
    guard: ChildGuard,
    http: String,
    grpc: String,
    log: PathBuf,
}

impl Sidecar {
    fn start(dir: &Path, name: &str, args: &[String], env: &[(&str, &str)]) -> Sidecar {
        let (http_port, grpc_port) = (free_port(), free_port());
        let log = dir.join(format!("{name}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
        cmd.arg("sidecar")
            .arg(format!("--http-address=127.0.0.1:{http_port}"))
            .arg(format!("--grpc-address=127.0.0.1:{grpc_port}"))
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut guard = ChildGuard::spawn(name, &mut cmd).unwrap();
        let http = format!("http://127.0.0.1:{http_port}");
        guard
            .wait_for_http(&format!("{http}/-/healthy"), Duration::from_secs(30))
            .unwrap_or_else(|e| {
                panic!(
                    "{e:#}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        Sidecar {
            guard,
            http,
            grpc: format!("http://127.0.0.1:{grpc_port}"),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn metric(&self, name: &str) -> Option<f64> {
        let (status, body) = get(&format!("{}/metrics", self.http));
        if status != 200 {
            return None;
        }
        body.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    }

    fn ready(&self) -> (u16, String) {
        get(&format!("{}/-/ready", self.http))
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        while self.ready().0 != 200 {
            self.guard
                .ensure_running()
                .unwrap_or_else(|e| panic!("{e:#}\n{}", self.log()));
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "not ready: {:?}\n{}",
                self.ready(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Checks every block of the bucket: a `meta.json` means every file it lists is there with
/// its size. Returns the complete blocks' metas.
async fn complete_blocks(bucket: &Bucket) -> Vec<BlockMeta> {
    let fetched = strata_block::fetch::fetch_metas(bucket, 8).await.unwrap();
    assert!(fetched.corrupted.is_empty(), "{:?}", fetched.corrupted);
    for m in fetched.metas.values() {
        let thanos = m.thanos.as_ref().expect("thanos section");
        assert!(!thanos.files.is_empty());
        for f in &thanos.files {
            let key = format!("{}/{}", m.ulid, f.rel_path);
            let attrs = bucket
                .attributes(&key)
                .await
                .unwrap_or_else(|e| panic!("block {} has meta.json but not {key}: {e}", m.ulid));
            if f.rel_path != "meta.json" {
                assert_eq!(attrs.size as i64, f.size_bytes, "{key}");
            }
        }
    }
    fetched.metas.into_values().collect()
}

/// Polls the bucket every 100 ms until it holds `n` complete blocks or `timeout` passes;
/// returns what it holds then.
async fn wait_for_blocks(bucket: &Bucket, n: usize, timeout: Duration) -> Vec<BlockMeta> {
    let start = Instant::now();
    loop {
        let shipped = complete_blocks(bucket).await;
        if shipped.len() == n || start.elapsed() >= timeout {
            return shipped;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn check_uploaded_meta(meta: &BlockMeta, local: &Path, ext: &[(&str, &str)]) {
    let thanos = meta.thanos.as_ref().unwrap();
    assert_eq!(thanos.source, "sidecar");
    assert_eq!(thanos.downsample.resolution, 0);
    let labels: Vec<(String, String)> = thanos.labels.clone().into_iter().collect();
    let want: Vec<(String, String)> = ext
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(labels, want);
    let local_meta = BlockMeta::read_from_dir(local).unwrap();
    assert_eq!(
        (meta.min_time, meta.max_time, meta.stats.num_samples),
        (
            local_meta.min_time,
            local_meta.max_time,
            local_meta.stats.num_samples
        )
    );
    for f in &thanos.files {
        if f.rel_path != "meta.json" {
            let len = std::fs::metadata(local.join(&f.rel_path)).unwrap().len();
            assert_eq!(f.size_bytes as u64, len, "{}", f.rel_path);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ships_blocks_to_a_filesystem_bucket_and_serves_the_store_api() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ext = [("cluster", "eu1"), ("replica", "0")];
    let blocks = make_blocks(dir, 12, 6);
    // The last block arrives later, while the sidecar runs, as Prometheus would write it.
    let (first, last) = blocks.split_at(blocks.len() - 1);
    for b in first {
        copy_dir(b, &dir.join("tsdb").join(b.file_name().unwrap()));
    }
    let prom = start_prometheus(dir, &prometheus_config(dir, &ext), free_port(), &[]);
    let bucket_dir = dir.join("bucket");
    let mut sidecar = Sidecar::start(
        dir,
        "sidecar",
        &[
            format!("--prometheus.url={}", prom.url),
            format!("--tsdb.path={}", dir.join("tsdb").display()),
            format!(
                "--objstore.config=type: FILESYSTEM\nconfig:\n  directory: {}",
                bucket_dir.display()
            ),
            "--shipper.sync-interval=1s".into(),
            "--hash-func=SHA256".into(),
            "--shipper.upload-concurrency=3".into(),
        ],
        &[],
    );
    sidecar.wait_ready();
    let bucket = Bucket::from_yaml(
        &format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            bucket_dir.display()
        ),
        &BucketMetrics::unregistered(),
    )
    .unwrap();
    let shipped = wait_for_blocks(&bucket, first.len(), Duration::from_secs(10)).await;
    assert_eq!(shipped.len(), first.len(), "{}", sidecar.log());
    for m in &shipped {
        let local = dir.join("tsdb").join(m.ulid.to_string());
        check_uploaded_meta(m, &local, &ext);
        // --hash-func=SHA256: every file but meta.json carries its SHA-256.
        for f in m.thanos.as_ref().unwrap().files.iter() {
            if f.rel_path != "meta.json" {
                let h = f.hash.as_ref().expect("hashed");
                let want = strata_block::transfer::sha256_file(&local.join(&f.rel_path)).unwrap();
                assert_eq!(
                    (h.func.as_str(), h.value.as_str()),
                    ("SHA256", want.as_str())
                );
            }
        }
    }

    // A new block in the data directory is shipped on the next scan.
    let new = last[0].file_name().unwrap();
    copy_dir(&last[0], &dir.join("tsdb").join(new));
    let shipped = wait_for_blocks(&bucket, blocks.len(), Duration::from_secs(10)).await;
    assert_eq!(shipped.len(), blocks.len(), "{}", sidecar.log());
    // The block's meta.json lands in the bucket before the shipper records it and counts it;
    // the counter moves last, once the state file holds the block.
    wait_until("the upload to be counted", Duration::from_secs(10), || {
        sidecar.metric("thanos_shipper_uploads_total") == Some(blocks.len() as f64)
    });
    assert_eq!(sidecar.metric("thanos_sidecar_prometheus_up"), Some(1.0));
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("tsdb/thanos.shipper.json")).unwrap())
            .unwrap();
    assert_eq!(state["version"], 1);
    assert_eq!(state["uploaded"].as_array().unwrap().len(), blocks.len());

    // The Store API answers what Prometheus holds (the first blocks: Prometheus loaded those at
    // start-up), as the acceptance suite's reference reads them.
    let mut reference = Reference::default();
    let ext_labels = Labels::from_pairs(&ext);
    for b in first {
        reference.add_block(b, ext_labels.clone()).unwrap();
    }
    let mut client = StoreApiClient::connect(sidecar.grpc.clone()).await.unwrap();
    let report = run_acceptance(&mut client, &reference)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", sidecar.log()));
    assert!(report.cases > 30, "{report:?}");

    // Through `strata query`, the sidecar's Store API answers as Prometheus itself does.
    let grpc = sidecar.grpc.trim_start_matches("http://").to_string();
    let querier = Querier::start(dir, &[format!("--endpoint={grpc}")]);
    same_answers_as_prometheus(&querier.url, &prom.url, &["cluster", "replica"]);
    sidecar.guard.ensure_running().unwrap();
}

/// `strata query` on free ports with `args`, ready and seeing at least one store.
struct Querier {
    _guard: ChildGuard,
    url: String,
}

impl Querier {
    fn start(dir: &Path, args: &[String]) -> Querier {
        let (http, grpc) = (free_port(), free_port());
        let log = dir.join(format!("query-{http}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
        cmd.arg("query")
            .arg(format!("--http-address=127.0.0.1:{http}"))
            .arg(format!("--grpc-address=127.0.0.1:{grpc}"))
            .arg("--query.replica-label=replica")
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut guard = ChildGuard::spawn("strata query", &mut cmd).unwrap();
        let url = format!("http://127.0.0.1:{http}");
        guard
            .wait_for_http(&format!("{url}/-/ready"), Duration::from_secs(30))
            .unwrap_or_else(|e| {
                panic!(
                    "{e:#}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        wait_until(
            "the querier to see a store",
            Duration::from_secs(30),
            || {
                let (status, body) = get(&format!("{url}/api/v1/stores"));
                status == 200 && body.contains("\"lastError\":null")
            },
        );
        Querier { _guard: guard, url }
    }
}

/// The `data.result` of a query answer, with `drop` labels removed from every series and the
/// series sorted: Prometheus' API does not show external labels, the querier does.
fn result_without(body: &str, drop: &[&str]) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["status"], "success", "{body}");
    let mut out: Vec<serde_json::Value> = v["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .cloned()
        .map(|mut s| {
            if let Some(m) = s["metric"].as_object_mut() {
                for d in drop {
                    m.remove(*d);
                }
            }
            s
        })
        .collect();
    out.sort_by_key(|s| s["metric"].to_string());
    out
}

/// Equal JSON, except that sample values (strings) may differ by 1e-9 relative: Prometheus
/// 2.42 sums in plain floating point, 3.x (and Strata) with Kahan-Neumaier compensation.
fn same_within(a: &[serde_json::Value], b: &[serde_json::Value]) -> bool {
    fn eq(x: &serde_json::Value, y: &serde_json::Value) -> bool {
        use serde_json::Value::*;
        match (x, y) {
            (String(p), String(q)) => match (p.parse::<f64>(), q.parse::<f64>()) {
                (Ok(u), Ok(v)) => u == v || (u - v).abs() <= 1e-9 * u.abs().max(v.abs()),
                _ => p == q,
            },
            (Array(p), Array(q)) => p.len() == q.len() && p.iter().zip(q).all(|(u, v)| eq(u, v)),
            (Object(p), Object(q)) => {
                p.len() == q.len() && p.iter().all(|(k, u)| q.get(k).is_some_and(|v| eq(u, v)))
            }
            _ => x == y,
        }
    }
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| eq(x, y))
}

/// Instant and range queries, each sent to the querier and to Prometheus, answer the same.
/// Evaluation times sit 7 s off the 15 s sample grid, so no sample lies on a range's start,
/// where Prometheus 2.42 (closed) and 3.x (open, what Strata implements) differ.
fn same_answers_as_prometheus(querier: &str, prometheus: &str, drop: &[&str]) {
    let t = |offset_s: i64| (T0 / 1000 + offset_s).to_string();
    let queries = [
        "work_total",
        "sum by (job) (work_total)",
        "rate(work_total[5m])",
        "sum by (job) (rate(work_total[5m]))",
        "max_over_time(work_total[10m])",
    ];
    for q in queries {
        let enc = q
            .replace('%', "%25")
            .replace(' ', "%20")
            .replace('[', "%5B")
            .replace(']', "%5D")
            .replace('(', "%28")
            .replace(')', "%29");
        for path in [
            format!("/api/v1/query?query={enc}&time={}", t(3600 + 7)),
            format!("/api/v1/query?query={enc}&time={}", t(3 * 3600 + 1807)),
            format!(
                "/api/v1/query_range?query={enc}&start={}&end={}&step=60",
                t(607),
                t(3 * 3600 + 607)
            ),
        ] {
            let (ours, theirs) = (
                get(&format!("{querier}{path}")),
                get(&format!("{prometheus}{path}")),
            );
            assert_eq!(ours.0, 200, "{path}: {}", ours.1);
            assert_eq!(theirs.0, 200, "{path}: {}", theirs.1);
            let (a, b) = (
                result_without(&ours.1, drop),
                result_without(&theirs.1, drop),
            );
            assert!(
                !b.is_empty(),
                "{path}: Prometheus has no data: {}",
                theirs.1
            );
            assert!(
                same_within(&a, &b),
                "{path}\nours: {a:?}\nPrometheus: {b:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ships_to_s3_and_resumes_after_a_bucket_outage() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ext = [("cluster", "s3"), ("replica", "1")];
    let blocks = make_blocks(dir, 6, 6);
    let (first, last) = blocks.split_at(blocks.len() - 1);
    for b in first {
        copy_dir(b, &dir.join("tsdb").join(b.file_name().unwrap()));
    }
    let moto = MotoServer::start().unwrap();
    moto.create_bucket("sidecar").unwrap();
    let proxy = Proxy::start(moto.endpoint().parse().unwrap(), None).unwrap();
    let yml = moto
        .objstore_yml("sidecar")
        .replace(&moto.endpoint(), &proxy.endpoint());
    let prom = start_prometheus(dir, &prometheus_config(dir, &ext), free_port(), &[]);
    let mut sidecar = Sidecar::start(
        dir,
        "sidecar",
        &[
            format!("--prometheus.url={}", prom.url),
            format!("--tsdb.path={}", dir.join("tsdb").display()),
            format!("--objstore.config={yml}"),
            "--shipper.sync-interval=1s".into(),
        ],
        &[],
    );
    sidecar.wait_ready();
    let bucket = Bucket::from_yaml(
        &moto.objstore_yml("sidecar"),
        &BucketMetrics::unregistered(),
    )
    .unwrap();
    let shipped = wait_for_blocks(&bucket, first.len(), Duration::from_secs(20)).await;
    assert_eq!(shipped.len(), first.len(), "{}", sidecar.log());
    for m in &shipped {
        check_uploaded_meta(m, &dir.join("tsdb").join(m.ulid.to_string()), &ext);
    }

    // Outage: the next block cannot go up; the sidecar says so and keeps running.
    proxy.set_up(false);
    let new = last[0].file_name().unwrap().to_string_lossy().to_string();
    copy_dir(&last[0], &dir.join("tsdb").join(&new));
    // The upload failure is counted during the shipper's iteration and the failed iteration
    // when it ends: both are waited for (reading the second right after the first raced).
    wait_until(
        "an upload failure and a failed iteration to be counted",
        Duration::from_secs(60),
        || {
            let counted = |m: &str| sidecar.metric(m).unwrap_or(0.0) >= 1.0;
            counted("thanos_shipper_upload_failures_total")
                && counted("thanos_shipper_dir_sync_failures_total")
        },
    );
    let log = sidecar.log();
    assert!(
        log.contains("shipper iteration failed") && log.contains(&new),
        "the failure names the block:\n{log}"
    );
    sidecar.guard.ensure_running().unwrap();
    assert_eq!(
        sidecar.ready().0,
        200,
        "Prometheus is fine, so the sidecar stays ready"
    );

    // The bucket returns: the upload resumes by itself.
    proxy.set_up(true);
    let shipped = wait_for_blocks(&bucket, blocks.len(), Duration::from_secs(20)).await;
    assert_eq!(shipped.len(), blocks.len(), "{}", sidecar.log());
    wait_until("the upload to be counted", Duration::from_secs(10), || {
        sidecar.metric("thanos_shipper_uploads_total") == Some(blocks.len() as f64)
    });
    drop(moto);
}

/// The blocks a sidecar's log says it started uploading (`msg="upload new block" block=…`).
fn upload_starts(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("msg=\"upload new block\""))
        .filter_map(|l| l.split("block=").nth(1))
        .map(|s| s.split_whitespace().next().unwrap_or_default().to_string())
        .collect()
}

/// SIGKILL in the middle of uploads, again and again: the bucket never shows a block without
/// all its files, a block once complete is never uploaded again, and every block ends up in
/// the bucket exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_upload_never_leaves_a_broken_block_and_uploads_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ext = [("cluster", "crash"), ("replica", "0")];
    let blocks = make_blocks(dir, 1500, 10);
    for b in &blocks {
        copy_dir(b, &dir.join("tsdb").join(b.file_name().unwrap()));
    }
    let moto = MotoServer::start().unwrap();
    moto.create_bucket("crash").unwrap();
    let bucket =
        Bucket::from_yaml(&moto.objstore_yml("crash"), &BucketMetrics::unregistered()).unwrap();
    // The sidecar reaches the bucket over a slow link, so that an upload takes long enough
    // for a kill to land inside it on any machine.
    let link = Proxy::start(moto.endpoint().parse().unwrap(), Some(512 << 10)).unwrap();
    let yml = moto
        .objstore_yml("crash")
        .replace(&moto.endpoint(), &link.endpoint());
    let prom = start_prometheus(dir, &prometheus_config(dir, &ext), free_port(), &[]);
    let args = vec![
        format!("--prometheus.url={}", prom.url),
        format!("--tsdb.path={}", dir.join("tsdb").display()),
        format!("--objstore.config={yml}"),
        "--shipper.sync-interval=1s".to_string(),
    ];

    let mut complete: std::collections::BTreeSet<String> = Default::default();
    let (mut interrupted, mut finished) = (0, 0);
    for trial in 0..2 * blocks.len() + 2 {
        let mut s = Sidecar::start(dir, &format!("sidecar-{trial}"), &args, &[]);
        // Odd trials kill as the first upload of the run starts (most likely mid-upload);
        // even ones as the second starts, so the first one is complete and every other
        // trial makes progress even when uploads are fast.
        let kill_at = if trial % 2 == 1 { 1 } else { 2 };
        let start = Instant::now();
        loop {
            let log = s.log();
            if upload_starts(&log).len() >= kill_at || log.contains("shipper iteration done") {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no upload started:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        s.guard.kill();
        let log = s.log();
        // An upload that started and never logged its end was cut by the kill.
        let (done, cut): (Vec<String>, Vec<String>) = upload_starts(&log)
            .into_iter()
            .partition(|id| log.contains(&format!("msg=\"uploaded block\" block={id}")));
        interrupted += cut.len();
        finished += done.len();
        for id in upload_starts(&log) {
            assert!(
                !complete.contains(&id),
                "trial {trial}: block {id} was complete in the bucket and was uploaded again:\n{log}"
            );
        }
        let now: std::collections::BTreeSet<String> = complete_blocks(&bucket)
            .await
            .iter()
            .map(|m| m.ulid.to_string())
            .collect();
        assert!(now.is_superset(&complete), "a complete block disappeared");
        complete = now;
        if complete.len() == blocks.len() {
            break;
        }
    }
    // Both outcomes were seen (which also shows the log lines are matched as intended).
    assert!(finished > 0, "no upload finished between kills");
    assert!(
        interrupted > 0,
        "no kill landed inside an upload; the test did not exercise what it claims"
    );

    // A last, undisturbed run finishes the job, uploading only what was not complete.
    let mut s = Sidecar::start(dir, "sidecar-final", &args, &[]);
    s.wait_ready();
    let missing = blocks.len() - complete.len();
    wait_until("the final run to finish", Duration::from_secs(60), || {
        s.log().contains("shipper iteration done")
            || s.metric("thanos_shipper_dir_syncs_total").unwrap_or(0.0) >= 1.0
    });
    let log = s.log();
    for id in upload_starts(&log) {
        assert!(!complete.contains(&id), "block {id} uploaded twice:\n{log}");
    }
    assert_eq!(
        s.metric("thanos_shipper_uploads_total"),
        Some(missing as f64),
        "{log}"
    );
    let all = complete_blocks(&bucket).await;
    assert_eq!(all.len(), blocks.len());
    for m in &all {
        check_uploaded_meta(m, &dir.join("tsdb").join(m.ulid.to_string()), &ext);
    }
    assert_eq!(
        strata_block::fetch::list_block_ids(&bucket)
            .await
            .unwrap()
            .len(),
        blocks.len(),
        "no partial upload is left behind"
    );
    drop(link);
    drop(moto);
}

/// The reloader renders `$(POD_NAME)` into the file Prometheus reads, Prometheus reloads and
/// shows the value, the sidecar picks up the changed external labels; an unset variable is a
/// clear error that leaves Prometheus' configuration alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloader_substitutes_pod_name_and_prometheus_shows_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let template = dir.join("prometheus.yml.tmpl");
    let rendered = dir.join("prometheus.yml");
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        &template,
        "global:\n  external_labels:\n    cluster: eu1\n    replica: $(POD_NAME)\n",
    )
    .unwrap();
    let port = free_port();
    let mut sidecar = Sidecar::start(
        dir,
        "sidecar",
        &[
            format!("--prometheus.url=http://127.0.0.1:{port}"),
            format!("--reloader.config-file={}", template.display()),
            format!("--reloader.config-envsubst-file={}", rendered.display()),
            format!("--reloader.rule-dir={}", rules.display()),
            "--reloader.retry-interval=200ms".into(),
            "--reloader.watch-interval=30s".into(),
            "--prometheus.get_config_interval=500ms".into(),
        ],
        &[("POD_NAME", "prom-0")],
    );
    // The sidecar renders the file before Prometheus exists (Prometheus needs it to start).
    wait_until("the rendered config", Duration::from_secs(10), || {
        std::fs::read_to_string(&rendered).is_ok_and(|t| t.contains("replica: prom-0"))
    });
    let prom = start_prometheus(dir, &rendered, port, &[]);
    let config = || get(&format!("{}/api/v1/status/config", prom.url)).1;
    assert!(config().contains("replica: prom-0"), "{}", config());
    sidecar.wait_ready();
    let info = || async {
        let mut c = StoreApiClient::connect(sidecar.grpc.clone()).await.unwrap();
        c.info
            .info(strata_storepb::thanos::info::InfoRequest {})
            .await
            .unwrap()
            .into_inner()
            .label_sets
    };
    let sets = info().await;
    assert_eq!(format!("{sets:?}").matches("prom-0").count(), 1, "{sets:?}");

    // A change to the template reaches Prometheus through a reload.
    std::fs::write(
        &template,
        "global:\n  external_labels:\n    cluster: eu1\n    replica: $(POD_NAME)-b\n",
    )
    .unwrap();
    wait_until(
        "Prometheus to show the new value",
        Duration::from_secs(20),
        || config().contains("replica: prom-0-b"),
    );
    assert!(
        sidecar
            .metric("thanos_sidecar_reloader_reloads_total")
            .unwrap()
            >= 1.0
    );
    assert_eq!(
        sidecar.metric("thanos_sidecar_reloader_last_reload_successful"),
        Some(1.0)
    );
    // …and the sidecar serves the new external labels after its next heartbeat.
    let start = Instant::now();
    loop {
        let sets = info().await;
        if format!("{sets:?}").contains("prom-0-b") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{sets:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A rule file change is a reload too.
    let reloads = sidecar
        .metric("thanos_sidecar_reloader_reloads_total")
        .unwrap();
    std::fs::write(rules.join("a.yml"), "groups: []\n").unwrap();
    wait_until(
        "a reload for the rule change",
        Duration::from_secs(20),
        || {
            sidecar
                .metric("thanos_sidecar_reloader_reloads_total")
                .unwrap_or(0.0)
                > reloads
        },
    );

    // An unset variable: a clear error, the rendered file and Prometheus untouched.
    std::fs::write(
        &template,
        "global:\n  external_labels:\n    cluster: $(NO_SUCH_VARIABLE)\n    replica: x\n",
    )
    .unwrap();
    wait_until(
        "the failed apply to be counted",
        Duration::from_secs(20),
        || {
            sidecar
                .metric("thanos_sidecar_reloader_config_apply_operations_failed_total")
                .unwrap_or(0.0)
                >= 1.0
        },
    );
    assert!(
        sidecar
            .log()
            .contains("found reference to unset environment variable \\\"NO_SUCH_VARIABLE\\\""),
        "{}",
        sidecar.log()
    );
    assert!(
        std::fs::read_to_string(&rendered)
            .unwrap()
            .contains("prom-0-b")
    );
    assert!(config().contains("replica: prom-0-b"));
    sidecar.guard.ensure_running().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_prometheus_is_reported_and_recovered_from() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = free_port();
    let mut sidecar = Sidecar::start(
        dir,
        "sidecar",
        &[format!("--prometheus.url=http://127.0.0.1:{port}")],
        &[],
    );
    wait_until("the failure to be logged", Duration::from_secs(20), || {
        sidecar.log().contains("Is Prometheus running? Retrying")
    });
    let log = sidecar.log();
    assert!(
        log.contains(&format!("127.0.0.1:{port}")),
        "the log names the URL:\n{log}"
    );
    assert_eq!(sidecar.metric("thanos_sidecar_prometheus_up"), Some(0.0));
    let (status, body) = sidecar.ready();
    assert_eq!(status, 503);
    assert!(body.contains("Prometheus is unreachable"), "{body}");
    // The Store API says why it cannot answer.
    let mut c = StoreApiClient::connect(sidecar.grpc.clone()).await.unwrap();
    let err = c.series(Default::default()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    assert!(
        err.message().contains("external labels are not known yet"),
        "{err}"
    );
    sidecar.guard.ensure_running().unwrap();

    // Prometheus comes up: the sidecar becomes ready by itself.
    let _prom = start_prometheus(
        dir,
        &prometheus_config(dir, &[("cluster", "late")]),
        port,
        &[],
    );
    sidecar.wait_ready();
    assert_eq!(sidecar.metric("thanos_sidecar_prometheus_up"), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_without_external_labels_is_reported_then_refused_at_the_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let prom = start_prometheus(dir, &prometheus_config(dir, &[]), free_port(), &[]);
    let mut sidecar = Sidecar::start(
        dir,
        "sidecar",
        &[
            format!("--prometheus.url={}", prom.url),
            "--prometheus.ready_timeout=6s".into(),
        ],
        &[],
    );
    wait_until(
        "the missing labels to be logged",
        Duration::from_secs(20),
        || {
            sidecar
                .log()
                .contains("no external labels configured on Prometheus server")
        },
    );
    assert_eq!(sidecar.metric("thanos_sidecar_prometheus_up"), Some(1.0));
    assert_eq!(
        sidecar.metric("strata_sidecar_prometheus_external_labels_missing"),
        Some(1.0)
    );
    let (status, body) = sidecar.ready();
    assert_eq!(status, 503);
    assert!(body.contains("no external labels configured"), "{body}");
    sidecar.guard.ensure_running().unwrap();
    // After --prometheus.ready_timeout: a clear start-up error.
    let start = Instant::now();
    let status = loop {
        if let Some(s) = sidecar.guard.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "still running");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(1));
    let log = sidecar.log();
    assert!(
        log.contains(
            "Prometheus still had no external labels after waiting 6s (--prometheus.ready_timeout)"
        ),
        "{log}"
    );
    assert!(log.contains("level=error"), "{log}");
}

#[test]
fn local_compaction_on_prometheus_refuses_shipping() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let prom = start_prometheus(
        dir,
        &prometheus_config(dir, &[("cluster", "eu1")]),
        free_port(),
        &[
            "--storage.tsdb.min-block-duration=2h",
            "--storage.tsdb.max-block-duration=1d",
        ],
    );
    let bucket = dir.join("bucket");
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("sidecar")
        .arg(format!("--prometheus.url={}", prom.url))
        .arg(format!("--tsdb.path={}", dir.join("tsdb").display()))
        .arg(format!(
            "--objstore.config=type: FILESYSTEM\nconfig:\n  directory: {}",
            bucket.display()
        ))
        .args(["--http-address=127.0.0.1:0", "--grpc-address=127.0.0.1:0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("TSDB Max time is 1d and Min time is 2h")
            && err.contains("--storage.tsdb.min-block-duration"),
        "{err}"
    );
}
