//! `strata compact`: the compactor's process around [`strata_compact::compactor::Compactor`]: the bucket,
//! the HTTP server (probes and `/metrics`), and the run-once or `--wait` loop.
//!
//! Exit behaviour, which Kubernetes Jobs and Deployments both rely on:
//! * without `--wait`: one iteration; exit 0 when it did all it could, non-zero when the
//!   iteration failed or a group is halted (so a CronJob shows the problem);
//! * with `--wait`: iterate every `--wait-interval` until SIGTERM. Transient failures (an
//!   unreachable bucket, a failed download) are logged and retried on the next iteration. A
//!   halted group (overlapping blocks without vertical compaction) stops only that group and
//!   sets `thanos_compact_halted` to 1, unless `--no-debug.halt-on-error` asks to exit instead.
//!   The group is checked again every iteration, so fixing the bucket resumes it without a
//!   restart (Thanos needs one).
//!
//! Every iteration ends by deleting the blocks whose deletion mark is past `--delete-delay`
//! and abandoned partial uploads. With `--wait`, that cleanup also runs every
//! `--compact.cleanup-interval` while waiting for the next iteration (`0s` turns this off), so
//! a long `--wait-interval` does not hold deletions back. Thanos runs it in the background
//! during iterations too; here it never overlaps an iteration, whose own cleanup would
//! otherwise race it for the same blocks.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use prometheus_client::registry::Registry;
use strata_compact::compactor::{Compactor, CompactorConfig, IterationReport};
use strata_compact::metrics::CompactMetrics;
use strata_objstore::{Bucket, BucketMetrics};
use strata_runtime::http::{Listener, base_router};
use strata_runtime::web_config::WebConfig;
use strata_runtime::{Prober, Shutdown};

use crate::cli::common::{WebArgs, accepted_without_effect};
use crate::cmd::block_viewer::{BlockViewer, ViewerOptions};

/// Everything the command needs, resolved from the flags.
pub(crate) struct CompactCommand {
    pub(crate) bucket_yaml: String,
    pub(crate) http_address: String,
    /// `--http-grace-period`.
    pub(crate) http_grace_period: Duration,
    /// `--http.config`.
    pub(crate) web_config: Option<std::sync::Arc<WebConfig>>,
    pub(crate) config: CompactorConfig,
    pub(crate) wait: bool,
    pub(crate) wait_interval: Duration,
    /// `--compact.cleanup-interval`: how often to clean up between iterations (zero: never).
    pub(crate) cleanup_interval: Duration,
    pub(crate) halt_on_error: bool,
    /// The block viewer on the HTTP port, unless `--web.disable`.
    pub(crate) viewer: Option<ViewerSettings>,
}

/// The block viewer's settings (`--block-viewer.global.*`, `--web.*`, `--bucket-web-label`).
pub(crate) struct ViewerSettings {
    pub(crate) options: ViewerOptions,
    pub(crate) route_prefix: String,
    pub(crate) sync_interval: Duration,
    pub(crate) sync_timeout: Duration,
}

/// Mounts `router` under `--web.route-prefix` (`""` or `/` mounts it at the root).
pub(crate) fn with_prefix(prefix: &str, router: axum::Router) -> axum::Router {
    let p = prefix.trim_end_matches('/');
    if p.is_empty() {
        router
    } else if p.starts_with('/') {
        axum::Router::new().nest(p, router)
    } else {
        axum::Router::new().nest(&format!("/{p}"), router)
    }
}

/// Logs the `--web.*` flags the block viewer has no use for, when given.
pub(crate) fn log_web_flags_without_effect(web: &WebArgs) {
    let relative = "the block viewer's links and redirects are relative, so they work under any \
                    prefix a proxy adds";
    if !web.web_external_prefix.is_empty() {
        accepted_without_effect("--web.external-prefix", relative);
    }
    if !web.web_prefix_header.is_empty() {
        accepted_without_effect("--web.prefix-header", relative);
    }
    if web.web_disable_cors() {
        accepted_without_effect(
            "--web.disable-cors",
            "the block viewer sets no CORS headers in any case",
        );
    }
}

