//! `strata tools bucket {mark, cleanup, retention, downsample}`: the block life-cycle steps of
//! the compactor, run on their own by an operator.
//!
//! They share the compactor's code ([`strata_compact::compactor::Compactor`]) rather than having their
//! own, so a block marked, cleaned up or downsampled by hand ends up exactly as the compactor
//! would have left it.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use prometheus_client::registry::Registry;
use strata_block::fetch::fetch_meta;
use strata_block::markers::{
    DELETION_MARK_FILENAME, NO_COMPACT_MARK_FILENAME, NO_DOWNSAMPLE_MARK_FILENAME,
    mark_for_deletion, mark_no_compact, mark_no_downsample, remove_marker,
};
use strata_compact::compactor::{Compactor, CompactorConfig};
use strata_compact::metrics::CompactMetrics;
use strata_objstore::{Bucket, BucketMetrics};
use strata_runtime::http::{Listener, base_router};
use strata_runtime::{Prober, Shutdown};

use crate::cli::tools::{
    CleanupArgs, DownsampleArgs, MarkArgs, MarkerKind, RetentionArgs, WebUiArgs,
};
use crate::cmd::block_viewer::{BlockViewer, ViewerOptions};
use crate::cmd::compact::{log_web_flags_without_effect, with_prefix};

/// Thanos' reason for marks put by hand.
const MANUAL_REASON: &str = "manual";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub(crate) fn open_bucket(yaml: &str, metrics: &BucketMetrics) -> Result<Bucket> {
    Bucket::from_yaml(yaml, metrics).context("opening the bucket")
}

fn filename(kind: MarkerKind) -> &'static str {
    match kind {
        MarkerKind::Deletion => DELETION_MARK_FILENAME,
        MarkerKind::NoCompact => NO_COMPACT_MARK_FILENAME,
        MarkerKind::NoDownsample => NO_DOWNSAMPLE_MARK_FILENAME,
    }
}

/// `tools bucket mark`: puts (or with `--remove` takes away) a marker on each `--id`. Every
/// block is checked to exist first, so a typo in one ID changes nothing at all.
pub(crate) async fn mark(objstore_yaml: &str, args: &MarkArgs) -> Result<()> {
    let bucket = open_bucket(objstore_yaml, &BucketMetrics::unregistered())?;
    let remove = args.remove();
    if !remove && args.details.trim().is_empty() {
        bail!("--details is required when putting a marker: say why the block is marked");
    }
    for id in &args.ids {
        let found = fetch_meta(&bucket, id.0)
            .await
            .with_context(|| format!("reading {}/meta.json", id.0))?;
        if found.is_none() {
            bail!(
                "block {} not found in bucket {}: no {}/meta.json; nothing was marked",
                id.0,
                bucket.name(),
                id.0
            );
        }
    }
    let file = filename(args.marker);
    for id in &args.ids {
        let id = id.0;
        if remove {
            if remove_marker(&bucket, id, file).await? {
                tracing::info!(block = %id, marker = file, "removed marker");
            } else {
                tracing::warn!(block = %id, marker = file, "block has no such marker; nothing to remove");
            }
            continue;
        }
        let wrote = match args.marker {
            MarkerKind::Deletion => mark_for_deletion(&bucket, id, &args.details).await?,
            MarkerKind::NoCompact => {
                mark_no_compact(&bucket, id, MANUAL_REASON, &args.details).await?
            }
            MarkerKind::NoDownsample => {
                mark_no_downsample(&bucket, id, MANUAL_REASON, &args.details).await?
            }
        };
        if wrote {
            tracing::info!(block = %id, marker = file, "marked block");
        } else {
            tracing::info!(block = %id, marker = file, "block already carries this marker");
        }
    }
    Ok(())
}

fn config(args: &CleanupArgs) -> Result<CompactorConfig> {
    // The work directory is only used by downsampling, which these commands do not run.
    let mut cfg = CompactorConfig::new(std::env::temp_dir().join("strata-tools-bucket"));
    cfg.delete_delay_ms = args.delete_delay.as_millis_i64();
    cfg.consistency_delay_ms = args.consistency_delay.as_millis_i64();
    cfg.fetch_concurrency = args.block_sync_concurrency.max(1);
    cfg.selector = crate::cli::compact::selector(&args.selector_relabel)?;
    Ok(cfg)
}

/// `tools bucket cleanup`: deletes blocks whose deletion mark is older than `--delete-delay`,
/// and partial uploads older than the consistency rules allow.
pub(crate) async fn cleanup(objstore_yaml: &str, args: &CleanupArgs) -> Result<()> {
    let bucket = open_bucket(objstore_yaml, &BucketMetrics::unregistered())?;
    let cfg = config(args)?;
    let compactor = Compactor::new(
        bucket,
        cfg,
        CompactMetrics::register(&mut Registry::default()),
    );
    let report = compactor
        .run_cleanup(now_ms())
        .await
        .context("cleaning up the bucket")?;
    tracing::info!(
        deleted_blocks = report.deleted,
        deleted_partial_uploads = report.partial_deleted,
        "cleanup done"
    );
    Ok(())
}

