//! Our WAL against real Prometheus 2.42, both ways:
//!
//! 1. A WAL written by [`Wal`] (compressed, and once uncompressed) in `<dir>/wal` is replayed by
//!    Prometheus into its head: `/api/v1/query_range` and raw range queries return exactly our
//!    samples. The compressed one has its first segment replaced by our checkpoint.
//! 2. Prometheus scrapes a tiny target served by this test for a few seconds and is killed with
//!    SIGKILL, so that its WAL is the only copy of the data: our reader finds in it the series
//!    and samples Prometheus reported before it died.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strata_model::Labels;
use strata_testutil::process::{LoggedProcess, free_port, http_request};
use strata_testutil::prometheus::prometheus;
use strata_tsdb::wal::record::{self, Record, RefSample, RefSeries};
use strata_tsdb::wal::{Reader, Wal, WalError, WalOptions, checkpoint};

const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
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

/// A running Prometheus over `data_dir`, scraping whatever `scrape` configures.
struct Prom {
    proc: LoggedProcess,
    url: String,
}

fn start_prometheus(dir: &Path, data_dir: &Path, scrape: &str, compress: bool) -> Prom {
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, format!("global:\n  scrape_interval: 1h\n{scrape}")).unwrap();
    let port = free_port();
    let mut cmd = Command::new(prometheus().unwrap());
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data_dir.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        // On by default in Thanos and Prometheus 2.42; explicit either way.
        .arg(if compress {
            "--storage.tsdb.wal-compression"
        } else {
            "--no-storage.tsdb.wal-compression"
        });
    let mut proc = LoggedProcess::start(dir, "prometheus", &mut cmd);
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    // Ready only once the WAL has been replayed.
    while http_request("GET", &format!("{url}/-/ready"), b"")
        .map(|r| r.status)
        .unwrap_or(0)
        != 200
    {
        if let Ok(Some(st)) = proc.guard.try_wait() {
            panic!("prometheus exited with {st}:\n{}", proc.log());
        }
        assert!(
            Instant::now() < deadline,
            "prometheus never became ready:\n{}",
            proc.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Prom { proc, url }
}

fn api(prom: &Prom, path_and_query: &str) -> serde_json::Value {
    let url = format!("{}{path_and_query}", prom.url);
    let resp = http_request("GET", &url, b"").unwrap();
    assert_eq!(
        resp.status,
        200,
        "{url}: {}",
        String::from_utf8_lossy(&resp.body)
    );
    serde_json::from_slice(&resp.body).unwrap()
}

/// Series → [(t ms, value)] from a matrix result.
fn matrix(v: &serde_json::Value) -> BTreeMap<Labels, Vec<(i64, f64)>> {
    let mut out = BTreeMap::new();
    for s in v["data"]["result"].as_array().expect("a matrix") {
        let labels: Vec<(String, String)> = s["metric"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        let values = s["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                let v: f64 = p[1].as_str().unwrap().parse().unwrap();
                (t, v)
            })
            .collect();
        out.insert(Labels::from_pairs(&labels), values);
    }
    out
}

fn log_records(w: &mut Wal, recs: &[Record]) {
    let bufs: Vec<Vec<u8>> = recs
        .iter()
        .map(|r| {
            let mut b = Vec::new();
            assert!(record::encode(r, &mut b));
            b
        })
        .collect();
    w.log(&bufs).unwrap();
}

fn prometheus_replays_our_wal(compress: bool) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let wal_dir = data.join("wal");
    // Aligned to the query step so that every step lands on a sample.
    let t0 = (now_ms() - 20 * 60_000) / 15_000 * 15_000;
    let n = 60i64; // 15 minutes at 15 s
    let series: Vec<RefSeries> = (1..=3u64)
        .map(|i| RefSeries {
            series_ref: i,
            labels: Labels::from_pairs(&[
                ("__name__", "strata_wal_test"),
                ("i", &i.to_string()),
                ("job", "rule"),
            ]),
        })
        .collect();
    let value = |i: u64, k: i64| (k as f64) * 1.25 + i as f64 / 3.0;
    let mut w = Wal::open(
        &wal_dir,
        WalOptions {
            compress,
            ..WalOptions::default()
        },
    )
    .unwrap();
    log_records(&mut w, &[Record::Series(series[..2].to_vec())]);
    for k in 0..n {
        if k == n / 2 {
            // A new series mid-way, in a new segment.
            w.next_segment().unwrap();
            log_records(&mut w, &[Record::Series(series[2..].to_vec())]);
        }
        let samples: Vec<RefSample> = series
            .iter()
            .filter(|s| s.series_ref != 3 || k >= n / 2)
            .map(|s| RefSample {
                series_ref: s.series_ref,
                t: t0 + k * 15_000,
                v: value(s.series_ref, k),
            })
            .collect();
        log_records(&mut w, &[Record::Samples(samples)]);
    }
    w.close().unwrap();
    if compress {
        // Segment 0 (series 1 and 2, the first half of the samples) into a checkpoint, then
        // gone: Prometheus must replay checkpoint.00000000 and continue with segment 1.
        let st = checkpoint(&wal_dir, 0..=0, |_| true, i64::MIN, compress).unwrap();
        assert_eq!((st.total_series, st.dropped_series), (2, 0));
        let mut w = Wal::open(&wal_dir, WalOptions::default()).unwrap();
        w.truncate(1).unwrap();
        w.close().unwrap();
        assert!(!wal_dir.join("00000000").exists());
        assert!(wal_dir.join("checkpoint.00000000").is_dir());
    }

    let prom = start_prometheus(dir.path(), &data, "", true);
    let end = t0 + (n - 1) * 15_000;
    let want = |i: u64| -> Vec<(i64, f64)> {
        let from = if i == 3 { n / 2 } else { 0 };
        (from..n).map(|k| (t0 + k * 15_000, value(i, k))).collect()
    };
    // Every step of the range query lands on one of our samples.
    let got = matrix(&api(
        &prom,
        &format!(
            "/api/v1/query_range?query={}&start={}&end={}&step=15",
            encode("strata_wal_test"),
            t0 / 1000,
            end / 1000
        ),
    ));
    // Raw samples, exactly as stored.
    let raw = matrix(&api(
        &prom,
        &format!(
            "/api/v1/query?query={}&time={}",
            encode("strata_wal_test[1h]"),
            end as f64 / 1000.0
        ),
    ));
    for got in [got, raw] {
        assert_eq!(got.len(), 3, "{got:?}\n{}", prom.proc.log());
        for s in &series {
            let key = got
                .keys()
                .find(|k| k.get("i") == s.labels.get("i"))
                .expect("series returned");
            assert_eq!(
                got[key],
                want(s.series_ref),
                "series {:?} (compress={compress})",
                s.labels
            );
        }
    }
    let log = prom.proc.log();
    assert!(
        !log.contains("orrupt") && !log.contains("epair"),
        "Prometheus found something wrong with our WAL:\n{log}"
    );
    drop(prom);
}

