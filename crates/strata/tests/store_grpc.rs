//! `strata store` end to end: the real binary over a FILESYSTEM bucket of blocks made by
//! Prometheus' promtool, probed over HTTP (`/-/healthy`, `/-/ready`, `/metrics` with Thanos'
//! names) and queried over gRPC with the Store API acceptance suite, in plain text and TLS
//! (with client certificates).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use strata_block::transfer::{UploadOptions, upload_block};
use strata_model::Labels;
use strata_objstore::{Bucket, BucketMetrics};
use strata_store::testing::{Reference, StoreApiClient, run_acceptance};
use strata_testutil::process::{ChildGuard, free_port, http_request};
use strata_testutil::prometheus::create_blocks_from_openmetrics;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

const T0: i64 = 1_700_000_123_000;

fn openmetrics() -> String {
    let mut om = String::from("# TYPE jobs counter\n");
    for job in ["api", "web", "db"] {
        for i in 0..5 {
            for k in 0..(4 * 240) {
                let t = T0 + k * 15_000;
                writeln!(
                    om,
                    "jobs_total{{job=\"{job}\",pod=\"p{i}\"}} {} {}.{:03}",
                    k * (i + 1),
                    t / 1000,
                    t % 1000
                )
                .unwrap();
            }
        }
    }
    om.push_str("# EOF\n");
    om
}

/// A bucket holding promtool blocks with external labels, and the matching reference.
async fn bucket_with_blocks(dir: &Path) -> (PathBuf, Reference, usize) {
    let blocks = create_blocks_from_openmetrics(&openmetrics(), &dir.join("blocks")).unwrap();
    let bucket_dir = dir.join("bucket");
    std::fs::create_dir_all(&bucket_dir).unwrap();
    let yml = dir.join("bucket.yml");
    std::fs::write(
        &yml,
        format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            bucket_dir.display()
        ),
    )
    .unwrap();
    let bucket = Bucket::from_yaml(
        &std::fs::read_to_string(&yml).unwrap(),
        &BucketMetrics::unregistered(),
    )
    .unwrap();
    let ext = Labels::from_pairs(&[("cluster", "eu1"), ("replica", "a")]);
    let opts = UploadOptions {
        labels: ext
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect(),
        source: "sidecar".into(),
        require_labels: true,
        hash_func: Default::default(),
        file_concurrency: 0,
    };
    let mut reference = Reference::default();
    for b in &blocks {
        upload_block(&bucket, b, &opts).await.unwrap();
        reference.add_block(b, ext.clone()).unwrap();
    }
    (yml, reference, blocks.len())
}

struct Store {
    guard: ChildGuard,
    http: String,
    grpc_port: u16,
}

