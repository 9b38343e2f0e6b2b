//! `strata query-frontend`: the process around [`strata_frontend`]: flags checked as Thanos
//! checks them (same messages), the caches and the downstream client built, then one HTTP
//! server with the probes, `/metrics` and the frontend's routes.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use prometheus_client::registry::Registry;
use strata_frontend::cache::{CacheConfig, Compression, ResultsCache};
use strata_frontend::downstream::TripperConfig;
use strata_frontend::metrics::FrontendMetrics;
use strata_frontend::{Downstream, Frontend, FrontendConfig, LabelsConfig, RangeConfig};
use strata_runtime::http::base_router;
use strata_runtime::{Prober, Shutdown};
use strata_store::remote_cache::RemoteMetrics;

use crate::cli::common::accepted_without_effect;
use crate::cli::query_frontend::QueryFrontendArgs;

/// The frontend's settings from its flags, checked in Thanos' order and words.
fn frontend_config(
    args: &QueryFrontendArgs,
    range_cached: bool,
    labels_cached: bool,
) -> Result<FrontendConfig> {
    let range = RangeConfig {
        align_range_with_step: args.align_range_with_step(),
        split_interval: args.range_split_interval.to_std(),
        min_split_interval: args.range_min_split_interval.to_std(),
        max_split_interval: args.range_max_split_interval.to_std(),
        horizontal_shards: args.range_horizontal_shards,
        request_downsampled: args.request_downsampled(),
        max_retries: args.range_max_retries,
        max_query_length: args.range_max_query_length.to_std(),
        max_query_parallelism: args.range_max_query_parallelism,
        max_freshness: args.range_max_freshness.to_std(),
        partial_response: args.range_partial_response(),
    };
    range
        .validate(range_cached)
        .map_err(|e| anyhow::anyhow!("error validating the config: {e}"))?;
    let labels = LabelsConfig {
        split_interval: args.labels_split_interval.to_std(),
        max_retries: args.labels_max_retries,
        max_query_parallelism: args.labels_max_query_parallelism,
        max_freshness: args.labels_max_freshness.to_std(),
        partial_response: args.labels_partial_response(),
        default_time_range: args.labels_default_time_range.to_std(),
    };
    if labels_cached && labels.split_interval.is_zero() {
        bail!(
            "error validating the config: split queries interval should be greater than 0  when \
             caching is enabled"
        );
    }
    if labels.default_time_range.is_zero() {
        bail!("error validating the config: labels.default-time-range cannot be set to 0");
    }
    if args.downstream_url.is_empty() {
        bail!("error validating the config: downstream URL should be configured");
    }
    if args.range_max_query_parallelism == 0 || args.labels_max_query_parallelism == 0 {
        bail!(
            "--query-range.max-query-parallelism and --labels.max-query-parallelism must be at \
             least 1 (0 would leave no request to run)"
        );
    }
    let log_queries_longer_than = match args.log_queries_longer_than.trim() {
        "" | "0" => None,
        s if s.starts_with('-') => Some(std::time::Duration::ZERO),
        s => {
            let d = strata_model::Duration::parse_go(s)
                .or_else(|_| strata_model::Duration::parse_prometheus(s))
                .with_context(|| format!("--query-frontend.log-queries-longer-than {s:?}"))?;
            (!d.is_zero()).then(|| d.to_std())
        }
    };
    // Thanos: a custom tenant header joins the org id headers; both kinds at once are an
    // error.
    let mut org_id_headers = args.org_id_headers.clone();
    let custom_tenant = !args.tenant_header.is_empty()
        && !args
            .tenant_header
            .eq_ignore_ascii_case(strata_frontend::TENANT_HEADER);
    if custom_tenant {
        if !org_id_headers.is_empty() {
            bail!(
                "query-frontend.org-id-header and query-frontend.tenant-header cannot be used \
                 together"
            );
        }
        org_id_headers.push(args.tenant_header.clone());
    }
    Ok(FrontendConfig {
        range,
        labels,
        compress_responses: args.compress_responses,
        log_queries_longer_than,
        org_id_headers,
        forward_headers: args.forward_headers.clone(),
        tenant_header: if args.tenant_header.is_empty() {
            strata_frontend::TENANT_HEADER.to_string()
        } else {
            args.tenant_header.clone()
        },
        default_tenant: args.default_tenant.clone(),
        slow_query_logs_user_header: Some(args.slow_query_logs_user_header.clone())
            .filter(|h| !h.is_empty()),
        disable_cors: args.web_disable_cors,
    })
}

