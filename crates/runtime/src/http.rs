//! The component HTTP server: probes and `/metrics`, plus the component's own routes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

use crate::{Prober, Shutdown};

/// The metrics registry a component fills and `/metrics` exposes.
pub type SharedRegistry = Arc<Mutex<Registry>>;

/// A router with `/-/healthy`, `/-/ready` and `/metrics`; merge the component's routes into
/// it.
pub fn base_router(prober: Prober, registry: SharedRegistry) -> Router {
    let healthy = {
        let p = prober.clone();
        move || async move {
            if p.is_healthy() {
                (StatusCode::OK, "OK\n").into_response()
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, "not healthy\n").into_response()
            }
        }
    };
    let ready = {
        let p = prober;
        move || async move {
            if p.is_ready() {
                (StatusCode::OK, "OK\n".to_string()).into_response()
            } else {
                let reason = p.reason();
                let body = if reason.is_empty() {
                    "not ready\n".to_string()
                } else {
                    format!("not ready: {reason}\n")
                };
                (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
            }
        }
    };
    let metrics = move || async move {
        let mut out = String::new();
        let encoded = {
            let reg = registry.lock().expect("registry lock");
            prometheus_client::encoding::text::encode(&mut out, &reg)
        };
        match encoded {
            Ok(()) => (
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )],
                out,
            )
                .into_response(),
            Err(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("encoding metrics: {e}\n"),
            )
                .into_response(),
        }
    };
    Router::new()
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .route("/metrics", get(metrics))
}

/// Why the HTTP server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("listening on {addr} (--http-address): {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP server on {addr}: {source}")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A bound listener: bind first (so a bad address fails start-up at once), serve later.
#[derive(Debug)]
pub struct Listener {
    inner: tokio::net::TcpListener,
    addr: SocketAddr,
}

impl Listener {
    /// Binds `addr` (`host:port`; port 0 picks a free port).
    pub async fn bind(addr: &str) -> Result<Listener, ServeError> {
        let inner = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let addr = inner.local_addr().map_err(|source| ServeError::Bind {
            addr: addr.to_string(),
            source,
        })?;
        Ok(Listener { inner, addr })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `router` until `shutdown` triggers, then finishes in-flight requests.
    pub async fn serve(self, router: Router, shutdown: Shutdown) -> Result<(), ServeError> {
        let addr = self.addr;
        tracing::info!(address = %addr, "listening for HTTP");
        axum::serve(self.inner, router)
            .with_graceful_shutdown(async move { shutdown.wait().await })
            .await
            .map_err(|source| ServeError::Serve { addr, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[tokio::test]
    async fn probes_and_metrics() {
        let prober = Prober::new();
        let mut reg = Registry::default();
        let c: Counter = Counter::default();
        reg.register("strata_test_events", "Events.", c.clone());
        c.inc();
        let registry = Arc::new(Mutex::new(reg));
        let shutdown = Shutdown::new();
        let listener = Listener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr();
        let server =
            tokio::spawn(listener.serve(base_router(prober.clone(), registry), shutdown.clone()));
        let get = |path: &'static str| {
            let url = format!("http://{addr}{path}");
            tokio::task::spawn_blocking(move || {
                strata_testutil::process::http_request("GET", &url, b"").unwrap()
            })
        };
        assert_eq!(get("/-/healthy").await.unwrap().status, 503);
        prober.set_healthy();
        assert_eq!(get("/-/healthy").await.unwrap().status, 200);
        prober.set_not_ready("syncing blocks");
        let r = get("/-/ready").await.unwrap();
        assert_eq!(r.status, 503);
        assert!(String::from_utf8_lossy(&r.body).contains("syncing blocks"));
        prober.set_ready();
        assert_eq!(get("/-/ready").await.unwrap().status, 200);
        let m = get("/metrics").await.unwrap();
        assert_eq!(m.status, 200);
        assert!(String::from_utf8_lossy(&m.body).contains("strata_test_events_total 1"));
        shutdown.trigger();
        server.await.unwrap().unwrap();
        assert!(
            Listener::bind("256.0.0.1:1")
                .await
                .unwrap_err()
                .to_string()
                .contains("--http-address")
        );
    }
}
