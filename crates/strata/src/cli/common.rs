//! Flag blocks shared by several components, with Thanos' names, spellings and defaults.
//!
//! Components flatten these into their own `Args` so a flag such as `--http-address` is
//! declared once. Every `<name>.config-file` flag comes with its inline twin `<name>.config`
//! (Thanos' `extflag.PathOrContent`): the pair is mutually exclusive and loaded through
//! [`PathOrContent`].
//!
//! Kingpin gives every boolean flag a `--no-<flag>` form; clap has no such notion, so each
//! boolean is declared as a pair of flags that override each other (the last one given wins,
//! as in kingpin) and read through an accessor that applies the default.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, ValueEnum};
use strata_model::{Duration, TimeOrDuration};
use strata_runtime::web_config::WebConfig;

/// Help heading for the flags every command accepts.
pub(crate) const GLOBAL_HEADING: &str = "Global options";

/// Resolves a kingpin-style boolean declared as a `--flag` / `--no-flag` pair.
pub(crate) fn flag_value(on: bool, off: bool, default: bool) -> bool {
    if on {
        true
    } else if off {
        false
    } else {
        default
    }
}

/// The bucket block viewer's flags, shared by `store` and `compact` (both serve one).
#[derive(Debug, Clone, Args)]
pub(crate) struct BlockViewerArgs {
    /// Disable Block Viewer UI.
    #[arg(long = "web.disable", overrides_with = "no_web_disable")]
    web_disable: bool,
    #[arg(long = "no-web.disable", overrides_with = "web_disable", hide = true)]
    no_web_disable: bool,

    #[command(flatten)]
    pub(crate) web: WebArgs,

    /// External block label to use as group title in the bucket web UI.
    #[arg(long = "bucket-web-label", value_name = "LABEL")]
    pub(crate) bucket_web_label: Option<String>,

    #[command(flatten)]
    pub(crate) admin: AdminOperationsArgs,
}

impl BlockViewerArgs {
    pub(crate) fn web_disable(&self) -> bool {
        flag_value(self.web_disable, self.no_web_disable, false)
    }

    pub(crate) fn disable_admin_operations(&self) -> bool {
        self.admin.disable_admin_operations()
    }
}

/// `--disable-admin-operations` of every block viewer (`store`, `compact`, `tools bucket web`).
#[derive(Debug, Clone, Args)]
pub(crate) struct AdminOperationsArgs {
    /// Disable UI/API admin operations like marking blocks for deletion and no compaction.
    #[arg(
        long = "disable-admin-operations",
        overrides_with = "no_disable_admin_operations"
    )]
    disable_admin_operations: bool,
    #[arg(
        long = "no-disable-admin-operations",
        overrides_with = "disable_admin_operations",
        hide = true
    )]
    no_disable_admin_operations: bool,
}

impl AdminOperationsArgs {
    pub(crate) fn disable_admin_operations(&self) -> bool {
        flag_value(
            self.disable_admin_operations,
            self.no_disable_admin_operations,
            false,
        )
    }
}

// ------------------------------------------------------------------------------------------
// Global flags (kingpin app-level flags: accepted before or after any subcommand).
// ------------------------------------------------------------------------------------------

/// `--log.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// `--log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Logfmt,
    Json,
    /// The systemd journal's native protocol, or logfmt where there is no journal.
    Journald,
}

/// Flags Thanos registers on the application itself.
#[derive(Debug, Clone, Args)]
pub(crate) struct GlobalArgs {
    /// Name to add as prefix to log lines (hidden in Thanos).
    #[arg(long = "debug.name", value_name = "NAME", global = true, hide = true)]
    pub(crate) debug_name: Option<String>,

    /// Log filtering level.
    #[arg(
        long = "log.level",
        value_enum,
        default_value_t = LogLevel::Info,
        global = true,
        help_heading = GLOBAL_HEADING
    )]
    pub(crate) log_level: LogLevel,

    /// Log format to use.
    #[arg(
        long = "log.format",
        value_enum,
        default_value_t = LogFormat::Logfmt,
        global = true,
        help_heading = GLOBAL_HEADING
    )]
    pub(crate) log_format: LogFormat,

    /// Path to YAML file with tracing configuration.
    #[arg(
        id = "tracing.config-file",
        long = "tracing.config-file",
        value_name = "FILE-PATH",
        conflicts_with = "tracing.config",
        global = true,
        help_heading = GLOBAL_HEADING
    )]
    pub(crate) tracing_config_file: Option<std::path::PathBuf>,

    /// Alternative to '--tracing.config-file' (mutually exclusive). Content of YAML file with
    /// tracing configuration.
    #[arg(
        id = "tracing.config",
        long = "tracing.config",
        value_name = "CONTENT",
        global = true,
        help_heading = GLOBAL_HEADING
    )]
    pub(crate) tracing_config: Option<String>,

    /// Accepted for compatibility with Thanos; has no effect (Go runtime setting).
    #[arg(
        long = "enable-auto-gomemlimit",
        overrides_with = "no_enable_auto_gomemlimit",
        global = true,
        help_heading = GLOBAL_HEADING
    )]
    enable_auto_gomemlimit: bool,
    #[arg(
        long = "no-enable-auto-gomemlimit",
        overrides_with = "enable_auto_gomemlimit",
        global = true,
        hide = true
    )]
    no_enable_auto_gomemlimit: bool,

    /// Accepted for compatibility with Thanos; has no effect (Go runtime setting).
    #[arg(
        long = "auto-gomemlimit.ratio",
        value_name = "RATIO",
        default_value_t = 0.9,
        global = true,
        help_heading = GLOBAL_HEADING
    )]
    pub(crate) auto_gomemlimit_ratio: f64,

    /// Deprecated request logging of Thanos before v0.31 (NoLogCall, LogFinishCall or
    /// LogStartAndFinishCall); --request.logging-config replaces it.
    #[arg(
        long = "log.request.decision",
        value_name = "DECISION",
        value_parser = ["", "NoLogCall", "LogFinishCall", "LogStartAndFinishCall"],
        global = true,
        hide = true
    )]
    pub(crate) log_request_decision: Option<String>,
}

