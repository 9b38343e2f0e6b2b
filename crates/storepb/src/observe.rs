//! What the gRPC servers observe of each call: the lines `--request.logging-config` asks for
//! (a "started call" and a "finished call" line; see `strata_runtime::request_log` for the
//! format and which calls and lines it selects) and, with `--tracing.config`, a server span
//! (named `/<service>/<method>`, as Thanos names it, a child of the caller's trace context).
//!
//! A streamed call (Series) is finished when its last frame, the trailers with `grpc-status`,
//! has been handed to the connection, so `grpc.time_ms` and the span cover the whole answer.
//! A call whose response is dropped before that (the client cancelled, the connection broke)
//! ends as `Canceled`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::{BoxFuture, Either};
use http::{HeaderMap, Request, Response};
use http_body::{Frame, SizeHint};
use strata_runtime::request_log::{
    RequestLog, grpc_code_name, grpc_line_level, now_rfc3339, time_ms,
};
use tonic::Status;
use tonic::body::Body;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument as _;

/// Puts [`ObserveService`] in front of a gRPC server's routes. Without a request log
/// configuration that logs gRPC calls, and without tracing, it passes every call through
/// untouched.
#[derive(Debug, Clone, Default)]
pub struct ObserveLayer {
    log: Option<Arc<RequestLog>>,
    trace: bool,
}

impl ObserveLayer {
    /// `log`: `--request.logging-config`; spans are opened when tracing is exporting.
    pub fn new(log: Option<Arc<RequestLog>>) -> Self {
        ObserveLayer {
            log: log.filter(|l| l.grpc_policy().is_some()),
            trace: strata_runtime::otel::enabled(),
        }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = ObserveService<S>;

    fn layer(&self, inner: S) -> ObserveService<S> {
        ObserveService {
            inner,
            log: self.log.clone(),
            trace: self.trace,
        }
    }
}

/// Logs the calls the configuration selects, and traces every call when tracing is on.
#[derive(Debug, Clone)]
pub struct ObserveService<S> {
    inner: S,
    log: Option<Arc<RequestLog>>,
    trace: bool,
}

type CallFuture<F, E> = Either<F, BoxFuture<'static, Result<Response<Body>, E>>>;

impl<S> Service<Request<Body>> for ObserveService<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = CallFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let log = self
            .log
            .as_ref()
            .filter(|l| l.grpc_selects(req.uri().path()));
        if log.is_none() && !self.trace {
            return Either::Left(self.inner.call(req));
        }
        let call = log.map(|log| CallLog::start(log.clone(), &req));
        let span = if self.trace {
            let span = tracing::info_span!(
                "grpc_server",
                otel.name = %req.uri().path(),
                otel.kind = "server",
                component = "gRPC",
                grpc.code = tracing::field::Empty,
                error = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
            );
            strata_runtime::otel::adopt_remote_parent(&span, req.headers());
            span
        } else {
            tracing::Span::none()
        };
        let observer = Observer {
            call,
            span: span.clone(),
        };
        let fut = self.inner.call(req).instrument(span);
        Either::Right(Box::pin(async move {
            let resp = match fut.await {
                Ok(resp) => resp,
                Err(e) => {
                    observer.finish(13, Some("the server could not take the call".into()));
                    return Err(e);
                }
            };
            // A trailers-only response (an error before any message) has its status in the
            // headers.
            if let Some((code, message)) = status_of(resp.headers()) {
                observer.finish(code, message);
                return Ok(resp);
            }
            let (parts, body) = resp.into_parts();
            let body = Body::new(ObservedBody {
                inner: body,
                observer: Some(observer),
            });
            Ok(Response::from_parts(parts, body))
        }))
    }
}

/// One call's log lines and span, ended once.
struct Observer {
    call: Option<CallLog>,
    span: tracing::Span,
}

impl Observer {
    fn finish(mut self, code: i32, message: Option<String>) {
        self.end(code, message);
    }

    fn end(&mut self, code: i32, message: Option<String>) {
        if let Some(call) = self.call.take() {
            call.finish(code, message);
        }
        if !self.span.is_none() {
            self.span.record("grpc.code", grpc_code_name(code));
            if code != 0 {
                self.span.record("error", true);
                self.span.record("otel.status_code", "ERROR");
            }
            // The span ends when its last handle is gone: this one, and the handler's.
            self.span = tracing::Span::none();
        }
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        // Dropped unfinished: the response was not sent to its end.
        if self.call.is_some() || !self.span.is_none() {
            self.end(
                1,
                Some("the call ended before its response was sent".into()),
            );
        }
    }
}

