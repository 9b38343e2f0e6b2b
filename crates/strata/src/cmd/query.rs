//! `strata query`: the Prometheus-compatible HTTP query API.
//!
//! Until the Store API fan-out lands (issue 5), the only data source is the hidden developer
//! flag `--debug.blocks-dir=DIR`, which serves the TSDB blocks in `DIR`. It is what the
//! HTTP tests and `scripts/bench-promql.sh` use.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use clap::CommandFactory;
use prometheus_client::registry::Registry;
use strata_api::{ApiConfig, BuildInfo};
use strata_promql::{BlockStorage, Engine, EngineOptions};
use strata_runtime::http::{Listener, base_router};
use strata_runtime::{Prober, Shutdown};

use crate::cli::query::QueryArgs;

/// The feature flag that enables PromQL's experimental functions.
const EXPERIMENTAL_FUNCTIONS: &str = "promql-experimental-functions";

pub(crate) async fn run(args: QueryArgs) -> Result<()> {
    let storage: Arc<dyn strata_promql::Storage> = match args.debug_blocks_dir.clone() {
        Some(dir) => {
            let storage = tokio::task::spawn_blocking(move || BlockStorage::open_dir(&dir))
                .await
                .context("opening blocks")?
                .context("opening the blocks given by --debug.blocks-dir")?;
            tracing::info!(
                blocks = storage.blocks().len(),
                "serving local blocks (--debug.blocks-dir)"
            );
            Arc::new(storage)
        }
        None => {
            // As Thanos does: a querier without stores starts and answers with empty results.
            tracing::warn!("no stores configured; queries return empty results");
            Arc::new(strata_promql::MemStorage::new())
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
    let api = strata_api::router(ApiConfig {
        engine: Engine::new(opts),
        storage,
        query_timeout: args.query_timeout.to_std(),
        max_concurrent: args.max_concurrent,
        flags: flag_values(),
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
    });

    let shutdown = Shutdown::new();
    shutdown.listen_for_signals();
    let registry = Arc::new(Mutex::new(Registry::default()));
    let prober = Prober::new();
    let mut router = base_router(prober.clone(), registry).merge(api);
    let prefix = args.web.web_route_prefix.trim_end_matches('/');
    if !prefix.is_empty() {
        let prefix = if prefix.starts_with('/') {
            prefix.to_string()
        } else {
            format!("/{prefix}")
        };
        router = axum::Router::new().nest(&prefix, router);
    }
    let listener = Listener::bind(&args.http.http_address)
        .await
        .context("binding --http-address")?;
    prober.set_healthy();
    prober.set_ready();
    listener
        .serve(router, shutdown)
        .await
        .context("serving HTTP")?;
    Ok(())
}

/// Every flag of `strata query` with its effective value, for `/api/v1/status/flags`:
/// the value given on the command line, else the default.
fn flag_values() -> BTreeMap<String, String> {
    let argv: Vec<String> = std::env::args().collect();
    let explicit = |long: &str| -> Option<String> {
        let eq = format!("--{long}=");
        let bare = format!("--{long}");
        let mut found = None;
        for (i, a) in argv.iter().enumerate() {
            if let Some(v) = a.strip_prefix(&eq) {
                found = Some(v.to_string());
            } else if *a == bare {
                found = Some(
                    argv.get(i + 1)
                        .filter(|n| !n.starts_with("--"))
                        .cloned()
                        .unwrap_or_else(|| "true".into()),
                );
            }
        }
        found
    };
    let cmd = crate::cli::Cli::command();
    let mut out = BTreeMap::new();
    let query = cmd.find_subcommand("query").cloned();
    for arg in cmd
        .get_arguments()
        .chain(query.iter().flat_map(|q| q.get_arguments()))
    {
        if arg.is_hide_set() {
            continue;
        }
        let Some(long) = arg.get_long() else { continue };
        let default = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(",");
        let value =
            explicit(long).unwrap_or(if default.is_empty() && !arg.get_action().takes_values() {
                "false".into()
            } else {
                default
            });
        out.insert(long.to_string(), value);
    }
    out
}
