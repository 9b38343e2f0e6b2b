//! Shared set-up for the store gateway tests: blocks made by real Prometheus (promtool),
//! buckets, and a store served over gRPC on a free local port.
#![allow(dead_code, unreachable_pub)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use prometheus_client::registry::Registry;
use strata_block::transfer::{UploadOptions, upload_block};
use strata_model::Labels;
use strata_objstore::{Bucket, BucketMetrics};
use strata_store::testing::{Reference, StoreApiClient};
use strata_store::{BucketStore, StoreConfig};
use strata_testutil::prometheus::create_blocks_from_openmetrics;

/// Start of the test data (not aligned to a block boundary on purpose).
pub const T0: i64 = 1_700_000_123_000;
pub const STEP: i64 = 15_000;

/// OpenMetrics text with several metrics, labels with many values, a label only some series
/// have, and `hours` of samples every 15 s. `seed` varies the values.
pub fn openmetrics(hours: i64, seed: i64) -> String {
    let mut om = String::new();
    let n = hours * 3600 * 1000 / STEP;
    om.push_str("# TYPE http_requests counter\n");
    for job in ["api", "web"] {
        for i in 0..8 {
            let codes: &[&str] = if job == "api" { &["200", "500"] } else { &[""] };
            for code in codes {
                let code_label = if code.is_empty() {
                    String::new()
                } else {
                    format!(",code=\"{code}\"")
                };
                for k in 0..n {
                    let t = T0 + k * STEP;
                    writeln!(
                        om,
                        "http_requests_total{{job=\"{job}\",instance=\"i{i}\"{code_label}}} {} {}.{:03}",
                        k * (i + 1 + seed),
                        t / 1000,
                        t % 1000
                    )
                    .unwrap();
                }
            }
        }
    }
    om.push_str("# TYPE temperature gauge\n");
    for room in ["kitchen", "hall", "attic"] {
        for k in 0..n {
            let t = T0 + k * STEP;
            let v = ((k + seed) as f64 * 0.37).sin() * 10.0 + 20.0;
            writeln!(
                om,
                "temperature{{room=\"{room}\"}} {v} {}.{:03}",
                t / 1000,
                t % 1000
            )
            .unwrap();
        }
    }
    om.push_str("# EOF\n");
    om
}

/// promtool blocks for `openmetrics(hours, seed)` under `dir`.
pub fn promtool_blocks(dir: &Path, hours: i64, seed: i64) -> Vec<PathBuf> {
    let blocks = create_blocks_from_openmetrics(&openmetrics(hours, seed), dir).unwrap();
    assert!(!blocks.is_empty());
    blocks
}

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs)
}

pub fn fs_bucket(dir: &Path, metrics: &BucketMetrics) -> Bucket {
    std::fs::create_dir_all(dir).unwrap();
    let yaml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        dir.display()
    );
    Bucket::from_yaml(&yaml, metrics).unwrap()
}

/// Uploads each block with external labels and adds it to the reference.
pub async fn upload(
    bucket: &Bucket,
    blocks: &[PathBuf],
    ext: &[(&str, &str)],
    reference: &mut Reference,
) {
    let opts = UploadOptions {
        labels: ext
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        source: "sidecar".into(),
        require_labels: false,
        hash_func: Default::default(),
        file_concurrency: 0,
    };
    for b in blocks {
        upload_block(bucket, b, &opts).await.unwrap();
        reference.add_block(b, labels(ext)).unwrap();
    }
}

/// A store over `bucket`, synced, serving gRPC on a free port.
pub struct Served {
    pub store: Arc<BucketStore>,
    pub addr: std::net::SocketAddr,
    pub registry: Arc<Mutex<Registry>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Served {
    pub async fn start(bucket: Bucket, config: StoreConfig) -> Served {
        let mut registry = Registry::default();
        let store = Arc::new(BucketStore::new(bucket, config, Some(&mut registry)).unwrap());
        store.sync_blocks().await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let s = store.clone();
        let task = tokio::spawn(async move {
            strata_store::grpc::serve(listener, s, None, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Served {
            store,
            addr,
            registry: Arc::new(Mutex::new(registry)),
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub async fn client(&self) -> StoreApiClient {
        StoreApiClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }

    /// The metrics exposition text.
    pub fn metrics_text(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry.lock().unwrap())
            .unwrap();
        out
    }
}
