//! Runs the PromQL benchmark suite against two Prometheus-compatible HTTP APIs (Strata and a
//! real Prometheus), checks that every result agrees (float values within 1e-9 relative),
//! and prints the latencies and the geometric mean of their ratios as a Markdown table.
//!
//! `bench_compare STRATA_URL PROMETHEUS_URL START_SECONDS END_SECONDS [REPEAT]`
//!
//! Latency is measured end to end (request sent to body fully read) for each API, `REPEAT`
//! times after one warm-up run, alternating between the two, and the median is reported.
//! Exits non-zero if any result differs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The suite: (query, range?) — range queries run over the whole window at a 60 s step,
/// instant queries at the window's end.
const QUERIES: &[(&str, bool)] = &[
    ("http_requests_total", true),
    ("rate(http_requests_total[5m])", true),
    ("sum(rate(http_requests_total[5m]))", true),
    ("sum by (job) (rate(http_requests_total[5m]))", true),
    ("sum by (job, status) (rate(http_requests_total[5m]))", true),
    ("avg by (method) (irate(http_requests_total[5m]))", true),
    ("increase(http_requests_total[1h])", true),
    (
        "sum by (job) (rate(http_requests_total{status=~\"5..\"}[5m])) / sum by (job) (rate(http_requests_total[5m]))",
        true,
    ),
    (
        "topk(5, sum by (instance) (rate(http_requests_total[5m])))",
        true,
    ),
    ("count by (job) (http_requests_total)", true),
    (
        "max by (job, instance) (resets(http_requests_total[1h]))",
        true,
    ),
    (
        "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
        true,
    ),
    (
        "histogram_quantile(0.9, sum by (job, le) (rate(http_request_duration_seconds_bucket[5m])))",
        true,
    ),
    ("avg_over_time(node_memory_bytes[10m])", true),
    ("max by (job) (max_over_time(node_memory_bytes[30m]))", true),
    ("sum_over_time(node_memory_bytes[1h])", true),
    ("stddev by (job) (node_memory_bytes)", true),
    ("quantile(0.5, node_memory_bytes)", true),
    ("deriv(node_memory_bytes[30m])", true),
    ("delta(node_memory_bytes[10m])", true),
    (
        "node_memory_bytes / on(job, instance) group_left() sum by (job, instance) (rate(http_requests_total[5m]))",
        true,
    ),
    (
        "max_over_time(sum by (job) (rate(http_requests_total[5m]))[30m:1m])",
        true,
    ),
    ("sum by (job) (rate(http_requests_total[5m]))", false),
    ("topk(10, rate(http_requests_total[5m]))", false),
    (
        "histogram_quantile(0.5, rate(http_request_duration_seconds_bucket[10m]))",
        false,
    ),
];

fn get(base: &str, path_and_query: &str) -> (u16, Vec<u8>, Duration) {
    let hostport = base.trim_start_matches("http://").trim_end_matches('/');
    let t0 = Instant::now();
    let mut s = TcpStream::connect(hostport).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(600))).unwrap();
    write!(
        s,
        "GET {path_and_query} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let elapsed = t0.elapsed();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut rest = &raw[split + 4..];
    let body = if head.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let len = usize::from_str_radix(std::str::from_utf8(&rest[..nl]).unwrap().trim(), 16)
                .unwrap();
            rest = &rest[nl + 2..];
            if len == 0 {
                break;
            }
            out.extend_from_slice(&rest[..len]);
            rest = &rest[len + 2..];
        }
        out
    } else {
        rest.to_vec()
    };
    (status, body, elapsed)
}

