//! `strata rule`: the process around [`strata_rule`]: rule groups evaluated against the
//! queriers, alerts sent to Alertmanagers, recorded series written to the remote-write
//! receivers (Thanos' stateless mode), and the HTTP (`/api/v1/rules`, `/api/v1/alerts`,
//! `/-/reload`, probes, metrics) and gRPC (Info, Rules) servers.
//!
//! Start-up order: everything that reads configuration (flags, rule files, Alertmanager,
//! remote-write and query configs) runs before a port is bound, so a mistake exits at once
//! with an error naming it; then the servers; then the rule groups. A reload (SIGHUP or
//! `POST /-/reload`) that finds a bad rule file keeps the rules already running.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use prometheus_client::registry::Registry;
use strata_api::{
    ApiConfig, BuildInfo, EncodedAnswer, RequestOptions, RulesQuery, RulesView, StorageProvider,
    TenantConfig,
};
use strata_model::{Label, Labels};
use strata_promql::{Engine, MemStorage, Storage, StorageError};
use strata_rule::manager::Manager;
use strata_rule::notifier::{Notifier, NotifierConfig, NotifierOptions};
use strata_rule::query::{QueriedForState, QueryClient, QueryClientOptions};
use strata_rule::remote_write::{RemoteWriteConfig, RemoteWriter};
use strata_rule::{Deps, GeneratorUrl, RestoreOptions, RuleOptions};
use strata_runtime::http::base_router;
use strata_runtime::{Prober, Shutdown};
use strata_storepb::server::RulesAnswers;
use strata_storepb::thanos::info::info_server::Info;
use strata_storepb::thanos::info::{InfoRequest, InfoResponse, RulesInfo};
use strata_storepb::thanos::rules_server::Rules;
use strata_storepb::thanos::{RulesRequest, RulesResponse, ZLabelSet, rules_response};
use tokio::task::JoinHandle;

use crate::cli::rule::{HttpMethod, RuleArgs};

/// How long one rule's query may take before the next querier is tried: Thanos' ruler has no
/// flag for it; the evaluation interval bounds it in practice.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2 * 60);

