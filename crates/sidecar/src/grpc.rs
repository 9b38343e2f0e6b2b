//! The sidecar's gRPC face: `thanos.Store` and `thanos.info.Info` over a
//! [`PrometheusStore`], with Thanos' server TLS options.

use strata_storepb::server::{SeriesFrames, spawn_series};
use strata_storepb::thanos::info::info_server::Info;
use strata_storepb::thanos::info::{InfoRequest, InfoResponse};
use strata_storepb::thanos::store_server::Store;
use strata_storepb::thanos::{
    LabelNamesRequest, LabelNamesResponse, LabelValuesRequest, LabelValuesResponse, SeriesRequest,
};
use tonic::{Request, Response, Status};

use crate::error::StoreError;
use crate::store::PrometheusStore;

/// The Store and Info services.
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

pub use strata_storepb::server::{ServeError, ServerOptions, TlsFiles};

/// Serves the Store and Info APIs on `listener` until `shutdown` completes, then drains
/// in-flight calls. `opts`: TLS (or just `Option<TlsFiles>`), connection age, grace period.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: PrometheusStore,
    opts: impl Into<ServerOptions>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    strata_storepb::server::serve(listener, SidecarService::new(store), opts, shutdown).await
}
