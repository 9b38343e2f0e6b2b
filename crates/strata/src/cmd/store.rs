//! `strata store`: the store gateway. Builds a [`BucketStore`] from the flags, serves the Store
//! and Info APIs over gRPC and the probes and metrics over HTTP, syncs blocks periodically.
//!
//! Readiness (`/-/ready`) and the Store API follow the first successful block sync: metas
//! only, so a bucket of many blocks is ready in seconds; index-headers are built in the
//! background after that. A failing first sync is retried (with the reason on `/-/ready`)
//! rather than exiting, so a store gateway started during an object storage outage recovers
//! by itself.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use prometheus_client::registry::Registry;
use strata_block::relabel::parse_relabel_configs;
use strata_objstore::{Bucket, BucketMetrics};
use strata_runtime::http::base_router;
use strata_runtime::{Prober, Shutdown};
use strata_store::cache::{IndexCacheConfig, IndexCacheSpec};
use strata_store::chunk_cache::CachingBucketConfig;
use strata_store::grpc::serve;
use strata_store::sync::FilterConfig;
use strata_store::{BucketStore, Limits, StoreConfig};

use crate::cli::common::{BlockDiscoveryStrategy, accepted_without_effect};
use crate::cli::store::{LazyDownloadStrategy, StoreArgs};
use crate::cmd::block_viewer::{BlockViewer, ViewerOptions};
use crate::cmd::compact::with_prefix;

/// How often idle index-headers are looked for (with the lazy reader).
const IDLE_CHECK: Duration = Duration::from_secs(60);
/// Delay between attempts of a failing first sync.
const INITIAL_SYNC_RETRY: Duration = Duration::from_secs(5);

/// The store's configuration from its flags.
pub(crate) fn config(args: &StoreArgs) -> Result<StoreConfig> {
    let index_cache = match args.index_cache.source().load()? {
        Some(yaml) if !yaml.trim().is_empty() => {
            IndexCacheSpec::from_yaml(&yaml).context("parsing --index-cache.config[-file]")?
        }
        _ => IndexCacheSpec::in_memory(IndexCacheConfig::with_size(args.index_cache_size.0)),
    };
    let chunk_cache = match args.caching_bucket.source().load()? {
        Some(yaml) if !yaml.trim().is_empty() => {
            match CachingBucketConfig::from_yaml(&yaml)
                .context("parsing --store.caching-bucket.config[-file]")?
            {
                CachingBucketConfig::Cache(c) => Some(c),
                CachingBucketConfig::Unsupported(kind) => {
                    tracing::warn!(
                        "--store.caching-bucket.config: cache type {kind} is not supported; \
                         chunks are read from object storage directly (use type: IN-MEMORY, \
                         MEMCACHED or REDIS)"
                    );
                    None
                }
            }
        }
        _ => None,
    };
    let relabel = match args.selector_relabel.source().load()? {
        Some(yaml) => {
            parse_relabel_configs(&yaml).context("parsing --selector.relabel-config[-file]")?
        }
        None => Vec::new(),
    };
    if args.block_sync_concurrency == 0 {
        bail!("--block-sync-concurrency must be at least 1");
    }
    if args.series_max_concurrency == 0 {
        bail!("--store.grpc.series-max-concurrency must be at least 1");
    }
    let pick = |new: u64, old: u64| if new > 0 { new } else { old };
    Ok(StoreConfig {
        data_dir: args.data_dir.clone().into(),
        filter: FilterConfig {
            min_time: args.time_range.min_time,
            max_time: args.time_range.max_time,
            relabel,
            consistency_delay: args.consistency_delay.to_std(),
            ignore_deletion_marks_delay: args.ignore_deletion_marks_delay.to_std(),
            mark_ttls: chunk_cache
                .as_ref()
                .map(|c| (c.metafile_content_ttl, c.metafile_doesnt_exist_ttl)),
        },
        index_cache,
        limits: Limits {
            request_series: pick(args.store_limits.request_series, args.touched_series_limit),
            request_samples: pick(args.store_limits.request_samples, args.series_sample_limit),
            downloaded_bytes: args.downloaded_bytes_limit.0,
        },
        max_concurrency: args.series_max_concurrency,
        block_sync_concurrency: args.block_sync_concurrency,
        meta_fetch_concurrency: args.block_meta_fetch_concurrency.max(1),
        lazy_index_header: args.enable_index_header_lazy_reader(),
        idle_timeout: args.index_header_lazy_reader_idle_timeout.to_std(),
        estimated_max_series_size: args.estimated_max_series_size.max(1),
        estimated_max_chunk_size: args.estimated_max_chunk_size.max(1),
        chunk_pool_bytes: args.chunk_pool_size.0,
        chunk_cache,
        matcher_cache_size: args.matcher_cache_size,
    })
}

