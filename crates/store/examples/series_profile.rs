//! The store gateway's Series call without the network: a [`BucketStore`] over a FILESYSTEM
//! bucket answers one request repeatedly, and every frame is protobuf-encoded as the gRPC
//! server would, so a profiler sees the whole per-request CPU cost of the gateway.
//!
//! ```text
//! cargo build --release -p strata-store --example series_profile
//! ./target/release/examples/series_profile <bucket dir> <metric name> <mint ms> <maxt ms> [repeat] [batch]
//! ```
//!
//! With `DECODE=1` every frame is also decoded again, as the receiving querier does.
//!
//! `<bucket dir>` holds blocks as `<ULID>/…` with their `meta.json` carrying a `thanos`
//! section (what `bench_gen` of strata-promql writes, for instance).

use std::time::Instant;

use prost::Message;
use strata_model::{MatchOp, Matcher};
use strata_objstore::{Bucket, BucketMetrics};
use strata_store::{BucketStore, StoreConfig};
use strata_storepb::thanos::{SeriesRequest, series_response};
use strata_storepb::{convert::matcher_from_model, thanos::SeriesResponse};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        return Err(
            "usage: series_profile <bucket dir> <metric> <mint ms> <maxt ms> [repeat] [batch]"
                .into(),
        );
    }
    let dir = std::path::PathBuf::from(&args[1]);
    let metric = args[2].clone();
    let mint: i64 = args[3].parse()?;
    let maxt: i64 = args[4].parse()?;
    let repeat: usize = args.get(5).map(|s| s.parse()).transpose()?.unwrap_or(5);
    let batch: i64 = args.get(6).map(|s| s.parse()).transpose()?.unwrap_or(64);

    // As `strata store` does at start.
    strata_runtime::alloc::tune();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let yaml = format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            dir.display()
        );
        let bucket = Bucket::from_yaml(&yaml, &BucketMetrics::unregistered())?;
        let data = tempfile_dir()?;
        let store = std::sync::Arc::new(BucketStore::new(bucket, StoreConfig::new(&data), None)?);
        let report = store.sync_blocks().await?;
        store.prepare_all().await;
        eprintln!("blocks: {report:?}");
        let req = SeriesRequest {
            min_time: mint,
            max_time: maxt,
            matchers: vec![matcher_from_model(&Matcher::new(
                MatchOp::Equal,
                "__name__",
                &metric,
            )?)],
            response_batch_size: batch,
            ..Default::default()
        };
        let mut times = Vec::new();
        for _ in 0..repeat {
            let (tx, mut rx) =
                tokio::sync::mpsc::channel::<Result<SeriesResponse, tonic::Status>>(16);
            let start = Instant::now();
            let decode = std::env::var("DECODE").is_ok_and(|v| v == "1");
            let consumer = tokio::spawn(async move {
                let (mut frames, mut bytes, mut series) = (0usize, 0usize, 0usize);
                let mut buf = Vec::new();
                while let Some(Ok(f)) = rx.recv().await {
                    frames += 1;
                    series += match &f.result {
                        Some(series_response::Result::Series(_)) => 1,
                        Some(series_response::Result::Batch(b)) => b.series.len(),
                        _ => 0,
                    };
                    buf.clear();
                    f.encode(&mut buf).expect("a Vec grows");
                    bytes += buf.len();
                    if decode {
                        // What the receiving side pays too (`DECODE=1`).
                        let b = bytes::Bytes::copy_from_slice(&buf);
                        let d = SeriesResponse::decode(b).expect("our own frame decodes");
                        std::hint::black_box(d);
                    }
                }
                (frames, bytes, series)
            });
            let outcome = store.series(req.clone(), &tx).await?;
            drop(tx);
            let (frames, bytes, series) = consumer.await?;
            let ms = start.elapsed().as_secs_f64() * 1e3;
            times.push(ms);
            eprintln!(
                "{ms:.1} ms: {series} series ({} chunks) in {frames} frames, {bytes} bytes encoded",
                outcome.chunks
            );
        }
        times.sort_by(f64::total_cmp);
        println!("median {:.1} ms over {repeat} runs", times[times.len() / 2]);
        std::fs::remove_dir_all(&data).ok();
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("series-profile-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