impl GlobalArgs {
    pub(crate) fn enable_auto_gomemlimit(&self) -> bool {
        flag_value(
            self.enable_auto_gomemlimit,
            self.no_enable_auto_gomemlimit,
            false,
        )
    }

    /// The tracing configuration, if one was given.
    pub(crate) fn tracing(&self) -> PathOrContent<'_> {
        PathOrContent {
            flag: "tracing.config",
            file: self.tracing_config_file.as_deref(),
            content: self.tracing_config.as_deref(),
        }
    }

    /// `--tracing.config[-file]`: read, checked and, for `type: OTLP`, started on `runtime`
    /// (before the logger exists: what to say about it is said by [`TracingStart::log_start`]).
    pub(crate) fn start_tracing(&self, runtime: &tokio::runtime::Runtime) -> Result<TracingStart> {
        use strata_runtime::otel::TracingConfig;
        let Some(text) = self.tracing().load()? else {
            return Ok(TracingStart::default());
        };
        let config = TracingConfig::from_yaml(&text).context("--tracing.config")?;
        Ok(match config {
            None => TracingStart::default(),
            Some(TracingConfig::NotExported(kind)) => TracingStart {
                exporting: None,
                note: Some(kind),
                warnings: Vec::new(),
            },
            Some(TracingConfig::Otlp(otlp)) => {
                let _entered = runtime.enter();
                let tracing = otlp.start().context("--tracing.config")?;
                TracingStart {
                    exporting: Some(tracing),
                    warnings: otlp.notes.clone(),
                    note: Some(format!(
                        "OTLP over {} to {}",
                        match otlp.client_type {
                            strata_runtime::otel::ClientType::Grpc => "gRPC",
                            strata_runtime::otel::ClientType::Http => "HTTP",
                        },
                        if otlp.endpoint.is_empty() {
                            "the default endpoint"
                        } else {
                            otlp.endpoint.as_str()
                        }
                    )),
                }
            }
        })
    }
}

/// What `--tracing.config` started.
#[derive(Debug, Default)]
pub(crate) struct TracingStart {
    exporting: Option<strata_runtime::otel::Tracing>,
    /// Where spans go, or the type that is not exported.
    note: Option<String>,
    /// Settings taken otherwise than written.
    warnings: Vec<String>,
}

impl TracingStart {
    /// The exporter, when spans are exported.
    pub(crate) fn exporting(&self) -> Option<&strata_runtime::otel::Tracing> {
        self.exporting.as_ref()
    }

    /// Says at start-up what became of `--tracing.config`.
    pub(crate) fn log_start(&self) {
        for w in &self.warnings {
            tracing::warn!("--tracing.config: {w}");
        }
        match (&self.exporting, &self.note) {
            (Some(_), Some(to)) => tracing::info!("tracing enabled: spans exported as {to}"),
            (None, Some(kind)) => accepted_without_effect(
                "--tracing.config",
                &format!(
                    "type {kind} is not exported (its protocol is not implemented); use type: \
                     OTLP, which Jaeger, Tempo and most vendors' collectors accept"
                ),
            ),
            _ => {}
        }
    }
}

// ------------------------------------------------------------------------------------------
// `<name>.config-file` / `<name>.config` pairs.
// ------------------------------------------------------------------------------------------

/// A `--<flag>-file` / `--<flag>` pair, as given on the command line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PathOrContent<'a> {
    flag: &'static str,
    file: Option<&'a Path>,
    content: Option<&'a str>,
}

