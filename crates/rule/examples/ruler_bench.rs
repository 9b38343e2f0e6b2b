//! The ruler's own hot paths, measured one at a time on one thread:
//!
//! - appending one evaluation's output to the stateful storage (head plus WAL, as
//!   `DurableStorage` does after every rule evaluation), and to the head alone;
//! - replaying that WAL at start-up;
//! - cutting a block from the head;
//! - expanding a typical alert annotation template.
//!
//! ```text
//! cargo run --release -p strata-rule --example ruler_bench [SERIES] [EVALUATIONS]
//! ```
//!
//! Defaults: 10,000 series (a large recording rule's output) over 240 evaluations (4 hours at
//! 1m, more than the 3 hours after which a 2h block is cut).

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use strata_model::{Label, Labels};
use strata_rule::storage::{DurableStorage, LocalStorage, LocalStorageOptions, RuleWal};
use strata_rule::template::{Template, TemplateData};
use strata_rule::{Appender, RecordedSample};

fn samples(series: usize, eval: usize, t0: i64) -> Vec<RecordedSample> {
    (0..series)
        .map(|i| RecordedSample {
            labels: Labels::new([
                Label::new("__name__", "job:http_requests:rate5m"),
                Label::new("instance", format!("host-{:05}:9100", i)),
                Label::new("job", "node"),
            ]),
            timestamp_ms: t0 + eval as i64 * 60_000,
            value: (i * 7 + eval) as f64 * 0.25,
        })
        .collect()
}

fn open(dir: &std::path::Path) -> Arc<LocalStorage> {
    LocalStorage::open(
        dir,
        LocalStorageOptions {
            external_labels: Labels::from_pairs(&[("replica", "r0")]),
            ..LocalStorageOptions::default()
        },
        &mut Registry::default(),
    )
    .expect("open the storage")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let series: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let evals: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(240);
    let t0 = 1_700_000_000_000 - 1_700_000_000_000 % 7_200_000;
    let batches: Vec<Vec<RecordedSample>> = (0..evals).map(|e| samples(series, e, t0)).collect();
    let total = (series * evals) as f64;
    println!("{series} series × {evals} evaluations = {total} samples");

    // Head alone.
    let dir = tempfile::tempdir().expect("tempdir");
    let head = open(dir.path());
    let start = Instant::now();
    for b in &batches {
        head.append_samples(b.clone());
    }
    let head_time = start.elapsed();
    report("append, head only", head_time, total);

    // Head plus WAL, as the ruler appends.
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = open(dir.path());
    let (wal, _) =
        RuleWal::open_and_replay(&dir.path().join("wal"), true, &storage).expect("open the WAL");
    storage.set_wal_hook(wal.clone());
    let durable = DurableStorage {
        storage: storage.clone(),
        wal: wal.clone(),
    };
    let start = Instant::now();
    for b in &batches {
        durable.append(b.clone());
    }
    wal.sync(&storage).expect("sync");
    report("append, head + WAL (snappy)", start.elapsed(), total);
    let wal_bytes: u64 = std::fs::read_dir(dir.path().join("wal"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    println!(
        "  WAL size: {:.1} MiB, {:.2} bytes per sample",
        wal_bytes as f64 / (1 << 20) as f64,
        wal_bytes as f64 / total
    );

    // Replay into a fresh head, with the memory it takes: the peak above the resident size
    // before it (Linux: /proc/self/clear_refs resets the peak), and what the head keeps.
    let fresh = open(dir.path());
    let rss_before = proc_status_kib("VmRSS");
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let start = Instant::now();
    let (_, stats) =
        RuleWal::open_and_replay(&dir.path().join("wal"), true, &fresh).expect("replay the WAL");
    report("WAL replay", start.elapsed(), stats.samples as f64);
    if let (Some(before), Some(peak), Some(after)) = (
        rss_before,
        proc_status_kib("VmHWM"),
        proc_status_kib("VmRSS"),
    ) {
        println!(
            "  replay memory: peak {:.1} MiB above the start, {:.1} MiB kept by the head",
            peak.saturating_sub(before) as f64 / 1024.0,
            after.saturating_sub(before) as f64 / 1024.0
        );
    }

    // Cutting the blocks the head is ready for.
    let start = Instant::now();
    let cut = storage.cut_blocks().expect("cut");
    println!(
        "{:<32} {:>10.1} ms for {} block(s)",
        "block cut",
        start.elapsed().as_secs_f64() * 1e3,
        cut.len()
    );

    // A typical annotation.
    let t = Template::parse_alert(
        "__alert_HighRate",
        "{{ $labels.instance }} of {{ $labels.job }} serves {{ $value | humanize }} req/s ({{ printf \"%.1f\" $value }})",
    )
    .expect("parse");
    let data = TemplateData {
        labels: batches[0][0].labels.clone(),
        external_labels: Labels::from_pairs(&[("replica", "r0")]),
        external_url: "http://query:9090".into(),
        value: 1234.5678,
    };
    let n = 100_000;
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(t.execute(&data, None).expect("execute"));
    }
    report("template expansion", start.elapsed(), n as f64);
}

fn report(what: &str, d: Duration, n: f64) {
    println!(
        "{what:<32} {:>10.1} ms, {:>8.0} ns per item, {:>6.2} M/s",
        d.as_secs_f64() * 1e3,
        d.as_nanos() as f64 / n,
        n / d.as_secs_f64() / 1e6
    );
}

/// A `kB` field of /proc/self/status (Linux), in KiB.
fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