/// Logs each flag given a value the store gateway does not act on, with the reason: tuning
/// of machinery Strata does not have, and the block viewer the gateway does not serve.
fn log_flags_without_effect(args: &StoreArgs) -> Result<()> {
    if args.series_batch_size != 10_000 {
        accepted_without_effect(
            "--debug.series-batch-size",
            "series are fetched in rounds of 8,192 per block, decoded a round ahead of the merge",
        );
    }
    if args.advertise_compatibility_label_given() {
        accepted_without_effect(
            "--debug.advertise-compatibility-label",
            "the Info API answers with the blocks' external label sets only, as queriers since \
             Thanos 0.8 expect",
        );
    }
    if args.index_header_posting_offsets_in_mem_sampling != 32 {
        accepted_without_effect(
            "--store.index-header-posting-offsets-in-mem-sampling",
            "index-headers keep every 32nd postings offset in memory, Thanos' default",
        );
    }
    if !args.cache_index_header() {
        accepted_without_effect(
            "--no-cache-index-header",
            "index-headers are still written to --data-dir (and rebuilt from the bucket if it is \
             removed)",
        );
    }
    if args.block_discovery_strategy != BlockDiscoveryStrategy::Concurrent {
        accepted_without_effect(
            "--block-discovery-strategy",
            "blocks are found with one listing of the bucket's top level and a meta.json read \
             per block, whatever the strategy",
        );
    }
    if args.index_header_lazy_download_strategy != LazyDownloadStrategy::Eager {
        accepted_without_effect(
            "--store.index-header-lazy-download-strategy",
            "the store is ready once block metas are synced, and index-headers are built in the \
             background as soon as a block is seen",
        );
    }
    if args.enable_lazy_expanded_postings() {
        accepted_without_effect(
            "--store.enable-lazy-expanded-postings",
            "lazy posting expansion is not implemented: the postings of every matcher are fetched",
        );
    }
    if args.posting_group_max_key_series_ratio != 100.0 {
        accepted_without_effect(
            "--store.posting-group-max-key-series-ratio",
            "it tunes lazy posting expansion, which is not implemented",
        );
    }
    // The block viewer's links are relative, and it sets no CORS headers (as compact's).
    let web = &args.block_viewer.web;
    for (flag, set) in [
        ("--web.external-prefix", !web.web_external_prefix.is_empty()),
        ("--web.prefix-header", !web.web_prefix_header.is_empty()),
        ("--web.disable-cors", web.web_disable_cors()),
    ] {
        if set {
            accepted_without_effect(
                flag,
                "the block viewer's links are relative and it sets no CORS headers",
            );
        }
    }
    Ok(())
}

/// The block viewer the store serves unless `--web.disable`: the blocks it serves, refreshed
/// after every block sync (Thanos' store shows its loaded blocks the same way).
fn block_viewer(args: &StoreArgs, bucket: &Bucket) -> Option<BlockViewer> {
    let v = &args.block_viewer;
    (!v.web_disable()).then(|| {
        BlockViewer::new(
            bucket.clone(),
            ViewerOptions {
                title_label: v.bucket_web_label.clone(),
                admin: !v.disable_admin_operations(),
                rules: Vec::new(),
                time_range: None,
            },
        )
    })
}