#[test]
fn prometheus_replays_our_compressed_wal() {
    prometheus_replays_our_wal(true);
}

#[test]
fn prometheus_replays_our_uncompressed_wal() {
    prometheus_replays_our_wal(false);
}

/// Serves `/metrics` with a counter that grows on every scrape, until `stop`.
fn serve_target(listener: TcpListener, stop: Arc<AtomicBool>, scrapes: Arc<AtomicU64>) {
    listener.set_nonblocking(true).unwrap();
    while !stop.load(Ordering::Relaxed) {
        let (mut conn, _) = match listener.accept() {
            Ok(c) => c,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        conn.set_nonblocking(false).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 4096];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => req.extend_from_slice(&buf[..k]),
            }
        }
        let k = scrapes.fetch_add(1, Ordering::Relaxed) + 1;
        let body = format!(
            "# TYPE strata_target_total counter\nstrata_target_total{{path=\"/a\"}} {}\n\
             strata_target_total{{path=\"/b\"}} {}\nstrata_target_gauge 0.1\n",
            k * 3,
            k as f64 * 0.5
        );
        let _ = conn.write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
}

#[test]
fn we_read_the_compressed_wal_prometheus_wrote() {
    we_read_the_wal_prometheus_wrote(true);
}

#[test]
fn we_read_the_uncompressed_wal_prometheus_wrote() {
    we_read_the_wal_prometheus_wrote(false);
}

