//! Serving the Store and Info APIs (and the Metadata, Rules, Exemplars and Targets APIs where a
//! component has them):
//! the one place that sets up the gRPC server, so the store
//! gateway, the sidecar and the querier answer with the same limits, the same TLS and the same
//! compressions (tonic's own, plus Thanos' `snappy` through [`crate::snappy`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tonic::Status;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use crate::snappy::SnappyServerLayer;
use crate::thanos::SeriesResponse;
use crate::thanos::exemplars_server::{Exemplars, ExemplarsServer};
use crate::thanos::info::info_server::{Info, InfoServer};
use crate::thanos::metadata_server::{Metadata, MetadataServer};
use crate::thanos::query_server::{Query, QueryServer};
use crate::thanos::rules_server::{Rules, RulesServer};
use crate::thanos::store_server::{Store, StoreServer};
use crate::thanos::targets_server::{Targets, TargetsServer};
use crate::thanos::{
    ExemplarsRequest, ExemplarsResponse, LabelNamesRequest, LabelNamesResponse, LabelValuesRequest,
    LabelValuesResponse, MetricMetadataRequest, MetricMetadataResponse, QueryRangeRequest,
    QueryRangeResponse, QueryRequest, QueryResponse, RulesRequest, RulesResponse, SeriesRequest,
    TargetsRequest, TargetsResponse,
};

/// The largest request the Store API accepts (a `Series` request with many matchers is a few
/// kilobytes; this only keeps a hostile client from making us buffer gigabytes).
pub const MAX_REQUEST_BYTES: usize = 32 << 20;

/// Series frames buffered between a Series producer and its gRPC stream: enough to keep the
/// connection busy, few enough that a slow client stalls the producer instead of growing
/// memory. Every Store API server (gateway, sidecar, querier) uses it.
pub const SERIES_FRAMES_IN_FLIGHT: usize = 16;

/// Where a Series call's producer sends its frames.
pub type SeriesSender = tokio::sync::mpsc::Sender<Result<SeriesResponse, Status>>;

/// The response stream of a Series call fed by [`spawn_series`].
pub type SeriesFrames = tokio_stream::wrappers::ReceiverStream<Result<SeriesResponse, Status>>;

/// Runs a Series call's producer in a task of its own, behind a channel of
/// [`SERIES_FRAMES_IN_FLIGHT`] frames (a slow client stalls the producer). `produce` gets the
/// sending half; the status it fails with is logged once and sent as the stream's last item
/// (a cancelled call should end with `Ok`: nobody is listening any more).
pub fn spawn_series<F>(produce: impl FnOnce(SeriesSender) -> F) -> SeriesFrames
where
    F: std::future::Future<Output = Result<(), Status>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(SERIES_FRAMES_IN_FLIGHT);
    let call = produce(tx.clone());
    // In the call's span (`--tracing.config`): the producer's spans are the call's children.
    tokio::spawn(tracing::Instrument::in_current_span(async move {
        if let Err(status) = call.await {
            tracing::warn!(err = %status.message(), "Series call failed");
            let _ = tx.send(Err(status)).await;
        }
    }));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Server TLS as Thanos' `--grpc-server-tls-cert`, `--grpc-server-tls-key`,
/// `--grpc-server-tls-client-ca` and `--grpc-server-tls-min-version` configure it.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
    /// The oldest TLS version a client may speak.
    pub min_version: ServerTlsMinVersion,
}

/// `--grpc-server-tls-min-version`. rustls speaks TLS 1.2 and 1.3 only, so Thanos' `1.0` and
/// `1.1` mean [`ServerTlsMinVersion::Tls12`] here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerTlsMinVersion {
    Tls12,
    /// Thanos' default.
    #[default]
    Tls13,
}

/// How a Store API server runs, beyond what it serves.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    pub tls: Option<TlsFiles>,
    /// `--grpc-server-max-connection-age`: a connection is closed (gracefully: its calls
    /// finish) once it is this old, so that clients spread over new replicas and redo TLS
    /// handshakes. None: never.
    pub max_connection_age: Option<Duration>,
    /// `--grpc-grace-period`: how long calls in flight may run on after the shutdown
    /// signal before the server stops without them. None: until they end.
    pub grace_period: Option<Duration>,
    /// `--request.logging-config`: the calls to log. None: none.
    pub request_log: Option<Arc<strata_runtime::request_log::RequestLog>>,
}

