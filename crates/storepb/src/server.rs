//! Serving the Store and Info APIs: the one place that sets up the gRPC server, so the store
//! gateway, the sidecar and the querier answer with the same limits, the same TLS and the same
//! compressions (tonic's own, plus Thanos' `snappy` through [`crate::snappy`]).

use std::path::PathBuf;

use tonic::Status;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::snappy::SnappyServerLayer;
use crate::thanos::SeriesResponse;
use crate::thanos::info::info_server::{Info, InfoServer};
use crate::thanos::store_server::{Store, StoreServer};

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
    tokio::spawn(async move {
        if let Err(status) = call.await {
            tracing::warn!(err = %status.message(), "Series call failed");
            let _ = tx.send(Err(status)).await;
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Server TLS as Thanos' `--grpc-server-tls-cert`, `--grpc-server-tls-key` and
/// `--grpc-server-tls-client-ca` configure it.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
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

/// Serves `svc` as the Store and Info APIs on `listener` until `shutdown` completes, then
/// drains in-flight calls.
pub async fn serve<S>(
    listener: tokio::net::TcpListener,
    svc: S,
    tls: Option<TlsFiles>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError>
where
    S: Store + Info + Clone,
{
    let mut builder = Server::builder();
    if let Some(t) = &tls {
        let identity = Identity::from_pem(
            read("--grpc-server-tls-cert", &t.cert)?,
            read("--grpc-server-tls-key", &t.key)?,
        );
        let mut cfg = ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &t.client_ca {
            cfg = cfg.client_ca_root(Certificate::from_pem(read(
                "--grpc-server-tls-client-ca",
                ca,
            )?));
        }
        builder = builder.tls_config(cfg)?;
    }
    builder
        .layer(SnappyServerLayer::new(MAX_REQUEST_BYTES))
        .add_service(StoreServer::new(svc.clone()).max_decoding_message_size(MAX_REQUEST_BYTES))
        .add_service(InfoServer::new(svc))
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await?;
    Ok(())
}