fn we_read_the_wal_prometheus_wrote(compress: bool) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let scrapes = Arc::new(AtomicU64::new(0));
    let server = {
        let (stop, scrapes) = (stop.clone(), scrapes.clone());
        std::thread::spawn(move || serve_target(listener, stop, scrapes))
    };
    let mut prom = start_prometheus(
        dir.path(),
        &data,
        &format!(
            "scrape_configs:\n  - job_name: t\n    scrape_interval: 1s\n    static_configs:\n      \
             - targets: ['{target}']\n"
        ),
        compress,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while scrapes.load(Ordering::Relaxed) < 5 {
        assert!(
            Instant::now() < deadline,
            "no scrapes:\n{}",
            prom.proc.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Samples up to two seconds ago are committed to the WAL by the time we ask.
    let asked_at = now_ms() - 2000;
    let reported = matrix(&api(
        &prom,
        &format!(
            "/api/v1/query?query={}&time={}",
            encode("{job=\"t\"}[10m]"),
            asked_at as f64 / 1000.0
        ),
    ));
    // SIGKILL: nothing is flushed on the way out, the WAL is all there is.
    prom.proc.guard.kill();
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();

    assert!(
        reported.len() >= 3 && reported.values().all(|v| !v.is_empty()),
        "{reported:?}"
    );
    let mut reader = Reader::replay(&data.join("wal")).unwrap();
    let mut labels: BTreeMap<u64, Labels> = BTreeMap::new();
    let mut samples: BTreeMap<u64, Vec<(i64, f64)>> = BTreeMap::new();
    let mut records = 0;
    loop {
        let rec = match reader.next() {
            Ok(Some(r)) => record::decode(r).unwrap(),
            Ok(None) => break,
            // A kill can interrupt a write; what precedes it is what we compare.
            Err(e @ WalError::TornTail(_)) => {
                eprintln!("{e}");
                break;
            }
            Err(e) => panic!("{e}"),
        };
        records += 1;
        match rec {
            Record::Series(s) => {
                for s in s {
                    labels.insert(s.series_ref, s.labels);
                }
            }
            Record::Samples(s) => {
                for s in s {
                    if s.v.to_bits() != STALE_NAN {
                        samples.entry(s.series_ref).or_default().push((s.t, s.v));
                    }
                }
            }
            _ => {}
        }
    }
    assert!(records > 0);
    assert_eq!(
        snappy_fragments(&data.join("wal")) > 0,
        compress,
        "Snappy-compressed records in Prometheus' WAL (compression {compress})"
    );
    let by_labels: BTreeMap<&Labels, u64> = labels.iter().map(|(r, l)| (l, *r)).collect();
    for (l, want) in &reported {
        let r = by_labels
            .get(l)
            .unwrap_or_else(|| panic!("series {l:?} not in the WAL: {labels:?}"));
        let got: Vec<(i64, f64)> = samples
            .get(r)
            .map(|v| v.iter().copied().filter(|(t, _)| *t <= asked_at).collect())
            .unwrap_or_default();
        assert_eq!(&got, want, "series {l:?}");
    }
    assert!(
        by_labels
            .keys()
            .any(|l| l.get("__name__") == Some("strata_target_total")),
        "{labels:?}"
    );
}

/// Number of Snappy-flagged fragments in the segments of `wal_dir` (a walk of the headers).
fn snappy_fragments(wal_dir: &Path) -> usize {
    const PAGE: usize = strata_tsdb::wal::PAGE_SIZE;
    const HEADER: usize = strata_tsdb::wal::HEADER_SIZE;
    let mut n = 0;
    for i in strata_tsdb::wal::list_segments(wal_dir).unwrap() {
        let seg = std::fs::read(strata_tsdb::wal::segment_path(wal_dir, i)).unwrap();
        let mut pos = 0;
        while pos + HEADER <= seg.len() {
            let in_page = PAGE - pos % PAGE;
            if in_page < HEADER || seg[pos] == 0 {
                pos += in_page;
                continue;
            }
            n += usize::from(seg[pos] & 0x08 != 0);
            pos += HEADER + u16::from_be_bytes([seg[pos + 1], seg[pos + 2]]) as usize;
        }
    }
    n
}