/// Logs the flags that Strata accepts but does not act on, with why.
fn log_flags_without_effect(args: &QueryFrontendArgs) {
    if args.enable_x_functions {
        accepted_without_effect(
            "--query-frontend.enable-x-functions",
            "the frontend does not parse queries: the querier's --query.enable-x-functions \
             decides whether x-functions are known",
        );
    }
    if args.force_query_stats {
        accepted_without_effect(
            "--query-frontend.force-query-stats",
            "Strata's querier does not count samples per query, so there are no stats",
        );
    }
    if args.vertical_shards.is_some_and(|n| n > 1) {
        accepted_without_effect(
            "--query-frontend.vertical-shards",
            "queries are not sharded by series; they are split by time and cached",
        );
    }
    if args.tenant_certificate_field.is_some() {
        accepted_without_effect(
            "--query-frontend.tenant-certificate-field",
            "the tenant is read from the tenant header",
        );
    }
}

/// Runs the query frontend until SIGTERM/SIGINT.
pub(crate) async fn run(args: QueryFrontendArgs) -> Result<()> {
    // Answers of tens of megabytes are read, joined and freed per request, as in the
    // querier: the same allocator settings keep them from staying resident.
    strata_runtime::alloc::tune();
    let web_config = args.http.web_config()?;
    let request_log = args.request_logging.load()?;
    let compression = match args.cache_compression_type.as_str() {
        "" => Compression::None,
        "snappy" => Compression::Snappy,
        other => bail!(
            "error validating the config: unsupported compression type: {other} \
             (--cache-compression-type is 'snappy' or '')"
        ),
    };
    let range_cache_config = match args.range_cache.source().load()? {
        Some(text) => CacheConfig::from_yaml(&text)
            .map_err(|e| anyhow::anyhow!("initializing the query range cache config: {e}"))?,
        None => None,
    };
    let labels_cache_config = match args.labels_cache.source().load()? {
        Some(text) => CacheConfig::from_yaml(&text)
            .map_err(|e| anyhow::anyhow!("initializing the labels cache config: {e}"))?,
        None => None,
    };
    let config = frontend_config(
        &args,
        range_cache_config.is_some(),
        labels_cache_config.is_some(),
    )?;
    log_flags_without_effect(&args);
    let tripper = TripperConfig::from_yaml(&args.tripper.source().load()?.unwrap_or_default())
        .map_err(anyhow::Error::msg)?;
    let client = tripper
        .client()
        .map_err(|e| anyhow::anyhow!("--query-frontend.downstream-tripper-config: {e}"))?;
    strata_frontend::downstream::check_url(&args.downstream_url)
        .map_err(|e| anyhow::anyhow!("--query-frontend.downstream-url {e}"))?;

    let mut registry = Registry::default();
    let remote_configs: Vec<_> = [&range_cache_config, &labels_cache_config]
        .into_iter()
        .filter_map(|c| match c {
            Some(CacheConfig::Remote { client, .. }) => Some(client),
            _ => None,
        })
        .collect();
    let remote_metrics = RemoteMetrics::new(Some(&mut registry), &remote_configs);
    let make_cache =
        |name: &'static str, c: &Option<CacheConfig>| -> Result<Option<ResultsCache>> {
            c.as_ref()
                .map(|c| {
                    ResultsCache::new(name, c, compression, &remote_metrics)
                        .map_err(|e| anyhow::anyhow!("creating the {name} results cache: {e}"))
                })
                .transpose()
        };
    let range_cache = make_cache("query-range", &range_cache_config)?;
    let labels_cache = make_cache("labels", &labels_cache_config)?;
    let metrics = FrontendMetrics::new(Some(&mut registry));
    let registry = Arc::new(Mutex::new(registry));

    let frontend = Arc::new(Frontend {
        config,
        // Retries are set per request kind (`--query-range.max-retries-per-request`, …).
        downstream: Downstream::new(client, args.downstream_url.as_str()),
        range_cache,
        labels_cache,
        metrics,
    });

    let shutdown = Shutdown::new();
    shutdown.listen_for_signals();
    let prober = Prober::new();
    let listener = strata_runtime::http::Listener::bind(&args.http.http_address, web_config)
        .await
        .context("binding --http-address")?
        .with_request_log(request_log);
    let router = base_router(prober.clone(), registry).merge(strata_frontend::router(frontend));
    let http = tokio::spawn(listener.serve(
        router,
        shutdown.clone(),
        Some(args.http.http_grace_period.to_std()),
    ));
    prober.set_healthy();
    prober.set_ready();
    tracing::info!(downstream = %args.downstream_url, "starting query frontend");
    shutdown.wait().await;
    prober.set_not_ready("shutting down");
    tracing::info!("shutting down");
    http.await
        .context("HTTP server task")?
        .context("serving HTTP")?;
    Ok(())
}
