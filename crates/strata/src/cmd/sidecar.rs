//! `strata sidecar`: the process around [`strata_sidecar`]: the HTTP server (probes,
//! `/metrics`), the gRPC Store and Info APIs, the Prometheus heartbeat, the shipper and the
//! reloader, started in the order that lets each depend on the one before.
//!
//! Start-up order and why:
//! 1. Flags, the bucket and the Prometheus client are checked first: a mistake there exits at
//!    once with the flag named.
//! 2. The HTTP and gRPC ports are bound (a bad address also exits at once) and served; the
//!    probes say "healthy, not ready" and `/metrics` works from the first moment.
//! 3. The reloader starts before anything waits on Prometheus: Prometheus may need the file
//!    it renders to start at all.
//! 4. The external labels are awaited, retried every 2 s, for up to
//!    `--prometheus.ready_timeout`: an unreachable Prometheus or one without external labels is
//!    a log line per attempt, `thanos_sidecar_prometheus_up` and the reason on `/-/ready`; the
//!    process exits with that reason only when the timeout passes.
//! 5. With a bucket, Prometheus' block durations are checked (local compaction must be off),
//!    then the shipper starts. The heartbeat refreshes the labels from then on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use prometheus_client::registry::Registry;
use strata_objstore::{Bucket, BucketMetrics};
use strata_runtime::http::base_router;
use strata_runtime::{Prober, Shutdown};
use strata_sidecar::grpc::serve;
use strata_sidecar::prometheus::{RefreshError, check_block_durations};
use strata_sidecar::reloader::ReloadMethod;
use strata_sidecar::{
    Heartbeat, HeartbeatMetrics, HttpClientConfig, Limits, PromState, PrometheusClient,
    PrometheusStore, Reloader, ReloaderConfig, ReloaderMetrics, Shipper, ShipperConfig,
    ShipperMetrics,
};
use tokio::task::JoinHandle;

use crate::cli::sidecar::{ReloaderMethod, SidecarArgs};

/// Delay between start-up attempts to reach Prometheus (Thanos' value).
const STARTUP_RETRY: Duration = Duration::from_secs(2);

fn reloader_config(args: &SidecarArgs) -> Result<ReloaderConfig> {
    let non_empty = |s: &String| (!s.is_empty()).then(|| s.into());
    let config = ReloaderConfig {
        config_file: non_empty(&args.reloader_config_file),
        output_file: non_empty(&args.reloader_config_envsubst_file),
        rule_dirs: args.reloader_rule_dirs.iter().map(Into::into).collect(),
        watch_interval: args.reloader_watch_interval.to_std(),
        retry_interval: args.reloader_retry_interval.to_std(),
        method: match args.reloader_method {
            ReloaderMethod::Http => ReloadMethod::Http,
            ReloaderMethod::Signal => ReloadMethod::Signal {
                process_name: args.reloader_process_name.clone(),
            },
        },
    };
    if config.output_file.is_some() && config.config_file.is_none() {
        bail!(
            "--reloader.config-envsubst-file needs --reloader.config-file (the template to render)"
        );
    }
    if config.watch_interval.is_zero() {
        bail!("--reloader.watch-interval must be positive");
    }
    if config.retry_interval.is_zero() {
        bail!("--reloader.retry-interval must be positive");
    }
    Ok(config)
}

/// Runs the sidecar until SIGTERM/SIGINT.
pub(crate) async fn run(args: SidecarArgs) -> Result<()> {
    let web_config = args.http.web_config()?;
    let bucket_yaml = args.objstore.load_optional_yaml()?;
    let http_client = match args.prometheus_http_client.source().load()? {
        Some(yaml) => strata_sidecar::promclient::parse_http_client_config(&yaml)?,
        None => HttpClientConfig::default(),
    };
    let client = PrometheusClient::new(&args.prometheus_url, &http_client)?;
    let request_log = args.request_logging.load()?;
    let mut grpc_opts = args.grpc.server_options()?;
    grpc_opts.request_log = request_log.clone();
    let reloader = reloader_config(&args)?;
    let sync_interval = args.shipper_sync_interval.to_std();
    if sync_interval.is_zero() {
        bail!("--shipper.sync-interval must be positive");
    }

    let mut registry = Registry::default();
    let bucket_metrics = BucketMetrics::register(&mut registry);
    let bucket = match &bucket_yaml {
        Some(yaml) => Some(
            Bucket::from_yaml(yaml, &bucket_metrics)
                .context("opening the bucket given by --objstore.config-file/--objstore.config")?,
        ),
        None => {
            tracing::info!("no supported bucket was configured, uploads will be disabled");
            None
        }
    };
    let heartbeat_metrics = HeartbeatMetrics::register(&mut registry);
    let shipper_metrics = bucket
        .as_ref()
        .map(|_| ShipperMetrics::register(&mut registry, args.shipper.upload_compacted()));
    let reloader_metrics = ReloaderMetrics::register(&mut registry);
    let registry = Arc::new(Mutex::new(registry));

    let shutdown = Shutdown::new();
    shutdown.listen_for_signals();
    let prober = Prober::new();
    prober.set_not_ready("waiting for Prometheus' external labels");

    let (http, grpc) = super::bind_servers(
        &args.http.http_address,
        web_config,
        &args.grpc.grpc_address,
        request_log,
        "Store, Info, Metadata and Rules APIs",
    )
    .await?;

    let state = Arc::new(PromState::new(args.min_time));
    let store = PrometheusStore::new(
        client.clone(),
        state.clone(),
        Limits {
            series: args.store_limits.request_series,
            samples: args.store_limits.request_samples,
        },
    );
    let mut tasks: Vec<(&'static str, JoinHandle<()>)> = Vec::new();
    let http_task = tokio::spawn(http.serve(
        base_router(prober.clone(), registry),
        shutdown.clone(),
        Some(args.http.http_grace_period.to_std()),
    ));
    let grpc_task = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            serve(grpc, store, grpc_opts, async move { shutdown.wait().await }).await
        })
    };
    prober.set_healthy();

    if reloader.is_enabled() {
        let r = Reloader::new(reloader, client.clone(), reloader_metrics);
        tasks.push(("reloader", tokio::spawn(r.run(shutdown.token()))));
    }

    let heartbeat = Heartbeat {
        client: client.clone(),
        state: state.clone(),
        metrics: heartbeat_metrics,
        prober: prober.clone(),
        timeout: args.prometheus_get_config_timeout.to_std(),
    };
    tracing::info!(url = %client.base(), "starting sidecar");
    let started = start(
        &args,
        &heartbeat,
        &client,
        bucket,
        shipper_metrics,
        &state,
        &shutdown,
        sync_interval,
    )
    .await;
    match started {
        Ok(more) => tasks.extend(more),
        Err(e) => {
            shutdown.trigger();
            drain(tasks, grpc_task, http_task).await;
            return Err(e);
        }
    }
    let interval = args
        .prometheus_get_config_interval
        .to_std()
        .max(Duration::from_millis(100));
    {
        let (hb, token) = (heartbeat.clone(), shutdown.token());
        tasks.push((
            "heartbeat",
            tokio::spawn(async move { hb.run(interval, token).await }),
        ));
    }

    shutdown.wait().await;
    prober.set_not_ready("shutting down");
    tracing::info!("shutting down");
    drain(tasks, grpc_task, http_task).await;
    Ok(())
}

