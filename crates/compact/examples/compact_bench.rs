//! Compaction benchmark: throughput (samples/s) and peak memory of the three things the
//! compactor spends its time on, each measured in a fresh process so that peak RSS belongs to
//! that phase alone:
//!
//! * `merge`: four consecutive 2h blocks into one 8h block (chunks pass through unchanged,
//!   as in Prometheus; samples are counted, not decoded);
//! * `vertical`: two replicas of a 2h block with different scrape timestamps, deduplicated
//!   into one (every chunk decoded, merged sample by sample and re-encoded);
//! * `downsample`: the 8h block to 5m aggregates (every sample decoded and aggregated).
//!
//! `cargo run --release -p strata-compact --example compact_bench -- [series] [dir]`
//!
//! Peak RSS is reported twice: `peak_anon` is the process' own memory (heap, stacks), the
//! figure that grows with series count and that an OOM killer weighs; `peak_rss` adds the
//! pages of the memory-mapped input blocks, which the kernel can drop at any time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use strata_compact::downsample::downsample_block;
use strata_compact::merge::{MergeOptions, merge_blocks};
use strata_model::Labels;
use strata_testutil::cpu::process_cpu_secs;
use strata_tsdb::block::{Block, BlockWriter, BlockWriterOptions};

const T0: i64 = 1_699_833_600_000;
const TWO_HOURS: i64 = 7_200_000;

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Samples RssAnon every few milliseconds: the kernel keeps no high-water mark for it.
struct AnonPeak {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl AnonPeak {
    fn start() -> AnonPeak {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(status_kib("RssAnon:"), Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        });
        AnonPeak {
            stop,
            peak,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.peak
            .load(Ordering::Relaxed)
            .max(status_kib("RssAnon:")) as f64
            / 1024.0
    }
}

fn series_labels(i: usize) -> Labels {
    Labels::from_pairs(&[
        ("__name__", "http_requests_total".to_string()),
        ("code", ["200", "404", "500"][i % 3].to_string()),
        (
            "instance",
            format!("10.0.{}.{}:8080", (i / 3) / 250, (i / 3) % 250),
        ),
        ("job", "api".to_string()),
        ("pod", format!("api-{:07}", i / 3)),
    ])
}

/// One 2h block starting at `start`, 240 samples per series (15s), timestamps shifted by
/// `jitter` ms.
fn write_block(dir: &Path, series: usize, start: i64, jitter: i64) -> PathBuf {
    let opts = BlockWriterOptions {
        time_range: Some((start, start + TWO_HOURS)),
        ..Default::default()
    };
    let mut w = BlockWriter::new(dir, opts).unwrap();
    let mut ls: Vec<(Labels, usize)> = (0..series).map(|i| (series_labels(i), i)).collect();
    ls.sort();
    for (l, i) in &ls {
        let mut x = (*i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let base = (start - T0) / 15_000 * 3;
        w.add_series_iter(
            l,
            (0..240).map(|k| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let t = start + k * 15_000 + jitter + (x % 3) as i64;
                (t, (base + k * 3 + (x % 4) as i64) as f64)
            }),
        )
        .unwrap();
    }
    dir.join(w.finish().unwrap().ulid.to_string())
}

fn report(phase: &str, series: usize, samples: u64, wall: f64, cpu: f64, anon: f64) {
    println!(
        "{phase:<10} series={series} samples={samples} wall={wall:.2}s cpu={cpu:.2}s \
         throughput={:.1}M samples/s (cpu: {:.1}M/s) peak_anon={anon:.0}MiB peak_rss={:.0}MiB \
         anon_per_million_series={:.0}MiB",
        samples as f64 / wall / 1e6,
        samples as f64 / cpu / 1e6,
        status_kib("VmHWM:") as f64 / 1024.0,
        anon / (series as f64 / 1e6)
    );
}

fn open_all(dir: &Path) -> Vec<Block> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("meta.json").exists())
        .collect();
    dirs.sort();
    dirs.iter().map(|d| Block::open(d).unwrap()).collect()
}

fn phase(name: &str, series: usize, dir: &Path) {
    let peak = AnonPeak::start();
    let (cpu0, t0) = (process_cpu_secs(), Instant::now());
    let samples = match name {
        "merge" | "vertical" => {
            let inputs = open_all(&dir.join(name));
            let out = dir.join(format!("{name}-out"));
            let (_, stats) = merge_blocks(&inputs, &out, &MergeOptions::default())
                .unwrap()
                .unwrap();
            let input_samples: u64 = inputs.iter().map(|b| b.meta().stats.num_samples).sum();
            assert!(stats.samples <= input_samples);
            input_samples
        }
        "downsample" => {
            let input = open_all(&dir.join("merge-out")).remove(0);
            let out = dir.join("downsample-out");
            downsample_block(&input, 300_000, &out, None).unwrap();
            input.meta().stats.num_samples
        }
        other => panic!("unknown phase {other}"),
    };
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), process_cpu_secs() - cpu0);
    report(name, series, samples, wall, cpu, peak.finish());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--phase") {
        let series = args[3].parse().unwrap();
        phase(&args[2], series, Path::new(&args[4]));
        return;
    }
    let series: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let dir = match args.get(2) {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir().join("strata-compact-bench"),
    };
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("merge")).unwrap();
    std::fs::create_dir_all(dir.join("vertical")).unwrap();

    let t = Instant::now();
    for b in 0..4 {
        write_block(&dir.join("merge"), series, T0 + b * TWO_HOURS, 0);
    }
    write_block(&dir.join("vertical"), series, T0, 0);
    write_block(&dir.join("vertical"), series, T0, 5_000);
    eprintln!(
        "generated the input blocks in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let me = std::env::current_exe().unwrap();
    for name in ["merge", "vertical", "downsample"] {
        let st = Command::new(&me)
            .args(["--phase", name, &series.to_string()])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(st.success(), "{name} failed");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
