//! Store gateway benchmark (issue 4): the real `strata store` binary over a FILESYSTEM bucket of
//! many blocks. Reports time to ready, resident memory idle and under load, bytes read from
//! object storage per query, CPU time per query in the gateway, and a query's latency against
//! the same query on the local blocks.
//!
//! ```text
//! cargo bench -p strata --bench store_gateway                        # 120 blocks x 2000 series
//! cargo bench -p strata --bench store_gateway -- 120 20000 250MB,8MB  # blocks, series, caches
//! cargo bench -p strata --bench store_gateway -- scaling 120 2000,20000 64MB 64MB
//! ```
//!
//! `scaling` runs only the load phase over buckets of each series count with the same
//! `--index-cache-size` and `--chunk-pool-size` (the last two arguments), so peak RSS can be
//! compared across data sizes: the claim under test is that it follows the flags, not the data.
//!
//! Each block holds `series` series of 120 samples (2 h at 60 s), labels
//! `{__name__=metric_<0..10>, job=job-<0..10>, instance=i-<0..n>}`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use strata_model::{Labels, MatchOp, Matcher};
use strata_store::testing::{StoreApiClient, decode_samples};
use strata_storepb::convert::{matcher_from_model, pack_any, unpack_any};
use strata_storepb::hintspb;
use strata_storepb::thanos::SeriesRequest;
use strata_testutil::process::{ChildGuard, free_port, http_request};
use strata_tsdb::meta::ThanosMeta;
use strata_tsdb::{Block, BlockWriter, BlockWriterOptions};

const BLOCK: i64 = 2 * 3_600_000;
/// Warm runs per query: latency is their median, CPU their average (clock ticks are 10 ms).
const WARM_RUNS: usize = 20;
const T0: i64 = 1_600_000_000_000 - 1_600_000_000_000 % BLOCK;