/// Waits for the external labels, checks Prometheus for shipping, and starts the shipper.
#[allow(clippy::too_many_arguments)]
async fn start(
    args: &SidecarArgs,
    heartbeat: &Heartbeat,
    client: &PrometheusClient,
    bucket: Option<Bucket>,
    shipper_metrics: Option<ShipperMetrics>,
    state: &Arc<PromState>,
    shutdown: &Shutdown,
    sync_interval: Duration,
) -> Result<Vec<(&'static str, JoinHandle<()>)>> {
    let ready_timeout = args.prometheus_ready_timeout.to_std();
    let token = shutdown.token();
    match heartbeat
        .wait_for_labels(ready_timeout, STARTUP_RETRY, &token)
        .await
    {
        None => return Ok(Vec::new()),
        Some(Ok(_)) => {}
        Some(Err(e @ RefreshError::NoExternalLabels { .. })) => {
            return Err(e).with_context(|| {
                format!("Prometheus still had no external labels after waiting {} (--prometheus.ready_timeout)", args.prometheus_ready_timeout)
            });
        }
        Some(Err(e)) => {
            return Err(e).with_context(|| {
                format!("aborting as no external labels found after waiting {} (--prometheus.ready_timeout); is Prometheus healthy and reachable at --prometheus.url?", args.prometheus_ready_timeout)
            });
        }
    }
    let (Some(bucket), Some(metrics)) = (bucket, shipper_metrics) else {
        return Ok(Vec::new());
    };
    // Shipping needs local compaction off; checked once Prometheus answers.
    let flags = loop {
        match client
            .flags(args.prometheus_get_config_timeout.to_std())
            .await
        {
            Ok(f) => break f,
            Err(e) => {
                tracing::warn!(error = %e, "failed to get Prometheus flags. Is Prometheus running? Retrying")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(STARTUP_RETRY) => {}
            () = shutdown.wait() => return Ok(Vec::new()),
        }
    };
    check_block_durations(&flags, args.shipper.ignore_unequal_block_size())
        .map_err(anyhow::Error::msg)
        .context("validating Prometheus' flags for block upload")?;
    let mut config = ShipperConfig::new(&args.tsdb_path);
    args.shipper.apply(&mut config);
    if !std::path::Path::new(&args.tsdb_path).is_dir() {
        tracing::error!(path = %args.tsdb_path, "--tsdb.path is not a directory: nothing can be shipped until it exists (it must be Prometheus' --storage.tsdb.path)");
    }
    let shipper = Shipper::new(config, bucket, state.clone(), metrics);
    let token = shutdown.token();
    Ok(vec![(
        "shipper",
        tokio::spawn(async move { shipper.run(sync_interval, token).await }),
    )])
}

async fn drain(
    tasks: Vec<(&'static str, JoinHandle<()>)>,
    grpc: JoinHandle<Result<(), strata_sidecar::grpc::ServeError>>,
    http: JoinHandle<Result<(), strata_runtime::http::ServeError>>,
) {
    for (name, t) in tasks {
        if let Err(e) = t.await {
            tracing::error!(task = name, error = %e, "task failed");
        }
    }
    match grpc.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "serving gRPC (--grpc-address) failed"),
        Err(e) => tracing::error!(error = %e, "gRPC server task failed"),
    }
    match http.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "serving HTTP failed"),
        Err(e) => tracing::error!(error = %e, "HTTP server task failed"),
    }
}