pub(crate) async fn run(args: StoreArgs) -> Result<()> {
    // Before anything else: a bad --http.config fails start-up at once.
    let web_config = args.http.web_config()?;
    // RSS under load should follow --index-cache-size and --chunk-pool-size; glibc's defaults
    // kept about as much freed memory resident as the gateway used (see strata_runtime::alloc).
    strata_runtime::alloc::tune();
    let yaml = args.objstore.load_yaml()?;
    if args
        .objstore_parquet
        .source()
        .load()?
        .is_some_and(|y| !y.trim().is_empty())
    {
        // Thanos skips the blocks thanos-parquet-gateway has converted: serving them here as
        // well would count their series twice behind a querier.
        anyhow::bail!(
            "--objstore-parquet.config is not supported: Strata's store gateway cannot tell \
             which blocks thanos-parquet-gateway serves; run it without the flag and without \
             a parquet gateway over the same blocks"
        );
    }
    let config = config(&args)?;
    let request_log = args.request_logging.load()?;
    let mut grpc_opts = args.grpc.server_options()?;
    grpc_opts.request_log = request_log.clone();
    log_flags_without_effect(&args)?;

    let mut registry = Registry::default();
    let bucket_metrics = BucketMetrics::register(&mut registry);
    let bucket = Bucket::from_yaml(&yaml, &bucket_metrics)
        .context("opening the bucket given by --objstore.config[-file]")?;
    let viewer = block_viewer(&args, &bucket);
    let store = Arc::new(
        BucketStore::new(bucket, config, Some(&mut registry))
            .context("setting up the store (--data-dir)")?,
    );
    let registry = Arc::new(Mutex::new(registry));

    let shutdown = Shutdown::new();
    shutdown.listen_for_signals();
    let prober = Prober::new();
    prober.set_not_ready("syncing blocks from object storage");

    let (http, grpc) = super::bind_servers(
        &args.http.http_address,
        web_config,
        &args.grpc.grpc_address,
        request_log,
        "Store API, Info API; serving after the first block sync",
    )
    .await?;
    let mut router = base_router(prober.clone(), registry);
    if let Some(v) = &viewer {
        router = router.merge(with_prefix(
            &args.block_viewer.web.web_route_prefix,
            v.router(),
        ));
    }
    let http_task = tokio::spawn(http.serve(
        router,
        shutdown.clone(),
        Some(args.http.http_grace_period.to_std()),
    ));
    prober.set_healthy();

    // First sync: retried until it succeeds; ready afterwards.
    loop {
        tokio::select! {
            r = store.sync_blocks() => match r {
                Ok(report) => {
                    tracing::info!(blocks = report.loaded, states = ?report.states, "initial block sync done");
                    if let Some(v) = &viewer {
                        v.set_blocks(store.loaded_metas());
                    }
                    break;
                }
                Err(e) => {
                    tracing::error!(err = %e, "initial block sync failed; retrying");
                    prober.set_not_ready(format!("initial block sync failed: {e}"));
                }
            },
            _ = shutdown.wait() => break,
        }
        tokio::select! {
            _ = tokio::time::sleep(INITIAL_SYNC_RETRY) => {}
            _ = shutdown.wait() => break,
        }
    }
    // The Store API is served only once the blocks are known, as Thanos does: a querier
    // probing earlier would see an empty time range and leave this store out of its queries
    // until its next probe. Until then, connections wait in the listener's backlog.
    let grpc_task = (!shutdown.is_triggered()).then(|| {
        let (store, shutdown) = (store.clone(), shutdown.clone());
        tokio::spawn(async move {
            serve(grpc, store, grpc_opts, async move { shutdown.wait().await }).await
        })
    });
    if !shutdown.is_triggered() {
        prober.set_ready();
    }

    let every = args
        .sync_block_duration
        .to_std()
        .max(Duration::from_secs(1));
    let sync_task = {
        let (store, shutdown, viewer) = (store.clone(), shutdown.clone(), viewer.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            let mut idle = tokio::time::interval(IDLE_CHECK);
            loop {
                tokio::select! {
                    _ = tick.tick() => match store.sync_blocks().await {
                        Ok(r) => {
                            if !r.added.is_empty() || !r.dropped.is_empty() {
                                tracing::info!(added = r.added.len(), dropped = r.dropped.len(), blocks = r.loaded, "block sync");
                            }
                            if let Some(v) = &viewer {
                                v.set_blocks(store.loaded_metas());
                            }
                        }
                        Err(e) => tracing::warn!(err = %e, "block sync failed; serving the blocks known before"),
                    },
                    _ = idle.tick() => {
                        let n = store.release_idle();
                        if n > 0 {
                            tracing::debug!(released = n, "released idle index-headers");
                        }
                    }
                    _ = shutdown.wait() => break,
                }
            }
        })
    };

    shutdown.wait().await;
    prober.set_not_ready("shutting down");
    tracing::info!("shutting down");
    sync_task.await.context("block sync task")?;
    super::join_servers(grpc_task, http_task).await
}
