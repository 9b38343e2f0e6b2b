//! The query frontend's hot path on a large answer: reading a querier's matrix, joining the
//! parts of a split query and writing the answer, in process (no HTTP).
//!
//! `cargo run --release -p strata-frontend --example matrix_bench -- [SERIES] [POINTS] [PARTS] [REPEAT]`
//!
//! Builds `PARTS` answers of `SERIES` series with `POINTS` samples each split evenly between
//! them (the layout Prometheus writes: 5,000 series × 658 points is the raw selection of the
//! querier benchmark over 11 h at 60 s), then times, per round, reading every part, joining
//! them and writing the answer, and prints the medians and the throughput.

use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_frontend::response::Matrix;

fn part(series: usize, from: usize, to: usize) -> Bytes {
    let mut out = String::from(r#"{"status":"success","data":{"resultType":"matrix","result":["#);
    for s in 0..series {
        if s > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            r#"{{"metric":{{"__name__":"http_requests_total","instance":"host-{:04}","job":"api","method":"GET","status":"{}"}},"values":["#,
            s / 10,
            200 + s % 10
        ));
        for p in from..to {
            if p > from {
                out.push(',');
            }
            let t = 1_700_000_000 + p as i64 * 60;
            out.push_str(&format!("[{t},\"{}\"]", (p * 7 + s) as f64 * 1.5 / 7.0));
        }
        out.push_str("]}");
    }
    out.push_str("]}}");
    Bytes::from(out)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers"))
        .collect();
    let series = args.first().copied().unwrap_or(5_000);
    let points = args.get(1).copied().unwrap_or(658);
    let parts = args.get(2).copied().unwrap_or(2).max(1);
    let repeat = args.get(3).copied().unwrap_or(9);
    let bodies: Vec<Bytes> = (0..parts)
        .map(|i| part(series, i * points / parts, (i + 1) * points / parts))
        .collect();
    let bytes: usize = bodies.iter().map(Bytes::len).sum();
    let (mut read, mut join, mut write) = (Vec::new(), Vec::new(), Vec::new());
    let mut out_len = 0;
    for _ in 0..repeat {
        let t = Instant::now();
        let matrices: Vec<Matrix> = bodies
            .iter()
            .map(|b| Matrix::parse_bytes(b).expect("valid answer"))
            .collect();
        read.push(t.elapsed());
        let t = Instant::now();
        let joined = Matrix::merge(matrices).expect("parts in time order");
        join.push(t.elapsed());
        let t = Instant::now();
        out_len = joined.to_json().len();
        write.push(t.elapsed());
    }
    let (r, j, w) = (median(read), median(join), median(write));
    let mib = bytes as f64 / (1 << 20) as f64;
    println!(
        "{series} series × {points} points in {parts} parts ({mib:.1} MiB in, {:.1} MiB out), median of {repeat}:",
        out_len as f64 / (1 << 20) as f64
    );
    println!("  read  {r:>10.2?}  ({:.0} MiB/s)", mib / r.as_secs_f64());
    println!("  join  {j:>10.2?}");
    println!("  write {w:>10.2?}  ({:.0} MiB/s)", mib / w.as_secs_f64());
    let total = r + j + w;
    println!(
        "  total {total:>10.2?}  ({:.1} ns per sample)",
        total.as_nanos() as f64 / (series * points) as f64
    );
}
