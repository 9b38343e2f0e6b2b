//! What the compactor writes answers queries as its inputs did (issue 7's acceptance), through
//! the real stack: `strata compact`, `strata store`, `strata query`.
//!
//! Blocks are made by real Prometheus (`promtool tsdb create-blocks-from openmetrics`).
//!
//! 1. Compaction (2h blocks of two HA replicas, merged vertically with penalty deduplication
//!    and horizontally into 8h) changes no query answer, byte for byte.
//! 2. Downsampled data answers like raw data within stated bounds: 56 hours of 2h blocks are
//!    compacted into a 48h block, which gets its 5m-resolution twin, and the same range queries with `max_source_resolution=0s` (raw)
//!    and `=5m` (the aggregates) are compared:
//!
//!    - `max_over_time`, `min_over_time` and `sum_over_time` of `g[1h]` at 5m resolution
//!      combine the MAX / MIN / SUM aggregates of the 5-minute windows stamped inside the
//!      hour (a window `[k·5m, (k+1)·5m)` is stamped at its end). So each answer lies between
//!      the raw answer over the windows wholly inside `(t-1h, t]` and the raw answer over
//!      `(t-1h-5m, t]`: exact bounds, checked at every step.
//!    - `sum(rate(c[1h]))` and `sum(increase(c[1h]))` run over the counter aggregate (the
//!      last raw value of each window, resets accounted for): the same increase, extrapolated
//!      from 12 points instead of 240, so only the extrapolation at the window's edges
//!      differs. Tolerance 1% relative at every step; measured 0.4%.
//!    - `avg(avg_over_time(g[1h]))` reads SUM and COUNT (the window averages): the windows
//!      cover the hour shifted by less than 5 minutes. Tolerance 1%; measured 0.04%.
//!    - `count_over_time(g[1h])` returns 12 per hour at 5m resolution, as Thanos does (the
//!      count of aggregated points), against 240 raw samples: proof that the aggregates, not
//!      the raw samples, were read.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use strata_model::Labels;
use strata_testutil::process::{ChildGuard, free_port, http_request};

/// Start of the data (ms). Samples are 123 ms off whole seconds.
const T0: i64 = 1_700_000_000_123;
/// 48 hours (ms): the 2d compaction range.
const H48: i64 = 48 * 3_600_000;
const STEP_MS: i64 = 15_000;
/// The 5m resolution (ms).
const RES: i64 = 300_000;

fn get_json(url: &str) -> serde_json::Value {
    let r = http_request("GET", url, b"").unwrap_or_else(|e| panic!("{url}: {e:#}"));
    let body = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.status, 200, "{url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"))
}

/// Prometheus' own blocks for `series`, made by `promtool tsdb create-blocks-from
/// openmetrics` in `dir` (2h blocks, aligned as Prometheus aligns them).
fn promtool_blocks(dir: &Path, series: &[(Labels, Vec<(i64, f64)>)]) {
    use std::fmt::Write as _;
    let mut om = String::new();
    let mut family = "";
    for (labels, samples) in series {
        let name = labels.get("__name__").unwrap();
        if name != family {
            family = name;
            match name.strip_suffix("_total") {
                Some(base) => writeln!(om, "# TYPE {base} counter").unwrap(),
                None => writeln!(om, "# TYPE {name} gauge").unwrap(),
            }
        }
        let i = labels.get("i").unwrap();
        for (t, v) in samples {
            writeln!(om, "{name}{{i=\"{i}\"}} {v:?} {}.{:03}", t / 1000, t % 1000).unwrap();
        }
    }
    om.push_str("# EOF\n");
    strata_testutil::prometheus::create_blocks_from_openmetrics(&om, dir).unwrap();
}