impl PathOrContent<'_> {
    /// Whether either flag was given with a non-empty value.
    pub(crate) fn is_set(&self) -> bool {
        self.file.is_some_and(|p| !p.as_os_str().is_empty())
            || self.content.is_some_and(|c| !c.is_empty())
    }

    /// The text from the file or the inline flag, `None` when neither is given. Empty values
    /// count as not given, as in Thanos. `$(VAR)` references are replaced by the environment
    /// variable's value (Thanos' `WithEnvSubstitution`, Kubernetes' syntax); a reference to an
    /// unset variable is an error.
    pub(crate) fn load(&self) -> Result<Option<String>> {
        let flag = self.flag;
        let file = self.file.filter(|p| !p.as_os_str().is_empty());
        let content = self.content.filter(|c| !c.is_empty());
        let text = match (file, content) {
            (Some(_), Some(_)) => {
                bail!("both --{flag}-file and --{flag} are set; give only one of them")
            }
            (Some(path), None) => std::fs::read_to_string(path)
                .with_context(|| format!("reading {} (given by --{flag}-file)", path.display()))?,
            (None, Some(content)) => content.to_owned(),
            (None, None) => return Ok(None),
        };
        let text = expand_env(&text, |name| std::env::var(name).ok())
            .with_context(|| format!("expanding environment variables in --{flag}[-file]"))?;
        Ok(Some(text))
    }

    /// Like [`PathOrContent::load`], but the configuration is mandatory and must not be empty.
    pub(crate) fn load_required(&self) -> Result<String> {
        let flag = self.flag;
        match self.load()? {
            Some(text) if !text.trim().is_empty() => Ok(text),
            Some(_) => bail!("the configuration given by --{flag}-file or --{flag} is empty"),
            None => bail!("--{flag}-file or --{flag} is required by this command"),
        }
    }
}

/// Replaces `$(NAME)` (NAME of ASCII letters, digits and `_`) with `lookup(NAME)`.
pub(crate) fn expand_env(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("$(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let name_len = after
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        if name_len > 0 && after.as_bytes().get(name_len) == Some(&b')') {
            let name = &after[..name_len];
            let value = lookup(name)
                .ok_or_else(|| anyhow!("found reference to unset environment variable {name:?}"))?;
            out.push_str(&value);
            rest = &after[name_len + 1..];
        } else {
            out.push_str("$(");
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Declares a clap block holding one `--<flag>-file` / `--<flag>` pair.
macro_rules! path_or_content_args {
    ($(#[$meta:meta])* $name:ident, $flag:literal, $what:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, clap::Args)]
        pub(crate) struct $name {
            #[arg(
                id = concat!($flag, "-file"),
                long = concat!($flag, "-file"),
                value_name = "FILE-PATH",
                conflicts_with = $flag,
                help = concat!("Path to ", $what)
            )]
            pub(crate) file: Option<std::path::PathBuf>,

            #[arg(
                id = $flag,
                long = $flag,
                value_name = "CONTENT",
                help = concat!(
                    "Alternative to '--", $flag, "-file' (mutually exclusive). Content of ", $what
                )
            )]
            pub(crate) content: Option<String>,
        }

        impl $name {
            /// The pair as given on the command line.
            pub(crate) fn source(&self) -> $crate::cli::common::PathOrContent<'_> {
                $crate::cli::common::PathOrContent::new($flag, self.file.as_deref(), self.content.as_deref())
            }
        }
    };
}
pub(crate) use path_or_content_args;

impl<'a> PathOrContent<'a> {
    pub(crate) fn new(
        flag: &'static str,
        file: Option<&'a Path>,
        content: Option<&'a str>,
    ) -> Self {
        PathOrContent {
            flag,
            file,
            content,
        }
    }
}

path_or_content_args!(
    /// `--objstore.config-file` / `--objstore.config`.
    ObjstoreArgs,
    "objstore.config",
    "YAML file that contains object store configuration. See format details: \
     https://thanos.io/tip/thanos/storage.md/#configuration"
);

impl ObjstoreArgs {
    /// The object store YAML, from the file or the inline flag. Errors if neither or both are
    /// given, if the file cannot be read, or if the configuration is empty.
    pub(crate) fn load_yaml(&self) -> Result<String> {
        self.source().load_required()
    }

    /// The object store YAML when the command can run without a bucket (sidecar, rule).
    pub(crate) fn load_optional_yaml(&self) -> Result<Option<String>> {
        Ok(self.source().load()?.filter(|t| !t.trim().is_empty()))
    }
}

path_or_content_args!(
    /// `--selector.relabel-config-file` / `--selector.relabel-config`.
    SelectorRelabelArgs,
    "selector.relabel-config",
    "YAML file with relabeling configuration that allows selecting blocks to act on based on \
     their external labels. It follows the Thanos sharding relabel-config syntax."
);

path_or_content_args!(
    /// `--request.logging-config-file` / `--request.logging-config`.
    RequestLoggingArgs,
    "request.logging-config",
    "YAML file with request logging configuration."
);

