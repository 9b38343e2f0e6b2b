//! Command bodies that are more than flag plumbing. The component `run()` functions in
//! [`crate::cli`] parse and validate flags, then call into here.

pub(crate) mod block_viewer;
pub(crate) mod compact;
pub(crate) mod query;
pub(crate) mod query_frontend;
pub(crate) mod rule;
pub(crate) mod sidecar;
pub(crate) mod store;
pub(crate) mod tools_bucket;
pub(crate) mod tools_bucket_lifecycle;
pub(crate) mod tools_bucket_replicate;
pub(crate) mod tools_bucket_rewrite;
pub(crate) mod tools_rules_check;

use std::collections::BTreeMap;

use clap::CommandFactory;

/// Every flag of `strata <subcommand>` with its effective value, for
/// `/api/v1/status/flags`: the value given on the command line, else the default.
pub(crate) fn flag_values(subcommand: &str) -> BTreeMap<String, String> {
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
    let sub = cmd.find_subcommand(subcommand).cloned();
    for arg in cmd
        .get_arguments()
        .chain(sub.iter().flat_map(|q| q.get_arguments()))
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

/// Serves `router` under `--web.route-prefix`, as Thanos does: `/` and `<prefix>/` redirect
/// to the prefix.
pub(crate) fn with_route_prefix(router: axum::Router, route_prefix: &str) -> axum::Router {
    let prefix = route_prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return router;
    }
    let prefix = if prefix.starts_with('/') {
        prefix.to_string()
    } else {
        format!("/{prefix}")
    };
    let home = {
        let to = prefix.clone();
        axum::routing::get(move || {
            let to = to.clone();
            async move { axum::response::Redirect::to(&to) }
        })
    };
    axum::Router::new()
        .route("/", home.clone())
        .route(&format!("{prefix}/"), home)
        .nest(&prefix, router)
}

/// Binds `--http-address` and `--grpc-address` (`what`: the gRPC APIs, for the log line), so
/// that a bad or taken address fails start-up before anything is served.
pub(crate) async fn bind_servers(
    http_address: &str,
    web_config: Option<std::sync::Arc<strata_runtime::web_config::WebConfig>>,
    grpc_address: &str,
    request_log: Option<std::sync::Arc<strata_runtime::request_log::RequestLog>>,
    what: &str,
) -> anyhow::Result<(strata_runtime::http::Listener, tokio::net::TcpListener)> {
    use anyhow::Context as _;
    let listener = strata_runtime::http::Listener::bind(http_address, web_config)
        .await
        .context("binding --http-address")?
        .with_request_log(request_log);
    let grpc = tokio::net::TcpListener::bind(grpc_address)
        .await
        .with_context(|| format!("listening on {grpc_address} (--grpc-address)"))?;
    tracing::info!(address = %grpc.local_addr()?, "listening for gRPC ({what})");
    Ok((listener, grpc))
}

/// Waits for the gRPC server (when it was started) and the HTTP server to finish, and
/// reports the first failure.
pub(crate) async fn join_servers(
    grpc: Option<tokio::task::JoinHandle<Result<(), strata_storepb::server::ServeError>>>,
    http: tokio::task::JoinHandle<Result<(), strata_runtime::http::ServeError>>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    if let Some(t) = grpc {
        t.await
            .context("gRPC server task")?
            .context("serving gRPC (--grpc-address)")?;
    }
    http.await
        .context("HTTP server task")?
        .context("serving HTTP")?;
    Ok(())
}