/// `grpc-status` and `grpc-message` (percent-decoded) of a header or trailer map.
fn status_of(headers: &HeaderMap) -> Option<(i32, Option<String>)> {
    let code = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .map(percent_decode)
        .filter(|m| !m.is_empty());
    Some((code, message))
}

/// Undoes gRPC's percent-encoding of `grpc-message`.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = bytes.get(i + 1..i + 3)
            && let Some(b) = std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A `grpc-timeout` header value (`<digits><unit>`) as a duration.
fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// One selected call: what its lines say. Its end is logged once, by [`Observer`] (which
/// also covers a call dropped before its end).
struct CallLog {
    log: Arc<RequestLog>,
    start: Instant,
    start_time: String,
    deadline: Option<String>,
    service: String,
    method: String,
    peer: String,
    request_id: Option<String>,
}

impl CallLog {
    fn start(log: Arc<RequestLog>, req: &Request<Body>) -> CallLog {
        let path = req.uri().path().trim_start_matches('/');
        let (service, method) = path.rsplit_once('/').unwrap_or((path, ""));
        let ext = req.extensions();
        let peer = ext
            .get::<TcpConnectInfo>()
            .or_else(|| {
                ext.get::<TlsConnectInfo<TcpConnectInfo>>()
                    .map(|t| t.get_ref())
            })
            .and_then(TcpConnectInfo::remote_addr)
            .map(|a| a.to_string())
            .unwrap_or_default();
        let deadline = grpc_timeout(req.headers()).map(|t| {
            let at = std::time::SystemTime::now() + t;
            let ms = at
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            strata_model::timestamp::format_rfc3339_millis(ms)
        });
        let request_id = ["x-request-id", "request-id"]
            .iter()
            .find_map(|h| req.headers().get(*h))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let call = CallLog {
            start: Instant::now(),
            start_time: now_rfc3339(),
            deadline,
            service: service.to_string(),
            method: method.to_string(),
            peer,
            request_id,
            log,
        };
        if call.log.grpc_logs_start() {
            tracing::debug!(
                protocol = "grpc",
                "grpc.component" = "server",
                "grpc.service" = %call.service,
                "grpc.method" = %call.method,
                "peer.address" = %call.peer,
                "grpc.start_time" = %call.start_time,
                "grpc.request.deadline" = call.deadline.as_deref(),
                "request-id" = call.request_id.as_deref(),
                "started call"
            );
        }
        call
    }

    fn finish(self, code: i32, message: Option<String>) {
        if !self.log.grpc_logs_outcome(code) {
            return;
        }
        strata_runtime::request_log_event!(
            grpc_line_level(code),
            protocol = "grpc",
            "grpc.component" = "server",
            "grpc.service" = %self.service,
            "grpc.method" = %self.method,
            "peer.address" = %self.peer,
            "grpc.start_time" = %self.start_time,
            "grpc.request.deadline" = self.deadline.as_deref(),
            "request-id" = self.request_id.as_deref(),
            "grpc.code" = %grpc_code_name(code),
            "grpc.error" = message.as_deref(),
            "grpc.time_ms" = %time_ms(self.start.elapsed()),
            "finished call"
        );
    }
}

/// A response body that ends its call's observation when its trailers pass (or it fails,
/// or is dropped).
struct ObservedBody {
    inner: Body,
    observer: Option<Observer>,
}