fn write_blocks(bucket: &Path, blocks: usize, series: usize) {
    let instances = series.div_ceil(100);
    let mut all: Vec<Labels> = Vec::with_capacity(series);
    'outer: for m in 0..10 {
        for j in 0..10 {
            for i in 0..instances {
                if all.len() == series {
                    break 'outer;
                }
                all.push(Labels::from_pairs(&[
                    ("__name__", format!("metric_{m}")),
                    ("job", format!("job-{j}")),
                    ("instance", format!("i-{i}")),
                ]));
            }
        }
    }
    all.sort();
    for b in 0..blocks as i64 {
        let (mint, maxt) = (T0 + b * BLOCK, T0 + (b + 1) * BLOCK);
        let mut w = BlockWriter::new(
            bucket,
            BlockWriterOptions {
                time_range: Some((mint, maxt)),
                thanos: Some(ThanosMeta {
                    labels: [("cluster".to_string(), "bench".to_string())].into(),
                    source: "compactor".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .unwrap();
        for (k, l) in all.iter().enumerate() {
            let samples = (0..120).map(|s| (mint + s * 60_000, (k as i64 * 7 + s + b) as f64));
            w.add_series_iter(l, samples).unwrap();
        }
        w.finish().unwrap();
    }
}

fn dir_size(p: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(p).unwrap().flatten() {
        let m = e.metadata().unwrap();
        n += if m.is_dir() {
            dir_size(&e.path())
        } else {
            m.len()
        };
    }
    n
}

/// `(VmRSS, VmHWM)` of a process, in MiB.
fn rss(pid: u32) -> (f64, f64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = |key: &str| -> f64 {
        s.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

/// Threads of a process.
fn threads(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with("Threads:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// User + system CPU seconds of a process.
fn cpu_seconds(pid: u32, ticks: f64) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / ticks
}

fn metric(http: &str, name: &str) -> f64 {
    let r = http_request("GET", &format!("{http}/metrics"), b"").unwrap();
    let body = String::from_utf8_lossy(&r.body).into_owned();
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The sum of a metric over all its label sets.
fn metric_sum(http: &str, name: &str) -> f64 {
    let r = http_request("GET", &format!("{http}/metrics"), b"").unwrap();
    let body = String::from_utf8_lossy(&r.body).into_owned();
    body.lines()
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ' | b'{'))
        })
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

fn request(ms: &[Matcher], mint: i64, maxt: i64) -> SeriesRequest {
    SeriesRequest {
        min_time: mint,
        max_time: maxt,
        matchers: ms.iter().map(matcher_from_model).collect(),
        hints: Some(pack_any(&hintspb::SeriesRequestHints {
            block_matchers: vec![],
            enable_query_stats: true,
        })),
        ..Default::default()
    }
}

struct Run {
    series: usize,
    samples: usize,
    bytes: i64,
    wall: Duration,
}

async fn query(client: &mut StoreApiClient, req: SeriesRequest) -> Run {
    let (mint, maxt) = (req.min_time, req.max_time);
    let start = Instant::now();
    let r = client.series(req).await.unwrap();
    let mut samples = 0;
    for (_, chunks) in &r.series {
        samples += decode_samples(chunks, mint, maxt).unwrap().len();
    }
    let wall = start.elapsed();
    let h: hintspb::SeriesResponseHints = unpack_any(&r.hints[0]).unwrap();
    Run {
        series: r.series.len(),
        samples,
        bytes: h.query_stats.unwrap().data_downloaded_size_sum,
        wall,
    }
}

/// The same query on the local blocks: select and decode with `strata_tsdb::Block`.
fn local_query(blocks: &[Block], ms: &[Matcher], mint: i64, maxt: i64) -> (usize, Duration) {
    let start = Instant::now();
    let mut samples = 0;
    for b in blocks {
        if b.meta().max_time <= mint || b.meta().min_time > maxt {
            continue;
        }
        for s in b.query(ms, mint, maxt).unwrap() {
            samples += s.unwrap().timestamps.len();
        }
    }
    (samples, start.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The three benchmark queries over `nblocks` blocks.
fn queries(nblocks: usize) -> Vec<(&'static str, Vec<Matcher>, (i64, i64))> {
    let all_time = (T0, T0 + nblocks as i64 * BLOCK - 1);
    let day = (all_time.1 - 12 * BLOCK, all_time.1);
    vec![
        (
            "Q1 one metric and job, all blocks",
            vec![
                Matcher::equal("__name__", "metric_3"),
                Matcher::equal("job", "job-1"),
            ],
            all_time,
        ),
        (
            "Q2 regexes, last 24 h (12 blocks)",
            vec![
                Matcher::new(MatchOp::RegexMatch, "__name__", "metric_[0-4]").unwrap(),
                Matcher::new(MatchOp::RegexMatch, "instance", "i-1.*").unwrap(),
            ],
            day,
        ),
        (
            "Q3 every series, last 2 h (1 block)",
            vec![Matcher::new(MatchOp::RegexMatch, "__name__", ".+").unwrap()],
            (all_time.1 - BLOCK + 1, all_time.1),
        ),
    ]
}

/// 4 concurrent clients, each running every query `rounds` times; returns (seconds, peak
/// sampled RSS MiB, max threads).
async fn load(
    client: &StoreApiClient,
    pid: u32,
    qs: &[(&'static str, Vec<Matcher>, (i64, i64))],
    rounds: usize,
) -> (f64, f64, u64) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let mut c = client.clone();
        let qs: Vec<_> = qs.iter().map(|(_, m, r)| (m.clone(), *r)).collect();
        tasks.push(tokio::spawn(async move {
            for _ in 0..rounds {
                for (ms, (mint, maxt)) in &qs {
                    query(&mut c, request(ms, *mint, *maxt)).await;
                }
            }
        }));
    }
    let mut peak = 0.0f64;
    let mut max_threads = 0;
    while !tasks.iter().all(|t| t.is_finished()) {
        peak = peak.max(rss(pid).0);
        max_threads = max_threads.max(threads(pid));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    (
        start.elapsed().as_secs_f64(),
        peak.max(rss(pid).0),
        max_threads,
    )
}

/// `scaling BLOCKS S1,S2,.. CACHE POOL`: peak RSS under the same load and flags per data size.
fn scaling(args: &[String]) {
    let nblocks: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(120);
    let sizes: Vec<usize> = args
        .get(2)
        .map_or("2000,20000", String::as_str)
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    let cache = args.get(3).map_or("64MB", String::as_str);
    let pool = args.get(4).map_or("64MB", String::as_str);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "\n### peak RSS under load by data size: --index-cache-size={cache} --chunk-pool-size={pool}, 4 clients x 10 rounds of Q1-Q3\n"
    );
    println!(
        "| bucket | series/block | load time | RSS idle | RSS under load, peak (sampled) | VmHWM | index cache bytes | chunk pool peak | threads |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for &nseries in &sizes {
        let tmp = tempfile::tempdir().unwrap();
        let bucket = tmp.path().join("bucket");
        std::fs::create_dir_all(&bucket).unwrap();
        write_blocks(&bucket, nblocks, nseries);
        let bytes = dir_size(&bucket);
        let yml = tmp.path().join("bucket.yml");
        std::fs::write(
            &yml,
            format!(
                "type: FILESYSTEM\nconfig:\n  directory: {}\n",
                bucket.display()
            ),
        )
        .unwrap();
        let (http_port, grpc_port) = (free_port(), free_port());
        let http = format!("http://127.0.0.1:{http_port}");
        // `STRATA_BIN` runs another build (say, before a change) under the same load.
        let bin = std::env::var("STRATA_BIN").unwrap_or(env!("CARGO_BIN_EXE_strata").into());
        let mut cmd = Command::new(bin);
        cmd.arg("store")
            .arg(format!("--objstore.config-file={}", yml.display()))
            .arg(format!("--data-dir={}", tmp.path().join("data").display()))
            .arg(format!("--http-address=127.0.0.1:{http_port}"))
            .arg(format!("--grpc-address=127.0.0.1:{grpc_port}"))
            .arg(format!("--index-cache-size={cache}"))
            .arg(format!("--chunk-pool-size={pool}"))
            .arg("--log.level=warn");
        let mut guard = ChildGuard::spawn("strata store", &mut cmd).unwrap();
        let pid = guard.id();
        loop {
            guard.ensure_running().unwrap();
            if http_request("GET", &format!("{http}/-/ready"), b"").is_ok_and(|r| r.status == 200) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        while metric(&http, "thanos_bucket_store_indexheader_lazy_load_total") < nblocks as f64 {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(500));
        let (idle, _) = rss(pid);
        // `QUERIES=2` (or `1,3`) loads with a subset, to see which query holds memory.
        let only: Vec<usize> = std::env::var("QUERIES")
            .map(|v| v.split(',').filter_map(|q| q.parse().ok()).collect())
            .unwrap_or_default();
        let qs: Vec<_> = queries(nblocks)
            .into_iter()
            .enumerate()
            .filter(|(i, _)| only.is_empty() || only.contains(&(i + 1)))
            .map(|(_, q)| q)
            .collect();
        let (secs, peak, threads) = rt.block_on(async {
            let client = StoreApiClient::connect(format!("http://127.0.0.1:{grpc_port}"))
                .await
                .unwrap();
            load(&client, pid, &qs, 10).await
        });
        let (_, hwm) = rss(pid);
        println!(
            "| {:.0} MiB | {nseries} | {secs:.1} s | {idle:.1} MiB | **{peak:.1} MiB** | {hwm:.1} MiB | {:.1} MiB | {:.1} MiB | {threads} |",
            bytes as f64 / (1 << 20) as f64,
            metric_sum(&http, "thanos_store_index_cache_total_size_bytes") / (1 << 20) as f64,
            metric(&http, "strata_store_chunk_pool_peak_bytes") / (1 << 20) as f64,
        );
        drop(guard);
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if args.first().map(String::as_str) == Some("scaling") {
        scaling(&args);
        return;
    }
    let nblocks: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(120);
    let nseries: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let caches: Vec<String> = args
        .get(2)
        .map_or("250MB", String::as_str)
        .split(',')
        .map(str::to_string)
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let t = Instant::now();
    write_blocks(&bucket, nblocks, nseries);
    let bytes = dir_size(&bucket);
    println!(
        "bucket: {nblocks} blocks x {nseries} series x 120 samples, {:.1} MiB on disk (written in {:.1?})",
        bytes as f64 / (1 << 20) as f64,
        t.elapsed()
    );
    let yml = tmp.path().join("bucket.yml");
    std::fs::write(
        &yml,
        format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            bucket.display()
        ),
    )
    .unwrap();
    let ticks: f64 = String::from_utf8(
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();

    for cache in &caches {
        let label = format!("--index-cache-size={cache}");
        let (http_port, grpc_port) = (free_port(), free_port());
        let http = format!("http://127.0.0.1:{http_port}");
        let data = tmp.path().join(format!("data-{cache}"));
        let start = Instant::now();
        let bin = std::env::var("STRATA_BIN").unwrap_or(env!("CARGO_BIN_EXE_strata").into());
        let mut cmd = Command::new(bin);
        cmd.arg("store")
            .arg(format!("--objstore.config-file={}", yml.display()))
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--http-address=127.0.0.1:{http_port}"))
            .arg(format!("--grpc-address=127.0.0.1:{grpc_port}"))
            .arg(format!("--index-cache-size={cache}"))
            .arg("--log.level=warn");
        let mut guard = ChildGuard::spawn("strata store", &mut cmd).unwrap();
        let pid = guard.id();
        loop {
            guard.ensure_running().unwrap();
            if http_request("GET", &format!("{http}/-/ready"), b"").is_ok_and(|r| r.status == 200) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let ready = start.elapsed();
        while metric(&http, "thanos_bucket_store_indexheader_lazy_load_total") < nblocks as f64 {
            std::thread::sleep(Duration::from_millis(10));
        }
        let headers_loaded = start.elapsed();
        std::thread::sleep(Duration::from_millis(500));
        let (idle_rss, idle_hwm) = rss(pid);

        let all_time = (T0, T0 + nblocks as i64 * BLOCK - 1);
        let day = (all_time.1 - 12 * BLOCK, all_time.1);
        let q1 = vec![
            Matcher::equal("__name__", "metric_3"),
            Matcher::equal("job", "job-1"),
        ];
        let q2 = vec![
            Matcher::new(MatchOp::RegexMatch, "__name__", "metric_[0-4]").unwrap(),
            Matcher::new(MatchOp::RegexMatch, "instance", "i-1.*").unwrap(),
        ];
        let q3 = vec![Matcher::new(MatchOp::RegexMatch, "__name__", ".+").unwrap()];
        let queries = [
            ("Q1 one metric and job, all blocks", q1.clone(), all_time),
            ("Q2 regexes, last 24 h (12 blocks)", q2.clone(), day),
            (
                "Q3 every series, last 2 h (1 block)",
                q3.clone(),
                (all_time.1 - BLOCK + 1, all_time.1),
            ),
        ];
        rt.block_on(async {
            let mut client = StoreApiClient::connect(format!("http://127.0.0.1:{grpc_port}")).await.unwrap();
            println!("\n### store gateway, {label}\n");
            println!("| | |\n|---|---|");
            println!("| ready (spawn to `/-/ready` 200) | {:.0} ms |", ready.as_secs_f64() * 1000.0);
            println!("| all index-headers built and loaded | {:.0} ms |", headers_loaded.as_secs_f64() * 1000.0);
            println!("| RSS idle (headers loaded) | {idle_rss:.1} MiB (peak so far {idle_hwm:.1} MiB) |");
            println!("| index-header files | {:.1} MiB |", dir_size(&data) as f64 / (1 << 20) as f64);
            println!();
            println!("| query | series | samples | bytes fetched, cold | bytes fetched, warm | latency cold | latency warm (median of 20) | gateway CPU per warm query |");
            println!("|---|---|---|---|---|---|---|---|");
            for (name, ms, (mint, maxt)) in &queries {
                let cold = query(&mut client, request(ms, *mint, *maxt)).await;
                let cpu0 = cpu_seconds(pid, ticks);
                let mut walls = Vec::new();
                let mut warm = None;
                for _ in 0..WARM_RUNS {
                    let r = query(&mut client, request(ms, *mint, *maxt)).await;
                    walls.push(r.wall);
                    warm = Some(r);
                }
                let cpu = (cpu_seconds(pid, ticks) - cpu0) / WARM_RUNS as f64;
                let warm = warm.unwrap();
                assert_eq!(warm.series, cold.series);
                println!(
                    "| {name} | {} | {} | {:.1} KiB | {:.1} KiB | {:.1} ms | {:.1} ms | {:.1} ms |",
                    cold.series,
                    cold.samples,
                    cold.bytes as f64 / 1024.0,
                    warm.bytes as f64 / 1024.0,
                    cold.wall.as_secs_f64() * 1000.0,
                    median(walls).as_secs_f64() * 1000.0,
                    cpu * 1000.0,
                );
            }
            // Load: 4 concurrent clients, each running every query 10 times.
            let cpu0 = cpu_seconds(pid, ticks);
            let (load_secs, peak, max_threads) = load(&client, pid, &queries, 10).await;
            let (_, hwm) = rss(pid);
            println!();
            println!(
                "Load: 4 clients x 10 rounds of Q1-Q3 (120 queries) in {:.2} s, gateway CPU {:.2} s; RSS under load peak {:.1} MiB (sampled), VmHWM {:.1} MiB; up to {max_threads} threads.",
                load_secs,
                cpu_seconds(pid, ticks) - cpu0,
                peak,
                hwm
            );
        });
        drop(guard);
    }

    // The same queries on the local blocks (memory-mapped, decoded with strata_tsdb).
    let blocks: Vec<Block> = std::fs::read_dir(&bucket)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("meta.json").is_file())
        .map(|e| Block::open(&e.path()).unwrap())
        .collect();
    let all_time = (T0, T0 + nblocks as i64 * BLOCK - 1);
    let q1 = vec![
        Matcher::equal("__name__", "metric_3"),
        Matcher::equal("job", "job-1"),
    ];
    let q2 = vec![
        Matcher::new(MatchOp::RegexMatch, "__name__", "metric_[0-4]").unwrap(),
        Matcher::new(MatchOp::RegexMatch, "instance", "i-1.*").unwrap(),
    ];
    let q3 = vec![Matcher::new(MatchOp::RegexMatch, "__name__", ".+").unwrap()];
    println!(
        "\n### the same queries on the local blocks (`strata_tsdb::Block`, page cache warm)\n"
    );
    println!("| query | samples | latency (median of 5) |\n|---|---|---|");
    for (name, ms, (mint, maxt)) in [
        ("Q1", q1, all_time),
        ("Q2", q2, (all_time.1 - 12 * BLOCK, all_time.1)),
        ("Q3", q3, (all_time.1 - BLOCK + 1, all_time.1)),
    ] {
        let mut walls = Vec::new();
        let mut n = 0;
        for _ in 0..5 {
            let (s, w) = local_query(&blocks, &ms, mint, maxt);
            n = s;
            walls.push(w);
        }
        println!(
            "| {name} | {n} | {:.1} ms |",
            median(walls).as_secs_f64() * 1000.0
        );
    }
}