fn start_store(yml: &Path, data: &Path, extra: &[String]) -> Store {
    let (http_port, grpc_port) = (free_port(), free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg("store")
        .arg(format!("--objstore.config-file={}", yml.display()))
        .arg(format!("--data-dir={}", data.display()))
        .arg(format!("--http-address=127.0.0.1:{http_port}"))
        .arg(format!("--grpc-address=127.0.0.1:{grpc_port}"))
        .args(extra);
    let mut guard = ChildGuard::spawn("strata store", &mut cmd).unwrap();
    let http = format!("http://127.0.0.1:{http_port}");
    guard
        .wait_for_http(&format!("{http}/-/healthy"), Duration::from_secs(30))
        .unwrap();
    Store {
        guard,
        http,
        grpc_port,
    }
}

fn get(url: &str) -> (u16, String) {
    let r = http_request("GET", url, b"").unwrap();
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

/// Polls `/-/ready` until 200; returns how long it took.
fn wait_ready(s: &mut Store) -> Duration {
    let start = Instant::now();
    loop {
        s.guard.ensure_running().unwrap();
        if get(&format!("{}/-/ready", s.http)).0 == 200 {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not ready: {}",
            get(&format!("{}/-/ready", s.http)).1
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_serves_the_store_api_and_thanos_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let (yml, reference, nblocks) = bucket_with_blocks(tmp.path()).await;
    let mut s = start_store(&yml, &tmp.path().join("data"), &[]);
    let (status, body) = get(&format!("{}/-/healthy", s.http));
    assert_eq!(status, 200, "{body}");
    wait_ready(&mut s);

    let mut client = StoreApiClient::connect(format!("http://127.0.0.1:{}", s.grpc_port))
        .await
        .unwrap();
    let report = run_acceptance(&mut client, &reference).await.unwrap();
    assert!(report.cases > 30, "{report:?}");

    let (status, metrics) = get(&format!("{}/metrics", s.http));
    assert_eq!(status, 200);
    for want in [
        format!("thanos_bucket_store_blocks_loaded {nblocks}"),
        format!("thanos_blocks_meta_synced{{state=\"loaded\"}} {nblocks}"),
        "thanos_blocks_meta_synced{state=\"too-fresh\"} 0".to_string(),
        "thanos_blocks_meta_syncs_total 1".to_string(),
        "thanos_store_index_cache_requests_total{item_type=\"Postings\"}".to_string(),
        "thanos_store_index_cache_hits_total{item_type=\"Series\"}".to_string(),
        "thanos_bucket_store_series_data_fetched_count{data_type=\"chunks\"}".to_string(),
        "thanos_bucket_store_series_data_size_fetched_bytes_sum{data_type=\"postings\"}"
            .to_string(),
        "thanos_objstore_bucket_operations_total{bucket=".to_string(),
    ] {
        assert!(metrics.contains(&want), "{want} missing in:\n{metrics}");
    }
    // Index-headers were written into the data directory.
    let headers = std::fs::read_dir(tmp.path().join("data"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .map(|e| e.path().join("index-header").is_file())
                .unwrap_or(false)
        })
        .count();
    assert_eq!(headers, nblocks);
    drop(s);
}

/// `--store.caching-bucket.config` with `type: IN-MEMORY` takes effect: the acceptance
/// suite's answers are the same cold and warm, the warm ones come from the chunk cache, and
/// its metrics carry Thanos' names and the configured size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_memory_caching_bucket_serves_chunks_from_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let (yml, reference, _) = bucket_with_blocks(tmp.path()).await;
    let mut s = start_store(
        &yml,
        &tmp.path().join("data"),
        &["--store.caching-bucket.config=type: IN-MEMORY\nconfig:\n  max_size: 64MB\n  max_item_size: 16MB\nchunk_subrange_size: 4000"
            .to_string()],
    );
    wait_ready(&mut s);
    let mut client = StoreApiClient::connect(format!("http://127.0.0.1:{}", s.grpc_port))
        .await
        .unwrap();
    let value = |metrics: &str, name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| {
                let (series, v) = l.rsplit_once(' ')?;
                let labels = series.strip_prefix(name.split('{').next()?)?;
                name.split_once('{')
                    .is_none_or(|(_, want)| labels.contains(want.trim_end_matches('}')))
                    .then_some(v)
            })
            .unwrap_or_else(|| panic!("{name} missing in:\n{metrics}"))
            .trim()
            .parse()
            .unwrap()
    };
    let bucket_reads = "thanos_objstore_bucket_operations_total{operation=\"get_range\"}";
    let mut reads = Vec::new();
    for _ in ["cold", "warm"] {
        run_acceptance(&mut client, &reference).await.unwrap();
        let (_, metrics) = get(&format!("{}/metrics", s.http));
        reads.push(value(&metrics, bucket_reads));
    }
    let (_, metrics) = get(&format!("{}/metrics", s.http));
    assert_eq!(
        reads[1], reads[0],
        "warm queries read the bucket: {metrics}"
    );
    assert!(
        value(
            &metrics,
            "thanos_cache_inmemory_hits_total{name=\"caching-bucket\"}"
        ) > 0.0
    );
    assert_eq!(
        value(
            &metrics,
            "thanos_cache_inmemory_max_size_bytes{name=\"caching-bucket\"}"
        ),
        f64::from(64u32 << 20)
    );
    drop(s);
}

/// `--index-cache.config` with `type: MEMCACHED`, as Thanos' documentation writes it (every
/// client field, zeroes meaning defaults), and `--store.caching-bucket.config` with
/// `type: MEMCACHED`: the store starts, answers, fills the memcached, and after a restart
/// (nothing in its memory) finds the index items and chunk subranges there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_index_and_chunk_caches_are_shared_across_restarts() {
    let mc = strata_testutil::memcached::MemcachedServer::start().unwrap();
    let index = format!(
        "type: MEMCACHED\nconfig:\n  addresses: [{}]\n  timeout: 0s\n  \
         max_idle_connections: 0\n  max_async_concurrency: 0\n  max_async_buffer_size: 0\n  \
         max_get_multi_concurrency: 0\n  max_item_size: 0\n  max_get_multi_batch_size: 0\n  \
         dns_provider_update_interval: 0s\n  auto_discovery: false\n",
        mc.address()
    );
    let chunks = format!(
        "type: MEMCACHED\nconfig:\n  addresses: [{}]\n",
        mc.address()
    );
    remote_caches_are_shared_across_restarts(&index, &chunks, "memcached", || {
        mc.settled_items(Duration::from_secs(20)).unwrap()
    })
    .await;
}

