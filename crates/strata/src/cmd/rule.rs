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
use strata_objstore::{Bucket, BucketMetrics};
use strata_promql::{Engine, MemStorage, Storage, StorageError};
use strata_rule::manager::Manager;
use strata_rule::notifier::{Notifier, NotifierConfig, NotifierOptions};
use strata_rule::query::{QueriedForState, QueryClient, QueryClientOptions};
use strata_rule::remote_write::{RemoteWriteConfig, RemoteWriter};
use strata_rule::storage::{DurableStorage, LocalStorage, LocalStorageOptions, RuleWal};
use strata_rule::{Deps, GeneratorUrl, RestoreOptions, RuleOptions};
use strata_runtime::http::base_router;
use strata_runtime::{Prober, Shutdown};
use strata_sidecar::prometheus::PromState;
use strata_sidecar::shipper::{Shipper, ShipperConfig, ShipperMetrics};
use strata_storepb::server::RulesAnswers;
use strata_storepb::thanos::info::info_server::Info;
use strata_storepb::thanos::info::{InfoRequest, InfoResponse, RulesInfo};
use strata_storepb::thanos::rules_server::Rules;
use strata_storepb::thanos::store_server::Store;
use strata_storepb::thanos::{
    LabelNamesRequest, LabelNamesResponse, LabelValuesRequest, LabelValuesResponse, SeriesRequest,
};
use strata_storepb::thanos::{RulesRequest, RulesResponse, ZLabelSet, rules_response};
use tokio::task::JoinHandle;

use crate::cli::rule::{HttpMethod, RuleArgs};

/// How long one rule's query may take before the next querier is tried: Thanos' ruler has no
/// flag for it; the evaluation interval bounds it in practice.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2 * 60);

