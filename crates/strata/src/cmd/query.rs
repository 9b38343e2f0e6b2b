//! `strata query`: the querier. PromQL and the Prometheus HTTP API over every Store API
//! endpoint (`--endpoint`, `--endpoint-strict`, `--store`, `--store.sd-files`, DNS
//! discovery), with replica deduplication, partial response and downsampled reads
//! (`strata-query`), and the querier's own Store API on `--grpc-address`.
//!
//! `--endpoint.sd-config-file` / `--endpoint.sd-config` take Thanos' endpoint config
//! (`endpoints:` entries of `address`, `strict`, `group` and `grpc_client_config`, an
//! endpoint's own TLS and compression instead of the `--grpc-client-*` flags'), re-read
//! from the file every `--endpoint.sd-config-reload-interval`; a malformed file at start-up
//! is an error, at a reload it is logged and the previous endpoints stay. `service_config`
//! is refused.
//! `--endpoint-group` / `--endpoint-group-strict` (and `group: true`) make one store of
//! the replicas an address resolves to, each call going to the next healthy member.
//!
//! The hidden developer flag `--debug.blocks-dir=DIR` serves the TSDB blocks in `DIR`
//! instead (the HTTP tests and `scripts/bench-promql.sh` use it).

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use prometheus_client::registry::Registry;
use strata_api::{
    ActiveQueryTracker, ApiConfig, BuildInfo, FixedStorage, StorageProvider, TenantConfig,
};
use strata_promql::{BlockStorage, Engine, EngineOptions};
use strata_query::{
    ClientConfig, Compression, ConnectionsCollector, EndpointSet, EndpointSetConfig, Fanout,
    Querier, QuerierConfig, QueryMetrics, QueryStoreService, SdConfigSource, SeriesLimits,
    TelemetryBuckets, TlsMinVersion,
};
use strata_runtime::http::{Listener, base_router};
use strata_runtime::{Prober, Shutdown};

use crate::cli::common::TlsVersion;
use crate::cli::common::accepted_without_effect;
use crate::cli::query::{
    GrpcCompression, PromqlEngine, QueryArgs, QueryDedupFunc, QueryMode, TenantCertificateField,
};

/// The feature flag that enables PromQL's experimental functions.
pub(crate) const EXPERIMENTAL_FUNCTIONS: &str = "promql-experimental-functions";

/// The endpoint set and fan-out from the flags.
fn endpoints(args: &QueryArgs) -> Result<(Arc<EndpointSet>, Fanout)> {
    // An empty `--endpoint.sd-config-file=` or `--endpoint.sd-config=` means "none", as
    // kingpin's path-or-content flags do in Thanos.
    let sd = &args.endpoint_sd_config;
    let sd_config = match (&sd.file, &sd.content) {
        (Some(p), _) if !p.as_os_str().is_empty() => Some(SdConfigSource::File(p.clone())),
        (_, Some(c)) if !c.is_empty() => Some(SdConfigSource::Inline(c.clone())),
        _ => None,
    };
    if sd_config.is_some() && args.endpoint_sd_config_reload_interval.is_zero() {
        anyhow::bail!(
            "--endpoint.sd-config-reload-interval=0s would re-read the endpoint config on \
             every probe; give a positive interval (default 5m)"
        );
    }
    let c = &args.grpc_client;
    let path = |s: &str| (!s.is_empty()).then(|| std::path::PathBuf::from(s));
    let client = ClientConfig {
        tls: c.grpc_client_tls_secure(),
        tls_skip_verify: c.grpc_client_tls_skip_verify(),
        cert: path(&c.grpc_client_tls_cert),
        key: path(&c.grpc_client_tls_key),
        ca: path(&c.grpc_client_tls_ca),
        server_name: (!c.grpc_client_server_name.is_empty())
            .then(|| c.grpc_client_server_name.clone()),
        min_version: match c.grpc_client_tls_min_version {
            TlsVersion::V1_0 => TlsMinVersion::V1_0,
            TlsVersion::V1_1 => TlsMinVersion::V1_1,
            TlsVersion::V1_2 => TlsMinVersion::V1_2,
            TlsVersion::V1_3 => TlsMinVersion::V1_3,
        },
        compression: match c.grpc_compression {
            GrpcCompression::None => Compression::None,
            GrpcCompression::Snappy => Compression::Snappy,
        },
    };
    let set = EndpointSet::new(EndpointSetConfig {
        endpoints: args
            .endpoints
            .iter()
            .chain(&args.stores)
            .chain(&args.rule_endpoints)
            .chain(&args.metadata_endpoints)
            .chain(&args.exemplar_endpoints)
            .chain(&args.target_endpoints)
            .cloned()
            .collect(),
        strict: args
            .endpoints_strict
            .iter()
            .chain(&args.stores_strict)
            .cloned()
            .collect(),
        groups: args.endpoint_groups.clone(),
        groups_strict: args.endpoint_groups_strict.clone(),
        sd_config,
        sd_config_interval: args.endpoint_sd_config_reload_interval.to_std(),
        sd_files: args.store_sd_files.clone(),
        sd_interval: args.store_sd_interval.to_std(),
        dns_interval: args.store_sd_dns_interval.to_std(),
        unhealthy_timeout: args.store_unhealthy_timeout.to_std(),
        info_timeout: args.endpoint_info_timeout.to_std(),
        probe_interval: std::time::Duration::from_secs(5).min(
            args.store_sd_dns_interval
                .to_std()
                .max(std::time::Duration::from_secs(1)),
        ),
        client,
        dns_server: None,
    })
    .context(
        "configuring endpoints (--endpoint, --endpoint-group, --endpoint.sd-config[-file], \
         --store, --grpc-client-*, --grpc-compression)",
    )?;
    let fanout = Fanout {
        endpoints: set.clone(),
        response_timeout: (!args.store_response_timeout.is_zero())
            .then(|| args.store_response_timeout.to_std()),
        max_wait: args.query_timeout.to_std(),
        limits: SeriesLimits {
            series: args.store_limits.request_series,
            samples: args.store_limits.request_samples,
        },
        selector: Arc::new(match args.selector_relabel.source().load()? {
            Some(yaml) => strata_block::relabel::parse_relabel_configs(&yaml)
                .context("parsing --selector.relabel-config[-file]")?,
            None => Vec::new(),
        }),
    };
    Ok((set, fanout))
}

