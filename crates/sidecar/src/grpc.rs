//! The sidecar's gRPC face: `thanos.Store`, `thanos.info.Info`, `thanos.Metadata`,
//! `thanos.Rules`, `thanos.Exemplars` and `thanos.Targets` over a
//! [`PrometheusStore`], with Thanos' server TLS options.

use strata_storepb::server::{
    ExemplarsAnswers, MetadataAnswers, RulesAnswers, SeriesFrames, TargetsAnswers, spawn_series,
};
use strata_storepb::thanos::exemplars_server::Exemplars;
use strata_storepb::thanos::info::info_server::Info;
use strata_storepb::thanos::info::{InfoRequest, InfoResponse};
use strata_storepb::thanos::metadata_server::Metadata;
use strata_storepb::thanos::rules_server::Rules;
use strata_storepb::thanos::store_server::Store;
use strata_storepb::thanos::targets_server::Targets;
use strata_storepb::thanos::{
    ExemplarsRequest, ExemplarsResponse, LabelNamesRequest, LabelNamesResponse, LabelValuesRequest,
    LabelValuesResponse, MetricMetadataRequest, MetricMetadataResponse, RulesRequest,
    RulesResponse, SeriesRequest, TargetsRequest, TargetsResponse, exemplars_response,
    metric_metadata_response, rules_response, targets_response,
};
use tonic::{Request, Response, Status};

use crate::error::StoreError;
use crate::store::PrometheusStore;

/// The Store, Info, Metadata, Rules, Exemplars and Targets services.
#[derive(Debug, Clone)]
pub struct SidecarService {
    store: PrometheusStore,
}

impl SidecarService {
    pub fn new(store: PrometheusStore) -> Self {
        SidecarService { store }
    }
}

#[tonic::async_trait]
impl Store for SidecarService {
    type SeriesStream = SeriesFrames;

    async fn series(
        &self,
        request: Request<SeriesRequest>,
    ) -> Result<Response<Self::SeriesStream>, Status> {
        let store = self.store.clone();
        let req = request.into_inner();
        Ok(Response::new(spawn_series(move |tx| async move {
            match store.series(req, &tx).await {
                Ok(()) | Err(StoreError::Cancelled) => Ok(()),
                Err(e) => Err(e.to_status()),
            }
        })))
    }

    async fn label_names(
        &self,
        request: Request<LabelNamesRequest>,
    ) -> Result<Response<LabelNamesResponse>, Status> {
        self.store
            .label_names(request.into_inner())
            .await
            .map(Response::new)
            .map_err(|e| {
                tracing::warn!(error = %e, "LabelNames call failed");
                e.to_status()
            })
    }

    async fn label_values(
        &self,
        request: Request<LabelValuesRequest>,
    ) -> Result<Response<LabelValuesResponse>, Status> {
        self.store
            .label_values(request.into_inner())
            .await
            .map(Response::new)
            .map_err(|e| {
                tracing::warn!(error = %e, "LabelValues call failed");
                e.to_status()
            })
    }
}

#[tonic::async_trait]
impl Info for SidecarService {
    async fn info(&self, _: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        Ok(Response::new(self.store.info()))
    }
}

#[tonic::async_trait]
impl Metadata for SidecarService {
    type MetricMetadataStream = MetadataAnswers;

    /// Prometheus' metadata in one message. A failure is the call's error, whatever the
    /// request's partial response strategy: the querier decides what a failed source means.
    async fn metric_metadata(
        &self,
        request: Request<MetricMetadataRequest>,
    ) -> Result<Response<Self::MetricMetadataStream>, Status> {
        let md = self
            .store
            .metric_metadata(request.get_ref())
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "MetricMetadata call failed");
                e.to_status()
            })?;
        let msg = MetricMetadataResponse {
            result: Some(metric_metadata_response::Result::Metadata(md)),
        };
        Ok(Response::new(futures::stream::iter(vec![Ok(msg)])))
    }
}

#[tonic::async_trait]
impl Rules for SidecarService {
    type RulesStream = RulesAnswers;

    /// Prometheus' rule groups, one message each. A failure is the call's error, as for
    /// metadata.
    async fn rules(
        &self,
        request: Request<RulesRequest>,
    ) -> Result<Response<Self::RulesStream>, Status> {
        let groups = self.store.rules(request.get_ref()).await.map_err(|e| {
            tracing::warn!(error = %e, "Rules call failed");
            e.to_status()
        })?;
        let msgs: Vec<Result<RulesResponse, Status>> = groups
            .into_iter()
            .map(|g| {
                Ok(RulesResponse {
                    result: Some(rules_response::Result::Group(g)),
                })
            })
            .collect();
        Ok(Response::new(futures::stream::iter(msgs)))
    }
}

#[tonic::async_trait]
impl Exemplars for SidecarService {
    type ExemplarsStream = ExemplarsAnswers;

    /// Prometheus' exemplars, one message per series. A failure is the call's error, as for
    /// metadata.
    async fn exemplars(
        &self,
        request: Request<ExemplarsRequest>,
    ) -> Result<Response<Self::ExemplarsStream>, Status> {
        let series = self.store.exemplars(request.get_ref()).await.map_err(|e| {
            tracing::warn!(error = %e, "Exemplars call failed");
            e.to_status()
        })?;
        let msgs: Vec<Result<ExemplarsResponse, Status>> = series
            .into_iter()
            .map(|d| {
                Ok(ExemplarsResponse {
                    result: Some(exemplars_response::Result::Data(d)),
                })
            })
            .collect();
        Ok(Response::new(futures::stream::iter(msgs)))
    }
}

#[tonic::async_trait]
impl Targets for SidecarService {
    type TargetsStream = TargetsAnswers;

    /// Prometheus' targets in one message. A failure is the call's error, as for metadata.
    async fn targets(
        &self,
        request: Request<TargetsRequest>,
    ) -> Result<Response<Self::TargetsStream>, Status> {
        let targets = self.store.targets(request.get_ref()).await.map_err(|e| {
            tracing::warn!(error = %e, "Targets call failed");
            e.to_status()
        })?;
        let msg = TargetsResponse {
            result: Some(targets_response::Result::Targets(targets)),
        };
        Ok(Response::new(futures::stream::iter(vec![Ok(msg)])))
    }
}

pub use strata_storepb::server::{ServeError, ServerOptions, TlsFiles};

/// Serves the Store, Info, Metadata, Rules, Exemplars and Targets APIs on `listener` until `shutdown` completes, then drains
/// in-flight calls. `opts`: TLS (or just `Option<TlsFiles>`), connection age, grace period.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: PrometheusStore,
    opts: impl Into<ServerOptions>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let svc = SidecarService::new(store);
    strata_storepb::server::serve_with_apis(listener, svc.clone(), Some(svc), opts, shutdown).await
}