impl From<Option<TlsFiles>> for ServerOptions {
    fn from(tls: Option<TlsFiles>) -> Self {
        ServerOptions {
            tls,
            ..Default::default()
        }
    }
}

/// Why the gRPC server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("reading {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {}: {reason}", path.display())]
    BadTls {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("gRPC server TLS: {0}")]
    Tls(String),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

fn read(what: &'static str, path: &PathBuf) -> Result<Vec<u8>, ServeError> {
    std::fs::read(path).map_err(|source| ServeError::Read {
        what,
        path: path.clone(),
        source,
    })
}

/// The rustls server configuration of `t`. Built here rather than by tonic, which offers
/// no choice of TLS versions: `--grpc-server-tls-min-version=1.3` (Thanos' default) must
/// refuse TLS 1.2 clients.
fn rustls_config(t: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, ServeError> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let bad = |what: &'static str, path: &PathBuf, reason: String| ServeError::BadTls {
        what,
        path: path.clone(),
        reason,
    };
    let certs = strata_runtime::tls::pem_certificates(&read("--grpc-server-tls-cert", &t.cert)?)
        .map_err(|e| bad("--grpc-server-tls-cert", &t.cert, e))?;
    let key =
        PrivateKeyDer::from_pem_slice(&read("--grpc-server-tls-key", &t.key)?).map_err(|e| {
            bad(
                "--grpc-server-tls-key",
                &t.key,
                format!("no private key: {e}"),
            )
        })?;
    let provider = strata_runtime::tls::provider();
    let versions: &[&rustls::SupportedProtocolVersion] = match t.min_version {
        ServerTlsMinVersion::Tls13 => &[&rustls::version::TLS13],
        ServerTlsMinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    let builder = match &t.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let roots = strata_runtime::tls::pem_roots(&read("--grpc-server-tls-client-ca", ca)?)
                .map_err(|e| bad("--grpc-server-tls-client-ca", ca, e))?;
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| bad("--grpc-server-tls-client-ca", ca, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut cfg = builder.with_single_cert(certs, key).map_err(|e| {
        bad(
            "--grpc-server-tls-key",
            &t.key,
            format!("does not fit the certificate: {e}"),
        )
    })?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// Accepted TLS connections ([`strata_runtime::tls::accept_tls`]), as tonic takes them.
fn tls_incoming(
    listener: tokio::net::TcpListener,
    cfg: Arc<rustls::ServerConfig>,
) -> impl futures::Stream<Item = Result<tokio_rustls::server::TlsStream<TcpStream>, std::io::Error>>
{
    use futures::StreamExt as _;
    tokio_stream::wrappers::ReceiverStream::new(strata_runtime::tls::accept_tls(
        listener, cfg, "gRPC",
    ))
    .map(|(tls, _peer)| Ok(tls))
}

/// Serves `svc` as the Store and Info APIs on `listener` until `shutdown` completes, then
/// drains in-flight calls (for at most the grace period, if one is set).
pub async fn serve<S>(
    listener: tokio::net::TcpListener,
    svc: S,
    opts: impl Into<ServerOptions>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError>
where
    S: Store + Info + Clone,
{
    serve_with_apis(listener, svc, None::<NoApis>, opts, shutdown).await
}

/// The response stream of a MetricMetadata call: the sidecar and the querier each have their
/// whole answer (warnings and one map) before they send.
pub type MetadataAnswers =
    futures::stream::Iter<std::vec::IntoIter<Result<MetricMetadataResponse, Status>>>;

/// The response stream of a Rules call: whole answers too (warnings, then the groups).
pub type RulesAnswers = futures::stream::Iter<std::vec::IntoIter<Result<RulesResponse, Status>>>;

/// The response stream of an Exemplars call: whole answers too (warnings, then the series).
pub type ExemplarsAnswers =
    futures::stream::Iter<std::vec::IntoIter<Result<ExemplarsResponse, Status>>>;

/// The response stream of a Targets call: whole answers too (warnings, then the targets).
pub type TargetsAnswers =
    futures::stream::Iter<std::vec::IntoIter<Result<TargetsResponse, Status>>>;

/// A component without the Metadata, Rules, Exemplars and Targets APIs (the store gateway):
/// only names the type of [`serve_with_apis`]'s absent services; never constructed.
#[derive(Debug, Clone, Copy)]
pub enum NoApis {}

#[tonic::async_trait]
impl Metadata for NoApis {
    type MetricMetadataStream = MetadataAnswers;

    async fn metric_metadata(
        &self,
        _: tonic::Request<MetricMetadataRequest>,
    ) -> Result<tonic::Response<Self::MetricMetadataStream>, Status> {
        match *self {}
    }
}

#[tonic::async_trait]
impl Exemplars for NoApis {
    type ExemplarsStream = ExemplarsAnswers;

    async fn exemplars(
        &self,
        _: tonic::Request<ExemplarsRequest>,
    ) -> Result<tonic::Response<Self::ExemplarsStream>, Status> {
        match *self {}
    }
}

#[tonic::async_trait]
impl Targets for NoApis {
    type TargetsStream = TargetsAnswers;

    async fn targets(
        &self,
        _: tonic::Request<TargetsRequest>,
    ) -> Result<tonic::Response<Self::TargetsStream>, Status> {
        match *self {}
    }
}

/// The response stream of a Query or QueryRange call, for [`NoApis`].
type NoAnswers<T> = futures::stream::Iter<std::vec::IntoIter<Result<T, Status>>>;

#[tonic::async_trait]
impl Query for NoApis {
    type QueryStream = NoAnswers<QueryResponse>;
    type QueryRangeStream = NoAnswers<QueryRangeResponse>;

    async fn query(
        &self,
        _: tonic::Request<QueryRequest>,
    ) -> Result<tonic::Response<Self::QueryStream>, Status> {
        match *self {}
    }

    async fn query_range(
        &self,
        _: tonic::Request<QueryRangeRequest>,
    ) -> Result<tonic::Response<Self::QueryRangeStream>, Status> {
        match *self {}
    }
}

#[tonic::async_trait]
impl Rules for NoApis {
    type RulesStream = RulesAnswers;

    async fn rules(
        &self,
        _: tonic::Request<RulesRequest>,
    ) -> Result<tonic::Response<Self::RulesStream>, Status> {
        match *self {}
    }
}

/// [`serve`], with the Metadata, Rules, Exemplars and Targets APIs too when `apis` is given
/// (the sidecar, the querier).
pub async fn serve_with_apis<S, A>(
    listener: tokio::net::TcpListener,
    svc: S,
    apis: Option<A>,
    opts: impl Into<ServerOptions>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError>
where
    S: Store + Info + Clone,
    A: Metadata + Rules + Exemplars + Targets + Clone,
{
    serve_with_query_api(listener, svc, apis, None::<NoApis>, opts, shutdown).await
}

/// [`serve_with_apis`], with the Query API (PromQL over gRPC) too when `query` is given: the
/// querier.
pub async fn serve_with_query_api<S, A, Q>(
    listener: tokio::net::TcpListener,
    svc: S,
    apis: Option<A>,
    query: Option<Q>,
    opts: impl Into<ServerOptions>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError>
where
    S: Store + Info + Clone,
    A: Metadata + Rules + Exemplars + Targets + Clone,
    Q: Query,
{
    let store = StoreServer::new(svc.clone()).max_decoding_message_size(MAX_REQUEST_BYTES);
    serve_services(
        listener,
        Services {
            store: Some(store),
            info: InfoServer::new(svc),
            metadata: apis.clone().map(MetadataServer::new),
            rules: apis.clone().map(RulesServer::new),
            exemplars: apis.clone().map(ExemplarsServer::new),
            targets: apis.map(TargetsServer::new),
            query: query.map(|q| QueryServer::new(q).max_decoding_message_size(MAX_REQUEST_BYTES)),
        },
        opts,
        shutdown,
    )
    .await
}

/// Serves the Info and Rules APIs alone: a component that evaluates rules but keeps no
/// series (Thanos' stateless ruler) has no Store API to offer.
pub async fn serve_rules<R>(
    listener: tokio::net::TcpListener,
    svc: R,
    opts: impl Into<ServerOptions>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError>
where
    R: Info + Rules + Clone,
{
    serve_services(
        listener,
        Services {
            store: None::<StoreServer<NoStore>>,
            info: InfoServer::new(svc.clone()),
            metadata: None::<MetadataServer<NoApis>>,
            rules: Some(RulesServer::new(svc)),
            exemplars: None::<ExemplarsServer<NoApis>>,
            targets: None::<TargetsServer<NoApis>>,
            query: None::<QueryServer<NoApis>>,
        },
        opts,
        shutdown,
    )
    .await
}

/// Serves the Store, Info and Rules APIs: a component that evaluates rules and keeps what
/// they record (Thanos' stateful ruler).
pub async fn serve_store_and_rules<S>(
    listener: tokio::net::TcpListener,
    svc: S,
    opts: impl Into<ServerOptions>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError>
where
    S: Store + Info + Rules + Clone,
{
    serve_services(
        listener,
        Services {
            store: Some(StoreServer::new(svc.clone()).max_decoding_message_size(MAX_REQUEST_BYTES)),
            info: InfoServer::new(svc.clone()),
            metadata: None::<MetadataServer<NoApis>>,
            rules: Some(RulesServer::new(svc)),
            exemplars: None::<ExemplarsServer<NoApis>>,
            targets: None::<TargetsServer<NoApis>>,
            query: None::<QueryServer<NoApis>>,
        },
        opts,
        shutdown,
    )
    .await
}

/// Names the type of [`serve_rules`]' absent Store service; never constructed.
#[derive(Debug, Clone, Copy)]
enum NoStore {}

#[tonic::async_trait]
impl Store for NoStore {
    type SeriesStream = SeriesFrames;

    async fn series(
        &self,
        _: tonic::Request<SeriesRequest>,
    ) -> Result<tonic::Response<Self::SeriesStream>, Status> {
        match *self {}
    }

    async fn label_names(
        &self,
        _: tonic::Request<LabelNamesRequest>,
    ) -> Result<tonic::Response<LabelNamesResponse>, Status> {
        match *self {}
    }

    async fn label_values(
        &self,
        _: tonic::Request<LabelValuesRequest>,
    ) -> Result<tonic::Response<LabelValuesResponse>, Status> {
        match *self {}
    }
}

/// The services a component offers over gRPC (Info always; the others when it has them).
struct Services<S, I, M, R, E, T, Q> {
    store: Option<StoreServer<S>>,
    info: InfoServer<I>,
    metadata: Option<MetadataServer<M>>,
    rules: Option<RulesServer<R>>,
    exemplars: Option<ExemplarsServer<E>>,
    targets: Option<TargetsServer<T>>,
    query: Option<QueryServer<Q>>,
}

/// The gRPC server every component shares: request logging, Snappy, TLS, connection age
/// and the grace period, around whichever services the component offers.
async fn serve_services<S, I, M, R, E, T, Q>(
    listener: tokio::net::TcpListener,
    services: Services<S, I, M, R, E, T, Q>,
    opts: impl Into<ServerOptions>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError>
where
    S: Store,
    I: Info,
    M: Metadata,
    R: Rules,
    E: Exemplars,
    T: Targets,
    Q: Query,
{
    let Services {
        store,
        info,
        metadata,
        rules,
        exemplars,
        targets,
        query,
    } = services;
    let opts = opts.into();
    let tls = opts.tls.as_ref().map(rustls_config).transpose()?;
    let mut builder = Server::builder();
    if let Some(age) = opts.max_connection_age {
        builder = builder.max_connection_age(age);
    }
    let router = builder
        .layer(crate::observe::ObserveLayer::new(opts.request_log.clone()))
        .layer(SnappyServerLayer::new(MAX_REQUEST_BYTES))
        .add_optional_service(store)
        .add_service(info)
        .add_optional_service(metadata)
        .add_optional_service(rules)
        .add_optional_service(exemplars)
        .add_optional_service(targets)
        .add_optional_service(query);
    // The shutdown, noted so that the grace period can start from it.
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        let _ = stopping_tx.send(());
    };
    let served = async move {
        match tls {
            Some(cfg) => {
                router
                    .serve_with_incoming_shutdown(tls_incoming(listener, cfg), shutdown)
                    .await
            }
            None => {
                router
                    .serve_with_incoming_shutdown(
                        TcpIncoming::from(listener).with_nodelay(Some(true)),
                        shutdown,
                    )
                    .await
            }
        }
    };
    let Some(grace) = opts.grace_period else {
        return Ok(served.await?);
    };
    let deadline = async move {
        if stopping_rx.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        r = served => Ok(r?),
        () = deadline => {
            tracing::warn!(
                grace_period = ?grace,
                "gRPC calls still running at the end of the grace period are dropped"
            );
            Ok(())
        }
    }
}
