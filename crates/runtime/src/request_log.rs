//! `--request.logging-config`: one log line per HTTP request or gRPC call, as Thanos' request
//! logging writes them, so that an audit trail or a log-based dashboard built on Thanos keeps
//! working.
//!
//! The configuration is Thanos' YAML, read strictly:
//!
//! ```yaml
//! options:                 # both protocols, unless a protocol has options of its own
//!   level: DEBUG           # INFO, DEBUG, WARNING or ERROR
//!   decision:
//!     log_start: true      # a "started call" line too (only together with log_end)
//!     log_end: true        # a "finished call" line
//! http:
//!   config:                # optional allowlist; without it every request is logged
//!     - path: /api/v1/query
//!       port: 10902
//! grpc:
//!   options: { level: ERROR, decision: { log_start: false, log_end: true } }
//!   config:
//!     - service: thanos.Store
//!       method: Series
//! ```
//!
//! What `level` does differs between the protocols, as in Thanos, and both are kept because a
//! Thanos user's configuration must give the same lines:
//!
//! * **HTTP**: `level` filters the lines themselves. The "started call" line and the
//!   "finished call" line of a response below 500 are written at debug level, a 5xx response's
//!   at error level; `level: ERROR` therefore logs only failed requests, `level: DEBUG` all.
//! * **gRPC**: `level` decides which calls are logged, by the level their outcome maps to
//!   (`OK`, `Canceled`, `InvalidArgument`, `NotFound`, `AlreadyExists`, `Unauthenticated`:
//!   info; `DeadlineExceeded`, `PermissionDenied`, `ResourceExhausted`, `FailedPrecondition`,
//!   `Aborted`, `OutOfRange`, `Unavailable`: warning; `Unknown`, `Unimplemented`, `Internal`,
//!   `DataLoss`: error). The lines are written at error level for the error codes and at debug
//!   level otherwise.
//!
//! Either way a line is then subject to `--log.level` like any other: a debug line needs
//! `--log.level=debug`.
//!
//! Two things differ from Thanos, both where Thanos' behaviour is an accident: an HTTP
//! allowlist entry matches a request by its path and port whatever its query string (Thanos
//! compares the whole request URI, so `GET /api/v1/query?query=up` never matched
//! `/api/v1/query`), and the port is the one the request was sent to (its `Host` header) or
//! the one the server listens on; `level: WARNING` is the warning threshold for both
//! protocols (in Thanos it logged every HTTP line and no gRPC call).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde::Deserialize;

use crate::http::PeerAddr;