/// A counter (one with a reset) and a gauge per `i`, every 15 s over `[start, end)`, 123 ms
/// off whole seconds; sorted by labels.
fn demo_series(start: i64, end: i64) -> Vec<(Labels, Vec<(i64, f64)>)> {
    let ts: Vec<i64> = (0..)
        .map(|k| start + 123 + k * STEP_MS)
        .take_while(|t| *t < end)
        .collect();
    let mut series = Vec::new();
    for i in 0..8u64 {
        let mut v = 0.0;
        let c: Vec<(i64, f64)> = ts
            .iter()
            .enumerate()
            .map(|(k, &t)| {
                if i == 3 && k == ts.len() / 3 {
                    v = 0.0; // a counter reset
                }
                v += ((k as u64 * 7 + i * 13) % 11) as f64 + i as f64;
                (t, v)
            })
            .collect();
        series.push((
            Labels::from_pairs(&[("__name__", "c_total"), ("i", &i.to_string())]),
            c,
        ));
        let g: Vec<(i64, f64)> = ts
            .iter()
            .enumerate()
            .map(|(k, &t)| {
                let noise = ((k as u64 * 2_654_435_761 + i * 97) % 1000) as f64 / 100.0;
                (t, 50.0 + 20.0 * (k as f64 / 300.0 + i as f64).sin() + noise)
            })
            .collect();
        series.push((
            Labels::from_pairs(&[("__name__", "g"), ("i", &i.to_string())]),
            g,
        ));
    }
    series.sort_by(|a, b| a.0.cmp(&b.0));
    series
}

fn strata() -> Command {
    Command::new(env!("CARGO_BIN_EXE_strata"))
}

fn run_ok(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Resolutions of the blocks in the bucket directory.
fn resolutions(bucket: &Path) -> Vec<i64> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(bucket).unwrap() {
        let meta = e.unwrap().path().join("meta.json");
        if let Ok(text) = std::fs::read_to_string(&meta) {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            if !meta.with_file_name("deletion-mark.json").exists() {
                out.push(v["thanos"]["downsample"]["resolution"].as_i64().unwrap());
            }
        }
    }
    out.sort();
    out
}

/// `(timestamp ms, value)` per series label `i` (or one series), from a matrix answer.
fn matrix(v: &serde_json::Value) -> Vec<(String, Vec<(i64, f64)>)> {
    assert_eq!(v["status"], "success", "{v}");
    let mut out: Vec<(String, Vec<(i64, f64)>)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let key = s["metric"].to_string();
            let pts = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        (p[0].as_f64().unwrap() * 1000.0).round() as i64,
                        p[1].as_str().unwrap().parse::<f64>().unwrap(),
                    )
                })
                .collect();
            (key, pts)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn raw_sum(samples: &[(i64, f64)], from_excl: i64, to_incl: i64) -> f64 {
    samples
        .iter()
        .filter(|(t, _)| *t > from_excl && *t <= to_incl)
        .map(|p| p.1)
        .sum()
}

fn negate(samples: &[(i64, f64)]) -> Vec<(i64, f64)> {
    samples.iter().map(|&(t, v)| (t, -v)).collect()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    a == b || (a - b).abs() <= rel * a.abs().max(b.abs())
}

fn r_len(m: &[(String, Vec<(i64, f64)>)]) -> usize {
    m.first().map_or(0, |s| s.1.len())
}

/// The raw samples of series `name` whose label `i` is the one in `key` (a JSON metric).
fn samples_of<'a>(
    series: &'a [(Labels, Vec<(i64, f64)>)],
    name: &str,
    key: &str,
) -> &'a [(i64, f64)] {
    let metric: serde_json::Value = serde_json::from_str(key).unwrap();
    let i = metric["i"].as_str().unwrap();
    &series
        .iter()
        .find(|(l, _)| l.get("__name__") == Some(name) && l.get("i") == Some(i))
        .unwrap()
        .1
}

fn raw_max(samples: &[(i64, f64)], from_excl: i64, to_incl: i64) -> f64 {
    samples
        .iter()
        .filter(|(t, _)| *t > from_excl && *t <= to_incl)
        .map(|p| p.1)
        .fold(f64::NEG_INFINITY, f64::max)
}

/// `strata store` over the bucket and `strata query` over it, on free ports.
struct Stack {
    store: ChildGuard,
    query: ChildGuard,
    base: String,
}