impl RequestLoggingArgs {
    /// The request logging configuration, read and checked now so that a bad one fails
    /// start-up naming the flag. None: nothing is logged per request.
    pub(crate) fn load(&self) -> Result<Option<Arc<strata_runtime::request_log::RequestLog>>> {
        let Some(text) = self.source().load()? else {
            return Ok(None);
        };
        let log = strata_runtime::request_log::RequestLog::from_yaml(&text)
            .context("--request.logging-config")?;
        if log.is_none() && !text.trim().is_empty() {
            tracing::info!(
                "--request.logging-config asks for no line (no log_end decision): requests are \
                 not logged"
            );
        }
        Ok(log)
    }
}

// ------------------------------------------------------------------------------------------
// Servers.
// ------------------------------------------------------------------------------------------

/// HTTP server flags (`extkingpin.RegisterHTTPFlags`).
#[derive(Debug, Clone, Args)]
pub(crate) struct HttpArgs {
    /// Listen host:port for HTTP endpoints.
    #[arg(
        long = "http-address",
        value_name = "ADDRESS",
        default_value = "0.0.0.0:10902"
    )]
    pub(crate) http_address: String,

    /// Time to wait after an interrupt received for HTTP Server.
    #[arg(
        long = "http-grace-period",
        value_name = "DURATION",
        default_value = "2m"
    )]
    pub(crate) http_grace_period: Duration,

    /// [EXPERIMENTAL] Path to the configuration file that can enable TLS or authentication for
    /// all HTTP endpoints.
    // The help text is Thanos' word for word, brackets included: not a doc link.
    #[allow(rustdoc::broken_intra_doc_links)]
    #[arg(long = "http.config", value_name = "FILE-PATH", default_value = "")]
    pub(crate) http_config: String,
}

impl HttpArgs {
    /// `--http.config`: the web configuration file (TLS, basic authentication, headers, rate
    /// limit of the HTTP server), read and checked now so that a bad file fails start-up
    /// before anything is served. None without the flag: plain HTTP, open.
    pub(crate) fn web_config(&self) -> Result<Option<Arc<WebConfig>>> {
        if self.http_config.is_empty() {
            return Ok(None);
        }
        let config = WebConfig::load(Path::new(&self.http_config)).context("--http.config")?;
        Ok(Some(Arc::new(config)))
    }
}

/// Logs, at start-up, a Thanos flag that was given a value Strata does not act on, and why:
/// a flag is never silently ignored. For flags whose effect in Thanos is tuning (of the Go
/// runtime, of caches Strata does not have, of concurrency Strata sets itself), not for ones
/// that change answers, durability or security: those are implemented or refused.
pub(crate) fn accepted_without_effect(flag: &str, why: &str) {
    tracing::warn!("{flag} is accepted for compatibility with Thanos but has no effect: {why}");
}

/// `--grpc-server-tls-min-version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum TlsVersion {
    #[value(name = "1.0")]
    V1_0,
    #[value(name = "1.1")]
    V1_1,
    #[value(name = "1.2")]
    V1_2,
    #[value(name = "1.3")]
    V1_3,
}

/// gRPC server flags (`extkingpin.RegisterGRPCFlags`).
#[derive(Debug, Clone, Args)]
pub(crate) struct GrpcServerArgs {
    /// Listen ip:port address for gRPC endpoints (StoreAPI). Make sure this address is
    /// routable from other components.
    #[arg(
        long = "grpc-address",
        value_name = "ADDRESS",
        default_value = "0.0.0.0:10901"
    )]
    pub(crate) grpc_address: String,

    /// Time to wait after an interrupt received for GRPC Server.
    #[arg(
        long = "grpc-grace-period",
        value_name = "DURATION",
        default_value = "2m"
    )]
    pub(crate) grpc_grace_period: Duration,

    /// TLS Certificate for gRPC server, leave blank to disable TLS.
    #[arg(
        long = "grpc-server-tls-cert",
        value_name = "FILE-PATH",
        default_value = ""
    )]
    pub(crate) grpc_server_tls_cert: String,

    /// TLS Key for the gRPC server, leave blank to disable TLS.
    #[arg(
        long = "grpc-server-tls-key",
        value_name = "FILE-PATH",
        default_value = ""
    )]
    pub(crate) grpc_server_tls_key: String,

    /// TLS CA to verify clients against. If no client CA is specified, there is no client
    /// verification on server side.
    #[arg(
        long = "grpc-server-tls-client-ca",
        value_name = "FILE-PATH",
        default_value = ""
    )]
    pub(crate) grpc_server_tls_client_ca: String,

    /// TLS supported minimum version for gRPC server.
    #[arg(long = "grpc-server-tls-min-version", value_enum, default_value_t = TlsVersion::V1_3)]
    pub(crate) grpc_server_tls_min_version: TlsVersion,

    /// The grpc server max connection age. This controls how often to re-establish
    /// connections and redo TLS handshakes.
    #[arg(
        long = "grpc-server-max-connection-age",
        value_name = "DURATION",
        default_value = "60m"
    )]
    pub(crate) grpc_server_max_connection_age: Duration,
}

