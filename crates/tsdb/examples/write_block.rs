//! Writes a synthetic block and reports throughput and peak memory, to show that the block
//! writer's memory follows the number of series, not the number of samples.
//!
//! `cargo run --release -p strata-tsdb --example write_block -- <series> <samples-per-series> [dir]`
//! (`SEGMENT_BYTES=N` for smaller chunk segment files, `KEEP=1` to keep the block).

use std::time::Instant;

use strata_model::Labels;
use strata_tsdb::block::{BlockWriter, BlockWriterOptions};

/// Peak resident memory of this process, from /proc (Linux).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let series: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let per: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(720);
    let dir = match args.get(3) {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::temp_dir().join("strata-write-block"),
    };
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    // Labels are generated in order: `device` sorts before `instance`, so it varies slowest,
    // and zero-padded ids sort as their numbers.
    let per_device = series.div_ceil(4);
    let start = Instant::now();
    // SEGMENT_BYTES: smaller chunk segment files than Prometheus' 512 MiB (many segments, for
    // measuring transfers of one block's files at once).
    let mut opts = BlockWriterOptions::default();
    if let Some(n) = std::env::var("SEGMENT_BYTES")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        opts.segment_size = n;
    }
    let mut w = BlockWriter::new(&dir, opts).unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..series {
        let labels = Labels::from_pairs(&[
            ("__name__", "node_network_receive_bytes_total".to_string()),
            ("device", format!("eth{}", i / per_device)),
            ("instance", format!("host-{:07}:9100", i % per_device)),
            ("job", "node".to_string()),
        ]);
        let mut t = 1_700_000_000_000i64;
        let mut v = 0.0;
        w.add_series_iter(
            &labels,
            (0..per).map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                t += 15_000 + (x % 5) as i64 - 2;
                v += (x % 1000) as f64;
                (t, v)
            }),
        )
        .unwrap();
    }
    let meta = w.finish().unwrap();
    let secs = start.elapsed().as_secs_f64();
    let samples = (series * per) as f64;
    let size: u64 = walk_size(&dir.join(meta.ulid.to_string()));
    println!(
        "series={series} samples/series={per} samples={samples:.0} time={secs:.2}s \
         throughput={:.1}M samples/s peak_rss={:.0}MiB block_size={:.0}MiB bytes/sample={:.2}",
        samples / secs / 1e6,
        peak_rss_mib(),
        size as f64 / 1048576.0,
        size as f64 / samples
    );
    // KEEP=1 leaves the block in place (for transfer measurements).
    if std::env::var_os("KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn walk_size(p: &std::path::Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        let md = e.metadata().unwrap();
        total += if md.is_dir() {
            walk_size(&e.path())
        } else {
            md.len()
        };
    }
    total
}