/// The instant `d` from now; a duration too long to represent (a flag such as `1000000y`)
/// is as good as never.
fn after(d: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn summarize(report: &IterationReport) {
    tracing::info!(
        compactions = report.compactions,
        downsamples = report.downsamples,
        marked_for_deletion = report.marked_for_deletion,
        deleted = report.deleted,
        partial_uploads_deleted = report.partial_deleted,
        halted_groups = report.halted.len(),
        failed = report.failed.len(),
        "compaction iteration done"
    );
}

fn halted_list(report: &IterationReport) -> String {
    report
        .halted
        .iter()
        .map(|(g, why)| format!("{g}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl CompactCommand {
    pub(crate) async fn run(self) -> Result<()> {
        let shutdown = Shutdown::new();
        shutdown.listen_for_signals();

        let mut registry = Registry::default();
        let bucket_metrics = BucketMetrics::register(&mut registry);
        let bucket = Bucket::from_yaml(&self.bucket_yaml, &bucket_metrics)
            .context("opening the bucket given by --objstore.config-file/--objstore.config")?;
        let metrics = CompactMetrics::register(&mut registry);
        let registry = Arc::new(Mutex::new(registry));

        let data_dir: PathBuf = self.config.data_dir.clone();
        std::fs::create_dir_all(&data_dir).with_context(|| {
            format!(
                "creating the data directory {} (--data-dir)",
                data_dir.display()
            )
        })?;

        let prober = Prober::new();
        let listener = Listener::bind(&self.http_address, self.web_config.clone())
            .await
            .context("binding --http-address")?;
        let mut router = base_router(prober.clone(), registry.clone());
        if let Some(v) = &self.viewer {
            let viewer = BlockViewer::new(bucket.clone(), v.options.clone());
            viewer.spawn_refresher(v.sync_interval, v.sync_timeout, shutdown.clone());
            router = router.merge(with_prefix(&v.route_prefix, viewer.router()));
        }
        let server =
            tokio::spawn(listener.serve(router, shutdown.clone(), Some(self.http_grace_period)));
        prober.set_healthy();
        prober.set_ready();

        let compactor = Compactor::new(bucket, self.config.clone(), metrics);
        let result = self.iterate(&compactor, &shutdown).await;

        shutdown.trigger();
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "HTTP server failed"),
            Err(e) => tracing::error!(error = %e, "HTTP server task failed"),
        }
        result
    }

    async fn iterate(&self, compactor: &Compactor, shutdown: &Shutdown) -> Result<()> {
        loop {
            let outcome = tokio::select! {
                r = compactor.run_iteration(now_ms()) => r,
                () = shutdown.wait() => {
                    tracing::info!("interrupted; work in progress is abandoned and redone on the next start");
                    return Ok(());
                }
            };
            match outcome {
                Ok(report) => {
                    summarize(&report);
                    if !report.halted.is_empty() && (!self.halt_on_error || !self.wait) {
                        bail!(
                            "critical: compaction halted for {} group(s): {}. Enable vertical \
                             compaction with --deduplication.replica-label, or mark one of the \
                             overlapping blocks for deletion or no-compact \
                             (strata tools bucket mark)",
                            report.halted.len(),
                            halted_list(&report)
                        );
                    }
                    if !self.wait && !report.failed.is_empty() {
                        let failures = report
                            .failed
                            .iter()
                            .map(|(g, e)| format!("{g}: {e}"))
                            .collect::<Vec<_>>()
                            .join("; ");
                        bail!("compaction failed for some groups: {failures}");
                    }
                }
                Err(e) if self.wait => {
                    tracing::error!(error = %format_args!("{e:#}"), "compaction iteration failed; retrying after --wait-interval");
                }
                Err(e) => return Err(e).context("compaction iteration failed"),
            }
            if !self.wait {
                return Ok(());
            }
            if self.pause(compactor, shutdown).await {
                return Ok(());
            }
        }
    }

    /// Waits `--wait-interval` for the next iteration, cleaning up every
    /// `--compact.cleanup-interval` meanwhile. Returns whether shutdown was asked for.
    async fn pause(&self, compactor: &Compactor, shutdown: &Shutdown) -> bool {
        let next_iteration = after(self.wait_interval);
        loop {
            // The iteration ends with a cleanup too: one falling on (or after) the next
            // iteration's start would repeat it.
            let cleanup_at = after(self.cleanup_interval);
            if self.cleanup_interval.is_zero() || cleanup_at >= next_iteration {
                tokio::select! {
                    () = tokio::time::sleep_until(next_iteration) => return false,
                    () = shutdown.wait() => return true,
                }
            }
            tokio::select! {
                () = tokio::time::sleep_until(cleanup_at) => {}
                () = shutdown.wait() => return true,
            }
            let outcome = tokio::select! {
                r = compactor.run_cleanup(now_ms()) => r,
                () = shutdown.wait() => return true,
            };
            match outcome {
                Ok(report) if report.deleted + report.partial_deleted > 0 => tracing::info!(
                    deleted = report.deleted,
                    partial_uploads_deleted = report.partial_deleted,
                    "cleanup between iterations done (--compact.cleanup-interval)"
                ),
                Ok(_) => tracing::debug!("cleanup between iterations: nothing to delete"),
                Err(e) => tracing::error!(
                    error = %format_args!("{e:#}"),
                    "cleanup between iterations failed; retrying after --compact.cleanup-interval"
                ),
            }
        }
    }
}
