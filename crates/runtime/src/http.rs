//! The component HTTP server: probes and `/metrics`, plus the component's own routes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

use crate::request_log::{HttpLogState, RequestLog, http_middleware};
use crate::web_config::{TlsListener, WebConfig};
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

/// The address of the peer a request came from, for every listener the server runs on
/// (axum provides `ConnectInfo<SocketAddr>` for a bare `TcpListener` only).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, NoDelayListener>>
    for PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, NoDelayListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

/// A plain TCP listener whose connections have `TCP_NODELAY` set.
///
/// Without it, a keep-alive client (Grafana, any Go client) waits out its delayed ACK (40 ms
/// on Linux) on every response written in more than one segment: Nagle holds the second write
/// until the first is acknowledged. Go servers, and so Prometheus and Thanos, set it on every
/// connection.
#[derive(Debug)]
pub struct NoDelayListener(tokio::net::TcpListener);

impl axum::serve::Listener for NoDelayListener {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (tcp, addr) = axum::serve::Listener::accept(&mut self.0).await;
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(err = %e, "could not set TCP_NODELAY on an HTTP connection");
        }
        (tcp, addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
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
    web: Option<Arc<WebConfig>>,
    request_log: Option<Arc<RequestLog>>,
}

impl Listener {
    /// Binds `addr` (`host:port`; port 0 picks a free port). With `web` (`--http.config`),
    /// the server speaks TLS, checks credentials, limits the request rate and adds headers as
    /// the file asks: on every route, the probes and `/metrics` included.
    pub async fn bind(addr: &str, web: Option<Arc<WebConfig>>) -> Result<Listener, ServeError> {
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
        Ok(Listener {
            inner,
            addr,
            web,
            request_log: None,
        })
    }

    /// Logs requests as `--request.logging-config` asks (every route, the probes and
    /// `/metrics` included, and requests the `--http.config` guard refuses).
    #[must_use]
    pub fn with_request_log(mut self, log: Option<Arc<RequestLog>>) -> Listener {
        self.request_log = log.filter(|l| l.http_policy().is_some());
        self
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `router` until `shutdown` triggers, then finishes in-flight requests, giving
    /// them at most `grace` (`--http-grace-period`; `None`: as long as they take): then it
    /// returns without them (their connections end with the process, which is what follows
    /// in every component).
    pub async fn serve(
        self,
        router: Router,
        shutdown: Shutdown,
        grace: Option<std::time::Duration>,
    ) -> Result<(), ServeError> {
        let Listener {
            inner,
            addr,
            web,
            request_log,
        } = self;
        let router = match &web {
            Some(web) => web.guard(router),
            None => router,
        };
        // Spans only when `--tracing.config` exports them (`otel::enabled` is set before any
        // server starts).
        let router = if crate::otel::enabled() {
            router.layer(axum::middleware::from_fn(crate::otel::http_middleware))
        } else {
            router
        };
        let router = match request_log {
            Some(log) => router.layer(axum::middleware::from_fn_with_state(
                HttpLogState {
                    log,
                    local_port: addr.port(),
                },
                http_middleware,
            )),
            None => router,
        };
        let users = web.as_ref().map_or(0, |w| w.basic_auth_users());
        match web.as_ref().and_then(|w| w.tls()) {
            Some(tls) => {
                let client_auth = web.as_ref().map_or("", |w| w.client_auth());
                tracing::info!(
                    address = %addr,
                    client_auth,
                    basic_auth_users = users,
                    "listening for HTTPS (--http.config)"
                );
                let listener = TlsListener::new(inner, addr, tls);
                serve_until(listener, router, shutdown, grace, addr).await
            }
            None => {
                if web.is_some() {
                    tracing::info!(
                        address = %addr,
                        basic_auth_users = users,
                        "listening for HTTP without TLS (--http.config)"
                    );
                } else {
                    tracing::info!(address = %addr, "listening for HTTP");
                }
                let listener = NoDelayListener(inner);
                serve_until(listener, router, shutdown, grace, addr).await
            }
        }
    }
}

/// Serves `router` on `listener` until `shutdown`, then for at most `grace`.
async fn serve_until<L>(
    listener: L,
    router: Router,
    shutdown: Shutdown,
    grace: Option<std::time::Duration>,
    addr: SocketAddr,
) -> Result<(), ServeError>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
    for<'a> PeerAddr: axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>,
{
    let deadline = {
        let shutdown = shutdown.clone();
        async move {
            match grace {
                Some(grace) => {
                    shutdown.wait().await;
                    tokio::time::sleep(grace).await;
                }
                None => std::future::pending::<()>().await,
            }
        }
    };
    // The peer's address reaches handlers (the request log's `http.remote_addr`).
    let served = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<PeerAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.wait().await })
    .into_future();
    tokio::select! {
        r = served => r.map_err(|source| ServeError::Serve { addr, source }),
        () = deadline => {
            tracing::warn!(
                address = %addr,
                grace_period = ?grace,
                "HTTP requests still running at the end of the grace period are dropped"
            );
            Ok(())
        }
    }
}