impl GrpcServerArgs {
    /// Everything about running the gRPC server: TLS, `--grpc-server-max-connection-age`
    /// and `--grpc-grace-period`.
    pub(crate) fn server_options(&self) -> Result<strata_storepb::server::ServerOptions> {
        Ok(strata_storepb::server::ServerOptions {
            tls: self.tls_files()?,
            max_connection_age: Some(self.grpc_server_max_connection_age.to_std())
                .filter(|d| !d.is_zero()),
            grace_period: Some(self.grpc_grace_period.to_std()),
            request_log: None,
        })
    }

    /// The server TLS files, checked for readability now so a typo fails at start-up with
    /// the flag named, not at the first connection.
    pub(crate) fn tls_files(&self) -> Result<Option<strata_storepb::server::TlsFiles>> {
        let (cert, key) = (&self.grpc_server_tls_cert, &self.grpc_server_tls_key);
        match (cert.is_empty(), key.is_empty()) {
            (true, true) => {
                if !self.grpc_server_tls_client_ca.is_empty() {
                    bail!(
                        "--grpc-server-tls-client-ca needs --grpc-server-tls-cert and --grpc-server-tls-key"
                    );
                }
                Ok(None)
            }
            (false, false) => {
                for (flag, path) in [
                    ("--grpc-server-tls-cert", cert),
                    ("--grpc-server-tls-key", key),
                    (
                        "--grpc-server-tls-client-ca",
                        &self.grpc_server_tls_client_ca,
                    ),
                ] {
                    if !path.is_empty() {
                        std::fs::metadata(path)
                            .with_context(|| format!("reading {path} ({flag})"))?;
                    }
                }
                if matches!(
                    self.grpc_server_tls_min_version,
                    TlsVersion::V1_0 | TlsVersion::V1_1
                ) {
                    tracing::warn!(
                        "--grpc-server-tls-min-version below 1.2 is not supported; TLS 1.2 and 1.3 are offered"
                    );
                }
                Ok(Some(strata_storepb::server::TlsFiles {
                    cert: cert.into(),
                    key: key.into(),
                    client_ca: (!self.grpc_server_tls_client_ca.is_empty())
                        .then(|| self.grpc_server_tls_client_ca.clone().into()),
                    min_version: match self.grpc_server_tls_min_version {
                        TlsVersion::V1_3 => strata_storepb::server::ServerTlsMinVersion::Tls13,
                        _ => strata_storepb::server::ServerTlsMinVersion::Tls12,
                    },
                }))
            }
            _ => bail!("--grpc-server-tls-cert and --grpc-server-tls-key must be given together"),
        }
    }
}

/// Web UI / API prefix flags.
#[derive(Debug, Clone, Args)]
pub(crate) struct WebArgs {
    /// Prefix for API and UI endpoints. Defaults to the value of --web.external-prefix.
    #[arg(long = "web.route-prefix", value_name = "PREFIX", default_value = "")]
    pub(crate) web_route_prefix: String,

    /// Static prefix for all HTML links and redirect URLs in the UI. Actual endpoints are still
    /// served on / or the web.route-prefix.
    #[arg(
        long = "web.external-prefix",
        value_name = "PREFIX",
        default_value = ""
    )]
    pub(crate) web_external_prefix: String,

    /// Name of HTTP request header used for dynamic prefixing of UI links and redirects.
    /// Ignored if --web.external-prefix is set.
    #[arg(long = "web.prefix-header", value_name = "HEADER", default_value = "")]
    pub(crate) web_prefix_header: String,

    /// Whether to disable CORS headers to be set by Strata. By default CORS headers allow all.
    #[arg(long = "web.disable-cors", overrides_with = "no_web_disable_cors")]
    web_disable_cors: bool,
    #[arg(
        long = "no-web.disable-cors",
        overrides_with = "web_disable_cors",
        hide = true
    )]
    no_web_disable_cors: bool,
}

impl WebArgs {
    pub(crate) fn web_disable_cors(&self) -> bool {
        flag_value(self.web_disable_cors, self.no_web_disable_cors, false)
    }
}

/// Per-request Store API limits.
#[derive(Debug, Clone, Args)]
pub(crate) struct StoreLimitsArgs {
    /// The maximum series allowed for a single Series request. 0 means no limit.
    #[arg(
        long = "store.limits.request-series",
        value_name = "N",
        default_value_t = 0
    )]
    pub(crate) request_series: u64,

    /// The maximum samples allowed for a single Series request. 0 means no limit. Enforced as
    /// a chunk limit, counting each chunk as 120 samples.
    #[arg(
        long = "store.limits.request-samples",
        value_name = "N",
        default_value_t = 0
    )]
    pub(crate) request_samples: u64,
}