/// Why a request logging configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum RequestLogError {
    #[error(
        "not a request logging configuration: {0} (expected Thanos' format: options, http, grpc)"
    )]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error(
        "{scope}: level field is empty while a decision is set; give one of INFO, DEBUG, WARNING, ERROR"
    )]
    EmptyLevel { scope: &'static str },
    #[error(
        "{scope}: the format of level is invalid: expected INFO, DEBUG, WARNING or ERROR, got {level:?}"
    )]
    BadLevel { scope: &'static str, level: String },
    #[error("{scope}: log_start without log_end is not supported; set log_end: true as well")]
    StartWithoutEnd { scope: &'static str },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    http: RawProtocol<RawHttpEntry>,
    #[serde(default)]
    grpc: RawProtocol<RawGrpcEntry>,
    #[serde(default)]
    options: RawOptions,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProtocol<T> {
    #[serde(default)]
    options: RawOptions,
    #[serde(default = "Vec::new")]
    config: Vec<T>,
}

impl<T> Default for RawProtocol<T> {
    fn default() -> Self {
        RawProtocol {
            options: RawOptions::default(),
            config: Vec::new(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOptions {
    #[serde(default)]
    level: String,
    #[serde(default)]
    decision: RawDecision,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDecision {
    #[serde(default)]
    log_start: bool,
    #[serde(default)]
    log_end: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpEntry {
    #[serde(default)]
    path: String,
    #[serde(default)]
    port: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrpcEntry {
    #[serde(default)]
    service: String,
    #[serde(default)]
    method: String,
}

/// The configured threshold (`level`). Ordered from the most to the least verbose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Threshold {
    Debug,
    Info,
    Warning,
    Error,
}

/// The level a line is written at, or a gRPC outcome maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LineLevel {
    Debug,
    Info,
    Warning,
    Error,
}

impl Threshold {
    fn allows(self, level: LineLevel) -> bool {
        let needed = match self {
            Threshold::Debug => LineLevel::Debug,
            Threshold::Info => LineLevel::Info,
            Threshold::Warning => LineLevel::Warning,
            Threshold::Error => LineLevel::Error,
        };
        level >= needed
    }
}

/// One protocol's effective options: the threshold and whether to log the start too. A
/// protocol that logs nothing has no `Policy` at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub threshold: Threshold,
    pub log_start: bool,
}

/// A parsed `--request.logging-config`: what to log for HTTP and for gRPC.
#[derive(Debug, Clone, Default)]
pub struct RequestLog {
    http: Option<HttpPolicy>,
    grpc: Option<GrpcPolicy>,
}

#[derive(Debug, Clone)]
struct HttpPolicy {
    policy: Policy,
    /// The ports allowed for each path; `None`: every request.
    allow: Option<HashMap<String, HashSet<u64>>>,
}

#[derive(Debug, Clone)]
struct GrpcPolicy {
    policy: Policy,
    /// `/service/method` names; `None`: every call.
    allow: Option<HashSet<String>>,
}

/// The options as Thanos applies them: the global block, overridden by the protocol's own
/// when that is not empty; `None` when neither asks for a line.
fn effective(
    global: &RawOptions,
    protocol: &RawOptions,
    scope: &'static str,
) -> Result<Option<Policy>, RequestLogError> {
    let mut chosen: (String, bool, bool) = ("ERROR".to_string(), false, false);
    for (options, scope) in [(global, "options"), (protocol, scope)] {
        let set = options.decision.log_start || options.decision.log_end;
        if options.level.is_empty() {
            if set {
                return Err(RequestLogError::EmptyLevel { scope });
            }
            continue;
        }
        chosen = (
            options.level.clone(),
            options.decision.log_start,
            options.decision.log_end,
        );
    }
    let (level, log_start, log_end) = chosen;
    let threshold = match level.as_str() {
        "DEBUG" => Threshold::Debug,
        "INFO" => Threshold::Info,
        "WARNING" => Threshold::Warning,
        "ERROR" => Threshold::Error,
        _ => return Err(RequestLogError::BadLevel { scope, level }),
    };
    match (log_start, log_end) {
        (_, true) => Ok(Some(Policy {
            threshold,
            log_start,
        })),
        (false, false) => Ok(None),
        (true, false) => Err(RequestLogError::StartWithoutEnd { scope }),
    }
}

impl RequestLog {
    /// Parses Thanos' YAML. Empty text (the flag not given, or given empty) is `None`, as is
    /// a configuration that asks for no line.
    pub fn from_yaml(text: &str) -> Result<Option<Arc<RequestLog>>, RequestLogError> {
        if text.trim().is_empty() {
            return Ok(None);
        }
        let raw: Option<RawConfig> = serde_yaml_ng::from_str(text)?;
        let raw = raw.unwrap_or_default();
        let http =
            effective(&raw.options, &raw.http.options, "http.options")?.map(|policy| HttpPolicy {
                policy,
                allow: (!raw.http.config.is_empty()).then(|| {
                    let mut ports: HashMap<String, HashSet<u64>> = HashMap::new();
                    for e in &raw.http.config {
                        ports.entry(e.path.clone()).or_default().insert(e.port);
                    }
                    ports
                }),
            });
        let grpc =
            effective(&raw.options, &raw.grpc.options, "grpc.options")?.map(|policy| GrpcPolicy {
                policy,
                allow: (!raw.grpc.config.is_empty()).then(|| {
                    raw.grpc
                        .config
                        .iter()
                        .map(|e| format!("/{}/{}", e.service, e.method))
                        .collect()
                }),
            });
        if http.is_none() && grpc.is_none() {
            return Ok(None);
        }
        Ok(Some(Arc::new(RequestLog { http, grpc })))
    }

    /// The HTTP policy, if HTTP requests are logged at all.
    pub fn http_policy(&self) -> Option<Policy> {
        self.http.as_ref().map(|h| h.policy)
    }

    /// The gRPC policy, if gRPC calls are logged at all.
    pub fn grpc_policy(&self) -> Option<Policy> {
        self.grpc.as_ref().map(|g| g.policy)
    }

    /// Whether an HTTP request to `path` is logged: sent to port `host_port` (from its `Host`
    /// header, if it has one) of a server listening on `local_port`.
    pub fn http_selects(&self, path: &str, host_port: Option<u16>, local_port: u16) -> bool {
        let Some(http) = &self.http else {
            return false;
        };
        let Some(allow) = &http.allow else {
            return true;
        };
        let Some(ports) = allow.get(path) else {
            return false;
        };
        [host_port, Some(local_port)]
            .into_iter()
            .flatten()
            .any(|port| ports.contains(&u64::from(port)))
    }

    /// Whether a gRPC call to `full_method` (`/thanos.Store/Series`) is logged, before its
    /// outcome is known.
    pub fn grpc_selects(&self, full_method: &str) -> bool {
        self.grpc.as_ref().is_some_and(|g| {
            g.allow
                .as_ref()
                .is_none_or(|allow| allow.contains(full_method))
        })
    }

    /// Whether a selected gRPC call's "finished call" line is written, given its status code.
    pub fn grpc_logs_outcome(&self, code: i32) -> bool {
        self.grpc
            .as_ref()
            .is_some_and(|g| g.policy.threshold.allows(grpc_outcome_level(code)))
    }

    /// Whether a selected gRPC call's "started call" line is written: the decision is taken
    /// as for a call that has not failed (as Thanos decides it before the call).
    pub fn grpc_logs_start(&self) -> bool {
        self.grpc
            .as_ref()
            .is_some_and(|g| g.policy.log_start && g.policy.threshold.allows(grpc_outcome_level(0)))
    }
}

/// gRPC status codes by number, with Go's names (what Thanos' lines print).
const GRPC_CODE_NAMES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// A gRPC status code's name as grpc-go prints it (`Code(42)` for one it does not know).
pub fn grpc_code_name(code: i32) -> String {
    usize::try_from(code)
        .ok()
        .and_then(|i| GRPC_CODE_NAMES.get(i))
        .map_or_else(|| format!("Code({code})"), |s| (*s).to_string())
}

/// The level a call's outcome maps to when deciding whether to log it (go-grpc-middleware's
/// server mapping).
pub fn grpc_outcome_level(code: i32) -> LineLevel {
    match code {
        0 | 1 | 3 | 5 | 6 | 16 => LineLevel::Info,
        4 | 7 | 8 | 9 | 10 | 11 | 14 => LineLevel::Warning,
        _ => LineLevel::Error,
    }
}

/// The level a call's lines are written at (Thanos' mapping): error for `Unknown`,
/// `Unimplemented`, `Internal` and `DataLoss`, debug otherwise.
pub fn grpc_line_level(code: i32) -> LineLevel {
    match code {
        2 | 12 | 13 | 15 => LineLevel::Error,
        _ => LineLevel::Debug,
    }
}

/// The level an HTTP "finished call" line is written at: debug from 200 to 499, error
/// otherwise.
pub fn http_line_level(status: u16) -> LineLevel {
    if (200..500).contains(&status) {
        LineLevel::Debug
    } else {
        LineLevel::Error
    }
}

/// Milliseconds with microsecond precision, as Thanos prints `*.time_ms`.
pub fn time_ms(elapsed: Duration) -> String {
    let micros = elapsed.as_micros();
    let text = format!("{}.{:03}", micros / 1000, micros % 1000);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.to_string()
}

/// The current time in RFC 3339 with milliseconds (the start time fields).
pub fn now_rfc3339() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    strata_model::timestamp::format_rfc3339_millis(ms)
}

/// Writes one event at a level chosen at run time (`tracing`'s macros take a constant).
#[macro_export]
#[doc(hidden)]
macro_rules! request_log_event {
    ($level:expr, $($rest:tt)*) => {
        match $level {
            $crate::request_log::LineLevel::Debug => ::tracing::debug!($($rest)*),
            $crate::request_log::LineLevel::Info => ::tracing::info!($($rest)*),
            $crate::request_log::LineLevel::Warning => ::tracing::warn!($($rest)*),
            $crate::request_log::LineLevel::Error => ::tracing::error!($($rest)*),
        }
    };
}

/// The HTTP middleware's state: the configuration and the port the server listens on.
#[derive(Debug, Clone)]
pub(crate) struct HttpLogState {
    pub(crate) log: Arc<RequestLog>,
    pub(crate) local_port: u16,
}

/// The port in a `Host` header value (`host:port`, `[v6]:port`), if it names one.
fn host_port(host: &str) -> Option<u16> {
    let (_, port) = host.rsplit_once(':')?;
    if port.contains(']') {
        return None;
    }
    port.parse().ok()
}

/// Logs HTTP requests as the configuration asks (`axum::middleware::from_fn_with_state`).
pub(crate) async fn http_middleware(
    State(state): State<HttpLogState>,
    req: Request,
    next: Next,
) -> Response {
    let Some(policy) = state.log.http_policy() else {
        return next.run(req).await;
    };
    let port = req
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .and_then(host_port);
    if !state
        .log
        .http_selects(req.uri().path(), port, state.local_port)
    {
        return next.run(req).await;
    }
    let start = Instant::now();
    let method = format!("{} {}", req.method(), req.uri());
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let name = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
    let remote = req
        .extensions()
        .get::<ConnectInfo<PeerAddr>>()
        .map(|c| c.0.0.to_string())
        .unwrap_or_default();
    if policy.log_start && policy.threshold.allows(LineLevel::Debug) {
        tracing::debug!(
            protocol = "http",
            "http.component" = "server",
            "http.start_time" = %now_rfc3339(),
            "http.method" = %method,
            "http.request_id" = %request_id,
            "thanos.method_name" = %name,
            "started call"
        );
    }
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let level = http_line_level(status);
    if policy.threshold.allows(level) {
        request_log_event!(
            level,
            protocol = "http",
            "http.component" = "server",
            "http.method" = %method,
            "http.request_id" = %request_id,
            "http.status_code" = status,
            "http.time_ms" = %time_ms(start.elapsed()),
            "http.remote_addr" = %remote,
            "thanos.method_name" = %name,
            "finished call"
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Option<Arc<RequestLog>> {
        RequestLog::from_yaml(yaml).unwrap()
    }

    fn refused(yaml: &str) -> String {
        RequestLog::from_yaml(yaml).unwrap_err().to_string()
    }

    #[test]
    fn empty_or_silent_configurations_log_nothing() {
        assert!(parse("").is_none());
        assert!(parse("  \n").is_none());
        assert!(parse("{}").is_none());
        assert!(parse("options: {level: INFO}").is_none());
        // An allowlist alone asks for no line: Thanos' decision is then "no log".
        assert!(parse("http: {config: [{path: /metrics, port: 10902}]}").is_none());
    }

    #[test]
    fn protocol_options_override_the_global_ones() {
        let log = parse(
            "options: {level: DEBUG, decision: {log_start: true, log_end: true}}\n\
             grpc: {options: {level: ERROR, decision: {log_start: false, log_end: true}}}",
        )
        .unwrap();
        assert_eq!(
            log.http_policy(),
            Some(Policy {
                threshold: Threshold::Debug,
                log_start: true
            })
        );
        assert_eq!(
            log.grpc_policy(),
            Some(Policy {
                threshold: Threshold::Error,
                log_start: false
            })
        );
        // Only the protocol's own options: the other protocol logs nothing.
        let log = parse("http: {options: {level: INFO, decision: {log_end: true}}}").unwrap();
        assert!(log.http_policy().is_some());
        assert!(log.grpc_policy().is_none());
        assert!(!log.grpc_selects("/thanos.Store/Series"));
    }

    #[test]
    fn bad_configurations_are_refused_with_the_reason() {
        assert!(refused("options: {decision: {log_end: true}}").contains("level field is empty"));
        assert!(refused("options: {level: WARN, decision: {log_end: true}}").contains("\"WARN\""));
        assert!(
            refused("options: {level: INFO, decision: {log_start: true}}")
                .contains("log_start without log_end")
        );
        assert!(refused("http: {confg: []}").contains("not a request logging configuration"));
        assert!(refused("options: {level: INFO, verbose: true}").contains("verbose"));
        assert!(
            refused("grpc: {options: {decision: {log_end: true}}}").starts_with("grpc.options")
        );
    }

    #[test]
    fn allowlists_select_by_path_and_port_or_method() {
        let log = parse(
            "options: {level: DEBUG, decision: {log_end: true}}\n\
             http: {config: [{path: /api/v1/query, port: 10904}]}\n\
             grpc: {config: [{service: thanos.Store, method: Series}]}",
        )
        .unwrap();
        assert!(log.http_selects("/api/v1/query", Some(10904), 10902));
        assert!(log.http_selects("/api/v1/query", None, 10904));
        assert!(!log.http_selects("/api/v1/query", Some(9090), 10902));
        assert!(!log.http_selects("/api/v1/query_range", Some(10904), 10904));
        assert!(log.grpc_selects("/thanos.Store/Series"));
        assert!(!log.grpc_selects("/thanos.Info/Info"));
        let all = parse("options: {level: DEBUG, decision: {log_end: true}}").unwrap();
        assert!(all.http_selects("/anything", None, 1));
        assert!(all.grpc_selects("/thanos.Info/Info"));
    }

    #[test]
    fn grpc_outcomes_are_logged_by_their_level() {
        let errors = parse("grpc: {options: {level: ERROR, decision: {log_end: true}}}").unwrap();
        assert!(!errors.grpc_logs_outcome(0)); // OK
        assert!(!errors.grpc_logs_outcome(14)); // Unavailable: a warning
        assert!(errors.grpc_logs_outcome(13)); // Internal
        assert!(!errors.grpc_logs_start());
        let warnings =
            parse("grpc: {options: {level: WARNING, decision: {log_end: true}}}").unwrap();
        assert!(!warnings.grpc_logs_outcome(1)); // Canceled: info
        assert!(warnings.grpc_logs_outcome(4)); // DeadlineExceeded
        let info =
            parse("grpc: {options: {level: INFO, decision: {log_start: true, log_end: true}}}")
                .unwrap();
        assert!(info.grpc_logs_outcome(0));
        assert!(info.grpc_logs_start());
        assert_eq!(grpc_line_level(0), LineLevel::Debug);
        assert_eq!(grpc_line_level(13), LineLevel::Error);
        assert_eq!(grpc_line_level(14), LineLevel::Debug);
        assert_eq!(grpc_code_name(14), "Unavailable");
        assert_eq!(grpc_code_name(99), "Code(99)");
    }

    #[test]
    fn http_lines_are_filtered_by_their_level() {
        assert_eq!(http_line_level(200), LineLevel::Debug);
        assert_eq!(http_line_level(499), LineLevel::Debug);
        assert_eq!(http_line_level(503), LineLevel::Error);
        assert!(!Threshold::Error.allows(http_line_level(200)));
        assert!(Threshold::Error.allows(http_line_level(500)));
        assert!(Threshold::Debug.allows(http_line_level(200)));
        assert!(!Threshold::Info.allows(LineLevel::Debug));
    }

    /// The middleware on a served router: a 503 at error level with the peer's address, a 200
    /// filtered out by `level: ERROR`, then both at debug level with `level: DEBUG`.
    #[test]
    fn the_middleware_logs_served_requests() {
        use crate::{Shutdown, http::Listener};
        use axum::http::StatusCode;
        use axum::routing::get;
        use strata_testutil::tracing::Recorder;

        let serve = |yaml: &str| {
            let rec = Recorder::default();
            let log = RequestLog::from_yaml(yaml).unwrap();
            tracing::subscriber::with_default(rec.clone(), || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let router = axum::Router::new()
                        .route("/ok", get(|| async { "fine" }))
                        .route(
                            "/down/{id}",
                            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "no") }),
                        );
                    let listener = Listener::bind("127.0.0.1:0", None)
                        .await
                        .unwrap()
                        .with_request_log(log);
                    let addr = listener.local_addr();
                    let shutdown = Shutdown::new();
                    let server = tokio::spawn(listener.serve(router, shutdown.clone(), None));
                    for path in ["/ok?x=1", "/down/7"] {
                        let url = format!("http://{addr}{path}");
                        tokio::task::spawn_blocking(move || {
                            strata_testutil::process::http_request("GET", &url, b"").unwrap()
                        })
                        .await
                        .unwrap();
                    }
                    shutdown.trigger();
                    server.await.unwrap().unwrap();
                });
            });
            rec.lines()
                .into_iter()
                .filter(|l| l.contains("call"))
                .collect::<Vec<_>>()
        };
        let errors = serve("options: {level: ERROR, decision: {log_end: true}}");
        assert_eq!(errors.len(), 1, "{errors:#?}");
        for field in [
            "ERROR message=finished call",
            "http.method=GET /down/7",
            "http.status_code=503",
            "http.remote_addr=127.0.0.1:",
            "thanos.method_name=/down/{id}",
        ] {
            assert!(
                errors[0].contains(field),
                "{field} missing in {}",
                errors[0]
            );
        }
        let all = serve("options: {level: DEBUG, decision: {log_start: true, log_end: true}}");
        assert_eq!(all.len(), 4, "{all:#?}");
        assert!(all[0].starts_with("DEBUG message=started call"), "{all:#?}");
        assert!(all[1].contains("http.method=GET /ok?x=1"), "{all:#?}");
        assert!(
            all[1].starts_with("DEBUG message=finished call"),
            "{all:#?}"
        );
    }

    #[test]
    fn small_helpers() {
        assert_eq!(time_ms(Duration::from_micros(1_500)), "1.5");
        assert_eq!(time_ms(Duration::from_millis(12)), "12");
        assert_eq!(time_ms(Duration::from_micros(7)), "0.007");
        assert_eq!(host_port("localhost:10902"), Some(10902));
        assert_eq!(host_port("[::1]:80"), Some(80));
        assert_eq!(host_port("[::1]"), None);
        assert_eq!(host_port("example.com"), None);
    }
}