/// `tools bucket retention`: marks blocks past their resolution's retention for deletion
/// (a later cleanup or compactor run deletes them).
pub(crate) async fn retention(objstore_yaml: &str, args: &RetentionArgs) -> Result<()> {
    let bucket = open_bucket(objstore_yaml, &BucketMetrics::unregistered())?;
    let mut cfg = config(&args.cleanup)?;
    cfg.retention_raw_ms = args.retention_raw.as_millis_i64();
    cfg.retention_5m_ms = args.retention_5m.as_millis_i64();
    cfg.retention_1h_ms = args.retention_1h.as_millis_i64();
    cfg.replica_labels = args
        .dedup_replica_labels
        .iter()
        .filter(|l| !l.is_empty())
        .cloned()
        .collect();
    if cfg.retention_raw_ms == 0 && cfg.retention_5m_ms == 0 && cfg.retention_1h_ms == 0 {
        tracing::warn!(
            "no --retention.resolution-* given: every resolution is kept forever, nothing to do"
        );
    }
    let compactor = Compactor::new(
        bucket,
        cfg,
        CompactMetrics::register(&mut Registry::default()),
    );
    let report = compactor
        .run_retention(now_ms())
        .await
        .context("applying retention")?;
    tracing::info!(
        marked_for_deletion = report.marked_for_deletion,
        "retention applied"
    );
    Ok(())
}

/// `tools bucket downsample`: downsamples every `--wait-interval` until SIGTERM, serving
/// probes and `/metrics` on `--http-address`.
pub(crate) async fn downsample(objstore_yaml: &str, args: &DownsampleArgs) -> Result<()> {
    let web_config = args.http.web_config()?;
    let shutdown = Shutdown::new();
    shutdown.listen_for_signals();
    let mut registry = Registry::default();
    let bucket = open_bucket(objstore_yaml, &BucketMetrics::register(&mut registry))?;
    let metrics = CompactMetrics::register(&mut registry);
    let registry = Arc::new(Mutex::new(registry));
    let data_dir = std::path::PathBuf::from(&args.data_dir);
    std::fs::create_dir_all(&data_dir).with_context(|| {
        format!(
            "creating the data directory {} (--data-dir)",
            data_dir.display()
        )
    })?;
    let mut cfg = CompactorConfig::new(data_dir);
    cfg.consistency_delay_ms = 0;
    cfg.downsample_concurrency = args.downsample_concurrency.max(1);
    cfg.hash_func = args.hash_func;
    cfg.block_files_concurrency = args.block_files_concurrency.max(1);
    let prober = Prober::new();
    let listener = Listener::bind(&args.http.http_address, web_config)
        .await
        .context("binding --http-address")?;
    let server = tokio::spawn(listener.serve(
        base_router(prober.clone(), registry.clone()),
        shutdown.clone(),
        Some(args.http.http_grace_period.to_std()),
    ));
    prober.set_healthy();
    prober.set_ready();
    let compactor = Compactor::new(bucket, cfg, metrics);
    let wait = std::time::Duration::from_millis(args.wait_interval.as_millis());
    loop {
        tokio::select! {
            r = compactor.run_downsampling(now_ms()) => match r {
                Ok(report) => tracing::info!(downsampled = report.downsamples, failed = report.failed.len(), "downsampling iteration done"),
                Err(e) => tracing::error!(error = %format_args!("{e:#}"), "downsampling iteration failed; retrying after --wait-interval"),
            },
            () = shutdown.wait() => break,
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.wait() => break,
        }
    }
    shutdown.trigger();
    if let Ok(Err(e)) = server.await {
        tracing::error!(error = %e, "HTTP server failed");
    }
    Ok(())
}

/// `tools bucket web`: the block viewer alone, refreshed every `--refresh`, showing the blocks
/// `--selector.relabel-config` keeps that overlap `--min-time`/`--max-time`. Marking from the
/// page's API is allowed unless `--disable-admin-operations`, as in Thanos' bucket UI.
pub(crate) async fn web(objstore_yaml: &str, args: &WebUiArgs) -> Result<()> {
    // Before anything else: a bad --http.config fails start-up at once.
    let web_config = args.http.web_config()?;
    log_web_flags_without_effect(&args.web);
    let rules = match args.selector_relabel.source().load()? {
        Some(text) => strata_block::relabel::parse_relabel_configs(&text)
            .context("parsing --selector.relabel-config")?,
        None => Vec::new(),
    };
    let shutdown = Shutdown::new();
    shutdown.listen_for_signals();
    let mut registry = Registry::default();
    let bucket = open_bucket(objstore_yaml, &BucketMetrics::register(&mut registry))?;
    let registry = Arc::new(Mutex::new(registry));
    let viewer = BlockViewer::new(
        bucket,
        ViewerOptions {
            title_label: args.label.clone(),
            admin: !args.admin.disable_admin_operations(),
            rules,
            time_range: Some((args.time_range.min_time, args.time_range.max_time)),
        },
    );
    viewer.spawn_refresher(
        std::time::Duration::from_millis(args.refresh.as_millis()),
        std::time::Duration::from_millis(args.timeout.as_millis()),
        shutdown.clone(),
    );
    let prober = Prober::new();
    let listener = Listener::bind(&args.http.http_address, web_config)
        .await
        .context("binding --http-address")?;
    let router = base_router(prober.clone(), registry)
        .merge(with_prefix(&args.web.web_route_prefix, viewer.router()));
    prober.set_healthy();
    prober.set_ready();
    listener
        .serve(router, shutdown, Some(args.http.http_grace_period.to_std()))
        .await
        .context("serving the bucket web UI")
}