/// `--min-time` / `--max-time` (blocks outside the range are ignored).
#[derive(Debug, Clone, Args)]
pub(crate) struct TimeRangeArgs {
    /// Start of the time range to act on: an RFC3339 time or a duration relative to now, such
    /// as -1d or 2h45m. Valid duration units are ms, s, m, h, d, w, y.
    #[arg(
        long = "min-time",
        value_name = "TIME",
        default_value = strata_model::timestamp::MIN_TIME_RFC3339,
        allow_hyphen_values = true
    )]
    pub(crate) min_time: TimeOrDuration,

    /// End of the time range to act on: an RFC3339 time or a duration relative to now, such as
    /// -1d or 2h45m. Valid duration units are ms, s, m, h, d, w, y.
    #[arg(
        long = "max-time",
        value_name = "TIME",
        default_value = strata_model::timestamp::MAX_TIME_RFC3339,
        allow_hyphen_values = true
    )]
    pub(crate) max_time: TimeOrDuration,
}

/// `--block-discovery-strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BlockDiscoveryStrategy {
    /// One list call per block directory.
    Concurrent,
    /// A single recursive iteration over the bucket.
    Recursive,
}

// ------------------------------------------------------------------------------------------
// Small value types.
// ------------------------------------------------------------------------------------------

/// `--hash-func`: `""` (no hashes) or `SHA256`, the block crate's own setting (it parses and
/// prints the flag's values).
pub(crate) use strata_block::transfer::HashFunc;

/// A `name="value"` label flag (`--label`, `--selector`, `--selector-label`), parsed like
/// Thanos' `parseFlagLabels`: split at the first `=`, the value must be a Go-quoted string.
///
/// Label names are checked against the classic Prometheus charset `[a-zA-Z_][a-zA-Z0-9_]*`
/// (newer Thanos only requires valid UTF-8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FlagLabel {
    pub(crate) name: String,
    pub(crate) value: String,
}

impl FromStr for FlagLabel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((name, quoted)) = s.split_once('=') else {
            return Err(format!("label {s:?} is not of the form name=\"value\""));
        };
        let valid_name = name
            .bytes()
            .enumerate()
            .all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()));
        if name.is_empty() || !valid_name {
            return Err(format!(
                "label {s:?}: invalid label name {name:?} (must match [a-zA-Z_][a-zA-Z0-9_]*)"
            ));
        }
        let value = go_unquote(quoted).map_err(|why| {
            format!("label {s:?}: the value must be a double-quoted string like {name}=\"value\" ({why})")
        })?;
        Ok(FlagLabel {
            name: name.to_owned(),
            value,
        })
    }
}

impl fmt::Display for FlagLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={}",
            self.name,
            strata_model::labels::GoQuoted(&self.value)
        )
    }
}

/// Go's `strconv.Unquote`: a `"…"` string with Go escapes, a `` `…` `` raw string, or a `'…'`
/// single character.
pub(crate) fn go_unquote(s: &str) -> Result<String, String> {
    let quote = match s.chars().next() {
        Some(q @ ('"' | '\'' | '`')) => q,
        _ => return Err("missing opening quote".into()),
    };
    if s.len() < 2 || !s.ends_with(quote) {
        return Err("missing closing quote".into());
    }
    let body = &s[1..s.len() - 1];
    if quote == '`' {
        if body.contains('`') {
            return Err("unexpected backquote".into());
        }
        return Ok(body.replace('\r', ""));
    }
    let mut out: Vec<u8> = Vec::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\n' => return Err("newline in quoted string".into()),
            c if c == quote => return Err(format!("unescaped {quote} inside the quotes")),
            '\\' => {
                let e = chars.next().ok_or("trailing backslash")?;
                let simple = match e {
                    'a' => Some(0x07),
                    'b' => Some(0x08),
                    'f' => Some(0x0c),
                    'n' => Some(b'\n'),
                    'r' => Some(b'\r'),
                    't' => Some(b'\t'),
                    'v' => Some(0x0b),
                    '\\' => Some(b'\\'),
                    '"' | '\'' if e == quote => Some(e as u8),
                    _ => None,
                };
                if let Some(b) = simple {
                    out.push(b);
                    continue;
                }
                match e {
                    'x' => {
                        let hex: String = chars.by_ref().take(2).collect();
                        let b = (hex.len() == 2)
                            .then(|| u8::from_str_radix(&hex, 16).ok())
                            .flatten()
                            .ok_or("invalid \\x escape")?;
                        out.push(b);
                    }
                    '0'..='7' => {
                        let rest: String = chars.by_ref().take(2).collect();
                        let oct = format!("{e}{rest}");
                        let b = (oct.len() == 3)
                            .then(|| u8::from_str_radix(&oct, 8).ok())
                            .flatten()
                            .ok_or("invalid octal escape")?;
                        out.push(b);
                    }
                    'u' | 'U' => {
                        let n = if e == 'u' { 4 } else { 8 };
                        let hex: String = chars.by_ref().take(n).collect();
                        let ch = (hex.len() == n)
                            .then(|| u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32))
                            .flatten()
                            .ok_or("invalid unicode escape")?;
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    }
                    other => return Err(format!("unknown escape sequence \\{other}")),
                }
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    let text = String::from_utf8(out).map_err(|_| "escapes produce invalid UTF-8".to_owned())?;
    if quote == '\'' && text.chars().count() != 1 {
        return Err("a single-quoted value must hold exactly one character".into());
    }
    Ok(text)
}