/// Whose a request is (`--query.tenant-header`, `--query.default-tenant-id`), and the label
/// that `--query.enforce-tenancy` scopes every store call by (`--query.tenant-label-name`).
fn tenancy(args: &QueryArgs) -> Result<(TenantConfig, Option<String>)> {
    axum::http::HeaderName::from_bytes(args.tenant_header.as_bytes()).map_err(|_| {
        anyhow::anyhow!(
            "--query.tenant-header={:?} is not a valid HTTP header name",
            args.tenant_header
        )
    })?;
    let enforce = args.enforce_tenancy();
    if args.tenant_certificate_field != TenantCertificateField::None {
        if enforce {
            anyhow::bail!(
                "--query.tenant-certificate-field is not supported: the tenant would be taken \
                 from TLS client certificates, which Strata's query API does not see; with \
                 --query.enforce-tenancy, have the proxy in front set --query.tenant-header \
                 (default THANOS-TENANT) instead"
            );
        }
        tracing::warn!(
            "--query.tenant-certificate-field is not supported: a request's tenant is taken \
             from --query.tenant-header; only metrics' tenant labels differ from Thanos' \
             without --query.enforce-tenancy"
        );
    }
    let label = if enforce {
        let name = &args.tenant_label_name;
        let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            anyhow::bail!(
                "--query.tenant-label-name={name:?} is not a valid label name \
                 ([a-zA-Z_][a-zA-Z0-9_]*)"
            );
        }
        if args.debug_blocks_dir.is_some() {
            anyhow::bail!("--query.enforce-tenancy does not apply to --debug.blocks-dir");
        }
        Some(name.clone())
    } else {
        None
    };
    Ok((
        TenantConfig {
            header: args.tenant_header.clone(),
            default_tenant: args.default_tenant_id.clone(),
        },
        label,
    ))
}