/// Logs the flags the ruler accepts as Thanos does but does not act on, with why.
fn rule_flags_without_effect(args: &RuleArgs) {
    if args.query_enable_x_functions() {
        crate::cli::common::accepted_without_effect(
            "--query.enable-x-functions",
            "xrate, xincrease and xdelta are not implemented: rule files using them fail to load",
        );
    }
    for f in args
        .enable_features
        .iter()
        .filter(|f| f.as_str() != super::query::EXPERIMENTAL_FUNCTIONS)
    {
        tracing::warn!(
            feature = %f,
            "--enable-feature: unknown feature; only {} is known",
            super::query::EXPERIMENTAL_FUNCTIONS
        );
    }
    if args.native_histograms_flag_given() {
        crate::cli::common::accepted_without_effect(
            "--tsdb.enable-native-histograms",
            "deprecated in Thanos, where it does nothing either",
        );
    }
    if args.query_sd_dns_resolver != "miekgdns" {
        crate::cli::common::accepted_without_effect(
            "--query.sd-dns-resolver",
            "names are resolved with the system's resolver configuration whichever is named",
        );
    }
    if args.shipper.ignore_unequal_block_size() {
        crate::cli::common::accepted_without_effect(
            "--shipper.ignore-unequal-block-size",
            "the ruler cuts its own blocks: there are no Prometheus block sizes to check",
        );
    }
}

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
    if args.queries.is_empty()
        && args.query_sd_files.is_empty()
        && args.grpc_query_endpoints.is_empty()
        && !has_query_config
    {
        bail!(
            "no --query parameter was given: the ruler needs queriers to evaluate its rules \
             against (--query, --query.sd-files, --grpc-query-endpoint or --query.config)"
        );
    }
    if has_query_config
        && (!args.queries.is_empty()
            || !args.query_sd_files.is_empty()
            || !args.grpc_query_endpoints.is_empty())
    {
        bail!(
            "--query/--query.sd-files/--grpc-query-endpoint and --query.config* parameters \
             cannot be defined at the same time"
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for q in &args.queries {
        if !seen.insert(q) {
            bail!("Address {q} is duplicated for --query flag.");
        }
    }
    let groups = strata_rule::query::querier_groups(
        &args.queries,
        &args.query_sd_files,
        query_config.as_deref(),
    )?;
    let grpc_queriers = args
        .grpc_query_endpoints
        .iter()
        .map(|a| {
            strata_runtime::dns::AddressSpec::parse(a)
                .map_err(|e| anyhow::anyhow!("--grpc-query-endpoint {a:?}: {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let querier = QueryClient::new(
        groups,
        grpc_queriers,
        QueryClientOptions {
            only_prometheus_params: args.query_only_prometheus_params(),
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

    rule_flags_without_effect(&args);

    // Where recorded series go: a remote-write receiver (Thanos' stateless mode) or the
    // ruler's own TSDB in --data-dir (its default).
    let rw_yaml = args
        .remote_write_config
        .source()
        .load()?
        .filter(|y| !y.trim().is_empty());
    let bucket_yaml = args.objstore.load_optional_yaml()?;
    let rw_config = match &rw_yaml {
        Some(yaml) => Some(RemoteWriteConfig::from_yaml(yaml)?),
        None => None,
    };
    if rw_config.is_some() {
        if bucket_yaml.is_some() {
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
                args.shipper.upload_compacted(),
            ),
            (
                "--hash-func",
                args.shipper.hash_func != crate::cli::common::HashFunc::None,
            ),
            (
                "--store.limits.request-series",
                args.store_limits.request_series != 0,
            ),
            (
                "--store.limits.request-samples",
                args.store_limits.request_samples != 0,
            ),
        ] {
            if set {
                crate::cli::common::accepted_without_effect(flag, stateless);
            }
        }
    } else {
        if bucket_yaml.is_some() && external_labels.is_empty() {
            bail!(
                "--label is required to upload blocks (--objstore.config): the ruler's blocks \
                 need external labels that tell them apart in the bucket, e.g. \
                 --label='replica=\"ruler-0\"'"
            );
        }
        if args.tsdb_block_duration.is_zero() {
            bail!("--tsdb.block-duration must be positive");
        }
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
    let storage = match rw_config {
        Some(cfg) => RuleStorage::Remote(RemoteWriter::new(
            cfg,
            external_labels.clone(),
            &mut registry,
        )?),
        None => RuleStorage::open_local(
            &args,
            &external_labels,
            bucket_yaml.as_deref(),
            &mut registry,
        )?,
    };
    let restore_source: Arc<dyn strata_rule::ForStateSource> = match &storage {
        RuleStorage::Remote(_) => Arc::new(QueriedForState {
            client: querier.clone(),
            step: args.query_default_step.to_std(),
            ignored_labels: args.restore_ignored_labels.clone(),
        }),
        RuleStorage::Local { durable, .. } => durable.storage.clone(),
    };
    let metrics = strata_rule::metrics::RuleMetrics::new(&mut registry);
    let deps = Arc::new(Deps {
        querier: querier.clone(),
        appender: storage.appender(),
        alerts: notifier.clone(),
        options: RuleOptions {
            external_labels: external_labels.clone(),
            external_url: alert_query_url,
            generator,
            eval_interval: args.eval_interval.to_std(),
            query_offset: args.rule_query_offset.to_std(),
            resend_delay: args.resend_delay.to_std(),
            restore: Some(RestoreOptions {
                source: restore_source,
                outage_tolerance: args.for_outage_tolerance.to_std(),
                for_grace_period: args.for_grace_period.to_std(),
            }),
            experimental_functions: args
                .enable_features
                .iter()
                .any(|f| f == super::query::EXPERIMENTAL_FUNCTIONS),
        },
        metrics,
        // As Thanos: above 1, that many rules (of all groups) may be evaluated at once.
        rule_slots: (args.rule_concurrent_evaluation > 1)
            .then(|| Arc::new(tokio::sync::Semaphore::new(args.rule_concurrent_evaluation))),
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
    let ui = strata_ui::router(strata_ui::UiConfig {
        route_prefix: args.web.web_route_prefix.clone(),
        external_prefix: args.web.web_external_prefix.clone(),
        prefix_header: args.web.web_prefix_header.clone(),
        component: strata_ui::Component::Rule,
        ..strata_ui::UiConfig::default()
    });
    let router = base_router(prober.clone(), registry)
        .merge(api)
        .merge(ui)
        .route("/-/reload", reload);
    let router = super::with_route_prefix(router, &args.web.web_route_prefix);
    let (listener, grpc) = super::bind_servers(
        &args.http.http_address,
        web_config,
        &args.grpc.grpc_address,
        request_log,
        match &storage {
            RuleStorage::Remote(_) => "Info and Rules APIs",
            RuleStorage::Local { .. } => "Store, Info and Rules APIs",
        },
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
        let rules = RulerService {
            manager: manager.clone(),
            external_labels: external_labels.clone(),
        };
        match &storage {
            RuleStorage::Remote(_) => tokio::spawn(async move {
                strata_storepb::server::serve_rules(grpc, rules, grpc_opts, async move {
                    shutdown.wait().await
                })
                .await
            }),
            RuleStorage::Local { durable, .. } => {
                let svc = StatefulService {
                    store: durable.storage.store_service().with_limits(
                        strata_storepb::limits::RequestLimits {
                            series: args.store_limits.request_series,
                            samples: args.store_limits.request_samples,
                        },
                    ),
                    rules,
                };
                tokio::spawn(async move {
                    strata_storepb::server::serve_store_and_rules(
                        grpc,
                        svc,
                        grpc_opts,
                        async move { shutdown.wait().await },
                    )
                    .await
                })
            }
        }
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
    match &storage {
        RuleStorage::Remote(writer) => {
            let s = shutdown.clone();
            tasks.push((
                "remote write",
                tokio::spawn(writer.clone().run(async move { s.wait().await })),
            ));
        }
        RuleStorage::Local { durable, shipper } => {
            let s = shutdown.clone();
            tasks.push((
                "block cutting and retention",
                tokio::spawn(durable.storage.clone().run(async move { s.wait().await })),
            ));
            let s = shutdown.clone();
            tasks.push((
                "WAL checkpoints",
                tokio::spawn(
                    durable
                        .wal
                        .clone()
                        .run_checkpoints(durable.storage.clone(), async move { s.wait().await }),
                ),
            ));
            if let Some(shipper) = shipper.clone() {
                let token = shutdown.token();
                tasks.push((
                    "shipper",
                    tokio::spawn(async move { shipper.run(SHIPPER_INTERVAL, token).await }),
                ));
            }
        }
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
    if let RuleStorage::Local { durable, .. } = &storage
        && let Err(e) = durable.wal.sync(&durable.storage)
    {
        tracing::error!(error = %e, "syncing the WAL at shutdown failed");
    }
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

/// How often the shipper looks for new blocks (Thanos' ruler: every 30 s).
const SHIPPER_INTERVAL: Duration = Duration::from_secs(30);

/// Where the ruler's recorded series go.
enum RuleStorage {
    /// Thanos' stateless mode: out over remote write.
    Remote(Arc<RemoteWriter>),
    /// Thanos' default: the ruler's own TSDB in `--data-dir` (head, WAL, blocks), served over
    /// the Store API and shipped to the bucket when one is configured.
    Local {
        durable: Arc<DurableStorage>,
        shipper: Option<Arc<Shipper>>,
    },
}

impl RuleStorage {
    /// Opens `--data-dir`: takes its lock (unless `--tsdb.no-lockfile`), loads its blocks,
    /// replays its WAL, and sets up the shipper for `bucket_yaml`.
    fn open_local(
        args: &RuleArgs,
        external_labels: &Labels,
        bucket_yaml: Option<&str>,
        registry: &mut Registry,
    ) -> Result<RuleStorage> {
        let dir = std::path::PathBuf::from(&args.data_dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating --data-dir {}", dir.display()))?;
        if !args.tsdb_no_lockfile() {
            lock_data_dir(&dir)?;
        }
        let storage = LocalStorage::open(
            &dir,
            LocalStorageOptions {
                block_duration: args.tsdb_block_duration.to_std(),
                retention: args.tsdb_retention.to_std(),
                external_labels: external_labels.clone(),
                // Often enough that a block is cut soon after it is due, whatever its length.
                maintenance_interval: (args.tsdb_block_duration.to_std() / 4)
                    .clamp(Duration::from_secs(1), Duration::from_secs(60)),
            },
            registry,
        )?;
        let (wal, stats) =
            RuleWal::open_and_replay(&dir.join("wal"), args.tsdb_wal_compression(), &storage)
                .with_context(|| format!("replaying the WAL in {}", dir.join("wal").display()))?;
        tracing::info!(
            series = stats.series,
            samples = stats.samples,
            dropped = stats.dropped,
            "WAL replayed"
        );
        storage.set_wal_hook(wal.clone());
        let shipper = match bucket_yaml {
            None => {
                tracing::info!("no supported bucket was configured, uploads will be disabled");
                None
            }
            Some(yaml) => {
                let bucket_metrics = BucketMetrics::register(registry);
                let bucket = Bucket::from_yaml(yaml, &bucket_metrics).context(
                    "opening the bucket given by --objstore.config-file/--objstore.config",
                )?;
                let state = Arc::new(PromState::new(strata_model::TimeOrDuration::min_time()));
                state.set_external_labels(external_labels.clone());
                let mut config = ShipperConfig::new(&dir);
                config.source = strata_block::transfer::SOURCE_RULER.into();
                args.shipper.apply(&mut config);
                let metrics = ShipperMetrics::register(registry, args.shipper.upload_compacted());
                Some(Arc::new(Shipper::new(config, bucket, state, metrics)))
            }
        };
        Ok(RuleStorage::Local {
            durable: Arc::new(DurableStorage { storage, wal }),
            shipper,
        })
    }

    fn appender(&self) -> Arc<dyn strata_rule::Appender> {
        match self {
            RuleStorage::Remote(w) => w.clone(),
            RuleStorage::Local { durable, .. } => durable.clone(),
        }
    }
}

/// Holds `--data-dir/lock` for the life of the process (as Prometheus' TSDB does), so that a
/// second ruler on the same directory fails at start instead of interleaving its WAL.
fn lock_data_dir(dir: &std::path::Path) -> Result<()> {
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            // Held until exit: the descriptor is leaked on purpose.
            std::mem::forget(file);
            Ok(())
        }
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "{} is locked by another process: two rulers cannot share --data-dir (give each its \
             own, or stop the other one)",
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// The Store and Info APIs of the local storage and the manager's Rules API, on one server.
#[derive(Debug, Clone)]
struct StatefulService {
    store: strata_rule::storage::LocalStore,
    rules: RulerService,
}

#[tonic::async_trait]
impl Store for StatefulService {
    type SeriesStream = <strata_rule::storage::LocalStore as Store>::SeriesStream;

    async fn series(
        &self,
        request: tonic::Request<SeriesRequest>,
    ) -> Result<tonic::Response<Self::SeriesStream>, tonic::Status> {
        self.store.series(request).await
    }

    async fn label_names(
        &self,
        request: tonic::Request<LabelNamesRequest>,
    ) -> Result<tonic::Response<LabelNamesResponse>, tonic::Status> {
        self.store.label_names(request).await
    }

    async fn label_values(
        &self,
        request: tonic::Request<LabelValuesRequest>,
    ) -> Result<tonic::Response<LabelValuesResponse>, tonic::Status> {
        self.store.label_values(request).await
    }
}

#[tonic::async_trait]
impl Info for StatefulService {
    async fn info(
        &self,
        request: tonic::Request<InfoRequest>,
    ) -> Result<tonic::Response<InfoResponse>, tonic::Status> {
        self.store.info(request).await
    }
}

#[tonic::async_trait]
impl Rules for StatefulService {
    type RulesStream = RulesAnswers;

    async fn rules(
        &self,
        request: tonic::Request<RulesRequest>,
    ) -> Result<tonic::Response<Self::RulesStream>, tonic::Status> {
        self.rules.rules(request).await
    }
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