impl Stack {
    fn start(dir: &Path, objstore: &str, name: &str, query_args: &[&str]) -> Stack {
        let (store_http, store_grpc) = (free_port(), free_port());
        let mut store = ChildGuard::spawn(
            "strata store",
            strata()
                .args(["store", objstore])
                .arg(format!("--data-dir={}", dir.join(name).display()))
                .arg(format!("--http-address=127.0.0.1:{store_http}"))
                .arg(format!("--grpc-address=127.0.0.1:{store_grpc}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .unwrap();
        store
            .wait_for_http(
                &format!("http://127.0.0.1:{store_http}/-/ready"),
                Duration::from_secs(60),
            )
            .unwrap();
        let (http, grpc) = (free_port(), free_port());
        let mut query = ChildGuard::spawn(
            "strata query",
            strata()
                .arg("query")
                .arg(format!("--endpoint=127.0.0.1:{store_grpc}"))
                .arg(format!("--http-address=127.0.0.1:{http}"))
                .arg(format!("--grpc-address=127.0.0.1:{grpc}"))
                .args(query_args)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .unwrap();
        let base = format!("http://127.0.0.1:{http}");
        query
            .wait_for_http(&format!("{base}/-/ready"), Duration::from_secs(60))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !get_json(&format!("{base}/api/v1/stores"))
            .to_string()
            .contains("\"lastError\":null")
        {
            assert!(Instant::now() < deadline, "the querier never saw the store");
            std::thread::sleep(Duration::from_millis(200));
        }
        Stack { store, query, base }
    }

    fn ensure_running(&mut self) {
        self.store.ensure_running().unwrap();
        self.query.ensure_running().unwrap();
    }
}

/// Percent-encodes what PromQL puts in a URL.
fn enc(q: &str) -> String {
    q.replace('%', "%25")
        .replace(' ', "%20")
        .replace('[', "%5B")
        .replace(']', "%5D")
        .replace('(', "%28")
        .replace(')', "%29")
        .replace('{', "%7B")
        .replace('}', "%7D")
        .replace('"', "%22")
        .replace('=', "%3D")
        .replace('~', "%7E")
        .replace('+', "%2B")
}

#[test]
fn downsampled_answers_agree_with_raw_within_stated_bounds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let blocks = dir.join("blocks");
    std::fs::create_dir_all(&blocks).unwrap();
    // 56 hours of Prometheus' 2h blocks from a 48h-aligned start: the compactor merges them
    // into 8h blocks, the first six of those into a 48h block, and downsamples that one.
    let start = (T0 / H48 + 1) * H48;
    let series = demo_series(start, start + 56 * 3_600_000);
    promtool_blocks(&blocks, &series);
    let bucket = dir.join("bucket");
    let yml = dir.join("bucket.yml");
    std::fs::write(
        &yml,
        format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            bucket.display()
        ),
    )
    .unwrap();
    let objstore = format!("--objstore.config-file={}", yml.display());
    run_ok(
        strata()
            .args(["tools", "bucket", "upload-blocks", &objstore])
            .arg(format!("--path={}", blocks.display()))
            .arg("--label=cluster=\"ds\""),
        "upload-blocks",
    );
    // One compactor run: 2h → 8h → 48h, and the 48h raw block is past the 40h threshold, so
    // it gets its 5m twin.
    run_ok(
        strata()
            .args(["compact", &objstore, "--consistency-delay=0s"])
            .arg(format!("--data-dir={}", dir.join("compact").display()))
            .arg("--http-address=127.0.0.1:0"),
        "compact",
    );
    let res = resolutions(&bucket);
    assert_eq!(
        res.iter().filter(|r| **r == 300_000).count(),
        1,
        "one 5m block expected: {res:?}"
    );

    let mut stack = Stack::start(dir, &objstore, "store", &[]);
    let base = stack.base.clone();

    // Range queries over hours 4..46, every 30 minutes, 7 s off the sample grid.
    let (qs, qe) = (start / 1000 + 4 * 3600 + 7, start / 1000 + 46 * 3600 + 7);
    let range = |q: &str, res: &str| {
        matrix(&get_json(&format!(
            "{base}/api/v1/query_range?query={}&start={qs}&end={qe}&step=1800&max_source_resolution={res}",
            enc(q)
        )))
    };

    // min/max/sum_over_time: between the raw answer over the 5m windows wholly inside the
    // hour and over the hour plus the 5 minutes before it (g is positive, so sums grow with
    // the window too).
    type Reduce = fn(&[(i64, f64)], i64, i64) -> f64;
    let bounded: [(&str, Reduce); 3] = [
        ("max_over_time", raw_max),
        ("min_over_time", |s, a, b| -raw_max(&negate(s), a, b)),
        ("sum_over_time", raw_sum),
    ];
    for (func, reduce) in bounded {
        let q = format!("{func}(g[1h])");
        let (raw, ds) = (range(&q, "0s"), range(&q, "5m"));
        assert_eq!(raw.len(), 8, "{q}");
        assert_eq!(ds.len(), raw.len(), "{q}");
        let mut differs = 0;
        for ((key, r), (dkey, d)) in raw.iter().zip(&ds) {
            assert_eq!(key, dkey);
            assert_eq!(r.len(), d.len(), "{key}");
            let samples = samples_of(&series, "g", key);
            for (&(t, rv), &(dt, dv)) in r.iter().zip(d) {
                assert_eq!(t, dt);
                let exact = reduce(samples, t - 3_600_000, t);
                assert!(close(rv, exact, 1e-12), "raw {q} at {t}: {rv} vs {exact}");
                // Windows wholly inside (t-1h, t]: from the first window start after t-1h to
                // the last window end at or before t.
                let first = (t - 3_600_000).div_euclid(RES) * RES + RES;
                let last = (t + 1).div_euclid(RES) * RES;
                let inner = reduce(samples, first - 1, last - 1);
                let wide = reduce(samples, t - 3_600_000 - RES, t);
                let (lo, hi) = (inner.min(wide), inner.max(wide));
                assert!(
                    dv >= lo * (1.0 - 1e-12) && dv <= hi * (1.0 + 1e-12),
                    "{q} {key} at {t}: 5m answer {dv} outside [{lo}, {hi}] (raw {exact})"
                );
                differs += usize::from(dv != rv);
            }
        }
        eprintln!(
            "{q}: {differs} of {} points differ from raw",
            8 * r_len(&raw)
        );
    }

    // Rates and averages: within a stated relative tolerance of raw at every step (measured
    // differences are printed; see the module docs for why they are small).
    for (q, tolerance) in [
        ("sum(rate(c_total[1h]))", 0.01),
        ("sum(increase(c_total[1h]))", 0.01),
        ("avg(avg_over_time(g[1h]))", 0.01),
    ] {
        let (raw, ds) = (range(q, "0s"), range(q, "5m"));
        assert_eq!((raw.len(), ds.len()), (1, 1), "{q}");
        assert_eq!(raw[0].1.len(), ds[0].1.len(), "{q}");
        let mut worst: f64 = 0.0;
        for (&(t, rv), &(dt, dv)) in raw[0].1.iter().zip(&ds[0].1) {
            assert_eq!(t, dt);
            let rel = (dv - rv).abs() / rv.abs();
            worst = worst.max(rel);
            assert!(
                rel <= tolerance,
                "{q} at {t}: raw {rv}, 5m {dv} ({rel:.4} relative, tolerance {tolerance})"
            );
        }
        eprintln!("{q}: worst relative difference {worst:.2e} (tolerance {tolerance})");
    }

    // The aggregates were read: 12 points an hour at 5m, 240 raw.
    let counts = |res: &str| {
        range("count_over_time(g[1h])", res)
            .into_iter()
            .flat_map(|(_, pts)| pts.into_iter().map(|p| p.1))
            .collect::<Vec<f64>>()
    };
    assert!(counts("0s").iter().all(|&c| c == 240.0));
    assert!(
        counts("5m").iter().all(|&c| c == 12.0),
        "{:?}",
        counts("5m")
    );
    stack.ensure_running();
}

/// Every answer of the query set, as the querier's raw JSON text.
fn answers(base: &str, start: i64, end: i64) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let queries = [
        "c_total",
        "rate(c_total[5m])",
        "sum by (i) (increase(c_total[1h]))",
        "max_over_time(g[1h])",
        "avg(g)",
        "topk(2, g)",
    ];
    for q in queries {
        for path in [
            format!("/api/v1/query?query={}&time={}", enc(q), end - 3600),
            format!(
                "/api/v1/query_range?query={}&start={start}&end={end}&step=300",
                enc(q)
            ),
        ] {
            let r = http_request("GET", &format!("{base}{path}"), b"").unwrap();
            assert_eq!(r.status, 200, "{path}");
            out.push((path, String::from_utf8(r.body).unwrap()));
        }
    }
    for path in [
        format!(
            "/api/v1/series?match[]={}&start={start}&end={end}",
            enc("{__name__=~\".+\"}")
        ),
        format!("/api/v1/labels?start={start}&end={end}"),
        format!("/api/v1/label/i/values?start={start}&end={end}"),
    ] {
        let r = http_request("GET", &format!("{base}{path}"), b"").unwrap();
        assert_eq!(r.status, 200, "{path}");
        out.push((path, String::from_utf8(r.body).unwrap()));
    }
    out
}

#[test]
fn compaction_changes_no_query_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // 16 hours of Prometheus' 2h blocks from an 8h-aligned start, for two identical HA
    // replicas.
    let start = (T0 / 28_800_000 + 1) * 28_800_000;
    let bucket = dir.join("bucket");
    let yml = dir.join("bucket.yml");
    std::fs::write(
        &yml,
        format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            bucket.display()
        ),
    )
    .unwrap();
    let objstore = format!("--objstore.config-file={}", yml.display());
    for replica in ["a", "b"] {
        let blocks = dir.join(format!("blocks-{replica}"));
        std::fs::create_dir_all(&blocks).unwrap();
        promtool_blocks(&blocks, &demo_series(start, start + 16 * 3_600_000));
        run_ok(
            strata()
                .args(["tools", "bucket", "upload-blocks", &objstore])
                .arg(format!("--path={}", blocks.display()))
                .arg("--label=cluster=\"cq\"")
                .arg(format!("--label=replica=\"{replica}\"")),
            "upload-blocks",
        );
    }
    let blocks_before = resolutions(&bucket).len();
    assert_eq!(blocks_before, 16);

    let (qs, qe) = (start / 1000 + 1800 + 7, start / 1000 + 15 * 3600 + 7);
    let dedup = ["--query.replica-label=replica"];
    let mut before_stack = Stack::start(dir, &objstore, "store-before", &dedup);
    let before = answers(&before_stack.base, qs, qe);
    before_stack.ensure_running();
    drop(before_stack);

    run_ok(
        strata()
            .args([
                "compact",
                &objstore,
                "--consistency-delay=0s",
                "--delete-delay=0s",
            ])
            .args([
                "--deduplication.replica-label=replica",
                "--downsampling.disable",
            ])
            .arg(format!("--data-dir={}", dir.join("compact").display()))
            .arg("--http-address=127.0.0.1:0"),
        "compact",
    );
    // The two replicas are merged into one everywhere, and the first 8h range into one
    // block; the newest range stays at 2h until a later block exists (as Thanos' planner).
    let blocks_after = resolutions(&bucket).len();
    let listing = String::from_utf8(
        strata()
            .args(["tools", "bucket", "inspect", &objstore])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(blocks_after, 5, "{listing}");
    assert!(
        !listing.contains("replica=") && listing.contains("| 3          |"),
        "no replica label left, and one block of compaction level 3 (four 2h blocks):\n{listing}"
    );

    let mut after_stack = Stack::start(dir, &objstore, "store-after", &dedup);
    let after = answers(&after_stack.base, qs, qe);
    after_stack.ensure_running();
    assert_eq!(before.len(), after.len());
    for ((path, b), (_, a)) in before.iter().zip(&after) {
        assert!(b.contains("\"status\":\"success\""), "{path}: {b}");
        assert!(b.len() > 50, "{path}: suspiciously small answer {b}");
        assert_eq!(b, a, "{path}: the answer changed with compaction");
    }
}