pub(crate) async fn run(args: RuleArgs) -> Result<()> {
    let web_config = args.http.web_config()?;
    let request_log = args.request_logging.load()?;
    let mut grpc_opts = args.grpc.server_options()?;
    grpc_opts.request_log = request_log.clone();

    let external_labels = Labels::new(
        args.labels
            .iter()
            .map(|l| Label::new(l.name.as_str(), l.value.as_str())),
    );

    // Queriers.
    let query_config = args.query_config.source().load()?;
    let has_query_config = query_config
        .as_deref()
        .is_some_and(|c| !c.trim().is_empty());
    if args.queries.is_empty() && args.query_sd_files.is_empty() && !has_query_config {
        bail!(
            "no --query parameter was given: the ruler needs queriers to evaluate its rules \
             against (--query, --query.sd-files or --query.config)"
        );
    }
    if has_query_config && (!args.queries.is_empty() || !args.query_sd_files.is_empty()) {
        bail!(
            "--query/--query.sd-files and --query.config* parameters cannot be defined at the same time"
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for q in &args.queries {
        if !seen.insert(q) {
            bail!("Address {q} is duplicated for --query flag.");
        }
    }
    if !args.grpc_query_endpoints.is_empty() {
        bail!(
            "--grpc-query-endpoint is not supported yet: give the queriers' HTTP addresses with \
             --query instead"
        );
    }
    let groups = strata_rule::query::querier_groups(
        &args.queries,
        &args.query_sd_files,
        query_config.as_deref(),
    )?;
    let querier = QueryClient::new(
        groups,
        QueryClientOptions {
            post: args.query_http_method == HttpMethod::Post,
            timeout: QUERY_TIMEOUT,
            dns_interval: args.query_sd_dns_interval.to_std(),
            sd_interval: args.query_sd_interval.to_std(),
        },
    )?;

    // Alertmanagers.
    let am_config = args.alertmanagers_config.source().load()?;
    let has_am_config = am_config.as_deref().is_some_and(|c| !c.trim().is_empty());
    if has_am_config && !args.alertmanager_urls.is_empty() {
        bail!(
            "--alertmanagers.url and --alertmanagers.config* parameters cannot be defined at the same time"
        );
    }
    let notifier_config = NotifierConfig::from_flags(
        &args.alertmanager_urls,
        args.alertmanagers_send_timeout.to_std(),
        am_config.as_deref(),
    )?;
    let relabel = match args.alert_relabel_config.source().load()? {
        Some(yaml) if !yaml.trim().is_empty() => {
            strata_block::relabel::parse_relabel_configs(&yaml).context("--alert.relabel-config")?
        }
        _ => Vec::new(),
    };
    let alert_query_url = args.alert_query_url.clone().unwrap_or_default();
    let generator = GeneratorUrl::new(&alert_query_url, &args.alert_query_template)
        .map_err(|e| anyhow::anyhow!("--alert.query-template: {e}"))?;

    // Where recorded series go: stateless mode only, for now.
    let rw_yaml = args.remote_write_config.source().load()?;
    let Some(rw_yaml) = rw_yaml.filter(|y| !y.trim().is_empty()) else {
        bail!(
            "the ruler's own TSDB (stateful mode) is not implemented yet: run it in Thanos' \
             stateless mode, with --remote-write.config or --remote-write.config-file naming \
             where recorded series and ALERTS go (a Prometheus with \
             --web.enable-remote-write-receiver, a Thanos Receive, or any remote-write receiver)"
        );
    };
    let rw_config = RemoteWriteConfig::from_yaml(&rw_yaml)?;
    if args.objstore.load_optional_yaml()?.is_some() {
        tracing::info!(
            "stateless mode: the ruler keeps no blocks, so nothing is uploaded to the bucket \
             (--objstore.config); recorded series go to the remote-write receivers"
        );
    }
    let stateless = "stateless mode keeps no TSDB and no blocks";
    for (flag, set) in [
        (
            "--tsdb.block-duration",
            args.tsdb_block_duration != strata_model::Duration::from_hours(2),
        ),
        (
            "--tsdb.retention",
            args.tsdb_retention != strata_model::Duration::from_hours(48),
        ),
        ("--tsdb.no-lockfile", args.tsdb_no_lockfile()),
        ("--no-tsdb.wal-compression", !args.tsdb_wal_compression()),
        (
            "--shipper.upload-compacted",
            args.shipper_upload_compacted(),
        ),
        (
            "--hash-func",
            args.hash_func != crate::cli::common::HashFunc::None,
        ),
    ] {
        if set {
            crate::cli::common::accepted_without_effect(flag, stateless);
        }
    }
    if args.rule_concurrent_evaluation != 1 {
        crate::cli::common::accepted_without_effect(
            "--rule-concurrent-evaluation",
            "the rules of a group are evaluated one after another",
        );
    }

    let mut registry = Registry::default();
    let notifier = Notifier::new(
        notifier_config,
        NotifierOptions {
            external_labels: external_labels.clone(),
            label_drop: args.alert_label_drop.clone(),
            relabel,
            dns_interval: args.alertmanagers_sd_dns_interval.to_std(),
            ..NotifierOptions::default()
        },
        &mut registry,
    )?;
    let writer = RemoteWriter::new(rw_config, external_labels.clone(), &mut registry)?;
    let metrics = strata_rule::metrics::RuleMetrics::new(&mut registry);
    let deps = Arc::new(Deps {
        querier: querier.clone(),
        appender: writer.clone(),
        alerts: notifier.clone(),
        options: RuleOptions {
            external_labels: external_labels.clone(),
            external_url: alert_query_url,
            generator,
            eval_interval: args.eval_interval.to_std(),
            query_offset: args.rule_query_offset.to_std(),
            resend_delay: args.resend_delay.to_std(),
            restore: Some(RestoreOptions {
                source: Arc::new(QueriedForState {
                    client: querier.clone(),
                    step: args.query_default_step.to_std(),
                    ignored_labels: args.restore_ignored_labels.clone(),
                }),
                outage_tolerance: args.for_outage_tolerance.to_std(),
                for_grace_period: args.for_grace_period.to_std(),
            }),
        },
        metrics,
    });
    if deps.options.eval_interval.is_zero() {
        bail!("--eval-interval must be positive");
    }
    // The queriers are known before the first evaluation.
    querier.refresh().await;
    let manager = Manager::new(deps, args.rule_files.clone());
    // The rule files are checked before anything starts, as Thanos does.
    manager
        .reload()
        .await
        .context("loading the rule files (--rule-file)")?;
    let registry = Arc::new(Mutex::new(registry));

    let shutdown = Shutdown::new();
    shutdown.listen_for_signals();
    let prober = Prober::new();
    let api = strata_api::rules_router(ApiConfig {
        engine: Engine::default(),
        storage: Arc::new(RulerApi {
            manager: manager.clone(),
            external_labels: external_labels.clone(),
        }),
        query_timeout: QUERY_TIMEOUT,
        max_concurrent: 1,
        flags: super::flag_values("rule"),
        build: BuildInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..BuildInfo::default()
        },
        start_time_ms: strata_rule::now_ms(),
        cors: !args.web.web_disable_cors(),
        tenancy: TenantConfig::default(),
        metadata_default_range: Duration::ZERO,
        active_queries: None,
    });
    let reload = {
        let manager = manager.clone();
        axum::routing::post(move || reload_handler(manager.clone()))
    };
    let router = base_router(prober.clone(), registry)
        .merge(api)
        .route("/-/reload", reload);
    let router = super::with_route_prefix(router, &args.web.web_route_prefix);
    let (listener, grpc) = super::bind_servers(
        &args.http.http_address,
        web_config,
        &args.grpc.grpc_address,
        request_log,
        "Info and Rules APIs",
    )
    .await?;

    let mut tasks: Vec<(&'static str, JoinHandle<()>)> = Vec::new();
    let http_task = tokio::spawn(listener.serve(
        router,
        shutdown.clone(),
        Some(args.http.http_grace_period.to_std()),
    ));
    let grpc_task = {
        let shutdown = shutdown.clone();
        let svc = RulerService {
            manager: manager.clone(),
            external_labels: external_labels.clone(),
        };
        tokio::spawn(async move {
            strata_storepb::server::serve_rules(grpc, svc, grpc_opts, async move {
                shutdown.wait().await
            })
            .await
        })
    };
    {
        let s = shutdown.clone();
        let q = querier.clone();
        tasks.push((
            "query discovery",
            tokio::spawn(q.run_discovery(async move { s.wait().await })),
        ));
    }
    {
        let s = shutdown.clone();
        tasks.push((
            "alert sender",
            tokio::spawn(notifier.clone().run(async move { s.wait().await })),
        ));
    }
    {
        let s = shutdown.clone();
        tasks.push((
            "remote write",
            tokio::spawn(writer.clone().run(async move { s.wait().await })),
        ));
    }
    tasks.push((
        "reload on SIGHUP",
        tokio::spawn(reload_on_sighup(manager.clone())),
    ));
    prober.set_healthy();
    prober.set_ready();
    tracing::info!("starting rule node");

    shutdown.wait().await;
    prober.set_not_ready("shutting down");
    tracing::info!("shutting down");
    manager.stop().await;
    for (name, t) in tasks {
        if name == "reload on SIGHUP" {
            t.abort();
        }
        if let Err(e) = t.await
            && !e.is_cancelled()
        {
            tracing::error!(task = name, error = %e, "task failed");
        }
    }
    super::join_servers(Some(grpc_task), http_task).await
}

/// `POST /-/reload`: 200 when the rule files loaded, 500 with the problems otherwise.
async fn reload_handler(manager: Arc<Manager>) -> axum::response::Response {
    match manager.reload().await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => {
            tracing::error!(error = %e, "reload rules by webhandler failed");
            (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
        }
    }
}

async fn reload_on_sighup(manager: Arc<Manager>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload with POST /-/reload");
        return;
    };
    while hup.recv().await.is_some() {
        if let Err(e) = manager.reload().await {
            tracing::error!(error = %e, "reload rules by sighup failed");
        }
    }
}

/// The manager's groups with the external labels on every rule, as Thanos' ruler shows them
/// (HA rulers' rules are then told apart by their replica label, and deduplicated by the
/// querier).
fn groups_with_external_labels(
    manager: &Manager,
    external_labels: &Labels,
) -> Vec<strata_storepb::thanos::RuleGroup> {
    let mut groups = manager.groups();
    strata_storepb::convert::add_external_labels_to_rules(&mut groups, external_labels);
    groups
}

/// The HTTP API's view of the ruler: rules and alerts only.
#[derive(Debug)]
struct RulerApi {
    manager: Arc<Manager>,
    external_labels: Labels,
}

impl StorageProvider for RulerApi {
    fn storage(&self, _: &RequestOptions) -> Arc<dyn Storage> {
        Arc::new(MemStorage::default())
    }

    fn rules(
        &self,
        query: RulesQuery,
        view: RulesView,
        _: &RequestOptions,
    ) -> futures::future::BoxFuture<'static, Result<EncodedAnswer, StorageError>> {
        let groups = groups_with_external_labels(&self.manager, &self.external_labels);
        Box::pin(async move { Ok(strata_query::rules::local_answer(groups, query, view)) })
    }
}

