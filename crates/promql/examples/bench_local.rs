//! In-process engine benchmark over blocks written by `bench_gen`: evaluation only (no HTTP,
//! no JSON). Prints the median wall time of N runs and the mean CPU time per run (all
//! threads, from `getrusage`), which other load on a shared machine does not inflate.
//!
//! `bench_local DIR [REPEAT] [QUERY_FILTER]`

use std::path::PathBuf;
use std::time::Instant;

use strata_promql::{BlockStorage, Engine, QueryContext, Value};

const QUERIES: &[(&str, bool)] = &[
    ("http_requests_total", true),
    ("rate(http_requests_total[5m])", true),
    ("sum(rate(http_requests_total[5m]))", true),
    ("sum by (job) (rate(http_requests_total[5m]))", true),
    ("increase(http_requests_total[1h])", true),
    ("count by (job) (http_requests_total)", true),
    (
        "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
        true,
    ),
    ("avg_over_time(node_memory_bytes[10m])", true),
    ("delta(node_memory_bytes[10m])", true),
    ("sum_over_time(node_memory_bytes[1h])", true),
    ("deriv(node_memory_bytes[30m])", true),
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

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .expect("usage: bench_local DIR [REPEAT] [FILTER]"),
    );
    let repeat: usize = args.next().map_or(5, |s| s.parse().expect("repeat"));
    let filter = args.next().unwrap_or_default();
    let storage = BlockStorage::open_dir(&dir).expect("opening blocks");
    let engine = Engine::default();
    let (start, end, step) = (1_700_003_600_000, 1_700_043_000_000, 60_000);
    for (q, range) in QUERIES {
        if !q.contains(&filter) {
            continue;
        }
        let mut times = Vec::new();
        let mut points = 0;
        let cpu0 = cpu_time();
        for _ in 0..repeat {
            let ctx = QueryContext::new();
            let t0 = Instant::now();
            let out = if *range {
                engine.range(&storage, q, start, end, step, &ctx)
            } else {
                engine.instant(&storage, q, end, &ctx)
            }
            .expect("query");
            times.push(t0.elapsed());
            points = match out.value {
                Value::Matrix(m) => m.iter().map(|s| s.points.len()).sum(),
                Value::Vector(v) => v.len(),
                _ => 1,
            };
        }
        let cpu = (cpu_time() - cpu0) / repeat as f64;
        times.sort();
        println!(
            "{:>9.2} ms wall {:>9.2} ms CPU  {:>8} points  {}{}",
            times[times.len() / 2].as_secs_f64() * 1e3,
            cpu * 1e3,
            points,
            if *range { "" } else { "[instant] " },
            q
        );
    }
}

/// CPU seconds used by the process so far (user + system, all threads).
fn cpu_time() -> f64 {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer is always allowed.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}