/// A block ULID given with `--id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockId(pub(crate) ulid::Ulid);

impl FromStr for BlockId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ulid::Ulid::from_string(s)
            .map(BlockId)
            .map_err(|e| format!("{s:?} is not a valid block ULID ({e})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_labels_parse_like_thanos() {
        let l: FlagLabel = r#"cluster="eu-1""#.parse().unwrap();
        assert_eq!((l.name.as_str(), l.value.as_str()), ("cluster", "eu-1"));
        let l: FlagLabel = r#"a="x=y""#.parse().unwrap();
        assert_eq!(l.value, "x=y");
        let l: FlagLabel = r#"a="tab\there \"q\" \u00e9 \x41 \101""#.parse().unwrap();
        assert_eq!(l.value, "tab\there \"q\" é A A");
        let l: FlagLabel = "a=`raw \\n`".parse().unwrap();
        assert_eq!(l.value, "raw \\n");
        let l: FlagLabel = "a='x'".parse().unwrap();
        assert_eq!(l.value, "x");
        let l: FlagLabel = r#"_a1="""#.parse().unwrap();
        assert_eq!(l.value, "");
        assert_eq!(l.to_string(), r#"_a1="""#);

        for bad in [
            "cluster",
            "cluster=eu-1",
            r#"cluster="eu-1"#,
            r#"="x""#,
            r#"1a="x""#,
            r#"a-b="x""#,
            r#"a="x"y""#,
            r#"a="\q""#,
            r#"a="\xZZ""#,
            r#"a="\777""#,
            r#"a="\xff""#,
            "a='xy'",
            "a=\"line\nbreak\"",
            r#"a="trailing\""#,
        ] {
            assert!(
                bad.parse::<FlagLabel>().is_err(),
                "{bad:?} should be rejected"
            );
        }
        let err = "cluster=eu-1".parse::<FlagLabel>().unwrap_err();
        assert!(err.contains(r#"cluster="value""#), "{err}");
    }

    #[test]
    fn env_expansion() {
        let lookup = |n: &str| (n == "BUCKET").then(|| "my-bucket".to_owned());
        assert_eq!(
            expand_env("bucket: $(BUCKET)", lookup).unwrap(),
            "bucket: my-bucket"
        );
        assert_eq!(
            expand_env("$(BUCKET)$(BUCKET)", lookup).unwrap(),
            "my-bucketmy-bucket"
        );
        assert_eq!(
            expand_env("cost: $5 $( x) $(", lookup).unwrap(),
            "cost: $5 $( x) $("
        );
        assert_eq!(
            expand_env("${BUCKET} $BUCKET", lookup).unwrap(),
            "${BUCKET} $BUCKET"
        );
        let err = expand_env("key: $(MISSING)", lookup)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"MISSING\""), "{err}");
    }

    #[test]
    fn path_or_content_loading() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bucket.yml");
        std::fs::write(&file, "type: FILESYSTEM\n").unwrap();

        let only_file = ObjstoreArgs {
            file: Some(file.clone()),
            content: None,
        };
        assert_eq!(only_file.load_yaml().unwrap(), "type: FILESYSTEM\n");

        let inline = ObjstoreArgs {
            file: None,
            content: Some("type: S3".into()),
        };
        assert_eq!(inline.load_yaml().unwrap(), "type: S3");

        let neither = ObjstoreArgs::default();
        let err = neither.load_yaml().unwrap_err().to_string();
        assert!(
            err.contains("--objstore.config-file or --objstore.config is required"),
            "{err}"
        );
        assert_eq!(neither.load_optional_yaml().unwrap(), None);

        let both = ObjstoreArgs {
            file: Some(file),
            content: Some("type: S3".into()),
        };
        let err = both.load_yaml().unwrap_err().to_string();
        assert!(
            err.contains("both --objstore.config-file and --objstore.config"),
            "{err}"
        );

        let missing = ObjstoreArgs {
            file: Some(dir.path().join("nope.yml")),
            content: None,
        };
        let err = format!("{:#}", missing.load_yaml().unwrap_err());
        assert!(
            err.contains("nope.yml") && err.contains("--objstore.config-file"),
            "{err}"
        );

        let empty = ObjstoreArgs {
            file: None,
            content: Some(String::new()),
        };
        assert!(empty.load_yaml().is_err());
        assert_eq!(empty.load_optional_yaml().unwrap(), None);
    }

    #[test]
    fn hash_func_and_block_id() {
        assert_eq!("".parse::<HashFunc>().unwrap(), HashFunc::None);
        assert_eq!("SHA256".parse::<HashFunc>().unwrap(), HashFunc::Sha256);
        assert!("sha256".parse::<HashFunc>().is_err());
        assert!("01ARZ3NDEKTSV4RRFFQ69G5FAV".parse::<BlockId>().is_ok());
        assert!("not-a-ulid".parse::<BlockId>().is_err());
    }

    #[test]
    fn bool_pairs() {
        assert!(flag_value(true, false, false));
        assert!(!flag_value(false, true, true));
        assert!(flag_value(false, false, true));
        assert!(!flag_value(false, false, false));
    }
}