/// The gRPC Info and Rules services.
#[derive(Debug, Clone)]
struct RulerService {
    manager: Arc<Manager>,
    external_labels: Labels,
}

#[tonic::async_trait]
impl Info for RulerService {
    async fn info(
        &self,
        _: tonic::Request<InfoRequest>,
    ) -> Result<tonic::Response<InfoResponse>, tonic::Status> {
        let set = ZLabelSet {
            labels: self
                .external_labels
                .iter()
                .map(|l| strata_storepb::thanos::Label {
                    name: l.name.clone(),
                    value: l.value.clone(),
                })
                .collect(),
        };
        Ok(tonic::Response::new(InfoResponse {
            label_sets: if set.labels.is_empty() {
                vec![]
            } else {
                vec![set]
            },
            component_type: "rule".into(),
            rules: Some(RulesInfo {}),
            ..Default::default()
        }))
    }
}

#[tonic::async_trait]
impl Rules for RulerService {
    type RulesStream = RulesAnswers;

    async fn rules(
        &self,
        request: tonic::Request<RulesRequest>,
    ) -> Result<tonic::Response<Self::RulesStream>, tonic::Status> {
        let groups = groups_with_external_labels(&self.manager, &self.external_labels);
        let groups = strata_query::rules::filter_for_request(groups, request.get_ref());
        let msgs: Vec<Result<RulesResponse, tonic::Status>> = groups
            .into_iter()
            .map(|g| {
                Ok(RulesResponse {
                    result: Some(rules_response::Result::Group(g)),
                })
            })
            .collect();
        Ok(tonic::Response::new(futures::stream::iter(msgs)))
    }
}