fn encode(q: &str) -> String {
    let mut out = String::new();
    for b in q.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn float(v: &Value) -> f64 {
    match v.as_str().expect("value string") {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        s => s.parse().expect("float"),
    }
}

fn close(a: f64, b: f64) -> bool {
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let m = a.abs().max(b.abs());
    (a - b).abs() <= 1e-9 * m
}

/// A result's series: `(labels as JSON, [(t, v)])`.
type SeriesList = Vec<(String, Vec<(f64, f64)>)>;

/// Canonical form of a result: its type and its series sorted by labels.
fn canon(v: &Value) -> Result<(String, SeriesList), String> {
    if v["status"] != "success" {
        return Err(format!("error response: {v}"));
    }
    let data = &v["data"];
    let rt = data["resultType"].as_str().unwrap_or("").to_string();
    let mut out = Vec::new();
    for s in data["result"].as_array().cloned().unwrap_or_default() {
        let labels = s["metric"].to_string();
        let pts: Vec<(f64, f64)> = if let Some(vals) = s["values"].as_array() {
            vals.iter()
                .map(|p| (p[0].as_f64().unwrap(), float(&p[1])))
                .collect()
        } else {
            vec![(s["value"][0].as_f64().unwrap(), float(&s["value"][1]))]
        };
        out.push((labels, pts));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((rt, out))
}

fn compare(a: &Value, b: &Value) -> Result<usize, String> {
    let (ta, sa) = canon(a)?;
    let (tb, sb) = canon(b)?;
    if ta != tb {
        return Err(format!("result types differ: {ta} vs {tb}"));
    }
    if sa.len() != sb.len() {
        return Err(format!(
            "series counts differ: {} vs {}",
            sa.len(),
            sb.len()
        ));
    }
    let mut points = 0;
    for ((la, pa), (lb, pb)) in sa.iter().zip(&sb) {
        if la != lb {
            return Err(format!("labels differ: {la} vs {lb}"));
        }
        if pa.len() != pb.len() {
            return Err(format!(
                "{la}: point counts differ: {} vs {}",
                pa.len(),
                pb.len()
            ));
        }
        for (x, y) in pa.iter().zip(pb) {
            if x.0 != y.0 || !close(x.1, y.1) {
                return Err(format!("{la}: at {}: {} vs {} (at {})", x.0, x.1, y.1, y.0));
            }
            points += 1;
        }
    }
    Ok(points)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (strata, prom) = (&args[0], &args[1]);
    let start: f64 = args[2].parse().unwrap();
    let end: f64 = args[3].parse().unwrap();
    let repeat: usize = args.get(4).map_or(5, |s| s.parse().unwrap());
    println!("| # | query | kind | points | Strata ms | Prometheus ms | ratio | result |");
    println!("|---|---|---|---|---:|---:|---:|---|");
    let mut log_sum = 0.0;
    let mut failures = 0;
    for (i, (q, range)) in QUERIES.iter().enumerate() {
        let path = if *range {
            format!(
                "/api/v1/query_range?query={}&start={start}&end={end}&step=60",
                encode(q)
            )
        } else {
            format!("/api/v1/query?query={}&time={end}", encode(q))
        };
        // Warm-up (and the results to compare).
        let (s1, b1, _) = get(strata, &path);
        let (s2, b2, _) = get(prom, &path);
        let (mut ts, mut tp) = (Vec::new(), Vec::new());
        for _ in 0..repeat {
            ts.push(get(strata, &path).2);
            tp.push(get(prom, &path).2);
        }
        let (ms, mp) = (median(ts), median(tp));
        let ratio = ms.as_secs_f64() / mp.as_secs_f64();
        log_sum += ratio.ln();
        let verdict = if s1 != 200 || s2 != 200 {
            Err(format!("HTTP {s1} vs {s2}"))
        } else {
            let a: Value = serde_json::from_slice(&b1).expect("strata JSON");
            let b: Value = serde_json::from_slice(&b2).expect("prometheus JSON");
            compare(&a, &b)
        };
        let (size, result) = match &verdict {
            Ok(points) => (points.to_string(), "identical".to_string()),
            Err(e) => {
                failures += 1;
                ("-".into(), format!("DIFFERENT: {e}"))
            }
        };
        println!(
            "| {} | `{}` | {} | {} | {:.1} | {:.1} | {:.3} | {} |",
            i + 1,
            q,
            if *range { "range" } else { "instant" },
            size,
            ms.as_secs_f64() * 1e3,
            mp.as_secs_f64() * 1e3,
            ratio,
            result
        );
    }
    let geo = (log_sum / QUERIES.len() as f64).exp();
    println!();
    println!(
        "geometric mean of Strata/Prometheus latency: {geo:.3} over {} queries",
        QUERIES.len()
    );
    println!(
        "results: {} identical, {failures} different",
        QUERIES.len() - failures
    );
    if failures > 0 {
        std::process::exit(1);
    }
}