/// The same with `type: REDIS`, the index cache's config as Thanos' documentation writes it
/// (every field, the TLS one off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_index_and_chunk_caches_are_shared_across_restarts() {
    let redis = strata_testutil::redis::RedisServer::start().unwrap();
    let index = format!(
        "type: REDIS\nconfig:\n  addr: {}\n  username: \"\"\n  password: \"\"\n  db: 0\n  \
         dial_timeout: 5s\n  read_timeout: 3s\n  write_timeout: 3s\n  pool_size: 100\n  \
         min_idle_conns: 10\n  idle_timeout: 5m0s\n  max_conn_age: 0s\n  \
         max_get_multi_concurrency: 100\n  get_multi_batch_size: 100\n  \
         max_set_multi_concurrency: 100\n  set_multi_batch_size: 100\n  tls_enabled: false\n  \
         tls_config:\n    ca_file: \"\"\n    cert_file: \"\"\n    key_file: \"\"\n    \
         server_name: \"\"\n    insecure_skip_verify: false\n  cache_size: 0\n  \
         master_name: \"\"\n",
        redis.address()
    );
    let chunks = format!("type: REDIS\nconfig:\n  addr: {}\n", redis.address());
    remote_caches_are_shared_across_restarts(&index, &chunks, "redis", || {
        redis.settled_keys(Duration::from_secs(20)).unwrap()
    })
    .await;
}

/// The same over TLS (`tls_enabled: true`) to a Redis that asks for a client certificate:
/// the index cache and the caching bucket verify the server against `ca_file` and present
/// `cert_file`/`key_file`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_caches_over_mutual_tls_are_shared_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let certs = strata_testutil::tls::ca_signed_certificates(dir.path());
    let redis = strata_testutil::redis::RedisServer::start_tls(
        &certs.server_cert,
        &certs.server_key,
        Some(&certs.ca),
    )
    .unwrap();
    let config = format!(
        "type: REDIS\nconfig:\n  addr: {}\n  tls_enabled: true\n  tls_config:\n    \
         ca_file: {}\n    cert_file: {}\n    key_file: {}\n    server_name: localhost\n",
        redis.tls_address(),
        certs.ca.display(),
        certs.client_cert.display(),
        certs.client_key.display()
    );
    remote_caches_are_shared_across_restarts(&config, &config, "redis", || {
        redis.settled_keys(Duration::from_secs(20)).unwrap()
    })
    .await;
}

/// Starts a store with the index cache `index` and the caching bucket's `chunks` config
/// (a `kind` server), twice: the first fills the server (`settle` waits for its writes and
/// counts them), the second finds every item there.
async fn remote_caches_are_shared_across_restarts(
    index: &str,
    chunks: &str,
    kind: &str,
    settle: impl Fn() -> u64,
) {
    let tmp = tempfile::tempdir().unwrap();
    let (yml, reference, _) = bucket_with_blocks(tmp.path()).await;
    let args = [
        format!("--index-cache.config={index}"),
        format!(
            "--store.caching-bucket.config={chunks}chunk_subrange_size: 4000\n\
             max_chunks_get_range_requests: 3\nchunk_object_attrs_ttl: 1h\n\
             chunk_subrange_ttl: 1h\n"
        ),
    ];
    let hits = |http: &str| -> [(f64, f64); 2] {
        let (_, m) = get(&format!("{http}/metrics"));
        let v = |name: &str| -> f64 {
            m.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("{name} missing in:\n{m}"))
        };
        [
            (
                v("thanos_store_index_cache_requests_total{item_type=\"Series\"}"),
                v("thanos_store_index_cache_hits_total{item_type=\"Series\"}"),
            ),
            (
                v(&format!(
                    "thanos_cache_{kind}_requests_total{{name=\"caching-bucket\"}}"
                )),
                v(&format!(
                    "thanos_cache_{kind}_hits_total{{name=\"caching-bucket\"}}"
                )),
            ),
        ]
    };
    for (round, data) in ["first", "second"].into_iter().zip(["data1", "data2"]) {
        let mut s = start_store(&yml, &tmp.path().join(data), &args);
        wait_ready(&mut s);
        let mut client = StoreApiClient::connect(format!("http://127.0.0.1:{}", s.grpc_port))
            .await
            .unwrap();
        run_acceptance(&mut client, &reference).await.unwrap();
        for (what, (requests, found)) in ["series entries", "chunk subranges"]
            .into_iter()
            .zip(hits(&s.http))
        {
            assert!(requests > 0.0, "{round}: {what}");
            if round == "first" {
                // Items stored by earlier queries serve later ones; the first ones missed.
                assert!(
                    found < requests,
                    "{what}: an empty {kind} holds nothing at first"
                );
            } else {
                assert_eq!(
                    found, requests,
                    "the restarted store finds every one of its {what}"
                );
            }
        }
        if round == "first" {
            // The sets are written in the background.
            assert!(settle() > 0, "nothing was stored in {kind}");
        }
        drop(s);
    }
}