/// The querier's Thanos flags that Strata does not act on: refused where serving without
/// them would expose or change what the user asked for, logged otherwise.
fn flags_without_effect(args: &QueryArgs) -> Result<()> {
    if args.promql_engine == PromqlEngine::Thanos {
        accepted_without_effect(
            "--query.promql-engine=thanos",
            "Strata has one PromQL engine, which answers as Prometheus' does",
        );
    }
    if args.enable_x_functions() {
        accepted_without_effect(
            "--query.enable-x-functions",
            "xrate, xincrease and xdelta are not implemented; queries using them fail with an \
             unknown-function error (Thanos enables them with --query.promql-engine=thanos only)",
        );
    }
    if args.query_mode == QueryMode::Distributed {
        accepted_without_effect(
            "--query.mode=distributed",
            "the querier fans out to its stores and evaluates the query itself; answers are \
             the same",
        );
    }
    if !args.partition_labels.is_empty() {
        accepted_without_effect(
            "--query.partition-label",
            "it only tunes --query.mode=distributed",
        );
    }
    if args.alert_query_url.is_some() {
        accepted_without_effect(
            "--alert.query-url",
            "the querier serves no alerts or rules to link from",
        );
    }
    for flag in args.hidden_switches_off_default() {
        let why = if flag.ends_with(".partial-response") {
            "the querier serves no status API from its endpoints"
        } else {
            "it concerns Thanos' own engine and distributed mode, which Strata does not have"
        };
        accepted_without_effect(flag, why);
    }
    for (flag, set) in [
        ("--grpc.proxy-strategy", args.grpc_proxy_strategy != "eager"),
        (
            "--store.sd-dns-resolver",
            args.store_sd_dns_resolver != "miekgdns",
        ),
        (
            "--inject-test-addresses",
            !args.inject_test_addresses.is_empty(),
        ),
        (
            "--query.lazy-retrieval-max-buffered-responses",
            args.lazy_retrieval_max_buffered_responses != 20,
        ),
    ] {
        if set {
            accepted_without_effect(
                flag,
                "Strata's fan-out streams every store's series as they come, and resolves names \
                 with the system's resolver configuration",
            );
        }
    }
    for f in args
        .enable_features
        .iter()
        .filter(|f| f.as_str() != EXPERIMENTAL_FUNCTIONS)
    {
        tracing::warn!(
            feature = %f,
            "--enable-feature: unknown feature; only {EXPERIMENTAL_FUNCTIONS} is known"
        );
    }
    Ok(())
}