impl http_body::Body for ObservedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let (code, message) = status_of(trailers).unwrap_or((0, None));
                    if let Some(o) = self.observer.take() {
                        o.finish(code, message);
                    }
                }
            }
            Poll::Ready(Some(Err(status))) => {
                if let Some(o) = self.observer.take() {
                    o.finish(status.code() as i32, Some(status.message().to_string()));
                }
            }
            Poll::Ready(None) => {
                // Ended without trailers: nothing reported a failure.
                if let Some(o) = self.observer.take() {
                    o.finish(0, None);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_testutil::tracing::Recorder;

    /// A gRPC handler answering every call with one message and then `grpc-status: code`.
    #[derive(Clone)]
    struct Answer(u16);

    impl Service<Request<Body>> for Answer {
        type Response = Response<Body>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Response<Body>, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<Body>) -> Self::Future {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", self.0.to_string().parse().unwrap());
            trailers.insert("grpc-message", "disk%20on%20fire".parse().unwrap());
            let frames: Vec<Result<Frame<Bytes>, Status>> = vec![
                Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\0"))),
                Ok(Frame::trailers(trailers)),
            ];
            let body = http_body_util::StreamBody::new(futures::stream::iter(frames));
            std::future::ready(Ok(Response::new(Body::new(body))))
        }
    }

    fn call(yaml: &str, path: &str, code: u16, read_to_end: bool) -> Vec<String> {
        let rec = Recorder::default();
        let log = RequestLog::from_yaml(yaml).unwrap();
        let mut svc = ObserveLayer::new(log).layer(Answer(code));
        tracing::subscriber::with_default(rec.clone(), || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut req = Request::new(Body::empty());
                *req.uri_mut() = path.parse().unwrap();
                req.headers_mut()
                    .insert("grpc-timeout", "30S".parse().unwrap());
                let resp = svc.call(req).await.unwrap();
                if read_to_end {
                    use http_body_util::BodyExt as _;
                    let _ = resp.into_body().collect().await;
                }
            });
        });
        rec.lines()
    }

    const ALL: &str = "grpc: {options: {level: INFO, decision: {log_start: true, log_end: true}}}";

    #[test]
    fn a_streamed_call_is_finished_by_its_trailers() {
        let lines = call(ALL, "/thanos.Store/Series", 13, true);
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(
            lines[0].starts_with("DEBUG message=started call"),
            "{}",
            lines[0]
        );
        assert!(lines[0].contains("grpc.request.deadline="), "{}", lines[0]);
        let end = &lines[1];
        for field in [
            "ERROR message=finished call",
            "grpc.service=thanos.Store",
            "grpc.method=Series",
            "grpc.code=Internal",
            "grpc.error=disk on fire",
            "grpc.time_ms=",
        ] {
            assert!(end.contains(field), "{field} missing in {end}");
        }
        let ok = call(ALL, "/thanos.Store/Series", 0, true);
        assert!(ok[1].starts_with("DEBUG message=finished call"), "{ok:#?}");
        assert!(ok[1].contains("grpc.code=OK"), "{ok:#?}");
    }

    #[test]
    fn a_dropped_response_is_logged_as_canceled() {
        let lines = call(ALL, "/thanos.Store/Series", 0, false);
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(lines[1].contains("grpc.code=Canceled"), "{}", lines[1]);
    }

    #[test]
    fn unselected_calls_and_outcomes_are_not_logged() {
        let only_series = "grpc: {options: {level: DEBUG, decision: {log_end: true}}, \
                           config: [{service: thanos.Store, method: Series}]}";
        assert!(call(only_series, "/thanos.Info/Info", 13, true).is_empty());
        assert_eq!(call(only_series, "/thanos.Store/Series", 0, true).len(), 1);
        let errors = "grpc: {options: {level: ERROR, decision: {log_end: true}}}";
        assert!(call(errors, "/thanos.Store/Series", 0, true).is_empty());
        assert!(call(errors, "/thanos.Store/Series", 14, true).is_empty());
        assert_eq!(call(errors, "/thanos.Store/Series", 13, true).len(), 1);
        // HTTP only: the gRPC layer passes calls through.
        let http = "http: {options: {level: DEBUG, decision: {log_end: true}}}";
        assert!(call(http, "/thanos.Store/Series", 13, true).is_empty());
    }

    #[test]
    fn statuses_and_timeouts_are_read_from_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(status_of(&h), None);
        h.insert("grpc-status", "14".parse().unwrap());
        assert_eq!(status_of(&h), Some((14, None)));
        h.insert(
            "grpc-message",
            "store%20down%3A%20timeout %".parse().unwrap(),
        );
        assert_eq!(
            status_of(&h),
            Some((14, Some("store down: timeout %".to_string())))
        );
        let mut h = HeaderMap::new();
        h.insert("grpc-timeout", "120S".parse().unwrap());
        assert_eq!(grpc_timeout(&h), Some(Duration::from_secs(120)));
        h.insert("grpc-timeout", "250m".parse().unwrap());
        assert_eq!(grpc_timeout(&h), Some(Duration::from_millis(250)));
        h.insert("grpc-timeout", "5x".parse().unwrap());
        assert_eq!(grpc_timeout(&h), None);
        h.insert("grpc-timeout", "".parse().unwrap());
        assert_eq!(grpc_timeout(&h), None);
    }
}