/// The shipper's flags (Thanos' `shipperConfig`), shared by the sidecar and the ruler.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ShipperArgs {
    /// If true shipper will try to upload compacted blocks as well. Useful for migration
    /// purposes. Works only if compaction is disabled on Prometheus. Do it once and then
    /// disable the flag when done.
    #[arg(
        long = "shipper.upload-compacted",
        overrides_with = "no_shipper_upload_compacted"
    )]
    shipper_upload_compacted: bool,
    #[arg(
        long = "no-shipper.upload-compacted",
        overrides_with = "shipper_upload_compacted",
        hide = true
    )]
    no_shipper_upload_compacted: bool,

    /// Hash function for the hashes of uploaded files ("" for none, or "SHA256").
    #[arg(long = "hash-func", value_name = "FUNC", default_value = "")]
    pub(crate) hash_func: HashFunc,

    /// The file to store shipper metadata in.
    #[arg(
        long = "shipper.meta-file-name",
        value_name = "NAME",
        default_value = "thanos.shipper.json"
    )]
    pub(crate) shipper_meta_file_name: String,

    /// Number of goroutines to use when uploading block files to object storage (0: default).
    #[arg(
        long = "shipper.upload-concurrency",
        value_name = "N",
        default_value_t = 0
    )]
    pub(crate) shipper_upload_concurrency: usize,

    /// Skip the check that Prometheus' min and max block durations are equal (hidden in Thanos).
    #[arg(
        long = "shipper.ignore-unequal-block-size",
        overrides_with = "no_shipper_ignore_unequal_block_size",
        hide = true
    )]
    shipper_ignore_unequal_block_size: bool,
    #[arg(
        long = "no-shipper.ignore-unequal-block-size",
        overrides_with = "shipper_ignore_unequal_block_size",
        hide = true
    )]
    no_shipper_ignore_unequal_block_size: bool,

    /// Keep uploading newer blocks when an older one fails (hidden in Thanos).
    #[arg(
        long = "shipper.allow-out-of-order-uploads",
        overrides_with = "no_shipper_allow_out_of_order_uploads",
        hide = true
    )]
    shipper_allow_out_of_order_uploads: bool,
    #[arg(
        long = "no-shipper.allow-out-of-order-uploads",
        overrides_with = "shipper_allow_out_of_order_uploads",
        hide = true
    )]
    no_shipper_allow_out_of_order_uploads: bool,

    /// Skip blocks that fail validation instead of stopping the upload (hidden in Thanos).
    #[arg(
        long = "shipper.skip-corrupted-blocks",
        overrides_with = "no_shipper_skip_corrupted_blocks",
        hide = true
    )]
    shipper_skip_corrupted_blocks: bool,
    #[arg(
        long = "no-shipper.skip-corrupted-blocks",
        overrides_with = "shipper_skip_corrupted_blocks",
        hide = true
    )]
    no_shipper_skip_corrupted_blocks: bool,
}

impl ShipperArgs {
    /// `--shipper.upload-compacted` (default false).
    pub(crate) fn upload_compacted(&self) -> bool {
        flag_value(
            self.shipper_upload_compacted,
            self.no_shipper_upload_compacted,
            false,
        )
    }

    /// `--shipper.ignore-unequal-block-size` (default false).
    pub(crate) fn ignore_unequal_block_size(&self) -> bool {
        flag_value(
            self.shipper_ignore_unequal_block_size,
            self.no_shipper_ignore_unequal_block_size,
            false,
        )
    }

    /// The shipper's settings from these flags, over `config`'s directory and source.
    pub(crate) fn apply(&self, config: &mut strata_sidecar::ShipperConfig) {
        config.meta_file_name = self.shipper_meta_file_name.clone();
        config.upload_compacted = self.upload_compacted();
        config.allow_out_of_order = flag_value(
            self.shipper_allow_out_of_order_uploads,
            self.no_shipper_allow_out_of_order_uploads,
            false,
        );
        config.skip_corrupted = flag_value(
            self.shipper_skip_corrupted_blocks,
            self.no_shipper_skip_corrupted_blocks,
            false,
        );
        config.hash_func = self.hash_func;
        config.file_concurrency = self.shipper_upload_concurrency;
    }
}