pub(crate) async fn run(args: QueryArgs) -> Result<()> {
    // Before anything else: a bad --http.config fails start-up at once.
    let web_config = args.http.web_config()?;
    let request_log = args.request_logging.load()?;
    flags_without_effect(&args)?;
    // Every query frees its frames and samples; glibc's defaults would unmap the large ones
    // and fault them in again on the next query (see strata_runtime::alloc).
    strata_runtime::alloc::tune();
    let dedup_func = match args.dedup_func {
        QueryDedupFunc::Penalty => strata_dedup::Algorithm::Penalty,
        QueryDedupFunc::Chain => strata_dedup::Algorithm::Chain,
    };
    if args.max_concurrent_select == 0 {
        anyhow::bail!(
            "--query.max-concurrent-select=0 would let no query read from the stores; give \
             at least 1 (default 4)"
        );
    }
    let (tenancy, tenant_label) = tenancy(&args)?;
    let telemetry = TelemetryBuckets {
        duration_seconds: args.telemetry_duration_quantiles.clone(),
        samples: args.telemetry_samples_quantiles.clone(),
        series: args.telemetry_series_quantiles.clone(),
    };
    telemetry.check().map_err(anyhow::Error::msg)?;
    let registry = Arc::new(Mutex::new(Registry::default()));
    let mut endpoint_set = None;
    let storage: Arc<dyn StorageProvider> = match args.debug_blocks_dir.clone() {
        None => {
            let (set, fanout) = endpoints(&args)?;
            if args.endpoints.is_empty()
                && args.stores.is_empty()
                && args.endpoints_strict.is_empty()
                && args.stores_strict.is_empty()
                && args.store_sd_files.is_empty()
                && args.endpoint_groups.is_empty()
                && args.endpoint_groups_strict.is_empty()
                && !args.endpoint_sd_config.source().is_set()
            {
                // As Thanos does: a querier without stores starts and answers empty results.
                tracing::warn!("no endpoints configured; queries return empty results");
            }
            let conns = ConnectionsCollector::new(set.clone(), &args.conn_metric_labels)
                .map_err(anyhow::Error::msg)?;
            registry
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .register_collector(Box::new(conns));
            endpoint_set = Some((set, fanout.clone()));
            Arc::new(Querier::new(
                fanout,
                QuerierConfig {
                    replica_labels: args.replica_labels(),
                    dedup_func,
                    partial_response: args.partial_response(),
                    auto_downsampling: args.auto_downsampling(),
                    max_concurrent_select: args.max_concurrent_select,
                    instant_default_max_resolution_ms: args
                        .instant_default_max_source_resolution
                        .as_millis_i64(),
                    dynamic_lookback: args.dynamic_lookback_delta(),
                    api_partial: args.api_partial(),
                    tenant_label: tenant_label.clone(),
                    metrics: Some(QueryMetrics::register(
                        &telemetry,
                        &mut registry.lock().unwrap_or_else(|e| e.into_inner()),
                    )),
                },
                tokio::runtime::Handle::current(),
            ))
        }
        Some(dir) => {
            let storage = tokio::task::spawn_blocking(move || BlockStorage::open_dir(&dir))
                .await
                .context("opening blocks")?
                .context("opening the blocks given by --debug.blocks-dir")?;
            tracing::info!(
                blocks = storage.blocks().len(),
                "serving local blocks (--debug.blocks-dir)"
            );
            Arc::new(FixedStorage(Arc::new(storage)))
        }
    };

    let opts = EngineOptions {
        lookback_delta_ms: args
            .lookback_delta
            .filter(|d| !d.is_zero())
            .map_or(EngineOptions::default().lookback_delta_ms, |d| {
                d.as_millis_i64()
            }),
        subquery_step_ms: args.default_evaluation_interval.as_millis_i64(),
        experimental_functions: args
            .enable_features
            .iter()
            .any(|f| f == EXPERIMENTAL_FUNCTIONS),
        delayed_name_removal: false,
        ..EngineOptions::default()
    };
    let start_time_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let active_queries = if args.active_query_path.is_empty() {
        None
    } else {
        let dir = std::path::Path::new(&args.active_query_path);
        let (tracker, unfinished) = ActiveQueryTracker::open(dir, args.max_concurrent)
            .with_context(|| {
                format!(
                    "opening the active query log in {} (--query.active-query-path)",
                    dir.display()
                )
            })?;
        if let Some(q) = unfinished {
            // Prometheus' words, which Thanos logs too: what was running when the last run ended.
            tracing::info!(queries = %q, "These queries didn't finish in prometheus' last run:");
        }
        Some(tracker)
    };
    let (api, query_api) = strata_api::router_and_grpc(ApiConfig {
        engine: Engine::new(opts),
        storage,
        query_timeout: args.query_timeout.to_std(),
        max_concurrent: args.max_concurrent,
        flags: super::flag_values("query"),
        build: BuildInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            revision: String::new(),
            branch: String::new(),
            build_user: String::new(),
            build_date: String::new(),
            go_version: String::new(),
        },
        start_time_ms,
        cors: !args.web.web_disable_cors(),
        tenancy,
        metadata_default_range: args.metadata_default_time_range.to_std(),
        active_queries,
    });

    let shutdown = Shutdown::new();
    shutdown.listen_for_signals();
    let prober = Prober::new();
    let ui = strata_ui::router(strata_ui::UiConfig {
        route_prefix: args.web.web_route_prefix.clone(),
        external_prefix: args.web.web_external_prefix.clone(),
        prefix_header: args.web.web_prefix_header.clone(),
        partial_response: args.partial_response(),
        default_step_ms: args.default_step.as_millis_i64(),
        component: strata_ui::Component::Query,
    });
    let router = super::with_route_prefix(
        base_router(prober.clone(), registry).merge(api).merge(ui),
        &args.web.web_route_prefix,
    );
    let listener = Listener::bind(&args.http.http_address, web_config)
        .await
        .context("binding --http-address")?
        .with_request_log(request_log.clone());
    prober.set_healthy();
    let Some((set, fanout)) = endpoint_set else {
        prober.set_ready();
        listener
            .serve(router, shutdown, Some(args.http.http_grace_period.to_std()))
            .await
            .context("serving HTTP")?;
        return Ok(());
    };

    prober.set_not_ready("probing endpoints");
    let grpc = tokio::net::TcpListener::bind(&args.grpc.grpc_address)
        .await
        .with_context(|| format!("listening on {} (--grpc-address)", args.grpc.grpc_address))?;
    tracing::info!(address = %grpc.local_addr()?, "listening for gRPC (Store, Info, Query, Metadata, Rules, Exemplars and Targets APIs)");
    let mut grpc_opts = args.grpc.server_options()?;
    grpc_opts.request_log = request_log;
    let http_task = tokio::spawn(listener.serve(
        router,
        shutdown.clone(),
        Some(args.http.http_grace_period.to_std()),
    ));
    let grpc_task = {
        let shutdown = shutdown.clone();
        let svc = QueryStoreService::new(fanout).with_selector_labels(strata_model::Labels::new(
            args.selector_labels
                .iter()
                .map(|l| strata_model::Label::new(l.name.as_str(), l.value.as_str())),
        ));
        tokio::spawn(async move {
            strata_storepb::server::serve_with_query_api(
                grpc,
                svc.clone(),
                Some(svc),
                Some(query_api),
                grpc_opts,
                async move { shutdown.wait().await },
            )
            .await
        })
    };
    // Ready once every endpoint has been probed once, so the first queries see them all.
    tokio::select! {
        _ = set.update() => prober.set_ready(),
        _ = shutdown.wait() => {}
    }
    let probe_task = tokio::spawn(set.clone().run());
    shutdown.wait().await;
    prober.set_not_ready("shutting down");
    probe_task.abort();
    super::join_servers(Some(grpc_task), http_task).await
}