/// Whether `Accept-Encoding` allows gzip (`gzip` or `*`, without `q=0`).
pub fn accepts_gzip(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let zero = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !zero
        })
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
        let listener = Listener::bind("127.0.0.1:0", None).await.unwrap();
        let addr = listener.local_addr();
        let server = tokio::spawn(listener.serve(
            base_router(prober.clone(), registry),
            shutdown.clone(),
            None,
        ));
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
            Listener::bind("256.0.0.1:1", None)
                .await
                .unwrap_err()
                .to_string()
                .contains("--http-address")
        );
    }

    /// `--http-grace-period`: a request still running when the grace period after the
    /// shutdown signal is over no longer holds the server up; without one it does.
    #[tokio::test]
    async fn a_hanging_request_holds_shutdown_up_for_the_grace_period_only() {
        use std::time::{Duration, Instant};
        for (grace, stops) in [(None, false), (Some(Duration::from_millis(300)), true)] {
            let router = Router::new().route(
                "/hang",
                axum::routing::get(std::future::pending::<&'static str>),
            );
            let shutdown = Shutdown::new();
            let listener = Listener::bind("127.0.0.1:0", None).await.unwrap();
            let addr = listener.local_addr();
            let server = tokio::spawn(listener.serve(router, shutdown.clone(), grace));
            let request = tokio::task::spawn_blocking(move || {
                strata_testutil::process::http_request("GET", &format!("http://{addr}/hang"), b"")
            });
            tokio::time::sleep(Duration::from_millis(200)).await;
            let asked = Instant::now();
            shutdown.trigger();
            let ended = tokio::time::timeout(Duration::from_secs(3), server).await;
            assert_eq!(ended.is_ok(), stops, "grace {grace:?}");
            if stops {
                assert!(asked.elapsed() >= Duration::from_millis(300));
            }
            // (The request's connection lives on in its task until the process exits, which
            // is what follows the server's return in every component.)
            drop(request);
        }
    }

    /// A keep-alive client must not wait out its delayed ACK on responses the server writes
    /// in pieces: without TCP_NODELAY on accepted connections, each of these responses took
    /// 40 ms (Nagle holding the second piece until the first was acknowledged).
    #[tokio::test]
    async fn keep_alive_responses_written_in_pieces_are_not_delayed() {
        use std::io::{BufRead, BufReader, Read, Write};
        use std::time::Duration;

        let router = Router::new().route(
            "/pieces",
            axum::routing::get(|| async {
                let pieces = futures::stream::unfold(0, |i| async move {
                    if i == 2 {
                        return None;
                    }
                    // The second piece comes after the first has been written.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    Some((Ok::<_, std::io::Error>(vec![b'x'; 100]), i + 1))
                });
                axum::body::Body::from_stream(pieces)
            }),
        );
        let shutdown = Shutdown::new();
        let listener = Listener::bind("127.0.0.1:0", None).await.unwrap();
        let addr = listener.local_addr();
        let server = tokio::spawn(listener.serve(router, shutdown.clone(), None));
        const REQUESTS: u32 = 20;
        let elapsed = tokio::task::spawn_blocking(move || {
            let stream = std::net::TcpStream::connect(addr).unwrap();
            stream.set_nodelay(true).unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            let start = std::time::Instant::now();
            for _ in 0..REQUESTS {
                writer
                    .write_all(b"GET /pieces HTTP/1.1\r\nHost: test\r\n\r\n")
                    .unwrap();
                // Status line and headers, then the chunked body up to its last chunk.
                let mut line = String::new();
                loop {
                    line.clear();
                    reader.read_line(&mut line).unwrap();
                    if line == "\r\n" {
                        break;
                    }
                }
                loop {
                    line.clear();
                    reader.read_line(&mut line).unwrap();
                    let size = usize::from_str_radix(line.trim_end(), 16).unwrap();
                    let mut chunk = vec![0u8; size + 2];
                    reader.read_exact(&mut chunk).unwrap();
                    if size == 0 {
                        break;
                    }
                }
            }
            start.elapsed()
        })
        .await
        .unwrap();
        shutdown.trigger();
        server.await.unwrap().unwrap();
        // About 2 ms per request with TCP_NODELAY; at least 40 ms per request without.
        assert!(
            elapsed < Duration::from_millis(u64::from(REQUESTS) * 20),
            "{REQUESTS} keep-alive requests took {elapsed:?}"
        );
    }
}