/// The block viewer on the store's HTTP port, as Thanos' store serves it: the blocks the store
/// serves (`/blocks`, `/api/v1/blocks`, also under `?view=loaded`), titled by
/// `--bucket-web-label`, under `--web.route-prefix`; marking works unless
/// `--disable-admin-operations`; `--web.disable` serves none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_serves_a_block_viewer_of_its_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    let (yml, _, nblocks) = bucket_with_blocks(tmp.path()).await;
    let mut s = start_store(
        &yml,
        &tmp.path().join("data"),
        &[
            "--bucket-web-label=cluster".to_string(),
            "--web.route-prefix=/viewer".to_string(),
        ],
    );
    wait_ready(&mut s);
    let (status, body) = get(&format!("{}/viewer/api/v1/blocks?view=loaded", s.http));
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let blocks = v["data"]["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), nblocks, "{body}");
    assert_eq!(v["data"]["label"], "cluster");
    let id = blocks[0]["ulid"].as_str().unwrap().to_string();
    let (status, page) = get(&format!("{}/viewer/blocks", s.http));
    assert_eq!(status, 200);
    assert!(page.contains(&id) && page.contains("eu1"), "{page}");
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let r = strata_testutil::process::http_request_with_headers(
        "POST",
        &format!("{}/viewer/api/v1/blocks/mark", s.http),
        &form,
        format!("id={id}&action=NO_COMPACTION&detail=test").as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        tmp.path()
            .join("bucket")
            .join(&id)
            .join("no-compact-mark.json")
            .is_file()
    );
    drop(s);

    let s = start_store(
        &yml,
        &tmp.path().join("data"),
        &["--disable-admin-operations".to_string()],
    );
    let r = strata_testutil::process::http_request_with_headers(
        "POST",
        &format!("{}/api/v1/blocks/mark", s.http),
        &form,
        format!("id={id}&action=DELETION&detail=test").as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    drop(s);

    let s = start_store(
        &yml,
        &tmp.path().join("data"),
        &["--web.disable".to_string()],
    );
    assert_eq!(get(&format!("{}/api/v1/blocks", s.http)).0, 404);
    assert_eq!(get(&format!("{}/-/healthy", s.http)).0, 200);
    drop(s);
}

/// Thanos serves the Store API only after the first block sync: a querier that probed a
/// store gateway still syncing would see an empty time range and leave the store out of every
/// query until its next probe. Here the bucket does not exist yet, so the first syncs fail:
/// no Info answer may come until a sync has succeeded, and the first one carries the blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_api_answers_only_after_the_first_sync() {
    use strata_storepb::thanos::info::InfoRequest;
    use strata_storepb::thanos::info::info_client::InfoClient;

    let tmp = tempfile::tempdir().unwrap();
    let moto = strata_testutil::moto::MotoServer::start().unwrap();
    let yml = tmp.path().join("bucket.yml");
    std::fs::write(&yml, moto.objstore_yml("late")).unwrap();
    let mut s = start_store(&yml, &tmp.path().join("data"), &[]);
    let endpoint = format!("http://127.0.0.1:{}", s.grpc_port);
    let info = |timeout: Duration| {
        let endpoint = endpoint.clone();
        async move {
            let ch = Channel::from_shared(endpoint)
                .unwrap()
                .connect_timeout(timeout)
                .timeout(timeout);
            let ch = tokio::time::timeout(timeout, ch.connect())
                .await
                .ok()?
                .ok()?;
            InfoClient::new(ch)
                .info(InfoRequest {})
                .await
                .ok()
                .map(|r| r.into_inner())
        }
    };
    // The first sync fails (no such bucket): not ready, and no Info answer.
    let (status, body) = get(&format!("{}/-/ready", s.http));
    assert_eq!(status, 503, "{body}");
    for _ in 0..3 {
        assert!(
            info(Duration::from_millis(500)).await.is_none(),
            "Info answered before the first block sync"
        );
    }

    // The bucket appears with blocks; the store's next sync attempt succeeds.
    moto.create_bucket("late").unwrap();
    let blocks =
        create_blocks_from_openmetrics(&openmetrics(), &tmp.path().join("blocks")).unwrap();
    let bucket =
        Bucket::from_yaml(&moto.objstore_yml("late"), &BucketMetrics::unregistered()).unwrap();
    let opts = UploadOptions {
        labels: [("cluster".to_string(), "eu1".to_string())].into(),
        source: "sidecar".into(),
        require_labels: true,
        hash_func: Default::default(),
        file_concurrency: 0,
    };
    let mut reference = Reference::default();
    for b in &blocks {
        upload_block(&bucket, b, &opts).await.unwrap();
        reference
            .add_block(b, Labels::from_pairs(&[("cluster", "eu1")]))
            .unwrap();
    }
    let (want_min, want_max) = reference.time_range();
    let start = Instant::now();
    let first = loop {
        s.guard.ensure_running().unwrap();
        if let Some(r) = info(Duration::from_secs(1)).await {
            break r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the Store API never came up; /-/ready says {:?}",
            get(&format!("{}/-/ready", s.http))
        );
    };
    let store = first.store.expect("a store gateway advertises StoreInfo");
    assert_eq!((store.min_time, store.max_time), (want_min, want_max));
    assert_eq!(get(&format!("{}/-/ready", s.http)).0, 200);
    drop(s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_fails_at_start_with_the_flag_named() {
    let tmp = tempfile::tempdir().unwrap();
    let yml = tmp.path().join("bucket.yml");
    std::fs::write(&yml, "type: FILESYSTEM\nconfig:\n  directory: /tmp\n").unwrap();
    for (extra, want) in [
        (
            "--selector.relabel-config=- action: explode",
            "--selector.relabel-config",
        ),
        (
            "--grpc-server-tls-cert=/nonexistent.pem",
            "--grpc-server-tls-key",
        ),
        (
            "--store.caching-bucket.config=type: DISK",
            "--store.caching-bucket.config",
        ),
        (
            "--objstore-parquet.config=type: FILESYSTEM\nconfig:\n  directory: /tmp",
            "--objstore-parquet.config is not supported",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("store")
            .arg(format!("--objstore.config-file={}", yml.display()))
            .arg(format!("--data-dir={}", tmp.path().join("data").display()))
            .arg("--http-address=127.0.0.1:0")
            .arg("--grpc-address=127.0.0.1:0")
            .arg(extra)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra}: {err}");
        assert!(err.contains(want), "{extra}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_tls_with_client_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let (yml, reference, _) = bucket_with_blocks(tmp.path()).await;
    let certs = tmp.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    strata_testutil::tls::ca_signed_certificates(&certs);
    let p = |f: &str| certs.join(f).display().to_string();
    let mut s = start_store(
        &yml,
        &tmp.path().join("data"),
        &[
            format!("--grpc-server-tls-cert={}", p("server.pem")),
            format!("--grpc-server-tls-key={}", p("server.key")),
            format!("--grpc-server-tls-client-ca={}", p("ca.pem")),
        ],
    );
    wait_ready(&mut s);
    let read = |f: &str| std::fs::read(certs.join(f)).unwrap();
    let endpoint = format!("https://127.0.0.1:{}", s.grpc_port);

    // Without a client certificate the handshake is refused.
    let no_cert = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem")))
        .domain_name("localhost");
    let refused = async {
        let ch = Channel::from_shared(endpoint.clone())
            .unwrap()
            .tls_config(no_cert)
            .unwrap()
            .connect()
            .await?;
        let mut c = StoreApiClient::from_channel(ch);
        c.info
            .info(strata_storepb::thanos::info::InfoRequest {})
            .await
            .map_err(|e| anyhow_like(e.to_string()))?;
        Ok::<_, Box<dyn std::error::Error>>(())
    }
    .await;
    assert!(
        refused.is_err(),
        "a client without a certificate was served"
    );

    // With one, the acceptance suite passes over TLS.
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem")))
        .identity(Identity::from_pem(read("client.pem"), read("client.key")))
        .domain_name("localhost");
    let ch = Channel::from_shared(endpoint)
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = StoreApiClient::from_channel(ch);
    run_acceptance(&mut client, &reference).await.unwrap();
}

fn anyhow_like(s: String) -> Box<dyn std::error::Error> {
    s.into()
}
